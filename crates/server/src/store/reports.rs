//! The facts reports are built from (`crate::reports`): one row per
//! conversation of a site created in a time range, with what its events
//! say (first visitor message, first assignment, first agent reply, how
//! many messages), its rating and whether it was missed. One statement for
//! both backends: the site's conversations by the `(site_id, created_at)`
//! index (migrations `sqlite/0017_reports.sql`, `postgres/0011_reports.sql`);
//! a closed chat's facts from its own row, taken at its close (an offline
//! message's when it is left, `sqlite/0046_offline_facts.sql`,
//! `postgres/0040_offline_facts.sql`) and kept since by each event
//! (`sqlite/0035_report_facts.sql`, `postgres/0028_report_facts.sql`; on
//! PostgreSQL by triggers, on SQLite by the writer as it inserts the event,
//! `sqlite/0048_report_facts_by_the_writer.sql`), an open one's from its
//! events by the
//! `(conversation_id, seq)` index, those written since the last report
//! only (`open_chats`); the rating's score and the missed mark
//! from the row too, kept there by triggers on `ratings` and
//! `missed_chats` (`sqlite/0042_report_marks.sql`,
//! `postgres/0035_report_marks.sql`). Each row goes to the report's `FactSink` as it is read,
//! its ids borrowed from the row: a report holds no rows, and reads all of
//! them however many.

use std::any::Any;
use std::ops::Range;
use std::sync::Mutex;

use rusqlite::params;
use rusqlite::types::{FromSqlError, ValueRef};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

use super::open_chats::OpenChats;
use super::postgres::PostgresStore;
use super::report_days::{self, DAY_MS};
use super::sqlite::SqliteStore;
use crate::error::{Error, Result};

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
    /// The positions of `group_id` and `agent_id` in the ids last given
    /// to `FactSink::day_ids`, for a chat read from a day's summary.
    pub named: Option<(u32, Option<u32>)>,
}

/// Where a report's facts go, one conversation at a time as the store
/// reads them: a report of a year of a busy site is every one of its
/// chats, so none is held as a row nor left out (`crate::reports::Tally`).
pub trait FactSink: Any + Send {
    fn add(&mut self, chat: &ChatFacts<'_>);

    /// The ids a day's summary names its chats' groups and agents by
    /// (`ChatFacts::named`), given before those chats: a sink may look
    /// each up once here rather than once a chat. Nothing by default.
    fn day_ids(&mut self, _ids: &[&str]) {}

    /// An empty sink of this one's kind and parameters, for a day's
    /// share of the report, and the key of those parameters (a time
    /// zone): a share is kept (`report_days::Cache`) and added to later
    /// reports' sinks of the same key (`add_share`) instead of the day's
    /// chats being given again. `None` (the default): this sink takes no
    /// shares.
    fn share(&self) -> Option<(String, Box<dyn FactSink>)> {
        None
    }

    /// Add `share`, a day's chats given apart to a sink this one's
    /// `share` made, of the same key. False, and nothing added, if it is
    /// not such a sink.
    fn add_share(&mut self, _share: &dyn FactSink) -> bool {
        false
    }

    /// Make ready to be kept, as a day's share: give back spare memory,
    /// and say about how many bytes are left.
    fn keep(&mut self) -> usize {
        0
    }
}

/// The facts of a site's closed conversations created in a range, only
/// those an agent had if `agent` (a parameter that may be NULL) is given:
/// those on their row. In no particular order; the columns as
/// `ChatFacts`, by position. The open ones' are in their events
/// (`open_chats`).
pub(super) fn closed_sql(site: &str, from: &str, to: &str, agent: &str) -> String {
    format!(
        "SELECT c.group_id, c.agent_id, c.offline, c.created_at, c.closed_at, c.first_visitor_at, \
         c.first_assigned_at, c.first_agent_at, c.messages, c.rating_score, c.missed \
         FROM conversations c WHERE {} AND c.messages IS NOT NULL",
        in_range(site, from, to, agent)
    )
}

pub(super) fn in_range(site: &str, from: &str, to: &str, agent: &str) -> String {
    format!(
        "c.site_id = {site} AND c.created_at >= {from} AND c.created_at < {to} \
         AND ({agent} IS NULL OR c.agent_id = {agent})"
    )
}

/// A row's facts, by position (`closed_sql`), from either backend
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
            named: None,
        }
    };
}

/// A PostgreSQL row's facts, by position (`closed_sql`).
pub(super) fn pg_facts(r: &sqlx::postgres::PgRow) -> Result<ChatFacts<'_>> {
    Ok(facts_from!(r, try_get, r.try_get(0)?, r.try_get(1)?))
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
        // report gets only the CPU chat leaves. And paced, while chat
        // writes (`low_priority::rest_as_long_as`): after each `CHUNK` rows the
        // reader rests as long as they took. Unpaced,
        // reports asked back to back doubled chat's p99 even so (another
        // process doing the same reads raised it by half); resting half
        // the time brought it to 1.02–1.12x, for reports twice as long
        // (a month of 75,000 chats: 60 ms → 135 ms; `docs/benchmarks.md`).
        let open = self.open_chats.clone();
        self.read_report(move |c| {
            // One snapshot: a chat that closes meanwhile is counted once.
            let snapshot = c.unchecked_transaction()?;
            let (mut in_chunk, mut chunk_began) = (0, std::time::Instant::now());
            let mut pace = || {
                in_chunk += 1;
                if in_chunk == CHUNK {
                    crate::low_priority::rest_as_long_as(chunk_began.elapsed());
                    (in_chunk, chunk_began) = (0, std::time::Instant::now());
                }
            };
            let mut stmt = c.prepare_cached(&closed_sql("?1", "?2", "?3", "?4"))?;
            let mut rows = stmt.query(params![site_id, from, to, agent_id])?;
            while let Some(r) = rows.next()? {
                pace();
                let agent = r.get_ref(1)?;
                let agent = agent.as_str_or_null().map_err(|e| lite_text_error(1, agent, e))?;
                let group = r.get_ref(0)?;
                let group = group.as_str().map_err(|e| lite_text_error(0, group, e))?;
                sink.add(&facts_from!(r, get, group, agent));
            }
            drop(rows);
            let mut open = open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            open.tally_lite(c, &site_id, (from, to), agent_id.as_deref(), sink.as_mut(), pace)?;
            snapshot.commit()?;
            Ok(sink)
        })
        .await
    }
}

impl PostgresStore {
    /// A report on PostgreSQL, on the store's report lane (`PgReports`).
    pub(super) async fn report_facts(
        &self,
        site_id: &str,
        from: i64,
        to: i64,
        agent_id: Option<&str>,
        sink: Box<dyn FactSink>,
    ) -> Result<Box<dyn FactSink>> {
        let asked = Asked { site_id: site_id.to_owned(), from, to, agent_id: agent_id.map(str::to_owned) };
        self.on_report_lane(|answer| PgJob::Report(ReportJob { asked, sink, answer })).await
    }

    /// Make the missing summaries of settled days, on the report lane
    /// (`report_days::keep`).
    pub(super) async fn keep_report_summaries(&self, now: i64) -> Result<SummariesKept> {
        self.on_report_lane(|answer| PgJob::Keep { now, answer }).await
    }

    /// Hand the lane the job `job` makes with its answer's sender, and
    /// wait for the answer (none from a closed store).
    async fn on_report_lane<T>(&self, job: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> PgJob) -> Result<T> {
        if self.p().await?.is_closed() {
            return Err(Error::Unavailable(1));
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.reports.send(job(answer))?;
        answered.await.map_err(|_| Error::Unavailable(1))?
    }
}

/// Where PostgreSQL's reports are read, and the summaries of settled
/// days made (`report_days`): one thread at the lowest CPU priority
/// (`low_priority`), started at the first report or round of summaries,
/// running a Tokio runtime of its own on a connection of its own, closed
/// after `IDLE` without either. So all of a report's work in this process
/// takes only the CPU chat leaves: the wire protocol's decoding of every
/// row as well as the tally. When the rows were fetched on the server's
/// runtime, their decoding took 13% of a core from chat's threads while
/// reports were asked in a loop; now none (`docs/benchmarks.md`). The
/// database's own process still runs the statement at chat's priority,
/// and that is what chat's p99 feels. Reports are read one at a time, in
/// the order asked.
pub(super) struct PgReports {
    options: Box<PgConnectOptions>,
    jobs: Mutex<Option<flume::Sender<PgJob>>>,
}

/// What the lane is asked to do.
enum PgJob {
    Report(ReportJob),
    /// Make the missing summaries of settled days (`report_days::keep`).
    Keep {
        now: i64,
        answer: tokio::sync::oneshot::Sender<Result<SummariesKept>>,
    },
}

impl PgJob {
    /// Nobody waits for the answer any more.
    fn abandoned(&self) -> bool {
        match self {
            PgJob::Report(report) => report.answer.is_closed(),
            PgJob::Keep { answer, .. } => answer.is_closed(),
        }
    }

    fn fail(self, e: Error) {
        match self {
            PgJob::Report(report) => _ = report.answer.send(Err(e)),
            PgJob::Keep { answer, .. } => _ = answer.send(Err(e)),
        }
    }
}

/// One report for the lane: what it asks, its sink, and where the sink
/// goes back once every chat is in it.
struct ReportJob {
    asked: Asked,
    sink: Box<dyn FactSink>,
    answer: tokio::sync::oneshot::Sender<Result<Box<dyn FactSink>>>,
}

/// What one round of `Store::keep_report_summaries` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SummariesKept {
    /// Summaries made.
    pub made: u64,
    /// Settled days still without one: a report was waiting, and went
    /// first (the next round makes them). Counted up to the site where
    /// the round was cut short: at least this many.
    pub left: u64,
}

/// A report's chats: a site's, created in `[from, to)` (Unix ms), only
/// the agent's if given.
struct Asked {
    site_id: String,
    from: i64,
    to: i64,
    agent_id: Option<String>,
}

/// The lane's connection's `application_name`.
pub const APPLICATION_NAME: &str = "holdfast reports";

/// How long the lane keeps its connection without a report.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl PgReports {
    pub(super) fn new(options: PgConnectOptions) -> PgReports {
        // Named, so an operator tells it from chat's in `pg_stat_activity`.
        PgReports { options: Box::new(options.application_name(APPLICATION_NAME)), jobs: Mutex::new(None) }
    }

    /// Hand `job` to the lane, starting its thread if it is not running
    /// (the first report, or after a thread that ended).
    fn send(&self, job: PgJob) -> Result<()> {
        let mut slot = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let jobs = match &mut *slot {
            Some(jobs) if !jobs.is_disconnected() => jobs,
            slot => slot.insert(self.start()?),
        };
        jobs.send(job).map_err(|_| Error::Unavailable(1))
    }

    fn start(&self) -> Result<flume::Sender<PgJob>> {
        let (jobs, queue) = flume::unbounded();
        let options = *self.options.clone();
        crate::low_priority::spawn("reports-pg", move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(serve(options, queue)),
                Err(e) => tracing::error!(error = %e, "cannot start the reports' runtime"),
            }
        })?;
        Ok(jobs)
    }

    /// Stop the lane: the thread ends after the reports already asked for,
    /// and closes its connection. (A closed store asks for no more.)
    pub(super) fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The lane's loop: each report on the connection kept from the last,
/// or a new one. A connection a report failed on is not kept.
async fn serve(options: PgConnectOptions, queue: flume::Receiver<PgJob>) {
    let mut kept: Option<PgConnection> = None;
    let mut summaries = report_days::Cache::default();
    let mut open = OpenChats::default();
    loop {
        let job = match tokio::time::timeout(IDLE, queue.recv_async()).await {
            Ok(Ok(job)) => job,
            Ok(Err(_)) => break,
            Err(_) => {
                if let Some(c) = kept.take() {
                    let _ = c.close().await;
                }
                continue;
            }
        };
        if job.abandoned() {
            continue;
        }
        // A report's work on the lane, from here (the ping included).
        let mut pace = crate::low_priority::Pace::start();
        // A kept connection the database has since closed (a restart, an
        // operator's `pg_terminate_backend`) is found out here, not by the
        // job.
        let alive = match kept.take() {
            Some(mut c) => c.ping().await.is_ok().then_some(c),
            None => None,
        };
        let mut conn = match alive {
            Some(c) => c,
            None => match options.connect().await {
                Ok(c) => c,
                Err(e) => {
                    job.fail(e.into());
                    continue;
                }
            },
        };
        match job {
            PgJob::Report(ReportJob { asked, sink, answer }) => {
                let read = read_facts(&mut conn, (&mut summaries, &mut open), &asked, sink, &answer, &mut pace).await;
                if read.is_ok() {
                    kept = Some(conn);
                }
                let _ = answer.send(read);
                // What was left unrested of it, before the next job.
                pace.settle().await;
            }
            PgJob::Keep { now, answer } => {
                // Reports go first: the round stops making summaries as
                // soon as one waits, or when the lead that asked is lost.
                let stop = || !queue.is_empty() || answer.is_closed();
                let kept_days = report_days::keep(&mut conn, &mut summaries, now, stop).await;
                if kept_days.is_ok() {
                    kept = Some(conn);
                }
                let _ = answer.send(kept_days);
            }
        }
    }
    if let Some(c) = kept {
        let _ = c.close().await;
    }
}

/// A report's facts: the summaries of the whole days in its range that
/// have ended (`report_days`, made first where missing), the closed chats
/// of the rest of its range, and its open chats (from the events read
/// since the last report: `open_chats`), all in one snapshot. The days summarized
/// were what a report spent in the database: reading each of a month's
/// 80,000 chats' rows there raised chat's p99 beside reports to 1.7–1.9x
/// (`docs/benchmarks.md`). Resting between steps (`Pace`: a day's
/// summary, a chunk of rows), and given up between chunks when nobody
/// waits for the answer any more.
async fn read_facts(
    conn: &mut PgConnection,
    (cache, open): (&mut report_days::Cache, &mut OpenChats),
    asked: &Asked,
    mut sink: Box<dyn FactSink>,
    answer: &tokio::sync::oneshot::Sender<Result<Box<dyn FactSink>>>,
    pace: &mut crate::low_priority::Pace,
) -> Result<Box<dyn FactSink>> {
    let (site_id, from, to, agent_id) = (asked.site_id.as_str(), asked.from, asked.to, asked.agent_id.as_deref());
    let days = report_days::summarized_days(from, to, super::now_ms());
    // Either side of the days (which may be none: then the whole range).
    let (first, last) = ((days.start * DAY_MS).min(to), (days.end * DAY_MS).min(to));
    let mut unsummarized = vec![from..first, last..to];
    // The summaries, in the report's snapshot. Where some are missing,
    // they are made (each in a transaction of its own) and the snapshot
    // taken again; a day emptied again since is read as chats.
    let mut made = false;
    let (mut tx, summaries) = loop {
        let mut tx = report_transaction(conn).await?;
        let summaries = report_days::summaries(&mut tx, cache, site_id, &days).await?;
        let missing: Vec<i64> = days.clone().filter(|d| !summaries.contains_key(d)).collect();
        if made || missing.is_empty() {
            break (tx, summaries);
        }
        tx.rollback().await?;
        for day in missing {
            report_days::make(conn, cache, site_id, day).await?;
            // Between days, outside the day's lock: a month made cold
            // beside chat rests as the reading of chats does. (Within a
            // day it cannot: a write to one of its chats waits for the
            // lock.)
            pace.breathe().await;
        }
        made = true;
    };
    for day in days {
        let added = summaries.get(&day).is_some_and(|(version, summary)| {
            report_days::add_day(cache, site_id, (day, *version), summary, agent_id, sink.as_mut())
        });
        if !added {
            unsummarized.push(day * DAY_MS..(day + 1) * DAY_MS);
        }
        pace.breathe().await;
    }
    for range in merged(unsummarized) {
        let sql = closed_sql("$1", "$2", "$3", "$4::text");
        sink = stream(&mut tx, &sql, asked, range, sink, answer, pace).await?;
    }
    open.tally_pg(&mut tx, site_id, (from, to), agent_id, sink.as_mut()).await?;
    pace.breathe().await;
    tx.commit().await?;
    Ok(sink)
}

/// A report's transaction: one snapshot for all it reads (`report_days`).
/// A report is one long statement on a server that also carries live
/// chat: no parallel workers (they would take every core), no JIT
/// compiling (a tenth of a second of CPU for a plan this plain), and
/// planned for reading every row, as it will be.
async fn report_transaction(conn: &mut PgConnection) -> Result<sqlx::Transaction<'_, sqlx::Postgres>> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0").execute(&mut *tx).await?;
    sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
    sqlx::query("SET LOCAL cursor_tuple_fraction = 1.0").execute(&mut *tx).await?;
    Ok(tx)
}

/// `ranges` sorted, those that touch joined, the empty ones left out.
fn merged(mut ranges: Vec<Range<i64>>) -> Vec<Range<i64>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<i64>> = Vec::new();
    for r in ranges.into_iter().filter(|r| !r.is_empty()) {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The rows of `sql` (parameters: `asked`'s site, `range`, `asked`'s agent) through a
/// cursor, a chunk at a time, each tallied before the next is asked for:
/// the backend process that runs the statement cannot be made to yield
/// to chat from here, but it works only in short bursts, each after this
/// thread found the CPU chat left it. Streamed instead, it ran the whole
/// statement at once beside chat, its rows piling up in socket buffers.
async fn stream(
    tx: &mut PgConnection,
    sql: &str,
    asked: &Asked,
    range: Range<i64>,
    mut sink: Box<dyn FactSink>,
    answer: &tokio::sync::oneshot::Sender<Result<Box<dyn FactSink>>>,
    pace: &mut crate::low_priority::Pace,
) -> Result<Box<dyn FactSink>> {
    let declare = format!("DECLARE report NO SCROLL CURSOR FOR {sql}");
    sqlx::query(sqlx::AssertSqlSafe(declare))
        .bind(&asked.site_id)
        .bind(range.start)
        .bind(range.end)
        .bind(&asked.agent_id)
        .execute(&mut *tx)
        .await?;
    let fetch = format!("FETCH {CHUNK} FROM report");
    loop {
        if answer.is_closed() {
            return Err(Error::Unavailable(1));
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(fetch.as_str())).fetch_all(&mut *tx).await?;
        for r in &rows {
            sink.add(&pg_facts(r)?);
        }
        pace.breathe().await;
        if rows.len() < CHUNK {
            break;
        }
    }
    sqlx::query("CLOSE report").execute(&mut *tx).await?;
    Ok(sink)
}

/// Rows a report's cursor hands over at a time (PostgreSQL), and rows a
/// report reads between two rests (SQLite): about a millisecond of work.
const CHUNK: usize = 1024;

#[cfg(test)]
mod tests {
    use super::merged;

    #[test]
    fn ranges_read_as_chats_are_joined_in_order() {
        assert_eq!(merged(vec![30..40, 0..10, 10..20, 50..50, 15..18]), [0..20, 30..40]);
        assert_eq!(merged(vec![5..5, 7..7]), []);
        assert_eq!(merged(vec![0..10, 5..30, 30..31, 31..32]).len(), 1);
        assert_eq!(merged(vec![0..10, 5..30, 30..31]).pop(), Some(0..31));
    }
}
