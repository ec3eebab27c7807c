//! Topics with SNS semantics: topics, subscriptions, filter policies and
//! delivery, on the queue engine.

pub mod filter;
