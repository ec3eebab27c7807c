//! The admin listener: `/metrics` (Prometheus/OpenMetrics text),
//! `/healthz` (the process answers) and `/readyz` (every listener is bound,
//! every upstream's health is known, and the gateway is not draining).
//!
//! Read-only: it looks at handles the app gives it and changes nothing.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tower::Service;

use crate::body::GatewayBody;
use crate::middleware::auth::Provider;
use crate::proxy::{TargetSnapshot, Upstream};
use crate::queue::storage::sqlite::SqliteStorage;
use crate::queue::QueueEngine;
use crate::server::ListenerStats;

/// The upstreams currently in use; replaced on reload.
pub type UpstreamSet = Arc<ArcSwap<Vec<Upstream>>>;

/// The JWT providers currently in use; replaced on reload.
pub type ProviderSet = Arc<ArcSwap<Vec<Arc<Provider>>>>;

/// What `/readyz` looks at.
#[derive(Clone)]
pub struct Readiness {
    /// Set once every listener is bound.
    pub listening: Arc<AtomicBool>,
    /// Set when shutdown begins.
    pub draining: Arc<AtomicBool>,
    pub upstreams: UpstreamSet,
    pub providers: ProviderSet,
}

impl Readiness {
    /// Reasons the gateway is not ready; empty when it is.
    pub fn waiting_for(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.draining.load(Ordering::Relaxed) {
            reasons.push("shutting down".to_owned());
        }
        if !self.listening.load(Ordering::Relaxed) {
            reasons.push("listeners are not bound yet".to_owned());
        }
        for u in self.upstreams.load().iter() {
            if !u.health_known() {
                reasons.push(format!("first health check of upstream `{}`", u.name()));
            }
        }
        for p in self.providers.load().iter() {
            if !p.has_keys() {
                reasons.push(format!("JWT provider `{}` has no keys yet", p.name()));
            }
        }
        reasons
    }
}

/// Serves the admin endpoints.
#[derive(Clone)]
pub struct AdminService {
    registry: Arc<Registry>,
    readiness: Readiness,
}

impl AdminService {
    pub fn new(registry: Arc<Registry>, readiness: Readiness) -> Self {
        Self { registry, readiness }
    }

    fn answer(&self, req: &Request<crate::body::ClientBody>) -> Response<GatewayBody> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r =
                json(StatusCode::METHOD_NOT_ALLOWED, serde_json::json!({"error": "method_not_allowed"}));
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        match req.uri().path() {
            "/metrics" => {
                let mut text = String::new();
                if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
                    return json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        serde_json::json!({"error": "metrics_encoding_failed", "message": e.to_string()}),
                    );
                }
                let mut r = Response::new(GatewayBody::full(Bytes::from(text)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                );
                r
            }
            "/healthz" => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
            "/readyz" => {
                let waiting = self.readiness.waiting_for();
                if waiting.is_empty() {
                    json(StatusCode::OK, serde_json::json!({"status": "ready"}))
                } else {
                    json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"status": "not_ready", "waiting_for": waiting}),
                    )
                }
            }
            other => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not_found", "message": format!("no admin endpoint at {other}; try /metrics, /healthz or /readyz")}),
            ),
        }
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<GatewayBody> {
    let mut body = serde_json::to_vec(&value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(GatewayBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

impl Service<Request<crate::body::ClientBody>> for AdminService {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<crate::body::ClientBody>) -> Self::Future {
        let resp = self.answer(&req);
        Box::pin(async move { Ok(resp) })
    }
}

/// Exposes listener connection counters at scrape time.
pub struct ListenerCollector {
    pub listeners: Vec<(String, Arc<ListenerStats>)>,
}

impl fmt::Debug for ListenerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerCollector").field("listeners", &self.listeners.len()).finish()
    }
}

impl Collector for ListenerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let label = |name: &String| [("listener", name.clone())];
        {
            let mut e = encoder.encode_descriptor(
                "gatehouse_connections_active",
                "Open client connections, by listener",
                None,
                MetricType::Gauge,
            )?;
            for (name, s) in &self.listeners {
                ConstGauge::new(s.active() as i64).encode(e.encode_family(&label(name))?)?;
            }
        }
        {
            let mut e = encoder.encode_descriptor(
                "gatehouse_worker_connections_active",
                "Open client connections, by listener and the data-plane worker serving them",
                None,
                MetricType::Gauge,
            )?;
            for (name, s) in &self.listeners {
                // The last entry counts connections served off the workers.
                let workers = &s.per_worker[..s.per_worker.len() - 1];
                for (w, open) in workers.iter().enumerate() {
                    ConstGauge::new(open.load(Ordering::Relaxed) as i64)
                        .encode(e.encode_family(&[("listener", name.clone()), ("worker", w.to_string())])?)?;
                }
            }
        }
        let counters: [ListenerCounter; 4] = [
            ("gatehouse_connections_accepted", "Client connections accepted, by listener", |s| &s.accepted),
            (
                "gatehouse_tls_handshake_failures",
                "TLS handshakes that failed or timed out, by listener",
                |s| &s.handshake_failures,
            ),
            (
                "gatehouse_header_read_timeouts",
                "Connections closed because a request head did not arrive within header_read_timeout, by listener",
                |s| &s.header_timeouts,
            ),
            (
                "gatehouse_request_body_timeouts",
                "Requests whose body stalled longer than body_timeout (answered 408), by listener",
                |s| &s.body_timeouts,
            ),
        ];
        for (metric, help, counter) in counters {
            let mut e = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for (name, s) in &self.listeners {
                ConstCounter::new(counter(s).load(Ordering::Relaxed))
                    .encode(e.encode_family(&label(name))?)?;
            }
        }
        Ok(())
    }
}

/// A listener counter: metric name, help, and where `ListenerStats` keeps it.
type ListenerCounter = (&'static str, &'static str, fn(&ListenerStats) -> &AtomicU64);
type GaugeRow = (&'static str, &'static str, fn(&TargetSnapshot) -> i64);
type CounterRow = (&'static str, &'static str, fn(&TargetSnapshot) -> u64);

/// Exposes upstream target health and load at scrape time.
#[derive(Debug)]
pub struct UpstreamCollector {
    pub upstreams: UpstreamSet,
}

impl Collector for UpstreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let upstreams = self.upstreams.load();
        let rows: Vec<([(&str, String); 2], TargetSnapshot)> = upstreams
            .iter()
            .flat_map(|u| {
                u.snapshot()
                    .into_iter()
                    .map(move |t| ([("upstream", u.name().to_string()), ("target", t.label.to_string())], t))
            })
            .collect();
        let gauges: [GaugeRow; 2] = [
            (
                "gatehouse_upstream_target_healthy",
                "1 when the target takes requests (not failed by health checks, not ejected)",
                |t| i64::from(t.usable),
            ),
            ("gatehouse_upstream_target_in_flight", "Requests in flight to the target", |t| {
                t.in_flight as i64
            }),
        ];
        for (name, help, value) in gauges {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, t) in &rows {
                ConstGauge::new(value(t)).encode(e.encode_family(labels)?)?;
            }
        }
        let counters: [CounterRow; 3] = [
            ("gatehouse_upstream_target_requests", "Attempts sent to the target", |t| t.requests),
            ("gatehouse_upstream_target_failures", "Connect failures and 5xx answers from the target", |t| {
                t.failures
            }),
            (
                "gatehouse_upstream_target_ejections",
                "Times passive health checking ejected the target",
                |t| t.ejections,
            ),
        ];
        for (name, help, value) in counters {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, t) in &rows {
                ConstCounter::new(value(t)).encode(e.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

/// Exposes topic activity at scrape time: messages published per topic,
/// and HTTP(S) delivery outcomes.
pub struct TopicCollector {
    topics: Arc<crate::notify::Notifier<SqliteStorage>>,
}

impl TopicCollector {
    pub fn new(topics: Arc<crate::notify::Notifier<SqliteStorage>>) -> Self {
        Self { topics }
    }
}

impl fmt::Debug for TopicCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicCollector").finish()
    }
}

impl Collector for TopicCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut e = encoder.encode_descriptor(
            "gatehouse_topic_messages_published",
            "Messages published to the topic (duplicates on FIFO topics excluded)",
            None,
            MetricType::Counter,
        )?;
        for t in self.topics.topics() {
            let n = t.published.load(Ordering::Relaxed);
            ConstCounter::new(n).encode(e.encode_family(&[("topic", t.name().to_owned())])?)?;
        }
        let d = self.topics.delivery_stats();
        let mut e = encoder.encode_descriptor(
            "gatehouse_topic_deliveries",
            "HTTP(S) delivery attempts by outcome: delivered (2xx), retried, dead_lettered or dropped (given up)",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in [
            ("delivered", &d.delivered),
            ("retried", &d.retried),
            ("dead_lettered", &d.dead_lettered),
            ("dropped", &d.dropped),
        ] {
            ConstCounter::new(n.load(Ordering::Relaxed)).encode(e.encode_family(&[("outcome", outcome)])?)?;
        }
        let alarms = self.topics.alarm_statuses();
        let mut e = encoder.encode_descriptor(
            "gatehouse_alarm_state",
            "1 while the alarm is in the ALARM state, 0 while OK",
            None,
            MetricType::Gauge,
        )?;
        for a in &alarms {
            let labels = [("alarm", a.name.clone()), ("queue", a.queue.clone())];
            ConstGauge::new(i64::from(a.firing)).encode(e.encode_family(&labels)?)?;
        }
        let mut e = encoder.encode_descriptor(
            "gatehouse_alarm_value",
            "The value the alarm last observed",
            None,
            MetricType::Gauge,
        )?;
        for a in &alarms {
            ConstGauge::new(a.value).encode(e.encode_family(&[("alarm", a.name.clone())])?)?;
        }
        Ok(())
    }
}

/// Exposes per-queue depth and activity at scrape time: visible, in-flight
/// and delayed counts and the age of the oldest message (refreshed every few
/// seconds and on `GetQueueAttributes`), counters of sent, received,
/// deleted and dead-lettered messages, and the time receives waited.
pub struct QueueCollector {
    engine: Arc<QueueEngine<SqliteStorage>>,
}

impl QueueCollector {
    pub fn new(engine: Arc<QueueEngine<SqliteStorage>>) -> Self {
        Self { engine }
    }
}

impl fmt::Debug for QueueCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueCollector").finish()
    }
}

impl Collector for QueueCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let queues = self.engine.all();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let label = |q: &crate::queue::Queue| [("queue", q.name.clone())];
        type Gauge = (&'static str, &'static str, fn(&crate::queue::storage::Counts, i64) -> i64);
        let gauges: [Gauge; 4] = [
            ("gatehouse_queue_messages_visible", "Messages ready to be received", |c, _| c.visible as i64),
            ("gatehouse_queue_messages_in_flight", "Messages received and not yet deleted", |c, _| {
                c.in_flight as i64
            }),
            ("gatehouse_queue_messages_delayed", "Messages not yet visible because of a delay", |c, _| {
                c.delayed as i64
            }),
            (
                "gatehouse_queue_oldest_message_age_seconds",
                "Age of the oldest message in the queue",
                |c, now| c.oldest_sent_ms.map_or(0, |t| (now - t).max(0) / 1000),
            ),
        ];
        for (name, help, value) in gauges {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for q in &queues {
                ConstGauge::new(value(&q.last_counts(), now_ms)).encode(e.encode_family(&label(q))?)?;
            }
        }
        type Counter = (&'static str, &'static str, fn(&crate::queue::QueueStats) -> u64);
        let counters: [Counter; 4] = [
            ("gatehouse_queue_messages_sent", "Messages stored (duplicates excluded)", |s| {
                s.sent.load(Ordering::Relaxed)
            }),
            ("gatehouse_queue_messages_received", "Messages handed to receivers", |s| {
                s.received.load(Ordering::Relaxed)
            }),
            ("gatehouse_queue_messages_deleted", "Messages deleted by receivers", |s| {
                s.deleted.load(Ordering::Relaxed)
            }),
            (
                "gatehouse_queue_messages_moved_to_dead_letter",
                "Messages moved to the dead-letter queue",
                |s| s.moved_to_dead_letter.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for q in &queues {
                ConstCounter::new(value(&q.stats)).encode(e.encode_family(&label(q))?)?;
            }
        }
        let mut e = encoder.encode_descriptor(
            "gatehouse_queue_receive_wait_seconds",
            "Time long-polling receives waited",
            None,
            MetricType::Histogram,
        )?;
        for q in &queues {
            q.stats.receive_wait.encode(e.encode_family(&label(q))?)?;
        }
        Ok(())
    }
}
