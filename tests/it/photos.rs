//! Agent photos over HTTP, on SQLite and PostgreSQL: an agent uploads their
//! own (`PUT /api/v1/me/photo`, the body is the image); its URL is in their
//! profile, the site's agent lists, every console's `availability` frame and
//! the next welcome, and in the `assigned` event the visitor gets; anyone
//! loads it by that URL as the image it is, never as a page. What is not a
//! raster image (HTML, SVG with script, text, a PDF) is refused, as is one
//! too large; a JPEG loses its EXIF. An admin removes the photo of an agent
//! of their site, never of another site's.

use std::collections::HashMap;

use holdfast_server::store::Role;
use serde_json::Value;

use crate::services::TestDb;
use crate::support::{Client, TestServer};

/// A JPEG whose EXIF segment holds a GPS position.
fn jpeg_with_exif() -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8];
    let exif = b"Exif\0\0GPS 59.91N 10.75E secret";
    b.extend([0xFF, 0xE1]);
    b.extend(((exif.len() + 2) as u16).to_be_bytes());
    b.extend(exif);
    let quant = [0u8; 65];
    b.extend([0xFF, 0xDB]);
    b.extend(((quant.len() + 2) as u16).to_be_bytes());
    b.extend(quant);
    b.extend([0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0x56, 0xFF, 0xD9]);
    b
}

async fn put_photo(s: &TestServer, token: &str, bytes: Vec<u8>, content_type: &str) -> (u16, Value) {
    let res = s
        .http
        .put(format!("{}/api/v1/me/photo", s.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn agents_photos_are_set_shown_and_refused(s: TestServer) {
    let site = s.site().await;
    let other = s.new_site("Other").await;
    s.person(&site, "ann@example.com", "<img src=x onerror=alert(1)> Ann", Role::Agent).await;
    s.person(&site, "boss@example.com", "Boss", Role::Admin).await;
    s.person(&other, "olga@b.example", "Olga", Role::Admin).await;
    let (boss, _) = s.login("boss@example.com", "password123").await;
    let (olga, _) = s.login("olga@b.example", "password123").await;
    let mut boss_socket = Client::connect(&s, "/api/v1/agent/socket", &boss, HashMap::new()).await;
    let olga_socket = Client::connect(&s, "/api/v1/agent/socket", &olga, HashMap::new()).await;
    let (mut ann_socket, ann) = s.online_agent("ann@example.com").await;
    let ann_id = ann_socket.welcome["id"].as_str().unwrap().to_owned();

    // Not images: refused with the reason, whatever type the client claims.
    let refused: [(&[u8], &str); 5] = [
        (b"<html><script>alert(1)</script></html>", "image/png"),
        (b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>", "image/svg+xml"),
        (b"just some text", "image/jpeg"),
        (b"%PDF-1.4\n%%EOF\n", "image/gif"),
        (b"GIF89a<script>alert(1)</script>", "text/html"),
    ];
    for (bytes, claimed) in refused.iter().take(4) {
        let (status, body) = put_photo(&s, &ann, bytes.to_vec(), claimed).await;
        assert_eq!((status, body["error"]["code"].as_str()), (415, Some("unsupported_type")), "{body}");
    }
    // (The fifth, a GIF's header with script after it, is a GIF: below.)
    let (status, body) = put_photo(&s, &ann, vec![0xFF; 600 * 1024], "image/jpeg").await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("too_large")), "{body}");
    let (status, body) = put_photo(&s, &ann, Vec::new(), "image/png").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = put_photo(&s, &ann, b"\xFF\xD8\xFF\xE1\x00".to_vec(), "image/jpeg").await;
    assert_eq!(status, 400, "a damaged JPEG: {body}");
    let (status, _) = put_photo(&s, "not-a-token", crate::attachments::png(200), "image/png").await;
    assert_eq!(status, 401);
    let (_, me) = s.get("/api/v1/me", Some(&ann)).await;
    assert_eq!(me["photo_url"], Value::Null, "nothing refused was kept: {me}");

    // A JPEG: kept without its EXIF, at a versioned URL in the profile.
    let (status, profile) = put_photo(&s, &ann, jpeg_with_exif(), "application/octet-stream").await;
    assert_eq!(status, 200, "{profile}");
    let url = profile["photo_url"].as_str().expect("a photo URL").to_owned();
    assert!(url.starts_with(&format!("/api/v1/agents/{ann_id}/photo?v=")), "{url}");
    let res = s.http.get(format!("{}{url}", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("image/jpeg"));
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(header("content-security-policy").unwrap().contains("sandbox"));
    assert_eq!(header("cross-origin-resource-policy").as_deref(), Some("cross-origin"));
    let bytes = res.bytes().await.unwrap();
    assert!(bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9]));
    assert!(!bytes.windows(3).any(|w| w == b"GPS"), "the EXIF is gone");

    // The site's consoles hear it; another site's do not.
    let frame = boss_socket
        .wait_for(|f| {
            f["type"] == "availability" && f["agent"]["id"] == ann_id.as_str() && f["agent"]["photo_url"].is_string()
        })
        .await;
    assert_eq!(frame["agent"]["photo_url"], url.as_str());
    // Every list of the site's agents has it; the next welcome too.
    let (_, agents) = s.get("/api/v1/agents", Some(&boss)).await;
    let listed = agents.as_array().unwrap().iter().find(|a| a["id"] == ann_id.as_str()).unwrap();
    assert_eq!(listed["photo_url"], url.as_str());
    let (_, agents) = s.get("/api/v1/admin/agents", Some(&boss)).await;
    assert!(agents.to_string().contains(&url));
    let again = Client::connect(&s, "/api/v1/agent/socket", &boss, HashMap::new()).await;
    let welcomed = again.welcome["agents"].as_array().unwrap().iter().find(|a| a["id"] == ann_id.as_str()).unwrap();
    assert_eq!(welcomed["photo_url"], url.as_str());
    let (_, theirs) = s.get("/api/v1/agents", Some(&olga)).await;
    assert!(!theirs.to_string().contains(&ann_id), "{theirs}");
    assert!(!olga_socket.welcome.to_string().contains(&ann_id));

    // A visitor's chat: the `assigned` event names her with her photo.
    let (_, token) = s.visitor(&site).await;
    let mut visitor = Client::connect(&s, "/api/v1/visitor/socket", &token, HashMap::new()).await;
    let conv = visitor.say(None, "v1", "Hello").await["conv"].as_str().unwrap().to_owned();
    let assigned = visitor.wait_for(|f| f["type"] == "assigned").await;
    assert_eq!(assigned["agent"]["photo_url"], url.as_str(), "{assigned}");
    assert_eq!(assigned["agent"]["name"], "<img src=x onerror=alert(1)> Ann");
    ann_socket.wait_for(|f| f["type"] == "assigned" && f["conv"] == conv.as_str()).await;

    // A photo just under the limit passes (far over the JSON body limit).
    let (status, profile) = put_photo(&s, &ann, crate::attachments::png(512 * 1024), "image/png").await;
    assert_eq!(status, 200, "{profile}");
    // A new photo, a new URL; the old URL loads the current one.
    let (status, profile) = put_photo(&s, &ann, crate::attachments::png(300), "image/png").await;
    assert_eq!(status, 200, "{profile}");
    let png_url = profile["photo_url"].as_str().unwrap().to_owned();
    assert_ne!(png_url, url);
    let res = s.http.get(format!("{}{png_url}", s.base)).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.bytes().await.unwrap().to_vec(), crate::attachments::png(300));
    // A GIF header with script after it is served as a GIF, never as a page.
    let (status, profile) = put_photo(&s, &ann, refused[4].0.to_vec(), "text/html").await;
    assert_eq!(status, 200, "{profile}");
    let res = s.http.get(format!("{}{}", s.base, profile["photo_url"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "image/gif");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");

    // An admin of another site cannot remove it, an agent cannot remove a
    // colleague's; the site's admin can, and it is gone for everyone.
    let path = format!("/api/v1/admin/agents/{ann_id}/photo");
    assert_eq!(s.call(reqwest::Method::DELETE, &path, &olga, Value::Null).await.0, 404);
    assert_eq!(s.call(reqwest::Method::DELETE, &path, &ann, Value::Null).await.0, 403);
    let (_, me) = s.get("/api/v1/me", Some(&ann)).await;
    assert!(me["photo_url"].is_string(), "still there: {me}");
    let (status, removed) = s.call(reqwest::Method::DELETE, &path, &boss, Value::Null).await;
    assert_eq!((status, &removed["photo_url"]), (200, &Value::Null), "{removed}");
    assert_eq!(s.http.get(format!("{}{png_url}", s.base)).send().await.unwrap().status(), 404);
    boss_socket
        .wait_for(|f| {
            f["type"] == "availability" && f["agent"]["id"] == ann_id.as_str() && f["agent"]["photo_url"].is_null()
        })
        .await;
    let (_, log) = s.get("/api/v1/admin/audit", Some(&boss)).await;
    assert!(
        log.as_array().unwrap().iter().any(|e| e["action"] == "agent.photo_removed" && e["target"] == ann_id.as_str())
    );
    // Her own removal, and an unknown agent's photo.
    put_photo(&s, &ann, crate::attachments::png(100), "image/png").await;
    let (status, me) = s.call(reqwest::Method::DELETE, "/api/v1/me/photo", &ann, Value::Null).await;
    assert_eq!((status, &me["photo_url"]), (200, &Value::Null), "{me}");
    assert_eq!(s.http.get(format!("{}/api/v1/agents/nobody/photo", s.base)).send().await.unwrap().status(), 404);
    assert_eq!(s.call(reqwest::Method::DELETE, "/api/v1/admin/agents/nobody/photo", &boss, Value::Null).await.0, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_photos_on_sqlite() {
    agents_photos_are_set_shown_and_refused(TestServer::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_photos_on_postgres() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(|c| {
        c.database_url = Some(db.url.clone());
        c.database_max_connections = 6;
    })
    .await;
    agents_photos_are_set_shown_and_refused(server).await;
}
