//! The status page as the server runs it: the `holdfast-status` crate,
//! re-exported here (so `status::Status`, `status::notify`, … name it as
//! before it was a crate), and the parts of it that are chat's, which that
//! crate cannot know:
//!
//! - `probes`  — the built-in probes: visitor, agent login and store go through chat.
//! - `relay`   — status notifications handed to the chat outbox.
//! - `runner`  — which process runs monitors, the relay, the outbox's deliverer and
//!   the retention job (one per store, with failover).

pub use holdfast_status::*;

pub mod probes;
pub mod relay;
pub mod runner;

use std::sync::Arc;

use crate::outbox::Outbox;
use crate::store::{Site, Store};

/// The status page's side tasks (monitors, notification delivery); they
/// stop when this is dropped.
pub struct Jobs(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Jobs {
    fn drop(&mut self) {
        for job in &self.0 {
            job.abort();
        }
    }
}

/// Start the monitors (with the built-in probes pointed at `probe_base`,
/// visiting as a visitor of `site` and logging in as the probe agent made
/// there, in the chat `store`), the delivery task and the chat `outbox`'s
/// deliverer, whenever this process
/// holds the store's lead (`runner`). Serving never waits for them (the
/// first start hashes the probe account's password).
pub fn start(
    status: Arc<Status>,
    store: Arc<dyn Store>,
    outbox: Arc<Outbox>,
    side: runner::SideConfig,
    probe_base: &str,
    site: Option<Site>,
) -> Jobs {
    let base = status.config.probe_base.clone().unwrap_or_else(|| probe_base.to_owned());
    Jobs(vec![tokio::spawn(runner::run(status, store, outbox, side, base, site))])
}
