//! The web request of a check-in: a patient with a live personal link is asked to report on
//! the web first (an SMS, or an e-mail for a patient without a mobile phone, carrying a new
//! link to `/r/{token}`), and called only if no report came within `scheduler.web_grace`.
//!
//! The store keeps a link's token only as a hash, so the request carries a new link: it
//! replaces the patient's earlier one (see [`crate::store::links`]). It is made when the
//! request goes out, not when the day is planned, so the morning's link works until the
//! afternoon's request. The request is recorded as sent, with its message put in the outbox,
//! in one transaction: a job's request goes out at most once (a crash between the new link and
//! the message leaves the job's call, due after the grace as planned).

use chrono::{DateTime, Duration, Utc};

use super::hours::CallingHours;
use crate::issuer::Issuer;
use crate::store::{NewMessage, Patient, Store, StoreError, WebRequest};
use crate::types::Channel;

/// How long a link made for a patient without a last day of care lasts.
pub const LINK_WITHOUT_CARE_END: Duration = Duration::days(14);

/// Web requests sent in one round at most.
const BATCH: i64 = 200;

/// What sending web requests needs.
#[derive(Debug, Clone)]
pub struct WebRequests {
    /// Seals the message for the outbox.
    pub issuer: Issuer,
    /// The server's public base URL: links are `{public_url}/r/{token}`.
    pub public_url: String,
    /// Wakes the outbox's sender when a request was put in it.
    pub outbox_wake: Option<std::sync::Arc<tokio::sync::Notify>>,
}

/// The text of the request, in the patient's language: the link, and when the call follows.
pub fn request_text(language: &str, checkin: &str, url: &str, call_at: &str) -> String {
    if language.starts_with("ja") {
        format!(
            "【保健所】{checkin}の健康観察です。こちらから体温と症状をご報告ください。\n{url}\n\
             {call_at}までにご報告がない場合は、お電話でおうかがいします。"
        )
    } else {
        format!(
            "Health centre: your {checkin} health check. Please report your temperature and symptoms here:\n{url}\n\
             If we have no report by {call_at}, we will call you."
        )
    }
}

/// When a link made at `now` ends: with the care period (the end of its last day), else
/// [`LINK_WITHOUT_CARE_END`] later.
pub fn link_expiry(patient: &Patient, hours: &CallingHours, now: DateTime<Utc>) -> DateTime<Utc> {
    match patient.care_end {
        Some(end) => hours.day_bounds(end).1.max(now + Duration::hours(1)),
        None => now + LINK_WITHOUT_CARE_END,
    }
}

impl WebRequests {
    /// Sends the web requests due at `now`: for each, a new link and its message in the
    /// outbox. Returns how many were sent.
    pub async fn send_due(&self, store: &Store, hours: &CallingHours, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let due = store.campaign().due_web_requests(now, BATCH).await?;
        let mut sent = 0;
        for request in &due {
            sent += usize::from(self.send(store, hours, request, now).await?);
        }
        if sent > 0 {
            if let Some(wake) = &self.outbox_wake {
                wake.notify_one();
            }
        }
        Ok(sent)
    }

    async fn send(
        &self,
        store: &Store,
        hours: &CallingHours,
        request: &WebRequest,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(patient) = store.patients().get(request.patient_id.as_str()).await? else {
            return store.campaign().web_request_sent(request.job_id, None, now).await;
        };
        let (channel, recipient) = match (&patient.email, patient.phone.is_mobile()) {
            (_, true) => (Channel::Sms, patient.phone.as_str().to_string()),
            (Some(email), false) => (Channel::Email, email.clone()),
            (None, false) => {
                // No way to send a link: the call, due after the grace, asks instead.
                tracing::info!(
                    job_id = request.job_id,
                    "no mobile phone nor e-mail for the web request: the call follows"
                );
                return store.campaign().web_request_sent(request.job_id, None, now).await;
            }
        };
        let link = store.links().create(&patient.patient_id, link_expiry(&patient, hours, now), now).await?;
        let url = format!("{}/r/{}", self.public_url.trim_end_matches('/'), link.token.expose());
        let call_at = request.due_at.with_timezone(&hours.tz()).format("%H:%M").to_string();
        let text = request_text(&patient.language, &request.checkin, &url, &call_at);
        let message = NewMessage { channel, recipient, body_sealed: self.issuer.key.seal(&text) };
        let due = crate::notify::outbox::due_at_once(now);
        let sent = store.campaign().web_request_sent(request.job_id, Some(&message), due).await?;
        if sent {
            metrics::counter!("ivr_web_requests_total").increment(1);
            tracing::info!(job_id = request.job_id, checkin = %request.checkin, %channel, "web request sent");
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_says_where_to_report_and_when_the_call_follows() {
        let ja = request_text("ja-JP", "09:00", "https://ivr.example/r/abc", "10:00");
        assert!(ja.contains("https://ivr.example/r/abc") && ja.contains("10:00までに"), "{ja}");
        let en = request_text("en-US", "15:00", "https://ivr.example/r/abc", "16:00");
        assert!(en.contains("by 16:00, we will call you"), "{en}");
    }
}
