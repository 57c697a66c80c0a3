//! Postgres access. Every query is scoped by the caller's user id so that
//! another project's rows are indistinguishable from missing ones.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub scope: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a key grants.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct KeyGrant {
    pub key_id: i64,
    pub project_id: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

pub async fn create_user(
    pool: &PgPool,
    email: &str,
    password_hash: &str,
) -> Result<User, StoreError> {
    let row = sqlx::query("INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id")
        .bind(email)
        .bind(password_hash)
        .fetch_one(pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict
            } else {
                StoreError::Db(e)
            }
        })?;
    Ok(User {
        id: row.try_get("id")?,
        email: email.to_owned(),
        password_hash: password_hash.to_owned(),
    })
}

fn user_row(r: &PgRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        password_hash: r.try_get("password_hash")?,
    })
}

pub async fn user_by_email(pool: &PgPool, email: &str) -> Result<Option<User>, StoreError> {
    let row = sqlx::query("SELECT id, email, password_hash FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(user_row).transpose()?)
}

pub async fn user_by_id(pool: &PgPool, id: i64) -> Result<Option<User>, StoreError> {
    let row = sqlx::query("SELECT id, email, password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(user_row).transpose()?)
}

pub async fn create_project(pool: &PgPool, owner: i64, name: &str) -> Result<Project, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "INSERT INTO projects (name, owner_id) VALUES ($1, $2) RETURNING id, created_at",
    )
    .bind(name)
    .bind(owner)
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    sqlx::query("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Project {
        id,
        name: name.to_owned(),
        role: "owner".into(),
        created_at: row.try_get("created_at")?,
    })
}

const PROJECTS_OF_MEMBER: &str = "SELECT p.id, p.name, m.role, p.created_at FROM projects p \
     JOIN project_members m ON m.project_id = p.id WHERE m.user_id = $1";

fn project_row(r: &PgRow) -> Result<Project, sqlx::Error> {
    Ok(Project {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        created_at: r.try_get("created_at")?,
    })
}

pub async fn projects_of(pool: &PgPool, user: i64) -> Result<Vec<Project>, StoreError> {
    let rows = sqlx::query(&format!("{PROJECTS_OF_MEMBER} ORDER BY p.id"))
        .bind(user)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(project_row).collect::<Result<_, _>>()?)
}

/// The project if `user` belongs to it.
pub async fn project_for_member(
    pool: &PgPool,
    user: i64,
    project: i64,
) -> Result<Option<Project>, StoreError> {
    let row = sqlx::query(&format!("{PROJECTS_OF_MEMBER} AND p.id = $2"))
        .bind(user)
        .bind(project)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(project_row).transpose()?)
}

fn key_info(r: &PgRow) -> Result<ApiKeyInfo, sqlx::Error> {
    Ok(ApiKeyInfo {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        name: r.try_get("name")?,
        scope: r.try_get("scope")?,
        prefix: r.try_get("prefix")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

const KEY_COLUMNS: &str =
    "id, project_id, name, scope, prefix, created_at, last_used_at, revoked_at";

pub async fn create_key(
    pool: &PgPool,
    project: i64,
    name: &str,
    scope: &str,
    hash: &str,
    prefix: &str,
) -> Result<ApiKeyInfo, StoreError> {
    let row = sqlx::query(&format!(
        "INSERT INTO api_keys (project_id, name, scope, key_hash, prefix) VALUES ($1, $2, $3, $4, $5) RETURNING {KEY_COLUMNS}"
    ))
    .bind(project)
    .bind(name)
    .bind(scope)
    .bind(hash)
    .bind(prefix)
    .fetch_one(pool)
    .await?;
    Ok(key_info(&row)?)
}

pub async fn keys_of(pool: &PgPool, project: i64) -> Result<Vec<ApiKeyInfo>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE project_id = $1 ORDER BY id"
    ))
    .bind(project)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| key_info(r).map_err(StoreError::from))
        .collect()
}

/// Revokes a key of `project`; false when there is no such key there.
pub async fn revoke_key(pool: &PgPool, project: i64, key: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 AND project_id = $2")
        .bind(key)
        .bind(project)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The grant of a live key with one of `scopes`, marking it used.
pub async fn validate_key(
    pool: &PgPool,
    hash: &str,
    scopes: &[&str],
) -> Result<Option<KeyGrant>, StoreError> {
    // A read: an unknown key, and a known one used within the last minute,
    // cost Postgres no write.
    let row = sqlx::query(
        "SELECT id, project_id, \
         (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $3)) AS stale \
         FROM api_keys WHERE key_hash = $1 AND scope = ANY($2) AND revoked_at IS NULL",
    )
    .bind(hash)
    .bind(scopes)
    .bind(LAST_USED_RESOLUTION_SECS)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let grant = KeyGrant {
        key_id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
    };
    if row.try_get::<bool, _>("stale")? {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = now() WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))",
        )
        .bind(grant.key_id)
        .bind(LAST_USED_RESOLUTION_SECS)
        .execute(pool)
        .await?;
    }
    Ok(Some(grant))
}

/// How stale a key's `last_used_at` may be: it is written at most this
/// often per key, so validations are reads.
pub const LAST_USED_RESOLUTION_SECS: f64 = 60.0;
