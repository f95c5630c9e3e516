//! One socket's life: authenticate with `hello`, replay what the client
//! missed, then relay live events and handle client frames until it ends.
//!
//! Written over plain `Stream`/`Sink`s of text so it can be driven by a real
//! WebSocket (in `http/`) or by channels in tests. The ordering rule that
//! makes resume exact: register with the hub *before* reading the backlog
//! from the store, then drop any live event at or below the cursor already
//! sent, hold one that arrives ahead of its turn for a moment (`reorder`),
//! and fill a gap that stays open from the store. So nothing slips between
//! replay and live, nothing is sent twice, and order is per-conversation seq.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};

use super::hub::{KickReason, Principal};
use super::protocol::{
    CLIENT_FRAME_TYPES, ClientFrame, ConversationView, MAX_CURSORS, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerFrame,
};
use super::reorder::{MAX_HELD, Reorder};
use super::service::{AgentCtx, Chat, Peer, VisitorCtx, clean_field, encode};
use crate::admission::Lane;
use crate::auth::Auth;
use crate::bus::{Envelope, Payload};
use crate::error::{Error, Result};
use crate::store::{Applied, Role, VisitorUpdate};

/// What a transport hands the session.
#[derive(Debug)]
pub enum Inbound {
    /// A text frame, as the transport read it (UTF-8, which it checked).
    Text(Bytes),
    /// A frame the protocol does not use (binary); refused with an error.
    Other,
}

/// What the session hands the transport.
#[derive(Debug)]
pub enum Outbound {
    Text(Bytes),
    /// Close the connection with a reason.
    Close(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Agent,
    Visitor,
}

/// Timeouts of a session.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Time allowed between connect and `hello`.
    pub hello_timeout: Duration,
    /// Silence after which the connection is considered dead (clients ping).
    pub idle_timeout: Duration,
    /// Longest a single write may take before the client counts as gone.
    pub write_timeout: Duration,
    /// How long past its expiry an access token may still resume a socket
    /// or be renewed when the store cannot be asked (lenient renewal).
    pub renewal_grace: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(10),
            renewal_grace: Duration::from_secs(3600),
        }
    }
}

/// Close reason of a socket cut by fault injection (no close frame is sent).
const CUT: &str = "cut";

/// How often a socket checks the bus, and reads the store while it is down.
const BUS_DOWN_POLL: Duration = Duration::from_secs(2);

/// Sockets asked to resync at once spread their store reads over this.
const RESYNC_SPREAD_MS: u64 = 2000;

/// Most waiting hub events sent in one write with a frame's answer.
const MAX_COALESCED: usize = 32;

/// The event kind of an internal note, which visitors never see.
const NOTE: &str = "note";

/// Events fetched from the store per read when replaying.
const REPLAY_PAGE: i64 = 500;

/// A write that timed out or failed means the client is gone.
fn written<E>(outcome: std::result::Result<std::result::Result<(), E>, tokio::time::error::Elapsed>) -> Result<()> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        _ => Err(Error::internal(anyhow::anyhow!("client write failed"))),
    }
}

fn error_frame(err: &Error, reference: Option<String>) -> Bytes {
    let message = if err.is_server_fault() { "internal error, please retry".to_owned() } else { err.to_string() };
    encode(&ServerFrame::Error { code: err.code(), message, reference })
}

struct Session<O> {
    chat: Arc<Chat>,
    peer: Peer,
    out: O,
    /// Highest seq sent on this socket, per conversation.
    cursors: HashMap<String, i64>,
    /// Live events that arrived ahead of their turn.
    early: Reorder,
    /// Conversations whose last events read from the store were hidden
    /// from this socket (a visitor's, after internal notes).
    hidden_tail: std::collections::HashSet<String>,
    /// When this socket joined the hub: snapshots must be read after it.
    registered_at: tokio::time::Instant,
    write_timeout: Duration,
    /// While set, frames are buffered and leave in one write at `uncork`:
    /// the relay loop sends an ack and the events ready behind it together.
    corked: bool,
}

/// Where a socket comes from, for the checks of `abuse` (`None` when a
/// test drives a session over channels).
pub type PeerAddr = Option<std::net::IpAddr>;

/// Drive one socket to its end: `hello`, then the relay.
///
/// Every idle socket's task holds this future, so it is laid out with
/// care (`-Zprint-type-sizes`, `holdfast bench idle`): the handshake owns
/// the arguments and hands them on with who the client is, so that its
/// state is gone once it answers and nothing of it stays beside the
/// relay's; and the relay (`relay`) is built from what it handed on.
pub fn run<I, O>(
    chat: Arc<Chat>,
    auth: Arc<Auth>,
    side: (Side, PeerAddr),
    limits: SessionLimits,
    input: I,
    out: O,
) -> impl Future<Output = ()> + Send
where
    I: Stream<Item = Inbound> + Unpin + Send,
    O: Sink<Outbound> + Unpin + Send,
{
    handshake(chat, auth, side, limits, input, out).then(|shaken| match shaken {
        Some(shaken) => Either::Left(relay(shaken)),
        None => Either::Right(std::future::ready(())),
    })
}

/// What the handshake hands the relay.
struct Shaken<I, O> {
    chat: Arc<Chat>,
    peer: Peer,
    resume: Resume,
    limits: SessionLimits,
    input: I,
    out: O,
}

/// Read and check `hello`: who the socket is and what it already has,
/// with the rest of the socket, or `None` once the client was told why
/// not (or left).
async fn handshake<I, O>(
    chat: Arc<Chat>,
    auth: Arc<Auth>,
    (side, ip): (Side, PeerAddr),
    limits: SessionLimits,
    mut input: I,
    mut out: O,
) -> Option<Shaken<I, O>>
where
    I: Stream<Item = Inbound> + Unpin + Send,
    O: Sink<Outbound> + Unpin + Send,
{
    let hello = match tokio::time::timeout(limits.hello_timeout, input.next()).await {
        Ok(Some(Inbound::Text(text))) => text_of(&text).and_then(parse_frame),
        Ok(Some(Inbound::Other)) => Err(Error::bad_request("frames must be JSON text")),
        Ok(None) => return None,
        Err(_) => Err(Error::bad_request("no hello within the time allowed")),
    };
    let authenticated = match hello {
        Ok(frame) => Box::pin(authenticate(&chat, &auth, (side, ip), limits.renewal_grace, frame)).await,
        Err(e) => Err(e),
    };
    match authenticated {
        Ok((peer, resume)) => Some(Shaken { chat, peer, resume, limits, input, out }),
        Err(err) => {
            metrics::counter!("holdfast_socket_ends_total", "reason" => "hello refused", "code" => err.code())
                .increment(1);
            let _ = out.send(Outbound::Text(error_frame(&err, None))).await;
            let _ = out.send(Outbound::Close("hello refused")).await;
            None
        }
    }
}

/// Register the client with the hub, welcome it, and relay until the
/// socket ends. A plain function, not an `async fn`: that would keep each
/// argument twice (as a capture and as the local it is moved into), where
/// what the task holds from here on is the session, its registration, and
/// what the relay loop waits on.
fn relay<I, O>(shaken: Shaken<I, O>) -> impl Future<Output = ()> + Send
where
    I: Stream<Item = Inbound> + Unpin + Send,
    O: Sink<Outbound> + Unpin + Send,
{
    let Shaken { chat, peer, resume, limits, mut input, out } = shaken;
    if let Peer::Agent(a) = &peer
        && a.role == Role::Probe
    {
        // Boxed: inline, this rare path's state (2.5 KB) was in every
        // socket's task for its whole life (`-Zprint-type-sizes`).
        return Either::Left(Box::pin(probe_welcome(chat, peer, resume, limits.write_timeout, out)));
    }
    let principal = match &peer {
        Peer::Agent(a) => Principal::Agent { agent_id: a.agent_id.clone(), session_id: a.session_id.clone() },
        Peer::Visitor(v) => Principal::Visitor { visitor_id: v.visitor_id.clone() },
    };
    // Register before reading the backlog, so nothing slips in between.
    let reg = chat.hub.register(peer.site_id(), principal);
    let was_present = reg.was_present;
    let mut session = Session::new(chat, peer, out, limits.write_timeout);
    Either::Right(async move {
        let chat = session.chat.clone();
        if matches!(session.peer, Peer::Agent(_)) && !was_present {
            // Off the resume's path: the welcome does not wait for routing.
            let (chat, site_id) = (chat.clone(), session.peer.site_id().to_owned());
            tokio::spawn(async move { chat.presence_changed(&site_id).await });
        }
        let welcome = Box::pin(session.welcome(resume)).await;
        let welcomed = welcome.is_ok();
        let outcome = match welcome {
            Ok(()) => {
                // A kick ends the socket at once, whatever it is waiting for (a
                // write to a slow client, a store read): a cut that waited for
                // them left a client connected seconds after a blip.
                let served = tokio::select! {
                    biased;
                    reason = reg.mailbox.kicked() => Err(reason),
                    outcome = session.serve(&mut input, &reg, &limits) => Ok(outcome),
                };
                // Whatever the relay loop held back goes out with what follows.
                session.corked = false;
                match served {
                    Ok(outcome) => outcome,
                    Err(reason) => Ok(session.kicked(reason).await),
                }
            }
            Err(err) => {
                metrics::counter!("holdfast_socket_ends_total", "reason" => "welcome failed", "code" => err.code())
                    .increment(1);
                let _ = session.send(error_frame(&err, None)).await;
                Err(err)
            }
        };
        chat.hub.unregister(reg.id);
        if let Peer::Agent(a) = &session.peer {
            // Presence lingers for the grace period; if the agent has not come
            // back by then, they are gone: re-check the site.
            let (chat, agent_id, site_id) = (chat.clone(), a.agent_id.clone(), a.site_id.clone());
            let grace = chat.hub.presence_grace();
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                if !chat.hub.agent_connected(&agent_id) {
                    chat.presence_changed(&site_id).await;
                }
            });
        }
        let reason = outcome.unwrap_or("error");
        if welcomed {
            // Why sockets end, for an operator reading a storm (`cut` is injected).
            metrics::counter!("holdfast_socket_ends_total", "reason" => reason, "code" => "").increment(1);
        }
        if reason != CUT {
            let _ = session.out.send(Outbound::Close(reason)).await;
        }
    })
}

/// The status page's login probe: the welcome an agent gets, from the same
/// store reads, and then the socket is closed. It never registers with the
/// hub, so it is never present: never routed to, never counted online,
/// never in another node's heartbeat.
async fn probe_welcome<O>(chat: Arc<Chat>, peer: Peer, resume: Resume, write_timeout: Duration, out: O)
where
    O: Sink<Outbound> + Unpin + Send,
{
    let mut session = Session::new(chat, peer, out, write_timeout);
    if let Err(err) = session.welcome(resume).await {
        let _ = session.send(error_frame(&err, None)).await;
    }
    let _ = session.out.send(Outbound::Close("probe done")).await;
}

/// A text frame's text. The transport checked it is UTF-8; checked again
/// here (a hundred bytes, in nanoseconds) rather than trusted, as the frame
/// is handed on as bytes, without a copy.
fn text_of(frame: &Bytes) -> Result<&str> {
    std::str::from_utf8(frame).map_err(|_| Error::bad_request("frames must be UTF-8 text"))
}

fn parse_frame(text: &str) -> Result<ClientFrame> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(Error::TooLarge(format!("frames are limited to {MAX_FRAME_BYTES} bytes").into()));
    }
    // A repeated key could mean one frame to us and another to a proxy or
    // log reader (`{"type":"ping","type":"send",…}`), so it is refused.
    // The one parse of a valid frame does it: serde refuses a repeated
    // `type` or field, and the protocol's `cursors` a repeated key. A
    // refused frame goes through the slower path below, which says exactly
    // what is wrong with it.
    let refused = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => return Ok(frame),
        Err(e) => e,
    };
    crate::json::refuse_duplicate_keys(text).map_err(|e| Error::bad_request(format!("malformed JSON: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::bad_request(format!("malformed JSON: {e}")))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()).map(str::to_owned) else {
        return Err(Error::bad_request("a frame needs a string \"type\""));
    };
    if !CLIENT_FRAME_TYPES.contains(&kind.as_str()) {
        return Err(Error::bad_request(format!("unknown frame type {kind:?}")));
    }
    // Without its line and column, as a frame is one line.
    let why = serde_json::from_value::<ClientFrame>(value).err().unwrap_or(refused);
    Err(Error::bad_request(format!("invalid {kind} frame: {why}")))
}

/// What a hello says the client already has.
struct Resume {
    cursors: HashMap<String, i64>,
    agents_version: Option<String>,
}

async fn authenticate(
    chat: &Chat,
    auth: &Auth,
    (side, ip): (Side, PeerAddr),
    grace: Duration,
    frame: ClientFrame,
) -> Result<(Peer, Resume)> {
    let ClientFrame::Hello { v, token, cursors, agents_version } = frame else {
        return Err(Error::bad_request("the first frame must be hello"));
    };
    if v != PROTOCOL_VERSION {
        return Err(Error::bad_request(format!(
            "unsupported protocol version {v}; this server speaks {PROTOCOL_VERSION}"
        )));
    }
    if cursors.len() > MAX_CURSORS {
        return Err(Error::bad_request(format!("at most {MAX_CURSORS} cursors")));
    }
    if cursors.values().any(|s| *s < 0) {
        return Err(Error::bad_request("cursors must be >= 0"));
    }
    // A resume is critical work: it gets the reserved lane.
    let _admitted = chat.admission.enter(Lane::Critical).await?;
    let peer = match side {
        Side::Agent => {
            let c = auth.verify_agent_lenient(&token, grace).await?;
            Peer::Agent(AgentCtx { agent_id: c.sub, site_id: c.site, session_id: c.sid, role: c.role, api_token: None })
        }
        Side::Visitor => {
            let c = auth.verify_visitor(&token)?;
            // Checked in memory: a banned visitor is refused before the
            // hub or the store hear of them.
            chat.bans.check(&c.site, Some(&c.sub), ip)?;
            Peer::Visitor(VisitorCtx { visitor_id: c.sub, site_id: c.site, ip })
        }
    };
    Ok((peer, Resume { cursors, agents_version }))
}

fn frame_ref(frame: &ClientFrame) -> Option<String> {
    match frame {
        ClientFrame::Send { client_id, .. }
        | ClientFrame::LeaveMessage { client_id, .. }
        | ClientFrame::Rate { client_id, .. }
        | ClientFrame::Note { client_id, .. } => Some(client_id.clone()),
        ClientFrame::Typing { conv, .. }
        | ClientFrame::Read { conv, .. }
        | ClientFrame::Claim { conv }
        | ClientFrame::Transfer { conv, .. }
        | ClientFrame::Close { conv } => Some(conv.clone()),
        _ => None,
    }
}

impl<O: Sink<Outbound> + Unpin + Send> Session<O> {
    /// A session of a socket registered with the hub just now.
    fn new(chat: Arc<Chat>, peer: Peer, out: O, write_timeout: Duration) -> Self {
        Session {
            chat,
            peer,
            out,
            cursors: HashMap::new(),
            early: Reorder::default(),
            hidden_tail: Default::default(),
            registered_at: tokio::time::Instant::now(),
            write_timeout,
            corked: false,
        }
    }

    async fn send(&mut self, text: Bytes) -> Result<()> {
        let frame = Outbound::Text(text);
        let limit = self.write_timeout;
        if self.corked {
            written(tokio::time::timeout(limit, self.out.feed(frame)).await)
        } else {
            written(tokio::time::timeout(limit, self.out.send(frame)).await)
        }
    }

    /// Send what `corked` held back, in one write.
    async fn uncork(&mut self) -> Result<()> {
        self.corked = false;
        written(tokio::time::timeout(self.write_timeout, self.out.flush()).await)
    }

    /// The snapshot, then everything missed since the client's cursors.
    async fn welcome(&mut self, resume: Resume) -> Result<()> {
        let Resume { cursors: client_cursors, agents_version } = resume;
        let chat = self.chat.clone();
        let site_id = self.peer.site_id().to_owned();
        let agents_online = chat.agents_online(&site_id).await?;
        let (frame, open) = match &self.peer {
            Peer::Agent(a) => {
                let agent = chat
                    .store
                    .agent(&a.agent_id)
                    .await?
                    .filter(|x| x.active)
                    .ok_or_else(|| Error::unauthorized("agent deactivated"))?;
                let open = chat.agent_open_conversations(a).await?;
                let agents = chat.site_agents(&site_id).await?;
                let unchanged = agents_version.as_deref() == Some(&*agents.version);
                let frame = ServerFrame::Welcome {
                    v: PROTOCOL_VERSION,
                    role: agent.role.as_str(),
                    id: agent.id.clone(),
                    site_id: site_id.clone(),
                    availability: Some(agent.availability),
                    conversations: open.iter().map(ConversationView::from).collect(),
                    queue: Some(chat.queue_snapshot(&site_id, self.registered_at).await?),
                    agents: (!unchanged).then_some(agents.json),
                    agents_version: Some(agents.version),
                    agents_online,
                };
                (frame, open)
            }
            Peer::Visitor(v) => {
                let open = chat.visitor_open_conversations(v).await?;
                let frame = ServerFrame::Welcome {
                    v: PROTOCOL_VERSION,
                    role: "visitor",
                    id: v.visitor_id.clone(),
                    site_id: site_id.clone(),
                    availability: None,
                    conversations: open.iter().map(ConversationView::from).collect(),
                    queue: None,
                    agents: None,
                    agents_version: None,
                    agents_online,
                };
                (frame, open)
            }
        };
        self.send(encode(&frame)).await?;
        // Replay: every open conversation from the client's cursor (or from
        // the start), plus any other conversation it has a cursor for and may
        // see (e.g. one transferred or closed while it was away).
        // A cursor beyond the conversation's end is clamped, so live events
        // are not silently dropped as "already seen".
        let cursor_for =
            |c: &crate::store::Conversation| client_cursors.get(&c.id).copied().unwrap_or(0).min(c.last_seq);
        // Replay runs up to each conversation's end as read above; anything
        // later arrives live (the hub registration came first). A client
        // that missed nothing therefore costs no read of events.
        let mut targets: Vec<(String, i64, i64)> =
            open.iter().map(|c| (c.id.clone(), cursor_for(c), c.last_seq)).collect();
        for (conv, after) in &client_cursors {
            if targets.iter().any(|(c, _, _)| c == conv) {
                continue;
            }
            match chat.conversation_for(&self.peer, conv).await {
                Ok(c) => targets.push((c.id.clone(), (*after).min(c.last_seq), c.last_seq)),
                Err(Error::NotFound(_)) => {
                    let err = Error::NotFound("conversation");
                    self.send(error_frame(&err, Some(conv.clone()))).await?;
                }
                Err(e) => return Err(e),
            }
        }
        for (conv, after, upto) in targets {
            self.set_cursor(&conv, after);
            self.catch_up(&conv, upto).await?;
            // The replay stopped short of `last_seq` as the client sees it:
            // say it is over, or a widget waits for it to go on.
            if self.hidden_tail.remove(&conv) {
                self.send(encode(&ServerFrame::Replayed { conv })).await?;
            }
        }
        // A queued visitor learns their place again at once.
        if let Peer::Visitor(v) = &self.peer
            && open.iter().any(|c| c.status == crate::store::ConversationStatus::Queued)
        {
            let visitor_id = v.visitor_id.clone();
            let queue = chat.queue_snapshot(&site_id, self.registered_at).await?;
            for entry in queue.iter().filter(|e| e.visitor_id == visitor_id) {
                let frame = ServerFrame::QueuePosition { conv: entry.conv.clone(), position: entry.position };
                self.send(encode(&frame)).await?;
            }
        }
        Ok(())
    }

    /// Send stored events of `conv` after this socket's cursor, up to
    /// `upto`, then any early live events that now follow without a gap.
    async fn catch_up(&mut self, conv: &str, upto: i64) -> Result<()> {
        self.read_up_to(conv, upto).await?;
        self.send_ready(conv).await
    }

    async fn read_up_to(&mut self, conv: &str, upto: i64) -> Result<()> {
        loop {
            let after = self.cursors.get(conv).copied().unwrap_or(0);
            if after >= upto {
                return Ok(());
            }
            metrics::counter!("holdfast_socket_replay_reads_total").increment(1);
            let page = self.chat.store.events_after(conv, after, REPLAY_PAGE).await?;
            let done = (page.len() as i64) < REPLAY_PAGE;
            for event in page {
                if event.seq > upto {
                    return Ok(());
                }
                // A visitor's cursor passes over what they may not see
                // (internal notes), so the numbering stays whole for them.
                if self.hides(&event.kind) {
                    self.hidden_tail.insert(conv.to_owned());
                } else {
                    self.hidden_tail.remove(conv);
                    self.send(encode(&super::EventFrame(&event))).await?;
                }
                self.set_cursor(conv, event.seq);
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Move this socket's cursor of `conv` to `seq`. Its key is allocated
    /// only the first time: this runs for every event every socket relays.
    fn set_cursor(&mut self, conv: &str, seq: i64) {
        match self.cursors.get_mut(conv) {
            Some(cursor) => *cursor = seq,
            None => _ = self.cursors.insert(conv.to_owned(), seq),
        }
    }

    /// Whether this socket's side never sees events of `kind`: a visitor
    /// never sees an internal note.
    fn hides(&self, kind: &str) -> bool {
        matches!(self.peer, Peer::Visitor(_)) && kind == NOTE
    }

    /// Send an event's frame; an unseen event's (empty) is only counted.
    async fn send_event(&mut self, text: Bytes) -> Result<()> {
        if text.is_empty() { Ok(()) } else { self.send(text).await }
    }

    /// Send the held early events of `conv` that follow its cursor.
    async fn send_ready(&mut self, conv: &str) -> Result<()> {
        let cursor = self.cursors.get(conv).copied().unwrap_or(0);
        for (seq, text) in self.early.take_ready(conv, cursor) {
            self.send_event(text).await?;
            self.set_cursor(conv, seq);
        }
        Ok(())
    }

    /// Early events whose predecessors never came live: read the gap.
    async fn fill_expired_gaps(&mut self) -> Result<()> {
        for (conv, upto) in self.early.expired() {
            metrics::counter!("holdfast_socket_gap_fills_total").increment(1);
            self.catch_up(&conv, upto).await?;
        }
        Ok(())
    }

    /// Re-read this socket's conversations from the store: the open ones
    /// (an agent may have been given one while events could not reach this
    /// node) and every one it has a cursor for. Sends only what is new.
    async fn resync(&mut self) -> Result<()> {
        metrics::counter!("holdfast_socket_resyncs_total").increment(1);
        let (open, agent_id) = match &self.peer {
            Peer::Agent(a) => (self.chat.agent_open_conversations(a).await?, Some(a.agent_id.clone())),
            Peer::Visitor(v) => (self.chat.visitor_open_conversations(v).await?, None),
        };
        let mut convs: Vec<String> = open.iter().map(|c| c.id.clone()).collect();
        for conv in self.cursors.keys() {
            if convs.contains(conv) {
                continue;
            }
            // An agent keeps following a conversation only while it is
            // theirs (closed ones included), as live delivery would.
            if let Some(me) = &agent_id {
                let still_mine =
                    self.chat.store.conversation(conv).await?.is_some_and(|c| c.agent_id.as_ref() == Some(me));
                if !still_mine {
                    continue;
                }
            }
            convs.push(conv.clone());
        }
        for conv in convs {
            self.catch_up(&conv, i64::MAX).await?;
        }
        Ok(())
    }

    async fn deliver(&mut self, envelope: &Envelope) -> Result<Option<&'static str>> {
        match &envelope.payload {
            Payload::Disconnect { code } => {
                let err = if code == Error::Banned.code() { Error::Banned } else { Error::unauthorized(code.clone()) };
                self.send(error_frame(&err, None)).await?;
                Ok(Some(if matches!(err, Error::Banned) { "banned" } else { "session ended" }))
            }
            Payload::Presence { .. } | Payload::Ban { .. } => Ok(None),
            Payload::Frame { text } => match &envelope.event {
                Some((conv, seq)) => self.relay_event(conv, *seq, text.clone()).await.map(|_| None),
                None => self.send(text.clone()).await.map(|_| None),
            },
            // Counted like an event whose frame is empty: nothing is written.
            Payload::Unseen => match &envelope.event {
                Some((conv, seq)) => self.relay_event(conv, *seq, Bytes::new()).await.map(|_| None),
                None => Ok(None),
            },
        }
    }

    /// A live durable event: sent in its turn, dropped if already sent,
    /// held for a moment if ahead of its turn. `text` is empty for an
    /// event this socket may not see, which only moves the cursor.
    async fn relay_event(&mut self, conv: &str, seq: i64, text: Bytes) -> Result<()> {
        let known = self.cursors.get(conv).copied();
        let last = known.unwrap_or(0);
        if seq <= last {
            return Ok(()); // already sent (replay or gap fill)
        }
        if seq > last + 1 {
            // New to this socket (e.g. just assigned): its history
            // is read now. Otherwise ahead of its turn: wait a
            // moment for the ones before.
            if known.is_none() {
                return self.catch_up(conv, seq).await;
            }
            let now = tokio::time::Instant::now();
            if self.early.hold(conv, seq, text, now) > MAX_HELD {
                metrics::counter!("holdfast_socket_gap_fills_total").increment(1);
                self.catch_up(conv, seq).await?;
            }
            return Ok(());
        }
        self.set_cursor(conv, seq);
        self.send_event(text).await?;
        self.send_ready(conv).await
    }

    /// The hub kicked this socket: say why (unless it is a cut) and end.
    async fn kicked(&mut self, reason: KickReason) -> &'static str {
        let frame = match reason {
            // Say nothing: the socket just dies, as in a network blip.
            KickReason::Cut => return CUT,
            // Spread the reconnects of a whole node over 5 s.
            KickReason::Drain => ServerFrame::Reconnect { after_ms: rand::random_range(0..5000), reason: "draining" },
            KickReason::SlowConsumer => ServerFrame::Reconnect { after_ms: 0, reason: "slow_consumer" },
        };
        let _ = self.send(encode(&frame)).await;
        "reconnect"
    }

    /// Relay until the client goes, the socket fails, or (in `run`) the hub
    /// kicks it.
    async fn serve<I>(
        &mut self,
        input: &mut I,
        reg: &super::hub::Registration,
        limits: &SessionLimits,
    ) -> Result<&'static str>
    where
        I: Stream<Item = Inbound> + Unpin + Send,
    {
        // What a socket does now and then (a frame, a delivery, a resync)
        // is boxed while it runs: inline, the largest of them sized this
        // future, and so every idle socket's task (`holdfast bench idle`).
        // Idle means nothing *from the client* (it pings); server traffic
        // does not keep a dead client alive.
        let mut last_heard = tokio::time::Instant::now();
        let mut resync_requests = self.chat.hub.resync_requests();
        // A whole node's sockets asked at once spread their reads.
        let mut resync_at: Option<tokio::time::Instant> = None;
        // Without the bus nothing live arrives from other nodes: then the
        // store is read instead, so no one waits for NATS to return.
        let mut bus_check = tokio::time::Instant::now();
        loop {
            let idle_deadline = last_heard + limits.idle_timeout;
            let gap_deadline = self.early.deadline();
            // One timer for every deadline: each `Sleep` is 112 bytes of
            // every idle socket's task.
            let wake = [gap_deadline, resync_at, Some(bus_check)].into_iter().flatten().fold(idle_deadline, Ord::min);
            self.corked = true;
            tokio::select! {
                biased;
                envelope = reg.mailbox.recv() => {
                    if let Some(reason) = Box::pin(self.deliver(&envelope)).await? {
                        return Ok(reason);
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    if idle_deadline <= now {
                        return Ok("idle");
                    }
                    if gap_deadline.is_some_and(|at| at <= now) {
                        Box::pin(self.fill_expired_gaps()).await?;
                    }
                    // A resync asked for and one for a bus that is down read
                    // the store once.
                    let asked = resync_at.take_if(|at| *at <= now).is_some();
                    let bus_down = bus_check <= now && !self.chat.bus.healthy();
                    if bus_check <= now {
                        bus_check = now + BUS_DOWN_POLL;
                    }
                    if asked || bus_down {
                        Box::pin(self.resync()).await?;
                    }
                }
                Ok(()) = resync_requests.changed() => {
                    let jitter = Duration::from_millis(rand::random_range(0..RESYNC_SPREAD_MS));
                    resync_at.get_or_insert(tokio::time::Instant::now() + jitter);
                }
                inbound = input.next() => {
                    last_heard = tokio::time::Instant::now();
                    match inbound {
                        None => return Ok("client closed"),
                        Some(Inbound::Other) => {
                            let err = Error::bad_request("frames must be JSON text");
                            self.send(error_frame(&err, None)).await?;
                        }
                        Some(Inbound::Text(text)) => match text_of(&text) {
                            Ok(text) => Box::pin(self.handle_text(text)).await?,
                            Err(err) => self.send(error_frame(&err, None)).await?,
                        },
                    }
                }
            }
            // Events already waiting leave in the same write as what was
            // just sent (under load: an ack and the sender's own message).
            for _ in 0..MAX_COALESCED {
                let Some(envelope) = reg.mailbox.try_recv() else { break };
                if let Some(reason) = Box::pin(self.deliver(&envelope)).await? {
                    return Ok(reason);
                }
            }
            self.uncork().await?;
        }
    }

    async fn handle_text(&mut self, text: &str) -> Result<()> {
        let frame = match parse_frame(text) {
            Ok(f) => f,
            Err(err) => return self.send(error_frame(&err, None)).await,
        };
        let admitted = match frame {
            ClientFrame::Ping {} => None,
            _ => match self.chat.admission.enter(Lane::Chat).await {
                Ok(permit) => Some(permit),
                Err(err) => return self.send(error_frame(&err, frame_ref(&frame))).await,
            },
        };
        let outcome = self.handle(&frame).await;
        drop(admitted);
        match outcome {
            Ok(Some(reply)) => self.send(reply).await,
            Ok(None) => Ok(()),
            Err(err) => {
                if err.is_server_fault() {
                    tracing::error!(error = ?err, "socket frame failed");
                }
                self.send(error_frame(&err, frame_ref(&frame))).await
            }
        }
    }

    /// The frame's answer. It reads the frame and the peer in place: a
    /// message copies neither (only the rare frames that hand a field on
    /// clone it).
    async fn handle(&mut self, frame: &ClientFrame) -> Result<Option<Bytes>> {
        let chat = self.chat.clone();
        // The applied change is the caller's to keep: its fields move.
        let ack = |a: Applied| {
            Some(encode(&ServerFrame::Ack {
                client_id: a.event.client_id.unwrap_or_default(),
                conv: a.event.conversation_id,
                seq: a.event.seq,
                id: a.event.id,
                duplicate: a.duplicate,
            }))
        };
        match (&self.peer, frame) {
            (_, ClientFrame::Ping {}) => Ok(Some(encode(&ServerFrame::Pong))),
            (_, ClientFrame::Hello { .. }) => Err(Error::bad_request("already said hello")),
            (Peer::Visitor(v), ClientFrame::Send { conv, client_id, body, greeting, attachments }) => {
                let greeting = greeting.as_deref();
                Ok(ack(chat.visitor_send(v, conv.as_deref(), client_id, body, greeting, attachments).await?))
            }
            (Peer::Agent(a), ClientFrame::Send { conv: Some(conv), client_id, body, attachments, .. }) => {
                Ok(ack(chat.agent_send(a, conv, client_id, body, attachments).await?))
            }
            (Peer::Agent(_), ClientFrame::Send { conv: None, .. }) => Err(Error::bad_request("agents must name conv")),
            (Peer::Agent(a), ClientFrame::Note { conv, client_id, body }) => {
                Ok(ack(chat.agent_note(a, conv, client_id, body).await?))
            }
            (peer, ClientFrame::Typing { conv, on }) => chat.typing(peer, conv, *on).await.map(|_| None),
            (peer, ClientFrame::Read { conv, seq }) => chat.read(peer, conv, *seq).await.map(|_| None),
            (peer, ClientFrame::Close { conv }) => chat.close(peer, conv).await.map(|_| None),
            (Peer::Agent(a), ClientFrame::SetAvailability { availability }) => {
                chat.set_availability(a, *availability).await.map(|_| None)
            }
            (Peer::Agent(a), ClientFrame::Claim { conv }) => chat.claim(a, conv).await.map(|_| None),
            (Peer::Agent(a), ClientFrame::Transfer { conv, to_agent, to_group }) => {
                chat.transfer(a, conv, to_agent.as_deref(), to_group.as_deref()).await.map(|_| None)
            }
            (Peer::Visitor(v), ClientFrame::LeaveMessage { client_id, name, email, body }) => {
                Ok(ack(chat.leave_message(v, client_id, name.clone(), email.clone(), body).await?))
            }
            (Peer::Visitor(v), ClientFrame::Rate { conv, client_id, rating, comment }) => {
                Ok(ack(chat.rate(v, conv, client_id, *rating, comment.clone()).await?))
            }
            (Peer::Visitor(v), ClientFrame::Identify { name, email, page_url }) => {
                let update = VisitorUpdate {
                    name: clean_field(name.clone(), 200, "name")?,
                    email: clean_field(email.clone(), 254, "email")?,
                    page_url: clean_field(page_url.clone(), 2048, "page_url")?,
                    ..Default::default()
                };
                if let Some(e) = &update.email
                    && !crate::auth::valid_email(e)
                {
                    return Err(Error::bad_request("email is not a valid address"));
                }
                chat.store.update_visitor(&v.visitor_id, update).await.map(|_| None)
            }
            (Peer::Agent(_), _) => Err(Error::forbidden("visitors only")),
            (Peer::Visitor(_), _) => Err(Error::forbidden("agents only")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of every type with every field it may carry.
    const EVERY_FIELD: &[&str] = &[
        r#"{"type":"hello","v":1,"token":"t","cursors":{"c1":1,"c2":2},"agents_version":"a"}"#,
        r#"{"type":"send","conv":"c","client_id":"m","body":"say \"hi\"\n","greeting":"g","attachments":["f"]}"#,
        r#"{"type":"typing","conv":"c","on":true}"#,
        r#"{"type":"read","conv":"c","seq":1}"#,
        r#"{"type":"set_availability","availability":"away"}"#,
        r#"{"type":"claim","conv":"c"}"#,
        r#"{"type":"transfer","conv":"c","to_agent":"a","to_group":"g"}"#,
        r#"{"type":"close","conv":"c"}"#,
        r#"{"type":"leave_message","client_id":"m","name":"n","email":"e","body":"b"}"#,
        r#"{"type":"rate","conv":"c","client_id":"m","rating":"good","comment":"x"}"#,
        r#"{"type":"identify","name":"n","email":"e","page_url":"u"}"#,
        r#"{"type":"note","conv":"c","client_id":"m","body":"b"}"#,
        r#"{"type":"ping"}"#,
    ];

    fn refused(text: &str) -> String {
        match parse_frame(text) {
            Ok(frame) => panic!("{text} was read as {frame:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn a_frame_naming_any_key_twice_is_refused_with_the_key() {
        let types: Vec<String> = EVERY_FIELD
            .iter()
            .map(|text| {
                let frame: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
                frame["type"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(types, CLIENT_FRAME_TYPES, "one frame of each type, in the protocol's order");
        for text in EVERY_FIELD {
            parse_frame(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let frame: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
            let open = &text[..text.len() - 1];
            for (key, value) in &frame {
                // The same key again, last, with the same value and with another.
                for again in [value.clone(), serde_json::json!("other")] {
                    let twice = format!("{open},{}:{again}}}", serde_json::Value::from(key.as_str()));
                    let why = refused(&twice);
                    assert!(why.contains(&format!("duplicate key \"{key}\"")), "{twice}: {why}");
                }
            }
        }
        // Inside the one map a frame holds, and spelled with an escape.
        let why = refused(r#"{"type":"hello","v":1,"token":"t","cursors":{"c1":1,"c\u0031":2}}"#);
        assert!(why.contains("duplicate key \"c1\""), "{why}");
        let why = refused(r#"{"type":"ping","typ\u0065":"send"}"#);
        assert!(why.contains("duplicate key \"type\""), "{why}");
    }

    #[test]
    fn a_refused_frame_says_what_is_wrong_with_it() {
        assert!(refused("{").contains("malformed JSON"));
        assert!(refused(r#"{"conv":"c"}"#).contains("a frame needs a string \"type\""));
        assert!(refused(r#"{"type":"shout"}"#).contains("unknown frame type \"shout\""));
        let why = refused(r#"{"type":"read","conv":"c","seq":"one"}"#);
        assert!(why.starts_with("invalid read frame: invalid type"), "{why}");
        assert!(!why.contains("line 1"), "a frame is one line: {why}");
        assert!(refused(r#"{"type":"ping","extra":1}"#).contains("unknown field `extra`"));
    }
}
