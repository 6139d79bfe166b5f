//! Which resources a request names, as SPIRE's SDS handler decides.
//!
//! Names are matched against what the caller may have:
//!
//! - its own trust domain ID (`spiffe://example.org`) or
//!   `default_bundle_name`: the validation context of the agent's trust
//!   domain;
//! - `default_all_bundles_name`: one SPIFFE validator over its own and
//!   every federated bundle its entries name (an error when the plain
//!   validator is in use, as in SPIRE);
//! - a federated trust domain ID its entries name: that bundle;
//! - the SPIFFE ID of one of its identities: that X509-SVID and key;
//! - `default_svid_name`: its first identity (by entry ID).
//!
//! An empty list (empty names are dropped first) means every trust domain
//! ID and every SPIFFE ID, never the default names. A name nothing matches
//! fails the request with `InvalidArgument`. Unlike SPIRE, where one
//! response carries at most one of the own trust domain ID, the default
//! bundle name and the all-bundles name (and the first identity under its
//! SPIFFE ID or the default name, not both), each name is served on its
//! own: what SPIRE answers is answered the same, and what it refuses for
//! that reason is served. One resource per name: of two identities with the
//! same SPIFFE ID, the first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use spinel_spiffe::{TrustBundle, TrustDomain};
use tonic::Status;

use crate::cache::Identity;

use super::config::SdsConfig;

/// One resource to send.
#[derive(Debug, Clone)]
pub(crate) enum Pick {
    /// The validation context of one trust domain, under `name`.
    Bundle {
        /// The resource name.
        name: String,
        /// The bundle.
        bundle: TrustBundle,
    },
    /// A SPIFFE validator over `bundles`, under `name`.
    AllBundles {
        /// The resource name.
        name: String,
        /// Own bundle first, then federated ones by trust domain.
        bundles: Vec<TrustBundle>,
    },
    /// An X509-SVID and its key, under `name`.
    Certificate {
        /// The resource name.
        name: String,
        /// The identity.
        identity: Arc<Identity>,
    },
}

/// What names a pick within one snapshot (the key of shared responses:
/// identities by address, which the snapshot holds).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PickKey {
    /// `Pick::Bundle`: name and trust domain ID.
    Bundle(String, String),
    /// `Pick::AllBundles`: name and trust domain IDs.
    AllBundles(String, Vec<String>),
    /// `Pick::Certificate`: name and identity address.
    Certificate(String, usize),
}

impl Pick {
    /// The pick's key.
    pub(crate) fn key(&self) -> PickKey {
        match self {
            Pick::Bundle { name, bundle } => {
                PickKey::Bundle(name.clone(), bundle.trust_domain.id_string())
            }
            Pick::AllBundles { name, bundles } => PickKey::AllBundles(
                name.clone(),
                bundles.iter().map(|b| b.trust_domain.id_string()).collect(),
            ),
            Pick::Certificate { name, identity } => {
                PickKey::Certificate(name.clone(), Arc::as_ptr(identity) as usize)
            }
        }
    }
}

/// What the caller may have, from one snapshot.
#[derive(Debug)]
pub(crate) struct Holdings<'a> {
    /// The agent's own bundle.
    pub own: &'a TrustBundle,
    /// Federated bundles the caller's entries name, by trust domain.
    pub federated: BTreeMap<TrustDomain, TrustBundle>,
    /// The caller's identities with a valid X509-SVID, by entry ID.
    pub identities: Vec<Arc<Identity>>,
}

/// The names of a request as a set: empty names dropped, duplicates once.
pub(crate) fn normalize(names: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = names.iter().filter(|n| !n.is_empty()).collect();
    set.into_iter().cloned().collect()
}

/// The resources `names` (normalized) select from `held`, in SPIRE's
/// order: own bundle, federated bundles, identities. `spiffe_validation`
/// says whether validation contexts use the SPIFFE validator.
pub(crate) fn select(
    names: &[String],
    held: &Holdings<'_>,
    config: &SdsConfig,
    spiffe_validation: bool,
) -> Result<Vec<Pick>, Status> {
    let all = names.is_empty();
    let mut wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut picks = Vec::new();

    let own_id = held.own.trust_domain.id_string();
    if all || wanted.remove(own_id.as_str()) {
        picks.push(Pick::Bundle {
            name: own_id,
            bundle: held.own.clone(),
        });
    }
    if wanted.remove(config.default_bundle_name.as_str()) {
        picks.push(Pick::Bundle {
            name: config.default_bundle_name.clone(),
            bundle: held.own.clone(),
        });
    }
    if wanted.remove(config.default_all_bundles_name.as_str()) {
        if !spiffe_validation {
            return Err(Status::internal(format!(
                "{:?} needs the SPIFFE certificate validator, which disable_spiffe_cert_validation turns off",
                config.default_all_bundles_name
            )));
        }
        let mut bundles = vec![held.own.clone()];
        bundles.extend(held.federated.values().cloned());
        picks.push(Pick::AllBundles {
            name: config.default_all_bundles_name.clone(),
            bundles,
        });
    }
    for (td, bundle) in &held.federated {
        let id = td.id_string();
        if all || wanted.remove(id.as_str()) {
            picks.push(Pick::Bundle {
                name: id,
                bundle: bundle.clone(),
            });
        }
    }
    let mut served = BTreeSet::new();
    for (i, identity) in held.identities.iter().enumerate() {
        let id = identity.entry.spiffe_id.to_string();
        if (all || wanted.remove(id.as_str())) && served.insert(id.clone()) {
            picks.push(Pick::Certificate {
                name: id,
                identity: identity.clone(),
            });
        }
        if i == 0 && wanted.remove(config.default_svid_name.as_str()) {
            picks.push(Pick::Certificate {
                name: config.default_svid_name.clone(),
                identity: identity.clone(),
            });
        }
    }
    if !wanted.is_empty() {
        let list: Vec<String> = wanted.iter().map(|n| format!("{n:?}")).collect();
        return Err(Status::invalid_argument(format!(
            "workload is not authorized for the requested identities [{}]",
            list.join(" ")
        )));
    }
    Ok(picks)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use spinel_spiffe::SpiffeId;
    use zeroize::Zeroizing;

    use super::*;
    use crate::cache::{CachedEntry, X509SvidMaterial};

    fn bundle(td: &str) -> TrustBundle {
        let mut b = TrustBundle::new(TrustDomain::new(td).unwrap());
        b.x509_authorities.push(td.as_bytes().to_vec());
        b
    }

    fn identity(entry: &str, id: &str) -> Arc<Identity> {
        Arc::new(Identity {
            entry: CachedEntry {
                id: entry.into(),
                spiffe_id: SpiffeId::new(id).unwrap(),
                selectors: vec![],
                federates_with: vec![],
                hint: String::new(),
                revision_number: 0,
                admin: false,
                downstream: false,
            },
            svid: X509SvidMaterial {
                chain: vec![vec![1]],
                private_key: Zeroizing::new(vec![2]),
                not_before: SystemTime::UNIX_EPOCH,
                not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40),
            },
        })
    }

    fn names(list: &[&str]) -> Vec<String> {
        normalize(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    /// The picks as `kind:name` strings.
    fn run(
        list: &[&str],
        held: &Holdings<'_>,
        config: &SdsConfig,
        spiffe: bool,
    ) -> Result<Vec<String>, Status> {
        Ok(select(&names(list), held, config, spiffe)?
            .iter()
            .map(|p| match p {
                Pick::Bundle { name, bundle } => {
                    format!("bundle:{name}={}", bundle.trust_domain)
                }
                Pick::AllBundles { name, bundles } => format!(
                    "all:{name}={}",
                    bundles
                        .iter()
                        .map(|b| b.trust_domain.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Pick::Certificate { name, identity } => {
                    format!("cert:{name}={}", identity.entry.id)
                }
            })
            .collect())
    }

    fn held(own: &TrustBundle) -> Holdings<'_> {
        Holdings {
            own,
            federated: [(TrustDomain::new("other.org").unwrap(), bundle("other.org"))].into(),
            identities: vec![
                identity("a", "spiffe://example.org/web"),
                identity("b", "spiffe://example.org/db"),
                identity("c", "spiffe://example.org/web"),
            ],
        }
    }

    #[test]
    fn empty_means_every_trust_domain_and_spiffe_id_not_the_default_names() {
        let own = bundle("example.org");
        let got = run(&[], &held(&own), &SdsConfig::default(), true).unwrap();
        assert_eq!(
            got,
            [
                "bundle:spiffe://example.org=example.org",
                "bundle:spiffe://other.org=other.org",
                "cert:spiffe://example.org/web=a",
                "cert:spiffe://example.org/db=b",
            ]
        );
        // Empty names are dropped first: still "all".
        assert_eq!(
            run(&[""], &held(&own), &SdsConfig::default(), true).unwrap(),
            got
        );
    }

    #[test]
    fn default_names_and_ids() {
        let own = bundle("example.org");
        let h = held(&own);
        let c = SdsConfig::default();
        assert_eq!(run(&["default"], &h, &c, true).unwrap(), ["cert:default=a"]);
        assert_eq!(
            run(&["ROOTCA"], &h, &c, true).unwrap(),
            ["bundle:ROOTCA=example.org"]
        );
        assert_eq!(
            run(&["ALL"], &h, &c, true).unwrap(),
            ["all:ALL=example.org,other.org"]
        );
        assert_eq!(
            run(
                &["spiffe://other.org", "spiffe://example.org/db"],
                &h,
                &c,
                true
            )
            .unwrap(),
            [
                "bundle:spiffe://other.org=other.org",
                "cert:spiffe://example.org/db=b"
            ]
        );
        // Each name on its own, where SPIRE serves only one of them.
        assert_eq!(
            run(
                &[
                    "ROOTCA",
                    "spiffe://example.org",
                    "default",
                    "spiffe://example.org/web"
                ],
                &h,
                &c,
                true
            )
            .unwrap(),
            [
                "bundle:spiffe://example.org=example.org",
                "bundle:ROOTCA=example.org",
                "cert:spiffe://example.org/web=a",
                "cert:default=a",
            ]
        );
    }

    #[test]
    fn configured_names() {
        let own = bundle("example.org");
        let h = held(&own);
        let c = SdsConfig {
            default_svid_name: "svid".into(),
            default_bundle_name: "bundle".into(),
            default_all_bundles_name: "everything".into(),
            disable_spiffe_cert_validation: false,
        };
        assert_eq!(
            run(&["svid", "bundle", "everything"], &h, &c, true).unwrap(),
            [
                "bundle:bundle=example.org",
                "all:everything=example.org,other.org",
                "cert:svid=a",
            ]
        );
        let err = run(&["default"], &h, &c, true).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn unknown_names_are_refused_together() {
        let own = bundle("example.org");
        let err = run(
            &["spiffe://example.org/nope", "spiffe://third.org", "ROOTCA"],
            &held(&own),
            &SdsConfig::default(),
            true,
        )
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "workload is not authorized for the requested identities \
             [\"spiffe://example.org/nope\" \"spiffe://third.org\"]"
        );
    }

    #[test]
    fn no_identity_gets_bundles_but_not_a_certificate() {
        let own = bundle("example.org");
        let h = Holdings {
            own: &own,
            federated: BTreeMap::new(),
            identities: vec![],
        };
        let c = SdsConfig::default();
        assert_eq!(
            run(&[], &h, &c, true).unwrap(),
            ["bundle:spiffe://example.org=example.org"]
        );
        assert_eq!(
            run(&["ROOTCA"], &h, &c, true).unwrap(),
            ["bundle:ROOTCA=example.org"]
        );
        assert_eq!(
            run(&["default"], &h, &c, true).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn all_bundles_needs_the_spiffe_validator() {
        let own = bundle("example.org");
        let err = run(&["ALL"], &held(&own), &SdsConfig::default(), false).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        // Other names are served with the plain validator.
        assert_eq!(
            run(&["ROOTCA"], &held(&own), &SdsConfig::default(), false).unwrap(),
            ["bundle:ROOTCA=example.org"]
        );
    }

    #[test]
    fn same_bundle_and_all_name_serves_the_bundle() {
        let own = bundle("example.org");
        let c = SdsConfig {
            default_all_bundles_name: "ROOTCA".into(),
            ..SdsConfig::default()
        };
        assert_eq!(
            run(&["ROOTCA"], &held(&own), &c, true).unwrap(),
            ["bundle:ROOTCA=example.org"]
        );
    }

    #[test]
    fn keys_name_identities_by_address() {
        let own = bundle("example.org");
        let h = held(&own);
        let picks = select(&names(&[]), &h, &SdsConfig::default(), true).unwrap();
        let again = select(&names(&[]), &h, &SdsConfig::default(), true).unwrap();
        let keys = |p: &[Pick]| p.iter().map(Pick::key).collect::<Vec<_>>();
        assert_eq!(keys(&picks), keys(&again));
        let other = Holdings {
            identities: vec![
                identity("a", "spiffe://example.org/web"),
                identity("b", "spiffe://example.org/db"),
            ],
            ..held(&own)
        };
        let fresh = select(&names(&[]), &other, &SdsConfig::default(), true).unwrap();
        assert_ne!(keys(&picks), keys(&fresh));
    }
}
