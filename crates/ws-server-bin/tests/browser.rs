//! The demo page and the browser client module (`/ws-hub.js`) in a real browser: headless Chromium loads `/`,
//! connects, subscribes and publishes, and rides out a server restart, a dropped connection and a half-open one
//! the way PROTOCOL.md says. Chromium is driven over its DevTools protocol.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{config, http, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;

/// One browser at a time: the machine may be small, and a loaded one makes reconnect timings drift.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Browser(Child, PathBuf);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Chromium is not installed: `.ci/setup` installs Debian's chromium package")
}

/// Starts headless Chromium on `url` and returns it with the DevTools port it listens on.
fn launch(url: &str) -> (Browser, u16) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let profile =
        std::env::temp_dir().join(format!("ws-server-chromium-{}-{}", std::process::id(), N.fetch_add(1, SeqCst)));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let stderr = child.stderr.take().unwrap();
    let browser = Browser(child, profile);
    // Chromium announces its DevTools endpoint on stderr.
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
            let port = rest.split('/').next().unwrap().parse().unwrap();
            return (browser, port);
        }
    }
    panic!("chromium exited without announcing its DevTools port");
}

struct Page {
    ws: common::Ws,
    next_id: u64,
}

impl Page {
    async fn open(devtools_port: u16) -> Self {
        let deadline = Instant::now() + Duration::from_secs(20);
        let target = loop {
            let r = common::http(([127, 0, 0, 1], devtools_port).into(), "GET", "/json/list", &[], b"").await;
            let list: Vec<Value> = serde_json::from_slice(&r.body).unwrap_or_default();
            if let Some(page) = list.into_iter().find(|t| t["type"] == "page" && t["webSocketDebuggerUrl"].is_string())
            {
                break page;
            }
            assert!(Instant::now() < deadline, "no page target");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let url = target["webSocketDebuggerUrl"].as_str().unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("devtools connects");
        Self { ws, next_id: 1 }
    }

    /// Evaluates a JavaScript expression in the page and returns its value (a promise's, once it settles).
    async fn eval(&mut self, expression: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let cmd = json!({"id": id, "method": "Runtime.evaluate", "params": params});
        self.ws.send(Message::Text(cmd.to_string().into())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(15), self.ws.next()).await.unwrap().unwrap().unwrap();
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    let result = &v["result"];
                    assert!(
                        result["exceptionDetails"].is_null(),
                        "`{expression}` threw: {}",
                        result["exceptionDetails"]
                    );
                    return result["result"]["value"].clone();
                }
            }
        }
    }

    /// Evaluates until the expression is true.
    async fn wait_until(&mut self, expression: &str) {
        self.wait_long(expression, Duration::from_secs(20)).await;
    }

    /// Evaluates until the expression is true, for at most `limit`.
    async fn wait_long(&mut self, expression: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.eval(expression).await != json!(true) {
            if Instant::now() >= deadline {
                let seen = self.eval("JSON.stringify(window.seen ?? null)").await;
                let log = self.eval("document.getElementById('log')?.innerText ?? ''").await;
                panic!("the page never satisfied `{expression}`\nevents: {seen}\nlog:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the demo page to be loaded (not the blank page Chromium starts with) and its module to have run.
    async fn loaded(&mut self) {
        self.wait_until("document.readyState === 'complete' && !!window.hub").await;
    }

    /// Waits for the demo page and starts recording its client's events.
    async fn ready(&mut self) {
        self.loaded().await;
        self.eval(&record("hub")).await;
    }

    /// The events recorded so far, one line each (see [`event_line`]).
    async fn events(&mut self) -> Vec<String> {
        let seen = self.eval("window.seen").await;
        seen.as_array().expect("events are recorded").iter().map(event_line).collect()
    }
}

/// JavaScript that records every event of the client `name` in `window.seen`.
fn record(name: &str) -> String {
    format!(
        "window.seen = []; \
         for (const e of ['state', 'connected', 'disconnected', 'reconnecting', 'subscribed', 'error', 'closed']) \
           {name}.on(e, (d) => window.seen.push({{ e, ...d, at: performance.now() }}));"
    )
}

/// An event as one line: `state connected`, `disconnected 1001`, `reconnecting`, `subscribed h:news false`, ...
fn event_line(e: &Value) -> String {
    let rest = match e["e"].as_str().unwrap() {
        "state" => e["state"].to_string(),
        "disconnected" => e["code"].to_string(),
        "subscribed" => format!("{} {}", e["channel"].as_str().unwrap(), e["recovered"]),
        _ => String::new(),
    };
    format!("{} {}", e["e"].as_str().unwrap(), rest.trim_matches('"')).trim_end().to_owned()
}

/// Whether `want` occurs in `seen` in this order (with anything in between).
fn in_order(seen: &[String], want: &[&str]) -> bool {
    let mut rest = seen.iter();
    want.iter().all(|w| rest.any(|s| s == w))
}

/// A config with a history-keeping namespace `h` and an API key for publishing as a backend.
fn history_config() -> ws_server::Config {
    let mut config = config();
    let mut history = ws_core::NamespaceConfig::default();
    history.history_size = 100;
    history.history_ttl_ms = 60_000;
    config.namespaces.insert("h".into(), history);
    config.api.keys = vec!["browser-test-key".into()];
    config
}

/// Publishes through the HTTP API, as a backend, and returns the offset.
async fn api_publish(addr: SocketAddr, channel: &str, data: Value) -> u64 {
    let body = json!({"channel": channel, "data": data}).to_string();
    let r = http(addr, "POST", "/api/publish", &[("Authorization", "apikey browser-test-key")], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["offset"].as_u64().unwrap()
}

/// A TCP proxy between the browser and the server, which can cut the connections it carries (the browser sees
/// them drop, code 1006), refuse new ones for a while, or freeze the ones it carries: nothing flows and nothing
/// closes, a half-open connection as a dead NAT leaves it. New connections after a freeze flow again.
struct Proxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    accept: AbortHandle,
}

#[derive(Default)]
struct ProxyShared {
    refuse: AtomicBool,
    conns: Mutex<Vec<(Arc<AtomicBool>, [AbortHandle; 2])>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared::default());
        let state = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if state.refuse.load(SeqCst) {
                    continue; // Dropped: the connection closes at once.
                }
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
                let frozen = Arc::new(AtomicBool::new(false));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(common::pump(cr, sw, frozen.clone())).abort_handle();
                let down = tokio::spawn(common::pump(sr, cw, frozen.clone())).abort_handle();
                state.conns.lock().unwrap().push((frozen, [up, down]));
            }
        })
        .abort_handle();
        Self { addr, shared, accept }
    }

    /// Closes every connection carried so far.
    fn cut(&self) {
        for (_, tasks) in self.shared.conns.lock().unwrap().drain(..) {
            tasks.iter().for_each(AbortHandle::abort);
        }
    }

    /// Stops every connection carried so far from forwarding anything, without closing it.
    fn freeze(&self) {
        self.shared.conns.lock().unwrap().iter().for_each(|(frozen, _)| frozen.store(true, SeqCst));
    }

    /// Refuses (accepts and closes at once) new connections, or carries them again.
    fn refuse(&self, refuse: bool) {
        self.shared.refuse.store(refuse, SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Makes a client of the page's own (`window.c`) with a quick backoff, records its events, connects it and
/// subscribes to `channel`, collecting the messages in `window.got`; returns what `ready` resolved with.
async fn quick_client(page: &mut Page, channel: &str) -> Value {
    page.eval(&format!(
        "(async () => {{ \
           const {{ Client }} = await import('/ws-hub.js'); \
           window.c = new Client('/ws', {{ backoff: {{ initialMs: 100, maxMs: 400 }} }}); \
           {record} \
           window.got = []; \
           c.connect(); \
           return await c.subscribe({channel}, (m) => window.got.push(m)).ready; \
         }})()",
        record = record("c"),
        channel = json!(channel),
    ))
    .await
}

/// The offsets and the `n` of each message the page's client got.
async fn got(page: &mut Page) -> Vec<(u64, u64)> {
    let got = page.eval("window.got").await;
    got.as_array().unwrap().iter().map(|m| (m["offset"].as_u64().unwrap(), m["data"]["n"].as_u64().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_connects_subscribes_publishes_and_shows_the_message() {
    let _serial = SERIAL.lock().await;
    let server = start(config()).await;
    let (_browser, port) = launch(&format!("http://{}/", server.addr));
    let mut page = Page::open(port).await;
    page.ready().await;

    page.eval("document.getElementById('connect').click()").await;
    page.wait_until("document.getElementById('status').textContent === 'connected'").await;
    page.eval("document.getElementById('channel').value = 'demo:test'; document.getElementById('subscribe').click()")
        .await;
    let subscribed = r#"{"type":"subscribed","channel":"demo:test","recovered":null}"#;
    page.wait_until(&format!("document.getElementById('log').textContent.includes({})", json!(subscribed))).await;

    let nonce = format!("browser-{}", std::process::id());
    page.eval(&format!(
        "document.getElementById('pub-channel').value = 'demo:test'; \
         document.getElementById('data').value = '{{\"text\":\"{nonce}\"}}'; \
         document.getElementById('publish').click()"
    ))
    .await;
    let shown =
        format!("{{\"type\":\"message\",\"channel\":\"demo:test\",\"offset\":1,\"data\":{{\"text\":\"{nonce}\"}}}}");
    page.wait_until(&format!("document.getElementById('log').textContent.includes({})", json!(shown))).await;
    // The server saw it too.
    assert_eq!(server.hub.stats().publications, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_client_module_is_served_beside_the_demo_page() {
    let server = start(config()).await;
    let r = http(server.addr, "GET", "/ws-hub.js", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "pages of other origins may import it");
    assert!(r.text().contains("export class Client"), "the module exports Client");
    let page = http(server.addr, "GET", "/", &[], b"").await.text();
    assert!(page.contains(r#"import { Client } from "/ws-hub.js""#), "the demo page uses the module");
    server.shutdown().await.unwrap();

    let mut off = config();
    off.paths.demo = false;
    let server = start(off).await;
    assert_eq!(http(server.addr, "GET", "/ws-hub.js", &[], b"").await.status, 404, "the demo switch covers it");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_reported_as_not_recovered_and_delivery_goes_on() {
    let _serial = SERIAL.lock().await;
    let mut config = history_config();
    config.drain.window_ms = 100;
    let first = start(config.clone()).await;
    let addr = first.addr;
    let (_browser, port) = launch(&format!("http://{addr}/"));
    let mut page = Page::open(port).await;
    page.ready().await;
    page.eval("document.getElementById('connect').click()").await;
    page.wait_until("document.getElementById('status').textContent === 'connected'").await;
    page.eval("document.getElementById('channel').value = 'h:news'; document.getElementById('subscribe').click()")
        .await;
    page.wait_until("window.seen.some((e) => e.e === 'subscribed')").await;
    page.eval(
        "document.getElementById('pub-channel').value = 'h:news'; \
         document.getElementById('data').value = '{\"n\":1}'; \
         document.getElementById('publish').click()",
    )
    .await;
    let before = r#"{"type":"message","channel":"h:news","offset":1,"data":{"n":1}}"#;
    page.wait_until(&format!("document.getElementById('log').textContent.includes({})", json!(before))).await;

    first.shutdown().await.unwrap();
    page.wait_until("hub.state !== 'connected'").await;
    // Publishing while disconnected fails at once, and says why.
    let refused = page
        .eval(
            "(async () => { const t = performance.now(); \
               try { await hub.publish('h:news', { n: 0 }); return 'published'; } \
               catch (e) { return { code: e.code, message: e.message, ms: performance.now() - t }; } })()",
        )
        .await;
    assert_eq!(refused["code"], "not_connected", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("publish"), "{refused}");
    assert!(refused["ms"].as_f64().unwrap() < 500.0, "rejected fast, not after a timeout: {refused}");

    config.listen = addr;
    let second = start(config).await;
    page.wait_long("window.seen.some((e) => e.e === 'subscribed' && e.recovered !== null)", Duration::from_secs(40))
        .await;
    let seen = page.events().await;
    assert!(
        in_order(
            &seen,
            &["subscribed h:news null", "disconnected 1001", "state disconnected", "reconnecting", "state connected"]
        ),
        "disconnected, reconnecting, connected again: {seen:?}"
    );
    let resubscribed: Vec<&String> = seen.iter().filter(|e| e.starts_with("subscribed")).collect();
    assert_eq!(resubscribed, ["subscribed h:news null", "subscribed h:news false"], "the reset is reported: {seen:?}");
    let hint = page.eval("window.seen.find((e) => e.e === 'disconnected').reconnectAfterMs").await;
    assert!(hint.is_u64(), "the drain's reconnect hint reaches the event: {hint}");
    assert_eq!(page.eval("document.getElementById('status').textContent").await, "connected");
    let log = page.eval("document.getElementById('log').textContent").await;
    let log = log.as_str().unwrap();
    assert!(log.contains("reconnecting: attempt 1 in"), "the page shows reconnect attempts: {log}");
    assert!(log.contains(r#"{"type":"subscribed","channel":"h:news","recovered":false}"#), "and the result: {log}");

    assert_eq!(api_publish(second.addr, "h:news", json!({"n": 2})).await, 1, "offsets start over in the new epoch");
    let after = r#"{"type":"message","channel":"h:news","offset":1,"data":{"n":2}}"#;
    page.wait_until(&format!("document.getElementById('log').textContent.includes({})", json!(after))).await;
    second.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_recovers_what_was_published_meanwhile_exactly_once() {
    let _serial = SERIAL.lock().await;
    let server = start(history_config()).await;
    let proxy = Proxy::start(server.addr).await;
    let (_browser, port) = launch(&format!("http://{}/", proxy.addr));
    let mut page = Page::open(port).await;
    page.loaded().await;
    let ready = quick_client(&mut page, "h:feed").await;
    assert_eq!((&ready["channel"], &ready["recovered"], &ready["offset"]), (&json!("h:feed"), &Value::Null, &json!(0)));
    assert!(ready["epoch"].is_string(), "{ready}");
    assert_eq!(page.eval("c.publish('h:feed', { n: 1 })").await, 1);
    assert_eq!(api_publish(server.addr, "h:feed", json!({"n": 2})).await, 2);
    page.wait_until("window.got.length === 2").await;

    // The connection drops, and the next attempts fail until a message was published.
    proxy.refuse(true);
    proxy.cut();
    page.wait_until("window.seen.some((e) => e.e === 'disconnected')").await;
    assert_eq!(api_publish(server.addr, "h:feed", json!({"n": 3})).await, 3);
    page.wait_until("window.seen.filter((e) => e.e === 'reconnecting').length >= 2").await;
    proxy.refuse(false);
    page.wait_until("window.seen.some((e) => e.e === 'subscribed' && e.recovered !== null)").await;
    assert_eq!(api_publish(server.addr, "h:feed", json!({"n": 4})).await, 4);
    page.wait_until("window.got.length >= 4").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got(&mut page).await, [(1, 1), (2, 2), (3, 3), (4, 4)], "every message once, in order");

    let seen = page.events().await;
    assert!(
        in_order(&seen, &["disconnected 1006", "reconnecting", "error", "reconnecting", "state connected"]),
        "{seen:?}"
    );
    let subscribed: Vec<&String> = seen.iter().filter(|e| e.starts_with("subscribed")).collect();
    assert_eq!(subscribed, ["subscribed h:feed null", "subscribed h:feed true"], "{seen:?}");

    // A kick by the application (4004) is terminal: no reconnect.
    let conn_id = page.eval("window.seen.filter((e) => e.e === 'connected').at(-1).connId").await;
    let body = json!({"conn_id": conn_id}).to_string();
    let r =
        http(server.addr, "POST", "/api/disconnect", &[("Authorization", "apikey browser-test-key")], body.as_bytes())
            .await;
    assert_eq!(r.json()["disconnected"], 1, "{}", r.text());
    page.wait_until("c.state === 'closed'").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = page.events().await;
    let tail: Vec<&String> = seen.iter().skip_while(|e| *e != "disconnected 4004").collect();
    assert_eq!(tail, ["disconnected 4004", "state closed", "closed"], "{seen:?}");
    let refused = page.eval("c.publish('h:feed', 5).then(() => 'published', (e) => e.code)").await;
    assert_eq!(refused, "closed");
    drop(proxy);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_dropped_by_the_heartbeat_rule_and_recovered() {
    let _serial = SERIAL.lock().await;
    let mut config = history_config();
    config.heartbeat.interval_ms = 1_000;
    config.heartbeat.pong_timeout_ms = 30_000;
    let server = start(config).await;
    let proxy = Proxy::start(server.addr).await;
    let (_browser, port) = launch(&format!("http://{}/", proxy.addr));
    let mut page = Page::open(port).await;
    page.loaded().await;
    quick_client(&mut page, "h:beat").await;
    assert_eq!(api_publish(server.addr, "h:beat", json!({"n": 1})).await, 1);
    page.wait_until("window.got.length === 1").await;

    // Idle for longer than the silence limit (1 s + 1 s): the client's pings keep a live connection up, though the
    // browser hides the server's WebSocket Pings from it.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let seen = page.events().await;
    assert!(!seen.iter().any(|e| e.starts_with("disconnected")), "an idle live connection stays up: {seen:?}");

    proxy.freeze();
    let frozen_at = page.eval("performance.now()").await.as_f64().unwrap();
    assert_eq!(api_publish(server.addr, "h:beat", json!({"n": 2})).await, 2);
    page.wait_until("window.seen.some((e) => e.e === 'subscribed' && e.recovered !== null)").await;
    page.wait_until("window.got.length >= 2").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got(&mut page).await, [(1, 1), (2, 2)], "the message lost on the frozen connection is recovered once");
    let dropped = page.eval("window.seen.find((e) => e.e === 'disconnected')").await;
    assert_eq!(dropped["code"], 1006, "{dropped}");
    assert_eq!(dropped["reason"], "no frames within the heartbeat window", "{dropped}");
    let after = dropped["at"].as_f64().unwrap() - frozen_at;
    assert!((1_000.0..6_000.0).contains(&after), "dropped within the heartbeat and its margin: {after} ms");
    let seen = page.events().await;
    let subscribed: Vec<&String> = seen.iter().filter(|e| e.starts_with("subscribed")).collect();
    assert_eq!(subscribed, ["subscribed h:beat null", "subscribed h:beat true"], "{seen:?}");
    drop(proxy);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_module_follows_the_protocol_against_a_scripted_server() {
    let _serial = SERIAL.lock().await;
    let server = start(config()).await;
    let (_browser, port) = launch(&format!("http://{}/", server.addr));
    let mut page = Page::open(port).await;
    page.loaded().await;
    let out = page.eval(include_str!("browser_rules.js")).await;
    let host = server.addr;

    // The connect: the page's origin, the subprotocol, a fresh token from `getToken` every time.
    assert_eq!(out["first"], json!({"url": format!("ws://{host}/ws?token=tok%201"), "protocol": "wshub.v1"}));
    assert_eq!(out["second"]["url"], format!("ws://{host}/ws?token=tok%202"));
    // A first subscribe has nothing to recover.
    assert!(out["subscribe"]["id"].is_u64() && out["subscribe"].get("recover").is_none(), "{}", out["subscribe"]);
    assert_eq!(out["ready"], json!({"channel": "news", "recovered": null, "epoch": "e1", "offset": 0}));
    // A duplicate is dropped; a skip resubscribes with `recover` from the last delivered offset.
    assert_eq!(
        out["afterSkip"],
        json!([{"type": "unsubscribe", "channel": "news"},
               {"type": "subscribe", "channel": "news", "recover": {"epoch": "e1", "offset": 2}}])
    );
    assert_eq!(out["gotBeforeNotice"], json!([1, 2, 3, 4]));
    // `unsubscribed` with `resubscribe: true`: subscribe again with `recover`, within 0-500 ms.
    assert_eq!(
        out["notice"]["command"],
        json!([{"type": "subscribe", "channel": "news", "recover": {"epoch": "e1", "offset": 4}}])
    );
    assert!(out["notice"]["ms"].as_f64().unwrap() < 800.0, "{}", out["notice"]);
    // Requests: an id, the idempotency key, errors carry the server's code, replies matched by id, timeouts.
    let publish = &out["publish"];
    assert!(publish["id"].is_u64(), "{publish}");
    assert_eq!(
        (&publish["type"], &publish["channel"], &publish["data"], &publish["idempotency_key"]),
        (&json!("publish"), &json!("news"), &json!({"x": 1}), &json!("k1"))
    );
    assert_eq!(
        out["publishError"],
        json!({"name": "HubError", "code": "forbidden", "message": "forbidden: publishing is off"})
    );
    assert_eq!(out["published"], 9);
    assert_eq!(out["timeout"], "request_timeout");
    // The drain's hint is a floor, plus a random extra of at most max(hint / 2, 250 ms).
    assert_eq!(
        out["disconnected"],
        json!({"e": "disconnected", "code": 1001, "reason": "server shutting down", "reconnectAfterMs": 400})
    );
    let hinted = out["hinted"]["delayMs"].as_u64().unwrap();
    assert!((400..=650).contains(&hinted), "reconnect delay {hinted} ms after a 400 ms hint");
    // After the reconnect every channel is resubscribed from its last offset; a reset is reported as such.
    assert_eq!(
        out["resubscribe"],
        json!([{"type": "subscribe", "channel": "news", "recover": {"epoch": "e1", "offset": 5}}])
    );
    assert_eq!(out["got"], json!([1, 2, 3, 4, 5, 11]), "each message once, in order");
    assert_eq!(out["subscribed"], json!([null, true, true, false]));
    // Terminal close codes stop the client; the others reconnect.
    for (code, terminal) in [
        (1000, true),
        (1002, true),
        (1007, true),
        (1009, true),
        (4004, true),
        (1001, false),
        (1011, false),
        (4000, false),
        (4001, false),
    ] {
        let seen = &out["terminal"][code.to_string()];
        assert_eq!(seen["state"] == "closed", terminal, "close {code}: {seen}");
        assert_eq!(seen["sockets"], if terminal { 1 } else { 2 }, "close {code}: {seen}");
    }
    // Full jitter under the ceiling 40 ms x 2^n capped at 100 ms; `maxAttempts` failures in a row end it.
    let delays = out["backoff"]["delays"].as_array().unwrap();
    let ceilings = [40, 80, 100, 100];
    assert_eq!(delays.len(), ceilings.len(), "{delays:?}");
    for (n, (d, ceiling)) in delays.iter().zip(ceilings).enumerate() {
        assert_eq!(d[0], n + 1, "{delays:?}");
        assert!(d[1].as_u64().unwrap() <= ceiling, "attempt {}: {d} over {ceiling} ms", n + 1);
    }
    assert_eq!(out["backoff"]["closed"]["reason"], "gave up reconnecting");
    // close(): 1000, no reconnect, and everything after it fails as closed.
    assert_eq!(
        out["close"],
        json!({"code": 1000, "state": "closed", "ready": "closed", "publish": "closed", "sockets": 0})
    );
    server.shutdown().await.unwrap();
}
