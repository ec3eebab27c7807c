//! Byte-level pieces of HTTP syntax that several modules read: hex digits
//! (percent escapes, chunk sizes), token characters (RFC 9110 `tchar`:
//! header names, methods), and form decoding (`application/x-www-form-urlencoded`).

use std::borrow::Cow;

/// The value of one hex digit.
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `b` may appear in a token (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a non-empty token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// One form-encoded component: `+` is a space, `%XX` a byte (a `%` without
/// two hex digits stands for itself, as browsers and `form_urlencoded` do).
pub fn form_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex_digit),
                raw.get(i + 2).copied().and_then(hex_digit),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_components_decode_once() {
        assert_eq!(&*form_decode(b"a+b%20c%2541%zz%"), b"a b c%41%zz%");
        assert!(matches!(form_decode(b"plain"), Cow::Borrowed(_)));
        assert!(is_token("X-Probe") && !is_token("a b") && !is_token(""));
    }
}
