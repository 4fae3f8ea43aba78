//! The functions' IAM policies in `template.yaml`, checked without any service: every
//! DynamoDB statement on the table is narrowed with `dynamodb:LeadingKeys`, no function can
//! write master keys (`APP` items) or token secrets (`TOKEN_KEY` items), the group functions
//! cannot read master keys, and the signature functions can. The IM cloud mirror (the one
//! stream function) reads its app's item, reads and writes groups, writes new conversation
//! links and nothing else; it reads the table's stream only through its event source
//! mapping, never from its own code, because the stream carries every item's images,
//! master keys and token secrets included.
//!
//! A `ForAllValues:StringLike` condition on `dynamodb:LeadingKeys` allows a request only when
//! every partition key it names matches one of the statement's patterns; for the one-key
//! requests checked here, that is a glob match of the key against the patterns.

use im_e2e::repo::{template, STREAM_FUNCTIONS};
use serde_yaml_ng::Value;

/// The partitions no function may write: master keys and token secrets.
const SECRETS: [&str; 2] = ["APP", "TOKEN_KEY"];

/// The table's partition keys, as patterns (see the item layout in `shared/src/store/dynamo/layout.rs`).
const TABLE_PARTITIONS: [&str; 9] = [
    "APP",
    "TOKEN_KEY",
    "RESERVED",
    "COUNTER",
    "GROUP#*",
    "CONV#*",
    "IDEM#*",
    "DEFER#*",
    "DEFERRED",
];

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

/// What a stream consumer's event source mapping reads the stream with. `ListStreams`
/// names no stream (IAM cannot narrow it to one), so it is not required, only allowed.
const STREAM_READS: [&str; 3] = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
];

/// The actions a statement on the stream may grant.
const STREAM_ACTIONS: [&str; 4] = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
];

/// SAM event types that read a stream or a queue: SAM attaches an AWS managed policy for
/// them (`AWSLambdaDynamoDBExecutionRole` and the like) that reads every stream or queue
/// of the account.
const PULL_EVENTS: [&str; 7] = [
    "DynamoDB",
    "Kinesis",
    "SQS",
    "MSK",
    "MQ",
    "SelfManagedKafka",
    "DocumentDB",
];

/// What the IM cloud mirror needs, on which partition, and why.
const MIRROR_NEEDS: [(&str, &str, &str); 12] = [
    (
        "dynamodb:GetItem",
        "APP",
        "the app's IM cloud settings and master key",
    ),
    (
        "dynamodb:GetItem",
        "GROUP#1",
        "the group as it is now, its sync state",
    ),
    ("dynamodb:Query", "GROUP#1", "the group's members"),
    (
        "dynamodb:UpdateItem",
        "GROUP#1",
        "the group's sync state, and a created conversation written back to its group",
    ),
    (
        "dynamodb:PutItem",
        "CONV#app:conversation",
        "the created conversation's link",
    ),
    (
        "dynamodb:PutItem",
        "DEFER#1",
        "records deferred while the app is over its quota",
    ),
    ("dynamodb:Query", "DEFER#1", "a drain reads them in order"),
    (
        "dynamodb:BatchWriteItem",
        "DEFER#1",
        "a drain deletes what it applied",
    ),
    (
        "dynamodb:Query",
        "DEFERRED",
        "the groups a drain is due for",
    ),
    (
        "dynamodb:GetItem",
        "DEFERRED",
        "a group's deferral, re-read",
    ),
    (
        "dynamodb:UpdateItem",
        "DEFERRED",
        "a deferral listed, leased, postponed",
    ),
    ("dynamodb:DeleteItem", "DEFERRED", "a deferral ended"),
];

/// Partitions the mirror has no business with: token secrets, the group-id counter,
/// create's idempotency records, the client index.
const NOT_THE_MIRRORS: [&str; 4] = [
    "TOKEN_KEY",
    "COUNTER",
    "IDEM#app:client:key",
    "CLIENT#app:client",
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

/// The signature functions that read no master key, and so have no reason to batch the
/// app item with the token secret: each reads them by GetItem, one at a time.
const KEYLESS_SIGNATURES: [&str; 1] = ["usersig-signature"];

/// IAM's `StringLike`: `*` is any run of characters, `?` any one character.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
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
    /// `!GetAtt Table.StreamArn`.
    Stream,
    /// `!GetAtt <logical id>.Arn` of another resource of the template (a queue).
    Arn(String),
    Other(String),
}

impl Resource {
    fn describe(&self) -> String {
        match self {
            Resource::Table => "!GetAtt Table.Arn".into(),
            Resource::Index(index) => format!("index {index}"),
            Resource::Stream => "!GetAtt Table.StreamArn".into(),
            Resource::Arn(id) => format!("!GetAtt {id}.Arn"),
            Resource::Other(text) => text.clone(),
        }
    }

    /// Whether requests on it name table items (the stream and a queue do not).
    fn holds_items(&self) -> bool {
        matches!(
            self,
            Resource::Table | Resource::Index(_) | Resource::Other(_)
        )
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
    /// Applies only to requests of the function's own code: those carrying
    /// `lambda:SourceFunctionArn` (`Null: {lambda:SourceFunctionArn: "false"}`), which
    /// Lambda's event source mappings do not.
    own_code_only: bool,
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
            own_code_only: false,
        }
    }

    fn denies(&self) -> bool {
        self.effect == "Deny"
    }

    fn on_stream(&self) -> bool {
        matches!(self.resources.as_slice(), [Resource::Stream])
    }

    fn allows(&self) -> bool {
        self.effect == "Allow"
    }

    /// Whether the statement lets a request reach items of partition `key`. A policy
    /// variable could become anything, so it counts as a wildcard.
    fn reaches(&self, key: &str) -> bool {
        if !self.resources.iter().any(Resource::holds_items) {
            return false;
        }
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

/// An event source mapping of the template on the table's stream.
struct StreamMapping {
    /// The logical id of its on-failure destination (`!GetAtt <id>.Arn`), if any.
    dead_letter: Option<String>,
}

struct Function {
    /// The logical id and the binary, for the messages.
    name: String,
    binary: String,
    paths: Vec<String>,
    statements: Vec<Statement>,
    /// The mapping that feeds it the table's stream, if one does.
    mapping: Option<StreamMapping>,
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

    /// An IM cloud's callback endpoint: no bearer token, its own authentication.
    fn is_callback(&self) -> bool {
        self.serves_only("/im-cloud/")
    }

    fn is_health(&self) -> bool {
        self.paths == ["/health"]
    }

    /// Fed by the table's stream, and by nothing else.
    fn is_stream(&self) -> bool {
        self.paths.is_empty() && self.mapping.is_some()
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
        if t.tag == "GetAtt" && text == "Table.StreamArn" {
            return Resource::Stream;
        }
        if t.tag == "GetAtt" {
            if let Some(id) = text.strip_suffix(".Arn").filter(|id| *id != "Table") {
                return Resource::Arn(id.to_owned());
            }
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

/// Whether a condition limits a statement to requests carrying `lambda:SourceFunctionArn`.
fn own_code_only(condition: &Value) -> bool {
    let flag = &condition["Null"]["lambda:SourceFunctionArn"];
    flag.as_str() == Some("false") || flag.as_bool() == Some(false)
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
        own_code_only: st.get("Condition").is_some_and(own_code_only),
    }
}

/// The template's event source mappings on the table's stream, by the logical id of the
/// function they feed.
fn stream_mappings(template: &Value) -> Vec<(String, StreamMapping)> {
    let mut mappings = Vec::new();
    for (_, res) in template["Resources"].as_mapping().expect("no Resources") {
        if res["Type"] != "AWS::Lambda::EventSourceMapping" {
            continue;
        }
        let props = &res["Properties"];
        if !matches!(resource(&props["EventSourceArn"]), Resource::Stream) {
            continue;
        }
        let Value::Tagged(function) = &props["FunctionName"] else {
            continue;
        };
        let dead_letter = match resource(&props["DestinationConfig"]["OnFailure"]["Destination"]) {
            Resource::Arn(id) => Some(id),
            _ => None,
        };
        if function.tag == "Ref" {
            // The function itself, or its alias (`!Ref <Function>.Alias`): the same role.
            if let Some(id) = function
                .value
                .as_str()
                .map(|v| v.trim_end_matches(".Alias"))
            {
                mappings.push((id.to_owned(), StreamMapping { dead_letter }));
            }
        }
    }
    mappings
}

/// The template's functions with their policy statements. Whatever is not an inline
/// statement (a managed policy, a SAM policy template, a role, the managed policy SAM
/// attaches for a stream or queue event) is kept as a statement that allows everything, so
/// that every check below reports it.
fn functions(template: &Value) -> Vec<Function> {
    let mut mappings = stream_mappings(template);
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
        for (event, ev) in props["Events"].as_mapping().into_iter().flatten() {
            let kind = ev["Type"].as_str().unwrap_or_default();
            if PULL_EVENTS.contains(&kind) {
                statements.push(Statement::broad(format!(
                    "event {} (Type {kind}: SAM attaches a managed policy on every \
                     stream or queue of the account)",
                    event.as_str().unwrap_or_default()
                )));
            }
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
            // The crate functions/<binary> (routes_agree checks the build rule).
            binary: props["CodeUri"]
                .as_str()
                .and_then(|uri| uri.strip_prefix("functions/"))
                .unwrap_or_default()
                .to_owned(),
            paths,
            statements,
            mapping: mappings
                .iter()
                .position(|(id, _)| *id == name)
                .map(|at| mappings.swap_remove(at).1),
            name,
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

/// Every statement is inline. An Allow is of keyed actions, on the table or the gsi1 index,
/// narrowed by `ForAllValues:StringLike` on `dynamodb:LeadingKeys` to partitions the table
/// (or the index) has; or, for the stream's consumer only, of stream reads on the table's
/// stream, or of `sqs:SendMessage` on its mapping's dead-letter queue. A Deny only takes
/// access away.
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
            if s.denies() {
                continue;
            }
            if s.effect != "Allow" {
                v.push(format!(
                    "{at}: Effect {:?}, expected Allow or Deny",
                    s.effect
                ));
            }
            match s.resources.as_slice() {
                [Resource::Stream] => {
                    if !f.is_stream() {
                        v.push(format!(
                            "{at}: reads the table's stream, which carries every item's \
                             images (master keys and token secrets included); only the \
                             stream's consumer may"
                        ));
                    }
                    for a in &s.actions {
                        if !STREAM_ACTIONS.iter().any(|k| k.eq_ignore_ascii_case(a)) {
                            v.push(format!(
                                "{at}: action {a} on the stream is not one of {STREAM_ACTIONS:?}"
                            ));
                        }
                    }
                    continue;
                }
                [Resource::Arn(queue)] => {
                    let own = f.mapping.as_ref().and_then(|m| m.dead_letter.as_deref());
                    if own != Some(queue.as_str()) {
                        v.push(format!(
                            "{at}: {queue} is not the on-failure destination of this \
                             function's stream mapping"
                        ));
                    }
                    if s.actions
                        .iter()
                        .any(|a| !a.eq_ignore_ascii_case("sqs:SendMessage"))
                    {
                        v.push(format!(
                            "{at}: only sqs:SendMessage on the dead-letter queue, not {:?}",
                            s.actions
                        ));
                    }
                    continue;
                }
                _ => {}
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
                         or !Sub \"${{Table.Arn}}/index/gsi1\" (or, for the stream's consumer, \
                         !GetAtt Table.StreamArn or its dead-letter queue)"
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

/// Nothing can write an APP or TOKEN_KEY item; they are reached only by exact keys:
/// GetItem, or BatchGetItem for a signature function (its first request reads the token
/// secret and the master key together). Query could list the partition.
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
                    let batch = a.eq_ignore_ascii_case("dynamodb:BatchGetItem") && f.is_signature();
                    if !a.eq_ignore_ascii_case("dynamodb:GetItem") && !batch {
                        v.push(format!(
                            "{at}: reaches {secret} items with {a}; only GetItem may \
                             (and BatchGetItem in a signature function)"
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
        let keyless = KEYLESS_SIGNATURES.contains(&f.binary.as_str());
        if keyless && f.may("dynamodb:BatchGetItem", "APP") {
            v.push(format!(
                "{who}: reads no master key, so BatchGetItem on APP (a batch with the token \
                 secret, which carries the master key) is more than it needs"
            ));
        }
        let batches_keys =
            f.may("dynamodb:BatchGetItem", "APP") && f.may("dynamodb:BatchGetItem", "TOKEN_KEY");
        if !keyless && !batches_keys {
            v.push(format!(
                "{who}: cannot BatchGetItem the token secret with the master key (one round \
                 trip for a caller's first request)"
            ));
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

/// Every function that answers requests, but health, authenticates bearer tokens with a
/// token secret.
fn token_reads(functions: &[Function]) -> Vec<String> {
    functions
        .iter()
        .filter(|f| !f.is_health() && !f.is_stream() && !f.is_callback())
        .filter(|f| !f.may("dynamodb:GetItem", "TOKEN_KEY"))
        .map(|f| {
            format!(
                "{} ({}): cannot GetItem token secrets (TOKEN_KEY)",
                f.name, f.binary
            )
        })
        .collect()
}

/// The IM cloud mirror can do its job and no more: its app's item by GetItem only, groups
/// read and written, new conversation links written (never moved or removed), nothing of
/// token secrets, the counter, idempotency records or the client index; the stream read by
/// its mapping and denied to its own code; its dead-letter queue written to.
fn mirror_access(functions: &[Function]) -> Vec<String> {
    let mut v = Vec::new();
    for f in functions.iter().filter(|f| f.is_stream()) {
        let who = format!("{} ({})", f.name, f.binary);
        for (action, key, why) in MIRROR_NEEDS {
            if !f.may(action, key) {
                v.push(format!("{who}: cannot {action} on {key}: {why}"));
            }
        }
        for s in f.statements.iter().filter(|s| s.allows()) {
            let at = format!("{who}, {}", s.origin);
            for key in NOT_THE_MIRRORS.into_iter().filter(|k| s.reaches(k)) {
                v.push(format!("{at}: reaches {key} items with {:?}", s.actions));
            }
            if s.reaches("APP") {
                for a in s.actions.iter() {
                    if !a.eq_ignore_ascii_case("dynamodb:GetItem") {
                        v.push(format!("{at}: reaches APP items with {a}; only GetItem"));
                    }
                }
            }
            let writes = s.writes();
            if writes.is_empty() || !s.resources.iter().any(Resource::holds_items) {
                continue;
            }
            let beyond: Vec<String> = match &s.leading_keys {
                None => vec!["(every partition)".into()],
                Some(p) => p
                    .iter()
                    .filter(|p| !["GROUP#*", "CONV#*", "DEFER#*", "DEFERRED"].contains(&p.as_str()))
                    .cloned()
                    .collect(),
            };
            if !beyond.is_empty() {
                v.push(format!(
                    "{at}: writes ({writes:?}) beyond groups, links and deferrals: {beyond:?}"
                ));
            }
            if s.reaches("GROUP#1") && writes.contains(&"dynamodb:PutItem") {
                v.push(format!(
                    "{at}: PutItem on groups: the mirror updates group items, never replaces one"
                ));
            }
            if s.reaches("CONV#app:conversation") {
                let moves: Vec<&str> = writes
                    .into_iter()
                    .filter(|w| *w != "dynamodb:PutItem")
                    .collect();
                if !moves.is_empty() {
                    v.push(format!(
                        "{at}: {moves:?} on links: the mirror only writes a new one; moving \
                         or removing one is the group functions' work"
                    ));
                }
            }
        }
        for read in STREAM_READS {
            let allowed = f
                .statements
                .iter()
                .any(|s| s.allows() && s.on_stream() && s.grants(read));
            if !allowed {
                v.push(format!(
                    "{who}: its mapping cannot {read} on the table's stream"
                ));
            }
            let denied = f
                .statements
                .iter()
                .any(|s| s.denies() && s.on_stream() && s.own_code_only && s.grants(read));
            if !denied {
                v.push(format!(
                    "{who}: its own code may {read} on the stream, which carries every \
                     item's images (master keys and token secrets included): deny it to \
                     requests carrying lambda:SourceFunctionArn"
                ));
            }
        }
        match f.mapping.as_ref().and_then(|m| m.dead_letter.as_deref()) {
            None => v.push(format!("{who}: its mapping has no dead-letter queue")),
            Some(queue) => {
                let sends = f.statements.iter().any(|s| {
                    s.allows()
                        && matches!(s.resources.as_slice(), [Resource::Arn(q)] if q == queue)
                        && s.grants("sqs:SendMessage")
                });
                if !sends {
                    v.push(format!(
                        "{who}: its mapping cannot send failed batches to {queue}"
                    ));
                }
            }
        }
    }
    v
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
    let callbacks = fns.iter().filter(|f| f.is_callback()).count();
    let streams: Vec<&str> = fns
        .iter()
        .filter(|f| f.is_stream())
        .map(|f| f.binary.as_str())
        .collect();
    assert_eq!(
        (
            signatures,
            groups,
            health,
            callbacks,
            streams.len(),
            fns.len()
        ),
        (10, 11, 1, 1, 1, 24),
        "signature, group, health, callback, stream functions and all of them"
    );
    assert_eq!(streams, STREAM_FUNCTIONS);
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
fn the_mirror_reaches_what_it_needs_and_no_more() {
    let fns = functions(&template());
    assert!(fns.iter().any(Function::is_stream), "no stream function");
    assert_clean("the IM cloud mirror's access", mirror_access(&fns));
}

#[test]
fn every_authenticated_function_reads_token_secrets() {
    assert_clean(
        "functions that cannot check a bearer token",
        token_reads(&functions(&template())),
    );
}

/// Tencent's callback endpoint reads its app's item (settings and callback token) and the
/// reserved ids by exact key, reaches no token secret (it takes no bearer token), and
/// writes only under groups: the add and leave routes' transactions and the sync state.
#[test]
fn the_callback_reads_its_app_and_writes_only_groups() {
    let fns = functions(&template());
    let f = fns
        .iter()
        .find(|f| f.is_callback())
        .expect("no callback function");
    assert_eq!(f.binary, "tencent-callback");
    assert!(f.may("dynamodb:GetItem", "APP"));
    assert!(f.may("dynamodb:GetItem", "RESERVED"));
    assert!(
        !f.may("dynamodb:GetItem", "TOKEN_KEY"),
        "no bearer token to check"
    );
    for action in [
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
    ] {
        assert!(f.may(action, "GROUP#1"), "{action} on GROUP#");
    }
    for s in f.statements.iter().filter(|s| s.allows()) {
        if !s.writes().is_empty() {
            let keys = s.leading_keys.clone().unwrap_or_default();
            assert_eq!(keys, ["GROUP#*"], "{}: writes beyond groups", s.origin);
        }
        assert!(
            !s.grants("dynamodb:Query") && !s.grants("dynamodb:Scan"),
            "{}",
            s.origin
        );
    }
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

    // Token secrets by BatchGetItem in a group function; a signature function that
    // cannot read both keys in one round trip.
    let mut t = template();
    let first = &mut statements(&mut t, "GetGroupFunction")[0];
    assert!(
        first["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            .as_sequence()
            .unwrap()
            .contains(&parse("TOKEN_KEY"))
    );
    first["Action"] = parse("[dynamodb:GetItem, dynamodb:BatchGetItem]");
    statements(&mut t, "LoginSignatureFunction")[0]["Action"] = parse("[dynamodb:GetItem]");
    let fns = functions(&t);
    assert_eq!(secret_access(&fns).len(), 1, "{:?}", secret_access(&fns));
    assert_eq!(
        signature_access(&fns).len(),
        1,
        "{:?}",
        signature_access(&fns)
    );

    // The UserSig function batching the app item (master key included) with the token.
    let mut t = template();
    statements(&mut t, "UsersigSignatureFunction")[0]["Action"] =
        parse("[dynamodb:GetItem, dynamodb:BatchGetItem]");
    assert_eq!(signature_access(&functions(&t)).len(), 1);

    // A function that lost its token reads.
    let mut t = template();
    statements(&mut t, "RevokeAdminsFunction").remove(0);
    assert_eq!(token_reads(&functions(&t)).len(), 1);
}

/// The mirror's checks are not vacuous either.
#[test]
fn the_checks_catch_a_widened_mirror() {
    const MIRROR: &str = "SyncConversationsFunction";
    fn parse(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }
    fn statements(t: &mut Value) -> &mut Vec<Value> {
        t["Resources"][MIRROR]["Properties"]["Policies"][0]["Statement"]
            .as_sequence_mut()
            .unwrap()
    }
    fn sid<'a>(t: &'a mut Value, sid: &str) -> &'a mut Value {
        statements(t)
            .iter_mut()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no statement {sid} in {MIRROR}"))
    }
    fn leading_keys<'a>(t: &'a mut Value, id: &str) -> &'a mut Value {
        &mut sid(t, id)["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    }
    fn push(list: &mut Value, item: &str) {
        list.as_sequence_mut().unwrap().push(parse(item));
    }

    // Token secrets with its app's item.
    let mut t = template();
    push(leading_keys(&mut t, "ReadAppsAndGroups"), "TOKEN_KEY");
    assert!(!mirror_access(&functions(&t)).is_empty());

    // Writes to idempotency records, to the counter, to apps.
    for key in ["\"IDEM#*\"", "COUNTER", "APP"] {
        let mut t = template();
        push(leading_keys(&mut t, "WriteSyncState"), key);
        let fns = functions(&t);
        assert!(!mirror_access(&fns).is_empty(), "{key}");
        if key == "APP" {
            assert!(!secret_access(&fns).is_empty());
        }
    }

    // No way to defer, or to drain.
    for gone in ["ReadDeferrals", "WriteDeferrals"] {
        let mut t = template();
        statements(&mut t).retain(|s| s["Sid"] != gone);
        assert!(!mirror_access(&functions(&t)).is_empty(), "{gone}");
    }

    // Removing or updating links.
    for action in ["dynamodb:DeleteItem", "dynamodb:UpdateItem"] {
        let mut t = template();
        push(
            &mut sid(&mut t, "LinkCreatedConversation")["Action"],
            action,
        );
        assert!(!mirror_access(&functions(&t)).is_empty(), "{action}");
    }

    // A Scan of the groups, and a table-wide read.
    let mut t = template();
    statements(&mut t).push(parse(
        "Effect: Allow\nAction: [dynamodb:Scan]\nResource: !GetAtt Table.Arn\n\
         Condition: {ForAllValues:StringLike: {dynamodb:LeadingKeys: [\"GROUP#*\"]}}",
    ));
    assert!(!unnarrowed(&functions(&t)).is_empty());
    let mut t = template();
    sid(&mut t, "ListMembers")
        .as_mapping_mut()
        .unwrap()
        .remove("Condition");
    let fns = functions(&t);
    assert!(!unnarrowed(&fns).is_empty());
    assert!(!mirror_access(&fns).is_empty());

    // The stream: any stream, any action, read by its own code, or not at all.
    let mut t = template();
    sid(&mut t, "ReadStream")["Resource"] = parse("\"*\"");
    let fns = functions(&t);
    assert!(!unnarrowed(&fns).is_empty());
    assert!(!mirror_access(&fns).is_empty());
    let mut t = template();
    push(&mut sid(&mut t, "ReadStream")["Action"], "dynamodb:*");
    assert!(!unnarrowed(&functions(&t)).is_empty());
    let mut t = template();
    statements(&mut t).retain(|s| s["Sid"] != "StreamOnlyThroughTheMapping");
    assert!(!mirror_access(&functions(&t)).is_empty());
    let mut t = template();
    sid(&mut t, "StreamOnlyThroughTheMapping")
        .as_mapping_mut()
        .unwrap()
        .remove("Condition");
    assert!(!mirror_access(&functions(&t)).is_empty());
    let mut t = template();
    statements(&mut t).retain(|s| s["Sid"] != "ReadStream");
    assert!(!mirror_access(&functions(&t)).is_empty());

    // SAM's own stream event, which brings AWSLambdaDynamoDBExecutionRole.
    let mut t = template();
    t["Resources"][MIRROR]["Properties"]["Events"] = parse(
        "Stream: {Type: DynamoDB, Properties: {Stream: !GetAtt Table.StreamArn, \
         StartingPosition: TRIM_HORIZON}}",
    );
    let fns = functions(&t);
    assert!(!unnarrowed(&fns).is_empty());
    assert!(!secret_access(&fns).is_empty());

    // A group function reading the stream, or writing to the queue.
    for st in [
        "Effect: Allow\nAction: [dynamodb:GetRecords]\nResource: !GetAtt Table.StreamArn",
        "Effect: Allow\nAction: [sqs:SendMessage]\n\
         Resource: !GetAtt SyncConversationsDeadLetterQueue.Arn",
    ] {
        let mut t = template();
        t["Resources"]["GetGroupFunction"]["Properties"]["Policies"][0]["Statement"]
            .as_sequence_mut()
            .unwrap()
            .push(parse(st));
        assert!(!unnarrowed(&functions(&t)).is_empty(), "{st}");
    }

    // More than sending to its own dead-letter queue, or no way to.
    let mut t = template();
    push(
        &mut sid(&mut t, "DeadLetter")["Action"],
        "sqs:ReceiveMessage",
    );
    assert!(!unnarrowed(&functions(&t)).is_empty());
    let mut t = template();
    sid(&mut t, "DeadLetter")["Resource"] = parse("\"*\"");
    let fns = functions(&t);
    assert!(!unnarrowed(&fns).is_empty());
    assert!(!mirror_access(&fns).is_empty());
}

/// The functions that make members read the app's reserved client ids (its system client
/// and Tencent App admin, never members); no function writes them (`im-admin` does, with
/// the settings that name them).
#[test]
fn the_functions_that_add_members_read_the_reserved_ids_and_none_writes_them() {
    let fns = functions(&template());
    for binary in ["create-group", "add-members"] {
        let f = fns
            .iter()
            .find(|f| f.binary == binary)
            .unwrap_or_else(|| panic!("no {binary}"));
        assert!(f.may("dynamodb:GetItem", "RESERVED"), "{binary}");
    }
    for f in &fns {
        for action in WRITE_ACTIONS {
            assert!(
                !f.may(action, "RESERVED"),
                "{} ({}) may {action} the reserved ids",
                f.name,
                f.binary
            );
        }
    }
}
