//! The group-commit writer of the SQLite store: one OS thread with its own
//! connection (rusqlite, the same SQLite library sqlx links) that takes
//! every conversation change waiting, applies them in one `fsync`ed
//! transaction with cached prepared statements, and only then answers each
//! caller. A message is therefore durable before it is acknowledged, at the
//! cost of one `fsync` per batch instead of per message.
//!
//! Why not sqlx here: its SQLite driver sends every statement through a
//! channel to a worker thread, and the hot path runs four statements per
//! message; profiling the relay showed that hop (futex wake-ups, context
//! switches) dominating the server's CPU. Everything off the hot path stays
//! on sqlx.
//!
//! This thread is the only writer of conversations and events in the
//! process, so it keeps them cached ([`Cache`]): a message costs an insert
//! and no read.
//!
//! Background work (retention) comes as [`Job::Background`]: it waits while
//! any other job waits, runs in small transactions of its own, and commits
//! without an `fsync` of its own (the next chat commit's makes it durable;
//! a power cut before that loses only work the job does again). So a chat
//! write waits for one small background unit at most, never for its disk.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::path::Path;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use foldhash::quality::RandomState;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::outbox::sqlite_insert_delivery;
use super::rules;
use super::sqlite::{conversation_row, event_row, sql};
use super::webhooks::SiteHooks;
use super::*;
use crate::error::{Error, Result};

/// Most jobs one group commit takes; bounds the latency of a batch.
const MAX_BATCH: usize = 1024;
/// How long background work waits for chat to pause before it runs anyway
/// (one unit, between two batches), so a writer that is never idle still
/// makes progress on it.
const BACKGROUND_WAITS_AT_MOST: Duration = Duration::from_millis(500);
/// A batch smaller than this, taken by a busy writer, waits a moment for
/// more jobs before it commits ([`Linger`]).
const LINGER_BELOW: usize = 100;
/// The longest that wait lasts, looked at every [`LINGER_SLICE`].
const LINGER_AT_MOST: Duration = Duration::from_millis(1);
const LINGER_SLICE: Duration = Duration::from_micros(250);
/// Batches in a row that found their first job already waiting, as the
/// commit before them ended, before the writer counts as busy.
const BUSY_AFTER: u32 = 3;
/// Writes the search index lets wait before a commit brings it up to date
/// ([`SearchIndex`]).
const INDEX_EVERY: usize = 2048;
/// Conversations the writer keeps cached; past this, it evicts the least
/// recently used.
const MAX_CACHED: usize = 200_000;
/// Message keys (12 bytes each, with their seqs) the writer keeps cached
/// over all conversations; past this, it evicts the least recently used
/// conversations. 48 MiB at most: room for the full windows of 4,000
/// conversations that all chat at once (2,000 in the soak benchmark).
const MAX_KEYS: usize = 4_000_000;

/// What the cache remembers, and how much of it.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Messages per conversation whose keys are remembered (the window).
    window: usize,
    /// How long a key is remembered, in ms.
    remember_for_ms: i64,
    /// Keys over all conversations before the least recently used are evicted.
    max_keys: usize,
    /// Conversations before the least recently used are evicted.
    max_conversations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: REMEMBERED_MESSAGES,
            remember_for_ms: REMEMBERED_FOR_MS,
            max_keys: MAX_KEYS,
            max_conversations: MAX_CACHED,
        }
    }
}

/// The conversations the writer has touched, as it last wrote them, each
/// with a hash of the (author, client id) of its most recent messages (the
/// idempotency window, [`REMEMBERED_MESSAGES`]). A new message is thereby
/// proven new without an index on client ids: that index gave each
/// conversation a leaf of its own, rewritten whole into the WAL by every
/// group commit that carried one of its messages. A key found in the window
/// is looked up by its seq (a retry, or a collision).
///
/// What a message costs does not grow with history: a conversation not
/// cached reads back the keys of its window only, from the end of its range
/// in the `(conversation_id, seq)` index, and under the key budget the
/// least recently used conversations are evicted whole. The window is the
/// same whether a conversation was cached or read back, so an answer never
/// depends on the cache (nor on a restart).
struct Cache {
    conversations: HashMap<String, Cached>,
    /// Keys held, over all conversations.
    keys: usize,
    /// Batches started: a conversation's `used` is the last that touched it.
    batch: u64,
    limits: Limits,
    hasher: RandomState,
}

struct Cached {
    conversation: Conversation,
    /// Whether its facts for reports are taken (its row's `messages` is
    /// set): they are then kept by each event (`insert_event`).
    has_facts: bool,
    /// The window, oldest first: its messages' keys, and their seqs.
    recent: Window,
    /// The batch that last used it (least recently used are evicted first).
    used: u64,
}

/// A conversation's window: keys and seqs of its most recent messages,
/// oldest first, in two rings kept in step. The keys have a ring of their
/// own because every message scans it: 4 KiB at most, read in chunks the
/// compiler turns into vector compares, 32-bit ones being the widest plain
/// x86-64 has (a profile of the soak showed a scan of (u64 key, seq) pairs
/// as the writer's hottest loop; this one is ten times faster). 32 bits
/// are enough: a key found is checked against the stored row anyway, and
/// two keys share one in a window of 1,000 about once in four million
/// messages.
#[derive(Debug, Default)]
struct Window {
    keys: VecDeque<u32>,
    seqs: VecDeque<i64>,
}

impl Window {
    fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether some message in the window has this key.
    fn holds(&self, key: u32) -> bool {
        let (older, newer) = self.keys.as_slices();
        [older, newer].into_iter().any(|keys| {
            let chunks = keys.chunks_exact(32);
            let rest = chunks.remainder();
            // No early exit within a chunk: that is what lets it vectorize.
            chunks.into_iter().any(|chunk| chunk.iter().fold(false, |hit, k| hit | (*k == key))) || rest.contains(&key)
        })
    }

    /// Seqs of the messages with this key, newest first.
    fn seqs_of(&self, key: u32) -> impl Iterator<Item = i64> + '_ {
        // The common case, a new key, ends with the vectorized scan.
        let look = if self.holds(key) { self.keys.len() } else { 0 };
        self.keys.iter().zip(&self.seqs).rev().take(look).filter(move |(k, _)| **k == key).map(|(_, seq)| *seq)
    }

    /// Add a message, forgetting what leaves the window.
    fn remember(&mut self, key: u32, seq: i64, window: usize) {
        self.keys.push_back(key);
        self.seqs.push_back(seq);
        while self.keys.len() > window {
            self.keys.pop_front();
            self.seqs.pop_front();
        }
    }

    /// Add an older message in front (reading a window back, newest first).
    fn remember_older(&mut self, key: u32, seq: i64) {
        self.keys.push_front(key);
        self.seqs.push_front(seq);
    }
}

impl Cache {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        Cache { conversations: HashMap::default(), keys: 0, batch: 0, limits, hasher: RandomState::default() }
    }

    fn clear(&mut self) {
        self.conversations.clear();
        self.keys = 0;
    }

    /// Called before each batch: count it, and evict what is over budget.
    fn start_batch(&mut self) {
        self.batch += 1;
        self.evict_least_recently_used();
    }

    /// Over either budget, evict the least recently used conversations until
    /// both are down to three quarters (so that eviction is rare, not a cost
    /// of every batch). An evicted conversation is read back when next used.
    fn evict_least_recently_used(&mut self) {
        let Limits { max_keys, max_conversations, .. } = self.limits;
        if self.keys <= max_keys && self.conversations.len() <= max_conversations {
            return;
        }
        let (keys_goal, conversations_goal) = (max_keys / 4 * 3, max_conversations / 4 * 3);
        let mut by_use: Vec<(u64, String)> = self.conversations.iter().map(|(id, c)| (c.used, id.clone())).collect();
        by_use.sort_unstable();
        let mut evicted = 0u64;
        for (_, id) in by_use {
            if self.keys <= keys_goal && self.conversations.len() <= conversations_goal {
                break;
            }
            if let Some(gone) = self.conversations.remove(&id) {
                self.keys -= gone.recent.len();
                evicted += 1;
            }
        }
        metrics::counter!("holdfast_store_writer_evicted_total").increment(evicted);
    }

    fn key(&self, author: &Author, client_id: &str) -> u32 {
        self.hash(author.kind.as_str(), author.id.as_deref(), client_id)
    }

    /// A message's key from its stored columns: author kind, author id,
    /// client id (32 bits of a keyed hash, see [`Window`]).
    fn hash(&self, kind: &str, author_id: Option<&str>, client_id: &str) -> u32 {
        (self.hasher.hash_one((kind, author_id, client_id)) >> 32) as u32
    }

    /// The conversation, read with its window's keys if it is not cached.
    fn load(&mut self, conn: &Connection, id: &str) -> rusqlite::Result<Option<&mut Cached>> {
        if !self.conversations.contains_key(id) {
            let found = conn
                .prepare_cached("SELECT * FROM conversations_with_seq WHERE id = ?1")?
                .query_row([id], |r| Ok((conversation_row(r)?, r.get::<_, Option<i64>>("messages")?.is_some())))
                .optional()?;
            let Some((conversation, has_facts)) = found else { return Ok(None) };
            let recent = self.read_window(conn, id)?;
            self.keys += recent.len();
            metrics::counter!("holdfast_store_writer_cold_loads_total").increment(1);
            let cached = Cached { conversation, has_facts, recent, used: self.batch };
            self.conversations.insert(id.to_owned(), cached);
        }
        let cached = self.conversations.get_mut(id);
        if let Some(cached) = cached {
            cached.used = self.batch;
            return Ok(Some(cached));
        }
        Ok(None)
    }

    /// The keys of a conversation's most recent messages, oldest first: a
    /// walk back from the end of its range in the `(conversation_id, seq)`
    /// index that stops after `window` messages.
    fn read_window(&self, conn: &Connection, id: &str) -> rusqlite::Result<Window> {
        let mut recent = Window::default();
        let mut newest_first = conn.prepare_cached(READ_WINDOW)?;
        let mut rows = newest_first.query(params![id, self.limits.window as i64])?;
        while let Some(row) = rows.next()? {
            let (seq, kind, author_id, client_id): (i64, String, Option<String>, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            recent.remember_older(self.hash(&kind, author_id.as_deref(), &client_id), seq);
        }
        Ok(recent)
    }
}

/// A conversation's window of message keys, newest first (`?2` messages).
const READ_WINDOW: &str = "SELECT seq, author_kind, author_id, client_id FROM events \
     WHERE conversation_id = ?1 AND client_id IS NOT NULL ORDER BY seq DESC LIMIT ?2";

pub(super) struct PendingChange {
    pub conversation_id: String,
    pub guard: Option<Guard>,
    pub change: Change,
    pub reply: oneshot::Sender<Result<Applied>>,
}

/// Any other write of the store, run inside the group commit in a savepoint
/// of its own (its SQL error rolls back only itself). It must not change
/// conversation rows: those go through [`PendingChange`] and the cache.
/// Returns whether it succeeded and what to tell its caller once the batch
/// is over (`Ok` when it committed).
pub(super) type Exec = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;
pub(super) type Reply = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

pub(super) enum Job {
    Change(PendingChange),
    Exec(Exec),
    /// An `Exec` that runs only when nothing else waits (or after
    /// [`BACKGROUND_WAITS_AT_MOST`]), alone, and commits without `fsync`.
    Background(Exec),
    /// An `Exec` already run in this batch (its reply waits in the outcomes).
    Ran,
}

// One per job of a batch, moved once: boxing the large variant would cost
// an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Change(Result<Applied>),
    Exec(Reply),
}

/// Open the writer's connection and start its thread.
pub(super) fn spawn(db: &Path) -> Result<mpsc::Sender<Job>> {
    let conn = Connection::open(db).map_err(|e| Error::Store(anyhow::anyhow!("cannot open the writer: {e}")))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    // A batch touches a few hundred pages spread over the events tree and
    // its indexes: keep them cached (64 MiB) instead of re-reading them.
    // The checkpointer thread copies the WAL back beside the writer; the
    // writer still checkpoints every ~40 MiB (only its own checkpoint lets
    // the WAL start over under a steady load), and finds nearly every frame
    // copied already, so that does not stall a batch for long.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 10000; \
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(sql)?;
    conn.set_prepared_statement_cache_capacity(64);
    super::sqlite::plan_once(&conn)?;
    let index = SearchIndex::open(&conn).map_err(sql)?;
    let checkpointer = spawn_checkpointer(db)?;
    let (tx, rx) = mpsc::channel(8192);
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            run(conn, index, rx);
            // The writer is gone: the checkpointer makes a last pass and stops.
            drop(checkpointer);
        })
        .map_err(|e| Error::internal(anyhow::anyhow!("cannot start the writer: {e}")))?;
    Ok(tx)
}

/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Start the thread that checkpoints the WAL, on a connection of its own, so
/// the writer's commits never wait for one. A passive checkpoint takes no
/// lock a writer or reader needs; the writer starts the WAL over once a
/// checkpoint has caught up with it. It stops, after a last pass, when the
/// returned sender is dropped.
fn spawn_checkpointer(db: &Path) -> Result<std::sync::mpsc::Sender<()>> {
    use std::sync::mpsc::RecvTimeoutError;
    let conn = Connection::open(db).map_err(|e| Error::Store(anyhow::anyhow!("cannot open the checkpointer: {e}")))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;").map_err(sql)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            loop {
                let last = !matches!(stopped.recv_timeout(CHECKPOINT_EVERY), Err(RecvTimeoutError::Timeout));
                let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
                match pass {
                    Ok(frames) => metrics::gauge!("holdfast_store_wal_frames").set(frames as f64),
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; the next pass retries"),
                }
                if last {
                    break;
                }
            }
        })
        .map_err(|e| Error::internal(anyhow::anyhow!("cannot start the checkpointer: {e}")))?;
    Ok(stop)
}

fn run(conn: Connection, mut index: SearchIndex, mut rx: mpsc::Receiver<Job>) {
    use tokio::sync::mpsc::error::TryRecvError;
    let mut cache = Cache::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Kept from batch to batch: freeing it (often over 64 KiB) made glibc
    // consolidate its free lists at every commit (seen in the writer's profile).
    let mut spare: Vec<Outcome> = Vec::with_capacity(MAX_BATCH);
    let mut background: VecDeque<(Instant, Exec)> = VecDeque::new();
    let mut linger = Linger::default();
    loop {
        // Chat first; background work when nothing else waits.
        let (first, was_waiting) = match rx.try_recv() {
            Ok(job) => (job, true),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => match background.pop_front() {
                Some((_, exec)) => match run_background(&conn, &mut cache, &mut index, exec) {
                    Ok(()) => continue,
                    Err(e) => break stopped(e),
                },
                None => match rx.blocking_recv() {
                    Some(job) => (job, false),
                    None => break,
                },
            },
        };
        match first {
            Job::Background(exec) => background.push_back((Instant::now(), exec)),
            job => batch.push(job),
        }
        take_waiting(&mut rx, &mut batch, &mut background);
        if batch.is_empty() {
            continue;
        }
        if linger.found(was_waiting).waits(batch.len()) {
            metrics::counter!("holdfast_store_writer_lingered_total").increment(1);
            let until = Instant::now() + LINGER_AT_MOST;
            while batch.len() < LINGER_BELOW && Instant::now() < until {
                std::thread::sleep(LINGER_SLICE);
                take_waiting(&mut rx, &mut batch, &mut background);
            }
        }
        cache.start_batch();
        match apply_batch(&conn, &mut cache, &mut index, &mut batch, std::mem::take(&mut spare)) {
            Ok(mut outcomes) => {
                metrics::histogram!("holdfast_store_batch_size").record(batch.len() as f64);
                for (job, outcome) in batch.drain(..).zip(outcomes.drain(..)) {
                    answer(job, outcome, Ok(()));
                }
                spare = outcomes;
            }
            Err((err, outcomes)) => {
                // The batch failed as a whole (I/O, disk full...): what ran
                // is rolled back. Changes and writes not run yet are retried
                // each on its own, so one bad job cannot fail the others.
                tracing::warn!(error = %err, size = batch.len(), "group commit failed, retrying one by one");
                let mut outcomes = outcomes.into_iter();
                for job in batch.drain(..) {
                    match (job, outcomes.next()) {
                        (Job::Ran, Some(Outcome::Exec(reply))) => reply(Err(err.to_string())),
                        (job, _) => {
                            let mut alone = vec![job];
                            match apply_batch(&conn, &mut cache, &mut index, &mut alone, Vec::new()) {
                                Ok(mut o) => match o.pop() {
                                    Some(outcome) => answer(alone.remove(0), outcome, Ok(())),
                                    None => fail(alone.remove(0), "no result".into()),
                                },
                                Err((e, mut o)) => match (alone.remove(0), o.pop()) {
                                    (_, Some(Outcome::Exec(reply))) => reply(Err(e.to_string())),
                                    (job, _) => fail(job, e.to_string()),
                                },
                            }
                        }
                    }
                }
            }
        }
        if background.front().is_some_and(|(since, _)| since.elapsed() >= BACKGROUND_WAITS_AT_MOST)
            && let Some((_, exec)) = background.pop_front()
            && let Err(e) = run_background(&conn, &mut cache, &mut index, exec)
        {
            break stopped(e);
        }
    }
}

/// Move every job waiting into the batch (background work aside), up to
/// [`MAX_BATCH`].
fn take_waiting(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, background: &mut VecDeque<(Instant, Exec)>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Job::Background(exec)) => background.push_back((Instant::now(), exec)),
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Whether a small batch waits a moment for more before it commits: group
/// commit's commit delay, for a writer that is busy.
///
/// Each commit costs the writer about the same whatever its size (the
/// `fsync`, the pages every batch rewrites: the events' last leaf, their
/// indexes'), so when the writer has a core to itself it commits smaller
/// batches more often and spends more CPU on each message. Measured with
/// one runtime worker on two cores (`docs/benchmarks.md`): 28–40 messages
/// a commit without this wait, 72–85 with it, and 0.90x the writer's CPU.
/// A busy writer therefore lets a batch of fewer than [`LINGER_BELOW`] jobs
/// wait up to [`LINGER_AT_MOST`] for more. Busy means its last
/// [`BUSY_AFTER`] batches each found their first job already waiting as the
/// commit before ended; a writer that waited for work, as on any server
/// that is not loaded, never delays a message.
#[derive(Debug, Default)]
struct Linger {
    found_waiting_in_a_row: u32,
}

impl Linger {
    /// Count a batch, by whether its first job was waiting already.
    fn found(&mut self, waiting: bool) -> &Self {
        self.found_waiting_in_a_row = if waiting { self.found_waiting_in_a_row.saturating_add(1) } else { 0 };
        self
    }

    fn waits(&self, batch: usize) -> bool {
        self.found_waiting_in_a_row >= BUSY_AFTER && batch < LINGER_BELOW
    }
}

/// One background unit, in a transaction of its own that commits without
/// waiting for the disk (WAL with `synchronous = NORMAL`: the database stays
/// consistent across a power cut, which may undo this unit; the next chat
/// commit's `fsync` covers it).
fn run_background(conn: &Connection, cache: &mut Cache, index: &mut SearchIndex, exec: Exec) -> rusqlite::Result<()> {
    if let Err(e) = conn.execute_batch("PRAGMA synchronous = NORMAL") {
        tracing::warn!(error = %e, "the writer cannot commit background work without fsync; it waits for the disk");
    }
    let mut one = [Job::Exec(exec)];
    match apply_batch(conn, cache, index, &mut one, Vec::new()) {
        Ok(mut outcomes) => match outcomes.pop() {
            Some(Outcome::Exec(reply)) => reply(Ok(())),
            _ => tracing::warn!("a background unit ran without an answer"),
        },
        Err((e, mut outcomes)) => {
            if let Some(Outcome::Exec(reply)) = outcomes.pop() {
                reply(Err(e.to_string()));
            }
        }
    }
    // Every later commit must be durable before its answer: without FULL
    // back, the writer stops rather than acknowledge what is not on disk.
    conn.execute_batch("PRAGMA synchronous = FULL")
}

/// The writer stops: every later write of the store fails as unavailable.
fn stopped(e: rusqlite::Error) {
    tracing::error!(error = %e, "the SQLite writer cannot restore synchronous = FULL and stops");
}

/// Tell a job's caller how it went, once its batch is over.
fn answer(job: Job, outcome: Outcome, committed: std::result::Result<(), String>) {
    match (job, outcome) {
        (Job::Change(p), Outcome::Change(r)) => {
            let _ = p.reply.send(committed.map_err(|e| Error::Store(anyhow::anyhow!(e))).and(r));
        }
        (_, Outcome::Exec(reply)) => reply(committed),
        (job, _) => fail(job, "job and outcome out of step".into()),
    }
}

fn fail(job: Job, err: String) {
    if let Job::Change(p) = job {
        let _ = p.reply.send(Err(Error::Store(anyhow::anyhow!(err))));
    }
}

/// Apply every job in one transaction. Logical refusals (a closed
/// conversation, an agent at their limit, a failed guard) are per-change
/// results and write nothing; an `Exec`'s SQL error rolls back its own
/// savepoint; any other SQL error aborts the whole batch, returned with the
/// outcomes of the jobs that ran. `outcomes` is a vector to reuse.
fn apply_batch(
    conn: &Connection,
    cache: &mut Cache,
    index: &mut SearchIndex,
    batch: &mut [Job],
    mut outcomes: Vec<Outcome>,
) -> std::result::Result<Vec<Outcome>, (rusqlite::Error, Vec<Outcome>)> {
    outcomes.clear();
    outcomes.reserve(batch.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return Err((e, outcomes));
    }
    // Where the index stood, for a batch rolled back.
    let before = *index;
    let now = now_ms();
    let mut sites = SiteHooks::default();
    if batch.iter().any(|job| matches!(job, Job::Change(_))) {
        crate::low_priority::chat_wrote(now);
    }
    for job in batch.iter_mut() {
        let ran = match std::mem::replace(job, Job::Ran) {
            Job::Change(p) => {
                index.waiting += 1;
                let applied = apply_one(conn, cache, &mut sites, &p, now).map(Outcome::Change);
                *job = Job::Change(p);
                applied
            }
            // An erasure may change any message not yet indexed: it must be
            // in the index first, for the index to forget its old words.
            // Any write may change a site's webhooks: read them again after.
            Job::Exec(exec) | Job::Background(exec) => {
                sites.forget();
                index.catch_up(conn).and_then(|()| {
                    index.waiting += 1; // it may write messages
                    run_exec(conn, exec)
                })
            }
            Job::Ran => Err(rusqlite::Error::InvalidQuery),
        };
        match ran {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                cache.clear(); // it may hold rows of the rolled-back changes
                *index = before;
                return Err((e, outcomes));
            }
        }
    }
    let indexed = if index.waiting >= INDEX_EVERY { index.catch_up(conn) } else { Ok(()) };
    if let Err(e) = indexed.and_then(|()| conn.execute_batch("COMMIT")) {
        let _ = conn.execute_batch("ROLLBACK");
        cache.clear();
        *index = before;
        return Err((e, outcomes));
    }
    Ok(outcomes)
}

/// Where the search index stands. Its words are written in passes, each
/// taking every message written since the last: a pass at every commit
/// cost FTS5 a segment for each, merged again and again
/// (`examples/event_layouts.rs`: 0.91x the writer's CPU a message in
/// passes of 64 commits, at a million rows). A pass runs before any write
/// but a chat change (an erasure must find the words it takes out), and
/// at the commit that finds [`INDEX_EVERY`] writes waiting. A search asks
/// the writer for a write first (`SqliteStore::find_chats`), so it finds
/// every message acknowledged before it; after a crash, the writer's start
/// makes the pass the crash left undone.
#[derive(Debug, Clone, Copy, Default)]
struct SearchIndex {
    /// Every event up to this rowid is in the index, or is no message
    /// with words.
    indexed: i64,
    /// Writes since the last pass.
    waiting: usize,
}

impl SearchIndex {
    /// The index of `conn`'s database, brought up to date. Its newest
    /// message marks the last pass: a pass takes every message since the
    /// one before, and events are never renumbered, so every message after
    /// the newest the index holds was written since (one taken out again
    /// since, erased or deleted, leaves none of its words).
    fn open(conn: &Connection) -> rusqlite::Result<SearchIndex> {
        let newest: i64 =
            conn.query_row("SELECT coalesce(max(id), 0) FROM message_search_docsize", [], |r| r.get(0))?;
        // What the last run left unindexed is not known: one pass.
        let mut index = SearchIndex { indexed: newest, waiting: 1 };
        // Rolled back if dropped before its commit.
        let pass = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        index.catch_up(&pass)?;
        pass.commit()?;
        Ok(index)
    }

    /// A pass: every message written since the last into the index, in
    /// the open transaction; none when nothing was written since.
    fn catch_up(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if self.waiting == 0 {
            return Ok(());
        }
        index_new_messages(conn, self.indexed)?;
        self.indexed = newest_event(conn)?;
        self.waiting = 0;
        Ok(())
    }
}

/// The rowid of the newest event (0 for none): every event a commit writes
/// gets a higher one, as events are never deleted.
fn newest_event(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT coalesce(max(rowid), 0) FROM events")?.query_row([], |r| r.get(0))
}

/// Put the messages written since the event `indexed` into the search
/// index, in one statement ([`SearchIndex`]; migration 0044: FTS5 writes
/// a segment at every savepoint, so a message indexed as it was written
/// cost a segment each). A message's words are
/// its body, then its files' names: the same text as migration 0032's
/// update trigger makes, which must match it to take a message's words
/// out of the contentless index. A message whose data cannot hold files
/// skips the `json_each` (0.55 µs a message against 0.1, in `sqlite3`
/// over 200,000 rows).
fn index_new_messages(conn: &Connection, indexed: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO message_search (rowid, text) \
         SELECT e.rowid, CASE WHEN instr(e.data, '\"attachments\"') = 0 THEN e.body \
         ELSE e.body || coalesce((SELECT ' ' || group_concat(json_extract(a.value, '$.name'), ' ') \
         FROM json_each(e.data, '$.attachments') a), '') END \
         FROM events e WHERE e.rowid > ?1 AND e.kind = 'message' AND e.body IS NOT NULL",
    )?
    .execute([indexed])?;
    Ok(())
}

fn run_exec(conn: &Connection, exec: Exec) -> rusqlite::Result<Outcome> {
    conn.prepare_cached("SAVEPOINT exec")?.execute([])?;
    let (ok, reply) = exec(conn);
    if !ok {
        conn.prepare_cached("ROLLBACK TO exec")?.execute([])?;
    }
    conn.prepare_cached("RELEASE exec")?.execute([])?;
    Ok(Outcome::Exec(reply))
}

/// The event `author` stored before with `client_id`, found in the table
/// (for rare changes; messages look in the window first).
fn earlier_event(
    conn: &Connection,
    id: &str,
    author: &Author,
    client_id: &str,
) -> rusqlite::Result<Option<StoredEvent>> {
    conn.prepare_cached(
        "SELECT * FROM events WHERE conversation_id = ?1 AND author_kind = ?2 AND author_id IS ?3 AND client_id = ?4",
    )?
    .query_row(params![id, author.kind.as_str(), author.id, client_id], event_row)
    .optional()
}

/// Outer `Result`: SQL failure (aborts the batch). Inner: the change's own
/// outcome.
fn apply_one(
    conn: &Connection,
    cache: &mut Cache,
    sites: &mut SiteHooks,
    p: &PendingChange,
    now: i64,
) -> rusqlite::Result<Result<Applied>> {
    let id = p.conversation_id.as_str();
    let key = match &p.change {
        Change::Message { author, client_id, .. } => cache.key(author, client_id),
        _ => 0,
    };
    let limits = cache.limits;
    let Some(cached) = cache.load(conn, id)? else { return Ok(Err(Error::NotFound("conversation"))) };
    if let Some(guard) = &p.guard
        && let Err(e) = guard.check(&cached.conversation)
    {
        return Ok(Err(e));
    }
    let conv = &cached.conversation;
    let mut previous_agent = None;
    let (mut next, (kind, author, client_id, body, data)) = match &p.change {
        Change::Message { author, client_id, body, attachments, integration } => {
            let known = cached.recent.len();
            let message = NewMessage { author, client_id, body, attachments, integration: integration.as_deref() };
            let applied = append_message(conn, cached, sites, limits, key, message, now)?;
            let held = cached.recent.len();
            cache.keys = cache.keys + held - known;
            return Ok(applied);
        }
        Change::Assign { agent_id, agent_name, by, limit, only_if_unassigned } => {
            if let Err(e) = rules::check_assign(conv, agent_id, *only_if_unassigned) {
                return Ok(Err(e));
            }
            let agent: Option<Option<i64>> = conn
                .prepare_cached("SELECT photo_at FROM agents WHERE id = ?1")?
                .query_row([agent_id], |r| r.get(0))
                .optional()?;
            let Some(photo_at) = agent else {
                return Ok(Err(Error::NotFound("agent")));
            };
            if let Some(limit) = limit {
                let active: i64 = conn
                    .prepare_cached("SELECT count(*) FROM conversations WHERE agent_id = ?1 AND status = 'active'")?
                    .query_row([agent_id], |r| r.get(0))?;
                if active >= *limit {
                    return Ok(Err(Error::conflict("the agent is at their chat limit")));
                }
            }
            let (assigned, previous, parts) = rules::assign(conv, agent_id, agent_name, photo_at, by, now);
            previous_agent = previous;
            conn.prepare_cached("UPDATE agents SET last_assigned_at = ?1 WHERE id = ?2")?
                .execute(params![now, agent_id])?;
            (assigned, parts)
        }
        Change::TransferToGroup { group_id, group_name, by } => {
            match rules::transfer_to_group(conv, group_id, group_name, by) {
                Ok((moved, previous, parts)) => {
                    previous_agent = previous;
                    (moved, parts)
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Change::Close { by } => match rules::close(conv, by, now) {
            Ok((closed, parts)) => (closed, parts),
            Err(e) => return Ok(Err(e)),
        },
        Change::Reply { author, client_id, body, .. } => {
            // Rare (a person answering a lead), so the retry is found in
            // the table rather than the message window.
            if let Some(event) = earlier_event(conn, id, author, client_id)? {
                return Ok(Ok(Applied { event, conversation: conv.clone(), previous_agent: None, duplicate: true }));
            }
            if let Err(e) = rules::check_reply(conv) {
                return Ok(Err(e));
            }
            (conv.clone(), rules::reply(author, client_id, body))
        }
        Change::Note { author, client_id, body } => {
            // Found in the table, as a reply's retry is (notes are rare).
            if let Some(event) = earlier_event(conn, id, author, client_id)? {
                return Ok(Ok(Applied { event, conversation: conv.clone(), previous_agent: None, duplicate: true }));
            }
            (conv.clone(), rules::note(author, client_id, body))
        }
        Change::Read { reader, up_to } => {
            if let Err(e) = rules::check_read(conv, *up_to) {
                return Ok(Err(e));
            }
            // Only a receipt that moves the reader forward is recorded, so
            // clients acknowledging each other's receipts cannot loop.
            let last = conn
                .prepare_cached(
                    "SELECT * FROM events WHERE conversation_id = ?1 AND kind = 'read' AND author_kind = ?2 \
                     AND author_id IS ?3 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row(params![id, reader.kind.as_str(), reader.id], event_row)
                .optional()?;
            if let Some(last) = last
                && last.data.get("up_to").and_then(|v| v.as_i64()).unwrap_or(0) >= *up_to
            {
                return Ok(Ok(Applied {
                    event: last,
                    conversation: conv.clone(),
                    previous_agent: None,
                    duplicate: true,
                }));
            }
            (conv.clone(), rules::read(reader, *up_to))
        }
        Change::Rate { by, client_id, rating, comment } => {
            let existing = conn
                .prepare_cached(
                    "SELECT e.* FROM ratings r JOIN events e ON e.conversation_id = r.conversation_id AND e.seq = r.seq \
                     WHERE r.conversation_id = ?1",
                )?
                .query_row([id], event_row)
                .optional()?;
            match rules::check_rate(conv, existing, by, client_id) {
                Ok(Some(event)) => {
                    return Ok(Ok(Applied {
                        event,
                        conversation: conv.clone(),
                        previous_agent: None,
                        duplicate: true,
                    }));
                }
                Ok(None) => (conv.clone(), rules::rate(by, client_id, *rating, comment.as_deref())),
                Err(e) => return Ok(Err(e)),
            }
        }
    };
    next.last_seq = conv.last_seq + 1;
    conn.prepare_cached(
        "UPDATE conversations SET agent_id = ?1, group_id = ?2, status = ?3, assigned_at = ?4, closed_at = ?5 \
         WHERE id = ?6",
    )?
    .execute(params![next.agent_id, next.group_id, next.status.as_str(), next.assigned_at, next.closed_at, id])?;
    let event = StoredEvent {
        conversation_id: id.to_owned(),
        seq: next.last_seq,
        id: new_id(),
        kind: kind.to_owned(),
        author,
        client_id,
        body,
        data,
        created_at: now,
    };
    insert_event(conn, &event, &mut cached.has_facts)?;
    super::webhooks::sqlite_queue_event_hooks(conn, sites, &next, &event)?;
    if let Change::Reply { email, .. } = &p.change {
        sqlite_insert_delivery(conn, email)?;
    }
    if let Change::Rate { rating, .. } = &p.change {
        conn.prepare_cached(
            "INSERT INTO ratings (conversation_id, site_id, seq, score, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![id, next.site_id, event.seq, rating.score(), now])?;
    }
    cached.conversation = next.clone();
    Ok(Ok(Applied { event, conversation: next, previous_agent, duplicate: false }))
}

/// The parts of a `Change::Message`.
struct NewMessage<'a> {
    author: &'a Author,
    client_id: &'a str,
    body: &'a str,
    attachments: &'a [super::attachments::AttachmentRef],
    integration: Option<&'a str>,
}

/// The hot path: one insert (the conversation's `last_seq` is its newest
/// event's, migration 0008), and the conversation cloned once, for the
/// caller. The window is searched first, so a retry into a conversation
/// closed since still gets its original back (as on PostgreSQL).
fn append_message(
    conn: &Connection,
    cached: &mut Cached,
    sites: &mut SiteHooks,
    limits: Limits,
    key: u32,
    message: NewMessage<'_>,
    now: i64,
) -> rusqlite::Result<Result<Applied>> {
    let NewMessage { author, client_id, body, attachments, integration } = message;
    let conv = &cached.conversation;
    if let Some(event) = remembered_message(conn, cached, key, author, client_id, now - limits.remember_for_ms)? {
        return Ok(Ok(Applied { event, conversation: conv.clone(), previous_agent: None, duplicate: true }));
    }
    if let Err(refused) = rules::check_message(conv) {
        return Ok(Err(refused));
    }
    if let Err(refused) = super::attachments::bind_sqlite(conn, &conv.id, attachments)? {
        return Ok(Err(refused));
    }
    let event = StoredEvent {
        conversation_id: conv.id.clone(),
        seq: conv.last_seq + 1,
        id: new_id(),
        kind: "message".into(),
        author: author.clone(),
        client_id: Some(client_id.to_owned()),
        body: Some(body.to_owned()),
        data: super::attachments::message_data(attachments, integration),
        created_at: now,
    };
    insert_event(conn, &event, &mut cached.has_facts)?;
    cached.conversation.last_seq = event.seq;
    super::webhooks::sqlite_queue_event_hooks(conn, sites, &cached.conversation, &event)?;
    cached.recent.remember(key, event.seq, limits.window);
    Ok(Ok(Applied { event, conversation: cached.conversation.clone(), previous_agent: None, duplicate: false }))
}

/// The message this one repeats, if its key is in the conversation's window
/// and it was stored after `since` (ms): each seq with the key is read by
/// the `(conversation_id, seq)` index, as a hash seen before may be another
/// key's (a collision).
fn remembered_message(
    conn: &Connection,
    cached: &Cached,
    key: u32,
    author: &Author,
    client_id: &str,
    since: i64,
) -> rusqlite::Result<Option<StoredEvent>> {
    for seq in cached.recent.seqs_of(key) {
        let stored = conn
            .prepare_cached("SELECT * FROM events WHERE conversation_id = ?1 AND seq = ?2")?
            .query_row(params![cached.conversation.id, seq], event_row)
            .optional()?;
        if let Some(event) = stored
            && event.author == *author
            && event.client_id.as_deref() == Some(client_id)
        {
            return Ok((event.created_at > since).then_some(event));
        }
    }
    Ok(None)
}

/// Take the facts for reports of chat ?1 from its events.
pub(super) const TAKE_FACTS: &str = "UPDATE conversations \
    SET (first_visitor_at, first_assigned_at, first_agent_at, messages) = ( \
        SELECT min(CASE WHEN kind = 'message' AND author_kind = 'visitor' THEN created_at END), \
               min(CASE WHEN kind = 'assigned' THEN created_at END), \
               min(CASE WHEN kind = 'message' AND author_kind = 'agent' THEN created_at END), \
               count(CASE WHEN kind = 'message' THEN 1 END) \
        FROM events WHERE conversation_id = ?1) \
    WHERE id = ?1";

/// Store `event`, and keep its chat's facts for reports
/// (`sqlite/0035_report_facts.sql`): taken when the chat closes, then kept
/// exact by each later message or assignment. `has_facts` is whether the
/// chat has them (its row's `messages` is set), and is kept too. The
/// writer keeps them, not triggers on `events`: a trigger made every
/// insert keep a statement journal (`sqlite/0048_report_facts_by_the_writer.sql`).
pub(super) fn insert_event(conn: &Connection, event: &StoredEvent, has_facts: &mut bool) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        event.conversation_id,
        event.seq,
        event.id,
        event.kind,
        event.author.kind.as_str(),
        event.author.id,
        event.client_id,
        event.body,
        event.data.to_string(),
        event.created_at
    ])?;
    match event.kind.as_str() {
        "closed" => {
            conn.prepare_cached(TAKE_FACTS)?.execute([&event.conversation_id])?;
            *has_facts = true;
        }
        "message" | "assigned" if *has_facts => {
            let (message, assigned) = (event.kind == "message", event.kind == "assigned");
            let (visitor, agent) = (event.author.kind == AuthorKind::Visitor, event.author.kind == AuthorKind::Agent);
            conn.prepare_cached(
                "UPDATE conversations SET messages = messages + ?2, \
                 first_visitor_at = CASE WHEN ?3 THEN min(coalesce(first_visitor_at, ?6), ?6) ELSE first_visitor_at END, \
                 first_assigned_at = CASE WHEN ?4 THEN min(coalesce(first_assigned_at, ?6), ?6) ELSE first_assigned_at END, \
                 first_agent_at = CASE WHEN ?5 THEN min(coalesce(first_agent_at, ?6), ?6) ELSE first_agent_at END \
                 WHERE id = ?1 AND messages IS NOT NULL",
            )?
            .execute(params![
                event.conversation_id,
                i64::from(message),
                message && visitor,
                assigned,
                message && agent,
                event.created_at
            ])?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's own migrations, in order (`sqlite::MIGRATOR`).
    fn migrations() -> impl Iterator<Item = &'static str> {
        migrations_where(|_| true)
    }

    fn migrations_where(version: impl Fn(i64) -> bool) -> impl Iterator<Item = &'static str> {
        super::super::sqlite::MIGRATOR.iter().filter(move |m| version(m.version)).map(|m| m.sql.as_str())
    }

    /// A database with one active conversation, `c1` (foreign keys off: the
    /// site, visitor and group it names do not exist).
    fn database() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for sql in migrations() {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        conn.execute(
            "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at) \
             VALUES ('c1', 's', 'v', 'g', 'active', 0)",
            [],
        )
        .unwrap();
        conn
    }

    #[test]
    fn only_a_busy_writer_waits_and_only_for_a_small_batch() {
        let mut linger = Linger::default();
        // A writer that waited for its work never delays a batch.
        assert!(!linger.found(false).waits(1));
        // Work found waiting, but not yet BUSY_AFTER batches in a row.
        for _ in 1..BUSY_AFTER {
            assert!(!linger.found(true).waits(1));
        }
        assert!(linger.found(true).waits(1));
        assert!(linger.found(true).waits(LINGER_BELOW - 1));
        assert!(!linger.found(true).waits(LINGER_BELOW), "a full enough batch commits at once");
        // One batch that had to wait for its first job ends the streak.
        assert!(!linger.found(false).waits(1));
        assert!(!linger.found(true).waits(1));
    }

    #[test]
    fn moving_events_into_arrival_order_keeps_every_event_and_each_seq_unique() {
        let conn = Connection::open_in_memory().unwrap();
        for sql in migrations_where(|v| v < 9) {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        for c in ["c1", "c2"] {
            conn.execute(
                "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at) \
                 VALUES (?1, 's', 'v', 'g', 'active', 0)",
                [c],
            )
            .unwrap();
        }
        // Two conversations' messages interleaved in time, as a relay writes them.
        for (at, (c, seq)) in [("c1", 1), ("c2", 1), ("c1", 2), ("c2", 2), ("c2", 3)].into_iter().enumerate() {
            conn.execute(
                "INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, created_at) \
                 VALUES (?1, ?2, ?3, 'message', 'visitor', 'v', ?3, 'hi', ?4)",
                params![c, seq, format!("{c}-{seq}"), at as i64],
            )
            .unwrap();
        }
        let events = |conn: &Connection| -> Vec<(String, i64, String)> {
            let mut st =
                conn.prepare("SELECT conversation_id, seq, id FROM events ORDER BY conversation_id, seq").unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(|r| r.unwrap()).collect()
        };
        let stored = events(&conn);
        for sql in migrations_where(|v| v == 9) {
            conn.execute_batch(sql).unwrap();
        }
        assert_eq!(events(&conn), stored, "every event moved, unchanged");
        let seq = |c: &str| -> i64 {
            conn.query_row("SELECT last_seq FROM conversations_with_seq WHERE id = ?1", [c], |r| r.get(0)).unwrap()
        };
        assert_eq!((seq("c1"), seq("c2")), (2, 3));
        let arrival: Vec<String> = conn
            .prepare("SELECT id FROM events ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(arrival, ["c1-1", "c2-1", "c1-2", "c2-2", "c2-3"]);
        let again = conn.execute(
            "INSERT INTO events (conversation_id, seq, id, kind, author_kind, created_at) \
             VALUES ('c2', 3, 'x', 'message', 'agent', 9)",
            [],
        );
        assert!(again.is_err(), "a second event with the same (conversation, seq) is refused");
    }

    /// A database file with every migration before `version`, and two
    /// connections to it: one to run the migration, and one opened before.
    fn migrated_before(version: i64) -> (tempfile::TempDir, Connection, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let conn = Connection::open(&path).unwrap();
        for sql in migrations_where(|v| v < version) {
            conn.execute_batch(sql).unwrap();
        }
        let other = Connection::open(&path).unwrap();
        (dir, conn, other)
    }

    /// Migration 0047: the checks every message and chat meets in the
    /// writer build no b-tree per row, allow exactly what they allowed,
    /// and a connection opened before the migration reads them again.
    #[test]
    fn the_checks_on_the_chat_path_are_comparisons_with_the_same_rules() {
        let (_dir, conn, other) = migrated_before(47);
        let insert_conversation = "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at) \
             VALUES (?1, 's', 'v', 'g', ?2, 0)";
        let insert_event = "INSERT INTO events (conversation_id, seq, id, kind, author_kind, created_at) \
             VALUES ('c', ?1, ?1, 'message', ?2, 0)";
        let builds_a_b_tree = |c: &Connection, sql: &str| -> bool {
            let mut explain = c.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let unbound =
                rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Null, explain.parameter_count()));
            let opcodes: Vec<String> = explain.query_map(unbound, |r| r.get(1)).unwrap().map(|r| r.unwrap()).collect();
            opcodes.iter().any(|op| op == "OpenEphemeral")
        };
        assert!(builds_a_b_tree(&other, insert_event), "before 0047 the IN list builds one");
        for sql in migrations_where(|v| v == 47) {
            conn.execute_batch(sql).unwrap();
        }
        for (c, name) in [(&conn, "the migrating connection"), (&other, "a connection opened before")] {
            c.execute_batch("PRAGMA foreign_keys = OFF; DELETE FROM events; DELETE FROM conversations;").unwrap();
            for status in ["queued", "active", "closed", "offline"] {
                c.execute(insert_conversation, [status, status]).unwrap();
            }
            let refused = c.execute(insert_conversation, ["x", "Active"]).unwrap_err();
            assert!(refused.to_string().contains("CHECK constraint failed"), "{name}: {refused}");
            for (seq, author) in [(1, "visitor"), (2, "agent"), (3, "system")] {
                c.execute(insert_event, params![seq, author]).unwrap();
            }
            let refused = c.execute(insert_event, params![4, "robot"]).unwrap_err();
            assert!(refused.to_string().contains("CHECK constraint failed"), "{name}: {refused}");
            assert!(!builds_a_b_tree(c, insert_event), "{name}: an event's check builds no b-tree");
            assert!(!builds_a_b_tree(c, insert_conversation), "{name}: a chat's check builds no b-tree");
        }
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }

    /// Migration 0049: with foreign keys on, as the writer runs, an event's
    /// insert no longer looks its conversation up, for the migrating
    /// connection and one opened before; every other rule of the table
    /// stands, and so do the foreign keys of the other tables.
    #[test]
    fn an_event_no_longer_looks_its_conversation_up() {
        let (_dir, conn, other) = migrated_before(49);
        let insert_event = "INSERT INTO events (conversation_id, seq, id, kind, author_kind, created_at) \
             VALUES (?1, ?2, ?2, 'message', 'visitor', 0)";
        let checks_a_key = |c: &Connection| -> bool {
            c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
            let mut explain = c.prepare(&format!("EXPLAIN {insert_event}")).unwrap();
            // A key not found halts the insert with SQLITE_CONSTRAINT_FOREIGNKEY.
            let halts: Vec<(String, i32)> = explain
                .query_map(params![None::<String>, 0], |r| Ok((r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            halts.iter().any(|(op, code)| op == "Halt" && *code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
        };
        assert!(checks_a_key(&other), "before 0049 the insert checks its conversation");
        for sql in migrations_where(|v| v == 49) {
            conn.execute_batch(sql).unwrap();
        }
        for (c, name) in [(&conn, "the migrating connection"), (&other, "a connection opened before")] {
            let keys: i64 =
                c.query_row("SELECT count(*) FROM pragma_foreign_key_list('events')", [], |r| r.get(0)).unwrap();
            assert_eq!(keys, 0, "{name}");
            let kept: i64 = c
                .query_row(
                    "SELECT count(*) FROM pragma_foreign_key_list('ratings') WHERE \"table\" = 'conversations'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(kept, 1, "{name}: the other tables keep theirs");
            // Foreign keys on, as the writer runs: chat `c` does not exist.
            c.execute_batch("PRAGMA foreign_keys = ON; DELETE FROM events").unwrap();
            c.execute(insert_event, params!["c", 1]).unwrap();
            let refused = c.execute(insert_event, params!["c", 1]).unwrap_err();
            assert!(refused.to_string().contains("UNIQUE constraint failed"), "{name}: {refused}");
            let refused = c.execute(insert_event, params![None::<String>, 2]).unwrap_err();
            assert!(refused.to_string().contains("NOT NULL constraint failed"), "{name}: {refused}");
            // After a statement has run, so that the schema was read again.
            assert!(!checks_a_key(c), "{name}: an event's insert checks no key");
        }
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        let keys: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(keys, 0, "the other tables' keys still hold");
    }

    /// A chat's facts for reports as its row has them: first visitor
    /// message, first assignment, first agent message, messages (`None`
    /// while it has none).
    type Facts = Option<(Option<i64>, Option<i64>, Option<i64>, i64)>;

    fn facts(conn: &Connection, id: &str) -> Facts {
        conn.query_row(
            "SELECT first_visitor_at, first_assigned_at, first_agent_at, messages FROM conversations WHERE id = ?1",
            [id],
            |r| Ok(r.get::<_, Option<i64>>(3)?.map(|m| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap(), m))),
        )
        .unwrap()
    }

    /// Facts for reports, kept by the writer (migration 0048): none while
    /// a chat is open, taken at its close, moved on by a later message or
    /// assignment, and known to a writer that meets the chat cold.
    #[test]
    fn a_chats_report_facts_are_taken_at_its_close_and_kept_after() {
        let conn = database();
        let mut cache = Cache::new();
        let (visitor, agent) = (Author::visitor("v"), Author::agent("a"));
        send_to(&conn, &mut cache, "c1", &visitor, "m1", 10);
        send_to(&conn, &mut cache, "c1", &visitor, "m2", 20);
        send_to(&conn, &mut cache, "c1", &agent, "m3", 30);
        assert_eq!(facts(&conn, "c1"), None, "an open chat has none: its messages write no row");

        let close = PendingChange {
            conversation_id: "c1".into(),
            guard: None,
            change: Change::Close { by: agent.clone() },
            reply: oneshot::channel().0,
        };
        apply_one(&conn, &mut cache, &mut SiteHooks::default(), &close, 40).unwrap().unwrap();
        assert_eq!(facts(&conn, "c1"), Some((Some(10), None, Some(30), 3)), "taken from its events at the close");

        // A writer meeting the chat cold knows it has facts, and keeps them.
        let mut cold = Cache::new();
        let cached = cold.load(&conn, "c1").unwrap().unwrap();
        assert!(cached.has_facts);
        let event = |seq: i64, kind: &str, author: &Author, at: i64| StoredEvent {
            conversation_id: "c1".into(),
            seq,
            id: format!("e{seq}"),
            kind: kind.into(),
            author: author.clone(),
            client_id: Some(format!("k{seq}")),
            body: (kind == "message").then(|| "hi".into()),
            data: serde_json::json!({}),
            created_at: at,
        };
        insert_event(&conn, &event(5, "assigned", &Author::system(), 50), &mut cached.has_facts).unwrap();
        assert_eq!(facts(&conn, "c1"), Some((Some(10), Some(50), Some(30), 3)), "the first assignment");
        insert_event(&conn, &event(6, "message", &agent, 25), &mut cached.has_facts).unwrap();
        assert_eq!(facts(&conn, "c1"), Some((Some(10), Some(50), Some(25), 4)), "an earlier agent message");
        insert_event(&conn, &event(7, "note", &agent, 60), &mut cached.has_facts).unwrap();
        assert_eq!(facts(&conn, "c1"), Some((Some(10), Some(50), Some(25), 4)), "a note is no message");

        // And a chat without facts gets none from a message.
        add_conversation(&conn, "c2");
        let mut has_facts = cold.load(&conn, "c2").unwrap().unwrap().has_facts;
        assert!(!has_facts);
        let mut message = event(1, "message", &visitor, 70);
        message.conversation_id = "c2".into();
        insert_event(&conn, &message, &mut has_facts).unwrap();
        assert_eq!(facts(&conn, "c2"), None);
    }

    /// Another active conversation, `id`.
    fn add_conversation(conn: &Connection, id: &str) {
        conn.execute(
            "INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at) \
             VALUES (?1, 's', 'v', 'g', 'active', 0)",
            [id],
        )
        .unwrap();
    }

    /// A message of `author` with `client_id` into `conv`, applied at `now`.
    fn send_to(
        conn: &Connection,
        cache: &mut Cache,
        conv: &str,
        author: &Author,
        client_id: &str,
        now: i64,
    ) -> Applied {
        let mut sites = SiteHooks::default();
        apply_one(conn, cache, &mut sites, &pending_message(conv, author, client_id, "hi"), now).unwrap().unwrap()
    }

    /// A message of `author` with `client_id` and `body` into `conv`, waiting.
    fn pending_message(conv: &str, author: &Author, client_id: &str, body: &str) -> PendingChange {
        let change = Change::Message {
            author: author.clone(),
            client_id: client_id.into(),
            body: body.into(),
            attachments: Vec::new(),
            integration: None,
        };
        PendingChange { conversation_id: conv.into(), guard: None, change, reply: oneshot::channel().0 }
    }

    fn send(conn: &Connection, cache: &mut Cache, author: &Author, client_id: &str) -> Applied {
        send_to(conn, cache, "c1", author, client_id, 1)
    }

    /// A cache that remembers `window` messages per conversation for `for_ms`.
    fn remembering(window: usize, for_ms: i64) -> Cache {
        Cache::with_limits(Limits { window, remember_for_ms: for_ms, ..Limits::default() })
    }

    fn window_seqs(cache: &Cache, conv: &str) -> Vec<i64> {
        cache.conversations[conv].recent.seqs.iter().copied().collect()
    }

    #[test]
    fn a_message_whose_key_collides_is_stored_and_a_retry_is_not() {
        let conn = database();
        let mut cache = Cache::new();
        let visitor = Author::visitor("v");
        let other = send(&conn, &mut cache, &visitor, "other");
        // Another message with the same hash, as far as the cache can tell.
        let key = cache.key(&visitor, "new");
        cache.load(&conn, "c1").unwrap().unwrap().recent.remember(key, other.event.seq, 1000);
        let first = send(&conn, &mut cache, &visitor, "new");
        assert!(!first.duplicate, "the table has no such message: it is new");
        assert_eq!(first.event.seq, 2);
        let again = send(&conn, &mut cache, &visitor, "new");
        assert!(again.duplicate);
        assert_eq!((again.event.seq, again.event.id), (2, first.event.id.clone()));
        // The same client id from the other side is another message.
        let agent = send(&conn, &mut cache, &Author::agent("a"), "new");
        assert_eq!((agent.duplicate, agent.event.seq), (false, 3));
    }

    #[test]
    fn a_window_finds_each_key_it_holds_across_its_rings_wrap_and_no_other() {
        let mut window = Window::default();
        for seq in 1..=100 {
            window.remember(seq as u32 * 7, seq, 37);
        }
        assert_eq!(window.len(), 37);
        for seq in 1..=100 {
            let held = seq > 63;
            assert_eq!(window.holds(seq as u32 * 7), held, "seq {seq}");
            assert_eq!(window.seqs_of(seq as u32 * 7).collect::<Vec<_>>(), if held { vec![seq] } else { vec![] });
        }
        window.remember(98 * 7, 101, 37);
        assert_eq!(window.seqs_of(98 * 7).collect::<Vec<_>>(), [101, 98], "newest first");
    }

    #[test]
    fn a_client_id_is_remembered_for_the_conversations_last_messages_of_anyone() {
        let conn = database();
        let mut cache = remembering(3, REMEMBERED_FOR_MS);
        let (visitor, agent) = (Author::visitor("v"), Author::agent("a"));
        for m in ["m1", "m2", "m3", "m4"] {
            send(&conn, &mut cache, &visitor, m);
        }
        let retry = send(&conn, &mut cache, &visitor, "m2");
        assert_eq!((retry.duplicate, retry.event.seq), (true, 2), "m2 is among the last three");
        let late = send(&conn, &mut cache, &visitor, "m1");
        assert_eq!((late.duplicate, late.event.seq), (false, 5), "m1 left the window: a new message");
        // The other side's messages move the window too.
        send(&conn, &mut cache, &agent, "a1");
        let late = send(&conn, &mut cache, &visitor, "m3");
        assert_eq!((late.duplicate, late.event.seq), (false, 7));
        assert_eq!(window_seqs(&cache, "c1"), [5, 6, 7]);
        assert_eq!(cache.keys, 3, "a full window holds as many keys as it is long");
        let again = send(&conn, &mut cache, &visitor, "m1");
        assert_eq!((again.duplicate, again.event.seq), (true, 5), "the newest m1 is the one remembered");
    }

    #[test]
    fn a_client_id_is_forgotten_once_its_message_is_older_than_the_window() {
        let conn = database();
        let mut cache = remembering(1000, 60_000);
        let visitor = Author::visitor("v");
        let first = send_to(&conn, &mut cache, "c1", &visitor, "m1", 1_000);
        let retry = send_to(&conn, &mut cache, "c1", &visitor, "m1", 60_999);
        assert_eq!((retry.duplicate, retry.event.id), (true, first.event.id), "59.999 s later: remembered");
        let late = send_to(&conn, &mut cache, "c1", &visitor, "m1", 61_000);
        assert_eq!((late.duplicate, late.event.seq), (false, 2), "60 s later: a new message");
        let again = send_to(&conn, &mut cache, "c1", &visitor, "m1", 61_001);
        assert_eq!((again.duplicate, again.event.seq), (true, 2));
    }

    #[test]
    fn a_cold_conversation_reads_back_its_window_and_nothing_older() {
        let conn = database();
        let mut warm = remembering(10, REMEMBERED_FOR_MS);
        let visitor = Author::visitor("v");
        for i in 1..=50 {
            send(&conn, &mut warm, &visitor, &format!("m{i}"));
        }
        // A receipt between messages is not one of them.
        conn.execute(
            "INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, data, created_at) \
             VALUES ('c1', 51, 'r', 'read', 'agent', 'a', '{\"up_to\":50}', 1)",
            [],
        )
        .unwrap();
        warm.conversations.get_mut("c1").unwrap().conversation.last_seq = 51;
        let mut cold = remembering(10, REMEMBERED_FOR_MS);
        cold.load(&conn, "c1").unwrap().unwrap();
        assert_eq!(window_seqs(&cold, "c1"), window_seqs(&warm, "c1"), "the same window, cached or read back");
        assert_eq!(window_seqs(&cold, "c1"), (41..=50).collect::<Vec<_>>());
        assert_eq!(cold.keys, 10);
        assert_eq!(cold.conversations["c1"].conversation.last_seq, 51);
        let retry = send(&conn, &mut cold, &visitor, "m45");
        assert_eq!((retry.duplicate, retry.event.seq), (true, 45));
        let late = send(&conn, &mut cold, &visitor, "m5");
        assert_eq!((late.duplicate, late.event.seq), (false, 52));
    }

    #[test]
    fn over_the_key_budget_the_least_recently_used_conversations_are_evicted_whole() {
        let conn = database();
        add_conversation(&conn, "c2");
        add_conversation(&conn, "c3");
        let mut cache = Cache::with_limits(Limits { window: 5, max_keys: 8, ..Limits::default() });
        let visitor = Author::visitor("v");
        for conv in ["c1", "c2", "c3"] {
            cache.start_batch();
            for m in ["m1", "m2", "m3"] {
                send_to(&conn, &mut cache, conv, &visitor, m, 1);
            }
        }
        assert_eq!(cache.keys, 9);
        cache.start_batch();
        assert!(!cache.conversations.contains_key("c1"), "c1 was used longest ago");
        assert!(cache.conversations.contains_key("c2") && cache.conversations.contains_key("c3"));
        assert_eq!(cache.keys, 6, "down to three quarters of the budget");
        let retry = send_to(&conn, &mut cache, "c1", &visitor, "m1", 1);
        assert_eq!((retry.duplicate, retry.event.seq), (true, 1), "read back, still remembered");
        assert_eq!(cache.keys, 9);
    }

    #[test]
    fn the_window_is_read_from_the_end_of_the_conversations_index_range() {
        let conn = database();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {READ_WINDOW}"))
            .unwrap()
            .query_map(params!["c1", 1000], |r| r.get(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let plan = plan.join("; ");
        assert!(plan.contains("USING INDEX events_conversation_seq (conversation_id=?)"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort of the conversation's events: {plan}");
    }

    /// A writer thread on a migrated file in `dir`.
    fn writer(dir: &tempfile::TempDir) -> mpsc::Sender<Job> {
        let path = dir.path().join("holdfast.db");
        let conn = Connection::open(&path).unwrap();
        for sql in migrations() {
            conn.execute_batch(sql).unwrap();
        }
        drop(conn);
        spawn(&path).unwrap()
    }

    /// A write that reports, as it runs, its name and the `synchronous`
    /// its commit will use (2 = FULL, 1 = NORMAL).
    fn noting(name: &'static str, ran: &std::sync::mpsc::Sender<(&'static str, i64, Instant)>) -> Exec {
        let ran = ran.clone();
        Box::new(move |conn| {
            let synchronous = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
            ran.send((name, synchronous, Instant::now())).unwrap();
            (true, Box::new(|_| {}))
        })
    }

    /// A write that says it started, then holds the writer for `hold`.
    fn holding(hold: Duration, started: &std::sync::mpsc::Sender<()>) -> Exec {
        let started = started.clone();
        Box::new(move |_| {
            let _ = started.send(());
            std::thread::sleep(hold);
            (true, Box::new(|_| {}))
        })
    }

    #[test]
    fn chat_writes_go_before_background_work_which_commits_without_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let tx = writer(&dir);
        let (ran, runs) = std::sync::mpsc::channel();
        let (started, start) = std::sync::mpsc::channel();
        tx.blocking_send(Job::Exec(holding(Duration::from_millis(200), &started))).unwrap();
        start.recv().unwrap();
        // Both wait behind the first: the background job was sent first.
        tx.blocking_send(Job::Background(noting("background", &ran))).unwrap();
        tx.blocking_send(Job::Exec(noting("chat", &ran))).unwrap();
        let first = runs.recv_timeout(Duration::from_secs(10)).unwrap();
        let second = runs.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((first.0, first.1), ("chat", 2), "chat first, committed with FULL");
        assert_eq!((second.0, second.1), ("background", 1), "then the background job, with NORMAL");
        tx.blocking_send(Job::Exec(noting("after", &ran))).unwrap();
        let after = runs.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((after.0, after.1), ("after", 2), "FULL again for the next chat write");
    }

    #[test]
    fn background_work_runs_within_its_bound_when_chat_never_pauses() {
        let dir = tempfile::tempdir().unwrap();
        let tx = writer(&dir);
        let (ran, runs) = std::sync::mpsc::channel();
        let (started, start) = std::sync::mpsc::channel();
        // Two chat writes of 20 ms each always wait: each one that starts
        // sends another, so the writer never finds its queue empty.
        let hold = Duration::from_millis(20);
        tx.blocking_send(Job::Exec(holding(hold, &started))).unwrap();
        tx.blocking_send(Job::Exec(holding(hold, &started))).unwrap();
        start.recv().unwrap();
        let queued = Instant::now();
        tx.blocking_send(Job::Background(noting("background", &ran))).unwrap();
        let mut chat_writes = 0;
        let ran_at = loop {
            if let Ok((_, synchronous, at)) = runs.try_recv() {
                assert_eq!(synchronous, 1);
                break at;
            }
            start.recv_timeout(Duration::from_secs(10)).unwrap();
            chat_writes += 1;
            tx.blocking_send(Job::Exec(holding(hold, &started))).unwrap();
            assert!(queued.elapsed() < Duration::from_secs(10), "the background job never ran");
        };
        let waited = ran_at - queued;
        assert!(waited >= BACKGROUND_WAITS_AT_MOST - hold, "it waited for chat: {waited:?}, {chat_writes} chat writes");
        assert!(waited < BACKGROUND_WAITS_AT_MOST + Duration::from_secs(2), "and not for ever: {waited:?}");
        assert!(chat_writes >= 10, "chat went on meanwhile: {chat_writes}");
    }

    /// A message of the visitor with `body` into `c1`, as a job of a batch.
    fn message_job(client_id: &str, body: &str) -> Job {
        Job::Change(pending_message("c1", &Author::visitor("v"), client_id, body))
    }

    /// The seqs in `c1` of the messages the search index finds for `words`.
    fn found(conn: &Connection, words: &str) -> Vec<i64> {
        conn.prepare(
            "SELECT e.seq FROM events e WHERE e.rowid IN \
             (SELECT rowid FROM message_search WHERE message_search MATCH ?1) ORDER BY e.seq",
        )
        .unwrap()
        .query_map([words], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
    }

    /// A database with chat `c1` (`database`), and a writer's cache and
    /// search index as at its start.
    fn fresh_writer() -> (Connection, Cache, SearchIndex) {
        (database(), Cache::new(), SearchIndex::default())
    }

    /// Erase `c1`'s message `seq`, as a write of a batch.
    fn erasing(seq: i64) -> Job {
        Job::Exec(Box::new(move |conn| {
            let erased = conn.execute(
                "UPDATE events SET body = NULL, data = '{\"erased\":true}' WHERE conversation_id = 'c1' AND seq = ?1",
                [seq],
            );
            (erased == Ok(1), Box::new(|_| {}))
        }))
    }

    fn commit(conn: &Connection, cache: &mut Cache, index: &mut SearchIndex, mut batch: Vec<Job>) {
        apply_batch(conn, cache, index, &mut batch, Vec::new()).map_err(|(e, _)| e).unwrap();
    }

    /// A write unrelated to messages, as a search asks for.
    fn a_write() -> Job {
        writing("UPDATE conversations SET group_id = 'g' WHERE id = 'c1'")
    }

    fn index_is_sound(conn: &Connection) {
        conn.execute("INSERT INTO message_search (message_search) VALUES ('integrity-check')", []).unwrap();
    }

    #[test]
    fn messages_wait_for_the_index_until_a_write_and_an_erasure_after_them_forgets_them() {
        let (conn, mut cache, mut index) = fresh_writer();
        commit(
            &conn,
            &mut cache,
            &mut index,
            vec![
                message_job("m1", "apple harbour"),
                message_job("m2", "banana harbour"),
                erasing(2),
                message_job("m3", "cherry harbour"),
            ],
        );
        // The write made a pass first, so the erasure took the words out.
        assert_eq!(found(&conn, "harbour"), [1], "the erased message is not found, the one after waits");
        assert_eq!(found(&conn, "banana"), Vec::<i64>::new());
        commit(&conn, &mut cache, &mut index, vec![message_job("m4", "harbour again")]);
        assert_eq!(found(&conn, "harbour"), [1], "chat changes alone make no pass");
        // Any write makes one.
        commit(&conn, &mut cache, &mut index, vec![a_write()]);
        assert_eq!(found(&conn, "harbour"), [1, 3, 4], "each message once");
        assert_eq!((found(&conn, "apple"), found(&conn, "cherry")), (vec![1], vec![3]));
        index_is_sound(&conn);
    }

    #[test]
    fn the_commit_that_finds_enough_writes_waiting_makes_a_pass() {
        let (conn, mut cache, mut index) = fresh_writer();
        commit(&conn, &mut cache, &mut index, vec![message_job("m1", "first harbour")]);
        index.waiting = INDEX_EVERY - 2;
        commit(&conn, &mut cache, &mut index, vec![message_job("m2", "second harbour")]);
        assert_eq!(found(&conn, "harbour"), Vec::<i64>::new(), "one short");
        commit(&conn, &mut cache, &mut index, vec![message_job("m3", "third harbour")]);
        assert_eq!(found(&conn, "harbour"), [1, 2, 3]);
        assert_eq!(index.waiting, 0);
        index_is_sound(&conn);
    }

    #[test]
    fn a_batch_rolled_back_leaves_the_index_where_it_stood() {
        let (conn, mut cache, mut index) = fresh_writer();
        commit(&conn, &mut cache, &mut index, vec![message_job("m1", "kept harbour")]);
        let before = (index.indexed, index.waiting);
        // A write that makes a pass, then fails the whole batch (its
        // transaction gone, its savepoint cannot be released).
        let mut failing = vec![
            message_job("m2", "lost harbour"),
            Job::Exec(Box::new(|conn| {
                conn.execute_batch("ROLLBACK").unwrap();
                (true, Box::new(|_| {}))
            })),
        ];
        assert!(apply_batch(&conn, &mut cache, &mut index, &mut failing, Vec::new()).is_err());
        assert_eq!((index.indexed, index.waiting), before, "the pass it made was rolled back with it");
        commit(&conn, &mut cache, &mut index, vec![a_write()]);
        assert_eq!(found(&conn, "harbour"), [1]);
        index_is_sound(&conn);
    }

    #[test]
    fn a_writer_started_after_a_crash_indexes_what_the_last_pass_left_once() {
        let (conn, mut cache, mut index) = fresh_writer();
        commit(&conn, &mut cache, &mut index, vec![message_job("m1", "one harbour"), message_job("m2", "two harbour")]);
        commit(&conn, &mut cache, &mut index, vec![message_job("m3", "three harbour"), erasing(3)]);
        // Messages 1 and 2 in the index, 3 erased in it (the newest it
        // held), then more messages, and a crash before the next pass.
        commit(&conn, &mut cache, &mut index, vec![message_job("m4", "four harbour"), message_job("m5", "five")]);
        assert_eq!(found(&conn, "harbour"), [1, 2]);
        let started = SearchIndex::open(&conn).unwrap();
        assert_eq!(found(&conn, "harbour"), [1, 2, 4], "what waited is found, once, and the erased is not");
        assert_eq!(found(&conn, "five"), [5]);
        assert_eq!(started.indexed, newest_event(&conn).unwrap());
        // Started again with nothing waiting, it adds nothing.
        SearchIndex::open(&conn).unwrap();
        assert_eq!(found(&conn, "harbour"), [1, 2, 4]);
        index_is_sound(&conn);
    }

    /// A write in the batch that runs `sql` and must change one row.
    fn writing(sql: &'static str) -> Job {
        Job::Exec(Box::new(move |conn| (conn.execute(sql, []) == Ok(1), Box::new(|_| {}))))
    }

    #[test]
    fn a_site_s_webhooks_are_read_once_per_commit_and_again_after_a_write_in_it() {
        let conn = database();
        let mut cache = Cache::new();
        let mut batch = vec![
            message_job("m1", "before the endpoint"),
            writing(
                "INSERT INTO webhook_endpoints (id, site_id, name, url, secret, events, created_by, created_at) \
                 VALUES ('e1', 's', 'crm', 'https://crm.example.com/hook', 'k', 'message.created', 'a', 0)",
            ),
            message_job("m2", "while it is on"),
            message_job("m3", "while it is on"),
            writing("UPDATE webhook_endpoints SET enabled = 0 WHERE id = 'e1'"),
            message_job("m4", "after it is off"),
        ];
        let outcomes = apply_batch(&conn, &mut cache, &mut SearchIndex::default(), &mut batch, Vec::new())
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(outcomes.len(), 6);
        let seqs: Vec<i64> = conn
            .prepare(
                "SELECT e.seq FROM deliveries d JOIN events e ON d.dedupe_key = 'hook:e1:' || e.id || ':message.created' \
                 WHERE d.kind = 'webhook' ORDER BY e.seq",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(seqs, [2, 3], "only the messages written while the endpoint was on");
    }
}
