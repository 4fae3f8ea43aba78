//! `im-bench`, run by `make bench` (scripts/bench.sh):
//!
//! - `startup`: starts a function binary against an in-process stand-in for the Lambda
//!   Runtime API and measures the time from process start to its first request for an
//!   event (the init phase), then feeds it events and measures each invocation and the
//!   process's peak memory.
//! - `load`: a closed-loop HTTP load with a fixed number of connections, reporting
//!   requests per second and latency percentiles.
//! - `mirror`: the lag from a group write on im-local to the IM cloud (a stand-in in this
//!   process) holding it, and the CPU the mirror costs per stream record (see `mirror.rs`).
//! - `import`: `im-admin import leancloud` of a generated export and `im-admin export`
//!   of the result, beside DynamoDB Local's `BatchWriteItem` floor (see `import.rs`).
//! - `callback`: the answer time of Tencent's callback endpoint on im-local (see
//!   `callback.rs`).

mod backfill;
mod callback;
mod import;
mod mirror;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use clap::{Parser, Subcommand};
use im_shared::api::routes;
use tokio::sync::{mpsc, Mutex};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Startup {
        /// The function binary.
        #[arg(long)]
        binary: PathBuf,
        /// The API Gateway event to send it.
        #[arg(long)]
        event: PathBuf,
        /// Separate process starts to time.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Events sent to the last process, to time warm invocations and read its memory.
        #[arg(long, default_value_t = 2000)]
        invocations: usize,
        /// Print one JSON object (for scripts/bench.sh's table) instead of text lines.
        #[arg(long)]
        json: bool,
    },
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "GET")]
        method: String,
        /// Request body; `{n}` is replaced by the request's sequence number.
        #[arg(long)]
        body: Option<String>,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Every response must have this status.
        #[arg(long, default_value_t = 200)]
        expect: u16,
        /// Sent as `Authorization: Bearer <token>`.
        #[arg(long, env = "IM_BENCH_TOKEN")]
        bearer: Option<String>,
    },
    /// Needs `AWS_ENDPOINT_URL_DYNAMODB` and `TABLE_NAME`: im-local's DynamoDB and table.
    Mirror {
        /// im-local's base URL.
        #[arg(long)]
        url: String,
        /// Sequential writes (members added one at a time) per run.
        #[arg(long, default_value_t = 300)]
        writes: usize,
        /// im-local's process id: measures its CPU time with mirroring on and off.
        #[arg(long)]
        pid: Option<u32>,
        /// The longest pause before each write, in ms (each is drawn at random up to it);
        /// the local poller's idle cycle is 100 ms.
        #[arg(long, default_value_t = 100)]
        pause_ms: u64,
    },
    /// Tencent's callback endpoint on im-local, one call at a time: p50/p99 of its answer
    /// time. Needs `AWS_ENDPOINT_URL_DYNAMODB` and `TABLE_NAME`.
    Callback {
        /// im-local's base URL.
        #[arg(long)]
        url: String,
        /// Calls of each kind.
        #[arg(long, default_value_t = 500)]
        calls: usize,
    },
    /// `im-admin sync backfill` into the Tencent stand-in. Needs `AWS_ENDPOINT_URL_DYNAMODB`
    /// and `TABLE_NAME`.
    Backfill {
        #[arg(long, default_value_t = 2000)]
        groups: usize,
        /// The app's max-calls-per-second.
        #[arg(long, default_value_t = 100)]
        app_rate: u32,
        /// The stand-in's limit per command (Tencent's: 200).
        #[arg(long, default_value_t = 200)]
        cloud_rate: u32,
    },
    /// `im-admin import leancloud` and `im-admin export` on DynamoDB Local, and the raw
    /// BatchWriteItem floor. Needs `AWS_ENDPOINT_URL_DYNAMODB`.
    Import {
        /// Conversations in the generated export (repeatable: one row each).
        #[arg(long = "conversations", default_values_t = [10_000, 100_000])]
        sizes: Vec<usize>,
        /// Where the export files and reports go.
        #[arg(long)]
        work: PathBuf,
    },
    /// Every function's name, one a line, from the route list (`make bench` builds and
    /// measures these): the route functions in route order, then the stream function.
    Functions {
        /// Only the functions that serve routes.
        #[arg(long)]
        routes_only: bool,
    },
    /// One measured import or export (spawned by `import`).
    #[command(hide = true)]
    ImportChild(import::Child),
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Startup {
            binary,
            event,
            runs,
            invocations,
            json,
        } => startup(binary, event, runs, invocations, json).await,
        Command::Load {
            url,
            method,
            body,
            connections,
            seconds,
            expect,
            bearer,
        } => load(url, method, body, connections, seconds, expect, bearer).await,
        Command::Backfill {
            groups,
            app_rate,
            cloud_rate,
        } => {
            backfill::backfill(backfill::Args {
                groups,
                app_rate,
                cloud_rate,
            })
            .await
        }
        Command::Import { sizes, work } => import::import(import::Args { sizes, work }).await,
        Command::ImportChild(child) => import::child(child).await,
        Command::Functions { routes_only } => {
            let names = routes::function_names();
            let stream = routes::STREAM_FUNCTIONS;
            for name in names.iter().filter(|n| !routes_only || !stream.contains(n)) {
                println!("{name}");
            }
            Ok(())
        }
        Command::Callback { url, calls } => callback::callback(callback::Args { url, calls }).await,
        Command::Mirror {
            url,
            writes,
            pid,
            pause_ms,
        } => {
            mirror::mirror(mirror::Args {
                url,
                writes,
                pid,
                pause: Duration::from_millis(pause_ms),
            })
            .await
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}

// --- startup -------------------------------------------------------------------------

/// What the stand-in Runtime API reports to the measuring loop.
enum Seen {
    Next,
    Response(String),
}

#[derive(Clone)]
struct RuntimeApi {
    seen: mpsc::UnboundedSender<Seen>,
    /// Events to hand out, one per `next` call; the call waits until one is queued.
    events: Arc<Mutex<mpsc::UnboundedReceiver<String>>>,
    ids: Arc<AtomicU64>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    let _ = api.seen.send(Seen::Next);
    let event = api.events.lock().await.recv().await.unwrap_or_default();
    let id = api.ids.fetch_add(1, Ordering::SeqCst).to_string();
    let mut h = HeaderMap::new();
    h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    h.insert(
        "lambda-runtime-deadline-ms",
        "9999999999999".parse().unwrap(),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:bench"
            .parse()
            .unwrap(),
    );
    h.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".parse().unwrap(),
    );
    (h, event)
}

async fn response(State(api): State<RuntimeApi>, body: String) -> &'static str {
    let _ = api.seen.send(Seen::Response(body));
    "{}"
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `statusCode` of a Lambda HTTP response.
fn status_of(body: &str) -> Option<u16> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("statusCode")?
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
}

async fn startup(
    binary: PathBuf,
    event: PathBuf,
    runs: usize,
    invocations: usize,
    json: bool,
) -> Result<()> {
    let event =
        std::fs::read_to_string(&event).with_context(|| format!("reading {}", event.display()))?;
    let mut init_ms = Vec::new();
    let mut first_ms = Vec::new();
    // Answers by status. The same event is replayed in every run, so a group event may
    // find its work done (409) or not allowed any more (403); only a token that does not
    // verify (401, the bench's set-up is wrong) or a server error stops the measurement.
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut warm_line = String::new();
    let mut warm_json = serde_json::Value::Null;
    for run in 0..runs {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let api = RuntimeApi {
            seen: seen_tx,
            events: Arc::new(Mutex::new(events_rx)),
            ids: Arc::new(AtomicU64::new(1)),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(response))
            .route("/2018-06-01/runtime/init/error", post(response))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let started = Instant::now();
        let mut child = tokio::process::Command::new(&binary)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().unwrap_or_default();
        match tokio::time::timeout(Duration::from_secs(20), seen.recv()).await {
            Ok(Some(Seen::Next)) => init_ms.push(started.elapsed().as_secs_f64() * 1000.0),
            _ => bail!("{} never asked for an event", binary.display()),
        }
        // The first invocation (cold: it reads the master key from DynamoDB) ...
        let last = run + 1 == runs;
        let count = if last { invocations } else { 1 };
        let mut warm = Vec::with_capacity(count);
        for i in 0..count {
            events_tx.send(event.clone())?;
            let sent = Instant::now();
            loop {
                match tokio::time::timeout(Duration::from_secs(20), seen.recv()).await {
                    Ok(Some(Seen::Response(body))) => {
                        let status = status_of(&body).unwrap_or(0);
                        if status == 401 || !(200..500).contains(&status) {
                            bail!("the function answered {body}");
                        }
                        *statuses.entry(status).or_default() += 1;
                        break;
                    }
                    Ok(Some(Seen::Next)) => continue,
                    _ => bail!("no response from the function"),
                }
            }
            let ms = sent.elapsed().as_secs_f64() * 1000.0;
            if i == 0 {
                first_ms.push(ms);
            } else {
                warm.push(ms);
            }
        }
        if last {
            // ... and the warm ones after it.
            let rss = peak_rss_kib(pid);
            warm.sort_by(f64::total_cmp);
            warm_line = format!(
                "warm invocations: {} p50 {:.3} ms p99 {:.3} ms; peak RSS after them: {} KiB",
                warm.len(),
                percentile(&warm, 50.0),
                percentile(&warm, 99.0),
                rss.map_or("unknown".to_owned(), |k| k.to_string())
            );
            warm_json = serde_json::json!({
                "count": warm.len(),
                "p50_ms": percentile(&warm, 50.0),
                "p99_ms": percentile(&warm, 99.0),
                "peak_rss_kib": rss,
            });
        }
        child.kill().await?;
        server.abort();
    }
    init_ms.sort_by(f64::total_cmp);
    first_ms.sort_by(f64::total_cmp);
    if json {
        let report = serde_json::json!({
            "runs": init_ms.len(),
            "startup_ms": {
                "p50": percentile(&init_ms, 50.0),
                "p90": percentile(&init_ms, 90.0),
                "max": init_ms.last(),
            },
            "first_invocation_ms": {
                "p50": percentile(&first_ms, 50.0),
                "p90": percentile(&first_ms, 90.0),
            },
            "statuses": statuses.iter().map(|(s, n)| (s.to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "warm": warm_json,
        });
        println!("{report}");
        return Ok(());
    }
    if !warm_line.is_empty() {
        println!("{warm_line}");
    }
    println!(
        "process start to first event request: {} runs, p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        init_ms.len(),
        percentile(&init_ms, 50.0),
        percentile(&init_ms, 90.0),
        init_ms.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "first invocation (token secret and master key read from DynamoDB Local): p50 {:.2} ms, p90 {:.2} ms",
        percentile(&first_ms, 50.0),
        percentile(&first_ms, 90.0)
    );
    println!("answers by status: {statuses:?}");
    Ok(())
}

// --- load ----------------------------------------------------------------------------

async fn load(
    url: String,
    method: String,
    body: Option<String>,
    connections: usize,
    seconds: u64,
    expect: u16,
    bearer: Option<String>,
) -> Result<()> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (url, method, body, seq) = (url.clone(), method.clone(), body.clone(), seq.clone());
        let bearer = bearer.clone();
        // One client per task: one keep-alive connection each.
        // reqwest is built without a crypto provider (the workspace's features are
        // unified with im-sync's): install the one the workspace links.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut bad = 0u64;
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let mut req = client.request(method.clone(), &url);
                if let Some(token) = &bearer {
                    req = req.bearer_auth(token);
                }
                if let Some(b) = &body {
                    req = req
                        .header("content-type", "application/json")
                        .body(b.replace("{n}", &n.to_string()));
                }
                let started = Instant::now();
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        if status != expect {
                            bad += 1;
                        }
                    }
                    Err(_) => bad += 1,
                }
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            (latencies, bad)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut bad = 0;
    for t in tasks {
        let (l, b) = t.await?;
        all.extend(l);
        bad += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    println!(
        "{} requests in {:.1} s with {} connections: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, unexpected responses {}",
        all.len(),
        elapsed,
        connections,
        all.len() as f64 / elapsed,
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or(f64::NAN),
        bad
    );
    if bad > 0 {
        bail!("{bad} responses were not {expect}");
    }
    Ok(())
}
