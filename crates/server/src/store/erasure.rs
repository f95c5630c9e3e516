//! Erasing a visitor (`privacy::erase_visitor`): their details and their
//! conversations' message (and internal note) bodies go for good, in one transaction; the
//! events stay, as tombstones (`body` gone, `data` `{"erased":true}`), so
//! sequence numbers stay gap-free and a client resuming with an old cursor
//! gets tombstones, not errors. Deliveries naming them (an email to their
//! address, or one about their conversations) lose their payload, and the
//! queued ones are dropped. One text per statement for both backends.

use rusqlite::{OptionalExtension, params};

use super::lite;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::{Error, Result};

/// What an erasure removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Erased {
    /// Message and internal note bodies removed.
    pub messages: u64,
    /// Deliveries emptied (queued ones also dropped).
    pub deliveries: u64,
}

const EMAIL: &str = "SELECT email FROM visitors WHERE id = $1 AND site_id = $2";
const VISITOR: &str = "UPDATE visitors SET name = NULL, email = NULL, page_url = NULL, referrer = NULL, \
                       user_agent = NULL, last_ip = NULL WHERE id = $1 AND site_id = $2";
const MESSAGES: &str = "UPDATE events SET body = NULL, data = '{\"erased\":true}' WHERE kind IN ('message', 'note') \
                        AND body IS NOT NULL AND conversation_id IN \
                        (SELECT id FROM conversations WHERE visitor_id = $1 AND site_id = $2)";
const DELIVERIES: &str = "UPDATE deliveries SET payload = '{}', \
    recipient = CASE WHEN recipient = $3 THEN '(erased)' ELSE recipient END, \
    last_error = CASE WHEN status = 'queued' THEN 'dropped: the visitor''s data was erased' ELSE last_error END, \
    status = CASE WHEN status = 'queued' THEN 'failed' ELSE status END, lease_until = NULL \
    WHERE site_id = $2 AND payload <> '{}' AND (recipient = $3 OR EXISTS (SELECT 1 FROM conversations c \
    WHERE c.visitor_id = $1 AND c.site_id = $2 AND deliveries.payload LIKE '%' || c.id || '%'))";

impl SqliteStore {
    pub(super) async fn erase(&self, site_id: &str, visitor_id: &str) -> Result<Erased> {
        let (site_id, visitor_id) = (site_id.to_owned(), visitor_id.to_owned());
        self.write(move |c| {
            let email: Option<Option<String>> =
                c.prepare_cached(&lite(EMAIL))?.query_row(params![visitor_id, site_id], |r| r.get(0)).optional()?;
            let Some(email) = email else { return Err(Error::NotFound("visitor")) };
            c.prepare_cached(&lite(VISITOR))?.execute(params![visitor_id, site_id])?;
            let messages = c.prepare_cached(&lite(MESSAGES))?.execute(params![visitor_id, site_id])?;
            let deliveries = c.prepare_cached(&lite(DELIVERIES))?.execute(params![visitor_id, site_id, email])?;
            c.prepare_cached(&lite(super::attachments::ERASE))?.execute(params![visitor_id, site_id])?;
            Ok(Erased { messages: messages as u64, deliveries: deliveries as u64 })
        })
        .await
    }
}

impl PostgresStore {
    pub(super) async fn erase(&self, site_id: &str, visitor_id: &str) -> Result<Erased> {
        let mut tx = self.p().await?.begin().await?;
        let email: Option<Option<String>> =
            sqlx::query_scalar(EMAIL).bind(visitor_id).bind(site_id).fetch_optional(&mut *tx).await?;
        let Some(email) = email else { return Err(Error::NotFound("visitor")) };
        sqlx::query(VISITOR).bind(visitor_id).bind(site_id).execute(&mut *tx).await?;
        let messages = sqlx::query(MESSAGES).bind(visitor_id).bind(site_id).execute(&mut *tx).await?.rows_affected();
        let deliveries =
            sqlx::query(DELIVERIES).bind(visitor_id).bind(site_id).bind(email).execute(&mut *tx).await?.rows_affected();
        sqlx::query(super::attachments::ERASE).bind(visitor_id).bind(site_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Erased { messages, deliveries })
    }
}
