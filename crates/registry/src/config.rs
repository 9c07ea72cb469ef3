//! The `--config FILE` of `berth registry serve`: YAML (so JSON too), one
//! top-level key per command-line flag, named as the flag is:
//!
//! ```yaml
//! addr: 127.0.0.1:5000
//! root: /var/lib/berth-registry
//! log-level: info
//! tls-cert: /etc/berth/registry.pem
//! tls-key: /etc/berth/registry-key.pem
//! htpasswd: /etc/berth/htpasswd
//! token-config: /etc/berth/token.json
//! gc-interval: 1h
//! gc-grace: 3600
//! gc-delete-untagged: false
//! upload-purge-after: 24h
//! max-manifest-bytes: 4194304
//! max-blob-bytes: 10737418240
//! ```
//!
//! Durations are seconds, or a number with `s`, `m`, `h` or `d`. An unknown
//! key or a bad value is an error naming the key; relative paths are taken
//! from the file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the file sets; every field is optional, flags override each.
#[derive(Debug, Default, PartialEq)]
pub struct FileConfig {
    pub addr: Option<SocketAddr>,
    pub root: Option<PathBuf>,
    pub log_level: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub htpasswd: Option<PathBuf>,
    pub token_config: Option<PathBuf>,
    pub gc_interval: Option<Duration>,
    pub gc_grace: Option<Duration>,
    pub gc_delete_untagged: Option<bool>,
    pub upload_purge_after: Option<Duration>,
    pub max_manifest_bytes: Option<usize>,
    pub max_blob_bytes: Option<u64>,
}

pub const KEYS: &[&str] = &[
    "addr",
    "root",
    "log-level",
    "tls-cert",
    "tls-key",
    "htpasswd",
    "token-config",
    "gc-interval",
    "gc-grace",
    "gc-delete-untagged",
    "upload-purge-after",
    "max-manifest-bytes",
    "max-blob-bytes",
];

pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: not YAML or JSON: {reason}")]
    Syntax { path: String, reason: String },
    #[error("config file {path}: expected a mapping of keys to values at the top")]
    NotMapping { path: String },
    #[error("config file {path}: unknown key {key:?} (known: {})", KEYS.join(", "))]
    UnknownKey { path: String, key: String },
    #[error("config file {path}: key {key:?}: {reason}")]
    Value {
        path: String,
        key: String,
        reason: String,
    },
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        FileConfig::parse(&text, &path.display().to_string(), base)
    }

    /// `name` is how errors call the file; relative paths are under `base`.
    pub fn parse(text: &str, name: &str, base: &Path) -> Result<FileConfig, ConfigError> {
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
                path: name.to_owned(),
                reason: e.to_string(),
            })?;
        let mapping = match value {
            serde_yaml::Value::Mapping(mapping) => mapping,
            // An empty file sets nothing.
            serde_yaml::Value::Null => serde_yaml::Mapping::new(),
            _ => {
                return Err(ConfigError::NotMapping {
                    path: name.to_owned(),
                })
            }
        };
        let mut config = FileConfig::default();
        for (key, value) in mapping {
            let key = match key {
                serde_yaml::Value::String(key) => key,
                other => format!("{other:?}"),
            };
            let bad = |reason: String| ConfigError::Value {
                path: name.to_owned(),
                key: key.clone(),
                reason,
            };
            let path_value = || -> Result<PathBuf, ConfigError> {
                let text = string(&value).map_err(&bad)?;
                if text.is_empty() {
                    return Err(bad("expected a path, got an empty string".into()));
                }
                Ok(base.join(text))
            };
            match key.as_str() {
                "addr" => {
                    let text = string(&value).map_err(&bad)?;
                    config.addr = Some(text.parse().map_err(|_| {
                        bad(format!(
                            "expected HOST:PORT with an IP address, got {text:?}"
                        ))
                    })?);
                }
                "root" => config.root = Some(path_value()?),
                "log-level" => {
                    let text = string(&value).map_err(&bad)?;
                    if !LOG_LEVELS.contains(&text.as_str()) {
                        return Err(bad(format!(
                            "expected one of {}, got {text:?}",
                            LOG_LEVELS.join(", ")
                        )));
                    }
                    config.log_level = Some(text);
                }
                "tls-cert" => config.tls_cert = Some(path_value()?),
                "tls-key" => config.tls_key = Some(path_value()?),
                "htpasswd" => config.htpasswd = Some(path_value()?),
                "token-config" => config.token_config = Some(path_value()?),
                "gc-interval" => config.gc_interval = Some(duration(&value).map_err(&bad)?),
                "gc-grace" => config.gc_grace = Some(duration(&value).map_err(&bad)?),
                "gc-delete-untagged" => {
                    config.gc_delete_untagged = Some(value.as_bool().ok_or_else(|| {
                        bad(format!("expected true or false, got {}", show(&value)))
                    })?)
                }
                "upload-purge-after" => {
                    config.upload_purge_after = Some(duration(&value).map_err(&bad)?)
                }
                "max-manifest-bytes" => {
                    let n = value
                        .as_u64()
                        .filter(|n| *n > 0)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            bad(format!(
                                "expected a positive number of bytes, got {}",
                                show(&value)
                            ))
                        })?;
                    config.max_manifest_bytes = Some(n);
                }
                "max-blob-bytes" => {
                    let n = value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                        bad(format!(
                            "expected a positive number of bytes, got {}",
                            show(&value)
                        ))
                    })?;
                    config.max_blob_bytes = Some(n);
                }
                _ => {
                    return Err(ConfigError::UnknownKey {
                        path: name.to_owned(),
                        key,
                    })
                }
            }
        }
        Ok(config)
    }
}

fn show(value: &serde_yaml::Value) -> String {
    serde_yaml::to_string(value)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| format!("{value:?}"))
}

fn string(value: &serde_yaml::Value) -> Result<String, String> {
    match value {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string, got {}", show(other))),
    }
}

fn duration(value: &serde_yaml::Value) -> Result<Duration, String> {
    match value {
        serde_yaml::Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("expected whole seconds, got {n}")),
        serde_yaml::Value::String(s) => parse_duration(s),
        other => Err(format!(
            "expected seconds or a duration such as 30m, got {}",
            show(other)
        )),
    }
}

/// Seconds, or a whole number with `s`, `m`, `h` or `d`: `90`, `30m`, `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if scale > 0 => Ok(Duration::from_secs(n.saturating_mul(scale))),
        _ => Err(format!(
            "expected seconds or a duration such as 90s, 30m, 24h, 7d; got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_and_paths_are_taken_from_the_file() {
        let text = "addr: 127.0.0.1:5001\nroot: data\nlog-level: warn\ntls-cert: c.pem\n\
                    tls-key: /k.pem\nhtpasswd: h\ntoken-config: t.json\ngc-interval: 10m\n\
                    gc-grace: 30\ngc-delete-untagged: true\nupload-purge-after: 2d\n\
                    max-manifest-bytes: 1024\nmax-blob-bytes: 2048\n";
        let config = FileConfig::parse(text, "f", Path::new("/etc/r")).expect("parse");
        assert_eq!(config.addr, Some("127.0.0.1:5001".parse().expect("addr")));
        assert_eq!(config.root.as_deref(), Some(Path::new("/etc/r/data")));
        assert_eq!(config.tls_key.as_deref(), Some(Path::new("/k.pem")));
        assert_eq!(config.gc_interval, Some(Duration::from_secs(600)));
        assert_eq!(config.gc_grace, Some(Duration::from_secs(30)));
        assert_eq!(config.gc_delete_untagged, Some(true));
        assert_eq!(config.upload_purge_after, Some(Duration::from_secs(172800)));
        assert_eq!(config.max_manifest_bytes, Some(1024));
        assert_eq!(config.max_blob_bytes, Some(2048));
        assert_eq!(config.log_level.as_deref(), Some("warn"));
        let json = FileConfig::parse(r#"{"gc-grace": "1h"}"#, "f", Path::new("/")).expect("json");
        assert_eq!(json.gc_grace, Some(Duration::from_secs(3600)));
        assert_eq!(
            FileConfig::parse("", "f", Path::new("/")).ok(),
            Some(FileConfig::default())
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        for (text, key) in [
            ("gc-intervall: 5", "gc-intervall"),
            ("addr: localhost:5000", "addr"),
            ("gc-grace: soon", "gc-grace"),
            ("gc-grace: -5", "gc-grace"),
            ("gc-delete-untagged: yes please", "gc-delete-untagged"),
            ("max-manifest-bytes: 0", "max-manifest-bytes"),
            ("max-blob-bytes: 1.5", "max-blob-bytes"),
            ("log-level: loud", "log-level"),
            ("root: [a]", "root"),
        ] {
            let error = FileConfig::parse(text, "f", Path::new("/"))
                .expect_err(text)
                .to_string();
            assert!(error.contains(&format!("\"{key}\"")), "{text}: {error}");
        }
    }
}
