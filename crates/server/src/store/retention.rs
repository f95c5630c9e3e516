//! Retention (`privacy::retention`): a site's conversations closed before a
//! cutoff lose their message bodies and rating comments (tombstones, as an
//! erasure leaves: `body` gone, `data` `{"erased":true}`, seqs gap-free),
//! and are marked `expired_at`, and their files are unbound (the
//! attachments' cleanup deletes them); visitors last seen before the cutoff with
//! no unexpired conversation lose their details; deliveries made before it
//! lose their contents and recipient. Each call does at most `batch` of
//! each: on PostgreSQL in one transaction; on SQLite one chat per
//! background unit of the writer, which chat writes go before.

use rusqlite::params;

use super::lite;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::Result;

/// What one batch expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Expired {
    pub conversations: u64,
    pub messages: u64,
    pub visitors: u64,
    pub deliveries: u64,
    /// Audit log entries past the site's `audit_retention_days`.
    pub audit_entries: u64,
    /// How long the job rests before its next batch, to keep to its share
    /// of the store (`WRITER_SHARE_PERCENT`): PostgreSQL's batch asks for
    /// it; SQLite's units have each rested already.
    #[serde(skip)]
    pub rest: std::time::Duration,
}

impl Expired {
    /// Whether the batch was full in any part, so another may find more.
    pub fn full(&self, batch: i64) -> bool {
        [self.conversations, self.visitors, self.deliveries].iter().any(|n| *n as i64 >= batch)
    }
}

/// A closed chat ends at `closed_at`; an offline message (never taken) at
/// its creation.
const CONVERSATIONS: &str = "SELECT id FROM conversations WHERE site_id = $1 AND expired_at IS NULL \
    AND ((status = 'closed' AND closed_at < $2) OR (status = 'offline' AND created_at < $2)) LIMIT $3";
const MESSAGES: &str = "UPDATE events SET body = NULL, data = '{\"erased\":true}' \
    WHERE conversation_id = $1 AND kind IN ('message', 'note') AND body IS NOT NULL";
const COMMENT_SQLITE: &str = "UPDATE events SET data = json_remove(data, '$.comment') \
    WHERE conversation_id = ?1 AND kind = 'rating' AND json_extract(data, '$.comment') IS NOT NULL";
const COMMENT_POSTGRES: &str = "UPDATE events SET data = (data::jsonb - 'comment')::text \
    WHERE conversation_id = $1 AND kind = 'rating' AND data::jsonb ? 'comment'";
const MARK: &str = "UPDATE conversations SET expired_at = $2 WHERE id = $1";
const MARK_UNEXPIRED: &str = "UPDATE conversations SET expired_at = ?2 WHERE id = ?1 AND expired_at IS NULL";
/// Its files: no longer the conversation's (links already issued open
/// nothing), so the attachments' cleanup deletes them, as after an erasure.
const FILES: &str = "UPDATE attachments SET conversation_id = NULL, created_at = 0 WHERE conversation_id = $1";
const VISITORS: &str = "UPDATE visitors SET name = NULL, email = NULL, page_url = NULL, referrer = NULL, \
    user_agent = NULL, last_ip = NULL WHERE id IN (SELECT v.id FROM visitors v WHERE v.site_id = $1 \
    AND v.last_seen < $2 AND (v.name IS NOT NULL OR v.email IS NOT NULL OR v.page_url IS NOT NULL \
    OR v.referrer IS NOT NULL OR v.user_agent IS NOT NULL OR v.last_ip IS NOT NULL) \
    AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = v.id AND c.expired_at IS NULL) LIMIT $3)";
const DELIVERIES: &str = "UPDATE deliveries SET payload = '{}', recipient = '(expired)' WHERE id IN \
    (SELECT id FROM deliveries WHERE site_id = $1 AND created_at < $2 AND status <> 'queued' \
    AND payload <> '{}' LIMIT $3)";

/// The share of the store's time retention takes at most: after a unit
/// took the SQLite writer `t`, or a batch took PostgreSQL `t`, the next
/// waits `49 t`. Chat's p99
/// follows the erasing rate (`holdfast bench retention`, 2 ms before): 12
/// ms unpaced, 5–6 ms at a tenth, 4 ms at a fiftieth. With its search
/// index merging counted in (`MERGE_MESSAGE_SEARCH`), a fiftieth erases
/// about 30 chats of ten messages a second, over 100,000 an hour.
const WRITER_SHARE_PERCENT: u32 = 2;

/// Each unit that takes words out of a search index merges its small
/// segments too, up to about 64 pages (FTS5's `merge`; the levels with
/// at least four segments). A unit commits on its own, and each commit
/// leaves FTS5 a new segment of the words it forgot; left to themselves
/// they filled a level to FTS5's crisis threshold (16), and the chat
/// commit that came next merged the whole level: commits of 10–50 ms,
/// chat's p99 2–3× its figure without the job (`holdfast bench
/// retention`, 5 December). Done here, the merging counts in the unit's
/// time and so in the job's share of the writer.
const MERGE_MESSAGE_SEARCH: &str = "INSERT INTO message_search (message_search, rank) VALUES ('merge', 64)";
const MERGE_VISITOR_SEARCH: &str = "INSERT INTO visitor_search (visitor_search, rank) VALUES ('merge', 64)";

/// SQLite's visitors and deliveries, found apart and cleared one by one.
const VISITOR_IDS: &str = "SELECT v.id FROM visitors v WHERE v.site_id = ?1 AND v.last_seen < ?2 \
    AND (v.name IS NOT NULL OR v.email IS NOT NULL OR v.page_url IS NOT NULL OR v.referrer IS NOT NULL \
    OR v.user_agent IS NOT NULL OR v.last_ip IS NOT NULL) \
    AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = v.id AND c.expired_at IS NULL) LIMIT ?3";
const VISITOR_ONE: &str = "UPDATE visitors SET name = NULL, email = NULL, page_url = NULL, referrer = NULL, \
    user_agent = NULL, last_ip = NULL WHERE id = ?1 AND last_seen < ?2 \
    AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = ?1 AND c.expired_at IS NULL)";
const DELIVERY_IDS: &str = "SELECT id FROM deliveries WHERE site_id = ?1 AND created_at < ?2 AND status <> 'queued' \
    AND payload <> '{}' LIMIT ?3";
const DELIVERY_ONE: &str = "UPDATE deliveries SET payload = '{}', recipient = '(expired)' \
    WHERE id = ?1 AND created_at < ?2 AND status <> 'queued' AND payload <> '{}'";

impl SqliteStore {
    /// Each chat is one background unit of the writer, which runs only
    /// while no chat write waits and commits without an `fsync` of its own:
    /// a chat write waits for one chat's erasure at most, never for a batch
    /// or its disk. Visitors and deliveries the same way. Each kind is
    /// found on a reader (a scan of the site's older rows, which must not
    /// hold the writer), and each unit checks again before it clears.
    pub(super) async fn expire(&self, site_id: &str, cutoff: i64, now: i64, batch: i64) -> Result<Expired> {
        let mut out = Expired::default();
        for id in self.expirable(lite(CONVERSATIONS), site_id, cutoff, batch).await? {
            let messages = self
                .retention_unit(move |c| {
                    // Read on a snapshot a moment ago: one a unit before
                    // this one expired is left as it is.
                    if c.prepare_cached(MARK_UNEXPIRED)?.execute(params![id, now])? == 0 {
                        return Ok(None);
                    }
                    let messages = c.prepare_cached(&lite(MESSAGES))?.execute(params![id])?;
                    c.prepare_cached(COMMENT_SQLITE)?.execute(params![id])?;
                    c.prepare_cached(&lite(FILES))?.execute(params![id])?;
                    c.prepare_cached(MERGE_MESSAGE_SEARCH)?.execute([])?;
                    Ok(Some(messages as u64))
                })
                .await?;
            if let Some(messages) = messages {
                out.conversations += 1;
                out.messages += messages;
            }
        }
        for id in self.expirable(VISITOR_IDS.to_owned(), site_id, cutoff, batch).await? {
            out.visitors += self
                .retention_unit(move |c| {
                    let cleared = c.prepare_cached(VISITOR_ONE)?.execute(params![id, cutoff])?;
                    if cleared > 0 {
                        c.prepare_cached(MERGE_VISITOR_SEARCH)?.execute([])?;
                    }
                    Ok(cleared)
                })
                .await? as u64;
        }
        for id in self.expirable(DELIVERY_IDS.to_owned(), site_id, cutoff, batch).await? {
            out.deliveries += self
                .retention_unit(move |c| Ok(c.prepare_cached(DELIVERY_ONE)?.execute(params![id, cutoff])?))
                .await? as u64;
        }
        Ok(out)
    }

    /// The ids `find` lists (site, cutoff, limit), read on a reader.
    async fn expirable(&self, find: String, site_id: &str, cutoff: i64, batch: i64) -> Result<Vec<String>> {
        let site = site_id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(&find)?
                .query_map(params![site, cutoff, batch], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// One background unit, then the pause that keeps retention to its
    /// share of the writer (`WRITER_SHARE_PERCENT`).
    async fn retention_unit<T, F>(&self, unit: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        // From the unit's start on the writer to its answer after the
        // commit: the commit's own writes count against the share too.
        let (out, began) = self
            .write_background(move |c| {
                let began = std::time::Instant::now();
                Ok((unit(c)?, began))
            })
            .await?;
        tokio::time::sleep(began.elapsed() * (100 / WRITER_SHARE_PERCENT - 1)).await;
        Ok(out)
    }
}

impl PostgresStore {
    /// One transaction, and the rest after it that keeps retention to its
    /// share of the store (`WRITER_SHARE_PERCENT`), as on SQLite: with only
    /// `RetentionConfig::pause` between batches it erased 375 chats a
    /// second here, each rewriting its events' rows and index entries. The
    /// job rests after counting the batch, so `/metrics` tells when the
    /// writes were done.
    pub(super) async fn expire(&self, site_id: &str, cutoff: i64, now: i64, batch: i64) -> Result<Expired> {
        let began = std::time::Instant::now();
        let mut out = self.expire_batch(site_id, cutoff, now, batch).await?;
        out.rest = began.elapsed() * (100 / WRITER_SHARE_PERCENT - 1);
        Ok(out)
    }

    async fn expire_batch(&self, site_id: &str, cutoff: i64, now: i64, batch: i64) -> Result<Expired> {
        let mut tx = self.p().await?.begin().await?;
        let ids: Vec<String> =
            sqlx::query_scalar(CONVERSATIONS).bind(site_id).bind(cutoff).bind(batch).fetch_all(&mut *tx).await?;
        let mut out = Expired { conversations: ids.len() as u64, ..Expired::default() };
        for id in &ids {
            // Locked like every change to a conversation, so a message
            // being written to it now is either erased or not yet there.
            sqlx::query("SELECT id FROM conversations WHERE id = $1 FOR UPDATE").bind(id).execute(&mut *tx).await?;
            out.messages += sqlx::query(MESSAGES).bind(id).execute(&mut *tx).await?.rows_affected();
            sqlx::query(COMMENT_POSTGRES).bind(id).execute(&mut *tx).await?;
            sqlx::query(MARK).bind(id).bind(now).execute(&mut *tx).await?;
            sqlx::query(FILES).bind(id).execute(&mut *tx).await?;
        }
        let visitors = sqlx::query(VISITORS).bind(site_id).bind(cutoff).bind(batch).execute(&mut *tx).await?;
        let deliveries = sqlx::query(DELIVERIES).bind(site_id).bind(cutoff).bind(batch).execute(&mut *tx).await?;
        (out.visitors, out.deliveries) = (visitors.rows_affected(), deliveries.rows_affected());
        tx.commit().await?;
        Ok(out)
    }
}
