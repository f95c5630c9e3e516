//! Bans in browsers: an agent bans the visitor of the chat they are in
//! from the console's visitor panel, with a hostile reason; the visitor's
//! widget says only "Chat is unavailable." (after a reload too); the
//! admin's Bans section shows the reason as text, and lifting the ban lets
//! the visitor chat again; the audit log shows both, as text.

use holdfast_server::store::Role;

use super::webdriver::{Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, W, admin, console_login, open_widget};
use crate::support::TestServer;

const HOSTILE_REASON: &str = "<img src=x onerror=\"window.pwned=9\"> <b>spam</b> javascript:window.pwned=10";
const HOSTILE_NAME: &str = "<script>window.pwned=11</script> Mallory";

#[tokio::test]
async fn an_agent_bans_from_the_console_and_the_widget_says_only_that_chat_is_unavailable() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    server.agent(&site, "ann@example.com", 5).await;
    let driver = Driver::start().await;

    // Ann is online in her console; a visitor writes from the widget.
    let super::ConsoleChat { console, widget, page, .. } =
        super::console_chat(&driver, &server, "ann@example.com", "buy cheap watches", HOSTILE_NAME).await;

    // She opens the chat and bans its visitor with a hostile reason.
    console.click_on("document.querySelector('#mine button')").await;
    console.wait_for("return !!document.querySelector('#details form.ban')", LONG).await;
    console.exec("window.confirm = () => true", vec![]).await;
    let reason = console.el("document.querySelector('#details form.ban input:not([type])')").await;
    console.type_text(&reason, HOSTILE_REASON).await;
    console.click_on("document.querySelector('#details form.ban button[type=submit]')").await;

    // The widget says only that chat is unavailable, and keeps saying it.
    let shown = format!("return !{W}.querySelector('.unavailable').hidden && {W}.querySelector('.composer').hidden");
    widget.wait_for(&shown, LONG).await;
    let text = widget.exec(&format!("return {W}.querySelector('.unavailable').textContent"), vec![]).await;
    assert_eq!(text, "Chat is unavailable.");
    widget.screenshot(&screenshot_path("widget-banned.png")).await;
    widget.goto(&page.url).await;
    widget.wait_for(&format!("return !!{W} && !!{W}.querySelector('.launcher')"), LONG).await;
    open_widget(&widget).await;
    widget.wait_for(&shown, LONG).await;

    // Ada sees the ban, the reason as text, and lifts it.
    let boss = driver.browser(1280, 900).await;
    console_login(&boss, &server, "ada@example.com", "password123").await;
    boss.click_on("document.querySelector('#admin-tab')").await;
    boss.wait_for("return document.querySelectorAll('#bans tr').length === 1", LONG).await;
    let row = boss
        .exec(
            "const t = document.querySelector('#bans'); const r = t.querySelector('tr'); \
             return {reason: r.cells[3].textContent, by: r.cells[4].textContent, status: r.cells[6].textContent, \
             markup: t.querySelectorAll('img, b, script, a').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(row["reason"], HOSTILE_REASON, "{row}");
    assert_eq!(row["by"], "ann", "{row}");
    assert_eq!(row["status"], "in force", "{row}");
    assert_eq!((row["markup"].as_i64(), row["pwned"].as_i64()), (Some(0), Some(0)), "{row}");
    boss.screenshot(&screenshot_path("console-bans.png")).await;
    boss.click_on("document.querySelector('#bans tr').cells[7].querySelector('button')").await;
    boss.wait_for("return document.querySelector('#bans tr')?.cells[6].textContent.startsWith('lifted by Ada')", LONG)
        .await;
    // The audit log shows the ban and its lifting, the reason as text.
    boss.wait_for("return !!document.querySelector('#audit tr[data-action=\"ban.lifted\"]')", LONG).await;
    let audit = boss
        .exec(
            "const t = document.querySelector('#audit'); \
             const made = t.querySelector('tr[data-action=\"ban.created\"]'); \
             return {who: made.cells[1].textContent, after: made.cells[5].textContent, \
             markup: t.querySelectorAll('img, b, script, a').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert_eq!(audit["who"], "ann", "{audit}");
    assert!(audit["after"].as_str().unwrap().contains("<img src=x onerror="), "{audit}");
    assert_eq!((audit["markup"].as_i64(), audit["pwned"].as_i64()), (Some(0), Some(0)), "{audit}");
    let pwned = console.exec("return window.pwned || 0", vec![]).await;
    assert_eq!(pwned, 0, "the agent's console ran nothing either");

    // The visitor's browser may chat again: a reload gets the composer back.
    widget.goto(&page.url).await;
    open_widget(&widget).await;
    widget
        .wait_for(
            &format!("return {W}.querySelector('.unavailable').hidden && !{W}.querySelector('.composer').hidden"),
            LONG,
        )
        .await;
    console.close().await;
    widget.close().await;
    boss.close().await;
}
