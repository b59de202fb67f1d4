//! The clustered path against an in-memory sequencing broker: subscriptions wait for confirmation, the
//! broker numbers publications, gaps are filled from history or flagged, recovery merges history and live
//! messages. Completions run only when the test says so, which is how a networked broker behaves.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use ws_core::test_util::{ManualClock, RecordingConn};
use ws_core::{
    Broker, BrokerError, Done, HistoryReply, HistoryRequest, Hub, Identity, NamespaceConfig, Namespaces, Position,
    PublishRequest, WeakHub,
};
use ws_protocol::{ChannelName, ErrorCode, Publication, ServerMessage, UnsubscribeReason};

type Task = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    hub: Option<WeakHub>,
    streams: HashMap<ChannelName, (Arc<str>, Vec<Publication>)>,
    tasks: VecDeque<Task>,
    /// Publications numbered but not delivered: the test decides which ones get lost.
    undelivered: VecDeque<(Arc<str>, Publication)>,
    down: bool,
}

#[derive(Default)]
struct SimBroker(Mutex<State>);

impl std::fmt::Debug for SimBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimBroker")
    }
}

impl SimBroker {
    fn hub(&self) -> Hub {
        self.0.lock().hub.as_ref().unwrap().upgrade().unwrap()
    }
    /// Runs queued completions until none are left.
    fn run(&self) {
        loop {
            let task = self.0.lock().tasks.pop_front();
            match task {
                Some(t) => t(),
                None => return,
            }
        }
    }
    fn position(&self, ch: &ChannelName) -> Position {
        let mut s = self.0.lock();
        let (epoch, pubs) = s.streams.entry(ch.clone()).or_insert_with(|| (Arc::from("e1"), Vec::new()));
        Position { epoch: Arc::clone(epoch), offset: pubs.last().map_or(0, |p| p.offset) }
    }
    fn confirm(&self, ch: &ChannelName) {
        let pos = self.position(ch);
        self.hub().broker_subscribed(ch, Ok(pos));
    }
    /// Delivers the next `n` numbered publications; `skip` of them first are lost.
    fn deliver(&self, skip: usize, n: usize) {
        let mut batch = Vec::new();
        {
            let mut s = self.0.lock();
            for _ in 0..skip {
                s.undelivered.pop_front();
            }
            for _ in 0..n {
                batch.extend(s.undelivered.pop_front());
            }
        }
        let hub = self.hub();
        for (epoch, p) in batch {
            hub.broker_publication(&epoch, p);
        }
    }
    /// Loses the stream: a new epoch, offsets from zero.
    fn lose(&self, ch: &ChannelName) {
        self.0.lock().streams.insert(ch.clone(), (Arc::from("e2"), Vec::new()));
    }
}

impl Broker for SimBroker {
    fn clustered(&self) -> bool {
        true
    }
    fn attach(&self, hub: WeakHub) {
        self.0.lock().hub = Some(hub);
    }
    fn available(&self) -> bool {
        !self.0.lock().down
    }
    fn publish(&self, request: PublishRequest, done: Done<u64>) {
        let mut s = self.0.lock();
        let (epoch, pubs) = s.streams.entry(request.channel.clone()).or_insert_with(|| (Arc::from("e1"), Vec::new()));
        let offset = pubs.last().map_or(0, |p| p.offset) + 1;
        let p = Publication { channel: request.channel, offset, event: request.event, data: request.data };
        pubs.push(p.clone());
        let epoch = Arc::clone(epoch);
        s.undelivered.push_back((epoch, p));
        s.tasks.push_back(Box::new(move || done(Ok(offset))));
    }
    fn history(&self, request: HistoryRequest, done: Done<HistoryReply>) {
        let mut s = self.0.lock();
        let (epoch, pubs) = s.streams.get(&request.channel).cloned().unwrap_or((Arc::from("e1"), Vec::new()));
        let after = request.since.filter(|p| *p.epoch == *epoch).map_or(0, |p| p.offset);
        let matching: Vec<Publication> = pubs.iter().filter(|p| p.offset > after).cloned().collect();
        let start = matching.len().saturating_sub(request.limit);
        let reply = HistoryReply {
            position: Position { epoch, offset: pubs.last().map_or(0, |p| p.offset) },
            publications: matching[start..].to_vec(),
        };
        s.tasks.push_back(Box::new(move || done(Ok(reply))));
    }
}

fn ch(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

fn setup() -> (Arc<SimBroker>, Hub) {
    let broker = Arc::new(SimBroker::default());
    let namespaces = Namespaces::new(NamespaceConfig::default().history(100, 0));
    let config = ws_core::HubConfig::default().namespaces(namespaces);
    let hub = Hub::builder(ManualClock::new(0)).config(config).broker(broker.clone()).build();
    (broker, hub)
}

fn connect(hub: &Hub) -> Arc<RecordingConn> {
    let conn = RecordingConn::new(hub.next_conn_id());
    hub.register(conn.clone(), Identity::anonymous(), None).unwrap();
    conn
}

fn offsets(msgs: &[ServerMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMessage::Message(p) => Some(p.offset),
            _ => None,
        })
        .collect()
}

#[test]
fn subscribed_waits_for_the_broker_and_publications_are_numbered_by_it() {
    let (broker, hub) = setup();
    let a = connect(&hub);
    hub.handle_text(a.id(), br#"{"type":"subscribe","id":1,"channel":"x"}"#);
    assert!(a.messages().is_empty(), "no reply before the broker confirmed");
    assert!(hub.broker_wants(&ch("x")));
    broker.confirm(&ch("x"));
    let got = a.messages();
    assert!(matches!(&got[..], [ServerMessage::Subscribed { offset: 0, epoch, .. }] if epoch == "e1"), "{got:?}");

    hub.handle_text(a.id(), br#"{"type":"publish","id":2,"channel":"x","data":1}"#);
    assert!(a.messages().is_empty(), "the origin does not deliver before the broker publishes");
    broker.run();
    broker.deliver(0, 1);
    let got = a.messages();
    assert!(matches!(&got[0], ServerMessage::Published { offset: 1, .. }), "{got:?}");
    assert_eq!(offsets(&got), [1]);

    hub.handle_text(a.id(), br#"{"type":"unsubscribe","id":3,"channel":"x"}"#);
    assert!(!hub.broker_wants(&ch("x")), "the last subscriber gone, the broker may unsubscribe");
}

#[test]
fn a_skipped_offset_is_filled_from_history_and_duplicates_are_dropped() {
    let (broker, hub) = setup();
    let a = connect(&hub);
    hub.handle_text(a.id(), br#"{"type":"subscribe","channel":"x"}"#);
    broker.confirm(&ch("x"));
    for _ in 0..4 {
        hub.publish(&ch("x"), ws_protocol::Json::null());
    }
    broker.run();
    broker.deliver(0, 1); // 1
    broker.deliver(2, 1); // 2 and 3 lost, 4 arrives
    assert_eq!(offsets(&a.messages()), [1], "held until the gap is read");
    broker.run();
    assert_eq!(offsets(&a.messages()), [2, 3, 4], "the gap, then what was held, in order");
    assert_eq!(hub.stats().gaps_filled, 1);
    // A late duplicate is dropped.
    let dup = Publication { channel: ch("x"), offset: 3, event: None, data: ws_protocol::Json::null() };
    hub.broker_publication("e1", dup);
    assert!(a.messages().is_empty());
}

#[test]
fn a_gap_that_history_cannot_fill_is_flagged_not_skipped() {
    let (broker, hub) = setup();
    let a = connect(&hub);
    hub.handle_text(a.id(), br#"{"type":"subscribe","channel":"x"}"#);
    broker.confirm(&ch("x"));
    a.messages();
    // The broker lost the stream (Redis restarted empty) and reports the new position.
    broker.lose(&ch("x"));
    broker.confirm(&ch("x"));
    let got = a.messages();
    assert_eq!(
        got,
        [ServerMessage::Unsubscribed {
            id: None,
            channel: ch("x"),
            reason: Some(UnsubscribeReason::InsufficientState),
            resubscribe: true,
        }]
    );
    assert_eq!(hub.subscriber_count(&ch("x")), 0);
    assert_eq!(hub.stats().gaps_flagged, 1);
    assert!(hub.connection(a.id()).unwrap().channels.is_empty());
}

#[test]
fn recovery_merges_the_read_range_with_live_messages_that_arrive_meanwhile() {
    let (broker, hub) = setup();
    let a = connect(&hub);
    hub.handle_text(a.id(), br#"{"type":"subscribe","channel":"x"}"#);
    broker.confirm(&ch("x"));
    for _ in 0..3 {
        hub.publish(&ch("x"), ws_protocol::Json::null());
    }
    broker.run();
    broker.deliver(0, 3);
    // b saw offset 1 elsewhere and recovers here.
    let b = connect(&hub);
    hub.handle_text(b.id(), br#"{"type":"subscribe","id":1,"channel":"x","recover":{"epoch":"e1","offset":1}}"#);
    assert!(b.messages().is_empty(), "the reply waits for the read");
    hub.publish(&ch("x"), ws_protocol::Json::null());
    let pending: Vec<_> = std::mem::take(&mut broker.0.lock().tasks).into_iter().collect();
    // The live message 4 arrives before the history read completes.
    broker.deliver(0, 1);
    for t in pending {
        t();
    }
    let got = b.messages();
    assert!(
        matches!(&got[0], ServerMessage::Subscribed { recovered: Some(true), missed: Some(3), offset: 4, .. }),
        "{got:?}"
    );
    assert_eq!(offsets(&got), [2, 3, 4]);
}

#[test]
fn a_clustered_recovery_is_promised_only_when_the_queue_has_room_for_it_now() {
    let (broker, hub) = setup();
    let a = connect(&hub);
    hub.handle_text(a.id(), br#"{"type":"subscribe","channel":"x"}"#);
    broker.confirm(&ch("x"));
    for _ in 0..4 {
        hub.publish(&ch("x"), ws_protocol::Json::null());
    }
    broker.run();
    broker.deliver(0, 4);
    // b has room for 3 frames: the reply and 4 replayed messages do not fit.
    let b = RecordingConn::with_capacity(hub.next_conn_id(), 3);
    hub.register(b.clone(), Identity::anonymous(), None).unwrap();
    hub.handle_text(b.id(), br#"{"type":"subscribe","id":1,"channel":"x","recover":{"epoch":"e1","offset":0}}"#);
    broker.run();
    let got = b.messages();
    assert!(
        matches!(&got[..], [ServerMessage::Subscribed { recovered: Some(false), missed: Some(0), offset: 4, .. }]),
        "{got:?}"
    );
    assert!(b.closed().is_none());
    // Subscribed all the same: live messages follow.
    hub.publish(&ch("x"), ws_protocol::Json::null());
    broker.run();
    broker.deliver(0, 1);
    assert_eq!(offsets(&b.messages()), [5]);
}

#[test]
fn while_the_broker_is_down_commands_answer_unavailable() {
    let (broker, hub) = setup();
    let a = connect(&hub);
    broker.0.lock().down = true;
    hub.handle_text(a.id(), br#"{"type":"subscribe","id":1,"channel":"x"}"#);
    hub.handle_text(a.id(), br#"{"type":"publish","id":2,"channel":"x","data":1}"#);
    hub.handle_text(a.id(), br#"{"type":"history","id":3,"channel":"x"}"#);
    let codes: Vec<ErrorCode> = a
        .messages()
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [ErrorCode::Unavailable; 3]);
    assert!(hub.connection(a.id()).unwrap().channels.is_empty(), "nothing subscribed");
    // A subscription the broker cannot make is answered too.
    broker.0.lock().down = false;
    hub.handle_text(a.id(), br#"{"type":"subscribe","id":4,"channel":"y"}"#);
    hub.broker_subscribed(&ch("y"), Err(BrokerError::Unavailable("down".into())));
    assert!(matches!(&a.messages()[..], [ServerMessage::Error { code: ErrorCode::Unavailable, .. }]));
    assert!(!hub.broker_wants(&ch("y")));
}
