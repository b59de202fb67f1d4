// Bun (uWebSockets inside) as an outside reference for `cargo xtask bench --peer bun`: the reference server's
// routes (`/echo`, and on `/ws` a welcome, prefix-matched subscribe/publish/echo), with uWebSockets' own
// pub/sub doing the fan-out. Run: bun bun-server.js --port 8080 [--heartbeat-ms 25000]
const arg = (name, fallback) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const port = arg("--port", 8080);
const heartbeatMs = arg("--heartbeat-ms", 25000);
let next = 1;

function channelOf(text) {
  const at = text.indexOf('"channel":"');
  if (at < 0) return null;
  const end = text.indexOf('"', at + 11);
  return end < 0 ? null : text.slice(at + 11, end);
}

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if (path === "/healthz") return new Response("ok");
    if ((path === "/ws" || path === "/echo") && server.upgrade(req, { data: { path } })) return;
    return new Response("not found", { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    sendPings: heartbeatMs > 0,
    idleTimeout: Math.max(8, Math.ceil((heartbeatMs * 2) / 1000)),
    open(ws) {
      if (ws.data.path !== "/ws") return;
      const id = (next++).toString(16).padStart(16, "0");
      ws.send(`{"type":"welcome","conn_id":"${id}","user_id":null,"heartbeat_ms":${heartbeatMs},"version":1}`);
    },
    message(ws, message) {
      if (ws.data.path === "/echo") {
        ws.send(message);
        return;
      }
      const text = typeof message === "string" ? message : message.toString();
      if (text.startsWith('{"type":"publish"')) {
        const channel = channelOf(text);
        if (channel) server.publish(channel, text);
      } else if (text.startsWith('{"type":"subscribe"')) {
        const channel = channelOf(text);
        if (channel) {
          ws.subscribe(channel);
          ws.send(`{"type":"subscribed","channel":"${channel}","epoch":"bun","offset":0}`);
        }
      } else if (text.startsWith('{"type":"echo"')) {
        ws.send(text);
      }
    },
  },
});
console.error(`bun peer listening on ${server.hostname}:${server.port}`);
