//! The demo page in a real browser: headless Chromium loads `/`, connects, subscribes and publishes, and the
//! test reads the message back from the page. Chromium is driven over its DevTools protocol.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
    let profile = std::env::temp_dir().join(format!("ws-server-chromium-{}", std::process::id()));
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
    let browser = Browser(child);
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

    /// Evaluates a JavaScript expression in the page and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let cmd = json!({"id": id, "method": "Runtime.evaluate", "params": {"expression": expression, "returnByValue": true}});
        self.ws.send(Message::Text(cmd.to_string().into())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await.unwrap().unwrap().unwrap();
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    return v["result"]["result"]["value"].clone();
                }
            }
        }
    }

    /// Evaluates until the expression is true.
    async fn wait_until(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(expression).await != json!(true) {
            assert!(Instant::now() < deadline, "the page never satisfied `{expression}`");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_connects_subscribes_publishes_and_shows_the_message() {
    let server = start(config()).await;
    let (_browser, port) = launch(&format!("http://{}/", server.addr));
    let mut page = Page::open(port).await;
    page.wait_until("document.readyState === 'complete' && !!document.getElementById('connect')").await;

    page.eval("document.getElementById('connect').click()").await;
    page.wait_until("document.getElementById('status').textContent === 'connected'").await;
    page.eval("document.getElementById('channel').value = 'demo:test'; document.getElementById('subscribe').click()")
        .await;
    page.wait_until("document.getElementById('log').textContent.includes('\"type\":\"subscribed\"')").await;

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
