//! Every sample server config in the repository loads, with the values it
//! claims; so do the shapes the README and the test harness write, and
//! SPIRE's `run` flags override the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use spinel_config::hcl::ConfigFile;
use spinel_server::config::{self, DataStoreConfig, KeyManagerConfig, Overrides};
use spinel_server::datastore::sql::DatabaseType;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_owned()
}

fn parse(text: &str) -> Result<config::ServerConfig, config::ConfigLoadError> {
    let file = ConfigFile::parse(Path::new("test.conf"), text)?;
    config::from_file(&file, &Overrides::default())
}

#[test]
fn every_sample_under_conf_server_loads() {
    let dir = repo_root().join("conf/server");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("conf") {
            continue;
        }
        let loaded = config::load(&path, &Overrides::default());
        assert!(
            loaded.is_ok(),
            "{}: {}",
            path.display(),
            loaded.unwrap_err()
        );
        seen += 1;
    }
    assert!(seen >= 1, "no sample config found in {}", dir.display());
}

#[test]
fn the_sample_says_what_it_means() {
    let c = config::load(
        &repo_root().join("conf/server/server.conf"),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.trust_domain.as_str(), "example.org");
    assert_eq!(c.bind_address, "127.0.0.1");
    assert_eq!(c.bind_port, 8081);
    assert_eq!(c.ca.ca_ttl, Duration::from_secs(86_400));
    assert_eq!(c.ca.default_x509_svid_ttl, Duration::from_secs(3600));
    assert_eq!(c.ca.default_jwt_svid_ttl, Duration::from_secs(300));
    assert_eq!(
        c.plugins.datastore,
        DataStoreConfig::Sled {
            path: PathBuf::from("./.data/datastore")
        }
    );
    assert_eq!(
        c.plugins.key_manager,
        KeyManagerConfig::Disk {
            keys_path: PathBuf::from("./.data/keys.json")
        }
    );
    assert_eq!(c.plugins.node_attestors, vec!["join_token".to_owned()]);
    assert!(!c.health_checks.listener_enabled);
}

/// The minimal file SPIRE's quickstart uses, adapted to Spinel's plugins.
#[test]
fn minimal_file_gets_spire_defaults() {
    let c = parse(
        r#"
server {
    trust_domain = "example.org"
}
plugins {
    DataStore "sled" {}
    KeyManager "memory" {}
}
"#,
    )
    .unwrap();
    assert_eq!(c.bind_address, "0.0.0.0");
    assert_eq!(c.bind_port, 8081);
    assert_eq!(c.data_dir, PathBuf::from("./.data"));
    assert_eq!(
        c.socket_path,
        PathBuf::from("/tmp/spinel-server/private/api.sock")
    );
    assert_eq!(c.log_level, "INFO");
    assert_eq!(c.ca.ca_ttl, Duration::from_secs(86_400));
    assert_eq!(c.ca.default_x509_svid_ttl, Duration::from_secs(3600));
    assert_eq!(c.ca.default_jwt_svid_ttl, Duration::from_secs(300));
    assert_eq!(c.ca.ca_key_type, c.ca.jwt_key_type);
    assert_eq!(c.ca.ca_subject.country, vec!["US".to_owned()]);
    assert_eq!(c.ca.ca_subject.organization, vec!["SPIFFE".to_owned()]);
    assert_eq!(c.agent_ttl, None);
    assert_eq!(
        c.plugins.datastore,
        DataStoreConfig::Sled {
            path: PathBuf::from("./.data/datastore")
        }
    );
    assert_eq!(c.plugins.key_manager, KeyManagerConfig::Memory);
}

/// The file the end-to-end harness writes (spinel-test-fixtures), with a
/// quoted port, as SPIRE accepts.
#[test]
fn harness_shaped_file_loads() {
    let c = parse(
        r#"server {
    bind_address = "127.0.0.1"
    bind_port = "0"
    socket_path = "/tmp/x/private/api.sock"
    trust_domain = "example.org"
    data_dir = "/tmp/x/data"
    log_level = "DEBUG"
    default_x509_svid_ttl = "2m"
}

plugins {
    DataStore "sled" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = "/tmp/x/data/keys.json"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}

telemetry {
    Prometheus {
        port = 9988
    }
}
"#,
    )
    .unwrap();
    assert_eq!(c.bind_port, 0);
    assert_eq!(c.log_level, "DEBUG");
    assert_eq!(c.ca.default_x509_svid_ttl, Duration::from_secs(120));
    assert_eq!(
        c.plugins.datastore,
        DataStoreConfig::Sled {
            path: PathBuf::from("/tmp/x/data/datastore")
        }
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let prometheus = c.telemetry.prometheus.as_ref().unwrap();
    assert_eq!(
        (prometheus.host.as_str(), prometheus.port),
        ("localhost", 9988)
    );
}

#[test]
fn flags_override_the_file() {
    let file = ConfigFile::parse(
        Path::new("test.conf"),
        r#"
server {
    trust_domain = "example.org"
    bind_port = 8081
    data_dir = "/var/lib/a"
}
plugins {
    DataStore "sled" {}
    KeyManager "memory" {}
}
"#,
    )
    .unwrap();
    let overrides = Overrides {
        bind_address: Some("127.0.0.2".into()),
        bind_port: Some(9090),
        socket_path: Some("/tmp/other.sock".into()),
        trust_domain: Some("other.org".into()),
        data_dir: Some("/var/lib/b".into()),
        log_level: Some("debug".into()),
        log_format: Some("json".into()),
        log_file: None,
        expand_env: false,
    };
    let c = config::from_file(&file, &overrides).unwrap();
    assert_eq!(c.bind_address, "127.0.0.2");
    assert_eq!(c.bind_port, 9090);
    assert_eq!(c.socket_path, PathBuf::from("/tmp/other.sock"));
    assert_eq!(c.trust_domain.as_str(), "other.org");
    assert_eq!(c.ca.trust_domain.as_str(), "other.org");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/b"));
    assert_eq!(
        c.plugins.datastore,
        DataStoreConfig::Sled {
            path: PathBuf::from("/var/lib/b/datastore")
        }
    );
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.log_format, spinel_config::logging::LogFormat::Json);
}

#[test]
fn trust_domain_may_come_from_the_flag_alone() {
    let file = ConfigFile::parse(
        Path::new("test.conf"),
        "server {}\nplugins {\n DataStore \"sled\" {}\n KeyManager \"memory\" {}\n}\n",
    )
    .unwrap();
    let overrides = Overrides {
        trust_domain: Some("example.org".into()),
        ..Default::default()
    };
    assert_eq!(
        config::from_file(&file, &overrides)
            .unwrap()
            .trust_domain
            .as_str(),
        "example.org"
    );
}

#[test]
fn expand_env_substitutes_variables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.conf");
    // PATH is set in every test environment; use it as a harmless value.
    std::fs::write(
        &path,
        "server {\n trust_domain = \"example.org\"\n data_dir = \"${HOME}/spinel\"\n}\nplugins {\n DataStore \"sled\" {}\n KeyManager \"memory\" {}\n}\n",
    )
    .unwrap();
    let home = std::env::var("HOME").unwrap_or_default();
    let expanded = config::load(
        &path,
        &Overrides {
            expand_env: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(expanded.data_dir, PathBuf::from(format!("{home}/spinel")));
    let verbatim = config::load(&path, &Overrides::default()).unwrap();
    assert_eq!(verbatim.data_dir, PathBuf::from("${HOME}/spinel"));
}

#[test]
fn the_kubernetes_manifest_server_conf_loads() {
    use spinel_test_fixtures::manifests::{configmap_value, k8s_dir};
    let text = configmap_value(&k8s_dir().join("11-server-config.yaml"), "server.conf").unwrap();
    let file = ConfigFile::parse(Path::new("11-server-config.yaml:server.conf"), &text).unwrap();
    let c = config::from_file(&file, &Overrides::default())
        .unwrap_or_else(|e| panic!("conf/k8s server.conf: {e}"));
    assert!(
        c.plugins.k8s_psat.is_some(),
        "the manifest attests agents with k8s_psat"
    );
}

/// `conf/k8s/ha`'s server.conf is the base one with the shared PostgreSQL
/// DataStore instead of sled (nothing else drifts), and it loads with the
/// connection string the Secret supplies.
#[test]
fn the_ha_manifest_server_conf_is_the_base_one_on_postgres() {
    use spinel_test_fixtures::manifests::{configmap_value, k8s_dir};
    let base = configmap_value(&k8s_dir().join("11-server-config.yaml"), "server.conf").unwrap();
    let ha = configmap_value(&k8s_dir().join("ha/server-config.yaml"), "server.conf").unwrap();
    // Without comments and the DataStore block.
    let settings = |text: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut skipping = None;
        for line in text.lines() {
            let trimmed = line.trim();
            if let Some(indent) = skipping {
                if trimmed == "}" && line.len() - line.trim_start().len() == indent {
                    skipping = None;
                }
                continue;
            }
            if trimmed.starts_with("DataStore ") {
                skipping = Some(line.len() - line.trim_start().len());
                continue;
            }
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                out.push(line.to_owned());
            }
        }
        out
    };
    assert_eq!(
        settings(&ha),
        settings(&base),
        "conf/k8s/ha drifted from conf/k8s"
    );
    let text = ha.replace(
        "${SPINEL_DATABASE}",
        "dbname=spinel host=db.example user=spinel",
    );
    let c = parse(&text).unwrap_or_else(|e| panic!("conf/k8s/ha server.conf: {e}"));
    let DataStoreConfig::Sql(sql) = c.plugins.datastore else {
        panic!("want the SQL datastore")
    };
    assert_eq!(sql.database_type, DatabaseType::Postgres);
}

/// SPIRE's stock `server.conf` DataStore block, and the PostgreSQL shape
/// of issue 13, load as written.
#[test]
fn spire_sql_datastore_blocks_load() {
    let with = |block: &str| {
        let text = format!(
            "server {{\n    trust_domain = \"example.org\"\n    data_dir = \"./data\"\n}}\nplugins {{\n{block}\n    KeyManager \"memory\" {{}}\n}}\n"
        );
        parse(&text).unwrap().plugins.datastore
    };
    let stock = with(
        "    DataStore \"sql\" {\n        plugin_data {\n            database_type = \"sqlite3\"\n            connection_string = \"./data/datastore.sqlite3\"\n        }\n    }",
    );
    let DataStoreConfig::Sql(sqlite) = stock else {
        panic!("want Sql, got {stock:?}")
    };
    assert_eq!(sqlite.database_type, DatabaseType::Sqlite);
    assert_eq!(sqlite.url, "sqlite://./data/datastore.sqlite3?mode=rwc");
    let pg = with(
        "    DataStore \"sql\" {\n        plugin_data {\n            database_type = \"postgres\"\n            connection_string = \"dbname=spinel host=db.example user=spinel password=s3cret sslmode=verify-full\"\n            ro_connection_string = \"postgres://spinel@replica/spinel\"\n            max_open_conns = 20\n            max_idle_conns = 5\n            conn_max_lifetime = \"30s\"\n            disable_migration = true\n            root_ca_path = \"/etc/ca.pem\"\n        }\n    }",
    );
    let DataStoreConfig::Sql(pg) = pg else {
        panic!("want Sql, got {pg:?}")
    };
    assert_eq!(pg.database_type, DatabaseType::Postgres);
    for part in [
        "dbname=spinel",
        "host=db.example",
        "sslmode=verify-full",
        "sslrootcert=%2Fetc%2Fca.pem",
    ] {
        assert!(pg.url.contains(part), "{} lacks {part}", pg.url);
    }
    assert_eq!(
        pg.ro_url.as_deref(),
        Some("postgres://spinel@replica/spinel")
    );
    assert_eq!(pg.max_open_conns, Some(20));
    assert_eq!(pg.max_idle_conns, Some(5));
    assert_eq!(pg.conn_max_lifetime, Some(Duration::from_secs(30)));
    assert!(pg.disable_migration);
    let shown = format!("{pg:?}");
    assert!(!shown.contains("s3cret"), "password in Debug: {shown}");
}
