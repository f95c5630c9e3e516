//! Finding chats (issue 27; migrations `sqlite/0032_search.sql`,
//! `postgres/0025_search.sql`): by words, each found in the chat's
//! messages (their text or their files' names) or in its visitor's name or
//! email, and by filters; with no words, the site's chats newest first.
//! Each backend asks its own full-text index (SQLite FTS5, PostgreSQL
//! `tsvector` with GIN); the rest of the query is written once.
//!
//! Each word typed is the start of a word in the chat, case and accents
//! aside (on SQLite; PostgreSQL's 'simple' configuration keeps accents):
//! "ship" finds "shipping". All of them must be in the chat, not
//! necessarily in one message: "ship Canada" finds a chat where one
//! message says "shipped" and another "Canada". The snippet is cut from
//! the chat's latest message holding any of the words. A tombstone (an
//! erased or expired message) has no text, so nothing finds it.
//!
//! A word typed is always text, never query syntax: each becomes a quoted
//! term of the index's own query language (FTS5 `"…"*`, tsquery `'…':*`)
//! with its quotes (and, for tsquery, backslashes) escaped, and is passed
//! as a parameter; quotes, operators, parentheses, `NEAR`, colons and
//! column filters inside it are only characters the tokenizer drops.

use rusqlite::{Row, params_from_iter};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::ConversationStatus;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::Result;

/// What to look for, and where.
#[derive(Debug, Clone, Default)]
pub struct ChatSearch {
    /// Words that must all be in the chat; none: every chat.
    pub words: Vec<String>,
    pub status: Option<ConversationStatus>,
    pub agent_id: Option<String>,
    pub group_id: Option<String>,
    /// Chats started at or after this time (ms).
    pub from: Option<i64>,
    /// Chats started before this time (ms).
    pub to: Option<i64>,
    /// The page's cursor: chats before this (created_at, id), newest first.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// A chat found, with what the console shows of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChatHit {
    pub conversation_id: String,
    pub status: ConversationStatus,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    pub visitor_id: String,
    /// The visitor's name and email as they are now (erased ones: `null`).
    pub visitor_name: Option<String>,
    pub visitor_email: Option<String>,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub group_id: String,
    pub group_name: String,
    /// The latest message holding a word; `None` with no words, or when
    /// only the visitor's name or email held them.
    pub snippet: Option<Snippet>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Snippet {
    /// The message's sequence number in its chat.
    pub seq: i64,
    /// Plain text around the first word found, `…` where it was cut.
    pub text: String,
}

/// A word as an FTS5 prefix phrase: quoted, so nothing in it is read as
/// an operator, and starred, so its last token matches any word it starts.
fn fts_prefix(word: &str) -> String {
    format!("\"{}\"*", word.replace('"', "\"\""))
}

/// A word as a tsquery prefix term for `to_tsquery`: one quoted operand
/// (quotes doubled, backslashes escaped), so nothing in it is an operator;
/// the parser splits it as it split the indexed text, and `:*` lets each
/// of its tokens match any word it starts.
fn tsquery_prefix(word: &str) -> String {
    format!("'{}':*", word.replace('\\', "\\\\").replace('\'', "''"))
}

/// The two dialects' differences: placeholders and the word tests.
#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter of the search query, in order.
enum Arg {
    Text(String),
    Int(i64),
}

const SELECT: &str = "SELECT c.id, c.status, c.created_at, c.closed_at, c.visitor_id, v.name AS visitor_name, \
    v.email AS visitor_email, c.agent_id, a.name AS agent_name, c.group_id, g.name AS group_name \
    FROM conversations c JOIN visitors v ON v.id = c.visitor_id JOIN groups g ON g.id = c.group_id \
    LEFT JOIN agents a ON a.id = c.agent_id WHERE c.site_id = ";

/// A word in the chat's messages or its visitor's details; `{w}` is the
/// word's placeholder.
const HAS_WORD_SQLITE: &str = "(c.id IN (SELECT e.conversation_id FROM events e WHERE e.rowid IN \
    (SELECT rowid FROM message_search WHERE message_search MATCH {w})) OR c.visitor_id IN \
    (SELECT vs.id FROM visitors vs WHERE vs.rowid IN (SELECT rowid FROM visitor_search WHERE visitor_search MATCH {w})))";
const HAS_WORD_POSTGRES: &str = "(c.id IN (SELECT e.conversation_id FROM events e WHERE e.kind = 'message' \
    AND e.body IS NOT NULL AND to_tsvector('simple', message_search_text(e.body, e.data)) @@ to_tsquery('simple', {w})) \
    OR c.visitor_id IN (SELECT vs.id FROM visitors vs WHERE \
    to_tsvector('simple', coalesce(vs.name, '') || ' ' || coalesce(vs.email, '')) @@ to_tsquery('simple', {w})))";

impl ChatSearch {
    fn sql(&self, dialect: Dialect) -> (String, Vec<Arg>) {
        let mut args = Vec::new();
        let mark = |args: &mut Vec<Arg>, arg: Arg| {
            args.push(arg);
            match dialect {
                Dialect::Sqlite => format!("?{}", args.len()),
                Dialect::Postgres => format!("${}", args.len()),
            }
        };
        let mut sql = String::from(SELECT);
        sql += &mark(&mut args, Arg::Text(String::new())); // the site, set by the caller
        if let Some(status) = self.status {
            sql += &format!(" AND c.status = {}", mark(&mut args, Arg::Text(status.as_str().to_owned())));
        }
        if let Some(agent_id) = &self.agent_id {
            sql += &format!(" AND c.agent_id = {}", mark(&mut args, Arg::Text(agent_id.clone())));
        }
        if let Some(group_id) = &self.group_id {
            sql += &format!(" AND c.group_id = {}", mark(&mut args, Arg::Text(group_id.clone())));
        }
        if let Some(from) = self.from {
            sql += &format!(" AND c.created_at >= {}", mark(&mut args, Arg::Int(from)));
        }
        if let Some(to) = self.to {
            sql += &format!(" AND c.created_at < {}", mark(&mut args, Arg::Int(to)));
        }
        if let Some((at, id)) = &self.before {
            let at = mark(&mut args, Arg::Int(*at));
            let id = mark(&mut args, Arg::Text(id.clone()));
            sql += &format!(" AND (c.created_at < {at} OR (c.created_at = {at} AND c.id < {id}))");
        }
        for word in &self.words {
            let (test, word) = match dialect {
                Dialect::Sqlite => (HAS_WORD_SQLITE, fts_prefix(word)),
                Dialect::Postgres => (HAS_WORD_POSTGRES, tsquery_prefix(word)),
            };
            sql += &format!(" AND {}", test.replace("{w}", &mark(&mut args, Arg::Text(word))));
        }
        sql += &format!(" ORDER BY c.created_at DESC, c.id DESC LIMIT {}", mark(&mut args, Arg::Int(self.limit)));
        (sql, args)
    }
}

macro_rules! hit_from {
    ($r:expr, $get:ident) => {
        ChatHit {
            conversation_id: $r.$get("id")?,
            status: {
                let s: String = $r.$get("status")?;
                ConversationStatus::parse(&s).unwrap_or(ConversationStatus::Closed)
            },
            created_at: $r.$get("created_at")?,
            closed_at: $r.$get("closed_at")?,
            visitor_id: $r.$get("visitor_id")?,
            visitor_name: $r.$get("visitor_name")?,
            visitor_email: $r.$get("visitor_email")?,
            agent_id: $r.$get("agent_id")?,
            agent_name: $r.$get("agent_name")?,
            group_id: $r.$get("group_id")?,
            group_name: $r.$get("group_name")?,
            snippet: None,
        }
    };
}

fn sqlite_hit(r: &Row) -> rusqlite::Result<ChatHit> {
    Ok(hit_from!(r, get))
}

fn pg_hit(r: &PgRow) -> Result<ChatHit> {
    Ok(hit_from!(r, try_get))
}

/// Per chat found, its latest message holding any of the words.
const SNIPPETS_SQLITE: &str = "SELECT e.conversation_id, max(e.seq) AS seq, e.body FROM events e \
    WHERE e.conversation_id IN (SELECT value FROM json_each(?1)) \
    AND e.rowid IN (SELECT rowid FROM message_search WHERE message_search MATCH ?2) GROUP BY e.conversation_id";
const SNIPPETS_POSTGRES: &str = "SELECT DISTINCT ON (e.conversation_id) e.conversation_id, e.seq, e.body FROM events e \
    WHERE e.conversation_id = ANY($1) AND e.kind = 'message' AND e.body IS NOT NULL \
    AND EXISTS (SELECT 1 FROM unnest($2::text[]) w \
    WHERE to_tsvector('simple', message_search_text(e.body, e.data)) @@ to_tsquery('simple', w)) \
    ORDER BY e.conversation_id, e.seq DESC";

/// Give each hit its snippet from `(conversation, seq, body)` rows.
fn attach_snippets(hits: &mut [ChatHit], rows: Vec<(String, i64, String)>, words: &[String]) {
    for (conv, seq, body) in rows {
        if let Some(hit) = hits.iter_mut().find(|h| h.conversation_id == conv) {
            hit.snippet = Some(Snippet { seq, text: snippet(&body, words) });
        }
    }
}

/// Characters kept before and after the first word found.
const BEFORE: usize = 30;
const AFTER: usize = 90;

/// The text around the first of `words` in `body` (case aside), cut at
/// character boundaries with `…`; the start of the body if none is there
/// as typed (found by a file's name, or by a word with accents).
pub fn snippet(body: &str, words: &[String]) -> String {
    let chars: Vec<char> = body.chars().collect();
    let lower: Vec<char> = chars.iter().map(|c| c.to_lowercase().next().unwrap_or(*c)).collect();
    let found = words
        .iter()
        .filter_map(|w| {
            let w: Vec<char> = w.chars().map(|c| c.to_lowercase().next().unwrap_or(c)).collect();
            (!w.is_empty() && w.len() <= lower.len()).then(|| lower.windows(w.len()).position(|win| win == w))?
        })
        .min()
        .unwrap_or(0);
    let start = found.saturating_sub(BEFORE);
    let end = (found + AFTER).min(chars.len());
    let mut text: String = chars[start..end].iter().collect();
    if start > 0 {
        text = format!("…{}", text.trim_start());
    }
    if end < chars.len() {
        text = format!("{}…", text.trim_end());
    }
    text
}

impl SqliteStore {
    pub(super) async fn find_chats(&self, site_id: &str, search: ChatSearch) -> Result<Vec<ChatHit>> {
        if !search.words.is_empty() {
            // The writer indexes messages in passes, and makes one before
            // any write: after this one, every message acknowledged before
            // the search is in the index. A writer that cannot write now
            // still lets the search find every message of the last pass.
            if let Err(e) = self.write(|_| Ok(())).await {
                tracing::warn!(error = ?e, "searching without the messages since the index's last pass");
            }
        }
        let site_id = site_id.to_owned();
        self.read(move |c| {
            let (sql, mut args) = search.sql(Dialect::Sqlite);
            args[0] = Arg::Text(site_id);
            let values: Vec<rusqlite::types::Value> = args
                .into_iter()
                .map(|a| match a {
                    Arg::Text(s) => s.into(),
                    Arg::Int(n) => n.into(),
                })
                .collect();
            let mut stmt = c.prepare_cached(&sql)?;
            let mut hits =
                stmt.query_map(params_from_iter(values), sqlite_hit)?.collect::<rusqlite::Result<Vec<_>>>()?;
            if !search.words.is_empty() && !hits.is_empty() {
                let ids = serde_json::to_string(&hits.iter().map(|h| &h.conversation_id).collect::<Vec<_>>())
                    .unwrap_or_default();
                let any = search.words.iter().map(|w| fts_prefix(w)).collect::<Vec<_>>().join(" OR ");
                let mut stmt = c.prepare_cached(SNIPPETS_SQLITE)?;
                let rows = stmt
                    .query_map(rusqlite::params![ids, any], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                attach_snippets(&mut hits, rows, &search.words);
            }
            Ok(hits)
        })
        .await
    }
}

impl PostgresStore {
    pub(super) async fn find_chats(&self, site_id: &str, search: ChatSearch) -> Result<Vec<ChatHit>> {
        let (sql, mut args) = search.sql(Dialect::Postgres);
        args[0] = Arg::Text(site_id.to_owned());
        // Built from constant texts; every value is a parameter.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                Arg::Text(s) => query.bind(s),
                Arg::Int(n) => query.bind(n),
            };
        }
        let pool = self.p().await?;
        let mut hits = query.fetch_all(pool).await?.iter().map(pg_hit).collect::<Result<Vec<_>>>()?;
        if !search.words.is_empty() && !hits.is_empty() {
            let ids: Vec<String> = hits.iter().map(|h| h.conversation_id.clone()).collect();
            let terms: Vec<String> = search.words.iter().map(|w| tsquery_prefix(w)).collect();
            let rows = sqlx::query(SNIPPETS_POSTGRES)
                .bind(ids)
                .bind(terms)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("conversation_id")?, r.try_get("seq")?, r.try_get("body")?)))
                .collect::<Result<Vec<_>>>()?;
            attach_snippets(&mut hits, rows, &search.words);
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::snippet;

    #[test]
    fn a_snippet_is_cut_around_the_first_word_at_character_boundaries() {
        let words = vec!["canada".to_owned()];
        assert_eq!(snippet("Ship it to Canada please", &words), "Ship it to Canada please");
        let long = format!("{} Canada {}", "é".repeat(100), "ü".repeat(200));
        let s = snippet(&long, &words);
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("Canada"), "{s}");
        assert_eq!(s.chars().count(), 1 + 30 + 90 + 1);
        assert_eq!(snippet("no such word", &words), "no such word");
    }
}
