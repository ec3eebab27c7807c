//! The SQS API: every action, from its (JSON-shaped) input to its output,
//! rendered as AWS JSON or as Query XML.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::json as json_text;
use super::query::Xml;
use crate::queue::message::{AttributeValue, Attributes};
use crate::queue::storage::Storage;
use crate::queue::{
    decode_binary, Queue, QueueEngine, QueueError, ReceiveRequest, ReceivedMessage, SendRequest,
};

/// One API call.
pub struct Call<'a> {
    pub action: &'a str,
    pub input: &'a Value,
    /// The `Host` the client used, for queue URLs.
    pub host: &'a str,
    /// Who is calling (`SenderId` of sent messages).
    pub sender: Option<String>,
}

/// Batches carry at most this many entries.
const MAX_BATCH: usize = 10;

fn field<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn string(v: &Value, key: &str) -> Result<Option<String>, QueueError> {
    match field(v, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(QueueError::invalid_parameter(format!("The parameter {key} must be a string."))),
    }
}

fn required(v: &Value, key: &str) -> Result<String, QueueError> {
    string(v, key)?
        .ok_or_else(|| QueueError::MissingParameter(format!("The request must contain the parameter {key}.")))
}

fn number(v: &Value, key: &str) -> Result<Option<u32>, QueueError> {
    let bad = || {
        QueueError::invalid_parameter(format!(
            "Value for parameter {key} is invalid: expected a whole number."
        ))
    };
    match field(v, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse::<u32>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn string_map(v: &Value, keys: &[&str]) -> Result<BTreeMap<String, String>, QueueError> {
    let Some(obj) = keys.iter().find_map(|k| field(v, k)) else { return Ok(BTreeMap::new()) };
    let obj = obj
        .as_object()
        .ok_or_else(|| QueueError::invalid_parameter(format!("{} must be a map.", keys[0])))?;
    obj.iter()
        .map(|(k, x)| match x {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(n) => Ok((k.clone(), n.to_string())),
            Value::Bool(b) => Ok((k.clone(), b.to_string())),
            _ => Err(QueueError::invalid_parameter(format!("The value of {k} must be a string."))),
        })
        .collect()
}

fn string_list(v: &Value, key: &str) -> Result<Vec<String>, QueueError> {
    match field(v, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| QueueError::invalid_parameter(format!("{key} must list strings.")))
            })
            .collect(),
        Some(_) => Err(QueueError::invalid_parameter(format!("{key} must be a list."))),
    }
}

fn message_attributes(v: &Value, key: &str) -> Result<Attributes, QueueError> {
    attributes_of(field(v, key), key)
}

/// Message attributes from the map named `key` (absent: none).
fn attributes_of(obj: Option<&Value>, key: &str) -> Result<Attributes, QueueError> {
    let Some(obj) = obj.filter(|x| !x.is_null()) else { return Ok(Attributes::new()) };
    let obj =
        obj.as_object().ok_or_else(|| QueueError::invalid_parameter(format!("{key} must be a map.")))?;
    let mut out = Attributes::new();
    for (name, value) in obj {
        let data_type = string(value, "DataType")?.ok_or_else(|| {
            QueueError::invalid_parameter(format!(
                "The message attribute '{name}' must contain a non-empty attribute type."
            ))
        })?;
        let binary = match field(value, "BinaryValue") {
            Some(Value::String(b)) => Some(decode_binary(b)?),
            Some(_) => return Err(QueueError::invalid_parameter("BinaryValue must be base64 text.")),
            None => None,
        };
        out.insert(
            name.clone(),
            AttributeValue { data_type, string_value: string(value, "StringValue")?, binary_value: binary },
        );
    }
    Ok(out)
}

fn queue<S: Storage>(engine: &QueueEngine<S>, input: &Value) -> Result<Arc<Queue>, QueueError> {
    engine.queue_from_url(&required(input, "QueueUrl")?)
}

fn queue_from_arn<S: Storage>(engine: &QueueEngine<S>, arn: &str) -> Result<Arc<Queue>, QueueError> {
    let name = arn.strip_prefix(&engine.account().arn_prefix()).ok_or_else(|| {
        QueueError::ResourceNotFound(format!("{arn} is not a queue ARN of this account and region."))
    })?;
    engine
        .queue(name)
        .map_err(|_| QueueError::ResourceNotFound(format!("The resource {arn} does not exist.")))
}

/// A batch entry as the batch actions read it: a JSON object in general,
/// or the typed form a JSON-protocol request is first decoded into (see
/// [`execute_typed`]).
trait Entry {
    /// The entry's `Id`; an entry without one fails the whole call.
    fn id(&self) -> Result<String, QueueError>;
}

impl Entry for Value {
    fn id(&self) -> Result<String, QueueError> {
        required(self, "Id")
    }
}

/// A batch's entries once [`check_batch`] accepted them, with their ids
/// (read once, in order).
struct Checked<'e, E> {
    entries: &'e [E],
    ids: Vec<String>,
}

/// A request's `Entries`, checked with [`check_batch`].
fn batch_entries(input: &Value) -> Result<Checked<'_, Value>, QueueError> {
    let entries = match field(input, "Entries") {
        Some(Value::Array(e)) => e,
        None => {
            return Err(QueueError::EmptyBatchRequest(
                "There should be at least one entry in the request.".into(),
            ))
        }
        Some(_) => return Err(QueueError::invalid_parameter("Entries must be a list.")),
    };
    check_batch(entries)
}

/// Checks a batch's shape: 1–10 entries with distinct, well-formed ids.
fn check_batch<E: Entry>(entries: &[E]) -> Result<Checked<'_, E>, QueueError> {
    if entries.is_empty() {
        return Err(QueueError::EmptyBatchRequest(
            "There should be at least one entry in the request.".into(),
        ));
    }
    if entries.len() > MAX_BATCH {
        return Err(QueueError::TooManyEntriesInBatchRequest(format!(
            "Maximum number of entries per request are {MAX_BATCH}. You have sent {}.",
            entries.len()
        )));
    }
    // At most ten ids: a linear look is cheaper than hashing them.
    let mut seen: Vec<String> = Vec::with_capacity(entries.len());
    for e in entries {
        let id = e.id()?;
        let valid = !id.is_empty()
            && id.len() <= 80
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(QueueError::InvalidBatchEntryId(format!(
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long: {id}"
            )));
        }
        if seen.contains(&id) {
            return Err(QueueError::BatchEntryIdsNotDistinct(format!("Id {id} repeated.")));
        }
        seen.push(id);
    }
    Ok(Checked { entries, ids: seen })
}

fn send_request(v: &Value, sender: &Option<String>) -> Result<SendRequest, QueueError> {
    let system = message_attributes(v, "MessageSystemAttributes")?;
    let trace_header = trace_header(system)?;
    Ok(SendRequest {
        body: required(v, "MessageBody")?,
        delay_seconds: number(v, "DelaySeconds")?,
        attributes: message_attributes(v, "MessageAttributes")?,
        trace_header,
        group_id: string(v, "MessageGroupId")?,
        dedup_id: string(v, "MessageDeduplicationId")?,
        sender: sender.clone(),
    })
}

/// `AWSTraceHeader`, the only system attribute a sender may set.
fn trace_header(system: Attributes) -> Result<Option<String>, QueueError> {
    let mut trace_header = None;
    for (name, value) in system {
        if name != "AWSTraceHeader" {
            return Err(QueueError::invalid_parameter(format!(
                "Message system attribute name '{name}' is invalid; only AWSTraceHeader can be set."
            )));
        }
        trace_header = value.string_value;
    }
    Ok(trace_header)
}

/// A batch's entries: the ids and parsed values of the good ones, and the
/// `Failed` answers of the others.
type ParsedEntries<T> = (Vec<String>, Vec<T>, Vec<Value>);

/// Parses each checked batch entry with `parse`.
fn parse_entries<E, T>(
    batch: Checked<'_, E>,
    parse: impl Fn(&E) -> Result<T, QueueError>,
) -> ParsedEntries<T> {
    let (mut ids, mut items, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for (e, id) in batch.entries.iter().zip(batch.ids) {
        match parse(e) {
            Ok(x) => {
                ids.push(id);
                items.push(x);
            }
            Err(err) => failures.push(failed(&id, &err)),
        }
    }
    (ids, items, failures)
}

/// The answer of a batch whose successful entries carry only their `Id`.
fn ids_answer(ids: Vec<String>, results: Vec<Result<(), QueueError>>, mut failures: Vec<Value>) -> Output {
    let mut successful = Vec::new();
    for (id, r) in ids.into_iter().zip(results) {
        match r {
            Ok(()) => successful.push(Success { id, sent: None }),
            Err(e) => failures.push(failed(&id, &e)),
        }
    }
    Output::Batch { successful, failed: failures }
}

fn failed(id: &str, e: &QueueError) -> Value {
    json!({ "Id": id, "SenderFault": e.fault() == "Sender", "Code": e.query_code(), "Message": e.to_string() })
}

fn send_output(r: &crate::queue::SendResult) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("MessageId".into(), json!(r.message_id));
    m.insert("MD5OfMessageBody".into(), json!(r.md5_of_body));
    if let Some(x) = &r.md5_of_attributes {
        m.insert("MD5OfMessageAttributes".into(), json!(x));
    }
    if let Some(x) = &r.md5_of_system_attributes {
        m.insert("MD5OfMessageSystemAttributes".into(), json!(x));
    }
    if let Some(x) = &r.sequence_number {
        m.insert("SequenceNumber".into(), json!(x));
    }
    m
}

fn message_output(m: ReceivedMessage) -> Value {
    let mut o = Map::new();
    o.insert("MessageId".into(), json!(m.message_id));
    o.insert("ReceiptHandle".into(), json!(m.receipt_handle));
    o.insert("MD5OfBody".into(), json!(m.md5_of_body));
    o.insert("Body".into(), json!(m.body));
    if !m.system_attributes.is_empty() {
        o.insert("Attributes".into(), json!(m.system_attributes));
    }
    if let Some(md5) = m.md5_of_attributes {
        o.insert("MD5OfMessageAttributes".into(), json!(md5));
        let attrs: Map<String, Value> = m
            .attributes
            .into_iter()
            .map(|(name, v)| {
                let mut a = Map::new();
                a.insert("DataType".into(), json!(v.data_type));
                if let Some(s) = v.string_value {
                    a.insert("StringValue".into(), json!(s));
                }
                if let Some(b) = v.binary_value {
                    a.insert(
                        "BinaryValue".into(),
                        json!(base64::engine::general_purpose::STANDARD.encode(b)),
                    );
                }
                (name, Value::Object(a))
            })
            .collect();
        o.insert("MessageAttributes".into(), Value::Object(attrs));
    }
    Value::Object(o)
}

/// Encodes a list position for pagination.
fn page_token(after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after)
}

fn paginate(names: Vec<String>, input: &Value) -> Result<(Vec<String>, Option<String>), QueueError> {
    let max = number(input, "MaxResults")?;
    if let Some(m) = max {
        if !(1..=1000).contains(&m) {
            return Err(QueueError::invalid_parameter(
                "Value for parameter MaxResults is invalid. Reason: Must be between 1 and 1000.",
            ));
        }
    }
    let after = match string(input, "NextToken")? {
        Some(t) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| QueueError::invalid_parameter("Invalid NextToken."))?,
        ),
        None => None,
    };
    let rest: Vec<String> = names.into_iter().filter(|n| after.as_ref().is_none_or(|a| n > a)).collect();
    match max {
        Some(m) if rest.len() > m as usize => {
            let page: Vec<String> = rest.into_iter().take(m as usize).collect();
            let token = page.last().map(|l| page_token(l));
            Ok((page, token))
        }
        _ => Ok((rest, None)),
    }
}

/// `SendMessageBatch` on checked entries: `body_len` gives each entry's
/// body size (for the batch's size limit), `request` its message.
async fn send_batch<S: Storage, E>(
    engine: &QueueEngine<S>,
    q: &Queue,
    batch: Checked<'_, E>,
    body_len: impl Fn(&E) -> usize,
    request: impl Fn(&E) -> Result<SendRequest, QueueError>,
) -> Result<Output, QueueError> {
    let limit = q.attributes().max_message_size as usize;
    let total: usize = batch.entries.iter().map(body_len).sum();
    if total > limit {
        return Err(QueueError::BatchRequestTooLong(format!(
            "Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes."
        )));
    }
    let (ids, requests, mut failures) = parse_entries(batch, request);
    let results = if requests.is_empty() { Vec::new() } else { engine.send(q, requests).await? };
    let mut successful = Vec::new();
    for (id, r) in ids.into_iter().zip(results) {
        match r {
            Ok(r) => successful.push(Success { id, sent: Some(r) }),
            Err(e) => failures.push(failed(&id, &e)),
        }
    }
    Ok(Output::Batch { successful, failed: failures })
}

/// The JSON protocol's two batch actions that carry most of a busy queue's
/// traffic, decoded straight from the request body into borrowed structs
/// rather than a `serde_json::Value` tree, whose maps, keys and copied
/// bodies (built, read, then freed) were about a tenth of the server's work
/// per message. A request these shapes do not describe (an unknown key, a
/// number where the general path also takes a string, a missing or null
/// field) fails the typed decode and takes the general path instead, so its
/// answer or error is the general path's in every case.
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

impl Entry for SendEntry<'_> {
    fn id(&self) -> Result<String, QueueError> {
        Ok(self.id.as_ref().to_owned())
    }
}

impl SendEntry<'_> {
    /// As [`send_request`] reads the same entry from a `Value`.
    fn request(&self, sender: &Option<String>) -> Result<SendRequest, QueueError> {
        let system = attributes_of(self.system_attributes.as_ref(), "MessageSystemAttributes")?;
        let trace_header = trace_header(system)?;
        Ok(SendRequest {
            body: self.body.as_ref().to_owned(),
            delay_seconds: self.delay_seconds,
            attributes: attributes_of(self.attributes.as_ref(), "MessageAttributes")?,
            trace_header,
            group_id: self.group_id.as_deref().map(str::to_owned),
            dedup_id: self.dedup_id.as_deref().map(str::to_owned),
            sender: sender.clone(),
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

impl Entry for DeleteEntry<'_> {
    fn id(&self) -> Result<String, QueueError> {
        Ok(self.id.as_ref().to_owned())
    }
}

/// Runs `action` from its raw JSON body when it is one of the typed batch
/// actions and the body decodes as one; `None` sends the request down the
/// general path ([`execute`]).
pub async fn execute_typed<S: Storage>(
    engine: &Arc<QueueEngine<S>>,
    action: &str,
    body: &[u8],
    sender: &Option<String>,
) -> Option<Result<Output, QueueError>> {
    match action {
        "SendMessageBatch" => {
            let input: BatchInput<SendEntry> = serde_json::from_slice(body).ok()?;
            let run = async {
                let q = engine.queue_from_url(&input.queue_url)?;
                let batch = check_batch(&input.entries)?;
                send_batch(engine, &q, batch, |e| e.body.len(), |e| e.request(sender)).await
            };
            Some(run.await)
        }
        "DeleteMessageBatch" => {
            let input: BatchInput<DeleteEntry> = serde_json::from_slice(body).ok()?;
            let run = async {
                let q = engine.queue_from_url(&input.queue_url)?;
                let batch = check_batch(&input.entries)?;
                let (ids, handles, failures) =
                    parse_entries(batch, |e| Ok(e.receipt_handle.as_ref().to_owned()));
                let results = engine.delete(&q, &handles).await?;
                Ok(ids_answer(ids, results, failures))
            };
            Some(run.await)
        }
        _ => None,
    }
}

/// An action's output.
pub enum Output {
    /// The AWS JSON answer as a value (most actions).
    Value(Value),
    /// `ReceiveMessage`'s messages. They are most of a busy queue's answer
    /// bytes, and are written into the JSON answer directly rather than
    /// through a `Value` (which copied every body and built a map per
    /// message, to free it right after).
    Messages(Vec<ReceivedMessage>),
    /// A batch's answer: its successful entries and its `Failed` ones.
    /// Written directly too (the send and delete batches are two of the
    /// three calls per ten messages).
    Batch { successful: Vec<Success>, failed: Vec<Value> },
}

/// A batch entry that succeeded.
pub struct Success {
    id: String,
    /// `SendMessageBatch`: what was sent. Other batches answer the `Id` only.
    sent: Option<crate::queue::SendResult>,
}

impl Output {
    /// The answer as a value (what the Query protocol renders as XML).
    pub fn into_value(self) -> Value {
        match self {
            Output::Value(v) => v,
            Output::Messages(m) if m.is_empty() => json!({}),
            Output::Messages(m) => {
                json!({ "Messages": m.into_iter().map(message_output).collect::<Vec<_>>() })
            }
            Output::Batch { successful, failed } => {
                let successful: Vec<Value> = successful
                    .into_iter()
                    .map(|s| match s.sent {
                        Some(r) => {
                            let mut m = send_output(&r);
                            m.insert("Id".into(), json!(s.id));
                            Value::Object(m)
                        }
                        None => json!({ "Id": s.id }),
                    })
                    .collect();
                json!({ "Successful": successful, "Failed": failed })
            }
        }
    }

    /// The AWS JSON answer: the same text as `json_text::to_string(&self.into_value())`.
    pub fn to_json(&self) -> String {
        match self {
            Output::Value(v) => json_text::to_string(v),
            Output::Messages(m) => messages_json(m),
            Output::Batch { successful, failed } => batch_json(successful, failed),
        }
    }
}

/// `{"Failed":[…],"Successful":[…]}` written as [`Output::into_value`]'s
/// value serialises (keys sorted, as the value's maps keep them).
fn batch_json(successful: &[Success], failed: &[Value]) -> String {
    let mut out = String::with_capacity(40 + successful.len() * 160);
    out.push_str("{\"Failed\":");
    json_text::push_list(&mut out, '[', failed, ']', |out, f| out.push_str(&json_text::to_string(f)));
    out.push_str(",\"Successful\":");
    json_text::push_list(&mut out, '[', successful, ']', |out, s| {
        json_text::push_field(out, "{\"Id\":", &s.id);
        if let Some(r) = &s.sent {
            if let Some(md5) = &r.md5_of_attributes {
                json_text::push_field(out, ",\"MD5OfMessageAttributes\":", md5);
            }
            json_text::push_field(out, ",\"MD5OfMessageBody\":", &r.md5_of_body);
            if let Some(md5) = &r.md5_of_system_attributes {
                json_text::push_field(out, ",\"MD5OfMessageSystemAttributes\":", md5);
            }
            json_text::push_field(out, ",\"MessageId\":", &r.message_id);
            if let Some(n) = &r.sequence_number {
                json_text::push_field(out, ",\"SequenceNumber\":", n);
            }
        }
        out.push('}');
    });
    out.push('}');
    out
}

/// `{"Messages":[…]}` (or `{}`) written as [`message_output`]'s values
/// serialise: keys in the same (sorted) order, strings escaped alike.
fn messages_json(messages: &[ReceivedMessage]) -> String {
    if messages.is_empty() {
        return "{}".to_owned();
    }
    let size: usize = messages.iter().map(|m| m.body.len() + m.receipt_handle.len() + 200).sum();
    let mut out = String::with_capacity(size + 16);
    out.push_str("{\"Messages\":");
    json_text::push_list(&mut out, '[', messages, ']', |out, m| {
        out.push('{');
        if !m.system_attributes.is_empty() {
            out.push_str("\"Attributes\":");
            json_text::push_list(out, '{', &m.system_attributes, '}', |out, (name, value)| {
                json_text::push_str(out, name);
                out.push(':');
                json_text::push_str(out, value);
            });
            out.push(',');
        }
        json_text::push_field(out, "\"Body\":", &m.body);
        json_text::push_field(out, ",\"MD5OfBody\":", &m.md5_of_body);
        if let Some(md5) = &m.md5_of_attributes {
            json_text::push_field(out, ",\"MD5OfMessageAttributes\":", md5);
            out.push_str(",\"MessageAttributes\":");
            json_text::push_list(out, '{', &m.attributes, '}', |out, (name, v)| {
                json_text::push_str(out, name);
                out.push_str(":{");
                if let Some(b) = &v.binary_value {
                    let b = base64::engine::general_purpose::STANDARD.encode(b);
                    json_text::push_field(out, "\"BinaryValue\":", &b);
                    out.push(',');
                }
                json_text::push_field(out, "\"DataType\":", &v.data_type);
                if let Some(s) = &v.string_value {
                    json_text::push_field(out, ",\"StringValue\":", s);
                }
                out.push('}');
            });
        }
        json_text::push_field(out, ",\"MessageId\":", &m.message_id);
        json_text::push_field(out, ",\"ReceiptHandle\":", &m.receipt_handle);
        out.push('}');
    });
    out.push('}');
    out
}

/// Runs one action.
pub async fn execute<S: Storage>(engine: &Arc<QueueEngine<S>>, call: Call<'_>) -> Result<Output, QueueError> {
    if call.action == "ReceiveMessage" {
        let input = call.input;
        let q = queue(engine, input)?;
        let mut system = string_list(input, "AttributeNames")?;
        system.extend(string_list(input, "MessageSystemAttributeNames")?);
        let req = ReceiveRequest {
            max: number(input, "MaxNumberOfMessages")?,
            visibility_timeout: number(input, "VisibilityTimeout")?,
            wait_seconds: number(input, "WaitTimeSeconds")?,
            system_attribute_names: system,
            attribute_names: string_list(input, "MessageAttributeNames")?,
        };
        return Ok(Output::Messages(engine.receive(&q, &req).await?));
    }
    execute_value(engine, call).await.map(Output::Value)
}

/// Runs an action whose output is a value.
async fn execute_value<S: Storage>(
    engine: &Arc<QueueEngine<S>>,
    call: Call<'_>,
) -> Result<Value, QueueError> {
    let input = call.input;
    let url = |name: &str| engine.url(call.host, name);
    match call.action {
        "CreateQueue" => {
            let name = required(input, "QueueName")?;
            let attrs = string_map(input, &["Attributes"])?;
            let tags = string_map(input, &["tags", "Tags"])?;
            let q = engine.create_queue(&name, &attrs, tags).await?;
            Ok(json!({ "QueueUrl": url(&q.name) }))
        }
        "GetQueueUrl" => {
            let name = required(input, "QueueName")?;
            if let Some(owner) = string(input, "QueueOwnerAWSAccountId")? {
                if owner != engine.account().id {
                    return Err(QueueError::no_queue());
                }
            }
            let q = engine.queue(&name)?;
            Ok(json!({ "QueueUrl": url(&q.name) }))
        }
        "ListQueues" => {
            let prefix = string(input, "QueueNamePrefix")?;
            let (names, next) = paginate(engine.list(prefix.as_deref()), input)?;
            let mut out = Map::new();
            if !names.is_empty() {
                out.insert("QueueUrls".into(), json!(names.iter().map(|n| url(n)).collect::<Vec<_>>()));
            }
            if let Some(t) = next {
                out.insert("NextToken".into(), json!(t));
            }
            Ok(Value::Object(out))
        }
        "DeleteQueue" => {
            let q = queue(engine, input)?;
            engine.delete_queue(&q).await?;
            Ok(json!({}))
        }
        "PurgeQueue" => {
            let q = queue(engine, input)?;
            engine.purge(&q).await?;
            Ok(json!({}))
        }
        "GetQueueAttributes" => {
            let q = queue(engine, input)?;
            let names = string_list(input, "AttributeNames")?;
            let attrs = engine.get_attributes(&q, &names).await?;
            Ok(if attrs.is_empty() { json!({}) } else { json!({ "Attributes": attrs }) })
        }
        "SetQueueAttributes" => {
            let q = queue(engine, input)?;
            let attrs = string_map(input, &["Attributes"])?;
            engine.set_attributes(&q, &attrs).await?;
            Ok(json!({}))
        }
        "SendMessage" => {
            let q = queue(engine, input)?;
            let req = send_request(input, &call.sender)?;
            let mut results = engine.send(&q, vec![req]).await?;
            let r = results.pop().ok_or_else(|| QueueError::Internal("no result".into()))??;
            Ok(Value::Object(send_output(&r)))
        }
        "SendMessageBatch" => {
            let q = queue(engine, input)?;
            let batch = batch_entries(input)?;
            let body_len = |e: &Value| e.get("MessageBody").and_then(Value::as_str).map_or(0, str::len);
            let output = send_batch(engine, &q, batch, body_len, |e| send_request(e, &call.sender)).await?;
            Ok(output.into_value())
        }
        "DeleteMessage" => {
            let q = queue(engine, input)?;
            let handle = required(input, "ReceiptHandle")?;
            engine.delete(&q, &[handle]).await?.pop().unwrap_or(Ok(()))?;
            Ok(json!({}))
        }
        "DeleteMessageBatch" => {
            let q = queue(engine, input)?;
            let (ids, handles, failures) =
                parse_entries(batch_entries(input)?, |e| required(e, "ReceiptHandle"));
            let results = engine.delete(&q, &handles).await?;
            Ok(ids_answer(ids, results, failures).into_value())
        }
        "ChangeMessageVisibility" => {
            let q = queue(engine, input)?;
            let handle = required(input, "ReceiptHandle")?;
            let timeout = number(input, "VisibilityTimeout")?.ok_or_else(|| {
                QueueError::MissingParameter(
                    "The request must contain the parameter VisibilityTimeout.".into(),
                )
            })?;
            engine.change_visibility(&q, &[(handle, timeout)]).await?.pop().unwrap_or(Ok(()))?;
            Ok(json!({}))
        }
        "ChangeMessageVisibilityBatch" => {
            let q = queue(engine, input)?;
            let (ids, changes, failures) = parse_entries(batch_entries(input)?, |e| {
                let h = required(e, "ReceiptHandle")?;
                let t = number(e, "VisibilityTimeout")?.ok_or_else(|| {
                    QueueError::MissingParameter(
                        "The request must contain the parameter VisibilityTimeout.".into(),
                    )
                })?;
                Ok((h, t))
            });
            let results = engine.change_visibility(&q, &changes).await?;
            Ok(ids_answer(ids, results, failures).into_value())
        }
        "TagQueue" => {
            let q = queue(engine, input)?;
            engine.tag(&q, string_map(input, &["Tags", "tags"])?).await?;
            Ok(json!({}))
        }
        "UntagQueue" => {
            let q = queue(engine, input)?;
            engine.untag(&q, &string_list(input, "TagKeys")?).await?;
            Ok(json!({}))
        }
        "ListQueueTags" => {
            let q = queue(engine, input)?;
            let tags = q.record().tags;
            Ok(if tags.is_empty() { json!({}) } else { json!({ "Tags": tags }) })
        }
        "ListDeadLetterSourceQueues" => {
            let q = queue(engine, input)?;
            let (names, next) = paginate(engine.dead_letter_sources(&q), input)?;
            let mut out = Map::new();
            out.insert("queueUrls".into(), json!(names.iter().map(|n| url(n)).collect::<Vec<_>>()));
            if let Some(t) = next {
                out.insert("NextToken".into(), json!(t));
            }
            Ok(Value::Object(out))
        }
        "StartMessageMoveTask" => {
            let source = queue_from_arn(engine, &required(input, "SourceArn")?)?;
            let destination = match string(input, "DestinationArn")? {
                Some(arn) => Some(queue_from_arn(engine, &arn)?),
                None => None,
            };
            let handle = engine
                .start_move_task(&source, destination, number(input, "MaxNumberOfMessagesPerSecond")?)
                .await?;
            Ok(json!({ "TaskHandle": handle }))
        }
        "ListMessageMoveTasks" => {
            let source = queue_from_arn(engine, &required(input, "SourceArn")?)?;
            let max = number(input, "MaxResults")?.unwrap_or(1);
            if !(1..=10).contains(&max) {
                return Err(QueueError::invalid_parameter(
                    "Value for parameter MaxResults is invalid. Reason: Must be between 1 and 10.",
                ));
            }
            let results: Vec<Value> = engine
                .list_move_tasks(&source, max as usize)
                .into_iter()
                .map(|t| {
                    let mut o = Map::new();
                    if let Some(h) = t.handle {
                        o.insert("TaskHandle".into(), json!(h));
                    }
                    o.insert("Status".into(), json!(t.status));
                    o.insert("SourceArn".into(), json!(t.source_arn));
                    if let Some(d) = t.destination_arn {
                        o.insert("DestinationArn".into(), json!(d));
                    }
                    if let Some(p) = t.max_per_second {
                        o.insert("MaxNumberOfMessagesPerSecond".into(), json!(p));
                    }
                    o.insert("ApproximateNumberOfMessagesMoved".into(), json!(t.moved));
                    o.insert("ApproximateNumberOfMessagesToMove".into(), json!(t.to_move));
                    if let Some(f) = t.failure_reason {
                        o.insert("FailureReason".into(), json!(f));
                    }
                    o.insert("StartedTimestamp".into(), json!(t.started_ms));
                    Value::Object(o)
                })
                .collect();
            Ok(json!({ "Results": results }))
        }
        "CancelMessageMoveTask" => {
            let moved = engine.cancel_move_task(&required(input, "TaskHandle")?)?;
            Ok(json!({ "ApproximateNumberOfMessagesMoved": moved }))
        }
        "AddPermission" | "RemovePermission" => Err(QueueError::UnsupportedOperation(format!(
            "{} is not supported: gatehouse authorises callers with SigV4 credentials from routes.yaml.",
            call.action
        ))),
        other => {
            Err(QueueError::InvalidAction(format!("The action {other} is not valid for this endpoint.")))
        }
    }
}

/// Renders an action's output as its Query (XML) answer.
pub fn to_xml(action: &str, output: &Value, request_id: &str) -> String {
    let mut x = Xml::default();
    x.raw(&format!("<{action}Response xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">"));
    let s = |v: &Value, k: &str| -> Option<String> {
        match v.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let result = format!("{action}Result");
    let mut open_result = true;
    match action {
        "CreateQueue" | "GetQueueUrl" => {
            x.open(&result);
            if let Some(u) = s(output, "QueueUrl") {
                x.text("QueueUrl", &u);
            }
        }
        "ListQueues" | "ListDeadLetterSourceQueues" => {
            x.open(&result);
            let key = if action == "ListQueues" { "QueueUrls" } else { "queueUrls" };
            for u in output.get(key).and_then(Value::as_array).into_iter().flatten() {
                x.text("QueueUrl", u.as_str().unwrap_or(""));
            }
            if let Some(t) = s(output, "NextToken") {
                x.text("NextToken", &t);
            }
        }
        "GetQueueAttributes" => {
            x.open(&result);
            for (k, v) in output.get("Attributes").and_then(Value::as_object).into_iter().flatten() {
                x.open("Attribute")
                    .text("Name", k)
                    .text("Value", v.as_str().unwrap_or(""))
                    .close("Attribute");
            }
        }
        "ListQueueTags" => {
            x.open(&result);
            for (k, v) in output.get("Tags").and_then(Value::as_object).into_iter().flatten() {
                x.open("Tag").text("Key", k).text("Value", v.as_str().unwrap_or("")).close("Tag");
            }
        }
        "SendMessage" => {
            x.open(&result);
            for k in [
                "MD5OfMessageBody",
                "MD5OfMessageAttributes",
                "MD5OfMessageSystemAttributes",
                "MessageId",
                "SequenceNumber",
            ] {
                if let Some(v) = s(output, k) {
                    x.text(k, &v);
                }
            }
        }
        "SendMessageBatch" | "DeleteMessageBatch" | "ChangeMessageVisibilityBatch" => {
            x.open(&result);
            let entry = format!("{action}ResultEntry");
            for ok in output.get("Successful").and_then(Value::as_array).into_iter().flatten() {
                x.open(&entry);
                for k in [
                    "Id",
                    "MessageId",
                    "MD5OfMessageBody",
                    "MD5OfMessageAttributes",
                    "MD5OfMessageSystemAttributes",
                    "SequenceNumber",
                ] {
                    if let Some(v) = s(ok, k) {
                        x.text(k, &v);
                    }
                }
                x.close(&entry);
            }
            for f in output.get("Failed").and_then(Value::as_array).into_iter().flatten() {
                x.open("BatchResultErrorEntry");
                for k in ["Id", "SenderFault", "Code", "Message"] {
                    if let Some(v) = s(f, k) {
                        x.text(k, &v);
                    }
                }
                x.close("BatchResultErrorEntry");
            }
        }
        "ReceiveMessage" => {
            x.open(&result);
            for m in output.get("Messages").and_then(Value::as_array).into_iter().flatten() {
                x.open("Message");
                for k in ["MessageId", "ReceiptHandle", "MD5OfBody", "Body"] {
                    if let Some(v) = s(m, k) {
                        x.text(k, &v);
                    }
                }
                for (k, v) in m.get("Attributes").and_then(Value::as_object).into_iter().flatten() {
                    x.open("Attribute")
                        .text("Name", k)
                        .text("Value", v.as_str().unwrap_or(""))
                        .close("Attribute");
                }
                if let Some(v) = s(m, "MD5OfMessageAttributes") {
                    x.text("MD5OfMessageAttributes", &v);
                }
                for (k, v) in m.get("MessageAttributes").and_then(Value::as_object).into_iter().flatten() {
                    x.open("MessageAttribute").text("Name", k).open("Value");
                    for f in ["StringValue", "BinaryValue", "DataType"] {
                        if let Some(fv) = s(v, f) {
                            x.text(f, &fv);
                        }
                    }
                    x.close("Value").close("MessageAttribute");
                }
                x.close("Message");
            }
        }
        "StartMessageMoveTask" => {
            x.open(&result);
            if let Some(h) = s(output, "TaskHandle") {
                x.text("TaskHandle", &h);
            }
        }
        "CancelMessageMoveTask" => {
            x.open(&result);
            if let Some(n) = s(output, "ApproximateNumberOfMessagesMoved") {
                x.text("ApproximateNumberOfMessagesMoved", &n);
            }
        }
        "ListMessageMoveTasks" => {
            x.open(&result);
            for t in output.get("Results").and_then(Value::as_array).into_iter().flatten() {
                x.open("ListMessageMoveTasksResultEntry");
                for (k, v) in t.as_object().into_iter().flatten() {
                    let v = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
                    x.text(k, &v);
                }
                x.close("ListMessageMoveTasksResultEntry");
            }
        }
        _ => open_result = false,
    }
    if open_result {
        x.close(&result);
    }
    x.open("ResponseMetadata").text("RequestId", request_id).close("ResponseMetadata");
    x.raw(&format!("</{action}Response>"));
    x.finish()
}

/// The Query error document.
pub fn error_xml(code: &str, fault: &str, message: &str, request_id: &str) -> String {
    let mut x = Xml::default();
    x.raw("<ErrorResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">");
    x.open("Error")
        .text("Type", fault)
        .text("Code", code)
        .text("Message", message)
        .raw("<Detail/>")
        .close("Error");
    x.text("RequestId", request_id);
    x.raw("</ErrorResponse>");
    x.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(body: &str, name: &str, text: &str) -> ReceivedMessage {
        let mut attributes = Attributes::new();
        attributes.insert(
            name.to_owned(),
            AttributeValue {
                data_type: "String".into(),
                string_value: Some(text.into()),
                binary_value: None,
            },
        );
        attributes.insert(
            "bin".into(),
            AttributeValue {
                data_type: "Binary.x".into(),
                string_value: None,
                binary_value: Some(vec![0, 255, 7]),
            },
        );
        ReceivedMessage {
            message_id: "id".into(),
            receipt_handle: "handle/+=".into(),
            md5_of_body: "0123".into(),
            body: body.into(),
            system_attributes: [
                ("SentTimestamp".to_owned(), "1".to_owned()),
                (name.to_owned(), text.to_owned()),
            ]
            .into(),
            attributes,
            md5_of_attributes: Some("4567".into()),
        }
    }

    fn bare(body: &str) -> ReceivedMessage {
        ReceivedMessage {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            md5_of_body: "5".into(),
            body: body.into(),
            system_attributes: BTreeMap::new(),
            attributes: Attributes::new(),
            md5_of_attributes: None,
        }
    }

    /// What the `Value` path writes, to compare the direct writer with.
    fn via_value(messages: Vec<ReceivedMessage>) -> String {
        json_text::to_string(&Output::Messages(messages).into_value())
    }

    #[test]
    fn received_messages_are_written_as_their_values_serialise() {
        for messages in [
            vec![],
            vec![bare("plain")],
            vec![message("quote \" newline \n é 😀", "a\u{1}b", "v\\w"), bare(""), message("x", "z", "")],
        ] {
            let direct = Output::Messages(messages.clone()).to_json();
            assert_eq!(direct, via_value(messages));
        }
    }

    fn sent(id: &str, attrs: bool, system: bool, fifo: bool) -> Success {
        let r = crate::queue::SendResult {
            message_id: format!("mid-{id}"),
            md5_of_body: "b".repeat(32),
            md5_of_attributes: attrs.then(|| "a".repeat(32)),
            md5_of_system_attributes: system.then(|| "s".repeat(32)),
            sequence_number: fifo.then(|| "18".to_owned()),
        };
        Success { id: id.to_owned(), sent: Some(r) }
    }

    /// What the `Value` path writes for a batch answer.
    fn batch_via_value(successful: Vec<Success>, failed: Vec<Value>) -> String {
        json_text::to_string(&Output::Batch { successful, failed }.into_value())
    }

    #[test]
    fn batch_answers_are_written_as_their_values_serialise() {
        let failure = || failed("bad\"id", &QueueError::invalid_parameter("why \n not"));
        // Successes are made by a function: `Success` is not `Clone`.
        type Case = (fn() -> Vec<Success>, Vec<Value>);
        let cases: Vec<Case> = vec![
            (Vec::new, vec![]),
            (|| vec![sent("0", false, false, false), sent("1", true, true, true)], vec![]),
            (|| vec![sent("a", true, false, false), sent("b", false, true, false)], vec![failure()]),
            (
                || vec![Success { id: "x".into(), sent: None }, Success { id: "y\u{1}".into(), sent: None }],
                vec![],
            ),
            (Vec::new, vec![failure(), failure()]),
        ];
        for (successful, failed) in cases {
            let direct = Output::Batch { successful: successful(), failed: failed.clone() }.to_json();
            assert_eq!(direct, batch_via_value(successful(), failed));
        }
    }

    proptest! {
        #[test]
        fn any_batch_answer_is_written_as_its_value_serialises(
            entries in proptest::collection::vec(("\\PC{0,12}", any::<[bool; 4]>()), 0..12),
        ) {
            let make = || -> Vec<Success> {
                entries
                    .iter()
                    .map(|(id, [send, attrs, system, fifo])| {
                        if *send { sent(id, *attrs, *system, *fifo) } else { Success { id: id.clone(), sent: None } }
                    })
                    .collect()
            };
            let direct = Output::Batch { successful: make(), failed: vec![] }.to_json();
            prop_assert_eq!(direct, batch_via_value(make(), vec![]));
        }

        #[test]
        fn any_received_message_is_written_as_its_value_serialises(
            body in "\\PC*|[\\x00-\\x7f]*",
            name in "\\PC{0,8}",
            text in ".*",
            with_attributes in any::<bool>(),
        ) {
            let m = if with_attributes { message(&body, &name, &text) } else { bare(&body) };
            prop_assert_eq!(Output::Messages(vec![m.clone()]).to_json(), via_value(vec![m]));
        }
    }
}
