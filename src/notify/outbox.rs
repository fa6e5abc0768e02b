//! The outbox dispatcher: sends the messages written with processing numbers.
//!
//! A message is claimed with a lease and the claim committed; it is sent outside any
//! transaction; the result is recorded. Retryable failures (429, 5xx, network) are tried again
//! with exponential backoff and full jitter; permanent ones (invalid or landline number,
//! unsubscribed) are final; after `max_attempts` a message is dead. Both alert the health
//! centre. A send whose outcome is unknown (a timeout after the request left) is not repeated
//! until the provider's status callback has had time to say it arrived, so a crash or a lost
//! answer sends no message twice.
//!
//! Two fallbacks keep a processing number reaching its patient. An SMS that cannot reach the
//! phone (a landline: 21614 from the API, 30006 in a status callback) falls back once to
//! e-mail, or to being read on the patient's next call ([`SendResult::Undeliverable`]). A
//! message whose number expired before it could be sent is not sent: a fresh number replaces
//! it, once ([`Store::replace_late`]); a replacement that also expires is dead.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::carrier::twilio::{MessageRequest, Sender, TwilioClient, TwilioError};
use crate::flow::{Value, Vars};
use crate::issuer::IssuerKey;
use crate::notify::email::mask_email;
use crate::store::{Consent, LateMessage, NewMessage, NewNumber, OutboxMessage, SendResult, Store, StoreError};
use crate::telemetry::mask_phone;
use crate::types::Channel;

/// The `[outbox]` settings.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OutboxSettings {
    /// Send attempts before a message is dead-lettered (and the health centre alerted).
    pub max_attempts: u32,
    /// First retry delay in seconds; doubled each attempt, with jitter.
    pub retry_base_secs: u64,
    /// Longest retry delay in seconds.
    pub retry_max_secs: u64,
    /// How long a claimed message is leased to one sender, in seconds.
    pub lease_secs: u64,
}
/// Retry settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
    pub lease: Duration,
    /// How long to wait for a status callback before resending after an uncertain failure.
    pub uncertain_grace: Duration,
}

impl Policy {
    pub fn from_settings(o: &OutboxSettings) -> Policy {
        Policy {
            max_attempts: o.max_attempts,
            base: Duration::from_secs(o.retry_base_secs),
            max: Duration::from_secs(o.retry_max_secs),
            lease: Duration::from_secs(o.lease_secs),
            uncertain_grace: Duration::from_secs(o.retry_max_secs.max(600)),
        }
    }

    /// Full jitter: a random wait up to `base × 2^(attempt-1)`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.base.saturating_mul(1 << attempt.saturating_sub(1).min(20)).min(self.max);
        cap.mul_f64(rand::rng().random_range(0.0..=1.0))
    }
}

/// Where SMS go: Twilio's Messages API, or the built-in simulator's copy of it.
#[derive(Clone)]
pub enum SmsGateway {
    Twilio { client: TwilioClient, sender: Sender },
}

/// How one send went, before it is recorded.
enum Attempt {
    Accepted {
        provider_id: String,
        status: String,
    },
    Permanent(String),
    /// The phone cannot take SMS (Twilio's 21614): the number falls back to another channel.
    Landline(String),
    /// Safe to send again, not before the provider's `Retry-After` when it gave one.
    Retryable(String, Option<Duration>),
    /// The request may have reached the provider: wait for its callback before resending.
    Uncertain(String),
}

pub struct Dispatcher {
    pub store: Store,
    pub key: IssuerKey,
    pub sms: SmsGateway,
    pub email: Option<Arc<crate::notify::email::EmailSender>>,
    pub policy: Policy,
    /// The base URL for delivery status callbacks (`/twilio/message-status`).
    pub public_url: String,
    pub wake: Arc<tokio::sync::Notify>,
    /// Flows (for the prompts) and the issuer, to replace a number that expired before its
    /// message went out. Without them such a message is dead, with an alert.
    pub reissue: Option<Reissue>,
}

/// What replacing an expired number takes: the prompts (for the message's text in the
/// patient's language) and the issuer.
#[derive(Clone)]
pub struct Reissue {
    pub flows: Arc<crate::flow::registry::Registry>,
    pub issuer: Arc<crate::issuer::Issuer>,
}

impl Dispatcher {
    /// Sends what is due until `stop` is notified; wakes on new messages, else polls.
    pub async fn run(self, stop: Arc<tokio::sync::Notify>) {
        loop {
            match self.tick(Utc::now()).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "outbox: store unavailable; retrying"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.notified() => return,
            }
        }
    }

    /// One pass: claims due messages and sends them. Returns how many were handled.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let grace = chrono::Duration::from_std(self.policy.uncertain_grace).unwrap_or_default();
        self.store.outbox().release_expired_leases(now, now + grace).await?;
        let late = self.store.outbox().late(now, 16).await?;
        for m in &late {
            self.replace_late(m, now).await?;
        }
        let lease_until = now + chrono::Duration::from_std(self.policy.lease).unwrap_or_default();
        let claimed = self.store.outbox().claim(now, lease_until, 16).await?;
        for m in &claimed {
            // Tried enough already (e.g. a carrier that kept reporting 30003): dead, not sent.
            if m.attempts as u32 >= self.policy.max_attempts {
                let dead = SendResult::Failed { error: "too many attempts".into(), dead: true };
                self.store.outbox().finish(m.message_id, &dead, now).await?;
                continue;
            }
            let attempt = self.send(m).await;
            let result = self.decide(m, attempt, Utc::now());
            self.store.outbox().finish(m.message_id, &result, Utc::now()).await?;
        }
        Ok(claimed.len() + late.len())
    }

    /// A message whose number expired before it could be sent: a fresh number for the same
    /// patient and consent replaces it (once: a replacement that expires too is dead).
    async fn replace_late(&self, m: &LateMessage, now: DateTime<Utc>) -> Result<(), StoreError> {
        for _ in 0..5 {
            let fresh = match (&self.reissue, m.reissued) {
                (Some(ctx), false) => self.fresh_number(ctx, m, now).await?,
                _ => None,
            };
            match self.store.outbox().replace_late(m.message_id, fresh.as_ref(), now).await {
                // The fresh number collided with a valid one: draw another.
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Duplicate(_)) => return Ok(()),
                Err(e) => return Err(e),
                Ok(done) => {
                    let outcome = if fresh.is_some() { "reissued" } else { "dead" };
                    if done {
                        metrics::counter!("ivr_messages_total", "channel" => m.channel.as_str(), "outcome" => outcome)
                            .increment(1);
                        tracing::info!(message_id = m.message_id, patient = %m.patient_id, outcome, "outbox: number expired before delivery");
                    }
                    return Ok(());
                }
            }
        }
        Err(StoreError::Conflict)
    }

    /// A new number for a late message's patient, with the same channel and recipient, its
    /// text in the patient's language.
    async fn fresh_number(
        &self,
        ctx: &Reissue,
        m: &LateMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<NewNumber>, StoreError> {
        let Some(patient) = self.store.patients().get(m.patient_id.as_str()).await? else { return Ok(None) };
        let Some(catalog) = ctx.flows.catalog(&patient.language) else { return Ok(None) };
        let drawn = ctx.issuer.draw(now);
        let mut vars = Vars::new();
        vars.insert("processing_number".into(), Value::text(drawn.number.expose()));
        vars.insert("processing_number.expires".into(), Value::text(&drawn.expires_local));
        let text = ctx.issuer.message(&catalog, &vars, &drawn.number);
        Ok(Some(NewNumber {
            patient_id: m.patient_id.clone(),
            number_hash: drawn.hash,
            sealed: Some(drawn.sealed),
            issued_at: now,
            expires_at: drawn.expires_at,
            // The store copies the replaced number's consent.
            consent: Consent::Staff { name: String::new() },
            delivery: m.channel.delivery(),
            message: Some(NewMessage {
                channel: m.channel,
                recipient: m.recipient.clone(),
                body_sealed: ctx.issuer.key.seal(&text),
            }),
        }))
    }

    fn decide(&self, m: &OutboxMessage, attempt: Attempt, now: DateTime<Utc>) -> SendResult {
        let tries = m.attempts as u32 + 1;
        let later = |d: Duration| now + chrono::Duration::from_std(d).unwrap_or_default();
        let result = match attempt {
            Attempt::Accepted { provider_id, status } => SendResult::Sent { provider_id, status },
            Attempt::Permanent(error) => SendResult::Failed { error, dead: false },
            Attempt::Landline(error) => SendResult::Undeliverable { error, email: self.email.is_some() },
            Attempt::Retryable(error, _) | Attempt::Uncertain(error) if tries >= self.policy.max_attempts => {
                SendResult::Failed { error, dead: true }
            }
            // The provider's Retry-After, when longer than our backoff, is waited out.
            Attempt::Retryable(error, after) => {
                let wait = self.policy.backoff(tries).max(after.unwrap_or_default());
                SendResult::Retry { error, at: later(wait) }
            }
            Attempt::Uncertain(error) => SendResult::Retry { error, at: later(self.policy.uncertain_grace) },
        };
        let outcome = match &result {
            SendResult::Sent { .. } => "sent",
            SendResult::Retry { .. } => "retry",
            SendResult::Failed { dead: true, .. } => "dead",
            SendResult::Failed { .. } => "failed",
            SendResult::Undeliverable { .. } => "undeliverable",
        };
        metrics::counter!("ivr_messages_total", "channel" => m.channel.as_str(), "outcome" => outcome).increment(1);
        let to = if m.channel == Channel::Email { mask_email(&m.recipient) } else { mask_phone(&m.recipient) };
        tracing::info!(message_id = m.message_id, channel = %m.channel, to = %to, attempt = tries, outcome, "outbox send");
        result
    }

    async fn send(&self, m: &OutboxMessage) -> Attempt {
        let Some(body) = self.key.open(&m.body_sealed) else {
            return Attempt::Permanent("the message cannot be opened with this issuer.key".into());
        };
        match m.channel {
            Channel::Sms => self.send_sms(m, body).await,
            Channel::Email => match &self.email {
                Some(e) => match e.send(&m.recipient, "接触確認アプリの処理番号 / Processing number", &body).await
                {
                    Ok(id) => Attempt::Accepted { provider_id: id, status: "sent".into() },
                    Err(err) if err.is_permanent() => Attempt::Permanent(err.to_string()),
                    Err(err) => Attempt::Retryable(err.to_string(), None),
                },
                None => Attempt::Permanent("no [email] settings: e-mail cannot be sent".into()),
            },
        }
    }

    async fn send_sms(&self, m: &OutboxMessage, body: String) -> Attempt {
        match &self.sms {
            SmsGateway::Twilio { client, sender } => {
                let req = MessageRequest {
                    to: m.recipient.clone(),
                    sender: sender.clone(),
                    body,
                    status_callback: Some(format!("{}/twilio/message-status?msg={}", self.public_url, m.message_id)),
                };
                match client.send_message(&req).await {
                    Ok(r) => Attempt::Accepted {
                        provider_id: r.sid.into(),
                        status: format!("{:?}", r.status).to_lowercase(),
                    },
                    Err(e) => classify(&e),
                }
            }
        }
    }
}

/// Twilio's answer decides: invalid or unsubscribed numbers are final; a landline is final for
/// SMS and falls back; rate limits, server errors and refused connections are retried (not
/// before a `Retry-After`); anything where the request may have reached Twilio waits for its
/// status callback.
fn classify(e: &TwilioError) -> Attempt {
    let text = e.to_string();
    if e.is_not_a_mobile_number() {
        Attempt::Landline(text)
    } else if e.is_invalid_number() || e.is_unsubscribed() {
        Attempt::Permanent(text)
    } else if e.is_safe_to_resend() {
        Attempt::Retryable(text, e.retry_after())
    } else if e.is_retryable() {
        Attempt::Uncertain(text)
    } else {
        Attempt::Permanent(text)
    }
}
