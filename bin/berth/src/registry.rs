//! `berth registry serve`: runs the registry server of `berth_registry` in the
//! foreground until SIGINT or SIGTERM; `berth registry gc`: collects garbage
//! in a root no server is using. Neither needs a daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_registry::config::{parse_duration, FileConfig, LOG_LEVELS};
use clap::{Args, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use crate::client::Failure;

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API (Docker registry v2) from a directory
    Serve(Box<ServeArgs>),
    /// Remove blobs no manifest refers to from a registry root no server is using
    Gc(GcArgs),
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

#[derive(Args)]
pub struct ServeArgs {
    /// YAML (or JSON) file of settings, one key per flag (`gc-interval: 1h`);
    /// flags given too override it
    #[arg(long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long = "addr", value_name = "HOST:PORT")]
    addr: Option<SocketAddr>,
    /// Directory holding the registry's blobs, repositories and uploads
    #[arg(long = "root", value_name = "DIR")]
    root: Option<PathBuf>,
    /// error, warn, info, debug or trace [default: RUST_LOG, else info]
    #[arg(long = "log-level", value_name = "LEVEL", value_parser = clap::builder::PossibleValuesParser::new(LOG_LEVELS))]
    log_level: Option<String>,
    /// htpasswd file of bcrypt entries; every request then needs basic auth
    /// (with --token-config: the users the token endpoint knows)
    #[arg(long = "htpasswd", value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// Token auth configuration (JSON: service, issuer, key, access rules);
    /// every request then needs a bearer token from the server's token endpoint
    #[arg(long = "token-config", value_name = "FILE")]
    token_config: Option<PathBuf>,
    /// Run garbage collection this often while serving (seconds, or 30m, 1h…)
    #[arg(long = "gc-interval", value_name = "DURATION", value_parser = duration_arg)]
    gc_interval: Option<Duration>,
    /// Spare unreferenced blobs used more recently than this (pushes in
    /// flight) [default: 3600]
    #[arg(long = "gc-grace", value_name = "DURATION", value_parser = duration_arg)]
    gc_grace: Option<Duration>,
    /// Garbage collection also deletes untagged manifests that no tagged
    /// index names and that refer to no kept manifest
    #[arg(long = "gc-delete-untagged")]
    gc_delete_untagged: bool,
    /// Remove upload sessions idle for this long [default: 24h]
    #[arg(long = "upload-purge-after", value_name = "DURATION", value_parser = duration_arg)]
    upload_purge_after: Option<Duration>,
    /// Refuse larger manifests [default: 4194304]
    #[arg(long = "max-manifest-bytes", value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    max_manifest_bytes: Option<u64>,
    /// Refuse (and discard) blob uploads larger than this [default: no limit]
    #[arg(long = "max-blob-bytes", value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    max_blob_bytes: Option<u64>,
    /// PEM certificate to serve TLS with (needs --tls-key)
    #[arg(long = "tls-cert", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long = "tls-key", value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

#[derive(Args)]
pub struct GcArgs {
    /// The registry's directory (what `serve --root` names)
    #[arg(long = "root", value_name = "DIR")]
    root: PathBuf,
    /// Print what would be removed, remove nothing
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Also delete untagged manifests that no tagged index names and that
    /// refer to no kept manifest
    #[arg(long = "delete-untagged")]
    delete_untagged: bool,
    /// Spare what was used more recently than this (seconds, or 30m, 1h…)
    #[arg(long = "grace", value_name = "DURATION", value_parser = duration_arg, default_value = "0")]
    grace: Duration,
}

pub async fn run(command: RegistryCommand) -> Result<(), Failure> {
    match command {
        RegistryCommand::Serve(args) => serve(*args).await,
        RegistryCommand::Gc(args) => gc(args).await,
    }
}

/// The file's settings under the flags'.
fn merge(args: ServeArgs) -> Result<(berth_registry::ServeConfig, Option<String>), String> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    let root = args
        .root
        .or(file.root)
        .ok_or("no registry root: give --root DIR (or `root:` in the --config file)".to_owned())?;
    let tls = match (
        args.tls_cert.or(file.tls_cert),
        args.tls_key.or(file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err("tls-cert needs tls-key too".into()),
        (None, Some(_)) => return Err("tls-key needs tls-cert too".into()),
    };
    let delete_untagged = args.gc_delete_untagged || file.gc_delete_untagged.unwrap_or(false);
    let gc_interval = args.gc_interval.or(file.gc_interval);
    if delete_untagged && gc_interval.is_none() {
        return Err("gc-delete-untagged needs gc-interval (online garbage collection)".into());
    }
    let grace = args
        .gc_grace
        .or(file.gc_grace)
        .unwrap_or(Duration::from_secs(3600));
    let max_manifest_bytes = match args.max_manifest_bytes {
        Some(n) => usize::try_from(n).map_err(|_| "max-manifest-bytes: too large".to_owned())?,
        None => file
            .max_manifest_bytes
            .unwrap_or(berth_registry::MANIFEST_LIMIT),
    };
    let config = berth_registry::ServeConfig {
        addr: args
            .addr
            .or(file.addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5000))),
        root,
        htpasswd: args.htpasswd.or(file.htpasswd),
        tls,
        token_config: args.token_config.or(file.token_config),
        gc: gc_interval.map(|interval| berth_registry::GcConfig {
            interval: interval.max(Duration::from_secs(1)),
            grace,
            delete_untagged,
        }),
        upload_purge_after: args
            .upload_purge_after
            .or(file.upload_purge_after)
            .unwrap_or(berth_registry::DEFAULT_PURGE_AFTER),
        max_manifest_bytes,
        max_blob_bytes: args.max_blob_bytes.or(file.max_blob_bytes),
    };
    Ok((config, args.log_level.or(file.log_level)))
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let (config, log_level) = merge(args).map_err(Failure::Message)?;
    // Errors and garbage collection reports go to stderr.
    let filter = match log_level {
        Some(level) => tracing_subscriber::EnvFilter::new(level),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
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

/// Prints what it removes as Docker's `registry garbage-collect` does, then
/// a summary with the bytes freed.
async fn gc(args: GcArgs) -> Result<(), Failure> {
    let options = berth_registry::GcOptions {
        grace: args.grace,
        delete_untagged: args.delete_untagged,
        dry_run: args.dry_run,
    };
    let root = args.root;
    let report =
        tokio::task::spawn_blocking(move || berth_registry::collect_garbage(&root, &options))
            .await
            .map_err(|e| Failure::Message(e.to_string()))?
            .map_err(|e| Failure::Message(e.to_string()))?;
    for (repo, digest) in &report.removed_manifests {
        println!("manifest eligible for deletion: {repo}@{digest}");
    }
    for (digest, size) in &report.removed_blobs {
        println!("blob eligible for deletion: {digest} ({size} bytes)");
    }
    println!(
        "{} blobs marked, {} blobs and {} manifests eligible for deletion",
        report.marked, report.removed, report.untagged_removed
    );
    if args.dry_run {
        println!(
            "dry run: nothing deleted; {} bytes would be freed",
            report.bytes
        );
    } else {
        println!("{} bytes freed", report.bytes);
    }
    Ok(())
}
