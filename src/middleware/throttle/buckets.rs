//! Where a limit's buckets live: the [`Buckets`] interface, and the
//! in-process store every gateway has ([`MemoryBuckets`], governor's GCRA
//! over a bounded map).
//!
//! The throttle layer sees only [`Buckets`]; a store shared by a fleet of
//! gateways (Redis, say) implements it by answering [`Take::Later`].

use std::collections::HashMap;
use std::future::Future;
use std::hash::RandomState;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::key::BucketKey;

/// The outcome of taking one request's token from a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests the bucket admits now (after this one).
    pub remaining: u32,
    /// Until the bucket is full again, or (refused) until a request would
    /// be admitted.
    pub reset: Duration,
}

/// A verdict now, or one a remote store will give.
pub enum Take {
    Now(Verdict),
    Later(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}

/// A limit's buckets, one per key.
pub trait Buckets: Send + Sync + 'static {
    /// Takes a request's token from `key`'s bucket, if it has one.
    fn take(&self, key: BucketKey) -> Take;
}

/// Handles a store reports through.
#[derive(Clone, Debug, Default)]
pub struct StoreMetrics {
    /// Buckets held now.
    pub keys: Gauge,
    /// Buckets dropped because they were full (idle): nothing is lost.
    pub evicted_idle: Counter,
    /// Buckets dropped to stay within `max_keys` (idle ones first).
    pub evicted_capacity: Counter,
}

/// How often a shard drops its idle buckets (on its next use).
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Shards of the map: contention between workers stays low, and a shard's
/// sweep or eviction touches a sixteenth of the keys.
const SHARDS: usize = 16;

/// governor's GCRA over [`BoundedStore`]: exact across threads (a bucket
/// is updated under its shard's lock) and bounded in memory.
pub struct MemoryBuckets<C: Clock = MonotonicClock> {
    limiter: RateLimiter<BucketKey, BoundedStore<C>, C, StateInformationMiddleware>,
    /// The limiter's store, shared (the limiter keeps its own private).
    store: BoundedStore<C>,
    clock: C,
    /// Time to earn one token back.
    period: Duration,
    burst: u32,
}

impl MemoryBuckets<MonotonicClock> {
    /// `count` requests per `per`, bursts of up to `burst`, at most
    /// `max_keys` buckets.
    pub fn new(count: u32, per: Duration, burst: u32, max_keys: usize, metrics: StoreMetrics) -> Self {
        Self::with_clock(count, per, burst, max_keys, metrics, MonotonicClock)
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> MemoryBuckets<C>
where
    C::Instant: Send + Sync,
{
    pub fn with_clock(
        count: u32,
        per: Duration,
        burst: u32,
        max_keys: usize,
        metrics: StoreMetrics,
        clock: C,
    ) -> Self {
        let period = (per / count.max(1)).max(Duration::from_nanos(1));
        let burst = burst.max(1);
        let quota = Quota::with_period(period)
            .expect("the period is at least 1ns")
            .allow_burst(NonZeroU32::new(burst).expect("at least 1"));
        let store = BoundedStore::new(max_keys, SHARDS, metrics, clock.clone());
        let limiter =
            RateLimiter::<_, _, _, NoOpMiddleware<C::Instant>>::new(quota, store.clone(), clock.clone())
                .with_middleware::<StateInformationMiddleware>();
        Self { limiter, store, clock, period, burst }
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn verdict_now(&self, key: &BucketKey) -> Verdict {
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                // Each token missing from a full bucket comes back after one
                // period.
                let missing = self.burst.saturating_sub(remaining);
                Verdict { allowed: true, remaining, reset: self.period * missing }
            }
            Err(not_until) => {
                Verdict { allowed: false, remaining: 0, reset: not_until.wait_time_from(self.clock.now()) }
            }
        }
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> Buckets for MemoryBuckets<C>
where
    C::Instant: Send + Sync,
{
    fn take(&self, key: BucketKey) -> Take {
        Take::Now(self.verdict_now(&key))
    }
}

/// A bucket: governor's theoretical arrival time, and when it was last used
/// (the shard's use count then: least recently used is lowest).
struct Slot {
    tat: u64,
    used: u64,
}

struct Shard {
    map: HashMap<BucketKey, Slot, RandomState>,
    /// Uses of the shard so far: the LRU order, and how often the clock is
    /// read for a sweep.
    uses: u64,
    last_sweep: u64,
}

/// A shard looks at the clock (to see if a sweep is due) once per this
/// many uses, not on every request.
const SWEEP_CHECK_EVERY: u64 = 256;

/// A governor [`StateStore`] that holds at most `max_keys` buckets. Full
/// buckets (whose arrival time has passed) are worth nothing and are swept
/// away; when a shard is full, an eighth of it is evicted, idle buckets
/// first, then the least recently used.
pub struct BoundedStore<C: Clock>(Arc<Store<C>>);

impl<C: Clock> Clone for BoundedStore<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

pub struct Store<C: Clock> {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    clock: C,
    start: C::Instant,
    metrics: StoreMetrics,
    held: AtomicU64,
}

impl<C: Clock> BoundedStore<C> {
    fn new(max_keys: usize, shards: usize, metrics: StoreMetrics, clock: C) -> Self {
        let shards = shards.min(max_keys).max(1);
        let per_shard = (max_keys / shards).max(1);
        let start = clock.now();
        Self(Arc::new(Store {
            shards: (0..shards)
                .map(|_| Mutex::new(Shard { map: HashMap::default(), uses: 0, last_sweep: 0 }))
                .collect(),
            per_shard,
            clock,
            start,
            metrics,
            held: AtomicU64::new(0),
        }))
    }

    pub fn len(&self) -> usize {
        self.0.held.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<C: Clock> Store<C> {
    /// Nanoseconds since the store was made. The limiter's own reference
    /// point is taken just after, so its times are never ahead of these:
    /// a bucket this store sees as full is full.
    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    fn forget(&self, idle: usize, busy: usize) {
        let n = idle + busy;
        if n == 0 {
            return;
        }
        self.held.fetch_sub(n as u64, Ordering::Relaxed);
        self.metrics.keys.dec_by(n as i64);
        self.metrics.evicted_idle.inc_by(idle as u64);
        self.metrics.evicted_capacity.inc_by(busy as u64);
    }

    fn sweep_idle(&self, shard: &mut Shard, now: u64) {
        let before = shard.map.len();
        shard.map.retain(|_, s| s.tat > now);
        shard.last_sweep = now;
        self.forget(before - shard.map.len(), 0);
    }

    /// Makes room in a full shard: evicts an eighth of it, idle buckets
    /// first, then the least recently used (amortised O(1) per new key).
    fn evict(&self, shard: &mut Shard) {
        let now = self.now();
        let n = (shard.map.len() / 8).max(1);
        // Idle buckets rank first (`false` < `true`), then by last use.
        let rank = |s: &Slot| (s.tat > now, s.used);
        let mut ranks: Vec<(bool, u64)> = shard.map.values().map(rank).collect();
        let cut = *ranks.select_nth_unstable(n - 1).1;
        let (mut idle, mut busy) = (0, 0);
        shard.map.retain(|_, s| {
            if idle + busy < n && rank(s) <= cut {
                if s.tat > now {
                    busy += 1;
                } else {
                    idle += 1;
                }
                return false;
            }
            true
        });
        self.forget(idle, busy);
    }
}

impl<C: Clock> Drop for Store<C> {
    fn drop(&mut self) {
        self.metrics.keys.dec_by(*self.held.get_mut() as i64);
    }
}

impl<C: Clock> StateStore for BoundedStore<C> {
    type Key = BucketKey;

    fn measure_and_replace<T, F, E>(&self, key: &BucketKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let store = &*self.0;
        let shard = &store.shards[key.spread() % store.shards.len()];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        shard.uses += 1;
        let used = shard.uses;
        if used.is_multiple_of(SWEEP_CHECK_EVERY) {
            let now = store.now();
            if now.saturating_sub(shard.last_sweep) >= SWEEP_EVERY.as_nanos() as u64 {
                store.sweep_idle(&mut shard, now);
            }
        }
        if let Some(slot) = shard.map.get_mut(key) {
            let (out, tat) = f(Some(Nanos::from(slot.tat)))?;
            slot.tat = tat.into();
            slot.used = used;
            return Ok(out);
        }
        let (out, tat) = f(None)?;
        if shard.map.len() >= store.per_shard {
            store.evict(&mut shard);
        }
        shard.map.insert(key.clone(), Slot { tat: tat.into(), used });
        store.held.fetch_add(1, Ordering::Relaxed);
        store.metrics.keys.inc();
        Ok(out)
    }
}

impl<B: Buckets + ?Sized> Buckets for Arc<B> {
    fn take(&self, key: BucketKey) -> Take {
        (**self).take(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn buckets(
        count: u32,
        burst: u32,
        max_keys: usize,
    ) -> (MemoryBuckets<FakeRelativeClock>, FakeRelativeClock, StoreMetrics) {
        let clock = FakeRelativeClock::default();
        let metrics = StoreMetrics::default();
        let b = MemoryBuckets::with_clock(
            count,
            Duration::from_secs(1),
            burst,
            max_keys,
            metrics.clone(),
            clock.clone(),
        );
        (b, clock, metrics)
    }

    fn take(b: &MemoryBuckets<FakeRelativeClock>, key: &str) -> Verdict {
        match b.take(BucketKey::Text(key.as_bytes().into())) {
            Take::Now(v) => v,
            Take::Later(_) => unreachable!("the memory store answers at once"),
        }
    }

    #[test]
    fn a_burst_then_one_token_per_period() {
        let (b, clock, _) = buckets(10, 3, 100);
        for remaining in [2, 1, 0] {
            let v = take(&b, "a");
            assert!(v.allowed);
            assert_eq!(v.remaining, remaining);
        }
        let refused = take(&b, "a");
        assert!(!refused.allowed);
        assert_eq!(refused.reset, Duration::from_millis(100));
        clock.advance(Duration::from_millis(100));
        assert!(take(&b, "a").allowed);
        assert!(!take(&b, "a").allowed);
        // Another key has its own bucket.
        assert!(take(&b, "b").allowed);
    }

    #[test]
    fn a_full_bucket_reports_the_time_to_refill() {
        let (b, _, _) = buckets(2, 4, 100);
        let v = take(&b, "a");
        assert_eq!((v.remaining, v.reset), (3, Duration::from_millis(500)));
        let v = take(&b, "a");
        assert_eq!((v.remaining, v.reset), (2, Duration::from_secs(1)));
    }

    #[test]
    fn idle_buckets_are_swept_and_the_key_count_is_bounded() {
        let (b, clock, metrics) = buckets(1, 1, 64);
        for i in 0..1000 {
            take(&b, &format!("k{i}"));
        }
        assert!(b.len() <= 64, "{} keys", b.len());
        assert_eq!(metrics.keys.get() as usize, b.len());
        assert!(metrics.evicted_capacity.get() > 0);
        // Once every bucket is full again, the next use of a shard sweeps it.
        clock.advance(SWEEP_EVERY + Duration::from_secs(2));
        for i in 0..200 {
            take(&b, &format!("fresh{i}"));
        }
        assert!(metrics.evicted_idle.get() > 0);
        assert_eq!(metrics.keys.get() as usize, b.len());
    }

    #[test]
    fn eviction_prefers_idle_buckets_over_busy_ones() {
        // One shard of 8, burst 2 at 1/s: one token taken makes a bucket
        // idle after 1s, two after 2s.
        let clock = FakeRelativeClock::default();
        let metrics = StoreMetrics::default();
        let store = BoundedStore::new(8, 1, metrics.clone(), clock.clone());
        let quota = Quota::per_second(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(2).unwrap());
        let limiter = RateLimiter::<_, _, _, NoOpMiddleware<_>>::new(quota, store.clone(), clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        let key = |k: &str| BucketKey::Text(k.as_bytes().into());
        // The least recently used bucket, and still busy at 1.6s.
        limiter.check_key(&key("busy")).unwrap();
        limiter.check_key(&key("busy")).unwrap();
        clock.advance(Duration::from_millis(500));
        for i in 0..7 {
            limiter.check_key(&key(&format!("k{i}"))).unwrap();
        }
        clock.advance(Duration::from_millis(1100));
        assert_eq!(store.len(), 8);
        limiter.check_key(&key("new")).unwrap();
        assert_eq!(store.len(), 8);
        assert_eq!((metrics.evicted_idle.get(), metrics.evicted_capacity.get()), (1, 0));
        // "busy" kept its state: its one token left (a new bucket has two).
        let snapshot = limiter.check_key(&key("busy")).unwrap();
        assert_eq!(snapshot.remaining_burst_capacity(), 0);
    }
}
