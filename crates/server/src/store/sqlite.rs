//! The embedded store: one SQLite file in WAL mode.
//!
//! Every write of the chat store goes through one thread, the group-commit
//! writer (`sqlite_writer.rs`): conversation changes and every other write
//! share its fsync'd transactions, so nothing ever waits on SQLite's write
//! lock (two writers on one file sleep in SQLite's busy handler, up to
//! 100 ms at a time). Reads run on reader threads (`sqlite_readers.rs`),
//! some kept for the critical lane. Both use rusqlite with cached prepared
//! statements. sqlx stays for the migrations and for the status page's
//! store, which is off every hot path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

use super::lite;
use super::sqlite_readers::Readers;
use super::sqlite_writer::{Exec, Job, PendingChange, Reply};
use super::status_sql::{SQLITE_MIGRATOR as STATUS_MIGRATOR, SqlStatusStore};
use super::*;
use crate::error::{Error, Result};

pub(super) static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| include!(concat!(env!("OUT_DIR"), "/migrations/sqlite.rs")));
/// The last chat migration with the status page's tables in the chat file:
/// an older data dir is migrated up to it, its status rows are copied to
/// the status file, and only then are they dropped (0012).
const LAST_WITH_STATUS_TABLES: i64 = 11;
/// The chat file and the status page's file, in the data dir.
const CHAT_FILE: &str = "holdfast.db";
pub const STATUS_FILE: &str = "status.sqlite";

/// Reader threads for everything but the critical lane.
const READERS: usize = 2;
/// Reader threads kept for the critical lane: login, a resume's reads,
/// session refresh, `/readyz`.
const CRITICAL_READERS: usize = 2;

/// Refuse a file whose schema is newer than `migrator` knows: an older
/// binary must not write to tables it does not understand.
/// `what` names it for the operator.
async fn check_not_newer(pool: &SqlitePool, migrator: &Migrator, what: &str) -> Result<()> {
    let migrated: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_optional(pool)
            .await?;
    if migrated.is_none() {
        return Ok(());
    }
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?;
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match applied {
        Some(schema) if schema > known => Err(Error::NewerSchema(format!(
            "{what} was written by a newer Holdfast (schema {schema}, this binary knows {known})"
        ))),
        _ => Ok(()),
    }
}

pub(super) fn sql(e: rusqlite::Error) -> Error {
    Error::Store(e.into())
}

/// Keep each cached statement's plan. Without this, a statement with a
/// bound `LIMIT` (or LIKE pattern) is compiled again on every run, because
/// SQLite re-plans for each new value: in a reconnect storm the readers
/// spent more time in the SQL compiler than in the reads.
pub(super) fn plan_once(conn: &Connection) -> Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// A constraint of kind `code` (e.g. `SQLITE_CONSTRAINT_UNIQUE`) refused it.
fn violates(e: &rusqlite::Error, code: std::ffi::c_int) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == code)
}

pub struct SqliteStore {
    /// The data dir (the status page's runner lock lives there too).
    dir: PathBuf,
    /// sqlx pools of the status page's store (`holdfast-status`'s
    /// `store::sql`), on
    /// its own file (`STATUS_FILE`): its writes never wait for the chat
    /// writer's lock, which the group commits hold nearly all the time
    /// under load.
    status_read: SqlitePool,
    status_write: SqlitePool,
    readers: Readers,
    /// Readers kept for the critical lane, so site-wide routing and
    /// dashboard reads that fill `readers` during a storm never make a
    /// reconnect or a health check wait.
    critical: Readers,
    /// The reader of reports, at the lowest CPU priority: a report reads
    /// a whole range of chats and would keep a core from chat
    /// (`low_priority`). One thread: a report waits for the one before.
    reports: Readers,
    /// What reports read of open chats' events (`open_chats`), used by
    /// the one reports thread.
    pub(super) open_chats: Arc<std::sync::Mutex<super::open_chats::OpenChats>>,
    /// Injected failures, for rehearsals and tests of "the store is down".
    faults: Arc<Faults>,
    /// Queue into the group-commit writer.
    writer: mpsc::Sender<Job>,
}

impl SqliteStore {
    /// Open (creating if needed) the chat file `holdfast.db` and the status
    /// page's `status.sqlite` in `dir`, and apply migrations; on the first
    /// start of a data dir that kept the status page in the chat file, its
    /// rows move to the status file.
    pub async fn open(dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(anyhow::anyhow!("cannot create data dir {}: {e}", dir.display())))?;
        let db = dir.join(CHAT_FILE);
        // sqlx only migrates the chat file; the writer and readers use it.
        let chat = single_connection(&db, dir).await?;
        check_not_newer(&chat, &MIGRATOR, &format!("data dir {}", dir.display())).await?;
        let status_file = dir.join(STATUS_FILE);
        let status_write = single_connection(&status_file, dir).await?;
        check_not_newer(&status_write, &STATUS_MIGRATOR, &format!("{}", status_file.display())).await?;
        let migration_failed = |e: sqlx::migrate::MigrateError| Error::Store(anyhow::anyhow!("migration failed: {e}"));
        STATUS_MIGRATOR.run(&status_write).await.map_err(migration_failed)?;
        MIGRATOR.run_to(LAST_WITH_STATUS_TABLES, &chat).await.map_err(migration_failed)?;
        import_status(&status_write, &db).await?;
        MIGRATOR.run(&chat).await.map_err(migration_failed)?;
        chat.close().await;
        let status_read = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect_options(&status_file).read_only(true))
            .await?;
        let writer = super::sqlite_writer::spawn(&db)?;
        let readers = Readers::spawn(&db, READERS, "sqlite-read")?;
        let critical = Readers::spawn(&db, CRITICAL_READERS, "sqlite-critical")?;
        let reports = Readers::spawn_lowest(&db, 1, "sqlite-reports")?;
        let faults = Arc::new(Faults::default());
        let open_chats = Arc::default();
        Ok(SqliteStore {
            dir: dir.to_owned(),
            status_read,
            status_write,
            readers,
            critical,
            reports,
            open_chats,
            faults,
            writer,
        })
    }

    /// Hand a job to the group-commit writer.
    async fn to_writer(&self, job: Job) -> Result<()> {
        self.writer.send(job).await.map_err(|_| Error::Unavailable(1))
    }

    /// Hand a change to the group-commit writer and wait for its outcome.
    async fn send_change(&self, conversation_id: &str, guard: Option<Guard>, change: Change) -> Result<Applied> {
        self.faults.check().await?;
        let (reply, rx) = oneshot::channel();
        let pending = PendingChange { conversation_id: conversation_id.to_owned(), guard, change, reply };
        self.to_writer(Job::Change(pending)).await?;
        rx.await.map_err(|_| Error::Unavailable(1))?
    }

    /// Run `write` in the writer's next group commit; its answer comes once
    /// that commit is durable.
    pub(super) async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.exec(write, Job::Exec).await
    }

    /// Run `write` as background work of the writer: after every chat write
    /// waiting, alone, committed without an `fsync` of its own
    /// (`sqlite_writer`'s module comment). For work that is done again if a
    /// power cut undoes it (retention).
    pub(super) async fn write_background<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.exec(write, Job::Background).await
    }

    async fn exec<T, F>(&self, write: F, job: fn(Exec) -> Job) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.faults.check().await?;
        let (tx, rx) = oneshot::channel();
        let exec: Exec = Box::new(move |conn| {
            let out = write(conn);
            let ok = out.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let _ = tx.send(committed.map_err(|e| Error::Store(anyhow::anyhow!(e))).and(out));
            });
            (ok, reply)
        });
        self.to_writer(job(exec)).await?;
        rx.await.map_err(|_| Error::Unavailable(1))?
    }

    pub(super) async fn read<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.read_on(&self.readers, read).await
    }

    /// A read of the critical lane, on its own readers.
    async fn read_critical<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.read_on(&self.critical, read).await
    }

    /// A report's read, on the reports reader (lowest CPU priority).
    pub(super) async fn read_report<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.read_on(&self.reports, read).await
    }

    /// A read on `lane`'s threads, unless a fault is injected.
    async fn read_on<T, F>(&self, lane: &Readers, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.faults.check().await?;
        lane.run(read).await
    }

    /// The status page's store, on this data dir's `STATUS_FILE`.
    pub fn status_store(&self) -> SqlStatusStore {
        SqlStatusStore::sqlite(self.status_read.clone(), self.status_write.clone(), &self.dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The fault switch of this store (see [`Faults`]).
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// Close the pools, after every write handed to the writer is done.
    pub async fn close(&self) {
        let _ = self.write(|_| Ok(())).await;
        self.status_write.close().await;
        self.status_read.close().await;
    }
}

/// How sqlx opens a file of the data dir.
fn connect_options(file: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
}

/// A pool of one connection: the one writer sqlx keeps on `file`.
async fn single_connection(file: &Path, dir: &Path) -> Result<SqlitePool> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_slow_threshold(Duration::from_millis(2500))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect_options(file))
        .await
        .map_err(|e| Error::Store(anyhow::anyhow!("cannot open database in {}: {e}", dir.display())))
}

/// The status page's tables and what they hold, as the chat file had them.
const STATUS_TABLES: &[&str] = &[
    "status_components",
    "status_incidents",
    "status_incident_components",
    "status_incident_updates",
    "status_subscribers",
    "status_deliveries",
    "status_monitors",
    "status_probe_days",
];

/// Copy the status page's rows from the chat file `chat_db` (a data dir
/// from before `status.sqlite`) into the status file, once: in one
/// transaction with the `imported_from_chat` mark, so a crash leaves
/// either everything or nothing copied, and a second start (or a second
/// process starting at once) copies nothing twice. The chat file is then
/// migrated past 0012, which drops them there.
async fn import_status(status: &SqlitePool, chat_db: &Path) -> Result<()> {
    let mut conn = status.acquire().await?;
    let done: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'imported_from_chat'")
        .fetch_optional(&mut *conn)
        .await?;
    if done.is_some() {
        return Ok(());
    }
    sqlx::query("ATTACH DATABASE ? AS chat").bind(chat_db.to_string_lossy().into_owned()).execute(&mut *conn).await?;
    let copied = async {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let in_chat: Vec<String> =
            sqlx::query_scalar("SELECT name FROM chat.sqlite_master WHERE type = 'table'").fetch_all(&mut *tx).await?;
        let mut rows = 0;
        for table in STATUS_TABLES.iter().filter(|t| in_chat.iter().any(|c| c == *t)) {
            // Columns by name, as the two files created them in another order.
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?, 'chat')")
                .bind(table)
                .fetch_all(&mut *tx)
                .await?;
            let columns = columns.join(", ");
            // Names from this binary's list and the file's own schema.
            rows += sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT OR IGNORE INTO main.{table} ({columns}) SELECT {columns} FROM chat.{table}"
            )))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        sqlx::query(
            "INSERT OR IGNORE INTO main.meta (key, value) SELECT key, value FROM chat.meta \
             WHERE key IN ('status_page_id', 'status_components_seeded')",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT OR IGNORE INTO main.meta (key, value) VALUES ('imported_from_chat', ?)")
            .bind(now_ms().to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok::<u64, sqlx::Error>(rows)
    }
    .await;
    let detached = sqlx::query("DETACH DATABASE chat").execute(&mut *conn).await;
    let rows = copied?;
    detached?;
    if rows > 0 {
        tracing::info!(rows, file = STATUS_FILE, "the status page's rows moved to a file of their own");
    }
    Ok(())
}

/// A column holding one of a fixed set of words.
fn parsed<T>(r: &Row, column: &str, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = r.get(column)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unexpected {column} in database: {text:?}").into(),
        )
    })
}

fn json_column(r: &Row, column: &str) -> rusqlite::Result<serde_json::Value> {
    let text: String = r.get(column)?;
    Ok(serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({})))
}

fn site_row(r: &Row) -> rusqlite::Result<Site> {
    Ok(Site {
        id: r.get("id")?,
        name: r.get("name")?,
        widget_key: r.get("widget_key")?,
        settings: json_column(r, "settings")?,
        created_at: r.get("created_at")?,
    })
}

fn agent_row(r: &Row) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: r.get("id")?,
        site_id: r.get("site_id")?,
        email: r.get("email")?,
        name: r.get("name")?,
        role: parsed(r, "role", Role::parse)?,
        password_hash: r.get("password_hash")?,
        chat_limit: r.get("chat_limit")?,
        availability: parsed(r, "availability", Availability::parse)?,
        active: r.get::<_, i64>("active")? != 0,
        created_at: r.get("created_at")?,
        lead_emails: r.get::<_, Option<i64>>("lead_emails")?.map(|v| v != 0),
        photo_at: r.get("photo_at")?,
    })
}

fn canned_row(r: &Row) -> rusqlite::Result<CannedResponse> {
    Ok(CannedResponse {
        id: r.get("id")?,
        site_id: r.get("site_id")?,
        shortcut: r.get("shortcut")?,
        body: r.get("body")?,
        created_at: r.get("created_at")?,
    })
}

/// Deleting a group, one text for both backends (`$n`; SQLite reads `?n`):
/// the live group of the site (its `is_default`), its mark, its members out.
pub(super) const GROUP_TO_DELETE: &str =
    "SELECT is_default FROM groups WHERE id = $1 AND site_id = $2 AND deleted_at IS NULL FOR UPDATE";
const SET_AGENT_PHOTO_SQLITE: &str = "INSERT INTO agent_photos (agent_id, content_type, bytes, updated_at) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (agent_id) DO UPDATE SET content_type = excluded.content_type, \
    bytes = excluded.bytes, updated_at = excluded.updated_at";
pub(super) const MARK_GROUP_DELETED: &str = "UPDATE groups SET deleted_at = $2 WHERE id = $1";
pub(super) const GROUP_MEMBERS_OUT: &str = "DELETE FROM agent_groups WHERE group_id = $1";

fn group_row(r: &Row) -> rusqlite::Result<Group> {
    Ok(Group {
        id: r.get("id")?,
        site_id: r.get("site_id")?,
        name: r.get("name")?,
        is_default: r.get::<_, i64>("is_default")? != 0,
        email: r.get("email")?,
        hours: Group::hours_from_stored(r.get("hours")?),
        deleted_at: r.get("deleted_at")?,
    })
}

fn session_row(r: &Row) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get("id")?,
        agent_id: r.get("agent_id")?,
        created_at: r.get("created_at")?,
        last_used_at: r.get("last_used_at")?,
        expires_at: r.get("expires_at")?,
        revoked_at: r.get("revoked_at")?,
    })
}

fn visitor_row(r: &Row) -> rusqlite::Result<Visitor> {
    Ok(Visitor {
        id: r.get("id")?,
        site_id: r.get("site_id")?,
        name: r.get("name")?,
        email: r.get("email")?,
        page_url: r.get("page_url")?,
        referrer: r.get("referrer")?,
        user_agent: r.get("user_agent")?,
        first_seen: r.get("first_seen")?,
        last_seen: r.get("last_seen")?,
    })
}

pub(super) fn conversation_row(r: &Row) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get("id")?,
        site_id: r.get("site_id")?,
        visitor_id: r.get("visitor_id")?,
        group_id: r.get("group_id")?,
        agent_id: r.get("agent_id")?,
        status: parsed(r, "status", ConversationStatus::parse)?,
        last_seq: r.get("last_seq")?,
        created_at: r.get("created_at")?,
        assigned_at: r.get("assigned_at")?,
        closed_at: r.get("closed_at")?,
    })
}

pub(super) fn event_row(r: &Row) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        conversation_id: r.get("conversation_id")?,
        seq: r.get("seq")?,
        id: r.get("id")?,
        kind: r.get("kind")?,
        author: Author { kind: parsed(r, "author_kind", AuthorKind::parse)?, id: r.get("author_id")? },
        client_id: r.get("client_id")?,
        body: r.get("body")?,
        data: json_column(r, "data")?,
        created_at: r.get("created_at")?,
    })
}

/// Every row `sql` returns for `args`, mapped by `row`.
fn all<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    args: P,
    row: fn(&Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
}

/// The row `sql` returns for `args`, if any.
fn one<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    args: P,
    row: fn(&Row) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    Ok(conn.prepare_cached(sql)?.query_row(args, row).optional()?)
}

/// Insert an agent, in the site's default group (the status probe in
/// none, so routing never sees it).
pub(super) fn insert_agent(c: &Connection, a: &Agent) -> Result<()> {
    let inserted = c
        .prepare_cached(
            "INSERT INTO agents (id, site_id, email, name, role, password_hash, chat_limit, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            a.id,
            a.site_id,
            a.email,
            a.name,
            a.role.as_str(),
            a.password_hash,
            a.chat_limit,
            a.created_at
        ]);
    match inserted {
        Err(e) if violates(&e, rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
            return Err(Error::conflict("an agent with that email exists"));
        }
        Err(e) if violates(&e, rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => return Err(Error::NotFound("site")),
        other => other?,
    };
    if a.role != Role::Probe {
        exec(
            c,
            "INSERT INTO agent_groups (agent_id, group_id) \
             SELECT ?1, id FROM groups WHERE site_id = ?2 AND is_default = 1",
            [&a.id, &a.site_id],
        )?;
    }
    Ok(())
}

/// Run one statement; the rows it changed.
fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, args: P) -> Result<usize> {
    Ok(conn.prepare_cached(sql)?.execute(args)?)
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
        self.read_critical(|c| Ok(c.prepare_cached("SELECT 1")?.query_row([], |r| r.get::<_, i64>(0))?)).await?;
        Ok(())
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read(move |c| one(c, "SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0))).await
    }

    async fn meta_init(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            exec(c, "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)", [&key, &value])?;
            Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([&key], |r| r.get(0))?)
        })
        .await
    }

    async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [&key, &value],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_site(&self, name: &str) -> Result<Site> {
        let site = Site {
            id: new_id(),
            name: name.to_owned(),
            widget_key: new_widget_key(),
            settings: serde_json::json!({}),
            created_at: now_ms(),
        };
        let s = site.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO sites (id, name, widget_key, settings, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.id, s.name, s.widget_key, s.settings.to_string(), s.created_at],
            )?;
            exec(
                c,
                "INSERT INTO groups (id, site_id, name, is_default, created_at) VALUES (?1, ?2, 'General', 1, ?3)",
                params![new_id(), s.id, s.created_at],
            )?;
            Ok(())
        })
        .await?;
        Ok(site)
    }

    async fn site(&self, id: &str) -> Result<Option<Site>> {
        let id = id.to_owned();
        self.read(move |c| one(c, "SELECT * FROM sites WHERE id = ?1", [&id], site_row)).await
    }

    async fn site_by_widget_key(&self, key: &str) -> Result<Option<Site>> {
        let key = key.to_owned();
        self.read(move |c| one(c, "SELECT * FROM sites WHERE widget_key = ?1", [&key], site_row)).await
    }

    async fn sites(&self) -> Result<Vec<Site>> {
        self.read(|c| all(c, "SELECT * FROM sites ORDER BY created_at", [], site_row)).await
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
        let g = group.clone();
        self.write(move |c| {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO groups (id, site_id, name, is_default, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![g.id, g.site_id, g.name, g.is_default as i64, now_ms()]);
            match inserted {
                Err(e) if violates(&e, rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
                    Err(Error::conflict("a group with that name exists"))
                }
                other => Ok(other.map(|_| ())?),
            }
        })
        .await?;
        Ok(group)
    }

    async fn groups(&self, site_id: &str) -> Result<Vec<Group>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            all(c, "SELECT * FROM groups WHERE site_id = ?1 ORDER BY is_default DESC, name", [&site_id], group_row)
        })
        .await
    }

    async fn group(&self, id: &str) -> Result<Option<Group>> {
        let id = id.to_owned();
        self.read(move |c| one(c, "SELECT * FROM groups WHERE id = ?1", [&id], group_row)).await
    }

    async fn delete_group(&self, site_id: &str, group_id: &str, now: i64) -> Result<bool> {
        let (site_id, group_id) = (site_id.to_owned(), group_id.to_owned());
        self.write(move |c| {
            let is_default: Option<bool> =
                c.prepare_cached(&lite(GROUP_TO_DELETE))?.query_row([&group_id, &site_id], |r| r.get(0)).optional()?;
            match is_default {
                None => Ok(false),
                Some(true) => Err(Error::conflict("the default group cannot be deleted")),
                Some(false) => {
                    exec(c, &lite(MARK_GROUP_DELETED), params![group_id, now])?;
                    exec(c, &lite(GROUP_MEMBERS_OUT), [&group_id])?;
                    Ok(true)
                }
            }
        })
        .await
    }

    async fn add_agent_to_group(&self, agent_id: &str, group_id: &str) -> Result<()> {
        let (agent_id, group_id) = (agent_id.to_owned(), group_id.to_owned());
        self.write(move |c| {
            exec(c, "INSERT OR IGNORE INTO agent_groups (agent_id, group_id) VALUES (?1, ?2)", [&agent_id, &group_id])?;
            Ok(())
        })
        .await
    }

    async fn update_group(
        &self,
        group_id: &str,
        name: Option<&str>,
        email: Option<Option<&str>>,
        hours: Option<Option<&crate::hours::Schedule>>,
    ) -> Result<()> {
        let (group_id, name) = (group_id.to_owned(), name.map(str::to_owned));
        let email = email.map(|e| e.map(str::to_owned));
        let hours = hours_to_stored(hours)?;
        self.write(move |c| {
            if let Some(name) = &name {
                match c.prepare_cached("UPDATE groups SET name = ?1 WHERE id = ?2")?.execute(params![name, group_id]) {
                    Err(e) if violates(&e, rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
                        return Err(Error::conflict("the site has a group of that name"));
                    }
                    other => other?,
                };
            }
            if let Some(email) = &email {
                exec(c, "UPDATE groups SET email = ?1 WHERE id = ?2", params![email, group_id])?;
            }
            if let Some(hours) = &hours {
                exec(c, "UPDATE groups SET hours = ?1 WHERE id = ?2", params![hours, group_id])?;
            }
            Ok(())
        })
        .await
    }

    async fn create_agent(&self, new: NewAgent<'_>) -> Result<Agent> {
        let agent = new.into_agent();
        let a = agent.clone();
        self.write(move |c| insert_agent(c, &a)).await?;
        Ok(agent)
    }

    async fn agent(&self, id: &str) -> Result<Option<Agent>> {
        let id = id.to_owned();
        self.read_critical(move |c| one(c, "SELECT * FROM agents WHERE id = ?1", [&id], agent_row)).await
    }

    async fn agent_by_email(&self, email: &str) -> Result<Option<Agent>> {
        let email = email.to_owned();
        self.read_critical(move |c| one(c, "SELECT * FROM agents WHERE email = ?1", [&email], agent_row)).await
    }

    async fn agents(&self, site_id: &str) -> Result<Vec<Agent>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            all(
                c,
                "SELECT * FROM agents WHERE site_id = ?1 AND role <> 'probe' ORDER BY name, email",
                [&site_id],
                agent_row,
            )
        })
        .await
    }

    async fn set_availability(&self, agent_id: &str, availability: Availability) -> Result<()> {
        let agent_id = agent_id.to_owned();
        self.write(move |c| {
            exec(c, "UPDATE agents SET availability = ?1 WHERE id = ?2", [availability.as_str(), &agent_id])?;
            Ok(())
        })
        .await
    }

    async fn routing_candidates(&self, group_id: &str) -> Result<Vec<RoutingCandidate>> {
        let group_id = group_id.to_owned();
        self.read(move |c| {
            all(
                c,
                "SELECT a.id, a.name, a.availability, a.chat_limit, a.last_assigned_at, \
                   (SELECT count(*) FROM conversations c WHERE c.agent_id = a.id AND c.status = 'active') \
                   AS active_chats \
                 FROM agents a JOIN agent_groups g ON g.agent_id = a.id \
                 WHERE g.group_id = ?1 AND a.active = 1 AND a.role <> 'probe'",
                [&group_id],
                |r| {
                    Ok(RoutingCandidate {
                        agent_id: r.get("id")?,
                        name: r.get("name")?,
                        availability: parsed(r, "availability", Availability::parse)?,
                        active_chats: r.get("active_chats")?,
                        chat_limit: r.get("chat_limit")?,
                        last_assigned_at: r.get("last_assigned_at")?,
                    })
                },
            )
        })
        .await
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
        let (s, secret_hash) = (session.clone(), secret_hash.to_owned());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO sessions (id, agent_id, secret_hash, created_at, last_used_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.id, s.agent_id, secret_hash, s.created_at, s.last_used_at, s.expires_at],
            )?;
            Ok(())
        })
        .await?;
        Ok(session)
    }

    async fn session_by_secret_hash(&self, secret_hash: &str) -> Result<Option<Session>> {
        let secret_hash = secret_hash.to_owned();
        self.read_critical(move |c| {
            one(c, "SELECT * FROM sessions WHERE secret_hash = ?1", [&secret_hash], session_row)
        })
        .await
    }

    async fn session(&self, id: &str) -> Result<Option<Session>> {
        let id = id.to_owned();
        self.read_critical(move |c| one(c, "SELECT * FROM sessions WHERE id = ?1", [&id], session_row)).await
    }

    async fn touch_session(&self, id: &str, at: i64) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            exec(c, "UPDATE sessions SET last_used_at = max(last_used_at, ?1) WHERE id = ?2", params![at, id])?;
            Ok(())
        })
        .await
    }

    async fn sessions_revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>> {
        self.read(move |c| {
            all(c, "SELECT id, revoked_at FROM sessions WHERE revoked_at >= ?1", [since], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .await
    }

    async fn revoke_session(&self, id: &str, at: i64) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            exec(c, "UPDATE sessions SET revoked_at = coalesce(revoked_at, ?1) WHERE id = ?2", params![at, id])?;
            Ok(())
        })
        .await
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
        let (v, ip) = (visitor.clone(), update.ip);
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO visitors (id, site_id, name, email, page_url, referrer, user_agent, first_seen, \
                 last_seen, last_ip) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![v.id, v.site_id, v.name, v.email, v.page_url, v.referrer, v.user_agent, now, now, ip],
            )?;
            Ok(())
        })
        .await?;
        Ok(visitor)
    }

    async fn visitor(&self, id: &str) -> Result<Option<Visitor>> {
        let id = id.to_owned();
        self.read(move |c| one(c, "SELECT * FROM visitors WHERE id = ?1", [&id], visitor_row)).await
    }

    async fn update_visitor(&self, id: &str, update: VisitorUpdate) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            exec(
                c,
                "UPDATE visitors SET name = coalesce(?1, name), email = coalesce(?2, email), \
                 page_url = coalesce(?3, page_url), referrer = coalesce(?4, referrer), \
                 user_agent = coalesce(?5, user_agent), last_seen = coalesce(?6, last_seen), \
                 last_ip = coalesce(?8, last_ip) \
                 WHERE id = ?7",
                params![
                    update.name,
                    update.email,
                    update.page_url,
                    update.referrer,
                    update.user_agent,
                    (!update.not_seen).then(now_ms),
                    id,
                    update.ip
                ],
            )?;
            Ok(())
        })
        .await
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
        let k = conv.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.id, k.site_id, k.visitor_id, k.group_id, k.status.as_str(), k.created_at],
            )?;
            Ok(())
        })
        .await?;
        Ok(conv)
    }

    async fn conversation(&self, id: &str) -> Result<Option<Conversation>> {
        let id = id.to_owned();
        self.read_critical(move |c| {
            one(c, "SELECT * FROM conversations_with_seq WHERE id = ?1", [&id], conversation_row)
        })
        .await
    }

    async fn conversations(&self, site_id: &str, filter: ConversationFilter) -> Result<Vec<Conversation>> {
        // One person's conversations are a resume's read: the critical
        // readers, and SQLite's `+site_id` keeps the site check out of the
        // index choice so the person's own index is used.
        let site_term = if filter.one_person() { "+site_id" } else { "site_id" };
        let (sql, args) = filter.sql("conversations_with_seq", site_term, "?");
        let mut values: Vec<rusqlite::types::Value> = vec![site_id.to_owned().into()];
        values.extend(args.into_iter().map(|a| match a {
            FilterArg::Text(t) => rusqlite::types::Value::from(t),
            FilterArg::Int(i) => rusqlite::types::Value::from(i),
        }));
        let read = move |c: &Connection| all(c, &sql, rusqlite::params_from_iter(values), conversation_row);
        if filter.one_person() { self.read_critical(read).await } else { self.read(read).await }
    }

    async fn queue(&self, site_id: &str) -> Result<Vec<Conversation>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            all(
                c,
                "SELECT * FROM conversations_with_seq WHERE site_id = ?1 AND status = 'queued' ORDER BY created_at, id",
                [&site_id],
                conversation_row,
            )
        })
        .await
    }

    async fn apply(&self, conversation_id: &str, change: Change) -> Result<Applied> {
        self.send_change(conversation_id, None, change).await
    }

    async fn apply_guarded(&self, conversation_id: &str, guard: Guard, change: Change) -> Result<Applied> {
        self.send_change(conversation_id, Some(guard), change).await
    }

    async fn events_after(&self, conversation_id: &str, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let conversation_id = conversation_id.to_owned();
        self.read_critical(move |c| {
            all(
                c,
                "SELECT * FROM events WHERE conversation_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                params![conversation_id, after, limit],
                event_row,
            )
        })
        .await
    }

    async fn search_chats(
        &self,
        site_id: &str,
        search: super::search::ChatSearch,
    ) -> Result<Vec<super::search::ChatHit>> {
        self.find_chats(site_id, search).await
    }

    async fn set_site_settings(&self, site_id: &str, settings: &serde_json::Value) -> Result<()> {
        let (site_id, settings) = (site_id.to_owned(), settings.to_string());
        self.write(move |c| {
            exec(c, "UPDATE sites SET settings = ?1 WHERE id = ?2", [&settings, &site_id])?;
            Ok(())
        })
        .await
    }

    async fn rename_site(&self, site_id: &str, name: &str) -> Result<()> {
        let (site_id, name) = (site_id.to_owned(), name.to_owned());
        self.write(move |c| {
            exec(c, "UPDATE sites SET name = ?1 WHERE id = ?2", [&name, &site_id])?;
            Ok(())
        })
        .await
    }

    async fn update_agent(&self, agent_id: &str, update: AgentUpdate) -> Result<()> {
        let agent_id = agent_id.to_owned();
        self.write(move |c| {
            exec(
                c,
                "UPDATE agents SET name = coalesce(?1, name), role = coalesce(?2, role), \
                 active = coalesce(?3, active), chat_limit = coalesce(?4, chat_limit), \
                 password_hash = coalesce(?5, password_hash), lead_emails = coalesce(?6, lead_emails) \
                 WHERE id = ?7",
                params![
                    update.name,
                    update.role.map(Role::as_str),
                    update.active.map(i64::from),
                    update.chat_limit,
                    update.password_hash,
                    update.lead_emails.map(i64::from),
                    agent_id
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn set_agent_photo(&self, agent_id: &str, photo: Option<AgentPhoto>, at: i64) -> Result<()> {
        let agent_id = agent_id.to_owned();
        self.write(move |c| {
            match photo {
                Some(p) => {
                    exec(c, SET_AGENT_PHOTO_SQLITE, params![agent_id, p.content_type, p.bytes, at])?;
                    exec(c, "UPDATE agents SET photo_at = ?1 WHERE id = ?2", params![at, agent_id])?;
                }
                None => {
                    exec(c, "DELETE FROM agent_photos WHERE agent_id = ?1", [&agent_id])?;
                    exec(c, "UPDATE agents SET photo_at = NULL WHERE id = ?1", [&agent_id])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn agent_photo(&self, agent_id: &str) -> Result<Option<AgentPhoto>> {
        let agent_id = agent_id.to_owned();
        self.read(move |c| {
            one(c, "SELECT content_type, bytes FROM agent_photos WHERE agent_id = ?1", [&agent_id], |r| {
                Ok(AgentPhoto { content_type: r.get(0)?, bytes: r.get(1)? })
            })
        })
        .await
    }

    async fn revoke_agent_sessions(&self, agent_id: &str, at: i64) -> Result<Vec<String>> {
        let agent_id = agent_id.to_owned();
        self.write(move |c| {
            all(
                c,
                "UPDATE sessions SET revoked_at = ?1 WHERE agent_id = ?2 AND revoked_at IS NULL RETURNING id",
                params![at, agent_id],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn group_members(&self, group_id: &str) -> Result<Vec<String>> {
        let group_id = group_id.to_owned();
        self.read(move |c| {
            all(c, "SELECT agent_id FROM agent_groups WHERE group_id = ?1 ORDER BY agent_id", [&group_id], |r| r.get(0))
        })
        .await
    }

    async fn canned_responses(&self, site_id: &str) -> Result<Vec<CannedResponse>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            all(c, "SELECT * FROM canned_responses WHERE site_id = ?1 ORDER BY shortcut", [&site_id], canned_row)
        })
        .await
    }

    async fn create_canned_response(&self, site_id: &str, shortcut: &str, body: &str) -> Result<CannedResponse> {
        let canned = CannedResponse {
            id: new_id(),
            site_id: site_id.to_owned(),
            shortcut: shortcut.to_owned(),
            body: body.to_owned(),
            created_at: now_ms(),
        };
        let k = canned.clone();
        self.write(move |c| {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO canned_responses (id, site_id, shortcut, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![k.id, k.site_id, k.shortcut, k.body, k.created_at]);
            match inserted {
                Err(e) if violates(&e, rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
                    Err(Error::conflict("that shortcut exists"))
                }
                other => Ok(other.map(|_| ())?),
            }
        })
        .await?;
        Ok(canned)
    }

    async fn delete_canned_response(&self, site_id: &str, id: &str) -> Result<bool> {
        let (site_id, id) = (site_id.to_owned(), id.to_owned());
        self.write(move |c| {
            Ok(exec(c, "DELETE FROM canned_responses WHERE id = ?1 AND site_id = ?2", [&id, &site_id])? > 0)
        })
        .await
    }

    async fn update_canned_response(
        &self,
        site_id: &str,
        id: &str,
        shortcut: &str,
        body: &str,
    ) -> Result<Option<CannedResponse>> {
        let (site_id, id, shortcut, body) = (site_id.to_owned(), id.to_owned(), shortcut.to_owned(), body.to_owned());
        self.write(move |c| {
            let changed = c
                .prepare_cached("UPDATE canned_responses SET shortcut = ?1, body = ?2 WHERE id = ?3 AND site_id = ?4")?
                .execute(params![shortcut, body, id, site_id]);
            match changed {
                Err(e) if violates(&e, rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => {
                    return Err(Error::conflict("that shortcut exists"));
                }
                Ok(0) => return Ok(None),
                other => other?,
            };
            one(c, "SELECT * FROM canned_responses WHERE id = ?1", [&id], canned_row)
        })
        .await
    }

    async fn remove_agent_from_group(&self, agent_id: &str, group_id: &str) -> Result<bool> {
        let (agent_id, group_id) = (agent_id.to_owned(), group_id.to_owned());
        self.write(move |c| {
            Ok(exec(c, "DELETE FROM agent_groups WHERE agent_id = ?1 AND group_id = ?2", [&agent_id, &group_id])? > 0)
        })
        .await
    }

    async fn leave_message(&self, message: outbox::OfflineMessage) -> Result<Applied> {
        self.faults.check().await?;
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

    async fn keep_report_summaries(&self, _now: i64) -> Result<super::reports::SummariesKept> {
        Ok(super::reports::SummariesKept::default())
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

    async fn put_attachment(&self, attachment: attachments::Attachment, spooled: &Path) -> Result<()> {
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
