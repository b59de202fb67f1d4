//! `ChannelName`: a validated channel name, with its namespace and `#user` suffix.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;

/// A channel name that satisfies PROTOCOL.md: 1 to 255 bytes of
/// `A-Z a-z 0-9 _ - . : @ / = #`.
///
/// The part before the first `:` is the namespace; a name with no `:` is in the
/// default namespace (`""`). A name ending in `#<user_id>` is a user channel
/// that only that user may subscribe to.
///
/// Cloning is cheap: the name is shared behind an `Arc`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// Why a string is not a valid channel name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelNameError {
    /// The name is empty; send a name of at least one byte.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than 255 bytes; use a shorter name.
    #[error("channel name is longer than 255 bytes")]
    TooLong,
    /// The name holds a byte outside the allowed alphabet.
    #[error("channel name has a character outside A-Z a-z 0-9 _ - . : @ / = #")]
    BadCharacter,
}

impl ChannelName {
    /// Validates `name` and wraps it.
    ///
    /// # Errors
    /// [`ChannelNameError`] says which rule the name breaks.
    pub fn new(name: &str) -> Result<Self, ChannelNameError> {
        validate(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace: the part before the first `:`, or `""` for the default namespace.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map_or("", |(ns, _)| ns)
    }

    /// The user id after the last `#`, when the name is a user channel.
    #[must_use]
    pub fn user_suffix(&self) -> Option<&str> {
        self.0.rsplit_once('#').map(|(_, user)| user)
    }
}

/// Checks the channel name rules without allocating.
///
/// # Errors
/// [`ChannelNameError`] says which rule the name breaks.
pub fn validate(name: &str) -> Result<(), ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(ChannelNameError::TooLong);
    }
    if !name.bytes().all(is_channel_byte) {
        return Err(ChannelNameError::BadCharacter);
    }
    Ok(())
}

fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'/' | b'=' | b'#')
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for ChannelName {
    type Error = ChannelNameError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl serde::Serialize for ChannelName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_whole_alphabet() {
        let name = "AZaz09_-.:@/=#";
        assert_eq!(ChannelName::new(name).unwrap().as_str(), name);
    }

    #[test]
    fn rejects_each_broken_rule() {
        let cases = [
            ("", ChannelNameError::Empty),
            (&"a".repeat(256), ChannelNameError::TooLong),
            ("a b", ChannelNameError::BadCharacter),
            ("chat:é", ChannelNameError::BadCharacter),
            ("x\"y", ChannelNameError::BadCharacter),
            ("new\nline", ChannelNameError::BadCharacter),
        ];
        for (name, want) in cases {
            assert_eq!(ChannelName::new(name).unwrap_err(), want, "{name:?}");
        }
        assert!(ChannelName::new(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn namespace_and_user_suffix() {
        let table = [
            ("news", "", None),
            ("chat:room1", "chat", None),
            ("chat:a:b", "chat", None),
            ("inbox:private#42", "inbox", Some("42")),
            ("dm#alice", "", Some("alice")),
            ("a#b#c", "", Some("c")),
        ];
        for (name, ns, user) in table {
            let c = ChannelName::new(name).unwrap();
            assert_eq!(c.namespace(), ns, "{name}");
            assert_eq!(c.user_suffix(), user, "{name}");
        }
    }
}
