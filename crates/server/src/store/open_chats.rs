//! A report reads the facts of an open chat from its events: it has none
//! on its row until it closes. Each report read every event of every
//! open chat of its range again; at a busy hour, or with long chats, that
//! is thousands of events a report. On PostgreSQL, read by the database's
//! process at chat's priority, the one window that held today was the
//! one whose reports took five times as long and raised chat's p99 most;
//! on SQLite, a report's time grew with the live chats' length all
//! through a run (`docs/benchmarks.md`).
//!
//! So each store keeps what its reports read of each open chat's events
//! (`OpenChats`): the facts, and the last `seq` read. A chat's events are
//! never deleted, nor their kind or time changed, and they are committed
//! in the order of their `seq` (each takes its chat's row lock to number
//! it on PostgreSQL, `postgres_writer.rs`; SQLite has one writer), so a
//! snapshot that holds event `seq` holds every one before it. A report
//! reads only the events after the last one kept, and adds their facts to
//! those kept: the same figures, from a handful of events instead of all
//! of them.

use std::collections::HashMap;

use rusqlite::{Connection, params};
use sqlx::Row as _;
use sqlx::postgres::PgConnection;

use super::reports::{ChatFacts, FactSink, in_range, pg_facts};
use crate::error::Result;

/// What was read of one open chat's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Read {
    /// The last event read.
    seq: i64,
    created_at: i64,
    first_visitor_at: Option<i64>,
    first_assigned_at: Option<i64>,
    first_agent_at: Option<i64>,
    messages: i64,
}

impl Read {
    /// What was read before (`self`), and after it `since`'s events,
    /// the last of which is `last` if any.
    fn and(self, since: &ChatFacts<'_>, last: Option<i64>) -> Read {
        let earliest = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Read {
            seq: last.unwrap_or(self.seq).max(self.seq),
            created_at: since.created_at,
            first_visitor_at: earliest(self.first_visitor_at, since.first_visitor_at),
            first_assigned_at: earliest(self.first_assigned_at, since.first_assigned_at),
            first_agent_at: earliest(self.first_agent_at, since.first_agent_at),
            messages: self.messages + since.messages,
        }
    }

    /// Nothing read yet: every event is after it.
    fn none(created_at: i64) -> Read {
        Read { seq: 0, created_at, first_visitor_at: None, first_assigned_at: None, first_agent_at: None, messages: 0 }
    }
}

/// The events of open chats read by earlier reports, by site and chat
/// (see the module's doc). Kept by the reports' one reader: PostgreSQL's
/// report lane, SQLite's reports thread. A chat that has closed since is
/// let go by the next report of the whole site over its day (it is no
/// longer among the open ones), and all is let go past `OPEN_MOST` chats.
#[derive(Default)]
pub(super) struct OpenChats {
    sites: HashMap<String, HashMap<String, Read>>,
}

/// Open chats kept at most: some 100 bytes each.
const OPEN_MOST: usize = 100_000;

/// One report's pass over a site's open chats of its range.
struct Pass<'a> {
    kept: &'a mut HashMap<String, Read>,
    range: std::ops::Range<i64>,
    open: HashMap<String, Read>,
}

impl<'a> Pass<'a> {
    /// The last event read of chat `id` (0: none).
    fn seq(&self, id: &str) -> i64 {
        self.kept.get(id).map_or(0, |read| read.seq)
    }

    /// Give `sink` chat `id`: what was read of it before, and `since`,
    /// the facts of its events after that, the last of which is `last`.
    fn add(&mut self, id: String, since: &ChatFacts<'_>, last: Option<i64>, sink: &mut dyn FactSink) {
        let read = self.kept.get(&id).copied().unwrap_or(Read::none(since.created_at)).and(since, last);
        sink.add(&ChatFacts {
            first_visitor_at: read.first_visitor_at,
            first_assigned_at: read.first_assigned_at,
            first_agent_at: read.first_agent_at,
            messages: read.messages,
            ..*since
        });
        self.open.insert(id, read);
    }

    /// Keep what was read. A chat of the range not among the open ones
    /// has closed (or is gone); an agent's own report (`everyone` false)
    /// sees only the agent's.
    fn end(self, everyone: bool) {
        let Pass { kept, range, open } = self;
        if everyone {
            kept.retain(|id, read| !range.contains(&read.created_at) || open.contains_key(id));
        }
        kept.extend(open);
    }
}

/// What an open chat's events `e` say (`ChatFacts`' first visitor
/// message, first assignment, first agent reply, messages), for both
/// stores; a closed chat has them on its row (`reports::closed_sql`).
const EVENT_FACTS: &str = "min(CASE WHEN e.kind = 'message' AND e.author_kind = 'visitor' THEN e.created_at END), \
    min(CASE WHEN e.kind = 'assigned' THEN e.created_at END), \
    min(CASE WHEN e.kind = 'message' AND e.author_kind = 'agent' THEN e.created_at END), \
    count(CASE WHEN e.kind = 'message' THEN 1 END)";

/// PostgreSQL: the open chats of a range with `EVENT_FACTS` of the events
/// after the last one read (`$5`, `$6`: chats' ids and their last `seq`
/// read), as `closed_sql`'s columns, then each chat's id and its last
/// event's `seq`.
fn since_sql() -> String {
    format!(
        "SELECT c.group_id, c.agent_id, c.offline, c.created_at, c.closed_at, {EVENT_FACTS}, \
         c.rating_score, c.missed, c.id, max(e.seq) FROM conversations c \
         LEFT JOIN unnest($5::text[], $6::bigint[]) AS k(id, seq) ON k.id = c.id \
         LEFT JOIN events e ON e.conversation_id = c.id AND e.seq > coalesce(k.seq, 0) \
         WHERE {} AND c.messages IS NULL \
         GROUP BY c.id, c.group_id, c.agent_id, c.offline, c.created_at, c.closed_at, c.rating_score, c.missed",
        in_range("$1", "$2", "$3", "$4::text")
    )
}

/// SQLite: the open chats of a range, each with its row's facts at
/// `ChatFacts`' positions (those its events give are read by
/// `lite_since_sql`) and its id last.
fn lite_chats_sql() -> String {
    format!(
        "SELECT c.group_id, c.agent_id, c.offline, c.created_at, c.closed_at, NULL, NULL, NULL, 0, \
         c.rating_score, c.missed, c.id FROM conversations c WHERE {} AND c.messages IS NULL",
        in_range("?1", "?2", "?3", "?4")
    )
}

/// SQLite: `EVENT_FACTS` of one chat's events after `seq` ?2, and the
/// last one's `seq`. A chat at a time by the `(conversation_id, seq)`
/// index: in-process, a statement is cheaper than the join PostgreSQL's
/// one round trip needs.
fn lite_since_sql() -> String {
    format!("SELECT {EVENT_FACTS}, max(e.seq) FROM events e WHERE e.conversation_id = ?1 AND e.seq > ?2")
}

impl OpenChats {
    /// A report's pass over `site_id`'s open chats created in `range`.
    fn pass(&mut self, site_id: &str, range: std::ops::Range<i64>) -> Pass<'_> {
        if self.sites.values().map(HashMap::len).sum::<usize>() > OPEN_MOST {
            self.sites.clear();
        }
        Pass { kept: self.sites.entry(site_id.to_owned()).or_default(), range, open: HashMap::new() }
    }

    /// Give `sink` the open chats of `site_id` created in `[from, to)`
    /// (only `agent`'s, if given), reading in `conn`'s snapshot only the
    /// events after those read before.
    pub(super) async fn tally_pg(
        &mut self,
        conn: &mut PgConnection,
        site_id: &str,
        (from, to): (i64, i64),
        agent: Option<&str>,
        sink: &mut dyn FactSink,
    ) -> Result<()> {
        let mut pass = self.pass(site_id, from..to);
        let (ids, seqs): (Vec<&str>, Vec<i64>) = pass
            .kept
            .iter()
            .filter(|(_, read)| pass.range.contains(&read.created_at))
            .map(|(id, read)| (id.as_str(), read.seq))
            .unzip();
        let rows = sqlx::query(sqlx::AssertSqlSafe(since_sql()))
            .bind(site_id)
            .bind(from)
            .bind(to)
            .bind(agent)
            .bind(&ids)
            .bind(&seqs)
            .fetch_all(&mut *conn)
            .await?;
        for r in &rows {
            pass.add(r.try_get(11)?, &pg_facts(r)?, r.try_get(12)?, sink);
        }
        pass.end(agent.is_none());
        Ok(())
    }

    /// `tally_pg` on SQLite, in `c`'s read transaction; `each` is called
    /// for every chat (the reader's pace).
    pub(super) fn tally_lite(
        &mut self,
        c: &Connection,
        site_id: &str,
        (from, to): (i64, i64),
        agent: Option<&str>,
        sink: &mut dyn FactSink,
        mut each: impl FnMut(),
    ) -> rusqlite::Result<()> {
        let mut pass = self.pass(site_id, from..to);
        let mut chats = c.prepare_cached(&lite_chats_sql())?;
        let mut since = c.prepare_cached(&lite_since_sql())?;
        let mut rows = chats.query(params![site_id, from, to, agent])?;
        while let Some(r) = rows.next()? {
            each();
            let id: String = r.get(11)?;
            let (group, its_agent): (String, Option<String>) = (r.get(0)?, r.get(1)?);
            let (first_visitor_at, first_assigned_at, first_agent_at, messages, last) = since
                .query_row(params![id, pass.seq(&id)], |e| {
                    Ok((e.get(0)?, e.get(1)?, e.get(2)?, e.get(3)?, e.get(4)?))
                })?;
            let facts = ChatFacts {
                group_id: &group,
                agent_id: its_agent.as_deref(),
                offline: r.get(2)?,
                created_at: r.get(3)?,
                closed_at: r.get(4)?,
                first_visitor_at,
                first_assigned_at,
                first_agent_at,
                messages,
                score: r.get(9)?,
                missed: r.get(10)?,
                named: None,
            };
            pass.add(id, &facts, last, sink);
        }
        pass.end(agent.is_none());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(created_at: i64, visitor: Option<i64>, agent: Option<i64>, messages: i64) -> ChatFacts<'static> {
        ChatFacts {
            group_id: "general",
            agent_id: Some("ann"),
            offline: false,
            created_at,
            closed_at: None,
            first_visitor_at: visitor,
            first_assigned_at: None,
            first_agent_at: agent,
            messages,
            score: None,
            missed: false,
            named: None,
        }
    }

    #[test]
    fn events_read_since_add_to_those_read_before() {
        // The visitor wrote first; then the agent answered, in two reads.
        let first = Read::none(100).and(&facts(100, Some(150), None, 1), Some(2));
        assert_eq!((first.seq, first.first_visitor_at, first.first_agent_at, first.messages), (2, Some(150), None, 1));
        let second = first.and(&facts(100, None, Some(400), 3), Some(6));
        assert_eq!(
            (second.seq, second.first_visitor_at, second.first_agent_at, second.messages),
            (6, Some(150), Some(400), 4)
        );
        // No events since: the same, at the same `seq`.
        assert_eq!(second.and(&facts(100, None, None, 0), None), second);
        // An earlier time read later (another node's clock) is the first.
        let third = second.and(&facts(100, Some(120), Some(390), 1), Some(7));
        assert_eq!((third.first_visitor_at, third.first_agent_at, third.messages), (Some(120), Some(390), 5));
    }

    /// The messages of each chat given to it.
    #[derive(Default)]
    struct Seen(Vec<i64>);

    impl FactSink for Seen {
        fn add(&mut self, chat: &ChatFacts<'_>) {
            self.0.push(chat.messages);
        }
    }

    #[test]
    fn a_pass_lets_go_of_the_closed_chats_of_its_whole_sites_range_only() {
        let mut open = OpenChats::default();
        let mut seen = Seen::default();
        let mut pass = open.pass("shop", 0..1000);
        for (id, at) in [("a", 100), ("b", 200)] {
            pass.add(id.to_owned(), &facts(at, Some(at), None, 2), Some(3), &mut seen);
        }
        pass.end(true);
        let mut pass = open.pass("shop", 2000..3000);
        pass.add("c".to_owned(), &facts(2500, Some(2500), None, 1), Some(1), &mut seen);
        pass.end(true);

        // An agent's own report of the first range sees only "a": "b" is kept.
        let mut pass = open.pass("shop", 0..1000);
        assert_eq!((pass.seq("a"), pass.seq("b"), pass.seq("z")), (3, 3, 0));
        pass.add("a".to_owned(), &facts(100, None, Some(150), 1), Some(4), &mut seen);
        pass.end(false);
        assert_eq!(seen.0, [2, 2, 1, 3], "what was read before and what since");
        // The whole site's report finds "a" alone open: "b" has closed.
        let mut pass = open.pass("shop", 0..1000);
        pass.add("a".to_owned(), &facts(100, None, None, 0), None, &mut seen);
        pass.end(true);
        let shop = &open.sites["shop"];
        assert_eq!((shop.len(), shop["a"].seq, shop["a"].messages), (2, 4, 3), "c, of another range, stays");
        assert!(!shop.contains_key("b"));
    }
}
