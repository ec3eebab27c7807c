//! Request path normalisation: the one form of a path that both the route
//! match and the upstream see, so that no encoding can make an upstream
//! resolve a path the route table never matched.
//!
//! In order:
//! 1. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!    decoded (`%61dmin` is `admin`, `%2e%2e` is `..`); other escapes keep
//!    their bytes, with upper-case hex digits (`%3f` becomes `%3F`);
//!    a `%` not followed by two hex digits is an error;
//! 2. encoded separators (`%2F`, `%5C`, any case) follow the listener's
//!    [`EscapedSlashes`]: an error, decoded to `/`, or kept as they are;
//! 3. `.` and `..` segments are removed (RFC 3986 §5.2.4); a `..` above the
//!    root is an error.
//!
//! Nothing is decoded twice: `%252F` stays `%252F`, which an upstream that
//! decodes once reads as the text `%2F`, not as a separator.

use std::borrow::Cow;

use crate::config::EscapedSlashes;

/// Why a request path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPath {
    #[error("the request path climbs above the root")]
    AboveRoot,
    #[error("the request path does not start with `/`")]
    NotAbsolute,
    #[error("the request path has a malformed percent-escape")]
    BadEscape,
    #[error("the request path has an encoded `/` or `\\` (%2F or %5C), which this listener refuses")]
    EscapedSlash,
}

/// The normalised form of `path` (see the module docs). Paths already in
/// normal form, the usual case, are returned as they are, without
/// allocating.
pub fn normalize_path(path: &str, slashes: EscapedSlashes) -> Result<Cow<'_, str>, InvalidPath> {
    if !path.starts_with('/') {
        return Err(InvalidPath::NotAbsolute);
    }
    let decoded = if path.contains('%') { decode_escapes(path, slashes)? } else { Cow::Borrowed(path) };
    let needs_work = decoded[1..].split('/').any(|s| s == "." || s == "..");
    if !needs_work {
        return Ok(decoded);
    }
    remove_dot_segments(&decoded).map(Cow::Owned)
}

/// Step 1 and 2: one pass over the escapes.
fn decode_escapes(path: &str, slashes: EscapedSlashes) -> Result<Cow<'_, str>, InvalidPath> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // Copy the run up to the next escape at once (keeps UTF-8 whole).
            let end = path[i..].find('%').map_or(path.len(), |n| i + n);
            out.push_str(&path[i..end]);
            i = end;
            continue;
        }
        let (Some(hi), Some(lo)) = (bytes.get(i + 1).and_then(hex), bytes.get(i + 2).and_then(hex)) else {
            return Err(InvalidPath::BadEscape);
        };
        let c = hi << 4 | lo;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
            changed = true;
        } else if c == b'/' || c == b'\\' {
            match slashes {
                EscapedSlashes::Reject => return Err(InvalidPath::EscapedSlash),
                EscapedSlashes::Decode => {
                    out.push('/');
                    changed = true;
                }
                EscapedSlashes::Keep => push_escape(&mut out, c, &mut changed, &bytes[i..i + 3]),
            }
        } else {
            push_escape(&mut out, c, &mut changed, &bytes[i..i + 3]);
        }
        i += 3;
    }
    Ok(if changed { Cow::Owned(out) } else { Cow::Borrowed(path) })
}

/// Writes `%XX` with upper-case digits, noting whether that changed it.
fn push_escape(out: &mut String, c: u8, changed: &mut bool, original: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let escaped = [b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]];
    *changed |= escaped != original;
    out.extend(escaped.iter().map(|&b| b as char));
}

fn hex(b: &u8) -> Option<u8> {
    crate::syntax::hex_digit(*b)
}

/// Step 3, on a path whose escapes are already decoded.
fn remove_dot_segments(path: &str) -> Result<String, InvalidPath> {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(InvalidPath::AboveRoot);
                }
            }
            _ => {
                out.push(seg);
                continue;
            }
        }
        // A path ending in a dot segment names a directory.
        if i == last {
            out.push("");
        }
    }
    Ok(format!("/{}", out.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<Cow<'_, str>, InvalidPath> {
        normalize_path(p, EscapedSlashes::Reject)
    }

    #[test]
    fn dot_segments_are_resolved_before_matching() {
        assert_eq!(norm("/a/b").unwrap(), "/a/b");
        assert!(matches!(norm("/a/b").unwrap(), Cow::Borrowed(_)));
        assert_eq!(norm("/api/../admin").unwrap(), "/admin");
        assert_eq!(norm("/api/%2E%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/..."), Ok(Cow::Borrowed("/...")));
        assert_eq!(norm("/a/.%2E/b").unwrap(), "/b");
        assert_eq!(norm("/a/%2e./b").unwrap(), "/b");
        assert_eq!(norm("/a/%2e/b").unwrap(), "/a/b");
        assert_eq!(norm("/a/%2ex/b").unwrap(), "/a/.x/b");
        assert_eq!(norm("/v1/ab/cdef"), Ok(Cow::Borrowed("/v1/ab/cdef")));
        assert_eq!(norm("/../etc/passwd"), Err(InvalidPath::AboveRoot));
        assert_eq!(norm("relative"), Err(InvalidPath::NotAbsolute));
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept_in_upper_case() {
        assert_eq!(norm("/%61dmin/%7Euser").unwrap(), "/admin/~user");
        assert_eq!(norm("/q/a%20b%3fc").unwrap(), "/q/a%20b%3Fc");
        assert!(matches!(norm("/q/a%20b").unwrap(), Cow::Borrowed(_)));
        assert_eq!(norm("/caf%C3%A9").unwrap(), "/caf%C3%A9");
        assert_eq!(norm("/é/%41"), Ok(Cow::Owned("/é/A".into())));
        assert_eq!(norm("/a%"), Err(InvalidPath::BadEscape));
        assert_eq!(norm("/a%4"), Err(InvalidPath::BadEscape));
        assert_eq!(norm("/a%zz"), Err(InvalidPath::BadEscape));
    }

    #[test]
    fn escaped_separators_follow_the_listener_setting() {
        for p in ["/files/public/..%2fadmin/x", "/a%2Fb", "/a%5cb", "/a%5Cb"] {
            assert_eq!(norm(p), Err(InvalidPath::EscapedSlash), "{p}");
        }
        let decode = |p| normalize_path(p, EscapedSlashes::Decode).map(Cow::into_owned);
        assert_eq!(decode("/files/public/..%2fadmin/x"), Ok("/files/admin/x".into()));
        assert_eq!(decode("/a%5Cb"), Ok("/a/b".into()));
        assert_eq!(decode("/%2e%2e%2fetc"), Err(InvalidPath::AboveRoot));
        let keep = |p| normalize_path(p, EscapedSlashes::Keep).map(Cow::into_owned);
        assert_eq!(keep("/files/public/..%2fadmin/x"), Ok("/files/public/..%2Fadmin/x".into()));
        // Double encoding is never decoded twice.
        assert_eq!(norm("/files/public/..%252fadmin"), Ok(Cow::Borrowed("/files/public/..%252fadmin")));
        assert_eq!(norm("/a/%252e%252e/b"), Ok(Cow::Borrowed("/a/%252e%252e/b")));
    }

    proptest::proptest! {
        #[test]
        fn normalised_paths_are_stable_and_have_no_dot_segments(
            p in "(/(a|b|\\.|\\.\\.|%2e|%2E%2e|%2f|%5C|%25|%41|%|%zz|é)){0,8}",
            mode in 0..3u8,
        ) {
            let mode = [EscapedSlashes::Reject, EscapedSlashes::Decode, EscapedSlashes::Keep][mode as usize];
            let p = if p.is_empty() { "/".to_string() } else { p };
            if let Ok(n) = normalize_path(&p, mode) {
                proptest::prop_assert!(n.starts_with('/'));
                for seg in n[1..].split('/') {
                    proptest::prop_assert!(seg != "." && seg != "..", "{} -> {}", p, n);
                }
                // Normalising twice changes nothing: the route match and the
                // upstream see one form.
                let again = normalize_path(&n, mode);
                proptest::prop_assert_eq!(again.as_deref(), Ok(&*n));
            }
        }
    }
}
