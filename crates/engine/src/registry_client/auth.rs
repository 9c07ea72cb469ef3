//! Registry credentials: the docker CLI's `X-Registry-Auth` header (base64url
//! JSON), the `Authorization: Basic` header made from it, and the bearer
//! token flow (`WWW-Authenticate: Bearer realm=…,service=…`).

use base64::Engine as _;

use crate::error::{Error, Result};

#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Decodes `X-Registry-Auth`; an empty header or one without a user name
    /// means anonymous (`None`).
    pub fn from_header(value: &str) -> Result<Option<Credentials>> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(value))
            .map_err(|e| Error::InvalidArgument(format!("X-Registry-Auth is not base64: {e}")))?;
        let (credentials, _) = parse_auth_config(&raw)
            .map_err(|e| Error::InvalidArgument(format!("X-Registry-Auth: {e}")))?;
        Ok(credentials)
    }

    pub(crate) fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// Docker's `AuthConfig` JSON (`X-Registry-Auth`, the body of `POST /auth`):
/// the credentials (`username` + `password`, or `auth`, base64 of
/// `user:password`; `None` without a user name) and `serveraddress`.
pub fn parse_auth_config(json: &[u8]) -> Result<(Option<Credentials>, String)> {
    // Clients send `null` for unset fields.
    #[derive(serde::Deserialize)]
    struct AuthConfig {
        username: Option<String>,
        password: Option<String>,
        auth: Option<String>,
        serveraddress: Option<String>,
    }
    let config: AuthConfig = serde_json::from_slice(json)
        .map_err(|e| Error::InvalidArgument(format!("auth config is not JSON: {e}")))?;
    let username = config.username.unwrap_or_default();
    let password = config.password.unwrap_or_default();
    let auth = config.auth.unwrap_or_default();
    let serveraddress = config.serveraddress.unwrap_or_default();
    let (username, password) = if username.is_empty() && !auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        match decoded.split_once(':') {
            Some((u, p)) => (u.to_string(), p.to_string()),
            None => (String::new(), String::new()),
        }
    } else {
        (username, password)
    };
    let credentials = (!username.is_empty()).then_some(Credentials { username, password });
    Ok((credentials, serveraddress))
}

/// The `key="value"` parameters of a `WWW-Authenticate: Bearer …` challenge.
fn challenge_params(challenge: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = challenge.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value.to_string()));
        rest = next.trim_start_matches([',', ' ']);
    }
    out
}

/// The `Authorization` header for a registry that answered `/v2/` with
/// `challenge`: a bearer token from its realm (asked with `credentials`,
/// if any) for `scope`, or Basic credentials. A token server that refuses
/// the credentials is `Unauthorized`.
pub(crate) fn authorization_for(
    settings: &super::RegistrySettings,
    challenge: &str,
    credentials: Option<&Credentials>,
    scope: Option<&str>,
) -> Result<Option<String>> {
    let Some(params) = challenge
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| challenge.trim().strip_prefix("bearer "))
    else {
        return Ok(credentials.map(Credentials::basic_header));
    };
    let params = challenge_params(params);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let realm = get("realm").ok_or_else(|| {
        Error::InvalidArgument(format!(
            "registry bearer challenge without a realm: {challenge}"
        ))
    })?;
    let (tls, rest) = match (
        realm.strip_prefix("https://"),
        realm.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => {
            return Err(Error::InvalidArgument(format!(
                "token realm {realm}: not an http(s) URL"
            )))
        }
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut query = Vec::new();
    if let Some(service) = get("service") {
        query.push(format!("service={}", encode(service)));
    }
    if let Some(scope) = scope {
        query.push(format!("scope={}", encode(scope)));
    }
    if let Some(c) = credentials {
        query.push(format!("account={}", encode(&c.username)));
    }
    let separator = if path.contains('?') { '&' } else { '?' };
    let target = format!("{path}{separator}{}", query.join("&"));
    let realm_server = super::Registry::at(
        settings,
        host,
        tls,
        credentials.map(Credentials::basic_header),
    )?;
    let response = realm_server.send("GET", &target, &[], super::Body::Empty)?;
    if response.status != 200 {
        let status = response.status;
        let refused = format!(
            "token server {host} refused a token{}: {}",
            scope.map(|s| format!(" for {s}")).unwrap_or_default(),
            response.error_text()
        );
        return Err(if matches!(status, 401 | 403) {
            Error::Unauthorized(refused)
        } else {
            Error::InvalidArgument(refused)
        });
    }
    #[derive(serde::Deserialize)]
    struct Token {
        #[serde(default)]
        token: String,
        #[serde(default)]
        access_token: String,
    }
    let body = response.bytes(1 << 20)?;
    let token: Token = serde_json::from_slice(&body)
        .map_err(|e| Error::InvalidArgument(format!("token server {host}: {e}")))?;
    let token = if token.token.is_empty() {
        token.access_token
    } else {
        token.token
    };
    if token.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "token server {host} answered without a token"
        )));
    }
    Ok(Some(format!("Bearer {token}")))
}

/// Percent-encoding for a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header_decodes() {
        let json = r#"{"username":"u","password":"p:w","serveraddress":"127.0.0.1:5000"}"#;
        let header = base64::engine::general_purpose::URL_SAFE.encode(json);
        let c = Credentials::from_header(&header)
            .expect("valid header")
            .expect("credentials");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
        assert_eq!(c.basic_header(), "Basic dTpwOnc=");
        assert_eq!(
            Credentials::from_header("e30=").expect("valid header"),
            None
        );
        assert_eq!(Credentials::from_header("").expect("valid header"), None);
        let nulls = base64::engine::general_purpose::STANDARD
            .encode(r#"{"username":null,"password":null,"serveraddress":null}"#);
        assert_eq!(Credentials::from_header(&nulls).expect("nulls"), None);
    }

    #[test]
    fn bearer_challenges_parse() {
        let params = challenge_params(
            r#"realm="http://127.0.0.1:1/token",service="reg, one",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            params,
            vec![
                ("realm".to_string(), "http://127.0.0.1:1/token".to_string()),
                ("service".to_string(), "reg, one".to_string()),
                ("scope".to_string(), "repository:a/b:pull".to_string()),
            ]
        );
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
