//! The status page's store on PostgreSQL: [`StatusStore`] for
//! [`PostgresStore`], so every node of a cluster shows one page. It behaves
//! as the SQLite implementation in `status.rs` does (the same tests run
//! against both) and maps rows with the same functions.
//!
//! Between nodes: an update locks the incident's and its components' rows
//! (`FOR UPDATE`, components in id order so two updates cannot deadlock)
//! while it reads their old states, so the "before" a notification reports
//! is the state it replaced; due deliveries are claimed with `FOR UPDATE
//! SKIP LOCKED` and a lease.
//!
//! Who runs the monitors and delivers notifications: the node holding the
//! session-level advisory lock [`LEAD_LOCK`], taken on a connection of its
//! own, out of the pool. PostgreSQL releases it when that session ends:
//! at once when the process dies (kill -9 closes its sockets), and within
//! about 15 s when the host vanishes (the session's TCP keepalives). The
//! holder checks every few seconds that its session still holds it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::postgres::PostgresStore;
use super::status::{
    AffectedComponent, Columns, Component, ComponentFields, ComponentStatus, Delivery, Impact, Incident, IncidentKind,
    IncidentWrite, Lead, Monitor, SUBSCRIBERS_WITH_DELIVERY_ERRORS, StatusStore, Subscriber, SubscriberKind, UptimeDay,
    component_from_row, component_status, delivery_from_row, incident_from_row, monitor_from_row, new_token,
    subscriber_from_row, subscriber_with_error_from_row, unique_violation, update_from_row, uptime_from_row,
};
use super::{new_id, now_ms};
use crate::error::{Error, Result};

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

impl PostgresStore {
    /// Fill in an incident's components and updates.
    async fn complete_incident(&self, mut incident: Incident) -> Result<Incident> {
        incident.components = sqlx::query_scalar(
            "SELECT ic.component_id FROM status_incident_components ic
             JOIN status_components c ON c.id = ic.component_id
             WHERE ic.incident_id = $1 ORDER BY c.position, c.name",
        )
        .bind(&incident.id)
        .fetch_all(&self.pool)
        .await?;
        incident.updates =
            sqlx::query("SELECT * FROM status_incident_updates WHERE incident_id = $1 ORDER BY created_at, id")
                .bind(&incident.id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(update_from_row)
                .collect::<Result<_>>()?;
        Ok(incident)
    }

    /// Set the states of an incident's components in `tx`, linking them to
    /// it; returns what each was before. Rows are locked in id order.
    async fn set_incident_components(
        tx: &mut PgConnection,
        incident_id: &str,
        components: &[(String, ComponentStatus)],
        now: i64,
    ) -> Result<Vec<AffectedComponent>> {
        let ids: Vec<&str> = components.iter().map(|(id, _)| id.as_str()).collect();
        let mut current: HashMap<String, (String, ComponentStatus)> = HashMap::new();
        for row in
            sqlx::query("SELECT id, name, status FROM status_components WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?
        {
            current.insert(row.text("id")?, (row.text("name")?, component_status(&row.text("status")?)?));
        }
        let mut affected = Vec::with_capacity(components.len());
        for (component_id, new_status) in components {
            let (name, old_status) = current.get_mut(component_id).ok_or(Error::NotFound("component"))?;
            affected.push(AffectedComponent {
                code: component_id.clone(),
                name: name.clone(),
                old_status: *old_status,
                new_status: *new_status,
            });
            *old_status = *new_status;
            sqlx::query("UPDATE status_components SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(new_status.as_str())
                .bind(now)
                .bind(component_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO status_incident_components (incident_id, component_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(incident_id)
            .bind(component_id)
            .execute(&mut *tx)
            .await?;
        }
        Ok(affected)
    }
}

#[async_trait]
impl StatusStore for PostgresStore {
    async fn seed_components(&self, names: &[&str]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Nodes starting together wait here on the first one's row: one seeds.
        let seeded = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('status_components_seeded', '1') ON CONFLICT DO NOTHING",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if seeded {
            let now = now_ms();
            for (position, name) in names.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO status_components (id, name, position, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(new_id())
                .bind(name)
                .bind(position as i64 + 1)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(seeded)
    }

    async fn page_id(&self) -> Result<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ('status_page_id', $1) ON CONFLICT DO NOTHING")
            .bind(hex::encode(rand::random::<[u8; 6]>()))
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = 'status_page_id'").fetch_one(&self.pool).await?)
    }

    async fn components(&self) -> Result<Vec<Component>> {
        sqlx::query("SELECT * FROM status_components ORDER BY position, name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(component_from_row)
            .collect()
    }

    async fn component(&self, id: &str) -> Result<Option<Component>> {
        sqlx::query("SELECT * FROM status_components WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| component_from_row(&r))
            .transpose()
    }

    async fn create_component(&self, name: &str, fields: ComponentFields) -> Result<Component> {
        let now = now_ms();
        let id = new_id();
        let position = match fields.position {
            Some(p) => p,
            None => {
                sqlx::query_scalar::<_, i64>("SELECT coalesce(max(position), 0) + 1 FROM status_components")
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        sqlx::query(
            "INSERT INTO status_components
             (id, name, description, group_name, position, only_show_if_degraded, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(name)
        .bind(fields.description.flatten())
        .bind(fields.group.flatten())
        .bind(position)
        .bind(fields.only_show_if_degraded.unwrap_or(false))
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if unique_violation(&e) { Error::conflict("a component with that name exists") } else { e.into() }
        })?;
        self.component(&id).await?.ok_or(Error::NotFound("component"))
    }

    async fn update_component(&self, id: &str, fields: ComponentFields) -> Result<Component> {
        let current = self.component(id).await?.ok_or(Error::NotFound("component"))?;
        sqlx::query(
            "UPDATE status_components SET name = $1, description = $2, group_name = $3, position = $4,
             only_show_if_degraded = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(fields.name.unwrap_or(current.name))
        .bind(fields.description.unwrap_or(current.description))
        .bind(fields.group.unwrap_or(current.group))
        .bind(fields.position.unwrap_or(current.position))
        .bind(fields.only_show_if_degraded.unwrap_or(current.only_show_if_degraded))
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if unique_violation(&e) { Error::conflict("a component with that name exists") } else { e.into() }
        })?;
        self.component(id).await?.ok_or(Error::NotFound("component"))
    }

    async fn set_component_status(&self, id: &str, status: ComponentStatus) -> Result<(Component, ComponentStatus)> {
        let mut tx = self.pool.begin().await?;
        let old: Option<String> = sqlx::query_scalar("SELECT status FROM status_components WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let old = component_status(&old.ok_or(Error::NotFound("component"))?)?;
        sqlx::query("UPDATE status_components SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let component = self.component(id).await?.ok_or(Error::NotFound("component"))?;
        Ok((component, old))
    }

    async fn write_incident(&self, write: IncidentWrite) -> Result<Incident> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let id = match &write.incident_id {
            Some(id) => {
                let kind: Option<String> =
                    sqlx::query_scalar("SELECT kind FROM status_incidents WHERE id = $1 FOR UPDATE")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                write.check_applies_to(&kind.ok_or(Error::NotFound("incident"))?)?;
                sqlx::query(
                    "UPDATE status_incidents SET status = $1, impact = coalesce($2, impact), updated_at = $3,
                     monitoring_at = CASE WHEN $1 = 'monitoring' THEN coalesce(monitoring_at, $3) ELSE monitoring_at END,
                     resolved_at = CASE WHEN $1 IN ('resolved', 'completed') THEN $3 ELSE resolved_at END,
                     scheduled_for = coalesce($4, scheduled_for), scheduled_until = coalesce($5, scheduled_until)
                     WHERE id = $6",
                )
                .bind(write.status.as_str())
                .bind(write.impact.map(Impact::as_str))
                .bind(now)
                .bind(write.scheduled_for)
                .bind(write.scheduled_until)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                id.clone()
            }
            None => {
                let id = new_id();
                let new = write.new_incident(now)?;
                sqlx::query(
                    "INSERT INTO status_incidents (id, kind, name, status, impact, auto, scheduled_for,
                     scheduled_until, created_at, updated_at, started_at, monitoring_at, resolved_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12)",
                )
                .bind(&id)
                .bind(write.kind.as_str())
                .bind(new.name)
                .bind(write.status.as_str())
                .bind(new.impact.as_str())
                .bind(write.auto)
                .bind(write.scheduled_for)
                .bind(write.scheduled_until)
                .bind(now)
                .bind(new.started_at)
                .bind(new.monitoring_at)
                .bind(new.resolved_at)
                .execute(&mut *tx)
                .await?;
                id
            }
        };
        let affected = Self::set_incident_components(&mut tx, &id, &write.components, now).await?;
        sqlx::query(
            "INSERT INTO status_incident_updates (id, incident_id, status, body, affected, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind(&id)
        .bind(write.status.as_str())
        .bind(&write.body)
        .bind(serde_json::to_string(&affected).map_err(Error::internal)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.incident(&id).await?.ok_or(Error::NotFound("incident"))
    }

    async fn incident(&self, id: &str) -> Result<Option<Incident>> {
        let row =
            sqlx::query("SELECT * FROM status_incidents WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        match row {
            Some(r) => Ok(Some(self.complete_incident(incident_from_row(&r)?).await?)),
            None => Ok(None),
        }
    }

    async fn incidents(&self, kind: IncidentKind, open_only: bool, limit: i64) -> Result<Vec<Incident>> {
        let rows = sqlx::query(
            "SELECT * FROM status_incidents WHERE kind = $1
             AND (NOT $2 OR status NOT IN ('resolved', 'postmortem', 'completed'))
             ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(kind.as_str())
        .bind(open_only)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.complete_incident(incident_from_row(r)?).await?);
        }
        Ok(out)
    }

    async fn set_postmortem(&self, id: &str, body: &str) -> Result<Incident> {
        let done = sqlx::query(
            "UPDATE status_incidents SET postmortem = $1, postmortem_at = $2, updated_at = $2,
             status = CASE WHEN status = 'resolved' THEN 'postmortem' ELSE status END
             WHERE id = $3 AND kind = 'incident'",
        )
        .bind(body)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound("incident"));
        }
        self.incident(id).await?.ok_or(Error::NotFound("incident"))
    }

    async fn status_version(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce(max(v), 0) FROM (
                SELECT max(updated_at) AS v FROM status_components
                UNION ALL SELECT max(updated_at) FROM status_incidents
                UNION ALL SELECT count(*) FROM status_components) AS versions",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn add_subscriber(
        &self,
        kind: SubscriberKind,
        target: &str,
        secret: Option<&str>,
        confirmed: bool,
    ) -> Result<Subscriber> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO status_subscribers (id, kind, target, token, secret, confirmed_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(new_id())
        .bind(kind.as_str())
        .bind(target)
        .bind(new_token())
        .bind(secret)
        .bind(confirmed.then_some(now))
        .bind(now)
        .execute(&self.pool)
        .await?;
        sqlx::query("SELECT * FROM status_subscribers WHERE kind = $1 AND target = $2")
            .bind(kind.as_str())
            .bind(target)
            .fetch_one(&self.pool)
            .await
            .map_err(Error::from)
            .and_then(|r| subscriber_from_row(&r))
    }

    async fn confirm_subscriber(&self, token: &str) -> Result<Option<Subscriber>> {
        sqlx::query(
            "UPDATE status_subscribers SET confirmed_at = coalesce(confirmed_at, $1) WHERE token = $2 RETURNING *",
        )
        .bind(now_ms())
        .bind(token)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| subscriber_from_row(&r))
        .transpose()
    }

    async fn remove_subscriber(&self, token: &str) -> Result<bool> {
        // Its queued deliveries go with it (ON DELETE CASCADE).
        let gone =
            sqlx::query("DELETE FROM status_subscribers WHERE token = $1").bind(token).execute(&self.pool).await?;
        Ok(gone.rows_affected() > 0)
    }

    async fn subscribers(&self) -> Result<Vec<Subscriber>> {
        sqlx::query(SUBSCRIBERS_WITH_DELIVERY_ERRORS)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(subscriber_with_error_from_row)
            .collect()
    }

    async fn enqueue_notification(&self, webhook_payload: &str, email_payload: &str) -> Result<usize> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let confirmed: Vec<(String, String)> =
            sqlx::query_as("SELECT id, kind FROM status_subscribers WHERE confirmed_at IS NOT NULL")
                .fetch_all(&mut *tx)
                .await?;
        let ids: Vec<String> = confirmed.iter().map(|_| new_id()).collect();
        let subscribers: Vec<&str> = confirmed.iter().map(|(id, _)| id.as_str()).collect();
        let payloads: Vec<&str> = confirmed
            .iter()
            .map(|(_, kind)| if kind == SubscriberKind::Webhook.as_str() { webhook_payload } else { email_payload })
            .collect();
        // One statement for every subscriber, however many there are.
        sqlx::query(
            "INSERT INTO status_deliveries (id, subscriber_id, payload, next_at, created_at)
             SELECT id, subscriber_id, payload, $4, $4 FROM unnest($1::text[], $2::text[], $3::text[])
                 AS queued (id, subscriber_id, payload)",
        )
        .bind(&ids)
        .bind(&subscribers)
        .bind(&payloads)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(confirmed.len())
    }

    async fn enqueue_delivery(&self, subscriber_id: &str, payload: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO status_deliveries (id, subscriber_id, payload, next_at, created_at)
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(new_id())
        .bind(subscriber_id)
        .bind(payload)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<Delivery>> {
        // SKIP LOCKED: a row another runner is claiming right now is left to it.
        sqlx::query(
            "WITH claimed AS (
                UPDATE status_deliveries SET next_at = $1 WHERE id IN (
                    SELECT id FROM status_deliveries
                    WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= $2
                    ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                RETURNING id, subscriber_id, payload, attempts, created_at)
             SELECT c.id AS delivery_id, c.payload, c.attempts, s.* FROM claimed c
             JOIN status_subscribers s ON s.id = c.subscriber_id ORDER BY c.created_at, c.id",
        )
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    async fn delivery_done(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE status_deliveries SET delivered_at = $1, attempts = attempts + 1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delivery_failed(&self, id: &str, error: &str, next_at: Option<i64>) -> Result<()> {
        sqlx::query(
            "UPDATE status_deliveries SET attempts = attempts + 1, last_error = $1, next_at = coalesce($2, next_at),
             failed_at = CASE WHEN $2::bigint IS NULL THEN $3 ELSE NULL END WHERE id = $4",
        )
        .bind(error)
        .bind(next_at)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
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
        if builtin {
            // Built-in probes are re-pointed whenever a node takes the lead
            // (at its own address), never duplicated.
            sqlx::query(
                "INSERT INTO status_monitors (id, name, component_id, target, interval_ms, builtin, created_at)
                 VALUES ($1, $2, $3, $4, $5, TRUE, $6)
                 ON CONFLICT (name) DO UPDATE SET target = excluded.target, interval_ms = excluded.interval_ms
                 WHERE status_monitors.builtin",
            )
            .bind(new_id())
            .bind(name)
            .bind(component_id)
            .bind(target)
            .bind(interval_ms)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO status_monitors (id, name, component_id, target, interval_ms, builtin, created_at)
                 VALUES ($1, $2, $3, $4, $5, FALSE, $6)",
            )
            .bind(new_id())
            .bind(name)
            .bind(component_id)
            .bind(target)
            .bind(interval_ms)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if unique_violation(&e) { Error::conflict("a monitor with that name exists") } else { e.into() }
            })?;
        }
        sqlx::query("SELECT * FROM status_monitors WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(Error::from)
            .and_then(|r| monitor_from_row(&r))
    }

    async fn monitors(&self) -> Result<Vec<Monitor>> {
        sqlx::query("SELECT * FROM status_monitors ORDER BY builtin DESC, name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(monitor_from_row)
            .collect()
    }

    async fn delete_monitor(&self, id: &str) -> Result<bool> {
        let gone = sqlx::query("DELETE FROM status_monitors WHERE id = $1 AND NOT builtin")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(gone.rows_affected() > 0)
    }

    async fn record_check(&self, monitor_id: &str, at: i64, failures: i64, error: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE status_monitors SET last_check_at = $1, failures = $2, last_error = coalesce($3, last_error),
             last_failure_at = CASE WHEN $3::text IS NULL THEN last_failure_at ELSE $1 END WHERE id = $4",
        )
        .bind(at)
        .bind(failures)
        .bind(error)
        .bind(monitor_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn record_probe(&self, component_id: &str, at: i64, ok: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO status_probe_days (component_id, day, ok, total) VALUES ($1, $2, $3, 1)
             ON CONFLICT (component_id, day) DO UPDATE
             SET ok = status_probe_days.ok + excluded.ok, total = status_probe_days.total + 1",
        )
        .bind(component_id)
        .bind(at.div_euclid(86_400_000))
        .bind(ok as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn uptime(&self, since_day: i64) -> Result<Vec<UptimeDay>> {
        sqlx::query("SELECT * FROM status_probe_days WHERE day >= $1 ORDER BY component_id, day")
            .bind(since_day)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(uptime_from_row)
            .collect()
    }

    async fn try_lead(&self) -> Result<Option<Box<dyn Lead>>> {
        let mut conn = self.pool.acquire().await?;
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

/// The lead of a cluster: the session holding [`LEAD_LOCK`]. Dropping it
/// closes the session, which releases the lock.
struct AdvisoryLead {
    conn: PgConnection,
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
