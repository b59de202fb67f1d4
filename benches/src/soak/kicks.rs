//! Kicks: connections on a steady channel that read and check for a while, then are disconnected through
//! `POST /api/disconnect` with their `conn_id`. The server promises (PROTOCOL.md, close code 4004) a
//! `disconnect` frame with code 4004 and then a close frame with 4004; a connection that keeps reading, as these
//! do, must get both, after its messages.

use std::rc::Rc;
use std::time::Duration;

use serde_json::json;

use super::api::Api;
use super::conn::{HubConn, Window};
use super::deliveries::Expect;
use super::Shared;

/// The close code of `POST /api/disconnect`.
const KICKED: u16 = 4004;
/// How long a kicked connection may take to see its close.
const CLOSE_WITHIN: Duration = Duration::from_secs(20);
/// How long in-flight kicks get to finish once the run stops loading.
const FINISH: Duration = Duration::from_secs(60);

/// Starts a connection to kick every `every`, at most `most_open` at a time, until the run stops loading.
pub(crate) async fn run(every: Duration, most_open: usize, shared: Rc<Shared>) {
    super::every(
        every,
        most_open,
        FINISH,
        &shared,
        ("kick", "kicks"),
        |id, shared| async move { one(id, &shared).await },
    )
    .await;
}

/// One kicked connection: open, subscribe, read a while, kick, then read to the end and check how it ended.
async fn one(id: u64, shared: &Shared) -> Result<(), String> {
    let steady = shared.steady();
    let channel = steady[shared.random(steady.len() as u64) as usize].clone();
    let mut conn =
        HubConn::open(&shared.endpoint, format!("kick {id}"), Window::Normal).await.map_err(|e| e.to_string())?;
    conn.subscribe(&[(channel, Expect::MarkedJoined)]).await.map_err(|e| e.to_string())?;
    conn.read_for(Duration::from_millis(200 + shared.random(1800))).await.map_err(|e| e.to_string())?;

    // A fresh API connection per kick: the HTTP side churns too.
    let mut api = Api::new(shared.endpoint.addr, &shared.api_key);
    let body = json!({"conn_id": conn.conn_id()}).to_string();
    let answer = api.post_json("/api/disconnect", body.as_bytes()).await?;
    shared.endpoint.tally.count(|c| c.api_requests += 1);
    if answer != json!({"disconnected": 1}) {
        return Err(format!("POST /api/disconnect answered {answer}"));
    }
    drop(api);

    let (code, before) = conn.read_to_end(CLOSE_WITHIN).await.map_err(|e| e.to_string())?;
    let notice = match before.as_slice() {
        [notice] => notice,
        other => return Err(format!("frames other than one disconnect notice before the close: {other:?}")),
    };
    if notice["type"] != "disconnect" || notice["code"] != KICKED {
        return Err(format!("the notice was {notice}, not a disconnect with {KICKED}"));
    }
    if code != Some(KICKED) {
        return Err(format!("the connection ended with close code {code:?}, not {KICKED}"));
    }
    shared.endpoint.tally.count(|c| c.kicks += 1);
    Ok(())
}
