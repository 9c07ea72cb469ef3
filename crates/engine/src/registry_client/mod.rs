//! `docker pull` and `docker push` against a distribution (v2) registry.
//! Owns the registry side: a blocking face over hyper's HTTP/1.1 client
//! (HTTPS with the system CAs plus the CAs and client certificates of
//! `<certs dir>/<host>/`; plain HTTP only to loopback and insecure
//! registries, see `hosts`), credentials, login, mirrors, and the pull/push
//! flows; storing goes through `ImageService`.

mod auth;
mod hosts;
mod login;
mod pull;
mod push;

use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

pub use auth::{parse_auth_config, Credentials};
pub use hosts::{registry_name, Mirror, RegistrySettings, DEFAULT_CERTS_DIR, DOCKER_HUB};
pub use login::login;
pub use pull::{
    list_tags, parse_platform, pull, pull_all_tags, repository_only, resolve,
    resolve_all_platforms, ResolvedPull, TransferLimits,
};
pub use push::{check_push, parse_platform_json, push};

/// One progress message, as dockerd streams them (`id` is a layer's short
/// id or the tag; `progress` is bytes done and total).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub id: Option<String>,
    pub status: String,
    pub progress: Option<(u64, u64)>,
}

impl Status {
    fn line(status: impl Into<String>) -> Status {
        Status {
            id: None,
            status: status.into(),
            progress: None,
        }
    }

    fn layer(id: &str, status: impl Into<String>) -> Status {
        Status {
            id: Some(id.to_string()),
            status: status.into(),
            progress: None,
        }
    }
}

/// A connection target: one registry host, with the credentials to send.
pub(crate) struct Registry {
    host: String,
    /// What every request sends, unless `bearer` is set.
    authorization: Option<String>,
    /// Bearer tokens for this registry and scope (cached, renewed when they
    /// expire or the registry refuses them).
    bearer: Option<auth::TokenSource>,
    /// `None`: plain HTTP.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// What reaching another host from here (a redirect) may use.
    settings: Arc<RegistrySettings>,
}

type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// The host part of `host:port` (brackets removed from IPv6 literals).
fn hostname(host: &str) -> &str {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() => name,
        _ => host,
    };
    name.trim_start_matches('[').trim_end_matches(']')
}

/// A response whose body is read on demand.
pub(crate) struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Box<dyn Read + Send>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body(&mut self) -> &mut (dyn Read + Send) {
        &mut *self.body
    }

    /// The whole body, up to `limit` bytes (manifests, configs, errors).
    pub fn bytes(mut self, limit: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        (&mut self.body)
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::io("read registry response", e))?;
        if out.len() as u64 > limit {
            return Err(Error::InvalidArgument(format!(
                "registry response larger than {limit} bytes"
            )));
        }
        Ok(out)
    }

    /// The registry's error message (`CODE: message` of its JSON errors).
    pub fn error_text(self) -> String {
        let status = self.status;
        let body = self.bytes(64 << 10).unwrap_or_default();
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<ErrorItem>,
        }
        #[derive(serde::Deserialize)]
        struct ErrorItem {
            code: Option<String>,
            message: Option<String>,
        }
        match serde_json::from_slice::<Errors>(&body) {
            Ok(e) if !e.errors.is_empty() => e
                .errors
                .iter()
                .map(|i| {
                    format!(
                        "{}: {}",
                        i.code
                            .as_deref()
                            .unwrap_or("UNKNOWN")
                            .to_lowercase()
                            .replace('_', " "),
                        i.message.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => format!("HTTP status {status}"),
        }
    }
}

/// Body of a request: bytes in memory or a reader of known length.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Reader(&'a mut dyn Read, u64),
}

/// How long a registry may stay silent (connect, answer, each read of a
/// body): 60 s, or `BERTH_REGISTRY_TIMEOUT` seconds.
fn timeout() -> Duration {
    static TIMEOUT: OnceLock<Duration> = OnceLock::new();
    *TIMEOUT.get_or_init(|| {
        std::env::var("BERTH_REGISTRY_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .map_or(Duration::from_secs(60), Duration::from_secs_f64)
    })
}

impl Registry {
    /// A registry over HTTPS, or over plain HTTP when it is on a loopback
    /// address or insecure, with the authorization it asks for on `/v2/`
    /// for `actions` (`pull`, `pull,push`) on `repository`.
    pub fn open(
        settings: &RegistrySettings,
        domain: &str,
        credentials: Option<&Credentials>,
        repository: &str,
        actions: &str,
    ) -> Result<Registry> {
        Registry::open_scoped(
            settings,
            domain,
            credentials,
            &format!("repository:{repository}:{actions}"),
        )
    }

    /// [`Registry::open`] for a push to `repository` that may mount blobs
    /// from the repositories `mount_from` of the same registry: its tokens
    /// also ask to pull from those, as a registry lets a mount happen only
    /// with that (else it answers with a plain upload).
    pub fn open_for_push(
        settings: &RegistrySettings,
        domain: &str,
        credentials: Option<&Credentials>,
        repository: &str,
        mount_from: &[String],
    ) -> Result<Registry> {
        let mut scope = format!("repository:{repository}:pull,push");
        for from in mount_from.iter().filter(|f| *f != repository) {
            scope.push_str(&format!(" repository:{from}:pull"));
        }
        Registry::open_scoped(settings, domain, credentials, &scope)
    }

    /// A registry whose bearer tokens are for `scope` (space-separated
    /// scopes).
    fn open_scoped(
        settings: &RegistrySettings,
        domain: &str,
        credentials: Option<&Credentials>,
        scope: &str,
    ) -> Result<Registry> {
        let (mut registry, response) = Registry::connect(settings, hosts::api_host(domain))?;
        registry.authenticate(&response, credentials, scope)?;
        Ok(registry)
    }

    /// A pull mirror, anonymous (the origin's credentials are not sent to
    /// it), authorized for pulls of `repository`.
    pub fn open_mirror(
        settings: &RegistrySettings,
        mirror: &Mirror,
        repository: &str,
    ) -> Result<Registry> {
        let mut registry = Registry {
            host: mirror.host.clone(),
            authorization: None,
            bearer: None,
            tls: if mirror.tls {
                Some(settings.tls_config(&mirror.host)?)
            } else {
                None
            },
            settings: Arc::new(settings.clone()),
        };
        let response = registry.send("GET", "/v2/", &[], Body::Empty)?;
        registry.authenticate(&response, None, &format!("repository:{repository}:pull"))?;
        Ok(registry)
    }

    /// Sets what requests carry after `ping` (the answer to `/v2/`): bearer
    /// tokens for `scope` when it challenged with Bearer (one is got now,
    /// so refused credentials fail here), else Basic credentials.
    fn authenticate(
        &mut self,
        ping: &Response,
        credentials: Option<&Credentials>,
        scope: &str,
    ) -> Result<()> {
        let challenge = match (ping.status, ping.header("www-authenticate")) {
            (401, Some(header)) => auth::Challenge::parse(header)?,
            _ => None,
        };
        match challenge {
            Some(challenge) => {
                let source =
                    auth::TokenSource::new(&self.settings, challenge, credentials, Some(scope));
                source.authorization()?;
                self.authorization = None;
                self.bearer = Some(source);
            }
            None => self.authorization = credentials.map(Credentials::basic_header),
        }
        Ok(())
    }

    /// `host` and its answer to `GET /v2/`: over plain HTTP first where that
    /// is allowed (a TLS server refuses plain HTTP at once, or answers 400,
    /// while a plain one may wait for more of a TLS hello), else over HTTPS.
    fn connect(settings: &RegistrySettings, host: &str) -> Result<(Registry, Response)> {
        let tls_ping = || -> Result<(Registry, Response)> {
            let tls = Registry::at(settings, host, true, None)?;
            let response = tls.send("GET", "/v2/", &[], Body::Empty)?;
            Ok((tls, response))
        };
        let Ok(plain) = Registry::at(settings, host, false, None) else {
            return tls_ping();
        };
        match plain.send("GET", "/v2/", &[], Body::Empty) {
            Ok(response) if response.status != 400 => Ok((plain, response)),
            // Go's TLS servers answer plain HTTP with 400: theirs is the error.
            Ok(_) => tls_ping().map_err(|tls_error| {
                Error::Internal(format!(
                    "{tls_error} (over plain HTTP it answered 400 Bad Request)"
                ))
            }),
            Err(plain_error) => tls_ping().map_err(|tls_error| {
                Error::Internal(format!("{plain_error}; over HTTPS: {tls_error}"))
            }),
        }
    }

    /// `domain` over HTTPS, or over plain HTTP, which only loopback
    /// addresses and insecure registries may use.
    fn at(
        settings: &RegistrySettings,
        domain: &str,
        tls: bool,
        authorization: Option<String>,
    ) -> Result<Registry> {
        if !tls && !settings.allows_plain_http(domain) {
            return Err(Error::InvalidArgument(format!(
                "registry {domain}: plain HTTP is only used with loopback addresses (127.0.0.0/8, ::1) and insecure-registries"
            )));
        }
        Ok(Registry {
            host: domain.to_string(),
            authorization,
            bearer: None,
            tls: if tls {
                Some(settings.tls_config(domain)?)
            } else {
                None
            },
            settings: Arc::new(settings.clone()),
        })
    }

    /// `http(s)://host`, as messages show the registry.
    fn origin(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    fn authority(&self) -> String {
        if hostname(&self.host) != self.host.trim_start_matches('[').trim_end_matches(']') {
            self.host.clone()
        } else if self.tls.is_some() {
            format!("{}:443", self.host)
        } else {
            format!("{}:80", self.host)
        }
    }

    /// Sends one request on a new connection (`Connection: close`).
    /// `target` is a path with its query, or an absolute URL on this host.
    /// A bearer token the registry refuses (401: expired or revoked) is
    /// renewed once and the request sent again with the same headers (a
    /// resumed download keeps its Range); a streamed body cannot be sent
    /// again, so its 401 is the caller's (the next request has the new
    /// token).
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response> {
        let Some(bearer) = &self.bearer else {
            return self.send_as(self.authorization.as_deref(), method, target, headers, body);
        };
        let again = match &body {
            Body::Empty => Some(Body::Empty),
            Body::Bytes(b) => Some(Body::Bytes(b)),
            Body::Reader(..) => None,
        };
        let token = bearer.authorization()?;
        let response = self.send_as(Some(&token), method, target, headers, body)?;
        if response.status != 401 {
            return Ok(response);
        }
        tracing::debug!(
            "registry {} refused the token for {method} {}; asking for a new one",
            self.host,
            strip_origin(target)
        );
        let fresh = bearer.refresh(&token)?;
        match again {
            Some(body) => self.send_as(Some(&fresh), method, target, headers, body),
            None => Ok(response),
        }
    }

    /// [`Registry::send`] with `authorization`, once.
    fn send_as(
        &self,
        authorization: Option<&str>,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response> {
        let path = strip_origin(target);
        let what = format!("{method} {path} on registry {}", self.host);
        let failed = |e: &dyn std::fmt::Display| Error::Internal(format!("{what}: {e}"));
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("Host", &self.host)
            .header("User-Agent", "berthd")
            .header("Connection", "close");
        if let Some(a) = authorization {
            request = request.header("Authorization", a);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        // A reader's bytes go through a channel: the request body must own
        // what it streams, the reader is borrowed.
        let (chunks, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let mut reader: Option<(&mut dyn Read, u64)> = None;
        let (length, request_body): (u64, RequestBody) = match body {
            Body::Empty => (
                0,
                Empty::new().map_err(|never| match never {}).boxed_unsync(),
            ),
            Body::Bytes(b) => (
                b.len() as u64,
                Full::new(Bytes::copy_from_slice(b))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            ),
            Body::Reader(r, n) => {
                reader = Some((r, n));
                let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
                    receiver
                        .recv()
                        .await
                        .map(|chunk| (chunk.map(Frame::data), receiver))
                });
                (n, StreamBody::new(stream).boxed_unsync())
            }
        };
        if length > 0 || matches!(method, "PUT" | "POST" | "PATCH") {
            request = request.header("Content-Length", length);
        }
        let request = request.body(request_body).map_err(|e| failed(&e))?;
        let authority = self.authority();
        let host = self.host.clone();
        let head_only = method == "HEAD";
        let streaming = reader.is_some();
        let tls = self.tls.clone();
        let exchange = async move {
            let mut sender = dial(&host, &authority, tls).await?;
            let answer = sender.send_request(request);
            if streaming {
                answer.await.map_err(|e| error_chain(&e))
            } else {
                tokio::time::timeout(timeout(), answer)
                    .await
                    .map_err(|_| format!("no answer in {:?}", timeout()))?
                    .map_err(|e| error_chain(&e))
            }
        };
        let task = runtime().spawn(exchange);
        // The body is read here, on the caller's (blocking) thread: readers
        // may report progress through blocking writes.
        if let Some((r, n)) = reader.take() {
            let mut left = n;
            while left > 0 {
                let mut buf = vec![0u8; (256usize << 10).min(left as usize)];
                let chunk = match r.read(&mut buf) {
                    Ok(0) => Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("body ended {left} bytes early"),
                    )),
                    Ok(got) => {
                        buf.truncate(got);
                        left -= got as u64;
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => Err(e),
                };
                let stop = chunk.is_err();
                if chunks.blocking_send(chunk).is_err() || stop {
                    break;
                }
            }
        }
        drop(chunks);
        let response = runtime()
            .block_on(task)
            .map_err(|e| failed(&e))?
            .map_err(|e| failed(&e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body: Box<dyn Read + Send> = if head_only {
            Box::new(std::io::empty())
        } else {
            Box::new(IncomingReader::new(response.into_body()))
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// An error with its sources (hyper's "connection error" hides the TLS
/// alert that says why).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

/// Connects (and handshakes TLS when `tls` is given) and starts an HTTP/1.1
/// connection driven by its own task.
async fn dial(
    host: &str,
    authority: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> std::result::Result<SendRequest<RequestBody>, String> {
    let stream = tokio::time::timeout(timeout(), tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| format!("connect to registry {host}: timed out"))?
        .map_err(|e| format!("connect to registry {host}: {e}"))?;
    match tls {
        None => {
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            Ok(sender)
        }
        Some(config) => {
            let name = ServerName::try_from(hostname(host).to_string())
                .map_err(|e| format!("registry {host}: {e}"))?;
            let stream = tokio::time::timeout(
                timeout(),
                tokio_rustls::TlsConnector::from(config).connect(name, stream),
            )
            .await
            .map_err(|_| format!("TLS handshake with {host}: timed out"))?
            .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            Ok(sender)
        }
    }
}

/// The runtime registry requests run on: the engine is blocking, and is
/// also used where no runtime exists (unit tests), so it has its own.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("registry-client")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the registry client runtime: {e}"))
    })
}

/// Frames a response body reads ahead of its reader (each up to hyper's
/// read buffer, about 400 KiB).
const READ_AHEAD: usize = 8;

/// A response body read as blocking `Read`. A task on the client runtime
/// reads the body's frames ahead of the caller, so the network keeps going
/// while the caller hashes and writes what it got; dropping the reader ends
/// the task and closes the connection.
struct IncomingReader {
    frames: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    pending: Bytes,
}

impl IncomingReader {
    fn new(mut body: Incoming) -> IncomingReader {
        let (sender, frames) = tokio::sync::mpsc::channel(READ_AHEAD);
        runtime().spawn(async move {
            loop {
                let frame = tokio::select! {
                    frame = tokio::time::timeout(timeout(), body.frame()) => frame,
                    _ = sender.closed() => return,
                };
                let item = match frame {
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "registry stalled",
                    )),
                    Ok(None) => return,
                    Ok(Some(Err(e))) => Err(std::io::Error::other(e)),
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => Ok(data),
                        _ => continue,
                    },
                };
                let stop = item.is_err();
                if sender.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        IncomingReader {
            frames,
            pending: Bytes::new(),
        }
    }
}

impl Read for IncomingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            match self.frames.blocking_recv() {
                None => return Ok(0),
                Some(frame) => self.pending = frame?,
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

/// `http://host/path?q` → `/path?q`; a path is kept as is.
fn strip_origin(target: &str) -> &str {
    match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_locations_become_paths() {
        assert_eq!(
            strip_origin("http://127.0.0.1:5000/v2/a/blobs/uploads/x?y=1"),
            "/v2/a/blobs/uploads/x?y=1"
        );
        assert_eq!(strip_origin("/v2/a"), "/v2/a");
    }

    #[test]
    fn hostnames_drop_ports_and_brackets() {
        assert_eq!(hostname("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(hostname("[::1]:5000"), "::1");
        assert_eq!(hostname("registry.example"), "registry.example");
    }

    #[test]
    fn plain_http_is_for_loopback_and_insecure_registries_only() {
        let settings = RegistrySettings::default();
        assert!(Registry::at(&settings, "192.0.2.1:5000", false, None).is_err());
        assert!(Registry::at(&settings, "127.0.0.1:5000", false, None).is_ok());
        assert!(Registry::at(&settings, "192.0.2.1:5000", true, None).is_ok());
        let insecure =
            RegistrySettings::new(&["192.0.2.0/24".to_string()], &[], DEFAULT_CERTS_DIR.into())
                .expect("valid");
        assert!(Registry::at(&insecure, "192.0.2.1:5000", false, None).is_ok());
    }
}
