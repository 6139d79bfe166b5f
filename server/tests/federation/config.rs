//! The `federation` and `oidc_discovery` blocks: SPIRE's shape is read,
//! and mistakes are errors naming the key and the line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use spinel_config::hcl::ConfigFile;
use spinel_server::config::{from_file, EndpointProfile, Overrides, RemoteProfile, ServerConfig};

fn load(server_extra: &str) -> Result<ServerConfig, String> {
    let text = format!(
        "server {{\n    trust_domain = \"example.org\"\n{server_extra}\n}}\nplugins {{\n    DataStore \"sled\" {{\n        plugin_data {{}}\n    }}\n    KeyManager \"memory\" {{\n        plugin_data {{}}\n    }}\n}}\n"
    );
    let file = ConfigFile::parse(Path::new("server.conf"), &text).map_err(|e| e.to_string())?;
    from_file(&file, &Overrides::default()).map_err(|e| e.to_string())
}

#[test]
fn spire_shape_is_read() {
    let config = load(
        r#"    jwt_issuer = "https://oidc.example.org"
    federation {
        bundle_endpoint {
            address = "0.0.0.0"
            port = 8443
            refresh_hint = "10m"
            profile "https_spiffe" {}
        }
        federates_with "domain1.test" {
            bundle_endpoint_url = "https://1.2.3.4:8443"
            bundle_endpoint_profile "https_web" {}
        }
        federates_with "domain2.test" {
            bundle_endpoint_url = "https://5.6.7.8:8443"
            bundle_endpoint_profile "https_spiffe" {
                endpoint_spiffe_id = "spiffe://domain2.test/beirut"
            }
        }
    }
    oidc_discovery {
        port = 8080
        domains = ["oidc.example.org"]
        insecure_http = true
    }"#,
    )
    .unwrap();
    let endpoint = config.federation.bundle_endpoint.unwrap();
    assert_eq!(endpoint.port, 8443);
    assert_eq!(endpoint.refresh_hint, Duration::from_secs(600));
    assert_eq!(endpoint.profile, EndpointProfile::HttpsSpiffe);
    let fw = &config.federation.federates_with;
    assert_eq!(fw.len(), 2);
    assert_eq!(fw[0].trust_domain.as_str(), "domain1.test");
    assert_eq!(fw[0].profile, RemoteProfile::HttpsWeb);
    assert!(matches!(
        &fw[1].profile,
        RemoteProfile::HttpsSpiffe { endpoint_spiffe_id } if endpoint_spiffe_id.to_string() == "spiffe://domain2.test/beirut"
    ));
    let oidc = config.oidc_discovery.unwrap();
    assert_eq!(oidc.port, 8080);
    assert!(oidc.serving_cert_file.is_none());
}

#[test]
fn https_web_endpoint_takes_cert_files() {
    let config = load(
        r#"    federation {
        bundle_endpoint {
            profile "https_web" {
                serving_cert_file {
                    cert_file_path = "/etc/cert.pem"
                    key_file_path = "/etc/key.pem"
                }
            }
        }
    }"#,
    )
    .unwrap();
    let endpoint = config.federation.bundle_endpoint.unwrap();
    assert_eq!(endpoint.port, 8443, "SPIRE's default port");
    assert_eq!(endpoint.refresh_hint, Duration::from_secs(300));
    assert!(
        matches!(endpoint.profile, EndpointProfile::HttpsWeb(ref f) if f.cert_file_path == Path::new("/etc/cert.pem"))
    );
}

#[test]
fn errors_name_key_and_line() {
    let err =
        load("    federation {\n        bundle_endpoint {\n            prot = 1\n        }\n    }")
            .unwrap_err();
    assert!(
        err.starts_with("server.conf:5:") && err.contains("server.federation.bundle_endpoint.prot"),
        "{err}"
    );

    let err = load("    federation {\n        bundle_endpoint {\n            profile \"https_foo\" {}\n        }\n    }").unwrap_err();
    assert!(
        err.starts_with("server.conf:5:") && err.contains("https_foo"),
        "{err}"
    );

    let err = load("    federation {\n        federates_with \"other.org\" {\n            bundle_endpoint_url = \"http://x\"\n            bundle_endpoint_profile \"https_web\" {}\n        }\n    }").unwrap_err();
    assert!(
        err.starts_with("server.conf:5:")
            && err.contains("bundle_endpoint_url")
            && err.contains("https://"),
        "{err}"
    );

    let err = load("    federation {\n        federates_with \"other.org\" {\n            bundle_endpoint_url = \"https://x\"\n            bundle_endpoint_profile \"https_spiffe\" {}\n        }\n    }").unwrap_err();
    assert!(
        err.starts_with("server.conf:") && err.contains("endpoint_spiffe_id"),
        "{err}"
    );

    let err = load("    federation {\n        federates_with \"Not A Domain\" {\n            bundle_endpoint_url = \"https://x\"\n            bundle_endpoint_profile \"https_web\" {}\n        }\n    }").unwrap_err();
    assert!(err.starts_with("server.conf:"), "{err}");
    assert!(err.contains("federates_with"), "{err}");

    let err = load("    oidc_discovery {\n        port = 80\n    }").unwrap_err();
    assert!(
        err.starts_with("server.conf:3:")
            && err.contains("oidc_discovery")
            && err.contains("insecure_http"),
        "{err}"
    );
}

#[test]
fn oidc_discovery_needs_domains_or_an_issuer() {
    // Neither: the Host header would become the issuer; refused, naming
    // the key and the block's line (line 3: the first of server_extra).
    let err = load("    oidc_discovery {\n        port = 80\n        insecure_http = true\n    }")
        .unwrap_err();
    assert!(
        err.starts_with("server.conf:3:")
            && err.contains("server.oidc_discovery.domains")
            && err.contains("jwt_issuer")
            && err.contains("insecure_allow_any_host"),
        "{err}"
    );
    let err = load("    oidc_discovery {\n        port = 80\n        domains = []\n        insecure_http = true\n    }")
        .unwrap_err();
    assert!(err.starts_with("server.conf:3:"), "{err}");

    // Either one is enough.
    let config = load(
        "    jwt_issuer = \"https://oidc.example.org\"\n    oidc_discovery {\n        port = 80\n        insecure_http = true\n    }",
    )
    .unwrap();
    assert!(config.oidc_discovery.unwrap().domains.is_empty());
    let config = load(
        "    oidc_discovery {\n        port = 80\n        domains = [\"oidc.example.org\"]\n        insecure_http = true\n    }",
    )
    .unwrap();
    assert_eq!(config.oidc_discovery.unwrap().domains, ["oidc.example.org"]);

    // Or the explicit opt-in.
    let config = load(
        "    oidc_discovery {\n        port = 80\n        insecure_http = true\n        insecure_allow_any_host = true\n    }",
    )
    .unwrap();
    assert!(config.oidc_discovery.unwrap().insecure_allow_any_host);

    // The issuer discovery publishes must be an absolute URL.
    let err = load(
        "    jwt_issuer = \"oidc.example.org\"\n    oidc_discovery {\n        port = 80\n        insecure_http = true\n    }",
    )
    .unwrap_err();
    assert!(
        err.starts_with("server.conf:3:") && err.contains("server.jwt_issuer"),
        "{err}"
    );
}
