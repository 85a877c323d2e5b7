//! Identity verification settings (admins): read the identity secret, issue a new one, require
//! verification. The rules are in [`crate::app::verification`].

use actix_web::{HttpResponse, web};
use netia_events::user::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::{Data, ErrorBody};
use super::{Agent, ApiError, AppState};
use crate::app::verification::{self, VerificationError};
use crate::secrets::SealError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/identity_verification")
            .route(web::get().to(get))
            .route(web::put().to(update)),
    )
    .service(web::resource("/identity_verification/secret").route(web::post().to(rotate)));
}

/// The answer for a refused claim or a secret that cannot be read on this node.
pub fn verification_error(e: VerificationError) -> ApiError {
    match e {
        VerificationError::Refused(reason) => ApiError::Invalid(reason.to_owned()),
        VerificationError::Seal(e @ (SealError::NoKey | SealError::Unreadable)) => ApiError::Unavailable(e.to_string()),
        VerificationError::Account(e) => super::settings::account_error(e),
        VerificationError::App(e) => e.into(),
    }
}

/// The account's identity verification, as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityVerificationView {
    /// The HMAC key the site's server signs external ids with (64 hex characters); null until
    /// one is issued. Keep it on the server: whoever has it can sign in as any customer.
    pub secret: Option<String>,
    /// Whether external ids and emails from the widget need a valid `user_hash`.
    pub require_identity_verification: bool,
}

async fn view(state: &AppState, agent: &Agent) -> Result<Data<IdentityVerificationView>, ApiError> {
    let account = super::settings::load(state, agent).await?;
    let settings = verification::settings(state, agent.account_id, &account).map_err(verification_error)?;
    Ok(Data {
        data: IdentityVerificationView {
            secret: settings.secret,
            require_identity_verification: settings.required,
        },
    })
}

/// The identity secret and whether verification is required (admins).
#[utoipa::path(get, path = "/api/identity_verification", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = Data<IdentityVerificationView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn get(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(view(&state, &agent).await?))
}

/// Issues a new identity secret (admins); the previous one stops working at once, so hashes the
/// site computed with it are refused from now on.
#[utoipa::path(post, path = "/api/identity_verification/secret", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = Data<IdentityVerificationView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn rotate(state: web::Data<AppState>, agent: Agent) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    verification::rotate_secret(&state, agent.account_id, &agent.meta())
        .await
        .map_err(verification_error)?;
    Ok(HttpResponse::Ok().json(view(&state, &agent).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VerificationUpdate {
    require_identity_verification: bool,
}

/// Requires identity verification, or stops requiring it (admins). Requiring it needs a secret
/// (422 without one).
#[utoipa::path(put, path = "/api/identity_verification", tag = "settings", request_body = VerificationUpdate, security(("bearer" = [])),
    responses((status = 200, body = Data<IdentityVerificationView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn update(
    state: web::Data<AppState>,
    agent: Agent,
    body: web::Json<VerificationUpdate>,
) -> Result<HttpResponse, ApiError> {
    agent.require(Role::Admin)?;
    verification::set_required(
        &state,
        agent.account_id,
        body.require_identity_verification,
        &agent.meta(),
    )
    .await
    .map_err(verification_error)?;
    Ok(HttpResponse::Ok().json(view(&state, &agent).await?))
}
