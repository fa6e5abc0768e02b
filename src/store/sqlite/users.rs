//! Staff accounts, sessions and the staff audit log on SQLite.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{NOW, SqliteStore, parse_sqlite_time, sqlite_time};
use crate::store::{AuditEntry, Fut, NewUser, Session, StoreError, User, Users};
use crate::types::UiLanguage;

const USER_COLUMNS: &str = "u.user_id, u.name, u.role, u.language, u.password_hash, u.disabled, u.created_at";

fn user_row(r: &Row<'_>, at: usize) -> rusqlite::Result<User> {
    Ok(User {
        user_id: r.get(at)?,
        name: r.get(at + 1)?,
        role: r.get(at + 2)?,
        language: r.get(at + 3)?,
        password_hash: r.get(at + 4)?,
        disabled: r.get(at + 5)?,
        created_at: parse_sqlite_time(&r.get::<_, String>(at + 6)?),
    })
}

fn add_user(conn: &mut Connection, u: &NewUser<'_>) -> Result<i64, StoreError> {
    let added = conn
        .prepare_cached("insert into staff_users (name, role, language, password_hash) values (?1, ?2, ?3, ?4)")?
        .execute(params![u.name, u.role, u.language, u.password_hash]);
    match added {
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(StoreError::Duplicate(format!("user '{}'", u.name)))
        }
        r => r.map(|_| conn.last_insert_rowid()).map_err(Into::into),
    }
}

fn user(conn: &mut Connection, name: &str) -> Result<Option<User>, StoreError> {
    let mut st = conn.prepare_cached(&format!("select {USER_COLUMNS} from staff_users u where u.name = ?1"))?;
    Ok(st.query_row([name], |r| user_row(r, 0)).optional()?)
}

fn list_users(conn: &mut Connection) -> Result<Vec<User>, StoreError> {
    let mut st = conn.prepare_cached(&format!("select {USER_COLUMNS} from staff_users u order by u.name"))?;
    Ok(st.query_map([], |r| user_row(r, 0))?.collect::<rusqlite::Result<_>>()?)
}

/// Updates the named account with `set` (one `?2` parameter) and, if `end_sessions`, ends its
/// sessions in the same transaction.
fn update_user(
    conn: &mut Connection,
    name: &str,
    set: &str,
    value: &dyn rusqlite::ToSql,
    end_sessions: bool,
) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed =
        tx.execute(&format!("update staff_users set {set}, updated_at = {NOW} where name = ?1"), params![name, value])?;
    if end_sessions {
        tx.execute(
            "delete from staff_sessions where user_id = (select user_id from staff_users where name = ?1)",
            [name],
        )?;
    }
    tx.commit()?;
    Ok(changed == 1)
}

fn add_session(conn: &mut Connection, s: &Session) -> Result<(), StoreError> {
    conn.prepare_cached(
        "insert into staff_sessions (session_hash, user_id, csrf_token, created_at, last_seen_at)
         values (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        s.session_hash,
        s.user_id,
        s.csrf_token,
        sqlite_time(s.created_at),
        sqlite_time(s.last_seen_at)
    ])?;
    Ok(())
}

fn session(conn: &mut Connection, hash: &str) -> Result<Option<(Session, User)>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "select s.session_hash, s.user_id, s.csrf_token, s.created_at, s.last_seen_at, {USER_COLUMNS}
         from staff_sessions s join staff_users u on u.user_id = s.user_id where s.session_hash = ?1"
    ))?;
    let row = st
        .query_row([hash], |r| {
            let session = Session {
                session_hash: r.get(0)?,
                user_id: r.get(1)?,
                csrf_token: r.get(2)?,
                created_at: parse_sqlite_time(&r.get::<_, String>(3)?),
                last_seen_at: parse_sqlite_time(&r.get::<_, String>(4)?),
            };
            Ok((session, user_row(r, 5)?))
        })
        .optional()?;
    Ok(row)
}

fn audit(conn: &mut Connection, e: &AuditEntry) -> Result<(), StoreError> {
    conn.prepare_cached("insert into staff_audit (at, actor, action, target, address) values (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![sqlite_time(e.at), e.actor, e.action, e.target, e.address])?;
    Ok(())
}

fn audit_rows(conn: &mut Connection, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
    let mut st = conn.prepare_cached(
        "select at, actor, action, target, address from staff_audit order by at desc, audit_id desc limit ?1",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = st.query_map([limit], |r| {
        Ok(AuditEntry {
            at: parse_sqlite_time(&r.get::<_, String>(0)?),
            actor: r.get(1)?,
            action: r.get(2)?,
            target: r.get(3)?,
            address: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl Users for SqliteStore {
    fn add_user<'a>(&'a self, u: &'a NewUser<'a>) -> Fut<'a, i64> {
        let (name, role, language, hash) = (u.name.clone(), u.role, u.language, u.password_hash.to_owned());
        self.write(move |c| add_user(c, &NewUser { name: &name, role, language, password_hash: &hash }))
    }

    fn user<'a>(&'a self, name: &'a str) -> Fut<'a, Option<User>> {
        let name = name.to_owned();
        self.read(move |c| user(c, &name))
    }

    fn list_users(&self) -> Fut<'_, Vec<User>> {
        self.read(list_users)
    }

    fn set_password<'a>(&'a self, name: &'a str, password_hash: &'a str) -> Fut<'a, bool> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.write(move |c| update_user(c, &name, "password_hash = ?2", &hash, true))
    }

    fn set_language<'a>(&'a self, name: &'a str, language: UiLanguage) -> Fut<'a, bool> {
        let name = name.to_owned();
        self.write(move |c| update_user(c, &name, "language = ?2", &language, false))
    }

    fn disable_user<'a>(&'a self, name: &'a str) -> Fut<'a, bool> {
        let name = name.to_owned();
        self.write(move |c| update_user(c, &name, "disabled = ?2", &true, true))
    }

    fn add_session<'a>(&'a self, s: &'a Session) -> Fut<'a, ()> {
        let s = s.clone();
        self.write(move |c| add_session(c, &s))
    }

    fn session<'a>(&'a self, session_hash: &'a str) -> Fut<'a, Option<(Session, User)>> {
        let hash = session_hash.to_owned();
        self.read(move |c| session(c, &hash))
    }

    fn touch_session<'a>(&'a self, session_hash: &'a str, now: DateTime<Utc>) -> Fut<'a, ()> {
        let hash = session_hash.to_owned();
        self.write(move |c| {
            c.prepare_cached("update staff_sessions set last_seen_at = ?2 where session_hash = ?1")?
                .execute(params![hash, sqlite_time(now)])?;
            Ok(())
        })
    }

    fn end_session<'a>(&'a self, session_hash: &'a str) -> Fut<'a, ()> {
        let hash = session_hash.to_owned();
        self.write(move |c| {
            c.prepare_cached("delete from staff_sessions where session_hash = ?1")?.execute([hash])?;
            Ok(())
        })
    }

    fn end_stale_sessions(&self, idle_before: DateTime<Utc>, opened_before: DateTime<Utc>) -> Fut<'_, u64> {
        self.write(move |c| {
            let n = c
                .prepare_cached("delete from staff_sessions where last_seen_at < ?1 or created_at < ?2")?
                .execute([sqlite_time(idle_before), sqlite_time(opened_before)])?;
            Ok(n as u64)
        })
    }

    fn purge_audit(&self, before: DateTime<Utc>, dry_run: bool) -> Fut<'_, u64> {
        self.write(move |c| {
            let cut = sqlite_time(before);
            let n = if dry_run {
                c.prepare_cached("select count(*) from staff_audit where at < ?1")?
                    .query_row([&cut], |r| r.get::<_, i64>(0))? as usize
            } else {
                c.prepare_cached("delete from staff_audit where at < ?1")?.execute([&cut])?
            };
            Ok(n as u64)
        })
    }

    fn audit<'a>(&'a self, entry: &'a AuditEntry) -> Fut<'a, ()> {
        let entry = entry.clone();
        self.write(move |c| audit(c, &entry))
    }

    fn audit_rows(&self, limit: usize) -> Fut<'_, Vec<AuditEntry>> {
        self.read(move |c| audit_rows(c, limit))
    }
}
