//! The day's campaign in the store: the roster and today's reports in, [`plan::plan_day`],
//! jobs out. Planning again the same day adds only patients not yet planned, so the server
//! may plan at start, daily at `plan_at`, and on `ivr dial`, in any order and on several
//! instances.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::hours::CallingHours;
use super::plan::{self, PlanPatient, Skipped};
use crate::store::{NewJob, Store, StoreError};

/// What planning needs besides the store and the time.
#[derive(Debug, Clone)]
pub struct Planner {
    pub hours: Arc<CallingHours>,
    pub capacity: HashMap<String, u32>,
    /// The flow each job runs.
    pub flow: String,
    /// With `web.send_links`: sends a personal link to each patient whose care period began
    /// and who has none yet, when the day is planned.
    pub links: Option<crate::notify::links::LinkSender>,
}

/// The result of planning a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub day: NaiveDate,
    /// Jobs in the day's plan.
    pub jobs: usize,
    /// Of them, jobs not planned before.
    pub new: usize,
    /// Jobs planned before for a later time, brought forward (`start_now`).
    pub advanced: usize,
    pub skipped: Skipped,
    /// When the first job is due.
    pub first_due: Option<DateTime<Utc>>,
}

impl Planner {
    /// Plans the day `now` falls in: every patient in care who has not reported today, in their
    /// slot (or as soon as calling hours allow, with `start_now`).
    pub async fn plan(&self, store: &Store, now: DateTime<Utc>, start_now: bool) -> Result<Planned, StoreError> {
        let day = self.hours.day_of(now);
        let (from, to) = self.hours.day_bounds(day);
        if let Some(links) = &self.links {
            let sent = links.send_due(store, day, now).await?;
            if sent > 0 {
                tracing::info!(%day, sent, "report links sent to patients whose care began");
            }
        }
        let patients = store.patients().all().await?;
        let reported = store.campaign().reported_patients(from, to).await?;
        let reported: HashSet<&str> = reported.iter().map(String::as_str).collect();
        let view: Vec<PlanPatient> = patients
            .iter()
            .map(|p| PlanPatient {
                id: p.patient_id.as_str(),
                area: p.area.as_deref(),
                slot: p.call_slot.as_deref(),
                care_start: p.care_start,
                care_end: p.care_end,
            })
            .collect();
        let plan = plan::plan_day(day, now, &view, &reported, &self.hours, &self.capacity, start_now);
        let jobs: Vec<NewJob> = plan
            .jobs
            .iter()
            .map(|j| NewJob {
                patient_id: patients[j.patient].patient_id.clone(),
                flow: self.flow.clone(),
                day,
                due_at: j.due_at,
            })
            .collect();
        let new = store.campaign().plan_jobs(&jobs).await?;
        let first_due = jobs.iter().map(|j| j.due_at).min();
        // Started by hand: the day's calls planned earlier for their slots are placed now too.
        let advanced = match (start_now, first_due) {
            (true, Some(at)) => store.campaign().advance_jobs(day, at).await?,
            _ => 0,
        };
        tracing::info!(%day, jobs = jobs.len(), new, skipped = ?plan.skipped, "day planned");
        Ok(Planned { day, jobs: jobs.len(), new, advanced, skipped: plan.skipped, first_due })
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
