//! Query's OpenAPI document, served at `GET /openapi.json`. Requests are
//! the handlers' own types (`crate::request`); answers are built as JSON
//! by the plans, so their shapes are written down here, and
//! `workloads/cli/tests/schemathesis.rs` checks the running service against
//! them.

use serde::Serialize;
use serde_json::Value;
use tributary_core::openapi::{ErrorBody, SecuritySchemes};
use utoipa::{OpenApi, ToSchema};

use crate::request::{
    ExclusionRequest, FunnelOrderRequest, FunnelRequest, Interval, Math, Operator, Period,
    PropertyFilter, RetentionRequest, Series, Step, TrendRequest,
};

/// One line of a trend.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendLine {
    /// The series' position in the request.
    pub series: u32,
    pub event: String,
    pub math: String,
    /// One number per bucket.
    pub data: Vec<f64>,
    pub breakdown_value: Option<String>,
    /// The line of the values past the top 25.
    pub other: Option<bool>,
}

/// `POST /api/query/trend`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendAnswer {
    pub interval: String,
    pub timezone: String,
    pub date_from: String,
    pub date_to: String,
    /// The buckets' starts.
    pub buckets: Vec<String>,
    pub results: Vec<TrendLine>,
    /// Whether the answer came from the cache.
    pub cached: bool,
    /// When it was computed (a cached answer keeps the time it was computed).
    pub computed_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FunnelStep {
    pub step: u32,
    pub event: String,
    pub count: u64,
    pub conversion_from_first: f64,
    pub conversion_from_previous: f64,
    pub median_time_to_convert_seconds: Option<f64>,
    pub average_time_to_convert_seconds: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FunnelBreakdown {
    pub breakdown_value: Option<String>,
    pub other: bool,
    pub steps: Vec<FunnelStep>,
}

/// `POST /api/query/funnel`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunnelAnswer {
    pub order: String,
    pub conversion_window_seconds: u64,
    pub timezone: String,
    pub date_from: String,
    pub date_to: String,
    pub steps: Vec<FunnelStep>,
    pub breakdown: Option<Vec<FunnelBreakdown>>,
    pub cached: bool,
    pub computed_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cohort {
    /// The cohort's first day, `YYYY-MM-DD`.
    pub date: String,
    pub start: String,
    pub size: u64,
    /// Users of the cohort back in each period.
    pub values: Vec<u64>,
}

/// `POST /api/query/retention`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionAnswer {
    pub period: String,
    pub timezone: String,
    pub date_from: String,
    pub date_to: String,
    pub cohorts: Vec<Cohort>,
    pub cached: bool,
    pub computed_at: Option<String>,
}

/// `?async=true`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAccepted {
    pub job_id: String,
    /// `running` or `complete`.
    pub status: String,
    pub status_url: String,
}

/// `GET /api/query/jobs/{id}`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    /// `trend`, `funnel` or `retention`.
    pub kind: String,
    pub created_at: String,
    /// `running`, `complete` or `failed`.
    pub status: String,
    /// The answer, once complete.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<ErrorBody>,
    pub finished_at: Option<String>,
}

/// `/ready`'s answer while ClickHouse answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub status: String,
    pub clickhouse: String,
    /// `ok` or `unavailable` (the cache is optional).
    pub redis: String,
}

macro_rules! query_path {
    ($name:ident, $path:literal, $request:ty, $answer:ty, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "query", security(("api_key" = [])),
            params(
                ("async" = Option<bool>, Query, description = "answer 202 with a job to poll"),
                ("refresh" = Option<bool>, Query, description = "skip the cache"),
            ),
            request_body = $request,
            responses(
                (status = 200, description = "the answer", body = $answer),
                (status = 202, description = "the job computing it", body = JobAccepted),
                (status = 400, description = "bad input, naming the field", content(
                    (ErrorBody = "application/json"), (String = "text/plain"))),
                (status = 401, description = "no valid key", body = ErrorBody),
                (status = 413, description = "a body past 2 MiB", body = String, content_type = "text/plain"),
                (status = 429, description = "past the key's rate or its project's jobs", body = ErrorBody),
                (status = 502, description = "ClickHouse failed", body = ErrorBody),
                (status = 503, description = "auth or Redis unavailable", body = ErrorBody),
                (status = 504, description = "past QUERY_TIMEOUT_SECS", body = ErrorBody),
            ))]
        pub fn $name() {}
    };
}

query_path!(
    trend,
    "/api/query/trend",
    TrendRequest,
    TrendAnswer,
    "Events over time."
);
query_path!(
    funnel,
    "/api/query/funnel",
    FunnelRequest,
    FunnelAnswer,
    "Conversion through steps."
);
query_path!(
    retention,
    "/api/query/retention",
    RetentionRequest,
    RetentionAnswer,
    "Cohorts coming back."
);

/// A job started with `?async=true`.
#[utoipa::path(get, path = "/api/query/jobs/{id}", tag = "query", security(("api_key" = [])),
    params(("id" = String, Path, description = "the job_id")),
    responses(
        (status = 200, description = "the job", body = Job),
        (status = 401, description = "no valid key", body = ErrorBody),
        (status = 404, description = "no such job for this project", body = ErrorBody),
        (status = 429, description = "past the key's rate", body = ErrorBody),
        (status = 503, description = "auth or Redis unavailable", body = ErrorBody),
    ))]
pub fn job() {}

/// Whether ClickHouse answers and the events table exists.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "ready", body = Ready),
        (status = 503, description = "not ready, naming what", body = ErrorBody),
    ))]
pub fn ready() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tributary query", description = "Trends, funnels and retention over the events of a project."),
    paths(trend, funnel, retention, job, ready,
        crate::openapi_saved::create_insight, crate::openapi_saved::list_insights,
        crate::openapi_saved::read_insight, crate::openapi_saved::change_insight,
        crate::openapi_saved::delete_insight, crate::openapi_saved::create_dashboard,
        crate::openapi_saved::list_dashboards, crate::openapi_saved::read_dashboard,
        crate::openapi_saved::change_dashboard, crate::openapi_saved::delete_dashboard,
        crate::openapi_saved::dashboard_results,
        tributary_core::openapi::health, tributary_core::openapi::metrics),
    components(schemas(Series, Step, ExclusionRequest, PropertyFilter, Interval, Period, Math,
        Operator, FunnelOrderRequest)),
    modifiers(&SecuritySchemes)
)]
pub struct QueryApi;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    QueryApi::openapi()
}
