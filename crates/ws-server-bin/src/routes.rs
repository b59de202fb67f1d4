//! `Routes`: the routes `ws-server` adds to the transport's: demo page, `/ws-hub.js`, `/readyz`, `/metrics` and the API.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use ws_transport::{json_error, HttpHandler};

use crate::api::{Api, ApiResponse};
use crate::metrics::Metrics;

/// The demo page: connect, subscribe, publish, and a message log.
pub const DEMO_PAGE: &str = include_str!("../assets/demo.html");

/// The browser client module the demo page imports, served at `/ws-hub.js`.
pub const CLIENT_MODULE: &str = include_str!("../assets/ws-hub.js");

/// Whether the server accepts new work; `/readyz` answers 503 once draining starts, and while the cluster
/// broker is down.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    broker: Option<Arc<ws_redis::RedisBroker>>,
}

impl Readiness {
    /// A flag that starts ready.
    #[must_use]
    pub fn ready() -> Self {
        Self { ready: Arc::new(AtomicBool::new(true)), broker: None }
    }

    /// Also reports the broker's state.
    #[must_use]
    pub fn with_broker(mut self, broker: Arc<ws_redis::RedisBroker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Why the server is not ready, or `None` when it is.
    #[must_use]
    pub fn not_ready_reason(&self) -> Option<String> {
        if !self.is_ready() {
            return Some("draining".into());
        }
        let status = self.broker.as_ref()?.status();
        (!status.up).then(|| format!("broker unavailable: {}", status.reason.unwrap_or_default()))
    }

    /// Turns readiness off (drain started).
    pub fn set_draining(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// Whether the server is ready.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The routes `ws-server` serves beside the transport's WebSocket endpoints and `/healthz`.
#[derive(Debug)]
pub struct Routes {
    /// Serve the demo page at `/`.
    pub demo: bool,
    /// The API, when keys are configured.
    pub api: Option<Api>,
    /// Metrics, when enabled.
    pub metrics: Option<Arc<Metrics>>,
    /// Readiness.
    pub readiness: Readiness,
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(api: ApiResponse) -> Response<Full<Bytes>> {
    text(api.status, "application/json", api.body)
}

impl Routes {
    /// `/healthz`, `/readyz` and `/metrics`: the routes an admin listener serves too.
    pub fn admin(&self, path: &str) -> Option<Response<Full<Bytes>>> {
        match path {
            "/healthz" => Some(text(StatusCode::OK, "text/plain", "ok\n")),
            "/readyz" => Some(match self.readiness.not_ready_reason() {
                None => text(StatusCode::OK, "text/plain", "ready\n"),
                Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{reason}\n")),
            }),
            "/metrics" => self
                .metrics
                .as_ref()
                .map(|m| text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", m.render())),
            _ => None,
        }
    }

    async fn api(&self, api: &Api, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let endpoint = Api::endpoint(parts.uri.path());
        // Check the key before reading anything: strangers get 401, not a buffered body.
        let unauthorized = !api.authorized(&parts.headers);
        let declared_too_large = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > api.max_body_bytes());
        let response = if unauthorized {
            api.handle(&parts.method, parts.uri.path(), None, &parts.headers, b"").await
        } else if declared_too_large {
            api.too_large()
        } else {
            // Read at most the limit: a body that keeps coming is cut off, never buffered whole.
            match Limited::new(body, api.max_body_bytes()).collect().await {
                Ok(collected) => {
                    api.handle(
                        &parts.method,
                        parts.uri.path(),
                        parts.uri.query(),
                        &parts.headers,
                        &collected.to_bytes(),
                    )
                    .await
                }
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => api.too_large(),
                Err(_) => ApiResponse::error(StatusCode::BAD_REQUEST, "bad_request", "request body could not be read"),
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.observe_api(endpoint, response.status.as_u16(), started.elapsed());
        }
        json(response)
    }
}

#[async_trait::async_trait]
impl HttpHandler for Routes {
    async fn handle(&self, request: Request<Incoming>, _peer: SocketAddr) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        if let Some(response) = self.admin(&path) {
            return response;
        }
        if path == "/api" || path.starts_with("/api/") {
            return match &self.api {
                Some(api) => self.api(api, request).await,
                None => json_error(StatusCode::NOT_FOUND, "not_found", "the HTTP API is off: configure api.keys"),
            };
        }
        let asset = match path.as_str() {
            "/" => Some(("text/html; charset=utf-8", DEMO_PAGE)),
            "/ws-hub.js" => Some(("text/javascript; charset=utf-8", CLIENT_MODULE)),
            _ => None,
        };
        if let Some((content_type, body)) = asset.filter(|_| self.demo && request.method() == Method::GET) {
            let mut response = text(StatusCode::OK, content_type, body);
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if path == "/ws-hub.js" {
                // Module scripts load with CORS: pages of other origins may import it.
                response.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            }
            return response;
        }
        json_error(StatusCode::NOT_FOUND, "not_found", &format!("no route for {path}"))
    }
}
