//! Password hashing in a bounded pool of dedicated threads, never on the
//! async workers. Argon2id is deliberately slow (~12 ms a hash here), so a
//! login storm must queue for it without starving anything else; the queue
//! is bounded, and a job whose caller has given up (timed out, hung up) is
//! dropped when it reaches a worker instead of being hashed for nobody.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

enum Work {
    Hash(String),
    Verify { password: String, hash: String },
}

struct Job {
    work: Work,
    deadline: Instant,
    reply: oneshot::Sender<Result<Outcome>>,
}

enum Outcome {
    Hashed(String),
    Verified(bool),
}

/// What the workers count, shared with the pool.
#[derive(Default)]
struct Counts {
    /// Hashes (and verifications) actually computed, for metrics and the
    /// storm rehearsal's `password_hashes` count.
    computed: AtomicU64,
    /// Jobs dropped because their caller had given up.
    abandoned: AtomicU64,
    /// Jobs handed over and not yet finished by a worker.
    outstanding: AtomicUsize,
    /// Times the freed memory was handed back.
    trims: AtomicU64,
}

pub struct HashPool {
    jobs: std_mpsc::SyncSender<Job>,
    counts: Arc<Counts>,
    /// Jobs handed to the pool and not answered yet: logins waiting for
    /// CPU. Admission shrinks the lower lanes while it is above zero.
    backlog: Arc<AtomicUsize>,
    deadline: Duration,
}

impl HashPool {
    /// `threads` workers, at most `queue` waiting jobs, each job given up
    /// after `deadline`.
    pub fn new(threads: usize, queue: usize, deadline: Duration) -> Self {
        let (tx, rx) = std_mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let counts = Arc::new(Counts::default());
        for i in 0..threads.max(1) {
            let (rx, counts) = (rx.clone(), counts.clone());
            std::thread::Builder::new()
                .name(format!("hash-{i}"))
                .spawn(move || worker(rx, counts))
                .expect("spawn hash worker");
        }
        HashPool { jobs: tx, counts, backlog: Arc::default(), deadline }
    }

    /// Jobs waiting for or running on the pool, as a shared counter (see
    /// `Admission::yield_to`).
    pub fn backlog(&self) -> Arc<AtomicUsize> {
        self.backlog.clone()
    }

    pub fn computed(&self) -> u64 {
        self.counts.computed.load(Ordering::Relaxed)
    }

    pub fn abandoned(&self) -> u64 {
        self.counts.abandoned.load(Ordering::Relaxed)
    }

    async fn run(&self, work: Work) -> Result<Outcome> {
        // Counted from hand-over to answer, however the wait ends.
        struct Pending<'a>(&'a AtomicUsize);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.backlog.fetch_add(1, Ordering::Relaxed);
        let _pending = Pending(&self.backlog);
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + self.deadline;
        self.counts.outstanding.fetch_add(1, Ordering::SeqCst);
        self.jobs.try_send(Job { work, deadline, reply }).map_err(|e| {
            self.counts.outstanding.fetch_sub(1, Ordering::SeqCst);
            match e {
                std_mpsc::TrySendError::Full(_) => {
                    metrics::counter!("holdfast_hash_pool_rejected_total").increment(1);
                    Error::Unavailable(1)
                }
                std_mpsc::TrySendError::Disconnected(_) => Error::internal(anyhow::anyhow!("hash pool stopped")),
            }
        })?;
        match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) | Err(_) => Err(Error::Unavailable(1)),
        }
    }

    pub async fn hash(&self, password: &str) -> Result<String> {
        match self.run(Work::Hash(password.to_owned())).await? {
            Outcome::Hashed(h) => Ok(h),
            Outcome::Verified(_) => Err(Error::internal(anyhow::anyhow!("hash pool mixed up a job"))),
        }
    }

    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool> {
        match self.run(Work::Verify { password: password.to_owned(), hash: hash.to_owned() }).await? {
            Outcome::Verified(ok) => Ok(ok),
            Outcome::Hashed(_) => Err(Error::internal(anyhow::anyhow!("hash pool mixed up a job"))),
        }
    }
}

/// How much the hash threads' scheduling priority is raised (a nice value
/// below 0): login is the top lane, and its CPU is the hash pool. Under a
/// login flood with the dashboard overloaded, the two cores are shared by
/// the hashes, the shedding of the flood and everything else; at the
/// default priority the hash threads got a third of the machine and logins
/// took 2.9x what the pool alone needs.
const HASH_NICE: i32 = -5;

/// Raise this thread's priority, where the process may (root, or
/// `CAP_SYS_NICE`, e.g. `AmbientCapabilities=CAP_SYS_NICE` in systemd).
/// Without that right the pool simply runs at the default priority.
fn raise_priority() {
    // SAFETY: plain syscalls on this thread's own id, no memory involved.
    let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, HASH_NICE) };
    if done != 0 {
        tracing::debug!("hash threads run at the default priority (no CAP_SYS_NICE)");
    }
}

fn worker(rx: Arc<Mutex<std_mpsc::Receiver<Job>>>, counts: Arc<Counts>) {
    raise_priority();
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        run_job(job, &counts);
        // The last job of a spell hands the memory back; during a flood
        // another is always waiting or running and it stays warm.
        if counts.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            release_freed_memory();
            counts.trims.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Hash or verify, unless the caller has given up.
fn run_job(job: Job, counts: &Counts) {
    if job.reply.is_closed() || Instant::now() >= job.deadline {
        counts.abandoned.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("holdfast_hash_pool_abandoned_total").increment(1);
        return;
    }
    let outcome = match job.work {
        Work::Hash(password) => hash_now(&password).map(Outcome::Hashed),
        Work::Verify { password, hash } => Ok(Outcome::Verified(verify_now(&password, &hash))),
    };
    counts.computed.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("holdfast_password_hashes_total").increment(1);
    let _ = job.reply.send(outcome);
}

/// Each argon2 hash takes 19 MiB and frees it. The `holdfast` binary's
/// allocator (mimalloc) gives so large a block back by itself; under
/// glibc's malloc (this library in another program, and SQLite's own
/// allocations) the pages stay, and a node that hashed twice (its first
/// admin, the status probe's login) sat at 42 MB where 23 MB is its own.
/// Hand them back when the pool runs out of work: during a login flood the
/// memory stays warm; an isolated login pays its page faults again
/// (`malloc_trim` covers every arena).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives free pages of glibc's heaps back to the
    // OS; it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Argon2id with the crate's defaults (19 MiB, t=2, p=1: OWASP's minimum).
/// Synchronous; call only from the pool or from tools outside the server.
pub fn hash_now(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(anyhow::anyhow!("hashing failed: {e}")))
}

fn verify_now(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_and_verifies() {
        let pool = HashPool::new(1, 4, Duration::from_secs(10));
        let h = pool.hash("correct horse").await.unwrap();
        assert!(pool.verify("correct horse", &h).await.unwrap());
        assert!(!pool.verify("wrong horse", &h).await.unwrap());
        assert!(!pool.verify("x", "not a phc string").await.unwrap());
    }

    #[tokio::test]
    async fn hash_threads_run_above_the_default_priority_where_allowed_and_count_their_backlog() {
        let pool = Arc::new(HashPool::new(1, 4, Duration::from_secs(10)));
        let h = hash_now("pw").unwrap();
        let backlog = pool.backlog();
        let running = {
            let (pool, h) = (pool.clone(), h.clone());
            tokio::spawn(async move { pool.verify("pw", &h).await })
        };
        // Counted from hand-over until answered.
        let waited = std::time::Instant::now();
        while backlog.load(Ordering::Relaxed) == 0 && waited.elapsed() < Duration::from_secs(5) {
            tokio::task::yield_now().await;
        }
        assert!(running.await.unwrap().unwrap());
        assert_eq!(backlog.load(Ordering::Relaxed), 0);
        // The worker's nice value (field 19 of its /proc stat).
        let nice = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| {
                let dir = t.ok()?.path();
                let name = std::fs::read_to_string(dir.join("comm")).ok()?;
                (name.trim() == "hash-0").then(|| std::fs::read_to_string(dir.join("stat")).ok())?
            })
            .map(|stat| {
                let after_name = &stat[stat.rfind(')').unwrap() + 2..];
                after_name.split(' ').nth(16).unwrap().parse::<i32>().unwrap()
            })
            .next()
            .expect("a hash-0 thread");
        // SAFETY: reads this process's effective user id.
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(nice, if root { HASH_NICE } else { 0 });
    }

    #[tokio::test]
    async fn freed_memory_is_handed_back_when_the_pool_runs_out_of_work() {
        let pool = HashPool::new(1, 8, Duration::from_secs(10));
        let trims = || pool.counts.trims.load(Ordering::Relaxed);
        assert_eq!(trims(), 0, "nothing to hand back before any hash");
        pool.hash("pw").await.unwrap();
        // The trim comes just after the answer: wait for it briefly.
        let waited = std::time::Instant::now();
        while trims() == 0 {
            assert!(waited.elapsed() < Duration::from_secs(5), "no trim after the last job");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(trims(), 1);
        // Three jobs queued at once: the worker finds the next one waiting
        // after each of the first two, and trims only after the third.
        let h = hash_now("pw").unwrap();
        let (a, b, c) = tokio::join!(pool.verify("pw", &h), pool.verify("pw", &h), pool.verify("pw", &h));
        assert!(a.unwrap() && b.unwrap() && c.unwrap());
        let waited = std::time::Instant::now();
        while trims() < 2 {
            assert!(waited.elapsed() < Duration::from_secs(5), "no trim after the last job");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(trims(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_waiting() {
        let pool = HashPool::new(1, 1, Duration::from_secs(10));
        let h = hash_now("pw").unwrap();
        let mut pending = Vec::new();
        let pool = Arc::new(pool);
        for _ in 0..6 {
            let pool = pool.clone();
            let h = h.clone();
            pending.push(tokio::spawn(async move { pool.verify("pw", &h).await }));
        }
        let mut refused = 0;
        for p in pending {
            if matches!(p.await.unwrap(), Err(Error::Unavailable(_))) {
                refused += 1;
            }
        }
        assert!(refused >= 1, "with one worker and a queue of one, six at once cannot all fit");
    }

    #[tokio::test]
    async fn jobs_past_their_deadline_are_dropped_not_hashed() {
        // One worker kept busy; the queued jobs expire before it is free.
        let pool = Arc::new(HashPool::new(1, 16, Duration::from_millis(1)));
        let h = hash_now("pw").unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let pool = pool.clone();
            let h = h.clone();
            tasks.push(tokio::spawn(async move { pool.verify("pw", &h).await }));
        }
        for t in tasks {
            let _ = t.await.unwrap();
        }
        // Wait until the worker reaches (and drops) an expired job.
        let waited = std::time::Instant::now();
        while pool.abandoned() == 0 && waited.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(pool.abandoned() >= 1, "expired jobs are skipped");
        assert!(pool.computed() + pool.abandoned() <= 8);
    }
}
