//! TLS for the tcp:// hosts: loads the daemon's certificate, key and client
//! CA as dockerd's `--tls*` flags name them (the listener that hands the API
//! only handshaken connections is `berth_tls::TlsListener`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

/// Reads and checks every file `settings` names, so that a bad one stops the
/// daemon before it listens anywhere.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certificates(&settings.cert, "certificate (tlscert)")?;
    let key = read_private_key(&settings.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = if settings.verify {
        let mut roots = RootCertStore::empty();
        for ca in read_certificates(&settings.ca, "CA certificate (tlscacert)")? {
            roots.add(ca).with_context(|| {
                format!(
                    "TLS CA certificate (tlscacert) {}: not a usable CA certificate",
                    settings.ca.display()
                )
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .with_context(|| {
                format!(
                    "TLS CA certificate (tlscacert) {}: cannot verify clients with it",
                    settings.ca.display()
                )
            })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "TLS certificate (tlscert) {} and key (tlskey) {} cannot be used together",
            settings.cert.display(),
            settings.key.display()
        )
    })?;
    Ok(Arc::new(config))
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("TLS {what} {}: cannot read it", path.display()))
}

fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("TLS {what} {}: invalid PEM", path.display()))?;
    if certs.is_empty() {
        bail!(
            "TLS {what} {}: no PEM certificate (BEGIN CERTIFICATE) in it",
            path.display()
        );
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let what = "key (tlskey)";
    let pem = read_file(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "TLS {what} {}: no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
            path.display()
        )
    })
}
