//! Builds each route's stack from the configuration, once per plan.
//!
//! Order, outermost first (DESIGN.md §1): timeout → client throttle
//! (`client_ip` / `route` keys) → WAF → auth → consumer throttle (`header:` /
//! `jwt:` keys) → target. A route gets only the layers it uses: [`build`]
//! composes the concrete stack for the layers present (each combination is
//! its own type), so an unprotected route runs exactly its timeout and its
//! target.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::proxy::{ProxyRoute, ProxyTarget};
use super::publish::{Destination, PublishTarget, Publisher};
use super::respond::FixedAnswer;
use super::topic::TopicPublisher;
use super::RouteStack;
use crate::config::{Config, LimitConfig, RouteConfig, RouteTarget};
use crate::exchange::ExchangeService;
use crate::middleware::auth::{AuthLayer, Provider, Rules};
use crate::middleware::metrics::{EvictionLabel, HttpMetrics, LimitLabel};
use crate::middleware::throttle::buckets::{Buckets, MemoryBuckets, StoreMetrics};
use crate::middleware::throttle::{Limit, ThrottleLayer};
use crate::middleware::timeout::{TimeoutLayer, Waiting};
use crate::middleware::waf::{Firewall, Policy, RuleSet, WafLayer};
use crate::notify::Notifier;
use crate::proxy::Upstream;
use crate::queue::storage::sqlite::SqliteStorage;
use crate::queue::QueueEngine;

/// Default `timeout` of routes that publish into a queue.
pub const QUEUE_ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a route ends in.
pub enum Target {
    Proxy(ProxyTarget),
    Publish(PublishTarget<SqliteStorage>),
    Respond(FixedAnswer),
}

/// The layers a route uses; `None` for the ones it does not.
#[derive(Default)]
pub struct RouteLayers {
    pub timeout: Option<TimeoutLayer>,
    pub client_throttle: Option<ThrottleLayer>,
    pub waf: Option<WafLayer>,
    pub auth: Option<AuthLayer>,
    pub consumer_throttle: Option<ThrottleLayer>,
}

/// The bucket stores of a plan, by route and limit name: a reload keeps
/// those whose limit did not change, so clients do not get a fresh burst.
pub type BucketStores = BTreeMap<(String, String), (LimitConfig, Arc<dyn Buckets>)>;

/// What a plan builds routes from, besides the config.
pub struct StackParts<'a> {
    pub upstreams: &'a BTreeMap<String, Upstream>,
    pub providers: &'a BTreeMap<String, Arc<Provider>>,
    /// The WAF's compiled rules, if the config turns it on.
    pub rule_set: Option<&'a Arc<RuleSet>>,
    pub queues: Option<&'a Arc<QueueEngine<SqliteStorage>>>,
    pub notifier: Option<&'a Arc<Notifier<SqliteStorage>>>,
    pub metrics: &'a HttpMetrics,
    /// Stores of the running plan (reused when unchanged).
    pub previous_buckets: Option<&'a BucketStores>,
    /// Stores of the plan being built.
    pub buckets: BucketStores,
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl StackParts<'_> {
    /// The stack of `r`, or `None` when its upstream could not be built
    /// (already reported).
    pub fn route(&mut self, config: &Config, r: &RouteConfig) -> Option<RouteStack> {
        let (target, timeout) = self.target(r)?;
        let route = Arc::new(r.name.clone());
        let (client, consumer): (Vec<&LimitConfig>, Vec<&LimitConfig>) =
            config.limits_of(r).iter().partition(|l| !l.key.per_consumer());
        let client = self.throttle(&route, client);
        let consumer = self.throttle(&route, consumer);
        // A provider that failed to build was reported with its problem.
        let auth = match &r.auth {
            Some(a) => Some(AuthLayer::new(self.providers.get(&a.provider)?.clone(), Rules::new(a))),
            None => None,
        };
        let waf = self.waf(config, r, &route);
        let layers = RouteLayers { timeout, client_throttle: client, waf, auth, consumer_throttle: consumer };
        Some(build(target, layers))
    }

    fn target(&self, r: &RouteConfig) -> Option<(Target, Option<TimeoutLayer>)> {
        let name: Arc<str> = r.name.as_str().into();
        Some(match &r.target {
            RouteTarget::Respond(f) => {
                let timeout = r.timeout.map(|t| TimeoutLayer::new(t, Waiting::Route(name)));
                (Target::Respond(FixedAnswer::new(f)), timeout)
            }
            RouteTarget::Upstream(upstream) => {
                // A missing upstream was reported by validation or building.
                let up = self.upstreams.get(upstream)?;
                let after = r.timeout.unwrap_or(up.config().timeout);
                let timeout = TimeoutLayer::new(after, Waiting::Upstream(up.name().clone()));
                let target = ProxyTarget::new(ProxyRoute {
                    upstream: up.clone(),
                    strip_prefix: r.strip_prefix.clone(),
                    max_body: r.max_body,
                    upgrades: r.upgrades.clone(),
                });
                (Target::Proxy(target), Some(timeout))
            }
            RouteTarget::Queue { queue, message } => {
                let publisher = self.queues.map(|engine| {
                    Arc::new(Destination::Queue(Publisher {
                        engine: engine.clone(),
                        queue: queue.clone(),
                        mapping: message.clone(),
                    }))
                });
                let after = r.timeout.unwrap_or(QUEUE_ROUTE_TIMEOUT);
                (
                    Target::Publish(PublishTarget(publisher)),
                    Some(TimeoutLayer::new(after, Waiting::Route(name))),
                )
            }
            RouteTarget::Topic { topic, message } => {
                let publisher = self.notifier.map(|notifier| {
                    Arc::new(Destination::Topic(TopicPublisher {
                        notifier: notifier.clone(),
                        topic: topic.clone(),
                        mapping: message.clone(),
                    }))
                });
                let after = r.timeout.unwrap_or(QUEUE_ROUTE_TIMEOUT);
                (
                    Target::Publish(PublishTarget(publisher)),
                    Some(TimeoutLayer::new(after, Waiting::Route(name))),
                )
            }
        })
    }

    /// The route's firewall, unless it has `waf: off` (or there is no
    /// `waf` section), or its tuning leaves no rule on.
    fn waf(&self, config: &Config, r: &RouteConfig, route: &Arc<String>) -> Option<WafLayer> {
        let (top, tuning) = config.waf_of(r)?;
        let policy = Policy::new(self.rule_set?.clone(), top, tuning, config.workers);
        if !policy.has_rules() {
            return None;
        }
        Some(WafLayer::new(Firewall {
            policy,
            route: route.clone(),
            body_limit: top.body_limit,
            over_limit: top.body_over_limit,
            metrics: self.metrics.waf.clone(),
        }))
    }

    fn throttle(&mut self, route: &Arc<String>, limits: Vec<&LimitConfig>) -> Option<ThrottleLayer> {
        let list = limits.into_iter().map(|l| self.limit(route, l)).collect();
        ThrottleLayer::new(list, self.trusted_proxies.clone())
    }

    fn limit(&mut self, route: &Arc<String>, l: &LimitConfig) -> Limit {
        let id = (route.to_string(), l.name.clone());
        let reused = self.previous_buckets.and_then(|p| p.get(&id)).filter(|(c, _)| c.same_bucket(l));
        let buckets = match reused {
            Some((_, b)) => b.clone(),
            None => {
                let t = &self.metrics.throttle;
                let label = LimitLabel { route: route.clone(), limit: l.name.clone() };
                let eviction = |reason| EvictionLabel { route: route.clone(), limit: l.name.clone(), reason };
                let metrics = StoreMetrics {
                    keys: t.keys.get_or_create_owned(&label),
                    evicted_idle: t.evictions.get_or_create_owned(&eviction("idle")),
                    evicted_capacity: t.evictions.get_or_create_owned(&eviction("capacity")),
                };
                Arc::new(MemoryBuckets::new(l.rate.count, l.rate.per, l.burst, l.max_keys, metrics))
                    as Arc<dyn Buckets>
            }
        };
        self.buckets.insert(id, (l.clone(), buckets.clone()));
        let throttled = self
            .metrics
            .throttle
            .throttled
            .get_or_create_owned(&LimitLabel { route: route.clone(), limit: l.name.clone() });
        Limit::new(&l.name, l.key.clone(), l.rate.count, l.rate.per, buckets, throttled)
    }
}

/// Composes `target` with the layers present. Each step below adds one
/// optional layer and hands on a concrete service type; the stack is boxed
/// once, at the end.
pub fn build(target: Target, layers: RouteLayers) -> RouteStack {
    match target {
        Target::Proxy(t) => with_consumer_throttle(t, layers),
        Target::Publish(t) => with_consumer_throttle(t, layers),
        Target::Respond(t) => with_consumer_throttle(t, layers),
    }
}

/// The services a stack is made of (shared by the workers, hence `Sync`).
trait RouteService: ExchangeService + Sync {}

impl<S: ExchangeService + Sync> RouteService for S {}

fn with_consumer_throttle<S: RouteService>(svc: S, mut layers: RouteLayers) -> RouteStack {
    match layers.consumer_throttle.take() {
        Some(l) => with_auth(l.layer(svc), layers),
        None => with_auth(svc, layers),
    }
}

fn with_auth<S: RouteService>(svc: S, mut layers: RouteLayers) -> RouteStack {
    match layers.auth.take() {
        Some(l) => with_waf(l.layer(svc), layers),
        None => with_waf(svc, layers),
    }
}

fn with_waf<S: RouteService>(svc: S, mut layers: RouteLayers) -> RouteStack {
    match layers.waf.take() {
        Some(l) => with_client_throttle(l.layer(svc), layers),
        None => with_client_throttle(svc, layers),
    }
}

fn with_client_throttle<S: RouteService>(svc: S, mut layers: RouteLayers) -> RouteStack {
    match layers.client_throttle.take() {
        Some(l) => with_timeout(l.layer(svc), layers),
        None => with_timeout(svc, layers),
    }
}

fn with_timeout<S: RouteService>(svc: S, layers: RouteLayers) -> RouteStack {
    match layers.timeout {
        Some(l) => RouteStack::new(l.layer(svc)),
        None => RouteStack::new(svc),
    }
}
