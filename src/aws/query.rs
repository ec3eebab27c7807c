//! The AWS Query protocol: flattened form parameters in, XML out.
//!
//! Requests are converted into the JSON shape the AWS JSON protocol carries
//! (`Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=10` becomes
//! `{"Attributes":{"VisibilityTimeout":"10"}}`), so one parser per action
//! serves both protocols. SQS writes its members flattened
//! ([`flattened_to_json`]); SNS and STS nest them under `member` and
//! `entry` ([`nested_to_json`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

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

/// A pair of a form that cannot be read: its bytes are not UTF-8 once
/// decoded. Unlike a lossy decoder, nothing is silently replaced: a message
/// body must reach the queue, and its MD5, exactly as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormError {
    /// The parameter's name, if it could be read.
    pub name: Option<String>,
    pub message: String,
}

impl FormError {
    /// Whether the bad bytes are a message's (SQS answers those with
    /// `InvalidMessageContents`).
    pub fn in_message(&self) -> bool {
        self.name.as_deref().is_some_and(|n| n.ends_with("MessageBody") || n.ends_with("StringValue"))
    }
}

/// Decodes an `application/x-www-form-urlencoded` text (a Query-protocol
/// body or query string) into its pairs, and the first pair that could not
/// be read (the others are still read, so the caller can tell which
/// service the request is for before answering).
pub fn parse_form(input: &[u8]) -> (Vec<(String, String)>, Option<FormError>) {
    let (mut pairs, mut problem) = (Vec::new(), None);
    for piece in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &piece[..0]),
        };
        let Some(name) = form_text(name) else {
            let message = "A parameter name is not valid UTF-8.".to_owned();
            problem.get_or_insert(FormError { name: None, message });
            continue;
        };
        let Some(value) = form_text(value) else {
            let message = format!("The value of {name} is not valid UTF-8.");
            problem.get_or_insert(FormError { name: Some(name), message });
            continue;
        };
        pairs.push((name, value));
    }
    (pairs, problem)
}

/// One form-encoded component: `+` is a space, `%XX` a byte (a `%` without
/// two hex digits stands for itself, as browsers and `form_urlencoded` do);
/// `None` if the bytes are not UTF-8.
fn form_text(raw: &[u8]) -> Option<String> {
    String::from_utf8(crate::syntax::form_decode(raw).into_owned()).ok()
}

/// Converts SQS's flattened Query parameters (minus `Action` and
/// `Version`) to the JSON request shape.
pub fn flattened_to_json(params: &[(String, String)]) -> Value {
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

/// Converts Query parameters in the structured form SNS and STS use to
/// the JSON request shape: `Name.member.N[.…]` is a list (ordered by N),
/// `Name.entry.N.key` (or `.Name`) with `Name.entry.N.value[.…]` (or
/// `.Value`) a map, other dotted names nested objects.
pub fn nested_to_json(params: &[(String, String)]) -> Value {
    let mut root = Node::default();
    for (key, value) in params {
        let mut node = &mut root;
        for part in key.split('.') {
            node = node.children.entry(part.to_owned()).or_default();
        }
        node.value = Some(value.clone());
    }
    root.into_value()
}

#[derive(Default)]
struct Node {
    value: Option<String>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn into_value(mut self) -> Value {
        if self.children.is_empty() {
            return Value::String(self.value.unwrap_or_default());
        }
        if self.children.len() == 1 {
            if let Some(members) = self.children.remove("member") {
                return Value::Array(members.indexed().map(Node::into_value).collect());
            }
            if let Some(entries) = self.children.remove("entry") {
                let map = entries.indexed().filter_map(Node::into_pair).collect();
                return Value::Object(map);
            }
        }
        Value::Object(self.children.into_iter().map(|(k, n)| (k, n.into_value())).collect())
    }

    /// The children named by numbers, in their order (others are ignored).
    fn indexed(self) -> impl Iterator<Item = Node> {
        let mut items: Vec<(u32, Node)> =
            self.children.into_iter().filter_map(|(k, n)| Some((k.parse().ok()?, n))).collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, n)| n)
    }

    /// A map entry: its key and value members.
    fn into_pair(mut self) -> Option<(String, Value)> {
        let key = ["key", "Name", "Key"].iter().find_map(|k| self.children.remove(*k))?.value?;
        let value = ["value", "Value"].iter().find_map(|k| self.children.remove(*k))?;
        Some((key, value.into_value()))
    }
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
        let v = flattened_to_json(&params(&[
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
        let v = flattened_to_json(&params(&[
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
    fn forms_decode_exactly_and_report_bytes_that_are_not_utf8() {
        let (pairs, problem) =
            parse_form(b"Action=SendMessage&MessageBody=a+b%20c%2B%C3%A9&Empty=&Flag&100%=x");
        assert_eq!(problem, None);
        let expect = [
            ("Action", "SendMessage"),
            ("MessageBody", "a b c+é"),
            ("Empty", ""),
            ("Flag", ""),
            ("100%", "x"),
        ];
        let got: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expect);
        let (pairs, problem) = parse_form(b"Action=SendMessage&MessageBody=%FF%FE&Version=1");
        assert_eq!(pairs.len(), 2, "the other pairs are still read");
        assert!(problem.unwrap().in_message());
        assert!(parse_form(b"SendMessageBatchRequestEntry.1.MessageBody=%C3").1.unwrap().in_message());
        assert!(!parse_form(b"QueueName=%FF").1.unwrap().in_message());
        assert_eq!(parse_form(b"%FF=1").1.unwrap().name, None);
        // The same as the lossless cases of `form_urlencoded`.
        let text = b"a=1&b=%41%42&c=x+y&d=%zz";
        let theirs: Vec<(String, String)> = form_urlencoded::parse(text).into_owned().collect();
        assert_eq!(parse_form(text).0, theirs);
    }

    #[test]
    fn nested_members_and_entries_become_lists_and_maps() {
        let v = nested_to_json(&params(&[
            ("Name", "t"),
            ("Attributes.entry.2.key", "Policy"),
            ("Attributes.entry.2.value", "{}"),
            ("Attributes.entry.1.key", "DisplayName"),
            ("Attributes.entry.1.value", "Orders"),
            ("Tags.member.10.Key", "ten"),
            ("Tags.member.10.Value", "10"),
            ("Tags.member.2.Key", "two"),
            ("Tags.member.2.Value", "2"),
            ("MessageAttributes.entry.1.Name", "color"),
            ("MessageAttributes.entry.1.Value.DataType", "String"),
            ("MessageAttributes.entry.1.Value.StringValue", "blue"),
            ("TagKeys.member.1", "a"),
        ]));
        assert_eq!(v["Name"], "t");
        assert_eq!(v["Attributes"], serde_json::json!({ "DisplayName": "Orders", "Policy": "{}" }));
        assert_eq!(
            v["Tags"],
            serde_json::json!([{ "Key": "two", "Value": "2" }, { "Key": "ten", "Value": "10" }])
        );
        assert_eq!(
            v["MessageAttributes"]["color"],
            serde_json::json!({ "DataType": "String", "StringValue": "blue" })
        );
        assert_eq!(v["TagKeys"], serde_json::json!(["a"]));
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
            let _ = flattened_to_json(&p);
            let _ = nested_to_json(&p);
        }
    }
}
