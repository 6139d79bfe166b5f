//! The `telemetry { ... }` block both binaries read, in SPIRE's spelling.
//!
//! Spinel serves Prometheus metrics only:
//!
//! ```hcl
//! telemetry {
//!     Prometheus {
//!         host = "0.0.0.0"   # default "localhost", as SPIRE
//!         port = 9988        # required
//!     }
//!     MetricPrefix = "spire_server"   # default spire_server / spire_agent
//! }
//! ```
//!
//! SPIRE's other keys are accepted so that a SPIRE config runs unchanged,
//! and ignored with a warning naming them: the push sinks (`DogStatsd`,
//! `Statsd`, `M3`) and `InMem` (Spinel has none of them: nothing is sent
//! anywhere), the filters (`AllowedPrefixes`, `BlockedPrefixes`,
//! `AllowedLabels`, `BlockedLabels`: every metric is served) and the extra
//! labels (`EnableTrustDomainLabel`, `EnableHostnameLabel`). Ignoring them
//! exposes nothing that was not asked for on the listener the operator
//! configured. `Prometheus { tls { ... } }` is refused: serving metrics in
//! clear text where the operator asked for TLS is not a safe default.
//! Any other key is an error naming it.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::de;
use crate::hcl::{ConfigError, ConfigFile};

/// The block as written (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetrySection {
    /// The Prometheus exporter.
    #[serde(default, rename = "Prometheus")]
    prometheus: Option<PrometheusSection>,
    /// Prefix of every metric name.
    #[serde(default, rename = "MetricPrefix")]
    metric_prefix: Option<String>,
    #[serde(default, rename = "DogStatsd")]
    dogstatsd: Option<IgnoredAny>,
    #[serde(default, rename = "Statsd")]
    statsd: Option<IgnoredAny>,
    #[serde(default, rename = "M3")]
    m3: Option<IgnoredAny>,
    #[serde(default, rename = "InMem")]
    in_mem: Option<IgnoredAny>,
    #[serde(default, rename = "AllowedPrefixes")]
    allowed_prefixes: Option<IgnoredAny>,
    #[serde(default, rename = "BlockedPrefixes")]
    blocked_prefixes: Option<IgnoredAny>,
    #[serde(default, rename = "AllowedLabels")]
    allowed_labels: Option<IgnoredAny>,
    #[serde(default, rename = "BlockedLabels")]
    blocked_labels: Option<IgnoredAny>,
    #[serde(default, rename = "EnableTrustDomainLabel")]
    enable_trust_domain_label: Option<IgnoredAny>,
    #[serde(default, rename = "EnableHostnameLabel")]
    enable_hostname_label: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusSection {
    #[serde(default)]
    host: Option<String>,
    #[serde(default, deserialize_with = "de::option_number_or_string")]
    port: Option<u16>,
    #[serde(default)]
    tls: Option<IgnoredAny>,
}

/// The telemetry settings, defaults applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Telemetry {
    /// The Prometheus listener, when configured.
    pub prometheus: Option<Prometheus>,
    /// `MetricPrefix`, when set (the binary has its default).
    pub metric_prefix: Option<String>,
    /// One line per SPIRE key that was accepted and ignored, for the log.
    pub warnings: Vec<String>,
}

/// Where `GET /metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prometheus {
    /// `host` (default `localhost`).
    pub host: String,
    /// `port` (required, 1-65535).
    pub port: u16,
}

impl Telemetry {
    /// Reads the `telemetry` block of `file` (absent: no metrics).
    pub fn from_file(file: &ConfigFile) -> Result<Self, ConfigError> {
        let Some(section) = file.optional_section::<TelemetrySection>("telemetry")? else {
            return Ok(Telemetry::default());
        };
        let line = |path: &[&str]| {
            file.line_of(path)
                .or_else(|| file.line_of(&["telemetry"]))
                .unwrap_or(1)
        };
        let invalid = |path: &[&str], message: &str| ConfigError::InvalidValue {
            path: file.path().to_owned(),
            line: line(path),
            key_path: path.join("."),
            message: message.to_owned(),
        };
        let prometheus = match section.prometheus {
            None => None,
            Some(p) => {
                if p.tls.is_some() {
                    return Err(invalid(
                        &["telemetry", "Prometheus", "tls"],
                        "TLS for the metrics listener is not supported; remove the block \
                         (and keep the port on a private network) or leave telemetry off",
                    ));
                }
                let port = match p.port {
                    None => {
                        return Err(ConfigError::MissingKey {
                            path: file.path().to_owned(),
                            line: line(&["telemetry", "Prometheus"]),
                            key_path: "telemetry.Prometheus.port".into(),
                        })
                    }
                    Some(0) => {
                        return Err(invalid(
                            &["telemetry", "Prometheus", "port"],
                            "must be a port from 1 to 65535",
                        ))
                    }
                    Some(port) => port,
                };
                let host = p.host.unwrap_or_else(|| "localhost".into());
                if host.trim().is_empty() {
                    return Err(invalid(
                        &["telemetry", "Prometheus", "host"],
                        "must not be empty",
                    ));
                }
                Some(Prometheus { host, port })
            }
        };
        if let Some(prefix) = &section.metric_prefix {
            if !is_metric_name(prefix) {
                return Err(invalid(
                    &["telemetry", "MetricPrefix"],
                    "must be a Prometheus metric name: letters, digits and `_`, not starting with a digit",
                ));
            }
        }
        let ignored: Vec<&str> = [
            ("DogStatsd", section.dogstatsd.is_some()),
            ("Statsd", section.statsd.is_some()),
            ("M3", section.m3.is_some()),
            ("InMem", section.in_mem.is_some()),
            ("AllowedPrefixes", section.allowed_prefixes.is_some()),
            ("BlockedPrefixes", section.blocked_prefixes.is_some()),
            ("AllowedLabels", section.allowed_labels.is_some()),
            ("BlockedLabels", section.blocked_labels.is_some()),
            (
                "EnableTrustDomainLabel",
                section.enable_trust_domain_label.is_some(),
            ),
            (
                "EnableHostnameLabel",
                section.enable_hostname_label.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        let mut warnings = Vec::new();
        if !ignored.is_empty() {
            warnings.push(format!(
                "{}:{}: telemetry: {} not supported and ignored (Spinel serves Prometheus metrics only, unfiltered)",
                file.path().display(),
                line(&["telemetry"]),
                ignored
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + if ignored.len() == 1 { " is" } else { " are" }
            ));
        }
        if prometheus.is_none() {
            warnings.push(format!(
                "{}:{}: telemetry has no `Prometheus` block: no metrics are served",
                file.path().display(),
                line(&["telemetry"]),
            ));
        }
        Ok(Telemetry {
            prometheus,
            metric_prefix: section.metric_prefix,
            warnings,
        })
    }

    /// The prefix of every metric name: `MetricPrefix`, or `default`
    /// (`spire_server`, `spire_agent`, as SPIRE).
    pub fn prefix_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.metric_prefix.as_deref().unwrap_or(default)
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::path::Path;

    use super::*;

    fn parse(source: &str) -> Result<Telemetry, ConfigError> {
        Telemetry::from_file(&ConfigFile::parse(Path::new("server.conf"), source)?)
    }

    #[test]
    fn absent_means_off() {
        assert_eq!(parse("server {}\n").unwrap(), Telemetry::default());
    }

    #[test]
    fn prometheus_with_spire_defaults() {
        let t = parse("telemetry {\n  Prometheus {\n    port = 9988\n  }\n}\n").unwrap();
        assert_eq!(
            t.prometheus,
            Some(Prometheus {
                host: "localhost".into(),
                port: 9988
            })
        );
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert_eq!(t.prefix_or("spire_server"), "spire_server");

        let t = parse(
            "telemetry {\n  Prometheus {\n    host = \"0.0.0.0\"\n    port = \"9090\"\n  }\n  MetricPrefix = \"spinel\"\n}\n",
        )
        .unwrap();
        let p = t.prometheus.clone().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("0.0.0.0", 9090));
        assert_eq!(t.prefix_or("spire_server"), "spinel");
    }

    #[test]
    fn bad_ports_are_errors_naming_the_key_and_line() {
        for (port, want) in [
            (
                "0",
                "server.conf:4: invalid value for `telemetry.Prometheus.port`",
            ),
            ("70000", "server.conf:4:"),
            ("\"ninety\"", "server.conf:4:"),
            ("-1", "server.conf:4:"),
        ] {
            let err = parse(&format!(
                "telemetry {{\n  Prometheus {{\n    host = \"localhost\"\n    port = {port}\n  }}\n}}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.starts_with(want), "port {port}: {err}");
            assert!(err.contains("port"), "port {port}: {err}");
        }
        let err = parse("telemetry {\n  Prometheus {\n    host = \"localhost\"\n  }\n}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "server.conf:2: missing required key `telemetry.Prometheus.port`"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = parse("telemetry {\n  Prometheus {\n    port = 1\n    hots = \"x\"\n  }\n}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("server.conf:4: unknown key `telemetry.Prometheus.hots`"),
            "{err}"
        );
        let err = parse("telemetry {\n  Prometheus {\n    port = 1\n  }\n  Graphite {}\n}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("server.conf:5: unknown key `telemetry.Graphite`"),
            "{err}"
        );
    }

    #[test]
    fn tls_is_refused_and_a_bad_prefix_too() {
        let err = parse(
            "telemetry {\n  Prometheus {\n    port = 1\n    tls {\n      cert_file = \"c\"\n    }\n  }\n}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("server.conf:4: invalid value for `telemetry.Prometheus.tls`"),
            "{err}"
        );
        let err =
            parse("telemetry {\n  Prometheus {\n    port = 1\n  }\n  MetricPrefix = \"a-b\"\n}\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("server.conf:5: invalid value for `telemetry.MetricPrefix`"),
            "{err}"
        );
    }

    #[test]
    fn spire_keys_spinel_lacks_are_ignored_with_a_warning_naming_them() {
        let t = parse(
            "telemetry {\n  Prometheus {\n    port = 9988\n  }\n  DogStatsd = [\n    { address = \"localhost:8125\" },\n  ]\n  Statsd = [\n    { address = \"localhost:1337\" },\n  ]\n  M3 = [\n    { address = \"localhost:9000\", env = \"prod\" },\n  ]\n  InMem {}\n  AllowedLabels = []\n  BlockedLabels = []\n  AllowedPrefixes = []\n  BlockedPrefixes = []\n  EnableHostnameLabel = true\n  EnableTrustDomainLabel = false\n}\n",
        )
        .unwrap();
        assert!(t.prometheus.is_some());
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        for key in [
            "DogStatsd",
            "Statsd",
            "M3",
            "InMem",
            "AllowedLabels",
            "BlockedPrefixes",
            "EnableHostnameLabel",
            "EnableTrustDomainLabel",
        ] {
            assert!(
                t.warnings[0].contains(&format!("`{key}`")),
                "{key}: {:?}",
                t.warnings
            );
        }
        let t = parse("telemetry {\n  InMem {}\n}\n").unwrap();
        assert!(t.prometheus.is_none());
        assert!(t
            .warnings
            .iter()
            .any(|w| w.contains("no metrics are served")));
    }
}
