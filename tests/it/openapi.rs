//! The OpenAPI document (`GET /api/v1/openapi.json`): it names every REST
//! route the code registers and no other, `openapi-spec-validator` accepts
//! it, and Schemathesis finds the live server answering as it says (no
//! 5xx, every status and body as documented) with every kind of
//! credential: an admin's access token and an API token of each scope.
//! The Python tools come from PATH (`scripts/test` puts its virtualenv's
//! `bin/` first); a missing tool fails the test, it never skips.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use holdfast_server::store::Role;
use serde_json::{Value, json};

use crate::support::TestServer;

/// `/api/v1` routes that are deliberately not in the document: the chat
/// sockets (docs/protocol.md describes their frames) and the rehearsals'
/// fault injection (off unless the server was started for a rehearsal).
const UNDOCUMENTED: &[&str] = &["/api/v1/agent/socket", "/api/v1/visitor/socket", "/api/v1/ops/faults"];

/// Every `(METHOD, path)` under `/api/v1` that `crates/server/src/http/*.rs`
/// registers with `.route("…", get(…).post(…))`, read from the source.
fn registered_routes() -> BTreeSet<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/server/src/http");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices(".route(\"") {
            let rest = &text[at + ".route(\"".len()..];
            let route = &rest[..rest.find('"').unwrap()];
            // The call's arguments: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap();
            let call = &rest[route.len()..end];
            for method in ["get", "post", "put", "patch", "delete"] {
                let named = call
                    .match_indices(&format!("{method}("))
                    .any(|(i, _)| i == 0 || !call[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
                if named && route.starts_with("/api/v1/") && !UNDOCUMENTED.contains(&route) {
                    routes.insert((method.to_uppercase(), route.to_owned()));
                }
            }
        }
    }
    routes
}

/// Every `(METHOD, path)` the document describes.
fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

async fn fetch_document(s: &TestServer) -> Value {
    let res = s.http.get(format!("{}/api/v1/openapi.json", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let cache = res.headers().get("cache-control").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(cache.contains("public") && cache.contains("max-age"), "not cacheable: {cache:?}");
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_document_describes_every_route_and_no_other() {
    let s = TestServer::start().await;
    let doc = fetch_document(&s).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let registered = registered_routes();
    assert!(registered.len() > 60, "the scan found only {} routes", registered.len());
    let documented = documented_routes(&doc);
    let missing: Vec<_> = registered.difference(&documented).collect();
    assert!(missing.is_empty(), "routes the OpenAPI document lacks: {missing:?}");
    let phantom: Vec<_> = documented.difference(&registered).collect();
    assert!(phantom.is_empty(), "the OpenAPI document describes routes that do not exist: {phantom:?}");

    // The bearer schemes, the error shape on errors, and a webhook per event.
    let schemes = &doc["components"]["securitySchemes"];
    for scheme in ["access_token", "api_token", "visitor_token"] {
        assert_eq!(schemes[scheme]["scheme"], "bearer", "{scheme}");
    }
    let not_found = &doc["paths"]["/api/v1/conversations/{id}"]["get"]["responses"]["404"];
    assert_eq!(not_found["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error");
    let error = &doc["components"]["schemas"]["Error"];
    assert!(error["properties"]["error"].is_object(), "no error schema: {error}");
    for event in ["conversation.created", "conversation.closed", "conversation.missed", "message.created"] {
        let body = &doc["webhooks"][event]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["properties"]["type"]["const"], event, "webhook {event}");
    }
    s.stop().await;
}

/// Runs a test tool found on PATH in `dir` (where it may leave its
/// files); a missing tool is a failure that says how to get it.
async fn run_tool(dir: &Path, program: &str, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(program);
    command.args(args).current_dir(dir).kill_on_drop(true);
    match command.output().await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{program} is not on PATH: run the tests through scripts/test, or install \
             scripts/test-requirements.txt with pip and put its bin/ first on PATH"
        ),
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_live_server_as_documented() {
    let s = TestServer::start_with(|c| {
        // Schemathesis logs in with made-up accounts, and calls fast.
        c.login_limits.account_burst = 100_000;
        c.login_limits.unknown_device_burst = 100_000;
        c.login_limits.address_burst = 100_000;
        c.login_limits.address_per_s = 100_000;
        c.api_token_requests_per_minute = 0;
        // Four runs at once on a small machine: the lanes wait rather than
        // shed (shedding has tests of its own).
        for lane in [&mut c.admission.dashboard, &mut c.admission.background] {
            lane.concurrency = 64;
            lane.queue = 1024;
            lane.max_wait = Duration::from_secs(30);
        }
        // Nothing it makes may reach out: monitors, notifications and
        // webhooks wait longer than the test lasts.
        c.status.self_probe = false;
        c.status.monitor_tick = Duration::from_secs(3600);
        c.status.delivery_tick = Duration::from_secs(3600);
        c.outbox.tick = Duration::from_secs(3600);
    })
    .await;
    let site = s.site().await;
    s.person(&site, "ops@openapi.test", "Ops", Role::Operator).await;
    let (admin, _) = s.login("ops@openapi.test", "password123").await;
    let mut credentials = vec![("admin's access token".to_owned(), admin.clone())];
    for scope in ["read", "write", "admin"] {
        let (status, body) =
            s.post("/api/v1/admin/api-tokens", Some(&admin), json!({"name": scope, "scopes": [scope]})).await;
        assert_eq!(status, 201, "{body}");
        credentials.push((format!("API token ({scope})"), body["secret"].as_str().unwrap().to_owned()));
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, fetch_document(&s).await.to_string()).unwrap();
    let validated = run_tool(dir.path(), "openapi-spec-validator", &[file.to_str().unwrap()]).await;
    assert!(validated.status.success(), "openapi-spec-validator refused the document:\n{}", text(&validated));

    // One thing of each kind, so that the operations on `{id}` reach past
    // 404: Schemathesis reads the ids from `schemathesis.toml` where it runs.
    let config = things_to_test_on(&s, &admin).await;
    std::fs::write(dir.path().join("schemathesis.toml"), config).unwrap();

    // While a password hash runs, the lower lanes take one request at a
    // time and shed the rest (`admission`, by design): the operations that
    // hash get a run of their own, after the four runs of the others.
    let url = format!("{}/api/v1/openapi.json", s.base);
    let started = Instant::now();
    let runs = credentials.iter().map(|(who, token)| schemathesis(dir.path(), &url, who, token, Hashing::Without));
    let mut results = futures_util::future::join_all(runs).await;
    let (who, token) = &credentials[0];
    results.push(schemathesis(dir.path(), &url, who, token, Hashing::Only).await);
    let mut failures = Vec::new();
    for (who, output, took) in &results {
        let out = text(output);
        let summary: Vec<&str> =
            out.lines().filter(|l| l.contains("Tested:") || l.contains("generated,")).map(str::trim).collect();
        println!("schemathesis with the {who}: {:.1} s; {}", took.as_secs_f64(), summary.join("; "));
        if !output.status.success() {
            failures.push(format!("with the {who}:\n{out}"));
        }
    }
    println!("schemathesis, all runs: {:.1} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "Schemathesis found the server unlike its document:\n{}", failures.join("\n\n"));
    s.stop().await;
}

/// The operations that run a password hash (log in, set a password).
const HASHING: &[&str] = &[
    "post_auth_login",
    "post_console_login",
    "post_invitations_accept",
    "post_me_password",
    "post_operator_sites",
    "post_admin_agents",
    "patch_admin_agents_id",
];

#[derive(Clone, Copy, PartialEq)]
enum Hashing {
    Without,
    Only,
}

/// One Schemathesis run against the live server with `token` as bearer:
/// (who, its output, how long it took).
async fn schemathesis(dir: &Path, url: &str, who: &str, token: &str, hashing: Hashing) -> (String, Output, Duration) {
    let header = format!("Authorization: Bearer {token}");
    // The coverage phase (every documented boundary and a wrong value of
    // each) with the admin's token, which reaches past authorization; an
    // API token's runs fuzz only, most of their answers being 401 or 403.
    let phases = if token.starts_with("hf_") { "examples,fuzzing" } else { "examples,coverage,fuzzing" };
    let mut args = vec![
        "run",
        url,
        "--checks",
        "not_a_server_error,status_code_conformance,response_schema_conformance",
        "--phases",
        phases,
        "--max-examples",
        "8",
        "--seed",
        "19",
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--header",
        &header,
    ];
    let filter = if hashing == Hashing::Only { "--include-operation-id" } else { "--exclude-operation-id" };
    for id in HASHING {
        args.extend([filter, id]);
    }
    // The session must outlive the runs: it does not log itself out.
    if !token.starts_with("hf_") {
        args.extend(["--exclude-path-regex", "/logout$"]);
    }
    let begun = Instant::now();
    let output = run_tool(dir, "schemathesis", &args).await;
    let who = if hashing == Hashing::Only { format!("{who}, hashing operations") } else { who.to_owned() };
    (who, output, begun.elapsed())
}

/// Makes one thing of each kind an `{id}` names (with the admin's token)
/// and answers the Schemathesis configuration that hands each id to the
/// operations on its kind.
async fn things_to_test_on(s: &TestServer, admin: &str) -> String {
    let make = |path: &'static str, body: Value| async move {
        let (status, made) = s.post(path, Some(admin), body).await;
        assert!(status == 201 || status == 200, "{path}: {status} {made}");
        made
    };
    let canned = make("/api/v1/admin/canned", json!({"shortcut": "hi", "body": "Hello"})).await;
    let group = make("/api/v1/admin/groups", json!({"name": "Sales"})).await;
    let agent = make(
        "/api/v1/admin/agents",
        json!({"email": "ann@openapi.test", "name": "Ann", "password": "password123", "role": "agent"}),
    )
    .await;
    let greeting = make("/api/v1/admin/greetings", json!({"name": "Hi", "message": "Hello!", "enabled": true})).await;
    let hook = make(
        "/api/v1/admin/webhooks",
        json!({"name": "CRM", "url": "https://crm.example/hook", "events": ["conversation.closed"]}),
    )
    .await;
    // Not a token the runs use: one of them may revoke it.
    let token = make("/api/v1/admin/api-tokens", json!({"name": "spare", "scopes": ["read"]})).await;
    let component = make("/api/v1/status/components", json!({"name": "Chat"})).await;
    let incident = make("/api/v1/status/incidents", json!({"name": "Slow", "message": "Looking"})).await;
    let (visitor, _) = s.visitor(&s.site().await).await;
    let ban = make("/api/v1/bans", json!({"visitor_id": visitor, "reason": "spam"})).await;
    let ids = [
        ("^/api/v1/admin/canned/", canned["id"].as_str().unwrap()),
        ("^/api/v1/admin/groups/", group["id"].as_str().unwrap()),
        ("^/api/v1/admin/agents/", agent["id"].as_str().unwrap()),
        ("^/api/v1/admin/greetings/", greeting["id"].as_str().unwrap()),
        ("^/api/v1/admin/webhooks/", hook["id"].as_str().unwrap()),
        ("^/api/v1/admin/api-tokens/", token["id"].as_str().unwrap()),
        ("^/api/v1/status/components/", component["component"]["id"].as_str().unwrap()),
        ("^/api/v1/status/incidents/", incident["incident"]["id"].as_str().unwrap()),
        ("^/api/v1/admin/bans/", ban["id"].as_str().unwrap()),
        ("^/api/v1/(admin/)?visitors/", &visitor),
    ];
    ids.iter()
        .map(|(paths, id)| {
            format!("[[operations]]\ninclude-path-regex = \"{paths}\"\nparameters = {{ id = \"{id}\" }}\n")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
