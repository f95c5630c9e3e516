//! Extractors that turn bad input into our error shape, not axum's default
//! plain-text rejections: JSON bodies, bearer tokens for agents, admins,
//! the operator and visitors, and integrations' API tokens.

use axum::extract::rejection::JsonRejection;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{Method, StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;

use crate::abuse::client_ip::client_ip;
use crate::app::AppState;
use crate::auth::api_tokens::{self, Scope};
use crate::chat::service::{AgentCtx, VisitorCtx};
use crate::error::Error;
use crate::store::Role;

/// A JSON body; malformed, wrongly typed or oversize bodies become a 400 or
/// 413 in our error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Read as raw JSON first (content type, size and syntax checked by
        // axum), refuse a repeated key, then decode.
        let raw = match axum::Json::<Box<serde_json::value::RawValue>>::from_request(req, state).await {
            Ok(axum::Json(raw)) => raw,
            Err(rejection) => return Err(json_error(rejection)),
        };
        crate::json::refuse_duplicate_keys(raw.get()).map_err(|e| Error::bad_request(format!("invalid JSON: {e}")))?;
        serde_json::from_str(raw.get())
            .map(ApiJson)
            .map_err(|e| Error::bad_request(format!("Failed to deserialize the JSON body into the target type: {e}")))
    }
}

fn json_error(rejection: JsonRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::TooLarge("the request body is too large".into());
    }
    Error::bad_request(rejection.body_text())
}

fn bearer(parts: &Parts) -> Result<&str, Error> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| Error::unauthorized("missing bearer token"))
}

/// Any signed-in session, the status probe's included (verified in
/// memory). Only for what touches nothing but the caller's own session:
/// `me` and logout. Everything else takes `AgentAuth`.
pub struct SessionAuth(pub AgentCtx);

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let claims = state.auth.verify_agent(bearer(parts)?)?;
        Ok(SessionAuth(AgentCtx {
            agent_id: claims.sub,
            site_id: claims.site,
            session_id: claims.sid,
            role: claims.role,
            api_token: None,
        }))
    }
}

/// An agent (or admin) authenticated by access token, or an integration
/// by API token (`auth::api_tokens`) with the scope the request needs:
/// `admin` under `/api/v1/admin/`, else `read` for GET and HEAD, `write`
/// for the rest. An API token is refused on an agent's own settings
/// (`/api/v1/me…`): it is no person. The status probe's token is refused
/// here, so it can read or change nothing.
pub struct AgentAuth(pub AgentCtx);

/// An agent or integration a layer before the handler already
/// authenticated (`http::idempotency`), so a request is checked (and an
/// API token's rate counted) once.
#[derive(Clone)]
pub struct Authenticated(pub AgentCtx);

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(Authenticated(agent)) = parts.extensions.get::<Authenticated>() {
            return Ok(AgentAuth(agent.clone()));
        }
        let presented = bearer(parts)?;
        if api_tokens::is_api_token(presented) {
            let path = parts.uri.path();
            if path == "/api/v1/me" || path.starts_with("/api/v1/me/") {
                return Err(Error::forbidden("an API token cannot change an agent's own settings"));
            }
            let needs = if path.starts_with("/api/v1/admin/") {
                Scope::Admin
            } else if matches!(parts.method, Method::GET | Method::HEAD) {
                Scope::Read
            } else {
                Scope::Write
            };
            return Ok(AgentAuth(state.api_tokens.authenticate(presented, needs).await?));
        }
        let SessionAuth(agent) = SessionAuth::from_request_parts(parts, state).await?;
        if agent.role == Role::Probe {
            return Err(Error::forbidden("the status probe account only logs in and connects"));
        }
        Ok(AgentAuth(agent))
    }
}

/// An admin of their site (role `admin` or `operator`); the role is
/// checked here, on the server.
pub struct AdminAuth(pub AgentCtx);

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let AgentAuth(agent) = AgentAuth::from_request_parts(parts, state).await?;
        if !agent.role.is_admin() {
            return Err(Error::forbidden("admins only"));
        }
        Ok(AdminAuth(agent))
    }
}

/// The installation's operator (role `operator`): the status page's admin
/// routes and the sites API. A site's admin is refused here.
pub struct OperatorAuth(pub AgentCtx);

impl FromRequestParts<AppState> for OperatorAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let AgentAuth(agent) = AgentAuth::from_request_parts(parts, state).await?;
        if agent.role != Role::Operator {
            return Err(Error::forbidden("the installation's operator only"));
        }
        Ok(OperatorAuth(agent))
    }
}

/// A visitor authenticated by visitor token.
pub struct VisitorAuth(pub VisitorCtx);

impl FromRequestParts<AppState> for VisitorAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let claims = state.auth.verify_visitor(bearer(parts)?)?;
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        Ok(VisitorAuth(VisitorCtx { visitor_id: claims.sub, site_id: claims.site, ip: Some(ip) }))
    }
}

/// The client's address (`abuse::client_ip`): the connection's peer, or
/// what a trusted proxy forwarded in `X-Forwarded-For`.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| Error::internal(anyhow::anyhow!("no peer address on the request")))?;
        let trusted = &state.config.trusted_proxies;
        // Every X-Forwarded-For line, in order, as one list.
        let forwarded: Vec<&str> =
            parts.headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
        let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
        Ok(ClientIp(client_ip(peer, forwarded.as_deref(), trusted)))
    }
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// A query string; bad parameters become a 400 in our error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(Error::bad_request(rejection.body_text())),
        }
    }
}

/// Path parameters; a parameter that does not decode (bad percent-encoding,
/// not UTF-8) becomes a 400 in our error shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(Error::bad_request(rejection.body_text())),
        }
    }
}
