//! The publishers of the steady channels: over WebSocket (paced frames without ids, so that nothing but an
//! error ever comes back) and over the HTTP API (one request at a time). Each goes round the steady channels,
//! numbers its publications per channel in the [`Ledger`](super::tally::Ledger), and stops when the run stops
//! publishing.

use std::rc::Rc;
use std::time::Duration;

use serde_json::json;

use super::api::Api;
use super::conn::HubConn;
use super::Shared;
use crate::client::ClientError;
use crate::marker::{self, Marker, Template};
use crate::wire::MaskedFrame;

/// Publishing ticks: the publications owed since the start go out every tick.
const TICK: Duration = Duration::from_millis(10);
/// Payload bytes of the `data` string.
const DATA_BYTES: usize = 64;

/// Publishes as `sender` over `conn` at `per_second`, round the steady channels, until publishing stops; then
/// closes the connection cleanly.
pub(crate) async fn websocket(sender: usize, mut conn: HubConn, per_second: f64, shared: Rc<Shared>) {
    let channels = shared.steady();
    let templates: Vec<Template> = channels.iter().map(|c| Template::publish(c, DATA_BYTES)).collect();
    let mut frames: Vec<MaskedFrame> = templates.iter().map(|t| MaskedFrame::text(&t.payload)).collect();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = tokio::time::Instant::now();
    let (mut made, mut next) = (0u64, sender % channels.len());
    let mut out = Vec::new();
    let result: Result<(), ClientError> = async {
        while shared.publishing() {
            tick.tick().await;
            let owed = (started.elapsed().as_secs_f64() * per_second) as u64 - made;
            out.clear();
            for _ in 0..owed {
                let seq = shared.ledger.next(sender, next);
                let m = Marker { sender: sender as u32, seq, sent_us: marker::now_us() };
                frames[next].patch(templates[next].marker_at, &m.encode());
                out.extend_from_slice(frames[next].bytes());
                next = (next + 1) % channels.len();
            }
            made += owed;
            conn.send_raw(&out).await?;
            shared.endpoint.tally.count(|c| c.published_ws += owed);
            // Nothing is expected back; whatever came is an error reply.
            conn.pump_until(tokio::time::Instant::now()).await?;
            if let Some(frame) = conn.take_other() {
                return Err(ClientError::Protocol(format!("a publisher got {frame}")));
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        shared.endpoint.tally.violation(format!("websocket publisher {sender}: {e}"));
        return;
    }
    if let Err(e) = conn.into_socket().close(Duration::from_secs(10)).await {
        shared.endpoint.tally.violation(format!("websocket publisher {sender}: closing: {e}"));
    }
}

/// Publishes as `sender` through `POST /api/publish` at `per_second`, round the steady channels, until
/// publishing stops; checks that each answer's offset is past the last one it got on that channel.
pub(crate) async fn http(sender: usize, per_second: f64, shared: Rc<Shared>) {
    let channels = shared.steady();
    let mut api = Api::new(shared.endpoint.addr, &shared.api_key);
    let mut last_offset = vec![0u64; channels.len()];
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let padding = "x".repeat(DATA_BYTES - marker::MIN_DATA);
    let mut next = sender % channels.len();
    while shared.publishing() {
        tick.tick().await;
        let seq = shared.ledger.next(sender, next);
        let m = Marker { sender: sender as u32, seq, sent_us: marker::now_us() }.encode();
        let data = format!("{}{padding}", String::from_utf8_lossy(&m));
        let body = json!({"channel": channels[next], "data": data}).to_string();
        match api.post_json("/api/publish", body.as_bytes()).await {
            Ok(answer) => match answer["offset"].as_u64() {
                Some(offset) if offset > last_offset[next] => last_offset[next] = offset,
                _ => shared.endpoint.tally.violation(format!(
                    "http publisher {sender}: {answer} after offset {} on {}",
                    last_offset[next], channels[next]
                )),
            },
            Err(e) => shared.endpoint.tally.violation(format!("http publisher {sender}: {e}")),
        }
        shared.endpoint.tally.count(|c| {
            c.published_http += 1;
            c.api_requests += 1;
        });
        next = (next + 1) % channels.len();
    }
}
