//! What keeps one client from crowding out the others: request rate limits per user and
//! per IP (`RATE_LIMIT_MAX` requests per `RATE_LIMIT_WINDOW`), a cap on each caller's
//! unfinished runs (`MAX_CONCURRENT_EXECUTIONS`), and which browser origins may call us
//! (CORS).
//!
//! The rate limit is GCRA (a leaky bucket kept as one instant per key): a caller may send
//! `max` requests at once and then one every `window / max`, so `max` per `window` on
//! average with no burst at a window's edge, as fixed windows would allow. An
//! authenticated caller is counted per user (whatever token or session they use), an
//! anonymous one per IP address; a request with a bad credential counts against its IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use protocol::Limits;

use crate::judge::{Status, SubmissionId};
use crate::scheduler::Scheduler;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single map operation that cannot panic half-way.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who a limit counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    User(i64),
    Ip(IpAddr),
}

impl Key {
    /// The metric label: `user` or `ip`.
    pub fn scope(&self) -> &'static str {
        match self {
            Key::User(_) => "user",
            Key::Ip(_) => "ip",
        }
    }
}

/// `max` requests per `window` per key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub max: u64,
    pub window: Duration,
}

/// Keys beyond this trigger a sweep of the idle ones, bounding memory under a flood of
/// addresses.
const SWEEP_AT: usize = 100_000;

pub struct RateLimiter {
    limit: RateLimit,
    /// Time between requests at the sustained rate.
    interval: Duration,
    /// Per key: the theoretical arrival time of its next request. A key whose instant is
    /// in the past is the same as an absent one.
    tat: Mutex<HashMap<Key, Instant>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        let max = limit.max.max(1);
        let interval = limit.window / u32::try_from(max).unwrap_or(u32::MAX);
        RateLimiter { limit: RateLimit { max, window: limit.window }, interval, tat: Mutex::new(HashMap::new()) }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Counts a request of `key` at `now`; Err holds how long until one would pass.
    pub fn check(&self, key: &Key, now: Instant) -> Result<(), Duration> {
        let mut map = lock(&self.tat);
        if map.len() >= SWEEP_AT {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(key).copied().filter(|t| *t > now).unwrap_or(now);
        let next = tat + self.interval;
        // Allowed while the backlog (next - now) fits in the window: `max` in a burst.
        let backlog = next - now;
        if backlog > self.limit.window {
            return Err(backlog - self.limit.window);
        }
        map.insert(key.clone(), next);
        Ok(())
    }

    /// Counts a request of `key` now; a refusal is the 429 to answer, naming the limit
    /// and when to retry.
    pub fn admit(&self, key: &Key) -> Result<(), super::ApiError> {
        self.check(key, Instant::now()).map_err(|wait| {
            // Whole seconds, rounded up: a client retrying at once would be refused again.
            let retry_after_s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            super::ApiError::RateLimited {
                limit: self.limit.max,
                window_s: self.limit.window.as_secs().max(1),
                retry_after_s,
            }
        })
    }
}

/// A run the caller started, by the id the API gave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticket {
    Id(SubmissionId),
    Judge0(String),
}

#[derive(Default)]
struct Unfinished {
    tickets: Vec<Ticket>,
    /// Admitted but not yet submitted (or refused).
    reserved: usize,
}

/// At most `max` unfinished runs per key. Finished ones are pruned when the key asks
/// again, from the scheduler's view, so nothing needs to tell us when a run ends.
pub struct Concurrency {
    pub max: usize,
    unfinished: Mutex<HashMap<Key, Unfinished>>,
}

/// Places reserved by `Concurrency::admit`; what is not `record`ed is released on drop.
/// Owned, so it can travel with a run into a task or a callback.
pub struct Admission {
    limits: Arc<Concurrency>,
    key: Key,
    reserved: usize,
}

impl Admission {
    /// The runs these places went to; they count until they finish.
    pub fn record(mut self, tickets: Vec<Ticket>) {
        let mut map = lock(&self.limits.unfinished);
        let entry = map.entry(self.key.clone()).or_default();
        entry.reserved = entry.reserved.saturating_sub(self.reserved);
        entry.tickets.extend(tickets);
        self.reserved = 0;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.reserved > 0 {
            let mut map = lock(&self.limits.unfinished);
            if let Some(entry) = map.get_mut(&self.key) {
                entry.reserved = entry.reserved.saturating_sub(self.reserved);
            }
        }
    }
}

impl Concurrency {
    pub fn new(max: usize) -> Concurrency {
        Concurrency { max, unfinished: Mutex::new(HashMap::new()) }
    }

    /// Reserves `runs` places for `key`, or says how many are taken.
    pub fn admit(self: &Arc<Self>, scheduler: &Scheduler, key: Key, runs: usize) -> Result<Admission, (usize, usize)> {
        let mut map = lock(&self.unfinished);
        let entry = map.entry(key.clone()).or_default();
        // Forgotten runs count as finished.
        entry.tickets.retain(|t| {
            let status = match t {
                Ticket::Id(id) => scheduler.status(*id),
                Ticket::Judge0(token) => scheduler.status_by_token(token),
            };
            status.is_some_and(|s| s != Status::Done)
        });
        let taken = entry.tickets.len() + entry.reserved;
        if taken + runs > self.max {
            return Err((taken, self.max));
        }
        entry.reserved += runs;
        Ok(Admission { limits: self.clone(), key, reserved: runs })
    }
}

/// The operator's caps on every run a caller makes the judge do, whatever the door:
/// `/api/submissions`, Judge0, the dashboard's `/api/execution` and `/api/testing`, and
/// `/ws` runs, tests and benchmarks. Routes whose clients choose limits refuse values
/// over the caps (400); routes with fixed limits (the dashboard's, `/ws`) have theirs
/// lowered to the caps. Unfinished runs count against one budget per caller across all
/// doors.
#[derive(Clone)]
pub struct RunCaps {
    /// MAX_EXECUTION_TIME: the highest CPU and wall time of a run, ms.
    pub max_cpu_ms: u64,
    pub max_wall_ms: u64,
    /// MAX_MEMORY_USAGE, in bytes.
    pub max_memory_bytes: u64,
    /// MAX_CONCURRENT_EXECUTIONS; None: no cap.
    pub concurrency: Option<Arc<Concurrency>>,
}

impl std::fmt::Debug for RunCaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCaps")
            .field("max_cpu_ms", &self.max_cpu_ms)
            .field("max_wall_ms", &self.max_wall_ms)
            .field("max_memory_bytes", &self.max_memory_bytes)
            .field("max_concurrent", &self.concurrency.as_ref().map(|c| c.max))
            .finish()
    }
}

impl RunCaps {
    /// No caps beyond the given limits' own: for library use and tests.
    pub fn unlimited() -> RunCaps {
        RunCaps { max_cpu_ms: u64::MAX, max_wall_ms: u64::MAX, max_memory_bytes: u64::MAX, concurrency: None }
    }

    /// A route's fixed limits, lowered to the caps.
    pub fn clamp(&self, limits: Limits) -> Limits {
        Limits {
            cpu_ms: limits.cpu_ms.min(self.max_cpu_ms),
            wall_ms: limits.wall_ms.min(self.max_wall_ms),
            memory_bytes: limits.memory_bytes.min(self.max_memory_bytes),
            ..limits
        }
    }

    /// Reserves a place for one run of `key`; None when there is no cap. Err says how
    /// many of the caller's runs are unfinished and the cap.
    pub fn admit(&self, scheduler: &Scheduler, key: Key) -> Result<Option<Admission>, (usize, usize)> {
        match &self.concurrency {
            None => Ok(None),
            Some(c) => c.admit(scheduler, key, 1).map(Some),
        }
    }
}

/// Which origins a browser may call us from.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Cors {
    /// No CORS headers: browsers allow same-origin pages only.
    #[default]
    Off,
    /// Any origin (`*`): fine for a public read-only catalog, not with credentials in
    /// cookies (we use none).
    Any,
    Origins(Vec<String>),
}

impl Cors {
    /// `--cors-origin` values: `*`, or origins like `http://localhost:3000`.
    pub fn parse(values: &[String]) -> Result<Cors, String> {
        let values: Vec<&str> = values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()).collect();
        if values.is_empty() {
            return Ok(Cors::Off);
        }
        if values.contains(&"*") {
            return Ok(Cors::Any);
        }
        for v in &values {
            if !(v.starts_with("http://") || v.starts_with("https://")) || v.ends_with('/') {
                return Err(format!("CORS origin {v:?} must look like http(s)://host[:port], without a path"));
            }
        }
        Ok(Cors::Origins(values.into_iter().map(str::to_owned).collect()))
    }

    /// The Access-Control-Allow-Origin value for a request from `origin`, if allowed.
    pub fn allow(&self, origin: &str) -> Option<String> {
        match self {
            Cors::Off => None,
            Cors::Any => Some("*".into()),
            Cors::Origins(list) => list.iter().any(|o| o == origin).then(|| origin.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_burst_of_max_passes_then_the_sustained_rate() {
        let limiter = RateLimiter::new(RateLimit { max: 3, window: Duration::from_secs(3) });
        let key = Key::Ip("10.0.0.1".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(&key, t0).is_ok());
        }
        let wait = limiter.check(&key, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1), "one more fits once an interval has passed");
        // Others are not affected.
        assert!(limiter.check(&Key::User(1), t0).is_ok());
        assert!(limiter.check(&key, t0 + Duration::from_millis(999)).is_err());
        assert!(limiter.check(&key, t0 + Duration::from_secs(1)).is_ok());
        assert!(limiter.check(&key, t0 + Duration::from_secs(1)).is_err());
        // A long pause refills the whole burst.
        for _ in 0..3 {
            assert!(limiter.check(&key, t0 + Duration::from_secs(60)).is_ok());
        }
    }

    #[test]
    fn cors_origins_are_matched_exactly() {
        let cors = Cors::parse(&["http://localhost:3000, https://judge.example.org".into()]).unwrap();
        assert_eq!(cors.allow("http://localhost:3000").as_deref(), Some("http://localhost:3000"));
        assert_eq!(cors.allow("http://localhost:3000.evil.example"), None);
        assert_eq!(Cors::parse(&["*".into()]).unwrap().allow("http://x").as_deref(), Some("*"));
        assert_eq!(Cors::parse(&[]).unwrap(), Cors::Off);
        assert!(Cors::parse(&["localhost:3000".into()]).is_err());
    }
}
