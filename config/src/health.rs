//! The `health_checks { ... }` block both binaries read, with SPIRE's keys
//! and defaults: `listener_enabled`, `bind_address` (`localhost`),
//! `bind_port` (80), `live_path` (`/live`), `ready_path` (`/ready`).

use serde::Deserialize;

use crate::de;

/// The block as written (every key optional).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthChecksSection {
    /// Serve the HTTP health listener.
    #[serde(default, deserialize_with = "de::bool_or_string")]
    pub listener_enabled: bool,
    /// Its address (default `localhost`).
    #[serde(default)]
    pub bind_address: Option<String>,
    /// Its port (default 80).
    #[serde(default, deserialize_with = "de::option_number_or_string")]
    pub bind_port: Option<u16>,
    /// Liveness path (default `/live`).
    #[serde(default)]
    pub live_path: Option<String>,
    /// Readiness path (default `/ready`).
    #[serde(default)]
    pub ready_path: Option<String>,
}

/// The HTTP health listener settings, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChecks {
    /// Serve it.
    pub listener_enabled: bool,
    /// Address (default `localhost`).
    pub bind_address: String,
    /// Port (default 80).
    pub bind_port: u16,
    /// Liveness path (default `/live`).
    pub live_path: String,
    /// Readiness path (default `/ready`).
    pub ready_path: String,
}

impl Default for HealthChecks {
    fn default() -> Self {
        HealthChecks {
            listener_enabled: false,
            bind_address: "localhost".into(),
            bind_port: 80,
            live_path: "/live".into(),
            ready_path: "/ready".into(),
        }
    }
}

impl HealthChecks {
    /// The settings of `section` (absent: the defaults, listener off).
    pub fn from_section(section: Option<HealthChecksSection>) -> Self {
        let defaults = HealthChecks::default();
        match section {
            Some(h) => HealthChecks {
                listener_enabled: h.listener_enabled,
                bind_address: h.bind_address.unwrap_or(defaults.bind_address),
                bind_port: h.bind_port.unwrap_or(defaults.bind_port),
                live_path: h.live_path.unwrap_or(defaults.live_path),
                ready_path: h.ready_path.unwrap_or(defaults.ready_path),
            },
            None => defaults,
        }
    }
}
