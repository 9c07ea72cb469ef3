//! `docker login`: checks credentials against a registry the way dockerd
//! does, with `GET /v2/` and the challenge it answers (Basic: the request
//! again with the credentials; Bearer: a token from the realm, asked with an
//! OAuth2 password grant and `access_type=offline` (or a GET with
//! `offline_token=true` where the realm takes no POST), whose refresh token
//! is the login's identity token).

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

/// Checks `credentials` against `server`, with dockerd's messages and
/// statuses: a token server that refuses them is `Unauthorized`; a
/// registry that refuses them itself, or cannot be reached, `Internal`.
/// Returns the identity token the CLI keeps instead of the password, when
/// the token server gave a refresh token (or the login used one).
pub fn login(
    settings: &RegistrySettings,
    server: &str,
    credentials: &Credentials,
) -> Result<Option<String>> {
    let name = server_name(server);
    let host = hosts::api_host(name);
    let (mut registry, ping) = Registry::connect(settings, host).map_err(|e| {
        // dockerd names the last URL it tried: plain HTTP where that is allowed.
        let scheme = if settings.allows_plain_http(host) {
            "http"
        } else {
            "https"
        };
        Error::Internal(format!("Get \"{scheme}://{host}/v2/\": {e}"))
    })?;
    let url = format!("{}/v2/", registry.origin());
    let challenge = match (ping.status, ping.header("www-authenticate")) {
        (401, Some(challenge)) => challenge.to_string(),
        // A registry without authentication takes any credentials.
        (200, _) => return Ok(None),
        (status, _) => {
            return Err(Error::Internal(format!(
                "login attempt to {url} failed with status: {status} {}",
                status_text(status)
            )))
        }
    };
    let mut identity_token = credentials.identity_token.clone();
    registry.authorization = match auth::Challenge::parse(&challenge)? {
        None => Some(credentials.basic_header()),
        Some(challenge) => {
            let token = auth::fetch_token(settings, &challenge, Some(credentials), None, true)
                .map_err(|e| match e {
                    Error::Unauthorized(why) => {
                        Error::Unauthorized(format!("Get \"{url}\": {why}"))
                    }
                    other => other,
                })?;
            identity_token = token.refresh_token.or(identity_token);
            Some(token.header)
        }
    };
    let answer = registry.send("GET", "/v2/", &[], Body::Empty)?;
    match answer.status {
        200 => Ok(identity_token),
        status => {
            let message = format!(
                "login attempt to {url} failed with status: {status} {}",
                status_text(status)
            );
            // dockerd answers this with 500, not 401 (a 401 makes older
            // docker CLIs drop the credentials they hold).
            Err(Error::Internal(message))
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
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// A registry with a token server: `/v2/` wants `Bearer t`, `/token`
    /// hands it out for `user:right` only, to a GET: it answers a POST
    /// with 405, as token servers without OAuth2 do.
    fn token_registry() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let realm = format!("http://{host}/token");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut authorization = String::new();
                let mut length = 0u64;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = line.strip_prefix("authorization:") {
                        authorization = v.trim().to_string();
                    }
                    line.clear();
                }
                let _ = std::io::copy(
                    &mut std::io::Read::take(&mut reader, length),
                    &mut std::io::sink(),
                );
                let path = first.split_whitespace().nth(1).unwrap_or("");
                let user_right = Credentials {
                    username: "user".into(),
                    password: "right".into(),
                    identity_token: None,
                }
                .basic_header();
                let (status, extra, body) = if first.starts_with("POST") {
                    ("405 Method Not Allowed", String::new(), "{}")
                } else if path.starts_with("/token") {
                    if authorization == user_right {
                        ("200 OK", String::new(), r#"{"token":"t"}"#)
                    } else {
                        (
                            "401 Unauthorized",
                            String::new(),
                            r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}"#,
                        )
                    }
                } else if authorization == "Bearer t" {
                    ("200 OK", String::new(), "{}")
                } else {
                    (
                        "401 Unauthorized",
                        format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"\r\n"),
                        "{}",
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        host
    }

    #[test]
    fn bearer_logins_ask_the_token_server() {
        let host = token_registry();
        let settings = RegistrySettings::default();
        let login_with = |password: &str| {
            login(
                &settings,
                &host,
                &Credentials {
                    username: "user".into(),
                    password: password.into(),
                    identity_token: None,
                },
            )
        };
        login_with("right").expect("accepted");
        match login_with("wrong") {
            Err(Error::Unauthorized(message)) => assert!(
                message.starts_with(&format!("Get \"http://{host}/v2/\": "))
                    && message.contains("incorrect username or password"),
                "{message}"
            ),
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }

    #[test]
    fn servers_name_their_registry() {
        assert_eq!(server_name("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(server_name(""), "docker.io");
        assert_eq!(server_name("docker.io"), "docker.io");
        assert_eq!(server_name("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(server_name("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
    }
}
