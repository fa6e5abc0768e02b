//! The PostgreSQL back end (sqlx): the same operations as SQLite; a turn locks its call row
//! with `select … for update`, so instances serving the same call take turns.

use sqlx::PgPool;

use super::{Answer, CallRecord, Job, NewCall, Patient, StoreError, TurnFn, TurnResult};

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        Ok(PgStore { pool: PgPool::connect(url).await? })
    }
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        todo!()
    }
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }
    pub async fn upsert_patient(&self, _p: &Patient) -> Result<(), StoreError> {
        todo!()
    }
    pub async fn patient(&self, _id: &str) -> Result<Option<Patient>, StoreError> {
        todo!()
    }
    pub async fn patient_by_phone(&self, _phone: &str) -> Result<Option<Patient>, StoreError> {
        todo!()
    }
    pub async fn create_job(&self, _patient_id: &str, _flow: &str) -> Result<i64, StoreError> {
        todo!()
    }
    pub async fn job(&self, _job_id: i64) -> Result<Option<Job>, StoreError> {
        todo!()
    }
    pub async fn call(&self, _sid: &str) -> Result<Option<CallRecord>, StoreError> {
        todo!()
    }
    pub async fn turn(
        &self,
        _sid: &str,
        _seq: i64,
        _create: Option<NewCall>,
        _f: TurnFn,
    ) -> Result<TurnResult, StoreError> {
        todo!()
    }
    pub async fn record_status(
        &self,
        _sid: &str,
        _status: &str,
        _rank: i32,
        _duration: Option<i64>,
    ) -> Result<bool, StoreError> {
        todo!()
    }
    pub async fn answers(&self, _call_id: i64) -> Result<Vec<Answer>, StoreError> {
        todo!()
    }
    pub async fn alerts(&self, _call_id: i64) -> Result<Vec<String>, StoreError> {
        todo!()
    }
    pub async fn event_count(&self, _call_id: i64) -> Result<i64, StoreError> {
        todo!()
    }
}
