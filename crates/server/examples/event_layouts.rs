//! What the events tree's layout costs the group-commit writer: a probe of
//! SQLite alone, outside the server (`docs/benchmarks.md`, "The next lever").
//!
//! Like the relay, every commit holds `--per-commit` messages, each to a
//! different one of `--conversations` live conversations, and is fsync'd
//! (WAL, `synchronous = FULL`, the writer's cache size). It measures the
//! writer's time per row for four layouts, in two interleaved rounds:
//!
//! - `clustered`: today's `events`, rows clustered by (conversation, seq),
//!   so each commit rewrites one leaf per conversation and its parents;
//! - `append`: a journal in arrival order with no index (a floor: nothing
//!   could read a conversation back from it);
//! - `append+index`: the journal with a (conversation, seq) index, never
//!   folded: what events would cost as a rowid table with that index;
//! - `fold-N`: the indexed journal, moved into the clustered tree every N
//!   commits.
//!
//! With `--page-sizes 4096,2048,…` it measures `append+index` (today's
//! layout) at each page size instead, wall and CPU time per row.
//!
//! ```sh
//! cargo run --release -p holdfast-server --example event_layouts -- [--commits 1000] [--per-commit 130] [--conversations 500] [--page-sizes 4096,1024]
//! ```

use std::time::Instant;

use rusqlite::{Connection, params};

/// The columns of `events` (migrations/sqlite/0001_init.sql).
const COLUMNS: &str = "conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, \
     author_kind TEXT NOT NULL, author_id TEXT, client_id TEXT, body TEXT, data TEXT NOT NULL DEFAULT '{}', \
     created_at INTEGER NOT NULL";

#[derive(Clone, Copy)]
enum Layout {
    Clustered,
    Append,
    AppendIndexed,
    /// Fold the indexed journal into the clustered tree every so many commits.
    Fold(usize),
}

impl Layout {
    fn name(self) -> String {
        match self {
            Layout::Clustered => "clustered".into(),
            Layout::Append => "append".into(),
            Layout::AppendIndexed => "append+index".into(),
            Layout::Fold(n) => format!("fold-{n}"),
        }
    }
}

struct Load {
    commits: usize,
    per_commit: usize,
    conversations: Vec<String>,
    authors: Vec<String>,
}

fn open(path: &std::path::Path, page_size: u32) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(&format!("PRAGMA page_size = {page_size};"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536; \
         PRAGMA wal_autocheckpoint = 10000;",
    )?;
    conn.execute_batch(&format!(
        "CREATE TABLE events ({COLUMNS}, PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID; \
         CREATE TABLE journal ({COLUMNS});"
    ))?;
    Ok(conn)
}

/// Microseconds of writer time per row for one layout, on a fresh database
/// of pages of `page_size` bytes: wall time, and the thread's CPU time.
fn measure(layout: Layout, load: &Load, page_size: u32) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let conn = open(&dir.path().join("probe.db"), page_size)?;
    if matches!(layout, Layout::AppendIndexed | Layout::Fold(_)) {
        conn.execute_batch("CREATE UNIQUE INDEX journal_conversation ON journal(conversation_id, seq);")?;
    }
    let table = if matches!(layout, Layout::Clustered) { "events" } else { "journal" };
    let insert = format!(
        "INSERT INTO {table} (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, created_at) \
         VALUES (?1, ?2, ?3, 'message', 'visitor', ?4, ?5, ?6, ?7)"
    );
    let n = load.conversations.len();
    let mut seqs = vec![0i64; n];
    let mut order: Vec<usize> = (0..n).collect();
    let mut rows = 0i64;
    let (started, cpu_started) = (Instant::now(), thread_cpu_us());
    for commit in 1..=load.commits {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // A batch reaches `per_commit` distinct conversations.
        for i in 0..load.per_commit {
            order.swap(i, rand::random_range(i..n));
        }
        let mut statement = conn.prepare_cached(&insert)?;
        for &k in &order[..load.per_commit] {
            seqs[k] += 1;
            rows += 1;
            statement.execute(params![
                load.conversations[k],
                seqs[k],
                uuid::Uuid::now_v7().to_string(),
                load.authors[k],
                format!("m{rows}"),
                format!("t={}", 1_764_000_000_000 + rows),
                rows,
            ])?;
        }
        if let Layout::Fold(every) = layout
            && commit % every == 0
        {
            conn.execute_batch(
                "INSERT INTO events SELECT * FROM journal ORDER BY conversation_id, seq; DELETE FROM journal;",
            )?;
        }
        conn.execute_batch("COMMIT")?;
    }
    let cpu_us = thread_cpu_us() - cpu_started;
    Ok((started.elapsed().as_secs_f64() * 1e6 / rows as f64, cpu_us / rows as f64))
}

/// This thread's CPU time so far, in microseconds.
fn thread_cpu_us() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}

/// The relay's write pattern, by default as `bench relay --pairs 500` writes it.
#[derive(clap::Parser)]
struct Args {
    /// Fsync'd commits per layout and round.
    #[arg(long, default_value_t = 1000)]
    commits: usize,
    /// Messages per commit, each to a different conversation.
    #[arg(long, default_value_t = 130)]
    per_commit: usize,
    /// Live conversations.
    #[arg(long, default_value_t = 500)]
    conversations: usize,
    /// Instead of the layouts, today's (`append+index`) at each of these
    /// page sizes (bytes, comma-separated): a commit writes a page per
    /// conversation's index leaf, so the page size is what each costs.
    #[arg(long, value_delimiter = ',')]
    page_sizes: Vec<u32>,
}

fn main() -> anyhow::Result<()> {
    let Args { commits, per_commit, conversations, page_sizes } = clap::Parser::parse();
    anyhow::ensure!(
        commits > 0 && per_commit > 0 && per_commit <= conversations,
        "need --commits > 0 and 0 < --per-commit <= --conversations"
    );
    let ids = |n: usize| (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect::<Vec<_>>();
    let load = Load { commits, per_commit, conversations: ids(conversations), authors: ids(conversations) };
    if !page_sizes.is_empty() {
        return by_page_size(&load, &page_sizes);
    }
    let layouts = [Layout::Clustered, Layout::Append, Layout::AppendIndexed, Layout::Fold(10), Layout::Fold(40)];
    let mut totals = vec![0.0; layouts.len()];
    for round in 1..=2 {
        for (i, layout) in layouts.iter().enumerate() {
            let (us, _) = measure(*layout, &load, 4096)?;
            totals[i] += us / 2.0;
            println!("round={round} layout={} us_per_row={us:.1}", layout.name());
        }
    }
    let baseline = totals[0];
    let summary: Vec<String> = layouts
        .iter()
        .zip(&totals)
        .map(|(layout, us)| format!("{}={us:.1}us({:.2}x)", layout.name(), us / baseline))
        .collect();
    println!("scenario=event-layouts commits={commits} per_commit={per_commit} {}", summary.join(" "));
    Ok(())
}

/// Today's layout at each page size, in three interleaved rounds.
fn by_page_size(load: &Load, sizes: &[u32]) -> anyhow::Result<()> {
    let mut totals = vec![(0.0, 0.0); sizes.len()];
    for round in 1..=3 {
        for (i, &size) in sizes.iter().enumerate() {
            let (wall, cpu) = measure(Layout::AppendIndexed, load, size)?;
            (totals[i].0, totals[i].1) = (totals[i].0 + wall / 3.0, totals[i].1 + cpu / 3.0);
            println!("round={round} page_size={size} us_per_row={wall:.1} cpu_us_per_row={cpu:.1}");
        }
    }
    let summary: Vec<String> =
        sizes.iter().zip(&totals).map(|(size, (wall, cpu))| format!("{size}={wall:.1}us/cpu{cpu:.1}us")).collect();
    println!("scenario=event-page-sizes per_commit={} {}", load.per_commit, summary.join(" "));
    Ok(())
}
