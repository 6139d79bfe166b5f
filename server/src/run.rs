//! Running the server: what `spinel-server run` does.
//!
//! Start-up order: data store (sled, at the plugin's path) → key manager →
//! CA ([`Ca::start`], which loads or makes the CA and stores the bundle) →
//! CA rotation task → TLS material → listeners (TCP with TLS, the admin Unix
//! socket, and the HTTP health listener if enabled) → join-token pruning.
//! The `k8sbundle` notifier's client is made (its kubeconfig read) before
//! anything is opened, and its tasks start with the CA's.
//!
//! When both listeners are up, the server logs, at info:
//!
//! - `Starting Server APIs` once per API listener, as SPIRE does, with
//!   fields `network=tcp address=<ip:port>` and `network=unix
//!   address=<socket path>`, and
//! - `listening on <ip>:<port>`: the exact text a harness can wait for to
//!   learn the TCP port. With `bind_port = 0` the port is the one the OS
//!   picked, e.g. `listening on 127.0.0.1:40551`.
//!
//! In-process use (tests): [`start`] returns a [`RunningServer`] with the
//! bound address; [`RunningServer::shutdown`] stops it gracefully. The
//! binary calls [`run`], which also waits for SIGINT/SIGTERM.
//!
//! The admin socket: its parent directory is created with mode 0700 when
//! missing, and refused when another user could change it (owned by
//! someone other than this user or root, or writable by others without the
//! sticky bit); a stale socket file left by a dead server is replaced, but
//! if a server answers on it, start-up fails; the socket has mode 0770
//! from the moment it exists (bound in a private directory and renamed
//! into place, see [`spinel_transport::unix_socket`]); it is removed on
//! shutdown.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spinel_spiffe::{Clock, TrustBundle};
use spinel_transport::health_http;
use spinel_transport::unix_socket::{self, BindError, SocketModes};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::client_trust::ClientTrust;
use crate::api::{self, ApiSettings, ApiState};
use crate::attestor::node::k8s_psat;
use crate::attestor::node::{JoinTokenAttestor, K8sPsatAttestor, NodeAttestors, X509popAttestor};
use crate::ca::Ca;
use crate::config::{
    DataStoreConfig, K8sBundleConfig, K8sPsatConfig, KeyManagerConfig, ServerConfig,
};
use crate::datastore::DataStore;
use crate::keymanager::KeyManager;
use crate::kube::{self, KubeClient, KubeError};
use crate::tls;

/// How often expired join tokens are pruned.
pub const JOIN_TOKEN_PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How long shutdown waits for in-flight calls.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The data store could not be opened.
    #[error("cannot open the data store at {path}: {reason}")]
    DataStore {
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key manager could not be opened.
    #[error("cannot open the key manager: {0}")]
    KeyManager(#[from] crate::keymanager::KeyError),
    /// The CA could not start.
    #[error("cannot start the CA: {0}")]
    Ca(#[from] crate::ca::CaError),
    /// The UpstreamAuthority's files are missing or wrong.
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listener could not be opened.
    #[error("cannot listen on {what} {address}: {source}")]
    Listen {
        /// `TCP`, `the admin socket`, `the health listener`.
        what: &'static str,
        /// The address or path.
        address: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The admin socket is in use by a live server, or its path is unusable.
    #[error("admin socket {path}: {reason}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A node attestor could not be set up (a bad kubeconfig, ...).
    #[error("cannot set up NodeAttestor {name:?}: {reason}")]
    NodeAttestor {
        /// The attestor.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A notifier could not be set up (a bad kubeconfig, ...).
    #[error("cannot set up Notifier {name:?}: {reason}")]
    Notifier {
        /// The notifier.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// Federation or OIDC discovery could not start.
    #[error(transparent)]
    Federation(#[from] crate::federation::FederationError),
    /// A listener failed while serving.
    #[error("serving {what} failed: {reason}")]
    Serve {
        /// Which listener.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    tcp_addr: SocketAddr,
    socket_path: PathBuf,
    ca: Arc<Ca>,
    state: Arc<ApiState>,
    shutdown: watch::Sender<bool>,
    servers: Vec<(
        &'static str,
        JoinHandle<Result<(), tonic::transport::Error>>,
    )>,
    background: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// The address the TCP API is bound to (the real port with `bind_port = 0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The admin socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The current trust bundle.
    pub fn bundle(&self) -> TrustBundle {
        self.ca.bundle()
    }

    /// The CA.
    pub fn ca(&self) -> &Arc<Ca> {
        &self.ca
    }

    /// Stops accepting, lets in-flight calls finish (up to
    /// [`SHUTDOWN_GRACE`]), stops background tasks and removes the socket.
    pub async fn shutdown(self) -> Result<(), RunError> {
        tracing::info!("stopping the server");
        self.state.set_serving(false);
        self.state.changes().close();
        let _ = self.shutdown.send(true);
        let mut result = Ok(());
        for (what, handle) in self.servers {
            let abort = handle.abort_handle();
            match tokio::time::timeout(SHUTDOWN_GRACE, handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    result = Err(RunError::Serve {
                        what,
                        reason: e.to_string(),
                    })
                }
                Ok(Err(join)) if join.is_cancelled() => {}
                Ok(Err(join)) => {
                    result = Err(RunError::Serve {
                        what,
                        reason: join.to_string(),
                    })
                }
                Err(_) => {
                    tracing::warn!(
                        listener = what,
                        "calls still in flight after the grace period; closing them"
                    );
                    abort.abort();
                }
            }
        }
        for task in &self.background {
            task.abort();
        }
        // Wait until the aborted tasks are gone, so that nothing holds the
        // data store (and its file lock) once this returns.
        for task in self.background {
            let _ = task.await;
        }
        remove_socket(&self.socket_path);
        tracing::info!("server stopped");
        result
    }

    /// Waits until a listener stops on its own (an error), returning it.
    async fn wait_for_failure(&mut self) -> RunError {
        let futures = self
            .servers
            .iter_mut()
            .map(|(what, handle)| Box::pin(async move { (*what, handle.await) }));
        let ((what, outcome), _, _) = futures::future::select_all(futures).await;
        let reason = match outcome {
            Ok(Ok(())) => "stopped unexpectedly".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        RunError::Serve { what, reason }
    }
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(config: ServerConfig) -> Result<(), RunError> {
    let mut server = start(config).await?;
    let stopped = tokio::select! {
        () = shutdown_signal() => None,
        err = server.wait_for_failure() => Some(err),
    };
    let result = server.shutdown().await;
    match stopped {
        Some(err) => Err(err),
        None => result,
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("received SIGTERM"),
                _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Opens the data store named by the config.
/// Opens the configured datastore (also used by `datastore import`).
pub(crate) async fn open_datastore(
    config: &DataStoreConfig,
) -> Result<Arc<dyn DataStore>, RunError> {
    match config {
        DataStoreConfig::Sled { path } => {
            let store = crate::datastore::sled::SledDataStore::open(path).map_err(|e| {
                RunError::DataStore {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            Ok(Arc::new(store))
        }
        DataStoreConfig::Sql(options) => {
            let store = crate::datastore::sql::SqlDataStore::open(options)
                .await
                .map_err(|e| RunError::DataStore {
                    path: PathBuf::from(crate::datastore::sql::options::redact(&options.url)),
                    reason: e.to_string(),
                })?;
            Ok(Arc::new(store))
        }
    }
}

/// Builds the `k8s_psat` attestor: one API client per cluster, from its
/// kubeconfig or the in-cluster service account.
fn k8s_psat_attestor(
    trust_domain: &spinel_spiffe::TrustDomain,
    config: &K8sPsatConfig,
) -> Result<K8sPsatAttestor, RunError> {
    let mut attestor = K8sPsatAttestor::new(trust_domain.clone());
    for (name, cluster) in &config.clusters {
        let client =
            kube::connect(cluster.kube_config_file.as_deref()).map_err(|e: KubeError| {
                RunError::NodeAttestor {
                    name: k8s_psat::NAME,
                    reason: format!("cluster {name:?}: {e}"),
                }
            })?;
        tracing::info!(cluster = %name, api_server = %client.server(), "k8s_psat cluster configured");
        attestor = attestor.with_cluster(name.clone(), cluster.checks.clone(), Arc::new(client));
    }
    Ok(attestor)
}

/// Reads the `x509pop` attestor's CA bundle files.
fn x509pop_bundle(
    config: &crate::config::X509popConfig,
) -> Result<crate::attestor::node::x509pop::CaBundle, RunError> {
    let bundle = crate::attestor::node::x509pop::CaBundle::from_pem_files(&config.ca_bundle_paths)
        .map_err(|e| RunError::NodeAttestor {
            name: crate::attestor::node::x509pop::NAME,
            reason: e.to_string(),
        })?;
    tracing::info!(
        roots = bundle.len(),
        agent_path_template = %config.agent_path_template.as_str(),
        "NodeAttestor \"x509pop\" configured"
    );
    Ok(bundle)
}

/// Makes the `k8sbundle` notifier's API client, from its kubeconfig or
/// the in-cluster service account.
fn k8sbundle_client(config: &K8sBundleConfig) -> Result<KubeClient, RunError> {
    let client =
        kube::connect(config.kube_config_file.as_deref()).map_err(|e| RunError::Notifier {
            name: "k8sbundle",
            reason: e.to_string(),
        })?;
    tracing::info!(
        api_server = %client.server(),
        namespace = %config.namespace,
        config_map = %config.config_map,
        key = %config.config_map_key,
        "Notifier \"k8sbundle\" configured"
    );
    Ok(client)
}

/// Starts the `k8sbundle` notifier's two tasks (see [`crate::notifier`]).
fn start_k8sbundle(
    config: &K8sBundleConfig,
    client: KubeClient,
    ca: &Arc<Ca>,
    datastore: &Arc<dyn DataStore>,
    state: &Arc<ApiState>,
) -> [JoinHandle<()>; 2] {
    use crate::notifier::{publish, watch_bundle_pem, ConfigMapTarget};
    let (tx, rx) = watch::channel(None);
    let target = ConfigMapTarget {
        namespace: config.namespace.clone(),
        config_map: config.config_map.clone(),
        key: config.config_map_key.clone(),
    };
    [
        tokio::spawn(watch_bundle_pem(
            ca.clone(),
            datastore.clone(),
            state.changes().clone(),
            tx,
        )),
        tokio::spawn(publish(Arc::new(client), target, rx)),
    ]
}

/// Opens the key manager named by the config.
fn open_key_manager(config: &KeyManagerConfig) -> Result<Arc<dyn KeyManager>, RunError> {
    Ok(match config {
        KeyManagerConfig::Disk { keys_path } => {
            Arc::new(crate::keymanager::DiskKeyManager::open(keys_path)?)
        }
        KeyManagerConfig::Memory => Arc::new(crate::keymanager::MemoryKeyManager::new()),
    })
}

/// The CA settings, with the UpstreamAuthority's files loaded and checked.
fn ca_config(config: &ServerConfig) -> Result<crate::ca::CaConfig, RunError> {
    let mut ca = config.ca.clone();
    ca.server_id = server_id(&config.data_dir)?;
    if let Some(disk) = &config.plugins.upstream_authority {
        let upstream = crate::upstream::load_disk(disk)?;
        tracing::info!(upstream_authority_id = %upstream.authority_id(), "UpstreamAuthority \"disk\": the X.509 CA is an intermediate");
        ca.upstream = Some(upstream);
    }
    Ok(ca)
}

/// Follows the stored bundle's sequence number (which the change refresher
/// reads every half second): when another server on the same datastore
/// changed the bundle (its CA rotated, it joined), the CA serves and
/// trusts the new one.
fn follow_shared_bundle(ca: Arc<Ca>, changes: &crate::notify::Changes) -> JoinHandle<()> {
    let mut marks = changes.subscribe();
    tokio::spawn(async move {
        let mut seen = marks.borrow_and_update().bundle_sequence;
        while marks.changed().await.is_ok() {
            let sequence = marks.borrow_and_update().bundle_sequence;
            if sequence == seen || sequence == ca.bundle().sequence {
                seen = sequence;
                continue;
            }
            seen = sequence;
            if let Err(e) = ca.refresh_shared_bundle().await {
                tracing::warn!(error = %e, "cannot read the trust bundle another server changed");
            }
        }
    })
}

/// The file in `data_dir` that names this server's CA journal.
pub const SERVER_ID_FILE: &str = "server_id";

/// This server's ID: the name of its CA journal in the datastore, which
/// servers sharing one database each keep (each has its own CA and keys).
/// Made once, 16 random bytes in hex, and kept in `data_dir/server_id`
/// (mode 0600) beside the keys it goes with.
pub(crate) fn server_id(data_dir: &Path) -> Result<String, RunError> {
    let path = data_dir.join(SERVER_ID_FILE);
    let fail = |reason: String| RunError::DataStore {
        path: path.clone(),
        reason,
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail(format!("cannot read the server ID: {e}"))),
    };
    match existing.as_deref().map(str::trim) {
        // Empty: a first start killed between creating the file and
        // writing it; no journal can name an ID never written.
        None | Some("") => {
            let mut bytes = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| fail("no randomness for a server ID".into()))?;
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if existing.is_some() {
                std::fs::remove_file(&path).map_err(|e| fail(e.to_string()))?;
            }
            write_server_id(&path, &id).map_err(|e| fail(e.to_string()))?;
            tracing::info!(server_id = %id, "made this server's ID (names its CA journal in the datastore)");
            Ok(id)
        }
        Some(id) if id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Ok(id.to_owned())
        }
        Some(_) => Err(fail(
            "the server ID must be 1 to 64 letters, digits or '-' (delete the file to make a new one, which starts a new CA)".into(),
        )),
    }
}

/// Creates the server ID file (never over an existing file or link), mode
/// 0600, and makes it durable before the CA journal can name it.
fn write_server_id(path: &Path, id: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{id}\n").as_bytes())?;
    file.sync_all()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Starts every part of the server and returns once the listeners are up.
pub async fn start(config: ServerConfig) -> Result<RunningServer, RunError> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let fd_limit = spinel_transport::limits::raise_fd_limit();
    let tcp_limits = config.connection_limits.within_fd_limit(fd_limit);
    if tcp_limits != config.connection_limits {
        tracing::warn!(
            open_files = ?fd_limit,
            max_connections = tcp_limits.max_connections,
            "connection_limits.max_connections lowered to fit the open-file limit"
        );
    }
    let clock = Clock::system();
    // Node attestors that read files (kubeconfigs) fail here, before
    // anything is opened or started.
    let psat = config
        .plugins
        .k8s_psat
        .as_ref()
        .map(|psat| k8s_psat_attestor(&config.trust_domain, psat))
        .transpose()?;
    let x509pop_bundle = config
        .plugins
        .x509pop
        .as_ref()
        .map(|x| x509pop_bundle(x).map(|bundle| (bundle, x.agent_path_template.clone())))
        .transpose()?;
    let k8sbundle = config
        .plugins
        .k8sbundle
        .as_ref()
        .map(|c| k8sbundle_client(c).map(|client| (c, client)))
        .transpose()?;
    create_dir(&config.data_dir).map_err(|e| RunError::DataStore {
        path: config.data_dir.clone(),
        reason: format!("cannot create the data directory: {e}"),
    })?;
    let datastore = open_datastore(&config.plugins.datastore).await?;
    let keys = open_key_manager(&config.plugins.key_manager)?;
    let ca = Ca::start(ca_config(&config)?, keys, datastore.clone(), clock.clone()).await?;
    let mut background = vec![tokio::spawn(ca.clone().run_rotation())];

    let mut attestors = NodeAttestors::new();
    // As in SPIRE, join tokens are always accepted: they exist only when an
    // admin creates one.
    attestors.insert(Arc::new(JoinTokenAttestor::new(
        config.trust_domain.clone(),
        datastore.clone(),
        clock.clone(),
    )));
    if let Some(psat) = psat {
        attestors.insert(Arc::new(psat));
    }
    if let Some((bundle, template)) = x509pop_bundle {
        attestors.insert(Arc::new(X509popAttestor::new(
            config.trust_domain.clone(),
            bundle,
            template,
            clock.clone(),
        )));
    }
    let state = ApiState::new(
        ApiSettings {
            trust_domain: config.trust_domain.clone(),
            admin_ids: config.admin_ids.clone(),
            agent_ttl: config.agent_ttl,
        },
        datastore.clone(),
        ca.clone(),
        attestors,
        clock.clone(),
    );
    let routes = api::routes(state.clone());
    background.push(crate::notify::spawn_refresher(
        state.changes().clone(),
        datastore.clone(),
        config.trust_domain.to_string(),
    ));
    background.push(follow_shared_bundle(ca.clone(), state.changes()));
    background.push(tokio::spawn({
        let state = state.clone();
        async move { state.warm().await }
    }));
    if let Some((k8sbundle, client)) = k8sbundle {
        background.extend(start_k8sbundle(k8sbundle, client, &ca, &datastore, &state));
    }
    let audit = api::audit::AuditLayer::new(config.audit_log_enabled);
    let notify = crate::notify::NotifyLayer::new(state.changes().clone(), api::mutates);

    // TLS material.
    let provider = tls::provider();
    let dns_names = server_dns_names(&config.bind_address);
    let (key, not_after) = tls::issue_server_key(&ca, &dns_names, &provider)?;
    let resolver = Arc::new(tls::ServerCertResolver::new(key));
    let client_trust = ClientTrust::new(ca.watch_bundle(), provider.clone(), clock.clone());
    let tls_config = tls::server_config(provider, resolver.clone(), client_trust.clone())?;
    background.push(tokio::spawn(tls::maintain(
        ca.clone(),
        clock.clone(),
        dns_names,
        not_after,
        resolver,
    )));

    // Listeners.
    let address = format!("{}:{}", config.bind_address, config.bind_port);
    let tcp = TcpListener::bind((config.bind_address.as_str(), config.bind_port))
        .await
        .map_err(|source| RunError::Listen {
            what: "TCP",
            address: address.clone(),
            source,
        })?;
    let tcp_addr = tcp.local_addr().map_err(|source| RunError::Listen {
        what: "TCP",
        address,
        source,
    })?;
    let unix = bind_socket(&config.socket_path).await?;
    let (shutdown, _) = watch::channel(false);

    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
    let rpc = crate::metrics::metrics().rpc.layer();
    let tcp_server = spinel_transport::server::builder(true)
        .layer(rpc.clone())
        .layer(audit.clone())
        .layer(notify.clone())
        .add_routes(routes.clone())
        .serve_with_incoming_shutdown(
            api::transport::tls_incoming(tcp, acceptor, tcp_limits, client_trust),
            stopped(shutdown.subscribe()),
        );
    let unix_server = spinel_transport::server::builder(false)
        .layer(rpc)
        .layer(audit)
        .layer(notify)
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            api::transport::local_incoming(unix),
            stopped(shutdown.subscribe()),
        );
    let servers = vec![
        ("TCP", tokio::spawn(tcp_server)),
        ("the admin socket", tokio::spawn(unix_server)),
    ];

    if config.health_checks.listener_enabled {
        let h = &config.health_checks;
        let address = format!("{}:{}", h.bind_address, h.bind_port);
        let listener = TcpListener::bind((h.bind_address.as_str(), h.bind_port))
            .await
            .map_err(|source| RunError::Listen {
                what: "the health listener",
                address: address.clone(),
                source,
            })?;
        tracing::info!(address = %address, "serving health checks");
        let ready_state = state.clone();
        let ready: health_http::Readiness = Arc::new(move || {
            let state = ready_state.clone();
            Box::pin(async move { state.healthy().await })
        });
        let mut stop = shutdown.subscribe();
        background.push(tokio::spawn(health_http::serve(
            listener,
            health_http::HealthPaths {
                live: h.live_path.clone(),
                ready: h.ready_path.clone(),
            },
            ready,
            async move {
                let _ = stop.wait_for(|stop| *stop).await;
            },
        )));
    }
    if let Some(prometheus) = &config.telemetry.prometheus {
        let render = crate::metrics::render(
            config.telemetry.prefix_or(crate::metrics::DEFAULT_PREFIX),
            datastore.clone(),
            ca.clone(),
        );
        let mut stop = shutdown.subscribe();
        let (_, task) = spinel_telemetry::start(prometheus, render, async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(|source| RunError::Listen {
            what: "the metrics listener",
            address: format!("{}:{}", prometheus.host, prometheus.port),
            source,
        })?;
        background.push(task);
    }
    background.extend(start_federation(&config, &ca, &datastore, &state, &clock, &shutdown).await?);
    background.push(tokio::spawn(prune_join_tokens(datastore, clock)));

    // One line per API listener, with SPIRE's message and fields.
    tracing::info!(network = "tcp", address = %tcp_addr, trust_domain = %config.trust_domain, "Starting Server APIs");
    tracing::info!(network = "unix", address = %config.socket_path.display(), trust_domain = %config.trust_domain, "Starting Server APIs");
    tracing::info!("listening on {tcp_addr}");
    Ok(RunningServer {
        tcp_addr,
        socket_path: config.socket_path,
        ca,
        state,
        shutdown,
        servers,
        background,
    })
}

/// Starts the federation poller, the bundle endpoint and OIDC discovery
/// (the last two when configured); returns their tasks.
async fn start_federation(
    config: &ServerConfig,
    ca: &Arc<Ca>,
    datastore: &Arc<dyn DataStore>,
    state: &Arc<ApiState>,
    clock: &Clock,
    shutdown: &watch::Sender<bool>,
) -> Result<Vec<JoinHandle<()>>, RunError> {
    use crate::federation::{self, fetch, BundleEndpoint, Federation, FederationError};
    let mut tasks = Vec::new();
    let fed = &config.federation;
    let extra_roots = match &fed.web_pki_roots_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| FederationError::CertFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
        }
        None => Vec::new(),
    };
    let federation = Federation::new(datastore.clone(), fetch::web_roots(&extra_roots));
    let configured: Vec<_> = fed
        .federates_with
        .iter()
        .map(federation::stored_from_config)
        .collect();
    federation.store_configured(&configured).await?;
    state.attach_federation(federation.clone());
    tasks.push(tokio::spawn(federation.run()));

    if let Some(endpoint_config) = &fed.bundle_endpoint {
        let endpoint = BundleEndpoint::bind(endpoint_config.clone(), ca).await?;
        if let Some(addr) = endpoint.local_addr() {
            tracing::info!(address = %addr, refresh_hint = ?endpoint_config.refresh_hint, "Serving bundle endpoint");
        }
        tasks.push(tokio::spawn(endpoint.serve(
            ca.clone(),
            datastore.clone(),
            clock.clone(),
            shutdown.subscribe(),
        )));
    }
    if let Some(oidc_config) = &config.oidc_discovery {
        let oidc = crate::oidc::OidcDiscovery::bind(oidc_config.clone()).await?;
        if let Some(addr) = oidc.local_addr() {
            tracing::info!(address = %addr, issuer = ?config.ca.jwt_issuer, "Serving OIDC discovery");
        }
        tasks.push(tokio::spawn(oidc.serve(
            ca.clone(),
            config.ca.jwt_issuer.clone(),
            shutdown.subscribe(),
        )));
    }
    Ok(tasks)
}

/// Resolves once `rx` reads `true` (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// DNS SANs of the server certificate: `localhost`, and the bind address
/// when it is a host name.
fn server_dns_names(bind_address: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    if bind_address.parse::<std::net::IpAddr>().is_err()
        && bind_address != "localhost"
        && crate::api::is_dns_name(bind_address)
    {
        names.push(bind_address.to_owned());
    }
    names
}

async fn prune_join_tokens(datastore: Arc<dyn DataStore>, clock: Clock) {
    let mut ticker = tokio::time::interval(JOIN_TOKEN_PRUNE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match datastore.prune_join_tokens(clock.unix_seconds()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "expired join tokens pruned"),
            Err(e) => tracing::warn!(error = %e, "cannot prune expired join tokens"),
        }
    }
}

pub(crate) fn create_dir(path: &Path) -> io::Result<()> {
    if path.as_os_str().is_empty() || path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Binds the admin socket (see the module documentation for the rules).
async fn bind_socket(path: &Path) -> Result<UnixListener, RunError> {
    let fail = |reason: String| RunError::Socket {
        path: path.to_owned(),
        reason,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() && tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(fail("another server is already serving on it".into()));
        }
    }
    let stale = std::fs::symlink_metadata(path).is_ok();
    let listener = unix_socket::bind(path, SocketModes::SERVER_ADMIN).map_err(|e| match e {
        BindError::CreateDir { dir, source, .. } => fail(format!(
            "cannot create its directory {}: {source}",
            dir.display()
        )),
        BindError::Untrusted { source, .. } => fail(source.to_string()),
        BindError::NotASocket { .. } => fail("the path exists and is not a socket".into()),
        BindError::Bind { source, .. } => RunError::Listen {
            what: "the admin socket",
            address: path.display().to_string(),
            source,
        },
        other => fail(other.to_string()),
    })?;
    if stale {
        tracing::info!(socket_path = %path.display(), "replaced a stale admin socket");
    }
    Ok(listener)
}

fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(socket_path = %path.display(), error = %e, "cannot remove the admin socket");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_server_id_is_made_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let id = server_id(dir.path()).unwrap();
        assert_eq!(id.len(), 32);
        let path = dir.path().join(SERVER_ID_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(server_id(dir.path()).unwrap(), id, "kept across starts");
        // Killed between creating and writing it: made again.
        std::fs::write(&path, "").unwrap();
        let again = server_id(dir.path()).unwrap();
        assert!(!again.is_empty() && again != id);
        std::fs::write(&path, "not/an id\n").unwrap();
        let err = server_id(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("server_id") && err.contains("1 to 64"),
            "{err}"
        );
    }
}
