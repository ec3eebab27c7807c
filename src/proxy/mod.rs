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
//!   All attempts share the route's timeout (applied around the proxy by
//!   `middleware::timeout`), which bounds the wait for response headers.
//! - WebSocket (HTTP/1.1 `Upgrade`) requests are tunnelled once the
//!   upstream answers 101.
//!
//! Proxy failures are [`ProxyError`]s, rendered by `server::rescue`.

mod chunked;
mod client;
mod h1;
pub mod headers;
mod health;
pub mod upstream;

use std::error::Error as StdError;
use std::future::Future;
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
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;

use crate::body::{BoxError, ClientBody, GatewayBody};
use crate::config::{HostHeader, UpstreamProtocol};
use crate::error::HttpError;
use client::{Lease, SendError, UpstreamIncoming};
pub use upstream::{ActiveHealth, InFlight, Target, TargetSnapshot, Upstream};

/// Per-request settings that come from the route and the connection.
pub struct ForwardOptions<'a> {
    /// The normalised request path (before `strip_prefix`), when it differs
    /// from the request's own.
    pub normalized_path: Option<&'a str>,
    pub strip_prefix: Option<&'a str>,
    /// The client's IP address, rendered for `X-Forwarded-For`.
    pub client_ip: &'a HeaderValue,
    pub tls: bool,
    pub max_body: u64,
    /// The `Upgrade` protocols the route passes through (lowercase).
    pub upgrades: &'a [String],
}

/// An upstream's answer and the target that gave it (for the access log).
pub struct Forwarded {
    pub response: Response<GatewayBody>,
    pub target: Arc<str>,
}

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream `{upstream}` has no healthy target")]
    NoHealthyTarget { upstream: Arc<str> },
    #[error("could not connect to upstream `{upstream}` ({target})")]
    Connect { upstream: Arc<str>, target: Arc<str> },
    #[error("upstream `{upstream}` failed while answering ({target}): {reason}")]
    Failed { upstream: Arc<str>, target: Arc<str>, reason: String },
    #[error("the request body is larger than this route accepts ({})", crate::config::units::format_size(*.limit))]
    PayloadTooLarge { limit: u64 },
    #[error("the request body could not be read: {0}")]
    ClientBody(String),
    #[error("{0}")]
    BodyTimeout(crate::body::BodyTimeout),
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
            ProxyError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout(t) => t.status(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ProxyError::NoHealthyTarget { .. } => "no_healthy_upstream",
            ProxyError::Connect { .. } => "upstream_connect_failed",
            ProxyError::Failed { .. } => "upstream_failed",
            ProxyError::PayloadTooLarge { .. } => "payload_too_large",
            ProxyError::ClientBody(_) => "bad_request_body",
            ProxyError::BodyTimeout(t) => t.code(),
        }
    }

    fn closes_connection(&self) -> bool {
        matches!(self, ProxyError::BodyTimeout(_))
    }
}

/// Reads a whole upstream response to a `method` request from `wire` with
/// gatehouse's own HTTP/1.1 exchange: the status and body, or why it is
/// refused. For the differential fuzz target (`fuzz/`), not the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn read_whole_response(method: &Method, wire: &[u8]) -> Result<(StatusCode, Vec<u8>), String> {
    h1::read_whole_response(method, wire)
}

/// The declared length of a request body, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

impl Upstream {
    /// Forwards `req` to one of this upstream's targets.
    ///
    /// The request is rewritten before the returned future is first polled;
    /// the future keeps only what the attempts need (see
    /// `Connector::send` on why these are not `async fn`s).
    pub fn forward<'a>(
        &'a self,
        req: Request<ClientBody>,
        opts: ForwardOptions<'a>,
    ) -> impl Future<Output = Result<Forwarded, ProxyError>> + Send + 'a {
        let mut prepared = self.prepare(req, &opts);
        async move {
            let (template, body, client_upgrade) = match prepared {
                Ok((ref mut template, body, ref mut client_upgrade)) => (template, body, client_upgrade),
                Err(e) => return Err(e),
            };
            // Boxed: kept across the exchange, and upgrades are rare.
            let forwarded_upgrade: Option<Box<HeaderValue>> = client_upgrade
                .as_ref()
                .and_then(|_| template.headers.get(header::UPGRADE).cloned().map(Box::new));
            let is_upgrade = client_upgrade.is_some();
            let (mut resp, target, in_flight, mut lease) =
                self.send_with_retries(template, body, &opts, is_upgrade).await?;

            // (The own exchange refuses such answers while parsing them.)
            let from_hyper = matches!(resp.body(), UpstreamIncoming::Hyper { .. });
            if from_hyper
                && resp.headers().contains_key(header::TRANSFER_ENCODING)
                && resp.headers().contains_key(header::CONTENT_LENGTH)
            {
                // hyper's client reads such an answer by its chunks, and the
                // length left behind would cut it short on the way out
                // (RFC 9112 §6.3: an error). The unread answer is dropped
                // with its connection.
                return Err(ProxyError::Failed {
                    upstream: self.name().clone(),
                    target: self.targets()[target].label.clone(),
                    reason: "the response has both Content-Length and Transfer-Encoding".into(),
                });
            }
            let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
            if switching {
                // A switch the client did not ask for, or to another protocol
                // than the one forwarded, would hand the client a tunnel
                // past route matching.
                let answered = resp.headers().get(header::UPGRADE);
                let expected =
                    forwarded_upgrade.as_ref().is_some_and(|f| headers::upgrade_matches(f, answered));
                if !expected {
                    return Err(ProxyError::Failed {
                        upstream: self.name().clone(),
                        target: self.targets()[target].label.clone(),
                        reason: "the upstream switched protocols without an allowed upgrade request".into(),
                    });
                }
            }
            match (client_upgrade.take(), switching) {
                (Some(client_side), true) => {
                    // The connection now belongs to the tunnel.
                    lease = None;
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
            let response =
                resp.map(|body| GatewayBody::from(ResponseBody { body, in_flight: Some(in_flight), lease }));
            Ok(Forwarded { response, target: self.targets()[target].label.clone() })
        }
    }

    /// Checks the declared body size and rewrites the request for the
    /// upstream: its path, hop-by-hop and forwarding headers, `Host`.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        mut req: Request<ClientBody>,
        opts: &ForwardOptions<'_>,
    ) -> Result<(RequestTemplate, ClientBody, Option<hyper::upgrade::OnUpgrade>), ProxyError> {
        if content_length(req.headers()).is_some_and(|n| n > opts.max_body) {
            return Err(ProxyError::PayloadTooLarge { limit: opts.max_body });
        }
        let upgrade = headers::allowed_upgrade(req.version(), req.headers(), opts.upgrades);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();

        // The host the client asked for, and whether `Host` already says so.
        let (host, host_in_header): (Option<HeaderValue>, bool) = match parts.uri.authority() {
            Some(a) => (HeaderValue::from_str(a.as_str()).ok(), false),
            None => {
                let h = parts.headers.get(header::HOST).cloned();
                let present = h.is_some();
                (h, present)
            }
        };
        let path_and_query = rewrite_path(&parts.uri, opts.normalized_path, opts.strip_prefix);
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            headers::restore_upgrade(&mut parts.headers, protocol);
        }
        headers::set_forwarded(
            &mut parts.headers,
            &headers::Forwarded { client_ip: opts.client_ip, tls: opts.tls, host: host.as_ref() },
        );
        let host_header = self.config().host_header;
        let has_host = host_header == HostHeader::Preserve && host.is_some();
        match (host_header, host) {
            (HostHeader::Preserve, Some(_)) if host_in_header => {}
            (HostHeader::Preserve, Some(h)) => {
                parts.headers.insert(header::HOST, h);
            }
            // Set per attempt, from the target.
            (HostHeader::Preserve, None) | (HostHeader::Target, _) => {
                parts.headers.remove(header::HOST);
            }
        }
        let version = match self.config().protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::Http2 => Version::HTTP_2,
        };
        let template = RequestTemplate {
            method: parts.method,
            path_and_query,
            version,
            headers: parts.headers,
            has_host,
        };
        Ok((template, body, client_upgrade))
    }

    #[allow(clippy::manual_async_fn, reason = "an `async fn` keeps by-value arguments twice in its state")]
    fn send_with_retries<'a>(
        &'a self,
        template: &'a mut RequestTemplate,
        body: ClientBody,
        opts: &'a ForwardOptions<'a>,
        is_upgrade: bool,
    ) -> impl Future<Output = Result<(Response<UpstreamIncoming>, usize, InFlight, Option<Lease>), ProxyError>>
           + Send
           + 'a {
        async move {
            let up = &self.inner;
            let retries = &up.config.retries;
            let max_retries = if is_upgrade { 0 } else { retries.max };
            let buffer = if max_retries > 0 { retries.buffer.min(opts.max_body) } else { 0 };
            let mut body = RequestBody::prepare(body, opts.max_body, buffer).await?;
            let idempotent = headers::is_idempotent(&template.method);
            // The targets tried so far (no allocation: attempts are bounded).
            let mut tried = [0usize; crate::config::MAX_RETRIES as usize + 1];
            let mut last_error = None;

            for attempt in 0..=max_retries {
                let n = attempt as usize;
                let Some(index) = up.pick(&tried[..n]) else { break };
                tried[n] = index;
                let tried = &tried[..=n];
                let Some(attempt_body) = body.for_attempt() else { break };
                let target = &up.targets[index];
                // Whether another attempt could follow this one.
                let more = attempt < max_retries && body.replayable() && up.has_candidate(tried);
                target.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let in_flight = InFlight::new(&target.in_flight);
                let sent = if up.connector.exchanges_own(target, attempt_body.is_end_stream(), is_upgrade) {
                    // Sent straight from the template: no request is built.
                    drop(attempt_body);
                    let own = up.connector.send_own(target, template.head(target)).await;
                    own.map(|resp| (resp.map(|body| UpstreamIncoming::Own { body }), None))
                } else {
                    let req = template.build(target, attempt_body, more);
                    // Boxed: hyper's paths stay out of the common case's state.
                    Box::pin(up.connector.send_hyper(target, req)).await
                };
                match sent {
                    Ok((resp, lease)) => {
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
                        return Ok((resp, index, in_flight, lease));
                    }
                    Err(SendError::NotSent(reason)) => {
                        up.record_failure(index);
                        tracing::debug!(upstream = %up.name, target = %target.label, %reason, "could not reach target");
                        let error =
                            ProxyError::Connect { upstream: up.name.clone(), target: target.label.clone() };
                        // The request never left, so any method may go elsewhere.
                        if more {
                            last_error = Some(error);
                            continue;
                        }
                        return Err(error);
                    }
                    Err(failed @ (SendError::Failed(_) | SendError::Broken(_))) => {
                        let reason = match failed {
                            SendError::Failed(e) if has_cause::<LengthLimitError>(&e) => {
                                return Err(ProxyError::PayloadTooLarge { limit: opts.max_body });
                            }
                            SendError::Failed(e) if e.is_user() => return Err(client_body_error(&e)),
                            SendError::Failed(e) => root_cause(&e),
                            SendError::Broken(reason) | SendError::NotSent(reason) => reason,
                        };
                        tracing::debug!(upstream = %up.name, target = %target.label, %reason, "upstream attempt failed");
                        let error = ProxyError::Failed {
                            upstream: up.name.clone(),
                            target: target.label.clone(),
                            reason,
                        };
                        if more && idempotent {
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
    /// Whether `headers` carries the `Host` to send (otherwise it is the
    /// target's).
    has_host: bool,
}

impl RequestTemplate {
    /// The head for the own HTTP/1.1 exchange, borrowed from the template.
    fn head<'a>(&'a self, target: &'a Target) -> h1::RequestHead<'a> {
        h1::RequestHead {
            method: &self.method,
            target: self.path_and_query.as_str(),
            headers: &self.headers,
            host: (!self.has_host).then(|| target.authority.as_str()),
        }
    }

    /// Builds the request for one attempt; the headers are copied only when
    /// another attempt may need them.
    fn build(&mut self, target: &Target, body: UpstreamBody, keep: bool) -> Request<UpstreamBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = if keep { self.headers.clone() } else { std::mem::take(&mut self.headers) };
        if self.version == Version::HTTP_2 {
            // HTTP/2 takes :scheme and :authority from an absolute URI.
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(target.scheme.clone());
            uri.authority = Some(target.authority.clone());
            uri.path_and_query = Some(self.path_and_query.clone());
            *req.uri_mut() = Uri::from_parts(uri).unwrap_or_default();
        } else {
            // HTTP/1.1 sends the origin form and the host in `Host`.
            *req.uri_mut() = Uri::from(self.path_and_query.clone());
        }
        if !self.has_host {
            if let Ok(h) = HeaderValue::from_str(target.authority.as_str()) {
                req.headers_mut().insert(header::HOST, h);
            }
        }
        req
    }
}

/// The path and query to send upstream: the (normalised) request path with
/// `strip_prefix` removed, query kept. Without changes the request's own is
/// reused as is.
fn rewrite_path(uri: &Uri, normalized: Option<&str>, strip_prefix: Option<&str>) -> PathAndQuery {
    let original = uri.path();
    let path = normalized.unwrap_or(original);
    let stripped = strip_prefix
        .and_then(|prefix| path.strip_prefix(prefix))
        .filter(|rest| rest.is_empty() || rest.starts_with('/'));
    if stripped.is_none() && normalized.is_none() {
        if let Some(pq) = uri.path_and_query() {
            return pq.clone();
        }
    }
    let p = match stripped {
        Some("") => "/",
        Some(rest) => rest,
        None => path,
    };
    let text = match uri.query() {
        Some(q) => format!("{p}?{q}"),
        None => p.to_owned(),
    };
    text.parse().unwrap_or_else(|_| PathAndQuery::from_static("/"))
}

fn has_cause<E: StdError + 'static>(e: &(dyn StdError + 'static)) -> bool {
    crate::body::find_cause::<E>(e).is_some()
}

/// What a failure to read the client's body means for the client.
fn client_body_error(e: &(dyn StdError + 'static)) -> ProxyError {
    match crate::body::body_timeout_in(e) {
        Some(t) => ProxyError::BodyTimeout(t),
        None => ProxyError::ClientBody(root_cause(e)),
    }
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
    async fn prepare(mut body: ClientBody, max_body: u64, buffer: u64) -> Result<Self, ProxyError> {
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
                Some(Err(e)) => return Err(client_body_error(&*e)),
                Some(Ok(frame)) => {
                    // Trailers are dropped: rare in requests, and HTTP/1.1
                    // upstreams could not receive them without chunking.
                    if let Ok(data) = frame.into_data() {
                        read.extend_from_slice(&data);
                    }
                    if read.len() as u64 > max_body {
                        drain(body).await;
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

/// Reads and discards what is left of a rejected request body (at most
/// 1 MiB, for at most a second) so that the client, still sending, can read
/// the error answer instead of having its connection reset under it.
async fn drain(mut body: ClientBody) {
    const CAP: usize = 1 << 20;
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > CAP {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), discard).await;
}

pin_project! {
    /// A request body on its way to an upstream.
    #[project = UpstreamBodyProj]
    pub enum UpstreamBody {
        Full { data: Option<Bytes> },
        Stream {
            prefix: Option<Bytes>,
            #[pin]
            rest: Limited<ClientBody>,
        },
    }
}

impl UpstreamBody {
    pub fn empty() -> Self {
        UpstreamBody::Full { data: None }
    }

    fn stream(prefix: Option<Bytes>, rest: ClientBody, limit: u64) -> Self {
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

pin_project! {
    /// An upstream's response body on its way to the client. When it has
    /// been read to the end its connection goes back to the pool and the
    /// target's in-flight count drops.
    pub struct ResponseBody {
        #[pin]
        body: UpstreamIncoming,
        in_flight: Option<InFlight>,
        lease: Option<Lease>,
    }

    impl PinnedDrop for ResponseBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Nothing left to read (204, HEAD, empty bodies that were never
            // polled): the connection is still good.
            if this.body.is_end_stream() {
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
                this.in_flight.take();
            }
            Poll::Ready(Some(Err(_))) => {
                this.lease.take();
                this.in_flight.take();
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_stripped_on_segment_boundaries_and_keep_their_query() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(rewrite_path(&uri("/api/orders/7"), None, Some("/api")), "/orders/7");
        assert_eq!(rewrite_path(&uri("/api?a=1"), None, Some("/api")), "/?a=1");
        assert_eq!(rewrite_path(&uri("/apix/y"), None, Some("/api")), "/apix/y");
        assert_eq!(rewrite_path(&uri("/x?q=%20"), None, None), "/x?q=%20");
        assert_eq!(rewrite_path(&uri("/api/../v1/x?z"), Some("/v1/x"), Some("/v1")), "/x?z");
    }

    #[test]
    fn errors_map_to_gateway_statuses() {
        let up: Arc<str> = "u".into();
        assert_eq!(ProxyError::NoHealthyTarget { upstream: up.clone() }.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            ProxyError::Connect { upstream: up, target: "127.0.0.1:1".into() }.status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(ProxyError::PayloadTooLarge { limit: 1024 }.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}

#[cfg(test)]
mod future_size {
    use super::*;

    /// Every request's future is moved into a box: keep the send path small
    /// (connecting, with its TCP/TLS/handshake state, is boxed separately;
    /// so are hyper's HTTP/1.1 and HTTP/2 paths). The own HTTP/1.1 exchange
    /// lives inline on purpose: its state replaced hyper's connection task.
    #[test]
    fn the_per_request_send_future_stays_small() {
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let config = crate::config::Config::parse(
            std::path::Path::new("t.yaml"),
            "upstreams: { u: { targets: [\"https://127.0.0.1:1\"] } }",
            &|_| None,
        )
        .unwrap();
        let up = Upstream::new("u", &config.upstreams["u"], &crate::config::KeyPath::root(), 1).unwrap();
        let fut = up.inner.connector.send(&up.inner.targets[0], Request::new(UpstreamBody::empty()));
        let size = size_of_future(&fut);
        assert!(size <= 1024, "the send future is {size} bytes");
    }
}
