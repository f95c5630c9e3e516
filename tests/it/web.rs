//! The web faces over plain HTTP: embedded assets (types, caching, gzip,
//! size budgets), the console's session cookie and CSRF defence, the
//! admin API's role and tenant checks, and allowed origins.

use holdfast_server::auth::passwords;
use holdfast_server::store::{NewAgent, Role, Site};
use reqwest::header;
use serde_json::{Value, json};

use crate::support::TestServer;

const WIDGET_BUDGET: usize = 20 * 1024;
const CONSOLE_BUDGET: usize = 100 * 1024;

/// GET with `Accept-Encoding: gzip`; returns (status, headers, raw body bytes).
async fn get_gzip(server: &TestServer, path: &str) -> (u16, header::HeaderMap, Vec<u8>) {
    let res =
        server.http.get(format!("{}{path}", server.base)).header(header::ACCEPT_ENCODING, "gzip").send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn widget_js_is_gzipped_cached_and_within_its_budget() {
    let server = TestServer::start().await;
    let (status, headers, body) = get_gzip(&server, "/widget.js").await;
    assert_eq!(status, 200);
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert!(headers[header::CACHE_CONTROL].to_str().unwrap().contains("max-age"));
    println!("widget.js: {} bytes gzipped", body.len());
    assert!(body.len() <= WIDGET_BUDGET, "widget.js is {} bytes gzipped, budget {WIDGET_BUDGET}", body.len());

    // Revalidation by ETag answers 304 without a body.
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let res = server
        .http
        .get(format!("{}/widget.js", server.base))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 304);

    let (status, body) = server.get("/assets/nope.js", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn the_console_is_small_and_sends_a_strict_csp() {
    let server = TestServer::start().await;
    let (status, headers, html) = get_gzip(&server, "/console").await;
    assert_eq!(status, 200);
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let mut total = html.len();
    // The first screen: the page and the assets it names (versioned URLs).
    let page = String::from_utf8(
        server.http.get(format!("{}/console", server.base)).send().await.unwrap().bytes().await.unwrap().to_vec(),
    )
    .unwrap();
    let assets: Vec<&str> = page.split('"').filter(|s| s.starts_with("/assets/") && s.contains("?v=")).collect();
    assert_eq!(assets.len(), 2, "console.js and console.css: {assets:?}");
    assert!(!page.contains("<script>"), "no inline script");
    for url in assets {
        let (status, headers, body) = get_gzip(&server, url).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=31536000, immutable", "{url}");
        total += body.len();
    }
    println!("console first screen: {total} bytes gzipped");
    assert!(total < CONSOLE_BUDGET, "console first screen is {total} bytes gzipped");
}

/// Log in through the console endpoint; returns (access token, cookie pair).
async fn console_login(server: &TestServer, email: &str) -> (String, String) {
    let res = server
        .http
        .post(format!("{}/api/v1/console/login", server.base))
        .header("x-holdfast-csrf", "1")
        .json(&json!({"email": email, "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let cookie = res.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/api/v1/console"] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "the refresh credential stays in the cookie: {body}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    (body["access_token"].as_str().unwrap().to_owned(), pair)
}

async fn console_post(server: &TestServer, path: &str, cookie: Option<&str>, csrf: bool, origin: Option<&str>) -> u16 {
    let mut req = server.http.post(format!("{}{path}", server.base));
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    if csrf {
        req = req.header("x-holdfast-csrf", "1");
    }
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_console_session_lives_in_a_cookie_guarded_against_csrf() {
    let server = TestServer::start().await;
    let site = server.site().await;
    server.agent(&site, "ck@example.com", 5).await;
    let (_, cookie) = console_login(&server, "ck@example.com").await;

    let refresh = "/api/v1/console/refresh";
    assert_eq!(console_post(&server, refresh, Some(&cookie), false, None).await, 403, "no CSRF header");
    assert_eq!(
        console_post(&server, refresh, Some(&cookie), true, Some("https://evil.example")).await,
        403,
        "another origin"
    );
    assert_eq!(console_post(&server, refresh, None, true, None).await, 401, "no cookie");
    let own = server.base.clone();
    assert_eq!(console_post(&server, refresh, Some(&cookie), true, Some(&own)).await, 200);

    assert_eq!(console_post(&server, "/api/v1/console/logout", Some(&cookie), true, None).await, 204);
    assert_eq!(console_post(&server, refresh, Some(&cookie), true, None).await, 401, "logged out for good");
}

async fn make_admin(server: &TestServer, site: &Site, email: &str) -> String {
    let hash = passwords::hash_now("password123").unwrap();
    server
        .state
        .store
        .create_agent(NewAgent {
            site_id: &site.id,
            email,
            name: "Admin",
            role: Role::Admin,
            password_hash: &hash,
            chat_limit: 5,
        })
        .await
        .unwrap();
    server.login(email, "password123").await.0
}

async fn send(server: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = server.http.request(method.parse().unwrap(), format!("{}{path}", server.base)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn admin_actions_check_the_role_on_the_server_and_stay_in_their_site() {
    let server = TestServer::start().await;
    let site_a = server.site().await;
    let site_b = server.new_site("Other").await;
    let admin_a = make_admin(&server, &site_a, "a-admin@example.com").await;
    server.agent(&site_a, "a-agent@example.com", 5).await;
    let (agent_a, _) = server.login("a-agent@example.com", "password123").await;
    let b_agent = server.agent(&site_b, "b-agent@example.com", 5).await;

    // A plain agent is refused every admin action, whatever the UI shows.
    for (method, path, body) in [
        ("GET", "/api/v1/admin/site", None),
        ("PUT", "/api/v1/admin/site/settings", Some(json!({}))),
        ("GET", "/api/v1/admin/agents", None),
        ("POST", "/api/v1/admin/agents", Some(json!({"email": "x@example.com", "name": "X", "password": "12345678"}))),
        ("POST", "/api/v1/admin/invitations", Some(json!({"email": "x@example.com", "name": "X"}))),
        ("GET", "/api/v1/admin/invitations", None),
        ("PATCH", &format!("/api/v1/admin/agents/{}", b_agent.id), Some(json!({"active": false}))),
        ("POST", "/api/v1/admin/groups", Some(json!({"name": "Sales"}))),
        ("POST", "/api/v1/admin/canned", Some(json!({"shortcut": "hi", "body": "Hello"}))),
    ] {
        let (status, body) = send(&server, method, path, &agent_a, body).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }

    // Site A's admin cannot touch site B.
    let path = format!("/api/v1/admin/agents/{}", b_agent.id);
    let (status, _) = send(&server, "PATCH", &path, &admin_a, Some(json!({"active": false}))).await;
    assert_eq!(status, 404);
    assert!(server.state.store.agent(&b_agent.id).await.unwrap().unwrap().active);
    let (_, groups) = send(&server, "GET", "/api/v1/admin/groups", &admin_a, None).await;
    let group_a = groups[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/admin/groups/{group_a}/members");
    let (status, _) = send(&server, "POST", &path, &admin_a, Some(json!({"agent_id": b_agent.id}))).await;
    assert_eq!(status, 404);
    let (_, agents) = send(&server, "GET", "/api/v1/admin/agents", &admin_a, None).await;
    assert!(agents.as_array().unwrap().iter().all(|a| a["site_id"] == site_a.id.as_str()));
    // The list's agent and group filters stay in the caller's site: B's
    // chat is found by B's agent, not by A's admin naming B's ids.
    let (_, b_visitor) = server.visitor(&site_b).await;
    let mut b_client =
        crate::support::Client::connect(&server, "/api/v1/visitor/socket", &b_visitor, Default::default()).await;
    let ack = b_client.say(None, "b-1", "hello B").await;
    let b_conv = server.state.store.conversation(ack["conv"].as_str().unwrap()).await.unwrap().unwrap();
    let (b_token, _) = server.login("b-agent@example.com", "password123").await;
    let by_group = format!("/api/v1/conversations?group={}", b_conv.group_id);
    let (_, found) = send(&server, "GET", &by_group, &b_token, None).await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let (status, found) = send(&server, "GET", &by_group, &admin_a, None).await;
    assert_eq!((status, found), (200, json!([])));
    let by_agent = format!("/api/v1/conversations?agent={}", b_agent.id);
    let (status, found) = send(&server, "GET", &by_agent, &admin_a, None).await;
    assert_eq!((status, found), (200, json!([])));
    // Every agent reads their own site's groups (to transfer to), only those.
    server.state.store.create_group(&site_b.id, "B sales", false).await.unwrap();
    let (status, groups) = send(&server, "GET", "/api/v1/groups", &agent_a, None).await;
    assert_eq!(status, 200, "{groups}");
    let groups = groups.as_array().unwrap();
    assert!(!groups.is_empty() && groups.iter().all(|g| g["site_id"] == site_a.id.as_str()), "{groups:?}");
    assert!(groups.iter().all(|g| g.get("members").is_none()), "members are for admins: {groups:?}");

    // Bad input: clear JSON errors, never a panic.
    for body in [
        json!({"color": "red;}"}),
        json!({"allowed_origins": ["javascript:alert(1)"]}),
        json!({"position": "middle"}),
        json!({"launch": true}),
    ] {
        let (status, err) = send(&server, "PUT", "/api/v1/admin/site/settings", &admin_a, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], "bad_request");
    }
    let (status, err) = send(
        &server,
        "POST",
        "/api/v1/admin/invitations",
        &admin_a,
        Some(json!({"email": "not-an-email", "name": "X"})),
    )
    .await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("bad_request")));
    let (status, _) = send(
        &server,
        "POST",
        "/api/v1/admin/canned",
        &admin_a,
        Some(json!({"shortcut": "no spaces please", "body": "x"})),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_deactivated_agent_is_logged_out_and_an_admin_cannot_lock_themself_out() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let admin = make_admin(&server, &site, "boss@example.com").await;
    // The operator sets a new person's password (a site's admin invites).
    let operator = crate::status::operator(&server).await;
    let (status, created) = send(
        &server,
        "POST",
        "/api/v1/admin/agents",
        &operator,
        Some(json!({"email": "New@Example.com", "name": "Newbie", "password": "long-enough"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["email"], "new@example.com");
    let (_, refresh) = server.login("new@example.com", "long-enough").await;

    let path = format!("/api/v1/admin/agents/{}", created["id"].as_str().unwrap());
    let (status, updated) = send(&server, "PATCH", &path, &admin, Some(json!({"active": false}))).await;
    assert_eq!((status, updated["active"].as_bool()), (200, Some(false)));
    let (status, _) = server.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(status, 401, "the deactivated agent's session ended");
    let (status, _) =
        server.post("/api/v1/auth/login", None, json!({"email": "new@example.com", "password": "long-enough"})).await;
    assert_eq!(status, 401);

    let me = server.state.store.agent_by_email("boss@example.com").await.unwrap().unwrap();
    let path = format!("/api/v1/admin/agents/{}", me.id);
    let (status, _) = send(&server, "PATCH", &path, &admin, Some(json!({"role": "agent"}))).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn allowed_origins_refuse_pages_of_other_origins_clearly() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let admin = make_admin(&server, &site, "origins@example.com").await;
    let settings = json!({"allowed_origins": ["https://shop.example"], "greeting": "Hello!", "color": "#112233"});
    let (status, saved) = send(&server, "PUT", "/api/v1/admin/site/settings", &admin, Some(settings)).await;
    assert_eq!(status, 200, "{saved}");

    let session = |origin: Option<&'static str>| {
        let mut req = server
            .http
            .post(format!("{}/api/v1/visitor/session", server.base))
            .json(&json!({"widget_key": site.widget_key}));
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        req.send()
    };
    let res = session(Some("https://evil.example")).await.unwrap();
    assert_eq!(res.status().as_u16(), 403);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://evil.example", "readable by the widget");
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("not enabled on pages of https://evil.example"),
        "{body}"
    );
    assert_eq!(session(None).await.unwrap().status().as_u16(), 403);

    let res = session(Some("https://shop.example")).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["site"]["settings"]["greeting"], "Hello!");
    assert_eq!(body["site"]["settings"]["color"], "#112233");
    assert_eq!(body["site"]["settings"]["allowed_origins"], json!([]), "the list is not shown to visitors");

    // The CORS preflight the widget's fetch needs.
    let res = server
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/api/v1/visitor/session", server.base))
        .header(header::ORIGIN, "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");
}

/// Whether `email` logs in with `password`.
async fn logs_in(server: &TestServer, email: &str, password: &str) -> bool {
    server.post("/api/v1/auth/login", None, json!({"email": email, "password": password})).await.0 == 200
}

#[tokio::test]
async fn admins_rename_their_site_and_set_passwords_and_agents_change_their_own() {
    let server = TestServer::start().await;
    let site_a = server.site().await;
    let site_b = server.new_site("Other").await;
    let admin_a = make_admin(&server, &site_a, "a-admin@example.com").await;
    let ann = server.agent(&site_a, "ann@example.com", 5).await;
    let (ann_token, _) = server.login("ann@example.com", "password123").await;
    let bob = server.agent(&site_b, "bob@example.com", 5).await;

    // The site's name is what visitors see.
    let (status, site) =
        send(&server, "PATCH", "/api/v1/admin/site", &admin_a, Some(json!({"name": "Acme <b>Support</b>"}))).await;
    assert_eq!((status, site["name"].as_str()), (200, Some("Acme <b>Support</b>")), "{site}");
    let (_, session) = server.post("/api/v1/visitor/session", None, json!({"widget_key": site_a.widget_key})).await;
    assert_eq!(session["site"]["name"], "Acme <b>Support</b>");
    assert_eq!(server.state.store.site(&site_b.id).await.unwrap().unwrap().name, "Other", "only their own site");
    for body in [json!({"name": ""}), json!({"name": "x".repeat(201)}), json!({"name": 7}), json!({"id": site_b.id})] {
        let (status, err) = send(&server, "PATCH", "/api/v1/admin/site", &admin_a, Some(body.clone())).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("bad_request")), "{body}: {err}");
    }
    let (status, _) = send(&server, "PATCH", "/api/v1/admin/site", &ann_token, Some(json!({"name": "Mine"}))).await;
    assert_eq!(status, 403, "agents cannot rename the site");

    // An admin sets Ann's password: her sessions end, the new one works.
    let path = format!("/api/v1/admin/agents/{}", ann.id);
    let (status, err) = send(&server, "PATCH", &path, &admin_a, Some(json!({"password": "short"}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("bad_request")));
    let (status, _) = send(&server, "PATCH", &path, &admin_a, Some(json!({"password": "ann-new-secret"}))).await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/api/v1/me", Some(&ann_token)).await.0, 401, "her old session ended");
    assert!(!logs_in(&server, "ann@example.com", "password123").await);
    assert!(logs_in(&server, "ann@example.com", "ann-new-secret").await);
    // Not across sites, and not their own without the current password.
    let path_b = format!("/api/v1/admin/agents/{}", bob.id);
    let (status, _) = send(&server, "PATCH", &path_b, &admin_a, Some(json!({"password": "taken-over-1"}))).await;
    assert_eq!(status, 404);
    assert!(logs_in(&server, "bob@example.com", "password123").await);
    let me = server.state.store.agent_by_email("a-admin@example.com").await.unwrap().unwrap();
    let path_me = format!("/api/v1/admin/agents/{}", me.id);
    let (status, _) = send(&server, "PATCH", &path_me, &admin_a, Some(json!({"password": "no-current-1"}))).await;
    assert_eq!(status, 409);

    // Ann changes her own: the current one is checked, then every session ends.
    let (ann_token, _) = server.login("ann@example.com", "ann-new-secret").await;
    let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let (status, err) =
        send(&server, "POST", "/api/v1/me/password", &ann_token, Some(change("wrong-one-1", "ann-third-1"))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (403, Some("forbidden")));
    let (status, _) =
        send(&server, "POST", "/api/v1/me/password", &ann_token, Some(change("ann-new-secret", "ann-third-1"))).await;
    assert_eq!(status, 204);
    assert_eq!(server.get("/api/v1/me", Some(&ann_token)).await.0, 401);
    assert!(!logs_in(&server, "ann@example.com", "ann-new-secret").await);
    assert!(logs_in(&server, "ann@example.com", "ann-third-1").await);
    let (ann_token, _) = server.login("ann@example.com", "ann-third-1").await;
    let (status, err) =
        send(&server, "POST", "/api/v1/me/password", &ann_token, Some(json!({"new_password": "x"}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("bad_request")), "{err}");
    let (status, err) =
        send(&server, "POST", "/api/v1/me/password", &ann_token, Some(change("ann-third-1", "short"))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("bad_request")), "{err}");
    assert!(logs_in(&server, "ann@example.com", "ann-third-1").await, "a refused change changes nothing");
}

/// Issue 27: an admin edits a canned response and takes an agent out of a
/// group; another site's admin can do neither, and bad input is refused.
#[tokio::test]
async fn admins_edit_canned_responses_and_take_agents_out_of_groups() {
    let server = TestServer::start().await;
    let site = server.site().await;
    let admin = make_admin(&server, &site, "edit-boss@example.com").await;
    let other = server.new_site("Other").await;
    let admin_b = make_admin(&server, &other, "other-boss@example.com").await;
    let ann = server.agent(&site, "ann-edit@example.com", 5).await;

    let (status, hours) =
        send(&server, "POST", "/api/v1/admin/canned", &admin, Some(json!({"shortcut": "hours", "body": "9 to 5"})))
            .await;
    assert_eq!(status, 201, "{hours}");
    send(&server, "POST", "/api/v1/admin/canned", &admin, Some(json!({"shortcut": "bye", "body": "Bye!"}))).await;
    let path = format!("/api/v1/admin/canned/{}", hours["id"].as_str().unwrap());
    let edit = json!({"shortcut": "/Opening", "body": "  We open at 8.  "});
    let (status, edited) = send(&server, "PATCH", &path, &admin, Some(edit)).await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!((edited["shortcut"].as_str(), edited["body"].as_str()), (Some("opening"), Some("We open at 8.")));
    assert_eq!(edited["id"], hours["id"]);
    let (_, listed) = send(&server, "GET", "/api/v1/canned", &admin, None).await;
    let shortcuts: Vec<&str> = listed.as_array().unwrap().iter().map(|c| c["shortcut"].as_str().unwrap()).collect();
    assert_eq!(shortcuts, ["bye", "opening"]);
    for (body, code) in [
        (json!({"shortcut": "bye", "body": "x"}), 409),
        (json!({"shortcut": "no spaces", "body": "x"}), 400),
        (json!({"shortcut": "ok", "body": " "}), 400),
        (json!({"shortcut": "ok"}), 400),
    ] {
        let (status, err) = send(&server, "PATCH", &path, &admin, Some(body.clone())).await;
        assert!(status == code || (code == 400 && status == 422), "{body}: {status} {err}");
    }
    let (status, _) = send(&server, "PATCH", &path, &admin_b, Some(json!({"shortcut": "mine", "body": "x"}))).await;
    assert_eq!(status, 404, "another site's response does not exist for B");
    let (status, _) =
        send(&server, "PATCH", "/api/v1/admin/canned/nope", &admin, Some(json!({"shortcut": "a", "body": "b"}))).await;
    assert_eq!(status, 404);

    // Ann is in the default group; out she goes, once.
    let (_, groups) = send(&server, "GET", "/api/v1/admin/groups", &admin, None).await;
    let group = groups[0]["id"].as_str().unwrap().to_owned();
    assert!(groups[0]["members"].as_array().unwrap().iter().any(|m| m == ann.id.as_str()));
    let member = format!("/api/v1/admin/groups/{group}/members/{}", ann.id);
    let (status, _) = send(&server, "DELETE", &member, &admin_b, None).await;
    assert_eq!(status, 404, "not B's group");
    let (status, _) = send(&server, "DELETE", &member, &admin, None).await;
    assert_eq!(status, 204);
    let (status, _) = send(&server, "DELETE", &member, &admin, None).await;
    assert_eq!(status, 404, "no longer a member");
    assert!(!server.state.store.group_members(&group).await.unwrap().contains(&ann.id));
    let (_, log) = send(&server, "GET", "/api/v1/admin/audit", &admin, None).await;
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"group.member_removed") && actions.contains(&"canned.changed"), "{actions:?}");
}
