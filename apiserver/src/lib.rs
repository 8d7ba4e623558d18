//! kube-apiserver: the Kubernetes REST API (v1.33 level) over the embedded
//! replicated store.
//!
//! Map: [`server`] (process wiring, HTTPS, dispatch) → [`request`] (path and
//! query parsing, content negotiation) → [`rest`] (the verbs) and [`watch`]
//! → [`cache`] (the watch cache) → [`storage`] (objects in the store).
//! Around them: [`registry`] (served resources), [`strategy`] (per-kind
//! defaults, validation, update rules), [`admission`] (the admission plugin chain), [`allocation`]
//! (service IPs and ports, CRD registration), [`always_fields`] (the fields upstream always
//! serializes), [`list_options`] (list and watch options' validation), [`patch`] and [`managed`] (patches, server-side apply),
//! [`customresource`] (CRDs), [`discovery`], [`openapi`], [`table`]
//! (server-side printing), [`authn`], [`authz`] and [`certs`] (identity,
//! access and PKI), [`reviews`] (token and access reviews),
//! [`componentstatus`] (the control plane's health, probed when asked),
//! [`metrics`], [`status`] (errors), [`proxy`] (pod logs, exec, attach and
//! port-forward, proxied to the node's kubelet), [`kubernetes_service`] (the
//! `default/kubernetes` Endpoints from every apiserver's master lease).

pub mod admission;
pub mod allocation;
pub mod always_fields;
pub mod authn;
pub mod authz;
pub mod bootstrap;
pub mod cache;
pub mod certs;
pub mod componentstatus;
pub mod customresource;
pub mod discovery;
pub mod kubernetes_service;
pub mod list_options;
pub mod managed;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod options;
pub mod patch;
pub mod proxy;
pub mod registry;
pub mod request;
pub mod rest;
pub mod reviews;
pub mod server;
pub mod status;
pub mod status_strategy;
pub mod storage;
pub mod strategy;
pub mod streaming;
pub mod subresources;
pub mod table;
pub mod watch;

pub use options::Options;
pub use server::{ApiServer, run};
