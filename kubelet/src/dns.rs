//! The pod's resolver configuration, as upstream's `Configurer.GetPodDNS`
//! (`pkg/kubelet/network/dns/dns.go`): the dnsPolicy picks the base (cluster
//! DNS, the host's resolv.conf, or nothing), the pod's `dnsConfig` is merged
//! in, and the result is cut to the resolver's limits.
//!
//! [`pod_dns`] is the logic over plain data (the host's resolv.conf passed as
//! text); [`pod_dns_config`] reads the file and logs the warnings that
//! upstream records as events.

use std::net::IpAddr;
use std::path::PathBuf;

use k8s_cri::v1::DnsConfig;
use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

/// The options of a ClusterFirst pod.
const DEFAULT_DNS_OPTIONS: &[&str] = &["ndots:5"];
/// Upstream's `MaxDNSNameservers`.
pub const MAX_DNS_NAMESERVERS: usize = 3;
/// Upstream's `MaxDNSSearchPathsExpanded` (ExpandedDNSConfig is GA).
pub const MAX_DNS_SEARCH_PATHS: usize = 32;
/// Upstream's `MaxDNSSearchListCharsExpanded`.
pub const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
/// A search path longer than a DNS subdomain makes some resolvers (glibc 2.28) abort.
const MAX_SEARCH_PATH_LEN: usize = 253;
/// resolv.conf is read up to this size, as upstream.
const MAX_RESOLV_CONF_LEN: u64 = 10 << 20;

/// The kubelet's DNS flags.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// `--cluster-dns`.
    pub cluster_dns: Vec<IpAddr>,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// `--resolv-conf` (default `/etc/resolv.conf`); empty: no host resolver
    /// (the pod gets the local machine's nameserver, as upstream).
    pub host_resolv_conf: PathBuf,
}

/// Something upstream reports as an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsWarning {
    /// The event reason: `MissingClusterDNS` or `DNSConfigForming`.
    pub reason: &'static str,
    pub message: String,
}

/// The CRI DNS config for the pod. Reads `settings.host_resolv_conf`;
/// warnings (no cluster DNS for a ClusterFirst pod, limits exceeded) are
/// logged. [`pod_dns_config_with_warnings`] returns them instead.
pub fn pod_dns_config(pod: &Pod, settings: &DnsSettings) -> anyhow::Result<DnsConfig> {
    let (config, warnings) = pod_dns_config_with_warnings(pod, settings)?;
    for w in warnings {
        tracing::warn!(
            pod = pod.metadata.name.as_deref().unwrap_or_default(),
            reason = w.reason,
            "{}",
            w.message
        );
    }
    Ok(config)
}

/// [`pod_dns_config`], returning the warnings for the caller to record as
/// the pod's events.
pub fn pod_dns_config_with_warnings(pod: &Pod, settings: &DnsSettings) -> anyhow::Result<(DnsConfig, Vec<DnsWarning>)> {
    let host_resolv = if settings.host_resolv_conf.as_os_str().is_empty() {
        None
    } else {
        use std::io::Read;
        let file = std::fs::File::open(&settings.host_resolv_conf)
            .map_err(|e| anyhow::anyhow!("open {}: {e}", settings.host_resolv_conf.display()))?;
        let mut text = String::new();
        file.take(MAX_RESOLV_CONF_LEN)
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("read {}: {e}", settings.host_resolv_conf.display()))?;
        Some(text)
    };
    pod_dns(pod, settings, host_resolv.as_deref())
}

/// Where a pod's resolver configuration starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodDnsType {
    Cluster,
    Host,
    None,
}

fn pod_dns_type(pod: &Pod) -> PodDnsType {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    match spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst") {
        "None" => PodDnsType::None,
        "ClusterFirstWithHostNet" => PodDnsType::Cluster,
        "ClusterFirst" if !host_network => PodDnsType::Cluster,
        // ClusterFirst on the host network behaves as Default.
        "ClusterFirst" | "Default" => PodDnsType::Host,
        other => {
            tracing::error!("invalid DNSPolicy={other}; falling back to DNSClusterFirst policy");
            PodDnsType::Cluster
        }
    }
}

/// The pod's DNS config from the settings and the host's resolv.conf text
/// (`None` when `--resolv-conf` is empty).
pub fn pod_dns(
    pod: &Pod,
    settings: &DnsSettings,
    host_resolv_conf: Option<&str>,
) -> anyhow::Result<(DnsConfig, Vec<DnsWarning>)> {
    let mut warnings = Vec::new();
    let mut config = match host_resolv_conf {
        Some(text) => parse_resolv_conf(text)?,
        None => DnsConfig::default(),
    };
    let mut dns_type = pod_dns_type(pod);
    if dns_type == PodDnsType::Cluster && settings.cluster_dns.is_empty() {
        warnings.push(DnsWarning {
            reason: "MissingClusterDNS",
            message: "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.".to_string(),
        });
        dns_type = PodDnsType::Host;
    }
    match dns_type {
        PodDnsType::None => config = DnsConfig::default(),
        PodDnsType::Cluster => {
            config.servers = settings.cluster_dns.iter().map(IpAddr::to_string).collect();
            config.searches = cluster_first_searches(&config.searches, pod, &settings.cluster_domain);
            config.options = DEFAULT_DNS_OPTIONS.iter().map(|s| s.to_string()).collect();
        }
        PodDnsType::Host => {
            if host_resolv_conf.is_none() {
                // No host resolver configured: the local machine's nameserver
                // (upstream picks ::1 for IPv6-only nodes; we do not know the
                // node's IPs here).
                config.servers = vec!["127.0.0.1".to_string()];
                config.searches = vec![".".to_string()];
            }
        }
    }
    if let Some(pod_config) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        append_pod_dns_config(&mut config, pod_config);
    }
    fit_limits(&mut config, &mut warnings);
    Ok((config, warnings))
}

/// Parses resolv.conf: `nameserver` lines accumulate, the last `search` and
/// `options` lines win, search domains lose a trailing dot.
pub fn parse_resolv_conf(text: &str) -> anyhow::Result<DnsConfig> {
    let mut config = DnsConfig::default();
    let mut errors = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"nameserver") => match fields.get(1) {
                Some(server) => config.servers.push(server.to_string()),
                None => errors.push("nameserver list is empty "),
            },
            Some(&"search") => {
                config.searches = fields[1..]
                    .iter()
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some(&"options") => config.options = fields[1..].iter().map(|s| s.to_string()).collect(),
            _ => {}
        }
    }
    match errors.as_slice() {
        [] => Ok(config),
        [one] => anyhow::bail!("{one}"),
        many => anyhow::bail!("[{}]", many.join(", ")),
    }
}

fn cluster_first_searches(host_searches: &[String], pod: &Pod, cluster_domain: &str) -> Vec<String> {
    if cluster_domain.is_empty() {
        return host_searches.to_vec();
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut searches = vec![
        format!("{ns}.svc.{cluster_domain}"),
        format!("svc.{cluster_domain}"),
        cluster_domain.to_string(),
    ];
    searches.extend(host_searches.iter().cloned());
    omit_duplicates(searches)
}

fn omit_duplicates(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

/// Appends the pod's nameservers and searches (duplicates dropped) and
/// merges its options: a pod option replaces the one of the same name.
fn append_pod_dns_config(config: &mut DnsConfig, pod_config: &PodDNSConfig) {
    let mut servers = std::mem::take(&mut config.servers);
    servers.extend(pod_config.nameservers.iter().flatten().cloned());
    config.servers = omit_duplicates(servers);
    let mut searches = std::mem::take(&mut config.searches);
    searches.extend(pod_config.searches.iter().flatten().cloned());
    config.searches = omit_duplicates(searches);

    // Options as (name, value) in first-seen order; a later value wins.
    let mut options: Vec<(String, String)> = Vec::new();
    let mut set = |name: String, value: String| match options.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => options.push((name, value)),
    };
    for op in &config.options {
        match op.split_once(':') {
            Some((name, value)) => set(name.to_string(), value.to_string()),
            None => set(op.clone(), String::new()),
        }
    }
    for op in pod_config.options.iter().flatten() {
        set(
            op.name.clone().unwrap_or_default(),
            op.value.clone().unwrap_or_default(),
        );
    }
    config.options = options
        .into_iter()
        .map(|(name, value)| {
            if value.is_empty() {
                name
            } else {
                format!("{name}:{value}")
            }
        })
        .collect();
}

fn fit_limits(config: &mut DnsConfig, warnings: &mut Vec<DnsWarning>) {
    if config.servers.len() > MAX_DNS_NAMESERVERS {
        config.servers.truncate(MAX_DNS_NAMESERVERS);
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                config.servers.join(" ")
            ),
        });
    }
    let mut exceeded = false;
    if config.searches.len() > MAX_DNS_SEARCH_PATHS {
        config.searches.truncate(MAX_DNS_SEARCH_PATHS);
        exceeded = true;
    }
    let before = config.searches.len();
    config.searches.retain(|s| s.len() <= MAX_SEARCH_PATH_LEN);
    exceeded |= config.searches.len() != before;
    let line_len = config.searches.join(" ").len();
    if line_len > MAX_DNS_SEARCH_LIST_CHARS {
        // Drop domains from the end until the line fits.
        let mut cut_len = 0;
        let mut cut = 0;
        for s in config.searches.iter().rev() {
            cut_len += s.len() + 1;
            cut += 1;
            if line_len - cut_len.min(line_len) <= MAX_DNS_SEARCH_LIST_CHARS {
                break;
            }
        }
        let keep = config.searches.len() - cut;
        config.searches.truncate(keep);
        exceeded = true;
    }
    if exceeded {
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                config.searches.join(" ")
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns1"}, "spec": spec})).expect("pod")
    }

    fn settings(cluster_dns: &[&str]) -> DnsSettings {
        DnsSettings {
            cluster_dns: cluster_dns.iter().map(|s| s.parse().expect("ip")).collect(),
            cluster_domain: "cluster.local".to_string(),
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const HOST: &str = "# comment\nnameserver 192.168.0.1\nnameserver 192.168.0.2\nsearch example.com. corp.example\noptions timeout:2 rotate\n";

    #[test]
    fn policies() {
        struct Case {
            why: &'static str,
            spec: serde_json::Value,
            cluster_dns: &'static [&'static str],
            host: Option<&'static str>,
            servers: &'static [&'static str],
            searches: &'static [&'static str],
            options: &'static [&'static str],
            warnings: &'static [&'static str],
        }
        let cluster_searches = &[
            "ns1.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "example.com",
            "corp.example",
        ];
        let cases = [
            Case {
                why: "ClusterFirst (default): cluster DNS, cluster searches then the host's, ndots:5",
                spec: json!({"containers": []}),
                cluster_dns: &["10.96.0.10"],
                host: Some(HOST),
                servers: &["10.96.0.10"],
                searches: cluster_searches,
                options: &["ndots:5"],
                warnings: &[],
            },
            Case {
                why: "ClusterFirst on the host network: the host's resolv.conf",
                spec: json!({"containers": [], "hostNetwork": true}),
                cluster_dns: &["10.96.0.10"],
                host: Some(HOST),
                servers: &["192.168.0.1", "192.168.0.2"],
                searches: &["example.com", "corp.example"],
                options: &["timeout:2", "rotate"],
                warnings: &[],
            },
            Case {
                why: "ClusterFirstWithHostNet on the host network: cluster DNS",
                spec: json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
                cluster_dns: &["10.96.0.10"],
                host: Some(HOST),
                servers: &["10.96.0.10"],
                searches: cluster_searches,
                options: &["ndots:5"],
                warnings: &[],
            },
            Case {
                why: "Default: the host's resolv.conf",
                spec: json!({"containers": [], "dnsPolicy": "Default"}),
                cluster_dns: &["10.96.0.10"],
                host: Some(HOST),
                servers: &["192.168.0.1", "192.168.0.2"],
                searches: &["example.com", "corp.example"],
                options: &["timeout:2", "rotate"],
                warnings: &[],
            },
            Case {
                why: "ClusterFirst without cluster DNS: Default, with a warning",
                spec: json!({"containers": []}),
                cluster_dns: &[],
                host: Some(HOST),
                servers: &["192.168.0.1", "192.168.0.2"],
                searches: &["example.com", "corp.example"],
                options: &["timeout:2", "rotate"],
                warnings: &["MissingClusterDNS"],
            },
            Case {
                why: "Default without --resolv-conf: the local nameserver and search '.'",
                spec: json!({"containers": [], "dnsPolicy": "Default"}),
                cluster_dns: &[],
                host: None,
                servers: &["127.0.0.1"],
                searches: &["."],
                options: &[],
                warnings: &[],
            },
            Case {
                why: "None: only the pod's dnsConfig",
                spec: json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                    "nameservers": ["1.1.1.1"], "searches": ["a.example"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}),
                cluster_dns: &["10.96.0.10"],
                host: Some(HOST),
                servers: &["1.1.1.1"],
                searches: &["a.example"],
                options: &["ndots:2", "edns0"],
                warnings: &[],
            },
            Case {
                why: "ClusterFirst merged with dnsConfig: duplicates dropped, pod options override",
                spec: json!({"containers": [], "dnsConfig": {
                    "nameservers": ["10.96.0.10", "8.8.8.8"], "searches": ["cluster.local", "x.example"],
                    "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}]}}),
                cluster_dns: &["10.96.0.10"],
                host: Some("nameserver 192.168.0.1\n"),
                servers: &["10.96.0.10", "8.8.8.8"],
                searches: &[
                    "ns1.svc.cluster.local",
                    "svc.cluster.local",
                    "cluster.local",
                    "x.example",
                ],
                options: &["ndots:1", "single-request"],
                warnings: &[],
            },
            Case {
                why: "more than 3 nameservers: cut, with a warning",
                spec: json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                    "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}}),
                cluster_dns: &[],
                host: None,
                servers: &["1.1.1.1", "2.2.2.2", "3.3.3.3"],
                searches: &[],
                options: &[],
                warnings: &["DNSConfigForming"],
            },
        ];
        for c in cases {
            let (got, warnings) = pod_dns(&pod(c.spec), &settings(c.cluster_dns), c.host).expect(c.why);
            assert_eq!(got.servers, strs(c.servers), "{}", c.why);
            assert_eq!(got.searches, strs(c.searches), "{}", c.why);
            assert_eq!(got.options, strs(c.options), "{}", c.why);
            let reasons: Vec<&str> = warnings.iter().map(|w| w.reason).collect();
            assert_eq!(reasons, c.warnings, "{}", c.why);
        }
    }

    #[test]
    fn search_limits() {
        // 40 searches: cut to 32.
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let p = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {"searches": many}}));
        let (got, warnings) = pod_dns(&p, &settings(&[]), None).expect("dns");
        assert_eq!(got.searches.len(), 32);
        assert_eq!(got.searches[31], "d31.example");
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].message.starts_with("Search Line limits were exceeded"),
            "{:?}",
            warnings
        );

        // Too long a line: domains dropped from the end until it fits 2048.
        let long: Vec<String> = (0..10).map(|i| format!("{}{i}.example", "x".repeat(240))).collect();
        let p = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {"searches": long}}));
        let (got, _) = pod_dns(&p, &settings(&[]), None).expect("dns");
        assert!(got.searches.join(" ").len() <= MAX_DNS_SEARCH_LIST_CHARS);
        assert_eq!(got.searches.len(), 8);

        // A search path longer than 253 characters is dropped.
        let p = pod(json!({"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"searches": ["a.example", "y".repeat(254)]}}));
        let (got, warnings) = pod_dns(&p, &settings(&[]), None).expect("dns");
        assert_eq!(got.searches, strs(&["a.example"]));
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn resolv_conf_parsing() {
        let got =
            parse_resolv_conf("search a.\nsearch b. c\noptions x\noptions y:1\nnameserver 1.1.1.1\n").expect("parse");
        assert_eq!(
            got.searches,
            strs(&["b", "c"]),
            "last search line wins, trailing dots dropped"
        );
        assert_eq!(got.options, strs(&["y:1"]), "last options line wins");
        assert_eq!(got.servers, strs(&["1.1.1.1"]));
        assert!(parse_resolv_conf("nameserver\n").is_err());
    }

    #[test]
    fn reads_the_host_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, HOST).expect("write");
        let mut s = settings(&[]);
        s.host_resolv_conf = path;
        let got = pod_dns_config(&pod(json!({"containers": [], "dnsPolicy": "Default"})), &s).expect("dns");
        assert_eq!(got.servers, strs(&["192.168.0.1", "192.168.0.2"]));
        s.host_resolv_conf = dir.path().join("missing");
        assert!(pod_dns_config(&pod(json!({"containers": []})), &s).is_err());
    }
}
