//! `Json`: an already-validated JSON text held as shared bytes, and the checks every such text passes.

use std::fmt;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::error::DecodeError;

/// The deepest nesting of arrays and objects accepted in a JSON value: a text
/// given to [`Json::parse`], or a field of a command frame (the frame's own
/// top-level object does not count, so every [`Json`] fits in a `publish`).
///
/// Deeper input is refused with [`DecodeError::TooDeep`]. Nothing in this crate walks a value recursively:
/// the scanner that validates commands and [`Json::parse`] keeps its open brackets in a bit stack, and serde_json
/// (for what it decodes) skips with an explicit stack.
pub const MAX_DEPTH: usize = 64;

/// One JSON value as UTF-8 text, known to be valid.
///
/// It is the `data` of publications and echoes: taken from the client's frame
/// byte for byte (numbers of any size or precision, escapes, key order and
/// whitespace inside the value are kept as sent) and spliced verbatim into every
/// frame that carries it, so fan-out never re-encodes it. Cloning is cheap (it
/// shares the bytes).
///
/// Valid means: RFC 8259 JSON, UTF-8, no `\u` escape that is half of a surrogate
/// pair, and no deeper than [`MAX_DEPTH`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(Bytes);

impl Json {
    /// The JSON `null`.
    #[must_use]
    pub fn null() -> Self {
        Self(Bytes::from_static(b"null"))
    }

    /// Validates `text` as one JSON value no deeper than [`MAX_DEPTH`], and keeps it as it is.
    ///
    /// # Errors
    /// [`DecodeError::NotJson`] or [`DecodeError::TooDeep`].
    pub fn parse(text: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let text = text.into();
        // One pass, without recursion: syntax, UTF-8, surrogates, and the depth.
        match crate::scan::value(&text) {
            Ok(depth) if depth > MAX_DEPTH => Err(DecodeError::TooDeep),
            Ok(_) => Ok(Self(text)),
            Err(_) => Err(DecodeError::NotJson),
        }
    }

    /// Takes a raw value that serde_json has already captured (and so validated as JSON text and UTF-8),
    /// checking only what that leaves open: depth and lone surrogate escapes. Cheaper than [`Json::parse`]
    /// for values cut out of a larger document.
    ///
    /// # Errors
    /// [`DecodeError::NotJson`] or [`DecodeError::TooDeep`].
    pub fn from_raw_value(raw: &RawValue) -> Result<Self, DecodeError> {
        check(raw.get().as_bytes())?;
        Ok(Self(Bytes::copy_from_slice(raw.get().as_bytes())))
    }

    /// Serializes any `Serialize` value.
    ///
    /// # Errors
    /// When the value's `Serialize` implementation fails (a map with non-string keys, say).
    pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(value).map(|v| Self(Bytes::from(v)))
    }

    /// Wraps text the caller has produced from a JSON serializer.
    pub(crate) fn from_trusted(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The JSON text.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The JSON text as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // The invariant of this type is valid JSON, which is valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("null")
    }

    /// The JSON text as shared bytes.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length of the JSON text in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty (never true for a valid value).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes the text into any `Deserialize` type.
    ///
    /// # Errors
    /// When the JSON does not fit `T`.
    pub fn decode<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_slice(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A raw value keeps the text as sent; serde_json validated it, the depth and surrogates are ours.
        let raw = Box::<RawValue>::deserialize(d)?;
        check(raw.get().as_bytes()).map_err(serde::de::Error::custom)?;
        Ok(Self(Bytes::from(raw.get().to_owned())))
    }
}

/// Checks what serde_json's validation of a raw value leaves open: nesting deeper than [`MAX_DEPTH`], and
/// `\u` escapes that are half of a surrogate pair (serde_json skips escapes without decoding them, and such a
/// string is not Unicode: many decoders refuse it). `text` must already be valid JSON syntax.
///
/// One pass, no recursion: strings are skipped, brackets counted.
pub(crate) fn check(text: &[u8]) -> Result<(), DecodeError> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'"' => i = skip_string(text, i + 1)?,
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// From just after an opening quote, returns the index of the closing quote, refusing lone surrogates.
fn skip_string(text: &[u8], mut i: usize) -> Result<usize, DecodeError> {
    // A high surrogate must be followed at once by a low one.
    let mut want_low = false;
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', text.get(i..).unwrap_or_default()).ok_or(DecodeError::NotJson)?;
        if want_low && at != i {
            return Err(DecodeError::NotJson);
        }
        if text[at] == b'"' {
            return if want_low { Err(DecodeError::NotJson) } else { Ok(at) };
        }
        if text.get(at + 1) != Some(&b'u') {
            if want_low {
                return Err(DecodeError::NotJson);
            }
            i = at + 2;
            continue;
        }
        let unit = hex4(text.get(at + 2..at + 6)).ok_or(DecodeError::NotJson)?;
        want_low = match (want_low, unit) {
            (false, 0xD800..=0xDBFF) => true,
            (true, 0xDC00..=0xDFFF) | (false, 0x0000..=0xD7FF | 0xE000..=0xFFFF) => false,
            _ => return Err(DecodeError::NotJson),
        };
        i = at + 6;
    }
}

fn hex4(digits: Option<&[u8]>) -> Option<u16> {
    let text = std::str::from_utf8(digits?).ok()?;
    u16::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_limit_is_exact() {
        assert!(Json::parse(nested(MAX_DEPTH)).is_ok());
        assert_eq!(Json::parse(nested(MAX_DEPTH + 1)), Err(DecodeError::TooDeep));
        let objects = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        assert_eq!(Json::parse(objects), Err(DecodeError::TooDeep));
    }

    #[test]
    fn siblings_do_not_add_depth() {
        let wide = format!("[{}]", vec![nested(MAX_DEPTH - 1); 50].join(","));
        assert!(Json::parse(wide).is_ok());
        let obj = r#"{"a":[[1]],"b":{"c":[2,{"d":3}]},"e":"x"}"#;
        assert!(Json::parse(obj).is_ok());
    }

    #[test]
    fn refuses_invalid_text() {
        for bad in ["", "{", "nul", "[1,]", "{\"a\"}", "\"\\x\""] {
            assert_eq!(Json::parse(bad), Err(DecodeError::NotJson), "{bad:?}");
        }
    }
}
