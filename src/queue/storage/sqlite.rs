//! The embedded backend: SQLite (bundled) in WAL mode, driven by one writer
//! thread that commits many operations per transaction (group commit).
//!
//! # Layout
//!
//! - `queues`: one row per queue (attributes and tags as JSON).
//! - `counts`: each queue's number of messages, updated in the transaction
//!   that changes it, so opening a store never counts rows (a scan that
//!   reads every body of a deep queue).
//! - `m<id>`: a queue's messages. The primary key `seq` is the message's
//!   sequence number, which encodes its send time (milliseconds since 2024
//!   shifted left 20 bits, plus a counter), so retention is a range delete on
//!   the primary key and the oldest message is `MIN(seq)`. `vis` is when the
//!   message (next) becomes visible, or 0 for a *fresh* row: one sent
//!   without a delay and never returned by a visibility timeout, visible
//!   since it was sent. Only *late* rows (`vis > 0`) are in the partial
//!   index `m<id>_late (vis, seq)`, so the common exchange (a send without
//!   delay, a receive, a delete) never touches an index.
//! - FIFO queues also have `g<id>` (each message group and its head, the
//!   lowest `seq` of the group) and `d<id>` (deduplication ids and when they
//!   expire).
//!
//! # State kept in memory
//!
//! Which messages are in flight (deadline, receipt nonce, receive count) is
//! held by the writer thread, not written per receive: a healthy exchange
//! (send, receive, delete) writes the row twice, insert and delete. When a
//! visibility timeout expires the row is updated (receive count, receipt,
//! and for standard queues a new `vis` just after the late scan position, so
//! the row becomes late). The in-flight set is bounded by [`MAX_IN_FLIGHT`]
//! per queue, as in SQS. A standard queue is scanned forward from two
//! cursors: late rows in `(vis, seq)` order through the partial index, then
//! fresh rows in `seq` order through the table itself. Fresh rows are only
//! ever added with a new, higher `seq` (moved messages keep their `seq` and
//! arrive late), so neither scan re-reads messages already handed out. The
//! fresh scan steps over late rows between fresh ones and its cursor moves
//! past them (to the last `seq` when no fresh row is left), so each late
//! row is stepped over once, not at every receive; one receive steps over
//! at most [`FRESH_STEPS`] rows and then wakes a waiter to carry on, so a
//! deep queue of late rows (a delay queue after a restart) never holds the
//! writer for long. A
//! crash forgets the in-flight set: those messages become visible again
//! (at-least-once).
//!
//! # Durability
//!
//! Every reply is sent after the transaction holding its work commits; with
//! `synchronous=FULL` (the default) the commit is on disk. Sends and deletes
//! acknowledged to a client therefore survive `kill -9` and power loss.
//!
//! Checkpoints (copying the WAL into the database file) run on a second
//! connection in the background, not inside a commit; see
//! `queue::storage::checkpoint`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::checkpoint::{self, Checkpointer};
use super::{
    Counts, Deleted, Delivered, Event, NewMessage, QueueId, QueueRecord, ReceiveOptions, Received, Sent,
    Storage, StorageError, VisibilityRefused,
};
use crate::queue::attributes::QueueAttributes;

/// 2024-01-01T00:00:00Z, the origin of sequence numbers.
const EPOCH_MS: i64 = 1_704_067_200_000;
const SEQ_SHIFT: u32 = 20;
/// Messages in flight per queue at most (SQS's limit).
pub const MAX_IN_FLIGHT: usize = 120_000;
/// FIFO deduplication window.
const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Jobs taken into one transaction at most.
const MAX_BATCH: usize = 2048;
/// Database page size (of new databases), in KiB.
const PAGE_KIB: u32 = 16;
/// Rows one retention sweep deletes per queue at most.
const SWEEP_LIMIT: i64 = 10_000;
/// Rows one fresh-scan query reads at most.
const FRESH_CHUNK: i64 = 256;
/// Rows one receive steps over in the fresh scan at most; a receive that
/// stops there wakes a waiter to carry on, so no single receive holds the
/// writer for long (a queue whose rows are mostly late, such as a delay
/// queue after a restart).
const FRESH_STEPS: usize = 4096;

/// The send time a sequence number encodes.
pub fn sent_ms_of(seq: i64) -> i64 {
    (seq >> SEQ_SHIFT) + EPOCH_MS
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// How commits reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync at every commit: acknowledged messages survive power loss.
    Full,
    /// fsync at checkpoints only: acknowledged messages survive a process
    /// crash, not a power loss. Faster on slow disks.
    Normal,
}

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The directory holding `queues.db`.
    pub dir: PathBuf,
    pub sync: SyncMode,
    /// SQLite page cache, in MiB.
    pub cache_mib: u32,
    /// WAL size at which a (background) checkpoint starts, in MiB.
    pub checkpoint_mib: u32,
}

type Reply<T> = oneshot::Sender<Result<T, StorageError>>;

enum Job {
    Queues(Reply<Vec<QueueRecord>>),
    Create {
        name: String,
        attributes: QueueAttributes,
        tags: BTreeMap<String, String>,
        now: i64,
        reply: Reply<QueueRecord>,
    },
    Update {
        queue: QueueId,
        attributes: QueueAttributes,
        tags: BTreeMap<String, String>,
        now: i64,
        reply: Reply<()>,
    },
    DeleteQueue {
        queue: QueueId,
        reply: Reply<()>,
    },
    Purge {
        queue: QueueId,
        reply: Reply<()>,
    },
    Send {
        queue: QueueId,
        messages: Vec<NewMessage>,
        reply: Reply<Vec<Sent>>,
    },
    Receive {
        queue: QueueId,
        opts: ReceiveOptions,
        reply: Reply<Received>,
    },
    Delete {
        queue: QueueId,
        handles: Vec<(i64, u64)>,
        reply: Reply<Vec<Deleted>>,
    },
    Visibility {
        queue: QueueId,
        changes: Vec<(i64, u64, u64)>,
        reply: Reply<Vec<Result<(), VisibilityRefused>>>,
    },
    Counts {
        queue: QueueId,
        reply: Reply<Counts>,
    },
    Move {
        from: QueueId,
        to: Option<QueueId>,
        limit: usize,
        reply: Reply<u64>,
    },
}

/// Where the replies to a thread's jobs are delivered: a task on that
/// thread's runtime, which runs a whole commit's completions in one go.
///
/// Waking a task from the writer thread costs a syscall (the runtime's
/// eventfd) per reply on a current-thread runtime, about a hundred per
/// commit under load, and the writer is the one serial stage. Handing each
/// runtime its commit's replies as one batch costs one wake-up per runtime
/// per commit instead, and the replies are then sent from the thread their
/// callers run on (no cross-thread wake at all).
type Mailbox = tokio::sync::mpsc::UnboundedSender<Vec<Completion>>;

thread_local! {
    static MAILBOX: std::cell::RefCell<Option<Mailbox>> = const { std::cell::RefCell::new(None) };
}

/// This thread's mailbox, made (with its task, on the current runtime) on
/// first use and again if that runtime has gone. `None` outside a runtime:
/// replies are then sent from the writer thread.
fn mailbox() -> Option<Mailbox> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    MAILBOX.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().is_none_or(|tx| tx.is_closed()) {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<Completion>>();
            runtime.spawn(async move {
                while let Some(batch) = rx.recv().await {
                    for done in batch {
                        done(None);
                    }
                }
            });
            *slot = Some(tx);
        }
        slot.clone()
    })
}

/// A job and where its reply goes.
type Envelope = (Job, Option<Mailbox>);

/// The SQLite backend. Dropping it finishes the pending work and stops the
/// writer thread.
pub struct SqliteStorage {
    jobs: Mutex<Option<mpsc::Sender<Envelope>>>,
    events: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Event>>>,
    salt: u64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The directory's lock file, held while the store is open.
    lock: Mutex<Option<std::fs::File>>,
}

/// The file in a store's directory that one process at a time holds locked.
pub const LOCK_FILE: &str = "gatehouse.lock";

/// Takes the store directory's exclusive lock (`flock`), so that a second
/// process on the same directory stops at start instead of sharing the
/// database and delivering messages twice. The kernel releases it when the
/// process ends, however it ends; the file itself is left in place.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::Failed(format!("cannot open `{}`: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StorageError::Failed(format!("cannot lock `{}`: {e}", path.display())))
        }
    }
}

impl SqliteStorage {
    /// Opens (or creates) the store in `opts.dir` and starts its writer.
    /// Fails with [`StorageError::Locked`] while another store (in this
    /// process or another) has the directory open.
    pub fn open(opts: &SqliteOptions) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&opts.dir)
            .map_err(|e| StorageError::Failed(format!("cannot create `{}`: {e}", opts.dir.display())))?;
        let lock = lock_dir(&opts.dir)?;
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::open(&opts.dir.join("queues.db"), opts, events_tx)?;
        let salt = writer.salt;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("gatehouse-storage".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::Failed(format!("cannot start the storage thread: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            events: Mutex::new(Some(events_rx)),
            salt,
            thread: Mutex::new(Some(thread)),
            lock: Mutex::new(Some(lock)),
        })
    }

    async fn call<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StorageError> {
        let (tx, rx) = oneshot::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let Some(jobs) = jobs.as_ref() else {
                return Err(StorageError::Failed("the storage is closed".into()));
            };
            jobs.send((job(tx), mailbox()))
                .map_err(|_| StorageError::Failed("the storage thread stopped".into()))?;
        }
        rx.await.map_err(|_| StorageError::Failed("the storage thread stopped".into()))?
    }

    /// Stops the writer after the work already queued, and waits for it.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        // The database is closed: another store may open the directory.
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Drop for SqliteStorage {
    fn drop(&mut self) {
        self.close();
    }
}

impl Storage for SqliteStorage {
    async fn queues(&self) -> Result<Vec<QueueRecord>, StorageError> {
        self.call(Job::Queues).await
    }

    async fn create_queue(
        &self,
        name: &str,
        attributes: QueueAttributes,
        tags: BTreeMap<String, String>,
        now: i64,
    ) -> Result<QueueRecord, StorageError> {
        let name = name.to_owned();
        self.call(|reply| Job::Create { name, attributes, tags, now, reply }).await
    }

    async fn update_queue(
        &self,
        queue: QueueId,
        attributes: QueueAttributes,
        tags: BTreeMap<String, String>,
        now: i64,
    ) -> Result<(), StorageError> {
        self.call(|reply| Job::Update { queue, attributes, tags, now, reply }).await
    }

    async fn delete_queue(&self, queue: QueueId) -> Result<(), StorageError> {
        self.call(|reply| Job::DeleteQueue { queue, reply }).await
    }

    async fn purge(&self, queue: QueueId) -> Result<(), StorageError> {
        self.call(|reply| Job::Purge { queue, reply }).await
    }

    async fn send(&self, queue: QueueId, messages: Vec<NewMessage>) -> Result<Vec<Sent>, StorageError> {
        self.call(|reply| Job::Send { queue, messages, reply }).await
    }

    async fn receive(&self, queue: QueueId, opts: ReceiveOptions) -> Result<Received, StorageError> {
        self.call(|reply| Job::Receive { queue, opts, reply }).await
    }

    async fn delete(&self, queue: QueueId, handles: Vec<(i64, u64)>) -> Result<Vec<Deleted>, StorageError> {
        self.call(|reply| Job::Delete { queue, handles, reply }).await
    }

    async fn change_visibility(
        &self,
        queue: QueueId,
        changes: Vec<(i64, u64, u64)>,
    ) -> Result<Vec<Result<(), VisibilityRefused>>, StorageError> {
        self.call(|reply| Job::Visibility { queue, changes, reply }).await
    }

    async fn counts(&self, queue: QueueId) -> Result<Counts, StorageError> {
        self.call(|reply| Job::Counts { queue, reply }).await
    }

    async fn move_messages(
        &self,
        from: QueueId,
        to: Option<QueueId>,
        limit: usize,
    ) -> Result<u64, StorageError> {
        self.call(|reply| Job::Move { from, to, limit, reply }).await
    }

    fn events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Event>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn salt(&self) -> u64 {
        self.salt
    }

    fn close(&self) {
        SqliteStorage::close(self);
    }
}

/// Hashes the writer's own sequence numbers (never client input, so no
/// flooding to defend against) with one multiply-xorshift instead of
/// SipHash.
#[derive(Default)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        let z = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = z ^ (z >> 29);
    }
}

#[derive(Debug)]
struct InFlight {
    deadline: i64,
    nonce: u64,
    receive_count: u32,
    first_receive: i64,
    group: Option<String>,
}

/// The statements run for every message, written once per queue: formatting
/// them per call (to find the cached statement) cost the writer about 3% of
/// its time. The `dedup_*`, `group_*` and `fifo_rows` ones are only run on
/// FIFO queues (whose `g<id>` and `d<id>` tables they name).
struct HotSql {
    insert: String,
    scan_late: String,
    scan_fresh: String,
    delete: String,
    dedup_lookup: String,
    dedup_insert: String,
    group_insert: String,
    group_scan: String,
    fifo_rows: String,
}

impl HotSql {
    fn new(queue: QueueId) -> Self {
        HotSql {
            insert: format!(
                "INSERT INTO m{queue} (seq, vis, body, body_md5, attrs, attrs_md5, grp, dedup, sender)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            // `vis > 0` lets SQLite use the partial index `m<id>_late`.
            scan_late: format!(
                "SELECT seq, vis, body, body_md5, attrs, attrs_md5, rc, frt, grp, dedup, sender FROM m{queue}
                 WHERE vis > 0 AND (vis, seq) > (?1, ?2) AND vis <= ?3 ORDER BY vis, seq LIMIT ?4"
            ),
            // Late rows are read too (and skipped), so the cursor moves past
            // them: see `Writer::scan_fresh`.
            scan_fresh: format!(
                "SELECT seq, vis, body, body_md5, attrs, attrs_md5, rc, frt, grp, dedup, sender FROM m{queue}
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ),
            delete: format!("DELETE FROM m{queue} WHERE seq = ?1"),
            dedup_lookup: format!("SELECT seq, expires FROM d{queue} WHERE dedup = ?1"),
            dedup_insert: format!(
                "INSERT OR REPLACE INTO d{queue} (dedup, seq, expires) VALUES (?1, ?2, ?3)"
            ),
            group_insert: format!("INSERT OR IGNORE INTO g{queue} (grp, head) VALUES (?1, ?2)"),
            group_scan: format!("SELECT grp, head FROM g{queue} WHERE head > ?1 ORDER BY head LIMIT 64"),
            fifo_rows: format!(
                "SELECT seq, vis, body, body_md5, attrs, attrs_md5, rc, frt, grp, dedup, sender FROM m{queue}
                 WHERE grp = ?1 ORDER BY seq LIMIT ?2"
            ),
        }
    }
}

struct QState {
    record: QueueRecord,
    sql: HotSql,
    fifo: bool,
    /// Messages stored (all states).
    total: u64,
    /// `total` as the `counts` table holds it in this transaction.
    saved_total: u64,
    /// Standard queues: the last `(vis, seq)` of a late row (one with a
    /// visibility time) handed out by a scan.
    cursor: (i64, i64),
    /// Standard queues: the last `seq` of a fresh row (`vis = 0`) handed
    /// out by a scan.
    fresh: i64,
    in_flight: HashMap<i64, InFlight, BuildHasherDefault<SeqHasher>>,
    /// FIFO: groups with messages in flight, and how many.
    locked: HashMap<String, u32>,
}

/// A finished job's reply, sent once its transaction has committed.
type Completion = Box<dyn FnOnce(Option<&StorageError>) + Send>;

fn complete<T: Send + 'static>(reply: Reply<T>, result: Result<T, StorageError>) -> Completion {
    Box::new(move |failed| {
        let _ = reply.send(match failed {
            Some(e) => Err(e.clone()),
            None => result,
        });
    })
}

fn sql_err(e: rusqlite::Error) -> StorageError {
    StorageError::Failed(e.to_string())
}

struct Writer {
    conn: Connection,
    /// Copies the WAL into the database off the commit path.
    checkpointer: Checkpointer,
    salt: u64,
    queues: HashMap<QueueId, QState>,
    last_seq: i64,
    last_now: i64,
    /// (deadline, queue, seq, nonce) of in-flight messages.
    expiries: BinaryHeap<Reverse<(i64, QueueId, i64, u64)>>,
    /// When delayed messages of a queue become visible.
    wakeups: BinaryHeap<Reverse<(i64, QueueId)>>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    pending: Vec<Event>,
    /// Queues whose `total` may have changed in this transaction.
    touched: Vec<QueueId>,
    next_sweep: i64,
}

impl Writer {
    fn open(
        file: &Path,
        opts: &SqliteOptions,
        events: tokio::sync::mpsc::UnboundedSender<Event>,
    ) -> Result<Self, StorageError> {
        let mut conn = Connection::open(file)
            .map_err(|e| StorageError::Failed(format!("cannot open `{}`: {e}", file.display())))?;
        let sync = match opts.sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        };
        // page_size only takes effect on a new database (before WAL).
        conn.execute_batch(&format!(
            "PRAGMA page_size = {};
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = {sync};
             PRAGMA cache_size = -{};
             PRAGMA temp_store = MEMORY;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS counts (queue INTEGER PRIMARY KEY, total INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS queues (
                 id INTEGER PRIMARY KEY,
                 name TEXT NOT NULL UNIQUE,
                 attributes TEXT NOT NULL,
                 tags TEXT NOT NULL,
                 created INTEGER NOT NULL,
                 modified INTEGER NOT NULL
             );",
            PAGE_KIB * 1024,
            u64::from(opts.cache_mib.max(1)) * 1024
        ))
        .map_err(sql_err)?;
        conn.set_prepared_statement_cache_capacity(512);
        // Plans that do not depend on bound values: without this SQLite
        // re-prepares the receive scan whenever its bounds change (about a
        // tenth of the writer's time under load).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(sql_err)?;
        let salt: i64 = match conn
            .query_row("SELECT value FROM meta WHERE key = 'salt'", [], |r| r.get(0))
            .optional()
            .map_err(sql_err)?
        {
            Some(s) => s,
            None => {
                let s = fastrand::i64(..);
                conn.execute("INSERT INTO meta (key, value) VALUES ('salt', ?1)", [s]).map_err(sql_err)?;
                s
            }
        };
        // An existing database keeps the page size it was made with.
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(sql_err)?;
        let start =
            i32::try_from((i64::from(opts.checkpoint_mib.max(1)) << 20) / page.max(512)).unwrap_or(i32::MAX);
        let checkpointer = Checkpointer::start(&mut conn, file, sync, start)?;
        let mut w = Writer {
            conn,
            checkpointer,
            salt: salt as u64,
            queues: HashMap::new(),
            last_seq: 0,
            last_now: 0,
            expiries: BinaryHeap::new(),
            wakeups: BinaryHeap::new(),
            events,
            pending: Vec::new(),
            touched: Vec::new(),
            next_sweep: 0,
        };
        w.load()?;
        Ok(w)
    }

    /// Loads every queue's record and counts; in-flight state starts empty.
    fn load(&mut self) -> Result<(), StorageError> {
        self.queues.clear();
        let records = self.read_queues()?;
        let now = self.now();
        for record in records {
            let id = record.id;
            let total = self.stored_total(id)?;
            let max: Option<i64> = self
                .conn
                .query_row(&format!("SELECT MAX(seq) FROM m{id}"), [], |r| r.get(0))
                .map_err(sql_err)?;
            self.last_seq = self.last_seq.max(max.unwrap_or(0));
            // Databases made before fresh rows existed index every row by
            // `vis`: their rows all carry a visibility time, so they are
            // late rows, and the partial index holds them all.
            self.conn
                .execute_batch(&format!(
                    "BEGIN;
                     DROP INDEX IF EXISTS m{id}_vis;
                     CREATE INDEX IF NOT EXISTS m{id}_late ON m{id} (vis, seq) WHERE vis > 0;
                     COMMIT;"
                ))
                .map_err(sql_err)?;
            // Delayed messages need a wake-up when they become visible.
            let next_delayed: Option<i64> = self
                .conn
                .query_row(&format!("SELECT MIN(vis) FROM m{id} WHERE vis > 0 AND vis > ?1"), [now], |r| {
                    r.get(0)
                })
                .map_err(sql_err)?;
            if let Some(at) = next_delayed {
                self.wakeups.push(Reverse((at, id)));
            }
            let fifo = record.attributes.fifo;
            self.queues.insert(
                id,
                QState {
                    record,
                    sql: HotSql::new(id),
                    fifo,
                    total,
                    saved_total: total,
                    cursor: (i64::MIN, i64::MIN),
                    fresh: i64::MIN,
                    in_flight: HashMap::default(),
                    locked: HashMap::new(),
                },
            );
        }
        Ok(())
    }

    /// A queue's message count as committed with its messages. Stores made
    /// before the `counts` table count the rows once (a scan of the whole
    /// table, which on a cold page cache reads every body).
    fn stored_total(&self, queue: QueueId) -> Result<u64, StorageError> {
        let stored: Option<i64> = self
            .conn
            .query_row("SELECT total FROM counts WHERE queue = ?1", [queue], |r| r.get(0))
            .optional()
            .map_err(sql_err)?;
        let total = match stored {
            Some(n) => n,
            None => {
                let n: i64 = self
                    .conn
                    .query_row(&format!("SELECT COUNT(*) FROM m{queue}"), [], |r| r.get(0))
                    .map_err(sql_err)?;
                self.conn
                    .execute("INSERT INTO counts (queue, total) VALUES (?1, ?2)", [queue, n])
                    .map_err(sql_err)?;
                n
            }
        };
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// Writes the counts of queues whose `total` changed in this
    /// transaction, so a restart reads them instead of counting rows.
    fn save_totals(&mut self) -> Result<(), StorageError> {
        self.touched.sort_unstable();
        self.touched.dedup();
        for queue in std::mem::take(&mut self.touched) {
            let Some(q) = self.queues.get_mut(&queue) else { continue };
            if q.total == q.saved_total {
                continue;
            }
            self.conn
                .prepare_cached(
                    "INSERT INTO counts (queue, total) VALUES (?1, ?2)
                     ON CONFLICT (queue) DO UPDATE SET total = excluded.total",
                )
                .and_then(|mut st| st.execute(params![queue, q.total as i64]))
                .map_err(sql_err)?;
            q.saved_total = q.total;
        }
        Ok(())
    }

    fn read_queues(&self) -> Result<Vec<QueueRecord>, StorageError> {
        let mut st = self
            .conn
            .prepare("SELECT id, name, attributes, tags, created, modified FROM queues ORDER BY name")
            .map_err(sql_err)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(sql_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, attributes, tags, created, modified) = row.map_err(sql_err)?;
            let attributes: QueueAttributes = serde_json::from_str(&attributes)
                .map_err(|e| StorageError::Failed(format!("queue `{name}`: bad stored attributes: {e}")))?;
            let tags = serde_json::from_str(&tags).unwrap_or_default();
            out.push(QueueRecord { id, name, attributes, tags, created_ms: created, modified_ms: modified });
        }
        Ok(out)
    }

    /// Milliseconds since the Unix epoch, never going backwards.
    fn now(&mut self) -> i64 {
        self.last_now = self.last_now.max(wall_ms());
        self.last_now
    }

    /// The next sequence number after `last` (a field of the writer, passed
    /// alone so a prepared statement may hold `conn` meanwhile).
    fn next_seq(last: &mut i64, now: i64) -> i64 {
        let base = (now - EPOCH_MS).max(0) << SEQ_SHIFT;
        *last = (*last + 1).max(base);
        *last
    }

    fn run(mut self, jobs: mpsc::Receiver<Envelope>) {
        loop {
            let now = self.now();
            let wait = self.next_timer().map_or(Duration::from_secs(1), |at| {
                Duration::from_millis(u64::try_from(at - now).unwrap_or(0).min(1000))
            });
            let first = match jobs.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch: Vec<Envelope> = first.into_iter().collect();
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.step(batch);
            if self.checkpointer.after_commit() == checkpoint::Action::Inline {
                if let Err(e) =
                    self.conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        }
        self.checkpointer.stop();
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    fn next_timer(&self) -> Option<i64> {
        let e = self.expiries.peek().map(|Reverse((t, ..))| *t);
        let w = self.wakeups.peek().map(|Reverse((t, _))| *t);
        [e, w, Some(self.next_sweep)].into_iter().flatten().min()
    }

    /// One transaction: due timers, then the jobs; replies after commit.
    fn step(&mut self, batch: Vec<Envelope>) {
        if let Err(e) = self.conn.prepare_cached("BEGIN IMMEDIATE").and_then(|mut st| st.execute([])) {
            let err = sql_err(e);
            for (job, _) in batch {
                fail(job, &err);
            }
            return;
        }
        let now = self.now();
        let mut timer_result = self.expire(now);
        self.wake(now);
        if timer_result.is_ok() && now >= self.next_sweep {
            timer_result = self.sweep(now);
            self.next_sweep = now + 1000;
        }
        let done: Vec<(Completion, Option<Mailbox>)> =
            batch.into_iter().map(|(job, to)| (self.apply(job, now), to)).collect();
        let committed = timer_result.and_then(|()| self.save_totals()).and_then(|()| {
            self.conn.prepare_cached("COMMIT").and_then(|mut st| st.execute([])).map(drop).map_err(sql_err)
        });
        match committed {
            Ok(()) => {
                deliver(done);
                for ev in coalesce(&mut self.pending) {
                    let _ = self.events.send(ev);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "queue storage commit failed; reloading state");
                let _ = self.conn.execute_batch("ROLLBACK");
                for (d, _) in done {
                    d(Some(&e));
                }
                self.pending.clear();
                self.expiries.clear();
                self.touched.clear();
                if let Err(e) = self.load() {
                    tracing::error!(error = %e, "reloading queue state failed");
                }
            }
        }
    }

    fn apply(&mut self, job: Job, now: i64) -> Completion {
        match job {
            Job::Queues(reply) => {
                let r = Ok(self.queues.values().map(|q| q.record.clone()).collect());
                complete(reply, r)
            }
            Job::Create { name, attributes, tags, now: at, reply } => {
                let r = self.create(name, attributes, tags, at);
                complete(reply, r)
            }
            Job::Update { queue, attributes, tags, now: at, reply } => {
                let r = self.update(queue, attributes, tags, at);
                complete(reply, r)
            }
            Job::DeleteQueue { queue, reply } => {
                let r = self.drop_queue(queue);
                complete(reply, r)
            }
            Job::Purge { queue, reply } => {
                let r = self.purge(queue);
                complete(reply, r)
            }
            Job::Send { queue, messages, reply } => {
                let r = self.send(queue, messages, now);
                complete(reply, r)
            }
            Job::Receive { queue, opts, reply } => {
                let r = self.receive(queue, opts, now);
                complete(reply, r)
            }
            Job::Delete { queue, handles, reply } => {
                let r = self.delete(queue, handles);
                complete(reply, r)
            }
            Job::Visibility { queue, changes, reply } => {
                let r = self.visibility(queue, changes, now);
                complete(reply, r)
            }
            Job::Counts { queue, reply } => {
                let r = self.counts(queue, now);
                complete(reply, r)
            }
            Job::Move { from, to, limit, reply } => {
                let r = self.move_some(from, to, limit, now);
                complete(reply, r)
            }
        }
    }

    fn state(&mut self, queue: QueueId) -> Result<&mut QState, StorageError> {
        self.queues.get_mut(&queue).ok_or(StorageError::NoQueue)
    }

    fn state_ref(&self, queue: QueueId) -> Result<&QState, StorageError> {
        self.queues.get(&queue).ok_or(StorageError::NoQueue)
    }

    fn create(
        &mut self,
        name: String,
        attributes: QueueAttributes,
        tags: BTreeMap<String, String>,
        now: i64,
    ) -> Result<QueueRecord, StorageError> {
        if self.queues.values().any(|q| q.record.name == name) {
            return Err(StorageError::QueueExists(name));
        }
        let attrs_json =
            serde_json::to_string(&attributes).map_err(|e| StorageError::Failed(e.to_string()))?;
        let tags_json = serde_json::to_string(&tags).map_err(|e| StorageError::Failed(e.to_string()))?;
        self.conn
            .execute(
                "INSERT INTO queues (name, attributes, tags, created, modified) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![name, attrs_json, tags_json, now],
            )
            .map_err(sql_err)?;
        let id = self.conn.last_insert_rowid();
        let mut ddl = format!(
            "CREATE TABLE m{id} (
                 seq INTEGER PRIMARY KEY,
                 vis INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 body_md5 BLOB NOT NULL,
                 attrs BLOB,
                 attrs_md5 BLOB,
                 rc INTEGER NOT NULL DEFAULT 0,
                 frt INTEGER,
                 receipt INTEGER,
                 grp TEXT,
                 dedup TEXT,
                 sender TEXT,
                 src INTEGER
             );
             CREATE INDEX m{id}_late ON m{id} (vis, seq) WHERE vis > 0;"
        );
        if attributes.fifo {
            ddl.push_str(&format!(
                "CREATE INDEX m{id}_grp ON m{id} (grp, seq);
                 CREATE TABLE g{id} (grp TEXT PRIMARY KEY, head INTEGER NOT NULL);
                 CREATE INDEX g{id}_head ON g{id} (head);
                 CREATE TABLE d{id} (dedup TEXT PRIMARY KEY, seq INTEGER NOT NULL, expires INTEGER NOT NULL);
                 CREATE INDEX d{id}_exp ON d{id} (expires);"
            ));
        }
        self.conn.execute_batch(&ddl).map_err(sql_err)?;
        self.conn.execute("INSERT INTO counts (queue, total) VALUES (?1, 0)", [id]).map_err(sql_err)?;
        let record = QueueRecord { id, name, attributes, tags, created_ms: now, modified_ms: now };
        self.queues.insert(
            id,
            QState {
                record: record.clone(),
                sql: HotSql::new(id),
                fifo: record.attributes.fifo,
                total: 0,
                saved_total: 0,
                cursor: (i64::MIN, i64::MIN),
                fresh: i64::MIN,
                in_flight: HashMap::default(),
                locked: HashMap::new(),
            },
        );
        Ok(record)
    }

    fn update(
        &mut self,
        queue: QueueId,
        attributes: QueueAttributes,
        tags: BTreeMap<String, String>,
        now: i64,
    ) -> Result<(), StorageError> {
        let attrs_json =
            serde_json::to_string(&attributes).map_err(|e| StorageError::Failed(e.to_string()))?;
        let tags_json = serde_json::to_string(&tags).map_err(|e| StorageError::Failed(e.to_string()))?;
        let n = self
            .conn
            .execute(
                "UPDATE queues SET attributes = ?1, tags = ?2, modified = ?3 WHERE id = ?4",
                params![attrs_json, tags_json, now, queue],
            )
            .map_err(sql_err)?;
        if n == 0 {
            return Err(StorageError::NoQueue);
        }
        let q = self.state(queue)?;
        q.record.attributes = attributes;
        q.record.tags = tags;
        q.record.modified_ms = now;
        Ok(())
    }

    fn drop_queue(&mut self, queue: QueueId) -> Result<(), StorageError> {
        let fifo = self.state(queue)?.fifo;
        let mut ddl = format!("DROP TABLE m{queue};");
        if fifo {
            ddl.push_str(&format!("DROP TABLE g{queue}; DROP TABLE d{queue};"));
        }
        self.conn.execute_batch(&ddl).map_err(sql_err)?;
        self.conn.execute("DELETE FROM queues WHERE id = ?1", [queue]).map_err(sql_err)?;
        self.conn.execute("DELETE FROM counts WHERE queue = ?1", [queue]).map_err(sql_err)?;
        self.queues.remove(&queue);
        Ok(())
    }

    fn purge(&mut self, queue: QueueId) -> Result<(), StorageError> {
        let fifo = self.state(queue)?.fifo;
        self.conn.execute(&format!("DELETE FROM m{queue}"), []).map_err(sql_err)?;
        if fifo {
            self.conn.execute(&format!("DELETE FROM g{queue}"), []).map_err(sql_err)?;
        }
        let q = self.state(queue)?;
        q.total = 0;
        self.touched.push(queue);
        let q = self.state(queue)?;
        q.in_flight.clear();
        q.locked.clear();
        q.cursor = (i64::MIN, i64::MIN);
        q.fresh = i64::MIN;
        Ok(())
    }

    fn send(
        &mut self,
        queue: QueueId,
        messages: Vec<NewMessage>,
        now: i64,
    ) -> Result<Vec<Sent>, StorageError> {
        let q = self.state_ref(queue)?;
        let (fifo, scope_group) = (q.fifo, q.record.attributes.deduplication_scope == "messageGroup");
        // Looked up once per batch: the statement cache hashes the SQL text.
        let mut insert = self.conn.prepare_cached(&q.sql.insert).map_err(sql_err)?;
        let mut out = Vec::with_capacity(messages.len());
        let mut visible_now = 0u32;
        for m in messages {
            let dedup_key = match (&m.dedup_id, fifo) {
                (Some(d), true) if scope_group => {
                    Some(format!("{}\u{0}{d}", m.group_id.as_deref().unwrap_or("")))
                }
                (Some(d), true) => Some(d.clone()),
                _ => None,
            };
            if let Some(key) = &dedup_key {
                let seen: Option<(i64, i64)> = self
                    .conn
                    .prepare_cached(&self.state_ref(queue)?.sql.dedup_lookup)
                    .and_then(|mut st| st.query_row([key], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                    .map_err(sql_err)?;
                if let Some((seq, expires)) = seen {
                    if expires > now {
                        out.push(Sent::Duplicate { seq });
                        continue;
                    }
                }
            }
            let seq = Self::next_seq(&mut self.last_seq, now);
            // Fresh rows (visible from the start) stay out of the late index.
            let vis = if m.delay_ms > 0 { now + m.delay_ms as i64 } else { 0 };
            insert
                .execute(params![
                    seq,
                    vis,
                    m.body,
                    &m.body_md5[..],
                    m.attributes,
                    m.attributes_md5.as_ref().map(|d| &d[..]),
                    m.group_id,
                    m.dedup_id,
                    m.sender
                ])
                .map_err(sql_err)?;
            if fifo {
                if let Some(key) = &dedup_key {
                    self.conn
                        .prepare_cached(&self.state_ref(queue)?.sql.dedup_insert)
                        .and_then(|mut st| st.execute(params![key, seq, now + DEDUP_WINDOW_MS]))
                        .map_err(sql_err)?;
                }
                self.conn
                    .prepare_cached(&self.state_ref(queue)?.sql.group_insert)
                    .and_then(|mut st| st.execute(params![m.group_id.as_deref().unwrap_or(""), seq]))
                    .map_err(sql_err)?;
            }
            self.queues.get_mut(&queue).ok_or(StorageError::NoQueue)?.total += 1;
            if m.delay_ms > 0 {
                self.wakeups.push(Reverse((vis, queue)));
            } else {
                visible_now += 1;
            }
            out.push(Sent::New { seq });
        }
        if visible_now > 0 {
            self.pending.push(Event::Visible { queue, count: visible_now });
        }
        self.touched.push(queue);
        Ok(out)
    }

    fn receive(&mut self, queue: QueueId, opts: ReceiveOptions, now: i64) -> Result<Received, StorageError> {
        let (fifo, in_flight) = {
            let q = self.state(queue)?;
            (q.fifo, q.in_flight.len())
        };
        if in_flight >= MAX_IN_FLIGHT {
            return Err(StorageError::TooManyInFlight(MAX_IN_FLIGHT));
        }
        let max = opts.max.min(MAX_IN_FLIGHT - in_flight);
        if fifo {
            self.receive_fifo(queue, opts, max, now)
        } else {
            self.receive_standard(queue, opts, max, now)
        }
    }

    fn receive_standard(
        &mut self,
        queue: QueueId,
        opts: ReceiveOptions,
        max: usize,
        now: i64,
    ) -> Result<Received, StorageError> {
        let mut out = Vec::with_capacity(max);
        let mut dead_lettered = 0;
        // Late rows first: they have waited (a delay, or a visibility
        // timeout that ran out) and are older than what the fresh scan finds.
        while out.len() < max {
            let q = self.state_ref(queue)?;
            let want = (max - out.len()) as i64;
            let rows = self.select_rows(&q.sql.scan_late, params![q.cursor.0, q.cursor.1, now, want])?;
            let exhausted = (rows.len() as i64) < want;
            for row in rows {
                let q = self.state(queue)?;
                q.cursor = (row.vis, row.seq);
                if q.in_flight.contains_key(&row.seq) {
                    continue;
                }
                self.deliver_row(queue, row, &opts, now, &mut out, &mut dead_lettered)?;
            }
            if exhausted {
                break;
            }
        }
        let mut stepped = 0;
        while out.len() < max {
            let (rows, seen, exhausted) = self.scan_fresh(queue, max - out.len())?;
            stepped += seen;
            for row in rows {
                self.deliver_row(queue, row, &opts, now, &mut out, &mut dead_lettered)?;
            }
            if exhausted {
                // No row at all past the cursor: every row up to the last
                // sequence number handed out is behind it.
                let last = self.last_seq;
                let q = self.state(queue)?;
                q.fresh = q.fresh.max(last);
                break;
            }
            if stepped >= FRESH_STEPS && out.len() < max {
                // More rows to step over: a waiter comes back for them.
                self.pending.push(Event::Visible { queue, count: 1 });
                break;
            }
        }
        Ok(Received { messages: out, dead_lettered })
    }

    fn receive_fifo(
        &mut self,
        queue: QueueId,
        opts: ReceiveOptions,
        max: usize,
        now: i64,
    ) -> Result<Received, StorageError> {
        let mut out = Vec::with_capacity(max);
        let mut dead_lettered = 0;
        let mut after = i64::MIN;
        let mut touched_groups: HashSet<String> = HashSet::new();
        'groups: while out.len() < max {
            let groups: Vec<(String, i64)> = self
                .conn
                .prepare_cached(&self.state_ref(queue)?.sql.group_scan)
                .and_then(|mut st| {
                    st.query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()
                })
                .map_err(sql_err)?;
            if groups.is_empty() {
                break;
            }
            for (group, head) in groups {
                after = head;
                if self.state(queue)?.locked.contains_key(&group) {
                    continue;
                }
                let want = (max - out.len()) as i64 + 16;
                let rows = self.select_rows(&self.state_ref(queue)?.sql.fifo_rows, params![group, want])?;
                for row in rows {
                    if row.vis > now || out.len() >= max {
                        // Later messages of the group wait for this one.
                        break;
                    }
                    if let Some(r) = opts.redrive {
                        if row.rc >= r.max_receives {
                            self.move_row(queue, r.dead_letter_queue, row.seq, Some(queue), now)?;
                            touched_groups.insert(group.clone());
                            dead_lettered += 1;
                            continue;
                        }
                    }
                    *self.state(queue)?.locked.entry(group.clone()).or_insert(0) += 1;
                    out.push(self.hand_out(queue, row, opts.visibility_ms, now)?);
                }
                if out.len() >= max {
                    break 'groups;
                }
            }
        }
        for group in touched_groups {
            self.fix_group_head(queue, &group)?;
        }
        Ok(Received { messages: out, dead_lettered })
    }

    fn select_rows(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Row>, StorageError> {
        let mut st = self.conn.prepare_cached(sql).map_err(sql_err)?;
        let rows = st.query_map(params, Row::read).map_err(sql_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
    }

    /// Reads fresh rows after the queue's fresh cursor that are not in
    /// flight, `want` at most, stepping over late rows (which the late scan
    /// delivers) and moving the cursor past every row it read. Returns the
    /// rows, how many rows were read, and whether the table ran out.
    fn scan_fresh(&mut self, queue: QueueId, want: usize) -> Result<(Vec<Row>, usize, bool), StorageError> {
        let q = self.queues.get(&queue).ok_or(StorageError::NoQueue)?;
        let mut cursor = q.fresh;
        let mut out = Vec::with_capacity(want);
        let mut seen = 0;
        {
            let mut st = self.conn.prepare_cached(&q.sql.scan_fresh).map_err(sql_err)?;
            let mut rows = st.query(params![cursor, FRESH_CHUNK]).map_err(sql_err)?;
            while let Some(r) = rows.next().map_err(sql_err)? {
                seen += 1;
                let seq: i64 = r.get(0).map_err(sql_err)?;
                let vis: i64 = r.get(1).map_err(sql_err)?;
                cursor = seq;
                if vis != 0 || q.in_flight.contains_key(&seq) {
                    continue;
                }
                out.push(Row::read(r).map_err(sql_err)?);
                if out.len() == want {
                    break;
                }
            }
        }
        let exhausted = out.len() < want && (seen as i64) < FRESH_CHUNK;
        self.queues.get_mut(&queue).ok_or(StorageError::NoQueue)?.fresh = cursor;
        Ok((out, seen, exhausted))
    }

    /// Hands out a row found by a scan, or moves it to the dead-letter queue
    /// when it has been received too often.
    fn deliver_row(
        &mut self,
        queue: QueueId,
        row: Row,
        opts: &ReceiveOptions,
        now: i64,
        out: &mut Vec<Delivered>,
        dead_lettered: &mut u32,
    ) -> Result<(), StorageError> {
        if let Some(r) = opts.redrive {
            if row.rc >= r.max_receives {
                self.move_row(queue, r.dead_letter_queue, row.seq, Some(queue), now)?;
                *dead_lettered += 1;
                return Ok(());
            }
        }
        out.push(self.hand_out(queue, row, opts.visibility_ms, now)?);
        Ok(())
    }

    /// Marks a row in flight and turns it into a delivery.
    fn hand_out(
        &mut self,
        queue: QueueId,
        row: Row,
        visibility_ms: u64,
        now: i64,
    ) -> Result<Delivered, StorageError> {
        let nonce = fastrand::u64(..);
        let deadline = now + visibility_ms as i64;
        let receive_count = row.rc + 1;
        let first_receive = row.frt.unwrap_or(now);
        self.state(queue)?.in_flight.insert(
            row.seq,
            InFlight { deadline, nonce, receive_count, first_receive, group: row.group.clone() },
        );
        self.expiries.push(Reverse((deadline, queue, row.seq, nonce)));
        Ok(Delivered {
            seq: row.seq,
            body: row.body,
            body_md5: to16(&row.body_md5),
            attributes: row.attrs,
            attributes_md5: row.attrs_md5.as_deref().map(to16),
            sent_ms: sent_ms_of(row.seq),
            receive_count,
            first_receive_ms: first_receive,
            group_id: row.group,
            dedup_id: row.dedup,
            sender: row.sender,
            nonce,
        })
    }

    fn delete(&mut self, queue: QueueId, handles: Vec<(i64, u64)>) -> Result<Vec<Deleted>, StorageError> {
        let q = self.state_ref(queue)?;
        let fifo = q.fifo;
        // Looked up once per batch: the statement cache hashes the SQL text.
        let mut delete = self.conn.prepare_cached(&q.sql.delete).map_err(sql_err)?;
        let mut out = Vec::with_capacity(handles.len());
        for (seq, nonce) in handles {
            let q = self.queues.get_mut(&queue).ok_or(StorageError::NoQueue)?;
            let group = match q.in_flight.get(&seq) {
                Some(f) if f.nonce == nonce => {
                    let f = q.in_flight.remove(&seq).expect("present");
                    if let Some(g) = &f.group {
                        unlock(q, g);
                    }
                    let n = delete.execute([seq]).map_err(sql_err)?;
                    if n == 0 {
                        out.push(Deleted::Stale);
                        continue;
                    }
                    f.group
                }
                Some(_) => {
                    out.push(Deleted::Stale);
                    continue;
                }
                None => {
                    // Not in flight: a receipt persisted at expiry still
                    // deletes it until the message is received again.
                    let group: Option<Option<String>> = self
                        .conn
                        .prepare_cached(&format!(
                            "DELETE FROM m{queue} WHERE seq = ?1 AND receipt = ?2 RETURNING grp"
                        ))
                        .and_then(|mut st| st.query_row(params![seq, nonce as i64], |r| r.get(0)).optional())
                        .map_err(sql_err)?;
                    match group {
                        Some(g) => g,
                        None => {
                            out.push(Deleted::Stale);
                            continue;
                        }
                    }
                }
            };
            let q = self.queues.get_mut(&queue).ok_or(StorageError::NoQueue)?;
            q.total = q.total.saturating_sub(1);
            if fifo {
                if let Some(g) = group {
                    self.fix_group_head(queue, &g)?;
                }
            }
            out.push(Deleted::Yes);
        }
        self.touched.push(queue);
        Ok(out)
    }

    fn visibility(
        &mut self,
        queue: QueueId,
        changes: Vec<(i64, u64, u64)>,
        now: i64,
    ) -> Result<Vec<Result<(), VisibilityRefused>>, StorageError> {
        let mut out = Vec::with_capacity(changes.len());
        for (seq, nonce, timeout_ms) in changes {
            let q = self.state(queue)?;
            match q.in_flight.get_mut(&seq) {
                Some(f) if f.nonce == nonce => {
                    f.deadline = now + timeout_ms as i64;
                    self.expiries.push(Reverse((now + timeout_ms as i64, queue, seq, nonce)));
                    out.push(Ok(()));
                }
                Some(_) => out.push(Err(VisibilityRefused::InvalidHandle)),
                None => {
                    let receipt: Option<Option<i64>> = self
                        .conn
                        .prepare_cached(&format!("SELECT receipt FROM m{queue} WHERE seq = ?1"))
                        .and_then(|mut st| st.query_row([seq], |r| r.get(0)).optional())
                        .map_err(sql_err)?;
                    out.push(Err(match receipt {
                        Some(Some(r)) if r as u64 == nonce => VisibilityRefused::NotInFlight,
                        _ => VisibilityRefused::InvalidHandle,
                    }));
                }
            }
        }
        // A timeout of zero makes the message visible in this same step.
        self.expire(now)?;
        Ok(out)
    }

    fn counts(&mut self, queue: QueueId, now: i64) -> Result<Counts, StorageError> {
        let delayed: i64 = self
            .conn
            .prepare_cached(&format!("SELECT COUNT(*) FROM m{queue} WHERE vis > 0 AND vis > ?1"))
            .and_then(|mut st| st.query_row([now], |r| r.get(0)))
            .map_err(sql_err)?;
        let oldest: Option<i64> = self
            .conn
            .prepare_cached(&format!("SELECT MIN(seq) FROM m{queue}"))
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(sql_err)?;
        let q = self.state(queue)?;
        let in_flight = q.in_flight.len() as u64;
        let delayed = delayed as u64;
        Ok(Counts {
            visible: q.total.saturating_sub(in_flight + delayed),
            in_flight,
            delayed,
            oldest_sent_ms: oldest.map(sent_ms_of),
        })
    }

    fn move_some(
        &mut self,
        from: QueueId,
        to: Option<QueueId>,
        limit: usize,
        now: i64,
    ) -> Result<u64, StorageError> {
        let mut moved = 0u64;
        let mut after = i64::MIN;
        while (moved as usize) < limit {
            let rows: Vec<(i64, Option<i64>)> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT seq, src FROM m{from} WHERE seq > ?1 ORDER BY seq LIMIT 256"
                ))
                .and_then(|mut st| st.query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(sql_err)?;
            if rows.is_empty() {
                break;
            }
            for (seq, src) in rows {
                after = seq;
                if moved as usize >= limit {
                    break;
                }
                if self.state(from)?.in_flight.contains_key(&seq) {
                    continue;
                }
                let Some(dest) = to.or(src).filter(|d| self.queues.contains_key(d)) else { continue };
                self.move_row(from, dest, seq, None, now)?;
                moved += 1;
            }
        }
        if self.state(from)?.fifo {
            let groups: Vec<String> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT grp FROM g{from} WHERE head NOT IN (SELECT seq FROM m{from})"
                ))
                .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                .map_err(sql_err)?;
            for g in groups {
                self.fix_group_head(from, &g)?;
            }
        }
        Ok(moved)
    }

    /// Moves one message to another queue (visible there now), recording
    /// where it came from when dead-lettered.
    fn move_row(
        &mut self,
        from: QueueId,
        to: QueueId,
        seq: i64,
        src: Option<QueueId>,
        now: i64,
    ) -> Result<(), StorageError> {
        let (to_fifo, to_cursor) = match self.queues.get(&to) {
            Some(q) => (q.fifo, q.cursor),
            // The dead-letter queue is gone: leave the message where it is.
            None => return Ok(()),
        };
        // Land after the destination's scan position so a scan finds it.
        let vis = now.max(to_cursor.0.saturating_add(1));
        self.conn
            .prepare_cached(&format!(
                "INSERT OR IGNORE INTO m{to} (seq, vis, body, body_md5, attrs, attrs_md5, rc, frt, receipt, grp, dedup, sender, src)
                 SELECT seq, ?2, body, body_md5, attrs, attrs_md5, 0, NULL, NULL, grp, dedup, sender, ?3 FROM m{from} WHERE seq = ?1"
            ))
            .and_then(|mut st| st.execute(params![seq, vis, src]))
            .map_err(sql_err)?;
        let group: Option<Option<String>> = self
            .conn
            .prepare_cached(&format!("DELETE FROM m{from} WHERE seq = ?1 RETURNING grp"))
            .and_then(|mut st| st.query_row([seq], |r| r.get(0)).optional())
            .map_err(sql_err)?;
        if group.is_none() {
            return Ok(());
        }
        let q = self.state(from)?;
        q.total = q.total.saturating_sub(1);
        q.in_flight.remove(&seq);
        self.state(to)?.total += 1;
        self.touched.extend([from, to]);
        if to_fifo {
            let g = group.clone().flatten().unwrap_or_default();
            self.conn
                .prepare_cached(&format!(
                    "INSERT INTO g{to} (grp, head) VALUES (?1, ?2) ON CONFLICT (grp) DO UPDATE SET head = MIN(head, excluded.head)"
                ))
                .and_then(|mut st| st.execute(params![g, seq]))
                .map_err(sql_err)?;
        }
        if vis > now {
            self.wakeups.push(Reverse((vis, to)));
        } else {
            self.pending.push(Event::Visible { queue: to, count: 1 });
        }
        Ok(())
    }

    /// Recomputes a FIFO group's head after messages left it.
    fn fix_group_head(&self, queue: QueueId, group: &str) -> Result<(), StorageError> {
        let head: Option<i64> = self
            .conn
            .prepare_cached(&format!("SELECT MIN(seq) FROM m{queue} WHERE grp = ?1"))
            .and_then(|mut st| st.query_row([group], |r| r.get(0)))
            .map_err(sql_err)?;
        match head {
            Some(h) => self
                .conn
                .prepare_cached(&format!("UPDATE g{queue} SET head = ?2 WHERE grp = ?1"))
                .and_then(|mut st| st.execute(params![group, h])),
            None => self
                .conn
                .prepare_cached(&format!("DELETE FROM g{queue} WHERE grp = ?1"))
                .and_then(|mut st| st.execute([group])),
        }
        .map_err(sql_err)?;
        Ok(())
    }

    /// Ends the visibility of in-flight messages whose deadline passed.
    fn expire(&mut self, now: i64) -> Result<(), StorageError> {
        while let Some(Reverse((deadline, queue, seq, nonce))) = self.expiries.peek().copied() {
            if deadline > now {
                break;
            }
            self.expiries.pop();
            let Some(q) = self.queues.get_mut(&queue) else { continue };
            let current =
                matches!(q.in_flight.get(&seq), Some(f) if f.nonce == nonce && f.deadline == deadline);
            if !current {
                continue;
            }
            let f = q.in_flight.remove(&seq).expect("present");
            if let Some(g) = &f.group {
                unlock(q, g);
            }
            let (fifo, cursor) = (q.fifo, q.cursor);
            if fifo {
                self.conn
                    .prepare_cached(&format!(
                        "UPDATE m{queue} SET rc = ?2, frt = ?3, receipt = ?4 WHERE seq = ?1"
                    ))
                    .and_then(|mut st| {
                        st.execute(params![seq, f.receive_count, f.first_receive, nonce as i64])
                    })
                    .map_err(sql_err)?;
                self.pending.push(Event::Visible { queue, count: 1 });
            } else {
                // Back in the index just after the scan position.
                let vis = deadline.max(cursor.0.saturating_add(1));
                self.conn
                    .prepare_cached(&format!(
                        "UPDATE m{queue} SET vis = ?2, rc = ?3, frt = ?4, receipt = ?5 WHERE seq = ?1"
                    ))
                    .and_then(|mut st| {
                        st.execute(params![seq, vis, f.receive_count, f.first_receive, nonce as i64])
                    })
                    .map_err(sql_err)?;
                if vis > now {
                    self.wakeups.push(Reverse((vis, queue)));
                } else {
                    self.pending.push(Event::Visible { queue, count: 1 });
                }
            }
        }
        Ok(())
    }

    /// Announces delayed messages that became visible.
    fn wake(&mut self, now: i64) {
        let mut due: HashMap<QueueId, u32> = HashMap::new();
        while let Some(Reverse((at, queue))) = self.wakeups.peek().copied() {
            if at > now {
                break;
            }
            self.wakeups.pop();
            *due.entry(queue).or_insert(0) += 1;
        }
        for (queue, count) in due {
            self.pending.push(Event::Visible { queue, count });
        }
    }

    /// Removes messages past their queue's retention period, and expired
    /// FIFO deduplication ids.
    fn sweep(&mut self, now: i64) -> Result<(), StorageError> {
        let plans: Vec<(QueueId, bool, i64)> = self
            .queues
            .values()
            .map(|q| {
                let cutoff = now - i64::from(q.record.attributes.retention) * 1000;
                (q.record.id, q.fifo, (cutoff - EPOCH_MS).max(0) << SEQ_SHIFT)
            })
            .collect();
        for (queue, fifo, cutoff_seq) in plans {
            let removed: Vec<(i64, Option<String>)> = self
                .conn
                .prepare_cached(&format!(
                    "DELETE FROM m{queue} WHERE seq IN (SELECT seq FROM m{queue} WHERE seq < ?1 LIMIT ?2) RETURNING seq, grp"
                ))
                .and_then(|mut st| st.query_map(params![cutoff_seq, SWEEP_LIMIT], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(sql_err)?;
            if removed.is_empty() && !fifo {
                continue;
            }
            let mut groups = HashSet::new();
            self.touched.push(queue);
            {
                let q = self.state(queue)?;
                q.total = q.total.saturating_sub(removed.len() as u64);
                for (seq, group) in &removed {
                    if let Some(f) = q.in_flight.remove(seq) {
                        if let Some(g) = &f.group {
                            unlock(q, g);
                        }
                    }
                    if let Some(g) = group {
                        groups.insert(g.clone());
                    }
                }
            }
            if fifo {
                for g in groups {
                    self.fix_group_head(queue, &g)?;
                }
                self.conn
                    .prepare_cached(&format!("DELETE FROM d{queue} WHERE expires <= ?1"))
                    .and_then(|mut st| st.execute([now]))
                    .map_err(sql_err)?;
            }
        }
        Ok(())
    }
}

fn unlock(q: &mut QState, group: &str) {
    if let Some(n) = q.locked.get_mut(group) {
        *n -= 1;
        if *n == 0 {
            q.locked.remove(group);
        }
    }
}

impl Row {
    /// A row of `HotSql`'s scans (their column order).
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            seq: r.get(0)?,
            vis: r.get(1)?,
            body: r.get(2)?,
            body_md5: r.get(3)?,
            attrs: r.get(4)?,
            attrs_md5: r.get(5)?,
            rc: r.get(6)?,
            frt: r.get(7)?,
            group: r.get(8)?,
            dedup: r.get(9)?,
            sender: r.get(10)?,
        })
    }
}

struct Row {
    seq: i64,
    vis: i64,
    body: String,
    body_md5: Vec<u8>,
    attrs: Option<Vec<u8>>,
    attrs_md5: Option<Vec<u8>>,
    rc: u32,
    frt: Option<i64>,
    group: Option<String>,
    dedup: Option<String>,
    sender: Option<String>,
}

fn to16(v: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = v.len().min(16);
    out[..n].copy_from_slice(&v[..n]);
    out
}

/// Sends a committed transaction's replies: one batch per mailbox (there is
/// one per runtime thread that sent jobs, a handful), the rest directly.
fn deliver(done: Vec<(Completion, Option<Mailbox>)>) {
    let mut batches: Vec<(Mailbox, Vec<Completion>)> = Vec::new();
    for (d, to) in done {
        match to {
            Some(to) => match batches.iter_mut().find(|(m, _)| m.same_channel(&to)) {
                Some((_, batch)) => batch.push(d),
                None => batches.push((to, vec![d])),
            },
            None => d(None),
        }
    }
    for (to, batch) in batches {
        // The runtime is gone (its task dropped the receiver): nobody waits
        // on these replies, but send them anyway.
        if let Err(returned) = to.send(batch) {
            for d in returned.0 {
                d(None);
            }
        }
    }
}

/// One event per queue for a commit's arrivals (the waiters' task is woken
/// once per event sent, and a commit often holds many sends to one queue).
fn coalesce(pending: &mut Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for Event::Visible { queue, count } in pending.drain(..) {
        match out.iter_mut().find(|Event::Visible { queue: q, .. }| *q == queue) {
            Some(Event::Visible { count: c, .. }) => *c = c.saturating_add(count),
            None => out.push(Event::Visible { queue, count }),
        }
    }
    out
}

fn fail(job: Job, err: &StorageError) {
    fn e<T>(err: &StorageError) -> Result<T, StorageError> {
        Err(err.clone())
    }
    match job {
        Job::Queues(r) => drop(r.send(e(err))),
        Job::Create { reply, .. } => drop(reply.send(e(err))),
        Job::Update { reply, .. } => drop(reply.send(e(err))),
        Job::DeleteQueue { reply, .. } => drop(reply.send(e(err))),
        Job::Purge { reply, .. } => drop(reply.send(e(err))),
        Job::Send { reply, .. } => drop(reply.send(e(err))),
        Job::Receive { reply, .. } => drop(reply.send(e(err))),
        Job::Delete { reply, .. } => drop(reply.send(e(err))),
        Job::Visibility { reply, .. } => drop(reply.send(e(err))),
        Job::Counts { reply, .. } => drop(reply.send(e(err))),
        Job::Move { reply, .. } => drop(reply.send(e(err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commits_arrivals_make_one_event_per_queue() {
        let mut pending = vec![
            Event::Visible { queue: 1, count: 10 },
            Event::Visible { queue: 2, count: 1 },
            Event::Visible { queue: 1, count: 10 },
            Event::Visible { queue: 1, count: u32::MAX },
        ];
        let out = coalesce(&mut pending);
        assert!(pending.is_empty());
        assert_eq!(
            out,
            [Event::Visible { queue: 1, count: u32::MAX }, Event::Visible { queue: 2, count: 1 }]
        );
    }

    #[test]
    fn sequence_numbers_rise_and_encode_the_send_time() {
        let mut last = 0;
        let now = EPOCH_MS + 5_000;
        let a = Writer::next_seq(&mut last, now);
        let b = Writer::next_seq(&mut last, now);
        assert!(b > a);
        assert_eq!(sent_ms_of(a), now);
        // A clock step backwards never reuses a number.
        let c = Writer::next_seq(&mut last, now - 1_000);
        assert!(c > b);
    }
}
