//! The connection to the daemon (berthd or dockerd): bollard for the typed
//! endpoints, and a raw GET for the answers printed as the daemon sent them
//! (`inspect`, `info`, `system df`), whose shape varies with the API version.

use std::sync::OnceLock;
use std::time::Duration;

use bollard::Docker;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;

/// Where `berth` connects when neither `-H` nor `BERTH_HOST` says otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/berth.sock";

/// Streams (events, load of a large archive) may take as long as they take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

static HOST: OnceLock<String> = OnceLock::new();

/// Why a command failed; every variant exits with status 1, like docker.
#[derive(Debug)]
pub enum Failure {
    /// The daemon answered with an error status and this message.
    Daemon(String),
    /// The daemon could not be reached.
    Connect(String),
    /// Anything else, printed as it is.
    Message(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Daemon(message) => write!(f, "Error response from daemon: {message}"),
            Failure::Connect(host) => write!(
                f,
                "Cannot connect to the daemon at {host}. Is berthd (or dockerd) running?"
            ),
            Failure::Message(message) => f.write_str(message),
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
            Error::DockerResponseServerError { message, .. } => Failure::Daemon(message),
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
pub struct Client {
    pub docker: Docker,
    host: String,
    api_version: (usize, usize),
    /// The daemon's unversioned `/version` answer, read to negotiate.
    pub server_version: serde_json::Value,
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
            server_version: serde_json::Value::Null,
        };
        let version = client.fetch("/version").await?;
        let version: serde_json::Value = serde_json::from_slice(&version)
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
        self.fetch(&format!("/v{}{path}", self.api_version())).await
    }

    async fn fetch(&self, path: &str) -> Result<Bytes, Failure> {
        let response = if let Some(socket) = self.host.strip_prefix("unix://") {
            let client = HttpClient::builder(TokioExecutor::new())
                .build::<_, Empty<Bytes>>(hyperlocal::UnixConnector);
            let uri: hyper::Uri = hyperlocal::Uri::new(socket, path).into();
            client.get(uri).await
        } else {
            let authority = self
                .host
                .trim_start_matches("tcp://")
                .trim_start_matches("http://");
            let uri: hyper::Uri = format!("http://{authority}{path}")
                .parse()
                .map_err(|e| Failure::Message(format!("invalid host {}: {e}", self.host)))?;
            let client =
                HttpClient::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(
                    hyper_util::client::legacy::connect::HttpConnector::new(),
                );
            client.get(uri).await
        }
        .map_err(|_| Failure::Connect(self.host.clone()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::Message(format!("reading the daemon's answer: {e}")))?
            .to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        Err(Failure::Daemon(message))
    }

    /// GET `path` parsed as JSON.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, Failure> {
        let body = self.get_raw(path).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Failure::Message(format!("the daemon sent invalid JSON for {path}: {e}")))
    }
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
