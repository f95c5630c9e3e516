//! `holdfast storm visitor-flood`: one address opens visitor sessions and
//! sends messages as fast as it can while real visitors and an agent chat.
//! The server trusts loopback as its proxy (`--trusted-proxy 127.0.0.0/8`)
//! and every client names its address in `X-Forwarded-For`, so the flood
//! comes from one public address and each real visitor from another, as
//! behind a site's load balancer. The flood must be limited per address
//! (`429`/`rate_limited` with a retry time), every real visitor served,
//! and the chat's message p99 during the flood at most 1.2× its baseline
//! (the same form as `storm side-service`; the timing pair itself speaks
//! from loopback, which is never limited, so it measures only latency).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::client::connect_ws_for;
use super::scenarios::{Pair, next_json, on_own_runtime};
use super::server::Target;
use super::{Common, finish, percentile};

/// The flooding address (TEST-NET-3, never a real client).
const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66));
/// Tasks opening sessions at once for the flooder.
const SESSION_FLOODERS: usize = 6;
/// Real visitors arriving during the flood, each from its own address.
const REAL_VISITORS: u8 = 20;

/// What the flood got, counted as it goes.
#[derive(Default)]
struct FloodCounts {
    sessions: AtomicU64,
    sessions_admitted: AtomicU64,
    /// Refused with `429` and a `Retry-After`.
    sessions_limited: AtomicU64,
    messages: AtomicU64,
    messages_accepted: AtomicU64,
    messages_limited: AtomicU64,
    /// Anything else: a 5xx, a refused connection, another error.
    other: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A visitor session opened as `client`: its status, token and whether a
/// `Retry-After` came with it.
async fn session_as(
    http: &reqwest::Client,
    target: &Target,
    client: IpAddr,
) -> anyhow::Result<(u16, Option<String>, bool)> {
    let res = http
        .post(format!("{}/api/v1/visitor/session", target.base))
        .header("x-forwarded-for", client.to_string())
        .json(&json!({"widget_key": target.widget_key}))
        .send()
        .await?;
    let status = res.status().as_u16();
    let retry_after = res.headers().contains_key("retry-after");
    let body: Value = res.json().await.unwrap_or(Value::Null);
    Ok((status, body["visitor_token"].as_str().map(str::to_owned), retry_after))
}

/// A visitor's socket, said to be `client`'s, past its welcome.
async fn visitor_socket(target: &Target, client: IpAddr, token: &str) -> anyhow::Result<super::client::Ws> {
    let mut ws =
        connect_ws_for(target.addr, IpAddr::V4(Ipv4Addr::LOCALHOST), "/api/v1/visitor/socket", Some(client)).await?;
    ws.send(Message::Text(json!({"type": "hello", "v": 1, "token": token}).to_string().into())).await?;
    while next_json(&mut ws).await?["type"] != "welcome" {}
    Ok(ws)
}

/// Send `body` as the visitor (into `conv` once it has one): the ack or
/// the error that answers it.
async fn say(ws: &mut super::client::Ws, conv: &Option<String>, client_id: &str) -> anyhow::Result<Value> {
    let mut frame = json!({"type": "send", "client_id": client_id, "body": "BUY CHEAP WATCHES"});
    if let Some(c) = conv {
        frame["conv"] = json!(c);
    }
    ws.send(Message::Text(frame.to_string().into())).await?;
    loop {
        let f = next_json(ws).await?;
        let mine = f["client_id"] == client_id || f["ref"] == client_id;
        if mine && (f["type"] == "ack" || f["type"] == "error") {
            return Ok(f);
        }
    }
}

/// Open sessions as the flooder until `stop`.
async fn flood_sessions(http: reqwest::Client, target: Arc<Target>, counts: Arc<FloodCounts>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        add(&counts.sessions);
        match session_as(&http, &target, FLOODER).await {
            Ok((200, _, _)) => add(&counts.sessions_admitted),
            Ok((429, _, true)) => add(&counts.sessions_limited),
            _ => add(&counts.other),
        }
    }
}

/// Send messages as one of the flooder's visitors until `stop`.
async fn flood_messages(
    http: reqwest::Client,
    target: Arc<Target>,
    counts: Arc<FloodCounts>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let (_, token, _) = session_as(&http, &target, FLOODER).await?;
    let token = token.ok_or_else(|| anyhow::anyhow!("the flooder got no first session"))?;
    let mut ws = visitor_socket(&target, FLOODER, &token).await?;
    let mut conv = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        add(&counts.messages);
        let answer = say(&mut ws, &conv, &format!("spam-{n}")).await?;
        match (answer["type"].as_str(), answer["code"].as_str()) {
            (Some("ack"), _) => {
                add(&counts.messages_accepted);
                conv = answer["conv"].as_str().map(str::to_owned);
            }
            (Some("error"), Some("rate_limited")) => add(&counts.messages_limited),
            _ => add(&counts.other),
        }
    }
    Ok(())
}

/// Real visitors, each from its own address, open a session and write
/// once: how many were served (session, socket and message all taken).
async fn real_visitors(target: &Target) -> u64 {
    let mut served = 0;
    for i in 1..=REAL_VISITORS {
        let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, i));
        let attempt = async {
            let (status, token, _) = session_as(&target.http, target, client).await?;
            let token = token.filter(|_| status == 200).ok_or_else(|| anyhow::anyhow!("session {status}"))?;
            let mut ws = visitor_socket(target, client, &token).await?;
            let answer = say(&mut ws, &None, "hello").await?;
            anyhow::ensure!(answer["type"] == "ack", "refused: {answer}");
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => served += 1,
            Err(e) => eprintln!("  real visitor {client} not served: {e}"),
        }
    }
    served
}

/// Message round trips of the timing pair for `len`.
async fn rounds(pair: &mut Pair, len: Duration) -> anyhow::Result<Vec<f64>> {
    let started = Instant::now();
    let mut ms = Vec::new();
    while started.elapsed() < len {
        ms.push(pair.round().await?);
    }
    Ok(ms)
}

pub async fn visitor_flood(common: &Common) -> anyhow::Result<()> {
    eprintln!("storm visitor-flood: baseline → one address floods sessions and messages → after");
    let target = Arc::new(Target::start(1, &["--trusted-proxy", "127.0.0.0/8"], common).await?);
    let mut pair = Pair::open(&target).await?;
    pair.round().await?; // starts and routes the conversation
    let phase_len = Duration::from_secs(common.phase_s.max(3) * 2);

    let mut baseline = rounds(&mut pair, phase_len).await?;
    let counts = Arc::new(FloodCounts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    // The flood runs on a runtime of its own: its load must not queue the
    // timing pair's reads in this process.
    let flood = {
        let (target, counts, stop) = (target.clone(), counts.clone(), stop.clone());
        on_own_runtime("visitor-flood", 1, async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
            let mut tasks = Vec::new();
            for _ in 0..SESSION_FLOODERS {
                tasks.push(tokio::spawn(flood_sessions(http.clone(), target.clone(), counts.clone(), stop.clone())));
            }
            let messages = tokio::spawn(flood_messages(http, target, counts, stop));
            for t in tasks {
                t.await?;
            }
            messages.await?
        })
    };
    let started = Instant::now();
    let mut flooded = rounds(&mut pair, phase_len / 2).await?;
    let served = real_visitors(&target).await;
    flooded.extend(rounds(&mut pair, phase_len.saturating_sub(started.elapsed())).await?);
    stop.store(true, Ordering::Relaxed);
    flood.await??;
    // The flood's whole span, from its first task to its last answer: what
    // the limits refill over (requests in flight when it stops count too).
    let flood_s = began.elapsed().as_secs_f64();
    let mut after = rounds(&mut pair, phase_len).await?;

    let (base_p99, flood_p99, after_p99) =
        (percentile(&mut baseline, 99.0), percentile(&mut flooded, 99.0), percentile(&mut after, 99.0));
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "  message p99: baseline {base_p99:.1} ms, flood {flood_p99:.1} ms, after {after_p99:.1} ms \
         ({} / {} / {} round trips)",
        baseline.len(),
        flooded.len(),
        after.len()
    );
    finish(&[
        ("scenario", "visitor-flood".into()),
        ("flood_s", format!("{flood_s:.1}")),
        ("message_p99_baseline_ms", format!("{base_p99:.1}")),
        ("message_p99_flood_ms", format!("{flood_p99:.1}")),
        ("message_p99_ratio", format!("{:.2}", flood_p99 / base_p99.max(0.001))),
        ("flood_sessions", get(&counts.sessions).to_string()),
        ("flood_sessions_admitted", get(&counts.sessions_admitted).to_string()),
        ("flood_sessions_limited", get(&counts.sessions_limited).to_string()),
        ("flood_messages", get(&counts.messages).to_string()),
        ("flood_messages_accepted", get(&counts.messages_accepted).to_string()),
        ("flood_messages_limited", get(&counts.messages_limited).to_string()),
        ("flood_other", get(&counts.other).to_string()),
        ("real_visitors", REAL_VISITORS.to_string()),
        ("real_visitors_served", served.to_string()),
    ]);
    Ok(())
}
