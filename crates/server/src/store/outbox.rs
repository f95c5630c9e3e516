//! The chat store's outbox (migrations `sqlite/0013_outbox.sql`,
//! `postgres/0007_outbox.sql`): one row per outgoing delivery, written in
//! the same transaction as the change that causes it, then claimed with a
//! lease and sent by the process holding the store's lead (`outbox`).
//! The logic is written once in `outbox/`; this file holds the records and
//! the SQL of both backends.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::lite;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{Applied, Author, Conversation, StoredEvent, new_id, now_ms};
use crate::error::{Error, Result};

/// How a delivery travels. Only email is sent yet; chat webhooks will be
/// rows of the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    Email,
    Webhook,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Email => "email",
            DeliveryKind::Webhook => "webhook",
        }
    }

    fn parse(s: &str) -> Option<DeliveryKind> {
        match s {
            "email" => Some(DeliveryKind::Email),
            "webhook" => Some(DeliveryKind::Webhook),
            _ => None,
        }
    }
}

/// Which of a site's deliveries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryPage {
    pub status: Option<DeliveryStatus>,
    /// Only a webhook endpoint's.
    pub endpoint_id: Option<String>,
    /// A page's cursor `(created_at, id)`: only the deliveries after it.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (`next_at`).
    Queued,
    /// Accepted by the receiver (the SMTP relay).
    Sent,
    /// Given up: a permanent refusal, or no success within the retry window.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "queued" => Some(DeliveryStatus::Queued),
            "sent" => Some(DeliveryStatus::Sent),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// A delivery to queue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    /// The site it is of: admins see only their site's deliveries. `None`
    /// for the installation's own (the status page's notifications), which
    /// only the operator sees.
    pub site_id: Option<String>,
    pub kind: DeliveryKind,
    /// Which message this is (`offline_message`): picks the template.
    pub template: String,
    /// An email address (a URL for webhooks).
    pub recipient: String,
    /// The data the template renders, as JSON: rendered when sent, so the
    /// row stays small and a template fix reaches queued mail.
    pub payload: String,
    /// Queueing the same key twice stores one delivery.
    pub dedupe_key: String,
    pub created_at: i64,
    /// No attempt after this: the delivery is failed.
    pub give_up_at: i64,
}

/// A delivery as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    /// `None`: the installation's (a status page notification).
    pub site_id: Option<String>,
    pub kind: DeliveryKind,
    pub template: String,
    pub recipient: String,
    #[serde(skip)]
    pub payload: String,
    pub dedupe_key: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    /// When the next attempt is due (while queued).
    pub next_at: i64,
    pub give_up_at: i64,
    /// Until when a deliverer holds it: claimed, being sent.
    #[serde(skip)]
    pub lease_until: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// A webhook's endpoint (`store::webhooks`).
    pub endpoint_id: Option<String>,
}

/// A visitor's offline message: its new conversation, the message (its
/// first event) and the deliveries telling people of it, stored in one
/// transaction.
#[derive(Debug, Clone)]
pub struct OfflineMessage {
    /// The new conversation (status `offline`, `last_seq` 0).
    pub conversation: Conversation,
    pub author: Author,
    pub client_id: String,
    pub body: String,
    pub deliveries: Vec<NewDelivery>,
}

impl OfflineMessage {
    /// The first event and the conversation after it.
    fn applied(&self, now: i64) -> Applied {
        let mut conversation = self.conversation.clone();
        conversation.last_seq = 1;
        let event = StoredEvent {
            conversation_id: conversation.id.clone(),
            seq: 1,
            id: new_id(),
            kind: "message".into(),
            author: self.author.clone(),
            client_id: Some(self.client_id.clone()),
            body: Some(self.body.clone()),
            data: serde_json::json!({}),
            created_at: now,
        };
        Applied { event, conversation, previous_agent: None, duplicate: false }
    }
}

/// The columns of a delivery; the same names on both backends.
const COLUMNS: &str = "id, site_id, kind, template, recipient, payload, dedupe_key, status, attempts, next_at, \
                       give_up_at, lease_until, last_error, created_at, sent_at, endpoint_id";

/// A queued delivery `d` waits while an earlier one of its endpoint and
/// conversation (`order_key`) is queued: webhooks go in order.
const IN_ORDER: &str = "(d.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.order_key = d.order_key \
                        AND p.status = 'queued' AND (p.position < d.position OR (p.position = d.position \
                        AND (p.created_at < d.created_at OR (p.created_at = d.created_at AND p.id < d.id))))))";

fn bad(what: &str, value: &str) -> Error {
    Error::Store(anyhow::anyhow!("unexpected {what} in deliveries: {value:?}"))
}

fn delivery(
    text: impl Fn(&str) -> Result<String>,
    int: impl Fn(&str) -> Result<i64>,
    int_opt: impl Fn(&str) -> Result<Option<i64>>,
    text_opt: impl Fn(&str) -> Result<Option<String>>,
) -> Result<Delivery> {
    let kind = text("kind")?;
    let status = text("status")?;
    Ok(Delivery {
        id: text("id")?,
        site_id: text_opt("site_id")?,
        kind: DeliveryKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
        template: text("template")?,
        recipient: text("recipient")?,
        payload: text("payload")?,
        dedupe_key: text("dedupe_key")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        attempts: int("attempts")?,
        next_at: int("next_at")?,
        give_up_at: int("give_up_at")?,
        lease_until: int_opt("lease_until")?,
        last_error: text_opt("last_error")?,
        created_at: int("created_at")?,
        sent_at: int_opt("sent_at")?,
        endpoint_id: text_opt("endpoint_id")?,
    })
}

fn sqlite_row(r: &Row) -> Result<Delivery> {
    delivery(|c| Ok(r.get(c)?), |c| Ok(r.get(c)?), |c| Ok(r.get(c)?), |c| Ok(r.get(c)?))
}

fn pg_row(r: &PgRow) -> Result<Delivery> {
    delivery(|c| Ok(r.try_get(c)?), |c| Ok(r.try_get(c)?), |c| Ok(r.try_get(c)?), |c| Ok(r.try_get(c)?))
}

fn sqlite_all(conn: &rusqlite::Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(sqlite_row(row)?);
    }
    Ok(out)
}

/// Queue a delivery inside the caller's transaction (a writer batch's
/// savepoint); a second one with the same `dedupe_key` is dropped.
pub(super) fn sqlite_insert_delivery(c: &rusqlite::Connection, d: &NewDelivery) -> rusqlite::Result<usize> {
    sqlite_insert_ordered(c, d, None)
}

/// [`sqlite_insert_delivery`], with a webhook's endpoint (its recipient)
/// and place among its conversation's (`order`: key and position).
pub(super) fn sqlite_insert_ordered(
    c: &rusqlite::Connection,
    d: &NewDelivery,
    order: Option<(&str, i64)>,
) -> rusqlite::Result<usize> {
    let endpoint = order.map(|_| d.recipient.as_str());
    c.prepare_cached(&INSERT.replace('$', "?"))?.execute(params![
        d.id,
        d.site_id,
        d.kind.as_str(),
        d.template,
        d.recipient,
        d.payload,
        d.dedupe_key,
        d.created_at,
        d.give_up_at,
        endpoint,
        order.map(|o| o.0),
        order.map(|o| o.1)
    ])
}

/// Written with `$n` parameters; SQLite reads them as `?n`.
const INSERT: &str = "INSERT INTO deliveries (id, site_id, kind, template, recipient, payload, dedupe_key, next_at, \
                      give_up_at, created_at, endpoint_id, order_key, position) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $10, $11, $12) ON CONFLICT (dedupe_key) DO NOTHING";

/// [`sqlite_insert_delivery`] on PostgreSQL, in the caller's transaction.
pub(super) async fn pg_insert_delivery(tx: &mut sqlx::PgConnection, d: &NewDelivery) -> Result<u64> {
    pg_insert_ordered(tx, d, None).await
}

/// [`sqlite_insert_ordered`] on PostgreSQL.
pub(super) async fn pg_insert_ordered(
    tx: &mut sqlx::PgConnection,
    d: &NewDelivery,
    order: Option<(&str, i64)>,
) -> Result<u64> {
    Ok(sqlx::query(INSERT)
        .bind(&d.id)
        .bind(&d.site_id)
        .bind(d.kind.as_str())
        .bind(&d.template)
        .bind(&d.recipient)
        .bind(&d.payload)
        .bind(&d.dedupe_key)
        .bind(d.created_at)
        .bind(d.give_up_at)
        .bind(order.map(|_| d.recipient.as_str()))
        .bind(order.map(|o| o.0))
        .bind(order.map(|o| o.1))
        .execute(tx)
        .await?
        .rows_affected())
}

/// Whose deliveries an admin's list or "send again" reaches: their site's,
/// and for the operator the installation's too (the status page's
/// notifications, whose `site_id` is NULL).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub site_id: &'a str,
    pub installation: bool,
}

impl<'a> Scope<'a> {
    /// One site's deliveries only.
    pub fn site(site_id: &'a str) -> Scope<'a> {
        Scope { site_id, installation: false }
    }
}

/// The outcome of an attempt, as recorded.
#[derive(Debug, Clone)]
pub enum Attempt {
    Sent {
        at: i64,
    },
    /// Failed; retried at `next_at`, or given up when `None`. `due` is the
    /// `next_at` the attempt was claimed at: a later one in the row means an
    /// admin asked to send it again meanwhile, and that request stands.
    Failed {
        error: String,
        next_at: Option<i64>,
        due: i64,
    },
}

/// Sending again: queued and due now. One being sent this moment keeps its
/// lease (it is not sent twice at once) and is due just after the attempt
/// under way, whose outcome then leaves it queued (`Attempt::Failed`). A
/// delivery whose content was erased or expired is not sent again.
const RETRY: &str = "UPDATE deliveries SET status = 'queued', give_up_at = $2, \
    next_at = CASE WHEN lease_until IS NULL OR next_at + 1 < $1 THEN $1 ELSE next_at + 1 END \
    WHERE id = $3 AND (site_id = $4 OR ($5 AND site_id IS NULL)) AND payload <> '{}'";

/// A failed attempt's outcome (`Attempt::Failed`): $1 error, $2 next
/// attempt or given up (NULL), $3 id, $4 when the attempt was due.
const FAILED: &str = "UPDATE deliveries SET attempts = attempts + 1, lease_until = NULL, \
    last_error = CASE WHEN status = 'failed' THEN last_error ELSE $1 END, \
    status = CASE WHEN status = 'queued' AND next_at > $4 THEN 'queued' \
                  WHEN $2 IS NULL OR status = 'failed' THEN 'failed' ELSE 'queued' END, \
    next_at = CASE WHEN next_at > $4 THEN next_at ELSE COALESCE($2, next_at) END WHERE id = $3";

impl SqliteStore {
    /// The conversation, its first message and its deliveries, in one
    /// batch of the group-commit writer. Safe as an `Exec` although it
    /// writes a conversation: the conversation is new, so the writer's
    /// cache cannot hold it yet (it reads it from the table on first use).
    pub(super) async fn outbox_leave_message(&self, m: OfflineMessage) -> Result<Applied> {
        self.write(move |c| {
            let applied = m.applied(now_ms());
            let k = &m.conversation;
            c.prepare_cached(
                // Its facts for reports taken now (`messages` 0; the
                // message's insert counts it): an offline message is
                // whole when left (`sqlite/0046_offline_facts.sql`).
                "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at, offline, messages) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, 0)",
            )?
            .execute(params![
                k.id,
                k.site_id,
                k.visitor_id,
                k.group_id,
                k.status.as_str(),
                k.created_at
            ])?;
            // Its message counted in the facts (`messages` 0 above).
            super::sqlite_writer::insert_event(c, &applied.event, &mut true)?;
            for d in &m.deliveries {
                sqlite_insert_delivery(c, d)?;
            }
            let mut sites = super::webhooks::SiteHooks::default();
            super::webhooks::sqlite_queue_event_hooks(c, &mut sites, &applied.conversation, &applied.event)?;
            Ok(applied)
        })
        .await
    }

    /// Deliveries on their own (no change causes them: a transcript asked
    /// for); returns how many were new.
    pub(super) async fn outbox_queue(&self, deliveries: Vec<NewDelivery>) -> Result<usize> {
        self.write(move |c| {
            let mut queued = 0;
            for d in &deliveries {
                queued += sqlite_insert_delivery(c, d)?;
            }
            Ok(queued)
        })
        .await
    }

    pub(super) async fn outbox_claim(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<Delivery>> {
        self.write(move |c| {
            let due = sqlite_all(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM deliveries d WHERE status = 'queued' AND next_at <= ?1 \
                     AND (lease_until IS NULL OR lease_until <= ?1) AND {IN_ORDER} ORDER BY next_at LIMIT ?2"
                ),
                params![now, limit],
            )?;
            for d in &due {
                c.prepare_cached("UPDATE deliveries SET lease_until = ?1 WHERE id = ?2")?
                    .execute(params![lease_until, d.id])?;
            }
            Ok(due)
        })
        .await
    }

    pub(super) async fn outbox_release_leases(&self) -> Result<()> {
        self.write(|c| {
            c.execute(
                "UPDATE deliveries SET lease_until = NULL WHERE status = 'queued' AND lease_until IS NOT NULL",
                [],
            )?;
            Ok(())
        })
        .await
    }

    pub(super) async fn outbox_record(&self, id: &str, attempt: Attempt) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            match attempt {
                Attempt::Sent { at } => c
                    .prepare_cached(
                        "UPDATE deliveries SET status = 'sent', sent_at = ?1, attempts = attempts + 1, \
                     lease_until = NULL WHERE id = ?2",
                    )?
                    .execute(params![at, id])?,
                Attempt::Failed { error, next_at, due } => {
                    c.prepare_cached(&lite(FAILED))?.execute(params![error, next_at, id, due])?
                }
            };
            Ok(())
        })
        .await
    }

    pub(super) async fn outbox_list(&self, scope: Scope<'_>, page: DeliveryPage) -> Result<Vec<Delivery>> {
        let (site_id, installation) = (scope.site_id.to_owned(), scope.installation);
        let status = page.status.map(DeliveryStatus::as_str);
        let (at, id) = page.before.unzip();
        self.read(move |c| {
            sqlite_all(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM deliveries WHERE (site_id = ?1 OR (?4 AND site_id IS NULL)) \
                     AND (?2 IS NULL OR status = ?2) AND (?5 IS NULL OR endpoint_id = ?5) \
                     AND (?6 IS NULL OR created_at < ?6 OR (created_at = ?6 AND id < ?7)) \
                     ORDER BY created_at DESC, id DESC LIMIT ?3"
                ),
                params![site_id, status, page.limit, installation, page.endpoint_id, at, id],
            )
        })
        .await
    }

    pub(super) async fn outbox_retry(&self, scope: Scope<'_>, id: &str, now: i64, give_up_at: i64) -> Result<bool> {
        let (site_id, installation, id) = (scope.site_id.to_owned(), scope.installation, id.to_owned());
        self.write(move |c| {
            let changed =
                c.prepare_cached(&lite(RETRY))?.execute(params![now, give_up_at, id, site_id, installation])?;
            Ok(changed > 0)
        })
        .await
    }

    pub(super) async fn outbox_queued(&self) -> Result<i64> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT count(*) FROM deliveries WHERE status = 'queued'")?
                .query_row([], |r| r.get(0))
                .optional()?
                .unwrap_or(0))
        })
        .await
    }
}

impl PostgresStore {
    /// The conversation, its first message and its deliveries in one
    /// transaction.
    pub(super) async fn outbox_leave_message(&self, m: OfflineMessage) -> Result<Applied> {
        let mut tx = self.p().await?.begin().await?;
        let applied = m.applied(now_ms());
        let k = &applied.conversation;
        sqlx::query(
            // Its facts taken now, as on SQLite (`postgres/0040_offline_facts.sql`).
            "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, last_seq, created_at, offline, \
             messages) VALUES ($1, $2, $3, $4, $5, 1, $6, TRUE, 0)",
        )
        .bind(&k.id)
        .bind(&k.site_id)
        .bind(&k.visitor_id)
        .bind(&k.group_id)
        .bind(k.status.as_str())
        .bind(k.created_at)
        .execute(&mut *tx)
        .await?;
        let e = &applied.event;
        sqlx::query(
            "INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&e.conversation_id)
        .bind(e.seq)
        .bind(&e.id)
        .bind(&e.kind)
        .bind(e.author.kind.as_str())
        .bind(e.author.id.as_deref())
        .bind(e.client_id.as_deref())
        .bind(e.body.as_deref())
        .bind(e.data.to_string())
        .bind(e.created_at)
        .execute(&mut *tx)
        .await?;
        for d in &m.deliveries {
            pg_insert_delivery(&mut tx, d).await?;
        }
        super::webhooks::pg_queue_event_hooks(&mut tx, &applied.conversation, &applied.event).await?;
        tx.commit().await?;
        Ok(applied)
    }

    pub(super) async fn outbox_queue(&self, deliveries: Vec<NewDelivery>) -> Result<usize> {
        let mut tx = self.p().await?.begin().await?;
        let mut queued = 0;
        for d in &deliveries {
            queued += pg_insert_delivery(&mut tx, d).await? as usize;
        }
        tx.commit().await?;
        Ok(queued)
    }

    /// Due deliveries, leased: `SKIP LOCKED` lets two claims (a lead
    /// handing over) never take the same row.
    pub(super) async fn outbox_claim(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deliveries SET lease_until = $2 WHERE id IN (SELECT id FROM deliveries d WHERE status = 'queued' \
             AND next_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) AND {IN_ORDER} ORDER BY next_at \
             LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(self.p().await?)
        .await?;
        let mut due = rows.iter().map(pg_row).collect::<Result<Vec<_>>>()?;
        due.sort_by_key(|d| d.next_at);
        Ok(due)
    }

    pub(super) async fn outbox_release_leases(&self) -> Result<()> {
        sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE status = 'queued' AND lease_until IS NOT NULL")
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    pub(super) async fn outbox_record(&self, id: &str, attempt: Attempt) -> Result<()> {
        let p = self.p().await?;
        match attempt {
            Attempt::Sent { at } => {
                sqlx::query(
                    "UPDATE deliveries SET status = 'sent', sent_at = $1, attempts = attempts + 1, \
                     lease_until = NULL WHERE id = $2",
                )
                .bind(at)
                .bind(id)
                .execute(p)
                .await?
            }
            Attempt::Failed { error, next_at, due } => {
                sqlx::query(FAILED).bind(error).bind(next_at).bind(id).bind(due).execute(p).await?
            }
        };
        Ok(())
    }

    pub(super) async fn outbox_list(&self, scope: Scope<'_>, page: DeliveryPage) -> Result<Vec<Delivery>> {
        let (at, id) = page.before.unzip();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deliveries WHERE (site_id = $1 OR ($4 AND site_id IS NULL)) \
             AND ($2::TEXT IS NULL OR status = $2) AND ($5::TEXT IS NULL OR endpoint_id = $5) \
             AND ($6::BIGINT IS NULL OR created_at < $6 OR (created_at = $6 AND id < $7)) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        )))
        .bind(scope.site_id)
        .bind(page.status.map(DeliveryStatus::as_str))
        .bind(page.limit)
        .bind(scope.installation)
        .bind(page.endpoint_id)
        .bind(at)
        .bind(id)
        .fetch_all(self.p().await?)
        .await?;
        rows.iter().map(pg_row).collect()
    }

    pub(super) async fn outbox_retry(&self, scope: Scope<'_>, id: &str, now: i64, give_up_at: i64) -> Result<bool> {
        let done = sqlx::query(RETRY)
            .bind(now)
            .bind(give_up_at)
            .bind(id)
            .bind(scope.site_id)
            .bind(scope.installation)
            .execute(self.p().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn outbox_queued(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'queued'")
            .fetch_one(self.p().await?)
            .await?)
    }
}
