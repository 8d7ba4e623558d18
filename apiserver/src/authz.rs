//! Authorization: what the server lets a user do, and what the review APIs
//! (`reviews`) report it lets them do. One policy answers both, so that
//! `kubectl auth can-i` tells what the server does.
//!
//! Until RBAC is enforced (a later issue; RBAC objects are stored already)
//! the policy is upstream's AlwaysAllow for authenticated users: every
//! request that passes authentication is allowed, and anonymous requests
//! are refused at authentication (401) except the health and version paths.
//! A user may act as another (impersonation, [`impersonate`]) when allowed
//! to; a request made as `system:anonymous` that way is authorized like any
//! other and refused with 403.

use axum::http::{HeaderMap, Method};

use crate::authn::User;
use crate::request::RequestInfo;
use crate::status::{ApiError, Target};

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

impl<'a> Action<'a> {
    /// What a request to a resource path does, with upstream's verbs.
    pub fn of_request(method: &Method, info: &'a RequestInfo, watching: bool) -> Action<'a> {
        let verb = match *method {
            Method::GET | Method::HEAD if watching => "watch",
            Method::GET | Method::HEAD if info.name.is_empty() => "list",
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if info.name.is_empty() => "deletecollection",
            Method::DELETE => "delete",
            _ => "",
        };
        Action::Resource {
            verb,
            namespace: &info.namespace,
            group: &info.group,
            resource: &info.resource,
            subresource: &info.subresource,
            name: &info.name,
        }
    }
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

/// Upstream's 403 for an action not allowed (`responsewriters.Forbidden`).
pub fn forbidden(user: &User, action: &Action, reason: &str) -> ApiError {
    let who = &user.name;
    let (target, mut why) = match action {
        Action::NonResource { verb, path } => (Target::default(), format!("User {who:?} cannot {verb} path {path:?}")),
        Action::Resource {
            verb,
            namespace,
            group,
            resource,
            subresource,
            name,
        } => {
            let what = if subresource.is_empty() {
                resource.to_string()
            } else {
                format!("{resource}/{subresource}")
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {namespace:?}")
            };
            (
                Target {
                    group: group.to_string(),
                    resource: resource.to_string(),
                    kind: String::new(),
                    name: name.to_string(),
                },
                format!("User {who:?} cannot {verb} resource {what:?} in API group {group:?} {scope}"),
            )
        }
    };
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    ApiError::ForbiddenObject { target, why }
}

/// Upstream's impersonation filter: the `Impersonate-User`, `-Group`,
/// `-Uid` and `-Extra-<key>` headers make the request act as that user,
/// each part allowed (verb `impersonate`) for the requester first. Without
/// them, the requester stays.
pub fn impersonate(requester: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let value = |v: &axum::http::HeaderValue| v.to_str().unwrap_or("").to_string();
    let user_name = headers.get("impersonate-user").map(value).unwrap_or_default();
    let groups: Vec<String> = headers.get_all("impersonate-group").iter().map(value).collect();
    let uid = headers.get("impersonate-uid").map(value).unwrap_or_default();
    let mut extra: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, v) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            // Extra keys travel percent-encoded in header names.
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .to_lowercase();
            extra.entry(key).or_default().push(value(v));
        }
    }
    if user_name.is_empty() {
        if groups.is_empty() && extra.is_empty() && uid.is_empty() {
            return Ok(requester);
        }
        let mut asked: Vec<String> = groups.iter().map(|g| format!("{{Group  {g}    }}")).collect();
        asked.extend(extra.iter().flat_map(|(k, vs)| {
            vs.iter()
                .map(move |v| format!("{{UserExtra  {v}  authentication.k8s.io/v1  {k}}}"))
        }));
        if !uid.is_empty() {
            asked.push(format!("{{UID  {uid}  authentication.k8s.io/v1  }}"));
        }
        return Err(ApiError::Internal {
            message: format!(
                "Internal error occurred: requested [{}] without impersonating a user",
                asked.join(" ")
            ),
        });
    }
    let check = |action: Action| match authorize(&requester, &action) {
        (Decision::Allow, _) => Ok(()),
        (_, reason) => Err(forbidden(&requester, &action, &reason)),
    };
    let mut new_groups = Vec::new();
    let service_account = user_name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'));
    match service_account {
        Some((ns, name)) => {
            check(Action::Resource {
                verb: "impersonate",
                namespace: ns,
                group: "",
                resource: "serviceaccounts",
                subresource: "",
                name,
            })?;
            if groups.is_empty() {
                new_groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")];
            }
        }
        None => check(Action::Resource {
            verb: "impersonate",
            namespace: "",
            group: "",
            resource: "users",
            subresource: "",
            name: &user_name,
        })?,
    }
    for g in &groups {
        check(Action::Resource {
            verb: "impersonate",
            namespace: "",
            group: "",
            resource: "groups",
            subresource: "",
            name: g,
        })?;
        new_groups.push(g.clone());
    }
    for (k, vs) in &extra {
        for v in vs {
            check(Action::Resource {
                verb: "impersonate",
                namespace: "",
                group: "authentication.k8s.io",
                resource: "userextras",
                subresource: k,
                name: v,
            })?;
        }
    }
    if !uid.is_empty() {
        check(Action::Resource {
            verb: "impersonate",
            namespace: "",
            group: "authentication.k8s.io",
            resource: "uids",
            subresource: "",
            name: &uid,
        })?;
    }
    if groups.is_empty()
        && user_name != "system:anonymous"
        && !new_groups
            .iter()
            .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        new_groups.push("system:authenticated".into());
    }
    Ok(User {
        name: user_name,
        uid,
        groups: new_groups,
        extra,
    })
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

    #[test]
    fn impersonation_builds_the_user_as_upstream() {
        let admin = user("admin", &["system:masters", "system:authenticated"]);
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    v.parse().expect("value"),
                );
            }
            h
        };
        assert_eq!(impersonate(admin.clone(), &headers(&[])).expect("none"), admin);
        let bob = impersonate(admin.clone(), &headers(&[("impersonate-user", "bob")])).expect("bob");
        assert_eq!(
            (bob.name.as_str(), bob.groups.clone()),
            ("bob", vec!["system:authenticated".to_string()])
        );
        let sa = impersonate(
            admin.clone(),
            &headers(&[("impersonate-user", "system:serviceaccount:ns1:robot")]),
        )
        .expect("sa");
        assert_eq!(
            sa.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ns1",
                "system:authenticated"
            ]
        );
        // Groups given are all the groups; extras and the uid pass through.
        let full = impersonate(
            admin.clone(),
            &headers(&[
                ("impersonate-user", "bob"),
                ("impersonate-group", "devs"),
                ("impersonate-group", "ops"),
                ("impersonate-uid", "42"),
                ("impersonate-extra-scopes%2Fx", "a"),
                ("impersonate-extra-scopes%2Fx", "b"),
            ]),
        )
        .expect("full");
        assert_eq!(full.groups, ["devs", "ops"]);
        assert_eq!(full.uid, "42");
        assert_eq!(full.extra["scopes/x"], ["a", "b"]);
        let anon = impersonate(admin.clone(), &headers(&[("impersonate-user", "system:anonymous")])).expect("anon");
        assert!(anon.groups.is_empty());
        let err = impersonate(admin, &headers(&[("impersonate-group", "devs")])).unwrap_err();
        assert_eq!(err.code(), 500);
        // Anonymous requesters may impersonate no one.
        let err = impersonate(
            user("system:anonymous", &["system:unauthenticated"]),
            &headers(&[("impersonate-user", "bob")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_status()["message"],
            "users \"bob\" is forbidden: User \"system:anonymous\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
    }
}
