//! The request metrics every gateway route reports, as prometheus-client
//! handles. Registered once at startup; the admin listener exposes them.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: Arc<String>,
    pub status: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: Arc<String>,
}

/// One limit of one route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub route: Arc<String>,
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabel {
    pub route: Arc<String>,
    pub limit: String,
    /// `idle` (a full bucket, nothing lost) or `capacity` (`max_keys`).
    pub reason: &'static str,
}

/// The throttle's metric families.
#[derive(Clone, Debug, Default)]
pub struct ThrottleMetrics {
    pub throttled: Family<LimitLabel, Counter>,
    pub keys: Family<LimitLabel, Gauge>,
    pub evictions: Family<EvictionLabel, Counter>,
}

impl ThrottleMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "gatehouse_throttled_requests",
            "Requests refused with 429, by route and limit",
            self.throttled.clone(),
        );
        registry.register(
            "gatehouse_throttle_keys",
            "Buckets a limit holds now, by route and limit",
            self.keys.clone(),
        );
        registry.register(
            "gatehouse_throttle_evictions",
            "Buckets dropped, by route, limit and reason (idle: full again, nothing lost; capacity: to stay within max_keys)",
            self.evictions.clone(),
        );
    }
}

/// One WAF rule.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: u32,
    pub family: String,
}

/// A WAF decision on one route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WafLabel {
    pub route: Arc<String>,
    /// `blocked`, or `detected` (would have been blocked, in `detect` mode).
    pub outcome: &'static str,
}

/// The WAF's metric families.
#[derive(Clone, Debug, Default)]
pub struct WafMetrics {
    pub matches: Family<RuleLabel, Counter>,
    pub decisions: Family<WafLabel, Counter>,
}

impl WafMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "gatehouse_waf_rule_matches",
            "Requests a WAF rule matched (in any mode), by rule and family",
            self.matches.clone(),
        );
        registry.register(
            "gatehouse_waf_requests",
            "Requests the WAF blocked (outcome=blocked) or would have blocked in detect mode (outcome=detected), by route",
            self.decisions.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

/// The JWT providers' metric families.
#[derive(Clone, Debug, Default)]
pub struct AuthMetrics {
    pub cache_hits: Family<ProviderLabel, Counter>,
    pub cache_misses: Family<ProviderLabel, Counter>,
    pub cache_entries: Family<ProviderLabel, Gauge>,
}

impl AuthMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "gatehouse_jwt_cache_hits",
            "Tokens found verified in the cache, by provider",
            self.cache_hits.clone(),
        );
        registry.register(
            "gatehouse_jwt_cache_misses",
            "Tokens not in the cache (verified, or refused), by provider",
            self.cache_misses.clone(),
        );
        registry.register(
            "gatehouse_jwt_cache_entries",
            "Verified tokens held in the cache, by provider",
            self.cache_entries.clone(),
        );
    }
}

/// `1xx` … `5xx`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Informational => "1xx",
            Self::Success => "2xx",
            Self::Redirection => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
        })
    }
}

impl StatusClass {
    pub fn of(status: http::StatusCode) -> Self {
        match status.as_u16() {
            100..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Handles for the HTTP request metrics.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    pub requests: Family<RouteStatus, Counter>,
    pub duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
    /// Requests that matched no route.
    pub unmatched: Arc<RouteStats>,
    pub throttle: ThrottleMetrics,
    pub auth: AuthMetrics,
    pub waf: WafMetrics,
}

/// One route's metric handles, resolved once so that recording a request
/// is a few atomic adds (no label hashing per request).
#[derive(Debug)]
pub struct RouteStats {
    pub name: Arc<String>,
    by_class: [Counter; 5],
    duration: Histogram,
}

impl RouteStats {
    pub fn record(&self, status: http::StatusCode, seconds: f64) {
        let i = match StatusClass::of(status) {
            StatusClass::Informational => 0,
            StatusClass::Success => 1,
            StatusClass::Redirection => 2,
            StatusClass::ClientError => 3,
            StatusClass::ServerError => 4,
        };
        self.by_class[i].inc();
        self.duration.observe(seconds);
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    /// Handles not yet exposed anywhere; see [`HttpMetrics::register`].
    pub fn new() -> Self {
        let requests: Family<RouteStatus, Counter> = Family::default();
        let duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let unmatched = Arc::new(Self::stats(&requests, &duration, Arc::new(String::new())));
        Self {
            requests,
            duration,
            in_flight: Gauge::default(),
            unmatched,
            throttle: ThrottleMetrics::default(),
            auth: AuthMetrics::default(),
            waf: WafMetrics::default(),
        }
    }

    /// The handles of route `name` (created on first use).
    pub fn route(&self, name: &Arc<String>) -> Arc<RouteStats> {
        Arc::new(Self::stats(&self.requests, &self.duration, name.clone()))
    }

    fn stats(
        requests: &Family<RouteStatus, Counter>,
        duration: &Family<RouteLabel, Histogram, fn() -> Histogram>,
        name: Arc<String>,
    ) -> RouteStats {
        let classes = [
            StatusClass::Informational,
            StatusClass::Success,
            StatusClass::Redirection,
            StatusClass::ClientError,
            StatusClass::ServerError,
        ];
        RouteStats {
            by_class: classes
                .map(|status| requests.get_or_create_owned(&RouteStatus { route: name.clone(), status })),
            duration: duration.get_or_create_owned(&RouteLabel { route: name.clone() }),
            name,
        }
    }

    /// Exposes these metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "gatehouse_http_requests",
            "Requests answered by the gateway listeners, by route and status class (route is empty when none matched)",
            m.requests.clone(),
        );
        registry.register(
            "gatehouse_http_request_duration_seconds",
            "Time from request to the end of the response body, by route",
            m.duration.clone(),
        );
        registry.register(
            "gatehouse_http_requests_in_flight",
            "Requests being answered now",
            m.in_flight.clone(),
        );
        m.throttle.register(registry);
        m.auth.register(registry);
        m.waf.register(registry);
    }
}
