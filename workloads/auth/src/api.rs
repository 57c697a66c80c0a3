//! HTTP routes of the auth service.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sqlx::postgres::PgPool;
use tributary_core::openapi::ErrorBody;

use crate::answers;
use crate::metrics::{AuthMetrics, RequestLabels, RouteLabels};
use crate::secrets;
use crate::store::{self, Project, StoreError};
use crate::throttle::LoginThrottle;

pub struct AppState {
    pub pool: PgPool,
    pub jwt_secret: String,
    pub jwt_ttl_secs: i64,
    pub throttle: Mutex<LoginThrottle>,
    pub metrics: AuthMetrics,
    /// Proxies in front that append to `X-Forwarded-For`.
    pub trusted_proxy_hops: usize,
    /// Bounds concurrent argon2 work (19 MiB and one core each).
    pub hashing: tokio::sync::Semaphore,
    /// Signups and logins per client address (`None`: unlimited).
    pub per_address: Option<tributary_core::rate::Limiter>,
    /// Key validations per client address (`None`: unlimited).
    pub validations_per_address: Option<tributary_core::rate::Limiter>,
}

impl AppState {
    /// The client's address: the peer, or what the trusted proxies say.
    fn client(&self, headers: &HeaderMap, peer: SocketAddr) -> String {
        tributary_core::http::client_ip(headers, peer, self.trusted_proxy_hops)
    }
}

/// Takes a token for `address` from `limiter`, or a 429 saying when to
/// come back (`setting` names the variable that sets the rate).
fn limit(
    limiter: Option<&tributary_core::rate::Limiter>,
    address: &str,
    setting: &str,
) -> ApiResult<()> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.take(address, Instant::now()).map_err(|wait| {
        let secs = tributary_core::rate::retry_after_secs(wait);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests from this address ({setting}); retry after {secs} s"),
        );
        e.retry_after = Some(secs);
        e
    })
}

/// An error answer: status and `{"error", "message"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
    /// A failure on our side: the client learns only that; the log has
    /// what it was.
    fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it is logged",
        )
    }
    fn not_ready(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "database error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable; retry shortly",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": self.kind, "message": self.message})),
        )
            .into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body; the error names the field (serde says which).
fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    if body.is_empty() {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/signup", post(signup))
        .route("/api/login", post(login))
        .route("/api/me", get(me))
        .route("/api/projects", post(create_project).get(list_projects))
        .route(
            "/api/projects/{project_id}/api-keys",
            post(create_key).get(list_keys),
        )
        .route(
            "/api/projects/{project_id}/api-keys/{key_id}",
            delete(revoke_key),
        )
        .route("/api/keys/validate", post(validate_key))
        .route("/ready", get(ready))
        .route("/health/detailed", get(detailed))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Postgres checked now and the connection pool's use
/// (`tributary_core::health`).
async fn detailed(State(state): State<Arc<AppState>>) -> Response {
    let postgres = tributary_core::health::probe(
        "postgres",
        std::time::Duration::from_secs(2),
        async { sqlx::query("SELECT 1").execute(&state.pool).await.map(drop) },
        |_| "does not answer: logins, signups and key checks fail until it does".to_owned(),
    )
    .await;
    tributary_core::health::answer(
        "auth",
        &[postgres],
        serde_json::json!({
            "pool_connections": state.pool.size(),
            "pool_idle": state.pool.num_idle(),
        }),
    )
}

/// Readiness: 200 while Postgres answers a query within 1 s, else 503
/// naming the failure (the pod leaves its Service until it answers). The
/// probe gives up after 2 s, so the answer comes before it does.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Postgres answers", body = answers::Ready),
        (status = 503, description = "Postgres does not answer", body = ErrorBody)))]
pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let answer = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        sqlx::query("SELECT 1").execute(&state.pool).await.map(drop)
    })
    .await;
    match answer {
        Ok(Ok(_)) => (
            StatusCode::OK,
            Json(answers::Ready {
                status: "ready",
                postgres: "ok",
            }),
        )
            .into_response(),
        // The body names what is down, never its address or its error;
        // the log has those.
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: Postgres refused a query");
            ApiError::not_ready("Postgres does not answer").into_response()
        }
        Err(_) => {
            tracing::warn!("not ready: Postgres did not answer within 1 s");
            ApiError::not_ready("Postgres does not answer").into_response()
        }
    }
}

/// Counts and times every request by its route template.
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = tributary_core::http::route_template(&request);
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    state
        .metrics
        .duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    /// An address with a dotted domain.
    #[schema(format = Email, max_length = 254, pattern = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")]
    email: String,
    /// 8 to 1024 characters at signup.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

/// A project's or key's name: 1 to 200 characters, none of them control
/// characters (Postgres refuses NUL in text: it must be a 400 here, not a
/// failed query).
fn check_name(name: &str) -> ApiResult<()> {
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request("name must be 1 to 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must not contain control characters",
        ));
    }
    Ok(())
}

fn check_email(email: &str) -> ApiResult<()> {
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request("email is not a valid address"))
    }
}

fn check_password(password: &str) -> ApiResult<()> {
    match password.chars().count() {
        0..8 => Err(ApiError::bad_request(
            "password must be at least 8 characters",
        )),
        8..=1024 => Ok(()),
        _ => Err(ApiError::bad_request(
            "password must be at most 1024 characters",
        )),
    }
}

async fn hash_blocking(state: &AppState, password: String) -> ApiResult<String> {
    let _permit = state.hashing.acquire().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// Makes an account (the password: 8 to 1024 characters).
#[utoipa::path(post, path = "/api/signup", tag = "auth", request_body = Credentials,
    responses((status = 201, description = "the account", body = answers::Account),
        (status = 400, description = "bad input, naming it", body = ErrorBody),
        (status = 409, description = "the email has an account", body = ErrorBody),
        (status = 429, description = "past a rate limit; see Retry-After", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub(crate) async fn signup(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let address = state.client(&headers, peer);
    limit(
        state.per_address.as_ref(),
        &address,
        "AUTH_RATE_LIMIT_PER_ADDRESS",
    )?;
    let c: Credentials = parse(&body)?;
    check_email(&c.email)?;
    check_password(&c.password)?;
    let hash = hash_blocking(&state, c.password).await?;
    // One case folding, in Rust, for signup and login alike.
    let email = c.email.trim().to_lowercase();
    match store::create_user(&state.pool, &email, &hash).await {
        Ok(user) => {
            tracing::info!(user_id = user.id, "user signed up");
            Ok((
                StatusCode::CREATED,
                Json(answers::Account {
                    id: user.id,
                    email: user.email,
                }),
            )
                .into_response())
        }
        Err(StoreError::Conflict) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "email_taken",
            "an account with this email already exists",
        )),
        Err(e) => Err(e.into()),
    }
}

/// A login token for an account.
#[utoipa::path(post, path = "/api/login", tag = "auth", request_body = Credentials,
    responses((status = 200, description = "a token", body = answers::Token),
        (status = 400, description = "bad input, naming it", body = ErrorBody),
        (status = 401, description = "wrong email or password", body = ErrorBody),
        (status = 429, description = "past a rate limit; see Retry-After", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<answers::Token>> {
    let address = state.client(&headers, peer);
    limit(
        state.per_address.as_ref(),
        &address,
        "AUTH_RATE_LIMIT_PER_ADDRESS",
    )?;
    let c: Credentials = parse(&body)?;
    check_email(c.email.trim())?;
    let account = c.email.trim().to_lowercase();
    // Check and count the attempt in one step, before the slow password
    // check, so parallel guesses cannot all pass the limit.
    let wait = match state.throttle.lock() {
        Ok(mut t) => {
            let wait = t.blocked(&account, &address, Instant::now());
            if wait.is_none() {
                t.record_failure(&account, &address, Instant::now());
            }
            wait
        }
        Err(_) => None,
    };
    if let Some(wait) = wait {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed logins; try again later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let user = store::user_by_email(&state.pool, &account).await?;
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| secrets::dummy_hash().to_owned());
    let password = c.password;
    // Verified even for unknown users, so both cost the same time.
    let ok = {
        let _permit = state.hashing.acquire().await.ok();
        tokio::task::spawn_blocking(move || secrets::verify_password(&password, &stored))
            .await
            .unwrap_or(false)
    };
    match user {
        Some(u) if ok => {
            if let Ok(mut t) = state.throttle.lock() {
                t.record_success(&account, &address);
            }
            let now = chrono::Utc::now().timestamp();
            let token =
                secrets::issue_token(&state.jwt_secret, u.id, &u.email, now, state.jwt_ttl_secs)
                    .map_err(ApiError::internal)?;
            tracing::info!(user_id = u.id, "login");
            Ok(Json(answers::Token {
                token,
                token_type: "Bearer",
                expires_at: chrono::DateTime::from_timestamp(now + state.jwt_ttl_secs, 0)
                    .map(|t| t.to_rfc3339()),
            }))
        }
        _ => {
            state.metrics.login_failures.inc();
            tracing::info!(address = %address, "failed login");
            Err(ApiError::unauthorized("invalid email or password"))
        }
    }
}

/// The user behind the request's bearer token.
async fn current_user(state: &AppState, headers: &HeaderMap) -> ApiResult<store::User> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("missing bearer token (Authorization: Bearer <token>)")
        })?;
    let claims = secrets::verify_token(&state.jwt_secret, token.trim())
        .map_err(|_| ApiError::unauthorized("invalid or expired token"))?;
    let user_id = claims
        .user_id()
        .map_err(|_| ApiError::unauthorized("invalid or expired token"))?;
    store::user_by_id(&state.pool, user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))
}

/// The user behind the token, and their projects.
#[utoipa::path(get, path = "/api/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "the user", body = answers::Me),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub(crate) async fn me(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<answers::Me>> {
    let user = current_user(&state, &headers).await?;
    let projects = store::projects_of(&state.pool, user.id).await?;
    Ok(Json(answers::Me {
        id: user.id,
        email: user.email,
        projects,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProject {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
}

/// Makes a project; its maker is its owner.
#[utoipa::path(post, path = "/api/projects", tag = "projects", security(("bearer" = [])),
    request_body = NewProject,
    responses((status = 201, description = "the project", body = Project),
        (status = 400, description = "bad input, naming it", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub(crate) async fn create_project(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let user = current_user(&state, &headers).await?;
    let p: NewProject = parse(&body)?;
    let name = p.name.trim();
    check_name(name)?;
    let project = store::create_project(&state.pool, user.id, name).await?;
    tracing::info!(
        user_id = user.id,
        project_id = project.id,
        "project created"
    );
    Ok((StatusCode::CREATED, Json(project)).into_response())
}

/// The user's projects.
#[utoipa::path(get, path = "/api/projects", tag = "projects", security(("bearer" = [])),
    responses((status = 200, description = "the projects", body = answers::Projects),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub(crate) async fn list_projects(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<answers::Projects>> {
    let user = current_user(&state, &headers).await?;
    Ok(Json(answers::Projects {
        projects: store::projects_of(&state.pool, user.id).await?,
    }))
}

fn parse_id(raw: &str, what: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("{what} must be a positive integer")))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
    #[schema(pattern = "^(capture|query|dashboards)$")]
    scope: String,
}

/// Makes a project key; the answer is the only time the key is shown.
#[utoipa::path(post, path = "/api/projects/{project_id}/api-keys", tag = "keys",
    security(("bearer" = [])), params(("project_id" = i64, Path, minimum = 1)),
    request_body = NewKey,
    responses((status = 201, description = "the key", body = answers::NewApiKey),
        (status = 400, description = "bad input, naming it", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 404, description = "no such project or key for this user", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub(crate) async fn create_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(project_id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let user = current_user(&state, &headers).await?;
    let project_id = parse_id(&project_id, "project_id")?;
    let k: NewKey = parse(&body)?;
    if !crate::scopes::SCOPES.contains(&k.scope.as_str()) {
        return Err(ApiError::bad_request(crate::scopes::SCOPE_RULE));
    }
    let name = k.name.trim();
    check_name(name)?;
    store::project_for_member(&state.pool, user.id, project_id)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    let key = secrets::new_api_key().map_err(ApiError::internal)?;
    let info = store::create_key(
        &state.pool,
        project_id,
        name,
        &k.scope,
        &secrets::key_hash(&key),
        &secrets::key_display_prefix(&key),
    )
    .await?;
    tracing::info!(user_id = user.id, project_id, key_id = info.id, scope = %info.scope, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(answers::NewApiKey { info, api_key: key }),
    )
        .into_response())
}

/// A project's keys (never the keys themselves).
#[utoipa::path(get, path = "/api/projects/{project_id}/api-keys", tag = "keys",
    security(("bearer" = [])), params(("project_id" = i64, Path, minimum = 1)),
    responses((status = 200, description = "the keys", body = answers::ApiKeys),
        (status = 400, description = "bad input, naming it", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 404, description = "no such project or key for this user", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub(crate) async fn list_keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(project_id): Path<String>,
) -> ApiResult<Json<answers::ApiKeys>> {
    let user = current_user(&state, &headers).await?;
    let project_id = parse_id(&project_id, "project_id")?;
    store::project_for_member(&state.pool, user.id, project_id)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    Ok(Json(answers::ApiKeys {
        api_keys: store::keys_of(&state.pool, project_id).await?,
    }))
}

/// Revokes a key: capture and query refuse it once their caches expire.
#[utoipa::path(delete, path = "/api/projects/{project_id}/api-keys/{key_id}", tag = "keys",
    security(("bearer" = [])),
    params(("project_id" = i64, Path, minimum = 1), ("key_id" = i64, Path, minimum = 1)),
    responses((status = 204, description = "revoked"),
        (status = 400, description = "bad input, naming it", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 404, description = "no such project or key for this user", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub(crate) async fn revoke_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((project_id, key_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = current_user(&state, &headers).await?;
    let project_id = parse_id(&project_id, "project_id")?;
    let key_id = parse_id(&key_id, "key_id")?;
    store::project_for_member(&state.pool, user.id, project_id)
        .await?
        .ok_or_else(|| ApiError::not_found("project"))?;
    if store::revoke_key(&state.pool, project_id, key_id).await? {
        tracing::info!(user_id = user.id, project_id, key_id, "API key revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("API key"))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateRequest {
    api_key: String,
    #[schema(pattern = "^(capture|query|dashboards)$")]
    scope: String,
}

/// Turns a key into its project, for capture and query. 200 with
/// `{"valid": true, "project_id", "scope"}` or `{"valid": false}`.
#[utoipa::path(post, path = "/api/keys/validate", tag = "keys", request_body = ValidateRequest,
    responses((status = 200, description = "what the key grants", body = answers::Validation),
        (status = 400, description = "bad input, naming it", body = ErrorBody),
        (status = 429, description = "past a rate limit; see Retry-After", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub(crate) async fn validate_key(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<answers::Validation>> {
    limit(
        state.validations_per_address.as_ref(),
        &state.client(&headers, peer),
        "AUTH_VALIDATE_RATE_LIMIT_PER_ADDRESS",
    )?;
    let v: ValidateRequest = parse(&body)?;
    let Some(granting) = crate::scopes::granting(&v.scope) else {
        return Err(ApiError::bad_request(crate::scopes::SCOPE_RULE));
    };
    let grant = store::validate_key(&state.pool, &secrets::key_hash(&v.api_key), granting).await?;
    state
        .metrics
        .validations
        .get_or_create(&crate::metrics::ValidationLabels {
            valid: grant.is_some(),
        })
        .inc();
    Ok(Json(match grant {
        Some(g) => answers::Validation {
            valid: true,
            project_id: Some(g.project_id),
            scope: Some(v.scope),
        },
        None => answers::Validation {
            valid: false,
            project_id: None,
            scope: None,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_and_password_rules() {
        assert!(check_email("a@b.test").is_ok());
        for bad in [
            "",
            "a",
            "a@b",
            "@b.test",
            "a@.test",
            "a b@c.test",
            "a@test.",
            "a\u{0}@b.test",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        assert!(check_name("shop").is_ok());
        for bad in ["", "a\u{0}b", "tab\there", &"x".repeat(201)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("12345678").is_ok());
        assert!(check_password("1234567").is_err());
        assert!(check_password(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn bodies_name_the_missing_field() {
        let err = parse::<Credentials>(&Bytes::from_static(br#"{"email": "a@b.test"}"#))
            .err()
            .unwrap();
        assert!(
            err.message.contains("missing field `password`"),
            "{}",
            err.message
        );
        let err = parse::<Credentials>(&Bytes::from_static(br#"{"email": 1, "password": "x"}"#))
            .err()
            .unwrap();
        assert!(
            err.message.contains("email") || err.message.contains("string"),
            "{}",
            err.message
        );
        let err = parse::<NewKey>(&Bytes::from_static(
            br#"{"name": "k", "scope": "capture", "extra": 1}"#,
        ))
        .err()
        .unwrap();
        assert!(
            err.message.contains("unknown field `extra`"),
            "{}",
            err.message
        );
    }
}
