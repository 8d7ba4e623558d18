use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::*;
use crate::volumes::testing::FakeSources;

/// Expansion cases in the spirit of upstream's expansion tests, each with
/// what it shows.
#[test]
fn expansion() {
    let vars: HashMap<&str, &str> = [
        ("VAR_A", "A"),
        ("VAR_B", "B"),
        ("VAR_C", "C"),
        ("VAR_REF", "$(VAR_A)"),
        ("VAR_EMPTY", ""),
    ]
    .into_iter()
    .collect();
    let lookup = |name: &str| vars.get(name).map(|v| v.to_string());
    let cases = [
        ("$(VAR_A)", "A", "a whole reference"),
        ("---$(VAR_B)---", "---B---", "a reference inside text"),
        ("$(VAR_A)-$(VAR_A)", "A-A", "the same reference twice"),
        ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC", "adjacent references"),
        ("$(VAR_REF)", "$(VAR_A)", "values are not expanded again"),
        ("$(VAR_EMPTY)x", "x", "an empty value"),
        ("$(UNKNOWN)", "$(UNKNOWN)", "an unknown reference stays"),
        ("a$(UNKNOWN)b$(VAR_A)", "a$(UNKNOWN)bA", "unknown and known together"),
        ("$$(VAR_A)", "$(VAR_A)", "$$ escapes the reference"),
        ("$$$(VAR_A)", "$A", "an escaped $ then a reference"),
        ("$$$$(VAR_A)", "$$(VAR_A)", "two escapes"),
        ("x$$y", "x$y", "an escaped $ in text"),
        ("$$", "$", "only an escape"),
        ("$", "$", "a lone $"),
        ("abc$", "abc$", "a trailing $"),
        ("$VAR_A", "$VAR_A", "a $ without ( is literal"),
        ("$(VAR_A", "$(VAR_A", "an unclosed reference stays"),
        ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)", "the name runs to the first )"),
        ("$()", "$()", "an empty name is unknown"),
        ("$(VAR_A))", "A)", "an extra ) is text"),
        ("(VAR_A)", "(VAR_A)", "no $ no reference"),
        ("\\$(VAR_C)", "\\C", "backslash does not escape"),
        ("$é$(VAR_A)", "$éA", "a non-ASCII character after $"),
        ("", "", "empty input"),
    ];
    for (input, want, why) in cases {
        assert_eq!(expand(input, lookup), want, "{why}: {input:?}");
    }
}

fn service(v: serde_json::Value) -> Service {
    serde_json::from_value(v).expect("service")
}

#[test]
fn service_variables() {
    let svc = service(
        json!({"metadata": {"name": "my-db", "namespace": "ns"}, "spec": {"clusterIP": "10.0.0.11",
        "ports": [{"name": "sql", "port": 5432}, {"name": "metrics", "port": 9187, "protocol": "UDP"}]}}),
    );
    let got: BTreeMap<String, String> = service_env(&svc).into_iter().collect();
    let want: BTreeMap<String, String> = [
        ("MY_DB_SERVICE_HOST", "10.0.0.11"),
        ("MY_DB_SERVICE_PORT", "5432"),
        ("MY_DB_SERVICE_PORT_SQL", "5432"),
        ("MY_DB_SERVICE_PORT_METRICS", "9187"),
        ("MY_DB_PORT", "tcp://10.0.0.11:5432"),
        ("MY_DB_PORT_5432_TCP", "tcp://10.0.0.11:5432"),
        ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
        ("MY_DB_PORT_5432_TCP_PORT", "5432"),
        ("MY_DB_PORT_5432_TCP_ADDR", "10.0.0.11"),
        ("MY_DB_PORT_9187_UDP", "udp://10.0.0.11:9187"),
        ("MY_DB_PORT_9187_UDP_PROTO", "udp"),
        ("MY_DB_PORT_9187_UDP_PORT", "9187"),
        ("MY_DB_PORT_9187_UDP_ADDR", "10.0.0.11"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);

    let v6 = service(json!({"metadata": {"name": "v6"}, "spec": {"clusterIP": "fd00::1", "ports": [{"port": 80}]}}));
    assert!(service_env(&v6).contains(&("V6_PORT".to_string(), "tcp://[fd00::1]:80".to_string())));
    let headless = service(json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
    assert!(service_env(&headless).is_empty());
    let external =
        service(json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "x.example"}}));
    assert!(service_env(&external).is_empty());
}

fn kubernetes_service() -> Service {
    service(json!({"metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}}))
}

#[test]
fn service_links() {
    let master = [kubernetes_service()];
    let local = [service(json!({"metadata": {"name": "web", "namespace": "ns"},
        "spec": {"clusterIP": "10.0.0.2", "ports": [{"port": 80}]}}))];
    let src = ServiceEnvSource {
        services: &local,
        master_services: &master,
    };
    let on = service_env_map(&src, true);
    assert_eq!(on.get("KUBERNETES_SERVICE_HOST").map(String::as_str), Some("10.96.0.1"));
    assert_eq!(on.get("KUBERNETES_SERVICE_PORT_HTTPS").map(String::as_str), Some("443"));
    assert_eq!(on.get("WEB_SERVICE_HOST").map(String::as_str), Some("10.0.0.2"));
    let off = service_env_map(&src, false);
    assert!(off.contains_key("KUBERNETES_SERVICE_HOST"), "the master service always");
    assert!(!off.contains_key("WEB_SERVICE_HOST"));

    // A "kubernetes" service in the pod's namespace wins over the master one.
    let shadow = [service(json!({"metadata": {"name": "kubernetes", "namespace": "ns"},
        "spec": {"clusterIP": "10.0.0.9", "ports": [{"port": 443}]}}))];
    let src = ServiceEnvSource {
        services: &shadow,
        master_services: &master,
    };
    assert_eq!(
        service_env_map(&src, true)
            .get("KUBERNETES_SERVICE_HOST")
            .map(String::as_str),
        Some("10.0.0.9")
    );
}

fn pod(container: serde_json::Value, extra_spec: serde_json::Value) -> Pod {
    let mut spec = json!({"containers": [container], "nodeName": "node1", "serviceAccountName": "sa"});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "ns", "uid": "u-1",
            "labels": {"app": "web"}, "annotations": {"note": "hi"}},
        "spec": spec
    }))
    .expect("pod")
}

fn info() -> PodRuntimeInfo {
    PodRuntimeInfo {
        pod_ips: vec!["10.1.0.5".into(), "fd00::5".into()],
        host_ips: vec!["192.168.0.10".into()],
        node_name: "node1".into(),
        node_allocatable: [("cpu", "4"), ("memory", "8Gi")]
            .into_iter()
            .map(|(k, v)| (k.into(), Quantity(v.into())))
            .collect(),
    }
}

fn sources() -> FakeSources {
    let s = FakeSources::default();
    s.add_config_map(json!({"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"MODE": "prod", "LEVEL": "3"}}));
    s.add_secret(
        json!({"metadata": {"name": "creds", "namespace": "ns"}, "data": {"PASSWORD": "czNjcjN0", "USER": "YWRtaW4="}}),
    );
    s
}

async fn env_of(src: &FakeSources, p: &Pod) -> Result<Vec<(String, String)>, EnvError> {
    let master = [kubernetes_service()];
    let services = ServiceEnvSource {
        services: &[],
        master_services: &master,
    };
    let c = &p.spec.as_ref().expect("spec").containers[0];
    make_environment(src, p, c, &info(), &services).await
}

fn without_services(env: Vec<(String, String)>) -> Vec<(String, String)> {
    env.into_iter().filter(|(k, _)| !k.starts_with("KUBERNETES_")).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn environment_sources_and_order() {
    let src = sources();
    let p = pod(
        json!({"name": "c", "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
        "env": [
            {"name": "MODE", "value": "override"},
            {"name": "GREETING", "value": "$(MODE)-$(DB_USER)@$(KUBERNETES_SERVICE_HOST) $(LATER) $$(MODE)"},
            {"name": "LATER", "value": "later"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
            {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "MEM_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "MEM_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
            {"name": "LVL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "missing", "optional": true}}},
            {"name": "OPT2", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": true}}},
            {"name": "EMPTY"}
        ]}),
        json!({}),
    );
    let env = env_of(&src, &p).await.expect("env");
    let want = pairs(&[
        ("LEVEL", "3"),
        ("MODE", "override"),
        ("DB_PASSWORD", "s3cr3t"),
        ("DB_USER", "admin"),
        ("GREETING", "override-admin@10.96.0.1 $(LATER) $(MODE)"),
        ("LATER", "later"),
        ("POD", "web-0"),
        ("NS", "ns"),
        ("UID", "u-1"),
        ("APP", "web"),
        ("NOTE", "hi"),
        ("NODE", "node1"),
        ("SA", "sa"),
        ("HOST_IP", "192.168.0.10"),
        ("POD_IP", "10.1.0.5"),
        ("POD_IPS", "10.1.0.5,fd00::5"),
        ("CPU_M", "500"),
        ("MEM_LIMIT", "8192"),
        ("MEM_REQ", "67108864"),
        ("LVL", "3"),
        ("PW", "s3cr3t"),
        ("EMPTY", ""),
    ]);
    assert_eq!(without_services(env.clone()), want);
    let services: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("KUBERNETES_"))
        .collect();
    assert_eq!(
        services.first(),
        Some(&"KUBERNETES_PORT"),
        "service variables last, sorted"
    );
    assert!(services.contains(&"KUBERNETES_SERVICE_HOST"));
    assert_eq!(
        src.gets().iter().filter(|g| *g == "configmap ns/cfg").count(),
        1,
        "fetched once per call"
    );
}

#[tokio::test]
async fn environment_errors() {
    let src = sources();
    let cases = [
        (
            json!({"envFrom": [{"configMapRef": {"name": "x"}}]}),
            EnvError::ConfigMapNotFound("x".into()),
            "configmap \"x\" not found",
        ),
        (
            json!({"envFrom": [{"secretRef": {"name": "y"}}]}),
            EnvError::SecretNotFound("y".into()),
            "secret \"y\" not found",
        ),
        (
            json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}),
            EnvError::ConfigMapKeyNotFound {
                key: "k".into(),
                namespace: "ns".into(),
                name: "cfg".into(),
            },
            "couldn't find key k in ConfigMap ns/cfg",
        ),
        (
            json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]}),
            EnvError::SecretKeyNotFound {
                key: "k".into(),
                namespace: "ns".into(),
                name: "creds".into(),
            },
            "couldn't find key k in Secret ns/creds",
        ),
        (
            json!({"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}),
            EnvError::ConfigMapNotFound("nope".into()),
            "configmap \"nope\" not found",
        ),
        (
            json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
            EnvError::Other("field label not supported: spec.bogus".into()),
            "field label not supported: spec.bogus",
        ),
        (
            json!({"env": [{"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}]}),
            EnvError::Other("unsupported container resource : limits.gpu".into()),
            "unsupported container resource : limits.gpu",
        ),
    ];
    for (container, want, message) in cases {
        let mut c = container;
        c["name"] = json!("c");
        let err = env_of(&src, &pod(c, json!({}))).await.unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(err, want);
    }
}

#[tokio::test]
async fn optional_env_from_and_service_links_off() {
    let src = sources();
    let p = pod(
        json!({"name": "c", "envFrom": [{"configMapRef": {"name": "missing", "optional": true}}],
            "env": [{"name": "X", "value": "$(WEB_SERVICE_HOST)"}]}),
        json!({"enableServiceLinks": false}),
    );
    let master = [kubernetes_service()];
    let local = [service(json!({"metadata": {"name": "web", "namespace": "ns"},
        "spec": {"clusterIP": "10.0.0.2", "ports": [{"port": 80}]}}))];
    let services = ServiceEnvSource {
        services: &local,
        master_services: &master,
    };
    let c = &p.spec.as_ref().expect("spec").containers[0];
    let env = make_environment(&src, &p, c, &info(), &services).await.expect("env");
    assert_eq!(
        env[0],
        ("X".to_string(), "$(WEB_SERVICE_HOST)".to_string()),
        "service links off: no WEB_ vars"
    );
    assert!(env.iter().any(|(k, _)| k == "KUBERNETES_SERVICE_HOST"));
    assert!(!env.iter().any(|(k, _)| k.starts_with("WEB_")));
}

#[tokio::test]
async fn resource_refs_of_other_containers_and_allocatable() {
    let src = sources();
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [
            {"name": "app", "env": [
                {"name": "SIDE_MEM", "valueFrom": {"resourceFieldRef": {"containerName": "side", "resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "OWN_CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]},
            {"name": "side", "resources": {"limits": {"memory": "32Mi"}}}]}
    }))
    .expect("pod");
    let c = &p.spec.as_ref().expect("spec").containers[0];
    let services = ServiceEnvSource {
        services: &[],
        master_services: &[],
    };
    let env = make_environment(&src, &p, c, &info(), &services).await.expect("env");
    assert_eq!(env, pairs(&[("SIDE_MEM", "32"), ("OWN_CPU", "4")]));
}
