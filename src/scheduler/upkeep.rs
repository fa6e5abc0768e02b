//! Daily upkeep of what the store holds: numbers that no channel delivered are followed up; the
//! calls of patients whose care ended long ago are emptied of personal data; the staff audit
//! log and the urgent notices past their retention are deleted. All are safe to run on several
//! instances at once and as often as wanted: each number is alerted once, a call emptied once
//! is left alone, and a row deleted is gone for the next run too.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::clock::Clock;
use super::hours::CallingHours;
use crate::store::{Anonymised, NoticesPurged, Store, StoreError};

/// `[retention]`: how long the personal data of calls, the staff audit log and the urgent
/// notices are kept. 0 keeps each for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Retention {
    /// Days after a patient's care ended (`care_end` in the roster) before their calls are
    /// emptied of personal data; 0 keeps them.
    pub calls_after_care_days: u32,
    /// Days a row of the staff audit log is kept.
    pub staff_audit_days: u32,
    /// Days an urgent notice (which list was told of which item, and its messages to staff)
    /// is kept once its item is closed.
    pub urgent_notices_days: u32,
}

/// What one run of retention did (or, dry, would do); `None` where the setting keeps all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub calls: Option<(NaiveDate, Anonymised)>,
    pub audit: Option<(DateTime<Utc>, u64)>,
    pub notices: Option<(DateTime<Utc>, NoticesPurged)>,
}

impl Retention {
    /// The cut-off at `now` of a setting in days: what is older goes. `None` for 0.
    fn cut_off(days: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match days {
            0 => None,
            days => now.checked_sub_signed(chrono::Duration::days(i64::from(days))),
        }
    }

    /// The staff audit log's cut-off at `now`.
    pub fn audit_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Self::cut_off(self.staff_audit_days, now)
    }

    /// The urgent notices' cut-off at `now`.
    pub fn notices_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Self::cut_off(self.urgent_notices_days, now)
    }

    /// Every part of retention at `now` (the calls' cut-off on `today`, the health centre's
    /// day): each setting that is not 0, in its own transaction.
    pub async fn run(
        &self,
        store: &Store,
        today: NaiveDate,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Purged, StoreError> {
        let mut done = Purged::default();
        if let Some(before) = self.care_ended_before(today) {
            done.calls = Some((before, store.patients().anonymise_ended_care(before, dry_run).await?));
        }
        if let Some(before) = self.audit_before(now) {
            done.audit = Some((before, store.users().purge_audit(before, dry_run).await?));
        }
        if let Some(before) = self.notices_before(now) {
            done.notices = Some((before, store.followups().purge_notices(before, dry_run).await?));
        }
        Ok(done)
    }

    /// The cut-off on `today`: care that ended before this day ended more than the setting's
    /// days ago. `None` when calls are kept.
    pub fn care_ended_before(&self, today: NaiveDate) -> Option<NaiveDate> {
        match self.calls_after_care_days {
            0 => None,
            days => today.checked_sub_days(chrono::Days::new(u64::from(days))),
        }
    }
}

/// What the upkeep needs: the store, the health centre's days, the retention setting.
pub struct Upkeep {
    pub store: Store,
    pub hours: Arc<CallingHours>,
    pub retention: Retention,
    pub clock: Clock,
}

/// How often the upkeep looks for numbers to follow up.
const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Upkeep {
    /// Follows up, at `now`, every number that waited to be read since before today (in the
    /// health centre's zone) or whose time is up: no call read it to the end, so the health
    /// centre is alerted. Returns how many.
    pub async fn follow_up_unread(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let (today_start, _) = self.hours.day_bounds(self.hours.day_of(now));
        self.store.numbers().alert_unread(today_start, now).await
    }

    /// Retention at `now`, the calls' on the day `now` falls in.
    pub async fn purge(&self, now: DateTime<Utc>, dry_run: bool) -> Result<Purged, StoreError> {
        self.retention.run(&self.store, self.hours.day_of(now), now, dry_run).await
    }

    /// Runs until `stop`: the follow-up every minute, retention once a day.
    pub async fn run(self, stop: Arc<tokio::sync::Notify>) {
        let mut purged: Option<NaiveDate> = None;
        loop {
            let now = self.clock.now();
            match self.follow_up_unread(now).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(numbers = n, "processing numbers no call read: the health centre is alerted"),
                Err(e) => tracing::error!(error = %e, "following up unread numbers failed; trying again in a minute"),
            }
            let today = self.hours.day_of(now);
            if purged != Some(today) {
                match self.purge(now, false).await {
                    Ok(done) => {
                        purged = Some(today);
                        log_purged(&done);
                    }
                    Err(e) => tracing::error!(error = %e, "retention failed; trying again in a minute"),
                }
            }
            tokio::select! {
                _ = stop.notified() => return,
                _ = tokio::time::sleep(EVERY) => {},
            }
        }
    }
}

/// Logs what retention removed, when it removed anything.
fn log_purged(done: &Purged) {
    if let Some((_, a)) = done.calls.filter(|(_, a)| *a != Anonymised::default()) {
        tracing::info!(
            patients = a.patients,
            calls = a.calls,
            answers = a.answers,
            messages = a.messages,
            numbers = a.numbers,
            "retention: personal data of ended care emptied"
        );
    }
    if let Some((_, n)) = done.audit.filter(|(_, n)| *n > 0) {
        tracing::info!(rows = n, "retention: old rows of the staff audit log deleted");
    }
    if let Some((_, n)) = done.notices.filter(|(_, n)| *n != NoticesPurged::default()) {
        tracing::info!(notices = n.notices, messages = n.messages, "retention: old urgent notices deleted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn care_that_ended_more_than_the_days_ago_is_before_the_cut_off_and_zero_keeps_everything() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        let r = Retention { calls_after_care_days: 90, staff_audit_days: 1825, urgent_notices_days: 365 };
        // Ended 2026-03-02: 91 days before 2026-06-01, so before the cut-off of 2026-03-03.
        assert_eq!(r.care_ended_before(day("2026-06-01")), Some(day("2026-03-03")));
        let keep = Retention { calls_after_care_days: 0, staff_audit_days: 0, urgent_notices_days: 0 };
        assert_eq!(keep.care_ended_before(day("2026-06-01")), None);
        let now: DateTime<Utc> = "2026-06-01T03:00:00Z".parse().unwrap();
        assert_eq!(r.audit_before(now), Some("2021-06-02T03:00:00Z".parse().unwrap()), "five years of 365 days");
        assert_eq!(r.notices_before(now), Some("2025-06-01T03:00:00Z".parse().unwrap()));
        assert_eq!((keep.audit_before(now), keep.notices_before(now)), (None, None));
    }
}
