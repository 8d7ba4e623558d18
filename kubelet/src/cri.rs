//! The CRI v1 client: the kubelet's only way to its container runtime.
//!
//! Everything goes through the CRI gRPC API itself (no runtime-specific
//! shortcuts), so any CRI server works: containerd here, an in-memory one
//! in a scale test.

use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use cri::*;

/// Labels and annotations the kubelet puts on sandboxes and containers
/// (upstream's names, so tools like crictl show the same).
pub mod keys {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
    pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
    pub const TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
    /// Ours: "init", "sidecar", "app" or "ephemeral", so a restarted kubelet
    /// knows a container's role without the pod spec.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
    /// Ours: the resources the container was created with
    /// (`cpu_shares,cpu_quota,memory_limit`), for runtimes whose status does
    /// not report them (containerd 1.6).
    pub const RESOURCES: &str = "io.kubernetes.container.resources";
    /// Ours: the host path of the container's termination-message file.
    pub const TERMINATION_LOG_HOST_PATH: &str = "io.kubernetes.container.terminationLogHostPath";
}

/// A connected CRI runtime (runtime and image services over one channel).
#[derive(Clone)]
pub struct Runtime {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    pub timeout: Duration,
}

fn req<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

impl Runtime {
    /// Connects to `unix:///path` (or a bare path) or `tcp://host:port`.
    pub async fn connect(endpoint: &str, timeout: Duration) -> anyhow::Result<Runtime> {
        let channel = if let Some(addr) = endpoint.strip_prefix("tcp://") {
            Endpoint::try_from(format!("http://{addr}"))?
                .connect()
                .await
                .with_context(|| format!("connecting to the CRI runtime at {endpoint}"))?
        } else {
            let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint).to_string();
            Endpoint::try_from("http://[::]:50051")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
                }))
                .await
                .with_context(|| format!("connecting to the CRI runtime at {endpoint}"))?
        };
        let channel_rt = channel.clone();
        let max = 16 * 1024 * 1024;
        Ok(Runtime {
            rt: RuntimeServiceClient::new(channel_rt).max_decoding_message_size(max),
            img: ImageServiceClient::new(channel).max_decoding_message_size(max),
            timeout,
        })
    }

    pub async fn version(&self) -> Result<VersionResponse, tonic::Status> {
        Ok(self
            .rt
            .clone()
            .version(req(VersionRequest::default(), self.timeout))
            .await?
            .into_inner())
    }

    pub async fn status(&self) -> Result<StatusResponse, tonic::Status> {
        let r = StatusRequest { verbose: false };
        Ok(self.rt.clone().status(req(r, self.timeout)).await?.into_inner())
    }

    pub async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String, tonic::Status> {
        let r = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        // Sandbox creation includes CNI setup; give it the long timeout.
        Ok(self
            .rt
            .clone()
            .run_pod_sandbox(req(r, self.timeout * 2))
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), tonic::Status> {
        let r = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.clone().stop_pod_sandbox(req(r, self.timeout)).await?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), tonic::Status> {
        let r = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.clone().remove_pod_sandbox(req(r, self.timeout)).await?;
        Ok(())
    }

    pub async fn pod_sandbox_status(&self, id: &str) -> Result<Option<PodSandboxStatus>, tonic::Status> {
        let r = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        Ok(self
            .rt
            .clone()
            .pod_sandbox_status(req(r, self.timeout))
            .await?
            .into_inner()
            .status)
    }

    pub async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>, tonic::Status> {
        let r = ListPodSandboxRequest { filter: None };
        Ok(self
            .rt
            .clone()
            .list_pod_sandbox(req(r, self.timeout))
            .await?
            .into_inner()
            .items)
    }

    /// The sandboxes labelled with pod `uid`.
    pub async fn pod_sandboxes(&self, uid: &str) -> Result<Vec<PodSandbox>, tonic::Status> {
        let filter = PodSandboxFilter {
            label_selector: [(keys::POD_UID.to_string(), uid.to_string())].into_iter().collect(),
            ..Default::default()
        };
        let r = ListPodSandboxRequest { filter: Some(filter) };
        Ok(self
            .rt
            .clone()
            .list_pod_sandbox(req(r, self.timeout))
            .await?
            .into_inner()
            .items)
    }

    /// The containers labelled with pod `uid`.
    pub async fn pod_containers(&self, uid: &str) -> Result<Vec<Container>, tonic::Status> {
        let filter = ContainerFilter {
            label_selector: [(keys::POD_UID.to_string(), uid.to_string())].into_iter().collect(),
            ..Default::default()
        };
        let r = ListContainersRequest { filter: Some(filter) };
        Ok(self
            .rt
            .clone()
            .list_containers(req(r, self.timeout))
            .await?
            .into_inner()
            .containers)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let r = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(self
            .rt
            .clone()
            .create_container(req(r, self.timeout))
            .await?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), tonic::Status> {
        let r = StartContainerRequest {
            container_id: id.into(),
        };
        self.rt.clone().start_container(req(r, self.timeout)).await?;
        Ok(())
    }

    /// Stops with `grace` seconds between SIGTERM and SIGKILL.
    pub async fn stop_container(&self, id: &str, grace: i64) -> Result<(), tonic::Status> {
        let r = StopContainerRequest {
            container_id: id.into(),
            timeout: grace,
        };
        let t = self.timeout + Duration::from_secs(grace.max(0) as u64);
        self.rt.clone().stop_container(req(r, t)).await?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), tonic::Status> {
        let r = RemoveContainerRequest {
            container_id: id.into(),
        };
        self.rt.clone().remove_container(req(r, self.timeout)).await?;
        Ok(())
    }

    pub async fn list_containers(&self) -> Result<Vec<Container>, tonic::Status> {
        let r = ListContainersRequest { filter: None };
        Ok(self
            .rt
            .clone()
            .list_containers(req(r, self.timeout))
            .await?
            .into_inner()
            .containers)
    }

    pub async fn container_status(&self, id: &str) -> Result<Option<ContainerStatus>, tonic::Status> {
        let r = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        Ok(self
            .rt
            .clone()
            .container_status(req(r, self.timeout))
            .await?
            .into_inner()
            .status)
    }

    pub async fn update_container_resources(
        &self,
        id: &str,
        linux: LinuxContainerResources,
    ) -> Result<(), tonic::Status> {
        let r = UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(linux),
            windows: None,
            annotations: Default::default(),
        };
        self.rt.clone().update_container_resources(req(r, self.timeout)).await?;
        Ok(())
    }

    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecSyncResponse, tonic::Status> {
        let r = ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout.as_secs().max(1) as i64,
        };
        Ok(self
            .rt
            .clone()
            .exec_sync(req(r, timeout + self.timeout))
            .await?
            .into_inner())
    }

    pub async fn exec(&self, r: ExecRequest) -> Result<String, tonic::Status> {
        Ok(self.rt.clone().exec(req(r, self.timeout)).await?.into_inner().url)
    }

    pub async fn attach(&self, r: AttachRequest) -> Result<String, tonic::Status> {
        Ok(self.rt.clone().attach(req(r, self.timeout)).await?.into_inner().url)
    }

    pub async fn port_forward(&self, r: PortForwardRequest) -> Result<String, tonic::Status> {
        Ok(self
            .rt
            .clone()
            .port_forward(req(r, self.timeout))
            .await?
            .into_inner()
            .url)
    }

    pub async fn reopen_container_log(&self, id: &str) -> Result<(), tonic::Status> {
        let r = ReopenContainerLogRequest {
            container_id: id.into(),
        };
        self.rt.clone().reopen_container_log(req(r, self.timeout)).await?;
        Ok(())
    }

    pub async fn list_container_stats(&self) -> Result<Vec<ContainerStats>, tonic::Status> {
        let r = ListContainerStatsRequest { filter: None };
        Ok(self
            .rt
            .clone()
            .list_container_stats(req(r, self.timeout))
            .await?
            .into_inner()
            .stats)
    }

    pub async fn image_status(&self, image: &str) -> Result<Option<Image>, tonic::Status> {
        let r = ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        Ok(self
            .img
            .clone()
            .image_status(req(r, self.timeout))
            .await?
            .into_inner()
            .image)
    }

    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<AuthConfig>,
        sandbox: Option<PodSandboxConfig>,
    ) -> Result<String, tonic::Status> {
        let r = PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config: sandbox,
        };
        // Pulls are long-running (upstream: no deadline but the image's size).
        Ok(self
            .img
            .clone()
            .pull_image(req(r, self.timeout * 5))
            .await?
            .into_inner()
            .image_ref)
    }

    pub async fn list_images(&self) -> Result<Vec<Image>, tonic::Status> {
        let r = ListImagesRequest { filter: None };
        Ok(self
            .img
            .clone()
            .list_images(req(r, self.timeout))
            .await?
            .into_inner()
            .images)
    }

    pub async fn remove_image(&self, image: &str) -> Result<(), tonic::Status> {
        let r = RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        self.img.clone().remove_image(req(r, self.timeout)).await?;
        Ok(())
    }

    pub async fn image_fs_info(&self) -> Result<ImageFsInfoResponse, tonic::Status> {
        Ok(self
            .img
            .clone()
            .image_fs_info(req(ImageFsInfoRequest {}, self.timeout))
            .await?
            .into_inner())
    }
}

pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
