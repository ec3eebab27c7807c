//! [`RouteLayer`]: matches each request against the current route table and
//! hands the request and its match to the inner service as one [`Routed`]
//! value, so the inner service cannot be reached without a route (and no
//! per-request extension map is filled for it). No match is a typed error
//! (404, 405 with `Allow`, 400 for a path that climbs above the root).

use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures_util::future::{Either, Ready};
use http::header::{HeaderName, HeaderValue, ALLOW};
use http::{Method, Request, Response, StatusCode};
use tower::{Layer, Service};

use super::{check_host, host_of, normalize_path, BadHost, InvalidPath, Match, RouteTable};
use crate::config::EscapedSlashes;
use crate::error::{BoxHttpError, HttpError};

/// The route chosen for a request.
#[derive(Clone, Debug)]
pub struct RouteMatch<T> {
    pub route: T,
    /// The normalised path the route matched, when normalising changed it
    /// (dot segments resolved); otherwise the request's path is it.
    pub normalized_path: Option<Arc<str>>,
}

/// What the inner service of a [`RouteLayer`] receives: the request and the
/// route it matched.
#[derive(Debug)]
pub struct Routed<B, T> {
    pub request: Request<B>,
    pub route: RouteMatch<T>,
}

/// The swappable table a [`RouteLayer`] reads; a reload stores a new one.
pub type SharedTable<T> = Arc<ArcSwap<RouteTable<T>>>;

#[derive(Clone)]
pub struct RouteLayer<T> {
    table: SharedTable<T>,
    slashes: EscapedSlashes,
}

impl<T> RouteLayer<T> {
    pub fn new(table: SharedTable<T>) -> Self {
        Self { table, slashes: EscapedSlashes::default() }
    }

    /// What encoded separators in a path do (the listener's setting).
    pub fn escaped_slashes(mut self, slashes: EscapedSlashes) -> Self {
        self.slashes = slashes;
        self
    }
}

impl<S, T> Layer<S> for RouteLayer<T> {
    type Service = Route<S, T>;
    fn layer(&self, inner: S) -> Route<S, T> {
        Route { inner, table: self.table.clone(), slashes: self.slashes }
    }
}

#[derive(Clone)]
pub struct Route<S, T> {
    inner: S,
    table: SharedTable<T>,
    slashes: EscapedSlashes,
}

impl<S, T, B, RB> Service<Request<B>> for Route<S, T>
where
    S: Service<Routed<B, T>, Response = Response<RB>, Error = BoxHttpError>,
    T: Clone + Send + Sync + 'static,
{
    type Response = Response<RB>;
    type Error = BoxHttpError;
    type Future = Either<Ready<Result<Response<RB>, BoxHttpError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxHttpError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let reject = |e: BoxHttpError| Either::Left(futures_util::future::ready(Err(e)));
        let host_header = match check_host(&req) {
            Ok(h) => h,
            Err(e) => return reject(Box::new(RoutingError::BadHost(e))),
        };
        let path = match normalize_path(req.uri().path(), self.slashes) {
            Ok(p) => p,
            Err(e) => return reject(Box::new(RoutingError::InvalidPath(e))),
        };
        let table = self.table.load();
        let host = host_of(req.uri(), host_header);
        let found = match table.find(host.as_deref(), &path, req.method()) {
            Match::Found(route) => RouteMatch {
                route: route.clone(),
                normalized_path: match &path {
                    std::borrow::Cow::Borrowed(_) => None,
                    std::borrow::Cow::Owned(p) => Some(Arc::from(p.as_str())),
                },
            },
            Match::NotFound => {
                return reject(Box::new(RoutingError::NotFound {
                    method: req.method().clone(),
                    path: path.into_owned(),
                }))
            }
            Match::MethodNotAllowed { allow } => {
                return reject(Box::new(RoutingError::MethodNotAllowed {
                    method: req.method().clone(),
                    allow,
                }))
            }
        };
        drop(host);
        Either::Right(self.inner.call(Routed { request: req, route: found }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("no route matches {method} {path}")]
    NotFound { method: Method, path: String },
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: Method, allow: Vec<Method> },
    #[error("{0}")]
    InvalidPath(InvalidPath),
    #[error("{0}")]
    BadHost(BadHost),
}

impl HttpError for RoutingError {
    fn status(&self) -> StatusCode {
        match self {
            RoutingError::NotFound { .. } => StatusCode::NOT_FOUND,
            RoutingError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RoutingError::InvalidPath(_) | RoutingError::BadHost(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RoutingError::NotFound { .. } => "route_not_found",
            RoutingError::MethodNotAllowed { .. } => "method_not_allowed",
            RoutingError::InvalidPath(_) => "invalid_path",
            RoutingError::BadHost(_) => "invalid_host",
        }
    }

    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            RoutingError::MethodNotAllowed { allow, .. } => {
                let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
                HeaderValue::from_str(&list.join(", ")).map(|v| vec![(ALLOW, v)]).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }
}
