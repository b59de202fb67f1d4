//! The real `ws-server` process: graceful drain on SIGTERM, readiness before the listener closes, logs that
//! never carry a token, the environment Kubernetes gives it, and streaming a process's output through the API.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{close_code, http, next_json, send_json, ws_connect, KUBERNETES_SERVICE_ENV};
use serde_json::json;

/// A running `ws-server` with its JSON log lines arriving on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    /// Starts `ws-server` on a free port; it stops accepting as soon as it is signalled unless `env` sets
    /// `WS_SERVER_DRAIN__READY_DELAY_MS`.
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ws-server"))
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env("WS_SERVER_DRAIN__READY_DELAY_MS", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ws-server starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits for the first log line whose message is `message` and returns it.
    fn wait_for(&mut self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(line.clone());
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["message"] == message {
                        return v;
                    }
                }
            }
        }
        panic!("no `{message}` log line; saw:\n{}", self.seen.join("\n"));
    }

    fn addr(v: &serde_json::Value, field: &str) -> SocketAddr {
        v[field].as_str().unwrap_or_else(|| panic!("no {field} in {v}")).parse().unwrap()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok);
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "ws-server did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every log line so far, after the process has exited.
    fn all_logs(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_readiness_first_then_spread_disconnects_flush_and_exit_zero() {
    const CLIENTS: usize = 5;
    const WINDOW: u64 = 4_000;
    let mut proc = Proc::spawn(
        &["--admin-listen", "127.0.0.1:0"],
        &[("WS_SERVER_DRAIN__WINDOW_MS", "4000"), ("WS_SERVER_DRAIN__DEADLINE_MS", "5000")],
    );
    let listening = proc.wait_for("listening");
    let (addr, admin) = (Proc::addr(&listening, "addr"), Proc::addr(&listening, "admin"));

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = ws_connect(addr, "/ws", &[]).await.unwrap();
        next_json(&mut ws).await;
        send_json(&mut ws, json!({"type":"subscribe","channel":"d"})).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
        clients.push(ws);
    }
    // Queue messages nobody has read yet: the drain must flush them before closing.
    for i in 0..50 {
        send_json(&mut clients[0], json!({"type":"publish","channel":"d","data":i})).await;
    }
    assert_eq!(http(admin, "GET", "/readyz", &[], b"").await.status, 200);
    proc.signal("-TERM");

    // Readiness turns 503 while the clients have not yet closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = http(admin, "GET", "/readyz", &[], b"").await.status;
        if status == 503 {
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New connections are refused.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err() || ws_connect(addr, "/ws", &[]).await.is_err());

    let mut hints = Vec::new();
    for ws in &mut clients {
        let mut data = Vec::new();
        let disconnect = loop {
            let m = next_json(ws).await;
            match m["type"].as_str() {
                Some("message") => data.push(m["data"].as_u64().unwrap()),
                Some("disconnect") => break m,
                _ => panic!("unexpected {m}"),
            }
        };
        assert_eq!(data, (0..50).collect::<Vec<_>>(), "every queued message arrives before the disconnect");
        assert_eq!(disconnect["code"], 1001);
        hints.push(disconnect["reconnect_after_ms"].as_u64().unwrap());
        assert_eq!(close_code(ws).await, 1001);
    }
    hints.sort_unstable();
    hints.dedup();
    assert_eq!(hints.len(), CLIENTS, "every client gets its own reconnect hint: {hints:?}");
    assert!(hints.iter().all(|h| *h <= WINDOW), "{hints:?}");
    assert!(hints[CLIENTS - 1] - hints[0] >= WINDOW / 2, "hints spread over the window: {hints:?}");
    let status = proc.wait_exit();
    assert!(status.success(), "exit status {status}");
}

/// Opens a WebSocket on `/ws`, or says why not: the TCP connect failed, or the upgrade got an HTTP status.
async fn try_ws(addr: SocketAddr) -> Result<common::Ws, String> {
    let connect = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"));
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => Err(format!("HTTP {}", response.status())),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_but_keeps_accepting_for_the_ready_delay_then_refuses() {
    let mut proc = Proc::spawn(&[], &[("WS_SERVER_DRAIN__READY_DELAY_MS", "8000")]);
    let addr = Proc::addr(&proc.wait_for("listening"), "addr");
    let mut early = try_ws(addr).await.expect("a connection before the signal");
    assert_eq!(next_json(&mut early).await["type"], "welcome");
    assert_eq!(http(addr, "GET", "/readyz", &[], b"").await.status, 200);
    proc.signal("-TERM");

    let deadline = Instant::now() + Duration::from_secs(10);
    while http(addr, "GET", "/readyz", &[], b"").await.status != 503 {
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Unready, yet a client a load balancer still sends here is served.
    let mut late = try_ws(addr).await.expect("a new connection is accepted during the ready delay");
    assert_eq!(next_json(&mut late).await["type"], "welcome");
    send_json(&mut late, json!({"type":"subscribe","id":1,"channel":"d"})).await;
    assert_eq!(next_json(&mut late).await["type"], "subscribed");

    // Then the listener closes: new connections are refused, and every client is told to go.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_ws(addr).await {
            Err(_) => break,
            Ok(ws) => drop(ws),
        }
        assert!(Instant::now() < deadline, "new connections were never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for ws in [&mut early, &mut late] {
        let disconnect = next_json(ws).await;
        assert_eq!((&disconnect["type"], &disconnect["code"]), (&json!("disconnect"), &json!(1001)));
        assert_eq!(close_code(ws).await, 1001);
    }
    assert!(proc.wait_exit().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_an_authenticated_connection_never_carry_the_token() {
    const TOKEN: &str = "secret-api-key-0123456789";
    let mut proc = Proc::spawn(&["--log-level", "debug"], &[(&format!("WS_SERVER_AUTH__API_KEYS__{TOKEN}"), "alice")]);
    let addr = Proc::addr(&proc.wait_for("listening"), "addr");
    let mut by_query = ws_connect(addr, &format!("/ws?token={TOKEN}&x=1"), &[]).await.unwrap();
    assert_eq!(next_json(&mut by_query).await["user_id"], "alice");
    let mut by_header = ws_connect(addr, "/ws", &[("Authorization", &format!("Bearer {TOKEN}"))]).await.unwrap();
    assert_eq!(next_json(&mut by_header).await["user_id"], "alice");
    assert_eq!(ws_connect(addr, "/ws?token=wrong-secret-token", &[]).await.err(), Some(401));
    drop((by_query, by_header));
    proc.signal("-TERM");
    assert!(proc.wait_exit().success());
    let logs = proc.all_logs();
    assert!(logs.contains("connection"), "the connections were logged:\n{logs}");
    let lower = logs.to_lowercase();
    assert!(!lower.contains(&TOKEN.to_lowercase()), "a token leaked into the logs:\n{logs}");
    assert!(!logs.contains("wrong-secret-token"), "a refused token leaked into the logs:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_variables_are_ignored_with_one_warning_and_the_server_serves() {
    let mut proc = Proc::spawn(&[], &KUBERNETES_SERVICE_ENV);
    let addr = Proc::addr(&proc.wait_for("listening"), "addr");
    let mut ws = ws_connect(addr, "/ws", &[]).await.expect("the server serves");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    drop(ws);
    proc.signal("-TERM");
    let status = proc.wait_exit();
    let logs = proc.all_logs();
    assert!(status.success(), "{status}:\n{logs}");
    let warnings: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "WARN")
        .collect();
    assert_eq!(warnings.len(), 1, "one warning:\n{logs}");
    let named: Vec<&str> = warnings[0]["variables"].as_str().unwrap_or_default().split(' ').collect();
    for (name, _) in KUBERNETES_SERVICE_ENV {
        assert!(named.contains(&name), "{name} is not named:\n{logs}");
    }
    assert!(!logs.contains("10.96.12.34"), "values are not logged:\n{logs}");
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// A running server with the API on (key `k`), default configuration otherwise.
async fn api_server() -> (Proc, SocketAddr) {
    let mut proc = Proc::spawn(&[], &[("WS_SERVER_API__KEYS", r#"["k"]"#)]);
    let addr = Proc::addr(&proc.wait_for("listening"), "addr");
    (proc, addr)
}

async fn post(addr: SocketAddr, path: &str, body: serde_json::Value) -> common::HttpResponse {
    http(addr, "POST", path, &[("Authorization", "apikey k")], body.to_string().as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_streams_a_process_through_the_api_and_subscribers_get_typed_lines_and_status() {
    use ws_protocol::{ProcessOutput, ProcessState, ProcessStatus, ProcessStream};
    let (_proc, addr) = api_server().await;
    let mut ws = ws_connect(addr, "/ws", &[]).await.unwrap();
    next_json(&mut ws).await;
    send_json(&mut ws, json!({"type":"subscribe","id":1,"channel":"process:build-7"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");

    let before = now_ms();
    let running = post(addr, "/api/process/build-7/status", json!({"state":"running"})).await;
    assert_eq!(running.status, 200, "{}", running.text());
    let lines = [
        json!({"line":"Compiling ws-core \"quoted\"\ttab","stream":"stdout"}),
        json!({"line":"warning: unused variable","stream":"stderr"}),
        json!({"line":"no stream given: stdout"}),
    ];
    for (i, line) in lines.iter().enumerate() {
        let r = post(addr, "/api/process/build-7/output", line.clone()).await;
        assert_eq!((r.status, r.json()), (200, json!({"offset": i + 2})));
    }
    let exited = post(addr, "/api/process/build-7/status", json!({"state":"exited","code":0})).await;
    let failed =
        post(addr, "/api/process/build-7/status", json!({"state":"failed","code":137,"reason":"killed"})).await;
    let after = now_ms();

    let mut got = Vec::new();
    for _ in 0..6 {
        let m = next_json(&mut ws).await;
        assert_eq!((&m["type"], &m["channel"]), (&json!("message"), &json!("process:build-7")));
        got.push(m);
    }
    let offsets: Vec<u64> = got.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5, 6]);
    let events: Vec<&str> = got.iter().map(|m| m["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["process_status", "process_output", "process_output", "process_output", "process_status", "process_status"]
    );
    assert_eq!(got[1]["data"], json!({"line":"Compiling ws-core \"quoted\"\ttab","stream":"stdout"}));
    assert_eq!(got[2]["data"], json!({"line":"warning: unused variable","stream":"stderr"}));
    assert_eq!(got[3]["data"], json!({"line":"no stream given: stdout","stream":"stdout"}));
    let output: ProcessOutput = serde_json::from_value(got[2]["data"].clone()).expect("typed output");
    assert_eq!(output, ProcessOutput::new(ProcessStream::Stderr, "warning: unused variable"));

    // Statuses carry the server's wall-clock time, the same the API answered with.
    for (message, response, want) in [
        (&got[0], &running, ProcessStatus::new(ProcessState::Running, 0)),
        (&got[4], &exited, ProcessStatus::new(ProcessState::Exited, 0).code(0)),
        (&got[5], &failed, ProcessStatus::new(ProcessState::Failed, 0).code(137).reason("killed")),
    ] {
        let mut status: ProcessStatus = serde_json::from_value(message["data"].clone()).expect("typed status");
        assert!((before..=after).contains(&status.at_ms), "{} not within [{before}, {after}]", status.at_ms);
        assert_eq!(response.json()["at_ms"], status.at_ms, "{}", response.text());
        status.at_ms = 0;
        assert_eq!(status, want);
    }
    assert_eq!(
        got[4]["data"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["at_ms", "code", "state"],
        "no reason when none was given"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_late_joiner_reads_recent_process_output_and_clients_may_not_publish_there() {
    let (_proc, addr) = api_server().await;
    for i in 1..=3 {
        let r = post(addr, "/api/process/late-1/output", json!({"line": format!("line {i}")})).await;
        // With no subscriber yet, a non-zero offset means the namespace kept it.
        assert_eq!(r.json(), json!({"offset": i}));
    }
    let mut ws = ws_connect(addr, "/ws", &[]).await.unwrap();
    next_json(&mut ws).await;
    send_json(&mut ws, json!({"type":"history","id":1,"channel":"process:late-1"})).await;
    let history = next_json(&mut ws).await;
    assert_eq!(history["type"], "history", "{history}");
    let lines: Vec<&str> =
        history["messages"].as_array().unwrap().iter().map(|m| m["data"]["line"].as_str().unwrap()).collect();
    assert_eq!(lines, ["line 1", "line 2", "line 3"]);
    // Then live from where the history ended, with nothing missed or repeated.
    let recover = json!({"epoch": history["epoch"], "offset": history["offset"]});
    send_json(&mut ws, json!({"type":"subscribe","id":2,"channel":"process:late-1","recover":recover})).await;
    let subscribed = next_json(&mut ws).await;
    assert_eq!((&subscribed["recovered"], &subscribed["missed"]), (&json!(true), &json!(0)), "{subscribed}");
    post(addr, "/api/process/late-1/output", json!({"line":"line 4"})).await;
    let live = next_json(&mut ws).await;
    assert_eq!((&live["offset"], &live["data"]["line"]), (&json!(4), &json!("line 4")));
    // Only backends publish on process channels.
    send_json(&mut ws, json!({"type":"publish","id":3,"channel":"process:late-1","data":{"line":"forged"}})).await;
    let refused = next_json(&mut ws).await;
    assert_eq!((&refused["type"], &refused["code"]), (&json!("error"), &json!("forbidden")), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_api_refuses_bad_ids_streams_states_and_oversize_lines_with_errors_that_say_why() {
    let (_proc, addr) = api_server().await;
    let long = "x".repeat(64 * 1024 + 1);
    let cases: [(&str, serde_json::Value, u16, &[&str]); 9] = [
        ("/api/process/bad%20id/output", json!({"line":"x"}), 400, &["invalid process id \"bad id\"", "A-Z a-z 0-9"]),
        ("/api/process//output", json!({"line":"x"}), 400, &["invalid process id \"\""]),
        (
            "/api/process/ok/output",
            json!({"line":"x","stream":"stdlog"}),
            400,
            &["field `stream`", "\"stdlog\"", "\"stdout\" or \"stderr\""],
        ),
        (
            "/api/process/ok/status",
            json!({"state":"done"}),
            400,
            &["field `state`", "\"done\"", "\"running\", \"exited\" or \"failed\""],
        ),
        ("/api/process/ok/output", json!({"line": long}), 400, &["field `line`", "65537", "65536"]),
        ("/api/process/ok/status", json!({"state":"exited","at_ms":1}), 400, &["at_ms"]),
        ("/api/process/ok/output", json!({"stream":"stdout"}), 400, &["line"]),
        ("/api/process/ok/status", json!({"state":"exited","code":"zero"}), 400, &["invalid type"]),
        ("/api/process/ok/kill", json!({}), 404, &["/api/process/{id}/output"]),
    ];
    for (path, body, status, wants) in &cases {
        let r = post(addr, path, body.clone()).await;
        assert_eq!(r.status, *status, "{path} {body}: {}", r.text());
        let error = r.json();
        let message = error["message"].as_str().unwrap();
        assert_eq!(error["error"], if *status == 400 { "bad_request" } else { "not_found" });
        for want in *wants {
            assert!(message.contains(want), "{path}: {message:?} lacks {want:?}");
        }
    }
    let r = http(addr, "POST", "/api/process/ok/output", &[], br#"{"line":"x"}"#).await;
    assert_eq!(r.status, 401);
    let history = http(addr, "GET", "/api/history/process:ok", &[("Authorization", "apikey k")], b"").await;
    assert_eq!(history.json()["messages"], json!([]), "nothing refused was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_script_streams_a_real_commands_lines_and_exit_code() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/stream-process.sh");
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let text = std::fs::read_to_string(script).unwrap();
    assert!(std::fs::read_to_string(readme).unwrap().contains(&text), "the README shows the script as it is");

    let (_proc, addr) = api_server().await;
    let mut ws = ws_connect(addr, "/ws", &[]).await.unwrap();
    next_json(&mut ws).await;
    send_json(&mut ws, json!({"type":"subscribe","id":1,"channel":"process:script-1"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let command =
        r#"echo 'building "ws-hub"'; printf 'a\tb \\ c\n'; echo 'warning: careful' >&2; printf 'last'; exit 3"#;
    let run = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .args([script, "script-1", "sh", "-c", command])
            .env("HUB", format!("http://{addr}"))
            .env("HUB_KEY", "k")
            .output()
            .expect("sh runs the script")
    })
    .await
    .unwrap();
    assert_eq!(run.status.code(), Some(3), "the script exits as the command did: {run:?}");
    assert!(run.stderr.is_empty(), "every request succeeded: {}", String::from_utf8_lossy(&run.stderr));

    let (mut stdout, mut stderr, mut states) = (Vec::new(), Vec::new(), Vec::new());
    while states.len() < 2 {
        let m = next_json(&mut ws).await;
        match (m["event"].as_str(), m["data"]["stream"].as_str()) {
            (Some("process_output"), Some("stdout")) => stdout.push(m["data"]["line"].as_str().unwrap().to_owned()),
            (Some("process_output"), Some("stderr")) => stderr.push(m["data"]["line"].as_str().unwrap().to_owned()),
            (Some("process_status"), _) => states.push((m["data"]["state"].clone(), m["data"]["code"].clone())),
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(stdout, ["building \"ws-hub\"", "a\tb \\ c", "last"]);
    assert_eq!(stderr, ["warning: careful"]);
    assert_eq!(states, [(json!("running"), json!(null)), (json!("exited"), json!(3))]);
}
