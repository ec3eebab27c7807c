//! AWS Signature Version 4 verification (header-based, as every SDK signs
//! SQS and SNS requests).

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::queue::message::hex;

type HmacSha256 = Hmac<Sha256>;

/// Requests signed more than this far from now are refused.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// Access keys and their secrets.
#[derive(Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_keys", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl Credentials {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { keys: pairs.into_iter().collect() }
    }
}

/// Why a request's signature was refused; each maps to an AWS error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Request is missing Authentication Token")]
    Missing,
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("The request signature we calculated does not match the signature you provided.")]
    Mismatch,
    #[error("Signature expired: the request time is more than 15 minutes from the server's time.")]
    Expired,
    #[error("The authorization header is malformed: {0}")]
    Malformed(String),
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    PayloadHashMismatch,
    #[error("UNSIGNED-PAYLOAD is not accepted: the request body must be signed.")]
    UnsignedPayload,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationToken",
            AuthError::UnknownKey => "InvalidClientTokenId",
            AuthError::Mismatch | AuthError::Expired => "SignatureDoesNotMatch",
            AuthError::Malformed(_) => "IncompleteSignature",
            AuthError::PayloadHashMismatch => "XAmzContentSHA256Mismatch",
            AuthError::UnsignedPayload => "SignatureDoesNotMatch",
        }
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            AuthError::PayloadHashMismatch => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::FORBIDDEN,
        }
    }
}

struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthError> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or_else(|| AuthError::Malformed("only AWS4-HMAC-SHA256 is supported".into()))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(AuthError::Malformed("Credential, SignedHeaders and Signature are required".into()));
    };
    let mut scope = credential.split('/');
    let (Some(access_key), Some(date), Some(region), Some(service), Some("aws4_request")) =
        (scope.next(), scope.next(), scope.next(), scope.next(), scope.next())
    else {
        return Err(AuthError::Malformed("bad credential scope".into()));
    };
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// RFC 3986 encoding as SigV4 wants it: everything but unreserved
/// characters percent-encoded.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_query(query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else { return String::new() };
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (uri_encode(&k), uri_encode(&v))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The key a secret signs with on `date` for `region` and `service`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Seconds since the Unix epoch of an ISO 8601 basic timestamp
/// (`20150830T123600Z`).
fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) =
        (num(0..4)?, num(4..6)?, num(6..8)?, num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// The request to verify.
pub struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// `host` for HTTP/2 requests, which carry it in `:authority`.
    pub authority: Option<&'a str>,
    pub body: &'a [u8],
}

/// The hash of the body the signature covers: always computed from the
/// body itself. An `X-Amz-Content-Sha256` header is not signed data the
/// server may trust: if present it must be that same hash, or a captured
/// request could be replayed with another body under its signature. SQS and
/// SNS bodies are small and read whole, so `UNSIGNED-PAYLOAD` (and the
/// streaming forms S3 uses) are refused.
fn payload_hash(req: &Signed<'_>) -> Result<String, AuthError> {
    let computed = hex(&Sha256::digest(req.body));
    match req.headers.get("x-amz-content-sha256").map(|v| v.to_str()) {
        None => Ok(computed),
        Some(Ok(given)) if given.eq_ignore_ascii_case(&computed) => Ok(given.to_owned()),
        Some(Ok(given)) if given == "UNSIGNED-PAYLOAD" || given.starts_with("STREAMING-") => {
            Err(AuthError::UnsignedPayload)
        }
        Some(_) => Err(AuthError::PayloadHashMismatch),
    }
}

/// Verifies a request's signature; returns the access key that signed it.
pub fn verify(req: &Signed<'_>, creds: &Credentials, now_secs: i64) -> Result<String, AuthError> {
    let header = req.headers.get(http::header::AUTHORIZATION).ok_or(AuthError::Missing)?;
    let header = header.to_str().map_err(|_| AuthError::Malformed("not ASCII".into()))?;
    let auth = parse_authorization(header)?;
    let secret = creds.keys.get(auth.access_key).ok_or(AuthError::UnknownKey)?;
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AuthError::Malformed("the X-Amz-Date header is required".into()))?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| AuthError::Malformed("bad X-Amz-Date".into()))?;
    if (now_secs - signed_at).abs() > MAX_SKEW_SECS {
        return Err(AuthError::Expired);
    }
    if !amz_date.starts_with(auth.date) {
        return Err(AuthError::Malformed("the credential date does not match X-Amz-Date".into()));
    }
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let value = if *name == "host" {
            req.headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .or(req.authority)
                .unwrap_or("")
                .to_owned()
        } else {
            req.headers
                .get_all(*name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(",")
        };
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(value.trim());
        canonical_headers.push('\n');
    }
    let payload_hash = payload_hash(req)?;
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        if req.path.is_empty() { "/" } else { req.path },
        canonical_query(req.query),
        canonical_headers,
        auth.signed_headers.join(";"),
        payload_hash
    );
    let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let key = signing_key(secret, auth.date, auth.region, auth.service);
    let expected = hex(&hmac(&key, to_sign.as_bytes()));
    // Constant-time comparison.
    let given = auth.signature.as_bytes();
    let same = expected.len() == given.len()
        && expected.bytes().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same {
        Ok(auth.access_key.to_owned())
    } else {
        Err(AuthError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    #[test]
    fn signing_key_matches_the_aws_documentation() {
        let key = signing_key(SECRET, "20150830", "us-east-1", "iam");
        assert_eq!(hex(&key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    }

    fn example_request(signature: &str) -> (HeaderMap, String) {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/x-www-form-urlencoded; charset=utf-8".parse().unwrap());
        h.insert("host", "iam.amazonaws.com".parse().unwrap());
        h.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
        );
        h.insert("authorization", auth.parse().unwrap());
        (h, auth)
    }

    #[test]
    fn the_documented_example_request_verifies() {
        let creds = Credentials::new([("AKIDEXAMPLE".to_string(), SECRET.to_string())]);
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let (h, _) = example_request("5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
        let req = Signed {
            method: "GET",
            path: "/",
            query: Some("Action=ListUsers&Version=2010-05-08"),
            headers: &h,
            authority: None,
            body: b"",
        };
        assert_eq!(verify(&req, &creds, now), Ok("AKIDEXAMPLE".to_string()));

        let (bad, _) = example_request("0d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
        let req = Signed { headers: &bad, ..req };
        assert_eq!(verify(&req, &creds, now), Err(AuthError::Mismatch));
        let (h, _) = example_request("5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
        let req = Signed { headers: &h, ..req };
        assert_eq!(verify(&req, &creds, now + 16 * 60), Err(AuthError::Expired));
        assert_eq!(verify(&req, &Credentials::default(), now), Err(AuthError::UnknownKey));
    }

    #[test]
    fn the_payload_hash_is_always_the_bodys() {
        let creds = Credentials::new([("AKIDEXAMPLE".to_string(), SECRET.to_string())]);
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let body: &[u8] = b"Action=SendMessage&MessageBody=hello";
        let body_hash = hex(&Sha256::digest(body));
        let sign = |headers: &mut HeaderMap, body: &[u8]| {
            // Sign as a client would, with the given hash header (if any).
            headers.insert("host", "sqs.example".parse().unwrap());
            headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
            let hash = match headers.get("x-amz-content-sha256") {
                Some(h) => h.to_str().unwrap().to_owned(),
                None => hex(&Sha256::digest(body)),
            };
            let canonical = format!(
                "POST\n/\n\nhost:sqs.example\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{hash}"
            );
            let scope = "20150830/us-east-1/sqs/aws4_request";
            let to_sign = format!(
                "AWS4-HMAC-SHA256\n20150830T123600Z\n{scope}\n{}",
                hex(&Sha256::digest(canonical.as_bytes()))
            );
            let sig = hex(&hmac(&signing_key(SECRET, "20150830", "us-east-1", "sqs"), to_sign.as_bytes()));
            let auth = format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{scope}, SignedHeaders=host;x-amz-date, Signature={sig}");
            headers.insert("authorization", auth.parse().unwrap());
        };
        let check = |headers: &HeaderMap, body: &[u8]| {
            let req = Signed { method: "POST", path: "/", query: None, headers, authority: None, body };
            verify(&req, &creds, now)
        };
        // Without the header, and with the right one: accepted.
        let mut plain = HeaderMap::new();
        sign(&mut plain, body);
        assert!(check(&plain, body).is_ok());
        let mut with_hash = HeaderMap::new();
        with_hash.insert("x-amz-content-sha256", body_hash.parse().unwrap());
        sign(&mut with_hash, body);
        assert!(check(&with_hash, body).is_ok());
        // A captured request replayed with another body: refused.
        let other: &[u8] = b"Action=SendMessage&MessageBody=forged";
        assert_eq!(check(&with_hash, other), Err(AuthError::PayloadHashMismatch));
        assert_eq!(check(&plain, other), Err(AuthError::Mismatch));
        // UNSIGNED-PAYLOAD, even correctly signed: refused.
        let mut unsigned = HeaderMap::new();
        unsigned.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
        sign(&mut unsigned, body);
        assert_eq!(check(&unsigned, body), Err(AuthError::UnsignedPayload));
    }

    #[test]
    fn dates_parse() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials::new([("AKID".to_string(), "s3cr3t".to_string())]);
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
