//! The attacks of the outside review, performed through the real interfaces:
//! locking an agent out of login, revoked tokens coming back after a
//! restart or on a node that missed the bus, frames that say one thing to
//! one parser and another to us, and the demo page. Each test here failed
//! on the code before its fix (see `docs/security.md`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use holdfast_server::auth::ratelimit::LoginLimits;
use holdfast_server::store::status::SubscriberKind;
use reqwest::header;
use serde_json::{Value, json};

use crate::services::TestDb;
use crate::support::{Client, TestServer, WAIT, assert_error};

/// An HTTP client whose connections come from `ip` (any of 127/8 reaches a
/// server on 127.0.0.1), so the server sees a different address.
fn client_from(ip: &str) -> reqwest::Client {
    let ip: IpAddr = ip.parse().unwrap();
    crate::support::http_builder().local_address(ip).build().unwrap()
}

async fn login_from(server: &TestServer, http: &reqwest::Client, body: Value) -> (u16, Value) {
    let res = http.post(format!("{}/api/v1/auth/login", server.base)).json(&body).send().await.expect("http");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Wrong passwords for one account from one address until it is refused,
/// or `limit` attempts; returns how many were refused with 429.
async fn guess(server: &TestServer, http: &reqwest::Client, email: &str, limit: usize) -> usize {
    let mut refused = 0;
    for i in 0..limit {
        let (status, _) = login_from(server, http, json!({"email": email, "password": format!("guess-{i}")})).await;
        assert!(status == 401 || status == 429, "a guess got {status}");
        refused += usize::from(status == 429);
    }
    refused
}

#[tokio::test]
async fn an_attackers_wrong_passwords_do_not_lock_the_agent_out() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "victim@example.com", 5).await;

    // The attack of the review: wrong passwords for the victim, steadily,
    // from another address, while the victim logs in as usual. It lasts
    // until the attacker has been slowed down and the victim has logged in
    // five times meanwhile (a few seconds; longer on a busy machine, where
    // each guess takes longer), or gives up after 30 s.
    let victim_logins = Arc::new(AtomicUsize::new(0));
    let attacker = client_from("127.0.0.2");
    let attack = {
        let (base, attacker, victim_logins) = (server.base.clone(), attacker.clone(), victim_logins.clone());
        tokio::spawn(async move {
            let (mut denied, mut limited) = (0, 0);
            let started = Instant::now();
            while !(limited > 0 && victim_logins.load(Ordering::SeqCst) >= 5)
                && started.elapsed() < Duration::from_secs(30)
            {
                let body = json!({"email": "victim@example.com", "password": "wrong"});
                let res = attacker.post(format!("{base}/api/v1/auth/login")).json(&body).send().await.unwrap();
                match res.status().as_u16() {
                    401 => denied += 1,
                    429 => limited += 1,
                    other => panic!("the attacker got {other}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (denied, limited)
        })
    };
    let victim = client_from("127.0.0.1");
    while !attack.is_finished() {
        let (status, body) =
            login_from(&server, &victim, json!({"email": "victim@example.com", "password": "password123"})).await;
        assert_eq!(status, 200, "the victim's correct login during the attack: {body}");
        victim_logins.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let victim_logins = victim_logins.load(Ordering::SeqCst);
    let (denied, limited) = attack.await.unwrap();
    assert!(limited > 0, "the attacker was slowed down ({denied} wrong passwords checked)");
    assert!(denied <= 13, "about the burst was hashed for the attacker, not every guess: {denied}");
    assert!(victim_logins >= 5, "the victim kept logging in: {victim_logins}");
}

#[tokio::test]
async fn guesses_from_many_addresses_slow_new_devices_but_not_the_agents_own() {
    let server = TestServer::start_with(|c| {
        c.login_limits = LoginLimits {
            account_burst: 2,
            unknown_device_burst: 4,
            unknown_device_every_s: 600,
            ..Default::default()
        };
    })
    .await;
    let site = server.site().await;
    server.agent(&site, "victim@example.com", 5).await;
    let desk = client_from("127.0.0.1");
    let (status, first) =
        login_from(&server, &desk, json!({"email": "victim@example.com", "password": "password123"})).await;
    assert_eq!(status, 200);
    let device_token = first["device_token"].as_str().expect("a device token on login").to_owned();
    // The console's browser gets its device token as a cookie.
    let res = desk
        .post(format!("{}/api/v1/console/login", server.base))
        .header("x-holdfast-csrf", "1")
        .json(&json!({"email": "victim@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let device_cookie = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("hf_device="))
        .expect("a device cookie")
        .to_owned();
    assert!(device_cookie.contains("HttpOnly") && device_cookie.contains("SameSite=Strict"), "{device_cookie}");
    let device_cookie = device_cookie.split(';').next().unwrap().to_owned();

    // Guesses spread over many addresses.
    let mut limited = 0;
    for n in 2..8 {
        limited += guess(&server, &client_from(&format!("127.0.0.{n}")), "victim@example.com", 4).await;
    }
    assert!(limited > 0, "the spread attack was slowed down");

    // A device never seen before must wait, even with the right password...
    let stranger = client_from("127.0.0.50");
    let (status, _) =
        login_from(&server, &stranger, json!({"email": "victim@example.com", "password": "password123"})).await;
    assert_eq!(status, 429, "an unknown device waits while the account is under attack");
    // ...but the agent's own device gets in, over the API and in the console.
    let (status, body) = login_from(
        &server,
        &desk,
        json!({"email": "victim@example.com", "password": "password123", "device_token": device_token}),
    )
    .await;
    assert_eq!(status, 200, "the known device logs in: {body}");
    let res = desk
        .post(format!("{}/api/v1/console/login", server.base))
        .header("x-holdfast-csrf", "1")
        .header(header::COOKIE, &device_cookie)
        .json(&json!({"email": "victim@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the known browser logs in to the console");
    // A device token is bound to its account: it vouches for no other.
    server.agent(&site, "other@example.com", 5).await;
    for n in 2..8 {
        guess(&server, &client_from(&format!("127.0.0.{n}")), "other@example.com", 4).await;
    }
    let (status, _) = login_from(
        &server,
        &stranger,
        json!({"email": "other@example.com", "password": "password123", "device_token": device_token}),
    )
    .await;
    assert_eq!(status, 429, "the victim's device token does not vouch for another account");
}

#[tokio::test]
async fn logout_and_deactivation_survive_a_restart() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let admin = crate::status::operator(&server).await;
    server.agent(&site, "leaver@example.com", 5).await;
    let (logged_out, _) = server.login("leaver@example.com", "password123").await;
    let gone = server.agent(&site, "gone@example.com", 5).await;
    let (deactivated, _) = server.login("gone@example.com", "password123").await;

    let (status, _) = server.post("/api/v1/auth/logout", Some(&logged_out), json!({})).await;
    assert_eq!(status, 204);
    let res = server
        .http
        .patch(format!("{}/api/v1/admin/agents/{}", server.base, gone.id))
        .bearer_auth(&admin)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for token in [&logged_out, &deactivated] {
        assert_eq!(server.get("/api/v1/conversations", Some(token)).await.0, 401, "refused before the restart");
    }

    let dir = server.dir.clone();
    let tmp = server.stop().await;
    let server = TestServer::start_in(&dir, |_| {}).await;
    for token in [&logged_out, &deactivated] {
        let (status, body) = server.get("/api/v1/conversations", Some(token)).await;
        assert_eq!(status, 401, "a revoked token is refused after the restart: {body}");
        let refused = Client::try_connect(&server.ws_base, "/api/v1/agent/socket", token, HashMap::new()).await;
        assert!(refused.is_err(), "and its socket too");
    }
    server.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn a_node_that_missed_the_logout_refuses_the_token_within_seconds() {
    // Two nodes on one PostgreSQL with no bus between them: the second
    // never hears of the logout and must learn it from the store.
    let db = TestDb::create().await;
    let url = db.url.clone();
    let a = TestServer::start_with(|c| c.database_url = Some(url.clone())).await;
    let b = TestServer::start_with(|c| c.database_url = Some(url)).await;
    let site = a.site().await;
    a.agent(&site, "roamer@example.com", 5).await;
    let (token, _) = a.login("roamer@example.com", "password123").await;
    assert_eq!(b.get("/api/v1/conversations", Some(&token)).await.0, 200);

    assert_eq!(a.post("/api/v1/auth/logout", Some(&token), json!({})).await.0, 204);
    let started = Instant::now();
    loop {
        let (status, _) = b.get("/api/v1/conversations", Some(&token)).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(started.elapsed() < WAIT, "node b still accepts the logged-out token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("node b refused the token {} ms after the logout", started.elapsed().as_millis());
    assert!(started.elapsed() < Duration::from_secs(5));
    a.stop().await;
    b.stop().await;
    drop(db);
}

#[tokio::test]
async fn frames_with_unknown_fields_or_repeated_keys_are_refused() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let (_, vtoken) = server.visitor(&site).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    let ack = v.say(None, "first", "hello").await;
    let conv = ack["conv"].as_str().unwrap().to_owned();

    v.send(json!({"type": "ping", "extra": 1})).await;
    let e = v.wait_for(|f| f["type"] == "error" || f["type"] == "pong").await;
    assert_error(&e, "bad_request");

    // One parser reads a ping, another a message: neither, we refuse it.
    v.send_raw(format!(r#"{{"type":"ping","type":"send","conv":"{conv}","client_id":"dup","body":"smuggled"}}"#)).await;
    let e = v.wait_for(|f| f["type"] == "error" || f["type"] == "ack" || f["type"] == "pong").await;
    assert_error(&e, "bad_request");
    assert!(e["message"].as_str().unwrap().contains("duplicate key"), "{e}");
    v.send_raw(format!(r#"{{"type":"send","conv":"{conv}","client_id":"dup2","body":"a","body":"b"}}"#)).await;
    assert_error(&v.wait_for(|f| f["type"] == "error" || f["type"] == "ack").await, "bad_request");

    // The socket is still usable, and nothing smuggled was stored.
    let ack = v.say(Some(&conv), "second", "still here").await;
    assert_eq!(ack["type"], "ack");
    let (_, events) = server.get(&format!("/api/v1/conversations/{conv}/events"), Some(&vtoken)).await;
    let bodies: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["body"].as_str()).collect();
    assert_eq!(bodies, ["hello", "still here"]);

    // REST bodies too.
    let res = server
        .http
        .post(format!("{}/api/v1/auth/login", server.base))
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"email":"a@example.com","email":"b@example.com","password":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
}

#[tokio::test]
async fn the_demo_page_is_served_only_when_asked_for_and_never_framed() {
    let server = TestServer::start().await;
    let res = server.http.get(format!("{}/demo", server.base)).send().await.unwrap();
    assert_eq!(res.status(), 404, "no demo page unless the operator asks for it");
    server.stop().await;

    let server = TestServer::start_with(|c| c.demo = true).await;
    let res = server.http.get(format!("{}/demo", server.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(res.headers()[header::X_FRAME_OPTIONS], "DENY");
}

/// Every key an agent has in JSON; a new one must be added here on purpose.
const AGENT_KEYS: [&str; 11] = [
    "active",
    "availability",
    "chat_limit",
    "created_at",
    "email",
    "id",
    "lead_emails",
    "name",
    "photo_url",
    "role",
    "site_id",
];

/// The keys of `v` and of every object inside it.
fn all_keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                out.push(k.clone());
                all_keys(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| all_keys(i, out)),
        _ => {}
    }
}

/// `body` (what `what` answered) shows no password hash and no secret of a
/// stored record: no such key anywhere, none of the stored values.
fn assert_no_secret(what: &str, body: &Value, stored: &[String]) {
    let mut keys = Vec::new();
    all_keys(body, &mut keys);
    for key in ["password_hash", "password", "secret", "token"] {
        assert!(!keys.iter().any(|k| k == key), "{what} has a `{key}` key: {body}");
    }
    let text = body.to_string();
    assert!(!text.contains("$argon2"), "{what} shows a password hash: {text}");
    for value in stored {
        assert!(!text.contains(value.as_str()), "{what} shows a stored secret: {text}");
    }
}

#[tokio::test]
async fn no_answer_shows_a_password_hash_or_a_subscribers_secrets() {
    let server = TestServer::start_with(|c| {
        c.status.self_probe = false;
        c.status.allow_private_webhooks = true;
    })
    .await;
    let site = server.site().await;
    let agent = server.agent(&site, "plain@example.com", 5).await;
    let operator = crate::status::operator(&server).await;
    let stored_hash = server.state.store.agent(&agent.id).await.unwrap().unwrap().password_hash;
    let get = |path: &'static str, token: String| {
        let server = &server;
        async move {
            let (status, body) = server.get(path, Some(&token)).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };

    // Everything that shows an agent: login, refresh, me, both agent lists,
    // and what the admin API and the operator API answer when they make one.
    let (status, login) =
        server.post("/api/v1/auth/login", None, json!({"email": "plain@example.com", "password": "password123"})).await;
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap().to_owned();
    let refresh = json!({"refresh_token": login["refresh_token"]});
    let (status, refreshed) = server.post("/api/v1/auth/refresh", None, refresh).await;
    assert_eq!(status, 200, "{refreshed}");
    let me = get("/api/v1/me", token.clone()).await;
    let agents = get("/api/v1/agents", token).await;
    let admin_agents = get("/api/v1/admin/agents", operator.clone()).await;
    let new = json!({"email": "new@example.com", "name": "New", "password": "password123"});
    let (status, created) = server.post("/api/v1/admin/agents", Some(&operator), new).await;
    assert_eq!(status, 201, "{created}");
    let new_site =
        json!({"name": "Other", "admin": {"name": "O", "email": "o@other.example", "password": "password123"}});
    let (status, made) = server.post("/api/v1/operator/sites", Some(&operator), new_site).await;
    assert_eq!(status, 201, "{made}");

    let mut shown = vec![&login["agent"], &refreshed["agent"], &me, &created, &made["admin"]];
    shown.extend(agents.as_array().unwrap());
    shown.extend(admin_agents.as_array().unwrap());
    for agent in shown {
        let mut keys: Vec<&str> = agent.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, AGENT_KEYS, "{agent}");
    }
    for (what, body) in [
        ("login", &login),
        ("refresh", &refreshed),
        ("me", &me),
        ("agents", &agents),
        ("admin agents", &admin_agents),
        ("created agent", &created),
        ("created site", &made),
    ] {
        assert_no_secret(what, body, std::slice::from_ref(&stored_hash));
    }

    // The operator's subscriber list: neither the links' tokens nor the
    // webhooks' signing keys.
    let (status, sub) =
        server.post("/api/v2/subscribers.json", None, json!({"endpoint": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(status, 201, "{sub}");
    let email = server.state.status.store.add_subscriber(SubscriberKind::Email, "sub@example.com", None, false).await;
    email.unwrap();
    let stored = server.state.status.store.subscribers().await.unwrap();
    let secrets: Vec<String> =
        stored.iter().flat_map(|s| [Some(s.token.clone()), s.secret.clone()]).flatten().collect();
    assert_eq!(secrets.len(), 3, "two link tokens and a webhook secret");
    let listing = get("/api/v1/status/subscribers", operator).await;
    for subscriber in listing["subscribers"].as_array().unwrap() {
        let mut keys: Vec<&str> = subscriber.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["confirmed_at", "created_at", "delivery_error", "id", "kind", "target"], "{subscriber}");
    }
    assert_eq!(listing["subscribers"].as_array().unwrap().len(), 2, "{listing}");
    assert_no_secret("subscribers", &listing, &secrets);
}

#[tokio::test]
async fn no_answer_shows_an_api_tokens_or_a_webhooks_secret() {
    let server = TestServer::start_with(|c| c.status.allow_private_webhooks = true).await;
    let site = server.site().await;
    server.person(&site, "boss@shop.example", "Boss", holdfast_server::store::Role::Admin).await;
    let (boss, _) = server.login("boss@shop.example", "password123").await;
    let (status, token) =
        server.post("/api/v1/admin/api-tokens", Some(&boss), json!({"name": "CRM", "scopes": ["read"]})).await;
    assert_eq!(status, 201, "{token}");
    let hook = json!({"name": "CRM", "url": "http://127.0.0.1:9/hooks", "events": ["offline_message.created"]});
    let (status, endpoint) = server.post("/api/v1/admin/webhooks", Some(&boss), hook).await;
    assert_eq!(status, 201, "{endpoint}");
    let token_secret = token["secret"].as_str().unwrap().to_owned();
    let stored = [
        holdfast_server::auth::tokens::hash_secret(&token_secret),
        token_secret.clone(),
        endpoint["secret"].as_str().unwrap().to_owned(),
    ];
    // A delivery to the endpoint, so its log has something to show.
    let (_, vtoken) = server.visitor(&site).await;
    let mut v = Client::connect(&server, "/api/v1/visitor/socket", &vtoken, HashMap::new()).await;
    v.send(json!({"type": "leave_message", "client_id": "o1", "body": "hi"})).await;
    v.wait_for(|f| f["type"] == "ack").await;

    let id = endpoint["id"].as_str().unwrap();
    for path in [
        "/api/v1/admin/api-tokens".to_owned(),
        "/api/v1/admin/webhooks".to_owned(),
        format!("/api/v1/admin/webhooks/{id}/deliveries"),
        "/api/v1/admin/deliveries".to_owned(),
        "/api/v1/admin/audit".to_owned(),
    ] {
        let (status, body) = server.get(&path, Some(&boss)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.as_array().is_some_and(|a| !a.is_empty()), "{path} shows something: {body}");
        assert_no_secret(&path, &body, &stored);
    }
}
