//! gatehouse: an API gateway that fronts HTTP backends and carries its own
//! queues and topics.
//!
//! # Layout
//!
//! Data flows one way; a module uses only those listed after it.
//!
//! - [`config`]: `routes.yaml` → validated plain data, or every problem with
//!   its `file:line:col`.
//! - [`tls`]: rustls server (SNI, mTLS, reload) and client configurations.
//! - [`server`]: accept loops, connection limits and timeouts, hyper
//!   connections, graceful shutdown; [`server::rescue`] renders errors.
//! - [`routing`]: the route table and the layer that applies it.
//! - [`middleware`]: the other request-path layers: access log and
//!   metrics per connection; timeout, throttle and auth per route.
//! - [`dispatch`]: each route's stack of layers and its target (proxy,
//!   queue publish, fixed answer).
//! - [`proxy`]: upstream pools, balancing, health, retries, forwarding.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`app`]: the only place that wires the above from a config.
//! - [`worker`]: which data-plane worker a thread is (thread per core).
//! - [`error`], [`body`], [`exchange`]: the error contract, body types and
//!   the request as a route's layers pass it on.
//!
//! The binary (`src/main.rs`) is the CLI: `gatehouse serve` and
//! `gatehouse check`.

pub mod admin;
pub mod alloc;
pub mod app;
pub mod aws;
pub mod body;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod exchange;
pub mod middleware;
pub mod notify;
pub mod proxy;
pub mod queue;
pub mod routing;
pub mod server;
pub mod syntax;
pub mod tls;
pub mod worker;
