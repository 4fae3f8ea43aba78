//! `im-bench backfill`: how fast `im-admin sync backfill` brings an app's groups into
//! Tencent Cloud IM, against the Tencent stand-in (`im_e2e::tencent`) with Tencent's own
//! limit (200 calls/s per command), for an app whose cap is `--app-rate` calls/s. The
//! groups (8 members each) are written straight to the table first; mirroring into
//! Tencent is off, so that only the backfill calls the stand-in. The backfill runs in
//! this process, as the admin command runs it (`Syncer::backfill`).
//!
//! It needs `AWS_ENDPOINT_URL_DYNAMODB` and `TABLE_NAME` (a DynamoDB Local table).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use futures::StreamExt;
use im_e2e::stack::{test_key, TestApp};
use im_e2e::tencent::TencentStandIn;
use im_shared::config::DynamoBounds;
use im_shared::model::CloudId;
use im_shared::model::{
    Caller, GroupSpec, MemberList, Secret, TencentCloud, TencentSpec, DEFAULT_MAX_MEMBERS,
};
use im_shared::store::{DynamoStore, GroupStore};
use im_sync::Syncer;

pub struct Args {
    pub groups: usize,
    pub app_rate: u32,
    pub cloud_rate: u32,
}

pub async fn backfill(args: Args) -> Result<()> {
    ensure!(args.groups > 0, "--groups must be at least 1");
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .context("AWS_ENDPOINT_URL_DYNAMODB (DynamoDB Local) is not set")?;
    let table = std::env::var("TABLE_NAME").context("TABLE_NAME is not set")?;
    let client = DynamoStore::local_client(&endpoint, &DynamoBounds::from_env()?).await;
    let store = DynamoStore::new(client, &table);
    let app = TestApp::register(&store, "bench-backfill").await;
    let key = test_key();
    let tencent = TencentStandIn::start(1_400_000_777, &key, &["administrator"]);
    tencent.set_rate_limit(args.cloud_rate);
    let mut spec = TencentSpec::new(tencent.url(), 1_400_000_777, "administrator");
    spec.mirroring = false;
    spec.max_calls_per_second = args.app_rate;
    store
        .set_tencent(
            &app.app_id,
            &TencentCloud::new(spec)?,
            Some(&Secret::new(key)),
        )
        .await?;

    let made = Instant::now();
    let backend = Caller {
        app_id: app.app_id.clone(),
        client_id: "owner".into(),
        app_admin: true,
    };
    let writes = futures::stream::iter(0..args.groups)
        .map(|i| {
            let store = &store;
            let backend = &backend;
            async move {
                let members: Vec<String> = (0..7).map(|m| format!("u{i}-{m}")).collect();
                let spec = GroupSpec {
                    name: format!("bench {i}"),
                    members: MemberList::from_ids(
                        "members",
                        members.iter().map(String::as_str),
                        100,
                        64,
                    )?,
                    max_members: DEFAULT_MAX_MEMBERS,
                    ..GroupSpec::default()
                };
                store.create_group(backend, &spec, None).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16);
    let results: Vec<Result<()>> = writes.collect().await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    eprintln!(
        "{} groups written in {:.1} s",
        args.groups,
        made.elapsed().as_secs_f64()
    );

    let syncer = Syncer::with_client(store)?;
    let groups = syncer.backfill_groups(&app.app_id).await?;
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let summary = syncer
        .backfill(&app.app_id, CloudId::Tencent, &groups, &stop, |_, _| {})
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let calls = tencent.requests().len();
    let limited = tencent.rate_limited_count();
    ensure!(
        summary.created == args.groups,
        "only {} of {} groups were created: {summary:?}",
        summary.created,
        args.groups
    );
    println!("| groups | members each | app cap | stand-in limit | time | groups/s | calls | calls/s | calls/s ÷ cap | rate-limit answers |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | 8 | {}/s | {}/s per command | {secs:.1} s | {:.1} | {calls} | {:.1} | {:.2} | {limited} |",
        args.groups,
        args.app_rate,
        args.cloud_rate,
        args.groups as f64 / secs,
        calls as f64 / secs,
        calls as f64 / secs / f64::from(args.app_rate),
    );
    Ok(())
}
