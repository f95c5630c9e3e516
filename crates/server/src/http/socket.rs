//! WebSocket endpoints: adapt axum's socket to the transport-free session
//! in `chat::session`. Buffers are kept small: an idle socket should cost
//! kilobytes, not tungstenite's default 128 KiB read buffer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{FutureExt, SinkExt, StreamExt, future};

use super::extract::ClientIp;
use crate::app::AppState;
use crate::chat::protocol::MAX_FRAME_BYTES;
use crate::chat::session::{self, Inbound, Outbound, PeerAddr, Side};
use crate::error::Error;

/// What a socket reads at once, and the buffer it keeps (it grows for a
/// bigger frame). Chat frames are a few hundred bytes; every idle socket
/// holds this much (`holdfast bench idle`).
const READ_BUFFER: usize = 2 * 1024;

/// Frames above this size are refused by the WebSocket layer itself (the
/// connection closes with 1009); between `MAX_FRAME_BYTES` and this, the
/// session answers with an error frame and the connection stays up.
const TRANSPORT_MAX_MESSAGE: usize = 4 * MAX_FRAME_BYTES;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/agent/socket", get(agent_socket)).route("/api/v1/visitor/socket", get(visitor_socket))
}

async fn agent_socket(State(state): State<AppState>, ClientIp(ip): ClientIp, ws: WebSocketUpgrade) -> Response {
    upgrade(state, ws, (Side::Agent, Some(ip)))
}

async fn visitor_socket(State(state): State<AppState>, ClientIp(ip): ClientIp, ws: WebSocketUpgrade) -> Response {
    upgrade(state, ws, (Side::Visitor, Some(ip)))
}

fn upgrade(state: AppState, ws: WebSocketUpgrade, side: (Side, PeerAddr)) -> Response {
    // Refuse cleanly before the process runs out of file descriptors.
    if state.open_sockets.load(Ordering::Relaxed) >= state.max_sockets {
        metrics::counter!("holdfast_sockets_refused_total").increment(1);
        return Error::Unavailable(rand::random_range(1..=5)).into_response();
    }
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(4 * 1024)
        .max_message_size(TRANSPORT_MAX_MESSAGE)
        .max_frame_size(TRANSPORT_MAX_MESSAGE)
        .on_upgrade(move |socket| serve(state, socket, side))
}

/// The socket's task. Not an `async fn`: one would keep its arguments (the
/// `WebSocket` moved into `split`, the whole `AppState`) in the task for
/// the socket's life, beside what they became; every idle socket paid
/// 0.5 KB for them.
fn serve(state: AppState, socket: WebSocket, side: (Side, PeerAddr)) -> impl Future<Output = ()> + Send {
    struct Open(Arc<AtomicUsize>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    state.open_sockets.fetch_add(1, Ordering::Relaxed);
    let open = Open(state.open_sockets.clone());
    let (sink, stream) = socket.split();
    let input = stream
        .take_while(|m| future::ready(matches!(m, Ok(msg) if !matches!(msg, Message::Close(_)))))
        .filter_map(|m| {
            future::ready(match m {
                Ok(Message::Text(t)) => Some(Inbound::Text(t.into())),
                Ok(Message::Binary(_)) => Some(Inbound::Other),
                _ => None, // pings are answered by the transport
            })
        });
    let output = sink.with(|o: Outbound| {
        future::ready(Ok::<_, axum::Error>(match o {
            Outbound::Text(bytes) => {
                Message::Text(Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from("{}")))
            }
            Outbound::Close(reason) => Message::Close(Some(axum::extract::ws::CloseFrame {
                code: axum::extract::ws::close_code::NORMAL,
                reason: Utf8Bytes::from_static(reason),
            })),
        }))
    });
    let run = session::run(
        state.chat.clone(),
        state.auth.clone(),
        side,
        state.config.sessions.clone(),
        Box::pin(input),
        Box::pin(output),
    );
    // A combinator, not `async move { run.await }`: that would hold `run`
    // twice, as its capture and as what it awaits.
    run.map(move |()| drop(open))
}
