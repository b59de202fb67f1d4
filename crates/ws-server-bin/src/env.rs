//! The `WS_SERVER_*` environment: which variables configure the server, and which belong to someone else.
//!
//! Kubernetes gives every pod variables named after each Service of its namespace: for a Service named
//! `ws-server`, `WS_SERVER_PORT=tcp://10.0.0.1:8080`, `WS_SERVER_SERVICE_HOST=10.0.0.1`,
//! `WS_SERVER_PORT_8080_TCP_ADDR` and more. They share our prefix but are not configuration, and refusing
//! them would stop the server in exactly the deployment its name suggests. So a variable with no `__` in
//! its name that names no top-level key is someone else's: it is left out of the configuration and
//! reported by [`ignored_env_vars`]. A variable with `__` is always ours, so a typo in a nested key
//! (`WS_SERVER_BROKER__REDIS_ULR`) still stops the server, as does a known key with a bad value.

use std::sync::LazyLock;

use figment::providers::Env;

use crate::config::{Config, ENV_PREFIX};

/// What joins nested keys in a variable's name: `WS_SERVER_LIMITS__MAX_CONNECTIONS`.
const NESTING: &str = "__";

/// The figment provider of the server's variables: nested keys joined with `__`, and the variables that are
/// someone else's left out.
pub(crate) fn provider() -> Env {
    Env::prefixed(ENV_PREFIX).filter(|key| !is_foreign(key.as_str())).split(NESTING)
}

/// The names of the `WS_SERVER_*` variables the configuration leaves out, sorted: those with no `__` whose
/// name, after the prefix, is not a top-level key (the variables Kubernetes sets for a Service named
/// `ws-server`). Only names: a value might be a secret (a misspelt `WS_SERVER_AUTH_JWT_SECRET` is ignored too),
/// so whoever reports them should not print the values.
#[must_use]
pub fn ignored_env_vars() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| strip_prefix(name.trim()).is_some_and(is_foreign))
        .collect();
    names.sort();
    names
}

/// The name after the prefix, compared without case as figment does.
fn strip_prefix(name: &str) -> Option<&str> {
    let head = name.get(..ENV_PREFIX.len())?;
    head.eq_ignore_ascii_case(ENV_PREFIX).then(|| &name[ENV_PREFIX.len()..])
}

/// Whether a variable (its name after the prefix) is someone else's.
fn is_foreign(key: &str) -> bool {
    let key = key.trim();
    !key.contains(NESTING) && !TOP_LEVEL_KEYS.iter().any(|top| top.eq_ignore_ascii_case(key))
}

/// The configuration's top-level keys, read from the default configuration so the list cannot drift.
static TOP_LEVEL_KEYS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let defaults = toml::Value::try_from(Config::default()).expect("the default configuration serializes");
    defaults.as_table().map(|t| t.keys().cloned().collect()).unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_service_variables_are_foreign_and_configuration_is_not() {
        for key in ["PORT", "PORT_8080_TCP_ADDR", "SERVICE_HOST", "SERVICE_PORT_HTTP", "AUTH_JWT_SECRET"] {
            assert!(is_foreign(key), "{key}");
        }
        for key in ["LISTEN", "workers", "LIMITS", "LIMITS__MAX_CONNECTIONS", "BROKER__REDIS_ULR", "NOPE__X"] {
            assert!(!is_foreign(key), "{key}");
        }
        assert_eq!(strip_prefix("ws_server_PORT"), Some("PORT"));
        assert_eq!(strip_prefix("WS_SERV"), None);
        assert_eq!(strip_prefix("OTHER_SERVER_PORT"), None);
    }
}
