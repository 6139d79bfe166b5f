//! Bad server configs: each is refused with a message naming the key (or
//! plugin, or flag) and, when it comes from the file, `file:line`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use spinel_config::hcl::ConfigFile;
use spinel_server::config::{self, Overrides};

const PLUGINS: &str = r#"
plugins {
    DataStore "sled" {}
    KeyManager "memory" {}
}
"#;

fn error_of(text: &str) -> String {
    error_with(text, &Overrides::default())
}

fn error_with(text: &str, overrides: &Overrides) -> String {
    let result = ConfigFile::parse(Path::new("bad.conf"), text)
        .map_err(config::ConfigLoadError::from)
        .and_then(|file| config::from_file(&file, overrides));
    match result {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn server(body: &str) -> String {
    format!("server {{\n    trust_domain = \"example.org\"\n{body}\n}}\n{PLUGINS}")
}

fn assert_names(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "{err:?} should mention {part:?}");
    }
}

#[test]
fn unknown_server_key() {
    let err = error_of(&server("    bind_prot = 8081"));
    assert_names(&err, &["bad.conf:3", "server.bind_prot", "unknown key"]);
}

#[test]
fn unknown_top_level_block() {
    let err = error_of(&format!("{}\nserverr {{}}\n", server("")));
    assert_names(&err, &["bad.conf:", "serverr"]);
}

#[test]
fn missing_server_block() {
    let err = error_of(PLUGINS);
    assert_names(&err, &["bad.conf", "server"]);
}

#[test]
fn missing_trust_domain() {
    let err = error_of(&format!("server {{\n    bind_port = 1\n}}\n{PLUGINS}"));
    assert_names(&err, &["bad.conf", "server.trust_domain", "-trustDomain"]);
}

#[test]
fn bad_trust_domain() {
    for bad in [
        "Example.org",
        "spiffe://example.org/path",
        "exa mple.org",
        "",
    ] {
        let text = format!("server {{\n    trust_domain = \"{bad}\"\n}}\n{PLUGINS}");
        let err = error_of(&text);
        assert_names(&err, &["bad.conf:2", "server.trust_domain"]);
    }
}

#[test]
fn bad_trust_domain_flag() {
    let err = error_with(
        &server(""),
        &Overrides {
            trust_domain: Some("Bad.Org".into()),
            ..Default::default()
        },
    );
    assert_names(&err, &["-trustDomain"]);
}

#[test]
fn bad_durations() {
    for key in [
        "ca_ttl",
        "default_x509_svid_ttl",
        "default_jwt_svid_ttl",
        "agent_ttl",
    ] {
        for bad in ["\"1 hour\"", "\"-5m\"", "\"0s\"", "\"h\""] {
            let err = error_of(&server(&format!("    {key} = {bad}")));
            assert_names(&err, &["bad.conf:3", &format!("server.{key}")]);
        }
    }
}

#[test]
fn bind_port_out_of_range() {
    for bad in ["70000", "\"70000\"", "-1", "\"http\""] {
        let err = error_of(&server(&format!("    bind_port = {bad}")));
        assert_names(&err, &["bad.conf:3", "server.bind_port"]);
    }
}

#[test]
fn bad_key_type() {
    let err = error_of(&server("    ca_key_type = \"ed25519\""));
    assert_names(&err, &["bad.conf:3", "server.ca_key_type", "ec-p256"]);
    let err = error_of(&server("    jwt_key_type = \"rsa-1024\""));
    assert_names(&err, &["bad.conf:3", "server.jwt_key_type"]);
}

#[test]
fn bad_log_settings() {
    let err = error_of(&server("    log_level = \"LOUD\""));
    assert_names(&err, &["bad.conf:3", "server.log_level"]);
    let err = error_of(&server("    log_format = \"xml\""));
    assert_names(&err, &["bad.conf:3", "server.log_format"]);
    let err = error_with(
        &server(""),
        &Overrides {
            log_level: Some("LOUD".into()),
            ..Default::default()
        },
    );
    assert_names(&err, &["-logLevel"]);
}

#[test]
fn bad_admin_id() {
    let err = error_of(&server("    admin_ids = [\"spiffe://example.org/a/../b\"]"));
    assert_names(&err, &["bad.conf:3", "server.admin_ids"]);
}

#[test]
fn unknown_ca_subject_key() {
    let err = error_of(&server("    ca_subject {\n        org = [\"x\"]\n    }"));
    assert_names(&err, &["bad.conf:4", "server.ca_subject.org"]);
}

#[test]
fn missing_datastore_and_key_manager() {
    let err = error_of(
        "server {\n    trust_domain = \"example.org\"\n}\nplugins {\n    KeyManager \"memory\" {}\n}\n",
    );
    assert_names(&err, &["bad.conf", "DataStore"]);
    let err = error_of(
        "server {\n    trust_domain = \"example.org\"\n}\nplugins {\n    DataStore \"sled\" {}\n}\n",
    );
    assert_names(&err, &["bad.conf", "KeyManager"]);
}

#[test]
fn unsupported_plugins() {
    let text = |plugin: &str| {
        format!(
            "server {{\n    trust_domain = \"example.org\"\n}}\nplugins {{\n    DataStore \"sled\" {{}}\n    KeyManager \"memory\" {{}}\n{plugin}\n}}\n"
        )
    };
    let err = error_of(&text("    NodeAttestor \"aws_iid\" {}"));
    assert_names(
        &err,
        &["bad.conf:7", "NodeAttestor", "aws_iid", "join_token"],
    );
    let err = error_of(&text("    UpstreamAuthority \"disk\" {}"));
    assert_names(&err, &["bad.conf:7", "UpstreamAuthority"]);
    let err = error_of(
        "server {\n    trust_domain = \"example.org\"\n}\nplugins {\n    DataStore \"sled\" {}\n    KeyManager \"aws_kms\" {}\n}\n",
    );
    assert_names(&err, &["bad.conf:6", "KeyManager", "aws_kms"]);
}

/// A `DataStore "sql"` block at line 5 with `plugin_data` lines `data`.
fn sql(data: &str) -> String {
    format!(
        "server {{\n    trust_domain = \"example.org\"\n}}\nplugins {{\n    DataStore \"sql\" {{\n        plugin_data {{\n{data}\n        }}\n    }}\n    KeyManager \"memory\" {{}}\n}}\n"
    )
}

#[test]
fn sql_datastore_errors_name_the_key() {
    let err = error_of(&sql(
        "            database_type = \"mysql\"\n            connection_string = \"x\"",
    ));
    assert_names(
        &err,
        &["bad.conf:5", "database_type", "mysql", "not supported"],
    );
    let err = error_of(&sql("            connection_string = \"x.db\""));
    assert_names(&err, &["bad.conf:5", "database_type", "required"]);
    let err = error_of(&sql("            database_type = \"sqlite3\""));
    assert_names(&err, &["bad.conf:5", "connection_string", "required"]);
    let err = error_of(&sql(
        "            database_type = \"postgres\"\n            connection_string = \"dbname=spinel password=hunter2 connect_timeout=5\"",
    ));
    assert_names(
        &err,
        &["bad.conf:5", "connection_string", "connect_timeout"],
    );
    assert!(!err.contains("hunter2"), "password leaked: {err}");
    let err = error_of(&sql(
        "            database_type = \"postgres\"\n            connection_string = \"dbname=x\"\n            conn_max_lifetime = \"30 seconds\"",
    ));
    assert_names(&err, &["bad.conf:5", "conn_max_lifetime", "Go duration"]);
    let err = error_of(&sql(
        "            database_type = \"sqlite3\"\n            connection_string = \"x.db\"\n            root_ca_path = \"/ca.pem\"",
    ));
    assert_names(&err, &["bad.conf:5", "root_ca_path", "postgres"]);
    let err = error_of(&sql(
        "            database_type = \"sqlite3\"\n            connection_string = \"x.db\"\n            max_open_connections = 3",
    ));
    assert_names(&err, &["max_open_connections"]);
}

#[test]
fn unknown_plugin_data_key() {
    let err = error_of(
        "server {\n    trust_domain = \"example.org\"\n}\nplugins {\n    DataStore \"sled\" {\n        plugin_data {\n            paht = \"x\"\n        }\n    }\n    KeyManager \"memory\" {}\n}\n",
    );
    assert_names(
        &err,
        &["bad.conf:7", "plugins.DataStore.sled.plugin_data.paht"],
    );
}

#[test]
fn disk_key_manager_needs_keys_path() {
    let err = error_of(
        "server {\n    trust_domain = \"example.org\"\n}\nplugins {\n    DataStore \"sled\" {}\n    KeyManager \"disk\" {\n        plugin_data {}\n    }\n}\n",
    );
    assert_names(&err, &["bad.conf", "keys_path"]);
}

#[test]
fn unknown_health_checks_key() {
    let err = error_of(&format!(
        "{}\nhealth_checks {{\n    listener_enabled = true\n    bind_prot = 80\n}}\n",
        server("")
    ));
    assert_names(&err, &["health_checks.bind_prot", "unknown key"]);
}

#[test]
fn syntax_error_names_the_line() {
    let err = error_of("server {\n    trust_domain = \"example.org\n}\n");
    assert_names(&err, &["bad.conf:"]);
}
