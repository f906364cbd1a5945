//! Limits on abusive load: what one client, or one source address, can make the server do.
//!
//! - **Guesses of a client secret.** A secret an operator chose is stored as argon2id, and each
//!   check of a wrong one costs about 20 MiB and tens of milliseconds of a core. Client ids are
//!   not secret, so every argon2 run needs a token from the bucket of its source address and
//!   from the bucket of the client id it names (`Limits::guess`); a secret that passed before
//!   is recognised from a cache without argon2 and needs none, so a flood of wrong secrets does
//!   not lock the real client out. At most [`CibaConfig::max_argon2_waiting`] checks wait for
//!   the argon2 workers; more are answered 503 at once.
//! - **Requests of one client.** `/bc-authorize` takes a token from the client's bucket
//!   ([`CibaConfig::client_requests_per_minute`]) and refuses a client with
//!   [`CibaConfig::client_max_pending`] open requests: `429 Too Many Requests` with
//!   `Retry-After` and the error code `too_many_requests`.
//! - **Outbound deliveries** (ping, push, webhook) run at most
//!   [`CibaConfig::max_concurrent_deliveries`] at once, so a client whose endpoint answers slowly
//!   holds a bounded number of tasks.
//!
//! The buckets are governor's keyed GCRA limiters. Their state is in memory (a restart refills
//! every bucket) and bounded: a source is an IPv4 address or an IPv6 /64, and keys idle long
//! enough to be full again are dropped by the clean-up task ([`Limits::forget_idle`]).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::CibaConfig;
use crate::metrics::CibaMetrics;
use countersign_log::ApiError;

/// Most keys a limiter holds before idle ones are dropped at once rather than by the next
/// clean-up (a bound on the memory a flood of new sources can take).
const MAX_KEYS: usize = 100_000;

/// The limiters of one front end.
pub struct Limits {
    guesses_by_source: Option<DefaultKeyedRateLimiter<IpAddr>>,
    guesses_by_client: Option<DefaultKeyedRateLimiter<String>>,
    requests_by_client: Option<DefaultKeyedRateLimiter<String>>,
    argon2_waiting: AtomicUsize,
    max_argon2_waiting: usize,
    /// Permits of outbound deliveries.
    pub(crate) deliveries: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

fn per_minute<K>(n: u32) -> Option<DefaultKeyedRateLimiter<K>>
where
    K: std::hash::Hash + Eq + Clone,
{
    NonZeroU32::new(n).map(|n| governor::RateLimiter::dashmap(Quota::per_minute(n)))
}

/// The key of a source address: IPv6 addresses are grouped by /64, the block one subscriber
/// usually holds, so that one attacker cannot take a new bucket per address.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Seconds until a refused bucket has a token again (at least one).
fn retry_secs(not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u32 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX)
}

fn too_many(description: impl Into<String>, retry_after: u32) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        description,
    )
    .retry_after(retry_after)
}

/// Takes a token for `key`, first dropping idle keys if the limiter has grown large.
fn take<K>(l: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), u32>
where
    K: std::hash::Hash + Eq + Clone,
{
    if l.len() >= MAX_KEYS {
        l.retain_recent();
    }
    l.check_key(key).map_err(|e| retry_secs(&e))
}

/// Holds a place in the argon2 queue; released when dropped.
pub(crate) struct Argon2Place<'a>(&'a AtomicUsize);

impl Drop for Argon2Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limits {
    /// The limiters `config` asks for.
    pub fn new(config: &CibaConfig) -> Self {
        Limits {
            guesses_by_source: per_minute(config.secret_guesses_per_minute),
            guesses_by_client: per_minute(config.secret_guesses_per_minute),
            requests_by_client: per_minute(config.client_requests_per_minute),
            argon2_waiting: AtomicUsize::new(0),
            max_argon2_waiting: config.max_argon2_waiting,
            deliveries: tokio::sync::Semaphore::new(config.max_concurrent_deliveries.max(1)),
        }
    }

    /// Takes a token for one argon2 check of a secret presented for `client_id` from `source`
    /// (when known), or answers 429 naming which bucket is empty.
    pub(crate) fn guess(
        &self,
        metrics: &CibaMetrics,
        client_id: &str,
        source: Option<IpAddr>,
    ) -> Result<(), ApiError> {
        if let (Some(l), Some(ip)) = (&self.guesses_by_source, source) {
            if let Err(secs) = take(l, &source_key(ip)) {
                metrics.refused("secret_guesses_source");
                return Err(too_many(
                    "too many client secret checks from this address; retry later",
                    secs,
                ));
            }
        }
        if let Some(l) = &self.guesses_by_client {
            if let Err(secs) = take(l, &client_id.to_owned()) {
                metrics.refused("secret_guesses_client");
                return Err(too_many(
                    "too many client secret checks for this client; retry later",
                    secs,
                ));
            }
        }
        Ok(())
    }

    /// A place in the queue of argon2 checks, or 503 when
    /// [`CibaConfig::max_argon2_waiting`] already wait.
    pub(crate) fn argon2_place(&self, metrics: &CibaMetrics) -> Result<Argon2Place<'_>, ApiError> {
        let before = self.argon2_waiting.fetch_add(1, Ordering::AcqRel);
        let place = Argon2Place(&self.argon2_waiting);
        if before >= self.max_argon2_waiting {
            metrics.refused("secret_check_queue_full");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "too many client secret checks are waiting; retry shortly",
            )
            .retry_after(1));
        }
        Ok(place)
    }

    /// Takes a token of `client_id`'s request bucket, or answers 429.
    pub(crate) fn request(&self, metrics: &CibaMetrics, client_id: &str) -> Result<(), ApiError> {
        if let Some(l) = &self.requests_by_client {
            if let Err(secs) = take(l, &client_id.to_owned()) {
                metrics.refused("client_request_rate");
                return Err(too_many(
                    "this client is sending approval requests faster than allowed; retry later",
                    secs,
                ));
            }
        }
        Ok(())
    }

    /// Drops the state of keys whose buckets are full again (the clean-up task calls this).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.guesses_by_source {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in [&self.guesses_by_client, &self.requests_by_client]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(guesses: u32, requests: u32) -> CibaConfig {
        let mut c = CibaConfig::new("http://localhost:1");
        c.secret_guesses_per_minute = guesses;
        c.client_requests_per_minute = requests;
        c.max_argon2_waiting = 2;
        c
    }

    fn metrics() -> CibaMetrics {
        CibaMetrics::new(&countersign_log::storage::kv::WriteCounters::default())
    }

    #[test]
    fn a_source_out_of_guesses_is_refused_without_spending_the_clients_bucket() {
        let l = Limits::new(&config(3, 0));
        let m = metrics();
        let attacker = Some("192.0.2.7".parse().unwrap());
        for _ in 0..3 {
            l.guess(&m, "victim", attacker).unwrap();
        }
        let e = l.guess(&m, "victim", attacker).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.retry_after.is_some_and(|s| s >= 1));
        // The refusal took nothing from the client's bucket... which three guesses emptied,
        // so a guess from elsewhere for the same client is refused too, by the client bucket.
        let e = l
            .guess(&m, "victim", Some("198.51.100.1".parse().unwrap()))
            .unwrap_err();
        assert!(e.description.contains("for this client"), "{e:?}");
        // Another client from elsewhere is unaffected.
        l.guess(&m, "other", Some("198.51.100.1".parse().unwrap()))
            .unwrap();
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_64() {
        let l = Limits::new(&config(1, 0));
        let m = metrics();
        l.guess(&m, "a", Some("2001:db8:1:2::1".parse().unwrap()))
            .unwrap();
        assert!(l
            .guess(&m, "b", Some("2001:db8:1:2:ffff::9".parse().unwrap()))
            .is_err());
        l.guess(&m, "c", Some("2001:db8:1:3::1".parse().unwrap()))
            .unwrap();
    }

    #[test]
    fn the_argon2_queue_is_bounded() {
        let l = Limits::new(&config(0, 0));
        let m = metrics();
        let a = l.argon2_place(&m).unwrap();
        let _b = l.argon2_place(&m).unwrap();
        let e = l.argon2_place(&m).err().unwrap();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        drop(a);
        l.argon2_place(&m).unwrap();
    }

    #[test]
    fn a_clients_request_rate_is_limited_and_zero_turns_it_off() {
        let m = metrics();
        let l = Limits::new(&config(0, 2));
        l.request(&m, "c").unwrap();
        l.request(&m, "c").unwrap();
        let e = l.request(&m, "c").unwrap_err();
        assert_eq!(e.code, "too_many_requests");
        l.request(&m, "d").unwrap();
        let off = Limits::new(&config(0, 0));
        for _ in 0..1000 {
            off.request(&m, "c").unwrap();
        }
    }
}
