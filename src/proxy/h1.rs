//! gatehouse's own HTTP/1.1 exchange with plaintext upstreams, for requests
//! without a body (GET, HEAD, DELETE, … — most of a gateway's traffic).
//!
//! hyper's client connection runs as a task of its own, fed through a
//! channel, answering through a oneshot and streaming the body through
//! another channel: four hand-offs per exchange. Here the request's own
//! future writes the head and reads the answer on the pooled socket, and a
//! response that arrived whole (the usual case) returns its connection to
//! the pool before it is even forwarded. Requests with a body, upgrades and
//! TLS targets keep using hyper's client (see `client`).
//!
//! The response side follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and
//! 304; chunked when `Transfer-Encoding` ends in chunked; otherwise
//! `Content-Length` (conflicting values are refused); otherwise the body runs
//! to the end of the connection, which then is not reused.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{response, Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::chunked::{self, Decoder};
use super::client::ConnPool;

/// Most headers accepted in an upstream response (hyper's default too).
const MAX_HEADERS: usize = 100;
/// Largest response head accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// First read size; grows while reads fill the buffer.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 256 * 1024;

/// A plaintext connection to an upstream target, idle or in one exchange.
#[derive(Debug)]
pub(crate) struct Conn {
    io: TcpStream,
    /// Read but not yet consumed.
    buf: BytesMut,
    read_size: usize,
    /// The request head being written (kept for its capacity).
    out: Vec<u8>,
    /// Header names and value positions of the head being parsed (kept for
    /// its capacity).
    fields: Vec<(HeaderName, Range<usize>)>,
    pub(crate) since: Instant,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// Writing the request failed, so the upstream cannot have acted on it.
    Unsent(io::Error),
    /// The connection closed before any byte of an answer arrived: an idle
    /// connection the upstream was closing as the request went out, or a
    /// request it dropped.
    Closed,
    /// The upstream closed the connection or answered something that is not
    /// HTTP/1.1.
    Broken(String),
}

/// The head of a body-less request, borrowed from wherever the request is
/// kept (a `Request`, or the proxy's template for all attempts).
pub(crate) struct RequestHead<'a> {
    pub(crate) method: &'a Method,
    /// The request target in origin form (path and query).
    pub(crate) target: &'a str,
    pub(crate) headers: &'a HeaderMap,
    /// The `Host` to send when `headers` has none.
    pub(crate) host: Option<&'a str>,
}

impl<'a> RequestHead<'a> {
    /// The head of `req`, sent to `authority` unless it names its own host.
    pub(crate) fn of<B>(req: &'a http::Request<B>, authority: &'a http::uri::Authority) -> Self {
        RequestHead {
            method: req.method(),
            target: req.uri().path_and_query().map_or("/", |pq| pq.as_str()),
            headers: req.headers(),
            host: (!req.headers().contains_key(header::HOST)).then(|| authority.as_str()),
        }
    }
}

/// Where a connection goes back to once its exchange is over.
pub(crate) struct Home {
    pub(crate) pool: Arc<ConnPool>,
    pub(crate) max_idle: usize,
}

impl Conn {
    pub(crate) fn new(io: TcpStream) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            read_size: READ_MIN,
            out: Vec::new(),
            fields: Vec::new(),
            since: Instant::now(),
        }
    }

    /// Whether an idle connection can carry another request: nothing came
    /// in while it was idle (an end of stream or stray bytes would have made
    /// the socket readable). Costs no system call unless the socket is
    /// readable.
    pub(crate) fn is_usable(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness may be stale: look.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Sends a body-less `req` and reads the response head. A response whose
    /// body has arrived with it hands the connection back to `home` at once.
    #[allow(clippy::manual_async_fn, reason = "an `async fn` keeps by-value arguments twice in its state")]
    pub(crate) fn exchange<'a>(
        mut self,
        req: &'a RequestHead<'a>,
        home: Home,
    ) -> impl Future<Output = Result<Response<RawBody>, ExchangeError>> + Send + 'a {
        // An `async move` block, not an `async fn`: see `Connector::send`.
        async move {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            encode_head(req, &mut out);
            let written = self.io.write_all(&out).await;
            self.out = out;
            written.map_err(ExchangeError::Unsent)?;

            // Whether an informational (1xx) answer came first.
            let mut informed = false;
            let head = loop {
                // Parsed in a statement of its own, so that no temporary of
                // the parse lives across the read below (and in the state).
                let parsed = next_head(&mut self.buf, &mut self.fields, &mut informed)?;
                if let Some(head) = parsed {
                    break head;
                }
                let nothing_yet = self.buf.is_empty() && !informed;
                let n = match self.fill().await {
                    Ok(n) => n,
                    // Reset before answering: closed, as an end of stream.
                    Err(_) if nothing_yet => return Err(ExchangeError::Closed),
                    Err(e) => return Err(ExchangeError::Broken(e.to_string())),
                };
                if n == 0 && nothing_yet {
                    return Err(ExchangeError::Closed);
                }
                if n == 0 {
                    return Err(ExchangeError::Broken(
                        "upstream closed the connection in the response head".into(),
                    ));
                }
            };

            let framing = framing(req.method, head.parts.status, &head.body);
            let keep_alive = head.keep_alive && !matches!(framing, Framing::UntilClose);
            let mut body = RawBody { reading: None, whole: None };
            match framing {
                Framing::Length(n) if (self.buf.len() as u64) >= n => {
                    // The usual case: the whole answer is here.
                    let n = n as usize;
                    body.whole = (n > 0).then(|| self.buf.split_to(n).freeze());
                    self.finish(keep_alive, home);
                }
                Framing::Length(0) | Framing::Empty => self.finish(keep_alive, home),
                framing => body.reading = Some(Box::new(Reading { conn: self, framing, keep_alive, home })),
            }
            Ok(Response::from_parts(head.parts, body))
        }
    }

    /// Reads more into the buffer; 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let polled = pin!(self.io.read_buf(&mut self.buf)).poll(cx);
        if let Poll::Ready(Ok(n)) = polled {
            // A read that filled the room asks for a larger one next time.
            if n == room {
                self.read_size = (self.read_size * 2).min(READ_MAX);
            }
        }
        polled
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Ends an exchange: back to the pool if the connection can carry
    /// another (nothing unread is left over), closed otherwise.
    fn finish(mut self, keep_alive: bool, home: Home) {
        if keep_alive && self.buf.is_empty() {
            // A large body grew the buffer: an idle connection does not keep it.
            if self.buf.capacity() > 4 * READ_MIN {
                self.buf = BytesMut::new();
            }
            self.read_size = READ_MIN;
            self.since = Instant::now();
            home.pool.put_own(self, home.max_idle);
        }
    }
}

/// The final response head at the front of `buf`, consuming it and any
/// informational (1xx) heads before it; `None` until it has all arrived.
fn next_head(
    buf: &mut BytesMut,
    fields: &mut Vec<(HeaderName, Range<usize>)>,
    informed: &mut bool,
) -> Result<Option<Head>, ExchangeError> {
    while let Some(head) = parse_head(buf, fields)? {
        if !head.parts.status.is_informational() {
            return Ok(Some(head));
        }
        if head.parts.status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(ExchangeError::Broken("upstream switched protocols unasked".into()));
        }
        // 100 Continue, 103 Early Hints: the answer follows.
        *informed = true;
    }
    if buf.len() > MAX_HEAD {
        return Err(ExchangeError::Broken(format!("response head larger than {} KiB", MAX_HEAD / 1024)));
    }
    Ok(None)
}

/// What the bytes at the front of a connection's buffer give of a body.
enum Piece {
    Data(Bytes),
    End,
    NeedMore,
}

/// Takes the next piece of a body framed by `framing` from `buf`.
fn next_piece(framing: &mut Framing, buf: &mut BytesMut) -> Result<Piece, BodyError> {
    Ok(match framing {
        Framing::Empty | Framing::Length(0) => Piece::End,
        Framing::Length(left) if !buf.is_empty() => {
            let take = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
            *left -= take as u64;
            Piece::Data(buf.split_to(take).freeze())
        }
        Framing::Chunked(decoder) => match decoder.step(buf)? {
            chunked::Step::Data(data) => Piece::Data(data),
            chunked::Step::Done => Piece::End,
            chunked::Step::NeedMore => Piece::NeedMore,
        },
        Framing::UntilClose if !buf.is_empty() => Piece::Data(buf.split().freeze()),
        Framing::Length(_) | Framing::UntilClose => Piece::NeedMore,
    })
}

/// What the end of the connection means for a body still being read: its
/// end if it runs until close, otherwise a truncation.
fn at_close(framing: &Framing) -> Result<(), BodyError> {
    match framing {
        Framing::UntilClose => Ok(()),
        _ => Err(BodyError::Truncated),
    }
}

/// Reads a whole response to a `method` request from `wire`, the bytes an
/// upstream sent before closing, exactly as an exchange would: the status
/// and the body, or why the answer is refused. (The fuzz target compares
/// this with hyper's client.)
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn read_whole_response(method: &Method, wire: &[u8]) -> Result<(StatusCode, Vec<u8>), String> {
    let mut buf = BytesMut::from(wire);
    let head = next_head(&mut buf, &mut Vec::new(), &mut false)
        .map_err(|e| format!("{e:?}"))?
        .ok_or("the connection closed in the response head")?;
    let mut framing = framing(method, head.parts.status, &head.body);
    let mut body = Vec::new();
    loop {
        match next_piece(&mut framing, &mut buf).map_err(|e| e.to_string())? {
            Piece::Data(data) => body.extend_from_slice(&data),
            Piece::End => return Ok((head.parts.status, body)),
            Piece::NeedMore => {
                at_close(&framing).map_err(|e| e.to_string())?;
                return Ok((head.parts.status, body));
            }
        }
    }
}

/// A parsed response head.
struct Head {
    parts: response::Parts,
    keep_alive: bool,
    body: BodyHeaders,
}

/// Parses a response head from the front of `buf`, consuming it; `None`
/// until all of it has arrived.
fn parse_head(
    buf: &mut BytesMut,
    fields: &mut Vec<(HeaderName, Range<usize>)>,
) -> Result<Option<Head>, ExchangeError> {
    let broken = |what: String| ExchangeError::Broken(what);
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(broken(format!("invalid response head: {e}"))),
    };
    let code = resp.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| broken(format!("invalid status code {code}")))?;
    let version = if resp.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    // Names now; values as slices of the head once it is split off.
    let base = buf.as_ptr() as usize;
    fields.clear();
    let mut body = BodyHeaders::default();
    let mut connection = (false, false);
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| broken(format!("invalid header name {:?}", h.name)))?;
        // The headers that decide framing and reuse are read here, while
        // the names are at hand, rather than looked up afterwards.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            // Visible ASCII only, as `HeaderValue::to_str` has it: hyper
            // reads a framing value with other bytes (UTF-8 included) as
            // "not chunked", so such a value means different bodies to
            // different readers.
            let value = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))
                .ok_or_else(|| broken(format!("invalid value for header {name}")))?;
            if name == header::CONTENT_LENGTH {
                body.content_length(value)?;
            } else if name == header::TRANSFER_ENCODING {
                body.transfer_encoding(value)?;
            } else {
                for token in value.split(',').map(str::trim) {
                    connection.0 |= token.eq_ignore_ascii_case("close");
                    connection.1 |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
        }
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start..start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    // Room for what the gateway adds on the way out (`X-Request-Id`).
    let mut headers = HeaderMap::with_capacity(fields.len() + 2);
    for (name, range) in fields.drain(..) {
        let value = HeaderValue::from_maybe_shared(head.slice(range))
            .map_err(|_| broken(format!("invalid value for header {name}")))?;
        headers.append(name, value);
    }
    // Both framings at once may be a smuggling attempt (RFC 9112 §6.3):
    // refused, and the connection, whose state is unknown, is dropped.
    if body.chunked_last.is_some() && body.length.is_some() {
        return Err(broken("the response has both Content-Length and Transfer-Encoding".into()));
    }
    // HTTP/1.0 has no transfer codings: such framing is faulty (RFC 9112 §6.1).
    if body.chunked_last.is_some() && version == Version::HTTP_10 {
        return Err(broken("an HTTP/1.0 response with Transfer-Encoding".into()));
    }
    let keep_alive = match version {
        Version::HTTP_11 => !connection.0,
        _ => connection.1 && body.chunked_last.is_none(),
    };
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Head { parts, keep_alive, body }))
}

/// What a response head says about how its body is delimited.
#[derive(Debug, Default)]
struct BodyHeaders {
    /// `Some` when `Transfer-Encoding` is present: whether its last coding
    /// is chunked.
    chunked_last: Option<bool>,
    /// The agreed `Content-Length`, if any.
    length: Option<u64>,
}

impl BodyHeaders {
    /// One `Transfer-Encoding` value. Empty list elements (`chunked,`) are
    /// refused rather than skipped: readers disagree on whether such a body
    /// is chunked, and that disagreement is what smuggling feeds on.
    fn transfer_encoding(&mut self, value: &str) -> Result<(), ExchangeError> {
        let mut last = None;
        for coding in value.split(',').map(str::trim) {
            if coding.is_empty() {
                return Err(ExchangeError::Broken(format!("ambiguous Transfer-Encoding {value:?}")));
            }
            last = Some(coding);
        }
        if let Some(c) = last {
            self.chunked_last = Some(c.eq_ignore_ascii_case("chunked"));
        }
        Ok(())
    }

    /// One `Content-Length` value (a list of equal numbers is accepted).
    fn content_length(&mut self, value: &str) -> Result<(), ExchangeError> {
        for item in value.split(',').map(str::trim) {
            let n = (!item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()))
                .then(|| item.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| ExchangeError::Broken(format!("invalid Content-Length {item:?}")))?;
            if self.length.is_some_and(|l| l != n) {
                return Err(ExchangeError::Broken("conflicting Content-Length values".into()));
            }
            self.length = Some(n);
        }
        Ok(())
    }
}

/// How a response body is delimited.
#[derive(Debug)]
enum Framing {
    Empty,
    Length(u64),
    Chunked(Decoder),
    UntilClose,
}

fn framing(method: &Method, status: StatusCode, body: &BodyHeaders) -> Framing {
    if method == Method::HEAD || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Framing::Empty;
    }
    match (body.chunked_last, body.length) {
        // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
        (Some(true), _) => Framing::Chunked(Decoder::default()),
        (Some(false), _) | (None, None) => Framing::UntilClose,
        (None, Some(n)) => Framing::Length(n),
    }
}

/// Writes the request line and headers (origin form; `Host` from the
/// target when the request has none).
fn encode_head(req: &RequestHead<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = req.host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in req.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // A method that usually carries a body says it has none.
    let expects_body = matches!(*req.method, Method::POST | Method::PUT | Method::PATCH);
    if expects_body && !req.headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A response body read from a [`Conn`]: either already complete, or read
/// from the connection as the client takes it.
#[derive(Debug)]
pub(crate) struct RawBody {
    whole: Option<Bytes>,
    /// Boxed: only streamed bodies need it, and every response is moved
    /// through each layer on its way out.
    reading: Option<Box<Reading>>,
}

struct Reading {
    conn: Conn,
    framing: Framing,
    keep_alive: bool,
    home: Home,
}

impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading").field("framing", &self.framing).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("upstream closed the connection before the response body ended")]
    Truncated,
    #[error(transparent)]
    Chunked(#[from] chunked::ChunkedError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Reading {
    /// The next piece of the body, `None` at its end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        loop {
            match next_piece(&mut self.framing, &mut self.conn.buf)? {
                Piece::Data(data) => return Poll::Ready(Some(Ok(data))),
                Piece::End => return Poll::Ready(None),
                Piece::NeedMore => {}
            }
            let n = std::task::ready!(self.conn.poll_fill(cx))?;
            if n == 0 {
                return Poll::Ready(at_close(&self.framing).err().map(Err));
            }
        }
    }

    fn is_done(&self) -> bool {
        match &self.framing {
            Framing::Empty | Framing::Length(0) => true,
            Framing::Chunked(d) => d.is_done(),
            _ => false,
        }
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(data) = this.whole.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(reading) = this.reading.as_mut() else { return Poll::Ready(None) };
        let polled = std::task::ready!(reading.poll_next(cx));
        match polled {
            Some(Ok(data)) => {
                if reading.is_done() {
                    this.end();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            None => {
                this.end();
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                // The connection is in an unknown state: closed with the body.
                this.reading = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.whole.is_none() && self.reading.as_ref().is_none_or(|r| r.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.whole, self.reading.as_deref()) {
            (Some(data), _) => SizeHint::with_exact(data.len() as u64),
            (None, Some(Reading { framing: Framing::Length(n), .. })) => SizeHint::with_exact(*n),
            (None, Some(r)) if r.is_done() => SizeHint::with_exact(0),
            (None, Some(_)) => SizeHint::default(),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

impl RawBody {
    /// The body has been read to its end: the connection may go back.
    fn end(&mut self) {
        if let Some(r) = self.reading.take() {
            r.conn.finish(r.keep_alive, r.home);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, ExchangeError> {
        parse_head(&mut BytesMut::from(text), &mut Vec::new())
    }

    fn framing_of(method: Method, text: &str) -> Result<Framing, ExchangeError> {
        let h = head(text)?.expect("complete head");
        Ok(framing(&method, h.parts.status, &h.body))
    }

    #[test]
    fn heads_parse_with_their_headers_and_keep_alive() {
        let h = head("HTTP/1.1 201 Created\r\nA: 1\r\nb: two\r\nA: 3\r\n\r\nbody").unwrap().unwrap();
        assert_eq!(h.parts.status, StatusCode::CREATED);
        assert_eq!(h.parts.headers.get_all("a").iter().collect::<Vec<_>>(), ["1", "3"]);
        assert_eq!(h.parts.headers["b"], "two");
        assert!(h.keep_alive);
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: x, Close\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(head("HTTP/1.1 200 OK\r\nA: 1\r\n").unwrap().is_none(), "partial");
        assert!(head("HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 099 OK\r\n\r\n").is_err());
    }

    #[test]
    fn the_body_after_a_head_stays_in_the_buffer() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        parse_head(&mut buf, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        use Framing::*;
        let f = |m: Method, t: &str| framing_of(m, t).map_err(|_| ());
        assert!(matches!(f(Method::HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), Ok(Empty)));
        assert!(matches!(f(Method::GET, "HTTP/1.1 204 No Content\r\n\r\n"), Ok(Empty)));
        assert!(matches!(
            f(Method::GET, "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
            Ok(Empty)
        ));
        assert!(matches!(f(Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), Ok(Length(5))));
        assert!(matches!(f(Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"), Ok(Length(5))));
        assert!(f(Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").is_err());
        assert!(f(Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n").is_err());
        assert!(f(Method::GET, "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n").is_err());
        assert!(f(
            Method::GET,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n"
        )
        .is_err());
        assert!(matches!(
            f(Method::GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Ok(UntilClose)
        ));
        assert!(matches!(f(Method::GET, "HTTP/1.1 200 OK\r\n\r\n"), Ok(UntilClose)));
        assert!(matches!(
            f(
                Method::GET,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Ok(Chunked(_))
        ));
        let both = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert!(
            matches!(both, Err(ExchangeError::Broken(_))),
            "a head with both framings is refused (RFC 9112 §6.3)"
        );
    }

    #[test]
    fn whole_responses_read_as_an_exchange_reads_them() {
        let read = |wire: &str| read_whole_response(&Method::GET, wire.as_bytes());
        let ok =
            |status: u16, body: &str| Ok((StatusCode::from_u16(status).unwrap(), body.as_bytes().to_vec()));
        assert_eq!(read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), ok(200, "hi"));
        assert_eq!(read("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n\r\nrest"), ok(201, "rest"));
        assert_eq!(
            read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
            ok(200, "hi")
        );
        assert!(read("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi").is_err());
        assert!(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi").is_err());
        assert!(read("HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err());
        assert!(read("HTTP/1.1 200 OK\r\nContent-Length: 2").is_err());
        // Found by the differential fuzz target (fuzz/fuzz_targets/http1_response.rs).
        assert!(read("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0;trailer: 1\r\n\r\n").is_err());
        assert!(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nhello\r\n0\r\n\r\n").is_err());
        assert!(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n").is_err());
        assert!(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n").is_err());
        // Not visible ASCII, though valid UTF-8: hyper reads it as not chunked.
        assert!(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: \u{6dc}x, chunked\r\n\r\n0\r\n\r\n").is_err());
        assert_eq!(
            read_whole_response(&Method::HEAD, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
            ok(200, "")
        );
    }

    #[test]
    fn heads_are_encoded_in_origin_form_with_a_host() {
        let mut headers = HeaderMap::new();
        headers.insert("x-one", HeaderValue::from_static("1"));
        let req = RequestHead {
            method: &Method::POST,
            target: "/a/b?c=d",
            headers: &headers,
            host: Some("127.0.0.1:9000"),
        };
        let mut out = Vec::new();
        encode_head(&req, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a/b?c=d HTTP/1.1\r\nhost: 127.0.0.1:9000\r\nx-one: 1\r\ncontent-length: 0\r\n\r\n"
        );
    }
}
