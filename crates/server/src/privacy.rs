//! A person's data: everything Holdfast keeps about one visitor, as one
//! JSON document — what a site owes someone who asks (an access request).
//! Admins get it over the API and the console, the operator from the CLI
//! (`holdfast visitor export`).
//!
//! The document: the visitor's details (the address they last came from
//! included: it is theirs), every conversation with every event, and the
//! bans naming them.
//!
//! Erasure removes for good what identifies them or what they said: their
//! name, email, pages, browser and address, and every message body of
//! their conversations; the events stay as tombstones (`erased: true`, no
//! body) so sequence numbers stay gap-free and a client resuming with an
//! old cursor gets tombstones, not errors; search no longer finds the
//! messages; emails to them or about their chats lose their contents, and
//! those not sent yet are dropped. Bans naming them stay (with the network
//! they name): refusing an abuser is the site's legitimate interest.
//!
//! Retention is erasure on a schedule: a site's admin sets how many days
//! after a conversation ends its messages are kept (`retention_days`, 0 =
//! for ever) and how long its audit log keeps an entry
//! (`audit_retention_days`, at least 30), and the lead's job
//! (`run_retention`) expires what is older, in small batches (SQL in
//! `store/retention.rs` and `store/audit.rs`).

use crate::error::{Error, Result};
use crate::store::audit::AUDIT_FLOOR_MS;
use crate::store::bans::Ban;
use crate::store::erasure::Erased;
use crate::store::retention::Expired;
use crate::store::{Conversation, ConversationFilter, Store, StoredEvent, Visitor, now_ms};
use serde::Serialize;

/// The version of the document's shape.
pub const EXPORT_FORMAT: u32 = 1;

/// Most conversations of one visitor an export holds.
const MAX_CONVERSATIONS: i64 = 1000;
const EVENT_PAGE: i64 = 500;

/// Everything kept about one visitor, as one JSON document (its shape is
/// `EXPORT_FORMAT`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VisitorExport {
    /// The version of the document's shape.
    pub format: u32,
    pub exported_at: i64,
    pub visitor: ExportedVisitor,
    /// Newest first, each with its events.
    pub conversations: Vec<ExportedConversation>,
    /// The bans that name the visitor.
    pub bans: Vec<Ban>,
}

/// The visitor's details, their last address too.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedVisitor {
    #[serde(flatten)]
    pub visitor: Visitor,
    /// The address they last opened a session from.
    pub last_ip: Option<String>,
}

/// A conversation of the visitor with its events, internal notes left out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportedConversation {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub events: Vec<StoredEvent>,
}

/// Everything about visitor `visitor_id` of site `site_id`; another
/// site's visitor, or none, is "not found".
pub async fn export_visitor(store: &dyn Store, site_id: &str, visitor_id: &str) -> Result<VisitorExport> {
    if visitor_id.len() > 64 {
        return Err(Error::NotFound("visitor"));
    }
    let v = store.visitor(visitor_id).await?.filter(|v| v.site_id == site_id).ok_or(Error::NotFound("visitor"))?;
    let last_ip = store.visitor_ip(&v.id).await?;
    let filter = ConversationFilter { visitor_id: Some(v.id.clone()), limit: MAX_CONVERSATIONS, ..Default::default() };
    let mut conversations = Vec::new();
    for conversation in store.conversations(site_id, filter).await? {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = store.events_after(&conversation.id, after, EVENT_PAGE).await?;
            let done = (page.len() as i64) < EVENT_PAGE;
            if let Some(last) = page.last() {
                after = last.seq;
            }
            // Internal notes are the team's words, not the visitor's
            // data as they gave it: left out of the export (an erasure
            // still removes them).
            events.extend(page.into_iter().filter(|e| e.kind != "note"));
            if done {
                break;
            }
        }
        conversations.push(ExportedConversation { conversation, events });
    }
    let bans: Vec<_> = store
        .bans(site_id, (i64::MAX, String::new()), 1000)
        .await?
        .into_iter()
        .filter(|b| b.visitor_id.as_deref() == Some(&v.id))
        .collect();
    Ok(VisitorExport {
        format: EXPORT_FORMAT,
        exported_at: now_ms(),
        visitor: ExportedVisitor { visitor: v, last_ip },
        conversations,
        bans,
    })
}

/// Erase visitor `visitor_id` of site `site_id` (see the module's note).
pub async fn erase_visitor(store: &dyn Store, site_id: &str, visitor_id: &str) -> Result<Erased> {
    if visitor_id.len() > 64 {
        return Err(Error::NotFound("visitor"));
    }
    let erased = store.erase_visitor(site_id, visitor_id).await?;
    metrics::counter!("holdfast_visitors_erased_total").increment(1);
    Ok(erased)
}

/// How the retention job runs; every field says why.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// How often the lead applies every site's policy.
    pub every: std::time::Duration,
    /// How long a day of the sites' `retention_days` is: 24 hours. Only
    /// tests shorten it.
    pub day: std::time::Duration,
    /// Conversations (and visitors, and deliveries) one call of
    /// `Store::expire` expires: on PostgreSQL in one transaction, small so
    /// a chat write waits for one batch at most; on SQLite one per
    /// background unit of the writer (`store/retention.rs`).
    pub batch: i64,
    /// The pause between two batches, which leaves the store to chat.
    pub pause: std::time::Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            every: std::time::Duration::from_secs(600),
            day: std::time::Duration::from_secs(24 * 3600),
            batch: 25,
            pause: std::time::Duration::from_millis(50),
        }
    }
}

/// Apply every site's retention policy (`WidgetSettings::retention_days`,
/// 0 = keep for ever) once, batch by batch; returns what it expired.
/// Conversations that ended more than that many days before `now` lose
/// their messages and rating comments, visitors last seen before then with
/// nothing unexpired left lose their details, and deliveries made before
/// then their contents.
pub async fn apply_retention(store: &dyn Store, config: &RetentionConfig, now: i64) -> Result<Expired> {
    let mut total = Expired::default();
    for site in store.sites().await? {
        let mut settings = crate::admin::WidgetSettings::from_stored(&site.settings);
        let day = config.day.as_millis() as i64;
        if settings.retention_days > 0 {
            loop {
                // The policy as it is now: an admin who lengthens or turns
                // off a policy set by mistake stops the erasing at the next
                // batch, not after hours of catching up under the old one.
                let cutoff = now - day * i64::from(settings.retention_days);
                let batch = store.expire(&site.id, cutoff, now, config.batch).await?;
                metrics::counter!("holdfast_retention_expired_conversations_total").increment(batch.conversations);
                metrics::counter!("holdfast_retention_expired_messages_total").increment(batch.messages);
                metrics::counter!("holdfast_retention_expired_visitors_total").increment(batch.visitors);
                metrics::counter!("holdfast_retention_expired_deliveries_total").increment(batch.deliveries);
                total.conversations += batch.conversations;
                total.messages += batch.messages;
                total.visitors += batch.visitors;
                total.deliveries += batch.deliveries;
                if !batch.full(config.batch) {
                    break;
                }
                tokio::time::sleep(config.pause + batch.rest).await;
                let Some(now_site) = store.site(&site.id).await? else { break };
                settings = crate::admin::WidgetSettings::from_stored(&now_site.settings);
                if settings.retention_days == 0 {
                    break;
                }
            }
        }
        if settings.audit_retention_days > 0 {
            // Never younger than the floor the store holds to (an hour
            // short of it, so the two clocks never disagree on an entry).
            let floor = now - AUDIT_FLOOR_MS - 3_600_000;
            let cutoff = (now - day * i64::from(settings.audit_retention_days)).min(floor);
            loop {
                let n = store.expire_audit(&site.id, cutoff, config.batch).await?;
                metrics::counter!("holdfast_retention_expired_audit_entries_total").increment(n);
                total.audit_entries += n;
                if (n as i64) < config.batch {
                    break;
                }
                tokio::time::sleep(config.pause).await;
            }
        }
    }
    Ok(total)
}

/// The lead's retention job: `apply_retention` every `config.every`.
pub async fn run_retention(store: std::sync::Arc<dyn Store>, config: RetentionConfig) {
    loop {
        // Idempotency keys past their 24 hours (`http::idempotency`): no
        // claim reads them any more; this only reclaims their space.
        let forget_before = now_ms() - crate::store::idempotency::REMEMBERED_FOR_MS;
        if let Err(e) = store.forget_idempotency_keys(forget_before).await {
            tracing::warn!(error = %e, "retention: cannot delete expired idempotency keys; trying again later");
        }
        match apply_retention(store.as_ref(), &config, now_ms()).await {
            Ok(done) => {
                metrics::counter!("holdfast_retention_runs_total").increment(1);
                if done.conversations + done.visitors + done.deliveries + done.audit_entries > 0 {
                    tracing::info!(?done, "retention: expired what the sites' policies no longer keep");
                }
            }
            Err(e) => {
                metrics::counter!("holdfast_retention_errors_total").increment(1);
                tracing::warn!(error = %e, "retention: cannot apply the sites' policies; trying again later");
            }
        }
        tokio::time::sleep(config.every).await;
    }
}
