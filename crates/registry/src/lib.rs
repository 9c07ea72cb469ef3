//! A registry server speaking the OCI distribution spec 1.1 (the API Docker's
//! `registry:2` serves) over a filesystem store, with optional htpasswd basic
//! auth and TLS. `berth registry serve` is its command line.

#![forbid(unsafe_code)]

mod auth;
mod error;
mod names;
mod routes;
mod storage;
mod tls;
mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::RegistryError;

/// What `berth registry serve` was asked to do.
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub htpasswd: Option<PathBuf>,
    /// Certificate and key, both PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
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
    let htpasswd = config
        .htpasswd
        .as_deref()
        .map(auth::Htpasswd::load)
        .transpose()?;
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
    let app = routes::router(Arc::new(routes::Registry::new(storage, htpasswd)));
    let service = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    match tls {
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
    .map_err(ServeError::Serve)
}
