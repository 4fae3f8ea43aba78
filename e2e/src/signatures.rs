//! Signatures checked against an implementation independent of ours: Python's HMAC.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::stack::now_secs;

/// HMAC-SHA1 computed by Python's standard library: an implementation independent of
/// ours. Key and message go through stdin, not the command line.
fn python_hmac_sha1(key: &str, message: &str) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,json,sys; d=json.load(sys.stdin); \
             print(hmac.new(d['k'].encode(), d['m'].encode(), hashlib.sha1).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let input = serde_json::json!({"k": key, "m": message}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Rebuilds the signed message from a signature response, per docs/protocol.md, and
/// checks the signature against Python's HMAC. Also checks the field formats.
pub fn verify_signature_response(body: &Value, key: &str) {
    let field = |name: &str| -> String {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} missing or not a string in {body}"))
            .to_owned()
    };
    let (app, client, ts, nonce) = (
        field("app_id"),
        field("client_id"),
        field("timestamp"),
        field("nonce"),
    );
    let conversation = || {
        body.get("conversion_id")
            .or_else(|| body.get("conversation_id"))
            .and_then(|c| c.as_str())
            .unwrap_or_else(|| panic!("no conversation id in {body}"))
            .to_owned()
    };
    let message = match body.get("action").and_then(|a| a.as_str()) {
        None if body.get("sorted_member_ids").is_none() => format!("{app}:{client}::{ts}:{nonce}"),
        None => format!("{app}:{client}:{}:{ts}:{nonce}", field("sorted_member_ids")),
        // The services under test run with the default history layout, `docs`
        // (nonce before timestamp, no action); `demo` is checked in signing_rules.rs.
        Some("history") => format!("{app}:{client}:{}:{nonce}:{ts}", conversation()),
        Some(action @ ("client-block-conversations" | "client-unblock-conversations")) => {
            format!("{app}:{client}:{}::{ts}:{nonce}:{action}", conversation())
        }
        Some(action) => format!(
            "{app}:{client}:{}:{}:{ts}:{nonce}:{action}",
            conversation(),
            field("sorted_member_ids")
        ),
    };
    assert_eq!(
        field("signature"),
        python_hmac_sha1(key, &message),
        "message {message:?}"
    );
    // Timestamp: integer seconds, now.
    let ts: u64 = ts
        .parse()
        .unwrap_or_else(|_| panic!("timestamp {ts:?} is not an integer"));
    let now = now_secs();
    assert!(
        ts.abs_diff(now) < 120,
        "timestamp {ts} is not now ({now}) in seconds"
    );
    assert_eq!(nonce.len(), 8);
    assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()));
}

/// Checks `body`'s signature against Python's HMAC over `layout`, the signed message
/// with `{ts}` and `{nonce}` standing for the body's timestamp and nonce.
pub fn assert_signs(body: &Value, key: &str, layout: &str) {
    let field = |name: &str| body[name].as_str().unwrap();
    let message = layout
        .replace("{ts}", field("timestamp"))
        .replace("{nonce}", field("nonce"));
    assert_eq!(
        field("signature"),
        python_hmac_sha1(key, &message),
        "message {message:?} in {body}"
    );
}
