//! `loadgen`: the benchmark load generator; see `ws_benches::loadgen`.

fn main() -> std::process::ExitCode {
    ws_benches::loadgen::main()
}
