//! How many subscriptions one client may ask for (GCRA, from `governor`):
//! the subscribe form and API are public, and every webhook subscriber is
//! a request this server makes on each notification, every email one a
//! message it sends. A client is its address, or its /64 for IPv6 (one
//! host usually holds a whole /64). Behind a reverse proxy every client
//! has the proxy's address, and the limit is then shared by all.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::Error;

pub struct SubscribeLimiter {
    clients: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl SubscribeLimiter {
    /// `burst` subscriptions at once, then one more every `every`.
    pub fn new(burst: u32, every: Duration) -> SubscribeLimiter {
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(every.max(Duration::from_millis(1)))
            .unwrap_or(Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(burst);
        SubscribeLimiter { clients: DefaultKeyedRateLimiter::keyed(quota), clock: DefaultClock::default() }
    }

    /// `Err(RateLimited(seconds))` once `client` has used its quota.
    pub fn check(&self, client: IpAddr) -> Result<(), Error> {
        match self.clients.check_key(&client_key(client)) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics::counter!("holdfast_status_subscribe_rate_limited_total").increment(1);
                Err(Error::RateLimited(not_until.wait_time_from(self.clock.now()).as_secs().max(1)))
            }
        }
    }

    /// Forget clients back to full quota (bounded memory).
    pub fn prune(&self) {
        self.clients.retain_recent();
    }
}

/// The key a client is counted under: an IPv4 address (also when written
/// as IPv4-mapped IPv6), or the /64 of an IPv6 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_not_affected() {
        let l = SubscribeLimiter::new(3, Duration::from_secs(60));
        let me: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(me).is_ok());
        }
        match l.check(me) {
            Err(Error::RateLimited(s)) => assert!((1..=60).contains(&s), "{s}"),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert!(l.check("::ffff:203.0.113.9".parse().unwrap()).is_err());
        assert!(l.check("203.0.113.10".parse().unwrap()).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let l = SubscribeLimiter::new(2, Duration::from_secs(60));
        assert!(l.check("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(l.check("2001:db8:1:2:ffff::9".parse().unwrap()).is_ok());
        assert!(l.check("2001:db8:1:2:abcd::1".parse().unwrap()).is_err(), "another address of the same /64");
        assert!(l.check("2001:db8:1:3::1".parse().unwrap()).is_ok(), "the next /64 is another client");
    }
}
