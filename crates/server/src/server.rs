//! Binding, serving and draining. `run` takes a bound listener and a
//! shutdown future, so tests start servers in-process on `127.0.0.1:0`.
//!
//! The accept loop is ours, not `axum::serve`, because every connection
//! needs a watchdog: `connections` decides who may connect, and each
//! connection's task closes it when it sends no request head in time
//! (`ConnectionLimits::header_timeout`, `keepalive_timeout`) or when a
//! full server evicts it. hyper's own `header_read_timeout` is not used: it
//! starts whenever hyper waits for a head, idle keep-alive included, so one
//! duration would bound both the few seconds a head may take and the
//! minute a proxy keeps an idle upstream connection.

mod connections;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use connections::{Admitted, Connection};
pub use connections::{CloseReason, ConnectionLimits, Connections, connection_cap_from_fd_limit};

use crate::app::AppState;
use crate::error::Error;

/// How long the accept loop pauses when accept fails for want of
/// descriptors (after closing idle connections): long enough not to spin,
/// short enough that health checks hardly notice.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Idle connections closed at once when accept fails for want of
/// descriptors.
const EVICT_ON_ACCEPT_ERROR: usize = 8;
/// Largest read buffer of one HTTP connection (hyper's default is ~400 KiB).
const READ_BUFFER: usize = 64 * 1024;

/// Serve until `shutdown` completes, then drain: tell every socket to
/// reconnect elsewhere (after a jittered delay) and finish in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hub = state.chat.hub.clone();
    let bus = state.chat.bus.clone();
    let connections = state.connections.clone();
    let probe_site = state.store.sites().await.ok().and_then(|s| s.into_iter().next());
    let probe_base = format!("http://{}", listener.local_addr()?);
    let _status_jobs = crate::status::start(
        state.status.clone(),
        state.store.clone(),
        state.outbox.clone(),
        crate::status::runner::SideConfig {
            retention: state.config.retention.clone(),
            report_summaries: state.config.report_summaries.clone(),
        },
        &probe_base,
        probe_site,
    );
    let app = crate::http::router(state);
    // `drain` tells connections to finish; every connection task holds a
    // clone of `tasks_rx`, so `tasks.closed()` resolves when all have ended.
    let (drain, drain_rx) = watch::channel(false);
    let (tasks, tasks_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut last_accept_warning: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let task = ConnectionTask {
                    connections: connections.clone(),
                    app: app.clone(),
                    drain: drain_rx.clone(),
                    _running: tasks_rx.clone(),
                };
                task.spawn(tcp, peer);
            }
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                // Out of descriptors (EMFILE, ENFILE) or memory: free some
                // by closing idle connections, and do not spin meanwhile.
                metrics::counter!("holdfast_accept_errors_total").increment(1);
                let evicted = connections.evict_idle(EVICT_ON_ACCEPT_ERROR);
                if last_accept_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(error = %err, evicted, "cannot accept connections; closing idle ones and retrying");
                    last_accept_warning = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    () = &mut shutdown => break,
                }
            }
        }
    }
    drop(listener);
    tracing::info!("draining: asking clients to reconnect");
    hub.drain();
    let _ = drain.send(true);
    drop(tasks_rx);
    tasks.closed().await;
    bus.flush(DRAIN_FLUSH).await;
    Ok(())
}

/// How long a draining node waits for the bus to take what it still has
/// for the other nodes.
const DRAIN_FLUSH: Duration = Duration::from_secs(2);

/// Errors of one connection that came and went before accept took it;
/// the listener is fine.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(err.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset)
}

/// What serving one connection needs from the accept loop.
struct ConnectionTask {
    connections: Arc<Connections>,
    app: Router,
    drain: watch::Receiver<bool>,
    /// Dropped when the task ends; the drain waits for every one.
    _running: watch::Receiver<()>,
}

impl ConnectionTask {
    fn spawn(self, tcp: TcpStream, peer: SocketAddr) {
        let admitted = match self.connections.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(reason) => {
                refuse(&tcp, reason);
                return;
            }
        };
        // Chat frames are small and latency-bound: never wait for Nagle.
        let _ = tcp.set_nodelay(true);
        tokio::spawn(self.serve(admitted, tcp, peer));
    }

    /// Serve HTTP on the connection until it ends, is upgraded, times out
    /// or is evicted; drain it when the server stops.
    async fn serve(mut self, admitted: Admitted, tcp: TcpStream, peer: SocketAddr) {
        let connection = admitted.connection.clone();
        let connections = self.connections.clone();
        let limits = connections.limits();
        let service = request_service(self.app.clone(), connection.clone(), peer);
        let mut builder = hyper::server::conn::http1::Builder::new();
        // Heads are timed by the watchdog below; one request per reserve slot.
        builder.header_read_timeout(None).keep_alive(!connection.is_reserve());
        // hyper's read buffer grows to ~400 KiB on a fast upload; 64 KiB
        // reads as fast on loopback and keeps many uploads at once small
        // (`bench uploads`). Still far above any request head we accept.
        builder.max_buf_size(READ_BUFFER);
        let http = builder.serve_connection(TokioIo::new(admitted.into_io(tcp)), service).with_upgrades();
        // Boxed so that dropping it closes the socket now (unless upgraded:
        // the WebSocket holds the socket then, and its count with it).
        let mut http = Box::pin(http);
        let mut draining = false;
        let closed_by = loop {
            let deadline = connection.deadline(limits);
            tokio::select! {
                // The connection first: a head waiting in the socket is read
                // and counts as a request before the deadline is looked at.
                biased;
                result = http.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                    break connection.is_evicting().then_some(CloseReason::Evicted);
                }
                () = connection.changed() => {
                    if connection.is_evicting() {
                        if connection.waiting_for_head() {
                            break Some(CloseReason::Evicted);
                        }
                        // Mid-request: close once it is answered.
                        http.as_mut().graceful_shutdown();
                    }
                }
                () = sleep_until(deadline) => {
                    if let Some((at, reason)) = connection.deadline(limits)
                        && at <= tokio::time::Instant::now()
                    {
                        break Some(reason);
                    }
                }
                _ = self.drain.changed(), if !draining => {
                    draining = true;
                    http.as_mut().graceful_shutdown();
                }
            }
        };
        drop(http);
        connections.stop_serving(connection.id());
        if let Some(reason) = closed_by {
            reason.count();
        }
    }
}

async fn sleep_until(deadline: Option<(tokio::time::Instant, CloseReason)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The router as one connection's hyper service: gives handlers the peer's
/// address, tells the connection when a request starts and when its
/// response has been written, and answers a reserve connection's request
/// for anything but health and login with 503.
fn request_service(
    app: Router,
    connection: Arc<Connection>,
    peer: SocketAddr,
) -> impl hyper::service::Service<Request<Incoming>, Response = Response<TrackedBody>, Error = Infallible, Future: Send>
{
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        connection.request_started();
        let in_flight = InFlight(connection.clone());
        let refuse = connection.is_reserve() && !crate::http::served_from_reserve(req.uri().path());
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = if refuse {
                CloseReason::ReserveOnly.count();
                Error::Unavailable(rand::random_range(1..=5)).into_response()
            } else {
                match app.oneshot(req.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            };
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                in_flight.0.upgraded();
            }
            Ok(response.map(|body| TrackedBody { body, _in_flight: in_flight }))
        }
    })
}

/// A request of a connection, from its head until its response has been
/// written or abandoned.
struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that ends its request when hyper is done with it.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Say 503 to a connection refused at accept, if the socket takes it at
/// once (one write, never a wait), and close it.
fn refuse(tcp: &TcpStream, reason: CloseReason) {
    reason.count();
    let body = r#"{"error":{"code":"unavailable","message":"too many connections, retry later"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        rand::random_range(1..=5),
        body.len()
    );
    let _ = tcp.try_write(response.as_bytes());
}

/// Bind the listening socket with a deep accept backlog. A reconnect storm
/// is thousands of connects in the same second: with tokio's default of
/// 1,024 the kernel dropped their SYNs (`ListenOverflows` in the rehearsal)
/// and clients waited for SYN retransmits of 1, 3, 7 s. The kernel caps the
/// value at `net.core.somaxconn`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(65_535)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
