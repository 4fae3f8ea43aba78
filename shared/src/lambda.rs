//! The whole of a function binary: state built once at init, then the Lambda runtime
//! feeding API Gateway events through a router that serves this function's routes and
//! links only its handler, each request's path first put back in the form the router
//! decodes once ([`as_delivered`]).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::http::Uri;
use axum::Router;
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::api::routes::{Entry, Function};
use crate::api::{router_for, AppState};
use crate::config::Config;

/// How long init may spend opening the connection to DynamoDB (Lambda allows 10 s).
const WARM_UP_LIMIT: Duration = Duration::from_millis(1500);

/// Runs the function `E` (one of [`crate::functions`]) on a single-threaded runtime: a
/// sandbox serves one event at a time, so worker threads would only add their start-up
/// to init and a hand-over between threads to each request.
///
/// Only the router is `E`'s own: init and the runtime's loop are the non-generic
/// [`init`] and [`serve`], compiled once in this library rather than again in each of
/// the function binaries, which `sam build` compiles one after another.
pub fn run<E: Entry>(_function: E) -> Result<(), lambda_http::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let state = init(E::FUNCTION).await?;
            serve(router_for::<E>(state)).await
        })
}

/// A future built here and polled through a vtable: its code is compiled in this library.
/// An `async fn`'s body would be compiled again in each binary that awaits it.
type Compiled<T> = Pin<Box<dyn Future<Output = Result<T, lambda_http::Error>>>>;

/// Logging, the configuration, the DynamoDB client and, over TLS, its connection.
fn init(function: Function) -> Compiled<AppState> {
    Box::pin(async move {
        crate::telemetry::init();
        let config = Config::from_env()?;
        // `health` reads no data (and its role may not): it opens no connection.
        let warm_up = (function != Function::Health && config.dynamodb_target.warm_up_at_init())
            .then_some(WARM_UP_LIMIT);
        Ok(AppState::from_config(config, warm_up).await)
    })
}

/// The Lambda runtime feeding API Gateway events through `router`, each request's URI
/// first rebuilt by [`as_delivered`]. The rewrite wraps the router rather than being
/// one of its layers: a layer runs after routing.
fn serve(router: Router) -> Compiled<()> {
    let service = tower::util::MapRequest::new(router, as_delivered as fn(Request) -> Request);
    Box::pin(lambda_http::run(service))
}

/// The request with its path as API Gateway matched it, percent-encoded so that the
/// router's one decoding gives back each path parameter exactly as API Gateway
/// delivered it, the same answer as the local server gives to the same HTTP request.
///
/// An HTTP API hands the function `rawPath` (and `pathParameters`) already
/// percent-decoded, and lambda_http pastes that into the URI almost as it is: only
/// spaces, quotes, `<>{}` and non-ASCII are encoded, so the router would decode a second
/// time (`%2541` signed as `A`), and a decoded `?` or `#` would end the path. A decoded
/// `%2F` cannot be told from a `/` in `rawPath`, so the path is built from the route API
/// Gateway matched (`routeKey`) and its `pathParameters`: a kick on conversation `x/y`
/// stays one parameter, which the id rules refuse, rather than becoming a kick on `x`
/// naming `y`. Without them (no route template, a parameter missing), `rawPath`'s own
/// segments are encoded.
///
/// The query is lambda_http's (the event's `rawQueryString`, which API Gateway leaves
/// encoded) unless `rawPath` holds a `?` or `#`: then lambda_http's URI has mixed the
/// path's tail into its query or fragment, and the parameter holding it is refused
/// anyway (`model::ids::NOT_IN_PATHS`).
fn as_delivered(mut req: Request) -> Request {
    let route_key = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.route_key.clone(),
        _ => None,
    };
    let raw_path = req.raw_http_path();
    let mut target = delivered_path(route_key.as_deref(), req.path_parameters_ref(), raw_path);
    let query = req.uri().query().filter(|_| !raw_path.contains(['?', '#']));
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    // Every byte outside a URI's path characters is escaped and the query comes from a
    // URI, so this parses; were it not to, no route would match "/" (a JSON 404).
    *req.uri_mut() = target.parse().unwrap_or_else(|_| Uri::from_static("/"));
    req
}

/// The path to route on: `route_key`'s template (`GET /im/group/{group_id}`) with each
/// parameter's value from `params` percent-encoded, or else `raw_path` with each segment
/// percent-encoded.
fn delivered_path(route_key: Option<&str>, params: Option<&QueryMap>, raw_path: &str) -> String {
    if let Some(path) = route_key.and_then(|key| from_route(key, params)) {
        return path;
    }
    let mut path = String::with_capacity(raw_path.len());
    for (i, segment) in raw_path.split('/').enumerate() {
        if i > 0 {
            path.push('/');
        }
        encode_segment(segment, &mut path);
    }
    path
}

/// `route_key`'s path with its parameters filled in, or `None` for a key without a path
/// (`$default`), a greedy parameter (`{proxy+}`, which spans segments) or a parameter
/// `params` lacks.
fn from_route(route_key: &str, params: Option<&QueryMap>) -> Option<String> {
    let (_method, template) = route_key.split_once(' ')?;
    let rest = template.strip_prefix('/')?;
    let mut path = String::new();
    for segment in rest.split('/') {
        path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if name.ends_with('+') => return None,
            Some(name) => encode_segment(params?.first(name)?, &mut path),
            None => encode_segment(segment, &mut path),
        }
    }
    Some(path)
}

/// Every byte that may not stand for itself in a path segment: all but RFC 3986's
/// `pchar` (unreserved, sub-delims, `:` and `@`). So `/`, `?`, `#`, `%`, spaces,
/// controls and each byte of a non-ASCII character are escaped.
const NOT_PCHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Appends `segment`, percent-encoded as one path segment ([`NOT_PCHAR`]).
fn encode_segment(segment: &str, out: &mut String) {
    out.extend(utf8_percent_encode(segment, NOT_PCHAR));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn params(pairs: &[(&str, &str)]) -> QueryMap {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        QueryMap::from(map)
    }

    /// One percent-decoding, as the router's.
    fn decode(segment: &str) -> String {
        let b = segment.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&segment[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    const KICK: &str =
        "GET /signature/kick/{app_id}/{client_id}/{conversion_id}/{sorted_member_ids}";

    #[test]
    fn parameters_are_encoded_so_one_decoding_gives_them_back() {
        let p = params(&[
            ("app_id", "demo-app"),
            ("client_id", "李 雷\\"),
            ("conversion_id", "%41"),
            ("sorted_member_ids", "bob:carol+d@e"),
        ]);
        let path = delivered_path(Some(KICK), Some(&p), "/ignored");
        assert_eq!(
            path,
            "/signature/kick/demo-app/%E6%9D%8E%20%E9%9B%B7%5C/%2541/bob:carol+d@e"
        );
        let decoded: Vec<String> = path.split('/').map(decode).collect();
        // A `\` too, which lambda_http's URL parser would have turned into a `/`.
        assert_eq!(decoded[4..], ["李 雷\\", "%41", "bob:carol+d@e"]);
    }

    #[test]
    fn a_decoded_slash_stays_inside_its_parameter() {
        // What an HTTP API sends for `/signature/kick/demo-app/alice/x%2Fy`: the route
        // without members matched, `rawPath` indistinguishable from conversation `x`
        // with member `y`.
        let key = "GET /signature/kick/{app_id}/{client_id}/{conversion_id}";
        let p = params(&[
            ("app_id", "demo-app"),
            ("client_id", "alice"),
            ("conversion_id", "x/y"),
        ]);
        let raw = "/signature/kick/demo-app/alice/x/y";
        assert_eq!(
            delivered_path(Some(key), Some(&p), raw),
            "/signature/kick/demo-app/alice/x%2Fy"
        );
        let p = params(&[("app_id", "a"), ("client_id", "c?d#e")]);
        assert_eq!(
            delivered_path(
                Some("GET /signature/login/{app_id}/{client_id}"),
                Some(&p),
                "/x"
            ),
            "/signature/login/a/c%3Fd%23e"
        );
    }

    #[test]
    fn without_a_usable_route_key_the_raw_path_is_encoded_segment_by_segment() {
        let raw = "/signature/login/demo-app/李%41?x#y";
        let expected = "/signature/login/demo-app/%E6%9D%8E%2541%3Fx%23y";
        assert_eq!(delivered_path(None, None, raw), expected);
        assert_eq!(delivered_path(Some("$default"), None, raw), expected);
        let greedy = "ANY /{proxy+}";
        assert_eq!(
            delivered_path(Some(greedy), Some(&params(&[("proxy+", "a")])), raw),
            expected
        );
        // A parameter the event lacks.
        let p = params(&[("app_id", "demo-app")]);
        let login = "GET /signature/login/{app_id}/{client_id}";
        assert_eq!(delivered_path(Some(login), Some(&p), raw), expected);
        assert_eq!(delivered_path(None, None, "/"), "/");
        assert_eq!(delivered_path(Some("GET /health"), None, "/x"), "/health");
        // The empty member segment of a join is kept.
        let invite =
            "GET /signature/invite/{app_id}/{client_id}/{conversion_id}/{sorted_member_ids}";
        let p = params(&[
            ("app_id", "a"),
            ("client_id", "c"),
            ("conversion_id", "g"),
            ("sorted_member_ids", ""),
        ]);
        assert_eq!(
            delivered_path(Some(invite), Some(&p), "/x"),
            "/signature/invite/a/c/g/"
        );
    }
}
