//! A [`Sources`] over maps that records what was asked, for tests.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::authentication::v1::{TokenRequestSpec, TokenRequestStatus};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Sources;

#[derive(Default)]
pub struct FakeSources {
    pub config_maps: Mutex<HashMap<(String, String), ConfigMap>>,
    pub secrets: Mutex<HashMap<(String, String), Secret>>,
    pub pvcs: Mutex<HashMap<(String, String), PersistentVolumeClaim>>,
    pub pvs: Mutex<HashMap<String, PersistentVolume>>,
    /// Token requests: (namespace, service account, spec).
    pub token_requests: Mutex<Vec<(String, String, TokenRequestSpec)>>,
    /// Every get: "configmap ns/name", "secret ns/name"…
    pub gets: Mutex<Vec<String>>,
    /// When set, the clock the fake apiserver issues tokens by.
    pub now: Mutex<Option<jiff::Timestamp>>,
}

impl FakeSources {
    pub fn add_config_map(&self, cm: serde_json::Value) {
        let cm: ConfigMap = serde_json::from_value(cm).expect("configmap");
        let key = (
            cm.metadata.namespace.clone().unwrap_or_default(),
            cm.metadata.name.clone().unwrap_or_default(),
        );
        self.config_maps.lock().expect("lock").insert(key, cm);
    }

    pub fn add_secret(&self, s: serde_json::Value) {
        let s: Secret = serde_json::from_value(s).expect("secret");
        let key = (
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata.name.clone().unwrap_or_default(),
        );
        self.secrets.lock().expect("lock").insert(key, s);
    }

    pub fn add_pvc(&self, c: serde_json::Value) {
        let c: PersistentVolumeClaim = serde_json::from_value(c).expect("pvc");
        let key = (
            c.metadata.namespace.clone().unwrap_or_default(),
            c.metadata.name.clone().unwrap_or_default(),
        );
        self.pvcs.lock().expect("lock").insert(key, c);
    }

    pub fn add_pv(&self, v: serde_json::Value) {
        let v: PersistentVolume = serde_json::from_value(v).expect("pv");
        self.pvs
            .lock()
            .expect("lock")
            .insert(v.metadata.name.clone().unwrap_or_default(), v);
    }

    pub fn gets(&self) -> Vec<String> {
        self.gets.lock().expect("lock").clone()
    }

    fn record(&self, what: String) {
        self.gets.lock().expect("lock").push(what);
    }
}

impl Sources for FakeSources {
    async fn config_map(&self, ns: &str, name: &str) -> anyhow::Result<Option<ConfigMap>> {
        self.record(format!("configmap {ns}/{name}"));
        Ok(self
            .config_maps
            .lock()
            .expect("lock")
            .get(&(ns.to_string(), name.to_string()))
            .cloned())
    }

    async fn secret(&self, ns: &str, name: &str) -> anyhow::Result<Option<Secret>> {
        self.record(format!("secret {ns}/{name}"));
        Ok(self
            .secrets
            .lock()
            .expect("lock")
            .get(&(ns.to_string(), name.to_string()))
            .cloned())
    }

    async fn pvc(&self, ns: &str, name: &str) -> anyhow::Result<Option<PersistentVolumeClaim>> {
        self.record(format!("pvc {ns}/{name}"));
        Ok(self
            .pvcs
            .lock()
            .expect("lock")
            .get(&(ns.to_string(), name.to_string()))
            .cloned())
    }

    async fn pv(&self, name: &str) -> anyhow::Result<Option<PersistentVolume>> {
        self.record(format!("pv {name}"));
        Ok(self.pvs.lock().expect("lock").get(name).cloned())
    }

    async fn service_account_token(
        &self,
        ns: &str,
        service_account: &str,
        spec: TokenRequestSpec,
    ) -> anyhow::Result<TokenRequestStatus> {
        let mut requests = self.token_requests.lock().expect("lock");
        let n = requests.len() + 1;
        let seconds = spec.expiration_seconds.unwrap_or(3600);
        requests.push((ns.to_string(), service_account.to_string(), spec));
        let now = self.now.lock().expect("lock").unwrap_or_else(jiff::Timestamp::now);
        Ok(TokenRequestStatus {
            token: format!("token-{n}"),
            expiration_timestamp: Time(now + jiff::SignedDuration::from_secs(seconds)),
        })
    }
}
