//! Staff accounts, sessions and the staff audit log on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, violation};
use crate::store::{AuditEntry, Fut, NewUser, Session, StoreError, User, Users, fut};
use crate::types::UiLanguage;

const USER_COLUMNS: &str = "u.user_id, u.name, u.role, u.language, u.password_hash, u.disabled, u.created_at";

fn user_row(r: &PgRow, at: usize) -> Result<User, sqlx::Error> {
    Ok(User {
        user_id: r.try_get(at)?,
        name: r.try_get(at + 1)?,
        role: r.try_get(at + 2)?,
        language: r.try_get(at + 3)?,
        password_hash: r.try_get(at + 4)?,
        disabled: r.try_get(at + 5)?,
        created_at: r.try_get(at + 6)?,
    })
}

impl PgStore {
    /// Updates the named account with `set` (`$2` bound by `bind`) and, if `end_sessions`,
    /// ends its sessions in the same transaction.
    async fn update_user<T>(&self, name: &str, set: &str, value: T, end_sessions: bool) -> Result<bool, StoreError>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
    {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(&format!("update staff_users set {set}, updated_at = now() where name = $1"))
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if end_sessions {
            sqlx::query("delete from staff_sessions where user_id = (select user_id from staff_users where name = $1)")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }
}

impl Users for PgStore {
    fn add_user<'a>(&'a self, u: &'a NewUser<'a>) -> Fut<'a, i64> {
        fut(async move {
            let added = sqlx::query_scalar(
                "insert into staff_users (name, role, language, password_hash) values ($1, $2, $3, $4)
                 returning user_id",
            )
            .bind(u.name)
            .bind(u.role)
            .bind(u.language)
            .bind(u.password_hash)
            .fetch_one(&self.pool)
            .await;
            match added {
                Ok(id) => Ok(id),
                Err(e) if violation(&e).is_some_and(|(code, _)| code == "23505") => {
                    Err(StoreError::Duplicate(format!("user '{}'", u.name)))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn user<'a>(&'a self, name: &'a str) -> Fut<'a, Option<User>> {
        fut(async move {
            let row = sqlx::query(&format!("select {USER_COLUMNS} from staff_users u where u.name = $1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|r| user_row(&r, 0)).transpose()?)
        })
    }

    fn list_users(&self) -> Fut<'_, Vec<User>> {
        fut(async move {
            let rows = sqlx::query(&format!("select {USER_COLUMNS} from staff_users u order by u.name collate \"C\""))
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.iter().map(|r| user_row(r, 0)).collect::<Result<_, _>>()?)
        })
    }

    fn set_password<'a>(&'a self, name: &'a str, password_hash: &'a str) -> Fut<'a, bool> {
        fut(self.update_user(name, "password_hash = $2", password_hash, true))
    }

    fn set_language<'a>(&'a self, name: &'a str, language: UiLanguage) -> Fut<'a, bool> {
        fut(self.update_user(name, "language = $2", language, false))
    }

    fn disable_user<'a>(&'a self, name: &'a str) -> Fut<'a, bool> {
        fut(self.update_user(name, "disabled = $2", true, true))
    }

    fn add_session<'a>(&'a self, s: &'a Session) -> Fut<'a, ()> {
        fut(async move {
            sqlx::query(
                "insert into staff_sessions (session_hash, user_id, csrf_token, created_at, last_seen_at)
                 values ($1, $2, $3, $4, $5)",
            )
            .bind(&s.session_hash)
            .bind(s.user_id)
            .bind(&s.csrf_token)
            .bind(s.created_at)
            .bind(s.last_seen_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn session<'a>(&'a self, session_hash: &'a str) -> Fut<'a, Option<(Session, User)>> {
        fut(async move {
            let row = sqlx::query(&format!(
                "select s.session_hash, s.user_id, s.csrf_token, s.created_at, s.last_seen_at, {USER_COLUMNS}
                 from staff_sessions s join staff_users u on u.user_id = s.user_id where s.session_hash = $1"
            ))
            .bind(session_hash)
            .fetch_optional(&self.pool)
            .await?;
            let Some(r) = row else { return Ok(None) };
            let session = Session {
                session_hash: r.try_get(0)?,
                user_id: r.try_get(1)?,
                csrf_token: r.try_get(2)?,
                created_at: r.try_get(3)?,
                last_seen_at: r.try_get(4)?,
            };
            Ok(Some((session, user_row(&r, 5)?)))
        })
    }

    fn touch_session<'a>(&'a self, session_hash: &'a str, now: DateTime<Utc>) -> Fut<'a, ()> {
        fut(async move {
            sqlx::query("update staff_sessions set last_seen_at = $2 where session_hash = $1")
                .bind(session_hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn end_session<'a>(&'a self, session_hash: &'a str) -> Fut<'a, ()> {
        fut(async move {
            sqlx::query("delete from staff_sessions where session_hash = $1")
                .bind(session_hash)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn end_stale_sessions(&self, idle_before: DateTime<Utc>, opened_before: DateTime<Utc>) -> Fut<'_, u64> {
        fut(async move {
            let done = sqlx::query("delete from staff_sessions where last_seen_at < $1 or created_at < $2")
                .bind(idle_before)
                .bind(opened_before)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    fn purge_audit(&self, before: DateTime<Utc>, dry_run: bool) -> Fut<'_, u64> {
        fut(async move {
            if dry_run {
                let n: i64 = sqlx::query_scalar("select count(*) from staff_audit where at < $1")
                    .bind(before)
                    .fetch_one(&self.pool)
                    .await?;
                return Ok(n as u64);
            }
            let done = sqlx::query("delete from staff_audit where at < $1").bind(before).execute(&self.pool).await?;
            Ok(done.rows_affected())
        })
    }

    fn audit<'a>(&'a self, e: &'a AuditEntry) -> Fut<'a, ()> {
        fut(async move {
            sqlx::query("insert into staff_audit (at, actor, action, target, address) values ($1, $2, $3, $4, $5)")
                .bind(e.at)
                .bind(&e.actor)
                .bind(&e.action)
                .bind(&e.target)
                .bind(&e.address)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn audit_rows(&self, limit: usize) -> Fut<'_, Vec<AuditEntry>> {
        fut(async move {
            let rows = sqlx::query(
                "select at, actor, action, target, address from staff_audit order by at desc, audit_id desc limit $1",
            )
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            let entry = |r: &PgRow| -> Result<AuditEntry, sqlx::Error> {
                Ok(AuditEntry {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    target: r.try_get(3)?,
                    address: r.try_get(4)?,
                })
            };
            Ok(rows.iter().map(entry).collect::<Result<_, _>>()?)
        })
    }
}
