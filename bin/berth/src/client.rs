//! The connection to the daemon (berthd or dockerd): bollard for the typed
//! image endpoints, and plain HTTP/1.1 requests of our own for the rest:
//! answers printed as the daemon sent them (`inspect`, `info`), JSON bodies
//! shaped like the docker CLI's, streams (logs, wait) and the connections
//! that attach and exec take over.

use std::sync::OnceLock;
use std::time::Duration;

use bollard::Docker;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::header;
use hyper::upgrade::Upgraded;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where `berth` connects when neither `-H` nor `BERTH_HOST` says otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/berth.sock";

/// Streams (events, load of a large archive) may take as long as they take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

static HOST: OnceLock<String> = OnceLock::new();

/// Why a command failed. The exit status is docker's: 1, or the code a
/// [`Failure::Status`] carries (125 for `run` errors, the container's status).
#[derive(Debug)]
pub enum Failure {
    /// The daemon answered with an error status and this message.
    Daemon { status: u16, message: String },
    /// The daemon could not be reached.
    Connect(String),
    /// Anything else, printed as it is.
    Message(String),
    /// `message` (nothing when empty) and exit status `code`.
    Status { message: String, code: u8 },
}

impl Failure {
    /// A daemon error of `status` with `message`.
    pub fn daemon(status: u16, message: impl Into<String>) -> Failure {
        Failure::Daemon {
            status,
            message: message.into(),
        }
    }

    /// The exit status docker gives this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Status { code, .. } => *code,
            _ => 1,
        }
    }

    /// True for the daemon's 404 (no such container, image, exec instance).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Failure::Daemon { status: 404, .. })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Daemon { message, .. } => write!(f, "Error response from daemon: {message}"),
            Failure::Connect(host) => write!(
                f,
                "Cannot connect to the daemon at {host}. Is berthd (or dockerd) running?"
            ),
            Failure::Message(message) | Failure::Status { message, .. } => f.write_str(message),
        }
    }
}

fn current_host() -> String {
    HOST.get()
        .cloned()
        .unwrap_or_else(|| DEFAULT_HOST.to_owned())
}

impl From<bollard::errors::Error> for Failure {
    fn from(error: bollard::errors::Error) -> Failure {
        use bollard::errors::Error;
        match error {
            Error::DockerResponseServerError {
                status_code,
                message,
            } => Failure::daemon(status_code, message),
            Error::DockerStreamError { error } => Failure::Message(error),
            Error::SocketNotFoundError(_)
            | Error::HyperLegacyError { .. }
            | Error::HyperResponseError { .. }
            | Error::IOError { .. } => Failure::Connect(current_host()),
            other => Failure::Message(other.to_string()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::Message(error.to_string())
    }
}

impl From<crate::template::TemplateError> for Failure {
    fn from(error: crate::template::TemplateError) -> Failure {
        Failure::Message(error.0)
    }
}

/// The newest API version `berth` speaks (that of the docker CLI it mirrors).
pub const MAX_API_VERSION: (usize, usize) = (1, 50);

/// A negotiated connection to one daemon.
#[derive(Clone)]
pub struct Client {
    pub docker: Docker,
    host: String,
    api_version: (usize, usize),
    /// The daemon's unversioned `/version` answer, read to negotiate.
    pub server_version: Value,
}

fn bollard_client(host: &str, version: (usize, usize)) -> Result<Docker, Failure> {
    let version = bollard::ClientVersion {
        major_version: version.0,
        minor_version: version.1,
    };
    if host.starts_with("unix://") {
        Docker::connect_with_unix(host, REQUEST_TIMEOUT.as_secs(), &version)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, REQUEST_TIMEOUT.as_secs(), &version)
    } else {
        return Err(Failure::Message(format!(
            "invalid host {host:?}: expected unix:///path or tcp://host:port"
        )));
    }
    .map_err(|_| Failure::Connect(host.to_owned()))
}

fn parse_api_version(text: &str) -> Option<(usize, usize)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

impl Client {
    /// Connects to `host` (`unix:///path` or `tcp://host:port`) and agrees on
    /// an API version: the daemon's, or [`MAX_API_VERSION`] if that is older.
    pub async fn connect(host: &str) -> Result<Client, Failure> {
        let _ = HOST.set(host.to_owned());
        let mut client = Client {
            docker: bollard_client(host, MAX_API_VERSION)?,
            host: host.to_owned(),
            api_version: MAX_API_VERSION,
            server_version: Value::Null,
        };
        let version = client.fetch("/version").await?;
        let version: Value = serde_json::from_slice(&version)
            .map_err(|e| Failure::Message(format!("the daemon sent an invalid /version: {e}")))?;
        let server_api = version
            .get("ApiVersion")
            .and_then(|v| v.as_str())
            .and_then(parse_api_version)
            .unwrap_or(MAX_API_VERSION);
        if server_api < MAX_API_VERSION {
            client.api_version = server_api;
            client.docker = bollard_client(host, server_api)?;
        }
        client.server_version = version;
        Ok(client)
    }

    /// The API version both sides speak, as `1.41`.
    pub fn api_version(&self) -> String {
        format!("{}.{}", self.api_version.0, self.api_version.1)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// GET `path` (without the version prefix) and the body exactly as the daemon sent it.
    pub async fn get_raw(&self, path: &str) -> Result<Bytes, Failure> {
        self.request(Method::GET, path, None).await
    }

    /// GET `path` parsed as JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, Failure> {
        let body = self.get_raw(path).await?;
        parse_json(path, &body)
    }

    /// POST `path` with `body` as JSON (or no body); the answer parsed as
    /// JSON, or `Null` when the daemon sent nothing (204).
    pub async fn post_json(&self, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let answer = self.request(Method::POST, path, body).await?;
        if answer.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        parse_json(path, &answer)
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> Result<(), Failure> {
        self.request(Method::DELETE, path, None).await.map(drop)
    }

    /// `method` on `path` (without the version prefix); the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Bytes, Failure> {
        let response = self
            .send(method, &self.versioned(path), body, false)
            .await?;
        collect(response.into_body()).await
    }

    /// `method` on `path`, answered with a body that streams (logs, wait):
    /// returned once the daemon sent the status line and headers.
    pub async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Incoming, Failure> {
        let response = self
            .send(method, &self.versioned(path), body, false)
            .await?;
        Ok(response.into_body())
    }

    /// As [`Client::stream`], with `headers` added to the request.
    pub async fn stream_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<Incoming, Failure> {
        let response = self
            .send_with(method, &self.versioned(path), None, false, headers)
            .await?;
        Ok(response.into_body())
    }

    /// POST `path` asking to take the connection over (attach, exec start):
    /// both directions of the raw stream once the daemon agreed.
    pub async fn hijack(&self, path: &str, body: Option<&Value>) -> Result<Hijacked, Failure> {
        let response = self
            .send(Method::POST, &self.versioned(path), body, true)
            .await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            // An old daemon that answers 200 streams the output as the body.
            return Ok(Hijacked::Body(response.into_body()));
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| Failure::Message(format!("taking over the connection: {e}")))?;
        Ok(Hijacked::Upgraded(TokioIo::new(upgraded)))
    }

    fn versioned(&self, path: &str) -> String {
        format!("/v{}{path}", self.api_version())
    }

    async fn fetch(&self, path: &str) -> Result<Bytes, Failure> {
        let response = self.send(Method::GET, path, None, false).await?;
        collect(response.into_body()).await
    }

    /// One request on a connection of its own (attach and wait hold theirs
    /// for as long as the container runs); an error status becomes
    /// [`Failure::Daemon`] with the daemon's message.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        upgrade: bool,
    ) -> Result<hyper::Response<Incoming>, Failure> {
        self.send_with(method, path, body, upgrade, &[]).await
    }

    /// [`Client::send`] with `headers` added.
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        upgrade: bool,
        headers: &[(&str, String)],
    ) -> Result<hyper::Response<Incoming>, Failure> {
        let mut sender = self.dial().await?;
        let (host_header, _) = self.endpoint();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host_header)
            .header(
                header::USER_AGENT,
                concat!("berth/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if upgrade {
            request = request
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "tcp");
        }
        let payload = match body {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(value).map_err(|e| {
                    Failure::Message(format!("encoding the request for {path}: {e}"))
                })?)
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| Failure::Message(format!("invalid request {path}: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Failure::Connect(self.host.clone()))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let body = collect(response.into_body()).await?;
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        Err(Failure::daemon(status.as_u16(), message))
    }

    /// The Host header and the address to dial.
    fn endpoint(&self) -> (String, Endpoint) {
        match self.host.strip_prefix("unix://") {
            // Docker's client names a socket's host so; daemons only require one.
            Some(socket) => (
                "api.moby.localhost".to_owned(),
                Endpoint::Unix(socket.to_owned()),
            ),
            None => {
                let authority = self
                    .host
                    .trim_start_matches("tcp://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned();
                (authority.clone(), Endpoint::Tcp(authority))
            }
        }
    }

    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let refused = |_| Failure::Connect(self.host.clone());
        let (sender, connection) = match self.endpoint().1 {
            Endpoint::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(refused)?;
                let (sender, connection) = handshake(TokioIo::new(stream))
                    .await
                    .map_err(|_| Failure::Connect(self.host.clone()))?;
                (sender, Connection::Unix(connection))
            }
            Endpoint::Tcp(authority) => {
                let stream = tokio::net::TcpStream::connect(authority)
                    .await
                    .map_err(refused)?;
                let (sender, connection) = handshake(TokioIo::new(stream))
                    .await
                    .map_err(|_| Failure::Connect(self.host.clone()))?;
                (sender, Connection::Tcp(connection))
            }
        };
        // The connection is driven by its own task; with upgrades, so that
        // attach and exec can take it over after the 101 answer.
        tokio::spawn(async move {
            let _ = match connection {
                Connection::Unix(c) => c.with_upgrades().await,
                Connection::Tcp(c) => c.with_upgrades().await,
            };
        });
        Ok(sender)
    }
}

enum Endpoint {
    Unix(String),
    Tcp(String),
}

enum Connection {
    Unix(hyper::client::conn::http1::Connection<TokioIo<tokio::net::UnixStream>, Full<Bytes>>),
    Tcp(hyper::client::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>),
}

/// A connection the daemon handed over to the container's streams.
pub enum Hijacked {
    /// Both directions, after `101 Switching Protocols`.
    Upgraded(TokioIo<Upgraded>),
    /// Output only, as the body of a plain answer.
    Body(Incoming),
}

async fn collect(body: Incoming) -> Result<Bytes, Failure> {
    Ok(body
        .collect()
        .await
        .map_err(|e| Failure::Message(format!("reading the daemon's answer: {e}")))?
        .to_bytes())
}

fn parse_json(path: &str, body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::Message(format!("the daemon sent invalid JSON for {path}: {e}")))
}

/// `value` percent-encoded for a URL query or path segment.
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}
