//! `UpstreamAuthority "disk"` in the server config: its fields are read,
//! unknown ones and other plugin names are refused naming the file, and a
//! missing key path is named. (The upstream CA at work, with real
//! processes, is tested in `e2e/tests/trust_domain/upstream_disk.rs`.)

use std::path::{Path, PathBuf};

fn load(plugins: &str) -> Result<spinel_server::config::ServerConfig, String> {
    let text = format!(
        "server {{\n    trust_domain = \"example.org\"\n}}\nplugins {{\n    DataStore \"sled\" {{}}\n    KeyManager \"memory\" {{}}\n{plugins}}}\n"
    );
    spinel_config::hcl::ConfigFile::parse(Path::new("up.conf"), &text)
        .map_err(spinel_server::config::ConfigLoadError::from)
        .and_then(|file| {
            spinel_server::config::from_file(&file, &spinel_server::config::Overrides::default())
        })
        .map_err(|e| e.to_string())
}

#[test]
fn upstream_config_is_checked() {
    let config = load(
        "    UpstreamAuthority \"disk\" {\n        plugin_data {\n            cert_file_path = \"/u/ca.crt\"\n            key_file_path = \"/u/ca.key\"\n            bundle_file_path = \"/u/roots.crt\"\n        }\n    }\n",
    )
    .unwrap();
    let disk = config.plugins.upstream_authority.unwrap();
    assert_eq!(disk.cert_file_path, PathBuf::from("/u/ca.crt"));
    assert_eq!(disk.bundle_file_path, Some(PathBuf::from("/u/roots.crt")));

    let err = load(
        "    UpstreamAuthority \"disk\" {\n        plugin_data {\n            cert_file_path = \"/u/ca.crt\"\n            key_file_path = \"/u/ca.key\"\n            ttl = \"1h\"\n        }\n    }\n",
    )
    .unwrap_err();
    assert!(err.contains("ttl") && err.contains("up.conf:"), "{err}");

    let err =
        load("    UpstreamAuthority \"vault\" {\n        plugin_data {}\n    }\n").unwrap_err();
    assert!(err.contains("vault") && err.contains("disk"), "{err}");

    let err = load(
        "    UpstreamAuthority \"disk\" {\n        plugin_data {\n            cert_file_path = \"/u/ca.crt\"\n        }\n    }\n",
    )
    .unwrap_err();
    assert!(err.contains("key_file_path"), "{err}");
}
