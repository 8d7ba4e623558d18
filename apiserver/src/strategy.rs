//! Per-kind behaviour on writes, as upstream's registry strategies: what is
//! reset on create, what an update may change, defaults, and validation.

use serde_json::{Map, Value, json};

use apimachinery::quantity::Quantity;
use apimachinery::validation::{self as v, FieldError, NameRule};

use crate::object::{self, meta_mut};
use crate::registry::ResourceType;

/// Field selectors each kind supports besides metadata.name/namespace.
pub fn selectable_fields(rt: &ResourceType) -> &'static [&'static str] {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Namespace") => &["status.phase"],
        ("", "Secret") => &["type"],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        ("certificates.k8s.io", _) => &["spec.signerName"],
        _ => &[],
    }
}

fn name_rule(rt: &ResourceType) -> NameRule {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") | ("", "Service") => NameRule::Dns1123Label,
        // `<version>.<group>`, the core group's `v1.` included.
        ("rbac.authorization.k8s.io", _) | ("apiregistration.k8s.io", "APIService") => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Fills what the server owns on create.
pub fn prepare_create(rt: &ResourceType, obj: &mut Value) {
    let m = meta_mut(obj);
    m.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), Value::String(object::now()));
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    m.remove("resourceVersion");
    m.remove("selfLink");
    if has_generation(rt, obj) {
        meta_mut(obj).insert("generation".into(), json!(1));
    } else {
        meta_mut(obj).remove("generation");
    }
    if rt.has_subresource("status")
        && !matches!(
            rt.kind.as_str(),
            "Pod" | "Namespace" | "Node" | "PersistentVolume" | "PersistentVolumeClaim" | "CustomResourceDefinition"
        )
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(obj)});
        }
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        ("", "PersistentVolumeClaim") => obj["status"] = json!({"phase": "Pending"}),
        ("", "PersistentVolume") => obj["status"] = json!({"phase": "Pending"}),
        ("batch", "Job") => generate_job_selector(obj),
        _ => {}
    }
}

fn has_generation(rt: &ResourceType, obj: &Value) -> bool {
    rt.is_custom() || obj.get("spec").is_some() || matches!(rt.kind.as_str(), "Pod")
}

/// The parts of an object that count as "spec" for generation bumps.
fn spec_of(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Reconciles an update (of the main resource or of a subresource) with
/// the stored object: keeps what the request may not change.
pub fn prepare_update(rt: &ResourceType, new: &mut Value, old: &Value, subresource: &str) {
    if is_pod(rt) && matches!(subresource, "ephemeralcontainers" | "resize") {
        // Only that part of the spec changes; the rest is the stored pod.
        let mut merged = old.clone();
        if subresource == "ephemeralcontainers" {
            match new.pointer("/spec/ephemeralContainers").filter(|v| !v.is_null()) {
                Some(ecs) => merged["spec"]["ephemeralContainers"] = ecs.clone(),
                None => {
                    if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("ephemeralContainers");
                    }
                }
            }
        } else {
            copy_resize_fields(new, &mut merged);
        }
        let rv = object::resource_version(new).to_string();
        meta_mut(&mut merged).insert("resourceVersion".into(), Value::String(rv));
        if spec_of(&merged) != spec_of(old) {
            let g = object::meta(old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut merged).insert("generation".into(), json!(g + 1));
        }
        *new = merged;
        return;
    }
    if subresource == "status" {
        // Only status changes; the rest is the stored object.
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                if let Some(m) = merged.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        if is_pod(rt) {
            crate::status_strategy::sync_pod_ips(&mut merged);
        }
        let rv = object::resource_version(new).to_string();
        meta_mut(&mut merged).insert("resourceVersion".into(), Value::String(rv));
        *new = merged;
        return;
    }
    if rt.has_subresource("status") {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    let old_meta = object::meta(old).cloned().unwrap_or_default();
    let m = meta_mut(new);
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(k) {
            Some(v) => m.insert(k.into(), v.clone()),
            None => m.remove(k),
        };
    }
    if has_generation(rt, old) && spec_of(new) != spec_of(old) {
        let g = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        meta_mut(new).insert("generation".into(), json!(g + 1));
    }
}

fn is_pod(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.kind == "Pod"
}

/// A sidecar: an init container that restarts (`restartPolicy: Always`).
fn is_restartable_init_container(c: &Value) -> bool {
    c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
}

/// `pods/resize`: each container's (and sidecar's) `resources` and
/// `resizePolicy` from `new`, matched by name (upstream's
/// `dropNonResizeUpdates`).
fn copy_resize_fields(new: &Value, merged: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(new_list) = new.pointer(&format!("/spec/{list}")).and_then(Value::as_array) else {
            continue;
        };
        let Some(old_list) = merged
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for nc in new_list {
            let Some(oc) = old_list.iter_mut().find(|oc| oc.get("name") == nc.get("name")) else {
                continue;
            };
            if list == "initContainers" && !is_restartable_init_container(oc) {
                continue;
            }
            let Some(oc) = oc.as_object_mut() else { continue };
            for field in ["resources", "resizePolicy"] {
                match nc.get(field).filter(|v| !v.is_null()) {
                    Some(v) => oc.insert(field.into(), v.clone()),
                    None => oc.remove(field),
                };
            }
        }
    }
}

/// Applies upstream's defaults for the kind.
pub fn default(rt: &ResourceType, obj: &mut Value) {
    if rt.group.is_empty() && rt.kind == "Namespace" {
        // Every namespace carries its name as a label, so that selectors
        // (network policies, admission) can pick namespaces by name.
        let name = object::name(obj).to_string();
        let meta = meta_mut(obj);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = json!(name);
        // SetDefaults_NamespaceStatus.
        if obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            if !obj.get("status").is_some_and(Value::is_object) {
                obj["status"] = json!({});
            }
            obj["status"]["phase"] = json!("Active");
        }
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
                default_requests_to_limits(spec);
            }
        }
        ("", "PodTemplate") => default_template(obj.get_mut("template")),
        ("", "ReplicationController") => {
            set_default(obj, "/spec/replicas", json!(1));
            default_template(obj.pointer_mut("/spec/template"));
        }
        ("apps", "Deployment") => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/strategy", json!({}));
            set_default(obj, "/spec/strategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(obj, "/spec/strategy/rollingUpdate", json!({}));
                set_default(obj, "/spec/strategy/rollingUpdate/maxUnavailable", json!("25%"));
                set_default(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
            }
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/progressDeadlineSeconds", json!(600));
            default_template(obj.pointer_mut("/spec/template"));
        }
        ("apps", "ReplicaSet") => {
            set_default(obj, "/spec/replicas", json!(1));
            default_template(obj.pointer_mut("/spec/template"));
        }
        ("apps", "StatefulSet") => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
            // Field by field: updateStrategy is a struct upstream always
            // writes, so it is there (maybe empty) before defaulting.
            set_default(obj, "/spec/updateStrategy", json!({}));
            if unset(obj.pointer("/spec/updateStrategy/type")) {
                set(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
                set_default(obj, "/spec/updateStrategy/rollingUpdate", json!({}));
            }
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(obj, "/spec/updateStrategy/rollingUpdate/partition", json!(0));
            }
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(
                obj,
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            default_template(obj.pointer_mut("/spec/template"));
        }
        ("apps", "DaemonSet") => {
            set_default(obj, "/spec/updateStrategy", json!({}));
            if unset(obj.pointer("/spec/updateStrategy/type")) {
                set(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
            }
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(obj, "/spec/updateStrategy/rollingUpdate", json!({}));
                set_default(obj, "/spec/updateStrategy/rollingUpdate/maxUnavailable", json!(1));
                set_default(obj, "/spec/updateStrategy/rollingUpdate/maxSurge", json!(0));
            }
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            default_template(obj.pointer_mut("/spec/template"));
        }
        ("batch", "Job") => {
            default_job_spec(obj.get_mut("spec"));
        }
        ("batch", "CronJob") => {
            set_default(obj, "/spec/concurrencyPolicy", json!("Allow"));
            set_default(obj, "/spec/suspend", json!(false));
            set_default(obj, "/spec/successfulJobsHistoryLimit", json!(3));
            set_default(obj, "/spec/failedJobsHistoryLimit", json!(1));
            default_job_spec(obj.pointer_mut("/spec/jobTemplate/spec"));
        }
        ("", "Service") => default_service(obj),
        ("", "Secret") => {
            set_default(obj, "/type", json!("Opaque"));
            merge_string_data(obj);
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set_default(obj, "/preemptionPolicy", json!("PreemptLowerPriority"));
        }
        ("", "Namespace") => {}
        _ => {}
    }
}

/// Upstream's job strategy: unless `spec.manualSelector`, the job selects
/// its pods by its uid, and its template carries the matching labels.
fn generate_job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector") == Some(&Value::Bool(true)) {
        return;
    }
    let uid = object::uid(obj).to_string();
    let name = object::name(obj).to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    let labels = &mut template["metadata"]["labels"];
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[k] = json!(v);
    }
}

/// Whether a string field holds Go's zero value: absent, null or "".
fn unset(v: Option<&Value>) -> bool {
    v.is_none_or(|v| v.is_null() || v.as_str() == Some(""))
}

/// Sets `pointer` when its parent exists.
fn set(obj: &mut Value, pointer: &str, value: Value) {
    let (parent, leaf) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    if let Some(m) = obj.pointer_mut(parent).and_then(Value::as_object_mut) {
        m.insert(leaf.to_string(), value);
    }
}

/// Sets `pointer` unless it holds a value (null counts as unset).
fn set_default(obj: &mut Value, pointer: &str, value: Value) {
    if obj.pointer(pointer).is_some_and(|v| !v.is_null()) {
        return;
    }
    set(obj, pointer, value);
}

fn default_template(t: Option<&mut Value>) {
    if let Some(spec) = t.and_then(|t| t.get_mut("spec")) {
        default_pod_spec(spec);
    }
}

fn default_job_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec else { return };
    let completions = spec.get("completions").cloned();
    let parallelism = spec.get("parallelism").cloned();
    if completions.is_none() && parallelism.is_none() {
        set_default(spec, "/completions", json!(1));
        set_default(spec, "/parallelism", json!(1));
    } else {
        set_default(spec, "/parallelism", json!(1));
    }
    set_default(spec, "/backoffLimit", json!(6));
    set_default(spec, "/completionMode", json!("NonIndexed"));
    set_default(spec, "/suspend", json!(false));
    set_default(spec, "/manualSelector", Value::Null);
    set_default(spec, "/podReplacementPolicy", json!("TerminatingOrFailed"));
    if let Some(m) = spec.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    default_template(spec.get_mut("template"));
}

fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "/restartPolicy", json!("Always"));
    set_default(spec, "/terminationGracePeriodSeconds", json!(30));
    set_default(spec, "/dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "/securityContext", json!({}));
    set_default(spec, "/schedulerName", json!("default-scheduler"));
    set_default(spec, "/enableServiceLinks", json!(true));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                default_container(c);
            }
        }
    }
}

/// Upstream's `SetDefaults_Pod`: a container's limits stand for the
/// requests it leaves out.
fn default_requests_to_limits(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let Some(r) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                continue;
            };
            let requests = r.entry("requests").or_insert_with(|| json!({}));
            if let Some(req) = requests.as_object_mut() {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
}

fn default_container(c: &mut Value) {
    set_default(c, "/terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "/terminationMessagePolicy", json!("File"));
    set_default(c, "/resources", json!({}));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = if last.contains('@') {
        Some("digest")
    } else {
        last.split_once(':').map(|(_, t)| t)
    };
    let policy = match tag {
        None | Some("latest") => "Always",
        _ => "IfNotPresent",
    };
    set_default(c, "/imagePullPolicy", json!(policy));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "/protocol", json!("TCP"));
        }
    }
}

fn default_service(obj: &mut Value) {
    set_default(obj, "/spec/type", json!("ClusterIP"));
    set_default(obj, "/spec/sessionAffinity", json!("None"));
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        set_default(obj, "/spec/internalTrafficPolicy", json!("Cluster"));
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        set_default(obj, "/spec/externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer"
        && let Some(ingress) = obj
            .pointer_mut("/status/loadBalancer/ingress")
            .and_then(Value::as_array_mut)
    {
        // A load balancer's IP is a VIP unless said otherwise.
        for ing in ingress {
            if ing.get("ip").and_then(Value::as_str).is_some_and(|ip| !ip.is_empty()) {
                set_default(ing, "/ipMode", json!("VIP"));
            }
        }
    }
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "/protocol", json!("TCP"));
            // Unset is 0 or "" (an IntOrString is always written), as upstream.
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                _ => false,
            };
            if unset && let Some(port) = p.get("port").cloned() {
                p["targetPort"] = port;
            }
        }
    }
}

/// `stringData` is write-only: merged into `data` (base64) and dropped.
fn merge_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let Some(sd) = sd.as_object() else { return };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = Value::Object(Map::new());
    }
    if let Some(data) = obj.get_mut("data").and_then(Value::as_object_mut) {
        for (k, v) in sd {
            if let Some(s) = v.as_str() {
                data.insert(
                    k.clone(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
}

fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Upstream's `ValidateObjectMeta` (and, for updates, the immutable name
/// and namespace of `ValidateObjectMetaUpdate`): every write's metadata,
/// main resource or subresource.
pub fn validate_meta(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let empty = Value::Object(Map::new());
    let meta = obj.get("metadata").unwrap_or(&empty);
    let mut errs = v::validate_object_meta(meta, rt.namespaced, name_rule(rt));
    if let Some(old) = old {
        for (field, label) in [("name", "metadata.name"), ("namespace", "metadata.namespace")] {
            if object::meta_str(obj, field) != object::meta_str(old, field) {
                errs.push(FieldError::invalid(
                    label,
                    Value::String(object::meta_str(obj, field).to_string()),
                    "field is immutable",
                ));
            }
        }
    }
    errs
}

/// Validates an object about to be written (`old` for updates).
pub fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_meta(rt, obj, old);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = obj.get("spec") {
                validate_pod_spec(spec, "spec", &mut errs);
            } else {
                errs.push(FieldError::required("spec.containers", ""));
            }
            if let (Some(old), Some(spec)) = (old, obj.get("spec")) {
                let mut a = spec.clone();
                let mut b = old.get("spec").cloned().unwrap_or(Value::Null);
                // Mutable pod spec fields upstream.
                for s in [&mut a, &mut b] {
                    if let Some(m) = s.as_object_mut() {
                        m.remove("activeDeadlineSeconds");
                        m.remove("tolerations");
                        m.remove("schedulingGates");
                    }
                    for list in ["containers", "initContainers"] {
                        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                            for c in cs {
                                if let Some(m) = c.as_object_mut() {
                                    m.remove("image");
                                }
                            }
                        }
                    }
                }
                if a != b {
                    errs.push(FieldError::forbidden(
                        "spec",
                        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                    ));
                }
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            validate_workload(obj, old, &mut errs);
        }
        ("", "ReplicationController") => {
            if let Some(t) = obj.pointer("/spec/template/spec") {
                validate_pod_spec(t, "spec.template.spec", &mut errs);
            }
        }
        ("batch", "Job") => match obj.pointer("/spec/template/spec") {
            Some(t) => {
                validate_pod_spec(t, "spec.template.spec", &mut errs);
                let rp = t.get("restartPolicy").and_then(Value::as_str).unwrap_or("");
                if !matches!(rp, "OnFailure" | "Never") {
                    errs.push(FieldError::not_supported(
                        "spec.template.spec.restartPolicy",
                        Value::String(rp.into()),
                        &["OnFailure", "Never"],
                    ));
                }
            }
            None => errs.push(FieldError::required("spec.template.spec.containers", "")),
        },
        ("", "Service") => validate_service(obj, &mut errs),
        ("scheduling.k8s.io", "PriorityClass") => errs.extend(crate::admission::priority::validate_class(obj)),
        ("", "ConfigMap") => {
            for key in ["data", "binaryData"] {
                if let Some(m) = obj.get(key).and_then(Value::as_object) {
                    for k in m.keys() {
                        validate_config_key(k, key, &mut errs);
                    }
                }
            }
        }
        ("", "Secret") => {
            if let Some(m) = obj.get("data").and_then(Value::as_object) {
                for k in m.keys() {
                    validate_config_key(k, "data", &mut errs);
                }
            }
            if let Some(old) = old
                && old.get("immutable") == Some(&Value::Bool(true))
                && (obj.get("data") != old.get("data"))
            {
                errs.push(FieldError::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        _ => {}
    }
    errs
}

fn validate_config_key(k: &str, path: &str, errs: &mut Vec<FieldError>) {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && k != "."
        && k != ".."
        && !k.starts_with("..");
    if !ok {
        errs.push(FieldError::invalid(
            format!("{path}[{k}]"),
            Value::String(k.into()),
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ));
    }
}

fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(_) => {}
    }
    let mut names = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .map(|a| a.iter().enumerate().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let p = format!("{path}.{list}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            } else {
                for msg in v::is_dns1123_label(name) {
                    errs.push(FieldError::invalid(
                        format!("{p}.name"),
                        Value::String(name.into()),
                        &msg,
                    ));
                }
                if !names.insert(name.to_string()) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), Value::String(name.into())));
                }
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                errs.push(FieldError::required(format!("{p}.image"), ""));
            }
            validate_resource_requirements(c, &p, errs);
            for (j, port) in c
                .get("ports")
                .and_then(Value::as_array)
                .map(|a| a.iter().enumerate().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                let pp = format!("{p}.ports[{j}]");
                match port.get("containerPort").and_then(Value::as_i64) {
                    Some(n) if (1..=65535).contains(&n) => {}
                    Some(n) => errs.push(FieldError::invalid(
                        format!("{pp}.containerPort"),
                        json!(n),
                        "must be between 1 and 65535, inclusive",
                    )),
                    None => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
                }
                if let Some(proto) = port.get("protocol").and_then(Value::as_str)
                    && !matches!(proto, "TCP" | "UDP" | "SCTP")
                {
                    errs.push(FieldError::not_supported(
                        format!("{pp}.protocol"),
                        Value::String(proto.into()),
                        &["SCTP", "TCP", "UDP"],
                    ));
                }
            }
        }
    }
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(rp, "Always" | "OnFailure" | "Never")
    {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            Value::String(rp.into()),
            &["Always", "OnFailure", "Never"],
        ));
    }
    validate_ephemeral_containers(spec, path, names, errs);
}

/// Upstream's `ValidateContainerResourceRequirements`, the part resizes
/// reach: a request may not exceed its limit.
fn validate_resource_requirements(c: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let (Some(requests), Some(limits)) = (
        c.pointer("/resources/requests").and_then(Value::as_object),
        c.pointer("/resources/limits").and_then(Value::as_object),
    ) else {
        return;
    };
    for (name, request) in requests {
        let (Some(r), Some(l)) = (request.as_str(), limits.get(name).and_then(Value::as_str)) else {
            continue;
        };
        if let (Ok(rq), Ok(lq)) = (Quantity::parse(r), Quantity::parse(l))
            && rq.cmp_value(&lq) == std::cmp::Ordering::Greater
        {
            errs.push(FieldError::invalid(
                format!("{path}.resources.requests"),
                Value::String(r.into()),
                format!("must be less than or equal to {name} limit of {l}"),
            ));
        }
    }
}

/// The container fields an ephemeral container may not set (upstream's
/// `allowedEphemeralContainerFields`), in the Container struct's order.
const EPHEMERAL_FORBIDDEN_FIELDS: &[&str] = &[
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

/// A field counts as set unless absent, null or an empty object or list
/// (Go's zero value after decoding).
fn is_set(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) => m.values().any(|v| !v.is_null()),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// Upstream's `validateEphemeralContainers`: names unique across every
/// container, a target among the pod's other containers, none of the
/// fields that serve the workload (ports, probes, lifecycle, resources),
/// no subPath mounts.
fn validate_ephemeral_containers(
    spec: &Value,
    path: &str,
    mut names: std::collections::HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let others = names.clone();
    let Some(ecs) = spec.get("ephemeralContainers").and_then(Value::as_array) else {
        return;
    };
    for (i, c) in ecs.iter().enumerate() {
        let p = format!("{path}.ephemeralContainers[{i}]");
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            for msg in v::is_dns1123_label(name) {
                errs.push(FieldError::invalid(
                    format!("{p}.name"),
                    Value::String(name.into()),
                    &msg,
                ));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{p}.name"), Value::String(name.into())));
            }
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(|s| s.trim().is_empty())
        {
            errs.push(FieldError::required(format!("{p}.image"), ""));
        }
        if let Some(target) = c.get("targetContainerName").and_then(Value::as_str)
            && !target.is_empty()
            && !others.contains(target)
        {
            errs.push(FieldError::not_found(
                format!("{p}.targetContainerName"),
                Value::String(target.into()),
            ));
        }
        for field in EPHEMERAL_FORBIDDEN_FIELDS {
            if is_set(c.get(*field)) {
                errs.push(FieldError::forbidden(
                    format!("{p}.{field}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, m) in c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .map(|a| a.iter().enumerate().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            for field in ["subPath", "subPathExpr"] {
                if is_set(m.get(field)) {
                    errs.push(FieldError::forbidden(
                        format!("{p}.volumeMounts[{j}].{field}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
}

/// Validation of a write to a pod subresource that changes part of the
/// spec (`ephemeralcontainers`, `resize`: upstream's
/// `ValidatePodEphemeralContainersUpdate` and `ValidatePodResize`);
/// `None` for the others, which are validated as a whole object.
pub fn validate_subresource(rt: &ResourceType, sub: &str, new: &Value, old: &Value) -> Option<Vec<FieldError>> {
    if !is_pod(rt) {
        return None;
    }
    let validate = match sub {
        "ephemeralcontainers" => validate_ephemeral_containers_update,
        "resize" => validate_resize,
        _ => return None,
    };
    let empty = Value::Object(Map::new());
    let mut errs = v::validate_object_meta(new.get("metadata").unwrap_or(&empty), rt.namespaced, name_rule(rt));
    match new.get("spec") {
        Some(spec) => validate_pod_spec(spec, "spec", &mut errs),
        None => errs.push(FieldError::required("spec.containers", "")),
    }
    Some(validate(new, old, errs))
}

fn is_static_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
}

fn validate_ephemeral_containers_update(new: &Value, old: &Value, mut errs: Vec<FieldError>) -> Vec<FieldError> {
    if is_static_pod(old) {
        return vec![FieldError::forbidden(
            "",
            "static pods do not support ephemeral containers",
        )];
    }
    let list = |p: &Value| {
        p.pointer("/spec/ephemeralContainers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let new_list = list(new);
    for oc in list(old) {
        let name = oc.get("name").and_then(Value::as_str).unwrap_or("");
        match new_list.iter().find(|nc| nc.get("name") == oc.get("name")) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(nc) if *nc != oc => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be changed\n"),
            )),
            Some(_) => {}
        }
    }
    errs
}

/// Resource lists compare by quantity; a missing list is an empty one.
fn same_resource_list(a: Option<&Value>, b: Option<&Value>) -> bool {
    let map = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let (a, b) = (map(a), map(b));
    a.len() == b.len()
        && a.iter().all(|(k, av)| {
            b.get(k).is_some_and(
                |bv| match (av.as_str().map(Quantity::parse), bv.as_str().map(Quantity::parse)) {
                    (Some(Ok(x)), Some(Ok(y))) => x.cmp_value(&y) == std::cmp::Ordering::Equal,
                    _ => av == bv,
                },
            )
        })
}

fn resources_removed(new: Option<&Value>, old: Option<&Value>) -> bool {
    let keys = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let (new, old) = (keys(new), keys(old));
    old.keys().any(|k| !new.contains_key(k))
}

/// Whether the pod's node reports resources for its running containers
/// (upstream's version-skew guard: a kubelet that does not can not resize).
fn resize_supported(pod: &Value) -> bool {
    for s in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if s.pointer("/state/running").is_some_and(|r| !r.is_null()) {
            return s.get("resources").is_some_and(|r| !r.is_null());
        }
    }
    true
}

/// `validateContainerResize`: requests and limits may not be removed, and
/// a memory limit may not shrink (nor appear) unless memory's resize
/// policy restarts the container.
fn validate_container_resize(nc: &Value, oc: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let list = |c: &Value, k: &str| c.pointer(&format!("/resources/{k}")).cloned();
    if resources_removed(list(nc, "requests").as_ref(), list(oc, "requests").as_ref()) {
        errs.push(FieldError::forbidden(
            format!("{path}.requests"),
            "resource requests cannot be removed",
        ));
    }
    if resources_removed(list(nc, "limits").as_ref(), list(oc, "limits").as_ref()) {
        errs.push(FieldError::forbidden(
            format!("{path}.limits"),
            "resource limits cannot be removed",
        ));
    }
    let memory_policy = nc
        .get("resizePolicy")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("resourceName").and_then(Value::as_str) == Some("memory"))
        .and_then(|p| p.get("restartPolicy").and_then(Value::as_str))
        .unwrap_or("");
    if matches!(memory_policy, "" | "NotRequired") {
        let limit = |c: &Value| {
            c.pointer("/resources/limits/memory")
                .and_then(Value::as_str)
                .and_then(|q| Quantity::parse(q).ok())
        };
        let why = match (limit(nc), limit(oc)) {
            (Some(n), Some(o)) if n.cmp_value(&o) == std::cmp::Ordering::Less => Some("decreased"),
            (Some(_), None) => Some("added"),
            _ => None,
        };
        if let Some(why) = why {
            errs.push(FieldError::forbidden(
                format!("{path}.limits[memory]"),
                format!("memory limits cannot be {why} unless resizePolicy is RestartContainer"),
            ));
        }
    }
}

/// A container with its CPU and memory requests and limits (and resize
/// policy) put back to `old`'s: what must equal `old` for a resize to be
/// allowed.
fn without_resize_changes(nc: &Value, oc: &Value) -> Value {
    let mut c = nc.clone();
    let Some(m) = c.as_object_mut() else { return c };
    let mut resources = Map::new();
    for k in ["limits", "requests"] {
        let Some(old_list) = oc.pointer(&format!("/resources/{k}")).and_then(Value::as_object) else {
            continue;
        };
        let mut list = nc
            .pointer(&format!("/resources/{k}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        list.remove("cpu");
        list.remove("memory");
        for r in ["cpu", "memory"] {
            if let Some(q) = old_list.get(r) {
                list.insert(r.into(), q.clone());
            }
        }
        resources.insert(k.into(), Value::Object(list));
    }
    m.insert("resources".into(), Value::Object(resources));
    match oc.get("resizePolicy") {
        Some(p) => m.insert("resizePolicy".into(), p.clone()),
        None => m.remove("resizePolicy"),
    };
    c
}

/// Containers compare with their resource lists by quantity.
fn same_container(a: &Value, b: &Value) -> bool {
    let strip = |c: &Value| {
        let mut c = c.clone();
        if let Some(m) = c.as_object_mut() {
            m.remove("resources");
        }
        c
    };
    strip(a) == strip(b)
        && ["limits", "requests"].iter().all(|k| {
            let p = format!("/resources/{k}");
            same_resource_list(a.pointer(&p), b.pointer(&p))
        })
}

fn validate_resize(new: &Value, old: &Value, mut errs: Vec<FieldError>) -> Vec<FieldError> {
    let pod_level = |p: &Value| {
        ["requests", "limits"]
            .iter()
            .any(|k| is_set(p.pointer(&format!("/spec/resources/{k}"))))
    };
    if pod_level(old) || pod_level(new) {
        return vec![FieldError::forbidden(
            "",
            "pods with pod-level resources cannot be resized",
        )];
    }
    if is_static_pod(old) {
        return vec![FieldError::forbidden("", "static pods cannot be resized")];
    }
    if old.pointer("/spec/os/name").and_then(Value::as_str) == Some("windows") {
        return vec![FieldError::forbidden("", "windows pods cannot be resized")];
    }
    let old_qos = old
        .pointer("/status/qosClass")
        .and_then(Value::as_str)
        .filter(|q| !q.is_empty())
        .unwrap_or_else(|| qos_class(old));
    if old_qos != qos_class(new) {
        let stored = new
            .pointer("/status/qosClass")
            .cloned()
            .unwrap_or(Value::String(String::new()));
        errs.push(FieldError::invalid(
            "spec",
            stored,
            "Pod QOS Class may not change as a result of resizing",
        ));
    }
    if !resize_supported(old) {
        errs.push(FieldError::forbidden(
            "spec",
            "Pod running on node without support for resize",
        ));
    }
    let list = |p: &Value, k: &str| {
        p.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (old_init, new_init) = (list(old, "initContainers"), list(new, "initContainers"));
    let (old_main, new_main) = (list(old, "containers"), list(new, "containers"));
    for (ix, oc) in old_init.iter().enumerate() {
        if let Some(nc) = new_init.get(ix)
            && is_restartable_init_container(oc)
        {
            validate_container_resize(nc, oc, &format!("spec.initContainers[{ix}].resources"), &mut errs);
        }
    }
    for (ix, oc) in old_main.iter().enumerate() {
        if let Some(nc) = new_main.get(ix) {
            validate_container_resize(nc, oc, &format!("spec.containers[{ix}].resources"), &mut errs);
        }
    }
    let mut only_cpu_memory = true;
    for (oc, nc) in old_main.iter().zip(&new_main) {
        only_cpu_memory &= same_container(&without_resize_changes(nc, oc), oc);
    }
    if !only_cpu_memory {
        errs.push(FieldError::forbidden(
            "spec",
            "only cpu and memory resources are mutable",
        ));
    }
    for (oc, nc) in old_init.iter().zip(&new_init) {
        if is_restartable_init_container(oc) {
            if !same_container(&without_resize_changes(nc, oc), oc) {
                errs.push(FieldError::forbidden(
                    "spec",
                    "only cpu and memory resources for sidecar containers are mutable",
                ));
            }
        } else if !same_container(nc, oc) {
            errs.push(FieldError::forbidden(
                "spec",
                "resources for non-sidecar init containers are immutable",
            ));
        }
    }
    if errs.is_empty() && (old_main.len() != new_main.len() || old_init.len() != new_init.len()) {
        errs.push(FieldError::forbidden(
            "spec",
            "only cpu and memory resources are mutable",
        ));
    }
    errs
}

fn validate_workload(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let selector = obj.pointer("/spec/selector");
    match selector {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => match apimachinery::labels::Selector::from_label_selector(sel) {
            Err(e) => errs.push(FieldError::invalid("spec.selector", sel.clone(), e.to_string())),
            Ok(s) => {
                if s.is_empty() {
                    errs.push(FieldError::invalid(
                        "spec.selector",
                        sel.clone(),
                        "empty selector is invalid for deployment",
                    ));
                }
                let labels = obj.pointer("/spec/template/metadata/labels");
                if !s.matches_value(labels) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        labels.cloned().unwrap_or(Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    if let Some(old) = old
        && old.pointer("/spec/selector") != selector
    {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector.cloned().unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
        && r < 0
    {
        errs.push(FieldError::invalid(
            "spec.replicas",
            json!(r),
            "must be greater than or equal to 0",
        ));
    }
    match obj.pointer("/spec/template/spec") {
        Some(t) => validate_pod_spec(t, "spec.template.spec", errs),
        None => errs.push(FieldError::required("spec.template.spec.containers", "")),
    }
}

fn validate_service(obj: &Value, errs: &mut Vec<FieldError>) {
    let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        errs.push(FieldError::not_supported(
            "spec.type",
            Value::String(ty.into()),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    if ty != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let multi = ports.is_some_and(|p| p.len() > 1);
    let mut seen = std::collections::HashSet::new();
    for (i, p) in ports
        .map(|p| p.iter().enumerate().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let pp = format!("spec.ports[{i}]");
        match p.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {
                let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                if !seen.insert((n, proto.to_string())) {
                    errs.push(FieldError::duplicate(&pp, json!({"port": n, "protocol": proto})));
                }
            }
            Some(n) => errs.push(FieldError::invalid(
                format!("{pp}.port"),
                json!(n),
                "must be between 1 and 65535, inclusive",
            )),
            None => errs.push(FieldError::required(format!("{pp}.port"), "")),
        }
        if multi && p.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("{pp}.name"), ""));
        }
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64)
            && np != 0
            && !matches!(ty, "NodePort" | "LoadBalancer")
        {
            errs.push(FieldError::forbidden(
                format!("{pp}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> std::sync::Arc<ResourceType> {
        crate::registry::Registry::new().lookup("", "v1", "pods").expect("pods")
    }

    fn pod(resources: Value, policy: Option<&str>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]}});
        if let Some(policy) = policy {
            p["spec"]["containers"][0]["resizePolicy"] = json!([{"resourceName": "memory", "restartPolicy": policy}]);
        }
        let qos = qos_class(&p);
        p["status"] = json!({"qosClass": qos});
        p
    }

    /// The errors as `field: detail` lines.
    fn resize(old: &Value, new: &Value) -> Vec<String> {
        let mut merged = new.clone();
        prepare_update(&pods(), &mut merged, old, "resize");
        validate_subresource(&pods(), "resize", &merged, old)
            .expect("validated")
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn resizes_keep_qos_and_limits_and_touch_only_cpu_and_memory() {
        let burstable =
            json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}});
        let guaranteed =
            json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}});
        for (why, old, new, want) in [
            (
                "cpu up within the class",
                pod(burstable.clone(), None),
                pod(
                    json!({"requests": {"cpu": "150m", "memory": "64Mi"}, "limits": {"cpu": "300m", "memory": "128Mi"}}),
                    None,
                ),
                vec![],
            ),
            (
                "the same quantity spelt differently is no change",
                pod(burstable.clone(), None),
                pod(
                    json!({"requests": {"cpu": "0.1", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}),
                    None,
                ),
                vec![],
            ),
            (
                "guaranteed to burstable",
                pod(guaranteed.clone(), None),
                pod(
                    json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}),
                    None,
                ),
                vec!["spec: Pod QOS Class may not change as a result of resizing"],
            ),
            (
                "a limit removed",
                pod(burstable.clone(), None),
                pod(
                    json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}),
                    None,
                ),
                vec!["spec.containers[0].resources.limits: resource limits cannot be removed"],
            ),
            (
                "memory limit down without a restart policy",
                pod(burstable.clone(), None),
                pod(
                    json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "100Mi"}}),
                    None,
                ),
                vec![
                    "spec.containers[0].resources.limits[memory]: memory limits cannot be decreased unless resizePolicy is RestartContainer",
                ],
            ),
            (
                "memory limit down restarting the container",
                pod(burstable.clone(), None),
                pod(
                    json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "100Mi"}}),
                    Some("RestartContainer"),
                ),
                vec![],
            ),
            (
                "memory limit added",
                pod(json!({"requests": {"cpu": "100m"}}), None),
                pod(json!({"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}}), None),
                vec![
                    "spec.containers[0].resources.limits[memory]: memory limits cannot be added unless resizePolicy is RestartContainer",
                ],
            ),
            (
                "another resource",
                pod(json!({"requests": {"cpu": "100m", "ephemeral-storage": "1Gi"}}), None),
                pod(json!({"requests": {"cpu": "100m", "ephemeral-storage": "2Gi"}}), None),
                vec!["spec: only cpu and memory resources are mutable"],
            ),
            (
                "a request over its limit",
                pod(burstable.clone(), None),
                pod(
                    json!({"requests": {"cpu": "300m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}),
                    None,
                ),
                vec!["spec.containers[0].resources.requests: must be less than or equal to cpu limit of 200m"],
            ),
        ] {
            assert_eq!(resize(&old, &new), want, "{why}");
        }
    }

    #[test]
    fn a_resize_changes_nothing_else_and_running_containers_need_reported_resources() {
        let old = pod(json!({"requests": {"cpu": "100m"}}), None);
        let mut new = pod(json!({"requests": {"cpu": "200m"}}), None);
        new["spec"]["containers"][0]["image"] = json!("alpine");
        new["spec"]["containers"][0]["resizePolicy"] = json!([{"resourceName": "cpu", "restartPolicy": "NotRequired"}]);
        let mut merged = new.clone();
        prepare_update(&pods(), &mut merged, &old, "resize");
        assert_eq!(merged["spec"]["containers"][0]["image"], "busybox");
        assert_eq!(merged["spec"]["containers"][0]["resources"]["requests"]["cpu"], "200m");
        assert_eq!(
            merged["spec"]["containers"][0]["resizePolicy"][0]["resourceName"],
            "cpu"
        );
        let mut running = old.clone();
        running["status"]["containerStatuses"] = json!([{"name": "app", "state": {"running": {}}}]);
        assert_eq!(
            resize(&running, &new),
            ["spec: Pod running on node without support for resize"]
        );
        running["status"]["containerStatuses"][0]["resources"] = json!({});
        assert!(resize(&running, &new).is_empty());
    }

    #[test]
    fn ephemeral_containers_may_only_be_added() {
        let with = |ecs: Value| {
            let mut p = pod(json!({}), None);
            p["spec"]["ephemeralContainers"] = ecs;
            p
        };
        let check = |old: &Value, new: &Value| -> Vec<String> {
            let mut merged = new.clone();
            prepare_update(&pods(), &mut merged, old, "ephemeralcontainers");
            validate_subresource(&pods(), "ephemeralcontainers", &merged, old)
                .expect("validated")
                .iter()
                .map(|e| format!("{}: {}", e.field, e.detail))
                .collect()
        };
        let one = with(json!([{"name": "debug", "image": "busybox", "resources": {}}]));
        assert!(check(&pod(json!({}), None), &one).is_empty());
        let two = with(
            json!([{"name": "debug", "image": "busybox", "resources": {}}, {"name": "more", "image": "busybox", "targetContainerName": "app"}]),
        );
        assert!(check(&one, &two).is_empty());
        assert_eq!(
            check(&two, &one),
            ["spec.ephemeralContainers: existing ephemeral containers \"more\" may not be removed\n"]
        );
        let changed = with(json!([{"name": "debug", "image": "alpine"}]));
        assert_eq!(
            check(&one, &changed),
            ["spec.ephemeralContainers: existing ephemeral containers \"debug\" may not be changed\n"]
        );
        let mut mirror = one.clone();
        mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        assert_eq!(
            check(&mirror, &two),
            [": static pods do not support ephemeral containers"]
        );
    }
}
