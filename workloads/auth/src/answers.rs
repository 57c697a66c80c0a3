//! The bodies auth answers with, typed so that its OpenAPI document is
//! made from what the handlers send.

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{ApiKeyInfo, Project};

/// A new account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Account {
    pub id: i64,
    pub email: String,
}

/// A login token, for `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Token {
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// When the token expires (RFC 3339).
    pub expires_at: Option<String>,
}

/// The user behind a token and their projects.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Me {
    pub id: i64,
    pub email: String,
    pub projects: Vec<Project>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Projects {
    pub projects: Vec<Project>,
}

/// A new key: its record and the key itself, shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewApiKey {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    pub api_key: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeys {
    pub api_keys: Vec<ApiKeyInfo>,
}

/// What a key grants: `{"valid": false}`, or its project and scope.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Validation {
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `/ready`'s answer while Postgres answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: &'static str,
    /// Always `ok`.
    pub postgres: &'static str,
}
