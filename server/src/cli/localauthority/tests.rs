//! `localauthority` flags and output layouts.

use spinel_proto::spire::api::server::localauthority::v1::{
    AuthorityState, GetX509AuthorityStateResponse,
};

use super::*;
use crate::cli::admin_client::test_support::{parse, parse_err};
use crate::cli::output::proto_json;
use crate::cli::Command;

fn cmd(args: &[&str]) -> LocalAuthorityCommand {
    let mut full = vec!["localauthority"];
    full.extend_from_slice(args);
    match parse(&full).command {
        Command::LocalAuthority(cmd) => cmd,
        other => panic!("{other:?}"),
    }
}

#[test]
fn flags() {
    match cmd(&["x509", "taint", "-authorityID", "abcd", "-output", "json"]) {
        LocalAuthorityCommand::X509(AuthorityCommand::Taint(a)) => {
            assert_eq!(a.authority_id.as_deref(), Some("abcd"));
            assert_eq!(a.common.output, OutputFormat::Json);
        }
        other => panic!("{other:?}"),
    }
    match cmd(&["jwt", "activate", "--authorityID=k1", "-socketPath", "/s"]) {
        LocalAuthorityCommand::Jwt(AuthorityCommand::Activate(a)) => {
            assert_eq!(a.id().unwrap(), "k1");
            assert_eq!(a.common.socket_path, std::path::PathBuf::from("/s"));
        }
        other => panic!("{other:?}"),
    }
    match cmd(&["x509", "revoke"]) {
        LocalAuthorityCommand::X509(AuthorityCommand::Revoke(a)) => {
            assert!(a
                .id()
                .unwrap_err()
                .to_string()
                .contains("authority ID is required"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cmd(&["jwt", "show"]),
        LocalAuthorityCommand::Jwt(AuthorityCommand::Show(_))
    ));
    assert!(
        parse_err(&["localauthority", "x509", "show", "-authorityID", "x"]).contains("authorityID")
    );
}

fn state(id: &str) -> AuthorityState {
    AuthorityState {
        authority_id: id.into(),
        expires_at: 1_800_000_000,
        upstream_authority_subject_key_id: String::new(),
    }
}

#[test]
fn pretty_layouts() {
    let a = state("aaaa");
    let mut old = state("bbbb");
    old.upstream_authority_subject_key_id = "cccc".into();
    assert_eq!(
        format_state(Kind::X509, Some(&a), None, Some(&old)),
        "Active X.509 authority:\n  Authority ID: aaaa\n  Expires at: 2027-01-15 08:00:00 +0000 UTC\n\n\
         Prepared X.509 authority:\n  No prepared X.509 authority found\n\n\
         Old X.509 authority:\n  Authority ID: bbbb\n  Expires at: 2027-01-15 08:00:00 +0000 UTC\n  \
         Upstream authority Subject Key ID: cccc\n"
    );
    assert_eq!(
        format_one("Tainted", Kind::Jwt, Some(&a)),
        "Tainted JWT authority:\n  Authority ID: aaaa\n  Expires at: 2027-01-15 08:00:00 +0000 UTC\n"
    );
}

#[test]
fn json_shape() {
    let resp = GetX509AuthorityStateResponse {
        active: Some(state("aaaa")),
        prepared: None,
        old: None,
    };
    let json = proto_json(
        &resp,
        "spire.api.server.localauthority.v1.GetX509AuthorityStateResponse",
    )
    .unwrap();
    assert_eq!(
        json,
        r#"{"active":{"authority_id":"aaaa","expires_at":"1800000000","upstream_authority_subject_key_id":""}}"#
    );
}
