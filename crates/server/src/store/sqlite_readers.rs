//! Readers of the SQLite store: a few OS threads, each with its own
//! read-only rusqlite connection and prepared-statement cache, taking jobs
//! from one shared queue. A job is a closure run on a connection; its
//! answer comes back on a oneshot.
//!
//! Why not sqlx here: its SQLite driver runs each connection on a worker
//! thread and streams every row back through a channel, and a task holds
//! its pooled connection until it is polled again. In a reconnect storm of
//! 18,000 sockets on two cores the runtime is slow to poll, so connections
//! sat idle while thousands of resumes waited to acquire one (30,000
//! slow-acquire warnings in one rehearsal). Here a connection is busy only
//! while SQLite runs, and a resume's read costs one hop to a thread and
//! one back.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce(&Connection) + Send>;

/// A fixed set of reader threads behind one queue.
pub(super) struct Readers {
    jobs: flume::Sender<Job>,
}

impl Readers {
    /// Open `threads` read-only connections to `db`, named `name-N`.
    pub(super) fn spawn(db: &Path, threads: usize, name: &str) -> Result<Readers> {
        Readers::start(db, threads, name, false)
    }

    /// The same, on threads at the lowest CPU priority
    /// (`low_priority`): for reads that must take only what chat leaves.
    pub(super) fn spawn_lowest(db: &Path, threads: usize, name: &str) -> Result<Readers> {
        Readers::start(db, threads, name, true)
    }

    fn start(db: &Path, threads: usize, name: &str, lowest: bool) -> Result<Readers> {
        let (jobs, queue) = flume::bounded::<Job>(16 * 1024);
        for i in 0..threads.max(1) {
            let conn = Connection::open_with_flags(
                db,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(|e| Error::Store(anyhow::anyhow!("cannot open a reader: {e}")))?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(super::sqlite::sql)?;
            // Every commit of the writer empties a reader's page cache (WAL
            // mode), so under a steady write load each read starts cold:
            // mapping the database file serves those pages without a
            // syscall and a copy each.
            conn.pragma_update(None, "mmap_size", 256i64 * 1024 * 1024).map_err(super::sqlite::sql)?;
            conn.set_prepared_statement_cache_capacity(64);
            super::sqlite::plan_once(&conn)?;
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    if lowest {
                        crate::low_priority::lower_this_thread();
                    }
                    // Ends when the store (every sender) is dropped.
                    while let Ok(job) = queue.recv() {
                        job(&conn);
                    }
                })
                .map_err(|e| Error::internal(anyhow::anyhow!("cannot start a reader: {e}")))?;
        }
        Ok(Readers { jobs })
    }

    /// Run `read` on the next free reader and wait for its answer.
    pub(super) async fn run<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // A caller that gave up (its socket went) does not get a read.
            if !reply.is_closed() {
                let _ = reply.send(read(conn));
            }
        });
        self.jobs.send_async(job).await.map_err(|_| Error::Unavailable(1))?;
        answer.await.map_err(|_| Error::Unavailable(1))?
    }
}
