//! The widget's languages in a browser: forced by the site, each shipped
//! language loads when the panel opens and shows its own words (Arabic and
//! Hebrew laid out right to left); with none forced, the browser's
//! language is picked; a site's own words (hostile ones too) show as text.
//! Its right-to-left screenshot is the README's
//! (`docs/screenshots/widget-rtl.png`, copied from `target/screenshots`).

use std::path::Path;

use holdfast_server::admin::WidgetSettings;
use holdfast_server::store::Site;
use serde_json::{Value, json};

use super::webdriver::{Browser, Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, W, XSS, host_page, host_page_speaking, open_widget, widget_say};
use crate::support::TestServer;

const LANGUAGES: [&str; 13] = ["ar", "de", "es", "fr", "he", "it", "ja", "nl", "pl", "pt", "sv", "tr", "zh"];

fn table(lang: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("assets/widget-i18n/{lang}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn set_words(server: &TestServer, site: &Site, language: &str, strings: Value) {
    let mut settings = serde_json::to_value(WidgetSettings::default()).unwrap();
    settings["language"] = json!(language);
    settings["strings"] = strings;
    server.state.store.set_site_settings(&site.id, &settings).await.unwrap();
    server.state.chat.site_changed(&site.id).await;
}

/// What the open widget says: its direction and language, the offline
/// form's button and intro, the launcher's label and the composer's.
async fn shown(b: &Browser) -> Value {
    b.exec(
        &format!(
            "const r = {W}; const p = r.querySelector('.panel'); \
             return {{dir: p.dir, lang: p.lang, leave: r.querySelector('.offline button').textContent, \
             intro: r.querySelector('.offline .sys').textContent, launcher: r.querySelector('.launcher').getAttribute('aria-label'), \
             placeholder: r.querySelector('.composer textarea').placeholder, greeting: r.querySelector('.greeting').textContent, start: r.querySelector('.prechat button').textContent, \
             direction: getComputedStyle(p).direction, markup: r.querySelectorAll('img, b').length, pwned: window.pwned || 0}}"
        ),
        vec![],
    )
    .await
}

#[tokio::test]
async fn the_widget_speaks_every_shipped_language_and_arabic_and_hebrew_right_to_left() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let b = driver.browser(1280, 900).await;

    // No agent is online: the offline form shows, in each language.
    for lang in LANGUAGES {
        set_words(&server, &site, lang, json!({})).await;
        let t = table(lang);
        b.goto(&page.url).await;
        b.wait_for(&format!("return !!{W} && !!{W}.querySelector('.launcher')"), LONG).await;
        open_widget(&b).await;
        b.wait_for(&format!("return {W}.querySelector('.panel').lang === {}", json!(lang)), LONG).await;
        let s = shown(&b).await;
        let rtl = lang == "ar" || lang == "he";
        assert_eq!(s["dir"], if rtl { "rtl" } else { "ltr" }, "{lang}: {s}");
        assert_eq!(s["direction"], s["dir"], "{lang}: {s}");
        assert_eq!(s["leave"], t["leave"], "{lang}: {s}");
        assert_eq!(s["launcher"], t["close"], "{lang}: {s}");
        assert_eq!(s["placeholder"], t["type_here"], "{lang}: {s}");
        assert_eq!(s["start"], t["start"], "{lang}: {s}");
        assert_eq!(s["greeting"], t["greeting"], "{lang}: the default greeting is translated: {s}");
        let intro = s["intro"].as_str().unwrap();
        assert!(intro.starts_with(t["away"].as_str().unwrap()), "{lang}: {s}");
    }

    // None forced: the browser's language (Hebrew here) is picked.
    set_words(&server, &site, "", json!({})).await;
    let hebrew = host_page_speaking(&server, &site.widget_key, "he-IL").await;
    b.goto(&hebrew.url).await;
    b.wait_for(&format!("return !!{W} && !!{W}.querySelector('.launcher')"), LONG).await;
    open_widget(&b).await;
    b.wait_for(&format!("return {W}.querySelector('.panel').lang === 'he'"), LONG).await;
    assert_eq!(shown(&b).await["leave"], table("he")["leave"]);
    // A language the widget does not ship falls back to English.
    let klingon = host_page_speaking(&server, &site.widget_key, "tlh").await;
    b.goto(&klingon.url).await;
    b.wait_for(&format!("return !!{W} && !!{W}.querySelector('.launcher')"), LONG).await;
    open_widget(&b).await;
    b.wait_for(&format!("return {W}.querySelector('.panel').lang === 'en'"), LONG).await;
    assert_eq!(shown(&b).await["leave"], "Leave a message");

    // The site's own words win, in any language, and stay text.
    set_words(&server, &site, "de", json!({"leave": XSS, "away": "<b>Gleich zurück</b>"})).await;
    b.goto(&page.url).await;
    b.wait_for(&format!("return !!{W} && !!{W}.querySelector('.launcher')"), LONG).await;
    open_widget(&b).await;
    b.wait_for(&format!("return {W}.querySelector('.panel').lang === 'de'"), LONG).await;
    let s = shown(&b).await;
    assert_eq!(s["leave"], XSS, "{s}");
    assert!(s["intro"].as_str().unwrap().starts_with("<b>Gleich zurück</b> "), "{s}");
    assert_eq!(s["start"], table("de")["start"], "{s}");
    assert_eq!((s["markup"].as_i64(), s["pwned"].as_i64()), (Some(0), Some(0)), "{s}");
    b.close().await;

    // In Arabic, with an agent answering: the README's screenshot.
    set_words(&server, &site, "ar", json!({})).await;
    server.agent(&site, "samir@example.com", 5).await;
    let (mut agent, _) = server.online_agent("samir@example.com").await;
    let b = driver.browser(900, 700).await;
    b.goto(&page.url).await;
    b.wait_for(&format!("return !!{W} && !!{W}.querySelector('.launcher')"), LONG).await;
    open_widget(&b).await;
    b.wait_for(&format!("return !{W}.querySelector('.prechat').hidden"), LONG).await;
    b.click_on(&format!("{W}.querySelector('.prechat button')")).await;
    widget_say(&b, "مرحبًا، هل تشحنون إلى عمّان؟").await;
    let msg = agent.wait_for(|f| f["type"] == "message").await;
    let conv = msg["conv"].as_str().unwrap().to_owned();
    agent.say(Some(&conv), "r1", "أهلًا! نعم، نشحن إلى الأردن خلال ثلاثة أيام.").await;
    let joined = table("ar")["joined"].as_str().unwrap().replace("{0}", "samir");
    b.wait_for(
        &format!(
            "return [...{W}.querySelectorAll('.msg.them')].length === 2 && {W}.textContent.includes({})",
            json!(joined)
        ),
        LONG,
    )
    .await;
    // Mirrored: the visitor's own bubble sits on the left, the agent's on the right.
    let sides = b
        .exec(
            &format!(
                "const r = {W}; const x = (s) => r.querySelector(s).getBoundingClientRect().left; \
                 return {{me: x('.msg.me'), them: x('.msg.them:not(.greeting)')}}"
            ),
            vec![],
        )
        .await;
    assert!(sides["me"].as_f64().unwrap() < sides["them"].as_f64().unwrap(), "{sides}");
    b.wait_for("return new Promise(r => setTimeout(() => r(true), 400))", LONG).await;
    // docs/screenshots/widget-rtl.png, in the README, is a copy of this one.
    b.screenshot(&screenshot_path("widget-rtl.png")).await;
    b.close().await;
    agent.close().await;
}
