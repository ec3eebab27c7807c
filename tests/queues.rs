//! SQS behaviour through the real `aws-sdk-sqs` client (AWS JSON protocol).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use common::*;

fn md5(s: &str) -> String {
    use md5::Digest;
    gatehouse::queue::message::hex(&md5::Md5::digest(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_created_idempotently_listed_tagged_and_deleted() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let url = create_queue(&c, "orders", &[(QueueAttributeName::VisibilityTimeout, "45")]).await;
    assert_eq!(url, format!("http://{}/000000000000/orders", gw.gh().aws_addr.unwrap()));
    // Same attributes: the existing queue.
    assert_eq!(create_queue(&c, "orders", &[(QueueAttributeName::VisibilityTimeout, "45")]).await, url);
    assert_eq!(create_queue(&c, "orders", &[]).await, url);
    // Different attributes: refused.
    let err = c
        .create_queue()
        .queue_name("orders")
        .attributes(QueueAttributeName::VisibilityTimeout, "46")
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_queue_name_exists(), "{err:?}");

    for n in ["alpha", "alpine", "beta"] {
        create_queue(&c, n, &[]).await;
    }
    let all = c.list_queues().send().await.unwrap();
    assert_eq!(all.queue_urls().len(), 4);
    let al = c.list_queues().queue_name_prefix("al").send().await.unwrap();
    assert_eq!(
        al.queue_urls().iter().map(|u| u.rsplit('/').next().unwrap()).collect::<Vec<_>>(),
        vec!["alpha", "alpine"]
    );
    // Pagination.
    let page1 = c.list_queues().max_results(3).send().await.unwrap();
    assert_eq!(page1.queue_urls().len(), 3);
    let token = page1.next_token().expect("a next page");
    let page2 = c.list_queues().max_results(3).next_token(token).send().await.unwrap();
    assert_eq!(page2.queue_urls(), std::slice::from_ref(&url));
    assert!(page2.next_token().is_none());

    assert_eq!(c.get_queue_url().queue_name("orders").send().await.unwrap().queue_url(), Some(url.as_str()));
    let err = c.get_queue_url().queue_name("missing").send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_queue_does_not_exist(), "{err:?}");

    c.tag_queue().queue_url(&url).tags("team", "core").tags("env", "test").send().await.unwrap();
    c.untag_queue().queue_url(&url).tag_keys("env").send().await.unwrap();
    let tags = c.list_queue_tags().queue_url(&url).send().await.unwrap();
    assert_eq!(tags.tags().unwrap().len(), 1);
    assert_eq!(tags.tags().unwrap()["team"], "core");

    c.delete_queue().queue_url(&url).send().await.unwrap();
    let err = c.send_message().queue_url(&url).message_body("x").send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_queue_does_not_exist());
    assert_eq!(sqs_code(&err), "AWS.SimpleQueueService.NonExistentQueue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_round_trip_with_digests_and_attributes() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let url = create_queue(&c, "q", &[]).await;
    let sent = c
        .send_message()
        .queue_url(&url)
        .message_body("hello ✓")
        .message_attributes(
            "attribName1",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("attribValue 1")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(sent.md5_of_message_body(), Some(md5("hello ✓").as_str()));
    // The published MD5-of-attributes vector.
    assert_eq!(sent.md5_of_message_attributes(), Some("19e27d4e946b072f3f58da80d94fd778"));

    let got = c
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let m = &got.messages()[0];
    assert_eq!(m.body(), Some("hello ✓"));
    assert_eq!(m.message_id(), sent.message_id());
    assert_eq!(m.md5_of_body(), Some(md5("hello ✓").as_str()));
    assert_eq!(m.md5_of_message_attributes(), Some("19e27d4e946b072f3f58da80d94fd778"));
    assert_eq!(m.message_attributes().unwrap()["attribName1"].string_value(), Some("attribValue 1"));
    let sys = m.attributes().unwrap();
    assert_eq!(sys[&MessageSystemAttributeName::ApproximateReceiveCount], "1");
    let sent_at: i64 = sys[&MessageSystemAttributeName::SentTimestamp].parse().unwrap();
    let first: i64 = sys[&MessageSystemAttributeName::ApproximateFirstReceiveTimestamp].parse().unwrap();
    assert!(first >= sent_at && sent_at > 1_700_000_000_000);
    // Unsigned requests: the sender is the connection's peer address.
    assert_eq!(sys[&MessageSystemAttributeName::SenderId], "127.0.0.1");

    c.delete_message().queue_url(&url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
    let again = c.receive_message().queue_url(&url).send().await.unwrap();
    assert!(again.messages().is_empty(), "deleted messages stay deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attribute_type_survives_and_limits_hold() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let url = create_queue(&c, "q", &[]).await;
    let attr = |t: &str, s: Option<&str>, b: Option<&[u8]>| {
        let mut v = MessageAttributeValue::builder().data_type(t);
        if let Some(s) = s {
            v = v.string_value(s);
        }
        if let Some(b) = b {
            v = v.binary_value(Blob::new(b));
        }
        v.build().unwrap()
    };
    let sent = c
        .send_message()
        .queue_url(&url)
        .message_body("typed")
        .message_attributes("s", attr("String", Some("text"), None))
        .message_attributes("n", attr("Number", Some("-12.5e3"), None))
        .message_attributes("b", attr("Binary", None, Some(&[0, 1, 2, 255])))
        .message_attributes("custom", attr("Number.float", Some("3.14"), None))
        .message_attributes("img", attr("Binary.gif", None, Some(b"GIF89a")))
        .send()
        .await
        .unwrap();
    let got = c.receive_message().queue_url(&url).message_attribute_names("All").send().await.unwrap();
    let m = &got.messages()[0];
    let a = m.message_attributes().unwrap();
    assert_eq!(a["b"].binary_value().unwrap().as_ref(), &[0, 1, 2, 255]);
    assert_eq!(a["custom"].data_type(), "Number.float");
    assert_eq!(a["img"].binary_value().unwrap().as_ref(), b"GIF89a");
    assert_eq!(m.md5_of_message_attributes(), sent.md5_of_message_attributes());

    // Only some attributes requested: the digest covers those returned.
    c.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(m.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let some = c
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("s")
        .message_attribute_names("n")
        .send()
        .await
        .unwrap();
    let m = &some.messages()[0];
    assert_eq!(m.message_attributes().unwrap().len(), 2);
    assert_ne!(m.md5_of_message_attributes(), sent.md5_of_message_attributes());

    // Eleven attributes are one too many.
    let mut req = c.send_message().queue_url(&url).message_body("x");
    for i in 0..11 {
        req = req.message_attributes(format!("a{i}"), attr("String", Some("v"), None));
    }
    let err = req.send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue", "{err:?}");
    // Characters SQS does not allow.
    let err = c.send_message().queue_url(&url).message_body("bad\u{0}body").send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_invalid_message_contents(), "{err:?}");
    // Size: 256 KiB by default, up to 1 MiB when configured.
    let big = "x".repeat(256 * 1024 + 1);
    let err = c.send_message().queue_url(&url).message_body(&big).send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue");
    c.set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::MaximumMessageSize, "1048576")
        .send()
        .await
        .unwrap();
    c.send_message().queue_url(&url).message_body("y".repeat(1 << 20)).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_timeouts_hide_messages_and_receipts_rotate() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let url = create_queue(&c, "q", &[(QueueAttributeName::VisibilityTimeout, "1")]).await;
    c.send_message().queue_url(&url).message_body("m").send().await.unwrap();
    let first = c.receive_message().queue_url(&url).send().await.unwrap().messages()[0].clone();
    assert!(
        c.receive_message().queue_url(&url).send().await.unwrap().messages().is_empty(),
        "invisible while in flight"
    );

    // A waiting receive is woken when the visibility timeout expires.
    let started = Instant::now();
    let second = c
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    let second = second.messages()[0].clone();
    assert!(waited >= Duration::from_millis(700) && waited < Duration::from_secs(5), "woke after {waited:?}");
    assert_eq!(second.attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount], "2");
    assert_ne!(first.receipt_handle(), second.receipt_handle(), "a new receipt handle per receive");

    // The first handle no longer deletes (SQS answers success and keeps it).
    c.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(second.receipt_handle().unwrap())
        .visibility_timeout(30)
        .send()
        .await
        .unwrap();
    c.delete_message().queue_url(&url).receipt_handle(first.receipt_handle().unwrap()).send().await.unwrap();
    let attrs = c
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    assert_eq!(attrs.attributes().unwrap()[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible], "1");
    let err = c
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(first.receipt_handle().unwrap())
        .visibility_timeout(5)
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_receipt_handle_is_invalid(), "{err:?}");
    let err = c.delete_message().queue_url(&url).receipt_handle("garbage").send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_receipt_handle_is_invalid(), "{err:?}");

    // Visibility set to 0: visible at once.
    c.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(second.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let third = c.receive_message().queue_url(&url).visibility_timeout(60).send().await.unwrap().messages()
        [0]
    .clone();
    let err = c
        .change_message_visibility()
        .queue_url(&url)
        .receipt_handle(second.receipt_handle().unwrap())
        .visibility_timeout(5)
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_receipt_handle_is_invalid(), "{err:?}");
    c.delete_message().queue_url(&url).receipt_handle(third.receipt_handle().unwrap()).send().await.unwrap();
    let attrs = c
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let a = attrs.attributes().unwrap();
    assert_eq!(a[&QueueAttributeName::ApproximateNumberOfMessages], "0");
    assert_eq!(a[&QueueAttributeName::ApproximateNumberOfMessagesNotVisible], "0");

    // Out of range.
    let err = c.receive_message().queue_url(&url).visibility_timeout(43_201).send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_visibility_in_batches_reports_each_entry() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let url = create_queue(&c, "q", &[]).await;
    for i in 0..3 {
        c.send_message().queue_url(&url).message_body(format!("m{i}")).send().await.unwrap();
    }
    let got = c.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    assert_eq!(got.messages().len(), 3);
    let entry = |id: &str, h: &str, t: i32| {
        ChangeMessageVisibilityBatchRequestEntry::builder()
            .id(id)
            .receipt_handle(h)
            .visibility_timeout(t)
            .build()
            .unwrap()
    };
    let out = c
        .change_message_visibility_batch()
        .queue_url(&url)
        .entries(entry("a", got.messages()[0].receipt_handle().unwrap(), 0))
        .entries(entry("b", got.messages()[1].receipt_handle().unwrap(), 0))
        .entries(entry("c", "not-a-handle", 0))
        .send()
        .await
        .unwrap();
    assert_eq!(out.successful().len(), 2);
    assert_eq!(out.failed().len(), 1);
    assert_eq!(out.failed()[0].id(), "c");
    assert_eq!(out.failed()[0].code(), "ReceiptHandleIsInvalid");
    let again = c.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    assert_eq!(again.messages().len(), 2, "the two made visible again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_per_queue_and_per_message() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let url = create_queue(&c, "q", &[(QueueAttributeName::DelaySeconds, "1")]).await;
    c.send_message().queue_url(&url).message_body("queue-delay").send().await.unwrap();
    c.send_message().queue_url(&url).message_body("no-delay").delay_seconds(0).send().await.unwrap();
    let now = c.receive_message().queue_url(&url).max_number_of_messages(10).send().await.unwrap();
    assert_eq!(now.messages().iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), vec!["no-delay"]);
    let delayed = queue_attribute(&c, &url, QueueAttributeName::ApproximateNumberOfMessagesDelayed).await;
    assert_eq!(delayed, "1");
    // The waiting receive is woken when the delay is over.
    let started = Instant::now();
    let later = c.receive_message().queue_url(&url).wait_time_seconds(10).send().await.unwrap();
    assert_eq!(later.messages()[0].body(), Some("queue-delay"));
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = c.send_message().queue_url(&url).message_body("x").delay_seconds(901).send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "InvalidParameterValue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_wake_on_arrival_and_hundreds_of_waiters_each_get_one() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let url = create_queue(&c, "q", &[(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "20")]).await;

    // The queue's wait time applies when the request names none.
    let waiter = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move { c.receive_message().queue_url(url).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // let it start waiting
    let started = Instant::now();
    c.send_message().queue_url(&url).message_body("wake").send().await.unwrap();
    let got = waiter.await.unwrap();
    assert_eq!(got.messages()[0].body(), Some("wake"));
    assert!(started.elapsed() < Duration::from_secs(2), "woken by the arrival, not by a poll");

    // Many waiters, as many messages: each waiter gets exactly one.
    const N: usize = 300;
    let waiters: Vec<_> = (0..N)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                c.receive_message().queue_url(url).wait_time_seconds(15).send().await.unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for chunk in 0..N / 10 {
        let mut batch = c.send_message_batch().queue_url(&url);
        for i in 0..10 {
            batch = batch.entries(
                SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body(format!("m{}", chunk * 10 + i))
                    .build()
                    .unwrap(),
            );
        }
        batch.send().await.unwrap();
    }
    let started = Instant::now();
    let mut bodies = HashSet::new();
    for w in waiters {
        for m in w.await.unwrap().messages() {
            assert!(bodies.insert(m.body().unwrap().to_owned()), "delivered twice");
        }
    }
    assert_eq!(bodies.len(), N);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_validate_their_shape_and_report_entry_failures() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let url = create_queue(&c, "q", &[]).await;
    let e = |id: &str, body: &str| {
        SendMessageBatchRequestEntry::builder().id(id).message_body(body).build().unwrap()
    };

    let err = c.send_message_batch().queue_url(&url).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_empty_batch_request(), "{err:?}");
    let mut big = c.send_message_batch().queue_url(&url);
    for i in 0..11 {
        big = big.entries(e(&format!("e{i}"), "x"));
    }
    assert!(big.send().await.unwrap_err().as_service_error().unwrap().is_too_many_entries_in_batch_request());
    let err = c
        .send_message_batch()
        .queue_url(&url)
        .entries(e("same", "a"))
        .entries(e("same", "b"))
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_batch_entry_ids_not_distinct());
    let err = c.send_message_batch().queue_url(&url).entries(e("bad id!", "a")).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_invalid_batch_entry_id());
    let err = c
        .send_message_batch()
        .queue_url(&url)
        .entries(e("a", &"x".repeat(200_000)))
        .entries(e("b", &"y".repeat(100_000)))
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_batch_request_too_long());

    let out = c
        .send_message_batch()
        .queue_url(&url)
        .entries(e("ok", "fine"))
        .entries(e("bad", "nul\u{0}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.successful().len(), 1);
    assert_eq!(out.successful()[0].md5_of_message_body(), md5("fine"));
    assert_eq!(out.failed()[0].id(), "bad");
    assert_eq!(out.failed()[0].code(), "InvalidMessageContents");
    assert!(out.failed()[0].sender_fault());

    let got = c.receive_message().queue_url(&url).send().await.unwrap();
    let h = got.messages()[0].receipt_handle().unwrap();
    let del = |id: &str, h: &str| {
        DeleteMessageBatchRequestEntry::builder().id(id).receipt_handle(h).build().unwrap()
    };
    let out = c
        .delete_message_batch()
        .queue_url(&url)
        .entries(del("x", h))
        .entries(del("y", "bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.successful()[0].id(), "x");
    assert_eq!(out.failed()[0].code(), "ReceiptHandleIsInvalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_are_read_validated_and_purge_is_rate_limited() {
    let gw = start_queues("").await;
    let c = sqs(&gw);
    let url = create_queue(&c, "q", &[]).await;
    let all = c
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let a = all.attributes().unwrap();
    assert_eq!(a[&QueueAttributeName::VisibilityTimeout], "30");
    assert_eq!(a[&QueueAttributeName::MessageRetentionPeriod], "345600");
    assert_eq!(a[&QueueAttributeName::MaximumMessageSize], "262144");
    assert_eq!(a[&QueueAttributeName::QueueArn], "arn:aws:sqs:us-east-1:000000000000:q");
    assert!(a.contains_key(&QueueAttributeName::CreatedTimestamp));
    assert!(a.contains_key(&QueueAttributeName::LastModifiedTimestamp));
    assert!(!a.contains_key(&QueueAttributeName::FifoQueue));

    for (k, v) in [
        (QueueAttributeName::VisibilityTimeout, "43201"),
        (QueueAttributeName::MessageRetentionPeriod, "59"),
        (QueueAttributeName::DelaySeconds, "-1"),
    ] {
        let err = c.set_queue_attributes().queue_url(&url).attributes(k, v).send().await.unwrap_err();
        assert!(err.as_service_error().unwrap().is_invalid_attribute_value(), "{v}: {err:?}");
    }
    let err = c
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_invalid_attribute_name(), "{err:?}");
    c.set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, "10")
        .send()
        .await
        .unwrap();
    let one = c
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .unwrap();
    assert_eq!(one.attributes().unwrap().len(), 1);
    assert_eq!(one.attributes().unwrap()[&QueueAttributeName::VisibilityTimeout], "10");

    for i in 0..5 {
        c.send_message().queue_url(&url).message_body(format!("{i}")).send().await.unwrap();
    }
    c.purge_queue().queue_url(&url).send().await.unwrap();
    assert!(c.receive_message().queue_url(&url).send().await.unwrap().messages().is_empty());
    let err = c.purge_queue().queue_url(&url).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_purge_queue_in_progress(), "{err:?}");

    let err = c
        .add_permission()
        .queue_url(&url)
        .label("x")
        .aws_account_ids("1")
        .actions("*")
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_unsupported_operation(), "{err:?}");
}
