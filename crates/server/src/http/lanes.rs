//! Which lane each route belongs to, and the middleware that admits a
//! request into its lane or sheds it with 503 + Retry-After.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::admission::Lane;
use crate::app::AppState;

/// The lane of a request path. Login, refresh, resume and health are
/// critical; chat traffic is next; console lists, search and banners are
/// dashboard; the rest is background.
pub fn lane_for(path: &str) -> Lane {
    match path {
        "/livez" | "/readyz" => Lane::Critical,
        // Either side's socket: its upgrade carries no credential, and what
        // follows is a resume (the hello is admitted here too, and a new
        // visitor was made by the session in the chat lane). Behind chat's
        // messages, a node taking over a lost one's crowd answered its
        // upgrades in 1.7 s at the median, or shed them.
        "/api/v1/agent/socket" | "/api/v1/visitor/socket" => Lane::Critical,
        p if p.starts_with("/api/v1/auth/") => Lane::Critical,
        // The console's login page, its files and its cookie login/refresh.
        "/console" | "/console/" => Lane::Critical,
        p if p.starts_with("/api/v1/console/") || p.starts_with("/assets/") => Lane::Critical,
        "/widget.js" => Lane::Chat,
        p if p.starts_with("/widget-i18n/") => Lane::Chat,
        "/api/v1/canned" => Lane::Dashboard,
        p if p.starts_with("/api/v1/admin/") || p.starts_with("/api/v1/operator/") => Lane::Dashboard,
        "/api/v1/visitor/session" => Lane::Chat,
        // Files in chat are chat (an upload's stream is bounded per node
        // by `attachments`, a download's holds no permit once it starts).
        p if p.starts_with("/api/v1/attachments") || p.starts_with("/api/v1/visitor/attachments") => Lane::Chat,
        // Agents' photos show in the widget as the agent joins.
        p if p.starts_with("/api/v1/agents/") && p.ends_with("/photo") => Lane::Chat,
        // A ban stops abuse in progress: as urgent as chat itself.
        "/api/v1/bans" => Lane::Chat,
        p if p.starts_with("/api/v1/conversations/") && p.ends_with("/events") => Lane::Chat,
        "/api/v1/conversations"
        | "/api/v1/search"
        | "/api/v1/agents"
        | "/api/v1/me"
        | "/api/v1/banners"
        | "/api/v1/reports" => Lane::Dashboard,
        p if p.starts_with("/api/v1/visitors/") || p.starts_with("/api/v1/conversations/") => Lane::Dashboard,
        _ => Lane::Background,
    }
}

/// What a connection let into the reserve (the node is full) is served:
/// the critical lane's requests, which must answer while the rest is full
/// (health, login, refresh, the console's login page), but not its sockets,
/// which would each hold a reserve slot for hours.
pub fn served_from_reserve(path: &str) -> bool {
    lane_for(path) == Lane::Critical && !path.ends_with("/socket")
}

/// The lane of a request: its path's, but an integration is a side
/// service: with an API token, even a chat route waits in the dashboard
/// lane, never in chat's or login's.
fn lane_of(req: &Request) -> Lane {
    let lane = lane_for(req.uri().path());
    if by_api_token(req) && matches!(lane, Lane::Critical | Lane::Chat) { Lane::Dashboard } else { lane }
}

pub async fn admit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let lane = lane_of(&req);
    match state.admission.enter(lane).await {
        // The permit is held until the response is produced (for a socket,
        // until the upgrade; the socket's frames are admitted one by one).
        Ok(_permit) => next.run(req).await,
        Err(err) => err.into_response(),
    }
}

fn by_api_token(req: &Request) -> bool {
    let bearer = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    bearer.and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|t| crate::auth::api_tokens::is_api_token(t.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_and_resume_are_critical_and_banners_are_not() {
        assert_eq!(lane_for("/api/v1/auth/login"), Lane::Critical);
        assert_eq!(lane_for("/api/v1/auth/refresh"), Lane::Critical);
        assert_eq!(lane_for("/api/v1/agent/socket"), Lane::Critical);
        assert_eq!(lane_for("/livez"), Lane::Critical);
        assert_eq!(lane_for("/api/v1/visitor/socket"), Lane::Critical);
        assert_eq!(lane_for("/api/v1/visitor/session"), Lane::Chat);
        assert!(!served_from_reserve("/api/v1/visitor/socket") && !served_from_reserve("/api/v1/agent/socket"));
        assert_eq!(lane_for("/api/v1/conversations/abc/events"), Lane::Chat);
        assert_eq!(lane_for("/api/v1/banners"), Lane::Dashboard);
        assert_eq!(lane_for("/api/v1/search"), Lane::Dashboard);
        assert_eq!(lane_for("/api/v1/agents/abc/photo"), Lane::Chat);
        assert_eq!(lane_for("/api/v1/reports"), Lane::Dashboard);
        assert_eq!(lane_for("/metrics"), Lane::Background);
    }

    #[test]
    fn an_api_token_waits_in_the_dashboard_lane_at_best() {
        let req = |path: &str, bearer: &str| {
            let mut r = Request::new(axum::body::Body::empty());
            *r.uri_mut() = path.parse().unwrap();
            r.headers_mut().insert("authorization", format!("Bearer {bearer}").parse().unwrap());
            r
        };
        assert_eq!(lane_of(&req("/api/v1/conversations/abc/events", "eyJ.session")), Lane::Chat);
        assert_eq!(lane_of(&req("/api/v1/conversations/abc/events", "hf_token")), Lane::Dashboard);
        assert_eq!(lane_of(&req("/api/v1/bans", "hf_token")), Lane::Dashboard);
        assert_eq!(lane_of(&req("/api/v1/auth/login", "hf_token")), Lane::Dashboard);
        assert_eq!(lane_of(&req("/metrics", "hf_token")), Lane::Background, "never raised");
    }

    #[test]
    fn the_reserve_serves_health_and_login_but_no_socket() {
        for path in ["/livez", "/readyz", "/api/v1/auth/login", "/api/v1/console/login", "/console"] {
            assert!(served_from_reserve(path), "{path}");
        }
        for path in ["/api/v1/agent/socket", "/api/v1/visitor/socket", "/api/v1/banners", "/metrics", "/status"] {
            assert!(!served_from_reserve(path), "{path}");
        }
    }
}
