//! Shared by the e2e tests. They talk to real services that `make test` starts
//! (scripts/test.sh): DynamoDB Local, the local server and the Lambda emulator, whose
//! addresses arrive in `IM_TEST_*` variables.
#![allow(dead_code)] // each test file uses a different part

pub mod openapi;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use im_shared::secret::Secret;
use im_shared::store::{Caller, DynamoStore};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::distr::{Alphanumeric, SampleString};

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests with `make test`, which starts the services they use")
    })
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A workspace binary (built by `make test` before the tests run).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join(name)
}

pub fn random(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// Every master key the suite uses starts with `mk-test-`, so that `make test` can
/// look for any of them in the services' logs afterwards.
pub fn test_key() -> String {
    format!("mk-test-{}", random(24))
}

/// Token secrets likewise start with `ts-test-`.
pub fn test_token_secret() -> String {
    format!("ts-test-{}", random(40))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An app registered in a table: its master key, and a token secret under its own kid.
#[derive(Clone)]
pub struct TestApp {
    pub app_id: String,
    pub master_key: String,
    pub kid: String,
    pub token_secret: String,
}

impl TestApp {
    pub async fn register(store: &DynamoStore, prefix: &str) -> Self {
        let app = Self {
            app_id: unique(prefix),
            master_key: test_key(),
            kid: unique("kid"),
            token_secret: test_token_secret(),
        };
        store
            .create_app(&app.app_id, &Secret::new(app.master_key.clone()))
            .await
            .unwrap();
        store
            .create_token_key(
                &app.kid,
                &app.app_id,
                &Secret::new(app.token_secret.clone()),
            )
            .await
            .unwrap();
        app
    }

    /// A token for `sub`, minted with the `jsonwebtoken` crate as an app's backend would.
    pub fn token(&self, sub: &str) -> String {
        self.token_with(serde_json::json!({"sub": sub, "exp": now_secs() + 600, "iat": now_secs()}))
    }

    pub fn admin_token(&self, sub: &str) -> String {
        self.token_with(serde_json::json!({"sub": sub, "exp": now_secs() + 600, "role": "admin"}))
    }

    pub fn token_with(&self, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(self.token_secret.as_bytes()),
        )
        .unwrap()
    }

    pub fn caller(&self, client_id: &str) -> Caller {
        Caller {
            app_id: self.app_id.clone(),
            client_id: client_id.to_owned(),
            app_admin: false,
        }
    }
}

pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}-{}", random(6).to_lowercase())
}

pub async fn ddb() -> Client {
    DynamoStore::local_client(&env("IM_TEST_DDB_ENDPOINT")).await
}

/// A new, empty table created from template.yaml's definition.
pub async fn fresh_store(prefix: &str) -> DynamoStore {
    let client = ddb().await;
    let name = unique(prefix);
    assert!(im_admin::table::ensure_table(&client, &name).await.unwrap());
    DynamoStore::new(client, name)
}

/// HMAC-SHA1 computed by Python's standard library: an implementation independent of
/// ours. Key and message go through stdin, not the command line.
pub fn python_hmac_sha1(key: &str, message: &str) -> String {
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
pub fn verify_signature_response(body: &serde_json::Value, key: &str) {
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
        // (nonce before timestamp, no action); `demo` is checked in history_format.rs.
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        ts.abs_diff(now) < 120,
        "timestamp {ts} is not now ({now}) in seconds"
    );
    assert_eq!(nonce.len(), 8);
    assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()));
}
