//! The workspace's target directory, found one way for every xtask command: by asking cargo.
//!
//! Guessing `./target` breaks as soon as `CARGO_TARGET_DIR`, `build.target-dir` in a cargo config, or a
//! `--config` override moves it; `cargo metadata` reports the directory cargo itself builds into, whatever moved
//! it, so a binary the task just built is found where cargo put it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// The target directory of the workspace at `root`, as `cargo metadata` reports it: `CARGO_TARGET_DIR` when it
/// is set (relative values against `root`), else `build.target-dir` from cargo's configuration, else
/// `root/target`. Always absolute.
pub(crate) fn find(root: &Path) -> Result<PathBuf> {
    find_with(root, |_| {})
}

/// [`find`] with the cargo command adjusted by `configure` first (a test sets `CARGO_TARGET_DIR` this way
/// without touching the process's environment).
fn find_with(root: &Path, configure: impl FnOnce(&mut Command)) -> Result<PathBuf> {
    let mut command = Command::new(crate::cargo());
    command.current_dir(root).args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--quiet"]);
    configure(&mut command);
    let output = command.output().context("starting `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata` exited with {} while finding the target directory:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing the output of `cargo metadata`")?;
    let dir = metadata["target_directory"].as_str().context("`cargo metadata` reported no `target_directory`")?;
    Ok(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elsewhere() -> PathBuf {
        std::env::temp_dir().join(format!("xtask-target-{}", std::process::id()))
    }

    #[test]
    fn the_lookup_honours_cargo_target_dir() {
        let root = crate::workspace_root();
        let found = find_with(&root, |c| {
            c.env("CARGO_TARGET_DIR", elsewhere());
        });
        assert_eq!(found.unwrap(), elsewhere());
    }

    #[test]
    fn a_relative_cargo_target_dir_is_made_absolute_against_the_workspace_root() {
        let root = crate::workspace_root();
        let found = find_with(&root, |c| {
            c.env("CARGO_TARGET_DIR", "elsewhere/target");
        });
        assert_eq!(found.unwrap(), root.join("elsewhere/target"));
    }

    #[test]
    fn the_lookup_honours_build_target_dir_from_cargo_config() {
        let root = crate::workspace_root();
        // `CARGO_BUILD_TARGET_DIR` is the environment form of `build.target-dir` in a cargo config file.
        let found = find_with(&root, |c| {
            c.env_remove("CARGO_TARGET_DIR").env("CARGO_BUILD_TARGET_DIR", elsewhere());
        });
        assert_eq!(found.unwrap(), elsewhere());
    }
}
