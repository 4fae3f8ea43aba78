//! A function binary under the Lambda runtime emulator (`cargo lambda watch`, started by
//! `make test` on the port a test passes), invoked with an API Gateway event as
//! `sam local invoke -e events/<file>.json` would send it.

use std::path::{Path, PathBuf};
use std::process::Command;

use im_shared::routes::Route;
use serde_json::Value;

use crate::openapi;
use crate::repo::{read_json, repo_root};

/// The event to invoke a function with.
pub enum Data<'a> {
    /// An event file.
    File(&'a Path),
    /// An event, as JSON text.
    Inline(&'a str),
}

/// `cargo lambda invoke`, the emulator's own client; returns the API Gateway response,
/// checked against openapi.yaml.
pub fn invoke(port: &str, function: &str, data: Data<'_>) -> Value {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "lambda",
        "invoke",
        function,
        "--invoke-address",
        "127.0.0.1",
    ])
    .args(["--invoke-port", port, "--output-format", "json"]);
    let event: Value = match data {
        Data::File(path) => {
            cmd.arg("--data-file").arg(path);
            read_json(path)
        }
        Data::Inline(json) => {
            cmd.args(["--data-ascii", json]);
            serde_json::from_str(json).expect("the inline event is JSON")
        }
    };
    let out = cmd.output().expect("cargo lambda invoke");
    assert!(
        out.status.success(),
        "cargo lambda invoke {function} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp: Value = serde_json::from_slice(&out.stdout)
        .expect("the invoke output is the function's JSON response");
    // Every response is checked against openapi.yaml before a test sees it.
    openapi::check_lambda(&event, &resp);
    resp
}

/// `cargo lambda invoke` with an event that is not an API Gateway request (a stream
/// batch): the function's own JSON answer, unchecked.
pub fn invoke_event(port: &str, function: &str, file: &Path) -> Value {
    let out = Command::new("cargo")
        .args([
            "lambda",
            "invoke",
            function,
            "--invoke-address",
            "127.0.0.1",
        ])
        .args([
            "--invoke-port",
            port,
            "--output-format",
            "json",
            "--data-file",
        ])
        .arg(file)
        .output()
        .expect("cargo lambda invoke");
    assert!(
        out.status.success(),
        "cargo lambda invoke {function} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the invoke output is the function's JSON answer")
}

/// The JSON body of a function's response (`null` when there is none).
pub fn body(resp: &Value) -> Value {
    serde_json::from_str(resp["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// The event file of `route` in `dir` (`events` or `events/authorizer`).
pub fn event_file(dir: &str, route: &Route) -> PathBuf {
    repo_root().join(dir).join(format!("{}.json", route.event))
}
