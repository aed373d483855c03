//! A per-client rate limit: a token bucket per client address, refilled continuously.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests per minute per client; `None` lets everything through.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: Option<u32>,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// At most `per_minute` requests a minute from one client, in bursts of up to as many.
    pub fn new(per_minute: Option<u32>) -> Self {
        RateLimiter {
            per_minute: per_minute.filter(|n| *n > 0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `client`'s allowance, or says how long to wait.
    pub fn check(&self, client: IpAddr) -> Result<(), String> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: IpAddr, now: Instant) -> Result<(), String> {
        let Some(n) = self.per_minute else {
            return Ok(());
        };
        let capacity = f64::from(n);
        let per_sec = capacity / 60.0;
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| "rate limiter poisoned".to_string())?;
        // Forget clients whose buckets have refilled, so the map stays small.
        if buckets.len() > 10_000 {
            buckets.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let (tokens, last) = buckets.entry(client).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_sec).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / per_sec).ceil();
            Err(format!(
                "too many requests: this server takes {n} a minute from one client; try again in {wait} s"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let limiter = RateLimiter::new(Some(3));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(a, t0).is_ok());
        }
        let err = limiter.check_at(a, t0).expect_err("fourth in a burst");
        assert!(
            err.contains("3 a minute") && err.contains("try again in 20 s"),
            "{err}"
        );
        // Another client is unaffected; 20 s later one more is allowed.
        assert!(limiter.check_at(b, t0).is_ok());
        assert!(limiter.check_at(a, t0 + Duration::from_secs(20)).is_ok());
        assert!(limiter.check_at(a, t0 + Duration::from_secs(20)).is_err());
        assert!(RateLimiter::new(None).check_at(a, t0).is_ok());
    }
}
