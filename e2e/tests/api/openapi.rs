//! `openapi.yaml` against the route list, the document's own soundness, the local
//! server's copy of it, and the response checker every HTTP and Lambda test goes
//! through (`im_e2e::openapi`, `e2e/src/openapi.rs`).

use std::collections::{BTreeMap, BTreeSet};

use im_e2e::openapi::{from_openapi, spec, Fallback, Spec, Target, OPENAPI_YAML};
use im_e2e::repo::repo_root;
use im_e2e::stack::env;
use im_shared::routes::{Function, ROUTES};
use serde_json::{json, Value};

const METHODS: [&str; 4] = ["get", "put", "post", "delete"];

/// (METHOD, path) -> operation object.
fn operations() -> BTreeMap<(String, String), Value> {
    let doc = spec().doc();
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            assert!(
                METHODS.contains(&method.as_str()),
                "{method} {path}: the service has no such method"
            );
            ops.insert((method.to_ascii_uppercase(), path.clone()), op.clone());
        }
    }
    ops
}

/// The error statuses each function can answer, from its handler and the store: what the
/// document must list, no more and no less. Signatures: bad ids (400), credentials (401),
/// another client or app, or a group role (403), an app without a master key (404),
/// storage unavailable (503: unreachable, too slow, throttling). Group writes with a body
/// add 409 (limits, non-members, contention, a conversation linked elsewhere), 413, 415 and
/// 422; updates and deletes 412 (If-Match).
///
/// By function name rather than by `Function`, so that a function added to the route
/// list without an entry here fails this test instead of the build.
fn error_statuses(function: Function) -> &'static [u16] {
    match function.name() {
        name if name.ends_with("-signature") => &[400, 401, 403, 404, 503],
        // 403: a client setting `conversation_id`, which only the app's backend links.
        "create-group" => &[400, 401, 403, 409, 413, 415, 422, 503],
        "update-group" => &[400, 401, 403, 404, 409, 412, 413, 415, 422, 503],
        "get-group" | "list-members" => &[400, 401, 404, 503],
        "list-user-groups" => &[400, 401, 403, 503],
        "delete-group" => &[400, 401, 403, 404, 409, 412, 503],
        "add-members" => &[400, 401, 404, 409, 413, 415, 422, 503],
        "remove-members" | "grant-admins" | "revoke-admins" | "transfer-owner" => {
            &[400, 401, 403, 404, 409, 413, 415, 422, 503]
        }
        "health" => &[],
        // Every answer is 200 (the outcome is in the body), but for a path the router
        // refuses before any handler (a bad percent-escape).
        "tencent-callback" => &[400],
        other => panic!("no expected error statuses for {other}: add them here"),
    }
}

/// The error response component each status refers to (404 depends on the route).
fn error_component(function: Function, status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 if function.name() == "usersig-signature" => "TencentNotFound",
        404 if function.name().ends_with("-signature") => "AppNotFound",
        404 => "GroupNotFound",
        409 => "Conflict",
        412 => "PreconditionFailed",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        422 => "UnprocessableEntity",
        503 => "ServiceUnavailable",
        other => panic!("no error component for {other}"),
    }
}

#[test]
fn the_document_and_the_route_list_agree() {
    let ops = operations();
    let documented: BTreeSet<(String, String)> = ops.keys().cloned().collect();
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(
        documented,
        listed,
        "only documented: {:?}; only listed: {:?}",
        documented.difference(&listed).collect::<Vec<_>>(),
        listed.difference(&documented).collect::<Vec<_>>()
    );
    let global = &spec().doc()["security"];
    assert_eq!(
        global,
        &json!([{"bearerAuth": []}]),
        "bearer auth by default"
    );
    for route in ROUTES {
        let name = format!("{} {}", route.method, route.path);
        let op = &ops[&(route.method.to_owned(), route.path.to_owned())];
        assert_eq!(op["operationId"], route.event, "{name}: operationId");
        let responses = op["responses"].as_object().expect("responses");
        let statuses: BTreeSet<u16> = responses
            .keys()
            .map(|s| s.parse().unwrap_or_else(|_| panic!("{name}: status {s}")))
            .collect();
        let mut expected: BTreeSet<u16> = error_statuses(route.function).iter().copied().collect();
        expected.insert(route.status);
        assert_eq!(statuses, expected, "{name}: documented statuses");
        for status in error_statuses(route.function) {
            assert_eq!(
                responses[&status.to_string()]["$ref"],
                format!(
                    "#/components/responses/{}",
                    error_component(route.function, *status)
                ),
                "{name}: {status}"
            );
        }
        if matches!(route.function, Function::Health | Function::TencentCallback) {
            assert_eq!(op["security"], json!([]), "{name} needs no token");
            assert!(!statuses.contains(&401));
        } else {
            assert!(
                op.get("security").is_none(),
                "{name} must keep the global bearer auth"
            );
            assert!(statuses.contains(&401), "{name} documents 401");
        }
        let success = &responses[&route.status.to_string()];
        assert!(
            success.is_object(),
            "{name}: success {} documented",
            route.status
        );
        assert!(
            op["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}: say who may call it"
        );
    }
}

/// Every `$ref` in the document.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_valid_openapi_3_0() {
    // The typed model of OpenAPI 3.0 (the `openapiv3` crate) reads it whole.
    let typed: openapiv3::OpenAPI =
        serde_yaml_ng::from_str(OPENAPI_YAML).expect("openapi.yaml is an OpenAPI 3.0 document");
    assert_eq!(typed.openapi, "3.0.3");
    assert!(typed
        .components
        .as_ref()
        .is_some_and(|c| c.security_schemes.contains_key("bearerAuth")));

    let s = spec();
    let doc = s.doc();
    // Every reference resolves.
    let mut all = Vec::new();
    refs(doc, &mut all);
    assert!(all.len() > 100);
    for r in &all {
        let pointer = r.strip_prefix('#').expect("local refs only");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    // Operation ids are unique; path parameters are exactly the template's.
    let mut ids = BTreeSet::new();
    for ((method, path), op) in operations() {
        assert!(
            ids.insert(op["operationId"].as_str().unwrap().to_owned()),
            "{method} {path}: duplicate operationId"
        );
        let in_template: BTreeSet<String> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        let mut declared = BTreeSet::new();
        for p in op["parameters"].as_array().into_iter().flatten() {
            let p = s.resolve(p).unwrap();
            assert!(
                p["schema"].is_object(),
                "{method} {path}: {p} has no schema"
            );
            if p["in"] == "path" {
                assert_eq!(p["required"], true, "{method} {path}: {p}");
                declared.insert(p["name"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(declared, in_template, "{method} {path}: path parameters");
        // Bodies come as JSON or form, each with a schema; Tencent's callbacks as JSON
        // only (the vendor's contract: anything else is refused in the answer).
        if let Some(body) = op.get("requestBody") {
            let content = body["content"].as_object().unwrap();
            let types: BTreeSet<&str> = content.keys().map(String::as_str).collect();
            let expected = if path.starts_with("/im-cloud/") {
                BTreeSet::from(["application/json"])
            } else {
                BTreeSet::from(["application/json", "application/x-www-form-urlencoded"])
            };
            assert_eq!(types, expected, "{method} {path}");
        }
        for (status, response) in op["responses"].as_object().unwrap() {
            let response = s.resolve(response).unwrap();
            assert!(
                response["description"].is_string(),
                "{method} {path} {status}"
            );
            // A body only where there is one; 204 has none.
            assert_eq!(
                response.get("content").is_none(),
                status == "204",
                "{method} {path} {status}"
            );
        }
    }
    // Every schema compiles as JSON Schema.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        s.compile(schema)
            .unwrap_or_else(|e| panic!("components/schemas/{name}: {e}"));
    }
    // The error shape: every error response has the one body, with its own code.
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        let schema = &response["content"]["application/json"]["schema"];
        let resolved = s.resolve(schema).unwrap();
        if let Some(all_of) = resolved.get("allOf") {
            assert_eq!(all_of[0]["$ref"], "#/components/schemas/Error", "{name}");
            assert!(all_of[1]["properties"]["code"]["enum"][0].as_u64().unwrap() >= 1000);
        }
    }
}

#[tokio::test]
async fn the_local_server_serves_the_document() {
    let base = env("IM_TEST_HTTP_URL");
    // The tests' client: it installs the TLS provider reqwest needs here (alone, this
    // test ran before any other had, and plain reqwest::get panicked).
    let resp = im_e2e::http::client()
        .get(format!("{base}/openapi.yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/yaml");
    let served = resp.bytes().await.unwrap();
    let file = std::fs::read(repo_root().join("openapi.yaml")).unwrap();
    assert!(
        served[..] == file[..],
        "the served document differs from openapi.yaml"
    );
}

// --- the checker itself ---------------------------------------------------------------

fn group_view() -> Value {
    json!({
        "group_id": 7, "group_name": "g", "owner": "alice", "admins": ["bob"],
        "member_count": 2, "max_members": 500, "conversation_id": null,
        "avatar_url": null, "description": "d",
        "created_at": "2026-11-26T00:00:00Z", "updated_at": "2026-11-26T00:00:01Z"
    })
}

fn check(
    method: &str,
    path: &str,
    status: u16,
    headers: &[(&str, &str)],
    body: &Value,
) -> Result<(), String> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    spec().check(method, path, status, &headers, &bytes, Fallback::Router)
}

const JSON: (&str, &str) = ("content-type", "application/json");
const ETAG: (&str, &str) = ("etag", "\"3\"");

#[test]
fn the_checker_accepts_conforming_responses() {
    check("GET", "/im/group/7", 200, &[JSON, ETAG], &group_view()).unwrap();
    check("DELETE", "/im/group/7", 204, &[], &Value::Null).unwrap();
    check("GET", "/health", 200, &[JSON], &json!({"status": "ok"})).unwrap();
    let unauthorized = json!({"code": 1001, "msg": "unauthorized", "request": "GET /im/group/7"});
    check(
        "GET",
        "/im/group/7",
        401,
        &[JSON, ("www-authenticate", "Bearer realm=\"im\"")],
        &unauthorized,
    )
    .unwrap();
    // The join route, also served with a trailing slash.
    assert_eq!(
        spec().target("GET", "/signature/invite/a/c/conv/"),
        Target::Operation {
            method: "GET".into(),
            template: "/signature/invite/{app_id}/{client_id}/{conversion_id}".into()
        }
    );
    check(
        "PATCH",
        "/im/group/1",
        405,
        &[JSON],
        &json!({"code": 1005, "msg": "method_not_allowed", "request": "PATCH /im/group/1"}),
    )
    .unwrap();
    check(
        "GET",
        "/nope",
        404,
        &[JSON],
        &json!({"code": 1004, "msg": "route_not_found", "request": "GET /nope"}),
    )
    .unwrap();
}

#[test]
fn the_checker_rejects_what_the_document_does_not_say() {
    let wrong = |what: &str, r: Result<(), String>, needle: &str| {
        let e = r.expect_err(what);
        assert!(e.contains(needle), "{what}: {e}");
    };
    // A group view without its owner.
    let mut no_owner = group_view();
    no_owner.as_object_mut().unwrap().remove("owner");
    wrong(
        "missing owner",
        check("GET", "/im/group/7", 200, &[JSON, ETAG], &no_owner),
        "owner",
    );
    // A field the document does not have.
    let mut extra = group_view();
    extra["secret"] = json!("x");
    wrong(
        "extra field",
        check("GET", "/im/group/7", 200, &[JSON, ETAG], &extra),
        "secret",
    );
    // null where the field is not nullable; a nullable field may be null.
    let mut null_name = group_view();
    null_name["group_name"] = Value::Null;
    wrong(
        "null group_name",
        check("GET", "/im/group/7", 200, &[JSON, ETAG], &null_name),
        "group_name",
    );
    // A status not documented for the operation (GET has no 409).
    wrong(
        "undocumented status",
        check(
            "GET",
            "/im/group/7",
            409,
            &[JSON],
            &json!({"code": 1009, "msg": "conflict: x", "request": "GET /im/group/7"}),
        ),
        "not documented",
    );
    // The right status with another status's error code.
    wrong(
        "wrong code",
        check(
            "GET",
            "/im/group/7",
            404,
            &[JSON],
            &json!({"code": 1004, "msg": "group_not_found", "request": "GET /im/group/7"}),
        ),
        "1041",
    );
    // A documented header that is missing; another content type; a body on a 204.
    wrong(
        "no ETag",
        check("GET", "/im/group/7", 200, &[JSON], &group_view()),
        "ETag",
    );
    wrong(
        "401 without WWW-Authenticate",
        check(
            "GET",
            "/im/group/7",
            401,
            &[JSON],
            &json!({"code": 1001, "msg": "unauthorized", "request": "GET /im/group/7"}),
        ),
        "WWW-Authenticate",
    );
    wrong(
        "text/plain",
        check(
            "GET",
            "/im/group/7",
            200,
            &[("content-type", "text/plain"), ETAG],
            &group_view(),
        ),
        "content-type",
    );
    wrong(
        "body on 204",
        check("DELETE", "/im/group/7", 204, &[], &json!({})),
        "without a body",
    );
    // Signature fields have formats; Cache-Control: no-store is required.
    let login = json!({"app_id": "a", "client_id": "c", "timestamp": "1764115200",
                       "nonce": "abcd1234", "signature": "0".repeat(40)});
    let no_store = ("cache-control", "no-store");
    check(
        "GET",
        "/signature/login/a/c",
        200,
        &[JSON, no_store],
        &login,
    )
    .unwrap();
    wrong(
        "cacheable signature",
        check("GET", "/signature/login/a/c", 200, &[JSON], &login),
        "Cache-Control",
    );
    let mut short_nonce = login.clone();
    short_nonce["nonce"] = json!("abc");
    wrong(
        "short nonce",
        check(
            "GET",
            "/signature/login/a/c",
            200,
            &[JSON, no_store],
            &short_nonce,
        ),
        "nonce",
    );
    // A path no operation has must be the router's 404.
    wrong(
        "unknown path answered 200",
        check("GET", "/nope", 200, &[JSON], &json!({"status": "ok"})),
        "404",
    );
}

#[test]
fn nullable_becomes_a_null_type() {
    assert_eq!(
        from_openapi(json!({"type": "string", "nullable": true})),
        json!({"type": ["string", "null"]})
    );
    assert_eq!(
        from_openapi(json!({"properties": {"nullable": {"type": "integer"}}})),
        json!({"properties": {"nullable": {"type": "integer"}}})
    );
    let s = Spec::parse(OPENAPI_YAML).unwrap();
    let page = json!({"$ref": "#/components/schemas/MemberPage"});
    s.validate(&page, &json!({"members": [], "next_cursor": null}))
        .unwrap();
    assert!(s
        .validate(&page, &json!({"members": [], "next_cursor": 5}))
        .is_err());
}
