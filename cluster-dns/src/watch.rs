//! Services and EndpointSlices from the apiserver into the zone: one
//! kube-runtime watcher per resource, through a reflector store, each event
//! applied to the zone as it arrives (only the affected Service's names are
//! rebuilt); a (re-)list replaces the zone's objects with the store's once
//! it is complete.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::objects::{SERVICE_NAME_LABEL, ServiceInfo, SliceInfo};
use crate::server::SharedZone;
use crate::zone::Zone;

/// Whether both initial lists have been applied (`/ready`).
#[derive(Debug, Default)]
pub struct Synced {
    services: AtomicBool,
    slices: AtomicBool,
}

impl Synced {
    pub fn all(&self) -> bool {
        self.services.load(Ordering::Acquire) && self.slices.load(Ordering::Acquire)
    }

    /// Marks everything synced (a server fed by a static snapshot).
    pub fn set_all(&self) {
        self.services.store(true, Ordering::Release);
        self.slices.store(true, Ordering::Release);
    }
}

/// How one resource reaches the zone.
struct Kind<K, I> {
    name: &'static str,
    info: fn(&K) -> Option<I>,
    upsert: fn(&mut Zone, I),
    remove: fn(&mut Zone, &str, &str),
    replace: fn(&mut Zone, Vec<I>),
}

/// Runs both watches until the process ends (watch errors back off and
/// retry, as kube-runtime's watcher does).
pub async fn run(client: Client, zone: SharedZone, synced: Arc<Synced>) {
    let services = watch(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        zone.clone(),
        Kind {
            name: "services",
            info: ServiceInfo::from_service,
            upsert: Zone::upsert_service,
            remove: Zone::remove_service,
            replace: |z, v| z.replace_services(v),
        },
        &synced.services,
    );
    let slices = watch(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
        zone,
        Kind {
            name: "endpointslices",
            info: SliceInfo::from_slice,
            upsert: Zone::upsert_slice,
            remove: Zone::remove_slice,
            replace: |z, v| z.replace_slices(v),
        },
        &synced.slices,
    );
    futures::join!(services, slices);
}

async fn watch<K, I>(api: Api<K>, config: watcher::Config, zone: SharedZone, kind: Kind<K, I>, synced: &AtomicBool)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(obj)) => {
                if let Some(info) = (kind.info)(&obj) {
                    let mut zone = zone.write();
                    (kind.upsert)(&mut zone, info);
                    zone.set_serial(now());
                }
            }
            Ok(watcher::Event::Delete(obj)) => {
                let namespace = obj.namespace().unwrap_or_default();
                let mut zone = zone.write();
                (kind.remove)(&mut zone, &namespace, &obj.name_any());
                zone.set_serial(now());
            }
            Ok(watcher::Event::InitDone) => {
                let items = snapshot(&reader, kind.info);
                let count = items.len();
                {
                    let mut zone = zone.write();
                    (kind.replace)(&mut zone, items);
                    zone.set_serial(now());
                }
                if !synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(resource = kind.name, count, "initial list synced");
                }
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(e) => tracing::warn!(resource = kind.name, error = %e, "watch failed; retrying"),
        }
    }
}

fn snapshot<K, I>(reader: &Store<K>, info: fn(&K) -> Option<I>) -> Vec<I>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    reader.state().iter().filter_map(|obj| info(obj)).collect()
}

/// CoreDNS's serial: seconds since the epoch of the last change.
fn now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}
