//! Proactive greetings (migrations `sqlite/0026_greetings.sql`,
//! `postgres/0018_greetings.sql`): the rules, how often widgets showed
//! each, and which rule greeted each chat a visitor started by answering.
//! The rules themselves (what a rule may say, who may change one) are in
//! `admin::greetings`; this file holds the record and the SQL of both
//! backends, one text each (`$n` parameters; SQLite reads them as `?n`).

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::lite;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::Result;

/// One rule as stored, with its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GreetingRule {
    pub id: String,
    pub site_id: String,
    /// The admin's name for it (never shown to visitors).
    pub name: String,
    pub enabled: bool,
    /// The page's URL, `*` standing for anything; empty: any page.
    pub url_pattern: String,
    /// The referrer, the same way; empty: any (or none).
    pub referrer_pattern: String,
    /// Seconds on the page before it shows.
    pub min_seconds: i64,
    /// Pages seen this visit (this one included) before it shows.
    pub min_pages: i64,
    /// `any`, `new` or `returning`.
    pub visitor: String,
    /// The agent it comes from; `None`: the team (the site's name).
    pub from_agent_id: Option<String>,
    pub message: String,
    /// Greetings widgets showed.
    pub shown: i64,
    /// Chats started by answering one.
    pub started: i64,
    pub created_at: i64,
}

const INSERT: &str = "INSERT INTO greeting_rules (id, site_id, name, enabled, url_pattern, referrer_pattern, \
                      min_seconds, min_pages, visitor, from_agent_id, message, shown, created_at) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12)";
const LIST: &str = "SELECT r.*, (SELECT count(*) FROM greeted_chats g WHERE g.rule_id = r.id) AS started \
                    FROM greeting_rules r WHERE r.site_id = $1 ORDER BY r.created_at, r.id";
// The same $1–$11 as INSERT (`rule_fields`, `bind_rule`).
const UPDATE: &str = "UPDATE greeting_rules SET name = $3, enabled = $4, url_pattern = $5, referrer_pattern = $6, \
                      min_seconds = $7, min_pages = $8, visitor = $9, from_agent_id = $10, message = $11 \
                      WHERE id = $1 AND site_id = $2";
const DELETE: &str = "DELETE FROM greeting_rules WHERE site_id = $1 AND id = $2";
const SHOWN: &str = "UPDATE greeting_rules SET shown = shown + 1 WHERE site_id = $1 AND id = $2 AND enabled";
// Run after SHOWN counted: the same greeting in its quarter hour ($3).
const SHOWN_AT: &str = "INSERT INTO greeting_shown (rule_id, site_id, quarter, shown) VALUES ($2, $1, $3, 1) \
                        ON CONFLICT (rule_id, quarter) DO UPDATE SET shown = greeting_shown.shown + 1";
// Each rule of a site with its greetings shown and chats started in
// [$2, $3) (milliseconds; `greeting_figures`).
const FIGURES: &str = "SELECT r.id, r.name, \
                       CAST(COALESCE((SELECT sum(s.shown) FROM greeting_shown s \
                                      WHERE s.rule_id = r.id AND s.quarter >= $2 AND s.quarter < $3), 0) AS BIGINT), \
                       (SELECT count(*) FROM greeted_chats g \
                        WHERE g.rule_id = r.id AND g.created_at >= $2 AND g.created_at < $3) \
                       FROM greeting_rules r WHERE r.site_id = $1 ORDER BY r.created_at, r.id";
const GREETED: &str = "INSERT INTO greeted_chats (conversation_id, rule_id, created_at) VALUES ($1, $2, $3) \
                       ON CONFLICT DO NOTHING";
const GREETED_BY: &str = "SELECT rule_id FROM greeted_chats WHERE conversation_id = $1";

/// A quarter hour's first millisecond: greetings shown are counted per
/// quarter, the finest step of any time zone's offset, so a report's
/// days (midnight to midnight in the site's zone) are whole quarters.
pub fn quarter_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(QUARTER_MS) * QUARTER_MS
}

const QUARTER_MS: i64 = 15 * 60 * 1000;

/// A rule's greetings shown and chats started over a report's range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GreetingFigures {
    pub id: String,
    pub name: String,
    pub shown: i64,
    pub started: i64,
}

macro_rules! rule_from {
    ($r:expr, $get:ident) => {
        GreetingRule {
            id: $r.$get("id")?,
            site_id: $r.$get("site_id")?,
            name: $r.$get("name")?,
            enabled: $r.$get("enabled")?,
            url_pattern: $r.$get("url_pattern")?,
            referrer_pattern: $r.$get("referrer_pattern")?,
            min_seconds: $r.$get("min_seconds")?,
            min_pages: $r.$get("min_pages")?,
            visitor: $r.$get("visitor")?,
            from_agent_id: $r.$get("from_agent_id")?,
            message: $r.$get("message")?,
            shown: $r.$get("shown")?,
            started: $r.$get("started")?,
            created_at: $r.$get("created_at")?,
        }
    };
}

fn sqlite_rule(r: &Row) -> rusqlite::Result<GreetingRule> {
    Ok(rule_from!(r, get))
}

fn pg_rule(r: &PgRow) -> Result<GreetingRule> {
    Ok(rule_from!(r, try_get))
}

/// A rule's $1–$11 of INSERT and UPDATE, for SQLite.
fn rule_fields(g: &GreetingRule) -> [&dyn rusqlite::ToSql; 11] {
    [
        &g.id,
        &g.site_id,
        &g.name,
        &g.enabled,
        &g.url_pattern,
        &g.referrer_pattern,
        &g.min_seconds,
        &g.min_pages,
        &g.visitor,
        &g.from_agent_id,
        &g.message,
    ]
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// A rule's $1–$11 of INSERT and UPDATE, for PostgreSQL.
fn bind_rule<'q>(q: PgQuery<'q>, g: &'q GreetingRule) -> PgQuery<'q> {
    q.bind(&g.id)
        .bind(&g.site_id)
        .bind(&g.name)
        .bind(g.enabled)
        .bind(&g.url_pattern)
        .bind(&g.referrer_pattern)
        .bind(g.min_seconds)
        .bind(g.min_pages)
        .bind(&g.visitor)
        .bind(&g.from_agent_id)
        .bind(&g.message)
}

impl SqliteStore {
    pub(super) async fn greeting_insert(&self, g: GreetingRule) -> Result<()> {
        self.write(move |c| {
            let mut fields = rule_fields(&g).to_vec();
            fields.push(&g.created_at);
            c.prepare_cached(&lite(INSERT))?.execute(&*fields)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn greeting_list(&self, site_id: &str) -> Result<Vec<GreetingRule>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&lite(LIST))?;
            let rows = stmt.query_map(params![site_id], sqlite_rule)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(super) async fn greeting_update(&self, g: GreetingRule) -> Result<bool> {
        self.write(move |c| Ok(c.prepare_cached(&lite(UPDATE))?.execute(&rule_fields(&g)[..])? > 0)).await
    }

    pub(super) async fn greeting_delete(&self, site_id: &str, id: &str) -> Result<bool> {
        let (site_id, id) = (site_id.to_owned(), id.to_owned());
        self.write(move |c| Ok(c.prepare_cached(&lite(DELETE))?.execute(params![site_id, id])? > 0)).await
    }

    pub(super) async fn greeting_count_shown(&self, site_id: &str, id: &str, at: i64) -> Result<bool> {
        let (site_id, id) = (site_id.to_owned(), id.to_owned());
        self.write(move |c| {
            if c.prepare_cached(&lite(SHOWN))?.execute(params![site_id, id])? == 0 {
                return Ok(false);
            }
            c.prepare_cached(&lite(SHOWN_AT))?.execute(params![site_id, id, quarter_of(at)])?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn greeting_figures(&self, site_id: &str, from: i64, to: i64) -> Result<Vec<GreetingFigures>> {
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&lite(FIGURES))?;
            let rows = stmt.query_map(params![site_id, from, to], |r| {
                Ok(GreetingFigures { id: r.get(0)?, name: r.get(1)?, shown: r.get(2)?, started: r.get(3)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(super) async fn greeting_record(&self, conversation_id: &str, rule_id: &str, at: i64) -> Result<()> {
        let (conv, rule) = (conversation_id.to_owned(), rule_id.to_owned());
        self.write(move |c| {
            c.prepare_cached(&lite(GREETED))?.execute(params![conv, rule, at])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn greeting_rule_of(&self, conversation_id: &str) -> Result<Option<String>> {
        let conv = conversation_id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(&lite(GREETED_BY))?.query_row(params![conv], |r| r.get(0)).optional()?)
        })
        .await
    }
}

impl PostgresStore {
    pub(super) async fn greeting_insert(&self, g: GreetingRule) -> Result<()> {
        bind_rule(sqlx::query(INSERT), &g).bind(g.created_at).execute(self.p().await?).await?;
        Ok(())
    }

    pub(super) async fn greeting_list(&self, site_id: &str) -> Result<Vec<GreetingRule>> {
        let rows = sqlx::query(LIST).bind(site_id).fetch_all(self.p().await?).await?;
        rows.iter().map(pg_rule).collect()
    }

    pub(super) async fn greeting_update(&self, g: GreetingRule) -> Result<bool> {
        let done = bind_rule(sqlx::query(UPDATE), &g).execute(self.p().await?).await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn greeting_delete(&self, site_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(DELETE).bind(site_id).bind(id).execute(self.p().await?).await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn greeting_count_shown(&self, site_id: &str, id: &str, at: i64) -> Result<bool> {
        let mut tx = self.p().await?.begin().await?;
        if sqlx::query(SHOWN).bind(site_id).bind(id).execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(SHOWN_AT).bind(site_id).bind(id).bind(quarter_of(at)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn greeting_figures(&self, site_id: &str, from: i64, to: i64) -> Result<Vec<GreetingFigures>> {
        let rows = sqlx::query(FIGURES).bind(site_id).bind(from).bind(to).fetch_all(self.p().await?).await?;
        rows.iter()
            .map(|r| {
                Ok(GreetingFigures {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    shown: r.try_get(2)?,
                    started: r.try_get(3)?,
                })
            })
            .collect()
    }

    pub(super) async fn greeting_record(&self, conversation_id: &str, rule_id: &str, at: i64) -> Result<()> {
        sqlx::query(GREETED).bind(conversation_id).bind(rule_id).bind(at).execute(self.p().await?).await?;
        Ok(())
    }

    pub(super) async fn greeting_rule_of(&self, conversation_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(GREETED_BY).bind(conversation_id).fetch_optional(self.p().await?).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::quarter_of;

    #[test]
    fn a_day_in_any_zone_is_whole_quarters() {
        // Midnight in Kolkata (+05:30) and Kathmandu (+05:45) start a quarter,
        // so a report's day boundary never splits one.
        for zone in ["Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "Europe/Oslo"] {
            let tz = jiff::tz::TimeZone::get(zone).unwrap();
            let midnight = jiff::civil::date(2026, 3, 29).to_zoned(tz).unwrap().timestamp().as_millisecond();
            assert_eq!(quarter_of(midnight), midnight, "{zone}");
            assert_eq!(quarter_of(midnight - 1), midnight - 15 * 60 * 1000, "{zone}");
        }
        assert_eq!(quarter_of(-1), -15 * 60 * 1000);
    }
}
