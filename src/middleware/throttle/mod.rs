//! [`ThrottleLayer`]: token-bucket rate limits (governor's GCRA).
//!
//! A route has up to two throttle layers: limits keyed by `client_ip` or
//! `route` run right after route match, before anything costly; limits
//! keyed by `header:` or `jwt:` run after authentication. Every limit of a
//! layer must admit the request; they are taken in order, and the first
//! that refuses stops the request (later limits are not charged).
//!
//! - Refused: `429` with `Retry-After` (whole seconds, rounded up, at least
//!   1) and the RateLimit fields of draft-ietf-httpapi-ratelimit-headers-11.
//! - Admitted: the answer carries `RateLimit-Policy` and `RateLimit` for
//!   every limit that applied, so clients can pace themselves.
//! - A request without a value for a limit's key (no such header, no such
//!   claim) counts against one shared "anonymous" bucket of that limit.

pub mod buckets;
pub mod key;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use tower::{Layer, Service};

use crate::config::LimitKey;
use crate::error::{BoxHttpError, HttpError};
use crate::exchange::{Exchange, ExchangeService};
use buckets::{Buckets, Take, Verdict};
use key::BucketKey;

pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// One limit, ready to count.
pub struct Limit {
    pub name: Arc<str>,
    pub key: LimitKey,
    pub buckets: Arc<dyn Buckets>,
    /// `"NAME";q=100;w=1`
    pub policy: String,
    /// Requests this limit refused on this route.
    pub throttled: Counter,
}

impl Limit {
    /// `count` requests per `window` (the policy's `q` and `w`).
    pub fn new(
        name: &str,
        key: LimitKey,
        count: u32,
        window: Duration,
        buckets: Arc<dyn Buckets>,
        throttled: Counter,
    ) -> Self {
        let policy = format!("\"{name}\";q={count};w={}", window.as_secs().max(1));
        Self { name: name.into(), key, buckets, policy, throttled }
    }
}

/// The limits of one layer and what keys need.
struct Limits {
    list: Vec<Limit>,
    trusted_proxies: Arc<[ipnet::IpNet]>,
    /// Every policy of this layer, rendered once.
    policy: HeaderValue,
}

#[derive(Clone)]
pub struct ThrottleLayer {
    limits: Arc<Limits>,
}

impl ThrottleLayer {
    /// `None` when there is nothing to count.
    pub fn new(list: Vec<Limit>, trusted_proxies: Arc<[ipnet::IpNet]>) -> Option<Self> {
        if list.is_empty() {
            return None;
        }
        let joined: Vec<&str> = list.iter().map(|l| l.policy.as_str()).collect();
        let policy = HeaderValue::from_str(&joined.join(", ")).ok()?;
        Some(Self { limits: Arc::new(Limits { list, trusted_proxies, policy }) })
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;
    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle { inner, limits: self.limits.clone() }
    }
}

#[derive(Clone)]
pub struct Throttle<S> {
    inner: S,
    limits: Arc<Limits>,
}

/// A request a limit refused.
#[derive(Debug, thiserror::Error)]
#[error("rate limit `{limit}` exceeded; retry in {retry_after}s")]
pub struct Throttled {
    limit: Arc<str>,
    retry_after: u64,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl HttpError for Throttled {
    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn code(&self) -> &'static str {
        "rate_limited"
    }

    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        self.headers.clone()
    }
}

fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// Whole seconds, rounded up (`RateLimit`'s `t`, `Retry-After`).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What the limits of one layer said about a request.
struct Counted {
    /// The `RateLimit` field, one entry per limit asked.
    ratelimit: String,
    /// The limit that refused, and its wait.
    refused: Option<(usize, Duration)>,
}

impl Counted {
    fn new() -> Self {
        Self { ratelimit: String::with_capacity(48), refused: None }
    }

    fn add(&mut self, limits: &Limits, i: usize, v: Verdict) -> bool {
        let l = &limits.list[i];
        let t = ceil_secs(v.reset);
        let t = if v.allowed { t } else { t.max(1) };
        let out = &mut self.ratelimit;
        if !out.is_empty() {
            out.push_str(", ");
        }
        // `"NAME";r=R;t=T`, without the formatting machinery (every
        // throttled request renders it).
        out.push('"');
        out.push_str(&l.name);
        out.push_str("\";r=");
        push_number(out, u64::from(v.remaining));
        out.push_str(";t=");
        push_number(out, t);
        if !v.allowed {
            l.throttled.inc();
            self.refused = Some((i, v.reset));
        }
        v.allowed
    }

    /// The `RateLimit` field (limit names are tokens, the rest digits).
    fn into_ratelimit(self) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(bytes::Bytes::from(self.ratelimit)).ok()
    }

    fn into_error(self, limits: &Limits) -> Option<BoxHttpError> {
        let (i, wait) = self.refused?;
        let limit = limits.list[i].name.clone();
        let retry_after = ceil_secs(wait).max(1);
        let mut headers = vec![(RETRY_AFTER, HeaderValue::from(retry_after))];
        headers.push((RATELIMIT_POLICY, limits.policy.clone()));
        if let Some(v) = self.into_ratelimit() {
            headers.push((RATELIMIT, v));
        }
        Some(Box::new(Throttled { limit, retry_after, headers }))
    }
}

impl<S> Service<Exchange> for Throttle<S>
where
    S: ExchangeService,
{
    type Response = S::Response;
    type Error = BoxHttpError;
    type Future = ThrottleFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxHttpError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, ex: Exchange) -> Self::Future {
        let limits = &*self.limits;
        let mut counted = Counted::new();
        for (i, l) in limits.list.iter().enumerate() {
            let key = BucketKey::of(&l.key, &ex, &limits.trusted_proxies);
            match l.buckets.take(key) {
                Take::Now(v) => {
                    if !counted.add(limits, i, v) {
                        let err = counted.into_error(limits).expect("refused");
                        return ThrottleFuture::Rejected { error: Some(err) };
                    }
                }
                Take::Later(pending) => {
                    // A remote store: finish counting off the call, then go on.
                    let rest = Remaining { from: i, pending, counted };
                    return ThrottleFuture::Remote { future: remote(self.clone(), ex, rest) };
                }
            }
        }
        let headers = counted.into_ratelimit().map(|r| Box::new((limits.policy.clone(), r)));
        ThrottleFuture::Admitted { inner: self.inner.call(ex), headers }
    }
}

/// The counting left when a store answers later: limit `from`'s answer is
/// `pending`, the limits before it have answered.
struct Remaining {
    from: usize,
    pending: Pin<Box<dyn Future<Output = Verdict> + Send>>,
    counted: Counted,
}

/// Finishes counting, then calls the inner service.
fn remote<S>(
    mut svc: Throttle<S>,
    ex: Exchange,
    rest: Remaining,
) -> BoxFuture<'static, Result<Response<crate::body::GatewayBody>, BoxHttpError>>
where
    S: ExchangeService,
{
    Box::pin(async move {
        let limits = svc.limits.clone();
        let Remaining { from, pending, mut counted } = rest;
        let mut pending = Some(pending);
        for (i, l) in limits.list.iter().enumerate().skip(from) {
            let take = match pending.take() {
                Some(p) => Take::Later(p),
                None => l.buckets.take(BucketKey::of(&l.key, &ex, &limits.trusted_proxies)),
            };
            let v = match take {
                Take::Now(v) => v,
                Take::Later(f) => f.await,
            };
            if !counted.add(&limits, i, v) {
                return Err(counted.into_error(&limits).expect("refused"));
            }
        }
        let mut resp = svc.inner.call(ex).await?;
        if let Some(r) = counted.into_ratelimit() {
            resp.headers_mut().append(RATELIMIT_POLICY, limits.policy.clone());
            resp.headers_mut().append(RATELIMIT, r);
        }
        Ok(resp)
    })
}

pin_project! {
    #[project = ThrottleProj]
    pub enum ThrottleFuture<F> {
        Rejected { error: Option<BoxHttpError> },
        Admitted {
            #[pin]
            inner: F,
            // `RateLimit-Policy` and `RateLimit` for the answer.
            headers: Option<Box<(HeaderValue, HeaderValue)>>,
        },
        Remote { future: BoxFuture<'static, Result<Response<crate::body::GatewayBody>, BoxHttpError>> },
    }
}

impl<F> Future for ThrottleFuture<F>
where
    F: Future<Output = Result<Response<crate::body::GatewayBody>, BoxHttpError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ThrottleProj::Rejected { error } => {
                Poll::Ready(Err(error.take().expect("a rejected throttle future is polled once")))
            }
            ThrottleProj::Admitted { inner, headers } => {
                let mut resp = ready!(inner.poll(cx))?;
                if let Some(h) = headers.take() {
                    let (policy, ratelimit) = *h;
                    resp.headers_mut().append(RATELIMIT_POLICY, policy);
                    resp.headers_mut().append(RATELIMIT, ratelimit);
                }
                Poll::Ready(Ok(resp))
            }
            ThrottleProj::Remote { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_in_decimal() {
        for n in [0, 7, 10, 999, 1_000_000, u64::MAX] {
            let mut s = String::from("x");
            push_number(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }
}
