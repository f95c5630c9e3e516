//! A small WebDriver client over the `reqwest` the tests already use:
//! enough to drive headless Chromium through `chromedriver` (sessions,
//! navigation, scripts, clicks, typing, screenshots). Elements inside the
//! widget's shadow root are reached by returning them from a script.
//!
//! There is no skipping: if Chromium or its driver cannot start, the test
//! fails with a message saying what to install.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The W3C key under which an element reference travels.
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
    http: reqwest::Client,
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
            "browser tests need Chromium and its driver at {} and {} \
             (apt-get install chromium chromium-driver; `.ci/run` does this)",
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
        let d = Driver { child, url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        let started = Instant::now();
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.url)).send().await
                && r.status().is_success()
            {
                break;
            }
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
        let args = vec![
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
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium_path(), "args": args},
        }}});
        let mut caps = caps;
        if let Some(m) = mobile {
            caps["capabilities"]["alwaysMatch"]["goog:chromeOptions"]["mobileEmulation"] = m;
        }
        let res = self.http.post(format!("{}/session", self.url)).json(&caps).send().await.expect("new session");
        let body: Value = res.json().await.unwrap();
        let id = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Chromium did not start a session: {body}"))
            .to_owned();
        Browser { http: self.http.clone(), url: format!("{}/session/{id}", self.url), _profile: profile }
    }
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    url: String,
    _profile: tempfile::TempDir,
}

#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| format!("webdriver request {path}: {e}"))?;
        let status = res.status();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("webdriver {path} failed ({status}): {}", v["value"]["message"]));
        }
        Ok(v["value"].clone())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).await.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Run a script (its body; use `return`) with arguments.
    pub async fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// The element a script returns (for instance one inside a shadow root).
    pub async fn el(&self, expr: &str) -> Element {
        let v = self.wait_value(&format!("return {expr};")).await;
        Element(v[ELEMENT].as_str().unwrap_or_else(|| panic!("{expr} is not an element: {v}")).to_owned())
    }

    pub async fn click(&self, e: &Element) {
        self.call(reqwest::Method::POST, &format!("/element/{}/click", e.0), Some(json!({}))).await;
    }

    /// Find the element a script returns and click it, finding it again if
    /// the page re-rendered it in between (a stale reference).
    pub async fn click_on(&self, expr: &str) {
        let started = Instant::now();
        loop {
            let e = self.el(expr).await;
            match self.try_call(reqwest::Method::POST, &format!("/element/{}/click", e.0), Some(json!({}))).await {
                Ok(_) => return,
                Err(err) if err.contains("stale") && started.elapsed() < Duration::from_secs(15) => continue,
                Err(err) => panic!("clicking {expr}: {err}"),
            }
        }
    }

    /// Type like a user, key by key ("\u{E007}" is Enter).
    pub async fn type_text(&self, e: &Element, text: &str) {
        self.call(reqwest::Method::POST, &format!("/element/{}/value", e.0), Some(json!({"text": text}))).await;
    }

    /// Poll a script until it returns something truthy (not null, false,
    /// "" or 0); returns that value. Panics after `timeout` with the script.
    pub async fn wait_for(&self, script: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let body = json!({"script": script, "args": []});
            // A script error (the element is not there yet) counts as "not yet".
            let v = match self.try_call(reqwest::Method::POST, "/execute/sync", Some(body)).await {
                Ok(v) => v,
                Err(e) if started.elapsed() < timeout => {
                    let _ = e;
                    Value::Null
                }
                Err(e) => panic!("timed out after {timeout:?} waiting for: {script}: {e}"),
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
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

/// Where screenshots go (not committed): `target/screenshots/`.
pub fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots").join(name)
}
