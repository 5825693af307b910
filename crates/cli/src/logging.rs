//! Where the process logs, and how.

use std::path::PathBuf;

use crate::LogFormat;

/// Logs to `file` when given and it can be created (returned then), else to standard error;
/// colours only on a terminal.
pub fn init_logging(format: LogFormat, file: Option<PathBuf>) -> Option<PathBuf> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("DRIFTWATCH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let opened = file.and_then(|path| match std::fs::File::create(&path) {
        Ok(f) => Some((path, f)),
        Err(e) => {
            eprintln!("note: logs on stderr: {} not writable: {e}", path.display());
            None
        }
    });
    match opened {
        Some((path, f)) => {
            let builder = builder
                .with_writer(std::sync::Mutex::new(f))
                .with_ansi(false);
            match format {
                LogFormat::Text => builder.init(),
                LogFormat::Json => builder.json().init(),
            }
            Some(path)
        }
        None => {
            let builder = builder
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal());
            match format {
                LogFormat::Text => builder.init(),
                LogFormat::Json => builder.json().init(),
            }
            None
        }
    }
}
