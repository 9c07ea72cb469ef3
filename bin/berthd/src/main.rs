#![forbid(unsafe_code)]
//! berthd: the Berth daemon. Parses dockerd's flags and daemon.json keys,
//! takes the data-root lock, opens the engine and serves the Docker Engine
//! API on its sockets (tcp:// ones over TLS, see `tls`) until SIGTERM or SIGINT.

mod config;
mod tls;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::Parser;

use crate::config::{DaemonConfig, Flags, Host};

fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    let config = match DaemonConfig::resolve(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    // Bad TLS files stop the daemon here, before it takes the data root or listens.
    let tls = match config.tls.as_ref().map(tls::server_config).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    let filter = tracing_subscriber::EnvFilter::new(if config.debug {
        "debug"
    } else {
        config.log_level.as_str()
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berthd: start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config, tls)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Holds the data-root lock and removes the pidfile and sockets on drop.
struct Running {
    _lock: nix::fcntl::Flock<std::fs::File>,
    cleanup: Vec<PathBuf>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for p in &self.cleanup {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn lock_data_root(data_root: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(data_root)
        .with_context(|| format!("create data root {}", data_root.display()))?;
    std::fs::set_permissions(data_root, std::fs::Permissions::from_mode(0o710))
        .with_context(|| format!("chmod {}", data_root.display()))?;
    let path = data_root.join("berthd.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another berthd is already running with data root {} (it holds {})",
            data_root.display(),
            path.display()
        )
    })
}

fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

async fn bind_unix(path: &Path, group: &str) -> Result<tokio::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{} is in use by another daemon", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("remove stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("listen on {}", path.display()))?;
    // Only root, and members of the daemon's group when it exists, may talk to it.
    match group_id(group) {
        Some(gid) => {
            nix::unistd::chown(path, Some(0.into()), Some(gid.into()))
                .with_context(|| format!("chown {}", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        }
        None => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)),
    }
    .with_context(|| format!("chmod {}", path.display()))?;
    Ok(listener)
}

async fn run(config: DaemonConfig, tls: Option<Arc<rustls::ServerConfig>>) -> Result<()> {
    let lock = lock_data_root(&config.data_root)?;
    let mut running = Running {
        _lock: lock,
        cleanup: Vec::new(),
    };
    let engine = Arc::new(
        berth_engine::Engine::open(berth_engine::EngineConfig {
            data_root: config.data_root.clone(),
            exec_root: config.exec_root.clone(),
            storage_driver: config.storage_driver.clone(),
            containers: container_settings(&config)?,
            registry: config.registry.clone(),
            transfers: berth_engine::registry_client::TransferLimits {
                downloads: config.max_concurrent_downloads,
                uploads: config.max_concurrent_uploads,
            },
        })
        .context("open the engine")?,
    );
    if let Some(pidfile) = &config.pidfile {
        std::fs::write(pidfile, std::process::id().to_string())
            .with_context(|| format!("write pidfile {}", pidfile.display()))?;
        running.cleanup.push(pidfile.clone());
    }
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut servers = tokio::task::JoinSet::new();
    for host in &config.hosts {
        let stop = {
            let mut rx = stop_tx.subscribe();
            async move {
                let _ = rx.recv().await;
            }
        };
        match host {
            Host::Unix(path) => {
                let listener = bind_unix(path, &config.group).await?;
                running.cleanup.push(path.clone());
                tracing::info!("API listening on {host}");
                servers.spawn(berth_api::serve(listener, engine.clone(), stop));
            }
            Host::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr.as_str())
                    .await
                    .with_context(|| format!("listen on {host}"))?;
                match (&tls, &config.tls) {
                    (Some(server), Some(settings)) => {
                        let listener = berth_tls::TlsListener::new(listener, server.clone())
                            .with_context(|| format!("listen on {host}"))?;
                        if settings.verify {
                            tracing::info!(
                                "API listening on {host} (TLS, client certificates signed by {})",
                                settings.ca.display()
                            );
                        } else {
                            tracing::warn!(
                                "API listening on {host} over TLS without client certificates: anyone who can connect is root on this host"
                            );
                        }
                        servers.spawn(berth_api::serve(listener, engine.clone(), stop));
                    }
                    _ => {
                        tracing::warn!(
                            "API listening on plain {host}: anyone who can connect is root on this host"
                        );
                        servers.spawn(berth_api::serve(listener, engine.clone(), stop));
                    }
                }
            }
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("install SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        Some(done) = servers.join_next() => {
            done.context("API server task")?.context("API server")?;
        }
    }
    let _ = stop_tx.send(());
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = servers.join_next() => if next.is_none() { break },
            _ = &mut deadline => break,
        }
    }
    let live_restore = config.live_restore;
    let containers = engine.clone();
    let _ =
        tokio::task::spawn_blocking(move || containers.containers().shutdown(live_restore)).await;
    drop(running);
    Ok(())
}

/// Binaries next to berthd's own (`berth-shim`, `berth-runtime`), so a
/// build or an install keeps them together.
fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the berthd executable")?;
    let dir = exe
        .parent()
        .context("berthd's executable has no directory")?;
    let path = dir.join(name);
    if !path.is_file() {
        anyhow::bail!("{name} is missing: expected it at {}", path.display());
    }
    Ok(path)
}

/// A runtime path from daemon.json: absolute, or a name looked up in PATH.
fn runtime_path(name: &str, path: &std::path::Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(path))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "daemon.json: runtime {name}: {} not found in PATH",
                path.display()
            )
        })
}

fn container_settings(
    config: &DaemonConfig,
) -> Result<berth_engine::containers::ContainerSettings> {
    use berth_engine::containers::RuntimeSpec;
    let mut runtimes = std::collections::BTreeMap::new();
    runtimes.insert(
        "berth".to_string(),
        RuntimeSpec {
            path: sibling_binary("berth-runtime")?,
            args: Vec::new(),
        },
    );
    for (name, (path, args)) in &config.runtimes {
        runtimes.insert(
            name.clone(),
            RuntimeSpec {
                path: runtime_path(name, path)?,
                args: args.clone(),
            },
        );
    }
    let default_runtime = config
        .default_runtime
        .clone()
        .unwrap_or_else(|| "berth".to_string());
    if !runtimes.contains_key(&default_runtime) {
        anyhow::bail!("default-runtime {default_runtime:?} is not a configured runtime");
    }
    let log_defaults = berth_logs::LogConfig {
        driver: config
            .log_driver
            .clone()
            .unwrap_or_else(|| "json-file".to_string()),
        opts: config.log_opts.clone(),
    };
    berth_logs::validate(&log_defaults).context("daemon.json: log-driver/log-opts")?;
    Ok(berth_engine::containers::ContainerSettings {
        shim_binary: sibling_binary("berth-shim")?,
        runtimes,
        default_runtime,
        log_defaults,
        cgroup_parent: config
            .cgroup_parent
            .clone()
            .unwrap_or_else(|| "berth".to_string()),
        init_path: config.init_path.clone(),
        live_restore: config.live_restore,
    })
}
