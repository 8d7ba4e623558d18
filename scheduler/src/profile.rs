//! Builds each profile's [`Framework`] from the resolved configuration:
//! one plugin instance per name (shared by every extension point it
//! serves), with its args.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, ResolvedProfile};
use crate::framework::Plugin;
use crate::framework::runtime::{Framework, Observer, ScorePluginEntry};
use crate::plugins;

pub fn new_pool(parallelism: usize) -> Arc<rayon::ThreadPool> {
    // More threads than cores only adds switching.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(parallelism.min(cores).max(1))
            .thread_name(|i| format!("sched-parallel-{i}"))
            .build()
            .expect("building the scheduler's thread pool"),
    )
}

pub fn build(
    profile: &ResolvedProfile,
    cfg: &Config,
    pool: Arc<rayon::ThreadPool>,
    observer: Option<Observer>,
) -> Result<Framework, String> {
    let mut instances: HashMap<String, Arc<dyn Plugin>> = HashMap::new();
    let mut get = |name: &str| -> Result<Arc<dyn Plugin>, String> {
        if let Some(p) = instances.get(name) {
            return Ok(p.clone());
        }
        let p = plugins::new_plugin(name, profile.args(name), &format!("pluginConfig[{name}].args"))?;
        instances.insert(name.to_string(), p.clone());
        Ok(p)
    };
    let mut list = |point: &str| -> Result<Vec<Arc<dyn Plugin>>, String> {
        profile.enabled(point).iter().map(|(n, _)| get(n)).collect()
    };
    let pre_enqueue = list("preEnqueue")?;
    let queue_sort = list("queueSort")?.into_iter().next();
    let pre_filter = list("preFilter")?;
    let filter = list("filter")?;
    let post_filter = list("postFilter")?;
    let pre_score = list("preScore")?;
    let reserve = list("reserve")?;
    let permit = list("permit")?;
    let pre_bind = list("preBind")?;
    let bind = list("bind")?;
    let score = profile
        .enabled("score")
        .iter()
        .map(|(n, w)| {
            Ok(ScorePluginEntry {
                plugin: get(n)?,
                weight: *w,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Framework {
        scheduler_name: profile.scheduler_name.clone(),
        pre_enqueue,
        queue_sort,
        pre_filter,
        filter,
        post_filter,
        pre_score,
        score,
        reserve,
        permit,
        pre_bind,
        bind,
        percentage_of_nodes_to_score: profile
            .percentage_of_nodes_to_score
            .or(cfg.percentage_of_nodes_to_score),
        pool,
        observer,
    })
}

/// Every profile of the configuration; `observer` gets extension-point
/// durations.
pub fn build_all(cfg: &Config, observer: Option<Observer>) -> Result<Vec<Arc<Framework>>, String> {
    let pool = new_pool(cfg.parallelism);
    cfg.profiles
        .iter()
        .map(|p| build(p, cfg, pool.clone(), observer.clone()).map(Arc::new))
        .collect()
}

/// The default profile, for tests.
#[cfg(test)]
pub fn test_framework(_plugins: Vec<&str>) -> Framework {
    let cfg = Config::default();
    build(&cfg.profiles[0], &cfg, new_pool(2), None).expect("default profile")
}
