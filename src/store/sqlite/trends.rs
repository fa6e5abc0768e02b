//! The patients table and a patient's charts on SQLite ([`crate::store::trends`] writes the
//! SQL; a list of ids or names is one JSON array parameter, read with `json_each`).

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, params};

use super::patients::{PATIENT_COLUMNS, patient_row};
use super::{SqliteStore, parse_sqlite_time, sqlite_time};
use crate::store::calls::answer_value;
use crate::store::trends::{
    CallPoint, Dialect, LAST_JOBS, LastCall, OPEN_ITEMS, OpenItem, Param, Reading, TablePage, TableQuery, Trends,
    assemble, merge_points, page_sql,
};
use crate::store::{Fut, StoreError};
use crate::types::Severity;

fn bind(params: &[Param]) -> Vec<Box<dyn rusqlite::ToSql>> {
    params
        .iter()
        .map(|p| -> Box<dyn rusqlite::ToSql> {
            match p {
                Param::Text(t) => Box::new(t.clone()),
                Param::Int(i) => Box::new(*i),
            }
        })
        .collect()
}

const IDS: &str = "select value from json_each(?1)";

fn table(
    conn: &mut Connection,
    q: &TableQuery,
    names: &[String],
    since: DateTime<Utc>,
) -> Result<TablePage, StoreError> {
    let sql = page_sql(Dialect::Sqlite, q);
    let values = bind(&sql.params);
    let refs: Vec<&dyn rusqlite::ToSql> = values.iter().map(|b| b.as_ref()).collect();
    let total: i64 = conn.prepare_cached(&sql.count)?.query_row(&refs[..sql.count_params], |r| r.get(0))?;
    let ids: Vec<String> =
        conn.prepare_cached(&sql.ids)?.query_map(&refs[..], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let list = serde_json::to_string(&ids)?;
    let names_list = serde_json::to_string(names)?;
    let patients = conn
        .prepare_cached(&format!("select {PATIENT_COLUMNS} from patients where patient_id in ({IDS})"))?
        .query_map([&list], patient_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let latest = conn
        .prepare_cached(&format!(
            "select patient_id, name, call_id, created_at, value_raw, value_scale from latest_answers
             where patient_id in ({IDS}) and name in (select value from json_each(?2))"
        ))?
        .query_map(params![list, names_list], |r| {
            let at = parse_sqlite_time(&r.get::<_, String>(3)?);
            Ok((r.get(0)?, r.get(1)?, Reading::of(r.get(2)?, at, r.get(4)?, r.get(5)?)))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let recent = conn
        .prepare_cached(&format!(
            "select patient_id, name, call_id, created_at, value_raw, coalesce(value_scale, 0) from answers
             where patient_id in ({IDS}) and name in (select value from json_each(?2))
               and kind = 'number' and value_raw is not null and created_at >= ?3"
        ))?
        .query_map(params![list, names_list, sqlite_time(since)], |r| {
            let at = parse_sqlite_time(&r.get::<_, String>(3)?);
            Ok((r.get(0)?, r.get(1)?, Reading::of(r.get(2)?, at, r.get(4)?, r.get(5)?)))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let items = conn
        .prepare_cached(&OPEN_ITEMS.replace("{in_ids}", &format!("in ({IDS})")))?
        .query_map([&list], |r| {
            let item = OpenItem {
                followup_id: r.get(1)?,
                severity: Severity::of_rank(r.get(2)?),
                claimed_by: r.get(3)?,
                opened_at: parse_sqlite_time(&r.get::<_, String>(4)?),
            };
            Ok((r.get(0)?, item))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let jobs = conn
        .prepare_cached(&LAST_JOBS.replace("{in_ids}", &format!("in ({IDS})")))?
        .query_map([&list], |r| {
            let day: Option<String> = r.get(1)?;
            let job = LastCall {
                day: day.and_then(|d| d.parse::<NaiveDate>().ok()),
                status: r.get(2)?,
                outcome: r.get(3)?,
                attempts: r.get(4)?,
            };
            Ok((r.get(0)?, job))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TablePage { total, rows: assemble(&ids, patients, latest, recent, items, jobs) })
}

fn points(conn: &mut Connection, patient_id: &str, names: &[String]) -> Result<Vec<CallPoint>, StoreError> {
    let names_list = serde_json::to_string(names)?;
    let calls = conn
        .prepare_cached(
            "select c.call_id, c.created_at, c.status, a.name, a.kind, a.value_text, a.value_raw, a.value_scale
             from calls c left join answers a on a.call_id = c.call_id and a.kind = 'number'
               and a.name in (select value from json_each(?2))
             where c.patient_id = ?1 order by c.created_at, c.call_id",
        )?
        .query_map(params![patient_id, names_list], |r| {
            let name: Option<String> = r.get(3)?;
            let reading = match name {
                Some(name) => Some((name, answer_value(&r.get::<_, String>(4)?, r.get(5)?, r.get(6)?, r.get(7)?))),
                None => None,
            };
            Ok((r.get(0)?, parse_sqlite_time(&r.get::<_, String>(1)?), r.get(2)?, reading))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let missed = conn
        .prepare_cached(
            "select coalesce(updated_at, due_at, created_at), status from jobs
             where patient_id = ?1 and status in ('unreachable', 'failed') order by job_id",
        )?
        .query_map([patient_id], |r| Ok((parse_sqlite_time(&r.get::<_, String>(0)?), r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(merge_points(calls, missed))
}

impl Trends for SqliteStore {
    fn table<'a>(&'a self, q: &'a TableQuery, names: &'a [String], since: DateTime<Utc>) -> Fut<'a, TablePage> {
        let (q, names) = (q.clone(), names.to_vec());
        self.read(move |c| table(c, &q, &names, since))
    }

    fn points<'a>(&'a self, patient_id: &'a str, names: &'a [String]) -> Fut<'a, Vec<CallPoint>> {
        let (id, names) = (patient_id.to_owned(), names.to_vec());
        self.read(move |c| points(c, &id, &names))
    }
}
