//! Daily campaigns on PostgreSQL (see [`super::campaign`]). Dialers on several instances claim
//! jobs with `for update skip locked`, so each job goes to one of them.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::followups::raise_in;
use crate::store::campaign::{
    AttemptView, CampaignSummary, DayFigures, DueJob, JobNext, JobView, NewJob, REPORTED_BY_PHONE, REPORTED_ON_WEB,
    ReportedPatient, StaleAttempt, WebRequest, figures_sql,
};
use crate::store::{Campaign, Fut, Job, NewAlert, NewMessage, fut};
use crate::types::{CallSid, PatientId};

/// Settles the jobs due at `now` (call or web request) whose patient reported in their window.
async fn settle_in(tx: &mut sqlx::PgConnection, now: DateTime<Utc>, all: bool) -> Result<usize, sqlx::Error> {
    let r = sqlx::query(
        "with settled as (
           select j.job_id, bool_or(c.direction = 'web') as web
           from jobs j join calls c on c.patient_id = j.patient_id and c.ended
             and c.created_at >= j.window_from and c.created_at < j.window_to
           where j.status in ('planned', 'retry') and j.window_from is not null
             and ($4 or j.due_at <= $1 or (j.web_at <= $1 and j.web_sent_at is null))
           group by j.job_id
         ), locked as (
           select j.job_id, s.web from jobs j join settled s on s.job_id = j.job_id
           where j.status in ('planned', 'retry')
           for update of j skip locked
         )
         update jobs j set status = 'reported', lease_until = null, updated_at = $1,
           outcome = case when l.web then $2 else $3 end
         from locked l where j.job_id = l.job_id",
    )
    .bind(now)
    .bind(REPORTED_ON_WEB)
    .bind(REPORTED_BY_PHONE)
    .bind(all)
    .execute(&mut *tx)
    .await?;
    Ok(r.rows_affected() as usize)
}

/// A job's row: id, patient, flow, status and the end of its check-in.
type JobRow = (i64, PatientId, String, String, Option<DateTime<Utc>>);

impl Campaign for PgStore {
    fn create_job<'a>(&'a self, patient_id: &'a str, flow: &'a str) -> Fut<'a, i64> {
        fut(async move {
            Ok(sqlx::query_scalar("insert into jobs (patient_id, flow) values ($1, $2) returning job_id")
                .bind(patient_id)
                .bind(flow)
                .fetch_one(&self.pool)
                .await?)
        })
    }

    fn job(&self, job_id: i64) -> Fut<'_, Option<Job>> {
        fut(async move {
            let row: Option<JobRow> =
                sqlx::query_as("select job_id, patient_id, flow, status, window_to from jobs where job_id = $1")
                    .bind(job_id)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(row.map(|(job_id, patient_id, flow, status, window_to)| Job {
                job_id,
                patient_id,
                flow,
                status,
                window_to,
            }))
        })
    }

    fn plan_jobs<'a>(&'a self, jobs: &'a [NewJob]) -> Fut<'a, usize> {
        fut(async move {
            let mut new = 0;
            // Batches of arrays: one statement per few thousand jobs.
            for chunk in jobs.chunks(5000) {
                let ids: Vec<&str> = chunk.iter().map(|j| j.patient_id.as_str()).collect();
                let flows: Vec<&str> = chunk.iter().map(|j| j.flow.as_str()).collect();
                let days: Vec<NaiveDate> = chunk.iter().map(|j| j.day).collect();
                let due: Vec<DateTime<Utc>> = chunk.iter().map(|j| j.due_at).collect();
                let checkins: Vec<&str> = chunk.iter().map(|j| j.checkin.as_str()).collect();
                let from: Vec<Option<DateTime<Utc>>> = chunk.iter().map(|j| j.window.map(|w| w.0)).collect();
                let to: Vec<Option<DateTime<Utc>>> = chunk.iter().map(|j| j.window.map(|w| w.1)).collect();
                let web: Vec<Option<DateTime<Utc>>> = chunk.iter().map(|j| j.web_at).collect();
                let r = sqlx::query(
                    "insert into jobs (patient_id, flow, day, due_at, checkin, window_from, window_to, web_at, status, updated_at)
                     select p, f, d, t, c, wf, wt, w, 'planned', t
                     from unnest($1::text[], $2::text[], $3::date[], $4::timestamptz[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::timestamptz[])
                       as u(p, f, d, t, c, wf, wt, w)
                     on conflict (day, checkin, patient_id, flow) do nothing",
                )
                .bind(&ids)
                .bind(&flows)
                .bind(&days)
                .bind(&due)
                .bind(&checkins)
                .bind(&from)
                .bind(&to)
                .bind(&web)
                .execute(&self.pool)
                .await?;
                new += r.rows_affected() as usize;
            }
            Ok(new)
        })
    }

    fn advance_jobs<'a>(&'a self, day: NaiveDate, checkin: &'a str, due_at: DateTime<Utc>) -> Fut<'a, usize> {
        fut(async move {
            let r = sqlx::query(
                "update jobs set due_at = $2, updated_at = $2
                 where day = $1 and checkin = $3 and status = 'planned' and due_at > $2 and web_at is null",
            )
            .bind(day)
            .bind(due_at)
            .bind(checkin)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected() as usize)
        })
    }

    fn reported_patients(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, Vec<String>> {
        fut(async move {
            Ok(sqlx::query_scalar(
                "select distinct patient_id from calls
                 where ended and patient_id is not null and created_at >= $1 and created_at < $2",
            )
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn reported_by_channel(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, Vec<ReportedPatient>> {
        fut(async move {
            let rows: Vec<(String, bool)> = sqlx::query_as(
                "select patient_id, bool_or(direction = 'web') from calls
                 where ended and patient_id is not null and created_at >= $1 and created_at < $2
                 group by patient_id",
            )
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(|(patient_id, web)| ReportedPatient { patient_id, web }).collect())
        })
    }

    fn claim_jobs(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Fut<'_, Vec<DueJob>> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            // Reported in the job's window: settled, never dialled.
            settle_in(&mut tx, now, false).await?;
            let rows = sqlx::query(
                "with due as (
                   select job_id from jobs where status in ('planned', 'retry') and due_at <= $1
                   order by due_at, job_id limit $3
                   for update skip locked
                 ), claimed as (
                   update jobs j set status = 'dialing', attempt = j.attempt + 1, lease_until = $2, updated_at = $1
                   from due where j.job_id = due.job_id
                   returning j.job_id, j.patient_id, j.flow, j.attempt
                 ), attempts as (
                   insert into job_attempts (job_id, attempt, started_at) select job_id, attempt, $1 from claimed
                 )
                 select c.job_id, c.patient_id, p.phone, c.flow, c.attempt
                 from claimed c join patients p on p.patient_id = c.patient_id order by c.job_id",
            )
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let job = |r: &PgRow| -> Result<DueJob, sqlx::Error> {
                Ok(DueJob {
                    job_id: r.try_get(0)?,
                    patient_id: r.try_get(1)?,
                    phone: r.try_get(2)?,
                    flow: r.try_get(3)?,
                    attempt: r.try_get(4)?,
                })
            };
            Ok(rows.iter().map(job).collect::<Result<_, _>>()?)
        })
    }

    fn close_days(&self, today: NaiveDate, now: DateTime<Utc>) -> Fut<'_, usize> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let patients: Vec<String> = sqlx::query_scalar(
                "update jobs set status = 'unreachable', outcome = 'day ended', lease_until = null, updated_at = $2
                 where day < $1 and status in ('planned', 'retry') returning patient_id",
            )
            .bind(today)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let alert = NewAlert::engine(&crate::store::campaign::day_ended());
            for p in &patients {
                raise_in(&mut tx, Some(p), None, &alert, now).await?;
            }
            let ended: Vec<(String, String)> = sqlx::query_as(
                "update jobs set status = 'unreachable', outcome = 'check-in ended', lease_until = null, updated_at = $1
                 where window_to <= $1 and status in ('planned', 'retry') returning patient_id, checkin",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            for (p, checkin) in &ended {
                let alert = NewAlert::engine(&crate::store::campaign::checkin_ended(checkin));
                raise_in(&mut tx, Some(p), None, &alert, now).await?;
            }
            let closed = (patients.len() + ended.len()) as u64;
            tx.commit().await?;
            Ok(closed as usize)
        })
    }

    fn settle_reported(&self, now: DateTime<Utc>, all: bool) -> Fut<'_, usize> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let n = settle_in(&mut tx, now, all).await?;
            tx.commit().await?;
            Ok(n)
        })
    }

    fn due_web_requests(&self, now: DateTime<Utc>, limit: i64) -> Fut<'_, Vec<WebRequest>> {
        fut(async move {
            let rows: Vec<(i64, PatientId, NaiveDate, String, DateTime<Utc>)> = sqlx::query_as(
                "select job_id, patient_id, day, checkin, due_at from jobs
                 where web_at <= $1 and web_sent_at is null and web_at is not null and status = 'planned'
                 order by web_at, job_id limit $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(job_id, patient_id, day, checkin, due_at)| WebRequest {
                    job_id,
                    patient_id,
                    day,
                    checkin,
                    due_at,
                })
                .collect())
        })
    }

    fn web_request_sent<'a>(
        &'a self,
        job_id: i64,
        message: Option<&'a NewMessage>,
        now: DateTime<Utc>,
    ) -> Fut<'a, bool> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let patient: Option<String> = sqlx::query_scalar(
                "update jobs set web_sent_at = $2 where job_id = $1 and web_sent_at is null returning patient_id",
            )
            .bind(job_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(patient) = patient else { return Ok(false) };
            if let Some(m) = message {
                sqlx::query(
                    "insert into outbox (patient_id, channel, recipient, body_sealed, next_attempt_at) values ($1, $2, $3, $4, $5)",
                )
                .bind(&patient)
                .bind(m.channel)
                .bind(&m.recipient)
                .bind(&m.body_sealed)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    fn active_jobs(&self) -> Fut<'_, i64> {
        fut(async move {
            Ok(sqlx::query_scalar("select count(*) from jobs where status in ('dialing', 'in-progress')")
                .fetch_one(&self.pool)
                .await?)
        })
    }

    fn attempt_dialed<'a>(&'a self, job_id: i64, attempt: i32, call_sid: &'a CallSid) -> Fut<'a, ()> {
        fut(async move {
            sqlx::query(
                "update job_attempts set call_sid = $3 where job_id = $1 and attempt = $2 and call_sid is null",
            )
            .bind(job_id)
            .bind(attempt)
            .bind(call_sid)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn attempt_progress<'a>(
        &'a self,
        job_id: i64,
        attempt: i32,
        status: &'a str,
        answered_by: Option<&'a str>,
        lease_until: DateTime<Utc>,
    ) -> Fut<'a, ()> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let open = sqlx::query(
                "update job_attempts set status = $3, answered_by = coalesce($4, answered_by)
                 where job_id = $1 and attempt = $2 and ended_at is null",
            )
            .bind(job_id)
            .bind(attempt)
            .bind(status)
            .bind(answered_by)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if open > 0 && status == "in-progress" {
                sqlx::query(
                    "update jobs set status = 'in-progress', lease_until = $3
                     where job_id = $1 and attempt = $2 and status = 'dialing'",
                )
                .bind(job_id)
                .bind(attempt)
                .bind(lease_until)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn end_attempt<'a>(
        &'a self,
        job_id: i64,
        attempt: i32,
        outcome: &'a str,
        answered_by: Option<&'a str>,
        next: &'a JobNext,
        now: DateTime<Utc>,
    ) -> Fut<'a, bool> {
        fut(async move {
            let mut tx = self.pool.begin().await?;
            let ended = sqlx::query(
                "update job_attempts set status = $3, answered_by = coalesce($4, answered_by), ended_at = $5
                 where job_id = $1 and attempt = $2 and ended_at is null",
            )
            .bind(job_id)
            .bind(attempt)
            .bind(outcome)
            .bind(answered_by)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if ended == 0 {
                return Ok(false);
            }
            let moved = sqlx::query(
                "update jobs set status = $3, outcome = $4, due_at = coalesce($5, due_at), lease_until = null, updated_at = $6
                 where job_id = $1 and attempt = $2 and status in ('dialing', 'in-progress')",
            )
            .bind(job_id)
            .bind(attempt)
            .bind(next.status())
            .bind(outcome)
            .bind(next.due_at())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let (1, Some(alert)) = (moved, next.alert()) {
                let patient: String = sqlx::query_scalar("select patient_id from jobs where job_id = $1")
                    .bind(job_id)
                    .fetch_one(&mut *tx)
                    .await?;
                raise_in(&mut tx, Some(&patient), None, &NewAlert::engine(&alert), now).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    fn stale_attempts(&self, now: DateTime<Utc>) -> Fut<'_, Vec<StaleAttempt>> {
        fut(async move {
            let rows = sqlx::query(
                "select a.job_id, a.attempt, a.call_sid, a.started_at, p.phone from jobs j
                 join job_attempts a on a.job_id = j.job_id and a.attempt = j.attempt
                 join patients p on p.patient_id = j.patient_id
                 where j.status in ('dialing', 'in-progress') and j.lease_until <= $1 and a.ended_at is null
                 order by j.job_id",
            )
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
            let stale = |r: &PgRow| -> Result<StaleAttempt, sqlx::Error> {
                Ok(StaleAttempt {
                    job_id: r.try_get(0)?,
                    attempt: r.try_get(1)?,
                    call_sid: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    phone: r.try_get(4)?,
                })
            };
            Ok(rows.iter().map(stale).collect::<Result<_, _>>()?)
        })
    }

    fn extend_lease(&self, job_id: i64, until: DateTime<Utc>) -> Fut<'_, ()> {
        fut(async move {
            sqlx::query("update jobs set lease_until = $2 where job_id = $1")
                .bind(job_id)
                .bind(until)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn jobs_for_day(&self, day: NaiveDate) -> Fut<'_, Vec<JobView>> {
        fut(async move {
            let rows = sqlx::query(
                "select job_id, patient_id, flow, day, status, attempt, outcome, due_at, checkin from jobs
                 where day = $1 order by patient_id collate \"C\", checkin, job_id",
            )
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
            let job = |r: &PgRow| -> Result<JobView, sqlx::Error> {
                Ok(JobView {
                    job_id: r.try_get(0)?,
                    patient_id: r.try_get(1)?,
                    flow: r.try_get(2)?,
                    day: r.try_get(3)?,
                    status: r.try_get(4)?,
                    attempt: r.try_get(5)?,
                    outcome: r.try_get(6)?,
                    due_at: r.try_get(7)?,
                    checkin: r.try_get(8)?,
                })
            };
            Ok(rows.iter().map(job).collect::<Result<_, _>>()?)
        })
    }

    fn attempts(&self, job_id: i64) -> Fut<'_, Vec<AttemptView>> {
        fut(async move {
            let rows = sqlx::query(
                "select attempt, call_sid, status, answered_by, started_at, ended_at is not null from job_attempts
                 where job_id = $1 order by attempt",
            )
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
            let attempt = |r: &PgRow| -> Result<AttemptView, sqlx::Error> {
                Ok(AttemptView {
                    attempt: r.try_get(0)?,
                    call_sid: r.try_get(1)?,
                    status: r.try_get(2)?,
                    answered_by: r.try_get(3)?,
                    started_at: r.try_get(4)?,
                    ended: r.try_get(5)?,
                })
            };
            Ok(rows.iter().map(attempt).collect::<Result<_, _>>()?)
        })
    }

    fn day_figures(&self, day: NaiveDate, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, DayFigures> {
        fut(async move {
            let sql = figures_sql("$1", "$2", "$3", "case when c.incomplete then '1' else '0' end");
            let rows: Vec<(Option<String>, String, i64, i64)> =
                sqlx::query_as(&sql).bind(day).bind(from).bind(to).fetch_all(&self.pool).await?;
            Ok(DayFigures::from_rows(rows))
        })
    }

    fn summary(&self, day: NaiveDate, since: DateTime<Utc>) -> Fut<'_, CampaignSummary> {
        fut(async move {
            let mut summary = CampaignSummary::default();
            let rows = sqlx::query("select status, count(*) from jobs where day = $1 group by status")
                .bind(day)
                .fetch_all(&self.pool)
                .await?;
            for r in rows {
                summary.jobs.insert(r.try_get(0)?, r.try_get(1)?);
            }
            let r = sqlx::query(
                "select count(*), count(*) filter (where a.status in ('no-answer', 'busy', 'failed', 'machine', 'lost', 'refused'))
                 from job_attempts a join jobs j on j.job_id = a.job_id where j.day = $1",
            )
            .bind(day)
            .fetch_one(&self.pool)
            .await?;
            (summary.attempts, summary.unanswered) = (r.try_get(0)?, r.try_get(1)?);
            let r = sqlx::query(
                "select (select count(*) from processing_numbers where issued_at >= $1),
                        (select count(*) from outbox where channel = 'sms' and provider_id is not null and created_at >= $1),
                        (select count(*) from alerts where created_at >= $1),
                        (select count(*) from calls where direction = 'web' and ended and created_at >= $1),
                        (select count(*) from jobs where day = $2 and web_sent_at is not null)",
            )
            .bind(since)
            .bind(day)
            .fetch_one(&self.pool)
            .await?;
            (summary.numbers_issued, summary.sms_sent, summary.alerts) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            (summary.web_reports, summary.web_requests) = (r.try_get(3)?, r.try_get(4)?);
            Ok(summary)
        })
    }
}
