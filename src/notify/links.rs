//! The personal link to the web self-report, sent to the patient: by SMS to a mobile phone,
//! else by e-mail, through the outbox (its text sealed there, and emptied once the provider took
//! it). A link ends with the care period: at the end of its last day, in the health centre's
//! time zone (or [`OPEN_CARE_DAYS`] after it was sent, for a patient whose care has no end on
//! file). Staff send one when they ask; [`LinkSender::send_due`] sends one to every patient whose
//! care period has begun and who never had one (the daily plan, and the roster import, call it
//! when `web.send_links` is on).

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::issuer::IssuerKey;
use crate::store::{Compose, LinkToken, NewMessage, Patient, SentLink, Store, StoreError};
use crate::types::{Channel, PatientId};

/// How long a link lasts when the roster gives no end to the patient's care.
pub const OPEN_CARE_DAYS: i64 = 14;

/// Why no link was sent.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no patient {0}")]
    UnknownPatient(String),
    #[error("the patient's care period ended")]
    CareEnded,
    #[error("the patient has neither a mobile phone nor an e-mail address")]
    NoWay,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What sends links: where the page is served, the key that seals messages, the local time.
#[derive(Clone)]
pub struct LinkSender {
    /// `server.public_url`, no trailing slash.
    pub public_url: String,
    pub key: Arc<IssuerKey>,
    pub tz: Tz,
}

impl std::fmt::Debug for LinkSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSender").field("public_url", &self.public_url).field("tz", &self.tz).finish()
    }
}

/// Where a link reaches the patient: SMS to a mobile phone, else e-mail.
pub fn reach(p: &Patient) -> Option<(Channel, String)> {
    if p.phone.is_mobile() {
        return Some((Channel::Sms, p.phone.as_str().to_string()));
    }
    p.email.as_ref().filter(|e| !e.trim().is_empty()).map(|e| (Channel::Email, e.clone()))
}

/// When a link sent at `now` ends: the end of the care period's last day (local), or
/// [`OPEN_CARE_DAYS`] from now without an end on file; `None` when the care period is over.
pub fn expires_at(p: &Patient, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let Some(end) = p.care_end else { return Some(now + Duration::days(OPEN_CARE_DAYS)) };
    let next = end.succ_opt()?.and_hms_opt(0, 0, 0)?;
    let at = tz.from_local_datetime(&next).earliest()?.with_timezone(&Utc);
    (at > now).then_some(at)
}

/// The message's text in the patient's language (Japanese unless their calls are in English).
pub fn text(p: &Patient, url: &str) -> String {
    if p.language.starts_with("en") {
        format!(
            "From the health centre: you can answer your daily health check on this page: {url} \
             This link is for you only; please do not share it."
        )
    } else {
        format!(
            "保健所からのお知らせ：毎日の健康観察は、こちらのページからもご回答いただけます。{url} ご本人専用のリンクです。他の方に教えないでください。"
        )
    }
}

impl LinkSender {
    /// The page's address for a token.
    pub fn url(&self, token: &LinkToken) -> String {
        format!("{}/r/{}", self.public_url.trim_end_matches('/'), token.expose())
    }

    /// A new link for the patient (their earlier one revoked) and its message in the outbox.
    pub async fn send(&self, store: &Store, patient_id: &PatientId, now: DateTime<Utc>) -> Result<SentLink, LinkError> {
        let p = store
            .patients()
            .get(patient_id.as_str())
            .await?
            .ok_or_else(|| LinkError::UnknownPatient(patient_id.to_string()))?;
        let expires = expires_at(&p, self.tz, now).ok_or(LinkError::CareEnded)?;
        reach(&p).ok_or(LinkError::NoWay)?;
        let (me, key) = (self.clone(), self.key.clone());
        let compose: Compose = Box::new(move |p: &Patient, token: &LinkToken| {
            let (channel, recipient) = reach(p).ok_or("the patient can no longer be reached")?;
            let body_sealed = key.seal(&text(p, &me.url(token)));
            Ok(NewMessage { channel, recipient, body_sealed })
        });
        let sent = store.links().send(patient_id, expires, now, compose).await?;
        metrics::counter!("ivr_report_links_sent_total", "channel" => sent.channel.as_str()).increment(1);
        tracing::info!(patient = %patient_id, channel = sent.channel.as_str(), "report link sent");
        Ok(sent)
    }

    /// Sends a link to every patient whose care period has begun by `today` and not ended, who
    /// can be reached, and who never had one. Returns how many were sent.
    pub async fn send_due(&self, store: &Store, today: NaiveDate, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut sent = 0;
        for p in store.links().unlinked_in_care(today).await? {
            if reach(&p).is_none() {
                continue;
            }
            match self.send(store, &p.patient_id, now).await {
                Ok(_) => sent += 1,
                Err(LinkError::Store(e)) => return Err(e),
                Err(e) => tracing::info!(patient = %p.patient_id, error = %e, "no report link sent"),
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient(phone: &str, email: Option<&str>, end: Option<&str>) -> Patient {
        Patient {
            patient_id: PatientId::parse("p1").unwrap(),
            name: "x".into(),
            phone: phone.parse().unwrap(),
            birth_md: None,
            language: "ja-JP".into(),
            email: email.map(Into::into),
            area: None,
            care_start: None,
            care_end: end.map(|e| e.parse().unwrap()),
            call_slot: None,
        }
    }

    #[test]
    fn a_link_goes_by_sms_to_a_mobile_else_by_e_mail_else_nowhere() {
        assert_eq!(reach(&patient("+819012345678", Some("a@b.jp"), None)).unwrap().0, Channel::Sms);
        assert_eq!(reach(&patient("+81312345678", Some("a@b.jp"), None)).unwrap().0, Channel::Email);
        assert_eq!(reach(&patient("+81312345678", None, None)), None);
    }

    #[test]
    fn a_link_ends_at_the_end_of_the_care_periods_last_local_day() {
        let tz = chrono_tz::Asia::Tokyo;
        let now = "2026-12-07T03:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let p = patient("+819012345678", None, Some("2026-12-10"));
        assert_eq!(expires_at(&p, tz, now), Some("2026-12-10T15:00:00Z".parse().unwrap()));
        assert_eq!(expires_at(&patient("+819012345678", None, Some("2026-12-06")), tz, now), None);
        assert_eq!(expires_at(&patient("+819012345678", None, None), tz, now), Some(now + Duration::days(14)));
    }
}
