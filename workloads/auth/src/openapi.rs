//! Auth's OpenAPI document, made from its handlers' annotations and types
//! and served at `GET /openapi.json`; `tests/schemathesis.rs` checks the
//! running service against it.

use utoipa::OpenApi;

use tributary_core::openapi::SecuritySchemes;

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tributary auth", description = "Users, login tokens, projects and project API keys."),
    paths(
        api::signup, api::login, api::me, api::create_project, api::list_projects,
        api::create_key, api::list_keys, api::revoke_key, api::validate_key, api::ready,
        tributary_core::openapi::health, tributary_core::openapi::metrics,
    ),
    modifiers(&SecuritySchemes)
)]
pub struct AuthApi;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    AuthApi::openapi()
}
