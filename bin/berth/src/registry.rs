//! `berth registry serve`: runs the registry server of `berth_registry` in the
//! foreground until SIGINT or SIGTERM. It needs no daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    #[arg(long = "htpasswd", value_name = "FILE")]
    htpasswd: Option<PathBuf>,
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
    };
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
