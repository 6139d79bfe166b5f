//! SPIRE's own sample configuration files parse unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::*;

/// `conf/server/server.conf` of SPIRE, with its `ca_subject = { ..., }`
/// object written with commas and a trailing comma.
const SPIRE_SERVER: &str = r#"server {
    bind_address = "127.0.0.1"
    bind_port = "8081"
    socket_path = "/tmp/spire-server/private/api.sock"
    trust_domain = "example.org"
    data_dir = "./.data"
    log_level = "DEBUG"
    ca_key_type = "rsa-2048"

    ca_subject = {
        country = ["US"],
        organization = ["SPIFFE"],
        common_name = "",
    }
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "./.data/datastore.sqlite3"
        }
    }

    NodeAttestor "join_token" {
        plugin_data {
        }
    }

    KeyManager "memory" {
        plugin_data = {}
    }

    UpstreamAuthority "disk" {
        plugin_data {
            key_file_path = "./conf/server/dummy_upstream_ca.key"
            cert_file_path = "./conf/server/dummy_upstream_ca.crt"
        }
    }
}

health_checks {
    listener_enabled = true
    bind_address = "0.0.0.0"
    bind_port = "8080"
    live_path = "/live"
    ready_path = "/ready"
}
"#;

/// `conf/agent/agent.conf` of SPIRE (note `socket_path ="..."`).
const SPIRE_AGENT: &str = r#"agent {
    data_dir = "./.data"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "8081"
    socket_path ="/tmp/spire-agent/public/api.sock"
    trust_bundle_path = "./conf/agent/dummy_root_ca.crt"
    trust_domain = "example.org"
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {
        }
    }
    KeyManager "disk" {
        plugin_data {
            directory = "./.data"
        }
    }
    WorkloadAttestor "k8s" {
        plugin_data {
            kubelet_read_only_port = "10255"
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {
        }
    }
}
"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subject {
    country: Vec<String>,
    organization: Vec<String>,
    common_name: String,
}

#[derive(Debug, Deserialize)]
struct ServerSection {
    #[serde(deserialize_with = "crate::de::u16_or_string")]
    bind_port: u16,
    ca_subject: Subject,
}

#[test]
fn spire_server_sample_parses() {
    let file = ConfigFile::parse(Path::new("server.conf"), SPIRE_SERVER).unwrap();
    file.check_top_level(&["server", "plugins", "health_checks", "telemetry"])
        .unwrap();
    let server: ServerSection = file.section("server").unwrap();
    assert_eq!(server.bind_port, 8081);
    assert_eq!(server.ca_subject.country, ["US"]);
    assert_eq!(server.ca_subject.organization, ["SPIFFE"]);
    assert_eq!(server.ca_subject.common_name, "");
    let plugins = file.plugins().unwrap();
    let kinds: Vec<_> = plugins.iter().map(|p| (p.kind.as_str(), p.line)).collect();
    assert_eq!(
        kinds,
        [
            ("DataStore", 18),
            ("NodeAttestor", 25),
            ("KeyManager", 30),
            ("UpstreamAuthority", 34)
        ]
    );
    let sql: BTreeMap<String, String> = plugins[0].data().unwrap();
    assert_eq!(sql["database_type"], "sqlite3");
    let memory: BTreeMap<String, String> = plugins[2].data().unwrap();
    assert!(memory.is_empty());
}

#[test]
fn spire_agent_sample_parses() {
    let file = ConfigFile::parse(Path::new("agent.conf"), SPIRE_AGENT).unwrap();
    let agent: BTreeMap<String, String> = file.section("agent").unwrap();
    assert_eq!(agent["socket_path"], "/tmp/spire-agent/public/api.sock");
    let plugins = file.plugins().unwrap();
    let names: Vec<_> = plugins
        .iter()
        .map(|p| format!("{} {}", p.kind, p.name))
        .collect();
    assert_eq!(
        names,
        [
            "NodeAttestor join_token",
            "KeyManager disk",
            "WorkloadAttestor k8s",
            "WorkloadAttestor unix"
        ]
    );
}
