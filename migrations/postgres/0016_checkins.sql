-- 0016: several check-ins a day (`scheduler.checks`). A planned job is one patient's call for
-- one check-in of a day, flow apart: the key grows by the check-in, `HH:MM` local time. Jobs
-- planned before are the day's one check-in, `00:00`.
--
-- A job also carries its check-in's window: a report (a call whose flow ended, or a web report)
-- finished in it settles the job without a call (status `reported`), and retries stay before
-- its end. Jobs planned before keep no window: they are dialled as they were.

alter table jobs add column checkin text not null default '00:00';
alter table jobs add column window_from timestamptz;
alter table jobs add column window_to timestamptz;

drop index jobs_day;
create unique index jobs_day on jobs (day, checkin, patient_id, flow);
create index calls_patient_created on calls (patient_id, created_at);
