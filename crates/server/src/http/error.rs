//! The one place an [`Error`] becomes an HTTP response:
//! `{"error": {"code": "...", "message": "..."}}` with the status from
//! [`Error::http_status`], and `Retry-After` when the client should retry.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// Every error's body: what went wrong, for a program (`code`) and for a
/// person (`message`).
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub(super) struct ErrorBody {
    error: ErrorDetail,
}

/// One error, as `ErrorBody` carries it.
#[derive(Serialize, ToSchema)]
pub(super) struct ErrorDetail {
    /// Stable, for programs (`Error::code`).
    #[schema(value_type = String, example = "not_found")]
    code: &'static str,
    /// For people; a server fault shows only a generic text.
    message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.is_server_fault() {
            tracing::error!(error = ?self, "request failed");
        }
        let status = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if self.is_server_fault() { "internal error, please retry".to_owned() } else { self.to_string() };
        let body = ErrorBody { error: ErrorDetail { code: self.code(), message } };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
