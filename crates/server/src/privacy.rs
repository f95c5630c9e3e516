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

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::store::erasure::Erased;
use crate::store::{ConversationFilter, Store, StoredEvent, now_ms};

/// The version of the document's shape.
pub const EXPORT_FORMAT: u32 = 1;

/// Most conversations of one visitor an export holds.
const MAX_CONVERSATIONS: i64 = 1000;
const EVENT_PAGE: i64 = 500;

fn event_json(e: &StoredEvent) -> Value {
    json!({
        "seq": e.seq, "id": e.id, "kind": e.kind,
        "author": {"kind": e.author.kind, "id": e.author.id},
        "client_id": e.client_id, "body": e.body, "data": e.data, "created_at": e.created_at,
    })
}

/// Everything about visitor `visitor_id` of site `site_id`; another
/// site's visitor, or none, is "not found".
pub async fn export_visitor(store: &dyn Store, site_id: &str, visitor_id: &str) -> Result<Value> {
    if visitor_id.len() > 64 {
        return Err(Error::NotFound("visitor"));
    }
    let v = store.visitor(visitor_id).await?.filter(|v| v.site_id == site_id).ok_or(Error::NotFound("visitor"))?;
    let last_ip = store.visitor_ip(&v.id).await?;
    let filter = ConversationFilter { visitor_id: Some(v.id.clone()), limit: MAX_CONVERSATIONS, ..Default::default() };
    let mut conversations = Vec::new();
    for c in store.conversations(site_id, filter).await? {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = store.events_after(&c.id, after, EVENT_PAGE).await?;
            let done = (page.len() as i64) < EVENT_PAGE;
            if let Some(last) = page.last() {
                after = last.seq;
            }
            events.extend(page.iter().map(event_json));
            if done {
                break;
            }
        }
        let mut conv = serde_json::to_value(&c).map_err(Error::internal)?;
        conv["events"] = Value::Array(events);
        conversations.push(conv);
    }
    let bans: Vec<_> =
        store.bans(site_id, 1000).await?.into_iter().filter(|b| b.visitor_id.as_deref() == Some(&v.id)).collect();
    let mut visitor = serde_json::to_value(&v).map_err(Error::internal)?;
    visitor["last_ip"] = json!(last_ip);
    Ok(json!({
        "format": EXPORT_FORMAT,
        "exported_at": now_ms(),
        "visitor": visitor,
        "conversations": conversations,
        "bans": bans,
    }))
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
