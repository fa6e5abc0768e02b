-- 0001: patients, call jobs, calls with their steps, typed answers and alerts.

-- The roster: one row per patient in home care.
create table patients (
    patient_id  text primary key,
    name        text not null,
    phone       text not null,             -- E.164, e.g. +819012345678
    birth_md    text,                      -- birth month and day, MMDD
    language    text not null default 'ja-JP',
    email       text,
    area        text,
    care_start  text,                      -- YYYY-MM-DD
    care_end    text,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
create index patients_phone on patients (phone);

-- A call to place (the scheduler's unit of work); `/twilio/voice?job=ID` starts its flow.
create table jobs (
    job_id      bigint generated always as identity primary key,
    patient_id  text not null references patients (patient_id),
    flow        text not null,
    status      text not null default 'planned',
    created_at  timestamptz not null default now()
);

-- One row per phone call. `state` is the engine's CallState (JSON); `seq` the last turn taken.
create table calls (
    call_id       bigint generated always as identity primary key,
    call_sid      text not null unique,
    patient_id    text references patients (patient_id),
    job_id        bigint references jobs (job_id),
    direction     text not null,           -- inbound | outbound
    flow          text not null,
    flow_version  text not null,
    state         text not null,
    seq           bigint not null default -1,
    ended         boolean not null default false,  -- the flow reached a hang-up
    incomplete    boolean not null default false,  -- the caller hung up before the flow ended
    status        text not null default 'in-progress',
    status_rank   integer not null default 2,
    duration      integer,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index calls_patient on calls (patient_id);

-- Each turn of a call: the state it left, the (masked) input, and the TwiML answered, which is
-- returned again, unchanged and without effects, when the carrier replays the request.
create table call_events (
    call_id     bigint not null references calls (call_id),
    seq         bigint not null,
    state       text not null,
    input       text not null,
    response    text not null,
    created_at  timestamptz not null default now(),
    primary key (call_id, seq)
);

-- Answers as typed values: numbers exact (raw / 10^scale), choices as text.
create table answers (
    call_id     bigint not null references calls (call_id),
    patient_id  text,
    name        text not null,
    kind        text not null,             -- number | text | bool
    value_text  text not null,             -- as read back: 36.5, yes, 0412
    value_raw   bigint,                   -- numbers: 365
    value_scale integer,                   -- numbers: 1
    created_at  timestamptz not null default now(),
    primary key (call_id, name)
);
create index answers_patient on answers (patient_id, name);

-- What the health centre must follow up: low SpO2, unreachable patients, failed issues…
create table alerts (
    alert_id    bigint generated always as identity primary key,
    patient_id  text,
    call_id     bigint references calls (call_id),
    reason      text not null,
    created_at  timestamptz not null default now(),
    resolved_at timestamptz
);
