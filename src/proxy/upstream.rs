//! An upstream: its targets, their health, how one is picked, and the
//! pooled client that reaches them.
//!
//! A target is usable unless an active health check marked it unhealthy or
//! passive ejection took it out for a while. Health is per `Upstream`
//! value; a reload that keeps an upstream's configuration keeps the value,
//! so health state and pooled connections survive reloads.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use tokio::task::AbortHandle;

use super::client::{ConnPool, Connector};
use crate::config::{Balance, KeyPath, Problem, UpstreamConfig};
use crate::worker::PerWorker;

/// What active health checking last concluded about a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveHealth {
    /// No check has finished yet.
    Unknown = 0,
    Healthy = 1,
    Unhealthy = 2,
}

/// One address of an upstream.
#[derive(Debug)]
pub struct Target {
    /// `http://host:port`, as shown in logs and metrics.
    pub label: Arc<str>,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// Requests sent to this target whose response body is not finished.
    pub in_flight: Arc<AtomicUsize>,
    /// Idle connections to this target, one pool per worker.
    pub(crate) pools: PerWorker<Arc<ConnPool>>,
    active: AtomicU8,
    /// Consecutive connect failures or 5xx answers.
    passive_failures: AtomicU64,
    /// Milliseconds since the upstream's epoch until which the target is
    /// ejected (0: not ejected).
    ejected_until: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub ejections: AtomicU64,
}

impl Target {
    pub fn active_health(&self) -> ActiveHealth {
        match self.active.load(Ordering::Relaxed) {
            1 => ActiveHealth::Healthy,
            2 => ActiveHealth::Unhealthy,
            _ => ActiveHealth::Unknown,
        }
    }

    pub(crate) fn set_active_health(&self, h: ActiveHealth) {
        self.active.store(h as u8, Ordering::Relaxed);
    }
}

/// Point-in-time view of a target, for metrics.
pub struct TargetSnapshot {
    pub label: Arc<str>,
    pub usable: bool,
    pub in_flight: usize,
    pub requests: u64,
    pub failures: u64,
    pub ejections: u64,
    pub idle_connections: usize,
}

/// A pool of targets serving one service. Cheap to clone.
#[derive(Clone)]
pub struct Upstream {
    pub(crate) inner: Arc<UpstreamInner>,
}

pub(crate) struct UpstreamInner {
    pub name: Arc<str>,
    pub config: UpstreamConfig,
    pub targets: Vec<Target>,
    pub connector: Connector,
    next: AtomicUsize,
    epoch: Instant,
    background: Mutex<Vec<AbortHandle>>,
}

impl Drop for UpstreamInner {
    fn drop(&mut self) {
        for task in self.background.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let targets: Vec<&str> = self.inner.targets.iter().map(|t| &*t.label).collect();
        f.debug_struct("Upstream").field("name", &self.inner.name).field("targets", &targets).finish()
    }
}

impl Upstream {
    /// Builds the upstream and its client. `key` locates its config for
    /// problems (an unreadable CA file).
    pub fn new(name: &str, config: &UpstreamConfig, key: &KeyPath, workers: usize) -> Result<Self, Problem> {
        let tls = crate::tls::client_config(config.tls_ca.as_deref(), &key.key("tls").key("ca"))?;
        let connector = Connector::new(config.protocol, tls, config.connect_timeout, config.pool.clone());
        let has_checks = config.health_check.is_some();
        let targets = config
            .targets
            .iter()
            .map(|t| {
                let authority: Authority = t
                    .authority()
                    .parse()
                    .map_err(|e| Problem::at_value(key.key("targets"), format!("bad target `{t}`: {e}")))?;
                Ok(Target {
                    label: t.to_string().into(),
                    scheme: if t.tls { Scheme::HTTPS } else { Scheme::HTTP },
                    authority,
                    in_flight: Arc::new(AtomicUsize::new(0)),
                    pools: PerWorker::new(workers),
                    active: AtomicU8::new(if has_checks {
                        ActiveHealth::Unknown
                    } else {
                        ActiveHealth::Healthy
                    } as u8),
                    passive_failures: AtomicU64::new(0),
                    ejected_until: AtomicU64::new(0),
                    requests: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    ejections: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, Problem>>()?;
        Ok(Self {
            inner: Arc::new(UpstreamInner {
                name: name.into(),
                config: config.clone(),
                targets,
                connector,
                next: AtomicUsize::new(fastrand::usize(..)),
                epoch: Instant::now(),
                background: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.inner.config
    }

    pub fn targets(&self) -> &[Target] {
        &self.inner.targets
    }

    /// Starts the background work: active health checks (if configured) and
    /// the eviction of expired idle connections. Must run inside a tokio
    /// runtime; it stops when the last clone of `self` is dropped.
    pub fn start_background_tasks(&self) {
        let mut tasks = self.inner.background.lock().unwrap_or_else(|e| e.into_inner());
        if !tasks.is_empty() {
            return;
        }
        if let Some(check) = self.inner.config.health_check.clone() {
            for index in 0..self.inner.targets.len() {
                let weak = Arc::downgrade(&self.inner);
                let handle = tokio::spawn(super::health::run(weak, index, check.clone()));
                tasks.push(handle.abort_handle());
            }
        }
        let weak = Arc::downgrade(&self.inner);
        let every = (self.inner.connector.idle_timeout() / 2).max(Duration::from_millis(100));
        let reaper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(up) = weak.upgrade() else { return };
                for t in &up.targets {
                    for pool in t.pools.iter() {
                        pool.evict(up.connector.idle_timeout());
                    }
                }
            }
        });
        tasks.push(reaper.abort_handle());
    }

    /// Whether every target has a known health (no check still pending).
    pub fn health_known(&self) -> bool {
        self.inner.targets.iter().all(|t| t.active_health() != ActiveHealth::Unknown)
    }

    pub fn snapshot(&self) -> Vec<TargetSnapshot> {
        let now = self.inner.now();
        self.inner
            .targets
            .iter()
            .map(|t| TargetSnapshot {
                label: t.label.clone(),
                usable: self.inner.usable(t, &now),
                in_flight: t.in_flight.load(Ordering::Relaxed),
                requests: t.requests.load(Ordering::Relaxed),
                failures: t.failures.load(Ordering::Relaxed),
                ejections: t.ejections.load(Ordering::Relaxed),
                idle_connections: t.pools.iter().map(|p| p.idle_count()).sum(),
            })
            .collect()
    }
}

impl UpstreamInner {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The clock for one decision, read only if a target is ejected.
    fn now(&self) -> LazyNow<'_> {
        LazyNow { inner: self, ms: std::cell::OnceCell::new() }
    }

    /// Each target's index and whether it can take requests now.
    pub fn snapshot_usable(&self) -> impl Iterator<Item = (usize, bool)> + '_ {
        let now = self.now();
        self.targets.iter().enumerate().map(move |(i, t)| (i, self.usable(t, &now)))
    }

    fn usable(&self, t: &Target, now: &LazyNow<'_>) -> bool {
        if t.active_health() == ActiveHealth::Unhealthy {
            return false;
        }
        // Never ejected (the common case) needs no clock.
        let until = t.ejected_until.load(Ordering::Relaxed);
        until == 0 || until <= now.ms()
    }

    /// Picks a usable target not in `exclude`.
    pub fn pick(&self, exclude: &[usize]) -> Option<usize> {
        let now = self.now();
        let n = self.targets.len();
        let ok = |i: usize| !exclude.contains(&i) && self.usable(&self.targets[i], &now);
        match self.config.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
            }
            Balance::LeastRequest => {
                // Power of two choices: two distinct random candidates, the
                // one with fewer requests in flight wins.
                let candidates = (0..n).filter(|&i| ok(i)).count();
                let nth = |k: usize| (0..n).filter(|&i| ok(i)).nth(k);
                match candidates {
                    0 => None,
                    1 => nth(0),
                    c => {
                        let a = fastrand::usize(..c);
                        let mut b = fastrand::usize(..c - 1);
                        if b >= a {
                            b += 1;
                        }
                        let (a, b) = (nth(a)?, nth(b)?);
                        let load = |i: usize| self.targets[i].in_flight.load(Ordering::Relaxed);
                        Some(if load(b) < load(a) { b } else { a })
                    }
                }
            }
        }
    }

    /// Records a connect failure or a 5xx answer from target `i`.
    pub fn record_failure(&self, i: usize) {
        let t = &self.targets[i];
        t.failures.fetch_add(1, Ordering::Relaxed);
        let limit = u64::from(self.config.passive_health.consecutive_failures);
        if limit == 0 {
            return;
        }
        let streak = t.passive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak >= limit {
            t.passive_failures.store(0, Ordering::Relaxed);
            let until = self.now_ms() + self.config.passive_health.eject_for.as_millis() as u64;
            t.ejected_until.store(until, Ordering::Relaxed);
            t.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                upstream = %self.name,
                target = %t.label,
                failures = streak,
                eject_for = ?self.config.passive_health.eject_for,
                "target ejected after consecutive failures"
            );
        }
    }

    /// Records a non-5xx answer from target `i`.
    pub fn record_success(&self, i: usize) {
        let t = &self.targets[i];
        if t.passive_failures.load(Ordering::Relaxed) != 0 {
            t.passive_failures.store(0, Ordering::Relaxed);
        }
    }
}

/// Milliseconds since the upstream's epoch, read at most once.
struct LazyNow<'a> {
    inner: &'a UpstreamInner,
    ms: std::cell::OnceCell<u64>,
}

impl LazyNow<'_> {
    fn ms(&self) -> u64 {
        *self.ms.get_or_init(|| self.inner.now_ms())
    }
}

/// Counts one request in flight on a target until dropped (at the end of
/// its response body), for least-request balancing and metrics.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn upstream(extra: &str, targets: usize) -> Upstream {
        let list: Vec<String> = (0..targets).map(|i| format!("\"http://127.0.0.1:{}\"", 1000 + i)).collect();
        let src = format!("upstreams:\n  u:\n    targets: [{}]\n{extra}", list.join(", "));
        let c = Config::parse(Path::new("t.yaml"), &src, &|_| None).unwrap();
        Upstream::new("u", &c.upstreams["u"], &KeyPath::root(), 1).unwrap()
    }

    #[test]
    fn round_robin_spreads_evenly_and_skips_ejected_targets() {
        let u = upstream("    passive_health: { consecutive_failures: 2, eject_for: 1h }\n", 3);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[u.inner.pick(&[]).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        u.inner.record_failure(1);
        assert!(u.snapshot()[1].usable, "one failure is below the threshold");
        u.inner.record_failure(1);
        assert!(!u.snapshot()[1].usable);
        for _ in 0..30 {
            assert_ne!(u.inner.pick(&[]), Some(1));
        }
        assert_eq!(u.inner.pick(&[0, 2]), None);
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let u = upstream("    passive_health: { consecutive_failures: 2 }\n", 1);
        u.inner.record_failure(0);
        u.inner.record_success(0);
        u.inner.record_failure(0);
        assert!(u.snapshot()[0].usable);
    }

    #[test]
    fn least_request_prefers_the_less_loaded_of_two() {
        let u = upstream("    balance: least_request\n", 2);
        u.inner.targets[0].in_flight.store(10, Ordering::Relaxed);
        for _ in 0..50 {
            assert_eq!(u.inner.pick(&[]), Some(1));
        }
        assert_eq!(u.inner.pick(&[1]), Some(0));
    }

    #[test]
    fn unhealthy_targets_are_skipped_and_unknown_ones_are_used() {
        let u = upstream("    health_check: { path: /h }\n", 2);
        assert!(!u.health_known());
        u.inner.targets[0].set_active_health(ActiveHealth::Unhealthy);
        assert_eq!(u.inner.pick(&[]), Some(1));
        u.inner.targets[1].set_active_health(ActiveHealth::Healthy);
        assert!(u.health_known());
    }
}
