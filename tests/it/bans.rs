//! Bans through the real server, on SQLite and on PostgreSQL: an agent
//! bans a visitor and their address; the visitor's socket is closed with
//! `banned`, their session, hello, messages and offline messages are
//! refused (and so are other visitors from the address), others chat on;
//! an admin lists and lifts the ban. Another site's people can do none of
//! it. Visitors come "from" addresses through `X-Forwarded-For`, which the
//! server believes only from a trusted proxy (here: the loopback the tests
//! connect from) — tested both ways. Flood limits, set per site, refuse
//! what one visitor or address starts too fast with `rate_limited`.

use holdfast_server::config::Config;
use holdfast_server::store::Site;
use serde_json::{Value, json};

use crate::outbox::admin;
use crate::services::{Node, both_stores};
use crate::support::{Client, TestServer, assert_error};

const VISITOR_SOCKET: &str = "/api/v1/visitor/socket";

fn behind_proxy(c: &mut Config) {
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

async fn sqlite() -> Node {
    Node::sqlite(behind_proxy).await
}

async fn postgres() -> Node {
    Node::postgres(behind_proxy).await
}

/// `POST /api/v1/visitor/session` as a visitor at `from` (through the proxy).
async fn session_from(s: &TestServer, site: &Site, token: Option<&str>, from: &str) -> (u16, Value) {
    let body = json!({"widget_key": site.widget_key, "visitor_token": token});
    let res = s
        .http
        .post(format!("{}/api/v1/visitor/session", s.base))
        .header("x-forwarded-for", from)
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// A visitor session at `from` that must succeed: (visitor id, token).
async fn visitor_from(s: &TestServer, site: &Site, from: &str) -> (String, String) {
    let (status, body) = session_from(s, site, None, from).await;
    assert_eq!(status, 200, "{body}");
    (body["visitor_id"].as_str().unwrap().into(), body["visitor_token"].as_str().unwrap().into())
}

async fn connect_from(s: &TestServer, token: &str, from: &str) -> Result<Client, Value> {
    Client::try_connect_from(&s.ws_base, VISITOR_SOCKET, token, from).await
}

fn refused_as_banned(status: u16, body: &Value) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "banned", "{body}");
    assert_eq!(body["error"]["message"], "chat is unavailable", "neutral, says nothing of why: {body}");
}

async fn a_banned_visitor_and_address_are_refused_everywhere_until_lifted(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    admin(s.state.store.as_ref(), &site, "boss@shop.example").await;
    s.agent(&site, "ann@shop.example", 5).await;
    let (ann, _) = s.login("ann@shop.example", "password123").await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;

    // Eve writes from 203.0.113.9; Mallory is connected from there too;
    // Bob is elsewhere.
    let (eve_id, eve_token) = visitor_from(s, &site, "203.0.113.9").await;
    let mut eve = connect_from(s, &eve_token, "203.0.113.9").await.expect("eve connects");
    let ack = eve.say(None, "e1", "spam spam spam").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let conv = ack["conv"].as_str().unwrap().to_owned();
    let (_, mallory_token) = visitor_from(s, &site, "203.0.113.9").await;
    let mut mallory = connect_from(s, &mallory_token, "203.0.113.9").await.expect("mallory connects");

    // Ann bans Eve and her address for an hour.
    let ban_req = json!({"visitor_id": eve_id, "reason": "spam", "ip": true, "expires_in_minutes": 60});
    let (status, ban) = s.post("/api/v1/bans", Some(&ann), ban_req).await;
    assert_eq!(status, 201, "{ban}");
    assert_eq!(ban["cidr"], "203.0.113.9/32", "the forwarded address, not the proxy's: {ban}");
    assert_eq!(ban["in_force"], true);

    // Eve's socket is told, and closed; her chat is over.
    let refused = eve.wait_for(|f| f["type"] == "error").await;
    assert_error(&refused, "banned");
    assert!(eve.next().await.is_none(), "the socket closes");
    let (_, c) = s.get(&format!("/api/v1/conversations/{conv}"), Some(&ann)).await;
    assert_eq!(c["status"], "closed", "{c}");

    // Her session (from anywhere), her hello, and anyone new from her
    // address are refused.
    let (status, body) = session_from(s, &site, Some(&eve_token), "198.51.100.4").await;
    refused_as_banned(status, &body);
    let (status, body) = session_from(s, &site, None, "203.0.113.9").await;
    refused_as_banned(status, &body);
    let hello = connect_from(s, &eve_token, "198.51.100.4").await.err().expect("hello refused");
    assert_error(&hello, "banned");

    // Mallory, connected before the ban from that address: her message and
    // her offline message are refused.
    assert_error(&mallory.say(None, "m1", "me too").await, "banned");
    mallory.send(json!({"type": "leave_message", "client_id": "m2", "body": "call me"})).await;
    assert_error(&mallory.wait_for(|f| f["type"] == "error" && f["ref"] == "m2").await, "banned");

    // Bob chats on.
    let (_, bob_token) = visitor_from(s, &site, "198.51.100.4").await;
    let mut bob = connect_from(s, &bob_token, "198.51.100.4").await.expect("bob connects");
    assert_eq!(bob.say(None, "b1", "hello").await["type"], "ack");

    // An agent cannot list or lift; the admin lists it, with who and why.
    let (status, _) = s.get("/api/v1/admin/bans", Some(&ann)).await;
    assert_eq!(status, 403);
    let (status, list) = s.get("/api/v1/admin/bans", Some(&boss)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["reason"], "spam");
    assert_eq!(list[0]["visitor_id"], eve_id.as_str());
    let id = ban["id"].as_str().unwrap();
    let (status, _) = s.post(&format!("/api/v1/admin/bans/{id}/lift"), Some(&ann), json!({})).await;
    assert_eq!(status, 403, "agents do not lift");

    // The admin lifts it: Eve chats again, from her address too.
    let (status, lifted) = s.post(&format!("/api/v1/admin/bans/{id}/lift"), Some(&boss), json!({})).await;
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(lifted["in_force"], false);
    assert!(lifted["lifted_at"].is_i64(), "{lifted}");
    let (status, body) = session_from(s, &site, Some(&eve_token), "203.0.113.9").await;
    assert_eq!(status, 200, "{body}");
    let mut eve = connect_from(s, &eve_token, "203.0.113.9").await.expect("eve is back");
    assert_eq!(eve.say(None, "e2", "sorry").await["type"], "ack");
    let (_, list) = s.get("/api/v1/admin/bans", Some(&boss)).await;
    assert_eq!(list[0]["in_force"], false, "a lifted ban stays listed: {list}");
}

async fn another_sites_people_can_do_none_of_it(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    admin(s.state.store.as_ref(), &site, "boss@shop.example").await;
    s.agent(&site, "ann@shop.example", 5).await;
    let other = s.new_site("Other").await;
    admin(s.state.store.as_ref(), &other, "olga@other.example").await;
    s.agent(&other, "otto@other.example", 5).await;
    let (ann, _) = s.login("ann@shop.example", "password123").await;
    let (olga, _) = s.login("olga@other.example", "password123").await;
    let (otto, _) = s.login("otto@other.example", "password123").await;

    let (eve_id, eve_token) = visitor_from(s, &site, "203.0.113.9").await;
    let (status, ban) = s.post("/api/v1/bans", Some(&ann), json!({"visitor_id": eve_id, "reason": "abuse"})).await;
    assert_eq!(status, 201, "{ban}");
    let id = ban["id"].as_str().unwrap();

    // The other site's agent and admin cannot ban this site's visitor...
    for token in [&otto, &olga] {
        let (status, body) = s.post("/api/v1/bans", Some(token), json!({"visitor_id": eve_id, "reason": "x"})).await;
        assert_eq!(status, 404, "{body}");
    }
    // ...nor see or lift its bans.
    let (status, list) = s.get("/api/v1/admin/bans", Some(&olga)).await;
    assert_eq!((status, list.as_array().unwrap().len()), (200, 0), "{list}");
    let (status, _) = s.post(&format!("/api/v1/admin/bans/{id}/lift"), Some(&olga), json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = session_from(s, &site, Some(&eve_token), "198.51.100.4").await;
    refused_as_banned(status, &body);

    // A network banned by the other site bans it from that site only.
    let (status, _) = s.post("/api/v1/bans", Some(&otto), json!({"cidr": "198.51.100.0/24", "reason": "x"})).await;
    assert_eq!(status, 201);
    let (status, body) = session_from(s, &other, None, "198.51.100.4").await;
    refused_as_banned(status, &body);
    let (status, body) = session_from(s, &site, None, "198.51.100.4").await;
    assert_eq!(status, 200, "{body}");
}

async fn bad_bans_get_clear_errors(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    s.agent(&site, "ann@shop.example", 5).await;
    let (ann, _) = s.login("ann@shop.example", "password123").await;
    let (eve_id, _) = visitor_from(s, &site, "203.0.113.9").await;
    let cases = [
        (json!({"visitor_id": eve_id, "reason": "  "}), 400, "reason"),
        (json!({"visitor_id": eve_id, "reason": "x".repeat(501)}), 400, "longer"),
        (json!({"cidr": "0.0.0.0/0", "reason": "x"}), 400, "too wide"),
        (json!({"cidr": "2001:db8::/16", "reason": "x"}), 400, "too wide"),
        (json!({"cidr": "<script>", "reason": "x"}), 400, "not an address"),
        (json!({"visitor_id": eve_id, "ip": true, "cidr": "203.0.113.0/24", "reason": "x"}), 400, "either"),
        (json!({"ip": true, "reason": "x"}), 400, "name the visitor"),
        (json!({"reason": "x"}), 400, "name a visitor"),
        (json!({"visitor_id": eve_id, "reason": "x", "expires_in_minutes": 0}), 400, "expires_in_minutes"),
        (json!({"visitor_id": eve_id, "reason": "x", "expires_in_minutes": -5}), 400, ""),
        (json!({"visitor_id": eve_id, "reason": "x", "forever": true}), 400, "unknown field"),
        (json!({"visitor_id": "v".repeat(100), "reason": "x"}), 404, "visitor"),
        (json!({"visitor_id": "no-such-visitor", "reason": "x"}), 404, "visitor"),
    ];
    for (body, want, says) in cases {
        let (status, answer) = s.post("/api/v1/bans", Some(&ann), body.clone()).await;
        assert_eq!(status, want, "{body} → {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body} → {answer}");
    }
    let (status, _) = s.post("/api/v1/bans", None, json!({"visitor_id": eve_id, "reason": "x"})).await;
    assert_eq!(status, 401);
    let (status, _) = s.get("/api/v1/admin/bans?limit=abc", Some(&ann)).await;
    assert!(status == 400 || status == 403, "{status}");
}

async fn put_settings(s: &TestServer, token: &str, settings: &Value) -> (u16, Value) {
    let url = format!("{}/api/v1/admin/site/settings", s.base);
    let res = s.http.put(url).bearer_auth(token).json(settings).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Flood limits, set per site by its admin: new visitors per address,
/// chats per visitor, messages per visitor and per address. Over a limit
/// is `rate_limited` (with `Retry-After` over HTTP); other addresses,
/// visitors and sites are not affected.
async fn flood_limits_hold_per_site_visitor_and_address(node: Node) {
    let s = &node.server;
    let site = s.site().await;
    admin(s.state.store.as_ref(), &site, "boss@shop.example").await;
    let (boss, _) = s.login("boss@shop.example", "password123").await;
    let other = s.new_site("Other").await;
    let (_, mut settings) = s.get("/api/v1/admin/site", Some(&boss)).await;
    let settings = settings["settings"].take();
    let mut too_high = settings.clone();
    too_high["visitor_limits"]["messages_per_ip_per_minute"] = json!(100_001);
    let (status, body) = put_settings(s, &boss, &too_high).await;
    assert_eq!(status, 400, "{body}");
    let mut tight = settings.clone();
    tight["visitor_limits"] = json!({
        "sessions_per_ip_per_minute": 3, "conversations_per_visitor_per_hour": 1,
        "conversations_per_ip_per_hour": 0, "messages_per_visitor_per_minute": 5,
        "messages_per_ip_per_minute": 8,
    });
    let (status, body) = put_settings(s, &boss, &tight).await;
    assert_eq!(status, 200, "{body}");

    // Three new visitors from one address, then it must wait.
    let (_, a_token) = visitor_from(s, &site, "203.0.113.1").await;
    visitor_from(s, &site, "203.0.113.1").await;
    let (_, d_token) = visitor_from(s, &site, "203.0.113.1").await;
    let res = s
        .http
        .post(format!("{}/api/v1/visitor/session", s.base))
        .header("x-forwarded-for", "203.0.113.1")
        .json(&json!({"widget_key": site.widget_key}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // A returning visitor is not a new one; another address, or another
    // site, is not limited by this one.
    let (status, body) = session_from(s, &site, Some(&a_token), "203.0.113.1").await;
    assert_eq!(status, 200, "{body}");
    visitor_from(s, &site, "198.51.100.2").await;
    for _ in 0..4 {
        visitor_from(s, &other, "203.0.113.1").await;
    }

    // Five messages a minute per visitor.
    let mut a = connect_from(s, &a_token, "203.0.113.1").await.expect("a connects");
    for i in 0..5 {
        assert_eq!(a.say(None, &format!("a{i}"), "hi").await["type"], "ack");
    }
    assert_error(&a.say(None, "a5", "hi").await, "rate_limited");
    // Eight per address: d, from the same address, has three left.
    let mut d = connect_from(s, &d_token, "203.0.113.1").await.expect("d connects");
    for i in 0..3 {
        assert_eq!(d.say(None, &format!("d{i}"), "hi").await["type"], "ack");
    }
    assert_error(&d.say(None, "d3", "hi").await, "rate_limited");

    // One chat an hour per visitor: closing it and writing again is refused.
    let (_, b_token) = visitor_from(s, &site, "198.51.100.3").await;
    let mut b = connect_from(s, &b_token, "198.51.100.3").await.expect("b connects");
    let conv = b.say(None, "b0", "first chat").await["conv"].as_str().unwrap().to_owned();
    b.send(json!({"type": "close", "conv": conv})).await;
    b.wait_for(|f| f["type"] == "closed").await;
    assert_error(&b.say(None, "b1", "second chat").await, "rate_limited");
    b.send(json!({"type": "leave_message", "client_id": "b2", "body": "call me"})).await;
    assert_error(&b.wait_for(|f| f["type"] == "error" && f["ref"] == "b2").await, "rate_limited");
}

both_stores!(
    a_banned_visitor_and_address_are_refused_everywhere_until_lifted,
    another_sites_people_can_do_none_of_it,
    bad_bans_get_clear_errors,
    flood_limits_hold_per_site_visitor_and_address,
);

/// `X-Forwarded-For` names the client only when the request comes from a
/// trusted proxy; from anyone else it is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    for trusted in [false, true] {
        let s = TestServer::start_with(|c| {
            if trusted {
                behind_proxy(c)
            }
        })
        .await;
        let site = s.site().await;
        s.agent(&site, "ann@shop.example", 5).await;
        let (ann, _) = s.login("ann@shop.example", "password123").await;
        let (status, _) =
            s.post("/api/v1/bans", Some(&ann), json!({"cidr": "203.0.113.0/24", "reason": "flood"})).await;
        assert_eq!(status, 201);

        let (status, body) = session_from(&s, &site, None, "203.0.113.5").await;
        if trusted {
            refused_as_banned(status, &body);
        } else {
            assert_eq!(status, 200, "an untrusted peer's header is ignored: {body}");
        }
        // What the client itself wrote, left of the proxy's entry, is not
        // believed: the rightmost untrusted address is the client.
        let (status, body) = session_from(&s, &site, None, "203.0.113.5, 198.51.100.1").await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = session_from(&s, &site, None, "198.51.100.1, 203.0.113.5").await;
        assert_eq!(status == 403, trusted, "{body}");
        // The socket reads the same address.
        let (_, token) = visitor_from(&s, &site, "198.51.100.1").await;
        let hello = connect_from(&s, &token, "203.0.113.77").await;
        assert_eq!(hello.is_err(), trusted, "{:?}", hello.as_ref().err());
        if let Err(frame) = hello {
            assert_error(&frame, "banned");
        }
        s.stop().await;
    }
}
