//! The SQLite backend directly, for what the API cannot show quickly.

use std::collections::BTreeMap;
use std::time::Duration;

use gatehouse::queue::attributes::QueueAttributes;
use gatehouse::queue::storage::sqlite::{SqliteOptions, SqliteStorage, SyncMode};
use gatehouse::queue::storage::{Delivered, NewMessage, QueueRecord, ReceiveOptions, Storage};

fn open(dir: &std::path::Path) -> SqliteStorage {
    open_with(dir, 64)
}

fn open_with(dir: &std::path::Path, checkpoint_mib: u32) -> SqliteStorage {
    let opts = SqliteOptions { dir: dir.to_owned(), sync: SyncMode::Full, cache_mib: 8, checkpoint_mib };
    SqliteStorage::open(&opts).unwrap()
}

fn message(body: &str) -> NewMessage {
    NewMessage {
        body: body.into(),
        body_md5: [0; 16],
        attributes: None,
        attributes_md5: None,
        delay_ms: 0,
        group_id: None,
        dedup_id: None,
        sender: None,
    }
}

/// A message delayed by an hour: a late row for the whole test.
fn delayed(body: &str) -> NewMessage {
    NewMessage { delay_ms: 3_600_000, ..message(body) }
}

/// A standard queue named `q` with the default attributes.
async fn standard_queue(storage: &SqliteStorage) -> QueueRecord {
    storage.create_queue("q", QueueAttributes::defaults(false), BTreeMap::new(), 0).await.unwrap()
}

fn bodies(got: Vec<Delivered>) -> Vec<String> {
    got.into_iter().map(|m| m.body).collect()
}

#[tokio::test]
async fn retention_removes_expired_messages_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    // SQS's minimum retention is 60 s; the store takes any value, which
    // lets this test run in seconds.
    let mut attrs = QueueAttributes::defaults(false);
    attrs.retention = 1;
    let q = storage.create_queue("short", attrs, BTreeMap::new(), 0).await.unwrap();
    storage.send(q.id, (0..50).map(|i| message(&format!("m{i}"))).collect()).await.unwrap();
    // One is in flight when it expires: it goes too.
    let opts = ReceiveOptions { max: 1, visibility_ms: 60_000, redrive: None };
    assert_eq!(storage.receive(q.id, opts).await.unwrap().messages.len(), 1);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = storage.counts(q.id).await.unwrap();
        if c.visible + c.in_flight + c.delayed == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "messages not swept: {c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    storage.close();
    // Removed from the file, not merely hidden.
    let db = rusqlite::Connection::open(dir.path().join("queues.db")).unwrap();
    let rows: i64 = db.query_row(&format!("SELECT COUNT(*) FROM m{}", q.id), [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn in_flight_messages_become_visible_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let q = standard_queue(&storage).await;
    storage.send(q.id, vec![message("a"), message("b")]).await.unwrap();
    let opts = ReceiveOptions { max: 10, visibility_ms: 3_600_000, redrive: None };
    let got = storage.receive(q.id, opts).await.unwrap().messages;
    assert_eq!(got.len(), 2);
    let (seq, nonce) = (got[0].seq, got[0].nonce);
    storage.delete(q.id, vec![(seq, nonce)]).await.unwrap();
    drop(storage);

    // At-least-once: what was in flight is delivered again; the deleted one
    // is not.
    let storage = open(dir.path());
    let again = storage.receive(q.id, opts).await.unwrap().messages;
    assert_eq!(again.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["b"]);
}

/// Rows in the partial index `m<id>_late`: those with a visibility time.
fn late_rows(dir: &std::path::Path, queue: i64) -> i64 {
    let db = rusqlite::Connection::open(dir.join("queues.db")).unwrap();
    db.query_row(&format!("SELECT COUNT(*) FROM m{queue} INDEXED BY m{queue}_late WHERE vis > 0"), [], |r| {
        r.get(0)
    })
    .unwrap()
}

/// Receives until `n` messages came back (visibility timeouts and delays
/// run out on the writer's clock; there is no event to wait for here).
async fn receive_n(storage: &SqliteStorage, queue: i64, n: usize) -> Vec<(String, u32)> {
    let opts = ReceiveOptions { max: 10, visibility_ms: 60_000, redrive: None };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(std::time::Instant::now() < deadline, "only {got:?} came back");
        let batch = storage.receive(queue, opts).await.unwrap().messages;
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        got.extend(batch.into_iter().map(|m| (m.body, m.receive_count)));
    }
    got.sort();
    got
}

#[tokio::test]
async fn fresh_messages_stay_out_of_the_index_until_they_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let q = standard_queue(&storage).await;
    let soon = NewMessage { delay_ms: 300, ..message("d") };
    storage.send(q.id, vec![message("a"), message("b"), message("c"), soon]).await.unwrap();
    // Only the delayed message has a visibility time.
    assert_eq!(late_rows(dir.path(), q.id), 1);
    let c = storage.counts(q.id).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (3, 0, 1));

    let short = ReceiveOptions { max: 10, visibility_ms: 200, redrive: None };
    let first = storage.receive(q.id, short).await.unwrap().messages;
    assert_eq!(first.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    let c = storage.counts(q.id).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 3, 1));

    // The visibility timeouts run out: those rows become late and come
    // back, as does the delayed one; a message sent after them is fresh.
    let again = receive_n(&storage, q.id, 4).await;
    let expect = [("a", 2), ("b", 2), ("c", 2), ("d", 1)].map(|(b, n)| (b.to_owned(), n));
    assert_eq!(again, expect);
    assert_eq!(late_rows(dir.path(), q.id), 4);
    storage.send(q.id, vec![message("e")]).await.unwrap();
    assert_eq!(receive_n(&storage, q.id, 1).await, [("e".to_owned(), 1)]);
    let c = storage.counts(q.id).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 5, 0));
}

#[tokio::test]
async fn fresh_messages_are_found_among_many_late_ones() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let q = standard_queue(&storage).await;
    storage.send(q.id, (0..50).map(|i| delayed(&format!("late{i}"))).collect()).await.unwrap();
    let opts = ReceiveOptions { max: 10, visibility_ms: 60_000, redrive: None };
    // Nothing fresh: the scan steps over the late rows and past them.
    assert!(storage.receive(q.id, opts).await.unwrap().messages.is_empty());
    storage.send(q.id, vec![message("a")]).await.unwrap();
    assert_eq!(bodies(storage.receive(q.id, opts).await.unwrap().messages), ["a"]);
    storage.send(q.id, vec![delayed("x"), message("b"), delayed("y"), message("c")]).await.unwrap();
    assert_eq!(bodies(storage.receive(q.id, opts).await.unwrap().messages), ["b", "c"]);
    assert!(storage.receive(q.id, opts).await.unwrap().messages.is_empty());
    let c = storage.counts(q.id).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 3, 52));
}

/// A receive steps over a bounded number of late rows; the rest of the
/// walk is left to the next receive (the writer serves every queue).
#[tokio::test]
async fn a_receive_steps_over_a_bounded_number_of_late_rows() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let q = standard_queue(&storage).await;
    storage.send(q.id, (0..10_000).map(|i| delayed(&format!("late{i}"))).collect()).await.unwrap();
    storage.send(q.id, vec![message("fresh")]).await.unwrap();
    drop(storage);
    // After a restart the fresh scan starts from the beginning again.
    let storage = open(dir.path());
    let opts = ReceiveOptions { max: 10, visibility_ms: 60_000, redrive: None };
    let mut calls = 0;
    let got = loop {
        calls += 1;
        let got = storage.receive(q.id, opts).await.unwrap().messages;
        if !got.is_empty() || calls > 10 {
            break got;
        }
    };
    assert_eq!(bodies(got), ["fresh"]);
    // 10,000 late rows at most 4,096 per receive: the third call finds it.
    assert_eq!(calls, 3);
}

/// Data directories made before fresh rows existed: every row has a
/// visibility time, the index `m<id>_vis` covers all of them, and there is
/// no `counts` table.
#[tokio::test]
async fn a_store_with_the_earlier_full_index_is_migrated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let q = standard_queue(&storage).await;
    storage.send(q.id, (0..5).map(|i| message(&format!("m{i}"))).collect()).await.unwrap();
    storage.send(q.id, vec![delayed("later")]).await.unwrap();
    storage.close();
    drop(storage);
    {
        // Rewrite the store into the earlier layout.
        let db = rusqlite::Connection::open(dir.path().join("queues.db")).unwrap();
        let id = q.id;
        let sent_ms = "((seq >> 20) + 1704067200000)";
        db.execute_batch(&format!(
            "DROP INDEX m{id}_late;
             UPDATE m{id} SET vis = {sent_ms} WHERE vis = 0;
             CREATE INDEX m{id}_vis ON m{id} (vis, seq);
             DROP TABLE counts;"
        ))
        .unwrap();
    }

    let storage = open(dir.path());
    let c = storage.counts(q.id).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (5, 0, 1));
    let got = receive_n(&storage, q.id, 5).await;
    assert_eq!(got.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(), ["m0", "m1", "m2", "m3", "m4"]);
    // New messages are fresh rows beside the migrated late ones.
    storage.send(q.id, vec![message("new")]).await.unwrap();
    assert_eq!(receive_n(&storage, q.id, 1).await, [("new".to_owned(), 1)]);
    storage.close();
    drop(storage);
    let db = rusqlite::Connection::open(dir.path().join("queues.db")).unwrap();
    let indexes: Vec<String> = db
        .prepare(&format!("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'm{}'", q.id))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, [format!("m{}_late", q.id)]);
    assert_eq!(late_rows(dir.path(), q.id), 6);
    assert_eq!(stored_total(dir.path(), q.id), 7);
}

/// The `counts` table's total for a queue.
fn stored_total(dir: &std::path::Path, queue: i64) -> i64 {
    let db = rusqlite::Connection::open(dir.join("queues.db")).unwrap();
    db.query_row("SELECT total FROM counts WHERE queue = ?1", [queue], |r| r.get(0)).unwrap()
}

/// A restart reads each queue's count from the store (committed with the
/// messages) instead of counting rows, which on a cold page cache reads
/// every body of a deep queue.
#[tokio::test]
async fn message_counts_are_committed_with_the_messages() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let attrs = QueueAttributes::defaults(false);
    let q = storage.create_queue("q", attrs.clone(), BTreeMap::new(), 0).await.unwrap();
    let dlq = storage.create_queue("dlq", attrs, BTreeMap::new(), 0).await.unwrap();
    storage.send(q.id, (0..20).map(|i| message(&format!("m{i}"))).collect()).await.unwrap();
    let opts = ReceiveOptions { max: 5, visibility_ms: 60_000, redrive: None };
    let got = storage.receive(q.id, opts).await.unwrap().messages;
    storage.delete(q.id, got.iter().map(|m| (m.seq, m.nonce)).collect()).await.unwrap();
    assert_eq!(storage.move_messages(q.id, Some(dlq.id), 3).await.unwrap(), 3);
    storage.close();
    drop(storage);
    assert_eq!((stored_total(dir.path(), q.id), stored_total(dir.path(), dlq.id)), (12, 3));

    // A count that disagrees with the rows shows it is read, not recounted.
    let db = rusqlite::Connection::open(dir.path().join("queues.db")).unwrap();
    db.execute("UPDATE counts SET total = 1000 WHERE queue = ?1", [q.id]).unwrap();
    drop(db);
    let storage = open(dir.path());
    assert_eq!(storage.counts(q.id).await.unwrap().visible, 1000);
    storage.purge(q.id).await.unwrap();
    storage.close();
    drop(storage);
    assert_eq!(stored_total(dir.path(), q.id), 0);
}

#[tokio::test]
async fn the_wal_stays_bounded_under_sustained_commits() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_with(dir.path(), 4);
    let q = standard_queue(&storage).await;
    let wal = dir.path().join("queues.db-wal");
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    // One message per transaction, each commit writing a few 16 KiB pages:
    // about 100 MiB of WAL frames in all, 25 times the size at which
    // checkpoints start here. The checkpointer (not SQLite's automatic one,
    // which the WAL hook replaces) must copy them out and let the WAL start
    // over.
    let body = "x".repeat(8 << 10);
    let mut largest = 0;
    let n = 2500;
    for i in 0..n {
        storage.send(q.id, vec![message(&body)]).await.unwrap();
        if i % 50 == 0 {
            largest = largest.max(size(&wal));
        }
    }
    largest = largest.max(size(&wal));
    assert!(largest < 12 << 20, "the WAL grew to {largest} bytes");
    // The messages went into the database file itself.
    assert!(size(&dir.path().join("queues.db")) > (n as u64) * (8 << 10));
    storage.close();
    let db = rusqlite::Connection::open(dir.path().join("queues.db")).unwrap();
    let rows: i64 = db.query_row(&format!("SELECT COUNT(*) FROM m{}", q.id), [], |r| r.get(0)).unwrap();
    assert_eq!(rows, n);
}

/// Replies go to a task on the calling thread's runtime (one batch per
/// commit). A thread whose runtime is dropped and replaced must still get
/// its replies, as must a thread outside any runtime.
#[test]
fn replies_reach_callers_across_runtimes_and_outside_them() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    for round in 0..3 {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let name = format!("q{round}");
            let call = storage.create_queue(&name, QueueAttributes::defaults(false), BTreeMap::new(), 0);
            let q = tokio::time::timeout(Duration::from_secs(10), call).await.expect("a reply").unwrap();
            assert_eq!(q.name, name);
        });
    }
    // No runtime on this thread: replies come straight from the writer.
    let sent = no_runtime::block_on(storage.send(1, vec![message("m")]));
    assert_eq!(sent.unwrap().len(), 1);
}

/// A minimal executor for the no-runtime case (the test must not enter a
/// tokio runtime to poll the call).
mod no_runtime {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    pub fn block_on<F: Future>(f: F) -> F::Output {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}
