//! Status notifications into the chat outbox. The status store writes each
//! one (`status_deliveries`) with the change that causes it; the relay here
//! hands it to the outbox (`outbox::status`), keyed by its id so a relay
//! repeated after a crash queues it once, and the outbox sends it with
//! everything else Holdfast sends (`status::notify` signs and mails).
//! Only the process holding the status page's lead runs the relay
//! (`runner`), as it runs the outbox's deliverer. Here, not in the
//! `holdfast-status` crate, because the outbox is chat's.

use std::sync::Arc;
use std::time::Duration;

use super::Status;
use crate::error::Result;
use crate::outbox::Outbox;
use crate::store::now_ms;

/// Notifications relayed per round.
const BATCH: i64 = 64;
/// How long a claimed notification stays hidden from other claims: a relay
/// round is two short writes, so this is only ever reached by a relay that
/// died, whose notifications are then relayed again (once in the outbox).
const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// Relay notifications into the chat outbox until the task is dropped:
/// woken by every queued notification, and at least every `delivery_tick`.
pub async fn relay(status: Arc<Status>, outbox: Arc<Outbox>) {
    loop {
        let full = match relay_round(&status, &outbox).await {
            Ok(relayed) => relayed as i64 == BATCH,
            Err(e) => {
                tracing::warn!(error = %e, "cannot relay status notifications to the outbox");
                false
            }
        };
        if !full {
            tokio::select! {
                _ = status.wake.notified() => {}
                _ = tokio::time::sleep(status.config.delivery_tick) => {}
            }
        }
    }
}

/// One round: claim, queue in the outbox, mark relayed. A crash between
/// the last two leaves them claimed; the lease ends, they are claimed again
/// and the outbox drops the second copy (its `dedupe_key`).
async fn relay_round(status: &Status, outbox: &Outbox) -> Result<usize> {
    let now = now_ms();
    let due = status.store.claim_deliveries(now, now + CLAIM_LEASE.as_millis() as i64, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = due.iter().map(|d| d.id.clone()).collect();
    let queued = due.iter().map(|d| outbox.status_notification(d, now)).collect();
    outbox.store.queue_deliveries(queued).await?;
    status.store.deliveries_relayed(&ids, now_ms()).await?;
    metrics::counter!("holdfast_status_deliveries_total", "outcome" => "relayed").increment(ids.len() as u64);
    outbox.queued();
    Ok(ids.len())
}
