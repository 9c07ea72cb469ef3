//! htpasswd basic authentication: bcrypt entries (`$2y$`, `$2b$`, `$2a$`) only,
//! as registry:2 accepts. Credentials that verified once are remembered by
//! their sha256, so a push does not pay for bcrypt on every request.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<Vec<u8>>>,
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
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether an `Authorization` header value names a user with the right password.
    pub async fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(encoded) = authorization.and_then(|v| v.strip_prefix("Basic ")) else {
            return false;
        };
        let key = Sha256::digest(encoded.trim().as_bytes()).to_vec();
        if self.lock().contains(&key) {
            return true;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return false;
        };
        let Some(hash) = self.users.get(user).cloned() else {
            return false;
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok {
            self.lock().insert(key);
        }
        ok
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Vec<u8>>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
