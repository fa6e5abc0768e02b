//! The dialer: claims the jobs that are due, places their calls through the carrier's Calls API
//! within `calls_per_second` and `max_concurrent_calls`, and moves each job on as its attempt
//! ends (done, retried after `retry_after` inside calling hours, or unreachable with an alert).
//!
//! Durability: a job is claimed, with its next attempt's row, in a transaction committed before
//! the carrier is asked to dial, and the request is made outside any transaction. If the process
//! dies in between, the attempt is left without a call id. It is never dialled again: once
//! [`UNRECORDED_CALL_GRACE`] has passed since its claim (longer than [`DIAL_DEADLINE`], so any
//! request for it has reached the carrier or failed by then), the dialer looks for its call in
//! the carrier's Calls list (calls to the patient's number created since the claim). A call found
//! is recorded as the attempt's and reconciled like any other; none found means the request
//! never reached the carrier, and the attempt counts as lost (an unanswered one: the retry
//! policy decides what follows) and frees its slot at once.
//!
//! Recovery: the carrier does not repeat a final status callback that found the server down, so
//! a call that ended during a crash would hold its concurrency slot until its lease ran out.
//! Instead, when an instance starts leading (after a start, or on taking over from a dead
//! leader) it asks the carrier at once how every call still open stands, and later any call
//! with no news for `call_check_after`; each that ended is recorded as its status callback
//! would have been, and frees its slot. While the carrier cannot be asked, nothing is freed:
//! the lookup is tried again shortly, and `call_lease` stays the last resort (an attempt without
//! a call id that could not be looked up for that long counts as lost).
//!
//! One dialer at a time: with a [`DialerLock`], the dialer works only while its instance leads
//! ([`super::leader`]), so `calls_per_second` holds for the carrier account across instances.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, watch};

use crate::carrier::twilio::{AnsweredBy, CallRequest, CallResource, MachineDetection, TwilioClient};
use crate::scheduler::DialPolicy;
use crate::scheduler::hours::CallingHours;
use crate::store::{DialerLock, DueJob, JobNext, Store, StoreError};

use crate::types::CallSid;

/// How long after its claim the dialer waits for the carrier to take an attempt's call (the
/// rate limiter's wait, the request and its own safe retries included). Past it the request is
/// dropped, and whether the call was placed is unknown until the carrier is asked.
pub const DIAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// How long after its claim an attempt without a call id is looked for in the carrier's Calls
/// list: [`DIAL_DEADLINE`] and ten seconds more, so that the request for it, even one from an
/// instance that has just stopped leading, has reached the carrier or failed by then, and a call
/// not found was never placed.
pub const UNRECORDED_CALL_GRACE: chrono::Duration = chrono::Duration::seconds(30);

/// How often every job not yet dialled (not only those due) is settled if its patient reported.
const SETTLE_ALL_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How soon a lookup the carrier did not answer is tried again.
const LOOKUP_RETRY: chrono::Duration = chrono::Duration::seconds(5);

/// The rules the dialer and the status webhook share: what follows an attempt.
pub struct Campaign {
    pub policy: DialPolicy,
    pub hours: CallingHours,
    /// "Now" for dialling and retries (a manual clock in tests).
    pub clock: crate::scheduler::clock::Clock,
}

/// Whether machine detection says a machine (or a fax) answered.
pub fn is_machine(answered_by: &str) -> bool {
    answered_by.starts_with("machine") || answered_by == "fax"
}

/// How an attempt ended, from the carrier's final status, who answered (machine detection) and
/// whether the flow reached its end (`None`: no call was recorded, nobody took a turn).
pub fn outcome(status: &str, answered_by: Option<&str>, flow_done: Option<bool>) -> &'static str {
    let machine = answered_by.is_some_and(is_machine);
    match status {
        "completed" => match flow_done {
            Some(true) => "completed",
            // A "machine" that pressed keys took turns: it was a person.
            Some(false) => "incomplete",
            None if machine => "machine",
            None => "incomplete",
        },
        "busy" => "busy",
        "no-answer" => "no-answer",
        _ => "failed",
    }
}

impl Campaign {
    /// What follows an attempt that ended with `outcome` at `now`; a retry stays before `until`
    /// (the end of the job's check-in).
    pub fn next(
        &self,
        outcome: &str,
        attempt: i32,
        slot: Option<&str>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> JobNext {
        match outcome {
            "completed" => JobNext::Done,
            "refused" => JobNext::Failed("the carrier refused the patient's number".into()),
            _ if attempt as u32 >= self.policy.max_attempts => {
                JobNext::Unreachable(format!("{attempt} attempt(s) today, the last {outcome}"))
            }
            _ => match self.hours.next_call_time_before(now + self.policy.retry_after, slot, until) {
                Some(at) => JobNext::Retry(at),
                None if until.is_some() && self.hours.checks().len() > 1 => JobNext::Unreachable(format!(
                    "no calling time left in this check-in after {attempt} attempt(s), the last {outcome}"
                )),
                None => JobNext::Unreachable(format!(
                    "no calling time left today after {attempt} attempt(s), the last {outcome}"
                )),
            },
        }
    }

    /// Ends an attempt from the carrier's final status (a callback, or a fetch of the call) and
    /// moves its job on. Replayed and late statuses change nothing. Returns the outcome when
    /// this status ended the attempt.
    pub async fn call_ended(
        &self,
        store: &Store,
        (job_id, attempt): (i64, i32),
        call_sid: Option<&CallSid>,
        status: &str,
        answered_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<&'static str>, StoreError> {
        let flow_done = match call_sid {
            Some(sid) => store.calls().get(sid.as_str()).await?.map(|c| c.ended),
            None => None,
        };
        // The voice webhook recorded who answered if the callback does not say.
        let stored = match answered_by {
            Some(_) => None,
            None => store
                .campaign()
                .attempts(job_id)
                .await?
                .into_iter()
                .find(|a| a.attempt == attempt)
                .and_then(|a| a.answered_by),
        };
        let answered_by = answered_by.or(stored.as_deref());
        let outcome = outcome(status, answered_by, flow_done);
        self.end(store, job_id, attempt, outcome, answered_by, now).await
    }

    /// Ends an attempt with a known outcome.
    pub async fn end(
        &self,
        store: &Store,
        job_id: i64,
        attempt: i32,
        outcome: &'static str,
        answered_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<&'static str>, StoreError> {
        let (slot, until) = match store.campaign().job(job_id).await? {
            Some(job) => {
                (store.patients().get(job.patient_id.as_str()).await?.and_then(|p| p.call_slot), job.window_to)
            }
            None => (None, None),
        };
        let next = self.next(outcome, attempt, slot.as_deref(), until, now);
        let ended = store.campaign().end_attempt(job_id, attempt, outcome, answered_by, &next, now).await?;
        if ended {
            metrics::counter!("ivr_dial_outcomes_total", "outcome" => outcome).increment(1);
            if let JobNext::Unreachable(_) | JobNext::Failed(_) = next {
                metrics::counter!("ivr_unreachable_total").increment(1);
            }
            tracing::info!(job_id, attempt, outcome, next = ?next, "attempt ended");
        }
        Ok(ended.then_some(outcome))
    }
}

/// Places calls for due jobs.
pub struct Dialer {
    pub store: Store,
    pub carrier: TwilioClient,
    /// Our caller id, E.164.
    pub from: String,
    /// The base of the webhook URLs the carrier calls.
    pub public_url: String,
    pub campaign: Arc<Campaign>,
    limiter: DefaultDirectRateLimiter,
    /// Wakes the dialer at once (a campaign was planned, a call ended).
    wake: Arc<Notify>,
    /// Whether this instance leads, and so may dial (always, without a lock).
    leading: watch::Receiver<bool>,
    /// The lock to hold while running, with the sender of `leading`.
    lock: std::sync::Mutex<Option<(DialerLock, watch::Sender<bool>)>>,
    /// Whether the calls open when this instance began to lead have been looked up.
    swept: AtomicBool,
    /// Sends the check-ins' web requests before their calls (none: no web requests).
    web: Option<super::web::WebRequests>,
    /// When every job not yet dialled was last looked at for a report that settles it.
    settled_all: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Dialer {
    pub fn new(
        store: Store,
        carrier: TwilioClient,
        from: String,
        public_url: String,
        campaign: Arc<Campaign>,
        wake: Arc<Notify>,
    ) -> Self {
        let limiter = RateLimiter::direct(quota(campaign.policy.calls_per_second));
        // Nothing ever changes it: a dialer without a lock always leads.
        let (_, leading) = watch::channel(true);
        Dialer {
            store,
            carrier,
            from,
            public_url,
            campaign,
            limiter,
            wake,
            leading,
            lock: Default::default(),
            swept: AtomicBool::new(false),
            web: None,
            settled_all: Default::default(),
        }
    }

    /// Sends the check-ins' web requests when they are due, as the leader.
    pub fn with_web_requests(mut self, web: super::web::WebRequests) -> Self {
        self.web = Some(web);
        self
    }

    /// Dials only while this instance holds `lock` (taken and kept by [`Dialer::run`]), so that
    /// instances sharing a database share the rate.
    pub fn with_lock(mut self, lock: DialerLock) -> Self {
        let (tx, rx) = watch::channel(false);
        self.leading = rx;
        self.lock = std::sync::Mutex::new(Some((lock, tx)));
        self
    }

    /// Whether this instance may dial now.
    pub fn leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Runs until `stop` is notified: a tick whenever woken, and at least every 250 ms.
    pub async fn run(self: Arc<Self>, stop: Arc<Notify>) {
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        let holder = lock.map(|(lock, tx)| {
            let interval = quota(self.campaign.policy.calls_per_second).replenish_interval();
            let stop = Arc::new(Notify::new());
            let task = tokio::spawn(super::leader::hold(lock, interval, tx, self.wake.clone(), stop.clone()));
            (task, stop)
        });
        self.dial_until(&stop).await;
        // The lock goes once the calls in hand are placed.
        if let Some((task, stop)) = holder {
            stop.notify_one();
            let _ = task.await;
        }
    }

    async fn dial_until(&self, stop: &Notify) {
        let mut reported = std::time::Instant::now() - std::time::Duration::from_secs(60);
        loop {
            let now = self.campaign.clock.now();
            if let Err(e) = self.tick(now).await {
                tracing::error!(error = %e, "dialer");
            }
            if reported.elapsed() >= std::time::Duration::from_secs(2) {
                reported = std::time::Instant::now();
                if let Err(e) = self.report(now).await {
                    tracing::warn!(error = %e, "campaign figures for /metrics");
                }
            }
            tokio::select! {
                _ = stop.notified() => return,
                _ = self.wake.notified() => {},
                _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {},
            }
        }
    }

    /// One round at `now`, when this instance leads: looks up the calls with no recent news (all
    /// open calls in its first round as leader) and reconciles attempts whose lease ran out,
    /// then claims as many due jobs as the concurrency limit leaves room for (at most a second's
    /// worth of calls) and dials them at the configured rate. Returns how many calls were
    /// requested.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        if !self.leading() {
            // Whoever leads next looks up every open call first.
            self.swept.store(false, Ordering::Relaxed);
            return Ok(0);
        }
        self.reconcile(now).await?;
        let hours = &self.campaign.hours;
        let today = hours.day_of(now);
        let closed = self.store.campaign().close_days(today, now).await?;
        if closed > 0 {
            tracing::warn!(
                closed,
                "calls of an earlier day or check-in were never placed; the health centre is alerted"
            );
        }
        // Patients who reported first are neither asked on the web nor called: the jobs due now
        // at every round, every job of the day every few seconds (so the figures show the calls
        // saved as the reports come in).
        let all = {
            let mut last = self.settled_all.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= SETTLE_ALL_EVERY);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        let settled = self.store.campaign().settle_reported(now, all).await?;
        if settled > 0 {
            metrics::counter!("ivr_calls_saved_total").increment(settled as u64);
            tracing::info!(settled, "patients reported before their call: not called");
        }
        if let Some(web) = &self.web {
            web.send_due(&self.store, hours, now).await?;
        }
        // Never a call in the quiet hours or on a blocked day, however late the dialer runs.
        if hours.next_allowed_time(today, now) != Some(now) {
            return Ok(0);
        }
        let policy = &self.campaign.policy;
        let active = self.store.campaign().active_jobs().await?;
        let room = i64::from(policy.max_concurrent_calls) - active;
        let batch = room.min(policy.calls_per_second.ceil().max(1.0) as i64);
        if batch <= 0 {
            return Ok(0);
        }
        if !self.leading() {
            return Ok(0);
        }
        let jobs = self.store.campaign().claim_jobs(now, now + policy.call_lease, batch).await?;
        let deadline = tokio::time::Instant::now() + DIAL_DEADLINE;
        let mut placing = tokio::task::JoinSet::new();
        let mut requested = 0;
        for job in jobs.iter().cloned() {
            self.limiter.until_ready().await;
            if !self.leading() {
                // Another instance may be dialling already. The jobs claimed and not dialled
                // are reconciled when their lease runs out, as after a crash.
                tracing::warn!(
                    left = jobs.len() - requested,
                    "the dialer lock was lost: no more calls from this instance"
                );
                break;
            }
            requested += 1;
            let (store, carrier, campaign) = (self.store.clone(), self.carrier.clone(), self.campaign.clone());
            let request = self.request(&job);
            placing.spawn(async move { place(store, carrier, campaign, job, request, now, deadline).await });
        }
        while let Some(r) = placing.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::error!(error = %e, "recording a dial");
            }
        }
        Ok(requested)
    }

    /// Today's campaign as gauges on `/metrics`: jobs by status, attempts, unanswered attempts,
    /// numbers issued, SMS sent and alerts since the day began.
    async fn report(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let day = self.campaign.hours.day_of(now);
        let (since, _) = self.campaign.hours.day_bounds(day);
        let s = self.store.campaign().summary(day, since).await?;
        for status in ["planned", "dialing", "in-progress", "retry", "done", "reported", "unreachable", "failed"] {
            metrics::gauge!("ivr_campaign_jobs", "status" => status).set(s.count(status) as f64);
        }
        metrics::gauge!("ivr_campaign_attempts").set(s.attempts as f64);
        metrics::gauge!("ivr_campaign_unanswered_attempts").set(s.unanswered as f64);
        metrics::gauge!("ivr_campaign_numbers_issued").set(s.numbers_issued as f64);
        metrics::gauge!("ivr_campaign_sms_sent").set(s.sms_sent as f64);
        metrics::gauge!("ivr_campaign_alerts").set(s.alerts as f64);
        Ok(())
    }

    fn request(&self, job: &DueJob) -> CallRequest {
        let q = format!("job={}&attempt={}", job.job_id, job.attempt);
        let mut req = CallRequest::new(job.phone.as_str(), &self.from, format!("{}/twilio/voice?{q}", self.public_url))
            .with_status_callback(format!("{}/twilio/status?{q}", self.public_url));
        req.timeout_secs = Some(self.campaign.policy.ring_timeout.num_seconds().clamp(5, 600) as u32);
        // The message for a machine is left after its greeting ends.
        req.machine_detection = self.campaign.policy.machine_detection.then_some(MachineDetection::DetectMessageEnd);
        req
    }

    /// Open attempts with no news for `call_check_after` (every open attempt in the first
    /// round as leader): the carrier says how each call stands. One that ended is recorded as
    /// its final status callback would have been and frees its slot; one still in progress is
    /// asked again after `call_check_after`. An attempt without a call id is looked for in the
    /// carrier's Calls list once [`UNRECORDED_CALL_GRACE`] has passed since its claim (never
    /// dialled again).
    async fn reconcile(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let policy = &self.campaign.policy;
        // The lease is renewed to `call_lease` ahead at each piece of news, so a lease that ends
        // before `now + call_lease - call_check_after` had no news for `call_check_after`.
        let quiet = policy.call_check_after.min(policy.call_lease);
        let everything = !self.swept.swap(true, Ordering::Relaxed);
        let horizon = if everything { now + chrono::Duration::days(3650) } else { now + policy.call_lease - quiet };
        let stale = self.store.campaign().stale_attempts(horizon).await?;
        if everything && !stale.is_empty() {
            tracing::info!(open = stale.len(), "leading the dialer: asking the carrier how the open calls stand");
        }
        // Claimed at a time still ahead of this dialer's clock: no call of ours yet, nothing to ask.
        for stale in stale.into_iter().filter(|s| s.started_at <= now) {
            let found;
            let sid = match stale.call_sid.as_ref() {
                Some(sid) => sid,
                None => match self.find_unrecorded(&stale, now).await? {
                    Some(sid) => {
                        found = sid;
                        &found
                    }
                    None => continue,
                },
            };
            match self.carrier.fetch_call(sid).await {
                Ok(CallResource { status: Some(status), answered_by, .. }) if status.is_final() => {
                    let answered_by = answered_by.map(AnsweredBy::as_str);
                    let status = status.as_str();
                    let ended = self
                        .campaign
                        .call_ended(&self.store, (stale.job_id, stale.attempt), Some(sid), status, answered_by, now)
                        .await?;
                    if ended.is_some() {
                        metrics::counter!("ivr_dial_calls_recovered_total").increment(1);
                        tracing::info!(job_id = stale.job_id, attempt = stale.attempt, call_sid = %sid, status, "the carrier says the call ended: its slot is free");
                    }
                }
                Ok(_) => self.store.campaign().extend_lease(stale.job_id, now + policy.call_lease).await?,
                Err(e) if e.status() == Some(404) => {
                    self.campaign.end(&self.store, stale.job_id, stale.attempt, "lost", None, now).await?;
                }
                Err(e) => {
                    // Asked again after `call_check_after`, not at every round.
                    tracing::warn!(job_id = stale.job_id, error = %e, "could not look up a quiet call; trying later");
                    self.store.campaign().extend_lease(stale.job_id, now + policy.call_lease).await?;
                }
            }
        }
        Ok(())
    }

    /// The call of an attempt claimed without a call id, from the carrier's Calls list: the
    /// newest call to the patient's number created since the claim that no other attempt of the
    /// job owns (a patient is never dialled twice at once, so it is this attempt's). The call's
    /// webhook URLs name the attempt, but the Call resource does not carry them: the number and
    /// the time are what the carrier gives back. A call found is recorded as the attempt's and
    /// returned; none found ends the attempt as lost, freeing its slot. Before
    /// [`UNRECORDED_CALL_GRACE`], or while the carrier cannot be asked, the attempt is left as
    /// it is and asked about later (after `call_lease` without an answer it counts as lost).
    async fn find_unrecorded(
        &self,
        stale: &crate::store::StaleAttempt,
        now: DateTime<Utc>,
    ) -> Result<Option<CallSid>, StoreError> {
        let policy = &self.campaign.policy;
        let (job_id, attempt) = (stale.job_id, stale.attempt);
        let look_at = stale.started_at + UNRECORDED_CALL_GRACE;
        if now < look_at {
            // A request for it may still be on its way to the carrier (however short
            // `call_lease` is).
            self.ask_again_at(job_id, look_at).await?;
            return Ok(None);
        }
        let calls = match self.carrier.list_calls(stale.phone.as_str(), stale.started_at).await {
            Ok(calls) => calls,
            Err(e) if stale.started_at + policy.call_lease <= now => {
                tracing::warn!(job_id, attempt, error = %e, "attempt lost: no call id, and the carrier could not be asked for as long as call_lease");
                self.campaign.end(&self.store, job_id, attempt, "lost", None, now).await?;
                return Ok(None);
            }
            Err(e) => {
                // Never freed blindly: the call may be ringing.
                tracing::warn!(job_id, attempt, error = %e, "could not look for a call whose id was never recorded; trying again shortly");
                self.ask_again_at(job_id, now + LOOKUP_RETRY).await?;
                return Ok(None);
            }
        };
        let owned: std::collections::HashSet<CallSid> =
            self.store.campaign().attempts(job_id).await?.into_iter().filter_map(|a| a.call_sid).collect();
        let phone = stale.phone.as_str();
        let ours = calls.into_iter().find(|c| !owned.contains(&c.sid) && c.to.as_deref().is_none_or(|to| to == phone));
        match ours {
            Some(call) => {
                metrics::counter!("ivr_call_lookups_total", "outcome" => "found").increment(1);
                tracing::info!(job_id, attempt, call_sid = %call.sid, "the carrier placed the call whose id was never recorded");
                self.store.campaign().attempt_dialed(job_id, attempt, &call.sid).await?;
                Ok(Some(call.sid))
            }
            None => {
                metrics::counter!("ivr_call_lookups_total", "outcome" => "not found").increment(1);
                tracing::warn!(job_id, attempt, "attempt lost: the carrier never placed its call; its slot is free");
                self.campaign.end(&self.store, job_id, attempt, "lost", None, now).await?;
                Ok(None)
            }
        }
    }

    /// Has an open attempt looked at again from `at` (and not before): its lease is set so that
    /// it counts as quiet then (`reconcile` takes leases ending before `now + call_lease -
    /// call_check_after`).
    async fn ask_again_at(&self, job_id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let policy = &self.campaign.policy;
        let quiet = policy.call_check_after.min(policy.call_lease);
        self.store.campaign().extend_lease(job_id, at + policy.call_lease - quiet).await
    }
}

/// Asks the carrier to dial one attempt and records what it said.
async fn place(
    store: Store,
    carrier: TwilioClient,
    campaign: Arc<Campaign>,
    job: DueJob,
    request: CallRequest,
    now: DateTime<Utc>,
    deadline: tokio::time::Instant,
) -> Result<(), StoreError> {
    let Ok(answer) = tokio::time::timeout_at(deadline, carrier.create_call(&request)).await else {
        // Perhaps placed: the attempt is looked for at the carrier after `UNRECORDED_CALL_GRACE`.
        tracing::warn!(
            job_id = job.job_id,
            attempt = job.attempt,
            "no answer from the carrier in time: unknown whether the call was placed"
        );
        return Ok(());
    };
    match answer {
        Ok(call) => {
            metrics::counter!("ivr_dials_total").increment(1);
            tracing::info!(job_id = job.job_id, attempt = job.attempt, call_sid = %call.sid, to = %job.phone.masked(), "dialling");
            store.campaign().attempt_dialed(job.job_id, job.attempt, &call.sid).await
        }
        // A 4xx other than 429: an invalid number (21211) and the like, refused for good.
        Err(e) if e.status().is_some_and(|s| (400..500).contains(&s)) && !e.is_retryable() => {
            tracing::warn!(job_id = job.job_id, to = %job.phone.masked(), error = %e, "the carrier refused the number");
            campaign.end(&store, job.job_id, job.attempt, "refused", None, now).await.map(drop)
        }
        Err(e) if e.is_safe_to_resend() => {
            // Certainly not placed (rate limited or refused before any work): counted as an
            // unanswered attempt and retried after `retry_after`.
            tracing::warn!(job_id = job.job_id, error = %e, "the carrier did not take the call");
            campaign.end(&store, job.job_id, job.attempt, "failed", None, now).await.map(drop)
        }
        Err(e) => {
            // Perhaps placed: its status callback will say, or the call is looked for at the
            // carrier after `UNRECORDED_CALL_GRACE`. Never dialled again for this attempt.
            tracing::warn!(job_id = job.job_id, attempt = job.attempt, error = %e, "unknown whether the call was placed");
            Ok(())
        }
    }
}

fn quota(per_second: f64) -> Quota {
    let per_second = per_second.max(0.001);
    if per_second >= 1.0 {
        Quota::per_second(NonZeroU32::new(per_second.round() as u32).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN)
    } else {
        Quota::with_period(std::time::Duration::from_secs_f64(1.0 / per_second))
            .expect("a positive period")
            .allow_burst(NonZeroU32::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_the_carrier_and_the_flow() {
        assert_eq!(outcome("completed", Some("human"), Some(true)), "completed");
        assert_eq!(outcome("completed", None, Some(false)), "incomplete");
        // Detection is often wrong: a machine that took turns is a person.
        assert_eq!(outcome("completed", Some("machine_start"), Some(true)), "completed");
        assert_eq!(outcome("completed", Some("machine_end_beep"), None), "machine");
        assert_eq!(outcome("busy", None, None), "busy");
        assert_eq!(outcome("no-answer", None, None), "no-answer");
        assert_eq!(outcome("canceled", None, None), "failed");
    }

    /// A call whose status callbacks never come, with the server up all along: the dialer
    /// asks the carrier once it has had no news for `call_check_after`, not before, and frees
    /// its slot as the carrier ended it.
    #[tokio::test]
    async fn a_call_without_news_for_call_check_after_is_looked_up_and_freed() {
        use crate::carrier::signature::AuthToken;
        use crate::carrier::simulator::{self as sim, Persona, Simulator};
        use crate::scheduler::hours::Slot;
        use crate::store::{NewJob, Patient};

        const TOKEN: &str = "dialer-test-auth-token-0123456789";
        let carrier = Simulator::new(sim::Options {
            auth_token: AuthToken::new(TOKEN),
            webhooks: crate::carrier::webhook::WebhookClient::new(AuthToken::new(TOKEN)),
            people: sim::nobody(),
            speed: 0.0,
            log: None,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_base = format!("http://{}", listener.local_addr().unwrap());
        let router = carrier.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = TwilioClient::new(&api_base, &sim::account_sid(), TOKEN.to_string()).unwrap();

        // Where the webhooks go: a peer that takes them and tells nobody, as if they were lost.
        let void = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let void_url = format!("http://{}", void.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(void, axum::Router::new().fallback(|| async { "" })).await });

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("ivr.db").display()), false).await.unwrap();
        store.migrate().await.unwrap();
        let phone = "+819012345670";
        let patient = Patient {
            patient_id: crate::types::PatientId::parse("P001").unwrap(),
            name: "山田 花子".into(),
            phone: crate::types::E164::parse(phone).unwrap(),
            birth_md: Some("0412".into()),
            language: "ja-JP".into(),
            email: None,
            area: None,
            care_start: None,
            care_end: None,
            call_slot: None,
        };
        store.patients().upsert(&patient).await.unwrap();
        let tz = chrono_tz::Asia::Tokyo;
        let hours = CallingHours::new(tz, vec![Slot::parse("all", "00:00-23:59").unwrap()], None, vec![]).unwrap();
        let policy = DialPolicy {
            calls_per_second: 10.0,
            max_concurrent_calls: 1,
            retry_after: chrono::Duration::minutes(30),
            max_attempts: 3,
            ring_timeout: chrono::Duration::seconds(30),
            machine_detection: false,
            call_lease: chrono::Duration::minutes(20),
            call_check_after: chrono::Duration::minutes(1),
        };
        let clock = crate::scheduler::clock::Clock::System;
        let campaign = Arc::new(Campaign { policy, hours, clock });
        let dialer = Dialer::new(
            store.clone(),
            client.clone(),
            "+815000000000".into(),
            void_url,
            campaign,
            Arc::new(Notify::new()),
        );

        use chrono::TimeZone;
        let t0 = tz.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap().with_timezone(&Utc);
        // The first round, as leader: no open call to ask about.
        assert_eq!(dialer.tick(t0).await.unwrap(), 0);
        let day = t0.with_timezone(&tz).date_naive();
        let job = NewJob {
            patient_id: crate::types::PatientId::parse("P001").unwrap(),
            flow: "daily-health-check".into(),
            day,
            checkin: "00:00".into(),
            due_at: t0,
            window: None,
            web_at: None,
        };
        store.campaign().plan_jobs(&[job]).await.unwrap();
        // A busy line: the carrier ends the call at once, and nobody hears of it.
        carrier.set_persona(phone, Persona::Busy);
        assert_eq!(dialer.tick(t0).await.unwrap(), 1);
        let job_id = store.campaign().jobs_for_day(day).await.unwrap()[0].job_id;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let calls = carrier.calls();
            if calls.len() == 1 && calls[0].status.is_final() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the carrier did not end the call: {calls:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        // Half a minute without news: the slot stays held, nothing more is dialled.
        assert_eq!(dialer.tick(t0 + chrono::Duration::seconds(30)).await.unwrap(), 0);
        assert_eq!(store.campaign().active_jobs().await.unwrap(), 1);
        // A minute: the carrier is asked, the attempt ends busy and the job waits for its retry.
        dialer.tick(t0 + chrono::Duration::seconds(61)).await.unwrap();
        assert_eq!(store.campaign().active_jobs().await.unwrap(), 0, "the slot is free");
        let attempts = store.campaign().attempts(job_id).await.unwrap();
        assert!(attempts.len() == 1 && attempts[0].ended && attempts[0].status == "busy", "{attempts:?}");
        assert_eq!(store.campaign().jobs_for_day(day).await.unwrap()[0].status, "retry");
        assert_eq!(carrier.calls().len(), 1, "dialled once");
    }

    #[test]
    fn rates_below_one_per_second_are_periods() {
        assert_eq!(quota(0.5).replenish_interval(), std::time::Duration::from_secs(2));
        assert_eq!(quota(50.0).replenish_interval(), std::time::Duration::from_millis(20));
    }
}
