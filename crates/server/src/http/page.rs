//! Cursor pagination of the REST lists that grow (conversations, search,
//! the audit log, deliveries): a list is read newest first by a total
//! order `(time, id)`, a page at a time, one row more than asked to know
//! whether another page follows. The cursor is the last row's
//! `time_id`; a cursor this server did not give is a 400, never read as
//! "from the start". A list answered as a bare array (as before it had
//! pages) gives the next page's cursor in the `Next-Cursor` header, absent
//! on the last page, so a client that ignores it works as it did.

use axum::Json;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Error, Result};

pub(super) const NEXT_CURSOR: HeaderName = HeaderName::from_static("next-cursor");

/// The cursor naming the row at `at` (ms) with `id`.
pub(super) fn cursor(at: i64, id: &str) -> String {
    format!("{at}_{id}")
}

/// A cursor `cursor` made: `(at, id)`.
pub(super) fn parse_cursor(cursor: &str) -> Result<(i64, String)> {
    let bad = || Error::bad_request("cursor is not one this endpoint gave");
    let (at, id) = cursor.split_once('_').ok_or_else(bad)?;
    let at = at.parse::<i64>().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}

/// A page from `rows` read with `limit + 1`: the rows to show, and the
/// cursor of the next page if there is one (`key` gives a row's
/// `(at, id)`).
pub(super) fn split<T>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> (i64, &str)) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(|last| {
        let (at, id) = key(last);
        cursor(at, id)
    });
    (rows, next)
}

/// A page answered as a bare array, with `Next-Cursor` when more follow.
pub(super) fn array_page<T: Serialize>(rows: Vec<T>, next: Option<String>) -> Response {
    let mut response = Json(rows).into_response();
    if let Some(value) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(NEXT_CURSOR, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_a_foreign_one_is_refused() {
        assert_eq!(parse_cursor(&cursor(1733, "0193-ab")).unwrap(), (1733, "0193-ab".to_owned()));
        for bad in ["", "1733", "x_id", "1733_", &format!("1_{}", "i".repeat(65))] {
            assert!(parse_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_page_says_whether_another_follows() {
        let rows = vec![(3, "c"), (2, "b"), (1, "a")];
        assert_eq!(split(rows.clone(), 3, |r| (r.0, r.1)), (rows.clone(), None));
        assert_eq!(split(rows, 2, |r| (r.0, r.1)), (vec![(3, "c"), (2, "b")], Some("2_b".to_owned())));
    }
}
