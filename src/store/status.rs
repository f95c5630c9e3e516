//! The status page's durable state: components, incidents and maintenances
//! with their updates, subscribers and their delivery outbox, monitors and
//! the uptime roll-up. [`StatusStore`] is the interface `status/` sees; the
//! SQLite implementation is below, the PostgreSQL one in `status_postgres`.
//! Both map rows to records with the same functions ([`Columns`]).

use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
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

/// The columns of a new incident row that follow from an [`IncidentWrite`].
pub(super) struct NewIncident<'a> {
    pub name: &'a str,
    pub impact: Impact,
    pub started_at: i64,
    pub monitoring_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

impl IncidentWrite {
    /// An update's status must belong to the stored incident's kind.
    pub(super) fn check_applies_to(&self, stored_kind: &str) -> Result<()> {
        if IncidentKind::parse(stored_kind) == Some(self.status.kind()) {
            Ok(())
        } else {
            Err(Error::bad_request(format!("status {} does not apply to a {stored_kind}", self.status.as_str())))
        }
    }

    /// A new incident's name, impact and the times its first status sets.
    pub(super) fn new_incident(&self, now: i64) -> Result<NewIncident<'_>> {
        let name = self.name.as_deref().ok_or_else(|| Error::bad_request("a new incident needs a name"))?;
        let default_impact = if self.kind == IncidentKind::Maintenance { Impact::Maintenance } else { Impact::None };
        Ok(NewIncident {
            name,
            impact: self.impact.unwrap_or(default_impact),
            started_at: self.scheduled_for.unwrap_or(now),
            monitoring_at: (self.status == IncidentStatus::Monitoring).then_some(now),
            resolved_at: self.status.is_closed().then_some(now),
        })
    }
}

/// A subscriber as stored, with its secrets: not `Serialize`; admins see
/// `status::api::SubscriberView`.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub id: String,
    pub kind: SubscriberKind,
    /// Email address or webhook URL.
    pub target: String,
    /// Secret in the confirm and unsubscribe links.
    pub token: String,
    /// Webhooks: the HMAC key.
    pub secret: Option<String>,
    pub confirmed_at: Option<i64>,
    pub created_at: i64,
    /// Why the newest notification not yet delivered to it failed (an
    /// unreachable receiver, a certificate not trusted…), so an admin can
    /// tell; `None` once it is delivered. Filled by `subscribers()` only.
    pub delivery_error: Option<String>,
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
    /// `https://…`, `http://…` or `tcp://host:port`.
    pub target: String,
    pub interval_ms: i64,
    pub builtin: bool,
    pub created_at: i64,
    /// Consecutive failed checks up to the last one. Kept in the store (with
    /// the three below) so a restart, or another node taking the checks
    /// over, goes on counting instead of starting from zero.
    pub failures: i64,
    /// Why the last failed check failed.
    pub last_error: Option<String>,
    /// When it was last checked: the next check is due an interval later.
    pub last_check_at: Option<i64>,
    /// When a check last failed: the quiet period counts from it.
    pub last_failure_at: Option<i64>,
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
    /// Take up to `limit` deliveries due at `now` for an attempt. Each one
    /// taken is hidden from other claims until `lease_until` (or until its
    /// outcome is recorded), so two runners never send the same one, and one
    /// whose runner died mid-attempt is tried again when the lease ends.
    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<Delivery>>;
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
    /// Delete an operator's monitor (never a built-in probe); whether there
    /// was one.
    async fn delete_monitor(&self, id: &str) -> Result<bool>;
    /// Remember a monitor's check at `at`: its consecutive failures so far
    /// and, when it failed, why.
    async fn record_check(&self, monitor_id: &str, at: i64, failures: i64, error: Option<&str>) -> Result<()>;
    async fn record_probe(&self, component_id: &str, at: i64, ok: bool) -> Result<()>;
    async fn uptime(&self, since_day: i64) -> Result<Vec<UptimeDay>>;

    /// Try to become the one process, among all sharing this store, that
    /// runs the monitors and delivers notifications. `None`: another holds
    /// it now. The lead is held until the returned value is dropped or its
    /// holder dies (kill -9 included); see each backend for how.
    async fn try_lead(&self) -> Result<Option<Box<dyn Lead>>>;
}

/// The lead of the status page's side tasks, held by one process at a time.
#[async_trait]
pub trait Lead: Send + Sync {
    /// Whether this process still holds it. `false` is final: stop the side
    /// tasks, drop this, and try to lead again later.
    async fn still_held(&mut self) -> bool;
}

/// Reading a column of a row of either backend, so each record is mapped
/// from a row once, for both. Flags decode as `bool` from SQLite's 0/1
/// integers and PostgreSQL's booleans alike.
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String>;
    fn text_opt(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>>;
    fn flag(&self, column: &str) -> Result<bool>;
}

macro_rules! columns_of {
    ($($row:ty),+) => {$(
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String> {
                Ok(self.try_get(column)?)
            }
            fn text_opt(&self, column: &str) -> Result<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64> {
                Ok(self.try_get(column)?)
            }
            fn int_opt(&self, column: &str) -> Result<Option<i64>> {
                Ok(self.try_get(column)?)
            }
            fn flag(&self, column: &str) -> Result<bool> {
                Ok(self.try_get(column)?)
            }
        }
    )+};
}

columns_of!(SqliteRow, PgRow);

pub(super) fn bad_row(what: &str, value: &str) -> Error {
    Error::Store(anyhow::anyhow!("unexpected {what} in database: {value:?}"))
}

pub(super) fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

pub(super) fn component_status(text: &str) -> Result<ComponentStatus> {
    ComponentStatus::parse(text).ok_or_else(|| bad_row("component status", text))
}

pub(super) fn component_from_row(r: &impl Columns) -> Result<Component> {
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

pub(super) fn incident_from_row(r: &impl Columns) -> Result<Incident> {
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

pub(super) fn update_from_row(r: &impl Columns) -> Result<IncidentUpdate> {
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

pub(super) fn subscriber_from_row(r: &impl Columns) -> Result<Subscriber> {
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

/// Every subscriber, oldest first, with `delivery_error`: the last error of
/// its newest failed delivery that is not delivered yet (one pass over the
/// undelivered ones, whatever the number of subscribers).
pub(super) const SUBSCRIBERS_WITH_DELIVERY_ERRORS: &str = "SELECT s.*, e.last_error AS delivery_error
     FROM status_subscribers s
     LEFT JOIN (SELECT subscriber_id, last_error,
                       ROW_NUMBER() OVER (PARTITION BY subscriber_id ORDER BY created_at DESC) AS newest
                FROM status_deliveries WHERE delivered_at IS NULL AND last_error IS NOT NULL) e
       ON e.subscriber_id = s.id AND e.newest = 1
     ORDER BY s.created_at";

/// A row of `SUBSCRIBERS_WITH_DELIVERY_ERRORS`.
pub(super) fn subscriber_with_error_from_row(r: &impl Columns) -> Result<Subscriber> {
    Ok(Subscriber { delivery_error: r.text_opt("delivery_error")?, ..subscriber_from_row(r)? })
}

/// A delivery joined with its subscriber (`d.id AS delivery_id, d.payload,
/// d.attempts, s.*`).
pub(super) fn delivery_from_row(r: &impl Columns) -> Result<Delivery> {
    Ok(Delivery {
        id: r.text("delivery_id")?,
        subscriber: subscriber_from_row(r)?,
        payload: r.text("payload")?,
        attempts: r.int("attempts")?,
    })
}

pub(super) fn monitor_from_row(r: &impl Columns) -> Result<Monitor> {
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

pub(super) fn uptime_from_row(r: &impl Columns) -> Result<UptimeDay> {
    Ok(UptimeDay {
        component_id: r.text("component_id")?,
        day: r.int("day")?,
        ok: r.int("ok")?,
        total: r.int("total")?,
    })
}

/// A URL-safe random token (confirm and unsubscribe links).
pub(super) fn new_token() -> String {
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
        .fetch_all(&self.status_read)
        .await?;
        incident.updates =
            sqlx::query("SELECT * FROM status_incident_updates WHERE incident_id = ? ORDER BY created_at, id")
                .bind(&incident.id)
                .fetch_all(&self.status_read)
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
        let mut tx = self.status_write.begin().await?;
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
            .execute(&self.status_write)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = 'status_page_id'")
            .fetch_one(&self.status_write)
            .await?)
    }

    async fn components(&self) -> Result<Vec<Component>> {
        sqlx::query("SELECT * FROM status_components ORDER BY position, name")
            .fetch_all(&self.status_read)
            .await?
            .iter()
            .map(component_from_row)
            .collect()
    }

    async fn component(&self, id: &str) -> Result<Option<Component>> {
        sqlx::query("SELECT * FROM status_components WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.status_read)
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
                    .fetch_one(&self.status_write)
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
        .execute(&self.status_write)
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
        .execute(&self.status_write)
        .await
        .map_err(|e| {
            if unique_violation(&e) { Error::conflict("a component with that name exists") } else { e.into() }
        })?;
        self.component(id).await?.ok_or(Error::NotFound("component"))
    }

    async fn set_component_status(&self, id: &str, status: ComponentStatus) -> Result<(Component, ComponentStatus)> {
        let mut tx = self.status_write.begin().await?;
        let old: Option<String> = sqlx::query_scalar("SELECT status FROM status_components WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let old = component_status(&old.ok_or(Error::NotFound("component"))?)?;
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
        let mut tx = self.status_write.begin().await?;
        let id = match &write.incident_id {
            Some(id) => {
                let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM status_incidents WHERE id = ?")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                write.check_applies_to(&kind.ok_or(Error::NotFound("incident"))?)?;
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
                let new = write.new_incident(now)?;
                sqlx::query(
                    "INSERT INTO status_incidents (id, kind, name, status, impact, auto, scheduled_for,
                     scheduled_until, created_at, updated_at, started_at, monitoring_at, resolved_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                .bind(now)
                .bind(new.started_at)
                .bind(new.monitoring_at)
                .bind(new.resolved_at)
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
            affected.push(AffectedComponent {
                code: component_id.clone(),
                name: row.text("name")?,
                old_status: component_status(&row.text("status")?)?,
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
        let row = sqlx::query("SELECT * FROM status_incidents WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.status_read)
            .await?;
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
        .fetch_all(&self.status_read)
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
        .execute(&self.status_write)
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
        .fetch_one(&self.status_read)
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
        .execute(&self.status_write)
        .await?;
        sqlx::query("SELECT * FROM status_subscribers WHERE kind = ? AND target = ?")
            .bind(kind.as_str())
            .bind(target)
            .fetch_one(&self.status_write)
            .await
            .map_err(Error::from)
            .and_then(|r| subscriber_from_row(&r))
    }

    async fn confirm_subscriber(&self, token: &str) -> Result<Option<Subscriber>> {
        sqlx::query("UPDATE status_subscribers SET confirmed_at = coalesce(confirmed_at, ?) WHERE token = ?")
            .bind(now_ms())
            .bind(token)
            .execute(&self.status_write)
            .await?;
        sqlx::query("SELECT * FROM status_subscribers WHERE token = ?")
            .bind(token)
            .fetch_optional(&self.status_write)
            .await?
            .map(|r| subscriber_from_row(&r))
            .transpose()
    }

    async fn remove_subscriber(&self, token: &str) -> Result<bool> {
        let mut tx = self.status_write.begin().await?;
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
        sqlx::query(SUBSCRIBERS_WITH_DELIVERY_ERRORS)
            .fetch_all(&self.status_read)
            .await?
            .iter()
            .map(subscriber_with_error_from_row)
            .collect()
    }

    async fn enqueue_notification(&self, webhook_payload: &str, email_payload: &str) -> Result<usize> {
        let now = now_ms();
        let mut tx = self.status_write.begin().await?;
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
        .execute(&self.status_write)
        .await?;
        Ok(())
    }

    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<Delivery>> {
        // One statement claims (SQLite has one writer at a time), then the
        // claimed rows are read with their subscribers.
        let claimed: Vec<String> = sqlx::query_scalar(
            "UPDATE status_deliveries SET next_at = ? WHERE id IN (
                SELECT id FROM status_deliveries
                WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= ?
                ORDER BY next_at LIMIT ?)
             RETURNING id",
        )
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.status_write)
        .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query(
            "SELECT d.id AS delivery_id, d.payload, d.attempts, s.* FROM status_deliveries d
             JOIN status_subscribers s ON s.id = d.subscriber_id
             WHERE d.id IN (SELECT value FROM json_each(?)) ORDER BY d.created_at, d.id",
        )
        .bind(serde_json::to_string(&claimed).map_err(Error::internal)?)
        .fetch_all(&self.status_write)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    async fn delivery_done(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE status_deliveries SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(&self.status_write)
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
        .execute(&self.status_write)
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
            .execute(&self.status_write)
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
            .execute(&self.status_write)
            .await
            .map_err(|e| {
                if unique_violation(&e) { Error::conflict("a monitor with that name exists") } else { e.into() }
            })?;
        }
        sqlx::query("SELECT * FROM status_monitors WHERE name = ?")
            .bind(name)
            .fetch_one(&self.status_write)
            .await
            .map_err(Error::from)
            .and_then(|r| monitor_from_row(&r))
    }

    async fn monitors(&self) -> Result<Vec<Monitor>> {
        sqlx::query("SELECT * FROM status_monitors ORDER BY builtin DESC, name")
            .fetch_all(&self.status_read)
            .await?
            .iter()
            .map(monitor_from_row)
            .collect()
    }

    async fn delete_monitor(&self, id: &str) -> Result<bool> {
        let gone = sqlx::query("DELETE FROM status_monitors WHERE id = ? AND builtin = 0")
            .bind(id)
            .execute(&self.status_write)
            .await?;
        Ok(gone.rows_affected() > 0)
    }

    async fn record_probe(&self, component_id: &str, at: i64, ok: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO status_probe_days (component_id, day, ok, total) VALUES (?, ?, ?, 1)
             ON CONFLICT (component_id, day) DO UPDATE SET ok = ok + excluded.ok, total = total + 1",
        )
        .bind(component_id)
        .bind(at.div_euclid(86_400_000))
        .bind(ok as i64)
        .execute(&self.status_write)
        .await?;
        Ok(())
    }

    async fn record_check(&self, monitor_id: &str, at: i64, failures: i64, error: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE status_monitors SET last_check_at = ?, failures = ?, last_error = coalesce(?, last_error),
             last_failure_at = CASE WHEN ? IS NULL THEN last_failure_at ELSE ? END WHERE id = ?",
        )
        .bind(at)
        .bind(failures)
        .bind(error)
        .bind(error)
        .bind(at)
        .bind(monitor_id)
        .execute(&self.status_write)
        .await?;
        Ok(())
    }

    async fn uptime(&self, since_day: i64) -> Result<Vec<UptimeDay>> {
        sqlx::query("SELECT * FROM status_probe_days WHERE day >= ? ORDER BY component_id, day")
            .bind(since_day)
            .fetch_all(&self.status_read)
            .await?
            .iter()
            .map(uptime_from_row)
            .collect()
    }

    /// An exclusive lock on `status-runner.lock` in the data dir: processes
    /// sharing the data dir (`serve` and `serve --only status`) run the side
    /// tasks once. The kernel releases it when the process ends, however.
    async fn try_lead(&self) -> Result<Option<Box<dyn Lead>>> {
        Ok(FileLead::try_take(&self.dir().join("status-runner.lock"))?.map(|l| Box::new(l) as Box<dyn Lead>))
    }
}

/// The lead of a SQLite data dir: an exclusive lock on a file, held while
/// the file stays open.
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
