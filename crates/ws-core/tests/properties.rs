//! Property tests: random subscribe/unsubscribe/publish/disconnect sequences keep
//! the registry consistent and deliver every publication exactly once, in order,
//! to each current subscriber.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use ws_core::test_util::{RecordingConn, Sim};
use ws_protocol::{ChannelName, ServerMessage};

const CONNS: usize = 4;
const CHANNELS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Subscribe(usize, usize),
    Unsubscribe(usize, usize),
    Publish(usize, usize),
    Disconnect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..CONNS, 0..CHANNELS).prop_map(|(c, ch)| Op::Subscribe(c, ch)),
        1 => (0..CONNS, 0..CHANNELS).prop_map(|(c, ch)| Op::Unsubscribe(c, ch)),
        4 => (0..CONNS, 0..CHANNELS).prop_map(|(c, ch)| Op::Publish(c, ch)),
        1 => (0..CONNS).prop_map(Op::Disconnect),
    ]
}

fn channel(i: usize) -> String {
    format!("ch{i}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn registry_matches_model_and_delivery_is_exact(ops in proptest::collection::vec(op(), 1..80)) {
        let sim = Sim::new();
        let mut conns: Vec<Arc<RecordingConn>> = (0..CONNS).map(|_| sim.connect()).collect();
        // The model: who is subscribed where, and what each connection must receive.
        let mut subs: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let mut expected: Vec<Vec<(String, String)>> = vec![Vec::new(); CONNS];
        let mut received: Vec<Vec<(String, String)>> = vec![Vec::new(); CONNS];
        let mut seq = 0u64;

        let collect = |i: usize, conn: &RecordingConn, received: &mut Vec<Vec<(String, String)>>| {
            for m in conn.messages() {
                if let ServerMessage::Message(p) = m {
                    received[i].push((p.channel.to_string(), p.data.as_str().to_owned()));
                }
            }
        };

        for op in ops {
            match op {
                Op::Subscribe(c, ch) => {
                    sim.send(&conns[c], &format!(r#"{{"type":"subscribe","channel":"{}"}}"#, channel(ch)));
                    subs.entry(ch).or_default().insert(c);
                }
                Op::Unsubscribe(c, ch) => {
                    sim.send(&conns[c], &format!(r#"{{"type":"unsubscribe","channel":"{}"}}"#, channel(ch)));
                    subs.entry(ch).or_default().remove(&c);
                }
                Op::Publish(c, ch) => {
                    seq += 1;
                    sim.send(&conns[c], &format!(r#"{{"type":"publish","channel":"{}","data":{seq}}}"#, channel(ch)));
                    for &s in subs.get(&ch).into_iter().flatten() {
                        expected[s].push((channel(ch), seq.to_string()));
                    }
                }
                Op::Disconnect(c) => {
                    collect(c, &conns[c], &mut received);
                    sim.disconnect(&conns[c]);
                    for set in subs.values_mut() {
                        set.remove(&c);
                    }
                    conns[c] = sim.connect();
                }
            }
            // The registry agrees with the model after every step.
            let want: Vec<(ChannelName, usize)> = subs
                .iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(ch, s)| (ChannelName::new(&channel(*ch)).unwrap(), s.len()))
                .collect();
            prop_assert_eq!(sim.hub.channels(), want);
            let total: usize = subs.values().map(BTreeSet::len).sum();
            prop_assert_eq!(sim.hub.stats().subscriptions, total as u64);
            prop_assert_eq!(sim.hub.stats().connections, CONNS as u64);
        }
        for (i, conn) in conns.iter().enumerate() {
            collect(i, conn, &mut received);
        }
        prop_assert_eq!(received, expected);
    }
}
