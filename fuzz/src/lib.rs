//! Shared pieces of the fuzz targets in `fuzz_targets/`: fixed test keys,
//! so that a crash input reproduces with the same keys, and small helpers.
//!
//! Targets (each asserts invariants, not only "no panic"):
//!
//! | target | drives | asserts |
//! | --- | --- | --- |
//! | `spiffe_id` | `id::parse_id`, `parse_trust_domain` | round trip; 2,048-byte limit; no upper case kept |
//! | `selector` | `Selector::parse` | round trip; the invariants of `validate` |
//! | `bundle_json` | `TrustBundle::from_json` | parse -> `to_json` -> parse gives the same bundle |
//! | `jwt_svid` | `jwt::validate` | a token is accepted only if its signed bytes are ours; valid tokens are accepted |
//! | `csr_issue` | `api::x509_params_for_entry`, `Ca::sign_x509_svid` | the SVID's names are the entry's, never the CSR's; its key is the CSR's |
//! | `config_server` | HCL parsing, `server::config::from_file`, `expand_env` | no panic; error lines inside the file; deterministic |
//! | `config_agent` | HCL parsing, `AgentConfig::from_file` | no panic; error lines inside the file; deterministic |
//! | `cgroup` | `from_cgroup_file`, `from_mountinfo`, `from_path` | IDs are 64-hex and come from the input; pod UIDs well formed |
//! | `kubelet_pods` | `PodList::parse`, the `k8s:` selectors | selectors valid and round trip; every container is found by its ID |
//! | `hpack` | `hpack::Decoder` | decoded list within its limit; encode -> decode round trip |
//! | `http2_guard` | `Http2Guard` over arbitrary client bytes | no panic or hang; output bounded; repaired blocks decode without the dynamic table and carry a valid `:authority` |

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A P-256 key (PKCS#8 DER, base64) that signs the fuzzers' JWT-SVIDs and
/// CSRs. Made with `openssl genpkey -algorithm EC -pkeyopt
/// ec_paramgen_curve:P-256 | openssl pkcs8 -topk8 -nocrypt -outform DER`.
const KEY_1: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAyIU1Ct0rxbtFuGTk9uzmZ/3jiVzxsDhZ2fFoJ9GCFKhRANCAASlWQ0LZM1jSSGG/GdWf1t+2MTnBUwBr3n6zwloSnEZTMoSiKsiPgGtAGxfgqfJk1CPOu277aR0TvegadrgL3fc";

/// A second P-256 key, made the same way: in the bundle under another
/// `kid`, never used to sign.
const KEY_2: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTiauj1TDTSstyf6P0ugvXDuC2U7WSU5seiGK6E+2DvmhRANCAATUWH8XTlzjkO9NQOhHhrsqS2ZNXNqQanM8Tr7spbA/gEcb1aJJDzZkfNB8ijrka+U0Da6+pTDPJVwBQu6IdKrJ";

/// The PKCS#8 DER of test key 1 (`which` = 1) or 2.
pub fn test_key_pkcs8(which: u8) -> Vec<u8> {
    let text = if which == 1 { KEY_1 } else { KEY_2 };
    STANDARD.decode(text).expect("test key is base64")
}

/// `data` as text, or `None` when it is not UTF-8 (most parsers take `&str`).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Checks that a config error naming a line names one of `text` (one past
/// the last line is allowed: an error at the end of the file).
pub fn check_error_line(line: Option<usize>, text: &str, error: &dyn std::fmt::Display) {
    if let Some(line) = line {
        let lines = text.split('\n').count();
        assert!(
            (1..=lines + 1).contains(&line),
            "error names line {line} of a {lines}-line file: {error}"
        );
    }
}
