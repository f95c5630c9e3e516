//! The REST side of the console: lists, history, search. Everything is
//! scoped to the caller's site; ids of another site answer 404.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{AgentAuth, ApiPath, ApiQuery, VisitorAuth};
use super::page;
use crate::app::AppState;
use crate::auth::AgentProfile;
use crate::chat::protocol::{ConversationView, EventView};
use crate::chat::service::Peer;
use crate::error::{Error, Result};
use crate::store::search::{ChatHit, ChatSearch};
use crate::store::{ConversationFilter, ConversationStatus, Visitor};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/conversations", get(conversations))
        .route("/api/v1/conversations/{id}", get(conversation))
        .route("/api/v1/conversations/{id}/events", get(events))
        .route("/api/v1/conversations/{id}/greeting", get(greeting))
        .route("/api/v1/visitors/{id}", get(visitor))
        .route("/api/v1/search", get(search))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(agents, conversations, conversation, events, greeting, visitor, search))]
pub(super) struct Api;

/// Either an agent or a visitor, whichever the bearer token is.
pub struct PeerAuth(pub Peer);

impl FromRequestParts<AppState> for PeerAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match AgentAuth::from_request_parts(parts, state).await {
            Ok(AgentAuth(a)) => Ok(PeerAuth(Peer::Agent(a))),
            Err(agent_err) => match VisitorAuth::from_request_parts(parts, state).await {
                Ok(VisitorAuth(v)) => Ok(PeerAuth(Peer::Visitor(v))),
                Err(_) => Err(agent_err),
            },
        }
    }
}

/// The site's agents (every agent may see who else there is).
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    responses((status = 200, description = "The agents", body = Vec<AgentProfile>)))]
async fn agents(State(state): State<AppState>, AgentAuth(me): AgentAuth) -> Result<Json<Vec<AgentProfile>>> {
    Ok(Json(state.store.agents(&me.site_id).await?.into_iter().map(Into::into).collect()))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `queued`, `active`, `closed`, `offline`, or `missed` (missed chats,
    /// most recently missed first; no other filter but `limit`).
    #[serde(default)]
    status: Option<String>,
    /// Only the caller's own chats.
    #[serde(default)]
    mine: Option<bool>,
    /// Of this visitor.
    #[serde(default)]
    visitor: Option<String>,
    /// Assigned to this agent (of the site; `mine` wins).
    #[serde(default)]
    agent: Option<String>,
    /// Routed through this group.
    #[serde(default)]
    group: Option<String>,
    /// Started at or after this time (Unix ms).
    #[serde(default)]
    from: Option<i64>,
    /// Started before this time (Unix ms).
    #[serde(default)]
    to: Option<i64>,
    /// 1 to 1000 (default 100).
    #[serde(default)]
    limit: Option<i64>,
    /// The `Next-Cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
}

/// The site's conversations, newest first, filtered; a page at a time
/// (`Next-Cursor`, absent on the last page).
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", params(ListQuery),
    responses((status = 200, description = "The conversations", body = Vec<ConversationView>,
        headers(("Next-Cursor" = String, description = "The next page's `cursor`; absent on the last page")))))]
async fn conversations(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if q.status.as_deref() == Some("missed") {
        // Missed chats keep their status (a waiting visitor stays queued):
        // a list of its own, most recently missed first.
        if q.mine.is_some()
            || q.visitor.is_some()
            || q.agent.is_some()
            || q.group.is_some()
            || q.from.is_some()
            || q.to.is_some()
        {
            return Err(Error::bad_request("status=missed takes no other filter but limit and cursor"));
        }
        let after = q.cursor.as_deref().map(page::parse_cursor).transpose()?.unwrap_or((i64::MAX, String::new()));
        let list = state.store.missed_chats(&me.site_id, after, limit + 1).await?;
        let (list, next) = page::split(list, limit, |(c, missed)| (missed.missed_at, &c.id));
        let views = list
            .into_iter()
            .map(|(c, missed)| ConversationView { missed: Some(missed), ..ConversationView::from(&c) })
            .collect();
        return Ok(page::array_page::<ConversationView>(views, next));
    }
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            ConversationStatus::parse(s)
                .ok_or_else(|| Error::bad_request("status must be queued, active, closed, offline or missed"))?,
        ),
    };
    check_range(q.from, q.to)?;
    let filter = ConversationFilter {
        status,
        created_from: q.from,
        created_to: q.to,
        agent_id: match q.mine {
            Some(true) => Some(me.agent_id.clone()),
            _ => q.agent.filter(|a| a.len() <= 64),
        },
        visitor_id: q.visitor.filter(|v| v.len() <= 64),
        group_id: q.group.filter(|g| g.len() <= 64),
        before: q.cursor.as_deref().map(page::parse_cursor).transpose()?,
        // One more than the page, to know whether another follows.
        limit: limit + 1,
    };
    let list = state.store.conversations(&me.site_id, filter).await?;
    let (list, next) = page::split(list, limit, |c| (c.created_at, &c.id));
    Ok(page::array_page(list.iter().map(ConversationView::from).collect(), next))
}

/// One conversation's state (the console learns of some by their events).
/// A visitor's token opens their own conversations.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations", params(("id" = String, Path)),
    security(("access_token" = []), ("api_token" = []), ("visitor_token" = [])),
    responses((status = 200, description = "The conversation", body = ConversationView)))]
async fn conversation(
    State(state): State<AppState>,
    PeerAuth(peer): PeerAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConversationView>> {
    Ok(Json(ConversationView::from(&state.chat.conversation_for(&peer, &id).await?)))
}

/// The proactive greeting a visitor answered to start a chat.
#[derive(Serialize, ToSchema)]
struct GreetedBy {
    rule_id: String,
    /// The rule's name and message; `None` once the rule is deleted.
    name: Option<String>,
    message: Option<String>,
}

/// Agents: which greeting started this chat; `null` if none did.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/greeting", tag = "conversations",
    params(("id" = String, Path)),
    responses((status = 200, description = "The greeting, or `null`", body = Option<GreetedBy>)))]
async fn greeting(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Option<GreetedBy>>> {
    let conv = state.chat.conversation_for(&Peer::Agent(me), &id).await?;
    let Some(rule_id) = state.store.greeting_of(&conv.id).await? else { return Ok(Json(None)) };
    let rule = state.store.greetings(&conv.site_id).await?.into_iter().find(|r| r.id == rule_id);
    let (name, message) = rule.map(|r| (r.name, r.message)).unzip();
    Ok(Json(Some(GreetedBy { rule_id, name, message })))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// The cursor: events with a greater `seq` (default 0, from the start).
    #[serde(default)]
    after: Option<i64>,
    /// 1 to 1000 (default 500).
    #[serde(default)]
    limit: Option<i64>,
    /// The `Next-Cursor` of the previous page (the same as `after`; not
    /// with it).
    #[serde(default)]
    cursor: Option<String>,
}

/// A conversation's events after a cursor (the transcript, paged): page on
/// with `Next-Cursor` as `cursor` (or the last `seq` as `after`).
#[utoipa::path(get, path = "/api/v1/conversations/{id}/events", tag = "conversations",
    params(("id" = String, Path), EventsQuery),
    security(("access_token" = []), ("api_token" = []), ("visitor_token" = [])),
    responses((status = 200, description = "The events, in order", body = Vec<EventView>,
        headers(("Next-Cursor" = String, description = "The next page's `cursor`; absent on the last page")))))]
async fn events(
    State(state): State<AppState>,
    PeerAuth(peer): PeerAuth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response> {
    let after = match (q.after, q.cursor.as_deref()) {
        (Some(_), Some(_)) => return Err(Error::bad_request("give after or cursor, not both")),
        (None, Some(cursor)) => {
            cursor.parse::<i64>().map_err(|_| Error::bad_request("cursor is not one this endpoint gave"))?
        }
        (after, None) => after.unwrap_or(0),
    };
    if after < 0 {
        return Err(Error::bad_request("after must be >= 0"));
    }
    let conv = state.chat.conversation_for(&peer, &id).await?;
    let limit = q.limit.unwrap_or(500).clamp(1, 1000);
    let events = state.store.events_after(&conv.id, after, limit).await?;
    // A full page may have more after it (one more read tells: an empty
    // page); the cursor is the last seq read, notes included.
    let next = (events.len() as i64 == limit).then(|| events.last().map(|e| e.seq.to_string())).flatten();
    // A visitor never sees an internal note (a page may then hold fewer
    // events than `limit` without being the last).
    let seen = |e: &&crate::store::StoredEvent| !(matches!(peer, Peer::Visitor(_)) && e.kind == "note");
    Ok(page::array_page(events.iter().filter(seen).map(EventView::from).collect::<Vec<_>>(), next))
}

/// A visitor of the site.
#[utoipa::path(get, path = "/api/v1/visitors/{id}", tag = "visitors", params(("id" = String, Path)),
    responses((status = 200, description = "The visitor", body = Visitor)))]
async fn visitor(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Visitor>> {
    let v = state.store.visitor(&id).await?.filter(|v| v.site_id == me.site_id).ok_or(Error::NotFound("visitor"))?;
    Ok(Json(v))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// Words, all of which a chat must hold, each as a word or the start of
    /// one ("ship" finds "shipping"); always text, never query syntax.
    /// Absent or blank: every chat.
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    group: Option<String>,
    /// Chats started at or after this time (Unix ms).
    #[serde(default)]
    from: Option<i64>,
    /// Chats started before this time (Unix ms).
    #[serde(default)]
    to: Option<i64>,
    /// `next` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

/// A page of chats found; `next` asks for the following one (`null`: the
/// last page).
#[derive(Serialize, ToSchema)]
struct SearchPage {
    chats: Vec<ChatHit>,
    next: Option<String>,
}

/// Words a search may hold, each at most this many bytes.
const MAX_WORDS: usize = 10;
const MAX_WORD: usize = 100;

/// The words of a query: split at white space, those without a letter or
/// digit dropped (the indexes hold none such), duplicates once.
fn search_words(q: &str) -> Result<Vec<String>> {
    if q.len() > 200 {
        return Err(Error::bad_request("q must be at most 200 bytes"));
    }
    let mut words: Vec<String> = Vec::new();
    for word in q.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)) {
        if word.len() > MAX_WORD {
            return Err(Error::bad_request("a word of q is longer than 100 bytes"));
        }
        if !words.iter().any(|w| w.to_lowercase() == word.to_lowercase()) {
            words.push(word.to_owned());
        }
    }
    if words.len() > MAX_WORDS {
        return Err(Error::bad_request("q may hold at most 10 words"));
    }
    Ok(words)
}

/// Chat search over the site: by words (in messages, or the visitor's name
/// or email) and filters; without words, the list of past chats. Newest
/// first, a page at a time.
#[utoipa::path(get, path = "/api/v1/search", tag = "conversations", params(SearchQuery),
    responses((status = 200, description = "A page of chats found", body = SearchPage)))]
async fn search(
    State(state): State<AppState>,
    AgentAuth(me): AgentAuth,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<SearchPage>> {
    let words = search_words(q.q.as_deref().unwrap_or(""))?;
    if q.q.as_deref().is_some_and(|t| !t.trim().is_empty()) && words.is_empty() {
        return Err(Error::bad_request("q must hold a word with a letter or a digit"));
    }
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            ConversationStatus::parse(s)
                .ok_or_else(|| Error::bad_request("status must be queued, active, closed or offline"))?,
        ),
    };
    let id = |name: &str, v: Option<String>| match v.filter(|v| !v.is_empty()) {
        Some(v) if v.len() > 64 => Err(Error::bad_request(format!("{name} is not an id"))),
        v => Ok(v),
    };
    check_range(q.from, q.to)?;
    let limit = q.limit.unwrap_or(25).clamp(1, 100);
    let search = ChatSearch {
        words,
        status,
        agent_id: id("agent", q.agent)?,
        group_id: id("group", q.group)?,
        from: q.from,
        to: q.to,
        before: q.cursor.as_deref().map(page::parse_cursor).transpose()?,
        // One more than the page, to know whether another follows.
        limit: limit + 1,
    };
    let found = state.store.search_chats(&me.site_id, search).await?;
    let (chats, next) = page::split(found, limit, |c| (c.created_at, &c.conversation_id));
    Ok(Json(SearchPage { chats, next }))
}

/// A time range (`from`, `to`, Unix ms) that can hold something.
fn check_range(from: Option<i64>, to: Option<i64>) -> Result<()> {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(Error::bad_request("from must be before to"));
    }
    Ok(())
}
