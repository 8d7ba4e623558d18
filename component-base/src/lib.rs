//! What every daemon of the cluster shares: logging set-up and shutdown
//! signals. Flags stay in each binary (clap); the wiring stays in each
//! component's library so tests can start components in-process.

pub mod logging {
    use tracing_subscriber::EnvFilter;

    /// Installs a `tracing` subscriber writing to stderr. The level comes
    /// from `RUST_LOG` (default `info`). Calling it twice is harmless.
    pub fn init() {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

pub mod signals {
    /// Resolves on SIGINT or SIGTERM: the moment a daemon starts a graceful
    /// shutdown.
    pub async fn shutdown() {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}
