//! The cluster beyond one plain Redis: channels spread over two `redis-server` processes by `redis_urls`
//! (one of them killed and restarted), and TLS to a Redis that trusts only a private CA, with an ACL user.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Node, Redis};
use serde_json::json;
use ws_client::{Backoff, Client};

fn quick() -> Backoff {
    Backoff { initial: Duration::from_millis(50), multiplier: 2.0, max: Duration::from_millis(400), max_attempts: None }
}

/// Polls `f` until it is true or 10 s pass.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn holds(redis: &Redis, channel: &str) -> bool {
    let key = format!("ws.meta.{{{channel}}}");
    redis.cmd(&[b"EXISTS", key.as_bytes()]) == b":1\r\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_two_redis_servers_and_one_down_stops_only_its_channels() {
    const CHANNELS: usize = 16;
    let (mut first, second) = (Redis::start(), Redis::start());
    let urls = format!("redis_urls = [{:?}, {:?}]", first.url(), second.url());
    let (a, b) = (
        Node::start_with(&urls, "127.0.0.1:0".parse().unwrap()),
        Node::start_with(&urls, "127.0.0.1:0".parse().unwrap()),
    );
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    assert!(a.metric("ws_broker_instance_up{").await == Some(1.0));

    // Subscribers on A, publications through B: every channel works, wherever it lives.
    let client = Client::builder(format!("ws://{}/ws", a.addr)).backoff(quick()).connect();
    let names: Vec<String> = (0..CHANNELS).map(|i| format!("room:{i}")).collect();
    let mut subs = Vec::new();
    for name in &names {
        subs.push(client.subscribe(name).await.unwrap());
    }
    for (name, sub) in names.iter().zip(&mut subs) {
        assert_eq!(b.api("POST", "/api/publish", json!({"channel": name, "data": "before"})).await.status, 200);
        let m = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.expect("delivered").unwrap();
        assert_eq!((m.offset, m.data), (1, json!("before")));
    }
    // Each channel lives on exactly one server, and both servers hold some.
    let on_first: Vec<bool> = names.iter().map(|n| holds(&first, n)).collect();
    for (name, on) in names.iter().zip(&on_first) {
        assert_ne!(*on, holds(&second, name), "{name} must live on exactly one server");
    }
    assert!(on_first.iter().any(|x| *x) && on_first.iter().any(|x| !*x), "all channels on one server: {on_first:?}");

    // The first server dies: its channels answer 503, the second's keep working, and control (a kick)
    // still reaches every node through the second.
    first.stop();
    let (dead, alive): (Vec<usize>, Vec<usize>) = (0..CHANNELS).partition(|i| on_first[*i]);
    eventually("the first server's channels refuse publishes", || async {
        b.api("POST", "/api/publish", json!({"channel": names[dead[0]], "data": "x"})).await.status == 503
    })
    .await;
    for &i in &alive {
        let r = b.api("POST", "/api/publish", json!({"channel": names[i], "data": "during"})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let m = tokio::time::timeout(Duration::from_secs(10), subs[i].recv()).await.expect("delivered").unwrap();
        assert_eq!((m.offset, m.data), (2, json!("during")));
    }
    let presence = b.api("GET", &format!("/api/presence/{}", names[alive[0]]), json!(null)).await;
    assert_eq!(presence.status, 200, "{}", presence.text());
    assert_eq!(presence.json()["clients"].as_array().unwrap().len(), 1, "{}", presence.text());
    let r = b.api("GET", "/readyz", json!(null)).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains(&first.port.to_string()), "readyz names the server that is down: {}", r.text());
    let (mut ws, id) = a.connect().await;
    assert_eq!(b.api("POST", "/api/disconnect", json!({"conn_id": id})).await.status, 200);
    assert_eq!(common::close_code(&mut ws).await, 4004, "a kick through B reaches A");
    let up: Vec<String> = b
        .api("GET", "/metrics", json!(null))
        .await
        .text()
        .lines()
        .filter(|l| l.starts_with("ws_broker_instance_up{"))
        .map(str::to_owned)
        .collect();
    assert_eq!(up.len(), 2, "{up:?}");
    assert!(up.iter().any(|l| l.contains(&first.port.to_string()) && l.ends_with(" 0")), "{up:?}");
    assert!(up.iter().any(|l| l.contains(&second.port.to_string()) && l.ends_with(" 1")), "{up:?}");

    // Back up: its channels work again without a restart, and the subscriber on A gets them again once
    // its client has resubscribed (Redis came back empty, so what was published before that is reported
    // as not recovered rather than replayed).
    first.spawn();
    a.wait_ready(true).await;
    let sub = &mut subs[dead[0]];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "no delivery on {} after its server came back", names[dead[0]]);
        b.api("POST", "/api/publish", json!({"channel": names[dead[0]], "data": "after"})).await;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
            if m.data == json!("after") {
                break;
            }
        }
    }
}

/// A CA, and a certificate for `localhost` it signed, as PEM: (ca, cert, key).
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "ws-hub test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_redis_with_a_private_ca_and_an_acl_user() {
    let dir = std::env::temp_dir().join(format!("ws-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates();
    let (ca_file, cert_file, key_file) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let tls_port = common::cluster::free_port().to_string();
    let redis = Redis::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        cert_file.to_str().unwrap(),
        "--tls-key-file",
        key_file.to_str().unwrap(),
        "--tls-ca-cert-file",
        ca_file.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
        "--user",
        "hub",
        "on",
        ">s3cret",
        "~*",
        "&*",
        "+@all",
    ]);
    let broker = |user: &str| {
        format!(
            "redis_url = \"rediss://{user}@localhost:{tls_port}\"\ntls_ca_file = {:?}",
            ca_file.display().to_string()
        )
    };
    let (a, b) = (
        Node::start_with(&broker("hub:s3cret"), "127.0.0.1:0".parse().unwrap()),
        Node::start_with(&broker("hub:s3cret"), "127.0.0.1:0".parse().unwrap()),
    );
    a.wait_ready(true).await;
    b.wait_ready(true).await;
    let client = Client::builder(format!("ws://{}/ws", a.addr)).backoff(quick()).connect();
    let mut sub = client.subscribe("secure").await.unwrap();
    assert_eq!(b.api("POST", "/api/publish", json!({"channel": "secure", "data": 1})).await.status, 200);
    let m = tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.expect("delivered over TLS").unwrap();
    assert_eq!((m.offset, m.data), (1, json!(1)));
    // The publication went through TLS as the ACL user: the plain port shows it stored.
    assert_eq!(redis.cmd(&[b"EXISTS", b"ws.meta.{secure}"]), b":1\r\n");

    // A wrong password is refused, and the node says so instead of pretending.
    let wrong = Node::start_with(&broker("hub:wrong"), "127.0.0.1:0".parse().unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = wrong.api("GET", "/readyz", json!(null)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(wrong.api("POST", "/api/publish", json!({"channel": "secure", "data": 2})).await.status, 503);
    let _ = std::fs::remove_dir_all(&dir);
}
