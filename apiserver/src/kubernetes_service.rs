//! The `default/kubernetes` Service's endpoints: upstream's lease endpoint
//! reconciler (`--endpoint-reconciler-type=lease`). Each apiserver keeps a
//! master lease, `/registry/masterleases/<ip>` attached to a store lease of
//! `--endpoint-reconciler-lease-ttl` (15 s), renewed every reconcile
//! interval (10 s); every apiserver then writes the Endpoints
//! `default/kubernetes` (the live leases' IPs, port `https` = the secure
//! port, labelled `endpointslice.kubernetes.io/skip-mirror: "true"` so
//! that the mirroring controller leaves them alone) and the EndpointSlice
//! `default/kubernetes`, only when they differ from what is there. No
//! leader is needed: the writes are idempotent compare-and-swaps. A member
//! that dies drops out when its lease expires; one that shuts down removes
//! its lease and reconciles without itself.
//!
//! The decisions (which addresses may be listed, what the objects should
//! be, whether they need a write) are plain functions; [`EndpointReconciler`]
//! does the store and API IO around them.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use crate::options::{EndpointReconcilerType, Options};
use crate::server::{Server, system_request};
use crate::status::{ApiError, ApiResult};
use crate::storage::ReadAt;

pub const SERVICE_NAME: &str = "kubernetes";
pub const SERVICE_NAMESPACE: &str = "default";
/// Where the master leases live (upstream's `/registry/masterleases/`).
pub const MASTER_LEASES: &str = "/registry/masterleases/";
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
const PORT_NAME: &str = "https";

/// Why `ip` may not be an endpoint address (upstream's
/// `ValidateNonSpecialIP`, which Endpoints validation applies), or None.
pub fn special_ip_reason(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("may not be unspecified (0.0.0.0, ::)");
    }
    if ip.is_loopback() {
        return Some("may not be in the loopback range (127.0.0.0/8, ::1/128)");
    }
    let (link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xffc0 == 0xfe80, s[0] & 0xff0f == 0xff02)
        }
    };
    if link_local {
        return Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)");
    }
    if link_local_multicast {
        return Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)");
    }
    None
}

/// An address family: the kubernetes Service IP's is the EndpointSlice's
/// `addressType`, and only addresses of it are listed (upstream's primary
/// slice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The value of a master lease key: an Endpoints naming one IP, as
/// upstream stores it.
pub fn master_lease(ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": ip},
        "subsets": [{"addresses": [{"ip": ip}]}],
    })
}

/// The IP a master lease names.
pub fn lease_ip(lease: &Value) -> Option<&str> {
    lease
        .pointer("/subsets/0/addresses/0/ip")?
        .as_str()
        .filter(|ip| !ip.is_empty())
}

/// The leases' IPs of `family`, deduplicated, in lexicographic order (as
/// upstream's sorted string set).
pub fn listed_ips<'a>(ips: impl IntoIterator<Item = &'a str>, family: Family) -> Vec<String> {
    let mut out: Vec<String> = ips
        .into_iter()
        .filter(|ip| ip.parse::<IpAddr>().is_ok_and(|a| Family::of(a) == family))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn endpoint_ports(port: u16) -> Value {
    json!([{"name": PORT_NAME, "port": port, "protocol": "TCP"}])
}

/// Equal, taking absent, null, `[]` and `{}` as one (what the API omits).
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    fn empty(v: Option<&Value>) -> bool {
        match v {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            _ => false,
        }
    }
    (empty(a) && empty(b)) || a == b
}

/// The Endpoints `default/kubernetes` to write over `current` (None:
/// absent) so that it lists `ips` on the secure port with the skip-mirror
/// label; None when `current` already does.
pub fn endpoints_update(current: Option<&Value>, ips: &[String], port: u16) -> Option<Value> {
    let mut subset = json!({"ports": endpoint_ports(port)});
    if !ips.is_empty() {
        subset["addresses"] = ips.iter().map(|ip| json!({"ip": ip})).collect();
    }
    let subsets = json!([subset]);
    let labels = json!({LABEL_SKIP_MIRROR: "true"});
    if let Some(cur) = current
        && same(cur.get("subsets"), Some(&subsets))
        && same(cur.pointer("/metadata/labels"), Some(&labels))
    {
        return None;
    }
    let mut obj = current.cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE},
        })
    });
    obj["metadata"]["labels"] = labels;
    obj["subsets"] = subsets;
    Some(obj)
}

/// What to do to the EndpointSlices labelled for the kubernetes Service.
#[derive(Debug, Default, PartialEq)]
pub struct SlicePlan {
    /// Slices to delete by name: any but the `kubernetes` slice of the
    /// Service IP's family (a family change, a stale copy).
    pub delete: Vec<String>,
    /// The slice to create (no resourceVersion) or replace.
    pub write: Option<Value>,
}

/// How to bring the EndpointSlices labelled
/// `kubernetes.io/service-name=kubernetes` (`current`) to one slice
/// `kubernetes` listing `ips`, each ready, on the secure port (upstream's
/// endpoints adapter): only the endpoints, ports and labels are compared.
pub fn endpoint_slice_plan(current: &[Value], family: Family, ips: &[String], port: u16) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let mut primary = None;
    for slice in current {
        let name = crate::object::name(slice);
        if name == SERVICE_NAME && slice["addressType"].as_str() == Some(family.address_type()) {
            primary = Some(slice);
        } else {
            plan.delete.push(name.to_string());
        }
    }
    let endpoints: Value = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    let ports = endpoint_ports(port);
    let labels = json!({LABEL_SERVICE_NAME: SERVICE_NAME});
    if let Some(cur) = primary
        && same(cur.get("endpoints"), Some(&endpoints))
        && same(cur.get("ports"), Some(&ports))
        && same(cur.pointer("/metadata/labels"), Some(&labels))
    {
        return plan;
    }
    let mut slice = primary.cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE},
        })
    });
    slice["metadata"]["labels"] = labels;
    slice["addressType"] = json!(family.address_type());
    slice["endpoints"] = endpoints;
    slice["ports"] = ports;
    plan.write = Some(slice);
    plan
}

/// One apiserver's master lease and the reconciliation of the kubernetes
/// Service's Endpoints and EndpointSlice.
pub struct EndpointReconciler {
    server: Arc<Server>,
    ip: String,
    port: u16,
    family: Family,
    interval: Duration,
    lease_ttl: i64,
    /// Held for a whole reconcile, so that shutdown waits for one in
    /// flight (upstream's `reconcilingLock`).
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Set on shutdown: no more leases (upstream's `StopReconciling`).
    stopped: bool,
    /// The store lease this apiserver's master lease key is attached to.
    lease: Option<i64>,
}

impl EndpointReconciler {
    /// The reconciler for an apiserver advertising `advertise_address`;
    /// None when `--endpoint-reconciler-type=none` or the address cannot
    /// be an endpoint (loopback, link-local…: upstream's validation would
    /// refuse the Endpoints; one warning, and this apiserver is not listed).
    pub fn new(server: Arc<Server>, opts: &Options, advertise_address: &str) -> Option<Arc<Self>> {
        if opts.endpoint_reconciler_type == EndpointReconcilerType::None {
            return None;
        }
        let ip = match advertise_address.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                tracing::warn!(
                    address = advertise_address,
                    "the advertise address is not an IP; this apiserver is not listed in the kubernetes service's endpoints"
                );
                return None;
            }
        };
        if let Some(reason) = special_ip_reason(ip) {
            tracing::warn!(
                address = advertise_address,
                "the advertise address {reason}; this apiserver is not listed in the kubernetes service's endpoints"
            );
            return None;
        }
        let family = Family::of(IpAddr::from(server.config.service_range.first()));
        Some(Arc::new(Self {
            port: server.config.port,
            server,
            ip: ip.to_string(),
            family,
            interval: opts.endpoint_reconciler_interval.max(Duration::from_millis(100)),
            lease_ttl: (opts.endpoint_reconciler_lease_ttl.as_secs() as i64).max(1),
            state: tokio::sync::Mutex::default(),
        }))
    }

    fn lease_key(&self) -> String {
        format!("{MASTER_LEASES}{}", self.ip)
    }

    /// Renews the lease and reconciles every interval until `stop`, once
    /// the apiserver has bootstrapped (the service exists).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        while !self.server.bootstrapped.load(Ordering::Acquire) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => return,
            }
        }
        // As upstream at start: a lease left by this address (an unclean
        // exit) goes until this apiserver renews it.
        match self.server.storage.delete(&self.lease_key()).await {
            Ok(true) => {
                tracing::info!(ip = %self.ip, "removed a stale master lease of this apiserver");
                if let Err(e) = self.do_reconcile().await {
                    tracing::debug!(error = %e, "reconciling the kubernetes service's endpoints");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "removing a stale master lease"),
        }
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "reconciling the kubernetes service's endpoints");
            }
        }
    }

    /// Upstream's `ReconcileEndpoints`: renew this apiserver's lease
    /// whatever happens next, then bring the objects to the live leases.
    async fn reconcile(&self) -> ApiResult<()> {
        let mut state = self.state.lock().await;
        if state.stopped {
            return Ok(());
        }
        self.update_lease(&mut state).await?;
        self.do_reconcile().await
    }

    async fn update_lease(&self, state: &mut State) -> ApiResult<()> {
        let storage = &self.server.storage;
        if let Some(id) = state.lease
            && storage.keep_alive_lease(id).await.is_err()
        {
            // Expired (this apiserver was cut off for longer than the
            // TTL) or revoked: the key went with it; start afresh.
            state.lease = None;
        }
        let id = match state.lease {
            Some(id) => id,
            None => {
                let id = storage.grant_lease(self.lease_ttl).await?;
                state.lease = Some(id);
                id
            }
        };
        storage.put(&self.lease_key(), &master_lease(&self.ip), id).await
    }

    /// Upstream's `RemoveEndpoints` on shutdown: stop renewing, drop this
    /// apiserver's lease and reconcile without it; bounded by two
    /// intervals so that an unreachable store does not hold shutdown.
    pub async fn remove_endpoints(&self) {
        let remove = async {
            let mut state = self.state.lock().await;
            state.stopped = true;
            self.server.storage.delete(&self.lease_key()).await?;
            if let Some(id) = state.lease.take() {
                let _ = self.server.storage.revoke_lease(id).await;
            }
            self.do_reconcile().await
        };
        match tokio::time::timeout(2 * self.interval, remove).await {
            Ok(Ok(())) => {
                tracing::info!(ip = %self.ip, "removed this apiserver from the kubernetes service's endpoints")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "removing this apiserver from the kubernetes service's endpoints"),
            Err(_) => tracing::warn!("removing this apiserver from the kubernetes service's endpoints timed out"),
        }
    }

    /// The live leases' IPs, then the Endpoints and the EndpointSlice
    /// written where they differ. With no lease at all (ours was just
    /// renewed), upstream refuses to empty the Endpoints.
    async fn do_reconcile(&self) -> ApiResult<()> {
        let storage = &self.server.storage;
        let leases = storage.list(MASTER_LEASES, "", 0, ReadAt::Latest).await?;
        let ips = listed_ips(leases.items.iter().filter_map(|s| lease_ip(&s.object)), self.family);
        if ips.is_empty() {
            return Err(ApiError::internal(
                "no API server IP addresses were listed in storage, refusing to erase all endpoints for the kubernetes service",
            ));
        }
        self.sync_endpoints(&ips).await?;
        self.sync_endpoint_slices(&ips).await
    }

    async fn sync_endpoints(&self, ips: &[String]) -> ApiResult<()> {
        let key = self.key("", "endpoints")?;
        // A conflict means another apiserver wrote meanwhile: read again
        // (upstream retries conflicts with a short back-off).
        for _ in 0..5 {
            let current = self.server.storage.get(&key, ReadAt::Latest).await?.map(|s| s.object);
            let Some(want) = endpoints_update(current.as_ref(), ips, self.port) else {
                return Ok(());
            };
            tracing::info!(?ips, "resetting the endpoints of the kubernetes service");
            let method = if current.is_some() { Method::PUT } else { Method::POST };
            match system_request(&self.server, "", "v1", "endpoints", method, &want).await {
                Err(ApiError::Conflict { .. } | ApiError::AlreadyExists { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
        Ok(())
    }

    async fn sync_endpoint_slices(&self, ips: &[String]) -> ApiResult<()> {
        let prefix = self.prefix("discovery.k8s.io", "endpointslices")?;
        for _ in 0..5 {
            let page = self.server.storage.list(&prefix, "", 0, ReadAt::Latest).await?;
            let current: Vec<Value> = page
                .items
                .into_iter()
                .map(|s| s.object)
                .filter(|s| {
                    s.pointer(&format!("/metadata/labels/{}", LABEL_SERVICE_NAME.replace('/', "~1")))
                        == Some(&json!(SERVICE_NAME))
                })
                .collect();
            let plan = endpoint_slice_plan(&current, self.family, ips, self.port);
            for name in &plan.delete {
                let obj = json!({"metadata": {"name": name, "namespace": SERVICE_NAMESPACE}});
                match system_request(
                    &self.server,
                    "discovery.k8s.io",
                    "v1",
                    "endpointslices",
                    Method::DELETE,
                    &obj,
                )
                .await
                {
                    Ok(()) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let Some(want) = plan.write else {
                return Ok(());
            };
            let method = if want.pointer("/metadata/resourceVersion").is_some() {
                Method::PUT
            } else {
                Method::POST
            };
            match system_request(&self.server, "discovery.k8s.io", "v1", "endpointslices", method, &want).await {
                Err(ApiError::Conflict { .. } | ApiError::AlreadyExists { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
        Ok(())
    }

    fn key(&self, group: &str, plural: &str) -> ApiResult<String> {
        let rt = self
            .server
            .registry
            .lookup(group, "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("no resource {plural}")))?;
        Ok(rt.key(SERVICE_NAMESPACE, SERVICE_NAME))
    }

    fn prefix(&self, group: &str, plural: &str) -> ApiResult<String> {
        let rt = self
            .server
            .registry
            .lookup(group, "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("no resource {plural}")))?;
        Ok(rt.prefix(SERVICE_NAMESPACE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn special_addresses_are_refused_as_upstream_validation_does() {
        let cases: &[(&str, bool, &str)] = &[
            ("10.255.0.1", true, "private unicast"),
            ("192.0.2.2", true, "documentation range is still unicast"),
            ("2001:db8::1", true, "IPv6 unicast"),
            ("127.0.0.1", false, "loopback"),
            ("127.1.2.3", false, "all of 127/8"),
            ("::1", false, "IPv6 loopback"),
            ("0.0.0.0", false, "unspecified"),
            ("::", false, "IPv6 unspecified"),
            ("169.254.1.1", false, "link-local"),
            ("fe80::1", false, "IPv6 link-local"),
            ("224.0.0.5", false, "link-local multicast"),
            ("ff02::1", false, "IPv6 link-local multicast"),
        ];
        for (ip, ok, why) in cases {
            let got = special_ip_reason(ip.parse().unwrap());
            assert_eq!(got.is_none(), *ok, "{ip}: {why} ({got:?})");
        }
    }

    #[test]
    fn leases_name_their_ip_and_are_listed_sorted_per_family() {
        assert_eq!(lease_ip(&master_lease("10.0.0.2")), Some("10.0.0.2"));
        assert_eq!(lease_ip(&json!({"subsets": []})), None);
        let listed = listed_ips(["10.0.0.3", "10.0.0.10", "fd00::1", "10.0.0.3", "bogus"], Family::V4);
        assert_eq!(
            listed,
            ips(&["10.0.0.10", "10.0.0.3"]),
            "string order, as upstream's set"
        );
        assert_eq!(listed_ips(["10.0.0.3", "fd00::1"], Family::V6), ips(&["fd00::1"]));
    }

    #[test]
    fn endpoints_are_written_only_when_they_differ() {
        let want = endpoints_update(None, &ips(&["10.0.0.1", "10.0.0.2"]), 6443).expect("absent: create");
        assert_eq!(
            want,
            json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default",
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                    "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}],
            })
        );
        let mut stored = want.clone();
        stored["metadata"]["resourceVersion"] = json!("7");
        stored["metadata"]["uid"] = json!("u");
        assert_eq!(
            endpoints_update(Some(&stored), &ips(&["10.0.0.1", "10.0.0.2"]), 6443),
            None,
            "same"
        );

        let cases: &[(&str, Value, Vec<String>, u16)] = &[
            ("an address gone", stored.clone(), ips(&["10.0.0.1"]), 6443),
            ("another port", stored.clone(), ips(&["10.0.0.1", "10.0.0.2"]), 443),
            (
                "label missing",
                {
                    let mut s = stored.clone();
                    s["metadata"].as_object_mut().unwrap().remove("labels");
                    s
                },
                ips(&["10.0.0.1", "10.0.0.2"]),
                6443,
            ),
            (
                "two subsets",
                {
                    let mut s = stored.clone();
                    s["subsets"] = json!([stored["subsets"][0], {"addresses": [{"ip": "10.0.0.9"}]}]);
                    s
                },
                ips(&["10.0.0.1", "10.0.0.2"]),
                6443,
            ),
        ];
        for (why, cur, list, port) in cases {
            let got = endpoints_update(Some(cur), list, *port).unwrap_or_else(|| panic!("{why}: needs a write"));
            assert_eq!(
                got["metadata"]["resourceVersion"],
                json!("7"),
                "{why}: an update of what is there"
            );
            assert_eq!(got["metadata"]["uid"], json!("u"), "{why}");
            assert_eq!(endpoints_update(Some(&got), list, *port), None, "{why}: then settled");
        }
    }

    #[test]
    fn the_endpoint_slice_follows_the_endpoints() {
        let plan = endpoint_slice_plan(&[], Family::V4, &ips(&["10.0.0.1", "10.0.0.2"]), 6443);
        assert!(plan.delete.is_empty());
        let slice = plan.write.expect("absent: create");
        assert_eq!(
            slice,
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                ],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            })
        );
        let mut stored = slice.clone();
        stored["metadata"]["resourceVersion"] = json!("9");
        let same = endpoint_slice_plan(
            std::slice::from_ref(&stored),
            Family::V4,
            &ips(&["10.0.0.1", "10.0.0.2"]),
            6443,
        );
        assert_eq!(same, SlicePlan::default(), "nothing to do");

        let fewer = endpoint_slice_plan(std::slice::from_ref(&stored), Family::V4, &ips(&["10.0.0.2"]), 6443);
        let w = fewer.write.expect("an address gone");
        assert_eq!(w["metadata"]["resourceVersion"], json!("9"), "an update");
        assert_eq!(
            w["endpoints"],
            json!([{"addresses": ["10.0.0.2"], "conditions": {"ready": true}}])
        );

        let other_port = endpoint_slice_plan(
            std::slice::from_ref(&stored),
            Family::V4,
            &ips(&["10.0.0.1", "10.0.0.2"]),
            443,
        );
        assert_eq!(other_port.write.expect("port changed")["ports"][0]["port"], json!(443));

        // A slice of the other family, or a stray one with the label, goes.
        let mut v6 = stored.clone();
        v6["addressType"] = json!("IPv6");
        let mut stray = stored.clone();
        stray["metadata"]["name"] = json!("kubernetes-extra");
        let plan = endpoint_slice_plan(&[v6, stray], Family::V4, &ips(&["10.0.0.1"]), 6443);
        assert_eq!(
            plan.delete,
            vec!["kubernetes".to_string(), "kubernetes-extra".to_string()]
        );
        let w = plan.write.expect("created afresh");
        assert!(w["metadata"].get("resourceVersion").is_none(), "a create: {w}");
        assert_eq!(w["addressType"], json!("IPv4"));
    }
}
