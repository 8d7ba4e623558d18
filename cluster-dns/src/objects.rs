//! What the zone needs of a Service and an EndpointSlice: plain data taken
//! out of the API objects (pure conversions, no IO).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label an EndpointSlice's owning Service is named by.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `(namespace, name)` of a Service or an EndpointSlice.
pub type Key = (String, String);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// `clusterIPs` (one per family); empty while none is allocated.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the ready endpoints' addresses are the records.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Empty for an unnamed port (no `_port._proto` record).
    pub name: String,
    pub port: u16,
    /// Lowercase, `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub kind: ServiceKind,
    pub ports: Vec<Port>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    pub hostname: Option<String>,
    /// `conditions.ready`, unset counting as ready (as the API defines it).
    pub ready: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceInfo {
    pub namespace: String,
    pub name: String,
    /// The owning Service (`kubernetes.io/service-name`).
    pub service: String,
    pub ports: Vec<Port>,
    pub endpoints: Vec<Endpoint>,
}

impl ServiceInfo {
    pub fn key(&self) -> Key {
        (self.namespace.clone(), self.name.clone())
    }

    /// The zone's view of a Service; `None` without a name.
    pub fn from_service(svc: &Service) -> Option<ServiceInfo> {
        let name = svc.metadata.name.clone()?;
        let namespace = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let spec = svc.spec.clone().unwrap_or_default();
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            ServiceKind::ExternalName(spec.external_name.unwrap_or_default().trim_end_matches('.').to_owned())
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            let ips: Vec<String> = match spec.cluster_ips {
                Some(ips) if !ips.is_empty() => ips,
                _ => spec.cluster_ip.into_iter().collect(),
            };
            ServiceKind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
        };
        let ports = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                Some(Port {
                    name: p.name.unwrap_or_default(),
                    port: u16::try_from(p.port).ok()?,
                    protocol: p.protocol.unwrap_or_else(|| "TCP".into()).to_ascii_lowercase(),
                })
            })
            .collect();
        Some(ServiceInfo {
            namespace,
            name,
            kind,
            ports,
        })
    }
}

impl SliceInfo {
    pub fn key(&self) -> Key {
        (self.namespace.clone(), self.name.clone())
    }

    pub fn service_key(&self) -> Key {
        (self.namespace.clone(), self.service.clone())
    }

    /// The zone's view of an EndpointSlice; `None` without a name or an
    /// owning Service. FQDN slices carry no addresses we could answer with.
    pub fn from_slice(slice: &EndpointSlice) -> Option<SliceInfo> {
        let name = slice.metadata.name.clone()?;
        let namespace = slice.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.clone();
        let ip_family = matches!(slice.address_type.as_str(), "IPv4" | "IPv6");
        let ports = slice
            .ports
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                Some(Port {
                    name: p.name.unwrap_or_default(),
                    port: u16::try_from(p.port?).ok()?,
                    protocol: p.protocol.unwrap_or_else(|| "TCP".into()).to_ascii_lowercase(),
                })
            })
            .collect();
        let endpoints = if ip_family {
            slice
                .endpoints
                .iter()
                .map(|e| Endpoint {
                    addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
                    hostname: e.hostname.clone().filter(|h| !h.is_empty()),
                    ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(SliceInfo {
            namespace,
            name,
            service,
            ports,
            endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_kinds() {
        let cases = [
            (
                json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "fd00::1"], "ports": [{"name": "http", "port": 80}]}}),
                ServiceKind::ClusterIp(vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()]),
                "both families from clusterIPs",
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"clusterIP": "10.0.0.1"}}),
                ServiceKind::ClusterIp(vec!["10.0.0.1".parse().unwrap()]),
                "clusterIP alone",
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}),
                ServiceKind::Headless,
                "headless",
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"type": "ExternalName", "externalName": "example.com."}}),
                ServiceKind::ExternalName("example.com".into()),
                "external name without its trailing dot",
            ),
        ];
        for (svc, kind, why) in cases {
            let svc: Service = serde_json::from_value(svc).unwrap();
            assert_eq!(ServiceInfo::from_service(&svc).unwrap().kind, kind, "{why}");
        }
    }

    #[test]
    fn slice_readiness_and_ports() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "a-xyz", "namespace": "ns", "labels": {"kubernetes.io/service-name": "a"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.1.0.1"], "conditions": {"ready": true}, "hostname": "web-0"},
                {"addresses": ["10.1.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.1.0.3"]},
            ]
        }))
        .unwrap();
        let info = SliceInfo::from_slice(&slice).unwrap();
        assert_eq!(info.service, "a");
        assert_eq!(
            info.ports,
            [Port {
                name: "http".into(),
                port: 8080,
                protocol: "tcp".into()
            }]
        );
        let ready: Vec<bool> = info.endpoints.iter().map(|e| e.ready).collect();
        assert_eq!(ready, [true, false, true], "unset ready counts as ready");
        assert_eq!(info.endpoints[0].hostname.as_deref(), Some("web-0"));
    }
}
