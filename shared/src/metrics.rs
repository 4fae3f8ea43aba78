//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per
//! event, which CloudWatch Logs turns into metrics as it ingests the function's log. No
//! call to the CloudWatch API on a request path, and nothing at all when no namespace is
//! configured (`IM_METRICS_NAMESPACE`, set by `template.yaml`; unset in `make run` and
//! the tests' servers).
//!
//! What is counted, from where:
//! - `SignaturesIssued` / `SignaturesRefused` by `Operation` (the signature function,
//!   `login`, `invite`, ...), and `AuthFailures` by `Reason` (`missing`, `malformed`,
//!   `rejected`: a class read from the header's shape, never its content), and
//!   `GroupWrites` by `Outcome`: all from the status of each response, in
//!   [`crate::api`]'s middleware ([`record_response`]);
//! - `DynamoRetries` by `Operation`: the store's own retries of a conflicting transaction
//!   or of unprocessed batch keys ([`dynamo_retry`]).
//!
//! This module imports nothing else of the crate, so every layer may call it.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// The namespace the template sets (`im/<stack name>`), read once.
fn namespace() -> Option<&'static str> {
    static NS: OnceLock<Option<String>> = OnceLock::new();
    NS.get_or_init(|| {
        std::env::var("IM_METRICS_NAMESPACE")
            .ok()
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// One EMF line: the count `metric` = 1 under `dimension` = `value`, with the request id
/// (when there is one) as a plain property, so a metric can be traced to its log lines.
pub fn emf_line(
    namespace: &str,
    metric: &str,
    dimension: (&str, &str),
    request_id: Option<&str>,
    timestamp_ms: u128,
) -> String {
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[dimension.0]],
                "Metrics": [{"Name": metric, "Unit": "Count"}],
            }],
        }),
    );
    line.insert(dimension.0.into(), Value::from(dimension.1));
    line.insert(metric.into(), Value::from(1));
    if let Some(id) = request_id {
        line.insert("requestId".into(), Value::from(id));
    }
    Value::Object(line).to_string()
}

fn emit(metric: &str, dimension: (&str, &str), request_id: Option<&str>) {
    let Some(ns) = namespace() else { return };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let line = emf_line(ns, metric, dimension, request_id, now);
    // One write of the whole line, so it never interleaves with a log line.
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// What kind of route answered, for [`record_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// A signature route; the operation (`login`, `invite`, `conversation-block`, ...).
    Signature(&'static str),
    /// A route that changes a group (POST, PUT, DELETE under `/im/`).
    GroupWrite,
    Other,
}

/// The class of an `Authorization` header, for `AuthFailures`: no token content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthShape {
    Missing,
    /// Not `Bearer <three dot-separated parts>`.
    Malformed,
    /// Well-formed; refused for its signature, expiry, key id or algorithm.
    WellFormed,
}

impl AuthShape {
    pub fn of(header: Option<&[u8]>) -> Self {
        let Some(raw) = header else {
            return Self::Missing;
        };
        let text = std::str::from_utf8(raw).unwrap_or_default();
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .unwrap_or_default()
            .trim();
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() == 3 && parts.iter().all(|p| !p.is_empty()) {
            Self::WellFormed
        } else {
            Self::Malformed
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::WellFormed => "rejected",
        }
    }
}

/// The outcome class of a group write, by status.
pub fn group_outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        401 => "unauthenticated",
        403 | 404 => "refused",
        409 | 412 => "conflict",
        503 => "unavailable",
        400..=499 => "invalid",
        _ => "error",
    }
}

/// Counts one answered request (called once per request by the HTTP middleware).
pub fn record_response(kind: RouteKind, status: u16, auth: AuthShape, request_id: Option<&str>) {
    if namespace().is_none() {
        return;
    }
    if status == 401 {
        emit("AuthFailures", ("Reason", auth.reason()), request_id);
    }
    match kind {
        RouteKind::Signature(op) if (200..300).contains(&status) => {
            emit("SignaturesIssued", ("Operation", op), request_id)
        }
        // 401 is counted above; a 5xx is the function's error, not a refusal.
        RouteKind::Signature(op) if (400..500).contains(&status) && status != 401 => {
            emit("SignaturesRefused", ("Operation", op), request_id)
        }
        RouteKind::GroupWrite => emit(
            "GroupWrites",
            ("Outcome", group_outcome(status)),
            request_id,
        ),
        _ => {}
    }
}

/// Counts one retry of a DynamoDB request by the store (`TransactWriteItems`, ...).
pub fn dynamo_retry(operation: &'static str) {
    emit("DynamoRetries", ("Operation", operation), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_its_metric_and_carries_its_values() {
        let line = emf_line(
            "im/stack",
            "SignaturesIssued",
            ("Operation", "login"),
            Some("req-1"),
            1_700_000_000_123,
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        let aws = &v["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_123u64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "im/stack");
        assert_eq!(directive["Dimensions"], json!([["Operation"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "SignaturesIssued", "Unit": "Count"}])
        );
        // Every dimension and metric named in the directive is a top-level member.
        assert_eq!(v["Operation"], "login");
        assert_eq!(v["SignaturesIssued"], 1);
        assert_eq!(v["requestId"], "req-1");
        assert_eq!(v.as_object().unwrap().len(), 4);
        let v: Value = serde_json::from_str(&emf_line("n", "M", ("D", "d"), None, 1)).unwrap();
        assert!(v.get("requestId").is_none());
    }

    #[test]
    fn auth_failures_are_classed_by_shape_only() {
        assert_eq!(AuthShape::of(None), AuthShape::Missing);
        assert_eq!(AuthShape::of(Some(b"Basic abc")), AuthShape::Malformed);
        assert_eq!(AuthShape::of(Some(b"Bearer a.b")), AuthShape::Malformed);
        assert_eq!(AuthShape::of(Some(b"Bearer a..c")), AuthShape::Malformed);
        assert_eq!(AuthShape::of(Some(b"Bearer a.b.c")), AuthShape::WellFormed);
        assert_eq!(group_outcome(201), "ok");
        assert_eq!(group_outcome(412), "conflict");
        assert_eq!(group_outcome(422), "invalid");
        assert_eq!(group_outcome(500), "error");
    }
}
