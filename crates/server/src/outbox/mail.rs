//! The emails of the outbox: templates (minijinja, HTML-escaped by
//! default: `.html` templates escape every value), and the message around
//! them (multipart text + HTML, Date, Message-ID, From, Reply-To). Values
//! that end up in headers are made one line first, so a visitor's name
//! holding CR/LF cannot add a header.

use std::sync::LazyLock;
use std::time::{Duration, UNIX_EPOCH};

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use minijinja::Environment;
use serde::{Deserialize, Serialize};

use crate::status::time;

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
    ] {
        env.add_template(name, source).expect("the built-in mail templates parse");
    }
    env
});

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

/// The subject and both parts of an offline message's email. Times are
/// shown in UTC: sites have no time zone setting yet.
pub fn render_offline(p: &OfflinePayload, console_url: &str) -> Result<Rendered, String> {
    let page_link = p.page_url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    let ctx = minijinja::context! {
        site_name => p.site_name,
        visitor_name => p.visitor_name,
        visitor_email => p.visitor_email,
        page_url => p.page_url,
        page_link => page_link,
        body => p.body,
        sent_at => time::human(p.at),
        console_url => console_url,
    };
    let render = |name: &str| {
        TEMPLATES.get_template(name).and_then(|t| t.render(&ctx)).map_err(|e| format!("template {name}: {e}"))
    };
    Ok(Rendered {
        subject: offline_subject(p),
        text: render("offline_message.txt")?,
        html: render("offline_message.html")?,
    })
}

/// "New message from NAME on SITE", on one line.
pub fn offline_subject(p: &OfflinePayload) -> String {
    let who = p.visitor_name.as_deref().map(|n| one_line(n, 80)).filter(|n| !n.is_empty());
    format!("New message from {} on {}", who.as_deref().unwrap_or("a visitor"), one_line(&p.site_name, 80))
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
    use super::*;

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
        let r = render_offline(&hostile(), "https://chat.example/console#conversation=c1").unwrap();
        assert!(!r.html.contains("<script>") && r.html.contains("&lt;script&gt;"), "{}", r.html);
        assert!(!r.html.contains("<img") && !r.html.contains("<b>"), "{}", r.html);
        assert!(!r.html.contains("href=\"javascript:"), "only http(s) pages become links: {}", r.html);
        assert!(r.text.contains("<img src=x onerror=alert(1)> & more"), "plain text stays as written");
        assert!(!r.subject.contains('\r') && !r.subject.contains('\n'), "{:?}", r.subject);
    }

    #[test]
    fn a_name_cannot_add_a_header() {
        let p = hostile();
        let r = render_offline(&p, "https://x.example/console").unwrap();
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
    fn an_invalid_recipient_is_permanent() {
        let r = render_offline(&hostile(), "u").unwrap();
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
