//! How the stack is shipped and watched, checked without any service: every function
//! publishes its `live` alias and deploys through CodeDeploy with rollback alarms wired
//! in, has its own log group with a retention, and the stream mapping calls the alias;
//! the operational alarms, dashboard and outputs exist; the defaults stay cheap; and the
//! pipeline (`.github/workflows/`) deploys only stages that `samconfig.toml` defines.

use std::collections::{BTreeMap, BTreeSet};

use im_e2e::repo::{repo_root, template};
use serde_yaml_ng::Value;

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
    assert_eq!(fns.len(), 22);
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
            let runs: Vec<&str> = job["steps"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|s| s["run"].as_str())
                .collect();
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
    let text = std::fs::read_to_string(repo_root().join("docs/deploy-role-policy.json")).unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(policy["Version"], "2012-10-17");
    // An inline role policy holds at most 10,240 characters, whitespace excluded.
    let size = text.chars().filter(|c| !c.is_whitespace()).count();
    assert!(
        size <= 10_240,
        "{size} characters: too long for an inline policy"
    );
    let mut granted = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        assert!(statement.get("Resource").is_some(), "{statement}");
        for action in statement["Action"].as_array().unwrap() {
            let (service, name) = action.as_str().unwrap().split_once(':').unwrap();
            assert!(!name.contains('*'), "{action}: name each action");
            granted.insert(service.to_owned());
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
