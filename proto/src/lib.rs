//! Protobuf definitions of the SPIFFE Workload API and SPIRE's server API, compiled with tonic/prost.
//!
//! The `.proto` files under `proto/` are compiled at build time with
//! [`protox`](https://docs.rs/protox) (no `protoc` needed) and
//! `tonic-prost-build`. Every service comes with a generic tonic client
//! (`<service>_client::<Service>Client::new(channel)`) and a server
//! (`<service>_server::{<Service>, <Service>Server}`).
//!
//! Module paths mirror the protobuf packages, so that the gRPC method paths
//! and type names on the wire are those of SPIRE and the SPIFFE standard:
//!
//! | module | protobuf package | services |
//! | --- | --- | --- |
//! | [`workload`] | *(none)* | `SpiffeWorkloadAPI` |
//! | [`spire::api::types`] | `spire.api.types` | *(shared messages)* |
//! | [`spire::api::server::agent::v1`] | `spire.api.server.agent.v1` | `Agent` |
//! | [`spire::api::server::bundle::v1`] | `spire.api.server.bundle.v1` | `Bundle` |
//! | [`spire::api::server::entry::v1`] | `spire.api.server.entry.v1` | `Entry` |
//! | [`spire::api::server::svid::v1`] | `spire.api.server.svid.v1` | `SVID` |
//! | [`spire::api::server::trustdomain::v1`] | `spire.api.server.trustdomain.v1` | `TrustDomain` |
//! | [`spire::api::server::localauthority::v1`] | `spire.api.server.localauthority.v1` | `LocalAuthority` |
//! | [`spire::api::agent::delegatedidentity::v1`] | `spire.api.agent.delegatedidentity.v1` | `DelegatedIdentity` |
//! | [`grpc::health::v1`] | `grpc.health.v1` | `Health` |
//! | [`envoy::service::secret::v3`] | `envoy.service.secret.v3` | `SecretDiscoveryService` (Envoy SDS, agent Workload API socket) |
//! | [`envoy::service::discovery::v3`], [`envoy::config::core::v3`], [`envoy::extensions::transport_sockets::tls::v3`], `envoy::r#type::v3`, [`google::rpc`] | Envoy's xDS types and `google.rpc.Status` | *(messages SDS uses)* |
//! | [`spinel::agent::debug::v1`] | `spinel.agent.debug.v1` | `Debug` (Spinel's own, agent admin socket) |
//! | [`spinel::server::v1`] | `spinel.server.v1` | `Watch` (Spinel's own, change notifications for agents) |
//!
//! Hand-written, not generated: [`refusal`] (the `spinel-agent-refusal`
//! metadata entry telling an agent why the server refused it) and
//! [`bundle`] (a `spire.api.types.Bundle` as a
//! [`TrustBundle`](spinel_spiffe::TrustBundle), for the agent's sync and
//! the server's `bundle` CLI).
//!
//! Google well-known types (`google.protobuf.Struct`, `Empty`, `BoolValue`,
//! ...) map to [`prost_types`] and plain Rust types.
//!
//! Messages derive `Debug` for all fields, including private keys (e.g.
//! [`workload::X509svid::x509_svid_key`]): do not log messages that carry key
//! material.

pub mod bundle;
pub mod refusal;

/// Encoded `google.protobuf.FileDescriptorSet` of every file compiled into
/// this crate (with their imports, without source info), for gRPC server
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/spinel_descriptor.bin"));

/// The SPIFFE Workload API, served by the agent on a Unix socket.
///
/// The protobuf file declares no package: method paths are
/// `/SpiffeWorkloadAPI/<Method>`.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    missing_debug_implementations,
    rustdoc::all
)]
pub mod workload {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

/// SPIRE's APIs (package `spire.api`).
pub mod spire {
    /// SPIRE's APIs (package `spire.api`).
    pub mod api {
        /// Messages shared by the SPIRE APIs (package `spire.api.types`).
        #[allow(
            clippy::all,
            clippy::pedantic,
            missing_docs,
            missing_debug_implementations,
            rustdoc::all
        )]
        pub mod types {
            include!(concat!(env!("OUT_DIR"), "/spire.api.types.rs"));
        }

        /// The SPIRE server's APIs.
        pub mod server {
            /// Agent management, attestation and renewal.
            pub mod agent {
                /// Package `spire.api.server.agent.v1`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.server.agent.v1.rs"));
                }
            }

            /// Trust bundles, own and federated.
            pub mod bundle {
                /// Package `spire.api.server.bundle.v1`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.server.bundle.v1.rs"));
                }
            }

            /// Registration entries.
            pub mod entry {
                /// Package `spire.api.server.entry.v1`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.server.entry.v1.rs"));
                }
            }

            /// SVID issuance.
            pub mod svid {
                /// Package `spire.api.server.svid.v1`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.server.svid.v1.rs"));
                }
            }

            /// Federation relationships.
            pub mod trustdomain {
                /// Package `spire.api.server.trustdomain.v1`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/spire.api.server.trustdomain.v1.rs"
                    ));
                }
            }

            /// Rotation of the server's own signing authorities.
            pub mod localauthority {
                /// Package `spire.api.server.localauthority.v1`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/spire.api.server.localauthority.v1.rs"
                    ));
                }
            }

            /// The server's log level at run time.
            pub mod logger {
                /// Package `spire.api.server.logger.v1`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.server.logger.v1.rs"));
                }
            }
        }

        /// The SPIRE agent's APIs.
        pub mod agent {
            /// Delegated identity: SVIDs of other workloads for trusted
            /// local processes.
            pub mod delegatedidentity {
                /// Package `spire.api.agent.delegatedidentity.v1`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/spire.api.agent.delegatedidentity.v1.rs"
                    ));
                }
            }

            /// The agent's log level at run time.
            pub mod logger {
                /// Package `spire.api.agent.logger.v1`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.agent.logger.v1.rs"));
                }
            }
        }
    }
}

/// Spinel's own APIs (package `spinel`), not part of SPIRE's wire.
pub mod spinel {
    /// Server APIs.
    pub mod server {
        /// Package `spinel.server.v1`: change notifications for agents.
        #[allow(
            clippy::all,
            clippy::pedantic,
            missing_docs,
            missing_debug_implementations,
            rustdoc::all
        )]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/spinel.server.v1.rs"));
        }
    }
    /// Agent APIs.
    pub mod agent {
        /// The agent's debug API, on its admin socket.
        pub mod debug {
            /// Package `spinel.agent.debug.v1`.
            #[allow(
                clippy::all,
                clippy::pedantic,
                missing_docs,
                missing_debug_implementations,
                rustdoc::all
            )]
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/spinel.agent.debug.v1.rs"));
            }
        }
    }
}

/// gRPC's standard protocols.
pub mod grpc {
    /// Health checking.
    pub mod health {
        /// Package `grpc.health.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            missing_docs,
            missing_debug_implementations,
            rustdoc::all
        )]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
        }
    }
}

/// Envoy's APIs (package `envoy`): the Secret Discovery Service and the
/// messages it carries, declared with only the fields Spinel uses (see the
/// `.proto` files under `proto/envoy/`).
pub mod envoy {
    /// xDS services.
    pub mod service {
        /// Secret discovery.
        pub mod secret {
            /// Package `envoy.service.secret.v3`.
            #[allow(
                clippy::all,
                clippy::pedantic,
                missing_docs,
                missing_debug_implementations,
                rustdoc::all
            )]
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/envoy.service.secret.v3.rs"));
            }
        }
        /// The xDS request and response.
        pub mod discovery {
            /// Package `envoy.service.discovery.v3`.
            #[allow(
                clippy::all,
                clippy::pedantic,
                missing_docs,
                missing_debug_implementations,
                rustdoc::all
            )]
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/envoy.service.discovery.v3.rs"));
            }
        }
    }
    /// Envoy's configuration types.
    pub mod config {
        /// Core types.
        pub mod core {
            /// Package `envoy.config.core.v3`.
            #[allow(
                clippy::all,
                clippy::pedantic,
                missing_docs,
                missing_debug_implementations,
                rustdoc::all
            )]
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/envoy.config.core.v3.rs"));
            }
        }
    }
    /// Extension configuration.
    pub mod extensions {
        /// Transport sockets.
        pub mod transport_sockets {
            /// TLS.
            pub mod tls {
                /// Package `envoy.extensions.transport_sockets.tls.v3`.
                #[allow(
                    clippy::all,
                    clippy::pedantic,
                    missing_docs,
                    missing_debug_implementations,
                    rustdoc::all
                )]
                pub mod v3 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/envoy.extensions.transport_sockets.tls.v3.rs"
                    ));
                }
            }
        }
    }
    /// Envoy's shared types.
    pub mod r#type {
        /// Package `envoy.type.v3`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            missing_docs,
            missing_debug_implementations,
            rustdoc::all
        )]
        pub mod v3 {
            include!(concat!(env!("OUT_DIR"), "/envoy.r#type.v3.rs"));
        }
    }
}

/// Google's shared API types.
pub mod google {
    /// Package `google.rpc`: `Status`.
    #[allow(
        clippy::all,
        clippy::pedantic,
        missing_docs,
        missing_debug_implementations,
        rustdoc::all
    )]
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}
