//! Signatures checked against implementations independent of ours: Python's HMAC, and for
//! Tencent's UserSig also Tencent's own library.

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

/// Checks a Tencent UserSig in Python, independently of ours, with `key` and
/// `sdk_app_id` (the right ones, or a wrong one on purpose). Answers
/// `{"object": <the decoded JSON>, "recomputed": <TLS.sig from hmac + hashlib over the
/// documented text>, "official": <the object Tencent's own library, tls-sig-api-v2,
/// makes for the same identifier and expiry with its clock pinned to our TLS.time>}`.
/// The decoding (base64 with `*-_`, zlib, json) is the vendor's documented one.
pub fn python_usersig(user_sig: &str, key: &str, sdk_app_id: u64) -> Value {
    const SCRIPT: &str = r#"
import base64, hashlib, hmac, json, sys, zlib
from unittest import mock
import TLSSigAPIv2

def decode(sig):
    raw = sig.replace('*', '+').replace('-', '/').replace('_', '=')
    return json.loads(zlib.decompress(base64.b64decode(raw, validate=True)))

d = json.load(sys.stdin)
obj = decode(d['user_sig'])
content = 'TLS.identifier:%s\nTLS.sdkappid:%d\nTLS.time:%d\nTLS.expire:%d\n' % (
    obj['TLS.identifier'], d['sdk_app_id'], obj['TLS.time'], obj['TLS.expire'])
recomputed = base64.b64encode(
    hmac.new(d['key'].encode(), content.encode(), hashlib.sha256).digest()).decode()
with mock.patch('time.time', return_value=float(obj['TLS.time'])):
    official = TLSSigAPIv2.TLSSigAPIv2(d['sdk_app_id'], d['key']).gen_sig(
        obj['TLS.identifier'], obj['TLS.expire'])
print(json.dumps({'object': obj, 'recomputed': recomputed, 'official': decode(official)}))
"#;
    let python = crate::repo::repo_root().join(".venv/bin/python");
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (make tools installs it)", python.display()));
    let input = serde_json::json!({"user_sig": user_sig, "key": key, "sdk_app_id": sdk_app_id});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks a UserSig answer (`GET /signature/usersig/...`) against Python: the decoded
/// object is the client's, for `sdk_app_id`, made now and valid `expire` seconds;
/// `expires_at` is `TLS.time + TLS.expire`; its `TLS.sig` is what an independent
/// HMAC-SHA256 gives with `key`, and what Tencent's own library gives with its clock
/// pinned to our `TLS.time`. Answers the decoded object.
pub fn verify_usersig_response(body: &Value, key: &str, sdk_app_id: u64, expire: u64) -> Value {
    let user_sig = body["user_sig"]
        .as_str()
        .unwrap_or_else(|| panic!("no user_sig in {body}"));
    let checked = python_usersig(user_sig, key, sdk_app_id);
    let object = &checked["object"];
    assert_eq!(object["TLS.ver"], "2.0", "{object}");
    assert_eq!(object["TLS.identifier"], body["client_id"], "{object}");
    assert_eq!(object["TLS.sdkappid"], sdk_app_id, "{object}");
    assert_eq!(body["sdk_app_id"], sdk_app_id, "{body}");
    assert_eq!(object["TLS.expire"], expire, "{object}");
    assert_eq!(body["expire"], expire, "{body}");
    let time = object["TLS.time"].as_u64().expect("TLS.time");
    assert_eq!(body["expires_at"].as_u64(), Some(time + expire), "{body}");
    assert!(time.abs_diff(now_secs()) <= 5, "TLS.time {time} is not now");
    let sig = &object["TLS.sig"];
    assert_eq!(sig, &checked["recomputed"], "an independent HMAC-SHA256");
    // Tencent's library makes the same object, field for field.
    assert_eq!(object, &checked["official"], "Tencent's own library");
    object.clone()
}

/// Whether `user_sig` verifies with `key` for `sdk_app_id`, by either implementation
/// (each must agree with the other).
pub fn usersig_verifies(user_sig: &str, key: &str, sdk_app_id: u64) -> bool {
    let checked = python_usersig(user_sig, key, sdk_app_id);
    let sig = &checked["object"]["TLS.sig"];
    let by_hmac = sig == &checked["recomputed"];
    let by_library = sig == &checked["official"]["TLS.sig"];
    assert_eq!(
        by_hmac, by_library,
        "the two implementations disagree: {checked}"
    );
    by_hmac
}
