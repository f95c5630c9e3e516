//! The plan/subscription service: an external HTTP endpoint (configurable
//! URL) that returns the banners the console shows ("your trial ends in 3
//! days"). Olark's third outage was exactly this service dragging login
//! down; here it is polled in the background and only ever read from cache.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use failsafe::{StateMachine, backoff, failure_policy};
use serde::Serialize;

use super::{BreakerState, BreakerWatch};

type Breaker = StateMachine<failure_policy::ConsecutiveFailures<backoff::Constant>, BreakerWatch>;

#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// Where to fetch banners; `None` disables the service.
    pub url: Option<String>,
    /// Time between refreshes.
    pub interval: Duration,
    /// Longest one fetch may take.
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// How long the breaker stays open before one trial call.
    pub open_for: Duration,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            url: None,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
            failures_to_open: 3,
            open_for: Duration::from_secs(30),
        }
    }
}

struct Cached {
    banners: serde_json::Value,
    fetched: Instant,
}

pub struct PlanService {
    config: PlanConfig,
    client: reqwest::Client,
    breaker: Breaker,
    watch: BreakerWatch,
    cache: RwLock<Option<Cached>>,
}

/// What the console gets: the last banners known, and how fresh they are.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Banners {
    pub banners: serde_json::Value,
    /// Seconds since the banners were fetched; `None` if never.
    pub age_s: Option<u64>,
}

/// The side service's health for `/readyz` (never makes the node unready).
#[derive(Debug, Serialize)]
pub struct PlanHealth {
    /// `ok`, `degraded` (failing, serving from cache) or `disabled`.
    pub status: &'static str,
    pub breaker: BreakerState,
    pub last_success_s: Option<u64>,
}

impl PlanService {
    pub fn new(config: PlanConfig) -> Arc<Self> {
        let watch = BreakerWatch::new("plan");
        let policy = failure_policy::consecutive_failures(config.failures_to_open, backoff::constant(config.open_for));
        let breaker = failsafe::Config::new().failure_policy(policy).instrument(watch.clone()).build();
        let builder = || reqwest::Client::builder().timeout(config.timeout);
        let client = crate::tls::http_client(builder, &Default::default()).unwrap_or_default();
        Arc::new(PlanService { config, client, breaker, watch, cache: RwLock::new(None) })
    }

    /// Refresh in the background until the process ends.
    pub fn spawn(self: &Arc<Self>) {
        if self.config.url.is_none() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.config.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.refresh().await;
            }
        });
    }

    /// One refresh, if the breaker allows a call.
    pub async fn refresh(&self) {
        let Some(url) = &self.config.url else { return };
        if !self.breaker.is_call_permitted() {
            return;
        }
        let fetched = async {
            let res = self.client.get(url).send().await?.error_for_status()?;
            res.json::<serde_json::Value>().await
        };
        match tokio::time::timeout(self.config.timeout, fetched).await {
            Ok(Ok(banners)) => {
                self.breaker.on_success();
                *self.cache.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(Cached { banners, fetched: Instant::now() });
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "plan service failed");
                self.breaker.on_error();
            }
            Err(_) => {
                tracing::debug!("plan service timed out");
                self.breaker.on_error();
            }
        }
    }

    /// The cached banners: never waits for the service.
    pub fn banners(&self) -> Banners {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        match &*cache {
            Some(c) => Banners { banners: c.banners.clone(), age_s: Some(c.fetched.elapsed().as_secs()) },
            None => Banners { banners: serde_json::json!([]), age_s: None },
        }
    }

    pub fn health(&self) -> PlanHealth {
        if self.config.url.is_none() {
            return PlanHealth { status: "disabled", breaker: BreakerState::Closed, last_success_s: None };
        }
        let last = self.cache.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|c| c.fetched.elapsed());
        let fresh = last.is_some_and(|age| age <= self.config.interval * 3);
        let status = if self.watch.state() == BreakerState::Closed && fresh { "ok" } else { "degraded" };
        PlanHealth { status, breaker: self.watch.state(), last_success_s: last.map(|d| d.as_secs()) }
    }

    pub fn times_opened(&self) -> u64 {
        self.watch.times_opened()
    }
}
