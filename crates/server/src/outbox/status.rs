//! The status page's notifications, sent by the outbox like everything
//! else. The status store writes each one with the change that causes it
//! (`status_deliveries`); the relay (`status::relay`) queues it here
//! keyed `status:ID`; the outbox sends it with its retries and delivery
//! log and tells the status store how each attempt went, so the operator's
//! list of subscribers still says why one is not reached.
//!
//! Such a delivery belongs to the installation (`site_id` NULL): only the
//! operator sees it in the delivery log. A webhook keeps the status page's
//! own signature (`X-Holdfast-Signature`, docs/status-api.md); an email is
//! multipart like every other, with the subscriber's unsubscribe link.

use serde::{Deserialize, Serialize};

use super::{Failure, Outbox, mail};
use crate::status::notify::{self, EmailBody};
use crate::store::new_id;
use crate::store::outbox::{Attempt, Delivery, DeliveryKind, NewDelivery};
use crate::store::status::{self as status_store, SubscriberKind};

/// An email to a status page subscriber.
pub const EMAIL_TEMPLATE: &str = "status_email";
/// A webhook to a status page subscriber.
pub const WEBHOOK_TEMPLATE: &str = "status_webhook";

/// What a relayed notification carries (`deliveries.payload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusPayload {
    /// Its id in the status store, which hears of each attempt.
    pub notification_id: String,
    pub subscriber_id: String,
    /// The webhook's JSON body, or the email ([`EmailBody`] as JSON).
    pub body: String,
    /// When the change was recorded (the email's `Date`).
    pub at: i64,
}

/// Whether `d` is a status page notification.
pub fn is_status(d: &Delivery) -> bool {
    d.site_id.is_none() && matches!(d.template.as_str(), EMAIL_TEMPLATE | WEBHOOK_TEMPLATE)
}

impl Outbox {
    /// The outbox's delivery for a notification of the status store.
    pub fn status_notification(&self, n: &status_store::Delivery, now: i64) -> NewDelivery {
        let (kind, template) = match n.subscriber.kind {
            SubscriberKind::Email => (DeliveryKind::Email, EMAIL_TEMPLATE),
            SubscriberKind::Webhook => (DeliveryKind::Webhook, WEBHOOK_TEMPLATE),
        };
        let payload = StatusPayload {
            notification_id: n.id.clone(),
            subscriber_id: n.subscriber.id.clone(),
            body: n.payload.clone(),
            at: n.created_at,
        };
        NewDelivery {
            id: new_id(),
            site_id: None,
            kind,
            template: template.into(),
            recipient: n.subscriber.target.clone(),
            payload: serde_json::to_string(&payload).unwrap_or_default(),
            dedupe_key: format!("status:{}", n.id),
            created_at: now,
            give_up_at: now + self.config.retry_window.as_millis() as i64,
        }
    }

    /// Send a status notification: to its subscriber as it is now (one
    /// who unsubscribed gets nothing).
    pub(super) async fn send_status(
        &self,
        mailer: Option<&lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
        http: Option<&reqwest::Client>,
        d: &Delivery,
    ) -> Result<(), Failure> {
        let p: StatusPayload =
            serde_json::from_str(&d.payload).map_err(|e| Failure::Invalid(format!("bad payload: {e}")))?;
        let subscriber = match self.status_store.subscriber(&p.subscriber_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Failure::Invalid("the subscriber unsubscribed".into())),
            Err(e) => return Err(Failure::Transient(format!("cannot read the subscriber: {e}"))),
        };
        let unsubscribe = format!("{}/status/subscribers/unsubscribe?token={}", self.public_url, subscriber.token);
        match subscriber.kind {
            SubscriberKind::Webhook => {
                let Some(http) = http else { return Err(Failure::Transient("no HTTP client".into())) };
                let secret = subscriber.secret.as_deref().unwrap_or("");
                notify::post_signed(
                    http,
                    &subscriber.target,
                    secret,
                    &p.body,
                    &unsubscribe,
                    self.allow_private_webhooks,
                )
                .await
                .map_err(Failure::Transient)
            }
            SubscriberKind::Email => match (mailer, &self.smtp) {
                (Some(mailer), Some(smtp)) => {
                    let rendered = self.render_status(&p, &unsubscribe)?;
                    self.send_rendered(mailer, smtp, d, &self.page_name, None, p.at, rendered).await
                }
                _ => Err(Failure::Transient("email is not configured".into())),
            },
        }
    }

    fn render_status(&self, p: &StatusPayload, unsubscribe: &str) -> Result<mail::Rendered, Failure> {
        let email: EmailBody =
            serde_json::from_str(&p.body).map_err(|e| Failure::Invalid(format!("bad payload: {e}")))?;
        let ctx = minijinja::context! {
            subject => email.subject,
            text => email.text,
            page_name => self.page_name,
            unsubscribe_url => unsubscribe,
        };
        mail::rendered(email.subject.clone(), "status_notice", &ctx).map_err(Failure::Invalid)
    }

    /// Tell the status store how an attempt at one of its notifications went.
    pub(super) async fn report_status(&self, d: &Delivery, attempt: &Attempt) {
        let Ok(p) = serde_json::from_str::<StatusPayload>(&d.payload) else { return };
        let recorded = match attempt {
            Attempt::Sent { at } => self.status_store.delivery_done(&p.notification_id, *at).await,
            Attempt::Failed { error, next_at, .. } => {
                self.status_store.delivery_failed(&p.notification_id, error, *next_at).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, notification = %p.notification_id, "cannot record a status notification's outcome");
        }
    }
}

/// What the delivery log shows of a status notification: its subject (an
/// email's, or the incident's or component's name for a webhook) and a line
/// saying it is the status page's.
pub(super) fn summary_of(d: &Delivery) -> Option<(String, String)> {
    let p: StatusPayload = serde_json::from_str(&d.payload).ok()?;
    let subject = match d.kind {
        DeliveryKind::Email => serde_json::from_str::<EmailBody>(&p.body).ok()?.subject,
        DeliveryKind::Webhook => {
            let body: serde_json::Value = serde_json::from_str(&p.body).ok()?;
            let about = body["incident"]["name"].as_str().or(body["component"]["name"].as_str()).unwrap_or("");
            format!("Status page webhook: {about}")
        }
    };
    Some((subject, "The status page's notification to a subscriber".into()))
}
