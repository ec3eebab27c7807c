//! Topics over the wire: the real `aws-sdk-sns` and `aws-sdk-sqs` clients
//! against gatehouse's AWS listener, and publishing through a gateway
//! route.

mod common;

use std::collections::HashMap;

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use base64::Engine as _;
use common::*;
use http_body_util::BodyExt;
use serde_json::Value;

fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:us-east-1:000000000000:{name}")
}

/// Subscribes queue `name` to `topic` (raw delivery or not); the
/// subscription's ARN.
async fn subscribe_queue(sns: &aws_sdk_sns::Client, topic: &str, name: &str, raw: bool) -> String {
    let mut req = sns.subscribe().topic_arn(topic).protocol("sqs").endpoint(queue_arn(name));
    if raw {
        req = req.attributes("RawMessageDelivery", "true");
    }
    req.send().await.unwrap().subscription_arn.unwrap()
}

async fn receive_all(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    out.messages.unwrap_or_default()
}

fn string_attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder().data_type("String").string_value(v).build().unwrap()
}

fn number_attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder().data_type("Number").string_value(v).build().unwrap()
}

/// Verifies an envelope's signature with the certificate at its
/// `SigningCertURL`, as an SNS receiver does.
async fn verify_signature(envelope: &Value) {
    let cert_url = envelope["SigningCertURL"].as_str().unwrap();
    let pem = client().get(cert_url).send().await.unwrap().text().await.unwrap();
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(der).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let key = cert.public_key().subject_public_key.data.to_vec();
    let mut text = String::new();
    let kind = envelope["Type"].as_str().unwrap();
    let fields: &[&str] = if kind == "Notification" {
        &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    } else {
        &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    };
    for f in fields {
        if let Some(v) = envelope[*f].as_str() {
            text.push_str(&format!("{f}\n{v}\n"));
        }
    }
    assert_eq!(envelope["SignatureVersion"], "2");
    let sig =
        base64::engine::general_purpose::STANDARD.decode(envelope["Signature"].as_str().unwrap()).unwrap();
    let public =
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, key);
    public.verify(text.as_bytes(), &sig).expect("the signature verifies with the served certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fans_out_to_every_queue_with_a_signed_envelope_or_raw() {
    let gw = start_queues("").await;
    let (sns, sqs) = (sns(&gw), sqs(&gw));
    let topic = sns.create_topic().name("orders").send().await.unwrap().topic_arn.unwrap();
    assert_eq!(topic, "arn:aws:sns:us-east-1:000000000000:orders");
    let mut urls = Vec::new();
    for (i, raw) in [false, false, true].into_iter().enumerate() {
        let name = format!("q{i}");
        urls.push(create_queue(&sqs, &name, &[]).await);
        let arn = subscribe_queue(&sns, &topic, &name, raw).await;
        assert!(arn.starts_with(&format!("{topic}:")), "{arn}");
    }
    let published = sns
        .publish()
        .topic_arn(&topic)
        .message("order 7 placed")
        .subject("New order")
        .message_attributes("kind", string_attr("created"))
        .send()
        .await
        .unwrap();
    let id = published.message_id.unwrap();

    // Acknowledged means delivered: no waiting.
    for (i, url) in urls.iter().enumerate() {
        let got = receive_all(&sqs, url).await;
        assert_eq!(got.len(), 1, "queue {i}");
        let body = got[0].body().unwrap();
        if i == 2 {
            assert_eq!(body, "order 7 placed");
            let attrs = got[0].message_attributes().unwrap();
            assert_eq!(attrs["kind"].string_value(), Some("created"));
            continue;
        }
        let env: Value = serde_json::from_str(body).unwrap();
        assert_eq!(env["Type"], "Notification");
        assert_eq!(env["MessageId"], id.as_str());
        assert_eq!(env["TopicArn"], topic.as_str());
        assert_eq!(env["Subject"], "New order");
        assert_eq!(env["Message"], "order 7 placed");
        assert_eq!(
            env["MessageAttributes"]["kind"],
            serde_json::json!({ "Type": "String", "Value": "created" })
        );
        assert!(env["Timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(env["UnsubscribeURL"].as_str().unwrap().contains("Action=Unsubscribe"));
        verify_signature(&env).await;
    }

    // Unsubscribed queues get nothing more; the topic lists what is left.
    let subs =
        sns.list_subscriptions_by_topic().topic_arn(&topic).send().await.unwrap().subscriptions.unwrap();
    assert_eq!(subs.len(), 3);
    sns.unsubscribe().subscription_arn(subs[0].subscription_arn().unwrap()).send().await.unwrap();
    sns.publish().topic_arn(&topic).message("second").send().await.unwrap();
    let mut total = 0;
    for url in &urls {
        total += receive_all(&sqs, url).await.len();
    }
    assert_eq!(total, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_operator_in_both_scopes() {
    let gw = start_queues("").await;
    let (sns, sqs) = (sns(&gw), sqs(&gw));
    let topic = sns.create_topic().name("filtered").send().await.unwrap().topic_arn.unwrap();
    // (policy, scope, whether the message below matches)
    let cases = [
        (r#"{"kind": ["created"]}"#, true),
        (r#"{"kind": ["cancelled"]}"#, false),
        (r#"{"kind": [{"prefix": "cre"}]}"#, true),
        (r#"{"kind": [{"suffix": "ted"}]}"#, true),
        (r#"{"kind": [{"suffix": "xyz"}]}"#, false),
        (r#"{"kind": [{"anything-but": ["cancelled"]}]}"#, true),
        (r#"{"kind": [{"anything-but": {"prefix": "cr"}}]}"#, false),
        (r#"{"price": [{"numeric": [">", 10, "<=", 20]}]}"#, true),
        (r#"{"price": [{"numeric": ["<", 10]}]}"#, false),
        (r#"{"kind": [{"exists": true}]}"#, true),
        (r#"{"coupon": [{"exists": false}]}"#, true),
        (r#"{"kind": [{"equals-ignore-case": "CREATED"}]}"#, true),
        (r#"{"ip": [{"cidr": "10.0.0.0/8"}]}"#, true),
        (r#"{"ip": [{"cidr": "192.168.0.0/16"}]}"#, false),
        (r#"{"$or": [{"kind": ["nope"]}, {"price": [15]}]}"#, true),
        (r#"{"kind": ["created"], "price": [99]}"#, false),
    ];
    let mut queues = Vec::new();
    for (scope, scope_name) in [("MessageAttributes", "a"), ("MessageBody", "b")] {
        for (i, (policy, expect)) in cases.iter().enumerate() {
            let name = format!("f{scope_name}{i}");
            let url = create_queue(&sqs, &name, &[]).await;
            sns.subscribe()
                .topic_arn(&topic)
                .protocol("sqs")
                .endpoint(queue_arn(&name))
                .attributes("FilterPolicy", *policy)
                .attributes("FilterPolicyScope", scope)
                .attributes("RawMessageDelivery", "true")
                .send()
                .await
                .unwrap();
            queues.push((url, format!("{scope} {policy}"), *expect));
        }
    }
    // The same facts as attributes and as the JSON body.
    sns.publish()
        .topic_arn(&topic)
        .message(r#"{"kind": "created", "price": 15, "ip": "10.1.2.3"}"#)
        .message_attributes("kind", string_attr("created"))
        .message_attributes("price", number_attr("15"))
        .message_attributes("ip", string_attr("10.1.2.3"))
        .send()
        .await
        .unwrap();
    for (url, what, expect) in &queues {
        let got = receive_all(&sqs, url).await.len();
        assert_eq!(got, usize::from(*expect), "{what}");
    }

    // A bad policy is refused with SNS's code.
    let err = sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn("fa0"))
        .attributes("FilterPolicy", r#"{"kind": [{"wildcat": "x"}]}"#)
        .send()
        .await
        .unwrap_err();
    assert_eq!(sns_code(&err), "InvalidParameter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_topics_keep_group_order_and_deduplicate_into_fifo_queues() {
    let gw = start_queues("").await;
    let (sns, sqs) = (sns(&gw), sqs(&gw));
    let topic = sns
        .create_topic()
        .name("pay.fifo")
        .attributes("FifoTopic", "true")
        .attributes("ContentBasedDeduplication", "true")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let url =
        create_queue(&sqs, "pay.fifo", &[(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")]).await;
    subscribe_queue(&sns, &topic, "pay.fifo", true).await;
    // A FIFO topic delivers to queues only.
    let err = sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("https")
        .endpoint("https://example.com/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(sns_code(&err), "InvalidParameter");
    // A standard topic cannot take a FIFO queue.
    let plain = sns.create_topic().name("plain").send().await.unwrap().topic_arn.unwrap();
    let err = sns
        .subscribe()
        .topic_arn(&plain)
        .protocol("sqs")
        .endpoint(queue_arn("pay.fifo"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(sns_code(&err), "InvalidParameter");

    let entries: Vec<PublishBatchRequestEntry> = (0..10)
        .map(|i| {
            PublishBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .message(format!("payment {i}"))
                .message_group_id("account-1")
                .build()
                .unwrap()
        })
        .collect();
    let out = sns
        .publish_batch()
        .topic_arn(&topic)
        .set_publish_batch_request_entries(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.successful().len(), 10);
    let seqs: Vec<&str> = out.successful().iter().map(|s| s.sequence_number().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The same body again within five minutes: the same message, not a new one.
    let again = sns
        .publish()
        .topic_arn(&topic)
        .message("payment 3")
        .message_group_id("account-1")
        .send()
        .await
        .unwrap();
    assert_eq!(again.message_id(), out.successful()[3].message_id());
    let err = sns.publish().topic_arn(&topic).message("no group").send().await.unwrap_err();
    assert_eq!(sns_code(&err), "InvalidParameter");

    let mut bodies = Vec::new();
    loop {
        let got = receive_all(&sqs, &url).await;
        if got.is_empty() {
            break;
        }
        for m in &got {
            bodies.push(m.body().unwrap().to_owned());
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let expect: Vec<String> = (0..10).map(|i| format!("payment {i}")).collect();
    assert_eq!(bodies, expect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_subscriptions_wait_for_confirmation() {
    let hook = Hook::start(&[]).await;
    let gw = start_queues("").await;
    let sns = sns(&gw);
    let topic = sns.create_topic().name("hooks").send().await.unwrap().topic_arn.unwrap();
    let subscribe =
        || sns.subscribe().topic_arn(&topic).protocol("http").endpoint(format!("{}/sns", hook.backend.url));
    let out = subscribe().send().await.unwrap();
    assert_eq!(out.subscription_arn(), Some("PendingConfirmation"));

    let (headers, body) = hook.next().await;
    assert_eq!(headers["x-amz-sns-message-type"], "SubscriptionConfirmation");
    assert_eq!(headers["x-amz-sns-topic-arn"], topic);
    let env: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(env["Type"], "SubscriptionConfirmation");
    assert_eq!(headers["x-amz-sns-message-id"], env["MessageId"].as_str().unwrap());
    verify_signature(&env).await;
    let listed = sns.list_subscriptions().send().await.unwrap().subscriptions.unwrap();
    assert_eq!(listed[0].subscription_arn(), Some("PendingConfirmation"));

    // Subscribing again while pending asks again, with the same token.
    let again = subscribe().send().await.unwrap();
    assert_eq!(again.subscription_arn(), Some("PendingConfirmation"));
    let (_, body_again) = hook.next().await;
    let env_again: Value = serde_json::from_str(&body_again).unwrap();
    assert_eq!(env_again["Token"], env["Token"]);
    // A wrong token confirms nothing; visiting the SubscribeURL confirms.
    let err = sns.confirm_subscription().topic_arn(&topic).token("forged").send().await.unwrap_err();
    assert_eq!(sns_code(&err), "InvalidParameter");
    let page = client().get(env["SubscribeURL"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let xml = page.text().await.unwrap();
    assert!(xml.contains("<ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:"), "{xml}");
    let listed = sns.list_subscriptions().send().await.unwrap().subscriptions.unwrap();
    let arn = listed[0].subscription_arn().unwrap().to_owned();
    assert!(arn.starts_with(&topic));
    let attrs =
        sns.get_subscription_attributes().subscription_arn(&arn).send().await.unwrap().attributes.unwrap();
    assert_eq!(attrs["PendingConfirmation"], "false");
    assert!(attrs["EffectiveDeliveryPolicy"].contains("healthyRetryPolicy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_requests_are_retried_until_the_endpoint_answers() {
    // Down for the first request, failing for the second, then up.
    let hook = Hook::scripted(&[503, 500], true).await;
    let gw = start_queues("").await;
    let sns = sns(&gw);
    let topic = sns.create_topic().name("patient").send().await.unwrap().topic_arn.unwrap();
    let out = sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("http")
        .endpoint(format!("{}/sns", hook.backend.url))
        .attributes("DeliveryPolicy", FAST_RETRIES)
        .send()
        .await
        .unwrap();
    assert_eq!(out.subscription_arn(), Some("PendingConfirmation"));
    let mut requests = Vec::new();
    for _ in 0..3 {
        requests.push(hook.next().await);
    }
    let envelopes: Vec<Value> = requests.iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    for ((headers, _), env) in requests.iter().zip(&envelopes) {
        assert_eq!(headers["x-amz-sns-message-type"], "SubscriptionConfirmation");
        assert!(!headers.contains_key("x-amz-sns-subscription-arn"), "{headers:?}");
        // The same request each time: one message id, one token.
        assert_eq!(env["MessageId"], envelopes[0]["MessageId"]);
        assert_eq!(env["Token"], envelopes[0]["Token"]);
    }
    verify_signature(&envelopes[2]).await;
    assert_eq!(hook.script.lock().unwrap().len(), 0);
    let arn = sns
        .confirm_subscription()
        .topic_arn(&topic)
        .token(envelopes[2]["Token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .subscription_arn
        .unwrap();
    assert!(arn.starts_with(&topic));
    // Once answered, it is not sent again; confirmations are not counted
    // as message deliveries.
    sns.publish().topic_arn(&topic).message("after").send().await.unwrap();
    let (headers, body) = hook.next().await;
    assert_eq!(headers["x-amz-sns-message-type"], "Notification");
    assert!(body.contains("after"));
    assert_eq!(hook.backend.hits(), 4);
    let text = metrics_text(&gw).await;
    assert_eq!(metric(&text, "gatehouse_topic_deliveries_total{outcome=\"delivered\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "gatehouse_topic_deliveries_total{outcome=\"retried\"}"), Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_attributes_tags_errors_and_the_caller_identity() {
    let gw = start_queues("").await;
    let sns = sns(&gw);
    let topic =
        sns.create_topic().name("t").tags(tag("team", "ops")).send().await.unwrap().topic_arn.unwrap();
    // CreateTopic is idempotent.
    assert_eq!(sns.create_topic().name("t").send().await.unwrap().topic_arn.unwrap(), topic);
    sns.set_topic_attributes()
        .topic_arn(&topic)
        .attribute_name("DisplayName")
        .attribute_value("Team T")
        .send()
        .await
        .unwrap();
    let attrs = sns.get_topic_attributes().topic_arn(&topic).send().await.unwrap().attributes.unwrap();
    assert_eq!(attrs["DisplayName"], "Team T");
    assert_eq!(attrs["TopicArn"], topic);
    assert_eq!(attrs["SubscriptionsConfirmed"], "0");
    assert!(attrs["Policy"].contains("SNS:Publish"));
    sns.tag_resource().resource_arn(&topic).tags(tag("env", "prod")).send().await.unwrap();
    sns.untag_resource().resource_arn(&topic).tag_keys("team").send().await.unwrap();
    let tags = sns.list_tags_for_resource().resource_arn(&topic).send().await.unwrap().tags.unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!((tags[0].key(), tags[0].value()), ("env", "prod"));
    let topics = sns.list_topics().send().await.unwrap().topics.unwrap();
    assert_eq!(topics.len(), 1);

    let missing = "arn:aws:sns:us-east-1:000000000000:missing";
    let err = sns.publish().topic_arn(missing).message("x").send().await.unwrap_err();
    assert_eq!(sns_code(&err), "NotFound");
    let err = sns.get_topic_attributes().topic_arn(missing).send().await.unwrap_err();
    assert_eq!(sns_code(&err), "NotFound");
    let err = sns
        .set_topic_attributes()
        .topic_arn(&topic)
        .attribute_name("Nope")
        .attribute_value("1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(sns_code(&err), "InvalidParameter");
    let err =
        sns.subscribe().topic_arn(&topic).protocol("sms").endpoint("+15550100").send().await.unwrap_err();
    assert_eq!(sns_code(&err), "InvalidParameter");
    // Only this account's queues, and never the internal delivery outbox.
    for arn in
        ["arn:aws:sqs:us-east-1:111111111111:elsewhere".to_owned(), queue_arn("gatehouse:sns-deliveries")]
    {
        let err = sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(&arn).send().await.unwrap_err();
        assert_eq!(sns_code(&err), "InvalidParameter", "{arn}");
    }
    let sqs_client = sqs(&gw);
    let err = sqs_client.get_queue_url().queue_name("gatehouse:sns-deliveries").send().await.unwrap_err();
    assert_eq!(sqs_code(&err), "AWS.SimpleQueueService.NonExistentQueue");
    assert!(sqs_client.list_queues().send().await.unwrap().queue_urls.unwrap_or_default().is_empty());
    let err = sns.publish().topic_arn(&topic).message("x".repeat(256 * 1024 + 1)).send().await.unwrap_err();
    assert_eq!(sns_code(&err), "InvalidParameter");
    let err = sns.list_tags_for_resource().resource_arn(missing).send().await.unwrap_err();
    assert_eq!(sns_code(&err), "ResourceNotFound");
    let empty: Vec<PublishBatchRequestEntry> = Vec::new();
    let err = sns
        .publish_batch()
        .topic_arn(&topic)
        .set_publish_batch_request_entries(Some(empty))
        .send()
        .await
        .unwrap_err();
    assert_eq!(sns_code(&err), "EmptyBatchRequest");
    sns.delete_topic().topic_arn(&topic).send().await.unwrap();
    assert!(sns.list_topics().send().await.unwrap().topics.unwrap_or_default().is_empty());

    // sts:GetCallerIdentity, as SDK helpers ask it.
    let addr = gw.gh().aws_addr.unwrap();
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .endpoint_url(format!("http://{addr}"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build(),
    );
    let me = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some("000000000000"));
    assert!(me.arn().unwrap().starts_with("arn:aws:iam::000000000000:user/"));
}

fn tag(k: &str, v: &str) -> aws_sdk_sns::types::Tag {
    aws_sdk_sns::types::Tag::builder().key(k).value(v).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_route_publishes_through_the_gateway_and_declared_topics_persist() {
    let yaml = queue_config(
        "queues: { a: {}, b: {} }
topics:
  events:
    subscriptions:
      - { queue: a, raw: true }
      - { queue: b, filter: { tier: [gold] } }
routes:
  - name: events
    path: /events
    methods: [POST]
    topic: events
    message: { subject: \"header:x-subject\", attributes: { tier: \"header:x-tier\" } }
",
    );
    let mut gw = Gateway::start(&yaml).await;
    let sqs_client = sqs(&gw);
    let url = |q: &str| format!("http://{}/000000000000/{q}", gw.gh().aws_addr.unwrap());
    let r = client()
        .post(format!("{}/events", gw.url))
        .header("x-subject", "Hello")
        .header("x-tier", "gold")
        .body("event one")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert!(answer["MessageId"].is_string());
    let a = receive_all(&sqs_client, &url("a")).await;
    assert_eq!(a[0].body(), Some("event one"));
    assert_eq!(a[0].message_attributes().unwrap()["tier"].string_value(), Some("gold"));
    let b = receive_all(&sqs_client, &url("b")).await;
    let env: Value = serde_json::from_str(b[0].body().unwrap()).unwrap();
    assert_eq!((env["Subject"].as_str(), env["Message"].as_str()), (Some("Hello"), Some("event one")));
    // A silver message misses b's filter.
    client().post(format!("{}/events", gw.url)).header("x-tier", "silver").body("two").send().await.unwrap();
    assert_eq!(receive_all(&sqs_client, &url("b")).await.len(), 0);

    // A topic made over the API survives a restart beside the declared one.
    sns(&gw).create_topic().name("adhoc").send().await.unwrap();
    let dir = gw.dir.path().to_owned();
    let gh = gw.gh.take().unwrap();
    gh.shutdown().await;
    let config = gatehouse::config::Config::load(&dir.join("routes.yaml")).unwrap();
    gw.gh = Some(gatehouse::app::start(config).await.unwrap());
    let topics = sns(&gw).list_topics().send().await.unwrap().topics.unwrap();
    let names: Vec<&str> =
        topics.iter().map(|t| t.topic_arn().unwrap().rsplit(':').next().unwrap()).collect();
    assert_eq!(names, ["adhoc", "events"]);
    let subs = sns(&gw).list_subscriptions().send().await.unwrap().subscriptions.unwrap();
    assert_eq!(subs.len(), 2, "declared subscriptions are not doubled by a restart");
}

/// An HTTP(S) subscriber: records what it is sent, answers with the
/// statuses it is scripted with (then 200).
struct Hook {
    backend: Backend,
    received: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<(HashMap<String, String>, String)>>,
    script: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
}

impl Hook {
    /// A subscriber that answers confirmation requests 200 and
    /// notifications with `statuses` in turn (then 200).
    async fn start(statuses: &[u16]) -> Hook {
        Hook::scripted(statuses, false).await
    }

    /// `scripted_confirmations`: confirmation requests take their answers
    /// from `statuses` too.
    async fn scripted(statuses: &[u16], scripted_confirmations: bool) -> Hook {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let script =
            std::sync::Arc::new(std::sync::Mutex::new(statuses.iter().rev().copied().collect::<Vec<u16>>()));
        let answers = script.clone();
        let backend = backend(move |req| {
            let (tx, answers) = (tx.clone(), answers.clone());
            async move {
                let headers: HashMap<String, String> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8_lossy(&body).into_owned();
                let confirmation = headers.get("x-amz-sns-message-type").map(String::as_str)
                    == Some("SubscriptionConfirmation");
                let status = if confirmation && !scripted_confirmations {
                    200
                } else {
                    answers.lock().unwrap().pop().unwrap_or(200)
                };
                let _ = tx.send((headers, body));
                text(status, "")
            }
        })
        .await;
        Hook { backend, received: tokio::sync::Mutex::new(rx), script }
    }

    async fn next(&self) -> (HashMap<String, String>, String) {
        let mut rx = self.received.lock().await;
        tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
            .await
            .expect("a delivery in time")
            .unwrap()
    }

    /// Subscribes the hook and confirms it the way a subscriber does.
    async fn subscribe(&self, sns: &aws_sdk_sns::Client, topic: &str, attrs: &[(&str, &str)]) -> String {
        let mut req =
            sns.subscribe().topic_arn(topic).protocol("http").endpoint(format!("{}/hook", self.backend.url));
        for (k, v) in attrs {
            req = req.attributes(*k, *v);
        }
        req.send().await.unwrap();
        let (_, body) = self.next().await;
        let env: Value = serde_json::from_str(&body).unwrap();
        let token = env["Token"].as_str().unwrap();
        sns.confirm_subscription()
            .topic_arn(topic)
            .token(token)
            .send()
            .await
            .unwrap()
            .subscription_arn
            .unwrap()
    }
}

const FAST_RETRIES: &str =
    r#"{"healthyRetryPolicy": {"numRetries": 2, "minDelayTarget": 1, "maxDelayTarget": 1}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_deliveries_carry_the_envelope_or_the_raw_body() {
    let gw = start_queues("").await;
    let sns = sns(&gw);
    let topic = sns.create_topic().name("web").send().await.unwrap().topic_arn.unwrap();
    let (enveloped, raw) = (Hook::start(&[]).await, Hook::start(&[]).await);
    let sub = enveloped.subscribe(&sns, &topic, &[]).await;
    raw.subscribe(&sns, &topic, &[("RawMessageDelivery", "true")]).await;
    let id = sns
        .publish()
        .topic_arn(&topic)
        .message("hello hooks")
        .subject("Greeting")
        .message_attributes("k", string_attr("v"))
        .send()
        .await
        .unwrap()
        .message_id
        .unwrap();
    let (headers, body) = enveloped.next().await;
    assert_eq!(headers["x-amz-sns-message-type"], "Notification");
    assert_eq!(headers["x-amz-sns-message-id"], id);
    assert_eq!(headers["x-amz-sns-topic-arn"], topic);
    assert_eq!(headers["x-amz-sns-subscription-arn"], sub);
    assert!(headers["content-type"].starts_with("text/plain"));
    let env: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((env["Message"].as_str(), env["Subject"].as_str()), (Some("hello hooks"), Some("Greeting")));
    assert_eq!(env["MessageAttributes"]["k"]["Value"], "v");
    verify_signature(&env).await;
    let (headers, body) = raw.next().await;
    assert_eq!(headers["x-amz-sns-rawdelivery"], "true");
    assert_eq!(body, "hello hooks");

    // The UnsubscribeURL works, unsigned, as in SNS.
    let r = client().get(env["UnsubscribeURL"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let left =
        sns.list_subscriptions_by_topic().topic_arn(&topic).send().await.unwrap().subscriptions.unwrap();
    assert_eq!(left.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_structure_json_gives_each_protocol_its_own_body() {
    let gw = start_queues("").await;
    let (sns, sqs) = (sns(&gw), sqs(&gw));
    let topic = sns.create_topic().name("per-protocol").send().await.unwrap().topic_arn.unwrap();
    let (enveloped, raw) = (create_queue(&sqs, "env", &[]).await, create_queue(&sqs, "raw", &[]).await);
    subscribe_queue(&sns, &topic, "env", false).await;
    subscribe_queue(&sns, &topic, "raw", true).await;
    let hook = Hook::start(&[]).await;
    hook.subscribe(&sns, &topic, &[]).await;
    let publish =
        |message: &str| sns.publish().topic_arn(&topic).message_structure("json").message(message).send();

    publish(r#"{"default": "for everyone", "sqs": "for queues", "http": "for hooks", "email": "unused"}"#)
        .await
        .unwrap();
    let got = receive_all(&sqs, &enveloped).await;
    let env: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(env["Message"], "for queues");
    verify_signature(&env).await;
    assert_eq!(receive_all(&sqs, &raw).await[0].body(), Some("for queues"));
    let (_, body) = hook.next().await;
    let env: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(env["Message"], "for hooks");
    verify_signature(&env).await;

    // A protocol without its own key gets `default`.
    publish(r#"{"default": "the default", "https": "not for http"}"#).await.unwrap();
    assert_eq!(receive_all(&sqs, &raw).await[0].body(), Some("the default"));
    let (_, body) = hook.next().await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["Message"], "the default");
    receive_all(&sqs, &enveloped).await;

    // Not JSON, no `default`, or a value that is not a string: refused,
    // and nothing is delivered.
    for bad in ["plain text", r#"{"sqs": "no default"}"#, r#"{"default": 7}"#] {
        let err = publish(bad).await.unwrap_err();
        assert_eq!(sns_code(&err), "InvalidParameter", "{bad}");
    }
    assert!(receive_all(&sqs, &raw).await.is_empty());
    assert!(receive_all(&sqs, &enveloped).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_to_one_endpoint_waits_for_its_few_connections() {
    // A subscriber that takes 50 ms per delivery, and 200 messages at once:
    // without a cap each would open a connection of its own.
    let slow = backend(|_| async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        text(200, "")
    })
    .await;
    let gw = start_queues(&format!(
        "topics:\n  burst:\n    subscriptions:\n      - {{ url: \"{}/hook\", confirmed: true, raw: true }}\n",
        slow.url
    ))
    .await;
    let sns = sns(&gw);
    let topic = "arn:aws:sns:us-east-1:000000000000:burst";
    for b in 0..20 {
        let entries = (0..10).map(|i| {
            aws_sdk_sns::types::PublishBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message(format!("message {b}-{i}"))
                .build()
                .unwrap()
        });
        let out = sns
            .publish_batch()
            .topic_arn(topic)
            .set_publish_batch_request_entries(Some(entries.collect()))
            .send()
            .await
            .unwrap();
        assert_eq!(out.successful().len(), 10);
    }
    eventually("all 200 delivered", || {
        let hits = slow.hits();
        async move { hits >= 200 }
    })
    .await;
    // 8 per endpoint on each of the 2 workers.
    let opened = slow.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(opened <= 16, "{opened} connections for one endpoint");
    assert_eq!(slow.hits(), 200, "each message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_with_backoff_and_4xx_is_not() {
    let gw = start_queues("").await;
    let (sns, sqs) = (sns(&gw), sqs(&gw));
    let topic = sns.create_topic().name("retry").send().await.unwrap().topic_arn.unwrap();
    let dlq_url = create_queue(&sqs, "hook-dlq", &[]).await;
    let redrive = format!(r#"{{"deadLetterTargetArn": "{}"}}"#, queue_arn("hook-dlq"));
    // Fails twice with 500 and 429, then takes it: three attempts.
    let flaky = Hook::start(&[500, 429]).await;
    flaky.subscribe(&sns, &topic, &[("DeliveryPolicy", FAST_RETRIES)]).await;
    // Refuses with 400: one attempt, then the dead-letter queue.
    let refusing = Hook::start(&[400]).await;
    refusing.subscribe(&sns, &topic, &[("DeliveryPolicy", FAST_RETRIES), ("RedrivePolicy", &redrive)]).await;
    // Always down: 1 + 2 attempts, then the dead-letter queue.
    let down = Hook::start(&[503, 503, 503]).await;
    down.subscribe(&sns, &topic, &[("DeliveryPolicy", FAST_RETRIES), ("RedrivePolicy", &redrive)]).await;

    let started = std::time::Instant::now();
    sns.publish().topic_arn(&topic).message("m1").send().await.unwrap();
    for _ in 0..3 {
        let (_, body) = flaky.next().await;
        assert!(body.contains("m1"));
    }
    // The retries waited about a second each (1 s ± 10% jitter).
    assert!(started.elapsed() >= std::time::Duration::from_millis(1700), "{:?}", started.elapsed());
    refusing.next().await;
    for _ in 0..3 {
        down.next().await;
    }
    let mut dead = Vec::new();
    eventually("both given-up deliveries in the dead-letter queue", || {
        let (sqs, url) = (sqs.clone(), dlq_url.clone());
        async move {
            sqs.get_queue_attributes()
                .queue_url(&url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]
                == "2"
        }
    })
    .await;
    dead.extend(receive_all(&sqs, &dlq_url).await);
    let mut codes: Vec<String> = dead
        .iter()
        .map(|m| m.message_attributes().unwrap()["ErrorCode"].string_value().unwrap().to_owned())
        .collect();
    codes.sort();
    assert_eq!(codes, ["HTTP 400", "HTTP 503"]);
    assert!(dead
        .iter()
        .all(|m| serde_json::from_str::<Value>(m.body().unwrap()).unwrap()["Message"] == "m1"));
    // Given up after one attempt (a given-up subscriber is not tried again).
    assert_eq!(refusing.backend.hits(), 2, "the confirmation and one attempt");
    assert_eq!(flaky.script.lock().unwrap().len(), 0);
    let text = metrics_text(&gw).await;
    assert_eq!(
        metric(&text, "gatehouse_topic_deliveries_total{outcome=\"dead_lettered\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(metric(&text, "gatehouse_topic_deliveries_total{outcome=\"delivered\"}"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_restart() {
    let mut gw = start_queues("").await;
    let sns_client = sns(&gw);
    let topic = sns_client.create_topic().name("durable").send().await.unwrap().topic_arn.unwrap();
    // Down for the first attempt; the retry waits 3 s.
    let hook = Hook::start(&[503]).await;
    let slow = r#"{"healthyRetryPolicy": {"numRetries": 3, "minDelayTarget": 3, "maxDelayTarget": 3}}"#;
    hook.subscribe(&sns_client, &topic, &[("DeliveryPolicy", slow)]).await;
    sns_client.publish().topic_arn(&topic).message("keep me").send().await.unwrap();
    hook.next().await;
    // Stop while the retry waits, start again on the same store.
    let dir = gw.dir.path().to_owned();
    gw.gh.take().unwrap().shutdown().await;
    let config = gatehouse::config::Config::load(&dir.join("routes.yaml")).unwrap();
    gw.gh = Some(gatehouse::app::start(config).await.unwrap());
    let (_, body) = hook.next().await;
    let env: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(env["Message"], "keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_alarms_fire_and_recover_without_flapping() {
    let gw = start_queues(
        "queues: { orders: {}, alerts: {} }
topics:
  ops: { subscriptions: [ { queue: alerts, raw: true } ] }
alarms:
  orders-backlog: { queue: orders, metric: visible, above: 2, for: 1s, notify: [ops] }
",
    )
    .await;
    let sqs = sqs(&gw);
    let url = |q: &str| format!("http://{}/000000000000/{q}", gw.gh().aws_addr.unwrap());
    let wait_for_alert = || async {
        let out = sqs.receive_message().queue_url(url("alerts")).wait_time_seconds(15).send().await.unwrap();
        let m = out.messages.unwrap_or_default().pop().expect("an alarm notification");
        sqs.delete_message()
            .queue_url(url("alerts"))
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
        serde_json::from_str::<Value>(m.body().unwrap()).unwrap()
    };
    for i in 0..3 {
        sqs.send_message().queue_url(url("orders")).message_body(format!("o{i}")).send().await.unwrap();
    }
    let fired = wait_for_alert().await;
    assert_eq!(fired["AlarmName"], "orders-backlog");
    assert_eq!(
        (fired["OldStateValue"].as_str(), fired["NewStateValue"].as_str()),
        (Some("OK"), Some("ALARM"))
    );
    assert_eq!(
        (fired["Queue"].as_str(), fired["Metric"].as_str(), fired["Value"].as_f64()),
        (Some("orders"), Some("visible"), Some(3.0))
    );
    assert_eq!(fired["Trigger"]["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(fired["Trigger"]["Threshold"], 2.0);
    let metrics = metrics_text(&gw).await;
    assert_eq!(
        metric(&metrics, "gatehouse_alarm_state{alarm=\"orders-backlog\",queue=\"orders\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "gatehouse_queue_messages_visible{queue=\"orders\"}"), Some(3.0));

    sqs.purge_queue().queue_url(url("orders")).send().await.unwrap();
    let recovered = wait_for_alert().await;
    assert_eq!(
        (recovered["OldStateValue"].as_str(), recovered["NewStateValue"].as_str()),
        (Some("ALARM"), Some("OK"))
    );
    assert_eq!(recovered["Value"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_watch_messages_in_flight_their_age_and_dead_letters() {
    let gw = start_queues(
        "queues:
  jobs: { visibility_timeout: 1s, dead_letter: { queue: jobs-dlq, max_receives: 1 } }
  jobs-dlq: {}
  alerts: {}
topics:
  ops: { subscriptions: [ { queue: alerts, raw: true } ] }
alarms:
  jobs-busy: { queue: jobs, metric: in_flight, above: 0, notify: [ops] }
  jobs-old: { queue: jobs, metric: oldest_age, above: 2s, notify: [ops] }
  jobs-dead: { queue: jobs, metric: dead_letter, above: 0, notify: [ops] }
",
    )
    .await;
    let sqs = sqs(&gw);
    let url = |q: &str| format!("http://{}/000000000000/{q}", gw.gh().aws_addr.unwrap());
    // Collects alarm notifications until every `(alarm, new state)` of
    // `want` has been seen; the values they reported.
    let alerts_until = |want: Vec<(&'static str, &'static str)>| {
        let (sqs, alerts) = (sqs.clone(), url("alerts"));
        async move {
            let mut seen: HashMap<(String, String), f64> = HashMap::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !want.iter().all(|(a, s)| seen.contains_key(&(a.to_string(), s.to_string()))) {
                assert!(std::time::Instant::now() < deadline, "alarms seen: {seen:?}, wanted {want:?}");
                let out = sqs.receive_message().queue_url(&alerts).wait_time_seconds(2).send().await.unwrap();
                for m in out.messages.unwrap_or_default() {
                    let v: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                    let key = (
                        v["AlarmName"].as_str().unwrap().to_owned(),
                        v["NewStateValue"].as_str().unwrap().to_owned(),
                    );
                    seen.insert(key, v["Value"].as_f64().unwrap());
                    sqs.delete_message()
                        .queue_url(&alerts)
                        .receipt_handle(m.receipt_handle().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
            }
            seen
        }
    };
    sqs.send_message().queue_url(url("jobs")).message_body("job 1").send().await.unwrap();
    // Waiting more than two seconds: the oldest message's age fires.
    let seen = alerts_until(vec![("jobs-old", "ALARM")]).await;
    assert!(seen[&("jobs-old".into(), "ALARM".into())] > 2.0, "{seen:?}");
    // Taken and not deleted: in flight, until its visibility ends.
    let got = sqs.receive_message().queue_url(url("jobs")).send().await.unwrap().messages.unwrap_or_default();
    assert_eq!(got.len(), 1);
    alerts_until(vec![("jobs-busy", "ALARM")]).await;
    // Its visibility ends: nothing in flight.
    let seen = alerts_until(vec![("jobs-busy", "OK")]).await;
    assert_eq!(seen[&("jobs-busy".into(), "OK".into())], 0.0);
    // Received again: past max_receives, so it moves to the dead-letter
    // queue instead, and the queue holds nothing old any more.
    let again = sqs.receive_message().queue_url(url("jobs")).wait_time_seconds(1).send().await.unwrap();
    assert!(again.messages.unwrap_or_default().is_empty());
    let seen = alerts_until(vec![("jobs-dead", "ALARM"), ("jobs-old", "OK")]).await;
    assert_eq!(seen[&("jobs-dead".into(), "ALARM".into())], 1.0);
    let metrics = metrics_text(&gw).await;
    assert_eq!(
        metric(&metrics, "gatehouse_alarm_state{alarm=\"jobs-dead\",queue=\"jobs\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "gatehouse_alarm_value{alarm=\"jobs-dead\"}"), Some(1.0));
    assert_eq!(metric(&metrics, "gatehouse_alarm_state{alarm=\"jobs-busy\",queue=\"jobs\"}"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_url_subscriptions_confirm_or_start_confirmed() {
    let (pending, vouched) = (Hook::start(&[]).await, Hook::start(&[]).await);
    let gw = start_queues(&format!(
        "topics:\n  web:\n    subscriptions:\n      - {{ url: \"{}/p\" }}\n      - {{ url: \"{}/v\", confirmed: true, raw: true }}\n",
        pending.backend.url, vouched.backend.url
    ))
    .await;
    let sns = sns(&gw);
    // The pending one is asked to confirm; the vouched one is not.
    let (headers, body) = pending.next().await;
    assert_eq!(headers["x-amz-sns-message-type"], "SubscriptionConfirmation");
    let topic = "arn:aws:sns:us-east-1:000000000000:web";
    sns.publish().topic_arn(topic).message("first").send().await.unwrap();
    let (headers, body_v) = vouched.next().await;
    assert_eq!((headers["x-amz-sns-message-type"].as_str(), body_v.as_str()), ("Notification", "first"));
    // Once confirmed, the pending one gets what comes next.
    let env: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(client().get(env["SubscribeURL"].as_str().unwrap()).send().await.unwrap().status(), 200);
    sns.publish().topic_arn(topic).message("second").send().await.unwrap();
    let (headers, body) = pending.next().await;
    assert_eq!(headers["x-amz-sns-message-type"], "Notification");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["Message"], "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_only_subscribers_may_act_unsigned_and_authenticated_ones_may_not_be_unsubscribed() {
    let gw = Gateway::start(
        "listen:\n  gateway: { bind: \"127.0.0.1:0\" }\n  admin: off\n  aws: { bind: \"127.0.0.1:0\", credentials: [ { access_key: AKIDTEST, secret_key: secret } ] }\nlog: { access: false }\nqueues: { q: {} }\n",
    )
    .await;
    let sns = sns(&gw);
    let base = format!("http://{}", gw.gh().aws_addr.unwrap());
    let topic = sns.create_topic().name("guarded").send().await.unwrap().topic_arn.unwrap();
    // Unsigned calls other than confirming and unsubscribing are refused.
    let r = client().get(format!("{base}/?Action=ListTopics&Version=2010-03-31")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // A queue subscription (made by the owner) is not ended by an unsigned request.
    let q = sns.subscribe().topic_arn(&topic).protocol("sqs").endpoint(queue_arn("q")).send().await.unwrap();
    let q_arn = q.subscription_arn.unwrap();
    let unsubscribe =
        |arn: &str| format!("{base}/?Action=Unsubscribe&Version=2010-03-31&SubscriptionArn={arn}");
    let r = client().get(unsubscribe(&q_arn)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("<Code>AuthorizationError</Code>"));

    // Two hooks: one confirmed unsigned (its UnsubscribeURL works unsigned),
    // one confirmed signed with AuthenticateOnUnsubscribe (it does not).
    let (open, guarded) = (Hook::start(&[]).await, Hook::start(&[]).await);
    for (hook, authenticate) in [(&open, false), (&guarded, true)] {
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("http")
            .endpoint(format!("{}/h", hook.backend.url))
            .send()
            .await
            .unwrap();
        let (_, body) = hook.next().await;
        let env: Value = serde_json::from_str(&body).unwrap();
        if authenticate {
            let token = env["Token"].as_str().unwrap();
            sns.confirm_subscription()
                .topic_arn(&topic)
                .token(token)
                .authenticate_on_unsubscribe("true")
                .send()
                .await
                .unwrap();
        } else {
            assert_eq!(
                client().get(env["SubscribeURL"].as_str().unwrap()).send().await.unwrap().status(),
                200
            );
        }
    }
    sns.publish().topic_arn(&topic).message("hi").send().await.unwrap();
    let (_, open_body) = open.next().await;
    let (_, guarded_body) = guarded.next().await;
    let url_of = |body: &str| {
        serde_json::from_str::<Value>(body).unwrap()["UnsubscribeURL"].as_str().unwrap().to_owned()
    };
    assert_eq!(client().get(url_of(&guarded_body)).send().await.unwrap().status(), 403);
    assert_eq!(client().get(url_of(&open_body)).send().await.unwrap().status(), 200);
    let left =
        sns.list_subscriptions_by_topic().topic_arn(&topic).send().await.unwrap().subscriptions.unwrap();
    assert_eq!(left.len(), 2, "the queue and the guarded hook remain");
    let guarded_arn =
        left.iter().find(|s| s.protocol() == Some("http")).unwrap().subscription_arn().unwrap().to_owned();
    let attrs = sns
        .get_subscription_attributes()
        .subscription_arn(&guarded_arn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attrs["ConfirmationWasAuthenticated"], "true");
    // A signed request may.
    sns.unsubscribe().subscription_arn(&guarded_arn).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_policy_paces_deliveries_to_an_endpoint() {
    let gw = start_queues("").await;
    let sns = sns(&gw);
    let topic = sns.create_topic().name("paced").send().await.unwrap().topic_arn.unwrap();
    let hook = Hook::start(&[]).await;
    let policy = r#"{"throttlePolicy": {"maxReceivesPerSecond": 2}}"#;
    let arn =
        hook.subscribe(&sns, &topic, &[("DeliveryPolicy", policy), ("RawMessageDelivery", "true")]).await;
    let attrs =
        sns.get_subscription_attributes().subscription_arn(&arn).send().await.unwrap().attributes.unwrap();
    assert!(attrs["EffectiveDeliveryPolicy"].contains(r#""maxReceivesPerSecond":2"#), "{attrs:?}");
    for i in 0..6 {
        sns.publish().topic_arn(&topic).message(format!("m{i}")).send().await.unwrap();
    }
    // Two at once, then one every half second: the sixth comes about two
    // seconds after the first.
    hook.next().await;
    let first = std::time::Instant::now();
    for _ in 1..6 {
        hook.next().await;
    }
    assert!(first.elapsed() >= std::time::Duration::from_millis(1800), "{:?}", first.elapsed());
    let bad = r#"{"throttlePolicy": {"maxReceivesPerSecond": 0}}"#;
    let err = sns
        .set_subscription_attributes()
        .subscription_arn(&arn)
        .attribute_name("DeliveryPolicy")
        .attribute_value(bad)
        .send()
        .await
        .unwrap_err();
    assert_eq!(sns_code(&err), "InvalidParameter");
}
