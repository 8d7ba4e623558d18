//! What every daemon of the cluster shares: logging set-up, shutdown
//! signals, leader election, the client identity (kubeconfig) and the
//! secure serving of health and metrics. Flags stay in each binary (clap);
//! the wiring stays in each component's library so tests can start
//! components in-process.

pub mod client;
pub mod duration;
pub mod events;
pub mod serving;

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

pub mod leader {
    //! Leader election for replicated components (the scheduler and the
    //! controller-manager run one active instance, as upstream's
    //! `--leader-elect`), over a `coordination.k8s.io` Lease managed by
    //! `kube-lease-manager`.

    use std::future::Future;
    use std::time::Duration;

    use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};

    /// Which lease, who we are, and its timing (seconds).
    #[derive(Clone, Debug)]
    pub struct Config {
        pub namespace: String,
        pub name: String,
        pub identity: String,
        /// How long a lease holds without renewal.
        pub lease_duration: u64,
        /// How long before expiry the holder renews.
        pub renew_before: u64,
    }

    impl Config {
        /// Upstream's defaults: a 15 s lease in `kube-system`, renewed well
        /// before it expires.
        pub fn new(name: &str, identity: &str) -> Self {
            Self {
                namespace: "kube-system".into(),
                name: name.into(),
                identity: identity.into(),
                lease_duration: 15,
                renew_before: 5,
            }
        }
    }

    impl Config {
        /// A lease from upstream's flags: `--leader-elect-lease-duration`
        /// and `--leader-elect-renew-deadline` (renewal starts when only
        /// the difference is left), with this process's [`identity`].
        pub fn from_flags(namespace: &str, name: &str, lease_duration: Duration, renew_deadline: Duration) -> Self {
            let secs = |d: Duration| d.as_secs().max(1);
            Self {
                namespace: namespace.into(),
                name: name.into(),
                identity: identity(),
                lease_duration: secs(lease_duration),
                renew_before: secs(lease_duration.saturating_sub(renew_deadline)),
            }
        }
    }

    /// Who holds a lease: the host name and a random suffix, as
    /// upstream's `<hostname>_<uuid>`.
    pub fn identity() -> String {
        use rand::Rng;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
        let mut rng = rand::rng();
        format!(
            "{}_{:08x}-{:04x}-{:04x}",
            host.trim(),
            rng.random::<u32>(),
            rng.random::<u16>(),
            rng.random::<u16>()
        )
    }

    /// Waits until this process holds the lease, then runs `work` while it
    /// does. Returns `work`'s result when it ends (releasing the lease), or
    /// an error as soon as the lease is lost (after `work` is dropped).
    pub async fn run<W, Fut>(client: kube::Client, cfg: Config, work: W) -> anyhow::Result<()>
    where
        W: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let params = LeaseParams::new(cfg.identity.clone(), cfg.lease_duration, cfg.renew_before);
        let manager = LeaseManager::new(client, &cfg.name, &cfg.namespace, params, LeaseCreateMode::AutoCreate).await?;
        let (mut leading, task) = manager.watch().await;
        while !*leading.borrow_and_update() {
            leading.changed().await?;
        }
        tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
        let result = tokio::select! {
            r = work() => r,
            lost = async {
                loop {
                    if leading.changed().await.is_err() || !*leading.borrow_and_update() {
                        return anyhow::anyhow!("lost the lease {}/{}", cfg.namespace, cfg.name);
                    }
                }
            } => Err(lost),
        };
        // Closing the channel makes the manager release the lease and stop.
        drop(leading);
        let _ = task.await;
        result
    }
}
