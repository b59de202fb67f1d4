//! Malformed input: every class of bad client frame gets its exact `DecodeError`, with the `id` when readable.

use ws_protocol::{
    ChannelName, ChannelNameError, ClientFrame, Command, CommandId, DecodeError, DecodeFailure, ErrorCode, Json,
    ServerDecodeError, ServerMessage, StreamPosition, MAX_DEPTH,
};

fn int(n: i64) -> Option<CommandId> {
    Some(CommandId::Int(n))
}

fn string(s: &str) -> Option<CommandId> {
    Some(CommandId::Str(s.into()))
}

fn wrong(field: &'static str, expected: &'static str) -> DecodeError {
    DecodeError::WrongType { field, expected }
}

const A_STRING: &str = "a string";
const A_COUNT: &str = "a non-negative integer";
const A_POSITION: &str = "an object with string `epoch` and integer `offset`";

fn arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn objects(depth: usize) -> String {
    format!("{}1{}", r#"{"k":"#.repeat(depth), "}".repeat(depth))
}

/// The field an error names in its message, if any.
fn named_field(error: &DecodeError) -> Option<&'static str> {
    match error {
        DecodeError::Missing(field) | DecodeError::WrongType { field, .. } => Some(field),
        DecodeError::BadId => Some("id"),
        DecodeError::BadChannel(_) => Some("channel"),
        DecodeError::TypeTooLong => Some("type"),
        _ => None,
    }
}

/// Decodes `frame` and checks the failure, its id, its wire code and its message.
fn assert_fails(name: &str, frame: &[u8], id: Option<CommandId>, error: DecodeError) {
    let shown = String::from_utf8_lossy(&frame[..frame.len().min(200)]).into_owned();
    let got = ClientFrame::decode(frame);
    assert_eq!(got, Err(DecodeFailure { id, error }), "{name}: {shown}");
    assert_eq!(error.code(), ErrorCode::BadRequest, "{name}");
    let message = error.to_string();
    if let Some(field) = named_field(&error) {
        assert!(message.contains(&format!("`{field}`")), "{name}: {message:?} does not name `{field}`");
    }
    assert!(!message.ends_with('.'), "{name}: {message:?}");
}

fn run(table: &[(&str, String, Option<CommandId>, DecodeError)]) {
    for (name, frame, id, error) in table {
        assert_fails(name, frame.as_bytes(), id.clone(), *error);
    }
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[test]
fn not_json() {
    run(&[
        ("empty", s(""), None, DecodeError::NotJson),
        ("blank", s("  \n "), None, DecodeError::NotJson),
        ("unclosed", s(r#"{"type":"ping""#), None, DecodeError::NotJson),
        ("truncated with readable-looking id", s(r#"{"id":5,"type":"ping""#), None, DecodeError::NotJson),
        ("trailing comma", s(r#"{"type":"ping",}"#), None, DecodeError::NotJson),
        ("trailing garbage", s(r#"{"type":"ping","id":1} x"#), None, DecodeError::NotJson),
        ("two objects", s(r#"{"type":"ping"}{"type":"ping"}"#), None, DecodeError::NotJson),
        ("single quotes", s("{'type':'ping'}"), None, DecodeError::NotJson),
        ("bare keys", s("{type:ping}"), None, DecodeError::NotJson),
        ("bad literal", s(r#"{"type":"ping","x":nul}"#), None, DecodeError::NotJson),
        ("NaN", s(r#"{"type":"ping","x":NaN}"#), None, DecodeError::NotJson),
        ("leading zero", s(r#"{"type":"ping","x":01}"#), None, DecodeError::NotJson),
        ("bad escape", s(r#"{"type":"ping","x":"\q"}"#), None, DecodeError::NotJson),
        ("lone surrogate", s(r#"{"type":"ping","x":"\ud800"}"#), None, DecodeError::NotJson),
        ("raw control character in string", s("{\"type\":\"pi\u{1}ng\"}"), None, DecodeError::NotJson),
        ("plain text", s("hello"), None, DecodeError::NotJson),
    ]);
    // Bytes that are not UTF-8 are not JSON either.
    assert_fails("invalid UTF-8", b"{\"type\":\"\xff\xfe\"}", None, DecodeError::NotJson);
    assert_fails("overlong UTF-8", b"{\"type\":\"\xc0\xaf\"}", None, DecodeError::NotJson);
}

#[test]
fn not_an_object() {
    run(&[
        ("empty array", s("[]"), None, DecodeError::NotObject),
        ("array of a command", s(r#"[{"type":"ping","id":1}]"#), None, DecodeError::NotObject),
        ("string", s(r#""ping""#), None, DecodeError::NotObject),
        ("number", s("42"), None, DecodeError::NotObject),
        ("float", s("-1.5e3"), None, DecodeError::NotObject),
        ("null", s("null"), None, DecodeError::NotObject),
        ("bool", s("true"), None, DecodeError::NotObject),
    ]);
}

#[test]
fn missing_or_mistyped_type() {
    run(&[
        ("empty object", s("{}"), None, DecodeError::Missing("type")),
        ("only an int id", s(r#"{"id":5}"#), int(5), DecodeError::Missing("type")),
        ("string id and a channel", s(r#"{"id":"a","channel":"x"}"#), string("a"), DecodeError::Missing("type")),
        ("type in another case", s(r#"{"Type":"ping","id":1}"#), int(1), DecodeError::Missing("type")),
        ("number", s(r#"{"type":1,"id":2}"#), int(2), wrong("type", A_STRING)),
        ("null", s(r#"{"type":null,"id":"n"}"#), string("n"), wrong("type", A_STRING)),
        ("bool", s(r#"{"type":true}"#), None, wrong("type", A_STRING)),
        ("array", s(r#"{"type":["ping"],"id":3}"#), int(3), wrong("type", A_STRING)),
        ("object", s(r#"{"type":{"name":"ping"}}"#), None, wrong("type", A_STRING)),
    ]);
}

#[test]
fn type_longer_than_64_bytes() {
    let long = "t".repeat(65);
    run(&[
        ("65 bytes", format!(r#"{{"type":"{long}","id":9}}"#), int(9), DecodeError::TypeTooLong),
        ("65 bytes, no id", format!(r#"{{"type":"{long}"}}"#), None, DecodeError::TypeTooLong),
        (
            "33 two-byte characters",
            format!(r#"{{"type":"{}","id":"x"}}"#, "é".repeat(33)),
            string("x"),
            DecodeError::TypeTooLong,
        ),
    ]);
    let ok = format!(r#"{{"type":"{}","id":9}}"#, "t".repeat(64));
    let frame = ClientFrame::decode(ok.as_bytes()).expect("a 64-byte type is fine");
    assert_eq!(frame.command, Command::Custom { kind: "t".repeat(64).into() });
}

#[test]
fn missing_channel() {
    let mut table = Vec::new();
    for kind in ["subscribe", "unsubscribe", "publish", "presence", "history"] {
        table.push((
            "no channel",
            format!(r#"{{"type":"{kind}","id":1,"data":1}}"#),
            int(1),
            DecodeError::Missing("channel"),
        ));
    }
    run(&table);
}

#[test]
fn channel_of_the_wrong_type() {
    let mut table = Vec::new();
    for value in ["7", "null", "true", r#"["a"]"#, r#"{"name":"a"}"#, "1.5"] {
        for kind in ["subscribe", "unsubscribe", "publish", "presence", "history"] {
            let frame = format!(r#"{{"type":"{kind}","id":"c","channel":{value},"data":1}}"#);
            table.push(("channel not a string", frame, string("c"), wrong("channel", A_STRING)));
        }
    }
    run(&table);
}

#[test]
fn invalid_channel_names() {
    let table = [
        ("empty", s(""), DecodeError::BadChannel(ChannelNameError::Empty)),
        ("256 bytes", "a".repeat(256), DecodeError::BadChannel(ChannelNameError::TooLong)),
        ("128 two-byte characters", "é".repeat(128), DecodeError::BadChannel(ChannelNameError::TooLong)),
        ("space", s("chat lobby"), DecodeError::BadChannel(ChannelNameError::BadCharacter)),
        ("bang", s("chat:lobby!"), DecodeError::BadChannel(ChannelNameError::BadCharacter)),
        ("escaped quote", s(r#"a\"b"#), DecodeError::BadChannel(ChannelNameError::BadCharacter)),
        ("escaped newline", s(r"a\nb"), DecodeError::BadChannel(ChannelNameError::BadCharacter)),
        ("NUL", s(r"a\u0000"), DecodeError::BadChannel(ChannelNameError::BadCharacter)),
        ("star", s("news.*"), DecodeError::BadChannel(ChannelNameError::BadCharacter)),
        ("non-ASCII", s("chat:é"), DecodeError::BadChannel(ChannelNameError::BadCharacter)),
        ("escaped non-ASCII", s(r"chat:\u00e9"), DecodeError::BadChannel(ChannelNameError::BadCharacter)),
        ("emoji", s("😀"), DecodeError::BadChannel(ChannelNameError::BadCharacter)),
    ];
    for (name, channel, error) in table {
        for kind in ["subscribe", "unsubscribe", "publish", "presence", "history"] {
            let frame = format!(r#"{{"type":"{kind}","id":11,"channel":"{channel}","data":null}}"#);
            assert_fails(name, frame.as_bytes(), int(11), error);
        }
    }
    let longest = format!(r#"{{"type":"subscribe","channel":"{}"}}"#, "a".repeat(255));
    assert!(ClientFrame::decode(longest.as_bytes()).is_ok(), "255 bytes is the limit, not over it");
}

#[test]
fn missing_data() {
    run(&[
        ("publish", s(r#"{"type":"publish","id":1,"channel":"a"}"#), int(1), DecodeError::Missing("data")),
        ("echo", s(r#"{"type":"echo","id":"e"}"#), string("e"), DecodeError::Missing("data")),
        ("echo, data in another case", s(r#"{"type":"echo","Data":1}"#), None, DecodeError::Missing("data")),
    ]);
}

#[test]
fn bad_history_limit() {
    let mut table = Vec::new();
    for limit in ["-1", r#""10""#, "1.5", "1.0", "1e2", "4294967296", "true", "[10]", r#"{"n":1}"#] {
        let frame = format!(r#"{{"type":"history","id":2,"channel":"a","limit":{limit}}}"#);
        table.push(("limit", frame, int(2), wrong("limit", A_COUNT)));
    }
    run(&table);
}

#[test]
fn bad_stream_positions() {
    let positions = [
        ("a string", r#""e1:5""#),
        ("a number", "5"),
        ("an array", r#"["e1",5]"#),
        ("true", "true"),
        ("epoch missing", r#"{"offset":5}"#),
        ("epoch a number", r#"{"epoch":1,"offset":5}"#),
        ("epoch null", r#"{"epoch":null,"offset":5}"#),
        ("offset missing", r#"{"epoch":"e1"}"#),
        ("offset a string", r#"{"epoch":"e1","offset":"5"}"#),
        ("offset negative", r#"{"epoch":"e1","offset":-1}"#),
        ("offset a float", r#"{"epoch":"e1","offset":1.5}"#),
        ("offset null", r#"{"epoch":"e1","offset":null}"#),
        ("empty object", "{}"),
    ];
    for (name, value) in positions {
        let subscribe = format!(r#"{{"type":"subscribe","id":"r","channel":"a","recover":{value}}}"#);
        assert_fails(name, subscribe.as_bytes(), string("r"), wrong("recover", A_POSITION));
        let history = format!(r#"{{"type":"history","id":"h","channel":"a","since":{value}}}"#);
        assert_fails(name, history.as_bytes(), string("h"), wrong("since", A_POSITION));
    }
}

#[test]
fn bad_ids() {
    let long = "i".repeat(129);
    run(&[
        ("129-byte string", format!(r#"{{"type":"ping","id":"{long}"}}"#), None, DecodeError::BadId),
        ("65 two-byte characters", format!(r#"{{"type":"ping","id":"{}"}}"#, "é".repeat(65)), None, DecodeError::BadId),
        ("float", s(r#"{"type":"ping","id":1.5}"#), None, DecodeError::BadId),
        ("whole float", s(r#"{"type":"ping","id":1.0}"#), None, DecodeError::BadId),
        ("exponent", s(r#"{"type":"ping","id":1e3}"#), None, DecodeError::BadId),
        ("over i64", s(r#"{"type":"ping","id":9223372036854775808}"#), None, DecodeError::BadId),
        ("bool", s(r#"{"type":"ping","id":true}"#), None, DecodeError::BadId),
        ("array", s(r#"{"type":"ping","id":[1]}"#), None, DecodeError::BadId),
        ("object", s(r#"{"type":"ping","id":{"n":1}}"#), None, DecodeError::BadId),
        // The id is read first: a bad id wins over every other fault but the JSON itself.
        ("bad id and no type", s(r#"{"id":2.5}"#), None, DecodeError::BadId),
        (
            "bad id and bad channel",
            format!(r#"{{"type":"subscribe","id":"{long}","channel":""}}"#),
            None,
            DecodeError::BadId,
        ),
    ]);
}

#[test]
fn good_ids_at_the_limits() {
    let table = [
        (format!(r#""{}""#, "i".repeat(128)), CommandId::Str("i".repeat(128).into())),
        (format!(r#""{}""#, "é".repeat(64)), CommandId::Str("é".repeat(64).into())),
        // Length counts the bytes after unescaping, not the escapes on the wire.
        (format!(r#""{}""#, r"\u00e9".repeat(64)), CommandId::Str("é".repeat(64).into())),
        (s(r#""""#), CommandId::Str("".into())),
        (s("0"), CommandId::Int(0)),
        (s("-9223372036854775808"), CommandId::Int(i64::MIN)),
        (s("9223372036854775807"), CommandId::Int(i64::MAX)),
    ];
    for (id, want) in table {
        let frame = format!(r#"{{"type":"ping","id":{id}}}"#);
        assert_eq!(ClientFrame::decode(frame.as_bytes()).map(|f| f.id), Ok(Some(want)), "{frame}");
    }
}

#[test]
fn nesting_deeper_than_the_limit() {
    run(&[
        (
            "65 arrays in publish data",
            format!(r#"{{"type":"publish","id":1,"channel":"a","data":{}}}"#, arrays(65)),
            int(1),
            DecodeError::TooDeep,
        ),
        (
            "65 arrays in echo data",
            format!(r#"{{"type":"echo","id":"d","data":{}}}"#, arrays(65)),
            string("d"),
            DecodeError::TooDeep,
        ),
        (
            "65 objects in data",
            format!(r#"{{"type":"echo","id":2,"data":{}}}"#, objects(65)),
            int(2),
            DecodeError::TooDeep,
        ),
        ("1000 arrays", format!(r#"{{"type":"echo","id":3,"data":{}}}"#, arrays(1000)), int(3), DecodeError::TooDeep),
        // Depth is checked before the command: an ignored field may not be deep either.
        (
            "deep unknown field",
            format!(r#"{{"type":"ping","id":4,"extra":{}}}"#, arrays(65)),
            int(4),
            DecodeError::TooDeep,
        ),
        (
            "deep data, unknown type",
            format!(r#"{{"type":"x","id":5,"data":{}}}"#, arrays(65)),
            int(5),
            DecodeError::TooDeep,
        ),
    ]);
    for (name, data) in [("64 arrays", arrays(MAX_DEPTH)), ("64 objects", objects(MAX_DEPTH))] {
        let frame = format!(r#"{{"type":"publish","id":1,"channel":"a","data":{data}}}"#);
        let decoded = ClientFrame::decode(frame.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(
            decoded.command,
            Command::Publish {
                channel: ChannelName::new("a").unwrap(),
                data: Json::parse(data).unwrap(),
                idempotency_key: None,
            }
        );
    }
}

#[test]
fn huge_depth_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    for data in [arrays(depth), objects(depth)] {
        // Values are skipped and captured without recursion, so even this deep the id is read and echoed.
        let frame = format!(r#"{{"type":"publish","id":1,"channel":"a","data":{data}}}"#);
        assert_fails("huge depth", frame.as_bytes(), int(1), DecodeError::TooDeep);
        assert_eq!(Json::parse(data), Err(DecodeError::TooDeep));
    }
    assert_fails("huge depth at the root", arrays(depth).as_bytes(), None, DecodeError::TooDeep);
}

#[test]
fn json_parse_refuses_invalid_text() {
    let table = [
        ("", DecodeError::NotJson),
        (" ", DecodeError::NotJson),
        ("{", DecodeError::NotJson),
        ("}", DecodeError::NotJson),
        ("nul", DecodeError::NotJson),
        ("tru", DecodeError::NotJson),
        ("[1,]", DecodeError::NotJson),
        (r#"{"a"}"#, DecodeError::NotJson),
        (r#"{"a":1,}"#, DecodeError::NotJson),
        ("1 2", DecodeError::NotJson),
        ("01", DecodeError::NotJson),
        ("NaN", DecodeError::NotJson),
        ("'x'", DecodeError::NotJson),
        (r#""\x""#, DecodeError::NotJson),
        ("\"unterminated", DecodeError::NotJson),
        ("\u{feff}1", DecodeError::NotJson),
    ];
    for (text, error) in table {
        assert_eq!(Json::parse(text), Err(error), "{text:?}");
    }
    assert_eq!(Json::parse(&b"\"\xff\""[..]), Err(DecodeError::NotJson));
    assert_eq!(Json::parse(arrays(MAX_DEPTH + 1)), Err(DecodeError::TooDeep));
    for ok in ["null", "0", r#""x""#, "[]", "{}", " [1] ", &arrays(MAX_DEPTH)] {
        assert_eq!(Json::parse(ok.to_owned()).map(|j| j.as_str().to_owned()), Ok(ok.to_owned()));
    }
}

#[test]
fn unknown_fields_and_null_optionals_are_ignored() {
    let a = ChannelName::new("a").unwrap();
    let table = [
        (
            r#"{"type":"subscribe","channel":"a","foo":1,"bar":{"x":[1,"y"]}}"#,
            None,
            Command::Subscribe { channel: a.clone(), recover: None },
        ),
        (r#"{"type":"ping","id":null}"#, None, Command::Ping),
        (r#"{"id":null,"type":"status","extra":null}"#, None, Command::Status),
        (
            r#"{"type":"subscribe","id":1,"channel":"a","recover":null}"#,
            Some(CommandId::Int(1)),
            Command::Subscribe { channel: a.clone(), recover: None },
        ),
        (
            r#"{"type":"subscribe","id":1,"channel":"a","recover":{"epoch":"e","offset":3,"extra":true}}"#,
            Some(CommandId::Int(1)),
            Command::Subscribe { channel: a.clone(), recover: Some(StreamPosition { epoch: "e".into(), offset: 3 }) },
        ),
        (
            r#"{"type":"history","channel":"a","limit":null,"since":null}"#,
            None,
            Command::History { channel: a.clone(), limit: None, since: None },
        ),
        (
            r#"{"type":"publish","channel":"a","data":null}"#,
            None,
            Command::Publish { channel: a.clone(), data: Json::null(), idempotency_key: None },
        ),
        (
            r#"{"data":[1],"channel":"a","type":"publish","id":"z"}"#,
            Some(CommandId::Str("z".into())),
            Command::Publish { channel: a, data: Json::parse("[1]").unwrap(), idempotency_key: None },
        ),
        (" \n{\"type\" : \"ping\" , \"id\" : 5 }\t", Some(CommandId::Int(5)), Command::Ping),
        (r#"{"\u0074ype":"p\u0069ng","i\u0064":6}"#, Some(CommandId::Int(6)), Command::Ping),
        (r#"{"type":"ping","channel":"not checked","data":"unused"}"#, None, Command::Ping),
        (r#"{"type":"typing","channel":7,"data":[]}"#, None, Command::Custom { kind: "typing".into() }),
    ];
    for (frame, id, command) in table {
        assert_eq!(ClientFrame::decode(frame.as_bytes()), Ok(ClientFrame { id, command }), "{frame}");
    }
}

#[test]
fn error_messages_name_the_field() {
    let table = [
        (DecodeError::NotJson, "frame is not valid JSON"),
        (DecodeError::NotObject, "frame is not a JSON object"),
        (DecodeError::TooDeep, "JSON nests deeper than 64 levels"),
        (DecodeError::Missing("channel"), "missing field `channel`"),
        (DecodeError::Missing("data"), "missing field `data`"),
        (wrong("limit", A_COUNT), "field `limit` must be a non-negative integer"),
        (wrong("type", A_STRING), "field `type` must be a string"),
        (wrong("recover", A_POSITION), "field `recover` must be an object with string `epoch` and integer `offset`"),
        (DecodeError::BadId, "field `id` must be an integer or a string of at most 128 bytes"),
        (DecodeError::BadChannel(ChannelNameError::Empty), "field `channel` is invalid: channel name is empty"),
        (
            DecodeError::BadChannel(ChannelNameError::TooLong),
            "field `channel` is invalid: channel name is longer than 255 bytes",
        ),
        (
            DecodeError::BadChannel(ChannelNameError::BadCharacter),
            "field `channel` is invalid: channel name has a character outside A-Z a-z 0-9 _ - . : @ / = #",
        ),
        (DecodeError::TypeTooLong, "field `type` is longer than 64 bytes"),
    ];
    for (error, message) in table {
        assert_eq!(error.to_string(), message);
        assert_eq!(error.code(), ErrorCode::BadRequest, "{message}");
    }
}

#[test]
fn bad_server_frames() {
    let missing = |kind: &str, field| ServerDecodeError::Missing { kind: kind.into(), field };
    let table = [
        (r#"{"type":"future_thing","x":1}"#, Some(ServerDecodeError::UnknownType("future_thing".into()))),
        (r#"{"type":"welcome","heartbeat_ms":1,"version":1}"#, Some(missing("welcome", "conn_id"))),
        (r#"{"type":"message","channel":"a","offset":1}"#, Some(missing("message", "data"))),
        (r#"{"type":"echo","id":1}"#, Some(missing("echo", "data"))),
        (r#"{"type":"error","code":"no_such_code","message":"m"}"#, Some(missing("error", "code"))),
        (r#"{"type":"error","code":3,"message":"m"}"#, Some(missing("error", "code"))),
        (
            r#"{"type":"disconnect","code":70000,"reason":"r","reconnect_after_ms":1}"#,
            Some(missing("disconnect", "code")),
        ),
        (r#"{"type":"history","channel":"a","epoch":"e","offset":1}"#, Some(missing("history", "messages"))),
        // Shapes serde_json itself refuses; the message is serde_json's.
        ("not json", None),
        ("[]", None),
        (r#"{"channel":"a"}"#, None),
        (r#"{"type":"message","channel":"bad name","offset":1,"data":1}"#, None),
        (r#"{"type":"pong","id":1.5}"#, None),
    ];
    for (frame, want) in table {
        let got = ServerMessage::decode(frame.as_bytes()).unwrap_err();
        match want {
            Some(want) => assert_eq!(got, want, "{frame}"),
            None => assert!(matches!(got, ServerDecodeError::Json(_)), "{frame}: {got:?}"),
        }
    }
    // A newer server's extra fields are ignored.
    let pong = ServerMessage::decode(br#"{"type":"pong","id":"p","server_time":123,"nested":{"a":[1]}}"#);
    assert_eq!(pong, Ok(ServerMessage::Pong { id: Some(CommandId::Str("p".into())) }));
}
