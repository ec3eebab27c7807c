//! SQS on the queue engine: each action is an [`op::Op`], parsed from
//! either protocol's input, applied to the engine ([`apply`]) and answered
//! as an [`output::Output`] in JSON or XML. [`error`] holds SQS's codes.

pub mod apply;
pub mod error;
pub mod op;
pub mod output;

use super::error::Dialect;

/// Where SQS's answers and errors are rendered from.
pub const DIALECT: Dialect =
    Dialect { namespace: "com.amazonaws.sqs", xmlns: "http://queue.amazonaws.com/doc/2012-11-05/" };
