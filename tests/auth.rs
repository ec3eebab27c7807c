//! JWT authentication over real sockets: tokens minted here with
//! jsonwebtoken, keys from a JWKS file or from an in-test HTTPS server.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const KEY_A: &str = include_str!("fixtures/rsa-a.pem");
const KEY_B: &str = include_str!("fixtures/rsa-b.pem");
const PUB_A: &str = include_str!("fixtures/rsa-a.pub.pem");

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

/// A JWKS document with the public halves of `keys` (pem, kid).
fn jwks(keys: &[(&str, &str)]) -> String {
    let keys = keys
        .iter()
        .map(|(pem, kid)| {
            let mut jwk = Jwk::from_encoding_key(&key(pem), Algorithm::RS256).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// Claims a valid token for the test provider has.
fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({ "iss": "https://id.test/", "aud": "orders-api", "sub": sub, "exp": now() + 600, "iat": now() });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn mint(pem: &str, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &key(pem)).unwrap()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A token with any header, signed (with `alg`) by `signer`.
fn signed_raw(header: &Value, claims: &Value, alg: Algorithm, signer: &EncodingKey) -> String {
    let message = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), signer, alg).unwrap();
    format!("{message}.{signature}")
}

const PROVIDER: &str = "issuer: https://id.test/, audiences: [orders-api], algorithms: [RS256]";

/// A gatehouse in front of an echo backend whose provider `main` reads
/// `jwks.json` written from `jwks_doc`.
async fn gateway(jwks_doc: &str, provider_extra: &str, routes: &str, upstream: &Backend) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks_doc).unwrap();
    let yaml = format!(
        "{}auth:\n  jwt:\n    main: {{ {PROVIDER}, jwks_file: jwks.json{provider_extra} }}\n",
        config(&format!("  echo: {{ targets: [\"{}\"] }}", upstream.url), routes)
    );
    Gateway::start_in(dir, &yaml).await
}

async fn call(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn the_attack_matrix_is_refused_before_the_upstream() {
    let up = echo().await;
    let routes = "  - { name: orders, path: /orders, upstream: echo, auth: main }";
    let gw = gateway(&jwks(&[(KEY_A, "a")]), "", routes, &up).await;
    let url = format!("{}/orders", gw.url);

    let good = mint(KEY_A, "a", &claims("alice", json!({})));
    assert_eq!(call(&url, Some(&good)).await.status(), 200);
    assert_eq!(up.hits(), 1);

    let missing = call(&url, None).await;
    assert_eq!(missing.status(), 401);
    assert_eq!(challenge(&missing), "Bearer realm=\"gatehouse\"", "no error code without a token");

    let rsa_header = json!({"alg": "RS256", "kid": "a"});
    let valid_claims = claims("alice", json!({}));
    let a = key(KEY_A);
    let mut swapped = good.split('.').map(str::to_owned).collect::<Vec<_>>();
    swapped[1] = b64(claims("admin", json!({})).to_string().as_bytes());
    let attacks: Vec<(&str, String)> = vec![
        ("expired", mint(KEY_A, "a", &claims("alice", json!({"exp": now() - 3600})))),
        ("not yet valid", mint(KEY_A, "a", &claims("alice", json!({"nbf": now() + 3600})))),
        ("issued in the future", mint(KEY_A, "a", &claims("alice", json!({"iat": now() + 3600})))),
        ("no exp", mint(KEY_A, "a", &json!({"iss": "https://id.test/", "aud": "orders-api", "sub": "x"}))),
        ("wrong issuer", mint(KEY_A, "a", &claims("alice", json!({"iss": "https://evil.test/"})))),
        ("wrong audience", mint(KEY_A, "a", &claims("alice", json!({"aud": "billing"})))),
        ("signed by another key", mint(KEY_B, "a", &valid_claims)),
        ("payload swapped", swapped.join(".")),
        (
            "alg none",
            format!("{}.{}.", b64(br#"{"alg":"none","kid":"a"}"#), b64(valid_claims.to_string().as_bytes())),
        ),
        (
            "HS256 with the public key as secret",
            signed_raw(
                &json!({"alg": "HS256", "kid": "a"}),
                &valid_claims,
                Algorithm::HS256,
                &EncodingKey::from_secret(PUB_A.as_bytes()).unwrap(),
            ),
        ),
        (
            "algorithm not allowed",
            signed_raw(&json!({"alg": "RS384", "kid": "a"}), &valid_claims, Algorithm::RS384, &a),
        ),
        ("kid with path characters", mint(KEY_A, "../../../../etc/passwd", &valid_claims)),
        ("kid with SQL", mint(KEY_A, "a' OR '1'='1", &valid_claims)),
        (
            "jku",
            signed_raw(
                &json!({"alg": "RS256", "kid": "a", "jku": "https://evil.test/jwks"}),
                &valid_claims,
                Algorithm::RS256,
                &a,
            ),
        ),
        (
            "x5u",
            signed_raw(
                &json!({"alg": "RS256", "kid": "a", "x5u": "https://evil.test/c"}),
                &valid_claims,
                Algorithm::RS256,
                &a,
            ),
        ),
        ("embedded jwk", {
            let attacker = Jwk::from_encoding_key(&key(KEY_B), Algorithm::RS256).unwrap();
            signed_raw(
                &json!({"alg": "RS256", "jwk": attacker}),
                &valid_claims,
                Algorithm::RS256,
                &key(KEY_B),
            )
        }),
        (
            "crit",
            signed_raw(
                &json!({"alg": "RS256", "kid": "a", "crit": ["urn:example:policy"], "urn:example:policy": "strict"}),
                &valid_claims,
                Algorithm::RS256,
                &a,
            ),
        ),
        ("over 8 KiB", mint(KEY_A, "a", &claims("alice", json!({"pad": "x".repeat(9000)})))),
        ("malformed base64", "a$b.c%d.e^f".to_owned()),
        ("malformed JSON header", format!("{}.{}.sig", b64(b"not json"), b64(b"{}"))),
        ("malformed JSON payload", signed_raw(&rsa_header, &json!("just a string"), Algorithm::RS256, &a)),
        ("two parts", "abc.def".to_owned()),
    ];
    for (what, token) in &attacks {
        let r = call(&url, Some(token)).await;
        assert_eq!(r.status(), 401, "{what}");
        let c = challenge(&r);
        assert!(
            c.starts_with("Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\""),
            "{what}: {c}"
        );
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = r.text().await.unwrap();
        assert!(!body.contains(token.as_str()), "{what}: the token is echoed");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (body["error"].as_str(), body["request_id"].as_str()),
            (Some("invalid_token"), Some(id.as_str())),
            "{what}"
        );
    }
    assert_eq!(up.hits(), 1, "no refused request reached the upstream");
}

#[tokio::test]
async fn scopes_claims_and_claim_headers() {
    let up = echo().await;
    let routes = "  - { name: orders, path: /orders, upstream: echo, auth: main, scopes: [orders:read], claims: { tier: [gold] }, claims_to_headers: { sub: X-User-Id }, forward_token: false }";
    let gw = gateway(&jwks(&[(KEY_A, "a")]), "", routes, &up).await;
    let url = format!("{}/orders", gw.url);

    let no_scope = mint(KEY_A, "a", &claims("alice", json!({"tier": "gold", "scope": "orders:write"})));
    let r = call(&url, Some(&no_scope)).await;
    assert_eq!(r.status(), 403);
    let c = challenge(&r);
    assert!(c.contains("error=\"insufficient_scope\"") && c.contains("scope=\"orders:read\""), "{c}");

    let wrong_tier = mint(KEY_A, "a", &claims("alice", json!({"tier": "silver", "scp": ["orders:read"]})));
    assert_eq!(call(&url, Some(&wrong_tier)).await.status(), 403);
    assert_eq!(up.hits(), 0);

    let ok = mint(KEY_A, "a", &claims("alice", json!({"tier": "gold", "scope": "profile orders:read"})));
    let r = client().get(&url).bearer_auth(&ok).header("x-user-id", "mallory").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["headers"]["x-user-id"], "alice", "the claim replaces what the client sent");
    assert!(seen["headers"].get("authorization").is_none(), "forward_token: false");
}

#[tokio::test]
async fn tokens_from_a_cookie_or_a_header() {
    let up = echo().await;
    let routes = "  - { name: c, path: /c, upstream: echo, auth: main, token_from: \"cookie:session\" }\n  - { name: h, path: /h, upstream: echo, auth: main, token_from: \"header:x-token\" }";
    let gw = gateway(&jwks(&[(KEY_A, "a")]), "", routes, &up).await;
    let token = mint(KEY_A, "a", &claims("alice", json!({})));
    let r = client()
        .get(format!("{}/c", gw.url))
        .header("cookie", format!("theme=dark; session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert!(seen["headers"]["cookie"].as_str().unwrap().contains("session="), "forwarded by default");
    let r = client().get(format!("{}/h", gw.url)).header("x-token", &token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        call(&format!("{}/h", gw.url), Some(&token)).await.status(),
        401,
        "a bearer token is not where this route looks"
    );
}

#[tokio::test]
async fn the_client_throttle_runs_before_the_token_check_and_jwt_keys_after_it() {
    let up = echo().await;
    let routes = "  - { name: ip, path: /ip, upstream: echo, auth: main, throttle: { rate: 1/h, burst: 1 } }\n  - { name: sub, path: /sub, upstream: echo, auth: main, throttle: { rate: 1/h, burst: 1, key: \"jwt:sub\" } }";
    let gw = gateway(&jwks(&[(KEY_A, "a")]), "", routes, &up).await;
    let alice = mint(KEY_A, "a", &claims("alice", json!({})));
    let bob = mint(KEY_A, "a", &claims("bob", json!({})));

    // The first request uses the client's only token, and fails auth.
    assert_eq!(call(&format!("{}/ip", gw.url), Some("bad.token.here")).await.status(), 401);
    let metrics_before = scrape(&gw).await;
    let r = call(&format!("{}/ip", gw.url), Some(&alice)).await;
    assert_eq!(r.status(), 429, "throttled before the token is even looked at");
    let metrics_after = scrape(&gw).await;
    let misses = "gatehouse_jwt_cache_misses_total{provider=\"main\"}";
    assert_eq!(
        metric(&metrics_before, misses),
        metric(&metrics_after, misses),
        "no token check for a throttled client"
    );

    // Keyed by the verified subject: alice's bucket is not bob's.
    let sub = format!("{}/sub", gw.url);
    assert_eq!(call(&sub, Some(&alice)).await.status(), 200);
    assert_eq!(call(&sub, Some(&alice)).await.status(), 429);
    assert_eq!(call(&sub, Some(&bob)).await.status(), 200);
    assert_eq!(up.hits(), 2);
}

async fn scrape(gw: &Gateway) -> String {
    client().get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn verified_tokens_are_cached() {
    let up = echo().await;
    let gw =
        gateway(&jwks(&[(KEY_A, "a")]), "", "  - { name: o, path: /o, upstream: echo, auth: main }", &up)
            .await;
    let token = mint(KEY_A, "a", &claims("alice", json!({})));
    for _ in 0..5 {
        assert_eq!(call(&format!("{}/o", gw.url), Some(&token)).await.status(), 200);
    }
    let m = scrape(&gw).await;
    assert_eq!(metric(&m, "gatehouse_jwt_cache_hits_total{provider=\"main\"}"), Some(4.0), "{m}");
    assert_eq!(metric(&m, "gatehouse_jwt_cache_entries{provider=\"main\"}"), Some(1.0));
}

#[tokio::test]
async fn jwt_sub_becomes_the_fifo_group_id() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks(&[(KEY_A, "a")])).unwrap();
    let yaml = queue_config(&format!(
        "auth: {{ jwt: {{ main: {{ {PROVIDER}, jwks_file: jwks.json }} }} }}\nqueues: {{ orders.fifo: {{ fifo: true, content_based_deduplication: true }} }}\nroutes:\n  - {{ name: submit, path: /orders, methods: [POST], queue: orders.fifo, auth: main, message: {{ group_id: \"jwt:sub\", attributes: {{ tenant: \"jwt:tenant\" }} }} }}\n"
    ));
    let gw = Gateway::start_in(dir, &yaml).await;
    let token = mint(KEY_A, "a", &claims("alice", json!({"tenant": "acme"})));
    let r =
        client().post(format!("{}/orders", gw.url)).bearer_auth(&token).body("order 1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let refused = client().post(format!("{}/orders", gw.url)).body("order 2").send().await.unwrap();
    assert_eq!(refused.status(), 401, "nothing is enqueued without a token");

    let sqs = sqs(&gw);
    let url = sqs.get_queue_url().queue_name("orders.fifo").send().await.unwrap().queue_url.unwrap();
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let msgs = got.messages();
    assert_eq!(msgs.len(), 1);
    let group = msgs[0].attributes().unwrap()
        [&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId]
        .clone();
    assert_eq!(group, "alice");
    assert_eq!(msgs[0].message_attributes().unwrap()["tenant"].string_value(), Some("acme"));
}

/// A JWKS server over HTTPS whose document and status tests change.
struct JwksServer {
    addr: SocketAddr,
    doc: Arc<Mutex<(u16, String)>>,
    fetches: Arc<AtomicUsize>,
    ca: TestCa,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(doc: String) -> Self {
        init();
        let ca = TestCa::new("jwks test ca");
        let leaf = ca.leaf(&["127.0.0.1"]);
        use rustls_pki_types::pem::PemObject;
        let certs = vec![leaf.der.clone()];
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let doc = Arc::new(Mutex::new((200u16, doc)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (d, f) = (doc.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, d, f) = (acceptor.clone(), d.clone(), f.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(move |_req| {
                        f.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = d.lock().unwrap().clone();
                        let mut r = http::Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self { addr, doc, fetches, ca, task }
    }

    fn set(&self, status: u16, doc: String) {
        *self.doc.lock().unwrap() = (status, doc);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// A gatehouse whose provider `main` fetches from this server.
    async fn gateway(&self, upstream: &Backend) -> Gateway {
        self.gateway_with(upstream, "").await
    }

    async fn gateway_with(&self, upstream: &Backend, provider_extra: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        self.ca.write(dir.path());
        let yaml = format!(
            "{}auth:\n  jwt:\n    main: {{ {PROVIDER}, jwks_url: \"https://{}/jwks.json\", tls: {{ ca: ca.pem }}{provider_extra} }}\n",
            config(
                &format!("  echo: {{ targets: [\"{}\"] }}", upstream.url),
                "  - { name: o, path: /o, upstream: echo, auth: main }"
            ),
            self.addr
        );
        Gateway::start_in(dir, &yaml).await
    }
}

async fn ready(gw: &Gateway) -> (u16, String) {
    let r = client().get(format!("{}/readyz", gw.admin_url())).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn jwks_url_rotation_unknown_kid_refetch_and_its_rate_limit() {
    let up = echo().await;
    let server = JwksServer::start(jwks(&[(KEY_A, "a")])).await;
    let gw = server.gateway(&up).await;
    let url = format!("{}/o", gw.url);
    eventually("the first key set", || async { ready(&gw).await.0 == 200 }).await;
    assert_eq!(call(&url, Some(&mint(KEY_A, "a", &claims("alice", json!({}))))).await.status(), 200);

    // The provider rotates: a token signed with the new key makes
    // gatehouse fetch again, once.
    server.set(200, jwks(&[(KEY_A, "a"), (KEY_B, "b")]));
    let before = server.fetches();
    assert_eq!(call(&url, Some(&mint(KEY_B, "b", &claims("bob", json!({}))))).await.status(), 200);
    assert_eq!(server.fetches(), before + 1);

    // Random kids cannot make it fetch again within 30s.
    for i in 0..20 {
        let r = call(&url, Some(&mint(KEY_B, &format!("attacker-{i}"), &claims("x", json!({}))))).await;
        assert_eq!(r.status(), 401);
    }
    assert_eq!(server.fetches(), before + 1, "unknown kids fetch at most once per 30s");

    // The identity provider goes down: the last good keys keep working.
    server.set(500, String::new());
    assert_eq!(call(&url, Some(&mint(KEY_B, "b", &claims("bob", json!({}))))).await.status(), 200);
    assert_eq!(call(&url, Some(&mint(KEY_A, "a", &claims("alice", json!({}))))).await.status(), 200);
}

#[tokio::test]
async fn a_refresh_that_rotates_a_key_away_drops_its_cached_tokens() {
    let up = echo().await;
    let server = JwksServer::start(jwks(&[(KEY_A, "a")])).await;
    let gw = server.gateway_with(&up, ", jwks_refresh: 1s").await;
    let url = format!("{}/o", gw.url);
    eventually("the first key set", || async { ready(&gw).await.0 == 200 }).await;
    let alice = mint(KEY_A, "a", &claims("alice", json!({})));
    assert_eq!(call(&url, Some(&alice)).await.status(), 200);
    assert_eq!(call(&url, Some(&alice)).await.status(), 200, "from the cache");

    // The provider retires key a; the next refresh (every second here)
    // picks that up, and the cached token goes with its key.
    server.set(200, jwks(&[(KEY_B, "b")]));
    let seen = server.fetches();
    eventually("a refresh", || async { server.fetches() > seen + 1 }).await;
    assert_eq!(call(&url, Some(&alice)).await.status(), 401);
    assert_eq!(call(&url, Some(&mint(KEY_B, "b", &claims("bob", json!({}))))).await.status(), 200);
}

#[tokio::test]
async fn a_provider_that_never_had_keys_answers_503_and_readyz_says_so() {
    let up = echo().await;
    let server = JwksServer::start(String::new()).await;
    server.set(503, String::new());
    let gw = server.gateway(&up).await;
    eventually("a first fetch attempt", || async { server.fetches() >= 1 }).await;
    let r = call(&format!("{}/o", gw.url), Some(&mint(KEY_A, "a", &claims("alice", json!({}))))).await;
    assert_eq!(r.status(), 503, "not the client's fault");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "auth_unavailable");
    let (status, text) = ready(&gw).await;
    assert_eq!(status, 503);
    assert!(text.contains("JWT provider `main` has no keys yet"), "{text}");

    // Once the provider answers, the retry picks the keys up.
    server.set(200, jwks(&[(KEY_A, "a")]));
    eventually("keys after the provider recovered", || async { ready(&gw).await.0 == 200 }).await;
    assert_eq!(
        call(&format!("{}/o", gw.url), Some(&mint(KEY_A, "a", &claims("alice", json!({}))))).await.status(),
        200
    );
}

#[tokio::test]
async fn a_reload_swaps_providers_without_dropping_connections() {
    let up = echo().await;
    let routes = "  - { name: o, path: /o, upstream: echo, auth: main }";
    let gw = gateway(&jwks(&[(KEY_A, "a")]), "", routes, &up).await;
    let url = format!("{}/o", gw.url);
    let c = client();
    let bob = mint(KEY_B, "b", &claims("bob", json!({})));
    assert_eq!(c.get(&url).bearer_auth(&bob).send().await.unwrap().status(), 401);
    // New keys in the same file, and a reload (SIGHUP): the next request
    // on the same pooled connection uses them.
    std::fs::write(gw.path("jwks.json"), jwks(&[(KEY_B, "b")])).unwrap();
    let yaml = std::fs::read_to_string(gw.path("routes.yaml")).unwrap();
    gw.reload(&yaml).await.unwrap();
    assert_eq!(c.get(&url).bearer_auth(&bob).send().await.unwrap().status(), 200);
    let alice = mint(KEY_A, "a", &claims("alice", json!({})));
    assert_eq!(c.get(&url).bearer_auth(&alice).send().await.unwrap().status(), 401);
}
