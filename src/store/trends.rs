//! The patients table and a patient's charts: every patient in care with their latest readings
//! (the numbers a flow's questions record, e.g. temperature and SpO2), the last days of them,
//! their open follow-up item and the last call's outcome; and a patient's readings call by
//! call over the whole care period, missed calls included.
//!
//! The table is read in two steps, so that a page costs the same with 100 or 100,000 patients:
//! the page's patient ids (the filters, the order and the count, joining only what they need),
//! then everything shown about those ids. Each patient's latest reading of each name is kept in
//! `latest_answers` (migration 0018, triggers on `answers`): sorting by a reading joins one row
//! per patient, not every call.
//!
//! The SQL is written once here for both back ends; [`Dialect`] says how each names its
//! parameters and a list of values.

use chrono::{DateTime, NaiveDate, Utc};

use super::Fut;
use super::patients::Patient;
use crate::flow::Value;
use crate::types::Severity;

/// Which patients a page of the table shows, and in which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableQuery {
    /// Patients in care on this day (a care period with no start or no end is open that side).
    pub today: NaiveDate,
    /// A part of the id or the name (any case), or of the phone number's digits.
    pub search: Option<String>,
    pub area: Option<String>,
    pub language: Option<String>,
    /// A call slot's name; `Some("")` for the patients on the default slot.
    pub slot: Option<String>,
    pub alert: AlertFilter,
    pub sort: SortKey,
    /// The order reversed (each key has its natural direction; see [`SortKey`]).
    pub desc: bool,
    pub limit: i64,
    pub offset: i64,
}

/// Patients by their follow-up item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFilter {
    Any,
    /// With an item not closed yet.
    Open,
    /// With an item not closed yet of this severity.
    Severity(Severity),
    /// With no item open.
    NoneOpen,
}

/// The table's order. Natural directions: id, name and area ascending; a reading lowest first
/// (patients with none last); follow-up most urgent first, then longest waiting (none last);
/// last call the worst outcome first (unreachable, failed, to retry, in progress, done; never
/// called last). Ties go by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Name,
    Area,
    Reading(String),
    Followup,
    LastCall,
}

/// One reading: a number a call recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub call_id: i64,
    /// When the answer was recorded.
    pub at: DateTime<Utc>,
    pub value: Value,
}

impl Reading {
    pub(crate) fn of(call_id: i64, at: DateTime<Utc>, raw: i64, scale: i64) -> Reading {
        Reading { call_id, at, value: Value::Number { raw, scale: scale.clamp(0, 9) as u8 } }
    }

    /// The value as a float, for drawing.
    pub fn number(&self) -> f64 {
        match &self.value {
            Value::Number { raw, scale } => *raw as f64 / 10f64.powi(i32::from(*scale)),
            _ => f64::NAN,
        }
    }
}

/// A patient's open follow-up item, as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenItem {
    pub followup_id: i64,
    pub severity: Severity,
    pub claimed_by: Option<String>,
    pub opened_at: DateTime<Utc>,
}

/// The patient's latest job (a day's call, or one placed by hand): how it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastCall {
    pub day: Option<NaiveDate>,
    /// planned, dialing, retry, done, unreachable, failed.
    pub status: String,
    /// How its last attempt ended (completed, no-answer, busy, …), once one did.
    pub outcome: Option<String>,
    pub attempts: i64,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub patient: Patient,
    /// The latest reading of each name asked for that the patient has.
    pub latest: Vec<(String, Reading)>,
    /// The readings since the table's `since`, oldest first.
    pub recent: Vec<(String, Reading)>,
    pub followup: Option<OpenItem>,
    pub last_call: Option<LastCall>,
}

/// A page of the table and how many patients match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePage {
    pub total: i64,
    pub rows: Vec<TableRow>,
}

/// A call of a patient on the chart's time axis: answered (with its readings, maybe none when
/// the caller hung up before them), or missed (a day's job that never reached the patient).
#[derive(Debug, Clone, PartialEq)]
pub struct CallPoint {
    pub at: DateTime<Utc>,
    /// The call's id; `None` for a missed job.
    pub call_id: Option<i64>,
    /// The call's status (completed, …), or the job's (unreachable, failed).
    pub status: String,
    pub missed: bool,
    pub readings: Vec<(String, Value)>,
}

/// The table's and the charts' reads (`store.trends()`).
pub trait Trends {
    /// A page of the patients table, with the readings named `names` (latest, and since
    /// `since` for the sparklines).
    fn table<'a>(&'a self, q: &'a TableQuery, names: &'a [String], since: DateTime<Utc>) -> Fut<'a, TablePage>;
    /// A patient's calls in time order with their readings named `names`, and the days'
    /// jobs that never reached them (unreachable, failed), at their last change.
    fn points<'a>(&'a self, patient_id: &'a str, names: &'a [String]) -> Fut<'a, Vec<CallPoint>>;
}

/// How a back end writes parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

impl Dialect {
    fn at(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

/// The page's ids query and the count query, with their parameters (the count's are the
/// first ones of the page's). Public for the benchmark, which shows their plans.
pub struct PageSql {
    pub ids: String,
    pub count: String,
    pub params: Vec<Param>,
    /// How many of `params` the count query takes.
    pub count_params: usize,
}

/// `%text%` for `like`, its own `%`, `_` and `\` escaped (with `escape '\'`).
fn contains(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Adds a parameter; its placeholder.
fn push(d: Dialect, params: &mut Vec<Param>, v: Param) -> String {
    params.push(v);
    d.at(params.len())
}

/// The SQL of a page's ids and of the count of every match.
pub fn page_sql(d: Dialect, q: &TableQuery) -> PageSql {
    let mut params = Vec::new();
    // Care dates are `YYYY-MM-DD` text on both back ends.
    let today = push(d, &mut params, Param::Text(q.today.to_string()));
    let mut wh = vec![format!("(p.care_start is null or p.care_start <= {today})")];
    wh.push(format!("(p.care_end is null or p.care_end >= {today})"));
    if let Some(area) = &q.area {
        wh.push(format!("p.area = {}", push(d, &mut params, Param::Text(area.clone()))));
    }
    if let Some(language) = &q.language {
        wh.push(format!("p.language = {}", push(d, &mut params, Param::Text(language.clone()))));
    }
    match q.slot.as_deref() {
        None => {}
        Some("") => wh.push("p.call_slot is null".into()),
        Some(slot) => wh.push(format!("p.call_slot = {}", push(d, &mut params, Param::Text(slot.to_string())))),
    }
    if let Some(s) = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let text = push(d, &mut params, Param::Text(contains(&s.to_lowercase())));
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        // SQLite's `like` ignores the case of ASCII letters itself (and `lower` knows no other).
        let column = |c: &str| match d {
            Dialect::Sqlite => format!("p.{c}"),
            Dialect::Postgres => format!("lower(p.{c})"),
        };
        let mut any = vec![
            format!("{} like {text} escape '\\'", column("patient_id")),
            format!("{} like {text} escape '\\'", column("name")),
        ];
        // A phone number as typed (090-1234-5678): its digits after the trunk 0, which E.164
        // drops (+8190…).
        if digits.len() >= 4 {
            let national = digits.strip_prefix('0').unwrap_or(&digits);
            any.push(format!("p.phone like {}", push(d, &mut params, Param::Text(contains(national)))));
        }
        wh.push(format!("({})", any.join(" or ")));
    }
    let followups_needed = q.alert != AlertFilter::Any || q.sort == SortKey::Followup;
    match q.alert {
        AlertFilter::Any => {}
        AlertFilter::Open => wh.push("f.followup_id is not null".into()),
        AlertFilter::NoneOpen => wh.push("f.followup_id is null".into()),
        AlertFilter::Severity(s) => wh.push(format!("f.urgency = {}", push(d, &mut params, Param::Int(s.rank())))),
    }
    let followups = "left join followups f on f.patient_id = p.patient_id and f.status <> 'closed'";
    let filter_joins = if q.alert != AlertFilter::Any { followups } else { "" };
    let where_sql = wh.join(" and ");
    let count = format!("select count(*) from patients p {filter_joins} where {where_sql}");
    let count_params = params.len();
    let mut joins = vec![];
    if followups_needed {
        joins.push(followups.to_string());
    }
    let (dir, flip) = if q.desc { ("desc", "asc") } else { ("asc", "desc") };
    let order = match &q.sort {
        SortKey::Id => format!("p.patient_id {dir}"),
        SortKey::Name => format!("p.name {dir}, p.patient_id {dir}"),
        SortKey::Area => format!("case when p.area is null then 1 else 0 end, p.area {dir}, p.patient_id"),
        SortKey::Reading(name) => {
            joins.push(format!(
                "left join latest_answers m on m.patient_id = p.patient_id and m.name = {}",
                push(d, &mut params, Param::Text(name.clone()))
            ));
            format!(
                "case when m.value_raw is null then 1 else 0 end, \
                 m.value_raw * 1.0 / (case m.value_scale when 0 then 1 when 1 then 10 when 2 then 100 else 1000 end) {dir}, \
                 p.patient_id"
            )
        }
        SortKey::Followup => {
            format!(
                "case when f.followup_id is null then 1 else 0 end, f.urgency {flip}, f.opened_at {dir}, p.patient_id"
            )
        }
        // The latest job's status, ranked, kept on the patient's row (migration 22); a patient
        // never called ranks last either way.
        SortKey::LastCall => {
            format!("coalesce(p.last_job_rank, {}) {dir}, p.patient_id", if q.desc { -1 } else { 6 })
        }
    };
    let limit = push(d, &mut params, Param::Int(q.limit));
    let offset = push(d, &mut params, Param::Int(q.offset));
    let ids = format!(
        "select p.patient_id from patients p {} where {where_sql} order by {order} limit {limit} offset {offset}",
        joins.join(" ")
    );
    PageSql { ids, count, params, count_params }
}

/// The latest job of each of these patients (`{in_ids}` is the back end's test of a patient id
/// against the page's list).
pub(crate) const LAST_JOBS: &str = "select j.patient_id, j.day, j.status, j.outcome, j.attempt from jobs j
     where j.job_id in (select max(x.job_id) from jobs x where x.patient_id {in_ids} group by x.patient_id)";

/// The open items of these patients.
pub(crate) const OPEN_ITEMS: &str = "select f.patient_id, f.followup_id, f.urgency, f.claimed_by, f.opened_at
     from followups f where f.status <> 'closed' and f.patient_id {in_ids}";

/// Puts a page's rows together, in the order of `ids`.
pub(crate) fn assemble(
    ids: &[String],
    patients: Vec<Patient>,
    latest: Vec<(String, String, Reading)>,
    recent: Vec<(String, String, Reading)>,
    items: Vec<(String, OpenItem)>,
    jobs: Vec<(String, LastCall)>,
) -> Vec<TableRow> {
    let mut by_id: std::collections::HashMap<String, TableRow> = patients
        .into_iter()
        .map(|p| {
            let row = TableRow { patient: p, latest: vec![], recent: vec![], followup: None, last_call: None };
            (row.patient.patient_id.to_string(), row)
        })
        .collect();
    for (id, name, r) in latest {
        if let Some(row) = by_id.get_mut(&id) {
            row.latest.push((name, r));
        }
    }
    for (id, name, r) in recent {
        if let Some(row) = by_id.get_mut(&id) {
            row.recent.push((name, r));
        }
    }
    for (id, item) in items {
        if let Some(row) = by_id.get_mut(&id) {
            row.followup = Some(item);
        }
    }
    for (id, job) in jobs {
        if let Some(row) = by_id.get_mut(&id) {
            row.last_call = Some(job);
        }
    }
    let mut rows: Vec<TableRow> = ids.iter().filter_map(|id| by_id.remove(id)).collect();
    for row in &mut rows {
        row.recent.sort_by_key(|(_, r)| (r.at, r.call_id));
    }
    rows
}

/// A call's row with one of its readings (none when it has no reading asked for): call id, time,
/// status, reading.
pub(crate) type CallRow = (i64, DateTime<Utc>, String, Option<(String, Value)>);

/// Merges a patient's answered calls (one row per call and reading, in time order) and missed
/// jobs into points in time order.
pub(crate) fn merge_points(calls: Vec<CallRow>, missed: Vec<(DateTime<Utc>, String)>) -> Vec<CallPoint> {
    let mut points: Vec<CallPoint> = Vec::new();
    for (call_id, at, status, reading) in calls {
        if points.last().is_none_or(|p| p.call_id != Some(call_id)) {
            points.push(CallPoint { at, call_id: Some(call_id), status, missed: false, readings: vec![] });
        }
        if let (Some(last), Some(r)) = (points.last_mut(), reading) {
            last.readings.push(r);
        }
    }
    for (at, status) in missed {
        points.push(CallPoint { at, call_id: None, status, missed: true, readings: vec![] });
    }
    points.sort_by_key(|p| (p.at, p.call_id));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> TableQuery {
        TableQuery {
            today: NaiveDate::from_ymd_opt(2026, 12, 7).unwrap(),
            search: None,
            area: None,
            language: None,
            slot: None,
            alert: AlertFilter::Any,
            sort: SortKey::Id,
            desc: false,
            limit: 50,
            offset: 0,
        }
    }

    #[test]
    fn the_first_page_by_id_joins_nothing_and_counts_with_the_same_filters() {
        let sql = page_sql(Dialect::Postgres, &query());
        assert!(!sql.ids.contains("join"), "{}", sql.ids);
        assert!(sql.ids.ends_with("order by p.patient_id asc limit $2 offset $3"), "{}", sql.ids);
        assert_eq!(sql.count_params, 1);
        assert_eq!(sql.params.len(), 3);
    }

    #[test]
    fn a_search_escapes_like_and_looks_for_a_phone_numbers_national_digits() {
        let q = TableQuery { search: Some("090-12_34".into()), ..query() };
        let sql = page_sql(Dialect::Sqlite, &q);
        assert!(sql.params.contains(&Param::Text("%090-12\\_34%".into())), "{:?}", sql.params);
        assert!(sql.params.contains(&Param::Text("%901234%".into())), "{:?}", sql.params);
        assert!(sql.ids.contains("p.phone like ?3"), "{}", sql.ids);
        let short = page_sql(Dialect::Sqlite, &TableQuery { search: Some("P1".into()), ..query() });
        assert!(!short.ids.contains("phone"), "two digits are not a phone number");
    }

    #[test]
    fn sorting_by_a_reading_joins_only_that_readings_latest_value() {
        let q = TableQuery { sort: SortKey::Reading("spo2".into()), desc: true, ..query() };
        let sql = page_sql(Dialect::Postgres, &q);
        assert!(sql.ids.contains("left join latest_answers m"), "{}", sql.ids);
        assert!(!sql.count.contains("latest_answers"), "the count needs no reading");
        assert!(sql.params.contains(&Param::Text("spo2".into())));
    }

    #[test]
    fn an_alert_filter_joins_the_open_items_in_both_queries() {
        let q = TableQuery { alert: AlertFilter::Severity(Severity::Urgent), ..query() };
        let sql = page_sql(Dialect::Sqlite, &q);
        assert!(sql.count.contains("f.urgency = ?2"), "{}", sql.count);
        assert!(sql.ids.contains("f.urgency = ?2"), "{}", sql.ids);
        assert_eq!(sql.params[1], Param::Int(3));
    }

    #[test]
    fn points_merge_calls_and_missed_jobs_in_time_order() {
        let t = |h: u32| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 1, h, 0, 0).unwrap();
        let n = |raw| Value::Number { raw, scale: 1 };
        let calls = vec![
            (1, t(9), "completed".to_string(), Some(("temperature".to_string(), n(365)))),
            (1, t(9), "completed".to_string(), Some(("spo2".to_string(), n(970)))),
            (2, t(15), "completed".to_string(), None),
        ];
        let points = merge_points(calls, vec![(t(12), "unreachable".into())]);
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].readings.len(), 2);
        assert!(points[1].missed && points[1].call_id.is_none());
        assert_eq!(points[2].call_id, Some(2));
        assert!(points[2].readings.is_empty());
    }
}
