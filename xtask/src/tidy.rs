//! `cargo xtask tidy`: the workspace's source rules, one check per rule, each returning its violations.
//!
//! `cargo test` runs the whole of it too (see the tests at the end), as rust-analyzer's tidy does, so a rule is
//! broken in CI the moment it is broken anywhere.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::source::{self, SourceFile};

/// Top-level directories whose `.rs` files tidy reads; those that do not exist are skipped.
const SOURCE_DIRS: &[&str] = &["crates", "xtask", "benches", "fuzz"];

/// The IO-free crates and their directories: they never depend on [`FORBIDDEN_DEPENDENCIES`] and their
/// non-test code never awaits or reads the clock.
const IO_FREE_CRATES: &[(&str, &str)] = &[("ws-core", "crates/ws-core"), ("ws-protocol", "crates/ws-protocol")];

/// Packages that only the IO crates (ws-transport, ws-client, ws-redis, ws-server-bin) may depend on.
const FORBIDDEN_DEPENDENCIES: &[&str] = &["tokio", "hyper", "fastwebsockets", "redis"];

/// What IO-free code must not contain, and why. Matched on code with comments and literals blanked.
const IO_FREE_PATTERNS: &[(&str, &str)] = &[
    ("Instant::now", "reads the clock; IO-free crates take the time as an argument"),
    ("SystemTime::now", "reads the clock; IO-free crates take the time as an argument"),
    ("UNIX_EPOCH", "reads the clock; IO-free crates take the time as an argument"),
    (".await", "awaits; IO-free crates never await (declare async traits, let the transport drive them)"),
];

/// Test attributes the house style forbids, and what to do instead. Built with `concat!` so that this file does
/// not contain them literally.
const FORBIDDEN_TEST_ATTRIBUTES: &[(&str, &str)] = &[
    (concat!("#[", "ignore"), "ignored test; fix it or delete it"),
    (concat!("#[", "should_panic"), "panicking test; return a `Result` and assert on the `Err` instead"),
];

/// One broken rule at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The file, relative to the workspace root.
    pub(crate) path: PathBuf,
    /// The 1-based line, where the rule is about a line.
    pub(crate) line: Option<usize>,
    /// What is wrong and what to do about it.
    pub(crate) message: String,
}

impl Violation {
    fn at(path: &Path, line: usize, message: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), line: Some(line), message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// Runs every check over the workspace at `root` and prints what it finds; fails if anything is found.
pub(crate) fn run_and_report(root: &Path) -> Result<()> {
    let violations = run(root)?;
    if violations.is_empty() {
        eprintln!("tidy: ok");
        return Ok(());
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    bail!("tidy: {} violation(s)", violations.len())
}

/// Runs every check over the workspace at `root` and returns all violations, in check order.
pub(crate) fn run(root: &Path) -> Result<Vec<Violation>> {
    let files = source::rust_files(root, SOURCE_DIRS)?;
    let io_free_sources: Vec<&SourceFile> = files
        .iter()
        .filter(|file| IO_FREE_CRATES.iter().any(|(_, dir)| file.path.starts_with(Path::new(dir).join("src"))))
        .collect();
    let mut violations = check_file_docs(&files);
    violations.extend(check_io_free_dependencies(root)?);
    violations.extend(check_io_free_sources(&io_free_sources));
    violations.extend(check_test_attributes(&files));
    Ok(violations)
}

/// Every `.rs` file starts with a `//!` line saying what it holds.
fn check_file_docs(files: &[SourceFile]) -> Vec<Violation> {
    files.iter().filter_map(missing_file_doc).collect()
}

fn missing_file_doc(file: &SourceFile) -> Option<Violation> {
    let first = file.text.lines().next().unwrap_or("");
    (!first.starts_with("//!"))
        .then(|| Violation::at(&file.path, 1, "file does not start with a `//!` line saying what it holds"))
}

/// The IO-free crates do not depend, through normal edges and with any features, on the IO crates' packages.
fn check_io_free_dependencies(root: &Path) -> Result<Vec<Violation>> {
    let mut violations = Vec::new();
    for (krate, dir) in IO_FREE_CRATES {
        for dep in FORBIDDEN_DEPENDENCIES {
            if let Some(tree) = dependency_path(root, krate, dep)? {
                violations.push(Violation {
                    path: Path::new(dir).join("Cargo.toml"),
                    line: None,
                    message: format!("{krate} depends on {dep}, which only IO crates may use:\n{tree}"),
                });
            }
        }
    }
    Ok(violations)
}

/// The inverted tree from `dep` up to `krate` if `krate` depends on `dep`, found with
/// `cargo tree -p <krate> -e normal -i <dep>`.
fn dependency_path(root: &Path, krate: &str, dep: &str) -> Result<Option<String>> {
    let args = ["tree", "-p", krate, "-e", "normal", "--all-features", "--target", "all", "-i", dep];
    let output = Command::new(crate::cargo())
        .current_dir(root)
        .args(args)
        .output()
        .with_context(|| format!("running `cargo {}`", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    tree_verdict(output.status.success(), &stdout, &stderr)
        .with_context(|| format!("`cargo {}` failed", args.join(" ")))
}

/// Reads `cargo tree -i <dep>`'s result. It fails with "did not match any packages" when nothing in the lock file
/// is `dep`, and succeeds with nothing on stdout ("nothing to print") when `dep` is in the lock file but not under
/// the selected crate; only a printed tree means the crate depends on `dep`. Any other failure (an ambiguous
/// spec, a broken manifest) is an error, never a pass.
fn tree_verdict(success: bool, stdout: &str, stderr: &str) -> Result<Option<String>> {
    if success {
        let tree = stdout.trim_end();
        return Ok((!tree.is_empty()).then(|| tree.lines().take(12).collect::<Vec<_>>().join("\n")));
    }
    if stderr.contains("did not match any packages") {
        return Ok(None);
    }
    bail!("{}", stderr.trim())
}

/// Non-test code of the IO-free crates never reads the clock and never awaits.
///
/// Test code is what `#[cfg(test)]` gates: items in a file, files that say `#![cfg(test)]`, and the files of
/// modules declared `#[cfg(test)] mod name;`.
fn check_io_free_sources(files: &[&SourceFile]) -> Vec<Violation> {
    let cut: Vec<_> = files.iter().map(|file| source::non_test_code(&source::code_only(&file.text))).collect();
    let test_module_files: BTreeSet<PathBuf> = files
        .iter()
        .zip(&cut)
        .flat_map(|(file, cut)| {
            let dir = source::child_module_dir(&file.path);
            cut.test_modules.iter().map(move |name| dir.join(name))
        })
        .collect();
    let is_test_module_file = |path: &Path| {
        test_module_files.iter().any(|module| path.starts_with(module) || path == module.with_extension("rs"))
    };
    files
        .iter()
        .zip(&cut)
        .filter(|(file, cut)| !cut.file_is_test_only && !is_test_module_file(&file.path))
        .flat_map(|(file, cut)| io_free_violations(&file.path, &cut.code))
        .collect()
}

/// Clock reads and awaits in `code`, which has comments, literals and test items already blanked.
fn io_free_violations(path: &Path, code: &str) -> Vec<Violation> {
    let mut found: Vec<Violation> = IO_FREE_PATTERNS
        .iter()
        .flat_map(|(pattern, why)| {
            source::find_token(code, pattern)
                .into_iter()
                .map(move |at| Violation::at(path, source::line_of(code, at), format!("`{pattern}` {why}")))
        })
        .collect();
    found.sort_by_key(|v| v.line);
    found
}

/// No test is ignored or expected to panic.
fn check_test_attributes(files: &[SourceFile]) -> Vec<Violation> {
    files.iter().flat_map(test_attribute_violations).collect()
}

fn test_attribute_violations(file: &SourceFile) -> Vec<Violation> {
    let code = source::code_only(&file.text);
    let mut found: Vec<Violation> = FORBIDDEN_TEST_ATTRIBUTES
        .iter()
        .flat_map(|(pattern, why)| {
            source::find_token(&code, pattern)
                .into_iter()
                .map(|at| Violation::at(&file.path, source::line_of(&code, at), format!("`{pattern}]`: {why}")))
                .collect::<Vec<_>>()
        })
        .collect();
    found.sort_by_key(|v| v.line);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(path: &str, text: &str) -> SourceFile {
        SourceFile { path: PathBuf::from(path), text: text.to_owned() }
    }

    fn lines(violations: &[Violation]) -> Vec<usize> {
        violations.iter().map(|v| v.line.unwrap_or(0)).collect()
    }

    /// The workspace itself obeys every rule.
    #[test]
    fn workspace_is_tidy() {
        let violations = run(&crate::workspace_root()).expect("tidy runs");
        let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(violations.is_empty(), "tidy found violations:\n{}", report.join("\n"));
    }

    #[test]
    fn file_doc_check_flags_files_without_a_leading_inner_doc() {
        let files = [
            fake("a.rs", "//! Holds a.\nfn a() {}\n"),
            fake("b.rs", "/// Not an inner doc.\nfn b() {}\n"),
            fake("c.rs", "\n//! Too late.\n"),
            fake("d.rs", ""),
        ];
        let found = check_file_docs(&files);
        let paths: Vec<_> = found.iter().map(|v| v.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["b.rs", "c.rs", "d.rs"]);
        assert_eq!(found[0].to_string(), "b.rs:1: file does not start with a `//!` line saying what it holds");
    }

    #[test]
    fn io_free_check_flags_clock_reads_and_awaits_outside_tests() {
        let text = "//! Fake.\n\
            fn now() -> u64 { std::time::Instant::now(); 0 }\n\
            fn wall() { let _ = SystemTime::now().duration_since(UNIX_EPOCH); }\n\
            async fn wait(f: F) { f.await }\n\
            // A comment may say Instant::now and .await.\n\
            fn text() -> &'static str { \"Instant::now\" }\n\
            #[cfg(test)]\n\
            mod tests {\n    fn t() { std::time::Instant::now(); x.await; }\n}\n";
        let file = fake("crates/ws-core/src/fake.rs", text);
        let found = check_io_free_sources(&[&file]);
        assert_eq!(lines(&found), [2, 3, 3, 4], "{found:#?}");
        assert!(found[0].to_string().starts_with("crates/ws-core/src/fake.rs:2: `Instant::now` reads the clock"));
    }

    #[test]
    fn io_free_check_skips_test_only_files() {
        let lib = fake("crates/ws-core/src/lib.rs", "//! Lib.\n#[cfg(test)]\nmod sim;\nmod hub;\n");
        let sim = fake("crates/ws-core/src/sim.rs", "//! Sim.\nfn f() { Instant::now(); }\n");
        let sim_child = fake("crates/ws-core/src/sim/clock.rs", "//! Clock.\nfn f() { Instant::now(); }\n");
        let hub = fake("crates/ws-core/src/hub.rs", "//! Hub.\nfn f() { Instant::now(); }\n");
        let inner = fake("crates/ws-core/src/hub/t.rs", "//! T.\n#![cfg(test)]\nfn f() { Instant::now(); }\n");
        let found = check_io_free_sources(&[&lib, &sim, &sim_child, &hub, &inner]);
        let paths: Vec<_> = found.iter().map(|v| v.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["crates/ws-core/src/hub.rs"]);
    }

    #[test]
    fn test_attribute_check_flags_ignored_and_panicking_tests() {
        let text = format!(
            "//! Fake.\n#[test]\n{}]\nfn a() {{}}\n#[test]\n{}(expected = \"boom\")]\nfn b() {{}}\n// {}] in a comment is fine\n",
            concat!("#[", "ignore"),
            concat!("#[", "should_panic"),
            concat!("#[", "ignore"),
        );
        let found = check_test_attributes(&[fake("t.rs", &text)]);
        assert_eq!(lines(&found), [3, 6], "{found:#?}");
    }

    #[test]
    fn tree_verdict_reads_every_cargo_tree_outcome() {
        let tree = "tokio v1.0.0\n└── ws-core v0.1.0\n";
        assert_eq!(tree_verdict(true, tree, "").unwrap().as_deref(), Some(tree.trim_end()));
        assert_eq!(tree_verdict(true, "", "warning: nothing to print.").unwrap(), None);
        let unmatched = "error: package ID specification `tokio` did not match any packages";
        assert_eq!(tree_verdict(false, "", unmatched).unwrap(), None);
        assert!(tree_verdict(false, "", "error: the specification `tokio` is ambiguous").is_err());
    }

    /// The dependency check finds a dependency that does exist, so its silence about the forbidden ones means something.
    #[test]
    fn dependency_check_finds_a_real_dependency() {
        let tree = dependency_path(&crate::workspace_root(), "ws-protocol", "serde").expect("cargo tree runs");
        let tree = tree.expect("ws-protocol depends on serde");
        assert!(tree.lines().any(|line| line.contains("ws-protocol")), "{tree}");
    }
}
