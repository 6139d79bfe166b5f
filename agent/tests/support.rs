//! Test support: a CA that mints real X509-SVIDs and JWT-SVIDs, fakes for
//! the attestor and JWT source seams, and a harness serving the Workload
//! API on a socket in a temporary directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType,
};
use spinel_agent::attestor::workload::{AttestError, Caller, WorkloadAttestor};
use spinel_agent::cache::{
    Cache, CachedEntry, Identity, JwtSvidError, JwtSvidSource, Snapshot, X509SvidMaterial,
};
use spinel_agent::workload_api;
use spinel_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spinel_proto::workload::{X509svidRequest, X509svidResponse};
use spinel_spiffe::{Clock, JwtAuthority, Selector, SpiffeId, TrustBundle, TrustDomain};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Request;
use zeroize::Zeroizing;

pub const TD: &str = "example.org";
pub const FED_TD: &str = "federated.test";
pub const UID_SELECTOR: &str = "unix:uid:1000";

pub fn now() -> SystemTime {
    Clock::system().now()
}

pub fn unix(t: SystemTime) -> i64 {
    spinel_spiffe::clock::to_unix_seconds(t)
}

/// A CA of one trust domain, with a JWT signing key.
pub struct Ca {
    pub td: TrustDomain,
    issuer: Issuer<'static, KeyPair>,
    pub der: Vec<u8>,
    jwt_key: KeyPair,
}

impl Ca {
    pub fn new(td: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Ca {
            td: TrustDomain::new(td).unwrap(),
            issuer: Issuer::new(params, key),
            der,
            jwt_key: KeyPair::generate().unwrap(),
        }
    }

    pub fn leaf(&self, id: &str, not_after: SystemTime) -> X509SvidMaterial {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let not_before = now() - Duration::from_secs(10);
        // rcgen takes `time` values: the epoch plus a std duration.
        params.not_before =
            rcgen::date_time_ymd(1970, 1, 1) + not_before.duration_since(UNIX_EPOCH).unwrap();
        params.not_after =
            rcgen::date_time_ymd(1970, 1, 1) + not_after.duration_since(UNIX_EPOCH).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        X509SvidMaterial {
            chain: vec![cert.der().to_vec()],
            private_key: Zeroizing::new(key.serialize_der()),
            not_before,
            not_after,
        }
    }

    pub fn bundle(&self) -> TrustBundle {
        let mut b = TrustBundle::new(self.td.clone());
        b.x509_authorities = vec![self.der.clone()];
        b.jwt_authorities = vec![JwtAuthority {
            key_id: format!("kid-{}", self.td),
            public_key: self.jwt_key.subject_public_key_info(),
            expires_at: 0,
        }];
        b.sequence = 1;
        b
    }

    /// A compact ES256 JWT-SVID signed with the CA's JWT key.
    pub fn jwt(&self, sub: &str, audience: &[String], exp: i64) -> String {
        let header =
            serde_json::json!({"alg": "ES256", "kid": format!("kid-{}", self.td), "typ": "JWT"});
        let claims =
            serde_json::json!({"sub": sub, "aud": audience, "exp": exp, "iat": unix(now())});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &self.jwt_key.serialize_der(),
            &rng,
        )
        .unwrap();
        let sig = key.sign(&rng, signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

pub fn entry(id: &str, selectors: &[&str], hint: &str, federates_with: &[&str]) -> CachedEntry {
    CachedEntry {
        id: id.to_owned(),
        spiffe_id: SpiffeId::new(format!("spiffe://{TD}/{id}")).unwrap(),
        selectors: selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect(),
        federates_with: federates_with
            .iter()
            .map(|t| TrustDomain::new(t).unwrap())
            .collect(),
        hint: hint.to_owned(),
        revision_number: 1,
        admin: false,
        downstream: false,
    }
}

pub fn identity(ca: &Ca, entry: CachedEntry, not_after: SystemTime) -> Arc<Identity> {
    let svid = ca.leaf(&entry.spiffe_id.to_string(), not_after);
    Arc::new(Identity { entry, svid })
}

pub fn publish(cache: &Cache, ca: &Ca, fed: Option<&Ca>, identities: Vec<Arc<Identity>>) {
    cache.publish(|_| Snapshot {
        bundle: ca.bundle(),
        federated: fed
            .map(|f| BTreeMap::from([(f.td.clone(), f.bundle())]))
            .unwrap_or_default(),
        identities: identities
            .into_iter()
            .map(|i| (i.entry.id.clone(), i))
            .collect(),
        generation: 0,
        ready: true,
    });
}

pub fn in_an_hour() -> SystemTime {
    now() + Duration::from_secs(3600)
}

/// Attests every caller with the selectors the test sets.
#[derive(Debug, Default)]
pub struct FakeAttestor(Mutex<Vec<Selector>>);

impl FakeAttestor {
    pub fn set(&self, selectors: &[&str]) {
        *self.0.lock().unwrap() = selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect();
    }
}

#[async_trait]
impl WorkloadAttestor for FakeAttestor {
    async fn attest(&self, caller: &Caller) -> Result<Vec<Selector>, AttestError> {
        assert_eq!(
            caller.pid,
            std::process::id() as i32,
            "pid from SO_PEERCRED"
        );
        Ok(self.0.lock().unwrap().clone())
    }
}

/// Signs JWT-SVIDs with the test CA's key, as the manager would get them
/// from the server.
pub struct FakeJwt {
    signer: Arc<Ca>,
}

impl std::fmt::Debug for FakeJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeJwt")
    }
}

#[async_trait]
impl JwtSvidSource for FakeJwt {
    async fn fetch_jwt_svid(
        &self,
        entry: &CachedEntry,
        audience: &[String],
    ) -> Result<String, JwtSvidError> {
        assert!(!audience.is_empty());
        let exp = unix(now()) + 300;
        Ok(self.signer.jwt(&entry.spiffe_id.to_string(), audience, exp))
    }
}

/// A Workload API served on a socket in a temporary directory.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub cache: Cache,
    pub attestor: Arc<FakeAttestor>,
    pub ca: Arc<Ca>,
    pub fed: Ca,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), workload_api::Error>>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Serves with `real` as the attestor instead of the fake.
    pub async fn start_with(real: Option<Arc<dyn WorkloadAttestor>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nested/public/api.sock");
        let cache = Cache::new(TrustDomain::new(TD).unwrap());
        let attestor = Arc::new(FakeAttestor::default());
        attestor.set(&[UID_SELECTOR, "unix:gid:1000"]);
        let ca = Arc::new(Ca::new(TD));
        let jwt = Arc::new(FakeJwt { signer: ca.clone() });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let (socket, cache) = (socket.clone(), cache.clone());
            let attestor: Arc<dyn WorkloadAttestor> = real.unwrap_or_else(|| attestor.clone());
            async move {
                workload_api::serve(&socket, cache, jwt, attestor, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        for _ in 0..500 {
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Harness {
            dir,
            socket,
            cache,
            attestor,
            ca,
            fed: Ca::new(FED_TD),
            stop: Some(stop),
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// One identity `w1` for `unix:uid:1000`, hinted, federating with FED_TD.
    pub fn publish_default(&self) -> Arc<Identity> {
        let w1 = identity(
            &self.ca,
            entry("w1", &[UID_SELECTOR], "internal", &[FED_TD]),
            in_an_hour(),
        );
        publish(&self.cache, &self.ca, Some(&self.fed), vec![w1.clone()]);
        w1
    }

    pub async fn raw(&self) -> SpiffeWorkloadApiClient<Channel> {
        SpiffeWorkloadApiClient::new(channel(&self.socket).await)
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
        assert!(!self.socket.exists(), "socket removed on shutdown");
    }
}

pub async fn channel(socket: &Path) -> Channel {
    let socket = socket.to_owned();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

pub fn with_header<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(workload_api::SECURITY_HEADER, "true".parse().unwrap());
    r
}

pub async fn first_x509(client: &mut SpiffeWorkloadApiClient<Channel>) -> X509svidResponse {
    client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap()
}
