//! A request taken apart into the values rules look at: one [`Item`] per
//! value, with the name a log line and an `exclude_args` entry use for it
//! (`query:q`, `form:comment`, `json:user.name`, `multipart:title`,
//! `header:referer`, `cookie:session`), formatted only when a rule matched.

use std::borrow::Cow;
use std::ops::Range;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};

use crate::config::waf::Target;
use crate::middleware::request_id::{self, X_REQUEST_ID};
use crate::syntax::form_decode;

/// Nesting a JSON body is walked to; deeper values are read as their JSON
/// text.
const JSON_DEPTH: usize = 32;
/// Arguments read from one request at most (query, form, JSON and
/// multipart together); the rest are inspected as one value.
const MAX_ARGS: usize = 1024;

/// What a value is, as rules' targets select it: an argument's, header's
/// or cookie's value, or its name; the method; the path...
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Method,
    Path,
    PathRaw,
    Query,
    ArgValue,
    ArgName,
    HeaderValue,
    HeaderName,
    CookieValue,
    CookieName,
    Body,
    File,
    Anomaly,
}

impl Kind {
    /// The kind's bit in a [`Kinds`] set.
    pub fn bit(self) -> Kinds {
        1 << self as u16
    }
}

/// A set of kinds, one bit each.
pub type Kinds = u16;

/// The kinds of value `target` selects (with, for `header:NAME`, the name
/// checked by [`covers`]).
pub fn kinds_of(target: &Target) -> Kinds {
    match target {
        Target::Method => Kind::Method.bit(),
        Target::Path => Kind::Path.bit(),
        Target::PathRaw => Kind::PathRaw.bit(),
        Target::Query => Kind::Query.bit(),
        Target::Args => Kind::ArgValue.bit(),
        Target::ArgNames => Kind::ArgName.bit(),
        Target::Headers | Target::Header(_) => Kind::HeaderValue.bit(),
        Target::HeaderNames => Kind::HeaderName.bit(),
        Target::Cookies => Kind::CookieValue.bit(),
        Target::CookieNames => Kind::CookieName.bit(),
        Target::Body => Kind::Body.bit(),
        Target::Files => Kind::File.bit(),
        Target::Anomalies => Kind::Anomaly.bit(),
    }
}

/// Whether `target` selects a value of `kind` from `item`.
pub fn covers(target: &Target, kind: Kind, item: &Item<'_>) -> bool {
    match target {
        Target::Header(h) => kind == Kind::HeaderValue && *item.key == **h,
        t => kinds_of(t) & kind.bit() != 0,
    }
}

/// One value of a request (and, for arguments, headers and cookies, its
/// name, which rules on `arg_names`, `header_names` and `cookie_names` see).
#[derive(Debug)]
pub struct Item<'r> {
    /// What the value is (for a named item, the value's kind; the name's
    /// is [`Item::name_kind`]).
    pub kind: Kind,
    /// Where it came from: `query`, `form`, `json`, `multipart`, `header`,
    /// `cookie`, `file`, or the target's own name (`method`, `path`...).
    source: &'static str,
    /// The argument, header or cookie name (empty for the others).
    pub key: Cow<'r, str>,
    pub bytes: Cow<'r, [u8]>,
}

impl<'r> Item<'r> {
    pub(super) fn plain(kind: Kind, source: &'static str, bytes: &'r [u8]) -> Self {
        Item { kind, source, key: Cow::Borrowed(""), bytes: Cow::Borrowed(bytes) }
    }

    fn named(kind: Kind, source: &'static str, key: Cow<'r, str>, bytes: Cow<'r, [u8]>) -> Self {
        Item { kind, source, key, bytes }
    }

    /// The kind of the item's name, for those that have one.
    pub fn name_kind(&self) -> Option<Kind> {
        match self.kind {
            Kind::ArgValue => Some(Kind::ArgName),
            Kind::HeaderValue => Some(Kind::HeaderName),
            Kind::CookieValue => Some(Kind::CookieName),
            _ => None,
        }
    }

    /// How logs and `exclude_args` name it: `query:q`, `header:referer`,
    /// `path`.
    pub fn name(&self) -> String {
        if self.key.is_empty() && self.name_kind().is_none() && self.kind != Kind::File {
            return self.source.to_owned();
        }
        format!("{}:{}", self.source, self.key)
    }
}

/// A request's head, as the firewall reads it.
#[derive(Clone, Copy, Debug)]
pub struct Head<'r> {
    pub method: &'r Method,
    pub uri: &'r Uri,
    pub headers: &'r HeaderMap,
    /// Whether the gateway made the request's `X-Request-Id`: then that
    /// header is not the client's, and is left out.
    pub own_request_id: bool,
}

impl<'r> Head<'r> {
    pub fn of<B>(request: &'r Request<B>) -> Self {
        Head {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            own_request_id: request_id::is_own(request),
        }
    }
}

/// A head with every header the client's.
impl<'r> From<(&'r Method, &'r Uri, &'r HeaderMap)> for Head<'r> {
    fn from((method, uri, headers): (&'r Method, &'r Uri, &'r HeaderMap)) -> Self {
        Head { method, uri, headers, own_request_id: false }
    }
}

/// What a request offers its rules.
#[derive(Debug, Default)]
pub struct Inspected<'r> {
    items: Vec<Item<'r>>,
    /// Arguments read (query, form, JSON and multipart).
    args: usize,
    /// The values read as several, and which items they gave.
    parsed: Vec<Parsed<'r>>,
}

/// A value read as several: a query string (as its arguments), a `Cookie`
/// header (as its cookies), a body (as its fields, by its content type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Query,
    Cookies,
    Body,
}

/// One value read as several, whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Whole<'r> {
    pub split: Split,
    /// What else its reading depends on: a body's content type.
    pub context: &'r [u8],
    pub bytes: &'r [u8],
}

/// A value read as several, and what it gave: the items in `items`,
/// `args` of them arguments. Only a value read in full (within the 1,024
/// arguments a request is read to) is listed, so that the same bytes
/// always give the same items.
#[derive(Debug)]
pub struct Parsed<'r> {
    pub whole: Whole<'r>,
    pub items: Range<usize>,
    pub args: usize,
}

impl<'r> Inspected<'r> {
    /// A request's head and, if it was read, its body (or the first
    /// `body_limit` bytes). `path` is the normalised path routing matched.
    pub fn new(head: impl Into<Head<'r>>, path: &'r str, body: Option<&'r [u8]>) -> Self {
        Self::read(head, path, body, |_| None)
    }

    /// [`Inspected::new`], but a query string, `Cookie` header or body for
    /// which `known` answers (with the number of arguments it holds) is not
    /// read: its values were all found clean before, and only its
    /// arguments are counted.
    pub fn read(
        head: impl Into<Head<'r>>,
        path: &'r str,
        body: Option<&'r [u8]>,
        mut known: impl FnMut(Whole<'r>) -> Option<usize>,
    ) -> Self {
        let Head { method, uri, headers, own_request_id } = head.into();
        let query = uri.query().unwrap_or("").as_bytes();
        let mut me = Inspected { items: Vec::with_capacity(16 + headers.len()), args: 0, parsed: Vec::new() };
        me.items.push(Item::plain(Kind::Method, "method", method.as_str().as_bytes()));
        me.items.push(Item::plain(Kind::Path, "path", path.as_bytes()));
        me.items.push(Item::plain(Kind::PathRaw, "path_raw", uri.path().as_bytes()));
        if !query.is_empty() {
            me.items.push(Item::plain(Kind::Query, "query", query));
        }
        let mut framing = Framing::default();
        for (n, v) in headers {
            framing.see(n, v);
            if own_request_id && *n == X_REQUEST_ID {
                continue;
            }
            me.items.push(Item::named(
                Kind::HeaderValue,
                "header",
                Cow::Borrowed(n.as_str()),
                Cow::Borrowed(v.as_bytes()),
            ));
        }
        for v in headers.get_all(COOKIE) {
            let whole = Whole { split: Split::Cookies, context: b"", bytes: v.as_bytes() };
            me.split(whole, &mut known, |me| {
                for (k, v) in cookies(whole.bytes) {
                    me.items.push(Item::named(Kind::CookieValue, "cookie", k, Cow::Borrowed(v)));
                }
            });
        }
        if !query.is_empty() {
            let whole = Whole { split: Split::Query, context: b"", bytes: query };
            me.split(whole, &mut known, |me| me.form_pairs(query, "query"));
        }
        if let Some(body) = body.filter(|b| !b.is_empty()) {
            let content_type = framing.content_type.unwrap_or_default();
            let whole = Whole { split: Split::Body, context: content_type, bytes: body };
            me.split(whole, &mut known, |me| me.read_body(content_type, body));
        }
        for a in framing.anomalies(uri, headers.len()) {
            me.items.push(Item::plain(Kind::Anomaly, "anomalies", a.as_bytes()));
        }
        if me.args > MAX_ARGS {
            me.items.push(Item::plain(Kind::Anomaly, "anomalies", b"too-many-args"));
        }
        me
    }

    /// Every value, in the order the request has them.
    pub fn items(&self) -> &[Item<'r>] {
        &self.items
    }

    /// The values read as several, in the order of their items.
    pub fn parsed(&self) -> &[Parsed<'r>] {
        &self.parsed
    }

    /// Reads `whole` with `read`, or only counts its arguments when
    /// `known` knows it (and they fit in [`MAX_ARGS`], as they did when it
    /// was read).
    fn split(
        &mut self,
        whole: Whole<'r>,
        known: &mut impl FnMut(Whole<'r>) -> Option<usize>,
        read: impl FnOnce(&mut Self),
    ) {
        if let Some(args) = known(whole).filter(|&n| self.args + n <= MAX_ARGS) {
            self.args += args;
            return;
        }
        let (start, before) = (self.items.len(), self.args);
        read(self);
        if self.args <= MAX_ARGS {
            self.parsed.push(Parsed { whole, items: start..self.items.len(), args: self.args - before });
        }
    }

    fn read_body(&mut self, content_type: &[u8], body: &'r [u8]) {
        let ct = content_type.to_ascii_lowercase();
        let essence = ct.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        let whole = |me: &mut Self| me.items.push(Item::plain(Kind::Body, "body", body));
        if essence == b"application/x-www-form-urlencoded" {
            self.form_pairs(body, "form");
        } else if essence == b"application/json" || essence.ends_with(b"+json") {
            // Room for a value per ~32 bytes of JSON, and for a name's
            // path, so that neither grows while the body is walked.
            self.items.reserve(body.len() / 32);
            let mut path = String::with_capacity(64);
            let walked = match std::str::from_utf8(body) {
                // Valid UTF-8 (nearly every body) is checked once, not
                // string by string.
                Ok(text) => self.walk_json(&mut path, serde_json::Deserializer::from_str(text)),
                Err(_) => self.walk_json(&mut path, serde_json::Deserializer::from_slice(body)),
            };
            // What does not parse is still looked at, whole (beside what
            // was read of it).
            if !walked {
                whole(self);
            }
        } else if essence == b"multipart/form-data" {
            match boundary(content_type).and_then(|b| multipart(body, &b)) {
                Some(parts) => {
                    self.args += parts.iter().filter(|p| p.kind == Kind::ArgValue).count();
                    self.items.extend(parts);
                }
                None => whole(self),
            }
        } else {
            whole(self);
        }
        if self.args > MAX_ARGS {
            whole(self);
        }
    }

    /// Every name and value of a JSON document, as arguments; `false` if
    /// it does not parse.
    fn walk_json<R: serde_json::de::Read<'r>>(
        &mut self,
        path: &mut String,
        mut de: serde_json::Deserializer<R>,
    ) -> bool {
        let walk = JsonWalk { me: self, path, depth: 0, borrowed: None };
        serde::de::DeserializeSeed::deserialize(walk, &mut de).and_then(|()| de.end()).is_ok()
    }

    fn push_arg(&mut self, source: &'static str, key: Cow<'r, str>, bytes: Cow<'r, [u8]>) {
        self.args += 1;
        if self.args <= MAX_ARGS + 1 {
            self.items.push(Item::named(Kind::ArgValue, source, key, bytes));
        }
    }

    /// `a=1&b=2` (`+` as space, `%XX` decoded once), as `SOURCE:NAME`
    /// arguments. Only `&` separates (as WHATWG and ModSecurity read it): a
    /// `;` stays in its value, where an injection needs it.
    fn form_pairs(&mut self, text: &'r [u8], source: &'static str) {
        for pair in text.split(|&b| b == b'&') {
            if self.args > MAX_ARGS {
                return;
            }
            if pair.is_empty() {
                continue;
            }
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let name = match form_decode(name) {
                Cow::Borrowed(b) => as_text(b),
                Cow::Owned(v) => {
                    Cow::Owned(String::from_utf8(v).unwrap_or_else(|e| as_text(e.as_bytes()).into_owned()))
                }
            };
            self.push_arg(source, name, form_decode(value));
        }
    }
}

/// Walks a JSON document as it is parsed: every key (as the value's name)
/// and every string, number and boolean becomes an argument,
/// `json:user.name`, `json:items[0].sku`. Strings without escapes are
/// borrowed from the body, not copied; an empty object or list, or a
/// `null`, still gives its key (with an empty value). Past
/// [`JSON_DEPTH`], a value is read whole, as its JSON text.
struct JsonWalk<'a, 'r> {
    me: &'a mut Inspected<'r>,
    path: &'a mut String,
    depth: usize,
    /// The path as the body has it, when it is a top-level key without
    /// escapes (the value's name is then borrowed, not copied).
    borrowed: Option<&'r str>,
}

impl<'a, 'r> JsonWalk<'a, 'r> {
    fn push(self, bytes: Cow<'r, [u8]>) {
        let key = self.borrowed.map_or_else(|| Cow::Owned(self.path.clone()), Cow::Borrowed);
        self.me.push_arg("json", key, bytes);
    }

    fn child(&mut self, borrowed: Option<&'r str>) -> JsonWalk<'_, 'r> {
        JsonWalk { me: self.me, path: self.path, depth: self.depth + 1, borrowed }
    }
}

impl<'de: 'r, 'r> serde::de::DeserializeSeed<'de> for JsonWalk<'_, 'r> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth >= JSON_DEPTH {
            let v = serde_json::Value::deserialize(d)?;
            self.push(Cow::Owned(v.to_string().into_bytes()));
            return Ok(());
        }
        d.deserialize_any(self)
    }
}

use serde::Deserialize as _;

/// `n` in decimal, written at the end of `digits` (numbers and indexes
/// are in most JSON bodies, and `fmt` costs several hundred instructions
/// each).
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

impl<'de: 'r, 'r> serde::de::Visitor<'de> for JsonWalk<'_, 'r> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.push(Cow::Borrowed(if v { b"true" } else { b"false" }));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        let mut text = Vec::with_capacity(20);
        if v < 0 {
            text.push(b'-');
        }
        text.extend_from_slice(decimal(v.unsigned_abs(), &mut [0; 20]));
        self.push(Cow::Owned(text));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.push(Cow::Owned(decimal(v, &mut [0; 20]).to_vec()));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        let text = serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string());
        self.push(Cow::Owned(text.into_bytes()));
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.push(Cow::Borrowed(v.as_bytes()));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.push(Cow::Owned(v.as_bytes().to_vec()));
        Ok(())
    }

    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.push(Cow::Owned(v.into_bytes()));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        // `null`: under a key, the key is still looked at.
        if !self.path.is_empty() {
            self.push(Cow::Borrowed(b""));
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0u64;
        loop {
            let len = self.path.len();
            self.path.push('[');
            self.path.push_str(std::str::from_utf8(decimal(i, &mut [0; 20])).expect("digits"));
            self.path.push(']');
            let more = seq.next_element_seed(self.child(None))?;
            self.path.truncate(len);
            if more.is_none() {
                break;
            }
            i += 1;
        }
        if i == 0 && !self.path.is_empty() {
            self.push(Cow::Borrowed(b""));
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut any = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            any = true;
            let len = self.path.len();
            let borrowed = match key {
                Cow::Borrowed(k) if len == 0 => Some(k),
                _ => None,
            };
            if len != 0 {
                self.path.push('.');
            }
            self.path.push_str(&key);
            map.next_value_seed(self.child(borrowed))?;
            self.path.truncate(len);
        }
        if !any && !self.path.is_empty() {
            self.push(Cow::Borrowed(b""));
        }
        Ok(())
    }
}

/// A header value longer than this is an anomaly (`oversized-header`).
const LONG_HEADER: usize = 8 * 1024;
/// More headers than this are an anomaly (`too-many-headers`).
const MANY_HEADERS: usize = 100;
/// A path and query longer than this are an anomaly (`oversized-uri`).
const LONG_URI: usize = 8 * 1024;

/// What the headers say about a request's framing and size, gathered as
/// they are walked (one pass, instead of a lookup per header that matters).
#[derive(Default)]
struct Framing<'r> {
    hosts: usize,
    lengths: usize,
    bad_length: bool,
    codings: usize,
    last_coding: &'r [u8],
    /// The first `Content-Type`, and how many there are.
    content_type: Option<&'r [u8]>,
    content_types: usize,
    oversized: bool,
}

impl<'r> Framing<'r> {
    fn see(&mut self, name: &HeaderName, value: &'r HeaderValue) {
        let v = value.as_bytes();
        self.oversized |= v.len() > LONG_HEADER;
        if *name == HOST {
            self.hosts += 1;
        } else if *name == CONTENT_LENGTH {
            self.lengths += 1;
            self.bad_length |= v.is_empty() || !v.iter().all(u8::is_ascii_digit);
        } else if *name == TRANSFER_ENCODING {
            self.codings += 1;
            self.last_coding = v;
        } else if *name == CONTENT_TYPE {
            self.content_types += 1;
            self.content_type.get_or_insert(v);
        }
    }

    /// What is wrong with the request's framing and size, by name (the
    /// values of the `anomalies` target); `headers`: how many it has.
    fn anomalies(&self, uri: &Uri, headers: usize) -> Vec<&'static str> {
        let mut found = Vec::new();
        match self.hosts {
            0 if uri.authority().is_none() => found.push("missing-host"),
            0 | 1 => {}
            _ => found.push("duplicate-host"),
        }
        if self.lengths > 1 {
            found.push("duplicate-content-length");
        }
        if self.bad_length {
            found.push("invalid-content-length");
        }
        if self.codings > 0 {
            if self.lengths > 0 {
                found.push("content-length-and-transfer-encoding");
            }
            let last = self.last_coding.rsplit(|&b| b == b',').next().map(|c| c.trim_ascii());
            if !last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
                found.push("transfer-encoding-not-chunked");
            }
        }
        if self.content_types > 1 {
            found.push("duplicate-content-type");
        }
        if headers > MANY_HEADERS {
            found.push("too-many-headers");
        }
        if self.oversized {
            found.push("oversized-header");
        }
        if uri.path_and_query().is_some_and(|pq| pq.as_str().len() > LONG_URI) {
            found.push("oversized-uri");
        }
        found
    }
}

/// Whether inspecting `target` needs the request body.
pub fn reads_body(target: &Target) -> bool {
    matches!(target, Target::Args | Target::ArgNames | Target::Body | Target::Files)
}

fn cookies(header: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, &[u8])> {
    header.split(|&b| b == b';').filter_map(|pair| {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            return None;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        Some((as_text(name.trim_ascii()), value.trim_ascii()))
    })
}

/// A name as text: borrowed when it is UTF-8 (`from_utf8` checks ASCII a
/// word at a time, `from_utf8_lossy` a byte at a time: 240 instructions
/// less on a GET with nine arguments and three cookies).
fn as_text(bytes: &[u8]) -> Cow<'_, str> {
    std::str::from_utf8(bytes).map_or_else(|_| String::from_utf8_lossy(bytes), Cow::Borrowed)
}

/// The `boundary` parameter of a multipart content type.
fn boundary(content_type: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(content_type).ok()?;
    text.split(';')
        .skip(1)
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').as_bytes().to_vec())
        })
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

/// The fields (as `multipart:NAME` arguments) and upload file names (as
/// `file:NAME`) of a `multipart/form-data` body; `None` if it is not one.
/// File contents are not inspected.
fn multipart<'r>(body: &'r [u8], boundary: &[u8]) -> Option<Vec<Item<'r>>> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut rest = &body[find(body, &delimiter)? + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n").or_else(|| rest.strip_prefix(b"\n"))?;
        let end = find(rest, &delimiter);
        // A body cut at the inspection limit ends without its delimiter.
        let part = match end {
            Some(e) => &rest[..e],
            None => rest,
        };
        let (head, content) = split_part(part)?;
        let content =
            content.strip_suffix(b"\r\n").or_else(|| content.strip_suffix(b"\n")).unwrap_or(content);
        let (name, filename) = disposition(head)?;
        parts.push(match filename {
            Some(f) => Item::named(Kind::File, "file", Cow::Owned(name), Cow::Owned(f)),
            None => Item::named(Kind::ArgValue, "multipart", Cow::Owned(name), Cow::Borrowed(content)),
        });
        match end {
            Some(e) => rest = &rest[e + delimiter.len()..],
            None => return Some(parts),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn split_part(part: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(i) = find(part, b"\r\n\r\n") {
        return Some((&part[..i], &part[i + 4..]));
    }
    let i = find(part, b"\n\n")?;
    Some((&part[..i], &part[i + 2..]))
}

/// `name` and `filename` of a part's `Content-Disposition`.
fn disposition(head: &[u8]) -> Option<(String, Option<Vec<u8>>)> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    let mut name = None;
    let mut filename = None;
    for param in line.split(';').skip(1) {
        let Some((k, v)) = param.split_once('=') else { continue };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v.to_owned()),
            "filename" | "filename*" => filename = Some(v.as_bytes().to_vec()),
            _ => {}
        }
    }
    Some((name.unwrap_or_default(), filename))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(i: &Inspected<'_>, t: Target) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for item in i.items() {
            if covers(&t, item.kind, item) {
                out.push((item.name(), String::from_utf8_lossy(&item.bytes).into_owned()));
            }
            if let Some(k) = item.name_kind().filter(|k| covers(&t, *k, item)) {
                let _ = k;
                out.push((item.name(), item.key.to_string()));
            }
        }
        out
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn query_cookies_and_headers() {
        let p = parts("/s?q=a+b%27&x&q=2", &[("cookie", "sid=abc; theme=dark"), ("user-agent", "curl/8")]);
        let i = Inspected::new((&p.method, &p.uri, &p.headers), "/s", None);
        let q = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            collect(&i, Target::Args),
            vec![q("query:q", "a b'"), q("query:x", ""), q("query:q", "2")]
        );
        assert_eq!(collect(&i, Target::ArgNames)[0], q("query:q", "q"));
        assert_eq!(collect(&i, Target::Cookies), vec![q("cookie:sid", "abc"), q("cookie:theme", "dark")]);
        assert_eq!(collect(&i, Target::Header("user-agent".into())), vec![q("header:user-agent", "curl/8")]);
        assert_eq!(collect(&i, Target::Query), vec![q("query", "q=a+b%27&x&q=2")]);
    }

    #[test]
    fn the_gateways_own_request_id_is_left_out() {
        let p =
            parts("/s", &[("x-request-id", "0123456789abcdef0123456789abcdef"), ("user-agent", "curl/8")]);
        let head =
            |own_request_id| Head { method: &p.method, uri: &p.uri, headers: &p.headers, own_request_id };
        let names =
            |i: &Inspected<'_>| collect(i, Target::Headers).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(&Inspected::new(head(true), "/s", None)), ["header:user-agent"]);
        assert_eq!(
            names(&Inspected::new(head(false), "/s", None)),
            ["header:x-request-id", "header:user-agent"]
        );
    }

    #[test]
    fn json_bodies_are_walked_to_every_key_and_value() {
        let p = parts("/j", &[("content-type", "application/json; charset=utf-8")]);
        let body = br#"{"user":{"name":"O'Brien","age":40,"tags":["a",true]},"note":null,"e":{}}"#;
        let i = Inspected::new((&p.method, &p.uri, &p.headers), "/j", Some(body));
        let args = collect(&i, Target::Args);
        let names: Vec<&str> = args.iter().map(|(n, _)| n.as_str()).collect();
        // In document order, as parsed.
        let want = [
            "json:user.name",
            "json:user.age",
            "json:user.tags[0]",
            "json:user.tags[1]",
            "json:note",
            "json:e",
        ];
        assert_eq!(names, want);
        assert_eq!(args[0].1, "O'Brien");
        assert_eq!(collect(&i, Target::ArgNames)[0].1, "user.name");
        // Escaped strings are decoded; past the depth limit a value is read
        // whole, as its JSON text.
        let deep = format!("{}\"\\u003c\"{}", "[".repeat(40), "]".repeat(40));
        let i = Inspected::new((&p.method, &p.uri, &p.headers), "/j", Some(deep.as_bytes()));
        let args = collect(&i, Target::Args);
        assert_eq!(args.len(), 1);
        assert!(args[0].0.starts_with("json:[0][0]") && args[0].1.contains("\"<\""), "{args:?}");
        assert!(collect(&i, Target::Body).is_empty());
        let bad = Inspected::new((&p.method, &p.uri, &p.headers), "/j", Some(b"{not json"));
        assert_eq!(collect(&bad, Target::Body).len(), 1, "what does not parse is inspected whole");
    }

    #[test]
    fn json_numbers_and_indexes_are_written_as_display_writes_them() {
        let p = parts("/j", &[("content-type", "application/json")]);
        let body = br#"{"n":[0,-7,18446744073709551615,-9223372036854775808,1.5,5,6,7,8,9,10,42]}"#;
        let i = Inspected::new((&p.method, &p.uri, &p.headers), "/j", Some(body));
        let args = collect(&i, Target::Args);
        let values: Vec<&str> = args.iter().map(|(_, v)| v.as_str()).collect();
        let want = [
            "0",
            "-7",
            "18446744073709551615",
            "-9223372036854775808",
            "1.5",
            "5",
            "6",
            "7",
            "8",
            "9",
            "10",
            "42",
        ];
        assert_eq!(values, want);
        assert_eq!(args[11].0, "json:n[11]");
        for n in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn forms_and_multipart() {
        let p = parts("/f", &[("content-type", "application/x-www-form-urlencoded")]);
        let i = Inspected::new((&p.method, &p.uri, &p.headers), "/f", Some(b"a=%3Cb%3E&c=d"));
        assert_eq!(collect(&i, Target::Args)[0], ("form:a".into(), "<b>".into()));
        let p = parts("/m", &[("content-type", "multipart/form-data; boundary=XyZ")]);
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"up\"; filename=\"../../shell.php\"\r\nContent-Type: text/plain\r\n\r\n<?php system($_GET[1]); ?>\r\n--XyZ--\r\n";
        let i = Inspected::new((&p.method, &p.uri, &p.headers), "/m", Some(body));
        assert_eq!(collect(&i, Target::Args), vec![("multipart:title".into(), "hello".into())]);
        assert_eq!(collect(&i, Target::Files), vec![("file:up".into(), "../../shell.php".into())]);
    }
    #[test]
    fn a_known_value_is_not_read_but_its_arguments_still_count() {
        let query: String = (0..600).map(|i| format!("a{i}=1&")).collect();
        let form: String = (0..600).map(|i| format!("b{i}=2&")).collect();
        let p = parts(&format!("/f?{query}"), &[("content-type", "application/x-www-form-urlencoded")]);
        let head = (&p.method, &p.uri, &p.headers);
        let anomaly =
            |i: &Inspected<'_>| collect(i, Target::Anomalies).iter().any(|(_, v)| v == "too-many-args");
        let full = Inspected::new(head, "/f", Some(form.as_bytes()));
        assert!(anomaly(&full));
        assert_eq!(full.parsed().len(), 1, "the query, read in full; the body was cut short");
        assert_eq!((full.parsed()[0].whole.split, full.parsed()[0].args), (Split::Query, 600));
        // The query known with its 600 arguments: not read, yet counted.
        let known =
            Inspected::read(head, "/f", Some(form.as_bytes()), |w| (w.split == Split::Query).then_some(600));
        assert!(anomaly(&known));
        assert!(!collect(&known, Target::Args).iter().any(|(n, _)| n.starts_with("query:")));
        assert_eq!(collect(&known, Target::Body).len(), 1, "the body past the limit, whole");
        // Known, but with more arguments than fit beside what was read: read.
        let p = parts(&format!("/f?{query}"), &[("cookie", "a=1")]);
        let head = (&p.method, &p.uri, &p.headers);
        let over = Inspected::read(head, "/f", None, |w| (w.split == Split::Query).then_some(MAX_ARGS + 1));
        assert_eq!(collect(&over, Target::Args).len(), 600);
        let cookies = Inspected::read(head, "/f", None, |w| (w.split == Split::Cookies).then_some(0));
        assert!(collect(&cookies, Target::Cookies).is_empty());
        assert_eq!(collect(&cookies, Target::Args).len(), 600);
    }

    /// The anomalies as they were found before [`Framing`]: a lookup per
    /// header that matters.
    fn anomalies_by_lookup(uri: &Uri, headers: &HeaderMap) -> Vec<&'static str> {
        let mut found = Vec::new();
        let count = |name| headers.get_all(name).iter().count();
        match count(HOST) {
            0 if uri.authority().is_none() => found.push("missing-host"),
            0 | 1 => {}
            _ => found.push("duplicate-host"),
        }
        let lengths: Vec<&[u8]> = headers.get_all(CONTENT_LENGTH).iter().map(|v| v.as_bytes()).collect();
        if lengths.len() > 1 {
            found.push("duplicate-content-length");
        }
        if lengths.iter().any(|v| v.is_empty() || !v.iter().all(u8::is_ascii_digit)) {
            found.push("invalid-content-length");
        }
        let codings: Vec<&[u8]> = headers.get_all(TRANSFER_ENCODING).iter().map(|v| v.as_bytes()).collect();
        if !codings.is_empty() {
            if !lengths.is_empty() {
                found.push("content-length-and-transfer-encoding");
            }
            let last = codings.last().and_then(|v| v.rsplit(|&b| b == b',').next()).map(|c| c.trim_ascii());
            if !last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
                found.push("transfer-encoding-not-chunked");
            }
        }
        if count(CONTENT_TYPE) > 1 {
            found.push("duplicate-content-type");
        }
        if headers.len() > MANY_HEADERS {
            found.push("too-many-headers");
        }
        if headers.values().any(|v| v.len() > LONG_HEADER) {
            found.push("oversized-header");
        }
        if uri.path_and_query().is_some_and(|pq| pq.as_str().len() > LONG_URI) {
            found.push("oversized-uri");
        }
        found
    }

    proptest::proptest! {
        /// One pass over the headers finds what a lookup per header did.
        #[test]
        fn framing_finds_what_lookups_found(
            headers in proptest::collection::vec((0..6usize, 0..8usize), 0..8),
            authority in proptest::bool::ANY,
            long_uri in proptest::bool::ANY,
        ) {
            let names = ["host", "content-length", "transfer-encoding", "content-type", "x-other", "cookie"];
            let values = ["1", "", "12a", "chunked", "gzip, chunked", "chunked, gzip", " Chunked ", "text/plain"];
            let path = if long_uri { format!("/{}", "a".repeat(LONG_URI)) } else { "/p".to_owned() };
            let uri: Uri = if authority { format!("http://h{path}") } else { path }.parse().unwrap();
            let mut map = HeaderMap::new();
            for &(n, v) in &headers {
                map.append(HeaderName::from_static(names[n]), HeaderValue::from_static(values[v]));
            }
            if headers.len() > 6 {
                map.append("x-big", HeaderValue::from_bytes(&vec![b'a'; LONG_HEADER + 1]).unwrap());
            }
            let mut framing = Framing::default();
            for (n, v) in &map {
                framing.see(n, v);
            }
            proptest::prop_assert_eq!(framing.anomalies(&uri, map.len()), anomalies_by_lookup(&uri, &map));
            proptest::prop_assert_eq!(framing.content_type, map.get(CONTENT_TYPE).map(|v| v.as_bytes()));
        }
    }
}
