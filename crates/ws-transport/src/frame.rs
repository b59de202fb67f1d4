//! RFC 6455 frame headers: parsing client frames and encoding server frames, with no IO.
//!
//! Why not fastwebsockets' reader: fastwebsockets 0.10 parses the header but keeps the mask private (a
//! `Frame` does not say whether the client masked it, so unmasked client frames cannot be refused), does not
//! limit pong and close payloads to 125 bytes, checks its size limit per frame rather than per message, holds
//! an 8 KiB read buffer per connection from the start, and its `read_frame` is not cancel safe, so one task
//! could not select over reading, its queue and its timers. We parse the header here, in a few dozen lines,
//! and use fastwebsockets for what it does well: the upgrade handshake.

/// Continuation frame opcode.
pub(crate) const OP_CONTINUATION: u8 = 0x0;
/// Text frame opcode.
pub(crate) const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub(crate) const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub(crate) const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub(crate) const OP_PONG: u8 = 0xA;

/// The largest payload of a control frame (RFC 6455 section 5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest server frame header: 2 bytes, then an 8-byte length (server frames are not masked).
pub(crate) const MAX_SERVER_HEADER: usize = 10;

/// A client frame's header, as read off the wire and not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The FIN bit.
    pub(crate) fin: bool,
    /// The three reserved bits, in the low bits.
    pub(crate) rsv: u8,
    /// The 4-bit opcode.
    pub(crate) opcode: u8,
    /// The masking key, when the MASK bit is set.
    pub(crate) mask: Option<[u8; 4]>,
    /// The payload length the header declares.
    pub(crate) payload_len: u64,
    /// How many bytes the header itself takes.
    pub(crate) header_len: usize,
}

impl Header {
    /// Whether the opcode is a control opcode (close, ping, pong, or a reserved control opcode).
    pub(crate) fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// What can be told from a frame's first two bytes, before the extended length and mask have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    /// The FIN bit.
    pub(crate) fin: bool,
    /// The three reserved bits, in the low bits.
    pub(crate) rsv: u8,
    /// The 4-bit opcode.
    pub(crate) opcode: u8,
    /// The MASK bit.
    pub(crate) masked: bool,
    /// The 7-bit length code (126 and 127 announce an extended length).
    pub(crate) len_code: u8,
}

impl Prefix {
    /// Reads the first two bytes, or `None` when fewer have arrived.
    pub(crate) fn parse(buf: &[u8]) -> Option<Self> {
        let [b0, b1, ..] = *buf else { return None };
        Some(Self {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0xF,
            masked: b1 & 0x80 != 0,
            len_code: b1 & 0x7F,
        })
    }

    /// The whole header's length.
    pub(crate) fn header_len(&self) -> usize {
        let ext = match self.len_code {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if self.masked { 4 } else { 0 }
    }
}

impl Header {
    /// Reads a whole header, or `None` when it has not all arrived.
    pub(crate) fn parse(buf: &[u8]) -> Option<Self> {
        let prefix = Prefix::parse(buf)?;
        let header_len = prefix.header_len();
        let head = buf.get(..header_len)?;
        let (payload_len, mask_at) = match prefix.len_code {
            126 => (u64::from(u16::from_be_bytes([head[2], head[3]])), 4),
            127 => {
                let mut len = [0; 8];
                len.copy_from_slice(&head[2..10]);
                (u64::from_be_bytes(len), 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = prefix.masked.then(|| [head[mask_at], head[mask_at + 1], head[mask_at + 2], head[mask_at + 3]]);
        Some(Self { fin: prefix.fin, rsv: prefix.rsv, opcode: prefix.opcode, mask, payload_len, header_len })
    }
}

/// Unmasks a client frame's payload in place; returns whether it is all ASCII, which makes it valid UTF-8
/// without a second pass over it.
///
/// Ours rather than fastwebsockets' `unmask`: that one goes a byte or a word at a time on a build without its
/// SIMD feature, where this loop over eight-byte words compiles to vector instructions (a third of an
/// instruction per byte), and learning whether the text is ASCII comes free with it.
pub(crate) fn unmask(payload: &mut [u8], mask: [u8; 4]) -> bool {
    let key = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut high = 0u64;
    let mut words = payload.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let unmasked = u64::from_ne_bytes(bytes) ^ key;
        word.copy_from_slice(&unmasked.to_ne_bytes());
        high |= unmasked;
    }
    // The words were a multiple of four bytes long, so the mask lines up again at the rest's first byte.
    let mut rest = 0u8;
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
        rest |= *b;
    }
    high & 0x8080_8080_8080_8080 == 0 && rest < 0x80
}

/// Appends an unmasked, final frame header for a payload of `len` bytes.
pub(crate) fn encode_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    if len < 126 {
        // Fits in the 7-bit length field.
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a whole unmasked, final frame.
pub(crate) fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    encode_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with a code and a reason, the reason cut (on a character boundary) to fit the
/// 125-byte control payload.
pub(crate) fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    encode_header(out, OP_CLOSE, 2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

/// Whether a peer may send this close code (RFC 6455 section 7.4 and the IANA registry): 1004, 1005, 1006
/// and 1015 are never sent on the wire, and codes below 3000 that are not registered are invalid.
pub(crate) fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_encode_every_length_form() {
        for (len, want) in [(0usize, vec![0x81, 0]), (125, vec![0x81, 125]), (126, vec![0x81, 126, 0, 126])] {
            let mut out = Vec::new();
            encode_header(&mut out, OP_TEXT, len);
            assert_eq!(out, want);
        }
        let mut out = Vec::new();
        encode_header(&mut out, OP_BINARY, 70_000);
        assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn headers_parse_lengths_and_masks() {
        let buf = [0x81, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4];
        let h = Header::parse(&buf).unwrap();
        assert_eq!((h.fin, h.opcode, h.payload_len, h.header_len, h.mask), (true, OP_TEXT, 256, 8, Some([1, 2, 3, 4])));
        assert_eq!(Header::parse(&buf[..7]), None);
        let unmasked = Header::parse(&[0x09, 5]).unwrap();
        assert_eq!((unmasked.fin, unmasked.mask, unmasked.is_control()), (false, None, true));
        assert_eq!(Prefix::parse(&[0xF1, 0]).unwrap().rsv, 7);
    }

    #[test]
    fn unmasking_matches_fastwebsockets_and_tells_ascii() {
        for len in [0, 1, 3, 4, 15, 16, 17, 31, 64, 100] {
            let plain: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mask = [0x12, 0x34, 0x56, 0x78];
            let mut masked = plain.clone();
            fastwebsockets::unmask(&mut masked, mask);
            let mut ours = masked.clone();
            assert!(unmask(&mut ours, mask), "{len}");
            assert_eq!(ours, plain, "{len}");
            if len > 0 {
                let mut text = "é".repeat(len).into_bytes();
                fastwebsockets::unmask(&mut text, mask);
                assert!(!unmask(&mut text, mask), "{len}: not ASCII");
            }
        }
    }

    #[test]
    fn close_frames_cut_long_reasons_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let mut out = Vec::new();
        encode_close(&mut out, 1000, &reason);
        let payload = &out[2..];
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }

    #[test]
    fn close_codes_follow_the_registry() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 3000, 3999, 4000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}
