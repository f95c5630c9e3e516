//! A protocol client for rehearsals and benchmarks: one agent or visitor
//! that connects, resumes with cursors after any drop (exponential backoff
//! with full jitter, honouring `reconnect.after_ms`), resends unacknowledged
//! messages with their original client ids, and records what it saw so the
//! orchestrator can count lost and doubled messages. It deliberately does
//! not de-duplicate: a duplicate delivered by the server is counted.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use holdfast_server::store::now_ms;

pub type Ws = WebSocketStream<TcpStream>;

/// Open a WebSocket from a chosen loopback source address (so thousands of
/// clients do not run out of ephemeral ports), with small buffers.
pub async fn connect_ws(server: SocketAddr, source: IpAddr, path: &str) -> anyhow::Result<Ws> {
    connect_ws_for(server, source, path, None).await
}

/// `connect_ws`, the upgrade saying it is forwarded for `client` (which a
/// server trusting loopback as its proxy takes as the client's address).
pub async fn connect_ws_for(
    server: SocketAddr,
    source: IpAddr,
    path: &str,
    client: Option<IpAddr>,
) -> anyhow::Result<Ws> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(server)).await??;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0).max_write_buffer_size(1 << 20);
    let mut request = format!("ws://{server}{path}").into_client_request()?;
    if let Some(client) = client {
        request.headers_mut().insert("x-forwarded-for", client.to_string().parse()?);
    }
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)),
    )
    .await??;
    Ok(ws)
}

/// Full-jitter exponential backoff: a random delay in [0, min(cap, base·2^n)).
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    Duration::from_millis(rand::random_range(0..=ceiling.as_millis().max(1) as u64))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Agent,
    Visitor,
}

/// Switches the orchestrator flips for all clients of a worker.
#[derive(Default)]
pub struct Controls {
    /// Visitors send new messages while this is set.
    pub sending: AtomicBool,
    /// Clients currently past `welcome`.
    pub connected: AtomicUsize,
    /// Everything stops.
    pub stop: AtomicBool,
    /// Wakes every client when `stop` is set (no client polls for it:
    /// 18,000 clients polling would be load the server does not cause).
    pub stopped: tokio::sync::Notify,
}

impl Controls {
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stopped.notify_waiters();
    }
}

/// What one client saw, for the orchestrator's accounting.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ClientReport {
    /// (conv, seq) of this client's messages the server acknowledged.
    pub acked: Vec<(String, i64)>,
    /// (conv, seq) of messages from the other side received (first time).
    pub received: Vec<(String, i64)>,
    /// Message events received again after their seq had been seen.
    pub duplicated: u64,
    /// (sent_at_ms, latency_ms) of messages from the other side.
    pub latencies: Vec<(i64, f64)>,
    /// Times the server refused the credential (a forced re-login).
    pub logouts: u64,
    /// Connections that dropped and were resumed.
    pub resumes: u64,
    /// When the last resume completed (Unix ms), if any.
    pub last_resume_at: Option<i64>,
    /// Per resume, to tell a slow server from clients backing off after
    /// refusals, and a slow cut from a slow reconnect.
    #[serde(default)]
    pub resume_timings: Vec<ResumeTiming>,
    /// Whether the client is connected at report time.
    pub connected: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ResumeTiming {
    /// When the client saw its connection drop (Unix ms).
    pub dropped_at: i64,
    /// From the drop to the welcome.
    pub to_welcome_ms: f64,
    /// The successful attempt alone, from connect to welcome.
    pub attempt_ms: f64,
    /// Attempts it took.
    pub attempts: u32,
    /// Of the attempts before it: why each failed.
    #[serde(default)]
    pub failed: Failures,
}

/// Why attempts to resume failed: no WebSocket (the node was gone, or its
/// upgrade was refused or timed out), a welcome refused as unavailable,
/// or the socket closing before any welcome.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Failures {
    pub connect: u32,
    pub unavailable: u32,
    pub dropped: u32,
}

/// A soak's running totals for all the clients of one worker: what a row
/// per interval needs, in memory that does not grow with the run (a
/// [`ClientReport`] lists every message, too much for minutes at full
/// rate). Shared by the worker's clients; a lock per message is cheap
/// beside a socket write.
#[derive(Default)]
pub struct Tally {
    inner: std::sync::Mutex<TallyInner>,
}

#[derive(Default)]
struct TallyInner {
    interval: IntervalTally,
    /// Per conversation: seqs of this side's messages acknowledged, and of
    /// the other side's received.
    acked: HashMap<String, SeqSet>,
    received: HashMap<String, SeqSet>,
}

/// What one worker's clients saw in one interval.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct IntervalTally {
    /// Messages from the other side received for the first time.
    pub received: u64,
    /// Message events received again after their seq had been seen.
    pub duplicated: u64,
    /// Latency of the messages received, ms → count.
    pub latency_ms: HashMap<u64, u64>,
    /// Per conversation, the highest seq of this side's messages
    /// acknowledged since the run began (a lost message is counted in the
    /// first interval whose mark reaches it).
    pub acked_up_to: HashMap<String, i64>,
}

/// What one worker's clients saw over a whole soak: per conversation,
/// the seqs acknowledged to this side and received from the other, as hex
/// bitmaps (bit n = seq n).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TallySeqs {
    pub acked: HashMap<String, String>,
    pub received: HashMap<String, String>,
}

/// A set of seqs, one bit each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeqSet(Vec<u64>);

impl SeqSet {
    pub fn insert(&mut self, seq: i64) {
        let Ok(n) = usize::try_from(seq) else { return };
        if self.0.len() <= n / 64 {
            self.0.resize(n / 64 + 1, 0);
        }
        self.0[n / 64] |= 1 << (n % 64);
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn contains(&self, seq: i64) -> bool {
        usize::try_from(seq).is_ok_and(|n| self.0.get(n / 64).is_some_and(|w| w & (1 << (n % 64)) != 0))
    }

    /// Seqs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(i, w)| (0..64).filter(move |b| w & (1 << b) != 0).map(move |b| (i * 64 + b) as i64))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|w| format!("{w:016x}")).collect()
    }

    pub fn from_hex(text: &str) -> Option<SeqSet> {
        let words = text.as_bytes().chunks(16).map(|c| u64::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok());
        words.collect::<Option<Vec<u64>>>().map(SeqSet)
    }
}

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, TallyInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn acked(&self, conv: &str, seq: i64) {
        let mut t = self.lock();
        match t.acked.get_mut(conv) {
            Some(set) => set.insert(seq),
            None => t.acked.entry(conv.to_owned()).or_default().insert(seq),
        }
        let mark = t.interval.acked_up_to.entry(conv.to_owned()).or_insert(0);
        *mark = (*mark).max(seq);
    }

    fn received(&self, conv: &str, seq: i64, latency_ms: Option<u64>) {
        let mut t = self.lock();
        match t.received.get_mut(conv) {
            Some(set) => set.insert(seq),
            None => t.received.entry(conv.to_owned()).or_default().insert(seq),
        }
        t.interval.received += 1;
        if let Some(ms) = latency_ms {
            *t.interval.latency_ms.entry(ms).or_default() += 1;
        }
    }

    fn duplicated(&self) {
        self.lock().interval.duplicated += 1;
    }

    /// The interval's figures; the next interval starts from zero (but for
    /// the acknowledged marks, which run on).
    pub fn take_interval(&self) -> IntervalTally {
        let mut t = self.lock();
        let marks = t.interval.acked_up_to.clone();
        std::mem::replace(&mut t.interval, IntervalTally { acked_up_to: marks, ..Default::default() })
    }

    pub fn seqs(&self) -> TallySeqs {
        let t = self.lock();
        let hex = |m: &HashMap<String, SeqSet>| m.iter().map(|(c, s)| (c.clone(), s.to_hex())).collect();
        TallySeqs { acked: hex(&t.acked), received: hex(&t.received) }
    }
}

pub struct ClientSpec {
    pub kind: Kind,
    /// The nodes to use, in order of preference: the first at start, the
    /// next whenever a connect fails (a node lost).
    pub servers: Vec<SocketAddr>,
    pub source: IpAddr,
    pub token: String,
    /// Visitors: time between messages.
    pub interval: Duration,
    /// Visitors: send again as soon as the last message is acknowledged.
    pub closed_loop: bool,
    /// A soak: count into this instead of listing every message in the
    /// report.
    pub tally: Option<Arc<Tally>>,
}

struct State {
    cursors: HashMap<String, i64>,
    /// The agent list's version from the last welcome (agents).
    agents_version: Option<String>,
    conv: Option<String>,
    /// client_id → frame text, until acknowledged.
    outbox: Vec<(String, String)>,
    next_id: u64,
    report: ClientReport,
}

/// Run one client until `controls.stop`; returns its report.
pub async fn run_client(spec: ClientSpec, controls: Arc<Controls>) -> ClientReport {
    let mut st = State {
        cursors: HashMap::new(),
        agents_version: None,
        conv: None,
        outbox: Vec::new(),
        next_id: 0,
        report: Default::default(),
    };
    let path = match spec.kind {
        Kind::Agent => "/api/v1/agent/socket",
        Kind::Visitor => "/api/v1/visitor/socket",
    };
    let mut attempt = 0u32;
    let mut first = true;
    let mut node = 0;
    // Since the last drop: when it happened and the attempts made since.
    let mut dropped_at = std::time::Instant::now();
    let mut tries = 0u32;
    let mut failed = Failures::default();
    while !controls.stop.load(Ordering::Relaxed) {
        let Some(server) = spec.servers.get(node % spec.servers.len().max(1)).copied() else { break };
        tries += 1;
        let try_started = std::time::Instant::now();
        let ws = match connect_ws(server, spec.source, path).await {
            Ok(ws) => ws,
            Err(_) => {
                // That node is gone (or not there yet): fail over to the next.
                failed.connect += 1;
                node += 1;
                tokio::time::sleep(backoff(attempt, Duration::from_millis(100), Duration::from_secs(5))).await;
                attempt += 1;
                continue;
            }
        };
        let timing = Timing { dropped_at, try_started, tries, failed };
        match session(&spec, &controls, &mut st, ws, first, timing).await {
            Outcome::Refused => {
                st.report.logouts += 1;
                break;
            }
            Outcome::Unavailable => {
                failed.unavailable += 1;
                tokio::time::sleep(backoff(attempt, Duration::from_millis(250), Duration::from_secs(5))).await;
                attempt += 1;
            }
            Outcome::Dropped { welcomed, wait } => {
                if welcomed {
                    first = false;
                    attempt = 0;
                    dropped_at = std::time::Instant::now();
                    tries = 0;
                    failed = Failures::default();
                } else {
                    failed.dropped += 1;
                }
                // A whole crowd drops at once: spread the reconnects.
                let delay =
                    wait.unwrap_or_else(|| backoff(attempt, Duration::from_millis(200), Duration::from_secs(5)));
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Outcome::Stopped => break,
        }
    }
    st.report
}

enum Outcome {
    Refused,
    Unavailable,
    Dropped { welcomed: bool, wait: Option<Duration> },
    Stopped,
}

fn client_frame(st: &mut State, conv: Option<&str>) -> (String, String) {
    st.next_id += 1;
    let client_id = format!("m{}", st.next_id);
    let frame = send_frame(conv, &client_id);
    (client_id, frame)
}

/// Unix time in microseconds, the send time a message's body carries.
fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// A `send` frame's text, serialized straight from borrowed fields (no JSON
/// tree: the load client should cost what a real one does).
fn send_frame(conv: Option<&str>, client_id: &str) -> String {
    #[derive(Serialize)]
    struct Send<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        conv: Option<&'a str>,
        client_id: &'a str,
        body: &'a str,
    }
    // Microseconds: a p99 of a few milliseconds is read to a fraction of one.
    let body = format!("t={}", now_us());
    serde_json::to_string(&Send { kind: "send", conv, client_id, body: &body }).unwrap_or_default()
}

/// When a connection attempt began, for the resume's timings.
struct Timing {
    dropped_at: std::time::Instant,
    try_started: std::time::Instant,
    tries: u32,
    failed: Failures,
}

async fn session(
    spec: &ClientSpec,
    controls: &Controls,
    st: &mut State,
    mut ws: Ws,
    first: bool,
    timing: Timing,
) -> Outcome {
    let mut hello =
        json!({"type": "hello", "v": holdfast_protocol::PROTOCOL_VERSION, "token": spec.token, "cursors": st.cursors});
    if let Some(version) = &st.agents_version {
        hello["agents_version"] = json!(version);
    }
    if ws.send(Message::Text(hello.to_string().into())).await.is_err() {
        return Outcome::Dropped { welcomed: false, wait: None };
    }
    // The first frame decides: welcome, or a refusal.
    let text = match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        _ => return Outcome::Dropped { welcomed: false, wait: None },
    };
    let welcome = serde_json::from_str::<Frame>(&text).unwrap_or_default();
    if welcome.kind != "welcome" {
        return match welcome.code.as_deref() {
            Some("unauthorized") | Some("token_expired") => Outcome::Refused,
            _ => Outcome::Unavailable,
        };
    }
    if welcome.agents_version.is_some() {
        st.agents_version = welcome.agents_version.clone();
    }
    controls.connected.fetch_add(1, Ordering::Relaxed);
    struct Connected<'a>(&'a AtomicUsize);
    impl Drop for Connected<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _connected = Connected(&controls.connected);
    if !first {
        st.report.resumes += 1;
        st.report.last_resume_at = Some(now_ms());
        let ms = |since: std::time::Instant| since.elapsed().as_secs_f64() * 1000.0;
        let to_welcome_ms = ms(timing.dropped_at);
        st.report.resume_timings.push(ResumeTiming {
            dropped_at: now_ms() - to_welcome_ms as i64,
            to_welcome_ms,
            attempt_ms: ms(timing.try_started),
            attempts: timing.tries,
            failed: timing.failed,
        });
    }
    if spec.kind == Kind::Agent && welcome.availability.as_deref() != Some("online") {
        let online = json!({"type": "set_availability", "availability": "online"});
        if ws.send(Message::Text(online.to_string().into())).await.is_err() {
            return Outcome::Dropped { welcomed: true, wait: None };
        }
    }
    // Resend what was never acknowledged, with the same client ids.
    for (_, frame) in st.outbox.clone() {
        if ws.send(Message::Text(frame.into())).await.is_err() {
            return Outcome::Dropped { welcomed: true, wait: None };
        }
    }
    let jitter = Duration::from_millis(rand::random_range(0..=spec.interval.as_millis().max(1) as u64));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + jitter, spec.interval);
    loop {
        // Made before the flag is read, so a stop in between still wakes it.
        let stopped = controls.stopped.notified();
        if controls.stop.load(Ordering::Relaxed) {
            st.report.connected = true;
            let _ = ws.close(None).await;
            return Outcome::Stopped;
        }
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => return Outcome::Dropped { welcomed: true, wait: None },
                };
                let Ok(frame) = serde_json::from_str::<Frame>(&text) else { continue };
                let conv = frame.conv.as_deref();
                match &*frame.kind {
                    "reconnect" => {
                        let wait = Duration::from_millis(frame.after_ms.unwrap_or(0));
                        return Outcome::Dropped { welcomed: true, wait: Some(wait) };
                    }
                    "error" if frame.code.as_deref() == Some("unauthorized") => return Outcome::Refused,
                    "ack" => {
                        let id = frame.client_id.as_deref().unwrap_or_default();
                        if let Some(i) = st.outbox.iter().position(|(c, _)| c == id) {
                            st.outbox.remove(i);
                            let conv = conv.unwrap_or_default();
                            match &spec.tally {
                                Some(tally) => tally.acked(conv, frame.seq.unwrap_or(0)),
                                None => st.report.acked.push((conv.to_owned(), frame.seq.unwrap_or(0))),
                            }
                            if st.conv.is_none() {
                                st.conv = Some(conv.to_owned());
                            }
                            let own = spec.kind == Kind::Visitor && !id.starts_with("r-");
                            if own && spec.closed_loop && st.outbox.is_empty() && controls.sending.load(Ordering::Relaxed) {
                                let conv = st.conv.clone();
                                let (id, next) = client_frame(st, conv.as_deref());
                                st.outbox.push((id, next.clone()));
                                if ws.send(Message::Text(next.into())).await.is_err() {
                                    return Outcome::Dropped { welcomed: true, wait: None };
                                }
                            }
                        }
                        continue;
                    }
                    _ => {}
                }
                if let (Some(conv), Some(seq)) = (conv, frame.seq) {
                    let is_message = frame.kind == "message";
                    let cursor = match st.cursors.get_mut(conv) {
                        Some(cursor) => cursor,
                        None => st.cursors.entry(conv.to_owned()).or_insert(0),
                    };
                    if seq <= *cursor {
                        if is_message {
                            st.report.duplicated += 1;
                            if let Some(tally) = &spec.tally {
                                tally.duplicated();
                            }
                        }
                        continue;
                    }
                    *cursor = seq;
                    let from_other_side = is_message && frame.author.as_ref().map(|a| &*a.kind) != Some(kind_str(spec.kind));
                    // One of ours, stored, whose ack was lost with a
                    // connection: it leaves the outbox (docs/protocol.md
                    // §9.4), never to be resent once out of the window.
                    if is_message && !from_other_side
                        && let Some(i) = frame.client_id.as_deref().and_then(|id| st.outbox.iter().position(|(c, _)| c == id))
                    {
                        st.outbox.remove(i);
                        match &spec.tally {
                            Some(tally) => tally.acked(conv, seq),
                            None => st.report.acked.push((conv.to_owned(), seq)),
                        }
                    }
                    if from_other_side {
                        let sent_us = frame.body.as_deref().and_then(|b| b.strip_prefix("t=")).and_then(|t| t.parse::<i64>().ok());
                        let latency_us = sent_us.map(|sent| (now_us() - sent).max(0));
                        match &spec.tally {
                            Some(tally) => tally.received(conv, seq, latency_us.map(|us| us as u64 / 1000)),
                            None => {
                                st.report.received.push((conv.to_owned(), seq));
                                if let Some((sent, us)) = sent_us.zip(latency_us) {
                                    st.report.latencies.push((sent / 1000, us as f64 / 1000.0));
                                }
                            }
                        }
                        if spec.kind == Kind::Agent {
                            // Answer every visitor message (idempotent id per message).
                            let client_id = format!("r-{conv}-{seq}");
                            let reply = send_frame(Some(conv), &client_id);
                            st.outbox.push((client_id, reply.clone()));
                            if ws.send(Message::Text(reply.into())).await.is_err() {
                                return Outcome::Dropped { welcomed: true, wait: None };
                            }
                        }
                    }
                }
            }
            _ = tick.tick(), if spec.kind == Kind::Visitor => {
                // In closed loop the tick only (re)starts an idle sender.
                let busy = if spec.closed_loop { !st.outbox.is_empty() } else { st.outbox.len() > 4 };
                if !controls.sending.load(Ordering::Relaxed) || busy {
                    continue;
                }
                let conv = st.conv.clone();
                let (id, frame) = client_frame(st, conv.as_deref());
                st.outbox.push((id, frame.clone()));
                if ws.send(Message::Text(frame.into())).await.is_err() {
                    return Outcome::Dropped { welcomed: true, wait: None };
                }
            }
            _ = stopped => continue,
        }
    }
}

/// The fields of a server frame this client reads. Everything else (a
/// welcome's agent list, say) is skipped while parsing, never built, and
/// strings borrow from the frame unless they hold escapes: the load client
/// should cost what a real one does, not a JSON tree per frame.
#[derive(Debug, Default, Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    after_ms: Option<u64>,
    #[serde(borrow)]
    availability: Option<Cow<'a, str>>,
    agents_version: Option<String>,
    #[serde(borrow)]
    client_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    conv: Option<Cow<'a, str>>,
    seq: Option<i64>,
    #[serde(borrow)]
    author: Option<FrameAuthor<'a>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct FrameAuthor<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::Agent => "agent",
        Kind::Visitor => "visitor",
    }
}
