//! `soak`: the soak driver; see `ws_benches::soak`.

fn main() -> std::process::ExitCode {
    ws_benches::soak::main()
}
