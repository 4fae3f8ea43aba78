//! `im-bench callback`: how long Tencent's callback endpoint (`POST
//! /im-cloud/tencent/callback/{app_id}`) on im-local takes to answer, from the request
//! sent until the answer's body is read, one call at a time (Tencent waits 2 s, then lets
//! the event proceed). Three kinds of call, each signed as Tencent signs them (the
//! stand-in's own SHA-256, `im_e2e::tencent::callback`):
//! - `invite`: the owner invites a new member, so each is the add route's transaction;
//! - `invite, refused`: a stranger invites, so each is that transaction refused, then the
//!   read that answers exactly;
//! - `create, refused`: a client's create, decided without storage.
//!
//! It registers its own app on im-local's table, with Tencent settings whose mirroring is
//! off (nothing is called but im-local), and needs `AWS_ENDPOINT_URL_DYNAMODB` and
//! `TABLE_NAME`.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use im_e2e::stack::{test_key, TestApp};
use im_e2e::tencent::callback::callback_query;
use im_e2e::tencent::Tamper;
use im_shared::config::DynamoBounds;
use im_shared::model::{
    Caller, GroupSpec, MemberList, Secret, TencentCloud, TencentSpec, MAX_MAX_MEMBERS,
};
use im_shared::store::{DynamoStore, GroupStore};
use serde_json::{json, Value};

pub struct Args {
    pub url: String,
    pub calls: usize,
}

const SDK_APP_ID: u64 = 1_400_000_888;

pub async fn callback(args: Args) -> Result<()> {
    ensure!(args.calls > 0, "--calls must be at least 1");
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .context("AWS_ENDPOINT_URL_DYNAMODB (DynamoDB Local) is not set")?;
    let table = std::env::var("TABLE_NAME").context("TABLE_NAME is not set")?;
    let client = DynamoStore::local_client(&endpoint, &DynamoBounds::from_env()?).await;
    let store = DynamoStore::new(client, &table);
    let app = TestApp::register(&store, "bench-callback").await;
    // A loopback server that is never called: mirroring is off.
    let mut spec = TencentSpec::new("http://127.0.0.1:9", SDK_APP_ID, "administrator");
    spec.mirroring = false;
    store
        .set_tencent(
            &app.app_id,
            &TencentCloud::new(spec)?,
            Some(&Secret::new(test_key())),
        )
        .await?;
    let token = test_key();
    store
        .set_tencent_callback_token(&app.app_id, &Secret::new(token.clone()))
        .await?;
    let owner = Caller {
        app_id: app.app_id.clone(),
        client_id: "owner".into(),
        app_admin: false,
    };
    let spec = GroupSpec {
        name: "bench callbacks".into(),
        members: MemberList::from_ids("members", ["first"], 1, 64)?,
        max_members: MAX_MAX_MEMBERS,
        ..GroupSpec::default()
    };
    let group = store
        .create_group(&owner, &spec, None)
        .await?
        .group
        .group_id;
    let url = format!("{}/im-cloud/tencent/callback/{}", args.url, app.app_id);
    let http = im_e2e::http::client();
    let invite = |operator: &str, member: String| {
        json!({"CallbackCommand": "Group.CallbackBeforeInviteJoinGroup",
            "GroupId": group.to_string(), "Type": "Public", "Operator_Account": operator,
            "DestinationMembers": [{"Member_Account": member}]})
    };
    let create = json!({"CallbackCommand": "Group.CallbackBeforeCreateGroup",
        "Operator_Account": "someone", "Owner_Account": "someone", "Type": "Public",
        "Name": "x", "MemberList": []});
    // Each kind: what to send for call `i`, and the ErrorCode its answer must carry.
    type Body<'a> = Box<dyn Fn(usize) -> Value + 'a>;
    let kinds: [(&str, &str, Body, u64); 3] = [
        (
            "invite (the add route's transaction)",
            "Group.CallbackBeforeInviteJoinGroup",
            Box::new(|i| invite("owner", format!("m{i}"))),
            0,
        ),
        (
            "invite, refused (the transaction refused, then a read)",
            "Group.CallbackBeforeInviteJoinGroup",
            Box::new(|i| invite("stranger", format!("s{i}"))),
            1,
        ),
        (
            "create, refused (no storage)",
            "Group.CallbackBeforeCreateGroup",
            Box::new(|_| create.clone()),
            1,
        ),
    ];
    // Warm: the app's settings and reserved ids in im-local's caches, its connections open.
    for (_, command, body, _) in &kinds {
        send(&http, &url, &token, command, &body(usize::MAX)).await?;
    }
    let calls = args.calls.min(MAX_MAX_MEMBERS as usize - 10);
    for (name, command, body, code) in &kinds {
        let mut ms = Vec::with_capacity(calls);
        for i in 0..calls {
            let started = Instant::now();
            let answer = send(&http, &url, &token, command, &body(i)).await?;
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
            ensure!(
                answer["ActionStatus"] == "OK" && answer["ErrorCode"] == *code,
                "{name}: {answer}"
            );
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "| {name} | {calls} | {:.2} ms | {:.2} ms | {:.2} ms |",
            crate::percentile(&ms, 50.0),
            crate::percentile(&ms, 99.0),
            ms[ms.len() - 1]
        );
    }
    Ok(())
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    command: &str,
    body: &Value,
) -> Result<Value> {
    let query = callback_query(token, SDK_APP_ID, command, "iOS", Tamper::None);
    let resp = http
        .post(format!("{url}?{query}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    ensure!(resp.status() == 200, "{command}: HTTP {}", resp.status());
    Ok(resp.json().await?)
}
