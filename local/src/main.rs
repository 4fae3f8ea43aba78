//! `im-local` (what `make run` starts): every route of the service in one process on
//! 127.0.0.1, backed by DynamoDB Local, which it starts and stops itself.
//!
//! Settings (environment): `PORT` (3000; 0 picks a free one), `DYNAMODB_PORT` (8000; 0
//! picks a free one), `TABLE_NAME` (im-local), `IM_DEV_APP_ID` (dev-app),
//! `IM_DEV_MASTER_KEY` (generated and kept in `.local/dev-master-key` when unset),
//! `IM_DEV_TOKEN_KID` (dev) and `IM_DEV_TOKEN_SECRET` (the development token secret;
//! generated and kept in `.local/dev-token-secret` when unset; the banner says where it
//! is, never what it is), `IM_LOCAL_DIR` (.local: data, keys and DynamoDB Local's log;
//! 0700, its files 0600, see `state_dir`), `IM_LOCAL_IN_MEMORY=1`
//! (keep no data), `DYNAMODB_LOCAL_HOME` (the folder of DynamoDBLocal.jar), and
//! `AWS_ENDPOINT_URL_DYNAMODB` to use a DynamoDB that is already running instead (else
//! DynamoDB Local is started on 127.0.0.1 only, see `dynamodb_local`), and
//! `IM_DEV_IM_API` (the development app's IM cloud REST address, to mirror its groups),
//! and `IM_DEV_TENCENT_API` (a Tencent Cloud IM REST address, or a stand-in's: the
//! development app gets Tencent settings, `SDKAppID` 1400000000 and a secret key
//! generated and kept in `.local/dev-tencent-key`, so its clients get UserSigs).
//! Every setting of the functions (`IM_*` limits, `IM_TIMESTAMP_UNIT`) applies too.
//! Besides the routes it serves the API's OpenAPI document at `GET /openapi.yaml`.
//!
//! The table's stream goes to the sync handler as Lambda's event source mapping would
//! hand it over (see `im_local::stream`): `IM_LOCAL_STREAM=off` stops that,
//! `IM_LOCAL_STREAM_MAX_RETRIES` (10) is the mapping's `MaximumRetryAttempts`, and
//! records whose retries run out are appended to `IM_LOCAL_STREAM_DEAD_LETTERS`
//! (`<IM_LOCAL_DIR>/stream-dead-letters.jsonl`). Unless `IM_LOCAL_IN_MEMORY=1`, each
//! shard's position is kept in `<IM_LOCAL_DIR>/stream-checkpoints.json` across restarts.

mod state_dir;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use im_local::stream::{PollerSettings, StreamHandler, StreamPoller};
use im_shared::api::{router, AppState};
use im_shared::auth;
use im_shared::config::Config;
use im_shared::model::{ImCloud, OnDelete, Secret, TencentCloud, TencentSpec};
use im_shared::routes::Function;
use im_shared::store::{DynamoStore, StoreError};
use im_sync::mirror::DEADLINE_MARGIN;
use im_sync::Syncer;
use rand::distr::{Alphanumeric, SampleString};
use std::time::{Duration, Instant};

use im_local::dynamodb_local::{self, DynamoDbLocal};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn port(name: &str, default: &str) -> Result<u16> {
    env_or(name, default)
        .parse()
        .with_context(|| format!("{name} must be a port number"))
}

#[tokio::main]
async fn main() -> Result<()> {
    // Before any file is made: what im-local and DynamoDB Local create is theirs alone.
    state_dir::private_umask();
    im_shared::telemetry::init();
    let state_dir = PathBuf::from(env_or("IM_LOCAL_DIR", ".local"));
    state_dir::prepare(&state_dir)?;
    let table = env_or("TABLE_NAME", "im-local");
    let app_id = env_or("IM_DEV_APP_ID", "dev-app");
    im_shared::model::ids::check_id("IM_DEV_APP_ID", &app_id, 64)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let in_memory = env_or("IM_LOCAL_IN_MEMORY", "0") == "1";

    // DynamoDB: the one given, or our own DynamoDB Local.
    let mut ddb = None;
    let endpoint = match std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(endpoint) => endpoint,
        None => {
            let home = dynamodb_local::find_home()?;
            let mut ddb_port = port("DYNAMODB_PORT", "8000")?;
            if ddb_port == 0 {
                ddb_port = dynamodb_local::free_port()?;
            }
            let data_dir = state_dir.join(state_dir::DYNAMODB_DATA);
            let started = DynamoDbLocal::start(
                &home,
                ddb_port,
                (!in_memory).then_some(data_dir.as_path()),
                &state_dir.join("dynamodb-local.log"),
            )
            .await?;
            let endpoint = started.endpoint();
            ddb = Some(started);
            endpoint
        }
    };
    let result = serve(&state_dir, in_memory, &table, &app_id, &endpoint).await;
    if let Some(ddb) = ddb {
        ddb.stop().await;
    }
    result
}

async fn serve(
    state_dir: &Path,
    in_memory: bool,
    table: &str,
    app_id: &str,
    endpoint: &str,
) -> Result<()> {
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some(table.to_owned()),
        other => std::env::var(other).ok(),
    })?;
    let sdk = DynamoStore::local_config(endpoint, &config.dynamodb).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    im_admin::table::ensure_table(&client, table).await?;
    // Dropped when serving ends, which stops it.
    let (poller, stream_note) = start_stream_poller(state_dir, in_memory, table, &sdk).await?;
    let poller = poller.map(Arc::new);
    let store = DynamoStore::new(client, table);
    let key_note = register_dev_app(&store, state_dir, app_id).await?;
    let kid = env_or("IM_DEV_TOKEN_KID", "dev");
    let (token_secret, secret_note) =
        register_dev_token_key(&store, state_dir, app_id, &kid).await?;
    let mirror_note = dev_im_cloud(&store, app_id).await?;
    let tencent_note = dev_tencent(&store, state_dir, app_id).await?;
    // Short-lived, and a plain client's (not the backend's): the one credential the banner
    // shows. The secret that mints any token, admin ones included, stays in its file.
    let example = auth::mint(
        &kid,
        &token_secret,
        &auth::claims_for("alice", false, EXAMPLE_TOKEN_SECONDS),
    )?;

    let mut app = router(AppState::new(config, Arc::new(store)), Function::ALL)
        .route("/openapi.yaml", axum::routing::get(openapi_yaml));
    if let Some(poller) = &poller {
        let poller = poller.clone();
        app = app.route(
            STREAM_STATUS_PATH,
            axum::routing::get(move |query| stream_status(poller.clone(), query)),
        );
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port("PORT", "3000")?))
        .await
        .context("binding the HTTP port (is PORT already in use?)")?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("im-local: development app {app_id:?}, {key_note}");
    println!("im-local: token secret (kid {kid:?}): {secret_note}");
    println!(
        "im-local: a token for client \"alice\", valid for {} minutes:\n  {example}",
        EXAMPLE_TOKEN_SECONDS / 60
    );
    println!(
        "im-local: try  curl -H 'Authorization: Bearer {example}' {url}/signature/login/{app_id}/alice"
    );
    println!("im-local: more tokens (an hour each): make token SUB=<client id> [ADMIN=1]");
    println!("im-local: the API's OpenAPI document: {url}/openapi.yaml");
    println!("im-local: {stream_note}");
    println!("im-local: {mirror_note}");
    println!("im-local: {tencent_note}");
    if poller.is_some() {
        println!(
            "im-local: the stream's progress: {url}{STREAM_STATUS_PATH} (?wait_drained_ms=N waits until it has caught up)"
        );
    }
    println!("im-local ready: {url} dynamodb={endpoint} table={table} app={app_id}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    println!("im-local: stopped");
    Ok(())
}

/// The handler the table's stream goes to: the one the `sync-conversations` function
/// runs, given the same time an invocation of it has (60 s, less its margin).
async fn sync_handler(
    sdk: &aws_config::SdkConfig,
    table: &str,
) -> Result<Option<Arc<dyn StreamHandler>>> {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table);
    let syncer = Arc::new(Syncer::with_client(store)?);
    // The template's schedule, here a timer: records deferred while an app was over its
    // IM cloud's quota are applied once its pause is over.
    let every = Duration::from_millis(
        std::env::var("IM_LOCAL_DRAIN_INTERVAL_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            // 0 (or garbage) would spin: the default instead.
            .filter(|ms| *ms > 0)
            .unwrap_or(1_000),
    );
    let drainer = syncer.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            drainer
                .drain(Instant::now() + Duration::from_secs(60) - DEADLINE_MARGIN)
                .await;
        }
    });
    let handler = move |event| {
        let syncer = syncer.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60) - DEADLINE_MARGIN;
            Ok(syncer.handle(event, deadline).await)
        }
    };
    Ok(Some(Arc::new(handler)))
}

/// The development app's IM cloud: `IM_DEV_IM_API` (a server address), mirrored with
/// system messages from client `system`; without it, mirroring is off for the app.
async fn dev_im_cloud(store: &DynamoStore, app_id: &str) -> Result<String> {
    match std::env::var("IM_DEV_IM_API")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(server) => {
            let settings = ImCloud::new(&server, true, true, Some("system".into()), OnDelete::Keep)
                .map_err(|e| anyhow::anyhow!("IM_DEV_IM_API: {e}"))?;
            store.set_im_cloud(app_id, &settings).await?;
            Ok(format!(
                "groups of {app_id} are mirrored into the IM cloud at {server} (IM_DEV_IM_API)"
            ))
        }
        None => {
            if let Some(old) = store.im_cloud(app_id).await? {
                let off = ImCloud::new(
                    old.server(),
                    false,
                    old.system_messages(),
                    old.system_client().map(str::to_owned),
                    old.on_delete(),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                store.set_im_cloud(app_id, &off).await?;
            }
            Ok(format!("mirroring is off for {app_id}: set IM_DEV_IM_API to its IM cloud's REST address to mirror its groups"))
        }
    }
}

/// The development app's Tencent `SDKAppID`: a fixed one, so that a stand-in (or a
/// client's configuration) set up once keeps working across runs.
const DEV_SDK_APP_ID: u64 = 1_400_000_000;

/// The development app's Tencent Cloud IM: `IM_DEV_TENCENT_API` (a REST server
/// address), with [`DEV_SDK_APP_ID`], the REST admin `administrator` and a secret key
/// generated once and kept in `dev-tencent-key` beside the other local secrets; without
/// it, mirroring into Tencent is off for the app (its settings and key stay).
async fn dev_tencent(store: &DynamoStore, state_dir: &Path, app_id: &str) -> Result<String> {
    let Some(server) = std::env::var("IM_DEV_TENCENT_API")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        if let Some(old) = store.tencent_cloud(app_id).await? {
            let mut spec = old.spec().clone();
            spec.mirroring = false;
            let off = TencentCloud::new(spec).map_err(|e| anyhow::anyhow!("{e}"))?;
            store.set_tencent(app_id, &off, None).await?;
        }
        return Ok(format!(
            "Tencent Cloud IM is off for {app_id}: set IM_DEV_TENCENT_API to a Tencent REST address to turn it on"
        ));
    };
    let mut spec = TencentSpec::new(&server, DEV_SDK_APP_ID, "administrator");
    spec.system_messages = true;
    let settings =
        TencentCloud::new(spec).map_err(|e| anyhow::anyhow!("IM_DEV_TENCENT_API: {e}"))?;
    let key_file = state_dir.join("dev-tencent-key");
    if !key_file.is_file() {
        // Tencent's secret keys are 64 hex digits.
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&key_file, &hex)?;
    }
    let key = im_admin::keyinput::read_key(Some(&key_file))?;
    store.set_tencent(app_id, &settings, Some(&key)).await?;
    Ok(format!(
        "Tencent Cloud IM is on for {app_id} (IM_DEV_TENCENT_API): REST server {}, sdkappid {DEV_SDK_APP_ID}, admin administrator, secret key stored in {}; UserSigs at /signature/usersig/{app_id}/<client id>",
        settings.server(),
        key_file.display()
    ))
}

/// Starts reading the table's stream (unless `IM_LOCAL_STREAM=off`, or no handler is
/// wired yet); returns the poller and the banner's line about it.
async fn start_stream_poller(
    state_dir: &Path,
    in_memory: bool,
    table: &str,
    sdk: &aws_config::SdkConfig,
) -> Result<(Option<StreamPoller>, String)> {
    let dead_letters = std::env::var_os("IM_LOCAL_STREAM_DEAD_LETTERS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("stream-dead-letters.jsonl"));
    if env_or("IM_LOCAL_STREAM", "on") == "off" {
        return Ok((
            None,
            "stream poller off (IM_LOCAL_STREAM=off): group changes are not mirrored".into(),
        ));
    }
    // A table kept from before the stream existed gets one now.
    im_admin::table::ensure_stream(&aws_sdk_dynamodb::Client::new(sdk), table).await?;
    let Some(handler) = sync_handler(sdk, table).await? else {
        return Ok((None, "stream poller off: no sync handler".to_owned()));
    };
    let mut settings = PollerSettings::new(&dead_letters);
    settings.maximum_retry_attempts = env_or("IM_LOCAL_STREAM_MAX_RETRIES", "10")
        .parse()
        .context("IM_LOCAL_STREAM_MAX_RETRIES must be a whole number")?;
    if !in_memory {
        settings.checkpoint_path = Some(state_dir.join("stream-checkpoints.json"));
    }
    let retries = settings.maximum_retry_attempts;
    let poller = StreamPoller::start(sdk, table, settings, handler).await?;
    let note = format!(
        "stream poller on: {} -> the sync handler ({retries} retries, then dead letters in {})",
        poller.stream_arn(),
        dead_letters.display()
    );
    Ok((Some(poller), note))
}

/// Where the stream poller's counters are served: for the tests and benchmarks that drive
/// im-local over HTTP and must know when the stream has caught up. Not a route of the
/// service.
const STREAM_STATUS_PATH: &str = "/_local/stream";

#[derive(serde::Deserialize)]
struct StreamStatusQuery {
    wait_drained_ms: Option<u64>,
}

/// The poller's counters; with `wait_drained_ms`, after waiting (at most that long, and at
/// most five minutes) until everything written before the request was handed over.
async fn stream_status(
    poller: Arc<StreamPoller>,
    axum::extract::Query(query): axum::extract::Query<StreamStatusQuery>,
) -> axum::Json<serde_json::Value> {
    let drained = match query.wait_drained_ms {
        Some(ms) => Some(
            poller
                .wait_drained(std::time::Duration::from_millis(ms.min(300_000)))
                .await,
        ),
        None => None,
    };
    axum::Json(serde_json::json!({
        "stream_arn": poller.stream_arn(),
        "dead_letters": poller.dead_letter_path(),
        "drained": drained,
        "status": poller.status(),
    }))
}

/// The API's OpenAPI document (the repository's `openapi.yaml`, built in): a convenience
/// of the local server, not a route of the service.
const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

async fn openapi_yaml() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        OPENAPI_YAML,
    )
}

/// Registers (or re-keys) the development app and says where its key is.
async fn register_dev_app(store: &DynamoStore, state_dir: &Path, app_id: &str) -> Result<String> {
    let key_file = state_dir.join("dev-master-key");
    let (key, note) = match std::env::var("IM_DEV_MASTER_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        Some(k) => (
            im_admin::keyinput::parse_key(k)?,
            "master key from IM_DEV_MASTER_KEY".to_owned(),
        ),
        None => {
            if !key_file.is_file() {
                let generated = Alphanumeric.sample_string(&mut rand::rng(), 32);
                write_private(&key_file, &generated)?;
            }
            let key = im_admin::keyinput::read_key(Some(&key_file))?;
            (key, format!("master key stored in {}", key_file.display()))
        }
    };
    match store.create_app(app_id, &key).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => store.rotate_app(app_id, &key).await?,
        Err(e) => return Err(e.into()),
    }
    Ok(note)
}

/// How long the banner's example token is valid.
const EXAMPLE_TOKEN_SECONDS: u64 = 15 * 60;

/// Registers the development token secret under `kid`; returns it, and where it is kept
/// (for the banner, which never prints the secret itself).
async fn register_dev_token_key(
    store: &DynamoStore,
    state_dir: &Path,
    app_id: &str,
    kid: &str,
) -> Result<(Secret, String)> {
    let file = state_dir.join("dev-token-secret");
    let (secret, note) = match std::env::var("IM_DEV_TOKEN_SECRET")
        .ok()
        .filter(|k| !k.is_empty())
    {
        Some(k) => (
            im_admin::keyinput::parse_key(k)?,
            "from IM_DEV_TOKEN_SECRET".to_owned(),
        ),
        None => {
            if !file.is_file() {
                write_private(&file, &Alphanumeric.sample_string(&mut rand::rng(), 48))?;
            }
            (
                im_admin::keyinput::read_token_secret(Some(&file))?,
                format!("stored in {}", file.display()),
            )
        }
    };
    if secret.expose().len() < im_admin::keyinput::MIN_TOKEN_SECRET_BYTES {
        anyhow::bail!("IM_DEV_TOKEN_SECRET must be at least 32 bytes");
    }
    store.upsert_token_key(kid, app_id, &secret).await?;
    Ok((secret, note))
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
