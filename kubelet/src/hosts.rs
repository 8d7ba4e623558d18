//! The pod's `/etc/hosts` and hostname, as upstream's `makeHostsMount`,
//! `ensureHostsFile` and `GeneratePodHostNameAndDomain`
//! (`pkg/kubelet/kubelet_pods.go`).
//!
//! Everything here is plain functions over the pod; the volume manager
//! writes the file (`<root>/pods/<uid>/etc-hosts`) and mounts it.

use apimachinery::validation::is_dns1123_label;
use k8s_openapi::api::core::v1::{HostAlias, Pod};

/// The first line of a managed hosts file.
pub const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
/// The first line of a host-network pod's hosts file (the node's file follows).
pub const MANAGED_HOSTS_HEADER_WITH_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// Linux's limit on a hostname (a DNS label).
const HOSTNAME_MAX_LEN: usize = 63;
/// The kernel's nodename field holds 64 characters.
const FQDN_MAX_LEN: usize = 64;

/// The managed /etc/hosts content for a pod. A pod on the host network gets
/// the node's file (`host_etc_hosts`) under its own header; any other pod a
/// file naming localhost, the IPv6 specials and each pod IP with the pod's
/// hostname (and FQDN when a subdomain is set). HostAliases follow in both.
pub fn hosts_file(pod: &Pod, pod_ips: &[String], host_etc_hosts: &str, cluster_domain: &str) -> String {
    let spec = pod.spec.as_ref();
    let aliases = spec.and_then(|s| s.host_aliases.as_deref()).unwrap_or_default();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        let mut out = String::from(MANAGED_HOSTS_HEADER_WITH_HOST_NETWORK);
        out.push_str(host_etc_hosts);
        out.push_str(&host_alias_entries(aliases));
        return out;
    }
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match &domain {
            Some(domain) => out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    out.push_str(&host_alias_entries(aliases));
    out
}

/// The HostAliases block: an empty line, a comment, then one line per alias
/// IP with all its hostnames tab-separated.
fn host_alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        let names = alias.hostnames.as_deref().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{}\n", alias.ip, names));
    }
    out
}

/// The pod's hostname for its sandbox and its domain. The hostname is
/// `spec.hostname` or the pod name (cut to 63 characters, without a trailing
/// `-` or `.`); with `setHostnameAsFQDN` and a subdomain it is the FQDN
/// `<hostname>.<subdomain>.<ns>.svc.<domain>` instead, as upstream's
/// `GetNodenameForKernel` (an FQDN longer than 64 characters, which upstream
/// refuses, falls back to the short name here; see [`kernel_hostname`]). The
/// domain is `<subdomain>.<ns>.svc.<cluster_domain>` when `spec.subdomain` is
/// set.
pub fn pod_hostname(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    match kernel_hostname(pod, cluster_domain) {
        Ok(name) => (name, domain),
        Err(err) => {
            tracing::warn!(pod = pod.metadata.name.as_deref().unwrap_or_default(), %err, "using the short hostname");
            (hostname, domain)
        }
    }
}

/// The short hostname and the domain, as upstream's
/// `GeneratePodHostNameAndDomain` (invalid `hostname`/`subdomain` values, which
/// the API refuses, are ignored with a warning).
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let mut hostname = pod_name.clone();
    if let Some(h) = spec.and_then(|s| s.hostname.as_deref()).filter(|h| !h.is_empty()) {
        let errs = is_dns1123_label(h);
        if errs.is_empty() {
            hostname = h.to_string();
        } else {
            tracing::warn!(pod = %pod_name, "pod Hostname {h:?} is not a valid DNS label: {}", errs.join(";"));
        }
    }
    let hostname = truncate_hostname(&hostname);
    let domain = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
        .and_then(|sub| {
            let errs = is_dns1123_label(sub);
            if !errs.is_empty() {
                tracing::warn!(pod = %pod_name, "pod Subdomain {sub:?} is not a valid DNS label: {}", errs.join(";"));
                return None;
            }
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            Some(format!("{sub}.{ns}.svc.{cluster_domain}"))
        });
    (hostname, domain)
}

/// The name the pod's kernel (UTS namespace) gets: the FQDN when
/// `setHostnameAsFQDN` is true and the pod has a domain, else the short name.
pub fn kernel_hostname(pod: &Pod, cluster_domain: &str) -> anyhow::Result<String> {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    let as_fqdn = pod.spec.as_ref().and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false);
    match domain {
        Some(domain) if as_fqdn => {
            let fqdn = format!("{hostname}.{domain}");
            if fqdn.len() > FQDN_MAX_LEN {
                anyhow::bail!(
                    "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long ({FQDN_MAX_LEN} characters is the max, {} characters requested)",
                    fqdn.len()
                );
            }
            Ok(fqdn)
        }
        _ => Ok(hostname),
    }
}

fn truncate_hostname(hostname: &str) -> String {
    if hostname.len() <= HOSTNAME_MAX_LEN {
        return hostname.to_string();
    }
    // Pod names are DNS subdomains (ASCII), so a byte cut is a character cut.
    let cut = hostname.get(..HOSTNAME_MAX_LEN).unwrap_or(hostname);
    cut.trim_end_matches(['-', '.']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    const LOCAL: &str = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";

    #[test]
    fn hosts_file_cases() {
        struct Case {
            why: &'static str,
            pod: serde_json::Value,
            ips: Vec<&'static str>,
            want: String,
        }
        let cases = [
            Case {
                why: "plain pod: its name on each pod IP",
                pod: json!({"metadata": {"name": "web-0", "namespace": "ns"}, "spec": {"containers": []}}),
                ips: vec!["10.0.0.5", "fd00::5"],
                want: format!("{LOCAL}10.0.0.5\tweb-0\nfd00::5\tweb-0\n"),
            },
            Case {
                why: "hostname and subdomain: FQDN first, then the short name",
                pod: json!({"metadata": {"name": "p", "namespace": "ns"},
                    "spec": {"hostname": "db", "subdomain": "svc1", "containers": []}}),
                ips: vec!["10.0.0.6"],
                want: format!("{LOCAL}10.0.0.6\tdb.svc1.ns.svc.cluster.local\tdb\n"),
            },
            Case {
                why: "host aliases after a blank line, hostnames of one IP on one line",
                pod: json!({"metadata": {"name": "p", "namespace": "ns"},
                    "spec": {"containers": [], "hostAliases": [
                        {"ip": "1.2.3.4", "hostnames": ["foo", "bar"]},
                        {"ip": "::9", "hostnames": ["baz"]}]}}),
                ips: vec!["10.0.0.7"],
                want: format!(
                    "{LOCAL}10.0.0.7\tp\n\n# Entries added by HostAliases.\n1.2.3.4\tfoo\tbar\n::9\tbaz\n"
                ),
            },
            Case {
                why: "host network: the node's file under its own header, aliases after",
                pod: json!({"metadata": {"name": "p", "namespace": "ns"},
                    "spec": {"hostNetwork": true, "containers": [],
                        "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["foo"]}]}}),
                ips: vec!["192.168.1.10"],
                want: "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost node1\n\n# Entries added by HostAliases.\n1.2.3.4\tfoo\n".to_string(),
            },
            Case {
                why: "no pod IP yet: only the fixed entries",
                pod: json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}}),
                ips: vec![],
                want: LOCAL.to_string(),
            },
        ];
        for c in cases {
            let ips: Vec<String> = c.ips.iter().map(|s| s.to_string()).collect();
            let got = hosts_file(&pod(c.pod), &ips, "127.0.0.1 localhost node1\n", "cluster.local");
            assert_eq!(got, c.want, "{}", c.why);
        }
    }

    #[test]
    fn hostname_cases() {
        let long = "a".repeat(62) + "-b-c";
        let cases = [
            (
                "pod name",
                json!({"metadata": {"name": "web"}, "spec": {"containers": []}}),
                ("web".to_string(), None),
            ),
            (
                "spec.hostname wins",
                json!({"metadata": {"name": "web"}, "spec": {"hostname": "h", "containers": []}}),
                ("h".to_string(), None),
            ),
            (
                "long name cut to 63 without trailing dash",
                json!({"metadata": {"name": long}, "spec": {"containers": []}}),
                ("a".repeat(62), None),
            ),
            (
                "subdomain gives the domain",
                json!({"metadata": {"name": "web", "namespace": "n"}, "spec": {"subdomain": "s", "containers": []}}),
                ("web".to_string(), Some("s.n.svc.cluster.local")),
            ),
            (
                "setHostnameAsFQDN with a subdomain: the FQDN",
                json!({"metadata": {"name": "web", "namespace": "n"},
                    "spec": {"subdomain": "s", "setHostnameAsFQDN": true, "containers": []}}),
                ("web.s.n.svc.cluster.local".to_string(), Some("s.n.svc.cluster.local")),
            ),
            (
                "setHostnameAsFQDN without a subdomain: the short name",
                json!({"metadata": {"name": "web", "namespace": "n"},
                    "spec": {"setHostnameAsFQDN": true, "containers": []}}),
                ("web".to_string(), None),
            ),
            (
                "invalid hostname ignored",
                json!({"metadata": {"name": "web"}, "spec": {"hostname": "Not_Valid", "containers": []}}),
                ("web".to_string(), None),
            ),
        ];
        for (why, p, (name, domain)) in cases {
            let got = pod_hostname(&pod(p), "cluster.local");
            assert_eq!(got, (name, domain.map(str::to_string)), "{why}");
        }
    }

    #[test]
    fn fqdn_too_long_is_refused_by_kernel_hostname() {
        let p = pod(json!({"metadata": {"name": "x".repeat(41), "namespace": "n"},
            "spec": {"subdomain": "sub", "setHostnameAsFQDN": true, "containers": []}}));
        let err = kernel_hostname(&p, "cluster.local").unwrap_err().to_string();
        assert!(err.contains("is too long (64 characters is the max"), "{err}");
        assert_eq!(pod_hostname(&p, "cluster.local").0, "x".repeat(41));
    }
}
