//! The status page: components, incidents, maintenances, subscribers and
//! the monitors that open incidents by themselves. A crate of its own that
//! knows nothing of chat: the server (`holdfast-server`) serves it over
//! HTTP (`http/status`), points the built-in probes at chat, decides which
//! process runs the monitors and hands notifications to chat's outbox; the
//! CLI drives it directly; `export` writes it to files.
//!
//! - `store`   — the records, the `StatusStore` trait and its one implementation
//!   over sqlx for SQLite and PostgreSQL (`store::sql`); the only SQL here.
//! - `error`   — the status page's error, which the server turns into its own.
//! - `api`     — the objects of the compatible status page API v2 (JSON).
//! - `page`    — the server-rendered HTML page and per-incident pages.
//! - `feed`    — Atom and RSS feeds of incident history.
//! - `notify`  — notifications on their way out: signed webhooks, the SMTP transport.
//! - `egress`  — which addresses webhooks and monitors may reach (public ones).
//! - `ratelimit` — how many subscriptions one client address may ask for.
//! - `monitor` — the check loop (HTTP/TCP, and the server's built-in probes); auto-opened incidents.
//! - `export`  — a static copy of page, feeds and JSON.
//! - `time`    — the time formats shown.

pub mod api;
pub mod egress;
pub mod error;
pub mod export;
pub mod feed;
pub mod monitor;
pub mod notify;
pub mod page;
pub mod ratelimit;
pub mod store;
pub mod time;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::store::{
    Component, ComponentFields, ComponentStatus, Impact, Incident, IncidentKind, IncidentStatus, IncidentWrite,
    StatusStore, Subscriber, SubscriberKind,
};
use holdfast_core::tls::ExtraRoots;

/// The components a fresh install shows.
pub const DEFAULT_COMPONENTS: &[&str] = &["Chat widget", "Agent login", "Agent console", "Website", "Message delivery"];

/// How the status page and its monitors behave; every field says why.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// The page's name in titles, feeds and notifications.
    pub page_name: String,
    /// Public base URL of the page (links in feeds, emails and the API's
    /// `url`/`shortlink`); defaults to the listen address.
    pub public_url: Option<String>,
    /// `serve --only status`: serve the status page, its API and monitors
    /// but not chat (another process or machine, same store).
    pub only: bool,
    /// Requests the status lane serves at once; more wait their turn there,
    /// never in chat's lanes.
    pub max_concurrent: usize,
    /// Consecutive failed checks before a component counts as down (no
    /// flapping on one lost packet).
    pub fail_after: u32,
    /// Passing checks for this long move an auto-opened incident to
    /// `monitoring`.
    pub quiet_period: Duration,
    /// An auto-opened incident in `monitoring` resolves itself after this
    /// long; `None` leaves that to an operator.
    pub auto_resolve_after: Option<Duration>,
    /// The shortest interval a monitor may have.
    pub min_interval: Duration,
    /// How often the monitor loop looks for due checks.
    pub monitor_tick: Duration,
    /// A check slower than this failed.
    pub check_timeout: Duration,
    /// Probe Holdfast itself (`/readyz`, a visitor session, an agent login,
    /// the store's latency).
    pub self_probe: bool,
    /// How often the built-in probes run.
    pub self_probe_interval: Duration,
    /// The login probe logs in with its password on every this many checks
    /// (and after every failed one); the checks between refresh its session
    /// instead, sparing a password hash.
    pub login_probe_every: u32,
    /// A login probe slower than this (login or refresh, then the agent
    /// socket's welcome) failed: agents would call it broken.
    pub login_probe_slow: Duration,
    /// A store probe (one small write and read) slower than this failed:
    /// every message waits for such a write before it is delivered.
    pub store_probe_slow: Duration,
    /// Where the built-in probes reach chat; defaults to the listen address
    /// (set it when running `--only status` apart from chat).
    pub probe_base: Option<String>,
    /// How often the relay looks for notifications to hand to the outbox
    /// (it is also woken on every new one); the outbox retries them.
    pub delivery_tick: Duration,
    /// Outgoing mail; `None` disables email subscriptions.
    pub smtp: Option<SmtpConfig>,
    /// CA certificates that webhooks, HTTPS monitors and SMTP over TLS trust
    /// besides the system's roots: for receivers and relays behind a
    /// private CA, without ever accepting an unverified certificate.
    pub extra_roots: ExtraRoots,
    /// Accept webhook URLs on loopback or private networks (tests, intranets),
    /// and deliver to them. Off by default: the subscribe form is public,
    /// and only public addresses are connected to (`egress`).
    pub allow_private_webhooks: bool,
    /// Let operators' monitors check loopback and private addresses (an
    /// intranet's services). Off by default: a monitor's `last_error`
    /// tells an open port from a closed one. The built-in probes of this
    /// server are not operators' monitors and always run.
    pub allow_private_monitors: bool,
    /// Subscriptions one client address (an IPv6 /64) may ask for at once
    /// on the public form and API…
    pub subscribe_burst: u32,
    /// …then one more every this long: each subscriber costs a request or
    /// an email per notification.
    pub subscribe_every: Duration,
    /// How often the process running monitors and deliveries checks it
    /// still holds the lead, and the others try to take it: the longest a
    /// cluster goes without a runner after the runner dies.
    pub lead_check: Duration,
}

/// Outgoing mail: the relay, how the connection to it is secured, and the
/// login it wants.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// The From address of every message.
    pub from: String,
    /// How the connection is secured; certificates are checked against the
    /// system's roots and `StatusConfig::extra_roots`.
    pub tls: SmtpTls,
    /// The relay's login, if it wants one: sent only over TLS.
    pub login: Option<SmtpLogin>,
}

impl SmtpConfig {
    /// A relay without a login, upgraded with STARTTLS when it offers it.
    pub fn new(host: impl Into<String>, port: u16, from: impl Into<String>) -> SmtpConfig {
        SmtpConfig { host: host.into(), port, from: from.into(), tls: SmtpTls::Opportunistic, login: None }
    }
}

/// How the connection to the SMTP relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a relay on this machine).
    None,
    /// STARTTLS when the relay offers it, plain SMTP when it does not.
    Opportunistic,
    /// STARTTLS or nothing: a relay that does not offer it gets no mail.
    StartTls,
    /// TLS from the first byte ("SMTPS", port 465).
    Implicit,
}

impl SmtpTls {
    /// The names an operator gives (`--smtp-tls`).
    pub const CHOICES: &str = "none, opportunistic, starttls or implicit";

    pub fn parse(name: &str) -> Option<SmtpTls> {
        match name.trim().to_ascii_lowercase().as_str() {
            "none" => Some(SmtpTls::None),
            "opportunistic" => Some(SmtpTls::Opportunistic),
            "starttls" => Some(SmtpTls::StartTls),
            "implicit" => Some(SmtpTls::Implicit),
            _ => None,
        }
    }

    /// Whether nothing is ever sent before TLS is up (so a password may be).
    pub fn always_encrypted(self) -> bool {
        matches!(self, SmtpTls::StartTls | SmtpTls::Implicit)
    }
}

/// A login at the SMTP relay. Its `Debug` never shows the password.
#[derive(Clone)]
pub struct SmtpLogin {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for SmtpLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpLogin").field("user", &self.user).field("password", &"<hidden>").finish()
    }
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            page_name: "Holdfast".into(),
            public_url: None,
            only: false,
            max_concurrent: 256,
            fail_after: 3,
            quiet_period: Duration::from_secs(300),
            auto_resolve_after: None,
            min_interval: Duration::from_secs(5),
            monitor_tick: Duration::from_secs(1),
            check_timeout: Duration::from_secs(5),
            self_probe: true,
            self_probe_interval: Duration::from_secs(30),
            login_probe_every: 5,
            login_probe_slow: Duration::from_secs(2),
            store_probe_slow: Duration::from_secs(1),
            probe_base: None,
            delivery_tick: Duration::from_secs(1),
            smtp: None,
            extra_roots: ExtraRoots::default(),
            allow_private_webhooks: false,
            allow_private_monitors: false,
            subscribe_burst: 10,
            subscribe_every: Duration::from_secs(60),
            lead_check: Duration::from_secs(2),
        }
    }
}

/// The status page's actions, each validated here, then stored, then
/// notified (queued, never delivered on the caller's path).
pub struct Status {
    pub store: Arc<dyn StatusStore>,
    pub config: StatusConfig,
    /// Public base URL, without a trailing slash.
    pub base_url: String,
    pub page_id: String,
    /// Wakes the delivery task when something was queued.
    pub wake: Arc<Notify>,
    /// Whether this process runs the monitors and deliveries now (the
    /// server's `status::runner` sets it).
    leading: AtomicBool,
    /// Subscriptions per client address on the public form and API.
    pub subscribe_limit: ratelimit::SubscribeLimiter,
}

/// What an operator or a monitor says when opening or updating an incident.
#[derive(Debug, Clone, Default)]
pub struct IncidentInput {
    pub name: Option<String>,
    pub status: Option<IncidentStatus>,
    pub impact: Option<Impact>,
    pub message: Option<String>,
    pub components: Vec<(String, ComponentStatus)>,
    pub scheduled_for: Option<i64>,
    pub scheduled_until: Option<i64>,
}

const MAX_NAME: usize = 200;
const MAX_BODY: usize = 20_000;
const MAX_POSTMORTEM: usize = 100_000;

fn clean_text(value: &str, max: usize, what: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::bad_request(format!("{what} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(Error::bad_request(format!("{what} is too long (at most {max} characters)")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err(Error::bad_request(format!("{what} contains control characters")));
    }
    Ok(value.to_owned())
}

/// The message shown when an operator gives none.
fn default_message(status: IncidentStatus) -> &'static str {
    match status {
        IncidentStatus::Investigating => "We are investigating this issue.",
        IncidentStatus::Identified => "The issue has been identified and a fix is being implemented.",
        IncidentStatus::Monitoring => "A fix has been implemented and we are monitoring the results.",
        IncidentStatus::Resolved => "This incident has been resolved.",
        IncidentStatus::Postmortem => "A postmortem has been published.",
        IncidentStatus::Scheduled => "This maintenance is scheduled.",
        IncidentStatus::InProgress => "This maintenance is in progress.",
        IncidentStatus::Verifying => "The maintenance is done; we are verifying the results.",
        IncidentStatus::Completed => "The scheduled maintenance has been completed.",
    }
}

/// The impact an incident gets from its components when none is given.
fn impact_of(components: &[(String, ComponentStatus)]) -> Impact {
    components.iter().fold(Impact::None, |worst, (_, s)| {
        let i = match s {
            ComponentStatus::MajorOutage => Impact::Critical,
            ComponentStatus::PartialOutage => Impact::Major,
            ComponentStatus::DegradedPerformance => Impact::Minor,
            _ => Impact::None,
        };
        if rank(i) > rank(worst) { i } else { worst }
    })
}

fn rank(i: Impact) -> u8 {
    match i {
        Impact::None | Impact::Maintenance => 0,
        Impact::Minor => 1,
        Impact::Major => 2,
        Impact::Critical => 3,
    }
}

impl Status {
    /// Seed the default components on first start and learn the page id.
    pub async fn open(store: Arc<dyn StatusStore>, config: StatusConfig, listen_url: &str) -> Result<Status> {
        store.seed_components(DEFAULT_COMPONENTS).await?;
        let page_id = store.page_id().await?;
        let base_url = config.public_url.clone().unwrap_or_else(|| listen_url.to_owned()).trim_end_matches('/').into();
        let subscribe_limit = ratelimit::SubscribeLimiter::new(config.subscribe_burst, config.subscribe_every);
        Ok(Status {
            store,
            config,
            base_url,
            page_id,
            wake: Arc::new(Notify::new()),
            leading: AtomicBool::new(false),
            subscribe_limit,
        })
    }

    /// Whether this process runs the monitors and delivers notifications
    /// now (one process per store does; see the server's `status::runner`).
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// Say whether this process holds the store's lead now: only the
    /// server's `status::runner`, which takes and loses it, calls this.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
    }

    /// A component by id or by (case-insensitive) name.
    pub async fn find_component(&self, id_or_name: &str) -> Result<Component> {
        let all = self.store.components().await?;
        all.into_iter()
            .find(|c| c.id == id_or_name || c.name.eq_ignore_ascii_case(id_or_name.trim()))
            .ok_or(Error::NotFound("component"))
    }

    pub async fn create_component(&self, name: &str, mut fields: ComponentFields) -> Result<Component> {
        let name = clean_text(name, MAX_NAME, "name")?;
        self.check_component_fields(&mut fields)?;
        let c = self.store.create_component(&name, fields).await?;
        self.wake.notify_one();
        Ok(c)
    }

    pub async fn update_component(&self, id: &str, mut fields: ComponentFields) -> Result<Component> {
        if let Some(name) = &fields.name {
            fields.name = Some(clean_text(name, MAX_NAME, "name")?);
        }
        self.check_component_fields(&mut fields)?;
        self.store.update_component(id, fields).await
    }

    fn check_component_fields(&self, fields: &mut ComponentFields) -> Result<()> {
        if let Some(Some(d)) = &fields.description {
            fields.description = Some(Some(clean_text(d, 1000, "description")?));
        }
        if let Some(Some(g)) = &fields.group {
            fields.group = Some(Some(clean_text(g, MAX_NAME, "group")?));
        }
        if let Some(p) = fields.position
            && !(0..=10_000).contains(&p)
        {
            return Err(Error::bad_request("position must be 0 to 10000"));
        }
        Ok(())
    }

    /// Set a component's state outside an incident, and notify.
    pub async fn set_component_status(&self, id: &str, status: ComponentStatus) -> Result<Component> {
        let (component, old) = self.store.set_component_status(id, status).await?;
        if old != status {
            let summary = api::Summary::load(self).await?;
            let payload = api::component_notification(self, &summary, &component, old);
            let email = notify::EmailBody {
                subject: format!("[{}] {} is {}", self.config.page_name, component.name, api::status_words(status)),
                text: format!("{} changed from {} to {}.", component.name, old.as_str(), status.as_str()),
            };
            self.enqueue(&payload, &email).await;
        }
        Ok(component)
    }

    /// Open an incident (or, with a maintenance status, schedule a
    /// maintenance).
    pub async fn open_incident(&self, input: IncidentInput, auto: bool) -> Result<Incident> {
        let name = clean_text(input.name.as_deref().unwrap_or(""), MAX_NAME, "name")?;
        let status = input.status.unwrap_or(IncidentStatus::Investigating);
        let kind = status.kind();
        if kind == IncidentKind::Maintenance {
            let (from, until) = (input.scheduled_for, input.scheduled_until);
            match (from, until) {
                (Some(f), Some(u)) if f < u => {}
                (Some(_), Some(_)) => return Err(Error::bad_request("scheduled_until must be after scheduled_for")),
                _ => return Err(Error::bad_request("a maintenance needs scheduled_for and scheduled_until")),
            }
        }
        let message = match input.message.as_deref() {
            Some(m) => clean_text(m, MAX_BODY, "message")?,
            None => default_message(status).to_owned(),
        };
        let impact = match (kind, input.impact) {
            (IncidentKind::Maintenance, _) => Some(Impact::Maintenance),
            (_, Some(Impact::Maintenance)) => return Err(Error::bad_request("impact maintenance is for maintenances")),
            (_, Some(i)) => Some(i),
            (_, None) => Some(impact_of(&input.components)),
        };
        let incident = self
            .store
            .write_incident(IncidentWrite {
                incident_id: None,
                kind,
                name: Some(name),
                status,
                impact,
                body: message,
                components: input.components,
                scheduled_for: input.scheduled_for,
                scheduled_until: input.scheduled_until,
                auto,
            })
            .await?;
        self.notify_incident(&incident).await?;
        Ok(incident)
    }

    /// Post an update: a new status and message, optionally new component
    /// states. A maintenance moving to `in_progress` puts its components
    /// under maintenance, and `completed` makes them operational, unless
    /// states are given.
    pub async fn update_incident(&self, id: &str, input: IncidentInput) -> Result<Incident> {
        let current = self.store.incident(id).await?.ok_or(Error::NotFound("incident"))?;
        let status = input.status.unwrap_or(current.status);
        if status.kind() != current.kind {
            return Err(Error::bad_request(format!(
                "status {} does not apply to a {}",
                status.as_str(),
                current.kind.as_str()
            )));
        }
        if status == IncidentStatus::Postmortem {
            return Err(Error::bad_request("publish a postmortem to move an incident to postmortem"));
        }
        let message = match input.message.as_deref() {
            Some(m) => clean_text(m, MAX_BODY, "message")?,
            None => default_message(status).to_owned(),
        };
        let mut components = input.components;
        if components.is_empty() {
            let fill = match status {
                IncidentStatus::InProgress => Some(ComponentStatus::UnderMaintenance),
                IncidentStatus::Completed => Some(ComponentStatus::Operational),
                _ => None,
            };
            if let Some(s) = fill {
                components = current.components.iter().map(|c| (c.clone(), s)).collect();
            }
        }
        if input.impact == Some(Impact::Maintenance) && current.kind == IncidentKind::Incident {
            return Err(Error::bad_request("impact maintenance is for maintenances"));
        }
        let incident = self
            .store
            .write_incident(IncidentWrite {
                incident_id: Some(id.to_owned()),
                kind: current.kind,
                name: None,
                status,
                impact: input.impact,
                body: message,
                components,
                scheduled_for: input.scheduled_for,
                scheduled_until: input.scheduled_until,
                auto: false,
            })
            .await?;
        self.notify_incident(&incident).await?;
        Ok(incident)
    }

    /// Resolve an incident: every affected component back to operational.
    pub async fn resolve_incident(&self, id: &str, message: Option<String>) -> Result<Incident> {
        let current = self.store.incident(id).await?.ok_or(Error::NotFound("incident"))?;
        let status = if current.kind == IncidentKind::Maintenance {
            IncidentStatus::Completed
        } else {
            IncidentStatus::Resolved
        };
        let components = current.components.iter().map(|c| (c.clone(), ComponentStatus::Operational)).collect();
        self.update_incident(id, IncidentInput { status: Some(status), message, components, ..Default::default() })
            .await
    }

    /// Publish (or replace) the postmortem: Markdown, shown sanitized.
    pub async fn set_postmortem(&self, id: &str, markdown: &str) -> Result<Incident> {
        let body = clean_text(markdown, MAX_POSTMORTEM, "postmortem")?;
        let current = self.store.incident(id).await?.ok_or(Error::NotFound("incident"))?;
        if current.kind != IncidentKind::Incident {
            return Err(Error::bad_request("only incidents have postmortems"));
        }
        if !current.status.is_closed() {
            return Err(Error::conflict("resolve the incident before publishing its postmortem"));
        }
        let incident = self.store.set_postmortem(id, &body).await?;
        self.notify_incident(&incident).await?;
        Ok(incident)
    }

    async fn notify_incident(&self, incident: &Incident) -> Result<()> {
        let summary = api::Summary::load(self).await?;
        let payload = api::incident_notification(self, &summary, incident);
        let latest = incident.updates.last().map(|u| u.body.as_str()).unwrap_or("");
        let email = notify::EmailBody {
            subject: format!("[{}] {}: {}", self.config.page_name, incident.status.as_str(), incident.name),
            text: format!(
                "{}\n\n{}: {}\n\nDetails: {}/status/incidents/{}\n",
                incident.name,
                incident.status.as_str(),
                latest,
                self.base_url,
                incident.id
            ),
        };
        self.enqueue(&payload, &email).await;
        Ok(())
    }

    /// Queue a notification for every subscriber. A failure to queue is
    /// logged, not returned: the incident itself is already recorded.
    async fn enqueue(&self, webhook: &serde_json::Value, email: &notify::EmailBody) {
        let email = serde_json::to_string(email).unwrap_or_default();
        match self.store.enqueue_notification(&webhook.to_string(), &email).await {
            Ok(n) => {
                if n > 0 {
                    self.wake.notify_one();
                }
            }
            Err(e) => tracing::error!(error = %e, "could not queue status notifications"),
        }
    }

    /// Subscribe an email address: stored unconfirmed, and a confirmation
    /// link is mailed (double opt-in).
    pub async fn subscribe_email(&self, email: &str) -> Result<Subscriber> {
        if self.config.smtp.is_none() {
            return Err(Error::bad_request("email subscriptions are not enabled on this page"));
        }
        let email = holdfast_core::email::normalize_email(email);
        if !holdfast_core::email::valid_email(&email) {
            return Err(Error::bad_request("email is not a valid email address"));
        }
        let sub = self.store.add_subscriber(SubscriberKind::Email, &email, None, false).await?;
        if sub.confirmed_at.is_none() {
            let body = notify::EmailBody {
                subject: format!("Confirm your subscription to {}", self.config.page_name),
                text: format!(
                    "Someone (hopefully you) asked to receive {} status updates at this address.\n\n\
                     Confirm: {}/status/subscribers/confirm?token={}\n\n\
                     If it was not you, ignore this message.\n",
                    self.config.page_name, self.base_url, sub.token
                ),
            };
            self.store.enqueue_delivery(&sub.id, &serde_json::to_string(&body).map_err(Error::internal)?).await?;
            self.wake.notify_one();
        }
        Ok(sub)
    }

    /// Subscribe a webhook; returns the subscriber and its signing secret.
    pub async fn subscribe_webhook(&self, url: &str) -> Result<(Subscriber, String)> {
        let url = notify::check_webhook_url(url, self.config.allow_private_webhooks)?;
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let sub = self.store.add_subscriber(SubscriberKind::Webhook, &url, Some(&secret), true).await?;
        // An existing subscriber keeps its secret; it is never shown again.
        let shown = if sub.secret.as_deref() == Some(secret.as_str()) { secret } else { String::new() };
        if shown.is_empty() {
            return Err(Error::conflict("this webhook is already subscribed"));
        }
        Ok((sub, shown))
    }

    /// Add an operator-defined check of `target` that speaks for a
    /// component; the target is checked here (`monitor::check_target`).
    pub async fn add_monitor(
        &self,
        name: &str,
        component: &str,
        target: &str,
        interval_ms: i64,
    ) -> Result<store::Monitor> {
        let target = monitor::check_target(target, self.config.allow_private_monitors)?;
        let target = target.as_str();
        let name = clean_text(name, MAX_NAME, "name")?;
        let component = self.find_component(component).await?;
        let min = self.config.min_interval.as_millis() as i64;
        if !(min..=86_400_000).contains(&interval_ms) {
            return Err(Error::bad_request(format!("interval must be {} ms to 1 day", min)));
        }
        self.store.create_monitor(&name, &component.id, target, interval_ms, false).await
    }

    /// Delete an operator's monitor; the built-in probes are Holdfast's own
    /// (turned off with `self_probe`, not deleted).
    pub async fn delete_monitor(&self, id: &str) -> Result<()> {
        let monitor =
            self.store.monitors().await?.into_iter().find(|m| m.id == id).ok_or(Error::NotFound("monitor"))?;
        if monitor.builtin {
            return Err(Error::conflict("a built-in probe cannot be deleted"));
        }
        if !self.store.delete_monitor(&monitor.id).await? {
            return Err(Error::NotFound("monitor"));
        }
        Ok(())
    }

    pub async fn confirm(&self, token: &str) -> Result<Subscriber> {
        if token.len() > 64 {
            return Err(Error::NotFound("subscription"));
        }
        self.store.confirm_subscriber(token).await?.ok_or(Error::NotFound("subscription"))
    }

    pub async fn unsubscribe(&self, token: &str) -> Result<()> {
        if token.len() > 64 || !self.store.remove_subscriber(token).await? {
            return Err(Error::NotFound("subscription"));
        }
        Ok(())
    }
}
