//! The Spinel server: the trust domain's certificate authority.
//!
//! It attests agents (node attestors), keeps registration entries, signs
//! short-lived X.509 and JWT SVIDs, and publishes the trust bundle. It speaks
//! SPIRE's server API, both to agents (TCP + mTLS) and to operators (the
//! admin Unix socket).
//!
//! Reading order:
//! - [`config`]: the SPIRE-shaped `server.conf`;
//! - [`datastore`]: entries, agents, join tokens, bundles (sled by default);
//! - [`keymanager`] and [`ca`]: keys, the X.509 CA and JWT key, signing;
//! - [`upstream`]: an UpstreamAuthority that signs the X.509 CA (`disk`);
//! - [`attestor`]: node attestors (`join_token`, `k8s_psat`);
//! - [`kube`]: the Kubernetes API client (`k8s_psat`, `k8sbundle`);
//! - [`api`]: the gRPC services and who may call what;
//! - [`notify`]: change notifications that wake agents after a write;
//! - [`notifier`]: SPIRE's `Notifier` plugins (`k8sbundle`: the bundle in a
//!   Kubernetes ConfigMap);
//! - [`tls`]: TLS pieces every listener shares (provider, served
//!   certificate, certificate files);
//! - [`federation`]: the bundle endpoint and polling of foreign bundles;
//! - [`oidc`]: OIDC discovery (`/.well-known/openid-configuration`, `/keys`);
//! - [`metrics`]: the Prometheus metrics (`telemetry`);
//! - [`run`]: start-up order, listeners, shutdown (what `spinel-server run` does);
//! - [`import`]: a SPIRE datastore into Spinel's (`datastore import`);
//! - [`cli`]: the `spinel-server` command line (`run`, `entry`, `token`, ...).

pub mod api;
pub mod attestor;
pub mod ca;
pub mod cli;
pub mod config;
pub mod datastore;
pub mod federation;
pub mod import;
pub mod keymanager;
pub mod kube;
pub mod metrics;
pub mod notifier;
pub mod notify;
pub mod oidc;
pub mod run;
pub mod tls;
pub mod upstream;
