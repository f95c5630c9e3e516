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
//! ```sh
//! cargo run --release -p holdfast-server --example event_layouts -- [--commits 1000] [--per-commit 130] [--conversations 500]
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

fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
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

/// Microseconds of writer time per row for one layout, on a fresh database.
fn measure(layout: Layout, load: &Load) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let conn = open(&dir.path().join("probe.db"))?;
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
    let started = Instant::now();
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
    Ok(started.elapsed().as_secs_f64() * 1e6 / rows as f64)
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
}

fn main() -> anyhow::Result<()> {
    let Args { commits, per_commit, conversations } = clap::Parser::parse();
    anyhow::ensure!(
        commits > 0 && per_commit > 0 && per_commit <= conversations,
        "need --commits > 0 and 0 < --per-commit <= --conversations"
    );
    let ids = |n: usize| (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect::<Vec<_>>();
    let load = Load { commits, per_commit, conversations: ids(conversations), authors: ids(conversations) };
    let layouts = [Layout::Clustered, Layout::Append, Layout::AppendIndexed, Layout::Fold(10), Layout::Fold(40)];
    let mut totals = vec![0.0; layouts.len()];
    for round in 1..=2 {
        for (i, layout) in layouts.iter().enumerate() {
            let us = measure(*layout, &load)?;
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
