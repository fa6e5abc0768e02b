-- 0002: processing numbers, the outbox that delivers them, API tokens and the audit log.

-- Issued processing numbers, stored only as a keyed hash. At most one valid number per hash;
-- a new number for a patient revokes the previous one.
create table processing_numbers (
    number_id       integer primary key autoincrement,
    patient_id      text not null references patients (patient_id),
    number_hash     text not null,             -- HMAC-SHA256 with the issuer's key
    sealed          text,                      -- the number, encrypted, while it may be said again
    status          text not null default 'valid',  -- valid | used | revoked | expired
    issued_at       text not null,
    expires_at      text not null,
    consent_channel text not null,             -- call | staff
    consent_call_id integer references calls (call_id),
    consent_seq     integer,                   -- the turn of the call where the patient consented
    consent_staff   text,                      -- the staff member, for the manual path
    delivery        text not null,             -- sms | email | read_aloud | none
    used_at         text,
    used_by         text,                      -- the API token's name
    revoked_at      text,
    created_at      text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
create unique index processing_numbers_valid on processing_numbers (number_hash) where status = 'valid';
create index processing_numbers_patient on processing_numbers (patient_id, status);
-- One number per consent: a replayed or concurrent turn cannot issue a second.
create unique index processing_numbers_consent on processing_numbers (consent_call_id, consent_seq)
    where consent_call_id is not null;

-- Messages to send (SMS, e-mail), written in the same transaction as what they announce.
create table outbox (
    message_id      integer primary key autoincrement,
    patient_id      text,
    number_id       integer references processing_numbers (number_id),
    channel         text not null,             -- sms | email
    recipient       text not null,             -- E.164 or e-mail address
    body_sealed     text not null,             -- the text, encrypted (it holds the number)
    status          text not null default 'pending',  -- pending | sending | sent | delivered | failed | dead
    attempts        integer not null default 0,
    next_attempt_at text not null,
    lease_until     text,
    provider_id     text,                      -- e.g. Twilio's message SID
    last_error      text,
    created_at      text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
create index outbox_due on outbox (status, next_attempt_at);
create index outbox_provider on outbox (provider_id);

-- Bearer tokens for the JSON API, stored as SHA-256 hashes.
create table api_tokens (
    token_id    integer primary key autoincrement,
    name        text not null unique,
    token_hash  text not null unique,
    created_at  text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at  text
);

-- What happened to processing numbers, with the precise reason the API does not reveal.
create table audit_log (
    audit_id    integer primary key autoincrement,
    actor       text not null,
    action      text not null,
    number_id   integer,
    detail      text not null,
    created_at  text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
