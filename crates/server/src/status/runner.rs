//! Which process runs the status page's side tasks (monitor checks and
//! notification delivery), the chat outbox's deliverer, the retention
//! job and the keeper of reports' summaries. Every server process sharing
//! a store tries to take the store's lead ([`StatusStore::try_lead`]); the
//! one that holds it points the built-in probes at itself and runs these
//! tasks, the others wait and try again every `lead_check`. So a cluster
//! checks each monitor once and notifies each subscriber once, and when
//! the runner dies (kill -9 included) another process takes over within a
//! few seconds, going on from the failure counts and claimed deliveries in
//! the store.
//!
//! [`StatusStore::try_lead`]: crate::store::status::StatusStore::try_lead

use std::sync::Arc;

use super::probes::{self, Probes};
use super::{Jobs, Status, monitor, relay};
use crate::outbox::Outbox;
use crate::store::{Site, Store};

/// The settings of the lead's jobs that are not the status page's.
#[derive(Debug, Clone, Default)]
pub struct SideConfig {
    pub retention: crate::privacy::RetentionConfig,
    pub report_summaries: crate::reports::SummariesConfig,
}

/// Take the lead whenever it is free and run the side tasks while it is
/// held; stop them at once when it is lost. Runs until dropped.
pub async fn run(
    status: Arc<Status>,
    store: Arc<dyn Store>,
    outbox: Arc<Outbox>,
    side: SideConfig,
    probe_base: String,
    site: Option<Site>,
) {
    metrics::gauge!("holdfast_status_runner").set(0.0);
    loop {
        match status.store.try_lead().await {
            Ok(Some(mut lead)) => {
                tracing::info!("this process runs the status page's monitors and notifications");
                status.set_leading(true);
                metrics::gauge!("holdfast_status_runner").set(1.0);
                if let Err(e) = probes::install_builtin(&status, store.as_ref(), &probe_base, site.as_ref()).await {
                    tracing::warn!(error = %e, "cannot install the built-in probes");
                }
                let (page, chat) = (status.clone(), store.clone());
                let builtin = move |http| Probes::new(http, chat, &page);
                let jobs = Jobs(vec![
                    tokio::spawn(monitor::run(status.clone(), builtin)),
                    tokio::spawn(relay::relay(status.clone(), outbox.clone())),
                    tokio::spawn(outbox.clone().run()),
                    tokio::spawn(outbox.clone().watch_chats()),
                    tokio::spawn(crate::privacy::run_retention(store.clone(), side.retention.clone())),
                    tokio::spawn(crate::reports::keep_summaries(store.clone(), side.report_summaries.clone())),
                ]);
                loop {
                    tokio::time::sleep(status.config.lead_check).await;
                    if !lead.still_held().await {
                        break;
                    }
                }
                // Stop working before letting go, so two never overlap here.
                drop(jobs);
                drop(lead);
                status.set_leading(false);
                metrics::gauge!("holdfast_status_runner").set(0.0);
                tracing::warn!(
                    "lost the status page's lead (store unreachable?): monitors and notifications stop here"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot try to take the status page's lead"),
        }
        tokio::time::sleep(status.config.lead_check).await;
    }
}
