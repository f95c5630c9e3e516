//! Files embedded in the binary: the visitor widget (`/widget.js`) and the
//! console's scripts and stylesheet (`/assets/NAME?v=HASH`). Each carries a
//! strong ETag (a hash of its bytes, so it changes with every build that
//! changes the file); a request naming the current hash in `v` may cache
//! the file for a year, anything else revalidates. Responses are gzipped
//! when the client accepts it.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower_http::compression::CompressionLayer;

use super::extract::{ApiPath, ApiQuery};
use crate::app::AppState;
use crate::error::Error;

pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// First 16 hex digits of the SHA-256 of `bytes`.
    pub hash: String,
}

fn asset(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
    let hash = hex::encode(Sha256::digest(bytes))[..16].to_owned();
    Asset { name, content_type, bytes, hash }
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        asset("widget.js", JS, include_bytes!("../../../../assets/widget.js")),
        asset("console.js", JS, include_bytes!("../../../../assets/console.js")),
        asset("console.css", CSS, include_bytes!("../../../../assets/console.css")),
        asset("console-status.js", JS, include_bytes!("../../../../assets/console-status.js")),
        asset("console-reports.js", JS, include_bytes!("../../../../assets/console-reports.js")),
    ]
});

pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// `/assets/NAME?v=HASH`: the URL pages should use, cacheable for a year.
pub fn versioned_url(name: &str) -> String {
    match find(name) {
        Some(a) => format!("/assets/{}?v={}", a.name, a.hash),
        None => format!("/assets/{name}"),
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/widget.js", get(widget))
        .route("/widget-i18n/{file}", get(widget_words))
        .route("/assets/{name}", get(named))
        .layer(CompressionLayer::new().gzip(true))
}

/// The embed URL cannot carry a version (it is pasted into customers'
/// pages), so it is cached briefly and revalidated by ETag.
async fn widget(headers: HeaderMap) -> Response {
    match find("widget.js") {
        Some(a) => serve(a, &headers, "public, max-age=300"),
        None => Error::NotFound("asset").into_response(),
    }
}

/// The widget's string tables other than English (`widget_i18n`), one a
/// language, fetched by the widget from customers' pages when its panel
/// opens: cached briefly and revalidated like `widget.js`, readable from
/// any origin.
static WORDS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    crate::widget_i18n::TABLES.iter().map(|(code, bytes)| asset(code, "application/json", bytes)).collect()
});

async fn widget_words(ApiPath(file): ApiPath<String>, headers: HeaderMap) -> Response {
    let found = file.strip_suffix(".json").and_then(|code| WORDS.iter().find(|a| a.name == code));
    let Some(a) = found else {
        return Error::NotFound("language").into_response();
    };
    let mut response = serve(a, &headers, "public, max-age=300");
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

#[derive(Deserialize)]
struct Version {
    #[serde(default)]
    v: Option<String>,
}

async fn named(ApiPath(name): ApiPath<String>, ApiQuery(version): ApiQuery<Version>, headers: HeaderMap) -> Response {
    let Some(a) = find(&name) else {
        return Error::NotFound("asset").into_response();
    };
    let cache =
        if version.v.as_deref() == Some(a.hash.as_str()) { "public, max-age=31536000, immutable" } else { "no-cache" };
    serve(a, &headers, cache)
}

fn serve(a: &'static Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let etag = format!("\"{}\"", a.hash);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.content_type)], a.bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // The widget is loaded by pages of other origins.
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    response
}
