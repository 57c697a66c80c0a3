//! HTTP plumbing shared by the services: `/health` and a server loop that
//! stops accepting on shutdown and lets in-flight requests finish.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A router serving `GET /health`: 200 while the process is up.
pub fn health_router(service: &'static str) -> Router {
    Router::new().route(
        "/health",
        get(move || async move {
            (
                StatusCode::OK,
                Json(json!({"status": "ok", "service": service})),
            )
        }),
    )
}

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds `addr`, reporting the address in the error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves `router` until `shutdown` fires, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .map_err(ServeError::Serve)
}

/// The client's address: the first `X-Forwarded-For` entry when the proxy in
/// front is trusted to set it (and it is an IP address), else the peer.
pub fn client_ip(
    headers: &axum::http::HeaderMap,
    peer: SocketAddr,
    trust_forwarded_for: bool,
) -> String {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
    match forwarded {
        Some(ip) if trust_forwarded_for => ip.to_owned(),
        _ => peer.ip().to_string(),
    }
}

/// The route template a request matched (`/api/query/jobs/{id}`), for
/// metric labels that stay few; "unmatched" when no route matched.
pub fn route_template(request: &axum::extract::Request) -> String {
    request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
}

/// Convenience for handlers: a JSON error body `{"error": ..., "message": ...}`.
pub fn error_body(kind: &str, message: impl Into<String>) -> Json<Value> {
    Json(json!({"error": kind, "message": message.into()}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn serves_health_over_tcp_and_stops_on_shutdown() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let server = tokio::spawn(serve(listener, health_router("test"), token.clone()));

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains(r#""service":"test""#), "{response}");

        token.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server did not stop within 10 s")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn forwarded_for_is_used_only_when_trusted_and_valid() {
        use axum::http::{HeaderMap, HeaderValue};
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.5, 10.0.0.1"),
        );
        assert_eq!(client_ip(&h, peer, true), "203.0.113.5");
        assert_eq!(client_ip(&h, peer, false), "10.0.0.9");
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_ip(&h, peer, true), "10.0.0.9");
    }

    #[tokio::test]
    async fn bind_errors_name_the_address() {
        let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).await.unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
