//! The outbox dispatcher: sends the messages written with processing numbers.
//!
//! A message is claimed (by this instance, with a lease) and the claim committed; just before
//! it is handed to the provider that is recorded too (`handed_at`); it is sent outside any
//! transaction; the result is recorded. Retryable failures (429, 5xx, network, and delivery
//! reports such as 30003 and 30008) are tried again with exponential backoff and jitter;
//! permanent ones (invalid or landline number, unsubscribed) are final; after `max_attempts` a
//! message is dead. Both alert the health centre.
//!
//! No SMS twice, none lost, across crashes: a send whose outcome is unknown (a time-out after
//! the request left, a `5xx`, or a process that died between handing it over and recording the
//! answer) is looked up at the carrier (its Messages list for that number since the hand-over,
//! matched by the exact text) before it is sent again, and only sent again if it is not there.
//! On start the dispatcher takes over at once the claims its own previous process left
//! unfinished (an instance is its host name and listen address, which no two live processes
//! share); another instance's claims are taken over when their lease runs out.
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

use crate::carrier::twilio::{MessageRequest, MessageResource, Sender, TwilioClient, TwilioError};
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
    /// How long to wait, after a send whose outcome is unknown, before looking the message up at
    /// the carrier (and sending it again only if it is not there).
    pub uncertain_grace: Duration,
}

impl Policy {
    pub fn from_settings(o: &OutboxSettings) -> Policy {
        Policy {
            max_attempts: o.max_attempts,
            base: Duration::from_secs(o.retry_base_secs),
            max: Duration::from_secs(o.retry_max_secs),
            lease: Duration::from_secs(o.lease_secs),
            uncertain_grace: Duration::from_secs(o.lease_secs.clamp(5, 600)),
        }
    }

    /// The wait after the carrier reported attempt `attempt` undelivered for a reason that may
    /// pass (30003 handset off, 30008): the same doubling as [`Policy::backoff`], but at least
    /// half of it ("equal jitter"), so a handset that is off gets some time.
    pub fn delivery_backoff(&self, attempt: u32) -> Duration {
        let cap = self.base.saturating_mul(1 << attempt.saturating_sub(1).min(20)).min(self.max);
        cap.mul_f64(rand::rng().random_range(0.5..=1.0))
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
    /// Who claims: this instance ([`instance_name`]).
    pub owner: String,
    /// When this process started: its own claims made before are a previous process's.
    pub started: DateTime<Utc>,
}

/// This instance's name in the outbox's claims: the host name and the address it listens on.
/// Two live processes never share it (the second could not bind the address), so claims under
/// this name from before this process started were left by a process that is gone.
pub fn instance_name(addr: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}/{addr}")
}

/// What the carrier's Messages list says of a send whose outcome was not known.
enum Found {
    /// It went out: the carrier's message.
    Sent(Box<MessageResource>),
    /// It is not there: it never reached the carrier.
    NotSent,
}

/// Records a delivery status the carrier reported for an SMS (its status callback, or the
/// message found in its Messages list) and what follows from it. `message_id` is our outbox id
/// when the carrier gave it back (the callback's `?msg=`): a status for a send that was never
/// recorded proves it went out, so the message is marked sent and never sent again (a report
/// on an earlier send of a message sent again since is ignored). A failure then decides: 30003 (handset unreachable) and 30008 (unknown) are tried again after a
/// backoff, up to `max_attempts` sends, then the message is dead and the health centre
/// alerted; 30006 (a landline) falls back once to e-mail or to being read on the next call;
/// any other (30005 unknown handset, 30007 filtered…) is final, with an alert.
#[allow(clippy::too_many_arguments)]
pub async fn record_delivery(
    store: &Store,
    policy: &Policy,
    email_configured: bool,
    message_id: Option<i64>,
    sid: &str,
    status: &str,
    code: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let known = store.outbox().status(sid, status, code).await?;
    let Some(id) = message_id else { return Ok(()) };
    let mut ours = known;
    if !known {
        let sent = SendResult::Sent { provider_id: sid.to_string(), status: status.to_string() };
        store.outbox().finish(id, &sent, now).await?;
        // Taken only by a message still in hand: not by one sent again since, under another id.
        ours = store.outbox().status(sid, status, code).await?;
    }
    // A late report on an earlier send of a message sent again since changes nothing.
    if ours && matches!(status, "failed" | "undelivered") {
        let attempts = store.outbox().attempts(id).await?.unwrap_or(0);
        let result = after_delivery_failure(policy, status, code, attempts, email_configured, now);
        store.outbox().finish(id, &result, now).await?;
    }
    Ok(())
}

/// What a delivery failure reported after `attempts` sends leads to; see [`record_delivery`].
pub fn after_delivery_failure(
    policy: &Policy,
    status: &str,
    code: Option<&str>,
    attempts: i64,
    email_configured: bool,
    now: DateTime<Utc>,
) -> SendResult {
    let error = format!("{status} {}", code.unwrap_or(""));
    let tries = u32::try_from(attempts).unwrap_or(0);
    match code {
        Some("30003" | "30008") if tries >= policy.max_attempts => {
            SendResult::Failed { error: format!("{error}; gave up after {tries} attempts"), dead: true }
        }
        Some("30003" | "30008") => {
            let wait = chrono::Duration::from_std(policy.delivery_backoff(tries)).unwrap_or_default();
            SendResult::Retry { error, at: now + wait }
        }
        Some("30006") => SendResult::Undeliverable { error, email: email_configured },
        _ => SendResult::Failed { error, dead: false },
    }
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

    /// One pass: takes over the claims left unfinished (by this instance's previous process,
    /// or whose lease ran out), then claims due messages, and settles or sends each. Returns
    /// how many were handled.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let lease_until = now + chrono::Duration::from_std(self.policy.lease).unwrap_or_default();
        let left = self.store.outbox().unfinished(&self.owner, self.started, now, lease_until, 16).await?;
        for m in &left {
            tracing::info!(
                message_id = m.message_id,
                handed = m.handed_at.is_some(),
                "outbox: settling a claim left unfinished"
            );
            self.process(m).await?;
        }
        let late = self.store.outbox().late(now, 16).await?;
        for m in &late {
            self.replace_late(m, now).await?;
        }
        let claimed = self.store.outbox().claim(&self.owner, now, lease_until, 16).await?;
        for m in &claimed {
            self.process(m).await?;
        }
        Ok(left.len() + claimed.len() + late.len())
    }

    /// Settles or sends one claimed message. A send whose outcome is not known is looked up at
    /// the carrier first; a message that has had its attempts is dead, not sent.
    async fn process(&self, m: &OutboxMessage) -> Result<(), StoreError> {
        if m.handed_at.is_some() && m.channel == Channel::Sms {
            match self.look_up(m).await {
                Ok(Found::Sent(found)) => return self.record_found(m, &found).await,
                Ok(Found::NotSent) => {}
                Err(error) => {
                    // Not known yet: looked up again later, never sent blindly.
                    let wait = self.policy.backoff(m.attempts as u32 + 1).max(Duration::from_secs(1));
                    let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                    tracing::warn!(message_id = m.message_id, error = %error, "outbox: the carrier could not be asked whether a send went out");
                    let unsure = SendResult::Unsure { error: format!("lookup failed: {error}"), at };
                    self.store.outbox().finish(m.message_id, &unsure, Utc::now()).await?;
                    return Ok(());
                }
            }
        }
        // Tried enough already (e.g. a carrier that kept failing): dead, not sent.
        if m.attempts as u32 >= self.policy.max_attempts {
            let dead = SendResult::Failed { error: format!("gave up after {} attempts", m.attempts), dead: true };
            self.store.outbox().finish(m.message_id, &dead, Utc::now()).await?;
            return Ok(());
        }
        self.store.outbox().hand(m.message_id, Utc::now()).await?;
        let attempt = self.send(m).await;
        let result = self.decide(m, attempt, Utc::now());
        self.store.outbox().finish(m.message_id, &result, Utc::now()).await?;
        Ok(())
    }

    /// Whether a message handed to the carrier earlier is in the carrier's Messages list for
    /// its number since then, with its exact text.
    async fn look_up(&self, m: &OutboxMessage) -> Result<Found, String> {
        let (Some(since), Some(body)) = (m.handed_at, self.key.open(&m.body_sealed)) else {
            return Ok(Found::NotSent);
        };
        let SmsGateway::Twilio { client, .. } = &self.sms;
        let listed = client.list_messages(&m.recipient, since).await.map_err(|e| e.to_string())?;
        let found = listed.into_iter().find(|r| r.body.as_deref().is_some_and(|sent| same_text(sent, &body)));
        let outcome = if found.is_some() { "found" } else { "not found" };
        metrics::counter!("ivr_message_lookups_total", "outcome" => outcome).increment(1);
        tracing::info!(message_id = m.message_id, to = %mask_phone(&m.recipient), outcome, "outbox: looked up at the carrier");
        Ok(found.map_or(Found::NotSent, |r| Found::Sent(Box::new(r))))
    }

    /// A send found at the carrier: recorded as sent, with the status the carrier gives it.
    async fn record_found(&self, m: &OutboxMessage, found: &MessageResource) -> Result<(), StoreError> {
        let status = format!("{:?}", found.status).to_lowercase();
        let now = Utc::now();
        let sent = SendResult::Sent { provider_id: found.sid.to_string(), status: status.clone() };
        self.store.outbox().finish(m.message_id, &sent, now).await?;
        if matches!(status.as_str(), "sent" | "delivered" | "undelivered" | "failed") {
            let code = found.error_code.map(|c| c.to_string());
            let email = self.email.is_some();
            record_delivery(
                &self.store,
                &self.policy,
                email,
                Some(m.message_id),
                found.sid.as_str(),
                &status,
                code.as_deref(),
                now,
            )
            .await?;
        }
        Ok(())
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
            Attempt::Retryable(error, _) if tries >= self.policy.max_attempts => {
                SendResult::Failed { error: format!("{error}; gave up after {tries} attempts"), dead: true }
            }
            // The provider's Retry-After, when longer than our backoff, is waited out.
            Attempt::Retryable(error, after) => {
                let wait = self.policy.backoff(tries).max(after.unwrap_or_default());
                SendResult::Retry { error, at: later(wait) }
            }
            // It may have gone out: looked up at the carrier before any resend (and dead then, if
            // it did not and this was the last attempt).
            Attempt::Uncertain(error) => SendResult::Unsure { error, at: later(self.policy.uncertain_grace) },
        };
        let outcome = match &result {
            SendResult::Sent { .. } => "sent",
            SendResult::Retry { .. } | SendResult::Unsure { .. } => "retry",
            SendResult::Failed { dead: true, .. } => "dead",
            SendResult::Failed { .. } => "failed",
            SendResult::Undeliverable { .. } => "undeliverable",
        };
        metrics::counter!("ivr_messages_total", "channel" => m.channel.as_str(), "outcome" => outcome).increment(1);
        let to = match m.channel {
            Channel::Email => mask_email(&m.recipient),
            Channel::Sms => mask_phone(&m.recipient),
            Channel::Webhook => webhook_host(&m.recipient),
        };
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
                Some(e) => match e.send(&m.recipient, subject(m), &body).await {
                    Ok(id) => Attempt::Accepted { provider_id: id, status: "sent".into() },
                    Err(err) if err.is_permanent() => Attempt::Permanent(err.to_string()),
                    Err(err) => Attempt::Retryable(err.to_string(), None),
                },
                None => Attempt::Permanent("no [email] settings: e-mail cannot be sent".into()),
            },
            Channel::Webhook => send_webhook(&m.recipient, &body).await,
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

/// A webhook's URL as logged: its host only (the path may hold a chat tool's secret).
fn webhook_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("webhook {h}")))
        .unwrap_or_else(|| "webhook".into())
}

/// Posts an urgent notice to a staff webhook as JSON `{"text": …}` (what Slack, Mattermost and
/// Teams' incoming webhooks take). A `2xx` is delivered; `408`, `429` and `5xx`, or no answer,
/// are tried again as the outbox does; any other answer is final. A time-out after the request
/// left may post the notice twice: a webhook has no way to ask whether it arrived.
async fn send_webhook(url: &str, text: &str) -> Attempt {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build();
    let Ok(client) = client else { return Attempt::Retryable("no HTTP client".into(), None) };
    match client.post(url).json(&serde_json::json!({ "text": text })).send().await {
        Ok(r) if r.status().is_success() => {
            Attempt::Accepted { provider_id: format!("webhook:{}", r.status().as_u16()), status: "delivered".into() }
        }
        Ok(r) if r.status().is_server_error() || matches!(r.status().as_u16(), 408 | 429) => {
            Attempt::Retryable(format!("webhook answered {}", r.status().as_u16()), None)
        }
        Ok(r) => Attempt::Permanent(format!("webhook answered {}", r.status().as_u16())),
        Err(e) => Attempt::Retryable(format!("webhook: {}", e.without_url()), None),
    }
}

/// When a message written at `now` (by the scheduler's clock) and meant to go at once is due.
/// The outbox sends what is due by the wall clock, so a scheduler clock ahead of it (a test's)
/// must not hold the message back.
pub fn due_at_once(now: DateTime<Utc>) -> DateTime<Utc> {
    now.min(Utc::now())
}

/// An e-mail's subject: a processing number for a patient; another message to a patient (the
/// personal link to the web self-report, a check-in's request); or (a message with neither
/// patient nor number) an urgent follow-up notice to staff.
fn subject(m: &OutboxMessage) -> &'static str {
    match (&m.patient_id, m.number_id) {
        (_, Some(_)) => "接触確認アプリの処理番号 / Processing number",
        (Some(_), None) => "保健所からのお知らせ / From the health centre",
        (None, None) => "【至急】要フォロー / Urgent follow-up",
    }
}

/// Whether the text of a message listed by the carrier is the text we sent: the same once line
/// ends are made alike, or holding it whole (a trial account prefixes its own words).
fn same_text(listed: &str, ours: &str) -> bool {
    let plain = |t: &str| t.replace("\r\n", "\n").trim().to_string();
    let (listed, ours) = (plain(listed), plain(ours));
    !ours.is_empty() && listed.contains(&ours)
}

/// Twilio's answer decides: invalid or unsubscribed numbers are final; a landline is final for
/// SMS and falls back; rate limits, server errors and refused connections are retried (not
/// before a `Retry-After`); anything where the request may have reached Twilio is looked up
/// there before it is sent again.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_message_is_ours_when_it_holds_our_text() {
        let ours = "処理番号は 1234-5678 です。\n期限: 12月8日";
        assert!(same_text(ours, ours));
        assert!(same_text("処理番号は 1234-5678 です。\r\n期限: 12月8日\n", ours), "line ends");
        assert!(same_text(&format!("Sent from your Twilio trial account - {ours}"), ours), "a trial prefix");
        assert!(!same_text("処理番号は 1234-5679 です。\n期限: 12月8日", ours), "another number");
        assert!(!same_text("anything", ""), "an empty text matches nothing");
    }

    #[test]
    fn an_e_mails_subject_says_what_it_carries() {
        let m = |patient: Option<&str>, number_id: Option<i64>| OutboxMessage {
            message_id: 1,
            patient_id: patient.map(|p| crate::types::PatientId::parse(p).unwrap()),
            number_id,
            channel: Channel::Email,
            recipient: "a@example.jp".into(),
            body_sealed: String::new(),
            attempts: 0,
            handed_at: None,
        };
        assert_eq!(subject(&m(Some("p1"), Some(7))), "接触確認アプリの処理番号 / Processing number");
        assert_eq!(subject(&m(Some("p1"), None)), "保健所からのお知らせ / From the health centre", "a link");
        assert_eq!(subject(&m(None, None)), "【至急】要フォロー / Urgent follow-up");
    }

    #[test]
    fn a_delivery_that_may_pass_is_retried_until_the_attempts_are_used_up() {
        let policy = Policy {
            max_attempts: 3,
            base: Duration::from_secs(30),
            max: Duration::from_secs(600),
            lease: Duration::from_secs(60),
            uncertain_grace: Duration::from_secs(60),
        };
        let now = DateTime::<Utc>::UNIX_EPOCH;
        for code in ["30003", "30008"] {
            let SendResult::Retry { at, error } =
                after_delivery_failure(&policy, "undelivered", Some(code), 2, false, now)
            else {
                panic!("{code} is retried")
            };
            assert_eq!(error, format!("undelivered {code}"));
            // Attempt 2: between half and all of 60 s.
            assert!(at >= now + chrono::Duration::seconds(30) && at <= now + chrono::Duration::seconds(60), "{at}");
            assert_eq!(
                after_delivery_failure(&policy, "undelivered", Some(code), 3, false, now),
                SendResult::Failed { error: format!("undelivered {code}; gave up after 3 attempts"), dead: true }
            );
        }
        assert_eq!(
            after_delivery_failure(&policy, "undelivered", Some("30005"), 1, false, now),
            SendResult::Failed { error: "undelivered 30005".into(), dead: false },
            "an unknown handset is final"
        );
        assert!(matches!(
            after_delivery_failure(&policy, "undelivered", Some("30006"), 1, true, now),
            SendResult::Undeliverable { email: true, .. }
        ));
    }
}
