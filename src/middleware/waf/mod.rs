//! [`WafLayer`]: gatehouse's web application firewall, for routes the
//! top-level `waf:` covers (all but those with `waf: off`).
//!
//! The request is taken apart into the values rules look at
//! ([`inspect`]), each rule's transform pipeline rewrites them
//! ([`transform`]), and the compiled rule set ([`rules`]) matches them,
//! one `RegexSet` pass per (target, pipeline) and value. Matched rules add
//! their scores; at the route's `anomaly_threshold`, or when a `block` rule
//! matched, the request is refused with `403 waf_blocked` naming the rule
//! ids (never the payload) — or, in `detect` mode, logged and counted and
//! let through.
//!
//! Bodies are read (up to `body_limit`, under the listener's
//! `body_timeout`) only when a rule the route runs reads them and the
//! request has one; what was read is put back in front of the rest, so the
//! target receives the body byte for byte. A body over the limit is
//! inspected by its first `body_limit` bytes (`inspect_prefix`) or refused
//! with 413 (`reject`).

pub mod inspect;
pub mod rules;
pub mod transform;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower::{Layer, Service};

use crate::body::{body_timeout_in, GatewayBody};
use crate::config::waf::{OverLimit, WafMode};
use crate::error::{BoxHttpError, HttpError};
use crate::exchange::{Exchange, ExchangeService};
use crate::middleware::gate::{Answer, GateFuture};
use crate::middleware::metrics::{RuleLabel, WafLabel, WafMetrics};
use crate::middleware::request_id::X_REQUEST_ID;
pub use rules::{Policy, RuleSet, Verdict};

use inspect::Head;

/// Why the WAF refused a request.
#[derive(Debug, thiserror::Error)]
pub enum WafError {
    #[error("the request was blocked by the web application firewall")]
    Blocked { rules: Vec<u32> },
    #[error("the request body is larger than the {0} bytes the firewall inspects")]
    TooLarge(u64),
    #[error("the request body could not be read")]
    Unreadable,
}

impl HttpError for WafError {
    fn status(&self) -> StatusCode {
        match self {
            WafError::Blocked { .. } => StatusCode::FORBIDDEN,
            WafError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WafError::Unreadable => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            WafError::Blocked { .. } => "waf_blocked",
            WafError::TooLarge(_) => "body_too_large",
            WafError::Unreadable => "bad_request_body",
        }
    }

    fn details(&self) -> Vec<(&'static str, serde_json::Value)> {
        match self {
            WafError::Blocked { rules } => vec![("rules", serde_json::json!(rules))],
            _ => Vec::new(),
        }
    }

    fn closes_connection(&self) -> bool {
        // The body may be unread (or half read).
        !matches!(self, WafError::Blocked { .. })
    }
}

/// A route's firewall: its policy over the shared rule set, and where it
/// reports.
pub struct Firewall {
    pub policy: Policy,
    pub route: Arc<String>,
    pub body_limit: u64,
    pub over_limit: OverLimit,
    pub metrics: WafMetrics,
}

#[derive(Clone)]
pub struct WafLayer {
    firewall: Arc<Firewall>,
}

impl WafLayer {
    pub fn new(firewall: Firewall) -> Self {
        Self { firewall: Arc::new(firewall) }
    }
}

impl<S> Layer<S> for WafLayer {
    type Service = Waf<S>;
    fn layer(&self, inner: S) -> Waf<S> {
        Waf { inner, firewall: self.firewall.clone() }
    }
}

#[derive(Clone)]
pub struct Waf<S> {
    inner: S,
    firewall: Arc<Firewall>,
}

impl<S> Service<Exchange> for Waf<S>
where
    S: ExchangeService,
{
    type Response = Response<GatewayBody>;
    type Error = BoxHttpError;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxHttpError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, ex: Exchange) -> Self::Future {
        let fw = &self.firewall;
        if fw.policy.reads_body && !ex.request.body().is_end_stream() {
            return GateFuture::Later { future: read_then_inspect(self.clone(), ex) };
        }
        match fw.judge(&ex, None) {
            Ok(()) => GateFuture::Passed { inner: self.inner.call(ex) },
            Err(e) => GateFuture::refuse(e),
        }
    }
}

/// Reads the body (up to the limit), inspects the request, puts the body
/// back and calls the target.
fn read_then_inspect<S: ExchangeService>(mut waf: Waf<S>, mut ex: Exchange) -> BoxFuture<'static, Answer> {
    Box::pin(async move {
        let fw = waf.firewall.clone();
        let (read, trailers) = read_ahead(&mut ex, fw.body_limit, fw.over_limit).await?;
        let inspected = &read[..read.len().min(fw.body_limit as usize)];
        fw.judge(&ex, Some(inspected))?;
        ex.request.body_mut().put_back(read, trailers);
        waf.inner.call(ex).await
    })
}

/// The body's first `limit` bytes (and what else came in the same frame),
/// and its trailers if it ended within them.
async fn read_ahead(
    ex: &mut Exchange,
    limit: u64,
    over: OverLimit,
) -> Result<(Bytes, Option<http::HeaderMap>), BoxHttpError> {
    let declared = ex.request.body().size_hint().lower();
    if over == OverLimit::Reject && declared > limit {
        return Err(WafError::TooLarge(limit).into());
    }
    let mut buf = BytesMut::with_capacity(declared.min(limit) as usize);
    let body = ex.request.body_mut();
    while (buf.len() as u64) < limit {
        let Some(frame) = body.frame().await else { break };
        let frame = frame.map_err(|e| match body_timeout_in(&*e) {
            Some(timeout) => BoxHttpError::from(timeout),
            None => WafError::Unreadable.into(),
        })?;
        match frame.into_data() {
            Ok(data) => buf.extend_from_slice(&data),
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return Ok((buf.freeze(), Some(trailers)));
                }
            }
        }
    }
    if over == OverLimit::Reject && (buf.len() as u64 > limit || !body.is_end_stream()) {
        // Something may follow: peek at one more frame to be sure.
        if buf.len() as u64 > limit || body.frame().await.is_some() {
            return Err(WafError::TooLarge(limit).into());
        }
    }
    Ok((buf.freeze(), None))
}

impl Firewall {
    /// Runs the rules over the request (and the body read), logs and counts
    /// what matched, and says whether the request goes on.
    fn judge(&self, ex: &Exchange, body: Option<&[u8]>) -> Result<(), WafError> {
        let r = &ex.request;
        let path = ex.normalized_path.as_deref().unwrap_or(r.uri().path());
        let verdict = self.policy.inspect(Head::of(r), path, body);
        if verdict.hits.is_empty() {
            return Ok(());
        }
        self.report(ex, &verdict);
        if !verdict.blocked || self.policy.mode == WafMode::Detect {
            return Ok(());
        }
        let mut rules: Vec<u32> = verdict.hits.iter().map(|h| self.policy.set.rules[h.rule].id).collect();
        rules.dedup();
        Err(WafError::Blocked { rules })
    }

    fn report(&self, ex: &Exchange, verdict: &Verdict) {
        let rules = &self.policy.set.rules;
        let mut counted: Vec<usize> = Vec::new();
        for hit in &verdict.hits {
            if !counted.contains(&hit.rule) {
                counted.push(hit.rule);
                let r = &rules[hit.rule];
                self.metrics.matches.get_or_create(&RuleLabel { rule: r.id, family: r.family.clone() }).inc();
            }
        }
        let matched: Vec<String> =
            verdict.hits.iter().map(|h| format!("{}@{}", rules[h.rule].id, h.target)).collect();
        let request_id = ex.request.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
        let outcome = match (verdict.blocked, self.policy.mode) {
            (true, WafMode::Block) => "blocked",
            (true, WafMode::Detect) => "detected",
            (false, _) => "matched",
        };
        if verdict.blocked {
            self.metrics.decisions.get_or_create(&WafLabel { route: self.route.clone(), outcome }).inc();
        }
        tracing::warn!(
            route = %self.route,
            request_id,
            outcome,
            score = verdict.score,
            threshold = self.policy.threshold,
            rules = %matched.join(" "),
            "waf"
        );
    }
}
