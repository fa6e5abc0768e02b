//! Daily campaigns in the store: jobs planned for a day, claimed by dialers with a lease (so
//! several instances share a campaign), and their attempts, each a row of its own, dialled once.
//!
//! A dialer claims due jobs and commits before it calls the carrier: the claim creates the
//! attempt's row, so a crash after the claim can never lead to the same attempt being dialled
//! again. The carrier's status callbacks end an attempt exactly once (`ended_at` is set by the
//! first final status); what follows (done, retry at a time, unreachable) is decided by the
//! dialer's policy and written in the same transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use super::{Store, StoreError};

/// A job to plan: one patient's call for one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub patient_id: String,
    pub flow: String,
    pub day: NaiveDate,
    pub due_at: DateTime<Utc>,
}

/// A job claimed for dialling: its attempt number is already taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueJob {
    pub job_id: i64,
    pub patient_id: String,
    /// E.164.
    pub phone: String,
    pub flow: String,
    /// This attempt's number, from 1.
    pub attempt: i32,
}

/// An attempt whose dialer's lease ran out before it ended (the process stopped, or the
/// carrier's callbacks were lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleAttempt {
    pub job_id: i64,
    pub attempt: i32,
    pub call_sid: Option<String>,
    pub started_at: DateTime<Utc>,
}

/// What happens to a job after an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobNext {
    /// The call went through; nothing more today.
    Done,
    /// Dial again from this time.
    Retry(DateTime<Utc>),
    /// No more attempts today: the health centre is alerted with this reason.
    Unreachable(String),
    /// The carrier refused the number for good: the health centre is alerted with this reason.
    Failed(String),
}

impl JobNext {
    pub(super) fn status(&self) -> &'static str {
        match self {
            JobNext::Done => "done",
            JobNext::Retry(_) => "retry",
            JobNext::Unreachable(_) => "unreachable",
            JobNext::Failed(_) => "failed",
        }
    }

    pub(super) fn alert(&self) -> Option<&str> {
        match self {
            JobNext::Unreachable(r) | JobNext::Failed(r) => Some(r),
            _ => None,
        }
    }

    pub(super) fn due_at(&self) -> Option<DateTime<Utc>> {
        match self {
            JobNext::Retry(t) => Some(*t),
            _ => None,
        }
    }
}

/// A job as stored, for the health centre and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    pub job_id: i64,
    pub patient_id: String,
    pub flow: String,
    pub day: Option<NaiveDate>,
    pub status: String,
    pub attempt: i32,
    pub outcome: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
}

/// One dial of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptView {
    pub attempt: i32,
    pub call_sid: Option<String>,
    pub status: String,
    pub answered_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended: bool,
}

/// Where a day's campaign stands: jobs by status, and what the calls produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignSummary {
    /// planned, dialing, in-progress, retry, done, unreachable, failed → count.
    pub jobs: BTreeMap<String, i64>,
    /// Attempts dialled.
    pub attempts: i64,
    /// Attempts that ended unanswered (no-answer, busy, machine, failed, lost).
    pub unanswered: i64,
    pub numbers_issued: i64,
    pub sms_sent: i64,
    pub alerts: i64,
}

impl CampaignSummary {
    pub fn count(&self, status: &str) -> i64 {
        self.jobs.get(status).copied().unwrap_or(0)
    }

    /// Jobs that will not be dialled again today.
    pub fn finished(&self) -> i64 {
        self.count("done") + self.count("unreachable") + self.count("failed")
    }

    pub fn total(&self) -> i64 {
        self.jobs.values().sum()
    }
}

/// The alert for a patient whose call for a day could not be placed before the day ended.
pub const DAY_ENDED: &str = "unreachable: the day ended before the call could be placed";

/// Statuses of a job still being worked on.
pub const ACTIVE: [&str; 2] = ["dialing", "in-progress"];

impl Store {
    /// Plans jobs; a job already planned for the same day, patient and flow is left as it is.
    /// Returns how many are new.
    pub async fn plan_jobs(&self, jobs: &[NewJob]) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.plan_jobs(jobs),
            Store::Postgres(s) => s.plan_jobs(jobs).await,
        }
    }

    /// Brings the day's jobs not yet dialled forward to `due_at` (a campaign started by hand
    /// with `--now`); returns how many moved.
    pub async fn advance_jobs(&self, day: NaiveDate, due_at: DateTime<Utc>) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.advance_jobs(day, due_at),
            Store::Postgres(s) => s.advance_jobs(day, due_at).await,
        }
    }

    /// Patients whose call for the day already went through (the flow reached its end) between
    /// `from` and `to`: they are not called again that day.
    pub async fn reported_patients(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.reported_patients(from, to),
            Store::Postgres(s) => s.reported_patients(from, to).await,
        }
    }

    /// Claims up to `limit` jobs due at `now`, taking each one's next attempt and a lease until
    /// `lease_until`, and commits before anything is dialled.
    pub async fn claim_jobs(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueJob>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim_jobs(now, lease_until, limit),
            Store::Postgres(s) => s.claim_jobs(now, lease_until, limit).await,
        }
    }

    /// Jobs of days before `today` still waiting to be dialled are given up (the day ended, or
    /// its calling hours did before the calls could be placed), each with an alert. Returns
    /// how many.
    pub async fn close_days(&self, today: NaiveDate, now: DateTime<Utc>) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.close_days(today, now),
            Store::Postgres(s) => s.close_days(today, now).await,
        }
    }

    /// Jobs being dialled or in a call, by every instance: the concurrency limit counts them.
    pub async fn active_jobs(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(s) => s.active_jobs(),
            Store::Postgres(s) => s.active_jobs().await,
        }
    }

    /// The carrier accepted the attempt's call under this id.
    pub async fn attempt_dialed(&self, job_id: i64, attempt: i32, call_sid: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.attempt_dialed(job_id, attempt, call_sid),
            Store::Postgres(s) => s.attempt_dialed(job_id, attempt, call_sid).await,
        }
    }

    /// A progress status of an attempt not yet ended (ringing, in-progress); an answered call
    /// moves its job to in-progress. Late or replayed callbacks change nothing.
    pub async fn attempt_progress(
        &self,
        job_id: i64,
        attempt: i32,
        status: &str,
        answered_by: Option<&str>,
        lease_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.attempt_progress(job_id, attempt, status, answered_by, lease_until),
            Store::Postgres(s) => s.attempt_progress(job_id, attempt, status, answered_by, lease_until).await,
        }
    }

    /// Ends an attempt with `outcome` and moves its job on (`next`), raising an alert when the
    /// job is given up. Only the first end counts: returns false, changing nothing, when the
    /// attempt had already ended.
    pub async fn end_attempt(
        &self,
        job_id: i64,
        attempt: i32,
        outcome: &str,
        answered_by: Option<&str>,
        next: &JobNext,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.end_attempt(job_id, attempt, outcome, answered_by, next, now),
            Store::Postgres(s) => s.end_attempt(job_id, attempt, outcome, answered_by, next, now).await,
        }
    }

    /// Attempts not ended whose job's lease ran out at `now`.
    pub async fn stale_attempts(&self, now: DateTime<Utc>) -> Result<Vec<StaleAttempt>, StoreError> {
        match self {
            Store::Sqlite(s) => s.stale_attempts(now),
            Store::Postgres(s) => s.stale_attempts(now).await,
        }
    }

    /// Keeps a job leased (its call is still going on).
    pub async fn extend_lease(&self, job_id: i64, until: DateTime<Utc>) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.extend_lease(job_id, until),
            Store::Postgres(s) => s.extend_lease(job_id, until).await,
        }
    }

    /// A day's jobs, by patient.
    pub async fn jobs_for_day(&self, day: NaiveDate) -> Result<Vec<JobView>, StoreError> {
        match self {
            Store::Sqlite(s) => s.jobs_for_day(day),
            Store::Postgres(s) => s.jobs_for_day(day).await,
        }
    }

    /// A job's attempts, first first.
    pub async fn attempts(&self, job_id: i64) -> Result<Vec<AttemptView>, StoreError> {
        match self {
            Store::Sqlite(s) => s.attempts(job_id),
            Store::Postgres(s) => s.attempts(job_id).await,
        }
    }

    /// Where the day's campaign stands; numbers, SMS and alerts are counted from `since`.
    pub async fn campaign_summary(&self, day: NaiveDate, since: DateTime<Utc>) -> Result<CampaignSummary, StoreError> {
        match self {
            Store::Sqlite(s) => s.campaign_summary(day, since),
            Store::Postgres(s) => s.campaign_summary(day, since).await,
        }
    }
}
