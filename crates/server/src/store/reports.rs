//! The facts reports are built from (`crate::reports`): one row per
//! conversation of a site created in a time range, with what its events
//! say (first visitor message, first assignment, first agent reply, how
//! many messages), its rating and whether it was missed. One statement for
//! both backends: the site's conversations by the `(site_id, created_at)`
//! index (migrations `sqlite/0017_reports.sql`, `postgres/0011_reports.sql`);
//! a closed chat's facts from its own row, taken at its close and kept
//! since by triggers (`sqlite/0035_report_facts.sql`,
//! `postgres/0028_report_facts.sql`), an open one's from its events by the
//! `(conversation_id, seq)` index; the rating and the missed mark by their
//! primary keys.

use rusqlite::params;
use sqlx::Row as _;

use super::ConversationStatus;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use crate::error::{Error, Result};

/// One conversation, as reports see it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatFacts {
    pub conversation_id: String,
    /// The group it is in now (where it was last routed).
    pub group_id: String,
    /// The agent who had it last (kept after close).
    pub agent_id: Option<String>,
    pub status: ConversationStatus,
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

/// Most conversations one report reads (a year of a busy site); beyond it
/// the range must be narrowed.
pub const MAX_FACTS: i64 = 500_000;

/// The facts of a site's conversations created in a range, only those an
/// agent had if `agent` (a parameter that may be NULL) is given. In no
/// particular order: reports sort what they need.
fn facts_sql(site: &str, from: &str, to: &str, agent: &str, limit: &str) -> String {
    let range = format!(
        "c.site_id = {site} AND c.created_at >= {from} AND c.created_at < {to} \
         AND ({agent} IS NULL OR c.agent_id = {agent})"
    );
    format!(
        "SELECT f.*, r.score, m.missed_at FROM ( \
         SELECT c.id, c.group_id, c.agent_id, c.status, c.offline, c.created_at, c.closed_at, \
         c.first_visitor_at, c.first_assigned_at, c.first_agent_at, c.messages \
         FROM conversations c WHERE {range} AND c.messages IS NOT NULL \
         UNION ALL \
         SELECT c.id, c.group_id, c.agent_id, c.status, c.offline, c.created_at, c.closed_at, \
         min(CASE WHEN e.kind = 'message' AND e.author_kind = 'visitor' THEN e.created_at END), \
         min(CASE WHEN e.kind = 'assigned' THEN e.created_at END), \
         min(CASE WHEN e.kind = 'message' AND e.author_kind = 'agent' THEN e.created_at END), \
         count(CASE WHEN e.kind = 'message' THEN 1 END) \
         FROM conversations c LEFT JOIN events e ON e.conversation_id = c.id \
         WHERE {range} AND c.messages IS NULL \
         GROUP BY c.id, c.group_id, c.agent_id, c.status, c.offline, c.created_at, c.closed_at \
         ) f \
         LEFT JOIN ratings r ON r.conversation_id = f.id \
         LEFT JOIN missed_chats m ON m.conversation_id = f.id \
         LIMIT {limit}"
    )
}

fn status(value: &str) -> Result<ConversationStatus> {
    ConversationStatus::parse(value)
        .ok_or_else(|| Error::Store(anyhow::anyhow!("unexpected status in conversations: {value:?}")))
}

/// A chat's facts from a row of either backend (`get` or `try_get`).
macro_rules! facts_from {
    ($r:expr, $get:ident) => {{
        let state: String = $r.$get("status")?;
        let missed_at: Option<i64> = $r.$get("missed_at")?;
        ChatFacts {
            conversation_id: $r.$get("id")?,
            group_id: $r.$get("group_id")?,
            agent_id: $r.$get("agent_id")?,
            status: status(&state)?,
            offline: $r.$get("offline")?,
            created_at: $r.$get("created_at")?,
            closed_at: $r.$get("closed_at")?,
            first_visitor_at: $r.$get("first_visitor_at")?,
            first_assigned_at: $r.$get("first_assigned_at")?,
            first_agent_at: $r.$get("first_agent_at")?,
            messages: $r.$get("messages")?,
            score: $r.$get("score")?,
            missed: missed_at.is_some(),
        }
    }};
}

impl SqliteStore {
    pub(super) async fn report_facts(
        &self,
        site_id: &str,
        from: i64,
        to: i64,
        agent_id: Option<&str>,
    ) -> Result<Vec<ChatFacts>> {
        let (site_id, agent_id) = (site_id.to_owned(), agent_id.map(str::to_owned));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&facts_sql("?1", "?2", "?3", "?4", "?5"))?;
            let mut rows = stmt.query(params![site_id, from, to, agent_id, MAX_FACTS])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(facts_from!(r, get));
            }
            Ok(out)
        })
        .await
    }
}

impl PostgresStore {
    pub(super) async fn report_facts(
        &self,
        site_id: &str,
        from: i64,
        to: i64,
        agent_id: Option<&str>,
    ) -> Result<Vec<ChatFacts>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(facts_sql("$1", "$2", "$3", "$4::text", "$5")))
            .bind(site_id)
            .bind(from)
            .bind(to)
            .bind(agent_id)
            .bind(MAX_FACTS)
            .fetch_all(self.p().await?)
            .await?;
        rows.iter().map(|r| Ok(facts_from!(r, try_get))).collect()
    }
}
