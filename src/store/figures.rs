//! The ministry's figures (the seed's reference 3), per area and span of days: new patients,
//! patients asked the app question, app users, consents, numbers issued by origin, and the
//! numbers the app verified; with the issuance rate (issued ÷ new patients) and the
//! registration rate (verified ÷ issued). `docs/health-centre.md` defines each figure.
//!
//! Each back end counts one span per statement ([`Figures::figures`]); what they return is put
//! together here ([`assemble`]), so both back ends sum and sort the same way.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::Fut;
use crate::types::{FiguresBy, NumberOrigin};

/// The answer the shipped flow records for the app question (「接触確認アプリをご利用の方は１を…」):
/// `yes` or `no`.
pub const APP_ANSWER: &str = "app_use";
/// The answer the shipped flow records for the consent to register in the app: `yes` or `no`.
/// (Migration 0024's triggers, which keep each patient's first answers for the figures, name
/// both answers and `yes` as they are here.)
pub const CONSENT_ANSWER: &str = "consent";

/// The longest span of days the figures are counted over at once.
pub const MAX_DAYS: i64 = 366;

/// Local days `first..=last` in the health centre's zone, and the instants they cover
/// (`from` inclusive, `until` exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Span {
    /// The days `first..=last` in `tz`.
    pub fn new(first: NaiveDate, last: NaiveDate, tz: Tz) -> Span {
        Span { first, last, from: midnight(first, tz), until: midnight(last + Days::new(1), tz) }
    }

    /// How many days it holds.
    pub fn days(&self) -> i64 {
        (self.last - self.first).num_days() + 1
    }
}

/// The first instant of a local day (the earliest, where a zone's clocks skip or repeat).
fn midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let naive = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        // Midnight skipped by a clock change: the day starts an hour later.
        chrono::LocalResult::None => tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc)),
    }
}

/// The spans of `first..=last` grouped `by` day, by week (Monday to Sunday, the first and last
/// cut at the period's ends) or as one period.
pub fn spans(first: NaiveDate, last: NaiveDate, by: FiguresBy, tz: Tz) -> Vec<Span> {
    let mut out = Vec::new();
    let mut start = first;
    while start <= last {
        let end = match by {
            FiguresBy::Day => start,
            FiguresBy::Week => {
                let to_sunday = 6 - u64::from(start.weekday().num_days_from_monday());
                (start + Days::new(to_sunday)).min(last)
            }
            FiguresBy::Period => last,
        };
        out.push(Span::new(start, end, tz));
        start = end + Days::new(1);
    }
    out
}

/// The counts of one area (or all areas) over one span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Patients whose care started in the span (`care_start`).
    pub new_patients: i64,
    /// Patients first asked the app question (answered 1 or 2) in the span: each patient counts
    /// once, on the day of their first answer, so the days of a month add up to the month.
    pub asked: i64,
    /// Patients who first said in the span that they use the app.
    pub app_users: i64,
    /// Patients who first consented in the span to registering in the app (answered yes to the
    /// consent question).
    pub consents: i64,
    /// Numbers issued in the span, by origin.
    pub issued_call: i64,
    pub issued_staff: i64,
    pub issued_web: i64,
    /// Of the numbers issued in the span, those the app has verified (the number, or the
    /// replacement of it sent when it expired before it was delivered).
    pub verified: i64,
}

impl Counts {
    /// Numbers issued in the span, whatever their origin.
    pub fn issued(&self) -> i64 {
        self.issued_call + self.issued_staff + self.issued_web
    }

    /// Issued ÷ new patients; `None` when no patient is new.
    pub fn issuance_rate(&self) -> Option<f64> {
        ratio(self.issued(), self.new_patients)
    }

    /// Verified ÷ issued; `None` when none was issued.
    pub fn registration_rate(&self) -> Option<f64> {
        ratio(self.verified, self.issued())
    }

    fn add(&mut self, o: &Counts) {
        self.new_patients += o.new_patients;
        self.asked += o.asked;
        self.app_users += o.app_users;
        self.consents += o.consents;
        self.issued_call += o.issued_call;
        self.issued_staff += o.issued_staff;
        self.issued_web += o.issued_web;
        self.verified += o.verified;
    }
}

fn ratio(n: i64, d: i64) -> Option<f64> {
    (d != 0).then(|| n as f64 / d as f64)
}

/// A rate as a percentage with one decimal (`"37.5%"`), or `"—"` when its divisor is 0.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_string(), |r| format!("{:.1}%", r * 100.0))
}

/// The figures of one area: `None` for patients with no area on the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaFigures {
    pub area: Option<String>,
    pub counts: Counts,
}

/// The figures of one span: each area that has any (by name, patients with no area last), and
/// their total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanFigures {
    pub span: Span,
    pub areas: Vec<AreaFigures>,
    pub total: Counts,
}

/// What a back end counts for one area of one span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counted {
    /// Patients whose care started in the span.
    New(i64),
    /// Patients who answered the app question, said they use the app, consented.
    Answers { asked: i64, app_users: i64, consents: i64 },
    /// Numbers issued of this origin (as stored), and how many of them the app verified.
    Issued { origin: String, issued: i64, verified: i64 },
}

impl Counted {
    /// A row of a back end's figures statement: (kind, a, b, c) as its parts write them.
    pub(crate) fn of(kind: String, a: i64, b: i64, c: i64) -> Counted {
        match kind.as_str() {
            "new" => Counted::New(a),
            "asked" | "app_user" | "consent" => Counted::Answers { asked: a, app_users: b, consents: c },
            _ => Counted::Issued { origin: kind, issued: a, verified: b },
        }
    }
}

/// A span's counts as the back end returned them, per area, put together.
pub fn assemble(span: Span, rows: Vec<(Option<String>, Counted)>) -> Result<SpanFigures, super::StoreError> {
    // `None` (no area) sorts after every name.
    let mut by_area: BTreeMap<(bool, Option<String>), Counts> = BTreeMap::new();
    for (area, counted) in rows {
        let c = by_area.entry((area.is_none(), area)).or_default();
        match counted {
            Counted::New(n) => c.new_patients += n,
            Counted::Answers { asked, app_users, consents } => {
                c.asked += asked;
                c.app_users += app_users;
                c.consents += consents;
            }
            Counted::Issued { origin, issued, verified } => {
                let origin = NumberOrigin::parse(&origin)
                    .map_err(|e| super::StoreError::Turn(format!("a stored number's origin '{origin}': {e}")))?;
                match origin {
                    NumberOrigin::Call => c.issued_call += issued,
                    NumberOrigin::Staff => c.issued_staff += issued,
                    NumberOrigin::Web => c.issued_web += issued,
                }
                c.verified += verified;
            }
        }
    }
    let mut total = Counts::default();
    let areas: Vec<AreaFigures> = by_area
        .into_iter()
        .map(|((_, area), counts)| {
            total.add(&counts);
            AreaFigures { area, counts }
        })
        .collect();
    Ok(SpanFigures { span, areas, total })
}

/// The statement a back end (`sqlite` or `postgres`) counts one span with, for its plan
/// (`EXPLAIN`, in the benchmark and docs/performance.md). Its parameters: the first and last
/// day (`YYYY-MM-DD`), the span's first instant and the next span's, the app question's and the
/// consent's answer names, and the value of a yes.
pub fn statement(backend: &str) -> Option<&'static str> {
    match backend {
        "sqlite" => Some(super::sqlite::figures::FIGURES_SQL),
        "postgres" => Some(super::postgres::figures::FIGURES_SQL),
        _ => None,
    }
}

/// The figures' operations (`store.figures()`).
pub trait Figures {
    /// The figures of each span, in the order given.
    fn figures<'a>(&'a self, spans: &'a [Span]) -> Fut<'a, Vec<SpanFigures>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_day_in_tokyo_starts_at_fifteen_hundred_utc_the_day_before() {
        let s = Span::new(d("2026-12-01"), d("2026-12-01"), chrono_tz::Asia::Tokyo);
        assert_eq!(s.from.to_rfc3339(), "2026-11-30T15:00:00+00:00");
        assert_eq!(s.until.to_rfc3339(), "2026-12-01T15:00:00+00:00");
        assert_eq!(s.days(), 1);
    }

    #[test]
    fn a_day_with_a_clock_change_is_twenty_three_hours_long() {
        let s = Span::new(d("2026-03-08"), d("2026-03-08"), chrono_tz::America::New_York);
        assert_eq!((s.until - s.from).num_hours(), 23);
    }

    #[test]
    fn weeks_run_monday_to_sunday_and_are_cut_at_the_period_ends() {
        // 2026-12-02 is a Wednesday.
        let w = spans(d("2026-12-02"), d("2026-12-15"), FiguresBy::Week, chrono_tz::Asia::Tokyo);
        let days: Vec<_> = w.iter().map(|s| (s.first.to_string(), s.last.to_string())).collect();
        assert_eq!(
            days,
            [
                ("2026-12-02".into(), "2026-12-06".into()),
                ("2026-12-07".into(), "2026-12-13".into()),
                ("2026-12-14".into(), "2026-12-15".into())
            ]
        );
        assert_eq!(spans(d("2026-12-02"), d("2026-12-04"), FiguresBy::Day, chrono_tz::UTC).len(), 3);
        let one = spans(d("2026-12-02"), d("2026-12-31"), FiguresBy::Period, chrono_tz::UTC);
        assert_eq!((one.len(), one[0].days()), (1, 30));
    }

    #[test]
    fn rates_are_none_when_their_divisor_is_zero() {
        let c = Counts {
            new_patients: 8,
            issued_call: 2,
            issued_staff: 1,
            issued_web: 1,
            verified: 3,
            ..Counts::default()
        };
        assert_eq!(c.issued(), 4);
        assert_eq!(c.issuance_rate(), Some(0.5));
        assert_eq!(c.registration_rate(), Some(0.75));
        assert_eq!(percent(c.registration_rate()), "75.0%");
        assert_eq!(Counts::default().issuance_rate(), None);
        assert_eq!(percent(None), "—");
    }

    #[test]
    fn areas_are_summed_sorted_by_name_with_no_area_last_and_an_unknown_origin_is_refused() {
        let span = Span::new(d("2026-12-01"), d("2026-12-01"), chrono_tz::UTC);
        let issued = |o: &str, n, v| Counted::Issued { origin: o.into(), issued: n, verified: v };
        let rows = vec![
            (None, Counted::New(1)),
            (Some("south".into()), Counted::New(2)),
            (Some("north".into()), Counted::New(4)),
            (Some("north".into()), issued("call", 2, 1)),
            (Some("north".into()), issued("web", 1, 1)),
            (Some("north".into()), Counted::Answers { asked: 5, app_users: 3, consents: 2 }),
        ];
        let f = assemble(span, rows).unwrap();
        let names: Vec<_> = f.areas.iter().map(|a| a.area.clone()).collect();
        assert_eq!(names, [Some("north".to_string()), Some("south".to_string()), None]);
        assert_eq!(f.areas[0].counts.issued(), 3);
        assert_eq!((f.total.new_patients, f.total.issued_web, f.total.verified, f.total.asked), (7, 1, 2, 5));
        assert!(assemble(span, vec![(None, issued("fax", 1, 0))]).is_err());
    }
}
