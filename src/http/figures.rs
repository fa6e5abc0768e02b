//! The ministry's figures over HTTP: the choice of days and grouping, checked the same way for
//! the staff page (`/ui/figures`) and the JSON API (`GET /api/v1/figures`, scope `read`,
//! routed in [`super::api`]), and the figures as JSON.
//!
//! A request names its first and last day (`from`, `to`, `YYYY-MM-DD`, local days of
//! `scheduler.timezone`, both included, at most [`MAX_DAYS`] days) and how they are grouped
//! (`by`: `day`, `week` or `period`). The API's defaults: `to` today, `from` six days before
//! `to`, `by` the whole period. The read is written to the staff audit log first.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::{Client, scope};
use super::error::{Error, Query};
use crate::store::figures::{MAX_DAYS, Span, spans};
use crate::store::{AuditEntry, Counts, SpanFigures};
use crate::types::FiguresBy;

/// The fields of a request for figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    From,
    To,
    By,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::From => "from",
            Field::To => "to",
            Field::By => "by",
        }
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The field is missing or empty.
    Missing,
    /// Not a date written `YYYY-MM-DD`.
    NotADate,
    /// The last day is before the first.
    BeforeFrom,
    /// More than [`MAX_DAYS`] days.
    TooLong,
    /// Not `day`, `week` or `period`.
    UnknownBy,
}

impl Problem {
    /// The problem in English, as the API says it.
    pub fn message(self, field: Field) -> String {
        let f = field.as_str();
        match self {
            Problem::Missing => format!("{f} is empty: give a date, YYYY-MM-DD, or leave {f} out"),
            Problem::NotADate => format!("{f} is not a date written YYYY-MM-DD"),
            Problem::BeforeFrom => "to is before from".to_string(),
            Problem::TooLong => format!("from and to are at most {MAX_DAYS} days apart, both included"),
            Problem::UnknownBy => "by is day, week or period".to_string(),
        }
    }
}

/// A checked request: the days, both included, and their grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub by: FiguresBy,
}

impl Choice {
    /// The spans to count: each day, each week, or the whole period.
    pub fn spans(&self, tz: chrono_tz::Tz) -> Vec<Span> {
        spans(self.first, self.last, self.by, tz)
    }
}

fn date(field: Field, v: Option<&str>) -> Result<NaiveDate, (Field, Problem)> {
    let v = v.map(str::trim).filter(|v| !v.is_empty()).ok_or((field, Problem::Missing))?;
    // `%Y` alone would take `+12345` or `2026-1-5`: exactly ten characters, YYYY-MM-DD.
    if v.len() != 10 {
        return Err((field, Problem::NotADate));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| (field, Problem::NotADate))
}

/// Checks a request's fields; `by` defaults to `default_by`. Every field at fault is named.
pub fn check(
    from: Option<&str>,
    to: Option<&str>,
    by: Option<&str>,
    default_by: FiguresBy,
) -> Result<Choice, Vec<(Field, Problem)>> {
    let first = date(Field::From, from);
    let last = date(Field::To, to);
    let by = match by.map(str::trim).filter(|b| !b.is_empty()) {
        None => Ok(default_by),
        Some(b) => FiguresBy::parse(b).map_err(|_| (Field::By, Problem::UnknownBy)),
    };
    let mut errors: Vec<(Field, Problem)> = [&first, &last].iter().filter_map(|r| r.as_ref().err().copied()).collect();
    if let (Ok(f), Ok(l)) = (first, last) {
        if l < f {
            errors.push((Field::To, Problem::BeforeFrom));
        } else if (l - f).num_days() + 1 > MAX_DAYS {
            errors.push((Field::To, Problem::TooLong));
        }
    }
    if let Err(e) = by {
        errors.push(e);
    }
    match (first, last, by) {
        (Ok(first), Ok(last), Ok(by)) if errors.is_empty() => Ok(Choice { first, last, by }),
        _ => Err(errors),
    }
}

/// A rate as JSON: a number (0.5 is 50 %), or null when its divisor is 0.
fn rate(r: Option<f64>) -> Value {
    r.map_or(Value::Null, |r| json!((r * 10_000.0).round() / 10_000.0))
}

/// One area's (or the total's) figures as JSON.
pub fn counts_json(c: &Counts) -> Value {
    json!({
        "new_patients": c.new_patients,
        "asked": c.asked,
        "app_users": c.app_users,
        "consents": c.consents,
        "issued": { "call": c.issued_call, "staff": c.issued_staff, "web": c.issued_web, "total": c.issued() },
        "verified": c.verified,
        "issuance_rate": rate(c.issuance_rate()),
        "registration_rate": rate(c.registration_rate()),
    })
}

fn span_json(s: &SpanFigures) -> Value {
    let areas: Vec<Value> = s
        .areas
        .iter()
        .map(|a| {
            let mut v = counts_json(&a.counts);
            v["area"] = json!(a.area);
            v
        })
        .collect();
    json!({
        "first": s.span.first.to_string(),
        "last": s.span.last.to_string(),
        "areas": areas,
        "total": counts_json(&s.total),
    })
}

/// `GET /api/v1/figures`'s query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FiguresParams {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
}

/// `GET /api/v1/figures?from=&to=&by=`: the figures of each span, per area and in total.
pub(super) async fn figures(
    State(app): State<AppState>,
    client: Client<scope::Read>,
    Query(p): Query<FiguresParams>,
) -> Result<Response, Error> {
    // Left out: `to` is today, `from` six days before `to` (the last seven days).
    let tz = app.turns.issuer.tz;
    let today = app.campaign.clock.now().with_timezone(&tz).date_naive();
    let to = p.to.unwrap_or_else(|| today.to_string());
    let from = p.from.unwrap_or_else(|| {
        let last = NaiveDate::parse_from_str(to.trim(), "%Y-%m-%d").unwrap_or(today);
        (last - chrono::Days::new(6)).to_string()
    });
    let choice = check(Some(&from), Some(&to), p.by.as_deref(), FiguresBy::Period).map_err(|errors| {
        let (field, problem) = errors[0];
        Error::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some(field.as_str()), problem.message(field))
    })?;
    let target = format!("{} {} {}", choice.first, choice.last, choice.by);
    let entry = AuditEntry {
        at: app.campaign.clock.now(),
        actor: format!("api:{}", client.name),
        action: "view_figures".into(),
        target,
        address: client.address.clone(),
    };
    app.store.users().audit(&entry).await.map_err(Error::internal)?;
    let figures = app.store.figures().figures(&choice.spans(tz)).await.map_err(Error::internal)?;
    let spans: Vec<Value> = figures.iter().map(span_json).collect();
    Ok(axum::Json(json!({
        "from": choice.first.to_string(),
        "to": choice.last.to_string(),
        "by": choice.by.as_str(),
        "timezone": tz.name(),
        "spans": spans,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_checked_field_by_field() {
        let ok = check(Some("2026-12-01"), Some("2026-12-07"), None, FiguresBy::Period).unwrap();
        assert_eq!(
            (ok.first.to_string(), ok.last.to_string(), ok.by),
            ("2026-12-01".into(), "2026-12-07".into(), FiguresBy::Period)
        );
        assert_eq!(
            check(None, Some("x"), Some("month"), FiguresBy::Day).unwrap_err(),
            [(Field::From, Problem::Missing), (Field::To, Problem::NotADate), (Field::By, Problem::UnknownBy)]
        );
        assert_eq!(
            check(Some("2026-12-07"), Some("2026-12-01"), None, FiguresBy::Day).unwrap_err(),
            [(Field::To, Problem::BeforeFrom)]
        );
        assert_eq!(
            check(Some("2026-1-5"), Some("2026-02-30"), None, FiguresBy::Day).unwrap_err(),
            [(Field::From, Problem::NotADate), (Field::To, Problem::NotADate)]
        );
        assert_eq!(
            check(Some("2025-01-01"), Some("2026-01-02"), None, FiguresBy::Day).unwrap_err(),
            [(Field::To, Problem::TooLong)]
        );
        assert!(check(Some("2025-01-01"), Some("2025-12-31"), Some("week"), FiguresBy::Day).is_ok());
    }

    #[test]
    fn a_rate_is_a_number_with_four_decimals_or_null() {
        assert_eq!(rate(Some(2.0 / 3.0)), json!(0.6667));
        assert_eq!(rate(None), Value::Null);
    }
}
