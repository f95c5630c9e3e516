//! Answering an offline message by email: the agent writes in the offline
//! conversation; the answer is a durable message event (`by_email: true`)
//! and the email to the visitor is queued in the same transaction
//! (`Change::Reply`), so an answer stored is an answer sent, once, however
//! often the agent's click is retried. The email is From the configured
//! sender with the site's name, Reply-To the site's `reply_to` address or
//! else the answering agent's, so the visitor's answer reaches a person.

use serde::{Deserialize, Serialize};

use super::Outbox;
use super::mail::{self, Rendered};
use crate::admin::WidgetSettings;
use crate::chat::service::{AgentCtx, Chat, Peer, check_body, check_client_id};
use crate::error::{Error, Result};
use crate::store::outbox::{DeliveryKind, NewDelivery};
use crate::store::{Applied, Author, Change, new_id, now_ms};

/// The mail template of answers (`assets/mail/offline_reply.*`).
pub const TEMPLATE: &str = "offline_reply";

/// What an answer's email shows, as queued (`deliveries.payload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplyPayload {
    pub site_name: String,
    pub conversation_id: String,
    pub agent_name: String,
    /// The email's Reply-To.
    pub reply_to: String,
    pub visitor_name: Option<String>,
    /// What the visitor wrote, quoted under the answer.
    pub question: Option<String>,
    pub body: String,
    /// When the agent answered: the email's `Date`.
    pub at: i64,
}

/// "Re: your message to SITE", on one line.
pub fn subject(p: &ReplyPayload) -> String {
    format!("Re: your message to {}", mail::one_line(&p.site_name, 80))
}

pub fn render(p: &ReplyPayload, tz: &jiff::tz::TimeZone) -> Result<Rendered, String> {
    let ctx = minijinja::context! {
        site_name => p.site_name,
        agent_name => p.agent_name,
        visitor_name => p.visitor_name,
        question => p.question,
        body => p.body,
        sent_at => mail::local_time(p.at, tz),
    };
    mail::rendered(subject(p), TEMPLATE, &ctx)
}

/// Answer the offline message `conv_id` by email, as agent `a` (any agent
/// of its site). Refused when the visitor left no address, the
/// conversation is not an offline message, or no mail relay is configured.
pub async fn reply_by_email(chat: &Chat, a: &AgentCtx, conv_id: &str, client_id: &str, body: &str) -> Result<Applied> {
    check_client_id(client_id)?;
    check_body(body)?;
    let outbox: &Outbox = &chat.outbox;
    if !outbox.mail_enabled() {
        return Err(Error::conflict("email is not configured on this server"));
    }
    let conv = chat.conversation_for(&Peer::Agent(a.clone()), conv_id).await?;
    let visitor = chat.store.visitor(&conv.visitor_id).await?;
    let to = visitor
        .as_ref()
        .and_then(|v| v.email.clone())
        .ok_or_else(|| Error::conflict("the visitor left no email address to answer"))?;
    let site = chat.store.site(&conv.site_id).await?.ok_or(Error::NotFound("conversation"))?;
    let agent = chat.store.agent(&a.agent_id).await?.ok_or_else(|| Error::unauthorized("agent not found"))?;
    let settings = WidgetSettings::from_stored(&site.settings);
    let reply_to = if settings.reply_to.is_empty() { agent.email.clone() } else { settings.reply_to };
    let question = chat.store.events_after(&conv.id, 0, 1).await?.into_iter().next().and_then(|e| e.body);
    let now = now_ms();
    let payload = ReplyPayload {
        site_name: site.name,
        conversation_id: conv.id.clone(),
        agent_name: agent.name,
        reply_to,
        visitor_name: visitor.and_then(|v| v.name),
        question,
        body: body.to_owned(),
        at: now,
    };
    let email = NewDelivery {
        id: new_id(),
        site_id: Some(conv.site_id.clone()),
        kind: DeliveryKind::Email,
        template: TEMPLATE.into(),
        recipient: to,
        payload: serde_json::to_string(&payload).map_err(Error::internal)?,
        dedupe_key: format!("{TEMPLATE}:{}:{}:{client_id}", conv.id, a.agent_id),
        created_at: now,
        give_up_at: now + outbox.config.retry_window.as_millis() as i64,
    };
    let change = Change::Reply {
        author: Author::agent(&a.agent_id),
        client_id: client_id.into(),
        body: body.into(),
        email: Box::new(email),
    };
    let applied = chat.apply(&conv.id, change).await?;
    if !applied.duplicate {
        outbox.queued();
    }
    Ok(applied)
}
