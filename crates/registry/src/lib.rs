//! A registry server speaking the OCI distribution spec 1.1 (the API Docker's
//! `registry:2` serves) over a filesystem store, with optional htpasswd basic
//! auth and TLS. `berth registry serve` is its command line.

#![forbid(unsafe_code)]

mod auth;
pub mod config;
mod error;
mod gc;
mod names;
mod routes;
mod storage;
mod tls;
mod token;
mod upload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use error::RegistryError;
pub use gc::GcReport;
pub use routes::MANIFEST_LIMIT;
pub use upload::DEFAULT_PURGE_AFTER;

/// What `berth registry serve` was asked to do.
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub htpasswd: Option<PathBuf>,
    /// Certificate and key, both PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// A token configuration (JSON): requests then need bearer tokens, which
    /// the server issues itself to the `htpasswd` users.
    pub token_config: Option<PathBuf>,
    /// Online garbage collection, when set.
    pub gc: Option<GcConfig>,
    /// Upload sessions idle for longer than this are removed.
    pub upload_purge_after: Duration,
    /// Larger manifests are refused.
    pub max_manifest_bytes: usize,
    /// Larger blob uploads are refused and discarded (`None`: no limit).
    pub max_blob_bytes: Option<u64>,
}

/// How often garbage collection runs, and how long an unreferenced blob is
/// spared after it was last uploaded, linked or asked for.
#[derive(Clone, Copy, Debug)]
pub struct GcConfig {
    pub interval: Duration,
    pub grace: Duration,
    /// Delete untagged manifests nothing kept refers to (see `gc.rs`).
    pub delete_untagged: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("registry root {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "registry root {path} is in use: another process (a `berth registry serve` or \
         `berth registry gc`) holds {path}/lock"
    )]
    Busy { path: String },
    #[error(transparent)]
    Htpasswd(#[from] auth::HtpasswdError),
    #[error(transparent)]
    TokenConfig(#[from] token::TokenConfigError),
    #[error("TLS {path}: {reason}")]
    Tls { path: String, reason: String },
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Checks every file the configuration names, listens, and serves until
/// `shutdown` resolves.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let root_error = |source| ServeError::Root {
        path: config.root.display().to_string(),
        source,
    };
    let mut storage = storage::Storage::open(&config.root).map_err(root_error)?;
    let _lock = lock_root(&config.root)?;
    if let Some(gc) = &config.gc {
        storage.set_grace(gc.grace);
    }
    let storage = Arc::new(storage);
    let uploads = Arc::new(
        upload::Uploads::load(&config.root.join("uploads"), config.upload_purge_after)
            .map_err(root_error)?,
    );
    let htpasswd = config
        .htpasswd
        .as_deref()
        .map(auth::Htpasswd::load)
        .transpose()?;
    let access = match (&config.token_config, htpasswd) {
        (Some(path), users) => {
            routes::Access::Token(Box::new(token::TokenAuth::load(path, users)?))
        }
        (None, Some(htpasswd)) => routes::Access::Basic(htpasswd),
        (None, None) => routes::Access::Open,
    };
    let tls = config
        .tls
        .as_ref()
        .map(|(cert, key)| tls::server_config(cert, key))
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.addr,
            source,
        })?;
    let gc_task = config
        .gc
        .map(|gc| tokio::spawn(gc::run_periodically(storage.clone(), gc)));
    let purge_task = tokio::spawn(upload::purge_periodically(uploads.clone()));
    let app = routes::router(Arc::new(routes::Registry::new(
        storage,
        uploads,
        access,
        tls.is_some(),
        routes::Limits {
            manifest_bytes: config.max_manifest_bytes,
            blob_bytes: config.max_blob_bytes,
        },
    )));
    let service = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    let served = match tls {
        Some(tls) => {
            let listener = berth_tls::TlsListener::new(listener, tls).map_err(ServeError::Serve)?;
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            // Small answers (HEAD, manifests, upload status) go out at once.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
    .map_err(ServeError::Serve);
    if let Some(task) = gc_task {
        task.abort();
    }
    purge_task.abort();
    served
}

/// Takes `<root>/lock` for as long as the returned file is open: one
/// process at a time serves or collects a root.
fn lock_root(root: &Path) -> Result<std::fs::File, ServeError> {
    let path = root.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ServeError::Root {
            path: root.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServeError::Busy {
            path: root.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(ServeError::Root {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// What `berth registry gc` was asked to do.
pub struct GcOptions {
    pub grace: Duration,
    pub delete_untagged: bool,
    pub dry_run: bool,
}

/// Offline garbage collection of `root`, the same mark and sweep as the
/// online one; refused while a server holds the root.
pub fn collect_garbage(root: &Path, options: &GcOptions) -> Result<GcReport, ServeError> {
    let root_error = |source| ServeError::Root {
        path: root.display().to_string(),
        source,
    };
    let storage = storage::Storage::open_existing(root).map_err(root_error)?;
    let _lock = lock_root(root)?;
    gc::collect(
        &storage,
        options.grace,
        options.delete_untagged,
        options.dry_run,
    )
    .map_err(root_error)
}
