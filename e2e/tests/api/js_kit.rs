//! The JavaScript client kit (`clients/js/`) with the vendor's own SDK,
//! `leancloud-realtime` 4.3.1 (installed by `make tools` into .local/leancloud-realtime),
//! against the local server and a stand-in of the vendor's realtime server that checks
//! every signature (`clients/js/test/standin.js`). Node runs the kit's tests; this test
//! gives them a fresh app and its clients' tokens, and fails when Node or the SDK is
//! missing or any of them fails.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use im_e2e::http::Api;
use im_e2e::repo::repo_root;
use im_e2e::stack::test_key;
use im_shared::model::{Secret, TencentCloud, TencentSpec};
use serde_json::json;

const SDK_APP_ID: u64 = 1_400_000_000;

/// The clients the kit's tests sign in as: ASCII, CJK and ids outside the BMP.
const CLIENTS: [&str; 6] = ["alice", "李雷", "𠮷野", "ｹｲ", "bob", "mallory"];

#[tokio::test]
async fn the_kit_with_the_vendors_sdk() {
    let api = Api::local("js-kit").await;
    // Tencent settings for the UserSig route (UserSigs only: no mirroring to reach out).
    let mut spec = TencentSpec::new("https://adminapisgp.im.qcloud.com", SDK_APP_ID, "im-admin");
    spec.mirroring = false;
    let tencent_key = test_key();
    api.store
        .set_tencent(
            &api.app.app_id,
            &TencentCloud::new(spec).unwrap(),
            Some(&Secret::new(tencent_key.clone())),
        )
        .await
        .unwrap();
    let root = repo_root();
    let sdk = root.join(".local/leancloud-realtime/node_modules");
    assert!(
        sdk.join("leancloud-realtime/package.json").exists(),
        "{} has no leancloud-realtime: `make tools` installs it",
        sdk.display()
    );
    let mut tokens: serde_json::Map<String, serde_json::Value> = CLIENTS
        .iter()
        .map(|c| (c.to_string(), json!(api.app.token(c))))
        .collect();
    // The app's backend, which links a group to a conversation of the vendor's.
    tokens.insert("backend".into(), json!(api.app.admin_token("backend")));
    let mut child = Command::new("node")
        .arg(root.join("clients/js/test/kit.test.js"))
        .env("KIT_BASE_URL", &api.base)
        .env("KIT_APP_ID", &api.app.app_id)
        .env("KIT_MASTER_KEY", &api.app.master_key)
        .env("KIT_TOKENS", serde_json::Value::Object(tokens).to_string())
        .env("KIT_SDK_MODULES", &sdk)
        .env("KIT_TENCENT_SDK_APP_ID", SDK_APP_ID.to_string())
        .env("KIT_TENCENT_KEY", &tencent_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed to run the kit's tests");
    // Bounded: a hung SDK call fails the test instead of holding the suite.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(180) {
            child.kill().unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "the kit's tests failed: {stdout}\n{stderr}"
    );
    // node:test's summary: every test ran and passed, none skipped.
    let count = |name: &str| -> usize {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {name} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no '# {name}' line in {stdout}"))
    };
    assert_eq!(count("fail"), 0);
    assert_eq!(count("skipped"), 0);
    assert_eq!(count("todo"), 0);
    assert!(count("pass") >= 13, "{stdout}");
    for secret in [&api.app.master_key, &tencent_key] {
        assert!(!stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()));
    }
}
