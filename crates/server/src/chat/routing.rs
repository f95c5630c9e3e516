//! Choosing an agent for a conversation. The choice is a pure function of
//! the candidates' state; the store then makes the assignment atomically
//! (it re-checks the chat limit inside its transaction), so two routers
//! racing can never overfill an agent or assign a conversation twice.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

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

/// Hands a group's agents out to a run of queued chats in exactly the order
/// repeated [`pick_agent`] calls would, each pick counted against the
/// agent. Built once per drain, so presence is asked once per agent and a
/// pick costs O(log n): a drain of thousands of chats over a group of
/// thousands of agents used to walk the whole group, asking presence under
/// a lock, for every chat.
pub struct Planner {
    /// (active chats, last assigned at, rank by id) of each agent that can
    /// take one more chat.
    heap: BinaryHeap<Reverse<(i64, i64, usize)>>,
    /// Candidate index by rank (rank order is id order, the last tie-break).
    by_rank: Vec<usize>,
}

impl Planner {
    pub fn new(candidates: &[RoutingCandidate], present: impl Fn(&str) -> bool) -> Planner {
        let mut by_rank: Vec<usize> = (0..candidates.len()).collect();
        by_rank.sort_by(|a, b| candidates[*a].agent_id.cmp(&candidates[*b].agent_id));
        let heap = by_rank
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                let c = &candidates[**i];
                c.availability == Availability::Online && c.active_chats < c.chat_limit && present(&c.agent_id)
            })
            .map(|(rank, i)| Reverse((candidates[*i].active_chats, candidates[*i].last_assigned_at, rank)))
            .collect();
        Planner { heap, by_rank }
    }

    /// The index of the next agent to give a chat to, now counted as having
    /// it (assigned at `now`); `None` when every agent is full. `except`
    /// is never picked (the agent who just let this chat go), and keeps
    /// their place for the next chat.
    pub fn pick(&mut self, candidates: &mut [RoutingCandidate], now: i64, except: Option<&str>) -> Option<usize> {
        let mut set_aside = None;
        let picked = loop {
            let Some(Reverse(entry)) = self.heap.pop() else { break None };
            if except.is_some_and(|id| candidates[self.by_rank[entry.2]].agent_id == id) {
                set_aside = Some(entry);
                continue;
            }
            break Some(entry);
        };
        if let Some(entry) = set_aside {
            self.heap.push(Reverse(entry));
        }
        let (_, _, rank) = picked?;
        let i = self.by_rank[rank];
        let c = &mut candidates[i];
        c.active_chats += 1;
        c.last_assigned_at = now;
        if c.active_chats < c.chat_limit {
            self.heap.push(Reverse((c.active_chats, c.last_assigned_at, rank)));
        }
        Some(i)
    }
}

/// Whether any candidate could take a chat now or once a slot frees up
/// (online and present, regardless of load).
pub fn anyone_online(candidates: &[RoutingCandidate], present: impl Fn(&str) -> bool) -> bool {
    candidates.iter().any(|c| c.availability == Availability::Online && present(&c.agent_id))
}

/// Apply a drain's picks level by level: first those that give agents
/// their first chat (`level` 1), then their second, and so on. A pick at a
/// higher level assumed that every pick below it took; when one did not
/// (another node had routed that chat, or handed that agent one), an agent
/// the plan counted busy may still have none, and the picks above would
/// give someone a second chat beside them. So once a level has a failure,
/// the levels above are not applied: they come back in the second list,
/// to be planned afresh. (Two nodes draining one queue read it and their
/// candidates at different moments, and parted ways exactly so,
/// docs/benchmarks.md.) A level's picks are applied together, so they
/// share group commits.
pub async fn apply_by_level<P, R, E, Fut>(
    mut plan: Vec<(P, i64)>,
    apply: impl Fn(&P) -> Fut,
) -> (Vec<(P, Result<R, E>)>, Vec<P>)
where
    Fut: std::future::Future<Output = Result<R, E>>,
{
    plan.sort_by_key(|(_, level)| *level);
    let mut plan = plan.into_iter().peekable();
    let mut applied = Vec::new();
    while let Some(level) = plan.peek().map(|(_, level)| *level) {
        let round: Vec<P> = std::iter::from_fn(|| plan.next_if(|(_, l)| *l == level)).map(|(p, _)| p).collect();
        let outcomes = futures_util::future::join_all(round.iter().map(&apply)).await;
        let failed = outcomes.iter().any(Result::is_err);
        applied.extend(round.into_iter().zip(outcomes));
        if failed {
            break;
        }
    }
    (applied, plan.map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_level_with_a_failed_pick_holds_back_the_levels_above() {
        // c1..c3 give agents their first chat, c4 and c5 a second, c6 a third.
        let plan = vec![("c4", 2), ("c1", 1), ("c6", 3), ("c2", 1), ("c5", 2), ("c3", 1)];
        let tried = std::sync::Mutex::new(Vec::new());
        let (applied, held) = apply_by_level(plan.clone(), |p: &&str| {
            tried.lock().unwrap().push(*p);
            std::future::ready(if *p == "c2" { Err("taken") } else { Ok(()) })
        })
        .await;
        let applied: Vec<(&str, bool)> = applied.into_iter().map(|(p, r)| (p, r.is_ok())).collect();
        assert_eq!(applied, [("c1", true), ("c2", false), ("c3", true)], "the first level, all of it");
        assert_eq!(held, ["c4", "c5", "c6"], "the levels above, in order, not tried");
        assert_eq!(*tried.lock().unwrap(), ["c1", "c2", "c3"]);

        // Nothing fails: every level, lowest first, queue order within one.
        let (applied, held) = apply_by_level(plan, |_: &&str| std::future::ready(Ok::<(), ()>(()))).await;
        let order: Vec<&str> = applied.into_iter().map(|(p, _)| p).collect();
        assert_eq!(order, ["c1", "c2", "c3", "c4", "c5", "c6"]);
        assert!(held.is_empty());
    }

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
    fn the_planner_hands_out_agents_in_pick_agent_order() {
        // Mixed loads, limits, ties, an absent and an away agent.
        let group = || {
            vec![
                cand("d", 1, 3, 50, ON),
                cand("a", 0, 2, 300, ON),
                cand("c", 1, 4, 50, ON),
                cand("b", 0, 1, 300, ON),
                cand("gone", 0, 9, 0, ON),
                cand("away", 0, 9, 0, Availability::Away),
            ]
        };
        let present = |id: &str| id != "gone";
        let mut by_pick = group();
        let mut expected = Vec::new();
        for now in 1000..1020 {
            let Some(id) = pick_agent(&by_pick, present).map(|c| c.agent_id.clone()) else { break };
            let c = by_pick.iter_mut().find(|c| c.agent_id == id).unwrap();
            c.active_chats += 1;
            c.last_assigned_at = now;
            expected.push(id);
        }
        let mut planned = group();
        let mut planner = Planner::new(&planned, present);
        let mut got = Vec::new();
        for now in 1000..1020 {
            let Some(i) = planner.pick(&mut planned, now, None) else { break };
            got.push(planned[i].agent_id.clone());
        }
        assert_eq!(got, expected);
        assert_eq!(got.len(), 2 + 1 + 3 + 2, "every free slot of the present, online agents, then none");
        assert_eq!(planned.iter().map(|c| c.active_chats).collect::<Vec<_>>(), [3, 2, 4, 1, 0, 0]);
    }

    #[test]
    fn the_agent_who_let_a_chat_go_is_skipped_for_it_and_keeps_their_turn() {
        // "a" is least busy, so first in line, and let this chat go.
        let mut group = vec![cand("a", 0, 2, 0, ON), cand("b", 1, 2, 0, ON)];
        let mut planner = Planner::new(&group, |_| true);
        let i = planner.pick(&mut group, 1000, Some("a")).unwrap();
        assert_eq!(group[i].agent_id, "b");
        // The next chat, anyone's: "a" is still first in line.
        let i = planner.pick(&mut group, 1001, None).unwrap();
        assert_eq!(group[i].agent_id, "a");
        // Nobody but the agent who let it go: it waits.
        let mut alone = vec![cand("a", 0, 2, 0, ON)];
        let mut planner = Planner::new(&alone, |_| true);
        assert_eq!(planner.pick(&mut alone, 1000, Some("a")), None);
        assert_eq!(alone[0].active_chats, 0, "nothing counted against them");
        assert_eq!(planner.pick(&mut alone, 1001, None), Some(0), "and they stay in line for others");
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
