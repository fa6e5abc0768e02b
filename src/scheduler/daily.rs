//! The day's campaign in the store: the roster and today's reports in, [`plan::plan_day`],
//! jobs out. Planning again the same day adds only patients not yet planned, so the server
//! may plan at start, daily at `plan_at`, and on `ivr dial`, in any order and on several
//! instances.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::hours::{CallingHours, DayTime};
use super::plan::{self, Channel, PlanPatient, Reason, Rules, Skipped};
use crate::store::{NewJob, Store, StoreError};

/// What planning needs besides the store and the time.
#[derive(Debug, Clone)]
pub struct Planner {
    /// The calling hours, with the day's check-ins.
    pub hours: Arc<CallingHours>,
    pub capacity: HashMap<String, u32>,
    /// The flow each job runs.
    pub flow: String,
    /// With `web.send_links`: sends a personal link to each patient whose care period began
    /// and who has none yet, when the day is planned.
    pub links: Option<crate::notify::links::LinkSender>,
    /// How long a patient with a live link has to report on the web before the call (`None`:
    /// everyone is called, links or not).
    pub web_grace: Option<Duration>,
}

/// The result of planning one check-in of a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckInPlanned {
    pub checkin: DayTime,
    /// Jobs in the check-in's plan.
    pub jobs: usize,
    /// Of them, jobs not planned before.
    pub new: usize,
    /// Jobs planned before for a later time, brought forward (`start_now`).
    pub advanced: usize,
    pub skipped: Skipped,
    /// Of the jobs, those whose patient gets the web request first.
    pub web_first: usize,
    /// Per patient, in the order of [`Planned::patients`]: whether and why they are called.
    pub reasons: Vec<Reason>,
    /// When the first job is due.
    pub first_due: Option<DateTime<Utc>>,
}

/// The result of planning a day: each check-in, and the totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub day: NaiveDate,
    /// Jobs in the day's plan, every check-in together.
    pub jobs: usize,
    /// Of them, jobs not planned before.
    pub new: usize,
    /// Jobs planned before for a later time, brought forward (`start_now`).
    pub advanced: usize,
    /// Every check-in's figures added up.
    pub skipped: Skipped,
    /// When the first job is due.
    pub first_due: Option<DateTime<Utc>>,
    /// The roster's patient ids, in roster order.
    pub patients: Vec<String>,
    pub checkins: Vec<CheckInPlanned>,
}

impl Planner {
    /// Plans every check-in of the day `now` falls in: every patient in care who has not
    /// reported for it, in their slot (or as soon as calling hours allow, with `start_now`, for
    /// the check-in under way).
    pub async fn plan(&self, store: &Store, now: DateTime<Utc>, start_now: bool) -> Result<Planned, StoreError> {
        let hours = &self.hours;
        let day = hours.day_of(now);
        if let Some(links) = &self.links {
            let sent = links.send_due(store, day, now).await?;
            if sent > 0 {
                tracing::info!(%day, sent, "report links sent to patients whose care began");
            }
        }
        let patients = store.patients().all().await?;
        let linked = self.linked(store, day).await?;
        let view: Vec<PlanPatient> = patients
            .iter()
            .map(|p| PlanPatient {
                id: p.patient_id.as_str(),
                area: p.area.as_deref(),
                slot: p.call_slot.as_deref(),
                care_start: p.care_start,
                care_end: p.care_end,
                link: linked.contains(p.patient_id.as_str()),
            })
            .collect();
        let rules = Rules { hours, capacity: &self.capacity, start_now, web_grace: self.web_grace };
        let mut planned = Planned {
            day,
            jobs: 0,
            new: 0,
            advanced: 0,
            skipped: Skipped::default(),
            first_due: None,
            patients: patients.iter().map(|p| p.patient_id.to_string()).collect(),
            checkins: Vec::new(),
        };
        for (k, &checkin) in hours.checks().iter().enumerate() {
            let window = hours.checkin_window(day, k);
            let reported = store.campaign().reported_by_channel(window.0, window.1).await?;
            let reported: HashMap<&str, Channel> = reported
                .iter()
                .map(|r| (r.patient_id.as_str(), if r.web { Channel::Web } else { Channel::Call }))
                .collect();
            let plan = plan::plan_checkin(day, k, now, &view, &reported, &rules);
            let jobs: Vec<NewJob> = plan
                .jobs
                .iter()
                .map(|j| NewJob {
                    patient_id: patients[j.patient].patient_id.clone(),
                    flow: self.flow.clone(),
                    day,
                    checkin: checkin.to_string(),
                    due_at: j.due_at,
                    window: Some(window),
                    web_at: j.web_at,
                })
                .collect();
            let new = store.campaign().plan_jobs(&jobs).await?;
            let first_due = jobs.iter().map(|j| j.due_at).min();
            // Started by hand: the check-in's calls planned earlier for their slots are placed
            // now too.
            let advanced = match (start_now && k == hours.checkin_at(now), first_due) {
                (true, Some(at)) => store.campaign().advance_jobs(day, &checkin.to_string(), at).await?,
                _ => 0,
            };
            let web_first = plan.reasons.iter().filter(|r| **r == Reason::WebFirst).count();
            tracing::info!(%day, %checkin, jobs = jobs.len(), new, web_first, skipped = ?plan.skipped, "check-in planned");
            planned.jobs += jobs.len();
            planned.new += new;
            planned.advanced += advanced;
            planned.skipped.add(&plan.skipped);
            planned.first_due = match (planned.first_due, first_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            planned.checkins.push(CheckInPlanned {
                checkin,
                jobs: jobs.len(),
                new,
                advanced,
                skipped: plan.skipped,
                web_first,
                reasons: plan.reasons,
                first_due,
            });
        }
        Ok(planned)
    }

    /// The patients with a live personal link on `day` (none without `web_grace`).
    async fn linked(&self, store: &Store, day: NaiveDate) -> Result<std::collections::HashSet<String>, StoreError> {
        if self.web_grace.is_none() {
            return Ok(Default::default());
        }
        let (from, to) = self.hours.day_bounds(day);
        Ok(store.links().live_patients(from, to).await?.into_iter().map(|p| p.to_string()).collect())
    }
}

/// Plans each day by itself: at start (if `plan_at` has passed) and then every day at
/// `plan_at`, local time. Wakes the dialer when jobs were added.
pub async fn run_daily(
    planner: Planner,
    store: Store,
    plan_at: super::hours::DayTime,
    dialer: Arc<tokio::sync::Notify>,
    clock: super::clock::Clock,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut planned: Option<NaiveDate> = None;
    loop {
        let now = clock.now();
        let local = now.with_timezone(&planner.hours.tz()).naive_local();
        let today = local.date();
        if planned != Some(today) && local >= plan_at.on(today) {
            match planner.plan(&store, now, false).await {
                Ok(p) => {
                    planned = Some(today);
                    if p.new > 0 {
                        dialer.notify_one();
                    }
                }
                Err(e) => tracing::error!(error = %e, "planning the day failed; trying again in a minute"),
            }
        }
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {},
        }
    }
}
