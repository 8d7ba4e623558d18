//! Kubernetes protobuf bodies, built from k8s-pb's typed messages the way a
//! Go client would send them, decoded into JSON and compared with the JSON
//! upstream writes for the same object.

use std::collections::BTreeMap;

use apimachinery::protobuf::{self, ProtobufError};
use k8s_pb::api::{apps, authentication, authorization, batch, core, policy, rbac};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{
    DeleteOptions, Duration, FieldsV1, LabelSelector, ManagedFieldsEntry, MicroTime, ObjectMeta, Time,
};
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message as _;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// `k8s\0` + `runtime.Unknown`, with every field written as Go writes it.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

/// Where the object's own bytes start in a body made by [`envelope`]: Go and
/// prost write the two empty trailing strings as two bytes each.
fn raw_start(body: &[u8], raw_len: usize) -> usize {
    body.len() - 4 - raw_len
}

/// Encodes `object`, decodes it, checks the JSON against `want` and that it
/// deserializes into the k8s-openapi type `T`.
fn round_trip<T: DeserializeOwned>(api_version: &str, kind: &str, object: &impl prost::Message, want: Value) {
    let body = envelope(api_version, kind, object.encode_to_vec());
    let got = protobuf::decode(&body).unwrap_or_else(|e| panic!("decoding {kind}: {e}"));
    assert_eq!(
        got,
        want,
        "{kind}: got {}",
        serde_json::to_string_pretty(&got).unwrap_or_default()
    );
    if let Err(e) = serde_json::from_value::<T>(got) {
        panic!("{kind} does not deserialize into the k8s-openapi type: {e}");
    }
}

fn s(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn quantity(text: &str) -> Quantity {
    Quantity { string: s(text) }
}

fn int(value: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(value),
        str_val: Some(String::new()),
    }
}

fn name(value: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(value),
    }
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: s(name),
        namespace: s(namespace),
        // Go writes every non-pointer field; an empty string means unset.
        generate_name: Some(String::new()),
        resource_version: Some(String::new()),
        creation_timestamp: Some(Time::default()),
        ..Default::default()
    }
}

#[test]
fn namespace() {
    let namespace = core::v1::Namespace {
        metadata: Some(ObjectMeta {
            labels: labels(&[("team", "a")]),
            ..meta("demo", "")
        }),
        spec: Some(core::v1::NamespaceSpec::default()),
        status: Some(core::v1::NamespaceStatus {
            phase: Some(String::new()),
            ..Default::default()
        }),
    };
    round_trip::<k8s_openapi::api::core::v1::Namespace>(
        "v1",
        "Namespace",
        &namespace,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": "demo", "labels": { "team": "a" } },
            "spec": {},
            "status": {},
        }),
    );
}

#[test]
fn config_map_with_data_and_binary_data() {
    let config_map = core::v1::ConfigMap {
        metadata: Some(meta("settings", "default")),
        immutable: Some(false),
        data: labels(&[("mode", "fast"), ("empty", "")]),
        binary_data: [("blob".to_owned(), vec![0, 1, 2, 255])].into(),
    };
    round_trip::<k8s_openapi::api::core::v1::ConfigMap>(
        "v1",
        "ConfigMap",
        &config_map,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": "settings", "namespace": "default" },
            "immutable": false,
            "data": { "mode": "fast", "empty": "" },
            "binaryData": { "blob": "AAEC/w==" },
        }),
    );
}

#[test]
fn secret() {
    let secret = core::v1::Secret {
        metadata: Some(meta("token", "default")),
        immutable: None,
        data: [("password".to_owned(), b"hunter2".to_vec())].into(),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
    };
    round_trip::<k8s_openapi::api::core::v1::Secret>(
        "v1",
        "Secret",
        &secret,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": "token", "namespace": "default" },
            "data": { "password": "aHVudGVyMg==" },
            "type": "Opaque",
        }),
    );
}

fn pod_template() -> core::v1::PodTemplateSpec {
    let container = core::v1::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        command: vec!["nginx".into()],
        args: vec!["-g".into(), "daemon off;".into()],
        working_dir: Some(String::new()),
        ports: vec![core::v1::ContainerPort {
            name: s("http"),
            container_port: Some(8080),
            protocol: s("TCP"),
            ..Default::default()
        }],
        env: vec![
            core::v1::EnvVar {
                name: s("MODE"),
                value: s("fast"),
                value_from: None,
            },
            core::v1::EnvVar {
                name: s("LEVEL"),
                value: Some(String::new()),
                value_from: Some(core::v1::EnvVarSource {
                    config_map_key_ref: Some(core::v1::ConfigMapKeySelector {
                        local_object_reference: Some(core::v1::LocalObjectReference { name: s("settings") }),
                        key: s("level"),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::v1::ResourceRequirements {
            limits: [("memory".to_owned(), quantity("128Mi"))].into(),
            requests: [
                ("cpu".to_owned(), quantity("250m")),
                ("memory".to_owned(), quantity("64Mi")),
            ]
            .into(),
            claims: Vec::new(),
        }),
        volume_mounts: vec![core::v1::VolumeMount {
            name: s("config"),
            mount_path: s("/etc/web"),
            read_only: Some(true),
            ..Default::default()
        }],
        liveness_probe: Some(core::v1::Probe {
            handler: Some(core::v1::ProbeHandler {
                http_get: Some(core::v1::HttpGetAction {
                    path: s("/healthz"),
                    port: Some(int(8080)),
                    host: Some(String::new()),
                    scheme: s("HTTP"),
                    http_headers: Vec::new(),
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(core::v1::Probe {
            handler: Some(core::v1::ProbeHandler {
                tcp_socket: Some(core::v1::TcpSocketAction {
                    port: Some(name("http")),
                    host: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        image_pull_policy: s("IfNotPresent"),
        stdin: Some(false),
        ..Default::default()
    };
    let volume = core::v1::Volume {
        name: s("config"),
        volume_source: Some(core::v1::VolumeSource {
            config_map: Some(core::v1::ConfigMapVolumeSource {
                local_object_reference: Some(core::v1::LocalObjectReference { name: s("settings") }),
                items: vec![core::v1::KeyToPath {
                    key: s("mode"),
                    path: s("mode.txt"),
                    mode: None,
                }],
                default_mode: Some(0o644),
                optional: None,
            }),
            ..Default::default()
        }),
    };
    core::v1::PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: labels(&[("app", "web")]),
            ..Default::default()
        }),
        spec: Some(core::v1::PodSpec {
            containers: vec![container],
            volumes: vec![volume],
            restart_policy: s("Always"),
            termination_grace_period_seconds: Some(30),
            node_selector: labels(&[("kubernetes.io/os", "linux")]),
            ..Default::default()
        }),
    }
}

fn pod_template_json() -> Value {
    json!({
        "metadata": { "labels": { "app": "web" } },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "nginx:1.27",
                "command": ["nginx"],
                "args": ["-g", "daemon off;"],
                "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                "env": [
                    { "name": "MODE", "value": "fast" },
                    {
                        "name": "LEVEL",
                        "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "level", "optional": true } },
                    },
                ],
                "resources": {
                    "limits": { "memory": "128Mi" },
                    "requests": { "cpu": "250m", "memory": "64Mi" },
                },
                "volumeMounts": [{ "name": "config", "mountPath": "/etc/web", "readOnly": true }],
                "livenessProbe": {
                    "httpGet": { "path": "/healthz", "port": 8080, "scheme": "HTTP" },
                    "initialDelaySeconds": 5,
                    "periodSeconds": 10,
                },
                "readinessProbe": { "tcpSocket": { "port": "http" } },
                "imagePullPolicy": "IfNotPresent",
            }],
            "volumes": [{
                "name": "config",
                "configMap": {
                    "name": "settings",
                    "items": [{ "key": "mode", "path": "mode.txt" }],
                    "defaultMode": 420,
                },
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "nodeSelector": { "kubernetes.io/os": "linux" },
        },
    })
}

#[test]
fn deployment_with_a_full_pod_template() {
    let deployment = apps::v1::Deployment {
        metadata: Some(meta("web", "default")),
        spec: Some(apps::v1::DeploymentSpec {
            replicas: Some(0),
            selector: Some(LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: Vec::new(),
            }),
            template: Some(pod_template()),
            strategy: Some(apps::v1::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::v1::RollingUpdateDeployment {
                    max_unavailable: Some(int(0)),
                    max_surge: Some(name("25%")),
                }),
            }),
            revision_history_limit: Some(10),
            ..Default::default()
        }),
        status: Some(apps::v1::DeploymentStatus::default()),
    };
    round_trip::<k8s_openapi::api::apps::v1::Deployment>(
        "apps/v1",
        "Deployment",
        &deployment,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "default" },
            "spec": {
                "replicas": 0,
                "selector": { "matchLabels": { "app": "web" } },
                "template": pod_template_json(),
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": "25%" } },
                "revisionHistoryLimit": 10,
            },
            "status": {},
        }),
    );
}

#[test]
fn service_with_numeric_and_named_target_ports() {
    let service = core::v1::Service {
        metadata: Some(meta("web", "default")),
        spec: Some(core::v1::ServiceSpec {
            ports: vec![
                core::v1::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: Some(int(8080)),
                    node_port: Some(0),
                    ..Default::default()
                },
                core::v1::ServicePort {
                    name: s("metrics"),
                    protocol: s("TCP"),
                    port: Some(9090),
                    target_port: Some(name("metrics")),
                    ..Default::default()
                },
            ],
            selector: labels(&[("app", "web")]),
            cluster_ip: Some(String::new()),
            r#type: s("ClusterIP"),
            ip_families: vec!["IPv4".into()],
            ..Default::default()
        }),
        status: None,
    };
    round_trip::<k8s_openapi::api::core::v1::Service>(
        "v1",
        "Service",
        &service,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": "web", "namespace": "default" },
            "spec": {
                "ports": [
                    { "name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080 },
                    { "name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics" },
                ],
                "selector": { "app": "web" },
                "type": "ClusterIP",
                "ipFamilies": ["IPv4"],
            },
        }),
    );
}

#[test]
fn job() {
    let mut template = pod_template();
    if let Some(spec) = template.spec.as_mut() {
        spec.restart_policy = s("Never");
    }
    let job = batch::v1::Job {
        metadata: Some(meta("migrate", "default")),
        spec: Some(batch::v1::JobSpec {
            parallelism: Some(1),
            completions: Some(1),
            backoff_limit: Some(6),
            ttl_seconds_after_finished: Some(100),
            template: Some(template),
            ..Default::default()
        }),
        status: None,
    };
    let mut template_json = pod_template_json();
    template_json["spec"]["restartPolicy"] = json!("Never");
    round_trip::<k8s_openapi::api::batch::v1::Job>(
        "batch/v1",
        "Job",
        &job,
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": "migrate", "namespace": "default" },
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "backoffLimit": 6,
                "ttlSecondsAfterFinished": 100,
                "template": template_json,
            },
        }),
    );
}

#[test]
fn role() {
    let role = rbac::v1::Role {
        metadata: Some(meta("reader", "default")),
        rules: vec![rbac::v1::PolicyRule {
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            api_groups: vec![String::new(), "apps".into()],
            resources: vec!["pods".into(), "deployments".into()],
            resource_names: Vec::new(),
            non_resource_ur_ls: Vec::new(),
        }],
    };
    round_trip::<k8s_openapi::api::rbac::v1::Role>(
        "rbac.authorization.k8s.io/v1",
        "Role",
        &role,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": { "name": "reader", "namespace": "default" },
            // Repeated elements keep their empty strings: "" is the core group.
            "rules": [{
                "verbs": ["get", "list", "watch"],
                "apiGroups": ["", "apps"],
                "resources": ["pods", "deployments"],
            }],
        }),
    );
}

#[test]
fn subject_access_review_with_extra_values() {
    // `extra` maps to ExtraValue, a Go []string wrapped in a message.
    let review = authorization::v1::SubjectAccessReview {
        metadata: Some(ObjectMeta::default()),
        spec: Some(authorization::v1::SubjectAccessReviewSpec {
            non_resource_attributes: Some(authorization::v1::NonResourceAttributes {
                path: s("/healthz"),
                verb: s("get"),
            }),
            user: s("jane"),
            groups: vec!["devs".into()],
            extra: [
                (
                    "scopes".to_owned(),
                    authorization::v1::ExtraValue {
                        items: vec!["a".into(), "b".into()],
                    },
                ),
                ("none".to_owned(), authorization::v1::ExtraValue { items: Vec::new() }),
            ]
            .into(),
            ..Default::default()
        }),
        status: None,
    };
    round_trip::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        &review,
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "metadata": {},
            "spec": {
                "nonResourceAttributes": { "path": "/healthz", "verb": "get" },
                "user": "jane",
                "groups": ["devs"],
                "extra": { "scopes": ["a", "b"], "none": [] },
            },
        }),
    );
}

#[test]
fn eviction() {
    let eviction = policy::v1::Eviction {
        metadata: Some(meta("web-1", "default")),
        delete_options: Some(DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: None,
            orphan_dependents: None,
            propagation_policy: s("Background"),
            dry_run: vec!["All".into()],
            ignore_store_read_error_with_cluster_breaking_potential: None,
        }),
    };
    round_trip::<k8s_openapi::api::policy::v1::Eviction>(
        "policy/v1",
        "Eviction",
        &eviction,
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": { "name": "web-1", "namespace": "default" },
            "deleteOptions": { "gracePeriodSeconds": 0, "propagationPolicy": "Background", "dryRun": ["All"] },
        }),
    );
}

#[test]
fn token_request() {
    let request = authentication::v1::TokenRequest {
        metadata: Some(meta("default", "default")),
        spec: Some(authentication::v1::TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc".into()],
            expiration_seconds: Some(3600),
            bound_object_ref: Some(authentication::v1::BoundObjectReference {
                kind: s("Pod"),
                api_version: s("v1"),
                name: s("web-1"),
                u_id: s("0b6a3c5e-1111-2222-3333-444455556666"),
            }),
        }),
        // kubectl also sends an empty status, whose zero expirationTimestamp
        // is dropped; k8s-openapi's TokenRequestStatus requires it, so the
        // typed check below is made without one.
        status: None,
    };
    round_trip::<k8s_openapi::api::authentication::v1::TokenRequest>(
        "authentication.k8s.io/v1",
        "TokenRequest",
        &request,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": { "name": "default", "namespace": "default" },
            "spec": {
                "audiences": ["https://kubernetes.default.svc"],
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": "web-1",
                    "uid": "0b6a3c5e-1111-2222-3333-444455556666",
                },
            },
        }),
    );

    let with_status = authentication::v1::TokenRequest {
        status: Some(authentication::v1::TokenRequestStatus {
            token: Some(String::new()),
            expiration_timestamp: Some(Time::default()),
        }),
        ..request
    };
    let body = envelope("authentication.k8s.io/v1", "TokenRequest", with_status.encode_to_vec());
    assert_eq!(protobuf::decode(&body).expect("decodes")["status"], json!({}));
}

#[test]
fn event_with_times() {
    let event = core::v1::Event {
        metadata: Some(ObjectMeta {
            creation_timestamp: Some(Time {
                seconds: Some(1_704_164_645),
                nanos: Some(0),
            }),
            ..meta("web.17a", "default")
        }),
        involved_object: Some(core::v1::ObjectReference {
            kind: s("Pod"),
            name: s("web-1"),
            namespace: s("default"),
            ..Default::default()
        }),
        reason: s("Started"),
        first_timestamp: Some(Time {
            seconds: Some(1_704_164_645),
            nanos: Some(999_999_999),
        }),
        // Go's zero time.Time, as some encoders write an unset time.
        last_timestamp: Some(Time {
            seconds: Some(-62_135_596_800),
            nanos: Some(0),
        }),
        count: Some(1),
        event_time: Some(MicroTime {
            seconds: Some(1_704_164_645),
            nanos: Some(123_456),
        }),
        r#type: s("Normal"),
        ..Default::default()
    };
    round_trip::<k8s_openapi::api::core::v1::Event>(
        "v1",
        "Event",
        &event,
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": "web.17a",
                "namespace": "default",
                "creationTimestamp": "2024-01-02T03:04:05Z",
            },
            "involvedObject": { "kind": "Pod", "name": "web-1", "namespace": "default" },
            "reason": "Started",
            "firstTimestamp": "2024-01-02T03:04:05Z",
            "count": 1,
            "eventTime": "2024-01-02T03:04:05.000123Z",
            "type": "Normal",
        }),
    );
}

#[test]
fn controller_revision_with_embedded_json_and_managed_fields() {
    let revision = apps::v1::ControllerRevision {
        metadata: Some(ObjectMeta {
            managed_fields: vec![ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                api_version: s("apps/v1"),
                time: Some(Time {
                    seconds: Some(1_704_164_645),
                    nanos: Some(0),
                }),
                fields_type: s("FieldsV1"),
                fields_v1: Some(FieldsV1 {
                    raw: Some(br#"{"f:revision":{}}"#.to_vec()),
                }),
                subresource: Some(String::new()),
            }],
            ..meta("web-1", "default")
        }),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"replicas":2}}"#.to_vec()),
        }),
        revision: Some(3),
    };
    round_trip::<k8s_openapi::api::apps::v1::ControllerRevision>(
        "apps/v1",
        "ControllerRevision",
        &revision,
        json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": "web-1",
                "namespace": "default",
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "time": "2024-01-02T03:04:05Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": { "f:revision": {} },
                }],
            },
            "data": { "spec": { "replicas": 2 } },
            "revision": 3,
        }),
    );

    let broken = apps::v1::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(b"{not json".to_vec()),
        }),
        ..Default::default()
    };
    let err =
        protobuf::decode(&envelope("apps/v1", "ControllerRevision", broken.encode_to_vec())).expect_err("bad JSON");
    assert!(matches!(err, ProtobufError::InvalidValue { .. }), "{err}");
}

#[test]
fn delete_options_under_any_group_version() {
    let options = DeleteOptions {
        propagation_policy: s("Foreground"),
        ..Default::default()
    };
    for api_version in ["v1", "meta.k8s.io/v1", "apps/v1"] {
        let body = envelope(api_version, "DeleteOptions", options.encode_to_vec());
        let got = protobuf::decode(&body).expect("decodes");
        assert_eq!(
            got,
            json!({ "apiVersion": api_version, "kind": "DeleteOptions", "propagationPolicy": "Foreground" })
        );
    }
}

#[test]
fn decode_message_by_schema_name() {
    let port = int(443).encode_to_vec();
    assert_eq!(
        protobuf::decode_message("io.k8s.apimachinery.pkg.util.intstr.IntOrString", &port),
        Ok(json!(443))
    );
    let duration = Duration {
        duration: Some(5_400_000_000_000),
    }
    .encode_to_vec();
    assert_eq!(
        protobuf::decode_message("io.k8s.apimachinery.pkg.apis.meta.v1.Duration", &duration),
        Ok(json!("1h30m0s"))
    );
    let micro = MicroTime {
        seconds: Some(0),
        nanos: Some(1_000),
    }
    .encode_to_vec();
    assert_eq!(
        protobuf::decode_message("io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime", &micro),
        Ok(json!("1970-01-01T00:00:00.000001Z"))
    );
    let zero = Time::default().encode_to_vec();
    assert_eq!(
        protobuf::decode_message("io.k8s.apimachinery.pkg.apis.meta.v1.Time", &zero),
        Ok(Value::Null)
    );
    assert_eq!(
        protobuf::decode_message("io.k8s.api.core.v1.NoSuchThing", &[]),
        Err(ProtobufError::UnknownMessage("io.k8s.api.core.v1.NoSuchThing".into()))
    );
}

#[test]
fn bad_magic_is_refused() {
    let mut body = envelope("v1", "Namespace", Vec::new());
    body[3] = b'!';
    assert_eq!(protobuf::decode(&body), Err(ProtobufError::BadMagic));
    assert_eq!(
        protobuf::decode(b"{\"kind\":\"Namespace\"}"),
        Err(ProtobufError::BadMagic)
    );
    assert_eq!(protobuf::decode(b"k8s"), Err(ProtobufError::BadMagic));
}

#[test]
fn truncated_bodies_are_errors_not_panics() {
    let namespace = core::v1::Namespace {
        metadata: Some(meta("demo", "")),
        ..Default::default()
    };
    let raw = namespace.encode_to_vec();
    let body = envelope("v1", "Namespace", raw.clone());
    // Cutting the envelope between two of its fields leaves a valid, shorter
    // message; cutting anywhere inside a field must be an error.
    let type_meta_end = 4 + Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        }),
        ..Default::default()
    }
    .encoded_len();
    let raw_end = raw_start(&body, raw.len()) + raw.len();
    let boundaries = [type_meta_end, raw_end, raw_end + 2];
    for len in 4..body.len() {
        let result = protobuf::decode(&body[..len]);
        if !boundaries.contains(&len) {
            assert!(
                result.is_err(),
                "a body cut to {len} of {} bytes decoded as {result:?}",
                body.len()
            );
        }
    }

    // A varint cut short inside the object: ObjectMeta's generation (field 7).
    let raw = [0x0a, 0x02, 0x38, 0x80];
    let err = protobuf::decode(&envelope("v1", "Namespace", raw.to_vec())).expect_err("truncated");
    assert!(matches!(&err, ProtobufError::TruncatedVarint { message, .. } if message.ends_with("meta.v1.ObjectMeta")));
    assert!(err.to_string().starts_with("truncated varint at byte "), "{err}");

    // A length running past the end.
    let err = protobuf::decode(&envelope("v1", "Namespace", vec![0x0a, 0x05, 0x0a])).expect_err("bad length");
    assert!(matches!(err, ProtobufError::BadLength { length: 5, .. }), "{err}");
}

#[test]
fn unknown_kinds_are_refused() {
    let body = envelope("example.com/v1", "Widget", Vec::new());
    assert_eq!(
        protobuf::decode(&body),
        Err(ProtobufError::UnknownKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    // A served kind under a version we do not serve.
    let body = envelope("apps/v1beta1", "Deployment", Vec::new());
    assert!(matches!(
        protobuf::decode(&body),
        Err(ProtobufError::UnknownKind { .. })
    ));
    let body = envelope("v1", "", Vec::new());
    assert_eq!(protobuf::decode(&body), Err(ProtobufError::MissingKind));
}

#[test]
fn unknown_fields_are_skipped() {
    let mut raw = core::v1::ConfigMap {
        data: labels(&[("a", "b")]),
        ..Default::default()
    }
    .encode_to_vec();
    raw.extend([0xc8, 0x3e, 0x96, 0x01]); // field 1001, varint 150
    raw.extend([0xd1, 0x3e, 1, 2, 3, 4, 5, 6, 7, 8]); // field 1002, fixed64
    raw.extend([0xda, 0x3e, 0x03, b'x', b'y', b'z']); // field 1003, length-delimited
    raw.extend([0xe5, 0x3e, 1, 2, 3, 4]); // field 1004, fixed32
    raw.extend([0xeb, 0x3e, 0x08, 0x01, 0xec, 0x3e]); // field 1005, a group holding field 1
    raw.extend(
        core::v1::ConfigMap {
            immutable: Some(true),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let got = protobuf::decode(&envelope("v1", "ConfigMap", raw)).expect("decodes");
    assert_eq!(
        got,
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "data": { "a": "b" }, "immutable": true })
    );
}

#[test]
fn a_known_field_with_the_wrong_wire_type_is_an_error() {
    // ConfigMap.immutable (field 4) sent length-delimited.
    let body = envelope("v1", "ConfigMap", vec![0x22, 0x00]);
    let err = protobuf::decode(&body).expect_err("wrong wire type");
    let at = raw_start(&body, 2);
    assert_eq!(
        err.to_string(),
        format!("field 4 (immutable) at byte {at} in io.k8s.api.core.v1.ConfigMap has wire type 2, expected 0")
    );
}

#[test]
fn empty_strings_and_plain_zeros_are_dropped_but_pointer_zeros_are_kept() {
    let pod = core::v1::Pod {
        metadata: Some(ObjectMeta {
            name: s("p"),
            namespace: Some(String::new()),
            uid: Some(String::new()),
            generation: Some(0),
            ..Default::default()
        }),
        spec: Some(core::v1::PodSpec {
            containers: vec![core::v1::Container {
                name: s("c"),
                image: Some(String::new()),
                args: vec![String::new()],
                tty: Some(false),
                ports: vec![core::v1::ContainerPort {
                    container_port: Some(80),
                    host_port: Some(0),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            node_name: Some(String::new()),
            host_network: Some(false),
            termination_grace_period_seconds: Some(0),
            automount_service_account_token: Some(false),
            security_context: Some(core::v1::PodSecurityContext {
                run_as_user: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    round_trip::<k8s_openapi::api::core::v1::Pod>(
        "v1",
        "Pod",
        &pod,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": "p" },
            "spec": {
                "containers": [{ "name": "c", "args": [""], "ports": [{ "containerPort": 80 }] }],
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
                "securityContext": { "runAsUser": 0 },
            },
        }),
    );
}

#[test]
fn zero_times_are_dropped() {
    for zero in [
        Time::default(),
        Time {
            seconds: Some(0),
            nanos: Some(0),
        },
        Time {
            seconds: Some(-62_135_596_800),
            nanos: Some(0),
        },
    ] {
        let namespace = core::v1::Namespace {
            metadata: Some(ObjectMeta {
                name: s("demo"),
                creation_timestamp: Some(zero),
                deletion_timestamp: Some(zero),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = protobuf::decode(&envelope("v1", "Namespace", namespace.encode_to_vec())).expect("decodes");
        assert_eq!(
            got,
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "demo" } })
        );
    }
}

#[test]
fn errors_read_well() {
    let body = envelope("v1", "Pod", vec![0x12, 0x02, 0x08]);
    let err = protobuf::decode(&body).expect_err("bad length");
    let at = raw_start(&body, 3);
    assert_eq!(
        err.to_string(),
        format!("length 2 at byte {at} in io.k8s.api.core.v1.Pod runs past the end of the data")
    );
    assert_eq!(protobuf::MEDIA_TYPE, "application/vnd.kubernetes.protobuf");
}
