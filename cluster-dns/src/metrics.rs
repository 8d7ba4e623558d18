//! The server's Prometheus metrics, with CoreDNS's names where one exists
//! (`coredns_dns_requests_total`, `coredns_dns_responses_total`,
//! `coredns_dns_request_duration_seconds`, `coredns_forward_requests_total`),
//! plus the zone's size (CoreDNS has no cache of ours to count).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn duration_histogram() -> Histogram {
    // CoreDNS's buckets: 0.25 ms doubling 16 times.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    responses: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    forward_requests: Family<Labels, Counter>,
    zone_names: Gauge,
    zone_services: Gauge,
}

/// One answered request, as the metrics see it.
pub struct Observation<'a> {
    pub server: &'a str,
    pub proto: &'a str,
    /// `1` for IPv4 clients, `2` for IPv6 (CoreDNS's address family).
    pub family: &'a str,
    pub qtype: &'a str,
    pub rcode: &'a str,
    pub seconds: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let responses = Family::<Labels, Counter>::default();
        let duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let forward_requests = Family::<Labels, Counter>::default();
        let zone_names = Gauge::default();
        let zone_services = Gauge::default();
        registry.register(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            requests.clone(),
        );
        registry.register(
            "coredns_dns_responses",
            "Counter of response status codes.",
            responses.clone(),
        );
        registry.register(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took.",
            duration.clone(),
        );
        registry.register(
            "coredns_forward_requests",
            "Counter of requests made per upstream.",
            forward_requests.clone(),
        );
        registry.register(
            "cluster_dns_zone_names",
            "Names in the cluster zone's index.",
            zone_names.clone(),
        );
        registry.register(
            "cluster_dns_zone_services",
            "Services the cluster zone holds.",
            zone_services.clone(),
        );
        Metrics {
            registry,
            requests,
            responses,
            duration,
            forward_requests,
            zone_names,
            zone_services,
        }
    }

    pub fn observe(&self, o: &Observation) {
        let zone = || ("zone", ".".to_owned());
        let server = || ("server", o.server.to_owned());
        self.requests
            .get_or_create(&vec![
                server(),
                zone(),
                ("proto", o.proto.to_owned()),
                ("family", o.family.to_owned()),
                ("type", o.qtype.to_owned()),
            ])
            .inc();
        self.responses
            .get_or_create(&vec![server(), zone(), ("rcode", o.rcode.to_owned())])
            .inc();
        self.duration
            .get_or_create(&vec![server(), zone(), ("type", o.qtype.to_owned())])
            .observe(o.seconds);
    }

    pub fn forwarded(&self, upstream: &str) {
        self.forward_requests
            .get_or_create(&vec![("to", upstream.to_owned())])
            .inc();
    }

    pub fn set_zone_size(&self, names: usize, services: usize) {
        self.zone_names.set(i64::try_from(names).unwrap_or(i64::MAX));
        self.zone_services.set(i64::try_from(services).unwrap_or(i64::MAX));
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
