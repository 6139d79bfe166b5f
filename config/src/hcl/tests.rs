//! Tests of [`ConfigFile`] sections and the HCL tree.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::*;

const EXAMPLE: &str = r#"server {
    bind_address = "127.0.0.1"
    bind_port = "8081"            # SPIRE accepts numbers given as strings
    trust_domain = "example.org"
    data_dir = "./.data"
    log_level = "DEBUG"
    ca_ttl = "24h"
}
plugins {
    DataStore "sled" {
        plugin_data {
            path = "./.data/datastore"
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = "./.data/keys.json"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
health_checks {
    listener_enabled = true
}
"#;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Server {
    bind_address: String,
    #[serde(deserialize_with = "crate::de::u16_or_string")]
    bind_port: u16,
    trust_domain: String,
    data_dir: String,
    #[serde(default)]
    log_level: Option<String>,
    #[serde(default, deserialize_with = "crate::de::option_go_duration")]
    ca_ttl: Option<std::time::Duration>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct HealthChecks {
    #[serde(default)]
    listener_enabled: bool,
}

fn parse(source: &str) -> ConfigFile {
    ConfigFile::parse(Path::new("server.conf"), source).unwrap()
}

fn err_of<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    source: &str,
    name: &str,
) -> ConfigError {
    parse(source).section::<T>(name).unwrap_err()
}

#[test]
fn example_parses() {
    let file = parse(EXAMPLE);
    file.check_top_level(&["server", "plugins", "health_checks", "telemetry"])
        .unwrap();
    assert_eq!(file.section_names(), ["server", "plugins", "health_checks"]);
    let server: Server = file.section("server").unwrap();
    assert_eq!(server.bind_address, "127.0.0.1");
    assert_eq!(server.bind_port, 8081);
    assert_eq!(server.trust_domain, "example.org");
    assert_eq!(server.log_level.as_deref(), Some("DEBUG"));
    assert_eq!(server.ca_ttl, Some(std::time::Duration::from_secs(86_400)));
    let health: HealthChecks = file.section_or_default("health_checks").unwrap();
    assert!(health.listener_enabled);
    let telemetry: Option<HealthChecks> = file.optional_section("telemetry").unwrap();
    assert_eq!(telemetry, None);
    let plugins = file.plugins().unwrap();
    let names: Vec<_> = plugins
        .iter()
        .map(|p| (p.kind.as_str(), p.name.as_str(), p.line))
        .collect();
    assert_eq!(
        names,
        [
            ("DataStore", "sled", 10),
            ("KeyManager", "disk", 15),
            ("NodeAttestor", "join_token", 20)
        ]
    );
}

#[test]
fn unknown_key_names_key_path_and_line() {
    let source = EXAMPLE.replace("bind_port = \"8081\"", "bind_prot = \"8081\"");
    let err = err_of::<Server>(&source, "server");
    match &err {
        ConfigError::UnknownKey {
            line,
            key_path,
            expected,
            ..
        } => {
            assert_eq!(*line, 3);
            assert_eq!(key_path, "server.bind_prot");
            assert!(expected.contains("`bind_port`"), "{expected}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("server.conf:3: unknown key `server.bind_prot`; expected one of"));
}

#[test]
fn type_error_names_key_line_and_expectation() {
    let source = EXAMPLE.replace("bind_port = \"8081\"", "bind_port = \"abc\"");
    let err = err_of::<Server>(&source, "server").to_string();
    assert_eq!(
        err,
        "server.conf:3: invalid value for `server.bind_port`: invalid value: string \"abc\", \
         expected an integer of type u16, as a number or a string"
    );
    let source = EXAMPLE.replace("trust_domain = \"example.org\"", "trust_domain = 5");
    let err = err_of::<Server>(&source, "server").to_string();
    assert_eq!(
        err,
        "server.conf:4: invalid value for `server.trust_domain`: invalid type: integer `5`, expected a string"
    );
}

#[test]
fn missing_key_points_at_the_block() {
    let err = err_of::<Server>("\nserver {\n  bind_address = \"x\"\n}\n", "server").to_string();
    assert_eq!(
        err,
        "server.conf:2: missing required key `server.bind_port`"
    );
}

#[test]
fn missing_and_unknown_sections() {
    let file = parse("plugins {}\nagent {\n}\n");
    let err = file.section::<Server>("server").unwrap_err().to_string();
    assert_eq!(err, "server.conf: missing required `server` block");
    let err = file
        .check_top_level(&["server", "plugins"])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "server.conf:2: unknown top-level block `agent`; expected one of: server, plugins"
    );
    assert!(file.has_section("agent"));
    assert!(!file.has_section("server"));
}

#[test]
fn syntax_error_has_line_and_column() {
    let err =
        ConfigFile::parse(Path::new("bad.conf"), "server {\n  bind_port = = 1\n}\n").unwrap_err();
    match &err {
        ConfigError::Syntax {
            line,
            column,
            message,
            ..
        } => {
            assert_eq!(*line, 2);
            assert!(*column > 1);
            assert!(!message.is_empty());
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().starts_with("bad.conf:2:"), "{err}");
    let err = ConfigFile::parse(Path::new("bad.conf"), "server {\n  a = 1\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
}

#[test]
fn duplicates_are_rejected_with_both_lines() {
    let err = ConfigFile::parse(Path::new("d.conf"), "server {\n a = 1\n b = 2\n a = 3\n}\n")
        .unwrap_err();
    // The parser itself rejects a repeated attribute in a body.
    assert!(matches!(err, ConfigError::Syntax { line: 4, .. }), "{err}");
    let err = ConfigFile::parse(Path::new("d.conf"), "x = {\n a = 1\n \"a\" = 2\n}\n").unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::DuplicateKey {
                line: 3,
                first_line: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = ConfigFile::parse(Path::new("d.conf"), "a = 1\na {\n}\n").unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::DuplicateKey {
                line: 2,
                first_line: 1,
                ..
            }
        ),
        "{err}"
    );
    let err = err_of::<Server>("server {\n}\n\nserver {\n}\n", "server").to_string();
    assert_eq!(
        err,
        "server.conf:4: `server`: the block is given twice (first at line 1)"
    );
}

#[test]
fn expressions_other_than_literals_are_rejected() {
    for (value, what) in [
        ("var.x", "variables"),
        ("x", "variables"),
        ("upper(\"a\")", "function calls"),
        ("1 + 2", "operators"),
        ("true ? 1 : 2", "operators"),
        ("[for x in y : x]", "for expressions"),
    ] {
        let err = ConfigFile::parse(Path::new("e.conf"), &format!("s {{\n  k = {value}\n}}\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("e.conf:2: `s.k`: {what} are not supported in configuration files; use a literal value")
        );
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Literals {
    template: String,
    heredoc: String,
    indented: String,
    negative: i64,
    parenthesized: f64,
    nothing: Option<String>,
    object: BTreeMap<String, u32>,
}

#[test]
fn literals_follow_hcl1_semantics() {
    let source = "s {\n  template = \"a ${X} %{ if y }b%{ endif } \\\"q\\\"\"\n  heredoc = <<EOF\nline 1\n  line 2\nEOF\n  indented = <<-EOT\n    x\n      y\n    EOT\n  negative = -42\n  parenthesized = (1.5)\n  nothing = null\n  object = { a = 1, \"b c\" = 2 }\n}\n";
    let literals: Literals = parse(source).section("s").unwrap();
    assert_eq!(
        literals,
        Literals {
            template: "a ${X} %{ if y }b%{ endif } \"q\"".into(),
            heredoc: "line 1\n  line 2\n".into(),
            indented: "x\n  y\n".into(),
            negative: -42,
            parenthesized: 1.5,
            nothing: None,
            object: [("a".to_owned(), 1), ("b c".to_owned(), 2)].into(),
        }
    );
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Nested {
    ca_subject: Vec<Subject>,
    federation: Federation,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Subject {
    country: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Federation {
    federates_with: BTreeMap<String, Relationship>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Relationship {
    bundle_endpoint_url: String,
}

const NESTED: &str = r#"server {
  ca_subject {
    country = ["US"]
  }
  ca_subject {
    country = ["FR", "DE"]
  }
  federation {
    federates_with "a.org" {
      bundle_endpoint_url = "https://a.org"
    }
    federates_with "b.org" {
      bundle_endpoint_url = "https://b.org"
    }
  }
}
"#;

#[test]
fn nested_labeled_and_repeated_blocks() {
    let nested: Nested = parse(NESTED).section("server").unwrap();
    assert_eq!(nested.ca_subject.len(), 2);
    assert_eq!(nested.ca_subject[1].country, ["FR", "DE"]);
    assert_eq!(
        nested.federation.federates_with["b.org"].bundle_endpoint_url,
        "https://b.org"
    );
}

#[test]
fn nested_errors_point_inside() {
    let source = NESTED.replace("[\"FR\", \"DE\"]", "[\"FR\",\n      7]");
    let err = err_of::<Nested>(&source, "server").to_string();
    assert_eq!(
        err,
        "server.conf:7: invalid value for `server.ca_subject[1].country[1]`: invalid type: integer `7`, expected a string"
    );
    let source = NESTED.replace("bundle_endpoint_url = \"https://b.org\"", "url = 1");
    let err = err_of::<Nested>(&source, "server").to_string();
    assert!(
        err.starts_with("server.conf:13: unknown key `server.federation.federates_with.b.org.url`"),
        "{err}"
    );
    let source = NESTED.replace("federates_with \"b.org\"", "federates_with \"a.org\"");
    let err = ConfigFile::parse(Path::new("server.conf"), &source)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "server.conf:12: `server.federation.federates_with.a.org` is already defined at line 9"
    );
}

#[test]
fn reads_files_and_expands_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.conf");
    std::fs::write(
        &path,
        "server {\n  trust_domain = \"${TD}\"\n  data_dir = \"$HOME/x\"\n}\n",
    )
    .unwrap();
    let lookup = |name: &str| match name {
        "TD" => Some("example.org".to_owned()),
        _ => None,
    };
    #[derive(Deserialize)]
    struct S {
        trust_domain: String,
        data_dir: String,
    }
    let s: S = ConfigFile::read_expand_env(&path, lookup)
        .unwrap()
        .section("server")
        .unwrap();
    assert_eq!(
        (s.trust_domain.as_str(), s.data_dir.as_str()),
        ("example.org", "/x")
    );
    let raw = ConfigFile::read(&path).unwrap();
    assert_eq!(raw.path(), path);
    let s: S = raw.section("server").unwrap();
    assert_eq!(s.trust_domain, "${TD}");
    let err = ConfigFile::read(&dir.path().join("nope.conf")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("nope.conf"), "{err}");
}

#[test]
fn line_of_finds_keys_and_blocks() {
    let file = ConfigFile::parse(Path::new("server.conf"), EXAMPLE).unwrap();
    assert_eq!(file.line_of(&["server"]), Some(1));
    assert_eq!(file.line_of(&["server", "trust_domain"]), Some(4));
    assert_eq!(
        file.line_of(&["health_checks", "listener_enabled"]),
        Some(25)
    );
    assert_eq!(file.line_of(&["server", "nope"]), None);
}
