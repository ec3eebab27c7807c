//! Queues with SQS semantics.
//!
//! [`QueueEngine`] owns what SQS promises its users: queue attributes and
//! their limits, message validation, FIFO rules (group ids, deduplication),
//! dead-letter queues and redrive, long polling, receipt handles and MD5
//! digests. Durability and the state of each message belong to a
//! [`storage::Storage`] backend.
//!
//! This module knows nothing of HTTP or of the AWS wire formats: `aws`
//! adapts the SQS API onto it, and gateway routes publish into it.

pub mod attributes;
pub mod error;
pub mod message;
mod moves;
pub mod storage;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use attributes::{QueueAttributes, RedriveAllow};
pub use error::QueueError;
use message::{attributes_md5, Attributes, ReceiptHandle};
pub use moves::MoveTaskInfo;
use storage::{
    Counts, Deleted, Delivered, Event, NewMessage, QueueId, QueueRecord, ReceiveOptions, Redrive, Sent,
    Storage, StorageError, VisibilityRefused,
};

/// Queues gatehouse keeps for itself (pending topic deliveries) carry this
/// prefix in their names, which SQS names cannot, so no API call, route or
/// subscription reaches them; they show in metrics like any queue.
pub const INTERNAL_PREFIX: &str = "gatehouse:";

/// Who the queues belong to, for URLs and ARNs.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: String,
    pub region: String,
}

impl Account {
    /// `arn:aws:sqs:<region>:<account>:` — a queue's ARN is this + its name.
    pub fn arn_prefix(&self) -> String {
        format!("arn:aws:sqs:{}:{}:", self.region, self.id)
    }
}

/// One message to send.
#[derive(Clone, Debug, Default)]
pub struct SendRequest {
    pub body: String,
    /// The body's MD5, when the caller already has it (a topic sends one
    /// body to several queues).
    pub body_md5: Option<[u8; 16]>,
    pub delay_seconds: Option<u32>,
    pub attributes: Attributes,
    /// `AWSTraceHeader`, the one system attribute senders may set.
    pub trace_header: Option<String>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    /// Who sent it (`SenderId`).
    pub sender: Option<String>,
}

/// The answer to one sent message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendResult {
    pub message_id: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
    pub md5_of_system_attributes: Option<String>,
    /// FIFO only.
    pub sequence_number: Option<String>,
}

/// What `ReceiveMessage` asks for.
#[derive(Clone, Debug, Default)]
pub struct ReceiveRequest {
    pub max: Option<u32>,
    pub visibility_timeout: Option<u32>,
    pub wait_seconds: Option<u32>,
    /// System attribute names (`All`, `SentTimestamp`, ...).
    pub system_attribute_names: Vec<String>,
    /// Message attribute names (`All`, `.*`, exact names, `prefix.*`).
    pub attribute_names: Vec<String>,
}

/// A received message, ready for the wire.
#[derive(Clone, Debug)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub md5_of_body: String,
    pub body: String,
    pub system_attributes: BTreeMap<String, String>,
    pub attributes: Attributes,
    pub md5_of_attributes: Option<String>,
}

/// What is stored next to a body.
#[derive(Serialize, Deserialize, Default)]
struct StoredAttributes {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    a: Attributes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace: Option<String>,
}

/// Counters of one queue, for metrics.
#[derive(Debug)]
pub struct QueueStats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub deleted: AtomicU64,
    pub moved_to_dead_letter: AtomicU64,
    /// Time receives spent waiting (long polling), in seconds.
    pub receive_wait: Histogram,
}

impl Default for QueueStats {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            moved_to_dead_letter: AtomicU64::new(0),
            receive_wait: Histogram::new([0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]),
        }
    }
}

/// A queue as the engine holds it.
#[derive(Debug)]
pub struct Queue {
    pub id: QueueId,
    pub name: String,
    record: RwLock<QueueRecord>,
    /// Receivers waiting for messages.
    arrivals: Notify,
    pub stats: QueueStats,
    last_purge: Mutex<Option<Instant>>,
    /// Latest counts seen (refreshed by `counts` calls), for metrics.
    last_counts: Mutex<Counts>,
}

impl Queue {
    pub fn attributes(&self) -> QueueAttributes {
        self.record.read().unwrap_or_else(|e| e.into_inner()).attributes.clone()
    }

    pub fn record(&self) -> QueueRecord {
        self.record.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn last_counts(&self) -> Counts {
        *self.last_counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How a configuration declares a queue (`queues:` in `routes.yaml`).
#[derive(Clone, Debug, PartialEq)]
pub struct DeclaredQueue {
    pub name: String,
    pub fifo: bool,
    /// SQS attribute settings derived from the config.
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// The queue service.
pub struct QueueEngine<S: Storage> {
    storage: S,
    account: Account,
    salt: u64,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    by_id: RwLock<HashMap<QueueId, Arc<Queue>>>,
    moves: moves::MoveTasks,
}

impl<S: Storage> std::fmt::Debug for QueueEngine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueEngine").field("account", &self.account.id).finish()
    }
}

fn storage_err(e: StorageError) -> QueueError {
    match e {
        StorageError::NoQueue => QueueError::no_queue(),
        StorageError::QueueExists(n) => {
            QueueError::QueueNameExists(format!("A queue named {n} already exists."))
        }
        StorageError::TooManyInFlight(n) => QueueError::OverLimit(format!(
            "Too many messages in flight: the queue has reached the limit of {n}."
        )),
        StorageError::Failed(m) => QueueError::Internal(m),
        e @ StorageError::Locked(_) => QueueError::Internal(e.to_string()),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn to16(hex: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, chunk) in hex.as_bytes().chunks(2).take(16).enumerate() {
        out[i] = std::str::from_utf8(chunk).ok().and_then(|c| u8::from_str_radix(c, 16).ok()).unwrap_or(0);
    }
    out
}

impl<S: Storage> QueueEngine<S> {
    /// Loads the stored queues and starts delivering storage events to
    /// waiting receivers. Must run inside a tokio runtime.
    pub async fn start(storage: S, account: Account) -> Result<Arc<Self>, QueueError> {
        let events = storage.events();
        let salt = storage.salt();
        let records = storage.queues().await.map_err(storage_err)?;
        let engine = Arc::new(Self {
            storage,
            account,
            salt,
            queues: RwLock::new(HashMap::new()),
            by_id: RwLock::new(HashMap::new()),
            moves: moves::MoveTasks::default(),
        });
        for r in records {
            engine.remember(r);
        }
        if let Some(mut events) = events {
            let weak = Arc::downgrade(&engine);
            tokio::spawn(async move {
                while let Some(Event::Visible { queue, count }) = events.recv().await {
                    let Some(engine) = weak.upgrade() else { return };
                    let q = engine.by_id.read().unwrap_or_else(|e| e.into_inner()).get(&queue).cloned();
                    if let Some(q) = q {
                        for _ in 0..count.min(64) {
                            q.arrivals.notify_one();
                        }
                    }
                }
            });
        }
        Ok(engine)
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    /// Closes the store (blocking): pending work is finished first.
    pub fn close(&self) {
        self.storage.close();
    }

    fn remember(&self, record: QueueRecord) -> Arc<Queue> {
        let q = Arc::new(Queue {
            id: record.id,
            name: record.name.clone(),
            record: RwLock::new(record),
            arrivals: Notify::new(),
            stats: QueueStats::default(),
            last_purge: Mutex::new(None),
            last_counts: Mutex::new(Counts::default()),
        });
        self.queues.write().unwrap_or_else(|e| e.into_inner()).insert(q.name.clone(), q.clone());
        self.by_id.write().unwrap_or_else(|e| e.into_inner()).insert(q.id, q.clone());
        q
    }

    fn forget(&self, q: &Queue) {
        self.queues.write().unwrap_or_else(|e| e.into_inner()).remove(&q.name);
        self.by_id.write().unwrap_or_else(|e| e.into_inner()).remove(&q.id);
    }

    /// The queue named `name` (never an internal one).
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>, QueueError> {
        if name.starts_with(INTERNAL_PREFIX) {
            return Err(QueueError::no_queue());
        }
        self.lookup(name)
    }

    /// The internal queue `name` (without its prefix), made with `settings`
    /// if it does not exist yet.
    pub async fn internal_queue(
        &self,
        name: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<Arc<Queue>, QueueError> {
        let full = format!("{INTERNAL_PREFIX}{name}");
        if let Ok(q) = self.lookup(&full) {
            return Ok(q);
        }
        let mut attrs = QueueAttributes::defaults(false);
        attrs.apply(settings, true, &self.account.arn_prefix())?;
        match self.storage.create_queue(&full, attrs, BTreeMap::new(), now_ms()).await {
            Ok(record) => Ok(self.remember(record)),
            Err(StorageError::QueueExists(_)) => self.lookup(&full),
            Err(e) => Err(storage_err(e)),
        }
    }

    fn lookup(&self, name: &str) -> Result<Arc<Queue>, QueueError> {
        self.queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(QueueError::no_queue)
    }

    /// Every queue, by name.
    pub fn all(&self) -> Vec<Arc<Queue>> {
        let mut v: Vec<_> = self.queues.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn arn(&self, name: &str) -> String {
        format!("{}{name}", self.account.arn_prefix())
    }

    /// A queue's URL as seen by a client that reached us at `host`.
    pub fn url(&self, host: &str, name: &str) -> String {
        format!("http://{host}/{}/{name}", self.account.id)
    }

    /// The queue a URL (or a bare name) designates.
    pub fn queue_from_url(&self, url: &str) -> Result<Arc<Queue>, QueueError> {
        let trimmed = url.trim_end_matches('/');
        let mut parts = trimmed.rsplit('/');
        let name = parts.next().unwrap_or("");
        if let Some(account) = parts.next() {
            let looks_like_account = !account.is_empty() && account.chars().all(|c| c.is_ascii_digit());
            if looks_like_account && account != self.account.id {
                return Err(QueueError::no_queue());
            }
        }
        self.queue(name)
    }

    /// `CreateQueue`: idempotent when the given attributes match the
    /// existing queue's, `QueueNameExists` otherwise.
    pub async fn create_queue(
        &self,
        name: &str,
        settings: &BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<Arc<Queue>, QueueError> {
        let fifo_attr = settings.get("FifoQueue").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        attributes::validate_queue_name(name, fifo_attr)?;
        let mut attrs = QueueAttributes::defaults(fifo_attr);
        attrs.apply(settings, true, &self.account.arn_prefix())?;
        validate_tags(&tags)?;
        if let Ok(existing) = self.queue(name) {
            let current = existing.attributes();
            let mut wanted = current.clone();
            wanted.apply(settings, false, &self.account.arn_prefix()).map_err(|_| exists(name))?;
            if wanted != current {
                return Err(exists(name));
            }
            return Ok(existing);
        }
        self.check_redrive(name, &attrs)?;
        match self.storage.create_queue(name, attrs, tags, now_ms()).await {
            Ok(record) => Ok(self.remember(record)),
            // Created concurrently: judge as for an existing queue.
            Err(StorageError::QueueExists(_)) => Err(exists(name)),
            Err(e) => Err(storage_err(e)),
        }
    }

    /// Checks a redrive policy: the dead-letter queue exists, has the same
    /// type, and allows this source.
    fn check_redrive(&self, source: &str, attrs: &QueueAttributes) -> Result<(), QueueError> {
        let Some(r) = &attrs.redrive_policy else { return Ok(()) };
        let dlq = self.queue(&r.dead_letter_queue).map_err(|_| {
            QueueError::InvalidAttributeValue(format!(
                "Value {} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.",
                r.dead_letter_arn
            ))
        })?;
        let d = dlq.attributes();
        if d.fifo != attrs.fifo {
            return Err(QueueError::InvalidAttributeValue(
                "Value for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be of the same type as the source queue (FIFO or standard).".into(),
            ));
        }
        if dlq.name == source {
            return Err(QueueError::InvalidAttributeValue(
                "Value for parameter RedrivePolicy is invalid. Reason: A queue cannot be its own dead-letter queue.".into(),
            ));
        }
        let allowed = match &d.redrive_allow {
            None | Some(RedriveAllow::AllowAll) => true,
            Some(RedriveAllow::DenyAll) => false,
            Some(RedriveAllow::ByQueue(names)) => names.iter().any(|n| n == source),
        };
        if !allowed {
            return Err(QueueError::InvalidAttributeValue(format!(
                "Value for parameter RedrivePolicy is invalid. Reason: Queue {} does not allow {source} as a source (RedriveAllowPolicy).",
                dlq.name
            )));
        }
        Ok(())
    }

    pub async fn delete_queue(&self, q: &Queue) -> Result<(), QueueError> {
        self.storage.delete_queue(q.id).await.map_err(storage_err)?;
        self.forget(q);
        // Wake any waiters so they notice.
        q.arrivals.notify_waiters();
        Ok(())
    }

    /// `PurgeQueue`: at most once per 60 seconds per queue.
    pub async fn purge(&self, q: &Queue) -> Result<(), QueueError> {
        {
            let mut last = q.last_purge.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = *last {
                if t.elapsed() < Duration::from_secs(60) {
                    return Err(QueueError::PurgeQueueInProgress(format!(
                        "Only one PurgeQueue operation on {} is allowed every 60 seconds.",
                        q.name
                    )));
                }
            }
            *last = Some(Instant::now());
        }
        self.storage.purge(q.id).await.map_err(storage_err)
    }

    pub async fn counts(&self, q: &Queue) -> Result<Counts, QueueError> {
        let c = self.storage.counts(q.id).await.map_err(storage_err)?;
        *q.last_counts.lock().unwrap_or_else(|e| e.into_inner()) = c;
        Ok(c)
    }

    /// `GetQueueAttributes`. `names` empty means none.
    pub async fn get_attributes(
        &self,
        q: &Queue,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, QueueError> {
        for n in names {
            if !attributes::READABLE.contains(&n.as_str()) {
                return Err(QueueError::InvalidAttributeName(format!("Unknown Attribute {n}.")));
            }
        }
        let all = names.iter().any(|n| n == "All");
        let wants = |n: &str| all || names.iter().any(|x| x == n);
        let record = q.record();
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        let arn_prefix = self.account.arn_prefix();
        for (k, v) in record.attributes.to_map() {
            if wants(k) {
                let v = match (k, &record.attributes.redrive_allow) {
                    ("RedriveAllowPolicy", Some(a)) => attributes::redrive_allow_with_arns(a, &arn_prefix),
                    _ => v,
                };
                out.insert(k.to_owned(), v);
            }
        }
        if wants("QueueArn") {
            out.insert("QueueArn".into(), self.arn(&q.name));
        }
        if wants("CreatedTimestamp") {
            out.insert("CreatedTimestamp".into(), (record.created_ms / 1000).to_string());
        }
        if wants("LastModifiedTimestamp") {
            out.insert("LastModifiedTimestamp".into(), (record.modified_ms / 1000).to_string());
        }
        let counted = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ];
        if counted.iter().any(|n| wants(n)) {
            let c = self.counts(q).await?;
            for (name, value) in counted.iter().zip([c.visible, c.in_flight, c.delayed]) {
                if wants(name) {
                    out.insert((*name).to_owned(), value.to_string());
                }
            }
        }
        Ok(out)
    }

    /// `SetQueueAttributes`.
    pub async fn set_attributes(
        &self,
        q: &Queue,
        settings: &BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        let record = q.record();
        let mut attrs = record.attributes.clone();
        attrs.apply(settings, false, &self.account.arn_prefix())?;
        self.check_redrive(&q.name, &attrs)?;
        self.store(q, attrs, record.tags).await
    }

    async fn store(
        &self,
        q: &Queue,
        attrs: QueueAttributes,
        tags: BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        let now = now_ms();
        self.storage.update_queue(q.id, attrs.clone(), tags.clone(), now).await.map_err(storage_err)?;
        let mut r = q.record.write().unwrap_or_else(|e| e.into_inner());
        r.attributes = attrs;
        r.tags = tags;
        r.modified_ms = now;
        Ok(())
    }

    pub async fn tag(&self, q: &Queue, tags: BTreeMap<String, String>) -> Result<(), QueueError> {
        let record = q.record();
        let mut all = record.tags.clone();
        all.extend(tags);
        validate_tags(&all)?;
        self.store(q, record.attributes, all).await
    }

    pub async fn untag(&self, q: &Queue, keys: &[String]) -> Result<(), QueueError> {
        let record = q.record();
        let mut all = record.tags.clone();
        for k in keys {
            all.remove(k);
        }
        self.store(q, record.attributes, all).await
    }

    /// Queue names starting with `prefix`, sorted.
    pub fn list(&self, prefix: Option<&str>) -> Vec<String> {
        self.all()
            .into_iter()
            .map(|q| q.name.clone())
            .filter(|n| !n.starts_with(INTERNAL_PREFIX) && prefix.is_none_or(|p| n.starts_with(p)))
            .collect()
    }

    /// Queues whose redrive policy names `q` as their dead-letter queue.
    pub fn dead_letter_sources(&self, q: &Queue) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|s| s.attributes().redrive_policy.is_some_and(|r| r.dead_letter_queue == q.name))
            .map(|s| s.name.clone())
            .collect()
    }

    /// Sends messages; one result per request, in order.
    pub async fn send(
        &self,
        q: &Queue,
        requests: Vec<SendRequest>,
    ) -> Result<Vec<Result<SendResult, QueueError>>, QueueError> {
        let attrs = q.attributes();
        let mut results: Vec<Option<Result<SendResult, QueueError>>> = Vec::with_capacity(requests.len());
        let mut to_store = Vec::new();
        let mut prepared = Vec::new();
        for (i, req) in requests.into_iter().enumerate() {
            match self.prepare(&attrs, req) {
                Ok((msg, partial)) => {
                    to_store.push(msg);
                    prepared.push((i, partial));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !to_store.is_empty() {
            let sent = self.storage.send(q.id, to_store).await.map_err(storage_err)?;
            for ((i, mut partial), s) in prepared.into_iter().zip(sent) {
                let seq = match s {
                    Sent::New { seq } => {
                        q.stats.sent.fetch_add(1, Ordering::Relaxed);
                        seq
                    }
                    Sent::Duplicate { seq } => seq,
                };
                partial.message_id = message::message_id(seq, self.salt);
                if attrs.fifo {
                    partial.sequence_number = Some(format!("{seq:020}"));
                }
                results[i] = Some(Ok(partial));
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(QueueError::Internal("lost result".into()))))
            .collect())
    }

    /// Validates one message and prepares it for storage.
    fn prepare(
        &self,
        attrs: &QueueAttributes,
        req: SendRequest,
    ) -> Result<(NewMessage, SendResult), QueueError> {
        message::validate_body(&req.body)?;
        let attr_size = message::validate_attributes(&req.attributes)?;
        let size = req.body.len() + attr_size;
        if size > attrs.max_message_size as usize {
            return Err(QueueError::invalid_parameter(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
                attrs.max_message_size
            )));
        }
        if let Some(d) = req.delay_seconds {
            if d > attributes::limits::MAX_DELAY {
                return Err(QueueError::invalid_parameter(format!(
                    "Value {d} for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided."
                )));
            }
        }
        let (group_id, dedup_id) = if attrs.fifo {
            if req.delay_seconds.is_some_and(|d| d > 0) {
                return Err(QueueError::invalid_parameter(
                    "Value for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.",
                ));
            }
            let group = req.group_id.clone().ok_or_else(|| {
                QueueError::MissingParameter("The request must contain the parameter MessageGroupId.".into())
            })?;
            validate_token("MessageGroupId", &group)?;
            let dedup = match (&req.dedup_id, attrs.content_based_deduplication) {
                (Some(d), _) => {
                    validate_token("MessageDeduplicationId", d)?;
                    d.clone()
                }
                (None, true) => message::hex(&Sha256::digest(req.body.as_bytes())),
                (None, false) => {
                    return Err(QueueError::invalid_parameter(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                    ))
                }
            };
            (Some(group), Some(dedup))
        } else {
            if req.dedup_id.is_some() {
                return Err(QueueError::invalid_parameter(
                    "Value for parameter MessageDeduplicationId is invalid. Reason: The request include parameter that is not valid for this queue type.",
                ));
            }
            if let Some(g) = &req.group_id {
                validate_token("MessageGroupId", g)?;
            }
            (req.group_id.clone(), None)
        };
        let delay = req.delay_seconds.unwrap_or(attrs.delay);
        let md5_body = req.body_md5.unwrap_or_else(|| message::md5(req.body.as_bytes()));
        let md5_attrs = attributes_md5(&req.attributes);
        let md5_system = req.trace_header.as_ref().map(|t| system_attributes_md5(t));
        let stored = StoredAttributes { a: req.attributes, trace: req.trace_header };
        let blob = (!stored.a.is_empty() || stored.trace.is_some())
            .then(|| serde_json::to_vec(&stored).unwrap_or_default());
        let msg = NewMessage {
            body: req.body,
            body_md5: md5_body,
            attributes: blob,
            attributes_md5: md5_attrs.as_deref().map(to16),
            delay_ms: u64::from(delay) * 1000,
            group_id,
            dedup_id,
            sender: req.sender,
        };
        let result = SendResult {
            message_id: String::new(),
            md5_of_body: message::hex(&md5_body),
            md5_of_attributes: md5_attrs,
            md5_of_system_attributes: md5_system,
            sequence_number: None,
        };
        Ok((msg, result))
    }

    /// `ReceiveMessage`, long polling up to the wait time.
    pub async fn receive(
        &self,
        q: &Arc<Queue>,
        req: &ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let attrs = q.attributes();
        let max = req.max.unwrap_or(1);
        if !(1..=10).contains(&max) {
            return Err(QueueError::invalid_parameter(format!(
                "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
            )));
        }
        let visibility = req.visibility_timeout.unwrap_or(attrs.visibility_timeout);
        if visibility > attributes::limits::MAX_VISIBILITY_TIMEOUT {
            return Err(QueueError::invalid_parameter(format!(
                "Value {visibility} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided."
            )));
        }
        let wait = req.wait_seconds.unwrap_or(attrs.receive_wait);
        if wait > attributes::limits::MAX_WAIT {
            return Err(QueueError::invalid_parameter(format!(
                "Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
            )));
        }
        let redrive = attrs.redrive_policy.as_ref().and_then(|r| {
            self.queue(&r.dead_letter_queue)
                .ok()
                .map(|dlq| Redrive { dead_letter_queue: dlq.id, max_receives: r.max_receive_count })
        });
        let opts = ReceiveOptions { max: max as usize, visibility_ms: u64::from(visibility) * 1000, redrive };
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait));
        let delivered = loop {
            // Register interest before looking, so an arrival between the
            // look and the wait is not missed.
            let arrival = q.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let got = self.storage.receive(q.id, opts).await.map_err(storage_err)?;
            if got.dead_lettered > 0 {
                q.stats.moved_to_dead_letter.fetch_add(u64::from(got.dead_lettered), Ordering::Relaxed);
            }
            if !got.messages.is_empty() || wait == 0 {
                break got.messages;
            }
            if !self.by_id.read().unwrap_or_else(|e| e.into_inner()).contains_key(&q.id) {
                return Err(QueueError::no_queue());
            }
            tokio::select! {
                _ = &mut arrival => {}
                _ = tokio::time::sleep_until(deadline) => break Vec::new(),
            }
        };
        if wait > 0 {
            q.stats.receive_wait.observe(started.elapsed().as_secs_f64());
        }
        q.stats.received.fetch_add(delivered.len() as u64, Ordering::Relaxed);
        // Others may be waiting and more may be there.
        if delivered.len() == max as usize {
            q.arrivals.notify_one();
        }
        Ok(delivered.into_iter().map(|d| self.render(q, d, req)).collect())
    }

    fn render(&self, q: &Queue, d: Delivered, req: &ReceiveRequest) -> ReceivedMessage {
        let stored: StoredAttributes =
            d.attributes.as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
        let wanted_attrs: Attributes = stored
            .a
            .into_iter()
            .filter(|(name, _)| attribute_requested(name, &req.attribute_names))
            .collect();
        let md5_of_attributes = attributes_md5(&wanted_attrs);
        let mut system = BTreeMap::new();
        let all = req.system_attribute_names.iter().any(|n| n == "All");
        let wants = |n: &str| all || req.system_attribute_names.iter().any(|x| x == n);
        if wants("SenderId") {
            system.insert("SenderId".into(), d.sender.clone().unwrap_or_else(|| "AIDAGATEHOUSE".into()));
        }
        if wants("SentTimestamp") {
            system.insert("SentTimestamp".into(), d.sent_ms.to_string());
        }
        if wants("ApproximateReceiveCount") {
            system.insert("ApproximateReceiveCount".into(), d.receive_count.to_string());
        }
        if wants("ApproximateFirstReceiveTimestamp") {
            system.insert("ApproximateFirstReceiveTimestamp".into(), d.first_receive_ms.to_string());
        }
        if let (true, Some(t)) = (wants("AWSTraceHeader"), &stored.trace) {
            system.insert("AWSTraceHeader".into(), t.clone());
        }
        if q.record.read().map(|r| r.attributes.fifo).unwrap_or(false) {
            if wants("SequenceNumber") {
                system.insert("SequenceNumber".into(), format!("{:020}", d.seq));
            }
            if let (true, Some(g)) = (wants("MessageGroupId"), &d.group_id) {
                system.insert("MessageGroupId".into(), g.clone());
            }
            if let (true, Some(x)) = (wants("MessageDeduplicationId"), &d.dedup_id) {
                system.insert("MessageDeduplicationId".into(), x.clone());
            }
        }
        ReceivedMessage {
            message_id: message::message_id(d.seq, self.salt),
            receipt_handle: ReceiptHandle { queue: q.id, message: d.seq, nonce: d.nonce }.encode(),
            md5_of_body: message::hex(&d.body_md5),
            body: d.body,
            system_attributes: system,
            attributes: wanted_attrs,
            md5_of_attributes,
        }
    }

    fn handle_for(&self, q: &Queue, handle: &str) -> Result<ReceiptHandle, QueueError> {
        let h = ReceiptHandle::decode(handle)?;
        if h.queue != q.id {
            return Err(QueueError::ReceiptHandleIsInvalid(format!(
                "The input receipt handle \"{handle}\" is not a valid receipt handle for this queue."
            )));
        }
        Ok(h)
    }

    /// Deletes messages by receipt handle; one result per handle.
    pub async fn delete(
        &self,
        q: &Queue,
        handles: &[String],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut results: Vec<Option<Result<(), QueueError>>> = vec![None; handles.len()];
        let mut valid = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            match self.handle_for(q, h) {
                Ok(h) => valid.push((i, (h.message, h.nonce))),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !valid.is_empty() {
            let outcome = self
                .storage
                .delete(q.id, valid.iter().map(|(_, h)| *h).collect())
                .await
                .map_err(storage_err)?;
            for ((i, _), o) in valid.into_iter().zip(outcome) {
                if o == Deleted::Yes {
                    q.stats.deleted.fetch_add(1, Ordering::Relaxed);
                }
                results[i] = Some(Ok(()));
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }

    /// Changes visibility timeouts; one result per `(handle, seconds)`.
    pub async fn change_visibility(
        &self,
        q: &Queue,
        changes: &[(String, u32)],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut results: Vec<Option<Result<(), QueueError>>> = vec![None; changes.len()];
        let mut valid = Vec::new();
        for (i, (h, secs)) in changes.iter().enumerate() {
            if *secs > attributes::limits::MAX_VISIBILITY_TIMEOUT {
                results[i] = Some(Err(QueueError::invalid_parameter(format!(
                    "Value {secs} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
                ))));
                continue;
            }
            match self.handle_for(q, h) {
                Ok(h) => valid.push((i, (h.message, h.nonce, u64::from(*secs) * 1000), h)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !valid.is_empty() {
            let outcome = self
                .storage
                .change_visibility(q.id, valid.iter().map(|(_, c, _)| *c).collect())
                .await
                .map_err(storage_err)?;
            for ((i, _, h), o) in valid.into_iter().zip(outcome) {
                results[i] = Some(o.map_err(|r| match r {
                    VisibilityRefused::NotInFlight => QueueError::MessageNotInflight(format!(
                        "Value {} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.",
                        h.encode()
                    )),
                    VisibilityRefused::InvalidHandle => QueueError::ReceiptHandleIsInvalid(format!(
                        "The input receipt handle \"{}\" is not a valid receipt handle.",
                        h.encode()
                    )),
                }));
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }

    /// Creates or updates the queues a configuration declares, dead-letter
    /// queues first. Queues created over the API are left alone.
    pub async fn declare(&self, declared: &[DeclaredQueue]) -> Result<(), QueueError> {
        // Queues others use as dead-letter queues go first.
        let mut order: Vec<&DeclaredQueue> = declared.iter().collect();
        order.sort_by_key(|d| d.attributes.contains_key("RedrivePolicy"));
        for d in order {
            let mut settings = d.attributes.clone();
            if d.fifo {
                settings.insert("FifoQueue".into(), "true".into());
            }
            match self.queue(&d.name) {
                Err(_) => {
                    self.create_queue(&d.name, &settings, d.tags.clone()).await?;
                }
                Ok(q) => {
                    let record = q.record();
                    let mut attrs = QueueAttributes::defaults(record.attributes.fifo);
                    if d.fifo != record.attributes.fifo {
                        return Err(QueueError::invalid_parameter(format!(
                            "queue `{}` exists as a {} queue; its type cannot change",
                            d.name,
                            if record.attributes.fifo { "FIFO" } else { "standard" }
                        )));
                    }
                    settings.remove("FifoQueue");
                    attrs.apply(&settings, false, &self.account.arn_prefix())?;
                    // Attributes the config does not cover keep their value.
                    attrs.policy = record.attributes.policy.clone();
                    attrs.kms_master_key_id = record.attributes.kms_master_key_id.clone();
                    if !settings.contains_key("RedriveAllowPolicy") {
                        attrs.redrive_allow = record.attributes.redrive_allow.clone();
                    }
                    let mut tags = record.tags.clone();
                    tags.extend(d.tags.clone());
                    if attrs != record.attributes || tags != record.tags {
                        self.check_redrive(&d.name, &attrs)?;
                        self.store(&q, attrs, tags).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `StartMessageMoveTask`.
    pub async fn start_move_task(
        self: &Arc<Self>,
        source: &Arc<Queue>,
        destination: Option<Arc<Queue>>,
        per_second: Option<u32>,
    ) -> Result<String, QueueError> {
        if self.dead_letter_sources(source).is_empty() {
            return Err(QueueError::invalid_parameter(format!(
                "Source queue {} is not a dead-letter queue of any queue.",
                source.name
            )));
        }
        if let Some(p) = per_second {
            if !(1..=500).contains(&p) {
                return Err(QueueError::invalid_parameter(
                    "Value for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: Must be between 1 and 500.",
                ));
            }
        }
        let to_move = self.counts(source).await?;
        let to_move = to_move.visible + to_move.delayed;
        let engine = Arc::downgrade(self);
        let dest_arn = destination.as_ref().map(|d| self.arn(&d.name));
        self.moves.start(
            self.arn(&source.name),
            source.clone(),
            destination,
            dest_arn,
            per_second,
            to_move,
            move |src, dst, n| {
                let engine = engine.clone();
                async move {
                    let Some(engine) = engine.upgrade() else {
                        return Err(QueueError::Internal("shutting down".into()));
                    };
                    engine.storage.move_messages(src, dst, n).await.map_err(storage_err)
                }
            },
        )
    }

    pub fn list_move_tasks(&self, source: &Queue, max: usize) -> Vec<MoveTaskInfo> {
        self.moves.list(&self.arn(&source.name), max)
    }

    pub fn cancel_move_task(&self, handle: &str) -> Result<u64, QueueError> {
        self.moves.cancel(handle)
    }
}

fn exists(name: &str) -> QueueError {
    QueueError::QueueNameExists(format!(
        "A queue already exists with the same name ({name}) and a different value for an attribute."
    ))
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), QueueError> {
    if tags.len() > 50 {
        return Err(QueueError::invalid_parameter("A queue can have at most 50 tags."));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(QueueError::invalid_parameter(format!(
                "Tag key `{k}` must be 1 to 128 characters and its value at most 256."
            )));
        }
    }
    Ok(())
}

/// Group and deduplication ids: 1–128 printable ASCII characters.
fn validate_token(name: &str, v: &str) -> Result<(), QueueError> {
    let ok = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(QueueError::invalid_parameter(format!(
            "Value {v} for parameter {name} is invalid. Reason: It must be 1 to 128 printable ASCII characters without spaces."
        )))
    }
}

/// Whether message attribute `name` is selected by `requested` (`All`,
/// `.*`, exact names, `prefix.*`).
fn attribute_requested(name: &str, requested: &[String]) -> bool {
    requested.iter().any(|r| {
        r == "All"
            || r == ".*"
            || r == name
            || r.strip_suffix(".*").is_some_and(|p| name.starts_with(&format!("{p}.")))
    })
}

/// `MD5OfMessageSystemAttributes` for the one settable system attribute.
fn system_attributes_md5(trace: &str) -> String {
    let mut attrs = Attributes::new();
    attrs.insert(
        "AWSTraceHeader".into(),
        message::AttributeValue {
            data_type: "String".into(),
            string_value: Some(trace.into()),
            binary_value: None,
        },
    );
    attributes_md5(&attrs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_selection_understands_all_and_prefixes() {
        let req = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(attribute_requested("a", &req(&["All"])));
        assert!(attribute_requested("a", &req(&[".*"])));
        assert!(attribute_requested("order.id", &req(&["order.*"])));
        assert!(!attribute_requested("orders", &req(&["order.*"])));
        assert!(attribute_requested("x", &req(&["y", "x"])));
        assert!(!attribute_requested("x", &req(&[])));
    }

    #[test]
    fn tokens_are_printable_ascii() {
        assert!(validate_token("MessageGroupId", "user-42").is_ok());
        assert!(validate_token("MessageGroupId", "").is_err());
        assert!(validate_token("MessageGroupId", "has space").is_err());
        assert!(validate_token("MessageGroupId", &"x".repeat(129)).is_err());
    }
}
