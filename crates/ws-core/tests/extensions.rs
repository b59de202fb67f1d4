//! The hub's seams and conveniences: hooks, direct sends, disconnects and the process helpers.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ws_core::test_util::{ManualClock, RecordingConn};
use ws_core::{
    ConnInfo, DisconnectReason, Hooks, Hub, Identity, ProcessError, ProcessState, ProcessStatus, ProcessStream,
};
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
    hub.send(b.id(), &frame).unwrap();
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
fn process_helpers_publish_typed_output_and_the_callers_timestamp() {
    // The hub's clock reads 0: a status's time can only come from the caller.
    let hub = Hub::builder(ManualClock::new(0)).build();
    let a = connect(&hub, Identity::anonymous());
    hub.subscribe(a.id(), &ch("process:build-7")).unwrap();
    a.drain();
    assert_eq!(hub.send_process_output("build-7", ProcessStream::Stdout, "compiling \"ws-core\"").unwrap(), 1);
    assert_eq!(hub.send_process_output("build-7", ProcessStream::Stderr, "warning: unused").unwrap(), 2);
    let exited = ProcessStatus::new(ProcessState::Exited, 1_733_318_400_123).code(0);
    assert_eq!(hub.send_process_status("build-7", &exited).unwrap(), 3);
    let got: Vec<(Option<String>, String)> = a
        .messages()
        .into_iter()
        .map(|m| match m {
            ServerMessage::Message(p) => (p.event, p.data.as_str().to_owned()),
            other => panic!("{other:?}"),
        })
        .collect();
    let event = |e: &str, data: &str| (Some(e.to_owned()), data.to_owned());
    assert_eq!(
        got,
        vec![
            event("process_output", r#"{"line":"compiling \"ws-core\"","stream":"stdout"}"#),
            event("process_output", r#"{"line":"warning: unused","stream":"stderr"}"#),
            event("process_status", r#"{"state":"exited","code":0,"at_ms":1733318400123}"#),
        ]
    );
    assert!(matches!(
        hub.send_process_output("bad id", ProcessStream::Stdout, "x"),
        Err(ProcessError::InvalidId { .. })
    ));
    let long = "x".repeat(64 * 1024 + 1);
    assert!(matches!(
        hub.send_process_output("build-7", ProcessStream::Stdout, &long),
        Err(ProcessError::LineTooLong { .. })
    ));
    assert!(a.messages().is_empty(), "refused events publish nothing");
}
