//! The route list in `shared/src/api/routes.rs` is the one source: `template.yaml`, the
//! function crates, the `events/` files and the local server must all agree with it.

use std::collections::BTreeSet;

use im_e2e::repo::{read_json, repo_root, template};
use im_e2e::stack::env;
use im_shared::routes::{Function, ROUTES};

type RouteSet = BTreeSet<(String, String, String)>;

fn listed() -> RouteSet {
    ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_owned(),
                r.path.to_owned(),
                r.function.name().to_owned(),
            )
        })
        .collect()
}

#[test]
fn template_maps_exactly_the_listed_routes_one_function_each() {
    let t = template();
    let mut routes = RouteSet::new();
    let mut functions = BTreeSet::new();
    for (id, res) in t["Resources"].as_mapping().unwrap() {
        if res["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = built_crate(id.as_str().unwrap(), res);
        assert!(functions.insert(binary.clone()), "{binary} defined twice");
        for (_, ev) in res["Properties"]["Events"].as_mapping().unwrap() {
            assert_eq!(ev["Type"], "HttpApi");
            routes.insert((
                ev["Properties"]["Method"].as_str().unwrap().to_owned(),
                ev["Properties"]["Path"].as_str().unwrap().to_owned(),
                binary.clone(),
            ));
        }
        // Least privilege: the functions' policies name only the table.
        let no_policies = Vec::new();
        let policies = res["Properties"]["Policies"]
            .as_sequence()
            .unwrap_or(&no_policies);
        assert!(
            !policies.is_empty() || binary == "health",
            "{binary} has no policy"
        );
        for policy in policies {
            for st in policy["Statement"].as_sequence().unwrap() {
                let resource = serde_yaml_ng::to_string(&st["Resource"]).unwrap();
                assert!(resource.contains("Table.Arn"), "{binary}: {resource}");
                for action in st["Action"].as_sequence().unwrap() {
                    let a = action.as_str().unwrap();
                    assert!(
                        a.starts_with("dynamodb:") && !a.contains('*'),
                        "{binary}: {a}"
                    );
                }
            }
        }
    }
    assert_eq!(routes, listed());
    let all: BTreeSet<String> = Function::ALL.iter().map(|f| f.name().to_owned()).collect();
    assert_eq!(functions, all);
    assert_eq!(functions.len(), 21);
    let g = &t["Globals"]["Function"];
    assert_eq!(g["Runtime"], "provided.al2023");
    assert_eq!(g["Architectures"][0], "arm64");
}

/// The crate whose binary `sam build` ships for the template function `id`. Every
/// function is built by the root Makefile's `build-<LogicalId>` (`BuildMethod: makefile`,
/// `ContextPath: .`), which copies the bootstrap of crate `functions/<name>` for the
/// logical id `<Name>Function` from one cargo build of every crate under `functions/`;
/// its CodeUri must name the same folder.
fn built_crate(id: &str, res: &serde_yaml_ng::Value) -> String {
    let meta = &res["Metadata"];
    assert_eq!(meta["BuildMethod"], "makefile", "{id}: BuildMethod");
    assert_eq!(meta["ContextPath"], ".", "{id}: ContextPath");
    // The Makefile's crate_of: a dash before each capital that follows a small letter or
    // a digit, then all small (LoginSignatureFunction: login-signature).
    let stem = id
        .strip_suffix("Function")
        .unwrap_or_else(|| panic!("{id}: a function's logical id ends in Function"));
    let mut name = String::new();
    let mut prev = ' ';
    for c in stem.chars() {
        if c.is_ascii_uppercase() && (prev.is_ascii_lowercase() || prev.is_ascii_digit()) {
            name.push('-');
        }
        name.push(c.to_ascii_lowercase());
        prev = c;
    }
    assert_eq!(
        res["Properties"]["CodeUri"].as_str(),
        Some(format!("functions/{name}").as_str()),
        "{id}: the Makefile builds it from functions/{name}"
    );
    assert!(
        repo_root()
            .join(format!("functions/{name}/Cargo.toml"))
            .is_file(),
        "{id}: no crate functions/{name}"
    );
    name
}

#[test]
fn function_crates_are_the_listed_functions() {
    let mut crates = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join("functions")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name}: package name differs from its folder"
        );
        let function = Function::from_name(&name)
            .unwrap_or_else(|| panic!("{name} is not in the function list"));
        // The binary names its own function's entry type (so it links only that
        // handler), and the one whose name is the crate's.
        let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
        let entry = format!("im_shared::lambda::run(im_shared::functions::{function:?})");
        assert!(
            main.contains(&entry),
            "{name}: main.rs is not the thin entry point `{entry}`"
        );
        let runs = main.matches("im_shared::lambda::run(").count();
        assert_eq!(runs, 1, "{name}: main.rs runs {runs} functions");
        crates.insert(name);
    }
    assert_eq!(crates.len(), Function::ALL.len());
}

/// The event files of `dir`, by route event name.
fn event_files(dir: &str) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join(dir)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue; // the fixture secret, the README, the authorizer/ folder
        }
        let event = read_json(&path);
        assert_eq!(
            event["version"],
            "2.0",
            "{}: not an HTTP API payload 2.0 event",
            path.display()
        );
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let route = ROUTES
            .iter()
            .find(|r| r.event == stem)
            .unwrap_or_else(|| panic!("{dir}/{stem}.json matches no route"));
        assert_eq!(
            event["routeKey"],
            format!("{} {}", route.method, route.path)
        );
        assert_eq!(event["requestContext"]["http"]["method"], route.method);
        assert_eq!(event["rawPath"], event["requestContext"]["http"]["path"]);
        let segments = |p: &str| p.split('/').count();
        assert_eq!(
            segments(event["rawPath"].as_str().unwrap()),
            segments(route.path),
            "{stem}"
        );
        // Credentials: a bearer token in the default mode, verified claims in the
        // authorizer mode, nothing on the open health route.
        let open = route.function == Function::Health;
        let has_token = event["headers"].get("authorization").is_some();
        let has_claims = event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"].is_string();
        match dir {
            "events" => assert!(has_token != open && !has_claims, "{dir}/{stem}"),
            _ => assert!(has_claims != open && !has_token, "{dir}/{stem}"),
        }
        files.insert(stem);
    }
    files
}

#[test]
fn one_event_file_per_route_in_each_mode() {
    let all: BTreeSet<String> = ROUTES.iter().map(|r| r.event.to_owned()).collect();
    assert_eq!(event_files("events"), all);
    assert_eq!(event_files("events/authorizer"), all);
}

#[tokio::test]
async fn the_local_server_serves_every_listed_route() {
    let base = env("IM_TEST_HTTP_URL");
    let http = reqwest::Client::new();
    for route in ROUTES {
        let path = route
            .path
            .replace("{group_id}", "999999999")
            .replace("{sorted_member_ids}", "a:b")
            .replace(['{', '}'], "");
        let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
        let resp = http
            .request(method, format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        // Routed: whatever the handler answers, it is not the router's 404 or 405.
        assert_ne!(status, 405, "{} {path}", route.method);
        assert_ne!(body["msg"], "route_not_found", "{} {path}", route.method);
        // Authentication runs before anything else on every route but /health.
        let expected = if route.function == Function::Health {
            200
        } else {
            401
        };
        assert_eq!(status, expected, "{} {path} without a token", route.method);
        assert!(status < 500, "{} {path}: {status}", route.method);
    }
}
