//! Files in chat, in browsers: the visitor pastes a screenshot into the
//! widget and the agent sees its thumbnail in the console; the agent
//! pastes a PDF with a hostile name into the console and the visitor gets
//! a link to the same bytes, its name shown as text; a file dropped on the
//! widget and one picked from disk with its file picker reach the console;
//! a file over the site's limit is refused by the widget before any upload.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::webdriver::{Browser, Driver, screenshot_path};
use super::{LONG, ONE_BROWSER_TEST, W, b_skip_prechat, console_go_online, console_login, host_page, open_widget};
use super::{wait_console_text, widget_say};
use crate::support::TestServer;

const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned=1\">\u{202E}fdp.manual.pdf";
const PDF: &str = "%PDF-1.4\n% Holdfast manual\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";

/// Paste a file made in page script into the element `target` (an
/// expression): `{name, type, text}` or a canvas-drawn PNG when `text` is
/// null. With `"drop": true`, drop it on `target` instead.
async fn paste(b: &Browser, target: &str, file: Value) -> Value {
    let script = format!(
        "const f = arguments[0]; return (async () => {{
           let blob;
           if (f.text === null) {{
             const c = document.createElement('canvas'); c.width = 64; c.height = 40;
             const x = c.getContext('2d'); x.fillStyle = '#c2410c'; x.fillRect(0, 0, 64, 40);
             x.fillStyle = '#fff'; x.fillText('Error 500', 6, 24);
             blob = await new Promise(r => c.toBlob(r, 'image/png'));
           }} else blob = new Blob([f.text], {{ type: f.type }});
           const dt = new DataTransfer(); dt.items.add(new File([blob], f.name, {{ type: f.type }}));
           const event = f.drop ? new DragEvent('drop', {{ dataTransfer: dt, bubbles: true, cancelable: true }})
             : new ClipboardEvent('paste', {{ clipboardData: dt, bubbles: true, cancelable: true }});
           {target}.dispatchEvent(event);
           return blob.size;
         }})()"
    );
    b.exec(&script, vec![file]).await
}

#[tokio::test]
async fn a_pasted_screenshot_reaches_the_console_and_a_pdf_the_visitor() {
    let _one = ONE_BROWSER_TEST.lock().await;
    let server = TestServer::start().await;
    let site = server.site().await;
    let mut settings = site.settings.clone();
    settings["attachments"] = json!({"max_bytes": 200_000, "types": []});
    server.state.store.set_site_settings(&site.id, &settings).await.unwrap();
    server.state.chat.site_changed(&site.id).await;
    server.agent(&site, "fay@example.com", 5).await;
    let page = host_page(&server, &site.widget_key).await;
    let driver = Driver::start().await;
    let console = driver.browser(1280, 900).await;
    let visitor = driver.browser(1280, 900).await;

    console_login(&console, &server, "fay@example.com", "password123").await;
    console_go_online(&console).await;
    visitor.goto(&page.url).await;
    open_widget(&visitor).await;
    b_skip_prechat(&visitor).await;
    widget_say(&visitor, "I get this error").await;
    console.click_on("document.querySelector('#mine button')").await;
    wait_console_text(&console, "I get this error").await;

    // The visitor pastes a screenshot: the console shows it as a thumbnail.
    let textarea = format!("{W}.querySelector('.composer textarea')");
    paste(&visitor, &textarea, json!({"name": "screenshot.png", "type": "image/png", "text": null})).await;
    console
        .wait_for("const i = document.querySelector('#log .msg .file img'); return !!i && i.complete && i.naturalWidth === 64", LONG)
        .await;
    let href = console.exec("return document.querySelector('#log .msg .file').getAttribute('href')", vec![]).await;
    assert!(href.as_str().unwrap().contains("/download?t="), "{href}");
    visitor
        .wait_for(&format!("const i = {W}.querySelector('.msg .file img'); return !!i && i.naturalWidth === 64"), LONG)
        .await;
    visitor.screenshot(&screenshot_path("widget-attachment.png")).await;
    console.screenshot(&screenshot_path("console-attachment.png")).await;

    // The agent pastes a PDF with a hostile name: the visitor sees a link
    // whose text is the (cleaned) name, and it downloads the same bytes.
    paste(
        &console,
        "document.querySelector('#reply')",
        json!({"name": HOSTILE_NAME, "type": "application/pdf", "text": PDF}),
    )
    .await;
    let shown = visitor
        .wait_for(
            &format!(
                "const m = [...{W}.querySelectorAll('.msg.them')].find(e => e.querySelector('.file')); if (!m) return null; \
                 const a = m.querySelector('.file'); if (!a.href) return null; \
                 return {{text: a.textContent, href: a.href, elements: m.querySelectorAll('img, script, b').length, pwned: window.pwned || 0}}"
            ),
            LONG,
        )
        .await;
    let text = shown["text"].as_str().unwrap();
    assert!(text.starts_with("📎 _img src=x onerror=_window.pwned=1__fdp.manual.pdf"), "{shown}");
    assert!(!text.contains('\u{202E}'), "{shown}");
    assert_eq!((shown["elements"].as_i64(), shown["pwned"].as_i64()), (Some(0), Some(0)), "{shown}");
    let res = server.http.get(shown["href"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let got = res.bytes().await.unwrap();
    assert_eq!(hex::encode(Sha256::digest(&got)), hex::encode(Sha256::digest(PDF.as_bytes())));
    let console_pwned = console
        .exec("return [window.pwned || 0, document.querySelectorAll('#log .msg b, #log .msg script').length]", vec![])
        .await;
    assert_eq!(console_pwned, json!([0, 0]));

    // A file dropped on the widget's panel reaches the console as a link.
    let panel = format!("{W}.querySelector('.panel')");
    paste(&visitor, &panel, json!({"name": "notes.txt", "type": "text/plain", "text": "order 1234", "drop": true}))
        .await;
    console
        .wait_for("return [...document.querySelectorAll('#log .msg .file')].some(a => a.textContent === '📎 notes.txt (1 KB)')", LONG)
        .await;

    // The visitor picks a file from disk with the widget's file picker
    // (WebDriver sets the input's file as the dialog would).
    let disk = tempfile::tempdir().unwrap();
    let invoice = disk.path().join("invoice.pdf");
    std::fs::write(&invoice, PDF.replace("manual", "invoice 77")).unwrap();
    let picker = visitor.el(&format!("{W}.querySelector('input[type=file]')")).await;
    let attach = visitor
        .exec(&format!("return {W}.querySelector('button[aria-label=\"Attach a file\"]') !== null"), vec![])
        .await;
    assert_eq!(attach, json!(true), "the picker has its button");
    visitor.type_text(&picker, invoice.to_str().unwrap()).await;
    console
        .wait_for("return [...document.querySelectorAll('#log .msg .file')].some(a => a.textContent === '📎 invoice.pdf (1 KB)')", LONG)
        .await;

    // Over the site's limit: refused in the widget, before any upload.
    paste(
        &visitor,
        &textarea,
        json!({"name": "huge.bin", "type": "application/octet-stream", "text": "x".repeat(300_000)}),
    )
    .await;
    visitor
        .wait_for(
            &format!("return [...{W}.querySelectorAll('.sys')].some(e => e.textContent === 'Not sent: huge.bin: it is larger than 196 KB')"),
            LONG,
        )
        .await;
    console.close().await;
    visitor.close().await;
    server.stop().await;
}
