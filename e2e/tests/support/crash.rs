//! What the `crash/` tests share: stop a real `spinel-server` at a
//! failpoint (`SPINEL_PAUSE_AT`, debug builds), `kill -9` it there, restart
//! it without the failpoint, and check that what it comes back with is
//! consistent:
//! - every SVID minted before the crash still verifies against
//!   `bundle show` (X.509 chain to a bundle CA, JWT by `kid`);
//! - `localauthority x509|jwt show` names authorities the bundle holds, and
//!   a prepared one can be activated and signs (its key is there);
//! - the operation that was interrupted runs again and succeeds;
//! - no temporary key file is left in the data directory.
//!
//! SVIDs are minted over the admin socket (`MintX509SVID`, `MintJWTSVID`).
//! Real processes run on the real clock, so this reads the system time.

use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use spinel_proto::spire::api::server::svid::v1::{
    svid_client::SvidClient, MintJwtsvidRequest, MintX509svidRequest,
};
use spinel_proto::spire::api::types;
use spinel_spiffe::failpoint;
use spinel_spiffe::{TrustBundle, TrustDomain};
use spinel_test_fixtures::spinel::{run_cli, CliOutput};
use spinel_test_fixtures::{bin_path, ServerHandle};
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};
use x509_parser::prelude::parse_x509_certificate;

/// The trust domain of the test servers.
pub const TD: &str = "example.org";
/// The audience of minted JWT-SVIDs.
pub const AUDIENCE: &str = "crash-test";

/// How long a server may take to reach a failpoint on a loaded machine.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Failpoints exist only in debug builds; in release the crash tests have
/// nothing to stop at and are skipped.
pub fn failpoints_compiled() -> bool {
    if cfg!(debug_assertions) {
        true
    } else {
        eprintln!("skipped: failpoints exist only in debug builds");
        false
    }
}

/// The environment that arms failpoint `point`.
pub fn pause_env(point: &str) -> [(&str, &str); 1] {
    [(failpoint::PAUSE_AT_ENV, point)]
}

/// Waits for the server to report that it stopped at `point`, then kills it
/// with SIGKILL.
pub fn kill_at(server: &mut ServerHandle, point: &str) {
    server
        .wait_for_log(&failpoint::pause_line(point), PAUSE_TIMEOUT)
        .unwrap();
    server.kill();
}

/// Restarts a running server with `point` armed, runs `spinel-server
/// <args>` against it (which stops the server at `point`), kills the server
/// there and starts it again without the failpoint. Returns the CLI's
/// output (a failure: the server died under it).
pub fn crash_during(server: &mut ServerHandle, point: &str, args: &[&str]) -> CliOutput {
    server.stop().unwrap();
    server.start_process_with_env(&pause_env(point)).unwrap();
    let socket = server.socket_path.display().to_string();
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["-socketPath".to_owned(), socket]);
    let cli = std::thread::spawn(move || {
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_cli(&bin_path("spinel-server"), &all).unwrap()
    });
    kill_at(server, point);
    let out = cli.join().unwrap();
    server.start_process().unwrap();
    out
}

/// `spinel-server <args> -output json`, which must succeed.
pub fn json(server: &ServerHandle, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-output", "json"]);
    let out = server.cli(&all).unwrap();
    assert!(out.success(), "{args:?}: {}\n{}", out.stderr, server.log());
    serde_json::from_str(&out.stdout).unwrap()
}

/// `authority_id` of `v[field]`, if present.
pub fn id_of(v: &serde_json::Value, field: &str) -> Option<String> {
    v.get(field)?["authority_id"].as_str().map(str::to_owned)
}

/// The server's own bundle, from `bundle show -format spiffe`.
pub fn bundle(server: &ServerHandle) -> TrustBundle {
    let out = server
        .cli(&["bundle", "show", "-format", "spiffe"])
        .unwrap()
        .ok()
        .unwrap();
    TrustBundle::from_json(TrustDomain::new(TD).unwrap(), out.stdout.as_bytes()).unwrap()
}

/// Subject key ID (hex) of a CA certificate, as the server names it
/// (`spinel_server::ca::subject_key_id`): the extension if present, else
/// the SHA-1 of the public key. Computed here so that this crate does not
/// link the server library.
pub fn ski(der: &[u8]) -> String {
    let (_, cert) = parse_x509_certificate(der).unwrap();
    let id = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(id.0.to_vec())
            }
            _ => None,
        });
    let id = id.unwrap_or_else(|| {
        let spk = &cert.public_key().subject_public_key.data;
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, spk)
            .as_ref()
            .to_vec()
    });
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bundle CA that signed `leaf`, if any.
pub fn issuer_in<'b>(bundle: &'b TrustBundle, leaf: &[u8]) -> Option<&'b [u8]> {
    let (_, leaf) = parse_x509_certificate(leaf).ok()?;
    bundle
        .x509_authorities
        .iter()
        .find(|ca| {
            parse_x509_certificate(ca)
                .is_ok_and(|(_, ca)| leaf.verify_signature(Some(ca.public_key())).is_ok())
        })
        .map(Vec::as_slice)
}

/// SVIDs minted from a test, all of which must keep verifying.
#[derive(Debug, Default)]
pub struct Minted {
    /// X509-SVID leaves (DER).
    pub x509: Vec<Vec<u8>>,
    /// JWT-SVIDs.
    pub jwt: Vec<String>,
}

impl Minted {
    /// Mints one X509-SVID and one JWT-SVID over the admin socket.
    pub fn mint(&mut self, server: &ServerHandle) {
        let (leaf, token) = runtime().block_on(mint(&server.socket_path));
        self.x509.push(leaf);
        self.jwt.push(token);
    }

    /// Every SVID verifies against the server's current bundle.
    pub fn verify(&self, server: &ServerHandle) {
        let bundle = bundle(server);
        for (i, leaf) in self.x509.iter().enumerate() {
            assert!(
                issuer_in(&bundle, leaf).is_some(),
                "X509-SVID #{i} does not chain to the bundle ({} CAs)\n{}",
                bundle.x509_authorities.len(),
                server.log()
            );
        }
        let now = spinel_spiffe::clock::to_unix_seconds(std::time::SystemTime::now());
        for (i, token) in self.jwt.iter().enumerate() {
            let lookup = |_: &TrustDomain| Some(bundle.clone());
            if let Err(e) = spinel_spiffe::jwt::validate(token, AUDIENCE, &lookup, now) {
                panic!("JWT-SVID #{i} does not verify against the bundle: {e}");
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn mint(socket: &Path) -> (Vec<u8>, String) {
    let path = socket.to_owned();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap();
    let mut svids = SvidClient::new(channel);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        format!("spiffe://{TD}/crash/workload").try_into().unwrap(),
    ));
    let csr = params.serialize_request(&key).unwrap();
    let x509 = svids
        .mint_x509svid(MintX509svidRequest {
            csr: csr.der().to_vec(),
            ttl: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    let jwt = svids
        .mint_jwtsvid(MintJwtsvidRequest {
            id: Some(types::Spiffeid {
                trust_domain: TD.into(),
                path: "/crash/workload".into(),
            }),
            audience: vec![AUDIENCE.into()],
            ttl: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    (x509.cert_chain[0].clone(), jwt.token)
}

/// Checks the state after a restart and that rotation still works:
/// - every SVID in `minted` verifies against the bundle, and so do new ones;
/// - the active and any prepared authority of both kinds are in the bundle;
/// - a prepared authority found after the crash can be activated and signs;
/// - prepare and activate of both kinds then succeed, and every SVID minted
///   on the way still verifies;
/// - no temporary key file is left in the data directory.
pub fn check_consistent_and_rotate(server: &ServerHandle, minted: &mut Minted) {
    minted.verify(server);
    minted.mint(server);
    minted.verify(server);
    let bundle_now = bundle(server);
    for kind in ["x509", "jwt"] {
        let state = json(server, &["localauthority", kind, "show"]);
        let in_bundle = |id: &str| match kind {
            "x509" => bundle_now.x509_authorities.iter().any(|ca| ski(ca) == id),
            _ => bundle_now.jwt_authorities.iter().any(|k| k.key_id == id),
        };
        let active = id_of(&state, "active").expect("an active authority");
        assert!(
            in_bundle(&active),
            "{kind} active {active} not in the bundle: {state}"
        );
        if let Some(prepared) = id_of(&state, "prepared") {
            assert!(
                in_bundle(&prepared),
                "{kind} prepared {prepared} not in the bundle: {state}"
            );
            // Its key is in the key manager: it activates and signs.
            activate(server, kind, &prepared);
            minted.mint(server);
            minted.verify(server);
        }
        let prepared = json(server, &["localauthority", kind, "prepare"]);
        let next = id_of(&prepared, "prepared_authority").expect("a prepared authority");
        activate(server, kind, &next);
        minted.mint(server);
        minted.verify(server);
    }
    assert_no_temp_files(server);
}

/// `localauthority <kind> activate -authorityID <id>`, checked with `show`.
pub fn activate(server: &ServerHandle, kind: &str, id: &str) {
    json(
        server,
        &["localauthority", kind, "activate", "-authorityID", id],
    );
    let state = json(server, &["localauthority", kind, "show"]);
    assert_eq!(id_of(&state, "active").as_deref(), Some(id), "{state}");
}

/// The server's data directory holds no temporary key file.
pub fn assert_no_temp_files(server: &ServerHandle) {
    let temps = temp_files(server);
    assert!(temps.is_empty(), "temporary key files left: {temps:?}");
}

/// The temporary key files (`.keys.json.tmp<pid>`) in the data directory.
pub fn temp_files(server: &ServerHandle) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(server.dir.path().join("data")) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".keys.json.tmp"))
        .collect()
}
