//! Write-time side effects that upstream does in registry strategies and
//! admission: service ClusterIP/NodePort allocation (one key per allocated
//! IP and port, created with compare-and-swap, so two apiservers never hand
//! out the same one), and CRD registration.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use apimachinery::validation::FieldError;

use crate::object;
use crate::rest::Ctx;
use crate::status::{ApiError, ApiResult};
use crate::storage::{Cas, ReadAt, Storage};

const IP_PREFIX: &str = "/registry/ipallocations/";
const PORT_PREFIX: &str = "/registry/nodeportallocations/";

/// A service IP range (IPv4 CIDR).
#[derive(Clone, Copy, Debug)]
pub struct IpRange {
    pub base: u32,
    pub size: u32,
}

impl IpRange {
    pub fn parse(cidr: &str) -> anyhow::Result<IpRange> {
        let (ip, bits) = cidr
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("invalid CIDR {cidr:?}: want a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| anyhow::anyhow!("invalid CIDR {cidr:?}: {e}"))?;
        let bits: u32 = bits
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid CIDR {cidr:?}: {e}"))?;
        if !(8..=30).contains(&bits) {
            anyhow::bail!("invalid CIDR {cidr:?}: prefix length must be between 8 and 30");
        }
        let size = 1u32 << (32 - bits);
        Ok(IpRange {
            base: u32::from(ip) & !(size - 1),
            size,
        })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let x = u32::from(ip);
        x > self.base && x < self.base + self.size - 1
    }

    /// The first usable address (the `kubernetes` service's).
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn parse(s: &str) -> anyhow::Result<PortRange> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| anyhow::anyhow!("invalid port range {s:?}: want first-last"))?;
        let (first, last): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
        if first == 0 || first > last {
            anyhow::bail!("invalid port range {s:?}");
        }
        Ok(PortRange { first, last })
    }
}

async fn claim(storage: &Storage, key: &str, owner: &str) -> ApiResult<bool> {
    match storage.create(key, &json!({"metadata": {"name": owner}})).await? {
        Cas::Done { .. } => Ok(true),
        Cas::Mismatch(_) => Ok(false),
    }
}

async fn release(storage: &Storage, key: &str) {
    if let Ok(Some(cur)) = storage.get(key, ReadAt::Latest).await {
        let _ = storage.cas(key, cur.revision, None).await;
    }
}

fn invalid(ctx: &Ctx, field: &str, value: Value, detail: &str) -> ApiError {
    ApiError::Invalid {
        target: ctx.target(&ctx.info.name),
        errors: vec![FieldError::invalid(field, value, detail)],
    }
}

fn svc_owner(obj: &Value) -> String {
    format!("{}/{}", object::namespace(obj), object::name(obj))
}

async fn allocate_ip(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return Ok(());
    }
    let range = ctx.server.config.service_range;
    let owner = svc_owner(obj);
    let requested = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if requested == "None" {
        obj["spec"]["clusterIPs"] = json!(["None"]);
    } else if !requested.is_empty() {
        let ip: Ipv4Addr = requested.parse().map_err(|_| {
            invalid(
                ctx,
                "spec.clusterIPs[0]",
                json!(requested),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )
        })?;
        if !range.contains(ip) {
            return Err(invalid(
                ctx,
                "spec.clusterIPs",
                json!([requested]),
                &format!(
                    "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}/{}",
                    Ipv4Addr::from(range.base),
                    32 - range.size.trailing_zeros()
                ),
            ));
        }
        if !claim(&ctx.server.storage, &format!("{IP_PREFIX}{ip}"), &owner).await? {
            return Err(invalid(
                ctx,
                "spec.clusterIPs",
                json!([requested]),
                &format!("failed to allocate IP {requested}: provided IP is already allocated"),
            ));
        }
        obj["spec"]["clusterIPs"] = json!([requested]);
    } else {
        let usable = range.size - 2;
        let start = rand::random_range(0..usable);
        let mut got = None;
        for i in 0..usable {
            let off = (start + i) % usable;
            let ip = Ipv4Addr::from(range.base + 1 + off);
            if ip == range.first() && object::name(obj) != "kubernetes" {
                continue;
            }
            if claim(&ctx.server.storage, &format!("{IP_PREFIX}{ip}"), &owner).await? {
                got = Some(ip);
                break;
            }
        }
        let Some(ip) = got else {
            return Err(ApiError::internal("failed to allocate a serviceIP: range is full"));
        };
        obj["spec"]["clusterIP"] = json!(ip.to_string());
        obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
    }
    obj["spec"]["ipFamilies"] = json!(["IPv4"]);
    obj["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    Ok(())
}

async fn allocate_node_ports(ctx: &Ctx, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if !matches!(ty, "NodePort" | "LoadBalancer") {
        return Ok(());
    }
    let range = ctx.server.config.node_port_range;
    let owner = svc_owner(obj);
    let old_ports: Vec<i64> = old.map(node_ports).unwrap_or_default();
    let n = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
    for i in 0..n {
        let want = obj["spec"]["ports"][i]
            .get("nodePort")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if want != 0 {
            if old_ports.contains(&want) {
                continue;
            }
            if want < i64::from(range.first) || want > i64::from(range.last) {
                return Err(invalid(
                    ctx,
                    &format!("spec.ports[{i}].nodePort"),
                    json!(want),
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        range.first, range.last
                    ),
                ));
            }
            if !claim(&ctx.server.storage, &format!("{PORT_PREFIX}{want}"), &owner).await? {
                return Err(invalid(
                    ctx,
                    &format!("spec.ports[{i}].nodePort"),
                    json!(want),
                    "provided port is already allocated",
                ));
            }
            continue;
        }
        let span = u32::from(range.last - range.first) + 1;
        let start = rand::random_range(0..span);
        let mut got = None;
        for k in 0..span {
            let port = u32::from(range.first) + (start + k) % span;
            if claim(&ctx.server.storage, &format!("{PORT_PREFIX}{port}"), &owner).await? {
                got = Some(port);
                break;
            }
        }
        let Some(port) = got else {
            return Err(ApiError::internal("failed to allocate a nodePort: range is full"));
        };
        obj["spec"]["ports"][i]["nodePort"] = json!(port);
    }
    allocate_health_check_node_port(ctx, obj, old, &owner).await
}

/// A LoadBalancer Service with `externalTrafficPolicy: Local` gets a
/// `healthCheckNodePort` from the node port range (or keeps the one it
/// asked for or had), as upstream's allocator gives it.
async fn allocate_health_check_node_port(
    ctx: &Ctx,
    obj: &mut Value,
    old: Option<&Value>,
    owner: &str,
) -> ApiResult<()> {
    let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let local = obj.pointer("/spec/externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
    if ty != "LoadBalancer" || !local {
        return Ok(());
    }
    let old_hc = old
        .and_then(|o| o.pointer("/spec/healthCheckNodePort"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let want = obj
        .pointer("/spec/healthCheckNodePort")
        .and_then(Value::as_i64)
        .unwrap_or(old_hc);
    let range = ctx.server.config.node_port_range;
    if want != 0 {
        if want != old_hc && !claim(&ctx.server.storage, &format!("{PORT_PREFIX}{want}"), owner).await? {
            return Err(invalid(
                ctx,
                "spec.healthCheckNodePort",
                json!(want),
                "provided port is already allocated",
            ));
        }
        obj["spec"]["healthCheckNodePort"] = json!(want);
        return Ok(());
    }
    let span = u32::from(range.last - range.first) + 1;
    let start = rand::random_range(0..span);
    for k in 0..span {
        let port = u32::from(range.first) + (start + k) % span;
        if claim(&ctx.server.storage, &format!("{PORT_PREFIX}{port}"), owner).await? {
            obj["spec"]["healthCheckNodePort"] = json!(port);
            return Ok(());
        }
    }
    Err(ApiError::internal(
        "failed to allocate a healthCheckNodePort: range is full",
    ))
}

fn node_ports(obj: &Value) -> Vec<i64> {
    let mut ports: Vec<i64> = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                .collect()
        })
        .unwrap_or_default();
    if let Some(hc) = obj.pointer("/spec/healthCheckNodePort").and_then(Value::as_i64) {
        ports.push(hc);
    }
    ports
}

fn cluster_ips(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| *s != "None")
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

async fn release_service(storage: &Storage, obj: &Value, keep: Option<&Value>) {
    let keep_ips = keep.map(cluster_ips).unwrap_or_default();
    let keep_ports = keep.map(node_ports).unwrap_or_default();
    for ip in cluster_ips(obj) {
        if !keep_ips.contains(&ip) {
            release(storage, &format!("{IP_PREFIX}{ip}")).await;
        }
    }
    for p in node_ports(obj) {
        if !keep_ports.contains(&p) {
            release(storage, &format!("{PORT_PREFIX}{p}")).await;
        }
    }
}

fn is(ctx: &Ctx, group: &str, kind: &str) -> bool {
    ctx.rt.group == group && ctx.rt.kind == kind
}

pub async fn on_create(ctx: &Ctx, obj: &mut Value, dry_run: bool) -> ApiResult<()> {
    if is(ctx, "", "Service") && !dry_run {
        allocate_ip(ctx, obj).await?;
        if let Err(e) = allocate_node_ports(ctx, obj, None).await {
            release_service(&ctx.server.storage, obj, None).await;
            return Err(e);
        }
    }
    if is(ctx, "apiextensions.k8s.io", "CustomResourceDefinition") {
        let errs = crate::customresource::validate_crd(obj);
        if !errs.is_empty() {
            return Err(ApiError::Invalid {
                target: ctx.target(object::name(obj)),
                errors: errs,
            });
        }
        obj["status"] = crate::customresource::established_status(obj);
        if !dry_run {
            crate::customresource::sync(&ctx.server.registry, obj, false);
            ctx.server.openapi.invalidate();
        }
    }
    Ok(())
}

/// Undoes `on_create`'s allocations after the write failed.
pub async fn on_create_failed(ctx: &Ctx, obj: &Value) {
    if is(ctx, "", "Service") {
        release_service(&ctx.server.storage, obj, None).await;
    }
}

pub async fn on_update(ctx: &Ctx, new: &mut Value, old: &Value, dry_run: bool) -> ApiResult<()> {
    if is(ctx, "", "Service") && ctx.info.subresource.is_empty() {
        let s = |o: &Value, p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        let (old_ip, new_ip) = (s(old, "/spec/clusterIP"), s(new, "/spec/clusterIP"));
        let (old_ty, new_ty) = (s(old, "/spec/type"), s(new, "/spec/type"));
        let (old_ty, new_ty) = (old_ty.as_str(), new_ty.as_str());
        if new_ip.is_empty() && !old_ip.is_empty() && new_ty != "ExternalName" {
            new["spec"]["clusterIP"] = json!(old_ip);
            if let Some(ips) = old.pointer("/spec/clusterIPs") {
                new["spec"]["clusterIPs"] = ips.clone();
            }
            for k in ["ipFamilies", "ipFamilyPolicy"] {
                if let Some(v) = old.pointer(&format!("/spec/{k}")) {
                    new["spec"][k] = v.clone();
                }
            }
        } else if new_ip != old_ip && old_ty != "ExternalName" && new_ty != "ExternalName" {
            return Err(invalid(
                ctx,
                "spec.clusterIPs[0]",
                json!([new_ip]),
                "may not change once set",
            ));
        }
        // Keep node ports the client left out, as upstream does.
        if matches!(new_ty, "NodePort" | "LoadBalancer") {
            let olds = old
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) == 0
                        && let Some(o) = olds.iter().find(|o| o.get("port") == p.get("port"))
                        && let Some(np) = o.get("nodePort")
                    {
                        p["nodePort"] = np.clone();
                    }
                }
            }
        }
        if !dry_run {
            if old_ty == "ExternalName" && new_ty != "ExternalName" {
                allocate_ip(ctx, new).await?;
            }
            allocate_node_ports(ctx, new, Some(old)).await?;
            release_service(&ctx.server.storage, old, Some(new)).await;
        }
    }
    if is(ctx, "apiextensions.k8s.io", "CustomResourceDefinition") {
        let errs = crate::customresource::validate_crd(new);
        if !errs.is_empty() {
            return Err(ApiError::Invalid {
                target: ctx.target(object::name(new)),
                errors: errs,
            });
        }
        if ctx.info.subresource.is_empty() {
            new["status"] = crate::customresource::established_status(new);
        }
        if !dry_run {
            crate::customresource::sync(&ctx.server.registry, new, false);
            ctx.server.openapi.invalidate();
        }
    }
    Ok(())
}

pub async fn on_delete(ctx: &Ctx, obj: &Value) {
    if is(ctx, "", "Service") {
        release_service(&ctx.server.storage, obj, None).await;
    }
    if is(ctx, "apiextensions.k8s.io", "CustomResourceDefinition") {
        // Custom objects go with their definition.
        let group = obj.pointer("/spec/group").and_then(Value::as_str).unwrap_or("");
        let plural = obj.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("");
        if !group.is_empty() && !plural.is_empty() {
            let prefix = format!("/registry/{group}/{plural}/");
            if let Ok(page) = ctx.server.storage.list(&prefix, "", 0, ReadAt::Latest).await {
                for s in page.items {
                    let _ = ctx.server.storage.cas(&s.key, s.revision, None).await;
                }
            }
        }
        crate::customresource::sync(&ctx.server.registry, obj, true);
        ctx.server.openapi.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        let r = IpRange::parse("10.96.0.0/12").expect("cidr");
        assert_eq!(r.first(), Ipv4Addr::new(10, 96, 0, 1));
        assert!(r.contains(Ipv4Addr::new(10, 100, 1, 1)));
        assert!(!r.contains(Ipv4Addr::new(10, 96, 0, 0)));
        assert!(IpRange::parse("10.0.0.0").is_err());
        let p = PortRange::parse("30000-32767").expect("ports");
        assert_eq!((p.first, p.last), (30000, 32767));
        assert!(PortRange::parse("5-1").is_err());
    }
}
