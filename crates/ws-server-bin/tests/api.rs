//! The HTTP API for backends, through the real server: every endpoint and every error.

mod common;

use common::{config, http, next_json, send_json, start, ws_connect};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "test-api-key";

fn api_config() -> ws_server::Config {
    let mut c = config();
    c.api.keys = vec![KEY.into()];
    c.api.max_body_bytes = 1024;
    let mut history = ws_core::NamespaceConfig::default();
    history.history_size = 10;
    history.history_ttl_ms = 60_000;
    c.namespaces.insert("h".into(), history);
    c
}

const AUTH: (&str, &str) = ("Authorization", "apikey test-api-key");

#[tokio::test]
async fn publish_and_broadcast_reach_subscribers() {
    let server = start(api_config()).await;
    let mut ws = ws_connect(server.addr, "/ws", &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    for channel in ["news", "h:log"] {
        send_json(&mut ws, json!({"type":"subscribe","channel":channel})).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    }
    let body = json!({"channel":"news","data":{"headline":"hi"},"event":"breaking"}).to_string();
    let r = http(server.addr, "POST", "/api/publish", &[AUTH], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"offset": 1}));
    let got = next_json(&mut ws).await;
    assert_eq!(got, json!({"type":"message","channel":"news","offset":1,"event":"breaking","data":{"headline":"hi"}}));

    let body = json!({"channels":["news","h:log"],"data":7}).to_string();
    let r = http(server.addr, "POST", "/api/broadcast", &[AUTH], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"offsets": {"news": 2, "h:log": 1}}));
    let mut seen = [next_json(&mut ws).await, next_json(&mut ws).await];
    seen.sort_by_key(|m| m["channel"].as_str().unwrap().to_owned());
    assert_eq!(seen[0]["channel"], "h:log");
    assert_eq!(seen[1]["offset"], 2);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn channels_presence_history_stats_and_disconnect() {
    let server = start(api_config()).await;
    let mut ws = ws_connect(server.addr, "/ws", &[]).await.unwrap();
    let conn_id = next_json(&mut ws).await["conn_id"].as_str().unwrap().to_owned();
    send_json(&mut ws, json!({"type":"subscribe","channel":"h:x"})).await;
    next_json(&mut ws).await;
    for i in 0..3 {
        let body = json!({"channel":"h:x","data":i}).to_string();
        assert_eq!(http(server.addr, "POST", "/api/publish", &[AUTH], body.as_bytes()).await.status, 200);
    }

    let r = http(server.addr, "GET", "/api/channels", &[AUTH], b"").await;
    assert_eq!(r.json(), json!({"channels":[{"channel":"h:x","subscribers":1}]}));

    let r = http(server.addr, "GET", "/api/presence/h:x", &[AUTH], b"").await;
    assert_eq!(r.json(), json!({"clients":[{"conn_id":conn_id,"user_id":null}]}));

    let r = http(server.addr, "GET", "/api/history/h:x?limit=2", &[AUTH], b"").await;
    let body = r.json();
    assert_eq!(body["offset"], 3);
    assert!(body["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    let offsets: Vec<u64> =
        body["messages"].as_array().unwrap().iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, vec![2, 3]);
    assert_eq!(body["messages"][1]["data"], 2);

    let r = http(server.addr, "GET", "/api/stats", &[AUTH], b"").await;
    let stats = r.json();
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["publications"], 3);

    let body = json!({"conn_id": conn_id}).to_string();
    let r = http(server.addr, "POST", "/api/disconnect", &[AUTH], body.as_bytes()).await;
    assert_eq!(r.json(), json!({"disconnected": 1}));
    // Drain the three messages, then the disconnect frame and close 4004.
    for _ in 0..3 {
        assert_eq!(next_json(&mut ws).await["type"], "message");
    }
    let d = next_json(&mut ws).await;
    assert_eq!((d["type"].as_str(), d["code"].as_u64()), (Some("disconnect"), Some(4004)));
    assert_eq!(common::close_code(&mut ws).await, 4004);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn errors_have_the_documented_status_and_body() {
    let server = start(api_config()).await;
    let a = server.addr;
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("POST", "/api/publish", vec![], b"{}".to_vec(), 401, "unauthorized"),
        ("POST", "/api/publish", vec![], vec![b' '; 4096], 401, "unauthorized"),
        ("POST", "/api/publish", vec![("Authorization", "apikey wrong")], b"{}".to_vec(), 401, "unauthorized"),
        ("POST", "/api/publish", vec![("Authorization", "Bearer test-api-key")], b"{}".to_vec(), 401, "unauthorized"),
        ("POST", "/api/publish", vec![AUTH], b"not json".to_vec(), 400, "bad_request"),
        ("POST", "/api/publish", vec![AUTH], br#"{"channel":"bad name","data":1}"#.to_vec(), 400, "bad_request"),
        ("POST", "/api/publish", vec![AUTH], br#"{"channel":"x"}"#.to_vec(), 400, "bad_request"),
        ("POST", "/api/publish", vec![AUTH], br#"{"channel":"x","data":1,"extra":1}"#.to_vec(), 400, "bad_request"),
        ("POST", "/api/broadcast", vec![AUTH], br#"{"channels":[],"data":1}"#.to_vec(), 400, "bad_request"),
        (
            "POST",
            "/api/broadcast",
            vec![AUTH],
            br#"{"channels":["ok","no way"],"data":1}"#.to_vec(),
            400,
            "bad_request",
        ),
        ("POST", "/api/disconnect", vec![AUTH], br#"{}"#.to_vec(), 400, "bad_request"),
        ("POST", "/api/disconnect", vec![AUTH], br#"{"conn_id":"xyz"}"#.to_vec(), 400, "bad_request"),
        ("GET", "/api/history/x?limit=-1", vec![AUTH], vec![], 400, "bad_request"),
        ("GET", "/api/nothing", vec![AUTH], vec![], 404, "not_found"),
        ("GET", "/api/publish", vec![AUTH], vec![], 404, "not_found"),
        ("POST", "/api/publish", vec![AUTH], vec![b' '; 2048], 413, "too_large"),
    ];
    for (method, path, headers, body, status, code) in cases {
        let r = http(a, method, path, &headers, &body).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        let json = r.json();
        assert_eq!(json["error"], code, "{method} {path}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {path}");
    }
    // A bad broadcast published nothing.
    let r = http(a, "GET", "/api/stats", &[AUTH], b"").await;
    assert_eq!(r.json()["publications"], 0);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_api_is_off_without_keys() {
    let server = start(config()).await;
    let r = http(server.addr, "POST", "/api/publish", &[AUTH], br#"{"channel":"x","data":1}"#).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn user_channels_are_reachable_percent_encoded() {
    let server = start(api_config()).await;
    let mut ws = ws_connect(server.addr, "/ws", &[]).await.unwrap();
    next_json(&mut ws).await;
    server
        .hub
        .subscribe(server.hub.connection_ids()[0], &ws_protocol::ChannelName::new("h:inbox#42").unwrap())
        .unwrap();
    let body = json!({"channel":"h:inbox#42","data":"hi"}).to_string();
    assert_eq!(http(server.addr, "POST", "/api/publish", &[AUTH], body.as_bytes()).await.status, 200);
    let r = http(server.addr, "GET", "/api/presence/h:inbox%2342", &[AUTH], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["clients"].as_array().unwrap().len(), 1);
    let r = http(server.addr, "GET", "/api/history/h:inbox%2342", &[AUTH], b"").await;
    assert_eq!(r.json()["messages"][0]["data"], "hi");
    server.shutdown().await.unwrap();
}

/// The next text frame as it came off the wire (skipping pings and pongs).
async fn next_text(ws: &mut common::Ws) -> String {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        match msg {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn data_reaches_subscribers_byte_for_byte_from_a_client_and_from_the_api() {
    let server = start(api_config()).await;
    let mut sub = ws_connect(server.addr, "/ws", &[]).await.unwrap();
    let mut publisher = ws_connect(server.addr, "/ws", &[]).await.unwrap();
    next_json(&mut sub).await;
    next_json(&mut publisher).await;
    send_json(&mut sub, json!({"type":"subscribe","channel":"h:raw"})).await;
    assert_eq!(next_json(&mut sub).await["type"], "subscribed");
    // Numbers no 64-bit type holds, escapes, spacing and key order: a re-encoding would change each of them.
    let data = r#"{"z": 123456789012345678901234567890, "f":1e400,"s":"\u00e9\/\n", "a" :[ 1.0 ,-0.0]}"#;
    let expected = format!(r#"{{"type":"message","channel":"h:raw","offset":1,"data":{data}}}"#);
    let frame = format!(r#"{{"type":"publish","channel":"h:raw","data":{data}}}"#);
    publisher.send(Message::Text(frame.into())).await.unwrap();
    assert_eq!(next_text(&mut sub).await, expected);

    let body = format!(r#"{{"channel":"h:raw","data":{data}}}"#);
    let r = http(server.addr, "POST", "/api/publish", &[AUTH], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(next_text(&mut sub).await, expected.replace(r#""offset":1"#, r#""offset":2"#));
    // History hands both back unchanged.
    let r = http(server.addr, "GET", "/api/history/h:raw", &[AUTH], b"").await;
    assert_eq!(r.text().matches(data).count(), 2, "{}", r.text());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_depth_limit_applies_to_the_api_as_to_clients() {
    let mut c = api_config();
    c.api.max_body_bytes = 65536;
    let server = start(c).await;
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = format!(r#"{{"channel":"news","data":{}}}"#, nested(ws_protocol::MAX_DEPTH));
    assert_eq!(http(server.addr, "POST", "/api/publish", &[AUTH], body.as_bytes()).await.status, 200);
    for depth in [ws_protocol::MAX_DEPTH + 1, 10_000] {
        let body = format!(r#"{{"channel":"news","data":{}}}"#, nested(depth));
        let r = http(server.addr, "POST", "/api/publish", &[AUTH], body.as_bytes()).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.json()["message"].as_str().unwrap().contains("deeper than 64"), "{}", r.text());
        let body = format!(r#"{{"channels":["news"],"data":{}}}"#, nested(depth));
        assert_eq!(http(server.addr, "POST", "/api/broadcast", &[AUTH], body.as_bytes()).await.status, 400);
    }
    let mut ws = ws_connect(server.addr, "/ws", &[]).await.unwrap();
    next_json(&mut ws).await;
    let frame = format!(r#"{{"type":"publish","id":9,"channel":"news","data":{}}}"#, nested(65));
    ws.send(Message::Text(frame.into())).await.unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str(), reply["id"].as_i64()),
        (Some("error"), Some("bad_request"), Some(9))
    );
    let r = http(server.addr, "GET", "/api/stats", &[AUTH], b"").await;
    assert_eq!(r.json()["publications"], 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn publishing_to_many_history_channels_stays_within_the_history_cap() {
    let cap = 256 * 1024;
    let mut c = api_config();
    c.limits.max_history_bytes = cap;
    c.limits.rate_per_sec = 100_000;
    c.limits.rate_burst = 100_000;
    let server = start(c).await;
    let mut ws = ws_connect(server.addr, "/ws", &[]).await.unwrap();
    next_json(&mut ws).await;
    let kilobyte = "x".repeat(1000);
    for i in 0..2000 {
        send_json(&mut ws, json!({"type":"publish","id":i,"channel":format!("h:{i}"),"data":kilobyte})).await;
        assert_eq!(next_json(&mut ws).await["type"], "published");
    }
    let stats = http(server.addr, "GET", "/api/stats", &[AUTH], b"").await.json();
    let bytes = stats["history_bytes"].as_u64().unwrap();
    assert!(bytes <= (cap + cap / 8) as u64, "{bytes} bytes of history");
    assert!(stats["history_evictions"].as_u64().unwrap() > 0);
    // An evicted channel starts a new epoch; the newest channel keeps its message.
    let oldest = http(server.addr, "GET", "/api/history/h:0", &[AUTH], b"").await.json();
    assert_eq!(oldest["messages"], json!([]));
    let newest = http(server.addr, "GET", "/api/history/h:1999", &[AUTH], b"").await.json();
    assert_eq!(newest["messages"][0]["data"], kilobyte.as_str());
    let metrics = http(server.addr, "GET", "/metrics", &[], b"").await.text();
    assert!(
        metrics.contains(&format!("ws_history_bytes {bytes}")) || metrics.contains("ws_history_bytes "),
        "{metrics}"
    );
    server.shutdown().await.unwrap();
}
