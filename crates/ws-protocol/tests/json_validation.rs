//! `Json::parse` (and the command decoder, which shares its scanner) accepts exactly what serde_json accepts,
//! less lone surrogate escapes, and tells nesting past `MAX_DEPTH` apart: checked against serde_json on
//! generated near-JSON text.

use proptest::prelude::*;
use serde_json::value::RawValue;
use ws_protocol::{DecodeError, Json, MAX_DEPTH};

/// What serde_json says, with the checks the protocol adds: not JSON, too deep, or fine.
fn reference(text: &[u8]) -> Result<(), DecodeError> {
    let s = std::str::from_utf8(text).map_err(|_| DecodeError::NotJson)?;
    serde_json::from_str::<&RawValue>(s).map_err(|_| DecodeError::NotJson)?;
    if has_lone_surrogate(s) {
        return Err(DecodeError::NotJson);
    }
    if depth(s) > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    Ok(())
}

/// Whether a valid JSON text has a `\u` escape that is half of a surrogate pair.
fn has_lone_surrogate(s: &str) -> bool {
    let units: Vec<u16> = {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        let mut in_string = false;
        while i < b.len() {
            match b[i] {
                b'"' => in_string = !in_string,
                b'\\' if in_string => {
                    if b[i + 1] == b'u' {
                        out.push(u16::from_str_radix(&s[i + 2..i + 6], 16).unwrap());
                        i += 6;
                        continue;
                    }
                    out.push(0);
                    i += 2;
                    continue;
                }
                _ if in_string => out.push(0),
                _ => out.push(1),
            }
            i += 1;
        }
        out
    };
    let mut i = 0;
    while i < units.len() {
        match units[i] {
            0xD800..=0xDBFF if matches!(units.get(i + 1), Some(0xDC00..=0xDFFF)) => i += 2,
            0xD800..=0xDFFF => return true,
            _ => i += 1,
        }
    }
    false
}

/// How deeply a valid JSON text nests.
fn depth(s: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0, false, false);
    for b in s.bytes() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, _, b'"') => in_string = !in_string,
            (false, _, b'[' | b'{') => {
                depth += 1;
                max = max.max(depth);
            }
            (false, _, b']' | b'}') => depth -= 1,
            _ => {}
        }
    }
    max
}

fn pieces() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        &b"{"[..],
        b"}",
        b"[",
        b"]",
        b"\"",
        b"\"a\"",
        b"\\",
        b"\\u",
        b"d83d",
        b"de00",
        b"00e9",
        b"n",
        b":",
        b",",
        b"0",
        b"17",
        b"-",
        b".",
        b"e",
        b"+",
        b" ",
        b"\n",
        b"true",
        b"null",
        b"fals",
        b"x",
        "é".as_bytes(),
        b"\x01",
        b"\xff",
        b"\xc3",
        b"\xa9",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|ps| ps.concat())
}

fn nested(depth: usize) -> impl Strategy<Value = Vec<u8>> {
    (0..=depth).prop_map(|d| format!("{}1{}", "[".repeat(d), "]".repeat(d)).into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn parse_agrees_with_serde_json(text in pieces()) {
        let got = Json::parse(text.clone()).map(|_| ());
        prop_assert_eq!(got, reference(&text), "{:?}", String::from_utf8_lossy(&text));
    }

    #[test]
    fn objects_of_pieces_agree_too(key in pieces(), value in pieces()) {
        let text = [&b"{\""[..], &key, b"\":", &value, b"}"].concat();
        let got = Json::parse(text.clone()).map(|_| ());
        prop_assert_eq!(got, reference(&text), "{:?}", String::from_utf8_lossy(&text));
    }

    #[test]
    fn depth_is_counted_exactly(text in nested(2 * MAX_DEPTH)) {
        let got = Json::parse(text.clone()).map(|_| ());
        prop_assert_eq!(got, reference(&text));
    }
}

#[test]
fn keys_are_matched_after_unescaping() {
    use ws_protocol::{ClientFrame, Command, CommandId};
    let frame = ClientFrame::decode(br#"{"ty\u0070e":"ping","\u0069d":7}"#).unwrap();
    assert_eq!((frame.command, frame.id), (Command::Ping, Some(CommandId::Int(7))));
    let shared = bytes::Bytes::from_static(br#"{"type":"echo","data":{"a":[1,"\u00e9"]}}"#);
    let Command::Echo { data } = ClientFrame::decode_shared(&shared).unwrap().command else { panic!("not an echo") };
    assert_eq!(data.as_str(), r#"{"a":[1,"\u00e9"]}"#);
}
