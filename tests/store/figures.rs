//! The ministry's figures on SQLite and on PostgreSQL, over a roster and a call history whose
//! every figure is known beforehand (`common::figures`): per area and in total, for the period,
//! per day and per week, with the period's first instant in and its last day's end out.

use crate::common::db as support;
use crate::common::db::TestDb;
use crate::common::figures::{history_sql, roster};

use chrono::NaiveDate;
use ivr::store::figures::{Span, percent, spans};
use ivr::store::{Counts, SpanFigures};
use ivr::types::FiguresBy;

on_both_backends! {
    with_db: the_figures_of_a_known_history_are_the_ones_worked_out_by_hand;
}

const TOKYO: chrono_tz::Tz = chrono_tz::Asia::Tokyo;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// The counts of `area` (`None`: no area) in a span, or zeros when it has none.
fn of(f: &SpanFigures, area: Option<&str>) -> Counts {
    f.areas.iter().find(|a| a.area.as_deref() == area).map(|a| a.counts).unwrap_or_default()
}

fn counts(n: [i64; 8]) -> Counts {
    Counts {
        new_patients: n[0],
        asked: n[1],
        app_users: n[2],
        consents: n[3],
        issued_call: n[4],
        issued_staff: n[5],
        issued_web: n[6],
        verified: n[7],
    }
}

async fn the_figures_of_a_known_history_are_the_ones_worked_out_by_hand(db: TestDb) {
    let store = db.open().await;
    store.patients().import(&roster()).await.unwrap();
    db.execute(&history_sql()).await;

    let week = spans(d("2026-12-01"), d("2026-12-07"), FiguresBy::Period, TOKYO);
    let f = store.figures().figures(&week).await.unwrap();
    assert_eq!(f.len(), 1);
    let w = &f[0];
    let names: Vec<Option<&str>> = w.areas.iter().map(|a| a.area.as_deref()).collect();
    assert_eq!(names, [Some("north"), Some("south"), None], "areas by name, no area last");
    let north = of(w, Some("north"));
    assert_eq!(north, counts([4, 4, 3, 2, 2, 1, 0, 3]));
    assert_eq!((percent(north.issuance_rate()), percent(north.registration_rate())), ("75.0%".into(), "100.0%".into()));
    let south = of(w, Some("south"));
    assert_eq!(south, counts([2, 1, 1, 1, 1, 0, 1, 1]));
    assert_eq!((percent(south.issuance_rate()), percent(south.registration_rate())), ("100.0%".into(), "50.0%".into()));
    let none = of(w, None);
    assert_eq!(none, counts([0, 0, 0, 0, 0, 1, 0, 0]));
    assert_eq!((percent(none.issuance_rate()), percent(none.registration_rate())), ("—".into(), "0.0%".into()));
    assert_eq!(w.total, counts([6, 5, 4, 3, 3, 2, 1, 4]));
    assert_eq!(
        (percent(w.total.issuance_rate()), percent(w.total.registration_rate())),
        ("100.0%".into(), "66.7%".into())
    );

    // Per day: N2's first answer at 00:00 in Tokyo counts on 12-01, S1's at 23:30 on 12-03.
    let days = spans(d("2026-12-01"), d("2026-12-07"), FiguresBy::Day, TOKYO);
    let f = store.figures().figures(&days).await.unwrap();
    assert_eq!(f.len(), 7);
    assert_eq!(f[0].span, Span::new(d("2026-12-01"), d("2026-12-01"), TOKYO));
    assert_eq!(of(&f[0], Some("north")), counts([4, 3, 2, 2, 2, 0, 0, 2]));
    assert_eq!(of(&f[1], Some("north")), counts([0, 1, 1, 0, 0, 0, 0, 0]), "N3; N2, asked again, counted on 12-01");
    assert_eq!(of(&f[2], Some("south")), counts([2, 1, 1, 1, 1, 0, 0, 0]));
    assert_eq!(f[2].areas.len(), 1, "N4's replacement on 12-03 is no new issue");
    assert_eq!(f[3].total, counts([0, 0, 0, 0, 0, 1, 0, 1]));
    assert_eq!(f[4].total, counts([0, 0, 0, 0, 0, 0, 1, 1]));
    assert_eq!(f[5].total, counts([0, 0, 0, 0, 0, 1, 0, 0]));
    assert!(f[6].areas.is_empty(), "X1's answer at 00:30 on 12-08 is after the period");
    assert_eq!(f[6].total, Counts::default());
    // A patient asked on two days counts once, on the first: the days add up to the week.
    let asked_days: i64 = f.iter().map(|s| s.total.asked).sum();
    assert_eq!(asked_days, w.total.asked);
    let mut summed = Counts::default();
    for day in &f {
        summed.new_patients += day.total.new_patients;
        summed.asked += day.total.asked;
        summed.app_users += day.total.app_users;
        summed.consents += day.total.consents;
        summed.issued_call += day.total.issued_call;
        summed.issued_staff += day.total.issued_staff;
        summed.issued_web += day.total.issued_web;
        summed.verified += day.total.verified;
    }
    assert_eq!(summed, w.total, "every figure of the days adds up to the week's");

    // Per week: Tuesday to Sunday, then Monday alone.
    let weeks = spans(d("2026-12-01"), d("2026-12-07"), FiguresBy::Week, TOKYO);
    let f = store.figures().figures(&weeks).await.unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].span.last, f[1].span.first), (d("2026-12-06"), d("2026-12-07")));
    assert_eq!(f[0].total, w.total);
    assert_eq!(f[1].total, Counts::default());

    // The next day holds X1's late answer and new patient.
    let next = spans(d("2026-12-08"), d("2026-12-08"), FiguresBy::Period, TOKYO);
    let f = store.figures().figures(&next).await.unwrap();
    assert_eq!(of(&f[0], None), counts([1, 1, 1, 0, 0, 0, 0, 0]));
}
