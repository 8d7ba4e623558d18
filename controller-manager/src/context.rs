//! What every controller is started with (upstream's `ControllerContext`):
//! the client, the shared informers, the options, and the means to make
//! work queues and event recorders that report under the process's
//! metrics.

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::registry::Registry;

use crate::events::Recorder;
use crate::informer::Informers;
use crate::options::Options;
use crate::workqueue::{Queue, QueueMetrics};

pub struct Ctx {
    pub client: kube::Client,
    pub informers: Arc<Informers>,
    pub opts: Arc<Options>,
    /// The cluster's CA bundle (PEM), for `kube-root-ca.crt`.
    pub root_ca: Option<String>,
    pub registry: Arc<Mutex<Registry>>,
    queue_metrics: QueueMetrics,
}

impl Ctx {
    pub fn new(
        client: kube::Client,
        opts: Arc<Options>,
        root_ca: Option<String>,
        registry: Arc<Mutex<Registry>>,
    ) -> Arc<Self> {
        let queue_metrics = QueueMetrics::new(&mut registry.lock());
        Arc::new(Ctx {
            informers: Informers::new(client.clone()),
            client,
            opts,
            root_ca,
            registry,
            queue_metrics,
        })
    }

    /// A new work queue reporting `workqueue_*{name="<name>"}`.
    pub fn queue(&self, name: &str) -> Arc<Queue> {
        Queue::new(name, self.queue_metrics.clone())
    }

    /// An event recorder whose events name `component` as their source.
    pub fn recorder(&self, component: &str) -> Recorder {
        Recorder::new(self.client.clone(), component)
    }
}
