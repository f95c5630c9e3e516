//! The REST API's OpenAPI 3.1 document, made from the code: each handler's
//! `#[utoipa::path]` and the `ToSchema` of the types it reads and answers,
//! gathered from every resource's `Api`. What every operation shares is
//! added here, once: the error responses in our error shape, the bearer
//! schemes, and the webhooks' payloads (`webhooks`, which utoipa does not
//! model), from the schemas of the types the webhooks are serialized from.
//! Served at `GET /api/v1/openapi.json`, built once per process.
//! `tests/it/openapi.rs` checks it against the routes and the live server.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::error::ErrorBody;
use crate::app::AppState;
use crate::store::webhooks::{ConversationEventData, EVENTS, MissedData};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(document_json))
}

/// No credential: the document describes, it holds nothing of anyone's.
/// Cacheable for an hour (it changes only with the binary).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
async fn document_json() -> Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| serde_json::to_string(&document()).unwrap_or_default());
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        text.clone(),
    )
        .into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Holdfast REST API",
        description = "The REST API of Holdfast, a self-hosted live chat server: what the console and integrations \
                       use. Errors have one shape (`Error`). The chat sockets (`/api/v1/agent/socket`, \
                       `/api/v1/visitor/socket`) are described in docs/protocol.md, not here."
    ),
    paths(document_json),
    components(schemas(ErrorBody)),
    security(("access_token" = []), ("api_token" = [])),
    modifiers(&Schemes),
    tags(
        (name = "auth", description = "Login, refresh, logout, the signed-in agent"),
        (name = "conversations", description = "Conversations, their events, search, replies and transcripts"),
        (name = "visitors", description = "Visitors, bans, and what the widget calls with a visitor token"),
        (name = "agents", description = "Agents and invitations"),
        (name = "groups", description = "Groups and their members"),
        (name = "canned", description = "Canned responses"),
        (name = "site", description = "The site's settings, hours, greetings and audit log"),
        (name = "reports", description = "Reports"),
        (name = "integrations", description = "API tokens, webhook endpoints and the outbox's deliveries"),
        (name = "attachments", description = "Files in chat"),
        (name = "status", description = "The status page's admin API (the installation's operator)"),
        (name = "operator", description = "The installation's sites (the operator)"),
        (name = "meta", description = "This document, and the console's banners")
    )
)]
struct Base;

/// The bearer schemes: a person's access token from login, and an
/// integration's API token (`hf_…`, `auth::api_tokens`), and the widget's
/// visitor token.
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.bearer_format = Some(format.to_owned());
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            "access_token",
            bearer("JWT", "An agent's access token from `POST /api/v1/auth/login` (15 minutes; renew by refresh)."),
        );
        components.add_security_scheme(
            "api_token",
            bearer(
                "hf_…",
                "An API token an admin made (`POST /api/v1/admin/api-tokens`). Scope `read` opens GET, `write` \
                 the other methods, `admin` the routes under `/api/v1/admin/`. Never accepted on `/api/v1/me…`, \
                 login, logout or the sockets.",
            ),
        );
        components.add_security_scheme(
            "visitor_token",
            bearer("JWT", "A visitor's token from `POST /api/v1/visitor/session` (the widget)."),
        );
    }
}

/// The whole document, as JSON.
pub fn document() -> Value {
    let mut doc = Base::openapi();
    for part in [
        super::auth::Api::openapi(),
        super::console::Api::openapi(),
        super::agent::Api::openapi(),
        super::actions::Api::openapi(),
        super::admin::Api::openapi(),
        super::bans::Api::openapi(),
        super::integrations::Api::openapi(),
        super::attachments::Api::openapi(),
        super::photos::Api::openapi(),
        super::transcript::Api::openapi(),
        super::visitor::Api::openapi(),
        super::reports::Api::openapi(),
        super::ops::Api::openapi(),
        super::operator::Api::openapi(),
        super::status::Api::openapi(),
    ] {
        doc.merge(part);
    }
    add_webhook_schemas(&mut doc);
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    value["openapi"] = json!("3.1.0");
    add_error_responses(&mut value);
    add_idempotency_key(&mut value);
    name_operations(&mut value);
    value["webhooks"] = webhooks();
    value
}

/// The statuses an operation may answer in our error shape, and when.
fn error_responses(method: &str, has_body: bool) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        ("400", "The request is malformed: a parameter or the body is wrong"),
        ("401", "No credential, or one that is wrong, expired, revoked or of the wrong kind"),
        ("403", "The credential may not do this (role, the API token's scope, a ban, a missing CSRF header)"),
        ("404", "No such thing on the caller's site (or no such route)"),
    ];
    if method != "get" {
        out.push(("409", "The change conflicts with the current state"));
    }
    if has_body {
        out.push(("413", "The request body is too large"));
    }
    out.push(("429", "Too many requests: wait `Retry-After` seconds"));
    out.push(("503", "Busy or the store is unreachable: retry after `Retry-After` seconds"));
    out
}

/// Adds the error responses to every operation that does not name them,
/// each a reference to the `Error` schema.
fn add_error_responses(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            let has_body = op.get("requestBody").is_some();
            let Some(responses) = op["responses"].as_object_mut() else { continue };
            for (status, description) in error_responses(method, has_body) {
                responses.entry(status).or_insert_with(|| {
                    json!({
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                    })
                });
            }
        }
    }
}

/// Documents the `Idempotency-Key` header (`http::idempotency`) on every
/// POST that honours it: one with a credential, other than a session's
/// own and the uploads.
fn add_idempotency_key(doc: &mut Value) {
    doc["components"]["parameters"]["IdempotencyKey"] = json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": false,
        "description": "Makes a retry safe: the first request under a key runs, and a retry with the same key and \
                        the same request (method, path, query, body) gets its answer again (`Idempotent-Replayed: \
                        true`) for 24 hours; the same key with another request is a 409. Keys are per site and \
                        per caller (agent, API token or visitor).",
        "schema": {"type": "string", "minLength": 1, "maxLength": super::idempotency::MAX_KEY,
                   "pattern": "^[!-~]+$"}
    });
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        if super::idempotency::exempt(path) {
            continue;
        }
        let Some(op) = item.get_mut("post") else { continue };
        let public =
            op["security"].as_array().is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(|r| r.is_empty())));
        if public {
            continue;
        }
        let parameters = op.as_object_mut().map(|o| o.entry("parameters").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = parameters {
            list.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
        }
    }
}

/// Names each operation by its method and path (`get_admin_agents_id`):
/// unique by construction, where handlers' names repeat across files.
fn name_operations(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let words: Vec<&str> = path
            .trim_start_matches("/api/v1/")
            .split(['/', '.', '-'])
            .map(|w| w.trim_start_matches('{').trim_end_matches('}'))
            .collect();
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            op["operationId"] = json!(format!("{method}_{}", words.join("_")));
        }
    }
}

/// Registers the webhook payloads' data schemas (and what they refer to).
fn add_webhook_schemas(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    <ConversationEventData as ToSchema>::schemas(&mut schemas);
    <MissedData as ToSchema>::schemas(&mut schemas);
    schemas.push((ConversationEventData::name().into_owned(), ConversationEventData::schema()));
    schemas.push((MissedData::name().into_owned(), MissedData::schema()));
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
}

/// The `webhooks` section: one `POST` per event an endpoint may want, its
/// body the Standard Webhooks envelope around the event's data.
fn webhooks() -> Value {
    let mut out = serde_json::Map::new();
    for &kind in EVENTS {
        let data = if kind == "conversation.missed" { MissedData::name() } else { ConversationEventData::name() };
        let body = json!({
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"type": "string", "const": kind},
                "timestamp": {"type": "string", "format": "date-time"},
                "data": {"$ref": format!("#/components/schemas/{data}")}
            }
        });
        out.insert(
            kind.to_owned(),
            json!({
                "post": {
                    "operationId": format!("webhook_{}", kind.replace('.', "_")),
                    "summary": format!("`{kind}`, sent to an endpoint that wants it"),
                    "description": "Signed per the Standard Webhooks specification: headers `webhook-id` \
                                    (stable across retries), `webhook-timestamp` and `webhook-signature` \
                                    (`v1,` and base64 of HMAC-SHA256 over `id.timestamp.body`, keyed with the \
                                    bytes of the endpoint's `whsec_` secret).",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
                    "responses": {"2XX": {"description": "Received; any other answer is retried with backoff"}}
                }
            }),
        );
    }
    Value::Object(out)
}
