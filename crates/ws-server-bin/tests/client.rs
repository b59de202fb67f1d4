//! `ws-client` against real servers: it rides out a node killed mid-stream without losing or repeating a
//! message, reports a reset honestly, stops on terminal closes, and recovers a subscription the
//! application read too slowly.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Node, Redis};
use serde_json::json;
use ws_client::{Backoff, Client, Event, State};

/// A quick backoff, so reconnects in tests take milliseconds.
fn quick() -> Backoff {
    Backoff { initial: Duration::from_millis(50), multiplier: 2.0, max: Duration::from_millis(400), max_attempts: None }
}

/// Waits for an event that `want` accepts.
async fn event(events: &mut tokio::sync::broadcast::Receiver<Event>, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) if want(&e) => return e,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("no such event in time: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_loses_and_repeats_nothing() {
    const TOTAL: u64 = 120;
    let redis = Redis::start();
    let a = Node::start(&redis);
    let b = Node::start(&redis);
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let a_addr = a.addr;
    let client = Client::builder(format!("ws://{a_addr}/ws")).backoff(quick()).connect();
    let mut events = client.events();
    let mut sub = client.subscribe("feed").await.expect("subscribed");

    // A backend publishes through B the whole time.
    let publisher = tokio::spawn(async move {
        for i in 0..TOTAL {
            let r = b.api("POST", "/api/publish", json!({"channel": "feed", "data": i})).await;
            assert_eq!(r.status, 200, "{}", r.text());
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        b
    });
    let mut got = Vec::new();
    while got.len() < 20 {
        got.push(sub.recv().await.unwrap());
    }
    a.kill();
    let a = Node::start_on(&redis, a_addr);
    event(&mut events, |e| matches!(e, Event::Subscribed { recovered: Some(true), .. })).await;
    while got.len() < TOTAL as usize {
        got.push(tokio::time::timeout(Duration::from_secs(20), sub.recv()).await.expect("in time").unwrap());
    }
    let data: Vec<u64> = got.iter().map(|m| m.data.as_u64().unwrap()).collect();
    assert_eq!(data, (0..TOTAL).collect::<Vec<_>>(), "every message exactly once, in order");
    let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (1..=TOTAL).collect::<Vec<_>>());
    let _b = publisher.await.unwrap();
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_restart_is_reported_as_not_recovered_and_delivery_goes_on() {
    let mut config = common::config();
    config.namespace.history_size = 100;
    config.namespace.history_ttl_ms = 60_000;
    config.drain.window_ms = 100;
    let first = common::start(config.clone()).await;
    let addr = first.addr;
    let client = Client::builder(format!("ws://{addr}/ws")).backoff(quick()).connect();
    let mut events = client.events();
    let mut sub = client.subscribe("news").await.unwrap();
    client.publish("news", &"before").await.unwrap();
    assert_eq!(sub.recv().await.unwrap().data, json!("before"));

    first.shutdown().await.unwrap();
    config.listen = addr;
    let second = common::start(config).await;
    let e = event(&mut events, |e| matches!(e, Event::Subscribed { recovered: Some(_), .. })).await;
    assert_eq!(e, Event::Subscribed { channel: "news".into(), recovered: Some(false) }, "the reset is reported");
    assert_eq!(client.state(), State::Connected);
    second.hub.publish(&ws_protocol::ChannelName::new("news").unwrap(), ws_protocol::Json::parse("\"after\"").unwrap());
    let m = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.unwrap().unwrap();
    assert_eq!((m.data, m.offset), (json!("after"), 1), "offsets start over in the new epoch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_and_a_refused_token_stop_the_client_without_retrying() {
    let mut config = common::config();
    config.api.keys = vec!["k".into()];
    config.auth.anonymous = false;
    config.auth.api_keys.insert("good".into(), "alice".into());
    let server = common::start(config).await;
    let url = format!("ws://{}/ws", server.addr);

    let refused = Client::builder(&url).token("bad").backoff(quick()).connect();
    let mut events = refused.events();
    let closed = event(&mut events, |e| matches!(e, Event::Closed { .. })).await;
    assert!(matches!(&closed, Event::Closed { reason } if reason.contains("401")), "{closed:?}");
    assert_eq!(refused.state(), State::Closed);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), events.recv()).await.is_err(),
        "no reconnect attempts after a refused token"
    );

    let client = Client::builder(&url).token("good").backoff(quick()).connect();
    assert_eq!(client.wait_for(State::Connected).await, State::Connected);
    let mut events = client.events();
    let r = common::http(
        server.addr,
        "POST",
        "/api/disconnect",
        &[("Authorization", "apikey k")],
        br#"{"user_id":"alice"}"#,
    )
    .await;
    assert_eq!(r.json()["disconnected"], 1);
    let e = event(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    assert!(matches!(e, Event::Disconnected { code: 4004, .. }), "{e:?}");
    event(&mut events, |e| matches!(e, Event::Closed { .. })).await;
    assert_eq!(client.state(), State::Closed, "4004 means do not reconnect");
    assert_eq!(client.publish("x", &1).await, Err(ws_client::Error::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_lagged_then_recovered_in_order() {
    let mut config = common::config();
    config.namespace.history_size = 500;
    config.namespace.history_ttl_ms = 60_000;
    let server = common::start(config).await;
    let client = Client::builder(format!("ws://{}/ws", server.addr)).buffer(8).backoff(quick()).connect();
    let mut events = client.events();
    let mut sub = client.subscribe("fast").await.unwrap();
    let channel = ws_protocol::ChannelName::new("fast").unwrap();
    for i in 0..200 {
        server.hub.publish(&channel, ws_protocol::Json::parse(i.to_string()).unwrap());
    }
    event(&mut events, |e| matches!(e, Event::Lagged { .. })).await;
    let mut data = Vec::new();
    while data.len() < 200 {
        let m = match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await {
            Ok(m) => m.unwrap(),
            Err(_) => {
                while let Ok(e) = events.try_recv() {
                    eprintln!("event {e:?}");
                }
                panic!("stalled after {:?} state {:?} stats {:?}", data, client.state(), server.hub.stats());
            }
        };
        data.push(m.data.as_u64().unwrap());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(data, (0..200).collect::<Vec<_>>(), "nothing lost or repeated after the lag");
}
