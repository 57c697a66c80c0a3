//! The OpenAPI paths of saved insights and dashboards
//! ([`crate::saved_api`]); part of [`crate::openapi::document`].
#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use tributary_core::openapi::ErrorBody;
use utoipa::ToSchema;

use crate::saved::{
    Dashboard, DashboardPatch, Insight, InsightPatch, NewDashboard, NewInsight, Tile,
};

/// `GET /api/insights`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Insights {
    pub insights: Vec<Insight>,
}

/// `GET /api/dashboards`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboards {
    pub dashboards: Vec<Dashboard>,
}

/// One tile of `GET /api/dashboards/{id}/results`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TileResult {
    pub tile: Tile,
    /// The insight (null if it was deleted meanwhile).
    pub insight: Option<Insight>,
    /// The query's answer, with `cached` and `computed_at`; null when it
    /// failed.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Why it failed; null when it did not.
    pub error: Option<ErrorBody>,
}

/// `GET /api/dashboards/{id}/results`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardResults {
    pub dashboard: Dashboard,
    /// In the dashboard's order.
    pub results: Vec<TileResult>,
}

/// Saves an insight (a key of scope `dashboards`).
#[utoipa::path(post, path = "/api/insights", tag = "saved", security(("api_key" = [])),
    request_body = NewInsight,
    responses(
        (status = 201, description = "the insight", body = Insight),
        (status = 400, description = "bad input, naming the field (`query.…` for the request)", body = ErrorBody),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 403, description = "a key that may only read", body = ErrorBody),
        (status = 409, description = "the project keeps QUERY_MAX_INSIGHTS_PER_PROJECT insights already", body = ErrorBody),
        (status = 413, description = "a body past 2 MiB", body = String, content_type = "text/plain"),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn create_insight() {}

/// The project's insights.
#[utoipa::path(get, path = "/api/insights", tag = "saved", security(("api_key" = [])),
    responses(
        (status = 200, description = "the insights, oldest first", body = Insights),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn list_insights() {}

/// One insight.
#[utoipa::path(get, path = "/api/insights/{id}", tag = "saved", security(("api_key" = [])),
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "the insight", body = Insight),
        (status = 400, description = "not an id", body = ErrorBody),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 404, description = "no such insight in this project", body = ErrorBody),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn read_insight() {}

/// Changes an insight: the fields given replace the saved ones, checked as
/// on save.
#[utoipa::path(patch, path = "/api/insights/{id}", tag = "saved", security(("api_key" = [])),
    params(("id" = i64, Path, minimum = 1)),
    request_body = InsightPatch,
    responses(
        (status = 200, description = "the insight", body = Insight),
        (status = 400, description = "bad input, naming the field", body = ErrorBody),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 403, description = "a key that may only read", body = ErrorBody),
        (status = 404, description = "no such insight in this project", body = ErrorBody),
        (status = 413, description = "a body past 2 MiB", body = String, content_type = "text/plain"),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn change_insight() {}

/// Deletes an insight and takes it off every dashboard.
#[utoipa::path(delete, path = "/api/insights/{id}", tag = "saved", security(("api_key" = [])),
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "not an id", body = ErrorBody),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 403, description = "a key that may only read", body = ErrorBody),
        (status = 404, description = "no such insight in this project", body = ErrorBody),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn delete_insight() {}

/// Saves a dashboard (a key of scope `dashboards`).
#[utoipa::path(post, path = "/api/dashboards", tag = "saved", security(("api_key" = [])),
    request_body = NewDashboard,
    responses(
        (status = 201, description = "the dashboard", body = Dashboard),
        (status = 400, description = "bad input, naming the field (`tiles[i].insight_id` for an insight this project lacks)", body = ErrorBody),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 403, description = "a key that may only read", body = ErrorBody),
        (status = 409, description = "the project keeps QUERY_MAX_DASHBOARDS_PER_PROJECT dashboards already", body = ErrorBody),
        (status = 413, description = "a body past 2 MiB", body = String, content_type = "text/plain"),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn create_dashboard() {}

/// The project's dashboards.
#[utoipa::path(get, path = "/api/dashboards", tag = "saved", security(("api_key" = [])),
    responses(
        (status = 200, description = "the dashboards, oldest first", body = Dashboards),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn list_dashboards() {}

/// One dashboard.
#[utoipa::path(get, path = "/api/dashboards/{id}", tag = "saved", security(("api_key" = [])),
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "the dashboard", body = Dashboard),
        (status = 400, description = "not an id", body = ErrorBody),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 404, description = "no such dashboard in this project", body = ErrorBody),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn read_dashboard() {}

/// Changes a dashboard: the fields given replace the saved ones (`tiles`
/// as a whole).
#[utoipa::path(patch, path = "/api/dashboards/{id}", tag = "saved", security(("api_key" = [])),
    params(("id" = i64, Path, minimum = 1)),
    request_body = DashboardPatch,
    responses(
        (status = 200, description = "the dashboard", body = Dashboard),
        (status = 400, description = "bad input, naming the field", body = ErrorBody),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 403, description = "a key that may only read", body = ErrorBody),
        (status = 404, description = "no such dashboard in this project", body = ErrorBody),
        (status = 413, description = "a body past 2 MiB", body = String, content_type = "text/plain"),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn change_dashboard() {}

/// Deletes a dashboard (not its insights).
#[utoipa::path(delete, path = "/api/dashboards/{id}", tag = "saved", security(("api_key" = [])),
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "not an id", body = ErrorBody),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 403, description = "a key that may only read", body = ErrorBody),
        (status = 404, description = "no such dashboard in this project", body = ErrorBody),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn delete_dashboard() {}

/// Every insight of a dashboard answered, cached as queries are; one that
/// fails says why in its place and the others answer.
#[utoipa::path(get, path = "/api/dashboards/{id}/results", tag = "saved", security(("api_key" = [])),
    params(
        ("id" = i64, Path, minimum = 1),
        ("refresh" = Option<bool>, Query, description = "skip the cache"),
    ),
    responses(
        (status = 200, description = "each tile's answer or error", body = DashboardResults),
        (status = 400, description = "bad input, naming it", content(
            (ErrorBody = "application/json"), (String = "text/plain"))),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 404, description = "no such dashboard in this project", body = ErrorBody),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Postgres unavailable, or no POSTGRES_DSN", body = ErrorBody),
    ))]
pub fn dashboard_results() {}
