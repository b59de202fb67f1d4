//! The `ws-client` command line against a real server: publish prints the offset, subscribe prints one
//! JSON line per message, and the exit codes say what went wrong.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ws_protocol::{ChannelName, Json};

async fn server(allow_publish: bool) -> (std::net::SocketAddr, ws_core::Hub, tokio::sync::oneshot::Sender<()>) {
    let mut config = ws_server::Config::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.namespace.allow_publish = allow_publish;
    let server = ws_server::Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let hub = server.hub().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (addr, hub, tx)
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ws-client")).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_subscribe_from_the_command_line() {
    let (addr, hub, _stop) = server(true).await;
    let url = format!("ws://{addr}/ws");
    let mut sub = Command::new(env!("CARGO_BIN_EXE_ws-client"))
        .args(["subscribe", &url, "news"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = ChannelName::new("news").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hub.subscriber_count(&channel) == 0 {
        assert!(std::time::Instant::now() < deadline, "the subscriber never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = tokio::task::spawn_blocking(move || cli(&["publish", &url, "news", r#"{"n":1}"#])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["offset"], 1);
    hub.publish(&channel, Json::parse("2").unwrap());
    let stdout = sub.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().take(2).map(|l| l.unwrap()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first, serde_json::json!({"channel": "news", "offset": 1, "event": null, "data": {"n": 1}}));
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!((second["offset"].as_u64(), second["data"].as_u64()), (Some(2), Some(2)));
    let _ = sub.kill();
    let _ = sub.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_refusals_bad_arguments_and_dead_servers_apart() {
    let (addr, _hub, _stop) = server(false).await;
    let url = format!("ws://{addr}/ws");
    let refused = tokio::task::spawn_blocking({
        let url = url.clone();
        move || cli(&["publish", &url, "news", "1"])
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("forbidden"));
    let bad = cli(&["publish", &url, "news", "{not json"]);
    assert_eq!(bad.status.code(), Some(2));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = cli(&["publish", &format!("ws://127.0.0.1:{port}/ws"), "news", "1"]);
    assert_eq!(dead.status.code(), Some(3));
}
