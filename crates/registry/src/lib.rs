//! A registry server speaking the OCI distribution spec 1.1 (the API Docker's
//! `registry:2` serves) over a filesystem store, with optional htpasswd basic
//! auth and TLS. `berth registry serve` is its command line.

#![forbid(unsafe_code)]

mod auth;
mod error;
mod gc;
mod names;
mod routes;
mod storage;
mod tls;
mod token;
mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::RegistryError;

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
    let storage = storage::Storage::open(&config.root).map_err(|source| ServeError::Root {
        path: config.root.display().to_string(),
        source,
    })?;
    let storage = Arc::new(storage);
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
    let app = routes::router(Arc::new(routes::Registry::new(
        storage,
        access,
        tls.is_some(),
    )));
    let service = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    let served = match tls {
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls).map_err(ServeError::Serve)?;
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
    .map_err(ServeError::Serve);
    if let Some(task) = gc_task {
        task.abort();
    }
    served
}
