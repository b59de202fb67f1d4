//! `FrameStream`: the frame decoder driven as a session drives it, for the fuzz targets in `/fuzz` (feature `fuzzing`).
//!
//! The decoder's own types stay private to the crate; this one small surface lets the `frame` fuzz target feed it
//! a client's bytes in reads of any size and see what a session would act on. It follows the session's read loop:
//! frames are decoded until more bytes are needed; after a violation, or after the client's close, whatever
//! follows is skipped up to the client's close frame. It is for fuzzing only, not part of the supported API.

use bytes::{Bytes, BytesMut};

use crate::decoder::{Decoded, Decoder, Incoming, Limits};

/// What the session would act on, in the order the bytes produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameEvent {
    /// A whole text message.
    Text(Bytes),
    /// A whole binary message.
    Binary(Bytes),
    /// A ping, with the payload the pong carries back.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The client's close frame, with its code when it had one; what follows is skipped.
    Close(Option<u16>),
    /// The client broke the protocol or a limit: the session closes with this code and reason, and skips
    /// what follows.
    Failed {
        /// The close code sent.
        code: u16,
        /// The close reason sent.
        reason: &'static str,
    },
    /// While skipping: the client's close frame, with its code when it had one. The stream ends.
    ClosedWhileSkipping(Option<u16>),
    /// While skipping: bytes that cannot be framed. The session drops the connection; the stream ends.
    Unframeable,
}

/// Where a [`FrameStream`] is in the session's read loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Decoding frames.
    Open,
    /// Skipping up to the client's close frame.
    Skipping,
    /// Nothing more is read.
    Ended,
}

/// One connection's inbound byte stream, decoded as its session decodes it.
#[derive(Debug)]
pub struct FrameStream {
    decoder: Decoder,
    limits: Limits,
    /// The bytes taken in and not yet decoded or skipped (the decoder keeps them between reads).
    buffered: usize,
    /// How many bytes the buffer must hold before decoding can go on (0 before the first read).
    wants: usize,
    phase: Phase,
}

impl FrameStream {
    /// A stream with the transport's per-message limits: the largest message across its fragments, and the
    /// most fragments in one message.
    #[must_use]
    pub fn new(max_message_size: usize, max_fragments: u32) -> Self {
        Self {
            decoder: Decoder::default(),
            limits: Limits { max_message_size, max_fragments },
            buffered: 0,
            wants: 0,
            phase: Phase::Open,
        }
    }

    /// Takes in one read's worth of bytes and appends what they complete to `events`. As the session does, the
    /// start of a frame left over from earlier reads comes back from the decoder, the read goes after it, and
    /// what is left unfinished goes back to the decoder.
    pub fn feed(&mut self, bytes: &[u8], events: &mut Vec<FrameEvent>) {
        if self.phase == Phase::Ended {
            return;
        }
        let (mut buf, _) = self.decoder.take_carry();
        buf.extend_from_slice(bytes);
        let want = self.decode(&mut buf, events);
        self.buffered = buf.len();
        self.decoder.keep(buf, want);
    }

    /// Decodes what `buf` holds; returns how many bytes it must hold before decoding can go on.
    fn decode(&mut self, buf: &mut BytesMut, events: &mut Vec<FrameEvent>) -> usize {
        loop {
            match self.phase {
                Phase::Ended => return 0,
                Phase::Skipping => {
                    self.wants = 0;
                    match self.decoder.discard(buf) {
                        Ok(Some(code)) => {
                            events.push(FrameEvent::ClosedWhileSkipping(code));
                            self.phase = Phase::Ended;
                        }
                        Ok(None) => {}
                        Err(()) => {
                            events.push(FrameEvent::Unframeable);
                            self.phase = Phase::Ended;
                        }
                    }
                    return 0;
                }
                Phase::Open => match self.decoder.decode(buf, &self.limits) {
                    Ok(Decoded::Frame(incoming)) => {
                        let event = match incoming {
                            Incoming::Text(payload) => FrameEvent::Text(payload.freeze()),
                            Incoming::Binary(payload) => FrameEvent::Binary(payload.freeze()),
                            Incoming::Ping(payload) => FrameEvent::Ping(payload.freeze()),
                            Incoming::Pong => FrameEvent::Pong,
                            Incoming::Close(code) => {
                                self.phase = Phase::Skipping;
                                FrameEvent::Close(code)
                            }
                        };
                        events.push(event);
                    }
                    Ok(Decoded::Fragment) => {}
                    Ok(Decoded::NeedMore(n)) => {
                        self.wants = n;
                        return n;
                    }
                    Err(violation) => {
                        events.push(FrameEvent::Failed { code: violation.code(), reason: violation.reason() });
                        self.phase = Phase::Skipping;
                    }
                },
            }
        }
    }

    /// The bytes taken in and not yet decoded or skipped.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// While decoding frames: how many bytes the buffer must hold before decoding can go on; always more than
    /// [`Self::buffered`] once a read has been taken in, so no read is ever needed twice. 0 while skipping.
    #[must_use]
    pub fn wants(&self) -> usize {
        self.wants
    }

    /// Whether the stream has ended (the client's close arrived while skipping, or the bytes could not be framed).
    #[must_use]
    pub fn has_ended(&self) -> bool {
        self.phase == Phase::Ended
    }
}
