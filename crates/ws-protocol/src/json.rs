//! `Json`: an already-validated JSON text held as shared bytes, and the depth check.

use std::fmt;

use bytes::Bytes;
use simd_json::Node;

use crate::error::DecodeError;

/// The deepest nesting of arrays and objects accepted in a JSON value: a text
/// given to [`Json::parse`], or a field of a command frame (the frame's own
/// top-level object does not count, so every [`Json`] fits in a `publish`).
///
/// Deeper input is refused with [`DecodeError::TooDeep`] before anything walks
/// it recursively, so a hostile frame cannot exhaust a thread's stack.
pub const MAX_DEPTH: usize = 64;

/// One JSON value as UTF-8 text, known to be valid.
///
/// It is the `data` of publications and echoes: decoded once from the client's
/// frame and spliced verbatim into every frame that carries it, so fan-out never
/// re-encodes it. Cloning is cheap (it shares the bytes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(Bytes);

impl Json {
    /// The JSON `null`.
    #[must_use]
    pub fn null() -> Self {
        Self(Bytes::from_static(b"null"))
    }

    /// Validates `text` as one JSON value no deeper than [`MAX_DEPTH`].
    ///
    /// # Errors
    /// [`DecodeError::NotJson`] or [`DecodeError::TooDeep`].
    pub fn parse(text: impl Into<Bytes>) -> Result<Self, DecodeError> {
        let text = text.into();
        let mut scratch = text.to_vec();
        let tape = simd_json::to_tape(&mut scratch).map_err(|e| parse_error(&e))?;
        check_depth(&tape.0)?;
        Ok(Self(text))
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
        // Raw values need serde_json's deserializer; simd-json has no raw-value support.
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(Self(Bytes::from(raw.get().to_owned())))
    }
}

/// Maps a simd-json failure: its own depth limit (1024) trips before
/// [`check_depth`] can run on very deep input, and that is still [`DecodeError::TooDeep`].
pub(crate) fn parse_error(e: &simd_json::Error) -> DecodeError {
    match e.error() {
        simd_json::ErrorType::DepthLimitExceeded => DecodeError::TooDeep,
        _ => DecodeError::NotJson,
    }
}

/// Refuses tapes that nest arrays or objects deeper than [`MAX_DEPTH`], without recursion.
pub(crate) fn check_depth(tape: &[Node<'_>]) -> Result<(), DecodeError> {
    // `ends` holds, for each open container, the tape index just past its last node.
    let mut ends = [0usize; MAX_DEPTH];
    let mut depth = 0usize;
    for (i, node) in tape.iter().enumerate() {
        while depth > 0 && ends[depth - 1] <= i {
            depth -= 1;
        }
        if let Node::Array { count, .. } | Node::Object { count, .. } = node {
            if depth == MAX_DEPTH {
                return Err(DecodeError::TooDeep);
            }
            ends[depth] = i + count + 1;
            depth += 1;
        }
    }
    Ok(())
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
