//! Finds where a node of a YAML document sits in its source text.
//!
//! serde_yaml gives no positions for parsed values, but it does attach the
//! position of the node being read to any error raised while reading it. A
//! [`Probe`] walks the document along a [`KeyPath`] and raises an error at the
//! target node; the error's location is the answer. Only problems are ever
//! located, so the extra parse per problem costs nothing on a valid file.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::problem::{KeyPath, Segment};

/// Which part of a mapping entry to point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// The key itself (used for unknown or misplaced keys).
    Key,
    /// The value under the key (used for bad values).
    Value,
}

const FOUND: &str = "\u{0}gatehouse-probe-found";

/// Returns the 1-based line and column of the node at `path`, if the path
/// exists in `source`.
pub fn locate(source: &str, path: &KeyPath, anchor: Anchor) -> Option<(usize, usize)> {
    let probe = Probe { path: path.segments(), anchor };
    let err = probe.deserialize(serde_yaml::Deserializer::from_str(source)).err()?;
    if !err.to_string().contains(FOUND) {
        return None;
    }
    err.location().map(|l| (l.line(), l.column()))
}

struct Probe<'p> {
    path: &'p [Segment],
    anchor: Anchor,
}

impl Probe<'_> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        Err(E::custom(if self.path.is_empty() { FOUND } else { "path not found" }))
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(want), rest)) = self.path.split_first() else {
            return self.here();
        };
        let fail_on_key = rest.is_empty() && self.anchor == Anchor::Key;
        while let Some(hit) = map.next_key_seed(KeyProbe { want, fail_on_key })? {
            if hit {
                map.next_value_seed(Probe { path: rest, anchor: self.anchor })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Err(de::Error::custom("path not found"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(want), rest)) = self.path.split_first() else {
            return self.here();
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom("path not found"));
            }
        }
        seq.next_element_seed(Probe { path: rest, anchor: self.anchor })?;
        Err(de::Error::custom("path not found"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        // Tagged values (`!tag x`) are not used by gatehouse's schema.
        self.here()
    }
}

/// Reads one mapping key; answers whether it is the wanted one, or raises the
/// locating error on it when the key itself is the target.
struct KeyProbe<'p> {
    want: &'p str,
    fail_on_key: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        if key != self.want {
            return Ok(false);
        }
        if self.fail_on_key {
            return Err(E::custom(FOUND));
        }
        Ok(true)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
listen:
  gateway: { bind: \"0.0.0.0:8080\", tls: { cert: a.pem } }
routes:
  - name: a
    path: /x
  - name: b
    methods: [GET, PUTT]
";

    fn path(segments: &[Segment]) -> KeyPath {
        KeyPath::from_segments(segments.to_vec())
    }

    #[test]
    fn points_at_values_in_flow_and_block_style() {
        let bind = path(&[Segment::key("listen"), Segment::key("gateway"), Segment::key("bind")]);
        assert_eq!(locate(DOC, &bind, Anchor::Value), Some((2, 20)));
        let put =
            path(&[Segment::key("routes"), Segment::Index(1), Segment::key("methods"), Segment::Index(1)]);
        assert_eq!(locate(DOC, &put, Anchor::Value), Some((7, 20)));
    }

    #[test]
    fn points_at_keys_when_asked() {
        let tls = path(&[Segment::key("listen"), Segment::key("gateway"), Segment::key("tls")]);
        assert_eq!(locate(DOC, &tls, Anchor::Key), Some((2, 36)));
    }

    #[test]
    fn missing_paths_have_no_location() {
        let nope = path(&[Segment::key("routes"), Segment::Index(9)]);
        assert_eq!(locate(DOC, &nope, Anchor::Value), None);
        let nope = path(&[Segment::key("upstreams")]);
        assert_eq!(locate(DOC, &nope, Anchor::Key), None);
    }
}
