//! The upstream proxy: forwards a request to one target of an upstream and
//! streams the answer back.
//!
//! - Targets are picked by the upstream's balancer among usable targets
//!   (see [`upstream`]); health checks run in the background ([`health`]).
//! - Bodies stream both ways. A request body of unknown or large size is
//!   never buffered; bodies up to `retries.buffer` are read first so that a
//!   retry can send them again.
//! - Retries go to a target not tried yet, at most `retries.max` times:
//!   after a connect failure (any method, the request never left), and for
//!   idempotent methods after a reset or a status in `retries.statuses`.
//!   All attempts share the route's timeout, which bounds the wait for
//!   response headers (504 after).
//! - WebSocket (HTTP/1.1 `Upgrade`) requests are tunnelled once the
//!   upstream answers 101.
//!
//! Proxy failures are [`ProxyError`]s, rendered by `server::rescue`.

pub mod headers;
mod health;
pub mod upstream;

use std::error::Error as StdError;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;

use crate::body::{BoxError, GatewayBody, InFlight};
use crate::config::{HostHeader, UpstreamProtocol};
use crate::error::HttpError;
pub use upstream::{ActiveHealth, Target, TargetSnapshot, Upstream};

/// Per-request settings that come from the route and the connection.
pub struct ForwardOptions<'a> {
    /// The normalised request path (before `strip_prefix`).
    pub path: &'a str,
    pub strip_prefix: Option<&'a str>,
    pub client_ip: IpAddr,
    pub tls: bool,
    pub max_body: u64,
    /// Time allowed until the response headers arrive, retries included.
    pub timeout: Duration,
}

/// The target that answered, recorded in the response's extensions.
#[derive(Clone, Debug)]
pub struct UpstreamTarget(pub Arc<str>);

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream `{upstream}` has no healthy target")]
    NoHealthyTarget { upstream: Arc<str> },
    #[error("could not connect to upstream `{upstream}` ({target})")]
    Connect { upstream: Arc<str>, target: Arc<str> },
    #[error("upstream `{upstream}` failed while answering ({target}): {reason}")]
    Failed { upstream: Arc<str>, target: Arc<str>, reason: String },
    #[error("upstream `{upstream}` did not answer within {}", crate::config::units::format_duration(*.after))]
    Timeout { upstream: Arc<str>, after: Duration },
    #[error("the request body is larger than this route accepts ({})", crate::config::units::format_size(*.limit))]
    PayloadTooLarge { limit: u64 },
    #[error("the request body could not be read: {0}")]
    ClientBody(String),
}

impl ProxyError {
    /// The target involved, if one was reached.
    pub fn target(&self) -> Option<&Arc<str>> {
        match self {
            ProxyError::Connect { target, .. } | ProxyError::Failed { target, .. } => Some(target),
            _ => None,
        }
    }
}

impl HttpError for ProxyError {
    fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoHealthyTarget { .. } | ProxyError::Connect { .. } | ProxyError::Failed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ProxyError::NoHealthyTarget { .. } => "no_healthy_upstream",
            ProxyError::Connect { .. } => "upstream_connect_failed",
            ProxyError::Failed { .. } => "upstream_failed",
            ProxyError::Timeout { .. } => "upstream_timeout",
            ProxyError::PayloadTooLarge { .. } => "payload_too_large",
            ProxyError::ClientBody(_) => "bad_request_body",
        }
    }
}

/// The declared length of a request body, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

impl Upstream {
    /// Forwards `req` to one of this upstream's targets.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        opts: ForwardOptions<'_>,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        if content_length(req.headers()).is_some_and(|n| n > opts.max_body) {
            return Err(ProxyError::PayloadTooLarge { limit: opts.max_body });
        }
        let upgrade = headers::upgrade_protocol(req.version(), req.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();

        let host = match parts.uri.authority() {
            Some(a) => Some(a.as_str().to_owned()),
            None => parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned),
        };
        let path_and_query = rewrite_path(opts.path, opts.strip_prefix, parts.uri.query());
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade.clone() {
            headers::restore_upgrade(&mut parts.headers, protocol);
        }
        headers::set_forwarded(
            &mut parts.headers,
            &headers::Forwarded { client_ip: opts.client_ip, tls: opts.tls, host: host.as_deref() },
        );
        match self.config().host_header {
            HostHeader::Preserve => match host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
                Some(h) => {
                    parts.headers.insert(header::HOST, h);
                }
                None => {
                    parts.headers.remove(header::HOST);
                }
            },
            // The client fills it in from the target's URI.
            HostHeader::Target => {
                parts.headers.remove(header::HOST);
            }
        }
        let version = match self.config().protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::Http2 => Version::HTTP_2,
        };
        let template =
            RequestTemplate { method: parts.method, path_and_query, version, headers: parts.headers };

        let attempt = self.send_with_retries(template, body, &opts, upgrade.is_some());
        let (mut resp, target, in_flight) = match tokio::time::timeout(opts.timeout, attempt).await {
            Ok(result) => result?,
            Err(_) => return Err(ProxyError::Timeout { upstream: self.name().clone(), after: opts.timeout }),
        };

        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        match (client_upgrade, switching) {
            (Some(client_side), true) => {
                let upstream_side = hyper::upgrade::on(&mut resp);
                let label = self.targets()[target].label.clone();
                tokio::spawn(async move {
                    match tokio::try_join!(client_side, upstream_side) {
                        Ok((c, u)) => {
                            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                                tracing::debug!(target = %label, error = %e, "upgraded connection ended");
                            }
                        }
                        Err(e) => tracing::debug!(target = %label, error = %e, "upgrade failed"),
                    }
                });
            }
            _ => headers::strip_hop_by_hop(resp.headers_mut()),
        }
        let (mut rparts, rbody) = resp.into_parts();
        rparts.extensions.insert(UpstreamTarget(self.targets()[target].label.clone()));
        Ok(Response::from_parts(rparts, GatewayBody::upstream(rbody, Some(in_flight))))
    }

    async fn send_with_retries(
        &self,
        mut template: RequestTemplate,
        body: Incoming,
        opts: &ForwardOptions<'_>,
        is_upgrade: bool,
    ) -> Result<(Response<Incoming>, usize, InFlight), ProxyError> {
        let up = &self.inner;
        let retries = &up.config.retries;
        let max_retries = if is_upgrade { 0 } else { retries.max };
        let buffer = if max_retries > 0 { retries.buffer.min(opts.max_body) } else { 0 };
        let mut body = RequestBody::prepare(body, opts.max_body, buffer).await?;
        let idempotent = headers::is_idempotent(&template.method);
        let mut tried: Vec<usize> = Vec::with_capacity(2);
        let mut last_error = None;

        for attempt in 0..=max_retries {
            let Some(index) = up.pick(&tried) else { break };
            tried.push(index);
            let Some(attempt_body) = body.for_attempt() else { break };
            let target = &up.targets[index];
            // Whether another attempt could follow this one.
            let more = attempt < max_retries && body.replayable() && up.has_candidate(&tried);
            let req = template.build(target, attempt_body, more);
            target.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let in_flight = InFlight::new(&target.in_flight);
            match up.client.request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_server_error() {
                        up.record_failure(index);
                    } else {
                        up.record_success(index);
                    }
                    if more && idempotent && retries.statuses.contains(&status.as_u16()) {
                        tracing::debug!(upstream = %up.name, target = %target.label, %status, "retrying on another target");
                        continue;
                    }
                    return Ok((resp, index, in_flight));
                }
                Err(e) => {
                    if has_cause::<LengthLimitError>(&e) {
                        return Err(ProxyError::PayloadTooLarge { limit: opts.max_body });
                    }
                    if client_body_failed(&e) {
                        return Err(ProxyError::ClientBody(root_cause(&e)));
                    }
                    let connect = e.is_connect();
                    let error = if connect {
                        up.record_failure(index);
                        ProxyError::Connect { upstream: up.name.clone(), target: target.label.clone() }
                    } else {
                        ProxyError::Failed {
                            upstream: up.name.clone(),
                            target: target.label.clone(),
                            reason: root_cause(&e),
                        }
                    };
                    tracing::debug!(upstream = %up.name, target = %target.label, error = %root_cause(&e), "upstream attempt failed");
                    if more && (connect || idempotent) {
                        last_error = Some(error);
                        continue;
                    }
                    return Err(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ProxyError::NoHealthyTarget { upstream: up.name.clone() }))
    }
}

impl upstream::UpstreamInner {
    /// Whether some usable target remains outside `tried`.
    fn has_candidate(&self, tried: &[usize]) -> bool {
        self.snapshot_usable().any(|(i, usable)| usable && !tried.contains(&i))
    }
}

/// What every attempt of one request shares.
struct RequestTemplate {
    method: Method,
    path_and_query: PathAndQuery,
    version: Version,
    headers: HeaderMap,
}

impl RequestTemplate {
    /// Builds the request for one attempt; the headers are copied only when
    /// another attempt may need them.
    fn build(&mut self, target: &Target, body: UpstreamBody, keep: bool) -> Request<UpstreamBody> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(target.scheme.clone());
        uri.authority = Some(target.authority.clone());
        uri.path_and_query = Some(self.path_and_query.clone());
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = Uri::from_parts(uri).unwrap_or_default();
        *req.version_mut() = self.version;
        *req.headers_mut() = if keep { self.headers.clone() } else { std::mem::take(&mut self.headers) };
        req
    }
}

/// `path` with `strip_prefix` removed and the query put back.
fn rewrite_path(path: &str, strip_prefix: Option<&str>, query: Option<&str>) -> PathAndQuery {
    let mut p = path;
    if let Some(prefix) = strip_prefix {
        if let Some(rest) = p.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with('/') {
                p = rest;
            }
        }
    }
    let p = if p.is_empty() { "/" } else { p };
    let text = match query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_owned(),
    };
    text.parse().unwrap_or_else(|_| PathAndQuery::from_static("/"))
}

fn has_cause<E: StdError + 'static>(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<E>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether the failure came from reading the client's body (the client went
/// away or sent a malformed body), not from the upstream.
fn client_body_failed(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_user() {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The request body, prepared for one or more attempts.
enum RequestBody {
    /// Fully read (or empty): every attempt gets a copy.
    Replayable(Option<Bytes>),
    /// Streamed: only one attempt can have it.
    Streaming(Option<UpstreamBody>),
}

impl RequestBody {
    /// Reads up to `buffer` bytes; if the body ends within them it becomes
    /// replayable, otherwise it streams (what was read goes first).
    async fn prepare(mut body: Incoming, max_body: u64, buffer: u64) -> Result<Self, ProxyError> {
        if body.is_end_stream() {
            return Ok(RequestBody::Replayable(None));
        }
        let declared = body.size_hint().exact();
        let worth_reading = buffer > 0 && declared.is_none_or(|n| n <= buffer);
        if !worth_reading {
            return Ok(RequestBody::Streaming(Some(UpstreamBody::stream(None, body, max_body))));
        }
        let mut read = BytesMut::new();
        loop {
            match body.frame().await {
                None => return Ok(RequestBody::Replayable((!read.is_empty()).then(|| read.freeze()))),
                Some(Err(e)) => return Err(ProxyError::ClientBody(e.to_string())),
                Some(Ok(frame)) => {
                    // Trailers are dropped: rare in requests, and HTTP/1.1
                    // upstreams could not receive them without chunking.
                    if let Ok(data) = frame.into_data() {
                        read.extend_from_slice(&data);
                    }
                    if read.len() as u64 > max_body {
                        return Err(ProxyError::PayloadTooLarge { limit: max_body });
                    }
                    if read.len() as u64 > buffer {
                        let prefix = read.freeze();
                        let rest = max_body - prefix.len() as u64;
                        return Ok(RequestBody::Streaming(Some(UpstreamBody::stream(
                            Some(prefix),
                            body,
                            rest,
                        ))));
                    }
                }
            }
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, RequestBody::Replayable(_))
    }

    fn for_attempt(&mut self) -> Option<UpstreamBody> {
        match self {
            RequestBody::Replayable(data) => Some(UpstreamBody::Full { data: data.clone() }),
            RequestBody::Streaming(body) => body.take(),
        }
    }
}

pin_project! {
    /// A request body on its way to an upstream.
    #[project = UpstreamBodyProj]
    pub enum UpstreamBody {
        Full { data: Option<Bytes> },
        Stream {
            prefix: Option<Bytes>,
            #[pin]
            rest: Limited<Incoming>,
        },
    }
}

impl UpstreamBody {
    pub fn empty() -> Self {
        UpstreamBody::Full { data: None }
    }

    fn stream(prefix: Option<Bytes>, rest: Incoming, limit: u64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        UpstreamBody::Stream { prefix, rest: Limited::new(rest, limit) }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            UpstreamBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            UpstreamBodyProj::Stream { prefix, rest } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                rest.poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Full { data } => data.is_none(),
            UpstreamBody::Stream { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            UpstreamBody::Stream { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_stripped_on_segment_boundaries_and_keep_their_query() {
        assert_eq!(rewrite_path("/api/orders/7", Some("/api"), None), "/orders/7");
        assert_eq!(rewrite_path("/api", Some("/api"), Some("a=1")), "/?a=1");
        assert_eq!(rewrite_path("/apix/y", Some("/api"), None), "/apix/y");
        assert_eq!(rewrite_path("/x", None, Some("q=%20")), "/x?q=%20");
    }

    #[test]
    fn errors_map_to_gateway_statuses() {
        let up: Arc<str> = "u".into();
        assert_eq!(ProxyError::NoHealthyTarget { upstream: up.clone() }.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            ProxyError::Timeout { upstream: up, after: Duration::from_millis(1500) }.to_string(),
            "upstream `u` did not answer within 1500ms"
        );
        assert_eq!(ProxyError::PayloadTooLarge { limit: 1024 }.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
