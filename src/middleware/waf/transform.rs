//! The rewrites a rule asks for before its patterns see a value.
//!
//! Each transform returns `None` when it leaves the value as it is, so a
//! clean value costs a scan and no copy.

use std::borrow::Cow;

use base64::Engine;

use crate::config::waf::Transform;
use crate::syntax::hex_digit as hex;

/// How many times `url_decode` decodes at most (each pass must change the
/// value to go on).
const URL_DECODE_PASSES: usize = 4;

/// `value` through `pipeline`, in order.
pub fn apply<'v>(pipeline: &[Transform], value: &'v [u8]) -> Cow<'v, [u8]> {
    let mut out = Cow::Borrowed(value);
    for t in pipeline {
        if let Some(changed) = step(*t, &out) {
            out = Cow::Owned(changed);
        }
    }
    out
}

/// One transform: the new value, or `None` if it leaves `v` as it is.
pub fn step(t: Transform, v: &[u8]) -> Option<Vec<u8>> {
    match t {
        Transform::UrlDecode => url_decode(v),
        Transform::HtmlEntityDecode => html_entity_decode(v),
        Transform::JsDecode => js_decode(v),
        Transform::CssDecode => css_decode(v),
        Transform::Lowercase => v.iter().any(u8::is_ascii_uppercase).then(|| v.to_ascii_lowercase()),
        Transform::NormalizePath => normalize_path(v),
        Transform::RemoveNulls => v.contains(&0).then(|| v.iter().copied().filter(|&b| b != 0).collect()),
        Transform::CompressWhitespace => compress_whitespace(v),
        Transform::RemoveComments => remove_comments(v),
        Transform::Base64Decode => Some(base64_decode(v)),
        Transform::Utf8Overlong => utf8_overlong(v),
        Transform::CmdLine => needs_cmd_line(v).then(|| cmd_line(v)),
    }
}

/// Bytes `cmd_line` leaves as they are, wherever they are (a space only
/// between others).
const CMD_PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_lowercase() || c.is_ascii_digit();
        b += 1;
    }
    let others = b"-_./:=@%+&?#()[]{}<>|;$*!~`\n";
    let mut i = 0;
    while i < others.len() {
        t[others[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether `cmd_line` would change `v`: a byte it drops, replaces or
/// lowers, a space first, or two in a row.
fn needs_cmd_line(v: &[u8]) -> bool {
    let mut prev_space = true;
    for &b in v {
        if b == b' ' {
            if prev_space {
                return true;
            }
            prev_space = true;
        } else if CMD_PLAIN[usize::from(b)] {
            prev_space = false;
        } else {
            return true;
        }
    }
    false
}

fn push_char(out: &mut Vec<u8>, c: u32) {
    let c = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
    let mut buf = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// `%XX`, `%uXXXX` (IIS) and `+`, until a pass changes nothing.
pub fn url_decode(v: &[u8]) -> Option<Vec<u8>> {
    let mut cur = url_decode_once(v)?;
    for _ in 1..URL_DECODE_PASSES {
        match url_decode_once(&cur) {
            Some(next) => cur = next,
            None => break,
        }
    }
    Some(cur)
}

fn url_decode_once(v: &[u8]) -> Option<Vec<u8>> {
    memchr::memchr2(b'%', b'+', v)?;
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    let mut changed = false;
    while i < v.len() {
        match v[i] {
            b'+' => {
                out.push(b' ');
                changed = true;
                i += 1;
            }
            b'%' => {
                if let (Some(h), Some(l)) =
                    (v.get(i + 1).and_then(|&b| hex(b)), v.get(i + 2).and_then(|&b| hex(b)))
                {
                    out.push(h << 4 | l);
                    changed = true;
                    i += 3;
                } else if let Some(c) = percent_u(&v[i + 1..]) {
                    push_char(&mut out, c);
                    changed = true;
                    i += 6;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// `uXXXX` after a `%`.
fn percent_u(v: &[u8]) -> Option<u32> {
    let [u, a, b, c, d, ..] = v else { return None };
    if !u.eq_ignore_ascii_case(&b'u') {
        return None;
    }
    let mut n = 0u32;
    for &x in [a, b, c, d] {
        n = n << 4 | u32::from(hex(x)?);
    }
    // Full-width forms (`%uff1c`) are what IIS maps to their ASCII twins.
    Some(match n {
        0xff01..=0xff5e => n - 0xff00 + 0x20,
        _ => n,
    })
}

const ENTITIES: &[(&[u8], u8)] = &[
    (b"lt", b'<'),
    (b"gt", b'>'),
    (b"amp", b'&'),
    (b"quot", b'"'),
    (b"apos", b'\''),
    (b"nbsp", b' '),
    (b"colon", b':'),
    (b"semi", b';'),
    (b"lpar", b'('),
    (b"rpar", b')'),
    (b"sol", b'/'),
    (b"bsol", b'\\'),
    (b"tab", b'\t'),
    (b"newline", b'\n'),
    (b"equals", b'='),
    (b"excl", b'!'),
    (b"num", b'#'),
    (b"percnt", b'%'),
    (b"lsqb", b'['),
    (b"rsqb", b']'),
    (b"lcub", b'{'),
    (b"rcub", b'}'),
    (b"grave", b'`'),
    (b"quest", b'?'),
    (b"plus", b'+'),
    (b"period", b'.'),
    (b"comma", b','),
    (b"ast", b'*'),
    (b"dollar", b'$'),
    (b"vert", b'|'),
    (b"lowbar", b'_'),
    (b"hyphen", b'-'),
];

/// Named, decimal and hex character references, with or without the
/// closing `;` (browsers accept both).
pub fn html_entity_decode(v: &[u8]) -> Option<Vec<u8>> {
    if !v.contains(&b'&') {
        return None;
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    let mut changed = false;
    while i < v.len() {
        if v[i] == b'&' {
            if let Some((used, c)) = entity(&v[i + 1..]) {
                push_char(&mut out, c);
                changed = true;
                i += 1 + used;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// The reference after a `&`: bytes used (with its `;`) and the character.
fn entity(v: &[u8]) -> Option<(usize, u32)> {
    let semi = |n: usize| n + usize::from(v.get(n) == Some(&b';'));
    if let Some(rest) = v.strip_prefix(b"#") {
        let (digits, radix, skip) = match rest.first() {
            Some(b'x' | b'X') => (&rest[1..], 16, 2),
            _ => (rest, 10, 1),
        };
        let n = digits
            .iter()
            .take_while(|b| if radix == 16 { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
            .count();
        if n == 0 || n > 10 {
            return None;
        }
        let text = std::str::from_utf8(&digits[..n]).ok()?;
        let c = u32::from_str_radix(text, radix).ok()?;
        return Some((semi(skip + n), c));
    }
    let n = v.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let name = v[..n].to_ascii_lowercase();
    let &(used, c) = ENTITIES.iter().find(|(e, _)| *e == name.as_slice())?;
    Some((semi(used.len()), u32::from(c)))
}

/// What a backslash escape stands for.
enum Unescaped {
    Char(u32),
    Byte(u8),
    Nothing,
}

/// The bytes of `v` with each `\` escape replaced by what `decode` says
/// it stands for; `decode` gets the bytes after the backslash and answers
/// how many of them the escape used. A backslash at the end stays.
fn unescape(v: &[u8], decode: impl Fn(&[u8]) -> (usize, Unescaped)) -> Option<Vec<u8>> {
    if !v.contains(&b'\\') {
        return None;
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' || i + 1 == v.len() {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let (used, what) = decode(&v[i + 1..]);
        match what {
            Unescaped::Char(c) => push_char(&mut out, c),
            Unescaped::Byte(b) => out.push(b),
            Unescaped::Nothing => {}
        }
        i += 1 + used;
    }
    Some(out)
}

/// `\xHH`, `\uHHHH`, `\u{H…}`, `\OOO` and `\n`-style escapes.
pub fn js_decode(v: &[u8]) -> Option<Vec<u8>> {
    unescape(v, |rest| {
        let (used, c) = match rest[0] {
            b'x' | b'X' => match (rest.get(1).and_then(|&b| hex(b)), rest.get(2).and_then(|&b| hex(b))) {
                (Some(h), Some(l)) => (3, u32::from(h << 4 | l)),
                _ => (1, u32::from(rest[0])),
            },
            b'u' | b'U' => js_unicode(rest).unwrap_or((1, u32::from(rest[0]))),
            b'0'..=b'7' => {
                let n = rest.iter().take(3).take_while(|b| (b'0'..=b'7').contains(b)).count();
                let c = rest[..n].iter().fold(0u32, |a, &b| a * 8 + u32::from(b - b'0'));
                (n, c)
            }
            b'n' => (1, u32::from(b'\n')),
            b'r' => (1, u32::from(b'\r')),
            b't' => (1, u32::from(b'\t')),
            b'b' => (1, 8),
            b'f' => (1, 12),
            b'v' => (1, 11),
            other => (1, u32::from(other)),
        };
        (used, Unescaped::Char(c))
    })
}

fn js_unicode(rest: &[u8]) -> Option<(usize, u32)> {
    if rest.get(1) == Some(&b'{') {
        let n = rest[2..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if n == 0 || n > 6 || rest.get(2 + n) != Some(&b'}') {
            return None;
        }
        let c = u32::from_str_radix(std::str::from_utf8(&rest[2..2 + n]).ok()?, 16).ok()?;
        return Some((3 + n, c));
    }
    let digits = rest.get(1..5)?;
    let mut c = 0u32;
    for &d in digits {
        c = c << 4 | u32::from(hex(d)?);
    }
    Some((5, c))
}

/// CSS escapes: `\` with one to six hex digits (and one optional space), or
/// `\` before any other character, which stands for itself.
pub fn css_decode(v: &[u8]) -> Option<Vec<u8>> {
    unescape(v, |rest| {
        let n = rest.iter().take(6).take_while(|b| b.is_ascii_hexdigit()).count();
        if n > 0 {
            let c = rest[..n].iter().fold(0u32, |a, &b| a << 4 | u32::from(hex(b).unwrap_or(0)));
            (n + usize::from(rest.get(n).is_some_and(|b| b.is_ascii_whitespace())), Unescaped::Char(c))
        } else if rest[0] == b'\n' {
            (1, Unescaped::Nothing)
        } else {
            (1, Unescaped::Byte(rest[0]))
        }
    })
}

/// Backslashes as slashes; `//`, `/./` and `/../` resolved (never above
/// the start).
pub fn normalize_path(v: &[u8]) -> Option<Vec<u8>> {
    let needs = v.contains(&b'\\') || v.windows(2).any(|w| w == b"//" || w == b"/.") || v.starts_with(b"./");
    if !needs {
        return None;
    }
    let slashed: Vec<u8> = v.iter().map(|&b| if b == b'\\' { b'/' } else { b }).collect();
    let absolute = slashed.first() == Some(&b'/');
    let mut segments: Vec<&[u8]> = Vec::new();
    for seg in slashed.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(v.len());
    if absolute {
        out.push(b'/');
    }
    out.extend_from_slice(&segments.join(&b'/'));
    if slashed.ends_with(b"/") && !segments.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

fn compress_whitespace(v: &[u8]) -> Option<Vec<u8>> {
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    // One pass: a whitespace byte other than a space, or two in a row.
    let mut prev = false;
    let needs = v.iter().any(|&b| {
        let here = ws(b);
        let hit = here && (b != b' ' || prev);
        prev = here;
        hit
    });
    if !needs {
        return None;
    }
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        if ws(b) {
            if out.last() != Some(&b' ') {
                out.push(b' ');
            }
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Block comments (`/* … */`, an unclosed one to the end) become one
/// space; MySQL's executable comments (`/*!50000 … */`) keep their text.
fn remove_comments(v: &[u8]) -> Option<Vec<u8>> {
    let opens_or_closes = |i: usize| (i > 0 && v[i - 1] == b'/') || v.get(i + 1) == Some(&b'/');
    if !memchr::memchr_iter(b'*', v).any(opens_or_closes) {
        return None;
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i..].starts_with(b"/*!") {
            let digits = v[i + 3..].iter().take_while(|b| b.is_ascii_digit()).count();
            out.push(b' ');
            i += 3 + digits;
        } else if v[i..].starts_with(b"/*") {
            let end = v[i + 2..].windows(2).position(|w| w == b"*/").map_or(v.len(), |p| i + 2 + p + 2);
            out.push(b' ');
            i = end;
        } else if v[i..].starts_with(b"*/") {
            out.push(b' ');
            i += 2;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The decoded bytes if `v` is base64 (standard or URL-safe, padded or
/// not, at least 8 characters); nothing otherwise, so a rule on decoded
/// values never sees the raw value a second time.
fn base64_decode(v: &[u8]) -> Vec<u8> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let v = v.trim_ascii();
    if v.len() < 8 {
        return Vec::new();
    }
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(v).ok())
        .unwrap_or_default()
}

/// Overlong UTF-8 (two, three and four-byte forms of characters that have
/// a shorter one) decoded to the character: `C0 AE` is `.`.
fn utf8_overlong(v: &[u8]) -> Option<Vec<u8>> {
    if v.is_ascii() || !v.iter().any(|&b| matches!(b, 0xc0 | 0xc1 | 0xe0 | 0xf0)) {
        return None;
    }
    let cont = |b: Option<&u8>| b.filter(|&&b| b & 0xc0 == 0x80).map(|&b| u32::from(b & 0x3f));
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    let mut changed = false;
    while i < v.len() {
        let b = v[i];
        let decoded = match b {
            0xc0 | 0xc1 => cont(v.get(i + 1)).map(|c1| (2, (u32::from(b & 0x1f) << 6) | c1)),
            0xe0 => match (cont(v.get(i + 1)), cont(v.get(i + 2))) {
                (Some(c1), Some(c2)) if c1 < 0x20 => Some((3, c1 << 6 | c2)),
                _ => None,
            },
            0xf0 => match (cont(v.get(i + 1)), cont(v.get(i + 2)), cont(v.get(i + 3))) {
                (Some(c1), Some(c2), Some(c3)) if c1 < 0x10 => Some((4, c1 << 12 | c2 << 6 | c3)),
                _ => None,
            },
            _ => None,
        };
        match decoded {
            Some((used, c)) => {
                push_char(&mut out, c);
                changed = true;
                i += used;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// What a shell would run: `\\`, `"`, `'` and `^` dropped (`c'a't`,
/// `w^hoami`), `,` as a space (`{cat,/etc/passwd}`), runs of spaces and
/// tabs as one space, lower case. Unlike CRS's `t:cmdLine`, `;` and new
/// lines stay (they separate commands) and a space before `/` stays (it
/// tells `cat /etc` from `docker/cli`).
fn cmd_line(v: &[u8]) -> Vec<u8> {
    let mut out = vec![0; v.len()];
    let mut n = 0;
    let mut after_space = false;
    for &b in v {
        match CMD_OUT[usize::from(b)] {
            CMD_DROP => {}
            b' ' => {
                if !after_space {
                    out[n] = b' ';
                    n += 1;
                    after_space = true;
                }
            }
            c => {
                out[n] = c;
                n += 1;
                after_space = false;
            }
        }
    }
    out.truncate(n);
    out
}

/// What `cmd_line` makes of each byte: dropped ([`CMD_DROP`]), a space
/// (separators), or the byte lowercased. One lookup a byte instead of a
/// match: the transform runs over every argument of a command-injection
/// pipeline, free text included.
const CMD_OUT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'\\' | b'"' | b'\'' | b'^' => CMD_DROP,
            b',' | b' ' | b'\t' | b'\r' | 0x0b | 0x0c => b' ',
            c => c.to_ascii_lowercase(),
        };
        b += 1;
    }
    t
};

/// The mark of a dropped byte in [`CMD_OUT`]: `"`, which `cmd_line` never
/// writes.
const CMD_DROP: u8 = b'"';

#[cfg(test)]
mod tests {
    use super::*;
    use Transform::*;

    fn t(pipeline: &[Transform], v: &str) -> String {
        String::from_utf8_lossy(&apply(pipeline, v.as_bytes())).into_owned()
    }

    #[test]
    fn url_decoding_repeats_and_knows_iis_forms() {
        assert_eq!(t(&[UrlDecode], "a%20b+c"), "a b c");
        assert_eq!(t(&[UrlDecode], "%253Cscript%253E"), "<script>");
        assert_eq!(t(&[UrlDecode], "%u003cscript%uFF1E"), "<script>");
        assert_eq!(t(&[UrlDecode], "100% sure %zz"), "100% sure %zz");
        assert!(matches!(apply(&[UrlDecode], b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn entities_escapes_and_case() {
        assert_eq!(
            t(&[HtmlEntityDecode], "&lt;img src=x onerror&#x3d;alert&#40;1&#41;&gt;"),
            "<img src=x onerror=alert(1)>"
        );
        assert_eq!(t(&[HtmlEntityDecode], "&#0000060script&#62 &amp;&unknown;"), "<script> &&unknown;");
        assert_eq!(t(&[JsDecode], r"\x3cscript\u003e\u{61}\101\n"), "<script>aA\n");
        assert_eq!(t(&[CssDecode], r"\6a avascript:\3c x"), "javascript:<x");
        assert_eq!(t(&[Lowercase], "SeLeCt"), "select");
    }

    #[test]
    fn paths_whitespace_comments_nulls() {
        assert_eq!(t(&[NormalizePath], r"/a/./b//..\..\etc/passwd"), "/etc/passwd");
        assert_eq!(t(&[NormalizePath], "../../etc/passwd"), "etc/passwd");
        assert_eq!(t(&[CompressWhitespace], "union \t\n select"), "union select");
        assert_eq!(t(&[RemoveComments], "union/**/select/*!50000user*/()/* open"), "union select user () ");
        assert_eq!(t(&[RemoveNulls], "a\0b"), "ab");
        assert_eq!(t(&[CmdLine], r#"c'a't  /e"t"c/pa\sswd;W^HoAmI"#), "cat /etc/passwd;whoami");
    }

    #[test]
    fn base64_and_overlong_utf8() {
        assert_eq!(t(&[Base64Decode], "PHNjcmlwdD4="), "<script>");
        assert_eq!(t(&[Base64Decode], "short"), "");
        assert_eq!(t(&[Base64Decode], "not base64 at all!"), "");
        assert_eq!(t(&[UrlDecode, Utf8Overlong], "%c0%ae%c0%ae%c0%afetc"), "../etc");
        assert_eq!(t(&[UrlDecode, Utf8Overlong], "%e0%80%af"), "/");
    }

    /// `cmd_line` as a match per byte, as it was written first.
    fn cmd_line_by_match(v: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::with_capacity(v.len());
        for &b in v {
            match b {
                b'\\' | b'"' | b'\'' | b'^' => {}
                b',' | b' ' | b'\t' | b'\r' | 0x0b | 0x0c => {
                    if out.last() != Some(&b' ') {
                        out.push(b' ');
                    }
                }
                b => out.push(b.to_ascii_lowercase()),
            }
        }
        out
    }

    proptest::proptest! {
        /// The quick tests that let a value through unchanged agree with
        /// the transforms themselves.
        #[test]
        fn a_value_left_as_it_is_is_the_transforms_fixed_point(
            v in proptest::collection::vec(proptest::sample::select(b" \t\r\x0b/*!-'\"^\\,;aZ9%+&#\0\xc0\xae".to_vec()), 0..24)
        ) {
            if !needs_cmd_line(&v) {
                proptest::prop_assert_eq!(cmd_line(&v), v.clone());
            }
            proptest::prop_assert_eq!(cmd_line(&v), cmd_line_by_match(&v));
            let comment = v.windows(2).any(|w| w == b"/*" || w == b"*/");
            proptest::prop_assert_eq!(step(RemoveComments, &v).is_some(), comment);
        }
    }
}
