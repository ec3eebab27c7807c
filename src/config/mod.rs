//! `routes.yaml`: parsing, defaults and validation.
//!
//! This module owns the user-facing configuration contract (see
//! `DESIGN.md` §3). It turns a file into plain data ([`Config`]) or into a
//! [`ConfigError`] listing every problem with its `file:line:col`. It knows
//! nothing about sockets, TLS or HTTP; other modules consume its types.
//!
//! Strictness rules:
//! - an unknown key is an error naming the nearest valid key;
//! - a key gatehouse recognises but does not implement yet is an error
//!   ("not supported yet"), never silently ignored;
//! - durations are `250ms`/`30s`/`15m`/`4d`, sizes `256KiB`/`1MiB`;
//! - `${NAME}` in any string expands an environment variable;
//! - relative file paths are relative to the directory of the config file.

mod decode;
pub mod edge;
mod locate;
pub mod pattern;
mod problem;
pub mod queues;
pub mod topics;
pub mod units;
pub mod waf;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use decode::{Decoder, Node};
pub use edge::{
    JwtAlgorithm, JwtKeys, JwtProviderConfig, LimitConfig, LimitKey, Rate, RouteAuth, RouteThrottle, Secret,
    TokenSource,
};
pub use locate::Anchor;
pub use pattern::{HostPattern, PathPattern, PathSegment};
pub use problem::{ConfigError, KeyPath, Problem};
pub use queues::{
    AwsConfig, AwsListener, DeadLetter, MessageMapping, QueueConfig, StorageConfig, SyncMode, ValueSource,
};
pub use topics::{AlarmConfig, AlarmMetric, Endpoint, SubscriptionConfig, TopicConfig};
pub use waf::{RouteWaf, WafConfig, WafMode};

/// Defaults, in one place.
pub mod defaults {
    use std::time::Duration;

    pub const GATEWAY_BIND: &str = "0.0.0.0:8080";
    pub const ADMIN_BIND: &str = "127.0.0.1:9901";
    pub const AWS_BIND: &str = "127.0.0.1:9324";
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
    pub const MAX_HEADER_SIZE: u64 = 32 * 1024;
    pub const MAX_CONNECTIONS: u64 = 10_000;
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    pub const POOL_MAX_IDLE: u64 = 256;
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
    pub const HEALTHY_THRESHOLD: u64 = 2;
    pub const UNHEALTHY_THRESHOLD: u64 = 3;
    pub const PASSIVE_FAILURES: u64 = 5;
    pub const EJECT_FOR: Duration = Duration::from_secs(30);
    pub const RETRIES: u64 = 1;
    pub const RETRY_BUFFER: u64 = 64 * 1024;
    pub const MAX_BODY: u64 = 10 * 1024 * 1024;

    /// One data-plane worker per core. Asked once per process: the answer
    /// reads cgroup files, and every config decoded (reloads, `check`)
    /// would read them again.
    pub fn workers() -> usize {
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// The whole configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was read from.
    pub file: PathBuf,
    /// The file's text, kept to locate problems found after parsing (a
    /// certificate that does not load, say).
    pub source: Arc<str>,
    pub listen: Listen,
    pub log: LogConfig,
    /// Data-plane worker threads, one event loop each (`auto`: one per core).
    pub workers: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// Who the queues belong to (queue URLs and ARNs).
    pub aws: AwsConfig,
    /// Where queues are stored.
    pub storage: StorageConfig,
    /// Queues created (or updated) at start.
    pub queues: BTreeMap<String, QueueConfig>,
    /// Topics created (or updated) at start, with their subscriptions.
    pub topics: BTreeMap<String, TopicConfig>,
    /// Queue-depth alarms, by name.
    pub alarms: BTreeMap<String, AlarmConfig>,
    /// Peers whose `X-Forwarded-For` is believed (for `client_ip` keys).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The default limits of every gateway route (empty: none).
    pub throttle: Vec<LimitConfig>,
    /// JWT providers (`auth.jwt.NAME`), in file order.
    pub auth: Vec<JwtProviderConfig>,
    /// The WAF's settings; without them no route is inspected.
    pub waf: Option<WafConfig>,
}

impl Config {
    /// The limits `route` applies, in the order they are declared.
    pub fn limits_of<'a>(&'a self, route: &'a RouteConfig) -> &'a [LimitConfig] {
        match &route.throttle {
            RouteThrottle::Inherit => &self.throttle,
            RouteThrottle::Off => &[],
            RouteThrottle::Limits(l) => l,
        }
    }

    /// The JWT provider called `name`.
    pub fn provider(&self, name: &str) -> Option<&JwtProviderConfig> {
        self.auth.iter().find(|p| p.name == name)
    }
}

/// `listen:`: the sockets gatehouse binds.
#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    /// Public listeners for the routes (`listen.gateway`, one or a list).
    pub gateway: Vec<GatewayListener>,
    /// Operations listener (`listen.admin`); `None` when `admin: off`.
    pub admin: Option<SocketAddr>,
    /// The SQS-compatible API (`listen.aws`); `None` when `aws: off`.
    pub aws: Option<AwsListener>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GatewayListener {
    pub bind: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub limits: ConnectionLimits,
    /// How connections are spread over the workers.
    pub connection_balance: ConnectionBalance,
    /// What a percent-encoded `/` or `\\` in a request path does.
    pub escaped_slashes: EscapedSlashes,
    /// Where this listener is declared, for later problems.
    pub key: KeyPath,
}

/// How a listener's connections are spread over the data-plane workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionBalance {
    /// Each connection goes to the worker with the fewest open connections
    /// (a connection may be handed from the worker that accepted it to
    /// another, once).
    #[default]
    Exact,
    /// The kernel picks the worker by a hash of the connection's addresses
    /// (`SO_REUSEPORT`): no handover, an uneven split over few connections.
    Kernel,
}

/// What a gateway listener does with `%2F`, `%2f`, `%5C` and `%5c` in a
/// request path (Envoy's `path_with_escaped_slashes_action`). An upstream
/// that decodes them once would see separators the route match did not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Answer `400`.
    #[default]
    Reject,
    /// Decode them to `/` before routing, so the route match and the
    /// upstream see the same separators.
    Decode,
    /// Leave them encoded, as opaque characters of a segment.
    Keep,
}

/// Per-listener protections against slow or abusive clients.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionLimits {
    /// Time allowed from connection (or the first byte of a later request)
    /// to the end of the request head, TLS handshake included.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no traffic for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// Largest request head accepted (431 beyond it).
    pub max_header_size: u64,
    /// Connections accepted at once; further clients wait in the backlog.
    pub max_connections: u64,
    /// Longest wait for the next bytes of a request body (408 and the
    /// connection closed after it); `None` waits as long as the client.
    pub body_timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TlsConfig {
    /// The first is the default when no `hosts` entry matches the SNI name.
    pub certificates: Vec<CertificateConfig>,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: also accept clients that present no certificate.
    pub client_auth_optional: bool,
    pub min_version: TlsVersion,
    pub key: KeyPath,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CertificateConfig {
    pub cert: PathBuf,
    pub key_file: PathBuf,
    /// SNI names this certificate answers for (exact or `*.` wildcard).
    pub hosts: Vec<HostPattern>,
    pub key: KeyPath,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `gatehouse=debug,info`.
    pub level: String,
    /// Whether to write one access-log line per request.
    pub access: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// `upstreams.<name>`: a pool of targets serving one service.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    pub targets: Vec<TargetUrl>,
    pub balance: Balance,
    /// Time to wait for response headers (retries included); 504 after.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub health_check: Option<HealthCheckConfig>,
    pub passive_health: PassiveHealthConfig,
    pub retries: RetryConfig,
    pub host_header: HostHeader,
    pub protocol: UpstreamProtocol,
    pub pool: PoolConfig,
    /// Extra CA to trust for `https://` targets (the system roots otherwise).
    pub tls_ca: Option<PathBuf>,
}

/// A target address: `http://host:port` or `https://host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl TargetUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("a target must start with http:// or https://, found `{text}`"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "a target is a scheme, host and port only (no path, query or credentials): `{text}`"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(|| format!("bad IPv6 address in `{text}`"))?;
            (format!("[{h}]"), tail.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() || host.contains(':') && !host.starts_with('[') {
            return Err(format!("missing or malformed host in `{text}`"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| format!("bad port `{p}` in `{text}`"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Self { tls, host: host.to_ascii_lowercase(), port })
    }

    /// `host:port`, the authority used on the wire.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// Power of two choices on in-flight requests.
    LeastRequest,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheckConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that make an unhealthy target healthy again.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy target unhealthy.
    pub unhealthy_threshold: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PassiveHealthConfig {
    /// Consecutive connect failures or 5xx answers that eject a target;
    /// 0 turns passive ejection off.
    pub consecutive_failures: u32,
    /// How long an ejected target is left out before it is tried again.
    pub eject_for: Duration,
}

/// The most `retries.max` accepts.
pub const MAX_RETRIES: u32 = 10;

#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// Further attempts after the first, each on another target (at most
    /// [`MAX_RETRIES`]).
    pub max: u32,
    /// Statuses that make an idempotent request retry.
    pub statuses: Vec<u16>,
    /// Request bodies up to this size are kept so they can be re-sent;
    /// larger bodies are streamed and only retried on connect failures
    /// before any byte was sent.
    pub buffer: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostHeader {
    /// Send the client's `Host` to the upstream.
    Preserve,
    /// Send the target's `host:port`.
    Target,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2: prior knowledge on `http://`, ALPN on `https://`.
    Http2,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub idle_timeout: Duration,
    pub max_idle_per_target: usize,
}

/// One entry of `routes:`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    pub host: Option<HostPattern>,
    pub path: PathPattern,
    /// Empty means any method.
    pub methods: Vec<String>,
    pub target: RouteTarget,
    pub strip_prefix: Option<String>,
    /// Overrides the upstream's `timeout`.
    pub timeout: Option<Duration>,
    /// Largest request body accepted (413 beyond it).
    pub max_body: u64,
    /// `Upgrade` protocols passed through to the upstream, lowercase
    /// (`[websocket]` by default; `h2c` is never allowed).
    pub upgrades: Vec<String>,
    pub throttle: RouteThrottle,
    /// The token the route requires, if any.
    pub auth: Option<RouteAuth>,
    pub waf: RouteWaf,
    pub key: KeyPath,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RouteTarget {
    Upstream(String),
    /// Publish the request as a message into this queue.
    Queue {
        queue: String,
        message: MessageMapping,
    },
    /// Publish the request to this topic's subscribers.
    Topic {
        topic: String,
        message: MessageMapping,
    },
    /// A fixed answer, without any backend (health pages, redirects, stubs).
    Respond(FixedResponse),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FixedResponse {
    pub status: u16,
    pub body: String,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
}

impl Config {
    /// Reads and validates `file`, expanding `${NAME}` from the process
    /// environment.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let source = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_owned(),
            problems: vec![Problem::at_value(KeyPath::root(), format!("cannot read the file: {e}"))],
        })?;
        Self::parse(file, &source, &|name| std::env::var(name).ok())
    }

    /// Validates `source` as if read from `file` (relative paths resolve
    /// against `file`'s directory), with `env` answering `${NAME}`.
    pub fn parse(
        file: &Path,
        source: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let doc: serde_yaml::Value = match serde_yaml::from_str(source) {
            Ok(v) => v,
            Err(e) => {
                let message = e.to_string();
                // serde_yaml appends " at line L column C"; the location is
                // printed in front instead.
                let message = match message.find(" at line ") {
                    Some(i) => message[..i].to_owned(),
                    None => message,
                };
                let mut p = Problem::at_value(KeyPath::root(), format!("invalid YAML: {message}"));
                p.location = e.location().map(|l| (l.line(), l.column()));
                return Err(ConfigError::new(file, source, vec![p]));
            }
        };
        let base = file.parent().map(Path::to_owned).unwrap_or_default();
        let mut d = Decoder::new(env);
        // Decoding keeps going past bad values, so the cross-checks run on
        // whatever decoded and the user sees every problem in one pass.
        let config = decode_config(&mut d, &doc, &base, file, source);
        let mut problems = d.into_problems();
        problems.extend(validate(&config));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::new(file, source, problems))
        }
    }

    /// A report for problems found after parsing (unreadable certificates,
    /// addresses in use), located in this config's source.
    pub fn error(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError::new(&self.file, &self.source, problems)
    }
}

const TOP_KEYS: &[&str] = &[
    "listen",
    "log",
    "workers",
    "drain_timeout",
    "upstreams",
    "routes",
    "aws",
    "storage",
    "queues",
    "topics",
    "alarms",
    "trusted_proxies",
    "throttle",
    "auth",
    "waf",
];
/// Sections of DESIGN.md §3 that later work implements.
const TOP_PENDING: &[&str] = &[];

fn decode_config(
    d: &mut Decoder<'_>,
    doc: &serde_yaml::Value,
    base: &Path,
    file: &Path,
    source: &str,
) -> Config {
    let root = Node { value: doc, path: KeyPath::root() };
    let mut config = Config {
        file: file.to_owned(),
        source: source.into(),
        listen: default_listen(),
        log: LogConfig::default(),
        workers: defaults::workers(),
        drain_timeout: defaults::DRAIN_TIMEOUT,
        upstreams: BTreeMap::new(),
        routes: Vec::new(),
        aws: AwsConfig::default(),
        storage: queues::default_storage(base),
        queues: BTreeMap::new(),
        topics: BTreeMap::new(),
        alarms: BTreeMap::new(),
        trusted_proxies: Vec::new(),
        throttle: Vec::new(),
        auth: Vec::new(),
        waf: None,
    };
    let Some(t) = d.table(&root, TOP_KEYS, TOP_PENDING) else { return config };
    if let Some(n) = t.get("trusted_proxies") {
        config.trusted_proxies = edge::decode_trusted_proxies(d, &n);
    }
    if let Some(n) = t.get("throttle") {
        config.throttle = edge::decode_throttle(d, &n).unwrap_or_default();
    }
    if let Some(n) = t.get("auth") {
        config.auth = edge::decode_auth(d, &n, base);
    }
    if let Some(n) = t.get("waf") {
        config.waf = waf::decode_waf(d, &n, base);
    }
    config.aws = queues::decode_aws(d, t.get("aws"));
    config.storage = queues::decode_storage(d, t.get("storage"), base);
    if let Some(n) = t.get("queues") {
        for (name, node) in d.entries(&n) {
            if let Some(q) = queues::decode_queue(d, &name, &node) {
                config.queues.insert(name, q);
            }
        }
    }
    if let Some(n) = t.get("topics") {
        for (name, node) in d.entries(&n) {
            if let Some(topic) = topics::decode_topic(d, &name, &node) {
                config.topics.insert(name, topic);
            }
        }
    }
    if let Some(n) = t.get("alarms") {
        for (name, node) in d.entries(&n) {
            if let Some(alarm) = topics::decode_alarm(d, &node) {
                config.alarms.insert(name, alarm);
            }
        }
    }
    if let Some(listen) = decode_listen(d, t.get("listen"), base) {
        config.listen = listen;
    }
    config.log = decode_log(d, t.get("log"));
    if let Some(n) = t.get("workers") {
        if n.value.as_str() != Some("auto") {
            if let Some(w) = d.integer(&n, 1, 1024) {
                config.workers = w as usize;
            }
        }
    }
    if let Some(v) = t.get("drain_timeout").and_then(|n| d.duration(&n)) {
        config.drain_timeout = v;
    }
    if let Some(n) = t.get("upstreams") {
        for (name, node) in d.entries(&n) {
            // An upstream that fails to decode still counts as declared, so
            // routes naming it are not reported a second time.
            let upstream = decode_upstream(d, &node, base).unwrap_or_else(UpstreamConfig::placeholder);
            config.upstreams.insert(name, upstream);
        }
    }
    if let Some(n) = t.get("routes") {
        for node in d.list(&n) {
            if let Some(r) = decode_route(d, &node) {
                config.routes.push(r);
            }
        }
    }
    config
}

fn default_gateway(key: KeyPath) -> GatewayListener {
    GatewayListener {
        bind: defaults::GATEWAY_BIND.parse().expect("valid default"),
        tls: None,
        limits: ConnectionLimits::default(),
        connection_balance: ConnectionBalance::default(),
        escaped_slashes: EscapedSlashes::default(),
        key,
    }
}

fn default_listen() -> Listen {
    Listen {
        gateway: vec![default_gateway(KeyPath::root())],
        admin: Some(defaults::ADMIN_BIND.parse().expect("valid default")),
        aws: Some(default_aws_listener()),
    }
}

fn default_aws_listener() -> AwsListener {
    AwsListener {
        bind: defaults::AWS_BIND.parse().expect("valid default"),
        credentials: Vec::new(),
        body_timeout: defaults::BODY_TIMEOUT,
    }
}

fn is_off(n: &Node<'_>) -> bool {
    matches!(n.value, serde_yaml::Value::Bool(false)) || n.value.as_str() == Some("off")
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Human, level: "info".into(), access: true }
    }
}

impl UpstreamConfig {
    fn placeholder() -> Self {
        Self {
            targets: Vec::new(),
            balance: Balance::RoundRobin,
            timeout: defaults::UPSTREAM_TIMEOUT,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            health_check: None,
            passive_health: decode_passive_default(),
            retries: RetryConfig {
                max: defaults::RETRIES as u32,
                statuses: Vec::new(),
                buffer: defaults::RETRY_BUFFER,
            },
            host_header: HostHeader::Preserve,
            protocol: UpstreamProtocol::Http1,
            pool: PoolConfig {
                idle_timeout: defaults::POOL_IDLE_TIMEOUT,
                max_idle_per_target: defaults::POOL_MAX_IDLE as usize,
            },
            tls_ca: None,
        }
    }
}

fn decode_passive_default() -> PassiveHealthConfig {
    PassiveHealthConfig {
        consecutive_failures: defaults::PASSIVE_FAILURES as u32,
        eject_for: defaults::EJECT_FOR,
    }
}

fn decode_listen(d: &mut Decoder<'_>, node: Option<Node<'_>>, base: &Path) -> Option<Listen> {
    let Some(node) = node else { return Some(default_listen()) };
    let t = d.table(&node, &["gateway", "admin", "aws"], &[])?;
    let gateway = match t.get("gateway") {
        None => vec![default_gateway(t.path.key("gateway"))],
        Some(g) if g.value.is_sequence() => {
            let items = d.list(&g);
            if items.is_empty() {
                d.invalid(&g, "at least one gateway listener is needed");
            }
            items.iter().filter_map(|n| decode_gateway_listener(d, n, base)).collect()
        }
        Some(g) => decode_gateway_listener(d, &g, base).into_iter().collect(),
    };
    let aws = match t.get("aws") {
        None => Some(default_aws_listener()),
        Some(n) if is_off(&n) => None,
        Some(n) => queues::decode_aws_listener(d, &n),
    };
    let admin = match t.get("admin") {
        None => Some(defaults::ADMIN_BIND.parse().expect("valid default")),
        Some(n) if is_off(&n) => None,
        Some(n) => {
            let a = d.table(&n, &["bind"], &[])?;
            match a.get("bind") {
                Some(b) => d.socket_addr(&b),
                None => Some(defaults::ADMIN_BIND.parse().expect("valid default")),
            }
        }
    };
    Some(Listen { gateway, admin, aws })
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            idle_timeout: defaults::IDLE_TIMEOUT,
            max_header_size: defaults::MAX_HEADER_SIZE,
            max_connections: defaults::MAX_CONNECTIONS,
            body_timeout: Some(defaults::BODY_TIMEOUT),
        }
    }
}

fn decode_gateway_listener(d: &mut Decoder<'_>, node: &Node<'_>, base: &Path) -> Option<GatewayListener> {
    let t = d.table(
        node,
        &[
            "bind",
            "tls",
            "header_read_timeout",
            "idle_timeout",
            "max_header_size",
            "max_connections",
            "connection_balance",
            "body_timeout",
            "escaped_slashes",
        ],
        &[],
    )?;
    let bind = match t.get("bind") {
        Some(b) => d.socket_addr(&b),
        None => Some(defaults::GATEWAY_BIND.parse().expect("valid default")),
    };
    let tls = t.get("tls").and_then(|n| decode_tls(d, &n, base));
    let mut limits = ConnectionLimits::default();
    if let Some(v) = t.get("header_read_timeout").and_then(|n| positive_duration(d, &n)) {
        limits.header_read_timeout = v;
    }
    if let Some(v) = t.get("idle_timeout").and_then(|n| positive_duration(d, &n)) {
        limits.idle_timeout = v;
    }
    if let Some(n) = t.get("max_header_size") {
        if let Some(v) = d.size(&n) {
            if !(8192..=1 << 20).contains(&v) {
                d.invalid(&n, "must be between 8KiB and 1MiB");
            }
            limits.max_header_size = v;
        }
    }
    if let Some(v) = t.get("max_connections").and_then(|n| d.integer(&n, 1, 1_000_000)) {
        limits.max_connections = v;
    }
    if let Some(v) = t.get("body_timeout").and_then(|n| positive_duration(d, &n)) {
        limits.body_timeout = Some(v);
    }
    let escaped_slashes =
        match t.get("escaped_slashes").and_then(|n| d.choice(&n, &["reject", "decode", "keep"])) {
            Some("decode") => EscapedSlashes::Decode,
            Some("keep") => EscapedSlashes::Keep,
            _ => EscapedSlashes::Reject,
        };
    let connection_balance =
        match t.get("connection_balance").and_then(|n| d.choice(&n, &["exact", "kernel"])) {
            Some("kernel") => ConnectionBalance::Kernel,
            _ => ConnectionBalance::Exact,
        };
    Some(GatewayListener {
        bind: bind?,
        tls,
        limits,
        connection_balance,
        escaped_slashes,
        key: node.path.clone(),
    })
}

fn decode_tls(d: &mut Decoder<'_>, node: &Node<'_>, base: &Path) -> Option<TlsConfig> {
    let t =
        d.table(node, &["cert", "key", "certificates", "client_ca", "client_auth", "min_version"], &[])?;
    let mut certificates = Vec::new();
    match (t.get("cert"), t.get("key"), t.get("certificates")) {
        (Some(_), _, Some(list)) | (_, Some(_), Some(list)) => {
            d.invalid(&list, "give either `cert` + `key` or `certificates`, not both");
        }
        (Some(c), Some(k), None) => {
            let cert = file_path(d, &c, base);
            let key_file = file_path(d, &k, base);
            if let (Some(cert), Some(key_file)) = (cert, key_file) {
                certificates.push(CertificateConfig {
                    cert,
                    key_file,
                    hosts: Vec::new(),
                    key: node.path.clone(),
                });
            }
        }
        (Some(_), None, None) => {
            t.require(d, "key");
        }
        (None, Some(_), None) => {
            t.require(d, "cert");
        }
        (None, None, Some(list)) => {
            let items = d.list(&list);
            if items.is_empty() {
                d.invalid(&list, "at least one certificate is needed");
            }
            for item in items {
                let Some(c) = d.table(&item, &["cert", "key", "hosts"], &[]) else { continue };
                let cert = c.require(d, "cert").and_then(|n| file_path(d, &n, base));
                let key_file = c.require(d, "key").and_then(|n| file_path(d, &n, base));
                let mut hosts = Vec::new();
                if let Some(h) = c.get("hosts") {
                    for hn in d.list(&h) {
                        if let Some(s) = d.string(&hn) {
                            match HostPattern::parse(&s) {
                                Ok(p) => hosts.push(p),
                                Err(e) => d.invalid(&hn, e),
                            }
                        }
                    }
                }
                if let (Some(cert), Some(key_file)) = (cert, key_file) {
                    certificates.push(CertificateConfig { cert, key_file, hosts, key: item.path });
                }
            }
        }
        (None, None, None) => {
            d.invalid(node, "`tls` needs `cert` and `key`, or a list of `certificates`");
        }
    }
    let client_ca = t.get("client_ca").and_then(|n| file_path(d, &n, base));
    let client_auth_optional = match t.get("client_auth") {
        None => false,
        Some(n) => {
            if client_ca.is_none() {
                d.invalid(&n, "`client_auth` needs `client_ca`");
            }
            d.choice(&n, &["required", "optional"]) == Some("optional")
        }
    };
    let min_version = match t.get("min_version") {
        None => TlsVersion::Tls12,
        Some(n) => {
            let text = match n.value {
                serde_yaml::Value::Number(x) => Some(x.to_string()),
                _ => d.string(&n),
            };
            match text.as_deref() {
                Some("1.2") => TlsVersion::Tls12,
                Some("1.3") => TlsVersion::Tls13,
                Some(other) => {
                    d.invalid(
                        &n,
                        format!("expected `1.2` or `1.3` (older versions are unsafe), found `{other}`"),
                    );
                    TlsVersion::Tls12
                }
                None => TlsVersion::Tls12,
            }
        }
    };
    Some(TlsConfig { certificates, client_ca, client_auth_optional, min_version, key: node.path.clone() })
}

/// A path to a file that must exist, resolved against the config's directory.
fn file_path(d: &mut Decoder<'_>, node: &Node<'_>, base: &Path) -> Option<PathBuf> {
    let s = d.string(node)?;
    let path = base.join(&s);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Some(path),
        Ok(_) => {
            d.invalid(node, format!("`{}` is not a file", path.display()));
            None
        }
        Err(e) => {
            d.invalid(node, format!("cannot read `{}`: {e}", path.display()));
            None
        }
    }
}

fn positive_duration(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Duration> {
    let v = d.duration(node)?;
    if v.is_zero() {
        d.invalid(node, "must be greater than zero");
        return None;
    }
    Some(v)
}

fn decode_log(d: &mut Decoder<'_>, node: Option<Node<'_>>) -> LogConfig {
    let mut log = LogConfig::default();
    let Some(node) = node else { return log };
    let Some(t) = d.table(&node, &["format", "level", "access"], &[]) else { return log };
    if let Some(n) = t.get("format") {
        if d.choice(&n, &["human", "json"]) == Some("json") {
            log.format = LogFormat::Json;
        }
    }
    if let Some(level) = t.get("level").and_then(|n| d.string(&n)) {
        log.level = level;
    }
    if let Some(access) = t.get("access").and_then(|n| d.bool(&n)) {
        log.access = access;
    }
    log
}

fn decode_upstream(d: &mut Decoder<'_>, node: &Node<'_>, base: &Path) -> Option<UpstreamConfig> {
    let t = d.table(
        node,
        &[
            "targets",
            "balance",
            "timeout",
            "connect_timeout",
            "health_check",
            "passive_health",
            "retries",
            "host_header",
            "protocol",
            "pool",
            "tls",
        ],
        &[],
    )?;
    let mut targets = Vec::new();
    if let Some(n) = t.require(d, "targets") {
        let items = d.list(&n);
        if items.is_empty() {
            d.invalid(&n, "an upstream needs at least one target");
        }
        for item in items {
            if let Some(s) = d.string(&item) {
                match TargetUrl::parse(&s) {
                    Ok(u) if targets.contains(&u) => d.invalid(&item, format!("`{u}` is listed twice")),
                    Ok(u) => targets.push(u),
                    Err(e) => d.invalid(&item, e),
                }
            }
        }
    }
    let balance = match t.get("balance").and_then(|n| d.choice(&n, &["round_robin", "least_request"])) {
        Some("least_request") => Balance::LeastRequest,
        _ => Balance::RoundRobin,
    };
    let timeout =
        t.get("timeout").and_then(|n| positive_duration(d, &n)).unwrap_or(defaults::UPSTREAM_TIMEOUT);
    let connect_timeout =
        t.get("connect_timeout").and_then(|n| positive_duration(d, &n)).unwrap_or(defaults::CONNECT_TIMEOUT);
    let health_check = t.get("health_check").and_then(|n| decode_health_check(d, &n));
    let passive_health = decode_passive(d, t.get("passive_health"));
    let retries = decode_retries(d, t.get("retries"));
    let host_header = match t.get("host_header").and_then(|n| d.choice(&n, &["preserve", "target"])) {
        Some("target") => HostHeader::Target,
        _ => HostHeader::Preserve,
    };
    let protocol = match t.get("protocol").and_then(|n| d.choice(&n, &["http1", "http2"])) {
        Some("http2") => UpstreamProtocol::Http2,
        _ => UpstreamProtocol::Http1,
    };
    let mut pool = PoolConfig {
        idle_timeout: defaults::POOL_IDLE_TIMEOUT,
        max_idle_per_target: defaults::POOL_MAX_IDLE as usize,
    };
    if let Some(n) = t.get("pool") {
        if let Some(p) = d.table(&n, &["idle_timeout", "max_idle_per_target"], &[]) {
            if let Some(v) = p.get("idle_timeout").and_then(|n| positive_duration(d, &n)) {
                pool.idle_timeout = v;
            }
            if let Some(v) = p.get("max_idle_per_target").and_then(|n| d.integer(&n, 0, 100_000)) {
                pool.max_idle_per_target = v as usize;
            }
        }
    }
    let tls_ca = t.get("tls").and_then(|n| {
        let tt = d.table(&n, &["ca"], &[])?;
        tt.require(d, "ca").and_then(|c| file_path(d, &c, base))
    });
    Some(UpstreamConfig {
        targets,
        balance,
        timeout,
        connect_timeout,
        health_check,
        passive_health,
        retries,
        host_header,
        protocol,
        pool,
        tls_ca,
    })
}

fn decode_health_check(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<HealthCheckConfig> {
    let t =
        d.table(node, &["path", "interval", "timeout", "healthy_threshold", "unhealthy_threshold"], &[])?;
    let path = t.require(d, "path").and_then(|n| {
        let p = d.string(&n)?;
        if !p.starts_with('/') {
            d.invalid(&n, format!("a health check path must start with `/`, found `{p}`"));
        }
        Some(p)
    });
    let interval =
        t.get("interval").and_then(|n| positive_duration(d, &n)).unwrap_or(defaults::HEALTH_INTERVAL);
    let timeout = t.get("timeout").and_then(|n| positive_duration(d, &n)).unwrap_or(defaults::HEALTH_TIMEOUT);
    let healthy_threshold =
        t.get("healthy_threshold").and_then(|n| d.integer(&n, 1, 100)).unwrap_or(defaults::HEALTHY_THRESHOLD)
            as u32;
    let unhealthy_threshold = t
        .get("unhealthy_threshold")
        .and_then(|n| d.integer(&n, 1, 100))
        .unwrap_or(defaults::UNHEALTHY_THRESHOLD) as u32;
    Some(HealthCheckConfig { path: path?, interval, timeout, healthy_threshold, unhealthy_threshold })
}

fn decode_passive(d: &mut Decoder<'_>, node: Option<Node<'_>>) -> PassiveHealthConfig {
    let mut p = decode_passive_default();
    let Some(node) = node else { return p };
    let Some(t) = d.table(&node, &["consecutive_failures", "eject_for"], &[]) else { return p };
    if let Some(v) = t.get("consecutive_failures").and_then(|n| d.integer(&n, 0, 1000)) {
        p.consecutive_failures = v as u32;
    }
    if let Some(v) = t.get("eject_for").and_then(|n| positive_duration(d, &n)) {
        p.eject_for = v;
    }
    p
}

fn decode_retries(d: &mut Decoder<'_>, node: Option<Node<'_>>) -> RetryConfig {
    let mut r =
        RetryConfig { max: defaults::RETRIES as u32, statuses: Vec::new(), buffer: defaults::RETRY_BUFFER };
    let Some(node) = node else { return r };
    let Some(t) = d.table(&node, &["max", "statuses", "buffer"], &[]) else { return r };
    if let Some(v) = t.get("max").and_then(|n| d.integer(&n, 0, u64::from(MAX_RETRIES))) {
        r.max = v as u32;
    }
    if let Some(n) = t.get("statuses") {
        for s in d.list(&n) {
            if let Some(code) = d.integer(&s, 100, 599) {
                r.statuses.push(code as u16);
            }
        }
    }
    if let Some(n) = t.get("buffer") {
        if let Some(v) = d.size(&n) {
            if v > 16 << 20 {
                d.invalid(&n, "must be at most 16MiB (it is held in memory per request)");
            }
            r.buffer = v;
        }
    }
    r
}

const ROUTE_KEYS: &[&str] = &[
    "name",
    "path",
    "methods",
    "host",
    "upstream",
    "respond",
    "queue",
    "topic",
    "message",
    "strip_prefix",
    "timeout",
    "max_body",
    "upgrades",
    "throttle",
    "auth",
    "scopes",
    "claims",
    "claims_to_headers",
    "forward_token",
    "token_from",
    "waf",
];
const ROUTE_PENDING: &[&str] = &[];

/// A topic's subscriptions name declared queues, of a type the topic can
/// deliver to.
fn validate_subscriptions(c: &Config, t: &TopicConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let known = |name: &str, at: KeyPath, problems: &mut Vec<Problem>| -> Option<bool> {
        match c.queues.get(name) {
            Some(q) => Some(q.fifo),
            None => {
                let mut msg = format!("unknown queue `{name}`");
                match problem::suggest(name, c.queues.keys().map(String::as_str)) {
                    Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
                    None => msg.push_str("; subscriptions name queues declared under `queues`"),
                }
                problems.push(Problem::at_value(at, msg));
                None
            }
        }
    };
    for s in &t.subscriptions {
        if let (Endpoint::Url(_), true) = (&s.endpoint, t.fifo) {
            problems
                .push(Problem::at_value(s.key.key("url"), "FIFO topics deliver to queues only, as in SNS"));
        }
        if let Endpoint::Queue(q) = &s.endpoint {
            if known(q, s.key.key("queue"), &mut problems) == Some(true) && !t.fifo {
                problems.push(Problem::at_value(
                    s.key.key("queue"),
                    "FIFO queues can only subscribe to FIFO topics (named `….fifo`)",
                ));
            }
        }
        if let Some(dl) = &s.dead_letter {
            known(dl, s.key.key("dead_letter"), &mut problems);
        }
    }
    problems
}

/// An alarm watches a declared queue and tells declared topics.
fn validate_alarm(c: &Config, a: &AlarmConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    match c.queues.get(&a.queue) {
        None => {
            let mut msg = format!("unknown queue `{}`", a.queue);
            if let Some(s) = problem::suggest(&a.queue, c.queues.keys().map(String::as_str)) {
                msg.push_str(&format!(" (did you mean `{s}`?)"));
            }
            problems.push(Problem::at_value(a.key.key("queue"), msg));
        }
        Some(q) if a.metric == AlarmMetric::DeadLetter && q.dead_letter.is_none() => {
            problems.push(Problem::at_value(
                a.key.key("metric"),
                format!("queue `{}` has no `dead_letter`, so nothing arrives in one", a.queue),
            ))
        }
        Some(_) => {}
    }
    for (i, topic) in a.notify.iter().enumerate() {
        if !c.topics.contains_key(topic) {
            let mut msg = format!("unknown topic `{topic}`");
            if let Some(s) = problem::suggest(topic, c.topics.keys().map(String::as_str)) {
                msg.push_str(&format!(" (did you mean `{s}`?)"));
            }
            problems.push(Problem::at_value(a.key.key("notify").index(i), msg));
        }
    }
    problems
}

/// Methods accepted in `methods:` without question; other tokens are
/// accepted if they are valid HTTP method tokens.
const KNOWN_METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

/// A route's `upgrades:` list: protocol tokens, never `h2c`.
fn decode_upgrades(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in d.list(node) {
        let Some(p) = d.string(&item) else { continue };
        let p = p.to_ascii_lowercase();
        let token = crate::syntax::is_token(&p);
        if !token {
            d.invalid(&item, format!("`{p}` is not an upgrade protocol name"));
        } else if p == "h2c" {
            d.invalid(&item, "`h2c` cannot be allowed: an upstream that switched to it would serve later requests past the route's checks");
        } else if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn decode_route(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<RouteConfig> {
    let t = d.table(node, ROUTE_KEYS, ROUTE_PENDING)?;
    let name = t.require(d, "name").and_then(|n| {
        let s = d.string(&n)?;
        if s.is_empty() || s.chars().any(|c| c.is_control() || c == '"') {
            d.invalid(&n, "a route name must be non-empty, without quotes or control characters");
        }
        Some(s)
    });
    let path = t.require(d, "path").and_then(|n| {
        let s = d.string(&n)?;
        PathPattern::parse(&s).map_err(|e| d.invalid(&n, e)).ok()
    });
    let host = t.get("host").and_then(|n| {
        let s = d.string(&n)?;
        HostPattern::parse(&s).map_err(|e| d.invalid(&n, e)).ok()
    });
    let mut methods: Vec<String> = Vec::new();
    if let Some(n) = t.get("methods") {
        let items = d.list(&n);
        if items.is_empty() {
            d.invalid(&n, "list the methods, or leave `methods` out to accept any method");
        }
        for item in items {
            let Some(m) = d.string(&item) else { continue };
            let upper = m.to_ascii_uppercase();
            let token = crate::syntax::is_token(&upper);
            if !token {
                d.invalid(&item, format!("`{m}` is not an HTTP method"));
            } else if !KNOWN_METHODS.contains(&upper.as_str()) && m != upper {
                d.invalid(&item, format!("`{m}` is not a standard method; custom methods are case-sensitive, write them in capitals"));
            } else if methods.contains(&upper) {
                d.invalid(&item, format!("`{upper}` is listed twice"));
            } else {
                methods.push(upper);
            }
        }
    }
    let targets: Vec<&str> =
        ["upstream", "respond", "queue", "topic"].into_iter().filter(|k| t.has_key(k)).collect();
    let target = match targets.as_slice() {
        ["upstream"] => t.get("upstream").and_then(|u| d.string(&u)).map(RouteTarget::Upstream),
        ["respond"] => t.get("respond").and_then(|r| decode_respond(d, &r)).map(RouteTarget::Respond),
        ["queue"] => {
            let queue = t.get("queue").and_then(|q| d.string(&q));
            let message = match t.get("message") {
                Some(m) => queues::decode_message(d, &m).unwrap_or_default(),
                None => MessageMapping::default(),
            };
            queue.map(|queue| RouteTarget::Queue { queue, message })
        }
        ["topic"] => {
            let topic = t.get("topic").and_then(|q| d.string(&q));
            let message = match t.get("message") {
                Some(m) => queues::decode_message(d, &m).unwrap_or_default(),
                None => MessageMapping::default(),
            };
            topic.map(|topic| RouteTarget::Topic { topic, message })
        }
        [] => {
            d.invalid(
                node,
                "a route needs a target: `upstream: NAME`, `queue: NAME`, `topic: NAME` or `respond: {...}`",
            );
            None
        }
        many => {
            d.invalid(node, format!("a route has one target, found {}", many.join(" and ")));
            None
        }
    };
    if t.has_key("message") && !t.has_key("queue") && !t.has_key("topic") {
        d.report(Problem::at_key(
            t.path.key("message"),
            "`message` applies to routes with `queue` or `topic`",
        ));
    }
    if let (Some(RouteTarget::Queue { message, .. }), Some(m)) = (&target, t.get("message")) {
        if message.subject.is_some() {
            d.report(Problem::at_key(m.path.key("subject"), "`subject` applies to routes with `topic`"));
        }
    }
    let strip_prefix = t.get("strip_prefix").and_then(|n| {
        let s = d.string(&n)?;
        let clean = s.trim_end_matches('/');
        if !s.starts_with('/') || clean.is_empty() {
            d.invalid(&n, format!("expected a path prefix such as `/api`, found `{s}`"));
            return None;
        }
        if let Some(p) = &path {
            let lit = p.literal_prefix();
            let covered = lit == clean || lit.starts_with(&format!("{clean}/"));
            if !covered {
                d.invalid(&n, format!("`{clean}` is not a leading part of the route's path `{p}`, so it could not be stripped"));
            }
        }
        Some(clean.to_owned())
    });
    let timeout = t.get("timeout").and_then(|n| positive_duration(d, &n));
    let max_body = t.get("max_body").and_then(|n| d.size(&n)).unwrap_or(defaults::MAX_BODY);
    let upgrades = match t.get("upgrades") {
        None => vec!["websocket".to_owned()],
        Some(n) => decode_upgrades(d, &n),
    };
    let throttle = match t.get("throttle") {
        None => RouteThrottle::Inherit,
        Some(n) => match edge::decode_throttle(d, &n) {
            None => RouteThrottle::Off,
            Some(limits) => RouteThrottle::Limits(limits),
        },
    };
    let auth = edge::decode_route_auth(d, &t);
    let waf = t.get("waf").and_then(|n| waf::decode_route_waf(d, &n)).unwrap_or_default();
    Some(RouteConfig {
        name: name?,
        host,
        path: path?,
        methods,
        target: target?,
        strip_prefix,
        timeout,
        max_body,
        upgrades,
        throttle,
        auth,
        waf,
        key: node.path.clone(),
    })
}

fn decode_respond(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<FixedResponse> {
    let t = d.table(node, &["status", "body", "content_type", "headers"], &[])?;
    let status = t.get("status").and_then(|n| d.integer(&n, 200, 599)).unwrap_or(200) as u16;
    let body = t.get("body").and_then(|n| d.string(&n)).unwrap_or_default();
    let content_type = t
        .get("content_type")
        .and_then(|n| d.string(&n))
        .unwrap_or_else(|| "text/plain; charset=utf-8".into());
    let mut headers = Vec::new();
    if let Some(h) = t.get("headers") {
        for (name, v) in d.entries(&h) {
            let valid_name = crate::syntax::is_token(&name);
            if !valid_name {
                d.invalid(&v, format!("`{name}` is not a valid header name"));
                continue;
            }
            if let Some(value) = d.string(&v) {
                if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                    d.invalid(&v, "header values cannot contain control characters");
                    continue;
                }
                headers.push((name.to_ascii_lowercase(), value));
            }
        }
    }
    Some(FixedResponse { status, body, content_type, headers })
}

/// Cross-checks between sections; every problem is returned.
fn validate(c: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();

    let mut binds = HashSet::new();
    // Port 0 asks the system for a free port, so it never clashes.
    for g in &c.listen.gateway {
        if g.bind.port() != 0 && !binds.insert(g.bind) {
            problems.push(Problem::at_value(g.key.key("bind"), format!("{} is bound twice", g.bind)));
        }
        if let Some(tls) = &g.tls {
            for (i, cert) in tls.certificates.iter().enumerate().skip(1) {
                if cert.hosts.is_empty() {
                    problems.push(Problem::at_value(
                        cert.key.clone(),
                        format!(
                            "certificate {} has no `hosts`; only the first certificate can be the default",
                            i + 1
                        ),
                    ));
                }
            }
        }
    }
    if let Some(aws) = &c.listen.aws {
        if aws.bind.port() != 0 && !binds.insert(aws.bind) {
            problems.push(Problem::at_value(
                KeyPath::root().key("listen").key("aws").key("bind"),
                format!("{} is already a gateway listener", aws.bind),
            ));
        }
    }
    if let Some(admin) = c.listen.admin {
        if admin.port() != 0 && binds.contains(&admin) {
            problems.push(Problem::at_value(
                KeyPath::root().key("listen").key("admin").key("bind"),
                format!("{admin} is already a gateway listener"),
            ));
        }
    }

    for (name, q) in &c.queues {
        let Some(dl) = &q.dead_letter else { continue };
        let at = q.key.key("dead_letter").key("queue");
        match c.queues.get(&dl.queue) {
            None => {
                let mut msg = format!("unknown queue `{}`", dl.queue);
                if let Some(s) = problem::suggest(&dl.queue, c.queues.keys().map(String::as_str)) {
                    msg.push_str(&format!(" (did you mean `{s}`?)"));
                }
                problems.push(Problem::at_value(at, msg));
            }
            Some(_) if dl.queue == *name => {
                problems.push(Problem::at_value(at, "a queue cannot be its own dead-letter queue"))
            }
            Some(target) if target.fifo != q.fifo => problems.push(Problem::at_value(
                at,
                "a dead-letter queue must be of the same type (FIFO or standard) as its source",
            )),
            Some(_) => {}
        }
    }

    for t in c.topics.values() {
        problems.extend(validate_subscriptions(c, t));
    }
    for a in c.alarms.values() {
        problems.extend(validate_alarm(c, a));
    }

    let mut names: BTreeMap<&str, &RouteConfig> = BTreeMap::new();
    for (i, r) in c.routes.iter().enumerate() {
        if let Some(first) = names.insert(&r.name, r) {
            problems.push(Problem::at_value(
                r.key.key("name"),
                format!("route name `{}` is already used by {}", r.name, first.key),
            ));
        }
        if let RouteTarget::Topic { topic, .. } = &r.target {
            if !c.topics.contains_key(topic) {
                let mut msg = format!("unknown topic `{topic}`");
                match problem::suggest(topic, c.topics.keys().map(String::as_str)) {
                    Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
                    None => msg.push_str("; routes publish to topics declared under `topics`"),
                }
                problems.push(Problem::at_value(r.key.key("topic"), msg));
            }
        }
        if let RouteTarget::Queue { queue, .. } = &r.target {
            if !c.queues.contains_key(queue) {
                let mut msg = format!("unknown queue `{queue}`");
                match problem::suggest(queue, c.queues.keys().map(String::as_str)) {
                    Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
                    None => msg.push_str("; routes publish into queues declared under `queues`"),
                }
                problems.push(Problem::at_value(r.key.key("queue"), msg));
            }
        }
        if let RouteTarget::Upstream(u) = &r.target {
            if !c.upstreams.contains_key(u) {
                let mut msg = format!("unknown upstream `{u}`");
                match problem::suggest(u, c.upstreams.keys().map(String::as_str)) {
                    Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
                    None if c.upstreams.is_empty() => msg.push_str("; no `upstreams` are declared"),
                    None => {}
                }
                problems.push(Problem::at_value(r.key.key("upstream"), msg));
            }
        }
        problems.extend(validate_route_protection(c, r));
        // A route identical in host and path to an earlier one, with
        // overlapping methods, can never be chosen for those methods.
        for earlier in &c.routes[..i] {
            if earlier.host != r.host || earlier.path != r.path {
                continue;
            }
            let overlap = earlier.methods.is_empty() && r.methods.is_empty()
                || r.methods.iter().any(|m| earlier.methods.contains(m));
            if overlap {
                problems.push(Problem::at_value(
                    r.key.key("path"),
                    format!(
                        "route `{}` has the same host, path and methods as route `{}`, so one of them could never match",
                        r.name, earlier.name
                    ),
                ));
            }
        }
    }
    problems
}

/// Headers `claims_to_headers` may not set: framing, routing and the
/// headers gatehouse itself sets towards the upstream.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "x-request-id",
    "forwarded",
    "authorization",
];

/// A route's auth provider exists, and what needs a token has one.
fn validate_route_protection(c: &Config, r: &RouteConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(a) = &r.auth {
        if c.provider(&a.provider).is_none() {
            let mut msg = format!("unknown JWT provider `{}`", a.provider);
            match problem::suggest(&a.provider, c.auth.iter().map(|p| p.name.as_str())) {
                Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
                None => msg.push_str("; providers are declared under `auth.jwt`"),
            }
            problems.push(Problem::at_value(a.at.clone(), msg));
        }
        for (_, h) in &a.claims_to_headers {
            if RESERVED_HEADERS.contains(&h.as_str()) || h.starts_with("x-forwarded-") {
                problems.push(Problem::at_value(
                    r.key.key("claims_to_headers"),
                    format!("`{h}` is set by gatehouse or frames the request; choose another header"),
                ));
            }
        }
    }
    if r.auth.is_none() {
        for l in c.limits_of(r) {
            if let LimitKey::Jwt(_) = &l.key {
                let msg = if matches!(r.throttle, RouteThrottle::Inherit) {
                    format!("the default `throttle` counts by `{}`, but route `{}` has no `auth`; give the route `auth` or its own `throttle`", l.key, r.name)
                } else {
                    format!("`{}` needs a verified token: the route has no `auth`", l.key)
                };
                let at = if matches!(r.throttle, RouteThrottle::Inherit) {
                    r.key.key("name")
                } else {
                    l.at.key("key")
                };
                problems.push(Problem::at_value(at, msg));
            }
        }
        if let RouteTarget::Queue { message, .. } | RouteTarget::Topic { message, .. } = &r.target {
            if message.uses_claims() {
                problems.push(Problem::at_value(
                    r.key.key("message"),
                    "`jwt:` sources need a verified token: the route has no `auth`",
                ));
            }
        }
    }
    if let (RouteWaf::Tuned(t), None) = (&r.waf, &c.waf) {
        problems.push(Problem::at_value(
            t.at.clone(),
            "the route tunes the WAF, but there is no top-level `waf` to turn it on",
        ));
    }
    problems
}

impl Config {
    /// The WAF settings `route` runs with, if it is inspected.
    pub fn waf_of<'a>(
        &'a self,
        route: &'a RouteConfig,
    ) -> Option<(&'a WafConfig, Option<&'a waf::WafTuning>)> {
        let top = self.waf.as_ref()?;
        match &route.waf {
            RouteWaf::Off => None,
            RouteWaf::Inherit => Some((top, None)),
            RouteWaf::Tuned(t) => Some((top, Some(t))),
        }
    }
}

#[cfg(test)]
mod tests;
