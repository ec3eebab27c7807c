//! Route patterns as written in `routes.yaml`: paths (`/a/b`, `/a/{id}`,
//! `/a/*`) and hosts (`api.example.com`, `*.example.com`). Parsing and
//! validation live here; matching lives in `routing`.

use std::fmt;

/// One segment of a path pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// Matches exactly this text.
    Literal(String),
    /// `{name}`: matches any one non-empty segment.
    Param(String),
}

/// A parsed path pattern: segments, optionally followed by `/*` (prefix).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathPattern {
    pub segments: Vec<PathSegment>,
    /// Trailing `/*`: the pattern matches its own path and everything below.
    pub prefix: bool,
}

impl PathPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(body) = text.strip_prefix('/') else {
            return Err(format!("a path must start with `/`, found `{text}`"));
        };
        if text.contains(['?', '#']) {
            return Err(format!("a path pattern cannot contain `?` or `#`: `{text}`"));
        }
        let mut parts: Vec<&str> = body.split('/').collect();
        let prefix = parts.last() == Some(&"*");
        if prefix {
            parts.pop();
        }
        // "/" alone is the root: one empty literal segment, as a request path
        // "/" splits to.
        if parts.is_empty() && !prefix {
            parts.push("");
        }
        let mut segments = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if *part == "*" {
                return Err(format!("`*` is only allowed as the last segment, as in `/api/*`: `{text}`"));
            }
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!("`{{{name}}}` is not a valid parameter name in `{text}`"));
                }
                if names.contains(&name) {
                    return Err(format!("parameter `{{{name}}}` appears twice in `{text}`"));
                }
                names.push(name);
                segments.push(PathSegment::Param(name.to_owned()));
                continue;
            }
            if part.contains(['{', '}', '*']) {
                return Err(format!(
                    "segment `{part}` mixes text with `{{`, `}}` or `*`; a parameter must be a whole segment: `{text}`"
                ));
            }
            // Only a pattern's very end may be empty (`/a/` is the path "/a/").
            if part.is_empty() && (prefix || !last) {
                return Err(format!("empty segment (`//`) in `{text}`"));
            }
            segments.push(PathSegment::Literal((*part).to_owned()));
        }
        Ok(Self { segments, prefix })
    }

    /// The leading run of literal segments rendered as a path (`/api/orders`
    /// for `/api/orders/{id}`).
    pub fn literal_prefix(&self) -> String {
        let mut s = String::new();
        for seg in &self.segments {
            match seg {
                PathSegment::Literal(l) => {
                    s.push('/');
                    s.push_str(l);
                }
                PathSegment::Param(_) => break,
            }
        }
        s
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for seg in &self.segments {
            match seg {
                PathSegment::Literal(l) => write!(f, "/{l}")?,
                PathSegment::Param(p) => write!(f, "/{{{p}}}")?,
            }
        }
        if self.prefix {
            f.write_str("/*")?;
        }
        Ok(())
    }
}

/// A host pattern: an exact name or a `*.` wildcard suffix. Stored lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: matches any name ending in
    /// it with at least one more label (`a.example.com`, `a.b.example.com`).
    Suffix(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(format!(
                "expected a host name such as `api.example.com` or `*.example.com` (no port), found `{text}`"
            ));
        }
        Ok(if wild { Self::Suffix(format!(".{name}")) } else { Self::Exact(name.to_owned()) })
    }

    /// Whether `host` (lowercase, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(h) => h == host,
            Self::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => f.write_str(h),
            Self::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lit(s: &str) -> PathSegment {
        PathSegment::Literal(s.into())
    }

    #[test]
    fn parses_the_three_forms() {
        let p = PathPattern::parse("/api/orders").unwrap();
        assert_eq!(p.segments, vec![lit("api"), lit("orders")]);
        assert!(!p.prefix);
        let p = PathPattern::parse("/api/orders/{id}").unwrap();
        assert_eq!(p.segments[2], PathSegment::Param("id".into()));
        let p = PathPattern::parse("/api/*").unwrap();
        assert_eq!(p.segments, vec![lit("api")]);
        assert!(p.prefix);
        let p = PathPattern::parse("/*").unwrap();
        assert!(p.segments.is_empty() && p.prefix);
        assert_eq!(PathPattern::parse("/").unwrap().segments, vec![lit("")]);
        assert_eq!(PathPattern::parse("/a/").unwrap().segments, vec![lit("a"), lit("")]);
    }

    #[test]
    fn rejects_malformed_patterns_with_a_reason() {
        assert!(PathPattern::parse("api").unwrap_err().contains("start with `/`"));
        assert!(PathPattern::parse("/a/*/b").unwrap_err().contains("last segment"));
        assert!(PathPattern::parse("/a/{}").unwrap_err().contains("not a valid parameter"));
        assert!(PathPattern::parse("/a/x{id}").unwrap_err().contains("whole segment"));
        assert!(PathPattern::parse("/a/{id}/{id}").unwrap_err().contains("twice"));
        assert!(PathPattern::parse("/a//b").unwrap_err().contains("empty segment"));
        assert!(PathPattern::parse("/a?b=1").is_err());
    }

    #[test]
    fn literal_prefix_stops_at_the_first_parameter() {
        assert_eq!(PathPattern::parse("/api/orders/{id}/x").unwrap().literal_prefix(), "/api/orders");
        assert_eq!(PathPattern::parse("/api/*").unwrap().literal_prefix(), "/api");
    }

    #[test]
    fn hosts_exact_and_wildcard() {
        let h = HostPattern::parse("API.Example.com").unwrap();
        assert_eq!(h, HostPattern::Exact("api.example.com".into()));
        let w = HostPattern::parse("*.example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        assert!(HostPattern::parse("api.example.com:443").is_err());
        assert!(HostPattern::parse("a..b").is_err());
        assert!(HostPattern::parse("*").is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(p in "(/([a-z]{1,4}|\\{[a-z]{1,3}\\})){0,4}(/\\*)?") {
            if let Ok(parsed) = PathPattern::parse(&p) {
                prop_assert_eq!(PathPattern::parse(&parsed.to_string()), Ok(parsed));
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,30}") {
            let _ = PathPattern::parse(&s);
            let _ = HostPattern::parse(&s);
        }
    }
}
