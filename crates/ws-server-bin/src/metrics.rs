//! `Metrics`: the Prometheus registry of `ws-server`, with the hub's and the transport's counters read at scrape time.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use ws_core::{DropReason, Hub};

/// Labels of `ws_api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    endpoint: &'static str,
    status: u16,
}

/// Every metric `ws-server` exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    api_requests: Family<ApiLabels, Counter>,
    api_latency: Histogram,
}

impl Metrics {
    /// Metrics over a hub and its transport's counters.
    #[must_use]
    pub fn new(
        hub: Hub,
        transport: Arc<ws_transport::TransportStats>,
        broker: Option<Arc<ws_redis::RedisBroker>>,
    ) -> Self {
        let mut registry = Registry::default();
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register("ws_api_requests", "HTTP API requests by endpoint and status", api_requests.clone());
        // 100 µs to about 1.6 s.
        let api_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register("ws_api_latency_seconds", "HTTP API request latency", api_latency.clone());
        registry.register_collector(Box::new(LiveCollector { hub, transport, broker }));
        Self { registry, api_requests, api_latency }
    }

    /// Counts one API request.
    pub fn observe_api(&self, endpoint: &'static str, status: u16, elapsed: Duration) {
        self.api_requests.get_or_create(&ApiLabels { endpoint, status }).inc();
        self.api_latency.observe(elapsed.as_secs_f64());
    }

    /// The whole registry in the Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Reads the hub's and transport's live counters on every scrape, so the hot
/// paths keep their own plain atomics and pay nothing for metrics.
#[derive(Debug)]
struct LiveCollector {
    hub: Hub,
    transport: Arc<ws_transport::TransportStats>,
    broker: Option<Arc<ws_redis::RedisBroker>>,
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)
}

fn labelled_counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(String, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value.as_str())];
        ConstCounter::new(*n).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes a histogram read from a [`ws_core::DelayHistogram`].
fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &ws_core::DelayHistogram,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let (sum, count, buckets) = h.prometheus();
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let hub = self.hub.stats();
        let t = self.transport.snapshot();
        gauge(&mut encoder, "ws_connections", "Open hub connections", hub.connections)?;
        gauge(&mut encoder, "ws_channels", "Channels with subscribers or kept history", hub.channels)?;
        gauge(&mut encoder, "ws_subscriptions", "Subscriptions, summed over channels", hub.subscriptions)?;
        counter(&mut encoder, "ws_connections_opened", "WebSocket connections accepted", t.connections_opened)?;
        let codes: Vec<(String, u64)> = t.disconnections.iter().map(|(c, n)| (c.to_string(), *n)).collect();
        labelled_counters(&mut encoder, "ws_disconnections", "Connections ended, by close code", "code", &codes)?;
        counter(&mut encoder, "ws_messages_in", "Frames received from hub clients", hub.messages_in)?;
        counter(&mut encoder, "ws_messages_out", "Frames queued to hub clients", hub.messages_out)?;
        counter(&mut encoder, "ws_publications", "Publications made on this node", hub.publications)?;
        gauge(&mut encoder, "ws_history_bytes", "Bytes of in-memory history held", hub.history_bytes)?;
        counter(
            &mut encoder,
            "ws_history_evictions",
            "Channel histories evicted to stay under limits.max_history_bytes",
            hub.history_evictions,
        )?;
        counter(&mut encoder, "ws_bytes_in", "WebSocket payload bytes received", t.bytes_in)?;
        counter(&mut encoder, "ws_bytes_out", "WebSocket payload bytes written", t.bytes_out)?;
        let drops: Vec<(String, u64)> =
            DropReason::ALL.iter().map(|r| (r.as_str().to_owned(), hub.drops(*r))).collect();
        labelled_counters(&mut encoder, "ws_drops", "Frames not queued, by reason", "reason", &drops)?;
        let auth: Vec<(String, u64)> = t.rejections.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect();
        labelled_counters(
            &mut encoder,
            "ws_auth_failures",
            "Upgrades refused by authentication or origin checks, by reason",
            "reason",
            &auth,
        )?;
        if let Some(broker) = &self.broker {
            let status = broker.status();
            gauge(&mut encoder, "ws_broker_up", "1 while every connection to Redis is up", u64::from(status.up))?;
            let mut metric = encoder.encode_descriptor(
                "ws_broker_instance_up",
                "1 while every connection to this Redis server is up",
                None,
                MetricType::Gauge,
            )?;
            for (url, up) in &status.instances {
                let labels = [("redis", url.as_str())];
                ConstGauge::new(i64::from(*up)).encode(metric.encode_family(&labels)?)?;
            }
            histogram(
                &mut encoder,
                "ws_broker_publish_seconds",
                "From a publication reaching the broker to Redis's answer",
                broker.publish_latency(),
            )?;
            let stats = broker.stats();
            let dropped: Vec<(String, u64)> = stats.dropped.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect();
            labelled_counters(
                &mut encoder,
                "ws_broker_envelopes_dropped",
                "Broker envelopes dropped, by reason",
                "reason",
                &dropped,
            )?;
            counter(
                &mut encoder,
                "ws_broker_resubscriptions",
                "Channels subscribed again after a reconnect",
                stats.resubscriptions,
            )?;
            counter(&mut encoder, "ws_broker_connects", "Connections to Redis made", stats.connects)?;
            counter(
                &mut encoder,
                "ws_broker_probe_failures",
                "Pub/sub liveness probes unanswered",
                stats.probe_failures,
            )?;
            counter(&mut encoder, "ws_gaps_filled", "Offset gaps filled from the broker's history", hub.gaps_filled)?;
            counter(&mut encoder, "ws_gaps_flagged", "Gaps answered with insufficient_state", hub.gaps_flagged)?;
        }
        histogram(
            &mut encoder,
            "ws_queue_delay_seconds",
            "Time from queueing a frame to writing it (first frame of each write batch)",
            &self.transport.queue_delay,
        )
    }
}
