//! Files and images in chat, through the real server on SQLite and on
//! PostgreSQL (and a two-node cluster): a visitor's screenshot and an
//! agent's PDF make the round trip with the same SHA-256, as durable
//! message events (idempotent by `client_id`, replayed on resume); hostile
//! files are never shown inline nor sniffed into something else, and their
//! names never become paths; over-large uploads are refused with 413 (a
//! 10 GB `Content-Length` before a byte is read); downloads need the right
//! to the conversation and a fresh, genuine signed link.

use std::collections::HashMap;
use std::io::{Read, Write};

use futures_util::StreamExt;
use holdfast_server::store::{Role, Site, now_ms};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::services::{Node, TestDb, both_stores, nats_prefix, nats_url};
use crate::support::{Client, TestServer, assert_error};

const VISITOR_SOCKET: &str = "/api/v1/visitor/socket";
const VISITOR_UPLOAD: &str = "/api/v1/visitor/attachments";
const AGENT_UPLOAD: &str = "/api/v1/attachments";

async fn sqlite() -> Node {
    Node::sqlite(|_| {}).await
}

async fn postgres() -> Node {
    Node::postgres(|_| {}).await
}

/// `name` as a query value.
pub(crate) fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `len` bytes that sniff as PNG.
pub(crate) fn png(len: usize) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    b.extend((b.len()..len).map(|i| (i * 7919 % 251) as u8));
    b
}

/// `len` bytes that sniff as PDF.
fn pdf(len: usize) -> Vec<u8> {
    let mut b = b"%PDF-1.4\n".to_vec();
    b.extend((b.len()..len).map(|i| (i * 31 % 253) as u8));
    b
}

async fn upload(s: &TestServer, path: &str, token: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let res = s
        .http
        .post(format!("{}{path}?name={}", s.base, encode(name)))
        .bearer_auth(token)
        .body(bytes)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// A signed link from `path` (`…/attachments/ID/link`): its status and URL.
async fn link(s: &TestServer, path: &str, token: &str) -> (u16, String) {
    let (status, body) = s.post(path, Some(token), json!({})).await;
    (status, body["url"].as_str().unwrap_or_default().to_owned())
}

async fn fetch(s: &TestServer, url: &str) -> reqwest::Response {
    s.http.get(format!("{}{url}", s.base)).send().await.unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The headers every download carries, whatever its type.
fn assert_guarded(res: &reqwest::Response) {
    assert_eq!(header(res, "x-content-type-options"), "nosniff");
    assert!(header(res, "content-security-policy").starts_with("sandbox"), "{:?}", res.headers());
}

/// A site with an online agent and a visitor on its socket.
struct Chat {
    site: Site,
    agent: Client,
    agent_token: String,
    visitor: Client,
    visitor_token: String,
}

async fn chat(s: &TestServer, name: &str) -> Chat {
    let site = s.new_site(name).await;
    let email = format!("ann@{}.example", name.to_lowercase());
    s.agent(&site, &email, 5).await;
    let (agent, agent_token) = s.online_agent(&email).await;
    let (_, visitor_token) = s.visitor(&site).await;
    let visitor = Client::connect(s, VISITOR_SOCKET, &visitor_token, HashMap::new()).await;
    Chat { site, agent, agent_token, visitor, visitor_token }
}

/// Send a message with attachments and wait for its ack (or error).
async fn send(c: &mut Client, conv: Option<&str>, client_id: &str, body: &str, ids: &[&str]) -> Value {
    let mut frame = json!({"type": "send", "client_id": client_id, "body": body, "attachments": ids});
    if let Some(conv) = conv {
        frame["conv"] = json!(conv);
    }
    c.send(frame).await;
    let cid = client_id.to_owned();
    c.wait_for(move |f| (f["type"] == "ack" || f["type"] == "error") && (f["client_id"] == cid || f["ref"] == cid))
        .await
}

/// An upload written by hand: the head with `framing`, then `parts` until
/// the server stops reading; the start of its answer.
async fn raw_upload(s: &TestServer, token: &str, framing: &str, parts: Vec<Vec<u8>>) -> String {
    let addr = s.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST {VISITOR_UPLOAD}?name=big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\n{framing}\r\n\r\n"
    );
    tokio::task::spawn_blocking(move || {
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        sock.write_all(head.as_bytes()).unwrap();
        for part in parts {
            // The server answers as soon as the limit is passed, and may
            // close before the rest is written.
            if sock.write_all(&part).is_err() {
                break;
            }
        }
        // Then stop writing: a body cut short ends here.
        let _ = sock.shutdown(std::net::Shutdown::Write);
        let mut buf = vec![0u8; 4096];
        let n = sock.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap()
}

/// The visitor pastes a screenshot, the agent opens it; the agent sends a
/// PDF, the visitor downloads it: the same bytes both ways. A resend is
/// the same message, and a resume replays it with its attachment.
async fn files_make_the_round_trip_as_durable_messages(node: Node) {
    let s = &node.server;
    let mut c = chat(s, "Files").await;
    let shot = png(600_000);
    let (status, up) = upload(s, VISITOR_UPLOAD, &c.visitor_token, "screenshot.png", shot.clone()).await;
    assert_eq!(status, 201, "{up}");
    assert_eq!(
        (up["type"].as_str(), up["inline"].as_bool(), up["size"].as_i64()),
        (Some("image/png"), Some(true), Some(600_000))
    );
    let id = up["id"].as_str().unwrap().to_owned();

    let ack = send(&mut c.visitor, None, "m1", "", &[&id]).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = c.agent.wait_for(|f| f["type"] == "message" && f["client_id"] == "m1").await;
    assert_eq!(seen["attachments"][0]["id"], id.as_str(), "{seen}");
    assert_eq!(seen["attachments"][0]["name"], "screenshot.png");
    let conv = seen["conv"].as_str().unwrap().to_owned();

    let (status, url) = link(s, &format!("/api/v1/attachments/{id}/link"), &c.agent_token).await;
    assert_eq!(status, 200);
    let res = fetch(s, &url).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "image/png");
    assert!(header(&res, "content-disposition").starts_with("inline"));
    assert_guarded(&res);
    assert_eq!(sha(&res.bytes().await.unwrap()), sha(&shot));

    // A resend (the widget lost the ack) is the same message.
    let again = send(&mut c.visitor, None, "m1", "", &[&id]).await;
    assert_eq!((again["duplicate"].as_bool(), &again["seq"]), (Some(true), &ack["seq"]), "{again}");

    // The agent's PDF, downloaded by the visitor.
    let manual = pdf(300_000);
    let (status, up) = upload(s, AGENT_UPLOAD, &c.agent_token, "Manual v2.pdf", manual.clone()).await;
    assert_eq!(status, 201, "{up}");
    assert_eq!((up["type"].as_str(), up["inline"].as_bool()), (Some("application/pdf"), Some(false)));
    let pdf_id = up["id"].as_str().unwrap().to_owned();
    assert_eq!(send(&mut c.agent, Some(&conv), "a1", "the manual", &[&pdf_id]).await["type"], "ack");
    c.visitor.wait_for(|f| f["type"] == "message" && f["client_id"] == "a1").await;
    let (status, url) = link(s, &format!("/api/v1/visitor/attachments/{pdf_id}/link"), &c.visitor_token).await;
    assert_eq!(status, 200);
    let res = fetch(s, &url).await;
    assert_eq!(header(&res, "content-type"), "application/octet-stream");
    let disposition = header(&res, "content-disposition").to_owned();
    assert!(disposition.starts_with("attachment;") && disposition.contains("Manual v2.pdf"), "{disposition}");
    assert_guarded(&res);
    assert_eq!(sha(&res.bytes().await.unwrap()), sha(&manual));

    // A fresh page replays the conversation, attachments and all.
    let mut later = Client::connect(s, VISITOR_SOCKET, &c.visitor_token, HashMap::from([(conv.clone(), 0)])).await;
    let replayed = later.wait_for(|f| f["type"] == "message" && f["client_id"] == "a1").await;
    assert_eq!(replayed["attachments"][0]["id"], pdf_id.as_str());
    let (status, events) = s.get(&format!("/api/v1/conversations/{conv}/events"), Some(&c.agent_token)).await;
    assert_eq!(status, 200);
    assert!(events.to_string().contains(&id), "history lists the screenshot: {events}");
    // Search finds a message by its file's name (and only by a name:
    // "inline" is a key of every attachment, not a word of any).
    let (status, hits) = s.get("/api/v1/search?q=SCREENSHOT", Some(&c.agent_token)).await;
    assert_eq!(status, 200);
    assert!(hits.to_string().contains(&conv), "{hits}");
    let (_, none) = s.get("/api/v1/search?q=inline", Some(&c.agent_token)).await;
    assert!(!none.to_string().contains(&conv), "{none}");
    let _ = c.site;
}

/// HTML named `.png`, SVG with a script, a GIF/HTML polyglot: none is
/// served as anything a browser would render as a page, and a JPEG loses
/// its EXIF (where the GPS position is). Names with `../` and a bidi
/// override are cleaned, and the file on disk is named by its hash alone.
async fn hostile_files_are_never_rendered_as_pages(node: Node) {
    let s = &node.server;
    let mut c = chat(s, "Hostile").await;
    let html = b"<!doctype html><html><script>alert(document.cookie)</script></html>".to_vec();
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec();
    let mut polyglot = b"GIF89a\x01\0\x01\0\0\0\0;".to_vec();
    polyglot.extend_from_slice(b"<html><script>alert(2)</script></html>");
    let exif = b"Exif\0\0GPSLatitude 59.91N 10.75E";
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, exif.len() as u8 + 2];
    jpeg.extend_from_slice(exif);
    jpeg.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x04, 0x00, 0x01]);
    jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x04, 0x01, 0x02, 0x10, 0x20, 0x30, 0xFF, 0xD9]);
    let cases: Vec<(&str, Vec<u8>, &str, bool, &str)> = vec![
        ("cat.png", html, "text/html", false, "cat.png"),
        ("logo.svg", svg, "image/svg+xml", false, "logo.svg"),
        ("poly.gif", polyglot, "image/gif", true, "poly.gif"),
        ("../../../etc/passwd", b"root:x:0:0".to_vec(), "text/plain", false, "passwd"),
        (
            "invoice\u{202E}fdp.exe",
            b"MZ\x90\0\x03".to_vec(),
            "application/vnd.microsoft.portable-executable",
            false,
            "invoicefdp.exe",
        ),
        ("holiday.jpg", jpeg.clone(), "image/jpeg", true, "holiday.jpg"),
    ];
    let mut ids = Vec::new();
    for (name, bytes, want_type, inline, want_name) in &cases {
        let (status, up) = upload(s, VISITOR_UPLOAD, &c.visitor_token, name, bytes.clone()).await;
        assert_eq!(status, 201, "{name}: {up}");
        assert_eq!(up["name"], *want_name, "{up}");
        assert_eq!(up["inline"], *inline, "{up}");
        if !want_type.starts_with("application/vnd") {
            assert_eq!(up["type"], *want_type, "{up}");
        }
        ids.push(up["id"].as_str().unwrap().to_owned());
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(send(&mut c.visitor, None, "h1", "look", &refs).await["type"], "ack");
    c.agent.wait_for(|f| f["type"] == "message" && f["client_id"] == "h1").await;
    for ((name, bytes, _, inline, want_name), id) in cases.iter().zip(&ids) {
        let (_, url) = link(s, &format!("/api/v1/attachments/{id}/link"), &c.agent_token).await;
        let res = fetch(s, &url).await;
        assert_eq!(res.status(), 200, "{name}");
        assert_guarded(&res);
        let disposition = header(&res, "content-disposition").to_owned();
        let content_type = header(&res, "content-type").to_owned();
        if *inline {
            assert!(disposition.starts_with("inline"), "{name}: {disposition}");
            assert!(content_type.starts_with("image/") && content_type != "image/svg+xml", "{content_type}");
        } else {
            assert!(disposition.starts_with("attachment"), "{name}: {disposition}");
            assert_eq!(content_type, "application/octet-stream", "{name}");
        }
        assert!(!disposition.contains("..") && !disposition.contains('/') && !disposition.contains('\u{202E}'));
        assert!(disposition.contains(want_name), "{disposition}");
        let got = res.bytes().await.unwrap();
        if *name == "holiday.jpg" {
            assert!(!got.windows(4).any(|w| w == b"Exif") && !got.windows(3).any(|w| w == b"GPS"), "EXIF kept");
            assert!(got.starts_with(&[0xFF, 0xD8]) && got.ends_with(&[0xFF, 0xD9]) && got.len() < bytes.len());
        } else {
            assert_eq!(sha(&got), sha(bytes), "{name}");
        }
    }
    if node.db.is_none() {
        // On SQLite every stored file is DATA/attachments/xx/<sha256>.
        for dir in std::fs::read_dir(s.dir.join("attachments")).unwrap().flatten() {
            let dir_name = dir.file_name().into_string().unwrap();
            if dir_name == "tmp" {
                continue;
            }
            for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
                let f = file.file_name().into_string().unwrap();
                assert!(f.len() == 64 && f.starts_with(&dir_name) && f.bytes().all(|b| b.is_ascii_hexdigit()), "{f}");
            }
        }
    }
}

/// A 10 GB `Content-Length` is refused before a byte is read; a body
/// that grows past the limit is cut off; a site's own limits hold, with
/// clear messages; an empty file and a bad query are 400s.
async fn oversized_and_refused_files_get_clear_answers(node: Node) {
    let s = &node.server;
    let c = chat(s, "Limits").await;
    // The head alone, over a raw socket: no client would send 10 GB.
    let answer = raw_upload(s, &c.visitor_token, "Content-Length: 10737418240", vec![vec![0u8; 4096]]).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\"") && answer.contains("limit"), "{answer}");
    // A chunked body, of no declared length, that grows past 10 MB.
    let chunks = (0..12).map(|_| {
        let mut chunk = format!("{:x}\r\n", 1024 * 1024).into_bytes();
        chunk.extend(vec![7u8; 1024 * 1024]);
        chunk.extend_from_slice(b"\r\n");
        chunk
    });
    let answer = raw_upload(s, &c.visitor_token, "Transfer-Encoding: chunked", chunks.collect()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");

    // An upload cut off half way (a closed tab, a killed client) leaves
    // no row and no spool file.
    let answer = raw_upload(s, &c.visitor_token, "Content-Length: 1000000", vec![vec![1u8; 100_000]]).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    let spool = s.dir.join("attachments").join("tmp");
    let started = std::time::Instant::now();
    while std::fs::read_dir(&spool).unwrap().count() > 0 {
        assert!(started.elapsed() < crate::support::WAIT, "a spool file stayed behind");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // A spool file a killed server left is removed by the cleanup once it
    // is an hour old; a younger one (an upload in progress) stays.
    let (stale, young) = (spool.join("killed-upload"), spool.join("in-progress"));
    std::fs::write(&stale, b"half a file").unwrap();
    std::fs::write(&young, b"a third of a file").unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(past).unwrap();
    s.state.attachments.clean_up().await;
    assert!(!stale.exists() && young.exists());
    std::fs::remove_file(young).unwrap();

    // The site's own limits, set by its admin.
    s.person(&c.site, "boss@limits.example", "Boss", Role::Admin).await;
    let (boss, _) = s.login("boss@limits.example", "password123").await;
    let settings = json!({"attachments": {"max_bytes": 1000, "types": ["image/*"]}});
    let res = s.http.put(format!("{}/api/v1/admin/site/settings", s.base)).bearer_auth(&boss).json(&settings);
    assert_eq!(res.send().await.unwrap().status(), 200);
    let (status, body) = upload(s, VISITOR_UPLOAD, &c.visitor_token, "a.png", png(2000)).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = upload(s, VISITOR_UPLOAD, &c.visitor_token, "a.pdf", pdf(500)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (415, Some("unsupported_type")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("application/pdf"));
    assert_eq!(upload(s, VISITOR_UPLOAD, &c.visitor_token, "a.png", png(900)).await.0, 201);
    // Agents read their own site's limits (for the console), nobody else's.
    let (status, limits) = s.get("/api/v1/attachments/limits", Some(&c.agent_token)).await;
    assert_eq!((status, limits), (200, json!({"max_bytes": 1000, "types": ["image/*"]})));
    let elsewhere = s.new_site("Unlimited").await;
    s.agent(&elsewhere, "al@unlimited.example", 5).await;
    let (al, _) = s.login("al@unlimited.example", "password123").await;
    let (_, theirs) = s.get("/api/v1/attachments/limits", Some(&al)).await;
    assert_eq!(theirs["max_bytes"], 10 * 1024 * 1024);
    assert_eq!(s.get("/api/v1/attachments/limits", Some(&c.visitor_token)).await.0, 401);
    let bad = json!({"attachments": {"max_bytes": 0}});
    let res = s.http.put(format!("{}/api/v1/admin/site/settings", s.base)).bearer_auth(&boss).json(&bad);
    assert_eq!(res.send().await.unwrap().status(), 400);

    assert_eq!(upload(s, VISITOR_UPLOAD, &c.visitor_token, "empty.png", vec![]).await.0, 400);
    let res = s.http.post(format!("{}{VISITOR_UPLOAD}?nom=x", s.base)).bearer_auth(&c.visitor_token).body("x");
    assert_eq!(res.send().await.unwrap().status(), 400);
    let res = s.http.post(format!("{}{VISITOR_UPLOAD}", s.base)).body("x").send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = s.http.post(format!("{}{AGENT_UPLOAD}", s.base)).bearer_auth(&c.visitor_token).body("x");
    assert_eq!(res.send().await.unwrap().status(), 401);
}

/// Nobody downloads across visitors or sites, an upload no message took
/// is nobody's to download or to send, and a link that expired, was
/// forged or names another file opens nothing.
async fn downloads_need_the_right_to_the_conversation(node: Node) {
    let s = &node.server;
    let mut c = chat(s, "Mine").await;
    let (status, up) = upload(s, VISITOR_UPLOAD, &c.visitor_token, "mine.png", png(5000)).await;
    assert_eq!(status, 201);
    let id = up["id"].as_str().unwrap().to_owned();
    // Not yet in a message: no link, not even for its uploader.
    assert_eq!(link(s, &format!("/api/v1/visitor/attachments/{id}/link"), &c.visitor_token).await.0, 404);

    // Another visitor of the site cannot put it in their message.
    let (_, other_token) = s.visitor(&c.site).await;
    let mut other = Client::connect(s, VISITOR_SOCKET, &other_token, HashMap::new()).await;
    assert_error(&send(&mut other, None, "o1", "", &[&id]).await, "not_found");

    assert_eq!(send(&mut c.visitor, None, "v1", "", &[&id]).await["type"], "ack");
    c.agent.wait_for(|f| f["type"] == "message" && f["client_id"] == "v1").await;

    // Another visitor of the site, an agent of another site: not found.
    assert_eq!(link(s, &format!("/api/v1/visitor/attachments/{id}/link"), &other_token).await.0, 404);
    let elsewhere = s.new_site("Elsewhere").await;
    s.agent(&elsewhere, "eve@elsewhere.example", 5).await;
    let (eve, _) = s.login("eve@elsewhere.example", "password123").await;
    assert_eq!(link(s, &format!("/api/v1/attachments/{id}/link"), &eve).await.0, 404);
    let (_, eve_visitor) = s.visitor(&elsewhere).await;
    assert_eq!(link(s, &format!("/api/v1/visitor/attachments/{id}/link"), &eve_visitor).await.0, 404);
    // A visitor token is no agent's, and the other way round.
    assert_eq!(link(s, &format!("/api/v1/attachments/{id}/link"), &c.visitor_token).await.0, 401);
    assert_eq!(link(s, &format!("/api/v1/visitor/attachments/{id}/link"), &c.agent_token).await.0, 401);
    let long = "x".repeat(1000);
    assert_eq!(link(s, &format!("/api/v1/attachments/{long}/link"), &c.agent_token).await.0, 404);

    // The agent's own link works; forged, expired and borrowed ones do not.
    let (status, url) = link(s, &format!("/api/v1/attachments/{id}/link"), &c.agent_token).await;
    assert_eq!(status, 200);
    assert_eq!(fetch(s, &url).await.status(), 200);
    let download = |token: &str| format!("/api/v1/attachments/{id}/download?t={token}");
    let forged = holdfast_server::auth::tokens::Tokens::new(b"not the server's key")
        .issue_attachment(&id, now_ms() + 60_000)
        .unwrap();
    let expired = s.state.auth.tokens.issue_attachment(&id, now_ms() - 2_000).unwrap();
    let (_, up2) = upload(s, VISITOR_UPLOAD, &c.visitor_token, "b.png", png(100)).await;
    let borrowed = s.state.auth.tokens.issue_attachment(up2["id"].as_str().unwrap(), now_ms() + 60_000).unwrap();
    for token in [forged.as_str(), expired.as_str(), borrowed.as_str(), "garbage"] {
        let res = fetch(s, &download(token)).await;
        assert_eq!(res.status(), 403, "{token}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
    }
    assert_eq!(fetch(s, &format!("/api/v1/attachments/{id}/download")).await.status(), 400);

    // An upload no message takes is dropped by the cleanup, with its bytes;
    // a sent one stays.
    let (_, orphan) = upload(s, VISITOR_UPLOAD, &c.visitor_token, "never-sent.png", png(3000)).await;
    let orphan = orphan["id"].as_str().unwrap().to_owned();
    let orphan_sha = s.state.store.attachment(&orphan).await.unwrap().unwrap().sha256;
    // On SQLite a file younger than an hour is spared: make them older.
    age_files(s);
    let dropped = s.state.store.drop_orphan_attachments(now_ms() + 1).await.unwrap();
    assert_eq!(dropped, 2, "the two uploads never sent");
    assert!(s.state.store.attachment(&orphan).await.unwrap().is_none());
    assert!(s.state.store.attachment(&id).await.unwrap().is_some());
    assert_eq!(chunks_left(s, &orphan_sha).await, 0, "the orphan's bytes are gone");
    assert_error(&send(&mut c.visitor, None, "v2", "", &[&orphan]).await, "not_found");

    // An erased visitor's files: no link at once, gone at the next cleanup.
    let sha = s.state.store.attachment(&id).await.unwrap().unwrap().sha256;
    let visitor_id = s.state.auth.tokens.verify_visitor(&c.visitor_token).unwrap().sub;
    s.person(&c.site, "boss@mine.example", "Boss", Role::Admin).await;
    let (boss, _) = s.login("boss@mine.example", "password123").await;
    let (status, _) = s.post(&format!("/api/v1/admin/visitors/{visitor_id}/erase"), Some(&boss), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(link(s, &format!("/api/v1/attachments/{id}/link"), &c.agent_token).await.0, 404);
    assert_eq!(fetch(s, &url).await.status(), 404, "a link issued before the erasure opens nothing");
    assert_eq!(s.state.store.drop_orphan_attachments(now_ms() - 60_000).await.unwrap(), 1);
    assert!(s.state.store.attachment(&id).await.unwrap().is_none());
    assert_eq!(chunks_left(s, &sha).await, 0, "the erased file's bytes are gone");
}

/// How many chunks of these bytes the store still has.
async fn chunks_left(s: &TestServer, sha256: &str) -> usize {
    match s.state.store.attachment_bytes(sha256).await {
        Ok(bytes) => bytes.count().await,
        Err(_) => 0,
    }
}

/// Date every stored file of a SQLite data dir two hours back.
fn age_files(s: &TestServer) {
    let Ok(dirs) = std::fs::read_dir(s.dir.join("attachments")) else { return };
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for dir in dirs.flatten().filter(|d| d.file_name() != "tmp") {
        for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
            std::fs::File::options().write(true).open(file.path()).unwrap().set_modified(past).unwrap();
        }
    }
}

both_stores!(
    files_make_the_round_trip_as_durable_messages,
    hostile_files_are_never_rendered_as_pages,
    oversized_and_refused_files_get_clear_answers,
    downloads_need_the_right_to_the_conversation,
);

/// An upload counts against the site's flood limits like a message
/// (visitors come "from" an address through a trusted proxy here, as
/// loopback is exempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_count_against_the_flood_limits() {
    let s = TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let site = s.new_site("Flood").await;
    let mut settings = site.settings.clone();
    settings["visitor_limits"] = json!({"messages_per_visitor_per_minute": 2});
    s.state.store.set_site_settings(&site.id, &settings).await.unwrap();
    s.state.chat.site_changed(&site.id).await;
    let (_, token) = s.visitor(&site).await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let res = s
            .http
            .post(format!("{}{VISITOR_UPLOAD}?name=f{i}.png", s.base))
            .bearer_auth(&token)
            .header("x-forwarded-for", "203.0.113.5")
            .body(png(500 + i))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 429]);
}

/// Cluster: a file uploaded through one node is served by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_uploaded_on_one_node_is_served_by_the_other() {
    let db = TestDb::create().await;
    let prefix = nats_prefix();
    let node = |db: String, prefix: String| {
        TestServer::start_with(move |c| {
            c.database_url = Some(db);
            c.nats_url = Some(nats_url());
            c.nats_prefix = prefix;
            c.database_max_connections = 6;
        })
    };
    let a = node(db.url.clone(), prefix.clone()).await;
    let b = node(db.url.clone(), prefix.clone()).await;
    let mut c = chat(&a, "Cluster").await;
    let shot = png(700_000);
    let (status, up) = upload(&a, VISITOR_UPLOAD, &c.visitor_token, "shot.png", shot.clone()).await;
    assert_eq!(status, 201);
    let id = up["id"].as_str().unwrap().to_owned();
    assert_eq!(send(&mut c.visitor, None, "c1", "", &[&id]).await["type"], "ack");
    // The agent's link from node B, opened on node B; the visitor's from A, opened on B.
    let (status, url) = link(&b, &format!("/api/v1/attachments/{id}/link"), &c.agent_token).await;
    assert_eq!(status, 200);
    let res = fetch(&b, &url).await;
    assert_eq!(res.status(), 200);
    assert_eq!(sha(&res.bytes().await.unwrap()), sha(&shot));
    let (_, url) = link(&a, &format!("/api/v1/visitor/attachments/{id}/link"), &c.visitor_token).await;
    assert_eq!(sha(&fetch(&b, &url).await.bytes().await.unwrap()), sha(&shot));
}
