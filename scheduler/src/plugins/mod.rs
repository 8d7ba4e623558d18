//! The in-tree plugins, with upstream's names, and the registry that
//! builds them from a profile's configuration.

use std::sync::Arc;

use serde_json::Value;

use crate::framework::Plugin;

pub mod default_binder;
pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod node_volume_limits;
pub mod pod_topology_spread;
pub mod priority_sort;
pub mod scheduling_gates;
pub mod taint_toleration;
pub mod volume_binding;
pub mod volume_restrictions;
pub mod volume_zone;

#[cfg(test)]
pub mod testing;

/// Every plugin name the registry knows, in upstream's default order.
pub const IN_TREE: &[&str] = &[
    scheduling_gates::NAME,
    priority_sort::NAME,
    node_unschedulable::NAME,
    node_name::NAME,
    taint_toleration::NAME,
    node_affinity::NAME,
    node_ports::NAME,
    node_resources::FIT,
    volume_restrictions::NAME,
    node_volume_limits::NAME,
    volume_binding::NAME,
    volume_zone::NAME,
    pod_topology_spread::NAME,
    inter_pod_affinity::NAME,
    default_preemption::NAME,
    image_locality::NAME,
    node_resources::BALANCED,
    default_binder::NAME,
];

fn parse_args<T: serde::de::DeserializeOwned + Default>(args: Option<&Value>, path: &str) -> Result<T, String> {
    match args {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("{path}: {e}")),
    }
}

/// Builds the plugin `name` with its `pluginConfig` args (`path` names the
/// args in error messages).
pub fn new_plugin(name: &str, args: Option<&Value>, path: &str) -> Result<Arc<dyn Plugin>, String> {
    Ok(match name {
        scheduling_gates::NAME => Arc::new(scheduling_gates::SchedulingGates),
        priority_sort::NAME => Arc::new(priority_sort::PrioritySort),
        node_unschedulable::NAME => Arc::new(node_unschedulable::NodeUnschedulable),
        node_name::NAME => Arc::new(node_name::NodeName),
        taint_toleration::NAME => Arc::new(taint_toleration::TaintToleration),
        node_ports::NAME => Arc::new(node_ports::NodePorts),
        image_locality::NAME => Arc::new(image_locality::ImageLocality),
        default_binder::NAME => Arc::new(default_binder::DefaultBinder),
        volume_restrictions::NAME => Arc::new(volume_restrictions::VolumeRestrictions),
        node_volume_limits::NAME => Arc::new(node_volume_limits::NodeVolumeLimits),
        volume_zone::NAME => Arc::new(volume_zone::VolumeZone),
        volume_binding::NAME => {
            let a: volume_binding::VolumeBindingArgs = parse_args(args, path)?;
            a.validate(path)?;
            Arc::new(volume_binding::VolumeBinding::new(&a))
        }
        node_affinity::NAME => {
            #[derive(serde::Deserialize, Default)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct Args {
                added_affinity: Option<k8s_openapi::api::core::v1::NodeAffinity>,
                #[serde(default)]
                api_version: Option<String>,
                #[serde(default)]
                kind: Option<String>,
            }
            let a: Args = parse_args(args, path)?;
            let _ = (a.api_version, a.kind);
            Arc::new(node_affinity::NodeAffinity {
                added: a.added_affinity,
            })
        }
        node_resources::FIT => {
            let a: node_resources::FitArgs = match args {
                None | Some(Value::Null) => serde_json::from_value(serde_json::json!({})).map_err(|e| e.to_string())?,
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("{path}: {e}"))?,
            };
            a.validate(path)?;
            Arc::new(node_resources::Fit::new(&a))
        }
        pod_topology_spread::NAME => {
            let a: pod_topology_spread::PodTopologySpreadArgs = parse_args(args, path)?;
            a.validate(path)?;
            Arc::new(pod_topology_spread::PodTopologySpread::new(&a))
        }
        inter_pod_affinity::NAME => {
            let a: inter_pod_affinity::InterPodAffinityArgs = parse_args(args, path)?;
            a.validate(path)?;
            Arc::new(inter_pod_affinity::InterPodAffinity::new(&a))
        }
        default_preemption::NAME => {
            let a: default_preemption::Args = parse_args(args, path)?;
            a.validate(path)?;
            Arc::new(default_preemption::DefaultPreemption { args: a })
        }
        node_resources::BALANCED => {
            let a: node_resources::BalancedArgs = parse_args(args, path)?;
            a.validate(path)?;
            Arc::new(node_resources::BalancedAllocation::new(&a))
        }
        other => return Err(format!("{path}: plugin \"{other}\" does not exist")),
    })
}
