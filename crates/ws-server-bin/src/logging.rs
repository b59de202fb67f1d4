//! Logging through `tracing`, as text or JSON lines.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber writing to `writer` (stderr in the binary).
/// Tokens never reach the logs: the transport logs request paths without their
/// query strings and never logs headers.
///
/// # Errors
/// When the filter does not parse or a subscriber is already installed.
pub fn init<W>(config: &LogConfig, writer: W) -> anyhow::Result<()>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&config.level)
        .map_err(|e| anyhow::anyhow!("invalid value for `log.level`: {:?}: {e}", config.level))?;
    // Colours only for a terminal: files and log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(true).with_ansi(ansi);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
