//! Rate limiting and route deadlines, over real sockets: token buckets
//! (burst, refill, headers), keys, exactness across workers, trusted
//! proxies, the key cap, queue routes, timeouts and reload.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_burst_is_admitted_then_429_with_retry_after_until_the_bucket_refills() {
    let gw = Gateway::start(&format!(
        "{}throttle: {{ name: per-ip, rate: 1/s, burst: 3 }}\n",
        config("  {}", "  - { name: hello, path: /hello, respond: { body: hi } }")
    ))
    .await;
    let url = format!("{}/hello", gw.url);
    // A token comes back every second: `t` is the time until the bucket is
    // full again.
    for (remaining, full_in) in [(2, 1), (1, 2), (0, 3)] {
        let r = get(&url, &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-policy").as_deref(), Some("\"per-ip\";q=1;w=1"));
        let expected = format!("\"per-ip\";r={remaining};t={full_in}");
        assert_eq!(header(&r, "ratelimit").as_deref(), Some(expected.as_str()));
    }
    let refused = get(&url, &[]).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1"), "rounded up, never 0");
    assert_eq!(header(&refused, "ratelimit").as_deref(), Some("\"per-ip\";r=0;t=1"));
    assert_eq!(header(&refused, "ratelimit-policy").as_deref(), Some("\"per-ip\";q=1;w=1"));
    let id = header(&refused, "x-request-id").unwrap();
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["request_id"], id.as_str());

    // Waiting for time to pass is the point here.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&url, &[]).await.status(), 200);
    assert_eq!(get(&url, &[]).await.status(), 429);

    let metrics =
        client().get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap();
    let throttled = metric(&metrics, "gatehouse_throttled_requests_total{route=\"hello\",limit=\"per-ip\"}");
    assert_eq!(throttled, Some(2.0), "{metrics}");
}

#[tokio::test]
async fn limits_are_per_key_and_requests_without_the_key_share_one_bucket() {
    let gw = Gateway::start(&config(
        "  {}",
        "  - { name: api, path: /api, respond: {}, throttle: { rate: 1/h, burst: 2, key: \"header:x-api-key\" } }",
    ))
    .await;
    let url = format!("{}/api", gw.url);
    for _ in 0..2 {
        assert_eq!(get(&url, &[("x-api-key", "noisy")]).await.status(), 200);
    }
    assert_eq!(get(&url, &[("x-api-key", "noisy")]).await.status(), 429);
    // A quiet key is not affected by the noisy one.
    assert_eq!(get(&url, &[("x-api-key", "quiet")]).await.status(), 200);
    // No key: the anonymous bucket, throttled like any other.
    assert_eq!(get(&url, &[]).await.status(), 200);
    assert_eq!(get(&url, &[]).await.status(), 200);
    let r = get(&url, &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("3600"), "one token per hour");
}

#[tokio::test]
async fn several_limits_all_apply_and_each_reports_itself() {
    let gw = Gateway::start(&config(
        "  {}",
        "  - { name: api, path: /api, respond: {}, throttle: [ { name: burst, rate: 5/min }, { name: hourly, rate: 3/h } ] }",
    ))
    .await;
    let url = format!("{}/api", gw.url);
    let first = get(&url, &[]).await;
    assert_eq!(
        header(&first, "ratelimit-policy").as_deref(),
        Some("\"burst\";q=5;w=60, \"hourly\";q=3;w=3600")
    );
    assert_eq!(header(&first, "ratelimit").as_deref(), Some("\"burst\";r=4;t=12, \"hourly\";r=2;t=1200"));
    get(&url, &[]).await;
    get(&url, &[]).await;
    let refused = get(&url, &[]).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "ratelimit").as_deref(), Some("\"burst\";r=1;t=48, \"hourly\";r=0;t=1200"));
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("1200"));
}

#[tokio::test]
async fn limits_are_exact_across_four_workers() {
    let gw = Gateway::start(&format!(
        "{}workers: 4\n",
        config("  {}", "  - { name: api, path: /api, respond: {}, throttle: { rate: 1/h, burst: 40 } }")
    ))
    .await;
    let url = format!("{}/api", gw.url);
    // New connections each time, spread over the workers, all at once.
    let tasks: Vec<_> = (0..120)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let c = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
                c.get(url).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 40, "four workers must share one bucket per client");
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let routes = "  - { name: api, path: /api, respond: {}, throttle: { rate: 1/h, burst: 1 } }";
    // Untrusted peer: X-Forwarded-For is ignored, the peer is the key.
    let gw = Gateway::start(&config("  {}", routes)).await;
    let url = format!("{}/api", gw.url);
    assert_eq!(get(&url, &[("x-forwarded-for", "1.1.1.1")]).await.status(), 200);
    assert_eq!(
        get(&url, &[("x-forwarded-for", "2.2.2.2")]).await.status(),
        429,
        "a client cannot spoof its address"
    );

    // Behind a trusted proxy, the right-most untrusted address is the client.
    let gw = Gateway::start(&format!("{}trusted_proxies: [127.0.0.0/8]\n", config("  {}", routes))).await;
    let url = format!("{}/api", gw.url);
    assert_eq!(get(&url, &[("x-forwarded-for", "1.1.1.1")]).await.status(), 200);
    assert_eq!(get(&url, &[("x-forwarded-for", "2.2.2.2")]).await.status(), 200);
    // A client that prepends a forged address is still itself.
    assert_eq!(get(&url, &[("x-forwarded-for", "9.9.9.9, 1.1.1.1")]).await.status(), 429);
    // Only trusted hops: the first of them.
    assert_eq!(get(&url, &[("x-forwarded-for", "127.0.0.5")]).await.status(), 200);
    // Unreadable: the shared anonymous bucket, never a bypass.
    assert_eq!(get(&url, &[("x-forwarded-for", "junk")]).await.status(), 200);
    assert_eq!(get(&url, &[("x-forwarded-for", "more junk")]).await.status(), 429);
}

#[tokio::test]
async fn a_flood_of_distinct_keys_stays_within_max_keys() {
    let gw = Gateway::start(&format!(
        "{}trusted_proxies: [127.0.0.1]\n",
        config(
            "  {}",
            "  - { name: api, path: /api, respond: {}, throttle: { rate: 1/h, burst: 1, max_keys: 64 } }"
        )
    ))
    .await;
    let url = format!("{}/api", gw.url);
    let c = client();
    for i in 0..1000u32 {
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        let r = c.get(&url).header("x-forwarded-for", ip).send().await.unwrap();
        assert_eq!(r.status(), 200, "a new address has a full bucket");
    }
    let metrics = c.get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap();
    let keys = metric(&metrics, "gatehouse_throttle_keys{route=\"api\",limit=\"default\"}").unwrap();
    assert!(keys <= 64.0 && keys > 0.0, "{keys} keys");
    let evicted = metric(
        &metrics,
        "gatehouse_throttle_evictions_total{route=\"api\",limit=\"default\",reason=\"capacity\"}",
    )
    .unwrap();
    assert!(evicted >= 1000.0 - 64.0, "{evicted} evicted");
}

#[tokio::test]
async fn a_throttled_queue_route_enqueues_nothing() {
    let gw = start_queues(
        "queues: { jobs: {} }\nroutes:\n  - { name: submit, path: /jobs, methods: [POST], queue: jobs, throttle: { rate: 1/h, burst: 1 } }\n",
    )
    .await;
    let url = format!("{}/jobs", gw.url);
    assert_eq!(client().post(&url).body("one").send().await.unwrap().status(), 200);
    let r = client().post(&url).body("two").send().await.unwrap();
    assert_eq!(r.status(), 429);
    let sqs = sqs(&gw);
    let queue_url = sqs.get_queue_url().queue_name("jobs").send().await.unwrap().queue_url.unwrap();
    let got = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.unwrap();
    let bodies: Vec<_> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["one"]);
}

#[tokio::test]
async fn a_queue_route_times_out_on_a_stalled_body_with_408_and_closes() {
    let gw = start_queues(
        "queues: { jobs: {} }\nroutes:\n  - { name: submit, path: /jobs, methods: [POST], queue: jobs, timeout: 300ms }\n",
    )
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial").await.unwrap();
    let mut answer = Vec::new();
    // The answer, then the end of the stream: the connection is closed.
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
}

#[tokio::test]
async fn a_reload_keeps_unchanged_buckets_and_swaps_changed_ones_on_open_connections() {
    let routes = |burst: u32| {
        config(
            "  {}",
            &format!(
                "  - {{ name: api, path: /api, respond: {{}}, throttle: {{ rate: 1/h, burst: {burst} }} }}"
            ),
        )
    };
    let gw = Gateway::start(&routes(1)).await;
    let url = format!("{}/api", gw.url);
    let c = client();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 429);
    // The same limit: the client's bucket is kept.
    gw.reload(&routes(1)).await.unwrap();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 429);
    // A new limit: new buckets, on the same pooled connection.
    gw.reload(&routes(3)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    }
    assert_eq!(c.get(&url).send().await.unwrap().status(), 429);
    // `throttle: off`.
    gw.reload(&config("  {}", "  - { name: api, path: /api, respond: {}, throttle: off }")).await.unwrap();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("ratelimit").is_none());
}
