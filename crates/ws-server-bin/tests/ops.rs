//! Operations through the real server: the demo page, health and readiness, metrics, the admin listener and TLS.

mod common;

use std::sync::Arc;

use common::{config, http, next_json, send_json, start, ws_connect};
use futures_util::StreamExt;
use serde_json::json;

#[tokio::test]
async fn demo_page_health_and_readiness() {
    let server = start(config()).await;
    let r = http(server.addr, "GET", "/", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("ws-hub demo"));
    assert_eq!(http(server.addr, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(http(server.addr, "GET", "/readyz", &[], b"").await.status, 200);
    let r = http(server.addr, "GET", "/nope", &[], b"").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (404, Some("not_found")));
    server.shutdown().await.unwrap();
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no metric line `{name}` in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_connections_messages_and_api_requests() {
    let mut c = config();
    c.api.keys = vec!["k".into()];
    let server = start(c).await;
    let mut ws = ws_connect(server.addr, "/ws", &[]).await.unwrap();
    next_json(&mut ws).await;
    send_json(&mut ws, json!({"type":"subscribe","channel":"m"})).await;
    next_json(&mut ws).await;
    send_json(&mut ws, json!({"type":"publish","channel":"m","data":"x"})).await;
    next_json(&mut ws).await;
    http(server.addr, "GET", "/api/stats", &[("Authorization", "apikey k")], b"").await;
    http(server.addr, "GET", "/api/stats", &[], b"").await;
    assert_eq!(ws_connect(server.addr, "/ws", &[("Origin", "http://evil.example")]).await.err(), Some(403));

    let r = http(server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    assert_eq!(metric(&text, "ws_connections"), 1.0);
    assert_eq!(metric(&text, "ws_channels"), 1.0);
    assert_eq!(metric(&text, "ws_subscriptions"), 1.0);
    assert_eq!(metric(&text, "ws_connections_opened_total"), 1.0);
    assert_eq!(metric(&text, "ws_messages_in_total"), 2.0);
    assert!(metric(&text, "ws_messages_out_total") >= 2.0);
    assert!(metric(&text, "ws_bytes_in_total") > 0.0);
    assert!(metric(&text, "ws_bytes_out_total") > 0.0);
    assert_eq!(metric(&text, r#"ws_drops_total{reason="slow_consumer"}"#), 0.0);
    assert_eq!(metric(&text, r#"ws_auth_failures_total{reason="origin"}"#), 1.0);
    assert_eq!(metric(&text, r#"ws_api_requests_total{endpoint="stats",status="200"}"#), 1.0);
    assert_eq!(metric(&text, r#"ws_api_requests_total{endpoint="stats",status="401"}"#), 1.0);
    assert!(metric(&text, "ws_queue_delay_seconds_count") >= 1.0);
    // Buckets are cumulative, ending at the count.
    let delay = metric(&text, "ws_queue_delay_seconds_count");
    assert_eq!(metric(&text, r#"ws_queue_delay_seconds_bucket{le="+Inf"}"#), delay, "{text}");
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("ws_queue_delay_seconds_bucket"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]) && buckets.iter().all(|b| *b <= delay), "{buckets:?}");
    assert_eq!(metric(&text, "ws_api_latency_seconds_count"), 2.0);
    drop(ws);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_listener_serves_metrics_and_health_apart() {
    let mut c = config();
    c.metrics.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = start(c).await;
    let admin = server.admin.expect("an admin listener");
    assert_eq!(http(admin, "GET", "/readyz", &[], b"").await.status, 200);
    assert!(http(admin, "GET", "/metrics", &[], b"").await.text().contains("ws_connections"));
    assert_eq!(http(admin, "GET", "/", &[], b"").await.status, 404, "the admin listener serves no demo page");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn wss_works_end_to_end_with_a_generated_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("ws-server-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut c = config();
    c.tls.cert = Some(cert_path);
    c.tls.key = Some(key_path);
    let server = start(c).await;

    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let client = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("the TLS handshake succeeds");
    let url = format!("wss://localhost:{}/ws", server.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.expect("wss upgrade");
    let welcome: serde_json::Value = match ws.next().await.unwrap().unwrap() {
        tokio_tungstenite::tungstenite::Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(welcome["type"], "welcome");
    // Plain HTTP to the TLS port is not served.
    let plain = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        buf
    })
    .await
    .unwrap();
    assert!(!plain.starts_with(b"HTTP/1.1 200"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn relay_rooms_work_and_turning_the_relay_off_leaves_other_routes_alone() {
    let server = start(config()).await;
    let mut a = ws_connect(server.addr, "/relay/room1", &[]).await.unwrap();
    let mut b = ws_connect(server.addr, "/relay/room1", &[]).await.unwrap();
    futures_util::SinkExt::send(&mut a, tokio_tungstenite::tungstenite::Message::Text("raw, not JSON".into()))
        .await
        .unwrap();
    match b.next().await.unwrap().unwrap() {
        tokio_tungstenite::tungstenite::Message::Text(t) => assert_eq!(t.as_str(), "raw, not JSON"),
        other => panic!("{other:?}"),
    }
    server.shutdown().await.unwrap();

    let mut c = config();
    c.relay.enabled = false;
    c.api.keys = vec!["k".into()];
    let server = start(c).await;
    assert_eq!(http(server.addr, "GET", "/readyz", &[], b"").await.status, 200);
    assert_eq!(http(server.addr, "GET", "/", &[], b"").await.status, 200);
    assert_eq!(http(server.addr, "GET", "/api/stats", &[("Authorization", "apikey k")], b"").await.status, 200);
    assert_eq!(ws_connect(server.addr, "/relay/room1", &[]).await.err(), Some(404));
    server.shutdown().await.unwrap();
}
