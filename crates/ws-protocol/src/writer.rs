//! `JsonWriter`: builds one flat JSON object into a buffer, with raw values spliced in.

use bytes::Bytes;

use crate::command::{CommandId, StreamPosition};

/// Writes `{"type":"...", ...}` field by field. Strings are escaped by
/// serde_json; `Json` payloads are copied verbatim, never re-encoded.
pub(crate) struct JsonWriter {
    buf: Vec<u8>,
}

impl JsonWriter {
    /// Starts an object whose first field is `"type"`.
    pub(crate) fn object(kind: &str) -> Self {
        Self::object_with_capacity(kind, 96)
    }

    pub(crate) fn object_with_capacity(kind: &str, capacity: usize) -> Self {
        let mut w = Self { buf: Vec::with_capacity(capacity) };
        w.buf.extend_from_slice(b"{\"type\":");
        w.string(kind);
        w
    }

    fn key(&mut self, key: &str) {
        // Keys are field names of this protocol: plain ASCII, no escaping needed.
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Whether a string is written as it is, between quotes, with no escapes.
    pub(crate) fn is_plain(s: &str) -> bool {
        s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    }

    pub(crate) fn string(&mut self, s: &str) {
        if Self::is_plain(s) {
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        } else {
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.buf, s);
        }
    }

    pub(crate) fn str_field(&mut self, key: &str, value: &str) {
        self.key(key);
        self.string(value);
    }

    pub(crate) fn opt_str_field(&mut self, key: &str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(v) => self.string(v),
            None => self.buf.extend_from_slice(b"null"),
        }
    }

    pub(crate) fn u64_field(&mut self, key: &str, value: u64) {
        self.key(key);
        self.buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub(crate) fn bool_field(&mut self, key: &str, value: bool) {
        self.key(key);
        self.buf.extend_from_slice(if value { b"true" } else { b"false" });
    }

    pub(crate) fn raw_field(&mut self, key: &str, raw: &[u8]) {
        self.key(key);
        self.buf.extend_from_slice(raw);
    }

    pub(crate) fn id(&mut self, id: &CommandId) {
        self.key("id");
        match id {
            CommandId::Int(n) => self.buf.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
            CommandId::Str(s) => self.string(s),
        }
    }

    pub(crate) fn opt_id(&mut self, id: Option<&CommandId>) {
        if let Some(id) = id {
            self.id(id);
        }
    }

    pub(crate) fn position(&mut self, key: &str, pos: &StreamPosition) {
        self.key(key);
        self.buf.extend_from_slice(b"{\"epoch\":");
        self.string(&pos.epoch);
        self.buf.extend_from_slice(b",\"offset\":");
        self.buf.extend_from_slice(itoa::Buffer::new().format(pos.offset).as_bytes());
        self.buf.push(b'}');
    }

    /// Opens `"key":[`; the caller writes elements with [`Self::element`] and closes with [`Self::end_array`].
    pub(crate) fn begin_array(&mut self, key: &str) {
        self.key(key);
        self.buf.push(b'[');
    }

    /// Writes an array element, separated from the previous one.
    pub(crate) fn element(&mut self, first: bool, write: impl FnOnce(&mut Vec<u8>)) {
        if !first {
            self.buf.push(b',');
        }
        write(&mut self.buf);
    }

    pub(crate) fn end_array(&mut self) {
        self.buf.push(b']');
    }

    /// Escapes a string straight into an element buffer.
    pub(crate) fn write_string(buf: &mut Vec<u8>, s: &str) {
        let _ = serde_json::to_writer(buf, s);
    }

    /// Opens `"key":{`; the first field inside is written with [`Self::str_field_first`].
    pub(crate) fn begin_object(&mut self, key: &str) {
        self.key(key);
        self.buf.push(b'{');
    }

    /// Writes the first field of a nested object (no leading comma).
    pub(crate) fn str_field_first(&mut self, key: &str, value: &str) {
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.string(value);
    }

    pub(crate) fn end_object(&mut self) {
        self.buf.push(b'}');
    }

    pub(crate) fn finish(mut self) -> Bytes {
        self.buf.push(b'}');
        Bytes::from(self.buf)
    }
}
