//! A strict, problem-collecting decoder over a parsed YAML document.
//!
//! serde's derive stops at the first error; a user fixing a config file wants
//! every problem at once. Each schema type implements [`Decode`] by reading a
//! [`Table`], which rejects unknown keys (with a suggestion) and keys that
//! gatehouse recognises but does not implement yet. Decoding never stops
//! early: a bad value records a [`Problem`] and decoding carries on with a
//! default, and the caller fails if any problem was recorded.

use std::net::SocketAddr;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::problem::{suggest, KeyPath, Problem};
use super::units;

/// Looks up environment variables for `${NAME}` expansion.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub struct Decoder<'e> {
    problems: Vec<Problem>,
    env: EnvLookup<'e>,
}

/// A value in the document together with the path that leads to it.
#[derive(Clone, Debug)]
pub struct Node<'v> {
    pub value: &'v Value,
    pub path: KeyPath,
}

impl<'e> Decoder<'e> {
    pub fn new(env: EnvLookup<'e>) -> Self {
        Self { problems: Vec::new(), env }
    }

    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    pub fn report(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    /// Records that the value at `node` is wrong.
    pub fn invalid(&mut self, node: &Node<'_>, message: impl Into<String>) {
        self.problems.push(Problem::at_value(node.path.clone(), message));
    }

    /// Reads a mapping whose keys must all be in `keys`. Keys in `pending`
    /// are recognised but rejected as "not supported yet".
    pub fn table<'v>(
        &mut self,
        node: &Node<'v>,
        keys: &[&'static str],
        pending: &[&'static str],
    ) -> Option<Table<'v>> {
        let map = match node.value {
            Value::Mapping(m) => m,
            // `key:` with nothing after it means "all defaults".
            Value::Null => return Some(Table { map: None, path: node.path.clone() }),
            other => {
                self.invalid(node, format!("expected a mapping, found {}", describe(other)));
                return None;
            }
        };
        for key in map.keys() {
            let Some(name) = key.as_str() else {
                self.invalid(node, format!("keys must be strings, found {}", describe(key)));
                continue;
            };
            if keys.contains(&name) {
                continue;
            }
            let path = node.path.key(name);
            if pending.contains(&name) {
                self.problems.push(Problem::at_key(
                    path,
                    format!("`{name}` is not supported yet by this version of gatehouse"),
                ));
                continue;
            }
            let mut message = format!("unknown key `{name}`");
            match suggest(name, keys.iter().copied()) {
                Some(s) => message.push_str(&format!(" (did you mean `{s}`?)")),
                None if !keys.is_empty() => {
                    message.push_str(&format!("; expected one of: {}", keys.join(", ")))
                }
                None => {}
            }
            self.problems.push(Problem::at_key(path, message));
        }
        Some(Table { map: Some(map), path: node.path.clone() })
    }

    /// Reads a mapping with free-form string keys (e.g. `upstreams`), in
    /// document order.
    pub fn entries<'v>(&mut self, node: &Node<'v>) -> Vec<(String, Node<'v>)> {
        let map = match node.value {
            Value::Mapping(m) => m,
            Value::Null => return Vec::new(),
            other => {
                self.invalid(node, format!("expected a mapping, found {}", describe(other)));
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            match k.as_str() {
                Some(name) => out.push((name.to_owned(), Node { value: v, path: node.path.key(name) })),
                None => self.invalid(node, format!("keys must be strings, found {}", describe(k))),
            }
        }
        out
    }

    /// Reads a sequence.
    pub fn list<'v>(&mut self, node: &Node<'v>) -> Vec<Node<'v>> {
        match node.value {
            Value::Sequence(items) => {
                items.iter().enumerate().map(|(i, v)| Node { value: v, path: node.path.index(i) }).collect()
            }
            Value::Null => Vec::new(),
            other => {
                self.invalid(node, format!("expected a list, found {}", describe(other)));
                Vec::new()
            }
        }
    }

    /// Reads a string, expanding `${NAME}` (and `${NAME:-default}`) from the
    /// environment; `$${` is a literal `${`.
    pub fn string(&mut self, node: &Node<'_>) -> Option<String> {
        match node.value {
            Value::String(s) => match expand_env(s, self.env) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.invalid(node, e);
                    None
                }
            },
            other => {
                self.invalid(node, format!("expected a string, found {}", describe(other)));
                None
            }
        }
    }

    /// Reads a string that must be one of `choices`.
    pub fn choice(&mut self, node: &Node<'_>, choices: &[&'static str]) -> Option<&'static str> {
        let s = self.string(node)?;
        if let Some(c) = choices.iter().find(|c| **c == s) {
            return Some(c);
        }
        let mut message = format!("`{s}` is not one of: {}", choices.join(", "));
        if let Some(near) = suggest(&s, choices.iter().copied()) {
            message.push_str(&format!(" (did you mean `{near}`?)"));
        }
        self.invalid(node, message);
        None
    }

    pub fn bool(&mut self, node: &Node<'_>) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "on" => Some(true),
            Value::String(s) if s == "off" => Some(false),
            other => {
                self.invalid(node, format!("expected true or false, found {}", describe(other)));
                None
            }
        }
    }

    /// Reads a whole number in `min..=max`.
    pub fn integer(&mut self, node: &Node<'_>, min: u64, max: u64) -> Option<u64> {
        let n = match node.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => expand_env(s, self.env).ok().and_then(|s| s.trim().parse().ok()),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.invalid(node, format!("{n} is out of range: expected {min} to {max}"));
                None
            }
            None => {
                self.invalid(node, format!("expected a whole number, found {}", describe(node.value)));
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node<'_>) -> Option<Duration> {
        let s = self.scalar_text(node, "a duration such as `30s`")?;
        units::parse_duration(&s).map_err(|e| self.invalid(node, e)).ok()
    }

    pub fn size(&mut self, node: &Node<'_>) -> Option<u64> {
        let s = self.scalar_text(node, "a size such as `256KiB`")?;
        units::parse_size(&s).map_err(|e| self.invalid(node, e)).ok()
    }

    pub fn socket_addr(&mut self, node: &Node<'_>) -> Option<SocketAddr> {
        let s = self.string(node)?;
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.invalid(
                    node,
                    format!("expected an address such as `127.0.0.1:8080` or `[::]:8080`, found `{s}`"),
                );
                None
            }
        }
    }

    /// A scalar as text: strings (after expansion) and numbers.
    fn scalar_text(&mut self, node: &Node<'_>, what: &str) -> Option<String> {
        match node.value {
            Value::String(_) => self.string(node),
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.invalid(node, format!("expected {what}, found {}", describe(other)));
                None
            }
        }
    }
}

/// A mapping being decoded; see [`Decoder::table`].
pub struct Table<'v> {
    map: Option<&'v Mapping>,
    pub path: KeyPath,
}

impl<'v> Table<'v> {
    /// The value under `key`; an explicit `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<Node<'v>> {
        let value = self.map?.get(key)?;
        if value.is_null() {
            return None;
        }
        Some(Node { value, path: self.path.key(key) })
    }

    /// Whether `key` is present (even if `null`).
    pub fn has_key(&self, key: &str) -> bool {
        self.map.is_some_and(|m| m.contains_key(key))
    }

    /// The value under `key`, recording a problem if it is absent.
    pub fn require(&self, d: &mut Decoder<'_>, key: &str) -> Option<Node<'v>> {
        let node = self.get(key);
        if node.is_none() {
            d.report(Problem::at_value(self.path.clone(), format!("missing required key `{key}`")));
        }
        node
    }
}

/// A short description of a YAML value's kind, for error messages.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("the boolean `{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) if s.len() <= 40 => format!("the string `{s}`"),
        Value::String(_) => "a string".into(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged `{}`", t.tag),
    }
}

/// Expands `${NAME}` and `${NAME:-default}`; `$${` is a literal `${`.
pub fn expand_env(s: &str, env: EnvLookup<'_>) -> Result<String, String> {
    if !s.contains("${") {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in `{s}`"))?;
        let expr = &body[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!("`${{{expr}}}` is not a valid environment variable reference"));
        }
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
            ))
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("hunter2".into()),
            "PORT" => Some("9000".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        assert_eq!(expand_env("plain", &env), Ok("plain".into()));
        assert_eq!(expand_env("${SECRET}", &env), Ok("hunter2".into()));
        assert_eq!(expand_env("127.0.0.1:${PORT}", &env), Ok("127.0.0.1:9000".into()));
        assert_eq!(expand_env("${NOPE:-x}", &env), Ok("x".into()));
        assert_eq!(expand_env("${NOPE:-}", &env), Ok("".into()));
        assert_eq!(expand_env("cost $5 $${SECRET}", &env), Ok("cost $5 ${SECRET}".into()));
        assert!(expand_env("${NOPE}", &env).unwrap_err().contains("`NOPE` is not set"));
        assert!(expand_env("${SECRET", &env).unwrap_err().contains("unclosed"));
        assert!(expand_env("${1X}", &env).unwrap_err().contains("not a valid"));
    }

    #[test]
    fn tables_report_unknown_and_pending_keys_together() {
        let v: Value = serde_yaml::from_str("bind: x\nbnid: y\nwaf: on\nzzz: 1").unwrap();
        let mut d = Decoder::new(&env);
        let node = Node { value: &v, path: KeyPath::root().key("gateway") };
        let t = d.table(&node, &["bind", "tls"], &["waf"]).unwrap();
        assert!(t.get("bind").is_some());
        let msgs: Vec<String> = d.into_problems().into_iter().map(|p| p.message).collect();
        assert_eq!(msgs.len(), 3);
        assert!(msgs[0].contains("did you mean `bind`"));
        assert!(msgs[1].contains("not supported yet"));
        assert!(msgs[2].contains("expected one of: bind, tls"));
    }
}
