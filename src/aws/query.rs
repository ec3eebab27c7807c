//! The AWS Query protocol: flattened form parameters in, XML out.
//!
//! Requests are converted into the JSON shape the AWS JSON protocol carries
//! (`Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=10` becomes
//! `{"Attributes":{"VisibilityTimeout":"10"}}`), so one set of action
//! handlers serves both protocols.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::queue::QueueError;

/// Members whose Query form is `Prefix.N` and JSON form a list.
const LISTS: &[(&str, &str)] = &[
    ("AttributeName", "AttributeNames"),
    ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
    ("MessageAttributeName", "MessageAttributeNames"),
    ("TagKey", "TagKeys"),
];

/// Members whose Query form is `Prefix.N.Name/Value` (or `Key/Value`) and
/// JSON form a map of strings. `Tag` becomes both `Tags` and `tags`
/// (CreateQueue's JSON member is lower case).
const STRING_MAPS: &[(&str, &[&str])] = &[("Attribute", &["Attributes"]), ("Tag", &["Tags", "tags"])];

/// Members whose Query form is `Prefix.N.Name` + `Prefix.N.Value.<Field>`
/// and JSON form a map of attribute values.
const VALUE_MAPS: &[(&str, &str)] =
    &[("MessageAttribute", "MessageAttributes"), ("MessageSystemAttribute", "MessageSystemAttributes")];

/// Decodes an `application/x-www-form-urlencoded` text (a Query-protocol
/// body or query string) into its pairs. Unlike a lossy decoder, bytes that
/// are not UTF-8 once decoded are an error, never silently replaced: a
/// message body must reach the queue, and its MD5, exactly as sent.
pub fn parse_form(input: &[u8]) -> Result<Vec<(String, String)>, QueueError> {
    let mut pairs = Vec::new();
    for piece in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &piece[..0]),
        };
        let name = form_text(name).ok_or_else(|| {
            QueueError::InvalidParameterValue("A parameter name is not valid UTF-8.".into())
        })?;
        let value = form_text(value).ok_or_else(|| {
            let message = format!("The value of {name} is not valid UTF-8.");
            if name.ends_with("MessageBody") || name.ends_with("StringValue") {
                QueueError::InvalidMessageContents(message)
            } else {
                QueueError::InvalidParameterValue(message)
            }
        })?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// One form-encoded component: `+` is a space, `%XX` a byte (a `%` without
/// two hex digits stands for itself, as browsers and `form_urlencoded` do);
/// `None` if the bytes are not UTF-8.
fn form_text(raw: &[u8]) -> Option<String> {
    String::from_utf8(crate::syntax::form_decode(raw).into_owned()).ok()
}

/// Converts Query parameters (minus `Action` and `Version`) to the JSON
/// request shape.
pub fn to_json(params: &[(String, String)]) -> Value {
    Value::Object(convert(params))
}

/// Fields of one `Prefix.N` group: the rest of each key, and its value.
type Fields = Vec<(String, String)>;

fn convert(params: &[(String, String)]) -> Map<String, Value> {
    let mut out = Map::new();
    // prefix -> index -> (rest of key, value)
    let mut groups: BTreeMap<&str, BTreeMap<u32, Fields>> = BTreeMap::new();
    for (key, value) in params {
        match key.split_once('.') {
            None => {
                out.insert(key.clone(), Value::String(value.clone()));
            }
            Some((prefix, rest)) => {
                let (index, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let Ok(index) = index.parse::<u32>() else { continue };
                groups
                    .entry(prefix)
                    .or_default()
                    .entry(index)
                    .or_default()
                    .push((tail.to_owned(), value.clone()));
            }
        }
    }
    for (prefix, items) in groups {
        if let Some((_, json)) = LISTS.iter().find(|(p, _)| *p == prefix) {
            let list = items
                .into_values()
                .filter_map(|fields| {
                    fields.into_iter().find(|(t, _)| t.is_empty()).map(|(_, v)| Value::String(v))
                })
                .collect();
            out.insert((*json).to_owned(), Value::Array(list));
        } else if let Some((_, names)) = STRING_MAPS.iter().find(|(p, _)| *p == prefix) {
            let mut map = Map::new();
            for fields in items.into_values() {
                let get = |k: &str| fields.iter().find(|(t, _)| t == k).map(|(_, v)| v.clone());
                if let Some(name) = get("Name").or_else(|| get("Key")) {
                    map.insert(name, Value::String(get("Value").unwrap_or_default()));
                }
            }
            for n in *names {
                out.insert((*n).to_owned(), Value::Object(map.clone()));
            }
        } else if let Some((_, json)) = VALUE_MAPS.iter().find(|(p, _)| *p == prefix) {
            let mut map = Map::new();
            for fields in items.into_values() {
                let name = fields.iter().find(|(t, _)| t == "Name").map(|(_, v)| v.clone());
                let mut value = Map::new();
                for (t, v) in &fields {
                    if let Some(field) = t.strip_prefix("Value.") {
                        value.insert(field.to_owned(), Value::String(v.clone()));
                    }
                }
                if let Some(name) = name {
                    map.insert(name, Value::Object(value));
                }
            }
            out.insert((*json).to_owned(), Value::Object(map));
        } else if prefix.ends_with("BatchRequestEntry") {
            let entries = items
                .into_values()
                .map(|fields| {
                    Value::Object(convert(
                        &fields.into_iter().filter(|(t, _)| !t.is_empty()).collect::<Vec<_>>(),
                    ))
                })
                .collect();
            out.insert("Entries".into(), Value::Array(entries));
        }
    }
    out
}

/// A small XML writer for Query answers.
#[derive(Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// `<tag>text</tag>`, text escaped.
    pub fn text(&mut self, tag: &str, text: &str) -> &mut Self {
        self.open(tag);
        escape_into(&mut self.out, text);
        self.close(tag)
    }

    pub fn raw(&mut self, s: &str) -> &mut Self {
        self.out.push_str(s);
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// XML 1.0 escaping. Characters XML cannot carry literally (carriage
/// return, tab) are written as character references so they survive
/// parsers' normalisation, as SQS does.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\t' => out.push_str("&#x9;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn flattened_members_become_json_shapes() {
        let v = to_json(&params(&[
            ("QueueUrl", "http://q"),
            ("Attribute.1.Name", "VisibilityTimeout"),
            ("Attribute.1.Value", "10"),
            ("Attribute.2.Name", "DelaySeconds"),
            ("Attribute.2.Value", "3"),
            ("AttributeName.2", "B"),
            ("AttributeName.1", "A"),
            ("Tag.1.Key", "team"),
            ("Tag.1.Value", "core"),
            ("MessageAttribute.1.Name", "color"),
            ("MessageAttribute.1.Value.DataType", "String"),
            ("MessageAttribute.1.Value.StringValue", "blue"),
        ]));
        assert_eq!(v["QueueUrl"], "http://q");
        assert_eq!(v["Attributes"]["VisibilityTimeout"], "10");
        assert_eq!(v["Attributes"]["DelaySeconds"], "3");
        assert_eq!(v["AttributeNames"], serde_json::json!(["A", "B"]));
        assert_eq!(v["Tags"]["team"], "core");
        assert_eq!(v["tags"]["team"], "core");
        assert_eq!(v["MessageAttributes"]["color"]["StringValue"], "blue");
        assert_eq!(v["MessageAttributes"]["color"]["DataType"], "String");
    }

    #[test]
    fn batch_entries_keep_their_order_and_nested_attributes() {
        let v = to_json(&params(&[
            ("SendMessageBatchRequestEntry.2.Id", "b"),
            ("SendMessageBatchRequestEntry.2.MessageBody", "two"),
            ("SendMessageBatchRequestEntry.1.Id", "a"),
            ("SendMessageBatchRequestEntry.1.MessageBody", "one"),
            ("SendMessageBatchRequestEntry.1.MessageAttribute.1.Name", "n"),
            ("SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType", "Number"),
            ("SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue", "7"),
        ]));
        assert_eq!(v["Entries"][0]["Id"], "a");
        assert_eq!(v["Entries"][1]["MessageBody"], "two");
        assert_eq!(v["Entries"][0]["MessageAttributes"]["n"]["StringValue"], "7");
    }

    #[test]
    fn forms_decode_exactly_and_refuse_bytes_that_are_not_utf8() {
        let pairs =
            parse_form(b"Action=SendMessage&MessageBody=a+b%20c%2B%C3%A9&Empty=&Flag&100%=x").unwrap();
        let expect = [
            ("Action", "SendMessage"),
            ("MessageBody", "a b c+é"),
            ("Empty", ""),
            ("Flag", ""),
            ("100%", "x"),
        ];
        let got: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expect);
        assert!(matches!(
            parse_form(b"Action=SendMessage&MessageBody=%FF%FE"),
            Err(QueueError::InvalidMessageContents(_))
        ));
        assert!(matches!(
            parse_form(b"SendMessageBatchRequestEntry.1.MessageBody=%C3"),
            Err(QueueError::InvalidMessageContents(_))
        ));
        assert!(matches!(parse_form(b"QueueName=%FF"), Err(QueueError::InvalidParameterValue(_))));
        // The same as the lossless cases of `form_urlencoded`.
        let text = b"a=1&b=%41%42&c=x+y&d=%zz";
        let ours = parse_form(text).unwrap();
        let theirs: Vec<(String, String)> = form_urlencoded::parse(text).into_owned().collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn xml_escapes_markup_and_keeps_control_whitespace() {
        let mut x = Xml::default();
        x.text("Body", "a<b>&\"c'\r\n\t");
        assert_eq!(x.finish(), "<Body>a&lt;b&gt;&amp;&quot;c&apos;&#xD;\n&#x9;</Body>");
    }

    proptest! {
        #[test]
        fn conversion_never_panics(keys in proptest::collection::vec("[A-Za-z]{0,8}(\\.[0-9a-z]{0,3}){0,4}", 0..12)) {
            let p: Vec<(String, String)> = keys.into_iter().map(|k| (k, "v".to_string())).collect();
            let _ = to_json(&p);
        }
    }
}
