//! Flag parsing, checks and requests of the `entry` subcommands, through the
//! real `spinel-server` command line; no server needed.

use super::{CountArgs, CreateArgs, DeleteArgs, DeleteTarget, EntryCommand, ShowArgs, UpdateArgs};
use crate::cli::admin_client::test_support::{parse, parse_err};
use crate::cli::admin_client::OutputFormat;
use crate::cli::Command;
use spinel_proto::spire::api::types::{
    entry::AdditionalAttributes, selector_match, Entry, Selector, Spiffeid,
};

fn entry_cmd(args: &[&str]) -> EntryCommand {
    match parse(args).command {
        Command::Entry(cmd) => cmd,
        other => panic!("not an entry command: {other:?}"),
    }
}

fn create(args: &[&str]) -> CreateArgs {
    let mut full = vec!["entry", "create"];
    full.extend_from_slice(args);
    match entry_cmd(&full) {
        EntryCommand::Create(a) => a,
        other => panic!("{other:?}"),
    }
}

fn update(args: &[&str]) -> UpdateArgs {
    let mut full = vec!["entry", "update"];
    full.extend_from_slice(args);
    match entry_cmd(&full) {
        EntryCommand::Update(a) => a,
        other => panic!("{other:?}"),
    }
}

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

#[test]
fn readme_create_builds_the_request() {
    let args = create(&[
        "-parentID",
        "spiffe://example.org/myagent",
        "-spiffeID",
        "spiffe://example.org/myservice",
        "-selector",
        "unix:uid:1000",
        "-dns",
        "example.org",
        "-hint",
        "myservice",
        "-jwtSVIDTTL",
        "60",
    ]);
    assert_eq!(args.common.output, OutputFormat::Pretty);
    assert_eq!(
        args.common.socket_path,
        std::path::Path::new(crate::cli::DEFAULT_SOCKET_PATH)
    );
    let entry = args.entry().unwrap();
    assert_eq!(
        entry,
        Entry {
            spiffe_id: id("example.org", "/myservice"),
            parent_id: id("example.org", "/myagent"),
            selectors: vec![sel("unix", "uid:1000")],
            dns_names: vec!["example.org".into()],
            hint: "myservice".into(),
            jwt_svid_ttl: 60,
            ..Default::default()
        }
    );
}

#[test]
fn go_flag_spellings_are_equivalent() {
    let forms: [&[&str]; 3] = [
        &[
            "-spiffeID",
            "spiffe://example.org/a",
            "-parentID",
            "spiffe://example.org/p",
        ],
        &[
            "-spiffeID=spiffe://example.org/a",
            "-parentID=spiffe://example.org/p",
        ],
        &[
            "--spiffeID",
            "spiffe://example.org/a",
            "--parentID=spiffe://example.org/p",
        ],
    ];
    for form in forms {
        let mut args = form.to_vec();
        args.extend([
            "-selector",
            "unix:uid:1",
            "-socketPath",
            "/tmp/x.sock",
            "-output",
            "json",
        ]);
        let a = create(&args);
        let e = a.entry().unwrap();
        assert_eq!(e.spiffe_id, id("example.org", "/a"));
        assert_eq!(e.parent_id, id("example.org", "/p"));
        assert_eq!(a.common.socket_path, std::path::Path::new("/tmp/x.sock"));
        assert_eq!(a.common.output, OutputFormat::Json);
    }
}

#[test]
fn all_create_flags() {
    let a = create(&[
        "-entryID",
        "my-id",
        "-spiffeID",
        "spiffe://example.org/a",
        "-parentID",
        "spiffe://example.org/p",
        "-selector",
        "unix:uid:1",
        "-selector",
        "k8s:pod-label:app:web",
        "-federatesWith",
        "spiffe://other.org",
        "-federatesWith",
        "third.org",
        "-dns",
        "a.example.org",
        "-dns",
        "b.example.org",
        "-x509SVIDTTL",
        "3600",
        "-jwtSVIDTTL",
        "300",
        "-entryExpiry",
        "1700000000",
        "-admin",
        "-downstream=true",
        "-storeSVID=false",
        "-disableX509SVIDPrefetch",
        "-jwtSVIDIncludeJTI=1",
    ]);
    let e = a.entry().unwrap();
    assert_eq!(e.id, "my-id");
    assert_eq!(
        e.selectors,
        vec![sel("unix", "uid:1"), sel("k8s", "pod-label:app:web")]
    );
    assert_eq!(e.federates_with, vec!["other.org", "third.org"]);
    assert_eq!(e.dns_names, vec!["a.example.org", "b.example.org"]);
    assert_eq!(
        (e.x509_svid_ttl, e.jwt_svid_ttl, e.expires_at),
        (3600, 300, 1_700_000_000)
    );
    assert!(e.admin && e.downstream && !e.store_svid);
    assert_eq!(
        e.additional_attributes,
        Some(AdditionalAttributes {
            disable_x509_svid_prefetch: true,
            jwt_svid_include_jti: true
        })
    );
}

#[test]
fn node_entries_are_parented_to_the_server() {
    let e = create(&[
        "-node",
        "-spiffeID",
        "spiffe://example.org/cluster/a",
        "-selector",
        "join_token:x",
    ])
    .entry()
    .unwrap();
    assert_eq!(e.parent_id, id("example.org", "/spire/server"));
}

#[test]
fn deprecated_ttl_is_the_x509_ttl() {
    let base = [
        "-spiffeID",
        "spiffe://example.org/a",
        "-parentID",
        "spiffe://example.org/p",
        "-selector",
        "u:1",
    ];
    let mut args = base.to_vec();
    args.extend(["-ttl", "120"]);
    assert_eq!(create(&args).entry().unwrap().x509_svid_ttl, 120);
    args.extend(["-x509SVIDTTL", "60"]);
    let err = create(&args).entry().unwrap_err().to_string();
    assert!(
        err.contains("-ttl") && err.contains("-x509SVIDTTL"),
        "{err}"
    );
}

#[test]
fn repeated_scalar_flags_take_the_last_value() {
    let a = create(&[
        "-spiffeID",
        "spiffe://example.org/a",
        "-spiffeID",
        "spiffe://example.org/b",
        "-parentID",
        "spiffe://example.org/p",
        "-selector",
        "u:1",
    ]);
    assert_eq!(a.entry().unwrap().spiffe_id, id("example.org", "/b"));
}

#[test]
fn missing_and_conflicting_flags_are_named() {
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "-spiffeID",
                "spiffe://example.org/a",
                "-parentID",
                "spiffe://example.org/p",
            ],
            "-selector",
        ),
        (
            &["-selector", "u:1", "-parentID", "spiffe://example.org/p"],
            "-spiffeID",
        ),
        (
            &["-selector", "u:1", "-spiffeID", "spiffe://example.org/a"],
            "-parentID",
        ),
        (
            &[
                "-node",
                "-federatesWith",
                "o.org",
                "-selector",
                "u:1",
                "-spiffeID",
                "spiffe://example.org/a",
            ],
            "-federatesWith",
        ),
        (
            &[
                "-node",
                "-parentID",
                "spiffe://example.org/p",
                "-selector",
                "u:1",
                "-spiffeID",
                "spiffe://example.org/a",
            ],
            "-parentID",
        ),
        (
            &[
                "-selector",
                "u:1",
                "-parentID",
                "spiffe://example.org/p",
                "-spiffeID",
                "spiffe://example.org/spire/agent/x",
            ],
            "-spiffeID",
        ),
        (
            &[
                "-selector",
                "u:1",
                "-parentID",
                "spiffe://example.org/p",
                "-spiffeID",
                "spiffe://example.org",
            ],
            "-spiffeID",
        ),
    ];
    for (args, flag) in cases {
        let err = create(args).entry().unwrap_err().to_string();
        assert!(err.contains(flag), "{args:?}: {err:?} should name {flag}");
    }
}

#[test]
fn spire_messages_are_kept() {
    let err = create(&[
        "-spiffeID",
        "spiffe://example.org/a",
        "-parentID",
        "spiffe://example.org/p",
    ])
    .entry()
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("at least one selector is required"),
        "{err}"
    );
    let err = create(&["-selector", "u:1", "-parentID", "spiffe://example.org/p"])
        .entry()
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("a SPIFFE ID is required"), "{err}");
}

#[test]
fn bad_values_are_refused_naming_the_flag() {
    let cases: [(&[&str], &str); 13] = [
        (&["-spiffeID", "spiffe://EXAMPLE.org/a"], "spiffeID"),
        (&["-spiffeID", "spiffe://example.org/../a"], "spiffeID"),
        (&["-spiffeID", "spiffe://example.org/%2e/a"], "spiffeID"),
        (&["-spiffeID", "spiffe://example.org/a/"], "spiffeID"),
        (&["-parentID", "http://example.org/a"], "parentID"),
        (&["-selector", "nocolon"], "selector"),
        (&["-selector", ":value"], "selector"),
        (&["-x509SVIDTTL", "-5"], "x509SVIDTTL"),
        (&["-jwtSVIDTTL", "ten"], "jwtSVIDTTL"),
        (&["-x509SVIDTTL", "3000000000"], "x509SVIDTTL"),
        (
            &["-federatesWith", "spiffe://other.org/path"],
            "federatesWith",
        ),
        (&["-admin=maybe"], "admin"),
        (&["-output", "yaml"], "output"),
    ];
    for (args, flag) in cases {
        let mut full = vec!["entry", "create"];
        full.extend_from_slice(args);
        let err = parse_err(&full);
        assert!(err.contains(flag), "{args:?}: {err} should name {flag}");
    }
}

#[test]
fn data_excludes_entry_flags() {
    let a = create(&["-data", "entries.json"]);
    assert_eq!(a.data_file().unwrap(), Some(&"entries.json".into()));
    let a = create(&["-data", "-", "-spiffeID", "spiffe://example.org/a"]);
    assert!(a.data_file().unwrap_err().to_string().contains("-data"));
}

#[test]
fn update_requires_entry_id_and_merges_attributes() {
    let base = [
        "-spiffeID",
        "spiffe://example.org/a",
        "-parentID",
        "spiffe://example.org/p",
        "-selector",
        "u:1",
    ];
    let err = update(&base).entry().unwrap_err().to_string();
    assert!(
        err.starts_with("entry ID is required") && err.contains("-entryID"),
        "{err}"
    );

    let mut args = base.to_vec();
    args.extend(["-entryID", "e1", "-storeSVID", "-disableX509SVIDPrefetch"]);
    let a = update(&args);
    let mut e = a.entry().unwrap();
    assert_eq!(e.id, "e1");
    assert!(e.store_svid);
    assert!(a.attributes_given());
    let stored = Entry {
        additional_attributes: Some(AdditionalAttributes {
            disable_x509_svid_prefetch: false,
            jwt_svid_include_jti: true,
        }),
        ..Default::default()
    };
    a.merge_attributes(&mut e, &stored);
    assert_eq!(
        e.additional_attributes,
        Some(AdditionalAttributes {
            disable_x509_svid_prefetch: true,
            jwt_svid_include_jti: true
        })
    );
}

#[test]
fn delete_targets() {
    let delete = |args: &[&str]| -> DeleteArgs {
        let mut full = vec!["entry", "delete"];
        full.extend_from_slice(args);
        match entry_cmd(&full) {
            EntryCommand::Delete(a) => a,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        delete(&["-entryID", "e1"]).target().unwrap(),
        DeleteTarget::Id("e1")
    );
    assert!(matches!(
        delete(&["-file", "-"]).target().unwrap(),
        DeleteTarget::File(_)
    ));
    let err = delete(&[]).target().unwrap_err().to_string();
    assert!(
        err.starts_with("an entry ID is required") && err.contains("-entryID"),
        "{err}"
    );
}

fn show(args: &[&str]) -> ShowArgs {
    let mut full = vec!["entry", "show"];
    full.extend_from_slice(args);
    match entry_cmd(&full) {
        EntryCommand::Show(a) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn show_filters() {
    let a = show(&[
        "-spiffeID",
        "spiffe://example.org/a",
        "-parentID",
        "spiffe://example.org/p",
        "-selector",
        "unix:uid:1",
        "-matchSelectorsOn",
        "exact",
        "-federatesWith",
        "other.org",
        "-hint",
        "h",
    ]);
    assert_eq!(a.by_id().unwrap(), None);
    let req = a.list_request(String::new());
    assert_eq!(req.page_size, 500);
    let f = req.filter.unwrap();
    assert_eq!(f.by_spiffe_id, id("example.org", "/a"));
    assert_eq!(f.by_parent_id, id("example.org", "/p"));
    let by_sel = f.by_selectors.unwrap();
    assert_eq!(by_sel.selectors, vec![sel("unix", "uid:1")]);
    assert_eq!(
        by_sel.r#match,
        selector_match::MatchBehavior::MatchExact as i32
    );
    let by_fed = f.by_federates_with.unwrap();
    assert_eq!(by_fed.trust_domains, vec!["other.org"]);
    assert_eq!(by_fed.r#match, 2, "superset is the default");
    assert_eq!(f.by_hint.as_deref(), Some("h"));
    assert_eq!(f.by_downstream, Some(false));

    let a = show(&["-entryID", "e1"]);
    assert_eq!(a.by_id().unwrap(), Some("e1"));
    let err = show(&["-entryID", "e1", "-spiffeID", "spiffe://example.org/a"])
        .by_id()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the -entryID flag can't be combined with others"
    );
    let err = parse_err(&["entry", "show", "-matchSelectorsOn", "most"]);
    assert!(err.contains("matchSelectorsOn"), "{err}");
}

#[test]
fn count_filter() {
    let a: CountArgs = match entry_cmd(&["entry", "count", "-downstream", "-hint", "h"]) {
        EntryCommand::Count(a) => a,
        other => panic!("{other:?}"),
    };
    let f = a.request().filter.unwrap();
    assert_eq!(f.by_downstream, Some(true));
    assert_eq!(f.by_hint.as_deref(), Some("h"));
    assert!(f.by_selectors.is_none());
}
