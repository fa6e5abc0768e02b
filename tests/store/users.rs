//! Staff accounts, sessions and the staff audit log in the store, on SQLite and on PostgreSQL:
//! a name is taken once, a session is found by its hash with its account, disabling an account
//! or changing its password ends its sessions, and the audit log reads back newest first.

use crate::common::db as support;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use ivr::store::*;
use ivr::types::{Role, UiLanguage, UserName};

fn name(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T09:00:00.123Z").unwrap().with_timezone(&Utc)
}

async fn add(store: &Store, n: &str, role: Role) -> i64 {
    let n = name(n);
    let user = NewUser { name: &n, role, language: UiLanguage::Ja, password_hash: "$argon2id$test" };
    store.users().add_user(&user).await.unwrap()
}

fn session(hash: &str, user_id: i64, at: DateTime<Utc>) -> Session {
    Session { session_hash: hash.into(), user_id, csrf_token: format!("csrf-{hash}"), created_at: at, last_seen_at: at }
}

on_both_backends! {
    with_store: a_user_is_added_once_found_by_name_and_listed_by_name;
    with_store: a_session_is_found_by_its_hash_with_its_user_and_touched_and_ended;
    with_store: disabling_a_user_or_changing_their_password_ends_their_sessions_only;
    with_store: the_language_of_a_user_is_changed;
    with_store: stale_sessions_are_ended_and_live_ones_kept;
    with_store: the_staff_audit_log_reads_back_newest_first;
    with_store: retention_deletes_the_audit_rows_older_than_the_cut_off_and_a_dry_run_only_counts;
}

async fn a_user_is_added_once_found_by_name_and_listed_by_name(store: Store) {
    let id = add(&store, "sato", Role::Nurse).await;
    add(&store, "abe", Role::Admin).await;
    let again = NewUser { name: &name("sato"), role: Role::Viewer, language: UiLanguage::En, password_hash: "x" };
    assert!(matches!(store.users().add_user(&again).await, Err(StoreError::Duplicate(_))));
    let u = store.users().user("sato").await.unwrap().expect("found");
    assert_eq!((u.user_id, u.role, u.language, u.disabled), (id, Role::Nurse, UiLanguage::Ja, false));
    assert_eq!(u.password_hash, "$argon2id$test");
    assert_eq!(store.users().user("nobody").await.unwrap(), None);
    let names: Vec<String> = store.users().list_users().await.unwrap().into_iter().map(|u| u.name.into()).collect();
    assert_eq!(names, ["abe", "sato"]);
}

async fn a_session_is_found_by_its_hash_with_its_user_and_touched_and_ended(store: Store) {
    let id = add(&store, "sato", Role::Viewer).await;
    store.users().add_session(&session("h1", id, t0())).await.unwrap();
    let (s, u) = store.users().session("h1").await.unwrap().expect("found");
    assert_eq!(s, session("h1", id, t0()));
    assert_eq!(u.name, "sato");
    assert_eq!(store.users().session("h2").await.unwrap(), None);
    let later = t0() + Duration::minutes(5);
    store.users().touch_session("h1", later).await.unwrap();
    let (s, _) = store.users().session("h1").await.unwrap().unwrap();
    assert_eq!((s.created_at, s.last_seen_at), (t0(), later.trunc_subsecs(3)));
    store.users().end_session("h1").await.unwrap();
    assert_eq!(store.users().session("h1").await.unwrap(), None);
    store.users().end_session("h1").await.unwrap();
}

async fn disabling_a_user_or_changing_their_password_ends_their_sessions_only(store: Store) {
    let sato = add(&store, "sato", Role::Nurse).await;
    let abe = add(&store, "abe", Role::Admin).await;
    for (h, id) in [("s1", sato), ("s2", sato), ("a1", abe)] {
        store.users().add_session(&session(h, id, t0())).await.unwrap();
    }
    assert!(store.users().set_password("sato", "$argon2id$new").await.unwrap());
    assert_eq!(store.users().session("s1").await.unwrap(), None);
    assert_eq!(store.users().session("s2").await.unwrap(), None);
    assert_eq!(store.users().user("sato").await.unwrap().unwrap().password_hash, "$argon2id$new");
    assert!(store.users().session("a1").await.unwrap().is_some(), "another user's session lives on");
    assert!(store.users().disable_user("abe").await.unwrap());
    assert_eq!(store.users().session("a1").await.unwrap(), None);
    assert!(store.users().user("abe").await.unwrap().unwrap().disabled);
    assert!(!store.users().disable_user("nobody").await.unwrap());
    assert!(!store.users().set_password("nobody", "x").await.unwrap());
}

async fn the_language_of_a_user_is_changed(store: Store) {
    add(&store, "sato", Role::Nurse).await;
    assert!(store.users().set_language("sato", UiLanguage::En).await.unwrap());
    assert_eq!(store.users().user("sato").await.unwrap().unwrap().language, UiLanguage::En);
    assert!(!store.users().set_language("nobody", UiLanguage::En).await.unwrap());
}

async fn the_staff_audit_log_reads_back_newest_first(store: Store) {
    for (i, action) in ["login", "view_patient", "logout"].iter().enumerate() {
        let entry = AuditEntry {
            at: t0() + Duration::seconds(i as i64),
            actor: "sato".into(),
            action: action.to_string(),
            target: if i == 1 { "P001".into() } else { String::new() },
            address: "192.0.2.1".into(),
        };
        store.users().audit(&entry).await.unwrap();
    }
    let rows = store.users().audit_rows(10).await.unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["logout", "view_patient", "login"]);
    assert_eq!((rows[1].target.as_str(), rows[1].address.as_str()), ("P001", "192.0.2.1"));
    assert_eq!(rows[2].at, t0());
    assert_eq!(store.users().audit_rows(2).await.unwrap().len(), 2);
}

async fn stale_sessions_are_ended_and_live_ones_kept(store: Store) {
    let id = add(&store, "sato", Role::Nurse).await;
    let mut idle = session("idle", id, t0());
    idle.last_seen_at = t0();
    let mut old = session("old", id, t0() - Duration::hours(13));
    old.last_seen_at = t0() + Duration::minutes(50);
    let mut live = session("live", id, t0() + Duration::minutes(10));
    live.last_seen_at = t0() + Duration::minutes(55);
    for s in [&idle, &old, &live] {
        store.users().add_session(s).await.unwrap();
    }
    let now = t0() + Duration::hours(1);
    let ended = store.users().end_stale_sessions(now - Duration::minutes(30), now - Duration::hours(12)).await.unwrap();
    assert_eq!(ended, 2);
    assert!(store.users().session("live").await.unwrap().is_some());
    assert!(store.users().session("idle").await.unwrap().is_none());
    assert!(store.users().session("old").await.unwrap().is_none());
}

async fn retention_deletes_the_audit_rows_older_than_the_cut_off_and_a_dry_run_only_counts(store: Store) {
    for (i, days) in [2000, 1826, 1824, 1].iter().enumerate() {
        let entry = AuditEntry {
            at: t0() - Duration::days(*days),
            actor: "sato".into(),
            action: format!("view_patient_{i}"),
            target: "P001".into(),
            address: "192.0.2.1".into(),
        };
        store.users().audit(&entry).await.unwrap();
    }
    let before = t0() - Duration::days(1825);
    assert_eq!(store.users().purge_audit(before, true).await.unwrap(), 2, "two rows are older");
    assert_eq!(store.users().audit_rows(10).await.unwrap().len(), 4, "a dry run deletes nothing");
    assert_eq!(store.users().purge_audit(before, false).await.unwrap(), 2);
    let left: Vec<String> = store.users().audit_rows(10).await.unwrap().into_iter().map(|r| r.action).collect();
    assert_eq!(left, ["view_patient_3", "view_patient_2"]);
    assert_eq!(store.users().purge_audit(before, false).await.unwrap(), 0, "a second run finds nothing");
}
