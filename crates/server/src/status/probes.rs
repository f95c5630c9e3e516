//! Holdfast's built-in probes of itself, each doing what a real client does
//! through the real interface:
//!
//! - readiness: `GET /readyz` (a plain HTTP monitor);
//! - visitor: a visitor session, the visitor socket, `hello` → `welcome`;
//! - agent login: a password login with the probe account (or a refresh of
//!   its session), the agent socket, `hello` → `welcome`, within a time limit;
//! - store: a small write and read of the chat store, within a time limit.
//!
//! The login probe's account is an agent with the `probe` role, made by
//! [`install_builtin`] with a generated password kept in the chat store and
//! never shown. It is never listed, never routed to, never present, and its
//! token opens nothing but its own welcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use super::monitor::BuiltinProbes;
use super::{Status, StatusConfig};
use crate::admin::WidgetSettings;
use crate::auth::passwords;
use crate::error::{Error, Result};
use crate::store::{NewAgent, Role, Site, Store};

/// The built-in probe of the chat node's readiness, and the component it
/// speaks for.
pub const READINESS_PROBE: &str = "Holdfast readiness";
pub const READINESS_COMPONENT: &str = "Agent console";
/// The built-in probe that does what a visitor's widget does: get a visitor
/// session, open the visitor socket, say hello and wait for `welcome`.
pub const VISITOR_PROBE: &str = "Holdfast visitor socket";
pub const VISITOR_COMPONENT: &str = "Chat widget";
/// The built-in probe that does what an agent does: log in, open the agent
/// socket, say hello and wait for `welcome`.
pub const LOGIN_PROBE: &str = "Holdfast agent login";
pub const LOGIN_COMPONENT: &str = "Agent login";
/// The built-in probe that times a write and a read of the chat store, which
/// every message is written to before anyone hears of it.
pub const STORE_PROBE: &str = "Holdfast store latency";
pub const STORE_COMPONENT: &str = "Message delivery";

/// Targets of the visitor probe: `visitor+http://host:port/?widget_key=…`.
const VISITOR_SCHEME: &str = "visitor+";
/// Targets of the login probe: `agent+http://host:port/` (the account is
/// read from the store, never written in a target).
const LOGIN_SCHEME: &str = "agent+";
/// The target of the store probe.
const STORE_TARGET: &str = "store://chat";

/// Where the login probe's account lives in the chat store's `meta`.
pub const PROBE_ACCOUNT_KEY: &str = "status_probe_account";
/// Prefix of the `meta` row the store probe rewrites (one per status page).
const STORE_PROBE_KEY: &str = "status_store_probe";

/// The login probe's credentials, as kept in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeAccount {
    pub email: String,
    pub password: String,
}

/// Make sure the login probe's account exists, in `site`: the first start
/// generates it (a random address under the reserved `.invalid` domain, so
/// nobody can guess it and lock it out by failed logins, and a 192-bit
/// password); later starts and other nodes of a cluster find it in the store.
pub async fn ensure_probe_account(store: &dyn Store, site: &Site) -> Result<ProbeAccount> {
    let fresh = ProbeAccount {
        email: format!("status-probe-{}@holdfast.invalid", hex::encode(rand::random::<[u8; 8]>())),
        password: hex::encode(rand::random::<[u8; 24]>()),
    };
    let stored = store.meta_init(PROBE_ACCOUNT_KEY, &serde_json::to_string(&fresh).map_err(Error::internal)?).await?;
    let account: ProbeAccount = serde_json::from_str(&stored)
        .map_err(|e| Error::Store(anyhow::anyhow!("unreadable {PROBE_ACCOUNT_KEY} in the store: {e}")))?;
    if store.agent_by_email(&account.email).await?.is_none() {
        let password = account.password.clone();
        let hash =
            tokio::task::spawn_blocking(move || passwords::hash_now(&password)).await.map_err(Error::internal)??;
        let made = store
            .create_agent(NewAgent {
                site_id: &site.id,
                email: &account.email,
                name: "Status probe",
                role: Role::Probe,
                password_hash: &hash,
                chat_limit: 1,
            })
            .await;
        match made {
            // Conflict: another node of the cluster made it meanwhile.
            Ok(_) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(account)
}

/// Make sure the built-in probes exist and point at `probe_base`. The
/// visitor and login probes need a site (its widget key; the probe account
/// lives there); each probe is off when its component does not exist.
pub async fn install_builtin(status: &Status, store: &dyn Store, probe_base: &str, site: Option<&Site>) -> Result<()> {
    if !status.config.self_probe {
        return Ok(());
    }
    let base = probe_base.trim_end_matches('/');
    let mut probes = vec![
        (READINESS_PROBE, READINESS_COMPONENT, format!("{base}/readyz")),
        (STORE_PROBE, STORE_COMPONENT, STORE_TARGET.to_owned()),
    ];
    if let Some(site) = site {
        let key: String = site.widget_key.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        probes.push((VISITOR_PROBE, VISITOR_COMPONENT, format!("{VISITOR_SCHEME}{base}/?widget_key={key}")));
        match ensure_probe_account(store, site).await {
            Ok(_) => probes.push((LOGIN_PROBE, LOGIN_COMPONENT, format!("{LOGIN_SCHEME}{base}/"))),
            Err(e) => tracing::warn!(error = ?e, "cannot make the login probe's account: the login probe is off"),
        }
    }
    for (name, component, target) in probes {
        let Ok(component) = status.find_component(component).await else {
            tracing::info!("no {component:?} component: the {name:?} probe is off");
            continue;
        };
        let interval = status.config.self_probe_interval.as_millis() as i64;
        status.store.create_monitor(name, &component.id, &target, interval, true).await?;
    }
    Ok(())
}

/// Whether a monitor target is one of the built-in probes that go through
/// chat (operators cannot make these: `monitor::check_target` accepts
/// `http[s]://` and `tcp://` only).
pub fn is_builtin(target: &str) -> bool {
    target.starts_with(VISITOR_SCHEME) || target.starts_with(LOGIN_SCHEME) || target == STORE_TARGET
}

/// What the built-in probes keep between checks.
pub struct Probes {
    http: reqwest::Client,
    /// The chat store: the login probe reads its account here, and the
    /// store probe times it.
    store: Arc<dyn Store>,
    /// The store probe's own `meta` row (per status page, so nodes of a
    /// cluster do not overwrite each other's).
    store_key: String,
    config: StatusConfig,
    /// Visitor tokens by target, so the visitor probe reuses one visitor
    /// instead of making a new one every time.
    visitor_tokens: Mutex<HashMap<String, String>>,
    /// The login probe's session by target.
    logins: Mutex<HashMap<String, LoginProbe>>,
    /// The probe account as last read from the store: when the store cannot
    /// be read, the probe still tries to log in, as an agent who knows
    /// their password would, so it sees what they see.
    account: Mutex<Option<ProbeAccount>>,
}

impl Probes {
    pub fn new(http: reqwest::Client, store: Arc<dyn Store>, status: &Status) -> Probes {
        Probes {
            http,
            store,
            store_key: format!("{STORE_PROBE_KEY}:{}", status.page_id),
            config: status.config.clone(),
            visitor_tokens: Mutex::default(),
            logins: Mutex::default(),
            account: Mutex::default(),
        }
    }

    /// One check of a built-in probe (see [`is_builtin`]); `Err` says why it
    /// failed, in words fit for the public status page.
    pub async fn check(&self, target: &str, timeout: Duration) -> Result<(), String> {
        let checked = async {
            if let Some(url) = target.strip_prefix(VISITOR_SCHEME) {
                self.visitor_round_trip(url).await
            } else if let Some(url) = target.strip_prefix(LOGIN_SCHEME) {
                let mut logins = self.logins.lock().await;
                let state = logins.entry(target.to_owned()).or_default();
                self.login_round_trip(url, state).await
            } else if target == STORE_TARGET {
                self.store_round_trip().await
            } else {
                Err(format!("unknown built-in probe {target:?}"))
            }
        };
        match tokio::time::timeout(timeout, checked).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// A visitor's round trip over the network: session, socket, hello, welcome.
    async fn visitor_round_trip(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
        let key =
            parsed.query_pairs().find(|(k, _)| k == "widget_key").map(|(_, v)| v.into_owned()).unwrap_or_default();
        let base = origin(&parsed);
        let kept = self.visitor_tokens.lock().await.get(url).cloned();
        let body = serde_json::json!({"widget_key": key, "visitor_token": kept, "page_url": "holdfast:probe"});
        let origin = self.page_origin(&key).await?;
        let (mut status, mut session) = self
            .post_json(&base, "/api/v1/visitor/session", body.clone(), origin.as_deref(), "visitor session")
            .await?;
        // An admin who limits the origins between the read and the request
        // refuses the origin just read: asked again with the new list, the
        // session is a visitor's on the site's own page, as a real one is.
        if status == reqwest::StatusCode::FORBIDDEN {
            let now = self.page_origin(&key).await?;
            if now != origin {
                (status, session) =
                    self.post_json(&base, "/api/v1/visitor/session", body, now.as_deref(), "visitor session").await?;
            }
        }
        if !status.is_success() {
            return Err(format!("visitor session answered {status}"));
        }
        let token = session["visitor_token"].as_str().ok_or("visitor session without a token")?.to_owned();
        self.visitor_tokens.lock().await.insert(url.to_owned(), token.clone());
        socket_welcome(&base, "/api/v1/visitor/socket", &token, "visitor").await.map(|_| ())
    }

    /// An agent's round trip over the network: a password login (or a
    /// refresh of the probe's session, see [`LoginProbe::next_step`]), then
    /// the agent socket's `welcome`, all within `login_probe_slow`.
    async fn login_round_trip(&self, url: &str, state: &mut LoginProbe) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
        let base = origin(&parsed);
        let checked = self.log_in_and_connect(&base, state).await;
        // Sessions that password logins replaced end now, after a failed
        // check too, so the probe keeps one live session rather than one
        // per login. Not timed; one that cannot be ended is tried again.
        let mut retired = std::mem::take(&mut state.retired);
        for session in retired.drain(..) {
            let ended = self.http.post(format!("{base}/api/v1/auth/logout")).bearer_auth(&session.access).send().await;
            if ended.is_err() {
                state.retired.push(session);
            }
        }
        checked
    }

    async fn log_in_and_connect(&self, base: &str, state: &mut LoginProbe) -> Result<(), String> {
        let started = Instant::now();
        let step = state.next_step(self.config.login_probe_every);
        // Failed until this check passes: a timeout drops this future midway.
        state.failed = true;
        let refreshed = match (step, &state.session) {
            (LoginStep::Refresh, Some(session)) => self.refresh(base, session).await?,
            _ => None,
        };
        let access = match refreshed {
            Some(access) => state.refreshed(access),
            // Time for a password login, or the session was refused.
            None => state.logged_in(self.password_login(base).await?),
        };
        let welcome = socket_welcome(base, "/api/v1/agent/socket", &access, "agent").await?;
        if welcome["role"] != "probe" {
            return Err(format!("the agent socket welcomed a {} instead of the probe", welcome["role"]));
        }
        let took = started.elapsed();
        let limit = self.config.login_probe_slow;
        if took > limit {
            return Err(format!("login took {} ms (the limit is {} ms)", took.as_millis(), limit.as_millis()));
        }
        state.failed = false;
        Ok(())
    }

    /// The probe account, read from the store on every password login (so
    /// every node uses the current one).
    async fn account(&self) -> Result<ProbeAccount, String> {
        let mut kept = self.account.lock().await;
        match self.store.meta_get(PROBE_ACCOUNT_KEY).await {
            Ok(stored) => {
                let account: ProbeAccount = stored
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .ok_or("the probe account is missing from the store")?;
                *kept = Some(account.clone());
                Ok(account)
            }
            Err(e) => {
                tracing::warn!(error = ?e, "login probe: cannot read its account; using the one read before");
                kept.clone().ok_or_else(|| format!("cannot read the probe account: {e}"))
            }
        }
    }

    /// `POST /api/v1/auth/login` with the probe account.
    async fn password_login(&self, base: &str) -> Result<ProbeSession, String> {
        let account = self.account().await?;
        let credentials = serde_json::json!({"email": account.email, "password": account.password});
        let (status, body) = self.post_json(base, "/api/v1/auth/login", credentials, None, "login").await?;
        if !status.is_success() {
            return Err(format!("login answered {status}"));
        }
        match (body["access_token"].as_str(), body["refresh_token"].as_str()) {
            (Some(access), Some(refresh)) => Ok(ProbeSession { access: access.into(), refresh: refresh.into() }),
            _ => Err("login answered without tokens".into()),
        }
    }

    /// `POST /api/v1/auth/refresh`: a new access token, or `None` when the
    /// session was refused (then only a password login will do).
    async fn refresh(&self, base: &str, session: &ProbeSession) -> Result<Option<String>, String> {
        let tokens = serde_json::json!({"refresh_token": session.refresh, "access_token": session.access});
        let (status, body) = self.post_json(base, "/api/v1/auth/refresh", tokens, None, "refresh").await?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("refresh answered {status}"));
        }
        if body["degraded"] == true {
            // Agents already in keep working (lenient renewal), but nobody
            // can log in while the store does not answer.
            return Err("the store did not answer: the session was renewed only from its own token".into());
        }
        body["access_token"].as_str().map(|a| Some(a.to_owned())).ok_or_else(|| "refresh without a token".into())
    }

    /// `POST` JSON to `base` + `path`: the status, and the JSON answer of a
    /// success (`null` otherwise).
    /// The origin a visitor's page would send: one of the site's allowed
    /// origins when it has a list (a visitor on the site's own pages gets
    /// in, and so must the probe, or limiting the origins would report an
    /// outage while chat works), none otherwise.
    async fn page_origin(&self, widget_key: &str) -> Result<Option<String>, String> {
        let site = self.store.site_by_widget_key(widget_key).await.map_err(|e| format!("cannot read the site: {e}"))?;
        Ok(site.and_then(|site| WidgetSettings::from_stored(&site.settings).allowed_origins.into_iter().next()))
    }

    async fn post_json(
        &self,
        base: &str,
        path: &str,
        body: serde_json::Value,
        origin: Option<&str>,
        what: &str,
    ) -> Result<(reqwest::StatusCode, serde_json::Value), String> {
        let mut request = self.http.post(format!("{base}{path}")).json(&body);
        if let Some(origin) = origin {
            request = request.header(reqwest::header::ORIGIN, origin);
        }
        let res = request.send().await.map_err(|e| format!("{what} failed: {}", e.without_url()))?;
        let status = res.status();
        if !status.is_success() {
            return Ok((status, serde_json::Value::Null));
        }
        let answer = res.json().await.map_err(|e| format!("{what}: {}", e.without_url()))?;
        Ok((status, answer))
    }

    /// Rewrite this page's row in the chat store's `meta` and read it back,
    /// within `store_probe_slow`.
    async fn store_round_trip(&self) -> Result<(), String> {
        let started = Instant::now();
        let stamp = crate::store::new_id();
        let failed = |what: &str, e: Error| {
            tracing::warn!(error = ?e, "store probe: the {what} failed");
            format!("the store {what} failed: {e}")
        };
        self.store.meta_set(&self.store_key, &stamp).await.map_err(|e| failed("write", e))?;
        let read = self.store.meta_get(&self.store_key).await.map_err(|e| failed("read", e))?;
        if read.as_deref() != Some(stamp.as_str()) {
            return Err("the store did not read back what was just written".into());
        }
        let took = started.elapsed();
        let limit = self.config.store_probe_slow;
        if took > limit {
            return Err(format!(
                "a write and a read took {} ms (the limit is {} ms)",
                took.as_millis(),
                limit.as_millis()
            ));
        }
        Ok(())
    }
}

/// How the status page's monitor loop (`holdfast-status`, which knows no
/// chat) runs these probes.
impl BuiltinProbes for Probes {
    fn is_builtin(&self, target: &str) -> bool {
        is_builtin(target)
    }

    async fn check(&self, target: &str, timeout: Duration) -> Result<(), String> {
        Probes::check(self, target, timeout).await
    }
}

/// The login probe's session: the refresh credential of its last password
/// login and its newest access token.
struct ProbeSession {
    access: String,
    refresh: String,
}

/// What the login probe remembers between checks.
#[derive(Default)]
struct LoginProbe {
    session: Option<ProbeSession>,
    /// Sessions replaced by a password login, still to be logged out.
    retired: Vec<ProbeSession>,
    /// Checks since the last password login.
    since_login: u32,
    /// The last check failed.
    failed: bool,
}

/// Sessions kept for logging out while the server cannot be reached.
const MAX_RETIRED: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginStep {
    /// A password login: the argon2 hash, a new session.
    Password,
    /// A refresh of the session: one indexed read, no hash.
    Refresh,
}

impl LoginProbe {
    /// A password login succeeded: its session replaces the one before,
    /// which is to be logged out. Returns the new access token.
    fn logged_in(&mut self, session: ProbeSession) -> String {
        self.since_login = 0;
        let access = session.access.clone();
        if let Some(old) = self.session.replace(session) {
            if self.retired.len() >= MAX_RETIRED {
                self.retired.remove(0);
            }
            self.retired.push(old);
        }
        access
    }

    /// The session was refreshed; returns the new access token.
    fn refreshed(&mut self, access: String) -> String {
        self.since_login += 1;
        if let Some(session) = self.session.as_mut() {
            session.access = access.clone();
        }
        access
    }

    /// A password login on the first check, then on every `every`th check
    /// (password login is what broke in May 2018, so it must be tried
    /// regularly; the checks between only refresh, sparing a hash), and on
    /// every check after a failed one, so an outage is confirmed at once
    /// and recovery means a password login worked again.
    fn next_step(&self, every: u32) -> LoginStep {
        if self.session.is_none() || self.failed || self.since_login + 1 >= every.max(1) {
            LoginStep::Password
        } else {
            LoginStep::Refresh
        }
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &reqwest::Url) -> String {
    let base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    match url.port() {
        Some(p) => format!("{base}:{p}"),
        None => base,
    }
}

/// Open a socket at `base` + `path`, say hello with `token` and return the
/// `welcome` (anything else is a failure).
async fn socket_welcome(base: &str, path: &str, token: &str, who: &str) -> Result<serde_json::Value, String> {
    let ws_url = format!("ws{}{path}", base.strip_prefix("http").unwrap_or(base));
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_url).await.map_err(|e| format!("{who} socket failed: {e}"))?;
    let hello = serde_json::json!({"type": "hello", "v": 1, "token": token, "cursors": {}});
    ws.send(Message::Text(hello.to_string().into())).await.map_err(|e| format!("{who} socket: {e}"))?;
    let answer = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break t,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("{who} socket: {e}")),
            None => return Err(format!("{who} socket closed before welcome")),
        }
    };
    let _ = ws.close(None).await;
    let frame: serde_json::Value = serde_json::from_str(&answer).map_err(|e| format!("{who} socket: {e}"))?;
    if frame["type"] == "welcome" { Ok(frame) } else { Err(format!("{who} socket answered {}", frame["type"])) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> ProbeSession {
        ProbeSession { access: "a".into(), refresh: "r".into() }
    }

    /// Play `checks` checks (true = passed) and return the step each took.
    fn play(every: u32, checks: &[bool]) -> Vec<LoginStep> {
        let mut probe = LoginProbe::default();
        checks
            .iter()
            .map(|passed| {
                let step = probe.next_step(every);
                match step {
                    LoginStep::Password => drop(probe.logged_in(session())),
                    LoginStep::Refresh => drop(probe.refreshed("a2".into())),
                }
                probe.failed = !passed;
                step
            })
            .collect()
    }

    #[test]
    fn a_password_login_comes_first_and_then_every_nth_check() {
        use LoginStep::{Password as P, Refresh as R};
        assert_eq!(play(5, &[true; 11]), [P, R, R, R, R, P, R, R, R, R, P]);
        assert_eq!(play(2, &[true; 4]), [P, R, P, R]);
    }

    #[test]
    fn every_check_logs_in_with_the_password_while_checks_fail() {
        use LoginStep::{Password as P, Refresh as R};
        // A failed refresh: the next checks log in until one passes, and the
        // count towards the next password login starts again from there.
        let steps = play(5, &[true, true, false, false, true, true, true, true, true, true]);
        assert_eq!(steps, [P, R, R, P, P, R, R, R, R, P]);
    }

    #[test]
    fn every_one_or_zero_means_a_password_login_every_time() {
        assert!(play(1, &[true; 3]).iter().all(|s| *s == LoginStep::Password));
        assert!(play(0, &[true; 3]).iter().all(|s| *s == LoginStep::Password));
    }

    #[test]
    fn a_password_login_retires_the_session_it_replaces_for_logout() {
        let mut probe = LoginProbe::default();
        assert_eq!(probe.logged_in(session()), "a");
        assert!(probe.retired.is_empty());
        probe.refreshed("a2".into());
        assert_eq!(probe.logged_in(ProbeSession { access: "b".into(), refresh: "r2".into() }), "b");
        let old: Vec<_> = probe.retired.iter().map(|s| (s.access.as_str(), s.refresh.as_str())).collect();
        assert_eq!(old, [("a2", "r")], "with its newest access token");
        assert_eq!(probe.since_login, 0);
        // While logouts cannot reach the server, the oldest are let go.
        for _ in 0..2 * MAX_RETIRED {
            probe.logged_in(session());
        }
        assert_eq!(probe.retired.len(), MAX_RETIRED);
    }

    #[test]
    fn only_the_built_in_schemes_are_built_in() {
        assert!(is_builtin("visitor+http://127.0.0.1:1/?widget_key=k"));
        assert!(is_builtin("agent+http://127.0.0.1:1/"));
        assert!(is_builtin("store://chat"));
        assert!(!is_builtin("http://127.0.0.1:1/readyz"));
        assert!(!is_builtin("tcp://127.0.0.1:1"));
        assert!(!is_builtin("store://elsewhere"));
    }
}
