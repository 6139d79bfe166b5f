//! `agent_path_template`: the agent ID path after `/spire/agent`.
//!
//! SPIRE renders a Go `text/template` over the leaf certificate and a few
//! values of its own. Spinel renders the same field references, and
//! refuses (when the config is loaded) anything else: functions, pipes,
//! conditionals, other certificate fields. Supported:
//!
//! | reference | value |
//! |---|---|
//! | `{{ .PluginName }}` | `x509pop` |
//! | `{{ .TrustDomain }}` | the trust domain name |
//! | `{{ .Fingerprint }}` | SHA-1 of the leaf DER, lowercase hex |
//! | `{{ .SerialNumberHex }}` | the leaf serial, lowercase hex, even length |
//! | `{{ .Subject.CommonName }}` | the leaf subject's common name |
//! | `{{ .URISanSelectors.<key> }}` | the value of `x509pop://<td>/<key>/<value>` |
//!
//! A reference to a SAN key the leaf does not have fails attestation (Go's
//! `missingkey=error`), and the rendered path must make a valid SPIFFE ID.

use super::leaf::Leaf;
use super::NAME;

/// SPIRE's default for `mode = "external_pki"`.
pub const DEFAULT_TEMPLATE: &str = "/{{ .PluginName }}/{{ .Fingerprint }}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    PluginName,
    TrustDomain,
    Fingerprint,
    SerialNumberHex,
    CommonName,
    UriSan(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A parsed `agent_path_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPathTemplate {
    source: String,
    parts: Vec<Part>,
}

impl Default for AgentPathTemplate {
    fn default() -> Self {
        // The default parses; the fallback keeps this free of panics.
        Self::parse(DEFAULT_TEMPLATE).unwrap_or_else(|_| AgentPathTemplate {
            source: DEFAULT_TEMPLATE.into(),
            parts: vec![
                Part::Text("/".into()),
                Part::Field(Field::PluginName),
                Part::Text("/".into()),
                Part::Field(Field::Fingerprint),
            ],
        })
    }
}

impl AgentPathTemplate {
    /// Parses `text`; the error says which reference is not supported.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!(
                "{text:?} must start with \"/\" (it is the path after /spire/agent, e.g. {DEFAULT_TEMPLATE:?})"
            ));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed \"{{{{\" in {text:?}"))?;
            let action = after[..end].trim();
            parts.push(Part::Field(field(action)?));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("unopened \"}}}}\" in {text:?}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(AgentPathTemplate {
            source: text.to_owned(),
            parts,
        })
    }

    /// The template's text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Renders the path for `leaf` in `trust_domain`.
    pub fn render(&self, leaf: &Leaf, trust_domain: &str) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(Field::PluginName) => out.push_str(NAME),
                Part::Field(Field::TrustDomain) => out.push_str(trust_domain),
                Part::Field(Field::Fingerprint) => out.push_str(&leaf.fingerprint),
                Part::Field(Field::SerialNumberHex) => out.push_str(&leaf.serial_hex),
                Part::Field(Field::CommonName) => out.push_str(&leaf.common_name),
                Part::Field(Field::UriSan(key)) => {
                    let value = leaf.san_selectors.get(key).ok_or_else(|| {
                        format!("map has no entry for key {key:?} (.URISanSelectors.{key})")
                    })?;
                    out.push_str(value);
                }
            }
        }
        Ok(out)
    }
}

fn field(action: &str) -> Result<Field, String> {
    Ok(match action {
        ".PluginName" => Field::PluginName,
        ".TrustDomain" => Field::TrustDomain,
        ".Fingerprint" => Field::Fingerprint,
        ".SerialNumberHex" => Field::SerialNumberHex,
        ".Subject.CommonName" => Field::CommonName,
        ".SVIDPathTrimmed" => {
            return Err(
                "{{ .SVIDPathTrimmed }} applies to mode \"spiffe\", which is not supported yet"
                    .into(),
            )
        }
        other => match other.strip_prefix(".URISanSelectors.") {
            Some(key)
                if !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Field::UriSan(key.to_owned())
            }
            _ => {
                return Err(format!(
                    "{{{{ {other} }}}} is not supported: use .PluginName, .TrustDomain, .Fingerprint, .SerialNumberHex, .Subject.CommonName or .URISanSelectors.<key> (functions and pipelines are not supported)"
                ))
            }
        },
    })
}
