//! A busy server sheds the console's requests with 503 and `Retry-After`.
//! The console asks again after that wait, a POST under the same
//! `Idempotency-Key` (so the real server creates one group, not two); a
//! section whose wait is too long shows its error without blanking the
//! others. The page's `fetch` is wrapped to answer as a shedding server
//! would; every request that passes goes to the real server.

use holdfast_server::store::Role;
use serde_json::json;

use super::webdriver::Driver;
use super::{LONG, ONE_BROWSER_TEST, admin, console_login};
use crate::support::TestServer;

/// Installed in the page after login: the first GET of the API tokens is
/// shed (`Retry-After: 1`), the audit log is shed for an hour every time,
/// and the first creation of a group reaches the server but its answer is
/// replaced by a 503, as when a node's answer is lost. Every request is
/// recorded with its `Idempotency-Key`.
const SHEDDING: &str = r#"
window.seen = [];
const real = window.fetch;
const busy = (secs) => new Response(JSON.stringify({error: {code: "unavailable", message: "busy, retry later"}}),
  {status: 503, headers: {"retry-after": String(secs), "content-type": "application/json"}});
let tokens = 1, groups = 1;
window.fetch = async (path, init = {}) => {
  const method = init.method || "GET", url = String(path);
  window.seen.push({url, method, key: (init.headers || {})["idempotency-key"] || null});
  if (url === "/api/v1/admin/api-tokens" && method === "GET" && tokens-- > 0) return busy(1);
  if (url.startsWith("/api/v1/admin/audit")) return busy(3600);
  const answer = await real(path, init);
  if (url === "/api/v1/admin/groups" && method === "POST" && groups-- > 0) return busy(1);
  return answer;
};
"#;

#[tokio::test]
async fn the_console_asks_a_busy_server_again_and_creates_one_group() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    let (ada, _) = server.login("ada@example.com", "password123").await;
    let (status, body) =
        server.post("/api/v1/admin/api-tokens", Some(&ada), json!({"name": "CRM", "scopes": ["read"]})).await;
    assert_eq!(status, 201, "{body}");

    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;
    console_login(&b, &server, "ada@example.com", "password123").await;
    b.exec(SHEDDING, vec![]).await;
    b.click_on("document.querySelector('#admin-tab')").await;

    // The shed section appears after its retry; the one shed for an hour
    // says so, and the sections after it in the page load all the same.
    b.wait_for("return document.querySelectorAll('#api-tokens tr').length === 1", LONG).await;
    b.wait_for("return /busy, retry later/.test(document.querySelector('#toast').textContent)", LONG).await;
    b.wait_for(
        "return document.querySelector('#webhooks-empty') && !document.querySelector('#webhooks-empty').hidden",
        LONG,
    )
    .await;
    let token = b.exec("return document.querySelector('#api-tokens tr').cells[0].textContent", vec![]).await;
    assert_eq!(token, "CRM");
    let asked = b
        .exec(
            "return window.seen.filter(r => r.url === '/api/v1/admin/api-tokens' && r.method === 'GET').length",
            vec![],
        )
        .await;
    assert_eq!(asked, 2, "shed once, asked again once");
    let audits = b.exec("return window.seen.filter(r => r.url.startsWith('/api/v1/admin/audit')).length", vec![]).await;
    assert_eq!(audits, 1, "a wait of an hour is not waited for");

    // A group created once, though its first answer was lost.
    let name = b.el("document.querySelector('#g-name')").await;
    b.type_text(&name, "Returns").await;
    b.click_on("document.querySelector('#group-form button[type=submit]')").await;
    b.wait_for(
        "return [...document.querySelectorAll('#groups li')].some(li => li.textContent.includes('Returns'))",
        LONG,
    )
    .await;
    let posts = b
        .exec(
            "return window.seen.filter(r => r.url === '/api/v1/admin/groups' && r.method === 'POST').map(r => r.key)",
            vec![],
        )
        .await;
    let keys = posts.as_array().unwrap();
    assert_eq!(keys.len(), 2, "{posts}");
    assert!(keys[0].is_string() && keys[0] == keys[1], "one key for both tries: {posts}");
    let (_, list) = server.get("/api/v1/admin/groups", Some(&ada)).await;
    let made = list.as_array().unwrap().iter().filter(|g| g["name"] == "Returns").count();
    assert_eq!(made, 1, "{list}");
    b.close().await;
}
