//! The `im-admin` command, as an operator runs it, against DynamoDB Local.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use im_e2e::repo::bin;
use im_e2e::stack::{admin_command, ddb, test_key, test_token_secret, unique};
use im_shared::model::Secret;
use im_shared::model::TencentGroupType;
use im_shared::store::{DynamoStore, KeyStore};

fn admin(table: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = admin_command()
        .args(["--table", table])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("im-admin is built by make test");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// What `im-admin args` (with `stdin`) printed, whatever its outcome.
fn operator_text(table: &str, args: &[&str], stdin: &str) -> String {
    text(&admin(table, args, Some(stdin)))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An operator at the command line of one table: runs `im-admin`, checks that it
/// succeeded or failed as expected, and keeps everything it printed.
struct Operator {
    table: String,
    everything: String,
}

impl Operator {
    fn new(table: &str) -> Self {
        Self {
            table: table.to_owned(),
            everything: String::new(),
        }
    }

    /// Standard output of `im-admin args` (with `stdin`), which must succeed iff `ok`.
    fn run(&mut self, args: &[&str], stdin: Option<&str>, ok: bool) -> String {
        let out = admin(&self.table, args, stdin);
        assert_eq!(
            out.status.success(),
            ok,
            "im-admin {args:?}: {}",
            text(&out)
        );
        self.everything.push_str(&text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[tokio::test]
async fn operator_workflow_never_shows_a_key() {
    let table = unique("admin-cli");
    let (k1, k2) = (test_key(), test_key());
    let mut operator = Operator::new(&table);
    let mut run = |args: &[&str], stdin: Option<&str>, ok: bool| operator.run(args, stdin, ok);

    assert!(run(&["table", "create"], None, true).contains("created"));
    assert!(run(&["table", "create"], None, true).contains("already exists"));

    run(&["app", "add", "app-one"], Some(&format!("{k1}\n")), true);
    run(&["app", "add", "app-one"], Some(&k2), false); // exists
    run(&["app", "add", "bad:id"], Some(&k2), false);
    run(&["app", "add", "app-empty"], Some(""), false);
    run(&["app", "add", "app-two", "--key", &k2], None, false); // no such flag: never on argv

    let key_file = std::env::temp_dir().join(unique("key"));
    std::fs::write(&key_file, format!("{k2}\n")).unwrap();
    run(
        &[
            "app",
            "add",
            "app-two",
            "--key-file",
            key_file.to_str().unwrap(),
        ],
        None,
        true,
    );

    let store = DynamoStore::new(ddb().await, table.clone());
    assert_eq!(
        store.master_key("app-one").await.unwrap().map(|k| k.master),
        Some(Secret::new(k1.clone()))
    );
    assert_eq!(
        store.master_key("app-two").await.unwrap().map(|k| k.master),
        Some(Secret::new(k2.clone()))
    );

    assert_eq!(run(&["app", "list"], None, true), "app-one\napp-two\n");

    run(
        &[
            "app",
            "rotate",
            "app-one",
            "--key-file",
            key_file.to_str().unwrap(),
        ],
        None,
        true,
    );
    assert_eq!(
        store.master_key("app-one").await.unwrap().map(|k| k.master),
        Some(Secret::new(k2.clone()))
    );
    run(&["app", "rotate", "no-such-app"], Some(&k1), false);

    run(&["app", "remove", "app-two"], None, true);
    run(&["app", "remove", "app-two"], None, false);
    assert_eq!(run(&["app", "list"], None, true), "app-one\n");
    // A removed app's id is never registered again: its groups and links stay in the
    // table, and a new app of that id would inherit them.
    run(&["app", "add", "app-two"], Some(&k1), false);
    let printed = operator_text(&table, &["app", "add", "app-two"], &k1);
    assert!(printed.contains("was removed"), "{printed}");
    run(&["app", "rotate", "app-two"], Some(&k1), false);
    run(
        &[
            "app",
            "im-cloud",
            "set",
            "app-two",
            "--server",
            "https://im.example.com",
        ],
        None,
        false,
    );
    assert_eq!(store.master_key("app-two").await.unwrap(), None);
    std::fs::remove_file(key_file).unwrap();

    // Token secrets: add (for an existing app, at least 32 bytes), list, mint, retire.
    let ts = test_token_secret();
    run(
        &["token-key", "add", "k-1", "--app", "app-one"],
        Some(&ts),
        true,
    );
    run(
        &["token-key", "add", "k-2", "--app", "no-such-app"],
        Some(&ts),
        false,
    );
    run(
        &["token-key", "add", "k-3", "--app", "app-one"],
        Some("too-short"),
        false,
    );
    run(
        &["token-key", "add", "k-1", "--app", "app-one"],
        Some(&ts),
        false,
    ); // taken
    assert_eq!(
        run(&["token-key", "list"], None, true),
        "k-1\tapp-one\tactive\n"
    );
    let token = run(
        &["token", "mint", "--kid", "k-1", "--sub", "alice", "--admin"],
        None,
        true,
    );
    let key = im_shared::model::TokenKey {
        app_id: "app-one".into(),
        secret: Secret::new(ts.clone()),
    };
    let caller = im_shared::auth::verify_with_key(token.trim(), &key, 0, 64).unwrap();
    assert_eq!(
        (caller.client_id.as_str(), caller.app_admin),
        ("alice", true)
    );
    run(&["token-key", "retire", "k-1"], None, true);
    run(
        &["token", "mint", "--kid", "k-1", "--sub", "alice"],
        None,
        false,
    );
    assert_eq!(
        run(&["token-key", "list"], None, true),
        "k-1\tapp-one\tretired\n"
    );

    for secret in [&k1, &k2, &ts] {
        assert!(
            !operator.everything.contains(secret.as_str()),
            "a key or secret was printed"
        );
    }
    // The command needs a table name.
    let out = Command::new(bin("im-admin"))
        .args(["app", "list"])
        .env_remove("TABLE_NAME")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn im_cloud_settings_are_kept_with_the_app_and_never_show_the_key() {
    let table = unique("admin-imcloud");
    let key = test_key();
    let mut operator = Operator::new(&table);
    let mut run = |args: &[&str], stdin: Option<&str>, ok: bool| operator.run(args, stdin, ok);
    run(&["table", "create"], None, true);
    run(&["app", "add", "im-app"], Some(&key), true);
    let show = || ["app", "im-cloud", "show", "im-app"];

    assert!(run(&show(), None, true).contains("has no IM cloud settings"));
    // The first set needs the server; the defaults fill in the rest.
    run(&["app", "im-cloud", "set", "im-app"], None, false);
    let out = run(
        &[
            "app",
            "im-cloud",
            "set",
            "im-app",
            "--server",
            "https://abc.example-shared.com/",
        ],
        None,
        true,
    );
    assert!(
        out.contains("server: https://abc.example-shared.com\n"),
        "{out}"
    );
    assert_eq!(
        run(&show(), None, true),
        "leancloud:\n  server: https://abc.example-shared.com\n  mirroring: on\n  \
         system messages: off\n  system client: -\n  on delete: keep\n  \
         max messages per minute: 1800\ntencent:\n  not set\n"
    );
    // Later sets change only what they name; rules are checked before anything is written.
    run(
        &[
            "app",
            "im-cloud",
            "set",
            "im-app",
            "--system-messages",
            "on",
        ],
        None,
        false,
    );
    for bad_server in [
        "http://abc.example-shared.com",
        "https://abc.example-shared.com/1.2/rtm",
        "ftp://abc.example-shared.com",
    ] {
        run(
            &["app", "im-cloud", "set", "im-app", "--server", bad_server],
            None,
            false,
        );
    }
    run(
        &[
            "app",
            "im-cloud",
            "set",
            "im-app",
            "--system-messages",
            "on",
            "--system-client",
            "system",
            "--on-delete",
            "delete",
            "--mirroring",
            "off",
            "--max-messages-per-minute",
            "120",
        ],
        None,
        true,
    );
    assert_eq!(
        run(&show(), None, true),
        "leancloud:\n  server: https://abc.example-shared.com\n  mirroring: off\n  \
         system messages: on\n  system client: system\n  on delete: delete\n  \
         max messages per minute: 120\ntencent:\n  not set\n"
    );
    // The vendor sells at most 9,000 a minute; Tencent's pace is its own setting.
    run(
        &[
            "app",
            "im-cloud",
            "set",
            "im-app",
            "--max-messages-per-minute",
            "9001",
        ],
        None,
        false,
    );
    run(
        &[
            "app",
            "im-cloud",
            "set",
            "im-app",
            "--provider",
            "tencent",
            "--max-messages-per-minute",
            "5",
        ],
        None,
        false,
    );
    // Local runs and tests point it at a loopback stand-in.
    run(
        &[
            "app",
            "im-cloud",
            "set",
            "im-app",
            "--server",
            "http://127.0.0.1:9000",
        ],
        None,
        true,
    );
    assert!(run(&show(), None, true).starts_with("leancloud:\n  server: http://127.0.0.1:9000\n"));
    // Through the store as well, and for unknown apps.
    let store = DynamoStore::new(ddb().await, table.clone());
    let settings = store.im_cloud("im-app").await.unwrap().unwrap();
    assert_eq!(settings.system_client(), Some("system"));
    assert!(matches!(
        store.im_cloud("nope").await,
        Err(im_shared::store::StoreError::NotFound)
    ));
    run(&["app", "im-cloud", "show", "nope"], None, false);
    run(
        &[
            "app",
            "im-cloud",
            "set",
            "nope",
            "--server",
            "https://x.example.com",
        ],
        None,
        false,
    );
    // The master key (the credential) is never printed.
    assert!(
        !operator.everything.contains(&key),
        "{}",
        operator.everything
    );
    assert!(
        !operator.everything.contains("mk-test-"),
        "{}",
        operator.everything
    );
}

#[tokio::test]
async fn tencent_settings_sit_beside_leancloud_s_and_never_show_their_key() {
    let table = unique("admin-tencent");
    let (master, tencent_key, new_key) = (test_key(), test_key(), test_key());
    let mut operator = Operator::new(&table);
    let mut run = |args: &[&str], stdin: Option<&str>, ok: bool| operator.run(args, stdin, ok);
    run(&["table", "create"], None, true);
    run(&["app", "add", "tc-app"], Some(&master), true);
    fn set<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["app", "im-cloud", "set", "tc-app", "--provider", "tencent"];
        args.extend_from_slice(extra);
        args
    }
    let first: &[&str] = &[
        "--server",
        "https://adminapisgp.im.qcloud.com",
        "--sdk-app-id",
        "1400000123",
        "--admin-identifier",
        "im-admin",
    ];
    // The first set needs the server, the app id, the admin and the key.
    let out = operator_text(&table, &set(&first[..4]), "");
    assert!(
        out.contains("--admin-identifier") && out.contains("--key-file"),
        "{out}"
    );
    run(&set(first), Some(&tencent_key), false);
    // Rules are checked before anything is written (or the key read).
    for bad in [
        &["--server", "http://adminapisgp.im.qcloud.com"][..],
        &["--sdk-app-id", "0"],
        &["--admin-identifier", "李"],
        &["--max-calls-per-second", "201"],
        &["--usersig-expire", "60"],
        &["--group-id-prefix", "@TGS#x"],
        &["--group-type", "AVChatRoom"],
        &["--system-client", "system"],
    ] {
        let mut args = set(first);
        args.extend_from_slice(&["--key-file", "-"]);
        args.extend_from_slice(bad);
        run(&args, Some(&tencent_key), false);
    }
    // A LeanCloud set does not take Tencent's options.
    let out = operator_text(
        &table,
        &[
            "app",
            "im-cloud",
            "set",
            "tc-app",
            "--server",
            "https://x.example.com",
            "--sdk-app-id",
            "1",
        ],
        "",
    );
    assert!(out.contains("--provider tencent"), "{out}");
    let store = DynamoStore::new(ddb().await, table.clone());
    assert_eq!(store.tencent_cloud("tc-app").await.unwrap(), None);

    // The key from stdin, with one trailing newline trimmed.
    let mut args = set(first);
    args.extend_from_slice(&["--key-file", "-", "--group-id-prefix", "g-"]);
    let out = run(&args, Some(&format!("{tencent_key}\n")), true);
    assert!(out.contains("sdk app id: 1400000123\n"), "{out}");
    let stored = store.tencent_key("tc-app").await.unwrap().unwrap();
    assert_eq!(stored.key, Secret::new(tencent_key.clone()));
    assert_eq!(stored.settings.group_id(42), "g-42");

    // Later sets change what they name and keep the key; LeanCloud's settings beside.
    run(
        &set(&[
            "--group-type",
            "Private",
            "--mirroring",
            "off",
            "--system-messages",
            "on",
            "--on-delete",
            "delete",
            "--max-calls-per-second",
            "50",
            "--usersig-expire",
            "3600",
        ]),
        None,
        true,
    );
    run(
        &[
            "app",
            "im-cloud",
            "set",
            "tc-app",
            "--server",
            "https://abc.example-shared.com",
        ],
        None,
        true,
    );
    assert_eq!(
        run(&["app", "im-cloud", "show", "tc-app"], None, true),
        "leancloud:\n  server: https://abc.example-shared.com\n  mirroring: on\n  \
         system messages: off\n  system client: -\n  on delete: keep\n  \
         max messages per minute: 1800\ntencent:\n  \
         server: https://adminapisgp.im.qcloud.com\n  sdk app id: 1400000123\n  \
         admin identifier: im-admin\n  group type: Private\n  group id prefix: g-\n  \
         mirroring: off\n  system messages: on\n  on delete: delete\n  \
         max calls per second: 50\n  client creates: off\n  usersig expire: 3600 s\n"
    );
    let stored = store.tencent_key("tc-app").await.unwrap().unwrap();
    assert_eq!(stored.key, Secret::new(tencent_key.clone()));
    assert_eq!(stored.settings.group_type(), TencentGroupType::Private);
    // A new key from a file replaces it.
    let dir = std::env::temp_dir().join(unique("tc-key"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("key");
    std::fs::write(&file, &new_key).unwrap();
    run(&set(&["--key-file", file.to_str().unwrap()]), None, true);
    std::fs::remove_dir_all(&dir).unwrap();
    let stored = store.tencent_key("tc-app").await.unwrap().unwrap();
    assert_eq!(stored.key, Secret::new(new_key.clone()));
    assert_eq!(stored.callback_token, None);

    // The callback token (from stdin) and the client-creates setting; the key is kept.
    let callback_token = format!("cb-{}", unique("token"));
    let out = run(
        &set(&["--callback-token-file", "-", "--client-creates", "on"]),
        Some(&format!("{callback_token}\n")),
        true,
    );
    assert!(out.contains("client creates: on\n"), "{out}");
    let stored = store.tencent_key("tc-app").await.unwrap().unwrap();
    assert_eq!(
        stored.callback_token,
        Some(Secret::new(callback_token.clone()))
    );
    assert_eq!(stored.key, Secret::new(new_key.clone()));
    assert!(stored.settings.client_creates());
    // Both from standard input cannot be told apart: refused, nothing changed.
    run(
        &set(&["--key-file", "-", "--callback-token-file", "-"]),
        Some("x\n"),
        false,
    );
    // A LeanCloud set does not take it.
    run(
        &[
            "app",
            "im-cloud",
            "set",
            "tc-app",
            "--callback-token-file",
            "-",
        ],
        Some("x\n"),
        false,
    );
    let out = run(&["app", "im-cloud", "show", "tc-app"], None, true);
    assert!(out.contains("client creates: on"), "{out}");
    assert!(!out.contains(&callback_token), "{out}");

    // Unknown apps; a removed app keeps no Tencent key.
    run(&["app", "im-cloud", "show", "nope"], None, false);
    let mut args = vec!["app", "im-cloud", "set", "nope", "--provider", "tencent"];
    args.extend_from_slice(first);
    args.extend_from_slice(&["--key-file", "-"]);
    run(&args, Some(&tencent_key), false);
    run(&["app", "remove", "tc-app"], None, true);
    assert_eq!(store.tencent_key("tc-app").await.unwrap(), None);

    // No key was ever printed.
    for key in [&master, &tencent_key, &new_key, &callback_token] {
        assert!(
            !operator.everything.contains(key.as_str()),
            "{}",
            operator.everything
        );
    }
}
