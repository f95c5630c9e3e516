//! The durable outbox of chat: every outgoing delivery is a row of the chat
//! store (`store/outbox.rs`) written in the same transaction as the change
//! that causes it, and sent later by this module's deliverer, which runs
//! only in the process holding the store's lead (`status::runner`), so
//! each delivery is attempted by one process at a time, claimed with a
//! lease before it is sent.
//!
//! Retry policy: a failed attempt is tried again after a backoff that
//! doubles from `retry_min` up to `retry_max`, for `retry_window` (24 h)
//! after it was queued; then it is `failed`. Permanent failures end
//! sooner: an address that does not parse fails at once; a relay that
//! answers 5xx (a permanent SMTP error) fails after `permanent_attempts`
//! attempts (a misconfigured relay often answers 5xx until it is fixed).
//! Anything else (connection refused, timeouts, 4xx) is retried.
//!
//! - `mail` — the emails: templates, headers, escaping.
//! - `missed` — the missed-chat rule and its watcher.
//! - `status` — the status page's notifications, relayed from its store.
//! - `transcript` — transcripts by email: asked for, archived, rendered.
//! - `webhooks` — chat webhooks: endpoints, Standard Webhooks signatures,
//!   sending in order per conversation, disabling an endpoint failing for days.

pub mod mail;
pub mod missed;
pub mod reply;
pub mod status;
pub mod transcript;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;
use tokio::sync::Notify;

use crate::auth::Tokens;
use crate::bus::Bus;
use crate::chat::service::AgentCtx;
use crate::error::{Error, Result};
use crate::status::{SmtpConfig, StatusConfig};
use crate::store::outbox::{Attempt, Delivery, DeliveryKind, DeliveryStatus, NewDelivery, Scope};
use crate::store::status::StatusStore;
use crate::store::{Agent, Conversation, Site, Store, new_id, now_ms};
use crate::tls::{self, ExtraRoots};

/// How deliveries are retried; every field says why.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// The wait after the first failed attempt; doubles per attempt.
    pub retry_min: Duration,
    /// The longest wait between two attempts.
    pub retry_max: Duration,
    /// How long after queueing (or an admin's "send again") a delivery is
    /// still tried; at least a day, so a relay down over a night loses
    /// nothing.
    pub retry_window: Duration,
    /// Attempts a relay's permanent refusal (SMTP 5xx) gets before the
    /// delivery is failed.
    pub permanent_attempts: i64,
    /// How often the deliverer looks for due deliveries (it is also woken
    /// by every new one).
    pub tick: Duration,
    /// How often the lead looks for missed chats (`missed`).
    pub missed_tick: Duration,
    /// How long a minute of the sites' `missed_chat_minutes` is: 60 s.
    /// Only tests shorten it, so a "2 minute" wait takes them a second.
    pub missed_minute: Duration,
    /// How long a webhook endpoint may fail every attempt before it is
    /// disabled and its site's admins are emailed: 3 days.
    pub webhook_disable_after: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            retry_window: Duration::from_secs(24 * 3600),
            permanent_attempts: 3,
            tick: Duration::from_secs(1),
            missed_tick: Duration::from_secs(5),
            missed_minute: Duration::from_secs(60),
            webhook_disable_after: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// Deliveries claimed per round.
const BATCH: i64 = 32;
/// How long a claimed delivery stays hidden from other claims: longer than
/// an attempt takes (SMTP times out after 10 s).
const LEASE: Duration = Duration::from_secs(60);

/// The outbox: what chat queues through, and the deliverer.
pub struct Outbox {
    pub store: Arc<dyn Store>,
    pub config: OutboxConfig,
    /// The relay (the status page's `--smtp` settings); without one no
    /// email is queued.
    smtp: Option<SmtpConfig>,
    extra_roots: ExtraRoots,
    /// Base of the console links in emails (`--public-url`, else the
    /// listen address), without a trailing slash.
    pub public_url: String,
    /// Wakes the deliverer when something was queued.
    wake: Notify,
    /// Tells consoles of a missed chat.
    bus: Arc<dyn Bus>,
    /// Signs invitations' links when their email is sent.
    tokens: Tokens,
    /// Webhooks may go to special addresses (`--allow-private-webhooks`,
    /// the status page's switch): otherwise the guarded client refuses them.
    allow_private_webhooks: bool,
    /// The status page's store: its subscribers, and the outcomes of its
    /// notifications (`status`).
    status_store: Arc<dyn StatusStore>,
    /// The status page's name: the sender's name on its emails.
    page_name: String,
}

/// A delivery as an admin sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The email's subject, for the list.
    pub subject: Option<String>,
    /// The conversation it is about, so the console can open it.
    pub conversation_id: Option<String>,
    /// The start of the message it carries (one line, at most 120
    /// characters): which lead a failed delivery was about, without
    /// opening the conversation.
    pub preview: Option<String>,
}

impl Outbox {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        tokens: Tokens,
        config: OutboxConfig,
        status: &StatusConfig,
        status_store: Arc<dyn StatusStore>,
        listen_url: &str,
    ) -> Outbox {
        let public_url = status.public_url.clone().unwrap_or_else(|| listen_url.to_owned());
        Outbox {
            store,
            config,
            smtp: status.smtp.clone(),
            extra_roots: status.extra_roots.clone(),
            public_url: public_url.trim_end_matches('/').to_owned(),
            wake: Notify::new(),
            bus,
            tokens,
            allow_private_webhooks: status.allow_private_webhooks,
            status_store,
            page_name: status.page_name.clone(),
        }
    }

    /// Whether email is configured (`--smtp`): without it nothing is queued.
    pub fn mail_enabled(&self) -> bool {
        self.smtp.is_some()
    }

    /// Tell the deliverer something was queued.
    pub fn queued(&self) {
        self.wake.notify_one();
    }

    /// The console's link to a conversation.
    pub fn console_url(&self, conversation_id: &str) -> String {
        format!("{}/console#conversation={conversation_id}", self.public_url)
    }

    /// One email per recipient announcing an offline message, to be stored
    /// with it (recipients: `lead_recipients`).
    pub fn offline_message_emails(
        &self,
        site: &Site,
        conversation: &Conversation,
        recipients: &[String],
        payload: &mail::OfflinePayload,
    ) -> Vec<NewDelivery> {
        if !self.mail_enabled() {
            return Vec::new();
        }
        let payload = serde_json::to_string(payload).unwrap_or_default();
        self.to_each(&site.id, &conversation.id, recipients, "offline_message", &payload, now_ms())
    }

    /// Who gets a lead of `conversation` (an offline message, a missed
    /// chat): the site's people who want them (admins unless they opted
    /// out, agents who opted in) and the conversation's group's own
    /// address, each once.
    pub async fn lead_recipients(&self, conversation: &Conversation) -> Result<Vec<String>> {
        let mut to: Vec<String> = self
            .store
            .agents(&conversation.site_id)
            .await?
            .into_iter()
            .filter(Agent::gets_lead_emails)
            .map(|a| a.email)
            .collect();
        let group = self.store.group(&conversation.group_id).await?;
        if let Some(address) = group.filter(|g| g.site_id == conversation.site_id).and_then(|g| g.email) {
            to.push(address);
        }
        to.sort();
        to.dedup();
        Ok(to)
    }

    /// One email per recipient, keyed `TEMPLATE:CONVERSATION:ADDRESS`.
    fn to_each(
        &self,
        site_id: &str,
        conversation_id: &str,
        recipients: &[String],
        template: &str,
        payload: &str,
        now: i64,
    ) -> Vec<NewDelivery> {
        recipients
            .iter()
            .map(|to| NewDelivery {
                id: new_id(),
                site_id: Some(site_id.to_owned()),
                kind: DeliveryKind::Email,
                template: template.into(),
                recipient: to.clone(),
                payload: payload.to_owned(),
                dedupe_key: format!("{template}:{conversation_id}:{to}"),
                created_at: now,
                give_up_at: now + self.config.retry_window.as_millis() as i64,
            })
            .collect()
    }

    /// The admin's site's deliveries, newest first (`status` filters;
    /// `endpoint_id`, only a webhook endpoint's; `before`, a page's
    /// cursor), at most `limit` (up to 1,001: a page and one more); the
    /// operator's list has the status page's notifications too.
    pub async fn list(
        &self,
        admin: &AgentCtx,
        status: Option<&str>,
        endpoint_id: Option<String>,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<DeliveryView>> {
        let status = match status {
            None | Some("") => None,
            Some(s) => Some(
                DeliveryStatus::parse(s).ok_or_else(|| Error::bad_request("status must be queued, sent or failed"))?,
            ),
        };
        let limit = if limit <= 0 { 100 } else { limit.min(1001) };
        let page = crate::store::outbox::DeliveryPage { status, endpoint_id, before, limit };
        let found = self.store.deliveries_page(scope(admin), page).await?;
        Ok(found
            .into_iter()
            .map(|delivery| {
                let summary = summary_of(&delivery);
                DeliveryView {
                    subject: summary.as_ref().map(|s| s.subject.clone()),
                    conversation_id: summary.as_ref().and_then(|s| s.conversation_id.clone()),
                    preview: summary.map(|s| s.preview),
                    delivery,
                }
            })
            .collect())
    }

    /// Send a delivery of the admin's site again, now, with a new retry
    /// window.
    pub async fn retry(&self, admin: &AgentCtx, id: &str) -> Result<()> {
        if id.len() > 64 {
            return Err(Error::NotFound("delivery"));
        }
        let now = now_ms();
        let give_up_at = now + self.config.retry_window.as_millis() as i64;
        if !self.store.retry_delivery(scope(admin), id, now, give_up_at).await? {
            // Another site's, unknown, or its content erased or expired.
            return Err(Error::NotFound("delivery"));
        }
        self.queued();
        Ok(())
    }

    /// Deliver until the task is dropped: claim what is due, attempt it,
    /// record the outcome. The process that took the lead first forgets
    /// the leases of the one before (it is gone, or it would still lead).
    pub async fn run(self: Arc<Self>) {
        let mailer = match self.smtp.as_ref().map(|smtp| crate::status::notify::mailer(smtp, &self.extra_roots)) {
            Some(Ok(mailer)) => Some(mailer),
            Some(Err(e)) => {
                tracing::error!(error = %e, "outbox email disabled");
                None
            }
            None => None,
        };
        let http = match self.webhook_client() {
            Ok(http) => Some(http),
            Err(e) => {
                tracing::error!(error = %e, "outbox webhooks disabled: no HTTP client");
                None
            }
        };
        if let Err(e) = self.store.release_delivery_leases().await {
            tracing::warn!(error = %e, "outbox: cannot release the previous lead's leases");
        }
        loop {
            if let Ok(queued) = self.store.queued_deliveries().await {
                metrics::gauge!("holdfast_outbox_queued").set(queued as f64);
            }
            let now = now_ms();
            let due = match self.store.claim_deliveries(now, now + LEASE.as_millis() as i64, BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outbox");
                    Vec::new()
                }
            };
            let full = due.len() as i64 == BATCH;
            let attempts = due.into_iter().map(|d| self.attempt(mailer.as_ref(), http.as_ref(), d));
            futures_util::future::join_all(attempts).await;
            if !full {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.tick) => {}
                }
            }
        }
    }

    /// The client webhooks are sent with: the status page's guarded one.
    fn webhook_client(&self) -> std::result::Result<reqwest::Client, String> {
        crate::status::notify::webhook_client(self.allow_private_webhooks, &self.extra_roots, "Holdfast-Webhooks/1")
    }

    async fn attempt(
        &self,
        mailer: Option<&AsyncSmtpTransport<Tokio1Executor>>,
        http: Option<&reqwest::Client>,
        d: Delivery,
    ) {
        let outcome = match (d.kind, mailer, &self.smtp) {
            _ if status::is_status(&d) => self.send_status(mailer, http, &d).await,
            (DeliveryKind::Email, Some(mailer), Some(smtp)) => self.send_email(mailer, smtp, &d).await,
            (DeliveryKind::Email, _, _) => Err(Failure::Transient("email is not configured".into())),
            (DeliveryKind::Webhook, _, _) => self.send_webhook(http, &d).await,
        };
        // The next delivery of its conversation to its endpoint is due now.
        if d.kind == DeliveryKind::Webhook && outcome.is_ok() {
            self.queued();
        }
        let kind = d.kind.as_str();
        let now = now_ms();
        let attempt = match outcome {
            Ok(()) => {
                metrics::counter!("holdfast_outbox_deliveries_total", "kind" => kind, "result" => "sent").increment(1);
                Attempt::Sent { at: now }
            }
            Err(failure) => {
                let next_at = self.next_attempt(&d, &failure, now);
                let result = if next_at.is_some() { "retry" } else { "failed" };
                metrics::counter!("holdfast_outbox_deliveries_total", "kind" => kind, "result" => result).increment(1);
                let error = failure.text().to_owned();
                tracing::info!(delivery = %d.id, attempt = d.attempts + 1, %error, gave_up = next_at.is_none(),
                    "outbox delivery not sent");
                Attempt::Failed { error, next_at, due: d.next_at }
            }
        };
        if status::is_status(&d) {
            self.report_status(&d, &attempt).await;
        }
        if let Err(e) = self.store.record_attempt(&d.id, attempt).await {
            tracing::warn!(error = %e, delivery = %d.id, "cannot record a delivery's outcome");
        }
    }

    /// When to try again after this failure, or `None` to give up.
    fn next_attempt(&self, d: &Delivery, failure: &Failure, now: i64) -> Option<i64> {
        let attempts = d.attempts + 1;
        match failure {
            Failure::Invalid(_) => return None,
            Failure::Permanent(_) if attempts >= self.config.permanent_attempts => return None,
            _ => {}
        }
        if now >= d.give_up_at {
            return None;
        }
        let shift = (attempts - 1).clamp(0, 20) as u32;
        let backoff = self.config.retry_min.saturating_mul(1 << shift).min(self.config.retry_max);
        // The last attempt is at the end of the window, not beyond it.
        Some((now + backoff.as_millis() as i64).min(d.give_up_at))
    }

    async fn send_email(
        &self,
        mailer: &AsyncSmtpTransport<Tokio1Executor>,
        smtp: &SmtpConfig,
        d: &Delivery,
    ) -> std::result::Result<(), Failure> {
        let site = match &d.site_id {
            Some(id) => self.store.site(id).await,
            None => Ok(None),
        };
        let tz = match site {
            Ok(site) => site_time_zone(site.as_ref()),
            Err(e) => return Err(Failure::Transient(format!("cannot read the site: {e}"))),
        };
        let (rendered, site_name, reply_to, at) = match d.template.as_str() {
            "offline_message" => {
                let p: mail::OfflinePayload =
                    serde_json::from_str(&d.payload).map_err(|e| Failure::Invalid(format!("bad payload: {e}")))?;
                let rendered =
                    mail::render_offline(&p, &self.console_url(&p.conversation_id), &tz).map_err(Failure::Invalid)?;
                (rendered, p.site_name, p.visitor_email, p.at)
            }
            "transcript" => {
                let p: transcript::TranscriptPayload =
                    serde_json::from_str(&d.payload).map_err(|e| Failure::Invalid(format!("bad payload: {e}")))?;
                let rendered = self.render_transcript(&p, &tz).await.map_err(|e| match e {
                    Error::NotFound(_) => Failure::Invalid("the conversation is gone".into()),
                    e => Failure::Transient(format!("cannot read the transcript: {e}")),
                })?;
                (rendered, p.site_name, None, p.at)
            }
            "missed_chat" => {
                let p: mail::MissedPayload =
                    serde_json::from_str(&d.payload).map_err(|e| Failure::Invalid(format!("bad payload: {e}")))?;
                let rendered =
                    mail::render_missed(&p, &self.console_url(&p.conversation_id), &tz).map_err(Failure::Invalid)?;
                (rendered, p.site_name, p.visitor_email, p.at)
            }
            reply::TEMPLATE => {
                let p: reply::ReplyPayload =
                    serde_json::from_str(&d.payload).map_err(|e| Failure::Invalid(format!("bad payload: {e}")))?;
                let rendered = reply::render(&p, &tz).map_err(Failure::Invalid)?;
                (rendered, p.site_name, Some(p.reply_to), p.at)
            }
            "invitation" => {
                let p: mail::InvitationPayload =
                    serde_json::from_str(&d.payload).map_err(|e| Failure::Invalid(format!("bad payload: {e}")))?;
                let open = match self.store.invitation(&p.invitation_id).await {
                    Ok(found) => found.is_some_and(|i| i.open_at(now_ms())),
                    Err(e) => return Err(Failure::Transient(format!("cannot read the invitation: {e}"))),
                };
                if !open {
                    return Err(Failure::Invalid("the invitation was revoked or has expired".into()));
                }
                let token = self
                    .tokens
                    .issue_invitation(&p.invitation_id, p.expires_at)
                    .map_err(|e| Failure::Transient(format!("cannot sign the link: {e}")))?;
                let accept_url = format!("{}/console#invite={token}", self.public_url);
                let rendered = mail::render_invitation(&p, &accept_url, &tz).map_err(Failure::Invalid)?;
                (rendered, p.site_name, None, p.at)
            }
            webhooks::DISABLED_TEMPLATE => {
                let p: webhooks::DisabledPayload =
                    serde_json::from_str(&d.payload).map_err(|e| Failure::Invalid(format!("bad payload: {e}")))?;
                let console = format!("{}/console", self.public_url);
                let rendered = webhooks::render_disabled(&p, &console, &tz).map_err(Failure::Invalid)?;
                (rendered, p.site_name, None, p.at)
            }
            other => return Err(Failure::Invalid(format!("unknown template {other:?}"))),
        };
        self.send_rendered(mailer, smtp, d, &site_name, reply_to.as_deref(), at, rendered).await
    }

    /// Send `rendered` as `d`'s email: From the relay's sender under
    /// `sender_name`, dated `at`, its Message-ID made from the delivery's id.
    #[allow(clippy::too_many_arguments)]
    async fn send_rendered(
        &self,
        mailer: &AsyncSmtpTransport<Tokio1Executor>,
        smtp: &SmtpConfig,
        d: &Delivery,
        sender_name: &str,
        reply_to: Option<&str>,
        at: i64,
        rendered: mail::Rendered,
    ) -> std::result::Result<(), Failure> {
        let host = reqwest::Url::parse(&self.public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "holdfast.local".into());
        let envelope = mail::Envelope {
            delivery_id: &d.id,
            from: &smtp.from,
            sender_name,
            to: &d.recipient,
            reply_to,
            id_host: &host,
            at,
        };
        let message = mail::build(&envelope, rendered).map_err(|e| match e {
            mail::BuildError::BadRecipient(e) => Failure::Invalid(e),
            mail::BuildError::Other(e) => Failure::Transient(e),
        })?;
        match mailer.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = format!("SMTP: {}", tls::tls_failure(&e).unwrap_or(e.to_string()));
                Err(if e.is_permanent() { Failure::Permanent(text) } else { Failure::Transient(text) })
            }
        }
    }
}

/// Whose deliveries `admin` sees: their site's, and the installation's
/// (the status page's) for the operator, who runs the status page.
fn scope(admin: &AgentCtx) -> Scope<'_> {
    Scope { site_id: &admin.site_id, installation: admin.role == crate::store::Role::Operator }
}

/// The site's time zone for its emails' times (UTC when unset or unknown).
fn site_time_zone(site: Option<&Site>) -> jiff::tz::TimeZone {
    let name = site.map(|s| crate::admin::WidgetSettings::from_stored(&s.settings).time_zone);
    name.and_then(|n| jiff::tz::TimeZone::get(&n).ok()).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Why an attempt failed, which decides whether it is tried again.
enum Failure {
    /// Worth another try (connection refused, timeout, 4xx).
    Transient(String),
    /// The receiver refused for good (SMTP 5xx): tried a few times only.
    Permanent(String),
    /// Can never succeed (an address that does not parse): failed at once.
    Invalid(String),
}

impl Failure {
    fn text(&self) -> &str {
        match self {
            Failure::Transient(t) | Failure::Permanent(t) | Failure::Invalid(t) => t,
        }
    }
}

/// What the admin's list shows of a delivery's payload.
struct Summary {
    subject: String,
    conversation_id: Option<String>,
    preview: String,
}

fn summary_of(d: &Delivery) -> Option<Summary> {
    if status::is_status(d) {
        let (subject, preview) = status::summary_of(d)?;
        return Some(Summary { subject: mail::one_line(&subject, 200), preview, conversation_id: None });
    }
    if d.kind == DeliveryKind::Webhook {
        // The event's type, and the conversation it is about.
        let body: serde_json::Value = serde_json::from_str(&d.payload).ok()?;
        let conversation_id = body["data"]["conversation"]["id"].as_str().map(str::to_owned);
        let text = body["data"]["event"]["body"].as_str().unwrap_or("");
        return Some(Summary { subject: d.template.clone(), conversation_id, preview: mail::one_line(text, 120) });
    }
    match d.template.as_str() {
        webhooks::DISABLED_TEMPLATE => {
            let p: webhooks::DisabledPayload = serde_json::from_str(&d.payload).ok()?;
            Some(Summary {
                subject: webhooks::disabled_subject(&p),
                preview: mail::one_line(&p.reason, 120),
                conversation_id: None,
            })
        }
        "offline_message" => {
            let p: mail::OfflinePayload = serde_json::from_str(&d.payload).ok()?;
            Some(Summary {
                subject: mail::offline_subject(&p),
                preview: mail::one_line(&p.body, 120),
                conversation_id: Some(p.conversation_id),
            })
        }
        "transcript" => {
            let p: transcript::TranscriptPayload = serde_json::from_str(&d.payload).ok()?;
            Some(Summary {
                subject: mail::transcript_subject(&p, p.words(), None).ok()?,
                preview: format!("Transcript up to event {}, for the {}", p.up_to_seq, p.requested_by),
                conversation_id: Some(p.conversation_id),
            })
        }
        "missed_chat" => {
            let p: mail::MissedPayload = serde_json::from_str(&d.payload).ok()?;
            Some(Summary {
                subject: mail::missed_subject(&p),
                preview: mail::one_line(p.body.as_deref().unwrap_or(""), 120),
                conversation_id: Some(p.conversation_id),
            })
        }
        reply::TEMPLATE => {
            let p: reply::ReplyPayload = serde_json::from_str(&d.payload).ok()?;
            Some(Summary {
                subject: reply::subject(&p),
                preview: mail::one_line(&p.body, 120),
                conversation_id: Some(p.conversation_id),
            })
        }
        "invitation" => {
            // The same for an address with an account and one without.
            let p: mail::InvitationPayload = serde_json::from_str(&d.payload).ok()?;
            Some(Summary {
                subject: mail::invitation_subject(&p),
                preview: format!("Invitation for {}", mail::one_line(&p.name, 100)),
                conversation_id: None,
            })
        }
        _ => None,
    }
}
