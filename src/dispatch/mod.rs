//! Dispatch: what happens to a request once a route has matched it.
//!
//! Each route owns a [`RouteStack`], built once per configuration by
//! [`stack::build`]: the layers the route uses (timeout, throttles, auth),
//! outermost first as in DESIGN.md §1, around its target:
//!
//! - [`proxy::ProxyTarget`]: forward to an upstream;
//! - [`publish::PublishTarget`]: turn the request into a queue message, or
//!   a topic notification ([`topic`]);
//! - [`respond::FixedAnswer`]: a fixed answer from the config.
//!
//! [`Dispatch`] is the innermost service of a connection's stack: it hands
//! each routed request to its route's stack.

pub mod deliver;
pub mod proxy;
pub mod publish;
pub mod respond;
pub mod stack;
pub mod topic;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use tower::Service;

use crate::body::{ClientBody, GatewayBody};
use crate::error::BoxHttpError;
use crate::exchange::{Exchange, ExchangeService};
use crate::middleware::access_log::RequestLog;
use crate::middleware::metrics::RouteStats;
use crate::routing::Routed;
use crate::server::ConnInfo;

/// What a route's stack answers with.
pub type RouteFuture = Pin<Box<dyn Future<Output = Result<Response<GatewayBody>, BoxHttpError>> + Send>>;

/// A route's whole stack behind one pointer, so that routes with different
/// layers live in one table.
///
/// Each call clones the concrete stack (its layers hold `Arc`s and plain
/// settings) and boxes its future: one allocation per request, whatever the
/// number of layers. The stack's services are always ready (none applies
/// backpressure through `poll_ready`), which is why `call` does not wait
/// for readiness.
#[derive(Clone)]
pub struct RouteStack(Arc<dyn CallRoute>);

trait CallRoute: Send + Sync {
    fn call(&self, exchange: Exchange) -> RouteFuture;
}

impl<S: ExchangeService + Sync> CallRoute for S {
    fn call(&self, exchange: Exchange) -> RouteFuture {
        Box::pin(Service::call(&mut self.clone(), exchange))
    }
}

impl RouteStack {
    pub fn new<S: ExchangeService + Sync>(service: S) -> Self {
        Self(Arc::new(service))
    }

    pub fn call(&self, exchange: Exchange) -> RouteFuture {
        self.0.call(exchange)
    }
}

/// A route as the route table holds it.
pub struct RouteHandler {
    /// The route's name and metric handles.
    pub stats: Arc<RouteStats>,
    pub stack: RouteStack,
}

/// The innermost service of a connection: runs the matched route's stack.
#[derive(Clone)]
pub struct Dispatch {
    conn: Arc<ConnInfo>,
}

impl Dispatch {
    pub fn new(conn: ConnInfo) -> Self {
        Self { conn: Arc::new(conn) }
    }
}

impl Service<Routed<ClientBody, Arc<RouteHandler>>> for Dispatch {
    type Response = Response<GatewayBody>;
    type Error = BoxHttpError;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxHttpError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, routed: Routed<ClientBody, Arc<RouteHandler>>) -> RouteFuture {
        let Routed { request, route } = routed;
        if let Some(log) = request.extensions().get::<Arc<RequestLog>>() {
            log.set_route(&route.route.stats);
        }
        let exchange = Exchange::new(request, self.conn.clone(), route.normalized_path);
        route.route.stack.call(exchange)
    }
}
