//! Invitations (migrations `sqlite/0015_invitations.sql`,
//! `postgres/0009_invitations.sql`): how a site's admin adds a person. The
//! invitation and the email carrying it are written in one transaction;
//! accepting it makes the agent and closes it in another. The rules live
//! in `admin::invitations`; this file holds the record and the SQL of both
//! backends.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sqlx::Row as _;

use super::outbox::{NewDelivery, pg_insert_delivery, sqlite_insert_delivery};
use super::postgres::{PostgresStore, insert_agent as pg_insert_agent};
use super::sqlite::{SqliteStore, insert_agent as sqlite_insert_agent};
use super::{Agent, Role};
use crate::error::{Error, Result};

/// An invitation as stored and as admins see it (it holds no secret: the
/// link is signed, never stored).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Invitation {
    pub id: String,
    pub site_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub chat_limit: i64,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Invitation {
    /// Still usable at `now`: neither accepted, revoked nor expired.
    pub fn open_at(&self, now: i64) -> bool {
        self.accepted_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }
}

const COLUMNS: &str =
    "id, site_id, email, name, role, chat_limit, invited_by, created_at, expires_at, accepted_at, revoked_at";

/// What refuses an invitation on the inviting site (facts of that site
/// only: whether another site knows the address is never asked).
const SITE_HAS_AGENT: &str = "this site has an agent with that email";
const PENDING: &str = "that address has an invitation waiting; revoke it to send a new one";
/// Why an invitation cannot be accepted (any of: unknown, revoked,
/// accepted, expired).
const NOT_OPEN: &str = "invitation";

fn invitation(
    text: impl Fn(&str) -> Result<String>,
    int: impl Fn(&str) -> Result<i64>,
    int_opt: impl Fn(&str) -> Result<Option<i64>>,
) -> Result<Invitation> {
    let role = text("role")?;
    Ok(Invitation {
        id: text("id")?,
        site_id: text("site_id")?,
        email: text("email")?,
        name: text("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| Error::Store(anyhow::anyhow!("unexpected role in invitations: {role:?}")))?,
        chat_limit: int("chat_limit")?,
        invited_by: text("invited_by")?,
        created_at: int("created_at")?,
        expires_at: int("expires_at")?,
        accepted_at: int_opt("accepted_at")?,
        revoked_at: int_opt("revoked_at")?,
    })
}

fn sqlite_row(r: &rusqlite::Row) -> Result<Invitation> {
    invitation(|c| Ok(r.get(c)?), |c| Ok(r.get(c)?), |c| Ok(r.get(c)?))
}

fn pg_row(r: &sqlx::postgres::PgRow) -> Result<Invitation> {
    invitation(|c| Ok(r.try_get(c)?), |c| Ok(r.try_get(c)?), |c| Ok(r.try_get(c)?))
}

/// The agent an accepted invitation makes.
fn agent_of(inv: &Invitation, password_hash: &str) -> Agent {
    super::NewAgent {
        site_id: &inv.site_id,
        email: &inv.email,
        name: &inv.name,
        role: inv.role,
        password_hash,
        chat_limit: inv.chat_limit,
    }
    .into_agent()
}

/// An email already taken when the invitation is accepted: only the
/// address's owner, who holds the link, reads this.
fn taken(e: Error) -> Error {
    match e {
        Error::Conflict(_) => Error::conflict("this address already has a Holdfast account; sign in with it"),
        e => e,
    }
}

impl SqliteStore {
    pub(super) async fn invitations_create(&self, inv: Invitation, email: NewDelivery) -> Result<()> {
        self.write(move |c| {
            let agent: Option<String> = c
                .prepare_cached("SELECT id FROM agents WHERE site_id = ?1 AND email = ?2")?
                .query_row(params![inv.site_id, inv.email], |r| r.get(0))
                .optional()?;
            if agent.is_some() {
                return Err(Error::conflict(SITE_HAS_AGENT));
            }
            let pending: Option<String> = c
                .prepare_cached(
                    "SELECT id FROM invitations WHERE site_id = ?1 AND email = ?2 AND accepted_at IS NULL \
                     AND revoked_at IS NULL AND expires_at > ?3",
                )?
                .query_row(params![inv.site_id, inv.email, inv.created_at], |r| r.get(0))
                .optional()?;
            if pending.is_some() {
                return Err(Error::conflict(PENDING));
            }
            c.prepare_cached(&format!(
                "INSERT INTO invitations ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL)"
            ))?
            .execute(params![
                inv.id,
                inv.site_id,
                inv.email,
                inv.name,
                inv.role.as_str(),
                inv.chat_limit,
                inv.invited_by,
                inv.created_at,
                inv.expires_at
            ])?;
            sqlite_insert_delivery(c, &email)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn invitations_open(&self, site_id: &str) -> Result<Vec<Invitation>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM invitations WHERE site_id = ?1 AND accepted_at IS NULL \
                 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 500"
            ))?;
            let mut rows = stmt.query([&site_id])?;
            let mut found = Vec::new();
            while let Some(r) = rows.next()? {
                found.push(sqlite_row(r)?);
            }
            Ok(found)
        })
        .await
    }

    pub(super) async fn invitations_get(&self, id: &str) -> Result<Option<Invitation>> {
        let id = id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM invitations WHERE id = ?1"))?;
            let mut rows = stmt.query([&id])?;
            rows.next()?.map(sqlite_row).transpose()
        })
        .await
    }

    pub(super) async fn invitations_revoke(&self, site_id: &str, id: &str, now: i64) -> Result<bool> {
        let (site_id, id) = (site_id.to_owned(), id.to_owned());
        self.write(move |c| {
            let changed = c
                .prepare_cached(
                    "UPDATE invitations SET revoked_at = ?3 WHERE site_id = ?1 AND id = ?2 \
                     AND accepted_at IS NULL AND revoked_at IS NULL",
                )?
                .execute(params![site_id, id, now])?;
            Ok(changed == 1)
        })
        .await
    }

    pub(super) async fn invitations_accept(&self, id: &str, password_hash: &str, now: i64) -> Result<Agent> {
        let (id, password_hash) = (id.to_owned(), password_hash.to_owned());
        self.write(move |c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM invitations WHERE id = ?1"))?;
            let inv = match stmt.query([&id])?.next()? {
                Some(r) => sqlite_row(r)?,
                None => return Err(Error::NotFound(NOT_OPEN)),
            };
            if !inv.open_at(now) {
                return Err(Error::NotFound(NOT_OPEN));
            }
            let agent = agent_of(&inv, &password_hash);
            sqlite_insert_agent(c, &agent).map_err(taken)?;
            c.prepare_cached("UPDATE invitations SET accepted_at = ?2 WHERE id = ?1")?.execute(params![id, now])?;
            Ok(agent)
        })
        .await
    }
}

impl PostgresStore {
    pub(super) async fn invitations_create(&self, inv: Invitation, email: NewDelivery) -> Result<()> {
        let mut tx = self.p().await?.begin().await?;
        // Two admins inviting one address at once: the second waits here.
        sqlx::query("SELECT id FROM sites WHERE id = $1 FOR UPDATE").bind(&inv.site_id).execute(&mut *tx).await?;
        let agent = sqlx::query("SELECT id FROM agents WHERE site_id = $1 AND email = $2")
            .bind(&inv.site_id)
            .bind(&inv.email)
            .fetch_optional(&mut *tx)
            .await?;
        if agent.is_some() {
            return Err(Error::conflict(SITE_HAS_AGENT));
        }
        let pending = sqlx::query(
            "SELECT id FROM invitations WHERE site_id = $1 AND email = $2 AND accepted_at IS NULL \
             AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(&inv.site_id)
        .bind(&inv.email)
        .bind(inv.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        if pending.is_some() {
            return Err(Error::conflict(PENDING));
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO invitations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL)"
        )))
        .bind(&inv.id)
        .bind(&inv.site_id)
        .bind(&inv.email)
        .bind(&inv.name)
        .bind(inv.role.as_str())
        .bind(inv.chat_limit)
        .bind(&inv.invited_by)
        .bind(inv.created_at)
        .bind(inv.expires_at)
        .execute(&mut *tx)
        .await?;
        pg_insert_delivery(&mut tx, &email).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn invitations_open(&self, site_id: &str) -> Result<Vec<Invitation>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM invitations WHERE site_id = $1 AND accepted_at IS NULL \
             AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 500"
        )))
        .bind(site_id)
        .fetch_all(self.p().await?)
        .await?
        .iter()
        .map(pg_row)
        .collect()
    }

    pub(super) async fn invitations_get(&self, id: &str) -> Result<Option<Invitation>> {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM invitations WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.p().await?)
            .await?
            .as_ref()
            .map(pg_row)
            .transpose()
    }

    pub(super) async fn invitations_revoke(&self, site_id: &str, id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE invitations SET revoked_at = $3 WHERE site_id = $1 AND id = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(site_id)
        .bind(id)
        .bind(now)
        .execute(self.p().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn invitations_accept(&self, id: &str, password_hash: &str, now: i64) -> Result<Agent> {
        let mut tx = self.p().await?.begin().await?;
        let inv =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM invitations WHERE id = $1 FOR UPDATE")))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(pg_row)
                .transpose()?
                .filter(|inv| inv.open_at(now))
                .ok_or(Error::NotFound(NOT_OPEN))?;
        let agent = agent_of(&inv, password_hash);
        pg_insert_agent(&mut tx, &agent).await.map_err(taken)?;
        sqlx::query("UPDATE invitations SET accepted_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(agent)
    }
}
