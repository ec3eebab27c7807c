//! Queue storage: the contract between the queue engine and a durable
//! backend, at the level of queue operations (send a batch, receive, delete,
//! change visibility, purge, count) rather than keys and values, so that a
//! shared SQL engine (PostgreSQL with `FOR UPDATE SKIP LOCKED`) can
//! implement it for a fleet of gateways.
//!
//! What a backend guarantees:
//! - a `send` that returns `Ok` is durable: no crash loses it;
//! - a `delete` that returns [`Deleted::Yes`] is durable: no crash brings the
//!   message back;
//! - a received message is invisible until its visibility deadline, then
//!   visible again (a crash may end the invisibility early: at-least-once);
//! - only the nonce of a message's latest receive deletes it or changes its
//!   visibility;
//! - on FIFO queues, messages of a group are delivered in sequence order,
//!   none while an earlier one of the group is in flight, and duplicates
//!   (same deduplication id within five minutes) are accepted but not stored
//!   again;
//! - whenever messages become visible (sent, delay over, visibility
//!   expired, moved in) an [`Event`] says so, so receivers can wait without
//!   polling.
//!
//! The embedded backend is [`sqlite::SqliteStorage`].

mod checkpoint;
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

use super::attributes::QueueAttributes;

pub type QueueId = i64;

/// A stored queue.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueRecord {
    pub id: QueueId,
    pub name: String,
    pub attributes: QueueAttributes,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// A message to store.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub body: String,
    pub body_md5: [u8; 16],
    /// Serialized message attributes (and system attributes), if any.
    pub attributes: Option<Vec<u8>>,
    pub attributes_md5: Option<[u8; 16]>,
    pub delay_ms: u64,
    /// FIFO only.
    pub group_id: Option<String>,
    /// FIFO only: already resolved (explicit, or content-based).
    pub dedup_id: Option<String>,
    pub sender: Option<String>,
}

/// What happened to one sent message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Stored under this sequence number.
    New { seq: i64 },
    /// A duplicate within the deduplication window of the message stored
    /// under this sequence number; not stored again.
    Duplicate { seq: i64 },
}

/// Where a queue's messages go after too many receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redrive {
    pub dead_letter_queue: QueueId,
    pub max_receives: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct ReceiveOptions {
    pub max: usize,
    pub visibility_ms: u64,
    pub redrive: Option<Redrive>,
}

/// A message handed to a receiver.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub seq: i64,
    pub body: String,
    pub body_md5: [u8; 16],
    pub attributes: Option<Vec<u8>>,
    pub attributes_md5: Option<[u8; 16]>,
    pub sent_ms: i64,
    /// Including this receive.
    pub receive_count: u32,
    pub first_receive_ms: i64,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub sender: Option<String>,
    /// Proves this receive in later deletes and visibility changes.
    pub nonce: u64,
}

/// What a receive took.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub messages: Vec<Delivered>,
    /// Messages moved to the dead-letter queue instead of being delivered.
    pub dead_lettered: u32,
}

/// The result of one delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    /// The handle is not the message's latest (or the message is gone):
    /// nothing was deleted. SQS answers success in this case.
    Stale,
}

/// Why a visibility change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisibilityRefused {
    /// The handle is not the message's latest, or the message is gone.
    InvalidHandle,
    /// The message is no longer in flight.
    NotInFlight,
}

/// How many messages a queue holds, by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    /// Send time of the oldest message.
    pub oldest_sent_ms: Option<i64>,
}

/// Something receivers may be waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// About `count` messages of `queue` just became visible.
    Visible { queue: QueueId, count: u32 },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("a queue named `{0}` exists")]
    QueueExists(String),
    #[error("no such queue")]
    NoQueue,
    #[error("too many messages in flight ({0} is the limit)")]
    TooManyInFlight(usize),
    #[error("storage failure: {0}")]
    Failed(String),
    #[error("another gatehouse process is using the queue store in `{}` (it holds `{}` locked); stop it, or give this one another `storage.path`", .0.display(), .0.join(sqlite::LOCK_FILE).display())]
    Locked(std::path::PathBuf),
}

/// A durable queue backend. See the module documentation for the
/// guarantees every implementation gives.
pub trait Storage: Send + Sync + 'static {
    /// Every queue, as stored.
    fn queues(&self) -> impl Future<Output = Result<Vec<QueueRecord>, StorageError>> + Send;

    fn create_queue(
        &self,
        name: &str,
        attributes: QueueAttributes,
        tags: BTreeMap<String, String>,
        now_ms: i64,
    ) -> impl Future<Output = Result<QueueRecord, StorageError>> + Send;

    /// Replaces a queue's attributes and tags.
    fn update_queue(
        &self,
        queue: QueueId,
        attributes: QueueAttributes,
        tags: BTreeMap<String, String>,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    fn delete_queue(&self, queue: QueueId) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Deletes every message of a queue.
    fn purge(&self, queue: QueueId) -> impl Future<Output = Result<(), StorageError>> + Send;

    fn send(
        &self,
        queue: QueueId,
        messages: Vec<NewMessage>,
    ) -> impl Future<Output = Result<Vec<Sent>, StorageError>> + Send;

    /// Takes up to `opts.max` visible messages and makes them invisible for
    /// `opts.visibility_ms`. Messages received more than the redrive
    /// policy's maximum go to the dead-letter queue instead.
    fn receive(
        &self,
        queue: QueueId,
        opts: ReceiveOptions,
    ) -> impl Future<Output = Result<Received, StorageError>> + Send;

    /// Deletes messages by `(seq, nonce)`.
    fn delete(
        &self,
        queue: QueueId,
        handles: Vec<(i64, u64)>,
    ) -> impl Future<Output = Result<Vec<Deleted>, StorageError>> + Send;

    /// Sets in-flight messages' visibility deadlines to now + timeout, by
    /// `(seq, nonce, timeout_ms)`.
    fn change_visibility(
        &self,
        queue: QueueId,
        changes: Vec<(i64, u64, u64)>,
    ) -> impl Future<Output = Result<Vec<Result<(), VisibilityRefused>>, StorageError>> + Send;

    fn counts(&self, queue: QueueId) -> impl Future<Output = Result<Counts, StorageError>> + Send;

    /// Moves up to `limit` messages (not in flight) from `from` to `to`, or
    /// back to the queue each was dead-lettered from when `to` is `None`.
    /// Returns how many moved.
    fn move_messages(
        &self,
        from: QueueId,
        to: Option<QueueId>,
        limit: usize,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send;

    /// The stream of [`Event`]s; can be taken once.
    fn events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Event>>;

    /// A random per-store value, for deriving message ids.
    fn salt(&self) -> u64;

    /// Finishes outstanding work and releases the store; later calls fail.
    /// Blocking.
    fn close(&self) {}
}
