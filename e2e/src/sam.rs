//! SAM CLI's own emulators over `template.yaml` and the arm64 binaries `sam build` left in
//! `.aws-sam/build`: `sam local invoke` and `sam local start-api`, in Docker, on the
//! base image `scripts/sam-base-image.sh` chose (`IM_TEST_SAM_IMAGE`: AWS's where it
//! can be pulled, a stand-in otherwise). `make test` runs them after `sam build`
//! (scripts/sam-local.sh).
//!
//! Every SAM process gets static dummy credentials, `AWS_EC2_METADATA_DISABLED=true` and
//! a loopback STS endpoint (SAM asks STS for the account id),
//! and hands the functions the same through `--env-vars` (the template declares
//! `AWS_EC2_METADATA_DISABLED` and `IM_DYNAMODB_ENDPOINT` for this): nothing looks for
//! credentials at the instance-metadata address.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::openapi;
use crate::repo::{read_json, repo_root};
use crate::stack::env;

/// How the functions authenticate callers (the template's `AuthMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Bearer tokens checked by the functions (`events/`).
    Tokens,
    /// Claims from API Gateway's JWT authorizer (`events/authorizer/`), as the events'
    /// `demo-app` stack would be configured.
    Authorizer,
}

impl Auth {
    /// The folder of this mode's event files.
    pub fn events(self) -> &'static str {
        match self {
            Auth::Tokens => "events",
            Auth::Authorizer => "events/authorizer",
        }
    }
}

/// What the functions run with: where DynamoDB is (as a container sees it), which table,
/// which authentication mode.
pub struct Settings {
    pub endpoint: String,
    pub table: String,
    pub auth: Auth,
}

impl Settings {
    /// `--env-vars` for every function (SAM applies `Parameters` to each function, but
    /// only to the variables the template declares).
    fn env_vars(&self) -> Value {
        let mut vars = json!({
            "TABLE_NAME": self.table,
            "IM_DYNAMODB_ENDPOINT": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "RUST_LOG": "info",
            "IM_AUTH_MODE": "tokens",
        });
        if self.auth == Auth::Authorizer {
            for (k, v) in [
                ("IM_AUTH_MODE", "authorizer"),
                ("IM_AUTH_APP_ID", "demo-app"),
                ("IM_AUTH_ADMIN_CLAIM", "groups"),
                ("IM_AUTH_ADMIN_VALUE", "im-admin"),
            ] {
                vars[k] = Value::from(v);
            }
        }
        json!({ "Parameters": vars })
    }

    /// The `--env-vars` file, kept as long as the returned value lives.
    fn env_vars_file(&self) -> TempFile {
        TempFile::with(&self.env_vars().to_string())
    }
}

/// A file under the system's temporary folder, removed on drop (and only then: nothing
/// else here removes files, so no file of the repository can be taken for one).
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn with(text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "im-sam-{}-{}.json",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("write a temporary file");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A function's logical id in `template.yaml` (`login-signature` → `LoginSignatureFunction`).
pub fn logical_id(function: &str) -> String {
    let mut id: String = function
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    id.push_str("Function");
    id
}

/// Where SAM's own STS call goes: a loopback port nothing listens on (tcpmux, port 1).
pub const SAM_STS_ENDPOINT: &str = "http://127.0.0.1:1";

/// The `sam` command with the environment every SAM run gets.
fn sam(args: &[&str]) -> Command {
    let mut cmd = Command::new("sam");
    cmd.current_dir(repo_root())
        .args(args)
        .env("SAM_CLI_TELEMETRY", "0")
        // The dummy key of every local run (scripts/lib.sh): DynamoDB Local keeps a
        // database per access key id, and refuses ids of other than letters and digits.
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // SAM asks STS for the account id at every start: let it be refused on loopback
        // at once rather than look AWS up and retry.
        .env("AWS_ENDPOINT_URL_STS", SAM_STS_ENDPOINT)
        .env("AWS_MAX_ATTEMPTS", "1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    cmd
}

/// The base image (`IM_TEST_SAM_IMAGE`, from scripts/sam-base-image.sh).
pub fn image() -> String {
    env("IM_TEST_SAM_IMAGE")
}

/// What one `sam local invoke` gave: the function's answer, and how long the whole
/// command took (container start and the emulated init included).
pub struct Invoked {
    pub answer: Value,
    pub took: Duration,
}

/// `sam local invoke <function> -e <event>`; the answer is the last line SAM prints on
/// stdout (its logs and the function's go to stderr). An API Gateway answer is checked
/// against openapi.yaml, as every other answer the tests see.
pub fn invoke(settings: &Settings, function: &str, event: &Path) -> Invoked {
    let env_vars = settings.env_vars_file();
    let id = logical_id(function);
    let started = Instant::now();
    let out = sam(&["local", "invoke", &id, "--skip-pull-image"])
        .arg("-e")
        .arg(event)
        .args(["--invoke-image", &image(), "--env-vars"])
        .arg(&env_vars.0)
        .stdin(Stdio::null())
        .output()
        .expect("run sam local invoke");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let answer: Value = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "sam local invoke {id} -e {} gave no JSON answer (exit {:?})\nstdout: {stdout}\nstderr: {stderr}",
                event.display(),
                out.status.code()
            )
        });
    let sent = read_json(event);
    if sent.get("routeKey").is_some() {
        openapi::check_lambda(&sent, &answer);
    }
    Invoked { answer, took }
}

/// `sam local start-api` on a free loopback port, stopped (with SIGINT, so that SAM
/// removes its containers) on drop.
pub struct StartApi {
    child: Child,
    pub url: String,
    log: PathBuf,
    _env_vars: TempFile,
}

impl StartApi {
    pub fn start(settings: &Settings) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let env_vars = settings.env_vars_file();
        let log = std::env::temp_dir().join(format!("im-sam-start-api-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("start-api log");
        let port_text = port.to_string();
        let child = sam(&[
            "local",
            "start-api",
            "--host",
            "127.0.0.1",
            "--port",
            &port_text,
            "--skip-pull-image",
            // No --warm-containers: SAM then watches every function's code folder
            // (inotify), and a machine whose watches other tools hold makes it crash.
        ])
        .args(["--invoke-image", &image(), "--env-vars"])
        .arg(&env_vars.0)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("run sam local start-api");
        let mut api = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _env_vars: env_vars,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = api.child.try_wait() {
                panic!("sam local start-api ended ({status}):\n{}", api.log());
            }
            assert!(
                Instant::now() < deadline,
                "sam local start-api not listening after 180 s:\n{}",
                api.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        api
    }

    /// What SAM printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StartApi {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
