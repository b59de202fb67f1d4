//! Plain HTTP: the `HttpHandler` trait for every route that is not a WebSocket endpoint, and the JSON
//! responses the transport sends itself.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};

/// Serves the HTTP routes the transport does not own: the demo page, the API, metrics.
///
/// The transport routes its WebSocket endpoints and `/healthz` itself and hands every other request here.
/// Without a handler those requests get a 404 with a JSON body.
///
/// ```
/// use std::net::SocketAddr;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{body::Incoming, Request, Response};
/// use ws_transport::HttpHandler;
///
/// #[derive(Debug)]
/// struct Hello;
///
/// #[async_trait::async_trait]
/// impl HttpHandler for Hello {
///     async fn handle(&self, request: Request<Incoming>, _peer: SocketAddr) -> Response<Full<Bytes>> {
///         match request.uri().path() {
///             "/" => Response::new(Full::new(Bytes::from_static(b"hello"))),
///             path => ws_transport::json_error(hyper::StatusCode::NOT_FOUND, "not_found", &format!("no route for {path}")),
///         }
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait HttpHandler: Send + Sync + fmt::Debug + 'static {
    /// Answers one request from `peer`. It runs on the connection's task, so a slow handler delays only that
    /// connection's next request.
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>>;
}

/// A JSON error response, `{"error": code, "message": message}`, the shape PROTOCOL.md gives every HTTP error.
#[must_use]
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A 503 with `Retry-After` (in whole seconds, at least 1) and a JSON body.
pub(crate) fn unavailable(code: &str, message: &str, retry_after: Duration) -> Response<Full<Bytes>> {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    let secs = retry_after.as_secs().max(1);
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// A 200 with a plain text body.
pub(crate) fn text(body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn errors_are_json_and_503s_say_when_to_retry() {
        let response = unavailable("overloaded", "too many connections", Duration::from_millis(200));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json, serde_json::json!({"error": "overloaded", "message": "too many connections"}));
    }
}
