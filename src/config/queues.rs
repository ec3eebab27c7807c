//! The queue side of `routes.yaml`: `aws`, `storage`, `queues`,
//! `listen.aws`, and the `message` mapping of routes that publish into a
//! queue.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::decode::{Decoder, Node};
use super::{KeyPath, Problem};

/// `aws:`: who the queues belong to.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsConfig {
    /// 12 digits; appears in queue URLs and ARNs.
    pub account_id: String,
    pub region: String,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self { account_id: "000000000000".into(), region: "us-east-1".into() }
    }
}

/// How commits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync at every commit (the default): acknowledged messages survive
    /// power loss.
    Full,
    /// Acknowledged messages survive a process crash, not a power loss.
    Normal,
}

/// `storage:`: where queues live.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    /// A directory (relative to the config file).
    pub path: PathBuf,
    pub sync: SyncMode,
    /// SQLite page cache.
    pub cache: u64,
}

/// `listen.aws`: the SQS-compatible API for workers.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsListener {
    pub bind: SocketAddr,
    /// `(access_key, secret_key)` pairs; when not empty, every request must
    /// be signed (SigV4) with one of them.
    pub credentials: Vec<(String, String)>,
    /// Longest wait for the next bytes of a request body (408 after it).
    pub body_timeout: Duration,
}

/// `queues.<name>`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    pub fifo: bool,
    pub visibility_timeout: Duration,
    pub retention: Duration,
    pub delay: Duration,
    pub max_message_size: u64,
    pub receive_wait: Duration,
    pub dead_letter: Option<DeadLetter>,
    pub content_based_deduplication: bool,
    pub tags: BTreeMap<String, String>,
    pub key: KeyPath,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub queue: String,
    pub max_receives: u32,
}

/// Where a message field comes from when a route publishes a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSource {
    /// A request header (lower case).
    Header(String),
    /// A claim of the token the route's `auth` verified (`jwt:sub`).
    Jwt(String),
}

impl MessageMapping {
    /// The `jwt:` sources, which need a route with `auth`.
    pub fn uses_claims(&self) -> bool {
        let all = self
            .group_id
            .iter()
            .chain(&self.dedup_id)
            .chain(&self.subject)
            .chain(self.attributes.iter().map(|(_, s)| s));
        all.into_iter().any(|s| matches!(s, ValueSource::Jwt(_)))
    }
}

/// `message:` of a route with `queue:` or `topic:`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageMapping {
    pub group_id: Option<ValueSource>,
    pub dedup_id: Option<ValueSource>,
    /// Topics only: the notification's `Subject`.
    pub subject: Option<ValueSource>,
    pub attributes: Vec<(String, ValueSource)>,
}

impl QueueConfig {
    fn defaults(fifo: bool, key: KeyPath) -> Self {
        Self {
            fifo,
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(4 * 86_400),
            delay: Duration::ZERO,
            max_message_size: 256 * 1024,
            receive_wait: Duration::ZERO,
            dead_letter: None,
            content_based_deduplication: false,
            tags: BTreeMap::new(),
            key,
        }
    }

    /// The SQS attribute settings this declaration stands for.
    pub fn sqs_attributes(&self, arn_prefix: &str) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("VisibilityTimeout".into(), self.visibility_timeout.as_secs().to_string());
        m.insert("MessageRetentionPeriod".into(), self.retention.as_secs().to_string());
        m.insert("DelaySeconds".into(), self.delay.as_secs().to_string());
        m.insert("MaximumMessageSize".into(), self.max_message_size.to_string());
        m.insert("ReceiveMessageWaitTimeSeconds".into(), self.receive_wait.as_secs().to_string());
        if let Some(d) = &self.dead_letter {
            m.insert(
                "RedrivePolicy".into(),
                serde_json::json!({ "deadLetterTargetArn": format!("{arn_prefix}{}", d.queue), "maxReceiveCount": d.max_receives })
                    .to_string(),
            );
        } else {
            m.insert("RedrivePolicy".into(), String::new());
        }
        if self.fifo {
            m.insert("ContentBasedDeduplication".into(), self.content_based_deduplication.to_string());
        }
        m
    }
}

pub(super) fn decode_aws(d: &mut Decoder<'_>, node: Option<Node<'_>>) -> AwsConfig {
    let mut aws = AwsConfig::default();
    let Some(node) = node else { return aws };
    let Some(t) = d.table(&node, &["account_id", "region"], &[]) else { return aws };
    if let Some(n) = t.get("account_id") {
        let text = match n.value {
            serde_yaml::Value::Number(x) => Some(format!("{x:0>12}")),
            _ => d.string(&n),
        };
        if let Some(id) = text {
            if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
                aws.account_id = id;
            } else {
                d.invalid(
                    &n,
                    format!("an account id is 12 digits (quote it to keep leading zeros), found `{id}`"),
                );
            }
        }
    }
    if let Some(n) = t.get("region") {
        if let Some(r) = d.string(&n) {
            if !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                aws.region = r;
            } else {
                d.invalid(&n, format!("expected a region name such as `us-east-1`, found `{r}`"));
            }
        }
    }
    aws
}

pub(super) fn default_storage(base: &Path) -> StorageConfig {
    StorageConfig { path: base.join("data"), sync: SyncMode::Full, cache: 64 << 20 }
}

pub(super) fn decode_storage(d: &mut Decoder<'_>, node: Option<Node<'_>>, base: &Path) -> StorageConfig {
    let mut s = default_storage(base);
    let Some(node) = node else { return s };
    let Some(t) = d.table(&node, &["path", "sync", "cache"], &[]) else { return s };
    if let Some(p) = t.get("path").and_then(|n| d.string(&n)) {
        s.path = base.join(p);
    }
    if let Some(n) = t.get("sync") {
        if d.choice(&n, &["full", "normal"]) == Some("normal") {
            s.sync = SyncMode::Normal;
        }
    }
    if let Some(n) = t.get("cache") {
        if let Some(v) = d.size(&n) {
            if !(1 << 20..=16 << 30).contains(&v) {
                d.invalid(&n, "must be between 1MiB and 16GiB");
            }
            s.cache = v;
        }
    }
    s
}

pub(super) fn decode_aws_listener(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<AwsListener> {
    let t = d.table(node, &["bind", "credentials", "body_timeout"], &[])?;
    let bind = match t.get("bind") {
        Some(b) => d.socket_addr(&b)?,
        None => super::defaults::AWS_BIND.parse().expect("valid default"),
    };
    let mut credentials = Vec::new();
    if let Some(list) = t.get("credentials") {
        for item in d.list(&list) {
            let Some(c) = d.table(&item, &["access_key", "secret_key"], &[]) else { continue };
            let key = c.require(d, "access_key").and_then(|n| d.string(&n));
            let secret = c.require(d, "secret_key").and_then(|n| d.string(&n));
            if let (Some(k), Some(s)) = (key, secret) {
                if k.is_empty() || s.is_empty() {
                    d.invalid(&item, "access_key and secret_key cannot be empty");
                } else {
                    credentials.push((k, s));
                }
            }
        }
    }
    let mut body_timeout = super::defaults::BODY_TIMEOUT;
    if let Some(n) = t.get("body_timeout") {
        match d.duration(&n) {
            Some(v) if v.is_zero() => d.invalid(&n, "must be greater than zero"),
            Some(v) => body_timeout = v,
            None => {}
        }
    }
    Some(AwsListener { bind, credentials, body_timeout })
}

/// A duration that SQS counts in whole seconds, within `max`.
fn seconds(d: &mut Decoder<'_>, node: &Node<'_>, min: Duration, max: Duration) -> Option<Duration> {
    let v = d.duration(node)?;
    if v.subsec_millis() != 0 {
        d.invalid(node, "queues count time in whole seconds");
        return None;
    }
    if v < min || v > max {
        d.invalid(
            node,
            format!(
                "must be between {} and {}",
                super::units::format_duration(min).replace("0ms", "0s"),
                super::units::format_duration(max)
            ),
        );
        return None;
    }
    Some(v)
}

pub(super) fn decode_queue(d: &mut Decoder<'_>, name: &str, node: &Node<'_>) -> Option<QueueConfig> {
    let t = d.table(
        node,
        &[
            "fifo",
            "visibility_timeout",
            "retention",
            "delay",
            "max_message_size",
            "receive_wait",
            "dead_letter",
            "content_based_deduplication",
            "tags",
        ],
        &[],
    )?;
    let named_fifo = name.ends_with(".fifo");
    let fifo = match t.get("fifo").and_then(|n| d.bool(&n).map(|b| (b, n))) {
        Some((b, n)) => {
            if b != named_fifo {
                d.invalid(&n, "a FIFO queue's name ends with `.fifo`, and only a FIFO queue's does");
            }
            b
        }
        None => named_fifo,
    };
    let valid_name = {
        let stem = if named_fifo { &name[..name.len() - 5] } else { name };
        name.len() <= 80
            && !stem.is_empty()
            && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !valid_name {
        d.report(Problem::at_key(
            node.path.clone(),
            format!("`{name}` is not a valid queue name: 1 to 80 letters, digits, `-` and `_` (plus `.fifo` for FIFO queues)"),
        ));
    }
    let mut q = QueueConfig::defaults(fifo, node.path.clone());
    if let Some(v) = t
        .get("visibility_timeout")
        .and_then(|n| seconds(d, &n, Duration::ZERO, Duration::from_secs(12 * 3600)))
    {
        q.visibility_timeout = v;
    }
    if let Some(v) = t
        .get("retention")
        .and_then(|n| seconds(d, &n, Duration::from_secs(60), Duration::from_secs(14 * 86_400)))
    {
        q.retention = v;
    }
    if let Some(v) = t.get("delay").and_then(|n| seconds(d, &n, Duration::ZERO, Duration::from_secs(900))) {
        q.delay = v;
    }
    if let Some(v) =
        t.get("receive_wait").and_then(|n| seconds(d, &n, Duration::ZERO, Duration::from_secs(20)))
    {
        q.receive_wait = v;
    }
    if let Some(n) = t.get("max_message_size") {
        if let Some(v) = d.size(&n) {
            if !(1024..=1 << 20).contains(&v) {
                d.invalid(&n, "must be between 1KiB and 1MiB");
            } else {
                q.max_message_size = v;
            }
        }
    }
    if let Some(n) = t.get("dead_letter") {
        if let Some(dl) = d.table(&n, &["queue", "max_receives"], &[]) {
            let queue = dl.require(d, "queue").and_then(|n| d.string(&n));
            let max = dl.require(d, "max_receives").and_then(|n| d.integer(&n, 1, 1000));
            if let (Some(queue), Some(max)) = (queue, max) {
                q.dead_letter = Some(DeadLetter { queue, max_receives: max as u32 });
            }
        }
    }
    if let Some(n) = t.get("content_based_deduplication") {
        if let Some(b) = d.bool(&n) {
            if b && !fifo {
                d.invalid(&n, "content-based deduplication is for FIFO queues");
            }
            q.content_based_deduplication = b;
        }
    }
    if let Some(n) = t.get("tags") {
        for (k, v) in d.entries(&n) {
            if let Some(v) = d.string(&v) {
                q.tags.insert(k, v);
            }
        }
    }
    Some(q)
}

fn value_source(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<ValueSource> {
    let s = d.string(node)?;
    if let Some(h) = s.strip_prefix("header:") {
        let valid =
            !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            d.invalid(node, format!("`{h}` is not a header name"));
            return None;
        }
        return Some(ValueSource::Header(h.to_ascii_lowercase()));
    }
    if let Some(claim) = s.strip_prefix("jwt:") {
        if claim.is_empty() {
            d.invalid(node, "name the claim, as in `jwt:sub`");
            return None;
        }
        return Some(ValueSource::Jwt(claim.to_owned()));
    }
    d.invalid(node, format!("expected a source such as `header:x-tenant` or `jwt:sub`, found `{s}`"));
    None
}

pub(super) fn decode_message(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<MessageMapping> {
    let t = d.table(node, &["group_id", "dedup_id", "subject", "attributes"], &[])?;
    let mut m = MessageMapping {
        group_id: t.get("group_id").and_then(|n| value_source(d, &n)),
        dedup_id: t.get("dedup_id").and_then(|n| value_source(d, &n)),
        subject: t.get("subject").and_then(|n| value_source(d, &n)),
        attributes: Vec::new(),
    };
    if let Some(n) = t.get("attributes") {
        let entries = d.entries(&n);
        if entries.len() > 9 {
            d.invalid(&n, "at most 9 attributes (the content type takes the tenth)");
        }
        for (name, v) in entries {
            let valid = !name.is_empty()
                && name.len() <= 256
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
                && !name.starts_with('.')
                && !name.ends_with('.')
                && !name.contains("..")
                && !name.to_ascii_lowercase().starts_with("aws.")
                && !name.to_ascii_lowercase().starts_with("amazon.");
            if !valid {
                d.invalid(&v, format!("`{name}` is not a valid message attribute name"));
                continue;
            }
            if let Some(src) = value_source(d, &v) {
                m.attributes.push((name, src));
            }
        }
    }
    Some(m)
}
