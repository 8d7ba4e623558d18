//! `clusterrole-aggregation-controller`: a ClusterRole with an
//! `aggregationRule` gets as its rules the union of the rules of the
//! ClusterRoles its selectors match (selector by selector, roles by name,
//! duplicates dropped), re-made whenever any ClusterRole changes.
//! Upstream's `pkg/controller/clusterroleaggregation`: written by a forced
//! server-side apply of `rules` as field manager
//! `clusterrole-aggregation-controller`.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::StartFn;
use crate::context::Ctx;
use crate::informer::Informer;
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start);

const FIELD_MANAGER: &str = "clusterrole-aggregation-controller";

/// The aggregated rules of `role` among `roles` (upstream's
/// `syncClusterRole`), or `None` if it aggregates nothing (no
/// aggregationRule). Selectors that do not parse are an error.
pub fn aggregated_rules(role: &ClusterRole, roles: &[Arc<ClusterRole>]) -> Result<Option<Vec<PolicyRule>>, String> {
    let Some(rule) = role.aggregation_rule.as_ref() else {
        return Ok(None);
    };
    let mut sorted: Vec<&Arc<ClusterRole>> = roles.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut out: Vec<PolicyRule> = Vec::new();
    for ls in rule.cluster_role_selectors.iter().flatten() {
        let sel = util::selector(Some(ls))?;
        for r in &sorted {
            if r.metadata.name == role.metadata.name || !util::matches(&sel, r.metadata.labels.as_ref()) {
                continue;
            }
            for p in r.rules.iter().flatten() {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
    }
    Ok(Some(out))
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let roles = ctx.informers.get::<ClusterRole>();
    let queue = ctx.queue("ClusterRoleAggregator");
    // Any change may concern any aggregating role.
    let (q, r) = (queue.clone(), roles.clone());
    roles.add_handler(move |_| {
        for role in r.list() {
            if role.aggregation_rule.is_some() {
                q.add(util::name(&role.metadata));
            }
        }
    });
    let client = ctx.client.clone();
    tokio::spawn(async move {
        roles.wait_synced().await;
        run_workers(queue, 5, move |name| {
            let (client, roles) = (client.clone(), roles.clone());
            async move { sync(&client, &roles, &name).await }
        });
    });
    Ok(())
}

async fn sync(client: &kube::Client, roles: &Informer<ClusterRole>, name: &str) -> anyhow::Result<()> {
    let Some(role) = roles.get("", name) else {
        return Ok(());
    };
    let Some(rules) = aggregated_rules(&role, &roles.list()).map_err(anyhow::Error::msg)? else {
        return Ok(());
    };
    if role.rules.as_deref().unwrap_or_default() == rules.as_slice() && role.rules.is_some() {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules,
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    match Api::<ClusterRole>::all(client.clone())
        .patch(name, &pp, &Patch::Apply(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if util::is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn role(v: Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn rule(verb: &str, resource: &str) -> Value {
        json!({"apiGroups": [""], "verbs": [verb], "resources": [resource]})
    }

    #[test]
    fn union_by_selector_then_name_without_duplicates() {
        let roles = vec![
            role(
                json!({"metadata": {"name": "b-edit", "labels": {"agg": "edit"}}, "rules": [rule("create", "pods"), rule("get", "pods")]}),
            ),
            role(json!({"metadata": {"name": "a-view", "labels": {"agg": "view"}}, "rules": [rule("get", "pods")]})),
            role(json!({"metadata": {"name": "c-view", "labels": {"agg": "view"}}, "rules": [rule("list", "pods")]})),
            role(json!({"metadata": {"name": "other"}, "rules": [rule("delete", "nodes")]})),
        ];
        let show = |rs: Vec<PolicyRule>| -> Vec<String> { rs.iter().map(|r| r.verbs.join(",")).collect() };
        let cases: Vec<(Value, Option<Vec<&str>>, &str)> = vec![
            (
                json!({"metadata": {"name": "agg"}}),
                None,
                "no aggregationRule: left alone",
            ),
            (
                json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "view"}}]}}),
                Some(vec!["get", "list"]),
                "one selector, roles by name",
            ),
            (
                json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [
                    {"matchLabels": {"agg": "edit"}}, {"matchLabels": {"agg": "view"}}]}}),
                Some(vec!["create", "get", "list"]),
                "selector order first; a rule seen twice once",
            ),
            (
                json!({"metadata": {"name": "agg", "labels": {"agg": "view"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "none"}}]}}),
                Some(vec![]),
                "nothing matched: no rules",
            ),
        ];
        for (r, want, why) in cases {
            let got = aggregated_rules(&role(r), &roles).unwrap().map(show);
            let want = want.map(|w| w.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "{why}");
        }
        // The role itself is skipped even when its labels match.
        let mut with_self = roles.clone();
        let me = role(
            json!({"metadata": {"name": "a-agg", "labels": {"agg": "view"}}, "rules": [rule("watch", "pods")],
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "view"}}]}}),
        );
        with_self.push(me.clone());
        assert_eq!(
            show(aggregated_rules(&me, &with_self).unwrap().unwrap()),
            vec!["get", "list"]
        );
    }
}
