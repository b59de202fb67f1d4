//! The command task, one per Redis server: one multiplexed connection that runs publishes, reads, presence
//! and control in pipelines, a few in flight at once. Redis runs a connection's commands in the order they
//! were sent and answers in that order, and the task completes the pipelines in that order, so requests
//! complete in the order they were made.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt as _};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::mpsc;
use ws_core::{BrokerError, Control, Done, HistoryReply, HistoryRequest, Position, PublishRequest};
use ws_protocol::{ChannelName, ClientInfo, Json, Publication};

use crate::envelope;
use crate::scripts;
use crate::{random_epoch, Backoff, Shared};

/// The most requests one pipeline carries.
const MAX_BATCH: usize = 4096;

/// The most publications one publish script call carries.
const MAX_SCRIPT_PUBLICATIONS: usize = 256;

/// The most pipelines in flight at once: a request that comes while one is out goes in the next, rather than
/// waiting a round trip for it.
const MAX_IN_FLIGHT: usize = 4;

/// A request for the command task.
pub(crate) enum Cmd {
    /// A publication, with when it reached the broker.
    Publish(PublishRequest, Done<u64>, Instant),
    Read(HistoryRequest, Done<HistoryReply>),
    /// Read a channel's position and report it with `Hub::broker_subscribed`.
    Position(ChannelName),
    Presence(ChannelName, Done<Vec<ClientInfo>>),
    Member {
        channel: ChannelName,
        client: ClientInfo,
        joined: bool,
        presence: bool,
        join_leave: bool,
    },
    Control(Control),
}

impl Cmd {
    /// The channel the request is about; `None` for control, which is about every channel.
    pub(crate) fn channel(&self) -> Option<&ChannelName> {
        match self {
            Cmd::Publish(request, ..) => Some(&request.channel),
            Cmd::Read(request, _) => Some(&request.channel),
            Cmd::Position(channel) | Cmd::Presence(channel, _) | Cmd::Member { channel, .. } => Some(channel),
            Cmd::Control(_) => None,
        }
    }

    /// Answers the request with an error, without Redis.
    pub(crate) fn fail(self, shared: &Shared, error: &BrokerError) {
        match self {
            Cmd::Publish(_, done, _) => done(Err(error.clone())),
            Cmd::Read(_, done) => done(Err(error.clone())),
            Cmd::Presence(_, done) => done(Err(error.clone())),
            Cmd::Position(channel) => position_failed(shared, channel, error.clone()),
            Cmd::Member { .. } | Cmd::Control(_) => {}
        }
    }
}

/// How long a failed position read waits before it is tried again.
const POSITION_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// A position read failed: the hub hears it (waiting subscribers get `unavailable`, live ones go stale),
/// and the read is tried again while the hub still wants the channel, so a channel whose subscription
/// survived is brought back in step as soon as Redis answers.
fn position_failed(shared: &Shared, channel: ChannelName, error: BrokerError) {
    let Some(hub) = shared.hub() else { return };
    hub.broker_subscribed(&channel, Err(error));
    let commands = shared.shard_for(&channel).commands.clone();
    tokio::spawn(async move {
        tokio::time::sleep(POSITION_RETRY).await;
        if hub.broker_wants(&channel) {
            let _ = commands.send(Cmd::Position(channel));
        }
    });
}

/// The scripts' SHA1s, as Redis knows them once loaded.
struct Scripts {
    publish: redis::Script,
    read: redis::Script,
    presence: redis::Script,
}

/// What to do with one reply of a pipeline.
enum Pending {
    /// One script call's publications, by channel, each in order: who waits for each offset, and since when.
    Publish(Vec<Vec<(Done<u64>, Instant)>>),
    Read(HistoryRequest, Done<HistoryReply>),
    Position(ChannelName),
    Presence(Done<Vec<ClientInfo>>),
    Ignore,
}

/// This node's presence entries, refreshed every third of the lease.
type Members = HashMap<ChannelName, HashMap<String, String>>;

pub(crate) async fn run(shared: Arc<Shared>, shard: usize, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let scripts = Scripts {
        publish: redis::Script::new(scripts::PUBLISH),
        read: redis::Script::new(scripts::READ),
        presence: redis::Script::new(scripts::PRESENCE),
    };
    let mut members: Members = HashMap::new();
    let mut backoff = Backoff::new();
    let refresh_every = shared.config.presence_lease / 3;
    loop {
        let mut conn = match connect(&shared, shard, &scripts).await {
            Ok(conn) => conn,
            Err(reason) => {
                shared.set_link(shard, 0, Err(reason));
                // Down: answer whatever comes at once, until it is time to try again.
                let sleep = tokio::time::sleep(backoff.next_delay());
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        cmd = rx.recv() => match cmd {
                            Some(cmd) => {
                                track(&mut members, &cmd);
                                cmd.fail(&shared, &BrokerError::Unavailable("redis cannot be reached".into()));
                            }
                            None => return,
                        },
                    }
                }
                continue;
            }
        };
        shared.set_link(shard, 0, Ok(()));
        backoff.reset();
        // After a reconnect Redis may have lost this node's presence: write it all again.
        if refresh(&shared, shard, &mut conn, &members).await.is_err() {
            continue;
        }
        let mut ticker = tokio::time::interval(refresh_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut in_flight = FuturesOrdered::new();
        let reason = loop {
            tokio::select! {
                biased;
                Some((pending, replies)) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Err(reason) = complete(&shared, pending, replies) {
                        break reason;
                    }
                }
                cmd = rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                    let Some(first) = cmd else { return };
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(cmd) => batch.push(cmd),
                            Err(_) => break,
                        }
                    }
                    for cmd in &batch {
                        track(&mut members, cmd);
                    }
                    let (pipe, pending) = prepare(&shared, &scripts, batch);
                    let (mut conn, timeout) = (conn.clone(), shared.command_timeout());
                    in_flight.push_back(async move {
                        (pending, tokio::time::timeout(timeout, pipe.query_async::<Vec<Value>>(&mut conn)).await)
                    });
                }
                _ = ticker.tick() => {
                    if refresh(&shared, shard, &mut conn, &members).await.is_err() {
                        break "presence refresh failed".to_owned();
                    }
                }
            }
        };
        // The pipelines still out were sent: complete each with whatever it gets.
        while let Some((pending, replies)) = in_flight.next().await {
            let _ = complete(&shared, pending, replies);
        }
        shared.set_link(shard, 0, Err(reason));
    }
}

async fn connect(shared: &Shared, shard: usize, scripts: &Scripts) -> Result<MultiplexedConnection, String> {
    let timeout = shared.command_timeout();
    let mut conn = tokio::time::timeout(timeout, shared.shards[shard].client.get_multiplexed_async_connection())
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    for script in [&scripts.publish, &scripts.read, &scripts.presence] {
        let invocation = script.prepare_invoke();
        tokio::time::timeout(timeout, invocation.load_async(&mut conn))
            .await
            .map_err(|_| "script load timed out".to_owned())?
            .map_err(|e| e.to_string())?;
    }
    Ok(conn)
}

/// Keeps the map of this node's presence entries in step with joins and leaves.
fn track(members: &mut Members, cmd: &Cmd) {
    if let Cmd::Member { channel, client, joined, presence: true, .. } = cmd {
        if *joined {
            let json = serde_json::to_string(client).unwrap_or_default();
            members.entry(channel.clone()).or_default().insert(client.conn_id.clone(), json);
        } else if let Some(m) = members.get_mut(channel) {
            m.remove(&client.conn_id);
            if m.is_empty() {
                members.remove(channel);
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Extends the lease of every presence entry of this node.
async fn refresh(shared: &Shared, shard: usize, conn: &mut MultiplexedConnection, members: &Members) -> Result<(), ()> {
    if members.is_empty() {
        return Ok(());
    }
    let lease = u64::try_from(shared.config.presence_lease.as_millis()).unwrap_or(u64::MAX);
    let expires = now_ms() + lease;
    let mut pipe = redis::pipe();
    for (channel, clients) in members {
        let (data, expire) = shared.presence_keys(channel);
        for (conn_id, json) in clients {
            pipe.hset(&data, conn_id, json).ignore();
            pipe.zadd(&expire, conn_id, expires).ignore();
        }
        pipe.pexpire(&data, lease as i64 * 2).ignore();
        pipe.pexpire(&expire, lease as i64 * 2).ignore();
    }
    let result: Result<Result<(), redis::RedisError>, _> =
        tokio::time::timeout(shared.command_timeout(), pipe.query_async(conn)).await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            shared.set_link(shard, 0, Err(e.to_string()));
            Err(())
        }
        Err(_) => {
            shared.set_link(shard, 0, Err("presence refresh timed out".into()));
            Err(())
        }
    }
}

/// A pipeline's replies, or why there are none.
type Replies = Result<Result<Vec<Value>, redis::RedisError>, tokio::time::error::Elapsed>;

/// One batch as a pipeline, and what to do with each of its replies.
fn prepare(shared: &Shared, scripts: &Scripts, batch: Vec<Cmd>) -> (redis::Pipeline, Vec<Pending>) {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut pending = Vec::with_capacity(batch.len());
    // Consecutive groups share a script call, up to a bound that keeps each call short for Redis.
    let mut run: Vec<Vec<Queued>> = Vec::new();
    let mut in_run = 0;
    for item in group(batch) {
        match item {
            Item::Publish(group) => {
                if in_run + group.len() > MAX_SCRIPT_PUBLICATIONS && !run.is_empty() {
                    publish(shared, scripts, &mut pipe, &mut pending, std::mem::take(&mut run));
                    in_run = 0;
                }
                in_run += group.len();
                run.push(group);
            }
            Item::Other(cmd) => {
                if !run.is_empty() {
                    publish(shared, scripts, &mut pipe, &mut pending, std::mem::take(&mut run));
                    in_run = 0;
                }
                add(shared, scripts, &mut pipe, &mut pending, cmd);
            }
        }
    }
    if !run.is_empty() {
        publish(shared, scripts, &mut pipe, &mut pending, run);
    }
    (pipe, pending)
}

/// Completes every request of a pipeline with its reply. `Err` when the connection broke or the scripts
/// must be loaded again.
fn complete(shared: &Shared, pending: Vec<Pending>, replies: Replies) -> Result<(), String> {
    let (replies, failure) = match replies {
        Ok(Ok(replies)) if replies.len() == pending.len() => (replies, None),
        Ok(Ok(_)) => (Vec::new(), Some("pipeline reply count mismatch".to_owned())),
        Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
        Err(_) => (Vec::new(), Some("request timed out".to_owned())),
    };
    if let Some(reason) = failure {
        // The pipeline was sent: a publish in it may have been made, so its outcome is unknown.
        for p in pending {
            fail_pending(shared, p, &BrokerError::Timeout, &reason);
        }
        return Err(reason);
    }
    let hub = shared.hub();
    let mut noscript = false;
    for (p, reply) in pending.into_iter().zip(replies) {
        if let Value::ServerError(e) = &reply {
            noscript |= e.code() == "NOSCRIPT";
            let error = BrokerError::Unavailable(format!("redis: {} {}", e.code(), e.details().unwrap_or("")));
            fail_pending(shared, p, &error, "");
            continue;
        }
        match p {
            Pending::Publish(groups) => {
                let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
                let offsets = parse_publish(&reply, &sizes);
                for (g, waiting) in groups.into_iter().enumerate() {
                    for (i, (done, since)) in waiting.into_iter().enumerate() {
                        shared.publish_latency.observe(since.elapsed());
                        done(offsets.as_ref().map(|o| o[g][i]).ok_or_else(|| bad_reply("publish")));
                    }
                }
            }
            Pending::Read(request, done) => {
                done(parse_read(&request.channel, &reply).ok_or_else(|| bad_reply("history")));
            }
            Pending::Position(channel) => match parse_read(&channel, &reply) {
                Some(read) => {
                    if let Some(hub) = &hub {
                        hub.broker_subscribed(&channel, Ok(read.position));
                    }
                }
                None => position_failed(shared, channel, bad_reply("position")),
            },
            Pending::Presence(done) => done(parse_presence(&reply).ok_or_else(|| bad_reply("presence"))),
            Pending::Ignore => {}
        }
    }
    if noscript {
        // Someone flushed the script cache: load the scripts again; the failed requests were answered.
        return Err("scripts missing (SCRIPT FLUSH?); reloading".into());
    }
    Ok(())
}

fn bad_reply(what: &str) -> BrokerError {
    BrokerError::Unavailable(format!("unexpected {what} reply from redis"))
}

fn fail_pending(shared: &Shared, p: Pending, publish_error: &BrokerError, reason: &str) {
    let read_error = BrokerError::Unavailable(if reason.is_empty() { "redis error".into() } else { reason.into() });
    match p {
        Pending::Publish(groups) => {
            for (done, _) in groups.into_iter().flatten() {
                done(Err(publish_error.clone()));
            }
        }
        Pending::Read(_, done) => done(Err(read_error)),
        Pending::Presence(done) => done(Err(read_error)),
        Pending::Position(channel) => position_failed(shared, channel, read_error),
        Pending::Ignore => {}
    }
}

/// A publication with who waits for its offset and since when.
type Queued = (PublishRequest, Done<u64>, Instant);

/// A pipeline's unit: the publications of one channel that queued up together, or any other request.
enum Item {
    Publish(Vec<Queued>),
    Other(Cmd),
}

/// Groups each run of publications (those between two other requests) by channel, keeping their order, so
/// each channel's run is one script call. Other requests stay where they were: a read after a publish still
/// sees it.
fn group(batch: Vec<Cmd>) -> Vec<Item> {
    let mut items = Vec::with_capacity(batch.len());
    let mut run: HashMap<ChannelName, usize> = HashMap::new();
    for cmd in batch {
        match cmd {
            Cmd::Publish(request, done, since) => match run.get(&request.channel) {
                Some(&i) => {
                    if let Item::Publish(group) = &mut items[i] {
                        group.push((request, done, since));
                    }
                }
                None => {
                    run.insert(request.channel.clone(), items.len());
                    items.push(Item::Publish(vec![(request, done, since)]));
                }
            },
            other => {
                run.clear();
                items.push(Item::Other(other));
            }
        }
    }
    items
}

/// One script call for groups of publications, each of one channel and in order.
fn publish(
    shared: &Shared,
    scripts: &Scripts,
    pipe: &mut redis::Pipeline,
    pending: &mut Vec<Pending>,
    groups: Vec<Vec<Queued>>,
) {
    let keys: usize = groups.iter().map(|g| 2 + g.len()).sum();
    let cmd = pipe.cmd("EVALSHA");
    cmd.arg(scripts.publish.get_hash()).arg(keys);
    for group in &groups {
        let Some((first, ..)) = group.first() else { continue };
        cmd.arg(shared.meta_key(&first.channel)).arg(shared.stream_key(&first.channel));
        for (request, ..) in group {
            cmd.arg(shared.idempotency_key(&request.channel, request.idempotency_key.as_deref().unwrap_or("")));
        }
    }
    cmd.arg(shared.config.meta_ttl.as_secs().max(1))
        .arg(envelope::publication_head(&shared.node))
        .arg(envelope::batch_head(&shared.node))
        .arg(groups.len());
    let mut waiting = Vec::with_capacity(groups.len());
    for group in groups {
        let Some((first, ..)) = group.first() else { continue };
        cmd.arg(random_epoch())
            .arg(first.history_size)
            .arg(first.history_ttl_ms)
            .arg(shared.channel_key(&first.channel))
            .arg(group.len());
        let mut done_group = Vec::with_capacity(group.len());
        for (request, done, since) in group {
            let event = request.event.as_deref().map_or_else(|| "null".to_owned(), envelope::json_string);
            let window = if request.idempotency_key.is_some() { request.idempotency_window_ms.max(1) } else { 0 };
            cmd.arg(event).arg(request.data.as_bytes()).arg(window);
            done_group.push((done, since));
        }
        waiting.push(done_group);
    }
    pending.push(Pending::Publish(waiting));
}

fn add(shared: &Shared, scripts: &Scripts, pipe: &mut redis::Pipeline, pending: &mut Vec<Pending>, cmd: Cmd) {
    match cmd {
        Cmd::Publish(request, done, since) => {
            publish(shared, scripts, pipe, pending, vec![vec![(request, done, since)]]);
        }
        Cmd::Read(request, done) => {
            read(shared, scripts, pipe, &request.channel, request.since.as_ref(), request.limit);
            pending.push(Pending::Read(request, done));
        }
        Cmd::Position(channel) => {
            read(shared, scripts, pipe, &channel, None, 0);
            pending.push(Pending::Position(channel));
        }
        Cmd::Presence(channel, done) => {
            let (data, expire) = shared.presence_keys(&channel);
            pipe.cmd("EVALSHA").arg(scripts.presence.get_hash()).arg(2).arg(data).arg(expire).arg(now_ms());
            pending.push(Pending::Presence(done));
        }
        Cmd::Member { channel, client, joined, presence, join_leave } => {
            if presence {
                let (data, expire) = shared.presence_keys(&channel);
                if joined {
                    let lease = u64::try_from(shared.config.presence_lease.as_millis()).unwrap_or(u64::MAX);
                    let json = serde_json::to_string(&client).unwrap_or_default();
                    pipe.hset(&data, &client.conn_id, json);
                    pipe.zadd(&expire, &client.conn_id, now_ms() + lease);
                    pipe.pexpire(&data, lease as i64 * 2);
                    pipe.pexpire(&expire, lease as i64 * 2);
                    pending.extend((0..4).map(|_| Pending::Ignore));
                } else {
                    pipe.hdel(&data, &client.conn_id);
                    pipe.zrem(&expire, &client.conn_id);
                    pending.extend((0..2).map(|_| Pending::Ignore));
                }
            }
            if join_leave {
                pipe.publish(shared.channel_key(&channel), envelope::join_leave(&shared.node, joined, &client));
                pending.push(Pending::Ignore);
            }
        }
        Cmd::Control(command) => {
            if let Some(env) = envelope::control(&shared.node, &command) {
                pipe.publish(shared.control_key(), env);
                pending.push(Pending::Ignore);
            }
        }
    }
}

fn read(
    shared: &Shared,
    scripts: &Scripts,
    pipe: &mut redis::Pipeline,
    channel: &ChannelName,
    since: Option<&ws_protocol::StreamPosition>,
    limit: usize,
) {
    pipe.cmd("EVALSHA")
        .arg(scripts.read.get_hash())
        .arg(2)
        .arg(shared.meta_key(channel))
        .arg(shared.stream_key(channel))
        .arg(random_epoch())
        .arg(shared.config.meta_ttl.as_secs().max(1))
        .arg(since.map_or("", |s| s.epoch.as_str()))
        .arg(since.map_or(0, |s| s.offset))
        .arg(limit);
}

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => std::str::from_utf8(as_bytes(other)?).ok()?.parse().ok(),
    }
}

/// The offsets of a publish script's reply, per group of `sizes[g]` publications (each after its epoch).
fn parse_publish(v: &Value, sizes: &[usize]) -> Option<Vec<Vec<u64>>> {
    let Value::Array(items) = v else { return None };
    if items.len() != sizes.iter().map(|n| n + 1).sum::<usize>() {
        return None;
    }
    let mut at = 0;
    sizes
        .iter()
        .map(|n| {
            let offsets = items[at + 1..at + 1 + n].iter().map(as_u64).collect();
            at += n + 1;
            offsets
        })
        .collect()
}

fn parse_read(channel: &ChannelName, v: &Value) -> Option<HistoryReply> {
    let Value::Array(items) = v else { return None };
    let epoch = std::str::from_utf8(as_bytes(items.first()?)?).ok()?;
    let offset = as_u64(items.get(1)?)?;
    let mut publications = Vec::new();
    if let Some(Value::Array(entries)) = items.get(2) {
        for entry in entries.iter().rev() {
            let Value::Array(parts) = entry else { return None };
            let id = std::str::from_utf8(as_bytes(parts.first()?)?).ok()?;
            let offset: u64 = id.split('-').next()?.parse().ok()?;
            let Value::Array(fields) = parts.get(1)? else { return None };
            let (mut data, mut event) = (None, None);
            for pair in fields.chunks(2) {
                match (as_bytes(&pair[0])?, pair.get(1).and_then(as_bytes)) {
                    (b"d", Some(d)) => data = Some(Json::parse(Bytes::copy_from_slice(d)).ok()?),
                    (b"ev", Some(e)) => event = serde_json::from_slice::<Option<String>>(e).ok()?,
                    _ => {}
                }
            }
            publications.push(Publication { channel: channel.clone(), offset, event, data: data? });
        }
    }
    Some(HistoryReply { position: Position { epoch: Arc::from(epoch), offset }, publications })
}

fn parse_presence(v: &Value) -> Option<Vec<ClientInfo>> {
    let Value::Array(items) = v else { return None };
    let mut clients: Vec<ClientInfo> = items.iter().filter_map(|i| serde_json::from_slice(as_bytes(i)?).ok()).collect();
    clients.sort_by(|a, b| a.conn_id.cmp(&b.conn_id));
    Some(clients)
}
