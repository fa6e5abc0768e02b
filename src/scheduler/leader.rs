//! Which instance dials. The carrier's calls-per-second limit is the account's, so one instance
//! at a time places calls: the one holding the database's dialer lock
//! ([`DialerLock`](crate::store::DialerLock)). The others serve webhooks, status callbacks and
//! the outbox as usual, and try for the lock every second; when the leader dies its lock goes
//! with its connection, and another instance takes over.
//!
//! A leader checks its lock every half second and stops dialling as soon as a check fails or
//! does not answer within two seconds. A new leader waits one second and one call's interval
//! before its first call: longer than an old leader that lost its connection takes to notice,
//! and never sooner after the old leader's last call than the rate allows.
//!
//! Who leads is logged at each change and shown on `/metrics` as `ivr_dialer_leader` (1 or 0).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::store::DialerLock;

/// How often the leader checks that it still holds the lock.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often an instance that does not lead tries to take the lock.
const TRY_EVERY: Duration = Duration::from_secs(1);
/// A check that takes longer counts as a lost lock.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Holds the dialer lock until `stop` is notified, publishing on `leading` whether this
/// instance may dial; `wake` wakes the dialer when it starts leading. `interval` is the time
/// between two calls at the configured rate. Releases the lock when stopped.
pub async fn hold(
    mut lock: DialerLock,
    interval: Duration,
    leading: watch::Sender<bool>,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
) {
    // The old leader's last call may be a moment old: keep to the rate across the change.
    let pause = Duration::from_secs(1) + interval;
    metrics::gauge!("ivr_dialer_leader").set(0.0);
    let mut taken: Option<Instant> = None;
    let mut failing = false;
    loop {
        let held = match tokio::time::timeout(CHECK_TIMEOUT, lock.hold()).await {
            Ok(Ok(held)) => {
                failing = false;
                held
            }
            Ok(Err(e)) => {
                if !failing || taken.is_some() {
                    tracing::warn!(error = %e, "the dialer lock: the database did not answer; trying again");
                }
                failing = true;
                false
            }
            Err(_) => {
                lock.reset();
                if !failing || taken.is_some() {
                    tracing::warn!("the dialer lock: no answer from the database in 2 s; trying again");
                }
                failing = true;
                false
            }
        };
        let next = if held {
            let at = *taken.get_or_insert_with(Instant::now);
            let waited = at.elapsed();
            if *leading.borrow() {
                CHECK_EVERY
            } else if waited >= pause {
                tracing::info!("this instance leads the dialer: it places the calls");
                leading.send_replace(true);
                metrics::gauge!("ivr_dialer_leader").set(1.0);
                wake.notify_one();
                CHECK_EVERY
            } else {
                CHECK_EVERY.min(pause - waited)
            }
        } else {
            if taken.take().is_some() && *leading.borrow() {
                tracing::warn!("this instance no longer leads the dialer: it stops placing calls");
                leading.send_replace(false);
                metrics::gauge!("ivr_dialer_leader").set(0.0);
            }
            TRY_EVERY
        };
        tokio::select! {
            _ = stop.notified() => break,
            _ = tokio::time::sleep(next) => {},
        }
    }
    leading.send_replace(false);
    metrics::gauge!("ivr_dialer_leader").set(0.0);
    lock.release().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    type Holder = (watch::Receiver<bool>, Arc<Notify>, tokio::task::JoinHandle<()>);

    fn start(store: &Store) -> Holder {
        let (tx, rx) = watch::channel(false);
        let stop = Arc::new(Notify::new());
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(hold(store.dialer_lock(), Duration::from_millis(10), tx, wake, stop.clone()));
        (rx, stop, task)
    }

    #[tokio::test]
    async fn a_second_instance_leads_once_the_first_stops() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ivr.db").display());
        let (one, two) = (Store::open(&url, false).await.unwrap(), Store::open(&url, false).await.unwrap());
        let (mut first, stop_first, first_task) = start(&one);
        let bound = Duration::from_secs(20);
        tokio::time::timeout(bound, first.wait_for(|l| *l)).await.expect("the first leads").unwrap();

        let (mut second, stop_second, second_task) = start(&two);
        // Long enough for the second to try at once, and to lead after its pause had it taken
        // the lock.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(*first.borrow() && !*second.borrow(), "one leads at a time");

        stop_first.notify_one();
        first_task.await.unwrap();
        assert!(!*first.borrow(), "a stopped instance does not lead");
        tokio::time::timeout(bound, second.wait_for(|l| *l)).await.expect("the second takes over").unwrap();
        stop_second.notify_one();
        second_task.await.unwrap();
    }
}
