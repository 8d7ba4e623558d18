//! CRI over containerd's unix socket, for readiness checks, cleanup and
//! tests (the kubelet has its own client).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ListContainersRequest, ListPodSandboxRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    StopPodSandboxRequest, VersionRequest,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A gRPC channel to the CRI socket at `socket`. The URI is a placeholder:
/// every connection goes to the socket.
pub async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let socket: PathBuf = socket.to_owned();
    let channel = Endpoint::try_from("http://[::1]:1")?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await?;
    Ok(channel)
}

pub async fn runtime_client(socket: &Path) -> anyhow::Result<RuntimeServiceClient<Channel>> {
    Ok(RuntimeServiceClient::new(connect(socket).await?))
}

pub async fn image_client(socket: &Path) -> anyhow::Result<ImageServiceClient<Channel>> {
    Ok(ImageServiceClient::new(connect(socket).await?))
}

/// The runtime's name and version, once its CRI service answers.
pub async fn version(socket: &Path) -> anyhow::Result<(String, String)> {
    let mut client = runtime_client(socket).await?;
    let version = client.version(VersionRequest::default()).await?.into_inner();
    Ok((version.runtime_name, version.runtime_version))
}

/// Stops and removes every pod sandbox (which tears down its containers,
/// CNI networking and network namespace), then any container left
/// outside a sandbox. Returns how many sandboxes there were.
pub async fn remove_all_pods(socket: &Path) -> anyhow::Result<usize> {
    let mut client = runtime_client(socket).await?;
    let sandboxes = client
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    let mut first_error = None;
    for sandbox in &sandboxes {
        let id = sandbox.id.clone();
        let stopped = client
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        let removed = client
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        // Gone already (the kubelet removed it meanwhile): that is success.
        let result = stopped.and(removed).map(|_| ());
        let result = match result {
            Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
            r => r,
        };
        if let Err(e) = result {
            tracing::warn!(sandbox = %id, error = %e, "removing pod sandbox");
            first_error.get_or_insert(anyhow::Error::from(e).context(format!("removing sandbox {id}")));
        }
    }
    let containers = client
        .list_containers(ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    for container in containers {
        let removed = client
            .remove_container(RemoveContainerRequest {
                container_id: container.id.clone(),
            })
            .await;
        if let Err(e) = removed {
            first_error.get_or_insert(anyhow::Error::from(e).context(format!("removing container {}", container.id)));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(sandboxes.len()),
    }
    .context("CRI cleanup")
}
