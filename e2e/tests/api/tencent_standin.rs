//! The Tencent stand-in (`im_e2e::tencent`) against the notes' contract
//! (`../shared/notes/tencent-im.md`), over raw HTTP, needing no service: the URL form and
//! its query, POST only, the admin UserSig checked on every call (the good one minted by
//! the service's `model::usersig` and by Tencent's own Python library, the bad ones built
//! by hand), accounts that must exist, the group commands with their batch and byte
//! limits, per-member results, the rate limiter, and each injected fault.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use futures::future::join_all;
use im_e2e::stack::now_secs;
use im_e2e::tencent::{Fault, FaultKind, FaultTiming, Role, TencentStandIn};
use im_shared::model::usersig::{user_sig, UserSigInput};
use im_shared::model::Secret;
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "administrator";
const IMPORT: &str = "im_open_login_svc/account_import";
const MULTI_IMPORT: &str = "im_open_login_svc/multiaccount_import";
const CREATE: &str = "group_open_http_svc/create_group";
const ADD: &str = "group_open_http_svc/add_group_member";
const DELETE: &str = "group_open_http_svc/delete_group_member";
const MODIFY: &str = "group_open_http_svc/modify_group_base_info";
const CHANGE_OWNER: &str = "group_open_http_svc/change_group_owner";
const MODIFY_MEMBER: &str = "group_open_http_svc/modify_group_member_info";
const DESTROY: &str = "group_open_http_svc/destroy_group";
const INFO: &str = "group_open_http_svc/get_group_info";
const MEMBER_INFO: &str = "group_open_http_svc/get_group_member_info";
const NOTIFY: &str = "group_open_http_svc/send_group_system_notification";

/// A stand-in for one app, and a client that calls it as the app's admin.
struct Tencent {
    standin: TencentStandIn,
    http: reqwest::Client,
    sdk_app_id: u64,
    key: String,
}

impl Tencent {
    fn start() -> Self {
        Self::with_timeout(Duration::from_secs(10))
    }

    fn with_timeout(timeout: Duration) -> Self {
        let sdk_app_id = 1_400_000_000 + u64::from(rand::random::<u16>());
        let key = hex::encode(rand::random::<[u8; 32]>());
        Self {
            standin: TencentStandIn::start(sdk_app_id, &key, &[ADMIN, "ops-admin"]),
            http: im_e2e::http::client_builder()
                .timeout(timeout)
                .build()
                .unwrap(),
            sdk_app_id,
            key,
        }
    }

    /// A UserSig of this app, made by the service's implementation.
    fn sig(&self, identifier: &str) -> String {
        self.sig_at(identifier, now_secs(), 3600)
    }

    fn sig_at(&self, identifier: &str, time: u64, expire: u64) -> String {
        user_sig(
            &Secret::new(self.key.as_str()),
            &UserSigInput {
                sdk_app_id: self.sdk_app_id,
                identifier,
                time,
                expire,
            },
        )
    }

    /// The URL of `command` with the full query, as `identifier` with `user_sig`.
    fn url_as(&self, command: &str, identifier: &str, user_sig: &str) -> String {
        format!(
            "{}/v4/{command}?sdkappid={}&identifier={identifier}&usersig={user_sig}&random={}&contenttype=json",
            self.standin.url(),
            self.sdk_app_id,
            rand::random::<u32>()
        )
    }

    fn url(&self, command: &str) -> String {
        self.url_as(command, ADMIN, &self.sig(ADMIN))
    }

    /// POSTs `body` (raw) to `url`; the status and the answer (JSON, else its text).
    async fn raw(&self, method: Method, url: &str, body: &str) -> (u16, Value) {
        let response = self
            .http
            .request(method, url)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Calls `command` as the admin; the answer, which must be HTTP 200 and Tencent's shape.
    async fn call(&self, command: &str, body: Value) -> Value {
        let (status, answer) = self
            .raw(Method::POST, &self.url(command), &body.to_string())
            .await;
        assert_eq!(status, 200, "{command}: {answer}");
        check_shape(&answer);
        answer
    }

    /// Calls `command`; panics unless it answers OK.
    async fn ok(&self, command: &str, body: Value) -> Value {
        let answer = self.call(command, body.clone()).await;
        assert_eq!(answer["ActionStatus"], "OK", "{command} {body}: {answer}");
        answer
    }

    /// Calls `command`; panics unless it answers FAIL with `code`.
    async fn fails(&self, command: &str, body: Value, code: u64) -> Value {
        let answer = self.call(command, body.clone()).await;
        assert_eq!(
            (
                answer["ActionStatus"].as_str(),
                answer["ErrorCode"].as_u64()
            ),
            (Some("FAIL"), Some(code)),
            "{command} {body}: {answer}"
        );
        answer
    }

    async fn import(&self, ids: &[&str]) {
        let list: Vec<Value> = ids.iter().map(|id| json!({"UserID": id})).collect();
        let answer = self.ok(MULTI_IMPORT, json!({"AccountList": list})).await;
        assert_eq!(answer["FailAccounts"], json!([]));
    }

    /// A Public group `id` owned by alice, with bob as a member.
    async fn group(&self, id: &str) {
        self.import(&["alice", "bob", "carol"]).await;
        self.ok(
            CREATE,
            json!({"Type": "Public", "Name": "a group", "GroupId": id, "Owner_Account": "alice",
                   "MemberList": [{"Member_Account": "bob"}]}),
        )
        .await;
    }
}

/// `ActionStatus`, `ErrorCode` and `ErrorInfo`, agreeing with each other.
fn check_shape(answer: &Value) {
    let code = answer["ErrorCode"].as_u64().expect("ErrorCode");
    assert!(answer["ErrorInfo"].is_string(), "{answer}");
    match answer["ActionStatus"].as_str() {
        Some("OK") => assert_eq!(code, 0, "{answer}"),
        Some("FAIL") => assert_ne!(code, 0, "{answer}"),
        other => panic!("ActionStatus {other:?} in {answer}"),
    }
}

/// A UserSig built by hand from its JSON object: zlib at `level`, then Tencent's base64.
fn hand_sig(object: &Value, level: u32) -> String {
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::new(level));
    zlib.write_all(object.to_string().as_bytes()).unwrap();
    tencent_base64(&zlib.finish().unwrap())
}

fn tencent_base64(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .replace('+', "*")
        .replace('/', "-")
        .replace('=', "_")
}

/// The JSON object inside a UserSig.
fn unpack(user_sig: &str) -> Value {
    let standard = user_sig
        .replace('*', "+")
        .replace('-', "/")
        .replace('_', "=");
    let mut json = String::new();
    ZlibDecoder::new(STANDARD.decode(standard).unwrap().as_slice())
        .read_to_string(&mut json)
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

/// `TLS.sig` over the content lines, computed by Python's `hmac` (independent of both
/// the service and the stand-in); key and content through stdin.
fn python_tls_sig(key: &str, content: &str) -> String {
    python(
        "python3",
        "import base64,hashlib,hmac,json,sys; d=json.load(sys.stdin); \
         print(base64.b64encode(hmac.new(d['k'].encode(), d['m'].encode(), hashlib.sha256).digest()).decode())",
        &json!({"k": key, "m": content}),
    )
}

fn python(interpreter: &str, script: &str, input: &Value) -> String {
    let mut child = Command::new(interpreter)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{interpreter}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{interpreter} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An object like the official libraries make, with its `TLS.sig` from Python's hmac.
fn signed_object(key: &str, sdk_app_id: u64, identifier: &str, time: u64, expire: u64) -> Value {
    let content = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdk_app_id}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    json!({"TLS.ver": "2.0", "TLS.identifier": identifier, "TLS.sdkappid": sdk_app_id,
           "TLS.expire": expire, "TLS.time": time, "TLS.sig": python_tls_sig(key, &content)})
}

#[tokio::test]
async fn a_good_call_answers_ok_on_loopback() {
    let tencent = Tencent::start();
    let url = tencent.standin.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!url.ends_with('/'), "{url}");
    let answer = tencent.ok(IMPORT, json!({"UserID": "bob"})).await;
    assert_eq!(
        answer,
        json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})
    );
    // Idempotent.
    tencent.ok(IMPORT, json!({"UserID": "bob"})).await;
    assert!(tencent.standin.accounts().contains("bob"));
    // The admins exist from the start.
    assert!(tencent.standin.accounts().contains(ADMIN));
    assert!(tencent.standin.accounts().contains("ops-admin"));
    // Another admin, with its own UserSig, is served too.
    let url = tencent.url_as(IMPORT, "ops-admin", &tencent.sig("ops-admin"));
    let (status, answer) = tencent
        .raw(Method::POST, &url, r#"{"UserID": "carol"}"#)
        .await;
    assert_eq!((status, answer["ErrorCode"].as_u64()), (200, Some(0)));
}

#[tokio::test]
async fn only_post_is_served() {
    let tencent = Tencent::start();
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let response = tencent
            .http
            .request(method.clone(), tencent.url(IMPORT))
            .body(r#"{"UserID": "bob"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST");
        let answer: Value = response.json().await.unwrap();
        check_shape(&answer);
        assert_eq!(answer["ActionStatus"], "FAIL", "{method}: {answer}");
    }
    assert!(!tencent.standin.accounts().contains("bob"));
}

#[tokio::test]
async fn every_query_parameter_is_required_once_and_unknown_commands_are_refused() {
    let tencent = Tencent::start();
    let sig = tencent.sig(ADMIN);
    let params = [
        ("sdkappid", tencent.sdk_app_id.to_string()),
        ("identifier", ADMIN.to_string()),
        ("usersig", sig.clone()),
        ("random", "12345".to_string()),
        ("contenttype", "json".to_string()),
    ];
    let url_with = |pairs: &[(&str, String)]| {
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}/v4/{IMPORT}?{}", tencent.standin.url(), query.join("&"))
    };
    let body = r#"{"UserID": "bob"}"#;
    let (_, good) = tencent.raw(Method::POST, &url_with(&params), body).await;
    assert_eq!(good["ActionStatus"], "OK", "{good}");
    let mut bad: Vec<Vec<(&str, String)>> = Vec::new();
    for skip in 0..params.len() {
        let mut without = params.to_vec();
        without.remove(skip);
        bad.push(without.clone());
        // Present but empty is missing too.
        without.insert(skip, (params[skip].0, String::new()));
        bad.push(without);
    }
    let with = |name: &'static str, value: &str| {
        let mut pairs = params.to_vec();
        pairs.push((name, value.to_string()));
        pairs
    };
    bad.push(with("random", "1"));
    bad.push(with("other", "1"));
    let replace = |name: &str, value: &str| -> Vec<(&str, String)> {
        params
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == name {
                        value.to_string()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    };
    bad.push(replace("random", "abc"));
    bad.push(replace("random", "4294967296"));
    bad.push(replace("contenttype", "xml"));
    bad.push(replace("sdkappid", "not-a-number"));
    for pairs in &bad {
        let (status, answer) = tencent.raw(Method::POST, &url_with(pairs), body).await;
        assert_eq!(status, 200, "{pairs:?}");
        check_shape(&answer);
        assert_eq!(answer["ErrorCode"], 60002, "{pairs:?}: {answer}");
    }
    for command in [
        "im_open_login_svc/nothing",
        "nothing_svc/account_import",
        "group_open_http_svc",
        "group_open_http_svc/create_group/more",
    ] {
        let url = tencent.url(command);
        let (status, answer) = tencent.raw(Method::POST, &url, "{}").await;
        assert_eq!(status, 200, "{command}");
        assert_eq!(answer["ErrorCode"], 60002, "{command}: {answer}");
    }
    let url = format!("{}/v3/{IMPORT}", tencent.standin.url());
    assert_eq!(
        tencent.raw(Method::POST, &url, body).await.1["ErrorCode"],
        60002
    );
    assert_eq!(
        tencent.standin.accounts().len(),
        3,
        "only the good call imported bob"
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_60003() {
    let tencent = Tencent::start();
    for body in ["", "not json", "[]", "\"UserID\"", "{\"UserID\": \"bob\""] {
        let (status, answer) = tencent.raw(Method::POST, &tencent.url(IMPORT), body).await;
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(answer["ErrorCode"], 60003, "{body:?}: {answer}");
        assert_eq!(answer["ActionStatus"], "FAIL");
    }
}

#[tokio::test]
async fn a_bad_usersig_gets_its_code() {
    let tencent = Tencent::start();
    let now = now_secs();
    let key = tencent.key.clone();
    let app = tencent.sdk_app_id;
    let other_key = hex::encode(rand::random::<[u8; 32]>());
    let other_app = user_sig(
        &Secret::new(key.as_str()),
        &UserSigInput {
            sdk_app_id: app + 1,
            identifier: ADMIN,
            time: now,
            expire: 3600,
        },
    );
    let mut no_sig = signed_object(&key, app, ADMIN, now, 3600);
    no_sig.as_object_mut().unwrap().remove("TLS.sig");
    let mut v1 = signed_object(&key, app, ADMIN, now, 3600);
    v1["TLS.ver"] = json!("1.0");
    let mut string_time = signed_object(&key, app, ADMIN, now, 3600);
    string_time["TLS.time"] = json!(now.to_string());
    // The time moved on after signing: the signature no longer covers it.
    let mut moved = signed_object(&key, app, ADMIN, now - 7200, 3600);
    moved["TLS.time"] = json!(now);
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    zlib.write_all(b"[1, 2, 3]").unwrap();
    let not_an_object = tencent_base64(&zlib.finish().unwrap());
    let cases: Vec<(&str, String, u64)> = vec![
        // Expired: valid until time + expire, and no longer.
        ("expired", tencent.sig_at(ADMIN, now - 100, 50), 70001),
        (
            "wrong key",
            hand_sig(&signed_object(&other_key, app, ADMIN, now, 3600), 6),
            70009,
        ),
        ("tampered time", hand_sig(&moved, 6), 70009),
        ("another user's", tencent.sig("bob"), 70013),
        ("another admin's", tencent.sig("ops-admin"), 70013),
        ("another app's", other_app, 70014),
        ("garbage", "not-a-usersig!".to_string(), 70003),
        ("base64, not zlib", tencent_base64(b"hello, world"), 70003),
        ("zlib, not an object", not_an_object, 70003),
        ("no TLS.sig", hand_sig(&no_sig, 6), 70003),
        ("TLS.ver 1.0", hand_sig(&v1, 6), 70003),
        ("TLS.time a string", hand_sig(&string_time, 6), 70003),
        (
            "plain base64",
            STANDARD.encode(b"x").replace('=', ""),
            70003,
        ),
    ];
    for (case, user_sig, code) in &cases {
        let url = tencent.url_as(
            IMPORT,
            ADMIN,
            &url::form_urlencoded::byte_serialize(user_sig.as_bytes()).collect::<String>(),
        );
        let (status, answer) = tencent
            .raw(Method::POST, &url, r#"{"UserID": "bob"}"#)
            .await;
        assert_eq!(status, 200, "{case}");
        assert_eq!(answer["ErrorCode"], *code, "{case}: {answer}");
        assert!(
            !answer["ErrorInfo"]
                .as_str()
                .unwrap()
                .contains(user_sig.as_str()),
            "{case}: the answer repeats the UserSig"
        );
    }
    // Still valid at the last second of its life.
    let url = tencent.url_as(IMPORT, ADMIN, &tencent.sig_at(ADMIN, now - 100, 200));
    let (_, answer) = tencent
        .raw(Method::POST, &url, r#"{"UserID": "eve"}"#)
        .await;
    assert_eq!(answer["ErrorCode"], 0, "{answer}");
    // A wrong sdkappid in the query, with this app's UserSig: refused (70014, see rest.rs).
    let url = tencent
        .url(IMPORT)
        .replace(&format!("sdkappid={app}"), &format!("sdkappid={}", app + 1));
    let (_, answer) = tencent
        .raw(Method::POST, &url, r#"{"UserID": "bob"}"#)
        .await;
    assert_eq!(answer["ErrorCode"], 70014, "{answer}");
    // An identifier that is not an admin, with its own good UserSig: 60010.
    tencent.ok(IMPORT, json!({"UserID": "bob"})).await;
    let url = tencent.url_as(IMPORT, "bob", &tencent.sig("bob"));
    let (_, answer) = tencent
        .raw(Method::POST, &url, r#"{"UserID": "carol"}"#)
        .await;
    assert_eq!(answer["ErrorCode"], 60010, "{answer}");
    assert!(!tencent.standin.accounts().contains("carol"));
    // Nothing refused was applied, and the log holds no UserSig.
    let log = format!("{:?}", tencent.standin.requests());
    for (case, user_sig, _) in &cases {
        assert!(!log.contains(user_sig.as_str()), "{case} in the log");
    }
    assert!(!log.contains(&tencent.sig(ADMIN)[..40]));
}

#[tokio::test]
async fn a_usersig_in_another_key_order_and_compression_is_accepted() {
    let tencent = Tencent::start();
    let object = signed_object(&tencent.key, tencent.sdk_app_id, ADMIN, now_secs(), 600);
    // The libraries differ in key order and spacing: the stand-in parses, never compares.
    let text = object.to_string();
    let mut entries: Vec<(String, Value)> =
        object.as_object().unwrap().clone().into_iter().collect();
    entries.reverse();
    let reversed = format!(
        "{{ {} }}",
        entries
            .iter()
            .map(|(k, v)| format!("{:?} : {v}", k))
            .collect::<Vec<_>>()
            .join(" , ")
    );
    assert_ne!(reversed, text);
    for (json, level) in [(text, 9), (reversed, 1)] {
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::new(level));
        zlib.write_all(json.as_bytes()).unwrap();
        let sig = tencent_base64(&zlib.finish().unwrap());
        let (_, answer) = tencent
            .raw(
                Method::POST,
                &tencent.url_as(IMPORT, ADMIN, &sig),
                r#"{"UserID": "bob"}"#,
            )
            .await;
        assert_eq!(answer["ErrorCode"], 0, "{json}: {answer}");
    }
    // And the service's own UserSig carries the TLS.sig Python's hmac gives.
    let now = now_secs();
    let ours = unpack(&tencent.sig_at(ADMIN, now, 600));
    assert_eq!(
        ours["TLS.sig"],
        signed_object(&tencent.key, tencent.sdk_app_id, ADMIN, now, 600)["TLS.sig"]
    );
}

/// Tencent's own library (`tls-sig-api-v2` from PyPI) makes the admin's UserSig; the
/// stand-in takes it. Not skipped when the library is missing: the tools are part of the
/// test set-up (`make tools`).
#[tokio::test]
async fn a_usersig_from_tencents_python_library_is_accepted() {
    let tencent = Tencent::start();
    let python_bin = im_e2e::repo::repo_root().join(".venv/bin/python");
    let probe = Command::new(&python_bin)
        .args(["-c", "import TLSSigAPIv2"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python_bin.display()));
    assert!(
        probe.status.success(),
        "Tencent's UserSig library is not installed in {}: run `{} -m pip install tls-sig-api-v2==1.1` ({})",
        python_bin.display(),
        python_bin.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let script = "import json,sys,TLSSigAPIv2; d=json.load(sys.stdin); \
                  print(TLSSigAPIv2.TLSSigAPIv2(d['app'], d['key']).gen_sig(d['id'], d['expire']))";
    let make = |key: &str, identifier: &str, expire: u64| {
        python(
            python_bin.to_str().unwrap(),
            script,
            &json!({"app": tencent.sdk_app_id, "key": key, "id": identifier, "expire": expire}),
        )
    };
    let theirs = make(&tencent.key, ADMIN, 86_400);
    let (_, answer) = tencent
        .raw(
            Method::POST,
            &tencent.url_as(IMPORT, ADMIN, &theirs),
            r#"{"UserID": "bob"}"#,
        )
        .await;
    assert_eq!(answer["ErrorCode"], 0, "{answer}");
    assert!(tencent.standin.accounts().contains("bob"));
    let wrong_key = make(&hex::encode(rand::random::<[u8; 32]>()), ADMIN, 86_400);
    let (_, answer) = tencent
        .raw(
            Method::POST,
            &tencent.url_as(IMPORT, ADMIN, &wrong_key),
            r#"{"UserID": "carol"}"#,
        )
        .await;
    assert_eq!(answer["ErrorCode"], 70009, "{answer}");
    let bobs = make(&tencent.key, "bob", 86_400);
    let (_, answer) = tencent
        .raw(
            Method::POST,
            &tencent.url_as(IMPORT, ADMIN, &bobs),
            r#"{"UserID": "carol"}"#,
        )
        .await;
    assert_eq!(answer["ErrorCode"], 70013, "{answer}");
}

#[tokio::test]
async fn a_group_call_naming_an_account_not_imported_is_10019() {
    let tencent = Tencent::start();
    let create = json!({"Type": "Public", "Name": "g", "GroupId": "g1", "Owner_Account": "alice"});
    tencent.fails(CREATE, create.clone(), 10019).await;
    tencent.ok(IMPORT, json!({"UserID": "alice"})).await;
    let with_bob = json!({"Type": "Public", "Name": "g", "GroupId": "g1", "Owner_Account": "alice",
                          "MemberList": [{"Member_Account": "bob"}]});
    tencent.fails(CREATE, with_bob, 10019).await;
    assert!(tencent.standin.group("g1").is_none());
    tencent.ok(CREATE, create).await;
    let add = json!({"GroupId": "g1", "MemberList": [{"Member_Account": "bob"}]});
    tencent.fails(ADD, add.clone(), 10019).await;
    tencent
        .fails(
            CHANGE_OWNER,
            json!({"GroupId": "g1", "NewOwner_Account": "bob"}),
            10019,
        )
        .await;
    tencent
        .fails(
            MODIFY_MEMBER,
            json!({"GroupId": "g1", "Member_Account": "bob", "Role": "Admin"}),
            10019,
        )
        .await;
    tencent
        .fails(
            DELETE,
            json!({"GroupId": "g1", "MemberToDel_Account": ["bob"]}),
            10019,
        )
        .await;
    tencent
        .fails(
            NOTIFY,
            json!({"GroupId": "g1", "Content": "hi", "ToMembers_Account": ["bob"]}),
            10019,
        )
        .await;
    tencent.import(&["bob"]).await;
    tencent.ok(ADD, add).await;
    assert!(tencent
        .standin
        .group("g1")
        .unwrap()
        .members
        .contains_key("bob"));
}

#[tokio::test]
async fn multiaccount_import_takes_100_and_names_the_accounts_it_cannot_take() {
    let tencent = Tencent::start();
    let list = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"UserID": format!("user-{i}")}))
            .collect()
    };
    tencent
        .fails(MULTI_IMPORT, json!({"AccountList": list(101)}), 70402)
        .await;
    assert!(!tencent.standin.accounts().contains("user-0"));
    tencent
        .import(
            &list(100)
                .iter()
                .map(|u| u["UserID"].as_str().unwrap())
                .collect::<Vec<_>>(),
        )
        .await;
    assert!(tencent.standin.accounts().contains("user-99"));
    let long = "x".repeat(33);
    let answer = tencent
        .ok(
            MULTI_IMPORT,
            json!({"AccountList": [{"UserID": "ok-1"}, {"UserID": "é"}, {"UserID": long},
                                   {"UserID": "x".repeat(32)}, {"UserID": "tab\there"}, {"UserID": ""}]}),
        )
        .await;
    assert_eq!(answer["FailAccounts"], json!(["é", long, "tab\there", ""]));
    let accounts = tencent.standin.accounts();
    assert!(accounts.contains("ok-1") && accounts.contains(&"x".repeat(32)));
    assert!(!accounts.contains("é") && !accounts.contains(&long));
    // Bad shapes.
    for body in [
        json!({}),
        json!({"AccountList": []}),
        json!({"AccountList": ["bob"]}),
        json!({"AccountList": [{"UserID": 7}]}),
        json!({"Accounts": ["bob"]}),
    ] {
        tencent.fails(MULTI_IMPORT, body, 70402).await;
    }
    tencent.fails(IMPORT, json!({"UserID": "é"}), 70402).await;
    tencent.fails(IMPORT, json!({}), 70402).await;
}

#[tokio::test]
async fn a_retried_create_is_10025_and_someone_elses_id_10021() {
    let tencent = Tencent::start();
    tencent.group("mine").await;
    let answer = tencent
        .fails(
            CREATE,
            json!({"Type": "Public", "Name": "again", "GroupId": "mine", "Owner_Account": "alice"}),
            10025,
        )
        .await;
    assert!(answer.get("GroupId").is_none() || answer["GroupId"] == "mine");
    assert_eq!(tencent.standin.group("mine").unwrap().name, "a group");
    tencent.standin.create_foreign_group("theirs", "mallory");
    let foreign = tencent.standin.group("theirs").unwrap();
    assert!(!foreign.created_by_admin);
    assert!(tencent.standin.group("mine").unwrap().created_by_admin);
    tencent
        .fails(CREATE, json!({"Type": "Public", "Name": "ours", "GroupId": "theirs", "Owner_Account": "alice"}), 10021)
        .await;
    assert_eq!(tencent.standin.group("theirs").unwrap(), foreign);
}

#[tokio::test]
async fn names_are_at_most_30_bytes_of_utf8() {
    let tencent = Tencent::start();
    tencent.import(&["alice"]).await;
    let create = |id: &str, name: &str| json!({"Type": "Public", "Name": name, "GroupId": id, "Owner_Account": "alice"});
    tencent
        .ok(CREATE, create("ascii-30", &"n".repeat(30)))
        .await;
    tencent
        .fails(CREATE, create("ascii-31", &"n".repeat(31)), 10004)
        .await;
    let ten = "群".repeat(10);
    assert_eq!(ten.len(), 30);
    tencent.ok(CREATE, create("cjk-10", &ten)).await;
    tencent
        .fails(CREATE, create("cjk-11", &"群".repeat(11)), 10004)
        .await;
    tencent.fails(CREATE, create("empty", ""), 10004).await;
    assert_eq!(tencent.standin.group("cjk-10").unwrap().name, ten);
    assert!(
        tencent.standin.group("cjk-11").is_none() && tencent.standin.group("ascii-31").is_none()
    );
    tencent
        .fails(
            MODIFY,
            json!({"GroupId": "cjk-10", "Name": "名".repeat(11)}),
            10004,
        )
        .await;
    tencent
        .fails(
            MODIFY,
            json!({"GroupId": "cjk-10", "Name": "n".repeat(31)}),
            10004,
        )
        .await;
    tencent
        .ok(
            MODIFY,
            json!({"GroupId": "cjk-10", "Name": "名".repeat(10)}),
        )
        .await;
    assert_eq!(
        tencent.standin.group("cjk-10").unwrap().name,
        "名".repeat(10)
    );
}

#[tokio::test]
async fn create_group_follows_the_table() {
    let tencent = Tencent::start();
    tencent.import(&["alice", "bob", "carol"]).await;
    let answer = tencent
        .ok(
            CREATE,
            json!({"Type": "Public", "Name": "full", "GroupId": "full-1", "Owner_Account": "alice",
                   "MemberList": [{"Member_Account": "bob", "Role": "Admin"}, {"Member_Account": "carol"}],
                   "ApplyJoinOption": "DisableApply", "MaxMemberCount": 50, "Introduction": "intro",
                   "FaceUrl": "https://example.com/f.png",
                   "AppDefinedData": [{"Key": "group_id", "Value": "7"}]}),
        )
        .await;
    assert_eq!(answer["GroupId"], "full-1");
    let group = tencent.standin.group("full-1").unwrap();
    assert_eq!(group.group_type, "Public");
    assert_eq!(group.owner.as_deref(), Some("alice"));
    assert_eq!(group.members["alice"], Role::Owner);
    assert_eq!(group.members["bob"], Role::Admin);
    assert_eq!(group.members["carol"], Role::Member);
    assert_eq!(group.apply_join_option, "DisableApply");
    assert_eq!(group.max_member_count, 50);
    assert_eq!(group.introduction, "intro");
    assert_eq!(group.face_url, "https://example.com/f.png");
    assert_eq!(
        group.app_defined_data,
        json!([{"Key": "group_id", "Value": "7"}])
    );
    assert!(group.created_by_admin);
    // Without GroupId, Tencent names it.
    let answer = tencent
        .ok(
            CREATE,
            json!({"Type": "Private", "Name": "named by tencent", "Owner_Account": "alice"}),
        )
        .await;
    let id = answer["GroupId"].as_str().unwrap();
    assert!(id.starts_with("@TGS#"), "{id}");
    assert_eq!(
        tencent.standin.group(id).unwrap().apply_join_option,
        "DisableApply"
    );
    for ty in ["ChatRoom", "AVChatRoom", "Community"] {
        tencent
            .ok(CREATE, json!({"Type": ty, "Name": ty, "GroupId": format!("type-{ty}"), "Owner_Account": "alice"}))
            .await;
    }
    // Refused, each with 10004 but the batch limit (10005) and the member limit (10038).
    let members =
        |n: usize| -> Vec<Value> { (0..n).map(|_| json!({"Member_Account": "bob"})).collect() };
    let base =
        json!({"Type": "Public", "Name": "g", "GroupId": "refused", "Owner_Account": "alice"});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let refusals = [
        (with("Type", json!("Work")), 10004),
        (with("Type", json!("Meeting")), 10004),
        (with("Type", json!("public")), 10004),
        (with("GroupId", json!("@TGS#mine")), 10004),
        (with("GroupId", json!("g".repeat(49))), 10004),
        (with("GroupId", json!("grüppe")), 10004),
        (with("GroupId", json!("")), 10004),
        (with("MemberList", json!(members(101))), 10005),
        (
            with(
                "MemberList",
                json!([{"Member_Account": "bob", "Role": "Owner"}]),
            ),
            10004,
        ),
        (
            with(
                "MemberList",
                json!([{"Member_Account": "bob", "Role": "Member"}]),
            ),
            10004,
        ),
        (with("MemberList", json!(["bob"])), 10004),
        (with("ApplyJoinOption", json!("Anyone")), 10004),
        (with("MaxMemberCount", json!(0)), 10004),
        (with("MaxMemberCount", json!(2001)), 10004),
        (with("Introduction", json!("i".repeat(241))), 10004),
        (with("FaceUrl", json!("f".repeat(101))), 10004),
        (with("AppDefinedData", json!({"Key": "k"})), 10004),
        (with("Unknown", json!(1)), 10004),
        (with("Name", json!(7)), 10004),
        (json!({"Name": "g", "GroupId": "refused"}), 10004),
        (json!({"Type": "Public", "GroupId": "refused"}), 10004),
        (
            json!({"Type": "Public", "Name": "g", "GroupId": "refused", "Owner_Account": "alice",
                   "MaxMemberCount": 2, "MemberList": [{"Member_Account": "bob"}, {"Member_Account": "carol"}]}),
            10038,
        ),
    ];
    for (body, code) in refusals {
        tencent.fails(CREATE, body, code).await;
    }
    assert!(tencent.standin.group("refused").is_none());
    // 48 bytes and 100 members are within the limits.
    let hundred: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    tencent
        .import(&hundred.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let list: Vec<Value> = hundred
        .iter()
        .map(|m| json!({"Member_Account": m}))
        .collect();
    tencent
        .ok(CREATE, with("GroupId", json!("g".repeat(48))))
        .await;
    tencent
        .ok(
            CREATE,
            json!({"Type": "Public", "Name": "big", "GroupId": "big", "MemberList": list}),
        )
        .await;
    let big = tencent.standin.group("big").unwrap();
    assert_eq!((big.members.len(), big.owner), (100, None));
    // Members join in the order given (m9 before m10), the owner first.
    let order: Vec<String> = tencent
        .standin
        .members_in_order("big")
        .unwrap()
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(order, hundred);
    assert_eq!(
        tencent.standin.members_in_order("full-1").unwrap(),
        [
            ("alice".to_string(), Role::Owner),
            ("bob".to_string(), Role::Admin),
            ("carol".to_string(), Role::Member)
        ]
    );
}

#[tokio::test]
async fn add_group_member_answers_each_members_result() {
    let tencent = Tencent::start();
    tencent.group("g").await;
    tencent.import(&["dave", "erin"]).await;
    tencent.standin.refuse_joins_of("erin");
    let answer = tencent
        .ok(
            ADD,
            json!({"GroupId": "g", "Silence": 1, "MemberList": [{"Member_Account": "carol"},
                   {"Member_Account": "bob"}, {"Member_Account": "erin"}, {"Member_Account": "alice"}]}),
        )
        .await;
    assert_eq!(
        answer["MemberList"],
        json!([{"Member_Account": "carol", "Result": 1}, {"Member_Account": "bob", "Result": 2},
               {"Member_Account": "erin", "Result": 0}, {"Member_Account": "alice", "Result": 2}])
    );
    let group = tencent.standin.group("g").unwrap();
    assert_eq!(
        group.members.keys().collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    assert_eq!(group.members["carol"], Role::Member);
    // The limits: 300 a call, Silence 0 or 1, the group's MaxMemberCount.
    let many: Vec<Value> = (0..301)
        .map(|_| json!({"Member_Account": "dave"}))
        .collect();
    tencent
        .fails(ADD, json!({"GroupId": "g", "MemberList": many}), 10005)
        .await;
    let three_hundred: Vec<Value> = (0..300)
        .map(|_| json!({"Member_Account": "dave"}))
        .collect();
    tencent
        .ok(ADD, json!({"GroupId": "g", "MemberList": three_hundred}))
        .await;
    tencent
        .fails(
            ADD,
            json!({"GroupId": "g", "Silence": 2, "MemberList": [{"Member_Account": "dave"}]}),
            10004,
        )
        .await;
    tencent
        .fails(ADD, json!({"GroupId": "g", "MemberList": []}), 10004)
        .await;
    tencent
        .ok(MODIFY, json!({"GroupId": "g", "MaxMemberNum": 4}))
        .await;
    tencent
        .fails(ADD, json!({"GroupId": "g", "MemberList": [{"Member_Account": "erin"}, {"Member_Account": "mallory"}]}), 10019)
        .await;
    tencent.import(&["frank"]).await;
    tencent
        .fails(
            ADD,
            json!({"GroupId": "g", "MemberList": [{"Member_Account": "frank"}]}),
            10014,
        )
        .await;
    tencent
        .fails(
            ADD,
            json!({"GroupId": "nope", "MemberList": [{"Member_Account": "dave"}]}),
            10010,
        )
        .await;
    assert_eq!(tencent.standin.group("g").unwrap().members.len(), 4);
}

#[tokio::test]
async fn delete_group_member_takes_100_never_the_owner() {
    let tencent = Tencent::start();
    tencent.group("g").await;
    tencent
        .ok(
            DELETE,
            json!({"GroupId": "g", "MemberToDel_Account": ["carol"]}),
        )
        .await;
    let answer = tencent
        .ok(
            DELETE,
            json!({"GroupId": "g", "MemberToDel_Account": ["bob"], "Silence": 1, "Reason": "bye"}),
        )
        .await;
    assert_eq!(answer["ErrorCode"], 0);
    assert!(!tencent
        .standin
        .group("g")
        .unwrap()
        .members
        .contains_key("bob"));
    // Removing a non-member (again) succeeds and changes nothing.
    tencent
        .ok(
            DELETE,
            json!({"GroupId": "g", "MemberToDel_Account": ["bob"]}),
        )
        .await;
    tencent
        .fails(
            DELETE,
            json!({"GroupId": "g", "MemberToDel_Account": ["alice"]}),
            10004,
        )
        .await;
    let many: Vec<&str> = (0..101).map(|_| "bob").collect();
    tencent
        .fails(
            DELETE,
            json!({"GroupId": "g", "MemberToDel_Account": many}),
            10005,
        )
        .await;
    let hundred: Vec<&str> = (0..100).map(|_| "bob").collect();
    tencent
        .ok(
            DELETE,
            json!({"GroupId": "g", "MemberToDel_Account": hundred}),
        )
        .await;
    tencent
        .fails(
            DELETE,
            json!({"GroupId": "g", "MemberToDel_Account": []}),
            10004,
        )
        .await;
    assert_eq!(
        tencent.standin.group("g").unwrap().owner.as_deref(),
        Some("alice")
    );
}

#[tokio::test]
async fn owners_and_roles_change_only_among_members() {
    let tencent = Tencent::start();
    tencent.group("g").await;
    tencent
        .fails(
            CHANGE_OWNER,
            json!({"GroupId": "g", "NewOwner_Account": "carol"}),
            10004,
        )
        .await;
    tencent
        .ok(
            CHANGE_OWNER,
            json!({"GroupId": "g", "NewOwner_Account": "bob"}),
        )
        .await;
    let group = tencent.standin.group("g").unwrap();
    assert_eq!(group.owner.as_deref(), Some("bob"));
    assert_eq!(
        (group.members["bob"], group.members["alice"]),
        (Role::Owner, Role::Member)
    );
    let role =
        |member: &str, role: &str| json!({"GroupId": "g", "Member_Account": member, "Role": role});
    tencent.ok(MODIFY_MEMBER, role("alice", "Admin")).await;
    assert_eq!(
        tencent
            .standin
            .group("g")
            .unwrap()
            .admins()
            .into_iter()
            .collect::<Vec<_>>(),
        ["alice"]
    );
    tencent.ok(MODIFY_MEMBER, role("alice", "Member")).await;
    assert!(tencent.standin.group("g").unwrap().admins().is_empty());
    tencent
        .fails(MODIFY_MEMBER, role("bob", "Admin"), 10004)
        .await;
    tencent
        .fails(MODIFY_MEMBER, role("carol", "Admin"), 10004)
        .await;
    tencent
        .fails(MODIFY_MEMBER, role("alice", "Owner"), 10004)
        .await;
    tencent
        .fails(
            MODIFY_MEMBER,
            json!({"GroupId": "g", "Member_Account": "alice"}),
            10004,
        )
        .await;
    tencent
        .fails(
            CHANGE_OWNER,
            json!({"GroupId": "gone", "NewOwner_Account": "bob"}),
            10010,
        )
        .await;
    // modify_group_base_info's field is MaxMemberNum: MaxMemberCount is refused, not ignored.
    tencent
        .fails(MODIFY, json!({"GroupId": "g", "MaxMemberCount": 10}), 10004)
        .await;
    tencent
        .fails(MODIFY, json!({"GroupId": "g", "MaxMemberNum": 1}), 10004)
        .await;
    tencent
        .ok(
            MODIFY,
            json!({"GroupId": "g", "MaxMemberNum": 10, "Introduction": "new", "FaceUrl": "u",
                           "ApplyJoinOption": "FreeAccess", "Notification": "n"}),
        )
        .await;
    let group = tencent.standin.group("g").unwrap();
    assert_eq!(
        (
            group.max_member_count,
            group.introduction.as_str(),
            group.face_url.as_str(),
            group.apply_join_option.as_str()
        ),
        (10, "new", "u", "FreeAccess")
    );
    assert_eq!(group.name, "a group");
}

#[tokio::test]
async fn group_info_answers_each_group_and_its_members() {
    let tencent = Tencent::start();
    tencent.group("g").await;
    tencent
        .ok(
            MODIFY_MEMBER,
            json!({"GroupId": "g", "Member_Account": "bob", "Role": "Admin"}),
        )
        .await;
    let answer = tencent
        .ok(INFO, json!({"GroupIdList": ["g", "nope"]}))
        .await;
    let infos = answer["GroupInfo"].as_array().unwrap();
    assert_eq!(infos.len(), 2);
    let g = &infos[0];
    assert_eq!(
        (
            &g["GroupId"],
            &g["ErrorCode"],
            &g["Name"],
            &g["Type"],
            &g["Owner_Account"],
            &g["ApplyJoinOption"],
            &g["MemberNum"]
        ),
        (
            &json!("g"),
            &json!(0),
            &json!("a group"),
            &json!("Public"),
            &json!("alice"),
            &json!("NeedPermission"),
            &json!(2)
        )
    );
    assert_eq!(
        g["MemberList"],
        json!([{"Member_Account": "alice", "Role": "Owner"}, {"Member_Account": "bob", "Role": "Admin"}])
    );
    assert_eq!(
        (&infos[1]["GroupId"], &infos[1]["ErrorCode"]),
        (&json!("nope"), &json!(10010))
    );
    let fifty: Vec<String> = (0..50).map(|i| format!("g{i}")).collect();
    tencent.ok(INFO, json!({"GroupIdList": fifty})).await;
    let fifty_one: Vec<String> = (0..51).map(|i| format!("g{i}")).collect();
    tencent
        .fails(INFO, json!({"GroupIdList": fifty_one}), 10004)
        .await;
    tencent.fails(INFO, json!({"GroupIdList": []}), 10004).await;
    tencent
        .ok(
            INFO,
            json!({"GroupIdList": ["g"], "ResponseFilter": {"GroupBaseInfoFilter": ["Name"]}}),
        )
        .await;

    // Members: paged, at most 100 a page, in join order with roles.
    let many: Vec<String> = (0..120).map(|i| format!("m{i:03}")).collect();
    for chunk in many.chunks(100) {
        tencent
            .import(&chunk.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        let list: Vec<Value> = chunk.iter().map(|m| json!({"Member_Account": m})).collect();
        tencent
            .ok(ADD, json!({"GroupId": "g", "MemberList": list}))
            .await;
    }
    let page = tencent.ok(MEMBER_INFO, json!({"GroupId": "g"})).await;
    assert_eq!(page["MemberNum"], 122);
    let list = page["MemberList"].as_array().unwrap();
    assert_eq!(list.len(), 100);
    assert_eq!(list[0], json!({"Member_Account": "alice", "Role": "Owner"}));
    assert_eq!(list[1], json!({"Member_Account": "bob", "Role": "Admin"}));
    assert_eq!(list[2], json!({"Member_Account": "m000", "Role": "Member"}));
    let rest = tencent
        .ok(
            MEMBER_INFO,
            json!({"GroupId": "g", "Limit": 100, "Offset": 100}),
        )
        .await;
    assert_eq!(rest["MemberList"].as_array().unwrap().len(), 22);
    assert_eq!(rest["MemberList"][21]["Member_Account"], "m119");
    tencent
        .fails(MEMBER_INFO, json!({"GroupId": "g", "Limit": 101}), 10004)
        .await;
    tencent
        .fails(MEMBER_INFO, json!({"GroupId": "nope"}), 10010)
        .await;
}

#[tokio::test]
async fn a_destroyed_group_is_gone() {
    let tencent = Tencent::start();
    tencent.group("g").await;
    tencent.ok(DESTROY, json!({"GroupId": "g"})).await;
    assert!(tencent.standin.group("g").is_none());
    assert_eq!(tencent.standin.destroyed_groups()[0].id, "g");
    let calls = [
        (DESTROY, json!({"GroupId": "g"})),
        (
            ADD,
            json!({"GroupId": "g", "MemberList": [{"Member_Account": "carol"}]}),
        ),
        (
            DELETE,
            json!({"GroupId": "g", "MemberToDel_Account": ["bob"]}),
        ),
        (MODIFY, json!({"GroupId": "g", "Name": "x"})),
        (
            CHANGE_OWNER,
            json!({"GroupId": "g", "NewOwner_Account": "bob"}),
        ),
        (
            MODIFY_MEMBER,
            json!({"GroupId": "g", "Member_Account": "bob", "Role": "Admin"}),
        ),
        (MEMBER_INFO, json!({"GroupId": "g"})),
        (NOTIFY, json!({"GroupId": "g", "Content": "x"})),
    ];
    for (command, body) in calls {
        tencent.fails(command, body, 10010).await;
    }
    let answer = tencent.ok(INFO, json!({"GroupIdList": ["g"]})).await;
    assert_eq!(answer["GroupInfo"][0]["ErrorCode"], 10010);
}

#[tokio::test]
async fn system_notifications_are_recorded_per_group() {
    let tencent = Tencent::start();
    tencent.group("g").await;
    tencent
        .ok(
            NOTIFY,
            json!({"GroupId": "g", "Content": "{\"event\":\"renamed\"}"}),
        )
        .await;
    tencent
        .ok(
            NOTIFY,
            json!({"GroupId": "g", "Content": "to bob", "ToMembers_Account": ["bob"]}),
        )
        .await;
    let sent = tencent.standin.notifications("g");
    assert_eq!(sent.len(), 2);
    assert_eq!(
        (sent[0].content.as_str(), sent[0].to.as_ref()),
        ("{\"event\":\"renamed\"}", None)
    );
    assert_eq!(sent[1].to.as_deref(), Some(&["bob".to_string()][..]));
    tencent.fails(NOTIFY, json!({"GroupId": "g"}), 10004).await;
    tencent
        .fails(NOTIFY, json!({"GroupId": "g", "Content": ""}), 10004)
        .await;
    assert!(tencent.standin.notifications("other").is_empty());
}

#[tokio::test]
async fn changes_behind_the_services_back_show_through_the_api() {
    let tencent = Tencent::start();
    tencent.group("g").await;
    tencent.standin.remove_member_directly("g", "bob");
    tencent.standin.add_member_directly("g", "zed", Role::Admin);
    tencent.standin.rename_group_directly("g", "renamed");
    let answer = tencent.ok(INFO, json!({"GroupIdList": ["g"]})).await;
    let info = &answer["GroupInfo"][0];
    assert_eq!(info["Name"], "renamed");
    assert_eq!(
        info["MemberList"],
        json!([{"Member_Account": "alice", "Role": "Owner"}, {"Member_Account": "zed", "Role": "Admin"}])
    );
    tencent.standin.destroy_group_directly("g");
    tencent
        .fails(MEMBER_INFO, json!({"GroupId": "g"}), 10010)
        .await;
}

/// Sends `limit` calls of `command` at once (all OK), then one more, which must be refused
/// with 60007 if all of them fell within one second. Tries again (after the window has
/// passed) when the machine was too slow for that, at most three times.
async fn one_over_the_limit(
    tencent: &Tencent,
    command: &str,
    limit: usize,
    body: impl Fn(String) -> Value,
) {
    for attempt in 0..3 {
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let start = Instant::now();
        join_all((0..limit).map(|i| tencent.ok(command, body(format!("a{attempt}-{i}"))))).await;
        let over = tencent
            .call(command, body(format!("a{attempt}-over")))
            .await;
        if start.elapsed() < Duration::from_millis(950) {
            assert_eq!(
                over["ErrorCode"],
                60007,
                "{command}, call {}: {over}",
                limit + 1
            );
            assert!(!tencent
                .standin
                .accounts()
                .contains(&format!("a{attempt}-over")));
            return;
        }
    }
    panic!("{command}: {limit} calls never fitted in one second");
}

#[tokio::test]
async fn the_rate_limit_answers_60007_over_it_and_never_under_it() {
    let tencent = Tencent::start();
    let multi = |id: String| json!({"AccountList": [{"UserID": id}]});
    let one = |id: String| json!({"UserID": id});
    // The documented defaults: 100 a second for multiaccount_import, 200 for the others.
    one_over_the_limit(&tencent, MULTI_IMPORT, 100, multi).await;
    one_over_the_limit(&tencent, IMPORT, 200, one).await;
    // Per command: one command over its limit leaves the others alone.
    tencent.ok(MULTI_IMPORT, multi("m-other".into())).await;
    join_all((0..10).map(|i| {
        tencent.ok(
            CREATE,
            json!({"Type": "Public", "Name": "g", "GroupId": format!("g{i}")}),
        )
    }))
    .await;
    // Set by the test.
    tencent.standin.set_rate_limit(10);
    one_over_the_limit(&tencent, IMPORT, 10, one).await;
    one_over_the_limit(&tencent, MULTI_IMPORT, 5, multi).await;
    tencent.standin.set_command_rate_limit(CREATE, 3);
    one_over_the_limit(
        &tencent,
        CREATE,
        3,
        |id| json!({"Type": "Public", "Name": "g", "GroupId": id}),
    )
    .await;
    // Paced under the limit, nothing is refused.
    tencent.standin.set_command_rate_limit(IMPORT, 20);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let before = tencent.standin.rate_limited_count();
    for i in 0..30 {
        tencent.ok(IMPORT, one(format!("paced-{i}"))).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(tencent.standin.rate_limited_count(), before);
    // Every refusal is counted, and none was applied.
    let log = tencent.standin.requests();
    let limited: Vec<_> = log.iter().filter(|r| r.error_code == Some(60007)).collect();
    assert!(limited.len() >= 5, "{limited:?}");
    assert_eq!(limited.len(), tencent.standin.rate_limited_count());
    assert!(limited.iter().all(|r| !r.applied && r.fault.is_none()));
    let counts = tencent.standin.call_counts();
    assert_eq!(
        counts[CREATE],
        log.iter().filter(|r| r.command == CREATE).count()
    );
}

#[tokio::test]
async fn each_fault_kind_reaches_the_client() {
    let tencent = Tencent::with_timeout(Duration::from_millis(300));
    tencent.standin.set_slow_delay(Duration::from_millis(1500));
    let import = |id: &str| {
        tencent
            .http
            .post(tencent.url(IMPORT))
            .body(json!({"UserID": id}).to_string())
            .send()
    };
    for (kind, code) in [
        (FaultKind::RestRateLimit, 60007),
        (FaultKind::GroupRateLimit, 10023),
        (FaultKind::Internal, 10002),
    ] {
        tencent.standin.inject_next(Fault::before(kind));
        let answer: Value = import("bob").await.unwrap().json().await.unwrap();
        check_shape(&answer);
        assert_eq!(answer["ErrorCode"], code, "{kind:?}");
    }
    for (kind, status) in [(FaultKind::Status500, 500), (FaultKind::Status502, 502)] {
        tencent.standin.inject_next(Fault::before(kind));
        let response = import("bob").await.unwrap();
        assert_eq!(response.status(), status);
    }
    tencent.standin.inject_next(Fault::before(FaultKind::Slow));
    let slow = import("bob").await;
    assert!(slow.as_ref().is_err_and(|e| e.is_timeout()), "{slow:?}");
    tencent.standin.inject_next(Fault::before(FaultKind::Drop));
    let error = import("bob")
        .await
        .expect_err("a dropped connection has no answer");
    assert!(!error.is_timeout(), "{error:?}");
    assert!(
        !tencent.standin.accounts().contains("bob"),
        "no fault before the change made it"
    );
    let log = tencent.standin.requests();
    let seen: Vec<_> = log.iter().map(|r| r.fault.map(|f| f.kind)).collect();
    let expected: Vec<_> = FaultKind::ALL.iter().map(|k| Some(*k)).collect();
    assert_eq!(seen, expected);
    assert_eq!(log[0].error_code, Some(60007));
    assert_eq!((log[3].status, log[3].error_code), (Some(500), None));
    assert_eq!(log[6].status, None);
    assert!(log.iter().all(|r| !r.applied && r.command == IMPORT));
}

#[tokio::test]
async fn a_change_whose_answer_is_lost_is_made_and_one_refused_is_not() {
    let tencent = Tencent::with_timeout(Duration::from_millis(300));
    tencent.standin.set_slow_delay(Duration::from_millis(1000));
    tencent.import(&["alice"]).await;
    let create = |id: String| {
        tencent
            .http
            .post(tencent.url(CREATE))
            .body(
                json!({"Type": "Public", "Name": "g", "GroupId": id, "Owner_Account": "alice"})
                    .to_string(),
            )
            .send()
    };
    let kinds = [
        FaultKind::Internal,
        FaultKind::Status500,
        FaultKind::Status502,
        FaultKind::Slow,
        FaultKind::Drop,
    ];
    for kind in kinds {
        tencent.standin.inject_next(Fault::after(kind));
        let lost = format!("lost-{kind:?}");
        let outcome = create(lost.clone()).await;
        if let Ok(response) = outcome {
            let text = response.text().await.unwrap_or_default();
            assert!(!text.contains("\"OK\""), "{kind:?}: {text}");
        }
        assert!(tencent.standin.group(&lost).is_some(), "{kind:?}: made");
        // The retry learns the create happened: 10025.
        tencent
            .fails(
                CREATE,
                json!({"Type": "Public", "Name": "g", "GroupId": lost, "Owner_Account": "alice"}),
                10025,
            )
            .await;
        tencent.standin.inject_next(Fault::before(kind));
        let refused = format!("refused-{kind:?}");
        let _ = create(refused.clone()).await;
        assert!(
            tencent.standin.group(&refused).is_none(),
            "{kind:?}: not made"
        );
    }
    let log = tencent.standin.requests();
    for request in log.iter().filter(|r| r.fault.is_some()) {
        let fault = request.fault.unwrap();
        assert_eq!(
            request.applied,
            fault.timing == FaultTiming::AfterChange,
            "{request:?}"
        );
    }
}

#[test]
#[should_panic(expected = "cannot come after the change")]
fn a_rate_limit_cannot_come_after_the_change() {
    let _ = Fault::after(FaultKind::RestRateLimit);
}

#[tokio::test]
async fn a_failure_rate_mixes_every_kind_of_fault() {
    let tencent = Tencent::with_timeout(Duration::from_secs(2));
    tencent.standin.set_slow_delay(Duration::from_millis(20));
    tencent.standin.set_failure_rate(1.0);
    for i in 0..120 {
        let _ = tencent
            .http
            .post(tencent.url(IMPORT))
            .body(json!({"UserID": format!("u{i}")}).to_string())
            .send()
            .await;
    }
    let log = tencent.standin.requests();
    let faults: Vec<Fault> = log.iter().filter_map(|r| r.fault).collect();
    assert_eq!(faults.len(), 120);
    for kind in FaultKind::ALL {
        assert!(faults.iter().any(|f| f.kind == kind), "{kind:?} never came");
    }
    for timing in [FaultTiming::BeforeChange, FaultTiming::AfterChange] {
        assert!(
            faults.iter().any(|f| f.timing == timing),
            "{timing:?} never came"
        );
    }
    assert!(faults
        .iter()
        .filter(|f| f.kind.refuses_only())
        .all(|f| f.timing == FaultTiming::BeforeChange));
    tencent.standin.set_fault_kinds(&[FaultKind::Internal]);
    let answer = tencent.call(IMPORT, json!({"UserID": "x"})).await;
    assert_eq!(answer["ErrorCode"], 10002);
    tencent.standin.clear_faults();
    tencent.ok(IMPORT, json!({"UserID": "y"})).await;
}

#[tokio::test]
async fn a_poisoned_group_fails_until_cleared() {
    let tencent = Tencent::start();
    tencent.group("bad").await;
    tencent.group("good").await;
    tencent.standin.fail_always_for_group("bad", 10007);
    tencent
        .fails(
            ADD,
            json!({"GroupId": "bad", "MemberList": [{"Member_Account": "carol"}]}),
            10007,
        )
        .await;
    tencent
        .fails(MODIFY, json!({"GroupId": "bad", "Name": "x"}), 10007)
        .await;
    tencent
        .fails(
            CREATE,
            json!({"Type": "Public", "Name": "x", "GroupId": "bad"}),
            10007,
        )
        .await;
    tencent
        .ok(
            ADD,
            json!({"GroupId": "good", "MemberList": [{"Member_Account": "carol"}]}),
        )
        .await;
    let answer = tencent
        .ok(INFO, json!({"GroupIdList": ["bad", "good"]}))
        .await;
    assert_eq!(answer["GroupInfo"][0]["ErrorCode"], 10007);
    assert_eq!(answer["GroupInfo"][1]["ErrorCode"], 0);
    assert!(!tencent
        .standin
        .group("bad")
        .unwrap()
        .members
        .contains_key("carol"));
    tencent.standin.set_failure_rate(1.0);
    tencent.standin.fail_always_only_for_group("bad", 10010);
    tencent
        .fails(MODIFY, json!({"GroupId": "bad", "Name": "x"}), 10010)
        .await;
    tencent
        .ok(MODIFY, json!({"GroupId": "good", "Name": "x"}))
        .await;
    tencent.standin.clear_faults();
    tencent
        .ok(MODIFY, json!({"GroupId": "bad", "Name": "y"}))
        .await;
    let log = tencent.standin.requests();
    let last = log.last().unwrap();
    assert_eq!(
        (
            last.command.as_str(),
            last.group_id.as_deref(),
            last.error_code
        ),
        (MODIFY, Some("bad"), Some(0))
    );
}
