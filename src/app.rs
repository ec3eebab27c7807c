//! Wiring: the only place that turns a [`Config`] into running parts.
//!
//! - [`plan`] builds everything a config describes without binding sockets
//!   (certificates, upstream clients, the route table). `gatehouse check`
//!   and reloads use it to find every problem before anything changes.
//! - [`start`] binds the listeners and serves.
//! - [`Gatehouse::reload`] swaps in a new plan atomically; in-flight
//!   requests and open connections keep going.
//! - [`Gatehouse::shutdown`] drains.
//!
//! The gateway's tower stack, outermost first: request id → access log and
//! metrics → rescue (errors become responses) → route match → dispatch
//! (the route's own stack, see `dispatch::stack`).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tower::{Service, ServiceBuilder};

use crate::admin::{
    AdminService, ListenerCollector, ProviderSet, QueueCollector, Readiness, TopicCollector,
    UpstreamCollector, UpstreamSet,
};
use crate::aws::{AwsService, Credentials};
use crate::body::ClientBody;
use crate::config::waf as waf_config;
use crate::config::{
    AlarmMetric, Config, ConfigError, ConnectionBalance, Endpoint, EscapedSlashes, KeyPath, Problem,
    RouteTarget, RouteWaf, SubscriptionConfig,
};
use crate::dispatch::deliver::HttpDeliverer;
use crate::dispatch::stack::{BucketStores, StackParts};
use crate::dispatch::{Dispatch, RouteHandler};
use crate::middleware::access_log::AccessLogLayer;
use crate::middleware::auth::cache::CacheMetrics;
use crate::middleware::auth::provider::{self, Provider};
use crate::middleware::metrics::{HttpMetrics, ProviderLabel};
use crate::middleware::request_id::{RandomRequestId, RequestIdLayer};
use crate::middleware::waf::{Policy, RuleSet};
use crate::notify::alarms::{AlarmSpec, Measure};
use crate::notify::topic::Protocol;
use crate::notify::{DeclaredSubscription, DeclaredTopic, Notifier, Urls};
use crate::proxy::Upstream;
use crate::queue::storage::sqlite::{SqliteOptions, SqliteStorage};
use crate::queue::storage::StorageError;
use crate::queue::{Account, DeclaredQueue, QueueEngine};
use crate::routing::{RouteLayer, RouteSpec, RouteTable, SharedTable};
use crate::server::rescue::RescueLayer;
use crate::server::{self, ConnInfo, Listener, ListenerSpec, Phase};
use crate::tls::ReloadableServerConfig;

/// The queue service as gatehouse runs it: the engine on SQLite.
pub type Queues = QueueEngine<SqliteStorage>;
/// The topic service on those queues.
pub type Topics = Notifier<SqliteStorage>;

/// The queue and topic engines, open when a config uses queues.
pub struct Engines {
    pub queues: Arc<Queues>,
    pub topics: Arc<Topics>,
}

/// Everything a config describes, built and checked, not yet serving.
pub struct Plan {
    pub config: Arc<Config>,
    /// One per gateway listener, in config order.
    pub tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    pub upstreams: BTreeMap<String, Upstream>,
    /// The throttle's bucket stores, by route and limit.
    pub buckets: BucketStores,
    /// JWT providers by name.
    pub providers: BTreeMap<String, Arc<Provider>>,
    pub table: RouteTable<Arc<RouteHandler>>,
}

/// What a reload carries over from the running plan when its
/// configuration did not change: upstreams (health, pooled connections),
/// bucket stores (clients' remaining allowance) and JWT providers (keys,
/// verified tokens).
#[derive(Default)]
pub struct Reusable {
    pub upstreams: BTreeMap<String, Upstream>,
    pub buckets: BucketStores,
    pub providers: BTreeMap<String, Arc<Provider>>,
}

impl Plan {
    fn reusable(&self) -> Reusable {
        Reusable {
            upstreams: self.upstreams.clone(),
            buckets: self.buckets.clone(),
            providers: self.providers.clone(),
        }
    }

    /// Starts what runs beside the plan: health checks, key refreshes.
    fn start_background_tasks(&self) {
        for u in self.upstreams.values() {
            u.start_background_tasks();
        }
        for p in self.providers.values() {
            p.start_refresh();
        }
    }
}

/// Builds a [`Plan`]. Upstreams and bucket stores whose configuration
/// equals one in `previous` are reused (see [`Reusable`]).
pub fn plan(
    config: Config,
    previous: Option<&Reusable>,
    metrics: &HttpMetrics,
    engines: Option<&Engines>,
) -> Result<Plan, ConfigError> {
    let mut problems: Vec<Problem> = Vec::new();
    let tls = plan_tls(&config, &mut problems);
    let upstreams = plan_upstreams(&config, previous, &mut problems);
    let providers = plan_providers(&config, previous, metrics, &mut problems);
    let rule_set = plan_waf(&config, &mut problems);
    let mut parts = StackParts {
        upstreams: &upstreams,
        providers: &providers,
        rule_set: rule_set.as_ref(),
        queues: engines.map(|e| &e.queues),
        notifier: engines.map(|e| &e.topics),
        metrics,
        previous_buckets: previous.map(|p| &p.buckets),
        buckets: BucketStores::new(),
        trusted_proxies: config.trusted_proxies.clone().into(),
    };
    let mut routes = Vec::new();
    for r in &config.routes {
        let Some(stack) = parts.route(&config, r) else { continue };
        let spec = RouteSpec {
            host: r.host.clone(),
            path: r.path.clone(),
            methods: r.methods.iter().filter_map(|m| m.parse().ok()).collect(),
        };
        let handler = RouteHandler { stats: metrics.route(&Arc::new(r.name.clone())), stack };
        routes.push((spec, Arc::new(handler)));
    }
    let buckets = parts.buckets;
    if !problems.is_empty() {
        return Err(config.error(problems));
    }
    Ok(Plan { config: Arc::new(config), tls, upstreams, buckets, providers, table: RouteTable::new(routes) })
}

/// The rustls configuration of each gateway listener.
fn plan_tls(config: &Config, problems: &mut Vec<Problem>) -> Vec<Option<Arc<rustls::ServerConfig>>> {
    let mut tls = Vec::new();
    for l in &config.listen.gateway {
        tls.push(match &l.tls {
            None => None,
            Some(t) => match crate::tls::server_config(t) {
                Ok(c) => Some(c),
                Err(p) => {
                    problems.extend(p);
                    None
                }
            },
        });
    }
    tls
}

/// Upstreams by name; unchanged ones are taken from `previous`.
fn plan_upstreams(
    config: &Config,
    previous: Option<&Reusable>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Upstream> {
    let mut upstreams = BTreeMap::new();
    for (name, u) in &config.upstreams {
        if let Some(prev) = previous.and_then(|p| p.upstreams.get(name)).filter(|p| p.config() == u) {
            upstreams.insert(name.clone(), prev.clone());
            continue;
        }
        match Upstream::new(name, u, &KeyPath::root().key("upstreams").key(name), config.workers) {
            Ok(up) => {
                upstreams.insert(name.clone(), up);
            }
            Err(p) => problems.push(p),
        }
    }
    upstreams
}

/// JWT providers by name; unchanged ones are taken from `previous`.
fn plan_providers(
    config: &Config,
    previous: Option<&Reusable>,
    metrics: &HttpMetrics,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Arc<Provider>> {
    let auth = &metrics.auth;
    let provider_metrics = |name: &str| {
        let label = ProviderLabel { provider: name.to_owned() };
        CacheMetrics {
            hits: auth.cache_hits.get_or_create_owned(&label),
            misses: auth.cache_misses.get_or_create_owned(&label),
            entries: auth.cache_entries.get_or_create_owned(&label),
        }
    };
    provider::build_all(&config.auth, previous.map(|p| &p.providers), provider_metrics, problems)
}

/// The WAF's rules, read from `waf.rules` and compiled, if the config has
/// a `waf` section. Every route's exclusions must name rules or families
/// the set has.
fn plan_waf(config: &Config, problems: &mut Vec<Problem>) -> Option<Arc<RuleSet>> {
    let top = config.waf.as_ref()?;
    let specs = match waf_config::load_rules(&top.rules) {
        Ok(specs) => specs,
        Err(found) => {
            problems.extend(found);
            return None;
        }
    };
    let set = match RuleSet::compile(specs) {
        Ok(set) => set,
        Err(e) => {
            problems.push(Problem::at_value(top.at.key("rules"), e.to_string()));
            return None;
        }
    };
    for r in &config.routes {
        let RouteWaf::Tuned(t) = &r.waf else { continue };
        let refs = t.exclude.iter().enumerate().map(|(i, e)| (e, t.at.key("exclude").index(i)));
        let arg_refs = t
            .exclude_args
            .iter()
            .enumerate()
            .map(|(i, e)| (&e.rule, t.at.key("exclude_args").index(i).key("rule")));
        for (rule, at) in refs.chain(arg_refs) {
            if !Policy::knows(&set, rule) {
                let what = match rule {
                    waf_config::RuleRef::Id(id) => format!("no WAF rule has the id {id}"),
                    waf_config::RuleRef::Family(f) => format!("no WAF rule is of the family `{f}`"),
                };
                problems.push(Problem::at_value(
                    at,
                    format!("{what} (rules are read from {})", top.rules.display()),
                ));
            }
        }
    }
    Some(Arc::new(set))
}

/// The queues a config declares, as the engine takes them: dead-letter
/// queues before the queues that use them.
pub fn declared_queues(config: &Config) -> Vec<DeclaredQueue> {
    fn visit<'a>(name: &'a String, config: &'a Config, ordered: &mut Vec<&'a String>, depth: usize) {
        if ordered.contains(&name) || depth > config.queues.len() {
            return;
        }
        if let Some(dl) = config.queues.get(name).and_then(|q| q.dead_letter.as_ref()) {
            if let Some((target, _)) = config.queues.get_key_value(&dl.queue) {
                visit(target, config, ordered, depth + 1);
            }
        }
        if !ordered.contains(&name) {
            ordered.push(name);
        }
    }
    let arn_prefix =
        Account { id: config.aws.account_id.clone(), region: config.aws.region.clone() }.arn_prefix();
    let mut ordered: Vec<&String> = Vec::new();
    for name in config.queues.keys() {
        visit(name, config, &mut ordered, 0);
    }
    ordered
        .into_iter()
        .map(|name| {
            let q = &config.queues[name];
            DeclaredQueue {
                name: name.clone(),
                fifo: q.fifo,
                attributes: q.sqs_attributes(&arn_prefix),
                tags: q.tags.clone(),
            }
        })
        .collect()
}

/// Whether a config uses queues at all (else no storage is opened).
fn uses_queues(config: &Config) -> bool {
    config.listen.aws.is_some()
        || !config.queues.is_empty()
        || !config.topics.is_empty()
        || config
            .routes
            .iter()
            .any(|r| matches!(r.target, RouteTarget::Queue { .. } | RouteTarget::Topic { .. }))
}

/// Opens the topics kept beside the queues; `aws` is where the AWS
/// listener was bound (the URLs notifications carry point there).
async fn open_topics(
    config: &Config,
    queues: Arc<Queues>,
    aws: Option<SocketAddr>,
) -> Result<Engines, StartError> {
    let fail = |msg: String| {
        StartError::Config(config.error(vec![Problem::at_value(KeyPath::root().key("storage"), msg)]))
    };
    let base = match aws {
        Some(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        Some(a) => format!("http://{a}"),
        None => "http://localhost".to_owned(),
    };
    let deliver = HttpDeliverer::new(config.workers).map_err(fail)?;
    let dir = &config.storage.path;
    let topics = Notifier::open(queues.clone(), dir, Urls { base }, Some(Arc::new(deliver)))
        .await
        .map_err(|e| fail(format!("cannot open the topics in `{}`: {e}", dir.display())))?;
    declare_topics(&topics, config).await.map_err(StartError::Config)?;
    Ok(Engines { queues, topics })
}

/// The topics a config declares, as the topic engine takes them.
pub fn declared_topics(config: &Config) -> Vec<DeclaredTopic> {
    config
        .topics
        .iter()
        .map(|(name, t)| {
            let mut attributes = BTreeMap::new();
            if let Some(d) = &t.display_name {
                attributes.insert("DisplayName".to_owned(), d.clone());
            }
            if t.fifo {
                attributes.insert(
                    "ContentBasedDeduplication".to_owned(),
                    t.content_based_deduplication.to_string(),
                );
            }
            let subscriptions = t.subscriptions.iter().map(|s| declared_subscription(config, s)).collect();
            DeclaredTopic { name: name.clone(), attributes, subscriptions }
        })
        .collect()
}

fn declared_subscription(config: &Config, s: &SubscriptionConfig) -> DeclaredSubscription {
    let (protocol, endpoint) = match &s.endpoint {
        Endpoint::Queue(q) => (Protocol::Sqs, q.clone()),
        Endpoint::Url(u) if u.starts_with("https://") => (Protocol::Https, u.clone()),
        Endpoint::Url(u) => (Protocol::Http, u.clone()),
    };
    let mut attributes = BTreeMap::new();
    if s.raw {
        attributes.insert("RawMessageDelivery".to_owned(), "true".to_owned());
    }
    if let Some(f) = &s.filter {
        attributes.insert("FilterPolicy".to_owned(), f.clone());
        let scope = if s.filter_body { "MessageBody" } else { "MessageAttributes" };
        attributes.insert("FilterPolicyScope".to_owned(), scope.to_owned());
    }
    if let Some(dl) = &s.dead_letter {
        let arn = format!("arn:aws:sqs:{}:{}:{dl}", config.aws.region, config.aws.account_id);
        attributes.insert(
            "RedrivePolicy".to_owned(),
            serde_json::json!({ "deadLetterTargetArn": arn }).to_string(),
        );
    }
    DeclaredSubscription { protocol, endpoint, attributes, confirmed: s.confirmed }
}

/// Creates or updates the declared topics and subscriptions, and sets the
/// alarms; problems name the topic's key.
async fn declare_topics(topics: &Topics, config: &Config) -> Result<(), ConfigError> {
    topics.declare(&declared_topics(config)).await.map_err(|e| {
        let key = config
            .topics
            .values()
            .next()
            .map(|t| t.key.clone())
            .unwrap_or_else(|| KeyPath::root().key("topics"));
        config.error(vec![Problem::at_key(key, format!("cannot apply the topics: {e}"))])
    })?;
    topics.set_alarms(declared_alarms(config)).await;
    Ok(())
}

/// The alarms a config declares, as the topic engine watches them.
pub fn declared_alarms(config: &Config) -> Vec<AlarmSpec> {
    config
        .alarms
        .iter()
        .map(|(name, a)| AlarmSpec {
            name: name.clone(),
            queue: a.queue.clone(),
            measure: match a.metric {
                AlarmMetric::Visible => Measure::Visible,
                AlarmMetric::InFlight => Measure::InFlight,
                AlarmMetric::Delayed => Measure::Delayed,
                AlarmMetric::OldestAge => Measure::OldestAge,
                AlarmMetric::DeadLetter => Measure::DeadLetter,
            },
            above: a.above,
            threshold: a.threshold,
            hold: a.hold,
            notify: a.notify.clone(),
        })
        .collect()
}

/// Opens the store, loads the queues and applies the declared ones.
async fn open_queues(config: &Config) -> Result<Arc<Queues>, StartError> {
    let key = KeyPath::root().key("storage");
    let fail = |msg: String| StartError::Config(config.error(vec![Problem::at_value(key.clone(), msg)]));
    let opts = SqliteOptions {
        dir: config.storage.path.clone(),
        sync: match config.storage.sync {
            crate::config::SyncMode::Full => crate::queue::storage::sqlite::SyncMode::Full,
            crate::config::SyncMode::Normal => crate::queue::storage::sqlite::SyncMode::Normal,
        },
        cache_mib: u32::try_from(config.storage.cache >> 20).unwrap_or(u32::MAX),
        // SQLite's default (1000 pages) at our 16 KiB pages would be 16 MiB;
        // larger means fewer checkpoints, each off the commit path.
        checkpoint_mib: 64,
    };
    let storage = tokio::task::spawn_blocking(move || SqliteStorage::open(&opts))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| match e {
            locked @ StorageError::Locked(_) => StartError::Unavailable(
                config.error(vec![Problem::at_value(key.clone(), locked.to_string())]),
            ),
            e => fail(format!("cannot open the queue store in `{}`: {e}", config.storage.path.display())),
        })?;
    let account = Account { id: config.aws.account_id.clone(), region: config.aws.region.clone() };
    let engine = QueueEngine::start(storage, account).await.map_err(|e| fail(e.to_string()))?;
    declare(&engine, config).await.map_err(StartError::Config)?;
    Ok(engine)
}

/// Creates or updates the declared queues; problems name the queue's key.
async fn declare(engine: &Queues, config: &Config) -> Result<(), ConfigError> {
    for q in declared_queues(config) {
        if let Err(e) = engine.declare(std::slice::from_ref(&q)).await {
            let key = config.queues.get(&q.name).map(|c| c.key.clone()).unwrap_or_default();
            return Err(
                config.error(vec![Problem::at_key(key, format!("cannot apply queue `{}`: {e}", q.name))])
            );
        }
    }
    Ok(())
}

/// Why gatehouse could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (exit status 64).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Something the config names is held by another process: a listen
    /// address in use, the queue store's directory open in another
    /// gatehouse (exit status 69).
    #[error("{0}")]
    Unavailable(ConfigError),
}

/// A running gatehouse.
pub struct Gatehouse {
    /// Bound gateway addresses, in config order (useful with port 0).
    pub gateway_addrs: Vec<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// The SQS-compatible API, if enabled.
    pub aws_addr: Option<SocketAddr>,
    engines: Option<Engines>,
    config: ArcSwap<Config>,
    table: SharedTable<Arc<RouteHandler>>,
    upstreams: UpstreamSet,
    providers: ProviderSet,
    reusable: Mutex<Reusable>,
    tls: Vec<(SocketAddr, ReloadableServerConfig)>,
    metrics: HttpMetrics,
    phase: watch::Sender<Phase>,
    admin_phase: watch::Sender<Phase>,
    listeners: Vec<Arc<Listener>>,
    admin_listener: Option<Arc<Listener>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    draining: Arc<AtomicBool>,
}

/// Binds every listener, starts the data-plane workers (see
/// [`crate::worker`]) and serves. Background work (health checks, the admin
/// listener) runs on the caller's runtime.
pub async fn start(config: Config) -> Result<Gatehouse, StartError> {
    let workers = config.workers;
    let metrics = HttpMetrics::new();
    // Checked before the store is touched.
    drop(plan(config.clone(), None, &metrics, None)?);
    let queues = if uses_queues(&config) { Some(open_queues(&config).await?) } else { None };
    // Bind everything before serving, so a port in use is reported first.
    let Bound { gateway: bound, aws: aws_sockets, admin: admin_socket } = bind_all(&config, workers)?;
    let aws_bound = aws_sockets.first().and_then(|s| s.local_addr().ok());
    let engines = match queues {
        Some(q) => Some(open_topics(&config, q, aws_bound).await?),
        None => None,
    };
    let plan = plan(config, None, &metrics, engines.as_ref())?;
    let config = plan.config.clone();

    let mut registry = Registry::default();
    metrics.register(&mut registry);
    plan.start_background_tasks();
    let reusable = plan.reusable();
    let table: SharedTable<Arc<RouteHandler>> = Arc::new(ArcSwap::from_pointee(plan.table));
    let upstreams: UpstreamSet = Arc::new(ArcSwap::from_pointee(plan.upstreams.values().cloned().collect()));
    let providers: ProviderSet = Arc::new(ArcSwap::from_pointee(plan.providers.values().cloned().collect()));
    let (phase, phase_rx) = watch::channel(Phase::Running);
    let (admin_phase, admin_phase_rx) = watch::channel(Phase::Running);

    // The gateway's stack is built per connection (a few reference-count
    // increments), so the layers that need the peer hold it instead of each
    // request carrying it.
    let gateway = GatewayLayers {
        access_log: AccessLogLayer::new(metrics.clone(), config.log.access),
        routes: RouteLayer::new(table.clone()),
    };

    let mut serving = Serving::new(workers);
    let tls_handles = serving.gateways(&config, bound, plan.tls)?;
    let (aws_addr, aws_service) = match (&engines, aws_sockets.is_empty()) {
        (Some(engines), false) => {
            let (addr, service) = serving.aws(&config, engines, aws_sockets)?;
            (Some(addr), Some(service))
        }
        _ => (None, None),
    };
    let Serving { listeners, stats, sockets, .. } = serving;

    let topics = engines.as_ref().map(|e| &e.topics);
    let threads = spawn_workers(&config, sockets, &gateway, &aws_service, topics, &phase, &phase_rx).await?;

    let draining = Arc::new(AtomicBool::new(false));
    let readiness = Readiness {
        listening: Arc::new(AtomicBool::new(false)),
        draining: draining.clone(),
        upstreams: upstreams.clone(),
        providers: providers.clone(),
    };
    registry.register_collector(Box::new(ListenerCollector { listeners: stats }));
    registry.register_collector(Box::new(UpstreamCollector { upstreams: upstreams.clone() }));
    if let Some(engines) = &engines {
        registry.register_collector(Box::new(QueueCollector::new(engines.queues.clone())));
        registry.register_collector(Box::new(TopicCollector::new(engines.topics.clone())));
        spawn_count_refresher(&engines.queues);
    }
    let (admin_addr, admin_listener) = match admin_socket {
        Some(socket) => serve_admin(&config, socket, registry, readiness.clone(), admin_phase_rx)?,
        None => (None, None),
    };
    readiness.listening.store(true, Ordering::Relaxed);

    Ok(Gatehouse {
        gateway_addrs: config.listen.gateway.iter().zip(&listeners).map(|(_, l)| l.local_addr).collect(),
        admin_addr,
        aws_addr,
        engines,
        config: ArcSwap::new(config),
        table,
        upstreams,
        providers,
        reusable: Mutex::new(reusable),
        tls: tls_handles,
        metrics,
        phase,
        admin_phase,
        listeners,
        admin_listener,
        workers: threads,
        draining,
    })
}

/// The data-plane listeners as `start` builds them, and each worker's
/// sockets for them.
struct Serving {
    workers: usize,
    listeners: Vec<Arc<Listener>>,
    /// Per listener, its name in metrics and its counters.
    stats: Vec<(String, Arc<crate::server::ListenerStats>)>,
    /// `sockets[w]` holds worker w's socket for every listener it serves.
    sockets: Vec<WorkerSockets>,
}

impl Serving {
    fn new(workers: usize) -> Self {
        Serving {
            workers,
            listeners: Vec::new(),
            stats: Vec::new(),
            sockets: (0..workers).map(|_| Vec::new()).collect(),
        }
    }

    /// Adds `listener`, served by worker w on `socks[w]`.
    fn add(
        &mut self,
        name: String,
        listener: Arc<Listener>,
        socks: Vec<std::net::TcpListener>,
        served: Served,
    ) {
        self.stats.push((name, listener.stats.clone()));
        for (w, sock) in socks.into_iter().enumerate() {
            self.sockets[w].push((listener.clone(), sock, served));
        }
        self.listeners.push(listener);
    }

    /// The gateway listeners; the handles that reload their certificates.
    fn gateways(
        &mut self,
        config: &Config,
        bound: Vec<Vec<std::net::TcpListener>>,
        tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    ) -> Result<Vec<(SocketAddr, ReloadableServerConfig)>, StartError> {
        let mut handles = Vec::new();
        for ((l, socks), tls) in config.listen.gateway.iter().zip(bound).zip(tls) {
            let local = local_addr(config, &socks[0], l.key.key("bind"))?;
            let tls = tls.map(ReloadableServerConfig::new);
            if let Some(t) = &tls {
                handles.push((l.bind, t.clone()));
            }
            let spec = ListenerSpec {
                tls,
                limits: l.limits.clone(),
                workers: self.workers,
                balance: l.connection_balance,
            };
            let listener = Listener::new(local, spec);
            self.add(format!("gateway {local}"), listener, socks, Served::Gateway(l.escaped_slashes));
        }
        Ok(handles)
    }

    /// The AWS listener (SQS, SNS, STS) over `engines`.
    fn aws(
        &mut self,
        config: &Config,
        engines: &Engines,
        socks: Vec<std::net::TcpListener>,
    ) -> Result<(SocketAddr, AwsService<SqliteStorage>), StartError> {
        let local = local_addr(config, &socks[0], KeyPath::root().key("listen").key("aws"))?;
        let creds = config.listen.aws.as_ref().map(|a| a.credentials.clone()).unwrap_or_default();
        let creds = (!creds.is_empty()).then(|| Credentials::new(creds));
        let service = AwsService::new(engines.queues.clone(), Some(engines.topics.clone()), creds);
        let limits = crate::config::ConnectionLimits {
            body_timeout: config.listen.aws.as_ref().map(|a| a.body_timeout),
            ..Default::default()
        };
        let spec =
            ListenerSpec { tls: None, limits, workers: self.workers, balance: ConnectionBalance::Exact };
        self.add(format!("aws {local}"), Listener::new(local, spec), socks, Served::Aws);
        Ok((local, service))
    }
}

/// The address `socket` is bound to, or a start error at `key`.
fn local_addr(
    config: &Config,
    socket: &std::net::TcpListener,
    key: KeyPath,
) -> Result<SocketAddr, StartError> {
    socket
        .local_addr()
        .map_err(|e| StartError::Unavailable(config.error(vec![Problem::at_value(key, e.to_string())])))
}

/// Serves the admin listener (metrics, health) on the caller's runtime.
fn serve_admin(
    config: &Config,
    socket: std::net::TcpListener,
    registry: Registry,
    readiness: Readiness,
    phase: watch::Receiver<Phase>,
) -> Result<(Option<SocketAddr>, Option<Arc<Listener>>), StartError> {
    let addr = socket.local_addr().ok();
    let admin = AdminService::new(Arc::new(registry), readiness);
    let spec = ListenerSpec {
        tls: None,
        limits: Default::default(),
        workers: 0,
        balance: ConnectionBalance::Kernel,
    };
    let listener = Listener::new(addr.unwrap_or(([127, 0, 0, 1], 0).into()), spec);
    listener.serve(socket, move |_: ConnInfo| admin.clone(), phase).map_err(|e| {
        StartError::Unavailable(config.error(vec![Problem::at_value(KeyPath::root(), e.to_string())]))
    })?;
    Ok((addr, Some(listener)))
}

/// The sockets of every listener, bound before anything serves.
struct Bound {
    /// Per gateway listener, one socket per worker.
    gateway: Vec<Vec<std::net::TcpListener>>,
    aws: Vec<std::net::TcpListener>,
    admin: Option<std::net::TcpListener>,
}

/// Binds every listener; an address in use is reported with its key.
fn bind_all(config: &Config, workers: usize) -> Result<Bound, StartError> {
    let mut gateway = Vec::new();
    let mut problems = Vec::new();
    for l in &config.listen.gateway {
        match server::bind(l.bind, workers) {
            Ok(sockets) => gateway.push(sockets),
            Err(e) => {
                problems
                    .push(Problem::at_value(l.key.key("bind"), format!("cannot listen on {}: {e}", l.bind)));
                gateway.push(Vec::new());
            }
        }
    }
    let aws = match &config.listen.aws {
        None => Vec::new(),
        Some(a) => match server::bind(a.bind, workers) {
            Ok(s) => s,
            Err(e) => {
                let key = KeyPath::root().key("listen").key("aws").key("bind");
                problems.push(Problem::at_value(key, format!("cannot listen on {}: {e}", a.bind)));
                Vec::new()
            }
        },
    };
    let admin = match config.listen.admin {
        None => None,
        Some(addr) => match server::bind(addr, 1) {
            Ok(mut s) => s.pop(),
            Err(e) => {
                let key = KeyPath::root().key("listen").key("admin").key("bind");
                problems.push(Problem::at_value(key, format!("cannot listen on {addr}: {e}")));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(StartError::Unavailable(config.error(problems)));
    }
    Ok(Bound { gateway, aws, admin })
}

/// A worker's sockets: each with its listener and what it serves.
type WorkerSockets = Vec<(Arc<Listener>, std::net::TcpListener, Served)>;

/// Starts one data-plane thread per entry of `sockets` (see
/// [`crate::worker`]), each serving its sockets on its own runtime until
/// the phase says stop; returns once every worker serves.
async fn spawn_workers(
    config: &Config,
    sockets: Vec<WorkerSockets>,
    gateway: &GatewayLayers,
    aws_service: &Option<AwsService<SqliteStorage>>,
    topics: Option<&Arc<Topics>>,
    phase: &watch::Sender<Phase>,
    phase_rx: &watch::Receiver<Phase>,
) -> Result<Vec<std::thread::JoinHandle<()>>, StartError> {
    // The topic engine's HTTP(S) deliveries share the data-plane workers.
    let loops = crate::notify::outbox::LOOPS.div_ceil(sockets.len().max(1));
    let mut threads = Vec::new();
    let mut ready = Vec::new();
    for (index, worker_sockets) in sockets.into_iter().enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push(rx);
        let gateway = gateway.clone();
        let aws_service = aws_service.clone();
        let deliveries = topics.map(|t| t.deliveries(loops));
        let mut phase = phase_rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gatehouse-worker-{index}"))
            .spawn(move || {
                crate::worker::enter(index);
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(format!("worker {index}: cannot start a runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    if let Some(d) = deliveries {
                        tokio::spawn(d);
                    }
                    for (listener, socket, kind) in worker_sockets {
                        let served = match (kind, &aws_service) {
                            (Served::Aws, Some(aws)) => {
                                let aws = aws.clone();
                                listener.serve(
                                    socket,
                                    move |c: ConnInfo| aws.for_connection(&c),
                                    phase.clone(),
                                )
                            }
                            (Served::Gateway(slashes), _) => {
                                let gateway = gateway.clone();
                                let serve = move |c: ConnInfo| gateway.service(c, slashes);
                                listener.serve(socket, serve, phase.clone())
                            }
                            (Served::Aws, None) => continue,
                        };
                        if let Err(e) = served {
                            let _ = tx.send(Err(format!("worker {index}: {e}")));
                            return;
                        }
                    }
                    let _ = tx.send(Ok(()));
                    // Serve until told to stop; dropping the runtime then
                    // closes whatever is left.
                    let _ = phase.wait_for(|p| *p == Phase::Stopped).await;
                });
            })
            .map_err(|e| {
                StartError::Unavailable(config.error(vec![Problem::at_value(
                    KeyPath::root(),
                    format!("cannot start worker threads: {e}"),
                )]))
            })?;
        threads.push(thread);
    }
    for rx in ready {
        if let Ok(Err(e)) | Err(e) = rx.await.map_err(|e| e.to_string()) {
            let _ = phase.send(Phase::Stopped);
            return Err(StartError::Unavailable(config.error(vec![Problem::at_value(KeyPath::root(), e)])));
        }
    }
    Ok(threads)
}

impl Gatehouse {
    /// The configuration in use.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Applies a new configuration: everything is built and checked first;
    /// on any problem nothing changes. Listener addresses, connection limits
    /// and the number of workers need a restart; certificates, routes and
    /// upstreams change in place.
    pub async fn reload(&self, config: Config) -> Result<(), ConfigError> {
        // Everything is checked before anything changes.
        drop(plan(config.clone(), None, &HttpMetrics::new(), None)?);
        let running = self.config.load_full();
        if config.storage != running.storage || config.aws != running.aws {
            tracing::warn!("`storage` and `aws` changes take effect after a restart");
        }
        match &self.engines {
            Some(engines) => {
                declare(&engines.queues, &config).await?;
                declare_topics(&engines.topics, &config).await?;
            }
            None if uses_queues(&config) => {
                tracing::warn!("queues were not in use at start; enabling them takes a restart");
            }
            None => {}
        }
        let mut current = self.reusable.lock().unwrap_or_else(|e| e.into_inner());
        let plan = plan(config, Some(&current), &self.metrics, self.engines.as_ref())?;
        let restart_needed = plan.config.workers != running.workers
            || plan.config.listen.admin != running.listen.admin
            || plan.config.listen.gateway.len() != running.listen.gateway.len()
            || plan.config.listen.gateway.iter().zip(&running.listen.gateway).any(|(a, b)| {
                a.bind != b.bind
                    || a.limits != b.limits
                    || a.connection_balance != b.connection_balance
                    || a.tls.is_some() != b.tls.is_some()
            });
        if restart_needed {
            tracing::warn!(
                "listener addresses, limits, connection balance or workers changed; they take effect after a restart"
            );
        }
        for (l, tls) in plan.config.listen.gateway.iter().zip(&plan.tls) {
            let handle = self.tls.iter().find(|(addr, _)| *addr == l.bind);
            if let (Some((_, handle)), Some(tls)) = (handle, tls) {
                handle.replace(tls.clone());
            }
        }
        plan.start_background_tasks();
        *current = plan.reusable();
        self.upstreams.store(Arc::new(plan.upstreams.values().cloned().collect()));
        self.providers.store(Arc::new(plan.providers.values().cloned().collect()));
        self.table.store(Arc::new(plan.table));
        self.config.store(plan.config);
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish for up to
    /// `drain_timeout`, then closes what is left. Returns whether everything
    /// drained in time.
    pub async fn shutdown(mut self) -> bool {
        self.draining.store(true, Ordering::Relaxed);
        let _ = self.phase.send(Phase::Draining);
        for l in &self.listeners {
            l.set_phase(Phase::Draining);
        }
        let deadline = self.config.load().drain_timeout;
        let all = futures_util::future::join_all(self.listeners.iter().map(|l| l.drained()));
        let drained = tokio::time::timeout(deadline, all).await.is_ok();
        self.stop();
        let workers = std::mem::take(&mut self.workers);
        let queues = self.engines.take().map(|e| e.queues);
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
            // Finish what the store has queued and checkpoint it.
            if let Some(q) = queues {
                q.close();
            }
        })
        .await;
        drained
    }
}

impl Gatehouse {
    /// Closes every connection and stops the workers.
    fn stop(&self) {
        let _ = self.phase.send(Phase::Stopped);
        let _ = self.admin_phase.send(Phase::Stopped);
        for l in self.listeners.iter().chain(&self.admin_listener) {
            l.set_phase(Phase::Stopped);
        }
        if let Some(e) = &self.engines {
            e.topics.stop();
        }
    }
}

impl Drop for Gatehouse {
    /// Dropping a gatehouse without `shutdown` stops it at once.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Which service a worker's socket serves.
#[derive(Clone, Copy)]
enum Served {
    /// A gateway listener, with its setting for encoded separators.
    Gateway(EscapedSlashes),
    Aws,
}

/// Refreshes queue counts for metrics every few seconds.
fn spawn_count_refresher(engine: &Arc<Queues>) {
    let weak = Arc::downgrade(engine);
    tokio::spawn(async move {
        loop {
            let Some(engine) = weak.upgrade() else { return };
            for q in engine.all() {
                let _ = engine.counts(&q).await;
            }
            drop(engine);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
}

/// The gateway's layers that are shared by every connection; a connection's
/// stack is built from them by [`GatewayLayers::service`].
#[derive(Clone)]
struct GatewayLayers {
    access_log: AccessLogLayer,
    routes: RouteLayer<Arc<RouteHandler>>,
}

impl GatewayLayers {
    /// The request path for one connection, outermost layer first.
    fn service(
        &self,
        conn: ConnInfo,
        slashes: EscapedSlashes,
    ) -> impl Service<
        Request<ClientBody>,
        Response = Response<
            impl http_body::Body<Data = Bytes, Error = crate::body::BoxError> + Send + 'static,
        >,
        Error = std::convert::Infallible,
        Future = impl Future + Send + 'static,
    > + Clone
           + Send
           + Sync
           + 'static {
        ServiceBuilder::new()
            .layer(RequestIdLayer::new(RandomRequestId))
            .layer(self.access_log.clone().client(conn.peer.ip()))
            .layer(RescueLayer)
            .layer(self.routes.clone().escaped_slashes(slashes))
            .service(Dispatch::new(conn))
    }
}
