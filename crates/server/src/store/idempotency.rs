//! Idempotency keys of the REST API (migrations
//! `sqlite/0034_idempotency_keys.sql`, `postgres/0027_idempotency_keys.sql`):
//! the SQL of both backends, one text each (`$n` parameters; SQLite reads
//! them as `?n`). The rules (which requests, what a principal is, what is
//! replayed) are in `http::idempotency`.

use rusqlite::{OptionalExtension, params};
use sqlx::Row as _;

use super::lite;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::Result;

/// How long a key is remembered (then claimed afresh, and deleted by the
/// lead's retention job).
pub const REMEMBERED_FOR_MS: i64 = 24 * 3600 * 1000;

/// Whose key it is: a key is remembered per site and principal.
#[derive(Debug, Clone)]
pub struct KeyScope {
    pub site_id: String,
    /// `agent:<id>`, `token:<id>` or `visitor:<id>`.
    pub principal: String,
    /// The client's `Idempotency-Key`.
    pub key: String,
}

/// A request asking to run under a key.
#[derive(Debug, Clone)]
pub struct KeyClaim {
    pub scope: KeyScope,
    /// SHA-256 (hex) of the request's method, path, query and body.
    pub fingerprint: String,
    pub now: i64,
    /// A key used before this (ms) is forgotten: claimed afresh.
    pub forget_before: i64,
    /// A claim still running since before this (ms) is taken over: its
    /// request died with its node.
    pub lapsed_before: i64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The key is this request's: run it, then `finish` or `release`.
    /// `at` identifies the claim (a lapsed claim's late answer is dropped).
    Ours { at: i64 },
    /// Another request holds or held the key.
    Taken(KeyRecord),
}

/// A key as another request left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub fingerprint: String,
    /// `None` while that request runs.
    pub answer: Option<StoredAnswer>,
}

/// The first answer given under a key, replayed to retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Insert the claim, or take over a forgotten or lapsed one; one row
/// changed means the key is ours.
const CLAIM: &str = "INSERT INTO idempotency_keys (site_id, principal, idem_key, fingerprint, created_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (site_id, principal, idem_key) DO UPDATE \
                     SET fingerprint = excluded.fingerprint, created_at = excluded.created_at, \
                         status = NULL, content_type = NULL, body = NULL \
                     WHERE idempotency_keys.created_at < $6 \
                        OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < $7)";
const FIND: &str = "SELECT fingerprint, status, content_type, body FROM idempotency_keys \
                    WHERE site_id = $1 AND principal = $2 AND idem_key = $3";
const FINISH: &str = "UPDATE idempotency_keys SET status = $5, content_type = $6, body = $7 \
                      WHERE site_id = $1 AND principal = $2 AND idem_key = $3 AND created_at = $4 AND status IS NULL";
const RELEASE: &str = "DELETE FROM idempotency_keys \
                       WHERE site_id = $1 AND principal = $2 AND idem_key = $3 AND created_at = $4 AND status IS NULL";
const FORGET: &str = "DELETE FROM idempotency_keys WHERE created_at < $1";

/// `sql` with a claim bound as `$1`–`$4`: its scope and when it was made.
fn pg_claim_query<'q>(
    sql: &'static str,
    scope: &'q KeyScope,
    at: i64,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql).bind(&scope.site_id).bind(&scope.principal).bind(&scope.key).bind(at)
}

fn record(fingerprint: String, status: Option<i64>, content_type: Option<String>, body: Option<Vec<u8>>) -> KeyRecord {
    let answer = status.map(|s| StoredAnswer {
        status: u16::try_from(s).unwrap_or(500),
        content_type,
        body: body.unwrap_or_default(),
    });
    KeyRecord { fingerprint, answer }
}

impl SqliteStore {
    pub(super) async fn idempotency_claim(&self, claim: KeyClaim) -> Result<Option<Claimed>> {
        // One writer thread: the insert and the read that follows it see
        // no other writer between them.
        self.write(move |c| {
            let KeyClaim { scope, fingerprint, now, forget_before, lapsed_before } = claim;
            let changed = c.prepare_cached(&lite(CLAIM))?.execute(params![
                scope.site_id,
                scope.principal,
                scope.key,
                fingerprint,
                now,
                forget_before,
                lapsed_before
            ])?;
            if changed == 1 {
                return Ok(Some(Claimed::Ours { at: now }));
            }
            let found = c
                .prepare_cached(&lite(FIND))?
                .query_row(params![scope.site_id, scope.principal, scope.key], |r| {
                    Ok(record(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            Ok(found.map(Claimed::Taken))
        })
        .await
    }

    pub(super) async fn idempotency_finish(&self, scope: KeyScope, at: i64, answer: StoredAnswer) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(&lite(FINISH))?.execute(params![
                scope.site_id,
                scope.principal,
                scope.key,
                at,
                i64::from(answer.status),
                answer.content_type,
                answer.body
            ])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn idempotency_release(&self, scope: KeyScope, at: i64) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(&lite(RELEASE))?.execute(params![scope.site_id, scope.principal, scope.key, at])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn idempotency_forget(&self, before: i64) -> Result<u64> {
        self.write(move |c| Ok(c.prepare_cached(&lite(FORGET))?.execute(params![before])? as u64)).await
    }
}

impl PostgresStore {
    pub(super) async fn idempotency_claim(&self, claim: KeyClaim) -> Result<Option<Claimed>> {
        let pool = self.p().await?;
        let KeyClaim { scope, fingerprint, now, forget_before, lapsed_before } = claim;
        // The primary key settles a race: of two inserts at once, one
        // waits for the other's commit and then changes nothing.
        let changed = sqlx::query(CLAIM)
            .bind(&scope.site_id)
            .bind(&scope.principal)
            .bind(&scope.key)
            .bind(&fingerprint)
            .bind(now)
            .bind(forget_before)
            .bind(lapsed_before)
            .execute(pool)
            .await?
            .rows_affected();
        if changed == 1 {
            return Ok(Some(Claimed::Ours { at: now }));
        }
        let row =
            sqlx::query(FIND).bind(&scope.site_id).bind(&scope.principal).bind(&scope.key).fetch_optional(pool).await?;
        let Some(r) = row else { return Ok(None) };
        let status: Option<i32> = r.try_get("status")?;
        Ok(Some(Claimed::Taken(record(
            r.try_get("fingerprint")?,
            status.map(i64::from),
            r.try_get("content_type")?,
            r.try_get("body")?,
        ))))
    }

    pub(super) async fn idempotency_finish(&self, scope: KeyScope, at: i64, answer: StoredAnswer) -> Result<()> {
        pg_claim_query(FINISH, &scope, at)
            .bind(i32::from(answer.status))
            .bind(&answer.content_type)
            .bind(&answer.body)
            .execute(self.p().await?)
            .await?;
        Ok(())
    }

    pub(super) async fn idempotency_release(&self, scope: KeyScope, at: i64) -> Result<()> {
        pg_claim_query(RELEASE, &scope, at).execute(self.p().await?).await?;
        Ok(())
    }

    pub(super) async fn idempotency_forget(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query(FORGET).bind(before).execute(self.p().await?).await?.rows_affected())
    }
}
