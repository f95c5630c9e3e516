//! Connections that hold a slot without asking for anything: slowloris
//! heads, silent and idle keep-alive connections, one address opening
//! hundreds, a flood that fills the node. Each is done over real sockets;
//! what must hold is that they are closed in time and that health and login
//! are still answered.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use holdfast_server::config::Config;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::TestServer;

fn addr_of(server: &TestServer) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().expect("server address")
}

/// Timeouts long enough not to interfere with a test about something else.
fn patient(config: &mut Config) {
    config.connections.header_timeout = Duration::from_secs(30);
    config.connections.keepalive_timeout = Duration::from_secs(30);
}

/// A connection from `local` (any port) to `server`.
async fn connect_from(local: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(local, 0)).expect("bind the client's address");
    socket.connect(server).await.expect("connect")
}

/// One HTTP/1.1 request on `stream`, keeping it open; the status and body,
/// or `None` if the server closed the connection instead of answering.
async fn request(stream: &mut TcpStream, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: holdfast.test\r\n");
    if let Some(body) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or_default());
    stream.write_all(head.as_bytes()).await.ok()?;
    read_response(stream).await
}

/// A response with a `Content-Length`, read within 10 s.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let status = head.split(' ').nth(1)?.parse().ok()?;
                    return Some((status, String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned()));
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("an answer or a close within 10 s")
}

/// How long until the server closes `stream`, if it does within `limit`
/// (anything the server writes first, such as a 503, is read and ignored).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed).await.ok().map(|()| started.elapsed())
}

/// Send `head` one byte every `every` until the server closes the
/// connection (how long that took) or `limit` passes (`None`).
async fn drip(stream: TcpStream, head: &[u8], every: Duration, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    for byte in head {
        if write.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(every, read.read(&mut buf)).await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
    }
    panic!("the head was all sent before the limit: make it longer");
}

/// A request head that takes 20 s to drip at 10 bytes a second.
fn slow_head() -> Vec<u8> {
    format!("GET /livez HTTP/1.1\r\nHost: holdfast.test\r\nX-Slow: {}\r\n\r\n", "a".repeat(200)).into_bytes()
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_at_the_header_timeout() {
    let server = TestServer::start_with(|c| {
        c.connections.header_timeout = Duration::from_secs(1);
        c.connections.keepalive_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = addr_of(&server);

    // A new connection dripping its head, a byte every 100 ms.
    let stream = TcpStream::connect(addr).await.unwrap();
    let took = drip(stream, &slow_head(), Duration::from_millis(100), Duration::from_secs(6)).await;
    let took = took.expect("a slowloris head was still being read after 6 s");
    assert!(took < Duration::from_secs(3), "closed only after {took:?}");

    // A keep-alive connection that was answered once, then drips its next
    // head: the header timeout applies from its first byte, not the 30 s
    // a keep-alive connection may wait for a request.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut stream, "GET", "/livez", None).await, Some((200, "ok\n".into())));
    let took = drip(stream, &slow_head(), Duration::from_millis(100), Duration::from_secs(6)).await;
    let took = took.expect("a slowloris head on a keep-alive connection was still being read after 6 s");
    assert!(took < Duration::from_secs(3), "closed only after {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let server = TestServer::start_with(|c| {
        c.connections.header_timeout = Duration::from_secs(1);
        c.connections.keepalive_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = addr_of(&server);

    // Connections that never send a byte.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let closed = futures_util::future::join_all(silent.iter_mut().map(|s| closed_within(s, Duration::from_secs(4))));
    for (i, took) in closed.await.into_iter().enumerate() {
        assert!(took.is_some(), "silent connection {i} still open after 4 s");
    }

    // A keep-alive connection outlives the header timeout between requests
    // (that one bounds heads, not the wait for them) and is closed after
    // the keep-alive timeout.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut stream, "GET", "/livez", None).await, Some((200, "ok\n".into())));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        request(&mut stream, "GET", "/livez", None).await,
        Some((200, "ok\n".into())),
        "a keep-alive connection idle for 1.5 s was closed"
    );
    let took = closed_within(&mut stream, Duration::from_secs(5)).await;
    let took = took.expect("an idle keep-alive connection was still open after 5 s");
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}, before the keep-alive timeout");
    let metrics = server.http.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    for reason in ["header_timeout", "keepalive_timeout"] {
        let family = format!("holdfast_tcp_connections_closed_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&family), "no {family} in /metrics");
    }
    server.stop().await;
}

#[tokio::test]
async fn one_address_beyond_its_cap_is_refused_while_another_is_served() {
    let server = TestServer::start_with(|c| {
        patient(c);
        c.connections.per_address = 5;
        c.connections.per_address_exempt = Vec::new();
    })
    .await;
    let addr = addr_of(&server);
    let crowded: IpAddr = [127, 0, 0, 1].into();

    // Five connections from one address, each answered and kept open.
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from(crowded, addr).await;
        assert_eq!(request(&mut stream, "GET", "/livez", None).await, Some((200, "ok\n".into())));
        held.push(stream);
    }

    // The sixth is closed at once, with a 503 if it reads one.
    let mut sixth = connect_from(crowded, addr).await;
    match request(&mut sixth, "GET", "/livez", None).await {
        None => {}
        Some((status, _)) => assert_eq!(status, 503, "the sixth connection from one address was served"),
    }
    assert!(closed_within(&mut sixth, Duration::from_secs(2)).await.is_some(), "the sixth connection stays open");

    // Another address is served meanwhile (all of 127/8 is loopback).
    let mut other = connect_from([127, 0, 0, 2].into(), addr).await;
    assert_eq!(request(&mut other, "GET", "/livez", None).await, Some((200, "ok\n".into())));

    // The cap counts open connections: one closed, one more is let in.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from(crowded, addr).await;
        if request(&mut again, "GET", "/livez", None).await == Some((200, "ok\n".into())) {
            break;
        }
        assert!(Instant::now() < deadline, "a closed connection's place was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_node_full_of_idle_connections_still_answers_health_and_login() {
    let server = TestServer::start_with(|c| {
        patient(c);
        c.connections.max = Some(32);
        c.connections.reserve = Some(8);
        c.connections.per_address = 0;
    })
    .await;
    let addr = addr_of(&server);
    let site = server.site().await;
    server.agent(&site, "ada@full.test", 5).await;

    // Twice the node's limit in connections that send nothing.
    let mut flood = Vec::new();
    for _ in 0..64 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }

    let started = Instant::now();
    let mut probe = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut probe, "GET", "/livez", None).await, Some((200, "ok\n".into())));
    assert!(started.elapsed() < Duration::from_secs(2), "/livez took {:?}", started.elapsed());
    let mut probe = TcpStream::connect(addr).await.unwrap();
    let (status, _) = request(&mut probe, "GET", "/readyz", None).await.expect("/readyz answered");
    assert_eq!(status, 200);

    let login = json!({"email": "ada@full.test", "password": "password123"}).to_string();
    let mut agent = TcpStream::connect(addr).await.unwrap();
    let (status, body) = request(&mut agent, "POST", "/api/v1/auth/login", Some(&login)).await.expect("login answered");
    assert_eq!(status, 200, "login refused on a full node: {body}");

    // The oldest idle connections made room; the node never held more than
    // its limit.
    assert!(
        closed_within(&mut flood[0], Duration::from_secs(2)).await.is_some(),
        "the oldest idle connection was not evicted"
    );
    assert!(server.state.connections.open() <= 32, "{} connections open", server.state.connections.open());
    server.stop().await;
}

#[tokio::test]
async fn when_sockets_hold_every_slot_the_reserve_answers_health_and_login() {
    let server = TestServer::start_with(|c| {
        patient(c);
        c.connections.max = Some(24);
        c.connections.reserve = Some(8);
        c.connections.per_address = 0;
        c.sessions.hello_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = addr_of(&server);
    let site = server.site().await;
    server.agent(&site, "grace@full.test", 5).await;
    assert_eq!(server.state.max_sockets, 16, "sockets stop below the reserve");

    // WebSockets, which are never evicted, take every slot below the reserve.
    let mut sockets = Vec::new();
    for _ in 0..16 {
        let (ws, _) = tokio_tungstenite::connect_async(format!("{}/api/v1/visitor/socket", server.ws_base))
            .await
            .expect("socket below the cap");
        sockets.push(ws);
    }

    let mut probe = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut probe, "GET", "/livez", None).await, Some((200, "ok\n".into())));
    let mut probe = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut probe, "GET", "/readyz", None).await.map(|(s, _)| s), Some(200));
    let login = json!({"email": "grace@full.test", "password": "password123"}).to_string();
    let mut agent = TcpStream::connect(addr).await.unwrap();
    let (status, body) = request(&mut agent, "POST", "/api/v1/auth/login", Some(&login)).await.expect("login answered");
    assert_eq!(status, 200, "login refused on a full node: {body}");

    // The reserve is not for everything: anything else is told to retry.
    let mut other = TcpStream::connect(addr).await.unwrap();
    let (status, _) = request(&mut other, "GET", "/api/v1/banners", None).await.expect("an answer");
    assert_eq!(status, 503);
    server.stop().await;
}
