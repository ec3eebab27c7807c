//! The SNS API's decoders (the Query protocol's nested members and
//! entries, message attributes, `MessageStructure=json`) and the filter
//! policy parser and matcher, driven through the whole service against a
//! real topic engine: any request gets an XML answer, never a panic and
//! never a 500.
//!
//! Input: the form body. A fixed topic with a queue subscription exists;
//! `Subscribe` with a `FilterPolicy` and `Publish` reach the policy code.
#![no_main]

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use gatehouse::aws::AwsService;
use gatehouse::notify::{Notifier, Urls};
use gatehouse::queue::storage::sqlite::{SqliteOptions, SqliteStorage, SyncMode};
use gatehouse::queue::{Account, QueueEngine};
use http::Request;
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    service: AwsService<SqliteStorage>,
    _dir: tempfile::TempDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opts =
        SqliteOptions { dir: dir.path().to_owned(), sync: SyncMode::Normal, cache_mib: 16, checkpoint_mib: 16 };
    let storage = SqliteStorage::open(&opts).unwrap();
    let account = Account { id: "000000000000".into(), region: "us-east-1".into() };
    let (engine, notifier) = runtime.block_on(async {
        let engine: Arc<QueueEngine<SqliteStorage>> = QueueEngine::start(storage, account).await.unwrap();
        let urls = Urls { base: "http://sns.fuzz".into() };
        let notifier = Notifier::open(engine.clone(), dir.path(), urls, None).await.unwrap();
        (engine, notifier)
    });
    let service = AwsService::new(engine, Some(notifier), None);
    let fixture = Fixture { runtime, service, _dir: dir };
    for body in [
        "Action=CreateQueue&Version=2012-11-05&QueueName=q",
        "Action=CreateTopic&Version=2010-03-31&Name=t",
        "Action=Subscribe&Version=2010-03-31&TopicArn=arn:aws:sns:us-east-1:000000000000:t&Protocol=sqs&Endpoint=arn:aws:sqs:us-east-1:000000000000:q",
    ] {
        assert_eq!(fixture.answer(body.as_bytes().to_vec()).0, 200, "{body}");
    }
    fixture
});

impl Fixture {
    fn answer(&self, body: Vec<u8>) -> (u16, Bytes) {
        let req = Request::post("/")
            .header("host", "sns.fuzz")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.runtime.block_on(async {
            let resp = self.service.clone().answer(req).await;
            let status = resp.status().as_u16();
            (status, resp.into_body().collect().await.unwrap().to_bytes())
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let mut body = b"Version=2010-03-31&".to_vec();
    body.extend_from_slice(data);
    let (status, answer) = FIXTURE.answer(body);
    assert_ne!(status, 500, "{}", String::from_utf8_lossy(&answer));
    assert!(answer.starts_with(b"<"), "{}", String::from_utf8_lossy(&answer));
});
