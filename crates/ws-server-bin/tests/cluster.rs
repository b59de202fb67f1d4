//! Several real `ws-server` processes on one real `redis-server` behave as one hub: one order and
//! consecutive offsets everywhere, shared history and recovery, presence, joins and kicks across nodes,
//! and `unavailable` (with connections kept) while Redis is down.
//!
//! Each test starts its own `redis-server` on a free port, so tests can stop it and run in parallel.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Node, Redis};
use common::{close_code, http, next_json, send_json, Ws};
use serde_json::{json, Value};

/// The next frame of a type, skipping others (joins, leaves, replies not asked about).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

async fn subscribe(ws: &mut Ws, channel: &str, recover: Option<Value>) -> Value {
    let mut cmd = json!({"type": "subscribe", "id": "s", "channel": channel});
    if let Some(r) = recover {
        cmd["recover"] = r;
    }
    send_json(ws, cmd).await;
    next_of(ws, "subscribed").await
}

/// The next `n` messages on a socket: (offset, data).
async fn messages(ws: &mut Ws, n: usize) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let v = next_of(ws, "message").await;
        out.push((v["offset"].as_u64().unwrap(), v["data"].clone()));
    }
    out
}

fn consecutive(msgs: &[(u64, Value)], from: u64) {
    for (i, (offset, _)) in msgs.iter().enumerate() {
        assert_eq!(*offset, from + i as u64, "offsets are consecutive: {msgs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_order_offsets_history_and_recovery() {
    let redis = Redis::start();
    let (a, b, c) = (Node::start(&redis), Node::start(&redis), Node::start(&redis));
    for n in [&a, &b, &c] {
        n.wait_ready(true).await;
    }
    let (mut on_a, id_a) = a.connect().await;
    let (mut on_b, id_b) = b.connect().await;
    assert_ne!(id_a, id_b, "conn_ids differ across nodes");
    let sa = subscribe(&mut on_a, "room", None).await;
    let sb = subscribe(&mut on_b, "room", None).await;
    assert_eq!(sa["epoch"], sb["epoch"], "one epoch cluster-wide");
    assert_eq!((sa["offset"].as_u64(), sb["offset"].as_u64()), (Some(0), Some(0)));

    // A client on B publishes, and a backend publishes through C's API.
    let (mut publisher, _) = b.connect().await;
    for i in 0..5 {
        send_json(
            &mut publisher,
            json!({"type": "publish", "id": i, "channel": "room", "data": {"from": "b", "i": i}}),
        )
        .await;
    }
    for i in 0..5 {
        let r = c.api("POST", "/api/publish", json!({"channel": "room", "data": {"from": "c", "i": i}})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json()["offset"].as_u64().unwrap() >= 1);
    }
    let got_a = messages(&mut on_a, 10).await;
    let got_b = messages(&mut on_b, 10).await;
    consecutive(&got_a, 1);
    assert_eq!(got_a, got_b, "every subscriber sees one order");
    let mut published = Vec::new();
    for _ in 0..5 {
        published.push(next_of(&mut publisher, "published").await["offset"].as_u64().unwrap());
    }
    assert!(published.windows(2).all(|w| w[0] < w[1]), "one connection's publications keep their order: {published:?}");

    // The same history from every node.
    let histories: Vec<Value> = futures_util::future::join_all(
        [&a, &b, &c].map(|n| async move { n.api("GET", "/api/history/room?limit=100", Value::Null).await.json() }),
    )
    .await;
    assert_eq!(histories[0]["messages"].as_array().unwrap().len(), 10);
    assert!(histories.iter().all(|h| h == &histories[0]), "history is cluster-wide: {histories:?}");

    // A leaves at offset 10; three more are published; it reconnects to B and recovers all three.
    let epoch = sa["epoch"].clone();
    drop(on_a);
    for i in 0..3 {
        assert_eq!(c.api("POST", "/api/publish", json!({"channel": "room", "data": {"late": i}})).await.status, 200);
    }
    let (mut again, _) = b.connect().await;
    let s = subscribe(&mut again, "room", Some(json!({"epoch": epoch, "offset": 10}))).await;
    assert_eq!((s["recovered"].as_bool(), s["missed"].as_u64(), s["offset"].as_u64()), (Some(true), Some(3), Some(13)));
    let replay = messages(&mut again, 3).await;
    consecutive(&replay, 11);
    assert_eq!(replay[0].1, json!({"late": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_publishing_at_once_give_every_subscriber_the_same_sequence() {
    const EACH: usize = 300;
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let (mut sub_a, _) = a.connect().await;
    let (mut sub_b, _) = b.connect().await;
    subscribe(&mut sub_a, "race", None).await;
    subscribe(&mut sub_b, "race", None).await;
    let (pub_a, _) = a.connect().await;
    let (pub_b, _) = b.connect().await;
    let flood = |mut ws: Ws, tag: &'static str| async move {
        for i in 0..EACH {
            send_json(&mut ws, json!({"type": "publish", "channel": "race", "data": [tag, i]})).await;
        }
        ws
    };
    let (_pa, _pb) = tokio::join!(flood(pub_a, "a"), flood(pub_b, "b"));
    let (got_a, got_b) = tokio::join!(messages(&mut sub_a, 2 * EACH), messages(&mut sub_b, 2 * EACH));
    consecutive(&got_a, 1);
    assert_eq!(got_a, got_b, "both nodes deliver one sequence");
    for tag in ["a", "b"] {
        let mine: Vec<u64> = got_a.iter().filter(|(_, d)| d[0] == tag).map(|(_, d)| d[1].as_u64().unwrap()).collect();
        assert_eq!(mine, (0..EACH as u64).collect::<Vec<_>>(), "each publisher's order is kept, none lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_joins_and_kicks_reach_across_nodes() {
    let redis = Redis::start();
    let (a, b, c) = (Node::start(&redis), Node::start(&redis), Node::start(&redis));
    for n in [&a, &b, &c] {
        n.wait_ready(true).await;
    }
    let (mut first, id_first) = a.connect().await;
    subscribe(&mut first, "lobby", None).await;
    let (mut second, id_second) = b.connect().await;
    subscribe(&mut second, "lobby", None).await;

    // The subscriber on A hears its own join, then the one on B.
    assert_eq!(next_of(&mut first, "join").await["client"]["conn_id"], id_first.as_str());
    assert_eq!(next_of(&mut first, "join").await["client"]["conn_id"], id_second.as_str());

    // Presence from a third node lists both.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = c.api("GET", "/api/presence/lobby", Value::Null).await;
        assert_eq!(p.status, 200, "{}", p.text());
        let mut ids: Vec<String> =
            p.json()["clients"].as_array().unwrap().iter().map(|c| c["conn_id"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        let mut want = vec![id_first.clone(), id_second.clone()];
        want.sort();
        if ids == want {
            break;
        }
        assert!(Instant::now() < deadline, "presence never listed both: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A kick through A's API closes the connection on B with 4004.
    let r = a.api("POST", "/api/disconnect", json!({"conn_id": id_second})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let notice = next_of(&mut second, "disconnect").await;
    assert_eq!(notice["code"], 4004);
    assert_eq!(close_code(&mut second).await, 4004);
    // Its leave reaches A (and no second join came before it), and presence forgets it.
    let next = loop {
        let v = next_json(&mut first).await;
        if v["type"] == "join" || v["type"] == "leave" {
            break v;
        }
    };
    assert_eq!((next["type"].as_str(), next["client"]["conn_id"].as_str()), (Some("leave"), Some(id_second.as_str())));
    let p = c.api("GET", "/api/presence/lobby", Value::Null).await.json();
    let ids: Vec<&str> = p["clients"].as_array().unwrap().iter().map(|c| c["conn_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id_first.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_commands_answer_unavailable_and_connections_stay_open() {
    let mut redis = Redis::start();
    let a = Node::start(&redis);
    a.wait_ready(true).await;
    let (mut ws, _) = a.connect().await;
    subscribe(&mut ws, "news", None).await;

    redis.stop();
    a.wait_ready(false).await;
    let readyz = http(a.addr, "GET", "/readyz", &[], b"").await;
    assert!(readyz.text().contains("broker unavailable"), "{}", readyz.text());
    assert_eq!(http(a.addr, "GET", "/healthz", &[], b"").await.status, 200, "alive, just not ready");

    send_json(&mut ws, json!({"type": "publish", "id": 1, "channel": "news", "data": 1})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!((e["id"].as_u64(), e["code"].as_str()), (Some(1), Some("unavailable")));
    send_json(&mut ws, json!({"type": "subscribe", "id": 2, "channel": "other"})).await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "unavailable");
    send_json(&mut ws, json!({"type": "history", "id": 3, "channel": "news"})).await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "unavailable");
    let r = a.api("POST", "/api/publish", json!({"channel": "news", "data": 1})).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (503, Some("unavailable")));

    // The connection is still open and served.
    send_json(&mut ws, json!({"type": "ping", "id": 4})).await;
    assert_eq!(next_of(&mut ws, "pong").await["id"], 4);

    // Redis comes back (empty) on the same port: the node is ready again without a restart.
    redis.spawn();
    a.wait_ready(true).await;
    let r = a.api("POST", "/api/publish", json!({"channel": "news", "data": "back"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_many_channels_with_repeated_keys_is_numbered_once_per_publication() {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    const CHANNELS: usize = 8;
    const PER_CHANNEL: u64 = 40;
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let (mut sub, _) = b.connect().await;
    for c in 0..CHANNELS {
        subscribe(&mut sub, &format!("burst:{c}"), None).await;
    }
    // One burst through A, written at once: every channel in turn, and every fifth publication on a channel
    // repeats the idempotency key of the one before it.
    let (mut publisher, _) = a.connect().await;
    let mut sent = Vec::new();
    for i in 0..PER_CHANNEL {
        for c in 0..CHANNELS {
            let repeat = i % 5 == 4;
            let key = format!("k{}", if repeat { i - 1 } else { i });
            let id = sent.len() as u64;
            let cmd = json!({"type": "publish", "id": id, "channel": format!("burst:{c}"), "data": i, "idempotency_key": key});
            publisher.feed(Message::Text(cmd.to_string().into())).await.unwrap();
            sent.push((id, c, i, repeat));
        }
    }
    publisher.flush().await.unwrap();
    let mut offsets = std::collections::HashMap::new();
    while offsets.len() < sent.len() {
        let v = next_of(&mut publisher, "published").await;
        offsets.insert(v["id"].as_u64().unwrap(), v["offset"].as_u64().unwrap());
    }
    // Per channel the fresh publications are numbered 1, 2, ... in the order sent; a repeat answers the
    // offset of the one it repeats.
    let mut want: Vec<Vec<(u64, Value)>> = vec![Vec::new(); CHANNELS];
    for (c, want) in want.iter_mut().enumerate() {
        let (mut next, mut last) = (1, 0);
        for &(id, _, i, repeat) in sent.iter().filter(|s| s.1 == c) {
            if repeat {
                assert_eq!(offsets[&id], last, "a repeat answers the first offset");
            } else {
                assert_eq!(offsets[&id], next, "channel {c}, publication {i}");
                want.push((next, json!(i)));
                (last, next) = (next, next + 1);
            }
        }
    }
    // The subscriber on B gets each fresh publication once, in order, and nothing for the repeats.
    let fresh: usize = want.iter().map(Vec::len).sum();
    let mut got: Vec<Vec<(u64, Value)>> = vec![Vec::new(); CHANNELS];
    for _ in 0..fresh {
        let v = next_of(&mut sub, "message").await;
        let c: usize = v["channel"].as_str().unwrap().strip_prefix("burst:").unwrap().parse().unwrap();
        got[c].push((v["offset"].as_u64().unwrap(), v["data"].clone()));
    }
    assert_eq!(got, want);
    assert!(tokio::time::timeout(Duration::from_millis(300), next_of(&mut sub, "message")).await.is_err());
    // The burst took the batched path: far fewer script calls than publications.
    let stats = String::from_utf8(redis.cmd(&[b"INFO", b"commandstats"])).unwrap();
    let calls: usize = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls=")?.split(',').next()?.parse().ok())
        .expect("evalsha was called");
    assert!(calls <= sent.len() / 2, "{calls} script calls for {} publications", sent.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_crosses_the_cluster_byte_for_byte() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let (mut on_a, _) = a.connect().await;
    subscribe(&mut on_a, "raw", None).await;
    let (mut on_b, _) = b.connect().await;
    // Numbers no 64-bit type holds, escapes, spacing and key order: a re-encoding anywhere would change them.
    let data = r#"{"z": 123456789012345678901234567890, "f":1e400,"s":"\u00e9\/", "a" :[ 1.0 ]}"#;
    let frame = format!(r#"{{"type":"publish","channel":"raw","data":{data}}}"#);
    on_b.send(Message::Text(frame.into())).await.unwrap();
    let expected = format!(r#"{{"type":"message","channel":"raw","offset":1,"data":{data}}}"#);
    let got = loop {
        match tokio::time::timeout(Duration::from_secs(10), on_a.next()).await.unwrap().unwrap().unwrap() {
            Message::Text(t) if t.contains(r#""type":"message""#) => break t.to_string(),
            _ => {}
        }
    };
    assert_eq!(got, expected);
    // The history stored in Redis hands it back unchanged too.
    let history = b.api("GET", "/api/history/raw", Value::Null).await;
    assert!(history.text().contains(data), "{}", history.text());
}
