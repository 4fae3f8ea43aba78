//! `im-admin`: manage the IM service's apps and table against any DynamoDB endpoint
//! (AWS, or DynamoDB Local through `AWS_ENDPOINT_URL_DYNAMODB`).
//!
//! Master keys are read from a file or standard input, never from the command line,
//! and are never printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use im_admin::{keyinput, table};
use im_shared::auth;
use im_shared::model::ids::check_id;
use im_shared::store::{DynamoStore, KeyStore, StoreError};

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

fn valid_kid(kid: &str) -> Result<()> {
    check_id("kid", kid, 128).map_err(|e| anyhow::anyhow!("{e}"))
}

fn valid_app_id(app_id: &str) -> Result<()> {
    check_id("app_id", app_id, 64).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run(cli: Cli) -> Result<()> {
    let table_name = cli
        .table
        .context("name the table with --table or TABLE_NAME")?;
    let client = DynamoStore::client_from_env().await;
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
        },
    }
    Ok(())
}
