//! The cluster under the faults real clusters meet, each made for real on a `redis-server` of the test's
//! own: Redis restarted empty, pub/sub connections killed, a node killed, Redis unreachable at start, and
//! garbage published on the broker's channels.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{free_port, Node, Redis};
use serde_json::{json, Value};
use ws_client::{Backoff, Client, Event};

fn quick() -> Backoff {
    Backoff { initial: Duration::from_millis(50), multiplier: 2.0, max: Duration::from_millis(400), max_attempts: None }
}

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

/// Polls `f` until it is true or 10 s pass.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_resumes_delivery_with_a_new_epoch_and_no_silent_gap() {
    let mut redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let client = Client::builder(format!("ws://{}/ws", a.addr)).backoff(quick()).connect();
    let mut events = client.events();
    let mut sub = client.subscribe("feed").await.unwrap();
    for i in 0..3 {
        assert_eq!(b.api("POST", "/api/publish", json!({"channel": "feed", "data": i})).await.status, 200);
    }
    for _ in 0..3 {
        sub.recv().await.unwrap();
    }
    redis.stop();
    redis.spawn();
    // Delivery resumes without restarting a node; the client is told the state was lost.
    let e = event(&mut events, |e| matches!(e, Event::Subscribed { recovered: Some(_), .. })).await;
    assert_eq!(e, Event::Subscribed { channel: "feed".into(), recovered: Some(false) });
    eventually("publishing works again", || async {
        b.api("POST", "/api/publish", json!({"channel": "feed", "data": "after"})).await.status == 200
    })
    .await;
    let m = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.expect("delivery resumed").unwrap();
    assert_eq!(m.data, json!("after"));
    assert_eq!(m.offset, 1, "a new epoch starts over");
    assert!(a.metric("ws_gaps_flagged_total").await.unwrap() >= 1.0);
    assert!(a.metric("ws_broker_resubscriptions_total").await.unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pubsub_connections_are_resubscribed_and_the_gap_refilled() {
    const TOTAL: u64 = 150;
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let client = Client::builder(format!("ws://{}/ws", a.addr)).backoff(quick()).connect();
    let mut sub = client.subscribe("feed").await.unwrap();
    let publisher = tokio::spawn(async move {
        for i in 0..TOTAL {
            loop {
                let r = b.api("POST", "/api/publish", json!({"channel": "feed", "data": i})).await;
                if r.status == 200 {
                    break;
                }
                // B's own pub/sub connections were killed too: retry what was refused.
                assert_eq!(r.status, 503, "{}", r.text());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        b
    });
    let mut got = Vec::new();
    while got.len() < 30 {
        got.push(sub.recv().await.unwrap().data.as_u64().unwrap());
    }
    let reply = redis.cmd(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"]);
    assert!(reply.starts_with(b":"), "{}", String::from_utf8_lossy(&reply));
    while got.len() < TOTAL as usize {
        let m = tokio::time::timeout(Duration::from_secs(15), sub.recv()).await.expect("in time").unwrap();
        got.push(m.data.as_u64().unwrap());
    }
    assert_eq!(got, (0..TOTAL).collect::<Vec<_>>(), "every message once, in order");
    let _b = publisher.await.unwrap();
    assert!(a.metric("ws_broker_connects_total").await.unwrap() >= 4.0, "the pub/sub connections came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_clients_leave_presence_within_two_leases() {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let (mut ws, id) = a.connect().await;
    common::send_json(&mut ws, json!({"type": "subscribe", "id": 1, "channel": "room"})).await;
    loop {
        if common::next_json(&mut ws).await["type"] == "subscribed" {
            break;
        }
    }
    let presence = || async {
        let p = b.api("GET", "/api/presence/room", Value::Null).await.json();
        p["clients"].as_array().unwrap().iter().map(|c| c["conn_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    eventually("presence lists the client", || async { presence().await == [id.clone()] }).await;
    a.kill();
    let killed = Instant::now();
    // The lease is 2 s in these tests.
    eventually("the dead node's client leaves presence", || async { presence().await.is_empty() }).await;
    assert!(killed.elapsed() <= Duration::from_secs(4), "gone within two leases: {:?}", killed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_redis_joins_when_it_comes_up() {
    let mut redis = Redis::unstarted(free_port());
    let a = Node::start(&redis);
    assert!(!a.ready().await, "not ready without Redis");
    let r = a.api("POST", "/api/publish", json!({"channel": "x", "data": 1})).await;
    assert_eq!(r.status, 503);
    redis.spawn();
    a.wait_ready(true).await;
    let r = a.api("POST", "/api/publish", json!({"channel": "x", "data": 1})).await;
    assert_eq!((r.status, r.json()["offset"].as_u64()), (200, Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_broker_is_dropped_and_counted() {
    let redis = Redis::start();
    let a = Node::start(&redis);
    a.wait_ready(true).await;
    let client = Client::builder(format!("ws://{}/ws", a.addr)).backoff(quick()).connect();
    let mut sub = client.subscribe("g").await.unwrap();
    let garbage: [&[u8]; 5] = [
        b"not json",
        br#"{"v":99,"k":"p","o":"x","e":"abc","n":1,"ev":null,"d":1}"#,
        br#"{"v":1,"k":"p","o":"x","e":"abc"}"#,
        br#"{"v":1,"k":"p","o":"x","e":"abc","n":1,"ev":null,"d":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
        br#"{"v":1,"k":"c","o":"x","c":{"op":"broadcast"}}"#,
    ];
    for g in garbage {
        let reply = redis.cmd(&[b"PUBLISH", b"ws.ch.g", g]);
        assert_eq!(reply, b":1\r\n", "node A is subscribed");
    }
    redis.cmd(&[b"PUBLISH", b"ws.control", b"\xff\xfe"]);
    let big = vec![b'x'; 17 * 1024 * 1024];
    redis.cmd(&[b"PUBLISH", b"ws.ch.g", &big]);
    let r = a.api("POST", "/api/publish", json!({"channel": "g", "data": "real"})).await;
    assert_eq!(r.status, 200);
    let m = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.unwrap().unwrap();
    assert_eq!((m.offset, m.data), (1, json!("real")), "nothing of the garbage was delivered");
    assert!(a.ready().await, "the node is fine");
    let count = |reason: &'static str| {
        let a = &a;
        async move { a.metric(&format!("ws_broker_envelopes_dropped_total{{reason=\"{reason}\"}}")).await.unwrap_or(0.0) }
    };
    assert!(count("malformed").await >= 4.0);
    assert!(count("unknown_version").await >= 1.0);
    assert!(count("oversized").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_is_noticed_by_the_probe_and_all_recovers_after_it_resumes() {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let client = Client::builder(format!("ws://{}/ws", a.addr)).backoff(quick()).connect();
    let mut sub = client.subscribe("feed").await.unwrap();
    redis.signal("-STOP");
    // The connections are open but deaf: the probe notices, readiness says so, liveness stays fine.
    a.wait_ready(false).await;
    let readyz = common::http(a.addr, "GET", "/readyz", &[], b"").await.text();
    assert!(readyz.contains("broker unavailable"), "{readyz}");
    assert_eq!(common::http(a.addr, "GET", "/healthz", &[], b"").await.status, 200);
    // The command connection may notice first (a presence refresh times out); the probe notices too.
    eventually("the pub/sub probe fails", || async {
        a.metric("ws_broker_probe_failures_total").await.unwrap_or(0.0) >= 1.0
    })
    .await;
    redis.signal("-CONT");
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    eventually("publishing works again", || async {
        b.api("POST", "/api/publish", json!({"channel": "feed", "data": "after"})).await.status == 200
    })
    .await;
    let m = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.expect("delivery resumed").unwrap();
    assert_eq!(m.data, json!("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_repeated_with_its_idempotency_key_is_made_once_cluster_wide() {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let watcher = Client::builder(format!("ws://{}/ws", b.addr)).backoff(quick()).connect();
    let mut sub = watcher.subscribe("orders").await.unwrap();
    let client = Client::builder(format!("ws://{}/ws", a.addr)).backoff(quick()).connect();
    let first = client.publish_once("orders", &json!({"id": 1}), Some("order-1")).await.unwrap();
    let again = client.publish_once("orders", &json!({"id": 1}), Some("order-1")).await.unwrap();
    let via_api = b
        .api("POST", "/api/publish", json!({"channel": "orders", "data": {"id": 1}, "idempotency_key": "order-1"}))
        .await;
    assert_eq!((first, again, via_api.json()["offset"].as_u64().unwrap()), (1, 1, 1), "one publication");
    let other = client.publish_once("orders", &json!({"id": 2}), Some("order-2")).await.unwrap();
    assert_eq!(other, 2);
    let got: Vec<u64> = vec![sub.recv().await.unwrap().offset, sub.recv().await.unwrap().offset];
    assert_eq!(got, [1, 2], "the repeat delivered nothing");
    let bad =
        b.api("POST", "/api/publish", json!({"channel": "orders", "data": 1, "idempotency_key": "k".repeat(65)})).await;
    assert_eq!(bad.status, 400);
}
