//! Envelopes: what nodes say to each other over Redis pub/sub.
//!
//! Every envelope is one JSON object with a format version `v`, a kind `k` and the origin node id `o`:
//! - `p`, a publication, written by the publish script so that its epoch `e` and offset `n` are the ones
//!   Redis assigned: `{"v":1,"k":"p","o":node,"e":epoch,"n":offset,"ev":event-or-null,"d":data}`;
//! - `b`, several publications of one channel that one script call made, at consecutive offsets from `n`:
//!   `{"v":1,"k":"b","o":node,"e":epoch,"n":first-offset,"ps":[{"ev":event-or-null,"d":data},...]}`;
//! - `j` / `l`, a subscriber joined or left a channel on the origin: `{"v":1,"k":"j","o":node,"c":client}`;
//! - `c`, a control command for every node: `{"v":1,"k":"c","o":node,"c":command}`.
//!
//! A node drops join/leave and control envelopes from itself (it applied them before sending), never
//! publications (every node, the origin too, delivers in the order Redis publishes). An envelope of another
//! version, or one that does not parse, is dropped and counted, so nodes of different versions can share a
//! Redis during a rolling upgrade.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use ws_core::{ConnId, Control};
use ws_protocol::{ClientInfo, Json};

/// The envelope format this node writes and reads.
pub(crate) const VERSION: u64 = 1;

/// The largest envelope a node reads; larger ones are dropped as oversized.
pub(crate) const MAX_ENVELOPE: usize = 16 * 1024 * 1024;

/// A decoded envelope.
#[derive(Debug)]
pub(crate) enum Envelope {
    /// Publications at consecutive offsets from `offset`: their events and data.
    Publications {
        epoch: String,
        offset: u64,
        items: Vec<(Option<String>, Json)>,
    },
    JoinLeave {
        joined: bool,
        client: ClientInfo,
    },
    Control(Control),
}

/// Why an envelope was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Not JSON, or not the shape its kind needs.
    Malformed,
    /// Over [`MAX_ENVELOPE`].
    Oversized,
    /// Another format version.
    UnknownVersion,
    /// A join/leave or control from this node.
    OwnEcho,
}

impl Dropped {
    pub(crate) const ALL: [Dropped; 4] = [Self::Malformed, Self::Oversized, Self::UnknownVersion, Self::OwnEcho];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Oversized => "oversized",
            Self::UnknownVersion => "unknown_version",
            Self::OwnEcho => "own_echo",
        }
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    v: u64,
    // Borrowed when the text has no escapes, owned otherwise: a `&str` could not hold a node id that JSON escapes
    // (a `"` or a `\`), and every envelope from that node would be dropped as malformed.
    #[serde(borrow)]
    k: Cow<'a, str>,
    #[serde(borrow)]
    o: Cow<'a, str>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    ev: Option<String>,
    #[serde(borrow, default)]
    d: Option<&'a RawValue>,
    #[serde(borrow, default)]
    c: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ps: Option<Vec<Part<'a>>>,
}

/// One publication of a `b` envelope.
#[derive(Deserialize)]
struct Part<'a> {
    #[serde(default)]
    ev: Option<String>,
    #[serde(borrow)]
    d: &'a RawValue,
}

/// Data that reached Redis was validated by its origin; checking it again keeps a forged envelope from
/// putting invalid JSON in front of clients. Parsing the envelope validated its syntax already, so only the
/// depth and surrogate checks are left.
fn data(d: &RawValue) -> Result<Json, Dropped> {
    Json::from_raw_value(d).map_err(|_| Dropped::Malformed)
}

/// Publications at consecutive offsets from `offset`, refused unless every offset fits in a `u64`, and the one
/// after the last too: the pub/sub task numbers them with `offset..`, which steps past the last. Redis numbers
/// from 1, so only a forged or corrupt envelope comes near the end of the range.
fn publications(epoch: String, offset: u64, items: Vec<(Option<String>, Json)>) -> Result<Envelope, Dropped> {
    if offset.checked_add(items.len() as u64).is_none() {
        return Err(Dropped::Malformed);
    }
    Ok(Envelope::Publications { epoch, offset, items })
}

/// A control command as it travels.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum WireControl {
    DisconnectUser { user_id: String, code: u16, reason: String },
    DisconnectConn { conn_id: String, code: u16, reason: String },
    // The frame travels as a string: an internally tagged enum cannot borrow raw JSON.
    SendToUser { user_id: String, frame: String },
    Broadcast { frame: String },
}

/// Decodes an envelope received from Redis; `node` is this node's id.
pub(crate) fn decode(payload: &[u8], node: &str) -> Result<Envelope, Dropped> {
    if payload.len() > MAX_ENVELOPE {
        return Err(Dropped::Oversized);
    }
    let raw: Raw<'_> = serde_json::from_slice(payload).map_err(|_| Dropped::Malformed)?;
    if raw.v != VERSION {
        return Err(Dropped::UnknownVersion);
    }
    match &*raw.k {
        "p" => {
            let (Some(epoch), Some(offset), Some(d)) = (raw.e, raw.n, raw.d) else { return Err(Dropped::Malformed) };
            publications(epoch, offset, vec![(raw.ev, data(d)?)])
        }
        "b" => {
            let (Some(epoch), Some(offset), Some(ps)) = (raw.e, raw.n, raw.ps) else { return Err(Dropped::Malformed) };
            if ps.is_empty() {
                return Err(Dropped::Malformed);
            }
            let items = ps.into_iter().map(|p| Ok((p.ev, data(p.d)?))).collect::<Result<_, Dropped>>()?;
            publications(epoch, offset, items)
        }
        "j" | "l" => {
            if raw.o == node {
                return Err(Dropped::OwnEcho);
            }
            let client: ClientInfo =
                serde_json::from_str(raw.c.ok_or(Dropped::Malformed)?.get()).map_err(|_| Dropped::Malformed)?;
            Ok(Envelope::JoinLeave { joined: raw.k == "j", client })
        }
        "c" => {
            if raw.o == node {
                return Err(Dropped::OwnEcho);
            }
            let c: WireControl =
                serde_json::from_str(raw.c.ok_or(Dropped::Malformed)?.get()).map_err(|_| Dropped::Malformed)?;
            let frame = Bytes::from;
            Ok(Envelope::Control(match c {
                WireControl::DisconnectUser { user_id, code, reason } => {
                    Control::DisconnectUser { user_id, code, reason }
                }
                WireControl::DisconnectConn { conn_id, code, reason } => Control::DisconnectConn {
                    conn_id: conn_id.parse::<ConnId>().map_err(|_| Dropped::Malformed)?,
                    code,
                    reason,
                },
                WireControl::SendToUser { user_id, frame: f } => Control::SendToUser { user_id, frame: frame(f) },
                WireControl::Broadcast { frame: f } => Control::Broadcast { frame: frame(f) },
            }))
        }
        _ => Err(Dropped::Malformed),
    }
}

/// The start of a publication envelope, up to the fields the publish script appends.
pub(crate) fn publication_head(node: &str) -> String {
    format!(r#"{{"v":{VERSION},"k":"p","o":{}"#, json_string(node))
}

/// The start of a batch envelope, up to the fields the publish script appends.
pub(crate) fn batch_head(node: &str) -> String {
    format!(r#"{{"v":{VERSION},"k":"b","o":{}"#, json_string(node))
}

/// A join or leave envelope.
pub(crate) fn join_leave(node: &str, joined: bool, client: &ClientInfo) -> String {
    let kind = if joined { "j" } else { "l" };
    let client = serde_json::to_string(client).unwrap_or_else(|_| "null".into());
    format!(r#"{{"v":{VERSION},"k":"{kind}","o":{},"c":{client}}}"#, json_string(node))
}

/// A control envelope.
pub(crate) fn control(node: &str, command: &Control) -> Option<String> {
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).ok();
    let body = match command {
        Control::DisconnectUser { user_id, code, reason } => serde_json::to_string(&WireControl::DisconnectUser {
            user_id: user_id.clone(),
            code: *code,
            reason: reason.clone(),
        }),
        Control::DisconnectConn { conn_id, code, reason } => serde_json::to_string(&WireControl::DisconnectConn {
            conn_id: conn_id.to_string(),
            code: *code,
            reason: reason.clone(),
        }),
        Control::SendToUser { user_id, frame } => {
            serde_json::to_string(&WireControl::SendToUser { user_id: user_id.clone(), frame: text(frame)? })
        }
        Control::Broadcast { frame } => serde_json::to_string(&WireControl::Broadcast { frame: text(frame)? }),
        _ => return None,
    }
    .ok()?;
    Some(format!(r#"{{"v":{VERSION},"k":"c","o":{},"c":{body}}}"#, json_string(node)))
}

/// A JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_echoes_and_garbage_are_dropped() {
        let head = publication_head("a");
        let p = format!(r#"{head},"e":"abc","n":7,"ev":null,"d":{{"x":[1,2]}}}}"#);
        match decode(p.as_bytes(), "b").unwrap() {
            Envelope::Publications { epoch, offset, items } => {
                assert_eq!((epoch.as_str(), offset, items.len()), ("abc", 7, 1));
                assert_eq!((items[0].0.as_deref(), items[0].1.as_str()), (None, r#"{"x":[1,2]}"#));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(decode(p.as_bytes(), "a"), Ok(Envelope::Publications { .. })), "publications are not echoes");
        let b = format!(r#"{},"e":"abc","n":3,"ps":[{{"ev":null,"d":1}},{{"ev":"t","d":"x"}}]}}"#, batch_head("a"));
        match decode(b.as_bytes(), "a").unwrap() {
            Envelope::Publications { offset, items, .. } => {
                assert_eq!(offset, 3);
                let items: Vec<(Option<&str>, &str)> = items.iter().map(|(e, d)| (e.as_deref(), d.as_str())).collect();
                assert_eq!(items, [(None, "1"), (Some("t"), "\"x\"")]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decode(br#"{"v":1,"k":"b","o":"a","e":"x","n":1,"ps":[]}"#, "b").unwrap_err(), Dropped::Malformed);
        assert_eq!(
            decode(br#"{"v":1,"k":"b","o":"a","e":"x","n":1,"ps":[{"ev":null,"d":}]}"#, "b").unwrap_err(),
            Dropped::Malformed
        );

        let client = ClientInfo { conn_id: "0000000000000001".into(), user_id: Some("u".into()) };
        let j = join_leave("a", true, &client);
        assert!(matches!(decode(j.as_bytes(), "b"), Ok(Envelope::JoinLeave { joined: true, .. })));
        assert_eq!(decode(j.as_bytes(), "a").unwrap_err(), Dropped::OwnEcho);

        let c = control("a", &Control::Broadcast { frame: Bytes::from_static(br#"{"type":"x"}"#) }).unwrap();
        match decode(c.as_bytes(), "b").unwrap() {
            Envelope::Control(Control::Broadcast { frame }) => assert_eq!(&frame[..], br#"{"type":"x"}"#),
            other => panic!("{other:?}"),
        }
        let d = control("a", &Control::DisconnectConn { conn_id: ConnId::new(5), code: 4004, reason: "r".into() });
        assert!(matches!(
            decode(d.unwrap().as_bytes(), "b"),
            Ok(Envelope::Control(Control::DisconnectConn { code: 4004, .. }))
        ));

        assert_eq!(decode(b"not json", "b").unwrap_err(), Dropped::Malformed);
        assert_eq!(decode(br#"{"v":2,"k":"p","o":"a"}"#, "b").unwrap_err(), Dropped::UnknownVersion);
        assert_eq!(decode(br#"{"v":1,"k":"p","o":"a","e":"x"}"#, "b").unwrap_err(), Dropped::Malformed);
        assert_eq!(decode(br#"{"v":1,"k":"z","o":"a"}"#, "b").unwrap_err(), Dropped::Malformed);
        assert_eq!(decode(&vec![b' '; MAX_ENVELOPE + 1], "b").unwrap_err(), Dropped::Oversized);
    }

    /// Found by the `envelope` fuzz target: a node id with a `"` in it was written escaped, and read back as
    /// malformed, so every envelope of that node was dropped.
    #[test]
    fn envelopes_of_a_node_whose_id_json_escapes_are_read() {
        let leave = br#"{"v":1,"k":"l","o":"{\"v\":2,\"k\":\"p","c":{"conn_id":"\"node-","user_id":null}}"#;
        let node = r#"{"v":2,"k":"p"#;
        match decode(leave, "node-b") {
            Ok(Envelope::JoinLeave { joined: false, client }) => assert_eq!(client.conn_id, "\"node-"),
            other => panic!("{other:?}"),
        }
        assert_eq!(decode(leave, node).unwrap_err(), Dropped::OwnEcho);
        let publication = format!(r#"{},"e":"abc","n":1,"ev":null,"d":1}}"#, publication_head(r"a\b"));
        assert!(matches!(decode(publication.as_bytes(), "b"), Ok(Envelope::Publications { .. })), "{publication}");
    }

    /// Seen in review and failing the `envelope` fuzz target's offset check: offsets at the end of the `u64` range
    /// were accepted, and numbering them (`offset..`) overflowed in the pub/sub task.
    #[test]
    fn publications_whose_offsets_overflow_are_malformed() {
        let last = br#"{"v":1,"k":"p","o":"node-a","e":"qwertyui","n":18446744073709551615,"ev":null,"d":{}}"#;
        assert_eq!(decode(last, "node-b").unwrap_err(), Dropped::Malformed);
        let batch = br#"{"v":1,"k":"b","o":"a","e":"x","n":18446744073709551614,"ps":[{"ev":null,"d":1},{"d":2}]}"#;
        assert_eq!(decode(batch, "node-b").unwrap_err(), Dropped::Malformed);
        let fits = br#"{"v":1,"k":"b","o":"a","e":"x","n":18446744073709551613,"ps":[{"ev":null,"d":1},{"d":2}]}"#;
        assert!(matches!(decode(fits, "node-b"), Ok(Envelope::Publications { offset: 18446744073709551613, .. })));
    }
}
