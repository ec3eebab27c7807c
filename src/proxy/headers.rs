//! Header rewriting between client and upstream: hop-by-hop removal
//! (RFC 9110 §7.6.1), `X-Forwarded-*`, and the WebSocket upgrade exception.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

/// Headers that describe one hop and never travel further. (A `static`: a
/// `const` array of `HeaderName`s would be built and dropped at every use.)
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    // Runs for every header of every message: one length test rules out
    // almost every name before any comparison.
    let name = name.as_str();
    match name.len() {
        2 => name == "te",
        7 => name == "upgrade" || name == "trailer",
        10 => name == "connection" || name == "keep-alive",
        16 => name == "proxy-connection",
        17 => name == "transfer-encoding",
        18 => name == "proxy-authenticate",
        19 => name == "proxy-authorization",
        _ => false,
    }
}

/// End-to-end headers that `Connection` cannot turn into hop-by-hop ones.
fn is_protected(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == header::CONTENT_TYPE
        || name.as_str() == "x-request-id"
        || name.as_str().starts_with("x-forwarded-")
}

/// Removes hop-by-hop headers, including every header named in
/// `Connection` (but not the [protected](is_protected) ones).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one scan of the names, no hashing.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        // `Connection` may name hop-by-hop extensions only: a client cannot
        // use it to take away the target's `Host`, the message framing, or
        // the headers gatehouse sets for the upstream.
        if !is_protected(&name) {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::PROXY_AUTHENTICATE);
}

/// The protocols of a client's upgrade request (HTTP/1.1 `Upgrade` with
/// `Connection: upgrade`) that `allowed` lists, as the `Upgrade` value to
/// forward; `None` if it asks for none of them. `h2c` never passes: an
/// upstream that switched to it would serve any later request on the
/// tunnel, past route matching.
pub fn allowed_upgrade(version: Version, headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let offered = upgrade_protocol(version, headers)?;
    let offered = offered.to_str().ok()?;
    let kept: Vec<&str> = offered
        .split(',')
        .map(str::trim)
        .filter(|p| {
            let name = p.split('/').next().unwrap_or(p);
            !name.eq_ignore_ascii_case("h2c") && allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Whether an upstream's `101` switched to one of the protocols forwarded.
pub fn upgrade_matches(forwarded: &HeaderValue, answered: Option<&HeaderValue>) -> bool {
    let (Ok(forwarded), Some(Ok(answered))) = (forwarded.to_str(), answered.map(|a| a.to_str())) else {
        return false;
    };
    let name = |p: &str| p.trim().split('/').next().unwrap_or("").to_ascii_lowercase();
    let answered = name(answered);
    !answered.is_empty() && forwarded.split(',').any(|p| name(p) == answered)
}

/// The protocol a client asks to switch to (HTTP/1.1 `Upgrade` with
/// `Connection: upgrade`), if any.
fn upgrade_protocol(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !wants {
        return None;
    }
    headers.get(header::UPGRADE).cloned()
}

/// Puts back the two headers an upgrade needs after hop-by-hop removal.
pub fn restore_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// How the request reached the gateway, for the `X-Forwarded-*` headers.
pub struct Forwarded<'a> {
    /// The client's IP address, rendered.
    pub client_ip: &'a HeaderValue,
    pub tls: bool,
    /// The host the client asked for, port included as sent.
    pub host: Option<&'a HeaderValue>,
}

/// Appends the client to `X-Forwarded-For` and sets `X-Forwarded-Proto` and
/// `X-Forwarded-Host`.
pub fn set_forwarded(headers: &mut HeaderMap, fwd: &Forwarded<'_>) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

    match headers.entry(&XFF) {
        http::header::Entry::Vacant(e) => {
            e.insert(fwd.client_ip.clone());
        }
        http::header::Entry::Occupied(mut e) => {
            // Earlier proxies' list, then this client, in one value.
            let mut joined: Vec<u8> = Vec::with_capacity(64);
            for v in e.iter() {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v.as_bytes());
            }
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(fwd.client_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                e.insert(v);
            }
        }
    }
    headers.insert(&XFP, HeaderValue::from_static(if fwd.tls { "https" } else { "http" }));
    match fwd.host {
        Some(h) => {
            headers.insert(&XFH, h.clone());
        }
        None => {
            headers.remove(&XFH);
        }
    }
}

/// Methods a retry cannot repeat harmfully (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic Zm9v"),
            ("content-type", "text/plain"),
            ("authorization", "Bearer x"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, vec!["content-type", "authorization"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_found_and_look_alikes_are_kept() {
        let names = HOP_BY_HOP.iter().map(HeaderName::as_str).chain(["proxy-authenticate"]);
        for name in names {
            let mut h = map(&[(name, "x"), ("accept", "*/*")]);
            strip_hop_by_hop(&mut h);
            assert!(!h.contains_key(name), "{name} survived");
            assert!(h.contains_key("accept"));
            // Same length, different name: kept.
            let look_alike = "x".repeat(name.len());
            let mut h = map(&[(look_alike.as_str(), "x")]);
            strip_hop_by_hop(&mut h);
            assert!(h.contains_key(look_alike.as_str()), "{look_alike} was removed");
        }
    }

    #[test]
    fn connection_cannot_name_host_framing_or_gatehouse_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, Host, X-Request-Id, content-length, X-Forwarded-For, x-drop"),
            ("host", "api.example"),
            ("x-request-id", "abc"),
            ("content-length", "3"),
            ("x-forwarded-for", "192.0.2.1"),
            ("x-drop", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["content-length", "host", "x-forwarded-for", "x-request-id"]);
    }

    #[test]
    fn only_allowed_upgrades_pass_and_h2c_never() {
        let ws = vec!["websocket".to_string()];
        let up = |v: &str| map(&[("connection", "Upgrade"), ("upgrade", v)]);
        assert_eq!(allowed_upgrade(Version::HTTP_11, &up("websocket"), &ws).unwrap(), "websocket");
        assert_eq!(allowed_upgrade(Version::HTTP_11, &up("WebSocket"), &ws).unwrap(), "WebSocket");
        assert_eq!(allowed_upgrade(Version::HTTP_11, &up("h2c, websocket"), &ws).unwrap(), "websocket");
        assert!(allowed_upgrade(Version::HTTP_11, &up("h2c"), &ws).is_none());
        let h2c = vec!["h2c".to_string(), "websocket".to_string()];
        assert!(allowed_upgrade(Version::HTTP_11, &up("h2c"), &h2c).is_none());
        assert!(allowed_upgrade(Version::HTTP_11, &up("websocket"), &[]).is_none());
        let fwd = HeaderValue::from_static("websocket");
        assert!(upgrade_matches(&fwd, Some(&HeaderValue::from_static("WebSocket"))));
        assert!(!upgrade_matches(&fwd, Some(&HeaderValue::from_static("h2c"))));
        assert!(!upgrade_matches(&fwd, None));
    }

    #[test]
    fn upgrades_are_recognised_only_on_http11_with_connection_upgrade() {
        let h = map(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(upgrade_protocol(Version::HTTP_11, &h).unwrap(), "websocket");
        assert!(upgrade_protocol(Version::HTTP_2, &h).is_none());
        let h = map(&[("upgrade", "websocket")]);
        assert!(upgrade_protocol(Version::HTTP_11, &h).is_none());
    }

    #[test]
    fn forwarded_headers_append_the_client_and_overwrite_the_rest() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1, 192.0.2.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        let ip = HeaderValue::from_static("10.0.0.7");
        let host = HeaderValue::from_static("api.example.com:8080");
        set_forwarded(&mut h, &Forwarded { client_ip: &ip, tls: false, host: Some(&host) });
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.1, 192.0.2.4, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com:8080");

        let mut fresh = HeaderMap::new();
        set_forwarded(&mut fresh, &Forwarded { client_ip: &ip, tls: true, host: None });
        assert_eq!(fresh["x-forwarded-for"], "10.0.0.7");
        assert_eq!(fresh["x-forwarded-proto"], "https");
        assert!(fresh.get("x-forwarded-host").is_none());
    }
}
