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

use super::{Fut, NewMessage};
use crate::types::{Alert, AlertKind, CallSid, E164, PatientId};

/// A call to be placed (a job created by hand, or planned for a day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub job_id: i64,
    pub patient_id: PatientId,
    pub flow: String,
    pub status: String,
    /// The end of the job's check-in: its retries stay before it (`None`: a job created by
    /// hand, or planned before check-ins).
    pub window_to: Option<DateTime<Utc>>,
}

/// A job to plan: one patient's call for one check-in of a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub patient_id: PatientId,
    pub flow: String,
    pub day: NaiveDate,
    /// The check-in, `HH:MM` local time (`00:00` for a day's only one).
    pub checkin: String,
    pub due_at: DateTime<Utc>,
    /// The check-in's window: a report finished in it settles the job without a call, and
    /// retries stay before its end. `None`: the job is dialled whatever was reported.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// When the patient's web request goes out (a patient with a live link); the call is due
    /// after it. `None`: no web request.
    pub web_at: Option<DateTime<Utc>>,
}

/// A web request due: the job whose patient is asked to report on the web first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRequest {
    pub job_id: i64,
    pub patient_id: PatientId,
    pub day: NaiveDate,
    /// The check-in, `HH:MM`.
    pub checkin: String,
    /// When the call is due if no report comes first.
    pub due_at: DateTime<Utc>,
}

/// A patient who finished a report in a window, and whether on the web.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedPatient {
    pub patient_id: String,
    pub web: bool,
}

/// How a job settled because its patient reported before the call: its outcome.
pub const REPORTED_ON_WEB: &str = "reported on the web";
/// See [`REPORTED_ON_WEB`].
pub const REPORTED_BY_PHONE: &str = "reported by phone";

/// A job claimed for dialling: its attempt number is already taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueJob {
    pub job_id: i64,
    pub patient_id: PatientId,
    pub phone: E164,
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
    pub call_sid: Option<CallSid>,
    pub started_at: DateTime<Utc>,
    /// The patient's number: where a call whose id was never recorded is looked for.
    pub phone: E164,
}

/// What happens to a job after an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobNext {
    /// The call went through; nothing more today.
    Done,
    /// Dial again from this time.
    Retry(DateTime<Utc>),
    /// No more attempts today: the health centre is alerted (`unreachable`) with this detail.
    Unreachable(String),
    /// The carrier refused the number for good: the health centre is alerted (`unreachable`)
    /// with this detail.
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

    pub(super) fn alert(&self) -> Option<Alert> {
        match self {
            JobNext::Unreachable(r) | JobNext::Failed(r) => Some(Alert::new(AlertKind::Unreachable, r.as_str())),
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
    pub patient_id: PatientId,
    pub flow: String,
    pub day: Option<NaiveDate>,
    /// The check-in, `HH:MM`.
    pub checkin: String,
    pub status: String,
    pub attempt: i32,
    pub outcome: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
}

/// One dial of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptView {
    pub attempt: i32,
    pub call_sid: Option<CallSid>,
    pub status: String,
    pub answered_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended: bool,
}

/// Where a day's campaign stands: jobs by status, and what the calls produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignSummary {
    /// planned, dialing, in-progress, retry, done, reported, unreachable, failed → count
    /// (`reported`: settled without a call, the patient reported first).
    pub jobs: BTreeMap<String, i64>,
    /// Attempts dialled.
    pub attempts: i64,
    /// Attempts that ended unanswered (no-answer, busy, machine, failed, lost).
    pub unanswered: i64,
    pub numbers_issued: i64,
    /// SMS the carrier accepted (each message counted once, however many times it was sent): a
    /// later `undelivered` report takes none back, so the figure never goes down.
    pub sms_sent: i64,
    pub alerts: i64,
    /// Web requests sent for the day's check-ins.
    pub web_requests: i64,
    /// Web reports finished (calls with direction `web`).
    pub web_reports: i64,
}

impl CampaignSummary {
    pub fn count(&self, status: &str) -> i64 {
        self.jobs.get(status).copied().unwrap_or(0)
    }

    /// Jobs that will not be dialled again today.
    pub fn finished(&self) -> i64 {
        self.count("done") + self.count("reported") + self.count("unreachable") + self.count("failed")
    }

    pub fn total(&self) -> i64 {
        self.jobs.values().sum()
    }
}

/// One area's figures for a day (the Today page, `GET /api/v1/today`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AreaDay {
    /// The roster's area; empty for patients without one.
    pub area: String,
    /// The day's jobs by status: planned, dialing, in-progress, retry, done, unreachable, failed.
    pub jobs: BTreeMap<String, i64>,
    /// Attempts dialled for the day's jobs.
    pub attempts: i64,
    /// Calls that began in the day (answered outbound calls and inbound calls).
    pub calls: i64,
    /// Of those, calls the patient hung up before the flow ended.
    pub hung_up: i64,
    /// Processing numbers issued in the day (in calls and by staff).
    pub numbers_issued: i64,
    /// SMS written in the day that the carrier reported delivered.
    pub sms_delivered: i64,
    /// SMS written in the day that could not be delivered (failed, or given up).
    pub sms_failed: i64,
    /// Follow-up items open or claimed now.
    pub followups_open: i64,
}

impl AreaDay {
    pub fn count(&self, status: &str) -> i64 {
        self.jobs.get(status).copied().unwrap_or(0)
    }

    /// Jobs planned for the day, whatever their status.
    pub fn planned(&self) -> i64 {
        self.jobs.values().sum()
    }

    /// Adds one row of the store's figures query: `what` is `job:STATUS`, `calls:0` (whole) /
    /// `calls:1` (hung up), `numbers`, `sms:STATUS` or `followups`.
    fn add(&mut self, what: &str, n: i64) {
        match what {
            "calls:0" => self.calls += n,
            "calls:1" => {
                self.calls += n;
                self.hung_up += n;
            }
            "numbers" => self.numbers_issued += n,
            "sms:delivered" => self.sms_delivered += n,
            "sms:failed" | "sms:dead" => self.sms_failed += n,
            "followups" => self.followups_open += n,
            other => {
                if let Some(status) = other.strip_prefix("job:") {
                    *self.jobs.entry(status.to_string()).or_default() += n;
                }
            }
        }
    }

    fn merge(&mut self, other: &AreaDay) {
        for (status, n) in &other.jobs {
            *self.jobs.entry(status.clone()).or_default() += n;
        }
        self.attempts += other.attempts;
        self.calls += other.calls;
        self.hung_up += other.hung_up;
        self.numbers_issued += other.numbers_issued;
        self.sms_delivered += other.sms_delivered;
        self.sms_failed += other.sms_failed;
        self.followups_open += other.followups_open;
    }
}

/// A day's campaign per area, as one query of the store reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayFigures {
    /// By area name, patients without an area (`""`) last.
    pub areas: Vec<AreaDay>,
}

impl DayFigures {
    /// The figures from the rows of the figures query: (area, what, count, attempts).
    pub fn from_rows(rows: impl IntoIterator<Item = (Option<String>, String, i64, i64)>) -> DayFigures {
        let mut areas: BTreeMap<String, AreaDay> = BTreeMap::new();
        for (area, what, n, attempts) in rows {
            let area = area.unwrap_or_default();
            let a = areas.entry(area.clone()).or_insert_with(|| AreaDay { area, ..AreaDay::default() });
            a.add(&what, n);
            a.attempts += attempts;
        }
        let mut areas: Vec<AreaDay> = areas.into_values().collect();
        areas.sort_by_key(|a| (a.area.is_empty(), a.area.clone()));
        DayFigures { areas }
    }

    /// Every area together.
    pub fn total(&self) -> AreaDay {
        let mut total = AreaDay::default();
        for a in &self.areas {
            total.merge(a);
        }
        total
    }
}

/// The figures query of both back ends, with placeholders `{day}` (the day), `{from}` and
/// `{to}` (the day's bounds) and `{hung}` (a call's `incomplete` as 0 or 1): rows of (area,
/// what, count, attempts) for [`DayFigures::from_rows`]. One statement; each part counts the
/// area its rows carry (migration 21) in an index that holds every column it reads, no patient
/// looked up: `jobs_day_area` (the jobs by status with their attempts: a job's `attempt` is the
/// number of attempts it took), `calls_created`, `processing_numbers_issued`, `outbox_created`
/// and `followups_open_area`.
pub fn figures_sql(day: &str, from: &str, to: &str, hung: &str) -> String {
    format!(
        "select j.area, 'job:' || j.status, count(*), sum(j.attempt) from jobs j
          where j.day = {day} group by j.area, j.status
         union all
         select c.area, 'calls:' || {hung}, count(*), 0 from calls c
          where c.created_at >= {from} and c.created_at < {to} group by c.area, {hung}
         union all
         select n.area, 'numbers', count(*), 0 from processing_numbers n
          where n.issued_at >= {from} and n.issued_at < {to} group by n.area
         union all
         select o.area, 'sms:' || o.status, count(*), 0 from outbox o
          where o.created_at >= {from} and o.created_at < {to} and o.channel = 'sms'
            and o.status in ('delivered', 'failed', 'dead') group by o.area, o.status
         union all
         select f.area, 'followups', count(*), 0 from followups f where f.status <> 'closed' group by f.area"
    )
}

/// The alert for a patient whose call for a day could not be placed before the day ended.
pub fn day_ended() -> Alert {
    Alert::new(AlertKind::Unreachable, "the day ended before the call could be placed")
}

/// The alert for a patient whose call for a check-in could not be placed before the next one.
pub fn checkin_ended(checkin: &str) -> Alert {
    Alert::new(AlertKind::Unreachable, format!("the {checkin} check-in ended before the call could be placed"))
}

/// Statuses of a job still being worked on.
pub const ACTIVE: [&str; 2] = ["dialing", "in-progress"];

/// The campaigns' operations (`store.campaign()`): jobs, planned or created by hand, and their
/// attempts.
pub trait Campaign {
    /// A job created by hand (not planned for a day).
    fn create_job<'a>(&'a self, patient_id: &'a str, flow: &'a str) -> Fut<'a, i64>;
    fn job(&self, job_id: i64) -> Fut<'_, Option<Job>>;
    /// Plans jobs; a job already planned for the same day, check-in, patient and flow is left
    /// as it is. Returns how many are new.
    fn plan_jobs<'a>(&'a self, jobs: &'a [NewJob]) -> Fut<'a, usize>;
    /// Brings the jobs of a day's check-in not yet dialled forward to `due_at` (a campaign
    /// started by hand with `--now`), those waiting for a web report first aside; returns how
    /// many moved.
    fn advance_jobs<'a>(&'a self, day: NaiveDate, checkin: &'a str, due_at: DateTime<Utc>) -> Fut<'a, usize>;
    /// Patients whose call for the day already went through (the flow reached its end) between
    /// `from` and `to`, or who sent their report on the web then (a call with direction `web`):
    /// they are not called again that day.
    fn reported_patients(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, Vec<String>>;
    /// [`Campaign::reported_patients`], each with whether they reported on the web (a patient
    /// who reported both ways counts as on the web).
    fn reported_by_channel(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, Vec<ReportedPatient>>;
    /// Claims up to `limit` jobs due at `now`, taking each one's next attempt and a lease until
    /// `lease_until`, and commits before anything is dialled. Due jobs whose patient finished a
    /// report in the job's window are settled first, never dialled (status `reported`, outcome
    /// [`REPORTED_ON_WEB`] or [`REPORTED_BY_PHONE`]).
    fn claim_jobs(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Fut<'_, Vec<DueJob>>;
    /// Jobs of days before `today` still waiting to be dialled are given up (the day ended, or
    /// its calling hours did before the calls could be placed), and so are those whose
    /// check-in's window ended by `now`, each with an alert. Returns how many.
    fn close_days(&self, today: NaiveDate, now: DateTime<Utc>) -> Fut<'_, usize>;
    /// Settles the jobs due by `now` (their call, or their web request), or with `all` every
    /// job not yet dialled, whose patient finished a report in the job's window: status
    /// `reported`, never dialled nor asked. Returns how many.
    fn settle_reported(&self, now: DateTime<Utc>, all: bool) -> Fut<'_, usize>;
    /// Planned jobs whose web request is due at `now` and not sent, at most `limit`.
    fn due_web_requests(&self, now: DateTime<Utc>, limit: i64) -> Fut<'_, Vec<WebRequest>>;
    /// Records the job's web request as sent at `now` and puts its message (if any: a patient
    /// with no way to reach gets none) in the outbox, in one transaction. Returns false,
    /// changing nothing, when it was sent already.
    fn web_request_sent<'a>(
        &'a self,
        job_id: i64,
        message: Option<&'a NewMessage>,
        now: DateTime<Utc>,
    ) -> Fut<'a, bool>;
    /// Jobs being dialled or in a call, by every instance: the concurrency limit counts them.
    fn active_jobs(&self) -> Fut<'_, i64>;
    /// The carrier accepted the attempt's call under this id.
    fn attempt_dialed<'a>(&'a self, job_id: i64, attempt: i32, call_sid: &'a CallSid) -> Fut<'a, ()>;
    /// A progress status of an attempt not yet ended (ringing, in-progress); an answered call
    /// moves its job to in-progress. Late or replayed callbacks change nothing.
    fn attempt_progress<'a>(
        &'a self,
        job_id: i64,
        attempt: i32,
        status: &'a str,
        answered_by: Option<&'a str>,
        lease_until: DateTime<Utc>,
    ) -> Fut<'a, ()>;
    /// Ends an attempt with `outcome` and moves its job on (`next`), raising an alert when the
    /// job is given up. Only the first end counts: returns false, changing nothing, when the
    /// attempt had already ended.
    fn end_attempt<'a>(
        &'a self,
        job_id: i64,
        attempt: i32,
        outcome: &'a str,
        answered_by: Option<&'a str>,
        next: &'a JobNext,
        now: DateTime<Utc>,
    ) -> Fut<'a, bool>;
    /// Attempts not ended whose job's lease ran out at `now`.
    fn stale_attempts(&self, now: DateTime<Utc>) -> Fut<'_, Vec<StaleAttempt>>;
    /// Keeps a job leased (its call is still going on).
    fn extend_lease(&self, job_id: i64, until: DateTime<Utc>) -> Fut<'_, ()>;
    /// A day's jobs, by patient.
    fn jobs_for_day(&self, day: NaiveDate) -> Fut<'_, Vec<JobView>>;
    /// A job's attempts, first first.
    fn attempts(&self, job_id: i64) -> Fut<'_, Vec<AttemptView>>;
    /// Where the day's campaign stands; numbers, SMS and alerts are counted from `since`.
    fn summary(&self, day: NaiveDate, since: DateTime<Utc>) -> Fut<'_, CampaignSummary>;
    /// The day's campaign per area (see [`DayFigures`]), in one query: the day's jobs and
    /// their attempts, and the calls, numbers and SMS of `from..to` (the day's bounds), with
    /// the follow-up items open now.
    fn day_figures(&self, day: NaiveDate, from: DateTime<Utc>, to: DateTime<Utc>) -> Fut<'_, DayFigures>;
}
