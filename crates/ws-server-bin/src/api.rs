//! The HTTP API for backends (PROTOCOL.md, "Server HTTP API"): publish, broadcast, channels, presence, history, disconnect, stats;
//! and process streaming (`process.rs`).

mod process;

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use ws_core::{BrokerError, ConnId, Done, Hub};
use ws_protocol::{close, ChannelName, Json, Publication};

/// The most messages one history request returns when it gives no `limit`.
const DEFAULT_HISTORY_LIMIT: usize = 100;

/// An API response: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Bytes,
}

impl ApiResponse {
    fn ok(body: &impl Serialize) -> Self {
        let body = serde_json::to_vec(body).map(Bytes::from).unwrap_or_else(|_| Bytes::from_static(b"{}"));
        Self { status: StatusCode::OK, body }
    }

    /// An error response `{"error": code, "message": text}`.
    #[must_use]
    pub fn error(status: StatusCode, code: &str, message: &str) -> Self {
        let body = serde_json::json!({ "error": code, "message": message });
        Self { status, body: Bytes::from(body.to_string()) }
    }

    fn bad_request(message: &str) -> Self {
        Self::error(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

/// The API: the hub and the accepted keys.
#[derive(Debug, Clone)]
pub struct Api {
    hub: Hub,
    keys: Vec<String>,
    max_body_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    channel: String,
    data: Json,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastBody {
    channels: Vec<String>,
    data: Json,
    #[serde(default)]
    event: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    conn_id: Option<String>,
}

#[derive(Serialize)]
struct ChannelEntry {
    channel: String,
    subscribers: usize,
}

#[derive(Serialize)]
struct HistoryBody {
    epoch: String,
    offset: u64,
    messages: Vec<MessageBody>,
}

#[derive(Serialize)]
struct MessageBody {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: String,
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<String>,
    data: Json,
}

impl From<Publication> for MessageBody {
    fn from(p: Publication) -> Self {
        Self { kind: "message", channel: p.channel.to_string(), offset: p.offset, event: p.event, data: p.data }
    }
}

impl Api {
    /// An API over `hub` accepting `keys`, with bodies up to `max_body_bytes`.
    #[must_use]
    pub fn new(hub: Hub, keys: Vec<String>, max_body_bytes: usize) -> Self {
        Self { hub, keys, max_body_bytes }
    }

    /// The largest body this API reads; the caller stops reading past it and answers [`Api::too_large`].
    #[must_use]
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The 413 response.
    #[must_use]
    pub fn too_large(&self) -> ApiResponse {
        ApiResponse::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("request body is over {} bytes", self.max_body_bytes),
        )
    }

    /// A short label for the endpoint `path` names, for metrics (`publish`, `history`, ...; `unknown`).
    #[must_use]
    pub fn endpoint(path: &str) -> &'static str {
        let rest = path.strip_prefix("/api/").unwrap_or("");
        match rest.split('/').next().unwrap_or("") {
            "publish" => "publish",
            "broadcast" => "broadcast",
            "channels" => "channels",
            "presence" => "presence",
            "history" => "history",
            "disconnect" => "disconnect",
            "stats" => "stats",
            "process" => "process",
            _ => "unknown",
        }
    }

    /// Whether the `Authorization: apikey <key>` header holds an accepted key; checked before a body is read.
    #[must_use]
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, key)) = value.split_once(' ') else { return false };
        scheme.eq_ignore_ascii_case("apikey")
            && self.keys.iter().any(|k| constant_time_eq(k.as_bytes(), key.trim().as_bytes()))
    }

    /// Handles one API request whose body has been read (at most [`Api::max_body_bytes`]). In a cluster,
    /// publish, broadcast, presence and history wait for the broker: 503 `unavailable` when it cannot be
    /// reached (nothing was done), 504 `timeout` when it did not answer in time (a publication may have been
    /// made).
    pub async fn handle(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ApiResponse {
        if !self.authorized(headers) {
            return ApiResponse::error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send `Authorization: apikey <key>` with a configured key",
            );
        }
        let rest = path.strip_prefix("/api/").unwrap_or("");
        let (head, tail) = rest.split_once('/').map_or((rest, None), |(h, t)| (h, Some(t)));
        match (method, head, tail) {
            (&Method::POST, "publish", None) => self.publish(body).await,
            (&Method::POST, "broadcast", None) => self.broadcast(body).await,
            (&Method::GET, "channels", None) => {
                let channels: Vec<ChannelEntry> = self
                    .hub
                    .channels()
                    .into_iter()
                    .map(|(c, n)| ChannelEntry { channel: c.to_string(), subscribers: n })
                    .collect();
                ApiResponse::ok(&serde_json::json!({ "channels": channels }))
            }
            (&Method::GET, "presence", Some(channel)) => match channel_name(&decode_segment(channel)) {
                Ok(channel) => match wait(|done| self.hub.presence_with(&channel, done)).await {
                    Ok(clients) => ApiResponse::ok(&serde_json::json!({ "clients": clients })),
                    Err(e) => broker_error(&e),
                },
                Err(e) => e,
            },
            (&Method::GET, "history", Some(channel)) => match channel_name(&decode_segment(channel)) {
                Ok(channel) => self.history(&channel, query).await,
                Err(e) => e,
            },
            (&Method::POST, "disconnect", None) => self.disconnect(body),
            (&Method::GET, "stats", None) => ApiResponse::ok(&self.hub.stats()),
            (&Method::POST, "process", Some(rest)) => self.process(rest, body).await,
            _ => ApiResponse::error(StatusCode::NOT_FOUND, "not_found", &format!("no API endpoint {method} {path}")),
        }
    }

    async fn publish(&self, body: &[u8]) -> ApiResponse {
        let body: PublishBody = match parse(body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let channel = match channel_name(&body.channel) {
            Ok(c) => c,
            Err(e) => return e,
        };
        if body.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > ws_protocol::MAX_IDEMPOTENCY_KEY_LEN)
        {
            return ApiResponse::bad_request("field `idempotency_key` must be 1 to 64 bytes");
        }
        let key = body.idempotency_key.as_deref();
        match wait(|done| self.hub.publish_keyed(&channel, body.event.as_deref(), body.data, key, done)).await {
            Ok(offset) => ApiResponse::ok(&serde_json::json!({ "offset": offset })),
            Err(e) => broker_error(&e),
        }
    }

    async fn broadcast(&self, body: &[u8]) -> ApiResponse {
        let body: BroadcastBody = match parse(body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if body.channels.is_empty() {
            return ApiResponse::bad_request("field `channels` must list at least one channel");
        }
        // Validate every name first, so a bad one publishes nothing.
        let channels: Result<Vec<ChannelName>, ApiResponse> = body.channels.iter().map(|c| channel_name(c)).collect();
        let channels = match channels {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut offsets: BTreeMap<String, u64> = BTreeMap::new();
        for c in &channels {
            match wait(|done| self.hub.publish_with(c, body.event.as_deref(), body.data.clone(), done)).await {
                Ok(offset) => offsets.insert(c.to_string(), offset),
                // The channels before this one were published; the error says which one failed.
                Err(e) => return broker_error_on(&e, c),
            };
        }
        ApiResponse::ok(&serde_json::json!({ "offsets": offsets }))
    }

    async fn history(&self, channel: &ChannelName, query: Option<&str>) -> ApiResponse {
        let mut limit = DEFAULT_HISTORY_LIMIT;
        for (key, value) in query.unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')) {
            if key == "limit" {
                match value.parse::<usize>() {
                    Ok(n) => limit = n,
                    Err(_) => {
                        return ApiResponse::bad_request("query parameter `limit` must be a non-negative integer")
                    }
                }
            }
        }
        let page = match wait(|done| self.hub.history_with(channel, limit, None, done)).await {
            Ok(page) => page,
            Err(e) => return broker_error(&e),
        };
        ApiResponse::ok(&HistoryBody {
            epoch: page.epoch,
            offset: page.offset,
            messages: page.publications.into_iter().map(MessageBody::from).collect(),
        })
    }

    fn disconnect(&self, body: &[u8]) -> ApiResponse {
        let body: DisconnectBody = match parse(body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let reason = "disconnected by the server";
        let n = match (body.user_id, body.conn_id) {
            (Some(user), None) => self.hub.disconnect_user(&user, close::APP_DISCONNECT, reason, 0),
            (None, Some(conn)) => match conn.parse::<ConnId>() {
                Ok(id) => usize::from(self.hub.disconnect(id, close::APP_DISCONNECT, reason, 0)),
                Err(_) => return ApiResponse::bad_request("field `conn_id` must be a connection id (16 hex digits)"),
            },
            _ => return ApiResponse::bad_request("give exactly one of `user_id` and `conn_id`"),
        };
        ApiResponse::ok(&serde_json::json!({ "disconnected": n }))
    }
}

/// Runs a hub call that completes through a callback, and waits for it.
async fn wait<T: Send + 'static>(call: impl FnOnce(Done<T>)) -> Result<T, BrokerError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    call(Box::new(move |result| {
        let _ = tx.send(result);
    }));
    rx.await.unwrap_or_else(|_| Err(BrokerError::Unavailable("the broker dropped the request".into())))
}

/// 503 `unavailable` or 504 `timeout`.
fn broker_error(e: &BrokerError) -> ApiResponse {
    match e {
        BrokerError::Timeout => ApiResponse::error(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the broker did not answer in time; the publication may or may not have been made",
        ),
        _ => ApiResponse::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the cluster's broker cannot be reached; nothing was done, try again",
        ),
    }
}

fn broker_error_on(e: &BrokerError, channel: &ChannelName) -> ApiResponse {
    let mut response = broker_error(e);
    let body = serde_json::json!({
        "error": if matches!(e, BrokerError::Timeout) { "timeout" } else { "unavailable" },
        "message": format!("publishing on {channel} failed: {e}; the channels before it in the list were published"),
    });
    response.body = Bytes::from(body.to_string());
    response
}

/// Percent-decodes a path segment: user channels end in `#user`, which a URL must send as `%23user`.
fn decode_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiResponse> {
    serde_json::from_slice(body).map_err(|e| ApiResponse::bad_request(&format!("invalid body: {e}")))
}

fn channel_name(name: &str) -> Result<ChannelName, ApiResponse> {
    ChannelName::new(name).map_err(|e| ApiResponse::bad_request(&format!("invalid channel {name:?}: {e}")))
}

/// Compares keys without an early exit, so response time does not reveal how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
