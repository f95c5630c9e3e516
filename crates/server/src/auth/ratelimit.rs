//! Login rate limits (GCRA, from `governor`), built so that an attacker's
//! failures never cost the real agent their login — slowed, never locked
//! out:
//!
//! - **Every attempt from one address** is limited (a generous burst, then
//!   a steady rate): one address cannot monopolise the password-hash pool.
//!   An office behind one NAT stays far below it.
//! - **Failures at one account from one address** are limited. Only
//!   failures count, so the right password from a place that has not been
//!   guessing is never refused, and an attacker elsewhere fills only their
//!   own key.
//! - **Failures at one account from devices it does not know** are limited
//!   across all addresses, against guessing spread over many addresses. A
//!   device the account has logged in from before (it holds a signed device
//!   token, see `tokens::Tokens::issue_device`) is not counted here, so even
//!   a distributed attack leaves the agent's usual browser able to log in.
//!
//! A refused attempt is told when to retry (`429` with `Retry-After`), and
//! is refused before any password hash is computed.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::Error;

#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failed attempts at one account from one address (or one known
    /// device) before it must wait.
    pub account_burst: u32,
    /// Then one more failure every this many seconds.
    pub account_every_s: u32,
    /// Failed attempts at one account from unknown devices, all addresses
    /// together, before unknown devices must wait.
    pub unknown_device_burst: u32,
    /// Then one more such failure every this many seconds.
    pub unknown_device_every_s: u32,
    /// Attempts one address may make at once (all accounts, right or wrong).
    pub address_burst: u32,
    /// Then this many per second.
    pub address_per_s: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            account_burst: 10,
            account_every_s: 6,
            unknown_device_burst: 50,
            unknown_device_every_s: 6,
            address_burst: 2000,
            address_per_s: 200,
        }
    }
}

/// Where an attempt comes from, as far as the limits care.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// The normalised email.
    pub account: &'a str,
    pub address: IpAddr,
    /// The id of a valid device token for this account, if one came along.
    pub known_device: Option<&'a str>,
}

impl Attempt<'_> {
    /// The key whose failures this attempt counts against: the known device,
    /// or else the address.
    fn source_key(&self) -> String {
        match self.known_device {
            Some(device) => format!("{}\u{0}device:{device}", self.account),
            None => format!("{}\u{0}{}", self.account, self.address),
        }
    }
}

pub struct LoginLimiter {
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    /// Failures per (account, address or known device).
    source_failures: FailureLimiter<String>,
    /// Failures per account from unknown devices, every address together.
    unknown_device_failures: FailureLimiter<String>,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

fn every(seconds: u32, burst: u32) -> Quota {
    Quota::with_period(Duration::from_secs(u64::from(seconds.max(1))))
        .unwrap_or(Quota::per_minute(nz(10)))
        .allow_burst(nz(burst))
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        let per_address = Quota::per_second(nz(limits.address_per_s)).allow_burst(nz(limits.address_burst));
        LoginLimiter {
            addresses: DefaultKeyedRateLimiter::keyed(per_address),
            source_failures: FailureLimiter::new(every(limits.account_every_s, limits.account_burst)),
            unknown_device_failures: FailureLimiter::new(every(
                limits.unknown_device_every_s,
                limits.unknown_device_burst,
            )),
        }
    }

    /// Before the password is checked: `Err(RateLimited(seconds))` when the
    /// address is over its rate or this attempt's failure limits are full.
    pub fn admit(&self, attempt: &Attempt<'_>) -> Result<(), Error> {
        if let Err(not_until) = self.addresses.check_key(&attempt.address) {
            return Err(refuse(not_until.wait_time_from(DefaultClock::default().now()), "address"));
        }
        if let Some(wait) = self.source_failures.blocked(&attempt.source_key()) {
            return Err(refuse(wait, "account"));
        }
        if attempt.known_device.is_none()
            && let Some(wait) = self.unknown_device_failures.blocked(attempt.account)
        {
            return Err(refuse(wait, "unknown_device"));
        }
        Ok(())
    }

    /// After a wrong password (or unknown account): count the failure.
    pub fn failed(&self, attempt: &Attempt<'_>) {
        self.source_failures.record(attempt.source_key());
        if attempt.known_device.is_none() {
            self.unknown_device_failures.record(attempt.account.to_owned());
        }
    }

    /// Forget keys that are back to full capacity (bounded memory).
    pub fn prune(&self) {
        self.addresses.retain_recent();
        self.source_failures.prune();
        self.unknown_device_failures.prune();
    }
}

fn refuse(wait: Duration, by: &'static str) -> Error {
    metrics::counter!("holdfast_login_rate_limited_total", "by" => by).increment(1);
    Error::RateLimited(wait.as_secs().max(1))
}

/// A GCRA limit that only failures consume, checked without consuming:
/// `record` spends a cell per failure, and a failure the quota refuses
/// closes the key until the quota would admit one again. `blocked` only
/// reads that, so a success never costs anything.
struct FailureLimiter<K: Hash + Eq + Clone> {
    quota: DefaultKeyedRateLimiter<K>,
    closed_until: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    fn new(quota: Quota) -> Self {
        FailureLimiter { quota: DefaultKeyedRateLimiter::keyed(quota), closed_until: Mutex::default() }
    }

    fn blocked<Q>(&self, key: &Q) -> Option<Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let closed = self.closed_until.lock().unwrap_or_else(|p| p.into_inner());
        let until = *closed.get(key)?;
        until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    fn record(&self, key: K) {
        let clock = DefaultClock::default();
        if let Err(not_until) = self.quota.check_key(&key) {
            let wait = not_until.wait_time_from(clock.now());
            let mut closed = self.closed_until.lock().unwrap_or_else(|p| p.into_inner());
            closed.insert(key, Instant::now() + wait);
        }
    }

    fn prune(&self) {
        self.quota.retain_recent();
        let now = Instant::now();
        self.closed_until.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from<'a>(account: &'a str, ip: &str, device: Option<&'a str>) -> Attempt<'a> {
        Attempt { account, address: ip.parse().unwrap(), known_device: device }
    }

    fn limits() -> LoginLimits {
        LoginLimits { account_burst: 3, account_every_s: 60, unknown_device_burst: 10, ..Default::default() }
    }

    /// Fail until refused; returns how many failures got through.
    fn guess_until_refused(l: &LoginLimiter, attempt: &Attempt<'_>) -> usize {
        (0..1000).take_while(|_| l.admit(attempt).is_ok()).inspect(|_| l.failed(attempt)).count()
    }

    #[test]
    fn failures_from_one_address_close_that_address_only() {
        let l = LoginLimiter::new(limits());
        let attacker = from("a@x.example", "203.0.113.9", None);
        assert_eq!(guess_until_refused(&l, &attacker), 4, "the burst, then the refused failure that closes it");
        match l.admit(&attacker) {
            Err(Error::RateLimited(s)) => assert!((1..=60).contains(&s)),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // The agent at their own desk is not slowed by someone else's guesses.
        assert!(l.admit(&from("a@x.example", "198.51.100.7", None)).is_ok());
        // Other accounts from the attacker's address are not affected either.
        assert!(l.admit(&from("b@x.example", "203.0.113.9", None)).is_ok());
    }

    #[test]
    fn successes_cost_nothing() {
        let l = LoginLimiter::new(limits());
        let agent = from("a@x.example", "198.51.100.7", None);
        for _ in 0..100 {
            assert!(l.admit(&agent).is_ok());
        }
    }

    #[test]
    fn guesses_spread_over_addresses_spare_a_known_device() {
        let l = LoginLimiter::new(limits());
        for i in 0..20 {
            let attempt = from("a@x.example", &format!("203.0.113.{i}"), None);
            let _ = guess_until_refused(&l, &attempt);
        }
        // A new device anywhere must now wait...
        assert!(matches!(l.admit(&from("a@x.example", "198.51.100.7", None)), Err(Error::RateLimited(_))));
        // ...but the agent's own browser, which logged in before, gets in.
        assert!(l.admit(&from("a@x.example", "198.51.100.7", Some("dev1"))).is_ok());
        // A known device's failures close only that device.
        let stolen = from("a@x.example", "203.0.113.1", Some("dev2"));
        assert_eq!(guess_until_refused(&l, &stolen), 4);
        assert!(l.admit(&from("a@x.example", "198.51.100.7", Some("dev1"))).is_ok());
    }

    #[test]
    fn many_agents_behind_one_address_all_get_in() {
        let l = LoginLimiter::new(LoginLimits::default());
        for i in 0..1000 {
            let account = format!("agent{i}@x.example");
            assert!(l.admit(&from(&account, "10.0.0.1", None)).is_ok(), "agent {i} refused");
        }
    }

    #[test]
    fn pruning_keeps_a_closed_key_closed() {
        let l = LoginLimiter::new(limits());
        let attacker = from("a@x.example", "203.0.113.9", None);
        let _ = guess_until_refused(&l, &attacker);
        l.prune();
        assert!(l.admit(&attacker).is_err());
    }
}
