//! Verified tokens, so that a busy client does not pay a signature check
//! per request.
//!
//! Keyed by a hash of the token; an entry holds the token (a hit must be
//! the same token, byte for byte), its claims, the key id that verified it
//! and its `exp`. Bounded: a full shard first drops expired entries, then
//! an eighth of what is left (the oldest first).
//!
//! The hash covers the token's length and its last 32 bytes (the end of
//! its signature) under a per-process random key: a full-length
//! cryptographic hash cost more than the rest of a proxied request
//! (30k of the 58k instructions per request `bench/proxy-instructions.sh
//! PROTECT=jwt` counted with SHA-256). Only verified tokens are inserted,
//! so a client cannot fill a bucket with collisions; a collision is a miss.
//! That hash is already keyed and uniform, so the shards' maps use it as
//! their own hash instead of hashing it a second time.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::exchange::Claims;
use crate::middleware::prehashed::PrehashedMap;

/// Entries kept at most, per provider.
pub const CAPACITY: usize = 10_000;
const SHARDS: usize = 16;

#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub entries: Gauge,
}

pub struct Entry {
    token: Box<[u8]>,
    pub claims: Arc<Claims>,
    pub kid: Option<String>,
    /// Seconds since the epoch; with leeway, the last second it is good.
    pub good_until: u64,
    inserted: u64,
}

/// The bytes of a token's end the cache key covers.
const KEYED_TAIL: usize = 32;

type Shard = PrehashedMap<Entry>;

pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    metrics: CacheMetrics,
}

impl TokenCache {
    pub fn new(capacity: usize, metrics: CacheMetrics) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(PrehashedMap::default())).collect(),
            per_shard: (capacity / SHARDS).max(1),
            hasher: RandomState::new(),
            metrics,
        }
    }

    /// The cache key of `token`.
    pub fn key(&self, bytes: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_usize(bytes.len());
        h.write(&bytes[bytes.len().saturating_sub(KEYED_TAIL)..]);
        h.finish()
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        // Middle bits: the map takes its slot from the low bits and its
        // tags from the top ones.
        let i = (key >> 32) as usize % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claims of `token`, verified before and still good at `now`, if
    /// `key_present` says the key that verified it is still in the set.
    pub fn get(
        &self,
        key: u64,
        token: &[u8],
        now: u64,
        key_present: impl Fn(Option<&str>) -> bool,
    ) -> Option<Arc<Claims>> {
        let mut shard = self.shard(key);
        let hit = match shard.get(&key) {
            Some(e) if *e.token != *token => None,
            Some(e) if e.good_until >= now && key_present(e.kid.as_deref()) => Some(e.claims.clone()),
            Some(_) => {
                shard.remove(&key);
                self.metrics.entries.dec();
                None
            }
            None => None,
        };
        match hit {
            Some(_) => self.metrics.hits.inc(),
            None => self.metrics.misses.inc(),
        };
        hit
    }

    pub fn insert(
        &self,
        key: u64,
        token: &[u8],
        claims: Arc<Claims>,
        kid: Option<String>,
        good_until: u64,
        now: u64,
    ) {
        let mut shard = self.shard(key);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            let before = shard.len();
            shard.retain(|_, e| e.good_until >= now);
            if shard.len() >= self.per_shard {
                let mut ages: Vec<u64> = shard.values().map(|e| e.inserted).collect();
                let n = (ages.len() / 8).max(1);
                let cut = *ages.select_nth_unstable(n - 1).1;
                let mut left = n;
                shard.retain(|_, e| {
                    if left > 0 && e.inserted <= cut {
                        left -= 1;
                        return false;
                    }
                    true
                });
            }
            self.metrics.entries.dec_by((before - shard.len()) as i64);
        }
        let entry = Entry { token: token.into(), claims, kid, good_until, inserted: now };
        if shard.insert(key, entry).is_none() {
            self.metrics.entries.inc();
        }
    }

    /// Drops entries verified by keys no longer in the set.
    pub fn retain_keys(&self, key_present: impl Fn(Option<&str>) -> bool) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = shard.len();
            shard.retain(|_, e| key_present(e.kid.as_deref()));
            self.metrics.entries.dec_by((before - shard.len()) as i64);
        }
    }
}

impl Drop for TokenCache {
    fn drop(&mut self) {
        let held: usize = self.shards.iter_mut().map(|s| s.get_mut().map_or(0, |m| m.len())).sum();
        self.metrics.entries.dec_by(held as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Arc<Claims> {
        Arc::new(Claims::new())
    }

    #[test]
    fn entries_expire_and_follow_their_key() {
        let metrics = CacheMetrics::default();
        let c = TokenCache::new(100, metrics.clone());
        let t = b"a.b.c".as_slice();
        let k = c.key(t);
        c.insert(k, t, claims(), Some("k1".into()), 100, 10);
        assert!(c.get(k, t, 50, |_| true).is_some());
        assert!(c.get(k, t, 50, |kid| kid != Some("k1")).is_none(), "rotated away");
        assert!(c.get(k, t, 50, |_| true).is_none(), "and dropped");
        c.insert(k, t, claims(), None, 100, 10);
        assert!(c.get(k, t, 101, |_| true).is_none(), "expired");
        assert_eq!((metrics.hits.get(), metrics.misses.get(), metrics.entries.get()), (1, 3, 0));
    }

    #[test]
    fn a_hit_is_the_same_token_even_when_the_keys_collide() {
        let c = TokenCache::new(100, CacheMetrics::default());
        // Same length and end: the same key, not the same token.
        let tail = "s".repeat(KEYED_TAIL);
        let (good, forged) = (format!("aaa.{tail}"), format!("bbb.{tail}"));
        let (good, forged) = (good.as_bytes(), forged.as_bytes());
        assert_eq!(c.key(good), c.key(forged));
        c.insert(c.key(good), good, claims(), None, 100, 10);
        assert!(c.get(c.key(forged), forged, 50, |_| true).is_none());
        assert!(c.get(c.key(good), good, 50, |_| true).is_some());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let metrics = CacheMetrics::default();
        let c = TokenCache::new(160, metrics.clone());
        for i in 0..5000u32 {
            let t = i.to_string();
            let t = t.as_bytes();
            c.insert(c.key(t), t, claims(), None, 1000, u64::from(i));
        }
        assert!(metrics.entries.get() <= 160, "{}", metrics.entries.get());
        c.retain_keys(|_| false);
        assert_eq!(metrics.entries.get(), 0);
    }
}
