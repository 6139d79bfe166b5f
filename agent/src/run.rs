//! Running the agent: config -> identity -> first sync -> Workload API.
//!
//! Start-up order: load the config, set up logging, load the agent SVID
//! from `data_dir` or attest with the join token (a `k8s_psat` agent always
//! attests, with a fresh projected token), sync once with the server
//! (so the first workload finds its SVIDs), then serve the Workload API and
//! keep syncing. When the Workload API is up the agent logs one line at info
//! containing `Starting Workload API` and the socket path; harnesses may wait
//! for it, or poll `spinel-agent healthcheck`.
//!
//! SIGINT and SIGTERM stop the agent gracefully and remove the socket. So
//! does a refusal by the server (banned, or evicted with no way to attest
//! again): the agent logs SPIRE's `Agent is banned: removing SVID and
//! shutting down` (or the eviction's equivalent) and exits with an error,
//! as SPIRE's agent does, so that systemd or a liveness probe restarts it.

use std::sync::Arc;

use spinel_spiffe::Clock;
use spinel_transport::health_http;

use crate::cache::Cache;
use crate::config::{AgentConfig, HealthChecks, KeyManagerConfig};
use crate::manager::{Manager, ManagerError, Refused};
use crate::workload_api::{SelectorLog, WorkloadApi};

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The identity could not be established.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The workload attestors are misconfigured.
    #[error(transparent)]
    Attestor(#[from] crate::attestor::workload::AttestError),
    /// The Workload API could not be served.
    #[error(transparent)]
    WorkloadApi(#[from] crate::workload_api::Error),
    /// The server refuses this agent for good (banned, or evicted without
    /// a way to attest again): it exits so that it is restarted.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// A listener could not be bound.
    #[error("cannot listen on {what} {address}: {source}")]
    Listen {
        /// `the health listener`, `the metrics listener`.
        what: &'static str,
        /// The address.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A directory could not be created or may not be used.
    #[error("cannot use {path}: {reason}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(config: AgentConfig) -> Result<(), RunError> {
    let fd_limit = spinel_transport::limits::raise_fd_limit();
    std::fs::create_dir_all(&config.data_dir).map_err(|e| RunError::Dir {
        path: config.data_dir.display().to_string(),
        reason: e.to_string(),
    })?;
    check_private_dirs(&config)?;
    let attestor = crate::attestor::workload::build(&config.workload_attestors)?;
    let clock = Clock::system();
    let cache = Cache::new(config.trust_domain.clone());
    let socket_path = config.socket_path.clone();
    let admin_socket_path = config.admin_socket_path.clone();
    let delegates = crate::admin::Delegates::new(config.authorized_delegates.iter().cloned());
    let log_selectors = config.log_selectors.clone();
    let sds = config.sds.clone();
    let limits = config.connection_limits.within_fd_limit(fd_limit);
    if limits != config.connection_limits {
        tracing::warn!(
            open_files = ?fd_limit,
            max_connections = limits.max_connections,
            "connection_limits.max_connections lowered to fit the open-file limit"
        );
    }
    // Bound first, so that `live` answers while the agent attests.
    let (health_stop_tx, health_stop_rx) = tokio::sync::watch::channel(false);
    let metrics = serve_metrics(&config, &cache, &clock, health_stop_rx.clone()).await?;
    let health = serve_health(&config.health_checks, &cache, health_stop_rx).await?;
    let manager = Manager::start(config, cache.clone(), clock.clone()).await?;
    if let Err(status) = manager.sync_once().await {
        tracing::warn!(code = ?status.code(), error = %status.message(), "first sync failed; retrying in the background");
    }
    tracing::info!(socket_path = %socket_path.display(), "Starting Workload API");
    let jwt: Arc<dyn crate::cache::JwtSvidSource> = manager.clone();
    let selector_log = match &log_selectors {
        Some(kinds) => SelectorLog::new(kinds.iter().cloned()),
        None => SelectorLog::default(),
    };
    let api =
        WorkloadApi::with_selector_log(cache, jwt, attestor, clock, selector_log).with_sds(sds);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    // A refused agent stops serving and exits, as SPIRE's does.
    let sync = {
        let (manager, stop_tx) = (manager.clone(), stop_tx.clone());
        tokio::spawn(async move {
            let refused = manager.run().await;
            tracing::error!("{refused}");
            let _ = stop_tx.send(true);
            refused
        })
    };
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let admin = match admin_socket_path {
        Some(path) => {
            let listener = crate::admin::bind(&path)?;
            let (api, stop) = (api.clone(), stopped());
            Some(tokio::spawn(async move {
                crate::admin::serve(listener, &path, api, delegates, stop).await
            }))
        }
        None => None,
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let result = crate::workload_api::serve_api(&socket_path, api, limits, stopped()).await;
    let refused = if sync.is_finished() {
        sync.await.ok()
    } else {
        sync.abort();
        None
    };
    if let Some(admin) = admin {
        match admin.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the admin API failed"),
            Err(e) => tracing::warn!(error = %e, "the admin API task failed"),
            Ok(Ok(())) => {}
        }
    }
    let _ = health_stop_tx.send(true);
    if let Some(health) = health {
        let _ = health.await;
    }
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    tracing::info!("agent stopped");
    result?;
    match refused {
        Some(refused) => Err(refused.into()),
        None => Ok(()),
    }
}

/// Starts the HTTP health listener if `health_checks.listener_enabled`:
/// live while the process runs, ready while the Workload API serves a
/// synced cache (what `grpc.health.v1` on the socket reports as
/// `SERVING`).
async fn serve_health(
    settings: &HealthChecks,
    cache: &Cache,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, RunError> {
    if !settings.listener_enabled {
        return Ok(None);
    }
    let address = format!("{}:{}", settings.bind_address, settings.bind_port);
    let listener =
        tokio::net::TcpListener::bind((settings.bind_address.as_str(), settings.bind_port))
            .await
            .map_err(|source| RunError::Listen {
                what: "the health listener",
                address: address.clone(),
                source,
            })?;
    tracing::info!(address = %address, "serving health checks");
    let cache = cache.clone();
    let ready: health_http::Readiness = Arc::new(move || {
        let ready = cache.snapshot().ready;
        Box::pin(async move { ready })
    });
    let paths = health_http::HealthPaths {
        live: settings.live_path.clone(),
        ready: settings.ready_path.clone(),
    };
    Ok(Some(tokio::spawn(health_http::serve(
        listener,
        paths,
        ready,
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        },
    ))))
}

/// Starts the Prometheus metrics listener if `telemetry { Prometheus }`
/// is configured (and logs the telemetry keys that are ignored).
async fn serve_metrics(
    config: &AgentConfig,
    cache: &Cache,
    clock: &Clock,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, RunError> {
    let telemetry = &config.telemetry;
    for warning in &telemetry.warnings {
        tracing::warn!("{warning}");
    }
    let Some(prometheus) = &telemetry.prometheus else {
        return Ok(None);
    };
    let render = crate::metrics::render(
        telemetry.prefix_or(crate::metrics::DEFAULT_PREFIX),
        cache.clone(),
        clock.clone(),
    );
    let (_, task) = spinel_telemetry::start(prometheus, render, async move {
        let _ = stop.wait_for(|stop| *stop).await;
    })
    .await
    .map_err(|source| RunError::Listen {
        what: "the metrics listener",
        address: format!("{}:{}", prometheus.host, prometheus.port),
        source,
    })?;
    Ok(Some(task))
}

/// Refuses, at start, a `data_dir` or key directory another user could
/// change (every key-file write would refuse it anyway), and an admin
/// socket whose directory is, once symbolic links and `..` are resolved,
/// the Workload API socket's directory or inside it.
fn check_private_dirs(config: &AgentConfig) -> Result<(), RunError> {
    let mut dirs = vec![config.data_dir.as_path()];
    if let KeyManagerConfig::Disk { directory } = &config.key_manager {
        dirs.extend(Some(directory.as_path()).filter(|d| d.exists()));
    }
    for dir in dirs {
        spinel_spiffe::keyfile::check_dir(dir).map_err(|e| RunError::Dir {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    if let Some(admin) = &config.admin_socket_path {
        crate::config::check_admin_socket_path(&config.socket_path, admin).map_err(|reason| {
            RunError::Dir {
                path: admin.display().to_string(),
                reason,
            }
        })?;
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
