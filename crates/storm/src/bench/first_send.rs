//! `holdfast bench first-send`: what the first message into a long
//! conversation costs after a restart, when the writer knows nothing of
//! it yet, and whether a retry is still recognised across `kill -9`.
//! The history is written straight into the store while the server is
//! down (writing it over the protocol would take many minutes).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Ws, connect_ws};
use crate::scenarios::next_json;
use crate::server::Target;
use crate::{Common, finish};
use holdfast_server::store::sqlite::SqliteStore;
use holdfast_server::store::{Author, Change, REMEMBERED_MESSAGES, Store};

/// Writes handed to the store at once while the history is written.
const HISTORY_CHUNK: usize = 2000;

pub(super) async fn first_send(messages: usize) -> anyhow::Result<()> {
    anyhow::ensure!(messages >= 2, "--messages must be at least 2");
    eprintln!("bench first-send: a conversation of {messages} messages, then a restart");
    let mut target = Target::start(1, &[], &Common::local()).await?;
    let (visitor_id, token) = target.visitor_session().await?;
    let mut ws = visitor(&target, &token, None).await?;
    let first = send(&mut ws, None, "m1").await?;
    let conv = first["conv"].as_str().ok_or_else(|| anyhow!("no conversation in {first}"))?.to_owned();
    drop(ws);

    // The rest of the history, straight into the store of the killed server.
    target.kill9()?;
    let dir = target.data_dir().ok_or_else(|| anyhow!("no data dir"))?.to_owned();
    let store = SqliteStore::open(&dir).await.map_err(|e| anyhow!("cannot open {}: {e}", dir.display()))?;
    let written = Instant::now();
    let mut last_seq = 0;
    for chunk in (2..=messages).collect::<Vec<_>>().chunks(HISTORY_CHUNK) {
        let writes = chunk.iter().map(|i| {
            let change = Change::Message {
                author: Author::visitor(&visitor_id),
                client_id: format!("m{i}"),
                body: format!("history {i}"),
                attachments: Vec::new(),
                integration: None,
            };
            store.apply(&conv, change)
        });
        for applied in futures_util::future::join_all(writes).await {
            last_seq = last_seq.max(applied.map_err(|e| anyhow!("cannot write the history: {e}"))?.event.seq);
        }
        crate::scenarios::progress(&format!("history: {last_seq} events"));
    }
    eprintln!();
    eprintln!("history written in {:.1} s", written.elapsed().as_secs_f64());
    store.close().await;
    drop(store);

    target.restart_after_kill9().await?;
    let mut ws = visitor(&target, &token, Some((&conv, last_seq))).await?;
    let started = Instant::now();
    let after = send(&mut ws, Some(&conv), "after-restart").await?;
    let first_send_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    send(&mut ws, Some(&conv), "after-restart-2").await?;
    let warm_send_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The newest message of the history is in the window; the oldest is
    // not, once the history is longer than the window.
    let newest = send(&mut ws, Some(&conv), &format!("m{messages}")).await?;
    anyhow::ensure!(newest["duplicate"] == true, "a retry within the window was stored again: {newest}");
    let oldest_retried = if messages > REMEMBERED_MESSAGES + 1 {
        let oldest = send(&mut ws, Some(&conv), "m2").await?;
        if oldest["duplicate"] == true { "duplicate" } else { "new" }
    } else {
        "n/a"
    };
    drop(ws);

    // kill -9 right after the ack: the retry still finds the original.
    target.restart_after_kill9().await?;
    let mut ws = visitor(&target, &token, Some((&conv, last_seq))).await?;
    let retry = send(&mut ws, Some(&conv), "after-restart").await?;
    anyhow::ensure!(
        retry["duplicate"] == true && retry["seq"] == after["seq"],
        "after kill -9 the retry was not recognised: {retry} (original {after})"
    );
    let (_, storage_errors, _) = target.log.counts();
    finish(&[
        ("scenario", "first-send".into()),
        ("messages", messages.to_string()),
        ("first_send_ms", format!("{first_send_ms:.2}")),
        ("warm_send_ms", format!("{warm_send_ms:.2}")),
        ("retry_in_window", "duplicate".into()),
        ("retry_outside_window", oldest_retried.into()),
        ("retry_after_kill9", "duplicate".into()),
        ("storage_errors", storage_errors.to_string()),
    ]);
    Ok(())
}

/// A visitor socket past its welcome, resuming `conv` from `seq` if given.
async fn visitor(target: &Target, token: &str, cursor: Option<(&str, i64)>) -> anyhow::Result<Ws> {
    let mut ws = connect_ws(target.addr, IpAddr::V4(Ipv4Addr::LOCALHOST), "/api/v1/visitor/socket").await?;
    let mut hello = json!({"type": "hello", "v": 1, "token": token});
    if let Some((conv, seq)) = cursor {
        hello["cursors"] = json!({ conv: seq });
    }
    ws.send(Message::Text(hello.to_string().into())).await?;
    let welcome = next_json(&mut ws).await?;
    anyhow::ensure!(welcome["type"] == "welcome", "no welcome: {welcome}");
    Ok(ws)
}

/// Send a message and wait for its ack.
async fn send(ws: &mut Ws, conv: Option<&str>, client_id: &str) -> anyhow::Result<Value> {
    let mut frame = json!({"type": "send", "client_id": client_id, "body": format!("body of {client_id}")});
    if let Some(conv) = conv {
        frame["conv"] = json!(conv);
    }
    ws.send(Message::Text(frame.to_string().into())).await?;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let f = next_json(ws).await?;
            match f["type"].as_str() {
                Some("ack") if f["client_id"] == client_id => return Ok(f),
                Some("error") if f["ref"] == client_id => anyhow::bail!("{client_id} was refused: {f}"),
                _ => {}
            }
        }
    })
    .await?
}
