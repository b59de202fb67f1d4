//! The pub/sub tasks: each owns one dedicated connection to one Redis server and the channels whose hash
//! lands on it. The first connection to each server also carries the control channel, so control reaches
//! every node whichever server it was published on.
//!
//! A task reconciles on every interest notice: it asks the hub whether the channel is wanted and
//! subscribes or unsubscribes to match (in batches), or, for a channel wanted and already subscribed,
//! has its position read again (the hub asks that after flagging a gap). When the connection drops, every
//! channel it carried is reported lost; when it is back, every wanted channel is subscribed again and its
//! position read, so the hub sees any gap.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use futures_util::StreamExt as _;
use redis::aio::PubSubSink;
use tokio::sync::mpsc;
use ws_core::BrokerError;
use ws_protocol::{ChannelName, Publication};

use crate::command::Cmd;
use crate::envelope::{self, Envelope};
use crate::{Backoff, Shared};

/// The most channels one SUBSCRIBE or UNSUBSCRIBE names.
const MAX_SUBSCRIBE_BATCH: usize = 512;

pub(crate) async fn run(shared: Arc<Shared>, shard: usize, index: usize, mut rx: mpsc::UnboundedReceiver<ChannelName>) {
    let link = index + 1;
    let mut backoff = Backoff::new();
    let mut first = true;
    loop {
        let client = &shared.shards[shard].client;
        let connected = tokio::time::timeout(shared.command_timeout(), client.get_async_pubsub()).await;
        let pubsub = match connected {
            Ok(Ok(p)) => Some(p),
            Ok(Err(e)) => {
                shared.set_link(shard, link, Err(e.to_string()));
                None
            }
            Err(_) => {
                shared.set_link(shard, link, Err("connect timed out".into()));
                None
            }
        };
        let Some(pubsub) = pubsub else {
            if !down(&shared, &mut rx, &mut backoff).await {
                return;
            }
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed: HashSet<ChannelName> = HashSet::new();
        let ready = async {
            if index == 0 {
                timed(&shared, sink.subscribe(shared.control_key())).await?;
            }
            let wanted: Vec<ChannelName> = shared
                .hub()
                .map(|hub| hub.broker_channels())
                .unwrap_or_default()
                .into_iter()
                .filter(|c| shared.route(c) == (shard, index))
                .collect();
            if !first {
                shared.resubscriptions.fetch_add(wanted.len() as u64, Relaxed);
            }
            reconcile(&shared, &mut sink, &mut subscribed, wanted).await
        }
        .await;
        if let Err(reason) = ready {
            shared.set_link(shard, link, Err(reason));
            lost(&shared, &subscribed);
            if !down(&shared, &mut rx, &mut backoff).await {
                return;
            }
            continue;
        }
        first = false;
        shared.set_link(shard, link, Ok(()));
        backoff.reset();
        let mut probe = tokio::time::interval(shared.config.probe_interval / 2);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = tokio::time::Instant::now();
        let reason = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        heard = tokio::time::Instant::now();
                        handle(&shared, &msg);
                    }
                    None => break "connection lost".to_owned(),
                },
                _ = probe.tick() => {
                    if heard.elapsed() < shared.config.probe_interval {
                        continue;
                    }
                    // Quiet for a while: make sure Redis still answers on this connection.
                    match timed(&shared, sink.ping::<redis::Value>()).await {
                        Ok(_) => heard = tokio::time::Instant::now(),
                        Err(e) => {
                            shared.probe_failures.fetch_add(1, Relaxed);
                            break format!("liveness probe failed: {e}");
                        }
                    }
                }
                ch = rx.recv() => {
                    let Some(ch) = ch else { return };
                    let mut batch = vec![ch];
                    while let Ok(c) = rx.try_recv() {
                        batch.push(c);
                    }
                    if let Err(reason) = reconcile(&shared, &mut sink, &mut subscribed, batch).await {
                        break reason;
                    }
                }
            }
        };
        shared.set_link(shard, link, Err(reason));
        lost(&shared, &subscribed);
    }
}

/// Waits out one backoff delay while the connection is down, answering every subscribe that comes in the
/// meantime with `unavailable`. Returns false when the broker is gone.
async fn down(shared: &Shared, rx: &mut mpsc::UnboundedReceiver<ChannelName>, backoff: &mut Backoff) -> bool {
    let sleep = tokio::time::sleep(backoff.next_delay());
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            ch = rx.recv() => {
                let Some(ch) = ch else { return false };
                if let Some(hub) = shared.hub() {
                    if hub.broker_wants(&ch) {
                        hub.broker_subscribed(&ch, Err(BrokerError::Unavailable("redis cannot be reached".into())));
                    }
                }
            }
        }
    }
}

/// Tells the hub that every channel this connection carried lost its subscription.
fn lost(shared: &Shared, subscribed: &HashSet<ChannelName>) {
    let Some(hub) = shared.hub() else { return };
    for ch in subscribed {
        hub.broker_subscribed(ch, Err(BrokerError::Unavailable("redis pub/sub connection lost".into())));
    }
}

async fn timed<T>(shared: &Shared, f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    tokio::time::timeout(shared.command_timeout(), f)
        .await
        .map_err(|_| "subscribe timed out".to_owned())?
        .map_err(|e| e.to_string())
}

/// Brings this connection's subscriptions in line with what the hub wants for `channels`.
async fn reconcile(
    shared: &Shared,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<ChannelName>,
    mut channels: Vec<ChannelName>,
) -> Result<(), String> {
    let Some(hub) = shared.hub() else { return Ok(()) };
    channels.sort();
    channels.dedup();
    let (mut add, mut remove, mut position) = (Vec::new(), Vec::new(), Vec::new());
    for ch in channels {
        match (hub.broker_wants(&ch), subscribed.contains(&ch)) {
            (true, false) => add.push(ch),
            (false, true) => remove.push(ch),
            (true, true) => position.push(ch),
            (false, false) => {}
        }
    }
    for chunk in add.chunks(MAX_SUBSCRIBE_BATCH) {
        let keys: Vec<String> = chunk.iter().map(|c| shared.channel_key(c)).collect();
        timed(shared, sink.subscribe(&keys)).await?;
        subscribed.extend(chunk.iter().cloned());
        position.extend(chunk.iter().cloned());
    }
    for chunk in remove.chunks(MAX_SUBSCRIBE_BATCH) {
        let keys: Vec<String> = chunk.iter().map(|c| shared.channel_key(c)).collect();
        timed(shared, sink.unsubscribe(&keys)).await?;
        for c in chunk {
            subscribed.remove(c);
        }
    }
    // Subscribed first, position second: whatever is published after the read arrives on the connection.
    for ch in position {
        shared.shard_for(&ch).send(shared, Cmd::Position(ch));
    }
    Ok(())
}

/// One message from Redis.
fn handle(shared: &Shared, msg: &redis::Msg) {
    let Some(hub) = shared.hub() else { return };
    let key = msg.get_channel_name();
    let envelope = match envelope::decode(msg.get_payload_bytes(), &shared.node) {
        Ok(e) => e,
        Err(why) => {
            shared.count_dropped(why);
            return;
        }
    };
    if key == shared.control_key() {
        match envelope {
            Envelope::Control(command) => hub.broker_control(command),
            _ => shared.count_dropped(envelope::Dropped::Malformed),
        }
        return;
    }
    let Some(channel) = shared.channel_of(key) else {
        shared.count_dropped(envelope::Dropped::Malformed);
        return;
    };
    match envelope {
        Envelope::Publications { epoch, offset, items } => {
            for (offset, (event, data)) in (offset..).zip(items) {
                hub.broker_publication(&epoch, Publication { channel: channel.clone(), offset, event, data });
            }
        }
        Envelope::JoinLeave { joined, client } => hub.broker_join_leave(&channel, client, joined),
        Envelope::Control(_) => shared.count_dropped(envelope::Dropped::Malformed),
    }
}
