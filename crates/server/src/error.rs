//! One error type for the whole server, with its mapping to an HTTP status
//! and a stable machine-readable code in exactly one place. The text shown
//! to a user is kept apart from the detail that is only logged.

use std::borrow::Cow;

/// What went wrong, as callers (HTTP handlers, socket sessions, the CLI) need
/// to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed or out of bounds; the message says which field.
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
    /// No valid credential, or a credential that has expired or was revoked.
    #[error("{0}")]
    Unauthorized(Cow<'static, str>),
    /// The access token has expired: refresh it (no password needed).
    #[error("token expired")]
    TokenExpired,
    /// The caller is known but may not do this (wrong role).
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    /// The visitor, or their address, is banned from the site's chat
    /// (`abuse::bans`). The text is neutral on purpose: the widget shows
    /// "chat is unavailable", never why.
    #[error("chat is unavailable")]
    Banned,
    /// The thing does not exist, or belongs to another site (never tell which).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with current state (e.g. the email is taken).
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    /// Outside business hours (`hours`): no new chat, and no transfer, to a
    /// group that is closed now. The widget offers its offline form.
    #[error("{0}")]
    Closed(Cow<'static, str>),
    /// The body or frame is larger than allowed.
    #[error("{0}")]
    TooLarge(Cow<'static, str>),
    /// The content is of a type not accepted here (an attachment's type,
    /// decided from its bytes, that the site does not allow).
    #[error("{0}")]
    Unsupported(Cow<'static, str>),
    /// Too many attempts; retry after the given number of seconds.
    #[error("too many requests, retry in {0} s")]
    RateLimited(u64),
    /// The server is shedding load or a dependency is unavailable; the
    /// client should retry after the given number of seconds.
    #[error("temporarily unavailable, retry in {0} s")]
    Unavailable(u64),
    /// A storage failure. The detail is logged, never shown.
    #[error("storage error")]
    Store(#[source] anyhow::Error),
    /// The store was written by a newer Holdfast: this binary must not
    /// touch it. The message names the store and both schema versions.
    #[error("{0}")]
    NewerSchema(String),
    /// Anything else unexpected. The detail is logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad_request(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::BadRequest(msg.into())
    }

    pub fn unauthorized(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Unauthorized(msg.into())
    }

    pub fn forbidden(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Forbidden(msg.into())
    }

    pub fn conflict(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Conflict(msg.into())
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Error::Internal(err.into())
    }

    /// The stable code clients switch on (also used in socket error frames).
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::TokenExpired => "token_expired",
            Error::Forbidden(_) => "forbidden",
            Error::Banned => "banned",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Closed(_) => "closed",
            Error::TooLarge(_) => "too_large",
            Error::Unsupported(_) => "unsupported_type",
            Error::RateLimited(_) => "rate_limited",
            // A store failure is temporary from the client's view: retry.
            Error::Unavailable(_) | Error::Store(_) => "unavailable",
            Error::Internal(_) | Error::NewerSchema(_) => "internal",
        }
    }

    /// The HTTP status for this error: the one mapping in the code base.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) | Error::TokenExpired => 401,
            Error::Forbidden(_) | Error::Banned => 403,
            Error::NotFound(_) => 404,
            Error::Conflict(_) | Error::Closed(_) => 409,
            Error::TooLarge(_) => 413,
            Error::Unsupported(_) => 415,
            Error::RateLimited(_) => 429,
            Error::Unavailable(_) | Error::Store(_) => 503,
            Error::Internal(_) | Error::NewerSchema(_) => 500,
        }
    }

    /// Seconds the client should wait before retrying, when that is known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::RateLimited(s) | Error::Unavailable(s) => Some(*s),
            Error::Store(_) => Some(1),
            _ => None,
        }
    }

    /// True for failures whose detail must be logged (the user sees only the
    /// generic text).
    pub fn is_server_fault(&self) -> bool {
        matches!(self, Error::Store(_) | Error::Internal(_) | Error::NewerSchema(_))
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Store(err.into())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        Error::Store(err.into())
    }
}

/// The status page's error (`holdfast-status`, which knows no HTTP) is
/// ours variant for variant, with the same text: the mapping to HTTP stays
/// in one place, here and in `http/error`.
impl From<holdfast_status::error::Error> for Error {
    fn from(err: holdfast_status::error::Error) -> Self {
        use holdfast_status::error::Error as Status;
        match err {
            Status::BadRequest(msg) => Error::BadRequest(msg),
            Status::NotFound(what) => Error::NotFound(what),
            Status::Conflict(msg) => Error::Conflict(msg),
            Status::RateLimited(secs) => Error::RateLimited(secs),
            Status::Store(e) => Error::Store(e),
            Status::Internal(e) => Error::Internal(e),
        }
    }
}
