//! Durable state behind one small interface. `store/` is the only module
//! that knows SQL; chat and auth logic see the [`Store`] trait and the plain
//! records below. The SQLite implementation ([`sqlite::SqliteStore`]) is the
//! default; [`postgres::PostgresStore`] is the store of a cluster.
//!
//! State changes that clients must see in order (a message, an assignment,
//! a transfer, a close, a read receipt) go through [`Store::apply`], which
//! changes the conversation and appends its event under the conversation's
//! next sequence number in one transaction.

pub mod api_tokens;
pub mod attachments;
pub mod audit;
pub mod bans;
pub mod erasure;
pub mod greetings;
pub mod idempotency;
pub mod invitations;
pub mod missed;
mod open_chats;
pub mod outbox;
pub mod postgres;
mod postgres_writer;
mod report_days;
pub mod reports;
pub mod retention;
mod rules;
pub mod search;
pub mod seed;
pub mod sqlite;
mod sqlite_readers;
mod sqlite_writer;
pub mod webhooks;

/// The status page's records and store (the `holdfast-status` crate's
/// `store`), where they were before it was a crate.
pub use holdfast_status::store as status;
/// The status page's one store over sqlx, for SQLite and PostgreSQL.
pub use holdfast_status::store::sql as status_sql;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Values that are both stored and sent on the wire.
pub use holdfast_protocol::{AuthorKind, Availability, ConversationStatus, Rating};

/// A switch that makes a store fail or hang on purpose, so rehearsals and
/// tests can show what happens when the database is down or slow. Off
/// unless the server was started with fault injection enabled.
#[derive(Debug, Default)]
pub struct Faults {
    mode: std::sync::atomic::AtomicU8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultMode {
    /// Work normally.
    Ok,
    /// Every call fails at once, as with a lost connection.
    Fail,
    /// Every call waits 30 s and then fails, as with an overloaded database.
    Hang,
}

impl Faults {
    pub fn set(&self, mode: FaultMode) {
        self.mode.store(mode as u8, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn mode(&self) -> FaultMode {
        match self.mode.load(std::sync::atomic::Ordering::Relaxed) {
            1 => FaultMode::Fail,
            2 => FaultMode::Hang,
            _ => FaultMode::Ok,
        }
    }

    /// Called by a store before each operation.
    pub async fn check(&self) -> Result<()> {
        match self.mode() {
            FaultMode::Ok => Ok(()),
            FaultMode::Fail => Err(crate::error::Error::Store(anyhow::anyhow!("injected fault: store down"))),
            FaultMode::Hang => {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                Err(crate::error::Error::Store(anyhow::anyhow!("injected fault: store hung")))
            }
        }
    }
}

/// How long a message's `client_id` is remembered (docs/protocol.md §5): a
/// retry is answered with the original event while that message is one of
/// its conversation's `REMEMBERED_MESSAGES` most recent messages and was
/// stored less than [`REMEMBERED_FOR_MS`] ago. Later, the SQLite store takes
/// it for a new message; PostgreSQL, which keeps a unique index on the
/// key, still finds it. A bound on the count keeps what a message costs
/// the SQLite writer from growing with the conversation's history (a cold
/// conversation reads back this many keys, however long it is); a bound
/// on time is one a client can check with its own clock.
pub const REMEMBERED_MESSAGES: usize = 1000;
/// See [`REMEMBERED_MESSAGES`]: 24 hours.
pub const REMEMBERED_FOR_MS: i64 = 24 * 60 * 60 * 1000;

/// The store's one time format (Unix milliseconds) and its ids (UUID v7).
pub use holdfast_core::{new_id, now_ms};

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: String,
    pub name: String,
    /// Public key the widget embeds; identifies the site, grants nothing else.
    pub widget_key: String,
    /// Widget appearance and behaviour, free-form JSON owned by the admin UI.
    pub settings: serde_json::Value,
    pub created_at: i64,
}

/// What an agent may do. `admin` and `operator` are both admins of their
/// site; the operator also runs the installation (the status page, sites).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Agent,
    /// Whoever runs the installation: an admin of their own site who also
    /// owns the status page (incidents, monitors, subscribers) and makes
    /// sites. The first-run admin is one; more are made by the CLI or by
    /// an operator, never by a site's admin.
    Operator,
    /// The status page's login probe: it logs in and opens the agent socket
    /// like an agent, and can do nothing else. Never listed, never routed
    /// to, never given to a person (Holdfast creates the one probe account
    /// itself; admins cannot create, see or change it).
    Probe,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Probe => "probe",
        }
    }

    /// Whether this role administers its site (admins and operators).
    pub fn is_admin(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "agent" => Some(Role::Agent),
            "operator" => Some(Role::Operator),
            "probe" => Some(Role::Probe),
            _ => None,
        }
    }
}

/// An agent's account as stored, password hash included: never sent as it
/// is (not `Serialize`); the API shows `auth::AgentProfile`.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub site_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    /// How many active conversations routing may give this agent at once.
    pub chat_limit: i64,
    /// What the agent chose; routing also needs them to be connected.
    pub availability: Availability,
    /// Deactivated agents cannot log in and are never routed to.
    pub active: bool,
    pub created_at: i64,
    /// Their choice about lead emails (offline messages, missed chats);
    /// `None` is the role's default: admins yes, agents no.
    pub lead_emails: Option<bool>,
    /// When their photo (`agent_photos`) was set; `None`: they have none.
    /// Versions the photo's URL, so a new one is never a cached old one.
    pub photo_at: Option<i64>,
}

/// A statement written for both backends (`$n` parameters, row locks) as
/// SQLite reads it: `?n`, and no `FOR UPDATE` (its one writer already
/// excludes the others).
pub(super) fn lite(sql: &str) -> String {
    sql.replace('$', "?").replace(" FOR UPDATE", "")
}

/// Where anyone (the widget's visitors too) loads an agent's photo set at
/// `at`.
pub fn agent_photo_url(agent_id: &str, at: i64) -> String {
    format!("/api/v1/agents/{agent_id}/photo?v={at}")
}

/// An agent's photo as stored: a raster image whose type was sniffed.
#[derive(Debug, Clone)]
pub struct AgentPhoto {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Agent {
    /// Their photo's URL, if they have one.
    pub fn photo_url(&self) -> Option<String> {
        self.photo_at.map(|at| agent_photo_url(&self.id, at))
    }

    /// Whether the site's lead emails go to them.
    pub fn gets_lead_emails(&self) -> bool {
        self.active && self.role != Role::Probe && self.lead_emails.unwrap_or(self.role.is_admin())
    }
}

pub struct NewAgent<'a> {
    pub site_id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
    pub chat_limit: i64,
}

impl NewAgent<'_> {
    /// The agent as stored: a new id, offline, active.
    pub fn into_agent(self) -> Agent {
        Agent {
            id: new_id(),
            site_id: self.site_id.to_owned(),
            email: self.email.to_owned(),
            name: self.name.to_owned(),
            role: self.role,
            password_hash: self.password_hash.to_owned(),
            chat_limit: self.chat_limit,
            availability: Availability::Offline,
            active: true,
            created_at: now_ms(),
            lead_emails: None,
            photo_at: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub id: String,
    pub site_id: String,
    pub name: String,
    /// New conversations without a requested group land here.
    pub is_default: bool,
    /// An address that gets the group's leads too (a shared inbox).
    pub email: Option<String>,
    /// The group's own business hours; `None` keeps the site's
    /// (`hours::effective`). A stored value that no longer parses reads as
    /// none.
    pub hours: Option<crate::hours::Schedule>,
    /// When an admin deleted it (`Store::delete_group`): kept for the
    /// conversations and reports that name it, never listed, offered or
    /// routed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
}

/// A group's hours as stored: JSON text, or NULL (`Some(None)`).
pub(crate) fn hours_to_stored(hours: Option<Option<&crate::hours::Schedule>>) -> Result<Option<Option<String>>> {
    hours.map(|h| h.map(serde_json::to_string).transpose().map_err(Error::internal)).transpose()
}

impl Group {
    /// The stored JSON of a group's hours, read leniently.
    pub(crate) fn hours_from_stored(text: Option<String>) -> Option<crate::hours::Schedule> {
        text.and_then(|t| serde_json::from_str(&t).ok())
    }
}

/// An agent as routing sees it: who, how loaded, when last given a chat.
#[derive(Debug, Clone)]
pub struct RoutingCandidate {
    pub agent_id: String,
    pub name: String,
    pub availability: Availability,
    pub active_chats: i64,
    pub chat_limit: i64,
    /// Used to break ties round robin: the least recently assigned wins.
    pub last_assigned_at: i64,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub agent_id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    /// Absolute end of the session; renewal never moves it.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Visitor {
    pub id: String,
    pub site_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub page_url: Option<String>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// Visitor fields a page load or the pre-chat form may update; `None`
/// leaves the stored value alone.
#[derive(Debug, Clone, Default)]
pub struct VisitorUpdate {
    pub name: Option<String>,
    pub email: Option<String>,
    pub page_url: Option<String>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    /// The client address the visitor came from (`abuse::client_ip`):
    /// stored as `visitors.last_ip`, never part of [`Visitor`], so no view
    /// shows it; only an agent's "ban their address too" reads it.
    pub ip: Option<String>,
    /// An agent's or integration's edit, not the visitor's visit:
    /// `last_seen` (which retention reads) stays as it was.
    pub not_seen: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    pub id: String,
    pub site_id: String,
    pub visitor_id: String,
    pub group_id: String,
    pub agent_id: Option<String>,
    pub status: ConversationStatus,
    /// Sequence number of the newest event; the next one gets `last_seq + 1`.
    pub last_seq: i64,
    pub created_at: i64,
    pub assigned_at: Option<i64>,
    pub closed_at: Option<i64>,
}

/// Who did something: a visitor, an agent, or Holdfast itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Author {
    pub kind: AuthorKind,
    pub id: Option<String>,
}

impl Author {
    pub fn agent(id: &str) -> Self {
        Author { kind: AuthorKind::Agent, id: Some(id.to_owned()) }
    }
    pub fn visitor(id: &str) -> Self {
        Author { kind: AuthorKind::Visitor, id: Some(id.to_owned()) }
    }
    pub fn system() -> Self {
        Author { kind: AuthorKind::System, id: None }
    }
}

/// One durable event of a conversation, as stored; serialized as a
/// webhook shows it (`store::webhooks`), without its conversation's id,
/// which the webhook carries beside it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    #[serde(skip)]
    pub conversation_id: String,
    pub seq: i64,
    pub id: String,
    /// `message`, `note` (agents only), `assigned`, `transferred`,
    /// `closed`, `read`, `rating`.
    pub kind: String,
    pub author: Author,
    pub client_id: Option<String>,
    pub body: Option<String>,
    /// Kind-specific detail (e.g. the agent assigned), as JSON.
    pub data: serde_json::Value,
    pub created_at: i64,
}

/// A state change of a conversation together with the event that records
/// it. Applied atomically: the change and the event commit together or not
/// at all.
#[derive(Debug, Clone)]
pub enum Change {
    /// Append a message. Idempotent on (author, client_id) within the
    /// window ([`REMEMBERED_MESSAGES`], [`REMEMBERED_FOR_MS`]): a retry
    /// returns the original event.
    Message {
        author: Author,
        client_id: String,
        body: String,
        /// Uploads the message carries: bound to the conversation in the
        /// message's transaction (refused if another conversation took
        /// one), and recorded in the event's `data.attachments`.
        attachments: Vec<attachments::AttachmentRef>,
        /// The API token's name when an integration sends it (the author
        /// is then the token's maker): recorded in `data.integration`, which
        /// the widget and the console show in place of a person.
        integration: Option<String>,
    },
    /// Give a conversation to an agent. With `limit`, only if the agent has
    /// fewer active conversations than that (routing passes the count its
    /// plan gave the agent, this chat included, so a plan made on a stale
    /// picture fails); without, always (a claim or a transfer to a named
    /// agent). Fails with `Conflict` if
    /// the conversation is not open, or already has this agent.
    Assign {
        agent_id: String,
        agent_name: String,
        by: Author,
        limit: Option<i64>,
        only_if_unassigned: bool,
    },
    /// Put a conversation back in the queue of a group.
    TransferToGroup {
        group_id: String,
        group_name: String,
        by: Author,
    },
    Close {
        by: Author,
    },
    /// An agent's answer to an offline message, stored as a message and
    /// emailed to the visitor (`email`, queued in the same transaction).
    /// Idempotent on (author, client_id): a retry returns the original and
    /// queues nothing.
    Reply {
        author: Author,
        client_id: String,
        body: String,
        email: Box<outbox::NewDelivery>,
    },
    /// An agent's internal note (event kind `note`): for agents only, in
    /// a conversation of any status. Idempotent on (author, client_id): a
    /// retry returns the original.
    Note {
        author: Author,
        client_id: String,
        body: String,
    },
    /// A read receipt: `reader` has seen everything up to `up_to`.
    Read {
        reader: Author,
        up_to: i64,
    },
    /// The visitor's rating of a closed conversation: at most one per
    /// conversation, also kept in `ratings` for reports. A retry with the
    /// same `(by, client_id)` returns the original event; any other second
    /// rating is a `Conflict`.
    Rate {
        by: Author,
        client_id: String,
        rating: Rating,
        /// Trimmed, never empty (the caller makes an empty one `None`).
        comment: Option<String>,
    },
}

/// A condition on the conversation that must hold when a change is applied
/// (checked in the same transaction where the store can), so an authority
/// check costs no separate read and cannot race a transfer.
#[derive(Debug, Clone)]
pub enum Guard {
    /// The conversation belongs to this visitor of this site.
    Visitor { site_id: String, visitor_id: String },
    /// The conversation is of this site and assigned to this agent.
    AssignedAgent { site_id: String, agent_id: String },
    /// The conversation is of this site (any agent of it may act).
    Site { site_id: String },
}

impl Guard {
    pub fn check(&self, conv: &Conversation) -> Result<()> {
        match self {
            Guard::Visitor { site_id, visitor_id } if conv.site_id == *site_id && conv.visitor_id == *visitor_id => {
                Ok(())
            }
            Guard::AssignedAgent { site_id, agent_id } if conv.site_id == *site_id => {
                if conv.agent_id.as_deref() == Some(agent_id) {
                    Ok(())
                } else {
                    Err(crate::error::Error::forbidden("claim the conversation before replying"))
                }
            }
            Guard::Site { site_id } if conv.site_id == *site_id => Ok(()),
            // Another site's or visitor's conversation: never reveal it exists.
            _ => Err(crate::error::Error::NotFound("conversation")),
        }
    }
}

/// What [`Store::apply`] did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub event: StoredEvent,
    /// The conversation after the change.
    pub conversation: Conversation,
    /// For an assignment or transfer: the agent the conversation had before.
    pub previous_agent: Option<String>,
    /// True when this was a retry of an already stored message.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub status: Option<ConversationStatus>,
    pub agent_id: Option<String>,
    pub visitor_id: Option<String>,
    pub group_id: Option<String>,
    /// Started at or after this time (Unix ms).
    pub created_from: Option<i64>,
    /// Started before this time (Unix ms).
    pub created_to: Option<i64>,
    /// A page's cursor `(created_at, id)`: only the conversations after
    /// it in newest-first order.
    pub before: Option<(i64, String)>,
    /// At most 1,001 (a page of 1,000 and one to tell whether more follow).
    pub limit: i64,
}

impl ConversationFilter {
    /// Whether the filter names one visitor or one agent (a resume's read,
    /// served by that person's index).
    pub fn one_person(&self) -> bool {
        self.visitor_id.is_some() || self.agent_id.is_some()
    }

    /// The query with only the conditions given, so the planner can use the
    /// visitor's or the agent's index (a generic `(? IS NULL OR …)` query
    /// walked every conversation of the site for each resume). `site_term`
    /// is the site column as written: SQLite's `+site_id` keeps the check
    /// but out of the index choice. The site is the first parameter; the
    /// others follow in `args` order. `mark` is the backend's placeholder;
    /// `from`, the table or view the backend reads conversations from.
    pub(crate) fn sql(&self, from: &str, site_term: &str, mark: &str) -> (String, Vec<FilterArg>) {
        let limit = if self.limit <= 0 { 100 } else { self.limit.min(1001) };
        let mut n = 1;
        let mut next = || {
            n += 1;
            if mark == "$" { format!("${n}") } else { format!("?{n}") }
        };
        let mut sql = format!("SELECT * FROM {from} WHERE {site_term} = {}", if mark == "$" { "$1" } else { "?1" });
        let mut args = Vec::new();
        if let Some(status) = self.status {
            sql += &format!(" AND status = {}", next());
            args.push(FilterArg::Text(status.as_str().to_owned()));
        }
        if let Some(agent_id) = &self.agent_id {
            sql += &format!(" AND agent_id = {}", next());
            args.push(FilterArg::Text(agent_id.clone()));
        }
        if let Some(visitor_id) = &self.visitor_id {
            sql += &format!(" AND visitor_id = {}", next());
            args.push(FilterArg::Text(visitor_id.clone()));
        }
        if let Some(group_id) = &self.group_id {
            sql += &format!(" AND group_id = {}", next());
            args.push(FilterArg::Text(group_id.clone()));
        }
        if let Some(from) = self.created_from {
            sql += &format!(" AND created_at >= {}", next());
            args.push(FilterArg::Int(from));
        }
        if let Some(to) = self.created_to {
            sql += &format!(" AND created_at < {}", next());
            args.push(FilterArg::Int(to));
        }
        if let Some((at, id)) = &self.before {
            let (at_mark, id_mark) = (next(), next());
            sql += &format!(" AND (created_at < {at_mark} OR (created_at = {at_mark} AND id < {id_mark}))");
            args.push(FilterArg::Int(*at));
            args.push(FilterArg::Text(id.clone()));
        }
        // The id breaks ties, so pages neither skip nor repeat a chat.
        sql += &format!(" ORDER BY created_at DESC, id DESC LIMIT {}", next());
        args.push(FilterArg::Int(limit));
        (sql, args)
    }
}

/// A parameter of [`ConversationFilter::sql`].
pub(crate) enum FilterArg {
    Text(String),
    Int(i64),
}

/// A reply an agent inserts by typing `/shortcut` in the console.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CannedResponse {
    pub id: String,
    pub site_id: String,
    /// Typed after a `/`; lower-case letters, digits, `-` and `_`.
    pub shortcut: String,
    pub body: String,
    pub created_at: i64,
}

/// Agent fields an admin may change; `None` leaves the stored value alone.
#[derive(Debug, Clone, Default)]
pub struct AgentUpdate {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
    pub chat_limit: Option<i64>,
    /// A new password's hash (an admin's reset, or the agent's own change).
    pub password_hash: Option<String>,
    /// Their choice about lead emails.
    pub lead_emails: Option<bool>,
}

/// The durable store. Every method is scoped by the ids it is given; callers
/// check tenancy (site) before acting on what comes back.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip used by `/readyz`.
    async fn ping(&self) -> Result<()>;
    /// The store's fault-injection switch.
    fn faults(&self) -> std::sync::Arc<Faults>;
    /// Finish queued writes and close connections (command-line tools).
    async fn close(&self) {}

    async fn meta_get(&self, key: &str) -> Result<Option<String>>;
    /// Set `key` to `value` unless it is already set; returns the stored value.
    async fn meta_init(&self, key: &str, value: &str) -> Result<String>;
    /// Set `key` to `value`, replacing any value it had.
    async fn meta_set(&self, key: &str, value: &str) -> Result<()>;

    async fn create_site(&self, name: &str) -> Result<Site>;
    async fn site(&self, id: &str) -> Result<Option<Site>>;
    async fn site_by_widget_key(&self, key: &str) -> Result<Option<Site>>;
    async fn sites(&self) -> Result<Vec<Site>>;

    async fn create_group(&self, site_id: &str, name: &str, is_default: bool) -> Result<Group>;
    /// The site's groups, deleted ones too (`deleted_at`): lists of groups
    /// to offer leave those out.
    async fn groups(&self, site_id: &str) -> Result<Vec<Group>>;
    async fn group(&self, id: &str) -> Result<Option<Group>>;
    /// Mark a group of the site deleted at `now` and take its members out
    /// of it, in one transaction; false if there is no such live group
    /// (the default group is never deleted: `Conflict`).
    async fn delete_group(&self, site_id: &str, group_id: &str, now: i64) -> Result<bool>;
    async fn add_agent_to_group(&self, agent_id: &str, group_id: &str) -> Result<()>;
    /// Rename a group and/or set its address or its hours (`Some(None)`
    /// clears either); `Conflict` when the site has a group of that name.
    async fn update_group(
        &self,
        group_id: &str,
        name: Option<&str>,
        email: Option<Option<&str>>,
        hours: Option<Option<&crate::hours::Schedule>>,
    ) -> Result<()>;

    /// A new agent, in the site's default group (the status probe in none).
    async fn create_agent(&self, new: NewAgent<'_>) -> Result<Agent>;
    async fn agent(&self, id: &str) -> Result<Option<Agent>>;
    async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>>;
    /// The site's people: every agent and admin, never the status probe.
    async fn agents(&self, site_id: &str) -> Result<Vec<Agent>>;
    async fn set_availability(&self, agent_id: &str, availability: Availability) -> Result<()>;
    /// Members of a group with their current load, for routing (never the
    /// status probe, even if it were put in a group).
    async fn routing_candidates(&self, group_id: &str) -> Result<Vec<RoutingCandidate>>;

    async fn create_session(&self, agent_id: &str, secret_hash: &str, expires_at: i64) -> Result<Session>;
    async fn session_by_secret_hash(&self, secret_hash: &str) -> Result<Option<Session>>;
    async fn session(&self, id: &str) -> Result<Option<Session>>;
    async fn touch_session(&self, id: &str, at: i64) -> Result<()>;
    async fn revoke_session(&self, id: &str, at: i64) -> Result<()>;
    /// Sessions revoked at or after `since` (ms), with when: every node
    /// refuses their access tokens, after a restart too.
    async fn sessions_revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>>;

    async fn create_visitor(&self, site_id: &str, update: VisitorUpdate) -> Result<Visitor>;
    async fn visitor(&self, id: &str) -> Result<Option<Visitor>>;
    async fn update_visitor(&self, id: &str, update: VisitorUpdate) -> Result<()>;

    async fn create_conversation(
        &self,
        site_id: &str,
        visitor_id: &str,
        group_id: &str,
        status: ConversationStatus,
    ) -> Result<Conversation>;
    async fn conversation(&self, id: &str) -> Result<Option<Conversation>>;
    async fn conversations(&self, site_id: &str, filter: ConversationFilter) -> Result<Vec<Conversation>>;
    /// Queued conversations of a site, oldest first (the queue order).
    async fn queue(&self, site_id: &str) -> Result<Vec<Conversation>>;

    /// Apply a change to a conversation and record its event, atomically.
    async fn apply(&self, conversation_id: &str, change: Change) -> Result<Applied>;
    /// `apply` only if `guard` holds. The default checks with a read first;
    /// stores that can check inside the transaction override it.
    async fn apply_guarded(&self, conversation_id: &str, guard: Guard, change: Change) -> Result<Applied> {
        let conv = self.conversation(conversation_id).await?.ok_or(crate::error::Error::NotFound("conversation"))?;
        guard.check(&conv)?;
        self.apply(conversation_id, change).await
    }
    /// Events with `seq > after`, in order, at most `limit`.
    async fn events_after(&self, conversation_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>>;
    /// The site's chats holding every word (in a message, or the
    /// visitor's name or email) and passing the filters, newest first
    /// (`search.rs`).
    async fn search_chats(&self, site_id: &str, search: search::ChatSearch) -> Result<Vec<search::ChatHit>>;

    // ----- admin (the web console) -----------------------------------------

    /// Replace a site's widget settings (validated by the caller).
    async fn set_site_settings(&self, site_id: &str, settings: &serde_json::Value) -> Result<()>;
    /// Rename a site (validated by the caller).
    async fn rename_site(&self, site_id: &str, name: &str) -> Result<()>;
    async fn update_agent(&self, agent_id: &str, update: AgentUpdate) -> Result<()>;
    /// Set (`Some`) or remove (`None`) an agent's photo at `at`
    /// (`agents.photo_at` and the bytes, together).
    async fn set_agent_photo(&self, agent_id: &str, photo: Option<AgentPhoto>, at: i64) -> Result<()>;
    /// An agent's photo, if they have one.
    async fn agent_photo(&self, agent_id: &str) -> Result<Option<AgentPhoto>>;
    /// Revoke every live session of an agent; returns the revoked session ids.
    async fn revoke_agent_sessions(&self, agent_id: &str, at: i64) -> Result<Vec<String>>;
    /// Agent ids in a group.
    async fn group_members(&self, group_id: &str) -> Result<Vec<String>>;
    async fn canned_responses(&self, site_id: &str) -> Result<Vec<CannedResponse>>;
    async fn create_canned_response(&self, site_id: &str, shortcut: &str, body: &str) -> Result<CannedResponse>;
    /// Returns whether a response of that site with that id existed.
    async fn delete_canned_response(&self, site_id: &str, id: &str) -> Result<bool>;
    /// Change a response of that site (validated by the caller); `None`
    /// if there is none such, `Conflict` if the shortcut is taken.
    async fn update_canned_response(
        &self,
        site_id: &str,
        id: &str,
        shortcut: &str,
        body: &str,
    ) -> Result<Option<CannedResponse>>;
    /// Take an agent out of a group; returns whether they were in it.
    async fn remove_agent_from_group(&self, agent_id: &str, group_id: &str) -> Result<bool>;

    // ----- invitations (`invitations.rs`) ----------------------------------

    /// A new invitation and the email carrying it, in one transaction;
    /// refused when the site has an agent with that email or an open
    /// invitation for it.
    async fn create_invitation(&self, invitation: invitations::Invitation, email: outbox::NewDelivery) -> Result<()>;
    /// The site's invitations neither accepted nor revoked (expired ones
    /// too), newest first.
    async fn open_invitations(&self, site_id: &str) -> Result<Vec<invitations::Invitation>>;
    async fn invitation(&self, id: &str) -> Result<Option<invitations::Invitation>>;
    /// Revoke an invitation of this site; false if there is none open.
    async fn revoke_invitation(&self, site_id: &str, id: &str, now: i64) -> Result<bool>;
    /// Make the invitation's agent and close it, in one transaction;
    /// `NotFound` unless it is open at `now`, `Conflict` when the address
    /// has an account by now.
    async fn accept_invitation(&self, id: &str, password_hash: &str, now: i64) -> Result<Agent>;

    // ----- the outbox (`outbox.rs`) ----------------------------------------

    /// A visitor's offline message: a new `offline` conversation, its first
    /// message and the deliveries announcing it, in one transaction (all
    /// or nothing).
    async fn leave_message(&self, message: outbox::OfflineMessage) -> Result<Applied>;
    /// Queue deliveries that no stored change causes (a transcript asked
    /// for), in one transaction; returns how many were new (a repeated
    /// `dedupe_key` is not).
    async fn queue_deliveries(&self, deliveries: Vec<outbox::NewDelivery>) -> Result<usize>;
    /// Queued deliveries due at `now` and not leased, leased until
    /// `lease_until`, at most `limit`.
    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<outbox::Delivery>>;
    /// Forget every lease: called by a new lead, whose predecessor is gone.
    async fn release_delivery_leases(&self) -> Result<()>;
    /// Record an attempt's outcome (and drop the lease).
    async fn record_attempt(&self, id: &str, attempt: outbox::Attempt) -> Result<()>;
    /// The deliveries in `scope`, newest first.
    async fn deliveries(
        &self,
        scope: outbox::Scope<'_>,
        status: Option<outbox::DeliveryStatus>,
        limit: i64,
    ) -> Result<Vec<outbox::Delivery>> {
        let page = outbox::DeliveryPage { status, endpoint_id: None, before: None, limit };
        self.deliveries_page(scope, page).await
    }
    /// A page of the deliveries in `scope`, newest first (`outbox::DeliveryPage`).
    async fn deliveries_page(
        &self,
        scope: outbox::Scope<'_>,
        page: outbox::DeliveryPage,
    ) -> Result<Vec<outbox::Delivery>>;
    /// Queue a delivery in `scope` again, due at `now`; false if there is
    /// none such (or it is being sent right now).
    async fn retry_delivery(&self, scope: outbox::Scope<'_>, id: &str, now: i64, give_up_at: i64) -> Result<bool>;
    /// Deliveries waiting to be sent, every site.
    async fn queued_deliveries(&self) -> Result<i64>;

    // ----- missed chats (`missed.rs`) --------------------------------------

    /// Conversations created after `since` that may yet be missed (no agent
    /// message, not closed by anyone but their visitor, not marked), every
    /// site, oldest first.
    async fn missed_candidates(&self, since: i64, limit: i64) -> Result<Vec<missed::ChatWait>>;
    /// Mark a conversation missed and queue its deliveries, in one
    /// transaction; false (and nothing queued) if it was marked already.
    async fn mark_missed(&self, mark: missed::MissedChat) -> Result<bool>;
    /// Closed chats of a site closed after `since` whose archive transcript
    /// (`archive:ID` delivery) is not queued, oldest close first.
    async fn unarchived_closed(&self, site_id: &str, since: i64, limit: i64) -> Result<Vec<Conversation>>;
    /// A site's missed conversations, most recently missed first, after
    /// the cursor `(missed_at, conversation id)` (`(i64::MAX, "")`: from
    /// the start).
    async fn missed_chats(
        &self,
        site_id: &str,
        after: (i64, String),
        limit: i64,
    ) -> Result<Vec<(Conversation, missed::Missed)>>;

    // ----- reports (`reports.rs`) ------------------------------------------

    /// What reports need of each conversation of a site created in
    /// `[from, to)` (ms), only `agent_id`'s if given, each given to `sink`
    /// as it is read (in no particular order, every one); `sink` back.
    async fn report_facts(
        &self,
        site_id: &str,
        from: i64,
        to: i64,
        agent_id: Option<&str>,
        sink: Box<dyn reports::FactSink>,
    ) -> Result<Box<dyn reports::FactSink>>;
    /// Make the summaries of settled days that reports would otherwise
    /// make when asked (PostgreSQL, `report_days`; SQLite reads its chats'
    /// rows and keeps none).
    async fn keep_report_summaries(&self, now: i64) -> Result<reports::SummariesKept>;
    // ----- bans (`bans.rs`) ------------------------------------------------

    async fn create_ban(&self, ban: bans::Ban) -> Result<()>;
    /// A site's bans, lifted and expired ones too, newest first, after the
    /// cursor `(created_at, id)` (`(i64::MAX, "")`: from the start).
    async fn bans(&self, site_id: &str, after: (i64, String), limit: i64) -> Result<Vec<bans::Ban>>;
    /// Lift a ban of this site (a lifted one stays as it was); the ban as
    /// it is now, `None` if the site has no such ban.
    async fn lift_ban(&self, site_id: &str, id: &str, by: &str, at: i64) -> Result<Option<bans::Ban>>;
    /// Bans in force at `now`, every site (what each node holds in memory).
    async fn active_bans(&self, now: i64) -> Result<Vec<bans::Ban>>;
    /// When any ban was last made or lifted: a node reloads when it moves.
    async fn bans_changed_at(&self) -> Result<Option<i64>>;
    /// The address a visitor last opened a session from.
    async fn visitor_ip(&self, visitor_id: &str) -> Result<Option<String>>;

    /// A new greeting rule (`greetings`).
    async fn create_greeting(&self, rule: greetings::GreetingRule) -> Result<()>;
    /// A site's greeting rules, oldest first, with their counts.
    async fn greetings(&self, site_id: &str) -> Result<Vec<greetings::GreetingRule>>;
    /// Replace a rule's editable fields; false if the site has no such rule.
    async fn update_greeting(&self, rule: greetings::GreetingRule) -> Result<bool>;
    async fn delete_greeting(&self, site_id: &str, id: &str) -> Result<bool>;
    /// Count one greeting shown at `at`; false if the site has no such
    /// enabled rule.
    async fn greeting_shown(&self, site_id: &str, id: &str, at: i64) -> Result<bool>;
    /// Each of a site's rules with its greetings shown and chats started
    /// in `[from, to)` (milliseconds), oldest rule first.
    async fn greeting_figures(&self, site_id: &str, from: i64, to: i64) -> Result<Vec<greetings::GreetingFigures>>;
    /// Record that a rule greeted the visitor who started this chat.
    async fn greeting_started(&self, conversation_id: &str, rule_id: &str, at: i64) -> Result<()>;
    /// The rule that greeted the visitor who started a chat, if one did.
    async fn greeting_of(&self, conversation_id: &str) -> Result<Option<String>>;

    // ----- the audit log (`audit.rs`) --------------------------------------

    /// Append an entry; nothing changes one.
    async fn append_audit(&self, entry: audit::AuditEntry) -> Result<()>;
    /// A site's entries after the cursor `(at, id)` in newest-first
    /// order (older than `at`, or at `at` with a smaller id), newest first.
    async fn audit_log(&self, site_id: &str, after: (i64, String), limit: i64) -> Result<Vec<audit::AuditEntry>>;
    /// Delete up to `limit` of a site's entries older than `before`
    /// (the retention job's, which keeps `before` below now minus
    /// `audit::AUDIT_FLOOR_MS`: the store refuses younger ones); how many.
    async fn expire_audit(&self, site_id: &str, before: i64, limit: i64) -> Result<u64>;

    // ----- API tokens (`api_tokens.rs`) -------------------------------------

    /// Store a new token under the SHA-256 of its secret (`hash`).
    async fn create_api_token(&self, token: api_tokens::ApiToken, hash: String) -> Result<()>;
    /// The token whose secret hashes to `hash`, revoked or not.
    async fn api_token_by_hash(&self, hash: &str) -> Result<Option<api_tokens::ApiToken>>;
    /// A site's tokens, revoked ones too, newest first.
    async fn api_tokens(&self, site_id: &str) -> Result<Vec<api_tokens::ApiToken>>;
    /// Revoke a token of this site (a revoked one stays as it was); the
    /// token as it is now, `None` if the site has no such token.
    async fn revoke_api_token(&self, site_id: &str, id: &str, at: i64) -> Result<Option<api_tokens::ApiToken>>;
    /// Record that a token was used at `at`.
    async fn touch_api_token(&self, id: &str, at: i64) -> Result<()>;

    // ----- idempotency keys (`idempotency.rs`) ------------------------------

    /// Claim a key for a request: `Ours` if it was free (or forgotten, or
    /// its claim lapsed), else what another request left; `None` if that
    /// request let it go between the two reads (claim again).
    async fn claim_idempotency_key(&self, claim: idempotency::KeyClaim) -> Result<Option<idempotency::Claimed>>;
    /// Keep the answer of the request that claimed the key at `at`.
    async fn finish_idempotency_key(
        &self,
        scope: idempotency::KeyScope,
        at: i64,
        answer: idempotency::StoredAnswer,
    ) -> Result<()>;
    /// Let go of a claim made at `at` whose request kept nothing (it
    /// failed): a retry runs again.
    async fn release_idempotency_key(&self, scope: idempotency::KeyScope, at: i64) -> Result<()>;
    /// Delete the keys used before `before`; how many.
    async fn forget_idempotency_keys(&self, before: i64) -> Result<u64>;

    // ----- webhooks (`webhooks.rs`) -----------------------------------------

    async fn create_webhook(&self, endpoint: webhooks::Endpoint) -> Result<()>;
    /// A site's endpoints, oldest first.
    async fn webhooks(&self, site_id: &str) -> Result<Vec<webhooks::Endpoint>>;
    async fn webhook(&self, id: &str) -> Result<Option<webhooks::Endpoint>>;
    /// Change an endpoint of this site; `None` if it has none such.
    async fn update_webhook(
        &self,
        site_id: &str,
        id: &str,
        change: webhooks::EndpointChange,
    ) -> Result<Option<webhooks::Endpoint>>;
    /// Delete an endpoint of this site, its queued deliveries ended as
    /// failed, in one transaction; the endpoint as it was, `None` if the
    /// site has none such.
    async fn delete_webhook(&self, site_id: &str, id: &str) -> Result<Option<webhooks::Endpoint>>;
    /// Record an attempt's outcome on its endpoint: a success clears
    /// `failing_since`, a failure sets it unless set.
    async fn webhook_outcome(&self, id: &str, ok: bool, at: i64) -> Result<()>;
    /// Disable an enabled endpoint failing since `failing_before` or
    /// earlier, and queue `emails` telling its admins, in one transaction;
    /// false (nothing queued) if it was not so.
    async fn disable_webhook(
        &self,
        id: &str,
        failing_before: i64,
        reason: &str,
        emails: Vec<outbox::NewDelivery>,
    ) -> Result<bool>;

    // ----- erasure (`erasure.rs`) ------------------------------------------

    /// Erase a visitor of this site for good, in one transaction (their
    /// details, their conversations' message bodies as tombstones, the
    /// deliveries naming them); `NotFound` if the site has no such visitor.
    async fn erase_visitor(&self, site_id: &str, visitor_id: &str) -> Result<erasure::Erased>;
    /// One batch of a site's retention (`store/retention.rs`): at most
    /// `batch` conversations ended before `cutoff` lose their messages
    /// (marked expired at `now`), and as many visitors and deliveries
    /// from before it their details.
    async fn expire(&self, site_id: &str, cutoff: i64, now: i64, batch: i64) -> Result<retention::Expired>;

    // ----- attachments (`attachments.rs`) ----------------------------------

    /// Keep an upload: the bytes of the spooled file (fsync'd, named by
    /// nothing) under their SHA-256, then its row; durable on return. The
    /// spooled file is moved or removed.
    async fn put_attachment(&self, attachment: attachments::Attachment, spooled: &std::path::Path) -> Result<()>;
    async fn attachment(&self, id: &str) -> Result<Option<attachments::Attachment>>;
    /// The stored bytes with this SHA-256, a chunk at a time.
    async fn attachment_bytes(&self, sha256: &str) -> Result<attachments::ByteStream>;
    /// Drop uploads created before `before` that no message took, and the
    /// bytes no upload names any more; how many uploads were dropped.
    async fn drop_orphan_attachments(&self, before: i64) -> Result<usize>;
}
