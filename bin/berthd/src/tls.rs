//! TLS for the tcp:// hosts: loads the daemon's certificate, key and client
//! CA as dockerd's `--tls*` flags name them, and a listener that hands the API
//! only connections whose TLS handshake (client certificate included) succeeded.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSettings;

/// A client that connects but never finishes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in flight at once; past this, new connections wait in the
/// kernel's backlog instead of costing memory.
const MAX_HANDSHAKES: usize = 64;

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

/// A TCP listener whose accepted connections have completed a TLS handshake.
/// Handshakes run in their own tasks, so a slow or failing client never holds
/// up the others; a failed one is logged and the connection dropped.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let accept_loop = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            local_addr,
            ready,
            accept_loop,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Closes the port when the server stops.
        self.accept_loop.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let local = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(conn) => conn,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::error!("accept on tcp://{local}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handed_over = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            match handshake {
                Ok(Ok(tls)) => {
                    let _ = handed_over.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::warn!("TLS handshake with {peer} refused: {e}"),
                Err(_) => tracing::warn!(
                    "TLS handshake with {peer} refused: not done within {}s",
                    HANDSHAKE_TIMEOUT.as_secs()
                ),
            }
        });
        if ready.is_closed() {
            return;
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
