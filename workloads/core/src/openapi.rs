//! What every service's OpenAPI document shares: `/health`, `/metrics`, the
//! error body, the security schemes, and the route serving the document at
//! `GET /openapi.json`. Each service derives its own document from its
//! handlers (`utoipa`) and adds these.

use axum::Router;
use axum::http::header;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, ToSchema};

/// An error answer: what failed, in a word and in a sentence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The kind of failure, e.g. `invalid_request`, `rate_limited`.
    pub error: String,
    pub message: String,
    /// The field at fault (query's 400s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The event at fault, by position in the request (capture's 400s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Capture's id of the request, also in its log and `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `GET /health`'s answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    pub service: String,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "the process is up", body = Health)))]
pub fn health() {}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "the metrics", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub fn metrics() {}

/// Adds the security schemes the services use: `api_key` (a project key in
/// `X-API-Key`) and `bearer` (auth's login token).
#[derive(Debug, Clone, Copy)]
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// A router serving `doc` at `GET /openapi.json`.
pub fn router(doc: &OpenApi) -> Router {
    let body = doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document does not serialise");
        "{}".to_owned()
    });
    Router::new().route(
        "/openapi.json",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    )
}
