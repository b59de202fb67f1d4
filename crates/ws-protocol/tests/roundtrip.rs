//! Round trips: every client command and every server message encodes and decodes back to itself.

use serde_json::Value;
use ws_protocol::{
    encode_message, ChannelName, ClientFrame, ClientInfo, Command, CommandId, DecodeError, ErrorCode, Json,
    Publication, ServerMessage, StreamPosition, UnsubscribeReason, MAX_CHANNEL_LEN, MAX_DEPTH, MAX_ID_LEN,
    MAX_TYPE_LEN, PROTOCOL_VERSION,
};

fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap_or_else(|e| panic!("{name:?} is not a channel name: {e}"))
}

fn json(text: &str) -> Json {
    Json::parse(text.to_owned()).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

fn pos(epoch: &str, offset: u64) -> StreamPosition {
    StreamPosition { epoch: epoch.to_owned(), offset }
}

fn client(conn_id: &str, user_id: Option<&str>) -> ClientInfo {
    ClientInfo { conn_id: conn_id.to_owned(), user_id: user_id.map(str::to_owned) }
}

fn publication(channel: &str, offset: u64, event: Option<&str>, data: &str) -> Publication {
    Publication { channel: ch(channel), offset, event: event.map(str::to_owned), data: json(data) }
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Every id shape a command may carry: an integer, a string and none.
fn ids() -> Vec<Option<CommandId>> {
    vec![
        Some(CommandId::Int(42)),
        Some(CommandId::Int(-7)),
        Some(CommandId::Int(i64::MAX)),
        Some(CommandId::Int(i64::MIN)),
        Some(CommandId::Str("req-1".into())),
        Some(CommandId::Str("".into())),
        Some(CommandId::Str("quote \" backslash \\ newline \n é 😀".into())),
        Some(CommandId::Str("x".repeat(MAX_ID_LEN).into())),
        None,
    ]
}

/// Payloads of every shape; the decoder keeps them byte for byte, so `decode(encode(frame))` is identical.
fn data_shapes() -> Vec<Json> {
    let mut shapes: Vec<Json> = [
        "null",
        "true",
        "false",
        "0",
        "-17",
        "18446744073709551615",
        "-9223372036854775808",
        "1.5",
        "-0.25",
        "2.5e-7",
        "1.7976931348623157e308",
        r#""""#,
        r#""plain text""#,
        r#""quote \" backslash \\ slash / newline \n tab \t cr \r control \u0001 \u001f""#,
        r#""unicode é ü 中文 😀 \u0000""#,
        "[]",
        "{}",
        r#"[1,"two",null,[3,[4]],{"five":5}]"#,
        r#"{"text":"hi","n":1,"nested":{"a":[true,false],"b":null},"e":""}"#,
    ]
    .into_iter()
    .map(json)
    .collect();
    // The deepest payload a client may send.
    shapes.push(json(&nested_arrays(MAX_DEPTH)));
    shapes
}

fn commands() -> Vec<Command> {
    let lobby = ch("chat:lobby");
    let mut commands = vec![
        Command::Subscribe { channel: lobby.clone(), recover: None },
        Command::Subscribe { channel: ch("news"), recover: Some(pos("e1", 0)) },
        Command::Subscribe { channel: ch("inbox:private#42"), recover: Some(pos("epoch \"quoted\" é", u64::MAX)) },
        Command::Subscribe { channel: ch("AZaz09_-.:@/=#"), recover: Some(pos("", 17)) },
        Command::Subscribe { channel: ch(&"a".repeat(MAX_CHANNEL_LEN)), recover: None },
        Command::Unsubscribe { channel: lobby.clone() },
        Command::Ping,
        Command::Presence { channel: lobby.clone() },
        Command::History { channel: lobby.clone(), limit: None, since: None },
        Command::History { channel: lobby.clone(), limit: Some(0), since: None },
        Command::History { channel: lobby.clone(), limit: Some(u32::MAX), since: None },
        Command::History { channel: lobby.clone(), limit: None, since: Some(pos("e2", 5)) },
        Command::History { channel: lobby.clone(), limit: Some(10), since: Some(pos("e2", 0)) },
        Command::Status,
        Command::Custom { kind: "typing".into() },
        Command::Custom { kind: "app.rpc:call-1".into() },
        Command::Custom { kind: "".into() },
        Command::Custom { kind: "with \"quotes\" and é".into() },
        Command::Custom { kind: "k".repeat(MAX_TYPE_LEN).into() },
    ];
    for data in data_shapes() {
        commands.push(Command::Publish { channel: lobby.clone(), data: data.clone(), idempotency_key: None });
        commands.push(Command::Echo { data });
    }
    commands
}

#[test]
fn every_client_command_round_trips() {
    let mut count = 0;
    for command in commands() {
        for id in ids() {
            let frame = ClientFrame { id: id.clone(), command: command.clone() };
            let bytes = frame.encode();
            let text = std::str::from_utf8(&bytes).expect("frames are UTF-8");

            let decoded = ClientFrame::decode(&bytes).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(decoded, frame, "{text}");

            // Any JSON library reads the frame, with the right type and id.
            let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(value["type"], command.kind(), "{text}");
            let want_id = id.as_ref().map_or(Value::Null, |id| serde_json::to_value(id).unwrap());
            assert_eq!(value["id"], want_id, "{text}");
            count += 1;
        }
    }
    assert!(count > 300, "the table shrank to {count} frames");
}

#[test]
fn data_goes_out_byte_for_byte_as_the_client_wrote_it() {
    // Numbers beyond 64 bits or f64, escapes, spacing and key order inside the value: all kept as sent.
    let table = [
        r#"{ "a" : [ 1 , 2 ] }"#,
        r#""\u00e9\ud83d\ude00""#,
        r#""\/""#,
        "1e3",
        "1E+2",
        "1e400",
        "-1e-400",
        "123456789012345678901234567890",
        "-123456789012345678901234567890.123456789012345678901234567890",
        "0.1000000000000000055511151231257827021181583404541015625",
        r#"{"b":1,"a":2}"#,
        r#"{"a":1,"a":2}"#,
        "[\n\t1\r\n]",
    ];
    for sent in table {
        for frame in [
            format!(r#"{{"type":"publish","channel":"c","data":{sent}}}"#),
            format!(r#"{{"type":"publish","channel":"c","data" :  {sent}  ,"id":1}}"#),
        ] {
            let decoded = ClientFrame::decode(frame.as_bytes()).unwrap_or_else(|e| panic!("{frame}: {e:?}"));
            let Command::Publish { channel, data, .. } = decoded.command else { panic!("{frame}: not a publish") };
            assert_eq!(data.as_str(), sent, "{frame}");
            let out = encode_message(&channel, 1, None, &data);
            let expected = format!(r#"{{"type":"message","channel":"c","offset":1,"data":{sent}}}"#);
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        }
        assert_eq!(Json::parse(sent.to_owned()).map(|j| j.as_str().to_owned()), Ok(sent.to_owned()));
        // The API path: a body deserialized with serde keeps it too.
        #[derive(serde::Deserialize)]
        struct Body {
            data: Json,
        }
        let parsed: Body = serde_json::from_str(&format!(r#"{{"data": {sent} }}"#)).unwrap();
        assert_eq!(parsed.data.as_str(), sent);
    }
}

#[test]
fn strings_that_are_not_unicode_are_refused() {
    for bad in [r#""\ud800""#, r#""\udc00""#, r#""\ud800x""#, r#""\ud800\u0041""#, r#"{"\udbff":1}"#, r#"["a\ud83d"]"#]
    {
        assert_eq!(Json::parse(bad.to_owned()), Err(DecodeError::NotJson), "{bad}");
        let frame = format!(r#"{{"type":"publish","id":1,"channel":"c","data":{bad}}}"#);
        assert_eq!(ClientFrame::decode(frame.as_bytes()).map_err(|e| e.error), Err(DecodeError::NotJson), "{frame}");
    }
    for good in [r#""\ud83d\ude00""#, r#""\uDBFF\uDFFF""#, r#""\u0000\\ud800""#] {
        assert!(Json::parse(good.to_owned()).is_ok(), "{good}");
    }
}

fn server_messages() -> Vec<ServerMessage> {
    let lobby = ch("chat:lobby");
    let mut messages = vec![
        ServerMessage::Welcome {
            conn_id: "c1f3".into(),
            user_id: Some("42".into()),
            heartbeat_ms: 30_000,
            version: PROTOCOL_VERSION,
        },
        ServerMessage::Welcome { conn_id: "c-é \"x\"".into(), user_id: None, heartbeat_ms: 0, version: 1 },
        ServerMessage::Message(publication("chat:lobby", 1, None, r#"{"text":"hi"}"#)),
        ServerMessage::Message(publication("proc:7", u64::MAX, Some("process_output"), r#""line\n""#)),
        ServerMessage::Message(publication("x", 2, Some("evt \"q\" é"), "null")),
        ServerMessage::Join { channel: lobby.clone(), client: client("c1", Some("42")) },
        ServerMessage::Join { channel: lobby.clone(), client: client("c2", None) },
        ServerMessage::Leave { channel: lobby.clone(), client: client("c1", Some("user \"é\"")) },
        ServerMessage::Leave { channel: lobby.clone(), client: client("c2", None) },
        ServerMessage::Disconnect { code: 1001, reason: "shutdown".into(), reconnect_after_ms: 5_000 },
        ServerMessage::Disconnect { code: 4000, reason: "slow consumer: \"queue\" full".into(), reconnect_after_ms: 0 },
        ServerMessage::Disconnect { code: u16::MAX, reason: "".into(), reconnect_after_ms: u64::MAX },
    ];
    // Published messages may carry any payload, including data as deep as a client may send.
    for data in data_shapes() {
        messages.push(ServerMessage::Message(Publication { channel: lobby.clone(), offset: 3, event: None, data }));
    }
    // Pretty-printed payloads (from the HTTP API, say) are spliced and read back verbatim.
    messages.push(ServerMessage::Message(publication("api", 9, Some("e"), "{ \"a\" : [ 1, 2 ] }")));

    for id in ids() {
        for code in ErrorCode::ALL {
            messages.push(ServerMessage::Error {
                id: id.clone(),
                code,
                message: format!("{code} happened: \"details\" é\n"),
            });
        }
        for (recovered, missed) in [(None, None), (Some(true), Some(3)), (Some(false), Some(0)), (Some(true), None)] {
            messages.push(ServerMessage::Subscribed {
                id: id.clone(),
                channel: lobby.clone(),
                epoch: "e1".into(),
                offset: 12,
                recovered,
                missed,
            });
        }
        messages.extend([
            ServerMessage::Unsubscribed { id: id.clone(), channel: lobby.clone(), reason: None, resubscribe: false },
            ServerMessage::Unsubscribed {
                id: None,
                channel: lobby.clone(),
                reason: Some(UnsubscribeReason::InsufficientState),
                resubscribe: true,
            },
            ServerMessage::Published { id: id.clone(), channel: lobby.clone(), offset: 1 },
            ServerMessage::Published { id: id.clone(), channel: ch("inbox:private#42"), offset: u64::MAX },
            ServerMessage::Pong { id: id.clone() },
            ServerMessage::Presence { id: id.clone(), channel: lobby.clone(), clients: vec![] },
            ServerMessage::Presence {
                id: id.clone(),
                channel: lobby.clone(),
                clients: vec![client("c1", Some("42")), client("c2 \"é\"", None)],
            },
            ServerMessage::History {
                id: id.clone(),
                channel: lobby.clone(),
                epoch: "e1".into(),
                offset: 0,
                messages: vec![],
            },
            ServerMessage::History {
                id: id.clone(),
                channel: lobby.clone(),
                epoch: "epoch \"é\"".into(),
                offset: 8,
                messages: vec![
                    publication("chat:lobby", 7, None, r#"{"text":"one"}"#),
                    publication("chat:lobby", 8, Some("edit"), r#"["two",null]"#),
                ],
            },
            ServerMessage::Status {
                id: id.clone(),
                conn_id: "c1".into(),
                user_id: Some("42".into()),
                channels: vec![lobby.clone(), ch("inbox:private#42")],
                connected_ms: 1_234,
            },
            ServerMessage::Status {
                id: id.clone(),
                conn_id: "c2".into(),
                user_id: None,
                channels: vec![],
                connected_ms: 0,
            },
        ]);
        for data in ["null", r#""s""#, r#"{"deep":[[1]]}"#] {
            messages.push(ServerMessage::Echo { id: id.clone(), data: json(data) });
        }
    }
    messages
}

/// The `id` a server message echoes, if its type has one.
fn id_of(msg: &ServerMessage) -> Option<&CommandId> {
    match msg {
        ServerMessage::Error { id, .. }
        | ServerMessage::Subscribed { id, .. }
        | ServerMessage::Unsubscribed { id, .. }
        | ServerMessage::Published { id, .. }
        | ServerMessage::Pong { id }
        | ServerMessage::Presence { id, .. }
        | ServerMessage::History { id, .. }
        | ServerMessage::Echo { id, .. }
        | ServerMessage::Status { id, .. } => id.as_ref(),
        _ => None,
    }
}

#[test]
fn every_server_message_round_trips() {
    let messages = server_messages();
    let kinds: std::collections::BTreeSet<&str> = messages.iter().map(ServerMessage::kind).collect();
    assert_eq!(kinds.len(), 14, "some message type is missing from the table: {kinds:?}");

    for msg in &messages {
        let bytes = msg.encode();
        let text = std::str::from_utf8(&bytes).expect("frames are UTF-8");

        let decoded = ServerMessage::decode(&bytes).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(&decoded, msg, "{text}");

        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(value.is_object(), "{text}");
        assert_eq!(value["type"], msg.kind(), "{text}");
        let want_id = id_of(msg).map_or(Value::Null, |id| serde_json::to_value(id).unwrap());
        assert_eq!(value["id"], want_id, "{text}");
        match msg {
            ServerMessage::Message(Publication { data, .. }) | ServerMessage::Echo { data, .. } => {
                let want: Value = serde_json::from_slice(data.as_bytes()).unwrap();
                assert_eq!(value["data"], want, "{text}");
            }
            ServerMessage::Error { code, .. } => assert_eq!(value["code"], code.as_str(), "{text}"),
            _ => {}
        }
    }
}

#[test]
fn a_publication_encodes_the_same_every_way() {
    let p = publication("chat:lobby", 5, Some("process_output"), r#"{"text":"hi"}"#);
    let once = encode_message(&p.channel, p.offset, p.event.as_deref(), &p.data);
    assert_eq!(p.encode(), once);
    assert_eq!(ServerMessage::Message(p).encode(), once);
}

#[test]
fn error_codes_round_trip_on_their_own() {
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        assert_eq!(code.to_string(), code.as_str());
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
    assert_eq!(ErrorCode::from_wire("nope"), None);
}

#[test]
fn welcome_matches_protocol_md() {
    let welcome = ServerMessage::Welcome {
        conn_id: "c1f3...".into(),
        user_id: Some("42".into()),
        heartbeat_ms: 30_000,
        version: PROTOCOL_VERSION,
    };
    let golden = r#"{"type":"welcome","conn_id":"c1f3...","user_id":"42","heartbeat_ms":30000,"version":1}"#;
    assert_eq!(std::str::from_utf8(&welcome.encode()).unwrap(), golden);
    assert_eq!(ServerMessage::decode(golden.as_bytes()).unwrap(), welcome);

    // "`user_id` is `null` for anonymous connections."
    let anonymous = ServerMessage::Welcome { conn_id: "c2".into(), user_id: None, heartbeat_ms: 30_000, version: 1 };
    let golden = r#"{"type":"welcome","conn_id":"c2","user_id":null,"heartbeat_ms":30000,"version":1}"#;
    assert_eq!(std::str::from_utf8(&anonymous.encode()).unwrap(), golden);
}

#[test]
fn server_frames_match_golden_bytes() {
    let lobby = ch("chat:lobby");
    let table: Vec<(ServerMessage, &str)> = vec![
        (
            ServerMessage::Message(publication("chat:lobby", 1, None, r#"{"text":"hi"}"#)),
            r#"{"type":"message","channel":"chat:lobby","offset":1,"data":{"text":"hi"}}"#,
        ),
        (
            ServerMessage::Message(publication("proc:1", 7, Some("process_output"), r#""ok""#)),
            r#"{"type":"message","channel":"proc:1","offset":7,"event":"process_output","data":"ok"}"#,
        ),
        (
            ServerMessage::Join { channel: lobby.clone(), client: client("c1", Some("42")) },
            r#"{"type":"join","channel":"chat:lobby","client":{"conn_id":"c1","user_id":"42"}}"#,
        ),
        (
            ServerMessage::Error {
                id: Some(CommandId::Int(7)),
                code: ErrorCode::UnknownType,
                message: "unknown type".into(),
            },
            r#"{"type":"error","id":7,"code":"unknown_type","message":"unknown type"}"#,
        ),
        (
            ServerMessage::Error { id: None, code: ErrorCode::UnsupportedFrame, message: "binary frame".into() },
            r#"{"type":"error","code":"unsupported_frame","message":"binary frame"}"#,
        ),
        (
            ServerMessage::Disconnect { code: 1001, reason: "shutdown".into(), reconnect_after_ms: 5000 },
            r#"{"type":"disconnect","code":1001,"reason":"shutdown","reconnect_after_ms":5000}"#,
        ),
        (
            ServerMessage::Subscribed {
                id: Some(CommandId::Str("s1".into())),
                channel: lobby.clone(),
                epoch: "e1".into(),
                offset: 12,
                recovered: Some(true),
                missed: Some(2),
            },
            r#"{"type":"subscribed","id":"s1","channel":"chat:lobby","epoch":"e1","offset":12,"recovered":true,"missed":2}"#,
        ),
        (ServerMessage::Pong { id: Some(CommandId::Int(3)) }, r#"{"type":"pong","id":3}"#),
        (ServerMessage::Pong { id: None }, r#"{"type":"pong"}"#),
        (
            ServerMessage::Presence {
                id: Some(CommandId::Int(4)),
                channel: lobby.clone(),
                clients: vec![client("c1", Some("42")), client("c2", None)],
            },
            r#"{"type":"presence","id":4,"channel":"chat:lobby","clients":[{"conn_id":"c1","user_id":"42"},{"conn_id":"c2","user_id":null}]}"#,
        ),
        (
            ServerMessage::History {
                id: None,
                channel: lobby.clone(),
                epoch: "e1".into(),
                offset: 2,
                messages: vec![publication("chat:lobby", 2, None, "1")],
            },
            r#"{"type":"history","channel":"chat:lobby","epoch":"e1","offset":2,"messages":[{"type":"message","channel":"chat:lobby","offset":2,"data":1}]}"#,
        ),
        (
            ServerMessage::Status {
                id: None,
                conn_id: "c1".into(),
                user_id: None,
                channels: vec![lobby],
                connected_ms: 10,
            },
            r#"{"type":"status","conn_id":"c1","user_id":null,"channels":["chat:lobby"],"connected_ms":10}"#,
        ),
    ];
    for (msg, golden) in table {
        assert_eq!(std::str::from_utf8(&msg.encode()).unwrap(), golden);
        assert_eq!(ServerMessage::decode(golden.as_bytes()).unwrap(), msg, "{golden}");
    }
}

#[test]
fn client_frames_match_golden_bytes() {
    let table = [
        (
            ClientFrame {
                id: Some(CommandId::Int(1)),
                command: Command::Subscribe { channel: ch("chat:lobby"), recover: Some(pos("e1", 5)) },
            },
            r#"{"type":"subscribe","id":1,"channel":"chat:lobby","recover":{"epoch":"e1","offset":5}}"#,
        ),
        (
            ClientFrame {
                id: Some(CommandId::Int(7)),
                command: Command::Publish {
                    channel: ch("chat:lobby"),
                    data: json(r#"{"text":"hi"}"#),
                    idempotency_key: None,
                },
            },
            r#"{"type":"publish","id":7,"channel":"chat:lobby","data":{"text":"hi"}}"#,
        ),
        (
            ClientFrame {
                id: Some(CommandId::Str("h".into())),
                command: Command::History { channel: ch("news"), limit: Some(10), since: Some(pos("e1", 3)) },
            },
            r#"{"type":"history","id":"h","channel":"news","limit":10,"since":{"epoch":"e1","offset":3}}"#,
        ),
        (ClientFrame { id: None, command: Command::Ping }, r#"{"type":"ping"}"#),
    ];
    for (frame, golden) in table {
        assert_eq!(std::str::from_utf8(&frame.encode()).unwrap(), golden);
        assert_eq!(ClientFrame::decode(golden.as_bytes()).unwrap(), frame, "{golden}");
    }
}

#[test]
fn echo_replies_carry_any_id_and_their_data() {
    use ws_protocol::{CommandId, Json, ServerMessage};
    let data = Json::parse(r#"{"a":[1,2]}"#).unwrap();
    for id in
        [None, Some(CommandId::Int(-42)), Some(CommandId::Str("req-1".into())), Some(CommandId::Str("é\"".into()))]
    {
        let frame = ServerMessage::Echo { id: id.clone(), data: data.clone() }.encode();
        let back = ServerMessage::decode(&frame).unwrap();
        assert_eq!(back, ServerMessage::Echo { id, data: data.clone() });
    }
}
