//! Transcripts by email: an agent sends one from the console or the API,
//! a visitor asks for one when their chat ends ("Email me this
//! conversation"), and a site may name an archive address that gets every
//! closed chat's. Each is one outbox delivery whose payload names the
//! conversation and the last event it covers (`up_to_seq`): the
//! transcript is read from the store and rendered when it is sent, so the
//! row stays small and holds exactly the conversation as it was when asked
//! for. Times are in the site's time zone, and the email names it.
//!
//! Who may send where: an agent of the conversation's site to any valid
//! address (once per address and state of the conversation; "Send again"
//! in Deliveries for more); its visitor to the address they type, once per
//! state of the conversation, so a visitor cannot make Holdfast mail a
//! stranger more than the chat they themselves wrote in grows.

use serde::{Deserialize, Serialize};

use super::Outbox;
use super::mail::{self, Rendered};
use crate::admin::WidgetSettings;
use crate::chat::service::Peer;
use crate::error::{Error, Result};
use crate::store::outbox::{DeliveryKind, NewDelivery};
use crate::store::{AuthorKind, Conversation, new_id, now_ms};

/// What a transcript's email names, as queued (`deliveries.payload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TranscriptPayload {
    pub site_name: String,
    pub conversation_id: String,
    /// The last event the transcript holds.
    pub up_to_seq: i64,
    /// `agent`, `visitor` or `archive`: who it is for, in the email's words.
    pub requested_by: String,
    /// When it was asked for: the email's `Date`.
    pub at: i64,
    /// The language the visitor's widget spoke (a code of
    /// `widget_i18n`), for their copy; absent: English.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

impl TranscriptPayload {
    /// The words its email is written in: the visitor's language for
    /// their copy, English for the site's people.
    pub fn words(&self) -> &'static mail::TranscriptWords {
        match (self.requested_by.as_str(), self.lang.as_deref()) {
            ("visitor", Some(lang)) => mail::transcript_words(lang),
            _ => mail::transcript_words("en"),
        }
    }
}

/// The most events a transcript reads (its first ones; it says when cut).
const MAX_EVENTS: i64 = 2000;

impl Outbox {
    /// Queue a transcript of `conv` (which `peer` may see: the caller
    /// checked) to `to`. Returns false when the same transcript to the
    /// same address was queued already. `lang` is the visitor's widget's
    /// language (a visitor's copy is written in it; others are English).
    pub async fn request_transcript(
        &self,
        peer: &Peer,
        conv: &Conversation,
        to: &str,
        lang: Option<&str>,
    ) -> Result<bool> {
        if !self.mail_enabled() {
            return Err(Error::conflict("email is not configured on this server"));
        }
        let to = to.trim();
        if !crate::auth::valid_email(to) {
            return Err(Error::bad_request("to is not a valid email address"));
        }
        if conv.last_seq == 0 {
            return Err(Error::bad_request("the conversation is empty"));
        }
        let site = self.store.site(&conv.site_id).await?.ok_or(Error::NotFound("conversation"))?;
        let (requested_by, dedupe_key) = match peer {
            Peer::Agent(_) => ("agent", format!("transcript:{}:{}:{}", conv.id, conv.last_seq, to.to_lowercase())),
            Peer::Visitor(_) => ("visitor", format!("transcript:{}:{}:visitor", conv.id, conv.last_seq)),
        };
        // Only the visitor's own copy speaks their language.
        let lang = lang.filter(|l| matches!(peer, Peer::Visitor(_)) && crate::widget_i18n::ships(l));
        let delivery = self.transcript_delivery(&site.id, &site.name, conv, to, (requested_by, lang), dedupe_key);
        let queued = self.store.queue_deliveries(vec![delivery]).await? > 0;
        if queued {
            self.queued();
        }
        Ok(queued)
    }

    /// The delivery of a transcript: who it is for (`agent`, `visitor`,
    /// `archive`) and, for a visitor, the language of their copy.
    fn transcript_delivery(
        &self,
        site_id: &str,
        site_name: &str,
        conv: &Conversation,
        to: &str,
        (requested_by, lang): (&str, Option<&str>),
        dedupe_key: String,
    ) -> NewDelivery {
        let now = now_ms();
        let payload = TranscriptPayload {
            site_name: site_name.to_owned(),
            conversation_id: conv.id.clone(),
            up_to_seq: conv.last_seq,
            requested_by: requested_by.to_owned(),
            at: now,
            lang: lang.map(str::to_owned),
        };
        NewDelivery {
            id: new_id(),
            site_id: Some(site_id.to_owned()),
            kind: DeliveryKind::Email,
            template: "transcript".into(),
            recipient: to.to_owned(),
            payload: serde_json::to_string(&payload).unwrap_or_default(),
            dedupe_key,
            created_at: now,
            give_up_at: now + self.config.retry_window.as_millis() as i64,
        }
    }

    /// Queue the archive copy of every chat closed since `since` of a site
    /// that names an archive address (`transcript_archive`). Run by the
    /// lead beside the missed-chat watcher; the `archive:CONV` key makes
    /// each chat's copy one delivery however often it runs.
    pub async fn archive_closed(&self, since: i64) -> Result<usize> {
        let mut queued = 0;
        for site in self.store.sites().await? {
            let archive = WidgetSettings::from_stored(&site.settings).transcript_archive;
            if archive.is_empty() || !crate::auth::valid_email(&archive) {
                continue;
            }
            let closed = self.store.unarchived_closed(&site.id, since, 200).await?;
            let deliveries: Vec<NewDelivery> = closed
                .iter()
                .filter(|c| c.last_seq > 0)
                .map(|c| {
                    let key = format!("archive:{}", c.id);
                    self.transcript_delivery(&site.id, &site.name, c, &archive, ("archive", None), key)
                })
                .collect();
            if !deliveries.is_empty() {
                queued += self.store.queue_deliveries(deliveries).await?;
            }
        }
        if queued > 0 {
            self.queued();
        }
        Ok(queued)
    }

    /// The transcript's email, read from the store now.
    pub(super) async fn render_transcript(&self, p: &TranscriptPayload, tz: &jiff::tz::TimeZone) -> Result<Rendered> {
        let conv = self.store.conversation(&p.conversation_id).await?.ok_or(Error::NotFound("conversation"))?;
        let visitor = self.store.visitor(&conv.visitor_id).await?;
        let agents = self.store.agents(&conv.site_id).await?;
        let events = self.store.events_after(&conv.id, 0, p.up_to_seq.clamp(1, MAX_EVENTS)).await?;
        let words = p.words();
        let visitor_name = visitor.as_ref().and_then(|v| v.name.clone());
        let agent_name = |id: Option<&str>| {
            id.and_then(|id| agents.iter().find(|a| a.id == id)).map_or_else(|| words.agent.clone(), |a| a.name.clone())
        };
        let mut lines = Vec::new();
        for e in events.iter().filter(|e| e.seq <= p.up_to_seq) {
            let text = match e.kind.as_str() {
                "message" => message_text(e.body.as_deref(), &e.data),
                "assigned" => {
                    let name = e.data.get("agent").and_then(|a| a.get("name")).and_then(|n| n.as_str());
                    mail::fill(&words.joined, &[("name", name.unwrap_or(&words.an_agent))])
                        .map_err(|e| Error::internal(anyhow::anyhow!(e)))?
                }
                "transferred" => words.transferred.clone(),
                "closed" => words.ended.clone(),
                "rating" => rating_line(&e.data, words),
                _ => continue,
            };
            let who = match (e.kind.as_str(), e.author.kind) {
                ("message", AuthorKind::Visitor) => visitor_name.clone().unwrap_or_else(|| words.visitor.clone()),
                ("message", AuthorKind::Agent) => agent_name(e.author.id.as_deref()),
                ("message", AuthorKind::System) => p.site_name.clone(),
                _ => String::new(),
            };
            let at = mail::local_clock(e.created_at, tz);
            lines.push(mail::TranscriptLine { at, who, text, is_message: e.kind == "message" });
        }
        let console_url = self.console_url(&conv.id);
        let email = mail::TranscriptEmail {
            payload: p,
            words,
            visitor_name: visitor_name.as_deref(),
            started_at: events.first().map(|e| e.created_at).unwrap_or(conv.created_at),
            lines: &lines,
            cut: p.up_to_seq > MAX_EVENTS,
            console_url: &console_url,
        };
        mail::render_transcript(&email, tz).map_err(|e| Error::internal(anyhow::anyhow!(e)))
    }
}

/// A message's words, then a line per file it carries ("[file: NAME,
/// N KB]": a transcript holds no links, which would expire).
fn message_text(body: Option<&str>, data: &serde_json::Value) -> String {
    let mut text = body.unwrap_or_default().to_owned();
    for file in data.get("attachments").and_then(|a| a.as_array()).into_iter().flatten() {
        let name = file.get("name").and_then(|n| n.as_str()).unwrap_or("file");
        let size = file.get("size").and_then(|n| n.as_i64()).unwrap_or(0);
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("[file: {name}, {} KB]", (size + 1023) / 1024));
    }
    text
}

/// "Rated good – “comment”", from a rating event's detail, in `words`.
fn rating_line(data: &serde_json::Value, words: &mail::TranscriptWords) -> String {
    let rated = match data.get("rating").and_then(|r| r.as_str()) {
        Some("good") => words.rated_good.clone(),
        Some("bad") => words.rated_bad.clone(),
        other => format!("Rated {}", other.unwrap_or("?")),
    };
    match data.get("comment").and_then(|c| c.as_str()) {
        Some(comment) => format!("{rated} \u{2013} \u{201c}{comment}\u{201d}"),
        None => rated,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_reads_in_the_sites_zone() {
        use crate::outbox::mail::local_clock;
        assert_eq!(local_clock(1_700_000_000_000, &jiff::tz::TimeZone::UTC), "22:13");
        assert_eq!(local_clock(0, &jiff::tz::TimeZone::UTC), "00:00");
        let tokyo = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(local_clock(0, &tokyo), "09:00");
    }

    #[test]
    fn a_message_lists_its_files_by_name() {
        let data = serde_json::json!({"attachments": [{"id": "a", "name": "shot.png", "size": 2048, "type": "image/png",
            "inline": true}, {"id": "b", "name": "<b>x</b>.pdf", "size": 1, "type": "application/pdf", "inline": false}]});
        assert_eq!(super::message_text(Some("see"), &data), "see\n[file: shot.png, 2 KB]\n[file: <b>x</b>.pdf, 1 KB]");
        assert_eq!(super::message_text(Some(""), &data).lines().count(), 2);
        assert_eq!(super::message_text(Some("hi"), &serde_json::json!({})), "hi");
    }

    #[test]
    fn a_rating_reads_as_a_line() {
        let en = crate::outbox::mail::transcript_words("en");
        let with = serde_json::json!({"rating": "bad", "score": 1, "comment": "too slow"});
        assert_eq!(super::rating_line(&with, en), "Rated bad \u{2013} \u{201c}too slow\u{201d}");
        assert_eq!(super::rating_line(&serde_json::json!({"rating": "good", "score": 5}), en), "Rated good");
        let de = crate::outbox::mail::transcript_words("de");
        assert_eq!(super::rating_line(&with, de), "Bewertet: schlecht \u{2013} \u{201c}too slow\u{201d}");
    }
}
