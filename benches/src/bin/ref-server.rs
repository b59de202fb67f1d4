//! `ref-server`: the reference server the hub is measured against; see `ws_benches::refserver`.

fn main() -> std::process::ExitCode {
    ws_benches::refserver::main()
}
