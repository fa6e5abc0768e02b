//! Urgent follow-up items reach a person without anyone watching a screen.
//!
//! An item whose severity is `urgent` (opened urgent, or joined by an urgent alert) and that
//! nobody has claimed is told, by SMS, e-mail and webhook through the outbox, to every contact of the
//! first `[[alerts.on_duty]]` list on duty now. Still unclaimed `alerts.escalate_after` later,
//! it is told to the next list on duty after that one; after the last list, the last list on
//! duty is told again at each `escalate_after`, until someone claims the item (or closes it).
//!
//! Each notice is a row of `urgent_notices`, written with its outbox messages in one
//! transaction and keyed by (item, step): a restart neither loses nor repeats one, and two
//! instances never both send the same step. [`next_list`] and [`DutyList::on_duty`] are pure:
//! the time is passed in.

use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;

use super::clock::Clock;
use super::hours::{BlockedDay, DailySpan, DayTime};
use crate::issuer::IssuerKey;
use crate::store::{Followup, Notice, NoticeMessage, Store, StoreError};
use crate::types::{AlertKind, Channel, E164, Severity, alert_words};

/// One contact list of `[[alerts.on_duty]]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DutyList {
    pub name: String,
    /// Mobile numbers (SMS).
    pub sms: Vec<E164>,
    pub email: Vec<String>,
    /// A URL the notice is posted to as JSON `{"text": …}`.
    pub webhook: Option<String>,
    /// `None`: on duty at every hour.
    pub hours: Option<DailySpan>,
    /// The days the list is on duty (weekdays, dates, ranges); empty: every day.
    pub days: Vec<BlockedDay>,
}

impl DutyList {
    /// Whether the list is on duty at `t` (in the health centre's zone `tz`). A span that
    /// crosses midnight belongs to the day it starts on.
    pub fn on_duty(&self, tz: Tz, t: DateTime<Utc>) -> bool {
        let local = t.with_timezone(&tz).naive_local();
        let Ok(time) = DayTime::parse(&format!("{:02}:{:02}", local.hour(), local.minute())) else { return false };
        let day = match self.hours {
            Some(span) if !span.contains(time) => return false,
            Some(span) if span.wraps() && time < span.end => local.date().pred_opt(),
            _ => Some(local.date()),
        };
        self.days.is_empty() || day.is_some_and(|d| self.days.iter().any(|on| on.covers(d)))
    }
}

/// The `[alerts]` settings, checked: the lists in order, the zone, the wait before escalating.
#[derive(Debug, Clone)]
pub struct Duty {
    pub tz: Tz,
    pub lists: Vec<DutyList>,
    pub escalate_after: Duration,
}

/// The list to tell now about an unclaimed urgent item whose last notice was `last`, or `None`
/// (none on duty, or not yet time to escalate). The first notice goes to the first list on
/// duty; an escalation, `escalate_after` after the last notice, to the first list on duty that
/// comes after the last one told; past the last list, to the last list on duty again.
pub fn next_list(duty: &Duty, last: Option<&Notice>, now: DateTime<Utc>) -> Option<usize> {
    let on: Vec<usize> = (0..duty.lists.len()).filter(|&i| duty.lists[i].on_duty(duty.tz, now)).collect();
    match last {
        None => on.first().copied(),
        Some(n) if now < n.sent_at + duty.escalate_after => None,
        Some(n) => on.iter().copied().find(|&i| i as i64 > n.list_index).or_else(|| on.last().copied()),
    }
}

/// The urgent alert kinds of an item, in words (Japanese, English), for a notice: what it is
/// about, no other health data. Each urgent reason of the shipped flow has its own words
/// (`spo2_low`, `breathless`); a reason nobody named is given as the flow wrote it.
pub fn kind_in_words(item: &Followup) -> (String, String) {
    let mut words: Vec<(String, String)> = Vec::new();
    for r in item.reasons.iter().filter(|r| r.severity == Severity::Urgent) {
        let detail = if r.kind == AlertKind::Flow { r.reason.as_str() } else { "" };
        let w = match alert_words(r.kind, detail) {
            Some((ja, en)) => (ja.to_string(), en.to_string()),
            None => (r.reason.clone(), r.reason.clone()),
        };
        if !words.contains(&w) {
            words.push(w);
        }
    }
    if words.is_empty() {
        return ("至急アラート".to_string(), "urgent alert".to_string());
    }
    let ja = words.iter().map(|(ja, _)| ja.as_str()).collect::<Vec<_>>().join("・");
    let en = words.iter().map(|(_, en)| en.as_str()).collect::<Vec<_>>().join(", ");
    (ja, en)
}

/// The link to the item's patient page.
pub fn patient_link(item: &Followup, public_url: &str) -> String {
    format!("{}/ui/patients/{}", public_url.trim_end_matches('/'), item.patient_id.as_str())
}

/// The text of a notice, in Japanese then English: the patient id, the alert kind in words and
/// the link to the patient's page. Nothing else of the patient's health.
pub fn notice_text(item: &Followup, public_url: &str, escalation: bool) -> String {
    let (ja, en) = kind_in_words(item);
    let (again_ja, again_en) =
        if escalation { ("（未対応のため再通知）", " (unclaimed: told again)") } else { ("", "") };
    format!(
        "【至急】要フォロー{again_ja}: 患者 {id} {ja}。 Urgent follow-up{again_en}: patient {id}, {en}. {link}",
        id = item.patient_id.as_str(),
        link = patient_link(item, public_url),
    )
}

/// The messages of a notice to `list`, sealed for the outbox.
pub fn messages(list: &DutyList, text: &str, key: &IssuerKey, due: DateTime<Utc>) -> Vec<NoticeMessage> {
    let sealed = key.seal(text);
    let sms = list.sms.iter().map(|n| (Channel::Sms, n.as_str().to_string()));
    let email = list.email.iter().map(|a| (Channel::Email, a.clone()));
    let webhook = list.webhook.iter().map(|u| (Channel::Webhook, u.clone()));
    sms.chain(email)
        .chain(webhook)
        .map(|(channel, recipient)| NoticeMessage { channel, recipient, body_sealed: sealed.clone(), due })
        .collect()
}

/// The worker of `ivr serve` that tells and escalates urgent items.
pub struct UrgentNotices {
    pub store: Store,
    pub duty: Arc<Duty>,
    pub key: IssuerKey,
    pub public_url: String,
    pub clock: Clock,
    /// Woken when a notice is written, so the outbox sends it at once.
    pub outbox_wake: Arc<tokio::sync::Notify>,
}

/// How often the worker looks for urgent items (a notice goes out within a minute).
const EVERY: std::time::Duration = std::time::Duration::from_secs(15);

impl UrgentNotices {
    /// One pass at `now`: every open urgent item due a notice gets it. Returns the notices
    /// written.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        if self.duty.lists.is_empty() {
            return Ok(0);
        }
        let mut written = 0;
        for (item, last) in self.store.followups().urgent_open(500).await? {
            let Some(index) = next_list(&self.duty, last.as_ref(), now) else { continue };
            let list = &self.duty.lists[index];
            let step = last.as_ref().map_or(0, |n| n.step + 1);
            let text = notice_text(&item, &self.public_url, step > 0);
            let due = crate::notify::outbox::due_at_once(now);
            let msgs = messages(list, &text, &self.key, due);
            let notice = Notice {
                followup_id: item.followup_id,
                step,
                list_index: index as i64,
                list_name: list.name.clone(),
                sent_at: now,
            };
            if self.store.followups().notify_urgent(&notice, &msgs).await? {
                written += 1;
                let what = if step == 0 { "notice" } else { "escalation" };
                metrics::counter!("ivr_urgent_notices_total", "step" => what).increment(1);
                tracing::warn!(
                    followup_id = item.followup_id,
                    patient = %item.patient_id,
                    list = %list.name,
                    step,
                    messages = msgs.len(),
                    "urgent follow-up item: on-duty contacts told"
                );
            }
        }
        if written > 0 {
            self.outbox_wake.notify_one();
        }
        Ok(written)
    }

    /// Runs until `stop`.
    pub async fn run(self, stop: Arc<tokio::sync::Notify>) {
        loop {
            if let Err(e) = self.tick(self.clock.now()).await {
                tracing::error!(error = %e, "urgent notices: store unavailable; trying again");
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

    fn at(s: &str) -> DateTime<Utc> {
        // Local times in Tokyo (UTC+9).
        let local = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        (local - Duration::hours(9)).and_utc()
    }

    fn list(name: &str, hours: Option<&str>, days: &[&str]) -> DutyList {
        DutyList {
            name: name.into(),
            sms: vec![E164::parse("+819012345678").unwrap()],
            email: vec![],
            webhook: None,
            hours: hours.map(|h| DailySpan::parse(h).unwrap()),
            days: days.iter().map(|d| BlockedDay::parse(d).unwrap()).collect(),
        }
    }

    fn duty(lists: Vec<DutyList>) -> Duty {
        Duty { tz: chrono_tz::Asia::Tokyo, lists, escalate_after: Duration::minutes(15) }
    }

    fn notice(index: i64, sent_at: DateTime<Utc>) -> Notice {
        Notice { followup_id: 1, step: 0, list_index: index, list_name: String::new(), sent_at }
    }

    #[test]
    fn a_list_is_on_duty_in_its_hours_on_its_days_and_without_hours_always() {
        let day = list("day", Some("08:30-17:15"), &["mon", "tue", "wed", "thu", "fri"]);
        let tz = chrono_tz::Asia::Tokyo;
        // 2026-12-07 is a Monday.
        assert!(day.on_duty(tz, at("2026-12-07 08:30")));
        assert!(day.on_duty(tz, at("2026-12-07 17:14")));
        assert!(!day.on_duty(tz, at("2026-12-07 17:15")), "the end is excluded");
        assert!(!day.on_duty(tz, at("2026-12-12 10:00")), "a Saturday");
        let night = list("night", Some("17:15-08:30"), &["fri"]);
        assert!(night.on_duty(tz, at("2026-12-11 23:00")), "Friday night");
        assert!(night.on_duty(tz, at("2026-12-12 03:00")), "Saturday's small hours belong to Friday's night");
        assert!(!night.on_duty(tz, at("2026-12-13 03:00")));
        assert!(list("always", None, &[]).on_duty(tz, at("2026-12-13 03:00")));
        assert!(list("holiday", None, &["2026-12-29..2027-01-03"]).on_duty(tz, at("2027-01-01 12:00")));
    }

    #[test]
    fn the_first_notice_goes_to_the_first_list_on_duty_and_off_duty_lists_are_skipped() {
        let d = duty(vec![
            list("day", Some("08:30-17:15"), &[]),
            list("night", Some("17:15-08:30"), &[]),
            list("chief", None, &[]),
        ]);
        assert_eq!(next_list(&d, None, at("2026-12-07 10:00")), Some(0));
        assert_eq!(next_list(&d, None, at("2026-12-07 22:00")), Some(1), "the day list is off duty");
        let none = duty(vec![list("day", Some("08:30-17:15"), &[])]);
        assert_eq!(next_list(&none, None, at("2026-12-07 22:00")), None, "nobody on duty: wait");
    }

    #[test]
    fn an_unclaimed_item_escalates_after_the_wait_to_the_next_list_on_duty_then_repeats_the_last() {
        let d = duty(vec![
            list("day", Some("08:30-17:15"), &[]),
            list("night", Some("17:15-08:30"), &[]),
            list("chief", None, &[]),
        ]);
        let sent = at("2026-12-07 10:00");
        assert_eq!(next_list(&d, Some(&notice(0, sent)), at("2026-12-07 10:14")), None, "not yet");
        assert_eq!(next_list(&d, Some(&notice(0, sent)), at("2026-12-07 10:15")), Some(2), "night is off duty");
        assert_eq!(next_list(&d, Some(&notice(2, sent)), at("2026-12-07 10:15")), Some(2), "the last list again");
        assert_eq!(next_list(&d, Some(&notice(0, at("2026-12-07 17:00"))), at("2026-12-07 17:20")), Some(1));
    }

    fn item(reasons: &[(AlertKind, &str, Severity)]) -> Followup {
        use crate::store::{Change, ChangeKind, Reason};
        let at = at("2026-12-07 10:00");
        Followup {
            followup_id: 7,
            patient_id: crate::types::PatientId::parse("P001").unwrap(),
            status: crate::types::FollowupStatus::Open,
            severity: Severity::Urgent,
            opened_at: at,
            claimed_by: None,
            claimed_at: None,
            closed_by: None,
            closed_at: None,
            outcome: None,
            note: None,
            version: 1,
            last: Change { what: ChangeKind::Opened, by: "ivr".into(), at },
            reasons: reasons
                .iter()
                .map(|&(kind, reason, severity)| Reason {
                    alert_id: None,
                    kind,
                    reason: reason.into(),
                    severity,
                    call_id: None,
                    at,
                })
                .collect(),
            patient_name: "山田 花子".into(),
        }
    }

    #[test]
    fn a_notice_names_each_urgent_condition_in_japanese_and_english_and_links_the_patients_page() {
        let both = item(&[
            (AlertKind::Flow, "spo2_low", Severity::Urgent),
            (AlertKind::Flow, "breathless", Severity::Urgent),
            (AlertKind::Flow, "feeling_worse", Severity::High),
        ]);
        let text = notice_text(&both, "https://ivr.example.jp/", false);
        assert_eq!(
            text,
            "【至急】要フォロー: 患者 P001 SpO2 低下・息苦しさ。 Urgent follow-up: patient P001, Low SpO2, \
             Breathlessness. https://ivr.example.jp/ui/patients/P001"
        );
        assert!(!text.contains("山田") && !text.contains("悪化"), "no name, no reason that is not urgent");
        let breathless = notice_text(&item(&[(AlertKind::Flow, "breathless", Severity::Urgent)]), "https://x", true);
        assert!(breathless.contains("（未対応のため再通知）: 患者 P001 息苦しさ。"), "{breathless}");
        assert!(!breathless.contains("SpO2"), "{breathless}");
        let old = kind_in_words(&item(&[(AlertKind::Flow, "health_check", Severity::Urgent)]));
        assert_eq!(old.0, "体調の悪化（回答を確認）", "an old row still reads");
        let own = kind_in_words(&item(&[(AlertKind::Flow, "fever_high", Severity::Urgent)]));
        assert_eq!(own, ("fever_high".to_string(), "fever_high".to_string()), "a reason nobody named, as written");
        let asked = kind_in_words(&item(&[(AlertKind::AskedForPerson, "outside hours", Severity::Urgent)]));
        assert_eq!(asked.1, "Asked to speak with a person");
    }
}
