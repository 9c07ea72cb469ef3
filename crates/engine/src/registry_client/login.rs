//! `docker login`: checks credentials against a registry the way dockerd
//! does, with `GET /v2/` and the challenge it answers (Basic: the request
//! again with the credentials; Bearer: a token from the realm).

use super::{auth, hosts, Body, Credentials, Registry, RegistrySettings};
use crate::error::{Error, Result};

/// `server` as the CLI sends it (`https://index.docker.io/v1/`,
/// `host:port`, `http://host:port/…`) → the registry's name.
fn server_name(server: &str) -> &str {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        hosts::DOCKER_HUB
    } else {
        hosts::registry_name(host)
    }
}

/// Checks `credentials` against `server`. Refused credentials are
/// `Unauthorized`, with dockerd's message; an unreachable registry is
/// `Internal`.
pub fn login(settings: &RegistrySettings, server: &str, credentials: &Credentials) -> Result<()> {
    let name = server_name(server);
    let host = hosts::api_host(name);
    let (mut registry, ping) = Registry::connect(settings, host)
        .map_err(|e| Error::Internal(format!("Get \"https://{host}/v2/\": {e}")))?;
    let url = format!("{}/v2/", registry.origin());
    let challenge = match (ping.status, ping.header("www-authenticate")) {
        (401, Some(challenge)) => challenge.to_string(),
        // A registry without authentication takes any credentials.
        (200, _) => return Ok(()),
        (status, _) => {
            return Err(Error::Internal(format!(
                "login attempt to {url} failed with status: {status} {}",
                status_text(status)
            )))
        }
    };
    registry.authorization = auth::authorization_for(settings, &challenge, Some(credentials), None)
        .map_err(|e| match e {
            Error::Unauthorized(why) => Error::Unauthorized(format!("Get \"{url}\": {why}")),
            other => other,
        })?;
    let answer = registry.send("GET", "/v2/", &[], Body::Empty)?;
    match answer.status {
        200 => Ok(()),
        status => {
            let message = format!(
                "login attempt to {url} failed with status: {status} {}",
                status_text(status)
            );
            Err(if matches!(status, 401 | 403) {
                Error::Unauthorized(message)
            } else {
                Error::Internal(message)
            })
        }
    }
}

/// Go's `http.StatusText` for the statuses a registry answers `/v2/` with.
fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_name_their_registry() {
        assert_eq!(server_name("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(server_name(""), "docker.io");
        assert_eq!(server_name("docker.io"), "docker.io");
        assert_eq!(server_name("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(server_name("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
    }
}
