//! The cluster store: PostgreSQL, shared by every node.
//!
//! Each conversation change ([`Store::apply`]) is one transaction that
//! first locks the conversation's row (`SELECT … FOR UPDATE`), so writers
//! on several nodes take turns per conversation: the next `seq` is read
//! and written under that lock, gap-free and in commit order. An
//! assignment also locks the agent's row before counting their active
//! chats, so two nodes routing at once can never both give an agent their
//! last free slot, and a conversation already assigned is refused
//! (`only_if_unassigned`). Lock order is always conversation, then agent.
//!
//! Messages take a shortcut: a node's group commit (`postgres_writer`)
//! stores many conversations' messages in one transaction, under the same
//! row locks, so `seq` stays gap-free across nodes; every other change
//! is a transaction of its own (`apply_alone`). Either way a message is
//! durable (the commit returned) before it is acknowledged.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, PgPool, Row};

use super::postgres_writer::Writer;
use super::rules;
use super::status_sql::SqlStatusStore;
use super::*;
use crate::error::{Error, Result};

static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| include!(concat!(env!("OUT_DIR"), "/migrations/postgres.rs")));

/// Attempts of a conversation change that PostgreSQL aborted as a deadlock
/// or serialization failure (both safe to retry: nothing was written).
const APPLY_ATTEMPTS: usize = 3;

pub struct PostgresStore {
    pub(super) pool: PgPool,
    /// Injected failures, for rehearsals and tests of "the store is down".
    faults: Arc<Faults>,
    /// The group commit of messages.
    writer: Writer,
    /// Where reports are read.
    pub(super) reports: super::reports::PgReports,
}

/// The newest schema version this build knows.
pub fn known_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

fn connect_options(url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url)
        .map_err(|e| Error::Store(anyhow::anyhow!("invalid database URL: {e}")))
        .map(|o| o.log_statements(tracing::log::LevelFilter::Trace))
}

/// The highest migration applied to the database, if any.
async fn applied_schema_version(conn: &mut PgConnection) -> Result<Option<i64>> {
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text").fetch_one(&mut *conn).await?;
    if exists.is_none() {
        return Ok(None);
    }
    Ok(sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(&mut *conn).await?)
}

/// The `meta` key holding the oldest schema version a binary must know to
/// serve the database: that of the last *contract* migration.
const SCHEMA_REQUIRES: &str = "schema_requires";

/// Schema changes follow expand-then-contract, so that a node of the
/// previous release keeps working while a new release rolls over the
/// cluster (`docs/deploy.md`). An *expand* migration only adds (a table, a
/// nullable column or one with a default, an index); the previous
/// release's statements still run against it. A *contract* migration
/// takes away or changes what an older release uses (drops or renames,
/// changes a type, adds a constraint old writers break) and ends by setting
/// `meta.schema_requires` to its own version.
///
/// So a binary may serve a database migrated beyond what it knows when it
/// knows at least `requires`; otherwise it must not write to tables it does
/// not understand.
fn may_serve(applied: i64, requires: i64, known: i64) -> bool {
    applied <= known || requires <= known
}

/// The database's `meta.schema_requires` (0 before migration 0023 made it).
async fn required_schema_version(conn: &mut PgConnection) -> Result<i64> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('meta')::text").fetch_one(&mut *conn).await?;
    if exists.is_none() {
        return Ok(0);
    }
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(SCHEMA_REQUIRES)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Refuse a database this build may not serve (see [`may_serve`]); returns
/// the version applied.
async fn check_servable(conn: &mut PgConnection) -> Result<Option<i64>> {
    let applied = applied_schema_version(conn).await?;
    let known = known_schema_version();
    if let Some(v) = applied
        && v > known
    {
        let requires = required_schema_version(conn).await?;
        if !may_serve(v, requires, known) {
            return Err(Error::Store(anyhow::anyhow!(
                "the database schema is version {v}, newer than this holdfast knows (version {known}), and it \
                 needs one that knows version {requires}; upgrade holdfast before serving this database"
            )));
        }
        tracing::info!(
            applied = v,
            known,
            requires,
            "the database schema is newer, and only added to what this release uses"
        );
    }
    Ok(applied)
}

/// Apply every pending migration to the database at `url` (`holdfast
/// migrate`); returns (version before, version after). Migrations take an
/// advisory lock, so nodes starting together apply them once. A database
/// a newer release migrated, and which this one may serve, is left as it
/// is: (its version, its version).
pub async fn migrate(url: &str) -> Result<(Option<i64>, i64)> {
    let mut conn = connect_options(url)?
        .connect()
        .await
        .map_err(|e| Error::Store(anyhow::anyhow!("cannot connect to the database: {e}")))?;
    let before = check_servable(&mut conn).await?;
    let after = match before {
        Some(v) if v > known_schema_version() => v,
        _ => {
            MIGRATOR.run(&mut conn).await.map_err(|e| Error::Store(anyhow::anyhow!("migration failed: {e}")))?;
            known_schema_version()
        }
    };
    let _ = conn.close().await;
    Ok((before, after))
}

/// Create an empty database `name` on the server of `url` (rehearsals and
/// tests use a fresh one per run).
pub async fn create_database(url: &str, name: &str) -> Result<String> {
    check_database_name(name)?;
    let options = connect_options(url)?;
    let mut conn = options.connect().await?;
    // `name` was checked to be letters, digits and _ only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await?;
    let _ = conn.close().await;
    database_url(url, name)
}

/// The URL of database `name` on the server of `url`.
pub fn database_url(url: &str, name: &str) -> Result<String> {
    check_database_name(name)?;
    Ok(connect_options(url)?.database(name).to_url_lossy().to_string())
}

/// Drop database `name` on the server of `url`, closing its connections.
pub async fn drop_database(url: &str, name: &str) -> Result<()> {
    check_database_name(name)?;
    let mut conn = connect_options(url)?.connect().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(())
}

fn check_database_name(name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err(Error::bad_request("database names are letters, digits and _")) }
}

impl PostgresStore {
    /// Connect to `url`, refuse a schema this build may not serve, apply
    /// pending migrations.
    /// `max_connections` bounds this node's share of the server's connections.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PostgresStore> {
        migrate(url).await?;
        let options = connect_options(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .map_err(|e| Error::Store(anyhow::anyhow!("cannot connect to the database: {e}")))?;
        let writer = Writer::start(pool.clone());
        let reports = super::reports::PgReports::new(options);
        Ok(PostgresStore { pool, faults: Arc::new(Faults::default()), writer, reports })
    }

    /// The status page's store, on this store's pool.
    pub fn status_store(&self) -> SqlStatusStore {
        SqlStatusStore::postgres(self.pool.clone())
    }

    pub(super) async fn p(&self) -> Result<&PgPool> {
        self.faults.check().await?;
        Ok(&self.pool)
    }

    pub async fn close(&self) {
        self.reports.close();
        self.pool.close().await;
    }

    async fn apply_with(&self, conversation_id: &str, guard: Option<Guard>, change: Change) -> Result<Applied> {
        self.faults.check().await?;
        if Writer::takes(&change) {
            self.writer.apply(conversation_id, guard, change).await
        } else {
            apply_alone(&self.pool, conversation_id, guard.as_ref(), &change).await
        }
    }
}

/// A change in a transaction of its own, retried if PostgreSQL aborted it
/// as a deadlock or serialization failure.
pub(super) async fn apply_alone(
    pool: &PgPool,
    conversation_id: &str,
    guard: Option<&Guard>,
    change: &Change,
) -> Result<Applied> {
    let mut attempt = 1;
    loop {
        match apply_once(pool, conversation_id, guard, change).await {
            Err(e) if attempt < APPLY_ATTEMPTS && is_retryable(&e) => attempt += 1,
            other => return other,
        }
    }
}

async fn apply_once(pool: &PgPool, conversation_id: &str, guard: Option<&Guard>, change: &Change) -> Result<Applied> {
    let mut tx = pool.begin().await?;
    match apply_one(&mut tx, conversation_id, guard, change, now_ms()).await? {
        Ok(applied) => {
            tx.commit().await?;
            Ok(applied)
        }
        Err(refused) => {
            tx.rollback().await?;
            Err(refused)
        }
    }
}

/// Deadlock or serialization failure: PostgreSQL rolled back, retry.
pub(super) fn is_retryable(err: &Error) -> bool {
    let Error::Store(e) = err else { return false };
    e.downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

/// The event an earlier attempt of this message stored, if any (a retry
/// gets its original back).
async fn earlier_message(
    conn: &mut PgConnection,
    conversation_id: &str,
    author: &Author,
    client_id: &str,
) -> Result<Option<StoredEvent>> {
    // `=` where the author has an id, so the lookup uses every column of
    // the unique index, not a scan of all this author kind's events.
    let sql = if author.id.is_some() {
        "SELECT * FROM events WHERE conversation_id = $1 AND author_kind = $2 AND author_id = $3 AND client_id = $4"
    } else {
        "SELECT * FROM events WHERE conversation_id = $1 AND author_kind = $2 AND author_id IS NULL \
         AND $3::text IS NULL AND client_id = $4"
    };
    sqlx::query(sql)
        .bind(conversation_id)
        .bind(author.kind.as_str())
        .bind(author.id.as_deref())
        .bind(client_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| event_from_row(&row))
        .transpose()
}

/// Outer `Result`: SQL failure (the transaction is rolled back). Inner:
/// the change's own outcome, a refusal writing nothing.
async fn apply_one(
    conn: &mut PgConnection,
    conversation_id: &str,
    guard: Option<&Guard>,
    change: &Change,
    now: i64,
) -> Result<Result<Applied>> {
    let Some(conv) = sqlx::query("SELECT * FROM conversations WHERE id = $1 FOR UPDATE")
        .bind(conversation_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| conversation_from_row(&r))
        .transpose()?
    else {
        return Ok(Err(Error::NotFound("conversation")));
    };
    // Checked on the locked row: a transfer cannot slip in between.
    if let Some(guard) = guard
        && let Err(refused) = guard.check(&conv)
    {
        return Ok(Err(refused));
    }
    let mut next = conv.clone();
    let mut previous_agent = None;
    let (kind, author, client_id, body, data) = match change {
        Change::Message { author, client_id, body, attachments, integration } => {
            if let Some(event) = earlier_message(conn, conversation_id, author, client_id).await? {
                return Ok(Ok(Applied { event, conversation: conv, previous_agent: None, duplicate: true }));
            }
            if let Err(e) = rules::check_message(&conv) {
                return Ok(Err(e));
            }
            if let Err(e) = attachments::bind_pg(conn, conversation_id, attachments).await? {
                return Ok(Err(e));
            }
            let data = attachments::message_data(attachments, integration.as_deref());
            ("message", author.clone(), Some(client_id.clone()), Some(body.clone()), data)
        }
        Change::Assign { agent_id, agent_name, by, limit, only_if_unassigned } => {
            if let Err(e) = rules::check_assign(&conv, agent_id, *only_if_unassigned) {
                return Ok(Err(e));
            }
            // The agent's row lock serialises every assignment to this
            // agent across nodes, so the count below cannot be stale.
            let agent: Option<Option<i64>> = sqlx::query_scalar("SELECT photo_at FROM agents WHERE id = $1 FOR UPDATE")
                .bind(agent_id)
                .fetch_optional(&mut *conn)
                .await?;
            let Some(photo_at) = agent else {
                return Ok(Err(Error::NotFound("agent")));
            };
            if let Some(limit) = limit {
                let active: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM conversations WHERE agent_id = $1 AND status = 'active'")
                        .bind(agent_id)
                        .fetch_one(&mut *conn)
                        .await?;
                if active >= *limit {
                    return Ok(Err(Error::conflict("the agent is at their chat limit")));
                }
            }
            let (assigned, previous, parts) = rules::assign(&conv, agent_id, agent_name, photo_at, by, now);
            (next, previous_agent) = (assigned, previous);
            sqlx::query("UPDATE agents SET last_assigned_at = $1 WHERE id = $2")
                .bind(now)
                .bind(agent_id)
                .execute(&mut *conn)
                .await?;
            parts
        }
        Change::TransferToGroup { group_id, group_name, by } => {
            match rules::transfer_to_group(&conv, group_id, group_name, by) {
                Ok((moved, previous, parts)) => {
                    (next, previous_agent) = (moved, previous);
                    parts
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Change::Close { by } => match rules::close(&conv, by, now) {
            Ok((closed, parts)) => {
                next = closed;
                parts
            }
            Err(e) => return Ok(Err(e)),
        },
        Change::Reply { author, client_id, body, .. } => {
            if let Some(event) = earlier_message(conn, conversation_id, author, client_id).await? {
                return Ok(Ok(Applied { event, conversation: conv, previous_agent: None, duplicate: true }));
            }
            if let Err(e) = rules::check_reply(&conv) {
                return Ok(Err(e));
            }
            rules::reply(author, client_id, body)
        }
        Change::Note { author, client_id, body } => {
            if let Some(event) = earlier_message(conn, conversation_id, author, client_id).await? {
                return Ok(Ok(Applied { event, conversation: conv, previous_agent: None, duplicate: true }));
            }
            rules::note(author, client_id, body)
        }
        Change::Read { reader, up_to } => {
            if let Err(e) = rules::check_read(&conv, *up_to) {
                return Ok(Err(e));
            }
            // Only a receipt that moves the reader forward is recorded, so
            // clients acknowledging each other's receipts cannot loop.
            let last = sqlx::query(
                "SELECT * FROM events WHERE conversation_id = $1 AND kind = 'read' AND author_kind = $2 \
                 AND author_id IS NOT DISTINCT FROM $3 ORDER BY seq DESC LIMIT 1",
            )
            .bind(conversation_id)
            .bind(reader.kind.as_str())
            .bind(reader.id.as_deref())
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| event_from_row(&r))
            .transpose()?;
            if let Some(last) = last
                && last.data.get("up_to").and_then(|v| v.as_i64()).unwrap_or(0) >= *up_to
            {
                return Ok(Ok(Applied { event: last, conversation: conv, previous_agent: None, duplicate: true }));
            }
            rules::read(reader, *up_to)
        }
        Change::Rate { by, client_id, rating, comment } => {
            let existing = sqlx::query(
                "SELECT e.* FROM ratings r JOIN events e ON e.conversation_id = r.conversation_id AND e.seq = r.seq \
                 WHERE r.conversation_id = $1",
            )
            .bind(conversation_id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| event_from_row(&r))
            .transpose()?;
            match rules::check_rate(&conv, existing, by, client_id) {
                Ok(Some(event)) => {
                    return Ok(Ok(Applied { event, conversation: conv, previous_agent: None, duplicate: true }));
                }
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
            // The unique index on client ids covers every kind: a client id
            // the visitor already gave a message is refused, not a failure.
            let taken: Option<i64> = sqlx::query_scalar(
                "SELECT seq FROM events WHERE conversation_id = $1 AND author_kind = $2 \
                 AND author_id IS NOT DISTINCT FROM $3 AND client_id = $4",
            )
            .bind(conversation_id)
            .bind(by.kind.as_str())
            .bind(by.id.as_deref())
            .bind(client_id)
            .fetch_optional(&mut *conn)
            .await?;
            if taken.is_some() {
                return Ok(Err(Error::bad_request("client_id already used in this conversation")));
            }
            rules::rate(by, client_id, *rating, comment.as_deref())
        }
    };
    next.last_seq = conv.last_seq + 1;
    sqlx::query(
        "UPDATE conversations SET agent_id = $1, group_id = $2, status = $3, last_seq = $4, assigned_at = $5, closed_at = $6 \
         WHERE id = $7",
    )
    .bind(next.agent_id.as_deref())
    .bind(&next.group_id)
    .bind(next.status.as_str())
    .bind(next.last_seq)
    .bind(next.assigned_at)
    .bind(next.closed_at)
    .bind(conversation_id)
    .execute(&mut *conn)
    .await?;
    let event = StoredEvent {
        conversation_id: conversation_id.to_owned(),
        seq: next.last_seq,
        id: new_id(),
        kind: kind.to_owned(),
        author,
        client_id,
        body,
        data,
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&event.conversation_id)
    .bind(event.seq)
    .bind(&event.id)
    .bind(&event.kind)
    .bind(event.author.kind.as_str())
    .bind(event.author.id.as_deref())
    .bind(event.client_id.as_deref())
    .bind(event.body.as_deref())
    .bind(event.data.to_string())
    .bind(event.created_at)
    .execute(&mut *conn)
    .await?;
    super::webhooks::pg_queue_event_hooks(conn, &next, &event).await?;
    if let Change::Reply { email, .. } = change {
        outbox::pg_insert_delivery(conn, email).await?;
    }
    if let Change::Rate { rating, .. } = change {
        sqlx::query(
            "INSERT INTO ratings (conversation_id, site_id, seq, score, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(conversation_id)
        .bind(&next.site_id)
        .bind(event.seq)
        .bind(rating.score())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Ok(Applied { event, conversation: next, previous_agent, duplicate: false }))
}

fn bad_row(what: &str, value: &str) -> Error {
    Error::Store(anyhow::anyhow!("unexpected {what} in database: {value:?}"))
}

fn site_from_row(r: &PgRow) -> Result<Site> {
    let settings: String = r.try_get("settings")?;
    Ok(Site {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        widget_key: r.try_get("widget_key")?,
        settings: serde_json::from_str(&settings).unwrap_or_else(|_| serde_json::json!({})),
        created_at: r.try_get("created_at")?,
    })
}

/// Insert an agent, in the site's default group (the status probe in
/// none, so routing never sees it).
pub(super) async fn insert_agent(tx: &mut sqlx::PgConnection, agent: &Agent) -> Result<()> {
    sqlx::query(
        "INSERT INTO agents (id, site_id, email, name, role, password_hash, chat_limit, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&agent.id)
    .bind(&agent.site_id)
    .bind(&agent.email)
    .bind(&agent.name)
    .bind(agent.role.as_str())
    .bind(&agent.password_hash)
    .bind(agent.chat_limit)
    .bind(agent.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::conflict("an agent with that email exists"),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => Error::NotFound("site"),
        e => e.into(),
    })?;
    if agent.role != Role::Probe {
        sqlx::query(
            "INSERT INTO agent_groups (agent_id, group_id) SELECT $1, id FROM groups WHERE site_id = $2 AND is_default",
        )
        .bind(&agent.id)
        .bind(&agent.site_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

fn agent_from_row(r: &PgRow) -> Result<Agent> {
    let role: String = r.try_get("role")?;
    let availability: String = r.try_get("availability")?;
    Ok(Agent {
        id: r.try_get("id")?,
        site_id: r.try_get("site_id")?,
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| bad_row("role", &role))?,
        password_hash: r.try_get("password_hash")?,
        chat_limit: r.try_get("chat_limit")?,
        availability: Availability::parse(&availability).ok_or_else(|| bad_row("availability", &availability))?,
        active: r.try_get("active")?,
        created_at: r.try_get("created_at")?,
        lead_emails: r.try_get("lead_emails")?,
        photo_at: r.try_get("photo_at")?,
    })
}

fn canned_from_row(r: &PgRow) -> Result<CannedResponse> {
    Ok(CannedResponse {
        id: r.try_get("id")?,
        site_id: r.try_get("site_id")?,
        shortcut: r.try_get("shortcut")?,
        body: r.try_get("body")?,
        created_at: r.try_get("created_at")?,
    })
}

fn group_from_row(r: &PgRow) -> Result<Group> {
    Ok(Group {
        id: r.try_get("id")?,
        site_id: r.try_get("site_id")?,
        name: r.try_get("name")?,
        is_default: r.try_get("is_default")?,
        email: r.try_get("email")?,
        hours: Group::hours_from_stored(r.try_get("hours")?),
        deleted_at: r.try_get("deleted_at")?,
    })
}

fn session_from_row(r: &PgRow) -> Result<Session> {
    Ok(Session {
        id: r.try_get("id")?,
        agent_id: r.try_get("agent_id")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn visitor_from_row(r: &PgRow) -> Result<Visitor> {
    Ok(Visitor {
        id: r.try_get("id")?,
        site_id: r.try_get("site_id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        page_url: r.try_get("page_url")?,
        referrer: r.try_get("referrer")?,
        user_agent: r.try_get("user_agent")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
    })
}

pub(super) fn conversation_from_row(r: &PgRow) -> Result<Conversation> {
    let status: String = r.try_get("status")?;
    Ok(Conversation {
        id: r.try_get("id")?,
        site_id: r.try_get("site_id")?,
        visitor_id: r.try_get("visitor_id")?,
        group_id: r.try_get("group_id")?,
        agent_id: r.try_get("agent_id")?,
        status: ConversationStatus::parse(&status).ok_or_else(|| bad_row("status", &status))?,
        last_seq: r.try_get("last_seq")?,
        created_at: r.try_get("created_at")?,
        assigned_at: r.try_get("assigned_at")?,
        closed_at: r.try_get("closed_at")?,
    })
}

pub(super) fn event_from_row(r: &PgRow) -> Result<StoredEvent> {
    let author_kind: String = r.try_get("author_kind")?;
    let data: String = r.try_get("data")?;
    Ok(StoredEvent {
        conversation_id: r.try_get("conversation_id")?,
        seq: r.try_get("seq")?,
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        author: Author {
            kind: AuthorKind::parse(&author_kind).ok_or_else(|| bad_row("author kind", &author_kind))?,
            id: r.try_get("author_id")?,
        },
        client_id: r.try_get("client_id")?,
        body: r.try_get("body")?,
        data: serde_json::from_str(&data).unwrap_or_else(|_| serde_json::json!({})),
        created_at: r.try_get("created_at")?,
    })
}

/// A widget key: public, unguessable enough not to be enumerated.
fn new_widget_key() -> String {
    let bytes: [u8; 12] = rand::random();
    format!("wk_{}", hex::encode(bytes))
}

#[async_trait]
impl Store for PostgresStore {
    fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    async fn close(&self) {
        PostgresStore::close(self).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.p().await?).await?;
        Ok(())
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(self.p().await?)
            .await?)
    }

    async fn meta_init(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(self.p().await?)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1").bind(key).fetch_one(self.p().await?).await?)
    }

    async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.p().await?)
        .await?;
        Ok(())
    }

    async fn create_site(&self, name: &str) -> Result<Site> {
        let site = Site {
            id: new_id(),
            name: name.to_owned(),
            widget_key: new_widget_key(),
            settings: serde_json::json!({}),
            created_at: now_ms(),
        };
        let mut tx = self.p().await?.begin().await?;
        sqlx::query("INSERT INTO sites (id, name, widget_key, settings, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&site.id)
            .bind(&site.name)
            .bind(&site.widget_key)
            .bind(site.settings.to_string())
            .bind(site.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO groups (id, site_id, name, is_default, created_at) VALUES ($1, $2, 'General', TRUE, $3)",
        )
        .bind(new_id())
        .bind(&site.id)
        .bind(site.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(site)
    }

    async fn site(&self, id: &str) -> Result<Option<Site>> {
        sqlx::query("SELECT * FROM sites WHERE id = $1")
            .bind(id)
            .fetch_optional(self.p().await?)
            .await?
            .map(|r| site_from_row(&r))
            .transpose()
    }

    async fn site_by_widget_key(&self, key: &str) -> Result<Option<Site>> {
        sqlx::query("SELECT * FROM sites WHERE widget_key = $1")
            .bind(key)
            .fetch_optional(self.p().await?)
            .await?
            .map(|r| site_from_row(&r))
            .transpose()
    }

    async fn sites(&self) -> Result<Vec<Site>> {
        sqlx::query("SELECT * FROM sites ORDER BY created_at")
            .fetch_all(self.p().await?)
            .await?
            .iter()
            .map(site_from_row)
            .collect()
    }

    async fn create_group(&self, site_id: &str, name: &str, is_default: bool) -> Result<Group> {
        let group = Group {
            id: new_id(),
            site_id: site_id.to_owned(),
            name: name.to_owned(),
            is_default,
            email: None,
            hours: None,
            deleted_at: None,
        };
        sqlx::query("INSERT INTO groups (id, site_id, name, is_default, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&group.id)
            .bind(site_id)
            .bind(name)
            .bind(is_default)
            .bind(now_ms())
            .execute(self.p().await?)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => Error::conflict("a group with that name exists"),
                e => e.into(),
            })?;
        Ok(group)
    }

    async fn groups(&self, site_id: &str) -> Result<Vec<Group>> {
        sqlx::query("SELECT * FROM groups WHERE site_id = $1 ORDER BY is_default DESC, name")
            .bind(site_id)
            .fetch_all(self.p().await?)
            .await?
            .iter()
            .map(group_from_row)
            .collect()
    }

    async fn group(&self, id: &str) -> Result<Option<Group>> {
        sqlx::query("SELECT * FROM groups WHERE id = $1")
            .bind(id)
            .fetch_optional(self.p().await?)
            .await?
            .map(|r| group_from_row(&r))
            .transpose()
    }

    async fn delete_group(&self, site_id: &str, group_id: &str, now: i64) -> Result<bool> {
        use super::sqlite::{GROUP_MEMBERS_OUT, GROUP_TO_DELETE, MARK_GROUP_DELETED};
        let mut tx = self.p().await?.begin().await?;
        let is_default: Option<bool> =
            sqlx::query_scalar(GROUP_TO_DELETE).bind(group_id).bind(site_id).fetch_optional(&mut *tx).await?;
        match is_default {
            None => return Ok(false),
            Some(true) => return Err(Error::conflict("the default group cannot be deleted")),
            Some(false) => {}
        }
        sqlx::query(MARK_GROUP_DELETED).bind(group_id).bind(now).execute(&mut *tx).await?;
        sqlx::query(GROUP_MEMBERS_OUT).bind(group_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn add_agent_to_group(&self, agent_id: &str, group_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO agent_groups (agent_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(agent_id)
            .bind(group_id)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    async fn update_group(
        &self,
        group_id: &str,
        name: Option<&str>,
        email: Option<Option<&str>>,
        hours: Option<Option<&crate::hours::Schedule>>,
    ) -> Result<()> {
        let hours = super::hours_to_stored(hours)?;
        let mut tx = self.p().await?.begin().await?;
        if let Some(name) = name {
            sqlx::query("UPDATE groups SET name = $1 WHERE id = $2")
                .bind(name)
                .bind(group_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => {
                        Error::conflict("the site has a group of that name")
                    }
                    e => e.into(),
                })?;
        }
        if let Some(email) = email {
            sqlx::query("UPDATE groups SET email = $1 WHERE id = $2")
                .bind(email)
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(hours) = hours {
            sqlx::query("UPDATE groups SET hours = $1 WHERE id = $2")
                .bind(hours)
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_agent(&self, new: NewAgent<'_>) -> Result<Agent> {
        let agent = new.into_agent();
        let mut tx = self.p().await?.begin().await?;
        insert_agent(&mut tx, &agent).await?;
        tx.commit().await?;
        Ok(agent)
    }

    async fn agent(&self, id: &str) -> Result<Option<Agent>> {
        sqlx::query("SELECT * FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(self.p().await?)
            .await?
            .map(|r| agent_from_row(&r))
            .transpose()
    }

    async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>> {
        sqlx::query("SELECT * FROM agents WHERE email = $1")
            .bind(email)
            .fetch_optional(self.p().await?)
            .await?
            .map(|r| agent_from_row(&r))
            .transpose()
    }

    async fn agents(&self, site_id: &str) -> Result<Vec<Agent>> {
        sqlx::query("SELECT * FROM agents WHERE site_id = $1 AND role <> 'probe' ORDER BY name, email")
            .bind(site_id)
            .fetch_all(self.p().await?)
            .await?
            .iter()
            .map(agent_from_row)
            .collect()
    }

    async fn set_availability(&self, agent_id: &str, availability: Availability) -> Result<()> {
        sqlx::query("UPDATE agents SET availability = $1 WHERE id = $2")
            .bind(availability.as_str())
            .bind(agent_id)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    async fn routing_candidates(&self, group_id: &str) -> Result<Vec<RoutingCandidate>> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, a.availability, a.chat_limit, a.last_assigned_at, \
               (SELECT count(*) FROM conversations c WHERE c.agent_id = a.id AND c.status = 'active') AS active_chats \
             FROM agents a JOIN agent_groups g ON g.agent_id = a.id \
             WHERE g.group_id = $1 AND a.active AND a.role <> 'probe'",
        )
        .bind(group_id)
        .fetch_all(self.p().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let availability: String = r.try_get("availability")?;
                Ok(RoutingCandidate {
                    agent_id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    availability: Availability::parse(&availability)
                        .ok_or_else(|| bad_row("availability", &availability))?,
                    active_chats: r.try_get("active_chats")?,
                    chat_limit: r.try_get("chat_limit")?,
                    last_assigned_at: r.try_get("last_assigned_at")?,
                })
            })
            .collect()
    }

    async fn create_session(&self, agent_id: &str, secret_hash: &str, expires_at: i64) -> Result<Session> {
        let now = now_ms();
        let session = Session {
            id: new_id(),
            agent_id: agent_id.to_owned(),
            created_at: now,
            last_used_at: now,
            expires_at,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO sessions (id, agent_id, secret_hash, created_at, last_used_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.id)
        .bind(agent_id)
        .bind(secret_hash)
        .bind(now)
        .bind(now)
        .bind(expires_at)
        .execute(self.p().await?)
        .await?;
        Ok(session)
    }

    async fn session_by_secret_hash(&self, secret_hash: &str) -> Result<Option<Session>> {
        sqlx::query("SELECT * FROM sessions WHERE secret_hash = $1")
            .bind(secret_hash)
            .fetch_optional(self.p().await?)
            .await?
            .map(|r| session_from_row(&r))
            .transpose()
    }

    async fn session(&self, id: &str) -> Result<Option<Session>> {
        sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.p().await?)
            .await?
            .map(|r| session_from_row(&r))
            .transpose()
    }

    async fn touch_session(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_used_at = GREATEST(last_used_at, $1) WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    async fn sessions_revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT id, revoked_at FROM sessions WHERE revoked_at >= $1")
            .bind(since)
            .fetch_all(self.p().await?)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("revoked_at")?))).collect()
    }

    async fn revoke_session(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    async fn create_visitor(&self, site_id: &str, update: VisitorUpdate) -> Result<Visitor> {
        let now = now_ms();
        let visitor = Visitor {
            id: new_id(),
            site_id: site_id.to_owned(),
            name: update.name,
            email: update.email,
            page_url: update.page_url,
            referrer: update.referrer,
            user_agent: update.user_agent,
            first_seen: now,
            last_seen: now,
        };
        sqlx::query(
            "INSERT INTO visitors (id, site_id, name, email, page_url, referrer, user_agent, first_seen, last_seen, \
             last_ip) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&visitor.id)
        .bind(site_id)
        .bind(&visitor.name)
        .bind(&visitor.email)
        .bind(&visitor.page_url)
        .bind(&visitor.referrer)
        .bind(&visitor.user_agent)
        .bind(now)
        .bind(now)
        .bind(update.ip)
        .execute(self.p().await?)
        .await?;
        Ok(visitor)
    }

    async fn visitor(&self, id: &str) -> Result<Option<Visitor>> {
        sqlx::query("SELECT * FROM visitors WHERE id = $1")
            .bind(id)
            .fetch_optional(self.p().await?)
            .await?
            .map(|r| visitor_from_row(&r))
            .transpose()
    }

    async fn update_visitor(&self, id: &str, update: VisitorUpdate) -> Result<()> {
        sqlx::query(
            "UPDATE visitors SET name = coalesce($1, name), email = coalesce($2, email), \
             page_url = coalesce($3, page_url), referrer = coalesce($4, referrer), \
             user_agent = coalesce($5, user_agent), last_seen = coalesce($6, last_seen), \
             last_ip = coalesce($8, last_ip) WHERE id = $7",
        )
        .bind(update.name)
        .bind(update.email)
        .bind(update.page_url)
        .bind(update.referrer)
        .bind(update.user_agent)
        .bind((!update.not_seen).then(now_ms))
        .bind(id)
        .bind(update.ip)
        .execute(self.p().await?)
        .await?;
        Ok(())
    }

    async fn create_conversation(
        &self,
        site_id: &str,
        visitor_id: &str,
        group_id: &str,
        status: ConversationStatus,
    ) -> Result<Conversation> {
        let conv = Conversation {
            id: new_id(),
            site_id: site_id.to_owned(),
            visitor_id: visitor_id.to_owned(),
            group_id: group_id.to_owned(),
            agent_id: None,
            status,
            last_seq: 0,
            created_at: now_ms(),
            assigned_at: None,
            closed_at: None,
        };
        sqlx::query(
            "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&conv.id)
        .bind(site_id)
        .bind(visitor_id)
        .bind(group_id)
        .bind(status.as_str())
        .bind(conv.created_at)
        .execute(self.p().await?)
        .await?;
        Ok(conv)
    }

    async fn conversation(&self, id: &str) -> Result<Option<Conversation>> {
        sqlx::query("SELECT * FROM conversations WHERE id = $1")
            .bind(id)
            .fetch_optional(self.p().await?)
            .await?
            .map(|r| conversation_from_row(&r))
            .transpose()
    }

    async fn conversations(&self, site_id: &str, filter: ConversationFilter) -> Result<Vec<Conversation>> {
        let (sql, args) = filter.sql("conversations", "site_id", "$");
        // Built from fixed fragments only; every value is a parameter.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(site_id);
        for arg in args {
            query = match arg {
                FilterArg::Text(t) => query.bind(t),
                FilterArg::Int(i) => query.bind(i),
            };
        }
        let rows = query.fetch_all(self.p().await?).await?;
        rows.iter().map(conversation_from_row).collect()
    }

    async fn queue(&self, site_id: &str) -> Result<Vec<Conversation>> {
        sqlx::query("SELECT * FROM conversations WHERE site_id = $1 AND status = 'queued' ORDER BY created_at, id")
            .bind(site_id)
            .fetch_all(self.p().await?)
            .await?
            .iter()
            .map(conversation_from_row)
            .collect()
    }

    async fn apply(&self, conversation_id: &str, change: Change) -> Result<Applied> {
        self.apply_with(conversation_id, None, change).await
    }

    async fn apply_guarded(&self, conversation_id: &str, guard: Guard, change: Change) -> Result<Applied> {
        self.apply_with(conversation_id, Some(guard), change).await
    }

    async fn events_after(&self, conversation_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        sqlx::query("SELECT * FROM events WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
            .bind(conversation_id)
            .bind(after)
            .bind(limit)
            .fetch_all(self.p().await?)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn search_chats(
        &self,
        site_id: &str,
        search: super::search::ChatSearch,
    ) -> Result<Vec<super::search::ChatHit>> {
        self.find_chats(site_id, search).await
    }

    async fn set_site_settings(&self, site_id: &str, settings: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE sites SET settings = $1 WHERE id = $2")
            .bind(settings.to_string())
            .bind(site_id)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    async fn rename_site(&self, site_id: &str, name: &str) -> Result<()> {
        sqlx::query("UPDATE sites SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(site_id)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    async fn update_agent(&self, agent_id: &str, update: AgentUpdate) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET name = coalesce($1, name), role = coalesce($2, role), \
             active = coalesce($3, active), chat_limit = coalesce($4, chat_limit), \
             password_hash = coalesce($5, password_hash), lead_emails = coalesce($6, lead_emails) WHERE id = $7",
        )
        .bind(update.name)
        .bind(update.role.map(Role::as_str))
        .bind(update.active)
        .bind(update.chat_limit)
        .bind(update.password_hash)
        .bind(update.lead_emails)
        .bind(agent_id)
        .execute(self.p().await?)
        .await?;
        Ok(())
    }

    async fn set_agent_photo(&self, agent_id: &str, photo: Option<AgentPhoto>, at: i64) -> Result<()> {
        let mut tx = self.p().await?.begin().await?;
        match photo {
            Some(p) => {
                sqlx::query(
                    "INSERT INTO agent_photos (agent_id, content_type, bytes, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (agent_id) DO UPDATE SET content_type = excluded.content_type, \
                     bytes = excluded.bytes, updated_at = excluded.updated_at",
                )
                .bind(agent_id)
                .bind(p.content_type)
                .bind(p.bytes)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE agents SET photo_at = $1 WHERE id = $2")
                    .bind(at)
                    .bind(agent_id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM agent_photos WHERE agent_id = $1").bind(agent_id).execute(&mut *tx).await?;
                sqlx::query("UPDATE agents SET photo_at = NULL WHERE id = $1").bind(agent_id).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn agent_photo(&self, agent_id: &str) -> Result<Option<AgentPhoto>> {
        let row = sqlx::query("SELECT content_type, bytes FROM agent_photos WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_optional(self.p().await?)
            .await?;
        row.map(|r| Ok(AgentPhoto { content_type: r.try_get("content_type")?, bytes: r.try_get("bytes")? })).transpose()
    }

    async fn revoke_agent_sessions(&self, agent_id: &str, at: i64) -> Result<Vec<String>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = $1 WHERE agent_id = $2 AND revoked_at IS NULL RETURNING id",
        )
        .bind(at)
        .bind(agent_id)
        .fetch_all(self.p().await?)
        .await?;
        Ok(ids)
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT agent_id FROM agent_groups WHERE group_id = $1 ORDER BY agent_id")
            .bind(group_id)
            .fetch_all(self.p().await?)
            .await?)
    }

    async fn canned_responses(&self, site_id: &str) -> Result<Vec<CannedResponse>> {
        let rows = sqlx::query("SELECT * FROM canned_responses WHERE site_id = $1 ORDER BY shortcut")
            .bind(site_id)
            .fetch_all(self.p().await?)
            .await?;
        rows.iter().map(canned_from_row).collect()
    }

    async fn create_canned_response(&self, site_id: &str, shortcut: &str, body: &str) -> Result<CannedResponse> {
        let canned = CannedResponse {
            id: new_id(),
            site_id: site_id.to_owned(),
            shortcut: shortcut.to_owned(),
            body: body.to_owned(),
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO canned_responses (id, site_id, shortcut, body, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&canned.id)
        .bind(site_id)
        .bind(shortcut)
        .bind(body)
        .bind(canned.created_at)
        .execute(self.p().await?)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Error::conflict("that shortcut exists"),
            e => e.into(),
        })?;
        Ok(canned)
    }

    async fn delete_canned_response(&self, site_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM canned_responses WHERE id = $1 AND site_id = $2")
            .bind(id)
            .bind(site_id)
            .execute(self.p().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn update_canned_response(
        &self,
        site_id: &str,
        id: &str,
        shortcut: &str,
        body: &str,
    ) -> Result<Option<CannedResponse>> {
        let row = sqlx::query(
            "UPDATE canned_responses SET shortcut = $1, body = $2 WHERE id = $3 AND site_id = $4 RETURNING *",
        )
        .bind(shortcut)
        .bind(body)
        .bind(id)
        .bind(site_id)
        .fetch_optional(self.p().await?)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => Error::conflict("that shortcut exists"),
            e => e.into(),
        })?;
        row.as_ref().map(canned_from_row).transpose()
    }

    async fn remove_agent_from_group(&self, agent_id: &str, group_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM agent_groups WHERE agent_id = $1 AND group_id = $2")
            .bind(agent_id)
            .bind(group_id)
            .execute(self.p().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn leave_message(&self, message: outbox::OfflineMessage) -> Result<Applied> {
        self.outbox_leave_message(message).await
    }

    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<outbox::Delivery>> {
        self.outbox_claim(now, lease_until, limit).await
    }

    async fn release_delivery_leases(&self) -> Result<()> {
        self.outbox_release_leases().await
    }

    async fn record_attempt(&self, id: &str, attempt: outbox::Attempt) -> Result<()> {
        self.outbox_record(id, attempt).await
    }

    async fn deliveries_page(
        &self,
        scope: outbox::Scope<'_>,
        page: outbox::DeliveryPage,
    ) -> Result<Vec<outbox::Delivery>> {
        self.outbox_list(scope, page).await
    }

    async fn retry_delivery(&self, scope: outbox::Scope<'_>, id: &str, now: i64, give_up_at: i64) -> Result<bool> {
        self.outbox_retry(scope, id, now, give_up_at).await
    }

    async fn queued_deliveries(&self) -> Result<i64> {
        self.outbox_queued().await
    }

    async fn create_invitation(&self, invitation: invitations::Invitation, email: outbox::NewDelivery) -> Result<()> {
        self.invitations_create(invitation, email).await
    }

    async fn open_invitations(&self, site_id: &str) -> Result<Vec<invitations::Invitation>> {
        self.invitations_open(site_id).await
    }

    async fn invitation(&self, id: &str) -> Result<Option<invitations::Invitation>> {
        self.invitations_get(id).await
    }

    async fn revoke_invitation(&self, site_id: &str, id: &str, now: i64) -> Result<bool> {
        self.invitations_revoke(site_id, id, now).await
    }

    async fn accept_invitation(&self, id: &str, password_hash: &str, now: i64) -> Result<Agent> {
        self.invitations_accept(id, password_hash, now).await
    }

    async fn queue_deliveries(&self, deliveries: Vec<outbox::NewDelivery>) -> Result<usize> {
        self.outbox_queue(deliveries).await
    }

    async fn missed_candidates(&self, since: i64, limit: i64) -> Result<Vec<missed::ChatWait>> {
        self.missed_scan(since, limit).await
    }

    async fn mark_missed(&self, mark: missed::MissedChat) -> Result<bool> {
        self.missed_mark(mark).await
    }

    async fn unarchived_closed(&self, site_id: &str, since: i64, limit: i64) -> Result<Vec<Conversation>> {
        self.archive_scan(site_id, since, limit).await
    }

    async fn missed_chats(
        &self,
        site_id: &str,
        after: (i64, String),
        limit: i64,
    ) -> Result<Vec<(Conversation, missed::Missed)>> {
        self.missed_list(site_id, after, limit).await
    }

    async fn report_facts(
        &self,
        site_id: &str,
        from: i64,
        to: i64,
        agent_id: Option<&str>,
        sink: Box<dyn super::reports::FactSink>,
    ) -> Result<Box<dyn super::reports::FactSink>> {
        self.report_facts(site_id, from, to, agent_id, sink).await
    }

    async fn keep_report_summaries(&self, now: i64) -> Result<super::reports::SummariesKept> {
        self.keep_report_summaries(now).await
    }

    async fn create_ban(&self, ban: bans::Ban) -> Result<()> {
        self.ban_insert(ban).await
    }

    async fn bans(&self, site_id: &str, after: (i64, String), limit: i64) -> Result<Vec<bans::Ban>> {
        self.ban_list(site_id, after, limit).await
    }

    async fn lift_ban(&self, site_id: &str, id: &str, by: &str, at: i64) -> Result<Option<bans::Ban>> {
        self.ban_lift(site_id, id, by, at).await
    }

    async fn active_bans(&self, now: i64) -> Result<Vec<bans::Ban>> {
        self.ban_active(now).await
    }

    async fn bans_changed_at(&self) -> Result<Option<i64>> {
        self.ban_changed().await
    }

    async fn create_greeting(&self, rule: greetings::GreetingRule) -> Result<()> {
        self.greeting_insert(rule).await
    }

    async fn greetings(&self, site_id: &str) -> Result<Vec<greetings::GreetingRule>> {
        self.greeting_list(site_id).await
    }

    async fn update_greeting(&self, rule: greetings::GreetingRule) -> Result<bool> {
        self.greeting_update(rule).await
    }

    async fn delete_greeting(&self, site_id: &str, id: &str) -> Result<bool> {
        self.greeting_delete(site_id, id).await
    }

    async fn greeting_shown(&self, site_id: &str, id: &str, at: i64) -> Result<bool> {
        self.greeting_count_shown(site_id, id, at).await
    }

    async fn greeting_figures(&self, site_id: &str, from: i64, to: i64) -> Result<Vec<greetings::GreetingFigures>> {
        self.greeting_figures(site_id, from, to).await
    }

    async fn greeting_started(&self, conversation_id: &str, rule_id: &str, at: i64) -> Result<()> {
        self.greeting_record(conversation_id, rule_id, at).await
    }

    async fn greeting_of(&self, conversation_id: &str) -> Result<Option<String>> {
        self.greeting_rule_of(conversation_id).await
    }

    async fn visitor_ip(&self, visitor_id: &str) -> Result<Option<String>> {
        self.ban_visitor_ip(visitor_id).await
    }

    async fn append_audit(&self, entry: audit::AuditEntry) -> Result<()> {
        self.audit_append(entry).await
    }

    async fn audit_log(&self, site_id: &str, after: (i64, String), limit: i64) -> Result<Vec<audit::AuditEntry>> {
        self.audit_page(site_id, after, limit).await
    }

    async fn expire_audit(&self, site_id: &str, before: i64, limit: i64) -> Result<u64> {
        self.audit_expire(site_id, before, limit).await
    }

    async fn create_api_token(&self, token: api_tokens::ApiToken, hash: String) -> Result<()> {
        self.api_token_insert(token, hash).await
    }

    async fn api_token_by_hash(&self, hash: &str) -> Result<Option<api_tokens::ApiToken>> {
        self.api_token_find(hash).await
    }

    async fn api_tokens(&self, site_id: &str) -> Result<Vec<api_tokens::ApiToken>> {
        self.api_token_list(site_id).await
    }

    async fn revoke_api_token(&self, site_id: &str, id: &str, at: i64) -> Result<Option<api_tokens::ApiToken>> {
        self.api_token_revoke(site_id, id, at).await
    }

    async fn touch_api_token(&self, id: &str, at: i64) -> Result<()> {
        self.api_token_touch(id, at).await
    }

    async fn claim_idempotency_key(&self, claim: idempotency::KeyClaim) -> Result<Option<idempotency::Claimed>> {
        self.idempotency_claim(claim).await
    }

    async fn finish_idempotency_key(
        &self,
        scope: idempotency::KeyScope,
        at: i64,
        answer: idempotency::StoredAnswer,
    ) -> Result<()> {
        self.idempotency_finish(scope, at, answer).await
    }

    async fn release_idempotency_key(&self, scope: idempotency::KeyScope, at: i64) -> Result<()> {
        self.idempotency_release(scope, at).await
    }

    async fn forget_idempotency_keys(&self, before: i64) -> Result<u64> {
        self.idempotency_forget(before).await
    }

    async fn delete_webhook(&self, site_id: &str, id: &str) -> Result<Option<webhooks::Endpoint>> {
        self.hook_delete(site_id, id).await
    }

    async fn create_webhook(&self, endpoint: webhooks::Endpoint) -> Result<()> {
        self.hook_insert(endpoint).await
    }

    async fn webhooks(&self, site_id: &str) -> Result<Vec<webhooks::Endpoint>> {
        self.hook_list(site_id).await
    }

    async fn webhook(&self, id: &str) -> Result<Option<webhooks::Endpoint>> {
        self.hook_get(id).await
    }

    async fn update_webhook(
        &self,
        site_id: &str,
        id: &str,
        change: webhooks::EndpointChange,
    ) -> Result<Option<webhooks::Endpoint>> {
        self.hook_update(site_id, id, change).await
    }

    async fn webhook_outcome(&self, id: &str, ok: bool, at: i64) -> Result<()> {
        self.hook_outcome(id, ok, at).await
    }

    async fn disable_webhook(
        &self,
        id: &str,
        failing_before: i64,
        reason: &str,
        emails: Vec<outbox::NewDelivery>,
    ) -> Result<bool> {
        self.hook_disable(id, failing_before, reason, emails).await
    }

    async fn erase_visitor(&self, site_id: &str, visitor_id: &str) -> Result<erasure::Erased> {
        self.erase(site_id, visitor_id).await
    }

    async fn put_attachment(&self, attachment: attachments::Attachment, spooled: &std::path::Path) -> Result<()> {
        self.attachment_put(attachment, spooled).await
    }

    async fn attachment(&self, id: &str) -> Result<Option<attachments::Attachment>> {
        self.attachment_one(id).await
    }

    async fn attachment_bytes(&self, sha256: &str) -> Result<attachments::ByteStream> {
        self.attachment_read(sha256).await
    }

    async fn drop_orphan_attachments(&self, before: i64) -> Result<usize> {
        self.attachment_orphans(before).await
    }

    async fn expire(&self, site_id: &str, cutoff: i64, now: i64, batch: i64) -> Result<retention::Expired> {
        self.expire(site_id, cutoff, now, batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The migration that began keeping `schema_requires`.
    const REQUIRES_SINCE: i64 = 23;

    #[test]
    fn an_older_binary_serves_a_schema_that_only_expanded() {
        assert!(may_serve(20, 0, 23), "not newer");
        assert!(may_serve(25, 23, 23), "newer, but only expand migrations since 23");
        assert!(!may_serve(25, 25, 23), "migration 25 contracted");
        assert!(!may_serve(25, 24, 23));
        assert!(may_serve(25, 25, 25));
    }

    #[test]
    fn migrations_that_take_away_say_so() {
        let contracting = ["DROP ", "RENAME ", " TYPE ", "SET NOT NULL", "ADD CONSTRAINT"];
        for m in MIGRATOR.iter().filter(|m| m.version >= REQUIRES_SINCE) {
            let sql = without_dropped_foreign_keys(&m.sql.as_str().to_uppercase());
            let marks = sql.contains("'SCHEMA_REQUIRES'") && sql.contains(&format!("'{}'", m.version));
            if let Some(word) = contracting.iter().find(|w| sql.contains(*w)) {
                assert!(
                    marks,
                    "migration {} has {word:?}: an older release may not run against it, so it must set \
                     meta.schema_requires to '{}' (docs/deploy.md, expand-then-contract)",
                    m.version, m.version
                );
            }
        }
        let first = MIGRATOR.iter().find(|m| m.version == REQUIRES_SINCE).expect("the migration that starts it");
        assert!(first.sql.as_str().contains("schema_requires"));
    }

    /// `sql` (upper case) without its `DROP CONSTRAINT …_FKEY`s: dropping a
    /// foreign key (PostgreSQL names them `table_column_fkey`) only lets
    /// more rows in, which no older release can mind.
    fn without_dropped_foreign_keys(sql: &str) -> String {
        let mut parts = sql.split("DROP CONSTRAINT ");
        let mut kept = parts.next().unwrap_or_default().to_owned();
        for part in parts {
            let name_ends = part.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(part.len());
            if part[..name_ends].ends_with("_FKEY") {
                kept += &part[name_ends..];
            } else {
                kept += "DROP CONSTRAINT ";
                kept += part;
            }
        }
        kept
    }

    #[test]
    fn a_dropped_foreign_key_takes_nothing_away() {
        let sql = "ALTER TABLE EVENTS DROP CONSTRAINT EVENTS_CONVERSATION_ID_FKEY;";
        assert!(!without_dropped_foreign_keys(sql).contains("DROP "));
        let unique = "ALTER TABLE T DROP CONSTRAINT T_EMAIL_KEY; ALTER TABLE T DROP CONSTRAINT T_X_FKEY;";
        assert_eq!(without_dropped_foreign_keys(unique), "ALTER TABLE T DROP CONSTRAINT T_EMAIL_KEY; ALTER TABLE T ;");
    }
}
