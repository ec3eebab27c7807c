//! Incremental decoding of `Transfer-Encoding: chunked` bodies
//! (RFC 9112 §7.1), for the upstream answers gatehouse reads itself.
//!
//! The decoder is fed whatever has arrived and hands out data as soon as it
//! is there, without copying it (each piece is split off the read buffer).
//! It is strict where leniency has been used for smuggling: sizes are hex
//! digits only, lines end in CRLF. Chunk extensions are skipped and
//! trailers are read and dropped, both bounded.

use bytes::{Buf, Bytes, BytesMut};

use crate::syntax::{hex_digit as hex, is_tchar};

/// Longest chunk-size line extension accepted, in bytes.
const MAX_EXTENSION: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;
/// Most trailer fields accepted (as many as header fields in a head).
const MAX_TRAILER_FIELDS: usize = 100;

/// What one call to [`Decoder::step`] produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The next piece of the body.
    Data(Bytes),
    /// Everything buffered was consumed; read more and call again.
    NeedMore,
    /// The body (and its trailers) ended.
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ChunkedError {
    #[error("invalid chunked encoding: {0}")]
    Invalid(&'static str),
    #[error("chunk size does not fit in 64 bits")]
    TooLarge,
}

#[derive(Debug, Default)]
pub(crate) struct Decoder {
    state: State,
    /// Bytes seen in the current extension, or in all trailers.
    counted: usize,
    /// Trailer fields seen.
    fields: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size.
    Size {
        size: u64,
        digits: u32,
    },
    /// Whitespace after the size: more of it, `;` or CR may follow.
    SizeWs {
        size: u64,
    },
    /// In `;name=value` extensions, up to CR.
    Extension {
        size: u64,
    },
    /// After the size line's CR.
    SizeLf {
        size: u64,
    },
    /// Inside a chunk's data.
    Data {
        left: u64,
    },
    /// After a chunk's data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// In a trailer field's name, then (after `:`) its value.
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// After the final empty line's CR.
    EndLf,
    Done,
}

impl Default for State {
    fn default() -> Self {
        State::Size { size: 0, digits: 0 }
    }
}

impl Decoder {
    /// Consumes what it can from `buf`.
    pub(crate) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkedError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::Done),
                State::Data { left } => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data { left } };
                    return Ok(Step::Data(data));
                }
                _ => {
                    let Some(&byte) = buf.first() else { return Ok(Step::NeedMore) };
                    buf.advance(1);
                    self.byte(byte)?;
                }
            }
        }
    }

    /// Whether the body has been read to its end.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn byte(&mut self, b: u8) -> Result<(), ChunkedError> {
        use ChunkedError::Invalid;
        self.state = match self.state {
            State::Size { size, digits } => match (hex(b), digits) {
                (Some(v), _) => {
                    // Leading zeros are allowed; a value past 64 bits is not.
                    if size >> 60 != 0 {
                        return Err(ChunkedError::TooLarge);
                    }
                    State::Size { size: size << 4 | u64::from(v), digits: digits.saturating_add(1) }
                }
                (None, 0) => return Err(Invalid("chunk size missing")),
                (None, _) => self.after_size(size, b)?,
            },
            State::SizeWs { size } => self.after_size(size, b)?,
            State::Extension { size } => {
                self.counted += 1;
                if self.counted > MAX_EXTENSION {
                    return Err(Invalid("chunk extension too long"));
                }
                match b {
                    b'\r' => State::SizeLf { size },
                    b'\n' => return Err(Invalid("bare LF in chunk size line")),
                    _ => State::Extension { size },
                }
            }
            State::SizeLf { size } => match (b, size) {
                (b'\n', 0) => {
                    self.counted = 0;
                    State::TrailerStart
                }
                (b'\n', left) => State::Data { left },
                _ => return Err(Invalid("chunk size line not ended by CRLF")),
            },
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => {
                self.counted = 0;
                State::Size { size: 0, digits: 0 }
            }
            State::DataCr | State::DataLf => return Err(Invalid("chunk data not followed by CRLF")),
            State::TrailerStart if b == b'\r' => State::EndLf,
            State::TrailerStart | State::TrailerName | State::TrailerValue => {
                self.counted += 1;
                if self.counted > MAX_TRAILERS {
                    return Err(Invalid("trailers too long"));
                }
                self.trailer_byte(b)?
            }
            State::TrailerLf if b == b'\n' => {
                self.fields += 1;
                if self.fields > MAX_TRAILER_FIELDS {
                    return Err(Invalid("too many trailer fields"));
                }
                State::TrailerStart
            }
            State::EndLf if b == b'\n' => State::Done,
            State::TrailerLf | State::EndLf => return Err(Invalid("trailer line not ended by CRLF")),
            State::Data { .. } | State::Done => unreachable!("handled by step"),
        };
        Ok(())
    }
}

impl Decoder {
    /// A byte after a chunk size's digits: `BWS` then `;` extensions or the
    /// line's end (RFC 9112 §7.1.1); anything else is not a chunk size.
    fn after_size(&mut self, size: u64, b: u8) -> Result<State, ChunkedError> {
        Ok(match b {
            b'\r' => State::SizeLf { size },
            b' ' | b'\t' => {
                self.counted += 1;
                if self.counted > MAX_EXTENSION {
                    return Err(ChunkedError::Invalid("chunk extension too long"));
                }
                State::SizeWs { size }
            }
            b';' => {
                self.counted += 1;
                State::Extension { size }
            }
            _ => return Err(ChunkedError::Invalid("chunk size is not hexadecimal")),
        })
    }

    /// A byte of a trailer field line (RFC 9112 §7.1.2: a field line, as in
    /// a head: a token name, `:`, a value without control characters).
    fn trailer_byte(&self, b: u8) -> Result<State, ChunkedError> {
        use ChunkedError::Invalid;
        Ok(match (self.state, b) {
            (State::TrailerStart | State::TrailerName, b) if is_tchar(b) => State::TrailerName,
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerStart | State::TrailerName, _) => {
                return Err(Invalid("invalid trailer field name"))
            }
            (_, b'\r') => State::TrailerLf,
            (_, b'\n') => return Err(Invalid("bare LF in trailers")),
            (_, b) if (b < 0x20 && b != b'\t') || b == 0x7f => {
                return Err(Invalid("control character in a trailer value"))
            }
            _ => State::TrailerValue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `wire` in pieces cut at `cuts`; returns the body, or the error.
    fn decode(wire: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        let mut fed = 0;
        for p in points {
            buf.extend_from_slice(&wire[fed..p]);
            fed = p;
            loop {
                match d.step(&mut buf)? {
                    Step::Data(b) => body.extend_from_slice(&b),
                    Step::NeedMore => break,
                    Step::Done => return Ok((body, buf.len())),
                }
            }
        }
        Err(ChunkedError::Invalid("incomplete"))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let wire =
            b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n0\r\nExpires: x\r\n\r\nNEXT";
        let (body, left) = decode(wire, &[]).unwrap();
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(left, 4, "bytes after the body stay in the buffer");
    }

    #[test]
    fn rejects_malformed_framing() {
        let bad: [&[u8]; 13] = [
            b"\r\n",
            b"x\r\n",
            b"-1\r\n",
            b"4\nWiki\r\n0\r\n\r\n",
            b"4\r\nWikiX\r\n0\r\n\r\n",
            b"0\r\n\n",
            b"4;a\nb\r\nWiki\r\n0\r\n\r\n",
            // Trailers are field lines: a name, a colon, a clean value.
            b"0\r\nhello\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            b"0\r\nx y: v\r\n\r\n",
            b"0\r\nx: a\x01b\r\n\r\n",
            // Only whitespace, `;` or CR may follow a size.
            b"0 OK\r\n\r\n",
            b"4 x\r\nWiki\r\n0\r\n\r\n",
        ];
        for wire in bad {
            assert!(
                matches!(decode(wire, &[]), Err(ChunkedError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        assert_eq!(decode(b"10000000000000000\r\n", &[]), Err(ChunkedError::TooLarge));
        // Leading zeros do not count towards the size's width.
        assert_eq!(decode(b"00000000000000000002\r\nhi\r\n0\r\n\r\n", &[]).unwrap().0, b"hi");
        let many = format!("0\r\n{}\r\n", "a: 1\r\n".repeat(MAX_TRAILER_FIELDS + 1));
        assert!(decode(many.as_bytes(), &[]).is_err());
        let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(MAX_EXTENSION));
        assert!(decode(long_ext.as_bytes(), &[]).is_err());
        let long_trailer = format!("0\r\nx: {}\r\n\r\n", "y".repeat(MAX_TRAILERS));
        assert!(decode(long_trailer.as_bytes(), &[]).is_err());
    }

    fn encode(chunks: &[Vec<u8>], upper: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            let size = if upper { format!("{:X}", c.len()) } else { format!("{:x}", c.len()) };
            wire.extend_from_slice(size.as_bytes());
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    proptest! {
        #[test]
        fn any_chunking_cut_anywhere_decodes_to_the_body(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            upper in any::<bool>(),
        ) {
            let wire = encode(&chunks, upper);
            let (body, left) = decode(&wire, &cuts).unwrap();
            prop_assert_eq!(body, chunks.concat());
            prop_assert_eq!(left, 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(wire in prop::collection::vec(any::<u8>(), 0..200), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
            let _ = decode(&wire, &cuts);
        }
    }
}
