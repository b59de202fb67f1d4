//! `ws-server`: parse the command line and configuration, install logging, serve until a signal, drain, exit.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser as _;
use ws_server::{Cli, Command, Config, Server};

/// The warning about `WS_SERVER_*` variables that are not configuration.
const IGNORED: &str = "ignoring WS_SERVER_* variables that name no configuration key (Kubernetes sets such \
    variables for a Service named ws-server; nested keys are joined with `__`)";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ws-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.command {
        Some(Command::CheckConfig { file }) => Some(file.as_path()),
        _ => cli.config.as_deref(),
    };
    let config = Config::load(file, &cli.overlay())?;
    let ignored = ws_server::ignored_env_vars();
    let serving = cli.command.is_none() && !cli.print_config;
    if !serving && !ignored.is_empty() {
        eprintln!("ws-server: warning: {IGNORED}: {}", ignored.join(" "));
    }
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            println!("{}: configuration is valid", file.display());
            return Ok(());
        }
        Some(Command::GenToken { user, ttl }) => {
            if config.auth.jwt.algorithm != "HS256" {
                anyhow::bail!("gen-token needs auth.jwt.algorithm = \"HS256\" and auth.jwt.secret");
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            println!("{}", ws_server::hs256_token(&config.auth.jwt.secret, &user, now, ttl.as_secs())?);
            return Ok(());
        }
        _ => {}
    }
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    ws_server::init_logging(&config.log, std::io::stderr)?;
    if !ignored.is_empty() {
        // Names only, once: a value may be a secret set under a misspelt name.
        tracing::warn!(variables = %ignored.join(" "), "{IGNORED}");
    }
    let mut runtime = if config.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if config.workers > 1 {
            b.worker_threads(config.workers);
        }
        b
    };
    runtime.enable_all().build()?.block_on(async move {
        // Listen for the signals before binding: a SIGTERM that comes as soon as the server is up must drain it,
        // not kill it (the default action, until a handler is installed).
        let shutdown = shutdown_signal()?;
        let server = Server::bind(config).await?;
        server.run(shutdown).await
    })
}

/// Installs the SIGINT and SIGTERM handlers now; the future completes on the first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
