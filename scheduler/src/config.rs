//! Upstream's `KubeSchedulerConfiguration` (`kubescheduler.config.k8s.io/v1`):
//! decoding (strict, as upstream: an unknown field is an error), defaults,
//! validation with messages naming the field, and the default profile's
//! plugins merged with a profile's own as upstream merges them.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::plugins;

pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Clone, Debug, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginRef {
    pub name: String,
    #[serde(default)]
    pub weight: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSet {
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

/// Upstream's extension points, as named in the configuration.
pub const EXTENSION_POINTS: &[&str] = &[
    "preEnqueue",
    "queueSort",
    "preFilter",
    "filter",
    "postFilter",
    "preScore",
    "score",
    "reserve",
    "permit",
    "preBind",
    "bind",
    "postBind",
];

#[derive(Clone, Debug, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plugins {
    #[serde(default)]
    pub pre_enqueue: PluginSet,
    #[serde(default)]
    pub queue_sort: PluginSet,
    #[serde(default)]
    pub pre_filter: PluginSet,
    #[serde(default)]
    pub filter: PluginSet,
    #[serde(default)]
    pub post_filter: PluginSet,
    #[serde(default)]
    pub pre_score: PluginSet,
    #[serde(default)]
    pub score: PluginSet,
    #[serde(default)]
    pub reserve: PluginSet,
    #[serde(default)]
    pub permit: PluginSet,
    #[serde(default)]
    pub pre_bind: PluginSet,
    #[serde(default)]
    pub bind: PluginSet,
    #[serde(default)]
    pub post_bind: PluginSet,
    #[serde(default)]
    pub multi_point: PluginSet,
}

impl Plugins {
    pub fn point(&self, name: &str) -> &PluginSet {
        match name {
            "preEnqueue" => &self.pre_enqueue,
            "queueSort" => &self.queue_sort,
            "preFilter" => &self.pre_filter,
            "filter" => &self.filter,
            "postFilter" => &self.post_filter,
            "preScore" => &self.pre_score,
            "score" => &self.score,
            "reserve" => &self.reserve,
            "permit" => &self.permit,
            "preBind" => &self.pre_bind,
            "bind" => &self.bind,
            "postBind" => &self.post_bind,
            _ => &self.multi_point,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Clone, Debug, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub scheduler_name: Option<String>,
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i64>,
    #[serde(default)]
    pub plugins: Option<Plugins>,
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

#[derive(Clone, Debug, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderElection {
    #[serde(default)]
    pub leader_elect: Option<bool>,
    #[serde(default)]
    pub lease_duration: Option<String>,
    #[serde(default)]
    pub renew_deadline: Option<String>,
    #[serde(default)]
    pub retry_period: Option<String>,
    #[serde(default)]
    pub resource_lock: Option<String>,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_namespace: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnection {
    #[serde(default)]
    pub kubeconfig: Option<String>,
    #[serde(default)]
    pub qps: Option<f64>,
    #[serde(default)]
    pub burst: Option<i64>,
    #[serde(default)]
    pub accept_content_types: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
}

/// The file as written; `Config::from_file` applies defaults.
#[derive(Clone, Debug, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeSchedulerConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub parallelism: Option<i64>,
    #[serde(default)]
    pub leader_election: Option<LeaderElection>,
    #[serde(default)]
    pub client_connection: Option<ClientConnection>,
    #[serde(default)]
    pub healthz_bind_address: Option<String>,
    #[serde(default)]
    pub metrics_bind_address: Option<String>,
    #[serde(default)]
    pub enable_profiling: Option<bool>,
    #[serde(default)]
    pub enable_contention_profiling: Option<bool>,
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i64>,
    #[serde(default)]
    pub pod_initial_backoff_seconds: Option<i64>,
    #[serde(default)]
    pub pod_max_backoff_seconds: Option<i64>,
    #[serde(default)]
    pub profiles: Vec<Profile>,
    #[serde(default)]
    pub extenders: Vec<Value>,
    #[serde(default)]
    pub delay_cache_until_active: Option<bool>,
}

/// The default profile's plugins (upstream's `getDefaultPlugins`, v1.33):
/// every plugin enabled at multiPoint, score weights as upstream's.
pub fn default_multi_point() -> Vec<PluginRef> {
    let p = |name: &str, weight: Option<i64>| PluginRef {
        name: name.to_string(),
        weight,
    };
    vec![
        p("SchedulingGates", None),
        p("PrioritySort", None),
        p("NodeUnschedulable", None),
        p("NodeName", None),
        p("TaintToleration", Some(3)),
        p("NodeAffinity", Some(2)),
        p("NodePorts", None),
        p("NodeResourcesFit", Some(1)),
        p("VolumeRestrictions", None),
        p("NodeVolumeLimits", None),
        p("VolumeBinding", None),
        p("VolumeZone", None),
        p("PodTopologySpread", Some(2)),
        p("InterPodAffinity", Some(2)),
        p("DefaultPreemption", None),
        p("NodeResourcesBalancedAllocation", Some(1)),
        p("ImageLocality", Some(1)),
        p("DefaultBinder", None),
    ]
}

/// A profile after defaults: per extension point, the enabled plugins in
/// order with their weights, and each plugin's args.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedProfile {
    pub scheduler_name: String,
    pub percentage_of_nodes_to_score: Option<i64>,
    /// (extension point, [(plugin, weight)]).
    pub points: Vec<(&'static str, Vec<(String, i64)>)>,
    pub plugin_config: Vec<PluginConfig>,
}

impl ResolvedProfile {
    pub fn enabled(&self, point: &str) -> &[(String, i64)] {
        self.points
            .iter()
            .find(|(p, _)| *p == point)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }
    pub fn args(&self, plugin: &str) -> Option<&Value> {
        self.plugin_config.iter().find(|c| c.name == plugin).map(|c| &c.args)
    }
}

/// The configuration the scheduler runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub parallelism: usize,
    pub percentage_of_nodes_to_score: Option<i64>,
    pub pod_initial_backoff: Duration,
    pub pod_max_backoff: Duration,
    pub profiles: Vec<ResolvedProfile>,
    pub leader_election: LeaderElection,
    pub kubeconfig: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config::resolve(KubeSchedulerConfiguration::default()).expect("the defaults are valid")
    }
}

/// Parses a duration of the configuration file or a flag: Go's syntax
/// ("15s", "1m30s", "500ms"), never negative.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    component_base::duration::parse(s)
}

/// Which plugins implement which extension point (for multiPoint
/// expansion), asked of the plugins themselves.
fn implements(plugin: &str, point: &str) -> bool {
    let Ok(p) = plugins::new_plugin(plugin, None, "") else {
        return false;
    };
    match point {
        "preEnqueue" => p.as_pre_enqueue().is_some(),
        "queueSort" => p.as_queue_sort().is_some(),
        "preFilter" => p.as_pre_filter().is_some(),
        "filter" => p.as_filter().is_some(),
        "postFilter" => p.as_post_filter().is_some(),
        "preScore" => p.as_pre_score().is_some(),
        "score" => p.as_score().is_some(),
        "reserve" => p.as_reserve().is_some(),
        "permit" => p.as_permit().is_some(),
        "preBind" => p.as_pre_bind().is_some(),
        "bind" => p.as_bind().is_some(),
        _ => false,
    }
}

/// Upstream's `mergePluginSet`: the defaults less the disabled ones (`*`
/// disables all), with custom entries replacing a default of the same name
/// in place and the others appended.
fn merge_set(defaults: &[PluginRef], custom: &PluginSet) -> Vec<PluginRef> {
    let disabled_all = custom.disabled.iter().any(|d| d.name == "*");
    let disabled: HashSet<&str> = custom.disabled.iter().map(|d| d.name.as_str()).collect();
    let mut out: Vec<PluginRef> = Vec::new();
    let mut replaced: HashSet<&str> = HashSet::new();
    for d in defaults {
        if disabled_all || disabled.contains(d.name.as_str()) {
            continue;
        }
        if let Some(c) = custom.enabled.iter().find(|c| c.name == d.name) {
            out.push(c.clone());
            replaced.insert(c.name.as_str());
        } else {
            out.push(d.clone());
        }
    }
    for c in &custom.enabled {
        if !replaced.contains(c.name.as_str()) {
            out.push(c.clone());
        }
    }
    out
}

impl Config {
    /// Reads and validates a configuration file (YAML or JSON).
    pub fn from_file(path: &str) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
        Config::parse(&text).map_err(|e| format!("{path}: {e}"))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let raw: KubeSchedulerConfiguration =
            serde_yaml::from_str(text).map_err(|e| format!("strict decoding error: {e}"))?;
        match raw.api_version.as_deref() {
            Some(API_VERSION) => {}
            Some(other) => {
                return Err(format!(
                    "apiVersion: Unsupported value: \"{other}\": supported values: \"{API_VERSION}\""
                ));
            }
            None => return Err("apiVersion: Required value".into()),
        }
        match raw.kind.as_deref() {
            Some("KubeSchedulerConfiguration") => {}
            other => {
                return Err(format!(
                    "kind: Unsupported value: \"{}\": supported values: \"KubeSchedulerConfiguration\"",
                    other.unwrap_or("")
                ));
            }
        }
        Config::resolve(raw)
    }

    /// Applies upstream's defaults and validates.
    pub fn resolve(raw: KubeSchedulerConfiguration) -> Result<Config, String> {
        let parallelism = raw.parallelism.unwrap_or(16);
        if parallelism <= 0 {
            return Err(format!(
                "parallelism: Invalid value: {parallelism}: should be an integer value greater than zero"
            ));
        }
        if let Some(p) = raw.percentage_of_nodes_to_score
            && !(0..=100).contains(&p)
        {
            return Err(format!(
                "percentageOfNodesToScore: Invalid value: {p}: not in valid range [0-100]"
            ));
        }
        let initial = raw.pod_initial_backoff_seconds.unwrap_or(1);
        let max = raw.pod_max_backoff_seconds.unwrap_or(10);
        if initial <= 0 {
            return Err(format!(
                "podInitialBackoffSeconds: Invalid value: {initial}: must be greater than 0"
            ));
        }
        if max < initial {
            return Err(format!(
                "podMaxBackoffSeconds: Invalid value: {max}: must be greater than or equal to PodInitialBackoffSeconds"
            ));
        }
        let le = raw.leader_election.clone().unwrap_or_default();
        for (field, v) in [
            ("leaseDuration", &le.lease_duration),
            ("renewDeadline", &le.renew_deadline),
            ("retryPeriod", &le.retry_period),
        ] {
            if let Some(v) = v {
                parse_duration(v).map_err(|e| format!("leaderElection.{field}: Invalid value: {e}"))?;
            }
        }
        if !raw.extenders.is_empty() {
            return Err("extenders: Unsupported value: scheduler extenders are not supported".into());
        }
        let mut profiles = raw.profiles.clone();
        if profiles.is_empty() {
            profiles.push(Profile::default());
        }
        let mut names = HashSet::new();
        let mut resolved = Vec::new();
        for (i, p) in profiles.iter().enumerate() {
            let path = format!("profiles[{i}]");
            let name = p
                .scheduler_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.to_string());
            if name.is_empty() {
                return Err(format!("{path}.schedulerName: Required value"));
            }
            if !names.insert(name.clone()) {
                return Err(format!("{path}.schedulerName: Duplicate value: \"{name}\""));
            }
            if let Some(pct) = p.percentage_of_nodes_to_score
                && !(0..=100).contains(&pct)
            {
                return Err(format!(
                    "{path}.percentageOfNodesToScore: Invalid value: {pct}: not in valid range [0-100]"
                ));
            }
            resolved.push(resolve_profile(p, name, &path)?);
        }
        let sort = |p: &ResolvedProfile| p.enabled("queueSort").to_vec();
        if let Some(first) = resolved.first() {
            for (i, p) in resolved.iter().enumerate().skip(1) {
                if sort(p) != sort(first) {
                    return Err(format!(
                        "profiles[{i}].plugins.queueSort: Invalid value: queueSort must be the same for all profiles"
                    ));
                }
            }
        }
        Ok(Config {
            parallelism: parallelism as usize,
            percentage_of_nodes_to_score: raw.percentage_of_nodes_to_score,
            pod_initial_backoff: Duration::from_secs(initial as u64),
            pod_max_backoff: Duration::from_secs(max as u64),
            profiles: resolved,
            leader_election: le,
            kubeconfig: raw
                .client_connection
                .and_then(|c| c.kubeconfig)
                .filter(|k| !k.is_empty()),
        })
    }
}

fn resolve_profile(p: &Profile, name: String, path: &str) -> Result<ResolvedProfile, String> {
    let custom = p.plugins.clone().unwrap_or_default();
    for point in EXTENSION_POINTS.iter().copied().chain(["multiPoint"]) {
        for (j, e) in custom.point(point).enabled.iter().enumerate() {
            if !plugins::IN_TREE.contains(&e.name.as_str()) {
                return Err(format!(
                    "{path}.plugins.{point}.enabled[{j}]: Invalid value: \"{}\": plugin does not exist",
                    e.name
                ));
            }
            if let Some(w) = e.weight
                && w < 0
            {
                return Err(format!(
                    "{path}.plugins.{point}.enabled[{j}].weight: Invalid value: {w}: must not be negative"
                ));
            }
            if point != "multiPoint" && !implements(&e.name, point) {
                return Err(format!(
                    "{path}.plugins.{point}.enabled[{j}]: Invalid value: \"{}\": plugin does not extend {point}",
                    e.name
                ));
            }
        }
    }
    let multi = merge_set(&default_multi_point(), &custom.multi_point);
    let mut points = Vec::new();
    for &point in EXTENSION_POINTS {
        let set = custom.point(point);
        let disabled_all = set.disabled.iter().any(|d| d.name == "*");
        let disabled: HashSet<&str> = set.disabled.iter().map(|d| d.name.as_str()).collect();
        let explicit: Vec<&PluginRef> = set.enabled.iter().collect();
        let explicit_names: HashSet<&str> = explicit.iter().map(|e| e.name.as_str()).collect();
        let mut list: Vec<(String, i64)> = Vec::new();
        // Explicit entries that override a multiPoint plugin keep their order first…
        for e in &explicit {
            if multi.iter().any(|m| m.name == e.name) {
                list.push((e.name.clone(), e.weight.filter(|w| *w > 0).unwrap_or(1)));
            }
        }
        // …then multiPoint plugins that implement this point…
        for m in &multi {
            if explicit_names.contains(m.name.as_str()) || disabled_all || disabled.contains(m.name.as_str()) {
                continue;
            }
            if implements(&m.name, point) {
                list.push((m.name.clone(), m.weight.filter(|w| *w > 0).unwrap_or(1)));
            }
        }
        // …then the other explicit ones.
        for e in &explicit {
            if !multi.iter().any(|m| m.name == e.name) {
                list.push((e.name.clone(), e.weight.filter(|w| *w > 0).unwrap_or(1)));
            }
        }
        points.push((point, list));
    }
    let mut seen = HashSet::new();
    for (j, c) in p.plugin_config.iter().enumerate() {
        if !seen.insert(c.name.as_str()) {
            return Err(format!(
                "{path}.pluginConfig[{j}].name: Duplicate value: \"{}\"",
                c.name
            ));
        }
        if !plugins::IN_TREE.contains(&c.name.as_str()) {
            return Err(format!(
                "{path}.pluginConfig[{j}].name: Invalid value: \"{}\": plugin does not exist",
                c.name
            ));
        }
        // Building the plugin validates its args.
        plugins::new_plugin(&c.name, Some(&c.args), &format!("{path}.pluginConfig[{j}].args"))?;
    }
    let resolved = ResolvedProfile {
        scheduler_name: name,
        percentage_of_nodes_to_score: p.percentage_of_nodes_to_score,
        points,
        plugin_config: p.plugin_config.clone(),
    };
    if resolved.enabled("queueSort").len() != 1 {
        return Err(format!(
            "{path}.plugins.queueSort: Invalid value: exactly one queue sort plugin must be enabled"
        ));
    }
    if resolved.enabled("bind").is_empty() {
        return Err(format!(
            "{path}.plugins.bind: Invalid value: at least one bind plugin is needed"
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &ResolvedProfile, point: &str) -> Vec<String> {
        p.enabled(point).iter().map(|(n, _)| n.clone()).collect()
    }

    #[test]
    fn no_file_is_upstreams_defaults() {
        let c = Config::default();
        assert_eq!(c.parallelism, 16);
        assert_eq!(c.pod_initial_backoff, Duration::from_secs(1));
        assert_eq!(c.pod_max_backoff, Duration::from_secs(10));
        assert_eq!(c.profiles.len(), 1);
        let p = &c.profiles[0];
        assert_eq!(p.scheduler_name, "default-scheduler");
        assert_eq!(names(p, "queueSort"), ["PrioritySort"]);
        assert_eq!(names(p, "bind"), ["DefaultBinder"]);
        let score = p.enabled("score");
        assert!(score.contains(&("TaintToleration".into(), 3)));
        assert!(score.contains(&("NodeAffinity".into(), 2)));
        assert!(score.contains(&("NodeResourcesFit".into(), 1)));
        assert!(names(p, "filter").contains(&"NodeUnschedulable".to_string()));
    }

    #[test]
    fn profiles_disable_and_reweigh() {
        let c = Config::parse(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: no-scoring-scheduler
  plugins:
    preScore:
      disabled:
      - name: '*'
    score:
      disabled:
      - name: '*'
- schedulerName: packing
  plugins:
    score:
      enabled:
      - name: NodeResourcesFit
        weight: 5
      disabled:
      - name: ImageLocality
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
"#,
        )
        .unwrap();
        assert_eq!(c.profiles.len(), 3);
        assert!(c.profiles[1].enabled("score").is_empty());
        let packing = &c.profiles[2];
        assert_eq!(packing.enabled("score")[0], ("NodeResourcesFit".into(), 5));
        assert!(!names(packing, "score").contains(&"ImageLocality".to_string()));
        assert!(packing.args("NodeResourcesFit").is_some());
    }

    #[test]
    fn invalid_files_name_the_field() {
        let cases = [
            (
                "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n",
                "apiVersion: Unsupported value",
            ),
            (
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nparallelism: 0\n",
                "parallelism: Invalid value: 0",
            ),
            (
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\npercentageOfNodesToScore: 110\n",
                "percentageOfNodesToScore: Invalid value: 110",
            ),
            (
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nbogus: 1\n",
                "unknown field `bogus`",
            ),
            (
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: a\n- schedulerName: a\n",
                "profiles[1].schedulerName: Duplicate value: \"a\"",
            ),
            (
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- plugins:\n    filter:\n      enabled:\n      - name: Nope\n",
                "profiles[0].plugins.filter.enabled[0]: Invalid value: \"Nope\"",
            ),
            (
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: Bogus\n",
                "profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: \"Bogus\"",
            ),
            (
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\npodInitialBackoffSeconds: 5\npodMaxBackoffSeconds: 2\n",
                "podMaxBackoffSeconds: Invalid value: 2",
            ),
            (
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- plugins:\n    queueSort:\n      disabled:\n      - name: '*'\n",
                "profiles[0].plugins.queueSort",
            ),
        ];
        for (text, want) in cases {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }
}
