//! One typed operation per SNS action, parsed from the Query protocol's
//! parameters (rebuilt into their JSON shape by `query::nested_to_json`).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use super::error::Error;
use crate::aws::input::{self, field, required, string, string_list, string_map, BatchError, InputError};
use crate::notify::{Message, NotifyError};

/// An SNS call, ready to apply.
#[derive(Debug)]
pub enum Op {
    CreateTopic {
        name: String,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    },
    DeleteTopic {
        topic: String,
    },
    GetTopicAttributes {
        topic: String,
    },
    SetTopicAttributes {
        topic: String,
        name: String,
        value: String,
    },
    ListTopics {
        after: Option<String>,
    },
    Subscribe {
        topic: String,
        protocol: String,
        endpoint: String,
        attributes: BTreeMap<String, String>,
        return_arn: bool,
    },
    ConfirmSubscription {
        topic: String,
        token: String,
        authenticate_on_unsubscribe: bool,
    },
    Unsubscribe {
        subscription: String,
    },
    ListSubscriptions {
        after: Option<String>,
    },
    ListSubscriptionsByTopic {
        topic: String,
        after: Option<String>,
    },
    GetSubscriptionAttributes {
        subscription: String,
    },
    SetSubscriptionAttributes {
        subscription: String,
        name: String,
        value: String,
    },
    Publish {
        topic: String,
        message: Message,
    },
    PublishBatch {
        topic: String,
        entries: Vec<Entry>,
    },
    TagResource {
        resource: String,
        tags: BTreeMap<String, String>,
    },
    UntagResource {
        resource: String,
        keys: Vec<String>,
    },
    ListTagsForResource {
        resource: String,
    },
}

/// One entry of `PublishBatch`: its id and message, or why it cannot be
/// published (answered in `Failed`).
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub message: Result<Message, Error>,
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateTopic { .. } => "CreateTopic",
            Op::DeleteTopic { .. } => "DeleteTopic",
            Op::GetTopicAttributes { .. } => "GetTopicAttributes",
            Op::SetTopicAttributes { .. } => "SetTopicAttributes",
            Op::ListTopics { .. } => "ListTopics",
            Op::Subscribe { .. } => "Subscribe",
            Op::ConfirmSubscription { .. } => "ConfirmSubscription",
            Op::Unsubscribe { .. } => "Unsubscribe",
            Op::ListSubscriptions { .. } => "ListSubscriptions",
            Op::ListSubscriptionsByTopic { .. } => "ListSubscriptionsByTopic",
            Op::GetSubscriptionAttributes { .. } => "GetSubscriptionAttributes",
            Op::SetSubscriptionAttributes { .. } => "SetSubscriptionAttributes",
            Op::Publish { .. } => "Publish",
            Op::PublishBatch { .. } => "PublishBatch",
            Op::TagResource { .. } => "TagResource",
            Op::UntagResource { .. } => "UntagResource",
            Op::ListTagsForResource { .. } => "ListTagsForResource",
        }
    }

    /// Parses `action`'s input.
    pub fn parse(action: &str, v: &Value) -> Result<Op, Error> {
        let topic = || required(v, "TopicArn");
        let subscription = || required(v, "SubscriptionArn");
        let after = || next_token(v);
        Ok(match action {
            "CreateTopic" => Op::CreateTopic {
                name: required(v, "Name")?,
                attributes: string_map(v, &["Attributes"])?,
                tags: tags(v)?,
            },
            "DeleteTopic" => Op::DeleteTopic { topic: topic()? },
            "GetTopicAttributes" => Op::GetTopicAttributes { topic: topic()? },
            "SetTopicAttributes" => Op::SetTopicAttributes {
                topic: topic()?,
                name: required(v, "AttributeName")?,
                value: string(v, "AttributeValue")?.unwrap_or_default(),
            },
            "ListTopics" => Op::ListTopics { after: after()? },
            "Subscribe" => Op::Subscribe {
                topic: topic()?,
                protocol: required(v, "Protocol")?,
                endpoint: string(v, "Endpoint")?.unwrap_or_default(),
                attributes: string_map(v, &["Attributes"])?,
                return_arn: input::boolean(v, "ReturnSubscriptionArn")?.unwrap_or(false),
            },
            "ConfirmSubscription" => Op::ConfirmSubscription {
                topic: topic()?,
                token: required(v, "Token")?,
                authenticate_on_unsubscribe: input::boolean(v, "AuthenticateOnUnsubscribe")?.unwrap_or(false),
            },
            "Unsubscribe" => Op::Unsubscribe { subscription: subscription()? },
            "ListSubscriptions" => Op::ListSubscriptions { after: after()? },
            "ListSubscriptionsByTopic" => Op::ListSubscriptionsByTopic { topic: topic()?, after: after()? },
            "GetSubscriptionAttributes" => Op::GetSubscriptionAttributes { subscription: subscription()? },
            "SetSubscriptionAttributes" => Op::SetSubscriptionAttributes {
                subscription: subscription()?,
                name: required(v, "AttributeName")?,
                value: string(v, "AttributeValue")?.unwrap_or_default(),
            },
            "Publish" => Op::Publish { topic: target(v)?, message: message(v)? },
            "PublishBatch" => {
                let topic = topic()?;
                let entries = input::list(v, "PublishBatchRequestEntries")?.unwrap_or_default();
                let ids = check_ids(entries.iter().map(|e| required(e, "Id")))?;
                let entries = ids.into_iter().zip(entries).map(|(id, e)| Entry { id, message: message(e) });
                Op::PublishBatch { topic, entries: entries.collect() }
            }
            "TagResource" => Op::TagResource { resource: required(v, "ResourceArn")?, tags: tags(v)? },
            "UntagResource" => {
                Op::UntagResource { resource: required(v, "ResourceArn")?, keys: string_list(v, "TagKeys")? }
            }
            "ListTagsForResource" => Op::ListTagsForResource { resource: required(v, "ResourceArn")? },
            other => {
                return Err(Error::InvalidAction(format!(
                    "The action {other} is not valid for this endpoint."
                )))
            }
        })
    }
}

/// `Publish`'s destination: `TopicArn`, or `TargetArn` naming a topic.
fn target(v: &Value) -> Result<String, Error> {
    if field(v, "PhoneNumber").is_some() {
        return Err(NotifyError::invalid("Invalid parameter: PhoneNumber: SMS is not supported").into());
    }
    match (string(v, "TopicArn")?, string(v, "TargetArn")?) {
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => Err(InputError::Missing("TopicArn or TargetArn".into()).into()),
    }
}

/// A message from `Publish`'s (or a batch entry's) members.
fn message(v: &Value) -> Result<Message, Error> {
    let body = required(v, "Message")?;
    let per_protocol = match string(v, "MessageStructure")?.as_deref() {
        None => None,
        Some("json") => Some(per_protocol(&body)?),
        Some(other) => {
            return Err(NotifyError::invalid(format!(
                "Invalid parameter: MessageStructure: {other} is not json"
            ))
            .into())
        }
    };
    Ok(Message {
        body,
        subject: string(v, "Subject")?,
        attributes: input::message_attributes(field(v, "MessageAttributes"), "MessageAttributes")?,
        group_id: string(v, "MessageGroupId")?,
        dedup_id: string(v, "MessageDeduplicationId")?,
        per_protocol,
    })
}

/// `MessageStructure=json`: a JSON object of strings with a `default`.
fn per_protocol(body: &str) -> Result<BTreeMap<String, String>, Error> {
    let bad = |why: &str| -> Error {
        NotifyError::invalid(format!("Invalid parameter: Message Structure - {why}")).into()
    };
    let map: BTreeMap<String, Value> =
        serde_json::from_str(body).map_err(|_| bad("JSON message body failed to parse"))?;
    let map: BTreeMap<String, String> = map
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(bad("every protocol's message must be a string")),
        })
        .collect::<Result<_, _>>()?;
    if !map.contains_key("default") {
        return Err(bad("No default entry in JSON message body"));
    }
    Ok(map)
}

/// `Tags` as the Query protocol lists them: `[{Key, Value}]`.
fn tags(v: &Value) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for t in input::list(v, "Tags")?.unwrap_or_default() {
        out.insert(required(t, "Key")?, string(t, "Value")?.unwrap_or_default());
    }
    Ok(out)
}

/// Where a listing resumes: the last ARN of the previous page.
fn next_token(v: &Value) -> Result<Option<String>, Error> {
    let Some(token) = string(v, "NextToken")? else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(Some)
        .ok_or_else(|| NotifyError::invalid("Invalid parameter: NextToken").into())
}

fn check_ids(ids: impl ExactSizeIterator<Item = input::Read<String>>) -> Result<Vec<String>, Error> {
    input::batch_ids(ids).map_err(|e| match e {
        BatchError::Input(e) => e.into(),
        BatchError::Empty => {
            Error::EmptyBatchRequest("The batch request doesn't contain any entries.".into())
        }
        BatchError::TooMany(n) => Error::TooManyEntriesInBatchRequest(format!(
            "The batch request contains more entries than permissible: {n} (at most {}).",
            input::MAX_BATCH
        )),
        BatchError::BadId(id) => Error::InvalidBatchEntryId(format!(
            "The Id of a batch entry in a batch request doesn't abide by the specification: {id}"
        )),
        BatchError::Repeated(id) => Error::BatchEntryIdsNotDistinct(format!(
            "Two or more batch entries in the request have the same Id: {id}"
        )),
    })
}
