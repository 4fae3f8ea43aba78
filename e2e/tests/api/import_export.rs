//! `im-admin import leancloud|groups` and `im-admin export`, run as an operator runs them,
//! against DynamoDB Local: the fixture exports of `e2e/fixtures/leancloud/` (written from
//! the vendor's documented shapes, messy cases included), the console's `.tar.gz` built
//! from them, conversations too large for one transaction, a crash half-way, re-runs,
//! and the round trip of the open format.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use aws_sdk_dynamodb::types::AttributeValue;
use im_e2e::im_cloud::{Fault, FaultKind, ImCloudStandIn};
use im_e2e::repo::{read_json, repo_root};
use im_e2e::stack::{admin_command, ddb, test_key, unique};
use im_shared::model::{Caller, ConversationClaim, GroupSpec, GroupStatus, MemberList};
use im_shared::store::dynamo::{ImportedGroup, Written};
use im_shared::store::{ConversationStore, DynamoStore, GroupStore, MemberStore, StoreError};
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    repo_root()
        .join("e2e/fixtures/leancloud")
        .join(name)
        .display()
        .to_string()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}", unique("im-import")))
}

fn admin(table: &str, args: &[&str]) -> Output {
    admin_command()
        .args(["--table", table])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("im-admin is built")
}

fn printed(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A new table with one app in it, both made through `im-admin`.
async fn table_with_app(prefix: &str, app: &str) -> (String, DynamoStore) {
    let (table, store, _) = table_with_app_key(prefix, app).await;
    (table, store)
}

/// [`table_with_app`], and the app's master key.
async fn table_with_app_key(prefix: &str, app: &str) -> (String, DynamoStore, String) {
    let key = test_key();
    let table = unique(prefix);
    assert!(admin(&table, &["table", "create"]).status.success());
    let mut child = admin_command()
        .args(["--table", &table, "app", "add", app])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    (table.clone(), DynamoStore::new(ddb().await, table), key)
}

/// Runs an import; answers whether it succeeded, what it printed, and its report.
fn import(table: &str, args: &[&str]) -> (bool, String, Vec<Value>) {
    let report = temp("report");
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    all.extend(["--report", report.to_str().unwrap()]);
    let out = admin(table, &all);
    let lines = std::fs::read_to_string(&report)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.success(), printed(&out), lines)
}

/// The report's lines for `conversation` (a duplicate has two).
fn about<'a>(report: &'a [Value], conversation: &str) -> Vec<&'a Value> {
    report
        .iter()
        .filter(|l| l["conversation_id"] == conversation)
        .collect()
}

fn one<'a>(report: &'a [Value], conversation: &str) -> &'a Value {
    let lines = about(report, conversation);
    assert_eq!(lines.len(), 1, "{conversation}: {report:#?}");
    lines[0]
}

fn count(report: &[Value], outcome: &str) -> usize {
    report.iter().filter(|l| l["outcome"] == outcome).count()
}

fn backend(app: &str) -> Caller {
    Caller {
        app_id: app.into(),
        client_id: "backend".into(),
        app_admin: true,
    }
}

fn conv(n: &str) -> String {
    format!("5f0000000000000000000{n}")
}

/// One `_Conversation` record with `members` members `u0000`... and no `attr.group_id`.
fn big_record(id: &str, members: usize) -> String {
    let m: Vec<String> = (0..members).map(|i| format!("u{i:04}")).collect();
    json!({"objectId": id, "name": format!("{members} members"), "m": m, "c": "u0007",
        "attr": {"type": "group"}, "createdAt": "2024-01-01T00:00:00.000Z"})
    .to_string()
}

#[tokio::test]
async fn an_export_becomes_groups_once_and_whole_and_every_other_record_says_why() {
    let app = unique("lc");
    let (table, store) = table_with_app("import-lc", &app).await;
    // A group made through the routes first: id 1 is issued, and the export's record
    // that wants it gets a new id.
    let spec = GroupSpec {
        name: "made here".into(),
        members: MemberList::from_ids("m", ["amy"], 10, 64).unwrap(),
        max_members: 500,
        ..GroupSpec::default()
    };
    let made = store
        .create_group(&backend(&app), &spec, None)
        .await
        .unwrap();
    assert_eq!(made.group.group_id, 1);
    let big = temp("big.jsonl");
    std::fs::write(
        &big,
        format!(
            "{}\n{}\n",
            big_record(&conv("d01"), 2000),
            big_record(&conv("d02"), 10_000)
        ),
    )
    .unwrap();
    let files = [
        "--file",
        &fixture("conversations.jsonl"),
        "--file",
        &fixture("results.json"),
        "--file",
        &fixture("array.json"),
        "--file",
        big.to_str().unwrap(),
    ];
    let mut args = vec!["leancloud", "--app", &app];
    args.extend(files);

    // A dry run reads and reports everything, and writes nothing.
    let mut dry = args.clone();
    dry.push("--dry-run");
    let (ok, text, report) = import(&table, &dry);
    assert!(!ok, "records are refused: exit 1\n{text}");
    assert!(text.contains("dry run: nothing was written"), "{text}");
    assert_eq!(count(&report, "imported"), 8, "{report:#?}");
    assert_eq!(
        store.conversation_group(&app, &conv("a01")).await.unwrap(),
        None
    );
    assert_eq!(store.group_meta(41).await.unwrap(), None);

    let (ok, text, report) = import(&table, &args);
    assert!(!ok, "{text}");
    assert!(text.contains("refused: see the report"), "{text}");
    // The summary table.
    for row in [
        "imported           8",
        "skipped            5",
        "refused            9",
    ] {
        assert!(text.contains(row), "{row}:\n{text}");
    }
    let outcome = |c: &str| one(&report, c)["outcome"].as_str().unwrap().to_owned();
    // The first of a duplicated objectId is the one imported (the second is refused).
    let group_of = |c: &str| about(&report, c)[0]["group_id"].as_u64().unwrap();
    // Kept ids, the counter's one refused, and new ids above every kept one.
    assert_eq!(group_of(&conv("a01")), 41);
    assert_eq!(group_of(&conv("a02")), 42);
    assert_eq!(group_of(&conv("b01")), 43);
    assert_eq!(group_of(&conv("c01")), 44);
    assert_eq!(group_of(&conv("a16")), 45);
    let fresh: Vec<u64> = [conv("a03"), conv("a04"), conv("d01")]
        .iter()
        .map(|c| group_of(c))
        .collect();
    assert!(fresh.iter().all(|id| *id > 45), "{fresh:?}");
    let taken = one(&report, &conv("a04"));
    assert!(
        taken["notes"][0]
            .as_str()
            .unwrap()
            .contains("attr.group_id 1"),
        "{taken}"
    );
    // The owner rule, said in the report.
    let left = one(&report, &conv("a02"));
    assert!(left["notes"][0]
        .as_str()
        .unwrap()
        .contains("creator gone is no longer a member"));
    let typed = one(&report, &conv("a16"));
    assert!(
        typed["notes"].to_string().contains("created_at_as_date"),
        "{typed}"
    );
    for (c, why) in [
        ("5dee02017c4cc935c85c93de".to_owned(), "unique"),
        (conv("a06"), "chat room"),
        (conv("a07"), "system"),
        (conv("a08"), "not a group by the --groups rule"),
        (conv("c02"), "chat room"),
    ] {
        assert_eq!(outcome(&c), "skipped");
        assert!(
            one(&report, &c)["why"].as_str().unwrap().contains(why),
            "{c}"
        );
    }
    let refused: Vec<(&str, &str)> = report
        .iter()
        .filter(|l| l["outcome"] == "refused")
        .map(|l| (l["source"].as_str().unwrap(), l["why"].as_str().unwrap()))
        .collect();
    let jsonl = fixture("conversations.jsonl");
    for (line, why) in [
        (9, "line 9 is not JSON"),
        (10, "no objectId"),
        (11, "must not contain ':'"),
        (12, "longer than 64 characters"),
        (13, "must not contain ':'"),
        (14, "name is longer than 128"),
        (15, "appeared before, at"),
        (17, "line 17 is cut short"),
    ] {
        let at = format!("{jsonl}:{line}");
        assert!(
            refused.iter().any(|(s, w)| *s == at && w.contains(why)),
            "{at} {why}: {refused:#?}"
        );
    }
    assert!(refused.iter().any(|(_, w)| w.contains("10000 members")));
    // Refused: nothing of it written (the 10,000-member conversation above all).
    assert_eq!(
        store.conversation_group(&app, &conv("d02")).await.unwrap(),
        None
    );

    // What the groups are, through the store's readers.
    let crew = store.group_for(&backend(&app), 41).await.unwrap();
    assert_eq!(
        (crew.group_name.as_str(), crew.owner.as_str()),
        ("Crew", "amy")
    );
    assert_eq!(crew.created_at, "2021-03-04T05:06:07.890Z");
    assert_eq!(store.group_members(41).await.unwrap(), ["amy", "bob", "cy"]);
    assert_eq!(
        store.conversation_group(&app, &conv("a01")).await.unwrap(),
        Some(ConversationClaim::Group(41))
    );
    assert_eq!(store.group_meta(42).await.unwrap().unwrap().owner, "zed");
    let rest = store.group_meta(43).await.unwrap().unwrap();
    assert!(rest.live && rest.member_count == 150 && rest.owner == "m150");
    assert_eq!(store.group_members(43).await.unwrap().len(), 150);
    let d01 = group_of(&conv("d01"));
    let huge = store.group_meta(d01).await.unwrap().unwrap();
    assert_eq!(
        (huge.member_count, huge.max_members, huge.owner.as_str()),
        (2000, 2000, "u0007")
    );
    assert_eq!(store.group_members(d01).await.unwrap().len(), 2000);
    let page = store
        .client_groups(&backend(&app), "u1999", 10, None)
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|g| g.group_id).collect::<Vec<_>>(),
        [d01]
    );
    // The counter ends above every id used.
    assert!(store.new_group_id().await.unwrap() > *fresh.iter().max().unwrap());

    // Again over the same export: nothing changes, and the report says so.
    let (ok, text, again) = import(&table, &args);
    assert!(!ok);
    assert_eq!(count(&again, "imported"), 0, "{text}");
    assert_eq!(count(&again, "unchanged"), 8, "{again:#?}");
    assert_eq!(count(&again, "refused"), 9);
    assert_eq!(store.group_meta(41).await.unwrap().unwrap().version, 1);

    // A newer export: renamed, one member gone, one new; and one conversation that the
    // rule `named` makes a group. Written through the version-conditioned writes.
    let newer = temp("newer.jsonl");
    std::fs::write(
        &newer,
        [
            json!({"objectId": conv("a01"), "name": "Crew, renamed", "m": ["amy", "bob", "dan"], "c": "amy", "attr": {"type": "group", "group_id": 41}}),
            json!({"objectId": conv("a08"), "name": "Named, no attr", "m": ["amy", "bob"], "c": "amy"}),
        ]
        .map(|v| v.to_string())
        .join("\n"),
    )
    .unwrap();
    let (ok, text, newer_report) = import(
        &table,
        &[
            "leancloud",
            "--app",
            &app,
            "--groups",
            "named",
            "--file",
            newer.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    assert_eq!(one(&newer_report, &conv("a01"))["outcome"], "updated");
    assert_eq!(about(&again, &conv("a01"))[0]["outcome"], "unchanged");
    assert_eq!(one(&newer_report, &conv("a08"))["outcome"], "imported");
    let crew = store.group_meta(41).await.unwrap().unwrap();
    assert_eq!(
        (crew.group_name.as_str(), crew.version, crew.member_count),
        ("Crew, renamed", 2, 3)
    );
    assert_eq!(
        store.group_members(41).await.unwrap(),
        ["amy", "bob", "dan"]
    );
    // An add through the store's route path still counts right after the import's writes.
    store
        .add_members(
            &backend(&app),
            41,
            &MemberList::from_ids("m", ["eve"], 10, 64).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(store.group_meta(41).await.unwrap().unwrap().member_count, 4);
    assert!(text.contains("refused            0"), "{text}");

    // Bad input to the command itself: a clear message and exit 1.
    for (bad, says) in [
        (
            vec!["leancloud", "--app", "no-such-app", "--file", &jsonl],
            "no app no-such-app",
        ),
        (
            vec![
                "leancloud",
                "--app",
                &app,
                "--groups",
                "every",
                "--file",
                &jsonl,
            ],
            "invalid value",
        ),
    ] {
        let (ok, text, _) = import(&table, &bad);
        assert!(!ok && text.contains(says), "{bad:?}: {text}");
    }
}

/// The items a crash leaves after the first two of a large group's three steps (the
/// group `importing`, its link marked, some members written): what `store/dynamo/import.rs`
/// writes, written here directly.
async fn half_imported(
    table: &str,
    app: &str,
    group_id: u64,
    conversation: &str,
    members: &[String],
) {
    let client = ddb().await;
    let s = |v: &str| AttributeValue::S(v.into());
    let n = |v: u64| AttributeValue::N(v.to_string());
    let put = |item: Vec<(&str, AttributeValue)>| {
        client
            .put_item()
            .table_name(table)
            .set_item(Some(
                item.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ))
            .send()
    };
    put(vec![
        ("pk", s(&format!("GROUP#{group_id}"))),
        ("sk", s("META")),
        ("group_id", n(group_id)),
        ("app_id", s(app)),
        ("group_name", s("half")),
        ("owner", s(&members[0])),
        ("status", s("importing")),
        ("member_count", n(members.len() as u64)),
        ("max_members", n(500)),
        ("places_left", n(500 - members.len() as u64)),
        ("version", n(1)),
        ("conversation_id", s(conversation)),
        ("created_at", s("2024-01-01T00:00:00Z")),
        ("updated_at", s("2024-01-01T00:00:00Z")),
    ])
    .await
    .unwrap();
    put(vec![
        ("pk", s(&format!("CONV#{app}:{conversation}"))),
        ("sk", s("CONV")),
        ("importing", n(group_id)),
    ])
    .await
    .unwrap();
    for m in members {
        put(vec![
            ("pk", s(&format!("GROUP#{group_id}"))),
            ("sk", s(&format!("MEMBER#{m}"))),
            ("client_id", s(m)),
            ("group_id", n(group_id)),
            ("joined_at", s("2024-01-01T00:00:00Z")),
            ("gsi1pk", s(&format!("CLIENT#{app}:{m}"))),
            ("gsi1sk", s(&format!("GROUP#{group_id:020}"))),
            ("via", s("import")),
        ])
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_crash_half_way_shows_nothing_and_a_re_run_finishes_it() {
    let app = unique("crash");
    let (table, store) = table_with_app("import-crash", &app).await;
    let conversation = conv("e01");
    // 40 members written of the 150 the export lists, and one that it does not list.
    let mut written: Vec<String> = (0..40).map(|i| format!("u{i:04}")).collect();
    written.push("stray".into());
    half_imported(&table, &app, 900, &conversation, &written).await;
    // No reader sees it: not the group reads, the signature rules, the member listing.
    assert!(matches!(
        store.group_for(&backend(&app), 900).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.conversation_group(&app, &conversation).await.unwrap(),
        None
    );
    assert!(!matches!(
        store.standing(&app, 900, "u0001", &[]).await.unwrap(),
        GroupStatus::Live(_)
    ));
    let page = store
        .client_groups(&backend(&app), "u0001", 10, None)
        .await
        .unwrap();
    assert!(page.items.is_empty());
    // No route may act on it either.
    let gone = store
        .add_members(
            &backend(&app),
            900,
            &MemberList::from_ids("m", ["x"], 1, 64).unwrap(),
        )
        .await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");

    let file = temp("crash.jsonl");
    std::fs::write(&file, big_record(&conversation, 150)).unwrap();
    let (ok, text, report) = import(
        &table,
        &["leancloud", "--app", &app, "--file", file.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    let line = one(&report, &conversation);
    assert_eq!(
        (line["outcome"].as_str(), line["group_id"].as_u64()),
        (Some("imported"), Some(900))
    );
    assert!(line["notes"]
        .to_string()
        .contains("finished an import that had stopped"));
    let meta = store.group_for(&backend(&app), 900).await.unwrap();
    assert_eq!(
        (meta.member_count, meta.group_name.as_str()),
        (150, "150 members")
    );
    let members = store.group_members(900).await.unwrap();
    assert_eq!(members.len(), 150);
    assert!(!members.contains(&"stray".to_owned()));
    assert_eq!(
        store.conversation_group(&app, &conversation).await.unwrap(),
        Some(ConversationClaim::Group(900))
    );
}

fn export(table: &str, app: &str) -> Vec<u8> {
    let out = temp("export.jsonl");
    let o = admin(
        table,
        &["export", "--app", app, "--out", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", printed(&o));
    std::fs::read(out).unwrap()
}

#[tokio::test]
async fn the_export_keeps_to_its_schema_and_round_trips_byte_for_byte() {
    let app = unique("rt");
    let (table, store) = table_with_app("export-a", &app).await;
    let (ok, text, _) = import(
        &table,
        &[
            "leancloud",
            "--app",
            &app,
            "--file",
            &fixture("results.json"),
            "--file",
            &fixture("array.json"),
        ],
    );
    assert!(ok, "{text}");
    // A group made through the routes, with admins and every optional field.
    let spec = GroupSpec {
        name: "routes".into(),
        members: MemberList::from_ids("m", ["bob", "cy"], 10, 64).unwrap(),
        avatar_url: Some("https://example.com/a.png".into()),
        description: Some("made through the API".into()),
        max_members: 50,
        ..GroupSpec::default()
    };
    let owner = Caller {
        app_id: app.clone(),
        client_id: "amy".into(),
        app_admin: false,
    };
    let made = store
        .create_group(&owner, &spec, None)
        .await
        .unwrap()
        .group
        .group_id;
    store
        .set_admins(
            &owner,
            made,
            &MemberList::from_ids("m", ["cy"], 1, 64).unwrap(),
            Some(5),
        )
        .await
        .unwrap();
    let first = export(&table, &app);
    let text = String::from_utf8(first.clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let schema = read_json(&repo_root().join("docs/export.schema.json"));
    let validator = jsonschema::validator_for(&schema).unwrap();
    for line in &lines {
        let errors: Vec<String> = validator.iter_errors(line).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
    }
    // The schema is no rubber stamp.
    for bad in [json!({}), json!({"schema_version": 2}), {
        let mut l = lines[0].clone();
        l["members"] = json!(["a:b"]);
        l
    }] {
        assert!(!validator.is_valid(&bad), "{bad}");
    }
    let routes = lines.iter().find(|l| l["group_id"] == made).unwrap();
    assert_eq!(routes["admins"], json!(["cy"]));
    assert_eq!(routes["conversations"], json!({}));
    let rest = lines.iter().find(|l| l["group_id"] == 43).unwrap();
    assert_eq!(rest["conversations"], json!({"leancloud": conv("b01")}));

    // Into a fresh table, and out again: the same bytes.
    let (fresh, fresh_store) = table_with_app("export-b", &app).await;
    let file = temp("first.jsonl");
    std::fs::write(&file, &first).unwrap();
    let groups = [
        "groups",
        "--app",
        app.as_str(),
        "--file",
        file.to_str().unwrap(),
    ];
    let (ok, text, report) = import(&fresh, &groups);
    assert!(ok, "{text}");
    assert_eq!(count(&report, "imported"), 3);
    assert_eq!(export(&fresh, &app), first);
    assert_eq!(
        fresh_store
            .conversation_group(&app, &conv("b01"))
            .await
            .unwrap(),
        Some(ConversationClaim::Group(43))
    );
    assert!(fresh_store.new_group_id().await.unwrap() > made.max(44));
    let (ok, _, report) = import(&fresh, &groups);
    assert!(ok);
    assert_eq!(count(&report, "unchanged"), 3);

    // Lines that break a rule are refused, with their line numbers; the rest go in.
    let broken = temp("broken.jsonl");
    let mut other = lines[0].clone();
    other["group_id"] = json!(7000);
    other["conversations"] = json!({});
    let mut bad_owner = other.clone();
    bad_owner["group_id"] = json!(7001);
    bad_owner["owner"] = json!("nobody");
    std::fs::write(
        &broken,
        format!("{other}\nnot json\n{bad_owner}\n{}\n", lines[0]),
    )
    .unwrap();
    let (ok, text, report) = import(
        &fresh,
        &["groups", "--app", &app, "--file", broken.to_str().unwrap()],
    );
    assert!(!ok, "{text}");
    let outcomes: Vec<&str> = report
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["imported", "refused", "refused", "unchanged"]);
    assert!(report[1]["source"].as_str().unwrap().ends_with(":2"));
    assert!(report[2]["why"]
        .as_str()
        .unwrap()
        .contains("owner is not among"));
}

/// A `.tar.gz` holding `files` (name, bytes), as the console delivers an export.
fn tar_gz(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut archive = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    archive.into_inner().unwrap().finish().unwrap()
}

#[tokio::test]
async fn the_consoles_tar_gz_reads_as_its_files_do_and_a_cut_one_stops_only_itself() {
    let app = unique("tar");
    let (table, _) = table_with_app("import-tar", &app).await;
    let read = |name: &str| std::fs::read(fixture(name)).unwrap();
    let archive = temp("export.tar.gz");
    std::fs::write(
        &archive,
        tar_gz(&[
            ("export/_Conversation.0.jsonl", read("conversations.jsonl")),
            ("export/_Conversation.1.json", read("array.json")),
            ("export/_Conversation.2.json", read("results.json")),
            // Another class of the same export: not read, since the class's files are named.
            ("export/_User.0.jsonl", b"{\"objectId\":\"u1\",\"m\":[\"x\"],\"attr\":{\"type\":\"group\"},\"name\":\"x\"}\n".to_vec()),
        ]),
    )
    .unwrap();
    let outcomes = |report: &[Value]| -> BTreeMap<String, Vec<String>> {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in report {
            by.entry(l["conversation_id"].as_str().unwrap_or("-").to_owned())
                .or_default()
                .push(l["outcome"].as_str().unwrap().to_owned());
        }
        by
    };
    let (_, _, from_files) = import(
        &table,
        &[
            "leancloud",
            "--app",
            &app,
            "--dry-run",
            "--file",
            &fixture("conversations.jsonl"),
            "--file",
            &fixture("array.json"),
            "--file",
            &fixture("results.json"),
        ],
    );
    let (ok, text, from_tar) = import(
        &table,
        &[
            "leancloud",
            "--app",
            &app,
            "--dry-run",
            "--file",
            archive.to_str().unwrap(),
        ],
    );
    assert!(!ok, "{text}");
    assert_eq!(outcomes(&from_tar), outcomes(&from_files));
    assert!(from_tar[0]["source"]
        .as_str()
        .unwrap()
        .contains("!export/_Conversation.0.jsonl:1"));
    assert!(about(&from_tar, "u1").is_empty(), "the _User file was read");

    // Cut short: what it holds before the cut is read, the cut is refused, and the next
    // file is still read.
    let bytes = std::fs::read(&archive).unwrap();
    let cut = temp("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, text, report) = import(
        &table,
        &[
            "leancloud",
            "--app",
            &app,
            "--file",
            cut.to_str().unwrap(),
            "--file",
            &fixture("array.json"),
        ],
    );
    assert!(!ok, "{text}");
    assert!(
        report
            .iter()
            .any(|l| l["outcome"] == "refused" && l["why"].as_str().unwrap().contains("truncated")),
        "{report:#?}"
    );
    assert_eq!(one(&report, &conv("c01"))["outcome"], "imported");
}

#[tokio::test]
async fn scan_reads_the_class_page_by_page_from_the_im_cloud_with_the_key_in_its_header_only() {
    let app = unique("scan");
    let (table, store, key) = table_with_app_key("import-scan", &app).await;
    let cloud = ImCloudStandIn::start(&app, &key).await;
    let set = admin(
        &table,
        &[
            "app",
            "im-cloud",
            "set",
            &app,
            "--server",
            cloud.url(),
            "--mirroring",
            "off",
        ],
    );
    assert!(set.status.success(), "{}", printed(&set));
    // 1,000 conversations that are not groups, then two that are: past the first page.
    for i in 0..1000 {
        cloud.create_conversation_directly(&format!("chat {i}"), &["amy", "bob"], Value::Null);
    }
    let group = json!({"type": "group"});
    let first = cloud.create_conversation_directly("first", &["amy", "bob"], group.clone());
    let second = cloud.create_conversation_directly("second", &["cy"], group);
    // The first call meets a 429 and is retried.
    cloud.inject_next(Fault::before(FaultKind::TooManyRequests));
    let scanning = app.clone();
    let (ok, text, report) = tokio::task::spawn_blocking(move || {
        import(&table, &["leancloud", "--app", &scanning, "--scan"])
    })
    .await
    .unwrap();
    assert!(ok, "{text}");
    assert_eq!(
        (count(&report, "skipped"), count(&report, "imported")),
        (1000, 2)
    );
    assert!(one(&report, &second)["source"]
        .as_str()
        .unwrap()
        .starts_with("scan:page 2:"));
    for c in [&first, &second] {
        assert!(matches!(
            store.conversation_group(&app, c).await.unwrap(),
            Some(ConversationClaim::Group(_))
        ));
    }
    let scans: Vec<_> = cloud
        .requests()
        .into_iter()
        .filter(|r| r.path == "/1.1/scan/classes/_Conversation")
        .collect();
    // Two passes (the first finds the highest id wanted) of two pages, and the retry.
    assert_eq!(scans.len(), 5, "{scans:#?}");
    assert_eq!(scans[0].status, Some(429));
    assert!(scans
        .iter()
        .all(|r| r.query.as_deref().unwrap().contains("limit=1000")));
    assert!(scans[2]
        .query
        .as_deref()
        .unwrap()
        .contains("cursor=scan-1000"));
    assert!(!text.contains(&key) && !report.iter().any(|l| l.to_string().contains(&key)));
    // Without IM cloud settings there is nothing to scan: a clear error.
    let bare = unique("bare");
    let (t2, _) = table_with_app("import-scan-bare", &bare).await;
    let out = tokio::task::spawn_blocking(move || {
        admin(&t2, &["import", "leancloud", "--app", &bare, "--scan"])
    })
    .await
    .unwrap();
    assert!(!out.status.success() && printed(&out).contains("no IM cloud settings"));
}

/// The app's system client is never a member of an imported group: a conversation of
/// the export that lists it (the vendor keeps whoever was in `m`) is imported without it,
/// the report's notes say so, and a creator left out is no owner. A line of `import
/// groups` naming it is refused.
#[tokio::test]
async fn the_apps_system_client_is_left_out_of_imported_groups() {
    use im_shared::model::{ImCloud, OnDelete};
    let (table, store) = table_with_app("import-reserved", "res-app").await;
    let settings = ImCloud::new(
        "https://im.example.com",
        false,
        true,
        Some("imsystem".to_owned()),
        OnDelete::Keep,
    )
    .unwrap();
    store.set_im_cloud("res-app", &settings).await.unwrap();
    let file = temp("reserved.jsonl");
    let record = json!({"objectId": conv("1"), "name": "with the bot",
        "m": ["imsystem", "bob", "carol"], "c": "imsystem", "attr": {"type": "group"}});
    std::fs::write(&file, format!("{record}\n")).unwrap();
    let (ok, out, report) = import(
        &table,
        &[
            "leancloud",
            "--app",
            "res-app",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let line = one(&report, &conv("1"));
    assert_eq!(line["outcome"], "imported", "{line}");
    assert!(
        line["notes"]
            .to_string()
            .contains("member imsystem left out"),
        "{line}"
    );
    let id = line["group_id"].as_u64().unwrap();
    let mut members = store.group_members(id).await.unwrap();
    members.sort();
    assert_eq!(members, ["bob", "carol"]);
    assert_eq!(store.group_meta(id).await.unwrap().unwrap().owner, "bob");

    // Our own format: a line naming it is not one of our groups.
    let exported = export(&table, "res-app");
    let text = String::from_utf8(exported).unwrap();
    let mut line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    line["group_id"] = json!(line["group_id"].as_u64().unwrap() + 1000);
    line["owner"] = json!("imsystem");
    let members = line["members"].as_array_mut().unwrap();
    members.push(json!("imsystem"));
    let groups = temp("groups.jsonl");
    std::fs::write(&groups, format!("{line}\n")).unwrap();
    let (ok, out, report) = import(
        &table,
        &[
            "groups",
            "--app",
            "res-app",
            "--file",
            groups.to_str().unwrap(),
        ],
    );
    assert!(!ok, "{out}");
    assert_eq!(count(&report, "refused"), 1, "{report:#?}");
    assert!(
        report[0]["why"].to_string().contains("is reserved"),
        "{report:#?}"
    );
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(groups);
}

/// The import writes new small groups several to a transaction: a kept id that turns
/// out to be taken cancels its pack, and the rest of the pack is written again without
/// it, each group whole; the record that wanted the taken id gets a new one, said in the
/// report, and the group that had it is left as it was.
#[tokio::test]
async fn a_taken_id_in_a_pack_leaves_the_rest_of_the_pack_whole() {
    let app = unique("lc");
    let (table, store) = table_with_app("import-pack", &app).await;
    // Group 777, written as the import writes one, where the counter does not see it.
    let zed = MemberList::from_ids("m", ["zed"], 10, 64).unwrap();
    let planted = ImportedGroup {
        app_id: &app,
        group_id: 777,
        name: "planted",
        owner: "zed",
        admins: &[],
        members: &zed,
        max_members: 500,
        avatar_url: None,
        description: None,
        conversation_id: None,
        created_at: None,
        updated_at: None,
    };
    assert_eq!(store.import_new(&planted).await.unwrap(), Written::Imported);
    let file = temp("pack.jsonl");
    let records: Vec<String> = (776..=778)
        .map(|id| {
            json!({"objectId": conv(&format!("p{id}")), "name": format!("wants {id}"),
                "m": ["amy", "bob"], "c": "amy", "attr": {"type": "group", "group_id": id}})
            .to_string()
        })
        .collect();
    std::fs::write(&file, records.join("\n")).unwrap();
    let (ok, text, report) = import(
        &table,
        &["leancloud", "--app", &app, "--file", file.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    let group_of = |id: u64| one(&report, &conv(&format!("p{id}")))["group_id"].as_u64();
    assert_eq!(group_of(776), Some(776), "{report:#?}");
    assert_eq!(group_of(778), Some(778), "{report:#?}");
    let moved = group_of(777).unwrap();
    assert!(moved > 778, "a new id above the kept ones: {moved}");
    let line = one(&report, &conv("p777"));
    assert!(
        line["notes"].to_string().contains("group id 777 is taken"),
        "{line}"
    );
    for id in [776, 778, moved] {
        assert_eq!(store.group_members(id).await.unwrap(), ["amy", "bob"]);
    }
    let kept = store.group_meta(777).await.unwrap().unwrap();
    assert_eq!(kept.group_name, "planted");
    assert_eq!(store.group_members(777).await.unwrap(), ["zed"]);
}
