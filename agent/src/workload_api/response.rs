//! Workload API messages built from a caller's [`View`].
//!
//! Map keys are trust domain IDs (`spiffe://example.org`); X.509 bundles
//! are concatenated DER, JWT bundles JWKS JSON. X509-SVIDs whose NotAfter
//! has passed are left out, and of several SVIDs with the same non-empty
//! hint only the first is kept (hints are unique within a response).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use prost_types::value::Kind;
use spinel_proto::workload::{JwtBundlesResponse, X509BundlesResponse, X509svid, X509svidResponse};
use spinel_spiffe::{TrustBundle, TrustDomain};
use tonic::Status;

use crate::cache::Identity;

use super::shared::{Encoded, SetKey, SharedResponses};
use super::state::View;

/// The trust domain ID used as a map key.
pub(crate) fn td_key(td: &TrustDomain) -> String {
    td.id_string()
}

/// The identities, dropping any whose non-empty hint an earlier one has.
pub(crate) fn unique_hints(identities: &[Arc<Identity>]) -> Vec<Arc<Identity>> {
    let mut seen = BTreeSet::new();
    identities
        .iter()
        .filter(|i| {
            let hint = &i.entry.hint;
            if hint.is_empty() || seen.insert(hint.clone()) {
                return true;
            }
            tracing::warn!(
                entry_id = %i.entry.id,
                spiffe_id = %i.entry.spiffe_id,
                hint = %hint,
                "ignoring an entry whose hint another entry of the same workload already has"
            );
            false
        })
        .cloned()
        .collect()
}

/// True when the identity has an SVID that is valid at `now`.
fn servable(identity: &Identity, now: SystemTime) -> bool {
    !identity.svid.chain.is_empty() && identity.svid.not_after > now
}

/// An X509-SVID response, encoded, and when its earliest SVID expires.
/// `None` when no matching identity has a valid SVID at `now`. Callers that
/// get the same identities from the same snapshot get the same response
/// from `shared`.
pub(crate) fn x509_svids(
    view: &View,
    now: SystemTime,
    shared: &SharedResponses<Encoded>,
) -> Option<(Arc<Encoded>, SystemTime)> {
    let usable: Vec<Arc<Identity>> = view
        .identities
        .iter()
        .filter(|i| servable(i, now))
        .cloned()
        .collect();
    let usable = unique_hints(&usable);
    let expires = usable.iter().map(|i| i.svid.not_after).min()?;
    // Within one snapshot, an identity's address names it (the snapshot
    // holds it); the low bit (free: `Identity` is aligned) says whether it
    // is servable now. The response depends on nothing else.
    let set: SetKey = view
        .identities
        .iter()
        .map(|i| Arc::as_ptr(i) as usize | usize::from(servable(i, now)))
        .collect();
    let message = shared.get_or_build(view.snapshot.generation, set, || {
        Some(Encoded::of(&build_x509_svids(view, &usable)))
    })?;
    Some((message, expires))
}

fn build_x509_svids(view: &View, usable: &[Arc<Identity>]) -> X509svidResponse {
    let bundle = view.snapshot.bundle.x509_der_concat();
    let svids = usable
        .iter()
        .map(|i| X509svid {
            spiffe_id: i.entry.spiffe_id.to_string(),
            x509_svid: i.svid.chain.concat(),
            x509_svid_key: i.svid.private_key.to_vec(),
            bundle: bundle.clone(),
            hint: i.entry.hint.clone(),
        })
        .collect();
    let federated_bundles = view
        .snapshot
        .federated_for(&view.identities)
        .iter()
        .filter(|(_, b)| !b.x509_authorities.is_empty())
        .map(|(td, b)| (td_key(td), b.x509_der_concat()))
        .collect();
    X509svidResponse {
        svids,
        crl: Vec::new(),
        federated_bundles,
    }
}

/// The bundles the caller may use: its own trust domain's and those its
/// identities federate with.
pub(crate) fn bundles_for(view: &View) -> Vec<TrustBundle> {
    let mut out = vec![view.snapshot.bundle.clone()];
    out.extend(view.snapshot.federated_for(&view.identities).into_values());
    out
}

/// X.509 bundles by trust domain ID (federated bundles without X.509
/// authorities are left out: an empty DER bundle is not a bundle).
pub(crate) fn x509_bundles(view: &View) -> X509BundlesResponse {
    let own = &view.snapshot.bundle.trust_domain;
    X509BundlesResponse {
        crl: Vec::new(),
        bundles: bundles_for(view)
            .iter()
            .filter(|b| b.trust_domain == *own || !b.x509_authorities.is_empty())
            .map(|b| (td_key(&b.trust_domain), b.x509_der_concat()))
            .collect(),
    }
}

/// JWT bundles (JWKS JSON) by trust domain ID.
pub(crate) fn jwt_bundles(view: &View) -> Result<JwtBundlesResponse, Status> {
    let mut bundles = HashMap::new();
    for b in bundles_for(view) {
        let jwks = b.to_jwks_json().map_err(|e| {
            tracing::error!(trust_domain = %b.trust_domain, error = %e, "cannot encode a JWT bundle");
            Status::internal(format!(
                "the JWT bundle of {} cannot be encoded",
                b.trust_domain
            ))
        })?;
        bundles.insert(td_key(&b.trust_domain), jwks.into_bytes());
    }
    Ok(JwtBundlesResponse { bundles })
}

/// JSON claims as a `google.protobuf.Struct`.
pub(crate) fn claims_struct(
    claims: &serde_json::Map<String, serde_json::Value>,
) -> prost_types::Struct {
    prost_types::Struct {
        fields: claims
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect(),
    }
}

fn json_value(v: &serde_json::Value) -> prost_types::Value {
    use serde_json::Value;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(claims_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_convert_to_struct() {
        let claims = serde_json::json!({
            "sub": "spiffe://example.org/w",
            "aud": ["a", "b"],
            "exp": 1700000000,
            "nested": {"x": true, "n": null}
        });
        let s = claims_struct(claims.as_object().unwrap());
        assert_eq!(
            s.fields["sub"].kind,
            Some(Kind::StringValue("spiffe://example.org/w".into()))
        );
        assert_eq!(s.fields["exp"].kind, Some(Kind::NumberValue(1.7e9)));
        let Some(Kind::ListValue(aud)) = &s.fields["aud"].kind else {
            panic!("aud is not a list")
        };
        assert_eq!(aud.values.len(), 2);
        let Some(Kind::StructValue(nested)) = &s.fields["nested"].kind else {
            panic!("nested is not a struct")
        };
        assert_eq!(nested.fields["x"].kind, Some(Kind::BoolValue(true)));
        assert_eq!(nested.fields["n"].kind, Some(Kind::NullValue(0)));
    }
}
