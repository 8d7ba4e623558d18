//! Server-side table printing: the rows kube-apiserver returns for
//! `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`, so that an
//! unmodified `kubectl get` prints what it prints against a real cluster.
//!
//! Objects are taken in their JSON wire form. Column definitions and cell
//! logic follow upstream's built-in printers (Kubernetes 1.33): the server
//! always generates the wide set of cells, and kubectl hides the columns with
//! `priority > 0` unless `-o wide` is given. Kinds without a dedicated printer
//! get upstream's default table (`Name`, `Created At`). Custom resources are
//! printed from their CRD version's `additionalPrinterColumns`
//! ([`custom_columns`], [`custom_cells`]).
//!
//! Fields a real apiserver always defaults (replica counts, service type,
//! port protocol, reclaim policy, ...) are read with the same defaults, so an
//! object that skipped defaulting prints like its defaulted form.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Durations (k8s.io/apimachinery/pkg/util/duration)
// ---------------------------------------------------------------------------

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const NANOS_PER_MINUTE: i128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i128 = 60 * NANOS_PER_MINUTE;

/// Upstream's `duration.HumanDuration`: a succinct duration with about two
/// significant figures, e.g. `45s`, `5m30s`, `42m`, `3h5m`, `2d3h`, `3y45d`.
pub fn human_duration(d: Duration) -> String {
    human_duration_nanos(i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Upstream's `duration.ShortHumanDuration`: one unit only, e.g. `45s`, `5m`,
/// `3h`, `12d`, `2y`.
pub fn short_human_duration(d: Duration) -> String {
    short_human_duration_nanos(i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// `HumanDuration` over a signed nanosecond count, as Go's `time.Duration` is
/// signed: up to a second and a bit in the future reads `0s` (clock skew),
/// further is `<invalid>`.
fn human_duration_nanos(d: i128) -> String {
    let seconds = d / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / NANOS_PER_MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / NANOS_PER_HOUR;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        format!("{hours}h{m}m")
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        format!("{}d{}h", hours / 24, h)
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        format!("{}y{}d", hours / 24 / 365, dy)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

fn short_human_duration_nanos(d: i128) -> String {
    let seconds = d / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 {
        return format!("{seconds}s");
    }
    let minutes = d / NANOS_PER_MINUTE;
    if minutes < 60 {
        return format!("{minutes}m");
    }
    let hours = d / NANOS_PER_HOUR;
    if hours < 24 {
        format!("{hours}h")
    } else if hours < 24 * 365 {
        format!("{}d", hours / 24)
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds.
const GO_ZERO_TIME_UNIX_SECONDS: i64 = -62_135_596_800;

/// Parses an RFC 3339 timestamp; the empty string, `null` and Go's zero time
/// count as absent, as `metav1.Time.IsZero` does.
fn parse_time(s: &str) -> Option<Timestamp> {
    if s.is_empty() || s == "null" {
        return None;
    }
    let t: Timestamp = s.parse().ok()?;
    if t.as_second() == GO_ZERO_TIME_UNIX_SECONDS && t.subsec_nanosecond() == 0 {
        return None;
    }
    Some(t)
}

fn nanos_between(from: Timestamp, to: Timestamp) -> i128 {
    to.as_nanosecond() - from.as_nanosecond()
}

fn since(t: Timestamp, now: Timestamp) -> String {
    human_duration_nanos(nanos_between(t, now))
}

/// Upstream's `translateTimestampSince`: the age of an RFC 3339 timestamp at
/// `now` as [`human_duration`] prints it, or `<unknown>` when the timestamp is
/// absent (or unparsable).
pub fn translate_timestamp_since(ts: Option<&str>, now: Timestamp) -> String {
    match ts.and_then(parse_time) {
        Some(t) => since(t, now),
        None => "<unknown>".to_string(),
    }
}

fn age(obj: &Value, now: Timestamp) -> String {
    time_since_at(obj, &["metadata", "creationTimestamp"], now)
}

fn time_since_at(obj: &Value, path: &[&str], now: Timestamp) -> String {
    translate_timestamp_since(obj.at(path).and_then(Value::as_str), now)
}

fn time_at(obj: &Value, path: &[&str]) -> Option<Timestamp> {
    obj.at(path).and_then(Value::as_str).and_then(parse_time)
}

// ---------------------------------------------------------------------------
// JSON access
// ---------------------------------------------------------------------------

/// Lenient typed reads of a wire-form object: a missing field (or `null`)
/// reads as the Go zero value, as it does after decoding into a typed struct.
trait Field {
    fn at(&self, path: &[&str]) -> Option<&Value>;
    fn str_at(&self, path: &[&str]) -> &str;
    fn opt_str_at(&self, path: &[&str]) -> Option<&str>;
    fn int_at(&self, path: &[&str]) -> i64;
    fn opt_int_at(&self, path: &[&str]) -> Option<i64>;
    fn bool_at(&self, path: &[&str]) -> bool;
    fn opt_bool_at(&self, path: &[&str]) -> Option<bool>;
    fn arr_at(&self, path: &[&str]) -> &[Value];
    fn len_at(&self, path: &[&str]) -> usize;
    fn has(&self, path: &[&str]) -> bool;
}

impl Field for Value {
    fn at(&self, path: &[&str]) -> Option<&Value> {
        let mut cur = self;
        for key in path {
            cur = cur.get(key)?;
        }
        if cur.is_null() { None } else { Some(cur) }
    }

    fn str_at(&self, path: &[&str]) -> &str {
        self.opt_str_at(path).unwrap_or("")
    }

    fn opt_str_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path).and_then(Value::as_str)
    }

    fn int_at(&self, path: &[&str]) -> i64 {
        self.opt_int_at(path).unwrap_or(0)
    }

    fn opt_int_at(&self, path: &[&str]) -> Option<i64> {
        self.at(path).and_then(json_int)
    }

    fn bool_at(&self, path: &[&str]) -> bool {
        self.opt_bool_at(path).unwrap_or(false)
    }

    fn opt_bool_at(&self, path: &[&str]) -> Option<bool> {
        self.at(path).and_then(Value::as_bool)
    }

    fn arr_at(&self, path: &[&str]) -> &[Value] {
        self.at(path)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn len_at(&self, path: &[&str]) -> usize {
        match self.at(path) {
            Some(Value::Object(m)) => m.len(),
            Some(Value::Array(a)) => a.len(),
            _ => 0,
        }
    }

    fn has(&self, path: &[&str]) -> bool {
        self.at(path).is_some()
    }
}

fn json_int(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    if let Some(u) = v.as_u64() {
        return Some(i64::try_from(u).unwrap_or(i64::MAX));
    }
    v.as_f64().map(|f| f as i64)
}

/// A quantity (or int-or-string) as its wire string; numbers print as JSON
/// numbers do.
fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// `resource.Quantity.String()` of a non-pointer quantity: absent is `0`.
fn quantity_at(obj: &Value, path: &[&str]) -> String {
    obj.at(path).map(scalar_string).unwrap_or_else(|| "0".to_string())
}

/// `(*resource.Quantity).String()`: absent is `<nil>`.
fn quantity_ptr_at(obj: &Value, path: &[&str]) -> String {
    obj.at(path).map(scalar_string).unwrap_or_else(|| "<nil>".to_string())
}

// ---------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------

/// One `metav1.TableColumnDefinition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ColumnDefinition {
    pub name: &'static str,
    /// An OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// `name` for the column holding the object's name, empty otherwise.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for the default view, 1 for columns kubectl shows only with `-o wide`.
    pub priority: i32,
}

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> ColumnDefinition {
    ColumnDefinition {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> ColumnDefinition {
    ColumnDefinition {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some \
resources may allow a client to request the generation of an appropriate name automatically. Name is primarily \
intended for creation idempotence and configuration definition. Cannot be updated. More info: \
https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. \
It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. \
It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: \
https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const NAME: ColumnDefinition = ColumnDefinition {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: ColumnDefinition = col("Age", "string", AGE_DESC);
const CONTAINERS: ColumnDefinition = wide("Containers", "string", "Names of each container in the template.");
const IMAGES: ColumnDefinition = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);
const SELECTOR_DESC: &str = "A label query over pods that should match the replica count.";

/// A kind with a dedicated upstream printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printer {
    Pod,
    PodTemplate,
    ReplicationController,
    Service,
    Endpoints,
    Node,
    Event,
    EventsV1Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    ConfigMap,
    ResourceQuota,
    ComponentStatus,
    Deployment,
    ReplicaSet,
    DaemonSet,
    StatefulSet,
    ControllerRevision,
    Job,
    CronJob,
    HorizontalPodAutoscaler,
    Lease,
    EndpointSlice,
    Ingress,
    IngressClass,
    NetworkPolicy,
    ServiceCidr,
    PodDisruptionBudget,
    PriorityClass,
    RuntimeClass,
    ApiService,
    StorageClass,
    VolumeAttachment,
    CsiNode,
    CsiDriver,
    CsiStorageCapacity,
    RoleBinding,
    ClusterRoleBinding,
    CertificateSigningRequest,
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
    FlowSchema,
    PriorityLevelConfiguration,
    DeviceClass,
    ResourceClaim,
    ResourceClaimTemplate,
    ResourceSlice,
}

fn printer_for(group: &str, kind: &str) -> Option<Printer> {
    use Printer as P;
    Some(match (group, kind) {
        ("", "Pod") => P::Pod,
        ("", "PodTemplate") => P::PodTemplate,
        ("", "ReplicationController") => P::ReplicationController,
        ("", "Service") => P::Service,
        ("", "Endpoints") => P::Endpoints,
        ("", "Node") => P::Node,
        ("", "Event") => P::Event,
        ("events.k8s.io", "Event") => P::EventsV1Event,
        ("", "Namespace") => P::Namespace,
        ("", "Secret") => P::Secret,
        ("", "ServiceAccount") => P::ServiceAccount,
        ("", "PersistentVolume") => P::PersistentVolume,
        ("", "PersistentVolumeClaim") => P::PersistentVolumeClaim,
        ("", "ConfigMap") => P::ConfigMap,
        ("", "ResourceQuota") => P::ResourceQuota,
        ("", "ComponentStatus") => P::ComponentStatus,
        ("apps", "Deployment") => P::Deployment,
        ("apps", "ReplicaSet") => P::ReplicaSet,
        ("apps", "DaemonSet") => P::DaemonSet,
        ("apps", "StatefulSet") => P::StatefulSet,
        ("apps", "ControllerRevision") => P::ControllerRevision,
        ("batch", "Job") => P::Job,
        ("batch", "CronJob") => P::CronJob,
        ("autoscaling", "HorizontalPodAutoscaler") => P::HorizontalPodAutoscaler,
        ("coordination.k8s.io", "Lease") => P::Lease,
        ("discovery.k8s.io", "EndpointSlice") => P::EndpointSlice,
        ("networking.k8s.io", "Ingress") => P::Ingress,
        ("networking.k8s.io", "IngressClass") => P::IngressClass,
        ("networking.k8s.io", "NetworkPolicy") => P::NetworkPolicy,
        ("networking.k8s.io", "ServiceCIDR") => P::ServiceCidr,
        ("policy", "PodDisruptionBudget") => P::PodDisruptionBudget,
        ("scheduling.k8s.io", "PriorityClass") => P::PriorityClass,
        ("apiregistration.k8s.io", "APIService") => P::ApiService,
        ("node.k8s.io", "RuntimeClass") => P::RuntimeClass,
        ("storage.k8s.io", "StorageClass") => P::StorageClass,
        ("storage.k8s.io", "VolumeAttachment") => P::VolumeAttachment,
        ("storage.k8s.io", "CSINode") => P::CsiNode,
        ("storage.k8s.io", "CSIDriver") => P::CsiDriver,
        ("storage.k8s.io", "CSIStorageCapacity") => P::CsiStorageCapacity,
        ("rbac.authorization.k8s.io", "RoleBinding") => P::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => P::ClusterRoleBinding,
        ("certificates.k8s.io", "CertificateSigningRequest") => P::CertificateSigningRequest,
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => P::MutatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => P::ValidatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => P::ValidatingAdmissionPolicy,
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => P::ValidatingAdmissionPolicyBinding,
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => P::FlowSchema,
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => P::PriorityLevelConfiguration,
        ("resource.k8s.io", "DeviceClass") => P::DeviceClass,
        ("resource.k8s.io", "ResourceClaim") => P::ResourceClaim,
        ("resource.k8s.io", "ResourceClaimTemplate") => P::ResourceClaimTemplate,
        ("resource.k8s.io", "ResourceSlice") => P::ResourceSlice,
        _ => return None,
    })
}

/// Whether `group`/`kind` has a dedicated upstream printer. Kinds without one
/// (Role, ClusterRole, LimitRange, CustomResourceDefinition, anything unknown)
/// print upstream's default table: `Name` and `Created At`.
pub fn has_printer(group: &str, kind: &str) -> bool {
    printer_for(group, kind).is_some()
}

/// The default table's columns: what upstream's `DefaultTableConvertor`
/// returns for kinds without a printer.
pub fn default_columns() -> Vec<ColumnDefinition> {
    vec![NAME, col("Created At", "date", AGE_DESC)]
}

/// The default table's cells: the name and the creation timestamp in RFC 3339
/// (UTC, whole seconds); a missing timestamp prints as Go's zero time.
pub fn default_cells(obj: &Value) -> Vec<Value> {
    let created = time_at(obj, &["metadata", "creationTimestamp"])
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![json!(obj.str_at(&["metadata", "name"])), json!(created)]
}

/// The table columns for a built-in kind, wide (priority 1) columns included,
/// in upstream's order; the default table's columns for any other kind.
pub fn columns(group: &str, kind: &str) -> Vec<ColumnDefinition> {
    match printer_for(group, kind) {
        Some(p) => printer_columns(p),
        None => default_columns(),
    }
}

/// The row cells of `obj` for a built-in kind, one per entry of
/// [`columns`], as upstream computes them at `now`.
pub fn cells(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    let Some(p) = printer_for(group, kind) else {
        return default_cells(obj);
    };
    use Printer as P;
    match p {
        P::Pod => pod_cells(obj, now),
        P::PodTemplate => pod_template_cells(obj),
        P::ReplicationController => replication_controller_cells(obj, now),
        P::Service => service_cells(obj, now),
        P::Endpoints => endpoints_cells(obj, now),
        P::Node => node_cells(obj, now),
        P::Event => event_cells(obj, &CORE_EVENT_FIELDS, now),
        P::EventsV1Event => event_cells(obj, &EVENTS_V1_FIELDS, now),
        P::Namespace => namespace_cells(obj, now),
        P::Secret => secret_cells(obj, now),
        P::ServiceAccount => service_account_cells(obj, now),
        P::PersistentVolume => persistent_volume_cells(obj, now),
        P::PersistentVolumeClaim => persistent_volume_claim_cells(obj, now),
        P::ConfigMap => config_map_cells(obj, now),
        P::ResourceQuota => resource_quota_cells(obj, now),
        P::ComponentStatus => component_status_cells(obj),
        P::Deployment => deployment_cells(obj, now),
        P::ReplicaSet => replica_set_cells(obj, now),
        P::DaemonSet => daemon_set_cells(obj, now),
        P::StatefulSet => stateful_set_cells(obj, now),
        P::ControllerRevision => controller_revision_cells(obj, now),
        P::Job => job_cells(obj, now),
        P::CronJob => cron_job_cells(obj, now),
        P::HorizontalPodAutoscaler => hpa_cells(obj, now),
        P::Lease => lease_cells(obj, now),
        P::EndpointSlice => endpoint_slice_cells(obj, now),
        P::Ingress => ingress_cells(obj, now),
        P::IngressClass => ingress_class_cells(obj, now),
        P::NetworkPolicy => network_policy_cells(obj, now),
        P::ServiceCidr => service_cidr_cells(obj, now),
        P::PodDisruptionBudget => pdb_cells(obj, now),
        P::PriorityClass => priority_class_cells(obj, now),
        P::ApiService => api_service_cells(obj, now),
        P::RuntimeClass => runtime_class_cells(obj, now),
        P::StorageClass => storage_class_cells(obj, now),
        P::VolumeAttachment => volume_attachment_cells(obj, now),
        P::CsiNode => csi_node_cells(obj, now),
        P::CsiDriver => csi_driver_cells(obj, now),
        P::CsiStorageCapacity => csi_storage_capacity_cells(obj),
        P::RoleBinding | P::ClusterRoleBinding => role_binding_cells(obj, now),
        P::CertificateSigningRequest => csr_cells(obj, now),
        P::MutatingWebhookConfiguration | P::ValidatingWebhookConfiguration => webhook_cells(obj, now),
        P::ValidatingAdmissionPolicy => vap_cells(obj, now),
        P::ValidatingAdmissionPolicyBinding => vap_binding_cells(obj, now),
        P::FlowSchema => flow_schema_cells(obj, now),
        P::PriorityLevelConfiguration => priority_level_cells(obj, now),
        P::DeviceClass | P::ResourceClaimTemplate => vec![name_cell(obj), json!(age(obj, now))],
        P::ResourceClaim => resource_claim_cells(obj, now),
        P::ResourceSlice => resource_slice_cells(obj, now),
    }
}

/// The `conditions` of a table row (`metav1.TableRowCondition` JSON): pods
/// that finished carry a `Completed` condition; every other row has none.
pub fn row_conditions(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
    if printer_for(group, kind) != Some(Printer::Pod) {
        return Vec::new();
    }
    match obj.str_at(&["status", "phase"]) {
        "Succeeded" => vec![json!({
            "type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        })],
        "Failed" => vec![json!({
            "type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed.",
        })],
        _ => Vec::new(),
    }
}

fn printer_columns(p: Printer) -> Vec<ColumnDefinition> {
    use Printer as P;
    match p {
        P::Pod => vec![
            NAME,
            col(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container \
                 in this pod has restarted.",
            ),
            AGE,
            wide(
                "IP",
                "string",
                "podIP address allocated to the pod. Routable at least within the cluster.",
            ),
            wide(
                "Node",
                "string",
                "NodeName indicates in which node this pod is scheduled.",
            ),
            wide(
                "Nominated Node",
                "string",
                "nominatedNodeName is set only when this pod preempts other pods.",
            ),
            wide(
                "Readiness Gates",
                "string",
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        P::PodTemplate => vec![
            NAME,
            col("Containers", "string", "Names of each container in the template."),
            col(
                "Images",
                "string",
                "Images referenced by each container in the template.",
            ),
            col("Pod Labels", "string", "The labels for the pod template."),
        ],
        P::ReplicationController | P::ReplicaSet => vec![
            NAME,
            col("Desired", "integer", "Replicas is the number of desired replicas."),
            col(
                "Current",
                "integer",
                "Replicas is the most recently observed number of replicas.",
            ),
            col(
                "Ready",
                "integer",
                "The number of ready replicas for this replication controller.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", SELECTOR_DESC),
        ],
        P::DaemonSet => vec![
            NAME,
            col(
                "Desired",
                "integer",
                "The total number of nodes that should be running the daemon pod.",
            ),
            col(
                "Current",
                "integer",
                "The number of nodes that are running at least 1 daemon pod.",
            ),
            col(
                "Ready",
                "integer",
                "The number of nodes that should be running the daemon pod and are ready.",
            ),
            col(
                "Up-to-date",
                "integer",
                "The total number of nodes that are running updated daemon pod.",
            ),
            col(
                "Available",
                "integer",
                "The number of nodes that should be running the daemon pod and available.",
            ),
            col(
                "Node Selector",
                "string",
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            wide(
                "Selector",
                "string",
                "A label query over pods that are managed by the daemon set.",
            ),
        ],
        P::Job => vec![
            NAME,
            col("Status", "string", "Status of the job."),
            col(
                "Completions",
                "string",
                "The number of pods which reached phase Succeeded.",
            ),
            col("Duration", "string", "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            wide(
                "Selector",
                "string",
                "A label query over pods that should match the pod count.",
            ),
        ],
        P::CronJob => vec![
            NAME,
            col("Schedule", "string", "The schedule in Cron format."),
            col("Timezone", "string", "The time zone name for the given schedule."),
            col(
                "Suspend",
                "boolean",
                "This flag tells the controller to suspend subsequent executions.",
            ),
            col("Active", "integer", "A list of pointers to currently running jobs."),
            col(
                "Last Schedule",
                "string",
                "Information when was the last time the job was successfully scheduled.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            wide(
                "Selector",
                "string",
                "A label query over pods that should match the pod count.",
            ),
        ],
        P::Service => vec![
            NAME,
            col("Type", "string", "type determines how the Service is exposed."),
            col("Cluster-IP", "string", "clusterIP is the IP address of the service."),
            col(
                "External-IP",
                "string",
                "externalIPs is a list of IP addresses for which nodes also accept traffic.",
            ),
            col(
                "Port(s)",
                "string",
                "The list of ports that are exposed by this service.",
            ),
            AGE,
            wide(
                "Selector",
                "string",
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        P::Endpoints => vec![
            NAME,
            col(
                "Endpoints",
                "string",
                "The set of all endpoints is the union of all subsets.",
            ),
            AGE,
        ],
        P::Node => vec![
            NAME,
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            AGE,
            col("Version", "string", "Kubelet Version reported by the node."),
            wide("Internal-IP", "string", "List of addresses reachable to the node."),
            wide("External-IP", "string", "List of addresses reachable to the node."),
            wide(
                "OS-Image",
                "string",
                "OS Image reported by the node from /etc/os-release.",
            ),
            wide(
                "Kernel-Version",
                "string",
                "Kernel Version reported by the node from 'uname -r'.",
            ),
            wide(
                "Container-Runtime",
                "string",
                "ContainerRuntime Version reported by the node through runtime remote API.",
            ),
        ],
        P::Event | P::EventsV1Event => vec![
            col(
                "Last Seen",
                "string",
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            col(
                "Type",
                "string",
                "Type of this event (Normal, Warning), new types could be added in the future",
            ),
            col(
                "Reason",
                "string",
                "A short, machine understandable reason for the transition into the current status.",
            ),
            col("Object", "string", "The object that this event is about."),
            wide(
                "Subobject",
                "string",
                "The field path of the piece of the object this event is about.",
            ),
            wide("Source", "string", "The component reporting this event."),
            col(
                "Message",
                "string",
                "A human-readable description of the status of this operation.",
            ),
            wide(
                "First Seen",
                "string",
                "The time at which the event was first recorded.",
            ),
            wide("Count", "string", "The number of times this event has occurred."),
            ColumnDefinition { priority: 1, ..NAME },
        ],
        P::Namespace => vec![NAME, col("Status", "string", "The status of the namespace"), AGE],
        P::Secret => vec![
            NAME,
            col(
                "Type",
                "string",
                "Used to facilitate programmatic handling of secret data.",
            ),
            col("Data", "string", "Data contains the secret data."),
            AGE,
        ],
        P::ServiceAccount => vec![
            NAME,
            col(
                "Secrets",
                "string",
                "The secrets pods running as this ServiceAccount may use.",
            ),
            AGE,
        ],
        P::PersistentVolume => vec![
            NAME,
            col(
                "Capacity",
                "string",
                "capacity is the description of the persistent volume's resources and capacity.",
            ),
            col(
                "Access Modes",
                "string",
                "accessModes contains all ways the volume can be mounted.",
            ),
            col(
                "Reclaim Policy",
                "string",
                "What happens to the volume when released from its claim.",
            ),
            col(
                "Status",
                "string",
                "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            ),
            col(
                "Claim",
                "string",
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            ),
            col("StorageClass", "string", "StorageClass of the pv"),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            col(
                "Reason",
                "string",
                "A brief CamelCase string that describes any failure.",
            ),
            AGE,
            wide(
                "VolumeMode",
                "string",
                "Whether the volume holds a formatted filesystem or stays a raw block.",
            ),
        ],
        P::PersistentVolumeClaim => vec![
            NAME,
            col(
                "Status",
                "string",
                "phase represents the current phase of PersistentVolumeClaim.",
            ),
            col(
                "Volume",
                "string",
                "volumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            col(
                "Capacity",
                "string",
                "capacity represents the actual resources of the underlying volume.",
            ),
            col(
                "Access Modes",
                "string",
                "accessModes contains the actual access modes the volume backing the PVC has.",
            ),
            col("StorageClass", "string", "StorageClass of the pvc"),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            AGE,
            wide(
                "VolumeMode",
                "string",
                "volumeMode defines what type of volume is required by the claim.",
            ),
        ],
        P::ConfigMap => vec![
            NAME,
            col("Data", "string", "Data contains the configuration data."),
            AGE,
        ],
        P::ResourceQuota => vec![
            NAME,
            col(
                "Request",
                "string",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            col(
                "Limit",
                "string",
                "Limits control the maximum amount of cpu/memory that a container may use \
                 independent of contention on the node.",
            ),
            AGE,
        ],
        P::ComponentStatus => vec![
            NAME,
            col("Status", "string", "Status of the component conditions"),
            col("Message", "string", "Message of the component conditions"),
            col("Error", "string", "Error of the component conditions"),
        ],
        P::Deployment => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state"),
            col(
                "Up-to-date",
                "string",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            col(
                "Available",
                "string",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", "Label selector for pods."),
        ],
        P::StatefulSet => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        P::ControllerRevision => vec![
            NAME,
            col("Controller", "string", "Controller of the object"),
            col(
                "Revision",
                "string",
                "Revision indicates the revision of the state represented by Data.",
            ),
            AGE,
        ],
        P::HorizontalPodAutoscaler => vec![
            NAME,
            col("Reference", "string", "The scaled resource."),
            col(
                "Targets",
                "string",
                "metrics contains the specifications for which to use to calculate the desired replica count.",
            ),
            col(
                "MinPods",
                "string",
                "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
            ),
            col(
                "MaxPods",
                "string",
                "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
            ),
            col(
                "Replicas",
                "string",
                "current number of replicas of pods managed by this autoscaler.",
            ),
            AGE,
        ],
        P::Lease => vec![
            NAME,
            col(
                "Holder",
                "string",
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            AGE,
        ],
        P::EndpointSlice => vec![
            NAME,
            col(
                "AddressType",
                "string",
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            col(
                "Ports",
                "string",
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            col(
                "Endpoints",
                "string",
                "endpoints is a list of unique endpoints in this slice.",
            ),
            AGE,
        ],
        P::Ingress => vec![
            NAME,
            col(
                "Class",
                "string",
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            col(
                "Hosts",
                "string",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            col(
                "Address",
                "string",
                "Address is a list containing ingress points for the load-balancer",
            ),
            col("Ports", "string", "Ports of TLS configurations that open"),
            AGE,
        ],
        P::IngressClass => vec![
            NAME,
            col(
                "Controller",
                "string",
                "Controller that is responsible for handling this class",
            ),
            col(
                "Parameters",
                "string",
                "A reference to a resource with additional parameters",
            ),
            AGE,
        ],
        P::NetworkPolicy => vec![
            NAME,
            col(
                "Pod-Selector",
                "string",
                "Selects the pods to which this NetworkPolicy object applies.",
            ),
            AGE,
        ],
        P::ServiceCidr => vec![
            NAME,
            col(
                "CIDRs",
                "string",
                "CIDRs defines the IP blocks in CIDR notation from which to assign service cluster IPs.",
            ),
            AGE,
        ],
        P::PodDisruptionBudget => vec![
            NAME,
            col(
                "Min Available",
                "string",
                "The minimum number of pods that must be available.",
            ),
            col(
                "Max Unavailable",
                "string",
                "The maximum number of pods that may be unavailable.",
            ),
            col(
                "Allowed Disruptions",
                "integer",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            AGE,
        ],
        P::ApiService => vec![
            NAME,
            col(
                "Service",
                "string",
                "The reference to the service that hosts this API endpoint.",
            ),
            col("Available", "string", "Whether this service is available."),
            AGE,
        ],
        P::PriorityClass => vec![
            NAME,
            col(
                "Value",
                "integer",
                "value represents the integer value of this priority class.",
            ),
            col(
                "Global-Default",
                "boolean",
                "Whether this is the default priority for pods without a priority class.",
            ),
            AGE,
            col(
                "PreemptionPolicy",
                "string",
                "preemptionPolicy is the Policy for preempting pods with lower priority.",
            ),
        ],
        P::RuntimeClass => vec![
            NAME,
            col(
                "Handler",
                "string",
                "The runtime configuration the CRI uses for pods of this class.",
            ),
            AGE,
        ],
        P::StorageClass => vec![
            NAME,
            col(
                "Provisioner",
                "string",
                "provisioner indicates the type of the provisioner.",
            ),
            col(
                "ReclaimPolicy",
                "string",
                "The reclaim policy of dynamically provisioned volumes.",
            ),
            col(
                "VolumeBindingMode",
                "string",
                "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
            ),
            col(
                "AllowVolumeExpansion",
                "string",
                "allowVolumeExpansion shows whether the storage class allow volume expand.",
            ),
            AGE,
        ],
        P::VolumeAttachment => vec![
            NAME,
            ColumnDefinition {
                format: "name",
                ..col(
                    "Attacher",
                    "string",
                    "attacher indicates the name of the volume driver that MUST handle this request.",
                )
            },
            col(
                "PV",
                "string",
                "persistentVolumeName represents the name of the persistent volume to attach.",
            ),
            col(
                "Node",
                "string",
                "nodeName represents the node that the volume should be attached to.",
            ),
            col(
                "Attached",
                "boolean",
                "attached indicates the volume is successfully attached.",
            ),
            AGE,
        ],
        P::CsiNode => vec![
            NAME,
            col(
                "Drivers",
                "integer",
                "Drivers indicates the number of CSI drivers registered on the node",
            ),
            AGE,
        ],
        P::CsiDriver => vec![
            NAME,
            col(
                "AttachRequired",
                "boolean",
                "attachRequired indicates this CSI volume driver requires an attach operation.",
            ),
            col(
                "PodInfoOnMount",
                "boolean",
                "Whether the driver needs pod information at mount.",
            ),
            col(
                "StorageCapacity",
                "boolean",
                "Whether pod scheduling considers the driver's storage capacity.",
            ),
            col(
                "TokenRequests",
                "string",
                "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for.",
            ),
            col(
                "RequiresRepublish",
                "boolean",
                "requiresRepublish indicates the CSI driver wants NodePublishVolume being periodically called.",
            ),
            col(
                "Modes",
                "string",
                "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports.",
            ),
            AGE,
        ],
        P::CsiStorageCapacity => vec![
            NAME,
            col(
                "StorageClassName",
                "string",
                "storageClassName represents the name of the StorageClass that the reported capacity applies to.",
            ),
            col(
                "Capacity",
                "string",
                "capacity is the value reported by the CSI driver in its GetCapacityResponse.",
            ),
        ],
        P::RoleBinding => vec![
            NAME,
            col(
                "Role",
                "string",
                "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
            ),
            AGE,
            wide("Users", "string", "Users in the roleBinding"),
            wide("Groups", "string", "Groups in the roleBinding"),
            wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
        ],
        P::ClusterRoleBinding => vec![
            NAME,
            col(
                "Role",
                "string",
                "RoleRef can only reference a ClusterRole in the global namespace.",
            ),
            AGE,
            wide("Users", "string", "Users in the clusterRoleBinding"),
            wide("Groups", "string", "Groups in the clusterRoleBinding"),
            wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
        ],
        P::CertificateSigningRequest => vec![
            NAME,
            AGE,
            col("SignerName", "string", "Requested signer for the request."),
            col("Requestor", "string", "Base64-encoded PKCS#10 CSR data"),
            col(
                "RequestedDuration",
                "string",
                "expirationSeconds is the requested duration of validity of the issued certificate.",
            ),
            col(
                "Condition",
                "string",
                "Conditions applied to the request, such as approval or denial.",
            ),
        ],
        P::MutatingWebhookConfiguration | P::ValidatingWebhookConfiguration => vec![
            NAME,
            col(
                "Webhooks",
                "integer",
                "Webhooks indicates the number of webhooks registered in this configuration",
            ),
            AGE,
        ],
        P::ValidatingAdmissionPolicy => vec![
            NAME,
            col(
                "Validations",
                "integer",
                "Validations indicates the number of validation rules defined in this configuration",
            ),
            col(
                "ParamKind",
                "string",
                "ParamKind specifies the kind of resources used to parameterize this policy",
            ),
            AGE,
        ],
        P::ValidatingAdmissionPolicyBinding => vec![
            NAME,
            col(
                "PolicyName",
                "string",
                "PolicyName indicates the policy definition which the policy binding binded to",
            ),
            col(
                "ParamRef",
                "string",
                "ParamRef indicates the param resource which sets the configration param",
            ),
            AGE,
        ],
        P::FlowSchema => vec![
            NAME,
            col(
                "PriorityLevel",
                "string",
                "`name` is the name of the priority level configuration being referenced",
            ),
            col(
                "MatchingPrecedence",
                "string",
                "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request.",
            ),
            col(
                "DistinguisherMethod",
                "string",
                "How the flow distinguisher of matching requests is computed.",
            ),
            AGE,
            col(
                "MissingPL",
                "string",
                "references a broken or non-existent PriorityLevelConfiguration",
            ),
        ],
        P::PriorityLevelConfiguration => vec![
            NAME,
            col(
                "Type",
                "string",
                "`type` indicates whether this priority level is subject to limitation on request execution.",
            ),
            col(
                "NominalConcurrencyShares",
                "string",
                "The nominal concurrency shares of this level.",
            ),
            col(
                "Queues",
                "string",
                "`queues` is the number of queues for this priority level.",
            ),
            col(
                "HandSize",
                "string",
                "`handSize` is a small positive number that configures the shuffle sharding of requests into queues.",
            ),
            col(
                "QueueLengthLimit",
                "string",
                "The most requests that may wait in one queue of this level.",
            ),
            AGE,
        ],
        P::DeviceClass | P::ResourceClaimTemplate => vec![NAME, AGE],
        P::ResourceClaim => vec![
            NAME,
            col(
                "State",
                "string",
                "A summary of the current state (allocated, pending, reserved, etc.).",
            ),
            AGE,
        ],
        P::ResourceSlice => vec![
            NAME,
            col(
                "Node",
                "string",
                "NodeName identifies the node which provides the resources in this pool.",
            ),
            col(
                "Driver",
                "string",
                "Driver identifies the DRA driver providing the capacity information.",
            ),
            col("Pool", "string", "Name is used to identify the pool."),
            AGE,
        ],
    }
}

// ---------------------------------------------------------------------------
// Shared formatting
// ---------------------------------------------------------------------------

fn name_cell(obj: &Value) -> Value {
    json!(obj.str_at(&["metadata", "name"]))
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
fn format_labels(labels: Option<&Value>) -> String {
    let Some(Value::Object(m)) = labels else {
        return "<none>".to_string();
    };
    let sorted: BTreeMap<&str, String> = m.iter().map(|(k, v)| (k.as_str(), scalar_string(v))).collect();
    if sorted.is_empty() {
        return "<none>".to_string();
    }
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.LabelSelectorAsSelector(sel).String()`; `None` when the selector
/// is invalid. A missing selector selects nothing and an empty one everything;
/// both print as the empty string.
fn label_selector_string(sel: Option<&Value>) -> Option<String> {
    let Some(sel) = sel else {
        return Some(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(m)) = sel.get("matchLabels") {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", scalar_string(v))));
        }
    }
    for expr in sel.arr_at(&["matchExpressions"]) {
        let key = expr.str_at(&["key"]);
        let mut values: Vec<String> = expr.arr_at(&["values"]).iter().map(scalar_string).collect();
        values.sort();
        let req = match expr.str_at(&["operator"]) {
            "In" | "NotIn" if values.is_empty() => return None,
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return None,
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), req));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// `metav1.FormatLabelSelector`: `<none>` when it selects everything (or
/// nothing), `<error>` when invalid.
fn format_label_selector(sel: Option<&Value>) -> String {
    match label_selector_string(sel) {
        None => "<error>".to_string(),
        Some(s) if s.is_empty() => "<none>".to_string(),
        Some(s) => s,
    }
}

/// `layoutContainerCells`: container names and images, comma separated.
fn layout_containers(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| c.str_at(&["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| c.str_at(&["image"])).collect();
    (names.join(","), images.join(","))
}

fn container_cells(obj: &Value, template_path: &[&str]) -> [Value; 2] {
    let mut path = template_path.to_vec();
    path.extend(["spec", "containers"]);
    let (names, images) = layout_containers(obj.arr_at(&path));
    [json!(names), json!(images)]
}

/// Go's `net.JoinHostPort`.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `listWithMoreString`: the first few entries, `+ N more...` for the rest,
/// `<unset>` for none.
fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() { "<unset>".to_string() } else { ret }
}

fn first_condition_true(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .find(|c| c.str_at(&["type"]) == type_)
        .is_some_and(|c| c.str_at(&["status"]) == "True")
}

/// `n`, or `default` when `n` is zero (how defaulting treats unset integers).
fn zero_or(n: i64, default: i64) -> i64 {
    if n == 0 { default } else { n }
}

fn print_bool_opt(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

// ---------------------------------------------------------------------------
// core
// ---------------------------------------------------------------------------

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let init_containers = pod.arr_at(&["spec", "initContainers"]);
    let restartable: HashSet<&str> = init_containers
        .iter()
        .filter(|c| c.str_at(&["restartPolicy"]) == "Always")
        .map(|c| c.str_at(&["name"]))
        .collect();
    let total_containers = pod.arr_at(&["spec", "containers"]).len()
        + init_containers
            .iter()
            .filter(|c| c.str_at(&["restartPolicy"]) == "Always")
            .count();
    let mut ready_containers = 0usize;
    let mut restarts: i64 = 0;
    let mut restartable_restarts: i64 = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_restartable_restart: Option<Timestamp> = None;

    let phase = pod.str_at(&["status", "phase"]);
    let status_reason = pod.str_at(&["status", "reason"]);
    let mut reason = if status_reason.is_empty() {
        phase.to_string()
    } else {
        status_reason.to_string()
    };
    let conditions = pod.arr_at(&["status", "conditions"]);
    for c in conditions {
        if c.str_at(&["type"]) == "PodScheduled" && c.str_at(&["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    // The latest `lastState.terminated.finishedAt` seen so far.
    let later = |acc: &mut Option<Timestamp>, status: &Value| {
        let finished = time_at(status, &["lastState", "terminated", "finishedAt"]);
        if let Some(t) = finished.filter(|t| acc.is_none_or(|a| a < *t)) {
            *acc = Some(t);
        }
    };

    let mut initializing = false;
    for (i, status) in pod.arr_at(&["status", "initContainerStatuses"]).iter().enumerate() {
        let restart_count = status.int_at(&["restartCount"]);
        restarts += restart_count;
        later(&mut last_restart, status);
        let is_restartable = restartable.contains(status.str_at(&["name"]));
        if is_restartable {
            restartable_restarts += restart_count;
            later(&mut last_restartable_restart, status);
        }
        let terminated = status.at(&["state", "terminated"]);
        let waiting_reason = status.str_at(&["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| t.int_at(&["exitCode"]) == 0) {
            continue;
        }
        if is_restartable && status.opt_bool_at(&["started"]) == Some(true) {
            if status.bool_at(&["ready"]) {
                ready_containers += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = t.str_at(&["reason"]);
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if t.int_at(&["signal"]) != 0 {
                format!("Init:Signal:{}", t.int_at(&["signal"]))
            } else {
                format!("Init:ExitCode:{}", t.int_at(&["exitCode"]))
            };
        } else if status.has(&["state", "waiting"]) && !waiting_reason.is_empty() && waiting_reason != "PodInitializing"
        {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_containers.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .find(|c| c.str_at(&["type"]) == "Initialized")
        .is_some_and(|c| c.str_at(&["status"]) == "True");
    if !initializing || initialized {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for status in pod.arr_at(&["status", "containerStatuses"]).iter().rev() {
            restarts += status.int_at(&["restartCount"]);
            later(&mut last_restart, status);
            let waiting_reason = status.str_at(&["state", "waiting", "reason"]);
            let terminated = status.at(&["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let r = t.str_at(&["reason"]);
                reason = if !r.is_empty() {
                    r.to_string()
                } else if t.int_at(&["signal"]) != 0 {
                    format!("Signal:{}", t.int_at(&["signal"]))
                } else {
                    format!("ExitCode:{}", t.int_at(&["exitCode"]))
                };
            } else if status.bool_at(&["ready"]) && status.has(&["state", "running"]) {
                has_running = true;
                ready_containers += 1;
            }
        }
        // At least one container still running: not Completed after all.
        if reason == "Completed" && has_running {
            reason = if has_condition_true_any(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    let deleting = pod.has(&["metadata", "deletionTimestamp"]);
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(t, now)),
        _ => restarts.to_string(),
    };

    let pod_ip = match pod.str_at(&["status", "podIP"]) {
        "" => pod
            .arr_at(&["status", "podIPs"])
            .first()
            .map(|p| p.str_at(&["ip"]))
            .unwrap_or(""),
        ip => ip,
    };
    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let gates = pod.arr_at(&["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_conditions = gates
            .iter()
            .filter(|g| {
                let t = g.str_at(&["conditionType"]);
                conditions
                    .iter()
                    .find(|c| c.str_at(&["type"]) == t)
                    .is_some_and(|c| c.str_at(&["status"]) == "True")
            })
            .count();
        format!("{true_conditions}/{}", gates.len())
    };
    vec![
        name_cell(pod),
        json!(format!("{ready_containers}/{total_containers}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(pod, now)),
        json!(or_none(pod_ip)),
        json!(or_none(pod.str_at(&["spec", "nodeName"]))),
        json!(or_none(pod.str_at(&["status", "nominatedNodeName"]))),
        json!(readiness_gates),
    ]
}

/// `hasPodReadyCondition`: any condition of the type with status True.
fn has_condition_true_any(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.str_at(&["type"]) == type_ && c.str_at(&["status"]) == "True")
}

fn pod_template_cells(obj: &Value) -> Vec<Value> {
    let [names, images] = container_cells(obj, &["template"]);
    vec![
        name_cell(obj),
        names,
        images,
        json!(format_labels(obj.at(&["template", "metadata", "labels"]))),
    ]
}

fn replication_controller_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, &["spec", "template"]);
    vec![
        name_cell(obj),
        json!(obj.opt_int_at(&["spec", "replicas"]).unwrap_or(1)),
        json!(obj.int_at(&["status", "replicas"])),
        json!(obj.int_at(&["status", "readyReplicas"])),
        json!(age(obj, now)),
        names,
        images,
        json!(format_labels(obj.at(&["spec", "selector"]))),
    ]
}

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    let svc_type = svc.opt_str_at(&["spec", "type"]).unwrap_or("ClusterIP");
    let cluster_ip = match svc.str_at(&["spec", "clusterIP"]) {
        "" => svc
            .arr_at(&["spec", "clusterIPs"])
            .first()
            .and_then(Value::as_str)
            .unwrap_or(""),
        ip => ip,
    };
    let cluster_ip = if cluster_ip.is_empty() { "<none>" } else { cluster_ip };
    let ports: Vec<String> = svc
        .arr_at(&["spec", "ports"])
        .iter()
        .map(|p| {
            let protocol = p.opt_str_at(&["protocol"]).unwrap_or("TCP");
            let port = p.int_at(&["port"]);
            match p.int_at(&["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name_cell(svc),
        json!(svc_type),
        json!(cluster_ip),
        json!(service_external_ip(svc, svc_type)),
        json!(ports),
        json!(age(svc, now)),
        json!(format_labels(svc.at(&["spec", "selector"]))),
    ]
}

/// The load balancer ingress points (IP, else hostname), sorted and deduplicated.
fn load_balancer_ingress(obj: &Value) -> Vec<String> {
    let set: BTreeSet<&str> = obj
        .arr_at(&["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| match (i.str_at(&["ip"]), i.str_at(&["hostname"])) {
            ("", "") => None,
            ("", host) => Some(host),
            (ip, _) => Some(ip),
        })
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// `getServiceExternalIP` in its wide form (the server never clips it).
fn service_external_ip(svc: &Value, svc_type: &str) -> String {
    let external_ips: Vec<String> = svc.arr_at(&["spec", "externalIPs"]).iter().map(scalar_string).collect();
    match svc_type {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut results = load_balancer_ingress(svc);
            if !external_ips.is_empty() {
                results.extend(external_ips);
                return results.join(",");
            }
            if results.is_empty() {
                "<pending>".to_string()
            } else {
                results.join(",")
            }
        }
        "ExternalName" => svc.str_at(&["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `formatEndpoints` with all ports: up to three `ip:port`, then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = obj.arr_at(&["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = ss.arr_at(&["addresses"]);
        let ports = ss.arr_at(&["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(a.str_at(&["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(a.str_at(&["ip"]), port.int_at(&["port"])));
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

fn endpoints_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), json!(format_endpoints(obj)), json!(age(obj, now))]
}

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    // Upstream keys conditions by type, so the last Ready condition wins.
    let ready = node
        .arr_at(&["status", "conditions"])
        .iter()
        .rev()
        .find(|c| c.str_at(&["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if c.str_at(&["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node.bool_at(&["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(Value::Object(labels)) = node.at(&["metadata", "labels"]) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
                roles.insert(scalar_string(v));
            }
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |type_: &str| {
        node.arr_at(&["status", "addresses"])
            .iter()
            .find(|a| a.str_at(&["type"]) == type_)
            .map(|a| a.str_at(&["address"]).to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    let info = |field: &str| match node.str_at(&["status", "nodeInfo", field]) {
        "" => "<unknown>".to_string(),
        s => s.to_string(),
    };
    vec![
        name_cell(node),
        json!(status.join(",")),
        json!(roles),
        json!(age(node, now)),
        json!(node.str_at(&["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// Where an event's fields live in its group's wire form.
struct EventFields {
    involved: &'static str,
    message: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
}

const CORE_EVENT_FIELDS: EventFields = EventFields {
    involved: "involvedObject",
    message: "message",
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
    source: "source",
    reporting_controller: "reportingComponent",
};

const EVENTS_V1_FIELDS: EventFields = EventFields {
    involved: "regarding",
    message: "note",
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    source: "deprecatedSource",
    reporting_controller: "reportingController",
};

fn event_cells(ev: &Value, f: &EventFields, now: Timestamp) -> Vec<Value> {
    let first = match time_at(ev, &[f.first]) {
        Some(t) => since(t, now),
        None => time_since_at(ev, &["eventTime"], now),
    };
    let mut last = match time_at(ev, &[f.last]) {
        Some(t) => since(t, now),
        None => first.clone(),
    };
    let mut count = ev.int_at(&[f.count]);
    if ev.has(&["series"]) {
        last = time_since_at(ev, &["series", "lastObservedTime"], now);
        count = ev.int_at(&["series", "count"]);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }
    let kind = ev.str_at(&[f.involved, "kind"]).to_lowercase();
    let target = match ev.str_at(&[f.involved, "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let first_non_empty = |a: &str, b: &str| -> String { if a.is_empty() { b.to_string() } else { a.to_string() } };
    let component = first_non_empty(
        ev.str_at(&[f.source, "component"]),
        ev.str_at(&[f.reporting_controller]),
    );
    let host = first_non_empty(ev.str_at(&[f.source, "host"]), ev.str_at(&["reportingInstance"]));
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(ev.str_at(&["type"])),
        json!(ev.str_at(&["reason"])),
        json!(target),
        json!(ev.str_at(&[f.involved, "fieldPath"])),
        json!(source),
        json!(ev.str_at(&[f.message]).trim()),
        json!(first),
        json!(count),
        name_cell(ev),
    ]
}

fn namespace_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let phase = obj.opt_str_at(&["status", "phase"]).unwrap_or("Active");
    vec![name_cell(obj), json!(phase), json!(age(obj, now))]
}

fn secret_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let type_ = obj.opt_str_at(&["type"]).unwrap_or("Opaque");
    vec![
        name_cell(obj),
        json!(type_),
        json!(obj.len_at(&["data"])),
        json!(age(obj, now)),
    ]
}

fn service_account_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), json!(obj.len_at(&["secrets"])), json!(age(obj, now))]
}

fn config_map_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let n = obj.len_at(&["data"]) + obj.len_at(&["binaryData"]);
    vec![name_cell(obj), json!(n), json!(age(obj, now))]
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, s)| *s)
    .collect::<Vec<_>>()
    .join(",")
}

const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn persistent_volume_cells(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match pv.at(&["spec", "claimRef"]) {
        Some(r) => format!("{}/{}", r.str_at(&["namespace"]), r.str_at(&["name"])),
        None => String::new(),
    };
    let phase = if pv.has(&["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else {
        pv.opt_str_at(&["status", "phase"]).unwrap_or("Pending")
    };
    let class = match pv.at(&["metadata", "annotations", BETA_STORAGE_CLASS_ANNOTATION]) {
        Some(v) => scalar_string(v),
        None => pv.str_at(&["spec", "storageClassName"]).to_string(),
    };
    vec![
        name_cell(pv),
        json!(quantity_at(pv, &["spec", "capacity", "storage"])),
        json!(access_modes(pv.arr_at(&["spec", "accessModes"]))),
        json!(
            pv.opt_str_at(&["spec", "persistentVolumeReclaimPolicy"])
                .unwrap_or("Retain")
        ),
        json!(phase),
        json!(claim),
        json!(class),
        json!(
            pv.opt_str_at(&["spec", "volumeAttributesClassName"])
                .unwrap_or("<unset>")
        ),
        json!(pv.str_at(&["status", "reason"])),
        json!(age(pv, now)),
        json!(pv.opt_str_at(&["spec", "volumeMode"]).unwrap_or("Filesystem")),
    ]
}

fn persistent_volume_claim_cells(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if pvc.has(&["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else {
        pvc.opt_str_at(&["status", "phase"]).unwrap_or("Pending")
    };
    let volume = pvc.str_at(&["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity_at(pvc, &["status", "capacity", "storage"]),
            access_modes(pvc.arr_at(&["status", "accessModes"])),
        )
    };
    let class = match pvc.at(&["metadata", "annotations", BETA_STORAGE_CLASS_ANNOTATION]) {
        Some(v) => scalar_string(v),
        None => pvc.str_at(&["spec", "storageClassName"]).to_string(),
    };
    vec![
        name_cell(pvc),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(class),
        json!(
            pvc.opt_str_at(&["spec", "volumeAttributesClassName"])
                .unwrap_or("<unset>")
        ),
        json!(age(pvc, now)),
        json!(pvc.opt_str_at(&["spec", "volumeMode"]).unwrap_or("Filesystem")),
    ]
}

fn resource_quota_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<&String> = match obj.at(&["status", "hard"]) {
        Some(Value::Object(m)) => m.keys().collect(),
        _ => Vec::new(),
    };
    resources.sort();
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for r in resources {
        let used = quantity_at(obj, &["status", "used", r]);
        let hard = quantity_at(obj, &["status", "hard", r]);
        let entry = format!("{r}: {used}/{hard}");
        let mut pieces = r.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        name_cell(obj),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
        json!(age(obj, now)),
    ]
}

fn component_status_cells(obj: &Value) -> Vec<Value> {
    let (status, message, error) = match obj
        .arr_at(&["conditions"])
        .iter()
        .find(|c| c.str_at(&["type"]) == "Healthy")
    {
        Some(c) => (
            if c.str_at(&["status"]) == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            c.str_at(&["message"]),
            c.str_at(&["error"]),
        ),
        None => ("Unknown", "", ""),
    };
    vec![name_cell(obj), json!(status), json!(message), json!(error)]
}

// ---------------------------------------------------------------------------
// apps, batch, autoscaling
// ---------------------------------------------------------------------------

fn deployment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let desired = obj.opt_int_at(&["spec", "replicas"]).unwrap_or(1);
    let selector = label_selector_string(obj.at(&["spec", "selector"])).unwrap_or_else(|| "<invalid>".to_string());
    let [names, images] = container_cells(obj, &["spec", "template"]);
    vec![
        name_cell(obj),
        json!(format!("{}/{desired}", obj.int_at(&["status", "readyReplicas"]))),
        json!(obj.int_at(&["status", "updatedReplicas"])),
        json!(obj.int_at(&["status", "availableReplicas"])),
        json!(age(obj, now)),
        names,
        images,
        json!(selector),
    ]
}

fn replica_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, &["spec", "template"]);
    vec![
        name_cell(obj),
        json!(obj.opt_int_at(&["spec", "replicas"]).unwrap_or(1)),
        json!(obj.int_at(&["status", "replicas"])),
        json!(obj.int_at(&["status", "readyReplicas"])),
        json!(age(obj, now)),
        names,
        images,
        json!(format_label_selector(obj.at(&["spec", "selector"]))),
    ]
}

fn daemon_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, &["spec", "template"]);
    vec![
        name_cell(obj),
        json!(obj.int_at(&["status", "desiredNumberScheduled"])),
        json!(obj.int_at(&["status", "currentNumberScheduled"])),
        json!(obj.int_at(&["status", "numberReady"])),
        json!(obj.int_at(&["status", "updatedNumberScheduled"])),
        json!(obj.int_at(&["status", "numberAvailable"])),
        json!(format_labels(obj.at(&["spec", "template", "spec", "nodeSelector"]))),
        json!(age(obj, now)),
        names,
        images,
        json!(format_label_selector(obj.at(&["spec", "selector"]))),
    ]
}

fn stateful_set_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let desired = obj.opt_int_at(&["spec", "replicas"]).unwrap_or(1);
    let [names, images] = container_cells(obj, &["spec", "template"]);
    vec![
        name_cell(obj),
        json!(format!("{}/{desired}", obj.int_at(&["status", "readyReplicas"]))),
        json!(age(obj, now)),
        names,
        images,
    ]
}

fn controller_revision_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let owner = obj
        .arr_at(&["metadata", "ownerReferences"])
        .iter()
        .find(|r| r.bool_at(&["controller"]));
    let controller = match owner {
        None => "<none>".to_string(),
        Some(r) => {
            let api_version = r.str_at(&["apiVersion"]);
            let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
            let kind = r.str_at(&["kind"]);
            let name = r.str_at(&["name"]);
            match (group, kind) {
                ("", "") => name.to_string(),
                ("", kind) => format!("{}/{name}", kind.to_lowercase()),
                (group, kind) => format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase()),
            }
        }
    };
    vec![
        name_cell(obj),
        json!(controller),
        json!(obj.int_at(&["revision"])),
        json!(age(obj, now)),
    ]
}

fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = job.int_at(&["status", "succeeded"]);
    let completions = match job.opt_int_at(&["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match job.int_at(&["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        time_at(job, &["status", "startTime"]),
        time_at(job, &["status", "completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => since(start, now),
        (Some(start), Some(end)) => human_duration_nanos(nanos_between(start, end)),
    };
    let conditions = job.arr_at(&["status", "conditions"]);
    let status = if first_condition_true(conditions, "Complete") {
        "Complete"
    } else if first_condition_true(conditions, "Failed") {
        "Failed"
    } else if job.has(&["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else if first_condition_true(conditions, "Suspended") {
        "Suspended"
    } else if first_condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else if first_condition_true(conditions, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let [names, images] = container_cells(job, &["spec", "template"]);
    vec![
        name_cell(job),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age(job, now)),
        names,
        images,
        json!(format_label_selector(job.at(&["spec", "selector"]))),
    ]
}

fn cron_job_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match obj.at(&["status", "lastScheduleTime"]) {
        Some(_) => time_since_at(obj, &["status", "lastScheduleTime"], now),
        None => "<none>".to_string(),
    };
    let [names, images] = container_cells(obj, &["spec", "jobTemplate", "spec", "template"]);
    vec![
        name_cell(obj),
        json!(obj.str_at(&["spec", "schedule"])),
        json!(obj.opt_str_at(&["spec", "timeZone"]).unwrap_or("<none>")),
        json!(print_bool_opt(obj.opt_bool_at(&["spec", "suspend"]))),
        json!(obj.len_at(&["status", "active"])),
        json!(last_schedule),
        json!(age(obj, now)),
        names,
        images,
        json!(format_label_selector(obj.at(&[
            "spec",
            "jobTemplate",
            "spec",
            "selector"
        ]))),
    ]
}

/// `formatHPAMetrics` over autoscaling/v2 metric specs and statuses (paired by
/// index, as upstream pairs them).
fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 2;
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        // The status's source of the given type, when present.
        let st = |source: &str| status.and_then(|s| s.at(&[source]));
        let unknown = || "<unknown>".to_string();
        let entry = match spec.str_at(&["type"]) {
            "External" | "Object" => {
                let source = if spec.str_at(&["type"]) == "External" {
                    "external"
                } else {
                    "object"
                };
                if spec.has(&[source, "target", "averageValue"]) {
                    let current = st(source)
                        .and_then(|s| s.at(&["current", "averageValue"]))
                        .map(scalar_string)
                        .unwrap_or_else(unknown);
                    format!(
                        "{current}/{} (avg)",
                        quantity_ptr_at(spec, &[source, "target", "averageValue"])
                    )
                } else {
                    let current = st(source)
                        .map(|s| quantity_ptr_at(s, &["current", "value"]))
                        .unwrap_or_else(unknown);
                    format!("{current}/{}", quantity_ptr_at(spec, &[source, "target", "value"]))
                }
            }
            "Pods" => {
                let current = st("pods")
                    .map(|s| quantity_ptr_at(s, &["current", "averageValue"]))
                    .unwrap_or_else(unknown);
                format!(
                    "{current}/{}",
                    quantity_ptr_at(spec, &["pods", "target", "averageValue"])
                )
            }
            "Resource" | "ContainerResource" => {
                let source = if spec.str_at(&["type"]) == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let name = spec.str_at(&[source, "name"]);
                if spec.has(&[source, "target", "averageValue"]) {
                    let current = st(source)
                        .map(|s| quantity_ptr_at(s, &["current", "averageValue"]))
                        .unwrap_or_else(unknown);
                    format!(
                        "{name}: {current}/{}",
                        quantity_ptr_at(spec, &[source, "target", "averageValue"])
                    )
                } else {
                    let current = st(source)
                        .and_then(|s| s.opt_int_at(&["current", "averageUtilization"]))
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(unknown);
                    let target = spec
                        .opt_int_at(&[source, "target", "averageUtilization"])
                        .map(|u| format!("{u}%"))
                        .unwrap_or_else(|| "<auto>".to_string());
                    format!("{name}: {current}/{target}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(entry);
    }
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(", "), count - MAX);
    }
    list.join(", ")
}

fn hpa_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        obj.str_at(&["spec", "scaleTargetRef", "kind"]),
        obj.str_at(&["spec", "scaleTargetRef", "name"])
    );
    let specs = obj.arr_at(&["spec", "metrics"]);
    let metrics = if !specs.is_empty() {
        format_hpa_metrics(specs, obj.arr_at(&["status", "currentMetrics"]))
    } else {
        // autoscaling/v1 carries one CPU target, and autoscaling/v2 defaults an
        // empty metric list to the same: 80% average CPU utilization.
        let target = obj
            .at(&["spec", "targetCPUUtilizationPercentage"])
            .cloned()
            .unwrap_or(json!(80));
        let spec = json!({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": target,
        }}});
        let statuses: Vec<Value> = match obj.at(&["status", "currentCPUUtilizationPercentage"]) {
            Some(u) => vec![json!({"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": u,
            }}})],
            None => obj.arr_at(&["status", "currentMetrics"]).to_vec(),
        };
        format_hpa_metrics(&[spec], &statuses)
    };
    // minReplicas defaults to 1.
    let min_pods = obj.opt_int_at(&["spec", "minReplicas"]).unwrap_or(1).to_string();
    vec![
        name_cell(obj),
        json!(reference),
        json!(metrics),
        json!(min_pods),
        json!(obj.int_at(&["spec", "maxReplicas"])),
        json!(obj.int_at(&["status", "currentReplicas"])),
        json!(age(obj, now)),
    ]
}

// ---------------------------------------------------------------------------
// Other groups
// ---------------------------------------------------------------------------

fn lease_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(obj.str_at(&["spec", "holderIdentity"])),
        json!(age(obj, now)),
    ]
}

fn endpoint_slice_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let ports = obj.arr_at(&["ports"]);
    let port_list: Vec<String> = ports
        .iter()
        .take(MAX)
        .map(|p| match (p.opt_int_at(&["port"]), p.opt_str_at(&["name"])) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<&Value> = obj
        .arr_at(&["endpoints"])
        .iter()
        .flat_map(|e| e.arr_at(&["addresses"]))
        .collect();
    let address_list: Vec<String> = addresses.iter().take(MAX).map(|a| scalar_string(a)).collect();
    vec![
        name_cell(obj),
        json!(obj.str_at(&["addressType"])),
        json!(list_with_more(&port_list, ports.len() > MAX, ports.len(), MAX)),
        json!(list_with_more(
            &address_list,
            addresses.len() > MAX,
            addresses.len(),
            MAX
        )),
        json!(age(obj, now)),
    ]
}

fn ingress_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let rules = obj.arr_at(&["spec", "rules"]);
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = rule.str_at(&["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - MAX)
    } else {
        hosts.join(",")
    };
    let ports = if obj.arr_at(&["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name_cell(obj),
        json!(obj.opt_str_at(&["spec", "ingressClassName"]).unwrap_or("<none>")),
        json!(hosts),
        json!(load_balancer_ingress(obj).join(",")),
        json!(ports),
        json!(age(obj, now)),
    ]
}

fn ingress_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match obj.at(&["spec", "parameters"]) {
        None => "<none>".to_string(),
        Some(p) => {
            let mut s = p.str_at(&["kind"]).to_string();
            if let Some(group) = p.opt_str_at(&["apiGroup"]) {
                s = format!("{s}.{group}");
            }
            format!("{s}/{}", p.str_at(&["name"]))
        }
    };
    vec![
        name_cell(obj),
        json!(obj.str_at(&["spec", "controller"])),
        json!(parameters),
        json!(age(obj, now)),
    ]
}

fn network_policy_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // podSelector is not a pointer upstream: absent means "all pods".
    let selector = obj.at(&["spec", "podSelector"]).cloned().unwrap_or_else(|| json!({}));
    vec![
        name_cell(obj),
        json!(format_label_selector(Some(&selector))),
        json!(age(obj, now)),
    ]
}

fn service_cidr_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let cidrs: Vec<String> = obj.arr_at(&["spec", "cidrs"]).iter().map(scalar_string).collect();
    vec![name_cell(obj), json!(cidrs.join(",")), json!(age(obj, now))]
}

fn pdb_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let int_or_string = |field: &str| {
        obj.at(&["spec", field])
            .map(scalar_string)
            .unwrap_or_else(|| "N/A".to_string())
    };
    vec![
        name_cell(obj),
        json!(int_or_string("minAvailable")),
        json!(int_or_string("maxUnavailable")),
        json!(obj.int_at(&["status", "disruptionsAllowed"])),
        json!(age(obj, now)),
    ]
}

fn priority_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(obj.int_at(&["value"])),
        json!(obj.bool_at(&["globalDefault"])),
        json!(age(obj, now)),
        json!(obj.opt_str_at(&["preemptionPolicy"]).unwrap_or("PreemptLowerPriority")),
    ]
}

/// kube-aggregator's printer: the backing Service or `Local`, and the
/// Available condition (`False (<reason>)` when not).
fn api_service_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let service = match obj.pointer("/spec/service").filter(|s| s.is_object()) {
        Some(s) => format!("{}/{}", s.str_at(&["namespace"]), s.str_at(&["name"])),
        None => "Local".to_string(),
    };
    let available = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.str_at(&["type"]) == "Available"))
        .map(|c| match c.str_at(&["status"]) {
            "True" => "True".to_string(),
            status => format!("{status} ({})", c.str_at(&["reason"])),
        })
        .unwrap_or_else(|| "Unknown".to_string());
    vec![name_cell(obj), json!(service), json!(available), json!(age(obj, now))]
}

fn runtime_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), json!(obj.str_at(&["handler"])), json!(age(obj, now))]
}

fn storage_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|a| obj.str_at(&["metadata", "annotations", a]) == "true");
    let mut name = obj.str_at(&["metadata", "name"]).to_string();
    if is_default {
        name.push_str(" (default)");
    }
    vec![
        json!(name),
        json!(obj.str_at(&["provisioner"])),
        json!(obj.opt_str_at(&["reclaimPolicy"]).unwrap_or("Delete")),
        json!(obj.opt_str_at(&["volumeBindingMode"]).unwrap_or("Immediate")),
        json!(obj.bool_at(&["allowVolumeExpansion"])),
        json!(age(obj, now)),
    ]
}

fn volume_attachment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(obj.str_at(&["spec", "attacher"])),
        json!(obj.str_at(&["spec", "source", "persistentVolumeName"])),
        json!(obj.str_at(&["spec", "nodeName"])),
        json!(obj.bool_at(&["status", "attached"])),
        json!(age(obj, now)),
    ]
}

fn csi_node_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(obj.len_at(&["spec", "drivers"])),
        json!(age(obj, now)),
    ]
}

fn csi_driver_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let modes: Vec<String> = obj
        .arr_at(&["spec", "volumeLifecycleModes"])
        .iter()
        .map(scalar_string)
        .collect();
    // volumeLifecycleModes defaults to Persistent.
    let modes = if modes.is_empty() {
        "Persistent".to_string()
    } else {
        modes.join(",")
    };
    let token_requests = match obj.at(&["spec", "tokenRequests"]) {
        None => "<unset>".to_string(),
        Some(t) => t
            .arr_at(&[])
            .iter()
            .map(|r| r.str_at(&["audience"]))
            .collect::<Vec<_>>()
            .join(","),
    };
    vec![
        name_cell(obj),
        json!(obj.opt_bool_at(&["spec", "attachRequired"]).unwrap_or(true)),
        json!(obj.bool_at(&["spec", "podInfoOnMount"])),
        json!(obj.bool_at(&["spec", "storageCapacity"])),
        json!(token_requests),
        json!(obj.bool_at(&["spec", "requiresRepublish"])),
        json!(modes),
        json!(age(obj, now)),
    ]
}

fn csi_storage_capacity_cells(obj: &Value) -> Vec<Value> {
    let capacity = obj
        .at(&["capacity"])
        .map(scalar_string)
        .unwrap_or_else(|| "<unset>".to_string());
    vec![
        name_cell(obj),
        json!(obj.str_at(&["storageClassName"])),
        json!(capacity),
    ]
}

fn role_binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        obj.str_at(&["roleRef", "kind"]),
        obj.str_at(&["roleRef", "name"])
    );
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in obj.arr_at(&["subjects"]) {
        let name = s.str_at(&["name"]);
        match s.str_at(&["kind"]) {
            "ServiceAccount" => sas.push(format!("{}/{name}", s.str_at(&["namespace"]))),
            "User" => users.push(name.to_string()),
            "Group" => groups.push(name.to_string()),
            _ => {}
        }
    }
    vec![
        name_cell(obj),
        json!(role),
        json!(age(obj, now)),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

fn csr_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let (mut approved, mut denied, mut failed) = (false, false, false);
    for c in obj.arr_at(&["status", "conditions"]) {
        match c.str_at(&["type"]) {
            "Approved" => approved = true,
            "Denied" => denied = true,
            "Failed" => failed = true,
            _ => {}
        }
    }
    let mut condition = if denied {
        "Denied"
    } else if approved {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if failed {
        condition.push_str(",Failed");
    }
    if !obj.str_at(&["status", "certificate"]).is_empty() {
        condition.push_str(",Issued");
    }
    let signer = match obj.str_at(&["spec", "signerName"]) {
        "" => "<none>",
        s => s,
    };
    let requested = match obj.opt_int_at(&["spec", "expirationSeconds"]) {
        Some(s) => human_duration_nanos(i128::from(s) * NANOS_PER_SECOND),
        None => "<none>".to_string(),
    };
    vec![
        name_cell(obj),
        json!(age(obj, now)),
        json!(signer),
        json!(obj.str_at(&["spec", "username"])),
        json!(requested),
        json!(condition),
    ]
}

fn webhook_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![name_cell(obj), json!(obj.len_at(&["webhooks"])), json!(age(obj, now))]
}

fn vap_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let param_kind = match obj.at(&["spec", "paramKind"]) {
        Some(p) => format!("{}/{}", p.str_at(&["apiVersion"]), p.str_at(&["kind"])),
        None => "<unset>".to_string(),
    };
    vec![
        name_cell(obj),
        json!(obj.len_at(&["spec", "validations"])),
        json!(param_kind),
        json!(age(obj, now)),
    ]
}

fn vap_binding_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let param = match obj.at(&["spec", "paramRef"]) {
        None => "<unset>".to_string(),
        Some(p) => match (p.str_at(&["name"]), p.str_at(&["namespace"])) {
            ("", _) => match p.at(&["selector"]) {
                Some(sel) => format_label_selector(Some(sel)),
                None => "<unset>".to_string(),
            },
            (name, "") => format!("*/{name}"),
            (name, ns) => format!("{ns}/{name}"),
        },
    };
    vec![
        name_cell(obj),
        json!(obj.str_at(&["spec", "policyName"])),
        json!(param),
        json!(age(obj, now)),
    ]
}

fn flow_schema_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let distinguisher = obj
        .opt_str_at(&["spec", "distinguisherMethod", "type"])
        .unwrap_or("<none>");
    let missing = obj
        .arr_at(&["status", "conditions"])
        .iter()
        .find(|c| c.str_at(&["type"]) == "Dangling")
        .map(|c| c.str_at(&["status"]))
        .unwrap_or("?");
    vec![
        name_cell(obj),
        json!(obj.str_at(&["spec", "priorityLevelConfiguration", "name"])),
        json!(match obj.int_at(&["spec", "matchingPrecedence"]) {
            0 => 1000,
            p => p,
        }),
        json!(distinguisher),
        json!(age(obj, now)),
        json!(missing),
    ]
}

fn priority_level_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let none = || json!("<none>");
    let (mut ncs, mut queues, mut hand_size, mut queue_length) = (none(), none(), none(), none());
    if let Some(limited) = obj.at(&["spec", "limited"]) {
        ncs = json!(limited.opt_int_at(&["nominalConcurrencyShares"]).unwrap_or(30));
        if let Some(q) = limited.at(&["limitResponse", "queuing"]) {
            queues = json!(zero_or(q.int_at(&["queues"]), 64));
            hand_size = json!(zero_or(q.int_at(&["handSize"]), 8));
            queue_length = json!(zero_or(q.int_at(&["queueLengthLimit"]), 50));
        }
    }
    vec![
        name_cell(obj),
        json!(obj.str_at(&["spec", "type"])),
        ncs,
        queues,
        hand_size,
        queue_length,
        json!(age(obj, now)),
    ]
}

fn resource_claim_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let deleted = obj.has(&["metadata", "deletionTimestamp"]);
    let mut states = Vec::new();
    if deleted {
        states.push("deleted");
    }
    if obj.has(&["status", "allocation"]) {
        states.push("allocated");
        if !obj.arr_at(&["status", "reservedFor"]).is_empty() {
            states.push("reserved");
        }
    } else if !deleted {
        states.push("pending");
    }
    vec![name_cell(obj), json!(states.join(",")), json!(age(obj, now))]
}

fn resource_slice_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(obj.str_at(&["spec", "nodeName"])),
        json!(obj.str_at(&["spec", "driver"])),
        json!(obj.str_at(&["spec", "pool", "name"])),
        json!(age(obj, now)),
    ]
}

// ---------------------------------------------------------------------------
// Custom resources
// ---------------------------------------------------------------------------

/// A custom resource's table column: the serialized fields are its
/// `metav1.TableColumnDefinition`; `json_path` says where its cells come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    /// The column's JSONPath; `None` for the leading `Name` column.
    #[serde(skip)]
    pub json_path: Option<String>,
    #[serde(skip)]
    parsed: Option<Vec<Step>>,
}

/// The table columns for a custom resource, from its CRD version's
/// `additionalPrinterColumns`: `Name` first, then the given columns. With no
/// columns given, upstream serves a single `Age` column
/// (`.metadata.creationTimestamp`, type `date`).
pub fn custom_columns(additional_printer_columns: &Value) -> Vec<CustomColumn> {
    let mut out = vec![CustomColumn {
        name: NAME.name.to_string(),
        type_: NAME.type_.to_string(),
        format: NAME.format.to_string(),
        description: NAME_DESC.to_string(),
        priority: 0,
        json_path: None,
        parsed: None,
    }];
    let given = additional_printer_columns.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let default_age = [json!({
        "name": "Age", "type": "date", "description": AGE_DESC, "jsonPath": ".metadata.creationTimestamp",
    })];
    let given = if given.is_empty() { &default_age[..] } else { given };
    for c in given {
        let path = c.str_at(&["jsonPath"]).to_string();
        let description = match c.str_at(&["description"]) {
            "" => format!("Custom resource definition column (in JSONPath format): {path}"),
            d => d.to_string(),
        };
        out.push(CustomColumn {
            name: c.str_at(&["name"]).to_string(),
            type_: c.str_at(&["type"]).to_string(),
            format: c.str_at(&["format"]).to_string(),
            description,
            priority: i32::try_from(c.int_at(&["priority"])).unwrap_or(0),
            parsed: parse_json_path(&path),
            json_path: Some(path),
        });
    }
    out
}

/// The row cells of a custom resource for [`custom_columns`]: the name, then
/// each column's first JSONPath result typed as upstream types it (`null`
/// when the path finds nothing or the value does not fit the type; `date`
/// columns print the age, `<invalid>` for a malformed timestamp).
pub fn custom_cells(columns: &[CustomColumn], obj: &Value, now: Timestamp) -> Vec<Value> {
    columns
        .iter()
        .map(|c| match (&c.json_path, &c.parsed) {
            (None, _) => name_cell(obj),
            (Some(_), None) => Value::Null,
            (Some(_), Some(steps)) => match eval_json_path(steps, obj).first() {
                None => Value::Null,
                Some(v) => custom_cell(&c.type_, v, now),
            },
        })
        .collect()
}

fn custom_cell(type_: &str, v: &Value, now: Timestamp) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    match type_ {
        // The JSONPath printer's text form.
        "string" => match v {
            Value::String(s) => json!(s),
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.as_i64().is_none() && n.as_u64().is_none() => json!(go_float_string(f)),
                _ => json!(n.to_string()),
            },
            Value::Bool(b) => json!(b.to_string()),
            other => json!(serde_json::to_string(other).unwrap_or_default()),
        },
        "integer" => json_int(v).map_or(Value::Null, |i| json!(i)),
        "number" => v.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => v.as_bool().map_or(Value::Null, |b| json!(b)),
        "date" => match v.as_str() {
            Some("") | Some("null") => json!("<unknown>"),
            Some(s) => match s.parse::<Timestamp>() {
                Ok(_) => json!(translate_timestamp_since(Some(s), now)),
                Err(_) => json!("<invalid>"),
            },
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

/// Go's `%v` of a float64: the shortest representation, in exponent form
/// when the exponent is below -4 or at least 6 (`1.5e+06`).
fn go_float_string(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let e = format!("{f:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat(usize::try_from(-exp - 1).unwrap_or(0));
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = usize::try_from(exp + 1).unwrap_or(1);
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

// --- JSONPath (the simple subset CRD printer columns use) -------------------

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: Vec<Step>,
    cmp: Option<(CmpOp, Literal)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// Parses `.a.b`, `.a[0]`, `.a[-1]`, `.a[*]`, `.a[1:3]`, `['a.b']`, `.a\.b`
/// and `[?(@.x=="y")]` (also `!=`, `<`, `<=`, `>`, `>=`, and bare `@.x`);
/// `None` for anything else.
fn parse_json_path(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    let path = path.strip_prefix('$').unwrap_or(path);
    let chars: Vec<char> = path.chars().collect();
    let (steps, end) = parse_steps(&chars, 0, false)?;
    (end == chars.len()).then_some(steps)
}

/// Parses steps from `i`; inside a filter it stops at the first character
/// that cannot continue a path (an operator, a space or the closing paren).
fn parse_steps(chars: &[char], mut i: usize, in_filter: bool) -> Option<(Vec<Step>, usize)> {
    let mut steps = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                if chars.get(i) == Some(&'*') {
                    steps.push(Step::Wildcard);
                    i += 1;
                    continue;
                }
                if chars.get(i) == Some(&'.') {
                    return None; // recursive descent is not supported
                }
                let mut name = String::new();
                while i < chars.len() {
                    let c = chars[i];
                    if c == '\\' && i + 1 < chars.len() {
                        name.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    if c == '.' || c == '[' || (in_filter && (c == ')' || c.is_whitespace() || "=!<>".contains(c))) {
                        break;
                    }
                    name.push(c);
                    i += 1;
                }
                if name.is_empty() {
                    return None;
                }
                steps.push(Step::Field(name));
            }
            '[' => {
                let (step, next) = parse_bracket(chars, i)?;
                steps.push(step);
                i = next;
            }
            _ if in_filter => break,
            _ => return None,
        }
    }
    Some((steps, i))
}

/// Parses the bracket expression opening at `chars[start] == '['`.
fn parse_bracket(chars: &[char], start: usize) -> Option<(Step, usize)> {
    let mut i = start + 1;
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ']' if depth == 0 => break,
                _ => {}
            },
        }
        i += 1;
    }
    if i >= chars.len() {
        return None;
    }
    let inner: String = chars[start + 1..i].iter().collect();
    let inner = inner.trim();
    let step = if inner == "*" {
        Step::Wildcard
    } else if let Some(expr) = inner.strip_prefix("?(").and_then(|e| e.strip_suffix(')')) {
        Step::Filter(parse_filter(expr.trim())?)
    } else if let Some(s) = unquote(inner) {
        Step::Field(s)
    } else if let Some((a, b)) = inner.split_once(':') {
        if b.contains(':') {
            return None;
        }
        let bound = |s: &str| -> Option<Option<i64>> {
            let s = s.trim();
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Step::Slice(bound(a)?, bound(b)?)
    } else {
        Step::Index(inner.parse().ok()?)
    };
    Some((step, i + 1))
}

fn unquote(s: &str) -> Option<String> {
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            let body = &s[1..s.len() - 1];
            if !body.contains(q) {
                return Some(body.to_string());
            }
        }
    }
    None
}

fn parse_filter(expr: &str) -> Option<Filter> {
    let rest = expr.strip_prefix('@')?;
    let chars: Vec<char> = rest.chars().collect();
    let (path, end) = parse_steps(&chars, 0, true)?;
    let tail: String = chars[end..].iter().collect();
    let tail = tail.trim();
    if tail.is_empty() {
        return Some(Filter { path, cmp: None });
    }
    let ops = [
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<=", CmpOp::Le),
        (">=", CmpOp::Ge),
        ("<", CmpOp::Lt),
        (">", CmpOp::Gt),
    ];
    let (op, lit) = ops
        .iter()
        .find_map(|(s, op)| tail.strip_prefix(s).map(|lit| (*op, lit.trim())))?;
    let literal = if let Some(s) = unquote(lit) {
        Literal::Str(s)
    } else if lit == "true" || lit == "false" {
        Literal::Bool(lit == "true")
    } else {
        Literal::Num(lit.parse().ok()?)
    };
    Some(Filter {
        path,
        cmp: Some((op, literal)),
    })
}

fn eval_json_path<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(name) => {
                    if let Some(x) = v.as_object().and_then(|m| m.get(name)) {
                        next.push(x);
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Index(i) => {
                    if let Some(a) = v.as_array() {
                        let len = a.len() as i64;
                        let idx = if *i < 0 { i + len } else { *i };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x);
                        }
                    }
                }
                Step::Slice(from, to) => {
                    if let Some(a) = v.as_array() {
                        let len = a.len() as i64;
                        let norm = |b: i64| (if b < 0 { b + len } else { b }).clamp(0, len);
                        let from = usize::try_from(from.map_or(0, norm)).unwrap_or(0);
                        let to = usize::try_from(to.map_or(len, norm)).unwrap_or(0);
                        if from < to {
                            next.extend(a[from..to].iter());
                        }
                    }
                }
                Step::Filter(f) => {
                    if let Some(a) = v.as_array() {
                        next.extend(a.iter().filter(|el| filter_matches(f, el)));
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

fn filter_matches(f: &Filter, el: &Value) -> bool {
    let found = eval_json_path(&f.path, el);
    let Some(left) = found.first() else {
        return false;
    };
    let Some((op, lit)) = &f.cmp else {
        return true;
    };
    let ord = match (left, lit) {
        (Value::String(a), Literal::Str(b)) => a.as_str().partial_cmp(b.as_str()),
        (Value::Number(a), Literal::Num(b)) => a.as_f64().and_then(|a| a.partial_cmp(b)),
        (Value::Bool(a), Literal::Bool(b)) => a.partial_cmp(b),
        _ => None,
    };
    match (op, ord) {
        (_, None) => false,
        (CmpOp::Eq, Some(o)) => o.is_eq(),
        (CmpOp::Ne, Some(o)) => o.is_ne(),
        (CmpOp::Lt, Some(o)) => o.is_lt(),
        (CmpOp::Le, Some(o)) => o.is_le(),
        (CmpOp::Gt, Some(o)) => o.is_gt(),
        (CmpOp::Ge, Some(o)) => o.is_ge(),
    }
}

#[cfg(test)]
#[rustfmt::skip]
mod tests {
    use super::*;

    /// The fixed "now" of every test: objects are created an hour before it.
    const NOW: &str = "2024-05-01T12:00:00Z";
    const CREATED: &str = "2024-05-01T11:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// The RFC 3339 time `secs` seconds before [`NOW`].
    fn ago(secs: i64) -> String {
        let t = Timestamp::from_second(now().as_second() - secs).unwrap();
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "default", "uid": "0d6f2a7e", "creationTimestamp": CREATED})
    }

    /// Prints `obj` and checks that there is one cell per column.
    fn row(group: &str, kind: &str, obj: &Value) -> Value {
        let cells = cells(group, kind, obj, now());
        assert_eq!(
            cells.len(),
            columns(group, kind).len(),
            "{group}/{kind}: one cell per column"
        );
        Value::Array(cells)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    // --- durations -----------------------------------------------------------

    #[test]
    fn human_duration_matches_upstream() {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        const DAY: u64 = 24 * HOUR;
        let cases: &[(Duration, &str)] = &[
            (secs(0), "0s"),
            (Duration::from_millis(1900), "1s"),
            (secs(59), "59s"),
            (secs(119), "119s"),
            (secs(2 * MIN), "2m"),
            (secs(2 * MIN + 30), "2m30s"),
            (secs(5 * MIN + 30), "5m30s"),
            (secs(9 * MIN + 59), "9m59s"),
            (secs(10 * MIN), "10m"),
            (secs(10 * MIN + 59), "10m"),
            (secs(179 * MIN + 59), "179m"),
            (secs(3 * HOUR), "3h"),
            (secs(3 * HOUR + 5 * MIN + 59), "3h5m"),
            (secs(7 * HOUR + 59 * MIN), "7h59m"),
            (secs(8 * HOUR + 30 * MIN), "8h"),
            (secs(47 * HOUR + 59 * MIN), "47h"),
            (secs(2 * DAY), "2d"),
            (secs(2 * DAY + 3 * HOUR), "2d3h"),
            (secs(7 * DAY + 23 * HOUR), "7d23h"),
            (secs(8 * DAY + 5 * HOUR), "8d"),
            (secs(729 * DAY), "729d"),
            (secs(730 * DAY), "2y"),
            (secs(3 * 365 * DAY + 45 * DAY), "3y45d"),
            (secs(7 * 365 * DAY + 364 * DAY), "7y364d"),
            (secs(8 * 365 * DAY + 200 * DAY), "8y"),
            (secs(12 * 365 * DAY), "12y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(*d), *want, "{d:?}");
        }
    }

    #[test]
    fn short_human_duration_matches_upstream() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (119, "1m"),
            (59 * 60 + 59, "59m"),
            (3600, "1h"),
            (23 * 3600 + 3599, "23h"),
            (24 * 3600, "1d"),
            (364 * 86400, "364d"),
            (365 * 86400, "1y"),
            (800 * 86400, "2y"),
        ];
        for (s, want) in cases {
            assert_eq!(short_human_duration(secs(*s)), *want, "{s}s");
        }
    }

    #[test]
    fn negative_durations_tolerate_a_little_skew() {
        assert_eq!(human_duration_nanos(-500_000_000), "0s");
        assert_eq!(human_duration_nanos(-1_999_999_999), "0s");
        assert_eq!(human_duration_nanos(-2_000_000_000), "<invalid>");
        assert_eq!(short_human_duration_nanos(-1_500_000_000), "0s");
        assert_eq!(short_human_duration_nanos(-3_000_000_000), "<invalid>");
    }

    #[test]
    fn translate_timestamp_since_cases() {
        let cases: &[(Option<&str>, &str)] = &[
            (None, "<unknown>"),
            (Some(""), "<unknown>"),
            (Some("not a time"), "<unknown>"),
            (Some("0001-01-01T00:00:00Z"), "<unknown>"),
            (Some("2024-05-01T11:55:00Z"), "5m"),
            (Some("2024-05-01T11:59:30.5Z"), "29s"),
            (Some("2024-05-01T13:00:00+02:00"), "60m"),
            (Some("2024-05-01T12:00:01Z"), "0s"),
            (Some("2024-05-01T12:00:05Z"), "<invalid>"),
            (Some("2023-05-01T12:00:00Z"), "366d"),
        ];
        for (ts, want) in cases {
            assert_eq!(translate_timestamp_since(*ts, now()), *want, "{ts:?}");
        }
    }

    // --- pods ------------------------------------------------------------------

    fn pod(name: &str, spec: Value, status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta(name), "spec": spec, "status": status})
    }

    fn one_container() -> Value {
        json!({"containers": [{"name": "app", "image": "registry.example.com/app:1.4"}], "nodeName": "node-a"})
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "started": true, "restartCount": restarts,
               "state": {"running": {"startedAt": "2024-05-01T11:00:05Z"}}})
    }

    #[test]
    fn pod_cells_cover_upstream_status_logic() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "running and ready",
                pod(
                    "web-1",
                    json!({"containers": [{"name": "web"}, {"name": "log"}], "nodeName": "node-a"}),
                    json!({"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
                           "conditions": [{"type": "Ready", "status": "True"}],
                           "containerStatuses": [running("web", true, 0), running("log", true, 0)]}),
                ),
                json!(["web-1", "2/2", "Running", "0", "60m", "10.244.1.5", "node-a", "<none>", "<none>"]),
            ),
            (
                "container creating",
                pod(
                    "web-2",
                    one_container(),
                    json!({"phase": "Pending", "containerStatuses": [{"name": "app", "ready": false,
                           "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ),
                json!(["web-2", "0/1", "ContainerCreating", "0", "60m", "<none>", "node-a", "<none>", "<none>"]),
            ),
            (
                "crash loop with last restart time",
                pod(
                    "crashy",
                    one_container(),
                    json!({"phase": "Running", "podIP": "10.244.1.6", "containerStatuses": [{"name": "app",
                           "ready": false, "restartCount": 5,
                           "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
                           "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                        "finishedAt": ago(150)}}}]}),
                ),
                json!(["crashy", "0/1", "CrashLoopBackOff", "5 (2m30s ago)", "60m", "10.244.1.6", "node-a", "<none>",
                       "<none>"]),
            ),
            (
                "completed",
                pod(
                    "job-x",
                    one_container(),
                    json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "ready": false,
                           "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                json!(["job-x", "0/1", "Completed", "0", "60m", "<none>", "node-a", "<none>", "<none>"]),
            ),
            (
                "error",
                pod(
                    "job-y",
                    one_container(),
                    json!({"phase": "Failed", "containerStatuses": [{"name": "app", "restartCount": 0,
                           "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                ),
                json!([
                    "job-y", "0/1", "Error", "0", "60m", "<none>", "node-a", "<none>", "<none>"
                ]),
            ),
            (
                "exit code without reason",
                pod(
                    "oom",
                    one_container(),
                    json!({"phase": "Running", "containerStatuses": [{"name": "app", "restartCount": 0,
                           "state": {"terminated": {"exitCode": 137}}}]}),
                ),
                json!(["oom", "0/1", "ExitCode:137", "0", "60m", "<none>", "node-a", "<none>", "<none>"]),
            ),
            (
                "signal without reason",
                pod(
                    "killed",
                    one_container(),
                    json!({"phase": "Running", "containerStatuses": [{"name": "app", "restartCount": 0,
                           "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}),
                ),
                json!([
                    "killed", "0/1", "Signal:9", "0", "60m", "<none>", "node-a", "<none>", "<none>"
                ]),
            ),
            (
                "first init container running",
                pod(
                    "init-a",
                    json!({"initContainers": [{"name": "migrate"}, {"name": "warm"}],
                           "containers": [{"name": "app"}], "nodeName": "node-a"}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "migrate", "restartCount": 0, "state": {"running": {}}},
                        {"name": "warm", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
                        "containerStatuses": [{"name": "app", "restartCount": 0,
                                               "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                json!([
                    "init-a", "0/1", "Init:0/2", "0", "60m", "<none>", "node-a", "<none>", "<none>"
                ]),
            ),
            (
                "second init container running",
                pod(
                    "init-b",
                    json!({"initContainers": [{"name": "migrate"}, {"name": "warm"}],
                           "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 0,
                                                                                        "reason": "Completed"}}},
                        {"name": "warm", "restartCount": 0, "state": {"running": {}}}]}),
                ),
                json!([
                    "init-b", "0/1", "Init:1/2", "0", "60m", "<none>", "<none>", "<none>", "<none>"
                ]),
            ),
            (
                "init container crash looping",
                pod(
                    "init-c",
                    json!({"initContainers": [{"name": "migrate"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending", "conditions": [{"type": "Initialized", "status": "False"}],
                           "initContainerStatuses": [{"name": "migrate", "restartCount": 3,
                              "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                              "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}}],
                           "containerStatuses": [{"name": "app", "restartCount": 0,
                                                  "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                json!(["init-c", "0/1", "Init:CrashLoopBackOff", "3 (30s ago)", "60m", "<none>", "<none>", "<none>",
                       "<none>"]),
            ),
            (
                "init container failed with reason",
                pod(
                    "init-d",
                    json!({"initContainers": [{"name": "migrate"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Failed", "initContainerStatuses": [{"name": "migrate", "restartCount": 0,
                           "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                ),
                json!(["init-d", "0/1", "Init:Error", "0", "60m", "<none>", "<none>", "<none>", "<none>"]),
            ),
            (
                "init container exit code",
                pod(
                    "init-e",
                    json!({"initContainers": [{"name": "migrate"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "migrate", "restartCount": 0,
                           "state": {"terminated": {"exitCode": 2}}}]}),
                ),
                json!(["init-e", "0/1", "Init:ExitCode:2", "0", "60m", "<none>", "<none>", "<none>", "<none>"]),
            ),
            (
                "init container signal",
                pod(
                    "init-f",
                    json!({"initContainers": [{"name": "migrate"}], "containers": [{"name": "app"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "migrate", "restartCount": 0,
                           "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
                ),
                json!(["init-f", "0/1", "Init:Signal:9", "0", "60m", "<none>", "<none>", "<none>", "<none>"]),
            ),
            (
                "sidecar init container counts as a container",
                pod(
                    "mesh",
                    json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                           "containers": [{"name": "app"}], "nodeName": "node-b"}),
                    json!({"phase": "Running", "podIP": "10.244.2.9",
                           "conditions": [{"type": "Initialized", "status": "True"},
                                          {"type": "Ready", "status": "True"}],
                           "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true,
                              "restartCount": 1, "state": {"running": {}},
                              "lastState": {"terminated": {"exitCode": 2, "finishedAt": ago(300)}}}],
                           "containerStatuses": [running("app", true, 0)]}),
                ),
                json!(["mesh", "2/2", "Running", "1 (5m ago)", "60m", "10.244.2.9", "node-b", "<none>", "<none>"]),
            ),
            (
                "restarts sum over containers with the latest restart",
                pod(
                    "multi",
                    json!({"containers": [{"name": "a"}, {"name": "b"}]}),
                    json!({"phase": "Running", "containerStatuses": [
                        {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(7200)}}},
                        {"name": "b", "ready": true, "restartCount": 1, "state": {"running": {}},
                         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(45)}}}]}),
                ),
                json!(["multi", "2/2", "Running", "3 (45s ago)", "60m", "<none>", "<none>", "<none>", "<none>"]),
            ),
            (
                "terminating",
                {
                    let mut p = pod(
                        "old",
                        one_container(),
                        json!({"phase": "Running", "containerStatuses": [running("app", true, 0)]}),
                    );
                    p["metadata"]["deletionTimestamp"] = json!(ago(10));
                    p
                },
                json!(["old", "1/1", "Terminating", "0", "60m", "<none>", "node-a", "<none>", "<none>"]),
            ),
            (
                "deleted on a lost node",
                {
                    let mut p = pod(
                        "lost",
                        one_container(),
                        json!({"phase": "Running", "reason": "NodeLost",
                               "containerStatuses": [running("app", true, 0)]}),
                    );
                    p["metadata"]["deletionTimestamp"] = json!(ago(10));
                    p
                },
                json!([
                    "lost", "1/1", "Unknown", "0", "60m", "<none>", "node-a", "<none>", "<none>"
                ]),
            ),
            (
                "a finished pod being deleted keeps its status",
                {
                    let mut p = pod(
                        "done",
                        one_container(),
                        json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "restartCount": 0,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                    );
                    p["metadata"]["deletionTimestamp"] = json!(ago(10));
                    p
                },
                json!(["done", "0/1", "Completed", "0", "60m", "<none>", "node-a", "<none>", "<none>"]),
            ),
            (
                "evicted",
                pod(
                    "evicted",
                    one_container(),
                    json!({"phase": "Failed", "reason": "Evicted",
                           "message": "The node was low on resource: memory."}),
                ),
                json!([
                    "evicted", "0/1", "Evicted", "0", "60m", "<none>", "node-a", "<none>", "<none>"
                ]),
            ),
            (
                "scheduling gated",
                pod(
                    "gated",
                    json!({"containers": [{"name": "app"}], "schedulingGates": [{"name": "example.com/quota"}]}),
                    json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                               "reason": "SchedulingGated"}]}),
                ),
                json!(["gated", "0/1", "SchedulingGated", "0", "60m", "<none>", "<none>", "<none>", "<none>"]),
            ),
            (
                "pending with a nominated node",
                pod(
                    "preemptor",
                    json!({"containers": [{"name": "app"}], "priorityClassName": "high"}),
                    json!({"phase": "Pending", "nominatedNodeName": "node-c",
                           "conditions": [{"type": "PodScheduled", "status": "False",
                                           "reason": "Unschedulable"}]}),
                ),
                json!(["preemptor", "0/1", "Pending", "0", "60m", "<none>", "<none>", "node-c", "<none>"]),
            ),
            (
                "readiness gates",
                pod(
                    "gates",
                    json!({"containers": [{"name": "app"}], "nodeName": "node-a",
                           "readinessGates": [{"conditionType": "target-health.elbv2.k8s.aws/tg"},
                                              {"conditionType": "www.example.com/feature-1"}]}),
                    json!({"phase": "Running", "podIPs": [{"ip": "fd00::17"}],
                           "conditions": [{"type": "target-health.elbv2.k8s.aws/tg", "status": "True"},
                                          {"type": "www.example.com/feature-1", "status": "False"}],
                           "containerStatuses": [running("app", true, 0)]}),
                ),
                json!([
                    "gates", "1/1", "Running", "0", "60m", "fd00::17", "node-a", "<none>", "1/2"
                ]),
            ),
            (
                "completed container beside a running one, pod not ready",
                pod(
                    "half",
                    json!({"containers": [{"name": "server"}, {"name": "setup"}]}),
                    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                           "containerStatuses": [running("server", true, 0),
                               {"name": "setup", "restartCount": 0,
                                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                json!([
                    "half", "1/2", "NotReady", "0", "60m", "<none>", "<none>", "<none>", "<none>"
                ]),
            ),
            (
                "completed container beside a running one, pod ready",
                pod(
                    "half-ready",
                    json!({"containers": [{"name": "server"}, {"name": "setup"}]}),
                    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                           "containerStatuses": [running("server", true, 0),
                               {"name": "setup", "restartCount": 0,
                                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                json!(["half-ready", "1/2", "Running", "0", "60m", "<none>", "<none>", "<none>", "<none>"]),
            ),
            (
                "running but not ready",
                pod(
                    "warming",
                    one_container(),
                    json!({"phase": "Running", "podIP": "10.244.1.8",
                           "containerStatuses": [running("app", false, 0)]}),
                ),
                json!(["warming", "0/1", "Running", "0", "60m", "10.244.1.8", "node-a", "<none>", "<none>"]),
            ),
            (
                "bare pod object",
                json!({"metadata": {"name": "bare"}}),
                json!(["bare", "0/0", "", "0", "<unknown>", "<none>", "<none>", "<none>", "<none>"]),
            ),
        ];
        for (what, obj, want) in cases {
            assert_eq!(row("", "Pod", &obj), want, "{what}");
        }
    }

    #[test]
    fn pod_columns_and_row_conditions() {
        let names: Vec<&str> = columns("", "Pod").iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        let wide: Vec<i32> = columns("", "Pod").iter().map(|c| c.priority).collect();
        assert_eq!(wide, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
        let done = json!({"status": {"phase": "Succeeded"}});
        assert_eq!(
            row_conditions("", "Pod", &done),
            vec![json!({"type": "Completed", "status": "True", "reason": "Succeeded",
                        "message": "The pod has completed successfully."})]
        );
        let failed = json!({"status": {"phase": "Failed"}});
        assert_eq!(row_conditions("", "Pod", &failed)[0]["reason"], "Failed");
        assert!(row_conditions("", "Pod", &json!({"status": {"phase": "Running"}})).is_empty());
        assert!(row_conditions("apps", "Deployment", &done).is_empty());
    }

    #[test]
    fn column_definition_serializes_as_table_column_definition() {
        let v = serde_json::to_value(columns("", "Pod")[0]).unwrap();
        assert_eq!(v["name"], "Name");
        assert_eq!(v["type"], "string");
        assert_eq!(v["format"], "name");
        assert_eq!(v["priority"], 0);
        assert!(
            v["description"]
                .as_str()
                .unwrap()
                .starts_with("Name must be unique within a namespace.")
        );
        let ip = serde_json::to_value(columns("", "Pod")[5]).unwrap();
        assert_eq!(ip["name"], "IP");
        assert_eq!(ip["format"], "");
        assert_eq!(ip["priority"], 1);
        assert_eq!(ip.as_object().unwrap().len(), 5);
    }

    // --- nodes -----------------------------------------------------------------

    fn node(name: &str, labels: Value, spec: Value, status: Value) -> Value {
        let mut m = meta(name);
        m.as_object_mut().unwrap().remove("namespace");
        m["labels"] = labels;
        json!({"apiVersion": "v1", "kind": "Node", "metadata": m, "spec": spec, "status": status})
    }

    fn node_info() -> Value {
        json!({"kubeletVersion": "v1.33.1", "osImage": "Ubuntu 24.04 LTS", "kernelVersion": "6.8.0-31-generic",
               "containerRuntimeVersion": "containerd://1.7.12", "architecture": "amd64"})
    }

    #[test]
    fn node_cells() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "ready control plane",
                node(
                    "cp-1",
                    json!({"kubernetes.io/hostname": "cp-1", "node-role.kubernetes.io/control-plane": ""}),
                    json!({"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}),
                    json!({"conditions": [{"type": "MemoryPressure", "status": "False"},
                                          {"type": "Ready", "status": "True"}],
                           "addresses": [{"type": "InternalIP", "address": "192.168.1.10"},
                                         {"type": "Hostname", "address": "cp-1"}],
                           "nodeInfo": node_info()}),
                ),
                json!(["cp-1", "Ready", "control-plane", "60m", "v1.33.1", "192.168.1.10", "<none>",
                       "Ubuntu 24.04 LTS", "6.8.0-31-generic", "containerd://1.7.12"]),
            ),
            (
                "not ready and cordoned",
                node(
                    "worker-1",
                    json!({"kubernetes.io/hostname": "worker-1"}),
                    json!({"unschedulable": true}),
                    json!({"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}],
                           "addresses": [{"type": "InternalIP", "address": "192.168.1.21"},
                                         {"type": "ExternalIP", "address": "203.0.113.21"}],
                           "nodeInfo": node_info()}),
                ),
                json!(["worker-1", "NotReady,SchedulingDisabled", "<none>", "60m", "v1.33.1", "192.168.1.21",
                       "203.0.113.21", "Ubuntu 24.04 LTS", "6.8.0-31-generic", "containerd://1.7.12"]),
            ),
            (
                "ready and cordoned",
                node(
                    "worker-2",
                    json!({}),
                    json!({"unschedulable": true}),
                    json!({"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": node_info()}),
                ),
                json!(["worker-2", "Ready,SchedulingDisabled", "<none>", "60m", "v1.33.1", "<none>", "<none>",
                       "Ubuntu 24.04 LTS", "6.8.0-31-generic", "containerd://1.7.12"]),
            ),
            (
                "just registered",
                node("fresh", json!({}), json!({}), json!({})),
                json!(["fresh", "Unknown", "<none>", "60m", "", "<none>", "<none>", "<unknown>", "<unknown>",
                       "<unknown>"]),
            ),
            (
                "several roles, sorted",
                node(
                    "gpu-1",
                    json!({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/infra": "true",
                           "node-role.kubernetes.io/": "", "kubernetes.io/role": "gpu"}),
                    json!({}),
                    json!({"conditions": [{"type": "Ready", "status": "False"}], "nodeInfo": node_info()}),
                ),
                json!(["gpu-1", "NotReady", "gpu,infra,worker", "60m", "v1.33.1", "<none>", "<none>",
                       "Ubuntu 24.04 LTS", "6.8.0-31-generic", "containerd://1.7.12"]),
            ),
        ];
        for (what, obj, want) in cases {
            assert_eq!(row("", "Node", &obj), want, "{what}");
        }
        let names: Vec<&str> = columns("", "Node").iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
    }

    // --- services ----------------------------------------------------------------

    fn service(name: &str, spec: Value, status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name), "spec": spec, "status": status})
    }

    #[test]
    fn service_cells_for_each_type() {
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "the kubernetes service",
                service(
                    "kubernetes",
                    json!({"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                           "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}),
                    json!({"loadBalancer": {}}),
                ),
                json!(["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP", "60m", "<none>"]),
            ),
            (
                "cluster DNS",
                service(
                    "kube-dns",
                    json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"k8s-app": "kube-dns"},
                           "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                     {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                                     {"name": "metrics", "port": 9153, "protocol": "TCP"}]}),
                    json!({}),
                ),
                json!(["kube-dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP", "60m",
                       "k8s-app=kube-dns"]),
            ),
            (
                "headless",
                service(
                    "db",
                    json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
                           "selector": {"app": "db", "tier": "data"}, "ports": [{"port": 5432}]}),
                    json!({}),
                ),
                json!(["db", "ClusterIP", "None", "<none>", "5432/TCP", "60m", "app=db,tier=data"]),
            ),
            (
                "cluster IP with external IPs",
                service(
                    "edge",
                    json!({"type": "ClusterIP", "clusterIP": "10.96.4.4", "externalIPs": ["198.51.100.7",
                           "198.51.100.8"], "ports": [{"port": 80, "protocol": "TCP"}]}),
                    json!({}),
                ),
                json!(["edge", "ClusterIP", "10.96.4.4", "198.51.100.7,198.51.100.8", "80/TCP", "60m", "<none>"]),
            ),
            (
                "node port",
                service(
                    "web",
                    json!({"type": "NodePort", "clusterIP": "10.96.12.3", "selector": {"app": "web"},
                           "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP", "targetPort": 8080},
                                     {"port": 443, "nodePort": 30443, "protocol": "TCP"}]}),
                    json!({}),
                ),
                json!(["web", "NodePort", "10.96.12.3", "<none>", "80:30080/TCP,443:30443/TCP", "60m", "app=web"]),
            ),
            (
                "load balancer, pending",
                service(
                    "ingress",
                    json!({"type": "LoadBalancer", "clusterIP": "10.96.50.1",
                           "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
                    json!({"loadBalancer": {}}),
                ),
                json!(["ingress", "LoadBalancer", "10.96.50.1", "<pending>", "443:31443/TCP", "60m", "<none>"]),
            ),
            (
                "load balancer with ingress points",
                service(
                    "public",
                    json!({"type": "LoadBalancer", "clusterIP": "10.96.50.2",
                           "ports": [{"port": 80, "nodePort": 32000, "protocol": "TCP"}]}),
                    json!({"loadBalancer": {"ingress": [{"hostname": "a1b2.elb.example.com"},
                                                        {"ip": "203.0.113.10"}, {"ip": "203.0.113.10"}]}}),
                ),
                json!(["public", "LoadBalancer", "10.96.50.2", "203.0.113.10,a1b2.elb.example.com", "80:32000/TCP",
                       "60m", "<none>"]),
            ),
            (
                "load balancer with external IPs",
                service(
                    "mixed",
                    json!({"type": "LoadBalancer", "clusterIP": "10.96.50.3", "externalIPs": ["198.51.100.9"],
                           "ports": [{"port": 80, "nodePort": 32001, "protocol": "TCP"}]}),
                    json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.11"}]}}),
                ),
                json!(["mixed", "LoadBalancer", "10.96.50.3", "203.0.113.11,198.51.100.9", "80:32001/TCP", "60m",
                       "<none>"]),
            ),
            (
                "external name",
                service(
                    "billing-db",
                    json!({"type": "ExternalName", "externalName": "db.billing.example.com"}),
                    json!({}),
                ),
                json!(["billing-db", "ExternalName", "<none>", "db.billing.example.com", "<none>", "60m", "<none>"]),
            ),
            (
                "IPv6 and defaults",
                service(
                    "v6",
                    json!({"clusterIPs": ["fd00:10:96::a"], "ports": [{"port": 8080}],
                           "selector": {"app": "v6"}}),
                    json!({}),
                ),
                json!(["v6", "ClusterIP", "fd00:10:96::a", "<none>", "8080/TCP", "60m", "app=v6"]),
            ),
        ];
        for (what, obj, want) in cases {
            assert_eq!(row("", "Service", &obj), want, "{what}");
        }
    }

    // --- workloads ---------------------------------------------------------------

    fn deployment(name: &str, spec: Value, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name), "spec": spec,
               "status": status})
    }

    fn template(containers: Value) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
    }

    #[test]
    fn deployment_cells() {
        let nginx = json!([{"name": "nginx", "image": "nginx:1.27"}]);
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "all available",
                deployment(
                    "nginx",
                    json!({"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
                           "template": template(nginx.clone())}),
                    json!({"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                           "observedGeneration": 1}),
                ),
                json!(["nginx", "3/3", 3, 3, "60m", "nginx", "nginx:1.27", "app=nginx"]),
            ),
            (
                "rolling out",
                deployment(
                    "api",
                    json!({"replicas": 4, "selector": {"matchLabels": {"app": "api"}},
                           "template": template(json!([{"name": "api", "image": "example/api:2"},
                                                       {"name": "envoy", "image": "envoyproxy/envoy:v1.30"}]))}),
                    json!({"replicas": 5, "readyReplicas": 3, "updatedReplicas": 2, "availableReplicas": 3,
                           "unavailableReplicas": 2}),
                ),
                json!(["api", "3/4", 2, 3, "60m", "api,envoy", "example/api:2,envoyproxy/envoy:v1.30", "app=api"]),
            ),
            (
                "scaled to zero, empty status",
                deployment(
                    "idle",
                    json!({"replicas": 0, "selector": {"matchLabels": {"app": "idle"}},
                           "template": template(nginx.clone())}),
                    json!({}),
                ),
                json!(["idle", "0/0", 0, 0, "60m", "nginx", "nginx:1.27", "app=idle"]),
            ),
            (
                "replicas defaulted, set-based selector",
                deployment(
                    "web",
                    json!({"selector": {"matchLabels": {"tier": "frontend", "app": "web"},
                                        "matchExpressions": [
                                            {"key": "env", "operator": "In", "values": ["staging", "prod"]},
                                            {"key": "canary", "operator": "DoesNotExist"},
                                            {"key": "zone", "operator": "NotIn", "values": ["b"]},
                                            {"key": "arch", "operator": "Exists"}]},
                           "template": template(nginx.clone())}),
                    json!({"readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
                ),
                json!(["web", "1/1", 1, 1, "60m", "nginx", "nginx:1.27",
                       "app=web,arch,!canary,env in (prod,staging),tier=frontend,zone notin (b)"]),
            ),
            (
                "invalid selector",
                deployment(
                    "broken",
                    json!({"replicas": 1, "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]},
                           "template": template(nginx)}),
                    json!({}),
                ),
                json!(["broken", "0/1", 0, 0, "60m", "nginx", "nginx:1.27", "<invalid>"]),
            ),
        ];
        for (what, obj, want) in cases {
            assert_eq!(row("apps", "Deployment", &obj), want, "{what}");
        }
        let names: Vec<&str> = columns("apps", "Deployment").iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }

    #[test]
    fn replica_set_daemon_set_stateful_set_rc_cells() {
        let rs = json!({"metadata": meta("web-5d8f7c9b4"), "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f7c9b4"}},
            "template": template(json!([{"name": "nginx", "image": "nginx:1.27"}]))},
            "status": {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}});
        assert_eq!(
            row("apps", "ReplicaSet", &rs),
            json!(["web-5d8f7c9b4", 3, 3, 2, "60m", "nginx", "nginx:1.27", "app=web,pod-template-hash=5d8f7c9b4"])
        );
        let old_rs = json!({"metadata": meta("web-old"), "spec": {"replicas": 0, "selector": {}}, "status": {}});
        assert_eq!(
            row("apps", "ReplicaSet", &old_rs),
            json!(["web-old", 0, 0, 0, "60m", "", "", "<none>"])
        );

        let ds = json!({"metadata": meta("fluentd"), "spec": {"selector": {"matchLabels": {"k8s-app": "fluentd"}},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                  "containers": [{"name": "fluentd", "image": "fluent/fluentd:v1.16"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                       "updatedNumberScheduled": 3, "numberAvailable": 2, "numberMisscheduled": 0}});
        assert_eq!(
            row("apps", "DaemonSet", &ds),
            json!(["fluentd", 3, 3, 2, 3, 2, "kubernetes.io/os=linux", "60m", "fluentd", "fluent/fluentd:v1.16",
                   "k8s-app=fluentd"])
        );

        let sts = json!({"metadata": meta("pg"), "spec": {"replicas": 3, "serviceName": "pg",
            "template": {"spec": {"containers": [{"name": "postgres", "image": "postgres:16"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1, "currentReplicas": 2}});
        assert_eq!(
            row("apps", "StatefulSet", &sts),
            json!(["pg", "1/3", "60m", "postgres", "postgres:16"])
        );

        let rc = json!({"metadata": meta("legacy"), "spec": {"replicas": 2, "selector": {"app": "legacy"},
            "template": {"metadata": {"labels": {"app": "legacy"}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}},
            "status": {"replicas": 2, "readyReplicas": 2}});
        assert_eq!(
            row("", "ReplicationController", &rc),
            json!(["legacy", 2, 2, 2, "60m", "nginx", "nginx", "app=legacy"])
        );

        let pt = json!({"metadata": meta("tmpl"), "template": {"metadata": {"labels": {"tier": "fe", "app": "web"}},
            "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]}}});
        assert_eq!(
            row("", "PodTemplate", &pt),
            json!(["tmpl", "a,b", "a:1,b:2", "app=web,tier=fe"])
        );
    }

    #[test]
    fn controller_revision_cells() {
        let mut cr = json!({"metadata": meta("fluentd-7d9c"), "revision": 3, "data": {}});
        cr["metadata"]["ownerReferences"] = json!([
            {"apiVersion": "v1", "kind": "Pod", "name": "not-the-controller"},
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "controller": true}]);
        assert_eq!(
            row("apps", "ControllerRevision", &cr),
            json!(["fluentd-7d9c", "daemonset.apps/fluentd", 3, "60m"])
        );
        let orphan = json!({"metadata": meta("orphan"), "revision": 1});
        assert_eq!(
            row("apps", "ControllerRevision", &orphan),
            json!(["orphan", "<none>", 1, "60m"])
        );
    }

    #[test]
    fn job_cells() {
        let job = |name: &str, spec: Value, status: Value| {
            let mut spec = spec;
            spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "4f3c"}});
            spec["template"] = json!({"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}});
            json!({"metadata": meta(name), "spec": spec, "status": status})
        };
        let sel = "batch.kubernetes.io/controller-uid=4f3c";
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "complete",
                job(
                    "pi",
                    json!({"completions": 1, "parallelism": 1}),
                    json!({"succeeded": 1, "startTime": CREATED, "completionTime": "2024-05-01T11:00:42Z",
                           "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                          {"type": "Complete", "status": "True"}]}),
                ),
                json!(["pi", "Complete", "1/1", "42s", "60m", "pi", "perl:5.34", sel]),
            ),
            (
                "running",
                job(
                    "batch",
                    json!({"completions": 5, "parallelism": 2}),
                    json!({"succeeded": 2, "active": 2, "startTime": ago(125)}),
                ),
                json!(["batch", "Running", "2/5", "2m5s", "60m", "pi", "perl:5.34", sel]),
            ),
            (
                "failed",
                job(
                    "flaky",
                    json!({"completions": 1, "backoffLimit": 2}),
                    json!({"failed": 3, "startTime": CREATED, "completionTime": "2024-05-01T11:10:00Z",
                           "conditions": [{"type": "FailureTarget", "status": "True"},
                                          {"type": "Failed", "status": "True"}]}),
                ),
                json!(["flaky", "Failed", "0/1", "10m", "60m", "pi", "perl:5.34", sel]),
            ),
            (
                "suspended, never started",
                job(
                    "later",
                    json!({"completions": 1, "suspend": true}),
                    json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
                ),
                json!(["later", "Suspended", "0/1", "", "60m", "pi", "perl:5.34", sel]),
            ),
            (
                "work queue with parallelism",
                job(
                    "queue",
                    json!({"parallelism": 3}),
                    json!({"succeeded": 1, "startTime": ago(30)}),
                ),
                json!(["queue", "Running", "1/1 of 3", "30s", "60m", "pi", "perl:5.34", sel]),
            ),
            (
                "being deleted",
                {
                    let mut j = job("gone", json!({"completions": 2}), json!({"startTime": ago(600)}));
                    j["metadata"]["deletionTimestamp"] = json!(ago(1));
                    j
                },
                json!(["gone", "Terminating", "0/2", "10m", "60m", "pi", "perl:5.34", sel]),
            ),
        ];
        for (what, obj, want) in cases {
            assert_eq!(row("batch", "Job", &obj), want, "{what}");
        }
        let names: Vec<&str> = columns("batch", "Job").iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }

    #[test]
    fn cron_job_cells() {
        let cj = json!({"metadata": meta("hello"), "spec": {"schedule": "*/5 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello",
                                                                          "image": "busybox:1.36"}]}}}}},
            "status": {"active": [{"kind": "Job", "name": "hello-28573"}], "lastScheduleTime": ago(300)}});
        assert_eq!(
            row("batch", "CronJob", &cj),
            json!(["hello", "*/5 * * * *", "<none>", "False", 1, "5m", "60m", "hello", "busybox:1.36", "<none>"])
        );
        let tz = json!({"metadata": meta("nightly"), "spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Paris",
            "jobTemplate": {"spec": {"selector": {"matchLabels": {"job": "nightly"}}}}}});
        assert_eq!(
            row("batch", "CronJob", &tz),
            json!(["nightly", "0 3 * * *", "Europe/Paris", "<unset>", 0, "<none>", "60m", "", "", "job=nightly"])
        );
    }

    #[test]
    fn hpa_cells() {
        let v2 = json!({"metadata": meta("web"), "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 10, "metrics": [
                {"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory",
                    "target": {"type": "AverageValue", "averageValue": "500Mi"}}}]},
            "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": 45, "averageValue": "90m"}}},
                {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "300Mi"}}}]}});
        assert_eq!(
            row("autoscaling", "HorizontalPodAutoscaler", &v2),
            json!(["web", "Deployment/web", "cpu: 45%/80%, memory: 300Mi/500Mi", "2", 10, 3, "60m"])
        );

        let many = json!({"metadata": meta("queue"), "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "worker"}, "maxReplicas": 20, "metrics": [
                {"type": "Pods", "pods": {"metric": {"name": "rps"},
                    "target": {"type": "AverageValue", "averageValue": "1k"}}},
                {"type": "External", "external": {"metric": {"name": "queue_depth"},
                    "target": {"type": "AverageValue", "averageValue": "30"}}},
                {"type": "Object", "object": {"metric": {"name": "hits"},
                    "target": {"type": "Value", "value": "10k"}}}]},
            "status": {"currentReplicas": 1}});
        assert_eq!(
            row("autoscaling", "HorizontalPodAutoscaler", &many),
            json!(["queue", "Deployment/worker", "<unknown>/1k, <unknown>/30 (avg) + 1 more...", "1", 20, 1, "60m"])
        );

        let v1 = json!({"metadata": meta("php"), "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "php-apache"},
            "minReplicas": 1, "maxReplicas": 10, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 1, "desiredReplicas": 1, "currentCPUUtilizationPercentage": 0}});
        assert_eq!(
            row("autoscaling", "HorizontalPodAutoscaler", &v1),
            json!(["php", "Deployment/php-apache", "cpu: 0%/50%", "1", 10, 1, "60m"])
        );

        let fresh = json!({"metadata": meta("new"), "spec": {"scaleTargetRef": {"kind": "StatefulSet",
            "name": "db"}, "maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 70}}}]}});
        assert_eq!(
            row("autoscaling", "HorizontalPodAutoscaler", &fresh),
            json!(["new", "StatefulSet/db", "cpu: <unknown>/70%", "1", 3, 0, "60m"])
        );
        let none = json!({"metadata": meta("bare"), "spec": {"scaleTargetRef": {"kind": "Deployment",
            "name": "x"}, "maxReplicas": 2}});
        assert_eq!(
            row("autoscaling", "HorizontalPodAutoscaler", &none),
            json!(["bare", "Deployment/x", "cpu: <unknown>/80%", "1", 2, 0, "60m"])
        );
    }

    // --- core: the rest ---------------------------------------------------------

    #[test]
    fn simple_core_kinds() {
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": CREATED},
                        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        assert_eq!(row("", "Namespace", &ns), json!(["default", "Active", "60m"]));
        let mut dying = ns.clone();
        dying["status"]["phase"] = json!("Terminating");
        assert_eq!(row("", "Namespace", &dying), json!(["default", "Terminating", "60m"]));

        let cm = json!({"metadata": meta("kube-root-ca.crt"), "data": {"ca.crt": "-----BEGIN..."},
                        "binaryData": {"logo.png": "iVBORw0KGgo=", "icon.png": "iVBORw0KGgo="}});
        assert_eq!(row("", "ConfigMap", &cm), json!(["kube-root-ca.crt", 3, "60m"]));
        assert_eq!(
            row("", "ConfigMap", &json!({"metadata": meta("empty")})),
            json!(["empty", 0, "60m"])
        );

        let tls = json!({"metadata": meta("web-tls"), "type": "kubernetes.io/tls",
                         "data": {"tls.crt": "LS0t", "tls.key": "LS0t"}});
        assert_eq!(
            row("", "Secret", &tls),
            json!(["web-tls", "kubernetes.io/tls", 2, "60m"])
        );
        let opaque = json!({"metadata": meta("creds"), "data": {"password": "aHVudGVyMg=="}});
        assert_eq!(row("", "Secret", &opaque), json!(["creds", "Opaque", 1, "60m"]));

        let sa = json!({"metadata": meta("default")});
        assert_eq!(row("", "ServiceAccount", &sa), json!(["default", 0, "60m"]));
        let sa2 = json!({"metadata": meta("builder"), "secrets": [{"name": "builder-token"}]});
        assert_eq!(row("", "ServiceAccount", &sa2), json!(["builder", 1, "60m"]));

        let cs = json!({"metadata": {"name": "etcd-0"}, "conditions": [{"type": "Healthy", "status": "True",
                        "message": "ok"}]});
        assert_eq!(row("", "ComponentStatus", &cs), json!(["etcd-0", "Healthy", "ok", ""]));
    }

    #[test]
    fn endpoints_cells() {
        let ep = json!({"metadata": meta("web"), "subsets": [
            {"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.7"}], "ports": [{"name": "http", "port": 8080}]},
            {"addresses": [{"ip": "10.244.3.9"}, {"ip": "10.244.4.2"}], "ports": [{"name": "http", "port": 8080}]}]});
        assert_eq!(
            row("", "Endpoints", &ep),
            json!(["web", "10.244.1.5:8080,10.244.2.7:8080,10.244.3.9:8080 + 1 more...", "60m"])
        );
        let two_ports = json!({"metadata": meta("dns"), "subsets": [{"addresses": [{"ip": "10.244.0.3"}],
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "metrics", "port": 9153}]}]});
        assert_eq!(
            row("", "Endpoints", &two_ports),
            json!(["dns", "10.244.0.3:53,10.244.0.3:9153", "60m"])
        );
        let headless = json!({"metadata": meta("hl"), "subsets": [{"addresses": [{"ip": "fd00::5"}]}]});
        assert_eq!(row("", "Endpoints", &headless), json!(["hl", "fd00::5", "60m"]));
        let v6 = json!({"metadata": meta("v6"), "subsets": [{"addresses": [{"ip": "fd00::5"}],
                                                              "ports": [{"port": 80}]}]});
        assert_eq!(row("", "Endpoints", &v6), json!(["v6", "[fd00::5]:80", "60m"]));
        assert_eq!(
            row("", "Endpoints", &json!({"metadata": meta("none")})),
            json!(["none", "<none>", "60m"])
        );
    }

    #[test]
    fn event_cells() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("web-1.17c9a3f2"),
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1",
                               "fieldPath": "spec.containers{web}"},
            "reason": "BackOff", "message": "Back-off restarting failed container web\n",
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(60), "count": 3, "type": "Warning"});
        assert_eq!(
            row("", "Event", &core),
            json!(["60s", "Warning", "BackOff", "pod/web-1", "spec.containers{web}", "kubelet, node-a",
                   "Back-off restarting failed container web", "10m", 3, "web-1.17c9a3f2"])
        );

        let scheduler = json!({"metadata": meta("web-1.17c9a3f1"), "type": "Normal", "reason": "Scheduled",
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "message": "Successfully assigned default/web-1 to node-a",
            "source": {}, "eventTime": "2024-05-01T11:59:58.123456Z",
            "reportingComponent": "default-scheduler", "reportingInstance": "default-scheduler-cp-1"});
        assert_eq!(
            row("", "Event", &scheduler),
            json!(["1s", "Normal", "Scheduled", "pod/web-1", "", "default-scheduler, default-scheduler-cp-1",
                   "Successfully assigned default/web-1 to node-a", "1s", 1, "web-1.17c9a3f1"])
        );

        let series = json!({"metadata": meta("probe.1"), "type": "Warning", "reason": "Unhealthy",
            "involvedObject": {"kind": "Pod", "name": "web-2"}, "message": "Readiness probe failed",
            "eventTime": ago(1800), "series": {"count": 12, "lastObservedTime": "2024-05-01T11:57:00.000000Z"},
            "reportingComponent": "kubelet"});
        assert_eq!(
            row("", "Event", &series),
            json!(["3m", "Warning", "Unhealthy", "pod/web-2", "", "kubelet", "Readiness probe failed", "30m", 12,
                   "probe.1"])
        );

        let cluster = json!({"metadata": meta("ns.1"), "type": "Normal", "reason": "Created",
            "involvedObject": {"kind": "Namespace"}, "message": "x", "count": 0});
        assert_eq!(
            row("", "Event", &cluster),
            json!(["<unknown>", "Normal", "Created", "namespace", "", "", "x", "<unknown>", 1, "ns.1"])
        );

        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": meta("node-a.17c9"),
            "eventTime": "2024-05-01T11:30:00.000000Z", "reportingController": "kubelet",
            "reportingInstance": "node-a", "action": "StatusChange", "reason": "NodeReady", "type": "Normal",
            "regarding": {"kind": "Node", "name": "node-a"}, "note": "Node node-a status is now: NodeReady"});
        assert_eq!(
            row("events.k8s.io", "Event", &v1),
            json!(["30m", "Normal", "NodeReady", "node/node-a", "", "kubelet, node-a",
                   "Node node-a status is now: NodeReady", "30m", 1, "node-a.17c9"])
        );
        let names: Vec<&str> = columns("", "Event").iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        let shown: Vec<&str> = columns("", "Event")
            .iter()
            .filter(|c| c.priority == 0)
            .map(|c| c.name)
            .collect();
        assert_eq!(shown, ["Last Seen", "Type", "Reason", "Object", "Message"]);
    }

    #[test]
    fn storage_cells() {
        let pv = json!({"metadata": {"name": "pv-1", "creationTimestamp": CREATED},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadOnlyMany", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
                     "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "data-pg-0"},
                     "volumeMode": "Filesystem", "hostPath": {"path": "/mnt/data"}},
            "status": {"phase": "Bound"}});
        assert_eq!(
            row("", "PersistentVolume", &pv),
            json!(["pv-1", "10Gi", "RWO,ROX", "Delete", "Bound", "default/data-pg-0", "standard", "<unset>", "",
                   "60m", "Filesystem"])
        );
        let mut released = pv.clone();
        released["metadata"]["deletionTimestamp"] = json!(ago(5));
        released["metadata"]["annotations"] = json!({"volume.beta.kubernetes.io/storage-class": "legacy"});
        released["spec"]["accessModes"] = json!(["ReadWriteOncePod"]);
        assert_eq!(
            row("", "PersistentVolume", &released),
            json!(["pv-1", "10Gi", "RWOP", "Delete", "Terminating", "default/data-pg-0", "legacy", "<unset>", "",
                   "60m", "Filesystem"])
        );

        let bound = json!({"metadata": meta("data-pg-0"), "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "5Gi"}}, "storageClassName": "standard", "volumeName": "pv-1",
            "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}}});
        assert_eq!(
            row("", "PersistentVolumeClaim", &bound),
            json!(["data-pg-0", "Bound", "pv-1", "10Gi", "RWO", "standard", "<unset>", "60m", "Filesystem"])
        );
        let pending = json!({"metadata": meta("scratch"), "spec": {"accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "1Gi"}}, "volumeAttributesClassName": "gold",
            "volumeMode": "Block"}, "status": {"phase": "Pending"}});
        assert_eq!(
            row("", "PersistentVolumeClaim", &pending),
            json!(["scratch", "Pending", "", "", "", "", "gold", "60m", "Block"])
        );

        let sc = json!({"metadata": {"name": "standard", "creationTimestamp": CREATED,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            row("storage.k8s.io", "StorageClass", &sc),
            json!(["standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", false, "60m"])
        );
        let fast = json!({"metadata": {"name": "fast", "creationTimestamp": CREATED},
            "provisioner": "ebs.csi.aws.com", "allowVolumeExpansion": true});
        assert_eq!(
            row("storage.k8s.io", "StorageClass", &fast),
            json!(["fast", "ebs.csi.aws.com", "Delete", "Immediate", true, "60m"])
        );

        let csi = json!({"metadata": {"name": "ebs.csi.aws.com", "creationTimestamp": CREATED},
            "spec": {"attachRequired": true, "podInfoOnMount": false, "volumeLifecycleModes": ["Persistent"]}});
        assert_eq!(
            row("storage.k8s.io", "CSIDriver", &csi),
            json!(["ebs.csi.aws.com", true, false, false, "<unset>", false, "Persistent", "60m"])
        );
    }

    #[test]
    fn resource_quota_cells() {
        let rq = json!({"metadata": meta("compute"), "spec": {"hard": {}},
            "status": {"hard": {"requests.cpu": "2", "requests.memory": "4Gi", "limits.cpu": "4",
                                "limits.memory": "8Gi", "pods": "10", "count/deployments.apps": "5"},
                       "used": {"requests.cpu": "500m", "requests.memory": "1Gi", "limits.cpu": "1",
                                "limits.memory": "2Gi", "pods": "3"}}});
        assert_eq!(
            row("", "ResourceQuota", &rq),
            json!(["compute",
                   "count/deployments.apps: 0/5, pods: 3/10, requests.cpu: 500m/2, requests.memory: 1Gi/4Gi",
                   "limits.cpu: 1/4, limits.memory: 2Gi/8Gi", "60m"])
        );
        let names: Vec<&str> = columns("", "ResourceQuota").iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Request", "Limit", "Age"]);
    }

    #[test]
    fn networking_cells() {
        let ing = json!({"metadata": meta("web"), "spec": {"ingressClassName": "nginx",
            "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}],
            "tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.49.2"}]}}});
        assert_eq!(
            row("networking.k8s.io", "Ingress", &ing),
            json!(["web", "nginx", "a.example.com,b.example.com", "192.168.49.2", "80, 443", "60m"])
        );
        let many = json!({"metadata": meta("many"), "spec": {"rules": [{"host": "a"}, {}, {"host": "c"},
                                                                     {"host": "d"}, {"host": "e"}]}});
        assert_eq!(
            row("networking.k8s.io", "Ingress", &many),
            json!(["many", "<none>", "a,c,d + 2 more...", "", "80", "60m"])
        );
        let catch_all = json!({"metadata": meta("default-backend"), "spec": {"defaultBackend": {}}});
        assert_eq!(
            row("networking.k8s.io", "Ingress", &catch_all),
            json!(["default-backend", "<none>", "*", "", "80", "60m"])
        );

        let class = json!({"metadata": {"name": "nginx", "creationTimestamp": CREATED},
            "spec": {"controller": "k8s.io/ingress-nginx", "parameters": {"apiGroup": "k8s.example.com",
                     "kind": "IngressParameters", "name": "external-lb"}}});
        assert_eq!(
            row("networking.k8s.io", "IngressClass", &class),
            json!(["nginx", "k8s.io/ingress-nginx", "IngressParameters.k8s.example.com/external-lb", "60m"])
        );

        let deny = json!({"metadata": meta("default-deny"), "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
        assert_eq!(
            row("networking.k8s.io", "NetworkPolicy", &deny),
            json!(["default-deny", "<none>", "60m"])
        );
        let db = json!({"metadata": meta("db"), "spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
        assert_eq!(
            row("networking.k8s.io", "NetworkPolicy", &db),
            json!(["db", "role=db", "60m"])
        );

        let slice = json!({"metadata": meta("web-abc12"), "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true}},
                          {"addresses": ["10.244.2.7"]}, {"addresses": ["10.244.3.1"]},
                          {"addresses": ["10.244.3.2"]}, {"addresses": ["10.244.3.3"]}]});
        assert_eq!(
            row("discovery.k8s.io", "EndpointSlice", &slice),
            json!(["web-abc12", "IPv4", "80", "10.244.1.5,10.244.2.7,10.244.3.1 + 2 more...", "60m"])
        );
        let empty = json!({"metadata": meta("empty"), "addressType": "IPv6",
                           "ports": [{"name": "named"}, {}]});
        assert_eq!(
            row("discovery.k8s.io", "EndpointSlice", &empty),
            json!(["empty", "IPv6", "named,*", "<unset>", "60m"])
        );
    }

    #[test]
    fn policy_scheduling_rbac_coordination_certificates() {
        let pdb = json!({"metadata": meta("web"), "spec": {"minAvailable": 2},
                         "status": {"disruptionsAllowed": 1, "currentHealthy": 3}});
        assert_eq!(
            row("policy", "PodDisruptionBudget", &pdb),
            json!(["web", "2", "N/A", 1, "60m"])
        );
        let pct = json!({"metadata": meta("api"), "spec": {"maxUnavailable": "25%"}, "status": {}});
        assert_eq!(
            row("policy", "PodDisruptionBudget", &pct),
            json!(["api", "N/A", "25%", 0, "60m"])
        );

        let pc = json!({"metadata": {"name": "system-cluster-critical", "creationTimestamp": CREATED},
                        "value": 2000000000, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            row("scheduling.k8s.io", "PriorityClass", &pc),
            json!(["system-cluster-critical", 2000000000, false, "60m", "PreemptLowerPriority"])
        );

        let rb = json!({"metadata": meta("dev-edit"), "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole", "name": "edit"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "name": "builder", "namespace": "ci"}, {"kind": "User", "name": "bob"}]});
        assert_eq!(
            row("rbac.authorization.k8s.io", "RoleBinding", &rb),
            json!(["dev-edit", "ClusterRole/edit", "60m", "alice, bob", "devs", "ci/builder"])
        );
        let crb = json!({"metadata": {"name": "cluster-admin", "creationTimestamp": CREATED},
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "name": "system:masters"}]});
        assert_eq!(
            row("rbac.authorization.k8s.io", "ClusterRoleBinding", &crb),
            json!(["cluster-admin", "ClusterRole/cluster-admin", "60m", "", "system:masters", ""])
        );

        let lease = json!({"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "cp-1_7c1e",
            "leaseDurationSeconds": 15}});
        assert_eq!(
            row("coordination.k8s.io", "Lease", &lease),
            json!(["kube-scheduler", "cp-1_7c1e", "60m"])
        );
        let free = json!({"metadata": meta("free"), "spec": {}});
        assert_eq!(row("coordination.k8s.io", "Lease", &free), json!(["free", "", "60m"]));

        let csr = json!({"metadata": {"name": "csr-8fk2p", "creationTimestamp": CREATED},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:node:node-a",
                     "expirationSeconds": 86400, "request": "LS0t", "usages": ["client auth"]},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0tLS1CRUdJTg=="}});
        assert_eq!(
            row("certificates.k8s.io", "CertificateSigningRequest", &csr),
            json!(["csr-8fk2p", "60m", "kubernetes.io/kube-apiserver-client-kubelet", "system:node:node-a", "24h",
                   "Approved,Issued"])
        );
        let pending = json!({"metadata": {"name": "csr-new"}, "spec": {"username": "alice"}});
        assert_eq!(
            row("certificates.k8s.io", "CertificateSigningRequest", &pending),
            json!(["csr-new", "<unknown>", "<none>", "alice", "<none>", "Pending"])
        );
    }

    #[test]
    fn kinds_without_a_printer_use_the_default_table() {
        for (group, kind) in [
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("", "LimitRange"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
            ("example.com", "Widget"),
        ] {
            assert!(!has_printer(group, kind), "{group}/{kind}");
            let cols = columns(group, kind);
            assert_eq!(
                cols.iter().map(|c| (c.name, c.type_)).collect::<Vec<_>>(),
                [("Name", "string"), ("Created At", "date")]
            );
            let obj = json!({"metadata": {"name": "admin", "creationTimestamp": "2024-04-30T08:15:27Z"}});
            assert_eq!(
                Value::Array(cells(group, kind, &obj, now())),
                json!(["admin", "2024-04-30T08:15:27Z"])
            );
        }
        let odd = json!({"metadata": {"name": "x", "creationTimestamp": "2024-04-30T10:15:27.5+02:00"}});
        assert_eq!(default_cells(&odd), vec![json!("x"), json!("2024-04-30T08:15:27Z")]);
        assert_eq!(
            default_cells(&json!({})),
            vec![json!(""), json!("0001-01-01T00:00:00Z")]
        );
    }

    #[test]
    fn every_printer_has_one_cell_per_column_even_for_empty_objects() {
        let kinds = [
            ("", "Pod"),
            ("", "PodTemplate"),
            ("", "ReplicationController"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "Node"),
            ("", "Event"),
            ("events.k8s.io", "Event"),
            ("", "Namespace"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "PersistentVolume"),
            ("", "PersistentVolumeClaim"),
            ("", "ConfigMap"),
            ("", "ResourceQuota"),
            ("", "ComponentStatus"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "DaemonSet"),
            ("apps", "StatefulSet"),
            ("apps", "ControllerRevision"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("coordination.k8s.io", "Lease"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("networking.k8s.io", "Ingress"),
            ("networking.k8s.io", "IngressClass"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("networking.k8s.io", "ServiceCIDR"),
            ("policy", "PodDisruptionBudget"),
            ("scheduling.k8s.io", "PriorityClass"),
            ("node.k8s.io", "RuntimeClass"),
            ("storage.k8s.io", "StorageClass"),
            ("storage.k8s.io", "VolumeAttachment"),
            ("storage.k8s.io", "CSINode"),
            ("storage.k8s.io", "CSIDriver"),
            ("storage.k8s.io", "CSIStorageCapacity"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("certificates.k8s.io", "CertificateSigningRequest"),
            ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
            ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
            ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
            ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
            ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
            ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
            ("resource.k8s.io", "DeviceClass"),
            ("resource.k8s.io", "ResourceClaim"),
            ("resource.k8s.io", "ResourceClaimTemplate"),
            ("resource.k8s.io", "ResourceSlice"),
        ];
        for (group, kind) in kinds {
            assert!(has_printer(group, kind), "{group}/{kind}");
            let cols = columns(group, kind);
            assert!(
                cols.iter().any(|c| c.format == "name"),
                "{group}/{kind} has a name column"
            );
            for obj in [json!({}), json!({"metadata": meta("x"), "spec": {}, "status": {}})] {
                assert_eq!(cells(group, kind, &obj, now()).len(), cols.len(), "{group}/{kind}");
            }
        }
    }

    #[test]
    fn flowcontrol_admission_and_dra_cells() {
        let fs = json!({"metadata": {"name": "system-leader-election", "creationTimestamp": CREATED},
            "spec": {"priorityLevelConfiguration": {"name": "leader-election"}, "matchingPrecedence": 100,
                     "distinguisherMethod": {"type": "ByUser"}},
            "status": {"conditions": [{"type": "Dangling", "status": "False"}]}});
        assert_eq!(
            row("flowcontrol.apiserver.k8s.io", "FlowSchema", &fs),
            json!(["system-leader-election", "leader-election", 100, "ByUser", "60m", "False"])
        );
        let plc = json!({"metadata": {"name": "workload-low", "creationTimestamp": CREATED},
            "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 100,
                     "limitResponse": {"type": "Queue", "queuing": {"queues": 128, "handSize": 6,
                                                                     "queueLengthLimit": 50}}}}});
        assert_eq!(
            row("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration", &plc),
            json!(["workload-low", "Limited", 100, 128, 6, 50, "60m"])
        );
        let exempt = json!({"metadata": {"name": "exempt", "creationTimestamp": CREATED},
                            "spec": {"type": "Exempt", "exempt": {}}});
        assert_eq!(
            row("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration", &exempt),
            json!(["exempt", "Exempt", "<none>", "<none>", "<none>", "<none>", "60m"])
        );
        let vwc = json!({"metadata": {"name": "policy", "creationTimestamp": CREATED},
                         "webhooks": [{"name": "a.example.com"}, {"name": "b.example.com"}]});
        assert_eq!(
            row("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", &vwc),
            json!(["policy", 2, "60m"])
        );
        let vap = json!({"metadata": {"name": "replicas", "creationTimestamp": CREATED}, "spec": {
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "validations": [{"expression": "object.spec.replicas <= 5"}]}});
        assert_eq!(
            row("admissionregistration.k8s.io", "ValidatingAdmissionPolicy", &vap),
            json!(["replicas", 1, "v1/ConfigMap", "60m"])
        );
        let binding = json!({"metadata": {"name": "replicas-binding", "creationTimestamp": CREATED},
            "spec": {"policyName": "replicas", "paramRef": {"name": "limits"}}});
        assert_eq!(
            row(
                "admissionregistration.k8s.io",
                "ValidatingAdmissionPolicyBinding",
                &binding
            ),
            json!(["replicas-binding", "replicas", "*/limits", "60m"])
        );
        let claim = json!({"metadata": meta("gpu-claim"), "status": {"allocation": {},
                           "reservedFor": [{"resource": "pods", "name": "trainer"}]}});
        assert_eq!(
            row("resource.k8s.io", "ResourceClaim", &claim),
            json!(["gpu-claim", "allocated,reserved", "60m"])
        );
        let mut gone = json!({"metadata": meta("old-claim"), "status": {}});
        gone["metadata"]["deletionTimestamp"] = json!(ago(3));
        assert_eq!(
            row("resource.k8s.io", "ResourceClaim", &gone),
            json!(["old-claim", "deleted", "60m"])
        );
    }

    // --- custom resources -------------------------------------------------------

    fn certificate() -> Value {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": meta("web-cert"),
            "spec": {"secretName": "web-cert-tls", "dnsNames": ["a.example.com", "b.example.com"],
                     "replicas": 3, "ratio": 1.5, "big": 1234567.5, "paused": false,
                     "issuerRef": {"kind": "ClusterIssuer", "name": "letsencrypt"},
                     "labels": {"example.com/tier": "gold"}},
            "status": {"notAfter": "2024-07-30T12:00:00Z", "renewedAt": "yesterday",
                       "conditions": [{"type": "Issuing", "status": "False"},
                                      {"type": "Ready", "status": "True", "observedGeneration": 2}]}})
    }

    #[test]
    fn custom_columns_follow_additional_printer_columns() {
        let apc = json!([
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            {"name": "Secret", "type": "string", "jsonPath": ".spec.secretName", "description": "Secret name"},
            {"name": "Issuer", "type": "string", "jsonPath": ".spec.issuerRef.name", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ]);
        let cols = custom_columns(&apc);
        let heads: Vec<(&str, &str, i32)> = cols
            .iter()
            .map(|c| (c.name.as_str(), c.type_.as_str(), c.priority))
            .collect();
        assert_eq!(
            heads,
            [
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Secret", "string", 0),
                ("Issuer", "string", 1),
                ("Age", "date", 0)
            ]
        );
        assert_eq!(cols[0].format, "name");
        assert_eq!(cols[2].description, "Secret name");
        assert_eq!(
            cols[1].description,
            "Custom resource definition column (in JSONPath format): .status.conditions[?(@.type==\"Ready\")].status"
        );
        let v = serde_json::to_value(&cols[3]).unwrap();
        assert_eq!(
            v,
            json!({"name": "Issuer", "type": "string", "format": "",
                   "description": "Custom resource definition column (in JSONPath format): .spec.issuerRef.name",
                   "priority": 1})
        );
        assert_eq!(
            Value::Array(custom_cells(&cols, &certificate(), now())),
            json!(["web-cert", "True", "web-cert-tls", "letsencrypt", "60m"])
        );
    }

    #[test]
    fn custom_columns_default_to_age() {
        for apc in [json!([]), Value::Null] {
            let cols = custom_columns(&apc);
            let heads: Vec<(&str, &str)> = cols.iter().map(|c| (c.name.as_str(), c.type_.as_str())).collect();
            assert_eq!(heads, [("Name", "string"), ("Age", "date")]);
            assert_eq!(cols[1].json_path.as_deref(), Some(".metadata.creationTimestamp"));
            assert_eq!(
                Value::Array(custom_cells(&cols, &certificate(), now())),
                json!(["web-cert", "60m"])
            );
        }
    }

    #[test]
    fn custom_cells_type_values_like_upstream() {
        let cases: &[(&str, &str, Value)] = &[
            ("integer", ".spec.replicas", json!(3)),
            ("integer", ".spec.ratio", json!(1)),
            ("integer", ".spec.secretName", Value::Null),
            ("number", ".spec.ratio", json!(1.5)),
            ("number", ".spec.replicas", json!(3.0)),
            ("boolean", ".spec.paused", json!(false)),
            ("boolean", ".spec.replicas", Value::Null),
            ("string", ".spec.replicas", json!("3")),
            ("string", ".spec.ratio", json!("1.5")),
            ("string", ".spec.big", json!("1.2345675e+06")),
            ("string", ".spec.paused", json!("false")),
            (
                "string",
                ".spec.dnsNames",
                json!("[\"a.example.com\",\"b.example.com\"]"),
            ),
            (
                "string",
                ".spec.issuerRef",
                json!("{\"kind\":\"ClusterIssuer\",\"name\":\"letsencrypt\"}"),
            ),
            ("string", ".spec.missing", Value::Null),
            ("string", ".spec.dnsNames[0]", json!("a.example.com")),
            ("string", ".spec.dnsNames[-1]", json!("b.example.com")),
            ("string", ".spec.dnsNames[5]", Value::Null),
            ("string", ".spec.dnsNames[*]", json!("a.example.com")),
            ("string", ".spec.dnsNames[1:]", json!("b.example.com")),
            ("string", ".spec.labels['example.com/tier']", json!("gold")),
            ("string", ".spec.labels.example\\.com/tier", json!("gold")),
            ("string", "$.spec['secretName']", json!("web-cert-tls")),
            (
                "string",
                ".status.conditions[?(@.type=='Issuing')].status",
                json!("False"),
            ),
            (
                "string",
                ".status.conditions[?(@.type != \"Issuing\")].type",
                json!("Ready"),
            ),
            (
                "integer",
                ".status.conditions[?(@.observedGeneration>1)].observedGeneration",
                json!(2),
            ),
            (
                "string",
                ".status.conditions[?(@.observedGeneration)].type",
                json!("Ready"),
            ),
            (
                "string",
                ".status.conditions[?(@.type==\"Absent\")].status",
                Value::Null,
            ),
            ("date", ".status.notAfter", json!("<invalid>")),
            ("date", ".metadata.creationTimestamp", json!("60m")),
            ("date", ".status.renewedAt", json!("<invalid>")),
            ("date", ".spec.replicas", Value::Null),
            ("object", ".spec.issuerRef", Value::Null),
            ("string", ".spec..secretName", Value::Null),
        ];
        for (type_, path, want) in cases {
            let apc = json!([{"name": "C", "type": type_, "jsonPath": path}]);
            let cols = custom_columns(&apc);
            assert_eq!(
                cols.len(),
                2,
                "{path}: the column is kept even when its path is unsupported"
            );
            let got = custom_cells(&cols, &certificate(), now());
            assert_eq!(got[1], *want, "{type_} {path}");
        }
    }

    #[test]
    fn custom_date_cells_age_valid_timestamps() {
        let obj = json!({"metadata": {"name": "x"}, "status": {"a": "2024-05-01T11:58:00Z", "b": "",
                                                              "c": "0001-01-01T00:00:00Z"}});
        let apc = json!([{"name": "A", "type": "date", "jsonPath": ".status.a"},
                         {"name": "B", "type": "date", "jsonPath": ".status.b"},
                         {"name": "C", "type": "date", "jsonPath": ".status.c"}]);
        let cols = custom_columns(&apc);
        assert_eq!(
            Value::Array(custom_cells(&cols, &obj, now())),
            json!(["x", "2m", "<unknown>", "<unknown>"])
        );
    }

    #[test]
    fn go_float_formatting() {
        let cases: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (100000.0, "100000"),
            (123456.5, "123456.5"),
            (1000000.0, "1e+06"),
            (1234567.5, "1.2345675e+06"),
            (1e21, "1e+21"),
            (0.1, "0.1"),
            (0.0, "0"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float_string(*f), *want, "{f}");
        }
    }

    #[test]
    fn label_selector_formatting() {
        assert_eq!(label_selector_string(None), Some(String::new()));
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(
            format_label_selector(Some(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))),
            "<error>"
        );
        assert_eq!(
            format_label_selector(Some(&json!({"matchExpressions": [
                {"key": "a", "operator": "Exists", "values": ["x"]}]}))),
            "<error>"
        );
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
    }
}
