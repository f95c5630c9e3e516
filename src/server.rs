//! Binding, serving and draining. `run` takes a bound listener and a
//! shutdown future, so tests start servers in-process on `127.0.0.1:0`.

use std::future::Future;
use std::net::SocketAddr;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::app::AppState;

/// Serve until `shutdown` completes, then drain: tell every socket to
/// reconnect elsewhere (after a jittered delay) and finish in-flight requests.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hub = state.chat.hub.clone();
    let probe_site = state.store.sites().await.ok().and_then(|s| s.into_iter().next());
    let probe_base = format!("http://{}", listener.local_addr()?);
    let _status_jobs = crate::status::start(state.status.clone(), state.store.clone(), &probe_base, probe_site);
    let app = crate::http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    // Chat frames are small and latency-bound: never wait for Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("draining: asking clients to reconnect");
            hub.drain();
        })
        .await
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
