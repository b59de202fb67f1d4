//! `run`: wires a `Config` into a hub, the transport, the routes and the listeners, and drains on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use ws_core::{Hub, HubConfig};
use ws_transport::{RateLimit, SystemClock, TransportConfig, TransportStats};

use crate::api::Api;
use crate::auth::ServerAuthenticator;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::routes::{Readiness, Routes};
use crate::tls;

/// A server bound to its listeners, ready to [`Server::run`].
#[derive(Debug)]
pub struct Server {
    config: Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    hub: Hub,
    transport: TransportConfig,
    routes: Arc<Routes>,
}

impl Server {
    /// Builds everything the configuration describes and binds the listeners.
    ///
    /// # Errors
    /// When an address cannot be bound, or the JWT key or TLS files cannot be read.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let urls = config.broker.urls();
        let broker = if urls.is_empty() { None } else { Some(Arc::new(redis_broker(urls, &config.broker)?)) };
        let mut hub_config = HubConfig::default()
            .namespaces(config.hub_namespaces())
            .max_channels_per_conn(config.limits.max_channels_per_conn)
            .max_history_bytes(config.limits.max_history_bytes)
            // A replay is queued at once, so it must fit the send queue with room to spare.
            .max_recovery(config.queue.messages / 2, config.queue.bytes / 2)
            .idempotency_window_ms(config.broker.idempotency_window_ms);
        let mut builder = Hub::builder(Arc::new(SystemClock));
        let mut readiness = Readiness::ready();
        if let Some(broker) = &broker {
            tracing::info!(node_id = broker.node_id(), prefix = %config.broker.prefix, "clustered over redis");
            hub_config = hub_config.node_prefix(broker.conn_id_prefix());
            builder = builder.broker(Arc::clone(broker) as Arc<dyn ws_core::Broker>);
            readiness = readiness.with_broker(Arc::clone(broker));
        }
        let hub = builder.config(hub_config).build();
        let authenticator = ServerAuthenticator::new(&config.auth)?;
        let stats = Arc::new(TransportStats::default());
        let metrics =
            config.metrics.enabled.then(|| Arc::new(Metrics::new(hub.clone(), Arc::clone(&stats), broker.clone())));
        let api = (!config.api.keys.is_empty())
            .then(|| Api::new(hub.clone(), config.api.keys.clone(), config.api.max_body_bytes));
        let routes = Arc::new(Routes { demo: config.paths.demo, api, metrics, readiness });
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            _ => None,
        };
        let ms = Duration::from_millis;
        let relay_prefix = format!("{}/", config.paths.relay.trim_end_matches('/'));
        let transport = TransportConfig::default()
            .ws_path(config.paths.ws.clone())
            .relay_path_prefix(if config.relay.enabled { relay_prefix } else { String::new() })
            .relay_echo(config.relay.echo)
            .allowed_origins(config.allowed_origins.clone())
            .authenticator(Arc::new(authenticator))
            .http_handler(Some(Arc::clone(&routes) as Arc<dyn ws_transport::HttpHandler>))
            .heartbeat_interval(ms(config.heartbeat.interval_ms))
            .pong_timeout(ms(config.heartbeat.pong_timeout_ms))
            .handshake_timeout(ms(config.limits.handshake_timeout_ms))
            .max_header_bytes(config.limits.max_header_bytes)
            .max_message_size(config.limits.max_message_bytes)
            .max_fragments(u32::try_from(config.limits.max_fragments).unwrap_or(u32::MAX))
            .queue_messages(config.queue.messages)
            .queue_bytes(config.queue.bytes)
            .write_timeout(ms(config.limits.write_timeout_ms))
            .max_connections(config.limits.max_connections)
            .max_connections_per_ip(config.limits.max_connections_per_ip)
            .rate_limit(Some(RateLimit::new(config.limits.rate_per_sec, config.limits.rate_burst)))
            .drain_timeout(ms(config.drain.deadline_ms))
            .shutdown_reconnect_after(ms(0))
            .shutdown_reconnect_spread(ms(config.drain.window_ms))
            .stats(stats)
            .tls(tls);
        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let admin = match config.metrics.admin_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?),
            None => None,
        };
        Ok(Self { config, listener, admin, hub, transport, routes })
    }

    /// The address the main listener is bound to.
    ///
    /// # Errors
    /// When the socket cannot report it.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the admin listener, when there is one.
    #[must_use]
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The hub, for embedding and tests.
    #[must_use]
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Serves until `shutdown` completes, then drains: `/readyz` turns 503 at
    /// once while new connections are still accepted for `drain.ready_delay_ms`
    /// (so load balancers stop sending any first); then the listener closes,
    /// every client gets `disconnect` with a `reconnect_after_ms` spread
    /// over `drain.window_ms` and close 1001, queues flush within
    /// `drain.deadline_ms`, and this returns.
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let readiness = self.routes.readiness.clone();
        let addr = self.listener.local_addr()?;
        let admin_addr = self.admin_addr();
        // The admin listener keeps answering (`/readyz` with 503) until the drain is over.
        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
        let admin = self.admin.map(|listener| {
            let routes = Arc::clone(&self.routes);
            tokio::spawn(crate::admin::serve(listener, routes, async move {
                let _ = drained_rx.await;
            }))
        });
        let ready_delay_ms = self.config.drain.ready_delay_ms;
        let shutdown = async move {
            shutdown.await;
            readiness.set_draining();
            if ready_delay_ms > 0 {
                // Load balancers notice the 503 on their next probe; until they do, they still send clients here.
                tracing::info!(ready_delay_ms, "draining: readiness off, still accepting for ready_delay_ms");
                tokio::time::sleep(Duration::from_millis(ready_delay_ms)).await;
            }
            tracing::info!("draining: not accepting, disconnecting clients");
        };
        match admin_addr {
            Some(admin) => tracing::info!(%addr, %admin, tls = self.config.tls.cert.is_some(), "listening"),
            None => tracing::info!(%addr, tls = self.config.tls.cert.is_some(), "listening"),
        }
        ws_transport::serve(self.listener, self.hub, self.transport, shutdown).await?;
        let _ = drained_tx.send(());
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        tracing::info!("drained; exiting");
        Ok(())
    }
}

/// The Redis broker the `[broker]` section describes.
fn redis_broker(urls: Vec<String>, config: &crate::config::BrokerConfig) -> anyhow::Result<ws_redis::RedisBroker> {
    let mut redis = ws_redis::RedisConfig::sharded(urls);
    if let Some(path) = &config.tls_ca_file {
        let pem = std::fs::read(path).with_context(|| format!("broker.tls_ca_file {}", path.display()))?;
        redis.tls_root_cert = Some(pem);
    }
    redis.prefix.clone_from(&config.prefix);
    redis.node_id = (!config.node_id.is_empty()).then(|| config.node_id.clone());
    redis.presence_lease = Duration::from_millis(config.presence_lease_ms);
    redis.pubsub_connections = config.pubsub_connections;
    redis.command_timeout = Duration::from_millis(config.command_timeout_ms);
    redis.probe_interval = Duration::from_millis(config.probe_interval_ms);
    ws_redis::RedisBroker::new(redis).context("broker")
}
