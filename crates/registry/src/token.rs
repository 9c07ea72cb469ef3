//! Token authentication as Docker's registry offers it: a token endpoint that
//! takes htpasswd credentials (or none), a `service` and `scope`s, and issues
//! an ES256 JWT granting what the access rules allow; the registry side
//! checks the token's signature, issuer, audience, lifetime and scope.
//! Credentials come as a GET with basic authorization or as an OAuth2 POST
//! form (`grant_type=password` or `refresh_token`); an offline request
//! (`offline_token=true`, `access_type=offline`) also gets a refresh token,
//! a JWT of its own kind that only the token endpoint takes.
//!
//! The JWT header carries a `kid` in libtrust's form (what distribution's
//! `rootcertbundle` trust is keyed by), so other registries that trust a
//! certificate of the signing key accept these tokens too.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::auth::Htpasswd;

/// Clock skew tolerated on `exp` and `nbf`, as distribution does.
const LEEWAY_SECS: u64 = 60;

/// The token configuration file (`--token-config`, JSON).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// This registry's service name: the `aud` its tokens must carry.
    pub service: String,
    /// `iss` of the tokens issued and accepted.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// The realm clients are sent to; by default this server's own token
    /// path at the address the client used.
    #[serde(default)]
    pub realm: Option<String>,
    /// Path of the token endpoint on this server.
    #[serde(default = "default_path")]
    pub path: String,
    /// PKCS#8 PEM P-256 private key to sign with; without one a key is made
    /// at start, and tokens do not outlive the process.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Token lifetime in seconds.
    #[serde(default = "default_expiration")]
    pub expiration: u64,
    /// Refresh token lifetime in seconds.
    #[serde(default = "default_refresh_expiration")]
    pub refresh_expiration: u64,
    /// Further services (other registries trusting this key) the endpoint
    /// issues tokens for, under the same rules.
    #[serde(default)]
    pub other_services: Vec<String>,
    #[serde(default)]
    pub access: Vec<AccessRule>,
}

fn default_issuer() -> String {
    "berth-registry".into()
}

fn default_path() -> String {
    "/auth/token".into()
}

fn default_expiration() -> u64 {
    300
}

/// 90 days: a `docker login` lasts about as long as a password would.
fn default_refresh_expiration() -> u64 {
    90 * 24 * 3600
}

/// The `token_use` claim of a refresh token; access tokens have none.
const REFRESH_USE: &str = "refresh";

/// Who may do what on which repositories. Rules add up; nothing is granted
/// that no rule names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// A user of the htpasswd file, or `*` for any signed-in user.
    #[serde(default)]
    pub account: Option<String>,
    /// The rule applies to everyone, signed in or not.
    #[serde(default)]
    pub anonymous: bool,
    /// Repository name pattern: `*` matches any run of characters, and
    /// `${account}` stands for the signed-in user's name.
    pub repository: String,
    /// `pull`, `push`, `delete`, or `*` for all three.
    pub actions: Vec<String>,
}

/// A set of repository actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    const ALL: Actions = Actions(7);

    fn parse(text: &str) -> Option<Actions> {
        match text {
            "pull" => Some(Actions::PULL),
            "push" => Some(Actions::PUSH),
            "delete" => Some(Actions::DELETE),
            "*" => Some(Actions::ALL),
            _ => None,
        }
    }

    fn parse_list(text: &str) -> Actions {
        text.split(',')
            .filter_map(|a| Actions::parse(a.trim()))
            .fold(Actions::default(), Actions::union)
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    fn names(self) -> Vec<&'static str> {
        [
            (Actions::PULL, "pull"),
            (Actions::PUSH, "push"),
            (Actions::DELETE, "delete"),
        ]
        .into_iter()
        .filter(|(a, _)| self.contains(*a))
        .map(|(_, name)| name)
        .collect()
    }
}

/// What a request needs: nothing but a valid token (`/v2/`), the catalog,
/// or actions on one repository.
#[derive(Clone, Debug)]
pub enum Needed {
    Login,
    Catalog,
    Repository(String, Actions),
}

impl Needed {
    /// The scope a client should ask for, as in the challenge. Pushes ask for
    /// `pull,push`, as distribution's challenges do.
    fn scope(&self) -> Option<String> {
        match self {
            Needed::Login => None,
            Needed::Catalog => Some("registry:catalog:*".into()),
            Needed::Repository(name, actions) => {
                let asked = if actions.contains(Actions::PUSH) {
                    actions.union(Actions::PULL)
                } else {
                    *actions
                };
                Some(format!("repository:{name}:{}", asked.names().join(",")))
            }
        }
    }
}

/// Why a request was refused; each carries the `WWW-Authenticate` challenge.
#[derive(Debug)]
pub enum Refusal {
    /// No token, or one that is not valid here: 401.
    Unauthenticated(String),
    /// A valid token without the scope needed: 403 with
    /// `error="insufficient_scope"` (RFC 6750), so a client that holds a
    /// token for less asks the realm again for this scope.
    InsufficientScope(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenConfigError {
    #[error("token config {path}: {reason}")]
    Invalid { path: String, reason: String },
}

pub struct TokenAuth {
    config: TokenConfig,
    users: Option<Htpasswd>,
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
    /// sha256 of a token whose signature verified → its claims, so a pull
    /// pays for one ECDSA verification, not one per request. Lifetime,
    /// audience and issuer are still checked every time.
    verified:
        std::sync::Mutex<std::collections::HashMap<[u8; 32], std::sync::Arc<serde_json::Value>>>,
}

/// Verified tokens remembered before the cache starts over.
const VERIFIED_CACHE: usize = 1024;

/// How the token endpoint is told who asks.
pub enum Grant<'a> {
    /// A GET: the `Authorization` header, if any (none: anonymous).
    Basic(Option<&'a str>),
    /// An OAuth2 POST with `grant_type=password`.
    Password {
        username: &'a str,
        password: &'a str,
    },
    /// An OAuth2 POST with `grant_type=refresh_token`.
    Refresh(&'a str),
}

/// What the token endpoint was asked.
pub struct TokenRequest<'a> {
    pub grant: Grant<'a>,
    pub service: Option<&'a str>,
    pub scopes: Vec<&'a str>,
    /// A refresh token is wanted too (`offline_token=true`,
    /// `access_type=offline`); given only to a signed-in user.
    pub offline: bool,
}

pub enum TokenAnswer {
    /// The JSON body to send with 200.
    Issued(serde_json::Value),
    BadCredentials,
    /// A refresh token that is not valid (expired, another key's, for
    /// another service, or its user is gone).
    BadRefreshToken,
    UnknownService(String),
}

impl TokenAuth {
    pub fn load(path: &Path, users: Option<Htpasswd>) -> Result<TokenAuth, TokenConfigError> {
        let invalid = |reason: String| TokenConfigError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let config: TokenConfig =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if config.service.is_empty() {
            return Err(invalid("\"service\" must not be empty".into()));
        }
        if !config.path.starts_with('/') || config.path.starts_with("/v2") {
            return Err(invalid(format!(
                "\"path\" {:?} must start with / and lie outside /v2",
                config.path
            )));
        }
        for (i, rule) in config.access.iter().enumerate() {
            if rule.anonymous == rule.account.is_some() {
                return Err(invalid(format!(
                    "access rule {i}: give either \"account\" (a user or \"*\") or \"anonymous\": true"
                )));
            }
            if let Some(bad) = rule.actions.iter().find(|a| Actions::parse(a).is_none()) {
                return Err(invalid(format!(
                    "access rule {i}: unknown action {bad:?}; expected pull, push, delete or *"
                )));
            }
        }
        let rng = SystemRandom::new();
        let pkcs8 = match &config.key {
            Some(key) => {
                let pem = std::fs::read(key)
                    .map_err(|e| invalid(format!("key {}: {e}", key.display())))?;
                match PrivateKeyDer::from_pem_slice(&pem) {
                    Ok(PrivateKeyDer::Pkcs8(der)) => der.secret_pkcs8_der().to_vec(),
                    _ => {
                        return Err(invalid(format!(
                            "key {}: expected a PKCS#8 PEM (BEGIN PRIVATE KEY) P-256 key",
                            key.display()
                        )))
                    }
                }
            }
            None => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| invalid("cannot make a signing key".into()))?
                .as_ref()
                .to_vec(),
        };
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                .map_err(|e| invalid(format!("signing key is not a P-256 key: {e}")))?;
        let kid = libtrust_key_id(key.public_key().as_ref());
        Ok(TokenAuth {
            config,
            users,
            key,
            kid,
            rng,
            verified: Default::default(),
        })
    }

    pub fn path(&self) -> &str {
        &self.config.path
    }

    /// The realm to send clients to; `origin` is `<scheme>://<host>` as the
    /// client reached this server.
    fn realm(&self, origin: &str) -> String {
        self.config
            .realm
            .clone()
            .unwrap_or_else(|| format!("{origin}{}", self.config.path))
    }

    /// Answers the token endpoint.
    pub async fn issue(&self, request: TokenRequest<'_>) -> TokenAnswer {
        let service = request.service.unwrap_or(&self.config.service);
        if service != self.config.service
            && !self.config.other_services.iter().any(|s| s == service)
        {
            return TokenAnswer::UnknownService(service.to_owned());
        }
        let basic;
        let authorization = match request.grant {
            Grant::Basic(authorization) => authorization,
            Grant::Password { username, password } => {
                let pair = format!("{username}:{password}");
                basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                );
                Some(basic.as_str())
            }
            Grant::Refresh(refresh_token) => match self.refresh_account(refresh_token, service) {
                Some(account) => return self.issue_for(Some(account), service, &request),
                None => return TokenAnswer::BadRefreshToken,
            },
        };
        let account = match (&self.users, authorization) {
            (_, None) => None,
            (Some(users), Some(authorization)) => match users.user(Some(authorization)).await {
                Some(user) => Some(user),
                None => return TokenAnswer::BadCredentials,
            },
            (None, Some(_)) => return TokenAnswer::BadCredentials,
        };
        self.issue_for(account, service, &request)
    }

    /// A token for `account` (None: anonymous) on `service` with what the
    /// rules give it of the scopes asked, and a refresh token if asked.
    fn issue_for(
        &self,
        account: Option<String>,
        service: &str,
        request: &TokenRequest<'_>,
    ) -> TokenAnswer {
        let mut access: Vec<serde_json::Value> = Vec::new();
        for scope in request.scopes.iter().flat_map(|s| s.split(' ')) {
            let Some((kind, rest)) = scope.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            // `repository(plugin)` is a class of repository.
            let kind = kind.split('(').next().unwrap_or(kind);
            let granted: Vec<&str> = match kind {
                "repository" => self
                    .granted(account.as_deref(), name)
                    .intersect(Actions::parse_list(actions))
                    .names(),
                "registry" if name == "catalog" && self.catalog_allowed(account.as_deref()) => {
                    vec!["*"]
                }
                _ => Vec::new(),
            };
            access.push(serde_json::json!({ "type": kind, "name": name, "actions": granted }));
        }
        let now = unix_now();
        let claims = serde_json::json!({
            "iss": self.config.issuer,
            "sub": account.clone().unwrap_or_default(),
            "aud": service,
            "exp": now + self.config.expiration,
            "nbf": now.saturating_sub(1),
            "iat": now,
            "jti": crate::upload::random_id(),
            "access": access,
        });
        let token = self.sign(&claims);
        let mut answer = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": self.config.expiration,
            "issued_at": rfc3339(now),
        });
        if let (true, Some(account)) = (request.offline, &account) {
            let refresh = serde_json::json!({
                "iss": self.config.issuer,
                "sub": account,
                "aud": service,
                "exp": now + self.config.refresh_expiration,
                "iat": now,
                "jti": crate::upload::random_id(),
                "token_use": REFRESH_USE,
                "password_fingerprint": self
                    .users
                    .as_ref()
                    .and_then(|u| u.password_fingerprint(account)),
            });
            answer["refresh_token"] = serde_json::json!(self.sign(&refresh));
        }
        TokenAnswer::Issued(answer)
    }

    /// The user a refresh token this server issued for `service` names,
    /// while it lasts and the user is in the htpasswd file with the
    /// password the token was got with.
    fn refresh_account(&self, refresh_token: &str, service: &str) -> Option<String> {
        let claims = self.verify_signature(refresh_token)?;
        let now = unix_now();
        let valid = claims["token_use"] == REFRESH_USE
            && claims["iss"] == self.config.issuer.as_str()
            && claims["aud"] == service
            && claims["exp"].as_u64()? + LEEWAY_SECS >= now;
        let account = claims["sub"].as_str()?;
        let known = self
            .users
            .as_ref()
            .and_then(|u| u.password_fingerprint(account))
            .is_some_and(|f| claims["password_fingerprint"] == f.as_str());
        (valid && known).then(|| account.to_owned())
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({ "typ": "JWT", "alg": "ES256", "kid": self.kid });
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        // Signing with a key that loaded cannot fail but for a broken RNG;
        // an empty signature then makes a token nobody accepts.
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map(|s| b64.encode(s.as_ref()))
            .unwrap_or_default();
        format!("{signing_input}.{signature}")
    }

    /// The actions the rules give `account` (None: anonymous) on `name`.
    fn granted(&self, account: Option<&str>, name: &str) -> Actions {
        self.config
            .access
            .iter()
            .filter(|rule| rule_applies(rule, account))
            .filter(|rule| {
                let pattern = match account {
                    Some(account) => rule.repository.replace("${account}", account),
                    None => rule.repository.clone(),
                };
                glob_match(&pattern, name)
            })
            .flat_map(|rule| rule.actions.iter().filter_map(|a| Actions::parse(a)))
            .fold(Actions::default(), Actions::union)
    }

    /// The catalog lists every repository, so it needs pull on all of them.
    fn catalog_allowed(&self, account: Option<&str>) -> bool {
        self.config.access.iter().any(|rule| {
            rule_applies(rule, account)
                && rule.repository == "*"
                && rule
                    .actions
                    .iter()
                    .filter_map(|a| Actions::parse(a))
                    .any(|a| a.contains(Actions::PULL))
        })
    }

    /// Checks the bearer token of a registry request against what it needs.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        needed: &Needed,
        origin: &str,
    ) -> Result<(), Refusal> {
        let challenge = |error: Option<&str>| {
            let mut text = format!(
                "Bearer realm=\"{}\",service=\"{}\"",
                self.realm(origin),
                self.config.service
            );
            if let Some(scope) = needed.scope() {
                text.push_str(&format!(",scope=\"{scope}\""));
            }
            if let Some(error) = error {
                text.push_str(&format!(",error=\"{error}\""));
            }
            text
        };
        let Some(token) = authorization.and_then(|v| v.strip_prefix("Bearer ")) else {
            return Err(Refusal::Unauthenticated(challenge(None)));
        };
        let Some(claims) = self.verify(token.trim()) else {
            return Err(Refusal::Unauthenticated(challenge(Some("invalid_token"))));
        };
        let held = |kind: &str, name: &str| -> Actions {
            claims["access"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|entry| entry["type"] == kind && entry["name"] == name)
                .flat_map(|entry| entry["actions"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().and_then(Actions::parse))
                .fold(Actions::default(), Actions::union)
        };
        let has = match needed {
            Needed::Login => true,
            Needed::Catalog => held("registry", "catalog") != Actions::default(),
            Needed::Repository(name, actions) => held("repository", name).contains(*actions),
        };
        if has {
            Ok(())
        } else {
            Err(Refusal::InsufficientScope(challenge(Some(
                "insufficient_scope",
            ))))
        }
    }

    /// Whether a token for `name` would let the request's bearer pull it;
    /// used for cross-repository mounts, which fall back to an upload.
    pub fn may_pull(&self, authorization: Option<&str>, name: &str, origin: &str) -> bool {
        let needed = Needed::Repository(name.to_owned(), Actions::PULL);
        self.authorize(authorization, &needed, origin).is_ok()
    }

    /// The claims of a token this server signed that is valid now for its
    /// service.
    fn verify(&self, token: &str) -> Option<std::sync::Arc<serde_json::Value>> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.cache().get(&key).cloned();
        let claims = match cached {
            Some(claims) => claims,
            None => {
                let claims = std::sync::Arc::new(self.verify_signature(token)?);
                let mut cache = self.cache();
                if cache.len() >= VERIFIED_CACHE {
                    cache.clear();
                }
                cache.insert(key, claims.clone());
                claims
            }
        };
        if !claims["token_use"].is_null() {
            // A refresh token is no access token.
            return None;
        }
        let now = unix_now();
        let fresh = claims["exp"].as_u64()? + LEEWAY_SECS >= now
            && claims["nbf"].as_u64().unwrap_or(0) <= now + LEEWAY_SECS;
        let audience_ok = match &claims["aud"] {
            serde_json::Value::String(aud) => aud == &self.config.service,
            serde_json::Value::Array(auds) => auds.iter().any(|a| a == &self.config.service),
            _ => false,
        };
        (fresh && audience_ok && claims["iss"] == self.config.issuer.as_str()).then_some(claims)
    }

    /// The claims of a token this server signed.
    fn verify_signature(&self, token: &str) -> Option<serde_json::Value> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, claims) = signing_input.split_once('.')?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value = serde_json::from_slice(&b64.decode(header).ok()?).ok()?;
        if header["alg"] != "ES256" {
            return None;
        }
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        public
            .verify(signing_input.as_bytes(), &b64.decode(signature).ok()?)
            .ok()?;
        serde_json::from_slice(&b64.decode(claims).ok()?).ok()
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<[u8; 32], std::sync::Arc<serde_json::Value>>,
    > {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn rule_applies(rule: &AccessRule, account: Option<&str>) -> bool {
    rule.anonymous
        || match (rule.account.as_deref(), account) {
            (Some("*"), Some(_)) => true,
            (Some(wanted), Some(account)) => wanted == account,
            _ => false,
        }
}

/// `*` matches any run of characters (slashes included); the rest literally.
fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob_match(tail, &rest[i..]))
        }
    }
}

/// `secs` since the epoch as RFC 3339 UTC (`issued_at`).
fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// libtrust's key ID: the first 240 bits of the sha256 of the key's DER
/// SubjectPublicKeyInfo, in base32, in groups of four joined by `:`.
fn libtrust_key_id(uncompressed_point: &[u8]) -> String {
    // SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 } BIT STRING header.
    const P256_SPKI_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(uncompressed_point);
    let hash = Sha256::digest(&spki);
    let encoded = base32(&hash[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32 without padding.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(rules: serde_json::Value) -> TokenAuth {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token.json");
        let config = serde_json::json!({ "service": "reg", "access": rules });
        std::fs::write(&path, config.to_string()).expect("write config");
        TokenAuth::load(&path, None).expect("load")
    }

    #[test]
    fn patterns_match_like_globs() {
        assert!(glob_match("*", "a/b"));
        assert!(glob_match("team/*", "team/x/y"));
        assert!(!glob_match("team/*", "teams/x"));
        assert!(glob_match("a*c", "abbc"));
        assert!(!glob_match("a", "ab"));
    }

    #[test]
    fn base32_follows_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }

    #[tokio::test]
    async fn tokens_grant_what_the_rules_allow_and_verify() {
        let auth = auth(serde_json::json!([
            { "anonymous": true, "repository": "public/*", "actions": ["pull"] },
        ]));
        let TokenAnswer::Issued(body) = auth
            .issue(TokenRequest {
                grant: Grant::Basic(None),
                service: Some("reg"),
                scopes: vec!["repository:public/x:pull,push", "repository:private:pull"],
                offline: true,
            })
            .await
        else {
            panic!("no token");
        };
        let token = body["token"].as_str().expect("token");
        assert!(body["refresh_token"].is_null(), "anonymous refresh token");
        let claims = auth.verify(token).expect("verifies");
        assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
        assert_eq!(claims["access"][1]["actions"], serde_json::json!([]));
        let bearer = format!("Bearer {token}");
        let pull = Needed::Repository("public/x".into(), Actions::PULL);
        assert!(auth.authorize(Some(&bearer), &pull, "http://h").is_ok());
        let push = Needed::Repository("public/x".into(), Actions::PUSH);
        assert!(matches!(
            auth.authorize(Some(&bearer), &push, "http://h"),
            Err(Refusal::InsufficientScope(c)) if c.contains("insufficient_scope")
        ));
        let tampered = format!("{}x", &bearer[..bearer.len() - 1]);
        assert!(auth.authorize(Some(&tampered), &pull, "http://h").is_err());
        let other = self::auth(serde_json::json!([]));
        assert!(
            other.verify(token).is_none(),
            "another key's token accepted"
        );
    }

    #[tokio::test]
    async fn password_grants_give_refresh_tokens_that_only_get_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = dir.path().join("htpasswd");
        let hash = bcrypt::hash("pw", 4).expect("bcrypt");
        std::fs::write(&htpasswd, format!("alice:{hash}\n")).expect("write htpasswd");
        let path = dir.path().join("token.json");
        let rules = r#"[{"account":"*","repository":"${account}/*","actions":["*"]}]"#;
        std::fs::write(
            &path,
            format!(r#"{{"service":"reg","other_services":["other"],"access":{rules}}}"#),
        )
        .expect("write config");
        let users = || Htpasswd::load(&htpasswd).expect("htpasswd");
        let auth = TokenAuth::load(&path, Some(users())).expect("load");
        let ask = |grant, service, offline| TokenRequest {
            grant,
            service: Some(service),
            scopes: vec!["repository:alice/x:pull,push"],
            offline,
        };
        let password = |p| Grant::Password {
            username: "alice",
            password: p,
        };
        assert!(matches!(
            auth.issue(ask(password("wrong"), "reg", true)).await,
            TokenAnswer::BadCredentials
        ));
        let TokenAnswer::Issued(body) = auth.issue(ask(password("pw"), "reg", true)).await else {
            panic!("password grant refused");
        };
        let refresh = body["refresh_token"].as_str().expect("refresh token");
        let pull = Needed::Repository("alice/x".into(), Actions::PULL);
        let bearer = |t: &str| format!("Bearer {t}");
        assert!(auth
            .authorize(
                Some(&bearer(body["access_token"].as_str().expect("token"))),
                &pull,
                "h"
            )
            .is_ok());
        assert!(
            auth.authorize(Some(&bearer(refresh)), &Needed::Login, "h")
                .is_err(),
            "a refresh token was taken as an access token"
        );
        let TokenAnswer::Issued(renewed) =
            auth.issue(ask(Grant::Refresh(refresh), "reg", false)).await
        else {
            panic!("refresh grant refused");
        };
        assert!(renewed["refresh_token"].is_null());
        let claims = auth
            .verify(renewed["token"].as_str().expect("token"))
            .expect("verifies");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(
            claims["access"][0]["actions"],
            serde_json::json!(["pull", "push"])
        );
        // Not for another service, not an access token, not once the user is gone.
        for (grant, service) in [
            (Grant::Refresh(refresh), "other"),
            (
                Grant::Refresh(body["token"].as_str().expect("token")),
                "reg",
            ),
        ] {
            assert!(matches!(
                auth.issue(ask(grant, service, false)).await,
                TokenAnswer::BadRefreshToken
            ));
        }
        // Not once the user's password changed, nor once the user is gone.
        let other_hash = bcrypt::hash("new-pw", 4).expect("bcrypt");
        let mut auth = auth;
        for entry in [format!("alice:{other_hash}\n"), format!("bob:{hash}\n")] {
            std::fs::write(&htpasswd, entry).expect("write htpasswd");
            auth.users = Some(users());
            assert!(matches!(
                auth.issue(ask(Grant::Refresh(refresh), "reg", false)).await,
                TokenAnswer::BadRefreshToken
            ));
        }
    }

    #[test]
    fn expired_early_and_foreign_tokens_are_refused() {
        let auth = auth(serde_json::json!([]));
        let now = unix_now();
        let claims = |exp: u64, nbf: u64, iss: &str, aud: &str| serde_json::json!({ "iss": iss, "aud": aud, "exp": exp, "nbf": nbf, "access": [] });
        let issuer = auth.config.issuer.clone();
        assert!(auth
            .verify(&auth.sign(&claims(now + 10, now, &issuer, "reg")))
            .is_some());
        for bad in [
            claims(now - 2 * LEEWAY_SECS, now - 3 * LEEWAY_SECS, &issuer, "reg"),
            claims(
                now + 10 * LEEWAY_SECS,
                now + 5 * LEEWAY_SECS,
                &issuer,
                "reg",
            ),
            claims(now + 10, now, "someone-else", "reg"),
            claims(now + 10, now, &issuer, "other-registry"),
        ] {
            assert!(auth.verify(&auth.sign(&bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn rules_need_an_account_or_anonymous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token.json");
        let config = r#"{"service":"reg","access":[{"repository":"*","actions":["pull"]}]}"#;
        std::fs::write(&path, config).expect("write config");
        let err = TokenAuth::load(&path, None).err().expect("refused");
        assert!(err.to_string().contains("access rule 0"), "{err}");
    }
}
