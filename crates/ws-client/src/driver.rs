//! The driver: the one task that owns the socket, reconnects, and keeps every subscription in step.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{ClientBuilder, Error, Event, Message, Op, State};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Close codes after which the client stops: the server said stop, or this client is broken.
const TERMINAL: [u16; 5] = [1000, 1002, 1007, 1009, ws_protocol::close::APP_DISCONNECT];

/// One subscribed channel.
struct Chan {
    deliver: mpsc::Sender<Message>,
    /// The epoch and the last offset delivered to the application, once known.
    epoch: Option<String>,
    offset: u64,
    /// Subscribed on the current connection (its `subscribed` reply has come).
    live: bool,
    /// The caller of `subscribe`, until the first `subscribed` or error.
    waiter: Option<oneshot::Sender<Result<(), Error>>>,
    /// The application fell behind: messages are dropped until it has read half its buffer, then the
    /// channel is recovered from the last delivered offset.
    lagged: bool,
}

/// A request waiting for its reply.
enum Pending {
    Subscribe {
        channel: String,
    },
    /// A request; `retry` keeps the command of a keyed publish to send again after a reconnect.
    Request {
        reply: oneshot::Sender<Result<Value, Error>>,
        retry: Option<Value>,
    },
    Ignore,
}

/// A publication waiting in the outbox for a connection.
type Queued = (Value, oneshot::Sender<Result<Value, Error>>);

/// How a connection ended.
struct End {
    code: u16,
    reason: String,
    reconnect_after: Option<Duration>,
    /// Closed by the application.
    closing: bool,
}

enum ConnectError {
    Unauthorized,
    Other(String),
}

pub(crate) struct Driver {
    cfg: ClientBuilder,
    ops_tx: mpsc::UnboundedSender<Op>,
    ops: mpsc::UnboundedReceiver<Op>,
    state: watch::Sender<State>,
    events: broadcast::Sender<Event>,
    channels: HashMap<String, Chan>,
    pending: HashMap<u64, (Pending, Instant)>,
    /// Publications to send once connected, in order (only with an outbox).
    outbox: VecDeque<Queued>,
    next_id: u64,
    rng: StdRng,
    token: Option<String>,
    closing: bool,
}

/// A `message` frame's fields.
pub(crate) fn message(v: &Value) -> Option<Message> {
    Some(Message {
        channel: v["channel"].as_str()?.to_owned(),
        offset: v["offset"].as_u64()?,
        event: v["event"].as_str().map(str::to_owned),
        data: v.get("data")?.clone(),
    })
}

impl Driver {
    pub(crate) fn new(
        cfg: ClientBuilder,
        ops_tx: mpsc::UnboundedSender<Op>,
        ops: mpsc::UnboundedReceiver<Op>,
        state: watch::Sender<State>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        let token = cfg.token.clone();
        Self {
            cfg,
            ops_tx,
            ops,
            state,
            events,
            channels: HashMap::new(),
            pending: HashMap::new(),
            outbox: VecDeque::new(),
            next_id: 0,
            rng: StdRng::from_os_rng(),
            token,
            closing: false,
        }
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn set_state(&self, state: State) {
        let _ = self.state.send(state);
    }

    pub(crate) async fn run(mut self) {
        let mut attempt: u32 = 0;
        let mut asked_after_401 = false;
        loop {
            if self.closing {
                return self.finish("closed by the application");
            }
            self.set_state(State::Connecting);
            if let Some(provider) = self.cfg.token_provider.clone() {
                match provider().await {
                    Ok(token) => self.token = Some(token),
                    Err(e) => self.emit(Event::Error { message: format!("token provider failed: {e}") }),
                }
            }
            let mut floor = None;
            match self.connect().await {
                Ok(ws) => {
                    asked_after_401 = false;
                    let started = Instant::now();
                    let end = self.session(ws).await;
                    self.lost();
                    if end.closing || self.closing {
                        return self.finish("closed by the application");
                    }
                    self.emit(Event::Disconnected {
                        code: end.code,
                        reason: end.reason.clone(),
                        reconnect_after: end.reconnect_after,
                    });
                    if TERMINAL.contains(&end.code) {
                        return self.finish(&format!("closed by the server with {} {}", end.code, end.reason));
                    }
                    if started.elapsed() >= self.cfg.stable_after {
                        attempt = 0;
                    }
                    floor = end.reconnect_after;
                }
                Err(ConnectError::Unauthorized) if self.cfg.token_provider.is_some() && !asked_after_401 => {
                    // The token may just have expired: ask the provider for a fresh one, once.
                    asked_after_401 = true;
                    continue;
                }
                Err(ConnectError::Unauthorized) => return self.finish("the server refused the token (HTTP 401)"),
                Err(ConnectError::Other(e)) => self.emit(Event::Error { message: e }),
            }
            if self.cfg.backoff.max_attempts.is_some_and(|max| attempt >= max) {
                return self.finish("gave up reconnecting");
            }
            let mut delay = self.cfg.backoff.delay(attempt, &mut self.rng);
            if let Some(floor) = floor {
                // The server's hint is a floor; the random extra keeps a drained fleet from coming back at once.
                let extra = self.rng.random_range(0.0..=(floor.as_secs_f64() / 2.0).max(0.25));
                delay = delay.max(floor + Duration::from_secs_f64(extra));
            }
            attempt += 1;
            self.set_state(State::Disconnected);
            self.emit(Event::Reconnecting { attempt, delay });
            self.wait_offline(delay).await;
        }
    }

    fn finish(mut self, reason: &str) {
        self.closing = true;
        self.lost();
        for (_, reply) in self.outbox.drain(..) {
            let _ = reply.send(Err(Error::Closed));
        }
        for (_, chan) in self.channels.drain() {
            if let Some(w) = chan.waiter {
                let _ = w.send(Err(Error::Closed));
            }
        }
        self.set_state(State::Closed);
        self.emit(Event::Closed { reason: reason.to_owned() });
        // Answer whatever the handles still send.
        tokio::spawn(async move {
            while let Some(op) = self.ops.recv().await {
                match op {
                    Op::Subscribe { reply, .. } => drop(reply.send(Err(Error::Closed))),
                    Op::Request { reply, .. } => drop(reply.send(Err(Error::Closed))),
                    _ => {}
                }
            }
        });
    }

    /// The connection is gone: outstanding requests fail (keyed publishes go back to the front of the
    /// outbox, in the order they were sent), channels need a new `subscribed`.
    fn lost(&mut self) {
        let mut pending: Vec<(u64, Pending)> = self.pending.drain().map(|(id, (p, _))| (id, p)).collect();
        pending.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        for (_, p) in pending {
            match p {
                Pending::Request { reply, retry: Some(command) } if !self.closing => {
                    self.outbox.push_front((command, reply));
                }
                Pending::Request { reply, .. } => drop(reply.send(Err(Error::NotConnected))),
                Pending::Subscribe { .. } | Pending::Ignore => {}
            }
        }
        for chan in self.channels.values_mut() {
            chan.live = false;
            // The resubscribe after the reconnect recovers it.
            chan.lagged = false;
        }
    }

    async fn wait_offline(&mut self, delay: Duration) {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                op = self.ops.recv() => match op {
                    None | Some(Op::Close) => {
                        self.closing = true;
                        return;
                    }
                    Some(Op::Subscribe { channel, deliver, reply }) => self.add_channel(channel, deliver, reply),
                    Some(Op::Unsubscribe { channel }) => drop(self.channels.remove(&channel)),
                    Some(Op::Request { command, reply, retry }) => self.hold(command, reply, retry),
                    Some(Op::Resync { .. }) => {}
                },
            }
        }
    }

    /// A request made while disconnected: a publish waits in the outbox when there is room, anything
    /// else fails at once.
    fn hold(&mut self, command: Value, reply: oneshot::Sender<Result<Value, Error>>, retry: bool) {
        if !retry {
            let _ = reply.send(Err(Error::NotConnected));
        } else if self.outbox.len() >= self.cfg.outbox {
            let _ = reply.send(Err(Error::OutboxFull));
        } else {
            self.outbox.push_back((command, reply));
        }
    }

    /// Sends a request and waits for its reply by id.
    async fn request(
        &mut self,
        ws: &mut Socket,
        mut command: Value,
        reply: oneshot::Sender<Result<Value, Error>>,
        retry: bool,
    ) -> bool {
        let id = self.next_id();
        command["id"] = json!(id);
        let sent = Self::send(ws, &command).await;
        let retry = retry.then_some(command);
        self.pending.insert(id, (Pending::Request { reply, retry }, Instant::now() + self.cfg.request_timeout));
        sent
    }

    fn add_channel(
        &mut self,
        channel: String,
        deliver: mpsc::Sender<Message>,
        reply: oneshot::Sender<Result<(), Error>>,
    ) {
        match self.channels.get_mut(&channel) {
            Some(chan) => {
                chan.deliver = deliver;
                let _ = reply.send(Ok(()));
            }
            None => {
                let chan = Chan { deliver, epoch: None, offset: 0, live: false, waiter: Some(reply), lagged: false };
                self.channels.insert(channel, chan);
            }
        }
    }

    async fn connect(&mut self) -> Result<Socket, ConnectError> {
        let mut request =
            self.cfg.url.as_str().into_client_request().map_err(|e| ConnectError::Other(e.to_string()))?;
        let headers = request.headers_mut();
        for (name, value) in &self.cfg.headers {
            let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
            else {
                return Err(ConnectError::Other(format!("invalid header {name}")));
            };
            headers.insert(name, value);
        }
        if let Some(token) = &self.token {
            let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ConnectError::Other("the token is not a valid header value".into()))?;
            headers.insert(http::header::AUTHORIZATION, value);
        }
        let connect = tokio_tungstenite::connect_async(request);
        match tokio::time::timeout(self.cfg.request_timeout, connect).await {
            Err(_) => Err(ConnectError::Other("connect timed out".into())),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tungstenite::Error::Http(response))) if response.status() == 401 => Err(ConnectError::Unauthorized),
            Ok(Err(e)) => Err(ConnectError::Other(format!("connect failed: {e}"))),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    async fn send(ws: &mut Socket, v: &Value) -> bool {
        ws.send(WsMessage::Text(v.to_string().into())).await.is_ok()
    }

    async fn subscribe_cmd(&mut self, ws: &mut Socket, channel: &str) -> bool {
        let Some(chan) = self.channels.get(channel) else { return true };
        let mut cmd = json!({"type": "subscribe", "channel": channel});
        if let Some(epoch) = &chan.epoch {
            cmd["recover"] = json!({"epoch": epoch, "offset": chan.offset});
        }
        let id = self.next_id();
        cmd["id"] = json!(id);
        let deadline = Instant::now() + self.cfg.request_timeout;
        self.pending.insert(id, (Pending::Subscribe { channel: channel.to_owned() }, deadline));
        Self::send(ws, &cmd).await
    }

    /// Drops a channel's subscription on the server and makes it again with `recover`.
    async fn resync(&mut self, ws: &mut Socket, channel: &str) -> bool {
        let Some(chan) = self.channels.get_mut(channel) else { return true };
        if !chan.live {
            return true; // A subscribe is on its way already.
        }
        chan.live = false;
        self.resubscribe(ws, channel).await
    }

    async fn resubscribe(&mut self, ws: &mut Socket, channel: &str) -> bool {
        let id = self.next_id();
        self.pending.insert(id, (Pending::Ignore, Instant::now() + self.cfg.request_timeout));
        Self::send(ws, &json!({"type": "unsubscribe", "id": id, "channel": channel})).await
            && self.subscribe_cmd(ws, channel).await
    }

    /// Recovers the lagged channels whose application has read half of its buffer.
    async fn unlag(&mut self, ws: &mut Socket) -> bool {
        let ready: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.lagged && c.deliver.capacity() * 2 >= c.deliver.max_capacity())
            .map(|(name, _)| name.clone())
            .collect();
        for channel in ready {
            if let Some(chan) = self.channels.get_mut(&channel) {
                chan.lagged = false;
            }
            if !self.resubscribe(ws, &channel).await {
                return false;
            }
        }
        true
    }

    async fn session(&mut self, mut ws: Socket) -> End {
        // The first frame is `welcome`.
        let welcome = match tokio::time::timeout(self.cfg.request_timeout, ws.next()).await {
            Ok(Some(Ok(WsMessage::Text(t)))) => serde_json::from_str::<Value>(&t).unwrap_or(Value::Null),
            _ => return End { code: 1006, reason: "no welcome".into(), reconnect_after: None, closing: false },
        };
        if welcome["type"] != "welcome" {
            return End { code: 1006, reason: "no welcome".into(), reconnect_after: None, closing: false };
        }
        let heartbeat = Duration::from_millis(welcome["heartbeat_ms"].as_u64().unwrap_or(25_000));
        let silence_limit = heartbeat + (heartbeat / 2).max(Duration::from_secs(1));
        self.set_state(State::Connected);
        self.emit(Event::Connected { conn_id: welcome["conn_id"].as_str().unwrap_or("").to_owned() });
        let channels: Vec<String> = self.channels.keys().cloned().collect();
        for channel in channels {
            if !self.subscribe_cmd(&mut ws, &channel).await {
                return End { code: 1006, reason: "write failed".into(), reconnect_after: None, closing: false };
            }
        }
        while let Some((command, reply)) = self.outbox.pop_front() {
            if !self.request(&mut ws, command, reply, true).await {
                return End { code: 1006, reason: "write failed".into(), reconnect_after: None, closing: false };
            }
        }
        let mut reconnect_after = None;
        let silence = tokio::time::sleep(silence_limit);
        tokio::pin!(silence);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                frame = ws.next() => {
                    silence.as_mut().reset(tokio::time::Instant::now() + silence_limit);
                    match frame {
                        Some(Ok(WsMessage::Text(text))) => {
                            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                            if v["type"] == "disconnect" {
                                reconnect_after = v["reconnect_after_ms"].as_u64().map(Duration::from_millis);
                            }
                            if !self.on_frame(&mut ws, v).await {
                                return End { code: 1006, reason: "write failed".into(), reconnect_after, closing: false };
                            }
                        }
                        Some(Ok(WsMessage::Ping(_))) => {
                            // tungstenite queued the Pong; flushing sends it now.
                            let _ = ws.flush().await;
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                            return End { code, reason, reconnect_after, closing: false };
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return End { code: 1006, reason: e.to_string(), reconnect_after, closing: false },
                        None => return End { code: 1006, reason: "connection dropped".into(), reconnect_after, closing: false },
                    }
                }
                op = self.ops.recv() => {
                    let op = op.unwrap_or(Op::Close);
                    if let Op::Close = op {
                        self.closing = true;
                        let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
                        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
                        return End { code: 1000, reason: String::new(), reconnect_after: None, closing: true };
                    }
                    if !self.on_op(&mut ws, op).await {
                        return End { code: 1006, reason: "write failed".into(), reconnect_after, closing: false };
                    }
                }
                () = &mut silence => {
                    // Nothing, not even a Ping, within the heartbeat and a margin: the connection is dead.
                    return End { code: 1006, reason: "no frames within the heartbeat window".into(), reconnect_after, closing: false };
                }
                _ = tick.tick() => {
                    self.expire();
                    if !self.unlag(&mut ws).await {
                        return End { code: 1006, reason: "write failed".into(), reconnect_after, closing: false };
                    }
                }
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<u64> = self.pending.iter().filter(|(_, (_, d))| *d <= now).map(|(id, _)| *id).collect();
        for id in late {
            let Some((p, _)) = self.pending.remove(&id) else { continue };
            match p {
                Pending::Request { reply, .. } => drop(reply.send(Err(Error::Timeout))),
                Pending::Subscribe { channel } => {
                    if let Some(w) = self.channels.get_mut(&channel).and_then(|c| c.waiter.take()) {
                        let _ = w.send(Err(Error::Timeout));
                        self.channels.remove(&channel);
                    }
                }
                Pending::Ignore => {}
            }
        }
    }

    async fn on_op(&mut self, ws: &mut Socket, op: Op) -> bool {
        match op {
            Op::Subscribe { channel, deliver, reply } => {
                let known = self.channels.contains_key(&channel);
                self.add_channel(channel.clone(), deliver, reply);
                known || self.subscribe_cmd(ws, &channel).await
            }
            Op::Unsubscribe { channel } => {
                if self.channels.remove(&channel).is_none() {
                    return true;
                }
                let id = self.next_id();
                self.pending.insert(id, (Pending::Ignore, Instant::now() + self.cfg.request_timeout));
                Self::send(ws, &json!({"type": "unsubscribe", "id": id, "channel": channel})).await
            }
            Op::Request { command, reply, retry } => self.request(ws, command, reply, retry).await,
            Op::Resync { channel } => {
                if self.channels.get(&channel).is_some_and(|c| !c.live && c.waiter.is_none()) {
                    // Dropped by the server (a notice, a failed resubscribe): subscribe again.
                    return self.subscribe_cmd(ws, &channel).await;
                }
                self.resync(ws, &channel).await
            }
            Op::Close => true,
        }
    }

    /// Schedules a resubscribe after a small random delay, so a fleet does not come back in one instant.
    fn resync_later(&mut self, channel: &str, max: Duration) {
        let delay = Duration::from_secs_f64(self.rng.random_range(0.0..=max.as_secs_f64()));
        let ops = self.ops_tx.clone();
        let channel = channel.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = ops.send(Op::Resync { channel });
        });
    }

    async fn on_frame(&mut self, ws: &mut Socket, v: Value) -> bool {
        let kind = v["type"].as_str().unwrap_or("");
        if kind == "message" {
            return self.on_message(ws, &v).await;
        }
        if kind == "unsubscribed" && v.get("id").is_none_or(Value::is_null) {
            let channel = v["channel"].as_str().unwrap_or("").to_owned();
            if v["resubscribe"].as_bool() == Some(true) {
                if let Some(chan) = self.channels.get_mut(&channel) {
                    chan.live = false;
                }
                self.resync_later(&channel, Duration::from_millis(500));
            } else if self.channels.remove(&channel).is_some() {
                self.emit(Event::Error { message: format!("the server dropped the subscription to {channel}") });
            }
            return true;
        }
        let Some(id) = v["id"].as_u64() else { return true };
        let Some((pending, _)) = self.pending.remove(&id) else { return true };
        let error = (kind == "error").then(|| Error::Server {
            code: v["code"].as_str().unwrap_or("").to_owned(),
            message: v["message"].as_str().unwrap_or("").to_owned(),
        });
        match pending {
            Pending::Request { reply, .. } => drop(reply.send(error.map_or(Ok(v), Err))),
            Pending::Ignore => {}
            Pending::Subscribe { channel } => {
                let Some(chan) = self.channels.get_mut(&channel) else { return true };
                match error {
                    Some(e) => match chan.waiter.take() {
                        Some(w) => {
                            let _ = w.send(Err(e));
                            self.channels.remove(&channel);
                        }
                        None => {
                            // A resubscribe failed (the broker was unavailable, say): try again shortly.
                            self.emit(Event::Error { message: format!("resubscribing to {channel}: {e}") });
                            self.resync_later(&channel, Duration::from_secs(2));
                        }
                    },
                    None => {
                        let recovered = v["recovered"].as_bool();
                        chan.live = true;
                        if recovered != Some(true) {
                            chan.offset = v["offset"].as_u64().unwrap_or(0);
                        }
                        chan.epoch = v["epoch"].as_str().map(str::to_owned);
                        if let Some(w) = chan.waiter.take() {
                            let _ = w.send(Ok(()));
                        }
                        self.emit(Event::Subscribed { channel, recovered });
                    }
                }
            }
        }
        true
    }

    async fn on_message(&mut self, ws: &mut Socket, v: &Value) -> bool {
        let Some(msg) = message(v) else { return true };
        let Some(chan) = self.channels.get_mut(&msg.channel) else { return true };
        if !chan.live {
            return true; // A recovery will replay it.
        }
        if msg.offset <= chan.offset {
            return true; // A duplicate.
        }
        if msg.offset > chan.offset + 1 {
            // Missed messages: recover from the last one delivered.
            let channel = msg.channel.clone();
            return self.resync(ws, &channel).await;
        }
        let offset = msg.offset;
        let channel = msg.channel.clone();
        match chan.deliver.try_send(msg) {
            Ok(()) => chan.offset = offset,
            Err(mpsc::error::TrySendError::Full(_)) => {
                chan.live = false;
                chan.lagged = true;
                self.emit(Event::Lagged { channel });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The application dropped the subscription.
                self.channels.remove(&channel);
                let id = self.next_id();
                self.pending.insert(id, (Pending::Ignore, Instant::now() + self.cfg.request_timeout));
                return Self::send(ws, &json!({"type": "unsubscribe", "id": id, "channel": channel})).await;
            }
        }
        true
    }
}
