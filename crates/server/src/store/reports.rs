//! The facts reports are built from (`crate::reports`): one row per
//! conversation of a site created in a time range, with what its events
//! say (first visitor message, first assignment, first agent reply, how
//! many messages), its rating and whether it was missed. One statement for
//! both backends: the site's conversations by the `(site_id, created_at)`
//! index (migrations `sqlite/0017_reports.sql`, `postgres/0011_reports.sql`);
//! a closed chat's facts from its own row, taken at its close and kept
//! since by triggers (`sqlite/0035_report_facts.sql`,
//! `postgres/0028_report_facts.sql`), an open one's from its events by the
//! `(conversation_id, seq)` index; the rating's score and the missed mark
//! from the row too, kept there by triggers on `ratings` and
//! `missed_chats` (`sqlite/0042_report_marks.sql`,
//! `postgres/0035_report_marks.sql`). Each row goes to the report's `FactSink` as it is read,
//! its ids borrowed from the row: a report holds no rows, and reads all of
//! them however many.

use std::any::Any;

use rusqlite::params;
use rusqlite::types::{FromSqlError, ValueRef};
use sqlx::Row as _;

use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::Result;

/// One conversation, as reports see it, borrowed from the row being read.
/// Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatFacts<'a> {
    /// The group it is in now (where it was last routed).
    pub group_id: &'a str,
    /// The agent who had it last (kept after close).
    pub agent_id: Option<&'a str>,
    /// Began as an offline message (`leave_message`), not a chat.
    pub offline: bool,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    pub first_visitor_at: Option<i64>,
    pub first_assigned_at: Option<i64>,
    pub first_agent_at: Option<i64>,
    /// Messages of anyone.
    pub messages: i64,
    /// The rating's score (1–5), if rated.
    pub score: Option<i64>,
    pub missed: bool,
}

/// Where a report's facts go, one conversation at a time as the store
/// reads them: a report of a year of a busy site is every one of its
/// chats, so none is held as a row nor left out (`crate::reports::Tally`).
pub trait FactSink: Any + Send {
    fn add(&mut self, chat: &ChatFacts<'_>);
}

/// The facts of a site's conversations created in a range, only those an
/// agent had if `agent` (a parameter that may be NULL) is given. In no
/// particular order; the columns as `ChatFacts`, by position.
fn facts_sql(site: &str, from: &str, to: &str, agent: &str) -> String {
    let range = format!(
        "c.site_id = {site} AND c.created_at >= {from} AND c.created_at < {to} \
         AND ({agent} IS NULL OR c.agent_id = {agent})"
    );
    format!(
        "SELECT c.group_id, c.agent_id, c.offline, c.created_at, c.closed_at, c.first_visitor_at, \
         c.first_assigned_at, c.first_agent_at, c.messages, c.rating_score, c.missed \
         FROM conversations c WHERE {range} AND c.messages IS NOT NULL \
         UNION ALL \
         SELECT c.group_id, c.agent_id, c.offline, c.created_at, c.closed_at, \
         min(CASE WHEN e.kind = 'message' AND e.author_kind = 'visitor' THEN e.created_at END), \
         min(CASE WHEN e.kind = 'assigned' THEN e.created_at END), \
         min(CASE WHEN e.kind = 'message' AND e.author_kind = 'agent' THEN e.created_at END), \
         count(CASE WHEN e.kind = 'message' THEN 1 END), c.rating_score, c.missed \
         FROM conversations c LEFT JOIN events e ON e.conversation_id = c.id \
         WHERE {range} AND c.messages IS NULL \
         GROUP BY c.id, c.group_id, c.agent_id, c.offline, c.created_at, c.closed_at, c.rating_score, c.missed"
    )
}

/// A row's facts, by position (`facts_sql`), from either backend
/// (`get` or `try_get`), its two ids borrowed as the backend allows.
macro_rules! facts_from {
    ($r:expr, $get:ident, $group:expr, $agent:expr) => {
        ChatFacts {
            group_id: $group,
            agent_id: $agent,
            offline: $r.$get(2)?,
            created_at: $r.$get(3)?,
            closed_at: $r.$get(4)?,
            first_visitor_at: $r.$get(5)?,
            first_assigned_at: $r.$get(6)?,
            first_agent_at: $r.$get(7)?,
            messages: $r.$get(8)?,
            score: $r.$get(9)?,
            missed: $r.$get(10)?,
        }
    };
}

fn lite_text_error(column: usize, value: ValueRef<'_>, e: FromSqlError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, value.data_type(), Box::new(e))
}

impl SqliteStore {
    pub(super) async fn report_facts(
        &self,
        site_id: &str,
        from: i64,
        to: i64,
        agent_id: Option<&str>,
        mut sink: Box<dyn FactSink>,
    ) -> Result<Box<dyn FactSink>> {
        let (site_id, agent_id) = (site_id.to_owned(), agent_id.map(str::to_owned));
        // On a reader of its own at the lowest CPU priority, rows and
        // tally both: chat's reads never queue behind a report, and the
        // report gets only the CPU chat leaves. And paced: after each
        // `CHUNK` rows the reader rests as long as they took. Unpaced,
        // reports asked back to back doubled chat's p99 even so (another
        // process doing the same reads raised it by half); resting half
        // the time brought it to 1.02–1.12x, for reports twice as long
        // (a month of 75,000 chats: 60 ms → 135 ms; `docs/benchmarks.md`).
        self.read_report(move |c| {
            let mut stmt = c.prepare_cached(&facts_sql("?1", "?2", "?3", "?4"))?;
            let mut rows = stmt.query(params![site_id, from, to, agent_id])?;
            let (mut in_chunk, mut chunk_began) = (0, std::time::Instant::now());
            while let Some(r) = rows.next()? {
                in_chunk += 1;
                if in_chunk == CHUNK {
                    std::thread::sleep(chunk_began.elapsed());
                    (in_chunk, chunk_began) = (0, std::time::Instant::now());
                }
                let agent = r.get_ref(1)?;
                let agent = agent.as_str_or_null().map_err(|e| lite_text_error(1, agent, e))?;
                let group = r.get_ref(0)?;
                let group = group.as_str().map_err(|e| lite_text_error(0, group, e))?;
                sink.add(&facts_from!(r, get, group, agent));
            }
            Ok(sink)
        })
        .await
    }
}

impl PostgresStore {
    /// The backend process that runs a report's statement cannot be made
    /// to yield to chat from here, but it can be made to wait: the rows
    /// come through a cursor a chunk at a time, and each chunk is tallied
    /// on the thread of lowest priority (`low_priority`) before the next
    /// is asked for. So the backend works only in short bursts, each
    /// after this process found the CPU chat left it; streamed instead,
    /// it ran the whole statement at once beside chat, its rows piling
    /// up in socket buffers. (Resting between chunks as well, as SQLite's
    /// reader does, made a month's report three to eight times slower,
    /// over 500 ms: each chunk is a round trip, a hop to the low thread
    /// and a timer. `docs/benchmarks.md`.)
    pub(super) async fn report_facts(
        &self,
        site_id: &str,
        from: i64,
        to: i64,
        agent_id: Option<&str>,
        mut sink: Box<dyn FactSink>,
    ) -> Result<Box<dyn FactSink>> {
        let mut tx = self.p().await?.begin().await?;
        // A report is one long statement on a server that also carries
        // live chat: no parallel workers (they would take every core), no
        // JIT compiling (a tenth of a second of CPU for a plan this plain),
        // and planned for reading every row, as it will be.
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0").execute(&mut *tx).await?;
        sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
        sqlx::query("SET LOCAL cursor_tuple_fraction = 1.0").execute(&mut *tx).await?;
        let sql = format!("DECLARE report NO SCROLL CURSOR FOR {}", facts_sql("$1", "$2", "$3", "$4::text"));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(site_id)
            .bind(from)
            .bind(to)
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        let fetch = format!("FETCH {CHUNK} FROM report");
        loop {
            let rows = sqlx::query(sqlx::AssertSqlSafe(fetch.as_str())).fetch_all(&mut *tx).await?;
            let last = rows.len() < CHUNK;
            sink = crate::low_priority::run(move || {
                for r in &rows {
                    sink.add(&facts_from!(r, try_get, r.try_get(0)?, r.try_get(1)?));
                }
                Ok(sink)
            })
            .await?;
            if last {
                break;
            }
        }
        tx.commit().await?;
        Ok(sink)
    }
}

/// Rows a report's cursor hands over at a time (PostgreSQL), and rows a
/// report reads between two rests (SQLite): about a millisecond of work.
const CHUNK: usize = 1024;
