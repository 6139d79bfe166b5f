//! Telling the application that its files changed: a signal to a pid from
//! a file, a signal to the managed `cmd` process, or `cmd` run as a hook.

use std::path::Path;

use anyhow::{bail, Context as _};
use rustix::process::{kill_process, Pid, Signal};
use tokio::process::{Child, Command};

use super::config::HelperConfig;

/// What to do after each update, and the managed process, if any.
#[derive(Debug, Default)]
pub struct Reloader {
    child: Option<Child>,
}

fn signal_pid(pid: i32, signal: Signal, what: &str) -> anyhow::Result<()> {
    let target = Pid::from_raw(pid).with_context(|| format!("{what}: {pid} is not a pid"))?;
    kill_process(target, signal).with_context(|| format!("signalling {what} (pid {pid})"))
}

fn read_pid(path: &Path) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading pid_file_name {}", path.display()))?;
    let first = text.lines().next().unwrap_or_default().trim();
    match first.parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => bail!(
            "pid_file_name {}: {first:?} is not a process ID",
            path.display()
        ),
    }
}

impl Reloader {
    /// Runs the configured reload actions; `first` is the first update
    /// (the managed process is started, not signalled).
    pub async fn after_update(&mut self, config: &HelperConfig) -> anyhow::Result<()> {
        if let (Some(path), Some(signal)) = (&config.pid_file_name, config.renew_signal) {
            let pid = read_pid(path)?;
            signal_pid(pid, signal, &format!("the process of {}", path.display()))?;
            tracing::info!(pid, signal = ?config.renew_signal_name, "signalled the process to reload");
        }
        let Some(cmd) = &config.cmd else {
            return Ok(());
        };
        match config.renew_signal {
            Some(signal) => self.signal_or_start(config, cmd, signal),
            None => run_hook(config, cmd).await,
        }
    }

    fn signal_or_start(
        &mut self,
        config: &HelperConfig,
        cmd: &str,
        signal: Signal,
    ) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(None) => {
                    let pid = child.id().and_then(|p| i32::try_from(p).ok());
                    if let Some(pid) = pid {
                        signal_pid(pid, signal, cmd)?;
                        tracing::info!(pid, cmd, signal = ?config.renew_signal_name, "signalled cmd to reload");
                        return Ok(());
                    }
                }
                Ok(Some(status)) => {
                    tracing::warn!(cmd, %status, "cmd had exited; starting it again");
                }
                Err(e) => tracing::warn!(cmd, error = %e, "cannot tell whether cmd runs"),
            }
        }
        let child = Command::new(cmd)
            .args(&config.cmd_args)
            .spawn()
            .with_context(|| format!("starting cmd {cmd}"))?;
        tracing::info!(cmd, pid = child.id(), "started cmd");
        self.child = Some(child);
        Ok(())
    }

    /// Stops the managed process (SIGTERM) when the helper stops.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = signal_pid(pid, Signal::TERM, "cmd");
            }
            let _ = child.wait().await;
        }
    }
}

async fn run_hook(config: &HelperConfig, cmd: &str) -> anyhow::Result<()> {
    let status = Command::new(cmd)
        .args(&config.cmd_args)
        .status()
        .await
        .with_context(|| format!("running cmd {cmd}"))?;
    if !status.success() {
        bail!("cmd {cmd} failed: {status}");
    }
    tracing::info!(cmd, "ran cmd after the update");
    Ok(())
}
