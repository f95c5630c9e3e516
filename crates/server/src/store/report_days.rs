//! PostgreSQL's summaries of finished days, for reports (migration
//! `postgres/0039_report_days.sql`): a row per site and UTC day holding
//! the facts of every chat of the day that has them, encoded here. A
//! 30-day report reads some 30 of these instead of some 80,000 chats'
//! rows; the chats' rows were what the database's own process spent a
//! core on while reports were asked, and what raised live chat's p99
//! beside them (`docs/benchmarks.md`). The report lane
//! (`reports::PgReports`) makes every settled day's summary in the lead's
//! rounds (`keep`), and a day's the first time a report needs it when no
//! round has; the migration's triggers empty it whenever one of its
//! chats changes, and the next round or report makes it again. What
//! a report reads is exact: the same facts, the same statement
//! (`reports::closed_sql`), only read once.
//!
//! Why a summary is never stale:
//! - In the transaction that changes one of a day's chats, once the day
//!   has ended by the database's clock, the triggers make the day's row
//!   if missing, lock it and empty it. A summary is made only for a day
//!   that ended more than `SETTLED_MS` ago: a transaction that changed a
//!   chat of a day before it ended was over long before.
//! - A summary is made under the lock of its row (`make`), and its chats
//!   are read after the lock is taken: a change that committed before is
//!   read; one that has not yet locked the row waits for the lock, and
//!   then empties the summary just written.
//! - A report reads the summaries and the rest in one snapshot
//!   (`REPEATABLE READ`): a summary it sees still full holds every change
//!   committed in that snapshot, since each change empties it in its own
//!   transaction.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use super::reports::{ChatFacts, FactSink, closed_sql, pg_facts};
use crate::error::{Error, Result};

pub(super) const DAY_MS: i64 = 86_400_000;

/// How long after a day ends its summary may be made (see the module's
/// doc): longer than any transaction, and than the clocks of nodes and
/// database can differ.
const SETTLED_MS: i64 = 3_600_000;

/// The first byte of a summary: one made by another encoding is made
/// again rather than misread.
const FORMAT: u8 = 1;

/// The UTC days within `[from, to)` (Unix ms) that a report reads from
/// summaries at `now`: whole, and ended `SETTLED_MS` ago.
pub(super) fn summarized_days(from: i64, to: i64, now: i64) -> Range<i64> {
    let first = from.div_euclid(DAY_MS) + i64::from(from.rem_euclid(DAY_MS) != 0);
    let last = to.div_euclid(DAY_MS).min((now - SETTLED_MS).div_euclid(DAY_MS));
    first..last.max(first)
}

/// A day's chats as stored: each group and agent id once, chats
/// pointing at them; times relative, so that most fit in a few bytes of
/// postcard's variable-length integers.
#[derive(Serialize, Deserialize)]
struct Summary<'a> {
    #[serde(borrow)]
    ids: Vec<&'a str>,
    chats: Vec<Chat>,
}

#[derive(Serialize, Deserialize)]
struct Chat {
    group: u32,
    agent: Option<u32>,
    offline: bool,
    missed: bool,
    /// After the day's start.
    created: i64,
    /// These after `created`.
    closed: Option<i64>,
    first_visitor: Option<i64>,
    first_assigned: Option<i64>,
    first_agent: Option<i64>,
    messages: i64,
    score: Option<i64>,
}

/// Give each chat of `summary`, of day `day`, to `sink` (only those
/// `agent` had, if given). False, and nothing given, if it is not a
/// summary of this format: then its chats are read instead.
pub(super) fn tally(summary: &[u8], day: i64, agent: Option<&str>, sink: &mut dyn FactSink) -> bool {
    let Some((&FORMAT, body)) = summary.split_first() else { return false };
    let Ok(Summary { ids, chats }) = postcard::from_bytes::<Summary>(body) else { return false };
    let known = |i: u32| (i as usize) < ids.len();
    if !chats.iter().all(|c| known(c.group) && c.agent.is_none_or(known)) {
        return false;
    }
    let start = day * DAY_MS;
    sink.day_ids(&ids);
    for c in &chats {
        let agent_id = c.agent.map(|i| ids[i as usize]);
        if agent.is_some_and(|a| agent_id != Some(a)) {
            continue;
        }
        let created_at = start + c.created;
        let at = |t: Option<i64>| t.map(|t| created_at + t);
        sink.add(&ChatFacts {
            group_id: ids[c.group as usize],
            agent_id,
            offline: c.offline,
            created_at,
            closed_at: at(c.closed),
            first_visitor_at: at(c.first_visitor),
            first_assigned_at: at(c.first_assigned),
            first_agent_at: at(c.first_agent),
            messages: c.messages,
            score: c.score,
            missed: c.missed,
            named: Some((c.group, c.agent)),
        });
    }
    true
}

/// Summaries read or made before, by site and day, each with its
/// version (a random number each summary is made with): a report of days
/// kept here reads from the database only their versions, which say the
/// summaries are still full and the same. Without it, the summaries'
/// bytes (a megabyte and a half for a busy month) were most of what the
/// database's process did for a report. With each summary, the day's
/// shares of the last reports' sinks (`FactSink::share`): a report adds
/// those, some thirty merges, instead of decoding and tallying the
/// month's 75,000 chats again, which was half of a warm report's work.
/// Kept by the report lane, whose one thread owns it; at most
/// `CACHE_BYTES`, the least recently used day out first.
pub(super) struct Cache {
    kept: HashMap<(String, i64), Kept>,
    bytes: usize,
    most: usize,
    clock: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache { kept: HashMap::new(), bytes: 0, most: CACHE_BYTES, clock: 0 }
    }
}

struct Kept {
    version: i64,
    summary: Arc<[u8]>,
    /// The day's shares by key, the most recently used first, each with
    /// its bytes; `SHARES_MOST` at most.
    shares: Vec<(String, Box<dyn FactSink>, usize)>,
    used: u64,
}

impl Kept {
    fn bytes(&self) -> usize {
        self.summary.len() + self.shares.iter().map(|(_, _, bytes)| bytes).sum::<usize>()
    }
}

/// What `Cache` holds at most: a year of summaries of a site with a
/// million chats a year is some 20 MB, and their shares of the site's
/// reports about as much again.
const CACHE_BYTES: usize = 96 << 20;

/// Shares kept of a day: the site's admins' reports, and a few of its
/// agents' own.
const SHARES_MOST: usize = 4;

impl Cache {
    fn get(&mut self, site_id: &str, day: i64, version: i64) -> Option<Arc<[u8]>> {
        let kept = self.used(site_id, day, version)?;
        Some(kept.summary.clone())
    }

    /// The entry of `day` of `site_id` if it is of `version`, marked used.
    fn used(&mut self, site_id: &str, day: i64, version: i64) -> Option<&mut Kept> {
        self.clock += 1;
        let kept = self.kept.get_mut(&(site_id.to_owned(), day)).filter(|k| k.version == version)?;
        kept.used = self.clock;
        Some(kept)
    }

    fn put(&mut self, site_id: &str, day: i64, version: i64, summary: Vec<u8>) -> Arc<[u8]> {
        self.clock += 1;
        let summary: Arc<[u8]> = summary.into();
        let kept = Kept { version, summary: summary.clone(), shares: Vec::new(), used: self.clock };
        self.bytes += kept.bytes();
        if let Some(old) = self.kept.insert((site_id.to_owned(), day), kept) {
            self.bytes -= old.bytes();
        }
        self.trim();
        summary
    }

    /// The share of key `key` kept of `day` (of `version`) of `site_id`.
    fn share(&mut self, site_id: &str, day: i64, version: i64, key: &str) -> Option<&dyn FactSink> {
        let kept = self.used(site_id, day, version)?;
        let at = kept.shares.iter().position(|(k, _, _)| k == key)?;
        kept.shares[..=at].rotate_right(1);
        Some(kept.shares[0].1.as_ref())
    }

    /// Keep `share`, of key `key`, with the summary of `day` (of
    /// `version`) of `site_id`, if that is still kept.
    fn keep_share(&mut self, site_id: &str, day: i64, version: i64, key: String, mut share: Box<dyn FactSink>) {
        let bytes = share.keep() + key.len();
        let Some(kept) = self.used(site_id, day, version) else { return };
        let before = kept.bytes();
        kept.shares.retain(|(k, _, _)| *k != key);
        kept.shares.insert(0, (key, share, bytes));
        kept.shares.truncate(SHARES_MOST);
        let after = kept.bytes();
        self.bytes = self.bytes + after - before;
        self.trim();
    }

    /// The least recently used days out, until no more than `most`.
    fn trim(&mut self) {
        while self.bytes > self.most {
            let Some(oldest) = self.kept.iter().min_by_key(|(_, k)| k.used).map(|(key, _)| key.clone()) else { break };
            if let Some(out) = self.kept.remove(&oldest) {
                self.bytes -= out.bytes();
            }
        }
    }
}

/// Add `day` of `site_id` (its summary, of `version`) to `sink` (only the
/// chats `agent` had, if given): the day's share of a sink like it, kept
/// in `cache` and made the first time, if the sink takes shares; else
/// the day's chats one by one. False, and nothing added, if `summary`
/// is not a summary of this format.
pub(super) fn add_day(
    cache: &mut Cache,
    site_id: &str,
    (day, version): (i64, i64),
    summary: &[u8],
    agent: Option<&str>,
    sink: &mut dyn FactSink,
) -> bool {
    let Some((key, mut share)) = sink.share() else { return tally(summary, day, agent, sink) };
    // An agent's own report keeps a share of their chats only.
    let key = format!("{key}\0{agent:?}");
    if let Some(kept) = cache.share(site_id, day, version, &key)
        && sink.add_share(kept)
    {
        return true;
    }
    if !tally(summary, day, agent, share.as_mut()) {
        return false;
    }
    if !sink.add_share(share.as_ref()) {
        return tally(summary, day, agent, sink);
    }
    cache.keep_share(site_id, day, version, key, share);
    true
}

/// The days within `days` of `site_id` whose summary is full and of this
/// format, with its version.
async fn full_days(conn: &mut PgConnection, site_id: &str, days: &Range<i64>) -> Result<Vec<(i64, i64)>> {
    // The first byte of each only (stored uncompressed, it is read alone).
    let full = sqlx::query_as(
        "SELECT day, version FROM report_days WHERE site_id = $1 AND day >= $2 AND day < $3 \
         AND substring(facts FROM 1 FOR 1) = $4",
    )
    .bind(site_id)
    .bind(days.start)
    .bind(days.end)
    .bind([FORMAT].as_slice())
    .fetch_all(&mut *conn)
    .await?;
    Ok(full)
}

/// The full summaries of `days` of `site_id`, of this format, in `conn`'s
/// snapshot, by day, each with its version: from `cache` where it holds
/// their version, else read (and kept there). A day without one is not
/// in the map.
pub(super) async fn summaries(
    conn: &mut PgConnection,
    cache: &mut Cache,
    site_id: &str,
    days: &Range<i64>,
) -> Result<BTreeMap<i64, (i64, Arc<[u8]>)>> {
    let mut found = BTreeMap::new();
    let mut unknown = Vec::new();
    for (day, version) in full_days(conn, site_id, days).await? {
        match cache.get(site_id, day, version) {
            Some(summary) => _ = found.insert(day, (version, summary)),
            None => unknown.push(day),
        }
    }
    if !unknown.is_empty() {
        let read: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT day, version, facts FROM report_days WHERE site_id = $1 AND day = ANY($2) AND facts IS NOT NULL",
        )
        .bind(site_id)
        .bind(&unknown)
        .fetch_all(&mut *conn)
        .await?;
        for (day, version, summary) in read {
            found.insert(day, (version, cache.put(site_id, day, version, summary)));
        }
    }
    Ok(found)
}

/// Make the summary of `day` of `site_id`, under its row's lock, unless
/// another node made it while this one waited for the lock; kept in
/// `cache` either way.
pub(super) async fn make(conn: &mut PgConnection, cache: &mut Cache, site_id: &str, day: i64) -> Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::query("INSERT INTO report_days (site_id, day) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(site_id)
        .bind(day)
        .execute(&mut *tx)
        .await?;
    let (kept, version): (Option<Vec<u8>>, Option<i64>) =
        sqlx::query_as("SELECT facts, version FROM report_days WHERE site_id = $1 AND day = $2 FOR UPDATE")
            .bind(site_id)
            .bind(day)
            .fetch_one(&mut *tx)
            .await?;
    if let (Some(summary), Some(version)) = (kept, version)
        && summary.first() == Some(&FORMAT)
    {
        tx.commit().await?;
        cache.put(site_id, day, version, summary);
        return Ok(());
    }
    // Read now, after the lock (READ COMMITTED: a snapshot per statement).
    let rows = sqlx::query(sqlx::AssertSqlSafe(closed_sql("$1", "$2", "$3", "NULL::text")))
        .bind(site_id)
        .bind(day * DAY_MS)
        .bind((day + 1) * DAY_MS)
        .fetch_all(&mut *tx)
        .await?;
    let facts = rows.iter().map(pg_facts).collect::<Result<Vec<_>>>()?;
    let summary = encode(day, &facts)?;
    let version: i64 = rand::random();
    sqlx::query("UPDATE report_days SET facts = $3, version = $4 WHERE site_id = $1 AND day = $2")
        .bind(site_id)
        .bind(day)
        .bind(&summary)
        .bind(version)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    cache.put(site_id, day, version, summary);
    Ok(())
}

/// One round of keeping summaries (the lead's `reports::keep_summaries`):
/// make the missing summary of every settled day of every site, back to
/// the day of its first chat, newest first, one day at a time and
/// resting between days (`Pace`, cut short when a report waits), so
/// that a report seldom finds a day without one: yesterday's is made
/// within a round of its settling, and one a late change emptied (a
/// rating, a chat closed after midnight) within a round of that. Made by
/// reports alone, a month nobody had asked for took some 6 s beside chat
/// (`docs/benchmarks.md`). Stops making (but goes on counting) as
/// soon as `stop` says so (a report waits: it goes first, and the next
/// round goes on).
pub(super) async fn keep(
    conn: &mut PgConnection,
    cache: &mut Cache,
    now: i64,
    stop: impl Fn() -> bool,
) -> Result<super::reports::SummariesKept> {
    // The index on (site_id, created_at) gives each first chat.
    let sites: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT s.id, (SELECT min(c.created_at) FROM conversations c WHERE c.site_id = s.id) FROM sites s ORDER BY s.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let settled = (now - SETTLED_MS).div_euclid(DAY_MS);
    let mut kept = super::reports::SummariesKept::default();
    let mut pace = crate::low_priority::Pace::start();
    for (site_id, first) in sites {
        let Some(first) = first else { continue };
        let days = first.div_euclid(DAY_MS)..settled;
        if days.is_empty() {
            continue;
        }
        // Cut short, the round counts no further: a report waits.
        if kept.left > 0 && stop() {
            break;
        }
        let full: std::collections::HashSet<i64> =
            full_days(conn, &site_id, &days).await?.into_iter().map(|(day, _)| day).collect();
        // Newest first: a report of the last weeks, the one most asked
        // for, finds its days made first after an upgrade.
        for day in days.rev().filter(|d| !full.contains(d)) {
            if kept.left > 0 || stop() {
                kept.left += 1;
                continue;
            }
            make(conn, cache, &site_id, day).await?;
            kept.made += 1;
            pace.breathe_unless(&stop).await;
        }
        pace.breathe_unless(&stop).await;
    }
    Ok(kept)
}

/// The summary of `facts`, the chats of `day`.
fn encode(day: i64, facts: &[ChatFacts<'_>]) -> Result<Vec<u8>> {
    let (mut ids, mut known) = (Vec::new(), HashMap::new());
    let mut intern = |id| {
        *known.entry(id).or_insert_with(|| {
            ids.push(id);
            ids.len() as u32 - 1
        })
    };
    let start = day * DAY_MS;
    let mut chats = Vec::with_capacity(facts.len());
    for f in facts {
        let after = |t: Option<i64>| t.map(|t| t - f.created_at);
        let (group, agent) = (intern(f.group_id), f.agent_id.map(&mut intern));
        chats.push(Chat {
            group,
            agent,
            offline: f.offline,
            missed: f.missed,
            created: f.created_at - start,
            closed: after(f.closed_at),
            first_visitor: after(f.first_visitor_at),
            first_assigned: after(f.first_assigned_at),
            first_agent: after(f.first_agent_at),
            messages: f.messages,
            score: f.score,
        });
    }
    postcard::to_extend(&Summary { ids, chats }, vec![FORMAT])
        .map_err(|e| Error::Internal(anyhow::anyhow!("cannot encode a report summary: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_days_summarized_are_whole_and_settled() {
        let day = |d: i64| d * DAY_MS;
        let now = day(100) + 12 * HOUR;
        // Whole days only: the partial ones either side are read as chats.
        assert_eq!(summarized_days(day(10) + 1, day(20) - 1, now), 11..19);
        assert_eq!(summarized_days(day(10), day(20), now), 10..20);
        // Not today (day 100), nor yesterday until an hour after it ended.
        assert_eq!(summarized_days(day(90), day(101), now), 90..100);
        assert_eq!(summarized_days(day(90), day(101), day(100) + HOUR - 1), 90..99);
        assert_eq!(summarized_days(day(90), day(101), day(100) + HOUR), 90..100);
        // Less than a whole day: none, and never a range turned around.
        assert!(summarized_days(day(10) + 1, day(11) - 1, now).is_empty());
        assert!(summarized_days(day(10) + 1, day(10) + 2, now).is_empty());
        assert!(summarized_days(day(100), day(101), now).is_empty());
        // Before 1970 as well (times are signed).
        assert_eq!(summarized_days(day(-3) + 1, day(-1), now), -2..-1);
    }

    fn chat<'a>(group: &'a str, agent: Option<&'a str>, created_at: i64) -> ChatFacts<'a> {
        ChatFacts {
            group_id: group,
            agent_id: agent,
            offline: agent.is_none(),
            created_at,
            closed_at: Some(created_at + 600_000),
            first_visitor_at: Some(created_at),
            first_assigned_at: agent.map(|_| created_at + 5_000),
            // A reply before the chat's row was made (clocks of two nodes).
            first_agent_at: agent.map(|_| created_at - 20),
            messages: 7,
            score: agent.map(|_| 4),
            missed: agent.is_none(),
            named: None,
        }
    }

    /// Each chat given, as it was encoded (without its positions), and
    /// its group's and agent's ids as their positions name them.
    #[derive(Default)]
    struct Kept {
        chats: Vec<String>,
        ids: Vec<String>,
        named: Vec<(String, Option<String>)>,
    }
    impl FactSink for Kept {
        fn add(&mut self, chat: &ChatFacts<'_>) {
            self.chats.push(format!("{:?}", ChatFacts { named: None, ..chat.clone() }));
            let (group, agent) = chat.named.unwrap();
            let id = |i: u32| self.ids[i as usize].clone();
            let named = (id(group), agent.map(id));
            self.named.push(named);
        }
        fn day_ids(&mut self, ids: &[&str]) {
            self.ids = ids.iter().map(|id| id.to_string()).collect();
        }
    }

    #[test]
    fn a_summary_gives_back_its_chats_exactly() {
        let day = 20_000;
        let start = day * DAY_MS;
        let facts = [
            chat("general", Some("ann"), start),
            chat("sales", Some("bob"), start + 3 * HOUR),
            chat("general", None, start + DAY_MS - 1),
            chat("general", Some("ann"), start + 5 * HOUR),
        ];
        let summary = encode(day, &facts).unwrap();
        let mut all = Kept::default();
        assert!(tally(&summary, day, None, &mut all));
        assert_eq!(all.chats, facts.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>());
        let named: Vec<_> = facts.iter().map(|f| (f.group_id.to_owned(), f.agent_id.map(str::to_owned))).collect();
        assert_eq!(all.named, named, "the positions name the chats' own ids");
        let mut ann = Kept::default();
        assert!(tally(&summary, day, Some("ann"), &mut ann));
        assert_eq!(ann.chats, [&facts[0], &facts[3]].map(|f| format!("{f:?}")));
        // Each id once: a day of a busy site is mostly its times.
        assert!(summary.len() < 4 * 40, "{} bytes", summary.len());
    }

    #[test]
    fn the_cache_gives_a_summary_of_the_same_version_only_and_keeps_the_recent() {
        let mut cache = Cache { most: 100, ..Cache::default() };
        cache.put("a", 1, 11, vec![1; 40]);
        cache.put("a", 2, 22, vec![2; 40]);
        assert_eq!(cache.get("a", 1, 11).as_deref(), Some(&[1; 40][..]));
        assert!(cache.get("a", 1, 12).is_none(), "made again since");
        assert!(cache.get("b", 1, 11).is_none(), "another site's");
        // Over 100 bytes: day 2, the least recently used, goes.
        cache.put("a", 3, 33, vec![3; 40]);
        assert!(cache.get("a", 2, 22).is_none());
        assert!(cache.get("a", 1, 11).is_some() && cache.get("a", 3, 33).is_some());
        assert_eq!(cache.bytes, 80);
        // A new version takes the old one's place and bytes.
        cache.put("a", 3, 34, vec![3; 10]);
        assert_eq!((cache.bytes, cache.kept.len()), (50, 2));
        // One larger than the whole cache is given back, not kept.
        assert_eq!(cache.put("a", 4, 44, vec![4; 200]).len(), 200);
        assert_eq!((cache.bytes, cache.kept.len()), (0, 0));
    }

    /// A sink that takes shares: its chats' creation times, and how
    /// many chats and shares it was given.
    #[derive(Default)]
    struct Shared {
        created: Vec<i64>,
        chats_given: usize,
        shares_given: usize,
    }
    impl FactSink for Shared {
        fn add(&mut self, chat: &ChatFacts<'_>) {
            self.created.push(chat.created_at);
            self.chats_given += 1;
        }
        fn share(&self) -> Option<(String, Box<dyn FactSink>)> {
            Some(("zone".into(), Box::new(Shared::default())))
        }
        fn add_share(&mut self, share: &dyn FactSink) -> bool {
            let Some(share) = (share as &dyn std::any::Any).downcast_ref::<Shared>() else { return false };
            self.created.extend_from_slice(&share.created);
            self.shares_given += 1;
            true
        }
        fn keep(&mut self) -> usize {
            1_000
        }
    }

    #[test]
    fn a_days_share_is_made_once_per_version_and_agent_and_added_after() {
        let (day, start) = (20_000, 20_000 * DAY_MS);
        let facts = [chat("general", Some("ann"), start), chat("sales", Some("bob"), start + HOUR)];
        let summary = encode(day, &facts).unwrap();
        let mut cache = Cache::default();
        cache.put("a", day, 11, summary.clone());
        let add = |cache: &mut Cache, version: i64, agent: Option<&str>| {
            let mut sink = Shared::default();
            assert!(add_day(cache, "a", (day, version), &summary, agent, &mut sink));
            assert_eq!(sink.chats_given, 0, "chats go to the share, never to the report's sink");
            (sink.created, cache.kept[&("a".to_owned(), day)].shares.len())
        };
        assert_eq!(add(&mut cache, 11, None), (vec![start, start + HOUR], 1));
        assert_eq!(cache.bytes, summary.len() + 1_000 + "zone\0None".len());
        // The second time from the kept share; an agent's own is another.
        assert_eq!(add(&mut cache, 11, None), (vec![start, start + HOUR], 1));
        assert_eq!(add(&mut cache, 11, Some("bob")), (vec![start + HOUR], 2));
        assert_eq!(add(&mut cache, 11, Some("bob")), (vec![start + HOUR], 2));
        // The summary made again: the old shares go with the old version.
        cache.put("a", day, 12, summary.clone());
        assert_eq!(add(&mut cache, 12, Some("ann")), (vec![start], 1));
        assert_eq!(cache.bytes, summary.len() + 1_000 + "zone\0Some(\"ann\")".len());
        // A day no longer kept is still added, its share not kept.
        cache.kept.clear();
        cache.bytes = 0;
        let mut sink = Shared::default();
        assert!(add_day(&mut cache, "a", (day, 12), &summary, None, &mut sink));
        assert_eq!((sink.created.len(), sink.shares_given, cache.bytes), (2, 1, 0));
        // A sink that takes no shares is given the chats.
        let mut plain = Kept::default();
        assert!(add_day(&mut cache, "a", (day, 12), &summary, None, &mut plain));
        assert_eq!(plain.chats.len(), 2);
    }

    #[test]
    fn what_is_not_a_summary_is_read_as_chats_instead() {
        let summary = encode(7, &[chat("general", Some("ann"), 7 * DAY_MS)]).unwrap();
        let mut other_format = summary.clone();
        other_format[0] = FORMAT + 1;
        let truncated = &summary[..summary.len() - 3];
        for bad in [&[][..], &other_format, truncated] {
            let mut sink = Kept::default();
            assert!(!tally(bad, 7, None, &mut sink));
            assert!(sink.chats.is_empty());
        }
    }
}
