//! Fuzz target `frame`: a client's bytes through ws-transport's frame parser and message reassembler.
//!
//! Input: byte 0 picks the limits, byte 1 how the rest is cut into reads, the rest is what the client sends.
//! Checked: nothing panics; no message exceeds the size limit; text is valid UTF-8; pings carry at most 125 bytes;
//! close codes are ones a peer may send; while decoding, the decoder always asks for more bytes than it holds
//! (so it never stalls on a read it has); and cutting the bytes into other reads changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_transport::fuzzing::{FrameEvent, FrameStream};

/// Message size limits to pick from: degenerate, small, the control-frame size, and the server's default.
const SIZES: [usize; 6] = [0, 1, 16, 125, 1000, 64 * 1024];
/// Fragment caps to pick from, up to the server's default.
const FRAGMENTS: [u32; 4] = [1, 2, 5, 128];

fuzz_target!(|input: &[u8]| {
    let [limits, cut, stream @ ..] = input else { return };
    let max_message_size = SIZES[usize::from(limits % 6)];
    let max_fragments = FRAGMENTS[usize::from(limits / 6 % 4)];

    let whole = decode(stream, max_message_size, max_fragments, &mut |_| stream.len());
    // Reads of 1 to 32 bytes, or of varying sizes from a small generator seeded by `cut`.
    let mut state = u32::from(*cut) | 1;
    let mut next_read = |_: usize| -> usize {
        if cut & 0x80 == 0 {
            usize::from(cut % 32) + 1
        } else {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 40) as usize + 1
        }
    };
    let pieces = decode(stream, max_message_size, max_fragments, &mut next_read);
    assert_eq!(pieces, whole, "the same bytes in other reads decode differently");
});

/// Decodes `stream` fed in reads of the sizes `read_size` gives, checking each event.
fn decode(
    stream: &[u8],
    max_message_size: usize,
    max_fragments: u32,
    read_size: &mut dyn FnMut(usize) -> usize,
) -> Vec<FrameEvent> {
    let mut decoder = FrameStream::new(max_message_size, max_fragments);
    let mut events = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() && !decoder.has_ended() {
        let (read, after) = rest.split_at(read_size(rest.len()).min(rest.len()));
        rest = after;
        let seen = events.len();
        decoder.feed(read, &mut events);
        for event in &events[seen..] {
            check(event, max_message_size);
        }
        if decoder.wants() > 0 {
            assert!(
                decoder.wants() > decoder.buffered(),
                "the decoder wants {} bytes and already holds {}",
                decoder.wants(),
                decoder.buffered()
            );
        }
    }
    events
}

fn check(event: &FrameEvent, max_message_size: usize) {
    match event {
        FrameEvent::Text(text) => {
            assert!(text.len() <= max_message_size, "text of {} bytes", text.len());
            assert!(std::str::from_utf8(text).is_ok(), "text is not UTF-8: {text:?}");
        }
        FrameEvent::Binary(data) => assert!(data.len() <= max_message_size, "binary of {} bytes", data.len()),
        FrameEvent::Ping(payload) => assert!(payload.len() <= 125, "ping of {} bytes", payload.len()),
        FrameEvent::Close(Some(code)) => {
            assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999), "close code {code}");
        }
        FrameEvent::Failed { code, reason } => {
            assert!(matches!(code, 1002 | 1007 | 1009), "failed with {code}");
            assert!(reason.len() <= 123, "reason of {} bytes", reason.len());
        }
        _ => {}
    }
}
