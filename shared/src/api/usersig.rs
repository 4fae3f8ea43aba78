//! The UserSig route: a client's login credential for the app's Tencent Cloud IM app
//! (`crate::model::usersig`), under the login signature's rules: the client itself, or
//! the app's backend for anyone in its app; never the app's REST admin.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::path_params;
use super::respond::json;
use super::state::AppState;
use crate::model::ids::check_id;
use crate::model::usersig::{self, check_identifier, UserSigInput};
use crate::model::Caller;

#[derive(Debug, Deserialize)]
pub struct UserSigPath {
    app_id: String,
    client_id: String,
}

#[derive(Debug, Serialize)]
struct UserSigResponse<'a> {
    app_id: &'a str,
    client_id: &'a str,
    sdk_app_id: u64,
    user_sig: String,
    /// Seconds it is valid for, from when it was made.
    expire: u64,
    /// Unix seconds: when Tencent stops taking it.
    expires_at: u64,
}

pub async fn usersig(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<UserSigPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let p = path_params(path)?;
    check_id("app_id", &p.app_id, state.config.limits.max_id_chars)?;
    check_id("client_id", &p.client_id, state.config.limits.max_id_chars)?;
    // A client id Tencent cannot take has no Tencent account: refused, not mangled.
    check_identifier("client_id", &p.client_id)?;
    if caller.app_id != p.app_id || (!caller.app_admin && caller.client_id != p.client_id) {
        return Err(ApiError::Forbidden);
    }
    let tencent = state
        .keys
        .tencent_key(&p.app_id)
        .await?
        .ok_or(ApiError::NotFound("tencent_settings"))?;
    let settings = &tencent.settings;
    // The REST admin's UserSig is the app's whole REST API (every group, every account):
    // nobody gets it here, the app's backend included.
    if settings.is_admin_account(&p.client_id) {
        return Err(ApiError::Forbidden);
    }
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let input = UserSigInput {
        sdk_app_id: settings.sdk_app_id(),
        identifier: &p.client_id,
        time,
        expire: settings.usersig_expire(),
    };
    let body = UserSigResponse {
        app_id: &p.app_id,
        client_id: &p.client_id,
        sdk_app_id: input.sdk_app_id,
        user_sig: usersig::user_sig(&tencent.key, &input),
        expire: input.expire,
        expires_at: time + input.expire,
    };
    let mut resp = json(StatusCode::OK, &body);
    // A bearer credential: no cache may keep or replay it.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
