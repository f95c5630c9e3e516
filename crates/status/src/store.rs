//! The status page's durable state: components, incidents and maintenances
//! with their updates, subscribers and their delivery outbox, monitors and
//! the uptime roll-up. [`StatusStore`] is the interface the rest of the
//! crate sees; its one implementation, for SQLite and PostgreSQL alike, is
//! `sql::SqlStatusStore`. The server opens it on its chat store's data dir
//! or database (`SqliteStore::status_store`, `PostgresStore::status_store`).

pub mod sql;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::sql::SqlStatusStore;
use crate::error::{Error, Result};

/// A closed set of values stored and shown as snake_case text.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// When the change that caused it was recorded (Unix ms).
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// Take up to `limit` notifications due at `now` and not yet relayed
    /// into the chat outbox (`status::notify`). Each one taken is hidden
    /// from other claims until `lease_until`, so two relays rarely take the
    /// same one, and one whose relay died is taken again when the lease
    /// ends (the outbox keys it by its id, so it is queued there once).
    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<Delivery>>;
    /// These notifications are in the chat outbox now.
    async fn deliveries_relayed(&self, ids: &[String], at: i64) -> Result<()>;
    /// One subscriber by id, as the outbox reads it when it sends.
    async fn subscriber(&self, id: &str) -> Result<Option<Subscriber>>;
    /// The outbox sent a relayed notification.
    async fn delivery_done(&self, id: &str, at: i64) -> Result<()>;
    /// An attempt of the outbox failed; `next_at: None`: it gave up.
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
