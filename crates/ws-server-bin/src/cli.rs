//! `Cli`: the command line of `ws-server`: flags that override the configuration, and the subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// ws-server: a real-time WebSocket messaging hub.
///
/// Settings come from defaults, then the file given with --config, then
/// WS_SERVER_* environment variables (nested keys joined with `__`, e.g.
/// WS_SERVER_LIMITS__MAX_CONNECTIONS=5000), then these flags.
#[derive(Debug, Parser)]
#[command(name = "ws-server", version, about, long_about)]
#[non_exhaustive]
pub struct Cli {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on (`listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Worker threads, 0 for one per core (`workers`).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Separate listener for /metrics, /healthz and /readyz (`metrics.admin_listen`).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Most connections at once (`limits.max_connections`).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most connections per IP address (`limits.max_connections_per_ip`).
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Largest message in bytes, over all fragments (`limits.max_message_bytes`).
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most fragments per message (`limits.max_fragments`).
    #[arg(long, value_name = "N")]
    pub max_fragments: Option<usize>,
    /// Handshake timeout in milliseconds (`limits.handshake_timeout_ms`).
    #[arg(long, value_name = "MS")]
    pub handshake_timeout_ms: Option<u64>,
    /// Messages per second per connection (`limits.rate_per_sec`).
    #[arg(long, value_name = "N")]
    pub rate_per_sec: Option<u32>,
    /// Message burst per connection (`limits.rate_burst`).
    #[arg(long, value_name = "N")]
    pub rate_burst: Option<u32>,
    /// Heartbeat interval in milliseconds (`heartbeat.interval_ms`).
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Pong timeout in milliseconds (`heartbeat.pong_timeout_ms`).
    #[arg(long, value_name = "MS")]
    pub pong_timeout_ms: Option<u64>,
    /// Most queued messages per connection (`queue.messages`).
    #[arg(long, value_name = "N")]
    pub queue_messages: Option<usize>,
    /// Most queued bytes per connection (`queue.bytes`).
    #[arg(long, value_name = "BYTES")]
    pub queue_bytes: Option<usize>,
    /// PEM certificate chain (`tls.cert`).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (`tls.key`).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Log format (`log.format`).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Log filter, e.g. `info` or `ws_transport=debug` (`log.level`).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Validate a configuration file (with the environment and flags applied) and exit.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Print an HS256 token for the configured `auth.jwt.secret`, for development.
    GenToken {
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
        /// How long the token lives, e.g. `1h` or `30m`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

impl Cli {
    /// The flags given, as a TOML overlay on the configuration.
    #[must_use]
    pub fn overlay(&self) -> toml::Table {
        let mut root = toml::Table::new();
        let mut set = |path: &str, value: toml::Value| {
            let mut table = &mut root;
            let mut parts = path.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    table.insert(part.to_owned(), value);
                    return;
                }
                table = table
                    .entry(part.to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .expect("overlay sections are tables");
            }
        };
        let int = |n: u64| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        let string = |s: String| toml::Value::String(s);
        let path = |p: &PathBuf| toml::Value::String(p.display().to_string());
        if let Some(v) = self.listen {
            set("listen", string(v.to_string()));
        }
        if let Some(v) = self.admin_listen {
            set("metrics.admin_listen", string(v.to_string()));
        }
        let ints: [(&str, Option<u64>); 12] = [
            ("workers", self.workers.map(|v| v as u64)),
            ("limits.max_connections", self.max_connections.map(|v| v as u64)),
            ("limits.max_connections_per_ip", self.max_connections_per_ip.map(|v| v as u64)),
            ("limits.max_message_bytes", self.max_message_bytes.map(|v| v as u64)),
            ("limits.max_fragments", self.max_fragments.map(|v| v as u64)),
            ("limits.handshake_timeout_ms", self.handshake_timeout_ms),
            ("limits.rate_per_sec", self.rate_per_sec.map(u64::from)),
            ("limits.rate_burst", self.rate_burst.map(u64::from)),
            ("heartbeat.interval_ms", self.heartbeat_ms),
            ("heartbeat.pong_timeout_ms", self.pong_timeout_ms),
            ("queue.messages", self.queue_messages.map(|v| v as u64)),
            ("queue.bytes", self.queue_bytes.map(|v| v as u64)),
        ];
        for (key, value) in ints {
            if let Some(v) = value {
                set(key, int(v));
            }
        }
        if let Some(v) = &self.tls_cert {
            set("tls.cert", path(v));
        }
        if let Some(v) = &self.tls_key {
            set("tls.key", path(v));
        }
        if let Some(v) = self.log_format {
            let format = match v {
                LogFormatArg::Text => "text",
                LogFormatArg::Json => "json",
            };
            set("log.format", string(format.into()));
        }
        if let Some(v) = &self.log_level {
            set("log.level", string(v.clone()));
        }
        root
    }
}
