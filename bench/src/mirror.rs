//! `im-bench mirror`: what mirroring a group into its IM cloud costs, measured three ways.
//!
//! 1. Lag, through im-local: an app registered on im-local's table is pointed at an IM
//!    cloud stand-in served in this process; a group is created over HTTP, then members
//!    are added one at a time, and each write is timed from its `201` (the write is
//!    committed) until the stand-in's conversation holds the new member. The stand-in's
//!    memory is looked at every millisecond, so each figure is late by up to ~1 ms.
//! 2. im-local's CPU (utime + stime of the whole process, `--pid`), mirroring on minus
//!    mirroring off: the same writes again for a second app whose mirroring is off, paced
//!    like the first run so that the idle reads of the stream cost both runs the same.
//!    With mirroring off the poller still reads every record and hands it to the handler,
//!    which reads the group's cursor and the app's settings and stops; the difference is
//!    what mirroring adds on top (the vendor calls, the group read, the cursor writes).
//! 3. The handler alone, as the `sync-conversations` function runs it: the poller im-local
//!    uses, on a table of its own, hands the batches to `Syncer::handle` on a
//!    current-thread runtime in a thread of its own, and each invocation's CPU time is
//!    that thread's (`CLOCK_THREAD_CPUTIME_ID`), so nothing else in the process counts.
//!    The batch is parsed from JSON and the answer serialized inside the measured span,
//!    as the Lambda runtime would.
//!
//! It needs `AWS_ENDPOINT_URL_DYNAMODB` (im-local's DynamoDB Local) and `TABLE_NAME`
//! (im-local's table).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cpu_time::ThreadTime;
use im_e2e::im_cloud::ImCloudStandIn;
use im_e2e::stack::TestApp;
use im_local::stream::{
    BoxError, DynamoDbEventResponse, PollerSettings, StreamEvent, StreamHandler, StreamPoller,
};
use im_shared::api::{router, AppState};
use im_shared::config::{Config, DynamoBounds};
use im_shared::model::{ImCloud, OnDelete};
use im_shared::routes::Function;
use im_shared::store::dynamo::layout;
use im_shared::store::DynamoStore;
use im_sync::mirror::DEADLINE_MARGIN;
use im_sync::Syncer;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::percentile;

/// The client id system messages are sent as (on, as for `make run`'s development app).
const SYSTEM: &str = "imsystem";

/// How long one write may take to reach the stand-in before the run is abandoned.
const LAG_LIMIT: Duration = Duration::from_secs(60);

pub struct Args {
    /// im-local's base URL.
    pub url: String,
    pub writes: usize,
    /// im-local's process id, for its CPU time.
    pub pid: Option<u32>,
    /// The longest pause before a write; each pause is drawn at random up to it.
    pub pause: Duration,
}

pub async fn mirror(args: Args) -> Result<()> {
    ensure!(args.writes > 0, "--writes must be at least 1");
    let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .context("AWS_ENDPOINT_URL_DYNAMODB (im-local's DynamoDB Local) is not set")?;
    let table = std::env::var("TABLE_NAME").context("TABLE_NAME (im-local's table) is not set")?;
    let client = DynamoStore::local_client(&endpoint, &DynamoBounds::from_env()?).await;
    let store = DynamoStore::new(client, &table);
    let http = im_e2e::http::client();
    let local = Local {
        http: http.clone(),
        base: args.url.trim_end_matches('/').to_owned(),
    };
    // Whatever earlier steps wrote is behind the poller before anything is timed.
    local.drained().await?;

    // --- 1. lag, and im-local's CPU with mirroring on -----------------------------------
    let on_app = TestApp::register(&store, "bench-mirror").await;
    let cloud = ImCloudStandIn::start(&on_app.app_id, &on_app.master_key).await;
    let settings = ImCloud::new(
        cloud.url(),
        true,
        true,
        Some(SYSTEM.to_owned()),
        OnDelete::Keep,
    )?;
    store.set_im_cloud(&on_app.app_id, &settings).await?;
    let writer = Writer::new(&http, &local.base, &on_app);
    let group = writer.create_group().await?;
    let conversation = wait_for_conversation(&cloud, group).await?;
    let before = local.counters(args.pid).await?;
    let on = lag_run(
        &writer,
        group,
        &cloud,
        &conversation,
        args.writes,
        args.pause,
    )
    .await?;
    let after = local.counters(args.pid).await?;
    let on_window = after.since(&before);

    let lags: Vec<f64> = on.iter().map(|s| ms(s.lag)).collect();
    println!(
        "lag, im-local: {}",
        summary(&lags, "sequential add-member writes")
    );
    println!("  slowest: {}", slowest(&lags, 5));

    // --- 2. im-local's CPU with mirroring off, the same writes at the same pace -------------
    if let Some(pid) = args.pid {
        let off_app = TestApp::register(&store, "bench-mirror-off").await;
        let off = ImCloud::new(
            cloud.url(),
            false,
            true,
            Some(SYSTEM.to_owned()),
            OnDelete::Keep,
        )?;
        store.set_im_cloud(&off_app.app_id, &off).await?;
        let writer = Writer::new(&http, &local.base, &off_app);
        let group = writer.create_group().await?;
        let before = local.counters(Some(pid)).await?;
        for (i, sample) in on.iter().enumerate() {
            let started = Instant::now();
            writer.add(group, &member(i)).await?;
            tokio::time::sleep_until((started + sample.total).into()).await;
        }
        let after = local.counters(Some(pid)).await?;
        let off_window = after.since(&before);
        let (on_cpu, off_cpu) = (on_window.cpu_ms(), off_window.cpu_ms());
        let per_record = (on_cpu - off_cpu) / on_window.delivered as f64;
        println!(
            "im-local CPU, mirroring on minus off: {on_cpu:.0} ms - {off_cpu:.0} ms = {:.0} ms over {} stream records handed over = {:.0} µs per record",
            on_cpu - off_cpu,
            on_window.delivered,
            per_record * 1000.0
        );
        println!(
            "  on: {:.1} s, {} records read from the stream, {} handed over; off: {:.1} s, {} read, {} handed over",
            on_window.wall.as_secs_f64(),
            on_window.read,
            on_window.delivered,
            off_window.wall.as_secs_f64(),
            off_window.read,
            off_window.delivered
        );
    }
    drop(cloud);

    // --- 3. the handler alone, on its own thread ------------------------------------------
    in_process(&endpoint, &http, args.writes, args.pause).await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn member(i: usize) -> String {
    format!("member-{i}")
}

fn summary(values: &[f64], what: &str) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "{} {what}, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sorted.len(),
        percentile(&sorted, 50.0),
        percentile(&sorted, 90.0),
        percentile(&sorted, 99.0),
        sorted.last().copied().unwrap_or(f64::NAN)
    )
}

/// The `n` largest values, with the index of the write each belongs to.
fn slowest(values: &[f64], n: usize) -> String {
    let mut indexed: Vec<(usize, f64)> = values.iter().copied().enumerate().collect();
    indexed.sort_by(|a, b| b.1.total_cmp(&a.1));
    indexed
        .iter()
        .take(n)
        .map(|(i, v)| format!("#{i} {v:.1} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

// --- writes ------------------------------------------------------------------------------

/// Writes as one app's client, over HTTP.
struct Writer {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Writer {
    fn new(http: &reqwest::Client, base: &str, app: &TestApp) -> Self {
        Self {
            http: http.clone(),
            base: base.to_owned(),
            token: app.token("alice"),
        }
    }

    async fn create_group(&self) -> Result<u64> {
        let resp = self
            .http
            .post(format!("{}/im/group", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"group_name": "bench", "member_client_ids": "bob", "max_members": 5000}))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        ensure!(
            status == 201,
            "creating the group answered {status}: {body}"
        );
        body["group_id"]
            .as_u64()
            .context("the created group has no group_id")
    }

    async fn add(&self, group: u64, member: &str) -> Result<()> {
        let resp = self
            .http
            .post(format!("{}/im/group/{group}/member", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "member_client_ids": member }))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        ensure!(
            status == 201,
            "adding {member} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }
}

struct Sample {
    member: String,
    /// When the write's answer came.
    committed: Instant,
    /// From the write's answer until the stand-in held the member.
    lag: Duration,
    /// From the pause before the write until the stand-in held the member.
    total: Duration,
}

/// Adds `writes` new members one after another, each once the previous one is mirrored
/// and a random pause (up to `pause`) has passed. Without the pause each write would come
/// at the same point of the poller's cycle (just after it handed over the last one), and
/// the lag would measure that point rather than the spread a write at any moment sees.
async fn lag_run(
    writer: &Writer,
    group: u64,
    cloud: &ImCloudStandIn,
    conversation: &str,
    writes: usize,
    pause: Duration,
) -> Result<Vec<Sample>> {
    let mut samples = Vec::with_capacity(writes);
    for i in 0..writes {
        let m = member(i);
        let started = Instant::now();
        tokio::time::sleep(pause.mul_f64(rand::random::<f64>())).await;
        writer.add(group, &m).await?;
        let committed = Instant::now();
        while !cloud
            .conversation(conversation)
            .is_some_and(|c| c.members.contains(&m))
        {
            if committed.elapsed() > LAG_LIMIT {
                bail!("{m} did not reach the stand-in within {LAG_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(Sample {
            member: m,
            committed,
            lag: committed.elapsed(),
            total: started.elapsed(),
        });
    }
    Ok(samples)
}

/// The one conversation the mirror made for `group`.
async fn wait_for_conversation(cloud: &ImCloudStandIn, group: u64) -> Result<String> {
    let started = Instant::now();
    loop {
        if let [c] = cloud.conversations_for_group(group).as_slice() {
            return Ok(c.id.clone());
        }
        if started.elapsed() > LAG_LIMIT {
            bail!("group {group} got no conversation within {LAG_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// --- im-local ----------------------------------------------------------------------------

struct Local {
    http: reqwest::Client,
    base: String,
}

/// im-local's CPU time and its poller's counts of stream records, at one moment.
struct Counters {
    at: Instant,
    cpu: Duration,
    read: u64,
    /// Those of the records read that passed the filter and were handed to the handler.
    delivered: u64,
}

struct Window {
    wall: Duration,
    cpu: Duration,
    read: u64,
    delivered: u64,
}

impl Window {
    fn cpu_ms(&self) -> f64 {
        ms(self.cpu)
    }
}

impl Counters {
    fn since(&self, before: &Counters) -> Window {
        Window {
            wall: self.at - before.at,
            cpu: self.cpu.saturating_sub(before.cpu),
            read: self.read - before.read,
            delivered: self.delivered - before.delivered,
        }
    }
}

impl Local {
    /// Waits until the poller has handed over everything written so far.
    async fn drained(&self) -> Result<Value> {
        let status: Value = self
            .http
            .get(format!("{}/_local/stream?wait_drained_ms=60000", self.base))
            .send()
            .await?
            .error_for_status()
            .context("GET /_local/stream (is im-local's stream poller on?)")?
            .json()
            .await?;
        ensure!(
            status["drained"] == true,
            "im-local's stream did not drain within a minute: {status}"
        );
        Ok(status)
    }

    /// Once the poller has handed over everything written so far.
    async fn counters(&self, pid: Option<u32>) -> Result<Counters> {
        let status = self.drained().await?;
        let count = |name: &str| {
            status["status"][name]
                .as_u64()
                .with_context(|| format!("/_local/stream has no status.{name}"))
        };
        Ok(Counters {
            at: Instant::now(),
            cpu: match pid {
                Some(pid) => process_cpu(pid)?,
                None => Duration::ZERO,
            },
            read: count("records_read")?,
            delivered: count("records_delivered")?,
        })
    }
}

/// User plus system CPU time of every thread of process `pid` so far (`/proc/PID/stat`,
/// in clock ticks: 10 ms steps on most kernels).
fn process_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: count fields after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("a /proc/PID/stat without a command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime); `rest` starts at field 3.
    let ticks: u64 = fields
        .get(11..13)
        .context("a short /proc/PID/stat")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ensure!(hz > 0, "sysconf(_SC_CLK_TCK) failed");
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz as u64))
}

// --- the handler alone -------------------------------------------------------------------

struct Invocation {
    started: Instant,
    /// The client ids of the batch's member records.
    members: Vec<String>,
    records: usize,
    cpu: Duration,
    wall: Duration,
}

/// The client ids of the member items (`sk` = `MEMBER#<id>`) in a stream event's JSON.
fn batch_members(payload: &[u8]) -> Vec<String> {
    let event: Value = serde_json::from_slice(payload).unwrap_or_default();
    event["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["dynamodb"]["Keys"]["sk"]["S"].as_str())
        .filter_map(|sk| sk.strip_prefix(layout::MEMBER_PREFIX))
        .map(str::to_owned)
        .collect()
}

type Call = (StreamEvent, oneshot::Sender<DynamoDbEventResponse>);

/// `Syncer::handle` on a current-thread runtime of its own thread: the DynamoDB and HTTP
/// clients are made there too, so their connections' tasks run (and are counted) there.
struct HandlerThread {
    calls: mpsc::UnboundedSender<Call>,
    tally: Arc<Mutex<Vec<Invocation>>>,
}

impl HandlerThread {
    fn start(endpoint: String, table: String) -> Result<Self> {
        let (calls, mut rx) = mpsc::unbounded_channel::<Call>();
        let tally = Arc::new(Mutex::new(Vec::new()));
        let kept = tally.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let bounds = DynamoBounds::from_env()?;
        std::thread::Builder::new()
            .name("sync-handler".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // As im-local builds its handler.
                    let sdk = DynamoStore::local_config(&endpoint, &bounds).await;
                    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
                    let syncer = Syncer::with_client(store).expect("the sync handler");
                    while let Some((event, reply)) = rx.recv().await {
                        let payload = serde_json::to_vec(&event).expect("a stream event");
                        let (wall, cpu) = (Instant::now(), ThreadTime::now());
                        let event: StreamEvent =
                            serde_json::from_slice(&payload).expect("a stream event");
                        let records = event.records.len();
                        let deadline = Instant::now() + Duration::from_secs(60) - DEADLINE_MARGIN;
                        let response = syncer.handle(event, deadline).await;
                        let answer = serde_json::to_vec(&response).expect("an answer");
                        std::hint::black_box(answer);
                        let invocation = Invocation {
                            started: wall,
                            members: batch_members(&payload),
                            records,
                            cpu: cpu.elapsed(),
                            wall: wall.elapsed(),
                        };
                        kept.lock().unwrap().push(invocation);
                        let _ = reply.send(response);
                    }
                })
            })?;
        Ok(Self { calls, tally })
    }

    fn handler(&self) -> Arc<dyn StreamHandler> {
        let calls = self.calls.clone();
        Arc::new(move |event| {
            let calls = calls.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                calls
                    .send((event, reply))
                    .map_err(|_| BoxError::from("the handler thread is gone"))?;
                answer
                    .await
                    .map_err(|_| BoxError::from("the handler thread dropped a batch"))
            }
        })
    }

    fn take(&self) -> Vec<Invocation> {
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

/// The same app settings, writes and poller as through im-local, on a new table of
/// DynamoDB Local, with the service and the poller in this process and the handler on
/// its own thread.
async fn in_process(
    endpoint: &str,
    http: &reqwest::Client,
    writes: usize,
    pause: Duration,
) -> Result<()> {
    let sdk = DynamoStore::local_config(endpoint, &DynamoBounds::from_env()?).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = im_e2e::stack::unique("im-bench-sync");
    im_admin::table::ensure_table(&client, &table).await?;
    let store = DynamoStore::new(client.clone(), &table);
    let app = TestApp::register(&store, "bench-handler").await;
    let cloud = ImCloudStandIn::start(&app.app_id, &app.master_key).await;
    let settings = ImCloud::new(
        cloud.url(),
        true,
        true,
        Some(SYSTEM.to_owned()),
        OnDelete::Keep,
    )?;
    store.set_im_cloud(&app.app_id, &settings).await?;

    let meter = HandlerThread::start(endpoint.to_owned(), table.clone())?;
    let dir = std::env::temp_dir().join(im_e2e::stack::unique("im-bench-sync"));
    std::fs::create_dir_all(&dir)?;
    let poller = StreamPoller::start(
        &sdk,
        &table,
        PollerSettings::new(dir.join("dead-letters.jsonl")),
        meter.handler(),
    )
    .await?;
    let base = serve(&table, store).await?;

    let writer = Writer::new(http, &base, &app);
    let group = writer.create_group().await?;
    let conversation = wait_for_conversation(&cloud, group).await?;
    ensure!(
        poller.wait_drained(LAG_LIMIT).await,
        "the stream did not drain"
    );
    meter.take();
    let samples = lag_run(&writer, group, &cloud, &conversation, writes, pause).await?;
    ensure!(
        poller.wait_drained(LAG_LIMIT).await,
        "the stream did not drain"
    );
    let invocations = meter.take();
    let status = poller.status();
    ensure!(
        status.records_dead_lettered == 0 && status.failed_invocations == 0,
        "the handler failed: {status:?}"
    );
    poller.stop().await;
    let _ = client.delete_table().table_name(&table).send().await;
    let _ = std::fs::remove_dir_all(&dir);

    let records: usize = invocations.iter().map(|i| i.records).sum();
    let cpu: Duration = invocations.iter().map(|i| i.cpu).sum();
    let per_invocation: Vec<f64> = invocations.iter().map(|i| ms(i.cpu)).collect();
    let wall: Vec<f64> = invocations.iter().map(|i| ms(i.wall)).collect();
    let mut sizes: Vec<f64> = invocations.iter().map(|i| i.records as f64).collect();
    sizes.sort_by(f64::total_cmp);
    println!(
        "sync handler alone (Syncer::handle, thread CPU): {:.1} ms over {records} records in {} invocations = {:.0} µs per record",
        ms(cpu),
        invocations.len(),
        ms(cpu) * 1000.0 / records.max(1) as f64
    );
    println!(
        "  CPU per invocation: {}",
        summary(&per_invocation, "invocations")
    );
    println!(
        "  wall time per invocation: {}",
        summary(&wall, "invocations")
    );
    println!(
        "  records per invocation: p50 {}, max {}",
        percentile(&sizes, 50.0),
        sizes.last().copied().unwrap_or(f64::NAN)
    );
    let lags: Vec<f64> = samples.iter().map(|s| ms(s.lag)).collect();
    println!(
        "  lag with the poller and handler in this process: {}",
        summary(&lags, "writes")
    );
    // Where the lag goes: waiting for the poller to hand the write over, then the handler
    // until its members call has landed.
    let split: Vec<Option<(f64, f64)>> = samples
        .iter()
        .map(|s| {
            let i = invocations.iter().find(|i| i.members.contains(&s.member))?;
            let wait = i.started.saturating_duration_since(s.committed);
            Some((ms(wait), ms(s.lag.saturating_sub(wait))))
        })
        .collect();
    let waiting: Vec<f64> = split.iter().flatten().map(|(w, _)| *w).collect();
    let handling: Vec<f64> = split.iter().flatten().map(|(_, h)| *h).collect();
    println!(
        "    until the handler has the write: {}",
        summary(&waiting, "writes")
    );
    println!(
        "    then until the stand-in has it: {}",
        summary(&handling, "writes")
    );
    let mut order: Vec<usize> = (0..lags.len()).collect();
    order.sort_by(|a, b| lags[*b].total_cmp(&lags[*a]));
    let slowest: Vec<String> = order
        .iter()
        .take(5)
        .map(|&i| match split[i] {
            Some((w, h)) => format!("#{i} {:.1} ms ({w:.1} + {h:.1})", lags[i]),
            None => format!("#{i} {:.1} ms", lags[i]),
        })
        .collect();
    println!(
        "    slowest writes (waiting + handling): {}",
        slowest.join(", ")
    );
    // Whether the handler's cost depends on how many members the group has by then.
    let cpu_ms = |part: &[Invocation]| {
        let mut v: Vec<f64> = part.iter().map(|i| ms(i.cpu)).collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, 50.0)
    };
    let tenth = (invocations.len() / 10).max(1);
    println!(
        "  CPU per invocation, first and last tenth of the writes: p50 {:.2} ms and {:.2} ms",
        cpu_ms(&invocations[..tenth.min(invocations.len())]),
        cpu_ms(&invocations[invocations.len().saturating_sub(tenth)..])
    );
    Ok(())
}

/// The service as im-local builds it, on `table`, served on a free port of 127.0.0.1.
async fn serve(table: &str, store: DynamoStore) -> Result<String> {
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some(table.to_owned()),
        other => std::env::var(other).ok(),
    })?;
    let service = router(AppState::new(config, Arc::new(store)), Function::ALL);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, service).await });
    Ok(base)
}
