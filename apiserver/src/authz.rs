//! Authorization: what the server lets a user do, and what the review APIs
//! (`reviews`) report it lets them do. One policy answers both, so that
//! `kubectl auth can-i` tells what the server does.
//!
//! Until RBAC is enforced (a later issue; RBAC objects are stored already)
//! the policy is upstream's AlwaysAllow for authenticated users: every
//! request that passes authentication is allowed, and anonymous requests
//! are refused at authentication (401) except the health and version paths.

use crate::authn::User;

/// Paths anonymous requests may read.
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

/// What a request does (upstream's `authorizer.Attributes`).
#[derive(Debug)]
pub enum Action<'a> {
    Resource {
        verb: &'a str,
        namespace: &'a str,
        group: &'a str,
        resource: &'a str,
        subresource: &'a str,
        name: &'a str,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Not allowed (upstream's NoOpinion from every authorizer).
    NoOpinion,
}

fn anonymous(user: &User) -> bool {
    user.name == "system:anonymous" || user.groups.iter().any(|g| g == "system:unauthenticated")
}

/// The decision on `action` by `user`, with its reason.
pub fn authorize(user: &User, action: &Action) -> (Decision, String) {
    if !anonymous(user) {
        return (Decision::Allow, String::new());
    }
    match action {
        Action::NonResource { verb: "get", path } if PUBLIC_PATHS.contains(path) => (Decision::Allow, String::new()),
        _ => (Decision::NoOpinion, String::new()),
    }
}

/// Upstream's `RuleResolver.RulesFor`: (resource rules, non-resource rules,
/// incomplete), as `ResourceRule` and `NonResourceRule` JSON.
pub fn rules_for(user: &User) -> (Vec<serde_json::Value>, Vec<serde_json::Value>, bool) {
    use serde_json::json;
    if anonymous(user) {
        return (
            Vec::new(),
            vec![json!({"verbs": ["get"], "nonResourceURLs": PUBLIC_PATHS})],
            false,
        );
    }
    (
        vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})],
        vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})],
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        }
    }

    #[test]
    fn authenticated_users_may_do_anything_anonymous_ones_only_read_public_paths() {
        let pods = Action::Resource {
            verb: "create",
            namespace: "default",
            group: "",
            resource: "pods",
            subresource: "",
            name: "",
        };
        let alice = user("alice", &["system:authenticated"]);
        assert_eq!(authorize(&alice, &pods).0, Decision::Allow);
        assert_eq!(authorize(&user("", &["dev"]), &pods).0, Decision::Allow);
        let anon = user("system:anonymous", &["system:unauthenticated"]);
        assert_eq!(authorize(&anon, &pods).0, Decision::NoOpinion);
        let healthz = |verb| Action::NonResource { verb, path: "/healthz" };
        assert_eq!(authorize(&anon, &healthz("get")).0, Decision::Allow);
        assert_eq!(authorize(&anon, &healthz("post")).0, Decision::NoOpinion);
        assert_eq!(
            authorize(
                &anon,
                &Action::NonResource {
                    verb: "get",
                    path: "/metrics"
                }
            )
            .0,
            Decision::NoOpinion
        );
        assert_eq!(rules_for(&alice).0[0]["resources"][0], "*");
        assert!(rules_for(&anon).0.is_empty());
    }
}
