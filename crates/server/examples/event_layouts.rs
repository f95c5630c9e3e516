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
//! With `--schema` it measures the real schema instead (every migration
//! in `migrations/sqlite`, and the writer's search index at each commit):
//! the events' `author_kind` check as an `IN` list, as before migration
//! 0047 (three values or more build a b-tree for each row checked), or as
//! comparisons; with the triggers that kept a closed chat's report facts
//! before migration 0048 (any trigger makes each insert keep a statement
//! journal), without them (today, for an open chat), or with the writer
//! keeping the facts by a statement of its own (today, for a chat that
//! has them); an open chat with the events' foreign key enforced, as the
//! server's writer ran it before migration 0049; and that one with the
//! search index brought up to date every N commits instead of at each (or
//! never).
//!
//! ```sh
//! cargo run --release -p holdfast-server --example event_layouts -- [--commits 1000] [--per-commit 130] [--conversations 500] [--page-sizes 4096,1024] [--schema [--variants NAME,…]]
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
    let mut messages = Messages::new(load);
    let (started, cpu_started) = (Instant::now(), thread_cpu_us());
    for commit in 1..=load.commits {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        messages.insert_commit(&mut conn.prepare_cached(&insert)?, |_, _| Ok(()))?;
        if let Layout::Fold(every) = layout
            && commit % every == 0
        {
            conn.execute_batch(
                "INSERT INTO events SELECT * FROM journal ORDER BY conversation_id, seq; DELETE FROM journal;",
            )?;
        }
        conn.execute_batch("COMMIT")?;
    }
    let (cpu_us, rows) = (thread_cpu_us() - cpu_started, messages.rows as f64);
    Ok((started.elapsed().as_secs_f64() * 1e6 / rows, cpu_us / rows))
}

/// The relay's messages, commit by commit.
struct Messages<'a> {
    load: &'a Load,
    /// Each conversation's last seq.
    seqs: Vec<i64>,
    order: Vec<usize>,
    /// Messages inserted so far.
    rows: i64,
}

impl<'a> Messages<'a> {
    fn new(load: &'a Load) -> Self {
        let n = load.conversations.len();
        Messages { load, seqs: vec![0; n], order: (0..n).collect(), rows: 0 }
    }

    /// Insert a commit's messages with `statement` (conversation, seq, id,
    /// author, client id, body, time), each to another of `per_commit`
    /// conversations, calling `after` with each message's conversation
    /// and time.
    fn insert_commit(
        &mut self,
        statement: &mut rusqlite::CachedStatement,
        mut after: impl FnMut(&str, i64) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        let (load, n) = (self.load, self.order.len());
        for i in 0..load.per_commit {
            self.order.swap(i, rand::random_range(i..n));
        }
        for &k in &self.order[..load.per_commit] {
            self.seqs[k] += 1;
            self.rows += 1;
            let rows = self.rows;
            statement.execute(params![
                load.conversations[k],
                self.seqs[k],
                uuid::Uuid::now_v7().to_string(),
                load.authors[k],
                format!("m{rows}"),
                format!("t={}", 1_764_000_000_000 + rows),
                rows,
            ])?;
            after(&load.conversations[k], rows)?;
        }
        Ok(())
    }
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
    /// Instead of the layouts, the real schema and its variants.
    #[arg(long)]
    schema: bool,
    /// With `--schema`: only these variants (names as printed,
    /// comma-separated), the first being the baseline.
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let Args { commits, per_commit, conversations, page_sizes, schema, variants } = clap::Parser::parse();
    anyhow::ensure!(
        commits > 0 && per_commit > 0 && per_commit <= conversations,
        "need --commits > 0 and 0 < --per-commit <= --conversations"
    );
    let ids = |n: usize| (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect::<Vec<_>>();
    let load = Load { commits, per_commit, conversations: ids(conversations), authors: ids(conversations) };
    if !page_sizes.is_empty() {
        return by_page_size(&load, &page_sizes);
    }
    if schema {
        return by_schema(&load, &variants);
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

/// The real schema (every migration), and variants of its events' check,
/// of the triggers that keep a closed chat's report facts, and of foreign
/// keys.
#[derive(Clone, Copy, PartialEq)]
struct Schema {
    /// The `author_kind` check as an `IN` list, as before migration 0047.
    check_in_list: bool,
    facts: Facts,
    /// The events' foreign key to `conversations`, as before migration
    /// 0049, and `PRAGMA foreign_keys = ON`, as the server's writer runs:
    /// each event's conversation is looked up in `conversations`.
    foreign_keys: bool,
    /// The search index is brought up to date every this many commits (at
    /// each, as the writer has until now; 0: never).
    index_every: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Facts {
    /// Kept by the triggers on `events`, as before migration 0048: made
    /// again from migration 0035's own text.
    Triggers,
    /// Nothing more per message: today's writer, for an open chat.
    None,
    /// Kept by a statement of the writer's own after each insert: today's
    /// writer, for a chat that has facts.
    Writer,
}

impl Schema {
    fn name(self) -> String {
        let check = if self.check_in_list { "check-in-list" } else { "check-compares" };
        let facts = match self.facts {
            Facts::Triggers => "fact-triggers",
            Facts::None => "no-facts",
            Facts::Writer => "facts-by-writer",
        };
        let keys = if self.foreign_keys { "+foreign-keys" } else { "" };
        let index = match self.index_every {
            0 => "+no-index".to_string(),
            1 => String::new(),
            n => format!("+index-every-{n}"),
        };
        format!("{check}+{facts}{keys}{index}")
    }
}

const CHECK_IN: &str = "CHECK (author_kind IN ('visitor', 'agent', 'system'))";
const CHECK_COMPARES: &str = "CHECK (author_kind = 'visitor' OR author_kind = 'agent' OR author_kind = 'system')";

const WITH_KEY: &str = "conversation_id TEXT NOT NULL REFERENCES conversations(id),";
const WITHOUT_KEY: &str = "conversation_id TEXT NOT NULL,";

/// Change the events' table's text in the schema from `from` to `to`, as
/// it was before a migration changed it.
fn edit_events(conn: &Connection, from: &str, to: &str) -> anyhow::Result<()> {
    let version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA writable_schema = ON")?;
    conn.execute(
        "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2) WHERE type = 'table' AND name = 'events'",
        [from, to],
    )?;
    conn.execute_batch(&format!("PRAGMA schema_version = {}; PRAGMA writable_schema = RESET;", version + 1))?;
    let sql: String = conn.query_row("SELECT sql FROM sqlite_schema WHERE name = 'events'", [], |r| r.get(0))?;
    anyhow::ensure!(sql.contains(to), "the events' text was not changed to {to:?}: {sql}");
    Ok(())
}

/// A fresh database with every migration of `migrations/sqlite`, in order,
/// changed as `schema` says, and `load`'s conversations in it.
fn migrated(path: &std::path::Path, schema: Schema, load: &Load) -> anyhow::Result<Connection> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536; \
         PRAGMA wal_autocheckpoint = 10000;",
    )?;
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "sql")) {
        conn.execute_batch(&std::fs::read_to_string(file)?)?;
    }
    if schema.check_in_list {
        // The check's text back as it was, as migration 0047 changes it.
        edit_events(&conn, CHECK_COMPARES, CHECK_IN)?;
    }
    if schema.foreign_keys {
        // The foreign key back, as migration 0049 takes it out.
        edit_events(&conn, WITHOUT_KEY, WITH_KEY)?;
    }
    if schema.facts == Facts::Triggers {
        conn.execute_batch(&facts_triggers(&dir)?)?;
    }
    // The conversations' site, visitor and group are not there.
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let mut add = conn.prepare(
        "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at) \
         VALUES (?1, 's', 'v', 'g', 'active', 0)",
    )?;
    for id in &load.conversations {
        add.execute([id])?;
    }
    drop(add);
    if schema.foreign_keys {
        conn.execute_batch("PRAGMA foreign_keys = ON")?;
    }
    Ok(conn)
}

/// The triggers that kept the report facts until migration 0048 dropped
/// them, as migration 0035 made them.
fn facts_triggers(migrations: &std::path::Path) -> anyhow::Result<String> {
    let sql = std::fs::read_to_string(migrations.join("0035_report_facts.sql"))?;
    let triggers: Vec<&str> = sql
        .split_inclusive("END;")
        .filter_map(|part| part.find("CREATE TRIGGER events_facts_").map(|at| &part[at..]))
        .collect();
    anyhow::ensure!(triggers.len() == 2, "migration 0035's two triggers were not found");
    Ok(triggers.concat())
}

/// Microseconds of the writer thread's CPU per row on the real schema
/// changed as `schema` says: the events' insert as the writer writes it,
/// and the search index of the messages since the last at the end of a
/// commit, every `index_every` commits.
fn measure_schema(schema: Schema, load: &Load) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let conn = migrated(&dir.path().join("probe.db"), schema, load)?;
    let mut messages = Messages::new(load);
    let mut indexed = 0_i64;
    let cpu_started = thread_cpu_us();
    for commit in 1..=load.commits {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, created_at) \
             VALUES (?1, ?2, ?3, 'message', 'visitor', ?4, ?5, ?6, '{}', ?7)",
        )?;
        messages.insert_commit(&mut insert, |conversation, at| {
            if schema.facts == Facts::Writer {
                conn.prepare_cached(
                    "UPDATE conversations SET messages = messages + 1, \
                     first_visitor_at = min(coalesce(first_visitor_at, ?2), ?2) \
                     WHERE id = ?1 AND messages IS NOT NULL",
                )?
                .execute(params![conversation, at])?;
            }
            Ok(())
        })?;
        if schema.index_every > 0 && (commit % schema.index_every == 0 || commit == load.commits) {
            conn.prepare_cached(
                "INSERT INTO message_search (rowid, text) SELECT rowid, body FROM events \
                 WHERE rowid > ?1 AND kind = 'message' AND body IS NOT NULL",
            )?
            .execute([indexed])?;
            indexed = conn.query_row("SELECT coalesce(max(rowid), 0) FROM events", [], |r| r.get(0))?;
        }
        conn.execute_batch("COMMIT")?;
    }
    Ok((thread_cpu_us() - cpu_started) / messages.rows as f64)
}

/// The real schema and its variants, in four interleaved rounds (each
/// round in the other order from the last).
fn by_schema(load: &Load, only: &[String]) -> anyhow::Result<()> {
    let schemas = [
        (true, Facts::Triggers, false, 1),
        (false, Facts::Triggers, false, 1),
        (true, Facts::None, false, 1),
        (false, Facts::None, false, 1),
        (false, Facts::Writer, false, 1),
        (false, Facts::None, true, 1),
        (false, Facts::None, true, 8),
        (false, Facts::None, true, 16),
        (false, Facts::None, true, 64),
        (false, Facts::None, true, 0),
        // Today's writer for an open chat (no key since migration 0049,
        // passes of 2,048 writes: some 16 commits), and with no index.
        (false, Facts::None, false, 16),
        (false, Facts::None, false, 0),
    ]
    .map(|(check_in_list, facts, foreign_keys, index_every)| Schema {
        check_in_list,
        facts,
        foreign_keys,
        index_every,
    });
    let schemas: Vec<Schema> = if only.is_empty() {
        schemas.to_vec()
    } else {
        let named = |name: &String| schemas.iter().copied().find(|s| &s.name() == name);
        only.iter()
            .map(|name| named(name).ok_or_else(|| anyhow::anyhow!("no variant is named {name}")))
            .collect::<anyhow::Result<_>>()?
    };
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); schemas.len()];
    for round in 1..=4 {
        let mut order: Vec<usize> = (0..schemas.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let cpu = measure_schema(schemas[i], load)?;
            runs[i].push(cpu);
            println!("round={round} schema={} cpu_us_per_row={cpu:.1}", schemas[i].name());
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    let baseline = median(&runs[0]);
    let summary: Vec<String> = schemas
        .iter()
        .zip(&runs)
        .map(|(s, r)| format!("{}=cpu{:.1}us({:.2}x)", s.name(), median(r), median(r) / baseline))
        .collect();
    println!("scenario=event-schema per_commit={} medians {}", load.per_commit, summary.join(" "));
    Ok(())
}
