//! Where pod volumes and environment come from: the API, read with the
//! kubelet's own identity (ConfigMaps, Secrets, claims and volumes,
//! service-account tokens through TokenRequest bound to the pod).

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec, TokenRequestStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, PostParams};

use crate::Kubelet;

pub struct ApiSources {
    client: kube::Client,
}

impl ApiSources {
    pub fn new(client: kube::Client) -> Self {
        ApiSources { client }
    }
}

async fn get_opt<K>(api: Api<K>, name: &str) -> anyhow::Result<Option<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?)
}

impl crate::volumes::Sources for ApiSources {
    async fn config_map(&self, ns: &str, name: &str) -> anyhow::Result<Option<ConfigMap>> {
        get_opt(Api::namespaced(self.client.clone(), ns), name).await
    }

    async fn secret(&self, ns: &str, name: &str) -> anyhow::Result<Option<Secret>> {
        get_opt(Api::namespaced(self.client.clone(), ns), name).await
    }

    async fn pvc(&self, ns: &str, name: &str) -> anyhow::Result<Option<PersistentVolumeClaim>> {
        get_opt(Api::namespaced(self.client.clone(), ns), name).await
    }

    async fn pv(&self, name: &str) -> anyhow::Result<Option<PersistentVolume>> {
        get_opt(Api::all(self.client.clone()), name).await
    }

    async fn service_account_token(
        &self,
        ns: &str,
        service_account: &str,
        spec: TokenRequestSpec,
    ) -> anyhow::Result<TokenRequestStatus> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let tr = TokenRequest {
            metadata: Default::default(),
            spec,
            status: None,
        };
        let out: TokenRequest = api
            .create_subresource("token", service_account, &PostParams::default(), &tr)
            .await?;
        out.status
            .ok_or_else(|| anyhow::anyhow!("the TokenRequest for {ns}/{service_account} came back without a token"))
    }
}

impl Kubelet {
    /// Allocatable resources of this node (env resourceFieldRef defaults).
    pub fn allocatable(&self) -> BTreeMap<String, Quantity> {
        crate::node::capacity_and_allocatable(self).1
    }

    pub fn dns_settings(&self) -> crate::dns::DnsSettings {
        crate::dns::DnsSettings {
            cluster_dns: self.opts.cluster_dns.clone(),
            cluster_domain: self.opts.cluster_domain.clone(),
            host_resolv_conf: self.opts.resolv_conf.clone(),
        }
    }

    /// The container's environment; the error is the
    /// CreateContainerConfigError message.
    pub async fn environment(
        &self,
        pod: &Pod,
        c: &Container,
        info: &crate::volumes::PodRuntimeInfo,
    ) -> Result<Vec<(String, String)>, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        let services: Vec<Service> = if links {
            let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
            api.list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let master: Vec<Service> = {
            let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
            api.get_opt("kubernetes").await.ok().flatten().into_iter().collect()
        };
        let src = crate::envvars::ServiceEnvSource {
            services: &services,
            master_services: &master,
        };
        crate::envvars::make_environment(self.volumes.sources(), pod, c, info, &src)
            .await
            .map_err(|e| e.to_string())
    }
}
