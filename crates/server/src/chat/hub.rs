//! The hub: which sockets are connected to this node, and delivery of
//! envelopes to them. It never blocks on a socket: each connection has a
//! small bounded queue, and a connection too slow to drain it is told to
//! go (it resumes from its cursor and loses nothing).
//!
//! It also knows agent presence: an agent counts as present while
//! connected and for a grace period after the last socket closed, so a
//! network blip does not make routing think the agent has left. In a
//! cluster, each node's heartbeat on the bus lists the agents present there
//! ([`Hub::note_remote_presence`]); a node whose heartbeats stop counts as
//! lost, its agents linger for the grace period like any disconnect, and
//! every local socket is asked to re-read its conversations from the store
//! ([`Hub::request_resync`]) in case the lost node committed events it
//! never got to publish.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::sync::{Notify, watch};

use crate::bus::{Audience, BusSink, Envelope};

/// Frames a connection may have waiting before it counts as too slow.
pub const CONNECTION_QUEUE: usize = 256;

pub type ConnId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Agent { agent_id: String, session_id: String },
    Visitor { visitor_id: String },
}

struct Conn {
    site_id: String,
    principal: Principal,
    mailbox: Arc<Mailbox>,
}

/// Why a connection is told to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Its queue overflowed: reconnect now and resume.
    SlowConsumer = 1,
    /// The node is shutting down: reconnect (elsewhere) after a jittered delay.
    Drain = 2,
    /// Fault injection: drop the socket without a word, as a network blip would.
    Cut = 3,
}

/// A connection's bounded queue of envelopes, and its kick: what the hub
/// leaves for one socket's task, which alone takes from it. Every idle
/// socket keeps one, so it is one small allocation (about 100 bytes)
/// with a waker for its task: tokio's `mpsc` channel it replaces was a
/// 128-byte aligned allocation of about 500 bytes and a first block of 32
/// slots, 280 more, before any message (`docs/benchmarks.md`, idle
/// sockets).
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<VecDeque<Arc<Envelope>>>,
    /// The socket's task, waiting for an envelope or a kick.
    waker: AtomicWaker,
    /// Why it must close (a `KickReason`), or 0; the first reason set wins.
    kicked: AtomicU8,
}

/// A queue that grew for a burst gives its memory back once drained
/// beyond this many slots.
const KEPT_SLOTS: usize = 8;

impl Mailbox {
    /// Leave `envelope`, unless `CONNECTION_QUEUE` are already waiting.
    fn post(&self, envelope: Arc<Envelope>) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= CONNECTION_QUEUE {
            return false;
        }
        queue.push_back(envelope);
        drop(queue);
        self.waker.wake();
        true
    }

    fn kick(&self, reason: KickReason) {
        let _ = self.kicked.compare_exchange(0, reason as u8, Ordering::Relaxed, Ordering::Relaxed);
        self.waker.wake();
    }

    /// The next envelope waiting, if any.
    pub fn try_recv(&self) -> Option<Arc<Envelope>> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let envelope = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEPT_SLOTS {
            *queue = VecDeque::new();
        }
        envelope
    }

    /// The next envelope, when one is left.
    pub async fn recv(&self) -> Arc<Envelope> {
        self.ready(|m| m.try_recv()).await
    }

    /// Why the connection must close, when it must.
    pub async fn kicked(&self) -> KickReason {
        self.ready(|m| match m.kicked.load(Ordering::Relaxed) {
            0 => None,
            2 => Some(KickReason::Drain),
            3 => Some(KickReason::Cut),
            _ => Some(KickReason::SlowConsumer),
        })
        .await
    }

    /// `take`'s answer once it has one. The waker is registered before
    /// the second look, so a post or kick between the two is not missed.
    async fn ready<T>(&self, take: impl Fn(&Self) -> Option<T>) -> T {
        std::future::poll_fn(|cx| {
            if let Some(found) = take(self) {
                return Poll::Ready(found);
            }
            self.waker.register(cx.waker());
            take(self).map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }
}

#[derive(Default)]
struct Index {
    conns: HashMap<ConnId, Conn>,
    by_agent: HashMap<String, Vec<ConnId>>,
    by_visitor: HashMap<String, Vec<ConnId>>,
    by_session: HashMap<String, Vec<ConnId>>,
    /// Every socket of a site, as sets: a site holds thousands, and
    /// removing one from a list was a walk of the whole site under the
    /// write lock (a blip's 18,000 closes took seconds).
    site_agents: HashMap<String, HashSet<ConnId>>,
    site_visitors: HashMap<String, HashSet<ConnId>>,
    /// When each agent's last socket on this node closed.
    agent_left_at: HashMap<String, Instant>,
}

/// A registered connection: its id, and the mailbox the hub fills.
pub struct Registration {
    pub id: ConnId,
    /// For an agent: whether they were already present (connected on this
    /// node, or gone for less than the grace period). A resume after a blip
    /// changes nobody's presence.
    pub was_present: bool,
    pub mailbox: Arc<Mailbox>,
}

/// What one other node last said about its agents.
struct RemoteNode {
    heard_at: Instant,
    agents: HashSet<String>,
    /// Its silence was already reported as a loss.
    lost: bool,
    /// The envelopes it said it dropped, as of the last re-read they caused.
    dropped: u64,
}

/// The least time between two re-reads caused by another node's drops: a
/// node dropping on every beat (overloaded) must not make every socket
/// read the store every second. Drops in between are caught up at the next.
const DROP_RESYNC_EVERY: Duration = Duration::from_secs(2);

pub struct Hub {
    index: RwLock<Index>,
    /// Other nodes' heartbeats, by node id.
    remote: RwLock<HashMap<String, RemoteNode>>,
    /// Silence after which another node counts as lost (a few heartbeats).
    remote_ttl: Duration,
    /// Bumped when sockets must re-read their conversations from the store.
    resync: watch::Sender<u64>,
    /// When another node's drops last made sockets re-read.
    last_drop_resync: std::sync::Mutex<Option<Instant>>,
    /// Woken when this node's set of present agents changed, so the
    /// heartbeat goes out now rather than at the next tick.
    pub presence_dirty: Notify,
    /// Agents whose presence on another node began or ended, not yet acted
    /// on (their queues may now route; visitors may need telling).
    remote_changes: std::sync::Mutex<Vec<String>>,
    /// Woken when `remote_changes` gets entries.
    pub remote_presence_changed: Notify,
    next_id: AtomicU64,
    presence_grace: Duration,
    /// Set when the node is shutting down: kicked sockets are told to
    /// reconnect elsewhere rather than that they were too slow.
    draining: AtomicBool,
}

fn push(map: &mut HashMap<String, Vec<ConnId>>, key: &str, id: ConnId) {
    map.entry(key.to_owned()).or_default().push(id);
}

fn join_site(map: &mut HashMap<String, HashSet<ConnId>>, key: &str, id: ConnId) {
    map.entry(key.to_owned()).or_default().insert(id);
}

fn leave_site(map: &mut HashMap<String, HashSet<ConnId>>, key: &str, id: ConnId) {
    if let Some(ids) = map.get_mut(key)
        && ids.remove(&id)
        && ids.is_empty()
    {
        map.remove(key);
    }
}

fn remove(map: &mut HashMap<String, Vec<ConnId>>, key: &str, id: ConnId) -> bool {
    let mut now_empty = false;
    if let Some(ids) = map.get_mut(key) {
        ids.retain(|c| *c != id);
        now_empty = ids.is_empty();
    }
    if now_empty {
        map.remove(key);
    }
    now_empty
}

impl Hub {
    pub fn new(presence_grace: Duration) -> Self {
        Hub {
            index: RwLock::new(Index::default()),
            remote: RwLock::default(),
            remote_ttl: Duration::from_secs(3),
            resync: watch::channel(0).0,
            last_drop_resync: std::sync::Mutex::default(),
            presence_dirty: Notify::new(),
            remote_changes: Default::default(),
            remote_presence_changed: Notify::new(),
            next_id: AtomicU64::new(1),
            presence_grace,
            draining: AtomicBool::new(false),
        }
    }

    pub fn register(&self, site_id: &str, principal: Principal) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        let mut ix = self.index.write().unwrap_or_else(|p| p.into_inner());
        let mut was_present = false;
        match &principal {
            Principal::Agent { agent_id, session_id } => {
                was_present = ix.by_agent.contains_key(agent_id)
                    || ix.agent_left_at.get(agent_id).is_some_and(|t| t.elapsed() < self.presence_grace);
                if !was_present {
                    // The heartbeat tells the other nodes now, not at the next tick.
                    self.presence_dirty.notify_one();
                }
                push(&mut ix.by_agent, agent_id, id);
                push(&mut ix.by_session, session_id, id);
                join_site(&mut ix.site_agents, site_id, id);
                ix.agent_left_at.remove(agent_id);
                metrics::gauge!("holdfast_connections", "kind" => "agent").increment(1.0);
            }
            Principal::Visitor { visitor_id } => {
                push(&mut ix.by_visitor, visitor_id, id);
                join_site(&mut ix.site_visitors, site_id, id);
                metrics::gauge!("holdfast_connections", "kind" => "visitor").increment(1.0);
            }
        }
        ix.conns.insert(id, Conn { site_id: site_id.to_owned(), principal, mailbox: mailbox.clone() });
        Registration { id, was_present, mailbox }
    }

    pub fn unregister(&self, id: ConnId) {
        let mut ix = self.index.write().unwrap_or_else(|p| p.into_inner());
        let Some(conn) = ix.conns.remove(&id) else { return };
        match &conn.principal {
            Principal::Agent { agent_id, session_id } => {
                if remove(&mut ix.by_agent, agent_id, id) {
                    ix.agent_left_at.insert(agent_id.clone(), Instant::now());
                }
                remove(&mut ix.by_session, session_id, id);
                leave_site(&mut ix.site_agents, &conn.site_id, id);
                metrics::gauge!("holdfast_connections", "kind" => "agent").decrement(1.0);
            }
            Principal::Visitor { visitor_id } => {
                remove(&mut ix.by_visitor, visitor_id, id);
                leave_site(&mut ix.site_visitors, &conn.site_id, id);
                metrics::gauge!("holdfast_connections", "kind" => "visitor").decrement(1.0);
            }
        }
    }

    /// Connected here or on another live node, or gone for less than the
    /// grace period.
    pub fn agent_present(&self, agent_id: &str) -> bool {
        self.with_presence(|present| present(agent_id))
    }

    /// Run `f` with a presence test that holds the hub's locks once, for
    /// questions about many agents at a time (a site's "anyone online?",
    /// a routing plan over a group of thousands).
    pub fn with_presence<R>(&self, f: impl FnOnce(&dyn Fn(&str) -> bool) -> R) -> R {
        let ix = self.index.read().unwrap_or_else(|p| p.into_inner());
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        let fresh = self.remote_ttl + self.presence_grace;
        f(&|agent_id: &str| {
            ix.by_agent.contains_key(agent_id)
                || ix.agent_left_at.get(agent_id).is_some_and(|t| t.elapsed() < self.presence_grace)
                || remote.values().any(|n| n.heard_at.elapsed() < fresh && n.agents.contains(agent_id))
        })
    }

    /// Agents present on this node (connected, or within the grace period),
    /// for the heartbeat. Forgets those whose grace has run out.
    pub fn present_agents(&self) -> Vec<String> {
        let mut ix = self.index.write().unwrap_or_else(|p| p.into_inner());
        let grace = self.presence_grace;
        ix.agent_left_at.retain(|_, t| t.elapsed() < grace);
        ix.by_agent.keys().chain(ix.agent_left_at.keys()).cloned().collect()
    }

    /// Another node's heartbeat. A node heard again after it was counted
    /// as lost (its bus link was cut, not the node) may have committed
    /// events the others never heard of, and so may a node whose count of
    /// dropped envelopes grew: sockets re-read the store.
    pub fn note_remote_presence(&self, node_id: &str, agents: Vec<String>, dropped: u64) {
        let agents: HashSet<String> = agents.into_iter().collect();
        let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
        let previous = remote.get(node_id);
        let changed: Vec<String> = match previous {
            Some(before) => before.agents.symmetric_difference(&agents).cloned().collect(),
            None => agents.iter().cloned().collect(),
        };
        let was_lost = previous.is_some_and(|n| n.lost);
        // A restarted node counts from zero again: take its count as it is.
        let seen = previous.map_or(dropped, |n| if dropped < n.dropped { dropped } else { n.dropped });
        let mut last_drop_resync = self.last_drop_resync.lock().unwrap_or_else(|p| p.into_inner());
        let drops_to_read = dropped > seen && last_drop_resync.is_none_or(|t| t.elapsed() >= DROP_RESYNC_EVERY);
        if drops_to_read {
            *last_drop_resync = Some(Instant::now());
        }
        drop(last_drop_resync);
        let dropped_seen = if drops_to_read { dropped } else { seen };
        remote.insert(
            node_id.to_owned(),
            RemoteNode { heard_at: Instant::now(), agents, lost: false, dropped: dropped_seen },
        );
        drop(remote);
        if !changed.is_empty() {
            self.remote_changes.lock().unwrap_or_else(|p| p.into_inner()).extend(changed);
            self.remote_presence_changed.notify_one();
        }
        if was_lost {
            tracing::info!(node_id, "a lost node is back: sockets re-read their conversations");
            self.request_resync();
        } else if drops_to_read {
            tracing::warn!(node_id, dropped, "another node dropped envelopes: sockets re-read their conversations");
            self.request_resync();
        }
    }

    /// Set how long another node may be silent before it counts as lost.
    pub fn set_remote_ttl(&mut self, ttl: Duration) {
        self.remote_ttl = ttl;
    }

    /// Nodes that fell silent since the last call (each reported once).
    /// Lost nodes are remembered for a while (their agents no longer count
    /// after the grace period), so their return can be noticed.
    pub fn lost_nodes(&self) -> Vec<String> {
        const REMEMBER_LOST: Duration = Duration::from_secs(3600);
        let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
        remote.retain(|_, n| n.heard_at.elapsed() < REMEMBER_LOST);
        let mut lost = Vec::new();
        for (id, n) in remote.iter_mut() {
            if !n.lost && n.heard_at.elapsed() >= self.remote_ttl {
                n.lost = true;
                lost.push(id.clone());
            }
        }
        lost
    }

    /// While this node cannot hear the bus, keep what the others last said
    /// (last known good) instead of declaring every other node lost.
    pub fn keep_remote_presence(&self) {
        let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
        for n in remote.values_mut().filter(|n| !n.lost) {
            n.heard_at = Instant::now();
        }
    }

    /// Agents whose presence elsewhere changed since the last call.
    pub fn take_remote_changes(&self) -> Vec<String> {
        std::mem::take(&mut *self.remote_changes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Ask every socket to re-read its conversations from the store.
    pub fn request_resync(&self) {
        self.resync.send_modify(|n| *n += 1);
    }

    /// Changes when sockets must re-read their conversations.
    pub fn resync_requests(&self) -> watch::Receiver<u64> {
        self.resync.subscribe()
    }

    pub fn agent_connected(&self, agent_id: &str) -> bool {
        let ix = self.index.read().unwrap_or_else(|p| p.into_inner());
        ix.by_agent.contains_key(agent_id)
    }

    /// Number of open sockets (agents, visitors).
    pub fn counts(&self) -> (usize, usize) {
        let ix = self.index.read().unwrap_or_else(|p| p.into_inner());
        let agents = ix.by_session.values().map(Vec::len).sum();
        (agents, ix.conns.len() - agents)
    }

    pub fn presence_grace(&self) -> Duration {
        self.presence_grace
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Tell every connection to reconnect elsewhere (the node is stopping).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.kick_all(KickReason::Drain);
    }

    /// Drop every connection abruptly (fault injection: a network blip).
    pub fn cut_all(&self) -> usize {
        self.kick_all(KickReason::Cut)
    }

    fn kick_all(&self, reason: KickReason) -> usize {
        let ix = self.index.read().unwrap_or_else(|p| p.into_inner());
        for conn in ix.conns.values() {
            conn.mailbox.kick(reason);
        }
        ix.conns.len()
    }

    fn targets(ix: &Index, site_id: &str, audience: &Audience) -> Vec<ConnId> {
        let mut out = Vec::new();
        let mut add = |map: &HashMap<String, Vec<ConnId>>, key: &str| {
            if let Some(ids) = map.get(key) {
                out.extend_from_slice(ids);
            }
        };
        let site = |map: &HashMap<String, HashSet<ConnId>>| map.get(site_id).map(|ids| ids.iter().copied().collect());
        match audience {
            Audience::Conversation { visitor_id, agent_ids } => {
                add(&ix.by_visitor, visitor_id);
                for a in agent_ids {
                    add(&ix.by_agent, a);
                }
            }
            Audience::SiteAgents => return site(&ix.site_agents).unwrap_or_default(),
            Audience::SiteVisitors => return site(&ix.site_visitors).unwrap_or_default(),
            Audience::Agent { agent_id } => add(&ix.by_agent, agent_id),
            Audience::Visitor { visitor_id } => add(&ix.by_visitor, visitor_id),
            Audience::Session { session_id } => add(&ix.by_session, session_id),
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl BusSink for Hub {
    fn deliver(&self, envelope: Arc<Envelope>) {
        if let crate::bus::Payload::Presence { node_id, agents, dropped } = &envelope.payload {
            self.note_remote_presence(node_id, agents.clone(), *dropped);
            return;
        }
        let ix = self.index.read().unwrap_or_else(|p| p.into_inner());
        for id in Self::targets(&ix, &envelope.site_id, &envelope.audience) {
            let Some(conn) = ix.conns.get(&id) else { continue };
            // Tenancy guard: an envelope never crosses to another site's socket.
            if conn.site_id != envelope.site_id {
                continue;
            }
            if !conn.mailbox.post(envelope.clone()) {
                metrics::counter!("holdfast_slow_consumers_total").increment(1);
                conn.mailbox.kick(KickReason::SlowConsumer);
            }
        }
    }
}

#[cfg(test)]
impl Hub {
    /// As if `by` had passed: every time the hub noted (a disconnect, a
    /// node's last heartbeat) moves that far into the past. Tests of the
    /// grace period and a silent node's time to live use it instead of
    /// sleeping through them.
    fn rewind(&self, by: Duration) {
        let earlier = |t: &mut Instant| *t = t.checked_sub(by).expect("the clock goes back that far");
        let mut ix = self.index.write().unwrap_or_else(|p| p.into_inner());
        ix.agent_left_at.values_mut().for_each(earlier);
        let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
        remote.values_mut().for_each(|n| earlier(&mut n.heard_at));
        self.last_drop_resync.lock().unwrap_or_else(|p| p.into_inner()).as_mut().map(earlier);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Payload;

    fn frame(site: &str, audience: Audience) -> Arc<Envelope> {
        Arc::new(Envelope {
            site_id: site.into(),
            audience,
            event: None,
            payload: Payload::Frame { text: "{}".into() },
        })
    }

    #[tokio::test]
    async fn delivers_only_to_the_audience_of_the_same_site() {
        let hub = Hub::new(Duration::from_secs(1));
        let a = hub.register("s1", Principal::Agent { agent_id: "a".into(), session_id: "x".into() });
        let v = hub.register("s1", Principal::Visitor { visitor_id: "v".into() });
        let other = hub.register("s2", Principal::Agent { agent_id: "b".into(), session_id: "y".into() });

        hub.deliver(frame("s1", Audience::Conversation { visitor_id: "v".into(), agent_ids: vec!["a".into()] }));
        hub.deliver(frame("s1", Audience::SiteAgents));
        // Addressed to an agent of s2 but stamped s1: must not cross.
        hub.deliver(frame("s1", Audience::Agent { agent_id: "b".into() }));

        assert!(a.mailbox.try_recv().is_some() && a.mailbox.try_recv().is_some());
        assert!(a.mailbox.try_recv().is_none());
        assert!(v.mailbox.try_recv().is_some());
        assert!(v.mailbox.try_recv().is_none());
        assert!(other.mailbox.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_full_queue_kicks_the_slow_connection() {
        let hub = Hub::new(Duration::from_secs(1));
        let reg = hub.register("s", Principal::Visitor { visitor_id: "v".into() });
        for _ in 0..CONNECTION_QUEUE + 1 {
            hub.deliver(frame("s", Audience::Visitor { visitor_id: "v".into() }));
        }
        let reason = tokio::time::timeout(Duration::from_millis(100), reg.mailbox.kicked()).await.expect("kicked");
        assert_eq!(reason, KickReason::SlowConsumer);
        // What was queued before the kick is still there to deliver.
        assert_eq!((0..CONNECTION_QUEUE).filter(|_| reg.mailbox.try_recv().is_some()).count(), CONNECTION_QUEUE);
        assert!(reg.mailbox.try_recv().is_none());
    }

    /// A task waiting on its mailbox wakes for an envelope left by another
    /// thread and for a kick, and the first kick's reason holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_socket_wakes_for_each_envelope_and_for_its_kick() {
        let hub = Arc::new(Hub::new(Duration::from_secs(1)));
        let reg = hub.register("s", Principal::Visitor { visitor_id: "v".into() });
        let (sender, mailbox) = (hub.clone(), reg.mailbox.clone());
        let sent = std::thread::spawn(move || {
            for _ in 0..10_000 {
                // Never so far ahead that the socket counts as too slow.
                while mailbox.queue.lock().unwrap().len() > CONNECTION_QUEUE / 2 {
                    std::thread::yield_now();
                }
                sender.deliver(frame("s", Audience::Visitor { visitor_id: "v".into() }));
            }
        });
        let within = Duration::from_secs(10);
        for _ in 0..10_000 {
            tokio::time::timeout(within, reg.mailbox.recv()).await.expect("every envelope wakes the socket");
        }
        sent.join().unwrap();
        assert!(reg.mailbox.try_recv().is_none());
        assert_eq!(reg.mailbox.kicked.load(Ordering::Relaxed), 0, "never too slow");
        // Drained after a burst: its memory goes back.
        assert!(reg.mailbox.queue.lock().unwrap().capacity() <= KEPT_SLOTS);
        let kicker = hub.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            kicker.drain();
            kicker.cut_all();
        });
        let reason = tokio::time::timeout(within, reg.mailbox.kicked()).await.expect("woken by the kick");
        assert_eq!(reason, KickReason::Drain);
    }

    #[tokio::test]
    async fn presence_outlives_a_disconnect_for_the_grace_period() {
        let hub = Hub::new(Duration::from_millis(50));
        let reg = hub.register("s", Principal::Agent { agent_id: "a".into(), session_id: "x".into() });
        assert!(hub.agent_present("a"));
        hub.unregister(reg.id);
        assert!(hub.agent_present("a"), "still present within grace");
        assert!(!hub.agent_connected("a"));
        hub.rewind(Duration::from_millis(80));
        assert!(!hub.agent_present("a"), "gone after grace");
    }

    #[tokio::test]
    async fn another_nodes_agents_are_present_until_it_falls_silent() {
        // Time moves by `rewind` (and the test's own microseconds): the
        // margins hold however busy the machine, and no time is slept.
        let mut hub = Hub::new(Duration::from_millis(1000));
        hub.set_remote_ttl(Duration::from_millis(100));
        let mut resync = hub.resync_requests();
        hub.deliver(Arc::new(Envelope {
            site_id: String::new(),
            audience: Audience::SiteAgents,
            event: None,
            payload: crate::bus::Payload::Presence { node_id: "n2".into(), agents: vec!["b".into()], dropped: 0 },
        }));
        assert!(hub.agent_present("b"));
        assert!(!hub.agent_present("c"));
        assert!(hub.lost_nodes().is_empty());
        hub.rewind(Duration::from_millis(150));
        assert!(hub.agent_present("b"), "lingers for the grace period after the node's silence");
        assert_eq!(hub.lost_nodes(), vec!["n2".to_owned()]);
        assert!(hub.lost_nodes().is_empty(), "a loss is reported once");
        hub.request_resync();
        assert!(resync.has_changed().unwrap());
        hub.rewind(Duration::from_millis(1000));
        assert!(!hub.agent_present("b"), "gone after ttl + grace");
        resync.mark_unchanged();
        hub.note_remote_presence("n2", vec!["b".into()], 0);
        assert!(resync.has_changed().unwrap(), "a lost node's return asks sockets to re-read");
        assert!(hub.agent_present("b"));
    }

    #[tokio::test]
    async fn another_nodes_drops_make_sockets_re_read_at_most_every_two_seconds() {
        let hub = Hub::new(Duration::from_millis(1000));
        let mut resync = hub.resync_requests();
        hub.note_remote_presence("n2", vec![], 7);
        assert!(!resync.has_changed().unwrap(), "what it dropped before we heard it was before our sockets");
        hub.note_remote_presence("n2", vec![], 7);
        assert!(!resync.has_changed().unwrap(), "no new drops");
        hub.note_remote_presence("n2", vec![], 9);
        assert!(resync.has_changed().unwrap(), "it dropped two since");
        resync.mark_unchanged();
        hub.note_remote_presence("n2", vec![], 12);
        assert!(!resync.has_changed().unwrap(), "not again within two seconds");
        hub.rewind(DROP_RESYNC_EVERY);
        hub.note_remote_presence("n2", vec![], 12);
        assert!(resync.has_changed().unwrap(), "the drops held back are read at the next beat");
        resync.mark_unchanged();
        hub.rewind(DROP_RESYNC_EVERY);
        hub.note_remote_presence("n2", vec![], 1);
        assert!(!resync.has_changed().unwrap(), "a restarted node counts from zero");
        hub.note_remote_presence("n2", vec![], 2);
        assert!(resync.has_changed().unwrap());
    }
}
