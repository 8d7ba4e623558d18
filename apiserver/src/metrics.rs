//! Prometheus metrics in the text exposition format: requests by verb,
//! resource and code; request latency histograms; open watches; store
//! request latency.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use parking_lot::Mutex;

const BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
];

/// Store requests are far quicker than API requests.
const STORE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(BUCKETS)
    }
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Self {
            buckets,
            counts: vec![0; buckets.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, secs: f64) {
        for (i, b) in self.buckets.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
    watches: BTreeMap<String, i64>,
    writes: BTreeMap<String, u64>,
    /// Lists served by the watch cache, per key prefix.
    cache_lists: BTreeMap<String, u64>,
    /// Lists read from the store, per resource.
    storage_lists: BTreeMap<String, u64>,
    /// Events received by the watch cache, per key prefix.
    cache_events: BTreeMap<String, u64>,
    /// Store request latency by operation and resource.
    store: BTreeMap<(String, String), Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn request(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        let mut i = self.inner.lock();
        *i.requests.entry((verb.into(), resource.into(), code)).or_default() += 1;
        if verb != "WATCH" {
            i.latency
                .entry((verb.into(), resource.into()))
                .or_default()
                .observe(elapsed.as_secs_f64());
        }
    }

    pub fn watch_started(&self, resource: &str) {
        *self.inner.lock().watches.entry(resource.into()).or_default() += 1;
    }

    pub fn watch_stopped(&self, resource: &str) {
        *self.inner.lock().watches.entry(resource.into()).or_default() -= 1;
    }

    pub fn object_written(&self, resource: &str) {
        *self.inner.lock().writes.entry(resource.into()).or_default() += 1;
    }

    pub fn list_served(&self, resource: &str, prefix: &str, from_cache: bool) {
        let mut i = self.inner.lock();
        if from_cache {
            *i.cache_lists.entry(prefix.into()).or_default() += 1;
        } else {
            *i.storage_lists.entry(resource.into()).or_default() += 1;
        }
    }

    /// One store request: `operation` (get, list, create, update, delete)
    /// on the resource whose key is `key`.
    pub fn store_request(&self, operation: &str, key: &str, elapsed: Duration) {
        let resource = key.split('/').nth(2).unwrap_or("");
        self.inner
            .lock()
            .store
            .entry((operation.into(), resource.into()))
            .or_insert_with(|| Histogram::new(STORE_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    pub fn cache_events(&self, prefix: &str, n: usize) {
        *self.inner.lock().cache_events.entry(prefix.into()).or_default() += n as u64;
    }

    pub fn render(&self, store_apply_index: u64, store_revision: i64, store_is_leader: bool) -> String {
        let i = self.inner.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, resource and HTTP response code."
        );
        let _ = writeln!(out, "# TYPE apiserver_request_total counter");
        for ((verb, res, code), n) in &i.requests {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",resource=\"{res}\",code=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource."
        );
        let _ = writeln!(out, "# TYPE apiserver_request_duration_seconds histogram");
        for ((verb, res), h) in &i.latency {
            for (b, c) in h.buckets.iter().zip(&h.counts) {
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{res}\",le=\"{b}\"}} {c}"
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{res}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{verb=\"{verb}\",resource=\"{res}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_count{{verb=\"{verb}\",resource=\"{res}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP apiserver_longrunning_requests Gauge of all active long-running apiserver requests (watches)."
        );
        let _ = writeln!(out, "# TYPE apiserver_longrunning_requests gauge");
        for (res, n) in &i.watches {
            let _ = writeln!(
                out,
                "apiserver_longrunning_requests{{verb=\"WATCH\",resource=\"{res}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP apiserver_storage_writes_total Objects written to the store per resource."
        );
        let _ = writeln!(out, "# TYPE apiserver_storage_writes_total counter");
        for (res, n) in &i.writes {
            let _ = writeln!(out, "apiserver_storage_writes_total{{resource=\"{res}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP etcd_request_duration_seconds Store request latency in seconds for each operation and object type."
        );
        let _ = writeln!(out, "# TYPE etcd_request_duration_seconds histogram");
        for ((op, ty), h) in &i.store {
            let labels = format!("operation=\"{op}\",type=\"{ty}\"");
            for (b, c) in h.buckets.iter().zip(&h.counts) {
                let _ = writeln!(out, "etcd_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {c}");
            }
            let _ = writeln!(
                out,
                "etcd_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "etcd_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "etcd_request_duration_seconds_count{{{labels}}} {}", h.count);
        }
        for (name, help, label, map) in [
            (
                "apiserver_cache_list_total",
                "Number of LIST requests served from watch cache.",
                "resource_prefix",
                &i.cache_lists,
            ),
            (
                "apiserver_storage_list_total",
                "Number of LIST requests served from storage.",
                "resource",
                &i.storage_lists,
            ),
            (
                "apiserver_watch_cache_events_received_total",
                "Counter of events received in watch cache broken by resource type.",
                "resource_prefix",
                &i.cache_events,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (k, n) in map {
                let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP store_applied_index Raft index applied by the embedded store."
        );
        let _ = writeln!(out, "# TYPE store_applied_index gauge");
        let _ = writeln!(out, "store_applied_index {store_apply_index}");
        let _ = writeln!(
            out,
            "# HELP store_current_revision Current MVCC revision of the embedded store."
        );
        let _ = writeln!(out, "# TYPE store_current_revision gauge");
        let _ = writeln!(out, "store_current_revision {store_revision}");
        let _ = writeln!(
            out,
            "# HELP store_is_leader Whether this member's store is the Raft leader."
        );
        let _ = writeln!(out, "# TYPE store_is_leader gauge");
        let _ = writeln!(out, "store_is_leader {}", u8::from(store_is_leader));
        out
    }
}
