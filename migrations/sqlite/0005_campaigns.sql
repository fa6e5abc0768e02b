-- 0005: daily campaigns. A job is one patient's call for one day (in scheduler.timezone),
-- dialled in attempts; each attempt is a row of its own, so no attempt is ever dialled twice.
--
-- Job status: planned → dialing (claimed by a dialer, call requested or ringing) → in-progress
-- (answered) → done; or retry (waiting for `due_at`) → dialing …; or, for good, unreachable
-- (every attempt failed; the health centre is alerted), failed (the carrier refused the number)
-- or stopped (no calling time left that day).

alter table jobs add column day text;                  -- YYYY-MM-DD, local to the health centre
alter table jobs add column due_at text;               -- the next attempt is dialled from then (UTC)
alter table jobs add column attempt integer not null default 0;   -- attempts dialled so far
alter table jobs add column lease_until text;          -- a dialer holds the job until then
alter table jobs add column outcome text;              -- how the last attempt ended
alter table jobs add column updated_at text;

-- One job per patient, flow and day, however often the day is planned.
create unique index jobs_day on jobs (day, patient_id, flow);
create index jobs_due on jobs (status, due_at);

-- Each dial of a job. `status` follows the carrier's callbacks; `ended_at` is set once, by the
-- first final status, so replayed or late callbacks change nothing.
create table job_attempts (
    job_id      integer not null references jobs (job_id),
    attempt     integer not null,
    call_sid    text,                      -- the carrier's id, once it answered the request
    status      text not null default 'dialing',
    answered_by text,                      -- human, machine_start, machine_end_beep …
    started_at  text not null,
    ended_at    text,
    primary key (job_id, attempt)
);
create index job_attempts_sid on job_attempts (call_sid);
