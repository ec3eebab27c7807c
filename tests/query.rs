//! The Query protocol, with raw form posts and XML assertions, as older
//! SDKs speak it.

mod common;

use common::*;

/// Every `<tag>…</tag>` text in a document, entities decoded.
fn texts(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(unescape(&after[..j]));
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#xD;", "\r")
        .replace("&#x9;", "\t")
        .replace("&amp;", "&")
}

struct Query {
    http: reqwest::Client,
    base: String,
}

impl Query {
    async fn call(&self, path: &str, params: &[(&str, &str)]) -> (u16, String) {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.append_pair("Version", "2012-11-05");
        for (k, v) in params {
            body.append_pair(k, v);
        }
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(r.headers()["content-type"], "text/xml");
        (status, r.text().await.unwrap())
    }
}

async fn setup() -> (Gateway, Query) {
    let gw = Gateway::start(&queue_config("")).await;
    let q = Query { http: client(), base: format!("http://{}", gw.gh().aws_addr.unwrap()) };
    (gw, q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_lifecycle_in_the_query_protocol() {
    let (_gw, q) = setup().await;
    let (status, xml) = q
        .call(
            "/",
            &[
                ("Action", "CreateQueue"),
                ("QueueName", "legacy"),
                ("Attribute.1.Name", "VisibilityTimeout"),
                ("Attribute.1.Value", "15"),
                ("Tag.1.Key", "team"),
                ("Tag.1.Value", "ops"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.starts_with(
        "<CreateQueueResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><CreateQueueResult>"
    ));
    let url = texts(&xml, "QueueUrl").pop().unwrap();
    assert!(url.ends_with("/000000000000/legacy"));
    assert_eq!(texts(&xml, "RequestId").len(), 1);

    let (_, xml) = q
        .call("/", &[("Action", "GetQueueAttributes"), ("QueueUrl", &url), ("AttributeName.1", "All")])
        .await;
    let names = texts(&xml, "Name");
    let values = texts(&xml, "Value");
    let vt = names.iter().position(|n| n == "VisibilityTimeout").unwrap();
    assert_eq!(values[vt], "15");

    let (_, xml) = q.call("/", &[("Action", "ListQueueTags"), ("QueueUrl", &url)]).await;
    assert_eq!(texts(&xml, "Key"), vec!["team"]);

    // A body full of characters XML must escape, and a typed attribute.
    let body = "a <b> & \"c\" 'd'\r\nline\ttab ✓";
    let (status, xml) = q
        .call(
            "/",
            &[
                ("Action", "SendMessage"),
                ("QueueUrl", &url),
                ("MessageBody", body),
                ("MessageAttribute.1.Name", "attribName1"),
                ("MessageAttribute.1.Value.DataType", "String"),
                ("MessageAttribute.1.Value.StringValue", "attribValue 1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(texts(&xml, "MD5OfMessageAttributes"), vec!["19e27d4e946b072f3f58da80d94fd778"]);
    let message_id = texts(&xml, "MessageId").pop().unwrap();

    let (_, xml) = q
        .call(
            "/",
            &[
                ("Action", "ReceiveMessage"),
                ("QueueUrl", &url),
                ("AttributeName.1", "All"),
                ("MessageAttributeName.1", "All"),
            ],
        )
        .await;
    assert_eq!(texts(&xml, "Body"), vec![body.to_string()], "{xml}");
    assert_eq!(texts(&xml, "MessageId"), vec![message_id]);
    assert_eq!(texts(&xml, "StringValue"), vec!["attribValue 1"]);
    assert!(texts(&xml, "Name").contains(&"ApproximateReceiveCount".to_string()));
    let handle = texts(&xml, "ReceiptHandle").pop().unwrap();

    // Older SDKs post to the queue's own URL and omit QueueUrl.
    let (status, xml) =
        q.call("/000000000000/legacy", &[("Action", "DeleteMessage"), ("ReceiptHandle", &handle)]).await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.starts_with("<DeleteMessageResponse"));
    assert!(!xml.contains("<DeleteMessageResult>"), "no result element for actions without output");

    let (_, xml) = q.call("/", &[("Action", "ListQueues"), ("QueueNamePrefix", "leg")]).await;
    assert_eq!(texts(&xml, "QueueUrl"), vec![url.clone()]);
    let (status, _) = q.call("/", &[("Action", "DeleteQueue"), ("QueueUrl", &url)]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_report_entries_in_xml() {
    let (_gw, q) = setup().await;
    let (_, xml) = q.call("/", &[("Action", "CreateQueue"), ("QueueName", "b")]).await;
    let url = texts(&xml, "QueueUrl").pop().unwrap();
    let (status, xml) = q
        .call(
            "/",
            &[
                ("Action", "SendMessageBatch"),
                ("QueueUrl", &url),
                ("SendMessageBatchRequestEntry.1.Id", "good"),
                ("SendMessageBatchRequestEntry.1.MessageBody", "fine"),
                ("SendMessageBatchRequestEntry.2.Id", "bad"),
                ("SendMessageBatchRequestEntry.2.MessageBody", "x"),
                ("SendMessageBatchRequestEntry.2.DelaySeconds", "9999"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(texts(&xml, "Id"), vec!["good", "bad"]);
    assert!(xml.contains("<SendMessageBatchResultEntry><Id>good</Id><MessageId>"));
    assert!(xml.contains("<BatchResultErrorEntry><Id>bad</Id><SenderFault>true</SenderFault><Code>InvalidParameterValue</Code>"));

    let (status, xml) = q.call("/", &[("Action", "SendMessageBatch"), ("QueueUrl", &url)]).await;
    assert_eq!(status, 400);
    assert_eq!(texts(&xml, "Code"), vec!["AWS.SimpleQueueService.EmptyBatchRequest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_error_responses_with_sqs_codes() {
    let (gw, q) = setup().await;
    let (status, xml) = q.call("/", &[("Action", "GetQueueUrl"), ("QueueName", "nope")]).await;
    assert_eq!(status, 400);
    assert!(xml.starts_with("<ErrorResponse"), "{xml}");
    assert_eq!(texts(&xml, "Type"), vec!["Sender"]);
    assert_eq!(texts(&xml, "Code"), vec!["AWS.SimpleQueueService.NonExistentQueue"]);
    assert_eq!(texts(&xml, "Message"), vec!["The specified queue does not exist."]);

    let (_, xml) = q.call("/", &[("Action", "CreateQueue"), ("QueueName", "e")]).await;
    let url = texts(&xml, "QueueUrl").pop().unwrap();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("Action", "CreateQueue"),
                ("QueueName", "e"),
                ("Attribute.1.Name", "DelaySeconds"),
                ("Attribute.1.Value", "5"),
            ],
            "QueueAlreadyExists",
        ),
        (
            vec![("Action", "DeleteMessage"), ("QueueUrl", &url), ("ReceiptHandle", "zzz")],
            "ReceiptHandleIsInvalid",
        ),
        (
            vec![
                ("Action", "SetQueueAttributes"),
                ("QueueUrl", &url),
                ("Attribute.1.Name", "Nope"),
                ("Attribute.1.Value", "1"),
            ],
            "InvalidAttributeName",
        ),
        (
            vec![
                ("Action", "SetQueueAttributes"),
                ("QueueUrl", &url),
                ("Attribute.1.Name", "DelaySeconds"),
                ("Attribute.1.Value", "1000"),
            ],
            "InvalidAttributeValue",
        ),
        (vec![("Action", "SendMessage"), ("QueueUrl", &url)], "MissingParameter"),
        (
            vec![("Action", "SendMessage"), ("QueueUrl", &url), ("MessageBody", "\u{1}")],
            "InvalidMessageContents",
        ),
        (
            vec![("Action", "ReceiveMessage"), ("QueueUrl", &url), ("MaxNumberOfMessages", "11")],
            "InvalidParameterValue",
        ),
        (vec![("Action", "FlyToTheMoon")], "InvalidAction"),
        (vec![("QueueName", "no-action")], "MissingAction"),
    ];
    for (params, code) in cases {
        let (status, xml) = q.call("/", &params).await;
        assert_eq!(status, 400, "{params:?}");
        assert_eq!(texts(&xml, "Code"), vec![code.to_string()], "{params:?}: {xml}");
    }

    // GET with a query string works too.
    let r = client()
        .get(format!("http://{}/?Action=ListQueues&Version=2012-11-05", gw.gh().aws_addr.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(texts(&r.text().await.unwrap(), "QueueUrl"), vec![url]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_errors_carry_the_shape_and_the_query_code() {
    let (gw, _) = setup().await;
    let r = client()
        .post(format!("http://{}/", gw.gh().aws_addr.unwrap()))
        .header("x-amz-target", "AmazonSQS.GetQueueUrl")
        .header("content-type", "application/x-amz-json-1.0")
        .body(r#"{"QueueName":"missing"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-amzn-query-error"], "AWS.SimpleQueueService.NonExistentQueue;Sender");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["__type"], "com.amazonaws.sqs#QueueDoesNotExist");
    assert_eq!(body["message"], "The specified queue does not exist.");

    let r = client()
        .post(format!("http://{}/", gw.gh().aws_addr.unwrap()))
        .header("x-amz-target", "AmazonSQS.ListQueues")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["__type"], "com.amazonaws.sqs#SerializationException");
}

/// A raw AWS JSON 1.0 call: (status, answer).
async fn json_call(gw: &Gateway, action: &str, body: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("http://{}/", gw.gh().aws_addr.unwrap()))
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The answer without what differs between two sends of the same message.
fn without_message_ids(mut v: serde_json::Value) -> serde_json::Value {
    for e in v["Successful"].as_array_mut().into_iter().flatten() {
        e.as_object_mut().unwrap().remove("MessageId");
    }
    v
}

/// SendMessageBatch and DeleteMessageBatch are decoded into typed structs
/// first and fall back to the general decoder for any other shape; the
/// answer must be the same either way. An unknown top-level key forces the
/// general path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_batches_answer_the_same_on_the_typed_and_the_general_path() {
    let (gw, _) = setup().await;
    let (_, created) = json_call(&gw, "CreateQueue", r#"{"QueueName":"typed"}"#).await;
    let url = created["QueueUrl"].as_str().unwrap().to_owned();
    let send = |entries: &str, extra: &str| format!(r#"{{"QueueUrl":"{url}","Entries":[{entries}]{extra}}}"#);

    let cases = [
        // Escapes in bodies, delays, attributes: typed.
        r#"{"Id":"a","MessageBody":"quote \" newline \n \u00e9 \ud83d\ude00"},{"Id":"b","MessageBody":"x","DelaySeconds":0,"MessageAttributes":{"k":{"DataType":"String","StringValue":"v"}}}"#,
        // What only the general path reads: a numeric Id, a delay as text,
        // an unknown key in an entry.
        r#"{"Id":7,"MessageBody":"n"},{"Id":"s","MessageBody":"t","DelaySeconds":"0"},{"Id":"u","MessageBody":"u","Unknown":1}"#,
        // Per-entry failures beside a success.
        r#"{"Id":"ok","MessageBody":"fine"},{"Id":"nobody"},{"Id":"bad","MessageBody":"x","MessageSystemAttributes":{"Nope":{"DataType":"String","StringValue":"v"}}}"#,
        // Whole-call errors.
        "",
        r#"{"Id":"same","MessageBody":"1"},{"Id":"same","MessageBody":"2"}"#,
        r#"{"Id":"has space","MessageBody":"1"}"#,
        r#"{"MessageBody":"no id"}"#,
    ];
    for entries in cases {
        let (s1, typed) = json_call(&gw, "SendMessageBatch", &send(entries, "")).await;
        let (s2, general) = json_call(&gw, "SendMessageBatch", &send(entries, r#","Extra":true"#)).await;
        assert_eq!(s1, s2, "{entries}");
        assert_eq!(without_message_ids(typed), without_message_ids(general), "{entries}");
    }

    // Receive what was sent and delete it in two batches, one per path, each
    // with a receipt handle that is not valid.
    let receive = format!(r#"{{"QueueUrl":"{url}","MaxNumberOfMessages":10,"VisibilityTimeout":60}}"#);
    let mut handles = Vec::new();
    loop {
        let (_, got) = json_call(&gw, "ReceiveMessage", &receive).await;
        let Some(messages) = got["Messages"].as_array() else { break };
        handles.extend(messages.iter().map(|m| m["ReceiptHandle"].as_str().unwrap().to_owned()));
    }
    assert!(handles.len() >= 4, "{handles:?}");
    let delete = |hs: &[String], extra: &str| {
        let mut entries: Vec<String> =
            hs.iter().enumerate().map(|(i, h)| format!(r#"{{"Id":"d{i}","ReceiptHandle":"{h}"}}"#)).collect();
        entries.push(r#"{"Id":"stale","ReceiptHandle":"not-a-handle"}"#.to_owned());
        format!(r#"{{"QueueUrl":"{url}","Entries":[{}]{extra}}}"#, entries.join(","))
    };
    let (s1, typed) = json_call(&gw, "DeleteMessageBatch", &delete(&handles[..2], "")).await;
    let (s2, general) = json_call(&gw, "DeleteMessageBatch", &delete(&handles[2..4], r#","Extra":1"#)).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(typed, general);
    assert_eq!(typed["Successful"].as_array().unwrap().len(), 2);
    assert_eq!(typed["Failed"][0]["Code"], "ReceiptHandleIsInvalid");
}
