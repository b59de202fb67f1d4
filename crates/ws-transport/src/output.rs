//! `Output`: what a session has yet to write, as one stream of bytes: frames and frame heads copied together
//! into one buffer (corking), and large payloads left in the shared bytes they were queued as, written between
//! them with vectored writes instead of being copied. Idle, it holds nothing.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use crate::stream::Stream;

/// Payloads at least this long are written from their own bytes rather than copied into the buffer: below it,
/// a copy costs less than a slice of a vectored write.
pub(crate) const SPLICE_MIN: usize = 2048;

/// The most slices one vectored write carries.
const MAX_SLICES: usize = 64;

/// The bytes a session has yet to write.
#[derive(Debug, Default)]
pub(crate) struct Output {
    buf: Vec<u8>,
    /// How much of the stream is written.
    written: usize,
    /// Boxed: most sessions never have a payload large enough.
    spliced: Option<Box<Spliced>>,
}

/// Payloads that go between the buffer's bytes.
#[derive(Debug, Default)]
struct Spliced {
    /// Each payload and where in `buf` it goes (before the byte at that offset), in order.
    parts: Vec<(usize, Bytes)>,
    /// Their total length.
    len: usize,
}

impl Output {
    /// Bytes not written yet.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() + self.spliced.as_ref().map_or(0, |s| s.len) - self.written
    }

    /// The buffer, to append frames and frame heads to.
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Appends a payload (whose header is already in the buffer): copied when short, else kept as it is.
    pub(crate) fn payload(&mut self, payload: &Bytes, vectored: bool) {
        if payload.len() < SPLICE_MIN || !vectored {
            self.buf.extend_from_slice(payload);
            return;
        }
        let spliced = self.spliced.get_or_insert_with(Box::default);
        spliced.parts.push((self.buf.len(), payload.clone()));
        spliced.len += payload.len();
    }

    /// Appends encoded frames: taken over as the buffer when nothing is pending, so they are not copied again.
    pub(crate) fn frames(&mut self, frames: Vec<u8>) {
        if self.buf.is_empty() && self.spliced.is_none() {
            self.buf = frames;
            self.written = 0;
        } else {
            self.buf.extend_from_slice(&frames);
        }
    }

    /// Reserves room in the buffer for `additional` more bytes.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// Writes once (vectored when payloads are spliced in); returns how much was written. Once everything is
    /// written, the memory is given back.
    pub(crate) fn poll_write(&mut self, stream: &mut Stream, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let n = match &self.spliced {
            None => std::task::ready!(Pin::new(stream).poll_write(cx, &self.buf[self.written..]))?,
            Some(spliced) => {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let count = fill(&mut slices, &self.buf, &spliced.parts, self.written);
                std::task::ready!(Pin::new(stream).poll_write_vectored(cx, &slices[..count]))?
            }
        };
        self.written += n;
        if self.len() == 0 {
            *self = Self::default();
        }
        Poll::Ready(Ok(n))
    }
}

/// Fills `slices` with the stream from `written` on: the buffer's bytes with the parts between them.
fn fill<'a>(slices: &mut [IoSlice<'a>], buf: &'a [u8], parts: &'a [(usize, Bytes)], written: usize) -> usize {
    let mut count = 0;
    // Where the next segment starts in the stream, and in the buffer.
    let mut at = 0;
    let mut from = 0;
    let mut push = |segment: &'a [u8], at: &mut usize| {
        let end = *at + segment.len();
        if end > written && count < slices.len() {
            let skip = written.saturating_sub(*at);
            slices[count] = IoSlice::new(&segment[skip..]);
            count += 1;
        }
        *at = end;
    };
    for (offset, part) in parts {
        push(&buf[from..*offset], &mut at);
        push(part, &mut at);
        from = *offset;
    }
    push(&buf[from..], &mut at);
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(buf: &[u8], parts: &[(usize, Bytes)], written: usize) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let count = fill(&mut slices, buf, parts, written);
        slices[..count].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn payloads_go_between_the_buffers_bytes_from_where_writing_stopped() {
        let buf = b"ab|cd|e".to_vec();
        let parts = vec![(3, Bytes::from_static(b"XXXX")), (6, Bytes::from_static(b"YY"))];
        let whole = b"ab|XXXXcd|YYe".to_vec();
        for written in 0..=whole.len() {
            assert_eq!(stream_of(&buf, &parts, written), whole[written..], "from {written}");
        }
        assert_eq!(stream_of(b"", &[(0, Bytes::from_static(b"Z"))], 0), b"Z");
    }

    #[test]
    fn short_payloads_are_copied_and_long_ones_kept() {
        let mut out = Output::default();
        out.buf().extend_from_slice(b"h1");
        out.payload(&Bytes::from_static(b"short"), true);
        out.buf().extend_from_slice(b"h2");
        let long = Bytes::from(vec![7u8; SPLICE_MIN]);
        out.payload(&long, true);
        assert_eq!(out.len(), 9 + SPLICE_MIN);
        assert_eq!(out.buf, b"h1shorth2");
        assert_eq!(out.spliced.as_ref().map(|s| s.parts.len()), Some(1));
        let mut copied = Output::default();
        copied.payload(&long, false);
        assert!(copied.spliced.is_none(), "a stream without vectored writes gets copies");
    }
}
