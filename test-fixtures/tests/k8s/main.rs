//! The Kubernetes fakes, exercised with a real HTTPS client, their JSON
//! checked against `k8s-openapi` types.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apiserver;
mod client;
mod kubeconfig;
mod kubelet;
mod objects;
