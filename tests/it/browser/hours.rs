//! Business hours in browsers: an admin makes today a holiday in the
//! console's Admin → Business hours; every agent's console then shows the
//! group closed (a group with a hostile name stays text), and a visitor
//! opening the widget, with an agent online, gets the offline form saying
//! when the team is back instead of the composer; a visitor who was
//! already writing is told, in their language, why the message was not
//! sent.

use holdfast_server::store::Role;

use super::webdriver::{Driver, screenshot_path};
use super::{
    LONG, ONE_BROWSER_TEST, W, admin, console_go_online, console_login, host_page, host_page_speaking, open_widget,
    widget_say,
};
use crate::support::TestServer;

const HOSTILE_GROUP: &str = "<img src=x onerror=\"window.pwned=21\"> Sales";

#[tokio::test]
async fn outside_hours_the_widget_offers_the_offline_form_and_says_when_the_team_is_back() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    admin(&server, &site, "ada@example.com", Role::Admin).await;
    server.state.store.create_group(&site.id, HOSTILE_GROUP, false).await.unwrap();
    // Today, in UTC, once no midnight is near.
    let today = loop {
        let now = jiff::Timestamp::now();
        if 86_400_000 - now.as_millisecond().rem_euclid(86_400_000) > 120_000 {
            break now.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    };
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;

    // Ada is online, and sets the site's hours: round the clock, but today.
    let console = driver.browser(1280, 1200).await;
    console_login(&console, &server, "ada@example.com", "password123").await;
    console_go_online(&console).await;
    console.wait_for("return document.querySelectorAll('#groups-now li').length === 2", LONG).await;

    // A German visitor's chat is open, ready to write, while Ada is in.
    let german = host_page_speaking(&server, &site.widget_key, "de-DE").await;
    let early = driver.browser(1280, 900).await;
    early.goto(&german.url).await;
    open_widget(&early).await;
    early.click_on(&format!("{W}.querySelector('.prechat button')")).await;
    early.wait_for(&format!("return !{W}.querySelector('.composer').hidden"), LONG).await;

    console.click_on("document.querySelector('#admin-tab')").await;
    console.wait_for("return !!document.querySelector('#site-hours form')", LONG).await;
    let form = "document.querySelector('#site-hours form')";
    console
        .exec(
            &format!(
                "const f = {form}; f.querySelector('input[type=checkbox]').checked = true; \
                 f.querySelector('input[aria-label$=\"time zone\"]').value = 'UTC'; \
                 f.querySelectorAll('input[data-day]').forEach(i => i.value = '00:00-24:00'); \
                 f.querySelector('textarea').value = arguments[0] + ' closed';"
            ),
            vec![serde_json::json!(today)],
        )
        .await;
    console.click_on(&format!("{form}.querySelector('button[type=submit]')")).await;
    console
        .wait_for(
            "return document.querySelector('#groups li[data-group=General] [data-open]')?.dataset.open === 'false'",
            LONG,
        )
        .await;
    let saved = server.state.store.site(&site.id).await.unwrap().unwrap().settings;
    assert_eq!(saved["hours"]["exceptions"][0]["date"], today.as_str(), "{saved}");
    console.screenshot(&screenshot_path("console-hours.png")).await;

    // The German visitor writes now: refused, saying why in German, and
    // offered the offline form.
    widget_say(&early, "Hallo?").await;
    let refused = format!(
        "return [...{W}.querySelectorAll('.sys')].some(e => e.textContent === 'Nicht gesendet: wir haben gerade geschlossen') \
         && !{W}.querySelector('.offline').hidden"
    );
    early.wait_for(&refused, LONG).await;
    early.close().await;

    // The chat view lists the groups, closed, with the hostile name as text.
    console.click_on("document.querySelector('#chats-tab')").await;
    console.exec("location.reload()", vec![]).await;
    console
        .wait_for(
            "return [...document.querySelectorAll('#groups-now [data-open]')].filter(e => e.dataset.open === 'false').length === 2",
            LONG,
        )
        .await;
    let shown = console
        .exec(
            "return {names: [...document.querySelectorAll('#groups-now li')].map(l => l.dataset.group), \
             markup: document.querySelectorAll('#groups-now img').length, pwned: window.pwned || 0}",
            vec![],
        )
        .await;
    assert!(shown["names"].as_array().unwrap().iter().any(|n| n == HOSTILE_GROUP), "{shown}");
    assert_eq!((shown["markup"].as_i64(), shown["pwned"].as_i64()), (Some(0), Some(0)), "{shown}");

    // A visitor with Ada online gets the offline form, saying when we're back.
    let widget = driver.browser(1280, 900).await;
    widget.goto(&page.url).await;
    open_widget(&widget).await;
    let offline = format!("return !{W}.querySelector('.offline').hidden && {W}.querySelector('.composer').hidden");
    widget.wait_for(&offline, LONG).await;
    let text = widget.exec(&format!("return {W}.querySelector('.offline .sys').textContent"), vec![]).await;
    let text = text.as_str().unwrap();
    assert!(text.starts_with("We're closed right now; we're back "), "{text}");
    widget.screenshot(&screenshot_path("widget-closed.png")).await;
    widget.close().await;
    console.close().await;
}
