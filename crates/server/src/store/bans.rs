//! Bans (migrations `sqlite/0018_bans.sql`, `postgres/0012_bans.sql`): the
//! rows, and the address a visitor last came from (`visitors.last_ip`),
//! which an agent's "ban their address too" reads. The rules (who may ban,
//! what a CIDR is, when a ban holds) are written once in `abuse::bans`;
//! this file holds the record and the SQL of both backends, one text each
//! (`$n` parameters; SQLite reads them as `?n`).

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::lite;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::Result;

/// One ban as stored. Travels between nodes on the bus, and to admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ban {
    pub id: String,
    pub site_id: String,
    /// The visitor refused, if the ban names one.
    pub visitor_id: Option<String>,
    /// The address or network refused (`203.0.113.7/32`, `2001:db8::/48`),
    /// if the ban names one.
    pub cidr: Option<String>,
    /// Why, in the banning agent's words (shown to the site's admins only).
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
    /// When the ban ends by itself; `None`: until lifted.
    pub expires_at: Option<i64>,
    pub lifted_by: Option<String>,
    pub lifted_at: Option<i64>,
}

impl Ban {
    /// Whether the ban refuses anyone at `now`.
    pub fn in_force(&self, now: i64) -> bool {
        self.lifted_at.is_none() && self.expires_at.is_none_or(|end| end > now)
    }
}

const INSERT: &str = "INSERT INTO bans (id, site_id, visitor_id, cidr, reason, created_by, created_at, expires_at, \
                      changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7)";
/// A site's bans after a cursor `(created_at, id)` in newest-first order.
const SITE_BANS: &str = "SELECT * FROM bans WHERE site_id = $1 AND (created_at < $3 OR (created_at = $3 AND id < $4)) \
                         ORDER BY created_at DESC, id DESC LIMIT $2";
const LIFT: &str = "UPDATE bans SET lifted_by = $1, lifted_at = $2, changed_at = $2 \
                    WHERE site_id = $3 AND id = $4 AND lifted_at IS NULL";
const ONE: &str = "SELECT * FROM bans WHERE site_id = $1 AND id = $2";
const ACTIVE: &str = "SELECT * FROM bans WHERE lifted_at IS NULL AND (expires_at IS NULL OR expires_at > $1)";
const CHANGED: &str = "SELECT max(changed_at) FROM bans";
const VISITOR_IP: &str = "SELECT last_ip FROM visitors WHERE id = $1";

/// A ban from a row of either backend: `$get` is the row's getter
/// (`get` for rusqlite, `try_get` for sqlx), the columns the same.
macro_rules! ban_from {
    ($r:expr, $get:ident) => {
        Ban {
            id: $r.$get("id")?,
            site_id: $r.$get("site_id")?,
            visitor_id: $r.$get("visitor_id")?,
            cidr: $r.$get("cidr")?,
            reason: $r.$get("reason")?,
            created_by: $r.$get("created_by")?,
            created_at: $r.$get("created_at")?,
            expires_at: $r.$get("expires_at")?,
            lifted_by: $r.$get("lifted_by")?,
            lifted_at: $r.$get("lifted_at")?,
        }
    };
}

fn sqlite_ban(r: &Row) -> rusqlite::Result<Ban> {
    Ok(ban_from!(r, get))
}

fn pg_ban(r: &PgRow) -> Result<Ban> {
    Ok(ban_from!(r, try_get))
}

impl SqliteStore {
    pub(super) async fn ban_insert(&self, ban: Ban) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(&lite(INSERT))?.execute(params![
                ban.id,
                ban.site_id,
                ban.visitor_id,
                ban.cidr,
                ban.reason,
                ban.created_by,
                ban.created_at,
                ban.expires_at
            ])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn ban_list(&self, site_id: &str, after: (i64, String), limit: i64) -> Result<Vec<Ban>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&lite(SITE_BANS))?;
            let rows = stmt.query_map(params![site_id, limit, after.0, after.1], sqlite_ban)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(super) async fn ban_lift(&self, site_id: &str, id: &str, by: &str, at: i64) -> Result<Option<Ban>> {
        let (site_id, id, by) = (site_id.to_owned(), id.to_owned(), by.to_owned());
        self.write(move |c| {
            c.prepare_cached(&lite(LIFT))?.execute(params![by, at, site_id, id])?;
            Ok(c.prepare_cached(&lite(ONE))?.query_row(params![site_id, id], sqlite_ban).optional()?)
        })
        .await
    }

    pub(super) async fn ban_active(&self, now: i64) -> Result<Vec<Ban>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&lite(ACTIVE))?;
            let rows = stmt.query_map(params![now], sqlite_ban)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(super) async fn ban_changed(&self) -> Result<Option<i64>> {
        self.read(move |c| Ok(c.prepare_cached(CHANGED)?.query_row([], |r| r.get(0))?)).await
    }

    pub(super) async fn ban_visitor_ip(&self, visitor_id: &str) -> Result<Option<String>> {
        let id = visitor_id.to_owned();
        self.read(move |c| {
            let ip: Option<Option<String>> =
                c.prepare_cached(&lite(VISITOR_IP))?.query_row(params![id], |r| r.get(0)).optional()?;
            Ok(ip.flatten())
        })
        .await
    }
}

impl PostgresStore {
    pub(super) async fn ban_insert(&self, ban: Ban) -> Result<()> {
        sqlx::query(INSERT)
            .bind(&ban.id)
            .bind(&ban.site_id)
            .bind(&ban.visitor_id)
            .bind(&ban.cidr)
            .bind(&ban.reason)
            .bind(&ban.created_by)
            .bind(ban.created_at)
            .bind(ban.expires_at)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    pub(super) async fn ban_list(&self, site_id: &str, after: (i64, String), limit: i64) -> Result<Vec<Ban>> {
        let rows = sqlx::query(SITE_BANS)
            .bind(site_id)
            .bind(limit)
            .bind(after.0)
            .bind(after.1)
            .fetch_all(self.p().await?)
            .await?;
        rows.iter().map(pg_ban).collect()
    }

    pub(super) async fn ban_lift(&self, site_id: &str, id: &str, by: &str, at: i64) -> Result<Option<Ban>> {
        let pool = self.p().await?;
        sqlx::query(LIFT).bind(by).bind(at).bind(site_id).bind(id).execute(pool).await?;
        sqlx::query(ONE).bind(site_id).bind(id).fetch_optional(pool).await?.map(|r| pg_ban(&r)).transpose()
    }

    pub(super) async fn ban_active(&self, now: i64) -> Result<Vec<Ban>> {
        let rows = sqlx::query(ACTIVE).bind(now).fetch_all(self.p().await?).await?;
        rows.iter().map(pg_ban).collect()
    }

    pub(super) async fn ban_changed(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(CHANGED).fetch_one(self.p().await?).await?)
    }

    pub(super) async fn ban_visitor_ip(&self, visitor_id: &str) -> Result<Option<String>> {
        let ip: Option<Option<String>> =
            sqlx::query_scalar(VISITOR_IP).bind(visitor_id).fetch_optional(self.p().await?).await?;
        Ok(ip.flatten())
    }
}
