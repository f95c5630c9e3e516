//! A made-up history written in bulk, for benchmarks (`holdfast bench
//! reports`): visitors and finished conversations with their events,
//! ratings and missed marks, a batch per transaction. What the history
//! looks like is the caller's; here is only how it is written fast. Never
//! used by the server: it bypasses the chat rules and the outbox (no
//! webhook, no email is queued for it).
//!
//! Each conversation's facts for reports (`sqlite/0035_report_facts.sql`,
//! `postgres/0028_report_facts.sql`; its rating and missed mark,
//! `sqlite/0042_report_marks.sql`, `postgres/0035_report_marks.sql`) come
//! out as the server makes them: on SQLite taken from the events as the
//! writer takes them at a close (`sqlite_writer::TAKE_FACTS`); on
//! PostgreSQL, where a trigger per row would dominate the load, a
//! superuser's batch runs without them (`session_replication_role =
//! replica`, which also skips the foreign key checks) and takes the facts
//! of the whole batch in a statement each.

use rusqlite::params;

use super::ConversationStatus;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::{Error, Result};

/// Visitors and conversations written in one transaction.
#[derive(Debug, Default)]
pub struct SeedBatch {
    pub site_id: String,
    pub visitors: Vec<SeedVisitor>,
    pub conversations: Vec<SeedConversation>,
}

#[derive(Debug)]
pub struct SeedVisitor {
    pub id: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// A conversation and everything stored of it. Its events get the
/// sequence numbers 1, 2, … in order.
#[derive(Debug)]
pub struct SeedConversation {
    pub id: String,
    pub visitor_id: String,
    pub group_id: String,
    pub agent_id: Option<String>,
    pub status: ConversationStatus,
    pub offline: bool,
    pub created_at: i64,
    pub assigned_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub events: Vec<SeedEvent>,
    /// The rating's score (1–5); its event is the first of kind `rating`.
    pub score: Option<i64>,
    /// Missed: (reason `waited` or `left`, waited ms, marked at).
    pub missed: Option<(&'static str, i64, i64)>,
}

#[derive(Debug)]
pub struct SeedEvent {
    pub id: String,
    pub kind: &'static str,
    /// `visitor`, `agent` or `system`.
    pub author_kind: &'static str,
    pub author_id: Option<String>,
    pub client_id: Option<String>,
    pub body: Option<String>,
    pub data: String,
    pub created_at: i64,
}

impl SeedConversation {
    /// The sequence number of its rating event.
    fn rating_seq(&self) -> Result<i64> {
        let at = self.events.iter().position(|e| e.kind == "rating");
        at.map(|i| i as i64 + 1).ok_or_else(|| Error::bad_request("a rated conversation needs a rating event"))
    }
}

impl SqliteStore {
    /// Write `batch` in one of the writer's transactions.
    pub async fn seed_history(&self, batch: SeedBatch) -> Result<()> {
        self.write(move |c| {
            let mut visitor =
                c.prepare_cached("INSERT INTO visitors (id, site_id, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4)")?;
            for v in &batch.visitors {
                visitor.execute(params![v.id, batch.site_id, v.first_seen, v.last_seen])?;
            }
            let mut conversation = c.prepare_cached(
                "INSERT INTO conversations (id, site_id, visitor_id, group_id, agent_id, status, offline, created_at, \
                 assigned_at, closed_at, messages) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                 CASE WHEN ?7 THEN 0 END)",
            )?;
            let mut event = c.prepare_cached(
                "INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, \
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut rating = c.prepare_cached(
                "INSERT INTO ratings (conversation_id, site_id, seq, score, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut missed = c.prepare_cached(
                "INSERT INTO missed_chats (conversation_id, site_id, reason, waited_ms, missed_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut take_facts = c.prepare_cached(super::sqlite_writer::TAKE_FACTS)?;
            for k in &batch.conversations {
                conversation.execute(params![
                    k.id,
                    batch.site_id,
                    k.visitor_id,
                    k.group_id,
                    k.agent_id,
                    k.status.as_str(),
                    k.offline,
                    k.created_at,
                    k.assigned_at,
                    k.closed_at
                ])?;
                for (i, e) in k.events.iter().enumerate() {
                    event.execute(params![
                        k.id,
                        i as i64 + 1,
                        e.id,
                        e.kind,
                        e.author_kind,
                        e.author_id,
                        e.client_id,
                        e.body,
                        e.data,
                        e.created_at
                    ])?;
                }
                // Facts for a chat that closed, or an offline message.
                if k.offline || k.events.iter().any(|e| e.kind == "closed") {
                    take_facts.execute([&k.id])?;
                }
                if let Some(score) = k.score {
                    let seq = k.rating_seq()?;
                    rating.execute(params![k.id, batch.site_id, seq, score, k.events[seq as usize - 1].created_at])?;
                }
                if let Some((reason, waited_ms, at)) = k.missed {
                    missed.execute(params![k.id, batch.site_id, reason, waited_ms, at])?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Refresh the query planner's statistics after a bulk load (what
    /// `PRAGMA optimize` would do in time).
    pub async fn seed_finished(&self) -> Result<()> {
        self.write(|c| Ok(c.execute_batch("ANALYZE")?)).await
    }
}

impl PostgresStore {
    /// Write `batch` in one transaction, each table in one statement.
    pub async fn seed_history(&self, batch: SeedBatch) -> Result<()> {
        let mut tx = self.p().await?.begin().await?;
        let superuser: bool =
            sqlx::query_scalar("SELECT current_setting('is_superuser') = 'on'").fetch_one(&mut *tx).await?;
        if superuser {
            sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *tx).await?;
        }
        let site = batch.site_id.as_str();
        let v = &batch.visitors;
        sqlx::query(
            "INSERT INTO visitors (id, site_id, first_seen, last_seen) \
             SELECT id, $1, first_seen, last_seen FROM UNNEST($2::text[], $3::bigint[], $4::bigint[]) \
             AS v(id, first_seen, last_seen)",
        )
        .bind(site)
        .bind(v.iter().map(|v| v.id.as_str()).collect::<Vec<_>>())
        .bind(v.iter().map(|v| v.first_seen).collect::<Vec<_>>())
        .bind(v.iter().map(|v| v.last_seen).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        let k = &batch.conversations;
        sqlx::query(
            "INSERT INTO conversations (id, site_id, visitor_id, group_id, agent_id, status, offline, created_at, \
             assigned_at, closed_at, last_seq, messages) \
             SELECT id, $1, visitor_id, group_id, agent_id, status, offline, created_at, assigned_at, closed_at, last_seq, \
             CASE WHEN offline THEN 0 END \
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::bigint[], \
             $9::bigint[], $10::bigint[], $11::bigint[]) \
             AS k(id, visitor_id, group_id, agent_id, status, offline, created_at, assigned_at, closed_at, last_seq)",
        )
        .bind(site)
        .bind(k.iter().map(|k| k.id.as_str()).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.visitor_id.as_str()).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.group_id.as_str()).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.agent_id.as_deref()).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.status.as_str()).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.offline).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.created_at).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.assigned_at).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.closed_at).collect::<Vec<_>>())
        .bind(k.iter().map(|k| k.events.len() as i64).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        let events = || k.iter().flat_map(|k| k.events.iter().enumerate().map(move |(i, e)| (k, i as i64 + 1, e)));
        sqlx::query(
            "INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, \
             created_at) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::bigint[])",
        )
        .bind(events().map(|(k, _, _)| k.id.as_str()).collect::<Vec<_>>())
        .bind(events().map(|(_, seq, _)| seq).collect::<Vec<_>>())
        .bind(events().map(|(_, _, e)| e.id.as_str()).collect::<Vec<_>>())
        .bind(events().map(|(_, _, e)| e.kind).collect::<Vec<_>>())
        .bind(events().map(|(_, _, e)| e.author_kind).collect::<Vec<_>>())
        .bind(events().map(|(_, _, e)| e.author_id.as_deref()).collect::<Vec<_>>())
        .bind(events().map(|(_, _, e)| e.client_id.as_deref()).collect::<Vec<_>>())
        .bind(events().map(|(_, _, e)| e.body.as_deref()).collect::<Vec<_>>())
        .bind(events().map(|(_, _, e)| e.data.as_str()).collect::<Vec<_>>())
        .bind(events().map(|(_, _, e)| e.created_at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        let mut rated = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for k in k.iter().filter(|k| k.score.is_some()) {
            let seq = k.rating_seq()?;
            rated.0.push(k.id.as_str());
            rated.1.push(seq);
            rated.2.push(k.score.unwrap_or_default());
            rated.3.push(k.events[seq as usize - 1].created_at);
        }
        sqlx::query(
            "INSERT INTO ratings (conversation_id, site_id, seq, score, created_at) \
             SELECT id, $1, seq, score, created_at FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) \
             AS r(id, seq, score, created_at)",
        )
        .bind(site)
        .bind(rated.0.clone())
        .bind(rated.1)
        .bind(rated.2)
        .bind(rated.3)
        .execute(&mut *tx)
        .await?;
        let missed: Vec<_> = k.iter().filter_map(|k| k.missed.map(|m| (k.id.as_str(), m))).collect();
        sqlx::query(
            "INSERT INTO missed_chats (conversation_id, site_id, reason, waited_ms, missed_at) \
             SELECT id, $1, reason, waited_ms, missed_at FROM UNNEST($2::text[], $3::text[], $4::bigint[], \
             $5::bigint[]) AS m(id, reason, waited_ms, missed_at)",
        )
        .bind(site)
        .bind(missed.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(missed.iter().map(|(_, m)| m.0).collect::<Vec<_>>())
        .bind(missed.iter().map(|(_, m)| m.1).collect::<Vec<_>>())
        .bind(missed.iter().map(|(_, m)| m.2).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        if superuser {
            // What the triggers would have done: the facts of every
            // conversation that has a `closed` event, or is an offline
            // message.
            sqlx::query(
                "UPDATE conversations c \
                 SET first_visitor_at = f.first_visitor_at, first_assigned_at = f.first_assigned_at, \
                 first_agent_at = f.first_agent_at, messages = f.messages \
                 FROM (SELECT conversation_id, \
                 min(CASE WHEN kind = 'message' AND author_kind = 'visitor' THEN created_at END) AS first_visitor_at, \
                 min(CASE WHEN kind = 'assigned' THEN created_at END) AS first_assigned_at, \
                 min(CASE WHEN kind = 'message' AND author_kind = 'agent' THEN created_at END) AS first_agent_at, \
                 count(CASE WHEN kind = 'message' THEN 1 END) AS messages, \
                 bool_or(kind = 'closed') AS closed \
                 FROM events WHERE conversation_id = ANY($1) GROUP BY conversation_id) AS f \
                 WHERE f.conversation_id = c.id AND (f.closed OR c.offline)",
            )
            .bind(k.iter().map(|k| k.id.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
            // And the marks `ratings` and `missed_chats` leave on the row.
            sqlx::query(
                "UPDATE conversations c SET rating_score = r.score FROM ratings r \
                 WHERE r.conversation_id = c.id AND c.id = ANY($1)",
            )
            .bind(rated.0)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE conversations SET missed = TRUE WHERE id = ANY($1)")
                .bind(missed.iter().map(|(id, _)| *id).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Vacuum and analyze after a bulk load (what autovacuum would do in
    /// time): the planner's statistics, and the visibility map that lets
    /// an index answer alone. Then a checkpoint, so that the load is on
    /// disk before anything is measured: without it, the kernel wrote the
    /// load's dirty pages back some 30 s later, in the middle of a bench's
    /// relay, and chat's commits waited 100–250 ms for their WAL's fsync
    /// (`bench retention` on 200,000 chats; `docs/benchmarks.md`). Needs a
    /// superuser or `pg_checkpoint`; without either, a warning and no checkpoint.
    pub async fn seed_finished(&self) -> Result<()> {
        // The load wrote each chat without facts before taking them in the
        // same transaction, leaving the partial index of chats without
        // facts (`postgres/0028`) as large as if every chat were open; the
        // planner then scanned a report's whole range for its open chats
        // instead. In operation the index's pages are emptied and reused
        // as chats close.
        if let Err(e) = sqlx::query("REINDEX INDEX conversations_without_facts").execute(self.p().await?).await {
            tracing::warn!(error = %e, "the index of chats without facts keeps the bulk load's size");
        }
        sqlx::query("VACUUM ANALYZE").execute(self.p().await?).await?;
        if let Err(e) = sqlx::query("CHECKPOINT").execute(self.p().await?).await {
            tracing::warn!(error = %e, "no checkpoint after the bulk load: the measures may meet its writeback");
        }
        Ok(())
    }
}
