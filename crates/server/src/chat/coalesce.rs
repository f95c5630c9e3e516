//! Per-site reads shared by everyone who asks at once.
//!
//! A reconnect storm brings thousands of welcomes within seconds, each
//! wanting the same site-wide data (the agent list, the queue). Read once
//! per site and hand the result to everyone waiting, instead of once per
//! socket. Each caller says how fresh the answer must be: a value read by a
//! read that *started* at or after `fresh_from`. Callers that arrive while a
//! read is in flight wait for the next one, which serves all of them, so the
//! store sees at most one read per site at a time whatever the crowd.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::error::Result;

/// The value with the start of the read that produced it.
type Slot<T> = Arc<tokio::sync::Mutex<Option<(Instant, T)>>>;
/// A key's slot and the earliest read start still valid for it.
type Entry<T> = (Slot<T>, Option<Instant>);

pub struct Coalesced<T> {
    /// Per key; `invalidate` moves the earliest valid read start forward.
    slots: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> Default for Coalesced<T> {
    fn default() -> Self {
        Coalesced { slots: Mutex::default() }
    }
}

impl<T: Clone> Coalesced<T> {
    /// The value for `key` from a read that started at or after
    /// `fresh_from`, reading it with `read` if no such value is at hand.
    pub async fn get<F, Fut>(&self, key: &str, fresh_from: Instant, read: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let (slot, valid_from) = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let (slot, valid_from) = slots.entry(key.to_owned()).or_default();
            (slot.clone(), *valid_from)
        };
        let fresh_from = valid_from.map_or(fresh_from, |v| v.max(fresh_from));
        let mut held = slot.lock().await;
        if let Some((started, value)) = held.as_ref()
            && *started >= fresh_from
        {
            return Ok(value.clone());
        }
        let started = Instant::now();
        let value = read().await?;
        *held = Some((started, value.clone()));
        Ok(value)
    }

    /// Drop what is kept for `key` (a key from outside, such as a widget
    /// key nobody has, must not stay in memory).
    pub fn forget(&self, key: &str) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// What `key` was read from changed: only a read that starts from now
    /// on may answer (including for a read in flight now).
    pub fn invalidate(&self, key: &str) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).entry(key.to_owned()).or_default().1 =
            Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_crowd_arriving_during_a_read_shares_the_next_one() {
        let cache = Arc::new(Coalesced::<usize>::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let read = |reads: Arc<AtomicUsize>| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(reads.fetch_add(1, Ordering::SeqCst) + 1)
        };
        // The first caller starts a read; 50 more arrive while it runs.
        let first = {
            let (cache, reads) = (cache.clone(), reads.clone());
            tokio::spawn(async move { cache.get("site", Instant::now(), || read(reads)).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let crowd: Vec<_> = (0..50)
            .map(|_| {
                let (cache, reads) = (cache.clone(), reads.clone());
                let arrived = Instant::now();
                tokio::spawn(async move { cache.get("site", arrived, || read(reads)).await })
            })
            .collect();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        for c in crowd {
            // Not the read that began before they came: the next one.
            assert_eq!(c.await.unwrap().unwrap(), 2);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2, "two reads served 51 callers");
    }

    #[tokio::test]
    async fn an_older_value_serves_a_caller_that_accepts_it_and_keys_are_separate() {
        let cache = Coalesced::<&'static str>::default();
        let long_ago = Instant::now();
        assert_eq!(cache.get("a", long_ago, || async { Ok("a1") }).await.unwrap(), "a1");
        assert_eq!(cache.get("a", long_ago, || async { Ok("a2") }).await.unwrap(), "a1");
        assert_eq!(cache.get("b", long_ago, || async { Ok("b1") }).await.unwrap(), "b1");
        // A caller who needs a read from after now gets one.
        assert_eq!(cache.get("a", Instant::now(), || async { Ok("a3") }).await.unwrap(), "a3");
        cache.invalidate("a");
        assert_eq!(cache.get("a", long_ago, || async { Ok("a4") }).await.unwrap(), "a4");
    }

    #[tokio::test]
    async fn a_forgotten_key_keeps_nothing() {
        let cache = Coalesced::<&'static str>::default();
        let long_ago = Instant::now();
        assert_eq!(cache.get("k", long_ago, || async { Ok("one") }).await.unwrap(), "one");
        cache.forget("k");
        assert!(cache.slots.lock().unwrap().is_empty(), "no slot left for the key");
        assert_eq!(cache.get("k", long_ago, || async { Ok("two") }).await.unwrap(), "two");
    }

    #[tokio::test]
    async fn a_failed_read_is_not_cached() {
        let cache = Coalesced::<u8>::default();
        let t = Instant::now();
        let failed = cache.get("a", t, || async { Err(crate::error::Error::Unavailable(1)) }).await;
        assert!(failed.is_err());
        assert_eq!(cache.get("a", t, || async { Ok(7) }).await.unwrap(), 7);
    }
}
