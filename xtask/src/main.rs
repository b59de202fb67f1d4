//! `cargo xtask`: ws-hub's project tasks (`ci`, `tidy`, `bench`, `autobahn`, `soak`, `fuzz`), run with the workspace
//! root as working directory.

mod autobahn;
mod bench;
mod ci;
mod fuzz;
mod process;
mod soak;
mod source;
mod target_dir;
mod tidy;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci        run every check CI runs (fmt, clippy, test, autobahn, doc, tidy, fuzz, bench, soak), in order, stopping at the
            first failure
  bench     the performance gate: micro-benches and end-to-end scenarios, hub against the reference server,
            compared with benches/baseline.json (`cargo xtask bench --help` for its options)
  autobahn  run the Autobahn|Testsuite cases (kosoku) against ws-transport's echo endpoint; all must pass
  soak      minutes of churn, publishes, slow consumers and kicks at once against a release ws-server, then
            check deliveries, descriptors and memory (`cargo xtask soak --help` for its options)
  fuzz      build the cargo-fuzz targets in fuzz/ and run each for a while (nightly; skipped without it;
            `cargo xtask fuzz --help` for its options)
  tidy      check the source rules: `//!` file docs, IO-free ws-core and ws-protocol, no ignored or panicking tests";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["ci"] => ci::run(&root),
        ["autobahn"] => autobahn::run(&root),
        ["bench", "-h" | "--help"] => {
            println!("{}", bench::USAGE);
            return ExitCode::SUCCESS;
        }
        ["bench", ..] => bench::run(&root, &args[1..]),
        ["soak", "-h" | "--help"] => {
            println!("{}", soak::USAGE);
            return ExitCode::SUCCESS;
        }
        ["soak", ..] => soak::run(&root, &args[1..]),
        ["fuzz", "-h" | "--help"] => {
            println!("{}", fuzz::USAGE);
            return ExitCode::SUCCESS;
        }
        ["fuzz", ..] => fuzz::run(&root, &args[1..]),
        ["tidy"] => tidy::run_and_report(&root),
        ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo that runs this task (`$CARGO`, set by `cargo run` and `cargo test`), so nested commands use the same
/// toolchain; plain `cargo` otherwise.
pub(crate) fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}
