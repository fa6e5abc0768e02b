//! Trying a request again: exponential backoff with full jitter, bounded in tries and in wait,
//! and only for failures where a second try cannot call a patient twice.
//!
//! A dozen lines of loop rather than a crate: what decides a retry here is Twilio-specific
//! (which failures are safe to resend for which request, honouring `Retry-After`), and that
//! reads more plainly in one place than spread over a crate's predicates and adjusters.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::TwilioError;

/// How many times and how patiently a request is tried. Each client method decides *which*
/// failures are tried again (see [`TwilioError::is_safe_to_resend`]); this says how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included: 1 never retries.
    pub max_attempts: u32,
    /// The ceiling of the first wait; each later ceiling doubles.
    pub base_delay: Duration,
    /// No wait is longer. A `Retry-After` longer than this is not waited out: the error is
    /// returned (with [`TwilioError::retry_after`]) for the caller's queue to schedule.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 tries, waits of at most 0.25 s, 0.5 s, 1 s: a dispatcher that is not held up for long.
    fn default() -> Self {
        RetryPolicy { max_attempts: 4, base_delay: Duration::from_millis(250), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// One try, no retry: for callers that keep their own retry queue.
    pub const fn never() -> Self {
        RetryPolicy { max_attempts: 1, base_delay: Duration::ZERO, max_delay: Duration::ZERO }
    }

    /// The wait before retry number `retry` (1 for the first): a random time between zero and
    /// `min(max_delay, base_delay × 2^(retry-1))` ("full jitter"), so that many dispatchers
    /// rate-limited at once do not come back at once.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.base_delay.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1))).min(self.max_delay);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// How long to wait before trying again after `attempt` tries ended in `error`, or `None` to
    /// give up.
    pub(crate) fn next_delay(&self, attempt: u32, error: &TwilioError, replay: Replay) -> Option<Duration> {
        let may_retry = match replay {
            Replay::Idempotent => error.is_retryable(),
            Replay::OnlyIfNotReceived => error.is_safe_to_resend(),
        };
        if !may_retry || attempt >= self.max_attempts {
            return None;
        }
        let backoff = self.backoff(attempt);
        match error.retry_after() {
            Some(asked) if asked > self.max_delay => None,
            Some(asked) => Some(asked.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// Whether sending a request twice is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// A read (GET): retried on any retryable failure.
    Idempotent,
    /// Creates a call or a message: retried only when Twilio certainly did not act on it.
    OnlyIfNotReceived,
}

/// Runs `attempt` until it succeeds or the policy gives up; returns the last error.
pub(crate) async fn run<T, F, Fut>(
    policy: RetryPolicy,
    op: &'static str,
    replay: Replay,
    mut attempt: F,
) -> Result<T, TwilioError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TwilioError>>,
{
    let mut tries = 1;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let Some(delay) = policy.next_delay(tries, &error, replay) else { return Err(error) };
        tracing::warn!(op, attempt = tries, delay_ms = delay.as_millis() as u64, %error, "Twilio request failed; trying again");
        tokio::time::sleep(delay).await;
        tries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, retry_after: Option<u64>) -> TwilioError {
        let retry_after = retry_after.map(Duration::from_secs);
        TwilioError::Api { status, code: None, message: String::new(), more_info: None, retry_after }
    }

    const POLICY: RetryPolicy =
        RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(2) };

    #[test]
    fn waits_stay_under_a_doubling_ceiling_capped_at_max_delay() {
        for retry in 1..=10 {
            let ceiling = Duration::from_millis(100 * 2u64.pow(retry - 1)).min(POLICY.max_delay);
            for _ in 0..50 {
                assert!(POLICY.backoff(retry) <= ceiling, "retry {retry}");
            }
        }
        // Full jitter: the waits spread over the whole range, not just its top.
        assert!((0..200).any(|_| POLICY.backoff(4) < Duration::from_millis(400)));
    }

    #[test]
    fn creating_is_retried_only_when_twilio_cannot_have_acted() {
        let create = Replay::OnlyIfNotReceived;
        assert!(POLICY.next_delay(1, &api(429, None), create).is_some());
        assert!(POLICY.next_delay(1, &api(503, None), create).is_some());
        assert!(POLICY.next_delay(1, &api(500, None), create).is_none());
        assert!(POLICY.next_delay(1, &api(500, None), Replay::Idempotent).is_some());
        assert!(POLICY.next_delay(1, &api(400, None), Replay::Idempotent).is_none());
    }

    #[test]
    fn tries_are_bounded_and_retry_after_is_honoured_up_to_max_delay() {
        let read = Replay::Idempotent;
        assert!(POLICY.next_delay(2, &api(503, None), read).is_some());
        assert!(POLICY.next_delay(3, &api(503, None), read).is_none());
        assert_eq!(POLICY.next_delay(1, &api(429, Some(1)), read), Some(Duration::from_secs(1)));
        assert_eq!(POLICY.next_delay(1, &api(429, Some(3)), read), None);
        assert!(RetryPolicy::never().next_delay(1, &api(503, None), read).is_none());
    }
}
