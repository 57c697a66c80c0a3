//! HTTP routes of saved insights and dashboards: `/api/insights`,
//! `/api/dashboards` (create, list, read, change, delete) and
//! `GET /api/dashboards/{id}/results`. Scoped to the key's project as
//! queries are: another project's insight or dashboard is 404. A key of
//! scope `query` reads; saving needs one of scope `dashboards` (403
//! `insufficient_scope` otherwise), and never works without a key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tributary_core::keys::{KeyCheck, KeyRefusal};

use crate::api::{self, ApiError, AppState, Kind};
use crate::cache::result_key;
use crate::request::{self, RequestError};
use crate::saved::{
    self, Dashboard, DashboardPatch, Insight, InsightKind, InsightPatch, NewDashboard, NewInsight,
};
use crate::store::{DashboardFields, InsightFields, Saved, Store, StoreError};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/insights", get(list_insights).post(create_insight))
        .route(
            "/api/insights/{id}",
            get(read_insight)
                .patch(change_insight)
                .delete(delete_insight),
        )
        .route(
            "/api/dashboards",
            get(list_dashboards).post(create_dashboard),
        )
        .route(
            "/api/dashboards/{id}",
            get(read_dashboard)
                .patch(change_dashboard)
                .delete(delete_dashboard),
        )
        .route("/api/dashboards/{id}/results", get(dashboard_results))
}

type Answer = Result<Response, ApiError>;

/// The answer, or the error's, counted and logged as the query routes do.
fn respond(state: &AppState, what: &str, answer: Answer) -> Response {
    answer.unwrap_or_else(|e| {
        state.metrics.error(e.kind());
        if e.status().is_server_error() {
            tracing::warn!(route = what, error = %e, "saved insights request failed");
        }
        e.into_response()
    })
}

fn store(state: &AppState) -> Result<&Store, ApiError> {
    state.store.as_ref().ok_or(ApiError::NoStore)
}

/// Project ids are Postgres `BIGINT`s.
fn row_project(project: u64) -> Result<i64, ApiError> {
    i64::try_from(project).map_err(|_| ApiError::Key(KeyRefusal::Invalid))
}

/// The project a reading request may see.
async fn reader(state: &AppState, headers: &HeaderMap) -> Result<i64, ApiError> {
    row_project(api::project(state, headers).await?)
}

/// The project a writing request may change: its key must be of scope
/// `dashboards`; a key that may only read is told so (403).
async fn writer(state: &AppState, headers: &HeaderMap) -> Result<i64, ApiError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Key(KeyRefusal::Missing))?;
    let unavailable = |e: tributary_core::keys::KeyError| ApiError::KeyUnavailable(e.0);
    match state.writers.check(key).await.map_err(unavailable)? {
        KeyCheck::Valid { .. } => {
            // Counted against the key's rate like any request, and its
            // project taken as reads take it.
            reader(state, headers).await
        }
        KeyCheck::Unknown => match state.keys.check(key).await.map_err(unavailable)? {
            KeyCheck::Valid { .. } => Err(ApiError::Scope),
            KeyCheck::Unknown => Err(ApiError::Key(KeyRefusal::Invalid)),
        },
    }
}

fn id_of(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|&id| id >= 1)
        .ok_or_else(|| ApiError::Request(RequestError::new("id", "an id (1 or more)")))
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::UnknownInsight { field, insight_id } => ApiError::Request(RequestError::new(
            field,
            if insight_id > 0 {
                format!("no insight {insight_id} in this project")
            } else {
                "an insight of the tiles was deleted meanwhile".to_owned()
            },
        )),
        other => ApiError::Store(other),
    }
}

fn kind_of(kind: InsightKind) -> Kind {
    match kind {
        InsightKind::Trend => Kind::Trend,
        InsightKind::Funnel => Kind::Funnel,
        InsightKind::Retention => Kind::Retention,
    }
}

/// An insight's fields, checked as a save needs them: the query is planned
/// exactly as its query route would plan it.
fn checked_insight(
    state: &AppState,
    project: i64,
    name: &str,
    description: &str,
    kind: InsightKind,
    query: Value,
) -> Result<InsightFields, ApiError> {
    let bytes = serde_json::to_vec(&query).unwrap_or_default();
    api::prepare(
        kind_of(kind),
        &bytes,
        project.unsigned_abs(),
        state.warehouse.database(),
    )
    .map_err(|e| ApiError::Request(saved::in_query(e)))?;
    Ok(InsightFields {
        name: saved::check_name(name).map_err(ApiError::Request)?,
        description: saved::check_description(description).map_err(ApiError::Request)?,
        kind,
        query,
    })
}

async fn create_insight(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let project = writer(&state, &headers).await?;
        let new: NewInsight = request::parse(&body).map_err(ApiError::Request)?;
        let fields = checked_insight(
            &state,
            project,
            &new.name,
            &new.description,
            new.kind,
            new.query,
        )?;
        let insight = store(&state)?
            .create_insight(project, &fields)
            .await
            .map_err(store_error)?;
        tracing::info!(
            project_id = project,
            insight_id = insight.id,
            kind = insight.kind.name(),
            "insight saved"
        );
        Ok((StatusCode::CREATED, Json(insight)).into_response())
    };
    respond(&state, "create insight", answer.await)
}

async fn list_insights(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let answer = async {
        let project = reader(&state, &headers).await?;
        let insights = store(&state)?
            .insights(project)
            .await
            .map_err(store_error)?;
        Ok(Json(json!({ "insights": insights })).into_response())
    };
    respond(&state, "list insights", answer.await)
}

async fn one_insight(state: &AppState, project: i64, id: i64) -> Result<Insight, ApiError> {
    store(state)?
        .insight(project, id)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::Missing("insight", id))
}

async fn read_insight(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let answer = async {
        let project = reader(&state, &headers).await?;
        let id = id_of(&id)?;
        Ok(Json(one_insight(&state, project, id).await?).into_response())
    };
    respond(&state, "read insight", answer.await)
}

async fn change_insight(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer = async {
        let project = writer(&state, &headers).await?;
        let id = id_of(&id)?;
        let patch: InsightPatch = request::parse(&body).map_err(ApiError::Request)?;
        let old = one_insight(&state, project, id).await?;
        let fields = checked_insight(
            &state,
            project,
            patch.name.as_deref().unwrap_or(&old.name),
            patch.description.as_deref().unwrap_or(&old.description),
            patch.kind.unwrap_or(old.kind),
            patch.query.unwrap_or(old.query),
        )?;
        let insight = store(&state)?
            .update_insight(project, id, &fields)
            .await
            .map_err(store_error)?
            .ok_or(ApiError::Missing("insight", id))?;
        tracing::info!(project_id = project, insight_id = id, "insight changed");
        Ok(Json(insight).into_response())
    };
    respond(&state, "change insight", answer.await)
}

async fn delete_insight(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    delete_one(&state, &headers, &id, Saved::Insight).await
}

async fn delete_dashboard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    delete_one(&state, &headers, &id, Saved::Dashboard).await
}

/// `DELETE /api/insights/{id}` and `DELETE /api/dashboards/{id}`.
async fn delete_one(state: &AppState, headers: &HeaderMap, id: &str, what: Saved) -> Response {
    let answer = async {
        let project = writer(state, headers).await?;
        let id = id_of(id)?;
        if !store(state)?
            .delete(what, project, id)
            .await
            .map_err(store_error)?
        {
            return Err(ApiError::Missing(what.name(), id));
        }
        tracing::info!(project_id = project, id, what = what.name(), "deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(state, &format!("delete {}", what.name()), answer.await)
}

fn checked_dashboard(
    name: &str,
    description: &str,
    tiles: Vec<saved::Tile>,
) -> Result<DashboardFields, ApiError> {
    saved::check_tiles(&tiles).map_err(ApiError::Request)?;
    Ok(DashboardFields {
        name: saved::check_name(name).map_err(ApiError::Request)?,
        description: saved::check_description(description).map_err(ApiError::Request)?,
        tiles,
    })
}

async fn create_dashboard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let project = writer(&state, &headers).await?;
        let new: NewDashboard = request::parse(&body).map_err(ApiError::Request)?;
        let fields = checked_dashboard(&new.name, &new.description, new.tiles)?;
        let dashboard = store(&state)?
            .create_dashboard(project, &fields)
            .await
            .map_err(store_error)?;
        tracing::info!(
            project_id = project,
            dashboard_id = dashboard.id,
            "dashboard saved"
        );
        Ok((StatusCode::CREATED, Json(dashboard)).into_response())
    };
    respond(&state, "create dashboard", answer.await)
}

async fn list_dashboards(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let answer = async {
        let project = reader(&state, &headers).await?;
        let dashboards = store(&state)?
            .dashboards(project)
            .await
            .map_err(store_error)?;
        Ok(Json(json!({ "dashboards": dashboards })).into_response())
    };
    respond(&state, "list dashboards", answer.await)
}

async fn one_dashboard(state: &AppState, project: i64, id: i64) -> Result<Dashboard, ApiError> {
    store(state)?
        .dashboard(project, id)
        .await
        .map_err(store_error)?
        .ok_or(ApiError::Missing("dashboard", id))
}

async fn read_dashboard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let answer = async {
        let project = reader(&state, &headers).await?;
        let id = id_of(&id)?;
        Ok(Json(one_dashboard(&state, project, id).await?).into_response())
    };
    respond(&state, "read dashboard", answer.await)
}

async fn change_dashboard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer = async {
        let project = writer(&state, &headers).await?;
        let id = id_of(&id)?;
        let patch: DashboardPatch = request::parse(&body).map_err(ApiError::Request)?;
        let old = one_dashboard(&state, project, id).await?;
        let tiles_given = patch.tiles.is_some();
        let fields = checked_dashboard(
            patch.name.as_deref().unwrap_or(&old.name),
            patch.description.as_deref().unwrap_or(&old.description),
            patch.tiles.unwrap_or(old.tiles),
        )?;
        let dashboard = store(&state)?
            .update_dashboard(
                project,
                id,
                &fields.name,
                &fields.description,
                tiles_given.then_some(fields.tiles.as_slice()),
            )
            .await
            .map_err(store_error)?
            .ok_or(ApiError::Missing("dashboard", id))?;
        tracing::info!(project_id = project, dashboard_id = id, "dashboard changed");
        Ok(Json(dashboard).into_response())
    };
    respond(&state, "change dashboard", answer.await)
}

/// `?refresh=true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsParams {
    #[serde(default)]
    refresh: Option<String>,
}

/// One tile's answer: the query's answer (cached as queries are, saying
/// when it was computed), or its error; one failing insight does not fail
/// the others.
async fn tile_result(state: &AppState, project: i64, insight: &Insight, refresh: bool) -> Value {
    let answer = async {
        let bytes = serde_json::to_vec(&insight.query).unwrap_or_default();
        let kind = kind_of(insight.kind);
        let (prepared, normalised) = api::prepare(
            kind,
            &bytes,
            project.unsigned_abs(),
            state.warehouse.database(),
        )
        .map_err(|e| ApiError::Request(saved::in_query(e)))?;
        let key = result_key(
            state.warehouse.source(),
            project.unsigned_abs(),
            kind.name(),
            &normalised,
        );
        Ok::<_, ApiError>(match api::cached(state, &key, refresh).await {
            Some(v) => api::stamped(v, true),
            None => api::stamped(api::compute(state, &prepared, &key).await?, false),
        })
    };
    match answer.await {
        Ok(result) => json!({"result": result, "error": null}),
        Err(e) => {
            state.metrics.error(e.kind());
            tracing::warn!(project_id = project, insight_id = insight.id, error = %e, "dashboard insight failed");
            json!({"result": null, "error": e.body()})
        }
    }
}

async fn dashboard_results(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<ResultsParams>,
) -> Response {
    let answer = async {
        let started = Instant::now();
        let project = reader(&state, &headers).await?;
        let id = id_of(&id)?;
        let refresh = api::flag(params.refresh.as_deref(), "refresh")?;
        let dashboard = one_dashboard(&state, project, id).await?;
        let ids: Vec<i64> = dashboard.tiles.iter().map(|t| t.insight_id).collect();
        let insights: HashMap<i64, Insight> = store(&state)?
            .insights_among(project, &ids)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|i| (i.id, i))
            .collect();
        let runs = dashboard.tiles.iter().map(|tile| {
            let state = &state;
            let insight = insights.get(&tile.insight_id);
            async move {
                let mut out = match insight {
                    Some(insight) => tile_result(state, project, insight, refresh).await,
                    // Deleted between the two reads.
                    None => json!({"result": null, "error": ApiError::Missing("insight", tile.insight_id).body()}),
                };
                out["tile"] = json!(tile);
                out["insight"] = json!(insight);
                out
            }
        });
        let results = futures::future::join_all(runs).await;
        tracing::info!(
            project_id = project,
            dashboard_id = id,
            tiles = results.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "dashboard answered"
        );
        Ok(Json(json!({"dashboard": dashboard, "results": results})).into_response())
    };
    respond(&state, "dashboard results", answer.await)
}
