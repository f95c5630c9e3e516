//! The status page's error: what its actions and its store refuse or fail
//! with. It says nothing about HTTP: the server turns it into its own
//! error (`holdfast-server`'s `error::Error`, variant for variant, with the
//! same text), where the one mapping to HTTP statuses lives. Kept apart so
//! this crate needs neither the server nor an HTTP framework.

use std::borrow::Cow;

/// What went wrong, as the server's handlers and the CLI tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed or out of bounds; the message says which field.
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
    /// The component, incident, monitor or subscription does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with current state (a name taken, a webhook
    /// already subscribed, an incident not resolved yet).
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    /// Too many subscriptions from one client address; retry after the
    /// given number of seconds.
    #[error("too many requests, retry in {0} s")]
    RateLimited(u64),
    /// A storage failure. The detail is logged, never shown.
    #[error("storage error")]
    Store(#[source] anyhow::Error),
    /// Anything else unexpected. The detail is logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad_request(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::BadRequest(msg.into())
    }

    pub fn conflict(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Conflict(msg.into())
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Error::Internal(err.into())
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Store(err.into())
    }
}
