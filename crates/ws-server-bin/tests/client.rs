//! `ws-client` against real servers: it rides out a node killed mid-stream without losing or repeating a
//! message, reports a reset honestly, stops on terminal closes, and recovers a subscription the
//! application read too slowly.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
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
    // The refusal may come before `events` subscribed, so the state is what is waited for.
    assert_eq!(refused.wait_for(State::Closed).await, State::Closed);
    // Only the refusal's own events may still arrive; no attempt to connect again.
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await {
        assert!(
            !matches!(e, Event::Reconnecting { .. } | Event::Connected { .. }),
            "reconnected after a refused token: {e:?}"
        );
        if let Event::Closed { reason } = &e {
            assert!(reason.contains("401"), "{reason}");
        }
    }

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

/// A TCP proxy that can stop forwarding without closing anything: a half-open connection, as a dead NAT
/// or a frozen peer leaves it. Connections made after a freeze are forwarded again.
struct Proxy {
    addr: std::net::SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let all = frozen.clone();
        tokio::spawn(async move {
            let mut current = Arc::new(AtomicBool::new(false));
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if all.load(SeqCst) {
                    // Freeze the old connection for good; the new one flows.
                    current.store(true, SeqCst);
                    all.store(false, SeqCst);
                }
                current = Arc::new(AtomicBool::new(false));
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { return };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(common::pump(cr, sw, current.clone()));
                tokio::spawn(common::pump(sr, cw, current.clone()));
                let watch = (all.clone(), current.clone());
                tokio::spawn(async move {
                    // Propagate a freeze to the live connection.
                    while !watch.1.load(SeqCst) {
                        if watch.0.load(SeqCst) {
                            watch.1.store(true, SeqCst);
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                });
            }
        });
        Self { addr, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_detected_within_the_heartbeat_window() {
    let mut config = common::config();
    config.heartbeat.interval_ms = 300;
    config.heartbeat.pong_timeout_ms = 600;
    let server = common::start(config).await;
    let proxy = Proxy::start(server.addr).await;
    let client = Client::builder(format!("ws://{}/ws", proxy.addr)).backoff(quick()).connect();
    let mut events = client.events();
    assert_eq!(client.wait_for(State::Connected).await, State::Connected);
    let frozen_at = Instant::now();
    proxy.freeze();
    let e = event(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    let noticed = frozen_at.elapsed();
    assert!(matches!(e, Event::Disconnected { code: 1006, .. }), "{e:?}");
    // heartbeat 300 ms + margin (max(150 ms, 1 s)) = 1.3 s, plus scheduling slack.
    assert!(noticed < Duration::from_secs(3), "noticed after {noticed:?}");
    event(&mut events, |e| matches!(e, Event::Connected { .. })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_fleet_reconnects_no_earlier_than_told_and_spread_out() {
    const CLIENTS: usize = 20;
    let drain = "[drain]\nwindow_ms = 2000\n";
    let first = Node::start_single(drain, "127.0.0.1:0".parse().unwrap());
    let addr = first.addr;
    let mut fleet = Vec::new();
    for _ in 0..CLIENTS {
        let c = Client::builder(format!("ws://{addr}/ws")).backoff(quick()).connect();
        assert_eq!(c.wait_for(State::Connected).await, State::Connected);
        let events = c.events();
        fleet.push((c, events));
    }
    // SIGTERM on the real process: it drains and exits; a new one takes the same port.
    assert!(tokio::task::spawn_blocking(move || first.terminate()).await.unwrap(), "a drain exits with 0");
    let _second = Node::start_single(drain, addr);
    let mut delays = Vec::new();
    for (_, events) in &mut fleet {
        let Event::Disconnected { code: 1001, reconnect_after: Some(hint), .. } =
            event(events, |e| matches!(e, Event::Disconnected { .. })).await
        else {
            panic!("a drain closes with 1001 and a reconnect_after_ms hint");
        };
        let Event::Reconnecting { delay, .. } = event(events, |e| matches!(e, Event::Reconnecting { .. })).await else {
            unreachable!()
        };
        assert!(delay >= hint, "waits at least the hint: {delay:?} < {hint:?}");
        delays.push(delay);
    }
    for (c, _) in &fleet {
        assert_eq!(c.wait_for(State::Connected).await, State::Connected);
    }
    delays.sort();
    let spread = delays[CLIENTS - 1] - delays[0];
    eprintln!("reconnect delays: min {:?}, max {:?}, spread {spread:?}", delays[0], delays[CLIENTS - 1]);
    assert!(spread >= Duration::from_millis(800), "a drained fleet spreads out: {delays:?}");
    // The hints are spread over the 2 s window; the client adds up to half its hint (at least 250 ms).
    assert!(delays[CLIENTS - 1] <= Duration::from_millis(3_300), "{delays:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_jwt_is_refreshed_through_the_provider() {
    use jsonwebtoken::{EncodingKey, Header};
    const SECRET: &str = "a-test-secret-of-some-length";
    let mut config = common::config();
    config.auth.anonymous = false;
    config.auth.jwt.algorithm = "HS256".into();
    config.auth.jwt.secret = SECRET.into();
    config.auth.jwt.leeway_s = 0;
    let server = common::start(config).await;
    let minted = Arc::new(AtomicUsize::new(0));
    let count = minted.clone();
    let client = Client::builder(format!("ws://{}/ws", server.addr))
        .backoff(quick())
        .token_provider(move || {
            let n = count.fetch_add(1, SeqCst);
            async move {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                // The first token lives two seconds; later ones an hour.
                let exp = if n == 0 { now + 2 } else { now + 3600 };
                let claims = json!({"sub": "carol", "exp": exp});
                jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
                    .map_err(|e| e.to_string())
            }
        })
        .connect();
    let mut events = client.events();
    assert_eq!(client.wait_for(State::Connected).await, State::Connected);
    let e = event(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    assert!(matches!(e, Event::Disconnected { code: 1008, .. }), "{e:?}");
    event(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    assert_eq!(client.state(), State::Connected);
    assert!(minted.load(SeqCst) >= 2, "a fresh token was asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_node_a_repeated_idempotency_key_publishes_once() {
    let server = common::start(common::config()).await;
    let client = Client::builder(format!("ws://{}/ws", server.addr)).backoff(quick()).connect();
    let mut sub = client.subscribe("once").await.unwrap();
    assert_eq!(client.publish_once("once", &1, Some("k")).await.unwrap(), 1);
    assert_eq!(client.publish_once("once", &1, Some("k")).await.unwrap(), 1, "the first offset again");
    assert_eq!(client.publish_once("once", &2, Some("other")).await.unwrap(), 2);
    assert_eq!((sub.recv().await.unwrap().offset, sub.recv().await.unwrap().offset), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_outbox_publications_ride_out_a_killed_node_and_are_made_once_each() {
    const STREAM: u64 = 60;
    const BURST: u64 = 20;
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let a_addr = a.addr;
    let subscriber = Client::builder(format!("ws://{}/ws", b.addr)).backoff(quick()).connect();
    let mut sub = subscriber.subscribe("orders").await.unwrap();
    let publisher = Client::builder(format!("ws://{a_addr}/ws")).backoff(quick()).outbox(100).connect();
    let mut events = publisher.events();
    publisher.wait_for(State::Connected).await;

    // One stream of publications, one at a time, through A the whole while.
    let stream = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..STREAM {
                offsets.push((i, publisher.publish("orders", &i).await.expect("the outbox never gives up")));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            offsets
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 15 {
        seen.push(sub.recv().await.unwrap());
    }
    a.kill();
    event(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    // While A is down, a burst more: they wait in the outbox.
    let burst: Vec<_> = (1000..1000 + BURST)
        .map(|i| {
            let publisher = publisher.clone();
            tokio::spawn(async move { (i, publisher.publish("orders", &i).await.expect("held, then sent")) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = Node::start_on(&redis, a_addr);
    let mut published = stream.await.unwrap();
    for b in burst {
        published.push(b.await.unwrap());
    }
    while seen.len() < published.len() {
        seen.push(tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.expect("every publication").unwrap());
    }
    // Nothing more comes: no publication was made twice.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sub.recv()).await.is_err(),
        "a publication was made twice"
    );
    let mut got: Vec<(u64, u64)> = seen.iter().map(|m| (m.data.as_u64().unwrap(), m.offset)).collect();
    got.sort_unstable();
    published.sort_unstable();
    assert_eq!(got, published, "each publication once, at the offset its publish call answered");
    let offsets: Vec<u64> = seen.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (1..=STREAM + BURST).collect::<Vec<_>>());
    // The stream kept its order across the outage.
    let stream_order: Vec<u64> = seen.iter().filter_map(|m| m.data.as_u64().filter(|v| *v < 1000)).collect();
    assert_eq!(stream_order, (0..STREAM).collect::<Vec<_>>());
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_outbox_publishing_while_disconnected_fails_at_once_and_a_full_outbox_says_so() {
    let port = common::cluster::free_port();
    let nowhere = format!("ws://127.0.0.1:{port}/ws");
    let plain = Client::builder(&nowhere).backoff(quick()).connect();
    assert_eq!(plain.publish("x", &1).await, Err(ws_client::Error::NotConnected));
    let small = Client::builder(&nowhere).backoff(quick()).outbox(2).connect();
    let (first, second) = (small.clone(), small.clone());
    let held = [
        tokio::spawn(async move { first.publish("x", &1).await }),
        tokio::spawn(async move { second.publish("x", &2).await }),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(small.publish("x", &3).await, Err(ws_client::Error::OutboxFull));
    small.close().await;
    for h in held {
        assert_eq!(h.await.unwrap(), Err(ws_client::Error::Closed), "held publications fail when the client closes");
    }
}
