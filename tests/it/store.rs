//! The store's behaviour, one test body per case run against both stores:
//! SQLite in a temporary directory and PostgreSQL in a fresh database.
//! Concurrency cases open two PostgreSQL stores (two pools, as two nodes
//! would) on the same database.

use std::collections::HashMap;
use std::sync::Arc;

use holdfast_server::auth::passwords;
use holdfast_server::error::Error;
use holdfast_server::store::postgres::PostgresStore;
use holdfast_server::store::search::ChatSearch;
use holdfast_server::store::sqlite::SqliteStore;
use holdfast_server::store::{
    Author, Availability, Change, ConversationFilter, ConversationStatus, FaultMode, Guard, NewAgent, Role, Site,
    Store, VisitorUpdate,
};

use crate::services::{Keep, TestDb, both_stores};

/// Two handles on one store: the same one for SQLite, two connection pools
/// (two "nodes") for PostgreSQL.
struct Backend {
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    _keep: Keep,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    Backend { a: store.clone(), b: store, _keep: Keep::Dir(dir) }
}

async fn postgres() -> Backend {
    let db = TestDb::create().await;
    let a: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url, 8).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PostgresStore::connect(&db.url, 8).await.unwrap());
    Backend { a, b, _keep: Keep::Db(db) }
}

both_stores!(
    seq_is_gap_free_and_ordered_with_concurrent_writers,
    a_retried_message_returns_the_original_event,
    a_burst_of_messages_gets_each_its_own_answer,
    concurrent_routing_assigns_each_conversation_once_within_limits,
    conversation_rules_refuse_what_they_should,
    meta_init_keeps_the_first_value,
    meta_set_replaces_the_value,
    the_status_probe_is_never_listed_grouped_or_routed,
    an_operator_is_stored_listed_grouped_and_routed_like_an_admin,
    sessions_agents_visitors_and_admin_data_round_trip,
    search_queue_and_filters,
    injected_faults_fail_every_call_until_cleared,
    idempotency_keys_are_claimed_once_kept_lapse_and_expire,
);

/// Idempotency keys (`store::idempotency`): of two nodes claiming at once
/// one wins; the other finds the claim, then the answer; a lapsed claim or
/// a forgotten key is claimed afresh; a late answer to a lapsed claim is
/// dropped; expired keys are deleted.
async fn idempotency_keys_are_claimed_once_kept_lapse_and_expire(s: Backend) {
    use holdfast_server::store::idempotency::{Claimed, KeyClaim, KeyScope, StoredAnswer};
    let scope = |key: &str| KeyScope { site_id: "site".into(), principal: "token:t".into(), key: key.into() };
    let claim = |key: &str, now: i64| KeyClaim {
        scope: scope(key),
        fingerprint: "f1".into(),
        now,
        forget_before: now - 86_400_000,
        lapsed_before: now - 60_000,
    };
    let t0 = 1_000_000_000_000;
    let (a, b) = tokio::join!(s.a.claim_idempotency_key(claim("k", t0)), s.b.claim_idempotency_key(claim("k", t0)));
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    let ours = [&a, &b].iter().filter(|c| matches!(c, Claimed::Ours { .. })).count();
    assert_eq!(ours, 1, "{a:?} {b:?}");
    let Some(Claimed::Taken(running)) = s.b.claim_idempotency_key(claim("k", t0 + 1)).await.unwrap() else {
        panic!("the key is claimed")
    };
    assert_eq!((running.fingerprint.as_str(), running.answer), ("f1", None));
    let answer = StoredAnswer { status: 201, content_type: Some("application/json".into()), body: b"{}".to_vec() };
    s.a.finish_idempotency_key(scope("k"), t0, answer.clone()).await.unwrap();
    let Some(Claimed::Taken(done)) = s.b.claim_idempotency_key(claim("k", t0 + 120_000)).await.unwrap() else {
        panic!("a kept answer does not lapse")
    };
    assert_eq!(done.answer, Some(answer.clone()));
    // A day later the key is forgotten: claimed afresh.
    let day = t0 + 86_400_001;
    assert_eq!(s.b.claim_idempotency_key(claim("k", day)).await.unwrap(), Some(Claimed::Ours { at: day }));

    // A claim with no answer lapses after a minute; the first request's
    // late answer is then dropped, and its release frees nothing.
    s.a.claim_idempotency_key(claim("slow", t0)).await.unwrap();
    let later = t0 + 60_001;
    assert_eq!(s.b.claim_idempotency_key(claim("slow", later)).await.unwrap(), Some(Claimed::Ours { at: later }));
    s.a.finish_idempotency_key(scope("slow"), t0, answer.clone()).await.unwrap();
    s.a.release_idempotency_key(scope("slow"), t0).await.unwrap();
    let Some(Claimed::Taken(still)) = s.a.claim_idempotency_key(claim("slow", later + 1)).await.unwrap() else {
        panic!("the second claim holds")
    };
    assert_eq!(still.answer, None);
    s.b.release_idempotency_key(scope("slow"), later).await.unwrap();
    assert!(matches!(s.a.claim_idempotency_key(claim("slow", later + 2)).await.unwrap(), Some(Claimed::Ours { .. })));

    // Expired keys are deleted; younger ones stay.
    assert_eq!(s.a.forget_idempotency_keys(later + 1).await.unwrap(), 0, "none older than that");
    assert_eq!(s.a.forget_idempotency_keys(later + 3).await.unwrap(), 1, "the slow key");
    assert_eq!(s.a.forget_idempotency_keys(i64::MAX).await.unwrap(), 1);
}

async fn site_with_agents(store: &dyn Store, n: usize, limit: i64) -> (Site, Vec<String>) {
    let site = store.create_site("Shop").await.unwrap();
    let hash = passwords::hash_now("password123").unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let agent = store
            .create_agent(NewAgent {
                site_id: &site.id,
                email: &format!("agent{i}-{}@example.com", site.id),
                name: &format!("Agent {i}"),
                role: Role::Agent,
                password_hash: &hash,
                chat_limit: limit,
            })
            .await
            .unwrap();
        store.set_availability(&agent.id, Availability::Online).await.unwrap();
        ids.push(agent.id);
    }
    (site, ids)
}

async fn queued_conversation(store: &dyn Store, site: &Site) -> holdfast_server::store::Conversation {
    let visitor = store.create_visitor(&site.id, VisitorUpdate::default()).await.unwrap();
    let group = store.groups(&site.id).await.unwrap().remove(0);
    store.create_conversation(&site.id, &visitor.id, &group.id, ConversationStatus::Queued).await.unwrap()
}

fn message(author: Author, client_id: &str) -> Change {
    Change::Message {
        author,
        client_id: client_id.into(),
        body: format!("body of {client_id}"),
        attachments: Vec::new(),
        integration: None,
    }
}

async fn seq_is_gap_free_and_ordered_with_concurrent_writers(s: Backend) {
    let (site, _) = site_with_agents(s.a.as_ref(), 0, 1).await;
    let conv = queued_conversation(s.a.as_ref(), &site).await;
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = if writer % 2 == 0 { s.a.clone() } else { s.b.clone() };
        let conv = conv.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                let author = Author::visitor(&format!("writer-{writer}"));
                let applied = store.apply(&conv, message(author, &format!("m{i}"))).await.unwrap();
                seqs.push(applied.event.seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one writer's seqs rise: {seqs:?}");
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<i64>>(), "every seq once, no gap");
    let events = s.b.events_after(&conv.id, 0, 1000).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=200).collect::<Vec<i64>>());
    assert_eq!(s.a.conversation(&conv.id).await.unwrap().unwrap().last_seq, 200);
    // "After N" at its edges.
    assert_eq!(s.a.events_after(&conv.id, 199, 10).await.unwrap().len(), 1);
    assert!(s.a.events_after(&conv.id, 200, 10).await.unwrap().is_empty());
    assert_eq!(s.a.events_after(&conv.id, 0, 3).await.unwrap().last().unwrap().seq, 3);
}

async fn a_retried_message_returns_the_original_event(s: Backend) {
    let (site, _) = site_with_agents(s.a.as_ref(), 0, 1).await;
    let conv = queued_conversation(s.a.as_ref(), &site).await;
    let author = Author::visitor(&conv.visitor_id);
    let first = s.a.apply(&conv.id, message(author.clone(), "c1")).await.unwrap();
    let again = s.b.apply(&conv.id, message(author.clone(), "c1")).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!((again.event.seq, again.event.id), (first.event.seq, first.event.id));
    // The same client id from someone else is a different message.
    let other = s.a.apply(&conv.id, message(Author::system(), "c1")).await.unwrap();
    assert!(!other.duplicate);
    assert_eq!(other.event.seq, 2);
}

/// Many messages at once from both nodes, as a group commit takes them
/// together: each gets its own answer. A copy sent twice in one burst is
/// the first's retry; a closed or unknown conversation and another site's
/// visitor are refused alone; every conversation's seqs stay gap-free.
async fn a_burst_of_messages_gets_each_its_own_answer(s: Backend) {
    let (site, _) = site_with_agents(s.a.as_ref(), 0, 1).await;
    let mut convs = Vec::new();
    for _ in 0..20 {
        convs.push(queued_conversation(s.a.as_ref(), &site).await);
    }
    let closed = queued_conversation(s.a.as_ref(), &site).await;
    s.a.apply(&closed.id, Change::Close { by: Author::system() }).await.unwrap();
    let send = |node: usize, conv: &str, guard: Option<Guard>, author: Author, client_id: String| {
        let store = if node.is_multiple_of(2) { s.a.clone() } else { s.b.clone() };
        let conv = conv.to_owned();
        tokio::spawn(async move {
            match guard {
                Some(guard) => store.apply_guarded(&conv, guard, message(author, &client_id)).await,
                None => store.apply(&conv, message(author, &client_id)).await,
            }
        })
    };
    let mut sends = Vec::new();
    for round in 0..5 {
        for (i, conv) in convs.iter().enumerate() {
            let guard = Guard::Visitor { site_id: site.id.clone(), visitor_id: conv.visitor_id.clone() };
            sends.push(send(i, &conv.id, Some(guard), Author::visitor(&conv.visitor_id), format!("r{round}")));
        }
    }
    let first = &convs[0];
    let twice: Vec<_> =
        (0..2).map(|_| send(0, &first.id, None, Author::visitor(&first.visitor_id), "same".into())).collect();
    let late = send(0, &closed.id, None, Author::visitor(&closed.visitor_id), "late".into());
    let stranger = Guard::Visitor { site_id: "other-site".into(), visitor_id: first.visitor_id.clone() };
    let stranger = send(0, &first.id, Some(stranger), Author::visitor(&first.visitor_id), "x".into());
    let nowhere = send(1, "no-such-conv", None, Author::visitor(&first.visitor_id), "y".into());

    for sent in sends {
        let applied = sent.await.unwrap().unwrap();
        assert!(!applied.duplicate, "{applied:?}");
    }
    let mut copies = Vec::new();
    for sent in twice {
        copies.push(sent.await.unwrap().unwrap());
    }
    assert_eq!(copies.iter().filter(|a| a.duplicate).count(), 1, "{copies:?}");
    assert_eq!((copies[0].event.seq, &copies[0].event.id), (copies[1].event.seq, &copies[1].event.id));
    assert!(matches!(late.await.unwrap(), Err(Error::Conflict(_))));
    assert!(matches!(stranger.await.unwrap(), Err(Error::NotFound(_))));
    assert!(matches!(nowhere.await.unwrap(), Err(Error::NotFound(_))));
    for (i, conv) in convs.iter().enumerate() {
        let events = s.b.events_after(&conv.id, 0, 100).await.unwrap();
        let count = if i == 0 { 6 } else { 5 };
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=count).collect::<Vec<i64>>());
        let mut ids: Vec<_> = events.iter().map(|e| e.client_id.clone().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count as usize, "each message once: {ids:?}");
        assert_eq!(s.a.conversation(&conv.id).await.unwrap().unwrap().last_seq, count);
    }
    assert_eq!(s.a.conversation(&closed.id).await.unwrap().unwrap().last_seq, 1, "only its close");
}

async fn concurrent_routing_assigns_each_conversation_once_within_limits(s: Backend) {
    const AGENTS: usize = 4;
    const LIMIT: i64 = 3;
    const CONVS: usize = 30;
    let (site, agents) = site_with_agents(s.a.as_ref(), AGENTS, LIMIT).await;
    let mut convs = Vec::new();
    for _ in 0..CONVS {
        convs.push(queued_conversation(s.a.as_ref(), &site).await.id);
    }
    // Every conversation is offered to every agent, from both "nodes", at once.
    let mut tasks = Vec::new();
    for conv in &convs {
        for (i, agent) in agents.iter().enumerate() {
            for store in [s.a.clone(), s.b.clone()] {
                let (conv, agent) = (conv.clone(), agent.clone());
                tasks.push(tokio::spawn(async move {
                    let change = Change::Assign {
                        agent_id: agent.clone(),
                        agent_name: format!("Agent {i}"),
                        by: Author::system(),
                        limit: Some(LIMIT),
                        only_if_unassigned: true,
                    };
                    match store.apply(&conv, change).await {
                        Ok(_) => Some((conv, agent)),
                        Err(Error::Conflict(_)) => None,
                        Err(e) => panic!("unexpected error: {e:?}"),
                    }
                }));
            }
        }
    }
    let mut won: Vec<(String, String)> = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    let mut per_conv: HashMap<&str, usize> = HashMap::new();
    let mut per_agent: HashMap<&str, i64> = HashMap::new();
    for (conv, agent) in &won {
        *per_conv.entry(conv).or_default() += 1;
        *per_agent.entry(agent).or_default() += 1;
    }
    assert!(per_conv.values().all(|n| *n == 1), "no conversation assigned twice: {per_conv:?}");
    assert!(per_agent.values().all(|n| *n <= LIMIT), "limits respected: {per_agent:?}");
    assert_eq!(won.len(), AGENTS * LIMIT as usize, "every free slot was used");
    for conv in &convs {
        let assigned = s.a.events_after(conv, 0, 100).await.unwrap().iter().filter(|e| e.kind == "assigned").count();
        assert!(assigned <= 1, "one assigned event per conversation");
    }
    for agent in &agents {
        let active =
            s.b.conversations(
                &site.id,
                ConversationFilter {
                    agent_id: Some(agent.clone()),
                    status: Some(ConversationStatus::Active),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(active.len() as i64, LIMIT);
    }
    let candidates = s.a.routing_candidates(&s.a.groups(&site.id).await.unwrap()[0].id).await.unwrap();
    assert!(candidates.iter().all(|c| c.active_chats == LIMIT));
}

async fn conversation_rules_refuse_what_they_should(s: Backend) {
    let (site, agents) = site_with_agents(s.a.as_ref(), 2, 5).await;
    let conv = queued_conversation(s.a.as_ref(), &site).await;
    let visitor = Author::visitor(&conv.visitor_id);
    s.a.apply(&conv.id, message(visitor.clone(), "m1")).await.unwrap();
    let assign = |agent: &str, only: bool| Change::Assign {
        agent_id: agent.into(),
        agent_name: "A".into(),
        by: Author::system(),
        limit: None,
        only_if_unassigned: only,
    };
    let applied = s.a.apply(&conv.id, assign(&agents[0], true)).await.unwrap();
    assert_eq!(applied.conversation.status, ConversationStatus::Active);
    assert!(matches!(s.b.apply(&conv.id, assign(&agents[1], true)).await, Err(Error::Conflict(_))));
    assert!(matches!(s.b.apply(&conv.id, assign(&agents[0], false)).await, Err(Error::Conflict(_))));
    let moved = s.b.apply(&conv.id, assign(&agents[1], false)).await.unwrap();
    assert_eq!(moved.previous_agent.as_deref(), Some(agents[0].as_str()));
    // Guards: the old agent may no longer write, the new one may; another
    // site never learns the conversation exists.
    let as_agent = |i: usize| Guard::AssignedAgent { site_id: site.id.clone(), agent_id: agents[i].clone() };
    let reply = |id: &str| message(Author::agent(id), "guarded");
    assert!(matches!(s.a.apply_guarded(&conv.id, as_agent(0), reply(&agents[0])).await, Err(Error::Forbidden(_))));
    s.a.apply_guarded(&conv.id, as_agent(1), reply(&agents[1])).await.unwrap();
    let stranger = Guard::Visitor { site_id: "other-site".into(), visitor_id: conv.visitor_id.clone() };
    assert!(matches!(s.b.apply_guarded(&conv.id, stranger, reply("x")).await, Err(Error::NotFound(_))));
    assert!(matches!(s.a.apply(&conv.id, assign("no-such-agent", false)).await, Err(Error::NotFound(_))));
    // Read receipts: only forward, never beyond the end.
    let read = s.a.apply(&conv.id, Change::Read { reader: visitor.clone(), up_to: 2 }).await.unwrap();
    assert!(!read.duplicate);
    assert!(s.a.apply(&conv.id, Change::Read { reader: visitor.clone(), up_to: 1 }).await.unwrap().duplicate);
    assert!(matches!(
        s.a.apply(&conv.id, Change::Read { reader: visitor.clone(), up_to: 99 }).await,
        Err(Error::BadRequest(_))
    ));
    // Group transfer puts it back in the queue without an agent.
    let group = s.a.groups(&site.id).await.unwrap().remove(0);
    let back = s
        .a
        .apply(&conv.id, Change::TransferToGroup { group_id: group.id, group_name: group.name, by: Author::system() })
        .await
        .unwrap();
    assert_eq!((back.conversation.status, back.conversation.agent_id), (ConversationStatus::Queued, None));
    s.b.apply(&conv.id, Change::Close { by: Author::system() }).await.unwrap();
    assert!(matches!(s.a.apply(&conv.id, message(visitor.clone(), "late")).await, Err(Error::Conflict(_))));
    assert!(matches!(s.a.apply(&conv.id, Change::Close { by: Author::system() }).await, Err(Error::Conflict(_))));
    assert!(matches!(s.a.apply("no-such-conv", message(visitor, "x")).await, Err(Error::NotFound(_))));
    let seqs: Vec<i64> = s.a.events_after(&conv.id, 0, 100).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "refusals leave no gap");
}

async fn meta_init_keeps_the_first_value(s: Backend) {
    let (x, y) = tokio::join!(s.a.meta_init("token_key", "from-a"), s.b.meta_init("token_key", "from-b"));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x, y, "both nodes end up with one key");
    assert_eq!(s.a.meta_get("token_key").await.unwrap(), Some(x));
    assert_eq!(s.a.meta_get("missing").await.unwrap(), None);
}

async fn meta_set_replaces_the_value(s: Backend) {
    s.a.meta_set("probe", "one").await.unwrap();
    s.b.meta_set("probe", "two").await.unwrap();
    assert_eq!(s.a.meta_get("probe").await.unwrap().as_deref(), Some("two"));
    assert_eq!(s.b.meta_init("probe", "three").await.unwrap(), "two", "meta_init keeps a set value");
}

async fn the_status_probe_is_never_listed_grouped_or_routed(s: Backend) {
    let (site, people) = site_with_agents(s.a.as_ref(), 1, 5).await;
    let probe =
        s.a.create_agent(NewAgent {
            site_id: &site.id,
            email: &format!("status-probe-{}@holdfast.invalid", site.id),
            name: "Status probe",
            role: Role::Probe,
            password_hash: "x",
            chat_limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(s.b.agent(&probe.id).await.unwrap().unwrap().role, Role::Probe, "the schema takes the role");
    assert_eq!(s.b.agent_by_email(&probe.email).await.unwrap().unwrap().id, probe.id, "it can log in");
    let listed: Vec<String> = s.b.agents(&site.id).await.unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(listed, people, "people only");
    let group = s.a.groups(&site.id).await.unwrap().into_iter().find(|g| g.is_default).unwrap();
    assert_eq!(s.b.group_members(&group.id).await.unwrap(), people, "not put in the default group");
    // Even put in a group and online, routing never sees it.
    s.a.add_agent_to_group(&probe.id, &group.id).await.unwrap();
    s.a.set_availability(&probe.id, Availability::Online).await.unwrap();
    let candidates: Vec<String> =
        s.b.routing_candidates(&group.id).await.unwrap().into_iter().map(|c| c.agent_id).collect();
    assert_eq!(candidates, people);
}

async fn an_operator_is_stored_listed_grouped_and_routed_like_an_admin(s: Backend) {
    let (site, mut people) = site_with_agents(s.a.as_ref(), 1, 5).await;
    let operator =
        s.a.create_agent(NewAgent {
            site_id: &site.id,
            email: &format!("ops-{}@example.com", site.id),
            name: "Ops",
            role: Role::Operator,
            password_hash: "x",
            chat_limit: 5,
        })
        .await
        .unwrap();
    assert_eq!(s.b.agent(&operator.id).await.unwrap().unwrap().role, Role::Operator, "the schema takes the role");
    people.push(operator.id.clone());
    let mut listed: Vec<String> = s.b.agents(&site.id).await.unwrap().into_iter().map(|a| a.id).collect();
    listed.sort();
    people.sort();
    assert_eq!(listed, people, "one of the site's people");
    let group = s.a.groups(&site.id).await.unwrap().into_iter().find(|g| g.is_default).unwrap();
    assert!(s.b.group_members(&group.id).await.unwrap().contains(&operator.id), "in the default group");
    s.a.set_availability(&operator.id, Availability::Online).await.unwrap();
    let candidates: Vec<String> =
        s.b.routing_candidates(&group.id).await.unwrap().into_iter().map(|c| c.agent_id).collect();
    assert!(candidates.contains(&operator.id), "routed to like an admin");
    // And back: the role is an ordinary column value.
    let demote = holdfast_server::store::AgentUpdate { role: Some(Role::Admin), ..Default::default() };
    s.a.update_agent(&operator.id, demote).await.unwrap();
    assert_eq!(s.b.agent(&operator.id).await.unwrap().unwrap().role, Role::Admin);
}

async fn sessions_agents_visitors_and_admin_data_round_trip(s: Backend) {
    let (site, agents) = site_with_agents(s.a.as_ref(), 1, 5).await;
    let agent = s.b.agent(&agents[0]).await.unwrap().unwrap();
    assert_eq!((agent.availability, agent.active, agent.role), (Availability::Online, true, Role::Agent));
    assert_eq!(s.b.agent_by_email(&agent.email).await.unwrap().unwrap().id, agent.id);
    let dup = s.a.create_agent(NewAgent {
        site_id: &site.id,
        email: &agent.email,
        name: "Twin",
        role: Role::Agent,
        password_hash: "x",
        chat_limit: 1,
    });
    assert!(matches!(dup.await, Err(Error::Conflict(_))));
    s.a.update_agent(
        &agent.id,
        holdfast_server::store::AgentUpdate { name: Some("Renamed".into()), active: Some(false), ..Default::default() },
    )
    .await
    .unwrap();
    let agent = s.b.agent(&agent.id).await.unwrap().unwrap();
    assert_eq!((agent.name.as_str(), agent.active), ("Renamed", false));
    assert_eq!(s.a.agents(&site.id).await.unwrap().len(), 1);

    let session = s.a.create_session(&agent.id, "hash-1", i64::MAX / 2).await.unwrap();
    assert_eq!(s.b.session_by_secret_hash("hash-1").await.unwrap().unwrap().id, session.id);
    s.b.touch_session(&session.id, session.last_used_at + 1000).await.unwrap();
    s.b.touch_session(&session.id, 1).await.unwrap();
    assert_eq!(s.a.session(&session.id).await.unwrap().unwrap().last_used_at, session.last_used_at + 1000);
    let other = s.a.create_session(&agent.id, "hash-2", i64::MAX / 2).await.unwrap();
    s.a.revoke_session(&session.id, 5).await.unwrap();
    s.a.revoke_session(&session.id, 9).await.unwrap();
    assert_eq!(s.b.session(&session.id).await.unwrap().unwrap().revoked_at, Some(5), "first revocation stands");
    assert_eq!(s.b.revoke_agent_sessions(&agent.id, 7).await.unwrap(), vec![other.id]);

    let visitor =
        s.a.create_visitor(&site.id, VisitorUpdate { name: Some("Ann".into()), ..Default::default() }).await.unwrap();
    s.b.update_visitor(&visitor.id, VisitorUpdate { email: Some("ann@example.com".into()), ..Default::default() })
        .await
        .unwrap();
    let visitor = s.a.visitor(&visitor.id).await.unwrap().unwrap();
    assert_eq!((visitor.name.as_deref(), visitor.email.as_deref()), (Some("Ann"), Some("ann@example.com")));

    let group = s.a.create_group(&site.id, "Sales", false).await.unwrap();
    s.a.add_agent_to_group(&agent.id, &group.id).await.unwrap();
    s.b.add_agent_to_group(&agent.id, &group.id).await.unwrap();
    assert_eq!(s.b.group_members(&group.id).await.unwrap(), vec![agent.id.clone()]);
    assert!(s.b.groups(&site.id).await.unwrap()[0].is_default, "the default group first");
    assert_eq!(s.a.group(&group.id).await.unwrap().unwrap().name, "Sales");

    s.a.set_site_settings(&site.id, &serde_json::json!({"color": "#123456"})).await.unwrap();
    assert_eq!(s.b.site(&site.id).await.unwrap().unwrap().settings["color"], "#123456");
    assert_eq!(s.b.site_by_widget_key(&site.widget_key).await.unwrap().unwrap().id, site.id);
    let canned = s.a.create_canned_response(&site.id, "hi", "Hello!").await.unwrap();
    assert!(matches!(s.b.create_canned_response(&site.id, "hi", "Again").await, Err(Error::Conflict(_))));
    assert_eq!(s.b.canned_responses(&site.id).await.unwrap().len(), 1);
    assert!(!s.a.delete_canned_response("other-site", &canned.id).await.unwrap());
    assert!(s.a.delete_canned_response(&site.id, &canned.id).await.unwrap());
    assert!(s.b.canned_responses(&site.id).await.unwrap().is_empty());
}

async fn search_queue_and_filters(s: Backend) {
    let (site, _) = site_with_agents(s.a.as_ref(), 0, 1).await;
    let first = queued_conversation(s.a.as_ref(), &site).await;
    let second = queued_conversation(s.b.as_ref(), &site).await;
    let v = Author::visitor(&first.visitor_id);
    s.a.apply(
        &first.id,
        Change::Message {
            author: v.clone(),
            client_id: "1".into(),
            body: "Where is my ORDER?".into(),
            attachments: vec![],
            integration: None,
        },
    )
    .await
    .unwrap();
    s.a.apply(
        &first.id,
        Change::Message {
            author: v,
            client_id: "2".into(),
            body: "100% sure_of_it".into(),
            attachments: vec![],
            integration: None,
        },
    )
    .await
    .unwrap();
    let find = |site: &str, q: &str| {
        let words = q.split_whitespace().map(str::to_owned).collect();
        let search = ChatSearch { words, limit: 10, ..Default::default() };
        let (store, site) = (s.b.clone(), site.to_owned());
        async move { store.search_chats(&site, search).await.unwrap() }
    };
    let hits = find(&site.id, "order").await;
    assert_eq!(hits.len(), 1, "case-insensitive");
    assert_eq!(hits[0].conversation_id, first.id);
    assert_eq!(hits[0].snippet.as_ref().unwrap().text, "Where is my ORDER?");
    assert_eq!(find(&site.id, "100%").await.len(), 1);
    assert!(find(&site.id, "0_%s").await.is_empty(), "wildcards are literal");
    assert!(find(&site.id, "order nowhere").await.is_empty(), "every word");
    assert!(find("other", "order").await.is_empty());
    let queue: Vec<String> = s.b.queue(&site.id).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(queue, vec![first.id.clone(), second.id.clone()], "oldest first");
    let mine =
        s.a.conversations(
            &site.id,
            ConversationFilter { visitor_id: Some(second.visitor_id.clone()), limit: 10, ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    let closed =
        s.a.conversations(
            &site.id,
            ConversationFilter { status: Some(ConversationStatus::Closed), limit: 10, ..Default::default() },
        )
        .await
        .unwrap();
    assert!(closed.is_empty());
}

async fn injected_faults_fail_every_call_until_cleared(s: Backend) {
    let (site, _) = site_with_agents(s.a.as_ref(), 0, 1).await;
    let conv = queued_conversation(s.a.as_ref(), &site).await;
    s.a.faults().set(FaultMode::Fail);
    assert!(matches!(s.a.ping().await, Err(Error::Store(_))));
    assert!(matches!(s.a.sites().await, Err(Error::Store(_))));
    assert!(matches!(s.a.apply(&conv.id, message(Author::system(), "x")).await, Err(Error::Store(_))));
    assert!(matches!(s.a.canned_responses(&site.id).await, Err(Error::Store(_))));
    assert!(matches!(s.a.meta_set("probe", "x").await, Err(Error::Store(_))));
    s.a.faults().set(FaultMode::Ok);
    s.a.ping().await.unwrap();
    assert_eq!(s.a.apply(&conv.id, message(Author::system(), "x")).await.unwrap().event.seq, 1);
}

/// A plain connection to the SQLite file of a data dir.
async fn raw_sqlite(dir: &std::path::Path) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("holdfast.db"));
    sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap()
}

/// Migration 0004 rebuilds SQLite's `agents` table (to allow the probe
/// role) with foreign keys off: run it again over a data dir with agents,
/// sessions and an assigned chat, as an upgrade would, and every row and
/// reference is still there.
#[tokio::test]
async fn the_sqlite_probe_role_migration_keeps_agents_and_what_refers_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let (site, agents) = site_with_agents(&store, 2, 5).await;
    let session = store.create_session(&agents[0], "hash-1", i64::MAX / 2).await.unwrap();
    let conv = queued_conversation(&store, &site).await;
    let by = Author::system();
    let assign = Change::Assign {
        agent_id: agents[0].clone(),
        agent_name: "A".into(),
        by,
        limit: None,
        only_if_unassigned: true,
    };
    store.apply(&conv.id, assign).await.unwrap();
    store.close().await;

    let db = raw_sqlite(dir.path()).await;
    // Later migrations that add columns to the rebuilt table run again after it.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version IN (4, 20, 40)").execute(&db).await.unwrap();
    db.close().await;

    let store = SqliteStore::open(dir.path()).await.unwrap();
    let listed: Vec<String> = store.agents(&site.id).await.unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(listed, agents);
    assert_eq!(store.session(&session.id).await.unwrap().unwrap().agent_id, agents[0]);
    assert_eq!(store.conversation(&conv.id).await.unwrap().unwrap().agent_id.as_deref(), Some(agents[0].as_str()));
    let group = store.groups(&site.id).await.unwrap().remove(0);
    assert_eq!(store.group_members(&group.id).await.unwrap().len(), 2);
    // The writer connection that ran the migration enforces foreign keys again.
    let orphan = store
        .create_agent(NewAgent {
            site_id: "no-such-site",
            email: "orphan@example.com",
            name: "Orphan",
            role: Role::Agent,
            password_hash: "x",
            chat_limit: 1,
        })
        .await;
    assert!(matches!(orphan, Err(Error::NotFound("site"))), "{orphan:?}");
    store.close().await;
    let db = raw_sqlite(dir.path()).await;
    let dangling = sqlx::query("PRAGMA foreign_key_check").fetch_all(&db).await.unwrap();
    assert!(dangling.is_empty(), "{} rows refer to nothing", dangling.len());
    db.close().await;
}

/// Migration 0011 rebuilds SQLite's `agents` table again (to allow the
/// operator role) and makes the first start's admin the operator: run it
/// again over a data dir as an upgrade would, and the rows and what refers
/// to them are kept, the first-run admin runs the installation and no
/// other admin does.
#[tokio::test]
async fn the_sqlite_operator_migration_keeps_agents_and_promotes_the_first_run_admin() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let (site, agents) = site_with_agents(&store, 1, 5).await;
    let admin = |email: &'static str| NewAgent {
        site_id: &site.id,
        email,
        name: "Admin",
        role: Role::Admin,
        password_hash: "x",
        chat_limit: 5,
    };
    let first_run = store.create_agent(admin("admin@holdfast.local")).await.unwrap();
    let other = store.create_agent(admin("boss@example.com")).await.unwrap();
    let session = store.create_session(&first_run.id, "hash-1", i64::MAX / 2).await.unwrap();
    store.close().await;

    let db = raw_sqlite(dir.path()).await;
    // Later migrations that add columns to the rebuilt table run again after it.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version IN (11, 20, 40)").execute(&db).await.unwrap();
    db.close().await;

    let store = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(store.agent(&first_run.id).await.unwrap().unwrap().role, Role::Operator);
    assert_eq!(store.agent(&other.id).await.unwrap().unwrap().role, Role::Admin);
    assert_eq!(store.agent(&agents[0]).await.unwrap().unwrap().role, Role::Agent);
    assert_eq!(store.session(&session.id).await.unwrap().unwrap().agent_id, first_run.id);
    let group = store.groups(&site.id).await.unwrap().remove(0);
    assert_eq!(store.group_members(&group.id).await.unwrap().len(), 3);
    store.close().await;
    let db = raw_sqlite(dir.path()).await;
    let dangling = sqlx::query("PRAGMA foreign_key_check").fetch_all(&db).await.unwrap();
    assert!(dangling.is_empty(), "{} rows refer to nothing", dangling.len());
    db.close().await;
}

/// The SQLite WAL is copied back into the database file beside the writer
/// (the checkpointer thread), long before the writer's own checkpoint, which
/// waits for ~40 MiB of WAL, would run: about 2 MB of messages reach the
/// database file while the store stays open.
#[tokio::test]
async fn the_sqlite_wal_is_checkpointed_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let (site, _) = site_with_agents(store.as_ref(), 0, 1).await;
    let conv = queued_conversation(store.as_ref(), &site).await;
    let db = dir.path().join("holdfast.db");
    let before = std::fs::metadata(&db).unwrap().len();
    for chunk in 0..10 {
        let writes = (0..200).map(|i| {
            let (store, conv) = (store.clone(), conv.id.clone());
            let change = Change::Message {
                author: Author::visitor("v"),
                client_id: format!("c{chunk}-{i}"),
                body: "x".repeat(1000),
                attachments: Vec::new(),
                integration: None,
            };
            async move { store.apply(&conv, change).await }
        });
        for applied in futures_util::future::join_all(writes).await {
            applied.unwrap();
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let grown = std::fs::metadata(&db).unwrap().len() - before;
        if grown >= 1_900_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the database file grew by only {grown} bytes");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.close().await;
}
