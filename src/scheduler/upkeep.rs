//! Daily upkeep of what the store holds about patients: numbers that no channel delivered are
//! followed up, and the calls of patients whose care ended long ago are emptied of personal
//! data. Both are safe to run on several instances at once and as often as wanted: each number
//! is alerted once, and a call emptied once is left alone.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::clock::Clock;
use super::hours::CallingHours;
use crate::store::{Anonymised, Store, StoreError};

/// `[retention]`: how long the personal data of calls is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Retention {
    /// Days after a patient's care ended (`care_end` in the roster) before their calls are
    /// emptied of personal data; 0 keeps them.
    pub calls_after_care_days: u32,
}

impl Retention {
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

    /// Retention on the day `now` falls in (nothing when calls are kept).
    pub async fn purge(&self, now: DateTime<Utc>, dry_run: bool) -> Result<Option<Anonymised>, StoreError> {
        let Some(before) = self.retention.care_ended_before(self.hours.day_of(now)) else { return Ok(None) };
        let done = self.store.patients().anonymise_ended_care(before, dry_run).await?;
        Ok(Some(done))
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
                    Ok(Some(a)) => {
                        purged = Some(today);
                        if a != Anonymised::default() {
                            tracing::info!(
                                patients = a.patients,
                                calls = a.calls,
                                answers = a.answers,
                                messages = a.messages,
                                numbers = a.numbers,
                                "retention: personal data of ended care emptied"
                            );
                        }
                    }
                    Ok(None) => purged = Some(today),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn care_that_ended_more_than_the_days_ago_is_before_the_cut_off_and_zero_keeps_everything() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        let r = Retention { calls_after_care_days: 90 };
        // Ended 2026-03-02: 91 days before 2026-06-01, so before the cut-off of 2026-03-03.
        assert_eq!(r.care_ended_before(day("2026-06-01")), Some(day("2026-03-03")));
        assert_eq!(Retention { calls_after_care_days: 0 }.care_ended_before(day("2026-06-01")), None);
    }
}
