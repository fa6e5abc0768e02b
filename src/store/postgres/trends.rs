//! The patients table and a patient's charts on PostgreSQL ([`crate::store::trends`] writes
//! the SQL; a list of ids or names is one array parameter).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::patients::{PATIENT_COLUMNS, patient_row};
use crate::store::calls::answer_value;
use crate::store::trends::{
    CallPoint, Dialect, LAST_JOBS, LastCall, OPEN_ITEMS, OpenItem, Param, Reading, TablePage, TableQuery, Trends,
    assemble, merge_points, page_sql,
};
use crate::store::{Fut, StoreError, fut};
use crate::types::Severity;

fn bound<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for p in params {
        query = match p {
            Param::Text(t) => query.bind(t.as_str()),
            Param::Int(i) => query.bind(*i),
        };
    }
    query
}

fn reading(r: &PgRow) -> Result<(String, String, Reading), sqlx::Error> {
    let raw: i64 = r.try_get(4)?;
    let scale: i32 = r.try_get(5)?;
    Ok((r.try_get(0)?, r.try_get(1)?, Reading::of(r.try_get(2)?, r.try_get(3)?, raw, i64::from(scale))))
}

impl PgStore {
    async fn page(&self, q: &TableQuery, names: &[String], since: DateTime<Utc>) -> Result<TablePage, StoreError> {
        let sql = page_sql(Dialect::Postgres, q);
        let mut conn = self.pool.acquire().await?;
        let total: i64 =
            bound(sqlx::query(&sql.count), &sql.params[..sql.count_params]).fetch_one(&mut *conn).await?.try_get(0)?;
        let ids: Vec<String> = bound(sqlx::query(&sql.ids), &sql.params)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let patients = sqlx::query(&format!("select {PATIENT_COLUMNS} from patients where patient_id = any($1)"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(patient_row)
            .collect::<Result<Vec<_>, _>>()?;
        let latest = sqlx::query(
            "select patient_id, name, call_id, created_at, value_raw, value_scale from latest_answers
             where patient_id = any($1) and name = any($2)",
        )
        .bind(&ids)
        .bind(names)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(reading)
        .collect::<Result<Vec<_>, _>>()?;
        let recent = sqlx::query(
            "select patient_id, name, call_id, created_at, value_raw, coalesce(value_scale, 0) from answers
             where patient_id = any($1) and name = any($2)
               and kind = 'number' and value_raw is not null and created_at >= $3",
        )
        .bind(&ids)
        .bind(names)
        .bind(since)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(reading)
        .collect::<Result<Vec<_>, _>>()?;
        let items = sqlx::query(&OPEN_ITEMS.replace("{in_ids}", "= any($1)"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| -> Result<(String, OpenItem), sqlx::Error> {
                let urgency: i32 = r.try_get(2)?;
                let item = OpenItem {
                    followup_id: r.try_get(1)?,
                    severity: Severity::of_rank(i64::from(urgency)),
                    claimed_by: r.try_get(3)?,
                    opened_at: r.try_get(4)?,
                };
                Ok((r.try_get(0)?, item))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let jobs = sqlx::query(&LAST_JOBS.replace("{in_ids}", "= any($1)"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| -> Result<(String, LastCall), sqlx::Error> {
                let attempts: i32 = r.try_get(4)?;
                let job = LastCall {
                    day: r.try_get::<Option<NaiveDate>, _>(1)?,
                    status: r.try_get(2)?,
                    outcome: r.try_get(3)?,
                    attempts: i64::from(attempts),
                };
                Ok((r.try_get(0)?, job))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TablePage { total, rows: assemble(&ids, patients, latest, recent, items, jobs) })
    }

    async fn call_points(&self, patient_id: &str, names: &[String]) -> Result<Vec<CallPoint>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let calls = sqlx::query(
            "select c.call_id, c.created_at, c.status, a.name, a.kind, a.value_text, a.value_raw, a.value_scale
             from calls c left join answers a on a.call_id = c.call_id and a.kind = 'number' and a.name = any($2)
             where c.patient_id = $1 order by c.created_at, c.call_id",
        )
        .bind(patient_id)
        .bind(names)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| -> Result<_, sqlx::Error> {
            let name: Option<String> = r.try_get(3)?;
            let reading = match name {
                Some(name) => {
                    let scale: Option<i32> = r.try_get(7)?;
                    let value =
                        answer_value(&r.try_get::<String, _>(4)?, r.try_get(5)?, r.try_get(6)?, scale.map(i64::from));
                    Some((name, value))
                }
                None => None,
            };
            Ok((r.try_get::<i64, _>(0)?, r.try_get::<DateTime<Utc>, _>(1)?, r.try_get::<String, _>(2)?, reading))
        })
        .collect::<Result<Vec<_>, _>>()?;
        let missed = sqlx::query(
            "select coalesce(updated_at, due_at, created_at), status from jobs
             where patient_id = $1 and status in ('unreachable', 'failed') order by job_id",
        )
        .bind(patient_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| -> Result<(DateTime<Utc>, String), sqlx::Error> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .collect::<Result<Vec<_>, _>>()?;
        Ok(merge_points(calls, missed))
    }
}

impl Trends for PgStore {
    fn table<'a>(&'a self, q: &'a TableQuery, names: &'a [String], since: DateTime<Utc>) -> Fut<'a, TablePage> {
        fut(self.page(q, names, since))
    }

    fn points<'a>(&'a self, patient_id: &'a str, names: &'a [String]) -> Fut<'a, Vec<CallPoint>> {
        fut(self.call_points(patient_id, names))
    }
}
