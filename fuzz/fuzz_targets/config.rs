//! Fuzz target `config`: ws-server's configuration loader on any TOML text, environment and flags.
//!
//! Input: UTF-8 text in up to three parts separated by NUL bytes: the configuration file's TOML, then
//! environment variables as `KEY=VALUE` lines (each set as `WS_SERVER_KEY`), then the flags' overlay as TOML.
//! They go through `Config::load_str`, the layering the server runs at start (defaults, file, environment, flags,
//! then validation). Checked: loading returns a configuration or an error, never panics; an error has a message;
//! and an accepted configuration, printed as `--print-config` prints it, loads back to the same configuration.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_server::{Config, ENV_PREFIX};

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let mut parts = text.splitn(3, '\0');
    let file = parts.next().unwrap_or_default();
    let env: Vec<(String, &str)> = parts
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (format!("{ENV_PREFIX}{key}"), value))
        .collect();
    let flags: toml::Table = parts.next().and_then(|flags| flags.parse().ok()).unwrap_or_default();

    // The target runs on one thread, so changing the environment here races with nothing.
    for (key, value) in &env {
        std::env::set_var(key, value);
    }
    let loaded = Config::load_str(file, &flags);
    for (key, _) in &env {
        std::env::remove_var(key);
    }

    match loaded {
        Ok(config) => {
            let printed = config.to_toml();
            match Config::load_str(&printed, &toml::Table::new()) {
                Ok(again) => assert_eq!(again, config, "--print-config printed\n{printed}"),
                Err(error) => panic!("--print-config printed\n{printed}\nwhich does not load: {error}"),
            }
        }
        Err(error) => assert!(!error.to_string().is_empty(), "an error without a message: {error:?}"),
    }
});
