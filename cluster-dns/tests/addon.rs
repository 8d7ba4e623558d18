//! The addon manifest parses as the API's types and matches the image
//! catalog, the flags and kubeadm's DNS Service address.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde::Deserialize;

#[test]
fn addon_manifest() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../addons/cluster-dns.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut kinds = Vec::new();
    let mut deployment = None;
    let mut service = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc).unwrap();
        let kind = value["kind"].as_str().unwrap().to_owned();
        match kind.as_str() {
            "Deployment" => deployment = Some(serde_yaml::from_value::<Deployment>(value).unwrap()),
            "Service" => service = Some(serde_yaml::from_value::<Service>(value).unwrap()),
            _ => {}
        }
        kinds.push(kind);
    }
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service"
        ]
    );

    let pod = deployment.unwrap().spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.k8s.io/kubelite/cluster-dns:v0.1.0")
    );
    assert_eq!(
        container.args.as_deref(),
        Some(&["--cluster-domain=cluster.local".to_owned()][..])
    );
    assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
    assert_eq!(pod.service_account_name.as_deref(), Some("coredns"));

    let spec = service.unwrap().spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    let ports: Vec<(String, i32, String)> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
        .collect();
    assert_eq!(
        ports,
        [
            ("dns".into(), 53, "UDP".into()),
            ("dns-tcp".into(), 53, "TCP".into()),
            ("metrics".into(), 9153, "TCP".into())
        ]
    );
}
