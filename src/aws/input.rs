//! Reading an action's input: the JSON-shaped value both protocols decode
//! into (the JSON protocol's body, or the Query protocol's parameters once
//! [`super::query`] has rebuilt their structure). Each service turns an
//! [`InputError`] into its own error code.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::queue::message::{AttributeValue, Attributes};

/// What is wrong with an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputError {
    /// A required member is absent (its name).
    Missing(String),
    /// A member has the wrong shape or value (what to tell the caller).
    Invalid(String),
}

impl InputError {
    pub fn invalid(message: impl Into<String>) -> Self {
        InputError::Invalid(message.into())
    }
}

pub type Read<T> = Result<T, InputError>;

/// Member `key` of `v`, unless absent or null.
pub fn field<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// A string member; numbers and booleans are read as their text (the
/// Query protocol has only strings, and SDKs differ on scalars).
pub fn string(v: &Value, key: &str) -> Read<Option<String>> {
    match field(v, key) {
        None => Ok(None),
        Some(x) => scalar(x)
            .map(Some)
            .ok_or_else(|| InputError::Invalid(format!("The parameter {key} must be a string."))),
    }
}

fn scalar(x: &Value) -> Option<String> {
    match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn required(v: &Value, key: &str) -> Read<String> {
    string(v, key)?.ok_or_else(|| InputError::Missing(key.to_owned()))
}

/// A whole number member (a JSON number, or its text).
pub fn number(v: &Value, key: &str) -> Read<Option<u32>> {
    let bad =
        || InputError::Invalid(format!("Value for parameter {key} is invalid: expected a whole number."));
    match field(v, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse::<u32>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// A boolean member (`true`/`false`, or their text).
pub fn boolean(v: &Value, key: &str) -> Read<Option<bool>> {
    match field(v, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => {
            Err(InputError::Invalid(format!("Value for parameter {key} is invalid: expected true or false.")))
        }
    }
}

/// A map of strings under the first of `keys` present (absent: empty).
pub fn string_map(v: &Value, keys: &[&str]) -> Read<BTreeMap<String, String>> {
    let Some(obj) = keys.iter().find_map(|k| field(v, k)) else { return Ok(BTreeMap::new()) };
    let obj = obj.as_object().ok_or_else(|| InputError::Invalid(format!("{} must be a map.", keys[0])))?;
    obj.iter()
        .map(|(k, x)| {
            scalar(x)
                .map(|s| (k.clone(), s))
                .ok_or_else(|| InputError::Invalid(format!("The value of {k} must be a string.")))
        })
        .collect()
}

/// A list of strings (absent: empty). The Query protocol writes an empty
/// list as the bare member (`Name=`).
pub fn string_list(v: &Value, key: &str) -> Read<Vec<String>> {
    match field(v, key) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| InputError::Invalid(format!("{key} must list strings.")))
            })
            .collect(),
        Some(_) => Err(InputError::Invalid(format!("{key} must be a list."))),
    }
}

/// A list of objects (absent: `None`; written as the bare member: empty).
pub fn list<'v>(v: &'v Value, key: &str) -> Read<Option<&'v [Value]>> {
    match field(v, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(Some(&[])),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(InputError::Invalid(format!("{key} must be a list."))),
    }
}

/// Batches carry at most this many entries.
pub const MAX_BATCH: usize = 10;

/// What is wrong with a batch's entries as a whole.
#[derive(Debug)]
pub enum BatchError {
    /// An entry's id could not be read.
    Input(InputError),
    Empty,
    TooMany(usize),
    /// Not 1–80 letters, digits, hyphens and underscores.
    BadId(String),
    Repeated(String),
}

/// Checks a batch's ids: 1–10 entries with distinct, well-formed ids.
pub fn batch_ids(ids: impl ExactSizeIterator<Item = Read<String>>) -> Result<Vec<String>, BatchError> {
    match ids.len() {
        0 => return Err(BatchError::Empty),
        n if n > MAX_BATCH => return Err(BatchError::TooMany(n)),
        _ => {}
    }
    // At most ten ids: a linear look is cheaper than hashing them.
    let mut seen: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.map_err(BatchError::Input)?;
        let valid = !id.is_empty()
            && id.len() <= 80
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(BatchError::BadId(id));
        }
        if seen.contains(&id) {
            return Err(BatchError::Repeated(id));
        }
        seen.push(id);
    }
    Ok(seen)
}

/// Message attributes from a map of `{DataType, StringValue, BinaryValue}`
/// (absent: none); binary values are base64 on the wire.
pub fn message_attributes(obj: Option<&Value>, key: &str) -> Read<Attributes> {
    let Some(obj) = obj.filter(|x| !x.is_null()) else { return Ok(Attributes::new()) };
    let obj = obj.as_object().ok_or_else(|| InputError::invalid(format!("{key} must be a map.")))?;
    let mut out = Attributes::new();
    for (name, value) in obj {
        let data_type = string(value, "DataType")?.ok_or_else(|| {
            InputError::invalid(format!(
                "The message attribute '{name}' must contain a non-empty attribute type."
            ))
        })?;
        let binary_value = match field(value, "BinaryValue") {
            Some(Value::String(b)) => {
                Some(base64::engine::general_purpose::STANDARD.decode(b.trim()).map_err(|_| {
                    InputError::invalid("A binary message attribute value is not valid base64.")
                })?)
            }
            Some(_) => return Err(InputError::invalid("BinaryValue must be base64 text.")),
            None => None,
        };
        let string_value = string(value, "StringValue")?;
        out.insert(name.clone(), AttributeValue { data_type, string_value, binary_value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_read_from_json_or_query_text() {
        let v = json!({ "a": "7", "b": 7, "c": "yes", "d": true, "e": "FALSE", "n": null, "o": {} });
        assert_eq!(number(&v, "a"), Ok(Some(7)));
        assert_eq!(number(&v, "b"), Ok(Some(7)));
        assert!(matches!(number(&v, "c"), Err(InputError::Invalid(_))));
        assert_eq!(boolean(&v, "d"), Ok(Some(true)));
        assert_eq!(boolean(&v, "e"), Ok(Some(false)));
        assert_eq!(string(&v, "n"), Ok(None));
        assert_eq!(string(&v, "b"), Ok(Some("7".into())));
        assert!(matches!(string(&v, "o"), Err(InputError::Invalid(_))));
        assert_eq!(required(&v, "zz"), Err(InputError::Missing("zz".into())));
    }
}
