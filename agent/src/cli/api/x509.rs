//! `api fetch x509` and `api watch`: X509-SVIDs, printed and written as
//! SPIRE's CLI does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Map, Value};
use spinel_proto::workload::{X509svidRequest, X509svidResponse};
use spinel_spiffe::bundle::pem_encode;
use spinel_spiffe::keyfile;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::format::{self, bytes_json};
use super::{FetchX509Args, Output, WatchArgs};
use crate::workload_client::{self as client, parse_certs, status_error, Cert};

/// One SVID of a response, parsed.
struct Svid<'a> {
    spiffe_id: &'a str,
    hint: &'a str,
    certs: Vec<Cert<'a>>,
    key: &'a [u8],
    bundle: Vec<Cert<'a>>,
}

/// A parsed `X509SVIDResponse`.
struct Parsed<'a> {
    svids: Vec<Svid<'a>>,
    /// Federated bundles by trust domain ID, sorted.
    federated: BTreeMap<&'a str, Vec<Cert<'a>>>,
}

fn parse(resp: &X509svidResponse) -> anyhow::Result<Parsed<'_>> {
    if resp.svids.is_empty() {
        bail!("workload response contains no svids");
    }
    let mut federated = BTreeMap::new();
    for (td, der) in &resp.federated_bundles {
        let certs = parse_certs(der)
            .with_context(|| format!("failed to parse bundle for federated domain {td:?}"))?;
        if certs.is_empty() {
            bail!("no certificates in bundle for federated domain {td:?}");
        }
        federated.insert(td.as_str(), certs);
    }
    let mut svids = Vec::new();
    for (i, s) in resp.svids.iter().enumerate() {
        let context = || {
            format!(
                "failed to parse svid entry {i} for spiffe id {:?}",
                s.spiffe_id
            )
        };
        let certs = parse_certs(&s.x509_svid).with_context(context)?;
        if certs.is_empty() {
            bail!("{}: no certificates found", context());
        }
        let bundle = parse_certs(&s.bundle).with_context(context)?;
        if bundle.is_empty() {
            bail!("{}: no certificates in trust bundle", context());
        }
        if s.x509_svid_key.is_empty() {
            bail!("{}: no private key", context());
        }
        svids.push(Svid {
            spiffe_id: &s.spiffe_id,
            hint: &s.hint,
            certs,
            key: &s.x509_svid_key,
            bundle,
        });
    }
    Ok(Parsed { svids, federated })
}

/// SPIRE's pretty form: a count line, then each SVID's validity and its
/// CAs'.
fn pretty(parsed: &Parsed<'_>, elapsed: Duration) -> String {
    let n = parsed.svids.len();
    let plural = if n == 1 { "" } else { "s" };
    let mut out = format!(
        "Received {n} svid{plural} after {}\n",
        spinel_config::format_go_duration(elapsed)
    );
    for svid in &parsed.svids {
        out.push('\n');
        let _ = writeln!(out, "SPIFFE ID:\t\t{}", svid.spiffe_id);
        if !svid.hint.is_empty() {
            let _ = writeln!(out, "Hint:\t\t\t{}", svid.hint);
        }
        let mut certs = svid.certs.iter();
        if let Some(leaf) = certs.next() {
            let (after, until) = format::validity(leaf);
            let _ = writeln!(
                out,
                "SVID Valid After:\t{after}\nSVID Valid Until:\t{until}"
            );
        }
        for (i, c) in certs.enumerate() {
            let (after, until) = format::validity(c);
            let n = i + 1;
            let _ = writeln!(
                out,
                "Intermediate #{n} Valid After:\t{after}\nIntermediate #{n} Valid Until:\t{until}"
            );
        }
        for (i, c) in svid.bundle.iter().enumerate() {
            let (after, until) = format::validity(c);
            let n = i + 1;
            let _ = writeln!(
                out,
                "CA #{n} Valid After:\t{after}\nCA #{n} Valid Until:\t{until}"
            );
        }
        for (td, certs) in &parsed.federated {
            for (i, c) in certs.iter().enumerate() {
                let (after, until) = format::validity(c);
                let n = i + 1;
                let _ = writeln!(
                    out,
                    "[{td}] CA #{n} Valid After:\t{after}\n[{td}] CA #{n} Valid Until:\t{until}"
                );
            }
        }
    }
    out.push('\n');
    out
}

/// The response as protobuf JSON (proto field names, every field).
pub(crate) fn to_json(resp: &X509svidResponse) -> Value {
    let svids: Vec<Value> = resp
        .svids
        .iter()
        .map(|s| {
            json!({
                "spiffe_id": s.spiffe_id,
                "x509_svid": bytes_json(&s.x509_svid),
                "x509_svid_key": bytes_json(&s.x509_svid_key),
                "bundle": bytes_json(&s.bundle),
                "hint": s.hint,
            })
        })
        .collect();
    let federated: Map<String, Value> = resp
        .federated_bundles
        .iter()
        .map(|(k, v)| (k.clone(), bytes_json(v)))
        .collect();
    json!({
        "svids": svids,
        "crl": resp.crl.iter().map(|c| bytes_json(c)).collect::<Vec<_>>(),
        "federated_bundles": federated,
    })
}

fn certs_pem(certs: &[Cert<'_>]) -> String {
    certs
        .iter()
        .map(|c| pem_encode("CERTIFICATE", c.der))
        .collect()
}

/// Writes `svid.<i>.pem`, `svid.<i>.key` (0600), `bundle.<i>.pem` and
/// `federated_bundle.<i>.<j>.pem` into `dir`, each atomically.
fn write_files(dir: &Path, parsed: &Parsed<'_>) -> anyhow::Result<()> {
    let public = |path: &Path, data: &str| {
        keyfile::write_atomic(path, data.as_bytes(), 0o644).map_err(anyhow::Error::from)
    };
    for (i, svid) in parsed.svids.iter().enumerate() {
        let svid_path = dir.join(format!("svid.{i}.pem"));
        let key_path = dir.join(format!("svid.{i}.key"));
        let bundle_path = dir.join(format!("bundle.{i}.pem"));
        println!("Writing SVID #{i} to file {}.", svid_path.display());
        public(&svid_path, &certs_pem(&svid.certs))?;
        println!("Writing key #{i} to file {}.", key_path.display());
        let key_pem = Zeroizing::new(pem_encode("PRIVATE KEY", svid.key));
        keyfile::write_private(&key_path, key_pem.as_bytes())?;
        println!("Writing bundle #{i} to file {}.", bundle_path.display());
        public(&bundle_path, &certs_pem(&svid.bundle))?;
        for (j, (td, certs)) in parsed.federated.iter().enumerate() {
            let path = dir.join(format!("federated_bundle.{i}.{j}.pem"));
            println!(
                "Writing federated bundle #{j} for trust domain {td} to file {}.",
                path.display()
            );
            public(&path, &certs_pem(certs))?;
        }
    }
    Ok(())
}

/// `api fetch x509`.
pub(crate) async fn fetch(args: FetchX509Args) -> anyhow::Result<()> {
    let socket = client::socket_path(args.common.socket_path.as_deref())?;
    let timeout = args.common.timeout;
    let start = Instant::now();
    let resp = client::with_timeout(timeout, "fetching X509-SVIDs", async {
        let mut client = client::connect(&socket, timeout).await?;
        let mut stream = client
            .fetch_x509svid(X509svidRequest {})
            .await
            .map_err(|s| status_error("fetching X509-SVIDs", &s))?
            .into_inner();
        stream
            .message()
            .await
            .map_err(|s| status_error("fetching X509-SVIDs", &s))?
            .context("the Workload API closed the stream without a response")
    })
    .await?;
    let elapsed = start.elapsed();
    if args.output == Output::Json {
        println!("{}", to_json(&resp));
        return Ok(());
    }
    let parsed = parse(&resp)?;
    if !args.silent {
        print!("{}", pretty(&parsed, elapsed));
    }
    if let Some(dir) = &args.write {
        write_files(dir, &parsed)?;
    }
    Ok(())
}

/// `api watch`: prints every X509-SVID update until interrupted,
/// reconnecting after errors.
pub(crate) async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let socket = client::socket_path(args.socket_path.as_deref())?;
    tokio::select! {
        r = watch_loop(&socket) => r,
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
    }
}

async fn watch_loop(socket: &Path) -> anyhow::Result<()> {
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    let mut last_update = Instant::now();
    let mut backoff = Duration::from_secs(1);
    loop {
        match watch_once(socket, &mut last_update, &mut backoff).await {
            Ok(()) => eprintln!("the Workload API closed the stream; reconnecting"),
            Err(e) => eprintln!("{e:#}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn watch_once(
    socket: &Path,
    last_update: &mut Instant,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let mut client = client::connect(socket, Duration::from_secs(5)).await?;
    let mut stream = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .map_err(|s| status_error("watching X509-SVIDs", &s))?
        .into_inner();
    while let Some(resp) = stream
        .message()
        .await
        .map_err(|s| status_error("watching X509-SVIDs", &s))?
    {
        *backoff = Duration::from_secs(1);
        match parse(&resp) {
            Ok(parsed) => print!("{}", pretty(&parsed, last_update.elapsed())),
            Err(e) => eprintln!("received an invalid update: {e:#}"),
        }
        *last_update = Instant::now();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    use spinel_proto::workload::X509svid;

    use super::*;

    fn ca(td: &str) -> (Vec<u8>, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2024, 1, 2);
        params.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        let der = params.self_signed(&key).unwrap().der().to_vec();
        (der, Issuer::new(params, key))
    }

    fn response() -> X509svidResponse {
        let (ca_der, issuer) = ca("example.org");
        let (fed_der, _) = ca("other.test");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2024, 1, 1) + Duration::from_secs(3600);
        params.subject_alt_names = vec![SanType::URI("spiffe://example.org/w".try_into().unwrap())];
        let leaf = params.signed_by(&key, &issuer).unwrap().der().to_vec();
        X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: "spiffe://example.org/w".into(),
                x509_svid: leaf,
                x509_svid_key: key.serialize_der(),
                bundle: ca_der,
                hint: "db".into(),
            }],
            crl: vec![],
            federated_bundles: HashMap::from([("spiffe://other.test".to_owned(), fed_der)]),
        }
    }

    #[test]
    fn pretty_output_matches_spire() {
        let resp = response();
        let parsed = parse(&resp).unwrap();
        assert_eq!(
            pretty(&parsed, Duration::from_micros(3_250)),
            "Received 1 svid after 3.25ms\n\n\
             SPIFFE ID:\t\tspiffe://example.org/w\n\
             Hint:\t\t\tdb\n\
             SVID Valid After:\t2024-01-01 00:00:00 +0000 UTC\n\
             SVID Valid Until:\t2024-01-01 01:00:00 +0000 UTC\n\
             CA #1 Valid After:\t2024-01-01 00:00:00 +0000 UTC\n\
             CA #1 Valid Until:\t2024-01-02 00:00:00 +0000 UTC\n\
             [spiffe://other.test] CA #1 Valid After:\t2024-01-01 00:00:00 +0000 UTC\n\
             [spiffe://other.test] CA #1 Valid Until:\t2024-01-02 00:00:00 +0000 UTC\n\n"
        );
    }

    #[test]
    fn json_uses_proto_names() {
        let v = to_json(&response());
        let svid = &v["svids"][0];
        assert_eq!(svid["spiffe_id"], "spiffe://example.org/w");
        assert_eq!(svid["hint"], "db");
        assert!(svid["x509_svid"].as_str().is_some());
        assert!(v["federated_bundles"]["spiffe://other.test"].is_string());
        assert_eq!(v["crl"], serde_json::json!([]));
    }

    #[test]
    fn refuses_incomplete_responses() {
        let mut resp = response();
        resp.svids[0].bundle.clear();
        let err = parse(&resp).err().unwrap().to_string();
        assert!(err.contains("no certificates in trust bundle"), "{err}");
        resp.svids.clear();
        assert!(parse(&resp).is_err());
    }

    #[test]
    fn writes_spire_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let resp = response();
        write_files(dir.path(), &parse(&resp).unwrap()).unwrap();
        for name in [
            "svid.0.pem",
            "svid.0.key",
            "bundle.0.pem",
            "federated_bundle.0.0.pem",
        ] {
            assert!(dir.path().join(name).exists(), "{name}");
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("svid.0.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
