//! Layers of the gateway's request path, one folder each (tower-http style:
//! `FooLayer` + `Foo<S>` + its future). Layers reject with typed errors; they
//! never build error responses themselves (see `server::rescue`).

pub mod access_log;
pub mod metrics;
