//! Bodies stream through the gateway in both directions without being
//! buffered. Its own test binary, so peak memory is not shared with other
//! tests running in parallel.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

const MIB: usize = 1 << 20;

/// A backend that reports how many request-body bytes it has received so
/// far, frame by frame, and answers with the total.
async fn counting_backend(progress: mpsc::UnboundedSender<usize>) -> Backend {
    backend(move |req: Request<Incoming>| {
        let progress = progress.clone();
        async move {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.expect("body frame").into_data() {
                    total += data.len();
                    let _ = progress.send(total);
                }
            }
            text(200, &total.to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_reach_the_upstream_while_the_client_is_still_sending() {
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    let up = counting_backend(progress_tx).await;
    let gw = Gateway::start(&config(
        &format!("  u: {{ targets: [\"{}\"] }}", up.url),
        "  - { name: upload, path: /upload, upstream: u, max_body: 1GiB }",
    ))
    .await;

    // The client sends the next chunk only once the upstream has seen the
    // previous one. A gateway that buffered the body would deadlock here.
    let (chunks_tx, chunks_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(chunks_rx));
    let request = tokio::spawn(client().post(format!("{}/upload", gw.url)).body(body).send());
    let chunk = Bytes::from(vec![b'z'; 128 * 1024]);
    let rounds = 24;
    for i in 1..=rounds {
        chunks_tx.send(Ok(chunk.clone())).await.unwrap();
        let want = i * chunk.len();
        let wait = async { while progress.recv().await.expect("backend alive") < want {} };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("chunk {i} did not reach the upstream before the body ended"));
    }
    drop(chunks_tx);
    let resp = request.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), (rounds * chunk.len()).to_string());
}

fn tokio_stream_from<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_streams_up_and_down_in_bounded_memory() {
    const TOTAL: usize = 1024 * MIB;
    let (progress_tx, _progress) = mpsc::unbounded_channel();
    let up_counter = counting_backend(progress_tx).await;
    let down = backend(|_| async {
        let chunk = Bytes::from(vec![b'd'; MIB]);
        let frames = futures_util::stream::iter(
            (0..TOTAL / MIB).map(move |_| Ok::<_, BoxError>(Frame::data(chunk.clone()))),
        );
        Response::new(BodyExt::boxed(StreamBody::new(frames)))
    })
    .await;
    let gw = Gateway::start(&config(
        &format!("  up: {{ targets: [\"{}\"] }}\n  down: {{ targets: [\"{}\"] }}", up_counter.url, down.url),
        "  - { name: upload, path: /upload, upstream: up, max_body: 2GiB }
  - { name: download, path: /download, upstream: down }",
    ))
    .await;
    let http = client();
    let before = peak_rss();

    let chunk = Bytes::from(vec![b'u'; MIB]);
    let chunks =
        futures_util::stream::iter((0..TOTAL / MIB).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = http
        .post(format!("{}/upload", gw.url))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), TOTAL.to_string());

    let r = http.get(format!("{}/download", gw.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut received = 0usize;
    let mut stream = r.bytes_stream();
    while let Some(part) = stream.next().await {
        received += part.unwrap().len();
    }
    assert_eq!(received, TOTAL);

    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 128 * MIB as u64, "peak memory grew by {} MiB moving 2 GiB", grown / MIB as u64);
}
