//! The machine's PostgreSQL and NATS for the cluster tests: a fresh database
//! per test (dropped afterwards) and a NATS subject prefix per test, so
//! tests running at once never see each other. `.ci/run` checks both are
//! reachable first and says how to start them; a test here fails (never
//! skips) when they are not.

use holdfast::store::new_id;

/// Server URL the test databases are created on.
pub fn postgres_url() -> String {
    std::env::var("HOLDFAST_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn nats_url() -> String {
    std::env::var("HOLDFAST_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
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
        let url = holdfast::store::postgres::create_database(&postgres_url(), &name)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is needed for this test: {e:?}", postgres_url()));
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
            if let Err(e) = rt.block_on(holdfast::store::postgres::drop_database(&postgres_url(), &name)) {
                eprintln!("could not drop test database {name}: {e:?}");
            }
        })
        .join();
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
