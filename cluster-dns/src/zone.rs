//! The cluster zone: DNS records for a set of Services and EndpointSlices,
//! as CoreDNS's `kubernetes` plugin (`pods insecure`) and the Kubernetes DNS
//! specification define them. Pure: the watch loop feeds objects in, the
//! server asks `(name, type)` and gets `(rcode, answers, authority,
//! additionals)` back.
//!
//! Every name a Service produces is precomputed into one index (a HashMap
//! by lowercase name), so a query is one lookup. A change to a Service or
//! one of its EndpointSlices rebuilds only that Service's names.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::objects::{Key, ServiceInfo, ServiceKind, SliceInfo};

/// The zone's settings (`--cluster-domain`, `--ttl`).
#[derive(Clone, Debug)]
pub struct ZoneConfig {
    /// `cluster.local`, without a trailing dot.
    pub domain: String,
    /// TTL of every record, and the SOA's minimum.
    pub ttl: u32,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        ZoneConfig {
            domain: "cluster.local".into(),
            ttl: 5,
        }
    }
}

/// What the zone says about a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// The zone is authoritative: answer with this.
    Answer(Answer),
    /// Not ours (outside the cluster domain, or a reverse name we do not
    /// know): the server forwards it.
    Forward,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// The records at one name.
#[derive(Clone, Debug, Default, PartialEq)]
struct NameRecords {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    /// `(port, target, target's index key)`.
    srv: Vec<(u16, Name, String)>,
    cname: Option<Name>,
}

/// The names and reverse entries one Service owns.
#[derive(Clone, Debug, Default)]
struct Owned {
    names: Vec<String>,
    ptrs: Vec<IpAddr>,
}

#[derive(Debug)]
pub struct Zone {
    config: ZoneConfig,
    /// The zone apex as a name, `cluster.local.`.
    apex: Name,
    services: HashMap<Key, ServiceInfo>,
    slices: HashMap<Key, SliceInfo>,
    slices_by_service: HashMap<Key, BTreeSet<String>>,
    owned: HashMap<Key, Owned>,
    /// Every name of every Service (lowercase, no trailing dot).
    names: HashMap<String, NameRecords>,
    /// Reverse entries: an address to the names it has, per owning Service.
    ptrs: HashMap<IpAddr, Vec<(Key, Name)>>,
    /// Services per namespace: `<ns>.svc.<domain>` exists while one does.
    namespaces: HashMap<String, usize>,
    serial: u32,
}

impl Zone {
    pub fn new(config: ZoneConfig) -> Zone {
        let domain = config.domain.trim_end_matches('.').to_ascii_lowercase();
        let apex = fqdn(&domain).unwrap_or_else(|_| Name::root());
        Zone {
            config: ZoneConfig { domain, ..config },
            apex,
            services: HashMap::new(),
            slices: HashMap::new(),
            slices_by_service: HashMap::new(),
            owned: HashMap::new(),
            names: HashMap::new(),
            ptrs: HashMap::new(),
            namespaces: HashMap::new(),
            serial: 0,
        }
    }

    /// A zone holding exactly these objects.
    pub fn from_snapshot(
        config: ZoneConfig,
        services: impl IntoIterator<Item = ServiceInfo>,
        slices: impl IntoIterator<Item = SliceInfo>,
    ) -> Zone {
        let mut zone = Zone::new(config);
        zone.replace_slices(slices);
        zone.replace_services(services);
        zone
    }

    pub fn config(&self) -> &ZoneConfig {
        &self.config
    }

    /// The SOA serial (CoreDNS: the time of the last change, in seconds).
    pub fn set_serial(&mut self, serial: u32) {
        self.serial = serial;
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// How many names the index holds.
    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    pub fn upsert_service(&mut self, svc: ServiceInfo) {
        let key = svc.key();
        match self.services.insert(key.clone(), svc) {
            Some(old) if old == self.services[&key] => return,
            Some(_) => {}
            None => *self.namespaces.entry(key.0.clone()).or_default() += 1,
        }
        self.rebuild(&key);
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if self.services.remove(&key).is_some() {
            if let Some(n) = self.namespaces.get_mut(namespace) {
                *n -= 1;
                if *n == 0 {
                    self.namespaces.remove(namespace);
                }
            }
            self.rebuild(&key);
        }
    }

    pub fn upsert_slice(&mut self, slice: SliceInfo) {
        let key = slice.key();
        let service = slice.service_key();
        let old = self.slices.insert(key.clone(), slice);
        if let Some(old) = &old {
            if Some(old) == self.slices.get(&key) {
                return;
            }
            if old.service_key() != service {
                self.unlink_slice(&old.service_key(), &key.1);
                self.rebuild(&old.service_key());
            }
        }
        self.slices_by_service
            .entry(service.clone())
            .or_default()
            .insert(key.1.clone());
        self.rebuild(&service);
    }

    pub fn remove_slice(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(old) = self.slices.remove(&key) {
            let service = old.service_key();
            self.unlink_slice(&service, name);
            self.rebuild(&service);
        }
    }

    /// Makes the Services exactly `services` (a re-list).
    pub fn replace_services(&mut self, services: impl IntoIterator<Item = ServiceInfo>) {
        let new: HashMap<Key, ServiceInfo> = services.into_iter().map(|s| (s.key(), s)).collect();
        let gone: Vec<Key> = self
            .services
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        for (ns, name) in gone {
            self.remove_service(&ns, &name);
        }
        for svc in new.into_values() {
            self.upsert_service(svc);
        }
    }

    /// Makes the EndpointSlices exactly `slices` (a re-list).
    pub fn replace_slices(&mut self, slices: impl IntoIterator<Item = SliceInfo>) {
        let new: HashMap<Key, SliceInfo> = slices.into_iter().map(|s| (s.key(), s)).collect();
        let gone: Vec<Key> = self.slices.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
        for (ns, name) in gone {
            self.remove_slice(&ns, &name);
        }
        for slice in new.into_values() {
            self.upsert_slice(slice);
        }
    }

    fn unlink_slice(&mut self, service: &Key, slice: &str) {
        if let Some(set) = self.slices_by_service.get_mut(service) {
            set.remove(slice);
            if set.is_empty() {
                self.slices_by_service.remove(service);
            }
        }
    }

    /// Replaces what the Service `key` contributes to the index.
    fn rebuild(&mut self, key: &Key) {
        if let Some(old) = self.owned.remove(key) {
            for name in old.names {
                self.names.remove(&name);
            }
            for ip in old.ptrs {
                if let Some(entries) = self.ptrs.get_mut(&ip) {
                    entries.retain(|(k, _)| k != key);
                    if entries.is_empty() {
                        self.ptrs.remove(&ip);
                    }
                }
            }
        }
        let Some(svc) = self.services.get(key) else {
            return;
        };
        let slices: Vec<&SliceInfo> = self
            .slices_by_service
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|name| self.slices.get(&(key.0.clone(), name.clone())))
            .collect();
        let (names, ptrs) = service_records(&self.config.domain, svc, &slices);
        let mut owned = Owned::default();
        for (name, records) in names {
            owned.names.push(name.clone());
            self.names.insert(name, records);
        }
        for (ip, name) in ptrs {
            owned.ptrs.push(ip);
            self.ptrs.entry(ip).or_default().push((key.clone(), name));
        }
        owned.ptrs.sort();
        owned.ptrs.dedup();
        self.owned.insert(key.clone(), owned);
    }

    /// Answers `qname`/`qtype`.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let mut key = qname.to_ascii();
        key.make_ascii_lowercase();
        let key = key.trim_end_matches('.');
        let domain = self.config.domain.as_str();
        let rel = if key == domain {
            Some("")
        } else {
            key.strip_suffix(domain).and_then(|r| r.strip_suffix('.'))
        };
        let Some(rel) = rel else {
            return self.reverse(qname, key, qtype);
        };
        let ttl = self.config.ttl;
        let record = |rdata: RData| Record::from_rdata(qname.clone(), ttl, rdata);

        if rel.is_empty() {
            return match qtype {
                RecordType::SOA => self.answer(vec![self.soa()], Vec::new()),
                RecordType::NS => self.answer(vec![record(RData::NS(NS(self.ns_name())))], Vec::new()),
                _ => self.nodata(),
            };
        }
        if let Some(records) = self.names.get(key) {
            if let Some(target) = &records.cname {
                return self.answer(vec![record(RData::CNAME(CNAME(target.clone())))], Vec::new());
            }
            let mut answers = Vec::new();
            let mut additionals = Vec::new();
            if matches!(qtype, RecordType::A | RecordType::ANY) {
                answers.extend(records.v4.iter().map(|ip| record(RData::A(A(*ip)))));
            }
            if matches!(qtype, RecordType::AAAA | RecordType::ANY) {
                answers.extend(records.v6.iter().map(|ip| record(RData::AAAA(AAAA(*ip)))));
            }
            if matches!(qtype, RecordType::SRV | RecordType::ANY) && !records.srv.is_empty() {
                // CoreDNS: priority 0, the weight of 100 shared evenly.
                let weight = u16::try_from(100 / records.srv.len()).unwrap_or(1).max(1);
                for (port, target, target_key) in &records.srv {
                    answers.push(record(RData::SRV(SRV::new(0, weight, *port, target.clone()))));
                    if let Some(t) = self.names.get(target_key) {
                        let glue = |rdata| Record::from_rdata(target.clone(), ttl, rdata);
                        additionals.extend(t.v4.iter().map(|ip| glue(RData::A(A(*ip)))));
                        additionals.extend(t.v6.iter().map(|ip| glue(RData::AAAA(AAAA(*ip)))));
                    }
                }
                additionals.dedup();
            }
            return if answers.is_empty() {
                self.nodata()
            } else {
                self.answer(answers, additionals)
            };
        }

        let labels: Vec<&str> = rel.split('.').collect();
        match labels.as_slice() {
            ["svc"] | ["pod"] => self.nodata(),
            [ns, "svc"] | [ns, "pod"] if self.namespaces.contains_key(*ns) => self.nodata(),
            [ip, _ns, "pod"] => match pod_ip(ip) {
                Some(IpAddr::V4(ip)) if qtype == RecordType::A => {
                    self.answer(vec![record(RData::A(A(ip)))], Vec::new())
                }
                Some(IpAddr::V6(ip)) if qtype == RecordType::AAAA => {
                    self.answer(vec![record(RData::AAAA(AAAA(ip)))], Vec::new())
                }
                Some(_) => self.nodata(),
                None => self.nxdomain(),
            },
            _ => self.nxdomain(),
        }
    }

    /// PTR for addresses the zone knows; everything else is forwarded
    /// (CoreDNS's `fallthrough in-addr.arpa ip6.arpa`).
    fn reverse(&self, qname: &Name, key: &str, qtype: RecordType) -> Lookup {
        if qtype != RecordType::PTR {
            return Lookup::Forward;
        }
        let Some(entries) = reverse_ip(key).and_then(|ip| self.ptrs.get(&ip)) else {
            return Lookup::Forward;
        };
        let mut targets: Vec<&Name> = entries.iter().map(|(_, n)| n).collect();
        targets.sort();
        targets.dedup();
        let answers = targets
            .into_iter()
            .map(|t| Record::from_rdata(qname.clone(), self.config.ttl, RData::PTR(PTR(t.clone()))))
            .collect();
        self.answer(answers, Vec::new())
    }

    fn answer(&self, answers: Vec<Record>, additionals: Vec<Record>) -> Lookup {
        Lookup::Answer(Answer {
            rcode: ResponseCode::NoError,
            answers,
            authority: Vec::new(),
            additionals,
        })
    }

    fn nodata(&self) -> Lookup {
        Lookup::Answer(Answer {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            authority: vec![self.soa()],
            additionals: Vec::new(),
        })
    }

    fn nxdomain(&self) -> Lookup {
        Lookup::Answer(Answer {
            rcode: ResponseCode::NXDomain,
            answers: Vec::new(),
            authority: vec![self.soa()],
            additionals: Vec::new(),
        })
    }

    fn ns_name(&self) -> Name {
        self.sub_name("ns.dns")
    }

    fn sub_name(&self, labels: &str) -> Name {
        Name::from_ascii(labels)
            .and_then(|n| n.append_domain(&self.apex))
            .unwrap_or_else(|_| self.apex.clone())
    }

    /// CoreDNS's SOA: `ns.dns.<zone> hostmaster.<zone> serial 7200 1800
    /// 86400 ttl`, its own TTL the zone's TTL capped at 300.
    pub fn soa(&self) -> Record {
        let ttl = self.config.ttl;
        Record::from_rdata(
            self.apex.clone(),
            ttl.min(300),
            RData::SOA(SOA::new(
                self.ns_name(),
                self.sub_name("hostmaster"),
                self.serial,
                7200,
                1800,
                86400,
                ttl,
            )),
        )
    }
}

/// The names (with their records) and reverse entries of one Service.
fn service_records(
    domain: &str,
    svc: &ServiceInfo,
    slices: &[&SliceInfo],
) -> (HashMap<String, NameRecords>, Vec<(IpAddr, Name)>) {
    let mut names: HashMap<String, NameRecords> = HashMap::new();
    let mut ptrs = Vec::new();
    let base = format!("{}.{}.svc.{domain}", svc.name, svc.namespace).to_ascii_lowercase();
    let Ok(base_name) = fqdn(&base) else {
        return (names, ptrs);
    };
    names.entry(base.clone()).or_default();
    let srv = |names: &mut HashMap<String, NameRecords>, port: &crate::objects::Port, target: &Name, key: &str| {
        let entry = (port.port, target.clone(), key.to_owned());
        names.entry(base.clone()).or_default().srv.push(entry.clone());
        if !port.name.is_empty() {
            let proto = format!("_{}.{base}", port.protocol);
            let named = format!("_{}.{proto}", port.name.to_ascii_lowercase());
            names.entry(proto).or_default();
            names.entry(named).or_default().srv.push(entry);
        }
    };

    let headless = match &svc.kind {
        ServiceKind::ExternalName(target) => {
            if let Ok(target) = fqdn(target) {
                names.entry(base.clone()).or_default().cname = Some(target);
            }
            return (names, ptrs);
        }
        ServiceKind::ClusterIp(ips) => {
            for ip in ips {
                push_ip(names.entry(base.clone()).or_default(), *ip);
                ptrs.push((*ip, base_name.clone()));
            }
            for port in &svc.ports {
                srv(&mut names, port, &base_name, &base);
            }
            false
        }
        ServiceKind::Headless => true,
    };

    for slice in slices {
        for endpoint in slice.endpoints.iter().filter(|e| e.ready) {
            for ip in &endpoint.addresses {
                let label = match &endpoint.hostname {
                    Some(h) => h.to_ascii_lowercase(),
                    None => dashed(*ip),
                };
                let key = format!("{label}.{base}");
                let Ok(name) = fqdn(&key) else { continue };
                push_ip(names.entry(key.clone()).or_default(), *ip);
                ptrs.push((*ip, name.clone()));
                if headless {
                    push_ip(names.entry(base.clone()).or_default(), *ip);
                    for port in &slice.ports {
                        srv(&mut names, port, &name, &key);
                    }
                }
            }
        }
    }
    for records in names.values_mut() {
        records.v4.sort();
        records.v4.dedup();
        records.v6.sort();
        records.v6.dedup();
        records.srv.sort();
        records.srv.dedup();
    }
    (names, ptrs)
}

fn push_ip(records: &mut NameRecords, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => records.v4.push(ip),
        IpAddr::V6(ip) => records.v6.push(ip),
    }
}

fn fqdn(name: &str) -> Result<Name, hickory_proto::ProtoError> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
}

/// An address as one label: `10-1-2-3`, `fd00--1` (CoreDNS's endpoint names).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string().replace('.', "-"),
        IpAddr::V6(ip) => ip.to_string().replace(':', "-"),
    }
}

/// The address in a pod name's first label: `10-1-2-3` or `fd00--1`.
fn pod_ip(label: &str) -> Option<IpAddr> {
    if let Ok(ip) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(ip));
    }
    label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa`, nibbles under
/// `ip6.arpa`), lowercase without the trailing dot.
fn reverse_ip(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = rest.split('.').map(|o| o.parse().ok()).collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|n| {
            if n.len() == 1 {
                u8::from_str_radix(n, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        // Reversed order: the last nibble is the first address nibble.
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

#[cfg(test)]
mod tests;
