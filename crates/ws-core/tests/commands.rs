//! Every PROTOCOL.md command, driven through `Hub::handle_text` on the simulator.

use std::sync::Arc;

use ws_core::test_util::{RecordingConn, Sim};
use ws_core::{
    CustomCommand, Handler, HandlerError, HubConfig, Identity, NamespaceConfig, Namespaces, SlowConsumerPolicy,
};
use ws_protocol::{ChannelName, ClientInfo, CommandId, ErrorCode, Json, ServerMessage};

fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

fn only(mut msgs: Vec<ServerMessage>) -> ServerMessage {
    assert_eq!(msgs.len(), 1, "expected one reply, got {msgs:?}");
    msgs.remove(0)
}

fn error_code(msg: &ServerMessage) -> ErrorCode {
    match msg {
        ServerMessage::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn sim_with(ns: Namespaces) -> Sim {
    Sim::with_config(HubConfig::default().namespaces(ns))
}

#[test]
fn subscribe_replies_with_epoch_and_offset_and_is_idempotent() {
    let sim = Sim::new();
    let a = sim.connect();
    let first = only(sim.request(&a, r#"{"type":"subscribe","id":1,"channel":"news"}"#));
    let ServerMessage::Subscribed { id, channel, epoch, offset, recovered, missed } = first.clone() else {
        panic!("{first:?}")
    };
    assert_eq!((id, channel, offset, recovered, missed), (Some(CommandId::Int(1)), ch("news"), 0, None, None));
    assert!(!epoch.is_empty());
    let again = only(sim.request(&a, r#"{"type":"subscribe","id":1,"channel":"news"}"#));
    assert_eq!(again, first, "subscribing twice replies the same");
    assert_eq!(sim.hub.subscriber_count(&ch("news")), 1);
}

#[test]
fn publish_reaches_every_subscriber_including_the_sender() {
    let sim = Sim::new();
    let (a, b, c) = (sim.connect(), sim.connect(), sim.connect());
    for conn in [&a, &b] {
        sim.request(conn, r#"{"type":"subscribe","channel":"room"}"#);
    }
    let reply = sim.request(&a, r#"{"type":"publish","id":"p1","channel":"room","data":{"x":[1,2]}}"#);
    let want_msg = ServerMessage::Message(ws_protocol::Publication {
        channel: ch("room"),
        offset: 1,
        event: None,
        data: Json::parse(r#"{"x":[1,2]}"#).unwrap(),
    });
    assert_eq!(
        reply,
        vec![
            want_msg.clone(),
            ServerMessage::Published { id: Some(CommandId::Str("p1".into())), channel: ch("room"), offset: 1 }
        ]
    );
    assert_eq!(b.messages(), vec![want_msg]);
    assert!(c.messages().is_empty(), "a non-subscriber gets nothing");
}

#[test]
fn publish_without_id_gets_no_published_reply() {
    let sim = Sim::new();
    let a = sim.connect();
    assert!(sim.request(&a, r#"{"type":"publish","channel":"room","data":1}"#).is_empty());
}

#[test]
fn unsubscribe_stops_delivery_and_is_idempotent() {
    let sim = Sim::new();
    let (a, b) = (sim.connect(), sim.connect());
    sim.request(&a, r#"{"type":"subscribe","channel":"room"}"#);
    let reply = only(sim.request(&a, r#"{"type":"unsubscribe","id":2,"channel":"room"}"#));
    assert_eq!(
        reply,
        ServerMessage::Unsubscribed {
            id: Some(CommandId::Int(2)),
            channel: ch("room"),
            reason: None,
            resubscribe: false
        }
    );
    let again = only(sim.request(&a, r#"{"type":"unsubscribe","id":2,"channel":"room"}"#));
    assert_eq!(again, reply);
    sim.request(&b, r#"{"type":"publish","channel":"room","data":1}"#);
    assert!(a.messages().is_empty());
    assert!(sim.hub.channels().is_empty(), "an empty channel without history is removed");
}

#[test]
fn ping_echo_status() {
    let sim = Sim::new();
    let a = sim.connect_user("u7");
    assert_eq!(only(sim.request(&a, r#"{"type":"ping","id":9}"#)), ServerMessage::Pong { id: Some(CommandId::Int(9)) });
    assert_eq!(
        only(sim.request(&a, r#"{"type":"echo","data":["a",{"b":null}]}"#)),
        ServerMessage::Echo { id: None, data: Json::parse(r#"["a",{"b":null}]"#).unwrap() }
    );
    sim.request(&a, r#"{"type":"subscribe","channel":"b"}"#);
    sim.request(&a, r#"{"type":"subscribe","channel":"a"}"#);
    sim.clock.advance(1234);
    let status = only(sim.request(&a, r#"{"type":"status","id":"s"}"#));
    assert_eq!(
        status,
        ServerMessage::Status {
            id: Some(CommandId::Str("s".into())),
            conn_id: a.id().to_string(),
            user_id: Some("u7".into()),
            channels: vec![ch("a"), ch("b")],
            connected_ms: 1234,
        }
    );
}

#[test]
fn malformed_commands_get_bad_request_and_keep_the_connection() {
    let sim = Sim::new();
    let a = sim.connect();
    let cases = [
        ("not json", None),
        ("[1,2]", None),
        (r#"{"id":3}"#, Some(CommandId::Int(3))),
        (r#"{"type":"subscribe","id":4}"#, Some(CommandId::Int(4))),
        (r#"{"type":"subscribe","id":5,"channel":"bad channel"}"#, Some(CommandId::Int(5))),
        (r#"{"type":"publish","id":6,"channel":"x"}"#, Some(CommandId::Int(6))),
        (r#"{"type":7}"#, None),
    ];
    for (frame, want_id) in cases {
        match only(sim.request(&a, frame)) {
            ServerMessage::Error { id, code: ErrorCode::BadRequest, message } => {
                assert_eq!(id, want_id, "{frame}");
                assert!(!message.is_empty());
            }
            other => panic!("{frame}: {other:?}"),
        }
        assert!(a.closed().is_none());
    }
    assert_eq!(only(sim.request(&a, r#"{"type":"ping"}"#)), ServerMessage::Pong { id: None });
}

#[test]
fn unknown_type_and_binary_frames() {
    let sim = Sim::new();
    let a = sim.connect();
    let reply = only(sim.request(&a, r#"{"type":"launch","id":1}"#));
    assert_eq!(error_code(&reply), ErrorCode::UnknownType);
    sim.hub.handle_binary(a.id());
    assert_eq!(error_code(&only(a.messages())), ErrorCode::UnsupportedFrame);
    assert!(a.closed().is_none());
}

#[derive(Debug)]
struct Shout;

impl Handler for Shout {
    fn handle(&self, hub: &ws_core::Hub, cmd: &CustomCommand<'_>) -> Result<(), HandlerError> {
        let v: serde_json::Value = serde_json::from_slice(cmd.frame).unwrap();
        let Some(text) = v["text"].as_str() else {
            return Err(HandlerError::new(ErrorCode::BadRequest, "field `text` must be a string"));
        };
        let reply = serde_json::json!({"type": "shouted", "id": cmd.id, "text": text.to_uppercase()});
        hub.send(cmd.conn_id, &serde_json::to_vec(&reply).unwrap().into()).unwrap();
        Ok(())
    }
}

#[test]
fn application_handlers_claim_custom_types() {
    let sim = Sim::new();
    sim.hub.register_handler("shout", Arc::new(Shout));
    let a = sim.connect();
    sim.send(&a, r#"{"type":"shout","id":1,"text":"hi"}"#);
    let got: serde_json::Value = serde_json::from_slice(&a.drain()[0]).unwrap();
    assert_eq!(got, serde_json::json!({"type":"shouted","id":1,"text":"HI"}));
    let err = only(sim.request(&a, r#"{"type":"shout","id":2}"#));
    assert_eq!(
        err,
        ServerMessage::Error {
            id: Some(CommandId::Int(2)),
            code: ErrorCode::BadRequest,
            message: "field `text` must be a string".into()
        }
    );
}

#[test]
fn namespace_rules_publish_anonymous_and_payload() {
    let ns = Namespaces::default()
        .with("ro", NamespaceConfig::default().allow_publish(false))
        .with("members", NamespaceConfig::default().allow_anonymous(false))
        .with("small", NamespaceConfig::default().max_payload_bytes(8));
    let sim = sim_with(ns);
    let anon = sim.connect();
    let user = sim.connect_user("1");
    let code = |conn: &RecordingConn, frame: &str| error_code(&only(sim.request(conn, frame)));
    assert_eq!(code(&user, r#"{"type":"publish","channel":"ro:x","data":1}"#), ErrorCode::Forbidden);
    assert_eq!(code(&anon, r#"{"type":"subscribe","channel":"members:x"}"#), ErrorCode::Unauthorized);
    assert!(matches!(
        only(sim.request(&user, r#"{"type":"subscribe","channel":"members:x"}"#)),
        ServerMessage::Subscribed { .. }
    ));
    assert_eq!(code(&user, r#"{"type":"publish","channel":"small:x","data":"123456789"}"#), ErrorCode::LimitExceeded);
    assert!(sim.request(&user, r#"{"type":"publish","channel":"small:x","data":"12345"}"#).is_empty());
    // An unconfigured namespace gets the default policy.
    assert!(matches!(
        only(sim.request(&anon, r#"{"type":"subscribe","channel":"other:x"}"#)),
        ServerMessage::Subscribed { .. }
    ));
}

#[test]
fn user_channels_belong_to_their_user() {
    let sim = Sim::new();
    let (anon, alice, bob) = (sim.connect(), sim.connect_user("alice"), sim.connect_user("bob"));
    let sub = r#"{"type":"subscribe","channel":"inbox#alice"}"#;
    assert_eq!(error_code(&only(sim.request(&anon, sub))), ErrorCode::Unauthorized);
    assert_eq!(error_code(&only(sim.request(&bob, sub))), ErrorCode::Forbidden);
    assert!(matches!(only(sim.request(&alice, sub)), ServerMessage::Subscribed { .. }));
    // A grant from the backend outranks the rule.
    let granted = sim.connect_as(Identity::user("carol").with_channels(vec![ch("inbox#alice")]), usize::MAX);
    assert!(matches!(only(sim.request(&granted, sub)), ServerMessage::Subscribed { .. }));
}

#[test]
fn granted_channels_override_the_anonymous_rule() {
    let sim = sim_with(Namespaces::new(NamespaceConfig::default().allow_anonymous(false)));
    let grant = Identity::anonymous().with_channels(vec![ch("open")]);
    let a = sim.connect_as(grant, usize::MAX);
    assert!(matches!(
        only(sim.request(&a, r#"{"type":"subscribe","channel":"open"}"#)),
        ServerMessage::Subscribed { .. }
    ));
    assert_eq!(
        error_code(&only(sim.request(&a, r#"{"type":"subscribe","channel":"closed"}"#))),
        ErrorCode::Unauthorized
    );
}

#[test]
fn channel_limit_per_connection() {
    let sim = Sim::with_config(HubConfig::default().max_channels_per_conn(2));
    let a = sim.connect();
    for c in ["a", "b"] {
        sim.request(&a, &format!(r#"{{"type":"subscribe","channel":"{c}"}}"#));
    }
    assert_eq!(error_code(&only(sim.request(&a, r#"{"type":"subscribe","channel":"c"}"#))), ErrorCode::LimitExceeded);
    // Re-subscribing to a channel it already has is not a new channel.
    assert!(matches!(only(sim.request(&a, r#"{"type":"subscribe","channel":"a"}"#)), ServerMessage::Subscribed { .. }));
}

#[test]
fn presence_lists_subscribers_where_enabled() {
    let sim = sim_with(Namespaces::default().with("p", NamespaceConfig::default().presence(true)));
    let (a, b) = (sim.connect_user("alice"), sim.connect());
    let forbidden = only(sim.request(&a, r#"{"type":"presence","channel":"nop"}"#));
    assert_eq!(error_code(&forbidden), ErrorCode::Forbidden);
    sim.request(&a, r#"{"type":"subscribe","channel":"p:x"}"#);
    sim.request(&b, r#"{"type":"subscribe","channel":"p:x"}"#);
    let ServerMessage::Presence { channel, mut clients, .. } =
        only(sim.request(&a, r#"{"type":"presence","channel":"p:x"}"#))
    else {
        panic!()
    };
    clients.sort_by(|x, y| x.conn_id.cmp(&y.conn_id));
    assert_eq!(channel, ch("p:x"));
    assert_eq!(
        clients,
        vec![
            ClientInfo { conn_id: a.id().to_string(), user_id: Some("alice".into()) },
            ClientInfo { conn_id: b.id().to_string(), user_id: None },
        ]
    );
}

#[test]
fn join_and_leave_events_where_enabled() {
    let sim = sim_with(Namespaces::default().with("j", NamespaceConfig::default().join_leave(true)));
    let (a, b) = (sim.connect_user("alice"), sim.connect_user("bob"));
    sim.request(&a, r#"{"type":"subscribe","channel":"j:x"}"#);
    sim.request(&b, r#"{"type":"subscribe","channel":"j:x"}"#);
    let bob = ClientInfo { conn_id: b.id().to_string(), user_id: Some("bob".into()) };
    assert_eq!(a.messages(), vec![ServerMessage::Join { channel: ch("j:x"), client: bob.clone() }]);
    sim.disconnect(&b);
    assert_eq!(a.messages(), vec![ServerMessage::Leave { channel: ch("j:x"), client: bob }]);
    // Off by default.
    sim.request(&a, r#"{"type":"subscribe","channel":"plain"}"#);
    a.drain();
    sim.request(&sim.connect(), r#"{"type":"subscribe","channel":"plain"}"#);
    assert!(a.messages().is_empty());
}

fn history_sim() -> Sim {
    sim_with(Namespaces::default().with("h", NamespaceConfig::default().history(3, 60_000)))
}

fn publish_n(sim: &Sim, conn: &RecordingConn, channel: &str, n: u64) {
    for i in 0..n {
        sim.send(conn, &format!(r#"{{"type":"publish","channel":"{channel}","data":{i}}}"#));
    }
}

#[test]
fn history_returns_kept_messages_and_respects_limit_and_since() {
    let sim = history_sim();
    let a = sim.connect();
    assert_eq!(error_code(&only(sim.request(&a, r#"{"type":"history","channel":"plain"}"#))), ErrorCode::Forbidden);
    publish_n(&sim, &a, "h:x", 5);
    let ServerMessage::History { epoch, offset, messages, .. } =
        only(sim.request(&a, r#"{"type":"history","id":1,"channel":"h:x"}"#))
    else {
        panic!()
    };
    assert_eq!(offset, 5);
    assert_eq!(messages.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![3, 4, 5], "size 3 keeps the newest");
    let ServerMessage::History { messages, .. } =
        only(sim.request(&a, r#"{"type":"history","channel":"h:x","limit":2}"#))
    else {
        panic!()
    };
    assert_eq!(messages.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![4, 5]);
    let since = format!(r#"{{"type":"history","channel":"h:x","since":{{"epoch":"{epoch}","offset":4}}}}"#);
    let ServerMessage::History { messages, .. } = only(sim.request(&a, &since)) else { panic!() };
    assert_eq!(
        messages.iter().map(|m| (m.offset, m.data.as_str().to_owned())).collect::<Vec<_>>(),
        vec![(5, "4".into())]
    );
    sim.clock.advance(60_000);
    let ServerMessage::History { messages, offset, .. } =
        only(sim.request(&a, r#"{"type":"history","channel":"h:x"}"#))
    else {
        panic!()
    };
    assert!(messages.is_empty(), "messages past their TTL are gone");
    assert_eq!(offset, 5, "the offset survives expiry");
    assert_eq!(sim.hub.sweep(), 1, "a channel with no subscribers and expired history is removed");
}

fn subscribe_recover(sim: &Sim, conn: &RecordingConn, channel: &str, epoch: &str, offset: u64) -> Vec<ServerMessage> {
    sim.request(
        conn,
        &format!(r#"{{"type":"subscribe","channel":"{channel}","recover":{{"epoch":"{epoch}","offset":{offset}}}}}"#),
    )
}

#[test]
fn recovery_replays_missed_messages_in_order_after_the_reply() {
    let sim = history_sim();
    let (a, publisher) = (sim.connect(), sim.connect());
    let ServerMessage::Subscribed { epoch, .. } = only(sim.request(&a, r#"{"type":"subscribe","channel":"h:x"}"#))
    else {
        panic!()
    };
    publish_n(&sim, &publisher, "h:x", 1);
    a.drain();
    sim.disconnect(&a);
    publish_n(&sim, &publisher, "h:x", 2);
    let b = sim.connect();
    let got = subscribe_recover(&sim, &b, "h:x", &epoch, 1);
    let ServerMessage::Subscribed { recovered, missed, offset, .. } = &got[0] else { panic!("{got:?}") };
    assert_eq!((*recovered, *missed, *offset), (Some(true), Some(2), 3));
    let offsets: Vec<u64> = got[1..]
        .iter()
        .map(|m| match m {
            ServerMessage::Message(p) => p.offset,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(offsets, vec![2, 3]);
    // Up to date: recovered with nothing missed.
    let c = sim.connect();
    let got = subscribe_recover(&sim, &c, "h:x", &epoch, 3);
    assert!(matches!(got[..], [ServerMessage::Subscribed { recovered: Some(true), missed: Some(0), .. }]));
}

#[test]
fn recovery_fails_whole_on_gaps_or_other_epochs() {
    let sim = history_sim();
    let a = sim.connect();
    publish_n(&sim, &a, "h:x", 6);
    let epoch = match only(sim.request(&a, r#"{"type":"subscribe","channel":"h:x"}"#)) {
        ServerMessage::Subscribed { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    };
    for (epoch, offset) in [(epoch.as_str(), 1), ("other", 5), (epoch.as_str(), 99)] {
        let b = sim.connect();
        let got = subscribe_recover(&sim, &b, "h:x", epoch, offset);
        assert!(
            matches!(got[..], [ServerMessage::Subscribed { recovered: Some(false), missed: Some(0), offset: 6, .. }]),
            "{epoch} {offset}: {got:?}"
        );
    }
    // Without history in the namespace, recovery always fails.
    let c = sim.connect();
    let got = subscribe_recover(&sim, &c, "plain", "e", 0);
    assert!(matches!(got[..], [ServerMessage::Subscribed { recovered: Some(false), .. }]), "{got:?}");
}

#[test]
fn slow_consumer_is_closed_with_4000_and_others_keep_receiving() {
    let sim = Sim::new();
    let slow = sim.connect_as(Identity::anonymous(), 2);
    let fast = sim.connect();
    for c in [&slow, &fast] {
        sim.request(c, r#"{"type":"subscribe","channel":"room"}"#);
    }
    publish_n(&sim, &fast, "room", 5);
    assert_eq!(slow.closed(), Some((4000, "slow consumer".into())));
    assert_eq!(fast.messages().len(), 5);
    let stats = sim.hub.stats();
    assert_eq!(stats.drops_slow_consumer, 1, "closed once; later sends see a closed connection");
    assert_eq!(stats.drops_closed, 2);
}

#[test]
fn drop_policy_drops_messages_and_keeps_the_connection() {
    let ns =
        Namespaces::default().with("lossy", NamespaceConfig::default().slow_consumer(SlowConsumerPolicy::DropMessage));
    let sim = sim_with(ns);
    let slow = sim.connect_as(Identity::anonymous(), 2);
    let publisher = sim.connect();
    sim.request(&slow, r#"{"type":"subscribe","channel":"lossy:x"}"#);
    publish_n(&sim, &publisher, "lossy:x", 5);
    assert!(slow.closed().is_none());
    assert_eq!(slow.drain().len(), 2);
    assert_eq!(sim.hub.stats().drops_queue_full, 3);
}

#[test]
fn disconnect_cleans_every_subscription() {
    let sim = Sim::new();
    let a = sim.connect_user("u");
    for c in ["a", "b", "c"] {
        sim.request(&a, &format!(r#"{{"type":"subscribe","channel":"{c}"}}"#));
    }
    assert_eq!(sim.hub.stats().subscriptions, 3);
    sim.disconnect(&a);
    let stats = sim.hub.stats();
    assert_eq!((stats.connections, stats.channels, stats.subscriptions), (0, 0, 0));
    assert!(sim.hub.user_connections("u").is_empty());
    assert!(sim.hub.connection(a.id()).is_none());
}

#[test]
fn recovery_too_large_for_the_queue_is_refused_whole() {
    let ns = Namespaces::default().with("h", NamespaceConfig::default().history(100, 60_000));
    let sim = Sim::with_config(HubConfig::default().namespaces(ns).max_recovery(3, 1 << 20));
    let (keeper, publisher) = (sim.connect(), sim.connect());
    let ServerMessage::Subscribed { epoch, .. } = only(sim.request(&keeper, r#"{"type":"subscribe","channel":"h:x"}"#))
    else {
        panic!()
    };
    publish_n(&sim, &publisher, "h:x", 4);
    let b = sim.connect();
    let got = subscribe_recover(&sim, &b, "h:x", &epoch, 0);
    assert!(
        matches!(got[..], [ServerMessage::Subscribed { recovered: Some(false), missed: Some(0), offset: 4, .. }]),
        "{got:?}"
    );
    let c = sim.connect();
    let got = subscribe_recover(&sim, &c, "h:x", &epoch, 1);
    assert!(matches!(got[0], ServerMessage::Subscribed { recovered: Some(true), missed: Some(3), .. }), "{got:?}");
    assert_eq!(got.len(), 4);
}

#[test]
fn a_replay_is_promised_only_when_the_queue_has_room_for_it_now() {
    for policy in [SlowConsumerPolicy::Disconnect, SlowConsumerPolicy::DropMessage] {
        let ns = Namespaces::default().with("h", NamespaceConfig::default().history(100, 60_000).slow_consumer(policy));
        let sim = sim_with(ns);
        let (keeper, publisher) = (sim.connect(), sim.connect());
        let ServerMessage::Subscribed { epoch, .. } =
            only(sim.request(&keeper, r#"{"type":"subscribe","channel":"h:x"}"#))
        else {
            panic!()
        };
        publish_n(&sim, &publisher, "h:x", 4);
        // Within every static limit, but this queue holds 5 frames and 2 are already waiting: the reply and
        // 4 replayed messages do not fit now.
        let busy = sim.connect_as(Identity::anonymous(), 5);
        sim.request(&busy, r#"{"type":"subscribe","channel":"other"}"#);
        publish_n(&sim, &publisher, "other", 1);
        sim.send(
            &busy,
            &format!(r#"{{"type":"subscribe","channel":"h:x","recover":{{"epoch":"{epoch}","offset":0}}}}"#),
        );
        let got = busy.messages();
        assert_eq!(got.len(), 2, "{policy:?}: {got:?}");
        assert!(
            matches!(got[1], ServerMessage::Subscribed { recovered: Some(false), missed: Some(0), offset: 4, .. }),
            "{policy:?}: no recovery promised: {got:?}"
        );
        assert!(busy.closed().is_none(), "{policy:?}");
        // With the queue read, the same request fits and is replayed whole.
        sim.request(&busy, r#"{"type":"unsubscribe","channel":"h:x"}"#);
        let got = sim.request(
            &busy,
            &format!(r#"{{"type":"subscribe","channel":"h:x","recover":{{"epoch":"{epoch}","offset":1}}}}"#),
        );
        assert!(matches!(got[0], ServerMessage::Subscribed { recovered: Some(true), missed: Some(3), .. }), "{got:?}");
        assert_eq!(got.len(), 4, "{policy:?}");
    }
}

#[test]
fn a_subscribed_reply_is_never_dropped_even_under_the_drop_policy() {
    let ns =
        Namespaces::default().with("lossy", NamespaceConfig::default().slow_consumer(SlowConsumerPolicy::DropMessage));
    let sim = sim_with(ns);
    let full = sim.connect_as(Identity::anonymous(), 1);
    sim.send(&full, r#"{"type":"echo","data":1}"#);
    sim.send(&full, r#"{"type":"subscribe","id":7,"channel":"lossy:x"}"#);
    assert_eq!(full.closed(), Some((4000, "slow consumer".into())), "a reply that cannot be queued closes");
}

#[test]
fn in_memory_history_is_capped_for_the_whole_node_and_the_oldest_histories_go_first() {
    let cap = 1 << 20;
    let ns = Namespaces::default().with("h", NamespaceConfig::default().history(100, 600_000));
    let sim = Sim::with_config(HubConfig::default().namespaces(ns).max_history_bytes(cap));
    let publisher = sim.connect();
    let kilobyte = format!("\"{}\"", "x".repeat(1000));
    let mut epochs = Vec::new();
    for i in 0..5000 {
        sim.send(&publisher, &format!(r#"{{"type":"publish","channel":"h:{i}","data":{kilobyte}}}"#));
        if i < 10 {
            epochs.push(sim.hub.history(&ch(&format!("h:{i}")), 10, None).epoch);
        }
        sim.clock.advance(1);
        let stats = sim.hub.stats();
        // The count is checked once per eighth of a stripe's share, so it may pass the cap by an eighth.
        assert!(stats.history_bytes <= (cap + cap / 8) as u64, "{} bytes after {i} publishes", stats.history_bytes);
    }
    let stats = sim.hub.stats();
    assert!(stats.history_evictions > 0);
    assert!(stats.history_bytes > (cap / 2) as u64, "eviction stops near the cap: {}", stats.history_bytes);
    // The oldest histories went, and their channels have a new epoch: recovery says so.
    let oldest = sim.hub.history(&ch("h:0"), 10, None);
    assert!(oldest.publications.is_empty());
    assert_ne!(oldest.epoch, epochs[0]);
    let late = sim.connect();
    let got = subscribe_recover(&sim, &late, "h:0", &epochs[0], 0);
    assert!(matches!(got[..], [ServerMessage::Subscribed { recovered: Some(false), .. }]), "{got:?}");
    // The newest are kept whole.
    let newest = sim.hub.history(&ch("h:4999"), 10, None);
    assert_eq!(newest.publications.len(), 1);
    // The count is exact: once every history has expired, nothing is left counted.
    sim.clock.advance(600_000);
    sim.hub.sweep();
    assert_eq!(sim.hub.stats().history_bytes, 0);
}

#[test]
fn resubscribing_with_recover_replays_nothing_already_delivered() {
    let sim = history_sim();
    let (a, publisher) = (sim.connect(), sim.connect());
    let ServerMessage::Subscribed { epoch, .. } = only(sim.request(&a, r#"{"type":"subscribe","channel":"h:x"}"#))
    else {
        panic!()
    };
    publish_n(&sim, &publisher, "h:x", 2);
    assert_eq!(a.messages().len(), 2, "delivered live");
    let got = subscribe_recover(&sim, &a, "h:x", &epoch, 0);
    assert!(
        matches!(got[..], [ServerMessage::Subscribed { recovered: Some(true), missed: Some(0), offset: 2, .. }]),
        "{got:?}"
    );
}

#[test]
fn handle_text_reports_whether_a_publish_went_out() {
    let sim = Sim::new();
    let a = sim.connect();
    assert!(!sim.hub.handle_text(a.id(), br#"{"type":"subscribe","channel":"news"}"#));
    assert!(sim.hub.handle_text(a.id(), br#"{"type":"publish","channel":"news","data":1}"#));
    assert!(!sim.hub.handle_text(a.id(), br#"{"type":"publish","channel":"bad name!","data":1}"#));
    assert!(!sim.hub.handle_text(a.id(), br#"{"type":"echo","data":1}"#));
    assert!(!sim.hub.handle_text(a.id(), b"not json"));
}
