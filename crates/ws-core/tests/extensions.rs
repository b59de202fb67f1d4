//! The hub's seams and conveniences: hooks, direct sends, disconnects and the process helpers.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ws_core::test_util::{ManualClock, RecordingConn};
use ws_core::{ConnInfo, DisconnectReason, Hooks, Hub, Identity};
use ws_protocol::{ChannelName, ServerMessage};

fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

#[derive(Debug, Default)]
struct RecordingHooks(Mutex<Vec<String>>);

impl Hooks for RecordingHooks {
    fn on_connect(&self, info: &ConnInfo) {
        self.0.lock().push(format!("connect {:?}", info.user_id.as_deref()));
    }
    fn on_disconnect(&self, info: &ConnInfo, reason: &DisconnectReason) {
        self.0.lock().push(format!("disconnect {:?} {} {:?}", info.user_id.as_deref(), reason.code, info.channels));
    }
}

fn connect(hub: &Hub, identity: Identity) -> Arc<RecordingConn> {
    let conn = RecordingConn::new(hub.next_conn_id());
    hub.register(conn.clone(), identity, None).unwrap();
    conn
}

#[test]
fn hooks_see_connects_and_disconnects_with_the_reason() {
    let hooks = Arc::new(RecordingHooks::default());
    let hub = Hub::builder(ManualClock::new(0)).hooks(hooks.clone()).build();
    let a = connect(&hub, Identity::user("u1"));
    hub.subscribe(a.id(), &ch("x")).unwrap();
    hub.unregister(a.id(), &DisconnectReason::new(4001, "heartbeat timeout"));
    assert!(hub.unregister(a.id(), &DisconnectReason::new(1000, "again")).is_none(), "unregister is once");
    assert_eq!(*hooks.0.lock(), ["connect Some(\"u1\")", "disconnect Some(\"u1\") 4001 [\"x\"]"]);
}

#[test]
fn direct_sends_broadcasts_and_disconnects() {
    let hub = Hub::builder(ManualClock::new(0)).build();
    let (a1, a2, b) = (
        connect(&hub, Identity::user("alice")),
        connect(&hub, Identity::user("alice")),
        connect(&hub, Identity::user("bob")),
    );
    let frame = Bytes::from_static(br#"{"type":"pong"}"#);
    hub.send(b.id(), frame.clone()).unwrap();
    assert_eq!(b.drain(), vec![frame.clone()]);
    assert_eq!(hub.send_to_user("alice", &frame), 2);
    assert_eq!((a1.drain().len(), a2.drain().len(), b.drain().len()), (1, 1, 0));
    assert_eq!(hub.broadcast(&frame), 3);
    assert_eq!(hub.disconnect_user("alice", 1008, "kicked", 0), 2);
    for conn in [&a1, &a2] {
        assert_eq!(conn.closed(), Some((1008, "kicked".into())));
        let last = conn.messages().pop().unwrap();
        assert_eq!(last, ServerMessage::Disconnect { code: 1008, reason: "kicked".into(), reconnect_after_ms: 0 });
    }
    assert!(b.closed().is_none());
    assert!(!hub.disconnect(ws_core::ConnId::new(999_999), 1008, "x", 0));
}

#[test]
fn process_helpers_publish_with_event_names() {
    let hub = Hub::builder(ManualClock::new(0)).build();
    let a = connect(&hub, Identity::anonymous());
    hub.subscribe(a.id(), &ch("process:build-7")).unwrap();
    a.drain();
    assert_eq!(hub.send_process_output("build-7", "compiling \"ws-core\"").unwrap(), 1);
    assert_eq!(hub.send_process_status("build-7", "exited 0").unwrap(), 2);
    let got = a.messages();
    let events: Vec<(Option<String>, String)> = got
        .into_iter()
        .map(|m| match m {
            ServerMessage::Message(p) => (p.event, p.data.decode::<String>().unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (Some("process_output".into()), "compiling \"ws-core\"".into()),
            (Some("process_status".into()), "exited 0".into())
        ]
    );
    assert!(hub.send_process_output("bad id", "x").is_err(), "ids must make valid channel names");
}
