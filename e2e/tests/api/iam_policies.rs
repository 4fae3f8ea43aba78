//! The functions' IAM policies in `template.yaml`, checked without any service: every
//! DynamoDB statement is narrowed with `dynamodb:LeadingKeys`, no function can write master
//! keys (`APP` items) or token secrets (`TOKEN_KEY` items), the group functions cannot read
//! master keys, and the signature functions can.
//!
//! A `ForAllValues:StringLike` condition on `dynamodb:LeadingKeys` allows a request only when
//! every partition key it names matches one of the statement's patterns; for the one-key
//! requests checked here, that is a glob match of the key against the patterns.

use im_e2e::repo::template;
use serde_yaml_ng::Value;

/// The partitions no function may write: master keys and token secrets.
const SECRETS: [&str; 2] = ["APP", "TOKEN_KEY"];

/// The table's partition keys, as patterns (see the item layout in `shared/src/store/dynamo/layout.rs`).
const TABLE_PARTITIONS: [&str; 6] = ["APP", "TOKEN_KEY", "COUNTER", "GROUP#*", "CONV#*", "IDEM#*"];

/// The partition keys of the gsi1 index (`gsi1pk` of member items).
const INDEX_PARTITIONS: [&str; 1] = ["CLIENT#*"];

/// Actions whose requests always name the partition keys they touch. Any other (Scan,
/// PartiQL statements, a wildcard) would pass a `ForAllValues` condition over the empty
/// set of keys it names.
const KEYED_ACTIONS: [&str; 8] = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
];

/// Actions that change items (a transaction's items are authorized as the first four).
const WRITE_ACTIONS: [&str; 9] = [
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
];

/// The signature functions whose signatures follow group rules: they read the
/// conversation's link and the caller's standing in the group.
const GROUP_RULE_SIGNATURES: [&str; 6] = [
    "conversation-signature",
    "invite-signature",
    "kick-signature",
    "history-signature",
    "conversation-block-signature",
    "conversation-unblock-signature",
];

/// IAM's `StringLike`: `*` is any run of characters, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Action names match case-insensitively, and a granted action may be a wildcard.
fn action_matches(granted: &str, action: &str) -> bool {
    glob(&granted.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

enum Resource {
    Table,
    Index(String),
    Other(String),
}

impl Resource {
    fn describe(&self) -> String {
        match self {
            Resource::Table => "!GetAtt Table.Arn".into(),
            Resource::Index(index) => format!("index {index}"),
            Resource::Other(text) => text.clone(),
        }
    }
}

struct Statement {
    /// Where it is, for the messages.
    origin: String,
    /// An inline policy statement; `false` for a managed policy, a SAM policy template or
    /// a role, which grant table-wide access these checks cannot narrow.
    inline: bool,
    effect: String,
    actions: Vec<String>,
    resources: Vec<Resource>,
    /// The `ForAllValues:StringLike` patterns on `dynamodb:LeadingKeys`; `None` when the
    /// statement has no such condition, and so reaches every partition.
    leading_keys: Option<Vec<String>>,
}

impl Statement {
    fn broad(origin: String) -> Self {
        Statement {
            origin,
            inline: false,
            effect: "Allow".into(),
            actions: vec!["*".into()],
            resources: vec![Resource::Other("*".into())],
            leading_keys: None,
        }
    }

    fn allows(&self) -> bool {
        self.effect == "Allow"
    }

    /// Whether the statement lets a request reach items of partition `key`. A policy
    /// variable could become anything, so it counts as a wildcard.
    fn reaches(&self, key: &str) -> bool {
        match &self.leading_keys {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.contains("${") || glob(p, key)),
        }
    }

    fn grants(&self, action: &str) -> bool {
        self.actions.iter().any(|a| action_matches(a, action))
    }

    fn may(&self, action: &str, key: &str) -> bool {
        self.allows() && self.grants(action) && self.reaches(key)
    }

    fn writes(&self) -> Vec<&str> {
        WRITE_ACTIONS
            .into_iter()
            .filter(|w| self.grants(w))
            .collect()
    }
}

struct Function {
    /// The logical id and the binary, for the messages.
    name: String,
    binary: String,
    paths: Vec<String>,
    statements: Vec<Statement>,
}

impl Function {
    fn serves_only(&self, prefix: &str) -> bool {
        !self.paths.is_empty() && self.paths.iter().all(|p| p.starts_with(prefix))
    }

    fn is_group(&self) -> bool {
        self.serves_only("/im/")
    }

    fn is_signature(&self) -> bool {
        self.serves_only("/signature/")
    }

    fn is_health(&self) -> bool {
        self.paths == ["/health"]
    }

    fn may(&self, action: &str, key: &str) -> bool {
        self.statements.iter().any(|s| s.may(action, key))
    }
}

fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v)
        .unwrap_or_default()
        .trim()
        .replace('\n', " ")
}

/// One string or a list of them.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| yaml(i)))
            .collect(),
        _ => Vec::new(),
    }
}

fn resource(v: &Value) -> Resource {
    if let Value::Tagged(t) = v {
        let text = t.value.as_str().unwrap_or_default();
        if t.tag == "GetAtt" && text == "Table.Arn" {
            return Resource::Table;
        }
        if t.tag == "Sub" {
            if let Some(index) = text.strip_prefix("${Table.Arn}/index/") {
                return Resource::Index(index.to_owned());
            }
        }
    }
    Resource::Other(yaml(v))
}

fn resources(v: &Value) -> Vec<Resource> {
    match v {
        Value::Sequence(items) => items.iter().map(resource).collect(),
        other => vec![resource(other)],
    }
}

/// The `ForAllValues:StringLike` patterns on `dynamodb:LeadingKeys`, if there are any.
fn leading_keys(condition: &Value) -> Option<Vec<String>> {
    let operators = condition.as_mapping()?;
    operators.iter().find_map(|(op, keys)| {
        if op.as_str() != Some("ForAllValues:StringLike") {
            return None;
        }
        keys.as_mapping()?.iter().find_map(|(k, patterns)| {
            k.as_str()
                .filter(|k| k.eq_ignore_ascii_case("dynamodb:LeadingKeys"))
                .map(|_| strings(patterns))
        })
    })
}

fn statement(origin: String, st: &Value) -> Statement {
    if st.get("NotAction").is_some() || st.get("NotResource").is_some() {
        return Statement::broad(format!("{origin} (NotAction/NotResource)"));
    }
    Statement {
        origin,
        inline: true,
        effect: st["Effect"].as_str().unwrap_or_default().to_owned(),
        actions: strings(&st["Action"]),
        resources: resources(&st["Resource"]),
        leading_keys: st.get("Condition").and_then(leading_keys),
    }
}

/// The template's functions with their policy statements. Whatever is not an inline
/// statement (a managed policy, a SAM policy template, a role) is kept as a statement that
/// allows everything, so that every check below reports it.
fn functions(template: &Value) -> Vec<Function> {
    let mut functions = Vec::new();
    for (id, res) in template["Resources"].as_mapping().expect("no Resources") {
        if res["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let name = id.as_str().unwrap_or_default().to_owned();
        let props = &res["Properties"];
        let mut paths: Vec<String> = props["Events"]
            .as_mapping()
            .map(|events| {
                events
                    .values()
                    .filter_map(|e| e["Properties"]["Path"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        paths.sort();
        let mut statements = Vec::new();
        if let Some(role) = props.get("Role") {
            statements.push(Statement::broad(format!("Role {}", yaml(role))));
        }
        let policies = match props.get("Policies") {
            None => Vec::new(),
            Some(Value::Sequence(list)) => list.clone(),
            Some(one) => vec![one.clone()],
        };
        for (p, policy) in policies.iter().enumerate() {
            let inline = policy
                .as_mapping()
                .filter(|m| m.len() == 1)
                .and_then(|m| m.get("Statement"));
            let Some(sts) = inline else {
                statements.push(Statement::broad(format!("policy {p} ({})", yaml(policy))));
                continue;
            };
            let sts = match sts {
                Value::Sequence(list) => list.clone(),
                one => vec![one.clone()],
            };
            for (i, st) in sts.iter().enumerate() {
                let sid = st["Sid"].as_str().map(str::to_owned);
                let origin = format!("statement {}", sid.unwrap_or_else(|| format!("{p}.{i}")));
                statements.push(statement(origin, st));
            }
        }
        functions.push(Function {
            name,
            // The crate functions/<binary> (routes_agree checks the build rule).
            binary: props["CodeUri"]
                .as_str()
                .and_then(|uri| uri.strip_prefix("functions/"))
                .unwrap_or_default()
                .to_owned(),
            paths,
            statements,
        });
    }
    functions
}

fn assert_clean(what: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "{what}:\n  {}",
        violations.join("\n  ")
    );
}

/// Every statement is an inline Allow of keyed actions, on the table or the gsi1 index,
/// narrowed by `ForAllValues:StringLike` on `dynamodb:LeadingKeys` to partitions the table
/// (or the index) has.
fn unnarrowed(functions: &[Function]) -> Vec<String> {
    let mut v = Vec::new();
    for f in functions {
        let who = format!("{} ({})", f.name, f.binary);
        if f.is_health() {
            if !f.statements.is_empty() {
                v.push(format!("{who}: health reads no data and needs no policy"));
            }
            continue;
        }
        if f.statements.is_empty() {
            v.push(format!("{who}: no policy"));
        }
        for s in &f.statements {
            let at = format!("{who}, {}", s.origin);
            if !s.inline {
                v.push(format!(
                    "{at}: not an inline statement; it grants table-wide access that \
                     dynamodb:LeadingKeys cannot narrow"
                ));
                continue;
            }
            if s.effect != "Allow" {
                v.push(format!("{at}: Effect {:?}, expected Allow", s.effect));
            }
            for a in &s.actions {
                if !KEYED_ACTIONS.iter().any(|k| k.eq_ignore_ascii_case(a)) {
                    v.push(format!(
                        "{at}: action {a} is not one of {KEYED_ACTIONS:?}: a request that names \
                         no partition key passes a ForAllValues condition on the empty set"
                    ));
                }
            }
            let patterns = match &s.leading_keys {
                None => {
                    v.push(format!(
                        "{at}: no ForAllValues:StringLike condition on dynamodb:LeadingKeys, \
                         so it reaches every partition (APP and TOKEN_KEY included)"
                    ));
                    continue;
                }
                Some(p) if p.is_empty() => {
                    v.push(format!("{at}: dynamodb:LeadingKeys names no partition"));
                    continue;
                }
                Some(p) => p,
            };
            let known: &[&str] = match s.resources.as_slice() {
                [Resource::Table] => &TABLE_PARTITIONS,
                [Resource::Index(ix)] if ix == "gsi1" => {
                    if s.actions.iter().any(|a| a != "dynamodb:Query") {
                        v.push(format!("{at}: only Query applies to the index"));
                    }
                    &INDEX_PARTITIONS
                }
                other => {
                    let named: Vec<String> = other.iter().map(Resource::describe).collect();
                    v.push(format!(
                        "{at}: Resource {named:?}: expected one resource, !GetAtt Table.Arn \
                         or !Sub \"${{Table.Arn}}/index/gsi1\""
                    ));
                    continue;
                }
            };
            for p in patterns {
                if !known.contains(&p.as_str()) {
                    v.push(format!(
                        "{at}: LeadingKeys pattern {p:?} is not one of this resource's \
                         partitions {known:?}"
                    ));
                }
            }
        }
    }
    v
}

/// Nothing can write an APP or TOKEN_KEY item; they are reached only by GetItem, one exact
/// key at a time (Query or BatchGetItem could list or sweep the partition).
fn secret_access(functions: &[Function]) -> Vec<String> {
    let mut v = Vec::new();
    for f in functions {
        for s in f.statements.iter().filter(|s| s.allows()) {
            for secret in SECRETS.into_iter().filter(|k| s.reaches(k)) {
                let at = format!("{} ({}), {}", f.name, f.binary, s.origin);
                let writes = s.writes();
                if !writes.is_empty() {
                    v.push(format!("{at}: can write {secret} items ({writes:?})"));
                }
                for a in &s.actions {
                    if !a.eq_ignore_ascii_case("dynamodb:GetItem") {
                        v.push(format!(
                            "{at}: reaches {secret} items with {a}; only GetItem may"
                        ));
                    }
                }
            }
        }
    }
    v
}

/// The group functions never see a master key.
fn group_reads_of_master_keys(functions: &[Function]) -> Vec<String> {
    let mut v = Vec::new();
    for f in functions.iter().filter(|f| f.is_group()) {
        for s in f
            .statements
            .iter()
            .filter(|s| s.allows() && s.reaches("APP"))
        {
            v.push(format!(
                "{} ({}), {}: a group function reaches APP items (master keys) with {:?}",
                f.name, f.binary, s.origin, s.actions
            ));
        }
    }
    v
}

/// The signature functions read master keys, write nothing, and read the group items
/// only where a group rule applies.
fn signature_access(functions: &[Function]) -> Vec<String> {
    let mut v = Vec::new();
    for f in functions.iter().filter(|f| f.is_signature()) {
        let who = format!("{} ({})", f.name, f.binary);
        if !f.may("dynamodb:GetItem", "APP") {
            v.push(format!("{who}: cannot GetItem the app's master key (APP)"));
        }
        for s in f.statements.iter().filter(|s| s.allows()) {
            let writes = s.writes();
            if !writes.is_empty() {
                v.push(format!(
                    "{who}, {}: a signature writes nothing, yet {writes:?}",
                    s.origin
                ));
            }
        }
        let rule = GROUP_RULE_SIGNATURES.contains(&f.binary.as_str());
        let link = f.may("dynamodb:GetItem", "CONV#app:conversation");
        let standing = f.may("dynamodb:BatchGetItem", "GROUP#1");
        if rule && !(link && standing) {
            v.push(format!(
                "{who}: follows group rules, so needs GetItem on CONV# (got {link}) and \
                 BatchGetItem on GROUP# (got {standing})"
            ));
        }
        if !rule {
            for s in f.statements.iter().filter(|s| s.allows()) {
                let beyond: Vec<&String> = s
                    .leading_keys
                    .iter()
                    .flatten()
                    .filter(|p| !SECRETS.contains(&p.as_str()))
                    .collect();
                if s.leading_keys.is_none() || !beyond.is_empty() {
                    v.push(format!(
                        "{who}, {}: no group rule applies, so it needs APP and TOKEN_KEY \
                         only, not {beyond:?}",
                        s.origin
                    ));
                }
            }
        }
    }
    v
}

/// Every function but health authenticates bearer tokens with a token secret.
fn token_reads(functions: &[Function]) -> Vec<String> {
    functions
        .iter()
        .filter(|f| !f.is_health() && !f.may("dynamodb:GetItem", "TOKEN_KEY"))
        .map(|f| {
            format!(
                "{} ({}): cannot GetItem token secrets (TOKEN_KEY)",
                f.name, f.binary
            )
        })
        .collect()
}

#[test]
fn glob_is_string_like() {
    assert!(glob("APP", "APP"));
    assert!(!glob("APP", "APPS"));
    assert!(!glob("APP#*", "APP"));
    assert!(glob("*", "TOKEN_KEY"));
    assert!(glob("TOKEN_*", "TOKEN_KEY"));
    assert!(glob("T?KEN_KEY", "TOKEN_KEY"));
    assert!(glob("*KEY", "TOKEN_KEY"));
    assert!(glob("A*P*", "APP"));
    assert!(glob("GROUP#*", "GROUP#"));
    assert!(glob("GROUP#*", "GROUP#12"));
    assert!(!glob("GROUP#*", "APP"));
    assert!(!glob("CONV#*", "TOKEN_KEY"));
    assert!(!glob("app", "APP"));
    assert!(action_matches("dynamodb:*", "dynamodb:PutItem"));
    assert!(action_matches("DynamoDB:putitem", "dynamodb:PutItem"));
    assert!(!action_matches("dynamodb:Get*", "dynamodb:PutItem"));
}

#[test]
fn the_functions_are_classified() {
    let fns = functions(&template());
    let signatures = fns.iter().filter(|f| f.is_signature()).count();
    let groups = fns.iter().filter(|f| f.is_group()).count();
    let health = fns.iter().filter(|f| f.is_health()).count();
    assert_eq!(
        (signatures, groups, health, fns.len()),
        (9, 11, 1, 21),
        "signature, group, health functions and all of them"
    );
}

#[test]
fn every_dynamodb_statement_is_narrowed_by_leading_keys() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert!(
        globals.get("Policies").is_none() && globals.get("Role").is_none(),
        "Globals grant every function the same access: keep policies per function"
    );
    assert_clean(
        "statements not narrowed to their partitions",
        unnarrowed(&functions(&t)),
    );
}

#[test]
fn no_function_can_write_master_keys_or_token_secrets() {
    assert_clean(
        "access to APP or TOKEN_KEY items beyond GetItem",
        secret_access(&functions(&template())),
    );
}

#[test]
fn group_functions_cannot_read_master_keys() {
    assert_clean(
        "group functions reaching master keys",
        group_reads_of_master_keys(&functions(&template())),
    );
}

#[test]
fn signature_functions_read_master_keys_and_only_what_their_rules_need() {
    assert_clean(
        "signature functions",
        signature_access(&functions(&template())),
    );
}

#[test]
fn every_authenticated_function_reads_token_secrets() {
    assert_clean(
        "functions that cannot check a bearer token",
        token_reads(&functions(&template())),
    );
}

/// The checks are not vacuous: each change that widens access is reported.
#[test]
fn the_checks_catch_widened_access() {
    fn statements<'a>(t: &'a mut Value, function: &str) -> &'a mut Vec<Value> {
        t["Resources"][function]["Properties"]["Policies"][0]["Statement"]
            .as_sequence_mut()
            .unwrap()
    }
    fn parse(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    // A table-wide statement, as the template had before.
    let mut t = template();
    statements(&mut t, "CreateGroupFunction").push(parse(
        "Effect: Allow\nAction: [dynamodb:GetItem, dynamodb:PutItem]\nResource: !GetAtt Table.Arn",
    ));
    let fns = functions(&t);
    assert!(!unnarrowed(&fns).is_empty());
    assert!(!secret_access(&fns).is_empty());
    assert!(!group_reads_of_master_keys(&fns).is_empty());

    // A managed policy or a SAM policy template.
    for policy in [
        "AmazonDynamoDBFullAccess",
        "DynamoDBReadPolicy: {TableName: !Ref Table}",
    ] {
        let mut t = template();
        t["Resources"]["GetGroupFunction"]["Properties"]["Policies"]
            .as_sequence_mut()
            .unwrap()
            .push(parse(policy));
        let fns = functions(&t);
        assert!(!unnarrowed(&fns).is_empty(), "{policy}");
        assert!(!secret_access(&fns).is_empty(), "{policy}");
        assert!(!group_reads_of_master_keys(&fns).is_empty(), "{policy}");
    }

    // A write whose pattern happens to match token secrets.
    let mut t = template();
    statements(&mut t, "LoginSignatureFunction").push(parse(
        "Effect: Allow\nAction: [dynamodb:UpdateItem]\nResource: !GetAtt Table.Arn\n\
         Condition: {ForAllValues:StringLike: {dynamodb:LeadingKeys: [\"TOKEN_*\"]}}",
    ));
    let fns = functions(&t);
    assert!(!unnarrowed(&fns).is_empty());
    assert!(!secret_access(&fns).is_empty());
    assert!(!signature_access(&fns).is_empty());

    // A Scan, which names no partition key and so passes ForAllValues on the empty set.
    let mut t = template();
    statements(&mut t, "ListMembersFunction").push(parse(
        "Effect: Allow\nAction: [dynamodb:Scan]\nResource: !GetAtt Table.Arn\n\
         Condition: {ForAllValues:StringLike: {dynamodb:LeadingKeys: [\"GROUP#*\"]}}",
    ));
    assert!(!unnarrowed(&functions(&t)).is_empty());

    // A Query on master keys: a list of every app's key.
    let mut t = template();
    statements(&mut t, "HistorySignatureFunction").push(parse(
        "Effect: Allow\nAction: [dynamodb:Query]\nResource: !GetAtt Table.Arn\n\
         Condition: {ForAllValues:StringLike: {dynamodb:LeadingKeys: [APP]}}",
    ));
    assert!(!secret_access(&functions(&t)).is_empty());

    // A group function given the master keys.
    let mut t = template();
    statements(&mut t, "AddMembersFunction")[0]["Condition"]["ForAllValues:StringLike"]
        ["dynamodb:LeadingKeys"] = parse("[TOKEN_KEY, APP]");
    assert!(!group_reads_of_master_keys(&functions(&t)).is_empty());

    // A group-rule signature without its group reads, and a plain one with them.
    let mut t = template();
    statements(&mut t, "KickSignatureFunction").truncate(1);
    statements(&mut t, "BlockSignatureFunction")[0]["Condition"]["ForAllValues:StringLike"]
        ["dynamodb:LeadingKeys"] = parse("[APP, TOKEN_KEY, \"CONV#*\"]");
    assert_eq!(signature_access(&functions(&t)).len(), 2);

    // A function that lost its token reads.
    let mut t = template();
    statements(&mut t, "RevokeAdminsFunction").remove(0);
    assert_eq!(token_reads(&functions(&t)).len(), 1);
}
