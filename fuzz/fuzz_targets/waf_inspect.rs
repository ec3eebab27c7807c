//! The WAF's request decoders and transforms on any input: the first byte
//! picks a content type, the next line is the query string, the rest is the
//! body. Taking the request apart (form, JSON, multipart, cookies) and every
//! transform on every value (alone, and all in a row) must never panic.
#![no_main]

use gatehouse::config::waf::Transform;
use gatehouse::middleware::waf::inspect::Inspected;
use gatehouse::middleware::waf::transform;
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/json",
    "multipart/form-data; boundary=B",
    "multipart/form-data; boundary=\"x y\"",
    "text/plain",
    "application/vnd.api+json",
];

const ALL: &[Transform] = &[
    Transform::UrlDecode,
    Transform::HtmlEntityDecode,
    Transform::JsDecode,
    Transform::CssDecode,
    Transform::Lowercase,
    Transform::NormalizePath,
    Transform::RemoveNulls,
    Transform::CompressWhitespace,
    Transform::RemoveComments,
    Transform::Base64Decode,
    Transform::Utf8Overlong,
    Transform::CmdLine,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let (query, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let query: String = query.iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '_' }).collect();
    let Ok(uri) = format!("/p?{query}").parse::<http::Uri>() else { return };
    let mut headers = http::HeaderMap::new();
    let ct = CONTENT_TYPES[pick as usize % CONTENT_TYPES.len()];
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    if let Ok(v) = http::HeaderValue::from_bytes(&body[..body.len().min(64)]) {
        headers.insert(http::header::COOKIE, v);
    }
    let inspected = Inspected::new((&http::Method::POST, &uri, &headers), "/p", Some(body));
    for item in inspected.items() {
        let _ = item.name();
        for &t in ALL {
            let _ = transform::step(t, &item.bytes);
        }
        let _ = transform::apply(ALL, &item.bytes);
    }
});
