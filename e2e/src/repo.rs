//! Files of the repository the tests read, and the workspace binaries they run.

use std::path::{Path, PathBuf};

/// The workspace root (this crate's parent folder).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A workspace binary (built by `make test` before the tests run).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join(name)
}

pub use im_shared::api::routes::STREAM_FUNCTIONS;

/// `template.yaml`, parsed.
pub fn template() -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap())
        .unwrap()
}

/// A JSON file, such as an event of `events/`.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
