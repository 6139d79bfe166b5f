//! Certificates for `x509pop` node attestation tests: a root CA, an
//! intermediate, and node certificates with ECDSA (P-256, P-384, made by
//! rcgen) or RSA keys (made by `openssl genpkey`, which must be on the
//! PATH), with chosen key usages, common name and URI SANs.
//!
//! Keys are written as PKCS#8 (`PRIVATE KEY`); [`convert_key`] rewrites
//! one as PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) with
//! `openssl`, the formats SPIRE's agent also reads. [`oversized_rsa_leaf`]
//! makes a certificate for an RSA key too large to check (its private key
//! never exists).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};

/// The node key to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKey {
    /// ECDSA P-256.
    P256,
    /// ECDSA P-384.
    P384,
    /// RSA of this many bits.
    Rsa(u32),
}

/// What a node certificate holds.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The key type.
    pub key: NodeKey,
    /// Subject common name.
    pub common_name: String,
    /// Key usages (default: digitalSignature).
    pub key_usages: Vec<KeyUsagePurpose>,
    /// URI SANs (e.g. `x509pop://example.org/datacenter/us-east-1`).
    pub uri_sans: Vec<String>,
    /// Serial number, big-endian (default: random).
    pub serial: Option<Vec<u8>>,
}

impl NodeSpec {
    /// A node certificate with `key`, CN `common_name` and key usage
    /// digitalSignature.
    pub fn new(key: NodeKey, common_name: &str) -> Self {
        NodeSpec {
            key,
            common_name: common_name.into(),
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            uri_sans: Vec::new(),
            serial: None,
        }
    }
}

/// A node certificate and its key. `Debug` does not print the key.
#[derive(Clone)]
pub struct NodeCert {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A CA (root or intermediate) that issues node certificates.
pub struct PopCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

impl std::fmt::Debug for PopCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PopCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn ca_params(common_name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

impl PopCa {
    /// A self-signed P-256 root CA.
    pub fn root(common_name: &str) -> Result<Self> {
        let key = KeyPair::generate().context("generating CA key")?;
        let params = ca_params(common_name)?;
        let cert = params.self_signed(&key).context("self-signing CA")?;
        Ok(PopCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, common_name: &str) -> Result<Self> {
        let key = KeyPair::generate().context("generating intermediate key")?;
        let params = ca_params(common_name)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing intermediate")?;
        Ok(PopCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes the CA certificate (PEM) to `path`.
    pub fn write_pem(&self, path: &Path) -> Result<()> {
        std::fs::write(path, &self.cert_pem).with_context(|| format!("writing {}", path.display()))
    }

    /// Issues a node certificate as `spec` says.
    pub fn issue(&self, spec: &NodeSpec) -> Result<NodeCert> {
        let key = match spec.key {
            NodeKey::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            NodeKey::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?,
            NodeKey::Rsa(bits) => {
                KeyPair::from_pkcs8_pem_and_sign_algo(&rsa_key_pem(bits)?, &rcgen::PKCS_RSA_SHA256)?
            }
        };
        let params = node_params(spec)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing node certificate")?;
        Ok(NodeCert {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn node_params(spec: &NodeSpec) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).context("node params")?;
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name.as_str());
    params.key_usages = spec.key_usages.clone();
    for uri in &spec.uri_sans {
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into().context("URI SAN")?));
    }
    if let Some(serial) = &spec.serial {
        params.serial_number = Some(SerialNumber::from_slice(serial));
    }
    Ok(params)
}

/// A fresh RSA key of `bits`, PKCS#8 PEM, from `openssl genpkey`.
pub fn rsa_key_pem(bits: u32) -> Result<String> {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &format!("rsa_keygen_bits:{bits}"),
        ])
        .output()
        .context("running openssl genpkey (is openssl installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("openssl output is not text")
}

/// The key format to convert to with [`convert_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `RSA PRIVATE KEY` (PKCS#1).
    Pkcs1,
    /// `EC PRIVATE KEY` (SEC1).
    Sec1,
}

/// Rewrites a PKCS#8 PEM key as PKCS#1 (RSA) or SEC1 (EC) with `openssl`.
pub fn convert_key(pkcs8_pem: &str, format: KeyFormat) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("key.pem");
    std::fs::write(&input, pkcs8_pem)?;
    let input = input.display().to_string();
    let args: Vec<&str> = match format {
        KeyFormat::Pkcs1 => vec!["rsa", "-in", &input, "-traditional"],
        KeyFormat::Sec1 => vec!["ec", "-in", &input],
    };
    let out = Command::new("openssl")
        .args(&args)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8(out.stdout).context("openssl output is not text")
}

/// An RSA public key with any modulus (no private key exists).
struct RawRsaKey(Vec<u8>);

impl PublicKeyData for RawRsaKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A node certificate (key usage digitalSignature) for an RSA public key
/// of `bits` bits, signed by `ca`: for refusals that must come before any
/// work with the key.
pub fn oversized_rsa_leaf(ca: &PopCa, bits: usize, common_name: &str) -> Result<Vec<u8>> {
    let mut modulus = vec![0xffu8; bits.div_ceil(8)];
    // A leading 0 keeps the INTEGER positive.
    modulus.insert(0, 0);
    let mut body = der(0x02, &modulus);
    body.extend(der(0x02, &[0x01, 0x00, 0x01]));
    let key = RawRsaKey(der(0x30, &body));
    let params = node_params(&NodeSpec::new(NodeKey::Rsa(0), common_name))?;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .context("signing oversized node certificate")?;
    Ok(cert.der().to_vec())
}

/// Lowercase hex SHA-1 of `der`: SPIRE's certificate fingerprint.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The default agent ID of a node certificate:
/// `spiffe://<td>/spire/agent/x509pop/<fingerprint>`.
pub fn agent_id(trust_domain: &str, cert_der: &[u8]) -> String {
    format!(
        "spiffe://{trust_domain}/spire/agent/x509pop/{}",
        fingerprint(cert_der)
    )
}

/// The server's `NodeAttestor "x509pop"` block trusting `ca_bundle_path`,
/// with `extra` plugin data lines.
pub fn server_plugin(ca_bundle_path: &Path, extra: &str) -> String {
    format!(
        "    NodeAttestor \"x509pop\" {{\n        plugin_data {{\n            ca_bundle_path = \"{}\"\n{extra}\n        }}\n    }}",
        ca_bundle_path.display()
    )
}

/// Writes `node`'s certificate and `key_pem` (and `intermediates`, if
/// any) into `dir` and returns the agent's `NodeAttestor "x509pop"`
/// block naming them.
pub fn agent_plugin(
    dir: &Path,
    node: &NodeCert,
    key_pem: &str,
    intermediates: Option<&str>,
) -> Result<String> {
    let cert = dir.join("node-cert.pem");
    let key = dir.join("node-key.pem");
    std::fs::write(&cert, &node.cert_pem)?;
    crate::process::write_file(&key, key_pem)?;
    let intermediates = match intermediates {
        Some(pem) => {
            let path = dir.join("node-intermediates.pem");
            std::fs::write(&path, pem)?;
            format!("            intermediates_path = \"{}\"\n", path.display())
        }
        None => String::new(),
    };
    Ok(format!(
        "NodeAttestor \"x509pop\" {{\n        plugin_data {{\n            private_key_path = \"{}\"\n            certificate_path = \"{}\"\n{intermediates}        }}\n    }}",
        key.display(),
        cert.display()
    ))
}
