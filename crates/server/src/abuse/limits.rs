//! Flood limits on what visitors start: new visitor sessions per address,
//! new conversations and messages per visitor and per address, each a
//! GCRA rate (from `governor`) set per site (`VisitorLimits`, in the
//! site's settings). Over a limit is `rate_limited` with the seconds to
//! wait (`Retry-After` over HTTP). An address is counted as
//! `status::ratelimit::client_key` counts it (an IPv6 /64 is one).
//!
//! Requests from the machine itself (loopback) or an address exempt from
//! the connection cap (`--per-address-exempt`) are not limited at all: behind a proxy that is not a
//! trusted one (`--trusted-proxy`) every visitor has its address.
//!
//! The counts are this node's: behind a load balancer that spreads one
//! address over N nodes it may do up to N times as much. A site's limits
//! are read from its settings at most every [`SETTINGS_TTL`]; a change an
//! admin makes on this node holds here at once ([`Floodgate::forget`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::status::ratelimit::client_key;
use crate::store::Store;

/// How long a site's limits are used before they are read again.
pub const SETTINGS_TTL: Duration = Duration::from_secs(10);

/// A site's flood limits; 0 turns one off. Stored in the site's settings
/// (`admin::WidgetSettings::visitor_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VisitorLimits {
    /// New visitors one address may start per minute (a page load with a
    /// kept visitor token is not a new one).
    pub sessions_per_ip_per_minute: u32,
    /// Conversations (chats and offline messages) one visitor may start per hour.
    pub conversations_per_visitor_per_hour: u32,
    /// Conversations one address may start per hour.
    pub conversations_per_ip_per_hour: u32,
    /// Messages one visitor may send per minute.
    pub messages_per_visitor_per_minute: u32,
    /// Messages one address may send per minute.
    pub messages_per_ip_per_minute: u32,
}

impl Default for VisitorLimits {
    fn default() -> Self {
        VisitorLimits {
            sessions_per_ip_per_minute: 60,
            conversations_per_visitor_per_hour: 20,
            conversations_per_ip_per_hour: 200,
            messages_per_visitor_per_minute: 30,
            messages_per_ip_per_minute: 300,
        }
    }
}

/// The largest value a limit may have.
pub const MAX_LIMIT: u32 = 100_000;

impl VisitorLimits {
    pub fn validated(self) -> Result<VisitorLimits> {
        let all = [
            ("sessions_per_ip_per_minute", self.sessions_per_ip_per_minute),
            ("conversations_per_visitor_per_hour", self.conversations_per_visitor_per_hour),
            ("conversations_per_ip_per_hour", self.conversations_per_ip_per_hour),
            ("messages_per_visitor_per_minute", self.messages_per_visitor_per_minute),
            ("messages_per_ip_per_minute", self.messages_per_ip_per_minute),
        ];
        for (name, value) in all {
            if value > MAX_LIMIT {
                return Err(Error::bad_request(format!("visitor_limits.{name} must be 0 (off) to {MAX_LIMIT}")));
            }
        }
        Ok(self)
    }
}

/// A rate of `n` per `period`, as a burst of `n` refilled evenly; `None`
/// when `n` is 0 (off).
fn gate<K: std::hash::Hash + Eq + Clone>(n: u32, period: Duration) -> Option<DefaultKeyedRateLimiter<K>> {
    let n = NonZeroU32::new(n)?;
    let quota = Quota::with_period(period / n.get()).map(|q| q.allow_burst(n))?;
    Some(DefaultKeyedRateLimiter::keyed(quota))
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// One site's limiters, built from its limits.
struct SiteGates {
    limits: VisitorLimits,
    sessions_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    conversations_visitor: Option<DefaultKeyedRateLimiter<String>>,
    conversations_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    messages_visitor: Option<DefaultKeyedRateLimiter<String>>,
    messages_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl SiteGates {
    fn new(limits: VisitorLimits) -> SiteGates {
        SiteGates {
            limits,
            sessions_ip: gate(limits.sessions_per_ip_per_minute, MINUTE),
            conversations_visitor: gate(limits.conversations_per_visitor_per_hour, HOUR),
            conversations_ip: gate(limits.conversations_per_ip_per_hour, HOUR),
            messages_visitor: gate(limits.messages_per_visitor_per_minute, MINUTE),
            messages_ip: gate(limits.messages_per_ip_per_minute, MINUTE),
        }
    }
}

/// What a visitor starts, as the limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Session,
    Conversation,
    Message,
}

impl Start {
    fn label(self) -> &'static str {
        match self {
            Start::Session => "session",
            Start::Conversation => "conversation",
            Start::Message => "message",
        }
    }
}

/// Every site's limiters on this node.
#[derive(Default)]
pub struct Floodgate {
    /// Addresses never limited besides the machine's own (loopback, where
    /// rehearsals, their workers on 127.0.0.x and the status probe run):
    /// those exempt from the per-address connection cap
    /// (`--per-address-exempt`), as a proxy that is not a trusted one
    /// speaks for everyone behind it.
    exempt: Vec<IpAddr>,
    /// Per site: when its limits were read, and its limiters.
    sites: Mutex<HashMap<String, (Instant, Arc<SiteGates>)>>,
}

fn over<K: std::hash::Hash + Eq + Clone>(gate: &Option<DefaultKeyedRateLimiter<K>>, key: &K) -> Option<u64> {
    let gate = gate.as_ref()?;
    gate.check_key(key).err().map(|not_until| not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1))
}

impl Floodgate {
    pub fn new(exempt: Vec<IpAddr>) -> Floodgate {
        Floodgate { exempt, sites: Mutex::default() }
    }

    /// The site's limiters, reading its limits again when they are older
    /// than [`SETTINGS_TTL`] (kept as they are if the store cannot say);
    /// unchanged limits keep their counts.
    async fn site(&self, store: &dyn Store, site_id: &str) -> Arc<SiteGates> {
        let known = self.sites.lock().unwrap_or_else(|p| p.into_inner()).get(site_id).cloned();
        if let Some((read_at, gates)) = &known
            && read_at.elapsed() < SETTINGS_TTL
        {
            return gates.clone();
        }
        let limits = match store.site(site_id).await {
            Ok(Some(site)) => crate::admin::WidgetSettings::from_stored(&site.settings).visitor_limits,
            _ => known.as_ref().map(|(_, g)| g.limits).unwrap_or_default(),
        };
        // What is there now, not what was there before the read: callers
        // that met no limiters at once (a flood's first requests) must all
        // count on the one set, or each would get a burst of its own.
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        let gates = match sites.get(site_id) {
            Some((_, g)) if g.limits == limits => g.clone(),
            _ => Arc::new(SiteGates::new(limits)),
        };
        sites.insert(site_id.to_owned(), (Instant::now(), gates.clone()));
        gates
    }

    /// Count what a visitor starts; `Err(RateLimited(seconds))` when the
    /// visitor (if known) or the address (if known) is over the site's limit.
    pub async fn admit(
        &self,
        store: &dyn Store,
        site_id: &str,
        what: Start,
        visitor_id: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<()> {
        if ip.is_some_and(|ip| ip.is_loopback() || self.exempt.contains(&ip)) {
            return Ok(());
        }
        let gates = self.site(store, site_id).await;
        let (by_visitor, by_ip) = match what {
            Start::Session => (&None, &gates.sessions_ip),
            Start::Conversation => (&gates.conversations_visitor, &gates.conversations_ip),
            Start::Message => (&gates.messages_visitor, &gates.messages_ip),
        };
        let wait = visitor_id
            .and_then(|v| over(by_visitor, &v.to_owned()))
            .or_else(|| ip.and_then(|ip| over(by_ip, &client_key(ip))));
        match wait {
            Some(seconds) => {
                metrics::counter!("holdfast_visitor_rate_limited_total", "what" => what.label()).increment(1);
                Err(Error::RateLimited(seconds))
            }
            None => Ok(()),
        }
    }

    /// Forget a site's limiters (its admin changed the limits here).
    pub fn forget(&self, site_id: &str) {
        self.sites.lock().unwrap_or_else(|p| p.into_inner()).remove(site_id);
    }

    /// Drop keys back at full quota (bounded memory), every site.
    pub fn prune(&self) {
        for (_, gates) in self.sites.lock().unwrap_or_else(|p| p.into_inner()).values() {
            for g in [&gates.sessions_ip, &gates.conversations_ip, &gates.messages_ip].into_iter().flatten() {
                g.retain_recent();
            }
            for g in [&gates.conversations_visitor, &gates.messages_visitor].into_iter().flatten() {
                g.retain_recent();
            }
        }
    }
}
