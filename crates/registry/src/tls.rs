//! TLS for `--tls-cert`/`--tls-key`: the server config (the listener is
//! `berth_tls::TlsListener`).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ServeError;

pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ServeError> {
    let tls_error = |path: &Path, reason: String| ServeError::Tls {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(cert).map_err(|e| tls_error(cert, e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(cert, "no PEM certificate in it".into()));
    }
    let pem = std::fs::read(key).map_err(|e| tls_error(key, e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| tls_error(key, format!("no unencrypted PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_error(cert, format!("certificate and key do not fit: {e}")))?;
    Ok(Arc::new(config))
}
