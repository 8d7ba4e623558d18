//! persistentVolumeClaim (and generic ephemeral) volumes: the claim must be
//! bound, the PV must name it, and the PV must be one this kubelet can
//! mount without a driver: hostPath or local, whose path is bind-mounted
//! into the containers as is. Upstream: the desired-state populator's
//! `getPVCExtractPV`/`getPVSpec` (`pkg/kubelet/volumemanager/populator`).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};

/// What a bound PV gives the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PvSource {
    HostPath { path: String, type_: Option<String> },
    Local { path: String },
}

/// The PV a claim is bound to (`Err`: upstream's reason, to be prefixed with
/// `error processing PVC <ns>/<name>: `).
pub fn bound_pv_name(claim_name: &str, pvc: Option<&PersistentVolumeClaim>) -> Result<String, String> {
    let pvc = pvc.ok_or_else(|| {
        format!("failed to fetch PVC from API server: persistentvolumeclaims {claim_name:?} not found")
    })?;
    if pvc.metadata.deletion_timestamp.is_some() {
        return Err("PVC is being deleted".to_string());
    }
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default();
    if phase != "Bound" || volume_name.is_empty() {
        return Err("PVC is not bound".to_string());
    }
    if pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
        return Err("block volumes (volumeMode: Block) are not supported by this kubelet".to_string());
    }
    Ok(volume_name.to_string())
}

/// Checks an ephemeral volume's claim was made for this pod.
pub fn check_ephemeral_owner(pod: &Pod, pvc: &PersistentVolumeClaim) -> Result<(), String> {
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let owned = pvc
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.kind == "Pod" && r.uid == pod_uid);
    if owned {
        return Ok(());
    }
    Err(format!(
        "PVC {}/{} was not created for pod {}/{} (pod is not owner)",
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        pvc.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    ))
}

/// The mountable source of the PV bound to `pvc`.
pub fn pv_source(
    pv_name: &str,
    pvc: &PersistentVolumeClaim,
    pv: Option<&PersistentVolume>,
) -> Result<PvSource, String> {
    let pv = pv.ok_or_else(|| {
        format!("failed to fetch PV {pv_name} from API server: persistentvolumes {pv_name:?} not found")
    })?;
    let spec = pv.spec.as_ref().ok_or_else(|| format!("PV {pv_name} has no spec"))?;
    let claim_uid = spec
        .claim_ref
        .as_ref()
        .and_then(|r| r.uid.as_deref())
        .unwrap_or_default();
    let pvc_uid = pvc.metadata.uid.as_deref().unwrap_or_default();
    if claim_uid.is_empty() {
        return Err(format!(
            "found PV object {pv_name:?} but it has a nil or empty ClaimRef"
        ));
    }
    if claim_uid != pvc_uid {
        return Err(format!(
            "found PV object {pv_name:?} but its ClaimRef.UID ({claim_uid:?}) points to a different PVC (UID {pvc_uid:?})"
        ));
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return Err(format!(
            "PV {pv_name:?} is a block volume; block volumes are not supported by this kubelet"
        ));
    }
    if let Some(hp) = &spec.host_path {
        return Ok(PvSource::HostPath {
            path: hp.path.clone(),
            type_: hp.type_.clone(),
        });
    }
    if let Some(local) = &spec.local {
        return Ok(PvSource::Local {
            path: local.path.clone(),
        });
    }
    Err(format!(
        "PV {pv_name:?} has a volume source this kubelet cannot mount (only hostPath and local persistent volumes are supported)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(v: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).expect("pvc")
    }

    fn pv(v: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(v).expect("pv")
    }

    #[test]
    fn claims() {
        let bound = pvc(
            json!({"metadata": {"name": "c", "uid": "c-1"}, "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(bound_pv_name("c", Some(&bound)), Ok("pv1".to_string()));
        assert_eq!(
            bound_pv_name("c", None),
            Err("failed to fetch PVC from API server: persistentvolumeclaims \"c\" not found".to_string())
        );
        let pending = pvc(json!({"metadata": {"name": "c"}, "spec": {}, "status": {"phase": "Pending"}}));
        assert_eq!(bound_pv_name("c", Some(&pending)), Err("PVC is not bound".to_string()));
        let deleting = pvc(
            json!({"metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(
            bound_pv_name("c", Some(&deleting)),
            Err("PVC is being deleted".to_string())
        );
    }

    #[test]
    fn volumes() {
        let claim = pvc(json!({"metadata": {"name": "c", "uid": "c-1"}}));
        let host = pv(json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"uid": "c-1"},
            "hostPath": {"path": "/data/x", "type": "DirectoryOrCreate"}}}));
        assert_eq!(
            pv_source("pv1", &claim, Some(&host)),
            Ok(PvSource::HostPath {
                path: "/data/x".into(),
                type_: Some("DirectoryOrCreate".into())
            })
        );
        let local = pv(
            json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"uid": "c-1"}, "local": {"path": "/mnt/disk1"}}}),
        );
        assert_eq!(
            pv_source("pv1", &claim, Some(&local)),
            Ok(PvSource::Local {
                path: "/mnt/disk1".into()
            })
        );
        let other =
            pv(json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"uid": "c-2"}, "local": {"path": "/x"}}}));
        assert!(
            pv_source("pv1", &claim, Some(&other))
                .unwrap_err()
                .contains("points to a different PVC")
        );
        let nfs = pv(
            json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"uid": "c-1"}, "nfs": {"server": "s", "path": "/"}}}),
        );
        assert!(
            pv_source("pv1", &claim, Some(&nfs))
                .unwrap_err()
                .contains("only hostPath and local")
        );
        assert!(
            pv_source("pv1", &claim, None)
                .unwrap_err()
                .starts_with("failed to fetch PV pv1")
        );
    }

    #[test]
    fn ephemeral_owner() {
        let p: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "p-1"}})).expect("pod");
        let mine = pvc(
            json!({"metadata": {"name": "p-v", "namespace": "ns", "ownerReferences": [
            {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "p-1", "controller": true}]}}),
        );
        assert_eq!(check_ephemeral_owner(&p, &mine), Ok(()));
        let foreign = pvc(json!({"metadata": {"name": "p-v", "namespace": "ns"}}));
        assert_eq!(
            check_ephemeral_owner(&p, &foreign),
            Err("PVC ns/p-v was not created for pod ns/p (pod is not owner)".to_string())
        );
    }
}
