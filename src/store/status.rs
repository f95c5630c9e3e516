//! The status page's durable state: components, incidents and maintenances
//! with their updates, subscribers and their delivery outbox, monitors and
//! the uptime roll-up. [`StatusStore`] is the interface `status/` sees;
//! the SQLite implementation is below, the only SQL for it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::sqlite::SqliteStore;
use super::{new_id, now_ms};
use crate::error::{Error, Result};

/// A closed set of values stored and shown as snake_case text.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted values, for error messages.
            pub fn choices() -> String {
                [$($text),+].join(", ")
            }
        }
    };
}

text_enum!(
    /// How a component is doing, worst last (but maintenance).
    ComponentStatus {
        Operational = "operational",
        DegradedPerformance = "degraded_performance",
        PartialOutage = "partial_outage",
        MajorOutage = "major_outage",
        UnderMaintenance = "under_maintenance",
    }
);

text_enum!(
    /// An unplanned incident or a scheduled maintenance.
    IncidentKind {
        Incident = "incident",
        Maintenance = "maintenance",
    }
);

text_enum!(
    /// Where an incident (the first five) or a maintenance (the last four)
    /// stands.
    IncidentStatus {
        Investigating = "investigating",
        Identified = "identified",
        Monitoring = "monitoring",
        Resolved = "resolved",
        Postmortem = "postmortem",
        Scheduled = "scheduled",
        InProgress = "in_progress",
        Verifying = "verifying",
        Completed = "completed",
    }
);

text_enum!(
    /// How bad an incident is; maintenances have the impact `maintenance`.
    Impact {
        None = "none",
        Minor = "minor",
        Major = "major",
        Critical = "critical",
        Maintenance = "maintenance",
    }
);

text_enum!(
    SubscriberKind {
        Email = "email",
        Webhook = "webhook",
    }
);

impl IncidentStatus {
    /// Whether this status belongs to incidents or to maintenances.
    pub fn kind(self) -> IncidentKind {
        match self {
            IncidentStatus::Scheduled
            | IncidentStatus::InProgress
            | IncidentStatus::Verifying
            | IncidentStatus::Completed => IncidentKind::Maintenance,
            _ => IncidentKind::Incident,
        }
    }

    /// Over: nothing more is expected to happen.
    pub fn is_closed(self) -> bool {
        matches!(self, IncidentStatus::Resolved | IncidentStatus::Postmortem | IncidentStatus::Completed)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Components with the same group are shown together.
    pub group: Option<String>,
    /// Order on the page, smallest first.
    pub position: i64,
    pub status: ComponentStatus,
    /// Hidden from the page while operational.
    pub only_show_if_degraded: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ComponentFields {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub group: Option<Option<String>>,
    pub position: Option<i64>,
    pub only_show_if_degraded: Option<bool>,
}

/// A component's state before and after an update, as the update records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedComponent {
    /// The component's id.
    pub code: String,
    pub name: String,
    pub old_status: ComponentStatus,
    pub new_status: ComponentStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentUpdate {
    pub id: String,
    pub incident_id: String,
    pub status: IncidentStatus,
    pub body: String,
    /// The components this update changed, with their states at that time.
    pub affected: Vec<AffectedComponent>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: String,
    pub kind: IncidentKind,
    pub name: String,
    pub status: IncidentStatus,
    pub impact: Impact,
    /// Markdown, rendered sanitized.
    pub postmortem: Option<String>,
    pub postmortem_at: Option<i64>,
    /// Opened by a monitor rather than a person.
    pub auto: bool,
    pub scheduled_for: Option<i64>,
    pub scheduled_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: i64,
    pub monitoring_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// Ids of the affected components.
    pub components: Vec<String>,
    /// Oldest first.
    pub updates: Vec<IncidentUpdate>,
}

/// Open an incident (or maintenance) or post an update to one, in one
/// transaction: the incident, its components' states and the update.
#[derive(Debug, Clone)]
pub struct IncidentWrite {
    /// `None` opens a new one.
    pub incident_id: Option<String>,
    /// For a new one: its kind and name.
    pub kind: IncidentKind,
    pub name: Option<String>,
    pub status: IncidentStatus,
    /// `None` keeps the current impact (or `none` for a new incident).
    pub impact: Option<Impact>,
    pub body: String,
    /// Components to link and set to a state.
    pub components: Vec<(String, ComponentStatus)>,
    pub scheduled_for: Option<i64>,
    pub scheduled_until: Option<i64>,
    pub auto: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subscriber {
    pub id: String,
    pub kind: SubscriberKind,
    /// Email address or webhook URL.
    pub target: String,
    /// Secret in the confirm and unsubscribe links.
    #[serde(skip)]
    pub token: String,
    /// Webhooks: the HMAC key.
    #[serde(skip)]
    pub secret: Option<String>,
    pub confirmed_at: Option<i64>,
    pub created_at: i64,
}

/// A notification waiting for (another) delivery attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub subscriber: Subscriber,
    pub payload: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Monitor {
    pub id: String,
    pub name: String,
    pub component_id: String,
    /// `http://…` or `tcp://host:port`.
    pub target: String,
    pub interval_ms: i64,
    pub builtin: bool,
    pub created_at: i64,
}

/// Probe results of one component on one UTC day.
#[derive(Debug, Clone, Serialize)]
pub struct UptimeDay {
    pub component_id: String,
    /// Days since the Unix epoch.
    pub day: i64,
    pub ok: i64,
    pub total: i64,
}

#[async_trait]
pub trait StatusStore: Send + Sync + 'static {
    /// Create these components unless components were seeded before.
    async fn seed_components(&self, names: &[&str]) -> Result<bool>;
    /// The page's stable id, made on first use.
    async fn page_id(&self) -> Result<String>;
    async fn components(&self) -> Result<Vec<Component>>;
    async fn component(&self, id: &str) -> Result<Option<Component>>;
    async fn create_component(&self, name: &str, fields: ComponentFields) -> Result<Component>;
    async fn update_component(&self, id: &str, fields: ComponentFields) -> Result<Component>;
    /// Set a component's state outside any incident; returns the old state.
    async fn set_component_status(&self, id: &str, status: ComponentStatus) -> Result<(Component, ComponentStatus)>;

    async fn write_incident(&self, write: IncidentWrite) -> Result<Incident>;
    async fn incident(&self, id: &str) -> Result<Option<Incident>>;
    /// Newest first; `open_only` leaves out closed ones.
    async fn incidents(&self, kind: IncidentKind, open_only: bool, limit: i64) -> Result<Vec<Incident>>;
    async fn set_postmortem(&self, id: &str, body: &str) -> Result<Incident>;
    /// A number that grows whenever the page's content changes.
    async fn status_version(&self) -> Result<i64>;

    /// Add a subscriber, or return the one with the same kind and target.
    async fn add_subscriber(
        &self,
        kind: SubscriberKind,
        target: &str,
        secret: Option<&str>,
        confirmed: bool,
    ) -> Result<Subscriber>;
    async fn confirm_subscriber(&self, token: &str) -> Result<Option<Subscriber>>;
    async fn remove_subscriber(&self, token: &str) -> Result<bool>;
    async fn subscribers(&self) -> Result<Vec<Subscriber>>;

    /// Queue a notification for every confirmed subscriber (the payload by
    /// kind); returns how many were queued.
    async fn enqueue_notification(&self, webhook_payload: &str, email_payload: &str) -> Result<usize>;
    /// Queue one message for one subscriber (e.g. the confirmation email).
    async fn enqueue_delivery(&self, subscriber_id: &str, payload: &str) -> Result<()>;
    async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<Delivery>>;
    async fn delivery_done(&self, id: &str, at: i64) -> Result<()>;
    /// Record a failed attempt; `next_at: None` gives up for good.
    async fn delivery_failed(&self, id: &str, error: &str, next_at: Option<i64>) -> Result<()>;

    async fn create_monitor(
        &self,
        name: &str,
        component_id: &str,
        target: &str,
        interval_ms: i64,
        builtin: bool,
    ) -> Result<Monitor>;
    async fn monitors(&self) -> Result<Vec<Monitor>>;
    async fn record_probe(&self, component_id: &str, at: i64, ok: bool) -> Result<()>;
    async fn uptime(&self, since_day: i64) -> Result<Vec<UptimeDay>>;
}

fn bad_row(what: &str, value: &str) -> Error {
    Error::Store(anyhow::anyhow!("unexpected {what} in database: {value:?}"))
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn component_from_row(r: &SqliteRow) -> Result<Component> {
    let status: String = r.try_get("status")?;
    Ok(Component {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        group: r.try_get("group_name")?,
        position: r.try_get("position")?,
        status: ComponentStatus::parse(&status).ok_or_else(|| bad_row("component status", &status))?,
        only_show_if_degraded: r.try_get::<i64, _>("only_show_if_degraded")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn incident_from_row(r: &SqliteRow) -> Result<Incident> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    let impact: String = r.try_get("impact")?;
    Ok(Incident {
        id: r.try_get("id")?,
        kind: IncidentKind::parse(&kind).ok_or_else(|| bad_row("incident kind", &kind))?,
        name: r.try_get("name")?,
        status: IncidentStatus::parse(&status).ok_or_else(|| bad_row("incident status", &status))?,
        impact: Impact::parse(&impact).ok_or_else(|| bad_row("impact", &impact))?,
        postmortem: r.try_get("postmortem")?,
        postmortem_at: r.try_get("postmortem_at")?,
        auto: r.try_get::<i64, _>("auto")? != 0,
        scheduled_for: r.try_get("scheduled_for")?,
        scheduled_until: r.try_get("scheduled_until")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        started_at: r.try_get("started_at")?,
        monitoring_at: r.try_get("monitoring_at")?,
        resolved_at: r.try_get("resolved_at")?,
        components: Vec::new(),
        updates: Vec::new(),
    })
}

fn update_from_row(r: &SqliteRow) -> Result<IncidentUpdate> {
    let status: String = r.try_get("status")?;
    let affected: String = r.try_get("affected")?;
    Ok(IncidentUpdate {
        id: r.try_get("id")?,
        incident_id: r.try_get("incident_id")?,
        status: IncidentStatus::parse(&status).ok_or_else(|| bad_row("update status", &status))?,
        body: r.try_get("body")?,
        affected: serde_json::from_str(&affected).map_err(|_| bad_row("affected components", &affected))?,
        created_at: r.try_get("created_at")?,
    })
}

fn subscriber_from_row(r: &SqliteRow) -> Result<Subscriber> {
    let kind: String = r.try_get("kind")?;
    Ok(Subscriber {
        id: r.try_get("id")?,
        kind: SubscriberKind::parse(&kind).ok_or_else(|| bad_row("subscriber kind", &kind))?,
        target: r.try_get("target")?,
        token: r.try_get("token")?,
        secret: r.try_get("secret")?,
        confirmed_at: r.try_get("confirmed_at")?,
        created_at: r.try_get("created_at")?,
    })
}

fn monitor_from_row(r: &SqliteRow) -> Result<Monitor> {
    Ok(Monitor {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        component_id: r.try_get("component_id")?,
        target: r.try_get("target")?,
        interval_ms: r.try_get("interval_ms")?,
        builtin: r.try_get::<i64, _>("builtin")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

/// A URL-safe random token (confirm and unsubscribe links).
fn new_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

impl SqliteStore {
    /// Fill in an incident's components and updates.
    async fn complete_incident(&self, mut incident: Incident) -> Result<Incident> {
        incident.components = sqlx::query_scalar(
            "SELECT ic.component_id FROM status_incident_components ic
             JOIN status_components c ON c.id = ic.component_id
             WHERE ic.incident_id = ? ORDER BY c.position, c.name",
        )
        .bind(&incident.id)
        .fetch_all(&self.read)
        .await?;
        incident.updates =
            sqlx::query("SELECT * FROM status_incident_updates WHERE incident_id = ? ORDER BY created_at, id")
                .bind(&incident.id)
                .fetch_all(&self.read)
                .await?
                .iter()
                .map(update_from_row)
                .collect::<Result<_>>()?;
        Ok(incident)
    }
}

#[async_trait]
impl StatusStore for SqliteStore {
    async fn seed_components(&self, names: &[&str]) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let seeded = sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES ('status_components_seeded', '1')")
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if seeded {
            let now = now_ms();
            for (position, name) in names.iter().enumerate() {
                sqlx::query(
                    "INSERT OR IGNORE INTO status_components (id, name, position, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?)",
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
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES ('status_page_id', ?)")
            .bind(hex::encode(rand::random::<[u8; 6]>()))
            .execute(&self.write)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = 'status_page_id'").fetch_one(&self.write).await?)
    }

    async fn components(&self) -> Result<Vec<Component>> {
        sqlx::query("SELECT * FROM status_components ORDER BY position, name")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(component_from_row)
            .collect()
    }

    async fn component(&self, id: &str) -> Result<Option<Component>> {
        sqlx::query("SELECT * FROM status_components WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
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
                    .fetch_one(&self.write)
                    .await?
            }
        };
        sqlx::query(
            "INSERT INTO status_components
             (id, name, description, group_name, position, only_show_if_degraded, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(name)
        .bind(fields.description.flatten())
        .bind(fields.group.flatten())
        .bind(position)
        .bind(fields.only_show_if_degraded.unwrap_or(false) as i64)
        .bind(now)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(|e| {
            if unique_violation(&e) { Error::conflict("a component with that name exists") } else { e.into() }
        })?;
        self.component(&id).await?.ok_or(Error::NotFound("component"))
    }

    async fn update_component(&self, id: &str, fields: ComponentFields) -> Result<Component> {
        let current = self.component(id).await?.ok_or(Error::NotFound("component"))?;
        sqlx::query(
            "UPDATE status_components SET name = ?, description = ?, group_name = ?, position = ?,
             only_show_if_degraded = ?, updated_at = ? WHERE id = ?",
        )
        .bind(fields.name.unwrap_or(current.name))
        .bind(fields.description.unwrap_or(current.description))
        .bind(fields.group.unwrap_or(current.group))
        .bind(fields.position.unwrap_or(current.position))
        .bind(fields.only_show_if_degraded.unwrap_or(current.only_show_if_degraded) as i64)
        .bind(now_ms())
        .bind(id)
        .execute(&self.write)
        .await
        .map_err(|e| {
            if unique_violation(&e) { Error::conflict("a component with that name exists") } else { e.into() }
        })?;
        self.component(id).await?.ok_or(Error::NotFound("component"))
    }

    async fn set_component_status(&self, id: &str, status: ComponentStatus) -> Result<(Component, ComponentStatus)> {
        let mut tx = self.write.begin().await?;
        let old: Option<String> = sqlx::query_scalar("SELECT status FROM status_components WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let old = old.ok_or(Error::NotFound("component"))?;
        let old = ComponentStatus::parse(&old).ok_or_else(|| bad_row("component status", &old))?;
        sqlx::query("UPDATE status_components SET status = ?, updated_at = ? WHERE id = ?")
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
        let mut tx = self.write.begin().await?;
        let id = match &write.incident_id {
            Some(id) => {
                let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM status_incidents WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let kind = kind.ok_or(Error::NotFound("incident"))?;
                if IncidentKind::parse(&kind) != Some(write.status.kind()) {
                    return Err(Error::bad_request(format!(
                        "status {} does not apply to a {kind}",
                        write.status.as_str()
                    )));
                }
                sqlx::query(
                    "UPDATE status_incidents SET status = ?, impact = coalesce(?, impact), updated_at = ?,
                     monitoring_at = CASE WHEN ? = 'monitoring' THEN coalesce(monitoring_at, ?) ELSE monitoring_at END,
                     resolved_at = CASE WHEN ? IN ('resolved', 'completed') THEN ? ELSE resolved_at END,
                     scheduled_for = coalesce(?, scheduled_for), scheduled_until = coalesce(?, scheduled_until)
                     WHERE id = ?",
                )
                .bind(write.status.as_str())
                .bind(write.impact.map(Impact::as_str))
                .bind(now)
                .bind(write.status.as_str())
                .bind(now)
                .bind(write.status.as_str())
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
                let name = write.name.as_deref().ok_or_else(|| Error::bad_request("a new incident needs a name"))?;
                let default_impact =
                    if write.kind == IncidentKind::Maintenance { Impact::Maintenance } else { Impact::None };
                let monitoring_at = (write.status == IncidentStatus::Monitoring).then_some(now);
                let resolved_at = write.status.is_closed().then_some(now);
                sqlx::query(
                    "INSERT INTO status_incidents (id, kind, name, status, impact, auto, scheduled_for,
                     scheduled_until, created_at, updated_at, started_at, monitoring_at, resolved_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&id)
                .bind(write.kind.as_str())
                .bind(name)
                .bind(write.status.as_str())
                .bind(write.impact.unwrap_or(default_impact).as_str())
                .bind(write.auto as i64)
                .bind(write.scheduled_for)
                .bind(write.scheduled_until)
                .bind(now)
                .bind(now)
                .bind(write.scheduled_for.unwrap_or(now))
                .bind(monitoring_at)
                .bind(resolved_at)
                .execute(&mut *tx)
                .await?;
                id
            }
        };
        let mut affected = Vec::with_capacity(write.components.len());
        for (component_id, new_status) in &write.components {
            let row = sqlx::query("SELECT name, status FROM status_components WHERE id = ?")
                .bind(component_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(Error::NotFound("component"))?;
            let old: String = row.try_get("status")?;
            affected.push(AffectedComponent {
                code: component_id.clone(),
                name: row.try_get("name")?,
                old_status: ComponentStatus::parse(&old).ok_or_else(|| bad_row("component status", &old))?,
                new_status: *new_status,
            });
            sqlx::query("UPDATE status_components SET status = ?, updated_at = ? WHERE id = ?")
                .bind(new_status.as_str())
                .bind(now)
                .bind(component_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT OR IGNORE INTO status_incident_components (incident_id, component_id) VALUES (?, ?)")
                .bind(&id)
                .bind(component_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO status_incident_updates (id, incident_id, status, body, affected, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
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
            sqlx::query("SELECT * FROM status_incidents WHERE id = ?").bind(id).fetch_optional(&self.read).await?;
        match row {
            Some(r) => Ok(Some(self.complete_incident(incident_from_row(&r)?).await?)),
            None => Ok(None),
        }
    }

    async fn incidents(&self, kind: IncidentKind, open_only: bool, limit: i64) -> Result<Vec<Incident>> {
        let rows = sqlx::query(
            "SELECT * FROM status_incidents WHERE kind = ?
             AND (? = 0 OR status NOT IN ('resolved', 'postmortem', 'completed'))
             ORDER BY created_at DESC, id DESC LIMIT ?",
        )
        .bind(kind.as_str())
        .bind(open_only as i64)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.complete_incident(incident_from_row(r)?).await?);
        }
        Ok(out)
    }

    async fn set_postmortem(&self, id: &str, body: &str) -> Result<Incident> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE status_incidents SET postmortem = ?, postmortem_at = ?, updated_at = ?,
             status = CASE WHEN status = 'resolved' THEN 'postmortem' ELSE status END
             WHERE id = ? AND kind = 'incident'",
        )
        .bind(body)
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&self.write)
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
                UNION ALL SELECT count(*) FROM status_components)",
        )
        .fetch_one(&self.read)
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
            "INSERT OR IGNORE INTO status_subscribers (id, kind, target, token, secret, confirmed_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(new_id())
        .bind(kind.as_str())
        .bind(target)
        .bind(new_token())
        .bind(secret)
        .bind(confirmed.then_some(now))
        .bind(now)
        .execute(&self.write)
        .await?;
        sqlx::query("SELECT * FROM status_subscribers WHERE kind = ? AND target = ?")
            .bind(kind.as_str())
            .bind(target)
            .fetch_one(&self.write)
            .await
            .map_err(Error::from)
            .and_then(|r| subscriber_from_row(&r))
    }

    async fn confirm_subscriber(&self, token: &str) -> Result<Option<Subscriber>> {
        sqlx::query("UPDATE status_subscribers SET confirmed_at = coalesce(confirmed_at, ?) WHERE token = ?")
            .bind(now_ms())
            .bind(token)
            .execute(&self.write)
            .await?;
        sqlx::query("SELECT * FROM status_subscribers WHERE token = ?")
            .bind(token)
            .fetch_optional(&self.write)
            .await?
            .map(|r| subscriber_from_row(&r))
            .transpose()
    }

    async fn remove_subscriber(&self, token: &str) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "DELETE FROM status_deliveries WHERE subscriber_id IN (SELECT id FROM status_subscribers WHERE token = ?)",
        )
        .bind(token)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query("DELETE FROM status_subscribers WHERE token = ?").bind(token).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(gone.rows_affected() > 0)
    }

    async fn subscribers(&self) -> Result<Vec<Subscriber>> {
        sqlx::query("SELECT * FROM status_subscribers ORDER BY created_at")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(subscriber_from_row)
            .collect()
    }

    async fn enqueue_notification(&self, webhook_payload: &str, email_payload: &str) -> Result<usize> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let ids: Vec<(String, String)> =
            sqlx::query_as("SELECT id, kind FROM status_subscribers WHERE confirmed_at IS NOT NULL")
                .fetch_all(&mut *tx)
                .await?;
        for (id, kind) in &ids {
            let payload = if kind == "webhook" { webhook_payload } else { email_payload };
            sqlx::query(
                "INSERT INTO status_deliveries (id, subscriber_id, payload, next_at, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(new_id())
            .bind(id)
            .bind(payload)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ids.len())
    }

    async fn enqueue_delivery(&self, subscriber_id: &str, payload: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO status_deliveries (id, subscriber_id, payload, next_at, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(new_id())
        .bind(subscriber_id)
        .bind(payload)
        .bind(now)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT d.id AS delivery_id, d.payload, d.attempts, s.* FROM status_deliveries d
             JOIN status_subscribers s ON s.id = d.subscriber_id
             WHERE d.delivered_at IS NULL AND d.failed_at IS NULL AND d.next_at <= ?
             ORDER BY d.next_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.try_get("delivery_id")?,
                    subscriber: subscriber_from_row(r)?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    async fn delivery_done(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE status_deliveries SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn delivery_failed(&self, id: &str, error: &str, next_at: Option<i64>) -> Result<()> {
        sqlx::query(
            "UPDATE status_deliveries SET attempts = attempts + 1, last_error = ?,
             next_at = coalesce(?, next_at), failed_at = CASE WHEN ? IS NULL THEN ? ELSE NULL END WHERE id = ?",
        )
        .bind(error)
        .bind(next_at)
        .bind(next_at)
        .bind(now_ms())
        .bind(id)
        .execute(&self.write)
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
            // Built-in probes are re-pointed at every start (the listen
            // address may have changed), never duplicated.
            sqlx::query(
                "INSERT INTO status_monitors (id, name, component_id, target, interval_ms, builtin, created_at)
                 VALUES (?, ?, ?, ?, ?, 1, ?)
                 ON CONFLICT (name) DO UPDATE SET target = excluded.target, interval_ms = excluded.interval_ms
                 WHERE builtin = 1",
            )
            .bind(new_id())
            .bind(name)
            .bind(component_id)
            .bind(target)
            .bind(interval_ms)
            .bind(now_ms())
            .execute(&self.write)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO status_monitors (id, name, component_id, target, interval_ms, builtin, created_at)
                 VALUES (?, ?, ?, ?, ?, 0, ?)",
            )
            .bind(new_id())
            .bind(name)
            .bind(component_id)
            .bind(target)
            .bind(interval_ms)
            .bind(now_ms())
            .execute(&self.write)
            .await
            .map_err(|e| {
                if unique_violation(&e) { Error::conflict("a monitor with that name exists") } else { e.into() }
            })?;
        }
        sqlx::query("SELECT * FROM status_monitors WHERE name = ?")
            .bind(name)
            .fetch_one(&self.write)
            .await
            .map_err(Error::from)
            .and_then(|r| monitor_from_row(&r))
    }

    async fn monitors(&self) -> Result<Vec<Monitor>> {
        sqlx::query("SELECT * FROM status_monitors ORDER BY builtin DESC, name")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(monitor_from_row)
            .collect()
    }

    async fn record_probe(&self, component_id: &str, at: i64, ok: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO status_probe_days (component_id, day, ok, total) VALUES (?, ?, ?, 1)
             ON CONFLICT (component_id, day) DO UPDATE SET ok = ok + excluded.ok, total = total + 1",
        )
        .bind(component_id)
        .bind(at.div_euclid(86_400_000))
        .bind(ok as i64)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn uptime(&self, since_day: i64) -> Result<Vec<UptimeDay>> {
        sqlx::query("SELECT * FROM status_probe_days WHERE day >= ? ORDER BY component_id, day")
            .bind(since_day)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| {
                Ok(UptimeDay {
                    component_id: r.try_get("component_id")?,
                    day: r.try_get("day")?,
                    ok: r.try_get("ok")?,
                    total: r.try_get("total")?,
                })
            })
            .collect()
    }
}
