//! `scan`: one pass over a client's command frame that validates it as JSON (RFC 8259) and captures each
//! top-level field's raw text, allocating nothing.
//!
//! Why not serde_json for this: it is correct but walks a long string byte by byte in eight-byte words and
//! through its visitor machinery, which made decoding the larger part of the hub's cost per message. Here the
//! common bytes of a string (printable ASCII, no quote, no backslash) are skipped in two vectorized passes,
//! and only what is left (escapes, non-ASCII text) is looked at byte by byte.
//!
//! What it accepts is exactly what serde_json accepts with [`crate::json::check`] after it: RFC 8259 JSON,
//! UTF-8 (checked here, so the input need not be a `str`), no `\u` escape that is half of a surrogate pair.
//! Nesting is not limited while scanning (there is no recursion to protect), but the depth of every value is
//! reported so the caller can refuse what is deeper than [`crate::MAX_DEPTH`].

use crate::error::DecodeError;

/// A frame's top-level object, scanned: each field's key (raw, with its quotes) and value (raw).
pub(crate) struct Object<'a> {
    text: &'a [u8],
    pos: usize,
    first: bool,
}

/// A top-level member: its key and its value's raw text and depth.
pub(crate) struct Member<'a> {
    /// The key's raw text, quotes included.
    pub(crate) key: &'a [u8],
    /// The value's raw text.
    pub(crate) value: &'a [u8],
    /// How deeply the value nests (0 for a scalar, 1 for `[]`).
    pub(crate) depth: usize,
}

/// What a frame's text is, when it is not an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotObject {
    /// Not JSON at all.
    NotJson,
    /// JSON of another type, nesting this deep.
    Other { depth: usize },
}

impl<'a> Object<'a> {
    /// Starts scanning `text`, which must be a JSON object with nothing but whitespace around it.
    pub(crate) fn new(text: &'a [u8]) -> Result<Self, NotObject> {
        let mut scanner = Scanner { text, pos: 0 };
        scanner.ws();
        if scanner.peek() == Some(b'{') {
            return Ok(Self { text, pos: scanner.pos + 1, first: true });
        }
        match scanner.value() {
            Ok(depth) => {
                scanner.ws();
                if scanner.pos == text.len() {
                    Err(NotObject::Other { depth })
                } else {
                    Err(NotObject::NotJson)
                }
            }
            Err(NotJson) => Err(NotObject::NotJson),
        }
    }

    /// The next member, `None` after the last one (when the object and the text end properly).
    ///
    /// # Errors
    /// When the text is not JSON (from here on); the caller must not use members it got before as a command.
    pub(crate) fn next_member(&mut self) -> Result<Option<Member<'a>>, DecodeError> {
        let mut s = Scanner { text: self.text, pos: self.pos };
        s.ws();
        if self.first {
            self.first = false;
            if s.peek() == Some(b'}') {
                s.pos += 1;
                return s.end().map(|()| None);
            }
        } else {
            match s.peek() {
                Some(b',') => {
                    s.pos += 1;
                    s.ws();
                }
                Some(b'}') => {
                    s.pos += 1;
                    return s.end().map(|()| None);
                }
                _ => return Err(DecodeError::NotJson),
            }
        }
        let key_start = s.pos;
        if s.peek() != Some(b'"') {
            return Err(DecodeError::NotJson);
        }
        s.string()?;
        let key = &self.text[key_start..s.pos];
        s.ws();
        s.expect(b':')?;
        s.ws();
        let value_start = s.pos;
        let depth = s.value()?;
        let value = &self.text[value_start..s.pos];
        self.pos = s.pos;
        Ok(Some(Member { key, value, depth }))
    }
}

/// The one error of scanning: the text is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotJson;

impl From<NotJson> for DecodeError {
    fn from(_: NotJson) -> Self {
        DecodeError::NotJson
    }
}

/// Validates `text` as one JSON value with nothing but whitespace around it; returns how deeply it nests.
pub(crate) fn value(text: &[u8]) -> Result<usize, NotJson> {
    let mut s = Scanner { text, pos: 0 };
    s.ws();
    let depth = s.value()?;
    s.ws();
    if s.pos == text.len() {
        Ok(depth)
    } else {
        Err(NotJson)
    }
}

/// Whether a byte ends a string's plain run: a quote, a backslash, a control character or non-ASCII.
fn special(b: u8) -> bool {
    SPECIAL[usize::from(b)]
}

/// [`special`] as a table: one load per byte on the byte-by-byte paths.
static SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b == b'"' as usize || b == b'\\' as usize || b < 0x20 || b >= 0x80;
        b += 1;
    }
    table
};

/// How many bytes at the start of `s` are plain string text.
///
/// Two passes that are each cheaper than one that checks every rule per byte: memchr (vectorized, with the
/// CPU's widest instructions) finds the next quote or backslash, then one maximum over the bytes before it (a
/// reduction the compiler vectorizes) says whether any is a control character or non-ASCII: less 0x20, wrapping,
/// printable ASCII is below 0x60 and everything else above. Only then is the run looked at byte by byte.
fn plain_len(s: &[u8]) -> usize {
    // Keys and most short values end within a few bytes: look at those one by one before paying for a call.
    const SHORT: usize = 24;
    if let Some(n) = s.iter().take(SHORT).position(|&b| special(b)) {
        return n;
    }
    let end = memchr::memchr2(b'"', b'\\', s).unwrap_or(s.len());
    if s[..end].iter().fold(0u8, |hi, &b| hi.max(b.wrapping_sub(0x20))) < 0x60 {
        return end;
    }
    s.iter().position(|&b| special(b)).unwrap_or(s.len())
}

/// What an open container is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Array,
    Object,
}

/// The open containers around the value being scanned: the first 64 levels in a word's bits, deeper ones (only
/// ever in input that will be refused as too deep) in a vector.
struct Stack {
    bits: u64,
    len: usize,
    deep: Vec<Open>,
}

impl Stack {
    fn push(&mut self, open: Open) {
        if self.len < 64 {
            let bit = 1u64 << self.len;
            self.bits = if open == Open::Object { self.bits | bit } else { self.bits & !bit };
        } else {
            self.deep.push(open);
        }
        self.len += 1;
    }

    fn top(&self) -> Option<Open> {
        match self.len {
            0 => None,
            n if n <= 64 => Some(if self.bits & (1 << (n - 1)) != 0 { Open::Object } else { Open::Array }),
            _ => self.deep.last().copied(),
        }
    }

    fn pop(&mut self) {
        if self.len > 64 {
            self.deep.pop();
        }
        self.len -= 1;
    }
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), NotJson> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    /// After the top-level object's `}`: only whitespace may follow.
    fn end(&mut self) -> Result<(), DecodeError> {
        self.ws();
        if self.pos == self.text.len() {
            Ok(())
        } else {
            Err(DecodeError::NotJson)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), NotJson> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), NotJson> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(NotJson),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(NotJson);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(NotJson);
            }
        }
        Ok(())
    }

    /// Four hex digits of a `\u` escape.
    fn hex4(&mut self) -> Result<u16, NotJson> {
        let digits = self.text.get(self.pos..self.pos + 4).ok_or(NotJson)?;
        let mut unit = 0u16;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or(NotJson)?;
            // At most four hex digits: fits in 16 bits.
            unit = unit << 4 | v as u16;
        }
        self.pos += 4;
        Ok(unit)
    }

    /// A string, from its opening quote to just past its closing one.
    fn string(&mut self) -> Result<(), NotJson> {
        self.pos += 1;
        loop {
            self.pos += plain_len(&self.text[self.pos..]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                        Some(b'u') => {
                            self.pos += 1;
                            match self.hex4()? {
                                // A high surrogate must be followed at once by an escaped low one.
                                0xD800..=0xDBFF => {
                                    if self.text.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                        return Err(NotJson);
                                    }
                                    self.pos += 2;
                                    if !(0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                        return Err(NotJson);
                                    }
                                }
                                0xDC00..=0xDFFF => return Err(NotJson),
                                _ => {}
                            }
                        }
                        _ => return Err(NotJson),
                    }
                }
                Some(b) if b >= 0x80 => {
                    // A run of non-ASCII bytes holds whole characters only, or it is not UTF-8.
                    let run =
                        self.text[self.pos..].iter().position(|&b| b < 0x80).unwrap_or(self.text.len() - self.pos);
                    std::str::from_utf8(&self.text[self.pos..self.pos + run]).map_err(|_| NotJson)?;
                    self.pos += run;
                }
                // A control character, or the end of the text.
                _ => return Err(NotJson),
            }
        }
    }

    /// One value, nested ones and all, without recursion; returns how deeply it nests.
    fn value(&mut self) -> Result<usize, NotJson> {
        let mut stack = Stack { bits: 0, len: 0, deep: Vec::new() };
        let mut depth = 0;
        loop {
            // A value is expected here.
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    stack.push(Open::Object);
                    depth = depth.max(stack.len);
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        stack.pop();
                    } else {
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    stack.push(Open::Array);
                    depth = depth.max(stack.len);
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        stack.pop();
                    } else {
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return Err(NotJson),
            }
            // A value ended: close what it ends, or go on to the next element.
            loop {
                let Some(open) = stack.top() else { return Ok(depth) };
                self.ws();
                match (self.peek(), open) {
                    (Some(b','), Open::Array) => {
                        self.pos += 1;
                        break;
                    }
                    (Some(b','), Open::Object) => {
                        self.pos += 1;
                        self.ws();
                        self.key()?;
                        break;
                    }
                    (Some(b']'), Open::Array) | (Some(b'}'), Open::Object) => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => return Err(NotJson),
                }
            }
        }
    }

    /// A member's key and its colon.
    fn key(&mut self) -> Result<(), NotJson> {
        if self.peek() != Some(b'"') {
            return Err(NotJson);
        }
        self.string()?;
        self.ws();
        self.expect(b':')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_runs_stop_at_every_special_byte_wherever_it_is() {
        for at in 0..150 {
            for special in [b'"', b'\\', 0x1f, 0x00, 0x80, 0xff] {
                let mut text = vec![b'a'; 150];
                text[at] = special;
                assert_eq!(plain_len(&text), at, "{special:#x} at {at}");
            }
        }
        assert_eq!(plain_len(&[b' '; 133]), 133);
        assert_eq!(plain_len(b"~"), 1);
        assert_eq!(plain_len(b"ab\x01cd\"e"), 2, "a control character before the quote");
    }

    #[test]
    fn values_and_their_depths() {
        for (text, depth) in [
            ("1", 0),
            ("-0.5e+3", 0),
            ("\"a\\u00e9\\ud83d\\ude00\"", 0),
            ("[]", 1),
            ("[[], {\"a\": [1, {}]}]", 4),
            (" {\"k\" : null , \"l\":true} ", 1),
        ] {
            assert_eq!(value(text.as_bytes()), Ok(depth), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(value(deep.as_bytes()), Ok(100));
        for bad in [
            "",
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "[\"\t\"]",
            "tru",
            "[1] 2",
            "{1:2}",
        ] {
            assert_eq!(value(bad.as_bytes()), Err(NotJson), "{bad:?}");
        }
        assert_eq!(value(b"\"\xc3\xa9\""), Ok(0));
        assert_eq!(value(b"\"\xc3\""), Err(NotJson), "a cut character");
        assert_eq!(value(b"\"\xed\xa0\x80\""), Err(NotJson), "an encoded surrogate");
    }
}
