//! The audit log (migrations `sqlite/0019_audit_log.sql`,
//! `postgres/0013_audit_log.sql`): one row per admin action, never
//! changed, and deleted only by the retention job once older than the
//! site's `audit_retention_days` and than [`AUDIT_FLOOR_MS`] (the tables'
//! triggers refuse anything else: `sqlite/0038`, `postgres/0031`). What is recorded is
//! decided in `audit`; this file holds the record and the SQL of both
//! backends, one text each (`$n` parameters; SQLite reads them as `?n`).

use rusqlite::{Row, params};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::lite;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::Result;

/// One admin action as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub site_id: String,
    pub at: i64,
    /// Who acted (an agent's id) and their name then.
    pub actor_id: String,
    pub actor_name: String,
    /// What was done: `settings.changed`, `agent.created`, `ban.lifted`…
    pub action: String,
    /// The id of what it was done to, if anything has one.
    pub target: Option<String>,
    /// The values before and after (JSON), where they mean something.
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

const INSERT: &str = "INSERT INTO audit_log (id, site_id, at, actor_id, actor_name, action, target, before, after) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
/// No entry younger than this is ever deleted: the triggers refuse it.
pub const AUDIT_FLOOR_MS: i64 = 30 * 24 * 3600 * 1000;

// Up to $3 of a site's entries older than $2, oldest first.
const EXPIRE: &str = "DELETE FROM audit_log WHERE id IN \
                      (SELECT id FROM audit_log WHERE site_id = $1 AND at < $2 ORDER BY at LIMIT $3)";
/// Entries after a cursor `(at, id)` in newest-first order: older, or as
/// old with a smaller id (`""` as the id: only older).
const PAGE: &str = "SELECT * FROM audit_log WHERE site_id = $1 AND (at < $2 OR (at = $2 AND id < $4)) \
                    ORDER BY at DESC, id DESC LIMIT $3";

fn json_text(value: &Option<serde_json::Value>) -> Option<String> {
    value.as_ref().map(|v| v.to_string())
}

fn parse_json(text: Option<String>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

/// An entry from a row of either backend (`get` or `try_get`).
macro_rules! entry_from {
    ($r:expr, $get:ident) => {
        AuditEntry {
            id: $r.$get("id")?,
            site_id: $r.$get("site_id")?,
            at: $r.$get("at")?,
            actor_id: $r.$get("actor_id")?,
            actor_name: $r.$get("actor_name")?,
            action: $r.$get("action")?,
            target: $r.$get("target")?,
            before: parse_json($r.$get("before")?),
            after: parse_json($r.$get("after")?),
        }
    };
}

fn sqlite_entry(r: &Row) -> rusqlite::Result<AuditEntry> {
    Ok(entry_from!(r, get))
}

fn pg_entry(r: &PgRow) -> Result<AuditEntry> {
    Ok(entry_from!(r, try_get))
}

impl SqliteStore {
    pub(super) async fn audit_append(&self, e: AuditEntry) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(&lite(INSERT))?.execute(params![
                e.id,
                e.site_id,
                e.at,
                e.actor_id,
                e.actor_name,
                e.action,
                e.target,
                json_text(&e.before),
                json_text(&e.after)
            ])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn audit_page(&self, site_id: &str, after: (i64, String), limit: i64) -> Result<Vec<AuditEntry>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&lite(PAGE))?;
            let rows = stmt.query_map(params![site_id, after.0, limit, after.1], sqlite_entry)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(super) async fn audit_expire(&self, site_id: &str, before: i64, limit: i64) -> Result<u64> {
        let site_id = site_id.to_owned();
        self.write(move |c| Ok(c.prepare_cached(&lite(EXPIRE))?.execute(params![site_id, before, limit])? as u64)).await
    }
}

impl PostgresStore {
    pub(super) async fn audit_append(&self, e: AuditEntry) -> Result<()> {
        sqlx::query(INSERT)
            .bind(&e.id)
            .bind(&e.site_id)
            .bind(e.at)
            .bind(&e.actor_id)
            .bind(&e.actor_name)
            .bind(&e.action)
            .bind(&e.target)
            .bind(json_text(&e.before))
            .bind(json_text(&e.after))
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    pub(super) async fn audit_page(&self, site_id: &str, after: (i64, String), limit: i64) -> Result<Vec<AuditEntry>> {
        let rows =
            sqlx::query(PAGE).bind(site_id).bind(after.0).bind(limit).bind(after.1).fetch_all(self.p().await?).await?;
        rows.iter().map(pg_entry).collect()
    }

    pub(super) async fn audit_expire(&self, site_id: &str, before: i64, limit: i64) -> Result<u64> {
        let done = sqlx::query(EXPIRE).bind(site_id).bind(before).bind(limit).execute(self.p().await?).await?;
        Ok(done.rows_affected())
    }
}
