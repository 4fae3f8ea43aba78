//! `make run` keeps its secrets on the machine: im-local (the binary `make run` starts), with
//! its own DynamoDB Local keeping its data on disk as `make run` does, in a state folder an
//! earlier run left with looser modes. DynamoDB Local answers on loopback and on no other
//! address of this machine; the folder ends up 0700 and every file in it 0600 (DynamoDB
//! Local's database included); the banner says where the token secret is, never what it
//! is. And the forwarder that is the `sam local` suites' only way to DynamoDB Local
//! (`im_e2e::net`) hands over connections from its allowed subnet only, on its interface
//! only. Needs DynamoDB Local installed (`make test` does it) and Java; connects only to
//! this machine's own addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use im_e2e::net::{forward, listen_on_device, own_non_loopback_addresses, Ipv4Net};
use im_e2e::repo::{bin, repo_root};
use im_e2e::signatures::verify_usersig_response;
use im_e2e::stack::unique;
use im_shared::config::DynamoBounds;
use im_shared::store::DynamoStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// im-local as `make run` starts it (data kept, DynamoDB Local its own), in `dir`; stopped
/// with SIGTERM on drop.
struct LocalRun {
    child: Child,
    log: PathBuf,
}

impl LocalRun {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// [`LocalRun::start`] with `settings` in its environment besides.
    fn start_with(dir: &Path, settings: &[(&str, &str)]) -> Self {
        let log = dir.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(bin("im-local"));
        // make test's own services are not this one's: no endpoint to use instead of its
        // own DynamoDB Local, no in-memory mode, no other folder or table.
        for name in [
            "AWS_ENDPOINT_URL_DYNAMODB",
            "IM_LOCAL_IN_MEMORY",
            "TABLE_NAME",
            "IM_DEV_MASTER_KEY",
            "IM_DEV_TOKEN_SECRET",
            "IM_DEV_IM_API",
            "IM_DEV_TENCENT_API",
            "IM_LOCAL_STREAM_DEAD_LETTERS",
        ] {
            command.env_remove(name);
        }
        command.envs(settings.iter().copied());
        let child = command
            .env("IM_LOCAL_DIR", dir)
            .env("PORT", "0")
            .env("DYNAMODB_PORT", "0")
            // Where `make run` runs: DynamoDB Local is found under the repository's .local.
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start im-local");
        let mut run = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(180);
        while !run.output().contains("im-local ready:") {
            if let Ok(Some(status)) = run.child.try_wait() {
                panic!("im-local ended ({status}):\n{}", run.output());
            }
            assert!(
                Instant::now() < deadline,
                "im-local not ready after 180 s:\n{}",
                run.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        run
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `im-local ready: http://127.0.0.1:P dynamodb=http://127.0.0.1:Q ...`: P and Q.
    fn ports(&self) -> (u16, u16) {
        let output = self.output();
        let ready = output
            .lines()
            .find(|l| l.starts_with("im-local ready:"))
            .unwrap();
        let port_after = |marker: &str| -> u16 {
            let rest = &ready[ready.find(marker).unwrap() + marker.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (
            port_after("ready: http://127.0.0.1:"),
            port_after("dynamodb=http://127.0.0.1:"),
        )
    }
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file and folder under `dir` (symbolic links not followed).
fn walk(dir: &Path, into: &mut Vec<(PathBuf, bool)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            into.push((entry.path(), true));
            walk(&entry.path(), into);
        } else if kind.is_file() {
            into.push((entry.path(), false));
        }
    }
}

fn connects(ip: IpAddr, port: u16) -> std::io::Result<()> {
    TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(3)).map(drop)
}

#[tokio::test]
async fn make_run_keeps_dynamodb_local_on_loopback_and_its_files_private() {
    let root = std::env::temp_dir().join(unique("im-local-run"));
    let dir = root.join(".local");
    // What an earlier run (an older im-local, or a umask of 022) left: all of it readable
    // by anyone.
    std::fs::create_dir_all(dir.join("dynamodb-data")).unwrap();
    let master_key = format!("mk-test-{}", unique("dev").replace('-', ""));
    std::fs::write(dir.join("dev-master-key"), &master_key).unwrap();
    std::fs::write(dir.join("dynamodb-local.log"), "an old log\n").unwrap();
    for file in ["dev-master-key", "dynamodb-local.log"] {
        chmod(&dir.join(file), 0o644);
    }
    chmod(&dir.join("dynamodb-data"), 0o755);
    chmod(&dir, 0o755);

    let run = LocalRun::start(&dir);
    let (http_port, ddb_port) = run.ports();

    // DynamoDB Local answers on loopback (a signed request, as the SDK sends it)...
    let bounds = DynamoBounds::from_env().unwrap();
    let client = DynamoStore::local_client(&format!("http://127.0.0.1:{ddb_port}"), &bounds).await;
    let tables = client.list_tables().send().await.unwrap();
    assert!(
        tables.table_names().iter().any(|t| t == "im-local"),
        "{tables:?}"
    );
    // ...and on no other address of this machine: nothing listens there (refused). The
    // server's own port likewise.
    let others = own_non_loopback_addresses();
    if others.is_empty() {
        eprintln!("this machine has no address but loopback: nothing else to try");
    }
    for ip in &others {
        for (what, port) in [("DynamoDB Local", ddb_port), ("im-local", http_port)] {
            match connects(*ip, port) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                other => panic!("{what} at {ip}:{port}: {other:?} (expected: refused)"),
            }
        }
    }
    connects(IpAddr::V4(Ipv4Addr::LOCALHOST), ddb_port).expect("loopback connects");

    // The folder and everything im-local and DynamoDB Local keep in it.
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    let mut entries = Vec::new();
    walk(&dir, &mut entries);
    let names: Vec<String> = entries
        .iter()
        .map(|(p, _)| p.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    for expected in [
        "dev-master-key",
        "dev-token-secret",
        "dynamodb-local.log",
        "dynamodb-data",
        "dynamodb-data/shared-local-instance.db",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for (path, is_dir) in &entries {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode(path), want, "{:o} for {}", mode(path), path.display());
    }

    // The banner: where the secret is, never the secret or the master key.
    let output = run.output();
    let secret = std::fs::read_to_string(dir.join("dev-token-secret")).unwrap();
    let secret = secret.trim();
    assert!(secret.len() >= 32);
    assert!(
        !output.contains(secret),
        "the token secret is printed:\n{output}"
    );
    assert!(
        !output.contains(&master_key),
        "the master key is printed:\n{output}"
    );
    let secret_file = dir.join("dev-token-secret").display().to_string();
    assert!(
        output.contains(&format!(
            "token secret (kid \"dev\"): stored in {secret_file}"
        )),
        "{output}"
    );
    assert!(
        output.contains("valid for 15 minutes"),
        "the example token is short-lived:\n{output}"
    );

    drop(run);
    std::fs::remove_dir_all(root).unwrap();
}

/// `IM_DEV_TENCENT_API` gives the development app Tencent settings: a key generated into
/// the state folder (0600, never printed), the fixed sdkappid, and UserSigs that Tencent's
/// own library agrees with; the banner says Tencent is on. Without it, a later run says
/// it is off and keeps the key.
#[tokio::test]
async fn make_run_with_a_tencent_api_gives_the_dev_app_usersigs() {
    let root = std::env::temp_dir().join(unique("im-local-tencent"));
    let dir = root.join(".local");
    std::fs::create_dir_all(&root).unwrap();
    let run = LocalRun::start_with(&dir, &[("IM_DEV_TENCENT_API", "http://127.0.0.1:9")]);
    let (http_port, _) = run.ports();
    let key_file = dir.join("dev-tencent-key");
    assert_eq!(mode(&key_file), 0o600);
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.len(), 64, "64 hex digits, as Tencent's keys are");
    let output = run.output();
    assert!(
        !output.contains(&key),
        "the Tencent key is printed:\n{output}"
    );
    assert!(
        output.contains(&format!(
            "Tencent Cloud IM is on for dev-app (IM_DEV_TENCENT_API): REST server http://127.0.0.1:9, sdkappid 1400000000, admin administrator, secret key stored in {}",
            key_file.display()
        )),
        "{output}"
    );
    // The banner's token for alice gets alice's UserSig, which Tencent's library agrees with.
    let token = output
        .lines()
        .skip_while(|l| !l.contains("a token for client \"alice\""))
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    let resp = im_e2e::http::client()
        .get(format!(
            "http://127.0.0.1:{http_port}/signature/usersig/dev-app/alice"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    verify_usersig_response(&body, &key, 1_400_000_000, 86_400);
    drop(run);

    let run = LocalRun::start(&dir);
    let output = run.output();
    assert!(
        output.contains("Tencent Cloud IM is off for dev-app:"),
        "{output}"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    drop(run);
    std::fs::remove_dir_all(root).unwrap();
}

/// A loopback server that echoes what it reads; counts its connections.
async fn echo_server() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn the_bridge_forwarder_hands_over_its_subnet_on_its_interface_only() {
    let bridge: Ipv4Net = "172.17.0.0/16".parse().unwrap();
    assert!(bridge.contains("172.17.0.2".parse().unwrap()));
    assert!(bridge.contains("::ffff:172.17.255.254".parse().unwrap()));
    assert!(!bridge.contains("172.18.0.2".parse().unwrap()));
    assert!(!bridge.contains("127.0.0.1".parse().unwrap()));
    assert!(!bridge.contains("::1".parse().unwrap()));
    assert!("172.17.0.0".parse::<Ipv4Net>().is_err());
    assert!("172.17.0.0/33".parse::<Ipv4Net>().is_err());

    let (target, accepted) = echo_server().await;
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));

    // Bound to its interface (here loopback, standing in for the bridge) and allowing its
    // subnet: forwarded.
    let listener = listen_on_device(loopback, "lo").unwrap();
    let on_lo = listener.local_addr().unwrap();
    tokio::spawn(forward(listener, "127.0.0.0/8".parse().unwrap(), target));
    let mut s = tokio::net::TcpStream::connect(on_lo).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A peer outside the allowed subnet: closed, nothing forwarded.
    let listener = listen_on_device(loopback, "lo").unwrap();
    let strict = listener.local_addr().unwrap();
    tokio::spawn(forward(listener, "10.0.0.0/8".parse().unwrap(), target));
    let mut s = tokio::net::TcpStream::connect(strict).await.unwrap();
    let _ = s.write_all(b"ping").await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed promptly");
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Bound to another interface: a connection arriving on loopback finds no listener
    // (refused by the kernel), as one arriving on any interface but the bridge does.
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let other = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| Some(l.split(": ").nth(1)?.split('@').next()?.to_owned()))
        .find(|name| name != "lo");
    match other {
        Some(device) => {
            let listener = listen_on_device(loopback, &device).unwrap();
            let elsewhere = listener.local_addr().unwrap();
            tokio::spawn(forward(listener, "127.0.0.0/8".parse().unwrap(), target));
            let err = tokio::net::TcpStream::connect(elsewhere).await.unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "bound to {device}: {err}"
            );
        }
        None => eprintln!("no interface but loopback here: the device binding is not tried"),
    }
}
