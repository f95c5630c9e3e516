//! PostgreSQL's reports read the facts of an open chat from its events
//! (`reports::open_sql`): it has none on its row until it closes. Each
//! report read every event of every open chat of its range again; at a
//! busy hour, or with long chats, that is thousands of events a report,
//! read by the database's process at chat's priority, and the one window
//! that held today was the one whose reports took five times as long and
//! raised chat's p99 most (`docs/benchmarks.md`).
//!
//! So the report lane keeps what it read of each open chat's events
//! (`OpenChats`): the facts, and the last `seq` read. A chat's events are
//! never deleted, nor their kind or time changed, and they are committed
//! in the order of their `seq` (each takes its chat's row lock to number
//! it: `postgres_writer.rs`), so a snapshot that holds event `seq` holds
//! every one before it. A report reads only the events after the last
//! one kept, and adds their facts to those kept: the same figures, from
//! a handful of events instead of all of them.

use std::collections::HashMap;

use sqlx::Row as _;
use sqlx::postgres::PgConnection;

use super::reports::{ChatFacts, FactSink, OPEN_FACTS, OPEN_GROUPED, in_range, pg_facts};
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
/// (see the module's doc). Kept by the report lane, whose one thread owns
/// it. A chat that has closed since is let go by the next report of the
/// whole site over its day (it is no longer among the open ones), and all
/// is let go past `OPEN_MOST` chats.
#[derive(Default)]
pub(super) struct OpenChats {
    sites: HashMap<String, HashMap<String, Read>>,
}

/// Open chats kept at most: some 100 bytes each.
const OPEN_MOST: usize = 100_000;

/// `OPEN_FACTS` of the events after the last one read (`$5`, `$6`: chats'
/// ids and their last `seq` read), with each chat's id and its last
/// event's `seq`.
fn since_sql() -> String {
    format!(
        "SELECT {OPEN_FACTS}, c.id, max(e.seq) FROM conversations c \
         LEFT JOIN unnest($5::text[], $6::bigint[]) AS k(id, seq) ON k.id = c.id \
         LEFT JOIN events e ON e.conversation_id = c.id AND e.seq > coalesce(k.seq, 0) \
         WHERE {} AND c.messages IS NULL GROUP BY {OPEN_GROUPED}",
        in_range("$1", "$2", "$3", "$4::text")
    )
}

impl OpenChats {
    /// Give `sink` the open chats of `site_id` created in `[from, to)`
    /// (only `agent`'s, if given), reading in `conn`'s snapshot only the
    /// events after those read before.
    pub(super) async fn tally(
        &mut self,
        conn: &mut PgConnection,
        site_id: &str,
        (from, to): (i64, i64),
        agent: Option<&str>,
        sink: &mut dyn FactSink,
    ) -> Result<()> {
        let kept = self.sites.entry(site_id.to_owned()).or_default();
        let (ids, seqs): (Vec<&str>, Vec<i64>) = kept
            .iter()
            .filter(|(_, read)| (from..to).contains(&read.created_at))
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
        let mut open = HashMap::with_capacity(rows.len());
        for r in &rows {
            let since = pg_facts(r)?;
            let (id, last): (String, Option<i64>) = (r.try_get(11)?, r.try_get(12)?);
            let read = kept.get(&id).copied().unwrap_or(Read::none(since.created_at)).and(&since, last);
            sink.add(&ChatFacts {
                first_visitor_at: read.first_visitor_at,
                first_assigned_at: read.first_assigned_at,
                first_agent_at: read.first_agent_at,
                messages: read.messages,
                ..since
            });
            open.insert(id, read);
        }
        // A chat of the range not among the open ones has closed (or is
        // gone); an agent's own report sees only the agent's.
        if agent.is_none() {
            kept.retain(|id, read| !(from..to).contains(&read.created_at) || open.contains_key(id));
        }
        kept.extend(open);
        if self.sites.values().map(HashMap::len).sum::<usize>() > OPEN_MOST {
            self.sites.clear();
        }
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
}
