//! The one place an [`Error`] becomes an HTTP response:
//! `{"error": {"code": "...", "message": "..."}}` with the status from
//! [`Error::http_status`], and `Retry-After` when the client should retry.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.is_server_fault() {
            tracing::error!(error = ?self, "request failed");
        }
        let status = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if self.is_server_fault() { "internal error, please retry".to_owned() } else { self.to_string() };
        let body = serde_json::json!({"error": {"code": self.code(), "message": message}});
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
