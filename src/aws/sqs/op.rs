//! One typed operation per SQS action, parsed from the JSON-shaped input
//! both protocols decode into. Parsing checks the request's own shape
//! (required members, numbers, batch ids); what needs the queue (does it
//! exist, is the batch too long for it) is checked when it is applied.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::error::Error;
use crate::aws::input::{
    self, field, number, required, string, string_list, string_map, BatchError, InputError,
};
use crate::queue::message::Attributes;
use crate::queue::{QueueError, ReceiveRequest, SendRequest};

/// An SQS call, ready to apply.
#[derive(Debug)]
pub enum Op {
    CreateQueue { name: String, attributes: BTreeMap<String, String>, tags: BTreeMap<String, String> },
    GetQueueUrl { name: String, owner: Option<String> },
    ListQueues { prefix: Option<String>, page: Page },
    DeleteQueue { queue: String },
    PurgeQueue { queue: String },
    GetQueueAttributes { queue: String, names: Vec<String> },
    SetQueueAttributes { queue: String, attributes: BTreeMap<String, String> },
    SendMessage { queue: String, message: SendRequest },
    SendMessageBatch { queue: String, entries: Vec<Entry<SendRequest>>, body_bytes: usize },
    ReceiveMessage { queue: String, request: ReceiveRequest },
    DeleteMessage { queue: String, handle: String },
    DeleteMessageBatch { queue: String, entries: Vec<Entry<String>> },
    ChangeMessageVisibility { queue: String, handle: String, timeout: u32 },
    ChangeMessageVisibilityBatch { queue: String, entries: Vec<Entry<(String, u32)>> },
    TagQueue { queue: String, tags: BTreeMap<String, String> },
    UntagQueue { queue: String, keys: Vec<String> },
    ListQueueTags { queue: String },
    ListDeadLetterSourceQueues { queue: String, page: Page },
    StartMessageMoveTask { source: String, destination: Option<String>, rate: Option<u32> },
    ListMessageMoveTasks { source: String, max: u32 },
    CancelMessageMoveTask { handle: String },
}

/// One entry of a batch: its id and what it asks, or why it cannot be
/// done (answered in the batch's `Failed` list, not as the call's error).
#[derive(Debug)]
pub struct Entry<T> {
    pub id: String,
    pub item: Result<T, Error>,
}

/// Where a listing starts and how long it may be.
#[derive(Debug, Default)]
pub struct Page {
    pub max: Option<u32>,
    /// The last name of the previous page.
    pub after: Option<String>,
}

impl Op {
    /// The action's name, as the wire names it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateQueue { .. } => "CreateQueue",
            Op::GetQueueUrl { .. } => "GetQueueUrl",
            Op::ListQueues { .. } => "ListQueues",
            Op::DeleteQueue { .. } => "DeleteQueue",
            Op::PurgeQueue { .. } => "PurgeQueue",
            Op::GetQueueAttributes { .. } => "GetQueueAttributes",
            Op::SetQueueAttributes { .. } => "SetQueueAttributes",
            Op::SendMessage { .. } => "SendMessage",
            Op::SendMessageBatch { .. } => "SendMessageBatch",
            Op::ReceiveMessage { .. } => "ReceiveMessage",
            Op::DeleteMessage { .. } => "DeleteMessage",
            Op::DeleteMessageBatch { .. } => "DeleteMessageBatch",
            Op::ChangeMessageVisibility { .. } => "ChangeMessageVisibility",
            Op::ChangeMessageVisibilityBatch { .. } => "ChangeMessageVisibilityBatch",
            Op::TagQueue { .. } => "TagQueue",
            Op::UntagQueue { .. } => "UntagQueue",
            Op::ListQueueTags { .. } => "ListQueueTags",
            Op::ListDeadLetterSourceQueues { .. } => "ListDeadLetterSourceQueues",
            Op::StartMessageMoveTask { .. } => "StartMessageMoveTask",
            Op::ListMessageMoveTasks { .. } => "ListMessageMoveTasks",
            Op::CancelMessageMoveTask { .. } => "CancelMessageMoveTask",
        }
    }

    /// Parses `action`'s input.
    pub fn parse(action: &str, v: &Value) -> Result<Op, Error> {
        let queue = || required(v, "QueueUrl");
        Ok(match action {
            "CreateQueue" => Op::CreateQueue {
                name: required(v, "QueueName")?,
                attributes: string_map(v, &["Attributes"])?,
                tags: string_map(v, &["tags", "Tags"])?,
            },
            "GetQueueUrl" => {
                Op::GetQueueUrl { name: required(v, "QueueName")?, owner: string(v, "QueueOwnerAWSAccountId")? }
            }
            "ListQueues" => Op::ListQueues { prefix: string(v, "QueueNamePrefix")?, page: page(v, 1000)? },
            "DeleteQueue" => Op::DeleteQueue { queue: queue()? },
            "PurgeQueue" => Op::PurgeQueue { queue: queue()? },
            "GetQueueAttributes" => {
                Op::GetQueueAttributes { queue: queue()?, names: string_list(v, "AttributeNames")? }
            }
            "SetQueueAttributes" => {
                Op::SetQueueAttributes { queue: queue()?, attributes: string_map(v, &["Attributes"])? }
            }
            "SendMessage" => Op::SendMessage { queue: queue()?, message: send_request(v)? },
            "SendMessageBatch" => {
                let queue = queue()?;
                let raw = batch(v)?;
                let body_bytes = raw.iter().map(|(_, e)| e.get("MessageBody").and_then(Value::as_str).map_or(0, str::len)).sum();
                Op::SendMessageBatch { queue, entries: entries(raw, send_request), body_bytes }
            }
            "ReceiveMessage" => Op::ReceiveMessage { queue: queue()?, request: receive_request(v)? },
            "DeleteMessage" => Op::DeleteMessage { queue: queue()?, handle: required(v, "ReceiptHandle")? },
            "DeleteMessageBatch" => Op::DeleteMessageBatch {
                queue: queue()?,
                entries: entries(batch(v)?, |e| Ok(required(e, "ReceiptHandle")?)),
            },
            "ChangeMessageVisibility" => Op::ChangeMessageVisibility {
                queue: queue()?,
                handle: required(v, "ReceiptHandle")?,
                timeout: visibility_timeout(v)?,
            },
            "ChangeMessageVisibilityBatch" => Op::ChangeMessageVisibilityBatch {
                queue: queue()?,
                entries: entries(batch(v)?, |e| Ok((required(e, "ReceiptHandle")?, visibility_timeout(e)?))),
            },
            "TagQueue" => Op::TagQueue { queue: queue()?, tags: string_map(v, &["Tags", "tags"])? },
            "UntagQueue" => Op::UntagQueue { queue: queue()?, keys: string_list(v, "TagKeys")? },
            "ListQueueTags" => Op::ListQueueTags { queue: queue()? },
            "ListDeadLetterSourceQueues" => {
                Op::ListDeadLetterSourceQueues { queue: queue()?, page: page(v, 1000)? }
            }
            "StartMessageMoveTask" => Op::StartMessageMoveTask {
                source: required(v, "SourceArn")?,
                destination: string(v, "DestinationArn")?,
                rate: number(v, "MaxNumberOfMessagesPerSecond")?,
            },
            "ListMessageMoveTasks" => {
                let max = number(v, "MaxResults")?.unwrap_or(1);
                if !(1..=10).contains(&max) {
                    return Err(InputError::invalid(
                        "Value for parameter MaxResults is invalid. Reason: Must be between 1 and 10.",
                    )
                    .into());
                }
                Op::ListMessageMoveTasks { source: required(v, "SourceArn")?, max }
            }
            "CancelMessageMoveTask" => Op::CancelMessageMoveTask { handle: required(v, "TaskHandle")? },
            "AddPermission" | "RemovePermission" => {
                return Err(Error::UnsupportedOperation(format!(
                "{action} is not supported: gatehouse authorises callers with SigV4 credentials from routes.yaml."
            )))
            }
            other => {
                return Err(Error::InvalidAction(format!("The action {other} is not valid for this endpoint.")))
            }
        })
    }

    /// Parses a JSON-protocol body. The two batch actions that carry most
    /// of a busy queue's traffic are decoded straight into borrowed structs
    /// rather than a `serde_json::Value` tree, whose maps, keys and copied
    /// bodies (built, read, then freed) were about a tenth of the server's
    /// work per message. A body those shapes do not describe (an unknown
    /// key, a number where [`Op::parse`] also takes a string, a missing or
    /// null member) goes to [`Op::parse`], so the answer is the same either
    /// way. `Ok(None)`: the body is not a JSON object.
    pub fn parse_json(action: &str, body: &[u8]) -> Result<Op, ParseFailure> {
        if let Some(op) = typed_batch(action, body) {
            return op.map_err(ParseFailure::Op);
        }
        let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ParseFailure::Serialization(format!("The request body is not valid JSON: {e}"))
            })?
        };
        if !input.is_object() {
            return Err(ParseFailure::Serialization("The request body must be a JSON object.".into()));
        }
        Op::parse(action, &input).map_err(ParseFailure::Op)
    }
}

/// Why a JSON body is not an operation.
#[derive(Debug)]
pub enum ParseFailure {
    /// The body is not a JSON object.
    Serialization(String),
    Op(Error),
}

fn visibility_timeout(v: &Value) -> Result<u32, Error> {
    number(v, "VisibilityTimeout")?.ok_or_else(|| InputError::Missing("VisibilityTimeout".into()).into())
}

fn page(v: &Value, limit: u32) -> Result<Page, Error> {
    let max = number(v, "MaxResults")?;
    if max.is_some_and(|m| !(1..=limit).contains(&m)) {
        return Err(InputError::invalid(format!(
            "Value for parameter MaxResults is invalid. Reason: Must be between 1 and {limit}."
        ))
        .into());
    }
    let after = match string(v, "NextToken")? {
        Some(t) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| InputError::invalid("Invalid NextToken."))?,
        ),
        None => None,
    };
    Ok(Page { max, after })
}

fn receive_request(v: &Value) -> Result<ReceiveRequest, Error> {
    let mut system = string_list(v, "AttributeNames")?;
    system.extend(string_list(v, "MessageSystemAttributeNames")?);
    Ok(ReceiveRequest {
        max: number(v, "MaxNumberOfMessages")?,
        visibility_timeout: number(v, "VisibilityTimeout")?,
        wait_seconds: number(v, "WaitTimeSeconds")?,
        system_attribute_names: system,
        attribute_names: string_list(v, "MessageAttributeNames")?,
    })
}

fn send_request(v: &Value) -> Result<SendRequest, Error> {
    let system = input::message_attributes(field(v, "MessageSystemAttributes"), "MessageSystemAttributes")?;
    Ok(SendRequest {
        body: required(v, "MessageBody")?,
        delay_seconds: number(v, "DelaySeconds")?,
        attributes: input::message_attributes(field(v, "MessageAttributes"), "MessageAttributes")?,
        trace_header: trace_header(system)?,
        group_id: string(v, "MessageGroupId")?,
        dedup_id: string(v, "MessageDeduplicationId")?,
        sender: None,
        body_md5: None,
    })
}

/// `AWSTraceHeader`, the only system attribute a sender may set.
fn trace_header(system: Attributes) -> Result<Option<String>, Error> {
    let mut trace_header = None;
    for (name, value) in system {
        if name != "AWSTraceHeader" {
            return Err(QueueError::invalid_parameter(format!(
                "Message system attribute name '{name}' is invalid; only AWSTraceHeader can be set."
            ))
            .into());
        }
        trace_header = value.string_value;
    }
    Ok(trace_header)
}

/// A request's `Entries` with their ids, checked with [`check_ids`].
fn batch(v: &Value) -> Result<Vec<(String, &Value)>, Error> {
    let entries = input::list(v, "Entries")?.unwrap_or_default();
    let ids = check_ids(entries.iter().map(|e| required(e, "Id")))?;
    Ok(ids.into_iter().zip(entries).collect())
}

/// Each entry parsed with `parse`, its failure kept with its id.
fn entries<E, T>(raw: Vec<(String, E)>, parse: impl Fn(E) -> Result<T, Error>) -> Vec<Entry<T>> {
    raw.into_iter().map(|(id, e)| Entry { id, item: parse(e) }).collect()
}

/// Checks a batch's ids (see [`input::batch_ids`]).
fn check_ids(ids: impl ExactSizeIterator<Item = input::Read<String>>) -> Result<Vec<String>, Error> {
    input::batch_ids(ids).map_err(|e| match e {
        BatchError::Input(e) => e.into(),
        BatchError::Empty => Error::EmptyBatchRequest("There should be at least one entry in the request.".into()),
        BatchError::TooMany(n) => Error::TooManyEntriesInBatchRequest(format!(
            "Maximum number of entries per request are {}. You have sent {n}.",
            input::MAX_BATCH
        )),
        BatchError::BadId(id) => Error::InvalidBatchEntryId(format!(
            "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long: {id}"
        )),
        BatchError::Repeated(id) => Error::BatchEntryIdsNotDistinct(format!("Id {id} repeated.")),
    })
}

/// The typed decode of the two hot batch actions; `None` when `action` is
/// another or the body is not exactly their shape.
fn typed_batch(action: &str, body: &[u8]) -> Option<Result<Op, Error>> {
    match action {
        "SendMessageBatch" => {
            let input: BatchInput<SendEntry> = serde_json::from_slice(body).ok()?;
            let body_bytes = input.entries.iter().map(|e| e.body.len()).sum();
            let op = check_ids(input.entries.iter().map(|e| Ok(e.id.as_ref().to_owned()))).map(|ids| {
                let entries =
                    ids.into_iter().zip(&input.entries).map(|(id, e)| Entry { id, item: e.request() });
                Op::SendMessageBatch {
                    queue: input.queue_url.into_owned(),
                    entries: entries.collect(),
                    body_bytes,
                }
            });
            Some(op)
        }
        "DeleteMessageBatch" => {
            let input: BatchInput<DeleteEntry> = serde_json::from_slice(body).ok()?;
            let op = check_ids(input.entries.iter().map(|e| Ok(e.id.as_ref().to_owned()))).map(|ids| {
                let entries = ids
                    .into_iter()
                    .zip(&input.entries)
                    .map(|(id, e)| Entry { id, item: Ok(e.receipt_handle.as_ref().to_owned()) });
                Op::DeleteMessageBatch { queue: input.queue_url.into_owned(), entries: entries.collect() }
            });
            Some(op)
        }
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchInput<'a, E> {
    #[serde(rename = "QueueUrl", borrow)]
    queue_url: Cow<'a, str>,
    #[serde(rename = "Entries")]
    entries: Vec<E>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendEntry<'a> {
    #[serde(rename = "Id", borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "MessageBody", borrow)]
    body: Cow<'a, str>,
    #[serde(rename = "DelaySeconds", default)]
    delay_seconds: Option<u32>,
    #[serde(rename = "MessageAttributes", default)]
    attributes: Option<Value>,
    #[serde(rename = "MessageSystemAttributes", default)]
    system_attributes: Option<Value>,
    #[serde(rename = "MessageGroupId", default, borrow)]
    group_id: Option<Cow<'a, str>>,
    #[serde(rename = "MessageDeduplicationId", default, borrow)]
    dedup_id: Option<Cow<'a, str>>,
}

impl SendEntry<'_> {
    /// As [`send_request`] reads the same entry from a `Value`.
    fn request(&self) -> Result<SendRequest, Error> {
        let system = input::message_attributes(self.system_attributes.as_ref(), "MessageSystemAttributes")?;
        Ok(SendRequest {
            body: self.body.as_ref().to_owned(),
            delay_seconds: self.delay_seconds,
            attributes: input::message_attributes(self.attributes.as_ref(), "MessageAttributes")?,
            trace_header: trace_header(system)?,
            group_id: self.group_id.as_deref().map(str::to_owned),
            dedup_id: self.dedup_id.as_deref().map(str::to_owned),
            sender: None,
            body_md5: None,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteEntry<'a> {
    #[serde(rename = "Id", borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "ReceiptHandle", borrow)]
    receipt_handle: Cow<'a, str>,
}
