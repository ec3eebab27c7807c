//! Test harness: gatehouse in-process on port 0, backends that tests
//! program, certificates made with rcgen, and clients.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use gatehouse::app::{self, Gatehouse};
use gatehouse::config::{Config, ConfigError};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A gatehouse serving a config written into its own temporary directory.
pub struct Gateway {
    pub gh: Option<Gatehouse>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub url: String,
}

impl Gateway {
    pub async fn start(yaml: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), yaml).await
    }

    /// Starts with `yaml` in `dir` (which may already hold certificates).
    pub async fn start_in(dir: tempfile::TempDir, yaml: &str) -> Self {
        init();
        let file = dir.path().join("routes.yaml");
        std::fs::write(&file, yaml).unwrap();
        let config = Config::load(&file).unwrap_or_else(|e| panic!("test config rejected:\n{e}"));
        let gh = app::start(config).await.unwrap_or_else(|e| panic!("gatehouse did not start:\n{e}"));
        let addr = gh.gateway_addrs[0];
        Self { gh: Some(gh), dir, addr, url: format!("http://{addr}") }
    }

    pub fn gh(&self) -> &Gatehouse {
        self.gh.as_ref().unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Rewrites routes.yaml and reloads it, as SIGHUP does.
    pub async fn reload(&self, yaml: &str) -> Result<(), ConfigError> {
        let file = self.path("routes.yaml");
        std::fs::write(&file, yaml).unwrap();
        let config = Config::load(&file)?;
        self.gh().reload(config).await
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.gh().admin_addr.expect("admin listener"))
    }

    pub async fn shutdown(&mut self) -> bool {
        self.gh.take().unwrap().shutdown().await
    }
}

/// A backend HTTP server (HTTP/1.1 and h2c) answering with a closure.
pub struct Backend {
    pub addr: SocketAddr,
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting and closes the listener (open connections stay).
    pub fn stop(&self) {
        self.task.abort();
    }
}

pub async fn backend<F, Fut>(handler: F) -> Backend
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    backend_on(listener, handler)
}

pub fn backend_on<F, Fut>(listener: TcpListener, handler: F) -> Backend
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let handler = Arc::new(handler);
    let counter = hits.clone();
    let accepted = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            accepted.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend { addr, url: format!("http://{addr}"), hits, connections, task }
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed()
}

pub fn text(status: u16, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_owned()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// A backend that answers `name` with status 200 on every path.
pub async fn named(name: &'static str) -> Backend {
    backend(move |_| async move { text(200, name) }).await
}

/// A backend that describes the request it received as JSON.
pub async fn echo() -> Backend {
    backend(|req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_str().unwrap_or("?").to_owned())))
            .collect();
        let json = serde_json::json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body_len": body.len(),
        });
        let mut r = Response::new(full(serde_json::to_vec(&json).unwrap()));
        r.headers_mut().insert("content-type", "application/json".parse().unwrap());
        r
    })
    .await
}

/// An address where nothing listens.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A plain HTTP client that does not retry or pool across tests.
pub fn client() -> reqwest::Client {
    init();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A certificate authority for tests.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub cert_pem: String,
    pub cert_der: rustls_pki_types::CertificateDer<'static>,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: rustls_pki_types::CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert_pem: cert.pem(), cert_der: cert.der().clone(), issuer: rcgen::Issuer::new(params, key) }
    }

    /// A server certificate for `names`.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().cloned().unwrap_or_default());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    /// A client certificate (for mTLS).
    pub fn client_leaf(&self, name: &str) -> Leaf {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("ca.pem"), &self.cert_pem).unwrap();
    }

    /// A rustls client config trusting this CA, offering h2 and http/1.1.
    pub fn client_config(&self, client_cert: Option<&Leaf>) -> rustls::ClientConfig {
        init();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let mut config = match client_cert {
            None => builder.with_no_client_auth(),
            Some(leaf) => {
                use rustls_pki_types::pem::PemObject;
                let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
                builder.with_client_auth_cert(vec![leaf.der.clone()], key).unwrap()
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    /// A reqwest client trusting this CA that resolves `names` to `addr`.
    pub fn https_client(
        &self,
        names: &[&str],
        addr: SocketAddr,
        client_cert: Option<&Leaf>,
    ) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured(self.client_config(client_cert))
            .tls_info(true);
        for n in names {
            b = b.resolve(n, addr);
        }
        b.build().unwrap()
    }
}

impl Leaf {
    pub fn write(&self, dir: &Path, stem: &str) {
        std::fs::write(dir.join(format!("{stem}.pem")), &self.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{stem}-key.pem")), &self.key_pem).unwrap();
    }
}

/// Peak resident set size of this process, in bytes (Linux).
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Waits until `check` holds, looking every 20ms for up to 10s. For state
/// that only shows from outside (health checks, admin endpoints).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Reads one request head (through its blank line) from `s`, keeping what
/// follows it in `seen` for the next call. `None` at the end of the stream.
pub async fn read_request_head(s: &mut tokio::net::TcpStream, seen: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 8192];
    loop {
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..i + 4]).into_owned();
            seen.drain(..i + 4);
            return Some(head);
        }
        let n = s.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

/// An upstream whose connections answer one request with `ok` (claiming
/// keep-alive) and then close: at once, or, with `wait_for_next`, only once
/// the next request has arrived (which is dropped unanswered). Either way
/// a pooled connection to it goes stale.
pub async fn one_answer_upstream(wait_for_next: bool) -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                if read_request_head(&mut s, &mut seen).await.is_none() {
                    return;
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                if wait_for_next {
                    let _ = read_request_head(&mut s, &mut seen).await;
                }
            });
        }
    });
    addr
}

/// A config with gateway and admin on port 0, access log off, and the given
/// `upstreams:` and `routes:` bodies (already indented by two spaces).
pub fn config(upstreams: &str, routes: &str) -> String {
    format!(
        "listen:\n  gateway: {{ bind: \"127.0.0.1:0\" }}\n  admin: {{ bind: \"127.0.0.1:0\" }}\n  aws: off\nlog: {{ access: false }}\nupstreams:\n{upstreams}\nroutes:\n{routes}\n"
    )
}

/// The value of one sample in a Prometheus text exposition.
pub fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The admin listener's `/metrics` text.
pub async fn metrics_text(gw: &Gateway) -> String {
    let url = format!("http://{}/metrics", gw.gh().admin_addr.expect("admin listener"));
    client().get(url).send().await.unwrap().text().await.unwrap()
}

/// A gatehouse with queues: the AWS listener and admin on port 0, storage
/// in its own directory, and `extra` YAML appended (queues, routes...).
pub fn queue_config(extra: &str) -> String {
    format!(
        "listen:\n  gateway: {{ bind: \"127.0.0.1:0\" }}\n  admin: {{ bind: \"127.0.0.1:0\" }}\n  aws: {{ bind: \"127.0.0.1:0\" }}\nworkers: 2\nlog: {{ access: false }}\n{extra}\n"
    )
}

/// A gatehouse started on [`queue_config`]`(extra)`.
pub async fn start_queues(extra: &str) -> Gateway {
    Gateway::start(&queue_config(extra)).await
}

/// `CreateQueue` with attributes; the queue URL.
pub async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    attrs: &[(aws_sdk_sqs::types::QueueAttributeName, &str)],
) -> String {
    let mut req = client.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), *v);
    }
    req.send().await.unwrap().queue_url.unwrap()
}

/// An SQS client (the real `aws-sdk-sqs`) for a gatehouse's AWS listener.
pub fn sqs(gw: &Gateway) -> aws_sdk_sqs::Client {
    sqs_at(gw.gh().aws_addr.expect("aws listener"), "AKIDTEST", "secret")
}

pub fn sqs_at(addr: SocketAddr, key: &str, secret: &str) -> aws_sdk_sqs::Client {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(key, secret, None, None, "test"))
        .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
        .http_client(http)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// The service error code of an SDK error (e.g. `QueueDoesNotExist`).
pub fn sqs_code<E, R>(err: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata,
{
    use aws_sdk_sqs::error::ProvideErrorMetadata;
    err.code().unwrap_or("(no code)").to_owned()
}

/// One attribute of a queue, as `GetQueueAttributes` answers it.
pub async fn queue_attribute(
    client: &aws_sdk_sqs::Client,
    url: &str,
    name: aws_sdk_sqs::types::QueueAttributeName,
) -> String {
    let out =
        client.get_queue_attributes().queue_url(url).attribute_names(name.clone()).send().await.unwrap();
    out.attributes().unwrap()[&name].clone()
}

/// An SNS client (the real `aws-sdk-sns`) for a gatehouse's AWS listener.
pub fn sns(gw: &Gateway) -> aws_sdk_sns::Client {
    let addr = gw.gh().aws_addr.expect("aws listener");
    let config = aws_sdk_sns::Config::builder()
        .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
        .region(aws_sdk_sns::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(aws_sdk_sns::config::Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_sns::Client::from_conf(config)
}

/// The service error code of an SNS SDK error (e.g. `NotFound`).
pub fn sns_code<E, R>(err: &aws_sdk_sns::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sns::error::ProvideErrorMetadata,
{
    use aws_sdk_sns::error::ProvideErrorMetadata;
    err.code().unwrap_or("(no code)").to_owned()
}
