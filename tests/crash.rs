//! Crash safety: the gatehouse binary is killed with SIGKILL in the middle
//! of concurrent sends and deletes, restarted on the same data, several
//! times. Every send it acknowledged must still be there, unless its
//! deletion was acknowledged too, and no acknowledged deletion may come
//! back.

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const CYCLES: usize = 3;

struct Running {
    child: tokio::process::Child,
    client: aws_sdk_sqs::Client,
    url: String,
}

async fn launch(dir: &std::path::Path) -> Running {
    let config = dir.join("routes.yaml");
    std::fs::write(
        &config,
        "listen:\n  gateway: { bind: \"127.0.0.1:0\" }\n  admin: off\n  aws: { bind: \"127.0.0.1:0\" }\nlog: { format: json, access: false }\nstorage: { path: data, sync: full }\nqueues:\n  crash: { visibility_timeout: 60s }\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "-c", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("gatehouse exited");
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        if log["message"].as_str().is_some_and(|m| m.starts_with("SQS-compatible API")) {
            break log["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    // Keep draining the log so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = sqs_at(addr, "AKID", "secret");
    let url = client.get_queue_url().queue_name("crash").send().await.unwrap().queue_url.unwrap();
    Running { child, client, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_no_acknowledged_message_and_resurrects_no_deleted_one() {
    let dir = tempfile::tempdir().unwrap();
    let acked_sends: Arc<Mutex<HashSet<String>>> = Arc::default();
    let acked_deletes: Arc<Mutex<HashSet<String>>> = Arc::default();
    // Deletes sent, acknowledged or not: an unacknowledged one may have
    // been applied just before the kill.
    let tried_deletes: Arc<Mutex<HashSet<String>>> = Arc::default();

    for cycle in 0..CYCLES {
        let mut run = launch(dir.path()).await;
        let mut tasks = Vec::new();
        for sender in 0..6 {
            let (client, url, acked) = (run.client.clone(), run.url.clone(), acked_sends.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let body = format!("c{cycle}-s{sender}-{n}");
                    match client.send_message().queue_url(&url).message_body(&body).send().await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(body);
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        for _ in 0..2 {
            let (client, url, acked) = (run.client.clone(), run.url.clone(), acked_deletes.clone());
            let tried = tried_deletes.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok(got) =
                        client.receive_message().queue_url(&url).max_number_of_messages(10).send().await
                    else {
                        return;
                    };
                    for m in got.messages() {
                        tried.lock().unwrap().insert(m.body().unwrap().to_owned());
                        let ok = client
                            .delete_message()
                            .queue_url(&url)
                            .receipt_handle(m.receipt_handle().unwrap())
                            .send()
                            .await;
                        match ok {
                            Ok(_) => {
                                acked.lock().unwrap().insert(m.body().unwrap().to_owned());
                            }
                            Err(_) => return,
                        }
                    }
                }
            }));
        }
        // Let the load run, then kill at an arbitrary moment.
        tokio::time::sleep(Duration::from_millis(400 + fastrand::u64(..600))).await;
        run.child.start_kill().unwrap();
        let status = run.child.wait().await.unwrap();
        assert!(!status.success(), "killed, not exited");
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    // Restart once more and take everything that is left. After a restart
    // nothing is in flight, so the count is of visible messages only; it
    // was committed with the messages and must match what is there.
    let mut run = launch(dir.path()).await;
    let counted: usize =
        queue_attribute(&run.client, &run.url, QueueAttributeName::ApproximateNumberOfMessages)
            .await
            .parse()
            .unwrap();
    let mut remaining = HashSet::new();
    loop {
        let got = run
            .client
            .receive_message()
            .queue_url(&run.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            break;
        }
        for m in got.messages() {
            remaining.insert(m.body().unwrap().to_owned());
        }
    }
    run.child.start_kill().unwrap();
    assert_eq!(counted, remaining.len(), "the count after the last restart");

    let sends = acked_sends.lock().unwrap();
    let deletes = acked_deletes.lock().unwrap();
    let tried = tried_deletes.lock().unwrap();
    assert!(sends.len() > 100, "the load ran ({} acknowledged sends)", sends.len());
    assert!(!deletes.is_empty(), "deletes ran");
    let lost: Vec<&String> =
        sends.iter().filter(|b| !tried.contains(*b) && !remaining.contains(*b)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    let resurrected: Vec<&String> = deletes.iter().filter(|b| remaining.contains(*b)).collect();
    assert!(
        resurrected.is_empty(),
        "{} deleted messages came back, e.g. {:?}",
        resurrected.len(),
        resurrected.iter().take(5).collect::<Vec<_>>()
    );
    eprintln!(
        "crash test: {CYCLES} SIGKILLs, {} acknowledged sends, {} acknowledged deletes, {} left, none lost or resurrected",
        sends.len(),
        deletes.len(),
        remaining.len()
    );
}
