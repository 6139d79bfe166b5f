//! SPIFFE ID and trust domain parsing: what is accepted round-trips
//! exactly (parse -> to_string -> parse), nothing over 2,048 bytes is
//! accepted, and no upper case survives in a scheme or trust domain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinel_spiffe::id::{self, IdError, MAX_ID_LEN};

fuzz_target!(|data: &[u8]| {
    let Some(input) = spinel_fuzz::text(data) else {
        return;
    };

    match id::parse_id(input) {
        Ok(parsed) => {
            assert!(
                input.len() <= MAX_ID_LEN,
                "accepted a {}-byte ID",
                input.len()
            );
            let shown = parsed.to_string();
            assert_eq!(shown, input, "an accepted ID is shown as it was given");
            assert_eq!(id::parse_id(&shown).as_ref(), Ok(&parsed));
            let td = parsed.trust_domain();
            assert_eq!(format!("spiffe://{td}{}", parsed.path()), input);
            assert!(!td.as_str().bytes().any(|b| b.is_ascii_uppercase()));
            assert!(parsed.is_member_of(td));
            // The policy checks take any parsed ID without panicking.
            let _ = id::check_workload_id(&parsed, td);
            let _ = (id::is_agent(&parsed), id::is_server(&parsed));
        }
        Err(IdError::TooLong { len, max, prefix }) => {
            assert!(len > MAX_ID_LEN && max == MAX_ID_LEN && len == input.len());
            assert!(input.starts_with(&prefix) && prefix.len() <= 64);
        }
        Err(_) => assert!(
            input.len() <= MAX_ID_LEN,
            "an over-long ID is refused as too long"
        ),
    }

    if let Ok(td) = id::parse_trust_domain(input) {
        let name = td.as_str();
        assert!(!name.is_empty() && !name.bytes().any(|b| b.is_ascii_uppercase()));
        assert_eq!(id::parse_trust_domain(name).as_ref(), Ok(&td));
        assert_eq!(id::parse_trust_domain(&td.id_string()).as_ref(), Ok(&td));
        // The trust domain's own ID and the server ID are valid IDs.
        assert_eq!(
            id::parse_id(&td.id_string()).map(|i| i.to_string()),
            Ok(td.id_string())
        );
        let server = id::server_id(&td);
        assert!(id::is_server(&server) && server.is_member_of(&td));
    }
});
