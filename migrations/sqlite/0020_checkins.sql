-- 0020: several check-ins a day (`scheduler.checks`). A planned job is one patient's call for
-- one check-in of a day, flow apart: the key grows by the check-in, `HH:MM` local time. Jobs
-- planned before are the day's one check-in, `00:00`.
--
-- A job also carries its check-in's window: a report (a call whose flow ended, or a web report)
-- finished in it settles the job without a call (status `reported`), and retries stay before
-- its end. Jobs planned before keep no window: they are dialled as they were.
--
-- A patient with a live personal link gets the check-in's web request first (an SMS or e-mail
-- with a new link) at `web_at`; the call is due `scheduler.web_grace` later. `web_sent_at` is
-- set, with the message put in the outbox, in one transaction: one request per job.

alter table jobs add column checkin text not null default '00:00';
alter table jobs add column window_from text;          -- UTC
alter table jobs add column window_to text;            -- UTC
alter table jobs add column web_at text;
alter table jobs add column web_sent_at text;

drop index jobs_day;
create unique index jobs_day on jobs (day, checkin, patient_id, flow);
create index calls_patient_created on calls (patient_id, created_at);
create index jobs_web on jobs (web_at) where web_sent_at is null and web_at is not null;
