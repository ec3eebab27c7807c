//! Applying an SNS operation to the topic engine.

use std::sync::Arc;

use base64::Engine as _;

use super::error::Error;
use super::op::{Entry, Op};
use super::output::{BatchOutput, Output, Summary};
use crate::notify::topic::{Protocol, Subscription};
use crate::notify::{Notifier, NotifyError, MAX_MESSAGE_BYTES};
use crate::queue::storage::Storage;

/// Listings answer at most this many items per page.
const PAGE: usize = 100;

impl Op {
    /// Runs the operation. `signed`: the request carried a verified
    /// signature, or the listener requires none.
    pub async fn apply<S: Storage>(self, notifier: &Notifier<S>, signed: bool) -> Result<Output, Error> {
        let n = notifier;
        Ok(match self {
            Op::CreateTopic { name, attributes, tags } => {
                Output::TopicArn(n.create_topic(&name, attributes, tags).await?)
            }
            Op::DeleteTopic { topic } => {
                n.delete_topic(&topic).await?;
                Output::Empty
            }
            Op::GetTopicAttributes { topic } => Output::Attributes(n.topic(&topic)?.attributes(n.owner())),
            Op::SetTopicAttributes { topic, name, value } => {
                n.set_topic_attribute(&topic, &name, &value).await?;
                Output::Empty
            }
            Op::ListTopics { after } => {
                let (arns, next) = page(n.list_topics(), after, String::clone);
                Output::Topics { arns, next }
            }
            Op::Subscribe { topic, protocol, endpoint, attributes, return_arn } => {
                let protocol = Protocol::parse(&protocol).ok_or_else(|| {
                    NotifyError::invalid(format!(
                        "Invalid parameter: Amazon SNS does not support this protocol string: {protocol} (gatehouse delivers to sqs, http and https)"
                    ))
                })?;
                let sub = n.subscribe(&topic, protocol, &endpoint, attributes).await?;
                Output::SubscriptionArn(listed_arn(&sub, return_arn))
            }
            Op::ConfirmSubscription { topic, token, authenticate_on_unsubscribe } => Output::SubscriptionArn(
                n.confirm(&topic, &token, authenticate_on_unsubscribe && signed).await?,
            ),
            Op::Unsubscribe { subscription } => {
                n.unsubscribe(&subscription, signed).await?;
                Output::Empty
            }
            Op::ListSubscriptions { after } => subscriptions(n, n.subscriptions(None), after),
            Op::ListSubscriptionsByTopic { topic, after } => {
                let topic = n.topic(&topic)?;
                subscriptions(n, n.subscriptions(Some(&topic)), after)
            }
            Op::GetSubscriptionAttributes { subscription } => {
                let sub = n.subscription(&subscription)?;
                Output::Attributes(sub.attributes(&n.topic_arn(&sub.record.topic), n.owner()))
            }
            Op::SetSubscriptionAttributes { subscription, name, value } => {
                n.set_subscription_attribute(&subscription, &name, &value).await?;
                Output::Empty
            }
            Op::Publish { topic, message } => {
                Output::Published(n.publish(&*n.topic(&topic)?, message).await?)
            }
            Op::PublishBatch { topic, entries } => publish_batch(n, &topic, entries).await?,
            Op::TagResource { resource, tags } => {
                n.tag(&topic_resource(n, &resource)?, tags).await?;
                Output::EmptyResult
            }
            Op::UntagResource { resource, keys } => {
                n.untag(&topic_resource(n, &resource)?, &keys).await?;
                Output::EmptyResult
            }
            Op::ListTagsForResource { resource } => {
                Output::Tags(n.topic(&topic_resource(n, &resource)?)?.record.tags.clone())
            }
        })
    }
}

/// A subscription's ARN as answers show it: `PendingConfirmation` until
/// confirmed, unless the caller asked for the ARN.
fn listed_arn(sub: &Subscription, always: bool) -> String {
    if sub.record.confirmed || always {
        sub.arn().to_owned()
    } else {
        "PendingConfirmation".to_owned()
    }
}

fn subscriptions<S: Storage>(n: &Notifier<S>, subs: Vec<Arc<Subscription>>, after: Option<String>) -> Output {
    let mut subs = subs;
    subs.sort_by(|a, b| a.arn().cmp(b.arn()));
    let (page, next) = page(subs, after, |s| s.arn().to_owned());
    let items = page
        .iter()
        .map(|s| Summary {
            arn: listed_arn(s, false),
            owner: n.owner().to_owned(),
            protocol: s.record.protocol.as_str().to_owned(),
            endpoint: s.record.endpoint.clone(),
            topic_arn: n.topic_arn(&s.record.topic),
        })
        .collect();
    Output::Subscriptions { items, next }
}

/// One page of `items` (sorted by `key`) after `after`, and the next
/// page's token.
fn page<T>(items: Vec<T>, after: Option<String>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<T> = items.into_iter().filter(|x| after.as_ref().is_none_or(|a| key(x) > *a)).collect();
    if rest.len() <= PAGE {
        return (rest, None);
    }
    rest.truncate(PAGE);
    let token = rest.last().map(|x| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key(x)));
    (rest, token)
}

/// The topic a tagging call names (tags are kept on topics only).
fn topic_resource<S: Storage>(n: &Notifier<S>, arn: &str) -> Result<String, Error> {
    match n.topic(arn) {
        Ok(t) => Ok(t.arn.clone()),
        Err(_) => Err(Error::ResourceNotFound("Resource does not exist".into())),
    }
}

async fn publish_batch<S: Storage>(
    n: &Notifier<S>,
    topic: &str,
    entries: Vec<Entry>,
) -> Result<Output, Error> {
    let topic = n.topic(topic)?;
    let total: usize = entries.iter().filter_map(|e| e.message.as_ref().ok()).map(|m| m.body.len()).sum();
    if total > MAX_MESSAGE_BYTES {
        return Err(Error::BatchRequestTooLong(format!(
            "The length of all the messages put together is more than the limit: {total} bytes (at most {MAX_MESSAGE_BYTES})."
        )));
    }
    let mut out = BatchOutput::default();
    let mut ids = Vec::new();
    let mut messages = Vec::new();
    for Entry { id, message } in entries {
        match message {
            Ok(m) => {
                ids.push(id);
                messages.push(m);
            }
            Err(e) => out.fail(id, &e),
        }
    }
    // Published together, in order (a FIFO topic keeps a batch's group order).
    for (id, result) in ids.into_iter().zip(n.publish_batch(&topic, messages).await) {
        match result {
            Ok(p) => out.published(id, p),
            Err(NotifyError::Internal(e)) => return Err(NotifyError::Internal(e).into()),
            Err(e) => out.fail(id, &e.into()),
        }
    }
    Ok(Output::Batch(out))
}
