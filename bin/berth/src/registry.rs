//! `berth registry serve`: runs the registry server of `berth_registry` in the
//! foreground until SIGINT or SIGTERM. It needs no daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use crate::client::Failure;

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API (Docker registry v2) from a directory
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(
        long = "addr",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:5000"
    )]
    addr: SocketAddr,
    /// Directory holding the registry's blobs, repositories and uploads
    #[arg(long = "root", value_name = "DIR")]
    root: PathBuf,
    /// htpasswd file of bcrypt entries; every request then needs basic auth
    /// (with --token-config: the users the token endpoint knows)
    #[arg(long = "htpasswd", value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// Token auth configuration (JSON: service, issuer, key, access rules);
    /// every request then needs a bearer token from the server's token endpoint
    #[arg(long = "token-config", value_name = "FILE")]
    token_config: Option<PathBuf>,
    /// Run garbage collection every SECONDS while serving
    #[arg(long = "gc-interval", value_name = "SECONDS")]
    gc_interval: Option<u64>,
    /// Spare unreferenced blobs last used less than SECONDS ago (pushes in flight)
    #[arg(long = "gc-grace", value_name = "SECONDS", default_value_t = 3600)]
    gc_grace: u64,
    /// Garbage collection also deletes untagged manifests that no tagged
    /// index names and that refer to no kept manifest
    #[arg(long = "gc-delete-untagged", requires = "gc_interval")]
    gc_delete_untagged: bool,
    /// PEM certificate to serve TLS with (needs --tls-key)
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub async fn run(command: RegistryCommand) -> Result<(), Failure> {
    let RegistryCommand::Serve(args) = command;
    let config = berth_registry::ServeConfig {
        addr: args.addr,
        root: args.root,
        htpasswd: args.htpasswd,
        tls: args.tls_cert.zip(args.tls_key),
        token_config: args.token_config,
        gc: args.gc_interval.map(|interval| berth_registry::GcConfig {
            interval: Duration::from_secs(interval.max(1)),
            grace: Duration::from_secs(args.gc_grace),
            delete_untagged: args.gc_delete_untagged,
        }),
    };
    // Errors and garbage collection reports go to stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    berth_registry::serve(config, shutdown)
        .await
        .map_err(|e| Failure::Message(e.to_string()))
}
