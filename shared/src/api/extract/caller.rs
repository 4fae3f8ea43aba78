//! Who is calling: every route but `/health` takes a [`Caller`], so a handler cannot be
//! written without authentication. In the `tokens` mode the bearer token is verified
//! here (`crate::auth`) with the secret its `kid` names; in the `authorizer` mode API
//! Gateway's JWT authorizer has verified it, and its claims arrive in the request
//! context. Every failure is the same 401.

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use lambda_http::request::RequestContext;

use crate::api::error::ApiError;
use crate::api::routes::{routes_of, Function};
use crate::api::state::AppState;
use crate::auth::{token_kid, verify_with_key};
use crate::config::AuthMode;
use crate::model::ids::check_id;
use crate::model::Caller;

/// Longer headers are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 4096;

/// The token from `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized)?
        .to_str()
        .map_err(|_| ApiError::Unauthorized)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::Unauthorized);
    }
    Ok(token)
}

/// Whether a claim's value is `wanted` or a list holding it as a whole element: a JSON
/// array of strings, or the form API Gateway's HTTP API JWT authorizer gives a list claim
/// such as `cognito:groups` (`[admin staff]`: brackets, elements split by single spaces).
/// A word inside free text never counts, so "not an admin" does not make an admin.
fn claim_names(value: &str, wanted: &str) -> bool {
    if value == wanted {
        return true;
    }
    if let Ok(items) = serde_json::from_str::<Vec<String>>(value) {
        return items.iter().any(|item| item == wanted);
    }
    value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .is_some_and(|inner| inner.split(' ').any(|item| item == wanted))
}

/// The caller from the claims API Gateway's JWT authorizer verified.
fn from_authorizer(
    parts: &Parts,
    app_id: &str,
    client_claim: &str,
    admin: &Option<(String, String)>,
    max_id_chars: usize,
) -> Result<Caller, ApiError> {
    let Some(RequestContext::ApiGatewayV2(ctx)) = parts.extensions.get::<RequestContext>() else {
        return Err(ApiError::Unauthorized);
    };
    let claims = &ctx
        .authorizer
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .ok_or(ApiError::Unauthorized)?
        .claims;
    let client_id = claims.get(client_claim).ok_or(ApiError::Unauthorized)?;
    check_id("client id claim", client_id, max_id_chars).map_err(|_| ApiError::Unauthorized)?;
    let app_admin = admin
        .as_ref()
        .is_some_and(|(claim, value)| claims.get(claim).is_some_and(|v| claim_names(v, value)));
    Ok(Caller {
        app_id: app_id.to_owned(),
        client_id: client_id.clone(),
        app_admin,
    })
}

/// The app a signature route names (`{app_id}`), when it is a valid id: its master key is
/// read with the token's secret, in the same round trip. Group routes name no app, and
/// their functions may not read master keys.
///
/// Not for the UserSig route: its function reads the app's Tencent key, never its
/// master key.
async fn signing_app(parts: &mut Parts, state: &AppState, max_id: usize) -> Option<String> {
    let matched = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    if routes_of(Function::UsersigSignature).any(|r| Some(r.path) == matched) {
        return None;
    }
    let params = RawPathParams::from_request_parts(parts, state).await.ok()?;
    let (_, app_id) = params.iter().find(|(name, _)| *name == "app_id")?;
    check_id("app_id", app_id, max_id).ok()?;
    Some(app_id.to_owned())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let max_id = state.config.limits.max_id_chars;
        match &state.config.auth {
            AuthMode::Tokens => {
                let app_id = signing_app(parts, state, max_id).await;
                let token = bearer(&parts.headers)?;
                let kid = token_kid(token)?;
                let key = match app_id {
                    Some(app) => state.keys.token_key_for_app(&kid, &app).await?,
                    None => state.keys.token_key(&kid).await?,
                }
                .ok_or(ApiError::Unauthorized)?;
                Ok(verify_with_key(
                    token,
                    &key,
                    state.config.token_leeway_secs,
                    max_id,
                )?)
            }
            AuthMode::Authorizer {
                app_id,
                client_claim,
                admin,
            } => from_authorizer(parts, app_id, client_claim, admin, max_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_claims_match_whole_values_only() {
        for yes in [
            "admin",
            "[admin]",
            "[staff admin]",
            "[admin staff]",
            r#"["staff","admin"]"#,
            r#"[ "admin" ]"#,
        ] {
            assert!(claim_names(yes, "admin"), "{yes}");
        }
        for no in [
            "not an admin",
            "admin staff",
            "administrator",
            "[administrators]",
            "[staff,admin]",
            r#"["admins"]"#,
            r#"{"admin": true}"#,
            "Admin",
            "",
            "[]",
        ] {
            assert!(!claim_names(no, "admin"), "{no}");
        }
    }

    #[test]
    fn authorization_header_forms() {
        let mut h = HeaderMap::new();
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer".parse().unwrap());
        assert!(bearer(&h).is_err());
        h.insert(
            header::AUTHORIZATION,
            "bearer  abc.def.ghi ".parse().unwrap(),
        );
        assert_eq!(bearer(&h).unwrap(), "abc.def.ghi");
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {}", "a".repeat(5000)).parse().unwrap(),
        );
        assert!(bearer(&h).is_err());
    }
}
