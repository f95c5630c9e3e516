//! PostgreSQL's group commit: the messages of many conversations in one
//! transaction, so a node pays one commit (and one WAL flush) and a handful
//! of statements per batch instead of seven round trips per message.
//!
//! Messages are the hot path; every other change (assignments, closes,
//! messages with files) keeps its own transaction (`postgres::apply_alone`).
//! A node runs [`SHARDS`] batchers; a conversation always goes to the same
//! one, so its messages are stored in the order they were handed over.
//! Each batcher takes what waits (up to [`MAX_BATCH`]) and, in one
//! transaction:
//!
//! 1. locks the batch's conversations in id order (`FOR UPDATE`), so two
//!    nodes' batches take turns per conversation and never deadlock, and
//!    `seq` stays gap-free and unique across nodes;
//! 2. finds the retries among them with one index lookup for all;
//! 3. checks each message against its conversation as it stands after the
//!    batch's earlier messages (authority, open or closed), in memory;
//! 4. writes the new `last_seq`s, the events and their webhooks in three
//!    statements and commits; only then is each message acknowledged.
//!
//! A refusal is that message's answer and writes nothing. If the
//! transaction itself fails on something one message alone may cause (a
//! deadlock, a serialization failure, another node storing the same
//! `client_id` at the same moment), the batch is applied again one message
//! per transaction, with the usual retries; any other failure (the
//! database is gone) is every message's answer.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::postgres::{apply_alone, conversation_from_row, event_from_row, is_retryable};
use super::rules;
use super::*;
use crate::error::{Error, Result};

/// Batchers per node: one batch can be committing while the next forms.
pub(super) const SHARDS: usize = 2;
/// The most messages in one transaction.
const MAX_BATCH: usize = 256;
/// Messages waiting per batcher before a sender waits too.
const QUEUE: usize = 4096;

/// A message without files, handed to a batcher.
struct Job {
    conversation_id: String,
    guard: Option<Guard>,
    author: Author,
    client_id: String,
    body: String,
    integration: Option<String>,
    answer: oneshot::Sender<Result<Applied>>,
}

/// The batchers of one node.
pub(super) struct Writer {
    shards: Vec<mpsc::Sender<Job>>,
    /// Dropped with the writer, which ends its [`merge_search_entries`].
    _merging: oneshot::Sender<()>,
}

impl Writer {
    pub(super) fn start(pool: PgPool) -> Writer {
        let shards = (0..SHARDS)
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(pool.clone(), rx));
                tx
            })
            .collect();
        let (merging, stop) = oneshot::channel();
        tokio::spawn(merge_search_entries(pool, stop));
        Writer { shards, _merging: merging }
    }

    /// Whether the batchers take `change`: a message whose author has an id
    /// (the retry lookup matches on it) and that carries no files (binding
    /// them may refuse after a write).
    pub(super) fn takes(change: &Change) -> bool {
        matches!(change, Change::Message { author, attachments, .. } if author.id.is_some() && attachments.is_empty())
    }

    /// Store a message that [`Writer::takes`]; answered after its commit.
    pub(super) async fn apply(&self, conversation_id: &str, guard: Option<Guard>, change: Change) -> Result<Applied> {
        let Change::Message { author, client_id, body, integration, .. } = change else {
            return Err(Error::internal(anyhow::anyhow!("the group commit stores messages only")));
        };
        let (answer, answered) = oneshot::channel();
        let job =
            Job { conversation_id: conversation_id.to_owned(), guard, author, client_id, body, integration, answer };
        let shard = &self.shards[shard_of(conversation_id)];
        shard.send(job).await.map_err(|_| Error::internal(anyhow::anyhow!("the group commit has stopped")))?;
        answered.await.map_err(|_| Error::internal(anyhow::anyhow!("the group commit dropped a message")))?
    }
}

fn shard_of(conversation_id: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    conversation_id.hash(&mut h);
    (h.finish() % SHARDS as u64) as usize
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("holdfast_store_batch_size").record(batch.len() as f64);
        let jobs = std::mem::take(&mut batch);
        match commit(&pool, &jobs).await {
            Ok(answers) => {
                for (job, answer) in jobs.into_iter().zip(answers) {
                    let _ = job.answer.send(answer);
                }
            }
            Err(e) if alone_may_pass(&e) => {
                metrics::counter!("holdfast_store_batches_split_total").increment(1);
                for job in jobs {
                    let change = Change::Message {
                        author: job.author,
                        client_id: job.client_id,
                        body: job.body,
                        attachments: Vec::new(),
                        integration: job.integration,
                    };
                    let answer = apply_alone(&pool, &job.conversation_id, job.guard.as_ref(), &change).await;
                    let _ = job.answer.send(answer);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, messages = jobs.len(), "a group commit failed");
                for job in jobs {
                    // As for a single transaction: if the commit's answer was
                    // what failed, the client's retry (same client id) finds it.
                    let _ = job.answer.send(Err(Error::Store(anyhow::anyhow!("the group commit failed: {e}"))));
                }
            }
        }
    }
}

/// How often a node merges the search index's pending entries.
const MERGE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Merge the pending list of the messages' search index (GIN, `0025`)
/// every [`MERGE_EVERY`], beside the batchers. GIN gathers new entries in
/// that list and merges them into the index inside whichever insert takes
/// it past `gin_pending_list_limit` (4 MB): one of our commits, with a
/// few hundred chats' messages waiting on a merge of seconds of chat
/// (p99 at half the cluster's peak rate 23-38 ms a window, 142-261 ms in
/// a window with a merge). Merged here, a quarter second at a time, the
/// list stays far below the limit and no commit waits on it. Turning the
/// list off instead (`fastupdate = off`) cost every message 1.5x the
/// database's CPU (docs/benchmarks.md, "The tail that came due").
///
/// Another node's merge at the same moment waits for this one and finds
/// nothing left. A role that does not own the index may not merge it:
/// said once, and the inserts merge as before.
async fn merge_search_entries(pool: PgPool, mut stop: oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(MERGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        if pool.is_closed() {
            return;
        }
        let merged = sqlx::query_scalar::<_, i64>("SELECT gin_clean_pending_list('events_search'::regclass)")
            .fetch_one(&pool)
            .await;
        match merged {
            Ok(pages) => {
                failing = false;
                metrics::counter!("holdfast_store_search_pages_merged_total").increment(pages.max(0) as u64);
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
                tracing::warn!(error = %e, "cannot merge the search index's pending entries; inserts will");
                return;
            }
            // Said once per outage, not four times a second.
            Err(e) if !std::mem::replace(&mut failing, true) => {
                tracing::warn!(error = %e, "cannot merge the search index's pending entries")
            }
            Err(_) => {}
        }
    }
}

/// A failure that one message of the batch may cause, so that applying
/// each alone gets the others stored: a deadlock, a serialization failure,
/// or a unique key taken by another node's commit.
fn alone_may_pass(err: &Error) -> bool {
    let Error::Store(e) = err else { return false };
    let code = e.downcast_ref::<sqlx::Error>().and_then(|e| e.as_database_error()).and_then(|d| d.code());
    is_retryable(err) || code.is_some_and(|c| c == "23505")
}

/// The key a retry is found by.
type RetryKey = (String, &'static str, String, String);

fn retry_key(conversation_id: &str, author_kind: AuthorKind, author_id: &str, client_id: &str) -> RetryKey {
    (conversation_id.to_owned(), author_kind.as_str(), author_id.to_owned(), client_id.to_owned())
}

/// One transaction for `jobs`. Outer `Result`: the transaction failed and
/// wrote nothing. Inner: each message's answer, in order.
async fn commit(pool: &PgPool, jobs: &[Job]) -> Result<Vec<Result<Applied>>> {
    let now = now_ms();
    crate::low_priority::chat_wrote(now);
    let mut tx = pool.begin().await?;
    let mut ids: Vec<&str> = jobs.iter().map(|j| j.conversation_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut conversations = HashMap::new();
    for row in sqlx::query("SELECT * FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
    {
        let conv = conversation_from_row(&row)?;
        conversations.insert(conv.id.clone(), conv);
    }
    let mut stored = earlier_messages(&mut tx, jobs).await?;

    let answers: Vec<Result<Applied>> =
        jobs.iter().map(|job| check_and_place(job, &mut conversations, &mut stored, now)).collect();
    // The new messages, each with its conversation as it stood after it
    // (what its webhooks show).
    let fresh: Vec<&Applied> = answers.iter().filter_map(|a| a.as_ref().ok()).filter(|a| !a.duplicate).collect();
    if fresh.is_empty() {
        tx.rollback().await?;
        return Ok(answers);
    }

    let moved: BTreeSet<&str> = fresh.iter().map(|a| a.event.conversation_id.as_str()).collect();
    sqlx::query(
        "UPDATE conversations c SET last_seq = u.last_seq \
         FROM unnest($1::text[], $2::bigint[]) AS u(id, last_seq) WHERE c.id = u.id",
    )
    .bind(moved.iter().copied().collect::<Vec<_>>())
    .bind(moved.iter().map(|id| conversations[*id].last_seq).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    let events: Vec<&StoredEvent> = fresh.iter().map(|a| &a.event).collect();
    insert_events(&mut tx, &events).await?;
    let hooked: Vec<(&Conversation, &StoredEvent)> = fresh.iter().map(|a| (&a.conversation, &a.event)).collect();
    super::webhooks::pg_queue_events_hooks(&mut tx, &hooked).await?;
    tx.commit().await?;
    Ok(answers)
}

/// One message's answer, against its conversation as the batch's earlier
/// messages left it; a new message moves its conversation's `last_seq`.
fn check_and_place(
    job: &Job,
    conversations: &mut HashMap<String, Conversation>,
    stored: &mut HashMap<RetryKey, StoredEvent>,
    now: i64,
) -> Result<Applied> {
    let Some(conv) = conversations.get_mut(&job.conversation_id) else {
        return Err(Error::NotFound("conversation"));
    };
    if let Some(guard) = &job.guard {
        guard.check(conv)?;
    }
    let author_id = job.author.id.as_deref().unwrap_or_default();
    let key = retry_key(&conv.id, job.author.kind, author_id, &job.client_id);
    if let Some(event) = stored.get(&key) {
        return Ok(Applied { event: event.clone(), conversation: conv.clone(), previous_agent: None, duplicate: true });
    }
    rules::check_message(conv)?;
    conv.last_seq += 1;
    let event = StoredEvent {
        conversation_id: conv.id.clone(),
        seq: conv.last_seq,
        id: new_id(),
        kind: "message".to_owned(),
        author: job.author.clone(),
        client_id: Some(job.client_id.clone()),
        body: Some(job.body.clone()),
        data: super::attachments::message_data(&[], job.integration.as_deref()),
        created_at: now,
    };
    // A copy sent twice within one batch: the second is the first's retry.
    stored.insert(key, event.clone());
    Ok(Applied { event, conversation: conv.clone(), previous_agent: None, duplicate: false })
}

/// The messages already stored under the batch's retry keys, by key: one
/// lookup on the unique index of client ids for the whole batch.
async fn earlier_messages(tx: &mut sqlx::PgConnection, jobs: &[Job]) -> Result<HashMap<RetryKey, StoredEvent>> {
    let rows = sqlx::query(
        "SELECT e.* FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(conversation_id, author_kind, author_id, client_id) \
         JOIN events e ON e.conversation_id = k.conversation_id AND e.author_kind = k.author_kind \
         AND e.author_id = k.author_id AND e.client_id = k.client_id WHERE e.client_id IS NOT NULL",
    )
    .bind(jobs.iter().map(|j| j.conversation_id.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.author.kind.as_str()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.author.id.as_deref().unwrap_or_default()).collect::<Vec<_>>())
    .bind(jobs.iter().map(|j| j.client_id.as_str()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let mut found = HashMap::new();
    for row in rows {
        let event = event_from_row(&row)?;
        let (Some(author_id), Some(client_id)) = (event.author.id.as_deref(), event.client_id.as_deref()) else {
            continue;
        };
        found.insert(retry_key(&event.conversation_id, event.author.kind, author_id, client_id), event.clone());
    }
    Ok(found)
}

async fn insert_events(tx: &mut sqlx::PgConnection, events: &[&StoredEvent]) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, created_at) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::bigint[])",
    )
    .bind(events.iter().map(|e| e.conversation_id.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.seq).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.author.kind.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.author.id.as_deref()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.client_id.as_deref()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.body.as_deref()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.data.to_string()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.created_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_always_goes_to_the_same_batcher() {
        let id = "0193a1b2-0000-7000-8000-000000000001";
        assert!((0..10).all(|_| shard_of(id) == shard_of(id)));
        let spread: std::collections::HashSet<usize> = (0..64).map(|i| shard_of(&format!("conv-{i}"))).collect();
        assert_eq!(spread.len(), SHARDS, "64 conversations use every batcher");
    }

    #[test]
    fn only_messages_without_files_and_with_an_author_id_are_batched() {
        let author = Author { kind: AuthorKind::Visitor, id: Some("v1".into()) };
        let message = |author: Author, attachments| Change::Message {
            author,
            client_id: "c1".into(),
            body: "hi".into(),
            attachments,
            integration: None,
        };
        assert!(Writer::takes(&message(author.clone(), Vec::new())));
        assert!(!Writer::takes(&message(Author { kind: AuthorKind::System, id: None }, Vec::new())));
        let file = attachments::AttachmentRef {
            id: "a1".into(),
            name: "x.png".into(),
            size: 1,
            content_type: "image/png".into(),
            inline: true,
        };
        assert!(!Writer::takes(&message(author.clone(), vec![file])));
        assert!(!Writer::takes(&Change::Close { by: author }));
    }
}
