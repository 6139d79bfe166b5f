//! Kubeconfig files pointing at a fake API server, in the YAML shape
//! `kubectl config view --raw` prints.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Where the kubeconfig's cluster finds its CA.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CaSource<'a> {
    /// `certificate-authority-data`: the PEM, base64.
    Inline(&'a str),
    /// `certificate-authority`: a file path.
    File(&'a str),
}

/// A YAML scalar, double-quoted (JSON string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A kubeconfig with one cluster `fake`, one user `spinel-server` holding
/// `token`, and the current context `fake` joining them.
pub(crate) fn render(server: &str, ca: CaSource<'_>, token: &str) -> String {
    let ca_line = match ca {
        CaSource::Inline(pem) => format!(
            "certificate-authority-data: {}",
            STANDARD.encode(pem.as_bytes())
        ),
        CaSource::File(path) => format!("certificate-authority: {}", quoted(path)),
    };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    {ca_line}
    server: {server}
  name: fake
contexts:
- context:
    cluster: fake
    namespace: default
    user: spinel-server
  name: fake
current-context: fake
preferences: {{}}
users:
- name: spinel-server
  user:
    token: {token}
",
        server = quoted(server),
        token = quoted(token),
    )
}
