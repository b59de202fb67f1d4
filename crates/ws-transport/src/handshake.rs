//! The WebSocket upgrade: origin, caps, authentication and subprotocol checks before the 101, then the hand-off
//! of the upgraded socket to a session.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ws_core::{AuthError, AuthRequest, RefusalReason};

use crate::http::{json_error, unavailable};
use crate::registration::{EndpointKind, Registration};
use crate::server::Server;
use crate::session::Session;
use crate::stream::Stream;

/// The subprotocol of PROTOCOL.md, selected when a client offers it.
pub(crate) const SUBPROTOCOL: &str = "wshub.v1";

/// Answers an upgrade request on one of the WebSocket endpoints: an error response before any upgrade, or the
/// 101 (and a session spawned to take the socket once hyper hands it over). Every refusal of an upgrade request
/// is counted and reported to the hub's hooks ([`Server::refused`]); a request that is no upgrade at all gets
/// its 426 and nothing else.
pub(crate) async fn upgrade(
    server: &Arc<Server>,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    kind: EndpointKind,
) -> Response<Full<Bytes>> {
    let config = &server.config;
    if request.method() != Method::GET || !fastwebsockets::upgrade::is_upgrade_request(&request) {
        let mut response =
            json_error(StatusCode::UPGRADE_REQUIRED, "upgrade_required", "this endpoint speaks WebSocket only");
        response.headers_mut().insert(UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    // The path only: the query may carry the token.
    let path = request.uri().path().to_owned();
    let refused = |reason| server.refused(reason, peer, &path);
    if server.shutdown.is_cancelled() {
        refused(RefusalReason::ShuttingDown);
        return unavailable("shutting_down", "the server is shutting down", config.retry_after);
    }
    let headers = request.headers();
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(&config.allowed_origins, origin, host) {
        refused(RefusalReason::Origin);
        return json_error(StatusCode::FORBIDDEN, "forbidden", "origin not allowed");
    }
    // Connection caps are ours: fastwebsockets 0.10 and hyper have none.
    let slot = match server.caps.acquire(peer.ip()) {
        Ok(slot) => slot,
        Err(exceeded) => {
            refused(RefusalReason::Capacity);
            return unavailable("overloaded", exceeded.message(), config.retry_after);
        }
    };
    let auth = AuthRequest::with_token(token(headers, request.uri().query()))
        .headers(
            headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
                .collect(),
        )
        .peer(Some(peer));
    // The request head arrived within hyper's header read timeout; the rest of the handshake gets as long again.
    let identity = match tokio::time::timeout(config.handshake_timeout, config.authenticator.authenticate(&auth)).await
    {
        Ok(Ok(identity)) => identity,
        Ok(Err(AuthError::Unauthorized(message))) => {
            refused(RefusalReason::Unauthorized);
            return json_error(StatusCode::UNAUTHORIZED, "unauthorized", &message);
        }
        Ok(Err(AuthError::Unavailable(message))) => {
            refused(RefusalReason::Unavailable);
            tracing::warn!(%message, "authenticator unavailable");
            return unavailable("unavailable", "authentication is unavailable", config.retry_after);
        }
        Ok(Err(error)) => {
            refused(RefusalReason::Unauthorized);
            tracing::warn!(%error, "authentication failed");
            return json_error(StatusCode::UNAUTHORIZED, "unauthorized", "authentication failed");
        }
        Err(_) => {
            refused(RefusalReason::Unavailable);
            tracing::warn!("authenticator timed out");
            return unavailable("unavailable", "authentication timed out", config.retry_after);
        }
    };
    let subprotocol = matches!(kind, EndpointKind::Hub) && offers_subprotocol(request.headers());
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(pair) => pair,
        Err(error) => {
            refused(RefusalReason::BadRequest);
            return json_error(StatusCode::BAD_REQUEST, "bad_request", &error.to_string());
        }
    };
    let Some(registration) = Registration::new(server, kind, &identity, peer, slot) else {
        refused(RefusalReason::Internal);
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the connection could not be registered");
    };
    let expires_at_ms = identity.expires_at_ms;
    server.tasks.spawn(async move {
        let server = Arc::clone(&registration.server);
        // hyper hands the socket over once the 101 is written; a client that stops reading is dropped (and
        // dropping the registration unregisters it).
        let websocket = match tokio::time::timeout(server.config.handshake_timeout, upgraded).await {
            Ok(Ok(websocket)) => websocket,
            Ok(Err(error)) => return tracing::debug!(%error, "upgrade failed"),
            Err(_) => return tracing::debug!("upgrade timed out"),
        };
        // fastwebsockets did the handshake; the session reads and writes the socket itself (see `frame.rs`).
        let upgraded = websocket.into_inner().into_inner();
        match upgraded.downcast::<TokioIo<Stream>>() {
            Ok(parts) => {
                // A task of its own, so the connection's task holds the session alone, not this future's state.
                let stream = parts.io.into_inner();
                server.tasks.spawn(Session::new(registration, stream, parts.read_buf, peer, expires_at_ms));
            }
            Err(_) => tracing::error!("upgraded connection is not a transport stream"),
        }
    });
    let (mut parts, _) = response.into_parts();
    if subprotocol {
        parts.headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    Response::from_parts(parts, Full::default())
}

/// The token from `Authorization: Bearer <token>`, or else the `token` query parameter (percent-decoded).
fn token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    });
    bearer.or_else(|| {
        query?.split('&').find_map(|pair| pair.strip_prefix("token=").map(percent_decode)).filter(|t| !t.is_empty())
    })
}

/// Decodes `%XX` escapes; a `+` stays a `+` (tokens are not form text, and base64 tokens contain `+`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make one byte.
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the client offers the `wshub.v1` subprotocol.
fn offers_subprotocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// The origin policy. Clients that send no `Origin` (anything but a browser) are always allowed: the check
/// exists to stop other sites' pages from connecting with a user's credentials. With an allow-list, the
/// origin must be on it (or the list holds `*`); without one, it must name the host the request was sent to.
fn origin_allowed(allowed: &[String], origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    if !allowed.is_empty() {
        return allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin));
    }
    let Some(host) = host else { return false };
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or(rest);
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => "",
    };
    let strip = |s: &str| -> String {
        let s = s.to_ascii_lowercase();
        match s.strip_suffix(default_port) {
            Some(bare) if !default_port.is_empty() => bare.to_owned(),
            _ => s,
        }
    };
    strip(authority) == strip(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_origin_policy_allows_the_same_host_and_no_origin() {
        assert!(origin_allowed(&[], None, Some("example.com")));
        assert!(origin_allowed(&[], Some("http://example.com:8080"), Some("example.com:8080")));
        assert!(origin_allowed(&[], Some("https://Example.com"), Some("example.com:443")));
        assert!(!origin_allowed(&[], Some("http://evil.com"), Some("example.com")));
        assert!(!origin_allowed(&[], Some("null"), Some("example.com")));
        assert!(!origin_allowed(&[], Some("http://example.com:8081"), Some("example.com:8080")));
    }

    #[test]
    fn allow_list_matches_exactly() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(origin_allowed(&allowed, Some("https://app.example.com"), Some("api.example.com")));
        assert!(!origin_allowed(&allowed, Some("https://app.example.com.evil.com"), None));
        assert!(origin_allowed(&["*".to_owned()], Some("https://anything"), None));
    }

    #[test]
    fn tokens_come_from_the_bearer_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(token(&headers, Some("a=1&token=abc%2Bd+e")).as_deref(), Some("abc+d+e"));
        assert_eq!(token(&headers, Some("token=")), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer xyz"));
        assert_eq!(token(&headers, Some("token=abc")).as_deref(), Some("xyz"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(token(&headers, None), None);
    }

    #[test]
    fn subprotocol_is_found_in_a_list() {
        let mut headers = HeaderMap::new();
        assert!(!offers_subprotocol(&headers));
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat, wshub.v1"));
        assert!(offers_subprotocol(&headers));
    }
}
