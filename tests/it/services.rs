//! PostgreSQL and NATS for the cluster tests: a fresh database per test
//! (dropped afterwards) and a NATS subject prefix per test, so tests running
//! at once never see each other. They are the machine's (127.0.0.1:5432 and
//! :4222) unless `HOLDFAST_TEST_DATABASE_URL` and `HOLDFAST_TEST_NATS_URL`
//! say otherwise; `scripts/test` starts throwaway ones when none answers and
//! points those variables at them. A test here fails (never skips) when a
//! service does not answer, and names `scripts/test`.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

use holdfast_server::store::new_id;

/// What a test says when a service is missing: the one command that sets
/// everything up.
const SET_UP: &str = "run scripts/test, which starts one when none answers";

/// Server URL the test databases are created on.
pub fn postgres_url() -> String {
    let url = std::env::var("HOLDFAST_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    static ANSWERED: OnceLock<()> = OnceLock::new();
    ANSWERED.get_or_init(|| must_answer("PostgreSQL", "HOLDFAST_TEST_DATABASE_URL", &url, 5432));
    url
}

pub fn nats_url() -> String {
    let url = std::env::var("HOLDFAST_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    static ANSWERED: OnceLock<()> = OnceLock::new();
    ANSWERED.get_or_init(|| must_answer("NATS", "HOLDFAST_TEST_NATS_URL", &url, 4222));
    url
}

/// Fails the test, saying how to set things up, when nothing listens at
/// the URL's host and port (checked once per test run).
fn must_answer(service: &str, var: &str, url: &str, default_port: u16) {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = authority.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:{default_port}") };
    let answers = host_port
        .to_socket_addrs()
        .is_ok_and(|mut addrs| addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok()));
    assert!(answers, "{service} at {url} is not reachable: {SET_UP} (or point {var} at one)");
}

/// A subject prefix of one test's cluster.
pub fn nats_prefix() -> String {
    format!("hftest_{}", new_id().replace('-', ""))
}

/// A database of its own for one test, dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("holdfast_t_{}", new_id().replace('-', ""));
        let url = holdfast_server::store::postgres::create_database(&postgres_url(), &name)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is needed for this test ({SET_UP}): {e:?}", postgres_url()));
        TestDb { url, name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: do the async work on a thread
        // with a runtime of its own, and wait for it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            if let Err(e) = rt.block_on(holdfast_server::store::postgres::drop_database(&postgres_url(), &name)) {
                eprintln!("could not drop test database {name}: {e:?}");
            }
        })
        .join();
    }
}

/// A real server on SQLite, or on PostgreSQL with a fresh database: what a
/// `both_stores!` case of the HTTP tests runs against.
pub struct Node {
    pub server: crate::support::TestServer,
    /// The PostgreSQL database, kept alive as long as the server.
    pub db: Option<TestDb>,
}

impl Node {
    pub async fn sqlite(tune: impl Fn(&mut holdfast_server::config::Config)) -> Node {
        Node { server: crate::support::TestServer::start_with(tune).await, db: None }
    }

    pub async fn postgres(tune: impl Fn(&mut holdfast_server::config::Config)) -> Node {
        let db = TestDb::create().await;
        let server = crate::support::TestServer::start_with(|c| {
            tune(c);
            c.database_url = Some(db.url.clone());
            c.database_max_connections = 6;
        })
        .await;
        Node { server, db: Some(db) }
    }
}

/// What keeps a test's store alive: its SQLite data dir or its database.
#[allow(dead_code)]
pub enum Keep {
    Dir(tempfile::TempDir),
    Db(TestDb),
}

/// Each `case` runs once per backend, as two tests (`case::sqlite`,
/// `case::postgres`): `case(super::sqlite().await)` and
/// `case(super::postgres().await)`, with the calling module's `sqlite` and
/// `postgres` making its backend.
macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(super::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case(super::postgres().await).await;
            }
        }
    )*};
}
pub(crate) use both_stores;
