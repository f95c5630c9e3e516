//! The status page's outgoing TLS, all on loopback: a throwaway CA made in
//! the test, HTTPS webhook receivers and monitor targets presenting its
//! certificates, an SMTP relay speaking STARTTLS or implicit TLS that
//! demands a login, and the real `holdfast` binary refusing bad settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use holdfast_server::config::Config;
use holdfast_server::status::{SmtpConfig, SmtpLogin, SmtpTls};
use holdfast_server::tls::ExtraRoots;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::status::{Relay, eventually, next, operator, receiver_over, send, serve_process, smtp_relay};
use crate::support::TestServer;

/// A certificate authority made for one test, as an operator's private CA.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// Which certificate a test server presents.
pub(crate) enum Cert<'a> {
    /// Valid now, for these names.
    For(&'a [&'a str]),
    /// For 127.0.0.1, but expired in 2021.
    Expired,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        TestCa { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA as an operator's extra bundle, in the server's config.
    pub(crate) fn roots(&self) -> ExtraRoots {
        ExtraRoots::from_pem(self.pem().as_bytes()).unwrap()
    }

    /// Write the CA's PEM to `dir`, as an operator's bundle file.
    pub(crate) fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("private-ca.pem");
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A TLS server side presenting a certificate this CA signed.
    pub(crate) fn acceptor(&self, cert: Cert) -> TlsAcceptor {
        let names: Vec<String> = match cert {
            Cert::For(names) => names.iter().map(|n| n.to_string()).collect(),
            Cert::Expired => vec!["127.0.0.1".into()],
        };
        let mut params = CertificateParams::new(names).unwrap();
        if let Cert::Expired = cert {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.issuer).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

const UNTRUSTED: &str = "TLS: the certificate is not signed by a trusted authority";

/// A server for these tests: built-in probes off, fast retries and checks,
/// private webhooks allowed; `tune` adds the TLS settings under test.
async fn tls_server(tune: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.status.self_probe = false;
        c.status.allow_private_webhooks = true;
        c.status.allow_private_monitors = true;
        c.outbox.retry_min = Duration::from_millis(100);
        c.status.fail_after = 1;
        c.status.monitor_tick = Duration::from_millis(20);
        c.status.min_interval = Duration::from_millis(10);
        tune(c)
    })
    .await
}

async fn subscribe_webhook(server: &TestServer, url: &str) -> String {
    let (s, sub) = server.post("/api/v2/subscribers.json", None, json!({"endpoint": url})).await;
    assert_eq!(s, 201, "{sub}");
    sub["secret"].as_str().unwrap().to_owned()
}

async fn open_incident(server: &TestServer, token: &str) {
    let (s, e) = send(
        server,
        reqwest::Method::POST,
        "/api/v1/status/incidents",
        token,
        json!({"name": "Chat is down", "components": {"Chat widget": "major_outage"}}),
    )
    .await;
    assert_eq!(s, 201, "{e}");
}

/// An admin listing (`/api/v1/status/…`).
async fn listing(server: &TestServer, token: &str, path: &str) -> Value {
    let (s, listing) = send(server, reqwest::Method::GET, path, token, Value::Null).await;
    assert_eq!(s, 200, "{listing}");
    listing
}

async fn add_monitor(server: &TestServer, token: &str, component: &str, url: &str) {
    let monitor = json!({"name": format!("{component} HTTPS"), "component": component, "url": url, "interval_ms": 50});
    let (s, m) = send(server, reqwest::Method::POST, "/api/v1/status/monitors", token, monitor).await;
    assert_eq!(s, 201, "{m}");
}

#[tokio::test]
async fn an_https_webhook_is_delivered_signed_when_its_ca_is_trusted_and_retried_with_a_reason_when_not() {
    let ca = TestCa::new("Acme private CA");
    let (addr, mut inbox, _) = receiver_over(Some(ca.acceptor(Cert::For(&["127.0.0.1"]))), 0).await;
    let url = format!("https://{addr}/hook");

    // The operator trusts the private CA: the notification arrives, signed.
    let trusting = tls_server(|c| c.status.extra_roots = ca.roots()).await;
    let token = operator(&trusting).await;
    let secret = subscribe_webhook(&trusting, &url).await;
    open_incident(&trusting, &token).await;
    let got = next(&mut inbox, "the notification over https").await;
    let ts: i64 = got.header("x-holdfast-timestamp").parse().unwrap();
    assert_eq!(got.header("x-holdfast-signature"), holdfast_server::status::notify::sign(&secret, ts, &got.body));
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["incident"]["name"], "Chat is down");
    let listed = listing(&trusting, &token, "/api/v1/status/subscribers").await["subscribers"][0].clone();
    assert_eq!(listed["delivery_error"], Value::Null, "delivered: {listed}");
    trusting.stop().await;

    // Another page that does not trust it refuses the certificate, retries,
    // and tells its admin why.
    let (addr, mut inbox, mut refused) = receiver_over(Some(ca.acceptor(Cert::For(&["127.0.0.1"]))), 0).await;
    let doubting = tls_server(|_| {}).await;
    let token = operator(&doubting).await;
    subscribe_webhook(&doubting, &format!("https://{addr}/hook")).await;
    open_incident(&doubting, &token).await;
    next(&mut refused, "the first attempt, refused").await;
    next(&mut refused, "a retry").await;
    let listed = eventually("the delivery's error", || async {
        let v = listing(&doubting, &token, "/api/v1/status/subscribers").await;
        Some(v["subscribers"][0].clone()).filter(|s| !s["delivery_error"].is_null())
    })
    .await;
    assert_eq!(listed["delivery_error"], UNTRUSTED);
    assert!(inbox.try_recv().is_err(), "nothing was delivered");
    doubting.stop().await;
}

#[tokio::test]
async fn an_https_monitor_passes_with_the_ca_and_fails_with_a_clear_reason_without_it() {
    let ca = TestCa::new("Acme private CA");
    let (good, _, _) = receiver_over(Some(ca.acceptor(Cert::For(&["127.0.0.1"]))), 0).await;
    let (other_host, _, _) = receiver_over(Some(ca.acceptor(Cert::For(&["elsewhere.example"]))), 0).await;
    let (expired, _, _) = receiver_over(Some(ca.acceptor(Cert::Expired)), 0).await;
    let targets = [
        ("Website", format!("https://{good}/health"), None),
        ("Chat widget", format!("https://{other_host}/health"), Some("TLS: the certificate is for another host name")),
        ("Agent console", format!("https://{expired}/health"), Some("TLS: the certificate has expired")),
    ];

    let trusting = tls_server(|c| c.status.extra_roots = ca.roots()).await;
    let token = operator(&trusting).await;
    for (component, url, _) in &targets {
        add_monitor(&trusting, &token, component, url).await;
    }
    for (component, _, reason) in &targets {
        let name = format!("{component} HTTPS");
        let checked = eventually("a check", || async {
            let v = listing(&trusting, &token, "/api/v1/status/monitors").await;
            v["monitors"].as_array()?.iter().find(|m| m["name"] == name && !m["last_check_at"].is_null()).cloned()
        })
        .await;
        match reason {
            None => assert_eq!((checked["failures"].as_i64(), &checked["last_error"]), (Some(0), &Value::Null)),
            Some(reason) => assert_eq!(checked["last_error"], *reason, "{checked}"),
        }
    }
    trusting.stop().await;

    // Without the CA the same healthy target fails, and the public page says
    // why in words that name no address.
    let doubting = tls_server(|_| {}).await;
    let token = operator(&doubting).await;
    add_monitor(&doubting, &token, "Website", &format!("https://{good}/health")).await;
    let incident = eventually("the incident", || async {
        let (_, v) = doubting.get("/api/v2/incidents/unresolved.json", None).await;
        v["incidents"].as_array()?.first().cloned()
    })
    .await;
    let said = incident["incident_updates"][0]["body"].as_str().unwrap();
    assert!(said.contains(UNTRUSTED), "{said}");
    assert!(!said.contains("127.0.0.1") && !said.contains(&good.port().to_string()), "no address: {said}");
    doubting.stop().await;
}

fn holdfast(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn")
}

/// `serve` with `args` must refuse to start with one line naming
/// `expected`; returns that line.
fn refused_at_start(args: &[&str], env: &[(&str, &str)], expected: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--data", tmp.path().to_str().unwrap()];
    all.extend_from_slice(args);
    let out = holdfast(&all, env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should not start");
    assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err:?}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err.into_owned()
}

#[test]
fn a_bad_extra_ca_bundle_is_refused_at_start_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let key_only = file("key.pem", &KeyPair::generate().unwrap().serialize_pem());
    let garbage = file("garbage.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let missing = tmp.path().join("missing.pem").to_str().unwrap().to_owned();
    for (path, expected) in
        [(&missing, "cannot read"), (&key_only, "no certificate in it"), (&garbage, "cannot be used as a CA")]
    {
        refused_at_start(&["--status-extra-ca", path], &[], expected);
        refused_at_start(&[], &[("HOLDFAST_STATUS_EXTRA_CA", path)], expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_system_certificates_starts_and_trusts_the_extra_ca_bundle() {
    let ca = TestCa::new("Acme private CA");
    let stranger = TestCa::new("Someone else");
    let (trusted, _, _) = receiver_over(Some(ca.acceptor(Cert::For(&["127.0.0.1"]))), 0).await;
    let (untrusted, _, _) = receiver_over(Some(stranger.acceptor(Cert::For(&["127.0.0.1"]))), 0).await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let data = data.to_str().unwrap().to_owned();
    let bundle = ca.write(tmp.path());
    // A bare container: no system CA certificates at all.
    let (no_file, no_dir) = (tmp.path().join("none.pem"), tmp.path().join("none"));
    std::fs::write(&no_file, "").unwrap();
    std::fs::create_dir(&no_dir).unwrap();

    let mut serve = Command::new(env!("CARGO_BIN_EXE_holdfast"));
    serve.args(["serve", "--listen", "127.0.0.1:0", "--data", &data, "--allow-private-monitors"]);
    serve.arg("--status-extra-ca").arg(&bundle);
    serve.env("SSL_CERT_FILE", &no_file).env("SSL_CERT_DIR", &no_dir);
    let (mut child, _) = serve_process(serve.stderr(Stdio::piped())).await;

    // The command line as an operator runs it, next to the server (blocking
    // calls kept off the runtime that serves the receivers).
    let cli = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || holdfast(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]))
    };
    for (name, addr) in [("Trusted", trusted), ("Untrusted", untrusted)] {
        let url = format!("https://{addr}/health");
        let add = ["monitor", "add", "--name", name, "--component", "Website", "--url", &url, "--data", &data];
        let add = add.into_iter().chain(["--allow-private-monitors"]).map(String::from).collect();
        let out = cli(add).await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let list = ["monitor", "list", "--json", "--data", &data].map(String::from).to_vec();
    let checked = eventually("both checks", || async {
        let monitors: Value = serde_json::from_slice(&cli(list.clone()).await.unwrap().stdout).unwrap();
        let checked: Vec<Value> =
            monitors.as_array()?.iter().filter(|m| !m["builtin"].as_bool().unwrap_or(true)).cloned().collect();
        (checked.len() == 2 && checked.iter().all(|m| !m["last_check_at"].is_null())).then_some(checked)
    })
    .await;
    let by_name = |n: &str| checked.iter().find(|m| m["name"] == n).unwrap().clone();
    assert_eq!(by_name("Trusted")["failures"], 0, "{checked:?}");
    assert_eq!(by_name("Untrusted")["last_error"], UNTRUSTED, "{checked:?}");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("no system CA certificates"), "the log says why https may fail: {err}");
}

// ---- email ----

const RELAY_USER: &str = "status-page";
const RELAY_PASSWORD: &str = "correct horse battery staple";

fn relay_login() -> Option<(String, String)> {
    Some((RELAY_USER.into(), RELAY_PASSWORD.into()))
}

/// SMTP settings for a relay on loopback `port`, logging in as the relay wants.
fn smtp_to(port: u16, tls: SmtpTls) -> SmtpConfig {
    let login = SmtpLogin { user: RELAY_USER.into(), password: RELAY_PASSWORD.into() };
    SmtpConfig { tls, login: Some(login), ..SmtpConfig::new("127.0.0.1", port, "status@holdfast.test") }
}

async fn subscribe_email(server: &TestServer) {
    let (s, sub) = server.post("/api/v2/subscribers.json", None, json!({"email": "reader@example.com"})).await;
    assert_eq!(s, 201, "{sub}");
}

#[tokio::test]
async fn mail_goes_out_over_starttls_or_implicit_tls_after_logging_in() {
    let ca = TestCa::new("Acme private CA");
    for (tls, implicit) in [(SmtpTls::StartTls, false), (SmtpTls::Implicit, true)] {
        let tls_side = Some(ca.acceptor(Cert::For(&["127.0.0.1"])));
        let (port, mut mail) = smtp_relay(Relay { tls: tls_side, implicit, login: relay_login() }).await;
        let server = tls_server(|c| {
            c.status.smtp = Some(smtp_to(port, tls));
            c.status.extra_roots = ca.roots();
        })
        .await;
        subscribe_email(&server).await;
        let got = next(&mut mail, "the confirmation mail").await;
        assert!(got.over_tls, "{tls:?}: sent over TLS");
        assert_eq!(got.user.as_deref(), Some(RELAY_USER), "{tls:?}: after logging in");
        assert!(got.text.contains("To: reader@example.com"), "{}", got.text);
        server.stop().await;
    }
}

#[tokio::test]
async fn mail_waits_with_a_reason_when_the_relay_is_not_trusted_or_offers_no_starttls() {
    let stranger = TestCa::new("Someone else");
    let untrusted =
        Relay { tls: Some(stranger.acceptor(Cert::For(&["127.0.0.1"]))), implicit: false, login: relay_login() };
    let plain = Relay { tls: None, implicit: false, login: None };
    let cases = [
        (untrusted, "SMTP: TLS: the certificate is not signed by a trusted authority"),
        (plain, "STARTTLS is not supported"),
    ];
    for (relay, reason) in cases {
        let (port, mut mail) = smtp_relay(relay).await;
        let server = tls_server(|c| c.status.smtp = Some(smtp_to(port, SmtpTls::StartTls))).await;
        let token = operator(&server).await;
        subscribe_email(&server).await;
        let listed = eventually("the delivery's error", || async {
            let v = listing(&server, &token, "/api/v1/status/subscribers").await;
            Some(v["subscribers"][0].clone()).filter(|s| !s["delivery_error"].is_null())
        })
        .await;
        let error = listed["delivery_error"].as_str().unwrap();
        assert!(error.contains(reason), "expected {reason:?} in {error:?}");
        assert!(!error.contains(RELAY_PASSWORD));
        assert!(mail.try_recv().is_err(), "nothing was sent: {reason}");
        server.stop().await;
    }
}

#[test]
fn bad_smtp_settings_are_refused_at_start_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let (empty, missing) = (empty.to_str().unwrap(), tmp.path().join("missing").to_str().unwrap().to_owned());
    let relay = ["--smtp", "127.0.0.1:587"];
    // (flags, whether HOLDFAST_SMTP_PASSWORD is set, the error)
    let cases = [
        (vec!["--smtp-tls", "sometimes"], false, "must be one of none, opportunistic, starttls or implicit"),
        (vec!["--smtp-user", "me"], false, "needs a password"),
        (vec![], true, "needs --smtp-user"),
        (vec!["--smtp-user", "me", "--smtp-tls", "none"], true, "sent unencrypted"),
        (vec!["--smtp-user", "me", "--smtp-tls", "opportunistic"], true, "sent unencrypted"),
        (vec!["--smtp-user", "me", "--smtp-password-file", &missing], false, "cannot read --smtp-password-file"),
        (vec!["--smtp-user", "me", "--smtp-password-file", empty], false, "is empty"),
        (vec!["--smtp-user", "me", "--smtp-password-file", empty], true, "not both"),
    ];
    for (args, password, expected) in cases {
        let env: &[(&str, &str)] = if password { &[("HOLDFAST_SMTP_PASSWORD", RELAY_PASSWORD)] } else { &[] };
        let err = refused_at_start(&[&relay[..], &args].concat(), env, expected);
        assert!(!err.contains(RELAY_PASSWORD), "the password is never shown: {err}");
    }
    refused_at_start(&["--smtp-user", "me"], &[], "need --smtp HOST:PORT");
}
