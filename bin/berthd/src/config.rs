//! berthd's configuration: dockerd's flags and daemon.json keys, merged the
//! way dockerd merges them (a key given both ways is an error; unknown keys
//! in the file are an error).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "berthd",
    version,
    about = "The Berth daemon: a Docker Engine API server"
)]
pub struct Flags {
    /// Daemon socket(s) to listen on: unix:///path or tcp://host:port (repeatable)
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Root directory of persistent state
    #[arg(long = "data-root")]
    pub data_root: Option<PathBuf>,
    /// Root directory of execution state
    #[arg(long = "exec-root")]
    pub exec_root: Option<PathBuf>,
    /// Daemon configuration file
    #[arg(long = "config-file", default_value = DEFAULT_CONFIG_FILE)]
    pub config_file: PathBuf,
    /// Storage driver: overlay2 or vfs
    #[arg(short = 's', long = "storage-driver")]
    pub storage_driver: Option<String>,
    /// Path of the daemon's pid file
    #[arg(short = 'p', long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// Log level: debug, info, warn, error, fatal
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Group that owns the UNIX socket (0660) when it exists; otherwise 0600
    #[arg(short = 'G', long = "group")]
    pub group: Option<String>,
    /// Allow tcp:// hosts without TLS (anyone who can connect is root)
    #[arg(long = "insecure-plain-tcp")]
    pub insecure_plain_tcp: bool,
}

pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

#[derive(Debug)]
pub struct DaemonConfig {
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub storage_driver: Option<String>,
    pub pidfile: Option<PathBuf>,
    pub log_level: String,
    pub debug: bool,
    pub group: String,
}

/// daemon.json keys dockerd knows that berthd accepts; the ones it does not
/// act on yet are logged when set.
const KNOWN_KEYS: &[&str] = &[
    "hosts",
    "data-root",
    "exec-root",
    "storage-driver",
    "pidfile",
    "log-level",
    "debug",
    "group",
    "storage-opts",
    "insecure-registries",
    "registry-mirrors",
    "runtimes",
    "default-runtime",
    "log-driver",
    "log-opts",
    "live-restore",
    "default-ulimits",
    "features",
    "experimental",
    "labels",
    "max-concurrent-downloads",
    "max-concurrent-uploads",
    "dns",
    "dns-opts",
    "dns-search",
    "bridge",
    "bip",
    "iptables",
    "ip-forward",
    "ip-masq",
    "userland-proxy",
    "default-address-pools",
    "shutdown-timeout",
    "tls",
    "tlsverify",
    "tlscacert",
    "tlscert",
    "tlskey",
    "selinux-enabled",
    "seccomp-profile",
    "no-new-privileges",
    "cgroup-parent",
    "exec-opts",
    "mtu",
    "ipv6",
    "fixed-cidr",
    "fixed-cidr-v6",
    "init",
    "init-path",
];

impl DaemonConfig {
    pub fn resolve(flags: &Flags) -> Result<DaemonConfig> {
        let file = read_file(flags)?;
        let mut both = Vec::new();
        let mut pick_str = |key: &str, flag: Option<String>| -> Result<Option<String>> {
            let from_file = match file.get(key) {
                Some(v) => Some(
                    v.as_str()
                        .with_context(|| format!("daemon.json: {key} must be a string"))?
                        .to_string(),
                ),
                None => None,
            };
            match (flag, from_file) {
                (Some(f), Some(v)) => {
                    both.push(format!("{key}: (from flag: {f}, from file: {v})"));
                    Ok(Some(f))
                }
                (f, v) => Ok(f.or(v)),
            }
        };
        let data_root = pick_str(
            "data-root",
            flags.data_root.as_ref().map(|p| p.display().to_string()),
        )?;
        let exec_root = pick_str(
            "exec-root",
            flags.exec_root.as_ref().map(|p| p.display().to_string()),
        )?;
        let storage_driver = pick_str("storage-driver", flags.storage_driver.clone())?;
        let pidfile = pick_str(
            "pidfile",
            flags.pidfile.as_ref().map(|p| p.display().to_string()),
        )?;
        let log_level = pick_str("log-level", flags.log_level.clone())?;
        let group = pick_str("group", flags.group.clone())?;
        let hosts = match (flags.hosts.is_empty(), file.get("hosts")) {
            (false, Some(_)) => {
                both.push("hosts".to_string());
                Vec::new()
            }
            (false, None) => flags.hosts.clone(),
            (true, Some(v)) => serde_json::from_value::<Vec<String>>(v.clone())
                .context("daemon.json: hosts must be a list of strings")?,
            (true, None) => vec![format!("unix://{DEFAULT_SOCKET}")],
        };
        if !both.is_empty() {
            bail!(
                "the following directives are specified both as a flag and in the configuration file: {}",
                both.join(", ")
            );
        }
        if let Some(d) = &storage_driver {
            if d != "overlay2" && d != "vfs" {
                bail!("unsupported storage driver {d:?}: use overlay2 or vfs");
            }
        }
        let log_level = log_level.unwrap_or_else(|| "info".to_string());
        let log_level = match log_level.as_str() {
            "debug" | "info" | "warn" | "error" => log_level,
            "fatal" => "error".to_string(),
            other => bail!("unable to parse logging level: {other}"),
        };
        for h in &hosts {
            if h.starts_with("unix://") {
                continue;
            }
            if h.starts_with("tcp://") {
                if !flags.insecure_plain_tcp {
                    bail!(
                        "refusing to listen on {h}: plain TCP gives root on this host to anyone who can connect (TLS is not supported yet; pass --insecure-plain-tcp to do it anyway)"
                    );
                }
                continue;
            }
            bail!("invalid host {h:?}: expected unix:///path or tcp://host:port");
        }
        let debug = flags.debug || file.get("debug").and_then(|v| v.as_bool()).unwrap_or(false);
        for key in file.keys() {
            if !matches!(
                key.as_str(),
                "hosts"
                    | "data-root"
                    | "exec-root"
                    | "storage-driver"
                    | "pidfile"
                    | "log-level"
                    | "debug"
                    | "group"
            ) {
                eprintln!("berthd: daemon.json: {key} is accepted but not acted on yet");
            }
        }
        Ok(DaemonConfig {
            hosts,
            data_root: data_root
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/lib/berth")),
            exec_root: exec_root
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/run/berth")),
            storage_driver,
            pidfile: pidfile.map(PathBuf::from),
            log_level,
            debug,
            group: group.unwrap_or_else(|| "docker".to_string()),
        })
    }
}

pub const DEFAULT_SOCKET: &str = "/run/berth.sock";

fn read_file(flags: &Flags) -> Result<BTreeMap<String, serde_json::Value>> {
    let path = &flags.config_file;
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && path.as_os_str() == DEFAULT_CONFIG_FILE =>
        {
            return Ok(BTreeMap::new())
        }
        Err(e) => return Err(e).with_context(|| format!("read config file {}", path.display())),
    };
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&data)
        .with_context(|| format!("config file {} is not a JSON object", path.display()))?;
    let unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !KNOWN_KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "the following directives don't match any configuration option: {}",
            unknown.join(", ")
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["berthd"];
        all.extend_from_slice(args);
        Flags::parse_from(all)
    }

    #[test]
    fn defaults_are_dockerd_like() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("none.json");
        let err =
            DaemonConfig::resolve(&flags(&["--config-file", missing.to_str().expect("utf8")]))
                .expect_err("an explicit missing config file is an error");
        assert!(err.to_string().contains("none.json"));
    }

    #[test]
    fn file_and_flag_conflict_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("daemon.json");
        std::fs::write(&file, r#"{"data-root": "/x"}"#).expect("write");
        let err = DaemonConfig::resolve(&flags(&[
            "--config-file",
            file.to_str().expect("utf8"),
            "--data-root",
            "/y",
        ]))
        .expect_err("conflict");
        assert!(err.to_string().contains("data-root"), "{err}");
    }

    #[test]
    fn unknown_keys_and_plain_tcp_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("daemon.json");
        std::fs::write(&file, r#"{"colour": "blue"}"#).expect("write");
        let err = DaemonConfig::resolve(&flags(&["--config-file", file.to_str().expect("utf8")]))
            .expect_err("unknown key");
        assert!(err.to_string().contains("colour"));
        std::fs::write(&file, r#"{"storage-driver": "vfs"}"#).expect("write");
        let ok = DaemonConfig::resolve(&flags(&["--config-file", file.to_str().expect("utf8")]))
            .expect("valid");
        assert_eq!(ok.storage_driver.as_deref(), Some("vfs"));
        assert_eq!(ok.hosts, vec![format!("unix://{DEFAULT_SOCKET}")]);
        let err = DaemonConfig::resolve(&flags(&[
            "--config-file",
            file.to_str().expect("utf8"),
            "-H",
            "tcp://127.0.0.1:2375",
        ]))
        .expect_err("plain tcp");
        assert!(err.to_string().contains("plain TCP"));
    }
}
