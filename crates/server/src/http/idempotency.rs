//! The `Idempotency-Key` header, honoured on every POST made with a
//! credential (an agent's session, an API token, a visitor's token), in
//! one layer rather than in each handler. The first request under a key
//! claims it in the store (`store::idempotency`) and runs; its answer,
//! if a success, is kept for 24 hours and given again, byte for byte, to
//! every retry with the same key, principal and request (method, path,
//! query, body), with `Idempotent-Replayed: true`. The same key with
//! another request is a `409`. A retry arriving while the first still
//! runs waits for its answer (up to `WAIT`), so two copies sent at once
//! create one thing. A failed request keeps nothing: a retry runs again.
//!
//! An answer that shows a secret once (a new API token, a webhook
//! endpoint's secret: the handler marks it `ShownOnce`) is not kept: a
//! retry under its key gets a `409` saying so, and creates nothing.
//!
//! Left out: requests without a credential (login, a visitor's session),
//! a session's own (`/api/v1/auth/`, `/api/v1/console/`, `/api/v1/me/`),
//! uploads, whose bodies stream to disk unbuffered, and the status page's
//! admin API (`/api/v1/status/`, routed apart from chat).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::extract::{AgentAuth, Authenticated};
use crate::app::AppState;
use crate::auth::api_tokens;
use crate::error::{Error, Result};
use crate::store::idempotency::{Claimed, KeyClaim, KeyRecord, KeyScope, REMEMBERED_FOR_MS, StoredAnswer};
use crate::store::now_ms;

pub(super) const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted (a UUID is 36).
pub(super) const MAX_KEY: usize = 255;
/// A claim whose request has not answered for this long died with its
/// node: a retry takes the key over.
const LAPSES_AFTER_MS: i64 = 60_000;
/// How long a retry waits for the first request under its key.
const WAIT: Duration = Duration::from_secs(10);
/// Largest answer kept (a creation's answer is a few hundred bytes); a
/// larger one is given once and not kept.
const MAX_ANSWER: usize = 256 * 1024;

/// Marks an answer that holds a secret shown once: never kept.
#[derive(Clone, Copy)]
pub(super) struct ShownOnce;

/// Paths whose POSTs never take a key. The status page's admin API
/// (`/api/v1/status/`) is outside this layer: its writes stay off the chat
/// store, so a chat store in trouble never holds up an incident.
pub(super) fn exempt(path: &str) -> bool {
    ["/api/v1/auth/", "/api/v1/console/", "/api/v1/me/", "/api/v1/status/"].iter().any(|p| path.starts_with(p))
        || path == "/api/v1/attachments"
        || path == "/api/v1/visitor/attachments"
}

/// The layer (`http::router`).
pub(super) async fn honour(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(HEADER) || exempt(req.uri().path()) {
        return next.run(req).await;
    }
    match keyed(&state, req, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn keyed(state: &AppState, req: Request, next: Next) -> Result<Response, Response> {
    let key = read_key(req.headers().get(HEADER)).map_err(IntoResponse::into_response)?;
    let (mut parts, body) = req.into_parts();
    let Some((site_id, principal)) = principal(&mut parts, state).await.map_err(IntoResponse::into_response)? else {
        // No credential: the handler answers (a 401, or a public route).
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    let body = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| Error::TooLarge("the request body is too large".into()).into_response())?;
    let fingerprint = fingerprint(&parts, &body);
    let scope = KeyScope { site_id, principal, key };
    let waited_until = tokio::time::Instant::now() + WAIT;
    let mut pause = Duration::from_millis(20);
    loop {
        let now = now_ms();
        let claim = KeyClaim {
            scope: scope.clone(),
            fingerprint: fingerprint.clone(),
            now,
            forget_before: now - REMEMBERED_FOR_MS,
            lapsed_before: now - LAPSES_AFTER_MS,
        };
        match state.store.claim_idempotency_key(claim).await.map_err(IntoResponse::into_response)? {
            Some(Claimed::Ours { at }) => {
                let response = next.run(Request::from_parts(parts, Body::from(body))).await;
                return Ok(keep(state, scope, at, response).await);
            }
            Some(Claimed::Taken(KeyRecord { fingerprint: theirs, .. })) if theirs != fingerprint => {
                return Err(Error::conflict(
                    "this Idempotency-Key was used with a different request; use a new key for a new request",
                )
                .into_response());
            }
            Some(Claimed::Taken(KeyRecord { answer: Some(answer), .. })) => return Ok(replay(answer)),
            // Still running, or let go a moment ago: wait, then ask again.
            Some(Claimed::Taken(KeyRecord { answer: None, .. })) | None => {}
        }
        if tokio::time::Instant::now() + pause > waited_until {
            return Err(Error::conflict(
                "a request with this Idempotency-Key is still being processed; retry it in a moment",
            )
            .into_response());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The key as sent: 1 to 255 visible ASCII characters.
fn read_key(value: Option<&HeaderValue>) -> Result<String> {
    let bad = || Error::bad_request(format!("Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters"));
    let key = value.and_then(|v| v.to_str().ok()).map(str::trim).ok_or_else(bad)?;
    if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(key.to_owned())
}

/// Who asks, as `(site, principal)`: an agent or an integration
/// (authenticated here once, for the handler too: `Authenticated`), or a
/// visitor. `None` without a credential this layer knows.
async fn principal(parts: &mut Parts, state: &AppState) -> Result<Option<(String, String)>> {
    let Some(bearer) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return Ok(None);
    };
    if let Ok(visitor) = state.auth.verify_visitor(bearer) {
        return Ok(Some((visitor.site, format!("visitor:{}", visitor.sub))));
    }
    if !api_tokens::is_api_token(bearer) && state.auth.verify_agent(bearer).is_err() {
        return Ok(None);
    }
    let AgentAuth(agent) = AgentAuth::from_request_parts(parts, state).await?;
    let principal = match &agent.api_token {
        Some(token) => format!("token:{}", token.id),
        None => format!("agent:{}", agent.agent_id),
    };
    let site = agent.site_id.clone();
    parts.extensions.insert(Authenticated(agent));
    Ok(Some((site, principal)))
}

/// SHA-256 of what makes two requests the same one.
fn fingerprint(parts: &Parts, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(parts.uri.path_and_query().map_or("", |p| p.as_str()).as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

/// Keep a success's answer under the key; let go of the key otherwise.
async fn keep(state: &AppState, scope: KeyScope, at: i64, response: Response) -> Response {
    if !response.status().is_success() {
        if let Err(e) = state.store.release_idempotency_key(scope, at).await {
            tracing::warn!(error = ?e, "cannot let go of an idempotency key; it lapses in a minute");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_ANSWER).await {
        Ok(bytes) => bytes,
        Err(e) => {
            // Too large to keep (none of ours is): the answer is lost, and
            // the key with it, so a retry would run again.
            tracing::warn!(error = ?e, "an answer too large to keep under its idempotency key");
            let _ = state.store.release_idempotency_key(scope, at).await;
            return Error::internal(anyhow::anyhow!("answer too large to keep")).into_response();
        }
    };
    let answer = if parts.extensions.get::<ShownOnce>().is_some() {
        let refusal =
            Error::conflict("this Idempotency-Key's request was done; its answer showed a secret once and is not kept")
                .into_response();
        let (refused, body) = refusal.into_parts();
        let body = axum::body::to_bytes(body, MAX_ANSWER).await.unwrap_or_default();
        StoredAnswer {
            status: refused.status.as_u16(),
            content_type: Some("application/json".into()),
            body: body.to_vec(),
        }
    } else {
        StoredAnswer {
            status: parts.status.as_u16(),
            content_type: parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned),
            body: bytes.to_vec(),
        }
    };
    if let Err(e) = state.store.finish_idempotency_key(scope, at, answer).await {
        // Done, but not remembered: a retry after the claim lapses runs
        // again. Rare (the store failed just now); the answer stands.
        tracing::warn!(error = ?e, "cannot keep an answer under its idempotency key");
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The first answer, again.
fn replay(answer: StoredAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    if let Some(value) = answer.content_type.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_visible_ascii_of_bounded_length() {
        let key = |s: &str| read_key(Some(&HeaderValue::from_str(s).unwrap()));
        assert_eq!(key(" 3f2c-11 ").unwrap(), "3f2c-11");
        assert!(key("").is_err());
        assert!(key("two words").is_err());
        assert!(key(&"k".repeat(MAX_KEY)).is_ok());
        assert!(key(&"k".repeat(MAX_KEY + 1)).is_err());
        assert!(read_key(None).is_err());
    }

    #[test]
    fn the_same_request_has_the_same_fingerprint() {
        let parts = |uri: &str| Request::post(uri).body(()).unwrap().into_parts().0;
        let a = fingerprint(&parts("/api/v1/x?y=1"), b"{}");
        assert_eq!(a, fingerprint(&parts("/api/v1/x?y=1"), b"{}"));
        assert_ne!(a, fingerprint(&parts("/api/v1/x?y=2"), b"{}"));
        assert_ne!(a, fingerprint(&parts("/api/v1/x?y=1"), b"{ }"));
    }
}
