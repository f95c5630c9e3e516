//! Agent login, sessions and tokens.
//!
//! Login is the only place a password is hashed. It creates a session (a
//! refresh credential whose hash is stored) and returns a short-lived
//! access token. Everything after — API calls, socket connects, resumes —
//! verifies the access token in memory; refreshing it costs one indexed
//! read and no hash. Sessions end only by logout, revocation or their
//! absolute lifetime, never because infrastructure hiccupped.

pub mod api_tokens;
pub mod passwords;
pub mod ratelimit;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::{Agent, Availability, Role, Store, now_ms};
pub use passwords::HashPool;
pub use tokens::{AgentClaims, Tokens, VisitorClaims};

/// Lifetimes of credentials.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Access tokens: short, so a revoked session stops working soon even
    /// on nodes that missed the revocation.
    pub access_ttl: Duration,
    /// Absolute lifetime of a session; renewal never extends it.
    pub session_ttl: Duration,
    /// Visitor tokens.
    pub visitor_ttl: Duration,
    /// How long past its expiry an access token may still be renewed when
    /// the store cannot be asked (the sessions' `renewal_grace`); a
    /// revocation is remembered for `access_ttl` plus this.
    pub renewal_grace: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            visitor_ttl: Duration::from_secs(365 * 24 * 3600),
            renewal_grace: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Credentials {
    pub access_token: String,
    /// Only on login: the refresh credential. Keep it secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub agent: AgentProfile,
    /// Only on the API login: send it with the next login from this device
    /// (`ratelimit`: a known device is not slowed by others' guesses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

/// An agent as the API shows them (login, refresh, `me`, the agent lists):
/// the store's `Agent` without its password hash. `Agent` is not
/// `Serialize` at all, so the hash cannot reach JSON by a forgotten
/// attribute; a field added here is a field every client sees.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentProfile {
    pub id: String,
    pub site_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub chat_limit: i64,
    pub availability: Availability,
    pub active: bool,
    pub created_at: i64,
    /// Whether the site's lead emails (offline messages, missed chats)
    /// go to them.
    pub lead_emails: bool,
    /// Their photo's URL (`GET /api/v1/agents/{id}/photo`); `null`: none.
    pub photo_url: Option<String>,
}

impl From<Agent> for AgentProfile {
    fn from(agent: Agent) -> AgentProfile {
        let lead_emails = agent.gets_lead_emails();
        let photo_url = agent.photo_url();
        let Agent {
            id,
            site_id,
            email,
            name,
            role,
            password_hash: _,
            chat_limit,
            availability,
            active,
            created_at,
            lead_emails: _,
            photo_at: _,
        } = agent;
        AgentProfile {
            id,
            site_id,
            email,
            name,
            role,
            chat_limit,
            availability,
            active,
            created_at,
            lead_emails,
            photo_url,
        }
    }
}

pub struct Auth {
    store: Arc<dyn Store>,
    pub tokens: Tokens,
    pub hashes: HashPool,
    cfg: AuthConfig,
    /// Ended sessions, with when their last access token (renewed
    /// leniently at most) stops being valid anyway: access tokens are
    /// checked in memory, so a revocation must be remembered until then.
    /// Filled on this node by logout and deactivation, from other nodes by
    /// the bus, and from the store at start and every few seconds
    /// (`sync_revocations`), so neither a restart nor a missed bus message
    /// brings a revoked token back.
    revoked: std::sync::Mutex<Revoked>,
}

#[derive(Default)]
struct Revoked {
    until: std::collections::HashMap<String, i64>,
    /// When the last read of the store's revocations started.
    last_read: Option<i64>,
}

/// Revocations are read again this far behind the last read, so one
/// committed late, or stamped by a node whose clock lags, is not missed.
const REVOCATION_OVERLAP_MS: i64 = 60_000;

/// Longest accepted password, in bytes (argon2 accepts more; nobody needs it).
pub const MAX_PASSWORD: usize = 1024;

impl Auth {
    pub fn new(store: Arc<dyn Store>, secret: &[u8], hashes: HashPool, cfg: AuthConfig) -> Result<Self> {
        Ok(Auth { store, tokens: Tokens::new(secret), hashes, cfg, revoked: Default::default() })
    }

    /// Log in with a password: the API login, which the status page's
    /// login probe uses too.
    pub async fn login(&self, email: &str, password: &str) -> Result<Credentials> {
        self.login_as(email, password, true).await
    }

    /// The console's login: people only, never the status probe account.
    pub async fn console_login(&self, email: &str, password: &str) -> Result<Credentials> {
        self.login_as(email, password, false).await
    }

    async fn login_as(&self, email: &str, password: &str, probe_allowed: bool) -> Result<Credentials> {
        let started = std::time::Instant::now();
        let result = self.check_password(email, password).await.and_then(|agent| {
            if agent.role == Role::Probe && !probe_allowed {
                return Err(Error::forbidden("the status probe account cannot use the console"));
            }
            Ok(agent)
        });
        metrics::histogram!("holdfast_login_seconds").record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::Unauthorized(_)) => "denied",
            Err(_) => "error",
        };
        metrics::counter!("holdfast_logins_total", "result" => outcome).increment(1);
        let agent = result?;
        let (secret, hash) = tokens::new_refresh_secret();
        let expires_at = now_ms() + self.cfg.session_ttl.as_millis() as i64;
        let session = self.store.create_session(&agent.id, &hash, expires_at).await?;
        let access = self.issue_access(&agent, &session.id)?;
        Ok(Credentials {
            access_token: access,
            refresh_token: Some(secret),
            expires_in: self.cfg.access_ttl.as_secs(),
            agent: agent.into(),
            device_token: None,
        })
    }

    async fn check_password(&self, email: &str, password: &str) -> Result<Agent> {
        if password.len() > MAX_PASSWORD || email.len() > 254 {
            return Err(Error::unauthorized("wrong email or password"));
        }
        let agent = self.store.agent_by_email(&normalize_email(email)).await?;
        let ok = match &agent {
            Some(a) => {
                if a.role == Role::Probe {
                    // Counted apart too, so a rehearsal can tell the status
                    // page's own logins from people's.
                    metrics::counter!("holdfast_probe_password_hashes_total").increment(1);
                }
                self.hashes.verify(password, &a.password_hash).await?
            }
            // An unknown email costs one hash too, so timing does not tell
            // which emails exist (and no dummy hash is computed at start).
            None => self.hashes.hash(password).await.map(|_| false)?,
        };
        match agent {
            Some(agent) if ok && agent.active => Ok(agent),
            _ => Err(Error::unauthorized("wrong email or password")),
        }
    }

    fn issue_access(&self, agent: &Agent, session_id: &str) -> Result<String> {
        self.tokens.issue_agent(&agent.id, &agent.site_id, session_id, agent.role, self.cfg.access_ttl.as_secs())
    }

    /// A new access token for a refresh credential. No password hash.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Credentials> {
        if refresh_token.len() > 256 {
            return Err(Error::unauthorized("invalid refresh token"));
        }
        let hash = tokens::hash_secret(refresh_token);
        let session = self
            .store
            .session_by_secret_hash(&hash)
            .await?
            .ok_or_else(|| Error::unauthorized("invalid refresh token"))?;
        let now = now_ms();
        if session.revoked_at.is_some() {
            return Err(Error::unauthorized("session ended"));
        }
        if session.expires_at <= now {
            return Err(Error::unauthorized("session expired"));
        }
        let agent = self
            .store
            .agent(&session.agent_id)
            .await?
            .filter(|a| a.active)
            .ok_or_else(|| Error::unauthorized("session ended"))?;
        // Rolling renewal is bookkeeping: if the write fails the session
        // still works (infrastructure never logs anyone out).
        if let Err(err) = self.store.touch_session(&session.id, now).await {
            tracing::warn!(error = %err, "could not record session use; continuing");
        }
        Ok(Credentials {
            access_token: self.issue_access(&agent, &session.id)?,
            refresh_token: None,
            expires_in: self.cfg.access_ttl.as_secs(),
            agent: agent.into(),
            device_token: None,
        })
    }

    pub async fn logout(&self, session_id: &str) -> Result<()> {
        self.forget_session(session_id);
        self.store.revoke_session(session_id, now_ms()).await
    }

    /// Refuse the session's access tokens from now on (on this node).
    pub fn forget_session(&self, session_id: &str) {
        self.remember_revoked(&[(session_id.to_owned(), now_ms())]);
    }

    fn revocation_memory_ms(&self) -> i64 {
        (self.cfg.access_ttl + self.cfg.renewal_grace).as_millis() as i64 + 10_000
    }

    fn remember_revoked(&self, sessions: &[(String, i64)]) {
        let now = now_ms();
        let memory = self.revocation_memory_ms();
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        revoked.until.retain(|_, until| *until > now);
        for (session_id, at) in sessions {
            if at + memory > now {
                revoked.until.insert(session_id.clone(), at + memory);
            }
        }
    }

    fn is_revoked(&self, session_id: &str) -> bool {
        self.revoked.lock().unwrap_or_else(|p| p.into_inner()).until.contains_key(session_id)
    }

    /// Read the sessions revoked since the last read (at start: every one
    /// whose tokens could still be valid) and refuse their tokens. One
    /// indexed read, never per request; returns how many were read.
    pub async fn sync_revocations(&self) -> Result<usize> {
        let started = now_ms();
        let last_read = self.revoked.lock().unwrap_or_else(|p| p.into_inner()).last_read;
        let since = match last_read {
            Some(at) => at - REVOCATION_OVERLAP_MS,
            None => started - self.revocation_memory_ms(),
        };
        let sessions = self.store.sessions_revoked_since(since).await?;
        self.remember_revoked(&sessions);
        self.revoked.lock().unwrap_or_else(|p| p.into_inner()).last_read = Some(started);
        Ok(sessions.len())
    }

    pub fn verify_agent(&self, token: &str) -> Result<AgentClaims> {
        let claims = self.tokens.verify_agent(token)?;
        if self.is_revoked(&claims.sid) {
            return Err(Error::unauthorized("session ended"));
        }
        Ok(claims)
    }

    /// An expired access token may still resume or be renewed while its
    /// session is alive — asked of the store in one indexed read — or, if
    /// the store cannot answer, within `grace` of expiry: infrastructure
    /// trouble never logs an agent out.
    pub async fn verify_agent_lenient(&self, token: &str, grace: Duration) -> Result<AgentClaims> {
        match self.verify_agent(token) {
            Err(Error::TokenExpired) => {}
            other => return other,
        }
        let claims = self.tokens.verify_agent_expired(token, grace.as_secs())?;
        if self.is_revoked(&claims.sid) {
            return Err(Error::unauthorized("session ended"));
        }
        match tokio::time::timeout(Duration::from_secs(1), self.store.session(&claims.sid)).await {
            Ok(Ok(Some(s))) if s.revoked_at.is_none() && s.expires_at > now_ms() => Ok(claims),
            Ok(Ok(_)) => Err(Error::TokenExpired),
            Ok(Err(_)) | Err(_) => {
                metrics::counter!("holdfast_lenient_renewals_total").increment(1);
                tracing::warn!("store unavailable: accepting an expired token within its grace period");
                Ok(claims)
            }
        }
    }

    /// A new access token for the claims of a (possibly expired) one.
    pub fn reissue(&self, claims: &AgentClaims) -> Result<String> {
        self.tokens.issue_agent(&claims.sub, &claims.site, &claims.sid, claims.role, self.cfg.access_ttl.as_secs())
    }

    pub fn verify_visitor(&self, token: &str) -> Result<VisitorClaims> {
        self.tokens.verify_visitor(token)
    }

    pub fn issue_visitor(&self, visitor_id: &str, site_id: &str) -> Result<String> {
        self.tokens.issue_visitor(visitor_id, site_id, self.cfg.visitor_ttl.as_secs())
    }

    pub fn access_ttl(&self) -> Duration {
        self.cfg.access_ttl
    }
}

/// What counts as an email address (`holdfast-core`: the status page's
/// subscribers are checked the same way).
pub use holdfast_core::email::{normalize_email, valid_email};
