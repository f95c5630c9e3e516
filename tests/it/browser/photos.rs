//! Agent photos in browsers: an agent with a hostile name picks a file
//! that is no image (refused, the reason shown), then a photo, in the
//! console's account dialog; the console's team list and Admin → Agents show
//! it, the widget shows it in its header when she joins and beside her
//! messages; her name stays text everywhere (no element, no script); an
//! admin removes it and the team list shows her initial again.

use holdfast_server::store::Role;
use serde_json::{Value, json};

use super::webdriver::{Browser, Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, W, b_skip_prechat, console_go_online, console_login, host_page, open_widget};
use super::{wait_widget_text, widget_say};
use crate::support::TestServer;

const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=1\"> Pia <b>bold</b>";

/// Pick a file made in page script with the console's photo input: a
/// 64 × 64 canvas PNG when `text` is null, else `text` as `type`.
async fn pick(b: &Browser, file: Value) {
    let script = "const f = arguments[0]; return (async () => {
           let blob;
           if (f.text === null) {
             const c = document.createElement('canvas'); c.width = 64; c.height = 64;
             const x = c.getContext('2d'); x.fillStyle = '#0f766e'; x.fillRect(0, 0, 64, 64);
             x.fillStyle = '#fde047'; x.beginPath(); x.arc(32, 26, 14, 0, 7); x.fill(); x.fillRect(12, 44, 40, 20);
             blob = await new Promise(r => c.toBlob(r, 'image/png'));
           } else blob = new Blob([f.text], { type: f.type });
           const input = document.querySelector('#photo-file');
           const dt = new DataTransfer(); dt.items.add(new File([blob], f.name, { type: f.type }));
           input.files = dt.files;
           input.dispatchEvent(new Event('change'));
           return blob.size;
         })()";
    b.exec(script, vec![file]).await;
}

/// Whether the image `expr` finds has loaded as the 64 px photo.
fn loaded(expr: &str) -> String {
    format!("const i = {expr}; return !!i && i.complete && i.naturalWidth === 64")
}

#[tokio::test]
async fn an_agent_sets_a_photo_that_the_console_and_the_widget_show() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    let pia = server.person(&site, "pia@example.com", HOSTILE_NAME, Role::Admin).await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let console = driver.browser(1280, 900).await;
    console_login(&console, &server, "pia@example.com", "password123").await;

    // A page that calls itself an image is refused, with the reason.
    console.click_on("document.querySelector('#password-open')").await;
    pick(&console, json!({"name": "me.png", "type": "image/png", "text": "<html><script>window.pwned=5</script>"}))
        .await;
    console
        .wait_for("return document.querySelector('#photo-error').textContent.includes('PNG, JPEG, GIF or WebP')", LONG)
        .await;
    // A photo is kept and shown in the dialog and the team list.
    pick(&console, json!({"name": "me.png", "type": "image/png", "text": null})).await;
    console.wait_for(&loaded("document.querySelector('#photo-preview img')"), LONG).await;
    assert_eq!(console.exec("return document.querySelector('#photo-error').textContent", vec![]).await, "");
    console.click_on("document.querySelector('#pw-cancel')").await;
    let in_team = format!("document.querySelector('#team li[data-agent=\"{}\"] img')", pia.id);
    console.wait_for(&loaded(&in_team), LONG).await;
    let src = console.exec(&format!("return {in_team}.getAttribute('src')"), vec![]).await;
    assert!(src.as_str().unwrap().starts_with(&format!("/api/v1/agents/{}/photo?v=", pia.id)), "{src}");
    console_go_online(&console).await;

    // A visitor's chat: the widget shows her photo when she joins and
    // beside what she writes; her name as text.
    let visitor = driver.browser(1280, 900).await;
    visitor.goto(&page.url).await;
    open_widget(&visitor).await;
    b_skip_prechat(&visitor).await;
    widget_say(&visitor, "Is my order on its way?").await;
    visitor.wait_for(&loaded(&format!("{W}.querySelector('header .avatar img')")), LONG).await;
    let title = visitor.exec(&format!("return {W}.querySelector('header .title').textContent"), vec![]).await;
    assert_eq!(title, HOSTILE_NAME, "the name as text");
    console.wait_for("return !!document.querySelector('#mine button')", LONG).await;
    console.click_on("document.querySelector('#mine button')").await;
    console.screenshot(&screenshot_path("console-agent-photo.png")).await;
    let reply = console.el("document.querySelector('#reply')").await;
    console.type_text(&reply, "It left the warehouse this morning.\u{E007}").await;
    wait_widget_text(&visitor, "It left the warehouse this morning.").await;
    visitor
        .wait_for(&loaded(&format!("[...{W}.querySelectorAll('.msg.them')].pop().querySelector('img.face')")), LONG)
        .await;
    visitor.screenshot(&screenshot_path("widget-agent-photo.png")).await;

    // Admin → Agents shows it; the admin removes it (after confirming):
    // every list shows her initial again.
    console.click_on("document.querySelector('#admin-tab')").await;
    console.wait_for(&loaded("document.querySelector('#agents tr td .avatar img')"), LONG).await;
    console.exec("window.confirm = () => true", vec![]).await;
    console.click_on("document.querySelector('#agents button[aria-label^=\"Remove the photo\"]')").await;
    console.wait_for("return !document.querySelector('#agents tr td .avatar img')", LONG).await;
    console
        .wait_for(&format!("return !{in_team} && document.querySelector('#team li .avatar').textContent === '<'"), LONG)
        .await;

    // Nothing of her name became an element or ran, in either browser.
    let console_elements = console
        .exec("return document.querySelectorAll('#team b, #agents b, img[src=\"x\"], #log b').length", vec![])
        .await;
    assert_eq!(console_elements, 0);
    let widget_elements =
        visitor.exec(&format!("return {W}.querySelectorAll('b, img[src=\"x\"]').length"), vec![]).await;
    assert_eq!(widget_elements, 0);
    for b in [&console, &visitor] {
        assert!(b.exec("return window.pwned || null", vec![]).await.is_null(), "no script of hers ran");
    }
    visitor.close().await;
    console.close().await;
}
