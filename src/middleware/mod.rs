//! Layers of the gateway's request path, one folder each (tower-http style:
//! `FooLayer` + `Foo<S>` + its future). Layers reject with typed errors; they
//! never build error responses themselves (see `server::rescue`).
//!
//! Per connection: `request_id`, `access_log`, `metrics`. Per route, in this order (see
//! `dispatch::stack`): `timeout`, `throttle` (client keys), `waf`, `auth`,
//! `throttle` (consumer keys).
//!
//! Shared by layers: `gate` (the future of a layer that refuses, passes on
//! or waits), `prehashed` (maps keyed by hashes made already).

pub mod access_log;
pub mod auth;
pub mod gate;
pub mod metrics;
pub mod prehashed;
pub mod request_id;
pub mod throttle;
pub mod timeout;
pub mod waf;
