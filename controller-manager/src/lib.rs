//! `kube-controller-manager`: upstream's control loops, each a controller
//! in [`controllers`] over shared informers ([`informer`]) and rate-limited
//! work queues ([`workqueue`]), run while this process holds the
//! `kube-system/kube-controller-manager` Lease.

pub mod context;
pub mod controllers;
pub mod discovery;
pub mod expectations;
pub mod informer;
pub mod options;
pub mod util;
pub mod workqueue;

/// Events, shared with the other components.
pub use component_base::events;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use prometheus_client::registry::Registry;

pub use options::Options;

/// Runs the controller-manager until SIGTERM/SIGINT, or until it loses its
/// lease (an error: upstream exits then too, and a restart rejoins).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let enabled = controllers::enabled(&opts.controllers).map_err(|e| anyhow::anyhow!(e))?;
    let client = component_base::client::from_kubeconfig(&opts.kubeconfig).await?;
    let root_ca = root_ca(&opts)?;
    let state = component_base::serving::State::new(Registry::default());
    if opts.secure_port != 0 {
        let addr = format!("{}:{}", opts.bind_address, opts.secure_port)
            .parse()
            .with_context(|| {
                format!(
                    "--bind-address {} with --secure-port {}",
                    opts.bind_address, opts.secure_port
                )
            })?;
        let bound = component_base::serving::serve(addr, &opts.tls, state.clone()).await?;
        tracing::info!(address = %bound, "serving securely");
    }
    let opts = Arc::new(opts);
    let work = {
        let client = client.clone();
        let opts = opts.clone();
        let registry = state.registry.clone();
        let ready = state.ready.clone();
        move || async move {
            let ctx = context::Ctx::new(client, opts, root_ca, registry);
            start_controllers(&ctx, &enabled)?;
            ready.store(true, Ordering::Relaxed);
            futures::future::pending::<()>().await;
            Ok(())
        }
    };
    let main = async {
        if opts.leader_elect {
            let lease = component_base::leader::Config::from_flags(
                &opts.lease_namespace,
                &opts.lease_name,
                opts.lease_duration,
                opts.renew_deadline,
            );
            component_base::leader::run(client.clone(), lease, work).await
        } else {
            work().await
        }
    };
    tokio::select! {
        r = main => r,
        _ = component_base::signals::shutdown() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// Starts the `enabled` controllers (canonical names) in table order.
pub fn start_controllers(ctx: &Arc<context::Ctx>, enabled: &[&str]) -> anyhow::Result<()> {
    for c in controllers::all() {
        if !enabled.contains(&c.name) {
            continue;
        }
        match c.start {
            Some(start) => {
                start(ctx).with_context(|| format!("starting {}", c.name))?;
                tracing::info!(controller = c.name, "started controller");
            }
            None => tracing::warn!(controller = c.name, "controller is not implemented here; skipping"),
        }
    }
    Ok(())
}

/// The CA bundle to publish as `kube-root-ca.crt`: `--root-ca-file`, else
/// the certificate authority of the kubeconfig's current cluster.
fn root_ca(opts: &Options) -> anyhow::Result<Option<String>> {
    if let Some(p) = &opts.root_ca_file {
        let pem = std::fs::read_to_string(p).with_context(|| format!("reading --root-ca-file {}", p.display()))?;
        return Ok(Some(pem));
    }
    let kc = kube::config::Kubeconfig::read_from(&opts.kubeconfig)?;
    let ctx_name = kc.current_context.clone().unwrap_or_default();
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = kc
        .clusters
        .iter()
        .find(|c| Some(&c.name) == cluster_name.as_ref())
        .or(kc.clusters.first())
        .and_then(|c| c.cluster.as_ref());
    let Some(cluster) = cluster else { return Ok(None) };
    if let Some(data) = &cluster.certificate_authority_data {
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("decoding certificate-authority-data")?;
        return Ok(Some(String::from_utf8_lossy(&pem).into_owned()));
    }
    if let Some(file) = &cluster.certificate_authority {
        return Ok(Some(
            std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        ));
    }
    Ok(None)
}
