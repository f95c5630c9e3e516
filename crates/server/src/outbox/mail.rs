//! The emails of the outbox: templates (minijinja, HTML-escaped by
//! default: `.html` templates escape every value), and the message around
//! them (multipart text + HTML, Date, Message-ID, From, Reply-To). Values
//! that end up in headers are made one line first, so a visitor's name
//! holding CR/LF cannot add a header.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use minijinja::Environment;
use serde::{Deserialize, Serialize};

use jiff::tz::TimeZone;

/// What an offline message's email shows, as queued (`deliveries.payload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfflinePayload {
    pub site_name: String,
    pub conversation_id: String,
    pub visitor_name: Option<String>,
    pub visitor_email: Option<String>,
    pub page_url: Option<String>,
    pub body: String,
    /// When the visitor sent it (Unix ms).
    pub at: i64,
}

/// An email's subject and its two parts.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Auto-escaping follows the name: `.html` escapes, `.txt` does not.
    for (name, source) in [
        ("offline_message.txt", include_str!("../../../../assets/mail/offline_message.txt")),
        ("offline_message.html", include_str!("../../../../assets/mail/offline_message.html")),
        ("missed_chat.txt", include_str!("../../../../assets/mail/missed_chat.txt")),
        ("missed_chat.html", include_str!("../../../../assets/mail/missed_chat.html")),
        ("transcript.txt", include_str!("../../../../assets/mail/transcript.txt")),
        ("transcript.html", include_str!("../../../../assets/mail/transcript.html")),
        ("invitation.txt", include_str!("../../../../assets/mail/invitation.txt")),
        ("offline_reply.txt", include_str!("../../../../assets/mail/offline_reply.txt")),
        ("offline_reply.html", include_str!("../../../../assets/mail/offline_reply.html")),
        ("invitation.html", include_str!("../../../../assets/mail/invitation.html")),
        ("webhook_disabled.txt", include_str!("../../../../assets/mail/webhook_disabled.txt")),
        ("webhook_disabled.html", include_str!("../../../../assets/mail/webhook_disabled.html")),
        ("status_notice.txt", include_str!("../../../../assets/mail/status_notice.txt")),
        ("status_notice.html", include_str!("../../../../assets/mail/status_notice.html")),
    ] {
        env.add_template(name, source).expect("the built-in mail templates parse");
    }
    env
});

/// Both parts of the email `name` (`NAME.txt`, `NAME.html`) with `ctx`.
pub(crate) fn rendered(subject: String, name: &str, ctx: &minijinja::Value) -> Result<Rendered, String> {
    let render = |part: &str| {
        let file = format!("{name}.{part}");
        TEMPLATES.get_template(&file).and_then(|t| t.render(ctx)).map_err(|e| format!("template {file}: {e}"))
    };
    Ok(Rendered { subject, text: render("txt")?, html: render("html")? })
}

/// Header text from anything: control characters (CR and LF among them)
/// become spaces, runs of spaces one, at most `max` characters.
pub fn one_line(value: &str, max: usize) -> String {
    let spaced: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut line = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > max {
        line = line.chars().take(max.saturating_sub(1)).collect::<String>() + "…";
    }
    line
}

/// A moment as the site's people read it: "Mar 29, 2026 - 14:05 CEST",
/// in the site's time zone (`time_zone` in its settings; UTC unless set).
pub fn local_time(ms: i64, tz: &TimeZone) -> String {
    local(ms, tz, "%b %d, %Y - %H:%M %Z", "(unknown time)")
}

/// `HH:MM` in the site's time zone (transcript lines).
pub fn local_clock(ms: i64, tz: &TimeZone) -> String {
    local(ms, tz, "%H:%M", "--:--")
}

/// `ms` in `tz` formatted by `format`, or `out_of_range`.
fn local(ms: i64, tz: &TimeZone, format: &str, out_of_range: &str) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => at.to_zoned(tz.clone()).strftime(format).to_string(),
        Err(_) => out_of_range.into(),
    }
}

/// The subject and both parts of an offline message's email (times in the
/// site's time zone).
pub fn render_offline(p: &OfflinePayload, console_url: &str, tz: &TimeZone) -> Result<Rendered, String> {
    let page_link = web_link(p.page_url.as_deref());
    let ctx = minijinja::context! {
        site_name => p.site_name,
        visitor_name => p.visitor_name,
        visitor_email => p.visitor_email,
        page_url => p.page_url,
        page_link => page_link,
        body => p.body,
        sent_at => local_time(p.at, tz),
        console_url => console_url,
    };
    rendered(offline_subject(p), "offline_message", &ctx)
}

/// The page as a link only when it is a web address (never `javascript:`).
fn web_link(url: Option<&str>) -> Option<&str> {
    url.filter(|u| u.starts_with("https://") || u.starts_with("http://"))
}

/// The visitor's name on one line for a subject, or "a visitor".
fn visitor_words(name: Option<&str>) -> String {
    name.map(|n| one_line(n, 80)).filter(|n| !n.is_empty()).unwrap_or_else(|| "a visitor".to_owned())
}

/// "New message from NAME on SITE", on one line.
pub fn offline_subject(p: &OfflinePayload) -> String {
    format!("New message from {} on {}", visitor_words(p.visitor_name.as_deref()), one_line(&p.site_name, 80))
}

/// What a missed chat's email shows, as queued (`deliveries.payload`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissedPayload {
    pub site_name: String,
    pub conversation_id: String,
    pub visitor_name: Option<String>,
    pub visitor_email: Option<String>,
    pub page_url: Option<String>,
    /// The visitor's first message.
    pub body: Option<String>,
    pub reason: crate::store::missed::MissedReason,
    pub waited_ms: i64,
    /// The site's limit then, in milliseconds.
    pub limit_ms: i64,
    /// When the visitor first wrote (Unix ms).
    pub started_at: i64,
    /// When the chat was judged missed: the email's `Date`.
    pub at: i64,
}

/// "2 min", "1 h 5 min", "40 s": a wait as a reader says it.
pub fn duration_words(ms: i64) -> String {
    let s = (ms.max(0) + 500) / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        _ if s % 3600 < 60 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// The subject and both parts of a missed chat's email (times in the
/// site's time zone).
pub fn render_missed(p: &MissedPayload, console_url: &str, tz: &TimeZone) -> Result<Rendered, String> {
    let page_link = web_link(p.page_url.as_deref());
    let ctx = minijinja::context! {
        site_name => p.site_name,
        visitor_name => p.visitor_name,
        visitor_email => p.visitor_email,
        page_url => p.page_url,
        page_link => page_link,
        body => p.body,
        reason => p.reason.as_str(),
        waited => duration_words(p.waited_ms),
        limit => duration_words(p.limit_ms),
        started_at => local_time(p.started_at, tz),
        console_url => console_url,
    };
    rendered(missed_subject(p), "missed_chat", &ctx)
}

/// "Missed chat from NAME on SITE", on one line.
pub fn missed_subject(p: &MissedPayload) -> String {
    format!("Missed chat from {} on {}", visitor_words(p.visitor_name.as_deref()), one_line(&p.site_name, 80))
}

/// What an invitation's email shows, as queued (`deliveries.payload`,
/// which admins never see: the delivery list shows the same subject and
/// preview whether or not the address has an account).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvitationPayload {
    pub invitation_id: String,
    pub site_name: String,
    /// The inviting admin's name.
    pub invited_by: String,
    /// The invitee's name, as the admin typed it.
    pub name: String,
    pub role: crate::store::Role,
    pub expires_at: i64,
    /// The address has an account already: the email says so, with no link.
    pub account_exists: bool,
    /// When it was queued: the email's `Date`.
    pub at: i64,
}

/// "Join SITE on Holdfast", the same for every invitation of a site.
pub fn invitation_subject(p: &InvitationPayload) -> String {
    format!("Join {} on Holdfast", one_line(&p.site_name, 80))
}

/// The subject and both parts of an invitation's email; `accept_url` is
/// its link (unused when the address has an account).
pub fn render_invitation(p: &InvitationPayload, accept_url: &str, tz: &TimeZone) -> Result<Rendered, String> {
    let ctx = minijinja::context! {
        site_name => p.site_name,
        invited_by => p.invited_by,
        role_words => if p.role.is_admin() { "an admin" } else { "an agent" },
        account_exists => p.account_exists,
        accept_url => accept_url,
        expires => local_time(p.expires_at, tz),
    };
    rendered(invitation_subject(p), "invitation", &ctx)
}

/// One line of a transcript: a message, or what happened (`is_message`
/// false: joined, transferred, ended).
#[derive(Debug, Clone, Serialize)]
pub struct TranscriptLine {
    /// `HH:MM`, in the site's time zone.
    pub at: String,
    pub who: String,
    pub text: String,
    pub is_message: bool,
}

/// The words of a transcript's email in one language: the widget's
/// languages (`assets/mail/transcript-i18n.json`), so a visitor's copy
/// reads in the language their widget spoke. `{{ site }}`, `{{ started }}`,
/// `{{ zone }}` and `{{ name }}` are filled in by `fill`.
#[derive(Debug, Deserialize)]
pub struct TranscriptWords {
    /// `ltr` or `rtl`.
    pub dir: String,
    /// How the start is written (jiff's `strftime`).
    pub date: String,
    pub subject: String,
    pub intro: String,
    pub visitor: String,
    pub agent: String,
    pub joined: String,
    pub an_agent: String,
    pub transferred: String,
    pub ended: String,
    pub rated_good: String,
    pub rated_bad: String,
    pub cut: String,
    pub footer: String,
}

static TRANSCRIPT_WORDS: LazyLock<BTreeMap<String, TranscriptWords>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../../../assets/mail/transcript-i18n.json"))
        .expect("the built-in transcript words parse")
});

/// The transcript's words in `lang` (a widget language code), English
/// for any other.
pub fn transcript_words(lang: &str) -> &'static TranscriptWords {
    TRANSCRIPT_WORDS.get(lang).unwrap_or_else(|| &TRANSCRIPT_WORDS["en"])
}

/// One of the words (`{{ site }}` and the like) filled with `values` by
/// the mail templates' engine, which never reads a value as a template.
pub fn fill(words: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let ctx: BTreeMap<&str, &str> = values.iter().copied().collect();
    TEMPLATES.render_str(words, ctx).map_err(|e| format!("transcript words {words:?}: {e}"))
}

/// The subject and both parts of a transcript's email: the visitor's
/// copy in `words`' language, the site's people's in English.
pub struct TranscriptEmail<'a> {
    pub payload: &'a super::transcript::TranscriptPayload,
    pub words: &'a TranscriptWords,
    pub visitor_name: Option<&'a str>,
    pub started_at: i64,
    pub lines: &'a [TranscriptLine],
    pub cut: bool,
    pub console_url: &'a str,
}

pub fn render_transcript(email: &TranscriptEmail, tz: &TimeZone) -> Result<Rendered, String> {
    let (p, words) = (email.payload, email.words);
    let zone = tz.iana_name().unwrap_or("UTC");
    let for_visitor = p.requested_by == "visitor";
    let started =
        if for_visitor { local(email.started_at, tz, &words.date, "?") } else { local_time(email.started_at, tz) };
    let site = p.site_name.as_str();
    let subject = transcript_subject(p, words, email.visitor_name)?;
    let ctx = minijinja::context! {
        title => subject,
        site_name => site,
        visitor_name => email.visitor_name,
        for_visitor => for_visitor,
        started_at => started,
        zone => zone,
        lines => email.lines,
        cut => email.cut,
        console_url => email.console_url,
        dir => words.dir,
        intro => fill(&words.intro, &[("site", site), ("started", &started), ("zone", zone)])?,
        cut_line => words.cut,
        footer => fill(&words.footer, &[("site", site)])?,
    };
    rendered(subject, "transcript", &ctx)
}

/// The visitor's subject ("Your conversation with SITE", in their
/// language), or "Transcript: chat with NAME on SITE" for the site's
/// people; one line.
pub fn transcript_subject(
    p: &super::transcript::TranscriptPayload,
    words: &TranscriptWords,
    visitor_name: Option<&str>,
) -> Result<String, String> {
    let site = one_line(&p.site_name, 80);
    if p.requested_by == "visitor" {
        return fill(&words.subject, &[("site", &site)]);
    }
    Ok(format!("Transcript: chat with {} on {site}", visitor_words(visitor_name)))
}

/// Why a message could not be built: the recipient's address is unusable
/// (permanent), or something else (a bug or bad settings).
#[derive(Debug)]
pub enum BuildError {
    BadRecipient(String),
    Other(String),
}

/// The email to `to`: From the configured sender with the site's name as
/// display name, Reply-To the visitor when their address parses, Date when
/// the visitor wrote, and a Message-ID made from the delivery's id (so a
/// resend after a crash can be recognised by the receiver).
pub struct Envelope<'a> {
    pub delivery_id: &'a str,
    pub from: &'a str,
    pub sender_name: &'a str,
    pub to: &'a str,
    pub reply_to: Option<&'a str>,
    pub id_host: &'a str,
    pub at: i64,
}

pub fn build(envelope: &Envelope<'_>, mail: Rendered) -> Result<Message, BuildError> {
    let to: Mailbox = envelope.to.parse().map_err(|e| BuildError::BadRecipient(format!("invalid address: {e}")))?;
    let from_address = envelope.from.parse().map_err(|e| BuildError::Other(format!("bad From address: {e}")))?;
    let name = one_line(envelope.sender_name, 80);
    let from = Mailbox::new((!name.is_empty()).then_some(name), from_address);
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(one_line(&mail.subject, 200))
        .date(UNIX_EPOCH + Duration::from_millis(envelope.at.max(0) as u64))
        .message_id(Some(format!("<{}@{}>", envelope.delivery_id, envelope.id_host)));
    if let Some(reply_to) = envelope.reply_to.filter(|a| crate::auth::valid_email(a)).and_then(|a| a.parse().ok()) {
        builder = builder.reply_to(reply_to);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
        .map_err(|e| BuildError::Other(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_filled_once_and_values_are_left_alone() {
        let words = "{{ site }}, started {{ started }} ({{ zone }})";
        let filled = super::fill(words, &[("site", "{{ zone }} & co"), ("started", "T"), ("zone", "UTC")]).unwrap();
        assert_eq!(filled, "{{ zone }} & co, started T (UTC)");
        assert_eq!(super::fill("{ {x", &[("x", "y")]).unwrap(), "{ {x");
    }

    #[test]
    fn every_widget_language_has_transcript_words() {
        for (code, _) in crate::widget_i18n::TABLES {
            let words = super::transcript_words(code);
            let en = super::transcript_words("en");
            assert_ne!(words.subject, en.subject, "{code} has no transcript words");
            assert!(words.subject.contains("{{ site }}") && words.intro.contains("{{ started }}"), "{code}");
            let filled = super::fill(&words.intro, &[("site", "S"), ("started", "T"), ("zone", "Z")]).unwrap();
            assert!(filled.contains('S') && !filled.contains("{{"), "{code}: {filled}");
        }
    }

    use super::*;

    #[test]
    fn times_are_in_the_sites_zone_across_a_clock_change() {
        let oslo = TimeZone::get("Europe/Oslo").unwrap();
        // 2026-03-29 00:30 and 01:30 UTC: one hour apart, either side of 02:00 CET.
        let before = 1_774_744_200_000;
        let after = before + 3_600_000;
        assert_eq!(local_time(before, &oslo), "Mar 29, 2026 - 01:30 CET");
        assert_eq!(local_time(after, &oslo), "Mar 29, 2026 - 03:30 CEST");
        assert_eq!(local_clock(after, &oslo), "03:30");
        assert_eq!(local_time(before, &TimeZone::UTC), "Mar 29, 2026 - 00:30 UTC");
    }

    fn hostile() -> OfflinePayload {
        OfflinePayload {
            site_name: "Shop <b>".into(),
            conversation_id: "c1".into(),
            visitor_name: Some("<script>alert(1)</script>\r\nBcc: x@evil.example".into()),
            visitor_email: Some("ada@example.com".into()),
            page_url: Some("javascript:alert(1)".into()),
            body: "<img src=x onerror=alert(1)> & more".into(),
            at: 0,
        }
    }

    #[test]
    fn html_escapes_everything_the_visitor_wrote() {
        let r = render_offline(&hostile(), "https://chat.example/console#conversation=c1", &TimeZone::UTC).unwrap();
        assert!(!r.html.contains("<script>") && r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(!r.html.contains("<img") && !r.html.contains("<b>"), "{}", r.html);
        assert!(!r.html.contains("href=\"javascript:"), "only http(s) pages become links: {}", r.html);
        assert!(r.text.contains("<img src=x onerror=alert(1)> & more"), "plain text stays as written");
        assert!(!r.subject.contains('\r') && !r.subject.contains('\n'), "{:?}", r.subject);
    }

    #[test]
    fn a_name_cannot_add_a_header() {
        let p = hostile();
        let r = render_offline(&p, "https://x.example/console", &TimeZone::UTC).unwrap();
        let envelope = Envelope {
            delivery_id: "d1",
            from: "chat@example.com",
            sender_name: "Shop\r\nBcc: y@evil.example",
            to: "admin@example.com",
            reply_to: p.visitor_email.as_deref(),
            id_host: "x.example",
            at: 1_700_000_000_000,
        };
        let raw = String::from_utf8(build(&envelope, r).unwrap().formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "{headers}");
        assert!(headers.contains("Reply-To: ada@example.com"), "{headers}");
        assert!(headers.contains("Message-ID: <d1@x.example>"), "{headers}");
        assert!(headers.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000"), "{headers}");
    }

    #[test]
    fn a_missed_chats_email_escapes_and_says_how_long() {
        let p = MissedPayload {
            site_name: "Shop".into(),
            conversation_id: "c1".into(),
            visitor_name: Some("<b>Eve</b>\r\nBcc: x@evil.example".into()),
            visitor_email: None,
            page_url: None,
            body: Some("<script>alert(1)</script>".into()),
            reason: crate::store::missed::MissedReason::Left,
            waited_ms: 75_000,
            limit_ms: 120_000,
            started_at: 0,
            at: 75_000,
        };
        let r = render_missed(&p, "https://x.example/console#conversation=c1", &TimeZone::UTC).unwrap();
        assert!(!r.html.contains("<script>") && !r.html.contains("<b>"), "{}", r.html);
        assert!(r.text.contains("left a chat on Shop after 1 min without"), "{}", r.text);
        assert!(r.text.contains("missed after 2 min"), "{}", r.text);
        assert!(
            !r.subject.contains('\n') && r.subject.starts_with("Missed chat from <b>Eve</b> Bcc:"),
            "{}",
            r.subject
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration_words(40_000), "40 s");
        assert_eq!(duration_words(120_000), "2 min");
        assert_eq!(duration_words(3_600_000), "1 h");
        assert_eq!(duration_words(3_900_000), "1 h 5 min");
    }

    #[test]
    fn an_invalid_recipient_is_permanent() {
        let r = render_offline(&hostile(), "u", &TimeZone::UTC).unwrap();
        let envelope = Envelope {
            delivery_id: "d",
            from: "a@example.com",
            sender_name: "",
            to: "not an address",
            reply_to: None,
            id_host: "h",
            at: 0,
        };
        assert!(matches!(build(&envelope, r), Err(BuildError::BadRecipient(_))));
    }
}
