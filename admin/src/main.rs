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
use im_shared::ids::check_id;
use im_shared::store::{DynamoStore, StoreError};

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
    /// The table itself.
    Table {
        #[command(subcommand)]
        action: TableCommand,
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
