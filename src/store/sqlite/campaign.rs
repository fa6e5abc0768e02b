//! Daily campaigns on SQLite (see [`super::campaign`]).

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::followups::raise_in;
use super::{SqliteStore, parse_sqlite_time, sqlite_time};
use crate::store::StoreError;
use crate::store::campaign::{
    AttemptView, CampaignSummary, DayFigures, DueJob, JobNext, JobView, NewJob, REPORTED_BY_PHONE, REPORTED_ON_WEB,
    ReportedPatient, StaleAttempt, WebRequest, figures_sql,
};
use crate::store::{Campaign, Fut, Job, NewAlert, NewMessage};
use crate::types::{CallSid, PatientId};

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

pub(super) fn create_job(conn: &mut Connection, patient_id: &str, flow: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("insert into jobs (patient_id, flow) values (?1, ?2)")?.execute([patient_id, flow])?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn job(conn: &Connection, job_id: i64) -> Result<Option<Job>, StoreError> {
    let mut st =
        conn.prepare_cached("select job_id, patient_id, flow, status, window_to from jobs where job_id = ?1")?;
    Ok(st
        .query_row([job_id], |r| {
            Ok(Job {
                job_id: r.get(0)?,
                patient_id: r.get(1)?,
                flow: r.get(2)?,
                status: r.get(3)?,
                window_to: r.get::<_, Option<String>>(4)?.map(|t| parse_sqlite_time(&t)),
            })
        })
        .optional()?)
}

pub(super) fn plan_jobs(conn: &mut Connection, jobs: &[NewJob]) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut new = 0;
    {
        let mut st = tx.prepare_cached(
            "insert into jobs (patient_id, flow, day, checkin, due_at, window_from, window_to, web_at, status, updated_at)
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'planned', ?5)
             on conflict (day, checkin, patient_id, flow) do nothing",
        )?;
        for j in jobs {
            let (from, to) = (j.window.map(|w| sqlite_time(w.0)), j.window.map(|w| sqlite_time(w.1)));
            new += st.execute(params![
                j.patient_id,
                j.flow,
                day_text(j.day),
                j.checkin,
                sqlite_time(j.due_at),
                from,
                to,
                j.web_at.map(sqlite_time)
            ])?;
        }
    }
    tx.commit()?;
    Ok(new)
}

pub(super) fn advance_jobs(
    conn: &mut Connection,
    day: NaiveDate,
    checkin: &str,
    due_at: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let t = sqlite_time(due_at);
    Ok(conn
        .prepare_cached(
            "update jobs set due_at = ?2, updated_at = ?2
             where day = ?1 and checkin = ?3 and status = 'planned' and due_at > ?2 and web_at is null",
        )?
        .execute(params![day_text(day), t, checkin])?)
}

pub(super) fn reported_patients(
    conn: &mut Connection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached(
        "select distinct patient_id from calls
         where ended = 1 and patient_id is not null and created_at >= ?1 and created_at < ?2",
    )?;
    let rows = st.query_map([sqlite_time(from), sqlite_time(to)], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn reported_by_channel(
    conn: &mut Connection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ReportedPatient>, StoreError> {
    let mut st = conn.prepare_cached(
        "select patient_id, max(direction = 'web') from calls
         where ended = 1 and patient_id is not null and created_at >= ?1 and created_at < ?2
         group by patient_id",
    )?;
    let rows = st.query_map([sqlite_time(from), sqlite_time(to)], |r| {
        Ok(ReportedPatient { patient_id: r.get(0)?, web: r.get(1)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Settles the jobs due at `t` (call or web request) whose patient reported in their window.
fn settle_in(tx: &Connection, t: &str, all: bool) -> Result<usize, StoreError> {
    Ok(tx
        .prepare_cached(
            "update jobs set status = 'reported', lease_until = null, updated_at = ?1,
               outcome = case when exists (
                 select 1 from calls c where c.patient_id = jobs.patient_id and c.ended = 1 and c.direction = 'web'
                   and c.created_at >= jobs.window_from and c.created_at < jobs.window_to) then ?2 else ?3 end
             where status in ('planned', 'retry') and window_from is not null
               and (?4 or due_at <= ?1 or (web_at <= ?1 and web_sent_at is null))
               and exists (
                 select 1 from calls c where c.patient_id = jobs.patient_id and c.ended = 1
                   and c.created_at >= jobs.window_from and c.created_at < jobs.window_to)",
        )?
        .execute(params![t, REPORTED_ON_WEB, REPORTED_BY_PHONE, all])?)
}

pub(super) fn settle_reported(conn: &mut Connection, now: DateTime<Utc>, all: bool) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = settle_in(&tx, &sqlite_time(now), all)?;
    tx.commit()?;
    Ok(n)
}

pub(super) fn due_web_requests(
    conn: &mut Connection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<WebRequest>, StoreError> {
    let mut st = conn.prepare_cached(
        "select job_id, patient_id, day, checkin, due_at from jobs
         where web_at <= ?1 and web_sent_at is null and web_at is not null and status = 'planned'
         order by web_at, job_id limit ?2",
    )?;
    let rows = st.query_map(params![sqlite_time(now), limit], |r| {
        Ok(WebRequest {
            job_id: r.get(0)?,
            patient_id: r.get(1)?,
            day: r.get::<_, String>(2)?.parse().unwrap_or_default(),
            checkin: r.get(3)?,
            due_at: parse_sqlite_time(&r.get::<_, String>(4)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn web_request_sent(
    conn: &mut Connection,
    job_id: i64,
    message: Option<&NewMessage>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let t = sqlite_time(now);
    let patient: Option<String> = tx
        .prepare_cached(
            "update jobs set web_sent_at = ?2 where job_id = ?1 and web_sent_at is null returning patient_id",
        )?
        .query_row(params![job_id, t], |r| r.get(0))
        .optional()?;
    let Some(patient) = patient else { return Ok(false) };
    if let Some(m) = message {
        tx.prepare_cached(
            "insert into outbox (patient_id, channel, recipient, body_sealed, next_attempt_at) values (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![patient, m.channel, m.recipient, m.body_sealed, t])?;
    }
    tx.commit()?;
    Ok(true)
}

pub(super) fn claim_jobs(
    conn: &mut Connection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DueJob>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let t = sqlite_time(now);
    // Reported in the job's window: settled, never dialled.
    settle_in(&tx, &t, false)?;
    let claimed = {
        let mut st = tx.prepare_cached(
            "update jobs set status = 'dialing', attempt = attempt + 1, lease_until = ?2, updated_at = ?1
             where job_id in (
               select job_id from jobs where status in ('planned', 'retry') and due_at <= ?1
               order by due_at, job_id limit ?3)
             returning job_id, patient_id, flow, attempt",
        )?;
        let rows = st.query_map(params![t, sqlite_time(lease_until), limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, PatientId>(1)?, r.get::<_, String>(2)?, r.get::<_, i32>(3)?))
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let mut jobs = Vec::with_capacity(claimed.len());
    {
        let mut attempt =
            tx.prepare_cached("insert into job_attempts (job_id, attempt, started_at) values (?1, ?2, ?3)")?;
        let mut phone = tx.prepare_cached("select phone from patients where patient_id = ?1")?;
        for (job_id, patient_id, flow, n) in claimed {
            attempt.execute(params![job_id, n, t])?;
            let phone = phone.query_row([&patient_id], |r| r.get(0))?;
            jobs.push(DueJob { job_id, patient_id, phone, flow, attempt: n });
        }
    }
    jobs.sort_by_key(|j| j.job_id);
    tx.commit()?;
    Ok(jobs)
}

pub(super) fn close_days(conn: &mut Connection, today: NaiveDate, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (day, t) = (day_text(today), sqlite_time(now));
    let patients: Vec<String> = tx
        .prepare_cached(
            "update jobs set status = 'unreachable', outcome = 'day ended', lease_until = null, updated_at = ?2
             where day < ?1 and status in ('planned', 'retry') returning patient_id",
        )?
        .query_map(params![day, t], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let alert = NewAlert::engine(&crate::store::campaign::day_ended());
    for p in &patients {
        raise_in(&tx, Some(p), None, &alert, now)?;
    }
    let ended: Vec<(String, String)> = tx
        .prepare_cached(
            "update jobs set status = 'unreachable', outcome = 'check-in ended', lease_until = null, updated_at = ?1
             where window_to <= ?1 and status in ('planned', 'retry') returning patient_id, checkin",
        )?
        .query_map(params![t], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (p, checkin) in &ended {
        raise_in(&tx, Some(p), None, &NewAlert::engine(&crate::store::campaign::checkin_ended(checkin)), now)?;
    }
    let closed = patients.len() + ended.len();
    tx.commit()?;
    Ok(closed)
}

pub(super) fn active_jobs(conn: &mut Connection) -> Result<i64, StoreError> {
    let mut st = conn.prepare_cached("select count(*) from jobs where status in ('dialing', 'in-progress')")?;
    Ok(st.query_row([], |r| r.get(0))?)
}

pub(super) fn attempt_dialed(
    conn: &mut Connection,
    job_id: i64,
    attempt: i32,
    call_sid: &CallSid,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "update job_attempts set call_sid = ?3 where job_id = ?1 and attempt = ?2 and call_sid is null",
    )?
    .execute(params![job_id, attempt, call_sid])?;
    Ok(())
}

pub(super) fn attempt_progress(
    conn: &mut Connection,
    job_id: i64,
    attempt: i32,
    status: &str,
    answered_by: Option<&str>,
    lease_until: DateTime<Utc>,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let open = tx
        .prepare_cached(
            "update job_attempts set status = ?3, answered_by = coalesce(?4, answered_by)
             where job_id = ?1 and attempt = ?2 and ended_at is null",
        )?
        .execute(params![job_id, attempt, status, answered_by])?;
    if open > 0 && status == "in-progress" {
        tx.prepare_cached(
            "update jobs set status = 'in-progress', lease_until = ?3
             where job_id = ?1 and attempt = ?2 and status = 'dialing'",
        )?
        .execute(params![job_id, attempt, sqlite_time(lease_until)])?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn end_attempt(
    conn: &mut Connection,
    job_id: i64,
    attempt: i32,
    outcome: &str,
    answered_by: Option<&str>,
    next: &JobNext,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let t = sqlite_time(now);
    let ended = tx
        .prepare_cached(
            "update job_attempts set status = ?3, answered_by = coalesce(?4, answered_by), ended_at = ?5
             where job_id = ?1 and attempt = ?2 and ended_at is null",
        )?
        .execute(params![job_id, attempt, outcome, answered_by, t])?;
    if ended == 0 {
        return Ok(false);
    }
    let moved = tx
        .prepare_cached(
            "update jobs set status = ?3, outcome = ?4, due_at = coalesce(?5, due_at), lease_until = null, updated_at = ?6
             where job_id = ?1 and attempt = ?2 and status in ('dialing', 'in-progress')",
        )?
        .execute(params![job_id, attempt, next.status(), outcome, next.due_at().map(sqlite_time), t])?;
    if let (1, Some(alert)) = (moved, next.alert()) {
        let patient: String =
            tx.prepare_cached("select patient_id from jobs where job_id = ?1")?.query_row([job_id], |r| r.get(0))?;
        raise_in(&tx, Some(&patient), None, &NewAlert::engine(&alert), now)?;
    }
    tx.commit()?;
    Ok(true)
}

pub(super) fn stale_attempts(conn: &mut Connection, now: DateTime<Utc>) -> Result<Vec<StaleAttempt>, StoreError> {
    let mut st = conn.prepare_cached(
        "select a.job_id, a.attempt, a.call_sid, a.started_at, p.phone from jobs j
         join job_attempts a on a.job_id = j.job_id and a.attempt = j.attempt
         join patients p on p.patient_id = j.patient_id
         where j.status in ('dialing', 'in-progress') and j.lease_until <= ?1 and a.ended_at is null
         order by j.job_id",
    )?;
    let rows = st.query_map([sqlite_time(now)], |r| {
        Ok(StaleAttempt {
            job_id: r.get(0)?,
            attempt: r.get(1)?,
            call_sid: r.get(2)?,
            started_at: parse_sqlite_time(&r.get::<_, String>(3)?),
            phone: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn extend_lease(conn: &mut Connection, job_id: i64, until: DateTime<Utc>) -> Result<(), StoreError> {
    conn.prepare_cached("update jobs set lease_until = ?2 where job_id = ?1")?
        .execute(params![job_id, sqlite_time(until)])?;
    Ok(())
}

pub(super) fn jobs_for_day(conn: &mut Connection, day: NaiveDate) -> Result<Vec<JobView>, StoreError> {
    let mut st = conn.prepare_cached(
        "select job_id, patient_id, flow, day, status, attempt, outcome, due_at, checkin from jobs
         where day = ?1 order by patient_id, checkin, job_id",
    )?;
    let rows = st.query_map([day_text(day)], |r| {
        Ok(JobView {
            job_id: r.get(0)?,
            patient_id: r.get(1)?,
            flow: r.get(2)?,
            day: r.get::<_, Option<String>>(3)?.and_then(|d| d.parse().ok()),
            status: r.get(4)?,
            attempt: r.get(5)?,
            outcome: r.get(6)?,
            due_at: r.get::<_, Option<String>>(7)?.map(|t| parse_sqlite_time(&t)),
            checkin: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn attempts(conn: &mut Connection, job_id: i64) -> Result<Vec<AttemptView>, StoreError> {
    let mut st = conn.prepare_cached(
        "select attempt, call_sid, status, answered_by, started_at, ended_at is not null from job_attempts
         where job_id = ?1 order by attempt",
    )?;
    let rows = st.query_map([job_id], |r| {
        Ok(AttemptView {
            attempt: r.get(0)?,
            call_sid: r.get(1)?,
            status: r.get(2)?,
            answered_by: r.get(3)?,
            started_at: parse_sqlite_time(&r.get::<_, String>(4)?),
            ended: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn campaign_summary(
    conn: &mut Connection,
    day: NaiveDate,
    since: DateTime<Utc>,
) -> Result<CampaignSummary, StoreError> {
    let mut summary = CampaignSummary::default();
    let mut st = conn.prepare_cached("select status, count(*) from jobs where day = ?1 group by status")?;
    for row in st.query_map([day_text(day)], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (status, n) = row?;
        summary.jobs.insert(status, n);
    }
    let mut st = conn.prepare_cached(
        "select count(*), coalesce(sum(a.status in ('no-answer', 'busy', 'failed', 'machine', 'lost', 'refused')), 0)
         from job_attempts a join jobs j on j.job_id = a.job_id where j.day = ?1",
    )?;
    (summary.attempts, summary.unanswered) = st.query_row([day_text(day)], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let t = sqlite_time(since);
    let count = |sql: &str| -> Result<i64, StoreError> { Ok(conn.prepare_cached(sql)?.query_row([&t], |r| r.get(0))?) };
    summary.numbers_issued = count("select count(*) from processing_numbers where issued_at >= ?1")?;
    summary.sms_sent =
        count("select count(*) from outbox where channel = 'sms' and provider_id is not null and created_at >= ?1")?;
    summary.alerts = count("select count(*) from alerts where created_at >= ?1")?;
    summary.web_reports =
        count("select count(*) from calls where direction = 'web' and ended = 1 and created_at >= ?1")?;
    summary.web_requests = conn
        .prepare_cached("select count(*) from jobs where day = ?1 and web_sent_at is not null")?
        .query_row([day_text(day)], |r| r.get(0))?;
    Ok(summary)
}

pub(super) fn day_figures(
    conn: &mut Connection,
    day: NaiveDate,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<DayFigures, StoreError> {
    let mut st = conn.prepare_cached(&figures_sql("?1", "?2", "?3", "c.incomplete"))?;
    let rows = st.query_map(params![day_text(day), sqlite_time(from), sqlite_time(to)], |r| {
        Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
    })?;
    Ok(DayFigures::from_rows(rows.collect::<Result<Vec<_>, _>>()?))
}

impl Campaign for SqliteStore {
    fn create_job<'a>(&'a self, patient_id: &'a str, flow: &'a str) -> Fut<'a, i64> {
        let (patient_id, flow) = (patient_id.to_owned(), flow.to_owned());
        self.write(move |c| create_job(c, &patient_id, &flow))
    }

    fn job(&self, job_id: i64) -> Fut<'_, Option<Job>> {
        self.read(move |c| job(c, job_id))
    }

    fn plan_jobs<'a>(&'a self, jobs: &'a [NewJob]) -> Fut<'a, usize> {
        let jobs = jobs.to_vec();
        self.write(move |c| plan_jobs(c, &jobs))
    }

    fn advance_jobs<'a>(&'a self, day: NaiveDate, checkin: &'a str, due_at: DateTime<Utc>) -> Fut<'a, usize> {
        let checkin = checkin.to_owned();
        self.write(move |c| advance_jobs(c, day, &checkin, due_at))
    }

    fn reported_patients(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, Vec<String>> {
        self.read(move |c| reported_patients(c, from, to))
    }

    fn reported_by_channel(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, Vec<ReportedPatient>> {
        self.read(move |c| reported_by_channel(c, from, to))
    }

    fn claim_jobs(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Fut<'_, Vec<DueJob>> {
        self.write(move |c| claim_jobs(c, now, lease_until, limit))
    }

    fn close_days(&self, today: NaiveDate, now: DateTime<Utc>) -> Fut<'_, usize> {
        self.write(move |c| close_days(c, today, now))
    }

    fn active_jobs(&self) -> Fut<'_, i64> {
        self.read(active_jobs)
    }

    fn settle_reported(&self, now: DateTime<Utc>, all: bool) -> Fut<'_, usize> {
        self.write(move |c| settle_reported(c, now, all))
    }

    fn due_web_requests(&self, now: DateTime<Utc>, limit: i64) -> Fut<'_, Vec<WebRequest>> {
        self.read(move |c| due_web_requests(c, now, limit))
    }

    fn web_request_sent<'a>(
        &'a self,
        job_id: i64,
        message: Option<&'a NewMessage>,
        now: DateTime<Utc>,
    ) -> Fut<'a, bool> {
        let message = message.cloned();
        self.write(move |c| web_request_sent(c, job_id, message.as_ref(), now))
    }

    fn attempt_dialed<'a>(&'a self, job_id: i64, attempt: i32, call_sid: &'a CallSid) -> Fut<'a, ()> {
        let call_sid = call_sid.clone();
        self.write(move |c| attempt_dialed(c, job_id, attempt, &call_sid))
    }

    fn attempt_progress<'a>(
        &'a self,
        job_id: i64,
        attempt: i32,
        status: &'a str,
        answered_by: Option<&'a str>,
        lease_until: DateTime<Utc>,
    ) -> Fut<'a, ()> {
        let (status, answered_by) = (status.to_owned(), answered_by.map(str::to_owned));
        self.write(move |c| attempt_progress(c, job_id, attempt, &status, answered_by.as_deref(), lease_until))
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
        let (outcome, answered_by, next) = (outcome.to_owned(), answered_by.map(str::to_owned), next.clone());
        self.write(move |c| end_attempt(c, job_id, attempt, &outcome, answered_by.as_deref(), &next, now))
    }

    fn stale_attempts(&self, now: DateTime<Utc>) -> Fut<'_, Vec<StaleAttempt>> {
        self.read(move |c| stale_attempts(c, now))
    }

    fn extend_lease(&self, job_id: i64, until: DateTime<Utc>) -> Fut<'_, ()> {
        self.write(move |c| extend_lease(c, job_id, until))
    }

    fn jobs_for_day(&self, day: NaiveDate) -> Fut<'_, Vec<JobView>> {
        self.read(move |c| jobs_for_day(c, day))
    }

    fn attempts(&self, job_id: i64) -> Fut<'_, Vec<AttemptView>> {
        self.read(move |c| attempts(c, job_id))
    }

    fn summary(&self, day: NaiveDate, since: DateTime<Utc>) -> Fut<'_, CampaignSummary> {
        self.read(move |c| campaign_summary(c, day, since))
    }

    fn day_figures(&self, day: NaiveDate, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, DayFigures> {
        self.read(move |c| day_figures(c, day, from, to))
    }
}
