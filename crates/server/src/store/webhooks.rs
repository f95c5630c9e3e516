//! Chat webhooks (migrations `sqlite/0029_webhooks.sql`,
//! `postgres/0021_webhooks.sql`): a site's endpoints, and the outbox rows
//! (`kind` 'webhook') that carry their events. The rows are written in the
//! transaction of the change that causes them — a conversation's event
//! (`Store::apply`: the SQLite writer's batch, PostgreSQL's transaction),
//! an offline message, a missed-chat mark — so a change and its webhooks
//! commit together or not at all. Each body is made here, once, from the
//! stored records, so every attempt sends the same bytes. The rules
//! (validation, signing, sending, disabling) are in `outbox::webhooks`.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::lite;
use super::missed::Missed;
use super::outbox::{DeliveryKind, NewDelivery};
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{Conversation, StoredEvent, new_id};
use crate::error::Result;

/// Every event an endpoint may ask for.
pub const EVENTS: &[&str] = &[
    "conversation.created",
    "conversation.assigned",
    "conversation.closed",
    "conversation.missed",
    "message.created",
    "offline_message.created",
    "conversation.rated",
];

/// How long a webhook delivery is retried after it is queued: a day and
/// more, so a receiver down over a night loses nothing.
pub const RETRY_WINDOW_MS: i64 = 26 * 3600 * 1000;

/// An endpoint as stored, its secret included: never sent as it is (not
/// `Serialize`); admins see `outbox::webhooks::EndpointView`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub site_id: String,
    /// What the admin called it.
    pub name: String,
    pub url: String,
    /// `whsec_` and base64 of the key (Standard Webhooks).
    pub secret: String,
    /// The events it wants (names of [`EVENTS`]).
    pub events: Vec<String>,
    pub enabled: bool,
    /// The first failed attempt since the last success.
    pub failing_since: Option<i64>,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// What an admin changes of an endpoint; `None` leaves it alone.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub name: Option<String>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// Enabling clears the failure record; disabling by hand records no
    /// reason.
    pub enabled: Option<bool>,
    /// A new signing secret (a rotation): it signs every attempt from now
    /// on, a retry of an older event's delivery too.
    pub secret: Option<String>,
}

const INSERT: &str = "INSERT INTO webhook_endpoints (id, site_id, name, url, secret, events, enabled, created_by, \
                      created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const SITE_ENDPOINTS: &str = "SELECT * FROM webhook_endpoints WHERE site_id = $1 ORDER BY created_at";
const ONE: &str = "SELECT * FROM webhook_endpoints WHERE site_id = $1 AND id = $2";
const BY_ID: &str = "SELECT * FROM webhook_endpoints WHERE id = $1";
const ENABLED: &str = "SELECT id, events FROM webhook_endpoints WHERE site_id = $1 AND enabled = $2";
const UPDATE: &str = "UPDATE webhook_endpoints SET name = $1, url = $2, events = $3, enabled = $4, \
                      failing_since = $5, disabled_at = $6, disabled_reason = $7, secret = $10 \
                      WHERE site_id = $8 AND id = $9";
const DELETE: &str = "DELETE FROM webhook_endpoints WHERE site_id = $1 AND id = $2";
/// A deleted endpoint's queued deliveries end at once, as failed (their
/// log stays).
const END_QUEUED: &str = "UPDATE deliveries SET status = 'failed', last_error = 'the endpoint was deleted', \
                          lease_until = NULL WHERE site_id = $1 AND endpoint_id = $2 AND status = 'queued'";
const SUCCEEDED: &str = "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1";
const FAILED: &str = "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2";
const DISABLE: &str = "UPDATE webhook_endpoints SET enabled = $1, disabled_at = $2, disabled_reason = $3 \
                       WHERE id = $4 AND enabled = $5 AND failing_since IS NOT NULL AND failing_since <= $6";

macro_rules! endpoint_from {
    ($r:expr, $get:ident) => {{
        let events: String = $r.$get("events")?;
        Endpoint {
            id: $r.$get("id")?,
            site_id: $r.$get("site_id")?,
            name: $r.$get("name")?,
            url: $r.$get("url")?,
            secret: $r.$get("secret")?,
            events: events.split_whitespace().map(str::to_owned).collect(),
            enabled: $r.$get("enabled")?,
            failing_since: $r.$get("failing_since")?,
            disabled_at: $r.$get("disabled_at")?,
            disabled_reason: $r.$get("disabled_reason")?,
            created_by: $r.$get("created_by")?,
            created_at: $r.$get("created_at")?,
        }
    }};
}

fn sqlite_endpoint(r: &Row) -> rusqlite::Result<Endpoint> {
    Ok(endpoint_from!(r, get))
}

/// An endpoint of this site (the writer's connection: no other writes
/// between this read and what follows it).
fn sqlite_endpoint_of(c: &rusqlite::Connection, site_id: &str, id: &str) -> Result<Option<Endpoint>> {
    Ok(c.prepare_cached(&lite(ONE))?.query_row(params![site_id, id], sqlite_endpoint).optional()?)
}

fn pg_endpoint(r: &PgRow) -> Result<Endpoint> {
    Ok(endpoint_from!(r, try_get))
}

/// An endpoint of this site, its row locked until `tx` ends.
async fn pg_locked_endpoint(tx: &mut sqlx::PgConnection, site_id: &str, id: &str) -> Result<Option<Endpoint>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{ONE} FOR UPDATE")))
        .bind(site_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| pg_endpoint(&r)).transpose()
}

/// The webhook events a conversation's stored event causes, each with its
/// place among the conversation's deliveries (`position`: four per seq,
/// so a conversation's creation goes before its first message, and a
/// missed mark after the event it follows).
fn events_of(conversation: &Conversation, event: &StoredEvent) -> Vec<(&'static str, i64)> {
    let at = event.seq * 4;
    match event.kind.as_str() {
        "message" if event.seq == 1 && conversation.status == super::ConversationStatus::Offline => {
            vec![("offline_message.created", at), ("message.created", at + 1)]
        }
        "message" if event.seq == 1 => vec![("conversation.created", at), ("message.created", at + 1)],
        "message" => vec![("message.created", at + 1)],
        "assigned" => vec![("conversation.assigned", at)],
        "closed" => vec![("conversation.closed", at)],
        "rating" => vec![("conversation.rated", at)],
        _ => Vec::new(),
    }
}

/// The position of a missed mark made when the conversation's last event
/// was `last_seq`.
pub fn missed_position(last_seq: i64) -> i64 {
    last_seq * 4 + 2
}

/// What a webhook of a conversation's event carries as `data` (every
/// event but `conversation.missed`). The OpenAPI document's `webhooks`
/// describe the bodies from this type's schema.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationEventData {
    pub site_id: String,
    pub conversation: Conversation,
    pub event: StoredEvent,
}

/// What a `conversation.missed` webhook carries as `data`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MissedData {
    pub site_id: String,
    pub conversation: Conversation,
    pub missed: Missed,
}

/// A webhook's body (Standard Webhooks: `type`, `timestamp`, `data`).
#[derive(Serialize)]
struct Envelope<'a, D> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: D,
}

/// A webhook's body, as sent (the same bytes on every attempt).
pub fn body(kind: &str, at_ms: i64, data: impl Serialize) -> String {
    let timestamp = jiff::Timestamp::from_millisecond(at_ms).map(|t| t.to_string()).unwrap_or_default();
    // Plain structs of strings and numbers: serializing them cannot fail.
    serde_json::to_string(&Envelope { kind, timestamp, data }).unwrap_or_default()
}

/// The delivery of `kind` to `endpoint_id`, ordered among the
/// conversation's by `position`, de-duplicated by `key`.
pub fn delivery(
    conversation: &Conversation,
    endpoint_id: &str,
    kind: &str,
    position: i64,
    key: &str,
    payload: String,
    now: i64,
) -> HookDelivery {
    HookDelivery {
        delivery: NewDelivery {
            id: new_id(),
            site_id: Some(conversation.site_id.clone()),
            kind: DeliveryKind::Webhook,
            template: kind.to_owned(),
            recipient: endpoint_id.to_owned(),
            payload,
            dedupe_key: format!("hook:{endpoint_id}:{key}:{kind}"),
            created_at: now,
            give_up_at: now + RETRY_WINDOW_MS,
        },
        order_key: format!("{endpoint_id}:{}", conversation.id),
        position,
    }
}

/// A webhook delivery to queue: an outbox row with its place in order.
#[derive(Debug, Clone)]
pub struct HookDelivery {
    pub delivery: NewDelivery,
    pub order_key: String,
    pub position: i64,
}

/// The deliveries `event` causes to the site's enabled endpoints that
/// want them (`wanted`: each endpoint's id and events).
fn hooks_for(wanted: &[(String, String)], conversation: &Conversation, event: &StoredEvent) -> Vec<HookDelivery> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let kinds = events_of(conversation, event);
    let mut out = Vec::new();
    for (kind, position) in kinds {
        if !wanted.iter().any(|(_, events)| events.split_whitespace().any(|e| e == kind)) {
            continue;
        }
        let data = ConversationEventData {
            site_id: conversation.site_id.clone(),
            conversation: conversation.clone(),
            event: event.clone(),
        };
        let payload = body(kind, event.created_at, &data);
        for (endpoint, events) in wanted {
            if events.split_whitespace().any(|e| e == kind) {
                let key = &event.id;
                out.push(delivery(conversation, endpoint, kind, position, key, payload.clone(), event.created_at));
            }
        }
    }
    out
}

/// Queue a webhook delivery in the caller's SQLite transaction.
pub(super) fn sqlite_insert_hook(c: &rusqlite::Connection, h: &HookDelivery) -> rusqlite::Result<()> {
    super::outbox::sqlite_insert_ordered(c, &h.delivery, Some((&h.order_key, h.position)))?;
    Ok(())
}

/// Queue a webhook delivery in the caller's PostgreSQL transaction.
pub(super) async fn pg_insert_hook(tx: &mut sqlx::PgConnection, h: &HookDelivery) -> Result<()> {
    super::outbox::pg_insert_ordered(tx, &h.delivery, Some((&h.order_key, h.position))).await?;
    Ok(())
}

/// Each site's enabled endpoints (id and events), read once per SQLite
/// group commit rather than once per message, as PostgreSQL's group commit
/// does ([`pg_queue_events_hooks`]). Good only while nothing else in the
/// transaction writes endpoints: the writer forgets it before any write
/// but a chat change, and at every commit.
#[derive(Debug, Default)]
pub(super) struct SiteHooks(std::collections::HashMap<String, Vec<(String, String)>>);

impl SiteHooks {
    pub(super) fn forget(&mut self) {
        self.0.clear();
    }

    fn of(&mut self, c: &rusqlite::Connection, site_id: &str) -> rusqlite::Result<&[(String, String)]> {
        if !self.0.contains_key(site_id) {
            let mut stmt = c.prepare_cached(&lite(ENABLED))?;
            let rows = stmt.query_map(params![site_id, true], |r| Ok((r.get(0)?, r.get(1)?)))?;
            self.0.insert(site_id.to_owned(), rows.collect::<rusqlite::Result<_>>()?);
        }
        Ok(&self.0[site_id])
    }
}

/// Queue the webhooks a stored event causes, in the caller's SQLite
/// transaction (the writer's batch), with the endpoints read so far in it.
pub(super) fn sqlite_queue_event_hooks(
    c: &rusqlite::Connection,
    sites: &mut SiteHooks,
    conversation: &Conversation,
    event: &StoredEvent,
) -> rusqlite::Result<()> {
    let wanted = sites.of(c, &conversation.site_id)?;
    for hook in hooks_for(wanted, conversation, event) {
        sqlite_insert_hook(c, &hook)?;
    }
    Ok(())
}

/// [`sqlite_queue_event_hooks`] in a PostgreSQL transaction.
pub(super) async fn pg_queue_event_hooks(
    tx: &mut sqlx::PgConnection,
    conversation: &Conversation,
    event: &StoredEvent,
) -> Result<()> {
    pg_queue_events_hooks(tx, &[(conversation, event)]).await
}

/// [`pg_queue_event_hooks`] for the events of a group commit: each site's
/// endpoints are read once per transaction, not once per event.
pub(super) async fn pg_queue_events_hooks(
    tx: &mut sqlx::PgConnection,
    events: &[(&Conversation, &StoredEvent)],
) -> Result<()> {
    let mut wanted_by_site: std::collections::HashMap<&str, Vec<(String, String)>> = Default::default();
    for &(conversation, event) in events {
        if events_of(conversation, event).is_empty() {
            continue;
        }
        let site = conversation.site_id.as_str();
        if !wanted_by_site.contains_key(site) {
            let rows = sqlx::query(ENABLED).bind(site).bind(true).fetch_all(&mut *tx).await?;
            let wanted = rows
                .iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
                .collect::<Result<Vec<_>>>()?;
            wanted_by_site.insert(site, wanted);
        }
        for hook in hooks_for(&wanted_by_site[site], conversation, event) {
            pg_insert_hook(tx, &hook).await?;
        }
    }
    Ok(())
}

/// The enabled endpoints of a site that want `kind`: their ids.
pub fn wanting<'a>(endpoints: &'a [Endpoint], kind: &str) -> impl Iterator<Item = &'a Endpoint> {
    endpoints.iter().filter(move |e| e.enabled && e.events.iter().any(|k| k == kind))
}

impl SqliteStore {
    pub(super) async fn hook_insert(&self, e: Endpoint) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(&lite(INSERT))?.execute(params![
                e.id,
                e.site_id,
                e.name,
                e.url,
                e.secret,
                e.events.join(" "),
                e.enabled,
                e.created_by,
                e.created_at
            ])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn hook_list(&self, site_id: &str) -> Result<Vec<Endpoint>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&lite(SITE_ENDPOINTS))?;
            let rows = stmt.query_map(params![site_id], sqlite_endpoint)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(super) async fn hook_get(&self, id: &str) -> Result<Option<Endpoint>> {
        let id = id.to_owned();
        self.read(move |c| Ok(c.prepare_cached(&lite(BY_ID))?.query_row(params![id], sqlite_endpoint).optional()?))
            .await
    }

    pub(super) async fn hook_update(
        &self,
        site_id: &str,
        id: &str,
        change: EndpointChange,
    ) -> Result<Option<Endpoint>> {
        let (site_id, id) = (site_id.to_owned(), id.to_owned());
        self.write(move |c| {
            let Some(old) = sqlite_endpoint_of(c, &site_id, &id)? else { return Ok(None) };
            let new = changed(old, change);
            c.prepare_cached(&lite(UPDATE))?.execute(params![
                new.name,
                new.url,
                new.events.join(" "),
                new.enabled,
                new.failing_since,
                new.disabled_at,
                new.disabled_reason,
                site_id,
                id,
                new.secret
            ])?;
            Ok(Some(new))
        })
        .await
    }

    pub(super) async fn hook_delete(&self, site_id: &str, id: &str) -> Result<Option<Endpoint>> {
        let (site_id, id) = (site_id.to_owned(), id.to_owned());
        self.write(move |c| {
            let Some(old) = sqlite_endpoint_of(c, &site_id, &id)? else { return Ok(None) };
            c.prepare_cached(&lite(DELETE))?.execute(params![site_id, id])?;
            c.prepare_cached(&lite(END_QUEUED))?.execute(params![site_id, id])?;
            Ok(Some(old))
        })
        .await
    }

    pub(super) async fn hook_outcome(&self, id: &str, ok: bool, at: i64) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            if ok {
                c.prepare_cached(&lite(SUCCEEDED))?.execute(params![id])?;
            } else {
                c.prepare_cached(&lite(FAILED))?.execute(params![at, id])?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn hook_disable(
        &self,
        id: &str,
        failing_before: i64,
        reason: &str,
        emails: Vec<NewDelivery>,
    ) -> Result<bool> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        let now = super::now_ms();
        self.write(move |c| {
            let done =
                c.prepare_cached(&lite(DISABLE))?.execute(params![false, now, reason, id, true, failing_before])?;
            if done > 0 {
                for d in &emails {
                    super::outbox::sqlite_insert_delivery(c, d)?;
                }
            }
            Ok(done > 0)
        })
        .await
    }
}

/// `old` with `change` applied: enabling clears the failure record.
fn changed(mut e: Endpoint, change: EndpointChange) -> Endpoint {
    if let Some(name) = change.name {
        e.name = name;
    }
    if let Some(url) = change.url {
        e.url = url;
    }
    if let Some(events) = change.events {
        e.events = events;
    }
    if let Some(secret) = change.secret {
        e.secret = secret;
    }
    match change.enabled {
        Some(true) if !e.enabled => {
            e.enabled = true;
            e.failing_since = None;
            e.disabled_at = None;
            e.disabled_reason = None;
        }
        Some(false) if e.enabled => {
            e.enabled = false;
            e.disabled_at = Some(super::now_ms());
            e.disabled_reason = None;
        }
        _ => {}
    }
    e
}

impl PostgresStore {
    pub(super) async fn hook_insert(&self, e: Endpoint) -> Result<()> {
        sqlx::query(INSERT)
            .bind(&e.id)
            .bind(&e.site_id)
            .bind(&e.name)
            .bind(&e.url)
            .bind(&e.secret)
            .bind(e.events.join(" "))
            .bind(e.enabled)
            .bind(&e.created_by)
            .bind(e.created_at)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    pub(super) async fn hook_list(&self, site_id: &str) -> Result<Vec<Endpoint>> {
        let rows = sqlx::query(SITE_ENDPOINTS).bind(site_id).fetch_all(self.p().await?).await?;
        rows.iter().map(pg_endpoint).collect()
    }

    pub(super) async fn hook_get(&self, id: &str) -> Result<Option<Endpoint>> {
        sqlx::query(BY_ID).bind(id).fetch_optional(self.p().await?).await?.map(|r| pg_endpoint(&r)).transpose()
    }

    pub(super) async fn hook_update(
        &self,
        site_id: &str,
        id: &str,
        change: EndpointChange,
    ) -> Result<Option<Endpoint>> {
        let mut tx = self.p().await?.begin().await?;
        let Some(old) = pg_locked_endpoint(&mut tx, site_id, id).await? else { return Ok(None) };
        let new = changed(old, change);
        sqlx::query(UPDATE)
            .bind(&new.name)
            .bind(&new.url)
            .bind(new.events.join(" "))
            .bind(new.enabled)
            .bind(new.failing_since)
            .bind(new.disabled_at)
            .bind(&new.disabled_reason)
            .bind(site_id)
            .bind(id)
            .bind(&new.secret)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(new))
    }

    pub(super) async fn hook_delete(&self, site_id: &str, id: &str) -> Result<Option<Endpoint>> {
        let mut tx = self.p().await?.begin().await?;
        let Some(old) = pg_locked_endpoint(&mut tx, site_id, id).await? else { return Ok(None) };
        sqlx::query(DELETE).bind(site_id).bind(id).execute(&mut *tx).await?;
        sqlx::query(END_QUEUED).bind(site_id).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(old))
    }

    pub(super) async fn hook_outcome(&self, id: &str, ok: bool, at: i64) -> Result<()> {
        let q = if ok { sqlx::query(SUCCEEDED).bind(id) } else { sqlx::query(FAILED).bind(at).bind(id) };
        q.execute(self.p().await?).await?;
        Ok(())
    }

    pub(super) async fn hook_disable(
        &self,
        id: &str,
        failing_before: i64,
        reason: &str,
        emails: Vec<NewDelivery>,
    ) -> Result<bool> {
        let mut tx = self.p().await?.begin().await?;
        let done = sqlx::query(DISABLE)
            .bind(false)
            .bind(super::now_ms())
            .bind(reason)
            .bind(id)
            .bind(true)
            .bind(failing_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done > 0 {
            for d in &emails {
                super::outbox::pg_insert_delivery(&mut tx, d).await?;
            }
        }
        tx.commit().await?;
        Ok(done > 0)
    }
}
