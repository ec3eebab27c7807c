//! Runs WAF rules over a corpus of requests, without a server, and prints
//! each request the rules would block (or, with `--pass`, let through):
//! which rule matched which value, and the value after the rule's
//! transforms. For tuning a rule set against traffic you have.
//!
//!   cargo run --example waf-check -- waf-rules tests/waf/benign.jsonl
//!   cargo run --example waf-check -- waf-rules tests/waf/attacks.jsonl --pass
//!
//! The corpus is JSON lines as tests/waf/make_corpus.py writes them:
//! `{"id", "method", "target", "headers": [[name, value]...], "body"}`.

use std::path::PathBuf;
use std::sync::Arc;

use gatehouse::config::waf::{load_rules, OverLimit, WafConfig, WafMode};
use gatehouse::config::KeyPath;
use gatehouse::middleware::waf::inspect::{self, Inspected};
use gatehouse::middleware::waf::transform;
use gatehouse::middleware::waf::{Policy, RuleSet};

/// The allocator gatehouse itself runs with, so `--time` measures what a
/// server pays.
#[global_allocator]
static ALLOCATOR: gatehouse::alloc::Allocator = gatehouse::alloc::Allocator;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(rules), Some(corpus)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: waf-check RULE_DIR CORPUS.jsonl [--pass] [--paranoia N] [--time [--evaluations N]]"
        );
        std::process::exit(64);
    };
    let show_passed = args.iter().any(|a| a == "--pass");
    let timing = args.iter().any(|a| a == "--time");
    let paranoia =
        args.iter().position(|a| a == "--paranoia").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(1);
    let specs = load_rules(&PathBuf::from(rules)).unwrap_or_else(|problems| {
        for p in problems {
            eprintln!(
                "{}:{:?}: {}: {}",
                p.file.as_deref().map_or("?".into(), |f| f.display().to_string()),
                p.location,
                p.path,
                p.message
            );
        }
        std::process::exit(64);
    });
    let set = Arc::new(RuleSet::compile(specs).expect("the rules compile"));
    let top = WafConfig {
        rules: rules.into(),
        mode: WafMode::Block,
        anomaly_threshold: 5,
        paranoia,
        body_limit: 128 * 1024,
        body_over_limit: OverLimit::InspectPrefix,
        at: KeyPath::root(),
    };
    let policy = Policy::new(set.clone(), &top, None, 1);
    let text = std::fs::read_to_string(corpus).expect("the corpus reads");
    if timing {
        let evaluations =
            args.iter().position(|a| a == "--evaluations").and_then(|i| args.get(i + 1)?.parse().ok());
        time(&policy, &text, evaluations.unwrap_or(20_000));
        return;
    }
    let (mut total, mut blocked) = (0, 0);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let mut req = http::Request::builder().method(v["method"].as_str().unwrap_or("GET"));
        req = req.uri(v["target"].as_str().unwrap_or("/"));
        // What tests/waf.rs sends with every request.
        req = req.header("host", "shop.example.com");
        for h in v["headers"].as_array().into_iter().flatten() {
            req = req.header(h[0].as_str().unwrap_or_default(), h[1].as_str().unwrap_or_default());
        }
        let Ok(req) = req.body(()) else {
            println!("{}: not a request gatehouse would read", v["id"]);
            continue;
        };
        let body = v["body"].as_str().map(str::as_bytes);
        let (parts, ()) = req.into_parts();
        let inspected = Inspected::new((&parts.method, &parts.uri, &parts.headers), parts.uri.path(), body);
        let verdict = policy.evaluate(&inspected);
        total += 1;
        blocked += usize::from(verdict.blocked);
        if verdict.blocked == show_passed {
            continue;
        }
        println!("{} score {}", v["id"].as_str().unwrap_or("?"), verdict.score);
        for hit in &verdict.hits {
            let rule = &set.rules[hit.rule];
            let mut shown = String::new();
            for item in inspected.items() {
                if item.name() != hit.target || !shown.is_empty() {
                    continue;
                }
                let kinds = [Some(item.kind), item.name_kind()];
                let raw = kinds.iter().flatten().find_map(|&k| {
                    let covered = rule.targets.iter().any(|t| inspect::covers(t, k, item));
                    covered.then(|| {
                        if k == item.kind {
                            item.bytes.to_vec()
                        } else {
                            item.key.as_bytes().to_vec()
                        }
                    })
                });
                if let Some(raw) = raw {
                    let t = transform::apply(&rule.transforms, &raw);
                    shown = String::from_utf8_lossy(&t).chars().take(160).collect();
                }
            }
            println!("  {} {} @ {}: {shown:?}", rule.id, rule.message, hit.target);
        }
    }
    println!("{blocked} of {total} blocked");
}

/// `--time [--evaluations N]`: how long evaluating the corpus takes, per
/// request (parsing included, as the layer does it), over about N
/// evaluations (20,000; more for a profile).
fn time(policy: &Policy, corpus: &str, evaluations: usize) {
    let requests: Vec<(http::request::Parts, Option<String>)> = corpus
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let mut req = http::Request::builder().method(v["method"].as_str()?).uri(v["target"].as_str()?);
            req = req.header("host", "shop.example.com");
            for h in v["headers"].as_array()? {
                req = req.header(h[0].as_str()?, h[1].as_str()?);
            }
            let (parts, ()) = req.body(()).ok()?.into_parts();
            Some((parts, v["body"].as_str().map(str::to_owned)))
        })
        .collect();
    let rounds = (evaluations / requests.len().max(1)).max(5) as u32;
    let mut blocked = 0;
    let mut pass = || {
        let start = std::time::Instant::now();
        for (parts, body) in &requests {
            let body = body.as_deref().map(str::as_bytes);
            let verdict = policy.inspect((&parts.method, &parts.uri, &parts.headers), parts.uri.path(), body);
            blocked += usize::from(verdict.blocked);
        }
        start.elapsed()
    };
    // The first pass meets every value for the first time; later ones find
    // the short values no rule matched in the route's clean-value cache.
    let first = pass() / requests.len() as u32;
    let start = std::time::Instant::now();
    for _ in 1..rounds {
        pass();
    }
    let per = start.elapsed() / ((rounds - 1) * requests.len() as u32);
    println!("first pass: {first:?} per request");
    println!("{} requests x {rounds}: {per:?} per request ({blocked} blocked)", requests.len());
}
