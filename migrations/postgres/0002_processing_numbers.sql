-- 0002: processing numbers, the outbox that delivers them, API tokens and the audit log.

-- Issued processing numbers, stored only as a keyed hash. At most one valid number per hash;
-- a new number for a patient revokes the previous one.
create table processing_numbers (
    number_id       bigint generated always as identity primary key,
    patient_id      text not null references patients (patient_id),
    number_hash     text not null,             -- HMAC-SHA256 with the issuer's key
    sealed          text,                      -- the number, encrypted, while it may be said again
    status          text not null default 'valid',  -- valid | used | revoked | expired
    issued_at       timestamptz not null,
    expires_at      timestamptz not null,
    consent_channel text not null,             -- call | staff
    consent_call_id bigint references calls (call_id),
    consent_seq     bigint,                   -- the turn of the call where the patient consented
    consent_staff   text,                      -- the staff member, for the manual path
    delivery        text not null,             -- sms | email | read_aloud | none
    used_at         timestamptz,
    used_by         text,                      -- the API token's name
    revoked_at      timestamptz,
    created_at      timestamptz not null default now()
);
create unique index processing_numbers_valid on processing_numbers (number_hash) where status = 'valid';
create index processing_numbers_patient on processing_numbers (patient_id, status);
-- One number per consent: a replayed or concurrent turn cannot issue a second.
create unique index processing_numbers_consent on processing_numbers (consent_call_id, consent_seq)
    where consent_call_id is not null;

-- Messages to send (SMS, e-mail), written in the same transaction as what they announce.
create table outbox (
    message_id      bigint generated always as identity primary key,
    patient_id      text,
    number_id       bigint references processing_numbers (number_id),
    channel         text not null,             -- sms | email
    recipient       text not null,             -- E.164 or e-mail address
    body_sealed     text not null,             -- the text, encrypted (it holds the number)
    status          text not null default 'pending',  -- pending | sending | sent | delivered | failed | dead
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null,
    lease_until     timestamptz,
    provider_id     text,                      -- e.g. Twilio's message SID
    last_error      text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index outbox_due on outbox (status, next_attempt_at);
create index outbox_provider on outbox (provider_id);

-- Bearer tokens for the JSON API, stored as SHA-256 hashes.
create table api_tokens (
    token_id    bigint generated always as identity primary key,
    name        text not null unique,
    token_hash  text not null unique,
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz
);

-- What happened to processing numbers, with the precise reason the API does not reveal.
create table audit_log (
    audit_id    bigint generated always as identity primary key,
    actor       text not null,
    action      text not null,
    number_id   bigint,
    detail      text not null,
    created_at  timestamptz not null default now()
);
