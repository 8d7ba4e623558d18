//! projected volumes: secrets, configMaps, downward API items and
//! service-account tokens in one directory, as upstream's
//! `projectedVolumeMounter.collectData` (`pkg/volume/projected/projected.go`),
//! and the token manager's refresh rule (`pkg/kubelet/token/token_manager.go`).
//! clusterTrustBundle projections are not supported.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccountTokenProjection};

/// `expirationSeconds` when the projection does not say.
pub const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest token the API allows.
pub const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;
/// A token is refreshed once older than this, whatever its TTL.
pub const MAX_TOKEN_AGE: SignedDuration = SignedDuration::from_hours(24);

/// The TokenRequest for a projection: its audience (none: the API's own
/// audiences), its expiry (default 3600 s, at least 600 s), bound to the pod.
pub fn token_request_spec(projection: &ServiceAccountTokenProjection, pod: &Pod) -> TokenRequestSpec {
    let audiences = projection.audience.iter().filter(|a| !a.is_empty()).cloned().collect();
    let expiration = projection
        .expiration_seconds
        .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS)
        .max(MIN_TOKEN_EXPIRATION_SECONDS);
    TokenRequestSpec {
        audiences,
        expiration_seconds: Some(expiration),
        bound_object_ref: Some(BoundObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
        }),
    }
}

/// Whether a token issued at `issued_at` and expiring at `expires_at` must be
/// replaced at `now`: past 80% of its lifetime, or older than 24 hours.
pub fn requires_refresh(now: Timestamp, issued_at: Timestamp, expires_at: Timestamp) -> bool {
    if now >= issued_at + MAX_TOKEN_AGE {
        return true;
    }
    let ttl = expires_at.duration_since(issued_at);
    let refresh_at = issued_at + SignedDuration::from_nanos((ttl.as_nanos() / 5 * 4).try_into().unwrap_or(i64::MAX));
    now >= refresh_at
}

/// The user to own token files: the one user all the pod's containers
/// (init and regular) run as, if they agree (upstream's `FsUserFrom`).
pub fn fs_user(pod: &Pod) -> Option<u32> {
    let spec = pod.spec.as_ref()?;
    let pod_user = spec.security_context.as_ref().and_then(|s| s.run_as_user);
    let mut user = None;
    for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
        let effective = c.security_context.as_ref().and_then(|s| s.run_as_user).or(pod_user)?;
        match user {
            None => user = Some(effective),
            Some(u) if u != effective => return None,
            Some(_) => {}
        }
    }
    user.and_then(|u| u32::try_from(u).ok())
}

/// A token file's mode: 0600 when it gets an owner or fsGroup (which then
/// adds group read), else the volume's default mode.
pub fn token_mode(default_mode: u32, fs_user: Option<u32>, fs_group: Option<u32>) -> u32 {
    if fs_user.is_some() || fs_group.is_some() {
        0o600
    } else {
        default_mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn refresh_rule() {
        let issued = ts("2026-01-01T00:00:00Z");
        let cases = [
            ("fresh", "2026-01-01T00:10:00Z", "2026-01-01T01:00:00Z", false),
            ("just before 80%", "2026-01-01T00:47:59Z", "2026-01-01T01:00:00Z", false),
            (
                "at 80% of an hour",
                "2026-01-01T00:48:00Z",
                "2026-01-01T01:00:00Z",
                true,
            ),
            ("expired", "2026-01-01T02:00:00Z", "2026-01-01T01:00:00Z", true),
            (
                "year-long token, 23h old",
                "2026-01-01T23:00:00Z",
                "2027-01-01T00:00:00Z",
                false,
            ),
            (
                "year-long token, 24h old",
                "2026-01-02T00:00:00Z",
                "2027-01-01T00:00:00Z",
                true,
            ),
        ];
        for (why, now, exp, want) in cases {
            assert_eq!(requires_refresh(ts(now), issued, ts(exp)), want, "{why}");
        }
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn request_spec() {
        let p = pod(json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {"containers": []}}));
        let proj = |v: serde_json::Value| -> ServiceAccountTokenProjection { serde_json::from_value(v).expect("proj") };
        let spec = token_request_spec(&proj(json!({"path": "token"})), &p);
        assert!(spec.audiences.is_empty(), "no audience: the API's");
        assert_eq!(spec.expiration_seconds, Some(3600));
        let bound = spec.bound_object_ref.expect("bound");
        assert_eq!(
            (bound.kind.as_deref(), bound.name.as_deref(), bound.uid.as_deref()),
            (Some("Pod"), Some("p"), Some("u1"))
        );
        let spec = token_request_spec(
            &proj(json!({"path": "t", "audience": "vault", "expirationSeconds": 60})),
            &p,
        );
        assert_eq!(spec.audiences, ["vault"]);
        assert_eq!(spec.expiration_seconds, Some(600));
    }

    #[test]
    fn token_owner() {
        let cases = [
            (
                "pod-level user",
                json!({"securityContext": {"runAsUser": 1000}, "containers": [{"name": "a"}, {"name": "b"}]}),
                Some(1000),
            ),
            (
                "container override agrees",
                json!({"securityContext": {"runAsUser": 1000},
                "containers": [{"name": "a", "securityContext": {"runAsUser": 1000}}]}),
                Some(1000),
            ),
            (
                "containers disagree",
                json!({"containers": [
                {"name": "a", "securityContext": {"runAsUser": 1}}, {"name": "b", "securityContext": {"runAsUser": 2}}]}),
                None,
            ),
            (
                "one unknown",
                json!({"containers": [{"name": "a", "securityContext": {"runAsUser": 1}}, {"name": "b"}]}),
                None,
            ),
            (
                "init container differs",
                json!({"securityContext": {"runAsUser": 5},
                "initContainers": [{"name": "i", "securityContext": {"runAsUser": 0}}], "containers": [{"name": "a"}]}),
                None,
            ),
        ];
        for (why, spec, want) in cases {
            assert_eq!(
                fs_user(&pod(json!({"metadata": {"name": "p"}, "spec": spec}))),
                want,
                "{why}"
            );
        }
        assert_eq!(token_mode(0o644, None, None), 0o644);
        assert_eq!(token_mode(0o644, Some(1), None), 0o600);
        assert_eq!(token_mode(0o644, None, Some(2)), 0o600);
    }
}
