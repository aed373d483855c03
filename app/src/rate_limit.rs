//! The per-client rate limit (`governor`'s keyed GCRA limiter) and who a client is.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;

/// Keys kept before the ones whose allowance has refilled are forgotten.
const MAX_KEYS: usize = 10_000;

/// One GCRA state per client address.
type Keyed<C> = Gcra<IpAddr, HashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Shares a client may make a minute unless configured otherwise, in every mode: each share
/// writes to the database, so even a private server bounds how fast one client fills it.
pub const DEFAULT_SHARES_PER_MINUTE: u32 = 10;

/// Requests per minute per client; `None` lets everything through.
pub struct RateLimiter<C: Clock = DefaultClock> {
    per_minute: u32,
    /// What is counted, for the message ("requests", "shares").
    what: &'static str,
    limiter: Option<Keyed<C>>,
}

impl RateLimiter {
    /// At most `per_minute` requests a minute from one client, in bursts of up to as many.
    pub fn new(per_minute: Option<u32>) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }

    /// At most `per_minute` shares a minute from one client.
    pub fn shares(per_minute: Option<u32>) -> Self {
        RateLimiter {
            what: "shares",
            ..Self::new(per_minute)
        }
    }
}

impl<C: Clock> RateLimiter<C> {
    fn with_clock(per_minute: Option<u32>, clock: C) -> Self {
        let n = per_minute.and_then(NonZeroU32::new);
        RateLimiter {
            per_minute: n.map_or(0, NonZeroU32::get),
            what: "requests",
            limiter: n.map(|n| Gcra::hashmap_with_clock(Quota::per_minute(n), clock)),
        }
    }

    /// Takes one request from `client`'s allowance, or says how long to wait (the message,
    /// and the seconds for `Retry-After`).
    pub fn check(&self, client: IpAddr) -> Result<(), (String, u64)> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > MAX_KEYS {
            limiter.retain_recent();
        }
        limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until
                .wait_time_from(limiter.clock().now())
                .as_secs_f64()
                .ceil() as u64;
            (
                format!(
                    "too many {what}: this server takes {} {what} a minute from one client; try again in {wait} s",
                    self.per_minute,
                    what = self.what
                ),
                wait,
            )
        })
    }
}

/// The client a request counts against. Behind a trusted proxy (`forwarded_for` given: the
/// value of the last `X-Forwarded-For` header), the right-most address: the one that proxy
/// appended; everything to its left was written by the client and proves nothing. Otherwise,
/// or when that address does not parse, the peer. An IPv6 address stands for its /64, since
/// one host is routinely given a whole /64.
pub fn client_key(forwarded_for: Option<&str>, peer: IpAddr) -> IpAddr {
    let ip = forwarded_for
        .and_then(|v| v.rsplit(',').next())
        .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
        .unwrap_or(peer);
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(Some(3), clock.clone());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let (err, wait) = limiter.check(a).expect_err("fourth in a burst");
        assert_eq!(wait, 20);
        assert!(
            err.contains("3 requests a minute") && err.contains("try again in 20 s"),
            "{err}"
        );
        // Another client is unaffected; 20 s later one more is allowed.
        assert!(limiter.check(b).is_ok());
        clock.advance(Duration::from_secs(20));
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_err());
        assert!(RateLimiter::new(None).check(a).is_ok());
    }

    #[test]
    fn the_proxy_appended_address_counts() {
        let peer: IpAddr = "10.9.9.9".parse().unwrap();
        let key = |xff: Option<&str>| client_key(xff, peer).to_string();
        // A client cannot pick its key by writing the header itself: the proxy's hop wins.
        assert_eq!(key(Some("1.2.3.4, 203.0.113.7")), "203.0.113.7");
        assert_eq!(key(Some("spoofed,  203.0.113.7 ")), "203.0.113.7");
        assert_eq!(key(Some("203.0.113.7, garbage")), "10.9.9.9");
        assert_eq!(key(None), "10.9.9.9");
        // IPv6: one key per /64; v4-mapped addresses are their IPv4 address.
        assert_eq!(key(Some("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::");
        assert_eq!(key(Some("2001:db8:1:2:bbbb::9")), "2001:db8:1:2::");
        assert_eq!(key(Some("::ffff:198.51.100.1")), "198.51.100.1");
    }
}
