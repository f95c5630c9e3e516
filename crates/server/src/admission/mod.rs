//! Admission by priority lane. Every HTTP route and socket frame belongs to
//! a lane; each lane has its own concurrency limit and its own bounded
//! queue, so a flood in one lane cannot take capacity from another: agent
//! login and resume (`critical`) keep their reserved permits however hard
//! the dashboard is hammered. When a lane's queue is full, or a request has
//! waited longer than the lane allows, it is shed with `503` and a jittered
//! `Retry-After`. A caller that gives up while queued (closes the
//! connection) drops its future, and with it its place in the queue: no
//! work is ever done for nobody.
//!
//! The lowest lanes have the smallest capacity, so under overload they are
//! shed first. And while logins wait for the password-hash pool (the top
//! lane's CPU), the dashboard and background lanes run one request at a
//! time: the CPU they would use is the logins'.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// Agent login, token refresh, session resume, health checks.
    Critical,
    /// Messages and new visitors (their sessions; sockets resume in `Critical`).
    Chat,
    /// Reports, search, banners, admin lists.
    Dashboard,
    /// Everything that can wait.
    Background,
}

impl Lane {
    pub const ALL: [Lane; 4] = [Lane::Critical, Lane::Chat, Lane::Dashboard, Lane::Background];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Critical => "critical",
            Lane::Chat => "chat",
            Lane::Dashboard => "dashboard",
            Lane::Background => "background",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Capacity of one lane.
#[derive(Debug, Clone, Copy)]
pub struct LaneLimits {
    /// Requests running at once.
    pub concurrency: usize,
    /// Requests waiting for a permit before new ones are shed.
    pub queue: usize,
    /// Longest a request may wait for a permit before it is shed.
    pub max_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    pub critical: LaneLimits,
    pub chat: LaneLimits,
    pub dashboard: LaneLimits,
    pub background: LaneLimits,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            // Login waits on the hash pool, which has its own bounded
            // queue; this lane just must never be starved by the others.
            critical: LaneLimits { concurrency: 1024, queue: 8192, max_wait: Duration::from_secs(20) },
            chat: LaneLimits { concurrency: 512, queue: 4096, max_wait: Duration::from_secs(5) },
            dashboard: LaneLimits { concurrency: 16, queue: 64, max_wait: Duration::from_secs(2) },
            background: LaneLimits { concurrency: 4, queue: 16, max_wait: Duration::from_secs(1) },
        }
    }
}

impl AdmissionConfig {
    fn limits(&self, lane: Lane) -> LaneLimits {
        match lane {
            Lane::Critical => self.critical,
            Lane::Chat => self.chat,
            Lane::Dashboard => self.dashboard,
            Lane::Background => self.background,
        }
    }
}

struct LaneState {
    limits: LaneLimits,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    admitted: AtomicU64,
    shed: AtomicU64,
}

/// Held while admitted work runs; dropping it frees the permit.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
}

/// One lane's figures, for `/readyz` and tests.
#[derive(Debug, Clone, Serialize)]
pub struct LaneStats {
    pub lane: Lane,
    pub in_flight: usize,
    pub waiting: usize,
    pub admitted: u64,
    pub shed: u64,
}

pub struct Admission {
    lanes: [LaneState; 4],
    /// Work of the top lane waiting for CPU (the hash pool's backlog).
    top_backlog: Arc<AtomicUsize>,
}

/// Requests the dashboard and background lanes run at once while the top
/// lane has a backlog.
const UNDER_PRESSURE: usize = 1;

impl Admission {
    pub fn new(config: &AdmissionConfig) -> Self {
        let lane = |l: Lane| {
            let limits = config.limits(l);
            LaneState {
                limits,
                permits: Arc::new(Semaphore::new(limits.concurrency)),
                waiting: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
                shed: AtomicU64::new(0),
            }
        };
        Admission { lanes: Lane::ALL.map(lane), top_backlog: Arc::default() }
    }

    /// Shrink the lower lanes while `backlog` (the hash pool's) is above zero.
    pub fn yield_to(mut self, backlog: Arc<AtomicUsize>) -> Self {
        self.top_backlog = backlog;
        self
    }

    /// A permit of a lower lane is kept only if the top lane is idle or the
    /// lane is within its reduced size.
    fn keep(&self, lane: Lane, permit: OwnedSemaphorePermit) -> Option<Admitted> {
        let state = &self.lanes[lane.index()];
        let lower = matches!(lane, Lane::Dashboard | Lane::Background);
        let in_flight = state.limits.concurrency - state.permits.available_permits();
        if lower && in_flight > UNDER_PRESSURE && self.top_backlog.load(Ordering::Relaxed) > 0 {
            return None;
        }
        state.admitted.fetch_add(1, Ordering::Relaxed);
        Some(Admitted { _permit: permit })
    }

    /// Wait for a permit in `lane`, or be shed with `Error::Unavailable`.
    pub async fn enter(&self, lane: Lane) -> Result<Admitted, Error> {
        let state = &self.lanes[lane.index()];
        if let Ok(permit) = state.permits.clone().try_acquire_owned() {
            return self.keep(lane, permit).ok_or_else(|| self.shed(lane));
        }
        // Count ourselves in the queue; the guard un-counts on every exit,
        // including the caller dropping this future.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if state.waiting.fetch_add(1, Ordering::Relaxed) >= state.limits.queue {
            state.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(self.shed(lane));
        }
        let _waiting = Waiting(&state.waiting);
        match tokio::time::timeout(state.limits.max_wait, state.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => self.keep(lane, permit).ok_or_else(|| self.shed(lane)),
            _ => Err(self.shed(lane)),
        }
    }

    fn shed(&self, lane: Lane) -> Error {
        self.lanes[lane.index()].shed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("holdfast_lane_shed_total", "lane" => lane.as_str()).increment(1);
        // Jitter spreads the retries of a shed crowd.
        Error::Unavailable(rand::random_range(1..=5))
    }

    pub fn stats(&self) -> Vec<LaneStats> {
        Lane::ALL
            .iter()
            .map(|&lane| {
                let s = &self.lanes[lane.index()];
                LaneStats {
                    lane,
                    in_flight: s.limits.concurrency - s.permits.available_permits(),
                    waiting: s.waiting.load(Ordering::Relaxed),
                    admitted: s.admitted.load(Ordering::Relaxed),
                    shed: s.shed.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Publish lane gauges (called when `/metrics` is scraped).
    pub fn export_metrics(&self) {
        for s in self.stats() {
            metrics::gauge!("holdfast_lane_in_flight", "lane" => s.lane.as_str()).set(s.in_flight as f64);
            metrics::gauge!("holdfast_lane_waiting", "lane" => s.lane.as_str()).set(s.waiting as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> AdmissionConfig {
        let l = LaneLimits { concurrency: 1, queue: 1, max_wait: Duration::from_millis(50) };
        AdmissionConfig { critical: l, chat: l, dashboard: l, background: l }
    }

    #[tokio::test]
    async fn a_full_lane_sheds_without_touching_the_others() {
        let adm = Admission::new(&tiny());
        let _busy = adm.enter(Lane::Dashboard).await.unwrap();
        // One may queue (and times out), the next is shed at once.
        let queued = adm.enter(Lane::Dashboard);
        let shed_now = async {
            tokio::task::yield_now().await;
            adm.enter(Lane::Dashboard).await
        };
        let (queued, shed_now) = tokio::join!(queued, shed_now);
        assert!(matches!(shed_now, Err(Error::Unavailable(_))));
        assert!(matches!(queued, Err(Error::Unavailable(_))), "waited past max_wait");
        // The critical lane is untouched by the dashboard's overload.
        assert!(adm.enter(Lane::Critical).await.is_ok());
        let dash = adm.stats().into_iter().find(|s| s.lane == Lane::Dashboard).unwrap();
        assert_eq!(dash.shed, 2);
        assert_eq!(dash.waiting, 0);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_queue() {
        let adm = Admission::new(&AdmissionConfig {
            chat: LaneLimits { concurrency: 1, queue: 1, max_wait: Duration::from_secs(60) },
            ..tiny()
        });
        let held = adm.enter(Lane::Chat).await.unwrap();
        // A caller queues, then gives up (its future is dropped).
        let gave_up = tokio::time::timeout(Duration::from_millis(20), adm.enter(Lane::Chat)).await;
        assert!(gave_up.is_err());
        assert_eq!(adm.stats()[1].waiting, 0, "the abandoned wait is gone");
        drop(held);
        // Its place was not kept: the next caller is admitted at once.
        assert!(adm.enter(Lane::Chat).await.is_ok());
    }

    #[tokio::test]
    async fn lower_lanes_shrink_while_logins_wait_for_the_hash_pool() {
        let backlog = Arc::new(AtomicUsize::new(0));
        let adm = Admission::new(&AdmissionConfig::default()).yield_to(backlog.clone());
        let _first = adm.enter(Lane::Dashboard).await.unwrap();
        let second = adm.enter(Lane::Dashboard).await.unwrap();
        // Logins queue for the pool: one dashboard request at a time.
        backlog.store(3, Ordering::Relaxed);
        assert!(matches!(adm.enter(Lane::Dashboard).await, Err(Error::Unavailable(_))));
        assert!(adm.enter(Lane::Background).await.is_ok(), "the background lane's one");
        assert!(adm.enter(Lane::Chat).await.is_ok(), "chat is not a lower lane");
        drop(second);
        assert!(matches!(adm.enter(Lane::Dashboard).await, Err(Error::Unavailable(_))), "still one running");
        // The pool caught up: full size again.
        backlog.store(0, Ordering::Relaxed);
        assert!(adm.enter(Lane::Dashboard).await.is_ok());
    }

    #[test]
    fn retry_after_is_jittered_within_bounds() {
        let adm = Admission::new(&tiny());
        let secs: Vec<u64> = (0..50).map(|_| adm.shed(Lane::Background).retry_after().expect("retry after")).collect();
        assert!(secs.iter().all(|s| (1..=5).contains(s)));
        assert!(secs.iter().any(|s| *s != secs[0]), "not all the same");
    }
}
