-- 0019: the patients' personal links to the web self-report (`/r/{token}`). The token is
-- random (192 bits) and known only to the patient's message: a link is found by the SHA-256 of
-- its token. A link ends with the patient's care period, or when staff revoke it (a new link
-- revokes the patient's earlier ones).
--
-- A web report itself is a row of `calls` with direction `web` (its answers, alerts and
-- follow-ups as a call's), so every reader of calls sees it.

create table report_links (
    link_id     bigserial primary key,
    patient_id  text not null references patients (patient_id),
    token_hash  text not null unique,            -- hex SHA-256 of the token
    created_at  timestamptz not null,
    expires_at  timestamptz not null,            -- the end of the care period
    revoked_at  timestamptz,
    revoked_by  text                             -- a user name, 'cli', or 'new link'
);
create index report_links_patient on report_links (patient_id, created_at);
create index report_links_live on report_links (expires_at) where revoked_at is null;
-- A day's web reports of a patient are found as their calls are.
create index calls_patient_direction on calls (patient_id, direction, created_at);
-- The message that carries a link's token: its text is emptied once the provider took it (or it
-- failed for good), so the outbox keeps no working link.
alter table outbox add column link_id bigint references report_links (link_id);
