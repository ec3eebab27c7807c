//! SNS on the topic engine, over the Query protocol (what every SDK sends
//! for SNS): each action is an [`op::Op`], applied to the
//! [`Notifier`](crate::notify::Notifier) and answered as XML
//! ([`output::Output`]). [`error`] holds SNS's codes.

pub mod apply;
pub mod error;
pub mod op;
pub mod output;

use super::error::Dialect;

/// Where SNS's answers and errors are rendered from.
pub const DIALECT: Dialect =
    Dialect { namespace: "com.amazonaws.sns", xmlns: "http://sns.amazonaws.com/doc/2010-03-31/" };

/// SNS's actions, to tell an SNS request without a `Version` from an SQS one.
pub const ACTIONS: &[&str] = &[
    "CreateTopic",
    "DeleteTopic",
    "GetTopicAttributes",
    "SetTopicAttributes",
    "ListTopics",
    "Subscribe",
    "ConfirmSubscription",
    "Unsubscribe",
    "ListSubscriptions",
    "ListSubscriptionsByTopic",
    "GetSubscriptionAttributes",
    "SetSubscriptionAttributes",
    "Publish",
    "PublishBatch",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];
