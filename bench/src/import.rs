//! `im-bench import`: how fast `im-admin import leancloud` brings a vendor export in, and
//! `im-admin export` writes the result out (issue 24 item 3), beside the floor: DynamoDB
//! Local's own `BatchWriteItem` rate for the very items the import wrote.
//!
//! For each size it writes a generated `_Conversation` export (JSON lines: 2 to 14
//! members, median 8, and one conversation in 10,000 of 2,000 members; half keep an old
//! `attr.group_id`), then in a fresh table of the template's shape (stream included):
//! 1. runs the import in a child process (this binary's `import-child`, which calls
//!    `im_admin::import::run` as `im-admin` does, on a client whose DynamoDB calls are
//!    counted), timed from spawn to exit, with the child's peak RSS from `wait4`;
//! 2. runs the export the same way;
//! 3. scans the table (not timed) and writes every item into a second fresh table with
//!    `BatchWriteItem`, 25 a call, as many calls in flight as the import has groups in
//!    flight (16), unprocessed items sent again: the floor.
//!
//! It starts a DynamoDB Local of its own (in memory, `im_local::dynamodb_local`), which
//! nothing else uses: DynamoDB Local runs every request on one SQLite queue, and a stream
//! poller's `GetRecords` there (im-local's, every 100 ms) slows down as the stream
//! records of every table grow, so on a shared one the later figures would measure the
//! poller. And its tables have no stream: DynamoDB Local reads the stream's description
//! in SQLite for every item it writes to a table with one, a read that grows with the
//! stream records it holds, so a million writes would slow down quadratically (a
//! `jstack` of it shows the SQLite queue in `getStreamDescription` under
//! `insertUpdateStreamRecordIfActiveShardPresent`); on AWS a stream costs a write
//! nothing. The tables are deleted after.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, StreamSpecification, WriteRequest};
use aws_sdk_dynamodb::Client;
use clap::Parser;
use futures::StreamExt;
use im_e2e::calls::Tally;
use im_e2e::stack::TestApp;
use im_local::dynamodb_local::DynamoDbLocal;
use im_shared::config::DynamoBounds;
use im_shared::store::DynamoStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

type Item = std::collections::HashMap<String, AttributeValue>;

/// As many batch calls in flight as the import has groups in flight.
const IN_FLIGHT: usize = 16;
/// A BatchWriteItem's item limit.
const BATCH: usize = 25;
/// The few big conversations: one in this many.
const BIG_EVERY: usize = 10_000;
const BIG_MEMBERS: usize = 2_000;

pub struct Args {
    pub sizes: Vec<usize>,
    pub work: PathBuf,
}

/// What one child run measured.
struct Run {
    secs: f64,
    peak_rss_kib: i64,
    calls: BTreeMap<String, u64>,
}

impl Run {
    fn calls_total(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// The child process: one import or export, its DynamoDB calls counted, printed as JSON
/// on the last line of its output.
#[derive(Parser)]
pub struct Child {
    #[arg(long)]
    table: String,
    #[arg(long)]
    app: String,
    /// Import this export file; without it, export.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The import's report, or the export's output.
    #[arg(long)]
    out: PathBuf,
}

pub async fn child(args: Child) -> Result<()> {
    let tally = Tally::default();
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .context("AWS_ENDPOINT_URL_DYNAMODB (the parent's DynamoDB Local) is not set")?;
    let client = local_client(&endpoint).await?;
    let counted = Client::from_conf(
        client
            .config()
            .to_builder()
            .interceptor(tally.clone())
            .build(),
    );
    let store = DynamoStore::new(counted, &args.table);
    match args.file {
        Some(file) => {
            // Exactly the command an operator types, parsed as im-admin parses it.
            #[derive(Parser)]
            struct Import {
                #[command(subcommand)]
                command: im_admin::import::ImportCommand,
            }
            let command = Import::try_parse_from([
                "import".as_ref(),
                "leancloud".as_ref(),
                "--app".as_ref(),
                args.app.as_ref(),
                "--file".as_ref(),
                file.as_os_str(),
                "--report".as_ref(),
                args.out.as_os_str(),
            ])?
            .command;
            im_admin::import::run(&store, command).await?;
        }
        None => {
            let file = std::fs::File::create(&args.out)?;
            im_admin::export::export(&store, &args.app, &mut BufWriter::new(file)).await?;
        }
    }
    println!("{}", serde_json::to_string(&tally.counted())?);
    Ok(())
}

pub async fn import(args: Args) -> Result<()> {
    ensure!(!args.sizes.is_empty(), "--conversations: at least one size");
    std::fs::create_dir_all(&args.work)?;
    let home = im_local::dynamodb_local::find_home()?;
    let port = im_local::dynamodb_local::free_port()?;
    let ddb =
        DynamoDbLocal::start(&home, port, None, &args.work.join("dynamodb-local.log")).await?;
    let endpoint = ddb.endpoint();
    // The scans and the floor's batches are bulk work, not a request's: their bounds
    // are wide (the child runs with im-admin's own, from the environment).
    let bulk = DynamoBounds {
        attempt_timeout: std::time::Duration::from_secs(60),
        operation_timeout: std::time::Duration::from_secs(180),
        ..DynamoBounds::from_env()?
    };
    let client = DynamoStore::local_client(&endpoint, &bulk).await;
    println!("| conversations | groups | members | items written | import | records/s | peak RSS | DynamoDB calls per group | BatchWriteItem floor | import ÷ floor | export | export peak RSS | export calls per group |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for &n in &args.sizes {
        let file = args.work.join(format!("export-{n}.jsonl"));
        let (groups, members) = write_export(&file, n)?;
        let table = format!("im-bench-import-{n}-{}", std::process::id());
        let floor_table = format!("{table}-floor");
        table_without_stream(&client, &table).await?;
        let store = DynamoStore::new(client.clone(), &table);
        let app = TestApp::register(&store, "bench-import").await;
        let before = scan_all(&client, &table).await?.len();

        let report = args.work.join(format!("report-{n}.jsonl"));
        let imported = run_child(&endpoint, &table, &app.app_id, Some(&file), &report).await?;
        let outcomes = outcomes(&report)?;
        ensure!(
            outcomes.get("imported").copied() == Some(groups),
            "the import did not import all {groups} groups: {outcomes:?}"
        );
        let exported_file = args.work.join(format!("exported-{n}.jsonl"));
        let exported = run_child(&endpoint, &table, &app.app_id, None, &exported_file).await?;
        let lines = std::io::BufReader::new(std::fs::File::open(&exported_file)?)
            .lines()
            .count();
        ensure!(
            lines == groups,
            "the export wrote {lines} lines for {groups} groups"
        );

        let items = scan_all(&client, &table).await?;
        let written = items.len() - before;
        table_without_stream(&client, &floor_table).await?;
        let floor_secs = batch_write_all(&client, &floor_table, items).await?;
        for t in [&table, &floor_table] {
            client.delete_table().table_name(t).send().await?;
        }

        let per_group = |run: &Run| {
            let mut ops: Vec<String> = run
                .calls
                .iter()
                .map(|(op, k)| format!("{:.2} {op}", *k as f64 / groups as f64))
                .collect();
            ops.push(format!("= {:.2}", run.calls_total() as f64 / groups as f64));
            ops.join(", ")
        };
        println!(
            "| {n} | {groups} | {members} | {written} | {:.1} s | {:.0} | {:.1} MiB | {} | {floor_secs:.1} s | {:.0}% | {:.1} s | {:.1} MiB | {:.2} |",
            imported.secs,
            n as f64 / imported.secs,
            imported.peak_rss_kib as f64 / 1024.0,
            per_group(&imported),
            100.0 * floor_secs / imported.secs,
            exported.secs,
            exported.peak_rss_kib as f64 / 1024.0,
            exported.calls_total() as f64 / groups as f64,
        );
        std::fs::remove_file(&file)?;
        std::fs::remove_file(&exported_file)?;
    }
    ddb.stop().await;
    Ok(())
}

/// The service's table as the template declares it, then without its stream.
async fn table_without_stream(client: &Client, name: &str) -> Result<()> {
    im_admin::table::ensure_table(client, name).await?;
    client
        .update_table()
        .table_name(name)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(false)
                .build()?,
        )
        .send()
        .await
        .map_err(
            |e| anyhow::anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()),
        )?;
    Ok(())
}

async fn local_client(endpoint: &str) -> Result<Client> {
    Ok(DynamoStore::local_client(endpoint, &DynamoBounds::from_env()?).await)
}

/// Writes `n` conversations, every one a group by the default rule (`attr.type ==
/// "group"`), seeded so that every run writes the same file. Returns the groups and the
/// members in all.
fn write_export(path: &Path, n: usize) -> Result<(usize, usize)> {
    let mut rng = StdRng::seed_from_u64(24);
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    let mut members_total = 0;
    for i in 0..n {
        let size = if i % BIG_EVERY == BIG_EVERY / 2 {
            BIG_MEMBERS
        } else {
            rng.random_range(2..=14)
        };
        // Clients drawn from a population ten times the groups: many are in several.
        let mut m: Vec<String> = Vec::with_capacity(size);
        while m.len() < size {
            let id = format!("u{}", rng.random_range(0..n * 10));
            if !m.contains(&id) {
                m.push(id);
            }
        }
        members_total += m.len();
        let mut attr = json!({"type": "group"});
        if i % 2 == 0 {
            attr["group_id"] = json!(i + 1);
        }
        let record = json!({
            "objectId": format!("{:024x}", 0x5dee_0000_0000_0000_0000_0000u128 + i as u128),
            "name": format!("group {i}"),
            "m": m,
            "c": m[0],
            "tr": false,
            "unique": false,
            "attr": attr,
            "createdAt": "2024-05-01T08:00:00.000Z",
            "updatedAt": "2025-11-30T12:00:00.000Z",
        });
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok((n, members_total))
}

/// Spawns this binary's `import-child` and waits for it with `wait4`, for its own peak
/// RSS (the kernel's high-water mark of the child alone).
async fn run_child(
    endpoint: &str,
    table: &str,
    app: &str,
    file: Option<&Path>,
    out: &Path,
) -> Result<Run> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.env("AWS_ENDPOINT_URL_DYNAMODB", endpoint);
    cmd.args(["import-child", "--table", table, "--app", app, "--out"])
        .arg(out);
    if let Some(f) = file {
        cmd.arg("--file").arg(f);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let mut stdout = child.stdout.take().context("the child's stdout")?;
        let mut printed = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut printed)?;
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value, and wait4 writes only into these.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = child.id() as libc::pid_t;
        // SAFETY: waits for our own child, which nothing else waits for.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let secs = started.elapsed().as_secs_f64();
        if waited != pid {
            bail!("wait4: {}", std::io::Error::last_os_error());
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!("the child failed (status {status}); see its output above");
        }
        // The command's own summary comes first; the counts are the last line.
        let last = printed.lines().last().unwrap_or_default();
        let calls: BTreeMap<String, u64> = serde_json::from_str(last)
            .with_context(|| format!("the child's call counts in: {printed}"))?;
        Ok(Run {
            secs,
            peak_rss_kib: usage.ru_maxrss,
            calls,
        })
    })
    .await?
}

fn outcomes(report: &Path) -> Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for line in std::io::BufReader::new(std::fs::File::open(report)?).lines() {
        let v: Value = serde_json::from_str(&line?)?;
        let outcome = v["outcome"].as_str().unwrap_or("?").to_owned();
        *out.entry(outcome).or_default() += 1;
    }
    Ok(out)
}

async fn scan_all(client: &Client, table: &str) -> Result<Vec<Item>> {
    let pages: Vec<_> = client
        .scan()
        .table_name(table)
        .into_paginator()
        .items()
        .send()
        .collect()
        .await;
    pages
        .into_iter()
        .map(|r| {
            r.map_err(|e| {
                anyhow::anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
            })
        })
        .collect()
}

/// Writes `items` into `table` by BatchWriteItem and returns the seconds it took.
async fn batch_write_all(client: &Client, table: &str, items: Vec<Item>) -> Result<f64> {
    let mut batches: Vec<Vec<WriteRequest>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let batch = items
            .by_ref()
            .take(BATCH)
            .map(|item| {
                Ok(WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build()?)
                    .build())
            })
            .collect::<Result<Vec<_>>>()?;
        batches.push(batch);
    }
    let calls = std::sync::atomic::AtomicU64::new(0);
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(batches)
        .map(|mut batch| {
            let calls = &calls;
            async move {
                while !batch.is_empty() {
                    calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let answer = client
                        .batch_write_item()
                        .request_items(table, std::mem::take(&mut batch))
                        .send()
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!(
                                aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
                            )
                        })?;
                    batch = answer
                        .unprocessed_items
                        .and_then(|mut u| u.remove(table))
                        .unwrap_or_default();
                }
                Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "floor: {} BatchWriteItem calls in {secs:.1} s",
        calls.into_inner()
    );
    Ok(secs)
}
