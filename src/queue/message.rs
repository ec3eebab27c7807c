//! Messages as SQS defines them: bodies, message attributes and their
//! MD5 digests, receipt handles.

use std::collections::BTreeMap;

use base64::Engine as _;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::error::QueueError;

/// A message attribute value. `data_type` is `String`, `Number` or `Binary`,
/// optionally followed by a custom suffix (`Number.float`, `Binary.gif`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeValue {
    #[serde(rename = "t")]
    pub data_type: String,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none", with = "opt_b64")]
    pub binary_value: Option<Vec<u8>>,
}

mod opt_b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The base type an attribute's data type names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseType {
    String,
    Number,
    Binary,
}

impl AttributeValue {
    pub fn base_type(&self) -> Option<BaseType> {
        let base = self.data_type.split('.').next().unwrap_or("");
        match base {
            "String" => Some(BaseType::String),
            "Number" => Some(BaseType::Number),
            "Binary" => Some(BaseType::Binary),
            _ => None,
        }
    }

    /// The bytes this value counts towards the message size.
    fn size(&self) -> usize {
        self.data_type.len()
            + self.string_value.as_ref().map_or(0, String::len)
            + self.binary_value.as_ref().map_or(0, Vec::len)
    }
}

/// A message's attributes, sorted by name.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// At most this many message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

/// Checks attributes as SQS does and returns the bytes they add to the
/// message size.
pub fn validate_attributes(attrs: &Attributes) -> Result<usize, QueueError> {
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(QueueError::invalid_parameter(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            attrs.len()
        )));
    }
    let mut size = 0;
    for (name, value) in attrs {
        validate_attribute_name(name)?;
        if value.data_type.is_empty() || value.data_type.len() > 256 {
            return Err(QueueError::invalid_parameter(format!(
                "The message attribute '{name}' must contain a non-empty attribute type of at most 256 characters."
            )));
        }
        match value.base_type() {
            None => {
                return Err(QueueError::invalid_parameter(format!(
                    "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
                )))
            }
            Some(BaseType::Binary) => {
                if value.binary_value.is_none() || value.string_value.is_some() {
                    return Err(QueueError::invalid_parameter(format!(
                        "The message attribute '{name}' with type 'Binary' must use field 'Binary'."
                    )));
                }
            }
            Some(base) => {
                let Some(s) = &value.string_value else {
                    return Err(QueueError::invalid_parameter(format!(
                        "The message attribute '{name}' with type '{}' must use field 'String'.",
                        value.data_type
                    )));
                };
                if value.binary_value.is_some() {
                    return Err(QueueError::invalid_parameter(format!(
                        "The message attribute '{name}' with type '{}' must use field 'String'.",
                        value.data_type
                    )));
                }
                if let Some(bad) = s.chars().find(|c| !allowed_char(*c)) {
                    return Err(QueueError::invalid_parameter(format!(
                        "Message attribute '{name}' contains the invalid character {:#x}.",
                        bad as u32
                    )));
                }
                if base == BaseType::Number && !valid_number(s) {
                    return Err(QueueError::invalid_parameter(format!(
                        "Can't cast the value of message (user) attribute '{name}' to a number."
                    )));
                }
            }
        }
        size += name.len() + value.size();
    }
    Ok(size)
}

fn validate_attribute_name(name: &str) -> Result<(), QueueError> {
    let lower = name.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if ok {
        Ok(())
    } else {
        Err(QueueError::invalid_parameter(format!(
            "The message attribute name '{name}' is invalid. Names use up to 256 letters, digits, '_', '-' and '.', cannot start or end with '.', contain '..', or start with 'AWS.' or 'Amazon.'."
        )))
    }
}

/// SQS numbers: up to 38 significant digits, optionally signed, with an
/// optional fraction and exponent.
fn valid_number(s: &str) -> bool {
    let t = s.trim();
    if t.is_empty() || t.parse::<f64>().is_err() || t.contains(['i', 'n', 'I', 'N']) {
        return false;
    }
    let mantissa = t.split(['e', 'E']).next().unwrap_or("");
    let digits = mantissa.chars().filter(char::is_ascii_digit).skip_while(|c| *c == '0').count();
    digits <= 38
}

/// Characters SQS allows in a message body (XML 1.0 characters):
/// `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`.
pub fn allowed_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Checks a body's characters.
pub fn validate_body(body: &str) -> Result<(), QueueError> {
    if body.is_empty() {
        return Err(QueueError::MissingParameter(
            "The request must contain the parameter MessageBody.".into(),
        ));
    }
    // Fast path for the common case, printable ASCII (and tab, CR, LF):
    // a branch-free pass over 64-byte chunks that the compiler vectorises.
    let ascii_ok = body.as_bytes().chunks(64).all(|chunk| {
        chunk.iter().fold(true, |ok, &b| {
            ok & ((0x20..0x80).contains(&b) | (b == b'\t') | (b == b'\n') | (b == b'\r'))
        })
    });
    if ascii_ok {
        return Ok(());
    }
    if let Some(bad) = body.chars().find(|c| !allowed_char(*c)) {
        return Err(QueueError::InvalidMessageContents(format!(
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF; found {:#x}",
            bad as u32
        )));
    }
    Ok(())
}

/// MD5 of a body, as hex.
pub fn md5_hex(data: &[u8]) -> String {
    hex(&md5(data))
}

/// The MD5 digest of `data`.
pub fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// `MD5OfMessageAttributes`: names sorted; for each, `len32(name) name
/// len32(type) type`, a transport byte (1 string/number, 2 binary), then
/// `len32(value) value`; MD5 of the whole, hex. `None` without attributes.
pub fn attributes_md5(attrs: &Attributes) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    fn field(h: &mut Md5, bytes: &[u8]) {
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(bytes);
    }
    let mut h = Md5::new();
    for (name, value) in attrs {
        field(&mut h, name.as_bytes());
        field(&mut h, value.data_type.as_bytes());
        match (&value.binary_value, &value.string_value) {
            (Some(b), _) => {
                h.update([2u8]);
                field(&mut h, b);
            }
            (None, s) => {
                h.update([1u8]);
                field(&mut h, s.as_deref().unwrap_or("").as_bytes());
            }
        }
    }
    Some(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let text: Vec<u8> =
        bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]).collect();
    String::from_utf8(text).expect("hex digits are ASCII")
}

/// Which received message a client may delete or change: the queue, the
/// message, and the nonce of the receive that handed it out. Only the latest
/// receive's handle is honoured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptHandle {
    pub queue: i64,
    pub message: i64,
    pub nonce: u64,
}

const RECEIPT_VERSION: u8 = 1;

impl ReceiptHandle {
    pub fn encode(&self) -> String {
        let mut raw = [0u8; 25];
        raw[0] = RECEIPT_VERSION;
        raw[1..9].copy_from_slice(&self.queue.to_be_bytes());
        raw[9..17].copy_from_slice(&self.message.to_be_bytes());
        raw[17..25].copy_from_slice(&self.nonce.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(text: &str) -> Result<Self, QueueError> {
        let invalid = || {
            QueueError::ReceiptHandleIsInvalid(format!(
                "The input receipt handle \"{text}\" is not a valid receipt handle."
            ))
        };
        let raw =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| invalid())?;
        if raw.len() != 25 || raw[0] != RECEIPT_VERSION {
            return Err(invalid());
        }
        let word = |r: std::ops::Range<usize>| -> [u8; 8] { raw[r].try_into().unwrap_or([0; 8]) };
        Ok(Self {
            queue: i64::from_be_bytes(word(1..9)),
            message: i64::from_be_bytes(word(9..17)),
            nonce: u64::from_be_bytes(word(17..25)),
        })
    }
}

/// A message id in UUID form, derived from the stored sequence and a
/// per-database salt: stable for the message's life (also across a move to
/// a dead-letter queue) without being stored.
pub fn message_id(seq: i64, salt: u64) -> String {
    let a = mix(seq as u64 ^ salt);
    let b = mix(a ^ salt.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15);
    let x = ((a as u128) << 64) | b as u128;
    // Version 4, variant 10 bits, as random UUIDs look.
    let x = (x & !(0xf_u128 << 76)) | (0x4 << 76);
    let x = (x & !(0x3_u128 << 62)) | (0x2 << 62);
    uuid_text(x)
}

/// `x` in the hyphenated hex form of a UUID (8-4-4-4-12 lowercase digits).
pub fn uuid_text(x: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'-'; 36];
    let mut at = 0;
    for (i, b) in x.to_be_bytes().into_iter().enumerate() {
        // Hyphens before bytes 4, 6, 8 and 10.
        at += usize::from(matches!(i, 4 | 6 | 8 | 10));
        text[at] = DIGITS[usize::from(b >> 4)];
        text[at + 1] = DIGITS[usize::from(b & 0xf)];
        at += 2;
    }
    String::from_utf8(text.to_vec()).expect("hex digits and hyphens are ASCII")
}

/// A bijective 64-bit mixer (splitmix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn string(v: &str) -> AttributeValue {
        AttributeValue { data_type: "String".into(), string_value: Some(v.into()), binary_value: None }
    }

    #[test]
    fn attribute_md5_matches_the_published_vector() {
        let mut attrs = Attributes::new();
        attrs.insert("attribName1".into(), string("attribValue 1"));
        assert_eq!(attributes_md5(&attrs).as_deref(), Some("19e27d4e946b072f3f58da80d94fd778"));
    }

    #[test]
    fn attribute_md5_sorts_names_and_encodes_each_type() {
        // Values computed with the reference algorithm (botocore's
        // `_get_md5_of_message_attributes`); insertion order must not matter.
        let mut attrs = Attributes::new();
        attrs.insert(
            "b".into(),
            AttributeValue {
                data_type: "Number".into(),
                string_value: Some("42".into()),
                binary_value: None,
            },
        );
        attrs.insert(
            "a".into(),
            AttributeValue {
                data_type: "Binary".into(),
                string_value: None,
                binary_value: Some(vec![1, 2, 3]),
            },
        );
        let mut manual = Md5::new();
        for (name, ty, tb, value) in
            [("a", "Binary", 2u8, &[1u8, 2, 3][..]), ("b", "Number", 1u8, b"42".as_slice())]
        {
            manual.update((name.len() as u32).to_be_bytes());
            manual.update(name);
            manual.update((ty.len() as u32).to_be_bytes());
            manual.update(ty);
            manual.update([tb]);
            manual.update((value.len() as u32).to_be_bytes());
            manual.update(value);
        }
        assert_eq!(attributes_md5(&attrs).unwrap(), hex(&manual.finalize()));
        assert_eq!(attributes_md5(&Attributes::new()), None);
    }

    #[test]
    fn uuid_text_is_the_hyphenated_hex_form() {
        for x in [0, 1, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            let h = format!("{x:032x}");
            let want = format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
            assert_eq!(uuid_text(x), want);
        }
    }

    #[test]
    fn body_md5_is_the_md5_of_the_utf8_bytes() {
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn bodies_reject_characters_sqs_rejects() {
        assert!(validate_body("fine\ttext\r\n with unicode ✓ 𝄞").is_ok());
        assert!(matches!(validate_body("nul\0byte"), Err(QueueError::InvalidMessageContents(_))));
        assert!(matches!(validate_body("bell\u{7}"), Err(QueueError::InvalidMessageContents(_))));
        assert!(matches!(validate_body("\u{FFFE}"), Err(QueueError::InvalidMessageContents(_))));
        assert!(matches!(validate_body(""), Err(QueueError::MissingParameter(_))));
        // Long ASCII bodies take the chunked fast path; a bad byte anywhere
        // in any chunk is still found.
        let mut long = "x".repeat(200);
        assert!(validate_body(&long).is_ok());
        long.replace_range(130..131, "\u{1b}");
        assert!(matches!(validate_body(&long), Err(QueueError::InvalidMessageContents(_))));
    }

    proptest::proptest! {
        #[test]
        fn body_validation_agrees_with_the_character_rule(body in "(?s).{1,300}") {
            let expected = body.chars().all(allowed_char);
            proptest::prop_assert_eq!(validate_body(&body).is_ok(), expected);
        }

        #[test]
        fn ascii_body_validation_agrees_with_the_character_rule(bytes in proptest::collection::vec(0u8..0x80, 1..300)) {
            let body = String::from_utf8(bytes).expect("ASCII");
            let expected = body.chars().all(allowed_char);
            proptest::prop_assert_eq!(validate_body(&body).is_ok(), expected);
        }
    }

    #[test]
    fn attributes_are_validated_like_sqs() {
        let ok: Attributes = [(
            "n".to_string(),
            AttributeValue {
                data_type: "Number.float".into(),
                string_value: Some("-1.5e3".into()),
                binary_value: None,
            },
        )]
        .into();
        assert_eq!(validate_attributes(&ok).unwrap(), "n".len() + "Number.float".len() + "-1.5e3".len());
        for (name, value) in [
            ("AWS.x", string("v")),
            ("a..b", string("v")),
            (".a", string("v")),
            ("sp ace", string("v")),
            (
                "n",
                AttributeValue {
                    data_type: "Number".into(),
                    string_value: Some("abc".into()),
                    binary_value: None,
                },
            ),
            (
                "t",
                AttributeValue {
                    data_type: "Blob".into(),
                    string_value: Some("x".into()),
                    binary_value: None,
                },
            ),
            (
                "b",
                AttributeValue {
                    data_type: "Binary".into(),
                    string_value: Some("x".into()),
                    binary_value: None,
                },
            ),
            ("s", AttributeValue { data_type: "String".into(), string_value: None, binary_value: None }),
        ] {
            let attrs: Attributes = [(name.to_string(), value)].into();
            assert!(validate_attributes(&attrs).is_err(), "{name} should be rejected");
        }
        let many: Attributes = (0..11).map(|i| (format!("a{i}"), string("v"))).collect();
        assert!(validate_attributes(&many).is_err());
    }

    #[test]
    fn message_ids_are_uuid_shaped_and_distinct() {
        let a = message_id(1, 42);
        let b = message_id(2, 42);
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_eq!(message_id(1, 42), a, "stable");
    }

    proptest! {
        #[test]
        fn receipt_handles_round_trip(q in any::<i64>(), m in any::<i64>(), n in any::<u64>()) {
            let h = ReceiptHandle { queue: q, message: m, nonce: n };
            prop_assert_eq!(ReceiptHandle::decode(&h.encode()).unwrap(), h);
        }

        #[test]
        fn receipt_decoding_never_panics(s in "\\PC{0,60}") {
            let _ = ReceiptHandle::decode(&s);
        }
    }
}
