//! Who may hold a connection, and for how long. Every accepted TCP
//! connection is counted here from accept until its socket closes (through
//! a WebSocket upgrade too), per client address and in total. While a
//! connection serves HTTP it is also listed in accept order, so that a full
//! server can close the oldest idle ones to make room, and its watchdog
//! (`server::serve_connection`) closes it when it sends no request head in
//! time.
//!
//! The limits, from the top: the open-file limit minus headroom for the
//! store, listeners and outgoing calls is `max`; the last `reserve` slots
//! below it are not for everyone. Once `max - reserve` connections are open,
//! a new one first closes the oldest idle HTTP connection (waiting for a
//! request head: never an upgraded WebSocket, never one mid-request) and
//! takes its place; when none is idle it is let into the reserve, where it
//! is served only what must answer while the rest is full (health and
//! login, `http::served_from_reserve`), once, without keep-alive. At `max`,
//! a new connection is refused.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a connection may take to speak, and how many one address and
/// the whole node may hold.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// A new connection must send a complete request head within this, and
    /// a keep-alive connection must finish a head within this of its first
    /// byte: slowloris and connections that never speak are closed.
    pub header_timeout: Duration,
    /// A keep-alive connection waiting this long for its next request is
    /// closed. Longer than the 60 s proxies keep an idle upstream connection
    /// (nginx), so the proxy closes first and never sends a request on a
    /// connection we are closing.
    pub keepalive_timeout: Duration,
    /// Most connections open at once. `None`: the open-file limit, raised
    /// to its hard limit, minus 256 descriptors for the store, listeners and
    /// outgoing calls.
    pub max: Option<usize>,
    /// Connections below `max` kept for health checks and login when the
    /// rest are held by sockets and requests. `None`: an eighth of `max`,
    /// 8 to 256.
    pub reserve: Option<usize>,
    /// Most connections one client address holds (an IPv6 address counts
    /// by its /64, what one subscriber gets). Hundreds: an office of agents
    /// behind one NAT each hold a socket and a few keep-alive connections.
    /// 0: no cap.
    pub per_address: usize,
    /// Addresses the per-address cap does not apply to: reverse proxies and
    /// load balancers, whose one address carries everyone's connections.
    pub per_address_exempt: Vec<IpAddr>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(75),
            max: None,
            reserve: None,
            per_address: 1000,
            per_address_exempt: vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(Ipv6Addr::LOCALHOST)],
        }
    }
}

/// Descriptors kept below the open-file limit for everything but client
/// connections.
const FD_HEADROOM: u64 = 256;

/// Raise the soft open-file limit to the hard one; what is left for client
/// connections after the headroom.
pub fn connection_cap_from_fd_limit() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    usize::try_from(limit.saturating_sub(FD_HEADROOM).max(16)).unwrap_or(usize::MAX)
}

/// Why the server closed a connection (the `reason` label of
/// `holdfast_tcp_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No complete request head in time.
    HeaderTimeout,
    /// A keep-alive connection with no next request in time.
    KeepaliveTimeout,
    /// Closed while idle to make room for a new connection.
    Evicted,
    /// Refused at accept: its address holds its cap.
    PerAddress,
    /// Refused at accept: the node holds `max` connections.
    Full,
    /// Let into the reserve, it asked for something else: answered 503.
    ReserveOnly,
}

impl CloseReason {
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::KeepaliveTimeout => "keepalive_timeout",
            CloseReason::Evicted => "evicted",
            CloseReason::PerAddress => "per_address",
            CloseReason::Full => "full",
            CloseReason::ReserveOnly => "reserve_only",
        }
    }

    pub fn count(self) {
        metrics::counter!("holdfast_tcp_connections_closed_total", "reason" => self.label()).increment(1);
    }
}

/// The node's connections: counts, and the HTTP ones in accept order.
pub struct Connections {
    limits: ConnectionLimits,
    max: usize,
    reserve: usize,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// Connections whose socket is open.
    open: usize,
    /// Of those, evicted ones not closed yet: their slot is already given
    /// to the connection that evicted them.
    closing: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Connections serving HTTP (not upgraded), oldest first.
    serving: BTreeMap<u64, Arc<Connection>>,
}

impl Connections {
    /// `fd_cap`: what the open-file limit leaves for connections, used
    /// when the limits name no `max`.
    pub fn new(limits: ConnectionLimits, fd_cap: impl FnOnce() -> usize) -> Connections {
        let max = limits.max.unwrap_or_else(fd_cap).max(2);
        let reserve = limits.reserve.unwrap_or((max / 8).clamp(8, 256)).clamp(1, max / 2);
        Connections { limits, max, reserve, registry: Mutex::default() }
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Most connections open at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections served without conditions; beyond, idle ones are
    /// evicted or the reserve is used.
    pub fn soft_limit(&self) -> usize {
        self.max - self.reserve
    }

    /// Connections whose socket is open now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry is counts and a map: consistent after any panic.
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The address a cap counts `peer` under, or `None` when it is exempt.
    fn address_key(&self, peer: IpAddr) -> Option<IpAddr> {
        let peer = peer.to_canonical();
        if self.limits.per_address == 0 || self.limits.per_address_exempt.iter().any(|a| a.to_canonical() == peer) {
            return None;
        }
        Some(match peer {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        })
    }

    /// Admit a connection from `peer`, evicting an idle one if the node is
    /// at its soft limit, or say why not.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, CloseReason> {
        let key = self.address_key(peer);
        let mut registry = self.lock();
        if let Some(key) = key
            && registry.per_address.get(&key).is_some_and(|n| *n >= self.limits.per_address)
        {
            return Err(CloseReason::PerAddress);
        }
        let mut reserve = false;
        let taken = |r: &Registry| r.open.saturating_sub(r.closing);
        if taken(&registry) >= self.soft_limit() && !Self::evict_oldest_idle(&mut registry) {
            if taken(&registry) >= self.max {
                return Err(CloseReason::Full);
            }
            reserve = true;
        }
        registry.open += 1;
        if let Some(key) = key {
            *registry.per_address.entry(key).or_default() += 1;
        }
        registry.next_id += 1;
        let id = registry.next_id;
        let connection = Arc::new(Connection::new(id, reserve));
        registry.serving.insert(id, connection.clone());
        let open = Open { connections: self.clone(), connection: connection.clone(), key };
        Ok(Admitted { connection, open })
    }

    /// Close up to `n` idle HTTP connections, oldest first (accept fails
    /// for want of descriptors). Returns how many were asked to close.
    pub fn evict_idle(&self, n: usize) -> usize {
        let mut registry = self.lock();
        (0..n).take_while(|_| Self::evict_oldest_idle(&mut registry)).count()
    }

    fn evict_oldest_idle(registry: &mut Registry) -> bool {
        let victim = registry
            .serving
            .iter()
            .find(|(_, c)| c.waiting_for_head() && !c.is_evicting())
            .map(|(id, c)| (*id, c.clone()));
        let Some((id, victim)) = victim else { return false };
        registry.serving.remove(&id);
        registry.closing += 1;
        victim.evicting.store(true, Ordering::Relaxed);
        victim.wake.notify_one();
        true
    }

    /// The connection no longer serves HTTP (closed, or upgraded to a
    /// WebSocket): it can no longer be evicted.
    pub fn stop_serving(&self, id: u64) {
        self.lock().serving.remove(&id);
    }
}

/// A connection let in: its state, and the count it holds until its socket
/// closes.
pub struct Admitted {
    pub connection: Arc<Connection>,
    open: Open,
}

impl Admitted {
    /// The socket, carrying this connection's count with it (into a
    /// WebSocket after an upgrade).
    pub fn into_io(self, tcp: TcpStream) -> TrackedIo {
        TrackedIo { tcp, connection: self.connection, _open: self.open }
    }
}

/// Holds one connection's place in the counts until dropped with its socket.
struct Open {
    connections: Arc<Connections>,
    connection: Arc<Connection>,
    key: Option<IpAddr>,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut registry = self.connections.lock();
        registry.open = registry.open.saturating_sub(1);
        if let Some(key) = self.key
            && let Some(n) = registry.per_address.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                registry.per_address.remove(&key);
            }
        }
        if self.connection.evicting.load(Ordering::Relaxed) {
            registry.closing = registry.closing.saturating_sub(1);
        }
        registry.serving.remove(&self.connection.id);
    }
}

/// What the watchdog of one connection needs to know: whether a request is
/// in flight, and since when it has been waiting for a head. Written by the
/// connection's own task (its service and socket) and read by it; the
/// registry reads `waiting_for_head` and sets `evicting`.
pub struct Connection {
    id: u64,
    accepted: Instant,
    /// Let in beyond the soft limit: served only the reserve's routes.
    reserve: bool,
    in_flight: AtomicU32,
    requests: AtomicU64,
    /// Milliseconds after `accepted`; `NEVER` when not waiting.
    head_started_ms: AtomicU64,
    idle_since_ms: AtomicU64,
    upgraded: AtomicBool,
    evicting: AtomicBool,
    /// Wakes the watchdog when its deadline may have moved or it is evicted.
    wake: Notify,
}

const NEVER: u64 = u64::MAX;

impl Connection {
    fn new(id: u64, reserve: bool) -> Connection {
        Connection {
            id,
            accepted: Instant::now(),
            reserve,
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NEVER),
            idle_since_ms: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            evicting: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn is_reserve(&self) -> bool {
        self.reserve
    }

    pub fn is_evicting(&self) -> bool {
        self.evicting.load(Ordering::Relaxed)
    }

    /// Waiting for a request head: no request in flight, not upgraded.
    pub fn waiting_for_head(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && !self.upgraded.load(Ordering::Relaxed)
    }

    fn millis_since_accept(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    /// A request head was read: the handler has it.
    pub fn request_started(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(NEVER, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// The response was written (or the request abandoned): waiting again.
    pub fn request_finished(&self) {
        self.idle_since_ms.store(self.millis_since_accept(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Answered with 101: the socket becomes a WebSocket.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    /// Bytes arrived from the client. On an idle keep-alive connection they
    /// start a head, which now has `header_timeout` to complete.
    fn bytes_arrived(&self) {
        if self.upgraded.load(Ordering::Relaxed)
            || self.in_flight.load(Ordering::Relaxed) != 0
            || self.requests.load(Ordering::Relaxed) == 0
            || self.head_started_ms.load(Ordering::Relaxed) != NEVER
        {
            return;
        }
        self.head_started_ms.store(self.millis_since_accept(), Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// When the connection is to be closed if nothing happens, and why;
    /// `None` while a request is in flight.
    pub fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, CloseReason)> {
        if self.in_flight.load(Ordering::Relaxed) != 0 || self.upgraded.load(Ordering::Relaxed) {
            return None;
        }
        let at = |ms: u64, after: Duration| self.accepted + Duration::from_millis(ms) + after;
        if self.requests.load(Ordering::Relaxed) == 0 {
            return Some((self.accepted + limits.header_timeout, CloseReason::HeaderTimeout));
        }
        match self.head_started_ms.load(Ordering::Relaxed) {
            NEVER => Some((
                at(self.idle_since_ms.load(Ordering::Relaxed), limits.keepalive_timeout),
                CloseReason::KeepaliveTimeout,
            )),
            started => Some((at(started, limits.header_timeout), CloseReason::HeaderTimeout)),
        }
    }

    /// Resolves when the deadline may have moved or eviction was asked.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }
}

/// A client's TCP stream that tells its connection when bytes arrive and
/// gives back its place in the counts when dropped.
pub struct TrackedIo {
    tcp: TcpStream,
    connection: Arc<Connection>,
    _open: Open,
}

impl AsyncRead for TrackedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.connection.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, reserve: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            max: Some(max),
            reserve: Some(reserve),
            per_address,
            per_address_exempt: vec![IpAddr::from([10, 0, 0, 1])],
            ..ConnectionLimits::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_capped_but_not_a_proxy_and_ipv6_counts_by_its_64() {
        let connections = Arc::new(Connections::new(limits(100, 10, 2), || unreachable!()));
        let _a = [connections.admit(ip("192.0.2.7")).unwrap(), connections.admit(ip("192.0.2.7")).unwrap()];
        assert_eq!(connections.admit(ip("192.0.2.7")).err(), Some(CloseReason::PerAddress));
        assert!(connections.admit(ip("::ffff:192.0.2.7")).is_err(), "an IPv4-mapped address is the same address");
        assert!(connections.admit(ip("192.0.2.8")).is_ok());
        let _proxy: Vec<_> = (0..5).map(|_| connections.admit(ip("10.0.0.1")).unwrap()).collect();
        let _b = [connections.admit(ip("2001:db8::1")).unwrap(), connections.admit(ip("2001:db8::2")).unwrap()];
        assert!(connections.admit(ip("2001:db8::ffff")).is_err(), "one /64 is one subscriber");
        assert!(connections.admit(ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn a_closed_connection_gives_its_place_back() {
        let connections = Arc::new(Connections::new(limits(100, 10, 1), || unreachable!()));
        let first = connections.admit(ip("192.0.2.7")).unwrap();
        assert!(connections.admit(ip("192.0.2.7")).is_err());
        drop(first);
        assert!(connections.admit(ip("192.0.2.7")).is_ok());
        assert_eq!(connections.open(), 0);
    }

    #[test]
    fn at_the_soft_limit_the_oldest_idle_connection_makes_room() {
        let connections = Arc::new(Connections::new(limits(4, 2, 0), || unreachable!()));
        let oldest = connections.admit(ip("192.0.2.1")).unwrap();
        let busy = connections.admit(ip("192.0.2.2")).unwrap();
        busy.connection.request_started();
        // Two open: at the soft limit; the oldest is idle, so it goes.
        let third = connections.admit(ip("192.0.2.3")).unwrap();
        assert!(oldest.connection.is_evicting() && !busy.connection.is_evicting());
        assert!(!third.connection.is_reserve());
        // Its slot is given while its socket is still closing.
        drop(oldest);
        assert_eq!(connections.open(), 2);
    }

    #[test]
    fn with_nothing_idle_the_reserve_is_used_then_new_connections_are_refused() {
        let connections = Arc::new(Connections::new(limits(4, 2, 0), || unreachable!()));
        let held: Vec<_> = (0..2).map(|_| connections.admit(ip("192.0.2.1")).unwrap()).collect();
        for a in &held {
            a.connection.request_started();
            a.connection.upgraded();
        }
        let mut reserve = Vec::new();
        for _ in 0..2 {
            let admitted = connections.admit(ip("192.0.2.2")).unwrap();
            assert!(admitted.connection.is_reserve());
            admitted.connection.request_started();
            reserve.push(admitted);
        }
        assert_eq!(connections.admit(ip("192.0.2.3")).err(), Some(CloseReason::Full));
    }

    #[test]
    fn the_default_reserve_scales_with_the_limit() {
        let soft = |max| Connections::new(ConnectionLimits::default(), || max).soft_limit();
        assert_eq!(soft(64), 56);
        assert_eq!(soft(768), 672);
        assert_eq!(soft(65_280), 65_024);
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_and_a_served_one_the_keepalive_timeout() {
        let limits = ConnectionLimits::default();
        let c = Connection::new(1, false);
        assert_eq!(c.deadline(&limits).map(|(_, r)| r), Some(CloseReason::HeaderTimeout));
        c.request_started();
        assert_eq!(c.deadline(&limits), None, "no deadline while a request is in flight");
        c.request_finished();
        assert_eq!(c.deadline(&limits).map(|(_, r)| r), Some(CloseReason::KeepaliveTimeout));
        c.bytes_arrived();
        let (at, reason) = c.deadline(&limits).unwrap();
        assert_eq!(reason, CloseReason::HeaderTimeout, "a head begun has the header timeout");
        assert!(at <= Instant::now() + limits.header_timeout);
    }
}
