//! Headless Chromium through `chromedriver`, spoken to with `fantoccini`
//! (the WebDriver protocol is the crate's; this file only starts the driver,
//! picks the browser's flags and keeps the tests' short vocabulary).
//! Elements inside the widget's shadow root are reached by returning them
//! from a script.
//!
//! There is no skipping: if Chromium or its driver is missing, the test
//! fails and names `scripts/test`, which installs them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::ElementRef;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

pub use fantoccini::elements::Element;

/// The W3C key under which a script's returned element travels.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn chromedriver_path() -> PathBuf {
    std::env::var_os("HOLDFAST_CHROMEDRIVER").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromedriver".into())
}

fn chromium_path() -> PathBuf {
    std::env::var_os("HOLDFAST_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// A `chromedriver` process on a free loopback port, killed on drop.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub async fn start() -> Driver {
        let driver = chromedriver_path();
        assert!(
            driver.exists() && chromium_path().exists(),
            "browser tests need Chromium and its driver at {} and {}: run scripts/test, which installs \
             them (Debian's chromium and chromium-driver; or set HOLDFAST_CHROMIUM and HOLDFAST_CHROMEDRIVER)",
            chromium_path().display(),
            driver.display()
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let d = Driver { child, url: format!("http://127.0.0.1:{port}") };
        // Up once it listens; a session asked for too early would fail to connect.
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not come up on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d
    }

    /// A fresh desktop browser (own profile, so own cookies and storage).
    pub async fn browser(&self, width: u32, height: u32) -> Browser {
        self.session(width, height, None).await
    }

    /// A fresh browser emulating a phone screen `width` CSS pixels wide
    /// (desktop windows cannot be made that narrow).
    pub async fn phone(&self, width: u32, height: u32) -> Browser {
        let metrics = json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "touch": true}});
        self.session(width.max(500), height, Some(metrics)).await
    }

    async fn session(&self, width: u32, height: u32, mobile: Option<Value>) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--autoplay-policy=no-user-gesture-required".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut chrome = json!({"binary": chromium_path(), "args": args});
        if let Some(m) = mobile {
            chrome["mobileEmulation"] = m;
        }
        let mut caps = fantoccini::wd::Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), chrome);
        // chromedriver is on loopback http: a plain connector, no TLS.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("Chromium did not start a session: {e}"));
        Browser { client, _profile: profile }
    }
}

/// One browser session.
pub struct Browser {
    client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("going to {url}: {e}"));
    }

    /// Run a script (its body; use `return`) with arguments.
    pub async fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// The element a script returns (for instance one inside a shadow root).
    pub async fn el(&self, expr: &str) -> Element {
        let v = self.wait_value(&format!("return {expr};")).await;
        let id = v[ELEMENT].as_str().unwrap_or_else(|| panic!("{expr} is not an element: {v}"));
        Element::from_element_id(self.client.clone(), ElementRef::from(id.to_owned()))
    }

    pub async fn click(&self, e: &Element) {
        e.click().await.unwrap_or_else(|err| panic!("clicking {}: {err}", e.element_id()));
    }

    /// Find the element a script returns and click it, finding it again if
    /// the page re-rendered it in between (a stale reference).
    pub async fn click_on(&self, expr: &str) {
        let started = Instant::now();
        loop {
            match self.el(expr).await.click().await {
                Ok(()) => return,
                Err(err) if err.is_stale_element_reference() && started.elapsed() < Duration::from_secs(15) => continue,
                Err(err) => panic!("clicking {expr}: {err}"),
            }
        }
    }

    /// Type like a user, key by key ("\u{E007}" is Enter).
    pub async fn type_text(&self, e: &Element, text: &str) {
        e.send_keys(text).await.unwrap_or_else(|err| panic!("typing into {}: {err}", e.element_id()));
    }

    /// Find the element a script returns and type into it, finding it again
    /// if it went stale before the first key (a busy Chromium can still be
    /// swapping a fresh session's first document when the page is found).
    pub async fn type_on(&self, expr: &str, text: &str) {
        let started = Instant::now();
        loop {
            match self.el(expr).await.send_keys(text).await {
                Ok(()) => return,
                Err(err) if err.is_stale_element_reference() && started.elapsed() < Duration::from_secs(15) => continue,
                Err(err) => panic!("typing into {expr}: {err}"),
            }
        }
    }

    /// Poll a script until it returns something truthy (not null, false,
    /// "" or 0); returns that value. Panics after `timeout` with the script.
    pub async fn wait_for(&self, script: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            // A script error (the element is not there yet) counts as "not yet".
            let v = match self.client.execute(script, vec![]).await {
                Ok(v) => v,
                Err(e) if started.elapsed() >= timeout => {
                    panic!("timed out after {timeout:?} waiting for: {script}: {e}")
                }
                Err(CmdError::Standard(_)) => Value::Null,
                Err(e) => panic!("waiting for {script}: {e}"),
            };
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for: {script}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_value(&self, script: &str) -> Value {
        self.wait_for(script, Duration::from_secs(15)).await
    }

    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Where screenshots go (not committed): `target/screenshots/`.
pub fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots").join(name)
}
