//! WebSocket frames as the load generator and the reference server handle them: masked client frames built once
//! and patched in place, unmasked server frames, and a parser for frames in a read buffer.

use bytes::{BufMut, Bytes, BytesMut};

/// Opcode of a continuation frame.
pub(crate) const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub(crate) const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub(crate) const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub(crate) const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub(crate) const OP_PONG: u8 = 0xA;

/// The mask key of every frame the load generator sends. RFC 6455 wants an unpredictable key to protect
/// intermediaries; a benchmark on loopback has none, and a fixed key lets frames be encoded once and patched.
pub(crate) const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x8e];

/// Appends a frame header (FIN set) for `len` payload bytes; `masked` adds the mask bit and [`MASK`].
fn put_header(out: &mut Vec<u8>, opcode: u8, len: usize, masked: bool) {
    let mask_bit = if masked { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&MASK);
    }
}

/// Appends one masked client frame with `payload` to `out`.
pub(crate) fn put_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    put_header(out, opcode, payload.len(), true);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// Appends one unmasked server frame with `payload` to `out`.
pub(crate) fn put_server_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    put_header(out, opcode, payload.len(), false);
    out.extend_from_slice(payload);
}

/// One unmasked server frame with `payload`, encoded once to be shared by every recipient.
pub(crate) fn server_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut head = Vec::with_capacity(10);
    put_header(&mut head, opcode, payload.len(), false);
    let mut out = BytesMut::with_capacity(head.len() + payload.len());
    out.put_slice(&head);
    out.put_slice(payload);
    out.freeze()
}

/// A masked client frame encoded once, whose payload bytes are overwritten in place before each send.
#[derive(Debug, Clone)]
pub(crate) struct MaskedFrame {
    bytes: Vec<u8>,
    payload_at: usize,
}

impl MaskedFrame {
    /// A text frame carrying `payload`.
    pub(crate) fn text(payload: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(payload.len() + 14);
        put_masked(&mut bytes, OP_TEXT, payload);
        let payload_at = bytes.len() - payload.len();
        Self { bytes, payload_at }
    }

    /// Overwrites the payload bytes from offset `at` with `data`, masking them as the frame's key requires.
    pub(crate) fn patch(&mut self, at: usize, data: &[u8]) {
        let start = self.payload_at + at;
        for (i, b) in data.iter().enumerate() {
            self.bytes[start + i] = b ^ MASK[(at + i) % 4];
        }
    }

    /// The whole encoded frame.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A frame the parser found, as offsets into the buffer it parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameAt {
    /// The frame's opcode.
    pub(crate) opcode: u8,
    /// Whether FIN is set.
    pub(crate) fin: bool,
    /// Where the payload starts.
    pub(crate) payload_start: usize,
    /// Where the payload ends, which is where the frame ends.
    pub(crate) end: usize,
}

/// Why a server frame could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The server set the mask bit, which RFC 6455 forbids for server frames.
    MaskedServerFrame,
    /// A reserved bit was set.
    ReservedBits,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MaskedServerFrame => "the server sent a masked frame",
            Self::ReservedBits => "the server set a reserved bit",
        })
    }
}

/// Parses the unmasked server frame that starts at `buf[0]`; `Ok(None)` when it is not complete yet.
pub(crate) fn parse_server_frame(buf: &[u8]) -> Result<Option<FrameAt>, WireError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] & 0x70 != 0 {
        return Err(WireError::ReservedBits);
    }
    if buf[1] & 0x80 != 0 {
        return Err(WireError::MaskedServerFrame);
    }
    let (len, head) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(raw) as usize, 10)
        }
        126 | 127 => return Ok(None),
        short => (usize::from(short), 2),
    };
    let end = head + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(FrameAt { opcode: buf[0] & 0x0f, fin: buf[0] & 0x80 != 0, payload_start: head, end }))
}

/// Why a client frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFrameError {
    /// The client did not mask the frame.
    Unmasked,
    /// A reserved bit was set.
    ReservedBits,
    /// The frame is larger than the server takes.
    TooLarge,
}

/// Parses the masked client frame at `buf[0]` and unmasks its payload in place; `Ok(None)` when it is not
/// complete yet. Frames larger than `max` are refused.
pub(crate) fn parse_client_frame(buf: &mut [u8], max: usize) -> Result<Option<FrameAt>, ClientFrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] & 0x70 != 0 {
        return Err(ClientFrameError::ReservedBits);
    }
    if buf[1] & 0x80 == 0 {
        return Err(ClientFrameError::Unmasked);
    }
    let (len, head) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            (usize::try_from(u64::from_be_bytes(raw)).unwrap_or(usize::MAX), 10)
        }
        126 | 127 => return Ok(None),
        short => (usize::from(short), 2),
    };
    if len > max {
        return Err(ClientFrameError::TooLarge);
    }
    let payload_start = head + 4;
    let end = payload_start + len;
    if buf.len() < end {
        return Ok(None);
    }
    let mask = [buf[head], buf[head + 1], buf[head + 2], buf[head + 3]];
    fastwebsockets::unmask(&mut buf[payload_start..end], mask);
    Ok(Some(FrameAt { opcode: buf[0] & 0x0f, fin: buf[0] & 0x80 != 0, payload_start, end }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8], payload_at: usize) -> Vec<u8> {
        frame[payload_at..].iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]).collect()
    }

    #[test]
    fn masked_frames_patch_and_unmask_back() {
        for len in [6usize, 125, 126, 1000, 70_000] {
            let payload = vec![b'a'; len];
            let mut frame = MaskedFrame::text(&payload);
            frame.patch(3, b"xyz");
            let mut want = payload.clone();
            want[3..6].copy_from_slice(b"xyz");
            assert_eq!(unmask(frame.bytes(), frame.payload_at), want, "len {len}");
            assert_eq!(frame.bytes()[1] & 0x80, 0x80);
        }
    }

    #[test]
    fn server_frames_parse_back_at_every_length_form() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let payload = vec![7u8; len];
            let frame = server_frame(OP_TEXT, &payload);
            let at = parse_server_frame(&frame).unwrap().unwrap();
            assert_eq!((at.opcode, at.fin, at.end), (OP_TEXT, true, frame.len()));
            assert_eq!(&frame[at.payload_start..at.end], &payload[..]);
            assert_eq!(parse_server_frame(&frame[..frame.len() - 1]).unwrap(), None);
        }
    }

    #[test]
    fn client_frames_unmask_in_place() {
        for len in [0usize, 5, 125, 126, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut frame = Vec::new();
            put_masked(&mut frame, OP_BINARY, &payload);
            let at = parse_client_frame(&mut frame, 1 << 20).unwrap().unwrap();
            assert_eq!(&frame[at.payload_start..at.end], &payload[..], "len {len}");
            assert_eq!(at.end, frame.len());
        }
        let mut unmasked = server_frame(OP_TEXT, b"hi").to_vec();
        assert_eq!(parse_client_frame(&mut unmasked, 10), Err(ClientFrameError::Unmasked));
        let mut big = Vec::new();
        put_masked(&mut big, OP_TEXT, &[b'x'; 200]);
        assert_eq!(parse_client_frame(&mut big, 100), Err(ClientFrameError::TooLarge));
    }

    #[test]
    fn masked_server_frames_are_rejected() {
        let mut frame = Vec::new();
        put_masked(&mut frame, OP_TEXT, b"hi");
        assert_eq!(parse_server_frame(&frame), Err(WireError::MaskedServerFrame));
    }
}
