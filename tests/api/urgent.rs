//! Urgent follow-up items reach a person: a call through the signed webhooks with SpO2 92 %
//! opens an urgent item; within a minute of the (manual) clock the first on-duty list gets an
//! SMS (the carrier simulator's log), an e-mail (a real SMTP server, `scripts/smtp-sink.py`) and
//! a post to its chat webhook;
//! an off-duty list is skipped; unclaimed 15 minutes later the next list on duty is told; a
//! restart in between neither repeats nor loses a notice; a claim stops the escalation.
//!
//! Without aiosmtpd the e-mail part prints `SKIP: aiosmtpd not installed` and the SMS part still
//! runs; under `CI=true` a missing aiosmtpd fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ivr::config::OnDuty;
use ivr::scheduler::clock::Clock;
use ivr::scheduler::urgent::UrgentNotices;
use ivr::server::Server;
use ivr::store::{Act, Action};

use crate::common::app::*;
use crate::email::{Sink, read};

const PATIENT_PHONE: &str = "+819012345678";
/// The daily call with SpO2 92 %: the shipped flow's urgent alert.
const SPO2_92: [&str; 12] = ["0412", "365", "1", "1", "92", "1", "2", "2", "2", "2", "2", "2"];
const DAY_PHONE: &str = "+819011110001";
const NIGHT_PHONE: &str = "+819011110002";
const CHIEF_PHONE: &str = "+819011110003";
const DAY_EMAIL: &str = "hoken@example.jp";

/// 10:00 in Tokyo on Monday 2026-12-07.
fn monday_10() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T01:00:00Z").unwrap().with_timezone(&Utc)
}

fn list(name: &str, sms: &str, email: Option<&str>, hours: Option<&str>) -> OnDuty {
    OnDuty {
        name: name.into(),
        sms: vec![sms.into()],
        email: email.map(|e| vec![e.to_string()]).unwrap_or_default(),
        webhook: None,
        hours: hours.map(str::to_owned),
        days: vec![],
    }
}

fn worker(app: &TestApp, clock: &Clock) -> UrgentNotices {
    UrgentNotices {
        store: app.store.clone(),
        duty: Arc::new(app.settings.duty()),
        key: app.state.turns.issuer.key.clone(),
        public_url: PUBLIC.into(),
        clock: clock.clone(),
        outbox_wake: app.state.outbox_wake.clone(),
    }
}

/// A chat tool's incoming webhook on 127.0.0.1: what was posted to it.
async fn chat_hook() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let posted = Arc::new(Mutex::new(Vec::new()));
    let keep = posted.clone();
    let app = axum::Router::new().route(
        "/hooks/urgent",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/urgent", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posted)
}

/// The SMS this process's simulator accepted for `to`, once `n` are there (or after 15 s: what
/// there is).
async fn sms_to(app: &TestApp, to: &str, n: usize) -> Vec<String> {
    let sim = app.state.simulator.clone().expect("the simulator");
    for _ in 0..300 {
        let got: Vec<String> = sim.messages().into_iter().filter(|m| m.to == to).map(|m| m.body).collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.messages().into_iter().filter(|m| m.to == to).map(|m| m.body).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_alert_reaches_the_on_duty_contacts_and_escalates_until_claimed() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&sqlite_url(dir.path()));
    settings.email = sink.as_ref().map(Sink::settings);
    let day_email = sink.as_ref().map(|_| DAY_EMAIL);
    let (hook, posted) = chat_hook().await;
    let mut day_list = list("日勤", DAY_PHONE, day_email, Some("08:30-17:15"));
    day_list.webhook = Some(hook);
    settings.alerts.on_duty =
        vec![day_list, list("夜間", NIGHT_PHONE, None, Some("17:15-08:30")), list("所長", CHIEF_PHONE, None, None)];
    let clock = Clock::manual(monday_10());
    let mut app = spawn_app_at(settings, dir, clock.clone()).await;
    app.add_patient("P001", PATIENT_PHONE).await;

    // The shipped flow, walked through the webhooks: SpO2 92 % opens an urgent item.
    app.call(PATIENT_PHONE, &SPO2_92).await;
    let item = app.store.followups().open_for("P001").await.unwrap().expect("an item");
    assert_eq!(item.severity, ivr::types::Severity::Urgent);

    // Within a minute of clock time: the day list (on duty) is told, by SMS and e-mail.
    clock.advance(chrono::Duration::seconds(30));
    worker(&app, &clock).tick(clock.now()).await.unwrap();
    let day = sms_to(&app, DAY_PHONE, 1).await;
    assert_eq!(day.len(), 1, "{day:?}");
    let text = &day[0];
    assert!(text.starts_with("【至急】要フォロー: 患者 P001 SpO2 低下。"), "{text}");
    assert!(text.contains("Urgent follow-up: patient P001, Low SpO2."), "{text}");
    assert!(!text.contains("息苦しさ"), "the patient is not breathless: {text}");
    assert!(text.ends_with(" https://ivr.example.jp/ui/patients/P001"), "the patient's page: {text}");
    assert!(!text.contains("92"), "no health data beyond the kind: {text}");
    assert!(sms_to(&app, NIGHT_PHONE, 0).await.is_empty() && sms_to(&app, CHIEF_PHONE, 0).await.is_empty());
    for _ in 0..300 {
        if !posted.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hooked = posted.lock().unwrap().clone();
    assert_eq!(hooked.len(), 1, "the day list's webhook: {hooked:?}");
    assert_eq!(hooked[0]["text"].as_str(), Some(text.as_str()));
    if let Some(sink) = &sink {
        let mut mails = sink.messages();
        for _ in 0..300 {
            if !mails.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            mails = sink.messages();
        }
        assert_eq!(mails.len(), 1, "one e-mail to the day list");
        let raw = read(&mails[0]);
        let mail = mailparse::parse_mail(&raw).unwrap();
        use mailparse::MailHeaderMap;
        assert_eq!(mail.headers.get_all_values("Delivered-To"), [DAY_EMAIL]);
        assert_eq!(mail.headers.get_first_value("Subject").as_deref(), Some("【至急】要フォロー / Urgent follow-up"));
        assert!(mail.get_body().unwrap().contains("患者 P001"));
    }
    let notices = app.store.followups().notices(item.followup_id).await.unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!((notices[0].step, notices[0].list_name.as_str()), (0, "日勤"));

    // A restart (on the same clock): the notice is neither sent again nor lost; nor before
    // escalate_after is anything more sent.
    app.server.take().unwrap().stop().await;
    let server = Server::start_with_clock(&app.settings, clock.clone()).await.expect("server restarts");
    app.store = server.state.store.clone();
    app.server = Some(server);
    clock.advance(chrono::Duration::minutes(10));
    worker(&app, &clock).tick(clock.now()).await.unwrap();
    assert_eq!(app.store.followups().notices(item.followup_id).await.unwrap().len(), 1);
    assert!(sms_to(&app, DAY_PHONE, 0).await.is_empty(), "not sent again by the new process");

    // Unclaimed 15 minutes after the notice: the next list on duty. The night list is off duty
    // at 10:15 on a Monday, so the chief is told.
    clock.advance(chrono::Duration::minutes(5));
    worker(&app, &clock).tick(clock.now()).await.unwrap();
    let chief = sms_to(&app, CHIEF_PHONE, 1).await;
    assert_eq!(chief.len(), 1, "{chief:?}");
    assert!(chief[0].contains("再通知") && chief[0].contains("P001"), "{}", chief[0]);
    assert!(sms_to(&app, NIGHT_PHONE, 0).await.is_empty(), "the off-duty list is skipped");
    let notices = app.store.followups().notices(item.followup_id).await.unwrap();
    assert_eq!(notices.iter().map(|n| n.list_name.as_str()).collect::<Vec<_>>(), ["日勤", "所長"]);

    // A nurse claims it: no further escalation, however long it waits.
    let claim = Act { action: Action::Claim, by: "sato".into(), version: None, at: clock.now() };
    app.store.followups().act(item.followup_id, &claim).await.unwrap();
    clock.advance(chrono::Duration::minutes(45));
    worker(&app, &clock).tick(clock.now()).await.unwrap();
    assert_eq!(app.store.followups().notices(item.followup_id).await.unwrap().len(), 2);
    assert!(sms_to(&app, DAY_PHONE, 0).await.is_empty() && sms_to(&app, NIGHT_PHONE, 0).await.is_empty());
    assert_eq!(sms_to(&app, CHIEF_PHONE, 0).await.len(), 1);
    assert_eq!(posted.lock().unwrap().len(), 1, "the day list's webhook was told once");
    app.stop().await;
}
