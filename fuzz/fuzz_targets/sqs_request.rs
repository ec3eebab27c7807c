//! The SQS API's decoders, AWS JSON 1.0 and Query, driven through the
//! whole service against a real (SQLite) queue store: any request gets an
//! answer in its protocol's shape, never a panic and never a 500 (bad
//! input is the client's error).
//!
//! Input: byte 0 picks the protocol (even: JSON, odd: Query) and byte 1 the
//! JSON action; the rest is the body.
#![no_main]

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use gatehouse::aws::AwsService;
use gatehouse::queue::storage::sqlite::{SqliteOptions, SqliteStorage, SyncMode};
use gatehouse::queue::{Account, QueueEngine};
use http::Request;
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;

const ACTIONS: &[&str] = &[
    "CreateQueue",
    "GetQueueUrl",
    "ListQueues",
    "DeleteQueue",
    "PurgeQueue",
    "GetQueueAttributes",
    "SetQueueAttributes",
    "TagQueue",
    "UntagQueue",
    "ListQueueTags",
    "SendMessage",
    "SendMessageBatch",
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "ListDeadLetterSourceQueues",
    "StartMessageMoveTask",
    "ListMessageMoveTasks",
    "CancelMessageMoveTask",
    "AddPermission",
    "Unknown",
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    service: AwsService<SqliteStorage>,
    _dir: tempfile::TempDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts = SqliteOptions {
        dir: dir.path().to_owned(),
        sync: SyncMode::Normal,
        cache_mib: 16,
        checkpoint_mib: 16,
    };
    let storage = SqliteStorage::open(&opts).unwrap();
    let account = Account { id: "000000000000".into(), region: "us-east-1".into() };
    let engine: Arc<QueueEngine<SqliteStorage>> =
        runtime.block_on(QueueEngine::start(storage, account)).unwrap();
    let service = AwsService::new(engine, None, None);
    let fixture = Fixture { runtime, service, _dir: dir };
    for body in [
        "Action=CreateQueue&QueueName=q",
        "Action=CreateQueue&QueueName=q.fifo&Attribute.1.Name=FifoQueue&Attribute.1.Value=true",
    ] {
        let (status, _) = fixture.answer(true, None, body.as_bytes().to_vec());
        assert_eq!(status, 200);
    }
    fixture
});

impl Fixture {
    fn answer(&self, query: bool, action: Option<&str>, body: Vec<u8>) -> (u16, Bytes) {
        let mut req = Request::post("/").header("host", "sqs.fuzz");
        req = match (query, action) {
            (true, _) => req.header("content-type", "application/x-www-form-urlencoded"),
            (false, action) => req
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amz-target", format!("AmazonSQS.{}", action.unwrap_or("SendMessage"))),
        };
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        self.runtime.block_on(async {
            let resp = self.service.clone().answer(req).await;
            let status = resp.status().as_u16();
            (status, resp.into_body().collect().await.unwrap().to_bytes())
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let (Some(&kind), Some(&pick)) = (data.first(), data.get(1)) else { return };
    let query = kind % 2 == 1;
    let action = ACTIONS[usize::from(pick) % ACTIONS.len()];
    let (status, body) = FIXTURE.answer(query, Some(action), data[2..].to_vec());
    assert_ne!(status, 500, "{}", String::from_utf8_lossy(&body));
    if query {
        assert!(body.starts_with(b"<"), "{}", String::from_utf8_lossy(&body));
    } else if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
        panic!("a JSON-protocol answer that is not JSON ({e}): {}", String::from_utf8_lossy(&body));
    }
});
