/**
 * ws-hub.js: the browser client for ws-hub, as a dependency-free ES module (no build step).
 *
 *     import { Client } from "/ws-hub.js";
 *     const hub = new Client("/ws", { token: "secret" });
 *     hub.on("subscribed", ({ channel, recovered }) => console.log(channel, recovered));
 *     hub.connect();
 *     const news = hub.subscribe("news", (m) => console.log(m.offset, m.data));
 *     await news.ready;
 *     const offset = await hub.publish("news", { text: "hello" });
 *
 * It follows the wire contract (PROTOCOL.md) the way the Rust `ws-client` does:
 *
 * - State (`client.state`): "disconnected" → "connecting" → "connected" → (connection lost) "disconnected"
 *   → "connecting" … until `close()` or a terminal close makes it "closed".
 * - Reconnect: exponential backoff with full jitter (default 1 s, ×2, capped at 30 s, unlimited attempts),
 *   reset after a connection that stayed up `stableAfterMs` (5 s). A `disconnect` frame's
 *   `reconnect_after_ms` is a floor, plus a random extra. Close codes 1000, 1002, 1007, 1009 and 4004 are
 *   terminal. A browser cannot see an HTTP 401 (the handshake just fails), so a refused token is retried
 *   with backoff like any failed connect; `getToken` is asked before every connect.
 * - Liveness: browsers hide WebSocket Pings, so when nothing has arrived for half the `heartbeat_ms` of
 *   `welcome` the client sends a `ping` command; when nothing has arrived for `heartbeat_ms` plus
 *   max(`heartbeat_ms` / 2, 1 s) (and that ping had as long to be answered) the connection is dropped and
 *   made again.
 * - Recovery: each channel's epoch and last delivered offset are remembered; after a reconnect every
 *   channel is subscribed again with `recover`; duplicates are dropped by offset; an offset skip means
 *   missed messages and the channel is subscribed again with `recover`; an `unsubscribed` notice with
 *   `resubscribe: true` is obeyed after a random 0–500 ms; the `subscribed` event reports `recovered`
 *   honestly (`false`: messages may be missing, reload your state; `null`: nothing to recover).
 * - Requests carry an `id` and a timeout; errors reject with a {@link HubError} whose `code` is the
 *   server's error code, or one of the client's own: "not_connected", "closed", "request_timeout".
 *   Requests while not connected reject at once with "not_connected".
 *
 * @module ws-hub
 */

/** The subprotocol the server selects. */
export const SUBPROTOCOL = "wshub.v1";

/** Close codes after which the client stops: the server said stop, or this client is broken. */
const TERMINAL = new Set([1000, 1002, 1007, 1009, 4004]);

/** How long the random delay before obeying an `unsubscribed` notice may be. */
const NOTICE_JITTER_MS = 500;

/** How long the random delay before retrying a failed resubscribe may be. */
const RETRY_JITTER_MS = 2000;

/** A failed request: `code` is the server's error code or one of the client's own. */
export class HubError extends Error {
  /**
   * @param {string} code e.g. "forbidden", "unavailable", "not_connected", "closed", "request_timeout"
   * @param {string} [message]
   */
  constructor(code, message) {
    super(message ? `${code}: ${message}` : code);
    this.name = "HubError";
    /** @type {string} */
    this.code = code;
  }
}

/**
 * @typedef {object} Message
 * @property {string} channel
 * @property {number} offset its offset in the channel, from 1
 * @property {*} data
 * @property {string|null} event the application event name, if any
 */

/** One `subscribe()` call's hold on a channel; the channel stays subscribed across reconnects. */
export class Subscription {
  /** @param {Client} client @param {string} channel @param {(m: Message) => void} [onMessage] */
  constructor(client, channel, onMessage) {
    this.channel = channel;
    this._client = client;
    this._onMessage = onMessage;
    this._settled = false;
    /**
     * Settles at the channel's first `subscribed` reply: resolves with `{channel, recovered, epoch, offset}`,
     * or rejects with a {@link HubError} (e.g. "forbidden").
     * @type {Promise<{channel: string, recovered: boolean|null, epoch: string|null, offset: number}>}
     */
    this.ready = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.ready.catch(() => {}); // Not an unhandled rejection when nobody awaits it.
  }

  /** Stops delivering to this subscription; the channel is unsubscribed once nobody holds it. */
  unsubscribe() {
    this._client._drop(this);
  }

  _settle(error, value) {
    if (this._settled) return;
    this._settled = true;
    if (error) this._reject(error);
    else this._resolve(value);
  }
}

/** A reconnecting client of one ws-hub server (or cluster). */
export class Client {
  /**
   * @param {string} [url] the hub's WebSocket URL; relative URLs ("/ws") and http(s) URLs are resolved
   *   against the page. Default "/ws".
   * @param {object} [options]
   * @param {string} [options.token] sent as `?token=` (browsers cannot set an Authorization header)
   * @param {() => (string|null|Promise<string|null>)} [options.getToken] asked before every connect; wins over `token`
   * @param {{initialMs?: number, multiplier?: number, maxMs?: number, maxAttempts?: number}} [options.backoff]
   *   default 1000 ms, ×2, 30000 ms, unlimited attempts
   * @param {number} [options.requestTimeoutMs] how long a request (and a connect) waits for its reply; default 10000
   * @param {number} [options.stableAfterMs] how long a connection must stay up for the backoff to start over;
   *   default 5000
   */
  constructor(url = "/ws", options = {}) {
    this._url = resolveUrl(url);
    this._token = options.token ?? null;
    this._getToken = options.getToken ?? null;
    const b = options.backoff ?? {};
    this._backoff = {
      initialMs: b.initialMs ?? 1000,
      multiplier: Math.max(b.multiplier ?? 2, 1),
      maxMs: b.maxMs ?? 30000,
      maxAttempts: b.maxAttempts ?? Infinity,
    };
    this._requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    this._stableAfterMs = options.stableAfterMs ?? 5000;
    this._state = "disconnected";
    this._listeners = new Map();
    /**
     * Per channel: the epoch and last delivered offset, whether it is subscribed on this connection (`live`), a
     * subscribe on its way (`inflight`), ever subscribed (`established`), and the subscriptions holding it.
     * @type {Map<string, {epoch: string|null, offset: number, live: boolean, inflight: boolean,
     *   established: boolean, subs: Set<Subscription>}>}
     */
    this._channels = new Map();
    this._pending = new Map();
    this._nextId = 0;
    this._running = false;
    this._run = 0; // Bumped by connect() and close(): callbacks of an older run do nothing.
    this._session = 0; // Bumped per connection: timers of an older connection do nothing.
    this._ws = null;
    this._welcomed = false;
    this._attempt = 0;
    this._retryTimer = null;
    this._tick = null;
    this._hint = null;
  }

  /** @returns {"disconnected"|"connecting"|"connected"|"closed"} the state now */
  get state() {
    return this._state;
  }

  /**
   * Listens to an event; returns a function that stops listening. Events and their detail:
   * `state` {state}, `connected` {connId, userId}, `disconnected` {code, reason, reconnectAfterMs},
   * `reconnecting` {attempt, delayMs}, `subscribed` {channel, recovered}, `error` {message}, `closed` {reason}.
   * @param {string} event @param {(detail: object) => void} fn
   */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  /** Stops listening. @param {string} event @param {Function} fn */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  /** Starts connecting (and keeps reconnecting); after `close()` it starts over. @returns {this} */
  connect() {
    if (this._running) return this;
    this._running = true;
    this._run++;
    this._attempt = 0;
    this._open();
    return this;
  }

  /** Closes the connection with 1000 and stops reconnecting; subscriptions end. */
  close() {
    if (!this._running) return;
    this._running = false;
    this._run++;
    clearTimeout(this._retryTimer);
    if (this._ws) {
      const ws = this._detach();
      try {
        ws.close(1000);
      } catch (_) {
        // Already closing.
      }
    }
    this._finish("closed by the application");
  }

  /**
   * Subscribes to a channel, now or at the next connection; the subscription lives across reconnects until
   * `unsubscribe()`. `onMessage` gets each message once, in offset order.
   * @param {string} channel @param {(m: Message) => void} [onMessage] @returns {Subscription}
   */
  subscribe(channel, onMessage) {
    if (typeof channel !== "string" || channel === "") throw new TypeError("channel must be a non-empty string");
    const sub = new Subscription(this, channel, onMessage);
    if (this._state === "closed") {
      sub._settle(new HubError("closed", "the client is closed"));
      return sub;
    }
    let chan = this._channels.get(channel);
    if (!chan) {
      chan = { epoch: null, offset: 0, live: false, inflight: false, established: false, subs: new Set() };
      this._channels.set(channel, chan);
      chan.subs.add(sub);
      if (this._state === "connected") this._subscribeCmd(channel);
    } else {
      chan.subs.add(sub);
      if (chan.live) sub._settle(null, { channel, recovered: null, epoch: chan.epoch, offset: chan.offset });
    }
    return sub;
  }

  /**
   * Publishes `data` (any JSON) and resolves with its offset. With an `idempotencyKey`, a repeat within the
   * server's window publishes nothing and answers the first offset, so a publish whose outcome is unknown
   * ("not_connected" after sending, "request_timeout", "timeout") can be retried safely.
   * @param {string} channel @param {*} data @param {{idempotencyKey?: string}} [options] @returns {Promise<number>}
   */
  async publish(channel, data, { idempotencyKey } = {}) {
    const command = { type: "publish", channel, data };
    if (idempotencyKey != null) command.idempotency_key = idempotencyKey;
    const reply = await this.request(command);
    return reply.offset;
  }

  /**
   * Who is subscribed to a channel.
   * @param {string} channel @returns {Promise<{connId: string, userId: string|null}[]>}
   */
  async presence(channel) {
    const reply = await this.request({ type: "presence", channel });
    return (reply.clients ?? []).map((c) => ({ connId: c.conn_id, userId: c.user_id ?? null }));
  }

  /**
   * A channel's kept messages.
   * @param {string} channel @param {{limit?: number, since?: {epoch: string, offset: number}}} [options]
   * @returns {Promise<{epoch: string, offset: number, messages: Message[]}>}
   */
  async history(channel, { limit, since } = {}) {
    const command = { type: "history", channel };
    if (limit != null) command.limit = limit;
    if (since != null) command.since = since;
    const reply = await this.request(command);
    return { epoch: reply.epoch, offset: reply.offset, messages: (reply.messages ?? []).map(toMessage) };
  }

  /**
   * Sends a command (an object with `type`; the client adds `id`) and resolves with the reply.
   * @param {object} command @returns {Promise<object>}
   */
  request(command) {
    if (this._state !== "connected") {
      const error =
        this._state === "closed"
          ? new HubError("closed", "the client is closed")
          : new HubError("not_connected", `cannot ${command.type} while ${this._state}; wait for "connected"`);
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      const id = ++this._nextId;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new HubError("request_timeout", `no reply to ${command.type} within ${this._requestTimeoutMs} ms`));
      }, this._requestTimeoutMs);
      this._pending.set(id, { kind: "request", resolve, reject, timer });
      this._send({ ...command, id });
    });
  }

  // ---- connection lifecycle ----

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit("state", { state });
  }

  _emit(event, detail) {
    for (const fn of [...(this._listeners.get(event) ?? [])]) {
      try {
        fn(detail);
      } catch (e) {
        console.error(`ws-hub: a "${event}" listener threw`, e);
      }
    }
  }

  async _open() {
    const run = this._run;
    this._setState("connecting");
    let token = this._token;
    if (this._getToken) {
      try {
        token = await this._getToken();
      } catch (e) {
        this._emit("error", { message: `getToken failed: ${e?.message ?? e}` });
      }
      if (run !== this._run) return; // Closed (or restarted) meanwhile.
    }
    let ws;
    try {
      ws = new WebSocket(withToken(this._url, token), SUBPROTOCOL);
    } catch (e) {
      this._emit("error", { message: `connect failed: ${e?.message ?? e}` });
      this._retry(null);
      return;
    }
    const session = ++this._session;
    this._ws = ws;
    this._welcomed = false;
    this._hint = null;
    // The connect and the `welcome` get one request timeout.
    const welcomeTimer = setTimeout(() => this._lose(session, 1006, "no welcome in time"), this._requestTimeoutMs);
    ws.onmessage = (e) => {
      let frame = null;
      try {
        frame = JSON.parse(e.data);
      } catch (_) {
        // Not JSON: ignored.
      }
      if (!this._welcomed) {
        clearTimeout(welcomeTimer);
        if (frame?.type !== "welcome") return this._lose(session, 1006, "no welcome");
        return this._welcome(frame);
      }
      this._heard();
      if (frame && typeof frame === "object") this._onFrame(frame);
    };
    ws.onclose = (e) => {
      clearTimeout(welcomeTimer);
      this._ended(e.code, e.reason);
    };
    ws.onerror = () => {}; // `close` follows.
  }

  _welcome(frame) {
    const session = this._session;
    const heartbeat = frame.heartbeat_ms > 0 ? frame.heartbeat_ms : 25000;
    const margin = Math.max(heartbeat / 2, 1000);
    this._welcomed = true;
    this._connectedAt = Date.now();
    this._heard();
    this._tick = setInterval(() => {
      const now = Date.now();
      const idle = now - this._lastHeard;
      if (idle >= heartbeat / 2 && !this._pingAt) {
        this._pingAt = now;
        this._send({ type: "ping", id: ++this._nextId });
      } else if (idle > heartbeat + margin && this._pingAt && now - this._pingAt >= margin) {
        // Nothing, not even the answer to a ping, within the heartbeat and a margin: the connection is dead.
        this._lose(session, 1006, "no frames within the heartbeat window");
      }
    }, Math.min(1000, Math.max(100, heartbeat / 4)));
    this._setState("connected");
    this._emit("connected", { connId: frame.conn_id, userId: frame.user_id ?? null });
    for (const channel of this._channels.keys()) this._subscribeCmd(channel);
  }

  _heard() {
    this._lastHeard = Date.now();
    this._pingAt = 0;
  }

  /** Forgets the socket (its handlers too) and the connection's timers; returns the socket. */
  _detach() {
    const ws = this._ws;
    ws.onmessage = ws.onclose = ws.onerror = null;
    this._ws = null;
    clearInterval(this._tick);
    this._tick = null;
    return ws;
  }

  /** Gives up on connection `session` without waiting for a closing handshake. */
  _lose(session, code, reason) {
    if (session !== this._session || !this._ws) return;
    const ws = this._detach();
    try {
      ws.close();
    } catch (_) {
      // Already closing.
    }
    this._after(code, reason);
  }

  _ended(code, reason) {
    if (!this._ws) return;
    this._detach();
    this._after(code, reason);
  }

  /** The connection is gone: report it, then stop or schedule the next attempt. */
  _after(code, reason) {
    const welcomed = this._welcomed;
    this._welcomed = false;
    this._lost();
    if (!this._running) return;
    if (!welcomed) {
      this._emit("error", { message: `connect failed (close ${code}${reason ? " " + reason : ""})` });
      return this._retry(null);
    }
    this._emit("disconnected", { code, reason, reconnectAfterMs: this._hint });
    if (TERMINAL.has(code)) {
      this._running = false;
      return this._finish(`closed by the server with ${code} ${reason}`.trim());
    }
    if (Date.now() - this._connectedAt >= this._stableAfterMs) this._attempt = 0;
    this._retry(this._hint);
  }

  _retry(floorMs) {
    if (this._attempt >= this._backoff.maxAttempts) {
      this._running = false;
      return this._finish("gave up reconnecting");
    }
    const { initialMs, multiplier, maxMs } = this._backoff;
    let delay = Math.random() * Math.min(maxMs, initialMs * multiplier ** this._attempt);
    if (floorMs != null) {
      // The server's hint is a floor; the random extra keeps a drained fleet from coming back at once.
      delay = Math.max(delay, floorMs + Math.random() * Math.max(floorMs / 2, 250));
    }
    delay = Math.round(delay);
    this._attempt++;
    this._setState("disconnected");
    this._emit("reconnecting", { attempt: this._attempt, delayMs: delay });
    const run = this._run;
    this._retryTimer = setTimeout(() => run === this._run && this._open(), delay);
  }

  /** Outstanding requests fail; every channel needs a new `subscribed`. */
  _lost() {
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      if (p.kind === "request") p.reject(new HubError("not_connected", "the connection dropped before the reply"));
    }
    this._pending.clear();
    for (const chan of this._channels.values()) {
      chan.live = false;
      chan.inflight = false;
    }
  }

  _finish(reason) {
    this._lost();
    for (const chan of this._channels.values()) {
      for (const sub of chan.subs) sub._settle(new HubError("closed", "the client is closed"));
    }
    this._channels.clear();
    this._setState("closed");
    this._emit("closed", { reason });
  }

  _send(frame) {
    try {
      this._ws?.send(JSON.stringify(frame));
    } catch (e) {
      this._emit("error", { message: `send failed: ${e?.message ?? e}` });
    }
  }

  // ---- channels ----

  _subscribeCmd(channel) {
    const chan = this._channels.get(channel);
    if (!chan) return;
    const id = ++this._nextId;
    const cmd = { type: "subscribe", id, channel };
    if (chan.epoch != null) cmd.recover = { epoch: chan.epoch, offset: chan.offset };
    const timer = setTimeout(() => {
      this._pending.delete(id);
      const error = new HubError("request_timeout", `no reply to subscribe within ${this._requestTimeoutMs} ms`);
      this._onSubscribed(channel, null, error);
    }, this._requestTimeoutMs);
    this._pending.set(id, { kind: "subscribe", channel, timer });
    chan.inflight = true;
    this._send(cmd);
  }

  /** Drops the server's subscription to `channel` and makes it again with `recover`. */
  _resync(channel) {
    const chan = this._channels.get(channel);
    if (!chan || !chan.live) return; // A subscribe is on its way already.
    chan.live = false;
    this._send({ type: "unsubscribe", id: ++this._nextId, channel });
    this._subscribeCmd(channel);
  }

  /** Subscribes `channel` again after a random delay up to `maxMs`, so a fleet does not come back at once. */
  _resyncLater(channel, maxMs) {
    const session = this._session;
    setTimeout(() => {
      const chan = this._channels.get(channel);
      if (session !== this._session || this._state !== "connected" || !chan) return; // A reconnect resubscribes.
      if (chan.live) this._resync(channel);
      else if (!chan.inflight) this._subscribeCmd(channel);
    }, Math.random() * maxMs);
  }

  _onSubscribed(channel, frame, error) {
    const chan = this._channels.get(channel);
    if (!chan) return;
    chan.inflight = false;
    if (error) {
      if (!chan.established) {
        // The first subscribe was refused: the subscription ends.
        for (const sub of chan.subs) sub._settle(error);
        this._channels.delete(channel);
      } else {
        // A resubscribe failed (the broker was unavailable, say): try again shortly.
        this._emit("error", { message: `resubscribing to ${channel}: ${error.message}`, channel, code: error.code });
        this._resyncLater(channel, RETRY_JITTER_MS);
      }
      return;
    }
    const recovered = typeof frame.recovered === "boolean" ? frame.recovered : null;
    chan.live = true;
    chan.established = true;
    if (recovered !== true) chan.offset = Number(frame.offset) || 0;
    chan.epoch = frame.epoch ?? null;
    for (const sub of chan.subs) sub._settle(null, { channel, recovered, epoch: chan.epoch, offset: chan.offset });
    this._emit("subscribed", { channel, recovered });
  }

  _drop(sub) {
    const chan = this._channels.get(sub.channel);
    if (!chan || !chan.subs.delete(sub)) return;
    sub._settle(new HubError("unsubscribed", "unsubscribed before the server answered"));
    if (chan.subs.size > 0) return;
    this._channels.delete(sub.channel);
    if (this._state === "connected") this._send({ type: "unsubscribe", id: ++this._nextId, channel: sub.channel });
  }

  // ---- frames ----

  _onFrame(frame) {
    switch (frame.type) {
      case "message":
        return this._onMessage(frame);
      case "disconnect":
        this._hint = typeof frame.reconnect_after_ms === "number" ? frame.reconnect_after_ms : null;
        return;
      case "unsubscribed":
        if (frame.id == null) return this._onNotice(frame);
        break;
    }
    const pending = frame.id == null ? undefined : this._pending.get(frame.id);
    if (!pending) return; // Not ours, or answered already (a ping, an unsubscribe).
    this._pending.delete(frame.id);
    clearTimeout(pending.timer);
    const error = frame.type === "error" ? new HubError(frame.code, frame.message) : null;
    if (pending.kind === "subscribe") return this._onSubscribed(pending.channel, frame, error);
    if (error) pending.reject(error);
    else pending.resolve(frame);
  }

  _onNotice(frame) {
    const chan = this._channels.get(frame.channel);
    if (!chan) return;
    if (frame.resubscribe === true) {
      chan.live = false;
      return this._resyncLater(frame.channel, NOTICE_JITTER_MS);
    }
    this._channels.delete(frame.channel);
    const error = new HubError(frame.reason ?? "unsubscribed", "the server dropped the subscription");
    for (const sub of chan.subs) sub._settle(error);
    this._emit("error", {
      message: `the server dropped the subscription to ${frame.channel} (${frame.reason})`,
      channel: frame.channel,
      code: frame.reason,
    });
  }

  _onMessage(frame) {
    const chan = this._channels.get(frame.channel);
    if (!chan || !chan.live) return; // Not subscribed, or a recovery will replay it.
    const offset = frame.offset;
    if (!Number.isInteger(offset) || offset <= chan.offset) return; // A duplicate.
    if (offset > chan.offset + 1) return this._resync(frame.channel); // Missed messages: recover them.
    chan.offset = offset;
    const message = toMessage(frame);
    for (const sub of [...chan.subs]) {
      try {
        sub._onMessage?.(message);
      } catch (e) {
        console.error(`ws-hub: the handler of ${frame.channel} threw`, e);
      }
    }
  }
}

/** A `message` frame (or a history entry) as a {@link Message}. */
function toMessage(frame) {
  return { channel: frame.channel, offset: frame.offset, data: frame.data, event: frame.event ?? null };
}

/** `url` with `?token=` (percent-encoded: the server does not read `+` as a space). */
function withToken(url, token) {
  const u = new URL(url);
  if (u.searchParams.has("token")) u.searchParams.delete("token");
  const bare = u.toString();
  return token ? `${bare}${u.search ? "&" : "?"}token=${encodeURIComponent(token)}` : bare;
}

/** Resolves `url` against the page, maps http(s) to ws(s) and drops any fragment. */
function resolveUrl(url) {
  const base = typeof location === "undefined" ? undefined : location.href;
  const resolved = new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  if (resolved.protocol === "https:") resolved.protocol = "wss:";
  resolved.hash = "";
  return resolved.toString();
}
