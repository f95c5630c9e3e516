//! Missed chats (migrations `sqlite/0014_missed_chats.sql`,
//! `postgres/0008_missed_chats.sql`): the conversations the rule in
//! `outbox::missed` may still judge, and the mark it writes, one row of
//! `missed_chats` stored in one transaction with the emails it causes.
//! Also the closed chats whose archive transcript is not queued yet
//! (`outbox::transcript`), read by the same watcher.
//! The rule is written once in `outbox/`; this file holds the records and
//! the SQL of both backends.

use rusqlite::{Row, params};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::outbox::NewDelivery;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{Conversation, sqlite};
use crate::error::{Error, Result};

/// A conversation that may yet be missed: no agent has written in it, and
/// nobody but its visitor closed it.
#[derive(Debug, Clone)]
pub struct ChatWait {
    pub conversation: Conversation,
    /// When the visitor first wrote; `None` while they have not.
    pub first_visitor_at: Option<i64>,
    /// What they wrote first, for the email.
    pub first_visitor_body: Option<String>,
    /// When the visitor closed it, if they did.
    pub closed_by_visitor_at: Option<i64>,
}

// On the wire (the `missed_chat` frame, `status=missed` lists): the
// protocol crate's.
pub use holdfast_protocol::{Missed, MissedReason};

/// A mark to store, with the deliveries it causes.
#[derive(Debug, Clone)]
pub struct MissedChat {
    pub conversation_id: String,
    pub site_id: String,
    pub missed: Missed,
    pub deliveries: Vec<NewDelivery>,
    /// Its `conversation.missed` webhooks (`store::webhooks`).
    pub hooks: Vec<super::webhooks::HookDelivery>,
}

/// The candidates: created after `?1`, open or closed by their visitor, no
/// agent message, not yet marked. Oldest first. The same text on both
/// backends but for the placeholders and the conversation source.
///
/// A row whose `first_agent_at` is set was answered, and is passed over
/// without reading its events: a closed chat's facts on both backends, an
/// open chat's on PostgreSQL too (`postgres/0042_first_reply_on_open_chats.sql`),
/// where a planner without statistics read every event of every answered
/// chat to find its agent message. A row without it is looked for in its
/// events, as a node of an earlier release may have left it.
fn candidates_sql(from: &str, since: &str, limit: &str) -> String {
    let visitor_msg = "FROM events e WHERE e.conversation_id = c.id AND e.kind = 'message' \
                       AND e.author_kind = 'visitor' ORDER BY e.seq LIMIT 1";
    let closed_by_visitor = "FROM events e WHERE e.conversation_id = c.id AND e.kind = 'closed' \
                             AND e.author_kind = 'visitor' ORDER BY e.seq DESC LIMIT 1";
    format!(
        // `waiting_since`, not `first_visitor_at`: the conversation has a
        // column of that name (the reports' facts), which `c.*` brings.
        "SELECT c.*, (SELECT e.created_at {visitor_msg}) AS waiting_since, \
         (SELECT e.body {visitor_msg}) AS first_visitor_body, \
         (SELECT e.created_at {closed_by_visitor}) AS closed_by_visitor_at \
         FROM {from} c WHERE c.created_at > {since} AND c.status IN ('queued', 'active', 'closed') \
         AND NOT EXISTS (SELECT 1 FROM missed_chats m WHERE m.conversation_id = c.id) \
         AND c.first_agent_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = c.id AND e.kind = 'message' \
                         AND e.author_kind = 'agent') \
         AND (c.status <> 'closed' OR EXISTS (SELECT 1 {closed_by_visitor})) \
         ORDER BY c.created_at LIMIT {limit}"
    )
}

/// Closed chats of a site, closed after `since`, with no `archive:ID`
/// delivery. Only chats begun within a day before `since` are looked at,
/// so the read stays within the `(site_id, status, created_at)` index.
fn unarchived_sql(from: &str, m: &dyn Fn(usize) -> String) -> String {
    format!(
        "SELECT * FROM {from} c WHERE c.site_id = {} AND c.status = 'closed' AND c.created_at > {} - 86400000 \
         AND c.closed_at > {} AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.dedupe_key = 'archive:' || c.id) \
         ORDER BY c.closed_at LIMIT {}",
        m(1),
        m(2),
        m(2),
        m(3)
    )
}

fn bad(value: &str) -> Error {
    Error::Store(anyhow::anyhow!("unexpected reason in missed_chats: {value:?}"))
}

impl SqliteStore {
    pub(super) async fn missed_scan(&self, since: i64, limit: i64) -> Result<Vec<ChatWait>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&candidates_sql("conversations_with_seq", "?1", "?2"))?;
            let mut rows = stmt.query(params![since, limit])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(ChatWait {
                    conversation: sqlite::conversation_row(r)?,
                    first_visitor_at: r.get("waiting_since")?,
                    first_visitor_body: r.get("first_visitor_body")?,
                    closed_by_visitor_at: r.get("closed_by_visitor_at")?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// The mark and its deliveries in one batch of the group-commit writer
    /// (its own savepoint). It writes no conversation row, which the writer
    /// caches. False when the conversation was marked already.
    pub(super) async fn missed_mark(&self, m: MissedChat) -> Result<bool> {
        self.write(move |c| {
            let marked = c
                .prepare_cached(
                    "INSERT INTO missed_chats (conversation_id, site_id, reason, waited_ms, missed_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (conversation_id) DO NOTHING",
                )?
                .execute(params![
                    m.conversation_id,
                    m.site_id,
                    m.missed.reason.as_str(),
                    m.missed.waited_ms,
                    m.missed.missed_at
                ])?;
            if marked == 0 {
                return Ok(false);
            }
            for d in &m.deliveries {
                super::outbox::sqlite_insert_delivery(c, d)?;
            }
            for h in &m.hooks {
                super::webhooks::sqlite_insert_hook(c, h)?;
            }
            Ok(true)
        })
        .await
    }

    pub(super) async fn missed_list(
        &self,
        site_id: &str,
        after: (i64, String),
        limit: i64,
    ) -> Result<Vec<(Conversation, Missed)>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT c.*, m.reason AS missed_reason, m.waited_ms, m.missed_at FROM missed_chats m \
                 JOIN conversations_with_seq c ON c.id = m.conversation_id \
                 WHERE m.site_id = ?1 AND (m.missed_at < ?3 OR (m.missed_at = ?3 AND m.conversation_id < ?4)) \
                 ORDER BY m.missed_at DESC, m.conversation_id DESC LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![site_id, limit, after.0, after.1])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push((sqlite::conversation_row(r)?, sqlite_missed(r)?));
            }
            Ok(out)
        })
        .await
    }
}

impl SqliteStore {
    pub(super) async fn archive_scan(&self, site_id: &str, since: i64, limit: i64) -> Result<Vec<Conversation>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&unarchived_sql("conversations_with_seq", &|n| format!("?{n}")))?;
            let mut rows = stmt.query(params![site_id, since, limit])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(sqlite::conversation_row(r)?);
            }
            Ok(out)
        })
        .await
    }
}

fn sqlite_missed(r: &Row) -> Result<Missed> {
    let reason: String = r.get("missed_reason")?;
    Ok(Missed {
        reason: MissedReason::parse(&reason).ok_or_else(|| bad(&reason))?,
        waited_ms: r.get("waited_ms")?,
        missed_at: r.get("missed_at")?,
    })
}

fn pg_missed(r: &PgRow) -> Result<Missed> {
    let reason: String = r.try_get("missed_reason")?;
    Ok(Missed {
        reason: MissedReason::parse(&reason).ok_or_else(|| bad(&reason))?,
        waited_ms: r.try_get("waited_ms")?,
        missed_at: r.try_get("missed_at")?,
    })
}

impl PostgresStore {
    pub(super) async fn missed_scan(&self, since: i64, limit: i64) -> Result<Vec<ChatWait>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(candidates_sql("conversations", "$1", "$2")))
            .bind(since)
            .bind(limit)
            .fetch_all(self.p().await?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ChatWait {
                    conversation: super::postgres::conversation_from_row(r)?,
                    first_visitor_at: r.try_get("waiting_since")?,
                    first_visitor_body: r.try_get("first_visitor_body")?,
                    closed_by_visitor_at: r.try_get("closed_by_visitor_at")?,
                })
            })
            .collect()
    }

    pub(super) async fn archive_scan(&self, site_id: &str, since: i64, limit: i64) -> Result<Vec<Conversation>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(unarchived_sql("conversations", &|n| format!("${n}"))))
            .bind(site_id)
            .bind(since)
            .bind(limit)
            .fetch_all(self.p().await?)
            .await?;
        rows.iter().map(super::postgres::conversation_from_row).collect()
    }

    /// The mark and its deliveries in one transaction.
    pub(super) async fn missed_mark(&self, m: MissedChat) -> Result<bool> {
        let mut tx = self.p().await?.begin().await?;
        let marked = sqlx::query(
            "INSERT INTO missed_chats (conversation_id, site_id, reason, waited_ms, missed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (conversation_id) DO NOTHING",
        )
        .bind(&m.conversation_id)
        .bind(&m.site_id)
        .bind(m.missed.reason.as_str())
        .bind(m.missed.waited_ms)
        .bind(m.missed.missed_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if marked == 0 {
            return Ok(false);
        }
        for d in &m.deliveries {
            super::outbox::pg_insert_delivery(&mut tx, d).await?;
        }
        for h in &m.hooks {
            super::webhooks::pg_insert_hook(&mut tx, h).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn missed_list(
        &self,
        site_id: &str,
        after: (i64, String),
        limit: i64,
    ) -> Result<Vec<(Conversation, Missed)>> {
        let rows = sqlx::query(
            "SELECT c.*, m.reason AS missed_reason, m.waited_ms, m.missed_at FROM missed_chats m \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.site_id = $1 AND (m.missed_at < $3 OR (m.missed_at = $3 AND m.conversation_id < $4)) \
             ORDER BY m.missed_at DESC, m.conversation_id DESC LIMIT $2",
        )
        .bind(site_id)
        .bind(limit)
        .bind(after.0)
        .bind(after.1)
        .fetch_all(self.p().await?)
        .await?;
        rows.iter().map(|r| Ok((super::postgres::conversation_from_row(r)?, pg_missed(r)?))).collect()
    }
}
