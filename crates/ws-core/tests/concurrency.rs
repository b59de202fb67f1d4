//! The hub under several threads at once: publishers, subscribers and churn.

use std::sync::Arc;
use std::thread;

use ws_core::test_util::{RecordingConn, Sim};
use ws_core::Hub;
use ws_protocol::{ChannelName, Json, ServerMessage};

fn offsets_and_data(conn: &RecordingConn) -> Vec<(u64, String)> {
    conn.messages()
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Message(p) => Some((p.offset, p.data.as_str().to_owned())),
            _ => None,
        })
        .collect()
}

#[test]
fn concurrent_publishers_deliver_everything_once_in_one_order() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    let sim = Sim::new();
    let channel = ChannelName::new("room").unwrap();
    let subscribers: Vec<_> = (0..8).map(|_| sim.connect()).collect();
    for s in &subscribers {
        sim.hub.subscribe(s.id(), &channel).unwrap();
    }
    thread::scope(|scope| {
        for t in 0..THREADS {
            let hub: Hub = sim.hub.clone();
            let channel = channel.clone();
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    hub.publish(&channel, Json::encode(&format!("{t}-{i}")).unwrap());
                }
            });
        }
    });
    let first = offsets_and_data(&subscribers[0]);
    assert_eq!(first.len(), THREADS * PER_THREAD);
    // Offsets are 1..=N in delivery order: assigned and delivered under one lock.
    for (i, (offset, _)) in first.iter().enumerate() {
        assert_eq!(*offset, i as u64 + 1);
    }
    // Each publisher's messages arrive in the order it published them.
    for t in 0..THREADS {
        let mine: Vec<usize> = first
            .iter()
            .filter_map(|(_, d)| d.trim_matches('"').strip_prefix(&format!("{t}-")).map(|i| i.parse().unwrap()))
            .collect();
        assert_eq!(mine, (0..PER_THREAD).collect::<Vec<_>>());
    }
    // Every subscriber saw exactly the same sequence.
    for s in &subscribers[1..] {
        assert_eq!(offsets_and_data(s), first);
    }
    assert_eq!(sim.hub.stats().messages_out, (THREADS * PER_THREAD * subscribers.len()) as u64);
}

#[test]
fn churn_from_many_threads_leaves_a_consistent_registry() {
    const THREADS: usize = 4;
    let sim = Arc::new(Sim::new());
    let channels: Vec<ChannelName> = (0..16).map(|i| ChannelName::new(&format!("c{i}")).unwrap()).collect();
    let keepers: Vec<_> = (0..THREADS).map(|_| sim.connect()).collect();
    thread::scope(|scope| {
        for (t, keeper) in keepers.iter().enumerate() {
            let sim = Arc::clone(&sim);
            let channels = channels.clone();
            scope.spawn(move || {
                for round in 0..200 {
                    let conn = sim.connect();
                    for ch in &channels {
                        sim.hub.subscribe(conn.id(), ch).unwrap();
                        sim.hub.publish(ch, Json::encode(&round).unwrap());
                    }
                    for ch in channels.iter().step_by(2) {
                        assert!(sim.hub.unsubscribe(conn.id(), ch));
                    }
                    sim.disconnect(&conn);
                    // Each thread's keeper holds channel t for good.
                    sim.hub.subscribe(keeper.id(), &channels[t]).unwrap();
                }
            });
        }
    });
    let stats = sim.hub.stats();
    assert_eq!(stats.connections, THREADS as u64);
    assert_eq!(stats.subscriptions, THREADS as u64);
    assert_eq!(stats.channels, THREADS as u64, "channels nobody holds are gone");
    let mut want: Vec<(ChannelName, usize)> = channels[..THREADS].iter().map(|c| (c.clone(), 1)).collect();
    want.sort();
    assert_eq!(sim.hub.channels(), want);
}

#[test]
fn hub_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Hub>();
    assert_eq!(std::mem::size_of::<Hub>(), std::mem::size_of::<usize>());
}
