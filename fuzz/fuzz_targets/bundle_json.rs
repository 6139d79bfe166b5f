//! SPIFFE bundle JSON: a bundle that is read can be written, and reading
//! what was written gives the same bundle (parse -> serialize -> parse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinel_spiffe::bundle::{self, BundleError, TrustBundle};
use spinel_spiffe::TrustDomain;

fuzz_target!(|data: &[u8]| {
    let td = TrustDomain::new("example.org").expect("valid trust domain");
    let Ok(parsed) = TrustBundle::from_json(td.clone(), data) else {
        return;
    };
    assert_eq!(parsed.trust_domain, td);
    // JWT authorities were made from JWKs by this codec: they always
    // convert back.
    let jwks = parsed
        .to_jwks_json()
        .expect("JWT authorities that were read can be written");
    for authority in &parsed.jwt_authorities {
        assert!(!authority.key_id.is_empty());
        let jwk = bundle::spki_to_jwk(&authority.public_key).expect("SPKI made by jwk_to_spki");
        assert_eq!(
            bundle::jwk_to_spki(&jwk).as_ref(),
            Ok(&authority.public_key)
        );
    }
    let jwks_only = TrustBundle::from_json(td.clone(), jwks.as_bytes()).expect("JWKS reads back");
    assert_eq!(jwks_only.jwt_authorities, parsed.jwt_authorities);

    let written = match parsed.to_json() {
        Ok(written) => written,
        // A CA certificate whose key this codec cannot express as a JWK
        // (Ed25519, a curve it does not know) is carried but not written.
        Err(BundleError::UnsupportedKey(_)) => return,
        Err(e) => panic!("a bundle that was read cannot be written: {e}"),
    };
    let reread = TrustBundle::from_json(td, written.as_bytes()).expect("written bundle reads back");
    assert_eq!(reread, parsed, "parse -> to_json -> parse is the identity");
    assert_eq!(reread.to_json().as_ref(), Ok(&written), "writing is stable");
});
