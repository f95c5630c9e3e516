//! Choosing an agent for a conversation. The choice is a pure function of
//! the candidates' state; the store then makes the assignment atomically
//! (it re-checks the chat limit inside its transaction), so two routers
//! racing can never overfill an agent or assign a conversation twice.

use crate::store::{Availability, RoutingCandidate};

/// The least busy agent who is online, present and below their chat limit;
/// ties go to whoever was assigned least recently (round robin), then by id
/// so the choice is deterministic.
pub fn pick_agent(candidates: &[RoutingCandidate], present: impl Fn(&str) -> bool) -> Option<&RoutingCandidate> {
    candidates
        .iter()
        .filter(|c| c.availability == Availability::Online && c.active_chats < c.chat_limit && present(&c.agent_id))
        .min_by(|a, b| {
            a.active_chats
                .cmp(&b.active_chats)
                .then(a.last_assigned_at.cmp(&b.last_assigned_at))
                .then(a.agent_id.cmp(&b.agent_id))
        })
}

/// Whether any candidate could take a chat now or once a slot frees up
/// (online and present, regardless of load).
pub fn anyone_online(candidates: &[RoutingCandidate], present: impl Fn(&str) -> bool) -> bool {
    candidates.iter().any(|c| c.availability == Availability::Online && present(&c.agent_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, active: i64, limit: i64, last: i64, av: Availability) -> RoutingCandidate {
        RoutingCandidate {
            agent_id: id.into(),
            name: id.into(),
            availability: av,
            active_chats: active,
            chat_limit: limit,
            last_assigned_at: last,
        }
    }

    const ON: Availability = Availability::Online;

    #[test]
    fn least_busy_wins() {
        let c = [cand("a", 2, 5, 0, ON), cand("b", 1, 5, 9, ON), cand("c", 3, 5, 0, ON)];
        assert_eq!(pick_agent(&c, |_| true).unwrap().agent_id, "b");
    }

    #[test]
    fn ties_go_round_robin_to_the_least_recently_assigned() {
        let c = [cand("a", 1, 5, 300, ON), cand("b", 1, 5, 100, ON), cand("c", 1, 5, 200, ON)];
        assert_eq!(pick_agent(&c, |_| true).unwrap().agent_id, "b");
    }

    #[test]
    fn full_away_offline_and_absent_agents_are_skipped() {
        let c = [
            cand("full", 2, 2, 0, ON),
            cand("away", 0, 5, 0, Availability::Away),
            cand("off", 0, 5, 0, Availability::Offline),
            cand("gone", 0, 5, 0, ON),
            cand("ok", 4, 5, 0, ON),
        ];
        assert_eq!(pick_agent(&c, |id| id != "gone").unwrap().agent_id, "ok");
    }

    #[test]
    fn nobody_available_means_queue_or_offline() {
        let all_full = [cand("a", 2, 2, 0, ON)];
        assert!(pick_agent(&all_full, |_| true).is_none());
        assert!(anyone_online(&all_full, |_| true), "full but online: queue");
        let none = [cand("a", 0, 2, 0, Availability::Away)];
        assert!(!anyone_online(&none, |_| true), "nobody online: offline form");
    }
}
