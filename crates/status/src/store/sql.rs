//! The status page's store, written once for SQLite and PostgreSQL:
//! [`SqlStatusStore`] runs the same statements on either (sqlx reads the
//! `$1`-numbered parameters on SQLite too) and maps their rows with the
//! same functions. Where the dialects differ, [`Dialect`] says how, and
//! nowhere else:
//!
//! - row locks: PostgreSQL locks the rows an update reads (`FOR UPDATE`,
//!   `FOR UPDATE SKIP LOCKED`); SQLite has one writer at a time, and a
//!   transaction on the status file's one write connection is alone;
//! - a JSON array read as rows (`json_each` / `json_array_elements`), which
//!   carries a list into one statement on both;
//! - the lead of the side tasks ([`StatusStore::try_lead`]).
//!
//! Between nodes (PostgreSQL): an update locks the incident's and its
//! components' rows (components in id order, so two updates cannot
//! deadlock) while it reads their old states, so the "before" a
//! notification reports is the state it replaced; due deliveries are
//! claimed with `FOR UPDATE SKIP LOCKED` and a lease.
//!
//! Who runs the monitors and delivers notifications: on SQLite, the process
//! holding an exclusive lock on `status-runner.lock` in the data dir; on
//! PostgreSQL, the node holding the session-level advisory lock
//! [`LEAD_LOCK`], taken on a connection of its own, out of the pool.
//! PostgreSQL releases it when that session ends: at once when the process
//! dies (kill -9 closes its sockets), and within about 15 s when the host
//! vanishes (the session's TCP keepalives). The holder checks every few
//! seconds that its session still holds it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Database, Decode, Encode, PgPool, Postgres, Row as _, SqlSafeStr, Sqlite, SqlitePool, Type};

use holdfast_core::{new_id, now_ms};

use super::{
    AffectedComponent, Component, ComponentFields, ComponentStatus, Delivery, Impact, Incident, IncidentKind,
    IncidentStatus, IncidentUpdate, IncidentWrite, Lead, Monitor, StatusStore, Subscriber, SubscriberKind, UptimeDay,
};
use crate::error::{Error, Result};

/// The status page's schema in its own SQLite file (`DATA/status.sqlite`),
/// which the server applies when it opens the data dir. On PostgreSQL the
/// status tables are among the cluster database's migrations
/// (`migrations/postgres`, the server's).
pub static SQLITE_MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| include!(concat!(env!("OUT_DIR"), "/migrations/sqlite-status.rs")));

/// The advisory lock whose holder runs the status page's side tasks
/// ("Hold" in ASCII). Advisory locks belong to one database, so clusters
/// on different databases of one server never share it.
const LEAD_LOCK: i64 = 0x486f_6c64;
/// A check that the lead is still held that takes longer counts as lost.
const LEAD_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalives of the lead's session (idle seconds, interval, probes):
/// the server ends the session of a vanished host after about 15 s.
const LEAD_KEEPALIVES: &str =
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 5";

/// The status page's store on SQLite (`DATA/status.sqlite`) or on
/// PostgreSQL (the cluster's database). Cheap to clone: the pools are
/// shared, so closing the chat store's pools closes these too.
#[derive(Clone)]
pub struct SqlStatusStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite {
        /// Read-only connections to the status file.
        read: SqlitePool,
        /// The one connection that writes it.
        write: SqlitePool,
        /// `status-runner.lock` in the data dir.
        lead_file: PathBuf,
    },
    Postgres {
        pool: PgPool,
    },
}

impl SqlStatusStore {
    /// The status file of the data dir `dir`, already migrated.
    pub fn sqlite(read: SqlitePool, write: SqlitePool, dir: &Path) -> SqlStatusStore {
        SqlStatusStore { backend: Backend::Sqlite { read, write, lead_file: dir.join("status-runner.lock") } }
    }

    /// The status page's tables in a migrated PostgreSQL database.
    pub fn postgres(pool: PgPool) -> SqlStatusStore {
        SqlStatusStore { backend: Backend::Postgres { pool } }
    }

    fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres { .. } => Dialect::Postgres,
        }
    }

    /// A connection for reads.
    async fn read(&self) -> Result<Conn> {
        Ok(match &self.backend {
            Backend::Sqlite { read, .. } => Conn::Sqlite(Link::Pooled(read.acquire().await?)),
            Backend::Postgres { pool } => Conn::Postgres(Link::Pooled(pool.acquire().await?)),
        })
    }

    /// A connection for writes (and for reading what was just written).
    async fn write(&self) -> Result<Conn> {
        Ok(match &self.backend {
            Backend::Sqlite { write, .. } => Conn::Sqlite(Link::Pooled(write.acquire().await?)),
            Backend::Postgres { pool } => Conn::Postgres(Link::Pooled(pool.acquire().await?)),
        })
    }

    /// A transaction on a connection for writes.
    async fn begin(&self) -> Result<Conn> {
        Ok(match &self.backend {
            Backend::Sqlite { write, .. } => Conn::Sqlite(Link::Tx(write.begin().await?)),
            Backend::Postgres { pool } => Conn::Postgres(Link::Tx(pool.begin().await?)),
        })
    }

    /// Fill in an incident's components and updates.
    async fn complete_incident(conn: &mut Conn, mut incident: Incident) -> Result<Incident> {
        incident.components = conn
            .fetch_all(
                "SELECT ic.component_id FROM status_incident_components ic
                 JOIN status_components c ON c.id = ic.component_id
                 WHERE ic.incident_id = $1 ORDER BY c.position, c.name",
                &[incident.id.as_str().into()],
            )
            .await?
            .iter()
            .map(|r| r.text("component_id"))
            .collect::<Result<_>>()?;
        incident.updates = conn
            .fetch_all(
                "SELECT * FROM status_incident_updates WHERE incident_id = $1 ORDER BY created_at, id",
                &[incident.id.as_str().into()],
            )
            .await?
            .iter()
            .map(update_from_row)
            .collect::<Result<_>>()?;
        Ok(incident)
    }

    /// Set the states of an incident's components in `tx`, linking them to
    /// it; returns what each was before. Rows are read (and on PostgreSQL
    /// locked) in id order.
    async fn set_incident_components(
        &self,
        tx: &mut Conn,
        incident_id: &str,
        components: &[(String, ComponentStatus)],
        now: i64,
    ) -> Result<Vec<AffectedComponent>> {
        let ids: BTreeSet<&str> = components.iter().map(|(id, _)| id.as_str()).collect();
        let mut current = HashMap::with_capacity(ids.len());
        for id in ids {
            let sql = self.dialect().locked("SELECT name, status FROM status_components WHERE id = $1");
            let row = tx.fetch_optional(sql, &[id.into()]).await?.ok_or(Error::NotFound("component"))?;
            current.insert(id, (row.text("name")?, component_status(&row.text("status")?)?));
        }
        let mut affected = Vec::with_capacity(components.len());
        for (component_id, new_status) in components {
            let (name, old_status) = current.get_mut(component_id.as_str()).ok_or(Error::NotFound("component"))?;
            affected.push(AffectedComponent {
                code: component_id.clone(),
                name: name.clone(),
                old_status: *old_status,
                new_status: *new_status,
            });
            *old_status = *new_status;
            tx.execute(
                "UPDATE status_components SET status = $1, updated_at = $2 WHERE id = $3",
                &[new_status.as_str().into(), now.into(), component_id.as_str().into()],
            )
            .await?;
            tx.execute(
                "INSERT INTO status_incident_components (incident_id, component_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[incident_id.into(), component_id.as_str().into()],
            )
            .await?;
        }
        Ok(affected)
    }
}

#[async_trait]
impl StatusStore for SqlStatusStore {
    async fn seed_components(&self, names: &[&str]) -> Result<bool> {
        let mut tx = self.begin().await?;
        // Nodes starting together wait here on the first one's row: one seeds.
        let seeded = tx
            .execute(
                "INSERT INTO meta (key, value) VALUES ('status_components_seeded', '1') ON CONFLICT DO NOTHING",
                &[],
            )
            .await?
            == 1;
        if seeded {
            let now = now_ms();
            for (position, name) in names.iter().enumerate() {
                tx.execute(
                    "INSERT INTO status_components (id, name, position, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
                    &[new_id().as_str().into(), (*name).into(), (position as i64 + 1).into(), now.into()],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(seeded)
    }

    async fn page_id(&self) -> Result<String> {
        let mut conn = self.write().await?;
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('status_page_id', $1) ON CONFLICT DO NOTHING",
            &[hex::encode(rand::random::<[u8; 6]>()).as_str().into()],
        )
        .await?;
        conn.fetch_one("SELECT value FROM meta WHERE key = 'status_page_id'", &[]).await?.text("value")
    }

    async fn components(&self) -> Result<Vec<Component>> {
        self.read()
            .await?
            .fetch_all("SELECT * FROM status_components ORDER BY position, name", &[])
            .await?
            .iter()
            .map(component_from_row)
            .collect()
    }

    async fn component(&self, id: &str) -> Result<Option<Component>> {
        self.read()
            .await?
            .fetch_optional("SELECT * FROM status_components WHERE id = $1", &[id.into()])
            .await?
            .map(|r| component_from_row(&r))
            .transpose()
    }

    async fn create_component(&self, name: &str, fields: ComponentFields) -> Result<Component> {
        let now = now_ms();
        let id = new_id();
        let mut conn = self.write().await?;
        let position = match fields.position {
            Some(p) => p,
            None => conn
                .fetch_one("SELECT coalesce(max(position), 0) + 1 AS position FROM status_components", &[])
                .await?
                .int("position")?,
        };
        let description = fields.description.flatten();
        let group = fields.group.flatten();
        conn.execute(
            "INSERT INTO status_components
             (id, name, description, group_name, position, only_show_if_degraded, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            &[
                id.as_str().into(),
                name.into(),
                description.as_deref().into(),
                group.as_deref().into(),
                position.into(),
                fields.only_show_if_degraded.unwrap_or(false).into(),
                now.into(),
            ],
        )
        .await
        .map_err(|e| {
            if unique_violation(&e) { Error::conflict("a component with that name exists") } else { e.into() }
        })?;
        drop(conn);
        self.component(&id).await?.ok_or(Error::NotFound("component"))
    }

    async fn update_component(&self, id: &str, fields: ComponentFields) -> Result<Component> {
        let current = self.component(id).await?.ok_or(Error::NotFound("component"))?;
        let name = fields.name.unwrap_or(current.name);
        let description = fields.description.unwrap_or(current.description);
        let group = fields.group.unwrap_or(current.group);
        self.write()
            .await?
            .execute(
                "UPDATE status_components SET name = $1, description = $2, group_name = $3, position = $4,
                 only_show_if_degraded = $5, updated_at = $6 WHERE id = $7",
                &[
                    name.as_str().into(),
                    description.as_deref().into(),
                    group.as_deref().into(),
                    fields.position.unwrap_or(current.position).into(),
                    fields.only_show_if_degraded.unwrap_or(current.only_show_if_degraded).into(),
                    now_ms().into(),
                    id.into(),
                ],
            )
            .await
            .map_err(|e| {
                if unique_violation(&e) { Error::conflict("a component with that name exists") } else { e.into() }
            })?;
        self.component(id).await?.ok_or(Error::NotFound("component"))
    }

    async fn set_component_status(&self, id: &str, status: ComponentStatus) -> Result<(Component, ComponentStatus)> {
        let mut tx = self.begin().await?;
        let sql = self.dialect().locked("SELECT status FROM status_components WHERE id = $1");
        let old = tx.fetch_optional(sql, &[id.into()]).await?.ok_or(Error::NotFound("component"))?;
        let old = component_status(&old.text("status")?)?;
        tx.execute(
            "UPDATE status_components SET status = $1, updated_at = $2 WHERE id = $3",
            &[status.as_str().into(), now_ms().into(), id.into()],
        )
        .await?;
        tx.commit().await?;
        let component = self.component(id).await?.ok_or(Error::NotFound("component"))?;
        Ok((component, old))
    }

    async fn write_incident(&self, write: IncidentWrite) -> Result<Incident> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let id = match &write.incident_id {
            Some(id) => {
                let sql = self.dialect().locked("SELECT kind FROM status_incidents WHERE id = $1");
                let kind = tx.fetch_optional(sql, &[id.as_str().into()]).await?.ok_or(Error::NotFound("incident"))?;
                write.check_applies_to(&kind.text("kind")?)?;
                tx.execute(
                    "UPDATE status_incidents SET status = $1, impact = coalesce($2, impact), updated_at = $3,
                     monitoring_at = CASE WHEN $1 = 'monitoring' THEN coalesce(monitoring_at, $3) ELSE monitoring_at END,
                     resolved_at = CASE WHEN $1 IN ('resolved', 'completed') THEN $3 ELSE resolved_at END,
                     scheduled_for = coalesce($4, scheduled_for), scheduled_until = coalesce($5, scheduled_until)
                     WHERE id = $6",
                    &[
                        write.status.as_str().into(),
                        write.impact.map(Impact::as_str).into(),
                        now.into(),
                        write.scheduled_for.into(),
                        write.scheduled_until.into(),
                        id.as_str().into(),
                    ],
                )
                .await?;
                id.clone()
            }
            None => {
                let id = new_id();
                let new = write.new_incident(now)?;
                tx.execute(
                    "INSERT INTO status_incidents (id, kind, name, status, impact, auto, scheduled_for,
                     scheduled_until, created_at, updated_at, started_at, monitoring_at, resolved_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12)",
                    &[
                        id.as_str().into(),
                        write.kind.as_str().into(),
                        new.name.into(),
                        write.status.as_str().into(),
                        new.impact.as_str().into(),
                        write.auto.into(),
                        write.scheduled_for.into(),
                        write.scheduled_until.into(),
                        now.into(),
                        new.started_at.into(),
                        new.monitoring_at.into(),
                        new.resolved_at.into(),
                    ],
                )
                .await?;
                id
            }
        };
        let affected = self.set_incident_components(&mut tx, &id, &write.components, now).await?;
        let affected = serde_json::to_string(&affected).map_err(Error::internal)?;
        tx.execute(
            "INSERT INTO status_incident_updates (id, incident_id, status, body, affected, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                new_id().as_str().into(),
                id.as_str().into(),
                write.status.as_str().into(),
                write.body.as_str().into(),
                affected.as_str().into(),
                now.into(),
            ],
        )
        .await?;
        tx.commit().await?;
        self.incident(&id).await?.ok_or(Error::NotFound("incident"))
    }

    async fn incident(&self, id: &str) -> Result<Option<Incident>> {
        let mut conn = self.read().await?;
        match conn.fetch_optional("SELECT * FROM status_incidents WHERE id = $1", &[id.into()]).await? {
            Some(r) => Ok(Some(Self::complete_incident(&mut conn, incident_from_row(&r)?).await?)),
            None => Ok(None),
        }
    }

    async fn incidents(&self, kind: IncidentKind, open_only: bool, limit: i64) -> Result<Vec<Incident>> {
        let mut conn = self.read().await?;
        let rows = conn
            .fetch_all(
                "SELECT * FROM status_incidents WHERE kind = $1
                 AND (NOT $2 OR status NOT IN ('resolved', 'postmortem', 'completed'))
                 ORDER BY created_at DESC, id DESC LIMIT $3",
                &[kind.as_str().into(), open_only.into(), limit.into()],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(Self::complete_incident(&mut conn, incident_from_row(r)?).await?);
        }
        Ok(out)
    }

    async fn set_postmortem(&self, id: &str, body: &str) -> Result<Incident> {
        let done = self
            .write()
            .await?
            .execute(
                "UPDATE status_incidents SET postmortem = $1, postmortem_at = $2, updated_at = $2,
                 status = CASE WHEN status = 'resolved' THEN 'postmortem' ELSE status END
                 WHERE id = $3 AND kind = 'incident'",
                &[body.into(), now_ms().into(), id.into()],
            )
            .await?;
        if done == 0 {
            return Err(Error::NotFound("incident"));
        }
        self.incident(id).await?.ok_or(Error::NotFound("incident"))
    }

    async fn status_version(&self) -> Result<i64> {
        self.read()
            .await?
            .fetch_one(
                "SELECT coalesce(max(v), 0) AS latest FROM (
                    SELECT max(updated_at) AS v FROM status_components
                    UNION ALL SELECT max(updated_at) FROM status_incidents
                    UNION ALL SELECT count(*) FROM status_components) AS versions",
                &[],
            )
            .await?
            .int("latest")
    }

    async fn add_subscriber(
        &self,
        kind: SubscriberKind,
        target: &str,
        secret: Option<&str>,
        confirmed: bool,
    ) -> Result<Subscriber> {
        let now = now_ms();
        let mut conn = self.write().await?;
        conn.execute(
            "INSERT INTO status_subscribers (id, kind, target, token, secret, confirmed_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                new_id().as_str().into(),
                kind.as_str().into(),
                target.into(),
                new_token().as_str().into(),
                secret.into(),
                confirmed.then_some(now).into(),
                now.into(),
            ],
        )
        .await?;
        let row = conn
            .fetch_one(
                "SELECT * FROM status_subscribers WHERE kind = $1 AND target = $2",
                &[kind.as_str().into(), target.into()],
            )
            .await?;
        subscriber_from_row(&row)
    }

    async fn confirm_subscriber(&self, token: &str) -> Result<Option<Subscriber>> {
        self.write()
            .await?
            .fetch_optional(
                "UPDATE status_subscribers SET confirmed_at = coalesce(confirmed_at, $1) WHERE token = $2 RETURNING *",
                &[now_ms().into(), token.into()],
            )
            .await?
            .map(|r| subscriber_from_row(&r))
            .transpose()
    }

    async fn remove_subscriber(&self, token: &str) -> Result<bool> {
        // Its queued deliveries go with it (ON DELETE CASCADE on both).
        let gone =
            self.write().await?.execute("DELETE FROM status_subscribers WHERE token = $1", &[token.into()]).await?;
        Ok(gone > 0)
    }

    async fn subscribers(&self) -> Result<Vec<Subscriber>> {
        // With `delivery_error`: the last error of its newest failed delivery
        // that is not delivered yet (one pass over the undelivered ones,
        // whatever the number of subscribers).
        self.read()
            .await?
            .fetch_all(
                "SELECT s.*, e.last_error AS delivery_error
                 FROM status_subscribers s
                 LEFT JOIN (SELECT subscriber_id, last_error,
                                   ROW_NUMBER() OVER (PARTITION BY subscriber_id ORDER BY created_at DESC) AS newest
                            FROM status_deliveries WHERE delivered_at IS NULL AND last_error IS NOT NULL) e
                   ON e.subscriber_id = s.id AND e.newest = 1
                 ORDER BY s.created_at",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok(Subscriber { delivery_error: r.text_opt("delivery_error")?, ..subscriber_from_row(r)? }))
            .collect()
    }

    async fn enqueue_notification(&self, webhook_payload: &str, email_payload: &str) -> Result<usize> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let confirmed =
            tx.fetch_all("SELECT id, kind FROM status_subscribers WHERE confirmed_at IS NOT NULL", &[]).await?;
        // [[delivery id, subscriber id, payload], …]: one statement for every
        // subscriber, however many there are.
        let mut queued = Vec::with_capacity(confirmed.len());
        for row in &confirmed {
            let payload =
                if row.text("kind")? == SubscriberKind::Webhook.as_str() { webhook_payload } else { email_payload };
            queued.push([new_id(), row.text("id")?, payload.to_owned()]);
        }
        let queued = serde_json::to_string(&queued).map_err(Error::internal)?;
        tx.execute(self.dialect().enqueue_deliveries(), &[queued.as_str().into(), now.into()]).await?;
        tx.commit().await?;
        Ok(confirmed.len())
    }

    async fn enqueue_delivery(&self, subscriber_id: &str, payload: &str) -> Result<()> {
        self.write()
            .await?
            .execute(
                "INSERT INTO status_deliveries (id, subscriber_id, payload, next_at, created_at)
                 VALUES ($1, $2, $3, $4, $4)",
                &[new_id().as_str().into(), subscriber_id.into(), payload.into(), now_ms().into()],
            )
            .await?;
        Ok(())
    }

    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<Delivery>> {
        // One statement claims (on PostgreSQL skipping rows another runner is
        // claiming right now), then the claimed rows are read with their
        // subscribers.
        let mut conn = self.write().await?;
        let claimed: Vec<String> = conn
            .fetch_all(self.dialect().claim_deliveries(), &[lease_until.into(), now.into(), limit.into()])
            .await?
            .iter()
            .map(|r| r.text("id"))
            .collect::<Result<_>>()?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let claimed = serde_json::to_string(&claimed).map_err(Error::internal)?;
        conn.fetch_all(self.dialect().claimed_deliveries(), &[claimed.as_str().into()])
            .await?
            .iter()
            .map(delivery_from_row)
            .collect()
    }

    async fn deliveries_relayed(&self, ids: &[String], at: i64) -> Result<()> {
        let ids = serde_json::to_string(ids).map_err(Error::internal)?;
        self.write().await?.execute(self.dialect().mark_relayed(), &[at.into(), ids.as_str().into()]).await?;
        Ok(())
    }

    async fn subscriber(&self, id: &str) -> Result<Option<Subscriber>> {
        self.read()
            .await?
            .fetch_optional("SELECT * FROM status_subscribers WHERE id = $1", &[id.into()])
            .await?
            .map(|r| subscriber_from_row(&r))
            .transpose()
    }

    async fn delivery_done(&self, id: &str, at: i64) -> Result<()> {
        self.write()
            .await?
            .execute(
                "UPDATE status_deliveries SET delivered_at = $1, attempts = attempts + 1 WHERE id = $2",
                &[at.into(), id.into()],
            )
            .await?;
        Ok(())
    }

    async fn delivery_failed(&self, id: &str, error: &str, next_at: Option<i64>) -> Result<()> {
        self.write()
            .await?
            .execute(
                "UPDATE status_deliveries SET attempts = attempts + 1, last_error = $1, next_at = coalesce($2, next_at),
                 failed_at = CASE WHEN CAST($2 AS BIGINT) IS NULL THEN $3 ELSE NULL END WHERE id = $4",
                &[error.into(), next_at.into(), now_ms().into(), id.into()],
            )
            .await?;
        Ok(())
    }

    async fn create_monitor(
        &self,
        name: &str,
        component_id: &str,
        target: &str,
        interval_ms: i64,
        builtin: bool,
    ) -> Result<Monitor> {
        let mut conn = self.write().await?;
        let id = new_id();
        let args: [Arg; 6] =
            [id.as_str().into(), name.into(), component_id.into(), target.into(), interval_ms.into(), now_ms().into()];
        if builtin {
            // Built-in probes are re-pointed whenever a process takes the
            // lead (at its own address), never duplicated.
            conn.execute(
                "INSERT INTO status_monitors (id, name, component_id, target, interval_ms, builtin, created_at)
                 VALUES ($1, $2, $3, $4, $5, TRUE, $6)
                 ON CONFLICT (name) DO UPDATE SET target = excluded.target, interval_ms = excluded.interval_ms
                 WHERE status_monitors.builtin",
                &args,
            )
            .await?;
        } else {
            conn.execute(
                "INSERT INTO status_monitors (id, name, component_id, target, interval_ms, builtin, created_at)
                 VALUES ($1, $2, $3, $4, $5, FALSE, $6)",
                &args,
            )
            .await
            .map_err(|e| {
                if unique_violation(&e) { Error::conflict("a monitor with that name exists") } else { e.into() }
            })?;
        }
        let row = conn.fetch_one("SELECT * FROM status_monitors WHERE name = $1", &[name.into()]).await?;
        monitor_from_row(&row)
    }

    async fn monitors(&self) -> Result<Vec<Monitor>> {
        self.read()
            .await?
            .fetch_all("SELECT * FROM status_monitors ORDER BY builtin DESC, name", &[])
            .await?
            .iter()
            .map(monitor_from_row)
            .collect()
    }

    async fn delete_monitor(&self, id: &str) -> Result<bool> {
        let gone = self
            .write()
            .await?
            .execute("DELETE FROM status_monitors WHERE id = $1 AND NOT builtin", &[id.into()])
            .await?;
        Ok(gone > 0)
    }

    async fn record_check(&self, monitor_id: &str, at: i64, failures: i64, error: Option<&str>) -> Result<()> {
        self.write()
            .await?
            .execute(
                "UPDATE status_monitors SET last_check_at = $1, failures = $2, last_error = coalesce($3, last_error),
                 last_failure_at = CASE WHEN CAST($3 AS TEXT) IS NULL THEN last_failure_at ELSE $1 END WHERE id = $4",
                &[at.into(), failures.into(), error.into(), monitor_id.into()],
            )
            .await?;
        Ok(())
    }

    async fn record_probe(&self, component_id: &str, at: i64, ok: bool) -> Result<()> {
        self.write()
            .await?
            .execute(
                "INSERT INTO status_probe_days (component_id, day, ok, total) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (component_id, day) DO UPDATE
                 SET ok = status_probe_days.ok + excluded.ok, total = status_probe_days.total + 1",
                &[component_id.into(), at.div_euclid(86_400_000).into(), (ok as i64).into()],
            )
            .await?;
        Ok(())
    }

    async fn uptime(&self, since_day: i64) -> Result<Vec<UptimeDay>> {
        self.read()
            .await?
            .fetch_all(
                "SELECT * FROM status_probe_days WHERE day >= $1 ORDER BY component_id, day",
                &[since_day.into()],
            )
            .await?
            .iter()
            .map(uptime_from_row)
            .collect()
    }

    async fn try_lead(&self) -> Result<Option<Box<dyn Lead>>> {
        match &self.backend {
            Backend::Sqlite { lead_file, .. } => {
                Ok(FileLead::try_take(lead_file)?.map(|l| Box::new(l) as Box<dyn Lead>))
            }
            Backend::Postgres { pool } => AdvisoryLead::try_take(pool).await,
        }
    }
}

/// Where SQLite and PostgreSQL differ, for the status page's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `select` locking the rows it reads until the transaction ends. SQLite
    /// has no row locks and needs none: the status file has one writer.
    fn locked(self, select: &'static str) -> AssertSqlSafe<String> {
        match self {
            Dialect::Sqlite => AssertSqlSafe(select.to_owned()),
            Dialect::Postgres => AssertSqlSafe(format!("{select} FOR UPDATE")),
        }
    }

    /// Queue deliveries given as a JSON array `$1` of `[id, subscriber id,
    /// payload]`, due at `$2`.
    fn enqueue_deliveries(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "INSERT INTO status_deliveries (id, subscriber_id, payload, next_at, created_at)
                 SELECT q.value ->> 0, q.value ->> 1, q.value ->> 2, $2, $2 FROM json_each($1) AS q"
            }
            Dialect::Postgres => {
                "INSERT INTO status_deliveries (id, subscriber_id, payload, next_at, created_at)
                 SELECT q.value ->> 0, q.value ->> 1, q.value ->> 2, $2, $2 FROM json_array_elements($1::json) AS q (value)"
            }
        }
    }

    /// Lease (`next_at = $1`) up to `$3` deliveries due at `$2`, returning
    /// their ids.
    fn claim_deliveries(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "UPDATE status_deliveries SET next_at = $1 WHERE id IN (
                    SELECT id FROM status_deliveries
                    WHERE relayed_at IS NULL AND next_at <= $2
                    ORDER BY next_at LIMIT $3)
                 RETURNING id"
            }
            Dialect::Postgres => {
                "UPDATE status_deliveries SET next_at = $1 WHERE id IN (
                    SELECT id FROM status_deliveries
                    WHERE relayed_at IS NULL AND next_at <= $2
                    ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id"
            }
        }
    }

    /// Mark relayed at `$1` the deliveries whose ids are the JSON array `$2`.
    fn mark_relayed(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "UPDATE status_deliveries SET relayed_at = $1 WHERE id IN (SELECT value FROM json_each($2))"
            }
            Dialect::Postgres => {
                "UPDATE status_deliveries SET relayed_at = $1
                 WHERE id IN (SELECT value FROM json_array_elements_text($2::json) AS ids (value))"
            }
        }
    }

    /// The deliveries whose ids are the JSON array `$1`, with their
    /// subscribers (`d.id AS delivery_id, d.payload, d.attempts, s.*`).
    fn claimed_deliveries(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT d.id AS delivery_id, d.payload, d.attempts, d.created_at AS delivery_created_at, s.* FROM status_deliveries d
                 JOIN status_subscribers s ON s.id = d.subscriber_id
                 WHERE d.id IN (SELECT value FROM json_each($1)) ORDER BY d.created_at, d.id"
            }
            Dialect::Postgres => {
                "SELECT d.id AS delivery_id, d.payload, d.attempts, d.created_at AS delivery_created_at, s.* FROM status_deliveries d
                 JOIN status_subscribers s ON s.id = d.subscriber_id
                 WHERE d.id IN (SELECT value FROM json_array_elements_text($1::json) AS ids (value)) ORDER BY d.created_at, d.id"
            }
        }
    }
}

/// The lead of a SQLite data dir: an exclusive lock on `status-runner.lock`,
/// held while the file stays open. Processes sharing the data dir (`serve`
/// and `serve --only status`) run the side tasks once; the kernel releases
/// the lock when the process ends, however it ends.
struct FileLead {
    _locked: std::fs::File,
}

impl FileLead {
    fn try_take(path: &Path) -> Result<Option<FileLead>> {
        let cannot = |e: std::io::Error| Error::Store(anyhow::anyhow!("cannot lock {}: {e}", path.display()));
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(cannot)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLead { _locked: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(cannot(e)),
        }
    }
}

#[async_trait]
impl Lead for FileLead {
    async fn still_held(&mut self) -> bool {
        // A lock on an open file cannot be taken away.
        true
    }
}

/// The lead of a cluster: the session holding [`LEAD_LOCK`]. Dropping it
/// closes the session, which releases the lock.
struct AdvisoryLead {
    conn: PgConnection,
}

impl AdvisoryLead {
    async fn try_take(pool: &PgPool) -> Result<Option<Box<dyn Lead>>> {
        let mut conn = pool.acquire().await?;
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEAD_LOCK).fetch_one(&mut *conn).await?;
        if !taken {
            return Ok(None);
        }
        // The lock lives as long as this session: take it out of the pool,
        // so no other work ever runs on it (or returns it with the lock).
        let mut conn = conn.detach();
        sqlx::raw_sql(LEAD_KEEPALIVES).execute(&mut conn).await?;
        Ok(Some(Box::new(AdvisoryLead { conn })))
    }
}

#[async_trait]
impl Lead for AdvisoryLead {
    async fn still_held(&mut self) -> bool {
        let held = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
             AND granted AND classid = 0 AND objid = $1::oid AND objsubid = 1)",
        )
        .bind(LEAD_LOCK)
        .fetch_one(&mut self.conn);
        matches!(tokio::time::timeout(LEAD_CHECK_TIMEOUT, held).await, Ok(Ok(true)))
    }
}

// ----- statements on either backend -----------------------------------------

/// A statement's parameter (`$1`, `$2`…), bound alike on both backends.
/// Flags are booleans: PostgreSQL's `BOOLEAN`, SQLite's 0 and 1.
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Flag(bool),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Flag(v)
    }
}

/// `sql` with `args` bound, for either backend.
fn bound<DB>(sql: impl SqlSafeStr, args: &[Arg<'_>]) -> Query<'static, DB, DB::Arguments>
where
    DB: Database,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
{
    args.iter().fold(sqlx::query(sql), |query, arg| match *arg {
        Arg::Text(v) => query.bind(v),
        Arg::Int(v) => query.bind(v),
        Arg::Flag(v) => query.bind(v),
    })
}

/// A connection of either backend, pooled or in a transaction: where the
/// store's statements run. Dropping a transaction uncommitted rolls it back.
enum Conn {
    Sqlite(Link<Sqlite>),
    Postgres(Link<Postgres>),
}

enum Link<DB: Database> {
    Pooled(PoolConnection<DB>),
    Tx(sqlx::Transaction<'static, DB>),
}

impl<DB: Database> Link<DB> {
    fn conn(&mut self) -> &mut DB::Connection {
        match self {
            Link::Pooled(c) => c,
            Link::Tx(t) => t,
        }
    }
}

impl Conn {
    /// Run a statement; how many rows it changed.
    async fn execute(&mut self, sql: impl SqlSafeStr + Send, args: &[Arg<'_>]) -> sqlx::Result<u64> {
        Ok(match self {
            Conn::Sqlite(link) => bound::<Sqlite>(sql, args).execute(link.conn()).await?.rows_affected(),
            Conn::Postgres(link) => bound::<Postgres>(sql, args).execute(link.conn()).await?.rows_affected(),
        })
    }

    async fn fetch_all(&mut self, sql: impl SqlSafeStr + Send, args: &[Arg<'_>]) -> sqlx::Result<Vec<Row>> {
        Ok(match self {
            Conn::Sqlite(link) => {
                bound::<Sqlite>(sql, args).fetch_all(link.conn()).await?.into_iter().map(Row::Sqlite).collect()
            }
            Conn::Postgres(link) => {
                bound::<Postgres>(sql, args).fetch_all(link.conn()).await?.into_iter().map(Row::Postgres).collect()
            }
        })
    }

    async fn fetch_optional(&mut self, sql: impl SqlSafeStr + Send, args: &[Arg<'_>]) -> sqlx::Result<Option<Row>> {
        Ok(match self {
            Conn::Sqlite(link) => bound::<Sqlite>(sql, args).fetch_optional(link.conn()).await?.map(Row::Sqlite),
            Conn::Postgres(link) => bound::<Postgres>(sql, args).fetch_optional(link.conn()).await?.map(Row::Postgres),
        })
    }

    async fn fetch_one(&mut self, sql: impl SqlSafeStr + Send, args: &[Arg<'_>]) -> sqlx::Result<Row> {
        self.fetch_optional(sql, args).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// Commit the transaction this connection is in.
    async fn commit(self) -> sqlx::Result<()> {
        match self {
            Conn::Sqlite(Link::Tx(tx)) => tx.commit().await,
            Conn::Postgres(Link::Tx(tx)) => tx.commit().await,
            Conn::Sqlite(Link::Pooled(_)) | Conn::Postgres(Link::Pooled(_)) => Ok(()),
        }
    }
}

/// A row of either backend, read by column name. Flags decode as `bool`
/// from SQLite's 0/1 integers and PostgreSQL's booleans alike.
enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    fn get<T>(&self, column: &str) -> Result<T>
    where
        T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>,
    {
        Ok(match self {
            Row::Sqlite(r) => r.try_get(column)?,
            Row::Postgres(r) => r.try_get(column)?,
        })
    }

    fn text(&self, column: &str) -> Result<String> {
        self.get(column)
    }

    fn text_opt(&self, column: &str) -> Result<Option<String>> {
        self.get(column)
    }

    fn int(&self, column: &str) -> Result<i64> {
        self.get(column)
    }

    fn int_opt(&self, column: &str) -> Result<Option<i64>> {
        self.get(column)
    }

    fn flag(&self, column: &str) -> Result<bool> {
        self.get(column)
    }
}

// ----- rows to records ------------------------------------------------------

fn bad_row(what: &str, value: &str) -> Error {
    Error::Store(anyhow::anyhow!("unexpected {what} in database: {value:?}"))
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn component_status(text: &str) -> Result<ComponentStatus> {
    ComponentStatus::parse(text).ok_or_else(|| bad_row("component status", text))
}

fn component_from_row(r: &Row) -> Result<Component> {
    Ok(Component {
        id: r.text("id")?,
        name: r.text("name")?,
        description: r.text_opt("description")?,
        group: r.text_opt("group_name")?,
        position: r.int("position")?,
        status: component_status(&r.text("status")?)?,
        only_show_if_degraded: r.flag("only_show_if_degraded")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

fn incident_from_row(r: &Row) -> Result<Incident> {
    let kind = r.text("kind")?;
    let status = r.text("status")?;
    let impact = r.text("impact")?;
    Ok(Incident {
        id: r.text("id")?,
        kind: IncidentKind::parse(&kind).ok_or_else(|| bad_row("incident kind", &kind))?,
        name: r.text("name")?,
        status: IncidentStatus::parse(&status).ok_or_else(|| bad_row("incident status", &status))?,
        impact: Impact::parse(&impact).ok_or_else(|| bad_row("impact", &impact))?,
        postmortem: r.text_opt("postmortem")?,
        postmortem_at: r.int_opt("postmortem_at")?,
        auto: r.flag("auto")?,
        scheduled_for: r.int_opt("scheduled_for")?,
        scheduled_until: r.int_opt("scheduled_until")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        started_at: r.int("started_at")?,
        monitoring_at: r.int_opt("monitoring_at")?,
        resolved_at: r.int_opt("resolved_at")?,
        components: Vec::new(),
        updates: Vec::new(),
    })
}

fn update_from_row(r: &Row) -> Result<IncidentUpdate> {
    let status = r.text("status")?;
    let affected = r.text("affected")?;
    Ok(IncidentUpdate {
        id: r.text("id")?,
        incident_id: r.text("incident_id")?,
        status: IncidentStatus::parse(&status).ok_or_else(|| bad_row("update status", &status))?,
        body: r.text("body")?,
        affected: serde_json::from_str(&affected).map_err(|_| bad_row("affected components", &affected))?,
        created_at: r.int("created_at")?,
    })
}

fn subscriber_from_row(r: &Row) -> Result<Subscriber> {
    let kind = r.text("kind")?;
    Ok(Subscriber {
        id: r.text("id")?,
        kind: SubscriberKind::parse(&kind).ok_or_else(|| bad_row("subscriber kind", &kind))?,
        target: r.text("target")?,
        token: r.text("token")?,
        secret: r.text_opt("secret")?,
        confirmed_at: r.int_opt("confirmed_at")?,
        created_at: r.int("created_at")?,
        delivery_error: None,
    })
}

/// A delivery joined with its subscriber (`d.id AS delivery_id, d.payload,
/// d.attempts, s.*`).
fn delivery_from_row(r: &Row) -> Result<Delivery> {
    Ok(Delivery {
        id: r.text("delivery_id")?,
        subscriber: subscriber_from_row(r)?,
        payload: r.text("payload")?,
        attempts: r.int("attempts")?,
        created_at: r.int("delivery_created_at")?,
    })
}

fn monitor_from_row(r: &Row) -> Result<Monitor> {
    Ok(Monitor {
        id: r.text("id")?,
        name: r.text("name")?,
        component_id: r.text("component_id")?,
        target: r.text("target")?,
        interval_ms: r.int("interval_ms")?,
        builtin: r.flag("builtin")?,
        created_at: r.int("created_at")?,
        failures: r.int("failures")?,
        last_error: r.text_opt("last_error")?,
        last_check_at: r.int_opt("last_check_at")?,
        last_failure_at: r.int_opt("last_failure_at")?,
    })
}

fn uptime_from_row(r: &Row) -> Result<UptimeDay> {
    Ok(UptimeDay {
        component_id: r.text("component_id")?,
        day: r.int("day")?,
        ok: r.int("ok")?,
        total: r.int("total")?,
    })
}

/// A URL-safe random token (confirm and unsubscribe links).
fn new_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}
