//! `ws-server`: the standalone ws-hub server, as a library so tests and embedders can run it in-process.
//!
//! The binary is wiring: it reads a [`Config`] (defaults, TOML file, `WS_SERVER_*` environment, flags),
//! installs logging, binds a [`Server`] and runs it until SIGINT or SIGTERM, then drains.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use ws_server::{Config, Server};
//!
//! let config = Config::load(None, &toml::Table::new())?;
//! let server = Server::bind(config).await?;
//! println!("serving on {}", server.local_addr()?);
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod admin;
mod api;
mod auth;
mod cli;
mod config;
mod env;
mod logging;
mod metrics;
mod routes;
mod server;
mod tls;

pub use api::{Api, ApiResponse};
pub use auth::{hs256_token, AuthSetupError, Claims, ServerAuthenticator};
pub use cli::{Cli, Command, LogFormatArg};
pub use config::{
    process_namespace, ApiConfig, AuthConfig, Config, ConfigError, DrainConfig, HeartbeatConfig, JwtConfig,
    LimitsConfig, LogConfig, LogFormat, MetricsConfig, PathsConfig, QueueConfig, RelayConfig, TlsConfig, ENV_PREFIX,
};
pub use env::ignored_env_vars;
pub use logging::init as init_logging;
pub use metrics::Metrics;
pub use routes::{Readiness, Routes, CLIENT_MODULE, DEMO_PAGE};
pub use server::Server;
pub use tls::server_config as tls_server_config;
