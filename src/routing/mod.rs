//! The route table: host + path + method → the route that handles a request.
//!
//! Owns matching and precedence only; what a route does is an opaque `T`
//! chosen by `app`. Precedence is total and deterministic, "most specific
//! wins":
//!
//! 1. host: an exact host beats a wildcard (`*.example.com`, longer suffix
//!    first), which beats a route without `host`;
//! 2. path, segment by segment from the left: a literal beats a `{param}`,
//!    which beats a `/*` tail; a pattern that ends beats a `/*` tail;
//! 3. a route listing methods beats one accepting any method;
//! 4. declaration order breaks what is left (the config rejects true
//!    duplicates).
//!
//! A path that matches but whose method does not gives
//! [`Match::MethodNotAllowed`] with the methods that would have matched.

mod layer;

use std::borrow::Cow;

use http::Method;

use crate::config::{HostPattern, PathPattern, PathSegment};
pub use layer::{RouteLayer, RouteMatch, Routed, RoutingError, SharedTable};

/// Which requests a route accepts.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    pub host: Option<HostPattern>,
    pub path: PathPattern,
    /// Empty accepts any method. `GET` implies `HEAD`.
    pub methods: Vec<Method>,
}

#[derive(Debug)]
struct Entry<T> {
    spec: RouteSpec,
    rank: Rank,
    value: T,
}

/// Sort key; smaller is more specific.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    host: (u8, usize),
    path: Vec<u8>,
    methods: u8,
    order: usize,
}

impl Rank {
    fn of(spec: &RouteSpec, order: usize) -> Self {
        let host = match &spec.host {
            Some(HostPattern::Exact(_)) => (0, 0),
            Some(HostPattern::Suffix(s)) => (1, usize::MAX - s.len()),
            None => (2, 0),
        };
        let mut path: Vec<u8> = spec
            .path
            .segments
            .iter()
            .map(|s| match s {
                PathSegment::Literal(_) => 0,
                PathSegment::Param(_) => 1,
            })
            .collect();
        path.push(if spec.path.prefix { 3 } else { 2 });
        Self { host, path, methods: u8::from(spec.methods.is_empty()), order }
    }
}

/// A compiled, immutable route table.
#[derive(Debug)]
pub struct RouteTable<T> {
    entries: Vec<Entry<T>>,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Match<'a, T> {
    Found(&'a T),
    /// The path matched routes, none of which accepts this method.
    MethodNotAllowed {
        allow: Vec<Method>,
    },
    NotFound,
}

impl<T> RouteTable<T> {
    pub fn new(routes: Vec<(RouteSpec, T)>) -> Self {
        let mut entries: Vec<Entry<T>> = routes
            .into_iter()
            .enumerate()
            .map(|(i, (spec, value))| Entry { rank: Rank::of(&spec, i), spec, value })
            .collect();
        entries.sort_by(|a, b| a.rank.cmp(&b.rank));
        Self { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds the most specific route for a request. `host` is lowercase
    /// without port (see [`request_host`]); `path` is normalised (see
    /// [`normalize_path`]).
    pub fn find(&self, host: Option<&str>, path: &str, method: &Method) -> Match<'_, T> {
        let mut allow: Vec<Method> = Vec::new();
        for entry in &self.entries {
            if let Some(h) = &entry.spec.host {
                match host {
                    Some(host) if h.matches(host) => {}
                    _ => continue,
                }
            }
            if !path_matches(&entry.spec.path, path) {
                continue;
            }
            let methods = &entry.spec.methods;
            if methods.is_empty()
                || methods.contains(method)
                || (*method == Method::HEAD && methods.contains(&Method::GET))
            {
                return Match::Found(&entry.value);
            }
            for m in methods {
                if !allow.contains(m) {
                    allow.push(m.clone());
                }
            }
            if methods.contains(&Method::GET) && !allow.contains(&Method::HEAD) {
                allow.push(Method::HEAD);
            }
        }
        if allow.is_empty() {
            return Match::NotFound;
        }
        allow.sort_by(|a, b| (method_rank(a), a.as_str()).cmp(&(method_rank(b), b.as_str())));
        Match::MethodNotAllowed { allow }
    }

    /// The routes in precedence order (most specific first).
    pub fn iter(&self) -> impl Iterator<Item = (&RouteSpec, &T)> {
        self.entries.iter().map(|e| (&e.spec, &e.value))
    }
}

/// Conventional order for an `Allow` header; unknown methods last.
fn method_rank(m: &Method) -> usize {
    const ORDER: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    ORDER.iter().position(|k| *k == m.as_str()).unwrap_or(ORDER.len())
}

fn path_matches(pattern: &PathPattern, path: &str) -> bool {
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut parts = body.split('/');
    for seg in &pattern.segments {
        let Some(part) = parts.next() else {
            return false;
        };
        match seg {
            PathSegment::Literal(l) => {
                if l != part {
                    return false;
                }
            }
            PathSegment::Param(_) => {
                if part.is_empty() {
                    return false;
                }
            }
        }
    }
    // Prefix patterns take any remainder; exact ones require the path to end.
    pattern.prefix || parts.next().is_none()
}

/// The request's host, from the URI authority (HTTP/2, absolute-form) or the
/// `Host` header: lowercase, without port or trailing dot.
pub fn request_host<B>(req: &http::Request<B>) -> Option<Cow<'_, str>> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(http::header::HOST)?.to_str().ok()?,
    };
    let host = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        &raw[..raw.find(']').map(|i| i + 1).unwrap_or(raw.len())]
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// Removes `.` and `..` segments (RFC 3986 §5.2.4, also in their
/// percent-encoded forms) so that `/api/../admin` cannot reach a route the
/// literal path would not. A `..` above the root is an error. Paths without
/// dot segments are returned as they are, without allocating.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, InvalidPath> {
    if !path.starts_with('/') {
        return Err(InvalidPath);
    }
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dotdot =
        |s: &str| matches!(s.len(), 2 | 4 | 6) && s.to_ascii_lowercase().replace("%2e", ".") == "..";
    let needs_work = path[1..].split('/').any(|s| is_dot(s) || is_dotdot(s));
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if is_dot(seg) {
            if i == last {
                out.push("");
            }
        } else if is_dotdot(seg) {
            if out.pop().is_none() {
                return Err(InvalidPath);
            }
            if i == last {
                out.push("");
            }
        } else {
            out.push(seg);
        }
    }
    Ok(Cow::Owned(format!("/{}", out.join("/"))))
}

/// A request path that cannot be normalised (it climbs above the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request path climbs above the root")]
pub struct InvalidPath;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: Option<&str>, path: &str, methods: &[&str]) -> RouteSpec {
        RouteSpec {
            host: host.map(|h| HostPattern::parse(h).unwrap()),
            path: PathPattern::parse(path).unwrap(),
            methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
        }
    }

    fn table(routes: &[(Option<&str>, &str, &[&str], &'static str)]) -> RouteTable<&'static str> {
        RouteTable::new(routes.iter().map(|(h, p, m, name)| (spec(*h, p, m), *name)).collect())
    }

    fn find<'a>(
        t: &'a RouteTable<&'static str>,
        host: &str,
        path: &str,
        method: &str,
    ) -> Match<'a, &'static str> {
        t.find(Some(host), path, &method.parse().unwrap())
    }

    fn found(t: &RouteTable<&'static str>, host: &str, path: &str, method: &str) -> Option<&'static str> {
        match find(t, host, path, method) {
            Match::Found(v) => Some(*v),
            _ => None,
        }
    }

    #[test]
    fn most_specific_path_wins_whatever_the_declaration_order() {
        let routes: Vec<(Option<&str>, &str, &[&str], &'static str)> = vec![
            (None, "/*", &[], "catch-all"),
            (None, "/api/*", &[], "api"),
            (None, "/api/orders/{id}", &[], "order"),
            (None, "/api/orders/new", &[], "new-order"),
            (None, "/api/{kind}/new", &[], "new-any"),
        ];
        // Every rotation of the declaration order gives the same answers.
        for shift in 0..routes.len() {
            let mut r = routes.clone();
            r.rotate_left(shift);
            let t = table(&r);
            assert_eq!(found(&t, "h", "/api/orders/new", "GET"), Some("new-order"));
            assert_eq!(found(&t, "h", "/api/orders/7", "GET"), Some("order"));
            assert_eq!(found(&t, "h", "/api/users/new", "GET"), Some("new-any"));
            assert_eq!(found(&t, "h", "/api/orders", "GET"), Some("api"));
            assert_eq!(found(&t, "h", "/api", "GET"), Some("api"));
            assert_eq!(found(&t, "h", "/apix", "GET"), Some("catch-all"));
            assert_eq!(found(&t, "h", "/", "GET"), Some("catch-all"));
        }
    }

    #[test]
    fn exact_host_beats_wildcard_beats_none() {
        let t = table(&[
            (None, "/*", &[], "any-host"),
            (Some("*.example.com"), "/*", &[], "wild"),
            (Some("*.eu.example.com"), "/*", &[], "wild-eu"),
            (Some("api.example.com"), "/*", &[], "exact"),
        ]);
        assert_eq!(found(&t, "api.example.com", "/x", "GET"), Some("exact"));
        assert_eq!(found(&t, "web.example.com", "/x", "GET"), Some("wild"));
        assert_eq!(found(&t, "a.eu.example.com", "/x", "GET"), Some("wild-eu"));
        assert_eq!(found(&t, "example.org", "/x", "GET"), Some("any-host"));
        assert!(matches!(t.find(None, "/x", &Method::GET), Match::Found(&"any-host")));
    }

    #[test]
    fn methods_narrow_and_405_lists_what_is_allowed() {
        let t = table(&[
            (None, "/orders", &["DELETE", "POST"], "create"),
            (None, "/orders", &["GET"], "list"),
            (None, "/things/*", &[], "things"),
            (None, "/things/x", &["PUT"], "put-x"),
        ]);
        assert_eq!(found(&t, "h", "/orders", "POST"), Some("create"));
        assert_eq!(found(&t, "h", "/orders", "GET"), Some("list"));
        assert_eq!(found(&t, "h", "/orders", "HEAD"), Some("list"));
        match find(&t, "h", "/orders", "PATCH") {
            Match::MethodNotAllowed { allow } => {
                let names: Vec<&str> = allow.iter().map(Method::as_str).collect();
                assert_eq!(names, vec!["GET", "HEAD", "POST", "DELETE"]);
            }
            other => panic!("expected 405, got {other:?}"),
        }
        // A less specific route that accepts the method still serves it.
        assert_eq!(found(&t, "h", "/things/x", "GET"), Some("things"));
        assert_eq!(found(&t, "h", "/things/x", "PUT"), Some("put-x"));
        assert!(matches!(find(&t, "h", "/nothing", "GET"), Match::NotFound));
    }

    #[test]
    fn params_match_one_non_empty_segment() {
        let t = table(&[(None, "/u/{id}", &[], "user")]);
        assert_eq!(found(&t, "h", "/u/42", "GET"), Some("user"));
        assert_eq!(found(&t, "h", "/u/", "GET"), None);
        assert_eq!(found(&t, "h", "/u/42/x", "GET"), None);
        assert_eq!(found(&t, "h", "/u", "GET"), None);
    }

    #[test]
    fn hosts_are_read_from_authority_or_host_header() {
        let req = http::Request::get("/x").header("host", "API.Example.com:8443").body(()).unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("api.example.com"));
        let req = http::Request::get("https://a.example.com./x").body(()).unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("a.example.com"));
        let req = http::Request::get("/x").header("host", "[::1]:80").body(()).unwrap();
        assert_eq!(request_host(&req).as_deref(), Some("[::1]"));
        let req = http::Request::get("/x").body(()).unwrap();
        assert_eq!(request_host(&req), None);
    }

    #[test]
    fn dot_segments_are_resolved_before_matching() {
        assert_eq!(normalize_path("/a/b").unwrap(), "/a/b");
        assert!(matches!(normalize_path("/a/b").unwrap(), Cow::Borrowed(_)));
        assert_eq!(normalize_path("/api/../admin").unwrap(), "/admin");
        assert_eq!(normalize_path("/api/%2E%2e/admin").unwrap(), "/admin");
        assert_eq!(normalize_path("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(normalize_path("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize_path("/..."), Ok(Cow::Borrowed("/...")));
        assert_eq!(normalize_path("/a/.%2E/b").unwrap(), "/b");
        assert_eq!(normalize_path("/a/%2e./b").unwrap(), "/b");
        assert_eq!(normalize_path("/a/%2e/b").unwrap(), "/a/b");
        assert_eq!(normalize_path("/a/%2ex/b"), Ok(Cow::Borrowed("/a/%2ex/b")));
        assert_eq!(normalize_path("/v1/ab/cdef"), Ok(Cow::Borrowed("/v1/ab/cdef")));
        assert_eq!(normalize_path("/../etc/passwd"), Err(InvalidPath));
        assert_eq!(normalize_path("relative"), Err(InvalidPath));
    }

    proptest::proptest! {
        #[test]
        fn normalised_paths_have_no_dot_segments(p in "(/(a|b|\\.|\\.\\.|%2e|%2E%2e)){0,8}") {
            let p = if p.is_empty() { "/".to_string() } else { p };
            if let Ok(n) = normalize_path(&p) {
                proptest::prop_assert!(n.starts_with('/'));
                for seg in n[1..].split('/') {
                    let lower = seg.to_ascii_lowercase().replace("%2e", ".");
                    proptest::prop_assert!(lower != "." && lower != "..", "{} -> {}", p, n);
                }
            }
        }
    }
}
