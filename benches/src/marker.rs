//! The marker every published or echoed payload carries: sender, sequence number and send time, as fixed-width
//! hex in the `data` string, so that the load generator checks and times each delivery from the bytes alone.
//!
//! A payload's `data` is a JSON string `"SSSSQQQQQQTTTTTTTT..."`: the sender (4 hex digits), its sequence number
//! on that channel (6 hex digits, wrapping), and the send time in microseconds on the load generator's
//! monotonic clock (8 hex digits, wrapping), padded with `x` to the payload size. 20 bytes with its quotes, so a
//! "20 B message" is exactly the marker.

use std::sync::OnceLock;
use std::time::Instant;

use memchr::memmem;

/// Hex digits of the marker.
pub(crate) const MARKER_LEN: usize = 18;
/// The smallest `data` value in bytes: the marker and its quotes.
pub(crate) const MIN_DATA: usize = MARKER_LEN + 2;
/// Sequence numbers wrap at this mask (24 bits).
pub(crate) const SEQ_MASK: u32 = 0x00ff_ffff;

/// One payload's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    /// Which sender (connection index on the load generator) published it.
    pub(crate) sender: u32,
    /// The sender's sequence number on that channel, masked with [`SEQ_MASK`].
    pub(crate) seq: u32,
    /// The send time, microseconds on [`now_us`]'s clock, wrapping.
    pub(crate) sent_us: u32,
}

/// Microseconds since the first call in this process, on the monotonic clock, wrapping at 32 bits (71 minutes).
pub(crate) fn now_us() -> u32 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u32
}

/// Microseconds from `sent_us` to `received_us`; a wrapped clock still gives the right answer for gaps under
/// 71 minutes.
pub(crate) fn elapsed_us(sent_us: u32, received_us: u32) -> u64 {
    u64::from(received_us.wrapping_sub(sent_us))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
}

fn parse_hex(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u32::from(v))
    })
}

impl Marker {
    /// The marker's 18 hex digits.
    pub(crate) fn encode(self) -> [u8; MARKER_LEN] {
        let mut out = [0u8; MARKER_LEN];
        put_hex(&mut out[0..4], self.sender);
        put_hex(&mut out[4..10], self.seq & SEQ_MASK);
        put_hex(&mut out[10..18], self.sent_us);
        out
    }

    /// Reads a marker from the first 18 bytes of `digits`.
    pub(crate) fn decode(digits: &[u8]) -> Option<Self> {
        let digits = digits.get(..MARKER_LEN)?;
        Some(Self {
            sender: parse_hex(&digits[0..4])?,
            seq: parse_hex(&digits[4..10])?,
            sent_us: parse_hex(&digits[10..18])?,
        })
    }
}

/// A frame's marker: the digits after the first `"data":"`.
pub(crate) fn find_marker(payload: &[u8]) -> Option<Marker> {
    static FINDER: OnceLock<memmem::Finder<'static>> = OnceLock::new();
    let finder = FINDER.get_or_init(|| memmem::Finder::new(b"\"data\":\""));
    let at = finder.find(payload)? + 8;
    Marker::decode(&payload[at..])
}

/// The hub's per-channel `offset` in a `message` frame, if it has one.
pub(crate) fn find_offset(payload: &[u8]) -> Option<u64> {
    static FINDER: OnceLock<memmem::Finder<'static>> = OnceLock::new();
    let finder = FINDER.get_or_init(|| memmem::Finder::new(b"\"offset\":"));
    let at = finder.find(payload)? + 9;
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value = 0u64;
    let mut any = false;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// A JSON payload template with a marker in its `data`, and where the marker sits in it.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// The payload bytes, with a zero marker.
    pub(crate) payload: Vec<u8>,
    /// The marker's offset in the payload.
    pub(crate) marker_at: usize,
}

/// The `data` JSON string of `size` bytes (quotes included, at least [`MIN_DATA`]): a zero marker, then `x`s.
fn data_string(size: usize) -> Vec<u8> {
    let size = size.max(MIN_DATA);
    let mut data = Vec::with_capacity(size);
    data.push(b'"');
    data.extend_from_slice(&Marker { sender: 0, seq: 0, sent_us: 0 }.encode());
    data.resize(size - 1, b'x');
    data.push(b'"');
    data
}

impl Template {
    fn with_data(prefix: &str, data_size: usize) -> Self {
        let mut payload = prefix.as_bytes().to_vec();
        let marker_at = payload.len() + 1;
        payload.extend_from_slice(&data_string(data_size));
        payload.push(b'}');
        Self { payload, marker_at }
    }

    /// `{"type":"publish","channel":CHANNEL,"data":DATA}` with `data_size` bytes of data.
    pub(crate) fn publish(channel: &str, data_size: usize) -> Self {
        Self::with_data(&format!(r#"{{"type":"publish","channel":"{channel}","data":"#), data_size)
    }

    /// `{"type":"echo","data":DATA}` with `data_size` bytes of data.
    pub(crate) fn echo(data_size: usize) -> Self {
        Self::with_data(r#"{"type":"echo","data":"#, data_size)
    }
}

/// `{"type":"subscribe","channel":CHANNEL}`.
pub(crate) fn subscribe(channel: &str) -> Vec<u8> {
    format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_wrap() {
        let m = Marker { sender: 18_999, seq: SEQ_MASK, sent_us: u32::MAX };
        assert_eq!(Marker::decode(&m.encode()), Some(m));
        let wrapped = Marker { sender: 1, seq: SEQ_MASK + 2, sent_us: 5 };
        assert_eq!(Marker::decode(&wrapped.encode()).unwrap().seq, 1);
        assert_eq!(Marker::decode(b"zz"), None);
    }

    #[test]
    fn templates_have_the_asked_data_size_and_parse_back() {
        let mut t = Template::publish("room", 128);
        let m = Marker { sender: 3, seq: 9, sent_us: 77 };
        t.payload[t.marker_at..t.marker_at + MARKER_LEN].copy_from_slice(&m.encode());
        let v: serde_json::Value = serde_json::from_slice(&t.payload).unwrap();
        assert_eq!(v["data"].as_str().unwrap().len() + 2, 128);
        assert_eq!(find_marker(&t.payload), Some(m));
        assert_eq!(Template::echo(20).payload, br#"{"type":"echo","data":"000000000000000000"}"#.to_vec());
    }

    #[test]
    fn offsets_are_found_in_hub_messages_only() {
        assert_eq!(find_offset(br#"{"type":"message","channel":"r","offset":1234,"data":"x"}"#), Some(1234));
        assert_eq!(find_offset(br#"{"type":"publish","channel":"r","data":"x"}"#), None);
    }
}
