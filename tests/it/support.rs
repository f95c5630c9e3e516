//! The harness: a real server in-process, HTTP and WebSocket clients, and
//! waiting for a frame that matches a predicate (always with a timeout).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use holdfast_server::app::AppState;
use holdfast_server::auth::passwords;
use holdfast_server::config::Config;
use holdfast_server::store::{Agent, NewAgent, Role, Site};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub base: String,
    pub ws_base: String,
    pub state: AppState,
    pub dir: PathBuf,
    /// Keeps the temporary directory alive for the test's duration.
    _tmp: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let mut s = Self::start_in(&dir, |_| {}).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let mut s = Self::start_in(&dir, tune).await;
        s._tmp = Some(tmp);
        s
    }

    pub async fn start_in(dir: &Path, tune: impl FnOnce(&mut Config)) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(listener, dir, tune).await
    }

    /// Start on a given address (e.g. the one a stopped server had, so
    /// clients that know only that address can reconnect), waiting for the
    /// port to be free.
    pub async fn start_at(addr: std::net::SocketAddr, dir: &Path, tune: impl FnOnce(&mut Config)) -> TestServer {
        let started = std::time::Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) if started.elapsed() < WAIT => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        };
        Self::serve(listener, dir, tune).await
    }

    async fn serve(listener: tokio::net::TcpListener, dir: &Path, tune: impl FnOnce(&mut Config)) -> TestServer {
        let addr = listener.local_addr().unwrap();
        let mut config = Config::new(addr, dir.to_owned());
        config.announce = false;
        config.presence_grace = Duration::from_millis(300);
        tune(&mut config);
        let (state, _first) = AppState::build(config).await.expect("server state");
        let (tx, rx) = oneshot::channel::<()>();
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            holdfast_server::server::run(listener, serve_state, async {
                let _ = rx.await;
            })
            .await
            .expect("server");
        });
        TestServer {
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            state,
            dir: dir.to_owned(),
            _tmp: None,
            shutdown: Some(tx),
            task: Some(task),
            http: http_builder().user_agent("holdfast-tests/1").build().unwrap(),
        }
    }

    /// Stop serving (drain) and wait for the server task to end.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
        self._tmp.take()
    }

    pub async fn site(&self) -> Site {
        self.state.store.sites().await.unwrap().remove(0)
    }

    pub async fn new_site(&self, name: &str) -> Site {
        self.state.store.create_site(name).await.unwrap()
    }

    /// Arrange an agent directly in the store (the CLI test covers creation
    /// through the public interface).
    pub async fn agent(&self, site: &Site, email: &str, limit: i64) -> Agent {
        self.member(site, email, email.split('@').next().unwrap(), Role::Agent, limit).await
    }

    /// Arrange a person of any role (an admin, the operator) the same way;
    /// their password is `password123`.
    pub async fn person(&self, site: &Site, email: &str, name: &str, role: Role) -> Agent {
        self.member(site, email, name, role, 5).await
    }

    async fn member(&self, site: &Site, email: &str, name: &str, role: Role, chat_limit: i64) -> Agent {
        let hash = passwords::hash_now("password123").unwrap();
        let new = NewAgent { site_id: &site.id, email, name, role, password_hash: &hash, chat_limit };
        self.state.store.create_agent(new).await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.request(self.http.post(format!("{}{path}", self.base)).json(&body), token).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.request(self.http.put(format!("{}{path}", self.base)).json(&body), token).await
    }

    /// Any method with a JSON body and a bearer token.
    pub async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.request(self.http.request(method, format!("{}{path}", self.base)).json(&body), Some(token)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.request(self.http.get(format!("{}{path}", self.base)), token).await
    }

    async fn request(&self, mut req: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("http");
        let status = res.status().as_u16();
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Log in; returns (access token, refresh token).
    pub async fn login(&self, email: &str, password: &str) -> (String, String) {
        let (status, body) = self.post("/api/v1/auth/login", None, json!({"email": email, "password": password})).await;
        assert_eq!(status, 200, "login failed: {body}");
        (body["access_token"].as_str().unwrap().into(), body["refresh_token"].as_str().unwrap().into())
    }

    /// A new visitor of the site; returns (visitor id, visitor token).
    pub async fn visitor(&self, site: &Site) -> (String, String) {
        let (status, body) = self
            .post(
                "/api/v1/visitor/session",
                None,
                json!({"widget_key": site.widget_key, "page_url": "https://shop.example/p/1"}),
            )
            .await;
        assert_eq!(status, 200, "visitor session failed: {body}");
        (body["visitor_id"].as_str().unwrap().into(), body["visitor_token"].as_str().unwrap().into())
    }

    /// An agent logged in, connected and online.
    pub async fn online_agent(&self, email: &str) -> (Client, String) {
        let (access, _) = self.login(email, "password123").await;
        let mut c = Client::connect(self, "/api/v1/agent/socket", &access, HashMap::new()).await;
        c.send(json!({"type": "set_availability", "availability": "online"})).await;
        c.wait_for(|f| f["type"] == "availability" && f["agent"]["availability"] == "online").await;
        (c, access)
    }
}

/// An access token for `email` (password `password123`, the tests' own)
/// from the server at `base` (`http://…`, e.g. a `holdfast serve` child).
pub async fn login_at(base: &str, email: &str) -> String {
    let res =
        http().post(format!("{base}/api/v1/auth/login")).json(&json!({"email": email, "password": "password123"}));
    let login: Value = res.send().await.expect("http").json().await.expect("a login answer");
    login["access_token"].as_str().unwrap_or_else(|| panic!("no access token for {email}: {login}")).to_owned()
}

/// A new visitor of the site with `widget_key` on the server at `base`
/// (`http://…`, e.g. a `holdfast serve` child process), connected to its
/// socket: (the client, the visitor token).
pub async fn visitor_at(base: &str, widget_key: &str) -> (Client, String) {
    let res = http().post(format!("{base}/api/v1/visitor/session")).json(&json!({"widget_key": widget_key}));
    let session: Value = res.send().await.expect("http").json().await.expect("a session");
    let token = session["visitor_token"].as_str().expect("a visitor token").to_owned();
    let ws = base.replace("http://", "ws://");
    (Client::try_connect(&ws, "/api/v1/visitor/socket", &token, HashMap::new()).await.unwrap(), token)
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client that keeps cursors and every durable event it received.
pub struct Client {
    ws: Ws,
    pub welcome: Value,
    pub cursors: HashMap<String, i64>,
    /// Durable events (those with conv + seq) in arrival order.
    pub events: Vec<Value>,
    /// Frames received but not yet consumed by `wait_for`.
    pending: Vec<Value>,
}

impl Client {
    pub async fn connect(server: &TestServer, path: &str, token: &str, cursors: HashMap<String, i64>) -> Client {
        Self::try_connect(&server.ws_base, path, token, cursors).await.expect("welcome")
    }

    /// Connect and say hello; `Err(frame)` if the server answered with an error.
    pub async fn try_connect(
        ws_base: &str,
        path: &str,
        token: &str,
        cursors: HashMap<String, i64>,
    ) -> Result<Client, Value> {
        let hello = json!({"type": "hello", "v": 1, "token": token, "cursors": cursors});
        Self::try_hello(ws_base, path, hello).await
    }

    /// Connect and send this `hello`; `Err(frame)` if the server answered
    /// with an error.
    pub async fn try_hello(ws_base: &str, path: &str, hello: Value) -> Result<Client, Value> {
        Self::try_hello_as(ws_base, path, hello, None).await
    }

    /// As `try_connect`, through a proxy that says the client is
    /// `forwarded_for` (`X-Forwarded-For`).
    pub async fn try_connect_from(
        ws_base: &str,
        path: &str,
        token: &str,
        forwarded_for: &str,
    ) -> Result<Client, Value> {
        let hello = json!({"type": "hello", "v": 1, "token": token, "cursors": {}});
        Self::try_hello_as(ws_base, path, hello, Some(forwarded_for)).await
    }

    async fn try_hello_as(
        ws_base: &str,
        path: &str,
        hello: Value,
        forwarded_for: Option<&str>,
    ) -> Result<Client, Value> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("{ws_base}{path}").into_client_request().expect("ws request");
        if let Some(xff) = forwarded_for {
            request.headers_mut().insert("x-forwarded-for", xff.parse().expect("header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("ws connect");
        let cursors = serde_json::from_value(hello["cursors"].clone()).unwrap_or_default();
        let mut c = Client { ws, welcome: Value::Null, cursors, events: Vec::new(), pending: Vec::new() };
        c.send(hello).await;
        let first = c.next().await.expect("first frame");
        if first["type"] == "welcome" {
            c.welcome = first;
            Ok(c)
        } else {
            Err(first)
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::Text(frame.to_string().into())).await.expect("ws send");
    }

    pub async fn send_raw(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.expect("ws send");
    }

    /// The next frame from the socket (None when it closed), recording
    /// durable events and cursors.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for a frame")?;
            match msg {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("server sent JSON");
                    // Durable events carry conv + seq; an ack does too, but is not one.
                    if let (Some(conv), Some(seq), false) = (v["conv"].as_str(), v["seq"].as_i64(), v["type"] == "ack")
                    {
                        self.cursors.insert(conv.to_owned(), seq);
                        self.events.push(v.clone());
                    }
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Wait for a frame matching `pred`; other frames are kept for later.
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i);
        }
        loop {
            let f = self.next().await.expect("socket closed while waiting");
            if pred(&f) {
                return f;
            }
            self.pending.push(f);
        }
    }

    /// Send a message and wait for its ack.
    pub async fn say(&mut self, conv: Option<&str>, client_id: &str, body: &str) -> Value {
        let mut frame = json!({"type": "send", "client_id": client_id, "body": body});
        if let Some(c) = conv {
            frame["conv"] = json!(c);
        }
        self.send(frame).await;
        let cid = client_id.to_owned();
        self.wait_for(move |f| {
            (f["type"] == "ack" || f["type"] == "error") && (f["client_id"] == cid || f["ref"] == cid)
        })
        .await
    }

    /// Messages received (durable `message` events), as (conv, seq, body).
    pub fn messages(&self) -> Vec<(String, i64, String)> {
        self.events
            .iter()
            .filter(|e| e["type"] == "message")
            .map(|e| {
                (
                    e["conv"].as_str().unwrap().to_owned(),
                    e["seq"].as_i64().unwrap(),
                    e["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Drop the connection without a close handshake (as a network cut would).
    pub fn cut(self) {
        drop(self.ws);
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Assert a frame is an error with `code`.
/// A builder for the tests' own HTTP clients. reqwest has no crypto provider
/// of its own: install the one the binary installs at start, whether or not
/// this test built a server in process.
/// The real binary, killed when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `holdfast serve` on a free port of 127.0.0.1 with `args`, on the data
/// dir `dir`: the process and its base URL. Its log is not shown.
pub fn spawn_serve(dir: &Path, args: &[&str]) -> (Proc, String) {
    spawn_serve_with(dir, args, |c| {
        c.stderr(std::process::Stdio::null());
    })
}

/// The same, with the command changed first by `tune` (its environment,
/// where its log goes).
pub fn spawn_serve_with(dir: &Path, args: &[&str], tune: impl FnOnce(&mut std::process::Command)) -> (Proc, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut command = Command::new(env!("CARGO_BIN_EXE_holdfast"));
    command.args(["serve", "--listen", "127.0.0.1:0"]).args(args).arg("--data").arg(dir).stdout(Stdio::piped());
    tune(&mut command);
    let mut child = command.spawn().expect("spawn holdfast");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let base = first.rsplit(' ').next().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "unexpected banner {first:?}");
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), base)
}

/// The value of an unlabelled metric on the `/metrics` of the node at
/// `base`, if it shows it.
pub async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = http().get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The seqs of the messages stored in `conv`, read over HTTP from the node
/// at `base` with `token` (asserting the read is allowed).
pub async fn message_seqs(base: &str, conv: &str, token: &str) -> Vec<i64> {
    let url = format!("{base}/api/v1/conversations/{conv}/events?limit=1000");
    let res = http().get(url).bearer_auth(token).send().await.expect("http");
    assert_eq!(res.status().as_u16(), 200, "reading {conv}'s events");
    let events: Value = res.json().await.expect("events");
    events
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

pub fn http_builder() -> reqwest::ClientBuilder {
    holdfast_server::tls::install_crypto_provider();
    reqwest::Client::builder()
}

/// A plain HTTP client, as `reqwest::Client::new()` with the provider.
pub fn http() -> reqwest::Client {
    http_builder().build().unwrap()
}

pub fn assert_error(frame: &Value, code: &str) {
    assert_eq!(frame["type"], "error", "expected an error frame, got {frame}");
    assert_eq!(frame["code"], code, "wrong error code in {frame}");
}
