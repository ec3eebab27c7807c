//! Compact JSON text of a [`Value`], byte for byte what `serde_json` writes,
//! with a faster string path: answers to `ReceiveMessage` are mostly message
//! bodies, and `serde_json` escapes strings one byte at a time. Here 64
//! bytes are checked at once (the compiler turns the check into vector
//! instructions) and runs without anything to escape are copied whole.

use std::fmt::Write as _;

use serde_json::Value;

/// `v` as compact JSON text.
pub fn to_string(v: &Value) -> String {
    let mut out = String::with_capacity(size_hint(v));
    write_value(&mut out, v);
    out
}

/// The length of `v`'s text if no string needed escaping: enough room that
/// a `ReceiveMessage` answer (ten bodies) is written without regrowing.
fn size_hint(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|x| size_hint(x) + 1).sum::<usize>(),
        Value::Object(map) => 2 + map.iter().map(|(k, x)| k.len() + 4 + size_hint(x)).sum::<usize>(),
    }
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // serde_json's Display for numbers is its serialisation (itoa, ryu).
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_str(out, s),
        Value::Array(items) => push_list(out, '[', items, ']', write_value),
        Value::Object(map) => push_list(out, '{', map, '}', |out, (k, item)| {
            push_str(out, k);
            out.push(':');
            write_value(out, item);
        }),
    }
}

/// Appends `open`, the items (each written by `each`) separated by commas,
/// then `close`.
pub fn push_list<T>(
    out: &mut String,
    open: char,
    items: impl IntoIterator<Item = T>,
    close: char,
    mut each: impl FnMut(&mut String, T),
) {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, item);
    }
    out.push(close);
}

/// Appends `prefix` as it is (punctuation and a quoted key from the
/// protocol, such as `,"Body":`), then `value` as a JSON string.
#[inline]
pub fn push_field(out: &mut String, prefix: &'static str, value: &str) {
    out.push_str(prefix);
    push_str(out, value);
}

#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `s` as a JSON string literal, escaped as `serde_json` does:
/// the short forms for `"`, `\`, backspace, form feed, newline, carriage
/// return and tab, `\u00XX` for other control characters, everything else
/// (including non-ASCII) as it is.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // `copied` is where the bytes not yet appended start. Escapes are ASCII,
    // so every cut made below falls on a character boundary.
    let mut copied = 0;
    for (n, chunk) in s.as_bytes().chunks(CHUNK).enumerate() {
        // Branch-free over the chunk, like `validate_body`: vectorised.
        if chunk.iter().fold(true, |clean, &b| clean & !needs_escape(b)) {
            continue;
        }
        let at = n * CHUNK;
        for (k, &b) in chunk.iter().enumerate() {
            if needs_escape(b) {
                out.push_str(&s[copied..at + k]);
                push_escape(out, b);
                copied = at + k + 1;
            }
        }
    }
    out.push_str(&s[copied..]);
    out.push('"');
}

/// Bytes checked at once for anything to escape.
const CHUNK: usize = 64;

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        0x08 => out.push_str("\\b"),
        0x0c => out.push_str("\\f"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b'\t' => out.push_str("\\t"),
        _ => {
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn matches_serde_json_on_every_kind_of_value() {
        let v = json!({
            "b": [true, false, null],
            "a": { "n": -12, "u": 18446744073709551615u64, "f": 1.5e-7, "z": 0.0 },
            "s": "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} é ✓ 😀",
            "long": "x".repeat(100) + "\u{1}" + &"y".repeat(37),
            "": "",
        });
        assert_eq!(to_string(&v), serde_json::to_string(&v).unwrap());
    }

    #[test]
    fn escapes_at_every_position_of_a_block() {
        for pos in 0..150 {
            for c in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
                let mut s: String = "a".repeat(150);
                s.replace_range(pos..pos + 1, &c.to_string());
                let v = Value::String(s);
                assert_eq!(to_string(&v), serde_json::to_string(&v).unwrap(), "{c:?} at {pos}");
            }
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
            "[a-z\"\\\\\\n\\x00-\\x1f]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn same_text_as_serde_json(v in value()) {
            prop_assert_eq!(to_string(&v), serde_json::to_string(&v).unwrap());
        }
    }
}
