//! Dead-letter queues, FIFO queues, authentication, persistence, declared
//! queues and publishing through the gateway, with the real SDK.

mod common;

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use common::*;

const ARN: &str = "arn:aws:sqs:us-east-1:000000000000:";

fn redrive(dlq: &str, max: u32) -> String {
    format!(r#"{{"deadLetterTargetArn":"{ARN}{dlq}","maxReceiveCount":{max}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_move_to_the_dead_letter_queue_and_can_be_redriven() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let dlq = create_queue(&c, "jobs-dlq", &[]).await;
    let q = create_queue(&c, "jobs", &[(QueueAttributeName::RedrivePolicy, &redrive("jobs-dlq", 2))]).await;
    c.send_message()
        .queue_url(&q)
        .message_body("poison")
        .message_attributes(
            "kind",
            MessageAttributeValue::builder().data_type("String").string_value("bad").build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    // Two receives are allowed; the third attempt moves it.
    for attempt in 1..=2 {
        let got = c.receive_message().queue_url(&q).visibility_timeout(0).send().await.unwrap();
        assert_eq!(got.messages().len(), 1, "receive {attempt}");
    }
    assert!(c.receive_message().queue_url(&q).send().await.unwrap().messages().is_empty());
    let moved = c
        .receive_message()
        .queue_url(&dlq)
        .message_attribute_names("All")
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let m = &moved.messages()[0];
    assert_eq!(m.body(), Some("poison"));
    assert_eq!(m.message_attributes().unwrap()["kind"].string_value(), Some("bad"));

    let sources = c.list_dead_letter_source_queues().queue_url(&dlq).send().await.unwrap();
    assert_eq!(sources.queue_urls(), std::slice::from_ref(&q));

    // Redrive back to the source queue.
    let task = c.start_message_move_task().source_arn(format!("{ARN}jobs-dlq")).send().await.unwrap();
    assert!(task.task_handle().is_some());
    eventually("the move task to complete", || async {
        let tasks = c.list_message_move_tasks().source_arn(format!("{ARN}jobs-dlq")).send().await.unwrap();
        tasks.results().first().and_then(|t| t.status()) == Some("COMPLETED")
    })
    .await;
    let tasks = c.list_message_move_tasks().source_arn(format!("{ARN}jobs-dlq")).send().await.unwrap();
    assert_eq!(tasks.results()[0].approximate_number_of_messages_moved(), 1);
    let back = c.receive_message().queue_url(&q).send().await.unwrap();
    assert_eq!(back.messages()[0].body(), Some("poison"));

    // A queue that is nobody's dead-letter queue cannot be a move source.
    let err = c.start_message_move_task().source_arn(format!("{ARN}jobs")).send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue");
    let err = c.cancel_message_move_task().task_handle("nope").send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_move_tasks_can_be_cancelled_and_redrive_allow_is_enforced() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let dlq = create_queue(&c, "dlq", &[]).await;
    let _src = create_queue(&c, "src", &[(QueueAttributeName::RedrivePolicy, &redrive("dlq", 1))]).await;
    let dest = create_queue(&c, "dest", &[]).await;
    for i in 0..20 {
        c.send_message().queue_url(&dlq).message_body(format!("{i}")).send().await.unwrap();
    }
    let task = c
        .start_message_move_task()
        .source_arn(format!("{ARN}dlq"))
        .destination_arn(format!("{ARN}dest"))
        .max_number_of_messages_per_second(5)
        .send()
        .await
        .unwrap();
    let err = c.start_message_move_task().source_arn(format!("{ARN}dlq")).send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue", "one task per source at a time");
    let cancelled =
        c.cancel_message_move_task().task_handle(task.task_handle().unwrap()).send().await.unwrap();
    assert!(cancelled.approximate_number_of_messages_moved() < 20);
    eventually("cancellation", || async {
        let t = c.list_message_move_tasks().source_arn(format!("{ARN}dlq")).send().await.unwrap();
        t.results()[0].status() == Some("CANCELLED")
    })
    .await;
    let n: u32 =
        queue_attribute(&c, &dest, QueueAttributeName::ApproximateNumberOfMessages).await.parse().unwrap();
    assert!(n < 20, "stopped early, moved {n}");

    // A dead-letter queue that denies all sources.
    let strict = create_queue(
        &c,
        "strict-dlq",
        &[(QueueAttributeName::RedriveAllowPolicy, r#"{"redrivePermission":"denyAll"}"#)],
    )
    .await;
    let _ = strict;
    let err = c
        .create_queue()
        .queue_name("other")
        .attributes(QueueAttributeName::RedrivePolicy, redrive("strict-dlq", 3))
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_invalid_attribute_value(), "{err:?}");
    // One allowing a named source.
    create_queue(
        &c,
        "picky-dlq",
        &[(
            QueueAttributeName::RedriveAllowPolicy,
            &format!(r#"{{"redrivePermission":"byQueue","sourceQueueArns":["{ARN}friend"]}}"#),
        )],
    )
    .await;
    create_queue(&c, "friend", &[(QueueAttributeName::RedrivePolicy, &redrive("picky-dlq", 3))]).await;
    let err = c
        .create_queue()
        .queue_name("stranger")
        .attributes(QueueAttributeName::RedrivePolicy, redrive("picky-dlq", 3))
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_invalid_attribute_value());
    // A FIFO queue's dead-letter queue must be FIFO.
    create_queue(&c, "f.fifo", &[(QueueAttributeName::FifoQueue, "true")]).await;
    let err = c
        .create_queue()
        .queue_name("g.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::RedrivePolicy, redrive("dlq", 3))
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_invalid_attribute_value());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_queues_order_groups_deduplicate_and_lock_groups_in_flight() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let q = create_queue(&c, "pay.fifo", &[(QueueAttributeName::FifoQueue, "true")]).await;

    let err = c
        .send_message()
        .queue_url(&q)
        .message_body("x")
        .message_deduplication_id("d")
        .send()
        .await
        .unwrap_err();
    assert_eq!(sqs_code(&err), "MissingParameter", "a group id is required");
    let err =
        c.send_message().queue_url(&q).message_body("x").message_group_id("g").send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue", "a dedup id (or content-based dedup) is required");
    let err = c
        .send_message()
        .queue_url(&q)
        .message_body("x")
        .message_group_id("g")
        .message_deduplication_id("d")
        .delay_seconds(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue", "no per-message delay on FIFO queues");

    let mut seqs = Vec::new();
    for (group, body) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("b", "b2")] {
        let r = c
            .send_message()
            .queue_url(&q)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(body)
            .send()
            .await
            .unwrap();
        seqs.push(r.sequence_number().unwrap().parse::<u128>().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers increase: {seqs:?}");
    // A duplicate within five minutes: accepted, same id, not stored again.
    let first = c
        .send_message()
        .queue_url(&q)
        .message_body("a1")
        .message_group_id("a")
        .message_deduplication_id("a1")
        .send()
        .await
        .unwrap();
    assert_eq!(first.sequence_number().unwrap().parse::<u128>().unwrap(), seqs[0]);

    let got = c
        .receive_message()
        .queue_url(&q)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .visibility_timeout(30)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = got.messages().iter().map(|m| m.body().unwrap()).collect();
    // Each group in order.
    let a: Vec<&&str> = bodies.iter().filter(|b| b.starts_with('a')).collect();
    let b: Vec<&&str> = bodies.iter().filter(|b| b.starts_with('b')).collect();
    assert_eq!(a, vec![&"a1", &"a2", &"a3"]);
    assert_eq!(b, vec![&"b1", &"b2"]);
    let m0 = &got.messages()[0];
    let sys = m0.attributes().unwrap();
    assert!(sys.contains_key(&MessageSystemAttributeName::SequenceNumber));
    assert!(sys.contains_key(&MessageSystemAttributeName::MessageGroupId));
    assert!(sys.contains_key(&MessageSystemAttributeName::MessageDeduplicationId));

    // While a group has messages in flight, later messages of it wait.
    let r = c
        .send_message()
        .queue_url(&q)
        .message_body("a4")
        .message_group_id("a")
        .message_deduplication_id("a4")
        .send()
        .await
        .unwrap();
    let _ = r;
    let c2 = c
        .send_message()
        .queue_url(&q)
        .message_body("c1")
        .message_group_id("c")
        .message_deduplication_id("c1")
        .send()
        .await
        .unwrap();
    let _ = c2;
    let next = c.receive_message().queue_url(&q).max_number_of_messages(10).send().await.unwrap();
    assert_eq!(next.messages().iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), vec!["c1"]);
    // Deleting group a's in-flight messages releases a4.
    for m in got.messages().iter().filter(|m| m.body().unwrap().starts_with('a')) {
        c.delete_message().queue_url(&q).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
    }
    let after = c.receive_message().queue_url(&q).max_number_of_messages(10).send().await.unwrap();
    assert_eq!(after.messages().iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), vec!["a4"]);

    // Content-based deduplication.
    let cb = create_queue(
        &c,
        "cb.fifo",
        &[(QueueAttributeName::FifoQueue, "true"), (QueueAttributeName::ContentBasedDeduplication, "true")],
    )
    .await;
    let x = c.send_message().queue_url(&cb).message_body("same").message_group_id("g").send().await.unwrap();
    let y = c.send_message().queue_url(&cb).message_body("same").message_group_id("g").send().await.unwrap();
    assert_eq!(x.message_id(), y.message_id());
    let got = c.receive_message().queue_url(&cb).max_number_of_messages(10).send().await.unwrap();
    assert_eq!(got.messages().len(), 1, "the duplicate is not delivered");

    // FIFO names need the attribute, and the attribute needs the name.
    let err = c.create_queue().queue_name("plain.fifo").send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue");
    let err = c
        .create_queue()
        .queue_name("plain")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_dead_letter_queues_keep_the_group_moving() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    create_queue(&c, "dl.fifo", &[(QueueAttributeName::FifoQueue, "true")]).await;
    let q = create_queue(
        &c,
        "w.fifo",
        &[
            (QueueAttributeName::FifoQueue, "true"),
            (QueueAttributeName::RedrivePolicy, &redrive("dl.fifo", 1)),
        ],
    )
    .await;
    for b in ["first", "second"] {
        c.send_message()
            .queue_url(&q)
            .message_body(b)
            .message_group_id("g")
            .message_deduplication_id(b)
            .send()
            .await
            .unwrap();
    }
    let got = c.receive_message().queue_url(&q).visibility_timeout(0).send().await.unwrap();
    assert_eq!(got.messages()[0].body(), Some("first"));
    // The second receive of `first` exceeds the maximum: it moves, and the
    // group goes on with `second`.
    let got = c.receive_message().queue_url(&q).send().await.unwrap();
    assert_eq!(got.messages()[0].body(), Some("second"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_checked_when_credentials_are_configured() {
    let gw = Gateway::start(
        "listen:\n  gateway: { bind: \"127.0.0.1:0\" }\n  admin: off\n  aws: { bind: \"127.0.0.1:0\", credentials: [ { access_key: AKIDGOOD, secret_key: \"s3cret\" } ] }\n",
    )
    .await;
    let addr = gw.gh().aws_addr.unwrap();
    let good = sqs_at(addr, "AKIDGOOD", "s3cret");
    good.create_queue().queue_name("private").send().await.unwrap();
    let err = sqs_at(addr, "AKIDGOOD", "wrong").list_queues().send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "SignatureDoesNotMatch", "{err:?}");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);
    let err = sqs_at(addr, "AKIDNOBODY", "s3cret").list_queues().send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidClientTokenId");
    // Unsigned requests are refused too.
    let r = client()
        .post(format!("http://{addr}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=ListQueues")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("<Code>MissingAuthenticationToken</Code>"));
    // Messages sent with a key carry it as their sender.
    let url = good.get_queue_url().queue_name("private").send().await.unwrap().queue_url.unwrap();
    good.send_message().queue_url(&url).message_body("x").send().await.unwrap();
    let got = good
        .receive_message()
        .queue_url(&url)
        .message_system_attribute_names(MessageSystemAttributeName::SenderId)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages()[0].attributes().unwrap()[&MessageSystemAttributeName::SenderId], "AKIDGOOD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_messages_survive_a_restart_and_declared_queues_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = queue_config(
        "queues:\n  declared: { visibility_timeout: 40s, dead_letter: { queue: declared-dlq, max_receives: 4 } }\n  declared-dlq: { retention: 14d }\n  ordered.fifo: { content_based_deduplication: true }\n",
    );
    let mut gw = Gateway::start_in(dir, &yaml).await;
    let c = sqs(&gw);
    let declared = c.get_queue_url().queue_name("declared").send().await.unwrap().queue_url.unwrap();
    let attrs = c
        .get_queue_attributes()
        .queue_url(&declared)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let a = attrs.attributes().unwrap();
    assert_eq!(a[&QueueAttributeName::VisibilityTimeout], "40");
    assert!(a[&QueueAttributeName::RedrivePolicy].contains("declared-dlq"));
    let fifo = c.get_queue_url().queue_name("ordered.fifo").send().await.unwrap().queue_url.unwrap();
    let fa = c
        .get_queue_attributes()
        .queue_url(&fifo)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    assert_eq!(fa.attributes().unwrap()[&QueueAttributeName::ContentBasedDeduplication], "true");

    // Created over the API, with messages.
    let api = create_queue(&c, "made-by-api", &[(QueueAttributeName::DelaySeconds, "0")]).await;
    for i in 0..3 {
        c.send_message().queue_url(&api).message_body(format!("kept-{i}")).send().await.unwrap();
    }
    let gone = c.receive_message().queue_url(&api).send().await.unwrap();
    c.delete_message()
        .queue_url(&api)
        .receipt_handle(gone.messages()[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    // Changed over the API: the declaration wins again at the next start.
    c.set_queue_attributes()
        .queue_url(&declared)
        .attributes(QueueAttributeName::VisibilityTimeout, "5")
        .send()
        .await
        .unwrap();

    assert!(gw.shutdown().await);
    let dir = gw.dir;
    let gw = Gateway::start_in(dir, &yaml).await;
    let c = sqs(&gw);
    let api = c.get_queue_url().queue_name("made-by-api").send().await.unwrap().queue_url.unwrap();
    let got = c.receive_message().queue_url(&api).max_number_of_messages(10).send().await.unwrap();
    let mut bodies: Vec<&str> = got.messages().iter().map(|m| m.body().unwrap()).collect();
    bodies.sort();
    assert_eq!(bodies.len(), 2, "the two undeleted messages, not the deleted one: {bodies:?}");
    assert!(!bodies.contains(&gone.messages()[0].body().unwrap()));
    let declared = c.get_queue_url().queue_name("declared").send().await.unwrap().queue_url.unwrap();
    let attrs = c
        .get_queue_attributes()
        .queue_url(&declared)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.attributes().unwrap()[&QueueAttributeName::VisibilityTimeout], "40");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_publish_requests_into_queues() {
    let gw = start_queues(
        "queues:\n  orders: { max_message_size: 2KiB }\n  pay.fifo: {}\nroutes:\n  - { name: create-order, path: /orders, methods: [POST], queue: orders, message: { attributes: { source: \"header:x-source\" } } }\n  - { name: pay, path: /pay, methods: [POST], queue: pay.fifo, message: { group_id: \"header:x-account\" } }\n",
    )
    .await;
    let http = client();
    let r = http
        .post(format!("{}/orders", gw.url))
        .header("content-type", "application/json")
        .header("x-source", "mobile")
        .body(r#"{"sku":"A-1","qty":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent: serde_json::Value = r.json().await.unwrap();
    assert!(sent["MessageId"].is_string());
    assert!(sent.get("SequenceNumber").is_none(), "standard queues have no sequence numbers");

    let c = sqs(&gw);
    let url = c.get_queue_url().queue_name("orders").send().await.unwrap().queue_url.unwrap();
    let got = c.receive_message().queue_url(&url).message_attribute_names("All").send().await.unwrap();
    let m = &got.messages()[0];
    assert_eq!(m.message_id(), sent["MessageId"].as_str());
    assert_eq!(m.body(), Some(r#"{"sku":"A-1","qty":2}"#));
    let attrs = m.message_attributes().unwrap();
    assert_eq!(attrs["source"].string_value(), Some("mobile"));
    assert_eq!(attrs["Content-Type"].string_value(), Some("application/json"));

    // Over the queue's size limit: 413, nothing stored.
    let r = http.post(format!("{}/orders", gw.url)).body("x".repeat(3000)).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "payload_too_large");

    // FIFO: the group from a header, Idempotency-Key as the dedup id.
    let pay = |key: &str| {
        http.post(format!("{}/pay", gw.url))
            .header("x-account", "acct-7")
            .header("idempotency-key", key)
            .body("charge 10")
            .send()
    };
    let first: serde_json::Value = pay("k-1").await.unwrap().json().await.unwrap();
    let again: serde_json::Value = pay("k-1").await.unwrap().json().await.unwrap();
    assert_eq!(first["MessageId"], again["MessageId"]);
    assert!(first["SequenceNumber"].is_string());
    let fifo = c.get_queue_url().queue_name("pay.fifo").send().await.unwrap().queue_url.unwrap();
    let got = c
        .receive_message()
        .queue_url(&fifo)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 1, "the retried request was deduplicated");
    assert_eq!(
        got.messages()[0].attributes().unwrap()[&MessageSystemAttributeName::MessageGroupId],
        "acct-7"
    );
    // No group header: a clear 400.
    let r =
        http.post(format!("{}/pay", gw.url)).header("idempotency-key", "k-2").body("x").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "missing_message_field");

    // Queue metrics.
    eventually("queue depth in /metrics", || async {
        let text =
            http.get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap();
        metric(&text, "gatehouse_queue_messages_sent_total{queue=\"orders\"}") == Some(1.0)
            && metric(&text, "gatehouse_queue_messages_in_flight{queue=\"orders\"}") == Some(1.0)
            && metric(&text, "gatehouse_queue_messages_received_total{queue=\"orders\"}") == Some(1.0)
    })
    .await;
}
