//! A short-lived cache of answers that are the same for every caller (the catalog list),
//! so the hottest read does not cost PostgreSQL round trips on every request.
//!
//! Entries live `ttl` (one second): another coordinator's catalog write shows here within
//! that. This coordinator's own writes clear the cache at once; a generation counter keeps
//! an answer read before a write from being stored after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct ResponseCache {
    ttl: Duration,
    max_entries: usize,
    generation: AtomicU64,
    entries: Mutex<HashMap<String, (Instant, Arc<Value>)>>,
}

impl ResponseCache {
    pub fn new(ttl: Duration, max_entries: usize) -> ResponseCache {
        ResponseCache { ttl, max_entries, generation: AtomicU64::new(0), entries: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Instant, Arc<Value>)>> {
        // Single map operations under the lock: nothing is left half-done by a panic.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer for `key` if fresh, else the generation to hand to `put` with the
    /// answer read now.
    pub fn get(&self, key: &str) -> Result<Arc<Value>, u64> {
        let generation = self.generation.load(Ordering::Acquire);
        match self.lock().get(key) {
            Some((at, value)) if at.elapsed() < self.ttl => Ok(value.clone()),
            _ => Err(generation),
        }
    }

    /// Stores an answer read at `generation`, unless a write happened since.
    pub fn put(&self, key: String, generation: u64, value: Arc<Value>) {
        let mut entries = self.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.max_entries {
            // Many distinct queries (or someone churning them): start over rather than
            // track ages; the next requests refill what is hot.
            entries.clear();
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// After a write: nothing read before it is served or stored any more.
    pub fn invalidate(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn fresh_answers_are_served_and_writes_clear_them() {
        let cache = ResponseCache::new(Duration::from_secs(60), 2);
        let generation = cache.get("a").unwrap_err();
        cache.put("a".into(), generation, Arc::new(json!(1)));
        assert_eq!(*cache.get("a").unwrap(), json!(1));
        // Read before a write, stored after it: dropped.
        let before = cache.get("b").unwrap_err();
        cache.invalidate();
        cache.put("b".into(), before, Arc::new(json!(2)));
        assert!(cache.get("b").is_err());
        assert!(cache.get("a").is_err(), "the write cleared the cache");
        let expired = ResponseCache::new(Duration::ZERO, 2);
        let generation = expired.get("a").unwrap_err();
        expired.put("a".into(), generation, Arc::new(json!(1)));
        assert!(expired.get("a").is_err());
    }
}
