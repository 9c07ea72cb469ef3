//! Registry credentials: the docker CLI's `X-Registry-Auth` header (base64url
//! JSON), the `Authorization: Basic` header made from it, and the bearer
//! token flow (`WWW-Authenticate: Bearer realm=…,service=…`) with the
//! daemon's token cache.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use berth_content::Digest;

use crate::error::{Error, Result};

#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// A refresh token from an earlier login (`identitytoken`): tokens are
    /// then got with it (OAuth2 `grant_type=refresh_token`), not the password.
    pub identity_token: Option<String>,
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
        identitytoken: Option<String>,
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
    let identity_token = config.identitytoken.filter(|t| !t.is_empty());
    let credentials = (!username.is_empty() || identity_token.is_some()).then_some(Credentials {
        username,
        password,
        identity_token,
    });
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

/// A `WWW-Authenticate: Bearer …` challenge: where tokens come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Challenge {
    pub realm: String,
    pub service: Option<String>,
}

impl Challenge {
    /// The bearer challenge in `header`; `None` for another scheme (Basic).
    pub fn parse(header: &str) -> Result<Option<Challenge>> {
        let Some(params) = header
            .trim()
            .strip_prefix("Bearer ")
            .or_else(|| header.trim().strip_prefix("bearer "))
        else {
            return Ok(None);
        };
        let params = challenge_params(params);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.to_string())
        };
        let realm = get("realm").ok_or_else(|| {
            Error::InvalidArgument(format!(
                "registry bearer challenge without a realm: {header}"
            ))
        })?;
        Ok(Some(Challenge {
            realm,
            service: get("service"),
        }))
    }
}

/// A token as the token server gave it, and how long it may be used.
pub(crate) struct Token {
    /// `Bearer <token>`.
    pub header: String,
    pub lifetime: Duration,
    /// A refresh token (asked for with `offline_token=true`, or renewed).
    pub refresh_token: Option<String>,
}

/// The OAuth2 client id the token server is told, as dockerd's.
const CLIENT_ID: &str = "docker";

/// The lifetime of a token that does not say (`expires_in` absent or 0):
/// 60 s, as the distribution client assumes.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Asks the realm of `challenge` for a token for `scope`. With an identity
/// token: an OAuth2 POST (`grant_type=refresh_token`), as dockerd. For a
/// login (`offline`) with a password: an OAuth2 POST
/// (`grant_type=password`, `access_type=offline`), whose refresh token
/// `docker login` keeps as the identity token; a token server that does not
/// take POSTs (404, 405) is asked again with a GET, as containerd does.
/// Else a GET with the credentials as Basic authorization and `account=`
/// (with `offline`, also `offline_token=true`). A token server that refuses
/// the credentials is `Unauthorized`.
pub(crate) fn fetch_token(
    settings: &super::RegistrySettings,
    challenge: &Challenge,
    credentials: Option<&Credentials>,
    scope: Option<&str>,
    offline: bool,
) -> Result<Token> {
    let realm = challenge.realm.as_str();
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
    let identity_token = credentials.and_then(|c| c.identity_token.as_deref());
    let password_login =
        credentials.filter(|c| offline && identity_token.is_none() && !c.username.is_empty());
    let received = SystemTime::now();
    // The form of an OAuth2 POST: scopes space-separated in one value.
    let oauth_form = |grant: &[(&str, &str)]| {
        let mut form: Vec<String> = grant
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        if let Some(service) = &challenge.service {
            form.push(format!("service={}", encode(service)));
        }
        if let Some(scope) = scope {
            form.push(format!("scope={}", encode(scope)));
        }
        form.push(format!("client_id={CLIENT_ID}"));
        form.join("&")
    };
    let post = |form: String| -> Result<super::Response> {
        let realm_server = super::Registry::at(settings, host, tls, None)?;
        realm_server.send(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            super::Body::Bytes(form.as_bytes()),
        )
    };
    let response = if let Some(refresh_token) = identity_token {
        post(oauth_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ]))?
    } else {
        let posted = match password_login {
            Some(c) => Some(post(oauth_form(&[
                ("grant_type", "password"),
                ("username", &c.username),
                ("password", &c.password),
                ("access_type", "offline"),
            ]))?),
            None => None,
        };
        match posted {
            Some(response) if !matches!(response.status, 404 | 405) => response,
            _ => {
                let mut query = Vec::new();
                if let Some(service) = &challenge.service {
                    query.push(format!("service={}", encode(service)));
                }
                // Several scopes: one `scope` each, as the distribution client sends them.
                for scope in scope.unwrap_or_default().split_whitespace() {
                    query.push(format!("scope={}", encode(scope)));
                }
                if offline {
                    query.push("offline_token=true".to_string());
                    query.push(format!("client_id={CLIENT_ID}"));
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
                realm_server.send("GET", &target, &[], super::Body::Empty)?
            }
        }
    };
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
    struct Answer {
        #[serde(default)]
        token: String,
        #[serde(default)]
        access_token: String,
        #[serde(default)]
        expires_in: u64,
        #[serde(default)]
        issued_at: Option<String>,
        #[serde(default)]
        refresh_token: Option<String>,
    }
    let body = response.bytes(1 << 20)?;
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|e| Error::InvalidArgument(format!("token server {host}: {e}")))?;
    let token = if answer.token.is_empty() {
        answer.access_token
    } else {
        answer.token
    };
    if token.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "token server {host} answered without a token"
        )));
    }
    Ok(Token {
        header: format!("Bearer {token}"),
        lifetime: token_lifetime(answer.expires_in, answer.issued_at.as_deref(), received),
        refresh_token: answer.refresh_token.filter(|t| !t.is_empty()),
    })
}

/// How long from `received` a token with `expires_in` seconds (0: not
/// said) issued at `issued_at` (RFC 3339) may be used. `issued_at` only
/// shortens the lifetime: a clock that disagrees with the token server's
/// by more than the lifetime is ignored rather than making every token
/// stale on arrival.
fn token_lifetime(expires_in: u64, issued_at: Option<&str>, received: SystemTime) -> Duration {
    let lifetime = if expires_in == 0 {
        DEFAULT_TOKEN_LIFETIME
    } else {
        Duration::from_secs(expires_in)
    };
    let issued = issued_at
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    match issued.and_then(|issued| received.duration_since(issued).ok()) {
        Some(age) if age < lifetime => lifetime - age,
        _ => lifetime,
    }
}

/// Tokens the daemon holds, by realm, service, scope and credentials, so
/// the requests of a pull, its parallel layer downloads and later pulls and
/// pushes share one token while it lasts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    challenge: Challenge,
    scope: Option<String>,
    /// SHA-256 of the credentials (the cache does not keep passwords).
    credentials: Option<Digest>,
}

struct CachedToken {
    header: String,
    /// When it is no longer used (a little before it expires).
    stale_at: Instant,
}

fn token_cache() -> &'static Mutex<HashMap<TokenKey, CachedToken>> {
    static CACHE: OnceLock<Mutex<HashMap<TokenKey, CachedToken>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Bearer tokens for one registry, scope and set of credentials: from the
/// cache while they last, else from the token server.
pub(crate) struct TokenSource {
    settings: super::RegistrySettings,
    key: TokenKey,
    credentials: Option<Credentials>,
    /// Held while asking the token server, so parallel requests that find
    /// no token wait for one answer instead of each asking.
    fetching: Mutex<()>,
}

impl TokenSource {
    pub fn new(
        settings: &super::RegistrySettings,
        challenge: Challenge,
        credentials: Option<&Credentials>,
        scope: Option<&str>,
    ) -> TokenSource {
        TokenSource {
            settings: settings.clone(),
            key: TokenKey {
                challenge,
                scope: scope.map(str::to_string),
                credentials: credentials.map(|c| {
                    let identity = c.identity_token.as_deref().unwrap_or_default();
                    let all = format!("{}\0{}\0{identity}", c.username, c.password);
                    Digest::sha256_of(all.as_bytes())
                }),
            },
            credentials: credentials.cloned(),
            fetching: Mutex::new(()),
        }
    }

    fn cached(&self) -> Option<String> {
        let cache = token_cache().lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(&self.key)
            .filter(|t| Instant::now() < t.stale_at)
            .map(|t| t.header.clone())
    }

    /// A token that has not expired: the cached one, else a new one.
    pub fn authorization(&self) -> Result<String> {
        if let Some(header) = self.cached() {
            return Ok(header);
        }
        let _fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(header) = self.cached() {
            return Ok(header);
        }
        let token = fetch_token(
            &self.settings,
            &self.key.challenge,
            self.credentials.as_ref(),
            self.key.scope.as_deref(),
            false,
        )?;
        // Renewed a little early: a token must not expire on its way.
        let margin = (token.lifetime / 10).min(Duration::from_secs(10));
        let now = Instant::now();
        let mut cache = token_cache().lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, t| now < t.stale_at);
        cache.insert(
            self.key.clone(),
            CachedToken {
                header: token.header.clone(),
                stale_at: now + token.lifetime - margin,
            },
        );
        Ok(token.header)
    }

    /// A new token after the registry refused `stale` (expired early or
    /// revoked). A token another request already renewed is used as is.
    pub fn refresh(&self, stale: &str) -> Result<String> {
        {
            let mut cache = token_cache().lock().unwrap_or_else(|e| e.into_inner());
            if cache.get(&self.key).is_some_and(|t| t.header == stale) {
                cache.remove(&self.key);
            }
        }
        self.authorization()
    }
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
        let identity = base64::engine::general_purpose::STANDARD
            .encode(r#"{"username":"u","password":"","identitytoken":"refresh-1"}"#);
        let c = Credentials::from_header(&identity)
            .expect("valid header")
            .expect("credentials");
        assert_eq!(c.identity_token.as_deref(), Some("refresh-1"));
    }

    #[test]
    fn token_lifetimes_follow_expires_in_and_issued_at() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        assert_eq!(token_lifetime(0, None, now), Duration::from_secs(60));
        assert_eq!(token_lifetime(300, None, now), Duration::from_secs(300));
        // Issued 100 s before it arrived: 200 s are left.
        let issued = "2023-11-14T22:13:20Z";
        assert_eq!(
            token_lifetime(300, Some(issued), now),
            Duration::from_secs(200)
        );
        // A clock far from the token server's is not believed.
        assert_eq!(
            token_lifetime(60, Some(issued), now),
            Duration::from_secs(60)
        );
        assert_eq!(
            token_lifetime(300, Some("not a time"), now),
            Duration::from_secs(300)
        );
        let challenge = Challenge::parse(r#"Bearer realm="http://127.0.0.1:1/t",service="s""#)
            .expect("valid")
            .expect("bearer");
        assert_eq!(challenge.service.as_deref(), Some("s"));
        assert_eq!(Challenge::parse(r#"Basic realm="r""#).expect("valid"), None);
        assert!(Challenge::parse("Bearer service=\"s\"").is_err());
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
