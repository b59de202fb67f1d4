//! ws-hub's Redis broker: several `ws-server` nodes on one Redis behave as one hub.
//!
//! [`RedisBroker`] implements [`ws_core::Broker`] as a clustered broker: Redis is the single sequencer of
//! every channel.
//!
//! - **Publishing** is a Lua script: for each channel it reads or creates the epoch, numbers the
//!   publications, appends them to the channel's history stream (length cap, TTL) and publishes them in
//!   one envelope, atomically. Publications that queue up together (many channels, many per channel) share
//!   one script call, so under load Redis pays the script's fixed costs once per batch rather than once per
//!   message. Every node, the origin too, delivers in the order Redis publishes, so offsets are
//!   consecutive and in one order everywhere. Requests go out in pipelines on one connection, a few in
//!   flight, completed in the order they were sent, so what one connection publishes keeps its order, and
//!   so do its replies.
//! - **Subscribing** is per channel, on demand: SUBSCRIBE on the first local subscriber and UNSUBSCRIBE
//!   after the last, over `pubsub_connections` dedicated connections chosen by an FNV-1a hash of the
//!   channel name, batched when many channels come and go at once; never a pattern subscription to
//!   everything. Only once Redis confirms the subscription is the channel's position read and reported
//!   to the hub, which then answers `subscribed`.
//! - **Reconnecting** is the broker's job: a pub/sub connection that drops is opened again and every
//!   channel it carried is subscribed again and its position reported, so the hub fills the gap from the
//!   stream or flags it. While a connection is down, [`ws_core::Broker::available`] is false and the hub
//!   answers `unavailable`; [`RedisBroker::status`] says why, for `/readyz`.
//! - **Liveness** comes from probes, not from the socket being open: a pub/sub connection that received
//!   nothing for `probe_interval` sends a PING, and one that gets no answer within `command_timeout` is
//!   deaf (a paused or failed-over Redis) and is opened again; meanwhile the broker reports itself down.
//! - **Presence** is a hash of clients per channel plus a sorted set of lease expiries; this node refreshes
//!   its own members every third of the lease, and every read first drops expired members, so the clients
//!   of a node that died disappear within a lease.
//! - **Control** (disconnects, user sends, broadcasts) and join/leave events travel as envelopes, applied
//!   by the origin before sending and dropped when they come back to it.
//! - **Several servers** ([`RedisConfig::sharded`]): each channel lives on one, chosen by a jump consistent
//!   hash of its name, with its keys and its pub/sub; each server has its own command and pub/sub
//!   connections and tasks, and [`ws_core::Broker::available_for`] answers per channel, so a server down
//!   stops only its channels. Control goes to the first server that is up; every node listens on all.
//! - **TLS**: `rediss://` URLs, over rustls, trusting the system's CAs or [`RedisConfig::tls_root_cert`].
//!
//! Keys, under a prefix (default `ws`) so several clusters can share one Redis; `{...}` is a hash tag that
//! keeps a channel's keys together:
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `<prefix>.meta.{<channel>}` | hash | `e` epoch, `o` latest offset (TTL `meta_ttl`) |
//! | `<prefix>.stream.{<channel>}` | stream | history, entry id = offset, fields `d` data and `ev` event |
//! | `<prefix>.idem.{<channel>}.<key>` | string | the offset a keyed publish got (TTL: the idempotency window) |
//! | `<prefix>.presence.data.{<channel>}` | hash | conn id to client JSON |
//! | `<prefix>.presence.expire.{<channel>}` | sorted set | conn id scored by lease expiry (ms) |
//! | `<prefix>.ch.<channel>` | pub/sub | the channel's envelopes |
//! | `<prefix>.control` | pub/sub | control envelopes for every node |

mod command;
mod envelope;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod pubsub;
mod scripts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng as _;
use tokio::sync::mpsc;
use ws_core::{Broker, BrokerError, Control, Done, HistoryReply, HistoryRequest, Hub, PublishRequest, WeakHub};
use ws_protocol::{ChannelName, ClientInfo};

use crate::command::Cmd;
use crate::envelope::Dropped;

/// The broker's settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The Redis URLs: `redis://[user][:password@]host[:port][/db]`, or `rediss://` for TLS. With more than
    /// one, channels are spread over them by a consistent hash of their name (see [`RedisBroker::shard_of`]).
    pub urls: Vec<String>,
    /// A PEM bundle of the certificate authorities to trust for `rediss://`, instead of the system's.
    pub tls_root_cert: Option<Vec<u8>>,
    /// The key prefix. Default `ws`.
    pub prefix: String,
    /// This node's id; random per process when `None`.
    pub node_id: Option<String>,
    /// How long a presence entry lives without a refresh. Default 30 s.
    pub presence_lease: Duration,
    /// How many dedicated pub/sub connections carry the channels. Default 2.
    pub pubsub_connections: usize,
    /// How long a request to Redis may take before it answers `timeout`. Default 5 s.
    pub command_timeout: Duration,
    /// How long a channel's epoch and offset live after its last publication. Default 24 h.
    pub meta_ttl: Duration,
    /// A pub/sub connection that received nothing for this long is probed with a PING; one that does not
    /// answer within `command_timeout` is deaf and is opened again. Default 10 s.
    pub probe_interval: Duration,
}

impl RedisConfig {
    /// Settings for the Redis at `url`, the rest default.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self::sharded([url.into()])
    }

    /// Settings for channels spread over the Redis servers at `urls`, the rest default.
    #[must_use]
    pub fn sharded(urls: impl IntoIterator<Item = String>) -> Self {
        Self {
            urls: urls.into_iter().collect(),
            tls_root_cert: None,
            prefix: "ws".into(),
            node_id: None,
            presence_lease: Duration::from_secs(30),
            pubsub_connections: 2,
            command_timeout: Duration::from_secs(5),
            meta_ttl: Duration::from_secs(24 * 3600),
            probe_interval: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redacted(u)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("tls_root_cert", &self.tls_root_cert.as_ref().map(|_| "<pem>"))
            .field("prefix", &self.prefix)
            .field("node_id", &self.node_id)
            .field("presence_lease", &self.presence_lease)
            .field("pubsub_connections", &self.pubsub_connections)
            .field("command_timeout", &self.command_timeout)
            .field("meta_ttl", &self.meta_ttl)
            .field("probe_interval", &self.probe_interval)
            .finish()
    }
}

/// Why the broker could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL does not parse.
    #[error("invalid Redis URL {url:?}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// What the `redis` crate said.
        source: redis::RedisError,
    },
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Whether the broker can serve, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStatus {
    /// Every connection to every Redis is up.
    pub up: bool,
    /// What is down, when something is.
    pub reason: Option<String>,
    /// Each Redis server, in configuration order: its URL without the password, and whether every
    /// connection to it is up.
    pub instances: Vec<(String, bool)>,
}

/// Counters, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Envelopes dropped, by reason (`malformed`, `oversized`, `unknown_version`, `own_echo`).
    pub dropped: Vec<(&'static str, u64)>,
    /// Channels subscribed again after a pub/sub connection came back.
    pub resubscriptions: u64,
    /// Times a connection to Redis was (re)established.
    pub connects: u64,
    /// Liveness probes of pub/sub connections that got no answer.
    pub probe_failures: u64,
}

/// One link's state: the command connection is link 0, pub/sub connection `i` is link `i + 1`.
#[derive(Debug)]
struct LinkState {
    up: AtomicBool,
    reason: Mutex<Option<String>>,
}

/// One Redis server and this node's connections to it: one command connection and `pubsub_connections`
/// pub/sub connections, each run by its own task.
pub(crate) struct Shard {
    /// The URL without its password.
    url: String,
    pub(crate) client: redis::Client,
    pub(crate) commands: mpsc::UnboundedSender<Cmd>,
    interest: Vec<mpsc::UnboundedSender<ChannelName>>,
    links: Vec<LinkState>,
}

impl Shard {
    fn up(&self) -> bool {
        self.links.iter().all(|l| l.up.load(Relaxed))
    }
}

/// What the broker's tasks share.
pub(crate) struct Shared {
    config: RedisConfig,
    node: String,
    hub: OnceLock<WeakHub>,
    pub(crate) shards: Vec<Shard>,
    dropped: [AtomicU64; 4],
    resubscriptions: AtomicU64,
    connects: AtomicU64,
    pub(crate) probe_failures: AtomicU64,
    /// From handing a publication to the command task to Redis's answer.
    pub(crate) publish_latency: ws_core::DelayHistogram,
}

impl Shared {
    pub(crate) fn hub(&self) -> Option<Hub> {
        self.hub.get().and_then(WeakHub::upgrade)
    }

    fn key(&self, kind: &str, channel: &ChannelName) -> String {
        format!("{}.{kind}.{{{channel}}}", self.config.prefix)
    }
    pub(crate) fn meta_key(&self, channel: &ChannelName) -> String {
        self.key("meta", channel)
    }
    pub(crate) fn stream_key(&self, channel: &ChannelName) -> String {
        self.key("stream", channel)
    }
    pub(crate) fn presence_keys(&self, channel: &ChannelName) -> (String, String) {
        (self.key("presence.data", channel), self.key("presence.expire", channel))
    }
    pub(crate) fn idempotency_key(&self, channel: &ChannelName, key: &str) -> String {
        format!("{}.idem.{{{channel}}}.{key}", self.config.prefix)
    }
    pub(crate) fn channel_key(&self, channel: &ChannelName) -> String {
        format!("{}.ch.{channel}", self.config.prefix)
    }
    pub(crate) fn channel_of(&self, key: &str) -> Option<ChannelName> {
        let name = key.strip_prefix(&self.config.prefix)?.strip_prefix(".ch.")?;
        ChannelName::new(name).ok()
    }
    pub(crate) fn control_key(&self) -> String {
        format!("{}.control", self.config.prefix)
    }

    /// The Redis server and the pub/sub connection to it that carry a channel: the server by a jump
    /// consistent hash of the channel name's FNV-1a hash, the connection by the hash's high half.
    pub(crate) fn route(&self, channel: &ChannelName) -> (usize, usize) {
        let h = fnv1a64(channel.as_str());
        let shard = jump_hash(h, self.shards.len());
        (shard, ((h >> 32) % self.config.pubsub_connections as u64) as usize)
    }

    /// The Redis server that holds a channel.
    pub(crate) fn shard_for(&self, channel: &ChannelName) -> &Shard {
        &self.shards[self.route(channel).0]
    }

    /// Where control envelopes go: every node listens for them on every server, so the first server that
    /// is up will do.
    fn control_shard(&self) -> &Shard {
        self.shards.iter().find(|s| s.up()).unwrap_or(&self.shards[0])
    }

    /// Records a link of `shard` going up or down, logging the change once.
    pub(crate) fn set_link(&self, shard: usize, link: usize, state: Result<(), String>) {
        let s = &self.shards[shard];
        let l = &s.links[link];
        let name = if link == 0 { "command".to_owned() } else { format!("pub/sub {}", link - 1) };
        match state {
            Ok(()) => {
                if !l.up.swap(true, Relaxed) {
                    self.connects.fetch_add(1, Relaxed);
                    tracing::info!(link = %name, url = %s.url, "redis connection up");
                }
                *l.reason.lock() = None;
            }
            Err(reason) => {
                let was_up = l.up.swap(false, Relaxed);
                let mut r = l.reason.lock();
                if was_up || r.is_none() {
                    tracing::warn!(link = %name, url = %s.url, %reason, "redis connection down");
                }
                let at = if self.shards.len() > 1 { format!(" to {}", s.url) } else { String::new() };
                *r = Some(format!("redis {name} connection{at}: {reason}"));
            }
        }
    }

    pub(crate) fn count_dropped(&self, why: Dropped) {
        let i = Dropped::ALL.iter().position(|d| *d == why).unwrap_or(0);
        self.dropped[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.config.command_timeout
    }
}

/// The receivers of one shard's tasks.
type Receivers = (mpsc::UnboundedReceiver<Cmd>, Vec<mpsc::UnboundedReceiver<ChannelName>>);

/// The Redis broker. Build it with [`RedisBroker::new`] inside a tokio runtime, hand it to
/// [`ws_core::HubBuilder::broker`]; its tasks start when the hub attaches and end when the hub is dropped.
pub struct RedisBroker {
    shared: Arc<Shared>,
    /// The tasks' receivers, per shard, until `attach` starts the tasks.
    receivers: Mutex<Option<Vec<Receivers>>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker").field("node", &self.shared.node).field("status", &self.status()).finish()
    }
}

impl RedisBroker {
    /// A broker for `config`; it connects once attached to a hub, and keeps retrying with backoff.
    ///
    /// # Errors
    /// When a URL does not parse or a setting is out of range.
    pub fn new(config: RedisConfig) -> Result<Self, ConfigError> {
        if config.urls.is_empty() {
            return Err(ConfigError::Invalid("the broker needs at least one Redis URL".into()));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = config.urls.iter().find(|u| !seen.insert(u.as_str())) {
            return Err(ConfigError::Invalid(format!("Redis URL {} is listed twice", redacted(dup))));
        }
        let clients = config
            .urls
            .iter()
            .map(|url| client(url, config.tls_root_cert.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        if config.prefix.is_empty() || config.prefix.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid(format!(
                "broker prefix {:?} must be non-empty and without spaces",
                config.prefix
            )));
        }
        if !(1..=64).contains(&config.pubsub_connections) {
            return Err(ConfigError::Invalid(format!(
                "broker pubsub_connections is {}; it must be between 1 and 64",
                config.pubsub_connections
            )));
        }
        if config.probe_interval < Duration::from_millis(100) {
            return Err(ConfigError::Invalid("broker probe_interval_ms must be at least 100".into()));
        }
        if config.presence_lease < Duration::from_millis(300) {
            return Err(ConfigError::Invalid("broker presence_lease_ms must be at least 300".into()));
        }
        let node = config.node_id.clone().unwrap_or_else(random_node_id);
        let mut shards = Vec::with_capacity(clients.len());
        let mut receivers = Vec::with_capacity(clients.len());
        for (url, client) in config.urls.iter().zip(clients) {
            let (commands, command_rx) = mpsc::unbounded_channel();
            let (interest, interest_rx): (Vec<_>, Vec<_>) =
                (0..config.pubsub_connections).map(|_| mpsc::unbounded_channel()).unzip();
            let links = (0..=config.pubsub_connections)
                .map(|_| LinkState {
                    up: AtomicBool::new(false),
                    reason: Mutex::new(Some(format!("connecting to {}", redacted(url)))),
                })
                .collect();
            shards.push(Shard { url: redacted(url), client, commands, interest, links });
            receivers.push((command_rx, interest_rx));
        }
        let shared = Arc::new(Shared {
            config,
            node,
            hub: OnceLock::new(),
            shards,
            dropped: Default::default(),
            resubscriptions: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            probe_failures: AtomicU64::new(0),
            publish_latency: ws_core::DelayHistogram::default(),
        });
        Ok(Self { shared, receivers: Mutex::new(Some(receivers)) })
    }

    /// This node's id, as the broker names it to other nodes.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.shared.node
    }

    /// The 24-bit connection id prefix for this node: an FNV-1a hash of its id. Two nodes of one cluster
    /// collide with a chance of about n²/2²⁵ for n nodes (one in 300,000 for ten); configure distinct
    /// `node_id`s to rule it out.
    #[must_use]
    pub fn conn_id_prefix(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.shared.node.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        (h >> 8) ^ (h & 0xff)
    }

    /// Whether every connection to Redis is up, and what is down if not.
    #[must_use]
    pub fn status(&self) -> BrokerStatus {
        let shards = &self.shared.shards;
        let reasons: Vec<String> =
            shards.iter().flat_map(|s| &s.links).filter_map(|l| l.reason.lock().clone()).collect();
        BrokerStatus {
            up: shards.iter().all(Shard::up),
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
            instances: shards.iter().map(|s| (s.url.clone(), s.up())).collect(),
        }
    }

    /// The Redis server (its index in [`RedisConfig::urls`]) that holds `channel`.
    #[must_use]
    pub fn shard_of(&self, channel: &ChannelName) -> usize {
        self.shared.route(channel).0
    }

    /// Publish latency to Redis: from the publication reaching the broker to Redis's answer.
    #[must_use]
    pub fn publish_latency(&self) -> &ws_core::DelayHistogram {
        &self.shared.publish_latency
    }

    /// The broker's counters.
    #[must_use]
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            dropped: Dropped::ALL
                .iter()
                .zip(&self.shared.dropped)
                .map(|(d, n)| (d.as_str(), n.load(Relaxed)))
                .collect(),
            resubscriptions: self.shared.resubscriptions.load(Relaxed),
            connects: self.shared.connects.load(Relaxed),
            probe_failures: self.shared.probe_failures.load(Relaxed),
        }
    }

    /// Hands a request to the command task of the server it belongs to.
    fn send(&self, cmd: Cmd) {
        let shard = match cmd.channel() {
            Some(channel) => self.shared.shard_for(channel),
            None => self.shared.control_shard(),
        };
        shard.send(&self.shared, cmd);
    }
}

impl Shard {
    pub(crate) fn send(&self, shared: &Shared, cmd: Cmd) {
        // The command task lives as long as the hub; after it ended, the request is answered here.
        if let Err(mpsc::error::SendError(cmd)) = self.commands.send(cmd) {
            cmd.fail(shared, &BrokerError::Unavailable("the broker has stopped".into()));
        }
    }
}

impl Broker for RedisBroker {
    fn clustered(&self) -> bool {
        true
    }

    fn attach(&self, hub: WeakHub) {
        if self.shared.hub.set(hub).is_err() {
            tracing::error!("a RedisBroker serves one hub; this one is attached already");
            return;
        }
        let Some(receivers) = self.receivers.lock().take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("RedisBroker must be attached inside a tokio runtime; it will not connect");
            return;
        };
        for (shard, (command_rx, interest_rx)) in receivers.into_iter().enumerate() {
            runtime.spawn(command::run(Arc::clone(&self.shared), shard, command_rx));
            for (index, rx) in interest_rx.into_iter().enumerate() {
                runtime.spawn(pubsub::run(Arc::clone(&self.shared), shard, index, rx));
            }
        }
    }

    fn available(&self) -> bool {
        self.shared.shards.iter().all(Shard::up)
    }

    fn available_for(&self, channel: &ChannelName) -> bool {
        self.shared.shard_for(channel).up()
    }

    fn interest_changed(&self, channel: &ChannelName) {
        let (shard, conn) = self.shared.route(channel);
        let _ = self.shared.shards[shard].interest[conn].send(channel.clone());
    }

    fn publish(&self, request: PublishRequest, done: Done<u64>) {
        self.send(Cmd::Publish(request, done, std::time::Instant::now()));
    }

    fn history(&self, request: HistoryRequest, done: Done<HistoryReply>) {
        self.send(Cmd::Read(request, done));
    }

    fn presence(&self, channel: &ChannelName, done: Done<Vec<ClientInfo>>) {
        self.send(Cmd::Presence(channel.clone(), done));
    }

    fn joined(&self, channel: &ChannelName, client: &ClientInfo, presence: bool, join_leave: bool) {
        if presence || join_leave {
            self.send(Cmd::Member {
                channel: channel.clone(),
                client: client.clone(),
                joined: true,
                presence,
                join_leave,
            });
        }
    }

    fn left(&self, channel: &ChannelName, client: &ClientInfo, presence: bool, join_leave: bool) {
        if presence || join_leave {
            self.send(Cmd::Member {
                channel: channel.clone(),
                client: client.clone(),
                joined: false,
                presence,
                join_leave,
            });
        }
    }

    fn control(&self, command: Control) {
        self.send(Cmd::Control(command));
    }
}

/// Opens a client for one Redis URL, trusting `root_cert` (PEM) for `rediss://` when given.
fn client(url: &str, root_cert: Option<&[u8]>) -> Result<redis::Client, ConfigError> {
    use redis::IntoConnectionInfo as _;
    let invalid = |source| ConfigError::Url { url: redacted(url), source };
    if root_cert.is_some() && !url.starts_with("rediss://") {
        return Err(ConfigError::Invalid(format!(
            "a TLS certificate authority is configured but {} is not a rediss:// URL",
            redacted(url)
        )));
    }
    // Without TCP_NODELAY, a pipeline sent while another is out waits for the first one's ACK.
    let info = url.into_connection_info().map_err(invalid)?;
    let info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    match root_cert {
        None => redis::Client::open(info).map_err(invalid),
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) },
        )
        .map_err(invalid),
    }
}

/// FNV-1a, 64 bits.
fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Jump consistent hash (Lamping and Veach, 2014): a bucket in `0..buckets` for `key`, such that going from
/// n to n + 1 buckets moves only about 1/(n + 1) of the keys, all to the new bucket.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// A random node id: 12 lowercase letters and digits.
fn random_node_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

/// A fresh epoch: 8 random letters.
pub(crate) fn random_epoch() -> String {
    let mut rng = rand::rng();
    (0..8).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

/// The URL without its password, for logs and errors.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Exponential backoff with full jitter, 100 ms doubling to 5 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { attempt: 0 }
    }
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
    pub(crate) fn next_delay(&mut self) -> Duration {
        let cap = 100u64.saturating_mul(1 << self.attempt.min(6)).min(5_000);
        self.attempt += 1;
        Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_settings_checked() {
        assert_eq!(redacted("redis://user:secret@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redacted("redis://host"), "redis://host");
        let mut c = RedisConfig::new("redis://127.0.0.1:1");
        c.pubsub_connections = 0;
        assert!(matches!(RedisBroker::new(c), Err(ConfigError::Invalid(_))));
        assert!(matches!(RedisBroker::new(RedisConfig::new("nope://")), Err(ConfigError::Url { .. })));
        let b = RedisBroker::new(RedisConfig::new("redis://127.0.0.1:1")).unwrap();
        assert_eq!(b.node_id().len(), 12);
        assert!(b.conn_id_prefix() < 1 << 24);
        assert!(!b.status().up);
        let twice = RedisConfig::sharded(["redis://a".to_owned(), "redis://a".to_owned()]);
        assert!(matches!(RedisBroker::new(twice), Err(ConfigError::Invalid(_))));
        assert!(matches!(RedisBroker::new(RedisConfig::sharded([])), Err(ConfigError::Invalid(_))));
        let mut plain_with_ca = RedisConfig::new("redis://127.0.0.1:1");
        plain_with_ca.tls_root_cert = Some(b"pem".to_vec());
        assert!(matches!(RedisBroker::new(plain_with_ca), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn channels_spread_over_servers_and_move_little_when_one_is_added() {
        let names: Vec<String> = (0..10_000).map(|i| format!("room:{i}")).collect();
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for name in &names {
            let h = fnv1a64(name);
            let (two, three) = (jump_hash(h, 2), jump_hash(h, 3));
            assert!(two < 2 && three < 3);
            assert_eq!(jump_hash(h, 1), 0);
            counts[three] += 1;
            if two != three {
                // Going from two servers to three only ever moves a channel to the new one.
                assert_eq!(three, 2);
                moved += 1;
            }
        }
        for c in counts {
            assert!((3_000..3_700).contains(&c), "uneven spread: {counts:?}");
        }
        assert!((3_000..3_700).contains(&moved), "{moved} of 10000 moved");
    }
}
