//! Status notifications on their way out. The status store writes each
//! one (`status_deliveries`) with the change that causes it; the server's
//! relay (`holdfast-server`'s `status::relay`) hands it to the chat outbox
//! (`outbox::status`), keyed by its id so a relay repeated after a crash
//! queues it once, and the outbox sends it with everything else Holdfast
//! sends: one retry policy, one delivery log, one place for an operator to
//! send one again. What is the status page's is here: webhooks are signed
//! with HMAC-SHA256 over `"{timestamp}.{raw body}"` (so a captured request
//! cannot be replayed later with a new timestamp) and sent by a guarded
//! client; email goes out over SMTP (STARTTLS or implicit TLS, with a
//! login, as configured).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use holdfast_core::now_ms;
use holdfast_core::tls::{self, ExtraRoots};

use super::{SmtpConfig, SmtpTls, egress};
use crate::error::{Error, Result};

/// Header with the Unix time (seconds) the webhook was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Holdfast-Timestamp";
/// Header with `sha256=` and the hex HMAC of `"{timestamp}.{body}"`.
pub const SIGNATURE_HEADER: &str = "X-Holdfast-Signature";

/// An email as queued: subject and plain text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailBody {
    pub subject: String,
    pub text: String,
}

/// The signature a receiver recomputes to check a webhook.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A receiver's URL, checked before it is stored: `https` (or `http`), no
/// credentials, and no special address written in it unless allowed (the
/// subscribe form is public). A name is judged again by its addresses at
/// every delivery (`egress`).
pub fn check_webhook_url(url: &str, allow_private: bool) -> Result<String> {
    let url = url.trim();
    if url.len() > 2048 {
        return Err(Error::bad_request("endpoint is too long (at most 2048 characters)"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| Error::bad_request(format!("endpoint is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(Error::bad_request("endpoint must be an https:// or http:// URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::bad_request("endpoint must not contain credentials"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::bad_request("endpoint has no host"));
    }
    if !allow_private && egress::check_written_url(&parsed).is_err() {
        return Err(Error::bad_request("endpoint must be a public address"));
    }
    Ok(parsed.to_string())
}

/// The client webhooks are sent with: 10 s per attempt, no redirects, and
/// only public addresses unless `allow_private` (`egress`).
pub fn webhook_client(
    allow_private: bool,
    extra_roots: &ExtraRoots,
    user_agent: &'static str,
) -> Result<reqwest::Client, String> {
    let builder = || {
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(user_agent);
        if allow_private { builder } else { egress::guard(builder) }
    };
    tls::http_client(builder, extra_roots).map_err(|e| e.to_string())
}

/// The SMTP transport `smtp` describes, trusting the system's roots and
/// `extra` for TLS. Fails only on settings TLS cannot work with (the CLI
/// calls it at start, so they are refused there).
pub fn mailer(smtp: &SmtpConfig, extra: &ExtraRoots) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let parameters = || {
        let mut builder = TlsParameters::builder(smtp.host.clone());
        for der in extra.der() {
            builder = builder.add_root_certificate(Certificate::from_der(der.to_vec()).map_err(|e| e.to_string())?);
        }
        builder.build_rustls().map_err(|e| format!("TLS to {}: {e}", smtp.host))
    };
    let tls = match smtp.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Opportunistic => Tls::Opportunistic(parameters()?),
        SmtpTls::StartTls => Tls::Required(parameters()?),
        SmtpTls::Implicit => Tls::Wrapper(parameters()?),
    };
    // "dangerous" is lettre's name for a builder without TLS preset: `tls` is set here.
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(10)))
        .tls(tls);
    if let Some(login) = &smtp.login {
        transport = transport.credentials(Credentials::new(login.user.clone(), login.password.clone()));
    }
    Ok(transport.build())
}

/// POST a notification to a webhook subscriber, signed with its secret,
/// with its unsubscribe link in the body's `meta`.
pub async fn post_signed(
    http: &reqwest::Client,
    endpoint: &str,
    secret: &str,
    payload: &str,
    unsubscribe: &str,
    allow_private: bool,
) -> Result<(), String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("bad endpoint: {e}"))?;
    // An address literal skips the guarded client's resolver: check it here
    // (a subscriber stored before this check existed is refused too).
    if !allow_private && let Err(why) = egress::check_url(&url) {
        return Err(format!("connect failed: {why}"));
    }
    let mut body: serde_json::Value = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    if let Some(meta) = body.get_mut("meta") {
        meta["unsubscribe"] = serde_json::Value::String(unsubscribe.to_owned());
    }
    let body = body.to_string();
    let timestamp = now_ms() / 1000;
    let res = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, sign(secret, timestamp, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| tls::request_failure(&e))?;
    if res.status().is_success() { Ok(()) } else { Err(format!("receiver answered {}", res.status())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let a = sign("k", 1, "{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, sign("k", 2, "{}"));
        assert_ne!(a, sign("k", 1, "{ }"));
        assert_ne!(a, sign("other", 1, "{}"));
    }

    #[test]
    fn webhook_urls_are_checked() {
        assert!(check_webhook_url("http://hooks.example.com/x", false).is_ok());
        assert!(check_webhook_url("https://hooks.example.com/x", false).is_ok());
        for bad in [
            "ftp://x.example",
            "not a url",
            "http://user:pw@x.example/",
            "http://127.0.0.1/",
            "http://localhost:8080/",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://169.254.169.254/latest",
            "https://127.0.0.1/",
            "http://[::ffff:127.0.0.1]:8080/x",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
            "http://100.64.0.1/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::10.0.0.1]/",
            "http://[2002:7f00:1::1]/",
            "http://0x7f000001/",
        ] {
            assert!(check_webhook_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_webhook_url("http://127.0.0.1:9/", true).is_ok());
    }
}
