//! The dashboard page: `GET /` and its script and style under `/ui/`,
//! compiled into the binary from `workloads/query/ui/` (nothing is fetched
//! at run time). Every answer carries a content security policy that lets
//! the page load only its own files and call only this service; files are
//! revalidated by `ETag` (`no-cache`), so a new build is seen at once.

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The page's policy: its own script, style and API; no inline code, no
/// frames, no other origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// One file of the page.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("../ui/index.html"),
    content_type: "text/html; charset=utf-8",
};
const SCRIPT: Asset = Asset {
    body: include_str!("../ui/app.js"),
    content_type: "text/javascript; charset=utf-8",
};
const STYLE: Asset = Asset {
    body: include_str!("../ui/app.css"),
    content_type: "text/css; charset=utf-8",
};
const ICON: Asset = Asset {
    body: include_str!("../ui/icon.svg"),
    content_type: "image/svg+xml",
};

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/ui/app.js",
            get(|h: HeaderMap| async move { serve(&SCRIPT, &h) }),
        )
        .route(
            "/ui/app.css",
            get(|h: HeaderMap| async move { serve(&STYLE, &h) }),
        )
        .route(
            "/ui/icon.svg",
            get(|h: HeaderMap| async move { serve(&ICON, &h) }),
        )
        // Browsers ask for it whatever the page names.
        .route(
            "/favicon.ico",
            get(|h: HeaderMap| async move { serve(&ICON, &h) }),
        )
}

/// A strong `ETag` of `body`.
fn etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset.body);
    let unchanged = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(CONTENT_TYPE, HeaderValue::from_static(asset.content_type))],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        headers.insert(ETAG, v);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_revalidate_by_etag_under_a_strict_policy() {
        let first = serve(&SCRIPT, &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[ETAG].clone();
        assert_eq!(first.headers()[CACHE_CONTROL], "no-cache");
        assert_eq!(
            first.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(
            first.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, tag.clone());
        assert_eq!(serve(&SCRIPT, &again).status(), StatusCode::NOT_MODIFIED);
        let mut other = HeaderMap::new();
        other.insert(IF_NONE_MATCH, HeaderValue::from_static("\"stale\""));
        assert_eq!(serve(&SCRIPT, &other).status(), StatusCode::OK);
        assert_ne!(serve(&STYLE, &HeaderMap::new()).headers()[ETAG], tag);
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_holds_no_inline_code() {
        for needed in ["/ui/app.js", "/ui/app.css", "/ui/icon.svg"] {
            assert!(INDEX.body.contains(needed), "{needed}");
        }
        assert!(!INDEX.body.contains("<script>"), "no inline script");
        assert!(!INDEX.body.contains("style=\""), "no inline style");
        assert!(
            !SCRIPT.body.contains("http://") || SCRIPT.body.contains("http://www.w3.org/2000/svg")
        );
        assert!(!SCRIPT.body.contains("https://"), "no other origin");
        assert!(
            !SCRIPT.body.contains("?key=") && !SCRIPT.body.contains("api_key="),
            "the key never goes into a URL"
        );
    }
}
