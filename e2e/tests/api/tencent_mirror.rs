//! Groups mirrored into Tencent Cloud IM, end to end: HTTP writes on the local server,
//! DynamoDB Local's stream, the local server's poller and the same handler the
//! `sync-conversations` function runs, against the Tencent stand-in
//! (`im_e2e::tencent`), alone or beside LeanCloud's (`im_e2e::im_cloud`); and the
//! operator's backfill through `im-admin`.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;
use im_e2e::http::Api;
use im_e2e::im_cloud::ImCloudStandIn;
use im_e2e::stack::{admin_command, env};
use im_e2e::tencent::{FaultKind, Role, TencentStandIn};
use im_shared::model::{ImCloud, OnDelete, Secret, TencentCloud, TencentSpec};
use reqwest::Method;
use serde_json::{json, Value};

use crate::mirror::{eventually, run, run_printed};

const SDK_APP_ID: u64 = 1_400_000_123;
const ADMIN: &str = "administrator";

/// An app on the local server mirrored into its own Tencent stand-in (and, with
/// `leancloud`, into a LeanCloud stand-in too).
struct Clouds {
    api: Api,
    tencent: TencentStandIn,
    leancloud: Option<ImCloudStandIn>,
}

/// `im-admin --table <the local server's table> ARGS...`.
fn admin(args: &[&str]) -> std::process::Command {
    let mut command = admin_command();
    command
        .arg("--table")
        .arg(env("IM_TEST_LOCAL_TABLE"))
        .args(args);
    command
}

fn test_secret(prefix: &str) -> String {
    format!("{prefix}-{:032x}", rand::random::<u128>())
}

struct Setup {
    system_messages: bool,
    on_delete: OnDelete,
    leancloud: bool,
    tencent_mirroring: bool,
    max_calls_per_second: u32,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            system_messages: true,
            on_delete: OnDelete::Keep,
            leancloud: false,
            tencent_mirroring: true,
            max_calls_per_second: 200,
        }
    }
}

async fn clouds(prefix: &str, setup: Setup) -> Clouds {
    let api = Api::local(prefix).await;
    let key = test_secret("tencent-key");
    let tencent = TencentStandIn::start(SDK_APP_ID, &key, &[ADMIN]);
    // Slow answers come later than the local server's attempt time-out (scripts/test.sh).
    tencent.set_slow_delay(Duration::from_millis(1500));
    let mut spec = TencentSpec::new(tencent.url(), SDK_APP_ID, ADMIN);
    spec.system_messages = setup.system_messages;
    spec.on_delete = setup.on_delete;
    spec.mirroring = setup.tencent_mirroring;
    spec.max_calls_per_second = setup.max_calls_per_second;
    api.store
        .set_tencent(
            &api.app.app_id,
            &TencentCloud::new(spec).unwrap(),
            Some(&Secret::new(key)),
        )
        .await
        .unwrap();
    let leancloud = if setup.leancloud {
        let cloud = ImCloudStandIn::start(&api.app.app_id, &api.app.master_key).await;
        cloud.set_slow_delay(Duration::from_millis(1500));
        let settings = ImCloud::new(
            cloud.url(),
            true,
            setup.system_messages,
            Some("imsystem".into()),
            setup.on_delete,
        )
        .unwrap();
        api.store
            .set_im_cloud(&api.app.app_id, &settings)
            .await
            .unwrap();
        Some(cloud)
    } else {
        None
    };
    Clouds {
        api,
        tencent,
        leancloud,
    }
}

impl Clouds {
    async fn create(&self, owner: &str, name: &str, members: &str) -> u64 {
        self.api
            .create(
                owner,
                json!({"group_name": name, "member_client_ids": members}),
            )
            .await
    }

    async fn write(&self, by: &str, method: Method, path: String, body: Option<Value>) -> u16 {
        self.api
            .send(by, method, path, body)
            .await
            .status()
            .as_u16()
    }

    /// [`Self::write`], which must answer `status`.
    async fn expect(
        &self,
        status: u16,
        by: &str,
        method: Method,
        path: String,
        body: Option<Value>,
    ) {
        let what = format!("{method} {path}");
        assert_eq!(self.write(by, method, path, body).await, status, "{what}");
    }

    async fn group(&self, client: &str, id: u64) -> Value {
        let resp = self.api.get(client, format!("/im/group/{id}")).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Whether the Tencent group of `id` has our group's members, owner, admins and name
    /// (cut to 30 bytes).
    async fn tencent_in_step(&self, id: u64) -> bool {
        let Some(meta) = self.api.store.group_meta(id).await.unwrap() else {
            return false;
        };
        let Some(t) = self.tencent.group(&id.to_string()) else {
            return false;
        };
        let mut members: BTreeSet<String> = self
            .api
            .store
            .group_members(id)
            .await
            .unwrap()
            .into_iter()
            .collect();
        members.insert(meta.owner.clone());
        let name = cut(&meta.group_name, 30);
        t.member_ids() == members
            && t.owner.as_deref() == Some(meta.owner.as_str())
            && t.admins()
                == meta
                    .admins
                    .iter()
                    .filter(|a| **a != meta.owner)
                    .cloned()
                    .collect()
            && t.name == name
    }

    /// Waits until the Tencent group agrees with the table and the group's Tencent state
    /// is `ok`: the members come before the notification, and the state is written once
    /// the whole record is applied, so a test that counts calls or notifications after
    /// this sees none still on their way.
    async fn wait_tencent(&self, id: u64) {
        eventually(
            &format!("group {id} and its Tencent group agree"),
            || async {
                let owner = match self.api.store.group_meta(id).await.unwrap() {
                    Some(meta) => meta.owner,
                    None => return false,
                };
                self.tencent_in_step(id).await
                    && self.group(&owner, id).await["clouds"]["tencent"]["status"] == "ok"
            },
        )
        .await;
    }

    async fn leancloud_in_step(&self, id: u64) -> bool {
        let cloud = self.leancloud.as_ref().expect("a LeanCloud stand-in");
        let Some(meta) = self.api.store.group_meta(id).await.unwrap() else {
            return false;
        };
        let Some(c) = meta.conversation_id.and_then(|c| cloud.conversation(&c)) else {
            return false;
        };
        let members: BTreeSet<String> = self
            .api
            .store
            .group_members(id)
            .await
            .unwrap()
            .into_iter()
            .collect();
        c.members == members && c.name.as_deref() == Some(meta.group_name.as_str())
    }

    /// `im-admin sync reconcile --cloud tencent` of group `id` (with `--fix`): whether it
    /// succeeded, and what it printed.
    async fn reconcile_tencent(&self, id: u64, fix: bool) -> (bool, String) {
        let group = id.to_string();
        let mut args = vec![
            "sync",
            "reconcile",
            "--app",
            &self.api.app.app_id,
            "--group",
            &group,
            "--cloud",
            "tencent",
        ];
        if fix {
            args.push("--fix");
        }
        run_printed(admin(&args)).await
    }

    /// The events of the group's Tencent system notifications, in order.
    /// Waits until group `id` is in step in Tencent with at least `count` notifications,
    /// then answers how many it has. A create's member records may be read in an earlier
    /// batch than its group record: the group is made and saved `ok` from the first, and
    /// its notification comes with the second.
    async fn wait_notified(&self, id: u64, count: usize) -> usize {
        self.wait_tencent(id).await;
        eventually(&format!("group {id} has {count} notifications"), || async {
            self.notified(id).len() >= count
        })
        .await;
        self.notified(id).len()
    }

    fn notified(&self, id: u64) -> Vec<Value> {
        self.tencent
            .notifications(&id.to_string())
            .into_iter()
            .map(|n| serde_json::from_str::<Value>(&n.content).expect("JSON content"))
            .collect()
    }
}

fn cut(name: &str, max: usize) -> String {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

#[tokio::test]
async fn a_group_and_every_change_to_it_reach_its_tencent_group() {
    let c = clouds("tencent-life", Setup::default()).await;
    let id = c.create("alice", "crew", "bob:carol").await;
    c.wait_tencent(id).await;
    eventually("the group's Tencent state is ok", || async {
        c.group("alice", id).await["clouds"]["tencent"]["status"] == "ok"
    })
    .await;
    let t = c.tencent.group(&id.to_string()).unwrap();
    assert_eq!(t.group_type, "Public");
    assert_eq!(
        t.apply_join_option, "DisableApply",
        "joining goes through us"
    );
    assert!(t.created_by_admin);
    // Accounts were imported before they joined.
    for who in ["alice", "bob", "carol"] {
        assert!(c.tencent.accounts().contains(who), "{who}");
    }
    let seen = c.group("alice", id).await;
    assert_eq!(seen["clouds"]["tencent"]["status"], "ok");
    assert_eq!(seen["clouds"]["tencent"]["id"], id.to_string());
    assert!(seen.get("sync").is_none(), "no LeanCloud state: {seen}");
    assert!(c.group("bob", id).await.get("clouds").is_none());

    let g = format!("/im/group/{id}");
    c.expect(
        201,
        "alice",
        Method::POST,
        format!("{g}/member"),
        Some(json!({"member_client_ids": "dave:erin"})),
    )
    .await;
    c.expect(
        204,
        "alice",
        Method::DELETE,
        format!("{g}/member?member_client_ids=carol"),
        None,
    )
    .await;
    c.expect(
        201,
        "alice",
        Method::POST,
        format!("{g}/admin"),
        Some(json!({"member_client_ids": "dave:bob"})),
    )
    .await;
    c.expect(
        204,
        "alice",
        Method::DELETE,
        format!("{g}/admin?member_client_ids=bob"),
        None,
    )
    .await;
    // 11 CJK characters: 33 bytes, cut to 10 (30 bytes) on a character boundary.
    let long = "群".repeat(11);
    c.expect(
        200,
        "alice",
        Method::PUT,
        g.clone(),
        Some(json!({"group_name": long})),
    )
    .await;
    c.expect(
        200,
        "alice",
        Method::POST,
        format!("{g}/owner"),
        Some(json!({"client_id": "erin"})),
    )
    .await;
    eventually("every change reached Tencent", || async {
        c.notified(id).len() == 5 && c.tencent_in_step(id).await
    })
    .await;
    let t = c.tencent.group(&id.to_string()).unwrap();
    assert_eq!(t.name, "群".repeat(10));
    assert_eq!(t.owner.as_deref(), Some("erin"));
    assert_eq!(t.members.get("dave"), Some(&Role::Admin));
    assert_eq!(t.members.get("bob"), Some(&Role::Member));
    assert!(!t.members.contains_key("carol"));
    // Admin grants and revokes make no system message (as in LeanCloud).
    let events: Vec<Value> = c.notified(id).iter().map(|n| n["event"].clone()).collect();
    assert_eq!(
        events,
        [
            "created",
            "members_added",
            "members_removed",
            "renamed",
            "owner_changed"
        ]
        .map(Value::from)
    );
    let first = &c.notified(id)[0];
    assert_eq!(
        (
            first["event"].clone(),
            first["group_id"].clone(),
            first["by"].clone()
        ),
        (json!("created"), json!(id), json!("alice"))
    );
    assert_eq!(first["members"], json!(["alice", "bob", "carol"]));
    assert_eq!(first["text"], "alice created the group crew");
    // The sync state says the name was cut.
    let seen = c.group("erin", id).await;
    let note = seen["clouds"]["tencent"]["note"]
        .as_str()
        .unwrap_or_default();
    assert!(note.contains("30 bytes"), "{seen}");

    // keep (the default): the Tencent group stays; its members hear why.
    assert_eq!(c.write("erin", Method::DELETE, g, None).await, 204);
    eventually("the dismissal reached Tencent", || async {
        c.notified(id).last().map(|n| n["event"].clone()) == Some(json!("dismissed"))
    })
    .await;
    assert!(c.tencent.group(&id.to_string()).is_some());
    assert!(c.tencent.destroyed_groups().is_empty());
}

#[tokio::test]
async fn on_delete_delete_destroys_the_tencent_group() {
    let setup = Setup {
        system_messages: false,
        on_delete: OnDelete::Delete,
        ..Setup::default()
    };
    let c = clouds("tencent-del", setup).await;
    let id = c.create("alice", "short-lived", "bob").await;
    c.wait_tencent(id).await;
    c.expect(
        204,
        "alice",
        Method::DELETE,
        format!("/im/group/{id}"),
        None,
    )
    .await;
    eventually("the Tencent group is destroyed", || async {
        c.tencent.group(&id.to_string()).is_none()
    })
    .await;
    assert_eq!(c.tencent.destroyed_groups().len(), 1);
}

/// The next group ids (the counter is shared by every test): from one past the group
/// just made, `count` of them.
async fn next_ids(c: &Clouds, count: u64) -> std::ops::Range<u64> {
    let probe = c.create("alice", "probe", "bob").await;
    probe + 1..probe + 1 + count
}

#[tokio::test]
async fn a_tencent_group_id_someone_else_made_fails_the_group_there_and_is_left_alone() {
    let c = clouds("tencent-taken", Setup::default()).await;
    // A client made Tencent groups with the ids our next groups will have.
    let ids = next_ids(&c, 200).await;
    for id in ids.clone() {
        c.tencent.create_foreign_group(&id.to_string(), "mallory");
    }
    let id = c.create("alice", "victim", "bob:carol").await;
    assert!(ids.contains(&id), "the pre-made range was used up");
    eventually("the group is failed in Tencent", || async {
        c.group("alice", id).await["clouds"]["tencent"]["status"] == "failed"
    })
    .await;
    let seen = c.group("alice", id).await;
    let error = seen["clouds"]["tencent"]["error"].as_str().unwrap();
    assert!(error.contains("10021"), "{error}");
    c.expect(
        201,
        "alice",
        Method::POST,
        format!("/im/group/{id}/member"),
        Some(json!({"member_client_ids": "dave"})),
    )
    .await;
    // Later changes never reach someone else's group.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let theirs = c.tencent.group(&id.to_string()).unwrap();
    assert_eq!(theirs.owner.as_deref(), Some("mallory"));
    assert_eq!(theirs.member_ids(), BTreeSet::from(["mallory".to_owned()]));
    assert!(!theirs.created_by_admin);
    let touched = c
        .tencent
        .requests()
        .into_iter()
        .filter(|r| r.group_id.as_deref() == Some(id.to_string().as_str()))
        .filter(|r| r.command != "group_open_http_svc/create_group")
        .count();
    assert_eq!(touched, 0, "only the create named the taken id");
}

#[tokio::test]
async fn with_both_clouds_fifty_concurrent_writes_converge_in_each_while_30_percent_of_answers_fail(
) {
    let setup = Setup {
        leancloud: true,
        ..Setup::default()
    };
    let c = clouds("tencent-both", setup).await;
    let lc = c.leancloud.as_ref().unwrap();
    let mut groups = Vec::new();
    for g in 0..5 {
        let members: Vec<String> = (0..6).map(|i| format!("g{g}m{i}")).collect();
        groups.push(
            c.create("owner", &format!("both{g}"), &members.join(":"))
                .await,
        );
    }
    for id in &groups {
        c.wait_tencent(*id).await;
    }
    lc.set_fault_kinds(&im_e2e::im_cloud::FaultKind::ALL);
    lc.set_failure_rate(0.3);
    c.tencent.set_fault_kinds(&FaultKind::ALL);
    c.tencent.set_failure_rate(0.3);
    let writes = (0..50).map(|i| {
        let c = &c;
        let id = groups[i % 5];
        let g = i % 5;
        let path = format!("/im/group/{id}");
        async move {
            let status = match i / 5 {
                0 | 1 => c.write("owner", Method::POST, format!("{path}/member"), Some(json!({"member_client_ids": format!("g{g}new{i}")}))).await,
                2 | 3 => c.write("owner", Method::DELETE, format!("{path}/member?member_client_ids=g{g}m{}", i / 5 - 2), None).await,
                4 => c.write("owner", Method::POST, format!("{path}/admin"), Some(json!({"member_client_ids": format!("g{g}m4")}))).await,
                5 | 6 => c.write("owner", Method::PUT, path, Some(json!({"group_name": format!("both{g}-{i}")}))).await,
                7 => c.write("owner", Method::POST, format!("{path}/owner"), Some(json!({"client_id": format!("g{g}m5")}))).await,
                _ => c.write("owner", Method::POST, "/im/group".into(), Some(json!({"group_name": format!("new{i}"), "member_client_ids": format!("n{i}a:n{i}b")}))).await,
            };
            // After the owner transfer (write 7 of a group), the old owner may no longer
            // manage the group: those later writes are refused, not lost.
            assert!((200..300).contains(&status) || status == 403, "write {i}: {status}");
        }
    });
    join_all(writes).await;
    let live: Vec<u64> = c.api.store.app_group_ids(&c.api.app.app_id).await.unwrap();
    assert_eq!(live.len(), 5 + 10);
    for id in &live {
        eventually(&format!("group {id} agrees with both clouds"), || async {
            c.tencent_in_step(*id).await && c.leancloud_in_step(*id).await
        })
        .await;
    }
    let faults = c
        .tencent
        .requests()
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert!(faults > 10, "Tencent's stand-in failed only {faults} calls");
    let faults = lc.requests().iter().filter(|r| r.fault.is_some()).count();
    assert!(
        faults > 5,
        "LeanCloud's stand-in failed only {faults} calls"
    );
}

#[tokio::test]
async fn a_group_failing_in_one_cloud_goes_on_in_the_other() {
    let setup = Setup {
        leancloud: true,
        system_messages: false,
        ..Setup::default()
    };
    let c = clouds("tencent-one-fails", setup).await;
    let ids = next_ids(&c, 200).await;
    for id in ids.clone() {
        // No permission, for good: no retry changes it.
        c.tencent.fail_always_for_group(&id.to_string(), 10007);
    }
    let id = c.create("alice", "half", "bob").await;
    assert!(ids.contains(&id));
    c.expect(
        201,
        "alice",
        Method::POST,
        format!("/im/group/{id}/member"),
        Some(json!({"member_client_ids": "carol"})),
    )
    .await;
    eventually("LeanCloud follows the group", || async {
        c.leancloud_in_step(id).await
    })
    .await;
    eventually("the group is failed in Tencent", || async {
        c.group("alice", id).await["clouds"]["tencent"]["status"] == "failed"
    })
    .await;
    // Tencent's run of the last batch ends after LeanCloud's (the clouds go in turn):
    // wait until its cursor is where LeanCloud's is, so that no run of it is left to
    // save its state after the repair below.
    let store = &c.api.store;
    let at = |cloud| async move { store.sync_cursor(id, cloud).await.unwrap().map(|s| s.seq) };
    eventually("Tencent's cursor caught up with LeanCloud's", || async {
        let leancloud = at(im_shared::model::CloudId::LeanCloud).await;
        leancloud.is_some() && leancloud == at(im_shared::model::CloudId::Tencent).await
    })
    .await;
    // A run may save its state at that position more than once (the refusal, then the
    // batch's end): wait until Tencent's state has stood still for two seconds.
    let state = || async {
        store
            .sync_cursor(id, im_shared::model::CloudId::Tencent)
            .await
            .unwrap()
            .map(|s| (s.seq, s.report.at, s.report.error))
    };
    let mut last = state().await;
    for round in 0.. {
        assert!(round < 30, "Tencent's state never stood still: {last:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = state().await;
        if now == last {
            break;
        }
        last = now;
    }
    let seen = c.group("alice", id).await;
    assert_eq!(seen["clouds"]["leancloud"]["status"], "ok", "{seen}");
    assert!(seen["clouds"]["tencent"]["error"]
        .as_str()
        .unwrap()
        .contains("10007"));

    // Once Tencent answers again, reconcile --fix brings the group there.
    c.tencent.clear_faults();
    let (ok, printed) = c.reconcile_tencent(id, true).await;
    assert!(ok, "{printed}");
    assert!(c.tencent_in_step(id).await, "{printed}");
    assert_eq!(
        c.group("alice", id).await["clouds"]["tencent"]["status"],
        "ok"
    );
}

#[tokio::test]
async fn a_backfill_of_2000_groups_converges_without_one_rate_limit_answer_and_resumes_after_a_kill(
) {
    // Mirroring into Tencent off while the groups are made: only the backfill calls it.
    let setup = Setup {
        system_messages: false,
        tencent_mirroring: false,
        max_calls_per_second: 100,
        ..Setup::default()
    };
    let c = clouds("tencent-backfill", setup).await;
    let made = futures::stream::iter(0..2000)
        .map(|i| {
            let c = &c;
            async move {
                c.create(
                    &format!("o{}", i % 50),
                    &format!("b{i}"),
                    &format!("m{i}:x{}", i % 7),
                )
                .await
            }
        })
        .buffer_unordered(16);
    let groups: Vec<u64> = made.collect().await;
    assert_eq!(groups.len(), 2000);
    let backfill = || {
        admin(&[
            "sync",
            "backfill",
            "--app",
            &c.api.app.app_id,
            "--cloud",
            "tencent",
        ])
    };
    // A first run killed part-way (as a crash would stop it).
    let mut first = backfill();
    first
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = first.spawn().unwrap();
    eventually("the first run made some groups", || async {
        c.tencent.groups().len() >= 300
    })
    .await;
    child.kill().unwrap();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let before = c.tencent.groups().len();
    assert!(before < 2000, "the first run finished before it was killed");

    let out = run(backfill()).await;
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.tencent.groups().len(), 2000);
    for id in groups.iter().step_by(97) {
        assert!(c.tencent_in_step(*id).await, "group {id}");
    }
    assert_eq!(
        c.tencent.rate_limited_count(),
        0,
        "the backfill was paced under the app's rate"
    );
    let (created, already) = summary(&printed);
    assert_eq!(created + already, 2000, "{printed}");
    // What the first run recorded is skipped; a group it made but was killed before
    // recording (at most the groups in flight) is taken over (10025), not made twice.
    assert!(
        already > 0 && already <= before && before - already <= 64,
        "the second run went on where the first stopped ({before} made by it): {printed}"
    );

    // A third run finds every group there.
    let out = run(backfill()).await;
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success());
    assert_eq!(summary(&printed), (0, 2000), "{printed}");

    // An unknown cloud is a clear refusal.
    let bad = admin(&[
        "sync",
        "backfill",
        "--app",
        &c.api.app.app_id,
        "--cloud",
        "wechat",
    ]);
    let (ok, printed) = run_printed(bad).await;
    assert!(!ok);
    assert!(printed.contains("leancloud or tencent"), "{printed}");
}

/// The created and already-there counts of a backfill's summary line.
fn summary(printed: &str) -> (usize, usize) {
    let line = printed
        .lines()
        .find(|l| l.contains(" created, "))
        .unwrap_or_else(|| panic!("no summary in {printed}"));
    let number = |what: &str| -> usize {
        let at = line.find(what).unwrap();
        line[..at]
            .trim_end()
            .rsplit(|ch: char| !ch.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number(" created"), number(" already there"))
}

#[tokio::test]
async fn turning_tencent_off_stops_its_calls_and_keeps_its_state_and_reconcile_catches_up() {
    let c = clouds(
        "tencent-off",
        Setup {
            system_messages: false,
            ..Setup::default()
        },
    )
    .await;
    let id = c.create("alice", "pausable", "bob").await;
    c.wait_tencent(id).await;
    let off = admin(&[
        "app",
        "im-cloud",
        "set",
        &c.api.app.app_id,
        "--provider",
        "tencent",
        "--mirroring",
        "off",
    ]);
    let (ok, printed) = run_printed(off).await;
    assert!(ok, "{printed}");
    let calls = c.tencent.requests().len();
    c.expect(
        201,
        "alice",
        Method::POST,
        format!("/im/group/{id}/member"),
        Some(json!({"member_client_ids": "carol"})),
    )
    .await;
    // The poller reads the stream every 100 ms when idle: the add's records are long
    // handled after this.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        c.tencent.requests().len(),
        calls,
        "no call while Tencent is off"
    );
    let seen = c.group("alice", id).await;
    assert_eq!(seen["clouds"]["tencent"]["id"], id.to_string(), "{seen}");
    assert_eq!(seen["clouds"]["tencent"]["status"], "ok");
    assert!(!c
        .tencent
        .group(&id.to_string())
        .unwrap()
        .member_ids()
        .contains("carol"));

    let (ok, printed) = c.reconcile_tencent(id, false).await;
    assert!(!ok, "reconcile names the difference: {printed}");
    assert!(printed.contains("carol"), "{printed}");
    let (ok, printed) = c.reconcile_tencent(id, true).await;
    assert!(ok, "{printed}");
    assert!(c.tencent_in_step(id).await);
}

/// Fairness in Tencent (issue 22 item 8): an app whose Tencent app answers every call
/// with a rate limit (60007) past a call's retries is deferred, not retried on the shard:
/// its groups show `held` "deferred:" in Tencent while another app's groups reach theirs.
/// Once the limit lifts, the drain brings the first app's groups in step, with one
/// notification each (`scripts/test.sh`: 2.5 s of retries, then a 4 s pause).
#[tokio::test]
async fn an_app_over_its_tencent_rate_limit_never_holds_another_apps_groups() {
    let limited = clouds("tencent-limited", Setup::default()).await;
    let other = clouds("tencent-calm", Setup::default()).await;
    limited.tencent.set_fault_kinds(&[FaultKind::RestRateLimit]);
    limited.tencent.set_failure_rate(1.0);
    let mut groups = Vec::new();
    for i in 0..3 {
        groups.push(limited.create("alice", &format!("busy-{i}"), "bob").await);
    }
    let tencent_state = |c: &'static str, g: Value| {
        (
            g["clouds"][c]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            g["clouds"][c]["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    // The first group's record is deferred on Tencent's own answer; while the app cools
    // down, the others are deferred without a call.
    eventually(
        "the limited app's groups are deferred in Tencent",
        || async {
            let mut deferred = 0;
            let mut on_the_answer = false;
            for id in &groups {
                let (status, error) = tencent_state("tencent", limited.group("alice", *id).await);
                if status == "held" && error.starts_with("deferred:") {
                    deferred += 1;
                    on_the_answer |= error.contains("code 60007");
                }
            }
            deferred == groups.len() && on_the_answer
        },
    )
    .await;
    let mut theirs = Vec::new();
    for i in 0..3 {
        theirs.push(
            other
                .create("alice", &format!("calm-{i}"), "bob:carol")
                .await,
        );
    }
    for id in &theirs {
        assert_eq!(other.wait_notified(*id, 1).await, 1, "group {id}");
    }
    let (status, _) = tencent_state("tencent", limited.group("alice", groups[0]).await);
    assert_eq!(
        status, "held",
        "still deferred once the other app is in step"
    );
    assert!(limited.tencent.group(&groups[0].to_string()).is_none());

    limited.tencent.clear_faults();
    for id in &groups {
        limited.wait_tencent(*id).await;
        eventually(&format!("group {id} is ok in Tencent"), || async {
            tencent_state("tencent", limited.group("alice", *id).await).0 == "ok"
        })
        .await;
        assert_eq!(limited.wait_notified(*id, 1).await, 1, "group {id}");
    }
}

#[tokio::test]
async fn a_big_create_and_a_big_add_reach_the_tencent_group_whole() {
    let c = clouds("tencent-big", Setup::default()).await;
    let first: Vec<String> = (0..299).map(|i| format!("tb-{i:04}")).collect();
    let id = c.create("alice", "big", &first.join(":")).await;
    c.wait_tencent(id).await;
    assert_eq!(
        c.tencent.group(&id.to_string()).unwrap().member_ids().len(),
        300
    );
    let more: Vec<String> = (0..200).map(|i| format!("tc-{i:04}")).collect();
    c.expect(
        201,
        "alice",
        Method::POST,
        format!("/im/group/{id}/member"),
        Some(json!({ "member_client_ids": more })),
    )
    .await;
    eventually("the big add reached the Tencent group", || async {
        c.tencent
            .group(&id.to_string())
            .is_some_and(|t| t.member_ids().len() == 500)
    })
    .await;
    c.wait_tencent(id).await;
    let events: Vec<Value> = c.notified(id).iter().map(|n| n["event"].clone()).collect();
    assert!(events.contains(&json!("members_added")), "{events:?}");
}
