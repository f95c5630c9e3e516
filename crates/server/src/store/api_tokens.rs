//! API tokens (migrations `sqlite/0028_api_tokens.sql`,
//! `postgres/0020_api_tokens.sql`): the record and the SQL of both
//! backends, one text each (`$n` parameters; SQLite reads them as `?n`).
//! The rules (who makes them, what a scope allows, the token's format) are
//! in `auth::api_tokens`; only the token's SHA-256 is ever stored.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::lite;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::Result;

/// A token as stored and as admins see it: its hash is not part of it, so
/// no view can show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub site_id: String,
    /// What the admin called it ("CRM sync").
    pub name: String,
    /// `read`, `write`, `admin`: what the token may do (`auth::api_tokens`).
    pub scopes: Vec<String>,
    /// The token's first characters, to tell tokens apart (`hf_AbCd…`).
    pub prefix: String,
    pub created_by: String,
    pub created_at: i64,
    /// When it was last used, to within a minute.
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const INSERT: &str = "INSERT INTO api_tokens (id, site_id, name, scopes, token_hash, prefix, created_by, created_at) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const BY_HASH: &str = "SELECT * FROM api_tokens WHERE token_hash = $1";
const SITE_TOKENS: &str = "SELECT * FROM api_tokens WHERE site_id = $1 ORDER BY created_at DESC";
const REVOKE: &str = "UPDATE api_tokens SET revoked_at = $1 WHERE site_id = $2 AND id = $3 AND revoked_at IS NULL";
const ONE: &str = "SELECT * FROM api_tokens WHERE site_id = $1 AND id = $2";
const TOUCH: &str = "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2";

macro_rules! token_from {
    ($r:expr, $get:ident) => {{
        let scopes: String = $r.$get("scopes")?;
        ApiToken {
            id: $r.$get("id")?,
            site_id: $r.$get("site_id")?,
            name: $r.$get("name")?,
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
            prefix: $r.$get("prefix")?,
            created_by: $r.$get("created_by")?,
            created_at: $r.$get("created_at")?,
            last_used_at: $r.$get("last_used_at")?,
            revoked_at: $r.$get("revoked_at")?,
        }
    }};
}

fn sqlite_token(r: &Row) -> rusqlite::Result<ApiToken> {
    Ok(token_from!(r, get))
}

fn pg_token(r: &PgRow) -> Result<ApiToken> {
    Ok(token_from!(r, try_get))
}

impl SqliteStore {
    pub(super) async fn api_token_insert(&self, token: ApiToken, hash: String) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(&lite(INSERT))?.execute(params![
                token.id,
                token.site_id,
                token.name,
                token.scopes.join(" "),
                hash,
                token.prefix,
                token.created_by,
                token.created_at
            ])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn api_token_find(&self, hash: &str) -> Result<Option<ApiToken>> {
        let hash = hash.to_owned();
        self.read(move |c| Ok(c.prepare_cached(&lite(BY_HASH))?.query_row(params![hash], sqlite_token).optional()?))
            .await
    }

    pub(super) async fn api_token_list(&self, site_id: &str) -> Result<Vec<ApiToken>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&lite(SITE_TOKENS))?;
            let rows = stmt.query_map(params![site_id], sqlite_token)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(super) async fn api_token_revoke(&self, site_id: &str, id: &str, at: i64) -> Result<Option<ApiToken>> {
        let (site_id, id) = (site_id.to_owned(), id.to_owned());
        self.write(move |c| {
            c.prepare_cached(&lite(REVOKE))?.execute(params![at, site_id, id])?;
            Ok(c.prepare_cached(&lite(ONE))?.query_row(params![site_id, id], sqlite_token).optional()?)
        })
        .await
    }

    pub(super) async fn api_token_touch(&self, id: &str, at: i64) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached(&lite(TOUCH))?.execute(params![at, id])?;
            Ok(())
        })
        .await
    }
}

impl PostgresStore {
    pub(super) async fn api_token_insert(&self, token: ApiToken, hash: String) -> Result<()> {
        sqlx::query(INSERT)
            .bind(&token.id)
            .bind(&token.site_id)
            .bind(&token.name)
            .bind(token.scopes.join(" "))
            .bind(&hash)
            .bind(&token.prefix)
            .bind(&token.created_by)
            .bind(token.created_at)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    pub(super) async fn api_token_find(&self, hash: &str) -> Result<Option<ApiToken>> {
        sqlx::query(BY_HASH).bind(hash).fetch_optional(self.p().await?).await?.map(|r| pg_token(&r)).transpose()
    }

    pub(super) async fn api_token_list(&self, site_id: &str) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(SITE_TOKENS).bind(site_id).fetch_all(self.p().await?).await?;
        rows.iter().map(pg_token).collect()
    }

    pub(super) async fn api_token_revoke(&self, site_id: &str, id: &str, at: i64) -> Result<Option<ApiToken>> {
        let pool = self.p().await?;
        sqlx::query(REVOKE).bind(at).bind(site_id).bind(id).execute(pool).await?;
        sqlx::query(ONE).bind(site_id).bind(id).fetch_optional(pool).await?.map(|r| pg_token(&r)).transpose()
    }

    pub(super) async fn api_token_touch(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query(TOUCH).bind(at).bind(id).execute(self.p().await?).await?;
        Ok(())
    }
}
