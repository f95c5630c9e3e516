//! Work that must never slow live chat, on threads at the lowest CPU
//! priority the kernel has: reports. On SQLite their rows are read and
//! tallied on a reader of their own at this priority
//! (`store/sqlite_readers.rs`, `Readers::spawn_lowest`), which also rests
//! between chunks of rows (`store/reports.rs`); on PostgreSQL
//! they are read, decoded and tallied on a thread of their own at this
//! priority, on a Tokio runtime and a connection of its own
//! (`store/reports.rs`, `PgReports`); `http/reports` builds every report
//! on this module's thread (`run`).
//!
//! A report reads every chat of its range, tens of thousands of rows, and
//! keeps a core busy for a tenth of a second; asked for in a loop it keeps
//! one busy all the time, half of a small machine, and chat's p99 grew
//! two to four times. A thread of Linux's `SCHED_IDLE` class gets a core
//! only when no ordinary thread wants it (a sliver otherwise: weight 3
//! against 1024): the kernel preempts it as soon as one wakes, and places
//! a woken thread on a core that runs only such threads as if the core
//! were idle. A report then takes what chat leaves, and is slower only
//! while chat needs the CPU. The class alone is not enough: measured in
//! turns with and without reports, chat's p99 doubled on SQLite with the
//! reader in this class or not, as it grew by half when another process
//! did the same reads; what brought it to 1.02–1.12x is the reader
//! resting between chunks of rows (`store/reports.rs`).
//!
//! Nor does the class make these threads yield to another process: it
//! ranks threads within their scheduling group, and the database's
//! processes are in another (their session's autogroup, or their
//! service's cgroup), which competes with this process's group as an
//! equal whatever its threads' class. With PostgreSQL's reports asked in
//! a loop, the database's processes waited in the run queue behind
//! `reports-pg` and `reports-low` (`perf sched`: their p99 wait 0.33 ms
//! without reports, 2.86 ms with, 273 waits over a millisecond in 12 s
//! with one of these on the core), and chat's p99 was 2.4x. So this
//! work also rests, `REST_PER_WORK` times as long as it worked: the
//! report thread after each report it builds, PostgreSQL's report lane
//! between steps (`Pace`). It rests only while chat is writing
//! (`chat_live`): on a quiet server there is nothing to make room for.
//!
//! `nice 19` for the thread alone (`setpriority` on its thread id) was
//! the other choice, measured against this one: it leaves the report a
//! share of the core (weight 15), and a woken chat thread does not treat
//! its core as idle; chat's p99 grew as much as with no change
//! (`docs/benchmarks.md`).
//!
//! The risk of the lowest class is a lock held by such a thread while it
//! waits for the CPU. What runs here shares almost none with chat: a
//! report's SQLite reader has its own connection (WAL readers never block
//! the writer; SQLite's process-wide mutexes, for its memory statistics
//! and the page caches' shared LRU, are held for a few instructions, and
//! a build without them changed nothing measurable), and a report's
//! tally and build touch only their own data.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Work for `reports-low`, and how long its asker worked for it before.
type Job = (Box<dyn FnOnce() + Send>, std::time::Duration);

/// Run `work` on the one thread of lowest priority this process keeps
/// for it (started at first use), and wait for its answer. Every report
/// is built there. The thread rests after it for `work` and for
/// `worked_before`, what the asker did for it on chat's runtime (a
/// report's queries of the site, its agents, groups and greetings): a
/// report's work there and in the database's process is not in the class
/// of this thread, and of a warm report's work it was a third
/// (`docs/benchmarks.md`).
pub(crate) async fn run<T, F>(worked_before: std::time::Duration, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    static JOBS: OnceLock<std::result::Result<flume::Sender<Job>, String>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (jobs, queue) = flume::unbounded::<Job>();
        spawn("reports-low", move || {
            while let Ok((job, worked_before)) = queue.recv() {
                let began = Instant::now();
                job();
                let rest = rest_after(began.elapsed() + worked_before);
                if !rest.is_zero() {
                    std::thread::sleep(rest);
                }
            }
        })
        .map(|_| jobs)
        .map_err(|e| e.to_string())
    });
    let jobs = jobs.as_ref().map_err(|e| Error::internal(anyhow::anyhow!("cannot start the reports thread: {e}")))?;
    let (reply, answer) = oneshot::channel();
    let job: Job = (
        Box::new(move || {
            if !reply.is_closed() {
                let _ = reply.send(work());
            }
        }),
        worked_before,
    );
    jobs.send(job).map_err(|_| Error::Unavailable(1))?;
    answer.await.map_err(|_| Error::Unavailable(1))?
}

/// How much longer than it worked low-priority work rests: a report asked
/// in a loop works a twentieth of the time at most. The class of these
/// threads does not make them yield to other processes (see the module's
/// doc); this does. Measured with PostgreSQL's reports asked in a loop
/// beside chat (chat's p99 with reports over without, one run each):
/// 1.34 resting about a millisecond per day of a report, 1.30 resting as
/// long as it worked, 1.23 three times as long, 1.10 nine times as long,
/// for reports of 49, 60, 76 and 141 ms. Nine times read 0.95–1.34 over
/// ten runs (at the target, 1.2, on average); nineteen times 1.12–1.19 in
/// three alternated with them, for reports of 215–225 ms, within their
/// 500 ms (`docs/benchmarks.md`).
pub(crate) const REST_PER_WORK: u32 = 19;

/// When chat last committed in this process (Unix ms): a message, or on
/// SQLite any change to a conversation, as the stores' writers stamp it: the rests are for chat's sake, so work done
/// when chat has written nothing for `CHAT_QUIET_MS` does not rest. A
/// report on a quiet server answers at once (a month: tens of ms instead
/// of twenty times as long); beside live chat it still takes a twentieth
/// of a core at most. Only this process's chat counts: a report on one
/// node of a cluster does not see the others' (nor does it share their
/// CPU).
static CHAT_WROTE_AT: AtomicI64 = AtomicI64::new(i64::MIN);

/// How long after chat's last write work still rests: longer than the
/// gaps between messages of a site with any chat going on.
const CHAT_QUIET_MS: i64 = 2_000;

/// Chat committed at `now_ms` (called by the stores' writers, once per
/// commit of chat's changes).
pub(crate) fn chat_wrote(now_ms: i64) {
    CHAT_WROTE_AT.store(now_ms, Ordering::Relaxed);
}

/// Whether chat wrote within `CHAT_QUIET_MS`.
fn chat_live() -> bool {
    live_at(CHAT_WROTE_AT.load(Ordering::Relaxed), crate::store::now_ms())
}

/// Whether chat that last wrote at `wrote_at` is live at `now`.
fn live_at(wrote_at: i64, now: i64) -> bool {
    now.saturating_sub(wrote_at) < CHAT_QUIET_MS
}

/// The longest one rest: the next report asked waits for the rest of the
/// one before, so a long report (a year of a busy site) makes the next
/// wait at most this long.
const REST_MOST: std::time::Duration = std::time::Duration::from_millis(250);

/// The rest after work that took `worked`: none while chat is quiet.
fn rest_after(worked: std::time::Duration) -> std::time::Duration {
    rest(worked, chat_live())
}

/// `REST_PER_WORK` times `worked`, at most `REST_MOST`, while chat is live.
fn rest(worked: std::time::Duration, chat_live: bool) -> std::time::Duration {
    if chat_live { (worked * REST_PER_WORK).min(REST_MOST) } else { std::time::Duration::ZERO }
}

/// Rest on this thread as long as `worked`, while chat is live: SQLite's
/// report reader between chunks of rows (`store/reports.rs`).
pub(crate) fn rest_as_long_as(worked: std::time::Duration) {
    if chat_live() {
        std::thread::sleep(worked);
    }
}

/// Rests for work done in steps on an async runtime: `breathe` after each
/// step rests once a millisecond of work has added up (a timer's
/// resolution: shorter rests would round up to it).
pub(crate) struct Pace {
    since: Instant,
}

impl Pace {
    pub(crate) fn start() -> Pace {
        Pace { since: Instant::now() }
    }

    pub(crate) async fn breathe(&mut self) {
        self.breathe_unless(|| false).await;
    }

    /// Rest for all the work since the last rest, however short: at the
    /// end of a job, so that no part of it goes unrested.
    pub(crate) async fn settle(&mut self) {
        self.rest(|| false).await;
    }

    /// `breathe`, but the rest cut short once `stop` says so (asked every
    /// `STOP_LOOKS`): the lead's rounds of summaries rest so while a
    /// report may be waiting behind them for the lane.
    pub(crate) async fn breathe_unless(&mut self, stop: impl Fn() -> bool) {
        if self.since.elapsed() >= std::time::Duration::from_millis(1) {
            self.rest(stop).await;
        }
    }

    /// Rest for the work since the last rest, until `stop` says so.
    async fn rest(&mut self, stop: impl Fn() -> bool) {
        let until = Instant::now() + rest_after(self.since.elapsed());
        loop {
            // Not even a zero sleep: the timer would round it up to 1 ms.
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || stop() {
                break;
            }
            tokio::time::sleep(left.min(STOP_LOOKS)).await;
        }
        self.since = Instant::now();
    }
}

/// How often a rest that may be cut short asks whether to stop.
const STOP_LOOKS: std::time::Duration = std::time::Duration::from_millis(5);

/// Start a thread named `name` that runs `work` at the lowest CPU
/// priority (`lower_this_thread`).
pub(crate) fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_this_thread();
            work()
        })
        .map(drop)
        .map_err(|e| Error::internal(anyhow::anyhow!("cannot start the {name} thread: {e}")))
}

/// Put the calling thread at the lowest CPU priority. If that cannot be
/// done (another OS, a kernel that refuses), say so once at warn and carry
/// on at the normal priority: reports still work, and may slow chat.
pub(crate) fn lower_this_thread() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = lower()
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(error = %e, "cannot lower the reports thread's CPU priority; reports may slow live chat");
    }
}

#[cfg(target_os = "linux")]
fn lower() -> std::io::Result<()> {
    // Linux schedules threads: pid 0 is the calling thread alone, not the
    // process. A thread may always lower its own class, unprivileged.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system call on the calling thread with a valid pointer.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn lower() -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "only on Linux"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn work_rests_only_while_chat_writes_and_never_past_the_cap() {
        let ms = Duration::from_millis;
        assert_eq!(rest(ms(2), true), ms(2) * REST_PER_WORK);
        assert_eq!(rest(ms(100), true), REST_MOST, "a long report's rest is capped");
        assert_eq!(rest(ms(100), false), Duration::ZERO);
        let now = 1_000_000;
        assert!(live_at(now, now) && live_at(now - CHAT_QUIET_MS + 1, now));
        assert!(!live_at(now - CHAT_QUIET_MS, now), "quiet for CHAT_QUIET_MS");
        assert!(!live_at(i64::MIN, now), "chat never wrote");
        // A clock that went back a little (another thread's stamp).
        assert!(live_at(now + 5, now));
    }

    #[tokio::test]
    async fn a_rest_is_cut_short_when_told_to_stop() {
        chat_wrote(crate::store::now_ms());
        let mut pace = Pace::start();
        // Some 5 ms of work: a rest of some 95 ms is due.
        let began = Instant::now();
        while began.elapsed() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let rested = Instant::now();
        pace.breathe_unless(|| asked.fetch_add(1, Ordering::Relaxed) >= 1).await;
        assert_eq!(asked.load(Ordering::Relaxed), 2, "asked before the rest, and after its first slice");
        assert!(rested.elapsed() < Duration::from_millis(60), "{:?}", rested.elapsed());
    }
}
