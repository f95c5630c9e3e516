//! The embedded store: one SQLite file in WAL mode.
//!
//! Reads go through a small pool; all writes go through a pool of exactly one
//! connection, because SQLite has one writer anyway and queuing in the pool
//! is cheaper than retrying on `SQLITE_BUSY`. Conversation changes
//! ([`Store::apply`]) are funnelled through the group-commit writer in
//! `sqlite_writer.rs`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::sqlite_writer::PendingChange;
use super::*;
use crate::error::{Error, Result};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// Refuse a data dir whose schema is newer than this build knows: an older
/// binary must not write to tables it does not understand.
async fn check_not_newer(pool: &SqlitePool, dir: &Path) -> Result<()> {
    let migrated: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_optional(pool)
            .await?;
    if migrated.is_none() {
        return Ok(());
    }
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?;
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    match applied {
        Some(schema) if schema > known => Err(Error::NewerSchema(format!(
            "data dir {} was written by a newer Holdfast (schema {schema}, this binary knows {known})",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

pub struct SqliteStore {
    /// The data dir (the status page's runner lock lives there too).
    dir: PathBuf,
    pub(super) read: SqlitePool,
    /// Readers kept for the critical lane (login, a resume's reads,
    /// session refresh, `/readyz`), so site-wide routing and dashboard reads that
    /// fill `read` during a storm never make a reconnect or a health
    /// check wait for a connection.
    critical: SqlitePool,
    pub(super) write: SqlitePool,
    /// Injected failures, for rehearsals and tests of "the store is down".
    faults: Arc<Faults>,
    /// Queue into the group-commit task.
    changes: mpsc::Sender<PendingChange>,
}

impl SqliteStore {
    /// Open (creating if needed) `holdfast.db` in `dir` and apply migrations.
    pub async fn open(dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(anyhow::anyhow!("cannot create data dir {}: {e}", dir.display())))?;
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(Error::internal)?
            .filename(dir.join("holdfast.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL for the pools (visitors, conversations, sessions, admin
            // data): survives a process crash, and a power loss keeps all
            // but the last moments. Messages and every conversation change
            // go through the group-commit writer, which commits with FULL:
            // its fsync of the WAL also makes every earlier commit durable,
            // so an acknowledged message never depends on a lost row.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_slow_threshold(Duration::from_millis(2500))
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|e| Error::Store(anyhow::anyhow!("cannot open database in {}: {e}", dir.display())))?;
        check_not_newer(&write, dir).await?;
        MIGRATOR.run(&write).await.map_err(|e| Error::Store(anyhow::anyhow!("migration failed: {e}")))?;
        // WAL readers do not block each other or the writer; a resume storm
        // is many small indexed reads at once.
        let read_only = options.read_only(true);
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(read_only.clone())
            .await?;
        // Each pool warns of a slow acquire at its own threshold, so the
        // log names the pool that ran short (critical 1.5 s, read 2 s,
        // write 2.5 s).
        let critical = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_slow_threshold(Duration::from_millis(1500))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(read_only)
            .await?;
        let tx = super::sqlite_writer::spawn(&dir.join("holdfast.db"))?;
        let faults = Arc::new(Faults::default());
        Ok(SqliteStore { dir: dir.to_owned(), read, critical, write, faults, changes: tx })
    }

    /// Hand a change to the group-commit writer and wait for its outcome.
    async fn send_change(&self, conversation_id: &str, guard: Option<Guard>, change: Change) -> Result<Applied> {
        self.faults.check().await?;
        let (reply, rx) = oneshot::channel();
        let pending = PendingChange { conversation_id: conversation_id.to_owned(), guard, change, reply };
        self.changes.send(pending).await.map_err(|_| Error::Unavailable(1))?;
        rx.await.map_err(|_| Error::Unavailable(1))?
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The fault switch of this store (see [`Faults`]).
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    async fn r(&self) -> Result<&SqlitePool> {
        self.faults.check().await?;
        Ok(&self.read)
    }

    /// The critical lane's readers (see `critical`).
    async fn rc(&self) -> Result<&SqlitePool> {
        self.faults.check().await?;
        Ok(&self.critical)
    }

    async fn w(&self) -> Result<&SqlitePool> {
        self.faults.check().await?;
        Ok(&self.write)
    }

    /// Close both pools, waiting for queued writes to finish.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
        self.critical.close().await;
    }
}

fn bad_row(what: &str, value: &str) -> Error {
    Error::Store(anyhow::anyhow!("unexpected {what} in database: {value:?}"))
}

fn site_from_row(r: &SqliteRow) -> Result<Site> {
    let settings: String = r.try_get("settings")?;
    Ok(Site {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        widget_key: r.try_get("widget_key")?,
        settings: serde_json::from_str(&settings).unwrap_or_else(|_| serde_json::json!({})),
        created_at: r.try_get("created_at")?,
    })
}

fn agent_from_row(r: &SqliteRow) -> Result<Agent> {
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
        active: r.try_get::<i64, _>("active")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

fn group_from_row(r: &SqliteRow) -> Result<Group> {
    Ok(Group {
        id: r.try_get("id")?,
        site_id: r.try_get("site_id")?,
        name: r.try_get("name")?,
        is_default: r.try_get::<i64, _>("is_default")? != 0,
    })
}

fn session_from_row(r: &SqliteRow) -> Result<Session> {
    Ok(Session {
        id: r.try_get("id")?,
        agent_id: r.try_get("agent_id")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn visitor_from_row(r: &SqliteRow) -> Result<Visitor> {
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

fn conversation_from_row(r: &SqliteRow) -> Result<Conversation> {
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

fn event_from_row(r: &SqliteRow) -> Result<StoredEvent> {
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
impl Store for SqliteStore {
    fn faults(&self) -> Arc<Faults> {
        SqliteStore::faults(self)
    }

    async fn close(&self) {
        SqliteStore::close(self).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.rc().await?).await?;
        Ok(())
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?").bind(key).fetch_optional(self.r().await?).await?)
    }

    async fn meta_init(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(value)
            .execute(self.w().await?)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?").bind(key).fetch_one(self.w().await?).await?)
    }

    async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.w().await?)
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
        let mut tx = self.w().await?.begin().await?;
        sqlx::query("INSERT INTO sites (id, name, widget_key, settings, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&site.id)
            .bind(&site.name)
            .bind(&site.widget_key)
            .bind(site.settings.to_string())
            .bind(site.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO groups (id, site_id, name, is_default, created_at) VALUES (?, ?, 'General', 1, ?)")
            .bind(new_id())
            .bind(&site.id)
            .bind(site.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(site)
    }

    async fn site(&self, id: &str) -> Result<Option<Site>> {
        sqlx::query("SELECT * FROM sites WHERE id = ?")
            .bind(id)
            .fetch_optional(self.r().await?)
            .await?
            .map(|r| site_from_row(&r))
            .transpose()
    }

    async fn site_by_widget_key(&self, key: &str) -> Result<Option<Site>> {
        sqlx::query("SELECT * FROM sites WHERE widget_key = ?")
            .bind(key)
            .fetch_optional(self.r().await?)
            .await?
            .map(|r| site_from_row(&r))
            .transpose()
    }

    async fn sites(&self) -> Result<Vec<Site>> {
        sqlx::query("SELECT * FROM sites ORDER BY created_at")
            .fetch_all(self.r().await?)
            .await?
            .iter()
            .map(site_from_row)
            .collect()
    }

    async fn create_group(&self, site_id: &str, name: &str, is_default: bool) -> Result<Group> {
        let group = Group { id: new_id(), site_id: site_id.to_owned(), name: name.to_owned(), is_default };
        sqlx::query("INSERT INTO groups (id, site_id, name, is_default, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&group.id)
            .bind(site_id)
            .bind(name)
            .bind(is_default as i64)
            .bind(now_ms())
            .execute(self.w().await?)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => Error::conflict("a group with that name exists"),
                e => e.into(),
            })?;
        Ok(group)
    }

    async fn groups(&self, site_id: &str) -> Result<Vec<Group>> {
        sqlx::query("SELECT * FROM groups WHERE site_id = ? ORDER BY is_default DESC, name")
            .bind(site_id)
            .fetch_all(self.r().await?)
            .await?
            .iter()
            .map(group_from_row)
            .collect()
    }

    async fn group(&self, id: &str) -> Result<Option<Group>> {
        sqlx::query("SELECT * FROM groups WHERE id = ?")
            .bind(id)
            .fetch_optional(self.r().await?)
            .await?
            .map(|r| group_from_row(&r))
            .transpose()
    }

    async fn add_agent_to_group(&self, agent_id: &str, group_id: &str) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO agent_groups (agent_id, group_id) VALUES (?, ?)")
            .bind(agent_id)
            .bind(group_id)
            .execute(self.w().await?)
            .await?;
        Ok(())
    }

    async fn create_agent(&self, new: NewAgent<'_>) -> Result<Agent> {
        let agent = Agent {
            id: new_id(),
            site_id: new.site_id.to_owned(),
            email: new.email.to_owned(),
            name: new.name.to_owned(),
            role: new.role,
            password_hash: new.password_hash.to_owned(),
            chat_limit: new.chat_limit,
            availability: Availability::Offline,
            active: true,
            created_at: now_ms(),
        };
        let mut tx = self.w().await?.begin().await?;
        sqlx::query(
            "INSERT INTO agents (id, site_id, email, name, role, password_hash, chat_limit, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        // Every agent starts in the site's default group; the status probe
        // in none, so routing never sees it.
        if agent.role != Role::Probe {
            sqlx::query(
                "INSERT INTO agent_groups (agent_id, group_id) SELECT ?, id FROM groups WHERE site_id = ? AND is_default = 1",
            )
            .bind(&agent.id)
            .bind(&agent.site_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(agent)
    }

    async fn agent(&self, id: &str) -> Result<Option<Agent>> {
        sqlx::query("SELECT * FROM agents WHERE id = ?")
            .bind(id)
            .fetch_optional(self.rc().await?)
            .await?
            .map(|r| agent_from_row(&r))
            .transpose()
    }

    async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>> {
        sqlx::query("SELECT * FROM agents WHERE email = ?")
            .bind(email)
            .fetch_optional(self.rc().await?)
            .await?
            .map(|r| agent_from_row(&r))
            .transpose()
    }

    async fn agents(&self, site_id: &str) -> Result<Vec<Agent>> {
        sqlx::query("SELECT * FROM agents WHERE site_id = ? AND role <> 'probe' ORDER BY name, email")
            .bind(site_id)
            .fetch_all(self.r().await?)
            .await?
            .iter()
            .map(agent_from_row)
            .collect()
    }

    async fn set_availability(&self, agent_id: &str, availability: Availability) -> Result<()> {
        sqlx::query("UPDATE agents SET availability = ? WHERE id = ?")
            .bind(availability.as_str())
            .bind(agent_id)
            .execute(self.w().await?)
            .await?;
        Ok(())
    }

    async fn routing_candidates(&self, group_id: &str) -> Result<Vec<RoutingCandidate>> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, a.availability, a.chat_limit, a.last_assigned_at, \
               (SELECT count(*) FROM conversations c WHERE c.agent_id = a.id AND c.status = 'active') AS active_chats \
             FROM agents a JOIN agent_groups g ON g.agent_id = a.id \
             WHERE g.group_id = ? AND a.active = 1 AND a.role <> 'probe'",
        )
        .bind(group_id)
        .fetch_all(self.r().await?)
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
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.id)
        .bind(agent_id)
        .bind(secret_hash)
        .bind(now)
        .bind(now)
        .bind(expires_at)
        .execute(self.w().await?)
        .await?;
        Ok(session)
    }

    async fn session_by_secret_hash(&self, secret_hash: &str) -> Result<Option<Session>> {
        sqlx::query("SELECT * FROM sessions WHERE secret_hash = ?")
            .bind(secret_hash)
            .fetch_optional(self.rc().await?)
            .await?
            .map(|r| session_from_row(&r))
            .transpose()
    }

    async fn session(&self, id: &str) -> Result<Option<Session>> {
        sqlx::query("SELECT * FROM sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(self.rc().await?)
            .await?
            .map(|r| session_from_row(&r))
            .transpose()
    }

    async fn touch_session(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_used_at = max(last_used_at, ?) WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(self.w().await?)
            .await?;
        Ok(())
    }

    async fn revoke_session(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(self.w().await?)
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
            "INSERT INTO visitors (id, site_id, name, email, page_url, referrer, user_agent, first_seen, last_seen) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(self.w().await?)
        .await?;
        Ok(visitor)
    }

    async fn visitor(&self, id: &str) -> Result<Option<Visitor>> {
        sqlx::query("SELECT * FROM visitors WHERE id = ?")
            .bind(id)
            .fetch_optional(self.r().await?)
            .await?
            .map(|r| visitor_from_row(&r))
            .transpose()
    }

    async fn update_visitor(&self, id: &str, update: VisitorUpdate) -> Result<()> {
        sqlx::query(
            "UPDATE visitors SET name = coalesce(?, name), email = coalesce(?, email), \
             page_url = coalesce(?, page_url), referrer = coalesce(?, referrer), \
             user_agent = coalesce(?, user_agent), last_seen = ? WHERE id = ?",
        )
        .bind(update.name)
        .bind(update.email)
        .bind(update.page_url)
        .bind(update.referrer)
        .bind(update.user_agent)
        .bind(now_ms())
        .bind(id)
        .execute(self.w().await?)
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
            "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&conv.id)
        .bind(site_id)
        .bind(visitor_id)
        .bind(group_id)
        .bind(status.as_str())
        .bind(conv.created_at)
        .execute(self.w().await?)
        .await?;
        Ok(conv)
    }

    async fn conversation(&self, id: &str) -> Result<Option<Conversation>> {
        sqlx::query("SELECT * FROM conversations WHERE id = ?")
            .bind(id)
            .fetch_optional(self.rc().await?)
            .await?
            .map(|r| conversation_from_row(&r))
            .transpose()
    }

    async fn conversations(&self, site_id: &str, filter: ConversationFilter) -> Result<Vec<Conversation>> {
        let (site_term, pool) =
            if filter.one_person() { ("+site_id", self.rc().await?) } else { ("site_id", self.r().await?) };
        let rows = filter.query(site_id, site_term).build().fetch_all(pool).await?;
        rows.iter().map(conversation_from_row).collect()
    }

    async fn queue(&self, site_id: &str) -> Result<Vec<Conversation>> {
        sqlx::query("SELECT * FROM conversations WHERE site_id = ? AND status = 'queued' ORDER BY created_at, id")
            .bind(site_id)
            .fetch_all(self.r().await?)
            .await?
            .iter()
            .map(conversation_from_row)
            .collect()
    }

    async fn apply(&self, conversation_id: &str, change: Change) -> Result<Applied> {
        self.send_change(conversation_id, None, change).await
    }

    async fn apply_guarded(&self, conversation_id: &str, guard: Guard, change: Change) -> Result<Applied> {
        self.send_change(conversation_id, Some(guard), change).await
    }

    async fn events_after(&self, conversation_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        sqlx::query("SELECT * FROM events WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?")
            .bind(conversation_id)
            .bind(after)
            .bind(limit)
            .fetch_all(self.rc().await?)
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn search_messages(&self, site_id: &str, text: &str, limit: i64) -> Result<Vec<SearchHit>> {
        let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let rows = sqlx::query(
            "SELECT e.conversation_id, e.seq, e.body, e.created_at FROM events e \
             JOIN conversations c ON c.id = e.conversation_id \
             WHERE c.site_id = ? AND e.kind = 'message' AND e.body LIKE ? ESCAPE '\\' \
             ORDER BY e.created_at DESC LIMIT ?",
        )
        .bind(site_id)
        .bind(pattern)
        .bind(limit.clamp(1, 200))
        .fetch_all(self.r().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    conversation_id: r.try_get("conversation_id")?,
                    seq: r.try_get("seq")?,
                    body: r.try_get("body")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn set_site_settings(&self, site_id: &str, settings: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE sites SET settings = ? WHERE id = ?")
            .bind(settings.to_string())
            .bind(site_id)
            .execute(self.w().await?)
            .await?;
        Ok(())
    }

    async fn update_agent(&self, agent_id: &str, update: AgentUpdate) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET name = coalesce(?, name), role = coalesce(?, role), \
             active = coalesce(?, active), chat_limit = coalesce(?, chat_limit) WHERE id = ?",
        )
        .bind(update.name)
        .bind(update.role.map(Role::as_str))
        .bind(update.active.map(i64::from))
        .bind(update.chat_limit)
        .bind(agent_id)
        .execute(self.w().await?)
        .await?;
        Ok(())
    }

    async fn revoke_agent_sessions(&self, agent_id: &str, at: i64) -> Result<Vec<String>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = ? WHERE agent_id = ? AND revoked_at IS NULL RETURNING id",
        )
        .bind(at)
        .bind(agent_id)
        .fetch_all(self.w().await?)
        .await?;
        Ok(ids)
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT agent_id FROM agent_groups WHERE group_id = ? ORDER BY agent_id")
            .bind(group_id)
            .fetch_all(self.r().await?)
            .await?)
    }

    async fn canned_responses(&self, site_id: &str) -> Result<Vec<CannedResponse>> {
        let rows = sqlx::query("SELECT * FROM canned_responses WHERE site_id = ? ORDER BY shortcut")
            .bind(site_id)
            .fetch_all(self.r().await?)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CannedResponse {
                    id: r.try_get("id")?,
                    site_id: r.try_get("site_id")?,
                    shortcut: r.try_get("shortcut")?,
                    body: r.try_get("body")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn create_canned_response(&self, site_id: &str, shortcut: &str, body: &str) -> Result<CannedResponse> {
        let canned = CannedResponse {
            id: new_id(),
            site_id: site_id.to_owned(),
            shortcut: shortcut.to_owned(),
            body: body.to_owned(),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO canned_responses (id, site_id, shortcut, body, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&canned.id)
            .bind(site_id)
            .bind(shortcut)
            .bind(body)
            .bind(canned.created_at)
            .execute(self.w().await?)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => Error::conflict("that shortcut exists"),
                e => e.into(),
            })?;
        Ok(canned)
    }

    async fn delete_canned_response(&self, site_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM canned_responses WHERE id = ? AND site_id = ?")
            .bind(id)
            .bind(site_id)
            .execute(self.w().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
