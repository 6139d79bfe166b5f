//! Picked resources encoded once, shared by every stream that sends them.
//!
//! A [`Resources`] is the `resources` field (number 2) of a
//! `DiscoveryResponse`, already encoded: one `google.protobuf.Any` per
//! secret, each a `Secret` with PEM inside (certificates, PKCS#8 key, CA
//! certificates). A stream's response is a few bytes of its own (version,
//! type URL, nonce: `wire.rs`) followed by these shared bytes, so 500
//! streams of one workload hold one copy. [`ResourceTable`] keeps one per
//! snapshot and set of picks (the `SharedResponses` of the Workload API),
//! and hands out the same `Arc` again when a new snapshot leaves a set's
//! resources as they were, so streams see "unchanged" by pointer and send
//! nothing.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use spinel_proto::envoy::config::core::v3::{data_source, DataSource, TypedExtensionConfig};
use spinel_proto::envoy::extensions::transport_sockets::tls::v3::{
    secret, spiffe_cert_validator_config, CertificateValidationContext, Secret,
    SpiffeCertValidatorConfig, TlsCertificate,
};
use spinel_proto::envoy::service::discovery::v3::DiscoveryResponse;
use spinel_spiffe::bundle::pem_encode;
use spinel_spiffe::TrustBundle;
use zeroize::Zeroizing;

use super::super::shared::{Digest, SharedResponses};
use super::select::{Pick, PickKey};

/// The type URL of an SDS resource.
pub(crate) const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The type URL of the SPIFFE validator's config.
const SPIFFE_VALIDATOR_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig";

/// Envoy's name of the SPIFFE certificate validator.
pub(crate) const SPIFFE_VALIDATOR: &str = "envoy.tls.cert_validator.spiffe";

/// How many distinct pick sets are shared per snapshot; past that a
/// stream's resources are its own.
const SHARED_SETS: usize = 4096;

/// Encoded `resources` entries of a `DiscoveryResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resources {
    bytes: Bytes,
    count: usize,
}

impl Digest for Resources {
    fn digest(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.bytes.hash(&mut h);
        h.finish()
    }
}

impl Resources {
    /// Encodes `picks`, validation contexts with the SPIFFE validator when
    /// `spiffe_validation`.
    pub(crate) fn encode(picks: &[Pick], spiffe_validation: bool) -> Resources {
        let message = DiscoveryResponse {
            resources: picks
                .iter()
                .map(|p| secret_any(p, spiffe_validation))
                .collect(),
            ..Default::default()
        };
        // Every other field is empty, so this is the field-2 entries alone.
        Resources {
            bytes: Bytes::from(message.encode_to_vec()),
            count: picks.len(),
        }
    }

    /// The encoded entries.
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// How many resources.
    pub(crate) fn count(&self) -> usize {
        self.count
    }
}

/// The key of a shared set: the picks and the validator kind.
pub(crate) type SetKey = (Vec<PickKey>, bool);

/// Shared resources, one per snapshot and set of picks.
#[derive(Debug)]
pub(crate) struct ResourceTable(SharedResponses<Resources, SetKey>);

impl Default for ResourceTable {
    fn default() -> Self {
        ResourceTable(SharedResponses::new(SHARED_SETS))
    }
}

impl ResourceTable {
    /// The encoded `picks` of snapshot `generation`.
    pub(crate) fn get(
        &self,
        generation: u64,
        picks: &[Pick],
        spiffe_validation: bool,
    ) -> Arc<Resources> {
        let key = (picks.iter().map(Pick::key).collect(), spiffe_validation);
        let built = self.0.get_or_build(generation, key, || {
            Some(Resources::encode(picks, spiffe_validation))
        });
        // The builder always builds.
        built.unwrap_or_else(|| Arc::new(Resources::encode(picks, spiffe_validation)))
    }
}

fn inline(bytes: Vec<u8>) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes)),
    })
}

fn any(type_url: &str, message: &impl Message) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.into(),
        value: message.encode_to_vec(),
    }
}

fn secret_any(pick: &Pick, spiffe_validation: bool) -> prost_types::Any {
    let (name, kind) = match pick {
        Pick::Certificate { name, identity } => {
            let chain: String = identity
                .svid
                .chain
                .iter()
                .map(|der| pem_encode("CERTIFICATE", der))
                .collect();
            let key = Zeroizing::new(pem_encode("PRIVATE KEY", &identity.svid.private_key));
            (
                name,
                secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: inline(chain.into_bytes()),
                    private_key: inline(key.as_bytes().to_vec()),
                }),
            )
        }
        Pick::Bundle { name, bundle } if spiffe_validation => (
            name,
            secret::Type::ValidationContext(spiffe_validator(std::slice::from_ref(bundle))),
        ),
        Pick::Bundle { name, bundle } => (
            name,
            secret::Type::ValidationContext(CertificateValidationContext {
                trusted_ca: inline(bundle.x509_pem().into_bytes()),
                custom_validator_config: None,
            }),
        ),
        Pick::AllBundles { name, bundles } => (
            name,
            secret::Type::ValidationContext(spiffe_validator(bundles)),
        ),
    };
    let secret = Secret {
        name: name.clone(),
        r#type: Some(kind),
    };
    let any = any(SECRET_TYPE_URL, &secret);
    // The encoded secret may hold a private key: wipe the message's copy.
    if let Some(secret::Type::TlsCertificate(mut cert)) = secret.r#type {
        if let Some(DataSource {
            specifier: Some(data_source::Specifier::InlineBytes(key)),
        }) = cert.private_key.as_mut()
        {
            zeroize::Zeroize::zeroize(key);
        }
    }
    any
}

fn spiffe_validator(bundles: &[TrustBundle]) -> CertificateValidationContext {
    let config = SpiffeCertValidatorConfig {
        trust_domains: bundles
            .iter()
            .map(|b| spiffe_cert_validator_config::TrustDomain {
                name: b.trust_domain.to_string(),
                trust_bundle: inline(b.x509_pem().into_bytes()),
            })
            .collect(),
    };
    CertificateValidationContext {
        trusted_ca: None,
        custom_validator_config: Some(TypedExtensionConfig {
            name: SPIFFE_VALIDATOR.into(),
            typed_config: Some(any(SPIFFE_VALIDATOR_TYPE_URL, &config)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use spinel_spiffe::TrustDomain;

    use super::*;

    fn bundle(td: &str) -> TrustBundle {
        let mut b = TrustBundle::new(TrustDomain::new(td).unwrap());
        b.x509_authorities.push(vec![0x30, 0x03, 1, 2, 3]);
        b
    }

    fn decode(resources: &Resources) -> Vec<Secret> {
        DiscoveryResponse::decode(resources.bytes().clone())
            .unwrap()
            .resources
            .iter()
            .map(|a| {
                assert_eq!(a.type_url, SECRET_TYPE_URL);
                Secret::decode(a.value.as_slice()).unwrap()
            })
            .collect()
    }

    #[test]
    fn validation_contexts_by_validator_kind() {
        let picks = [
            Pick::Bundle {
                name: "ROOTCA".into(),
                bundle: bundle("example.org"),
            },
            Pick::AllBundles {
                name: "ALL".into(),
                bundles: vec![bundle("example.org"), bundle("other.org")],
            },
        ];
        let spiffe = decode(&Resources::encode(&picks, true));
        assert_eq!(spiffe.len(), 2);
        let Some(secret::Type::ValidationContext(ctx)) = &spiffe[1].r#type else {
            panic!("not a validation context")
        };
        assert!(ctx.trusted_ca.is_none());
        let custom = ctx.custom_validator_config.as_ref().unwrap();
        assert_eq!(custom.name, SPIFFE_VALIDATOR);
        let typed = custom.typed_config.as_ref().unwrap();
        assert_eq!(typed.type_url, SPIFFE_VALIDATOR_TYPE_URL);
        let config = SpiffeCertValidatorConfig::decode(typed.value.as_slice()).unwrap();
        let tds: Vec<_> = config
            .trust_domains
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(tds, ["example.org", "other.org"]);

        let plain = decode(&Resources::encode(&picks[..1], false));
        let Some(secret::Type::ValidationContext(ctx)) = &plain[0].r#type else {
            panic!("not a validation context")
        };
        assert_eq!(plain[0].name, "ROOTCA");
        assert!(ctx.custom_validator_config.is_none());
        let Some(data_source::Specifier::InlineBytes(pem)) =
            &ctx.trusted_ca.as_ref().unwrap().specifier
        else {
            panic!("not inline bytes")
        };
        assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----\n"));
    }

    #[test]
    fn same_picks_same_arc_within_a_snapshot() {
        let table = ResourceTable::default();
        let picks = [Pick::Bundle {
            name: "ROOTCA".into(),
            bundle: bundle("example.org"),
        }];
        let a = table.get(1, &picks, true);
        let b = table.get(1, &picks, true);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.count(), 1);
        // The other validator kind is another set.
        let c = table.get(1, &picks, false);
        assert!(!Arc::ptr_eq(&a, &c));
        // A new snapshot with the same contents: the same Arc again.
        let d = table.get(2, &picks, true);
        assert!(Arc::ptr_eq(&a, &d));
    }
}
