//! The HTTP layer: the router built from the route list ([`routes`]), the handlers
//! (`signature`, `group`, `health`), what they extract from requests ([`extract`]),
//! the state they share ([`state`]), and the middleware that renders every error in the
//! one JSON shape ([`error`]).

pub mod error;
pub mod extract;
mod group;
mod health;
mod respond;
pub mod routes;
mod signature;
pub mod state;
mod tencent_callback;
mod usersig;

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use self::error::{ApiError, ErrorBody};
use self::routes::{Entry, Function, ROUTES};
pub use self::state::AppState;
use crate::metrics;

fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        other => panic!("route list holds an unsupported method {other}"),
    }
}

/// A router serving every route of `functions` (the local server passes them all).
/// Every handler is linked into the caller.
pub fn router(state: AppState, functions: &[Function]) -> Router {
    build(state, functions, &Function::handler)
}

/// A router serving one function's routes, and linking only that function's handler:
/// what a function binary runs.
pub fn router_for<E: Entry>(state: AppState) -> Router {
    build(state, &[E::FUNCTION], &|_, filter| E::handler(filter))
}

/// Anything outside `functions`' routes is a JSON 404 or 405.
///
/// `handler` is a trait object so that this, the middleware included, is compiled once
/// in this library instead of once in each function binary (`sam build` compiles 22).
fn build(
    state: AppState,
    functions: &[Function],
    handler: &dyn Fn(Function, MethodFilter) -> MethodRouter<AppState>,
) -> Router {
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
        .layer(middleware::from_fn(finish))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::Internal.into_response()
        }))
}

/// Refuses a path with a bad percent-escape ([`has_bad_escape`]), fills in the error
/// body's `request` and writes one access-log line per request. The log names the route
/// template, not the path, and never a body or a header. One middleware rather than one
/// per job: each layer moves the request and boxes a future on every request.
async fn finish(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    // For the metrics: the header's shape (never its content), and the request id of
    // the Lambda invocation (none in the local server).
    let auth = metrics::AuthShape::of(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    );
    let request_id = req
        .extensions()
        .get::<lambda_http::Context>()
        .map(|c| c.request_id.clone());
    let mut resp = if has_bad_escape(&path) {
        ApiError::bad("the path holds a '%' that is not a percent-escape (%XX, hex)")
            .into_response()
    } else {
        next.run(req).await
    };
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
    metrics::record_response(
        route_kind(method.as_str(), route.as_deref()),
        resp.status().as_u16(),
        auth,
        request_id.as_deref(),
    );
    resp
}

/// What the metrics count a request of this method and route template as.
fn route_kind(method: &str, template: Option<&str>) -> metrics::RouteKind {
    let Some(template) = template else {
        return metrics::RouteKind::Other;
    };
    // `/signature/invite/.../{conversion_id}/` is served as the route without the slash.
    let path = template.strip_suffix('/').unwrap_or(template);
    let Some(route) = ROUTES.iter().find(|r| r.method == method && r.path == path) else {
        return metrics::RouteKind::Other;
    };
    let name = route.function.name();
    if let Some(op) = name.strip_suffix("-signature") {
        metrics::RouteKind::Signature(op)
    } else if method != "GET" && path.starts_with("/im/") {
        metrics::RouteKind::GroupWrite
    } else {
        metrics::RouteKind::Other
    }
}

/// A path with a `%` that does not start an escape (`%ZZ`, a trailing `%`). The router
/// would take it literally, so `%ZZ` and `%25ZZ` would both reach a handler as `%ZZ`: one
/// id, two spellings, and a signature over whichever the client meant.
fn has_bad_escape(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

#[cfg(test)]
mod tests {
    use super::has_bad_escape;

    #[test]
    fn routes_are_classed_for_the_metrics() {
        use super::route_kind;
        use crate::metrics::RouteKind;
        let login = Some("/signature/login/{app_id}/{client_id}");
        assert_eq!(route_kind("GET", login), RouteKind::Signature("login"));
        let join = Some("/signature/invite/{app_id}/{client_id}/{conversion_id}/");
        assert_eq!(route_kind("GET", join), RouteKind::Signature("invite"));
        assert_eq!(route_kind("POST", Some("/im/group")), RouteKind::GroupWrite);
        let group = Some("/im/group/{group_id}");
        assert_eq!(route_kind("DELETE", group), RouteKind::GroupWrite);
        assert_eq!(route_kind("GET", group), RouteKind::Other);
        assert_eq!(route_kind("GET", Some("/health")), RouteKind::Other);
        assert_eq!(route_kind("GET", None), RouteKind::Other);
    }

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
