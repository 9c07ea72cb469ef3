//! htpasswd basic authentication: bcrypt entries (`$2y$`, `$2b$`, `$2a$`) only,
//! as registry:2 accepts. Credentials that verified once are remembered by
//! their sha256, so a push does not pay for bcrypt on every request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

pub struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256 of a verified `Authorization` value → its user.
    verified: Mutex<HashMap<Vec<u8>, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("htpasswd file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "htpasswd file {path} line {line}: expected user:<bcrypt hash starting $2y$, $2b$ or $2a$>"
    )]
    Entry { path: String, line: usize },
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, hash))
                    if !user.is_empty()
                        && ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) =>
                {
                    users.insert(user.to_owned(), hash.to_owned());
                }
                _ => {
                    return Err(HtpasswdError::Entry {
                        path: path.display().to_string(),
                        line: i + 1,
                    })
                }
            }
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The user an `Authorization: Basic` header value names, if its
    /// password is right.
    pub async fn user(&self, authorization: Option<&str>) -> Option<String> {
        let encoded = authorization.and_then(|v| v.strip_prefix("Basic "))?.trim();
        let key = Sha256::digest(encoded.as_bytes()).to_vec();
        if let Some(user) = self.lock().get(&key) {
            return Some(user.clone());
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let hash = self.users.get(user).cloned()?;
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !ok {
            return None;
        }
        self.lock().insert(key, user.to_owned());
        Some(user.to_owned())
    }

    /// A short fingerprint of `user`'s password hash (None: no such user):
    /// a refresh token carries it, so a new password ends the tokens the
    /// old one got.
    pub fn password_fingerprint(&self, user: &str) -> Option<String> {
        let hash = self.users.get(user)?;
        Some(hex::encode(&Sha256::digest(hash.as_bytes())[..12]))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, String>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
