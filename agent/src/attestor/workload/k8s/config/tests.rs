use std::path::Path;

use spinel_config::hcl::ConfigFile;

use super::*;

fn decl(data: &str) -> PluginDecl {
    let text = format!(
        "plugins {{\n  WorkloadAttestor \"k8s\" {{\n    plugin_data {{\n{data}\n    }}\n  }}\n}}\n"
    );
    let mut plugins = ConfigFile::parse(Path::new("agent.conf"), &text)
        .unwrap()
        .plugins()
        .unwrap();
    plugins.remove(0)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn resolve_with(data: &str, env: &Environment<'_>) -> Result<Settings, ConfigError> {
    let d = decl(data);
    d.data::<K8sConfig>()?.resolve(&d, env)
}

fn resolve(data: &str) -> Result<Settings, ConfigError> {
    let env = Environment {
        var: &no_env,
        hostname: Some("node-a".into()),
    };
    resolve_with(data, &env)
}

fn error(data: &str) -> String {
    resolve(data).unwrap_err().to_string()
}

#[test]
fn defaults_are_spires() {
    let s = resolve("").unwrap();
    assert_eq!(s.host, "127.0.0.1");
    assert_eq!(s.server_name, "node-a");
    assert_eq!(s.port, 10250);
    assert_eq!(
        s.transport,
        Transport::Tls {
            verify: Verify::Ca(DEFAULT_KUBELET_CA_PATH.into()),
            auth: Auth::Token(DEFAULT_TOKEN_PATH.into()),
        }
    );
    assert_eq!(s.max_poll_attempts, 60);
    assert_eq!(s.poll_retry_interval, Duration::from_millis(500));
    assert_eq!(s.reload_interval, Duration::from_secs(60));
    assert!(!s.disable_container_selectors);
}

#[test]
fn everything_from_plugin_data() {
    let s = resolve(
        r#"node_name = "127.0.0.1"
           kubelet_secure_port = "8443"
           kubelet_ca_path = "/tmp/ca.pem"
           token_path = "/tmp/token"
           max_poll_attempts = 3
           poll_retry_interval = "2s"
           reload_interval = "5m"
           disable_container_selectors = true
           use_new_container_locator = "true"
           verbose_container_locator_logs = true
           enable_namespace_labels = false"#,
    )
    .unwrap();
    assert_eq!(
        (s.host.as_str(), s.server_name.as_str()),
        ("127.0.0.1", "127.0.0.1")
    );
    assert_eq!(s.port, 8443);
    assert_eq!(
        s.transport,
        Transport::Tls {
            verify: Verify::Ca("/tmp/ca.pem".into()),
            auth: Auth::Token("/tmp/token".into()),
        }
    );
    assert_eq!(s.max_poll_attempts, 3);
    assert_eq!(s.poll_retry_interval, Duration::from_secs(2));
    assert_eq!(s.reload_interval, Duration::from_secs(300));
    assert!(s.disable_container_selectors && s.verbose_container_locator_logs);
}

#[test]
fn read_only_port_skip_verification_cert_and_anonymous() {
    let s = resolve("kubelet_read_only_port = 10255").unwrap();
    assert_eq!((s.port, s.transport), (10255, Transport::Plain));
    // SPIRE's sample agent.conf writes the port as a string.
    let s = resolve("kubelet_read_only_port = \"10255\"").unwrap();
    assert_eq!(s.port, 10255);
    let s =
        resolve("skip_kubelet_verification = true\nuse_anonymous_authentication = true").unwrap();
    assert_eq!(
        s.transport,
        Transport::Tls {
            verify: Verify::Skip,
            auth: Auth::Anonymous
        }
    );
    let s = resolve("certificate_path = \"/c.pem\"\nprivate_key_path = \"/k.pem\"").unwrap();
    assert_eq!(
        s.transport,
        Transport::Tls {
            verify: Verify::Ca(DEFAULT_KUBELET_CA_PATH.into()),
            auth: Auth::ClientCert {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            }
        }
    );
}

#[test]
fn node_name_from_env_once() {
    let lookup = |k: &str| (k == "NODE").then(|| "worker-7".to_owned());
    let env = Environment {
        var: &lookup,
        hostname: None,
    };
    let s = resolve_with("node_name_env = \"NODE\"", &env).unwrap();
    assert_eq!(
        (s.host.as_str(), s.server_name.as_str()),
        ("worker-7", "worker-7")
    );
    // node_name wins over the variable; the default variable is MY_NODE_NAME.
    let s = resolve_with("node_name_env = \"NODE\"\nnode_name = \"n\"", &env).unwrap();
    assert_eq!(s.host, "n");
    let s = resolve_with("", &env).unwrap();
    assert_eq!(
        (s.host.as_str(), s.server_name.as_str()),
        ("127.0.0.1", "127.0.0.1")
    );
}

#[test]
fn invalid_combinations_name_the_key() {
    let e = error("kubelet_read_only_port = 10255\nkubelet_secure_port = 10250");
    assert!(
        e.contains("agent.conf:2") && e.contains("plugin_data.kubelet_read_only_port"),
        "{e}"
    );
    let e = error("certificate_path = \"/c\"");
    assert!(
        e.contains("plugin_data.certificate_path") && e.contains("private_key_path"),
        "{e}"
    );
    let e = error("private_key_path = \"/k\"");
    assert!(e.contains("plugin_data.private_key_path"), "{e}");
    let e = error(
        "certificate_path = \"/c\"\nprivate_key_path = \"/k\"\nuse_anonymous_authentication = true",
    );
    assert!(
        e.contains("plugin_data.use_anonymous_authentication"),
        "{e}"
    );
    let e =
        error("kubelet_read_only_port = 1\ncertificate_path = \"/c\"\nprivate_key_path = \"/k\"");
    assert!(e.contains("plugin_data.certificate_path"), "{e}");
}

#[test]
fn unknown_and_unsupported_keys_are_errors() {
    let e = error("kubelet_port = 1");
    assert!(
        e.contains("unknown key") && e.contains("plugin_data.kubelet_port"),
        "{e}"
    );
    let e = error("\n\nenable_namespace_labels = true");
    assert!(
        e.contains("agent.conf:6") && e.contains("enable_namespace_labels"),
        "{e}"
    );
    assert!(e.contains("not supported"), "{e}");
    let e = error("disable_kubelet_client = true");
    assert!(e.contains("disable_kubelet_client"), "{e}");
    let e = error("sigstore {\n  ignore_tlog = true\n}");
    assert!(
        e.contains("plugin_data.sigstore") && e.contains("not supported"),
        "{e}"
    );
    let e = error("experimental {\n  api_server {\n cache { enabled = true }\n }\n}");
    assert!(e.contains("plugin_data.experimental"), "{e}");
    let e = error("poll_retry_interval = \"soon\"");
    assert!(e.contains("poll_retry_interval"), "{e}");
}

#[test]
fn zero_means_default() {
    let s = resolve("max_poll_attempts = 0\npoll_retry_interval = \"0s\"\nkubelet_secure_port = 0")
        .unwrap();
    assert_eq!((s.max_poll_attempts, s.port), (60, 10250));
    assert_eq!(s.poll_retry_interval, DEFAULT_POLL_RETRY_INTERVAL);
}
