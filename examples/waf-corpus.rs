//! Sends the WAF corpora (tests/waf/*.jsonl) to one or more servers, each
//! request as raw bytes on its own connection, and prints, per family, how
//! many each server refused: the accuracy half of bench/waf.sh.
//!
//!   cargo run --release --example waf-corpus -- \
//!       gatehouse=127.0.0.1:8080 modsecurity=127.0.0.1:8081 \
//!       tests/waf/attacks.jsonl tests/waf/benign.jsonl
//!
//! A refusal is any 4xx but 404 (a WAF's 403, or a 400/413/431 for a
//! request the server would not read): the request did not reach the
//! upstream. Families come from the corpus; benign requests are the
//! `benign` family, where a refusal is a false positive.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Sample {
    family: String,
    request: Vec<u8>,
}

fn load(path: &str) -> Vec<Sample> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            let (method, target) = (s("method"), s("target"));
            let mut req =
                format!("{method} {target} HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n");
            let mut framed = false;
            for h in v["headers"].as_array().into_iter().flatten() {
                let (k, val) = (h[0].as_str().unwrap_or_default(), h[1].as_str().unwrap_or_default());
                framed |=
                    k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding");
                req.push_str(&format!("{k}: {val}\r\n"));
            }
            let body = v["body"].as_str();
            if !framed && (body.is_some() || method == "POST") {
                req.push_str(&format!("Content-Length: {}\r\n", body.unwrap_or_default().len()));
            }
            req.push_str("\r\n");
            req.push_str(body.unwrap_or_default());
            Sample { family: s("family"), request: req.into_bytes() }
        })
        .collect()
}

async fn status(addr: SocketAddr, request: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr).await else { return 0 };
    if stream.write_all(request).await.is_err() {
        return 0;
    }
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let text = String::from_utf8_lossy(&head[..got]);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn refused(status: u16) -> bool {
    (400..500).contains(&status) && status != 404
}

/// Refused and total requests by family, for one server.
async fn run(addr: SocketAddr, samples: Arc<Vec<Sample>>) -> BTreeMap<String, (usize, usize)> {
    let next = Arc::new(Mutex::new(0usize));
    let counts = Arc::new(Mutex::new(BTreeMap::<String, (usize, usize)>::new()));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (next, counts, samples) = (next.clone(), counts.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(s) = samples.get(i) else { break };
                let st = status(addr, &s.request).await;
                let mut c = counts.lock().unwrap();
                let e = c.entry(s.family.clone()).or_default();
                e.0 += usize::from(refused(st));
                e.1 += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a sender");
    }
    Arc::try_unwrap(counts).expect("senders done").into_inner().unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let servers: Vec<(String, SocketAddr)> = args
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(name, addr)| (name.to_owned(), addr.parse().expect("NAME=IP:PORT")))
        .collect();
    let samples: Vec<Sample> = args.iter().filter(|a| !a.contains('=')).flat_map(|p| load(p)).collect();
    if servers.is_empty() || samples.is_empty() {
        eprintln!("usage: waf-corpus NAME=IP:PORT... CORPUS.jsonl...");
        std::process::exit(64);
    }
    let samples = Arc::new(samples);
    let mut results = Vec::new();
    for (name, addr) in &servers {
        results.push((name.clone(), run(*addr, samples.clone()).await));
    }
    print!("{:<10}", "family");
    for (name, _) in &results {
        print!(" {:>22}", format!("{name} refused"));
    }
    println!();
    let families: Vec<String> = results[0].1.keys().cloned().collect();
    let mut totals = vec![(0usize, 0usize, 0usize, 0usize); results.len()];
    for family in &families {
        print!("{family:<10}");
        for (i, (_, counts)) in results.iter().enumerate() {
            let (refused, total) = counts.get(family).copied().unwrap_or_default();
            print!(
                " {:>22}",
                format!("{refused}/{total} {:.1}%", 100.0 * refused as f64 / total.max(1) as f64)
            );
            if family == "benign" {
                totals[i].2 += refused;
                totals[i].3 += total;
            } else {
                totals[i].0 += refused;
                totals[i].1 += total;
            }
        }
        println!();
    }
    for (i, (name, _)) in results.iter().enumerate() {
        let (ar, at, br, bt) = totals[i];
        println!(
            "{name}: attacks refused {ar}/{at} ({:.2}%), benign refused {br}/{bt} ({:.2}%)",
            100.0 * ar as f64 / at.max(1) as f64,
            100.0 * br as f64 / bt.max(1) as f64
        );
    }
}
