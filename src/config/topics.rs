//! `topics:` of `routes.yaml`: topics and their subscriptions.
//!
//! ```yaml
//! topics:
//!   order-events:
//!     display_name: Orders
//!     subscriptions:
//!       - queue: orders            # a queue declared under `queues`
//!         raw: true
//!         filter: { type: [created] }
//!       - url: https://hooks.example.com/orders
//!         confirmed: true          # the operator vouches for the endpoint
//!         dead_letter: orders-dlq
//!   payments.fifo: { content_based_deduplication: true }
//! ```

use super::decode::{Decoder, Node};
use super::problem::KeyPath;

#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    pub fifo: bool,
    pub content_based_deduplication: bool,
    pub display_name: Option<String>,
    pub subscriptions: Vec<SubscriptionConfig>,
    pub key: KeyPath,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    /// A queue declared under `queues`.
    Queue(String),
    /// An `http://` or `https://` URL.
    Url(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionConfig {
    pub endpoint: Endpoint,
    pub raw: bool,
    /// The filter policy as JSON text (checked when the topic engine
    /// applies it).
    pub filter: Option<String>,
    /// The policy judges the message body (`body`) rather than its
    /// attributes (`attributes`, the default).
    pub filter_body: bool,
    /// URL subscriptions only: start confirmed.
    pub confirmed: bool,
    /// Where deliveries that exhaust their retries go (a declared queue).
    pub dead_letter: Option<String>,
    pub key: KeyPath,
}

const TOPIC_KEYS: &[&str] = &["display_name", "content_based_deduplication", "subscriptions"];
const SUBSCRIPTION_KEYS: &[&str] =
    &["queue", "url", "raw", "filter", "filter_scope", "confirmed", "dead_letter"];

pub(super) fn decode_topic(d: &mut Decoder<'_>, name: &str, node: &Node<'_>) -> Option<TopicConfig> {
    let fifo = name.ends_with(".fifo");
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    let valid = !stem.is_empty()
        && name.len() <= 256
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        d.invalid(node, format!("`{name}` is not a topic name: 1-256 letters, digits, hyphens and underscores (and `.fifo` for FIFO topics)"));
    }
    let mut topic = TopicConfig {
        fifo,
        content_based_deduplication: false,
        display_name: None,
        subscriptions: Vec::new(),
        key: node.path.clone(),
    };
    if node.value.is_null() {
        return Some(topic);
    }
    let t = d.table(node, TOPIC_KEYS, &[])?;
    topic.display_name = t.get("display_name").and_then(|n| d.string(&n));
    if let Some(n) = t.get("content_based_deduplication") {
        topic.content_based_deduplication = d.bool(&n).unwrap_or(false);
        if !fifo && topic.content_based_deduplication {
            d.invalid(&n, "only FIFO topics (named `….fifo`) deduplicate");
        }
    }
    if let Some(n) = t.get("subscriptions") {
        topic.subscriptions = d.list(&n).iter().filter_map(|s| decode_subscription(d, s)).collect();
    }
    Some(topic)
}

fn decode_subscription(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<SubscriptionConfig> {
    let t = d.table(node, SUBSCRIPTION_KEYS, &[])?;
    let endpoint = match (t.get("queue"), t.get("url")) {
        (Some(q), None) => Endpoint::Queue(d.string(&q)?),
        (None, Some(u)) => {
            let url = d.string(&u)?;
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.parse::<http::Uri>().is_ok_and(|x| x.host().is_some());
            if !ok {
                d.invalid(&u, format!("`{url}` is not an http:// or https:// URL"));
                return None;
            }
            Endpoint::Url(url)
        }
        _ => {
            d.invalid(node, "a subscription names one endpoint: `queue: NAME` or `url: URL`");
            return None;
        }
    };
    let flag = |d: &mut Decoder<'_>, key: &str| t.get(key).and_then(|n| d.bool(&n)).unwrap_or(false);
    let raw = flag(d, "raw");
    let confirmed = flag(d, "confirmed");
    if confirmed && matches!(endpoint, Endpoint::Queue(_)) {
        d.invalid(
            node,
            "`confirmed` applies to `url` subscriptions (queue subscriptions need no confirmation)",
        );
    }
    let filter = t.get("filter").and_then(|n| match serde_json::to_string(n.value) {
        Ok(text) if n.value.is_mapping() => Some(text),
        _ => {
            d.invalid(
                &n,
                "a filter policy is a map of keys to lists of conditions, as in `{ type: [created] }`",
            );
            None
        }
    });
    let filter_body = match t.get("filter_scope") {
        None => false,
        Some(n) => match d.string(&n).as_deref() {
            Some("attributes") => false,
            Some("body") => true,
            Some(other) => {
                d.invalid(&n, format!("expected `attributes` or `body`, found `{other}`"));
                false
            }
            None => false,
        },
    };
    let dead_letter = t.get("dead_letter").and_then(|n| d.string(&n));
    Some(SubscriptionConfig {
        endpoint,
        raw,
        filter,
        filter_body,
        confirmed,
        dead_letter,
        key: node.path.clone(),
    })
}

/// A queue measure an alarm watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmMetric {
    Visible,
    InFlight,
    Delayed,
    /// The oldest message's age, in seconds.
    OldestAge,
    /// Messages that arrived in the queue's dead-letter queue.
    DeadLetter,
}

/// `alarms.NAME`: a condition on a queue measure, and who hears of it.
#[derive(Clone, Debug, PartialEq)]
pub struct AlarmConfig {
    pub queue: String,
    pub metric: AlarmMetric,
    /// `true`: fires above the threshold; `false`: below.
    pub above: bool,
    /// Messages, or seconds for `oldest_age`.
    pub threshold: f64,
    /// How long the condition must hold before the state changes.
    pub hold: std::time::Duration,
    /// Topics told of each change.
    pub notify: Vec<String>,
    pub key: KeyPath,
}

pub(super) fn decode_alarm(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<AlarmConfig> {
    let t = d.table(node, &["queue", "metric", "above", "below", "for", "notify"], &[])?;
    let queue = t.require(d, "queue").and_then(|n| d.string(&n));
    let metric = t.require(d, "metric").and_then(|n| {
        let name = d.string(&n)?;
        let m = match name.as_str() {
            "visible" => AlarmMetric::Visible,
            "in_flight" => AlarmMetric::InFlight,
            "delayed" => AlarmMetric::Delayed,
            "oldest_age" => AlarmMetric::OldestAge,
            "dead_letter" => AlarmMetric::DeadLetter,
            other => {
                d.invalid(&n, format!("expected one of visible, in_flight, delayed, oldest_age, dead_letter; found `{other}`"));
                return None;
            }
        };
        Some(m)
    });
    let (above, threshold_node) = match (t.get("above"), t.get("below")) {
        (Some(n), None) => (true, n),
        (None, Some(n)) => (false, n),
        _ => {
            d.invalid(node, "an alarm has one threshold: `above: N` or `below: N`");
            return None;
        }
    };
    let threshold = match metric? {
        AlarmMetric::OldestAge => d.duration(&threshold_node).map(|x| x.as_secs_f64()),
        _ => match threshold_node.value.as_f64() {
            Some(x) if x >= 0.0 => Some(x),
            _ => {
                d.invalid(&threshold_node, "expected a number of messages");
                None
            }
        },
    };
    let hold = match t.get("for") {
        Some(n) => d.duration(&n),
        None => Some(std::time::Duration::ZERO),
    };
    let notify = match t.get("notify") {
        Some(n) => d.list(&n).iter().filter_map(|x| d.string(x)).collect(),
        None => Vec::new(),
    };
    Some(AlarmConfig {
        queue: queue?,
        metric: metric?,
        above,
        threshold: threshold?,
        hold: hold?,
        notify,
        key: node.path.clone(),
    })
}
