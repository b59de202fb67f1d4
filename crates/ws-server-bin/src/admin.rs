//! The optional admin listener: `/metrics`, `/healthz` and `/readyz` on their own address, away from clients.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use ws_transport::json_error;

use crate::routes::Routes;

/// Serves the admin routes on `listener` until `stop` completes.
pub(crate) async fn serve(listener: TcpListener, routes: Arc<Routes>, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    continue;
                }
            },
        };
        let routes = Arc::clone(&routes);
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let routes = Arc::clone(&routes);
                async move {
                    let path = request.uri().path();
                    Ok::<_, Infallible>(routes.admin(path).unwrap_or_else(|| {
                        json_error(StatusCode::NOT_FOUND, "not_found", &format!("no admin route for {path}"))
                    }))
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
