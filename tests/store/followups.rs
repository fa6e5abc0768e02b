//! The follow-up queue on both back ends: alerts open and join items in their transactions,
//! the queue's order and filters, and claims and closes as compare-and-set, refused when stale.

use crate::common::db as support;
use crate::common::patients::{self, PatientBuilder};

use chrono::{DateTime, Duration, Utc};
use ivr::flow::{CallState, Phase};
use ivr::store::*;
use ivr::types::{
    Alert, AlertKind, CallSid, CallStatus, Direction, FollowupOutcome, FollowupStatus, PatientId, Severity,
};

on_both_backends! {
    with_store: an_alert_opens_an_item_and_the_next_one_for_the_patient_joins_it;
    with_store: the_queue_is_most_urgent_first_then_longest_waiting_with_its_filters_and_pages;
    with_store: a_turns_alerts_and_a_hang_up_open_the_item_in_their_own_transaction;
    with_store: an_alert_that_needs_nobody_opens_no_item;
    with_store: claim_release_and_close_and_a_stale_action_is_refused_with_who_did_what;
    with_store: of_many_claims_at_once_exactly_one_wins_and_the_others_name_it;
    with_store: of_a_close_and_a_new_alert_at_once_the_alert_is_never_lost;
    with_store: an_urgent_notice_is_written_once_with_its_messages_and_never_for_a_claimed_item;
    with_store: retention_deletes_old_notices_of_closed_items_and_their_sent_messages_only;
}

fn t(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T09:00:00Z").unwrap().with_timezone(&Utc) + Duration::minutes(minutes)
}

async fn patients(store: &Store, ids: &[(&str, &str)]) {
    for (i, (id, area)) in ids.iter().enumerate() {
        let p = patients::patient(id, &format!("+8190123456{i:02}")).area(area);
        store.patients().upsert(&p).await.unwrap();
    }
}

fn act(action: Action, by: &str, version: Option<i64>, at: DateTime<Utc>) -> Act {
    Act { action, by: by.into(), version, at }
}

fn close(outcome: FollowupOutcome) -> Action {
    Action::Close { outcome, note: "電話で確認".into() }
}

async fn an_alert_opens_an_item_and_the_next_one_for_the_patient_joins_it(store: Store) {
    patients(&store, &[("p1", "north")]).await;
    let q = store.followups();
    assert_eq!(q.open_for("p1").await.unwrap(), None);
    q.raise("p1", &NewAlert::engine(&Alert::new(AlertKind::Unreachable, "3 attempt(s)")), t(0)).await.unwrap();
    let first = q.open_for("p1").await.unwrap().expect("an item is open");
    assert_eq!((first.status, first.severity, first.version), (FollowupStatus::Open, Severity::High, 1));
    assert_eq!(first.opened_at, t(0));
    assert_eq!(first.last, Change { what: ChangeKind::Opened, by: "ivr".into(), at: t(0) });

    q.raise("p1", &NewAlert::flow("health_check", Severity::Urgent), t(5)).await.unwrap();
    let joined = q.open_for("p1").await.unwrap().unwrap();
    assert_eq!(joined.followup_id, first.followup_id, "a second alert joins the open item");
    assert_eq!((joined.severity, joined.version, joined.opened_at), (Severity::Urgent, 2, t(0)));
    assert_eq!(joined.last.what, ChangeKind::Joined);
    let reasons: Vec<_> = joined.reasons.iter().map(|r| (r.kind, r.reason.as_str(), r.severity, r.at)).collect();
    assert_eq!(
        reasons,
        [
            (AlertKind::Unreachable, "3 attempt(s)", Severity::High, t(0)),
            (AlertKind::Flow, "health_check", Severity::Urgent, t(5))
        ]
    );
    assert!(joined.reasons.iter().all(|r| r.alert_id.is_some()));
    assert_eq!(store.calls().patient_alerts("p1").await.unwrap(), ["unreachable: 3 attempt(s)", "health_check"]);

    // A normal alert does not lower the item's severity.
    q.raise("p1", &NewAlert::flow("no_response", Severity::Normal), t(6)).await.unwrap();
    assert_eq!(q.open_for("p1").await.unwrap().unwrap().severity, Severity::Urgent);

    // Once closed, the next alert opens a new item.
    let done = q.act(first.followup_id, &act(close(FollowupOutcome::Visited), "sato", None, t(10))).await.unwrap();
    assert!(matches!(done, Acted::Done(ref f) if f.status == FollowupStatus::Closed), "{done:?}");
    assert_eq!(q.open_for("p1").await.unwrap(), None);
    q.raise("p1", &NewAlert::flow("health_check", Severity::High), t(20)).await.unwrap();
    let second = q.open_for("p1").await.unwrap().unwrap();
    assert_ne!(second.followup_id, first.followup_id);
    assert_eq!((second.reasons.len(), second.severity), (1, Severity::High));
    let closed = q.get(first.followup_id).await.unwrap().unwrap();
    assert_eq!(closed.reasons.len(), 3, "a closed item keeps its reasons");
    assert_eq!((closed.outcome, closed.note.as_deref()), (Some(FollowupOutcome::Visited), Some("電話で確認")));
}

async fn the_queue_is_most_urgent_first_then_longest_waiting_with_its_filters_and_pages(store: Store) {
    patients(&store, &[("a", "north"), ("b", "south"), ("c", "north"), ("d", "north")]).await;
    let q = store.followups();
    q.raise("a", &NewAlert::flow("x", Severity::Normal), t(0)).await.unwrap();
    q.raise("b", &NewAlert::flow("x", Severity::Urgent), t(3)).await.unwrap();
    q.raise("c", &NewAlert::flow("x", Severity::Urgent), t(1)).await.unwrap();
    q.raise("d", &NewAlert::flow("x", Severity::High), t(2)).await.unwrap();
    let ids = |items: Vec<Followup>| items.into_iter().map(|f| f.patient_id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(q.list(&ListQuery::default()).await.unwrap()), ["c", "b", "d", "a"]);
    let north = ListQuery { area: Some("north".into()), ..ListQuery::default() };
    assert_eq!(ids(q.list(&north).await.unwrap()), ["c", "d", "a"]);
    let page2 = ListQuery { limit: 2, offset: 2, ..ListQuery::default() };
    assert_eq!(ids(q.list(&page2).await.unwrap()), ["d", "a"]);

    let c = q.open_for("c").await.unwrap().unwrap();
    let a = q.open_for("a").await.unwrap().unwrap();
    assert!(matches!(q.act(c.followup_id, &act(Action::Claim, "sato", None, t(5))).await.unwrap(), Acted::Done(_)));
    let closing = act(close(FollowupOutcome::NoActionNeeded), "sato", None, t(6));
    assert!(matches!(q.act(a.followup_id, &closing).await.unwrap(), Acted::Done(_)));
    let only = |s| ListQuery { status: StatusFilter::Only(s), ..ListQuery::default() };
    assert_eq!(ids(q.list(&only(FollowupStatus::Claimed)).await.unwrap()), ["c"]);
    assert_eq!(ids(q.list(&only(FollowupStatus::Open)).await.unwrap()), ["b", "d"]);
    assert_eq!(ids(q.list(&only(FollowupStatus::Closed)).await.unwrap()), ["a"]);
    assert_eq!(ids(q.list(&ListQuery::default()).await.unwrap()), ["c", "b", "d"]);
    let all = ListQuery { status: StatusFilter::All, ..ListQuery::default() };
    assert_eq!(ids(q.list(&all).await.unwrap()), ["c", "b", "d", "a"]);

    // One patient's items, of every status or of the active queue; each with the patient's name.
    q.raise("a", &NewAlert::flow("y", Severity::High), t(7)).await.unwrap();
    let of = |id: &str, status| ListQuery { status, patient: Some(id.into()), ..ListQuery::default() };
    let a_items = q.list(&of("a", StatusFilter::All)).await.unwrap();
    let statuses: Vec<FollowupStatus> = a_items.iter().map(|f| f.status).collect();
    assert_eq!(statuses, [FollowupStatus::Open, FollowupStatus::Closed], "the open one is the more urgent");
    assert!(a_items.iter().all(|f| f.patient_id.as_str() == "a" && !f.patient_name.is_empty()));
    assert_eq!(ids(q.list(&of("a", StatusFilter::Active)).await.unwrap()), ["a"]);
    assert_eq!(ids(q.list(&of("nobody", StatusFilter::All)).await.unwrap()), Vec::<String>::new());
}

fn call_state() -> CallState {
    CallState {
        flow: "daily-health-check".into(),
        version: "3".into(),
        lang: "ja-JP".into(),
        state: "spo2".into(),
        phase: Phase::Asking,
        ..Default::default()
    }
}

fn new_call(sid: &str, patient: &str) -> NewCall {
    NewCall {
        call_sid: CallSid::parse(sid).unwrap(),
        patient_id: Some(PatientId::parse(patient).unwrap()),
        job_id: None,
        direction: Direction::Outbound,
        state: call_state(),
        flow_version: None,
        started_at: None,
    }
}

async fn a_turns_alerts_and_a_hang_up_open_the_item_in_their_own_transaction(store: Store) {
    patients(&store, &[("p1", "north"), ("p2", "north")]).await;
    let engine: TurnFn = Box::new(|_| {
        Ok(TurnWrite {
            state: Some(call_state()),
            response: "<Response/>".into(),
            event_state: "spo2".into(),
            event_input: "91#".into(),
            alerts: vec![NewAlert::flow("health_check", Severity::Urgent)],
            ..Default::default()
        })
    });
    store.calls().turn("CA1", 0, Some(new_call("CA1", "p1").into()), engine).await.unwrap();
    let call = store.calls().get("CA1").await.unwrap().unwrap();
    let item = store.followups().open_for("p1").await.unwrap().expect("the turn's alert opened an item");
    assert_eq!(item.severity, Severity::Urgent);
    assert_eq!(item.reasons[0].call_id, Some(call.call_id));
    assert_eq!(store.calls().alerts(call.call_id).await.unwrap(), ["health_check"]);

    // A turn that fails writes neither its alert nor an item.
    let failing: TurnFn = Box::new(|_| Err("the engine failed".into()));
    assert!(store.calls().turn("CA2", 0, Some(new_call("CA2", "p2").into()), failing).await.is_err());
    assert_eq!(store.followups().open_for("p2").await.unwrap(), None);
    assert!(store.calls().patient_alerts("p2").await.unwrap().is_empty());

    // p2 answers, then hangs up before the flow's end: the item says so; a late callback adds nothing.
    let quiet: TurnFn = Box::new(|_| {
        Ok(TurnWrite {
            state: Some(call_state()),
            response: "<Response/>".into(),
            event_state: "spo2".into(),
            event_input: "(start)".into(),
            ..Default::default()
        })
    });
    store.calls().turn("CA3", 0, Some(new_call("CA3", "p2").into()), quiet).await.unwrap();
    assert_eq!(store.followups().open_for("p2").await.unwrap(), None);
    assert!(store.calls().record_status("CA3", CallStatus::Completed, Some(20)).await.unwrap());
    assert!(!store.calls().record_status("CA3", CallStatus::Completed, Some(20)).await.unwrap());
    let hung = store.followups().open_for("p2").await.unwrap().expect("a hang-up opens an item");
    let reasons: Vec<_> = hung.reasons.iter().map(|r| (r.kind, r.severity)).collect();
    assert_eq!(reasons, [(AlertKind::HungUp, Severity::High)]);
    assert_eq!(store.calls().patient_alerts("p2").await.unwrap(), ["hung_up: the call ended before its flow did"]);
    // A call whose flow ended is no hang-up.
    store.calls().record_status("CA1", CallStatus::Completed, Some(60)).await.unwrap();
    assert_eq!(store.followups().open_for("p1").await.unwrap().unwrap().reasons.len(), 2, "CA1 had not ended either");
}

async fn an_alert_that_needs_nobody_opens_no_item(store: Store) {
    patients(&store, &[("p1", "north")]).await;
    let reissued = NewAlert::engine(&Alert::new(AlertKind::MessageReissued, "re-issued: expired before delivery"));
    store.followups().raise("p1", &reissued, t(0)).await.unwrap();
    assert_eq!(store.followups().open_for("p1").await.unwrap(), None);
    assert_eq!(store.calls().patient_alerts("p1").await.unwrap().len(), 1, "the alert is still written");
}

async fn claim_release_and_close_and_a_stale_action_is_refused_with_who_did_what(store: Store) {
    patients(&store, &[("p1", "north")]).await;
    let q = store.followups();
    q.raise("p1", &NewAlert::flow("health_check", Severity::Urgent), t(0)).await.unwrap();
    let item = q.open_for("p1").await.unwrap().unwrap();
    let id = item.followup_id;
    assert_eq!(q.act(id + 1000, &act(Action::Claim, "sato", None, t(1))).await.unwrap(), Acted::Unknown);

    let Acted::Done(claimed) = q.act(id, &act(Action::Claim, "sato", Some(1), t(1))).await.unwrap() else {
        panic!("the claim is done")
    };
    assert_eq!(
        (claimed.status, claimed.claimed_by.as_deref(), claimed.version),
        (FollowupStatus::Claimed, Some("sato"), 2)
    );
    let Acted::Refused(r) = q.act(id, &act(Action::Claim, "suzuki", None, t(2))).await.unwrap() else {
        panic!("a claim by another is refused")
    };
    assert_eq!(r.message, "this item is claimed by sato since 2026-12-07T09:01:00Z");
    assert_eq!(q.get(id).await.unwrap().unwrap(), claimed, "a refused action changes nothing");

    // A new alert joins while sato holds the item: a close on the version sato saw is refused.
    q.raise("p1", &NewAlert::engine(&Alert::new(AlertKind::HungUp, "x")), t(3)).await.unwrap();
    let Acted::Refused(r) =
        q.act(id, &act(close(FollowupOutcome::ReachedByPhone), "sato", Some(2), t(4))).await.unwrap()
    else {
        panic!("a stale close is refused")
    };
    assert_eq!(r.message, "this item changed since version 2: joined by ivr at 2026-12-07T09:03:00Z");
    assert_eq!(q.get(id).await.unwrap().unwrap().status, FollowupStatus::Claimed);

    let Acted::Done(released) = q.act(id, &act(Action::Release, "sato", Some(3), t(5))).await.unwrap() else {
        panic!("released")
    };
    assert_eq!((released.status, released.claimed_by), (FollowupStatus::Open, None));
    let Acted::Done(closed) =
        q.act(id, &act(close(FollowupOutcome::ReferredToHospital), "suzuki", Some(4), t(6))).await.unwrap()
    else {
        panic!("closed")
    };
    assert_eq!(closed, q.get(id).await.unwrap().unwrap(), "what the action answers is what is stored");
    assert_eq!(closed.closed_by.as_deref(), Some("suzuki"));
    let Acted::Refused(r) = q.act(id, &act(Action::Claim, "sato", None, t(7))).await.unwrap() else {
        panic!("a closed item refuses a claim")
    };
    assert_eq!(r.message, "this item was closed by suzuki at 2026-12-07T09:06:00Z");
    assert_eq!((r.status, r.version), (FollowupStatus::Closed, 5));
}

async fn of_many_claims_at_once_exactly_one_wins_and_the_others_name_it(store: Store) {
    patients(&store, &[("p1", "north")]).await;
    store.followups().raise("p1", &NewAlert::flow("health_check", Severity::Urgent), t(0)).await.unwrap();
    let id = store.followups().open_for("p1").await.unwrap().unwrap().followup_id;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let a = act(Action::Claim, &format!("nurse{i}"), Some(1), t(1));
            store.followups().act(id, &a).await.unwrap()
        }));
    }
    let mut done = Vec::new();
    let mut refused = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Acted::Done(f) => done.push(f),
            Acted::Refused(r) => refused.push(r),
            Acted::Unknown => panic!("the item exists"),
        }
    }
    assert_eq!(done.len(), 1, "exactly one claim wins: {done:?}");
    let winner = done[0].claimed_by.clone().unwrap();
    assert_eq!(refused.len(), 7);
    for r in refused {
        assert!(r.message.contains(&format!("claimed by {winner}")), "{}", r.message);
    }
    let stored = store.followups().get(id).await.unwrap().unwrap();
    assert_eq!((stored.claimed_by, stored.version), (Some(winner), 2));
}

async fn of_a_close_and_a_new_alert_at_once_the_alert_is_never_lost(store: Store) {
    patients(&store, &[("p1", "north")]).await;
    for round in 0..5 {
        store.followups().raise("p1", &NewAlert::flow("first", Severity::Normal), t(round * 10)).await.unwrap();
        let item = store.followups().open_for("p1").await.unwrap().unwrap();
        let closing = {
            let store = store.clone();
            tokio::spawn(async move {
                let a = act(close(FollowupOutcome::ReachedByPhone), "sato", Some(item.version), t(round * 10 + 1));
                store.followups().act(item.followup_id, &a).await.unwrap()
            })
        };
        let raising = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .followups()
                    .raise("p1", &NewAlert::flow("second", Severity::Urgent), t(round * 10 + 1))
                    .await
                    .unwrap()
            })
        };
        let closed = closing.await.unwrap();
        raising.await.unwrap();
        // Either the close came first (the alert opened a new item) or the alert did (the
        // close, on the version before it, was refused): the urgent alert is on an open item.
        let open = store.followups().open_for("p1").await.unwrap().expect("the second alert is on an open item");
        assert!(open.reasons.iter().any(|r| r.reason == "second"), "{open:?}");
        match closed {
            Acted::Done(_) => assert_eq!(open.reasons.len(), 1),
            Acted::Refused(r) => {
                assert!(r.message.contains("joined by ivr"), "{}", r.message);
                assert_eq!(open.reasons.len(), 2, "the alert joined the item the close was refused on");
            }
            Acted::Unknown => panic!("the item exists"),
        }
        let last = act(close(FollowupOutcome::NoActionNeeded), "sato", None, t(round * 10 + 2));
        assert!(matches!(store.followups().act(open.followup_id, &last).await.unwrap(), Acted::Done(_)));
    }
}

fn notice(followup_id: i64, step: i64, list: &str, at: DateTime<Utc>) -> Notice {
    Notice { followup_id, step, list_index: step, list_name: list.into(), sent_at: at }
}

fn message(to: &str, at: DateTime<Utc>) -> NoticeMessage {
    NoticeMessage {
        channel: ivr::types::Channel::Sms,
        recipient: to.into(),
        body_sealed: "sealed:v1:x".into(),
        due: at,
    }
}

async fn an_urgent_notice_is_written_once_with_its_messages_and_never_for_a_claimed_item(store: Store) {
    patients(&store, &[("p1", "north"), ("p2", "north")]).await;
    let q = store.followups();
    q.raise("p1", &NewAlert::flow("health_check", Severity::Urgent), t(0)).await.unwrap();
    q.raise("p2", &NewAlert::engine(&Alert::new(AlertKind::Unreachable, "3 attempt(s)")), t(0)).await.unwrap();
    let open = q.urgent_open(10).await.unwrap();
    assert_eq!(open.len(), 1, "only the urgent item: {open:?}");
    let (item, last) = &open[0];
    assert_eq!((item.patient_id.as_str(), last), ("p1", &None));
    assert_eq!(item.reasons.len(), 1);
    let id = item.followup_id;

    let msgs = [message("+819011110001", t(1)), message("+819011110009", t(1))];
    assert!(q.notify_urgent(&notice(id, 0, "day", t(1)), &msgs).await.unwrap());
    // The same step again (another instance, or a process that restarted): nothing written.
    assert!(!q.notify_urgent(&notice(id, 0, "day", t(1)), &msgs).await.unwrap());
    let claimed = store.outbox().claim("test", t(2), t(3), 10).await.unwrap();
    assert_eq!(claimed.len(), 2, "the notice's two messages, once");
    assert!(claimed.iter().all(|m| m.patient_id.is_none() && m.number_id.is_none()));
    let open = q.urgent_open(10).await.unwrap();
    assert_eq!(open[0].1.as_ref().map(|n| (n.step, n.list_name.as_str(), n.sent_at)), Some((0, "day", t(1))));

    // Claimed: no notice is written, and the item is no longer due one.
    q.act(id, &act(Action::Claim, "sato", None, t(5))).await.unwrap();
    assert!(!q.notify_urgent(&notice(id, 1, "night", t(16)), &msgs).await.unwrap());
    assert!(q.urgent_open(10).await.unwrap().is_empty());
    assert_eq!(q.notices(id).await.unwrap().len(), 1);
}

async fn retention_deletes_old_notices_of_closed_items_and_their_sent_messages_only(store: Store) {
    patients(&store, &[("p1", "north")]).await;
    let q = store.followups();
    q.raise("p1", &NewAlert::flow("spo2_low", Severity::Urgent), t(0)).await.unwrap();
    let id = q.open_for("p1").await.unwrap().expect("an item").followup_id;
    let msgs = [message("+819011110001", t(1)), message("hoken@example.jp", t(1))];
    assert!(q.notify_urgent(&notice(id, 0, "day", t(1)), &msgs).await.unwrap());
    // The outbox stamps its rows with the wall clock: a cut-off an hour from now covers them.
    let later = Utc::now() + Duration::hours(1);

    // The item is open and its messages still to send: nothing goes.
    assert_eq!(q.purge_notices(later, false).await.unwrap(), NoticesPurged::default());
    assert_eq!(q.notices(id).await.unwrap().len(), 1);

    // Sent, and the item closed: old enough, both go; a dry run only counts.
    for m in store.outbox().claim("test", t(2), t(3), 10).await.unwrap() {
        let sent = SendResult::Sent { provider_id: format!("SM{}", m.message_id), status: "sent".into() };
        store.outbox().finish(m.message_id, &sent, t(2)).await.unwrap();
    }
    q.act(id, &act(Action::Claim, "sato", None, t(5))).await.unwrap();
    q.act(id, &act(close(FollowupOutcome::ReachedByPhone), "sato", None, t(6))).await.unwrap();
    assert_eq!(q.purge_notices(t(0), false).await.unwrap(), NoticesPurged::default(), "nothing that old");
    let both = NoticesPurged { notices: 1, messages: 2 };
    assert_eq!(q.purge_notices(later, true).await.unwrap(), both);
    assert_eq!(q.notices(id).await.unwrap().len(), 1, "a dry run deletes nothing");
    assert_eq!(q.purge_notices(later, false).await.unwrap(), both);
    assert!(q.notices(id).await.unwrap().is_empty());
    assert_eq!(q.purge_notices(later, false).await.unwrap(), NoticesPurged::default(), "a second run finds nothing");
    // The item itself, its outcome and its reasons stay.
    let item = q.get(id).await.unwrap().expect("the item stays");
    assert_eq!((item.status, item.outcome), (FollowupStatus::Closed, Some(FollowupOutcome::ReachedByPhone)));
    assert_eq!(item.reasons.len(), 1);
}
