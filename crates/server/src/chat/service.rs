//! What chat participants can do, independent of how they are connected:
//! every action checks authority (site, ownership, role), changes state
//! through the store, then publishes what others must see on the bus.
//! The order is always persist, then publish: a crash in between loses no
//! data, because sockets fill any gap from the store.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::coalesce::Coalesced;
use super::hub::Hub;
use super::protocol::{
    AgentView, AuthorView, MAX_BODY_CHARS, MAX_CLIENT_ID, MAX_COMMENT_CHARS, QueueEntry, Rating, ServerFrame,
};
use super::routing;
use crate::abuse::bans::Bans;
use crate::abuse::limits::{Floodgate, Start};
use crate::admission::Admission;
use crate::bus::{Audience, Bus, Envelope, Payload};
use crate::error::{Error, Result};
use crate::hours::{self, HoursState};
use crate::outbox::Outbox;
use crate::outbox::mail::OfflinePayload;
use crate::store::outbox::OfflineMessage;
use crate::store::{
    Applied, Author, Availability, Change, Conversation, ConversationFilter, ConversationStatus, Group, Guard, Role,
    RoutingCandidate, Site, Store, VisitorUpdate,
};

/// An authenticated agent, as the access token says.
#[derive(Debug, Clone)]
pub struct AgentCtx {
    pub agent_id: String,
    pub site_id: String,
    pub session_id: String,
    pub role: Role,
    /// The API token when an integration acts (`auth::api_tokens`)
    /// rather than the person signed in: `agent_id` is then the token's
    /// maker and `session_id` empty.
    pub api_token: Option<TokenRef>,
}

/// The API token an integration acts with.
#[derive(Debug, Clone)]
pub struct TokenRef {
    /// Its id: idempotency keys are remembered per token.
    pub id: String,
    /// What its admin called it: the audit log and the integration's
    /// messages name it.
    pub name: String,
}

/// An authenticated visitor, as the visitor token says.
#[derive(Debug, Clone)]
pub struct VisitorCtx {
    pub visitor_id: String,
    pub site_id: String,
    /// The address the visitor connects from (`abuse::client_ip`), for
    /// bans and flood limits; `None` where there is no connection (tests
    /// driving a session over channels).
    pub ip: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone)]
pub enum Peer {
    Agent(AgentCtx),
    Visitor(VisitorCtx),
}

impl Peer {
    pub fn site_id(&self) -> &str {
        match self {
            Peer::Agent(a) => &a.site_id,
            Peer::Visitor(v) => &v.site_id,
        }
    }

    pub fn author(&self) -> Author {
        match self {
            Peer::Agent(a) => Author::agent(&a.agent_id),
            Peer::Visitor(v) => Author::visitor(&v.visitor_id),
        }
    }
}

/// A site's active agents, shared by every welcome that needs them.
#[derive(Clone)]
pub struct SiteAgents {
    pub list: Arc<Vec<AgentView>>,
    /// The list as JSON, encoded once per read: every agent's welcome
    /// carries it, and a storm of 3,000 agent welcomes must not clone and
    /// serialize a 3,000-entry list each (that was most of the server's
    /// CPU in a full-scale blip).
    pub json: Arc<RawValue>,
    /// A digest of `json`: a reconnecting console that names it in its
    /// hello is not sent the list again (3,000 agents are 300 KB).
    pub version: Arc<str>,
}

/// How long "is an agent online for this site" (and the site's agent
/// list) may be served from memory.
pub const ONLINE_CACHE_TTL: Duration = Duration::from_secs(2);
/// How long a session may use a site read by widget key: settings changed
/// on another node reach new sessions here within it.
pub const WIDGET_SITE_TTL: Duration = Duration::from_secs(1);

pub struct Chat {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub hub: Arc<Hub>,
    /// Socket frames are admitted by lane like HTTP requests.
    pub admission: Arc<Admission>,
    /// Serialises routing per site on this node, so queue drains do not
    /// stampede; correctness does not depend on it (the store re-checks).
    routing: Mutex<HashMap<String, Arc<SiteRouting>>>,
    /// Sites whose last queue drain failed (the store refused or was
    /// down): drained again every `DRAIN_RETRY` until one succeeds, so a
    /// queued visitor is not left waiting for the next event on a quiet
    /// site.
    undrained: Mutex<HashSet<String>>,
    /// Whether an agent is online, per site: every visitor connect asks.
    online_cache: Coalesced<bool>,
    /// What visitors were last told of it, per site.
    online_announced: Mutex<HashMap<String, bool>>,
    /// Per-site reads a reconnect storm would otherwise repeat per socket.
    agents_cache: Coalesced<SiteAgents>,
    queue_cache: Coalesced<Arc<Vec<QueueEntry>>>,
    /// Sites by widget key, as visitor sessions read them: a crowd of
    /// widgets opening sessions (or a flood of them) reads a site once per
    /// `WIDGET_SITE_TTL`; an admin's change here is seen at once.
    widget_sites: Coalesced<Option<Site>>,
    /// Where the emails an offline message causes are queued, in the
    /// message's own transaction.
    pub outbox: Arc<Outbox>,
    /// The bans in force, checked before anything a visitor does.
    pub bans: Arc<Bans>,
    /// How fast one visitor or address may start conversations and send.
    pub floodgate: Arc<Floodgate>,
    /// `holdfast_messages_total`, one counter by sender.
    messages: MessageCounters,
}

/// Who sent a stored message, as `holdfast_messages_total` labels it.
#[derive(Debug, Clone, Copy)]
enum Sender {
    Visitor,
    Agent,
    Integration,
}

/// `holdfast_messages_total` by sender, looked up in the registry once:
/// the `counter!` macro found a labelled counter by hashing its key, and
/// copied the key, for every message.
struct MessageCounters {
    visitor: metrics::Counter,
    agent: metrics::Counter,
    integration: metrics::Counter,
}

impl MessageCounters {
    fn new() -> Self {
        // The recorder first, so that these are its counters.
        crate::telemetry::metrics();
        let counter = |from: &'static str| metrics::counter!("holdfast_messages_total", "from" => from);
        MessageCounters { visitor: counter("visitor"), agent: counter("agent"), integration: counter("integration") }
    }

    fn of(&self, sender: Sender) -> &metrics::Counter {
        match sender {
            Sender::Visitor => &self.visitor,
            Sender::Agent => &self.agent,
            Sender::Integration => &self.integration,
        }
    }
}

pub fn check_client_id(client_id: &str) -> Result<()> {
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID {
        return Err(Error::bad_request(format!("client_id must be 1 to {MAX_CLIENT_ID} bytes")));
    }
    Ok(())
}

pub fn check_body(body: &str) -> Result<()> {
    if body.trim().is_empty() {
        return Err(Error::bad_request("the message is empty"));
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(Error::bad_request(format!("the message is longer than {MAX_BODY_CHARS} characters")));
    }
    Ok(())
}

/// A message's body: it may be empty when the message carries files.
fn check_message_body(body: &str, attachments: &[String]) -> Result<()> {
    if attachments.is_empty() || !body.is_empty() { check_body(body) } else { Ok(()) }
}

/// Optional short text field (name, email, URL): bounded, trimmed, empty → None.
pub fn clean_field(value: Option<String>, max: usize, what: &str) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => {
            let v = v.trim();
            if v.len() > max {
                return Err(Error::bad_request(format!("{what} is longer than {max} bytes")));
            }
            Ok((!v.is_empty()).then(|| v.to_owned()))
        }
    }
}

/// A frame's JSON, in one allocation of its own size. It is written into
/// this thread's buffer first: `serde_json::to_vec` starts at 128 bytes
/// and doubles, and a vector with room to spare becomes `Bytes` only with
/// a second allocation to remember it; an event and an ack (two frames for
/// each message) took three or four allocations each.
pub fn encode(frame: &impl serde::Serialize) -> Bytes {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(ENCODE_BUFFER));
    }
    BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        let text = match serde_json::to_writer(&mut *buffer, frame) {
            Ok(()) => Bytes::copy_from_slice(buffer),
            Err(_) => Bytes::from_static(b"{\"type\":\"error\"}"),
        };
        // A rare large frame (a welcome's history) does not stay resident.
        if buffer.capacity() > 16 * ENCODE_BUFFER {
            *buffer = Vec::with_capacity(ENCODE_BUFFER);
        }
        text
    })
}

/// The encoding buffer's size: a message's event frame, with room.
const ENCODE_BUFFER: usize = 4096;

impl Chat {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        hub: Arc<Hub>,
        admission: Arc<Admission>,
        outbox: Arc<Outbox>,
    ) -> Self {
        Chat {
            outbox,
            store,
            bus,
            hub,
            admission,
            routing: Mutex::default(),
            undrained: Mutex::default(),
            online_cache: Coalesced::default(),
            widget_sites: Coalesced::default(),
            online_announced: Mutex::default(),
            agents_cache: Coalesced::default(),
            queue_cache: Coalesced::default(),
            bans: Arc::default(),
            floodgate: Arc::default(),
            messages: MessageCounters::new(),
        }
    }

    // ----- publishing -------------------------------------------------------

    async fn publish_applied(&self, applied: &Applied) {
        let conv = &applied.conversation;
        let mut agent_ids: Vec<String> = conv.agent_id.iter().cloned().collect();
        if let Some(prev) = &applied.previous_agent
            && conv.agent_id.as_ref() != Some(prev)
        {
            agent_ids.push(prev.clone());
        }
        let text = encode(&super::EventFrame(&applied.event));
        self.bus
            .publish(Envelope {
                site_id: conv.site_id.clone(),
                audience: Audience::Conversation { visitor_id: conv.visitor_id.clone(), agent_ids },
                event: Some((conv.id.clone(), applied.event.seq)),
                payload: Payload::Frame { text },
            })
            .await;
    }

    pub async fn publish_frame(&self, site_id: &str, audience: Audience, frame: &ServerFrame) {
        self.bus
            .publish(Envelope {
                site_id: site_id.to_owned(),
                audience,
                event: None,
                payload: Payload::Frame { text: encode(frame) },
            })
            .await;
    }

    /// Store a change and, unless it is a retry's, publish its event.
    pub(crate) async fn apply(&self, conv_id: &str, change: Change) -> Result<Applied> {
        let applied = self.store.apply(conv_id, change).await?;
        if !applied.duplicate {
            self.publish_applied(&applied).await;
        }
        Ok(applied)
    }

    // ----- lookups with authority ------------------------------------------

    /// The conversation if `peer` may see it: same site, and for a visitor
    /// their own. Anything else is "not found" (never reveal other tenants).
    pub async fn conversation_for(&self, peer: &Peer, conv_id: &str) -> Result<Conversation> {
        if conv_id.len() > 64 {
            return Err(Error::NotFound("conversation"));
        }
        let conv = self.store.conversation(conv_id).await?.ok_or(Error::NotFound("conversation"))?;
        let visible = match peer {
            Peer::Agent(a) => conv.site_id == a.site_id,
            Peer::Visitor(v) => conv.site_id == v.site_id && conv.visitor_id == v.visitor_id,
        };
        if visible { Ok(conv) } else { Err(Error::NotFound("conversation")) }
    }

    /// Open conversations of a visitor, newest first.
    pub async fn visitor_open_conversations(&self, v: &VisitorCtx) -> Result<Vec<Conversation>> {
        let all = self
            .store
            .conversations(
                &v.site_id,
                ConversationFilter { visitor_id: Some(v.visitor_id.clone()), limit: 20, ..Default::default() },
            )
            .await?;
        Ok(all.into_iter().filter(|c| c.status.is_open()).collect())
    }

    pub async fn agent_open_conversations(&self, a: &AgentCtx) -> Result<Vec<Conversation>> {
        self.store
            .conversations(
                &a.site_id,
                ConversationFilter {
                    agent_id: Some(a.agent_id.clone()),
                    status: Some(ConversationStatus::Active),
                    limit: 500,
                    ..Default::default()
                },
            )
            .await
    }

    // ----- messages --------------------------------------------------------

    /// A visitor's message: to the given conversation, to their open one,
    /// or to a new one that is then routed.
    pub async fn visitor_send(
        &self,
        v: &VisitorCtx,
        conv_id: Option<&str>,
        client_id: &str,
        body: &str,
        greeting: Option<&str>,
        attachments: &[String],
    ) -> Result<Applied> {
        check_client_id(client_id)?;
        check_message_body(body, attachments)?;
        self.bans.check(&v.site_id, Some(&v.visitor_id), v.ip)?;
        self.limit(v, Start::Message).await?;
        let author = Author::visitor(&v.visitor_id);
        let attachments = crate::attachments::refs_for(self.store.as_ref(), &v.site_id, &author, attachments).await?;
        let message =
            Change::Message { author, client_id: client_id.into(), body: body.into(), attachments, integration: None };
        if let Some(id) = conv_id {
            // The ownership check happens inside the store's transaction:
            // no separate read on the hot path.
            if id.len() > 64 {
                return Err(Error::NotFound("conversation"));
            }
            let guard = Guard::Visitor { site_id: v.site_id.clone(), visitor_id: v.visitor_id.clone() };
            let applied = self.store.apply_guarded(id, guard, message).await?;
            return Ok(self.sent(applied, Sender::Visitor).await);
        }
        let (conv, is_new) = match self.visitor_open_conversations(v).await?.into_iter().next() {
            Some(c) => (c, false),
            None => {
                // Outside the landing group's hours no chat starts: the
                // widget offers its offline form instead.
                let group = self.default_group(&v.site_id).await?;
                self.check_open(&v.site_id, &group).await?;
                self.limit(v, Start::Conversation).await?;
                let status = ConversationStatus::Queued;
                (self.store.create_conversation(&v.site_id, &v.visitor_id, &group.id, status).await?, true)
            }
        };
        let applied = self.sent(self.store.apply(&conv.id, message).await?, Sender::Visitor).await;
        if is_new {
            if let Some(rule) = greeting {
                self.record_greeting(&conv, rule).await;
            }
            self.route(&applied.conversation).await?;
        }
        Ok(applied)
    }

    /// The visitor started this chat answering a proactive greeting: record
    /// which rule (one of the site's; anything else is ignored, and a failed
    /// write is logged: the chat itself stands).
    async fn record_greeting(&self, conv: &Conversation, rule_id: &str) {
        let known = match self.store.greetings(&conv.site_id).await {
            Ok(rules) => rules.iter().any(|r| r.id == rule_id),
            Err(err) => {
                tracing::warn!(error = %err, "could not read the greeting rules");
                false
            }
        };
        if known && let Err(err) = self.store.greeting_started(&conv.id, rule_id, crate::store::now_ms()).await {
            tracing::warn!(error = %err, conv = %conv.id, "could not record the greeting that started a chat");
        }
    }

    /// Count what a visitor starts against the site's flood limits.
    async fn limit(&self, v: &VisitorCtx, what: Start) -> Result<()> {
        self.floodgate.admit(self.store.as_ref(), &v.site_id, what, Some(&v.visitor_id), v.ip).await
    }

    /// Publish a stored message (not a retry's duplicate) and count it.
    async fn sent(&self, applied: Applied, from: Sender) -> Applied {
        if !applied.duplicate {
            self.publish_applied(&applied).await;
            self.messages.of(from).increment(1);
        }
        applied
    }

    /// The group a new conversation of the site lands in.
    async fn default_group(&self, site_id: &str) -> Result<Group> {
        let mut groups = self.store.groups(site_id).await?;
        groups.retain(|g| g.deleted_at.is_none());
        let at = groups.iter().position(|g| g.is_default).unwrap_or(0);
        if groups.is_empty() {
            return Err(Error::internal(anyhow::anyhow!("site {site_id} has no group")));
        }
        Ok(groups.swap_remove(at))
    }

    /// Whether a group of the site is open now under its hours (its own,
    /// else the site's; none: always open).
    pub async fn group_hours(&self, site_id: &str, group: &Group) -> Result<HoursState> {
        let site_hours = match &group.hours {
            Some(_) => None,
            None => {
                let site = self.store.site(site_id).await?.ok_or(Error::NotFound("site"))?;
                crate::admin::WidgetSettings::from_stored(&site.settings).hours
            }
        };
        let schedule = hours::effective(group.hours.as_ref(), site_hours.as_ref());
        Ok(hours::state_of(schedule, crate::store::now_ms()))
    }

    /// The hours of the group where the site's new chats land: what the
    /// widget shows (the team is in, or back at a time). `site_hours` are
    /// the site's, which the caller has read.
    pub async fn landing_hours(&self, site_id: &str, site_hours: Option<&hours::Schedule>) -> Result<HoursState> {
        let group = self.default_group(site_id).await?;
        let schedule = hours::effective(group.hours.as_ref(), site_hours);
        Ok(hours::state_of(schedule, crate::store::now_ms()))
    }

    /// Refuse with `Closed` when the group is outside its hours.
    async fn check_open(&self, site_id: &str, group: &Group) -> Result<()> {
        if self.group_hours(site_id, group).await?.open {
            return Ok(());
        }
        Err(Error::Closed(format!("{} is closed now (outside its business hours)", group.name).into()))
    }

    /// An offline message: its own conversation, seen by agents later.
    pub async fn leave_message(
        &self,
        v: &VisitorCtx,
        client_id: &str,
        name: Option<String>,
        email: Option<String>,
        body: &str,
    ) -> Result<Applied> {
        check_client_id(client_id)?;
        check_body(body)?;
        self.bans.check(&v.site_id, Some(&v.visitor_id), v.ip)?;
        let name = clean_field(name, 200, "name")?;
        let email = clean_field(email, 254, "email")?;
        if let Some(e) = &email
            && !crate::auth::valid_email(e)
        {
            return Err(Error::bad_request("email is not a valid address"));
        }
        // A retry after a lost ack must not create a second conversation.
        let existing = self
            .store
            .conversations(
                &v.site_id,
                ConversationFilter {
                    visitor_id: Some(v.visitor_id.clone()),
                    status: Some(ConversationStatus::Offline),
                    limit: 20,
                    ..Default::default()
                },
            )
            .await?;
        for c in &existing {
            let first = self.store.events_after(&c.id, 0, 1).await?;
            if first.first().and_then(|e| e.client_id.as_deref()) == Some(client_id) {
                let event = first.into_iter().next().expect("checked above");
                return Ok(Applied { event, conversation: c.clone(), previous_agent: None, duplicate: true });
            }
        }
        self.limit(v, Start::Message).await?;
        self.limit(v, Start::Conversation).await?;
        if name.is_some() || email.is_some() {
            let update = VisitorUpdate { name: name.clone(), email: email.clone(), ..Default::default() };
            self.store.update_visitor(&v.visitor_id, update).await?;
        }
        // The conversation, its message and the emails telling the site's
        // admins commit together or not at all (the outbox).
        let site = self.store.site(&v.site_id).await?.ok_or(Error::NotFound("site"))?;
        let visitor = self.store.visitor(&v.visitor_id).await?;
        let conversation = Conversation {
            id: crate::store::new_id(),
            site_id: v.site_id.clone(),
            visitor_id: v.visitor_id.clone(),
            group_id: self.default_group(&v.site_id).await?.id,
            agent_id: None,
            status: ConversationStatus::Offline,
            last_seq: 0,
            created_at: crate::store::now_ms(),
            assigned_at: None,
            closed_at: None,
        };
        let deliveries = if self.outbox.mail_enabled() {
            let payload = OfflinePayload {
                site_name: site.name.clone(),
                conversation_id: conversation.id.clone(),
                visitor_name: name.or_else(|| visitor.as_ref().and_then(|v| v.name.clone())),
                visitor_email: email.or_else(|| visitor.as_ref().and_then(|v| v.email.clone())),
                page_url: visitor.as_ref().and_then(|v| v.page_url.clone()),
                body: body.to_owned(),
                at: conversation.created_at,
            };
            let recipients = self.outbox.lead_recipients(&conversation).await?;
            self.outbox.offline_message_emails(&site, &conversation, &recipients, &payload)
        } else {
            Vec::new()
        };
        let queued = !deliveries.is_empty();
        let applied = self
            .store
            .leave_message(OfflineMessage {
                conversation,
                author: Author::visitor(&v.visitor_id),
                client_id: client_id.into(),
                body: body.into(),
                deliveries,
            })
            .await?;
        if queued {
            self.outbox.queued();
        }
        self.publish_applied(&applied).await;
        // Agents see offline messages as a conversation in their lists; tell
        // the connected ones now.
        let view = super::protocol::ConversationView::from(&applied.conversation);
        self.bus
            .publish(Envelope {
                site_id: v.site_id.clone(),
                audience: Audience::SiteAgents,
                event: None,
                payload: Payload::Frame {
                    text: encode(&serde_json::json!({"type": "offline_message", "conversation": view,
                        "body": body})),
                },
            })
            .await;
        Ok(applied)
    }

    /// An agent's message, only to a conversation assigned to them.
    pub async fn agent_send(
        &self,
        a: &AgentCtx,
        conv_id: &str,
        client_id: &str,
        body: &str,
        attachments: &[String],
    ) -> Result<Applied> {
        check_client_id(client_id)?;
        check_message_body(body, attachments)?;
        if conv_id.len() > 64 {
            return Err(Error::NotFound("conversation"));
        }
        // Same site and assigned to this agent, checked in the transaction.
        // A retry whose original was stored before a transfer is refused
        // too; the client still sees its message (by client_id) in the replay.
        let guard = Guard::AssignedAgent { site_id: a.site_id.clone(), agent_id: a.agent_id.clone() };
        let author = Author::agent(&a.agent_id);
        let attachments = crate::attachments::refs_for(self.store.as_ref(), &a.site_id, &author, attachments).await?;
        let message =
            Change::Message { author, client_id: client_id.into(), body: body.into(), attachments, integration: None };
        let applied = self.store.apply_guarded(conv_id, guard, message).await?;
        Ok(self.sent(applied, Sender::Agent).await)
    }

    /// An integration's message (an API token with `write`), in any open
    /// conversation of its site, whoever has it: authored by the token's
    /// maker, with the token's name in `data.integration`, which the widget
    /// and the console show in place of a person. The same store path as
    /// an agent's message, so it is durable, sequenced, sent live to the
    /// conversation's sockets and to webhooks, and a retry with the same
    /// `client_id` gets the original back.
    pub async fn integration_send(&self, a: &AgentCtx, conv_id: &str, client_id: &str, body: &str) -> Result<Applied> {
        let Some(token) = &a.api_token else {
            return Err(Error::bad_request("only an API token sends as an integration; send as agent"));
        };
        check_client_id(client_id)?;
        check_body(body)?;
        if conv_id.len() > 64 {
            return Err(Error::NotFound("conversation"));
        }
        let guard = Guard::Site { site_id: a.site_id.clone() };
        let message = Change::Message {
            author: Author::agent(&a.agent_id),
            client_id: client_id.into(),
            body: body.into(),
            attachments: Vec::new(),
            integration: Some(token.name.clone()),
        };
        let applied = self.store.apply_guarded(conv_id, guard, message).await?;
        Ok(self.sent(applied, Sender::Integration).await)
    }

    /// An agent's internal note in any conversation of their site, whatever
    /// its status and whoever has it. The conversation's agent hears it
    /// live (others, the author among them, read it with the history); its
    /// visitor's sockets are only told to step over its seq
    /// (`Payload::Unseen`), and never read it from the store.
    pub async fn agent_note(&self, a: &AgentCtx, conv_id: &str, client_id: &str, body: &str) -> Result<Applied> {
        check_client_id(client_id)?;
        check_body(body)?;
        if conv_id.len() > 64 {
            return Err(Error::NotFound("conversation"));
        }
        let guard = Guard::Site { site_id: a.site_id.clone() };
        let note = Change::Note { author: Author::agent(&a.agent_id), client_id: client_id.into(), body: body.into() };
        let applied = self.store.apply_guarded(conv_id, guard, note).await?;
        if !applied.duplicate {
            self.publish_note(&applied).await;
        }
        Ok(applied)
    }

    async fn publish_note(&self, applied: &Applied) {
        let conv = &applied.conversation;
        let event = Some((conv.id.clone(), applied.event.seq));
        let text = encode(&super::EventFrame(&applied.event));
        // Only sockets that follow the conversation live: a socket given
        // an event of a conversation new to it replays its whole history.
        if let Some(agent_id) = conv.agent_id.clone() {
            self.bus
                .publish(Envelope {
                    site_id: conv.site_id.clone(),
                    audience: Audience::Agent { agent_id },
                    event: event.clone(),
                    payload: Payload::Frame { text: text.clone() },
                })
                .await;
        }
        self.bus
            .publish(Envelope {
                site_id: conv.site_id.clone(),
                audience: Audience::Visitor { visitor_id: conv.visitor_id.clone() },
                event,
                payload: Payload::Unseen,
            })
            .await;
    }

    /// A visitor rates their own closed conversation, once (a retry with
    /// the same `client_id` gets the original back). The event reaches the
    /// visitor and the agent who had the chat.
    pub async fn rate(
        &self,
        v: &VisitorCtx,
        conv_id: &str,
        client_id: &str,
        rating: Rating,
        comment: Option<String>,
    ) -> Result<Applied> {
        check_client_id(client_id)?;
        let comment = comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
        if comment.as_ref().is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS) {
            return Err(Error::bad_request(format!("the comment is longer than {MAX_COMMENT_CHARS} characters")));
        }
        if conv_id.len() > 64 {
            return Err(Error::NotFound("conversation"));
        }
        let guard = Guard::Visitor { site_id: v.site_id.clone(), visitor_id: v.visitor_id.clone() };
        let change = Change::Rate { by: Author::visitor(&v.visitor_id), client_id: client_id.into(), rating, comment };
        let applied = self.store.apply_guarded(conv_id, guard, change).await?;
        if !applied.duplicate {
            self.publish_applied(&applied).await;
            metrics::counter!("holdfast_ratings_total", "rating" => rating.as_str()).increment(1);
        }
        Ok(applied)
    }

    pub async fn read(&self, peer: &Peer, conv_id: &str, up_to: i64) -> Result<Applied> {
        let conv = self.conversation_for(peer, conv_id).await?;
        self.apply(&conv.id, Change::Read { reader: peer.author(), up_to }).await
    }

    pub async fn typing(&self, peer: &Peer, conv_id: &str, on: bool) -> Result<()> {
        let conv = self.conversation_for(peer, conv_id).await?;
        let author = peer.author();
        let frame =
            ServerFrame::Typing { conv: conv.id.clone(), from: AuthorView { kind: author.kind, id: author.id }, on };
        let audience = Audience::Conversation {
            visitor_id: conv.visitor_id.clone(),
            agent_ids: conv.agent_id.into_iter().collect(),
        };
        self.publish_frame(&conv.site_id, audience, &frame).await;
        Ok(())
    }

    // ----- conversation lifecycle ------------------------------------------

    pub async fn claim(&self, a: &AgentCtx, conv_id: &str) -> Result<Applied> {
        let conv = self.conversation_for(&Peer::Agent(a.clone()), conv_id).await?;
        let agent = self.store.agent(&a.agent_id).await?.ok_or_else(|| Error::unauthorized("agent not found"))?;
        let applied = self
            .apply(
                &conv.id,
                Change::Assign {
                    agent_id: agent.id.clone(),
                    agent_name: agent.name.clone(),
                    by: Author::agent(&a.agent_id),
                    limit: None,
                    only_if_unassigned: false,
                },
            )
            .await?;
        self.capacity_changed(&conv.site_id).await;
        Ok(applied)
    }

    /// To a named agent of the same site, or back to a group's queue.
    pub async fn transfer(
        &self,
        a: &AgentCtx,
        conv_id: &str,
        to_agent: Option<&str>,
        to_group: Option<&str>,
    ) -> Result<Applied> {
        let conv = self.conversation_for(&Peer::Agent(a.clone()), conv_id).await?;
        if conv.agent_id.as_deref() != Some(&a.agent_id) && !a.role.is_admin() && a.api_token.is_none() {
            return Err(Error::forbidden("only the assigned agent or an admin can transfer"));
        }
        let by = Author::agent(&a.agent_id);
        let applied = match (to_agent, to_group) {
            (Some(target), None) => {
                let agent = self
                    .store
                    .agent(target)
                    .await?
                    // The status probe takes no chats.
                    .filter(|t| t.site_id == conv.site_id && t.active && t.role != Role::Probe)
                    .ok_or(Error::NotFound("agent"))?;
                let change = Change::Assign {
                    agent_id: agent.id.clone(),
                    agent_name: agent.name.clone(),
                    by,
                    limit: None,
                    only_if_unassigned: false,
                };
                self.apply(&conv.id, change).await?
            }
            (None, Some(group_id)) => {
                let group = self
                    .store
                    .group(group_id)
                    .await?
                    .filter(|g| g.site_id == conv.site_id)
                    .ok_or(Error::NotFound("group"))?;
                // A deleted group's queue is the site's default queue now
                // ("back to the queue" of a chat that still names it).
                let group = if group.deleted_at.is_some() { self.default_group(&conv.site_id).await? } else { group };
                // Nobody would be there to take it: never queue to a closed group.
                self.check_open(&conv.site_id, &group).await?;
                // Routed by the drain below, like any queued chat, but never
                // straight back to the agent who let it go.
                if let Some(agent) = &conv.agent_id {
                    let site = self.site_routing(&conv.site_id);
                    let mut released = site.released.lock().unwrap_or_else(|p| p.into_inner());
                    released.retain(|_, (_, at)| at.elapsed() < RELEASED_FOR);
                    released.insert(conv.id.clone(), (agent.clone(), Instant::now()));
                }
                self.apply(&conv.id, Change::TransferToGroup { group_id: group.id, group_name: group.name, by }).await?
            }
            _ => return Err(Error::bad_request("give exactly one of to_agent and to_group")),
        };
        self.capacity_changed(&conv.site_id).await;
        Ok(applied)
    }

    /// An admin deletes a group of their site (a soft delete: what names it
    /// keeps its name). Its members leave it, and the chats queued for it
    /// move to the site's default queue, each with a `transferred` event,
    /// then routing runs. Returns the group as it was and the chats moved.
    pub async fn delete_group(&self, admin: &AgentCtx, group_id: &str) -> Result<(Group, Vec<String>)> {
        if !admin.role.is_admin() {
            return Err(Error::forbidden("admins only"));
        }
        let group = match group_id.len() <= 64 {
            true => self.store.group(group_id).await?,
            false => None,
        }
        .filter(|g| g.site_id == admin.site_id && g.deleted_at.is_none())
        .ok_or(Error::NotFound("group"))?;
        if !self.store.delete_group(&admin.site_id, &group.id, crate::store::now_ms()).await? {
            return Err(Error::NotFound("group"));
        }
        let default = self.default_group(&admin.site_id).await?;
        let queued = ConversationFilter {
            status: Some(ConversationStatus::Queued),
            group_id: Some(group.id.clone()),
            limit: 1000,
            ..Default::default()
        };
        let mut moved = Vec::new();
        // Read after the mark: a transfer to the group from now on goes to
        // the default queue instead (`transfer`).
        for conv in self.store.conversations(&admin.site_id, queued).await? {
            let change = Change::TransferToGroup {
                group_id: default.id.clone(),
                group_name: default.name.clone(),
                by: Author::agent(&admin.agent_id),
            };
            match self.apply(&conv.id, change).await {
                Ok(_) => moved.push(conv.id),
                // Claimed or closed meanwhile: no longer queued for it.
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.capacity_changed(&admin.site_id).await;
        Ok((group, moved))
    }

    pub async fn close(&self, peer: &Peer, conv_id: &str) -> Result<Applied> {
        let conv = self.conversation_for(peer, conv_id).await?;
        if let Peer::Agent(a) = peer
            && conv.agent_id.as_deref() != Some(&a.agent_id)
            && !a.role.is_admin()
            && a.api_token.is_none()
            && conv.status == ConversationStatus::Active
        {
            return Err(Error::forbidden("only the assigned agent or an admin can close"));
        }
        let applied = self.apply(&conv.id, Change::Close { by: peer.author() }).await?;
        self.capacity_changed(&conv.site_id).await;
        Ok(applied)
    }

    /// End every open conversation of a visitor (they were banned), as
    /// `by`, whoever was assigned.
    pub async fn end_visitor_chats(&self, site_id: &str, visitor_id: &str, by: Author) -> Result<()> {
        let v = VisitorCtx { visitor_id: visitor_id.to_owned(), site_id: site_id.to_owned(), ip: None };
        for conv in self.visitor_open_conversations(&v).await? {
            self.apply(&conv.id, Change::Close { by: by.clone() }).await?;
        }
        self.capacity_changed(site_id).await;
        Ok(())
    }

    pub async fn set_availability(&self, a: &AgentCtx, availability: Availability) -> Result<()> {
        let agent = self.store.agent(&a.agent_id).await?.ok_or_else(|| Error::unauthorized("agent not found"))?;
        let photo_url = agent.photo_url();
        let frame = ServerFrame::Availability {
            agent: AgentView { id: agent.id.clone(), name: agent.name, availability, photo_url },
        };
        if agent.availability == availability {
            // Nothing changed (a client re-asserting after a resume): answer
            // the agent's own sockets only; no write, no site-wide broadcast.
            self.publish_frame(&a.site_id, Audience::Agent { agent_id: agent.id }, &frame).await;
            return Ok(());
        }
        self.store.set_availability(&a.agent_id, availability).await?;
        self.agents_cache.invalidate(&a.site_id);
        // Before the agent hears the change: a visitor arriving after it
        // must be told someone is there.
        self.online_cache.invalidate(&a.site_id);
        self.site_routing(&a.site_id).forget_candidates(None);
        self.publish_frame(&a.site_id, Audience::SiteAgents, &frame).await;
        self.presence_changed(&a.site_id).await;
        Ok(())
    }

    /// The site whose widget key this is, read at most once per
    /// `WIDGET_SITE_TTL` however many sessions ask.
    pub async fn site_by_widget_key(&self, widget_key: &str) -> Result<Option<Site>> {
        let fresh_from =
            tokio::time::Instant::now().checked_sub(WIDGET_SITE_TTL).unwrap_or_else(tokio::time::Instant::now);
        let site = self.widget_sites.get(widget_key, fresh_from, || self.store.site_by_widget_key(widget_key)).await?;
        if site.is_none() {
            self.widget_sites.forget(widget_key);
        }
        Ok(site)
    }

    /// A site's name or settings changed: new sessions on this node read it
    /// again.
    pub async fn site_changed(&self, site_id: &str) {
        if let Ok(Some(site)) = self.store.site(site_id).await {
            self.widget_sites.invalidate(&site.widget_key);
        }
    }

    /// An agent's photo changed: every console of the site hears it (an
    /// `availability` frame with the agent as they are now), and the next
    /// welcome lists it.
    pub async fn agent_photo_changed(&self, site_id: &str, agent_id: &str) -> Result<()> {
        let agent = self.store.agent(agent_id).await?.ok_or(Error::NotFound("agent"))?;
        self.agents_cache.invalidate(site_id);
        let photo_url = agent.photo_url();
        let view = AgentView { id: agent.id, name: agent.name, availability: agent.availability, photo_url };
        self.publish_frame(site_id, Audience::SiteAgents, &ServerFrame::Availability { agent: view }).await;
        Ok(())
    }

    /// The site's active agents with their availability, cached briefly:
    /// every agent's welcome carries the list, and a reconnect storm must
    /// not read it thousands of times.
    pub async fn site_agents(&self, site_id: &str) -> Result<SiteAgents> {
        let fresh_from =
            tokio::time::Instant::now().checked_sub(ONLINE_CACHE_TTL).unwrap_or_else(tokio::time::Instant::now);
        self.agents_cache
            .get(site_id, fresh_from, || async {
                let agents = self.store.agents(site_id).await?;
                let views = agents.into_iter().filter(|x| x.active).map(|x| AgentView {
                    photo_url: x.photo_url(),
                    id: x.id,
                    name: x.name,
                    availability: x.availability,
                });
                let list: Vec<AgentView> = views.collect();
                let json = serde_json::value::to_raw_value(&list).map_err(Error::internal)?;
                let digest = Sha256::digest(json.get().as_bytes());
                let version = Arc::from(format!("a{}", hex::encode(&digest[..8])));
                Ok(SiteAgents { list: Arc::new(list), json: Arc::from(json), version })
            })
            .await
    }

    /// An agent came, went (past the grace period) or changed availability:
    /// visitors may need to know, and queued chats may now be routable.
    /// Coalesced like queue drains: a thousand agents connecting at once
    /// cause a few refreshes, not a thousand.
    pub async fn presence_changed(&self, site_id: &str) {
        self.online_cache.invalidate(site_id);
        self.site_routing(site_id).presence_dirty.store(true, Ordering::Relaxed);
        self.after_queue_change(site_id).await;
    }

    async fn refresh_presence(&self, site_id: &str) {
        self.online_cache.invalidate(site_id);
        if let Ok(now) = self.agents_online(site_id).await {
            let before =
                self.online_announced.lock().unwrap_or_else(|p| p.into_inner()).insert(site_id.to_owned(), now);
            if before != Some(now) {
                self.publish_frame(site_id, Audience::SiteVisitors, &ServerFrame::AgentsOnline { online: now }).await;
            }
        }
    }

    // ----- routing ---------------------------------------------------------

    /// Whether any agent of the site is online and present. Cached briefly
    /// and computed once at a time per site: every visitor connect asks,
    /// and a reconnect storm must not walk a 3,000-agent list per socket.
    pub async fn agents_online(&self, site_id: &str) -> Result<bool> {
        let fresh_from =
            tokio::time::Instant::now().checked_sub(ONLINE_CACHE_TTL).unwrap_or_else(tokio::time::Instant::now);
        self.online_cache
            .get(site_id, fresh_from, || async {
                let agents = self.site_agents(site_id).await?;
                let online = agents.list.iter().filter(|a| a.availability == Availability::Online);
                Ok(self.hub.with_presence(|present| online.into_iter().any(|a| present(&a.id))))
            })
            .await
    }

    /// Drain again each site whose last drain failed. Called every
    /// `DRAIN_RETRY` by the node.
    pub async fn retry_failed_drains(&self) {
        let sites: Vec<String> = self.undrained.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        for site_id in sites {
            self.after_queue_change(&site_id).await;
        }
    }

    fn site_routing(&self, site_id: &str) -> Arc<SiteRouting> {
        self.routing.lock().unwrap_or_else(|p| p.into_inner()).entry(site_id.to_owned()).or_default().clone()
    }

    /// Try to give a queued conversation to an agent; if nobody can take
    /// it, it stays queued (first come, first served) and the queue is
    /// announced.
    pub async fn route(&self, conv: &Conversation) -> Result<()> {
        self.after_queue_change(&conv.site_id).await;
        Ok(())
    }

    /// A chat left an agent or was handed to one by a person (close,
    /// transfer, claim): the planned candidates are stale, and queued chats
    /// may now fit somewhere.
    async fn capacity_changed(&self, site_id: &str) {
        self.site_routing(site_id).forget_candidates(None);
        self.after_queue_change(site_id).await;
    }

    /// Route what can be routed from the site's queue, then tell agents the
    /// queue and each waiting visitor their position. Coalesced per site: if
    /// a drain is running, it is told to go round once more instead of a
    /// second drain queuing behind it. A drain that fails is tried again by
    /// [`Chat::retry_failed_drains`].
    pub async fn after_queue_change(&self, site_id: &str) {
        let site = self.site_routing(site_id);
        site.dirty.store(true, Ordering::Release);
        loop {
            {
                let Ok(_draining) = site.lock.try_lock() else { return };
                while site.dirty.swap(false, Ordering::AcqRel) {
                    if site.presence_dirty.swap(false, Ordering::AcqRel) {
                        self.refresh_presence(site_id).await;
                    }
                    let drained = self.drain_queue(site_id, &site).await;
                    let mut undrained = self.undrained.lock().unwrap_or_else(|p| p.into_inner());
                    match drained {
                        Ok(()) => drop(undrained.remove(site_id)),
                        // Said once per outage, not every retry.
                        Err(err) if undrained.insert(site_id.to_owned()) => {
                            tracing::warn!(error = %err, site_id, "queue drain failed; trying again")
                        }
                        Err(err) => tracing::debug!(error = %err, site_id, "queue drain failed again"),
                    }
                }
            }
            // A change that arrived as the lock was released must not be lost.
            if !site.dirty.load(Ordering::Acquire) {
                return;
            }
        }
    }

    async fn drain_queue(&self, site_id: &str, site: &SiteRouting) -> Result<()> {
        let queue = self.store.queue(site_id).await?;
        // Plan the whole queue against one read of each group's agents,
        // updating the local picture as chats are handed out, then apply the
        // assignments together so they share group commits. The store
        // re-checks every agent's limit in its transaction; a plan that lost
        // a race is simply routed again on the next round.
        let generation = site.candidates_gen.load(Ordering::Acquire);
        let mut candidates: HashMap<String, (Instant, Vec<RoutingCandidate>, routing::Planner)> = HashMap::new();
        let mut plan = Vec::new();
        let mut waiting = Vec::with_capacity(queue.len());
        let now = crate::store::now_ms();
        for conv in queue {
            if !candidates.contains_key(&conv.group_id) {
                let cached = site.candidates.lock().unwrap_or_else(|p| p.into_inner()).get(&conv.group_id).cloned();
                let (read_at, group) = match cached {
                    Some((at, group)) if at.elapsed() < CANDIDATES_TTL => (at, group),
                    _ => (Instant::now(), self.store.routing_candidates(&conv.group_id).await?),
                };
                let planner = self.hub.with_presence(|present| routing::Planner::new(&group, present));
                candidates.insert(conv.group_id.clone(), (read_at, group, planner));
            }
            let Some((_, group, planner)) = candidates.get_mut(&conv.group_id) else {
                waiting.push(conv);
                continue;
            };
            match planner.pick(group, now, site.released_by(&conv.id).as_deref()) {
                Some(i) => {
                    let pick = &group[i];
                    // Least busy holds across nodes: the store refuses the
                    // chat if the agent holds more than this plan counted
                    // (another node handed them one meanwhile), and the
                    // chat is planned again against a fresh read. The plan
                    // counts this chat, and never past the agent's limit.
                    let level = pick.active_chats.min(pick.chat_limit);
                    let change = Change::Assign {
                        agent_id: pick.agent_id.clone(),
                        agent_name: pick.name.clone(),
                        by: Author::system(),
                        limit: Some(level),
                        only_if_unassigned: true,
                    };
                    plan.push(((conv, change), level));
                }
                None => waiting.push(conv),
            }
        }
        {
            // The picture as planned (this node's assignments counted) serves
            // the next drains; a refusal below forgets it.
            let mut cached = site.candidates.lock().unwrap_or_else(|p| p.into_inner());
            if site.candidates_gen.load(Ordering::Acquire) == generation {
                cached.extend(candidates.into_iter().map(|(g, (at, group, _))| (g, (at, group))));
            }
        }
        // Each pick's future owns what it applies, so it borrows no pick.
        let (applied, held) = routing::apply_by_level(plan, |(conv, change): &(Conversation, Change)| {
            let (id, change) = (conv.id.clone(), change.clone());
            async move { self.apply(&id, change).await }
        })
        .await;
        // Every outcome is looked at, whatever failed: the plan counted each
        // chat on its agent, and a chat that was not handed out must not stay
        // counted, nor be left out of the queue announced below.
        let mut failed = None;
        for ((conv, _), outcome) in applied {
            match outcome {
                Ok(_) => {
                    metrics::counter!("holdfast_routed_total").increment(1);
                    site.released.lock().unwrap_or_else(|p| p.into_inner()).remove(&conv.id);
                }
                Err(e) => {
                    site.forget_candidates(Some(&conv.group_id));
                    match e {
                        // Raced with another router: look again next round.
                        Error::Conflict(_) => site.dirty.store(true, Ordering::Release),
                        e => failed = failed.or(Some(e)),
                    }
                    waiting.push(conv);
                }
            }
        }
        waiting.extend(held.into_iter().map(|(conv, _)| conv));
        waiting.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let entries = queue_entries(&waiting);
        // Announce only a queue that changed: a reconnect storm must not
        // become a broadcast storm.
        metrics::gauge!("holdfast_queue_waiting").set(entries.len() as f64);
        let shape: Vec<(String, usize)> = entries.iter().map(|e| (e.conv.clone(), e.position)).collect();
        let before = {
            let mut last = site.last_queue.lock().unwrap_or_else(|p| p.into_inner());
            if *last == shape {
                return failed.map_or(Ok(()), Err);
            }
            std::mem::replace(&mut *last, shape)
        };
        // Each waiting visitor hears of their place only when it changed.
        let before: HashMap<String, usize> = before.into_iter().collect();
        for e in entries.iter().filter(|e| before.get(&e.conv) != Some(&e.position)) {
            let frame = ServerFrame::QueuePosition { conv: e.conv.clone(), position: e.position };
            self.publish_frame(site_id, Audience::Visitor { visitor_id: e.visitor_id.clone() }, &frame).await;
        }
        self.publish_frame(site_id, Audience::SiteAgents, &ServerFrame::Queue { queue: entries }).await;
        failed.map_or(Ok(()), Err)
    }

    /// The site's queue as agents see it (for `welcome`), from a read that
    /// began at or after `fresh_from`: a socket passes the moment it
    /// registered with the hub, so any later change reaches it live and the
    /// snapshot is never older than what it will hear. A storm of welcomes
    /// shares one read per site at a time.
    pub async fn queue_snapshot(
        &self,
        site_id: &str,
        fresh_from: tokio::time::Instant,
    ) -> Result<Arc<Vec<QueueEntry>>> {
        self.queue_cache
            .get(site_id, fresh_from, || async { Ok(Arc::new(queue_entries(&self.store.queue(site_id).await?))) })
            .await
    }
}

/// Routing state of one site on this node.
#[derive(Default)]
struct SiteRouting {
    /// Held by the one task draining the site's queue.
    lock: tokio::sync::Mutex<()>,
    /// Something changed since the last drain began.
    dirty: AtomicBool,
    /// Agent presence changed: recompute `agents_online` on the next drain.
    presence_dirty: AtomicBool,
    /// The queue last announced, to skip announcing an unchanged one.
    last_queue: Mutex<Vec<(String, usize)>>,
    /// Each group's routing candidates as last read, kept up to date with
    /// this node's own assignments for up to `CANDIDATES_TTL`: routing a
    /// new chat must not read every agent of a 3,000-agent group. Forgotten
    /// when capacity frees up here (close, transfer, claim, availability)
    /// and when the store refuses a plan (another node filled an agent).
    candidates: Mutex<HashMap<String, (Instant, Vec<RoutingCandidate>)>>,
    /// Bumped by every forget, so a drain that read before it does not put
    /// its older picture back.
    candidates_gen: std::sync::atomic::AtomicU64,
    /// Chats an agent sent back to a group's queue, by conversation: the
    /// agent who let it go, and when. Routing skips that agent for that
    /// chat for `RELEASED_FOR` (kept on this node, where the transfer's own
    /// drain runs; a later drain elsewhere may hand it back, which by then
    /// is no longer "straight back").
    released: Mutex<HashMap<String, (String, Instant)>>,
}

/// How often a site whose queue drain failed is drained again.
pub const DRAIN_RETRY: Duration = Duration::from_secs(1);
/// How long a group's routing candidates may be planned against.
const CANDIDATES_TTL: Duration = Duration::from_secs(1);
/// How long a chat sent back to the queue is kept from the agent who sent
/// it: long enough for a colleague to take it; if nobody does, it may come
/// back to them.
const RELEASED_FOR: Duration = Duration::from_secs(300);

impl SiteRouting {
    /// The agent who let `conv_id` go, while that still counts.
    fn released_by(&self, conv_id: &str) -> Option<String> {
        let released = self.released.lock().unwrap_or_else(|p| p.into_inner());
        released.get(conv_id).filter(|(_, at)| at.elapsed() < RELEASED_FOR).map(|(agent, _)| agent.clone())
    }

    fn forget_candidates(&self, group_id: Option<&str>) {
        let mut cached = self.candidates.lock().unwrap_or_else(|p| p.into_inner());
        self.candidates_gen.fetch_add(1, Ordering::AcqRel);
        match group_id {
            Some(g) => drop(cached.remove(g)),
            None => cached.clear(),
        }
    }
}

/// Queue entries in order, each with its position within its own group
/// (1 = next to be served).
fn queue_entries(waiting: &[Conversation]) -> Vec<QueueEntry> {
    let mut per_group: HashMap<&str, usize> = HashMap::new();
    waiting
        .iter()
        .map(|c| {
            let position = per_group.entry(c.group_id.as_str()).or_default();
            *position += 1;
            QueueEntry {
                conv: c.id.clone(),
                visitor_id: c.visitor_id.clone(),
                group_id: c.group_id.clone(),
                position: *position,
                waiting_since: c.created_at,
            }
        })
        .collect()
}
