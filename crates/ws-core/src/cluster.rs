//! The clustered path: channels sequenced by the broker, subscriptions confirmed by it, gaps filled from its
//! history or flagged, never skipped.
//!
//! Each clustered channel carries a [`ClusterState`] under its lock:
//! - `Subscribing`: the broker has not yet confirmed its upstream subscription and position. Subscribers wait
//!   (their `subscribed` reply too); live publications are held.
//! - `Live`: in step. Each publication must carry the channel's epoch and the next offset; a duplicate is
//!   dropped, anything else starts a repair.
//! - `Repairing`: a gap was seen; the missed range is being read from the broker's history while live
//!   publications are held. If the read fills the gap the held ones follow in order; if not, every
//!   subscriber gets `unsubscribed` with `insufficient_state` and `resubscribe: true`.
//! - `Stale`: the broker link broke. Subscribers stay (their connections are fine) but new subscribes get
//!   `unavailable`; when the broker reports the position again, a gap is repaired or flagged.
//!
//! A subscribe with `recover` on a live channel reads the missed range from the broker while the channel's
//! live publications are copied into its buffer; when the read is in, the two are merged by offset, checked
//! to be consecutive up to the channel's offset, and sent after the `subscribed` reply, all under the lock.
//!
//! The hub never calls the broker while it holds a channel's lock: work for the broker is collected in an
//! [`After`] and issued once the lock is released.

use std::mem;
use std::sync::Arc;

use bytes::Bytes;
use ws_protocol::{
    ChannelName, ClientInfo, CommandId, ErrorCode, Publication, ServerMessage, StreamPosition, UnsubscribeReason,
};

use crate::broker::{BrokerError, Control, HistoryReply, HistoryRequest, Position};
use crate::channel::{Channel, ChannelState, Subscriber};
use crate::connections::ConnEntry;
use crate::hub::{CommandError, Hub};
use crate::subscriptions::Subscribed;

/// The most live publications a channel holds while it waits for the broker; past it, the wait ends in
/// `insufficient_state` rather than unbounded memory.
const MAX_HELD: usize = 10_000;

/// The most publications one repair reads; a longer gap is flagged.
const MAX_REPAIR: usize = 10_000;

/// How far a clustered channel is in step with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Link {
    #[default]
    Subscribing,
    Live,
    Repairing,
    Stale,
}

/// A live publication as the broker delivered it.
struct Held {
    epoch: Arc<str>,
    publication: Publication,
}

/// A subscriber waiting for the channel to go live.
struct Waiting {
    entry: Arc<ConnEntry>,
    reply: Option<Option<CommandId>>,
    recover: Option<StreamPosition>,
}

/// A subscriber whose missed range is being read.
struct Recovering {
    token: u64,
    entry: Arc<ConnEntry>,
    reply: Option<Option<CommandId>>,
    /// The client's last offset, and the channel's offset when the read was asked for.
    from: u64,
    upto: u64,
    /// Live frames delivered on the channel since, with their offsets.
    frames: Vec<(u64, Bytes)>,
    overflow: bool,
}

/// A clustered channel's state beyond the single-node one.
#[derive(Default)]
pub(crate) struct ClusterState {
    link: Link,
    held: Vec<Held>,
    held_overflow: bool,
    waiting: Vec<Waiting>,
    recovering: Vec<Recovering>,
    next_token: u64,
}

impl ClusterState {
    /// Whether some subscriber is waiting on the broker.
    pub(crate) fn pending(&self) -> bool {
        !self.waiting.is_empty() || !self.recovering.is_empty()
    }

    fn is_pending(&self, entry: &ConnEntry) -> bool {
        let id = entry.id();
        self.waiting.iter().any(|w| w.entry.id() == id) || self.recovering.iter().any(|r| r.entry.id() == id)
    }
}

/// Work for the broker and the registry, issued once the channel's lock is released.
#[derive(Default)]
#[must_use]
pub(crate) struct After {
    interest: bool,
    reads: Vec<(HistoryRequest, ReadFor)>,
    joined: Vec<ClientInfo>,
    left: Vec<ClientInfo>,
    maybe_idle: bool,
}

/// What a history read is for.
enum ReadFor {
    Recovery(u64),
    Repair,
}

fn unavailable() -> CommandError {
    CommandError::new(ErrorCode::Unavailable, "the cluster's broker cannot be reached; try again")
}

/// The protocol error for a failed broker request.
pub(crate) fn broker_error(e: &BrokerError) -> CommandError {
    match e {
        BrokerError::Unavailable(_) => unavailable(),
        BrokerError::Timeout => CommandError::new(ErrorCode::Timeout, "the broker did not answer in time"),
    }
}

impl Hub {
    /// Issues what was collected under a channel's lock.
    fn run_after(&self, ch: &Arc<Channel>, after: After) {
        let broker = &self.inner.broker;
        let policy = &ch.policy;
        for client in &after.joined {
            broker.joined(&ch.name, client, policy.presence, policy.join_leave);
        }
        for client in &after.left {
            broker.left(&ch.name, client, policy.presence, policy.join_leave);
        }
        for (request, purpose) in after.reads {
            let hub = self.weak();
            let channel = ch.name.clone();
            broker.history(
                request,
                Box::new(move |result| {
                    let Some(hub) = hub.upgrade() else { return };
                    match purpose {
                        ReadFor::Recovery(token) => hub.finish_recovery(&channel, token, result),
                        ReadFor::Repair => hub.finish_repair(&channel, result),
                    }
                }),
            );
        }
        if after.maybe_idle {
            self.inner.channels.remove_if_idle(ch);
        }
        if after.interest || after.maybe_idle {
            broker.interest_changed(&ch.name);
        }
    }

    /// Whether this node wants the channel from the broker: it has local subscribers or some waiting.
    #[must_use]
    pub fn broker_wants(&self, channel: &ChannelName) -> bool {
        self.lookup(channel).is_some_and(|ch| {
            let state = ch.state.lock();
            !state.removed && (!state.subscribers.is_empty() || state.cluster.as_ref().is_some_and(|c| c.pending()))
        })
    }

    /// Every channel this node wants from the broker, for a broker that resubscribes after a reconnect.
    #[must_use]
    pub fn broker_channels(&self) -> Vec<ChannelName> {
        let mut out: Vec<ChannelName> =
            self.inner.channels.all().into_iter().map(|ch| ch.name.clone()).filter(|c| self.broker_wants(c)).collect();
        out.sort();
        out
    }

    /// The broker's upstream subscription to a channel is confirmed and its position read (`Ok`), or the
    /// broker lost it or cannot make it (`Err`). Call it after every (re)subscribe; it is idempotent.
    pub fn broker_subscribed(&self, channel: &ChannelName, result: Result<Position, BrokerError>) {
        let Some(ch) = self.lookup(channel) else { return };
        let mut after = After::default();
        {
            let mut guard = ch.state.lock();
            let state = &mut *guard;
            let Some(link) = state.cluster.as_ref().map(|c| c.link) else { return };
            match (link, result) {
                (Link::Subscribing, Ok(pos)) => {
                    state.epoch = pos.epoch;
                    state.offset = pos.offset;
                    self.go_live(&ch, state, &mut after);
                }
                (Link::Subscribing, Err(e)) => {
                    let cluster = state.cluster.as_mut().expect("clustered");
                    cluster.held.clear();
                    cluster.held_overflow = false;
                    for w in mem::take(&mut cluster.waiting) {
                        w.entry.channels.lock().remove(channel);
                        if let Some(id) = w.reply {
                            let e = broker_error(&e);
                            let msg = ServerMessage::Error { id, code: e.code, message: e.message };
                            self.reply_conn(&w.entry.conn, &msg);
                        }
                    }
                    after.maybe_idle = true;
                }
                (Link::Live, Ok(pos)) => self.check_position(&ch, state, &pos, &mut after),
                (Link::Live, Err(_)) => state.cluster.as_mut().expect("clustered").link = Link::Stale,
                (Link::Stale, Ok(pos)) => {
                    let cluster = state.cluster.as_mut().expect("clustered");
                    cluster.link = Link::Live;
                    let held = mem::take(&mut cluster.held);
                    let overflow = mem::take(&mut cluster.held_overflow);
                    self.check_position(&ch, state, &pos, &mut after);
                    if overflow {
                        self.flag(&ch, state, &mut after);
                    } else {
                        for h in held {
                            self.on_live(&ch, state, h, &mut after);
                        }
                    }
                }
                (Link::Stale, Err(_)) | (Link::Repairing, _) => {}
            }
        }
        self.run_after(&ch, after);
    }

    /// A live publication from the broker, in the order the broker received it.
    pub fn broker_publication(&self, epoch: &str, publication: Publication) {
        // Subscribers' tasks are woken once the channel's lock is released (see `wake.rs`).
        crate::wake::deferring(|| self.broker_publication_now(epoch, publication));
    }

    fn broker_publication_now(&self, epoch: &str, publication: Publication) {
        let Some(ch) = self.lookup(&publication.channel) else { return };
        let mut after = After::default();
        {
            let mut guard = ch.state.lock();
            let state = &mut *guard;
            if state.removed || state.cluster.is_none() {
                return;
            }
            self.on_live(&ch, state, Held { epoch: Arc::from(epoch), publication }, &mut after);
        }
        self.run_after(&ch, after);
    }

    /// A join or leave on another node.
    pub fn broker_join_leave(&self, channel: &ChannelName, client: ClientInfo, joined: bool) {
        let Some(ch) = self.lookup(channel) else { return };
        if !ch.policy.join_leave {
            return;
        }
        let state = ch.state.lock();
        let frame = if joined {
            ServerMessage::Join { channel: channel.clone(), client }
        } else {
            ServerMessage::Leave { channel: channel.clone(), client }
        }
        .encode();
        self.fan_out(&state, &frame, ch.policy.slow_consumer);
    }

    /// A control command from another node, applied to this node's connections.
    pub fn broker_control(&self, command: Control) {
        match command {
            Control::DisconnectUser { user_id, code, reason } => {
                self.disconnect_user_local(&user_id, code, &reason, 0);
            }
            Control::DisconnectConn { conn_id, code, reason } => {
                self.disconnect_local(conn_id, code, &reason, 0);
            }
            Control::SendToUser { user_id, frame } => {
                self.send_to_user_local(&user_id, &frame);
            }
            Control::Broadcast { frame } => {
                self.broadcast_local(&frame);
            }
        }
    }

    /// Subscribe on the clustered path; `Ok(None)` when the reply comes once the broker has answered.
    pub(crate) fn cluster_join(
        &self,
        entry: &Arc<ConnEntry>,
        channel: &ChannelName,
        recover: Option<&StreamPosition>,
        reply: Option<Option<CommandId>>,
    ) -> Result<Option<Subscribed>, CommandError> {
        if !self.inner.broker.available_for(channel) {
            entry.channels.lock().remove(channel);
            return Err(unavailable());
        }
        let mut after = After::default();
        let (ch, result) = loop {
            let ch = self.get_or_create(channel);
            let mut guard = ch.state.lock();
            let state = &mut *guard;
            if state.removed {
                continue;
            }
            let wanted =
                !entry.gone.load(std::sync::atomic::Ordering::Relaxed) && entry.channels.lock().contains(channel);
            let cluster = state.cluster.as_mut().expect("clustered");
            if !wanted || cluster.is_pending(entry) {
                break (Arc::clone(&ch), Ok(None));
            }
            if state.subscribers.contains(entry.id()) {
                // Already subscribed: everything since was delivered live.
                let mut result = Subscribed {
                    epoch: state.epoch.to_string(),
                    offset: state.offset,
                    recovered: recover.map(|_| true),
                    missed: recover.map(|_| 0),
                };
                self.send_subscribed(&entry.conn, channel, reply, &mut result, Vec::new());
                break (Arc::clone(&ch), Ok(Some(result)));
            }
            let was_wanted = !state.subscribers.is_empty() || cluster.pending();
            let result = match cluster.link {
                Link::Live => Ok(self.admit(&ch, state, entry, reply, recover, &mut after)),
                Link::Subscribing | Link::Repairing => {
                    cluster.waiting.push(Waiting { entry: Arc::clone(entry), reply, recover: recover.cloned() });
                    Ok(None)
                }
                Link::Stale => Err(unavailable()),
            };
            if result.is_err() {
                entry.channels.lock().remove(channel);
            }
            after.interest = !was_wanted;
            break (Arc::clone(&ch), result);
        };
        self.run_after(&ch, after);
        result
    }

    /// Takes a connection out of a clustered channel: subscribed or still waiting.
    pub(crate) fn cluster_leave(&self, entry: &ConnEntry, channel: &ChannelName) {
        let Some(ch) = self.lookup(channel) else { return };
        let mut after = After::default();
        {
            let mut guard = ch.state.lock();
            let state = &mut *guard;
            let id = entry.id();
            if state.removed {
                return;
            }
            if state.subscribers.remove(id) {
                self.inner.stats.subscriptions.sub(1);
                if ch.policy.join_leave {
                    let frame = ServerMessage::Leave { channel: channel.clone(), client: entry.client_info() }.encode();
                    self.fan_out(state, &frame, ch.policy.slow_consumer);
                }
                after.left.push(entry.client_info());
            } else if let Some(cluster) = state.cluster.as_mut() {
                cluster.waiting.retain(|w| w.entry.id() != id);
                cluster.recovering.retain(|r| r.entry.id() != id);
            }
            if state.subscribers.is_empty() && !state.cluster.as_ref().is_some_and(|c| c.pending()) {
                after.maybe_idle = true;
            }
        }
        self.run_after(&ch, after);
    }

    /// The channel went live: admit the waiting subscribers, then deliver what was held.
    fn go_live(&self, ch: &Arc<Channel>, state: &mut ChannelState, after: &mut After) {
        let cluster = state.cluster.as_mut().expect("clustered");
        cluster.link = Link::Live;
        let held = mem::take(&mut cluster.held);
        let overflow = mem::take(&mut cluster.held_overflow);
        let waiting = mem::take(&mut cluster.waiting);
        for w in waiting {
            if w.entry.gone.load(std::sync::atomic::Ordering::Relaxed) || !w.entry.channels.lock().contains(&ch.name) {
                continue;
            }
            let _ = self.admit(ch, state, &w.entry, w.reply, w.recover.as_ref(), after);
        }
        if overflow {
            self.flag(ch, state, after);
            return;
        }
        for h in held {
            self.on_live(ch, state, h, after);
        }
    }

    /// Adds a subscriber to a live channel, or starts reading its missed range. `Some` when it is done.
    fn admit(
        &self,
        ch: &Arc<Channel>,
        state: &mut ChannelState,
        entry: &Arc<ConnEntry>,
        reply: Option<Option<CommandId>>,
        recover: Option<&StreamPosition>,
        after: &mut After,
    ) -> Option<Subscribed> {
        let top = state.offset;
        if let Some(pos) = recover {
            let gap = top.saturating_sub(pos.offset);
            let readable = *pos.epoch == *state.epoch
                && pos.offset < top
                && ch.policy.history_size > 0
                && usize::try_from(gap).is_ok_and(|g| g <= self.inner.config.max_recovery_messages);
            if readable {
                let cluster = state.cluster.as_mut().expect("clustered");
                let token = cluster.next_token;
                cluster.next_token += 1;
                cluster.recovering.push(Recovering {
                    token,
                    entry: Arc::clone(entry),
                    reply,
                    from: pos.offset,
                    upto: top,
                    frames: Vec::new(),
                    overflow: false,
                });
                let request = HistoryRequest {
                    channel: ch.name.clone(),
                    since: Some(pos.clone()),
                    limit: usize::try_from(gap).unwrap_or(usize::MAX),
                };
                after.reads.push((request, ReadFor::Recovery(token)));
                return None;
            }
        }
        let recovered = recover.map(|pos| *pos.epoch == *state.epoch && pos.offset == top);
        let mut result =
            Subscribed { epoch: state.epoch.to_string(), offset: top, recovered, missed: recovered.map(|_| 0) };
        self.send_subscribed(&entry.conn, &ch.name, reply, &mut result, Vec::new());
        self.add_subscriber(ch, state, entry, after);
        Some(result)
    }

    fn add_subscriber(&self, ch: &Channel, state: &mut ChannelState, entry: &ConnEntry, after: &mut After) {
        let added = state.subscribers.insert(Subscriber {
            id: entry.id(),
            conn: Arc::clone(&entry.conn),
            user_id: entry.identity().user_id.clone(),
        });
        if !added {
            return;
        }
        self.inner.stats.subscriptions.add(1);
        if ch.policy.join_leave {
            let frame = ServerMessage::Join { channel: ch.name.clone(), client: entry.client_info() }.encode();
            self.fan_out(state, &frame, ch.policy.slow_consumer);
        }
        after.joined.push(entry.client_info());
    }

    /// One live publication on a clustered channel: deliver, drop as a duplicate, hold, or start a repair.
    fn on_live(&self, ch: &Arc<Channel>, state: &mut ChannelState, held: Held, after: &mut After) {
        let cluster = state.cluster.as_mut().expect("clustered");
        if cluster.link != Link::Live {
            if cluster.held.len() >= MAX_HELD {
                cluster.held_overflow = true;
            } else {
                cluster.held.push(held);
            }
            return;
        }
        let same_epoch = *held.epoch == *state.epoch;
        if same_epoch && held.publication.offset <= state.offset {
            return; // Delivered already.
        }
        if same_epoch && held.publication.offset == state.offset + 1 {
            self.deliver_live(ch, state, &held.publication);
            return;
        }
        // A skip, or another epoch: read what was missed while holding what comes next.
        let since = StreamPosition { epoch: state.epoch.to_string(), offset: state.offset };
        let cluster = state.cluster.as_mut().expect("clustered");
        cluster.link = Link::Repairing;
        cluster.held.push(held);
        let request = HistoryRequest { channel: ch.name.clone(), since: Some(since), limit: MAX_REPAIR };
        after.reads.push((request, ReadFor::Repair));
    }

    fn deliver_live(&self, ch: &Channel, state: &mut ChannelState, publication: &Publication) {
        let frame = publication.encode();
        self.fan_out(state, &frame, ch.policy.slow_consumer);
        state.offset = publication.offset;
        let limit = self.inner.config.max_recovery_messages;
        for r in &mut state.cluster.as_mut().expect("clustered").recovering {
            if r.frames.len() >= limit {
                r.overflow = true;
            } else {
                r.frames.push((publication.offset, frame.clone()));
            }
        }
    }

    /// The broker reported a live channel's position: repair a gap it shows, flag a changed epoch.
    fn check_position(&self, ch: &Arc<Channel>, state: &mut ChannelState, pos: &Position, after: &mut After) {
        if *pos.epoch != *state.epoch {
            self.flag(ch, state, after);
        } else if pos.offset > state.offset {
            let since = StreamPosition { epoch: state.epoch.to_string(), offset: state.offset };
            state.cluster.as_mut().expect("clustered").link = Link::Repairing;
            let request = HistoryRequest { channel: ch.name.clone(), since: Some(since), limit: MAX_REPAIR };
            after.reads.push((request, ReadFor::Repair));
        }
    }

    /// Drops every subscriber with `unsubscribed` / `insufficient_state` / `resubscribe: true`, and starts
    /// over from a fresh position for whoever still waits.
    fn flag(&self, ch: &Arc<Channel>, state: &mut ChannelState, after: &mut After) {
        let notice = ServerMessage::Unsubscribed {
            id: None,
            channel: ch.name.clone(),
            reason: Some(UnsubscribeReason::InsufficientState),
            resubscribe: true,
        }
        .encode();
        let subscribers: Vec<ConnIdAndConn> =
            state.subscribers.iter().map(|s| (s.id, Arc::clone(&s.conn), s.client_info())).collect();
        for (id, conn, client) in subscribers {
            state.subscribers.remove(id);
            self.inner.stats.subscriptions.sub(1);
            if let Some(entry) = self.entry(id) {
                entry.channels.lock().remove(&ch.name);
            }
            let _ = self.deliver_one(&conn, &notice, ch.policy.slow_consumer);
            after.left.push(client);
        }
        self.inner.stats.gaps_flagged.add(1);
        let cluster = state.cluster.as_mut().expect("clustered");
        cluster.link = Link::Subscribing;
        cluster.held.clear();
        cluster.held_overflow = false;
        // Whoever was mid-recovery waits for the fresh position and is admitted from it.
        for r in mem::take(&mut cluster.recovering) {
            let recover = Some(StreamPosition { epoch: state.epoch.to_string(), offset: r.from });
            cluster.waiting.push(Waiting { entry: r.entry, reply: r.reply, recover });
        }
        state.epoch = Arc::from("");
        state.offset = 0;
        // Ask the broker for the position again; with nobody left the channel goes idle instead.
        after.interest = true;
        after.maybe_idle = !state.cluster.as_ref().is_some_and(|c| c.pending());
    }

    fn finish_repair(&self, channel: &ChannelName, result: Result<HistoryReply, BrokerError>) {
        let Some(ch) = self.lookup(channel) else { return };
        let mut after = After::default();
        {
            let mut guard = ch.state.lock();
            let state = &mut *guard;
            let Some(cluster) = state.cluster.as_mut() else { return };
            if cluster.link != Link::Repairing {
                return;
            }
            let held = mem::take(&mut cluster.held);
            let overflow = mem::take(&mut cluster.held_overflow);
            let run = match result {
                Ok(reply) if *reply.position.epoch == *state.epoch && !overflow => {
                    let mut run: Vec<Publication> = reply.publications;
                    run.extend(held.into_iter().filter(|h| *h.epoch == *state.epoch).map(|h| h.publication));
                    run.retain(|p| p.offset > state.offset);
                    run.sort_by_key(|p| p.offset);
                    run.dedup_by_key(|p| p.offset);
                    let consecutive = run.iter().zip(state.offset + 1..).all(|(p, want)| p.offset == want);
                    let reaches = run.last().map_or(state.offset, |p| p.offset) >= reply.position.offset;
                    (consecutive && reaches).then_some(run)
                }
                _ => None,
            };
            match run {
                Some(run) => {
                    self.inner.stats.gaps_filled.add(1);
                    state.cluster.as_mut().expect("clustered").link = Link::Live;
                    for p in &run {
                        self.deliver_live(&ch, state, p);
                    }
                    // Whoever arrived during the repair is admitted now.
                    self.go_live(&ch, state, &mut after);
                }
                None => self.flag(&ch, state, &mut after),
            }
        }
        self.run_after(&ch, after);
    }

    fn finish_recovery(&self, channel: &ChannelName, token: u64, result: Result<HistoryReply, BrokerError>) {
        let Some(ch) = self.lookup(channel) else { return };
        let mut after = After::default();
        {
            let mut guard = ch.state.lock();
            let state = &mut *guard;
            let Some(cluster) = state.cluster.as_mut() else { return };
            let Some(i) = cluster.recovering.iter().position(|r| r.token == token) else { return };
            let r = cluster.recovering.remove(i);
            if r.entry.gone.load(std::sync::atomic::Ordering::Relaxed) || !r.entry.channels.lock().contains(channel) {
                after.maybe_idle = state.subscribers.is_empty() && !cluster.pending();
            } else {
                let replay = match result {
                    Ok(reply) if *reply.position.epoch == *state.epoch && !r.overflow => {
                        recovered_frames(&r, reply.publications, state.offset)
                    }
                    _ => None,
                };
                let limits = (self.inner.config.max_recovery_messages, self.inner.config.max_recovery_bytes);
                let replay = replay.filter(|frames| crate::subscriptions::fits(frames, limits));
                let mut result = Subscribed {
                    epoch: state.epoch.to_string(),
                    offset: state.offset,
                    recovered: Some(replay.is_some()),
                    missed: Some(replay.as_ref().map_or(0, |f| f.len() as u64)),
                };
                self.send_subscribed(&r.entry.conn, channel, r.reply, &mut result, replay.unwrap_or_default());
                self.add_subscriber(&ch, state, &r.entry, &mut after);
            }
        }
        self.run_after(&ch, after);
    }

    fn reply_conn(&self, conn: &Arc<dyn crate::Conn>, msg: &ServerMessage) {
        let policy = self.inner.config.namespaces.default_policy().slow_consumer;
        let _ = self.deliver_one(conn, &msg.encode(), policy);
    }

    /// Applies a control command here and has every other node apply it too.
    pub(crate) fn control(&self, command: Control) {
        if self.inner.clustered {
            self.inner.broker.control(command);
        }
    }
}

type ConnIdAndConn = (crate::ConnId, Arc<dyn crate::Conn>, ClientInfo);

/// The frames a recovery replays: the read range `(from, upto]` then the live frames since, provided
/// together they are every offset up to `top`.
fn recovered_frames(r: &Recovering, publications: Vec<Publication>, top: u64) -> Option<Vec<Bytes>> {
    let mut frames = Vec::new();
    let mut next = r.from + 1;
    for p in publications {
        if p.offset < next || p.offset > r.upto {
            continue;
        }
        if p.offset != next {
            return None;
        }
        frames.push(p.encode());
        next += 1;
    }
    if next != r.upto + 1 {
        return None;
    }
    for (offset, frame) in &r.frames {
        if *offset < next {
            continue;
        }
        if *offset != next {
            return None;
        }
        frames.push(frame.clone());
        next += 1;
    }
    (next == top + 1).then_some(frames)
}
