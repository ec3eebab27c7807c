//! Load generator for SQS-compatible servers (gatehouse, moto, …), used by
//! `bench/queue.sh`. It speaks the AWS JSON 1.0 protocol — what current AWS
//! SDKs send — over HTTP/1.1 keep-alive, one connection per task, with
//! requests built by hand so that the generator itself stays cheap next to
//! the server it measures on a small machine. Requests carry a syntactically
//! valid but unchecked SigV4 `Authorization` header (servers without
//! credentials accept any signature; moto uses it to find the service).
//!
//! ```text
//! # producers SendMessageBatch (10 × 1 KiB), consumers ReceiveMessage
//! # (10, long poll) + DeleteMessageBatch, for 20 s:
//! queue_load throughput --endpoint http://127.0.0.1:9324 --duration 20
//! # open-loop SendMessage at a fixed rate; a request the server held back
//! # is timed from its intended start (no coordinated omission):
//! queue_load latency --rate 2000 --duration 20
//! # fill a queue with a million 1 KiB messages:
//! queue_load fill --queue backlog --count 1000000
//! # wait until the server answers with a message on the queue, print the time:
//! queue_load ready --queue backlog --expect 1000000
//! ```
//!
//! Every mode ends with one `RESULT key=value …` line for scripts.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Load generator for SQS-compatible servers")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args, Clone)]
struct Common {
    /// The server's SQS endpoint.
    #[arg(long, default_value = "http://127.0.0.1:9324", global = true)]
    endpoint: String,
    /// Queue name (created if missing).
    #[arg(long, default_value = "bench", global = true)]
    queue: String,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024, global = true)]
    size: usize,
}

#[derive(Subcommand)]
enum Mode {
    /// Producers and consumers at full speed; end-to-end messages/s.
    Throughput {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 32)]
        producers: usize,
        /// Twice the producers by default: a consumer makes two calls
        /// (receive, delete) per batch a producer makes in one.
        #[arg(long, default_value_t = 64)]
        consumers: usize,
        /// Seconds of measured load.
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Seconds of load before measuring starts.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// ReceiveMessage WaitTimeSeconds.
        #[arg(long, default_value_t = 20)]
        wait: u32,
    },
    /// SendMessage at a fixed rate; per-call latency percentiles.
    Latency {
        #[command(flatten)]
        common: Common,
        /// Requests per second.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        duration: u64,
        /// Connections the requests are spread over.
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Send COUNT messages as fast as possible (SendMessageBatch).
    Fill {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        #[arg(long, default_value_t = 16)]
        producers: usize,
    },
    /// Poll until the queue reports at least EXPECT messages and a receive
    /// returns one (it is not deleted); print how long that took.
    Ready {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 1)]
        expect: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One keep-alive HTTP/1.1 connection speaking AWS JSON 1.0, reopened
/// when the server closes it (servers answering HTTP/1.0, such as moto's,
/// close after every response).
struct Conn {
    tx: SendRequest<Full<Bytes>>,
    authority: String,
}

async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>, Error> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(tx)
}

impl Conn {
    async fn open(endpoint: &str) -> Result<Conn, Error> {
        let authority = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
        Ok(Conn { tx: connect(&authority).await?, authority })
    }

    /// Calls `action`; Ok(answer) for 200, Err(message) otherwise.
    async fn call(&mut self, action: &str, body: String) -> Result<Value, Error> {
        Ok(serde_json::from_slice(&self.call_raw(action, body).await?)?)
    }

    /// Calls `action`; Ok(raw JSON answer) for 200, Err(message) otherwise.
    async fn call_raw(&mut self, action: &str, body: String) -> Result<Bytes, Error> {
        let date = amz_date();
        let req = Request::post("/")
            .header("host", &self.authority)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("x-amz-date", &date)
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=bench/{}/us-east-1/sqs/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
                    &date[..8],
                    "0".repeat(64)
                ),
            )
            .body(Full::new(Bytes::from(body)))?;
        if self.tx.is_closed() || self.tx.ready().await.is_err() {
            self.tx = connect(&self.authority).await?;
            self.tx.ready().await?;
        }
        let resp = self.tx.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if status != StatusCode::OK {
            return Err(format!("{action}: {status}: {}", String::from_utf8_lossy(&bytes)).into());
        }
        Ok(bytes)
    }
}

fn amz_date() -> String {
    // Good enough for a header nobody verifies: derived from the Unix time.
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Howard Hinnant's days → (year, month, day).
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

fn micros_since_epoch() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// Appends a body of `size` bytes (at least 21) to `out`: the send time in
/// µs (for end-to-end latency), then printable padding that needs no JSON
/// escaping.
fn push_body(out: &mut String, size: usize) {
    use std::fmt::Write;
    let start = out.len();
    let _ = write!(out, "{:020}:", micros_since_epoch());
    let mut left = size.saturating_sub(out.len() - start);
    while left > 0 {
        let n = left.min(PADDING.len());
        out.push_str(&PADDING[..n]);
        left -= n;
    }
}

/// Printable padding for bodies, copied in blocks: building bodies byte by
/// byte cost the generator an eighth of its CPU, CPU the server under test
/// shares on a small machine.
const PADDING: &str = concat!(
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
);

fn body(size: usize) -> String {
    let mut s = String::with_capacity(size.max(21));
    push_body(&mut s, size);
    s
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serialises"));
}

async fn queue_url(endpoint: &str, name: &str) -> Result<String, Error> {
    let mut c = Conn::open(endpoint).await?;
    let r = c.call("CreateQueue", json!({ "QueueName": name }).to_string()).await?;
    Ok(r["QueueUrl"].as_str().ok_or("CreateQueue: no QueueUrl")?.to_owned())
}

/// Latencies in µs.
#[derive(Default)]
struct Samples(Vec<u32>);

impl Samples {
    fn add(&mut self, since: Instant) {
        self.0.push(since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
    fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }
    /// (p50, p99, max) in milliseconds.
    fn percentiles(&mut self) -> (f64, f64, f64) {
        if self.0.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        self.0.sort_unstable();
        let at = |q: f64| {
            let i = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
            f64::from(self.0[i]) / 1000.0
        };
        (at(0.50), at(0.99), f64::from(*self.0.last().unwrap()) / 1000.0)
    }
}

/// `SendMessageBatch` with ten bodies, written directly (the hot path of
/// the generator; `json!` costs more than the server's parsing of it).
fn send_batch_body(url: &str, size: usize) -> String {
    let mut out = String::with_capacity(url.len() + 10 * (size + 40) + 40);
    out.push_str("{\"QueueUrl\":");
    push_json_str(&mut out, url);
    out.push_str(",\"Entries\":[");
    for i in 0..10 {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"Id\":\"{i}\",\"MessageBody\":\""));
        push_body(&mut out, size);
        out.push_str("\"}");
    }
    out.push_str("]}");
    out
}

/// The parts of a batch answer the generator checks.
#[derive(Deserialize)]
struct BatchAnswer {
    #[serde(rename = "Successful", default)]
    successful: Vec<serde::de::IgnoredAny>,
    #[serde(rename = "Failed", default)]
    failed: Vec<Value>,
}

fn check_batch(action: &str, raw: &[u8], expect: usize) -> Result<(), Error> {
    let r: BatchAnswer = serde_json::from_slice(raw)?;
    if !r.failed.is_empty() || r.successful.len() != expect {
        return Err(format!(
            "{action}: {} succeeded, {} failed: {}",
            r.successful.len(),
            r.failed.len(),
            String::from_utf8_lossy(raw)
        )
        .into());
    }
    Ok(())
}

/// The parts of a `ReceiveMessage` answer the generator uses, borrowed.
#[derive(Deserialize)]
struct Received<'a> {
    #[serde(rename = "Messages", default, borrow)]
    messages: Vec<ReceivedMessage<'a>>,
}

#[derive(Deserialize)]
struct ReceivedMessage<'a> {
    #[serde(rename = "ReceiptHandle", borrow)]
    receipt_handle: std::borrow::Cow<'a, str>,
    #[serde(rename = "Body", borrow)]
    body: std::borrow::Cow<'a, str>,
}

/// Counters shared by the tasks of a run.
#[derive(Default)]
struct Counters {
    measuring: AtomicBool,
    stop: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    deleted: AtomicU64,
    errors: AtomicU64,
}

async fn throughput(
    c: Common,
    producers: usize,
    consumers: usize,
    duration: u64,
    warmup: u64,
    wait: u32,
) -> Result<(), Error> {
    let url = Arc::new(queue_url(&c.endpoint, &c.queue).await?);
    let counters = Arc::new(Counters::default());
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (c, url, k) = (c.clone(), url.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&c.endpoint).await?;
            let mut send = Samples::default();
            while !k.stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = conn.call_raw("SendMessageBatch", send_batch_body(&url, c.size)).await;
                match r.and_then(|r| check_batch("SendMessageBatch", &r, 10)) {
                    Ok(()) if k.measuring.load(Ordering::Relaxed) => {
                        send.add(t);
                        k.sent.fetch_add(10, Ordering::Relaxed);
                    }
                    Ok(()) => {}
                    Err(e) => {
                        eprintln!("{e}");
                        k.errors.fetch_add(1, Ordering::Relaxed);
                        conn = Conn::open(&c.endpoint).await?;
                    }
                }
            }
            Ok::<_, Error>((send, Samples::default(), Samples::default(), Samples::default()))
        }));
    }
    for _ in 0..consumers {
        let (c, url, k) = (c.clone(), url.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&c.endpoint).await?;
            let (mut recv, mut del, mut e2e) = (Samples::default(), Samples::default(), Samples::default());
            let receive =
                json!({ "QueueUrl": *url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": wait }).to_string();
            while !k.stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let raw = match conn.call_raw("ReceiveMessage", receive.clone()).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("{e}");
                        k.errors.fetch_add(1, Ordering::Relaxed);
                        conn = Conn::open(&c.endpoint).await?;
                        continue;
                    }
                };
                let messages = serde_json::from_slice::<Received>(&raw)?.messages;
                let measuring = k.measuring.load(Ordering::Relaxed);
                if messages.is_empty() {
                    continue;
                }
                if measuring {
                    recv.add(t);
                    k.received.fetch_add(messages.len() as u64, Ordering::Relaxed);
                }
                let now = micros_since_epoch();
                let mut body = String::with_capacity(url.len() + messages.len() * 200 + 40);
                body.push_str("{\"QueueUrl\":");
                push_json_str(&mut body, &url);
                body.push_str(",\"Entries\":[");
                for (i, m) in messages.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(&format!("{{\"Id\":\"{i}\",\"ReceiptHandle\":"));
                    push_json_str(&mut body, &m.receipt_handle);
                    body.push('}');
                    let sent = m.body.get(..20).and_then(|t| t.parse::<u64>().ok());
                    if let (true, Some(sent)) = (measuring, sent) {
                        e2e.0.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                    }
                }
                body.push_str("]}");
                let t = Instant::now();
                match conn.call_raw("DeleteMessageBatch", body).await {
                    Ok(r) => {
                        // A failed entry (a receipt made stale by a
                        // visibility timeout: at-least-once delivery) is
                        // counted, not fatal.
                        let ok = match serde_json::from_slice::<BatchAnswer>(&r) {
                            Ok(a) => {
                                if !a.failed.is_empty() {
                                    eprintln!("DeleteMessageBatch: {} entries failed", a.failed.len());
                                    k.errors.fetch_add(1, Ordering::Relaxed);
                                }
                                a.successful.len()
                            }
                            Err(e) => {
                                eprintln!("DeleteMessageBatch: unreadable answer: {e}");
                                k.errors.fetch_add(1, Ordering::Relaxed);
                                0
                            }
                        };
                        if measuring {
                            del.add(t);
                            k.deleted.fetch_add(ok as u64, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        k.errors.fetch_add(1, Ordering::Relaxed);
                        conn = Conn::open(&c.endpoint).await?;
                    }
                }
            }
            Ok::<_, Error>((Samples::default(), recv, del, e2e))
        }));
    }
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    counters.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(duration)).await;
    counters.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    counters.stop.store(true, Ordering::Relaxed);
    // Consumers may sit in a long poll; the counts are taken already.
    let (mut send, mut recv, mut del, mut e2e) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait) + 5);
    for t in tasks {
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(Ok((s, r, d, e)))) => {
                send.merge(s);
                recv.merge(r);
                del.merge(d);
                e2e.merge(e);
            }
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {}
        }
    }
    let rate = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 / elapsed;
    let (s50, s99, _) = send.percentiles();
    let (r50, r99, _) = recv.percentiles();
    let (d50, d99, _) = del.percentiles();
    let (e50, e99, _) = e2e.percentiles();
    println!(
        "sent {:.0} msg/s, received {:.0} msg/s, deleted {:.0} msg/s over {elapsed:.1} s; errors {}",
        rate(&counters.sent),
        rate(&counters.received),
        rate(&counters.deleted),
        counters.errors.load(Ordering::Relaxed)
    );
    println!("SendMessageBatch   p50 {s50:.2} ms  p99 {s99:.2} ms  ({} calls)", send.0.len());
    println!("ReceiveMessage     p50 {r50:.2} ms  p99 {r99:.2} ms  ({} calls with messages)", recv.0.len());
    println!("DeleteMessageBatch p50 {d50:.2} ms  p99 {d99:.2} ms  ({} calls)", del.0.len());
    println!("send → receive     p50 {e50:.2} ms  p99 {e99:.2} ms");
    println!(
        "RESULT sent={:.0} received={:.0} deleted={:.0} send_p50={s50:.2} send_p99={s99:.2} \
         recv_p50={r50:.2} recv_p99={r99:.2} del_p50={d50:.2} del_p99={d99:.2} e2e_p50={e50:.2} \
         e2e_p99={e99:.2} errors={}",
        rate(&counters.sent),
        rate(&counters.received),
        rate(&counters.deleted),
        counters.errors.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn latency(c: Common, rate: u64, duration: u64, connections: usize) -> Result<(), Error> {
    let url = Arc::new(queue_url(&c.endpoint, &c.queue).await?);
    let rate = rate.max(1);
    let total = rate * duration;
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    // A server that cannot keep up would stretch the run without bound:
    // requests not started by this time are counted as unsent.
    let give_up = start + Duration::from_secs(duration + (duration / 2).max(5));
    let errors = Arc::new(AtomicU64::new(0));
    let unsent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0..connections as u64 {
        let (c, url, errors, unsent) = (c.clone(), url.clone(), errors.clone(), unsent.clone());
        let n = connections as u64;
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&c.endpoint).await?;
            let mut samples = Samples::default();
            // Request i is due at start + i·interval; this task takes i ≡ k (mod n).
            let mut i = k;
            // When this connection's previous request finished.
            let mut free_at = tokio::time::Instant::now();
            while i < total {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                if tokio::time::Instant::now() > give_up {
                    unsent.fetch_add((total - i).div_ceil(n), Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep_until(due).await;
                // A request held back by the server (its connection still
                // busy at the due time) is timed from when it was due, so
                // that a stall counts for every request it delays (no
                // coordinated omission). One the connection was free for is
                // timed from when it is sent: tokio's timer wakes up to a
                // millisecond late, and that lateness is the generator's,
                // not the server's.
                let from = if free_at > due { due } else { tokio::time::Instant::now() };
                let body = json!({ "QueueUrl": *url, "MessageBody": body(c.size) }).to_string();
                let answer = conn.call("SendMessage", body).await;
                free_at = tokio::time::Instant::now();
                match answer {
                    Ok(_) => samples.add(from.into_std()),
                    Err(e) => {
                        eprintln!("{e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                        conn = Conn::open(&c.endpoint).await?;
                    }
                }
                i += n;
            }
            Ok::<_, Error>(samples)
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        all.merge(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = all.0.len();
    let (p50, p99, max) = all.percentiles();
    let unsent = unsent.load(Ordering::Relaxed);
    println!(
        "SendMessage at {rate}/s: {n} calls in {elapsed:.1} s ({:.0}/s achieved), \
         p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, errors {}, unsent {unsent}{}",
        n as f64 / elapsed,
        errors.load(Ordering::Relaxed),
        if unsent > 0 { " (the server could not sustain the rate)" } else { "" }
    );
    println!(
        "RESULT rate={rate} achieved={:.0} p50={p50:.2} p99={p99:.2} max={max:.2} errors={} unsent={unsent}",
        n as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn fill(c: Common, count: u64, producers: usize) -> Result<(), Error> {
    let url = Arc::new(queue_url(&c.endpoint, &c.queue).await?);
    let batches = Arc::new(AtomicU64::new(count.div_ceil(10)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (c, url, batches) = (c.clone(), url.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&c.endpoint).await?;
            while batches.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1)).is_ok() {
                let r = conn.call_raw("SendMessageBatch", send_batch_body(&url, c.size)).await?;
                check_batch("SendMessageBatch", &r, 10)?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let sent = count.div_ceil(10) * 10;
    println!("sent {sent} messages in {secs:.1} s ({:.0} msg/s)", sent as f64 / secs);
    println!("RESULT sent={sent} seconds={secs:.2} rate={:.0}", sent as f64 / secs);
    Ok(())
}

async fn ready(c: Common, expect: u64, timeout: u64) -> Result<(), Error> {
    let started = Instant::now();
    let give_up = started + Duration::from_secs(timeout);
    loop {
        if Instant::now() > give_up {
            return Err(format!("not ready after {timeout} s").into());
        }
        match probe(&c, expect).await {
            Ok(true) => break,
            Ok(false) | Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("ready after {secs:.3} s");
    println!("RESULT ready={secs:.3}");
    Ok(())
}

async fn probe(c: &Common, expect: u64) -> Result<bool, Error> {
    let mut conn = Conn::open(&c.endpoint).await?;
    let url = conn.call("GetQueueUrl", json!({ "QueueName": c.queue }).to_string()).await?;
    let url = url["QueueUrl"].as_str().ok_or("no QueueUrl")?.to_owned();
    let attrs = json!({ "QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages"] });
    let r = conn.call("GetQueueAttributes", attrs.to_string()).await?;
    let n: u64 = r["Attributes"]["ApproximateNumberOfMessages"].as_str().unwrap_or("0").parse()?;
    if n < expect {
        return Ok(false);
    }
    // Visibility 0: the message stays available for whoever comes next.
    let recv = json!({ "QueueUrl": url, "MaxNumberOfMessages": 1, "VisibilityTimeout": 0 });
    let r = conn.call("ReceiveMessage", recv.to_string()).await?;
    Ok(r.get("Messages").and_then(Value::as_array).is_some_and(|m| !m.is_empty()))
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        match cli.mode {
            Mode::Throughput { common, producers, consumers, duration, warmup, wait } => {
                throughput(common, producers, consumers, duration, warmup, wait).await
            }
            Mode::Latency { common, rate, duration, connections } => {
                latency(common, rate, duration, connections).await
            }
            Mode::Fill { common, count, producers } => fill(common, count, producers).await,
            Mode::Ready { common, expect, timeout } => ready(common, expect, timeout).await,
        }
    })
}
