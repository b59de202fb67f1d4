//! `Config`: every setting of `ws-server`, loaded from defaults, a TOML file, `WS_SERVER_` environment variables and flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use ws_core::ws_protocol::PROCESS_NAMESPACE;
use ws_core::{NamespaceConfig, Namespaces};

/// The prefix of environment variables; nested keys are joined with `__`
/// (`WS_SERVER_LIMITS__MAX_CONNECTIONS=5000`).
pub const ENV_PREFIX: &str = "WS_SERVER_";

/// The whole configuration. Every section and key has a default; unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Address to serve HTTP and WebSocket on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Tokio worker threads; 0 means one per core. Default 0.
    pub workers: usize,
    /// Endpoint paths.
    pub paths: PathsConfig,
    /// Origins allowed to open WebSockets (exact `scheme://host[:port]`); empty allows the same host and clients that send no Origin. Default empty.
    pub allowed_origins: Vec<String>,
    /// Connection and message limits.
    pub limits: LimitsConfig,
    /// Heartbeats.
    pub heartbeat: HeartbeatConfig,
    /// Per-connection send queue.
    pub queue: QueueConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// The default namespace's policy (channels with no `:`, and namespaces not listed).
    pub namespace: NamespaceConfig,
    /// Named namespaces: `[namespaces.chat]`. Default: `process` (see [`process_namespace`]).
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// TLS.
    pub tls: TlsConfig,
    /// The HTTP API for backends.
    pub api: ApiConfig,
    /// The raw relay endpoint.
    pub relay: RelayConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Graceful drain on SIGTERM/SIGINT.
    pub drain: DrainConfig,
    /// The broker that joins several nodes into one cluster (Redis); off by default: one node, in memory.
    pub broker: BrokerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            paths: PathsConfig::default(),
            allowed_origins: Vec::new(),
            limits: LimitsConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            queue: QueueConfig::default(),
            auth: AuthConfig::default(),
            namespace: NamespaceConfig::default(),
            namespaces: BTreeMap::from([(PROCESS_NAMESPACE.to_owned(), process_namespace())]),
            tls: TlsConfig::default(),
            api: ApiConfig::default(),
            relay: RelayConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            drain: DrainConfig::default(),
            broker: BrokerConfig::default(),
        }
    }
}

/// The default policy of the `process` namespace, where backends stream processes (`process:{id}`): the last
/// 1,000 lines of each process are kept for an hour, so a client that joins late reads them with `history`, and
/// clients may not publish (only backends do, through the API or the hub). A `[namespaces.process]` section
/// changes the keys it names and keeps these for the others.
#[must_use]
pub fn process_namespace() -> NamespaceConfig {
    NamespaceConfig::default().allow_publish(false).history(1000, 3_600_000)
}

/// Endpoint paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PathsConfig {
    /// The hub's WebSocket endpoint. Default `/ws`.
    pub ws: String,
    /// Prefix of the relay endpoint; rooms are `{relay}/{room}`. Default `/relay`.
    pub relay: String,
    /// Serve the demo page at `/`. Default true.
    pub demo: bool,
}

impl Default for PathsConfig {
    fn default() -> Self {
        Self { ws: "/ws".into(), relay: "/relay".into(), demo: true }
    }
}

/// Connection and message limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Most connections at once; more get 503. Default 100,000.
    pub max_connections: usize,
    /// Most connections from one IP address; more get 503. Default 1,000.
    pub max_connections_per_ip: usize,
    /// Largest message, summed over its fragments; larger closes with 1009. Default 65,536.
    pub max_message_bytes: usize,
    /// Most fragments in one message; more closes with 1009. Default 128.
    pub max_fragments: usize,
    /// Largest request head of the upgrade. Default 16,384.
    pub max_header_bytes: usize,
    /// Time for a client to complete the HTTP upgrade. Default 10,000 ms.
    pub handshake_timeout_ms: u64,
    /// Time a write to a client may take before the client is dropped. Default 10,000 ms.
    pub write_timeout_ms: u64,
    /// Messages a connection may send per second, on average. Default 100.
    pub rate_per_sec: u32,
    /// Messages a connection may send in a burst; keep it above `max_channels_per_conn`, so a client that
    /// reconnects can resubscribe to every channel at once. Default 2,048.
    pub rate_burst: u32,
    /// Most channels one connection may subscribe to. Default 1,024.
    pub max_channels_per_conn: usize,
    /// Most bytes of in-memory history over every channel together (one node); past it the least recently
    /// written histories are evicted and their channels get a new epoch. Default 134,217,728 (128 MiB).
    pub max_history_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            max_message_bytes: 64 * 1024,
            max_fragments: 128,
            max_header_bytes: 16 * 1024,
            handshake_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            rate_per_sec: 100,
            rate_burst: 2048,
            max_channels_per_conn: 1024,
            max_history_bytes: 128 * 1024 * 1024,
        }
    }
}

/// Heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HeartbeatConfig {
    /// How often the server pings each client. Default 25,000 ms.
    pub interval_ms: u64,
    /// Close with 4001 when nothing arrives for this long. Default 60,000 ms.
    pub pong_timeout_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self { interval_ms: 25_000, pong_timeout_ms: 60_000 }
    }
}

/// The per-connection send queue; overflowing it applies the namespace's slow-consumer policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Most queued messages. Default 1,024.
    pub messages: usize,
    /// Most queued bytes. Default 4 MiB.
    pub bytes: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { messages: 1024, bytes: 4 * 1024 * 1024 }
    }
}

/// Client authentication. A connection with no token is anonymous when `anonymous` is on; a token is
/// tried as an API key, then as a JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Accept connections without a token, as anonymous. Default true.
    pub anonymous: bool,
    /// Static client tokens: key to user id. Default empty.
    pub api_keys: BTreeMap<String, String>,
    /// JWT verification; off when `algorithm` is empty.
    pub jwt: JwtConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { anonymous: true, api_keys: BTreeMap::new(), jwt: JwtConfig::default() }
    }
}

/// JWT verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct JwtConfig {
    /// `HS256`, `RS256` or `ES256`; empty turns JWT off. Default empty.
    pub algorithm: String,
    /// The HS256 shared secret. Default empty.
    pub secret: String,
    /// PEM public key file for RS256 or ES256. Default empty.
    pub public_key_file: Option<PathBuf>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds. Default 5.
    pub leeway_s: u64,
    /// The `aud` a token must carry; empty accepts any or none. Default empty.
    pub audience: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithm: String::new(),
            secret: String::new(),
            public_key_file: None,
            leeway_s: 5,
            audience: String::new(),
        }
    }
}

/// TLS; on when both files are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM certificate chain file. Default none.
    pub cert: Option<PathBuf>,
    /// PEM private key file. Default none.
    pub key: Option<PathBuf>,
}

/// The HTTP API for backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Keys accepted in `Authorization: apikey <key>`; the API is off while empty. Default empty.
    pub keys: Vec<String>,
    /// Largest request body. Default 1 MiB.
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { keys: Vec::new(), max_body_bytes: 1024 * 1024 }
    }
}

/// The raw relay endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Serve `/relay/{room}`. Default true.
    pub enabled: bool,
    /// Send each frame back to its sender too. Default false.
    pub echo: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self { enabled: true, echo: false }
    }
}

/// Prometheus metrics and the health endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Serve `/metrics`. Default true.
    pub enabled: bool,
    /// A separate admin listener for `/metrics`, `/healthz` and `/readyz`; unset serves them on `listen`. Default unset.
    pub admin_listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, admin_listen: None }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LogConfig {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `ws_transport=debug`. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Graceful drain on SIGTERM/SIGINT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DrainConfig {
    /// On shutdown, `/readyz` answers 503 at once but the server keeps accepting connections for this long,
    /// so load balancers stop routing to it before it refuses anyone; 0 stops accepting at once.
    /// Default 5,000 ms.
    pub ready_delay_ms: u64,
    /// Clients are told to reconnect after a delay spread uniformly over this window. Default 5,000 ms.
    pub window_ms: u64,
    /// Queued messages are flushed within this deadline, then the process exits. Default 10,000 ms.
    pub deadline_ms: u64,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self { ready_delay_ms: 5_000, window_ms: 5_000, deadline_ms: 10_000 }
    }
}

/// The cluster broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// The Redis URL (`redis://[user][:password@]host[:port][/db]`, `rediss://` for TLS); empty runs one node
    /// in memory. Default empty.
    pub redis_url: String,
    /// Several Redis URLs instead of one: channels are spread over them by a consistent hash of their name.
    /// Setting both this and `redis_url` is an error. Default empty.
    pub redis_urls: Vec<String>,
    /// A PEM file of the certificate authorities to trust for `rediss://` URLs, instead of the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// The key prefix, so several clusters can share one Redis. Default `ws`.
    pub prefix: String,
    /// This node's id in the cluster; empty picks a random one per process. Default empty.
    pub node_id: String,
    /// How long a presence entry outlives its node's last refresh. Default 30,000 ms.
    pub presence_lease_ms: u64,
    /// How many dedicated pub/sub connections carry the channels. Default 2.
    pub pubsub_connections: usize,
    /// How long a request to Redis may take before it answers `timeout`. Default 5,000 ms.
    pub command_timeout_ms: u64,
    /// A pub/sub connection quiet for this long is probed; no answer within the command timeout means it is
    /// deaf and is opened again. Default 10,000 ms.
    pub probe_interval_ms: u64,
    /// How long a publish's `idempotency_key` is remembered per channel (also on a single node). Default 300,000 ms.
    pub idempotency_window_ms: u64,
}

impl BrokerConfig {
    /// The Redis URLs, from `redis_url` or `redis_urls`; empty on a single node.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        if self.redis_url.is_empty() {
            self.redis_urls.clone()
        } else {
            vec![self.redis_url.clone()]
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            redis_urls: Vec::new(),
            tls_ca_file: None,
            prefix: "ws".into(),
            node_id: String::new(),
            presence_lease_ms: 30_000,
            pubsub_connections: 2,
            command_timeout_ms: 5_000,
            probe_interval_ms: 10_000,
            idempotency_window_ms: 300_000,
        }
    }
}

/// A configuration that cannot be used; the message names the key, the value and what is allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file, variable or flag could not be read into the configuration (unknown key, wrong type).
    #[error("{0}")]
    Load(String),
    /// A value is of the right type but not allowed.
    #[error("invalid value for `{key}`: {value}: {allowed}")]
    Invalid {
        /// The key, dotted (`limits.max_message_bytes`).
        key: String,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
}

impl Config {
    /// Loads the configuration: defaults, then `file` (when given), then
    /// `WS_SERVER_*` environment variables, then `flags` (a TOML-shaped overlay
    /// of the flags given); later sources win. Then validates it.
    ///
    /// Unknown keys in the file are refused. A variable with no `__` whose name is not a top-level key is
    /// someone else's (Kubernetes sets `WS_SERVER_PORT` and more for a Service named `ws-server`) and is left
    /// out; [`crate::ignored_env_vars`] names them. A variable with `__` and an unknown key is refused.
    ///
    /// # Errors
    /// [`ConfigError`] names the key at fault and where its value came from.
    pub fn load(file: Option<&Path>, flags: &toml::Table) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Load(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        Self::load_over(figment, flags)
    }

    /// Loads the configuration as [`Config::load`] does, with the file's TOML text given rather than read
    /// from a file: defaults, then `toml`, then `WS_SERVER_*` environment variables, then `flags`. Then
    /// validates it.
    ///
    /// # Errors
    /// [`ConfigError`] names the key at fault and where its value came from.
    pub fn load_str(toml: &str, flags: &toml::Table) -> Result<Self, ConfigError> {
        Self::load_over(Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)), flags)
    }

    /// The layers above the file, over `figment` (defaults and the file), then validation.
    fn load_over(figment: Figment, flags: &toml::Table) -> Result<Self, ConfigError> {
        check_env_escapes()?;
        let config: Config = figment
            .merge(crate::env::provider())
            .merge(Serialized::defaults(flags.clone()))
            .extract()
            .map_err(|e| ConfigError::Load(describe_figment_error(&e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that have the right type but are not allowed.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: &dyn std::fmt::Display, allowed: &str| {
            Err(ConfigError::Invalid { key: key.into(), value: value.to_string(), allowed: allowed.into() })
        };
        for (key, path) in [("paths.ws", &self.paths.ws), ("paths.relay", &self.paths.relay)] {
            if !path.starts_with('/') || path.len() < 2 || path.contains(char::is_whitespace) {
                return invalid(key, &format!("{path:?}"), "a path starting with `/`, with no spaces");
            }
        }
        let positive: [(&str, u64); 12] = [
            ("limits.max_connections", self.limits.max_connections as u64),
            ("limits.max_connections_per_ip", self.limits.max_connections_per_ip as u64),
            ("limits.max_fragments", self.limits.max_fragments as u64),
            ("limits.handshake_timeout_ms", self.limits.handshake_timeout_ms),
            ("limits.write_timeout_ms", self.limits.write_timeout_ms),
            ("limits.rate_per_sec", u64::from(self.limits.rate_per_sec)),
            ("limits.rate_burst", u64::from(self.limits.rate_burst)),
            ("limits.max_channels_per_conn", self.limits.max_channels_per_conn as u64),
            ("limits.max_history_bytes", self.limits.max_history_bytes as u64),
            ("heartbeat.interval_ms", self.heartbeat.interval_ms),
            ("queue.messages", self.queue.messages as u64),
            ("drain.deadline_ms", self.drain.deadline_ms),
        ];
        for (key, value) in positive {
            if value == 0 {
                return invalid(key, &value, "must be at least 1");
            }
        }
        if !(125..=(1 << 30)).contains(&self.limits.max_message_bytes) {
            return invalid(
                "limits.max_message_bytes",
                &self.limits.max_message_bytes,
                "must be from 125 to 1073741824",
            );
        }
        if self.limits.max_header_bytes < 1024 {
            return invalid("limits.max_header_bytes", &self.limits.max_header_bytes, "must be at least 1024");
        }
        if self.heartbeat.pong_timeout_ms <= self.heartbeat.interval_ms {
            return invalid(
                "heartbeat.pong_timeout_ms",
                &self.heartbeat.pong_timeout_ms,
                "must be greater than heartbeat.interval_ms",
            );
        }
        if self.queue.bytes < self.limits.max_message_bytes {
            return invalid("queue.bytes", &self.queue.bytes, "must be at least limits.max_message_bytes");
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return invalid("allowed_origins", &format!("{origin:?}"), "each must start with http:// or https://");
            }
        }
        let all = std::iter::once(("namespace".to_owned(), &self.namespace))
            .chain(self.namespaces.iter().map(|(name, ns)| (format!("namespaces.{name}"), ns)));
        for (key, ns) in all {
            // Without a TTL, every channel ever published to would keep its history, and its memory, forever.
            if ns.history_size > 0 && ns.history_ttl_ms == 0 {
                return invalid(&format!("{key}.history_ttl_ms"), &0, "must be at least 1 when history_size is set");
            }
        }
        for name in self.namespaces.keys() {
            if name.is_empty() || name.contains(':') || ws_protocol::validate_channel(name).is_err() {
                return invalid(
                    "namespaces",
                    &format!("{name:?}"),
                    "namespace names use A-Z a-z 0-9 _ - . @ / = # and no `:`",
                );
            }
        }
        let jwt = &self.auth.jwt;
        match jwt.algorithm.as_str() {
            "" => {}
            "HS256" if jwt.secret.len() < 16 => {
                return invalid("auth.jwt.secret", &"<hidden>", "HS256 needs a secret of at least 16 bytes");
            }
            "HS256" => {}
            "RS256" | "ES256" if jwt.public_key_file.is_none() => {
                return invalid("auth.jwt.public_key_file", &"<unset>", "RS256 and ES256 need a PEM public key file");
            }
            "RS256" | "ES256" => {}
            other => {
                return invalid(
                    "auth.jwt.algorithm",
                    &format!("{other:?}"),
                    "one of \"HS256\", \"RS256\", \"ES256\" or empty",
                )
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid("tls", &"one of cert and key", "set both tls.cert and tls.key, or neither");
        }
        let broker = &self.broker;
        if broker.idempotency_window_ms == 0 {
            return invalid("broker.idempotency_window_ms", &0, "must be at least 1");
        }
        if !broker.redis_url.is_empty() && !broker.redis_urls.is_empty() {
            return invalid("broker.redis_urls", &"<hidden>", "set broker.redis_url or broker.redis_urls, not both");
        }
        let key = if broker.redis_urls.is_empty() { "broker.redis_url" } else { "broker.redis_urls" };
        let urls = broker.urls();
        for url in &urls {
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://")) {
                return invalid(key, &"<hidden>", "redis:// or rediss:// URLs, or none for a single node");
            }
        }
        if let Some(i) = urls.iter().enumerate().position(|(i, u)| urls[..i].contains(u)) {
            return invalid(key, &format!("entry {}", i + 1), "each Redis listed once");
        }
        if let Some(ca) = &broker.tls_ca_file {
            if !urls.iter().any(|u| u.starts_with("rediss://")) {
                return invalid("broker.tls_ca_file", &ca.display(), "only with a rediss:// URL");
            }
        }
        if !urls.is_empty() {
            if broker.prefix.is_empty() || broker.prefix.contains(|c: char| c.is_whitespace() || c == '{' || c == '}') {
                return invalid(
                    "broker.prefix",
                    &format!("{:?}", broker.prefix),
                    "non-empty, without spaces or braces",
                );
            }
            if broker.node_id.len() > 64 || broker.node_id.contains(|c: char| !c.is_ascii_graphic()) {
                return invalid(
                    "broker.node_id",
                    &format!("{:?}", broker.node_id),
                    "at most 64 printable ASCII characters",
                );
            }
            if broker.presence_lease_ms < 300 {
                return invalid("broker.presence_lease_ms", &broker.presence_lease_ms, "must be at least 300");
            }
            if !(1..=64).contains(&broker.pubsub_connections) {
                return invalid("broker.pubsub_connections", &broker.pubsub_connections, "must be from 1 to 64");
            }
            if broker.command_timeout_ms == 0 {
                return invalid("broker.command_timeout_ms", &0, "must be at least 1");
            }
            if broker.probe_interval_ms < 100 {
                return invalid("broker.probe_interval_ms", &broker.probe_interval_ms, "must be at least 100");
            }
        }
        // A TOML file holds integers up to i64::MAX: a larger one, from the environment or a flag, would make
        // `--print-config` print a file the server cannot read back.
        let tree = serde_json::to_value(self).unwrap_or_default();
        if let Some((key, value)) = integer_over_toml_range(&tree, "") {
            return invalid(&key, &value, "must be at most 9223372036854775807");
        }
        Ok(())
    }

    /// The effective configuration as TOML.
    #[must_use]
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// The hub's namespaces.
    #[must_use]
    pub fn hub_namespaces(&self) -> Namespaces {
        self.namespaces
            .iter()
            .fold(Namespaces::new(self.namespace.clone()), |ns, (name, policy)| ns.with(name.clone(), policy.clone()))
    }
}

/// The first integer in `value` over `i64::MAX`, with its dotted key under `key`.
fn integer_over_toml_range(value: &serde_json::Value, key: &str) -> Option<(String, u64)> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().filter(|&n| i64::try_from(n).is_err()).map(|n| (key.to_owned(), n)),
        serde_json::Value::Array(items) => items.iter().find_map(|item| integer_over_toml_range(item, key)),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(name, field)| {
            let key = if key.is_empty() { name.clone() } else { format!("{key}.{name}") };
            integer_over_toml_range(field, &key)
        }),
        _ => None,
    }
}

/// Refuses a `WS_SERVER_*` variable that figment 0.10 would misread: in a quoted string whose first `\` escape
/// comes after a non-ASCII character, it cuts the text at the character count as if it were a byte count, so it
/// panics (mid-character) or silently drops characters. A `"`, then a non-ASCII character, then a `\` anywhere in
/// the value is refused, which also covers a few values it would have read right; the message says how to write
/// them instead. The value is not shown: it may be a secret.
fn check_env_escapes() -> Result<(), ConfigError> {
    for (key, value) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if !key.trim().to_ascii_uppercase().starts_with(ENV_PREFIX) {
            continue;
        }
        let value = value.to_string_lossy();
        let after_quote = value.find('"').map_or("", |at| &value[at..]);
        if after_quote.find(|c: char| !c.is_ascii()).is_some_and(|at| after_quote[at..].contains('\\')) {
            return Err(ConfigError::Load(format!(
                "environment variable {}: a `\\` escape after a non-ASCII character in a quoted value cannot be \
                 read; write that character as a `\\u` escape too, or set the value in the file",
                key.trim()
            )));
        }
    }
    Ok(())
}

fn describe_figment_error(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
            let key = if key.is_empty() { String::new() } else { format!("key `{key}`: ") };
            let source = if source.is_empty() { String::new() } else { format!(" (from {source})") };
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}
