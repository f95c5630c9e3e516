//! API tokens: an integration's credential for the REST API (issue 19).
//!
//! An admin makes one for their site with a name and scopes — `read`
//! (GET), `write` (every other method), `admin` (`/api/v1/admin/…`, any
//! method) — and sees it once: `hf_` and 43 characters of base64url (256
//! random bits). Only its SHA-256 is stored, with its first characters to
//! tell tokens apart. A token acts for the admin who made it, with no more
//! than its scopes: the role `admin` with the `admin` scope, `agent`
//! without; it stops working when revoked (every request reads its row,
//! so at once and on every node) or when its maker is no longer an active
//! admin. It is a `Bearer` of the REST API only: sockets, login, refresh,
//! the console and an agent's own settings (`/api/v1/me…`) verify signed
//! session tokens, which an API token is not. Requests are rate-limited
//! per token (GCRA, this node's count); its last use is written at most
//! once a minute.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

use super::tokens::hash_secret;
use crate::chat::service::{AgentCtx, TokenRef};
use crate::error::{Error, Result};
use crate::store::api_tokens::ApiToken;
use crate::store::{Role, Store, new_id, now_ms};

/// What every API token starts with: what tells it from a session token.
pub const PREFIX: &str = "hf_";

/// How much of a token is kept to tell it apart (`hf_` and 4 characters).
const SHOWN: usize = PREFIX.len() + 4;

/// `last_used_at` is written when the stored one is older than this.
const TOUCH_EVERY_MS: i64 = 60_000;

/// What a request needs of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Reading: GET and HEAD outside the admin API.
    Read,
    /// Changing: any other method outside the admin API.
    Write,
    /// The admin API (`/api/v1/admin/…`), any method.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        [Scope::Read, Scope::Write, Scope::Admin].into_iter().find(|scope| scope.as_str() == s)
    }
}

/// An admin's request for a token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<String>,
}

/// Whether a bearer credential is an API token (and not a session's).
pub fn is_api_token(bearer: &str) -> bool {
    bearer.starts_with(PREFIX)
}

pub struct ApiTokens {
    store: Arc<dyn Store>,
    /// Requests per token on this node; `None`: unlimited (0 configured).
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl ApiTokens {
    /// `per_minute` requests per token (a burst of that many, refilled
    /// evenly); 0 turns the limit off.
    pub fn new(store: Arc<dyn Store>, per_minute: u32) -> ApiTokens {
        let limiter = NonZeroU32::new(per_minute).and_then(|n| {
            let quota = Quota::with_period(Duration::from_secs(60) / n.get())?.allow_burst(n);
            Some(DefaultKeyedRateLimiter::keyed(quota))
        });
        ApiTokens { store, limiter }
    }

    /// A new token for the admin's site: the record and the secret, which
    /// is shown this once. People make tokens; a token cannot.
    pub async fn create(&self, admin: &AgentCtx, req: NewToken) -> Result<(ApiToken, String)> {
        check_person_admin(admin)?;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::bad_request("name must be 1 to 100 characters"));
        }
        let mut scopes = Vec::new();
        for s in &req.scopes {
            let scope = Scope::parse(s)
                .ok_or_else(|| Error::bad_request(format!("unknown scope {s:?}: use read, write or admin")))?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err(Error::bad_request("give the token at least one scope: read, write or admin"));
        }
        let bytes: [u8; 32] = rand::random();
        use base64::Engine as _;
        let secret = format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        let token = ApiToken {
            id: new_id(),
            site_id: admin.site_id.clone(),
            name: name.to_owned(),
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            prefix: secret[..SHOWN].to_owned(),
            created_by: admin.agent_id.clone(),
            created_at: now_ms(),
            last_used_at: None,
            revoked_at: None,
        };
        self.store.create_api_token(token.clone(), hash_secret(&secret)).await?;
        Ok((token, secret))
    }

    /// The site's tokens, revoked ones too, newest first.
    pub async fn list(&self, admin: &AgentCtx) -> Result<Vec<ApiToken>> {
        check_person_admin(admin)?;
        self.store.api_tokens(&admin.site_id).await
    }

    /// Revoke a token of the admin's site: refused from the next request on.
    pub async fn revoke(&self, admin: &AgentCtx, id: &str) -> Result<ApiToken> {
        check_person_admin(admin)?;
        self.store.revoke_api_token(&admin.site_id, id, now_ms()).await?.ok_or(Error::NotFound("API token"))
    }

    /// Who a request with this token acts as, if the token may do what
    /// the request `needs`. Unknown and revoked tokens are one `401`; a
    /// missing scope is a `403` naming it; over the rate a `429`.
    pub async fn authenticate(&self, secret: &str, needs: Scope) -> Result<AgentCtx> {
        let token = self.store.api_token_by_hash(&hash_secret(secret)).await?;
        let Some(token) = token.filter(|t| t.revoked_at.is_none()) else {
            return Err(Error::unauthorized("unknown or revoked API token"));
        };
        if let Some(limiter) = &self.limiter
            && let Err(not_until) = limiter.check_key(&token.id)
        {
            metrics::counter!("holdfast_api_token_rate_limited_total").increment(1);
            let wait = not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1);
            return Err(Error::RateLimited(wait));
        }
        if !token.scopes.iter().any(|s| s == needs.as_str()) {
            return Err(Error::forbidden(format!("this API token lacks the {} scope", needs.as_str())));
        }
        let maker = self.store.agent(&token.created_by).await?;
        if !maker.is_some_and(|m| m.active && m.role.is_admin() && m.site_id == token.site_id) {
            return Err(Error::unauthorized("this API token's maker is no longer an admin of the site"));
        }
        let now = now_ms();
        if now - token.last_used_at.unwrap_or(0) >= TOUCH_EVERY_MS {
            // Off the request's path: a slow store delays no answer, and
            // a lost write costs only the minute's "last used".
            let (store, id) = (self.store.clone(), token.id.clone());
            tokio::spawn(async move {
                if let Err(err) = store.touch_api_token(&id, now).await {
                    tracing::warn!(error = ?err, "cannot record an API token's last use");
                }
            });
        }
        let admin = token.scopes.iter().any(|s| s == Scope::Admin.as_str());
        Ok(AgentCtx {
            agent_id: token.created_by,
            site_id: token.site_id,
            session_id: String::new(),
            role: if admin { Role::Admin } else { Role::Agent },
            api_token: Some(TokenRef { id: token.id, name: token.name }),
        })
    }

    /// Drop limiter keys back at full quota (bounded memory).
    pub fn prune(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

/// Tokens are managed by an admin signed in as a person, never by a token.
fn check_person_admin(admin: &AgentCtx) -> Result<()> {
    if !admin.role.is_admin() {
        return Err(Error::forbidden("admins only"));
    }
    if admin.api_token.is_some() {
        return Err(Error::forbidden("API tokens are managed by a signed-in admin, not by a token"));
    }
    Ok(())
}
