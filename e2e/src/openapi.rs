//! Checks real responses against `openapi.yaml`: every response the HTTP and Lambda tests
//! receive goes through [`Spec::check`], which finds the operation for the request's
//! method and concrete path, and checks that the status is documented for it, that the
//! content type and the JSON body match the documented response (its schema, with the
//! document's `$ref`s into `components` and OpenAPI 3.0's `nullable`), that a response
//! documented without a body has none, and that documented headers are present and
//! valid. A request whose path or method no operation has must be answered with the
//! router's 404 or 405 error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// The document as it is in the repository, read at compile time.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// Where a request landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An operation: its method and path template.
    Operation { method: String, template: String },
    /// No operation has this path with this method, but one has it with another.
    OtherMethod,
    /// No operation has this path.
    NoPath,
}

/// What answers a request that no operation of the document matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The local server's router knows every route: 405 when the path exists with
    /// another method, else 404.
    Router,
    /// A Lambda function knows only its own routes: 404 or 405 either way.
    OneFunction,
}

struct Operation {
    method: String,
    template: String,
    segments: Vec<Segment>,
    /// The operation object, `$ref`s unresolved.
    op: Value,
}

enum Segment {
    Literal(String),
    Param,
}

pub struct Spec {
    doc: Value,
    ops: Vec<Operation>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The document, parsed once per test binary.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::parse(OPENAPI_YAML).unwrap_or_else(|e| panic!("openapi.yaml: {e}")))
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl Spec {
    pub fn parse(yaml: &str) -> Result<Spec, String> {
        let doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        let paths = doc["paths"].as_object().ok_or("no paths")?;
        let mut ops = Vec::new();
        for (template, item) in paths {
            let item = item.as_object().ok_or("a path item is not an object")?;
            for (method, op) in item {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                let segments = template
                    .split('/')
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Param
                        } else {
                            Segment::Literal(s.to_owned())
                        }
                    })
                    .collect();
                ops.push(Operation {
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                    segments,
                    op: op.clone(),
                });
            }
        }
        Ok(Spec {
            doc,
            ops,
            validators: Mutex::new(HashMap::new()),
        })
    }

    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// Follows `$ref`s (local ones, `#/...`) until a value that is not a reference.
    pub fn resolve<'a>(&'a self, mut value: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..16 {
            match value.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let pointer = r
                        .strip_prefix('#')
                        .ok_or_else(|| format!("{r} is not a local reference"))?;
                    value = self
                        .doc
                        .pointer(pointer)
                        .ok_or_else(|| format!("{r} does not resolve"))?;
                }
                None => return Ok(value),
            }
        }
        Err("a cycle of $refs".into())
    }

    fn matches(op: &Operation, segments: &[&str]) -> bool {
        op.segments.len() == segments.len()
            && op.segments.iter().zip(segments).all(|(t, s)| match t {
                Segment::Literal(l) => l == s,
                // The router's `{name}` matches one non-empty segment.
                Segment::Param => !s.is_empty(),
            })
    }

    fn find(&self, method: &str, path: &str) -> Result<&Operation, Target> {
        let path = path.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let mut candidates: Vec<&Operation> = self
            .ops
            .iter()
            .filter(|op| Self::matches(op, &segments))
            .collect();
        // The router also serves the routes ending in `{conversion_id}` (a join, a kick
        // with no members) with a trailing `/`, as their descriptions say.
        if candidates.is_empty() && segments.len() > 2 && segments.last() == Some(&"") {
            let trimmed = &segments[..segments.len() - 1];
            candidates = self
                .ops
                .iter()
                .filter(|op| op.template.ends_with("/{conversion_id}"))
                .filter(|op| Self::matches(op, trimmed))
                .collect();
        }
        if candidates.is_empty() {
            return Err(Target::NoPath);
        }
        // A literal segment beats a parameter, as in the router.
        let literal_count = |op: &&Operation| {
            op.segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count()
        };
        let best = candidates
            .iter()
            .map(literal_count)
            .max()
            .unwrap_or_default();
        candidates.retain(|op| literal_count(op) == best);
        candidates
            .into_iter()
            .find(|op| op.method.eq_ignore_ascii_case(method))
            .ok_or(Target::OtherMethod)
    }

    /// The operation (or the lack of one) a request lands on.
    pub fn target(&self, method: &str, path: &str) -> Target {
        match self.find(method, path) {
            Ok(op) => Target::Operation {
                method: op.method.clone(),
                template: op.template.clone(),
            },
            Err(t) => t,
        }
    }

    /// Checks one response; `Err` says what is wrong.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        fallback: Fallback,
    ) -> Result<(), String> {
        let response = match self.find(method, path) {
            Ok(op) => {
                let responses = &op.op["responses"];
                let response = responses.get(status.to_string()).ok_or_else(|| {
                    let documented: Vec<&String> = responses
                        .as_object()
                        .map(|m| m.keys().collect())
                        .unwrap_or_default();
                    format!(
                        "status {status} is not documented for {} {} (documented: {documented:?})",
                        op.method, op.template
                    )
                })?;
                self.resolve(response)?.clone()
            }
            Err(target) => {
                let expected: &[u16] = match (target, fallback) {
                    (Target::OtherMethod, Fallback::Router) => &[405],
                    (Target::NoPath, Fallback::Router) => &[404],
                    _ => &[404, 405],
                };
                if !expected.contains(&status) {
                    return Err(format!(
                        "no operation has this request; expected the router's {expected:?}, got {status}"
                    ));
                }
                let name = if status == 404 {
                    "RouteNotFound"
                } else {
                    "MethodNotAllowed"
                };
                self.doc["components"]["responses"][name].clone()
            }
        };
        self.check_response(&response, headers, body)
    }

    fn check_response(
        &self,
        response: &Value,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), String> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if let Some(documented) = response.get("headers").and_then(Value::as_object) {
            for (name, h) in documented {
                let h = self.resolve(h)?;
                match header(name) {
                    Some(value) => self
                        .validate(&h["schema"], &Value::from(value))
                        .map_err(|e| format!("header {name}: {value:?}: {e}"))?,
                    None if h["required"] == true => {
                        return Err(format!("the documented header {name} is missing"))
                    }
                    None => {}
                }
            }
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "documented without a body, but it has one: {}",
                    String::from_utf8_lossy(body)
                ))
            };
        };
        let content_type = header("content-type").ok_or("no content-type")?;
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let media = content.get(&essence).ok_or_else(|| {
            format!(
                "content-type {content_type:?} is not documented (documented: {:?})",
                content.keys().collect::<Vec<_>>()
            )
        })?;
        if essence != "application/json" {
            return Err(format!("no way to check a {essence} body"));
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "the body is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        })?;
        self.validate(&media["schema"], &value)
            .map_err(|e| format!("body {value}: {e}"))
    }

    /// Validates `instance` against a schema of the document.
    pub fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let validator = self.validator(schema)?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("at {:?}: {e}", e.instance_path().as_str()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn validator(&self, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let key = schema.to_string();
        if let Some(v) = self.validators.lock().unwrap().get(&key) {
            return Ok(v.clone());
        }
        let compiled = Arc::new(self.compile(schema)?);
        self.validators
            .lock()
            .unwrap()
            .insert(key, compiled.clone());
        Ok(compiled)
    }

    /// A JSON Schema (draft 4, which OpenAPI 3.0's schema object extends) for a schema of
    /// the document. The document's components sit in the root under the same pointer, so
    /// `#/components/schemas/...` resolves as it does in the document.
    pub fn compile(&self, schema: &Value) -> Result<jsonschema::Validator, String> {
        let root = json!({
            "allOf": [from_openapi(schema.clone())],
            "components": {"schemas": from_openapi(self.doc["components"]["schemas"].clone())},
        });
        jsonschema::draft4::options()
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("the schema {schema} does not compile: {e}"))
    }
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: `null` is one more allowed type (and
/// enum value).
pub fn from_openapi(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(from_openapi).collect()),
        Value::Object(map) => {
            let mut out: Map<String, Value> =
                map.into_iter().map(|(k, v)| (k, from_openapi(v))).collect();
            if out.get("nullable") == Some(&Value::Bool(true)) {
                out.remove("nullable");
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                }
                if let Some(Value::Array(values)) = out.get_mut("enum") {
                    values.push(Value::Null);
                }
            } else if out.get("nullable") == Some(&Value::Bool(false)) {
                out.remove("nullable");
            }
            Value::Object(out)
        }
        other => other,
    }
}

/// A response that has been checked against the document; what the tests read of it.
#[derive(Debug)]
pub struct Checked {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Checked {
    /// Reads `resp` (the answer to `method` on its URL) and checks it, panicking with the
    /// request, the status and what is wrong when it does not conform.
    async fn new(method: &Method, resp: reqwest::Response) -> Checked {
        let status = resp.status();
        let path = resp.url().path().to_owned();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .expect("reading the response body")
            .to_vec();
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if let Err(e) = spec().check(
            method.as_str(),
            &path,
            status.as_u16(),
            &pairs,
            &body,
            Fallback::Router,
        ) {
            panic!(
                "{method} {path} answered {status}, which does not conform to openapi.yaml: {e}"
            );
        }
        Checked {
            status,
            headers,
            body,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// As `reqwest::Response::json`, so that call sites read the same.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    pub async fn text(self) -> Result<String, std::string::FromUtf8Error> {
        String::from_utf8(self.body)
    }
}

/// Sends `req` (built for `method`) and checks the answer.
pub async fn send(method: &Method, req: reqwest::RequestBuilder) -> Checked {
    Checked::new(method, req.send().await.expect("sending the request")).await
}

/// Checks a Lambda function's API Gateway (payload 2.0) response to `event`.
pub fn check_lambda(event: &Value, resp: &Value) {
    let method = event["requestContext"]["http"]["method"]
        .as_str()
        .expect("the event's method");
    let path = event["rawPath"].as_str().expect("the event's rawPath");
    let status = resp["statusCode"].as_u64().expect("statusCode") as u16;
    let headers: Vec<(String, String)> = resp["headers"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let body = resp["body"].as_str().unwrap_or_default();
    assert_ne!(
        resp["isBase64Encoded"], true,
        "{method} {path}: a base64 body where JSON was expected"
    );
    if let Err(e) = spec().check(
        method,
        path,
        status,
        &headers,
        body.as_bytes(),
        Fallback::OneFunction,
    ) {
        panic!("{method} {path} answered {status} (Lambda), which does not conform to openapi.yaml: {e}");
    }
}
