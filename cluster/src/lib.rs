//! The cluster launcher: as kind and k3d do for upstream, one command
//! brings up a cluster of separate processes on one machine (control
//! plane members on the host, each worker in a network namespace of its
//! own with its own containerd, kubelet and kube-proxy), and takes it
//! down again without a trace.
//!
//! - [`config`]: the versioned config file;
//! - [`plan`]: every address, name, path and command line, from the config
//!   alone (pure, table-tested);
//! - [`net`]: bridge, namespaces, veths, pod CIDR routes (iproute2);
//! - [`process`]: detached processes found again by pid file;
//! - [`balancer`]: the apiservers' one address;
//! - [`lifecycle`]: `up`, `stop`, `down` with progress and bounded waits.

pub mod balancer;
pub mod config;
pub mod lifecycle;
pub mod net;
pub mod plan;
pub mod process;
