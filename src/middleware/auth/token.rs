//! Reading a token off a request, and the checks gatehouse makes on its
//! JOSE header before any key is looked at.

use base64::Engine;
use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use crate::config::{JwtAlgorithm, TokenSource};

/// Tokens larger than this are refused unread.
pub const MAX_TOKEN: usize = 8 * 1024;

/// Why a token was refused (the text goes into `error_description`, so it
/// never contains the token).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("{0}")]
    Invalid(String),
}

fn invalid(why: impl Into<String>) -> TokenError {
    TokenError::Invalid(why.into())
}

/// The token the route reads, as sent. Bytes, not text: a token the
/// cache knows is looked up as it came, and only a new one is read as
/// UTF-8 (a few hundred bytes checked on every request otherwise).
pub fn extract<'a>(headers: &'a HeaderMap, from: &TokenSource) -> Result<&'a [u8], TokenError> {
    match from {
        TokenSource::Bearer => {
            let mut values = headers.get_all(AUTHORIZATION).iter();
            let Some(v) = values.next() else { return Err(TokenError::Missing) };
            if values.next().is_some() {
                return Err(invalid("more than one Authorization header"));
            }
            let v = v.as_bytes();
            let space = v
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| invalid("expected `Authorization: Bearer <token>`"))?;
            if !v[..space].eq_ignore_ascii_case(b"bearer") {
                // Another scheme carries no bearer token (RFC 6750 §3).
                return Err(TokenError::Missing);
            }
            Ok(trim_spaces(&v[space + 1..]))
        }
        TokenSource::Header(name) => {
            let v = headers.get(name.as_str()).ok_or(TokenError::Missing)?;
            Ok(v.as_bytes().trim_ascii())
        }
        TokenSource::Cookie(name) => {
            for v in headers.get_all(COOKIE) {
                let Ok(v) = v.to_str() else { continue };
                for pair in v.split(';') {
                    if let Some((k, value)) = pair.trim().split_once('=') {
                        if k == name {
                            return Ok(value.trim_matches('"').as_bytes());
                        }
                    }
                }
            }
            Err(TokenError::Missing)
        }
    }
}

fn trim_spaces(mut v: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' '] = v {
        v = rest;
    }
    v
}

/// A token's bytes as text, which every token past the cache must be.
pub fn as_text(token: &[u8]) -> Result<&str, TokenError> {
    std::str::from_utf8(token).map_err(|_| invalid("the token is not text"))
}

/// What the JOSE header says, once it passed the checks.
#[derive(Debug, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: JwtAlgorithm,
    pub kid: Option<String>,
}

/// Decodes one base64url part (no padding, as JWS requires).
pub fn b64(part: &str) -> Result<Vec<u8>, TokenError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).map_err(|_| invalid("malformed base64url"))
}

/// An empty token is none; one over [`MAX_TOKEN`] is refused unread.
pub fn check_size(token: &[u8]) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN {
        return Err(invalid(format!("the token is larger than {MAX_TOKEN} bytes")));
    }
    Ok(())
}

/// The three parts of a compact JWS, or why it is not one.
pub fn split(token: &str) -> Result<[&str; 3], TokenError> {
    check_size(token.as_bytes())?;
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok([h, p, s]),
        _ => Err(invalid("not a signed JWT (expected three dot-separated parts)")),
    }
}

/// Checks the JOSE header: a JSON object whose `alg` is in `allowed`; no
/// `crit` (gatehouse understands no extension, RFC 7515 §4.1.11 says
/// refuse), and no `jku`, `x5u` or `jwk` (keys come from the provider's
/// configuration only, never from the token).
pub fn check_header(encoded: &str, allowed: &[JwtAlgorithm]) -> Result<JoseHeader, TokenError> {
    let raw = b64(encoded)?;
    let value: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|_| invalid("the header is not JSON"))?;
    let obj = value.as_object().ok_or_else(|| invalid("the header is not a JSON object"))?;
    for refused in ["crit", "jku", "x5u", "jwk"] {
        if obj.contains_key(refused) {
            return Err(invalid(format!("the header parameter `{refused}` is not accepted")));
        }
    }
    let alg = obj.get("alg").and_then(|a| a.as_str()).ok_or_else(|| invalid("the header has no `alg`"))?;
    let alg = allowed
        .iter()
        .copied()
        .find(|a| a.name() == alg)
        .ok_or_else(|| invalid(format!("the algorithm `{}` is not allowed", printable(alg))))?;
    let kid = match obj.get("kid") {
        None => None,
        Some(serde_json::Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(invalid("`kid` is not a string")),
    };
    Ok(JoseHeader { alg, kid })
}

/// At most 32 printable ASCII characters of a client-chosen string, for
/// error descriptions.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\').take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(json: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    const RS: &[JwtAlgorithm] = &[JwtAlgorithm::RS256];

    #[test]
    fn headers_that_name_their_own_keys_or_extensions_are_refused() {
        for h in [
            r#"{"alg":"RS256","jku":"https://evil.example/jwks"}"#,
            r#"{"alg":"RS256","x5u":"https://evil.example/cert"}"#,
            r#"{"alg":"RS256","jwk":{"kty":"oct","k":"AAAA"}}"#,
            r#"{"alg":"RS256","crit":["exp"],"exp":1}"#,
        ] {
            assert!(matches!(check_header(&enc(h), RS), Err(TokenError::Invalid(_))), "{h}");
        }
        for h in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS256"}"#,
            r#"{"typ":"JWT"}"#,
            "[1]",
            "not json",
            r#"{"alg":"RS256","kid":7}"#,
        ] {
            assert!(check_header(&enc(h), RS).is_err(), "{h}");
        }
        assert!(check_header("%%%", RS).is_err());
        let ok = check_header(&enc(r#"{"alg":"RS256","kid":"../../etc/passwd'; DROP"}"#), RS).unwrap();
        assert_eq!(ok.kid.as_deref(), Some("../../etc/passwd'; DROP"));
    }

    #[test]
    fn tokens_come_from_the_configured_place() {
        let mut h = HeaderMap::new();
        assert_eq!(extract(&h, &TokenSource::Bearer), Err(TokenError::Missing));
        h.insert(AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
        assert_eq!(extract(&h, &TokenSource::Bearer), Err(TokenError::Missing));
        h.insert(AUTHORIZATION, "bearer  abc.def.ghi".parse().unwrap());
        assert_eq!(extract(&h, &TokenSource::Bearer), Ok(b"abc.def.ghi".as_slice()));
        h.append(AUTHORIZATION, "Bearer x.y.z".parse().unwrap());
        assert!(matches!(extract(&h, &TokenSource::Bearer), Err(TokenError::Invalid(_))));
        h.insert(COOKIE, "a=1; session=t.o.k; b=2".parse().unwrap());
        assert_eq!(extract(&h, &TokenSource::Cookie("session".into())), Ok(b"t.o.k".as_slice()));
        h.insert("x-token", "q.r.s".parse().unwrap());
        assert_eq!(extract(&h, &TokenSource::Header("x-token".into())), Ok(b"q.r.s".as_slice()));
    }

    #[test]
    fn only_compact_signed_tokens_of_bounded_size_split() {
        assert!(split("a.b.c").is_ok());
        assert!(split("a.b.").is_ok(), "an empty signature fails later, at verification");
        for bad in ["a.b", "a.b.c.d.e", ".b.c", "abc"] {
            assert!(matches!(split(bad), Err(TokenError::Invalid(_))), "{bad}");
        }
        let big = format!("{}.b.c", "a".repeat(MAX_TOKEN));
        assert!(matches!(split(&big), Err(TokenError::Invalid(m)) if m.contains("larger")));
    }
}
