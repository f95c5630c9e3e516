//! The objects of the de-facto status page API v2 (`/api/v2/*.json`), with
//! its field names and enum values, so existing widgets, chat-ops bots and
//! monitoring tools read Holdfast unchanged. Times are ISO-8601 with an
//! offset; an absent value is `null`, never a missing key.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Status;
use super::time::{date, iso8601};
use crate::error::Result;
use crate::store::{
    Component, ComponentStatus, Impact, Incident, IncidentKind, IncidentStatus, IncidentUpdate, Subscriber,
    SubscriberKind,
};
use holdfast_core::now_ms;

/// A subscriber in the operator's listing: the stored record without its
/// link token and webhook secret, which are not here to leak.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriberView {
    pub id: String,
    pub kind: SubscriberKind,
    /// Email address or webhook URL.
    pub target: String,
    pub confirmed_at: Option<i64>,
    pub created_at: i64,
    /// Why the newest notification not yet delivered to it failed.
    pub delivery_error: Option<String>,
}

impl From<Subscriber> for SubscriberView {
    fn from(s: Subscriber) -> SubscriberView {
        let Subscriber { id, kind, target, token: _, secret: _, confirmed_at, created_at, delivery_error } = s;
        SubscriberView { id, kind, target, confirmed_at, created_at, delivery_error }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PageView {
    pub id: String,
    pub name: String,
    pub url: String,
    pub time_zone: &'static str,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// `none`, `minor`, `major` or `critical`.
    pub indicator: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComponentView {
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
    pub created_at: String,
    pub updated_at: String,
    pub position: i64,
    pub description: Option<String>,
    pub showcase: bool,
    pub start_date: Option<String>,
    pub group_id: Option<String>,
    pub page_id: String,
    /// True for a group (a component that holds others).
    pub group: bool,
    pub only_show_if_degraded: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AffectedView {
    pub code: String,
    pub name: String,
    pub old_status: ComponentStatus,
    pub new_status: ComponentStatus,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpdateView {
    pub id: String,
    pub status: IncidentStatus,
    pub body: String,
    pub incident_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub display_at: String,
    pub affected_components: Vec<AffectedView>,
    pub deliver_notifications: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    pub id: String,
    pub name: String,
    pub status: IncidentStatus,
    pub impact: Impact,
    pub created_at: String,
    pub updated_at: String,
    pub monitoring_at: Option<String>,
    pub resolved_at: Option<String>,
    pub started_at: String,
    pub shortlink: String,
    pub page_id: String,
    /// Newest first.
    pub incident_updates: Vec<UpdateView>,
    pub components: Vec<ComponentView>,
    /// Maintenances only (absent on an incident; `null` when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub scheduled_for: Option<Option<String>>,
    /// Maintenances only (absent on an incident; `null` when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub scheduled_until: Option<Option<String>>,
}

/// Everything the page shows at one moment; every path is a slice of it.
pub struct Summary {
    pub page: PageView,
    pub status: StatusView,
    pub components: Vec<Component>,
    pub component_views: Vec<ComponentView>,
    /// Unresolved incidents, newest first.
    pub incidents: Vec<Incident>,
    /// Upcoming and active maintenances, soonest first.
    pub maintenances: Vec<Incident>,
}

/// The words a component state is shown with.
pub fn status_words(s: ComponentStatus) -> &'static str {
    match s {
        ComponentStatus::Operational => "Operational",
        ComponentStatus::DegradedPerformance => "Degraded Performance",
        ComponentStatus::PartialOutage => "Partial Outage",
        ComponentStatus::MajorOutage => "Major Outage",
        ComponentStatus::UnderMaintenance => "Under Maintenance",
    }
}

fn severity(s: ComponentStatus) -> u8 {
    match s {
        ComponentStatus::Operational | ComponentStatus::UnderMaintenance => 0,
        ComponentStatus::DegradedPerformance => 1,
        ComponentStatus::PartialOutage => 2,
        ComponentStatus::MajorOutage => 3,
    }
}

/// The page's overall state: the worst of its components and open incidents.
pub fn overall(components: &[Component], incidents: &[Incident]) -> StatusView {
    let from_components = components.iter().map(|c| severity(c.status)).max().unwrap_or(0);
    let from_incidents = incidents
        .iter()
        .map(|i| match i.impact {
            Impact::Critical => 3,
            Impact::Major => 2,
            Impact::Minor => 1,
            Impact::None | Impact::Maintenance => 0,
        })
        .max()
        .unwrap_or(0);
    let maintenance = components.iter().any(|c| c.status == ComponentStatus::UnderMaintenance);
    match from_components.max(from_incidents) {
        0 if maintenance => StatusView { indicator: "none", description: "Service Under Maintenance" },
        0 => StatusView { indicator: "none", description: "All Systems Operational" },
        1 => StatusView { indicator: "minor", description: "Minor Service Outage" },
        2 => StatusView { indicator: "major", description: "Partial System Outage" },
        _ => StatusView { indicator: "critical", description: "Major System Outage" },
    }
}

/// A group's stable id, derived from its name.
fn group_id(name: &str) -> String {
    hex::encode(&Sha256::digest(format!("group:{name}").as_bytes())[..8])
}

impl Summary {
    pub async fn load(status: &Status) -> Result<Summary> {
        // The reads are separate queries, so a change can land between them
        // (one test saw a fresh outage beside its component "operational").
        // Incidents come first: an incident and its components' states are
        // written in one transaction, so components read after it are at
        // least as new. And the page's version before and after tells of a
        // change in between (a resolution), which reads again.
        let mut attempts = 0;
        let (incidents, mut maintenances, components) = loop {
            attempts += 1;
            let before = status.store.status_version().await?;
            let incidents = status.store.incidents(IncidentKind::Incident, true, 100).await?;
            let maintenances = status.store.incidents(IncidentKind::Maintenance, true, 100).await?;
            let components = status.store.components().await?;
            if attempts >= 3 || status.store.status_version().await? == before {
                break (incidents, maintenances, components);
            }
        };
        maintenances.sort_by_key(|m| m.scheduled_for.unwrap_or(m.created_at));
        let updated = components
            .iter()
            .map(|c| c.updated_at)
            .chain(incidents.iter().chain(&maintenances).map(|i| i.updated_at))
            .max()
            .unwrap_or_else(now_ms);
        let page = PageView {
            id: status.page_id.clone(),
            name: status.config.page_name.clone(),
            url: format!("{}/status", status.base_url),
            time_zone: "Etc/UTC",
            updated_at: iso8601(updated),
        };
        let component_views = component_views(&components, &status.page_id);
        Ok(Summary {
            page,
            status: overall(&components, &incidents),
            components,
            component_views,
            incidents,
            maintenances,
        })
    }

    /// A component's view by id.
    fn component_view(&self, id: &str) -> Option<ComponentView> {
        self.component_views.iter().find(|c| c.id == id).cloned()
    }

    pub fn incident_view(&self, status: &Status, incident: &Incident) -> IncidentView {
        let maintenance = incident.kind == IncidentKind::Maintenance;
        IncidentView {
            id: incident.id.clone(),
            name: incident.name.clone(),
            status: incident.status,
            impact: incident.impact,
            created_at: iso8601(incident.created_at),
            updated_at: iso8601(incident.updated_at),
            monitoring_at: incident.monitoring_at.map(iso8601),
            resolved_at: incident.resolved_at.map(iso8601),
            started_at: iso8601(incident.started_at),
            shortlink: format!("{}/status/incidents/{}", status.base_url, incident.id),
            page_id: status.page_id.clone(),
            incident_updates: incident.updates.iter().rev().map(update_view).collect(),
            components: incident.components.iter().filter_map(|id| self.component_view(id)).collect(),
            scheduled_for: maintenance.then(|| incident.scheduled_for.map(iso8601)),
            scheduled_until: maintenance.then(|| incident.scheduled_until.map(iso8601)),
        }
    }

    pub fn summary_json(&self, status: &Status) -> Value {
        json!({
            "page": self.page,
            "components": self.component_views,
            "incidents": self.incidents.iter().map(|i| self.incident_view(status, i)).collect::<Vec<_>>(),
            "scheduled_maintenances": self.maintenances.iter().map(|i| self.incident_view(status, i)).collect::<Vec<_>>(),
            "status": self.status,
        })
    }

    pub fn status_json(&self) -> Value {
        json!({"page": self.page, "status": self.status})
    }

    pub fn components_json(&self) -> Value {
        json!({"page": self.page, "components": self.component_views})
    }

    pub fn incidents_json(&self, status: &Status, incidents: &[Incident]) -> Value {
        json!({
            "page": self.page,
            "incidents": incidents.iter().map(|i| self.incident_view(status, i)).collect::<Vec<_>>(),
        })
    }

    pub fn maintenances_json(&self, status: &Status, maintenances: &[Incident]) -> Value {
        json!({
            "page": self.page,
            "scheduled_maintenances": maintenances.iter().map(|i| self.incident_view(status, i)).collect::<Vec<_>>(),
        })
    }
}

/// Components as the API lists them: each group becomes a component of its
/// own (worst state of its members) followed by its members.
fn component_views(components: &[Component], page_id: &str) -> Vec<ComponentView> {
    let view = |c: &Component, group_id: Option<String>| ComponentView {
        id: c.id.clone(),
        name: c.name.clone(),
        status: c.status,
        created_at: iso8601(c.created_at),
        updated_at: iso8601(c.updated_at),
        position: c.position,
        description: c.description.clone(),
        showcase: true,
        start_date: Some(date(c.created_at)),
        group_id,
        page_id: page_id.to_owned(),
        group: false,
        only_show_if_degraded: c.only_show_if_degraded,
    };
    let mut groups: BTreeMap<&str, Vec<&Component>> = BTreeMap::new();
    let mut out = Vec::new();
    for c in components {
        match c.group.as_deref() {
            Some(g) => groups.entry(g).or_default().push(c),
            None => out.push(view(c, None)),
        }
    }
    for (name, members) in groups {
        let gid = group_id(name);
        let worst =
            members.iter().map(|c| c.status).max_by_key(|s| severity(*s)).unwrap_or(ComponentStatus::Operational);
        out.push(ComponentView {
            id: gid.clone(),
            name: name.to_owned(),
            status: worst,
            created_at: iso8601(members.iter().map(|c| c.created_at).min().unwrap_or(0)),
            updated_at: iso8601(members.iter().map(|c| c.updated_at).max().unwrap_or(0)),
            position: members.iter().map(|c| c.position).min().unwrap_or(0),
            description: None,
            showcase: false,
            start_date: None,
            group_id: None,
            page_id: page_id.to_owned(),
            group: true,
            only_show_if_degraded: false,
        });
        out.extend(members.into_iter().map(|c| view(c, Some(gid.clone()))));
    }
    out.sort_by_key(|c| c.position);
    out
}

fn update_view(u: &IncidentUpdate) -> UpdateView {
    UpdateView {
        id: u.id.clone(),
        status: u.status,
        body: u.body.clone(),
        incident_id: u.incident_id.clone(),
        created_at: iso8601(u.created_at),
        updated_at: iso8601(u.created_at),
        display_at: iso8601(u.created_at),
        affected_components: u
            .affected
            .iter()
            .map(|a| AffectedView {
                code: a.code.clone(),
                name: a.name.clone(),
                old_status: a.old_status,
                new_status: a.new_status,
            })
            .collect(),
        deliver_notifications: true,
    }
}

fn notification_meta(status: &Status, summary: &Summary) -> Value {
    json!({
        "meta": {
            // Filled in per subscriber when delivered.
            "unsubscribe": null,
            // The API's description, served by the page itself.
            "documentation": format!("{}/status/api.md", status.base_url),
            "generated_at": iso8601(now_ms()),
        },
        "page": {
            "id": summary.page.id,
            "status_indicator": summary.status.indicator,
            "status_description": summary.status.description,
        },
    })
}

/// A webhook body for an incident change (the API's notification shape).
pub fn incident_notification(status: &Status, summary: &Summary, incident: &Incident) -> Value {
    let mut body = notification_meta(status, summary);
    body["incident"] = json!(summary.incident_view(status, incident));
    body
}

/// A webhook body for a component state change outside an incident.
pub fn component_notification(
    status: &Status,
    summary: &Summary,
    component: &Component,
    old: ComponentStatus,
) -> Value {
    let mut body = notification_meta(status, summary);
    body["component_update"] = json!({
        "created_at": iso8601(component.updated_at),
        "new_status": component.status,
        "old_status": old,
        "id": holdfast_core::new_id(),
        "component_id": component.id,
    });
    body["component"] = json!(
        summary.component_view(&component.id).unwrap_or_else(|| component_views(
            std::slice::from_ref(component),
            &status.page_id
        )
        .remove(0))
    );
    body
}

/// Maintenances that have not started.
pub fn upcoming(maintenances: &[Incident]) -> Vec<Incident> {
    maintenances.iter().filter(|m| m.status == IncidentStatus::Scheduled).cloned().collect()
}

/// Maintenances under way.
pub fn active(maintenances: &[Incident]) -> Vec<Incident> {
    maintenances
        .iter()
        .filter(|m| matches!(m.status, IncidentStatus::InProgress | IncidentStatus::Verifying))
        .cloned()
        .collect()
}
