//! Side services: things Holdfast calls that are not needed to log in or
//! chat (plan and subscription banners now; integrations later). Each is
//! called off the request path, with a timeout, behind a circuit breaker,
//! and read from a last-known-good cache, so its slowness or death can only
//! make the console show less, never delay a login or a message.

pub mod plan;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;

/// The circuit breaker's state, as `/readyz` and `/metrics` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// Records the breaker's transitions (failsafe calls these hooks).
#[derive(Clone, Default)]
pub struct BreakerWatch {
    state: Arc<AtomicU8>,
    opened: Arc<std::sync::atomic::AtomicU64>,
    name: &'static str,
}

impl BreakerWatch {
    pub fn new(name: &'static str) -> Self {
        BreakerWatch { name, ..Default::default() }
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Relaxed) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// How many times the breaker has opened.
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn set(&self, s: BreakerState) {
        self.state.store(s as u8, Ordering::Relaxed);
        metrics::gauge!("holdfast_breaker_state", "service" => self.name).set(s as u8 as f64);
    }
}

impl failsafe::Instrument for BreakerWatch {
    fn on_call_rejected(&self) {
        metrics::counter!("holdfast_breaker_rejected_total", "service" => self.name).increment(1);
    }

    fn on_open(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("holdfast_breaker_opened_total", "service" => self.name).increment(1);
        tracing::warn!(service = self.name, "circuit breaker opened");
        self.set(BreakerState::Open);
    }

    fn on_half_open(&self) {
        self.set(BreakerState::HalfOpen);
    }

    fn on_closed(&self) {
        tracing::info!(service = self.name, "circuit breaker closed");
        self.set(BreakerState::Closed);
    }
}
