//! SPIRE's pretty output of the `entry` subcommands, against golden text.

use spinel_proto::spire::api::server::entry::v1::{
    batch_create_entry_response, batch_delete_entry_response, BatchCreateEntryResponse,
    BatchDeleteEntryResponse, CountEntriesResponse, ListEntriesResponse,
};
use spinel_proto::spire::api::types::{
    entry::AdditionalAttributes, Entry, Selector, Spiffeid, Status,
};

use super::print;

fn id(td: &str, path: &str) -> Option<Spiffeid> {
    Some(Spiffeid {
        trust_domain: td.into(),
        path: path.into(),
    })
}

fn sel(t: &str, v: &str) -> Selector {
    Selector {
        r#type: t.into(),
        value: v.into(),
    }
}

fn sample_entry() -> Entry {
    Entry {
        id: "0b4b3c4e-6c7a-4b8e-9c8a-1f2e3d4c5b6a".into(),
        spiffe_id: id("example.org", "/myservice"),
        parent_id: id("example.org", "/myagent"),
        selectors: vec![sel("unix", "uid:1000")],
        dns_names: vec!["example.org".into()],
        hint: "myservice".into(),
        jwt_svid_ttl: 60,
        ..Default::default()
    }
}

const SAMPLE_BLOCK: &str = "\
Entry ID                : 0b4b3c4e-6c7a-4b8e-9c8a-1f2e3d4c5b6a
SPIFFE ID               : spiffe://example.org/myservice
Parent ID               : spiffe://example.org/myagent
Revision                : 0
X509-SVID TTL           : default
JWT-SVID TTL            : 60
Selector                : unix:uid:1000
DNS name                : example.org
Hint                    : myservice

";

#[test]
fn entry_block_golden() {
    assert_eq!(print::entry_block(&sample_entry()), SAMPLE_BLOCK);
}

#[test]
fn entry_block_with_every_attribute() {
    let e = Entry {
        id: String::new(),
        downstream: true,
        admin: true,
        store_svid: true,
        x509_svid_ttl: 3600,
        expires_at: 1_700_000_000,
        federates_with: vec!["other.org".into()],
        revision_number: 3,
        additional_attributes: Some(AdditionalAttributes {
            disable_x509_svid_prefetch: true,
            jwt_svid_include_jti: true,
        }),
        ..sample_entry()
    };
    assert_eq!(
        print::entry_block(&e),
        "\
Entry ID                : (none)
SPIFFE ID               : spiffe://example.org/myservice
Parent ID               : spiffe://example.org/myagent
Revision                : 3
Downstream              : true
X509-SVID TTL           : 3600
JWT-SVID TTL            : 60
Expiration time         : 2023-11-14 22:13:20 +0000 UTC
Selector                : unix:uid:1000
FederatesWith           : other.org
DNS name                : example.org
Admin                   : true
StoreSvid               : true
Hint                    : myservice
DisableX509SvidPrefetch : true
JwtSvidIncludeJti       : true

"
    );
}

#[test]
fn show_golden() {
    let resp = ListEntriesResponse {
        entries: vec![sample_entry()],
        next_page_token: String::new(),
    };
    assert_eq!(
        print::show_entries(&resp),
        format!("Found 1 entry\n{SAMPLE_BLOCK}")
    );
    assert_eq!(
        print::show_entries(&ListEntriesResponse::default()),
        "Found 0 entries\n"
    );
    assert_eq!(
        print::count(&CountEntriesResponse { count: 1 }),
        "1 registration entry\n"
    );
    assert_eq!(
        print::count(&CountEntriesResponse { count: 7 }),
        "7 registration entries\n"
    );
}

#[test]
fn create_failures_go_to_stderr_and_fail() {
    let asked = vec![
        sample_entry(),
        Entry {
            id: "e2".into(),
            ..sample_entry()
        },
    ];
    let resp = BatchCreateEntryResponse {
        results: vec![
            batch_create_entry_response::Result {
                status: Some(Status {
                    code: 0,
                    message: "OK".into(),
                }),
                entry: Some(sample_entry()),
            },
            batch_create_entry_response::Result {
                status: Some(Status {
                    code: 6,
                    message: "similar entry already exists".into(),
                }),
                entry: None,
            },
        ],
    };
    let printed = print::create_results(&resp, &asked);
    assert_eq!(printed.stdout, SAMPLE_BLOCK);
    assert!(printed.stderr.starts_with(
        "Failed to create the following entry (code: AlreadyExists, msg: \"similar entry already exists\"):\nEntry ID                : e2\n"
    ), "{}", printed.stderr);
    assert_eq!(
        printed.failure.as_deref(),
        Some("failed to create one or more entries")
    );
}

#[test]
fn delete_golden() {
    let ok = |id: &str| batch_delete_entry_response::Result {
        status: Some(Status {
            code: 0,
            message: "OK".into(),
        }),
        id: id.into(),
    };
    let printed = print::delete_results(&BatchDeleteEntryResponse {
        results: vec![ok("e1")],
    });
    assert_eq!(
        printed.stdout,
        "Deleted entry with ID: e1\n\n\nDeleted 1 entries successfully\n"
    );
    assert!(printed.failure.is_none());

    let missing = batch_delete_entry_response::Result {
        status: Some(Status {
            code: 5,
            message: "entry not found".into(),
        }),
        id: "e2".into(),
    };
    let printed = print::delete_results(&BatchDeleteEntryResponse {
        results: vec![ok("e1"), missing],
    });
    assert_eq!(
        printed.stderr,
        "Failed to delete entry with ID e2 (code: NotFound, msg: \"entry not found\")\n"
    );
    assert!(printed
        .stdout
        .ends_with("\n\nDeleted 1 entries successfully, but failed to delete 1 entries\n"));
    assert!(printed.failure.is_some());
}

#[test]
fn show_sorts_like_spire() {
    let mut entries = vec![
        Entry {
            spiffe_id: id("example.org", "/b"),
            ..sample_entry()
        },
        Entry {
            spiffe_id: id("example.org", "/a"),
            selectors: vec![sel("unix", "uid:2"), sel("unix", "gid:1")],
            ..sample_entry()
        },
    ];
    print::sort_entries(&mut entries);
    assert_eq!(entries[0].spiffe_id, id("example.org", "/a"));
    assert_eq!(entries[0].selectors[0], sel("unix", "gid:1"));
}

#[test]
fn json_listing_one_entry_at_a_time_is_the_whole_response() {
    let mut second = sample_entry();
    second.id = "second".into();
    second.hint = "<html & \"quotes\">".into();
    for entries in [vec![], vec![sample_entry()], vec![sample_entry(), second]] {
        let whole = crate::cli::output::proto_json(
            &ListEntriesResponse {
                entries: entries.clone(),
                next_page_token: String::new(),
            },
            "spire.api.server.entry.v1.ListEntriesResponse",
        )
        .unwrap();
        let mut streamed = Vec::new();
        crate::cli::output::write_listing_json(
            &mut streamed,
            "entries",
            &entries,
            "spire.api.types.Entry",
        )
        .unwrap();
        assert_eq!(String::from_utf8(streamed).unwrap(), whole + "\n");
    }
}
