//! What SQS actions answer, typed, and its two encodings: AWS JSON 1.0
//! text and Query XML.
//!
//! JSON keys come out sorted, as SQS's own answers and `serde_json`'s maps
//! have them. The answers that carry most of a busy queue's bytes (received
//! messages, batch results) are written directly, without building a
//! `serde_json::Value` (which copied every body and built a map per message,
//! to free it right after); the rest go through a `Value`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::error::Error;
use crate::aws::json as json_text;
use crate::aws::query::Xml;
use crate::queue::{MoveTaskInfo, ReceivedMessage, SendResult};

/// One action's answer.
#[derive(Debug)]
pub enum Output {
    Empty,
    /// `CreateQueue`, `GetQueueUrl`.
    QueueUrl(String),
    /// `ListQueues`.
    QueueUrls(QueueUrls),
    /// `ListDeadLetterSourceQueues` (whose JSON member is `queueUrls`).
    SourceQueueUrls(QueueUrls),
    Attributes(BTreeMap<String, String>),
    Tags(BTreeMap<String, String>),
    Sent(SendResult),
    Batch(BatchOutput),
    Messages(Vec<ReceivedMessage>),
    TaskHandle(String),
    /// `CancelMessageMoveTask`: how many messages were moved.
    Moved(u64),
    MoveTasks(Vec<MoveTaskInfo>),
}

#[derive(Debug, Default)]
pub struct QueueUrls {
    pub urls: Vec<String>,
    pub next: Option<String>,
}

/// A batch's answer: its successful entries and its failed ones.
#[derive(Debug, Default)]
pub struct BatchOutput {
    successful: Vec<Success>,
    failed: Vec<Failed>,
}

#[derive(Debug)]
struct Success {
    id: String,
    /// `SendMessageBatch`: what was sent. Other batches answer the `Id` only.
    sent: Option<SendResult>,
}

#[derive(Debug)]
struct Failed {
    id: String,
    sender_fault: bool,
    code: &'static str,
    message: String,
}

impl BatchOutput {
    pub fn sent(&mut self, id: String, r: SendResult) {
        self.successful.push(Success { id, sent: Some(r) });
    }

    pub fn done(&mut self, id: String) {
        self.successful.push(Success { id, sent: None });
    }

    pub fn fail(&mut self, id: String, e: &Error) {
        let e = e.to_aws();
        let sender_fault = e.fault == crate::aws::error::Fault::Sender;
        self.failed.push(Failed { id, sender_fault, code: e.code, message: e.message });
    }
}

impl Output {
    /// The AWS JSON 1.0 answer.
    pub fn to_json(&self) -> String {
        let keyed = |key: &str, v: Value| json_text::to_string(&json!({ key: v }));
        match self {
            Output::Empty => "{}".to_owned(),
            Output::QueueUrl(u) => keyed("QueueUrl", json!(u)),
            Output::QueueUrls(l) => urls_json(l, "QueueUrls", false),
            Output::SourceQueueUrls(l) => urls_json(l, "queueUrls", true),
            Output::Attributes(a) if a.is_empty() => "{}".to_owned(),
            Output::Attributes(a) => keyed("Attributes", json!(a)),
            Output::Tags(t) if t.is_empty() => "{}".to_owned(),
            Output::Tags(t) => keyed("Tags", json!(t)),
            Output::Sent(r) => json_text::to_string(&Value::Object(sent_map(r))),
            Output::Batch(b) => batch_json(b),
            Output::Messages(m) => messages_json(m),
            Output::TaskHandle(h) => keyed("TaskHandle", json!(h)),
            Output::Moved(n) => keyed("ApproximateNumberOfMessagesMoved", json!(n)),
            Output::MoveTasks(t) => keyed("Results", Value::Array(t.iter().map(move_task).collect())),
        }
    }

    /// The Query protocol's `<{action}Response>` document.
    pub fn to_xml(&self, action: &str, request_id: &str) -> String {
        let mut x = Xml::default();
        x.raw(&format!("<{action}Response xmlns=\"{}\">", super::DIALECT.xmlns));
        let result = format!("{action}Result");
        if !matches!(self, Output::Empty) {
            x.open(&result);
            self.xml_result(&mut x, action);
            x.close(&result);
        }
        x.open("ResponseMetadata").text("RequestId", request_id).close("ResponseMetadata");
        x.raw(&format!("</{action}Response>"));
        x.finish()
    }

    fn xml_result(&self, x: &mut Xml, action: &str) {
        match self {
            Output::Empty => {}
            Output::QueueUrl(u) => {
                x.text("QueueUrl", u);
            }
            Output::QueueUrls(l) | Output::SourceQueueUrls(l) => {
                for u in &l.urls {
                    x.text("QueueUrl", u);
                }
                if let Some(t) = &l.next {
                    x.text("NextToken", t);
                }
            }
            Output::Attributes(a) => xml_pairs(x, "Attribute", "Name", a),
            Output::Tags(t) => xml_pairs(x, "Tag", "Key", t),
            Output::Sent(r) => {
                x.text("MD5OfMessageBody", &r.md5_of_body);
                optional(x, "MD5OfMessageAttributes", &r.md5_of_attributes);
                optional(x, "MD5OfMessageSystemAttributes", &r.md5_of_system_attributes);
                x.text("MessageId", &r.message_id);
                optional(x, "SequenceNumber", &r.sequence_number);
            }
            Output::Batch(b) => batch_xml(x, action, b),
            Output::Messages(m) => m.iter().for_each(|m| message_xml(x, m)),
            Output::TaskHandle(h) => {
                x.text("TaskHandle", h);
            }
            Output::Moved(n) => {
                x.text("ApproximateNumberOfMessagesMoved", &n.to_string());
            }
            Output::MoveTasks(tasks) => {
                for t in tasks {
                    x.open("ListMessageMoveTasksResultEntry");
                    for (k, v) in move_task(t).as_object().into_iter().flatten() {
                        x.text(k, &v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
                    }
                    x.close("ListMessageMoveTasksResultEntry");
                }
            }
        }
    }
}

fn optional(x: &mut Xml, tag: &str, v: &Option<String>) {
    if let Some(v) = v {
        x.text(tag, v);
    }
}

/// `<Attribute><Name>k</Name><Value>v</Value></Attribute>` and the like.
fn xml_pairs(x: &mut Xml, tag: &str, key: &str, pairs: &BTreeMap<String, String>) {
    for (k, v) in pairs {
        x.open(tag).text(key, k).text("Value", v).close(tag);
    }
}

fn urls_json(l: &QueueUrls, key: &str, always: bool) -> String {
    let mut out = Map::new();
    if always || !l.urls.is_empty() {
        out.insert(key.into(), json!(l.urls));
    }
    if let Some(t) = &l.next {
        out.insert("NextToken".into(), json!(t));
    }
    json_text::to_string(&Value::Object(out))
}

fn sent_map(r: &SendResult) -> Map<String, Value> {
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

fn move_task(t: &MoveTaskInfo) -> Value {
    let mut o = Map::new();
    if let Some(h) = &t.handle {
        o.insert("TaskHandle".into(), json!(h));
    }
    o.insert("Status".into(), json!(t.status));
    o.insert("SourceArn".into(), json!(t.source_arn));
    if let Some(d) = &t.destination_arn {
        o.insert("DestinationArn".into(), json!(d));
    }
    if let Some(p) = t.max_per_second {
        o.insert("MaxNumberOfMessagesPerSecond".into(), json!(p));
    }
    o.insert("ApproximateNumberOfMessagesMoved".into(), json!(t.moved));
    o.insert("ApproximateNumberOfMessagesToMove".into(), json!(t.to_move));
    if let Some(f) = &t.failure_reason {
        o.insert("FailureReason".into(), json!(f));
    }
    o.insert("StartedTimestamp".into(), json!(t.started_ms));
    Value::Object(o)
}

/// `{"Failed":[…],"Successful":[…]}`, keys sorted.
fn batch_json(b: &BatchOutput) -> String {
    let mut out = String::with_capacity(40 + b.successful.len() * 160);
    out.push_str("{\"Failed\":");
    json_text::push_list(&mut out, '[', &b.failed, ']', |out, f| {
        json_text::push_field(out, "{\"Code\":", f.code);
        json_text::push_field(out, ",\"Id\":", &f.id);
        json_text::push_field(out, ",\"Message\":", &f.message);
        out.push_str(if f.sender_fault { ",\"SenderFault\":true}" } else { ",\"SenderFault\":false}" });
    });
    out.push_str(",\"Successful\":");
    json_text::push_list(&mut out, '[', &b.successful, ']', |out, s| {
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

fn batch_xml(x: &mut Xml, action: &str, b: &BatchOutput) {
    let entry = format!("{action}ResultEntry");
    for s in &b.successful {
        x.open(&entry).text("Id", &s.id);
        if let Some(r) = &s.sent {
            x.text("MessageId", &r.message_id).text("MD5OfMessageBody", &r.md5_of_body);
            optional(x, "MD5OfMessageAttributes", &r.md5_of_attributes);
            optional(x, "MD5OfMessageSystemAttributes", &r.md5_of_system_attributes);
            optional(x, "SequenceNumber", &r.sequence_number);
        }
        x.close(&entry);
    }
    for f in &b.failed {
        x.open("BatchResultErrorEntry")
            .text("Id", &f.id)
            .text("SenderFault", if f.sender_fault { "true" } else { "false" })
            .text("Code", f.code)
            .text("Message", &f.message)
            .close("BatchResultErrorEntry");
    }
}

/// `{"Messages":[…]}` (or `{}`), keys sorted.
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

fn message_xml(x: &mut Xml, m: &ReceivedMessage) {
    x.open("Message")
        .text("MessageId", &m.message_id)
        .text("ReceiptHandle", &m.receipt_handle)
        .text("MD5OfBody", &m.md5_of_body)
        .text("Body", &m.body);
    xml_pairs(x, "Attribute", "Name", &m.system_attributes);
    if let Some(md5) = &m.md5_of_attributes {
        x.text("MD5OfMessageAttributes", md5);
        for (name, v) in &m.attributes {
            x.open("MessageAttribute").text("Name", name).open("Value");
            optional(x, "StringValue", &v.string_value);
            if let Some(b) = &v.binary_value {
                x.text("BinaryValue", &base64::engine::general_purpose::STANDARD.encode(b));
            }
            x.text("DataType", &v.data_type).close("Value").close("MessageAttribute");
        }
    }
    x.close("Message");
}

#[cfg(test)]
mod tests {
    //! The directly written answers against what `serde_json` writes for
    //! the same answer built as a `Value`.
    use super::*;
    use crate::queue::message::{AttributeValue, Attributes};
    use crate::queue::QueueError;
    use proptest::prelude::*;

    fn message(body: &str, name: &str, text: &str) -> ReceivedMessage {
        let mut attributes = Attributes::new();
        let string = AttributeValue {
            data_type: "String".into(),
            string_value: Some(text.into()),
            binary_value: None,
        };
        attributes.insert(name.to_owned(), string);
        let binary = AttributeValue {
            data_type: "Binary.x".into(),
            string_value: None,
            binary_value: Some(vec![0, 255, 7]),
        };
        attributes.insert("bin".into(), binary);
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

    fn message_value(m: &ReceivedMessage) -> Value {
        let mut o = Map::new();
        o.insert("MessageId".into(), json!(m.message_id));
        o.insert("ReceiptHandle".into(), json!(m.receipt_handle));
        o.insert("MD5OfBody".into(), json!(m.md5_of_body));
        o.insert("Body".into(), json!(m.body));
        if !m.system_attributes.is_empty() {
            o.insert("Attributes".into(), json!(m.system_attributes));
        }
        if let Some(md5) = &m.md5_of_attributes {
            o.insert("MD5OfMessageAttributes".into(), json!(md5));
            let attrs: Map<String, Value> = m
                .attributes
                .iter()
                .map(|(name, v)| {
                    let mut a = Map::new();
                    a.insert("DataType".into(), json!(v.data_type));
                    if let Some(s) = &v.string_value {
                        a.insert("StringValue".into(), json!(s));
                    }
                    if let Some(b) = &v.binary_value {
                        a.insert(
                            "BinaryValue".into(),
                            json!(base64::engine::general_purpose::STANDARD.encode(b)),
                        );
                    }
                    (name.clone(), Value::Object(a))
                })
                .collect();
            o.insert("MessageAttributes".into(), Value::Object(attrs));
        }
        Value::Object(o)
    }

    fn via_value(messages: &[ReceivedMessage]) -> String {
        if messages.is_empty() {
            return "{}".into();
        }
        serde_json::to_string(&json!({ "Messages": messages.iter().map(message_value).collect::<Vec<_>>() }))
            .unwrap()
    }

    #[test]
    fn received_messages_are_written_as_their_values_serialise() {
        for messages in [
            vec![],
            vec![bare("plain")],
            vec![message("quote \" newline \n é 😀", "a\u{1}b", "v\\w"), bare(""), message("x", "z", "")],
        ] {
            assert_eq!(Output::Messages(messages.clone()).to_json(), via_value(&messages));
        }
    }

    fn sent(id: &str, attrs: bool, system: bool, fifo: bool) -> (String, SendResult) {
        let r = SendResult {
            message_id: format!("mid-{id}"),
            md5_of_body: "b".repeat(32),
            md5_of_attributes: attrs.then(|| "a".repeat(32)),
            md5_of_system_attributes: system.then(|| "s".repeat(32)),
            sequence_number: fifo.then(|| "18".to_owned()),
        };
        (id.to_owned(), r)
    }

    fn batch_value(b: &BatchOutput) -> String {
        let successful: Vec<Value> = b
            .successful
            .iter()
            .map(|s| {
                let mut m = s.sent.as_ref().map(sent_map).unwrap_or_default();
                m.insert("Id".into(), json!(s.id));
                Value::Object(m)
            })
            .collect();
        let failed: Vec<Value> = b
            .failed
            .iter()
            .map(|f| json!({ "Id": f.id, "SenderFault": f.sender_fault, "Code": f.code, "Message": f.message }))
            .collect();
        serde_json::to_string(&json!({ "Successful": successful, "Failed": failed })).unwrap()
    }

    #[test]
    fn batch_answers_are_written_as_their_values_serialise() {
        let mut b = BatchOutput::default();
        assert_eq!(batch_json(&b), batch_value(&b));
        let (id, r) = sent("0", false, false, false);
        b.sent(id, r);
        let (id, r) = sent("1", true, true, true);
        b.sent(id, r);
        b.done("y\u{1}".into());
        b.fail("bad\"id".into(), &QueueError::invalid_parameter("why \n not").into());
        b.fail("i".into(), &QueueError::Internal("disk".into()).into());
        assert_eq!(batch_json(&b), batch_value(&b));
    }

    proptest! {
        #[test]
        fn any_batch_answer_is_written_as_its_value_serialises(
            entries in proptest::collection::vec(("\\PC{0,12}", any::<[bool; 5]>()), 0..12),
        ) {
            let mut b = BatchOutput::default();
            for (id, [send, attrs, system, fifo, fail]) in &entries {
                match (fail, send) {
                    (true, _) => b.fail(id.clone(), &QueueError::no_queue().into()),
                    (false, true) => { let (id, r) = sent(id, *attrs, *system, *fifo); b.sent(id, r) }
                    (false, false) => b.done(id.clone()),
                }
            }
            prop_assert_eq!(batch_json(&b), batch_value(&b));
        }

        #[test]
        fn any_received_message_is_written_as_its_value_serialises(
            body in "\\PC*|[\\x00-\\x7f]*",
            name in "\\PC{0,8}",
            text in ".*",
            with_attributes in any::<bool>(),
        ) {
            let m = if with_attributes { message(&body, &name, &text) } else { bare(&body) };
            prop_assert_eq!(Output::Messages(vec![m.clone()]).to_json(), via_value(&[m]));
        }
    }
}
