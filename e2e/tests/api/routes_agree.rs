//! The route list in `shared/src/api/routes.rs` is the one source: `template.yaml`, the
//! function crates, the `events/` files and the local server must all agree with it. The
//! stream functions (`STREAM_FUNCTIONS`: the IM cloud mirror) serve no route: each is one
//! template function fed by the one event source mapping on the table's stream, a crate,
//! and a DynamoDB Streams event in `events/` that the mapping's filter lets through.

use std::collections::BTreeSet;

use im_e2e::repo::{read_json, repo_root, template, STREAM_FUNCTIONS};
use im_e2e::stack::env;
use im_shared::routes::{Function, ROUTES};
use serde_json::{json, Value as Json};
use serde_yaml_ng::Value as Yaml;

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
        let stream = STREAM_FUNCTIONS.contains(&binary.as_str());
        let events = res["Properties"]["Events"].as_mapping();
        // A stream function's ways in are its mapping (see
        // the_mirror_consumes_the_table_stream) and its drain's schedule (see
        // the_schedule_event_file_is_the_templates_schedule), no route; a route function
        // has at least one route.
        let routes_of: Vec<&Yaml> = events
            .into_iter()
            .flatten()
            .map(|(_, ev)| ev)
            .filter(|ev| !(stream && ev["Type"] == "Schedule"))
            .collect();
        assert_eq!(routes_of.is_empty(), stream, "{binary}: Events");
        for ev in routes_of {
            assert_eq!(ev["Type"], "HttpApi");
            routes.insert((
                ev["Properties"]["Method"].as_str().unwrap().to_owned(),
                ev["Properties"]["Path"].as_str().unwrap().to_owned(),
                binary.clone(),
            ));
        }
        // Least privilege: the functions' policies name only the table (and for a stream
        // function, the table's stream and its dead-letter queue); iam_policies.rs checks
        // them in detail.
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
                let stream_resource = resource.contains("Table.StreamArn")
                    || resource.contains("DeadLetterQueue.Arn");
                assert!(
                    resource.contains("Table.Arn") || (stream && stream_resource),
                    "{binary}: {resource}"
                );
                for action in st["Action"].as_sequence().unwrap() {
                    let a = action.as_str().unwrap();
                    assert!(
                        (a.starts_with("dynamodb:") || (stream && a == "sqs:SendMessage"))
                            && !a.contains('*'),
                        "{binary}: {a}"
                    );
                }
            }
        }
    }
    assert_eq!(routes, listed());
    let all: BTreeSet<String> = Function::ALL
        .iter()
        .map(|f| f.name())
        .chain(STREAM_FUNCTIONS.iter().copied())
        .map(str::to_owned)
        .collect();
    assert_eq!(functions, all);
    assert_eq!(functions.len(), 24);
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
        let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
        if STREAM_FUNCTIONS.contains(&name.as_str()) {
            // Its records come from the stream mapping, not a route: it runs no route
            // handler, and its work lives in the im-sync library.
            assert!(
                !main.contains("im_shared::lambda::run("),
                "{name}: a stream function runs no route handler"
            );
            assert!(manifest.contains("im-sync"), "{name}: does not use im-sync");
            crates.insert(name);
            continue;
        }
        let function = Function::from_name(&name)
            .unwrap_or_else(|| panic!("{name} is not in the function list"));
        // The binary names its own function's entry type (so it links only that
        // handler), and the one whose name is the crate's.
        let entry = format!("im_shared::lambda::run(im_shared::functions::{function:?})");
        assert!(
            main.contains(&entry),
            "{name}: main.rs is not the thin entry point `{entry}`"
        );
        let runs = main.matches("im_shared::lambda::run(").count();
        assert_eq!(runs, 1, "{name}: main.rs runs {runs} functions");
        crates.insert(name);
    }
    assert_eq!(crates.len(), Function::ALL.len() + STREAM_FUNCTIONS.len());
}

/// The event files of `dir`, by route event name.
fn event_files(dir: &str) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join(dir)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue; // the fixture secret, the README, the authorizer/ folder
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if STREAM_FUNCTIONS.contains(&stem.as_str()) {
            continue; // a stream event: the_stream_event_file_is_a_batch_the_mapping_passes
        }
        let event = read_json(&path);
        assert_eq!(
            event["version"],
            "2.0",
            "{}: not an HTTP API payload 2.0 event",
            path.display()
        );
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
        // authorizer mode, nothing on the open health route nor on Tencent's callbacks
        // (Tencent cannot send a token; its callback authentication is in the query).
        let open = matches!(route.function, Function::Health | Function::TencentCallback);
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

/// The text of a short-form intrinsic (`!Ref X`, `!GetAtt X.Y`).
fn intrinsic<'a>(v: &'a Yaml, tag: &str) -> &'a str {
    match v {
        Yaml::Tagged(t) if t.tag == tag => t.value.as_str().unwrap(),
        other => panic!("expected !{tag}, got {other:?}"),
    }
}

/// The template's one event source mapping (its properties).
fn stream_mapping(t: &Yaml) -> &Yaml {
    let mappings: Vec<&Yaml> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
        .collect();
    assert_eq!(mappings.len(), 1, "one event source mapping");
    &mappings[0]["Properties"]
}

/// The mapping's filter patterns, parsed.
fn stream_filters(t: &Yaml) -> Vec<Json> {
    stream_mapping(t)["FilterCriteria"]["Filters"]
        .as_sequence()
        .expect("the mapping has no FilterCriteria")
        .iter()
        .map(|f| serde_json::from_str(f["Pattern"].as_str().unwrap()).unwrap())
        .collect()
}

/// Whether a Lambda event filter pattern matches `event`: every field of the pattern
/// must; an object descends into the event, an array lists what the event's value may
/// be (any of): a string, or `{"prefix": ...}`. The other operators are not used here,
/// and fail the test rather than be guessed at.
fn pattern_matches(pattern: &Json, event: &Json) -> bool {
    let Json::Object(fields) = pattern else {
        panic!("a filter pattern is an object: {pattern}");
    };
    fields.iter().all(|(field, rule)| {
        let value = &event[field.as_str()];
        match rule {
            Json::Object(_) => value.is_object() && pattern_matches(rule, value),
            Json::Array(options) => options.iter().any(|option| match option {
                Json::String(s) => value.as_str() == Some(s.as_str()),
                Json::Object(op) if op.len() == 1 && op["prefix"].is_string() => value
                    .as_str()
                    .is_some_and(|v| v.starts_with(op["prefix"].as_str().unwrap())),
                other => panic!("filter rule not understood by this check: {other}"),
            }),
            other => panic!("a filter rule is an object or an array: {other}"),
        }
    })
}

/// Filters are ORed: a record reaches the function when one of them matches.
fn passes(filters: &[Json], record: &Json) -> bool {
    filters.iter().any(|p| pattern_matches(p, record))
}

#[test]
fn the_filter_check_reads_patterns_as_lambda_does() {
    let pattern = json!({"a": {"b": ["x", {"prefix": "P#"}]}, "c": ["y"]});
    assert!(pattern_matches(
        &pattern,
        &json!({"a": {"b": "x"}, "c": "y"})
    ));
    assert!(pattern_matches(
        &pattern,
        &json!({"a": {"b": "P#1", "z": 1}, "c": "y"})
    ));
    assert!(!pattern_matches(
        &pattern,
        &json!({"a": {"b": "xP#"}, "c": "y"})
    ));
    assert!(!pattern_matches(
        &pattern,
        &json!({"a": {"b": "x"}, "c": "z"})
    ));
    assert!(!pattern_matches(&pattern, &json!({"a": {"b": "x"}})));
    assert!(!pattern_matches(&pattern, &json!({"a": "x", "c": "y"})));
    let filters = [json!({"c": ["y"]}), json!({"c": ["z"]})];
    assert!(passes(&filters, &json!({"c": "z"})));
    assert!(!passes(&filters, &json!({"c": "w"})));
}

/// The sync function is fed by one event source mapping on the table's stream, set for a
/// mirror that must apply each group's changes in order, exactly once in effect, without
/// one bad record holding the others for long, and losing nothing silently.
#[test]
fn the_mirror_consumes_the_table_stream() {
    let t = template();
    assert_eq!(
        t["Resources"]["Table"]["Properties"]["StreamSpecification"]["StreamViewType"],
        "NEW_AND_OLD_IMAGES",
        "a removed member or group is known only by its old image, a rename by both"
    );
    let m = stream_mapping(&t);
    // The function's `live` alias (`!Ref <Function>.Alias`), as deploy.rs requires.
    let alias = intrinsic(&m["FunctionName"], "Ref");
    let function = &t["Resources"][alias.strip_suffix(".Alias").unwrap_or(alias)];
    assert_eq!(
        function["Properties"]["CodeUri"],
        format!("functions/{}", STREAM_FUNCTIONS[0])
    );
    assert_eq!(intrinsic(&m["EventSourceArn"], "GetAtt"), "Table.StreamArn");
    let timeout = function["Properties"]["Timeout"].as_i64().unwrap();
    assert!(
        (30..=300).contains(&timeout),
        "a batch calls an external API with retries: Timeout {timeout}"
    );

    let number = |k: &str| {
        m[k].as_i64()
            .unwrap_or_else(|| panic!("{k} not set: its default is unbounded or unfit"))
    };
    assert_eq!(m["StartingPosition"], "TRIM_HORIZON");
    assert!((1..=100).contains(&number("BatchSize")));
    assert!((0..=5).contains(&number("MaximumBatchingWindowInSeconds")));
    assert_eq!(
        number("ParallelizationFactor"),
        1,
        "one batch at a time per shard, so a group's records stay in order"
    );
    assert_eq!(m["BisectBatchOnFunctionError"].as_bool(), Some(true));
    assert!(
        (0..=10).contains(&number("MaximumRetryAttempts")),
        "retries bounded (-1 retries until the record leaves the stream)"
    );
    assert!(
        (60..=6 * 3600).contains(&number("MaximumRecordAgeInSeconds")),
        "record age bounded, and well short of the stream's 24 hours: the dead-letter \
         message only points into the stream, so a redrive needs the records still there"
    );
    let response_types: Vec<&str> = m["FunctionResponseTypes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(response_types, ["ReportBatchItemFailures"]);

    // Failures go to an encrypted queue, and a message there raises an alarm.
    let destination = intrinsic(
        &m["DestinationConfig"]["OnFailure"]["Destination"],
        "GetAtt",
    );
    let queue_id = destination.strip_suffix(".Arn").unwrap();
    let queue = &t["Resources"][queue_id];
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    let q = &queue["Properties"];
    assert!(
        q["SqsManagedSseEnabled"].as_bool() == Some(true) || q.get("KmsMasterKeyId").is_some(),
        "{queue_id} is not encrypted"
    );
    assert_eq!(
        q["MessageRetentionPeriod"].as_i64(),
        Some(14 * 24 * 3600),
        "keep dead letters as long as SQS can"
    );
    let queue_name = format!("{queue_id}.QueueName");
    let alarms: Vec<&Yaml> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|r| &r["Properties"])
        .filter(|a| {
            a["Namespace"] == "AWS/SQS"
                && a["Dimensions"].as_sequence().is_some_and(|d| {
                    d.iter().any(|d| {
                        d["Name"] == "QueueName" && intrinsic(&d["Value"], "GetAtt") == queue_name
                    })
                })
        })
        .collect();
    assert_eq!(alarms.len(), 1, "one alarm on {queue_id}");
    let a = alarms[0];
    assert_eq!(a["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(a["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(a["Threshold"].as_f64(), Some(0.0));
    assert_eq!(a["EvaluationPeriods"].as_i64(), Some(1));
    assert_eq!(a["Period"].as_i64(), Some(300));

    // Group and member items only: not the mirror's own sync state (which would feed it
    // its own writes), nor any other item.
    let filters = stream_filters(&t);
    let record = |pk: &str, sk: &str| json!({"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": pk}, "sk": {"S": sk}}}});
    for (pk, sk) in [
        ("GROUP#1", "META"),
        ("GROUP#1001", "MEMBER#alice"),
        ("GROUP#1001", "MEMBER#MEMBER#"),
    ] {
        assert!(passes(&filters, &record(pk, sk)), "{pk} {sk} filtered out");
    }
    for (pk, sk) in [
        ("GROUP#1", "SYNC"),
        ("GROUP#1", "METADATA"),
        ("GROUP#1", "member#alice"),
        ("APP", "demo-app"),
        ("TOKEN_KEY", "events-fixture"),
        ("COUNTER", "GROUP_ID"),
        ("CONV#demo-app:c1", "CONV"),
        ("IDEM#demo-app:alice:k1", "IDEM"),
        ("XGROUP#1", "META"),
        ("CONV#GROUP#1", "META"),
    ] {
        assert!(!passes(&filters, &record(pk, sk)), "{pk} {sk} let through");
    }
}

/// `events/<stream function>.json` is a DynamoDB Streams batch as the mapping delivers it:
/// the record shape of the Lambda event, images as the stream's view type and each event
/// name carry them, the item layout of `shared/src/store/dynamo/layout.rs`, sequence
/// numbers in stream order, every record one the mapping's filter lets through.
#[test]
fn the_stream_event_file_is_a_batch_the_mapping_passes() {
    let t = template();
    let filters = stream_filters(&t);
    let view = t["Resources"]["Table"]["Properties"]["StreamSpecification"]["StreamViewType"]
        .as_str()
        .unwrap();
    for name in STREAM_FUNCTIONS {
        let event = read_json(&repo_root().join("events").join(format!("{name}.json")));
        let records = event["Records"].as_array().expect("no Records");
        assert!(!records.is_empty(), "{name}.json: no records");
        let mut previous: Option<&str> = None;
        for (i, r) in records.iter().enumerate() {
            let at = format!("{name}.json, record {i}");
            assert_eq!(r["eventSource"], "aws:dynamodb", "{at}");
            assert_eq!(r["eventVersion"], "1.1", "{at}");
            assert!(
                r["eventID"].as_str().is_some_and(|id| !id.is_empty()),
                "{at}"
            );
            let region = r["awsRegion"].as_str().unwrap();
            let arn = r["eventSourceARN"].as_str().unwrap();
            assert!(
                arn.starts_with(&format!("arn:aws:dynamodb:{region}:"))
                    && arn.contains(":table/")
                    && arn.contains("/stream/"),
                "{at}: {arn} is not a stream of a table in {region}"
            );
            let d = &r["dynamodb"];
            assert_eq!(d["StreamViewType"], view, "{at}");
            assert!(d["ApproximateCreationDateTime"].is_number(), "{at}");
            assert!(d["SizeBytes"].as_u64().is_some_and(|n| n > 0), "{at}");
            // Decimal strings of 21 to 40 digits; the same length compares as text.
            let seq = d["SequenceNumber"].as_str().unwrap();
            assert!(
                (21..=40).contains(&seq.len()) && seq.bytes().all(|b| b.is_ascii_digit()),
                "{at}: SequenceNumber {seq}"
            );
            if let Some(p) = previous {
                assert!((seq.len(), seq) > (p.len(), p), "{at}: out of stream order");
            }
            previous = Some(seq);
            let (new, old) = (d.get("NewImage"), d.get("OldImage"));
            match r["eventName"].as_str() {
                Some("INSERT") => assert!(new.is_some() && old.is_none(), "{at}"),
                Some("MODIFY") => assert!(new.is_some() && old.is_some(), "{at}"),
                Some("REMOVE") => assert!(new.is_none() && old.is_some(), "{at}"),
                other => panic!("{at}: eventName {other:?}"),
            }
            let keys = d["Keys"].as_object().unwrap();
            assert_eq!(
                keys.keys().collect::<Vec<_>>(),
                ["pk", "sk"],
                "{at}: the table's keys"
            );
            let (pk, sk) = (
                keys["pk"]["S"].as_str().unwrap(),
                keys["sk"]["S"].as_str().unwrap(),
            );
            for image in [new, old].into_iter().flatten() {
                item_in_layout(&at, pk, sk, image);
            }
            assert!(passes(&filters, r), "{at}: the mapping's filter drops it");
        }
    }
}

/// `events/schedule/<stream function>.json` is what EventBridge sends for the function's
/// `Schedule` event in the template (the drain of deferred records): a scheduled event,
/// with no `Records`, which is how the function tells it from a stream batch.
#[test]
fn the_schedule_event_file_is_the_templates_schedule() {
    let t = template();
    for name in STREAM_FUNCTIONS {
        let logical = t["Resources"]
            .as_mapping()
            .unwrap()
            .iter()
            .find(|(_, r)| {
                r["Properties"]["CodeUri"].as_str() == Some(&format!("functions/{name}"))
            })
            .map(|(k, _)| k.as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no function for {name}"));
        let events = t["Resources"][logical.as_str()]["Properties"]["Events"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{logical}: no Events"));
        let schedules: Vec<&Yaml> = events
            .values()
            .filter(|e| e["Type"].as_str() == Some("Schedule"))
            .collect();
        assert_eq!(schedules.len(), 1, "{logical}: one Schedule event");
        assert_eq!(
            schedules[0]["Properties"]["Schedule"].as_str(),
            Some("rate(1 minute)"),
            "{logical}: the vendors' quotas are per minute"
        );
        let event = read_json(&repo_root().join(format!("events/schedule/{name}.json")));
        assert_eq!(event["source"], "aws.events");
        assert_eq!(event["detail-type"], "Scheduled Event");
        assert!(event["resources"][0]
            .as_str()
            .is_some_and(|arn| arn.starts_with("arn:aws:events:") && arn.contains(":rule/")));
        assert!(
            event.get("Records").is_none(),
            "{name}: a drain has no Records"
        );
    }
}

/// A group or member item image as `layout.rs` writes it.
fn item_in_layout(at: &str, pk: &str, sk: &str, image: &Json) {
    const TYPES: [&str; 10] = ["S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"];
    for (attribute, value) in image.as_object().unwrap() {
        let typed = value.as_object().unwrap();
        assert!(
            typed.len() == 1 && TYPES.contains(&typed.keys().next().unwrap().as_str()),
            "{at}: {attribute} is not an attribute value: {value}"
        );
    }
    let text = |a: &str| {
        image[a]["S"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: {a}"))
    };
    assert_eq!(
        (text("pk"), text("sk")),
        (pk, sk),
        "{at}: image and keys differ"
    );
    let group_id = pk.strip_prefix("GROUP#").unwrap();
    assert_eq!(image["group_id"]["N"], group_id, "{at}");
    if sk == "META" {
        for a in [
            "app_id",
            "group_name",
            "owner",
            "status",
            "created_at",
            "updated_at",
        ] {
            text(a);
        }
        for a in ["member_count", "max_members", "version"] {
            assert!(image[a]["N"].is_string(), "{at}: {a}");
        }
    } else {
        let client = sk.strip_prefix("MEMBER#").unwrap();
        assert_eq!(text("client_id"), client, "{at}");
        text("joined_at");
        let id: u64 = group_id.parse().unwrap();
        assert_eq!(text("gsi1sk"), format!("GROUP#{id:020}"), "{at}");
        assert!(
            text("gsi1pk").starts_with("CLIENT#")
                && text("gsi1pk").ends_with(&format!(":{client}")),
            "{at}: gsi1pk"
        );
    }
}

#[tokio::test]
async fn the_local_server_serves_every_listed_route() {
    let base = env("IM_TEST_HTTP_URL");
    let http = im_e2e::http::client();
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
        // Tencent's callbacks answer 200 with a refusal in the body (ActionStatus FAIL).
        let expected = match route.function {
            Function::Health => 200,
            Function::TencentCallback => {
                assert_eq!(body["ActionStatus"], "FAIL", "{path}");
                200
            }
            _ => 401,
        };
        assert_eq!(status, expected, "{} {path} without a token", route.method);
        assert!(status < 500, "{} {path}: {status}", route.method);
    }
}
