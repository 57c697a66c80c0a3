//! HTTP routes: `POST /api/query/{trend,funnel,retention}` (`?async=true`,
//! `?refresh=true`), `GET /api/query/jobs/{id}`, `GET /ready`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tributary_core::http::error_body;
use tributary_core::keys::{KeyRefusal, KeyValidator, Keyless, project_for};

use crate::cache::{Cache, job_key, job_view, result_key};
use crate::funnel;
use crate::metrics::{QueryMetrics, RequestLabels};
use crate::request::{self, RequestError};
use crate::warehouse::{Warehouse, WarehouseError};
use crate::{retention, trend};

pub struct AppState {
    pub warehouse: Warehouse,
    pub cache: Cache,
    pub keys: Arc<dyn KeyValidator>,
    /// Keys that may save insights and dashboards (scope `dashboards`).
    pub writers: Arc<dyn KeyValidator>,
    /// Saved insights and dashboards (`None` without `POSTGRES_DSN`).
    pub store: Option<crate::store::Store>,
    pub metrics: QueryMetrics,
    /// What becomes of requests without a key.
    pub keyless: Keyless,
    pub permits: Semaphore,
    pub timeout_ms: i64,
    /// Requests per key (`None`: unlimited).
    pub per_key: Option<tributary_core::rate::Limiter>,
    /// Async jobs running per project.
    pub jobs: Arc<Jobs>,
}

/// Async jobs running per project in this process, bounded.
#[derive(Debug)]
pub struct Jobs {
    max: usize,
    running: std::sync::Mutex<std::collections::HashMap<u64, usize>>,
}

impl Jobs {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            running: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, usize>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One more job of `project`, or `Err` with the limit when it has as
    /// many running already.
    fn start(self: &Arc<Self>, project: u64) -> Result<JobSlot, usize> {
        let mut running = self.running();
        let n = running.entry(project).or_insert(0);
        if *n >= self.max {
            return Err(self.max);
        }
        *n += 1;
        Ok(JobSlot {
            jobs: Arc::clone(self),
            project,
        })
    }
}

/// A running job's place, given back when it ends (or its task is dropped).
struct JobSlot {
    jobs: Arc<Jobs>,
    project: u64,
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        let mut running = self.jobs.running();
        if let Some(n) = running.get_mut(&self.project) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.project);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Trend,
    Funnel,
    Retention,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Trend => "trend",
            Self::Funnel => "funnel",
            Self::Retention => "retention",
        }
    }
}

/// A validated query, ready to run.
pub(crate) enum Prepared {
    Trend(trend::TrendPlan),
    Funnel(funnel::FunnelPlan),
    Retention(retention::RetentionPlan),
}

/// Everything that turns into an error answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    Request(RequestError),
    #[error("{0}")]
    Key(KeyRefusal),
    #[error("{0}")]
    KeyUnavailable(String),
    #[error("{0}")]
    Warehouse(WarehouseError),
    #[error("{0}")]
    Answer(String),
    #[error("{0}")]
    Redis(String),
    #[error("no job {0} in this project (jobs are kept for QUERY_JOB_TTL_SECS)")]
    NoJob(String),
    /// No such insight or dashboard in the key's project.
    #[error("no {0} {1} in this project")]
    Missing(&'static str, i64),
    #[error(
        "saved insights and dashboards need POSTGRES_DSN, which this query service was not given"
    )]
    NoStore,
    #[error("{0}")]
    Store(crate::store::StoreError),
    #[error("this key may read but not save insights or dashboards: use a key of scope dashboards")]
    Scope,
    #[error("too many requests for this key (QUERY_RATE_LIMIT_PER_KEY); retry after {} s", tributary_core::rate::retry_after_secs(*.0))]
    RateLimited(std::time::Duration),
    #[error(
        "this project has {0} async queries running (QUERY_MAX_JOBS_PER_PROJECT); wait for one to finish"
    )]
    TooManyJobs(usize),
}

impl ApiError {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Request(_) => "invalid_request",
            Self::Key(KeyRefusal::Missing) => "missing_api_key",
            Self::Key(KeyRefusal::Invalid) => "invalid_api_key",
            Self::KeyUnavailable(_) => "auth_unavailable",
            Self::Warehouse(WarehouseError::Timeout(_)) => "timeout",
            Self::Warehouse(WarehouseError::Unavailable { .. }) => "clickhouse_unavailable",
            Self::Warehouse(WarehouseError::ShardUnavailable { .. }) => {
                "clickhouse_shard_unavailable"
            }
            Self::Warehouse(_) | Self::Answer(_) => "clickhouse_error",
            Self::Redis(_) => "redis_unavailable",
            Self::NoJob(_) | Self::Missing(..) => "not_found",
            Self::NoStore => "saved_insights_unavailable",
            Self::Store(crate::store::StoreError::Unreadable(_)) => "postgres_error",
            Self::Store(crate::store::StoreError::Full { .. }) => "limit_reached",
            Self::Store(_) => "postgres_unavailable",
            Self::Scope => "insufficient_scope",
            Self::RateLimited(_) => "rate_limited",
            Self::TooManyJobs(_) => "too_many_jobs",
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Request(_) => StatusCode::BAD_REQUEST,
            Self::Key(_) => StatusCode::UNAUTHORIZED,
            Self::KeyUnavailable(_) | Self::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Warehouse(WarehouseError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Self::Warehouse(_) | Self::Answer(_) => StatusCode::BAD_GATEWAY,
            Self::NoJob(_) | Self::Missing(..) => StatusCode::NOT_FOUND,
            Self::Store(crate::store::StoreError::Full { .. }) => StatusCode::CONFLICT,
            Self::NoStore | Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Scope => StatusCode::FORBIDDEN,
            Self::RateLimited(_) | Self::TooManyJobs(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// What the client is told. Failures on our side name what failed and
    /// never its address or its own words (ClickHouse's and Redis' errors
    /// carry hosts and internals); the log has those (`Display`).
    fn message(&self) -> String {
        match self {
            Self::KeyUnavailable(_) => {
                "the auth service cannot check keys now; retry shortly".into()
            }
            Self::Warehouse(WarehouseError::Unavailable { .. }) => {
                "ClickHouse is unreachable; retry shortly".into()
            }
            Self::Warehouse(WarehouseError::Rejected { code, .. }) => {
                format!("ClickHouse refused the query (code {code}); query's log has its message")
            }
            Self::Warehouse(WarehouseError::Unreadable(_)) | Self::Answer(_) => {
                "ClickHouse's answer could not be read; query's log has why".into()
            }
            Self::Warehouse(e @ WarehouseError::ShardUnavailable { .. }) => {
                format!("{}; retry shortly", shard_message(e))
            }
            Self::Redis(_) => "Redis is unavailable; retry shortly".into(),
            Self::Store(crate::store::StoreError::NotMigrated) => {
                "saved insights are not ready: their Postgres migration has not run yet; retry shortly"
                    .into()
            }
            Self::Store(e @ crate::store::StoreError::Full { .. }) => e.to_string(),
            Self::Store(_) => "Postgres is unavailable; retry shortly".into(),
            other => other.to_string(),
        }
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = json!({"error": self.kind(), "message": self.message()});
        if let Self::Request(e) = self {
            body["field"] = json!(e.field);
            body["message"] = json!(e.message);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = match &self {
            Self::RateLimited(wait) => Some(tributary_core::rate::retry_after_secs(*wait)),
            Self::TooManyJobs(_) => Some(5),
            _ => None,
        };
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Some(secs) = retry {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// The handler of one query kind.
macro_rules! route {
    ($kind:expr) => {
        |state: State<Arc<AppState>>, params: Query<Params>, headers: HeaderMap, body: Bytes| {
            answer(state, params, headers, body, $kind)
        }
    };
}

pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/query/trend", post(route!(Kind::Trend)))
        .route("/api/query/funnel", post(route!(Kind::Funnel)))
        .route("/api/query/retention", post(route!(Kind::Retention)))
        .route("/api/query/jobs/{id}", get(job_route))
        .merge(crate::saved_api::routes())
        .route("/ready", get(ready))
        .route("/health/detailed", get(detailed))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts every request by its route template and status.
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = tributary_core::http::route_template(&request);
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `?async=true&refresh=true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default, rename = "async")]
    run_async: Option<String>,
    #[serde(default)]
    refresh: Option<String>,
}

pub(crate) fn flag(value: Option<&str>, name: &str) -> Result<bool, ApiError> {
    match value {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(other) => Err(ApiError::Request(RequestError::new(
            name,
            format!("{other:?} is not true or false"),
        ))),
    }
}

/// The project of a request, from its `X-API-Key`.
pub(crate) async fn project(state: &AppState, headers: &HeaderMap) -> Result<u64, ApiError> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let check = match key {
        Some(k) => Some(
            state
                .keys
                .check(k)
                .await
                .map_err(|e| ApiError::KeyUnavailable(e.0))?,
        ),
        None => None,
    };
    let project = project_for(state.keyless, check).map_err(ApiError::Key)?;
    // Valid keys only: an unknown one was refused above.
    if let (Some(limiter), Some(k)) = (&state.per_key, key)
        && let Err(wait) = limiter.take(k, Instant::now())
    {
        return Err(ApiError::RateLimited(wait));
    }
    Ok(project)
}

pub(crate) fn prepare(
    kind: Kind,
    body: &[u8],
    project: u64,
    database: &str,
) -> Result<(Prepared, Value), RequestError> {
    let now = Utc::now();
    let normalised = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    Ok(match kind {
        Kind::Trend => {
            let r: request::TrendRequest = request::parse(body)?;
            let plan = trend::plan(&r, project, database, now)?;
            crate::sql::check_size(plan.series.iter().map(|s| s.sql.len()).sum())?;
            (Prepared::Trend(plan), normalised(serde_json::to_value(&r)))
        }
        Kind::Funnel => {
            let r: request::FunnelRequest = request::parse(body)?;
            let plan = funnel::plan(&r, project, database, now)?;
            crate::sql::check_size(plan.sql_bytes())?;
            (Prepared::Funnel(plan), normalised(serde_json::to_value(&r)))
        }
        Kind::Retention => {
            let r: request::RetentionRequest = request::parse(body)?;
            let plan = retention::plan(&r, project, database, now)?;
            crate::sql::check_size(plan.sql.len())?;
            (
                Prepared::Retention(plan),
                normalised(serde_json::to_value(&r)),
            )
        }
    })
}

/// Runs a prepared query on ClickHouse, within the concurrency limit.
async fn execute(state: &AppState, prepared: &Prepared) -> Result<Value, ApiError> {
    let _permit = state
        .permits
        .acquire()
        .await
        .map_err(|e| ApiError::Answer(e.to_string()))?;
    let started = Instant::now();
    let wh = &state.warehouse;
    let (answer, histogram) = match prepared {
        Prepared::Trend(plan) => {
            let results = wh.trend(plan).await.map_err(ApiError::Warehouse)?;
            let a = trend::assemble(plan, &results).map_err(|e| ApiError::Answer(e.to_string()))?;
            (a, &state.metrics.trend_duration)
        }
        Prepared::Funnel(plan) => {
            let a = wh.funnel(plan).await.map_err(ApiError::Warehouse)?;
            (a, &state.metrics.funnel_duration)
        }
        Prepared::Retention(plan) => {
            let rows = wh.retention(plan).await.map_err(ApiError::Warehouse)?;
            let a =
                retention::assemble(plan, &rows).map_err(|e| ApiError::Answer(e.to_string()))?;
            (a, &state.metrics.retention_duration)
        }
    };
    histogram.observe(started.elapsed().as_secs_f64());
    Ok(answer)
}

/// The answer marked as read from the cache or not; it carries the time
/// it was computed ([`compute`]).
pub(crate) fn stamped(mut answer: Value, cached: bool) -> Value {
    answer["cached"] = json!(cached);
    answer
}

/// The answer cached under `key`, unless `refresh`; a cache that cannot
/// answer counts as a miss.
pub(crate) async fn cached(state: &AppState, key: &str, refresh: bool) -> Option<Value> {
    if refresh {
        return None;
    }
    match state.cache.get(key).await {
        Ok(Some(v)) => {
            state.metrics.cache("hit");
            Some(v)
        }
        Ok(None) => {
            state.metrics.cache("miss");
            None
        }
        Err(e) => {
            state.metrics.cache("error");
            tracing::warn!(error = %e, "cache unavailable; computing without it");
            None
        }
    }
}

/// Computes an answer, stamps when (`computed_at`, kept in the cache so a
/// cached answer says how old it is) and caches it under `key`.
pub(crate) async fn compute(
    state: &AppState,
    prepared: &Prepared,
    key: &str,
) -> Result<Value, ApiError> {
    let mut answer = execute(state, prepared).await?;
    answer["computed_at"] = json!(Utc::now().to_rfc3339());
    if let Err(e) = state.cache.put(key, &answer, state.cache.ttl).await {
        state.metrics.cache("error");
        tracing::warn!(error = %e, "answer not cached");
    }
    Ok(answer)
}

async fn answer(
    State(state): State<Arc<AppState>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Response {
    let started = Instant::now();
    match answer_inner(&state, &params, &headers, &body, kind).await {
        Ok(response) => response,
        Err(e) => {
            state.metrics.error(e.kind());
            if e.status().is_server_error() {
                tracing::warn!(kind = kind.name(), error = %e, elapsed_ms = started.elapsed().as_millis() as u64, "query failed");
            }
            e.into_response()
        }
    }
}

async fn answer_inner(
    state: &Arc<AppState>,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
    kind: Kind,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let run_async = flag(params.run_async.as_deref(), "async")?;
    let refresh = flag(params.refresh.as_deref(), "refresh")?;
    let project = project(state, headers).await?;
    let (prepared, normalised) =
        prepare(kind, body, project, state.warehouse.database()).map_err(ApiError::Request)?;
    let key = result_key(state.warehouse.source(), project, kind.name(), &normalised);
    let cached = cached(state, &key, refresh).await;
    if run_async {
        return start_job(state, project, kind, prepared, key, cached).await;
    }
    let (answer, was_cached) = match cached {
        Some(v) => (v, true),
        None => (compute(state, &prepared, &key).await?, false),
    };
    tracing::info!(
        project_id = project,
        kind = kind.name(),
        cached = was_cached,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "query answered"
    );
    Ok((StatusCode::OK, Json(stamped(answer, was_cached))).into_response())
}

async fn start_job(
    state: &Arc<AppState>,
    project: u64,
    kind: Kind,
    prepared: Prepared,
    key: String,
    cached: Option<Value>,
) -> Result<Response, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let now_ms = Utc::now().timestamp_millis();
    let mut job = json!({
        "id": id,
        "kind": kind.name(),
        "project_id": project,
        "created_at": Utc::now().to_rfc3339(),
        // Queued jobs wait for a permit; allow for a queue of them.
        "deadline_ms": now_ms + 4 * state.timeout_ms + 60_000,
        "status": "running",
    });
    if let Some(answer) = cached {
        job["status"] = json!("complete");
        job["result"] = stamped(answer, true);
    }
    let complete = job["status"] == "complete";
    let slot = if complete {
        None
    } else {
        Some(
            Arc::clone(&state.jobs)
                .start(project)
                .map_err(ApiError::TooManyJobs)?,
        )
    };
    state
        .cache
        .put(&job_key(&id), &job, state.cache.job_ttl)
        .await
        .map_err(|e| ApiError::Redis(e.to_string()))?;
    if !complete {
        let state = state.clone();
        let job_id = id.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let outcome = compute(&state, &prepared, &key).await;
            let mut job = job;
            match outcome {
                Ok(answer) => {
                    job["status"] = json!("complete");
                    job["result"] = stamped(answer, false);
                }
                Err(e) => {
                    state.metrics.error(e.kind());
                    tracing::warn!(job = %job_id, error = %e, "async query failed");
                    job["status"] = json!("failed");
                    job["error"] = e.body();
                }
            }
            job["finished_at"] = json!(Utc::now().to_rfc3339());
            if let Err(e) = state
                .cache
                .put(&job_key(&job_id), &job, state.cache.job_ttl)
                .await
            {
                tracing::error!(job = %job_id, error = %e, "job result could not be stored");
            }
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "job_id": id,
            "status": if complete { "complete" } else { "running" },
            "status_url": format!("/api/query/jobs/{id}"),
        })),
    )
        .into_response())
}

async fn job_route(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let project = project(&state, &headers).await?;
        if uuid::Uuid::parse_str(&id).is_err() {
            return Err(ApiError::NoJob(id.clone()));
        }
        let job = state
            .cache
            .get(&job_key(&id))
            .await
            .map_err(|e| ApiError::Redis(e.to_string()))?
            .filter(|j| j["project_id"].as_u64() == Some(project))
            .ok_or_else(|| ApiError::NoJob(id.clone()))?;
        Ok(Json(job_view(job, Utc::now().timestamp_millis())).into_response())
    }
    .await;
    result.unwrap_or_else(|e: ApiError| e.into_response())
}

/// Which shard of which cluster does not answer, and why nothing is
/// answered instead: never its address (the log has it).
fn shard_message(e: &WarehouseError) -> String {
    let WarehouseError::ShardUnavailable { cluster, shard, .. } = e else {
        return e.to_string();
    };
    let which = shard.map_or("a shard".to_owned(), |s| format!("shard {s}"));
    format!(
        "{which} of ClickHouse cluster {cluster} is unreachable; an answer without it would count too few events"
    )
}

/// ClickHouse and Redis checked now, with their latency and what is wrong
/// (`tributary_core::health`).
async fn detailed(State(state): State<Arc<AppState>>) -> Response {
    use tributary_core::health::probe;
    let limit = std::time::Duration::from_secs(3);
    let (clickhouse, redis) = tokio::join!(
        probe("clickhouse", limit, state.warehouse.ping(), |e| match e {
            WarehouseError::Unavailable { .. } => "unreachable".to_owned(),
            WarehouseError::Timeout(_) => "did not answer in time".to_owned(),
            WarehouseError::Rejected { code, .. } => format!("refused the check (code {code})"),
            WarehouseError::Unreadable(_) => {
                "answers, but the events table is missing or unreadable".to_owned()
            }
            e @ WarehouseError::ShardUnavailable { .. } => shard_message(e),
        }),
        probe("redis", limit, state.cache.ping(), |_| {
            "unavailable: queries run without the cache, async jobs are refused".to_owned()
        }),
    );
    tributary_core::health::answer(
        "query",
        &[clickhouse, redis],
        json!({"timeout_secs": state.timeout_ms / 1000}),
    )
}

/// 200 when ClickHouse answers and the events table exists.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let redis = match state.cache.ping().await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "Redis does not answer (queries run without the cache)");
            "unavailable"
        }
    };
    // Unauthenticated: it names what is down, never an address or an
    // error's words; the log has those.
    match state.warehouse.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "clickhouse": "ok", "redis": redis})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: ClickHouse");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                error_body(
                    "not_ready",
                    "ClickHouse does not answer, or has no events table",
                ),
            )
                .into_response()
        }
    }
}
