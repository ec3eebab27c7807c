//! The WAF's request decoders and transforms on any input: the first byte
//! picks a content type, the next line is the query string, the rest is the
//! body. Taking the request apart (form, JSON, multipart, cookies) and every
//! transform on every value (alone, and all in a row) must never panic; and
//! reading it again with its query, cookies and body known (as the WAF's
//! memory knows them) must give the same items, but theirs.
#![no_main]

use gatehouse::config::waf::Transform;
use gatehouse::middleware::waf::inspect::{Inspected, Whole};
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
    let head = (&http::Method::POST, &uri, &headers);
    let inspected = Inspected::new(head, "/p", Some(body));
    let wholes: Vec<(Whole<'_>, usize)> = inspected.parsed().iter().map(|p| (p.whole, p.args)).collect();
    let again = Inspected::read(head, "/p", Some(body), |w| wholes.iter().find(|(k, _)| *k == w).map(|&(_, n)| n));
    let inside = |i: usize| inspected.parsed().iter().any(|p| p.items.contains(&i));
    let kept: Vec<_> = inspected.items().iter().enumerate().filter(|&(i, _)| !inside(i)).map(|(_, it)| it).collect();
    assert_eq!(kept.len(), again.items().len());
    for (a, b) in kept.iter().zip(again.items()) {
        assert_eq!((a.name(), &a.bytes), (b.name(), &b.bytes));
    }
    for item in inspected.items() {
        let _ = item.name();
        for &t in ALL {
            let _ = transform::step(t, &item.bytes);
        }
        let _ = transform::apply(ALL, &item.bytes);
    }
});
