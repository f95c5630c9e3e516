//! Login rate limits, per account and per client address (GCRA, from
//! `governor`). Sized so a storm of legitimate agents is slowed, not locked
//! out: every account gets a burst of attempts and then a steady trickle,
//! and an address (an office behind one NAT) gets far more. There is no
//! lockout: a refused attempt is told when to retry.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::Error;

#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Attempts one account may make at once.
    pub account_burst: u32,
    /// Then one more every this many seconds.
    pub account_every_s: u32,
    /// Attempts one address may make at once.
    pub address_burst: u32,
    /// Then this many per second.
    pub address_per_s: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits { account_burst: 10, account_every_s: 6, address_burst: 2000, address_per_s: 200 }
    }
}

pub struct LoginLimiter {
    accounts: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        let per_account = Quota::with_period(std::time::Duration::from_secs(u64::from(limits.account_every_s.max(1))))
            .unwrap_or(Quota::per_minute(nz(10)))
            .allow_burst(nz(limits.account_burst));
        let per_address = Quota::per_second(nz(limits.address_per_s)).allow_burst(nz(limits.address_burst));
        LoginLimiter {
            accounts: DefaultKeyedRateLimiter::keyed(per_account),
            addresses: DefaultKeyedRateLimiter::keyed(per_address),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(RateLimited(seconds))` when either limit is exhausted.
    pub fn check(&self, account: &str, address: Option<IpAddr>) -> Result<(), Error> {
        if let Some(ip) = address
            && let Err(not_until) = self.addresses.check_key(&ip)
        {
            return Err(self.refuse(not_until.wait_time_from(self.clock.now()), "address"));
        }
        if let Err(not_until) = self.accounts.check_key(&account.to_owned()) {
            return Err(self.refuse(not_until.wait_time_from(self.clock.now()), "account"));
        }
        Ok(())
    }

    fn refuse(&self, wait: std::time::Duration, by: &'static str) -> Error {
        metrics::counter!("holdfast_login_rate_limited_total", "by" => by).increment(1);
        Error::RateLimited(wait.as_secs().max(1))
    }

    /// Forget keys that are back to full capacity (bounded memory).
    pub fn prune(&self) {
        self.accounts.retain_recent();
        self.addresses.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_gets_its_burst_then_is_told_when_to_retry() {
        let l = LoginLimiter::new(LoginLimits { account_burst: 3, account_every_s: 60, ..Default::default() });
        let ip = Some("127.0.0.1".parse().unwrap());
        for _ in 0..3 {
            assert!(l.check("a@x.example", ip).is_ok());
        }
        match l.check("a@x.example", ip) {
            Err(Error::RateLimited(s)) => assert!((1..=60).contains(&s)),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Other accounts from the same address are not affected.
        assert!(l.check("b@x.example", ip).is_ok());
    }

    #[test]
    fn many_agents_behind_one_address_all_get_in() {
        let l = LoginLimiter::new(LoginLimits::default());
        let ip = Some("10.0.0.1".parse().unwrap());
        for i in 0..1000 {
            assert!(l.check(&format!("agent{i}@x.example"), ip).is_ok(), "agent {i} refused");
        }
    }
}
