//! Failed API-key checks, limited per client address.
//!
//! Every bearer token costs a query on the primary database, so a client guessing keys could both search the
//! key space and load the database. After `[auth] failed_auth_per_minute` failures (a burst of that many,
//! refilled at that rate), a client's requests that carry a key answer 429 with `Retry-After` until the
//! limit has refilled, before any query. Valid keys are never counted, and requests without a key are not
//! affected. The client is the TCP peer, or with `[auth] trust_forwarded_for` the last `X-Forwarded-For`
//! hop (the address the trusted load balancer saw), since behind a balancer every peer is the balancer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Most addresses remembered as blocked; past this, expired entries are dropped first.
const BLOCKED_MAX: usize = 100_000;

/// The per-address failure limit of one api process.
pub struct AuthThrottle {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    trust_forwarded_for: bool,
}

impl std::fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthThrottle")
            .field("on", &self.limiter.is_some())
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .finish()
    }
}

impl AuthThrottle {
    /// `per_minute` failures per address (0: no limit).
    pub fn new(per_minute: u32, trust_forwarded_for: bool) -> Self {
        AuthThrottle {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            blocked: Mutex::new(HashMap::new()),
            trust_forwarded_for,
        }
    }

    /// The client's address: the last `X-Forwarded-For` hop when trusted, else the TCP peer.
    pub fn client(
        &self,
        headers: &HeaderMap,
        peer: Option<&ConnectInfo<SocketAddr>>,
    ) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            let hop = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|h| h.trim().parse::<IpAddr>().ok())
                .next_back();
            if hop.is_some() {
                return hop;
            }
        }
        peer.map(|c| c.0.ip())
    }

    /// `Err(wait)` while `client` is blocked.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        match blocked.get(&client) {
            Some(until) if *until > Instant::now() => Err(*until - Instant::now()),
            _ => Ok(()),
        }
    }

    /// Counts a failed check of `client`; `Some(wait)` when it went over the limit (and is now blocked).
    pub fn failed(&self, client: IpAddr) -> Option<Duration> {
        let limiter = self.limiter.as_ref()?;
        let not_until = limiter.check_key(&client).err()?;
        let wait = not_until
            .wait_time_from(DefaultClock::default().now())
            .max(Duration::from_secs(1));
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        if blocked.len() >= BLOCKED_MAX {
            blocked.retain(|_, until| *until > now);
            limiter.retain_recent();
        }
        blocked.insert(client, now + wait);
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_burst_block_the_address_only() {
        let t = AuthThrottle::new(3, false);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(t.check(a).is_ok());
            assert_eq!(t.failed(a), None);
        }
        let wait = t
            .failed(a)
            .expect("the fourth failure in a minute is over the limit");
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(21));
        assert!(t.check(a).is_err());
        assert!(t.check(b).is_ok(), "another address is not affected");
        assert!(
            AuthThrottle::new(0, false).failed(a).is_none(),
            "0 turns it off"
        );
    }

    #[test]
    fn the_forwarded_hop_is_used_only_when_trusted() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        let peer = ConnectInfo("127.0.0.1:5000".parse::<SocketAddr>().unwrap());
        let trusted = AuthThrottle::new(1, true);
        assert_eq!(trusted.client(&h, Some(&peer)), "198.51.100.7".parse().ok());
        let untrusted = AuthThrottle::new(1, false);
        assert_eq!(untrusted.client(&h, Some(&peer)), "127.0.0.1".parse().ok());
    }
}
