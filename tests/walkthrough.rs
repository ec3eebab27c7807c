//! The README's walkthrough, run as a user runs it: the shipped
//! `routes.yaml` (its ports moved to 0 and its data into a temporary
//! directory), messages published with plain HTTP through the gateway, then
//! received and deleted behind it with boto3 and with aws-cli, the Python
//! clients the README shows. Both check `MD5OfMessageBody` and
//! `MD5OfMessageAttributes` and fail on a mismatch.
//!
//! boto3 and aws-cli are not Rust dependencies. `.ci/run` installs them with
//! pip and sets `GATEHOUSE_REQUIRE_PYTHON_CLIENTS=1`, which makes a missing
//! client a failure; elsewhere a test whose client is missing says so on
//! stderr and passes without running.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use aws_sdk_sqs::types::QueueAttributeName;
use common::*;
use serde_json::Value;

/// The shipped configuration, with every listener on port 0.
fn shipped_config() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml")).unwrap();
    let mut text = text;
    for port in ["8080", "9324", "9901"] {
        let from = format!("\"127.0.0.1:{port}\"");
        assert!(text.contains(&from), "the shipped routes.yaml no longer binds {from}; update this test");
        text = text.replace(&from, "\"127.0.0.1:0\"");
    }
    // `./data` is relative to the file, which the harness writes into its
    // own temporary directory.
    assert!(text.contains("path: ./data"), "the shipped routes.yaml no longer keeps its data in ./data");
    // The shipped rules, where they are (the file moved, they did not).
    let rules = "rules: ./waf-rules";
    assert!(text.contains(rules), "the shipped routes.yaml no longer reads ./waf-rules");
    text.replace(rules, concat!("rules: ", env!("CARGO_MANIFEST_DIR"), "/waf-rules"))
}

/// Whether `program args…` runs; if not, a missing client is a failure
/// under CI and a skip elsewhere.
fn client_available(what: &str, program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program).args(args).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("GATEHOUSE_REQUIRE_PYTHON_CLIENTS").is_none(),
            "{what} is required (GATEHOUSE_REQUIRE_PYTHON_CLIENTS is set) but `{program}` does not run"
        );
        eprintln!("skipped: {what} is not installed (pip install boto3 awscli)");
    }
    ok
}

async fn publish(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> Value {
    let mut req = client()
        .post(format!("{}{path}", gw.url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "publishing to {path}");
    r.json().await.unwrap()
}

fn aws_env(cmd: &mut Command) -> &mut Command {
    // Any credentials will do while listen.aws has none configured.
    cmd.env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}

/// `aws --endpoint-url … sqs ARGS --output json`, parsed (`Null` for an
/// empty answer). The CLI runs on a blocking thread.
async fn aws_cli(endpoint: SocketAddr, args: &[&str]) -> Value {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = aws_env(&mut Command::new("aws"))
            .arg("--endpoint-url")
            .arg(format!("http://{endpoint}"))
            .arg("sqs")
            .args(&args)
            .args(["--output", "json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "aws sqs {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("aws printed no JSON ({e}): {stdout}"))
    })
    .await
    .unwrap()
}

/// The README's boto3 snippet, printing what it received as JSON.
const BOTO3_WORKER: &str = r#"
import json, sys
import boto3
sqs = boto3.client("sqs", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="local", aws_secret_access_key="local")
url = sqs.get_queue_url(QueueName=sys.argv[2])["QueueUrl"]
got = []
for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=int(sys.argv[3]),
                             MessageAttributeNames=["All"]).get("Messages", []):
    got.append({"body": m["Body"], "attributes": m.get("MessageAttributes")})
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
print(json.dumps(got))
"#;

/// Runs the boto3 worker once (on a blocking thread), long-polling up to
/// `wait` seconds.
async fn boto3_worker(endpoint: SocketAddr, queue: &'static str, wait: u32) -> Vec<Value> {
    tokio::task::spawn_blocking(move || {
        let out = aws_env(&mut Command::new("python3"))
            .args(["-c", BOTO3_WORKER, &format!("http://{endpoint}"), queue, &wait.to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "the boto3 worker failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str::<Vec<Value>>(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_curl_then_consume_with_boto3() {
    if !client_available("boto3", "python3", &["-c", "import boto3"]) {
        return;
    }
    let gw = Gateway::start(&shipped_config()).await;
    let aws = gw.gh().aws_addr.expect("the shipped file has an AWS listener");
    let sent = publish(&gw, "/api/orders", &[("x-source", "web")], r#"{"sku":"A-1"}"#).await;
    assert!(sent["MessageId"].is_string(), "{sent}");

    let got = boto3_worker(aws, "orders", 5).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["body"], r#"{"sku":"A-1"}"#);
    let attrs = &got[0]["attributes"];
    assert_eq!(attrs["source"]["StringValue"], "web", "{attrs}");
    assert_eq!(attrs["source"]["DataType"], "String", "{attrs}");

    // boto3 deleted it: it is gone, not merely invisible.
    let again = boto3_worker(aws, "orders", 0).await;
    assert!(again.is_empty(), "a deleted message came back: {again:?}");
    let sdk = sqs_at(aws, "local", "local");
    let url = sdk.get_queue_url().queue_name("orders").send().await.unwrap().queue_url.unwrap();
    let count = queue_attribute(&sdk, &url, QueueAttributeName::ApproximateNumberOfMessagesNotVisible).await;
    assert_eq!(count, "0", "the deleted message is still in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_curl_then_consume_with_aws_cli() {
    if !client_available("aws-cli", "aws", &["--version"]) {
        return;
    }
    let gw = Gateway::start(&shipped_config()).await;
    let aws = gw.gh().aws_addr.expect("the shipped file has an AWS listener");
    publish(&gw, "/api/orders", &[("x-source", "web")], r#"{"sku":"A-1"}"#).await;
    let q = format!("http://{aws}/000000000000/orders");

    let receive = [
        "receive-message",
        "--queue-url",
        &q,
        "--message-attribute-names",
        "All",
        "--wait-time-seconds",
        "5",
    ];
    let answer = aws_cli(aws, &receive).await;
    let messages = answer["Messages"].as_array().unwrap_or_else(|| panic!("no Messages: {answer}"));
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["Body"], r#"{"sku":"A-1"}"#);
    assert_eq!(messages[0]["MessageAttributes"]["source"]["StringValue"], "web");
    let handle = messages[0]["ReceiptHandle"].as_str().unwrap().to_owned();
    let deleted = aws_cli(aws, &["delete-message", "--queue-url", &q, "--receipt-handle", &handle]).await;
    assert!(deleted.is_null() || deleted == serde_json::json!({}), "{deleted}");

    // FIFO through the gateway: a retry with the same Idempotency-Key is
    // accepted and not delivered twice.
    let headers = [("x-account", "acct-1"), ("idempotency-key", "pay-1")];
    let first = publish(&gw, "/api/payments", &headers, r#"{"amount":5}"#).await;
    let retry = publish(&gw, "/api/payments", &headers, r#"{"amount":5}"#).await;
    assert!(first["SequenceNumber"].is_string(), "{first}");
    assert_eq!(first["MessageId"], retry["MessageId"], "a deduplicated send answers with the first message");
    let fifo = format!("http://{aws}/000000000000/payments.fifo");
    let receive = [
        "receive-message",
        "--queue-url",
        &fifo,
        "--max-number-of-messages",
        "10",
        "--wait-time-seconds",
        "1",
    ];
    let answer = aws_cli(aws, &receive).await;
    let messages = answer["Messages"].as_array().unwrap_or_else(|| panic!("no Messages: {answer}"));
    assert_eq!(messages.len(), 1, "the retry was delivered too: {answer}");
    assert_eq!(messages[0]["Body"], r#"{"amount":5}"#);
}

/// The shipped throttle is what a newcomer's curl loop sees: a burst of
/// 20, then 429 with `Retry-After`; every answer shows the limit.
#[tokio::test]
async fn the_shipped_throttle_shows_in_a_curl_loop() {
    let gw = Gateway::start(&shipped_config()).await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let r = c.get(format!("{}/", gw.url)).send().await.unwrap();
        assert_eq!(
            r.headers().get("ratelimit-policy").and_then(|v| v.to_str().ok()),
            Some("\"per-client\";q=10;w=1")
        );
        assert!(r.headers().contains_key("ratelimit"));
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!(admitted >= 20, "{statuses:?}");
    assert!(statuses.contains(&429), "60 requests in a loop outrun 10/s: {statuses:?}");
}
