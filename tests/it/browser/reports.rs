//! The Reports tab: an admin opens it, picks a week, and reads the cards,
//! the heatmap and the agents' bars and table, with a hostile agent name
//! shown as text. The tab's code and charts load only when it opens.

use holdfast_server::store::{NewAgent, Role};
use serde_json::json;

use super::webdriver::{Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, admin, console_login};
use crate::reports::{Crafted, sql_of, utc, write_history};
use crate::support::TestServer;

const XSS_NAME: &str = "<img src=x onerror=\"window.pwned=1\">Eve";

#[tokio::test]
async fn an_admin_reads_a_week_on_the_reports_tab() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "lead@example.com", Role::Admin).await;
    let hash = holdfast_server::auth::passwords::hash_now("password123").unwrap();
    let eve = NewAgent {
        site_id: &site.id,
        email: "eve@example.com",
        name: XSS_NAME,
        role: Role::Agent,
        password_hash: &hash,
        chat_limit: 5,
    };
    let eve = server.state.store.create_agent(eve).await.unwrap();
    let group = server.state.store.groups(&site.id).await.unwrap().remove(0);
    let (visitor, _) = server.visitor(&site).await;
    let chat = [(0, "message", "visitor"), (10, "assigned", "system"), (40, "message", "agent")];
    let mut sql = String::new();
    for (n, (d, h, score)) in
        [(23, 9, Some(5)), (23, 9, Some(1)), (25, 15, Some(5)), (27, 11, None)].into_iter().enumerate()
    {
        let c = Crafted {
            group: &group.id,
            agent: Some(&eve.id),
            start: utc(2026, 3, d, h, 0),
            events: &chat,
            closed: Some(600),
            offline: false,
            score,
            missed: false,
        };
        sql += &sql_of(n, &site.id, &visitor, &c);
    }
    write_history(&server, None, &sql).await;

    let driver = Driver::start().await;
    let b = driver.browser(1280, 1000).await;
    console_login(&b, &server, "lead@example.com", "password123").await;
    let loaded = b
        .exec("return performance.getEntriesByType('resource').some(e => e.name.includes('console-reports'))", vec![])
        .await;
    assert_eq!(loaded, false, "the reports code is not on the first screen");
    b.click_on("document.querySelector('#reports-tab')").await;
    b.wait_for("return document.querySelector('#r-cards') !== null", LONG).await;
    b.exec(
        "document.querySelector('#r-from').value = '2026-03-23'; document.querySelector('#r-to').value = '2026-03-29'",
        vec![],
    )
    .await;
    b.click_on("document.querySelector('#r-form button')").await;
    b.wait_for("return document.querySelector('#r-note, .r-note').textContent.includes('2026-03-23')", LONG).await;

    let seen = b
        .exec(
            "const cards = [...document.querySelectorAll('#r-cards .r-card')].map(c => c.textContent); \
             const cells = [...document.querySelectorAll('.r-heatmap rect')].map(r => +r.dataset.n); \
             return {cards, cells: cells.length, total: cells.reduce((a, b) => a + b, 0), monday9: cells[9], \
             agent: document.querySelector('#r-agent-rows td').textContent, bar: document.querySelector('.r-bars text').textContent, \
             imgs: document.querySelectorAll('#reports-view img').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(seen["cells"], 7 * 24, "{seen}");
    assert_eq!(seen["total"], 4, "{seen}");
    assert_eq!(seen["monday9"], 2, "Monday 09:00 UTC holds two chats: {seen}");
    let cards: Vec<String> = serde_json::from_value(seen["cards"].clone()).unwrap();
    assert!(cards.contains(&"Chats44 answered · 0 missed".to_owned()), "{cards:?}");
    assert!(cards.contains(&"Wait for a reply40 smedian · p90 40 s".to_owned()), "{cards:?}");
    assert!(cards.contains(&"Satisfaction67%2 good of 3 rated".to_owned()), "{cards:?}");
    assert_eq!(seen["agent"], XSS_NAME, "{seen}");
    let bar = seen["bar"].as_str().unwrap();
    assert!(bar.starts_with("<img src=x") && bar.ends_with('…'), "a long name is cut, as text: {seen}");
    assert_eq!((seen["imgs"].clone(), seen["pwned"].clone()), (json!(0), json!(0)), "{seen}");
    b.screenshot(&screenshot_path("console-reports.png")).await;
    b.close().await;
    server.stop().await;
}
