//! Chat webhooks (issue 19): a site's endpoints, each with the events it
//! wants, and their delivery through the outbox as rows of kind `webhook`
//! (queued by the store in the transaction of the change that causes them,
//! `store::webhooks`).
//!
//! Each delivery is signed per the Standard Webhooks specification:
//! `webhook-id` (the delivery's id, the same on every attempt, for
//! de-duplication), `webhook-timestamp` (seconds, of the attempt) and
//! `webhook-signature` (`v1,` and base64 of HMAC-SHA256 over
//! `id.timestamp.body`, keyed with the bytes the `whsec_` secret encodes).
//! It is sent over the status page's guarded client (no special address
//! unless the operator allows private webhooks), retried with the
//! outbox's backoff for [`store::webhooks::RETRY_WINDOW_MS`], and one
//! conversation's deliveries to one endpoint go in order (the claim skips
//! a row while an earlier one of its endpoint and conversation is
//! queued). An endpoint whose every attempt has failed for
//! `OutboxConfig::webhook_disable_after` (3 days) is disabled, and its
//! site's admins are emailed in the same transaction.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Failure, Outbox};
use crate::chat::service::AgentCtx;
use crate::error::{Error, Result};
use crate::status::egress;
use crate::status::notify::check_webhook_url;
use crate::store::outbox::Delivery;
use crate::store::webhooks::{EVENTS, Endpoint, EndpointChange, HookDelivery};
use crate::store::{Site, new_id, now_ms, webhooks as hook_store};
use crate::tls;

/// What a secret starts with (Standard Webhooks).
const SECRET_PREFIX: &str = "whsec_";

/// An endpoint as its site's admins see it: everything but the secret,
/// which is shown once, when the endpoint is made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub failing_since: Option<i64>,
    pub disabled_at: Option<i64>,
    /// Why Holdfast disabled it (`None` when an admin did).
    pub disabled_reason: Option<String>,
    pub created_at: i64,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> Self {
        EndpointView {
            id: e.id.clone(),
            name: e.name.clone(),
            url: e.url.clone(),
            events: e.events.clone(),
            enabled: e.enabled,
            failing_since: e.failing_since,
            disabled_at: e.disabled_at,
            disabled_reason: e.disabled_reason.clone(),
            created_at: e.created_at,
        }
    }
}

/// An admin's new endpoint, or a change (every field optional then).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointRequest {
    pub name: Option<String>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::bad_request("name must be 1 to 100 characters"));
    }
    Ok(name.to_owned())
}

fn check_events(events: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if !EVENTS.contains(&e.as_str()) {
            return Err(Error::bad_request(format!("unknown event {e:?}: use one of {}", EVENTS.join(", "))));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    if out.is_empty() {
        return Err(Error::bad_request("choose at least one event"));
    }
    Ok(out)
}

fn check_admin(admin: &AgentCtx) -> Result<()> {
    if admin.role.is_admin() { Ok(()) } else { Err(Error::forbidden("admins only")) }
}

/// The Standard Webhooks signature of one attempt: `v1,` and base64 of
/// A new secret: `whsec_` and base64 of 32 random bytes.
fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(rand::random::<[u8; 32]>()))
}

/// HMAC-SHA256 of `id.timestamp.body`, keyed with the secret's bytes.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> std::result::Result<String, String> {
    let key = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = STANDARD.decode(key).map_err(|e| format!("the endpoint's secret is not base64: {e}"))?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// What the disabled endpoint's email says.
#[derive(Debug, Serialize, Deserialize)]
pub struct DisabledPayload {
    pub site_name: String,
    pub endpoint_id: String,
    pub endpoint_name: String,
    pub url: String,
    pub failing_since: i64,
    pub reason: String,
    pub at: i64,
}

pub const DISABLED_TEMPLATE: &str = "webhook_disabled";

pub fn disabled_subject(p: &DisabledPayload) -> String {
    format!("Webhook endpoint {} disabled on {}", super::mail::one_line(&p.endpoint_name, 80), p.site_name)
}

pub fn render_disabled(
    p: &DisabledPayload,
    console_url: &str,
    tz: &jiff::tz::TimeZone,
) -> std::result::Result<super::mail::Rendered, String> {
    let ctx = minijinja::context! {
        site_name => p.site_name,
        endpoint_name => p.endpoint_name,
        url => p.url,
        reason => p.reason,
        failing_since => super::mail::local_time(p.failing_since, tz),
        console_url => console_url,
    };
    super::mail::rendered(disabled_subject(p), DISABLED_TEMPLATE, &ctx)
}

impl Outbox {
    /// A new endpoint of the admin's site, and its secret (shown this once).
    pub async fn create_webhook(&self, admin: &AgentCtx, req: EndpointRequest) -> Result<(EndpointView, String)> {
        check_admin(admin)?;
        let name = check_name(req.name.as_deref().unwrap_or(""))?;
        let url = check_webhook_url(req.url.as_deref().unwrap_or(""), self.allow_private_webhooks)?;
        let events = check_events(req.events.as_deref().unwrap_or(&[]))?;
        let secret = new_secret();
        let endpoint = Endpoint {
            id: new_id(),
            site_id: admin.site_id.clone(),
            name,
            url,
            secret: secret.clone(),
            events,
            enabled: req.enabled.unwrap_or(true),
            failing_since: None,
            disabled_at: None,
            disabled_reason: None,
            created_by: admin.agent_id.clone(),
            created_at: now_ms(),
        };
        self.store.create_webhook(endpoint.clone()).await?;
        Ok((EndpointView::from(&endpoint), secret))
    }

    pub async fn webhooks(&self, admin: &AgentCtx) -> Result<Vec<EndpointView>> {
        check_admin(admin)?;
        Ok(self.store.webhooks(&admin.site_id).await?.iter().map(EndpointView::from).collect())
    }

    /// Change an endpoint of the admin's site: the view before and after.
    pub async fn update_webhook(
        &self,
        admin: &AgentCtx,
        id: &str,
        req: EndpointRequest,
    ) -> Result<(EndpointView, EndpointView)> {
        check_admin(admin)?;
        let before = self.endpoint_of(admin, id).await?;
        let change = EndpointChange {
            name: req.name.as_deref().map(check_name).transpose()?,
            url: req.url.as_deref().map(|u| check_webhook_url(u, self.allow_private_webhooks)).transpose()?,
            events: req.events.as_deref().map(check_events).transpose()?,
            enabled: req.enabled,
            secret: None,
        };
        let after =
            self.store.update_webhook(&admin.site_id, id, change).await?.ok_or(Error::NotFound("webhook endpoint"))?;
        Ok((EndpointView::from(&before), EndpointView::from(&after)))
    }

    /// A new signing secret for an endpoint of the admin's site, shown this
    /// once. No overlap: the old secret signs nothing from now on (a
    /// delivery its receiver refuses meanwhile is retried, so none is
    /// lost). The endpoint's view, and the secret.
    pub async fn rotate_webhook_secret(&self, admin: &AgentCtx, id: &str) -> Result<(EndpointView, String)> {
        check_admin(admin)?;
        self.endpoint_of(admin, id).await?;
        let secret = new_secret();
        let change = EndpointChange { secret: Some(secret.clone()), ..Default::default() };
        let after =
            self.store.update_webhook(&admin.site_id, id, change).await?.ok_or(Error::NotFound("webhook endpoint"))?;
        Ok((EndpointView::from(&after), secret))
    }

    /// Delete an endpoint of the admin's site: nothing more is queued for
    /// it, and what was queued ends as failed. The endpoint as it was.
    pub async fn delete_webhook(&self, admin: &AgentCtx, id: &str) -> Result<EndpointView> {
        check_admin(admin)?;
        self.endpoint_of(admin, id).await?;
        let gone = self.store.delete_webhook(&admin.site_id, id).await?.ok_or(Error::NotFound("webhook endpoint"))?;
        Ok(EndpointView::from(&gone))
    }

    async fn endpoint_of(&self, admin: &AgentCtx, id: &str) -> Result<Endpoint> {
        let found = self.store.webhook(id).await?;
        found.filter(|e| e.site_id == admin.site_id).ok_or(Error::NotFound("webhook endpoint"))
    }

    /// The deliveries to one endpoint of the admin's site, newest first,
    /// after a page's cursor `before`, at most `limit`.
    pub async fn webhook_deliveries(
        &self,
        admin: &AgentCtx,
        id: &str,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<super::DeliveryView>> {
        self.endpoint_of(admin, id).await?;
        self.list(admin, None, Some(id.to_owned()), before, limit).await
    }

    /// The `conversation.missed` deliveries of a missed mark.
    pub(super) fn missed_hooks(
        &self,
        endpoints: &[Endpoint],
        conversation: &crate::store::Conversation,
        missed: &crate::store::missed::Missed,
    ) -> Vec<HookDelivery> {
        let kind = "conversation.missed";
        let mut wanting = hook_store::wanting(endpoints, kind).peekable();
        if wanting.peek().is_none() {
            return Vec::new();
        }
        let data = hook_store::MissedData {
            site_id: conversation.site_id.clone(),
            conversation: conversation.clone(),
            missed: missed.clone(),
        };
        let payload = hook_store::body(kind, missed.missed_at, &data);
        let position = hook_store::missed_position(conversation.last_seq);
        wanting
            .map(|e| {
                hook_store::delivery(
                    conversation,
                    &e.id,
                    kind,
                    position,
                    &conversation.id,
                    payload.clone(),
                    missed.missed_at,
                )
            })
            .collect()
    }

    /// One attempt of a webhook delivery.
    pub(super) async fn send_webhook(
        &self,
        http: Option<&reqwest::Client>,
        d: &Delivery,
    ) -> std::result::Result<(), Failure> {
        let endpoint = match self.store.webhook(&d.recipient).await {
            Ok(Some(e)) if Some(&e.site_id) == d.site_id.as_ref() => e,
            Ok(_) => return Err(Failure::Invalid("the endpoint was deleted".into())),
            Err(e) => return Err(Failure::Transient(format!("cannot read the endpoint: {e}"))),
        };
        if !endpoint.enabled {
            return Err(Failure::Invalid("the endpoint is disabled".into()));
        }
        let Some(http) = http else { return Err(Failure::Transient("no HTTP client".into())) };
        let outcome = self.post_signed(http, &endpoint, d).await;
        let now = now_ms();
        if let Err(e) = self.store.webhook_outcome(&endpoint.id, outcome.is_ok(), now).await {
            tracing::warn!(error = %e, endpoint = %endpoint.id, "cannot record a webhook endpoint's outcome");
        }
        if let Err(failure) = &outcome {
            self.disable_if_failing(&endpoint, failure.text(), now).await;
        }
        outcome
    }

    async fn post_signed(
        &self,
        http: &reqwest::Client,
        endpoint: &Endpoint,
        d: &Delivery,
    ) -> std::result::Result<(), Failure> {
        let url = reqwest::Url::parse(&endpoint.url).map_err(|e| Failure::Invalid(format!("bad endpoint: {e}")))?;
        // An address literal skips the guarded client's resolver: check it here.
        if !self.allow_private_webhooks
            && let Err(why) = egress::check_url(&url)
        {
            return Err(Failure::Transient(format!("connect failed: {why}")));
        }
        let timestamp = now_ms() / 1000;
        let signature = sign(&endpoint.secret, &d.id, timestamp, &d.payload).map_err(Failure::Invalid)?;
        let res = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| Failure::Transient(tls::request_failure(&e)))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(Failure::Transient(format!("receiver answered {}", res.status())))
        }
    }

    /// Disable an endpoint that has failed for `webhook_disable_after`,
    /// emailing its site's admins (once: the store disables it only if
    /// it is enabled).
    async fn disable_if_failing(&self, endpoint: &Endpoint, error: &str, now: i64) {
        let after = self.config.webhook_disable_after.as_millis() as i64;
        let failing_since = endpoint.failing_since.unwrap_or(now);
        if now - failing_since < after {
            return;
        }
        let outcome = async {
            let site = self.store.site(&endpoint.site_id).await?.ok_or(Error::NotFound("site"))?;
            let emails = self.disabled_emails(&site, endpoint, error, failing_since, now).await?;
            let queued = !emails.is_empty();
            let disabled = self.store.disable_webhook(&endpoint.id, now - after, error, emails).await?;
            if disabled && queued {
                self.queued();
            }
            Ok::<bool, Error>(disabled)
        }
        .await;
        match outcome {
            Ok(true) => tracing::warn!(endpoint = %endpoint.id, "webhook endpoint disabled after failing for days"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, endpoint = %endpoint.id, "cannot disable a failing webhook endpoint"),
        }
    }

    async fn disabled_emails(
        &self,
        site: &Site,
        endpoint: &Endpoint,
        error: &str,
        failing_since: i64,
        now: i64,
    ) -> Result<Vec<crate::store::outbox::NewDelivery>> {
        if !self.mail_enabled() {
            return Ok(Vec::new());
        }
        let admins: Vec<String> = self
            .store
            .agents(&site.id)
            .await?
            .into_iter()
            .filter(|a| a.active && a.role.is_admin())
            .map(|a| a.email)
            .collect();
        let payload = DisabledPayload {
            site_name: site.name.clone(),
            endpoint_id: endpoint.id.clone(),
            endpoint_name: endpoint.name.clone(),
            url: endpoint.url.clone(),
            failing_since,
            reason: error.to_owned(),
            at: now,
        };
        let payload = serde_json::to_string(&payload).unwrap_or_default();
        // Keyed by when it was disabled: disabled again later, told again.
        let key = format!("{}:{now}", endpoint.id);
        Ok(self.to_each(&site.id, &key, &admins, DISABLED_TEMPLATE, &payload, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's test vectors.
    #[test]
    fn signs_like_the_specification() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
