//! The HTTP layer: state built once per process, the router built from the route list,
//! and the middleware that renders every error in the one JSON shape.

mod group;
mod signature;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Path, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Config;
use crate::error::{ApiError, ErrorBody};
use crate::keys::Keys;
use crate::routes::{Function, ROUTES};
use crate::store::{DynamoStore, Store};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub keys: Keys,
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        let keys = Keys::new(store.clone(), config.app_cache_ttl);
        Self {
            config: Arc::new(config),
            store,
            keys,
        }
    }

    /// Configuration and a DynamoDB client from the environment: done once at init and
    /// reused by every warm invocation.
    pub async fn from_env() -> Result<Self, crate::config::ConfigError> {
        let config = Config::from_env()?;
        let client = DynamoStore::client_from_env().await;
        let store = DynamoStore::new(client, config.table_name.clone());
        Ok(Self::new(config, Arc::new(store)))
    }
}

fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        other => panic!("route list holds an unsupported method {other}"),
    }
}

fn handler(function: Function, filter: MethodFilter) -> MethodRouter<AppState> {
    match function {
        Function::LoginSignature => on(filter, signature::login),
        Function::ConversationSignature => on(filter, signature::conversation),
        Function::InviteSignature => on(filter, signature::invite),
        Function::KickSignature => on(filter, signature::kick),
        Function::HistorySignature => on(filter, signature::history),
        Function::BlockSignature => on(filter, signature::block),
        Function::UnblockSignature => on(filter, signature::unblock),
        Function::ConversationBlockSignature => on(filter, signature::conversation_block),
        Function::ConversationUnblockSignature => on(filter, signature::conversation_unblock),
        Function::CreateGroup => on(filter, group::create),
        Function::UpdateGroup => on(filter, group::update),
        Function::GetGroup => on(filter, group::get_group),
        Function::ListMembers => on(filter, group::list_members),
        Function::ListUserGroups => on(filter, group::list_user_groups),
        Function::DeleteGroup => on(filter, group::delete),
        Function::AddMembers => on(filter, group::add_members),
        Function::RemoveMembers => on(filter, group::remove_members),
        Function::GrantAdmins => on(filter, group::grant_admins),
        Function::RevokeAdmins => on(filter, group::revoke_admins),
        Function::TransferOwner => on(filter, group::transfer_owner),
        Function::Health => on(filter, health),
    }
}

/// A router serving the routes of `functions` (all of them for the local server, one
/// function's for a Lambda binary). Anything else is a JSON 404 or 405.
pub fn router(state: AppState, functions: &[Function]) -> Router {
    let mut by_path: BTreeMap<String, MethodRouter<AppState>> = BTreeMap::new();
    for route in ROUTES.iter().filter(|r| functions.contains(&r.function)) {
        let mut paths = vec![route.path.to_owned()];
        // `/signature/invite/a/c/conv/`: an empty member segment, also a join.
        if route.path.ends_with("{conversion_id}") {
            paths.push(format!("{}/", route.path));
        }
        for path in paths {
            let method_router = handler(route.function, method_filter(route.method));
            let merged = match by_path.remove(&path) {
                Some(existing) => existing.merge(method_router),
                None => method_router,
            };
            by_path.insert(path, merged);
        }
    }
    let mut router = Router::new();
    for (path, method_router) in by_path {
        router = router.route(&path, method_router);
    }
    router
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(middleware::from_fn(percent_escapes))
        .layer(middleware::from_fn(finish))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::Internal.into_response()
        }))
}

/// Liveness only: no data, no storage call, no authentication.
async fn health() -> Response {
    json(
        axum::http::StatusCode::OK,
        &serde_json::json!({"status": "ok"}),
    )
}

/// Fills in the error body's `request` and writes one access-log line per request.
/// The log names the route template, not the path, and never a body or a header.
async fn finish(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut resp = next.run(req).await;
    if let Some(body) = resp.extensions_mut().remove::<ErrorBody>() {
        let mut rendered = body.into_response_with(resp.status(), format!("{method} {path}"));
        for (name, value) in resp.headers() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                rendered.headers_mut().insert(name.clone(), value.clone());
            }
        }
        resp = rendered;
    }
    tracing::info!(
        method = %method,
        route = route.as_deref().unwrap_or("-"),
        status = resp.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

/// Refuses a path with a `%` that does not start an escape (`%ZZ`, a trailing `%`). The
/// router would take it literally, so `%ZZ` and `%25ZZ` would both reach a handler as
/// `%ZZ`: one id, two spellings, and a signature over whichever the client meant.
async fn percent_escapes(req: Request, next: Next) -> Response {
    if has_bad_escape(req.uri().path()) {
        return ApiError::bad("the path holds a '%' that is not a percent-escape (%XX, hex)")
            .into_response();
    }
    next.run(req).await
}

fn has_bad_escape(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// Path parameters, with a decoding failure (say, invalid UTF-8) answered as a 400.
fn path_params<T>(
    path: Result<Path<T>, axum::extract::rejection::PathRejection>,
) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|_| ApiError::bad("a path segment is not valid UTF-8 after URL decoding"))
}

fn json<T: Serialize>(status: axum::http::StatusCode, value: &T) -> Response {
    let mut resp = (status, axum::Json(value)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::has_bad_escape;

    #[test]
    fn percent_escapes_must_be_two_hex_digits() {
        for ok in ["/a/b", "/a/%3A", "/a/%25ZZ", "/a/%e4%b8%ad", "/%41"] {
            assert!(!has_bad_escape(ok), "{ok}");
        }
        for bad in ["/a/%ZZ", "/a/%", "/a/%4", "/a/%4G/b", "/%%41", "/a/%g0"] {
            assert!(has_bad_escape(bad), "{bad}");
        }
    }
}
