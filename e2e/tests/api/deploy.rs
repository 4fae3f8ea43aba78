//! How the stack is shipped and watched, checked without any service: every function
//! publishes its `live` alias and deploys through CodeDeploy with rollback alarms wired
//! in, has its own log group with a retention, and the stream mapping calls the alias;
//! the operational alarms, dashboard and outputs exist; the defaults stay cheap; the
//! pipeline (`.github/workflows/`) deploys only stages that `samconfig.toml` defines; and
//! it cannot be turned against prod: each stage has its own deploy role, trusting only
//! its own environment's jobs on main (`docs/deploy-role-trust-<stage>.json`), reaching
//! only its own stage and changing roles only under the stage's permissions boundary
//! (`docs/deploy-role-policy.json`, `docs/stack-role-boundary.json`).

use std::collections::{BTreeMap, BTreeSet};

use im_e2e::repo::{repo_root, template};
use serde_json::json;
use serde_yaml_ng::Value;

use crate::iam_policies::glob;

/// The text of a short-form intrinsic (`!Ref X`), if `v` is one with that tag.
fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a str> {
    match v {
        Value::Tagged(t) if t.tag == tag => t.value.as_str(),
        _ => None,
    }
}

fn refs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|list| {
            list.iter()
                .filter_map(|i| tagged(i, "Ref").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A function's property, or the Globals' when the function has none.
fn property<'a>(t: &'a Value, function: &'a Value, key: &str) -> &'a Value {
    function["Properties"]
        .get(key)
        .unwrap_or(&t["Globals"]["Function"][key])
}

fn functions(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, r)| (id.as_str().unwrap().to_owned(), r))
        .collect()
}

/// The alarm a deployment preference lists: a `!Ref` to it, or its `AlarmName` (a `!Sub`).
fn listed_alarm<'a>(t: &'a Value, item: &Value) -> (String, &'a Value) {
    if let Some(id) = tagged(item, "Ref") {
        return (id.to_owned(), resource(t, id, "AWS::CloudWatch::Alarm"));
    }
    let name = tagged(item, "Sub").unwrap_or_else(|| panic!("{item:?}: neither !Ref nor !Sub"));
    let (id, alarm) = t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .find(|(_, r)| {
            r["Type"] == "AWS::CloudWatch::Alarm"
                && tagged(&r["Properties"]["AlarmName"], "Sub") == Some(name)
        })
        .unwrap_or_else(|| panic!("no alarm is named {name}"));
    (id.as_str().unwrap().to_owned(), alarm)
}

fn resource<'a>(t: &'a Value, id: &str, kind: &str) -> &'a Value {
    let r = &t["Resources"][id];
    assert_eq!(r["Type"], kind, "{id} is not a {kind}");
    r
}

/// The metrics an alarm watches: (namespace, metric name, dimension values), whether it
/// has one metric or a metric-math list.
fn alarm_metrics(alarm: &Value) -> Vec<(String, String, Vec<String>)> {
    let p = &alarm["Properties"];
    let one = |m: &Value| {
        let dims = m["Dimensions"]
            .as_sequence()
            .map(|d| {
                d.iter()
                    .map(|d| {
                        tagged(&d["Value"], "Ref")
                            .map(str::to_owned)
                            .or_else(|| d["Value"].as_str().map(str::to_owned))
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ns = tagged(&m["Namespace"], "Sub")
            .or(m["Namespace"].as_str())
            .unwrap_or_default();
        (
            ns.to_owned(),
            m["MetricName"].as_str().unwrap_or_default().to_owned(),
            dims,
        )
    };
    match p["Metrics"].as_sequence() {
        Some(list) => list
            .iter()
            .filter(|m| m.get("MetricStat").is_some())
            .map(|m| one(&m["MetricStat"]["Metric"]))
            .collect(),
        None => vec![one(p)],
    }
}

#[test]
fn every_function_rolls_out_through_its_alias_with_alarms() {
    let t = template();
    let g = &t["Globals"]["Function"];
    assert_eq!(g["AutoPublishAlias"], "live");
    let pref = &g["DeploymentPreference"];
    assert_eq!(tagged(&pref["Type"], "Ref"), Some("DeploymentType"));
    let p = &t["Parameters"]["DeploymentType"];
    assert_eq!(p["Default"], "AllAtOnce");
    let allowed: Vec<&str> = p["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(allowed.contains(&"Canary10Percent5Minutes"), "{allowed:?}");
    // The API-wide rollback alarms: the 5xx rate and the p99 latency. By name, not
    // !Ref: they watch the API, which calls the aliases, whose deployment groups list
    // them, so a !Ref would be a circular dependency (scripts/check-template-cycles.py
    // finds those in the transformed template).
    let global_alarms = pref["Alarms"].as_sequence().unwrap();
    assert_eq!(global_alarms.len(), 2, "{global_alarms:?}");
    let watched: Vec<_> = global_alarms
        .iter()
        .map(|item| {
            assert!(
                tagged(item, "Ref").is_none(),
                "{item:?}: a !Ref makes a cycle"
            );
            listed_alarm(&t, item).1
        })
        .flat_map(alarm_metrics)
        .map(|(ns, name, _)| format!("{ns}/{name}"))
        .collect();
    assert!(
        watched.contains(&"AWS/ApiGateway/5xx".to_owned()),
        "{watched:?}"
    );
    assert!(
        watched.contains(&"AWS/ApiGateway/Latency".to_owned()),
        "{watched:?}"
    );
    assert_eq!(
        t["Resources"]["ApiLatencyAlarm"]["Properties"]["ExtendedStatistic"],
        "p99"
    );

    let fns = functions(&t);
    assert_eq!(fns.len(), 24);
    for (id, f) in &fns {
        assert_eq!(property(&t, f, "AutoPublishAlias"), "live", "{id}");
        assert!(
            f["Properties"]
                .get("ProvisionedConcurrencyConfig")
                .is_none(),
            "{id}: provisioned concurrency costs money at rest"
        );
        // Its own alarm, on its own errors and throttles.
        let own = refs(&f["Properties"]["DeploymentPreference"]["Alarms"]);
        assert_eq!(own.len(), 1, "{id}: one alarm of its own");
        let alarm = resource(&t, &own[0], "AWS::CloudWatch::Alarm");
        let metrics = alarm_metrics(alarm);
        // A minute with no datapoint of one of them still evaluates (FILL), rather than
        // leaving the sum missing.
        assert_eq!(
            alarm["Properties"]["Metrics"][0]["Expression"], "FILL(errors, 0) + FILL(throttles, 0)",
            "{id}: {}",
            own[0]
        );
        for name in ["Errors", "Throttles"] {
            assert!(
                metrics.iter().any(|(ns, m, dims)| ns == "AWS/Lambda"
                    && m == name
                    && dims.len() == 1
                    && dims[0] == *id),
                "{id}: its alarm {} does not watch its {name}",
                own[0]
            );
        }
    }

    // The stream's mapping calls the mirror's alias, so a version gets records only once
    // CodeDeploy has moved `live` to it.
    let mapping = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
        .unwrap();
    assert_eq!(
        tagged(&mapping["Properties"]["FunctionName"], "Ref"),
        Some("SyncConversationsFunction.Alias")
    );
}

#[test]
fn every_function_logs_json_to_its_own_log_group_with_a_retention() {
    let t = template();
    let logging = &t["Globals"]["Function"]["LoggingConfig"];
    assert_eq!(logging["LogFormat"], "JSON");
    assert!(logging.get("ApplicationLogLevel").is_some());
    assert!(logging.get("SystemLogLevel").is_some());
    assert_eq!(t["Parameters"]["LogRetentionDays"]["Default"], 30);
    assert_eq!(
        t["Parameters"]["Tracing"]["Default"], "PassThrough",
        "no X-Ray by default"
    );
    assert_eq!(
        tagged(&t["Globals"]["Function"]["Tracing"], "Ref"),
        Some("Tracing")
    );
    let retention = |group: &Value, what: &str| {
        assert_eq!(
            tagged(&group["Properties"]["RetentionInDays"], "Ref"),
            Some("LogRetentionDays"),
            "{what}"
        );
    };
    let mut groups = BTreeSet::new();
    for (id, f) in functions(&t) {
        let name = tagged(&f["Properties"]["FunctionName"], "Sub")
            .unwrap_or_else(|| panic!("{id}: FunctionName is not a !Sub of the stack name"));
        let group_id = tagged(&f["Properties"]["LoggingConfig"]["LogGroup"], "Ref")
            .unwrap_or_else(|| panic!("{id}: LoggingConfig.LogGroup is not a !Ref"));
        assert!(groups.insert(group_id.to_owned()), "{id}: log group shared");
        let group = resource(&t, group_id, "AWS::Logs::LogGroup");
        assert_eq!(
            tagged(&group["Properties"]["LogGroupName"], "Sub"),
            Some(format!("/aws/lambda/{name}").as_str()),
            "{id}: its log group is /aws/lambda/<function name>"
        );
        retention(group, &id);
    }
    // The API's access logs: JSON, their own group, the same retention.
    let access = &t["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"];
    let dest = tagged(&access["DestinationArn"], "GetAtt").unwrap();
    let group = resource(
        &t,
        dest.strip_suffix(".Arn").unwrap(),
        "AWS::Logs::LogGroup",
    );
    retention(group, "access logs");
    let format: serde_json::Value =
        serde_json::from_str(access["Format"].as_str().unwrap()).expect("a JSON access log");
    assert!(format.get("requestId").is_some() && format.get("status").is_some());
}

#[test]
fn alarms_notify_and_the_dashboard_and_outputs_exist() {
    let t = template();
    let mut watched = BTreeSet::new();
    for (id, r) in t["Resources"].as_mapping().unwrap() {
        if r["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let actions = serde_yaml_ng::to_string(&r["Properties"]["AlarmActions"]).unwrap();
        assert!(
            actions.contains("HasAlarmEmail") && actions.contains("AlarmTopic"),
            "{id:?}: does not notify the alarm topic"
        );
        let p = &r["Properties"];
        if let Some(list) = p["Metrics"].as_sequence() {
            for m in list {
                if let Some(e) = m["Expression"].as_str().or(tagged(&m["Expression"], "Sub")) {
                    if e.contains("SystemErrors") {
                        watched.insert("AWS/DynamoDB/SystemErrors".to_owned());
                    }
                }
            }
        }
        for (ns, name, _) in alarm_metrics(r) {
            watched.insert(format!("{ns}/{name}"));
        }
    }
    for needed in [
        "AWS/Lambda/Errors",
        "AWS/Lambda/Throttles",
        "AWS/ApiGateway/5xx",
        "AWS/ApiGateway/4xx",
        "AWS/ApiGateway/Latency",
        "AWS/DynamoDB/ReadThrottleEvents",
        "AWS/DynamoDB/WriteThrottleEvents",
        "AWS/DynamoDB/SystemErrors",
        "im/${AWS::StackName}/AuthFailures",
    ] {
        assert!(
            watched.contains(needed),
            "no alarm on {needed}: {watched:?}"
        );
    }
    // The topic and its subscription exist only with an email.
    assert_eq!(t["Parameters"]["AlarmEmail"]["Default"], "");
    for id in ["AlarmTopic", "AlarmEmailSubscription"] {
        assert_eq!(t["Resources"][id]["Condition"], "HasAlarmEmail", "{id}");
    }
    // CloudWatch cannot publish to a topic under the AWS-managed SNS key: no key at all.
    assert!(
        t["Resources"]["AlarmTopic"]["Properties"]
            .get("KmsMasterKeyId")
            .is_none(),
        "alarms could not notify an encrypted topic"
    );
    // Metric math on an empty minute: FILL, so the alarm does not stay OK for lack of data.
    let expression = t["Resources"]["ApiServerErrorsAlarm"]["Properties"]["Metrics"][0]
        ["Expression"]
        .as_str()
        .unwrap();
    assert!(
        expression.contains("FILL(errors, 0)") && expression.contains("FILL(requests, 0)"),
        "{expression}"
    );
    let body =
        serde_yaml_ng::to_string(&t["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
            .unwrap();
    for shows in [
        "AWS/ApiGateway",
        "AWS/Lambda",
        "AWS/DynamoDB",
        "SignaturesIssued",
        "AuthFailures",
        "GroupWrites",
        "DynamoRetries",
    ] {
        assert!(body.contains(shows), "the dashboard does not show {shows}");
    }
    // Every function by name, in each of the errors, throttles and duration widgets (a
    // SEARCH for a quoted prefix matches whole names only, so it would find none).
    let body = match &t["Resources"]["Dashboard"]["Properties"]["DashboardBody"] {
        Value::Tagged(sub) if sub.tag == "Sub" => sub.value[0].as_str().unwrap(),
        other => panic!("the dashboard body is not a !Sub: {other:?}"),
    };
    assert!(!body.contains("SEARCH('{AWS/Lambda"), "{body}");
    for (id, _) in functions(&t) {
        assert_eq!(
            body.matches(&format!("\"${{{id}}}\"")).count(),
            3,
            "{id}: not in each function widget"
        );
    }
    // A namespace with a / or - is quoted in a SEARCH schema.
    assert!(!body.contains("SEARCH('{${Namespace}"), "{body}");
    for output in ["ApiUrl", "TableName", "DashboardUrl"] {
        assert!(t["Outputs"].get(output).is_some(), "no output {output}");
    }
}

/// `samconfig.toml`'s stages: `[<stage>.<command>.parameters]` tables and their keys.
fn samconfig() -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(repo_root().join("samconfig.toml")).unwrap();
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(header.to_owned());
            tables.entry(header.to_owned()).or_default();
        } else if let (Some(table), Some((k, v))) = (&current, line.split_once('=')) {
            if !line.starts_with('#') {
                tables
                    .get_mut(table)
                    .unwrap()
                    .insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
            }
        }
    }
    tables
}

#[test]
fn the_stages_have_their_stack_parameters_and_tags() {
    let config = samconfig();
    let mut stacks = BTreeSet::new();
    for stage in ["default", "staging", "prod"] {
        let global = &config[&format!("{stage}.global.parameters")];
        assert!(
            stacks.insert(global["stack_name"].clone()),
            "{stage}: stack shared"
        );
        let deploy = &config[&format!("{stage}.deploy.parameters")];
        assert!(deploy.contains_key("parameter_overrides"), "{stage}");
        assert!(deploy["tags"].contains("stage="), "{stage}: tags");
    }
    let overrides =
        |stage: &str| config[&format!("{stage}.deploy.parameters")]["parameter_overrides"].clone();
    assert!(overrides("prod").contains("DeploymentType=Canary10Percent5Minutes"));
    assert!(overrides("staging").contains("DeploymentType=AllAtOnce"));
}

#[test]
fn the_pipeline_deploys_only_stages_samconfig_defines() {
    let config = samconfig();
    let dir = repo_root().join(".github/workflows");
    let mut deployed = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let wf: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (job_id, job) in wf["jobs"].as_mapping().unwrap() {
            let job_id = job_id.as_str().unwrap();
            let runs = run_commands(job);
            let stages: BTreeSet<String> = runs
                .iter()
                .flat_map(|r| r.split_whitespace())
                .filter_map(|w| w.strip_prefix("STAGE="))
                .map(str::to_owned)
                .collect();
            if !runs.iter().any(|r| r.contains("make deploy")) {
                continue;
            }
            assert_eq!(
                stages.len(),
                1,
                "{job_id}: one stage per deploy job: {stages:?}"
            );
            let stage = stages.into_iter().next().unwrap();
            assert!(
                config.contains_key(&format!("{stage}.deploy.parameters")),
                "{job_id} deploys stage {stage}, which samconfig.toml does not define"
            );
            // Credentials from GitHub's OIDC provider, never two deploys of a stage at
            // once, and the environment named as the stage (prod's has reviewers).
            assert_eq!(job["permissions"]["id-token"], "write", "{job_id}");
            assert_eq!(job["concurrency"]["cancel-in-progress"], false, "{job_id}");
            assert!(
                job["concurrency"]["group"]
                    .as_str()
                    .unwrap()
                    .contains(&stage),
                "{job_id}"
            );
            assert_eq!(job["environment"], stage.as_str(), "{job_id}");
            let assumes = job["steps"].as_sequence().unwrap().iter().any(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials"))
                    && s["with"]["role-to-assume"]
                        .as_str()
                        .is_some_and(|r| r.contains("vars."))
            });
            assert!(
                assumes,
                "{job_id}: no role assumed from a repository variable"
            );
            assert!(
                runs.iter().any(|r| r.contains("make smoke")),
                "{job_id}: no smoke check"
            );
            deployed.push(stage);
        }
    }
    assert_eq!(deployed, ["staging", "prod"]);
}

/// The AWS services `sam deploy` of the template touches, as IAM action prefixes: each
/// `AWS::<Service>::*` type the template names, and what the Serverless transform makes
/// of its `AWS::Serverless::*` resources.
fn services_deployed(t: &Value) -> BTreeSet<String> {
    let mut services = BTreeSet::from(["cloudformation".to_owned(), "s3".to_owned()]);
    for r in t["Resources"].as_mapping().unwrap().values() {
        let kind = r["Type"].as_str().unwrap();
        let service = kind.split("::").nth(1).unwrap();
        let prefixes: &[&str] = match (service, kind) {
            (_, "AWS::Serverless::Function") => &["lambda", "iam", "codedeploy"],
            (_, "AWS::Serverless::HttpApi") => &["apigateway"],
            ("Serverless", _) => panic!("{kind}: which services does it deploy?"),
            ("ApiGateway" | "ApiGatewayV2", _) => &["apigateway"],
            _ => {
                services.insert(service.to_lowercase());
                &[]
            }
        };
        services.extend(prefixes.iter().map(|p| (*p).to_owned()));
    }
    services
}

#[test]
fn the_deploy_role_policy_covers_every_service_of_the_template() {
    // As put on staging's role: the longer stage name, so the larger of the two.
    let (text, policy) = stage_document("deploy-role-policy.json", "staging");
    assert_eq!(policy["Version"], "2012-10-17");
    // An inline role policy holds at most 10,240 characters, whitespace excluded.
    let size = text.chars().filter(|c| !c.is_whitespace()).count();
    assert!(
        size <= 10_240,
        "{size} characters: too long for an inline policy"
    );
    let mut granted = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert!(statement.get("Resource").is_some(), "{statement}");
        for action in statement["Action"].as_array().unwrap() {
            let (service, name) = action.as_str().unwrap().split_once(':').unwrap();
            assert!(!name.contains('*'), "{action}: name each action");
            // The Deny statements grant nothing.
            if statement["Effect"] == "Allow" {
                granted.insert(service.to_owned());
            } else {
                assert_eq!(statement["Effect"], "Deny", "{statement}");
            }
        }
    }
    let needed = services_deployed(&template());
    for service in [
        "lambda",
        "iam",
        "codedeploy",
        "apigateway",
        "dynamodb",
        "logs",
    ] {
        assert!(needed.contains(service), "{service}: {needed:?}");
    }
    let missing: Vec<_> = needed.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the deploy role policy grants nothing on {missing:?}"
    );
    // HTTP API access logs go through CloudWatch Logs' log delivery.
    for action in [
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    ] {
        assert!(text.contains(&format!("\"{action}\"")), "no {action}");
    }
}

// --- The deploy roles: one per stage, and neither can be turned against prod ---------

/// The pipeline's stages, each deployed by a role of its own.
const STAGES: [&str; 2] = ["staging", "prod"];

/// This repository as the trust policies name it: the placeholder docs/deploy.md has
/// replaced with the `repo:` part of this repository's OIDC subject.
const REPOSITORY: &str = "<owner>/<repo>";

/// The account the documents' `<account>` placeholder stands for in these checks.
const ACCOUNT: &str = "123456789012";

/// IAM actions that set what a role may do: a deploy role holds them only for its stage's
/// roles, and only while the role has (or gets) the stage's permissions boundary.
const ROLE_RIGHTS: [&str; 6] = [
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
];

/// IAM actions a deploy role may hold on its stage's roles without a condition: they read,
/// tag or delete a role, and none widens what it may do or who may assume it.
const ROLE_HOUSEKEEPING: [&str; 9] = [
    "iam:GetRole",
    "iam:DeleteRole",
    "iam:UpdateRole",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:ListRoleTags",
    "iam:GetRolePolicy",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
];

/// The AWS managed policies a deploy role may attach to its stack's roles, and what of
/// them the roles use, which the boundary must allow: SAM's for every function
/// (AWSLambdaBasicExecutionRole, and AWSXrayWriteOnlyAccess with `Tracing`), and
/// CodeDeploy's for the rollouts (no hooks, so not their `lambda:InvokeFunction`).
const MANAGED_POLICY_NEEDS: [(&str, &[&str]); 3] = [
    (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        &[
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ],
    ),
    (
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        &[
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
            "xray:GetSamplingStatisticSummaries",
        ],
    ),
    (
        "arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda",
        &[
            "cloudwatch:DescribeAlarms",
            "lambda:GetAlias",
            "lambda:UpdateAlias",
            "lambda:GetProvisionedConcurrencyConfig",
            "sns:Publish",
        ],
    ),
];

/// What a deploy role's policy names that no stage name narrows, and why each is safe to
/// share. Everything else names its stage's resources.
const STAGELESS_RESOURCES: [&str; 11] = [
    // Reads (ValidateTemplate, ListStacks, DescribeLogGroups) and the account's log
    // deliveries, which HTTP API access logs need and IAM cannot narrow.
    "*",
    // DescribeStacks only: SAM finds its artifact bucket there.
    "arn:aws:cloudformation:*:*:stack/aws-sam-cli-managed-default/*",
    "arn:aws:cloudformation:*:aws:transform/Serverless-2016-10-31",
    "arn:aws:cloudformation:*:aws:transform/LanguageExtensions",
    // The bucket itself, read only; its objects are written under the stage's prefix.
    "arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-*",
    // Mappings are named by a random id; their changes are narrowed by function instead.
    "arn:aws:lambda:*:*:event-source-mapping:*",
    // HTTP APIs are named by a random id: docs/deploy.md, "What keeps the pipeline off prod".
    "arn:aws:apigateway:*::/apis",
    "arn:aws:apigateway:*::/apis/*",
    "arn:aws:apigateway:*::/tags/*",
    "arn:aws:codedeploy:*:*:deploymentconfig:*",
    // Denied, not granted: no deploy role changes a boundary.
    "arn:aws:iam::*:policy/im-signing-boundary-*",
];

/// A document of `docs/` as docs/deploy.md has it put in the account for `stage`: its
/// text and its JSON.
fn stage_document(name: &str, stage: &str) -> (String, serde_json::Value) {
    let path = repo_root().join("docs").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("docs/{name}: {e}"))
        .replace("<stage>", stage)
        .replace("<account>", ACCOUNT);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("docs/{name}: {e}"));
    (text, json)
}

fn other_stage(stage: &str) -> &'static str {
    match stage {
        "staging" => "prod",
        "prod" => "staging",
        _ => panic!("{stage}: not a pipeline stage"),
    }
}

/// A policy element that is one string or a list of them, as a list.
fn json_strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(list) => list
            .iter()
            .map(|s| {
                s.as_str()
                    .unwrap_or_else(|| panic!("{v}: not strings"))
                    .to_owned()
            })
            .collect(),
        serde_json::Value::Null => Vec::new(),
        _ => panic!("{v}: neither a string nor a list"),
    }
}

fn boundary_arn(stage: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:policy/im-signing-boundary-{stage}")
}

/// The pipeline's set-up, as docs/deploy.md (where the README's map points) has it.
fn deploy_doc() -> String {
    std::fs::read_to_string(repo_root().join("docs/deploy.md")).unwrap()
}

/// The README and docs/deploy.md, each with its name: what neither may hold.
fn setup_docs() -> [(&'static str, String); 2] {
    [
        (
            "README.md",
            std::fs::read_to_string(repo_root().join("README.md")).unwrap(),
        ),
        ("docs/deploy.md", deploy_doc()),
    ]
}

/// The shell commands of a workflow job's steps.
fn run_commands(job: &Value) -> Vec<&str> {
    job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect()
}

/// The pipeline's jobs that deploy, with the stage each deploys.
fn deploy_jobs(wf: &Value) -> Vec<(String, String, &Value)> {
    let mut jobs = Vec::new();
    for (id, job) in wf["jobs"].as_mapping().unwrap() {
        let runs = run_commands(job);
        if !runs.iter().any(|r| r.contains("make deploy")) {
            continue;
        }
        let stage = runs
            .iter()
            .flat_map(|r| r.split_whitespace())
            .find_map(|w| w.strip_prefix("STAGE="))
            .unwrap();
        jobs.push((id.as_str().unwrap().to_owned(), stage.to_owned(), job));
    }
    jobs
}

fn pipeline() -> Value {
    let path = repo_root().join(".github/workflows/pipeline.yml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn each_stages_role_trusts_only_its_environment_on_main_of_this_repository() {
    for stage in STAGES {
        let name = format!("deploy-role-trust-{stage}.json");
        let (text, trust) = stage_document(&name, stage);
        assert_eq!(trust["Version"], "2012-10-17", "{name}");
        let statements = trust["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1, "{name}: one statement");
        let st = &statements[0];
        for key in ["NotPrincipal", "NotAction"] {
            assert!(st.get(key).is_none(), "{name}: {key}");
        }
        assert_eq!(st["Effect"], "Allow", "{name}");
        assert_eq!(
            json_strings(&st["Action"]),
            ["sts:AssumeRoleWithWebIdentity"],
            "{name}"
        );
        assert_eq!(
            st["Principal"],
            json!({"Federated": format!("arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com")}),
            "{name}: GitHub's OIDC provider only"
        );
        // Exact matches only: a StringLike (or any other operator) takes patterns.
        let condition = st["Condition"].as_object().unwrap();
        assert_eq!(
            condition.keys().collect::<Vec<_>>(),
            ["StringEquals"],
            "{name}: {condition:?}"
        );
        let equals = condition["StringEquals"].as_object().unwrap();
        assert_eq!(equals.len(), 2, "{name}: aud and sub only: {equals:?}");
        assert_eq!(
            equals["token.actions.githubusercontent.com:aud"], "sts.amazonaws.com",
            "{name}: the audience, one value"
        );
        // One subject (a list would trust each of its entries): this repository's jobs in
        // this stage's environment, on main (the sub claim carries the ref once the
        // repository's OIDC subject template includes it: docs/deploy.md).
        let sub = equals["token.actions.githubusercontent.com:sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: the sub condition is not one string"));
        assert_eq!(
            sub,
            format!("repo:{REPOSITORY}:environment:{stage}:ref:refs/heads/main"),
            "{name}"
        );
        assert!(
            !text.contains(other_stage(stage)),
            "{name} names the other stage"
        );
    }
    // docs/deploy.md points at these files, and neither it nor the README holds a trust
    // policy of its own to drift.
    let doc = deploy_doc();
    for stage in STAGES {
        let file = format!("docs/deploy-role-trust-{stage}.json");
        assert!(doc.contains(&file), "docs/deploy.md: no {file}");
    }
    for (name, text) in setup_docs() {
        assert!(
            !text.contains("githubusercontent.com:sub"),
            "{name}: a trust policy besides docs/"
        );
    }
    assert!(
        doc.contains(r#""include_claim_keys": ["repo", "context", "ref"]"#),
        "docs/deploy.md: no OIDC subject template with the ref"
    );
}

#[test]
fn only_main_deploys_and_each_stage_with_its_own_role() {
    let wf = pipeline();
    // Only the deploy jobs may ask for an OIDC token at all.
    assert_ne!(wf["permissions"]["id-token"], "write");
    let deploying: Vec<String> = deploy_jobs(&wf).into_iter().map(|(id, ..)| id).collect();
    for (id, job) in wf["jobs"].as_mapping().unwrap() {
        let id = id.as_str().unwrap();
        if !deploying.iter().any(|d| d == id) {
            assert_ne!(
                job["permissions"]["id-token"], "write",
                "{id}: an OIDC token for a job that does not deploy"
            );
        }
    }
    let doc = deploy_doc();
    let mut variables = BTreeSet::new();
    for (id, stage, job) in deploy_jobs(&wf) {
        // The roles' trust and the environments' branch rule hold; the job says so too.
        let condition = job["if"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: no `if:`, it runs on any ref its needs reach"));
        let condition = condition.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            condition.contains("github.ref == 'refs/heads/main'")
                && condition.contains("github.event_name == 'push'")
                && !condition.contains("||"),
            "{id}: `if: {condition}` does not hold it to pushes to main"
        );
        let roles: Vec<&str> = job["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials"))
            })
            .map(|s| s["with"]["role-to-assume"].as_str().unwrap())
            .collect();
        let variable = format!("AWS_{}_DEPLOY_ROLE_ARN", stage.to_uppercase());
        assert_eq!(
            roles,
            [format!("${{{{ vars.{variable} }}}}")],
            "{id}: not the {stage} role"
        );
        assert!(variables.insert(variable.clone()), "{id}: role shared");
        assert!(doc.contains(&variable), "docs/deploy.md: no {variable}");
    }
    assert_eq!(variables.len(), STAGES.len());
    for (name, text) in setup_docs() {
        assert!(
            !text.contains("AWS_DEPLOY_ROLE_ARN"),
            "{name}: the one role of both stages"
        );
    }
}

#[test]
fn each_deploy_role_changes_roles_only_under_its_stages_boundary() {
    for stage in STAGES {
        let (_, policy) = stage_document("deploy-role-policy.json", stage);
        let own_roles = format!("arn:aws:iam::*:role/im-signing-{stage}-*");
        // docs/deploy.md's name for the role, and the policy it may set as boundary.
        let deploy_role = format!("arn:aws:iam::{ACCOUNT}:role/im-signing-deploy-{stage}");
        let boundary = boundary_arn(stage);
        let statements = policy["Statement"].as_array().unwrap();
        for st in statements.iter().filter(|s| s["Effect"] == "Allow") {
            let sid = st["Sid"].as_str().unwrap_or("a statement");
            let resources = json_strings(&st["Resource"]);
            for action in json_strings(&st["Action"]) {
                if !action.starts_with("iam:") {
                    continue;
                }
                let what = format!("{stage}, {sid}: {action}");
                for r in &resources {
                    assert!(!glob(r, &deploy_role), "{what} on the deploy role itself");
                    assert!(!glob(r, &boundary), "{what} on the boundary");
                }
                assert_eq!(
                    resources,
                    [own_roles.as_str()],
                    "{what}: not on {own_roles}"
                );
                if action == "iam:PassRole" {
                    let to = json_strings(&st["Condition"]["StringEquals"]["iam:PassedToService"]);
                    assert!(
                        !to.is_empty()
                            && to
                                .iter()
                                .all(|s| s == "lambda.amazonaws.com"
                                    || s == "codedeploy.amazonaws.com"),
                        "{what} to {to:?}"
                    );
                } else if ROLE_RIGHTS.contains(&action.as_str()) {
                    assert_eq!(
                        st["Condition"]["StringEquals"]["iam:PermissionsBoundary"],
                        boundary.as_str(),
                        "{what} without the stage's permissions boundary"
                    );
                } else {
                    assert!(
                        ROLE_HOUSEKEEPING.contains(&action.as_str()),
                        "{what}: an IAM action no deploy needs (re-trusting a role, a boundary removed, a policy written...)"
                    );
                }
            }
        }
        // And denied outright, should a broader grant ever be added to the role.
        let denied = |action: &str, condition: serde_json::Value| {
            statements.iter().any(|s| {
                s["Effect"] == "Deny"
                    && json_strings(&s["Action"]).iter().any(|a| a == action)
                    && json_strings(&s["Resource"]) == ["*"]
                    && s["Condition"] == condition
            })
        };
        let outside = json!({"StringNotEquals": {"iam:PermissionsBoundary": boundary}});
        for action in [
            "iam:CreateRole",
            "iam:PutRolePolicy",
            "iam:AttachRolePolicy",
            "iam:PutRolePermissionsBoundary",
        ] {
            assert!(
                denied(action, outside.clone()),
                "{stage}: {action} outside the boundary is not denied"
            );
        }
        for action in [
            "iam:DeleteRolePermissionsBoundary",
            "iam:UpdateAssumeRolePolicy",
        ] {
            assert!(
                denied(action, serde_json::Value::Null),
                "{stage}: {action} is not denied"
            );
        }
    }
}

#[test]
fn each_deploy_role_reaches_only_its_own_stage() {
    let config = samconfig();
    for stage in STAGES {
        let (text, policy) = stage_document("deploy-role-policy.json", stage);
        let other = other_stage(stage);
        assert!(
            !text.contains(&format!("im-signing-{other}")),
            "the {stage} role reaches {other}"
        );
        let own = |r: &str| {
            r.contains(&format!("im-signing-{stage}-"))
                || r.contains(&format!("im-signing-{stage}/"))
        };
        // Its artifacts under its own prefix of SAM's bucket, which samconfig.toml sets:
        // with one prefix for both, prod's deploy would find (and deploy) what staging's
        // role wrote under the keys of the build they share.
        let prefix = config[&format!("{stage}.deploy.parameters")]
            .get("s3_prefix")
            .cloned()
            .unwrap_or_else(|| panic!("{stage}: no s3_prefix"));
        assert_eq!(prefix, format!("im-signing-{stage}"));
        for st in policy["Statement"].as_array().unwrap() {
            if st["Effect"] != "Allow" {
                continue;
            }
            let sid = st["Sid"].as_str().unwrap_or("a statement");
            let actions = json_strings(&st["Action"]);
            let resources = json_strings(&st["Resource"]);
            for r in &resources {
                assert!(
                    own(r) || STAGELESS_RESOURCES.contains(&r.as_str()),
                    "{stage}, {sid}: {r} is neither the stage's nor known to be shared"
                );
            }
            for value in st["Condition"]
                .as_object()
                .into_iter()
                .flat_map(|ops| ops.values())
                .flat_map(|keys| keys.as_object().unwrap().values())
                .flat_map(json_strings)
                .filter(|v| v.starts_with("arn:aws:lambda"))
            {
                assert!(own(&value), "{stage}, {sid}: {value}");
            }
            let managed_stack = "arn:aws:cloudformation:*:*:stack/aws-sam-cli-managed-default/*";
            if resources.iter().any(|r| r == managed_stack) {
                assert_eq!(actions, ["cloudformation:DescribeStacks"], "{stage}, {sid}");
            }
            if resources.iter().any(|r| r.starts_with("arn:aws:s3:::")) {
                for action in &actions {
                    let reads_bucket =
                        ["s3:GetBucketLocation", "s3:ListBucket"].contains(&action.as_str());
                    assert!(
                        reads_bucket
                            || resources
                                .iter()
                                .all(|r| r.ends_with(&format!("/{prefix}/*"))),
                        "{stage}, {sid}: {action} beyond {prefix}/ of the bucket"
                    );
                }
            }
        }
    }
}

#[test]
fn the_stacks_roles_carry_the_stages_boundary_and_it_covers_what_they_do() {
    let t = template();
    // SAM's roles (from the Globals) and the template's own all get the boundary.
    let boundary = &t["Globals"]["Function"]["PermissionsBoundary"];
    assert_eq!(
        serde_yaml_ng::to_string(boundary).unwrap(),
        "!If\n- HasRoleBoundary\n- !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/${RoleBoundary}\n- !Ref AWS::NoValue\n",
        "{boundary:?}"
    );
    assert!(t["Conditions"].get("HasRoleBoundary").is_some());
    // SAM gives its own CodeDeploy role no boundary: the template brings one.
    assert_eq!(
        tagged(
            &t["Globals"]["Function"]["DeploymentPreference"]["Role"],
            "GetAtt"
        ),
        Some("CodeDeployRole.Arn")
    );
    let mut roles = 0;
    for (id, r) in t["Resources"].as_mapping().unwrap() {
        if r["Type"] == "AWS::IAM::Role" {
            roles += 1;
            assert_eq!(r["Properties"]["PermissionsBoundary"], *boundary, "{id:?}");
        }
    }
    assert!(roles >= 1);
    for (id, f) in functions(&t) {
        let p = &f["Properties"];
        assert!(p.get("Role").is_none(), "{id}: a role SAM does not make");
        assert!(
            p.get("PermissionsBoundary").is_none(),
            "{id}: a boundary of its own"
        );
        assert!(
            p["DeploymentPreference"].get("Role").is_none(),
            "{id}: a CodeDeploy role of its own"
        );
    }
    let config = samconfig();
    for stage in STAGES {
        let overrides = &config[&format!("{stage}.deploy.parameters")]["parameter_overrides"];
        assert!(
            overrides
                .split_whitespace()
                .any(|o| o == format!("RoleBoundary=im-signing-boundary-{stage}")),
            "{stage}: {overrides}"
        );
        let (text, doc) = stage_document("stack-role-boundary.json", stage);
        assert!(
            !text.contains(other_stage(stage)),
            "{stage}'s boundary names the other stage"
        );
        let mut granted = BTreeSet::new();
        for st in doc["Statement"].as_array().unwrap() {
            assert_eq!(st["Effect"], "Allow", "{st}");
            let actions = json_strings(&st["Action"]);
            for action in &actions {
                assert!(!action.contains('*'), "{action}: name each action");
                assert!(
                    !action.starts_with("iam:") && !action.starts_with("sts:"),
                    "{stage}: the boundary lets a stack role act on roles: {action}"
                );
                granted.insert(action.clone());
            }
            for r in json_strings(&st["Resource"]) {
                let stageless_ok = actions
                    .iter()
                    .all(|a| a.starts_with("xray:") || a == "cloudwatch:DescribeAlarms");
                assert!(
                    r.contains(&format!("im-signing-{stage}-")) || (r == "*" && stageless_ok),
                    "{stage}: {r} for {actions:?}"
                );
            }
        }
        // Whatever a function's own policy allows, the boundary allows too (or the
        // function would fail on it in the pipeline's stages only).
        for (id, f) in functions(&t) {
            for policy in f["Properties"]["Policies"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                let statements = policy["Statement"].as_sequence().unwrap_or_else(|| {
                    panic!("{id}: a policy without statements: name its actions")
                });
                for st in statements.iter().filter(|s| s["Effect"] == "Allow") {
                    let actions = match &st["Action"] {
                        Value::Sequence(list) => list.iter().map(|a| a.as_str().unwrap()).collect(),
                        a => vec![a.as_str().unwrap()],
                    };
                    for action in actions {
                        assert!(
                            granted.contains(action),
                            "{stage}: {id} needs {action}, which the boundary does not allow"
                        );
                    }
                }
            }
        }
        // And what the managed policies a deploy role may attach give the roles.
        let (_, deploy_policy) = stage_document("deploy-role-policy.json", stage);
        let attachable: BTreeSet<String> = deploy_policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .flat_map(|s| json_strings(&s["Condition"]["ArnEquals"]["iam:PolicyARN"]))
            .collect();
        assert!(!attachable.is_empty());
        for arn in &attachable {
            let (_, needs) = MANAGED_POLICY_NEEDS
                .iter()
                .find(|(a, _)| a == arn)
                .unwrap_or_else(|| panic!("{arn}: what does it need of the boundary?"));
            for action in *needs {
                assert!(granted.contains(*action), "{stage}: {arn} needs {action}");
            }
        }
    }
}
