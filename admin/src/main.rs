//! `im-admin`: manage the IM service's apps and table against any DynamoDB endpoint
//! (AWS, or DynamoDB Local through `AWS_ENDPOINT_URL_DYNAMODB`).
//!
//! Master keys are read from a file or standard input, never from the command line,
//! and are never printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use im_admin::im_cloud::{self, ImCloudCommand};
use im_admin::import::ImportCommand;
use im_admin::redrive::{self, QueueRedrive};
use im_admin::{export, import, keyinput, table};
use im_shared::auth;
use im_shared::model::ids::check_id;
use im_shared::model::CloudId;
use im_shared::store::{DynamoStore, KeyStore, StoreError};
use im_sync::Syncer;

#[derive(Parser)]
#[command(name = "im-admin", version, about)]
struct Cli {
    /// The service's table (the stack's TableName output).
    #[arg(long, env = "TABLE_NAME", global = true)]
    table: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apps and their master keys.
    App {
        #[command(subcommand)]
        action: AppCommand,
    },
    /// The secrets an app's backend signs caller tokens (HS256 JWTs) with.
    TokenKey {
        #[command(subcommand)]
        action: TokenKeyCommand,
    },
    /// Mint a caller token, for development and tests (apps mint their own).
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// The mirror of groups into each app's IM cloud.
    Sync {
        #[command(subcommand)]
        action: SyncCommand,
    },
    /// Bring groups in: an app's conversations from LeanCloud's export, or groups from
    /// `export`'s lines.
    Import {
        #[command(subcommand)]
        source: ImportCommand,
    },
    /// Write every live group of an app as JSON lines (docs/export.schema.json).
    Export {
        #[arg(long)]
        app: String,
        /// Write here rather than to standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The table itself.
    Table {
        #[command(subcommand)]
        action: TableCommand,
    },
}

#[derive(Subcommand)]
enum TokenKeyCommand {
    /// Add a secret under a new key id (the JWT `kid`). Read from --key-file or stdin;
    /// at least 32 bytes. Several may be active at once, for rotation without downtime.
    Add {
        kid: String,
        /// The app whose callers the tokens speak for.
        #[arg(long)]
        app: String,
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// List key ids, their apps and status (never the secrets).
    List,
    /// Retire a key: tokens signed with it stop verifying (within IM_APP_CACHE_SECONDS).
    Retire { kid: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a token signed with the active secret `kid`.
    Mint {
        #[arg(long)]
        kid: String,
        /// The client id the token speaks for (`sub`).
        #[arg(long)]
        sub: String,
        /// Mark the token `role: "admin"`: the app's backend, acting for anyone.
        #[arg(long)]
        admin: bool,
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: u64,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Register an app. The master key is read from --key-file or standard input.
    Add {
        app_id: String,
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Replace an app's master key (warm functions pick it up within IM_APP_CACHE_SECONDS).
    Rotate {
        app_id: String,
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// List app ids (never keys).
    List,
    /// Remove an app: its clients can no longer get signatures.
    Remove { app_id: String },
    /// The app's IM clouds (LeanCloud, Tencent Cloud IM), which groups are mirrored into.
    ImCloud {
        #[command(subcommand)]
        action: ImCloudCommand,
    },
}

#[derive(Subcommand)]
enum SyncCommand {
    /// Compare each live group's members with its conversation's in the app's IM cloud
    /// and report every difference, and every group marked failed or held; with --fix,
    /// repair them (add, remove, or make a new conversation for one that is gone) and
    /// clear the group's failed state and hold (the repair stands in for the held record:
    /// a later redrive skips it). Exits 1 while any group still differs.
    Reconcile {
        #[arg(long)]
        app: String,
        /// Only this group.
        #[arg(long)]
        group: Option<u64>,
        #[arg(long)]
        fix: bool,
        /// Only this IM cloud (default: every cloud the app has settings for).
        #[arg(long, value_parser = parse_cloud)]
        cloud: Option<CloudId>,
    },
    /// Bring every live group of the app into an IM cloud added after the groups were
    /// made (Tencent). Resumable: a later run skips the groups done, so after a crash or
    /// Ctrl-C run it again. Paced under the app's max-calls-per-second. Exits 1 if any
    /// group failed (reconcile --fix, or a later run, tries it again) or was not started.
    Backfill {
        #[arg(long)]
        app: String,
        #[arg(long, value_parser = parse_cloud)]
        cloud: CloudId,
    },
    /// Send what the mirror gave up on back through it, in order. Safe to repeat: a group
    /// skips what it applied already. Exits 1 if any batch still fails (or, from the
    /// queue, was kept for any reason).
    #[command(group(clap::ArgGroup::new("source").required(true).args(["file", "queue_url"])))]
    Redrive {
        /// The local server's dead-letter file (im-local prints where it is): JSON lines,
        /// each with its `record`.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// On AWS, the stream's on-failure queue (the stack's SyncDeadLetterQueueUrl
        /// output). Each message's batch is read back from the table's stream, which
        /// keeps records 24 hours; a message is deleted once its whole batch applied.
        #[arg(long, value_name = "URL")]
        queue_url: Option<String>,
        /// Delete the messages whose records have left the stream, instead of keeping
        /// them (reconcile their groups with `sync reconcile --fix`).
        #[arg(long, requires = "queue_url")]
        drop_expired: bool,
        /// Only this IM cloud (default: every cloud the app mirrors into; the others'
        /// cursors skip what they applied already).
        #[arg(long, value_parser = parse_cloud)]
        cloud: Option<CloudId>,
    },
}

#[derive(Subcommand)]
enum TableCommand {
    /// Create the table from template.yaml's definition if it does not exist.
    Create,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("im-admin: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn sync(store: DynamoStore, action: SyncCommand) -> Result<()> {
    match action {
        SyncCommand::Reconcile {
            app,
            group,
            fix,
            cloud,
        } => {
            valid_app_id(&app)?;
            let syncer = Syncer::with_client(store)?;
            let reports = syncer.reconcile(&app, group, fix, cloud).await?;
            let mut differ = 0;
            for r in &reports {
                println!("{r}");
                if !r.in_step() && r.fixed.is_none() {
                    differ += 1;
                }
            }
            println!(
                "{} group(s) checked, {} fixed, {differ} still differ",
                reports.len(),
                reports.iter().filter(|r| r.fixed.is_some()).count()
            );
            if differ > 0 {
                anyhow::bail!("{differ} group(s) differ from their conversations");
            }
        }
        SyncCommand::Backfill { app, cloud } => {
            valid_app_id(&app)?;
            let syncer = Syncer::with_client(store)?;
            let summary = im_admin::backfill::run(&syncer, &app, cloud).await?;
            if summary.failed > 0 || summary.not_started > 0 {
                anyhow::bail!(
                    "{} group(s) failed and {} were not started: run the backfill again",
                    summary.failed,
                    summary.not_started
                );
            }
        }
        SyncCommand::Redrive {
            file,
            queue_url,
            drop_expired,
            cloud,
        } => {
            let syncer = Syncer::with_client(store)?.only(cloud);
            match (file, queue_url) {
                (Some(file), _) => redrive::from_file(&syncer, &file).await?,
                (None, Some(url)) => {
                    let sdk =
                        aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                    let tally = QueueRedrive::new(&syncer, &sdk, &url, drop_expired)
                        .run()
                        .await?;
                    println!(
                        "{} message(s): {} applied and deleted, {} kept, {} dropped as expired",
                        tally.received, tally.applied, tally.kept, tally.dropped
                    );
                    if tally.kept > 0 {
                        anyhow::bail!("{} message(s) kept in the queue: see above", tally.kept);
                    }
                }
                (None, None) => unreachable!("clap requires one source"),
            }
        }
    }
    Ok(())
}

fn valid_kid(kid: &str) -> Result<()> {
    check_id("kid", kid, 128).map_err(|e| anyhow::anyhow!("{e}"))
}

fn parse_cloud(raw: &str) -> Result<CloudId, String> {
    CloudId::parse(raw).ok_or_else(|| format!("the IM cloud is leancloud or tencent, not {raw:?}"))
}

fn valid_app_id(app_id: &str) -> Result<()> {
    check_id("app_id", app_id, 64).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run(cli: Cli) -> Result<()> {
    let table_name = cli
        .table
        .context("name the table with --table or TABLE_NAME")?;
    let client = DynamoStore::client_from_env().await?;
    let store = DynamoStore::new(client.clone(), table_name.clone());
    match cli.command {
        Command::Table {
            action: TableCommand::Create,
        } => {
            let created = table::ensure_table(&client, &table_name).await?;
            println!(
                "table {table_name} {}",
                if created { "created" } else { "already exists" }
            );
        }
        Command::TokenKey { action } => match action {
            TokenKeyCommand::Add { kid, app, key_file } => {
                valid_kid(&kid)?;
                valid_app_id(&app)?;
                let secret = keyinput::read_token_secret(key_file.as_deref())?;
                match store.create_token_key(&kid, &app, &secret).await {
                    Ok(()) => println!("token key {kid} added for app {app}"),
                    Err(StoreError::NotFound) => anyhow::bail!("no app {app}"),
                    Err(StoreError::AlreadyExists) => {
                        anyhow::bail!("key id {kid} is taken (key ids are never reused)")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            TokenKeyCommand::List => {
                for (kid, app, status) in store.list_token_keys().await? {
                    println!("{kid}\t{app}\t{status}");
                }
            }
            TokenKeyCommand::Retire { kid } => match store.retire_token_key(&kid).await {
                Ok(()) => println!("token key {kid} retired"),
                Err(StoreError::NotFound) => anyhow::bail!("no token key {kid}"),
                Err(e) => return Err(e.into()),
            },
        },
        Command::Token {
            action:
                TokenCommand::Mint {
                    kid,
                    sub,
                    admin,
                    ttl_seconds,
                },
        } => {
            check_id("sub", &sub, 64).map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = store
                .token_key(&kid)
                .await?
                .with_context(|| format!("no active token key {kid}"))?;
            let token = auth::mint(
                &kid,
                &key.secret,
                &auth::claims_for(&sub, admin, ttl_seconds),
            )?;
            println!("{token}");
        }
        Command::App { action } => match action {
            AppCommand::Add { app_id, key_file } => {
                valid_app_id(&app_id)?;
                let key = keyinput::read_key(key_file.as_deref())?;
                match store.create_app(&app_id, &key).await {
                    Ok(()) => println!("app {app_id} added"),
                    Err(StoreError::AlreadyExists) => {
                        anyhow::bail!(
                            "app {app_id} already exists (use `app rotate` to change its key)"
                        )
                    }
                    Err(StoreError::AppRemoved) => anyhow::bail!(
                        "app id {app_id} was removed; its groups and conversation links are still in the table, so the id is never registered again: choose another"
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
            AppCommand::Rotate { app_id, key_file } => {
                valid_app_id(&app_id)?;
                let key = keyinput::read_key(key_file.as_deref())?;
                match store.rotate_app(&app_id, &key).await {
                    Ok(()) => println!("app {app_id}: master key replaced"),
                    Err(StoreError::NotFound) => anyhow::bail!("no app {app_id}"),
                    Err(e) => return Err(e.into()),
                }
            }
            AppCommand::List => {
                for id in store.list_apps().await? {
                    println!("{id}");
                }
            }
            AppCommand::Remove { app_id } => match store.remove_app(&app_id).await {
                Ok(()) => println!("app {app_id} removed"),
                Err(StoreError::NotFound) => anyhow::bail!("no app {app_id}"),
                Err(e) => return Err(e.into()),
            },
            AppCommand::ImCloud { action } => im_cloud::run(&store, action).await?,
        },
        Command::Sync { action } => sync(store, action).await?,
        Command::Import { source } => import::run(&store, source).await?,
        Command::Export { app, out } => {
            valid_app_id(&app)?;
            let n = match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("--out {}", path.display()))?;
                    export::export(&store, &app, &mut std::io::BufWriter::new(file)).await?
                }
                None => export::export(&store, &app, &mut std::io::stdout().lock()).await?,
            };
            eprintln!("im-admin export: {n} group(s) of app {app}");
        }
    }
    Ok(())
}
