//! The helper's configuration: spiffe-helper's `helper.conf`, top-level
//! HCL attributes, so an existing spiffe-helper config runs unchanged.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use spinel_config::hcl::ConfigFile;

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file does not parse, or has unknown keys.
    #[error(transparent)]
    File(#[from] spinel_config::ConfigError),
    /// A value is present but unacceptable.
    #[error("{path}: {key}: {reason}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// One JWT-SVID kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSvidFile {
    /// The audience the token is minted for.
    pub jwt_audience: String,
    /// More audiences for the same token.
    #[serde(default)]
    pub jwt_extra_audiences: Vec<String>,
    /// File name (in `cert_dir`) of the token.
    pub jwt_svid_file_name: String,
}

/// spiffe-helper's `health_checks` block. Only the disabled listener is
/// supported.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthChecks {
    #[serde(default)]
    listener_enabled: bool,
    #[serde(default, rename = "bind_port")]
    _bind_port: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "liveness_path")]
    _liveness_path: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "readiness_path")]
    _readiness_path: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    agent_address: Option<String>,
    cmd: Option<String>,
    cmd_args: Option<String>,
    pid_file_name: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    daemon_mode: Option<bool>,
    add_intermediates_to_bundle: Option<bool>,
    renew_signal: Option<String>,
    svid_file_name: Option<String>,
    svid_key_file_name: Option<String>,
    svid_bundle_file_name: Option<String>,
    #[serde(default)]
    jwt_svids: Vec<JwtSvidFile>,
    jwt_bundle_file_name: Option<String>,
    include_federated_domains: Option<bool>,
    #[serde(default, deserialize_with = "octal_mode")]
    cert_file_mode: Option<u32>,
    #[serde(default, deserialize_with = "octal_mode")]
    key_file_mode: Option<u32>,
    #[serde(default, deserialize_with = "octal_mode")]
    jwt_bundle_file_mode: Option<u32>,
    #[serde(default, deserialize_with = "octal_mode")]
    jwt_svid_file_mode: Option<u32>,
    hint: Option<String>,
    health_checks: Option<HealthChecks>,
}

/// A resolved helper configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperConfig {
    /// The Workload API socket.
    pub agent_address: PathBuf,
    /// A command to start once the first SVID is written: with
    /// `renew_signal`, a long-running process signalled on each renewal
    /// (and started again if it exited); without, a hook run (and waited
    /// for) after every update.
    pub cmd: Option<String>,
    /// Its arguments, split on whitespace as spiffe-helper does.
    pub cmd_args: Vec<String>,
    /// A file holding the pid of a running process to signal with
    /// `renew_signal` after every update (nginx's, PostgreSQL's).
    pub pid_file_name: Option<PathBuf>,
    /// Where the files go (must exist).
    pub cert_dir: PathBuf,
    /// Keep running and rewrite on every rotation (default), or write once
    /// and exit.
    pub daemon_mode: bool,
    /// Put intermediates in the bundle file instead of the SVID file.
    pub add_intermediates_to_bundle: bool,
    /// The signal (`SIGHUP`, `SIGUSR1`, ...) that makes the process reload.
    pub renew_signal: Option<rustix::process::Signal>,
    /// The signal's name as configured.
    pub renew_signal_name: Option<String>,
    /// Certificate chain file name.
    pub svid_file_name: String,
    /// Private key file name (PKCS#8 PEM).
    pub svid_key_file_name: String,
    /// CA bundle file name.
    pub svid_bundle_file_name: String,
    /// JWT-SVIDs to keep.
    pub jwt_svids: Vec<JwtSvidFile>,
    /// JWT bundle (JWKS JSON) file name, if wanted.
    pub jwt_bundle_file_name: Option<String>,
    /// Add federated trust domains' CAs to the bundle file.
    pub include_federated_domains: bool,
    /// Mode of the certificate and bundle files.
    pub cert_file_mode: u32,
    /// Mode of the key file.
    pub key_file_mode: u32,
    /// Mode of the JWT bundle file.
    pub jwt_bundle_file_mode: u32,
    /// Mode of the JWT-SVID files.
    pub jwt_svid_file_mode: u32,
    /// Pick the SVID with this hint (default: the first).
    pub hint: Option<String>,
}

/// spiffe-helper writes modes in octal (`0644`); HCL reads the digits as a
/// decimal number, so they are taken as octal digits again. A string
/// (`"0644"`) works too.
fn octal_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    let digits = match Raw::deserialize(d)? {
        Raw::Number(n) => n.to_string(),
        Raw::Text(t) => t.trim_start_matches("0o").to_owned(),
    };
    let mode = u32::from_str_radix(&digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("{digits} is not an octal file mode like 0644"))
        })?;
    Ok(Some(mode))
}

/// The signals spiffe-helper users name, with and without the `SIG` prefix.
fn parse_signal(name: &str) -> Option<rustix::process::Signal> {
    use rustix::process::Signal;
    let bare = name.strip_prefix("SIG").unwrap_or(name);
    Some(match bare {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "TERM" => Signal::TERM,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "WINCH" => Signal::WINCH,
        "KILL" => Signal::KILL,
        _ => return None,
    })
}

impl HelperConfig {
    /// Reads `path`; `daemon_mode` (the `-daemonMode` flag) overrides the
    /// file.
    pub fn load(path: &Path, daemon_mode: Option<bool>) -> Result<Self, ConfigError> {
        let file = ConfigFile::read(path)?;
        Self::from_file(&file, daemon_mode)
    }

    /// Resolves an already-read file.
    pub fn from_file(file: &ConfigFile, daemon_mode: Option<bool>) -> Result<Self, ConfigError> {
        let raw: File = file.whole()?;
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid {
            path: file.path().to_owned(),
            key,
            reason,
        };
        let agent_address = match raw.agent_address.as_deref() {
            None | Some("") => PathBuf::from(crate::config::DEFAULT_SOCKET_PATH),
            Some(a) if a.starts_with("unix:") => crate::workload_client::socket_from_endpoint(a)
                .map_err(|e| invalid("agent_address", e.to_string()))?,
            Some(a) => PathBuf::from(a),
        };
        let cert_dir = raw
            .cert_dir
            .filter(|d| !d.as_os_str().is_empty())
            .ok_or_else(|| invalid("cert_dir", "is required".into()))?;
        let renew_signal = match raw.renew_signal.as_deref() {
            None | Some("") => None,
            Some(name) => Some(parse_signal(name).ok_or_else(|| {
                invalid(
                    "renew_signal",
                    format!("{name:?} is not a signal name like \"SIGHUP\" or \"SIGUSR1\""),
                )
            })?),
        };
        if raw.pid_file_name.is_some() && renew_signal.is_none() {
            return Err(invalid(
                "pid_file_name",
                "needs renew_signal: the signal to send to that process".into(),
            ));
        }
        if raw.cmd_args.is_some() && raw.cmd.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("cmd_args", "is set but cmd is not".into()));
        }
        if raw.health_checks.is_some_and(|h| h.listener_enabled) {
            return Err(invalid(
                "health_checks",
                "the health listener is not supported; use `spinel-agent healthcheck` on the \
                 agent instead"
                    .into(),
            ));
        }
        let name = |v: Option<String>, default: &str| {
            v.filter(|s| !s.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        for (i, jwt) in raw.jwt_svids.iter().enumerate() {
            if jwt.jwt_audience.is_empty() || jwt.jwt_svid_file_name.is_empty() {
                return Err(invalid(
                    "jwt_svids",
                    format!("item {i} needs jwt_audience and jwt_svid_file_name"),
                ));
            }
        }
        Ok(HelperConfig {
            agent_address,
            cmd: raw.cmd.filter(|c| !c.is_empty()),
            cmd_args: raw
                .cmd_args
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            pid_file_name: raw.pid_file_name,
            cert_dir,
            daemon_mode: daemon_mode.or(raw.daemon_mode).unwrap_or(true),
            add_intermediates_to_bundle: raw.add_intermediates_to_bundle.unwrap_or(false),
            renew_signal,
            renew_signal_name: raw.renew_signal.filter(|s| !s.is_empty()),
            svid_file_name: name(raw.svid_file_name, "svid.pem"),
            svid_key_file_name: name(raw.svid_key_file_name, "svid_key.pem"),
            svid_bundle_file_name: name(raw.svid_bundle_file_name, "bundle.pem"),
            jwt_svids: raw.jwt_svids,
            jwt_bundle_file_name: raw.jwt_bundle_file_name.filter(|s| !s.is_empty()),
            include_federated_domains: raw.include_federated_domains.unwrap_or(false),
            cert_file_mode: raw.cert_file_mode.unwrap_or(0o644),
            key_file_mode: raw.key_file_mode.unwrap_or(0o600),
            jwt_bundle_file_mode: raw.jwt_bundle_file_mode.unwrap_or(0o600),
            jwt_svid_file_mode: raw.jwt_svid_file_mode.unwrap_or(0o600),
            hint: raw.hint.filter(|h| !h.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HelperConfig, ConfigError> {
        let file = ConfigFile::parse(Path::new("helper.conf"), text)?;
        HelperConfig::from_file(&file, None)
    }

    #[test]
    fn reads_a_spiffe_helper_config() {
        let c = parse(
            r#"agent_address = "/tmp/spire-agent/public/api.sock"
cmd = "ghostunnel"
cmd_args = "server --listen localhost:8002  --keystore certs/svid_key.pem"
cert_dir = "certs"
renew_signal = "SIGUSR1"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_svids = [{jwt_audience="vault", jwt_extra_audiences=["b"], jwt_svid_file_name="jwt_svid.token"}]
jwt_bundle_file_name = "bundle.json"
cert_file_mode = 0444
key_file_mode = 0400
jwt_svid_file_mode = "0640"
"#,
        )
        .unwrap();
        assert_eq!(
            c.agent_address,
            PathBuf::from("/tmp/spire-agent/public/api.sock")
        );
        assert_eq!(
            c.cmd_args,
            [
                "server",
                "--listen",
                "localhost:8002",
                "--keystore",
                "certs/svid_key.pem"
            ]
        );
        assert_eq!(c.renew_signal, Some(rustix::process::Signal::USR1));
        assert_eq!(c.svid_bundle_file_name, "svid_bundle.pem");
        assert_eq!(c.jwt_svids[0].jwt_extra_audiences, ["b"]);
        assert_eq!(
            (c.cert_file_mode, c.key_file_mode, c.jwt_svid_file_mode),
            (0o444, 0o400, 0o640)
        );
        assert_eq!(c.jwt_bundle_file_mode, 0o600);
        assert!(c.daemon_mode);
    }

    #[test]
    fn defaults_and_unix_uri() {
        let c = parse("agent_address = \"unix:///run/a.sock\"\ncert_dir = \"/d\"\n").unwrap();
        assert_eq!(c.agent_address, PathBuf::from("/run/a.sock"));
        assert_eq!(
            (
                c.svid_file_name.as_str(),
                c.svid_key_file_name.as_str(),
                c.svid_bundle_file_name.as_str()
            ),
            ("svid.pem", "svid_key.pem", "bundle.pem")
        );
        assert_eq!((c.cert_file_mode, c.key_file_mode), (0o644, 0o600));
    }

    #[test]
    fn bad_configs_name_the_key() {
        let cases = [
            ("cert_dir = \"/d\"\ncert_dri = 1\n", "cert_dri"),
            ("agent_address = \"/a\"\n", "cert_dir"),
            (
                "cert_dir = \"/d\"\nrenew_signal = \"SIGFOO\"\n",
                "renew_signal",
            ),
            (
                "cert_dir = \"/d\"\npid_file_name = \"/p\"\n",
                "pid_file_name",
            ),
            (
                "cert_dir = \"/d\"\ncert_file_mode = 0948\n",
                "cert_file_mode",
            ),
            ("cert_dir = \"/d\"\ncmd_args = \"-x\"\n", "cmd_args"),
            (
                "cert_dir = \"/d\"\njwt_svids = [{jwt_audience=\"\", jwt_svid_file_name=\"t\"}]\n",
                "jwt_svids",
            ),
            (
                "cert_dir = \"/d\"\nhealth_checks {\n listener_enabled = true\n}\n",
                "health_checks",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }
}
