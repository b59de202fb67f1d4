//! `Decoder`: turns the bytes a client sends into whole messages and control frames, enforcing every
//! per-message limit; no IO.
//!
//! Each limit is checked as soon as the bytes that break it are in, so a bad peer costs little:
//! - reserved bits, unknown opcodes, unmasked frames and fragmented or oversized control frames are refused from
//!   the first two bytes of the frame (1002);
//! - a message over the size limit, counted across all its fragments, is refused from its frame header,
//!   before its payload is read, so at most the limit is ever buffered (1009);
//! - a message with too many fragments is refused from the header of the fragment over the cap (1009: the
//!   message is too big to process, in frames rather than bytes);
//! - text is validated as it arrives, fragment by fragment, so a sequence that can never become valid UTF-8
//!   fails at once; at the last fragment the text must also end on a whole character (1007).
//!
//! Frames are decoded from whatever buffer the caller read into (the session reads into a buffer of the
//! thread's). What must outlive one read, the start of a frame whose end has not arrived and a fragmented
//! message being put together, the decoder keeps in one box, so an idle connection's decoder is one pointer.

use bytes::{Buf, BytesMut};

use crate::frame::{
    is_valid_close_code, unmask, Header, Prefix, MAX_CONTROL_PAYLOAD, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING,
    OP_PONG, OP_TEXT,
};

/// The per-message limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The largest message, in bytes, across all fragments.
    pub(crate) max_message_size: usize,
    /// The most fragments in one message.
    pub(crate) max_fragments: u32,
}

/// One thing the client sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A whole text message, valid UTF-8.
    Text(BytesMut),
    /// A whole binary message.
    Binary(BytesMut),
    /// A ping, with its payload to send back in the pong.
    Ping(BytesMut),
    /// A pong.
    Pong,
    /// A close frame, with its code when it had one.
    Close(Option<u16>),
}

/// Why the connection must be failed: each maps to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A protocol error (1002), with a short reason.
    Protocol(&'static str),
    /// Text that is not valid UTF-8 (1007).
    InvalidUtf8,
    /// A message over a limit (1009), with a short reason.
    TooBig(&'static str),
}

impl Violation {
    /// The close code to send.
    pub(crate) fn code(self) -> u16 {
        match self {
            Self::Protocol(_) => ws_protocol::close::PROTOCOL_ERROR,
            Self::InvalidUtf8 => ws_protocol::close::INVALID_PAYLOAD,
            Self::TooBig(_) => ws_protocol::close::TOO_BIG,
        }
    }

    /// The close reason to send.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Protocol(reason) | Self::TooBig(reason) => reason,
            Self::InvalidUtf8 => "text is not valid utf-8",
        }
    }
}

/// What [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A message or control frame; call again, more may be buffered.
    Frame(Incoming),
    /// A fragment was taken in; call again.
    Fragment,
    /// The buffer must hold at least this many bytes before anything more can be decoded.
    NeedMore(usize),
}

/// A fragmented message being put together.
#[derive(Debug)]
struct Partial {
    text: bool,
    buf: BytesMut,
    fragments: u32,
    /// How much of `buf` is known to be valid UTF-8 (text only).
    utf8_valid: usize,
}

/// Decodes one connection's client frames. Idle, it holds nothing.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    pending: Option<Box<Pending>>,
}

/// What a decoder keeps from one read to the next.
#[derive(Debug, Default)]
struct Pending {
    /// The start of a frame whose end has not arrived.
    carry: BytesMut,
    /// How many bytes `carry` must hold before decoding can go on.
    want: usize,
    /// A fragmented message being put together.
    partial: Option<Partial>,
    /// Payload bytes still to skip (while discarding after our close).
    skip: u64,
}

impl Decoder {
    fn pending(&mut self) -> &mut Pending {
        self.pending.get_or_insert_with(Box::default)
    }

    fn partial(&self) -> Option<&Partial> {
        self.pending.as_ref().and_then(|p| p.partial.as_ref())
    }

    /// Takes the start of a frame kept from earlier reads, and how many bytes it must grow to before decoding
    /// can go on (an empty buffer when there is none). Give it back with [`Self::keep`].
    pub(crate) fn take_carry(&mut self) -> (BytesMut, usize) {
        match &mut self.pending {
            Some(p) => (std::mem::take(&mut p.carry), p.want),
            None => (BytesMut::new(), 0),
        }
    }

    /// Keeps what is left of `buf` after decoding (the start of a frame that must grow to `want` bytes) for the
    /// next read; when nothing is left and no message is in progress, the decoder holds nothing.
    pub(crate) fn keep(&mut self, buf: BytesMut, want: usize) {
        if buf.is_empty() {
            if let Some(p) = &mut self.pending {
                p.carry = BytesMut::new();
                if p.partial.is_none() && p.skip == 0 {
                    self.pending = None;
                }
            }
            return;
        }
        let pending = self.pending();
        pending.carry = buf;
        pending.want = want;
    }

    /// Decodes the next frame from the front of `buf`, consuming it.
    ///
    /// # Errors
    /// A [`Violation`] when the client broke the protocol or a limit; the connection must then be failed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Decoded, Violation> {
        let Some(prefix) = Prefix::parse(buf) else { return Ok(Decoded::NeedMore(2)) };
        Self::check_prefix(&prefix)?;
        let Some(header) = Header::parse(buf) else { return Ok(Decoded::NeedMore(prefix.header_len())) };
        self.check_header(&header, limits)?;
        // The checks above bound the payload by the message size limit (or 125 for control frames).
        let payload_len = usize::try_from(header.payload_len).map_err(|_| Violation::TooBig("message too big"))?;
        let total = header.header_len + payload_len;
        if buf.len() < total {
            return Ok(Decoded::NeedMore(total));
        }
        buf.advance(header.header_len);
        let mut payload = buf.split_to(payload_len);
        // Every frame that got here is masked (`check_prefix`).
        let ascii = header.mask.is_some_and(|mask| unmask(&mut payload, mask));
        self.take(&header, payload, ascii)
    }

    /// Checks what the first two bytes say.
    fn check_prefix(p: &Prefix) -> Result<(), Violation> {
        if p.rsv != 0 {
            return Err(Violation::Protocol("reserved bits set"));
        }
        if !matches!(p.opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
            return Err(Violation::Protocol("unknown opcode"));
        }
        // fastwebsockets 0.10 does not check the mask bit; RFC 6455 section 5.1 requires it of clients.
        if !p.masked {
            return Err(Violation::Protocol("client frame is not masked"));
        }
        if p.opcode & 0x8 != 0 {
            if !p.fin {
                return Err(Violation::Protocol("fragmented control frame"));
            }
            // fastwebsockets 0.10 checks this for pings only.
            if usize::from(p.len_code) > MAX_CONTROL_PAYLOAD {
                return Err(Violation::Protocol("control frame over 125 bytes"));
            }
        }
        Ok(())
    }

    /// Checks the whole header against the message in progress and the limits.
    fn check_header(&self, h: &Header, limits: &Limits) -> Result<(), Violation> {
        if h.is_control() {
            return Ok(());
        }
        let (so_far, fragments) = match (self.partial(), h.opcode) {
            (None, OP_CONTINUATION) => return Err(Violation::Protocol("continuation frame without a message")),
            (Some(_), OP_TEXT | OP_BINARY) => {
                return Err(Violation::Protocol("new message before the previous one finished"))
            }
            (None, _) => (0, 1),
            (Some(p), _) => (p.buf.len(), p.fragments.saturating_add(1)),
        };
        // fastwebsockets 0.10 limits single frames only; the limit here covers the whole message.
        let limit = limits.max_message_size as u64;
        if h.payload_len > limit || so_far as u64 + h.payload_len > limit {
            return Err(Violation::TooBig("message too big"));
        }
        // fastwebsockets 0.10 has no fragment cap; empty fragments would otherwise cost work for nothing.
        if fragments > limits.max_fragments {
            return Err(Violation::TooBig("message has too many fragments"));
        }
        Ok(())
    }

    /// Takes in a frame whose header passed the checks; `ascii` when its payload is known to be all ASCII.
    fn take(&mut self, h: &Header, payload: BytesMut, ascii: bool) -> Result<Decoded, Violation> {
        let incoming = match h.opcode {
            OP_PING => Incoming::Ping(payload),
            OP_PONG => Incoming::Pong,
            OP_CLOSE => Incoming::Close(parse_close(&payload)?),
            OP_CONTINUATION => return self.continue_message(h.fin, &payload),
            opcode => {
                let text = opcode == OP_TEXT;
                if h.fin {
                    if text && !ascii && std::str::from_utf8(&payload).is_err() {
                        return Err(Violation::InvalidUtf8);
                    }
                    if text {
                        Incoming::Text(payload)
                    } else {
                        Incoming::Binary(payload)
                    }
                } else {
                    // A buffer of its own: `payload` may share a buffer of the thread's, which must not be held.
                    let buf = BytesMut::from(&payload[..]);
                    let mut partial = Partial { text, buf, fragments: 1, utf8_valid: 0 };
                    if text {
                        check_utf8_prefix(&mut partial)?;
                    }
                    self.pending().partial = Some(partial);
                    return Ok(Decoded::Fragment);
                }
            }
        };
        Ok(Decoded::Frame(incoming))
    }

    fn continue_message(&mut self, fin: bool, payload: &[u8]) -> Result<Decoded, Violation> {
        let Some(partial) = self.pending.as_mut().and_then(|p| p.partial.as_mut()) else {
            return Err(Violation::Protocol("continuation frame without a message"));
        };
        partial.buf.extend_from_slice(payload);
        partial.fragments += 1;
        // fastwebsockets 0.10 checks UTF-8 only on whole frames; a message's text is checked across fragments here.
        if partial.text {
            check_utf8_prefix(partial)?;
        }
        if !fin {
            return Ok(Decoded::Fragment);
        }
        let Some(partial) = self.pending.as_mut().and_then(|p| p.partial.take()) else {
            return Ok(Decoded::Fragment);
        };
        if partial.text {
            if partial.utf8_valid != partial.buf.len() {
                // The text ends in the middle of a character.
                return Err(Violation::InvalidUtf8);
            }
            return Ok(Decoded::Frame(Incoming::Text(partial.buf)));
        }
        Ok(Decoded::Frame(Incoming::Binary(partial.buf)))
    }

    /// After our close frame: skips whatever the client sends until its close frame, without checking or
    /// buffering payloads. Returns `Ok(Some(code))` at the client's close, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// When the bytes cannot be framed at all; the connection should just be dropped.
    pub(crate) fn discard(&mut self, buf: &mut BytesMut) -> Result<Option<Option<u16>>, ()> {
        if let Some(p) = &mut self.pending {
            p.partial = None;
        }
        loop {
            let skip = self.pending.as_ref().map_or(0, |p| p.skip);
            if skip > 0 {
                let n = usize::try_from(skip).unwrap_or(usize::MAX).min(buf.len());
                buf.advance(n);
                self.pending().skip -= n as u64;
                if skip > n as u64 {
                    return Ok(None);
                }
            }
            let Some(header) = Header::parse(buf) else { return Ok(None) };
            if header.payload_len > i64::MAX as u64 {
                return Err(());
            }
            if header.opcode == OP_CLOSE && header.payload_len <= MAX_CONTROL_PAYLOAD as u64 {
                let total = header.header_len + header.payload_len as usize;
                if buf.len() < total {
                    return Ok(None);
                }
                buf.advance(header.header_len);
                let mut payload = buf.split_to(header.payload_len as usize);
                if let Some(mask) = header.mask {
                    unmask(&mut payload, mask);
                }
                let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                return Ok(Some(code));
            }
            buf.advance(header.header_len);
            if header.payload_len > 0 {
                self.pending().skip = header.payload_len;
            }
        }
    }
}

/// Validates the text received so far, failing on anything that cannot become valid UTF-8 whatever follows.
fn check_utf8_prefix(partial: &mut Partial) -> Result<(), Violation> {
    match std::str::from_utf8(&partial.buf[partial.utf8_valid..]) {
        Ok(_) => partial.utf8_valid = partial.buf.len(),
        // An incomplete character at the end may be completed by the next fragment.
        Err(e) if e.error_len().is_none() => partial.utf8_valid += e.valid_up_to(),
        Err(_) => return Err(Violation::InvalidUtf8),
    }
    Ok(())
}

/// Reads a close frame's payload: nothing, or a valid code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<u16>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::Protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(Violation::Protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Violation::InvalidUtf8);
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_message_size: 1000, max_fragments: 4 };
    const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::frame::encode_header(&mut out, opcode, payload.len());
        if !fin {
            out[0] &= 0x7F;
        }
        out[1] |= 0x80;
        out.extend_from_slice(&MASK);
        let mut body = payload.to_vec();
        fastwebsockets::unmask(&mut body, MASK);
        out.extend_from_slice(&body);
        out
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Incoming>, Violation> {
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match decoder.decode(&mut buf, &LIMITS)? {
                Decoded::Frame(f) => out.push(f),
                Decoded::Fragment => {}
                Decoded::NeedMore(_) => return Ok(out),
            }
        }
    }

    #[test]
    fn whole_messages_and_control_frames_decode() {
        let mut bytes = frame(true, OP_TEXT, b"hello");
        bytes.extend(frame(true, OP_PING, b"p"));
        bytes.extend(frame(true, OP_BINARY, &[0, 1, 2]));
        bytes.extend(frame(true, OP_CLOSE, &[0x03, 0xE8, b'o', b'k']));
        let got = decode_all(&bytes).unwrap();
        assert_eq!(
            got,
            [
                Incoming::Text(BytesMut::from(&b"hello"[..])),
                Incoming::Ping(BytesMut::from(&b"p"[..])),
                Incoming::Binary(BytesMut::from(&[0u8, 1, 2][..])),
                Incoming::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn fragments_reassemble_with_control_frames_between() {
        let mut bytes = frame(false, OP_TEXT, b"he");
        bytes.extend(frame(true, OP_PONG, b""));
        bytes.extend(frame(false, OP_CONTINUATION, b"ll"));
        bytes.extend(frame(true, OP_CONTINUATION, b"o"));
        let got = decode_all(&bytes).unwrap();
        assert_eq!(got, [Incoming::Pong, Incoming::Text(BytesMut::from(&b"hello"[..]))]);
    }

    #[test]
    fn partial_input_asks_for_exactly_what_is_missing() {
        let bytes = frame(true, OP_TEXT, &[b'a'; 300]);
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::from(&bytes[..1]);
        assert_eq!(decoder.decode(&mut buf, &LIMITS), Ok(Decoded::NeedMore(2)));
        buf = BytesMut::from(&bytes[..3]);
        assert_eq!(decoder.decode(&mut buf, &LIMITS), Ok(Decoded::NeedMore(8)));
        buf = BytesMut::from(&bytes[..20]);
        assert_eq!(decoder.decode(&mut buf, &LIMITS), Ok(Decoded::NeedMore(308)));
    }

    #[test]
    fn protocol_errors_are_found_from_the_first_two_bytes() {
        let cases: [(&[u8], &str); 5] = [
            (&[0xC1, 0x80], "reserved bits set"),
            (&[0x83, 0x80], "unknown opcode"),
            (&[0x81, 0x05], "client frame is not masked"),
            (&[0x09, 0x80], "fragmented control frame"),
            (&[0x8A, 0x80 | 126], "control frame over 125 bytes"),
        ];
        for (bytes, reason) in cases {
            let err = decode_all(bytes).unwrap_err();
            assert_eq!((err.code(), err.reason()), (1002, reason));
        }
    }

    #[test]
    fn message_size_counts_every_fragment_before_the_payload_arrives() {
        let mut bytes = frame(false, OP_BINARY, &[0; 600]);
        // Only the next header: the payload never needs to arrive.
        bytes.extend(&frame(true, OP_CONTINUATION, &[0; 600])[..8]);
        assert_eq!(decode_all(&bytes), Err(Violation::TooBig("message too big")));
        // A single frame over the limit fails from its header alone.
        let header = &frame(true, OP_TEXT, &[b'a'; 1001])[..8];
        assert_eq!(decode_all(header), Err(Violation::TooBig("message too big")));
    }

    #[test]
    fn fragment_cap_is_enforced() {
        let mut bytes = frame(false, OP_TEXT, b"a");
        for _ in 0..3 {
            bytes.extend(frame(false, OP_CONTINUATION, b"a"));
        }
        assert_eq!(decode_all(&bytes).unwrap(), []);
        bytes.extend(frame(true, OP_CONTINUATION, b"a"));
        assert_eq!(decode_all(&bytes), Err(Violation::TooBig("message has too many fragments")));
    }

    #[test]
    fn invalid_utf8_fails_fast_even_across_fragments() {
        assert_eq!(decode_all(&frame(true, OP_TEXT, &[0xC3, 0x28])), Err(Violation::InvalidUtf8));
        // A valid start of a 3-byte character, then a byte that cannot continue it.
        let mut bytes = frame(false, OP_TEXT, &[0xE2, 0x82]);
        assert_eq!(decode_all(&bytes).unwrap(), []);
        bytes.extend(frame(false, OP_CONTINUATION, &[0x28]));
        assert_eq!(decode_all(&bytes), Err(Violation::InvalidUtf8));
        // A character split across fragments is fine.
        let mut split = frame(false, OP_TEXT, &[0xE2, 0x82]);
        split.extend(frame(true, OP_CONTINUATION, &[0xAC]));
        assert_eq!(decode_all(&split).unwrap(), [Incoming::Text(BytesMut::from("€".as_bytes()))]);
        // Text that ends inside a character is invalid.
        let mut cut = frame(false, OP_TEXT, b"a");
        cut.extend(frame(true, OP_CONTINUATION, &[0xE2]));
        assert_eq!(decode_all(&cut), Err(Violation::InvalidUtf8));
    }

    #[test]
    fn fragment_sequencing_errors_are_protocol_errors() {
        assert_eq!(decode_all(&frame(true, OP_CONTINUATION, b"a")).unwrap_err().code(), 1002);
        let mut bytes = frame(false, OP_TEXT, b"a");
        bytes.extend(frame(true, OP_TEXT, b"b"));
        assert_eq!(decode_all(&bytes).unwrap_err().code(), 1002);
    }

    #[test]
    fn close_payloads_are_checked() {
        assert_eq!(decode_all(&frame(true, OP_CLOSE, b"")).unwrap(), [Incoming::Close(None)]);
        assert_eq!(decode_all(&frame(true, OP_CLOSE, &[3])).unwrap_err().code(), 1002);
        assert_eq!(decode_all(&frame(true, OP_CLOSE, &[0x03, 0xED])).unwrap_err().code(), 1002);
        assert_eq!(decode_all(&frame(true, OP_CLOSE, &[0x03, 0xE8, 0xFF])).unwrap_err().code(), 1007);
    }

    #[test]
    fn discard_skips_payloads_until_the_close() {
        let mut bytes = frame(true, OP_BINARY, &[7; 500]);
        bytes.extend(frame(true, OP_CLOSE, &[0x03, 0xE9]));
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::from(&bytes[..100]);
        assert_eq!(decoder.discard(&mut buf), Ok(None));
        assert!(buf.is_empty());
        let mut rest = BytesMut::from(&bytes[100..]);
        assert_eq!(decoder.discard(&mut rest), Ok(Some(Some(1001))));
    }
}
