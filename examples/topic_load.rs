//! Load generator for SNS-compatible servers (gatehouse, moto, …), used by
//! `bench/topics.sh`. It speaks SNS's Query protocol (and SQS's JSON 1.0
//! for setting up queues) over HTTP/1.1 keep-alive, with requests built by
//! hand so the generator stays cheap beside the server it measures.
//! Requests carry a syntactically valid but unchecked SigV4 header (servers
//! without credentials accept any; moto reads the service from it).
//!
//! ```text
//! # Publish (or PublishBatch) 1 KiB messages to a topic with 3 queue
//! # subscriptions, 32 connections, 10 s; then check every queue holds
//! # every acknowledged message:
//! topic_load publish --endpoint http://127.0.0.1:9324 --queues 3 --duration 10 [--batch] [--raw]
//! # 50 HTTP subscribers in this process, Publish at 1,000/s open loop for
//! # 20 s, then wait for what was acknowledged to arrive everywhere:
//! topic_load http --subscribers 50 --rate 1000 --duration 20
//! ```
//!
//! Every mode ends with one `RESULT key=value …` line for scripts.
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Load generator for SNS-compatible servers")]
struct Cli {
    /// The server's AWS endpoint.
    #[arg(long, default_value = "http://127.0.0.1:9324", global = true)]
    endpoint: String,
    /// Message size in bytes.
    #[arg(long, default_value_t = 1024, global = true)]
    size: usize,
    /// Names are prefixed with this (runs do not share topics).
    #[arg(long, default_value = "bench", global = true)]
    name: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Publishes at full speed to a topic with queue subscriptions.
    Publish {
        #[arg(long, default_value_t = 3)]
        queues: usize,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// PublishBatch of ten instead of Publish.
        #[arg(long)]
        batch: bool,
        /// Raw message delivery (no envelope).
        #[arg(long)]
        raw: bool,
    },
    /// HTTP subscribers in this process; open-loop Publish; delivery delay
    /// and what was lost.
    Http {
        #[arg(long, default_value_t = 50)]
        subscribers: usize,
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        duration: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds to wait after publishing for deliveries to arrive.
        #[arg(long, default_value_t = 60)]
        settle: u64,
        /// Raw message delivery (no envelope, so no signature per message).
        #[arg(long)]
        raw: bool,
    },
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One keep-alive connection, reopened when the server closes it.
struct Conn {
    tx: Option<SendRequest<Full<Bytes>>>,
    authority: String,
}

impl Conn {
    fn new(endpoint: &str) -> Conn {
        Conn { tx: None, authority: endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned() }
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), Error> {
        let usable = match &mut self.tx {
            Some(tx) => !tx.is_closed() && tx.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let stream = tokio::net::TcpStream::connect(&self.authority).await?;
            stream.set_nodelay(true)?;
            let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            self.tx = Some(tx);
        }
        let tx = self.tx.as_mut().ok_or("no connection")?;
        let resp = tx.send_request(req).await?;
        let status = resp.status();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }

    /// An SNS Query call: `params` form-encoded.
    async fn sns(&mut self, params: &[(&str, &str)]) -> Result<String, Error> {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Version", "2010-03-31");
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let req = signed(Request::post("/"), &self.authority, "sns")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))?;
        let (status, body) = self.send(req).await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status != StatusCode::OK {
            return Err(format!("{}: {status}: {text}", params[0].1).into());
        }
        Ok(text)
    }

    /// An SQS JSON 1.0 call.
    async fn sqs(&mut self, action: &str, body: Value) -> Result<Value, Error> {
        let req = signed(Request::post("/"), &self.authority, "sqs")
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .body(Full::new(Bytes::from(body.to_string())))?;
        let (status, body) = self.send(req).await?;
        if status != StatusCode::OK {
            return Err(format!("{action}: {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

/// A request builder with `Host` and an unchecked SigV4 header for `service`.
fn signed(b: http::request::Builder, authority: &str, service: &str) -> http::request::Builder {
    let day = {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        format!("{y:04}{m:02}{d:02}")
    };
    b.header("host", authority).header("x-amz-date", format!("{day}T000000Z")).header(
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential=bench/{day}/us-east-1/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
            "0".repeat(64)
        ),
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// A message of `size` bytes: the send time in µs, then padding.
fn message(size: usize) -> String {
    let mut s = format!("{:020}:", micros());
    while s.len() < size {
        s.push_str(&"abcdefghijklmnopqrstuvwxyz"[..(size - s.len()).min(26)]);
    }
    s
}

/// The text of every `<tag>…</tag>` in `xml`.
fn texts<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// Latencies in µs; (p50, p99) in ms.
fn percentiles(mut v: Vec<u64>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

/// `Subscribe`, with raw message delivery or not.
async fn subscribe(
    c: &mut Conn,
    topic: &str,
    protocol: &str,
    endpoint: &str,
    raw: bool,
) -> Result<(), Error> {
    let mut params =
        vec![("Action", "Subscribe"), ("TopicArn", topic), ("Protocol", protocol), ("Endpoint", endpoint)];
    if raw {
        params
            .extend([("Attributes.entry.1.key", "RawMessageDelivery"), ("Attributes.entry.1.value", "true")]);
    }
    c.sns(&params).await.map(drop)
}

async fn create_topic(c: &mut Conn, name: &str) -> Result<String, Error> {
    let xml = c.sns(&[("Action", "CreateTopic"), ("Name", name)]).await?;
    Ok(texts(&xml, "TopicArn").first().ok_or("CreateTopic: no TopicArn")?.to_string())
}

async fn publish_mode(
    cli: &Cli,
    queues: usize,
    connections: usize,
    duration: u64,
    batch: bool,
    raw: bool,
) -> Result<(), Error> {
    let mut c = Conn::new(&cli.endpoint);
    let topic = create_topic(&mut c, &cli.name).await?;
    let mut urls = Vec::new();
    for i in 0..queues {
        let q =
            c.sqs("CreateQueue", serde_json::json!({ "QueueName": format!("{}-q{i}", cli.name) })).await?;
        let url = q["QueueUrl"].as_str().ok_or("no QueueUrl")?.to_owned();
        let attrs = c
            .sqs("GetQueueAttributes", serde_json::json!({ "QueueUrl": url, "AttributeNames": ["QueueArn"] }))
            .await?;
        let arn = attrs["Attributes"]["QueueArn"].as_str().ok_or("no QueueArn")?.to_owned();
        subscribe(&mut c, &topic, "sqs", &arn, raw).await?;
        urls.push(url);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (stop, acked, errors, endpoint, topic, size) =
            (stop.clone(), acked.clone(), errors.clone(), cli.endpoint.clone(), topic.clone(), cli.size);
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(&endpoint);
            let mut lat = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = if batch {
                    let bodies: Vec<(String, String, String, String)> = (1..=10)
                        .map(|i| {
                            let p = format!("PublishBatchRequestEntries.member.{i}");
                            (format!("{p}.Id"), format!("m{n}x{i}"), format!("{p}.Message"), message(size))
                        })
                        .collect();
                    let mut params = vec![("Action", "PublishBatch"), ("TopicArn", topic.as_str())];
                    for (ik, iv, mk, mv) in &bodies {
                        params.extend([(ik.as_str(), iv.as_str()), (mk.as_str(), mv.as_str())]);
                    }
                    c.sns(&params).await.map(|xml| texts(&xml, "MessageId").len() as u64)
                } else {
                    let m = message(size);
                    c.sns(&[("Action", "Publish"), ("TopicArn", &topic), ("Message", &m)]).await.map(|_| 1)
                };
                n += 1;
                match result {
                    Ok(k) => {
                        acked.fetch_add(k, Ordering::Relaxed);
                        lat.push(started.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("publish failed: {e}");
                        }
                    }
                }
            }
            lat
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(duration)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acked = acked.load(Ordering::Relaxed);
    // Every queue should hold every acknowledged message.
    let mut least = u64::MAX;
    for url in &urls {
        let a = c
            .sqs(
                "GetQueueAttributes",
                serde_json::json!({ "QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages"] }),
            )
            .await?;
        let n: u64 = a["Attributes"]["ApproximateNumberOfMessages"].as_str().unwrap_or("0").parse()?;
        least = least.min(n);
    }
    let (p50, p99) = percentiles(lat);
    println!(
        "RESULT published={acked} per_s={:.0} writes_per_s={:.0} p50={p50:.2} p99={p99:.2} errors={} queued_min={least} missing={}",
        acked as f64 / elapsed,
        (acked * queues as u64) as f64 / elapsed,
        errors.load(Ordering::Relaxed),
        acked.saturating_sub(least)
    );
    Ok(())
}

/// What the in-process subscribers saw: per subscriber (each behind its
/// own lock, so subscribers do not contend), message id → delay.
type Seen = Arc<Vec<Mutex<HashMap<String, u64>>>>;

/// The fields of a delivered envelope the subscribers read, borrowed from
/// the body (the generator shares the cores with the server it measures).
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "MessageId", borrow)]
    message_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "Message", borrow)]
    message: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "SubscribeURL", borrow)]
    subscribe_url: Option<std::borrow::Cow<'a, str>>,
}

async fn subscriber(i: usize, seen: Seen, endpoint: String) -> Result<String, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let (seen, endpoint) = (seen.clone(), endpoint.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (seen, endpoint) = (seen.clone(), endpoint.clone());
                    async move {
                        let header = |name: &str| req.headers().get(name).map(|v| v.as_bytes().to_vec());
                        let confirmation = header("x-amz-sns-message-type")
                            .is_some_and(|v| v == b"SubscriptionConfirmation");
                        let raw_id = header("x-amz-sns-rawdelivery")
                            .and_then(|_| header("x-amz-sns-message-id"))
                            .and_then(|id| String::from_utf8(id).ok());
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let now = micros();
                        let arrived = |id: String, msg: &str| {
                            let sent: u64 = msg.split(':').next().and_then(|t| t.parse().ok()).unwrap_or(now);
                            seen[i].lock().unwrap().entry(id).or_insert(now.saturating_sub(sent));
                        };
                        if let Some(id) = raw_id {
                            arrived(id, std::str::from_utf8(&body).unwrap_or(""));
                        } else if let Ok(env) = serde_json::from_slice::<Envelope>(&body) {
                            if confirmation {
                                let url = env.subscribe_url.unwrap_or_default().into_owned();
                                tokio::spawn(confirm(url, endpoint));
                            } else if let (Some(id), Some(msg)) = (env.message_id, env.message) {
                                arrived(id.into_owned(), &msg);
                            }
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(url)
}

/// Visits a SubscribeURL (a GET on the server's own endpoint).
async fn confirm(url: String, endpoint: String) {
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default();
    let mut c = Conn::new(&endpoint);
    let Ok(req) = signed(Request::get(path), &c.authority.clone(), "sns").body(Full::new(Bytes::new()))
    else {
        return;
    };
    let _ = c.send(req).await;
}

async fn http_mode(
    cli: &Cli,
    subscribers: usize,
    rate: u64,
    duration: u64,
    connections: usize,
    settle: u64,
    raw: bool,
) -> Result<(), Error> {
    let seen: Seen = Arc::new((0..subscribers).map(|_| Mutex::default()).collect());
    let mut c = Conn::new(&cli.endpoint);
    let topic = create_topic(&mut c, &cli.name).await?;
    for i in 0..subscribers {
        let url = subscriber(i, seen.clone(), cli.endpoint.clone()).await?;
        subscribe(&mut c, &topic, "http", &url, raw).await?;
    }
    // Wait for every subscription to be confirmed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let xml = c.sns(&[("Action", "ListSubscriptionsByTopic"), ("TopicArn", &topic)]).await?;
        if !xml.contains("PendingConfirmation") || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let unsent = Arc::new(AtomicU64::new(0));
    let total = rate * duration;
    let per_conn = (total / connections as u64).max(1);
    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for k in 0..connections {
        let (acked, errors, unsent, endpoint, topic, size) =
            (acked.clone(), errors.clone(), unsent.clone(), cli.endpoint.clone(), topic.clone(), cli.size);
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::new(&endpoint);
            let offset = interval.mul_f64(k as f64 / connections as f64);
            // A server that falls behind is cut off at 1.5 × the duration.
            let cutoff = start + Duration::from_secs_f64(duration as f64 * 1.5);
            for n in 0..per_conn {
                let at = start + offset + interval.mul_f64(n as f64);
                if tokio::time::Instant::now() > cutoff {
                    unsent.fetch_add(per_conn - n, Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep_until(at).await;
                let m = message(size);
                match c.sns(&[("Action", "Publish"), ("TopicArn", &topic), ("Message", &m)]).await {
                    Ok(xml) => {
                        if let Some(id) = texts(&xml, "MessageId").first() {
                            acked.lock().unwrap().insert(id.to_string());
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        c.tx = None;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let published_in = start.elapsed().as_secs_f64();
    let acked: HashSet<String> = std::mem::take(&mut *acked.lock().unwrap());
    let want = acked.len() * subscribers;
    let arrived = |seen: &Seen| {
        seen.iter().map(|s| s.lock().unwrap().keys().filter(|id| acked.contains(*id)).count()).sum::<usize>()
    };
    let deadline = Instant::now() + Duration::from_secs(settle);
    while arrived(&seen) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = arrived(&seen);
    let delays: Vec<u64> =
        seen.iter().flat_map(|s| s.lock().unwrap().values().copied().collect::<Vec<_>>()).collect();
    let (p50, p99) = percentiles(delays);
    println!(
        "RESULT acked={} publish_per_s={:.0} deliveries={got} expected={want} lost={} delay_p50={p50:.1} delay_p99={p99:.1} errors={} unsent={}",
        acked.len(),
        acked.len() as f64 / published_in,
        want - got.min(want),
        errors.load(Ordering::Relaxed),
        unsent.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        match cli.mode {
            Mode::Publish { queues, connections, duration, batch, raw } => {
                publish_mode(&cli, queues, connections, duration, batch, raw).await
            }
            Mode::Http { subscribers, rate, duration, connections, settle, raw } => {
                http_mode(&cli, subscribers, rate, duration, connections, settle, raw).await
            }
        }
    })
}
