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
mod path;

use std::borrow::Cow;

use http::Method;

pub use crate::config::EscapedSlashes;
use crate::config::{HostPattern, PathPattern, PathSegment};
pub use layer::{RouteLayer, RouteMatch, Routed, RoutingError, SharedTable};
pub use path::{normalize_path, InvalidPath};

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

/// Why a request's host is refused (400, RFC 9112 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadHost {
    #[error("an HTTP/1.1 request must carry a Host header")]
    Missing,
    #[error("the request carries more than one Host header")]
    Duplicate,
    #[error("the Host header is not a valid host")]
    Invalid,
    #[error("the Host header does not match the request's :authority")]
    Conflict,
}

/// Checks the request's host the way RFC 9112 §3.2 requires of a server:
/// exactly one valid `Host` on HTTP/1.1, and on HTTP/2 a `Host` (if any)
/// that names the same authority as `:authority`. Anything else could make
/// the route match and the upstream disagree about the host.
///
/// Returns the `Host` header, if any, for [`request_host`] (one lookup).
pub fn check_host<B>(req: &http::Request<B>) -> Result<Option<&http::HeaderValue>, BadHost> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(BadHost::Duplicate);
    }
    let Some(host) = host else {
        return match req.version() {
            http::Version::HTTP_11 => Err(BadHost::Missing),
            _ => Ok(None),
        };
    };
    if !is_host_value(host.as_bytes()) {
        return Err(BadHost::Invalid);
    }
    if req.version() == http::Version::HTTP_2 {
        if let Some(authority) = req.uri().authority() {
            if !authority.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes()) {
                return Err(BadHost::Conflict);
            }
        }
    }
    Ok(Some(host))
}

/// Whether `v` can be a `Host` value: `host[:port]` (RFC 9110 §7.2), a
/// reg-name, IPv4 or bracketed IPv6 literal, without userinfo, path or
/// whitespace. One pass over the bytes: it runs for every request.
fn is_host_value(v: &[u8]) -> bool {
    let ok = |b: &u8| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')')
            || matches!(b, b'*' | b'+' | b',' | b';' | b'=' | b':' | b'[' | b']')
    };
    !v.is_empty() && v.iter().all(ok) && v[0] != b':'
}

/// The request's host, from the URI authority (HTTP/2, absolute-form) or the
/// `Host` header: lowercase, without port or trailing dot.
pub fn request_host<B>(req: &http::Request<B>) -> Option<Cow<'_, str>> {
    host_of(req.uri(), req.headers().get(http::header::HOST))
}

/// [`request_host`] from the URI and the `Host` header already looked up.
pub fn host_of<'a>(uri: &'a http::Uri, host_header: Option<&'a http::HeaderValue>) -> Option<Cow<'a, str>> {
    let raw = match uri.authority() {
        Some(a) => a.as_str(),
        None => host_header?.to_str().ok()?,
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
    fn host_must_be_present_once_and_agree_with_the_authority() {
        let h11 = |hosts: &[&str]| {
            let mut b = http::Request::get("/x");
            for h in hosts {
                b = b.header("host", *h);
            }
            b.body(()).unwrap()
        };
        assert!(check_host(&h11(&["a.example"])).is_ok_and(|h| h.is_some()));
        assert_eq!(check_host(&h11(&[])), Err(BadHost::Missing));
        assert_eq!(check_host(&h11(&["a.example", "b.example"])), Err(BadHost::Duplicate));
        assert_eq!(check_host(&h11(&["a.example", "a.example"])), Err(BadHost::Duplicate));
        assert_eq!(check_host(&h11(&["user@a.example"])), Err(BadHost::Invalid));
        assert_eq!(check_host(&h11(&["a b"])), Err(BadHost::Invalid));
        assert_eq!(check_host(&h11(&[""])), Err(BadHost::Invalid));
        // HTTP/1.0 may leave it out.
        let mut old = h11(&[]);
        *old.version_mut() = http::Version::HTTP_10;
        assert_eq!(check_host(&old), Ok(None));
        // HTTP/2: :authority alone, or with a Host that agrees.
        let h2 = |host: Option<&str>| {
            let mut b = http::Request::get("https://a.example:8443/x").version(http::Version::HTTP_2);
            if let Some(h) = host {
                b = b.header("host", h);
            }
            b.body(()).unwrap()
        };
        assert_eq!(check_host(&h2(None)), Ok(None));
        assert!(check_host(&h2(Some("A.example:8443"))).is_ok());
        assert_eq!(check_host(&h2(Some("b.example"))), Err(BadHost::Conflict));
        assert_eq!(check_host(&h2(Some("a.example"))), Err(BadHost::Conflict));
    }
}
