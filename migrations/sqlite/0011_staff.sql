-- 0011: the health centre's staff: their accounts, their signed-in sessions, and the audit log
-- of what they viewed and did on the staff pages.

create table staff_users (
    user_id       integer primary key autoincrement,
    name          text not null unique,          -- sign-in name, lower case
    role          text not null,                 -- admin | nurse | viewer
    language      text not null default 'ja',    -- ja | en: the pages' language
    password_hash text not null,                 -- argon2id, PHC string
    disabled      integer not null default 0,
    created_at    text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- A session is known by the SHA-256 of its id; the id itself is only in the browser's cookie.
create table staff_sessions (
    session_hash  text primary key,
    user_id       integer not null references staff_users (user_id) on delete cascade,
    csrf_token    text not null,                 -- the forms' synchronizer token
    created_at    text not null,
    last_seen_at  text not null
);
create index staff_sessions_user on staff_sessions (user_id);

create table staff_audit (
    audit_id      integer primary key autoincrement,
    at            text not null,
    actor         text not null,                 -- a user name, or 'cli' for the command line
    action        text not null,                 -- e.g. login, login_failed, view_patient, add_user
    target        text not null default '',      -- what it was done to: a user, a patient id
    address       text not null default '',      -- the client's address
    created_at    text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
create index staff_audit_at on staff_audit (at);
