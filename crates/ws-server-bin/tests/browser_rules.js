// The browser client's rules against a scripted server: `tests/browser.rs` evaluates this in the demo page, with
// `WebSocket` replaced by a fake whose frames the script writes, and asserts on what it returns.
(async () => {
  const { Client } = await import("/ws-hub.js");
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const until = async (test, ms = 3000) => {
    const deadline = performance.now() + ms;
    while (!test()) {
      if (performance.now() > deadline) throw new Error("timed out waiting for " + test);
      await sleep(5);
    }
  };

  /** A WebSocket whose server side is this script. */
  class FakeSocket {
    static all = [];
    constructor(url, protocol) {
      Object.assign(this, { url, protocol, sent: [], closedWith: undefined, readyState: 0 });
      FakeSocket.all.push(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close(code) {
      this.closedWith = code ?? null;
      this.readyState = 3;
    }
    // The server's side.
    welcome(connId, heartbeatMs = 30000) {
      this.readyState = 1;
      this.onopen?.({});
      this.frame({ type: "welcome", conn_id: connId, user_id: null, heartbeat_ms: heartbeatMs, version: 1 });
    }
    frame(v) {
      this.onmessage?.({ data: JSON.stringify(v) });
    }
    end(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    last() {
      return this.sent.at(-1);
    }
  }
  window.WebSocket = FakeSocket;
  const record = (client) => {
    const events = [];
    for (const e of ["state", "connected", "disconnected", "reconnecting", "subscribed", "error", "closed"]) {
      client.on(e, (d) => events.push({ e, ...d }));
    }
    return events;
  };
  const out = {};

  // Connect, subscribe, duplicates, a skip, a notice, requests, a drain hint, recovery on the next connection.
  let tokens = 0;
  const c = new Client("/ws", {
    token: "unused",
    getToken: async () => "tok " + ++tokens,
    backoff: { initialMs: 50, maxMs: 100 },
    requestTimeoutMs: 300,
  });
  const events = record(c);
  c.connect();
  await until(() => FakeSocket.all.length === 1);
  const s1 = FakeSocket.all[0];
  out.first = { url: s1.url, protocol: s1.protocol };
  s1.welcome("c1");
  const got = [];
  const sub = c.subscribe("news", (m) => got.push(m.offset));
  const subscribe = s1.last();
  out.subscribe = subscribe;
  s1.frame({ type: "subscribed", id: subscribe.id, channel: "news", epoch: "e1", offset: 0 });
  out.ready = await sub.ready;
  for (const offset of [1, 1, 2]) s1.frame({ type: "message", channel: "news", offset, data: offset });
  const sentBeforeSkip = s1.sent.length;
  s1.frame({ type: "message", channel: "news", offset: 4, data: 4 }); // 3 is missing
  out.afterSkip = s1.sent.slice(sentBeforeSkip).map(({ id, ...rest }) => rest);
  s1.frame({ type: "message", channel: "news", offset: 3, data: 3 }); // the old subscription's: ignored
  s1.frame({ type: "subscribed", id: s1.last().id, channel: "news",
    epoch: "e1", offset: 4, recovered: true, missed: 2 });
  for (const offset of [3, 4]) s1.frame({ type: "message", channel: "news", offset, data: offset });
  out.gotBeforeNotice = [...got];

  const sentBeforeNotice = s1.sent.length;
  const noticeAt = performance.now();
  s1.frame({ type: "unsubscribed", channel: "news", reason: "insufficient_state", resubscribe: true });
  s1.frame({ type: "message", channel: "news", offset: 5, data: 5 }); // not live: the recovery replays it
  await until(() => s1.sent.length > sentBeforeNotice);
  out.notice = {
    ms: performance.now() - noticeAt,
    command: s1.sent.slice(sentBeforeNotice).map(({ id, ...rest }) => rest),
  };
  s1.frame({ type: "subscribed", id: s1.last().id, channel: "news",
    epoch: "e1", offset: 5, recovered: true, missed: 1 });
  s1.frame({ type: "message", channel: "news", offset: 5, data: 5 });

  const refused = c.publish("news", { x: 1 }, { idempotencyKey: "k1" });
  out.publish = s1.last();
  s1.frame({ type: "error", id: out.publish.id, code: "forbidden", message: "publishing is off" });
  out.publishError = await refused.then(
    () => "published",
    (e) => ({ name: e.name, code: e.code, message: e.message }),
  );
  const accepted = c.publish("news", 5);
  s1.frame({ type: "published", id: s1.last().id, channel: "news", offset: 9 });
  out.published = await accepted;
  out.timeout = await c.presence("news").then(
    () => "answered",
    (e) => e.code,
  );

  s1.frame({ type: "disconnect", code: 1001, reason: "server shutting down", reconnect_after_ms: 400 });
  s1.end(1001, "server shutting down");
  out.disconnected = events.find((e) => e.e === "disconnected");
  out.hinted = events.find((e) => e.e === "reconnecting");
  await until(() => FakeSocket.all.length === 2);
  const s2 = FakeSocket.all[1];
  out.second = { url: s2.url };
  s2.welcome("c2");
  out.resubscribe = s2.sent.map(({ id, ...rest }) => rest);
  s2.frame({ type: "subscribed", id: s2.last().id, channel: "news",
    epoch: "e2", offset: 10, recovered: false, missed: 0 });
  s2.frame({ type: "message", channel: "news", offset: 11, data: 11 });
  out.got = got;
  out.subscribed = events.filter((e) => e.e === "subscribed").map((e) => e.recovered);

  // Terminal close codes stop the client; the others reconnect.
  out.terminal = {};
  for (const code of [1000, 1002, 1007, 1009, 4004, 1001, 1011, 4000, 4001]) {
    const n = FakeSocket.all.length;
    const client = new Client("/ws", { backoff: { initialMs: 10, maxMs: 10 } });
    client.connect();
    await until(() => FakeSocket.all.length === n + 1);
    FakeSocket.all[n].welcome("t" + code);
    FakeSocket.all[n].end(code, "bye");
    await sleep(100);
    out.terminal[code] = { state: client.state, sockets: FakeSocket.all.length - n };
    client.close();
  }

  // Full jitter under a growing, capped ceiling, then giving up.
  const b = new Client("/ws", { backoff: { initialMs: 40, multiplier: 2, maxMs: 100, maxAttempts: 4 } });
  const backoffEvents = record(b);
  b.connect();
  for (let i = 0; i < 5; i++) {
    await until(() => FakeSocket.all.at(-1).readyState === 0 && FakeSocket.all.at(-1).onclose);
    FakeSocket.all.at(-1).end(1006); // Never opened.
    await until(() => b.state === "closed" || b.state === "connecting");
    if (b.state === "closed") break;
  }
  out.backoff = {
    delays: backoffEvents.filter((e) => e.e === "reconnecting").map((e) => [e.attempt, e.delayMs]),
    closed: backoffEvents.find((e) => e.e === "closed"),
  };

  // close(): 1000, no reconnect, subscriptions end, requests fail as closed.
  const sockets = FakeSocket.all.length;
  c.close();
  out.close = {
    code: s2.closedWith,
    state: c.state,
    ready: await c.subscribe("later").ready.then(
      () => "subscribed",
      (e) => e.code,
    ),
    publish: await c.publish("news", 1).then(
      () => "published",
      (e) => e.code,
    ),
  };
  await sleep(200);
  out.close.sockets = FakeSocket.all.length - sockets;
  return out;
})()
