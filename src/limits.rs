//! Rate limits at the edges (`governor`'s GCRA, in memory, per node): requests per client address
//! for everything an agent's *validated* token does not carry, per customer token on top, socket
//! upgrades per address, failed logins per email address (a lockout that holds whatever the
//! address; attempts are counted before the password is checked, so a burst of concurrent
//! guesses cannot all pass before the first failures are known), and frames per socket connection;
//! and a bound on the API requests and socket admissions a node works on at once
//! ([`Limiter::in_flight`]). The HTTP middleware (`http::limits`) and the socket transport use
//! them; both answer a refusal with how long to wait.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Requests per minute, refilled continuously, with a burst of the same size.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_ip_per_minute: u32,
    pub per_customer_per_minute: u32,
    /// Socket upgrades per client address and minute (reconnecting pages included).
    pub sockets_per_minute: u32,
    /// Frames a socket may send per second, with bursts of twice that; over it the frame gets an
    /// error reply and the socket is closed (1008).
    pub frames_per_second: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (behind a trusted proxy).
    pub trust_proxy: bool,
    /// API requests and socket admissions this node works on at once ([`Limiter::in_flight`]).
    pub in_flight: usize,
}

/// Login attempts allowed per email address…
pub const LOGIN_ATTEMPTS: u32 = 10;
/// …per this window (one more allowed every window / attempts): then 429 for that address.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long an agent token's validation exempts its requests from the address limit.
pub const AGENT_TOKEN_CACHE: Duration = Duration::from_secs(10);
/// How long a request waits for one of the node's [`Limits::in_flight`] places before it is
/// answered 503 (retry shortly).
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(3);
/// [`Limits::in_flight`] per database connection of a pool (`DATABASE_MAX_CONNECTIONS`).
pub const IN_FLIGHT_PER_CONNECTION: usize = 4;
/// Keyed state is swept of idle keys once it holds this many.
const SWEEP_ABOVE: usize = 100_000;

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

/// The node's rate limiters.
pub struct Limiter {
    pub limits: Limits,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_customer: DefaultKeyedRateLimiter<String>,
    upgrades: DefaultKeyedRateLimiter<IpAddr>,
    logins: DefaultKeyedRateLimiter<String>,
    /// Digests of agent tokens validated lately, until when they count as validated.
    agents: Mutex<HashMap<String, Instant>>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        let login = Quota::with_period(LOGIN_WINDOW / LOGIN_ATTEMPTS)
            .unwrap_or_else(|| per_minute(1))
            .allow_burst(NonZeroU32::new(LOGIN_ATTEMPTS).unwrap_or(NonZeroU32::MIN));
        Self {
            limits,
            per_ip: RateLimiter::keyed(per_minute(limits.per_ip_per_minute)),
            per_customer: RateLimiter::keyed(per_minute(limits.per_customer_per_minute)),
            upgrades: RateLimiter::keyed(per_minute(limits.sockets_per_minute)),
            logins: RateLimiter::keyed(login),
            agents: Mutex::new(HashMap::new()),
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.in_flight.max(1))),
        }
    }

    /// A place among the requests this node works on at once ([`Limits::in_flight`]), waited for
    /// (first come, first served) for at most [`IN_FLIGHT_WAIT`]; `None`: the node is busy, answer
    /// 503. Requests beyond the bound wait here, not in the database pools' queues, where the
    /// projectors, the relay and the broadcaster would wait behind them (after PostgreSQL
    /// restarts, thousands of clients retry at once). Held until dropped.
    pub async fn in_flight(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(IN_FLIGHT_WAIT, self.in_flight.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// One request from `ip`; `Err` holds how long until the next is allowed.
    pub fn request_from(&self, ip: IpAddr) -> Result<(), Duration> {
        take(&self.per_ip, &ip)
    }

    /// One request with the customer token whose digest is `token_digest`.
    pub fn request_as_customer(&self, token_digest: String) -> Result<(), Duration> {
        take(&self.per_customer, &token_digest)
    }

    /// One socket upgrade from `ip`.
    pub fn upgrade_from(&self, ip: IpAddr) -> Result<(), Duration> {
        take(&self.upgrades, &ip)
    }

    /// One login attempt to `email` (case and surrounding spaces ignored); past
    /// [`LOGIN_ATTEMPTS`] in [`LOGIN_WINDOW`] the address is locked out, whoever tries.
    pub fn login_attempt(&self, email: &str) -> Result<(), Duration> {
        take(&self.logins, &email.trim().to_lowercase())
    }

    /// Whether the agent token with this digest was validated within [`AGENT_TOKEN_CACHE`].
    pub fn agent_validated(&self, token_digest: &str) -> bool {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.get(token_digest).is_some_and(|until| *until > Instant::now())
    }

    /// Remembers that the agent token with this digest is valid.
    pub fn agent_valid(&self, token_digest: String) {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if agents.len() >= SWEEP_ABOVE {
            agents.retain(|_, until| *until > now);
        }
        agents.insert(token_digest, now + AGENT_TOKEN_CACHE);
    }
}

/// Takes one cell of `key`'s allowance; sweeps idle keys when the state has grown large.
fn take<K>(limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), Duration>
where
    K: std::hash::Hash + Eq + Clone,
{
    if limiter.len() >= SWEEP_ABOVE {
        limiter.retain_recent();
    }
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

impl Limiter {
    /// The frame limiter of one socket connection ([`Limits::frames_per_second`], bursts of
    /// twice that).
    pub fn frames(&self) -> DefaultDirectRateLimiter {
        let rate = self.limits.frames_per_second.max(1);
        let quota = Quota::per_second(NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(rate.saturating_mul(2)).unwrap_or(NonZeroU32::MIN));
        RateLimiter::direct(quota)
    }
}

/// The client address of a request: the last `X-Forwarded-For` entry when the proxy is trusted
/// (the one the proxy appended; earlier ones are the client's word), else the peer's address.
pub fn client_ip(trust_proxy: bool, forwarded_for: Option<&str>, peer: Option<IpAddr>) -> Option<IpAddr> {
    if trust_proxy
        && let Some(ip) = forwarded_for
            .and_then(|f| f.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok())
    {
        return Some(ip);
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32) -> Limiter {
        Limiter::new(Limits {
            per_ip_per_minute: per_minute,
            per_customer_per_minute: per_minute,
            sockets_per_minute: per_minute,
            frames_per_second: 50,
            trust_proxy: false,
            in_flight: 2,
        })
    }

    #[tokio::test]
    async fn requests_beyond_the_in_flight_bound_wait_then_are_turned_away_until_a_place_frees() {
        let limiter = limiter(5);
        let first = limiter.in_flight().await.expect("a first place");
        let _second = limiter.in_flight().await.expect("a second place");
        let waited = Instant::now();
        assert!(limiter.in_flight().await.is_none(), "no third place while two are held");
        assert!(waited.elapsed() >= IN_FLIGHT_WAIT, "it waited for one first");
        drop(first);
        assert!(limiter.in_flight().await.is_some(), "a freed place is taken again");
    }

    #[test]
    fn an_address_gets_its_burst_then_waits_while_another_is_untouched() {
        let limiter = limiter(5);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..5 {
            assert!(limiter.request_from(a).is_ok());
        }
        let wait = limiter.request_from(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(12), "{wait:?}");
        assert!(limiter.request_from(b).is_ok());
    }

    #[test]
    fn ten_login_attempts_lock_the_address_out_whatever_its_case() {
        let limiter = limiter(5);
        for _ in 0..LOGIN_ATTEMPTS {
            assert!(limiter.login_attempt("Owner@Example.com").is_ok());
        }
        let wait = limiter.login_attempt(" owner@example.com ").unwrap_err();
        assert!(wait <= LOGIN_WINDOW / LOGIN_ATTEMPTS, "{wait:?}");
        assert!(limiter.login_attempt("other@example.com").is_ok());
    }

    #[test]
    fn a_validated_agent_token_is_remembered_briefly() {
        let limiter = limiter(5);
        assert!(!limiter.agent_validated("digest"));
        limiter.agent_valid("digest".into());
        assert!(limiter.agent_validated("digest"));
        assert!(!limiter.agent_validated("other"));
    }

    #[test]
    fn the_forwarded_address_counts_only_behind_a_trusted_proxy() {
        let peer = Some("10.0.0.1".parse().unwrap());
        let forwarded = Some("203.0.113.9, 198.51.100.7");
        assert_eq!(client_ip(false, forwarded, peer), peer);
        assert_eq!(client_ip(true, forwarded, peer), Some("198.51.100.7".parse().unwrap()));
        assert_eq!(client_ip(true, Some("garbage"), peer), peer);
    }

    #[test]
    fn a_socket_may_burst_then_is_held_to_its_rate() {
        let frames = limiter(5).frames();
        for _ in 0..100 {
            assert!(frames.check().is_ok());
        }
        assert!(frames.check().is_err());
    }
}
