//! Subscription filter policies, as SNS defines them: which messages a
//! subscription receives, judged on the message's attributes
//! ([`Scope::MessageAttributes`], the default) or on its JSON body
//! ([`Scope::MessageBody`], where keys may nest).
//!
//! A policy is an AND across its keys; each key lists conditions, any of
//! which may match (OR); `$or` lists alternative sub-policies. A value that
//! is a list (a `String.Array` attribute, a JSON array in the body) matches
//! if any element does. Conditions: exact strings and numbers (and `true`,
//! `false`, `null` in bodies), `prefix`, `suffix`, `equals-ignore-case`,
//! `anything-but` (values, `prefix` or `suffix`), `numeric` ranges,
//! `exists` and `cidr`.
//!
//! SNS's limits hold: at most five keys, at most 150 combinations (the
//! product of each key's condition count, `$or` branches added), numbers
//! within ±10⁹ compared to five decimals, and at most 256 KiB of text.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::queue::message::Attributes;

/// The largest policy text accepted.
pub const MAX_POLICY_BYTES: usize = 256 << 10;
const MAX_KEYS: usize = 5;
const MAX_COMBINATIONS: u64 = 150;
const MAX_NUMBER: f64 = 1e9;
/// Body keys nest at most this deep.
const MAX_DEPTH: usize = 5;

/// What a policy is matched against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    #[default]
    MessageAttributes,
    MessageBody,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "MessageAttributes" => Some(Scope::MessageAttributes),
            "MessageBody" => Some(Scope::MessageBody),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::MessageAttributes => "MessageAttributes",
            Scope::MessageBody => "MessageBody",
        }
    }
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterPolicy {
    clauses: Vec<Clause>,
}

#[derive(Clone, Debug, PartialEq)]
enum Clause {
    /// The value at `path` meets one of `conditions`.
    Key { path: Vec<String>, conditions: Vec<Condition> },
    /// One of the sub-policies holds.
    Or(Vec<FilterPolicy>),
}

#[derive(Clone, Debug, PartialEq)]
enum Condition {
    Exact(Literal),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    AnythingBut(Exclusion),
    Numeric(Vec<(Compare, f64)>),
    Exists(bool),
    Cidr(IpNet),
}

#[derive(Clone, Debug, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
enum Exclusion {
    Values(Vec<Literal>),
    Prefix(String),
    Suffix(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Compare {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One value a key has in a message.
#[derive(Clone, Debug)]
enum Datum<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
    Null,
}

/// Why a policy is refused (the text SNS's `InvalidParameter` carries).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Invalid parameter: FilterPolicy: {0}")]
pub struct PolicyError(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(message.into()))
}

impl FilterPolicy {
    /// Parses a policy's text for `scope`. `Ok(None)`: the text is empty or
    /// `{}`, which means no policy (every message matches).
    pub fn parse(text: &str, scope: Scope) -> Result<Option<FilterPolicy>, PolicyError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        if text.len() > MAX_POLICY_BYTES {
            return refuse(format!("Filter policy is too long: at most {MAX_POLICY_BYTES} bytes"));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| PolicyError(format!("failed to parse JSON. {e}")))?;
        let Value::Object(map) = value else { return refuse("Filter policy must be a JSON object") };
        if map.is_empty() {
            return Ok(None);
        }
        let policy = parse_object(&map, &[], scope)?;
        let keys = policy.key_count();
        if keys > MAX_KEYS {
            return refuse(format!("Filter policy can not have more than {MAX_KEYS} keys"));
        }
        if policy.combinations() > MAX_COMBINATIONS {
            return refuse(format!(
                "Filter policy is too complex: more than {MAX_COMBINATIONS} combinations"
            ));
        }
        Ok(Some(policy))
    }

    fn key_count(&self) -> usize {
        let mut paths: Vec<&[String]> = Vec::new();
        self.collect_paths(&mut paths);
        paths.sort();
        paths.dedup();
        paths.len()
    }

    fn collect_paths<'p>(&'p self, out: &mut Vec<&'p [String]>) {
        for c in &self.clauses {
            match c {
                Clause::Key { path, .. } => out.push(path),
                Clause::Or(branches) => branches.iter().for_each(|b| b.collect_paths(out)),
            }
        }
    }

    fn combinations(&self) -> u64 {
        self.clauses
            .iter()
            .map(|c| match c {
                Clause::Key { conditions, .. } => conditions.len() as u64,
                Clause::Or(branches) => branches.iter().map(FilterPolicy::combinations).sum(),
            })
            .fold(1u64, u64::saturating_mul)
    }

    /// Whether a message with these attributes matches.
    pub fn matches_attributes(&self, attributes: &Attributes) -> bool {
        self.matches(&|path: &[String]| attribute_values(attributes, path))
    }

    /// Whether a message with this body matches. A body that is not a JSON
    /// object matches no policy.
    pub fn matches_body(&self, body: &Value) -> bool {
        body.is_object() && self.matches(&|path: &[String]| body_values(body, path))
    }

    fn matches<'a>(&self, lookup: &dyn Fn(&[String]) -> Option<Vec<Datum<'a>>>) -> bool {
        self.clauses.iter().all(|c| match c {
            Clause::Key { path, conditions } => {
                let values = lookup(path);
                conditions.iter().any(|cond| cond.matches(values.as_deref()))
            }
            Clause::Or(branches) => branches.iter().any(|b| b.matches(lookup)),
        })
    }
}

fn parse_object(
    map: &Map<String, Value>,
    prefix: &[String],
    scope: Scope,
) -> Result<FilterPolicy, PolicyError> {
    if prefix.len() >= MAX_DEPTH {
        return refuse(format!("Filter policy keys can nest at most {MAX_DEPTH} levels"));
    }
    let mut clauses = Vec::new();
    for (key, value) in map {
        if key == "$or" {
            clauses.push(parse_or(value, prefix, scope)?);
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(key.clone());
        match value {
            Value::Array(items) => {
                clauses.push(Clause::Key { conditions: parse_conditions(key, items)?, path })
            }
            Value::Object(inner) if scope == Scope::MessageBody => {
                clauses.extend(parse_object(inner, &path, scope)?.clauses);
            }
            Value::Object(_) => {
                return refuse("Filter policy scope MessageAttributes does not support nested filter policy")
            }
            _ => return refuse(format!("Match value of {key} must be an array")),
        }
    }
    Ok(FilterPolicy { clauses })
}

fn parse_or(value: &Value, prefix: &[String], scope: Scope) -> Result<Clause, PolicyError> {
    let Value::Array(branches) = value else { return refuse("$or must be an array of objects") };
    if branches.len() < 2 {
        return refuse("$or must list at least two alternatives");
    }
    let branches = branches
        .iter()
        .map(|b| match b {
            Value::Object(m) if !m.is_empty() => parse_object(m, prefix, scope),
            _ => refuse("$or must be an array of objects"),
        })
        .collect::<Result<_, _>>()?;
    Ok(Clause::Or(branches))
}

fn parse_conditions(key: &str, items: &[Value]) -> Result<Vec<Condition>, PolicyError> {
    if items.is_empty() {
        return refuse(format!("Empty arrays are not allowed: {key}"));
    }
    items.iter().map(parse_condition).collect()
}

fn parse_condition(item: &Value) -> Result<Condition, PolicyError> {
    let Value::Object(op) = item else { return Ok(Condition::Exact(literal(item)?)) };
    let mut ops = op.iter();
    let (Some((name, arg)), None) = (ops.next(), ops.next()) else {
        return refuse("A match condition must have exactly one operator");
    };
    match name.as_str() {
        "prefix" => Ok(Condition::Prefix(text(name, arg)?)),
        "suffix" => Ok(Condition::Suffix(text(name, arg)?)),
        "equals-ignore-case" => Ok(Condition::EqualsIgnoreCase(text(name, arg)?)),
        "anything-but" => Ok(Condition::AnythingBut(exclusion(arg)?)),
        "numeric" => Ok(Condition::Numeric(numeric(arg)?)),
        "exists" => match arg {
            Value::Bool(b) => Ok(Condition::Exists(*b)),
            _ => refuse("exists match pattern must be either true or false."),
        },
        "cidr" => {
            let net = text(name, arg)?;
            net.parse::<IpNet>()
                .map(Condition::Cidr)
                .map_err(|_| PolicyError(format!("Malformed CIDR: {net}")))
        }
        other => refuse(format!("Unrecognized match type {other}")),
    }
}

fn literal(v: &Value) -> Result<Literal, PolicyError> {
    match v {
        Value::String(s) => Ok(Literal::Str(s.clone())),
        Value::Number(n) => number(n).map(Literal::Num),
        Value::Bool(b) => Ok(Literal::Bool(*b)),
        Value::Null => Ok(Literal::Null),
        _ => refuse("Match values must be strings, numbers, true, false or null"),
    }
}

fn number(n: &serde_json::Number) -> Result<f64, PolicyError> {
    match n.as_f64() {
        Some(f) if f.abs() <= MAX_NUMBER => Ok(round5(f)),
        _ => refuse(format!("Numeric values must be between -{MAX_NUMBER:e} and {MAX_NUMBER:e}: {n}")),
    }
}

/// Numbers compare to five decimal places, as SNS does.
fn round5(f: f64) -> f64 {
    (f * 1e5).round() / 1e5
}

fn text(op: &str, v: &Value) -> Result<String, PolicyError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => refuse(format!("{op} match pattern must be a string")),
    }
}

fn exclusion(arg: &Value) -> Result<Exclusion, PolicyError> {
    match arg {
        Value::Array(items) if !items.is_empty() => {
            Ok(Exclusion::Values(items.iter().map(literal).collect::<Result<_, _>>()?))
        }
        Value::Array(_) => refuse("anything-but needs at least one value"),
        Value::Object(m) if m.len() == 1 => match m.iter().next() {
            Some((k, v)) if k == "prefix" => Ok(Exclusion::Prefix(text(k, v)?)),
            Some((k, v)) if k == "suffix" => Ok(Exclusion::Suffix(text(k, v)?)),
            _ => refuse("anything-but accepts values, or one of prefix and suffix"),
        },
        Value::Object(_) => refuse("anything-but accepts values, or one of prefix and suffix"),
        v => Ok(Exclusion::Values(vec![literal(v)?])),
    }
}

/// `[">", 0, "<=", 5]` or `["=", 3]`: a lower bound, an upper bound, or
/// both (lower first), or one equality.
fn numeric(arg: &Value) -> Result<Vec<(Compare, f64)>, PolicyError> {
    let bad = || {
        PolicyError(
            "Value of numeric must be an array of operators and numbers, such as [\">\", 0, \"<=\", 5]"
                .into(),
        )
    };
    let Value::Array(items) = arg else { return Err(bad()) };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(bad());
    }
    let mut out = Vec::new();
    for pair in items.chunks(2) {
        let op = match pair[0].as_str() {
            Some("=") => Compare::Eq,
            Some("<") => Compare::Lt,
            Some("<=") => Compare::Le,
            Some(">") => Compare::Gt,
            Some(">=") => Compare::Ge,
            Some(other) => return refuse(format!("Unrecognized numeric range operator: {other}")),
            None => return Err(bad()),
        };
        let Value::Number(n) = &pair[1] else { return Err(bad()) };
        out.push((op, number(n)?));
    }
    let lower = |c: Compare| matches!(c, Compare::Gt | Compare::Ge);
    let upper = |c: Compare| matches!(c, Compare::Lt | Compare::Le);
    match out.as_slice() {
        [_] => {}
        [(a, lo), (b, hi)] if lower(*a) && upper(*b) => {
            if lo >= hi {
                return refuse("Bottom must be less than top");
            }
        }
        _ => {
            return refuse(
                "Too many elements in numeric expression: give one bound of each kind, lower first",
            )
        }
    }
    Ok(out)
}

impl Condition {
    /// `values`: the key's values in the message, `None` if it has none.
    fn matches(&self, values: Option<&[Datum<'_>]>) -> bool {
        match (self, values) {
            (Condition::Exists(want), v) => *want == v.is_some(),
            (_, None) => false,
            (c, Some(values)) => values.iter().any(|d| c.matches_one(d)),
        }
    }

    fn matches_one(&self, d: &Datum<'_>) -> bool {
        match (self, d) {
            (Condition::Exact(l), d) => l.matches(d),
            (Condition::Prefix(p), Datum::Str(s)) => s.starts_with(p.as_str()),
            (Condition::Suffix(p), Datum::Str(s)) => s.ends_with(p.as_str()),
            (Condition::EqualsIgnoreCase(p), Datum::Str(s)) => s.to_lowercase() == p.to_lowercase(),
            (Condition::AnythingBut(Exclusion::Values(vs)), d) => !vs.iter().any(|l| l.matches(d)),
            (Condition::AnythingBut(Exclusion::Prefix(p)), Datum::Str(s)) => !s.starts_with(p.as_str()),
            (Condition::AnythingBut(Exclusion::Suffix(p)), Datum::Str(s)) => !s.ends_with(p.as_str()),
            (Condition::Numeric(bounds), Datum::Num(n)) => {
                let n = round5(*n);
                bounds.iter().all(|(op, x)| match op {
                    Compare::Eq => n == *x,
                    Compare::Lt => n < *x,
                    Compare::Le => n <= *x,
                    Compare::Gt => n > *x,
                    Compare::Ge => n >= *x,
                })
            }
            (Condition::Cidr(net), Datum::Str(s)) => s.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
            _ => false,
        }
    }
}

impl Literal {
    fn matches(&self, d: &Datum<'_>) -> bool {
        match (self, d) {
            (Literal::Str(a), Datum::Str(b)) => a == b,
            (Literal::Num(a), Datum::Num(b)) => *a == round5(*b),
            (Literal::Bool(a), Datum::Bool(b)) => a == b,
            (Literal::Null, Datum::Null) => true,
            _ => false,
        }
    }
}

/// An attribute's values: a `String` is one string, a `Number` one number,
/// a `String.Array` its elements. Binary attributes are not matched.
fn attribute_values<'a>(attributes: &'a Attributes, path: &[String]) -> Option<Vec<Datum<'a>>> {
    let [name] = path else { return None };
    let a = attributes.get(name)?;
    let text = a.string_value.as_deref()?;
    let base = a.data_type.split('.').next().unwrap_or("");
    if a.data_type == "String.Array" {
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(text) else {
            return Some(vec![Datum::Str(Cow::Borrowed(text))]);
        };
        return Some(items.into_iter().filter_map(datum_of).collect());
    }
    match base {
        "String" => Some(vec![Datum::Str(Cow::Borrowed(text))]),
        "Number" => text.trim().parse::<f64>().ok().map(|n| vec![Datum::Num(n)]),
        _ => None,
    }
}

/// The values at `path` in a JSON body: a scalar, or the scalars of an
/// array. Objects are not values (but a key holding one exists).
fn body_values<'a>(body: &'a Value, path: &[String]) -> Option<Vec<Datum<'a>>> {
    let mut at = body;
    for key in path {
        at = at.as_object()?.get(key)?;
    }
    let datum = |v: &'a Value| match v {
        Value::String(s) => Some(Datum::Str(Cow::Borrowed(s))),
        other => scalar(other),
    };
    match at {
        Value::Array(items) => Some(items.iter().filter_map(datum).collect()),
        Value::Object(_) => Some(Vec::new()),
        v => Some(datum(v).into_iter().collect()),
    }
}

/// An element of a `String.Array` attribute (parsed, so owned).
fn datum_of(v: Value) -> Option<Datum<'static>> {
    match v {
        Value::String(s) => Some(Datum::Str(Cow::Owned(s))),
        other => scalar(&other),
    }
}

/// A JSON scalar other than a string as a value.
fn scalar(v: &Value) -> Option<Datum<'static>> {
    match v {
        Value::Number(n) => n.as_f64().map(Datum::Num),
        Value::Bool(b) => Some(Datum::Bool(*b)),
        Value::Null => Some(Datum::Null),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::message::AttributeValue;
    use proptest::prelude::*;
    use serde_json::json;

    fn attrs(pairs: &[(&str, &str, &str)]) -> Attributes {
        pairs
            .iter()
            .map(|(name, t, v)| {
                let value = AttributeValue {
                    data_type: t.to_string(),
                    string_value: Some(v.to_string()),
                    binary_value: None,
                };
                (name.to_string(), value)
            })
            .collect()
    }

    fn policy(text: &str) -> FilterPolicy {
        FilterPolicy::parse(text, Scope::MessageAttributes).unwrap().unwrap()
    }

    fn body_policy(text: &str) -> FilterPolicy {
        FilterPolicy::parse(text, Scope::MessageBody).unwrap().unwrap()
    }

    fn error(text: &str, scope: Scope) -> String {
        FilterPolicy::parse(text, scope).unwrap_err().to_string()
    }

    #[test]
    fn every_operator_on_attributes() {
        let m = attrs(&[
            ("store", "String", "example_corp"),
            ("event", "String", "order_placed"),
            ("price", "Number", "210.75"),
            ("ip", "String", "10.0.1.7"),
            ("tags", "String.Array", r#"["red", "big", 7]"#),
            ("blob", "Binary", "x"),
        ]);
        let yes = [
            r#"{"store": ["example_corp"]}"#,
            r#"{"store": ["other", "example_corp"]}"#,
            r#"{"store": [{"prefix": "exam"}]}"#,
            r#"{"event": [{"suffix": "_placed"}]}"#,
            r#"{"store": [{"equals-ignore-case": "EXAMPLE_Corp"}]}"#,
            r#"{"store": [{"anything-but": ["a", "b"]}]}"#,
            r#"{"store": [{"anything-but": "a"}]}"#,
            r#"{"store": [{"anything-but": {"prefix": "z"}}]}"#,
            r#"{"store": [{"anything-but": {"suffix": "z"}}]}"#,
            r#"{"price": [{"numeric": [">", 100, "<=", 210.75]}]}"#,
            r#"{"price": [{"numeric": ["=", 210.75]}]}"#,
            r#"{"price": [210.75]}"#,
            r#"{"store": [{"exists": true}]}"#,
            r#"{"missing": [{"exists": false}]}"#,
            r#"{"ip": [{"cidr": "10.0.0.0/16"}]}"#,
            r#"{"tags": ["big"]}"#,
            r#"{"tags": [7]}"#,
            r#"{"store": ["example_corp"], "event": ["order_placed"]}"#,
            r#"{"$or": [{"store": ["nope"]}, {"event": ["order_placed"]}]}"#,
        ];
        for p in yes {
            assert!(policy(p).matches_attributes(&m), "{p} should match");
        }
        let no = [
            r#"{"store": ["Example_corp"]}"#,
            r#"{"store": [{"prefix": "corp"}]}"#,
            r#"{"event": [{"suffix": "order"}]}"#,
            r#"{"store": [{"anything-but": ["example_corp"]}]}"#,
            r#"{"store": [{"anything-but": {"prefix": "ex"}}]}"#,
            r#"{"missing": [{"anything-but": ["x"]}]}"#,
            r#"{"price": [{"numeric": [">", 210.75]}]}"#,
            r#"{"price": ["210.75"]}"#,
            r#"{"store": [{"numeric": [">", 0]}]}"#,
            r#"{"store": [{"exists": false}]}"#,
            r#"{"missing": [{"exists": true}]}"#,
            r#"{"missing": ["x"]}"#,
            r#"{"blob": [{"exists": true}]}"#,
            r#"{"ip": [{"cidr": "10.1.0.0/16"}]}"#,
            r#"{"tags": ["blue"]}"#,
            r#"{"store": ["example_corp"], "event": ["cancelled"]}"#,
            r#"{"$or": [{"store": ["nope"]}, {"event": ["nope"]}]}"#,
        ];
        for p in no {
            assert!(!policy(p).matches_attributes(&m), "{p} should not match");
        }
    }

    #[test]
    fn body_policies_nest_and_match_arrays() {
        let body = json!({
            "order": { "kind": "retail", "total": 42, "items": ["book", "pen"], "gift": true, "note": null },
            "region": "eu-west-1",
        });
        let yes = [
            r#"{"order": {"kind": ["retail"]}}"#,
            r#"{"order": {"total": [{"numeric": [">=", 42]}]}, "region": [{"prefix": "eu-"}]}"#,
            r#"{"order": {"items": ["pen"]}}"#,
            r#"{"order": {"gift": [true], "note": [null]}}"#,
            r#"{"order": {"$or": [{"kind": ["x"]}, {"total": [42]}]}}"#,
            r#"{"order": [{"exists": true}]}"#,
        ];
        for p in yes {
            assert!(body_policy(p).matches_body(&body), "{p} should match");
        }
        let no = [
            r#"{"order": {"kind": ["wholesale"]}}"#,
            r#"{"order": {"items": ["cup"]}}"#,
            r#"{"kind": ["retail"]}"#,
            r#"{"order": {"gift": [false]}}"#,
        ];
        for p in no {
            assert!(!body_policy(p).matches_body(&body), "{p} should not match");
        }
        assert!(!body_policy(r#"{"a": ["b"]}"#).matches_body(&json!("not an object")));
    }

    #[test]
    fn limits_and_malformed_policies_are_refused_with_reasons() {
        let a = Scope::MessageAttributes;
        assert_eq!(FilterPolicy::parse("", a), Ok(None));
        assert_eq!(FilterPolicy::parse(" {} ", a), Ok(None));
        for (text, reason) in [
            ("[1]", "must be a JSON object"),
            ("{", "failed to parse JSON"),
            (r#"{"a": "b"}"#, "must be an array"),
            (r#"{"a": []}"#, "Empty arrays"),
            (r#"{"a": {"b": ["c"]}}"#, "does not support nested"),
            (r#"{"a": [{"wildcat": "x"}]}"#, "Unrecognized match type wildcat"),
            (r#"{"a": [{"prefix": "x", "suffix": "y"}]}"#, "exactly one operator"),
            (r#"{"a": [{"numeric": [">", 5, "<", 1]}]}"#, "Bottom must be less than top"),
            (r#"{"a": [{"numeric": ["<", 5, ">", 1]}]}"#, "lower first"),
            (r#"{"a": [{"numeric": ["~", 5]}]}"#, "Unrecognized numeric range operator"),
            (r#"{"a": [{"numeric": [">", 2000000000]}]}"#, "between"),
            (r#"{"a": [{"exists": "yes"}]}"#, "either true or false"),
            (r#"{"a": [{"cidr": "10.0.0.0/99"}]}"#, "Malformed CIDR"),
            (r#"{"a": [{"anything-but": {"infix": "x"}}]}"#, "anything-but accepts"),
            (r#"{"$or": [{"a": ["b"]}]}"#, "at least two"),
            (r#"{"a":["1"],"b":["1"],"c":["1"],"d":["1"],"e":["1"],"f":["1"]}"#, "more than 5 keys"),
        ] {
            let e = error(text, a);
            assert!(e.starts_with("Invalid parameter: FilterPolicy: "), "{e}");
            assert!(e.contains(reason), "{text}: {e}");
        }
        // 6 × 5 × 6 = 180 combinations.
        let list = |n: usize| (0..n).map(|i| format!("\"v{i}\"")).collect::<Vec<_>>().join(",");
        let complex = format!(r#"{{"a":[{}],"b":[{}],"c":[{}]}}"#, list(6), list(5), list(6));
        assert!(error(&complex, a).contains("too complex"));
        let fine = format!(r#"{{"a":[{}],"b":[{}],"c":[{}]}}"#, list(5), list(5), list(6));
        assert!(FilterPolicy::parse(&fine, a).is_ok());
        let deep = r#"{"a":{"b":{"c":{"d":{"e":{"f":["x"]}}}}}}"#;
        assert!(error(deep, Scope::MessageBody).contains("nest at most"));
    }

    proptest! {
        #[test]
        fn parsing_and_matching_never_panic(text in "[\\[\\]{}\",:a-z0-9<>=. -]{0,60}", value in ".{0,20}") {
            for scope in [Scope::MessageAttributes, Scope::MessageBody] {
                if let Ok(Some(p)) = FilterPolicy::parse(&text, scope) {
                    let _ = p.matches_attributes(&attrs(&[("a", "String", &value), ("b", "String.Array", &value)]));
                    let _ = p.matches_body(&json!({ "a": value }));
                }
            }
        }
    }
}
