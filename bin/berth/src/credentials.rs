//! Registry credentials kept as the docker CLI keeps them: `config.json` in
//! `--config`, else `$DOCKER_CONFIG`, else `~/.docker`, with `auths.<server>.auth`
//! (base64 of `user:password`) and `identitytoken` (a refresh token the
//! registry gave at login, kept instead of the password), or in a
//! credential helper named by `credHelpers.<server>` or `credsStore`
//! (`docker-credential-<name>` `get`/`store`/`erase`, JSON on stdin and
//! stdout; an identity token as the secret of the user `<token>`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::client::Failure;

/// Docker Hub's key in `auths`, as the docker CLI writes it.
pub const INDEX_SERVER: &str = "https://index.docker.io/v1/";

static CONFIG_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets the directory given with `--config`.
pub fn set_config_dir(dir: PathBuf) {
    let _ = CONFIG_DIR.set(dir);
}

fn config_dir() -> PathBuf {
    if let Some(dir) = CONFIG_DIR.get() {
        return dir.clone();
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker")
}

/// `host[:port]` of a server as written in `auths` or typed by a user
/// (`https://host/v1/` → `host`).
pub fn hostname(server: &str) -> &str {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    rest.split('/').next().unwrap_or(rest)
}

/// The key credentials for `registry` (a reference's domain) are kept under.
pub fn server_for_registry(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => INDEX_SERVER.to_owned(),
        other => other.to_owned(),
    }
}

/// The user name a credential helper keeps an identity token under, as
/// the docker CLI does.
const TOKEN_USERNAME: &str = "<token>";

/// A user name and password, or an identity token, for one server.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
    /// A refresh token from the registry's token server: sent instead of
    /// the password, which is then not kept.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The CLI's `config.json`, kept whole so keys Berth does not use survive.
pub struct CliConfig {
    path: PathBuf,
    document: Map<String, Value>,
}

impl CliConfig {
    pub fn load() -> Result<CliConfig, Failure> {
        let path = config_dir().join("config.json");
        let document = match std::fs::read(&path) {
            Ok(data) if data.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(data) => serde_json::from_slice(&data).map_err(|e| {
                Failure::Message(format!("loading config file {}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => {
                return Err(Failure::Message(format!(
                    "loading config file {}: {e}",
                    path.display()
                )))
            }
        };
        Ok(CliConfig { path, document })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a credential helper keeps `server`'s credentials.
    pub fn uses_helper(&self, server: &str) -> bool {
        self.helper(server).is_some()
    }

    /// The helper that keeps `server`'s credentials, if any.
    fn helper(&self, server: &str) -> Option<String> {
        let host = hostname(server);
        self.document
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|helpers| {
                helpers
                    .iter()
                    .find(|(k, _)| k.as_str() == server || hostname(k) == host)
                    .and_then(|(_, v)| v.as_str())
            })
            .or_else(|| self.document.get("credsStore").and_then(Value::as_str))
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
    }

    /// The `auths` key that matches `server` (by exact key or by host).
    fn auths_key(&self, server: &str) -> Option<String> {
        let auths = self.document.get("auths")?.as_object()?;
        if auths.contains_key(server) {
            return Some(server.to_owned());
        }
        let host = hostname(server);
        auths.keys().find(|k| hostname(k) == host).cloned()
    }

    pub fn is_logged_in(&self, server: &str) -> bool {
        self.auths_key(server).is_some()
    }

    /// The stored credentials for `server`.
    pub fn get(&self, server: &str) -> Result<Option<Login>, Failure> {
        if let Some(helper) = self.helper(server) {
            return helper_get(&helper, server);
        }
        let Some(key) = self.auths_key(server) else {
            return Ok(None);
        };
        let entry = &self.document["auths"][&key];
        let identity_token = entry
            .get("identitytoken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        let Some(auth) = entry.get("auth").and_then(Value::as_str) else {
            return Ok(identity_token.map(|token| Login {
                username: String::new(),
                password: String::new(),
                identity_token: Some(token),
            }));
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Failure::Message(format!(
                    "{}: auths.{key}.auth is not base64 of user:password",
                    self.path.display()
                ))
            })?;
        Ok(decoded.split_once(':').map(|(u, p)| Login {
            username: u.to_owned(),
            password: p.to_owned(),
            identity_token,
        }))
    }

    /// Keeps `login` for `server`: in its helper (config.json then names the
    /// server with an empty entry, as the docker CLI does) or in `auths`.
    pub fn store(&mut self, server: &str, login: &Login) -> Result<(), Failure> {
        let entry = match self.helper(server) {
            Some(helper) => {
                let (username, secret) = match &login.identity_token {
                    Some(token) => (TOKEN_USERNAME, token),
                    None => (login.username.as_str(), &login.password),
                };
                helper_run(
                    &helper,
                    "store",
                    &json!({"ServerURL": server, "Username": username, "Secret": secret})
                        .to_string(),
                )?;
                json!({})
            }
            None => {
                let pair = format!("{}:{}", login.username, login.password);
                let mut entry =
                    json!({"auth": base64::engine::general_purpose::STANDARD.encode(pair)});
                if let Some(token) = &login.identity_token {
                    entry["identitytoken"] = json!(token);
                }
                entry
            }
        };
        let old = self.auths_key(server);
        self.with_auths(|auths| {
            if let Some(old) = old {
                auths.remove(&old);
            }
            auths.insert(server.to_owned(), entry);
        });
        self.save()
    }

    /// Forgets `server`'s credentials, in its helper too.
    pub fn erase(&mut self, server: &str) -> Result<(), Failure> {
        if let Some(helper) = self.helper(server) {
            helper_run(&helper, "erase", server)?;
        }
        if let Some(key) = self.auths_key(server) {
            self.with_auths(|auths| {
                auths.remove(&key);
            });
        }
        self.save()
    }

    /// Changes `auths` (made an object if it is missing or is not one).
    fn with_auths(&mut self, change: impl FnOnce(&mut Map<String, Value>)) {
        let mut auths = match self.document.remove("auths") {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        change(&mut auths);
        self.document
            .insert("auths".to_owned(), Value::Object(auths));
    }

    /// Writes config.json (0600, replaced by rename so a crash leaves the old one).
    fn save(&self) -> Result<(), Failure> {
        use std::os::unix::fs::OpenOptionsExt;
        let failed = |e: std::io::Error| {
            Failure::Message(format!("saving config file {}: {e}", self.path.display()))
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(failed)?;
        let text = serde_json::to_string_pretty(&self.document)
            .map_err(|e| Failure::Message(e.to_string()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(failed)?;
        std::fs::rename(&tmp, &self.path).map_err(failed)
    }
}

/// The helper's message for a server it keeps nothing for.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; its stdout.
fn helper_run(helper: &str, action: &str, input: &str) -> Result<String, Failure> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Failure::Message(format!(
                "error getting credentials - err: exec: \"{program}\": {e}"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper may exit without reading; its answer tells what happened.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Failure::Message(format!("{program} {action}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        let said = if stdout.is_empty() {
            String::from_utf8_lossy(&out.stderr).trim().to_owned()
        } else {
            stdout
        };
        return Err(Failure::Message(format!(
            "{program} {action}: {said} ({})",
            out.status
        )));
    }
    Ok(stdout)
}

fn helper_get(helper: &str, server: &str) -> Result<Option<Login>, Failure> {
    let answer = match helper_run(helper, "get", server) {
        Ok(answer) => answer,
        Err(Failure::Message(m)) if m.contains(NOT_FOUND) => return Ok(None),
        Err(e) => return Err(e),
    };
    let value: Value = serde_json::from_str(&answer)
        .map_err(|e| Failure::Message(format!("docker-credential-{helper} get: not JSON: {e}")))?;
    let field = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let username = field("Username");
    if username.is_empty() {
        return Ok(None);
    }
    if username == TOKEN_USERNAME {
        return Ok(Some(Login {
            username: String::new(),
            password: String::new(),
            identity_token: Some(field("Secret")),
        }));
    }
    Ok(Some(Login {
        username,
        password: field("Secret"),
        identity_token: None,
    }))
}

/// `X-Registry-Auth` credentials for pulls and pushes of `registry`'s images.
pub fn for_registry(registry: &str) -> Result<Option<bollard::auth::DockerCredentials>, Failure> {
    let server = server_for_registry(registry);
    let config = CliConfig::load()?;
    Ok(config
        .get(&server)?
        .map(|login| bollard::auth::DockerCredentials {
            username: Some(login.username),
            password: Some(login.password),
            identitytoken: login.identity_token,
            serveraddress: Some(server),
            ..Default::default()
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_match_by_host() {
        assert_eq!(hostname("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(hostname("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(server_for_registry("docker.io"), INDEX_SERVER);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = CliConfig {
            path: dir.path().join("config.json"),
            document: serde_json::from_str(
                r#"{"auths":{"http://127.0.0.1:5000/v2/":{"auth":"dTpwOnc="}},"psFormat":"x"}"#,
            )
            .expect("json"),
        };
        let login = config.get("127.0.0.1:5000").expect("get").expect("stored");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("u", "p:w")
        );
        config
            .store(
                "127.0.0.1:5000",
                &Login {
                    username: "a".into(),
                    password: "b".into(),
                    identity_token: None,
                },
            )
            .expect("store");
        let saved = std::fs::read_to_string(dir.path().join("config.json")).expect("saved");
        assert!(
            saved.contains(r#""127.0.0.1:5000""#) && saved.contains("YTpi"),
            "{saved}"
        );
        assert!(
            saved.contains("psFormat") && !saved.contains("/v2/"),
            "{saved}"
        );
        // An identity token is kept beside the user name, without the password.
        let token = Login {
            username: "a".into(),
            password: String::new(),
            identity_token: Some("refresh-1".into()),
        };
        config.store("127.0.0.1:5000", &token).expect("store");
        let saved: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("config.json")).expect("saved"),
        )
        .expect("JSON");
        assert_eq!(
            saved["auths"]["127.0.0.1:5000"],
            json!({"auth": "YTo=", "identitytoken": "refresh-1"})
        );
        assert_eq!(config.get("127.0.0.1:5000").expect("get"), Some(token));
        config.erase("127.0.0.1:5000").expect("erase");
        assert!(!config.is_logged_in("127.0.0.1:5000"));
    }
}
