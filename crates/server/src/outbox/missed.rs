//! Missed chats: a visitor who waited the site's limit (`missed_chat_minutes`,
//! 2 unless set) after their first message with no agent reply, or who
//! closed the chat before one, makes the conversation missed. The mark
//! (`store/missed.rs`) and the emails to the site's recipients are stored
//! in one transaction; the conversation keeps its status, so a visitor who
//! is still waiting stays in the queue and can still be answered.
//!
//! The rule is [`judge`], pure. [`Outbox::watch_chats`] applies it: it
//! runs beside the deliverer in the process holding the store's lead, and
//! every `missed_tick` reads the conversations that may yet be missed
//! (created within [`LOOK_BACK`], no agent message, not closed by an
//! agent, not marked). A visitor who closes the tab without closing the
//! chat leaves it queued, so the wait rule marks it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::Outbox;
use super::mail::MissedPayload;
use crate::admin::WidgetSettings;
use crate::bus::{Audience, Envelope, Payload};
use crate::chat::protocol::ConversationView;
use crate::error::Result;
use crate::store::missed::{ChatWait, Missed, MissedChat, MissedReason};
use crate::store::outbox::NewDelivery;
use crate::store::{ConversationStatus, Site, Visitor, now_ms};

/// The sites' default limit, in minutes.
pub const DEFAULT_MINUTES: u32 = 2;
/// The longest limit a site may set.
pub const MAX_MINUTES: u32 = 60;
/// How far back the watcher looks: the longest limit, and two hours for a
/// lead that was down meanwhile. A chat judged by nobody within this is
/// never marked (said in `docs/mail.md`).
pub const LOOK_BACK: Duration = Duration::from_secs(3 * 3600);
/// Conversations read per round.
const SCAN_LIMIT: i64 = 1000;

/// What the rule says of a conversation now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not missed (yet): still within the limit, or nothing written.
    NotYet,
    Missed(MissedReason, i64),
}

/// The rule. `w` has no agent message and was closed by nobody but its
/// visitor (the store's candidates); `limit_ms` is the site's limit.
/// Leaving counts only before the limit is up: a visitor who waited it out
/// and then closed was missed by waiting.
pub fn judge(w: &ChatWait, limit_ms: i64, now: i64) -> Verdict {
    let Some(first) = w.first_visitor_at else { return Verdict::NotYet };
    let deadline = first.saturating_add(limit_ms);
    match w.closed_by_visitor_at {
        Some(left) if left < deadline => return Verdict::Missed(MissedReason::Left, (left - first).max(0)),
        Some(left) => return Verdict::Missed(MissedReason::Waited, (left - first).max(0)),
        None if w.conversation.status == ConversationStatus::Closed => return Verdict::NotYet,
        None => {}
    }
    if now >= deadline { Verdict::Missed(MissedReason::Waited, now - first) } else { Verdict::NotYet }
}

impl Outbox {
    /// Apply the rule, and queue the sites' archive transcripts, until the
    /// task is dropped (the lead's).
    pub async fn watch_chats(self: Arc<Self>) {
        loop {
            let now = now_ms();
            if let Err(e) = self.judge_missed(now).await {
                tracing::warn!(error = %e, "cannot look for missed chats");
            }
            if let Err(e) = self.archive_closed(now - LOOK_BACK.as_millis() as i64).await {
                tracing::warn!(error = %e, "cannot queue the archive transcripts");
            }
            tokio::time::sleep(self.config.missed_tick).await;
        }
    }

    /// One round: mark every conversation the rule says is missed now, with
    /// its emails. Returns how many were marked.
    pub async fn judge_missed(&self, now: i64) -> Result<usize> {
        let since = now - LOOK_BACK.as_millis() as i64;
        let waits = self.store.missed_candidates(since, SCAN_LIMIT).await?;
        let mut sites: HashMap<String, Option<(Site, i64)>> = HashMap::new();
        let mut marked = 0;
        for w in waits {
            let site_id = w.conversation.site_id.clone();
            if !sites.contains_key(&site_id) {
                let site = self.store.site(&site_id).await?.map(|s| {
                    let minutes = WidgetSettings::from_stored(&s.settings).missed_chat_minutes.clamp(1, MAX_MINUTES);
                    let limit = self.config.missed_minute.as_millis() as i64 * i64::from(minutes);
                    (s, limit)
                });
                sites.insert(site_id.clone(), site);
            }
            let Some(Some((site, limit_ms))) = sites.get(&site_id) else { continue };
            let Verdict::Missed(reason, waited_ms) = judge(&w, *limit_ms, now) else { continue };
            let missed = Missed { reason, waited_ms, missed_at: now };
            let deliveries = if self.mail_enabled() {
                let visitor = self.store.visitor(&w.conversation.visitor_id).await?;
                let recipients = self.lead_recipients(&w.conversation).await?;
                self.missed_chat_emails(site, &w, visitor.as_ref(), &recipients, &missed, *limit_ms)
            } else {
                Vec::new()
            };
            let endpoints = self.store.webhooks(&site_id).await?;
            let hooks = self.missed_hooks(&endpoints, &w.conversation, &missed);
            let queued = !deliveries.is_empty() || !hooks.is_empty();
            let mark = MissedChat {
                conversation_id: w.conversation.id.clone(),
                site_id: site_id.clone(),
                missed: missed.clone(),
                deliveries,
                hooks,
            };
            if !self.store.mark_missed(mark).await? {
                continue;
            }
            marked += 1;
            metrics::counter!("holdfast_missed_chats_total", "reason" => reason.as_str()).increment(1);
            if queued {
                self.queued();
            }
            // Consoles add it to their "Missed chats" list now.
            let mut view = ConversationView::from(&w.conversation);
            view.missed = Some(missed);
            let frame = serde_json::json!({"type": "missed_chat", "conversation": view});
            self.bus
                .publish(Envelope {
                    site_id,
                    audience: Audience::SiteAgents,
                    event: None,
                    payload: Payload::Frame { text: crate::chat::service::encode(&frame) },
                })
                .await;
        }
        Ok(marked)
    }

    /// One email per recipient (`Outbox::lead_recipients`, as for an offline
    /// message) telling of a missed chat.
    fn missed_chat_emails(
        &self,
        site: &Site,
        w: &ChatWait,
        visitor: Option<&Visitor>,
        recipients: &[String],
        missed: &Missed,
        limit_ms: i64,
    ) -> Vec<NewDelivery> {
        let payload = MissedPayload {
            site_name: site.name.clone(),
            conversation_id: w.conversation.id.clone(),
            visitor_name: visitor.and_then(|v| v.name.clone()),
            visitor_email: visitor.and_then(|v| v.email.clone()),
            page_url: visitor.and_then(|v| v.page_url.clone()),
            body: w.first_visitor_body.clone(),
            reason: missed.reason,
            waited_ms: missed.waited_ms,
            limit_ms,
            started_at: w.first_visitor_at.unwrap_or(w.conversation.created_at),
            at: missed.missed_at,
        };
        let payload = serde_json::to_string(&payload).unwrap_or_default();
        self.to_each(&site.id, &w.conversation.id, recipients, "missed_chat", &payload, missed.missed_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Conversation;

    const MIN: i64 = 60_000;

    fn wait(status: ConversationStatus, first: Option<i64>, left: Option<i64>) -> ChatWait {
        ChatWait {
            conversation: Conversation {
                id: "c".into(),
                site_id: "s".into(),
                visitor_id: "v".into(),
                group_id: "g".into(),
                agent_id: None,
                status,
                last_seq: 1,
                created_at: 0,
                assigned_at: None,
                closed_at: left,
            },
            first_visitor_at: first,
            first_visitor_body: Some("hello".into()),
            closed_by_visitor_at: left,
        }
    }

    #[test]
    fn a_visitor_who_waits_out_the_limit_is_missed_then_and_not_before() {
        let w = wait(ConversationStatus::Queued, Some(1_000), None);
        assert_eq!(judge(&w, 2 * MIN, 1_000 + 2 * MIN - 1), Verdict::NotYet);
        assert_eq!(judge(&w, 2 * MIN, 1_000 + 2 * MIN), Verdict::Missed(MissedReason::Waited, 2 * MIN));
        // Assigned but unanswered is no different: the visitor still waits.
        let w = wait(ConversationStatus::Active, Some(0), None);
        assert_eq!(judge(&w, 5 * MIN, 6 * MIN), Verdict::Missed(MissedReason::Waited, 6 * MIN));
    }

    #[test]
    fn a_visitor_who_leaves_before_a_reply_is_missed_at_once() {
        let w = wait(ConversationStatus::Closed, Some(0), Some(30_000));
        assert_eq!(judge(&w, 2 * MIN, 31_000), Verdict::Missed(MissedReason::Left, 30_000));
        // Leaving after the limit was missed by waiting (a watcher that was
        // down meanwhile says so too).
        let w = wait(ConversationStatus::Closed, Some(0), Some(3 * MIN));
        assert_eq!(judge(&w, 2 * MIN, 10 * MIN), Verdict::Missed(MissedReason::Waited, 3 * MIN));
    }

    #[test]
    fn nothing_written_or_closed_by_an_agent_is_never_missed() {
        assert_eq!(judge(&wait(ConversationStatus::Queued, None, None), MIN, 99 * MIN), Verdict::NotYet);
        let mut w = wait(ConversationStatus::Closed, Some(0), None);
        w.conversation.closed_at = Some(10);
        assert_eq!(judge(&w, MIN, 99 * MIN), Verdict::NotYet, "an agent closed it: a person decided");
    }
}
