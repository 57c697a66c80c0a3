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

/// The client's address: the peer's, or, behind `trusted_hops` proxies
/// that each append the address they received from to `X-Forwarded-For`,
/// the entry the outermost of them appended (the `trusted_hops`-th from
/// the right). Entries to its left are whatever the client sent, so they
/// are never read: rotating them changes nothing. A header with fewer
/// entries than trusted hops (a request that did not come through them),
/// or an entry that is not an address, gives the peer's.
pub fn client_ip(headers: &axum::http::HeaderMap, peer: SocketAddr, trusted_hops: usize) -> String {
    if trusted_hops == 0 {
        return peer.ip().to_string();
    }
    // Several X-Forwarded-For headers count as one list, in order.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    entries
        .len()
        .checked_sub(trusted_hops)
        .and_then(|i| entries.get(i))
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map_or_else(|| peer.ip().to_string(), |ip| ip.to_string())
}

/// `{prefix}_TRUSTED_PROXY_HOPS` (`0`): the proxies in front of the
/// service that append to `X-Forwarded-For` (see [`client_ip`]). The
/// `{prefix}_TRUST_FORWARDED_FOR` of earlier versions, which took the
/// leftmost entry (the client's own choice), is refused naming this.
pub fn trusted_hops_from_env(
    env: &crate::config::Env<'_>,
    prefix: &str,
) -> Result<usize, crate::config::ConfigError> {
    let old = format!("{prefix}_TRUST_FORWARDED_FOR");
    if let Some(value) = env.optional_string(&old)? {
        return Err(crate::config::ConfigError::Invalid {
            var: old,
            value,
            reason: format!(
                "no longer read (it took the leftmost X-Forwarded-For entry, which clients choose): set {prefix}_TRUSTED_PROXY_HOPS to the number of proxies in front"
            ),
        });
    }
    env.int_in(&format!("{prefix}_TRUSTED_PROXY_HOPS"), 0usize, 0, 16)
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
    fn the_client_is_the_entry_the_outermost_trusted_proxy_appended() {
        use axum::http::{HeaderMap, HeaderValue};
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let with = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", HeaderValue::from_static(v));
            }
            h
        };
        // One ingress: it appended the client's address last.
        let one = with(&["198.51.100.7"]);
        assert_eq!(client_ip(&one, peer, 1), "198.51.100.7");
        assert_eq!(
            client_ip(&one, peer, 0),
            "10.0.0.9",
            "not trusted: the peer"
        );
        // Whatever a client puts in front changes nothing.
        for forged in ["1.2.3.4", "5.6.7.8, 9.9.9.9", "garbage"] {
            let h = with(&[forged, "198.51.100.7"]);
            assert_eq!(client_ip(&h, peer, 1), "198.51.100.7", "{forged}");
        }
        // Two proxies (a CDN, then the ingress), in one header or several.
        let two = with(&["203.0.113.5, 198.51.100.7, 10.0.0.1"]);
        assert_eq!(client_ip(&two, peer, 2), "198.51.100.7");
        let split = with(&["203.0.113.5, 198.51.100.7", "10.0.0.1"]);
        assert_eq!(client_ip(&split, peer, 2), "198.51.100.7");
        // Fewer entries than trusted proxies, or not an address: the peer.
        assert_eq!(client_ip(&one, peer, 2), "10.0.0.9");
        assert_eq!(client_ip(&with(&["garbage"]), peer, 1), "10.0.0.9");
        assert_eq!(client_ip(&HeaderMap::new(), peer, 1), "10.0.0.9");
    }

    #[test]
    fn trusting_the_leftmost_entry_is_refused_naming_its_replacement() {
        let e = trusted_hops_from_env(
            &crate::config::Env::new(&[("CAPTURE_TRUST_FORWARDED_FOR", "true")]),
            "CAPTURE",
        )
        .unwrap_err();
        assert_eq!(e.var(), "CAPTURE_TRUST_FORWARDED_FOR");
        assert!(e.to_string().contains("CAPTURE_TRUSTED_PROXY_HOPS"), "{e}");
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            trusted_hops_from_env(&crate::config::Env::new(&none), "AUTH").unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn bind_errors_name_the_address() {
        let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).await.unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
