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
    /// Register an OCI runtime: NAME=PATH (repeatable)
    #[arg(long = "add-runtime", value_name = "NAME=PATH")]
    pub add_runtime: Vec<String>,
    /// Default OCI runtime for containers [default: berth]
    #[arg(long = "default-runtime")]
    pub default_runtime: Option<String>,
    /// Default log driver for containers [default: json-file]
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Default log driver options (KEY=VALUE, repeatable)
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Layers one pull downloads at a time [default: 3]
    #[arg(long = "max-concurrent-downloads")]
    pub max_concurrent_downloads: Option<usize>,
    /// Layers one push uploads at a time [default: 5]
    #[arg(long = "max-concurrent-uploads")]
    pub max_concurrent_uploads: Option<usize>,
    /// Keep containers running when the daemon stops
    #[arg(long = "live-restore")]
    pub live_restore: bool,
    /// Parent cgroup of all containers [default: berth]
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Allow tcp:// hosts without TLS, or with --tls but without --tlsverify
    /// (anyone who can connect is root)
    #[arg(long = "insecure-plain-tcp")]
    pub insecure_plain_tcp: bool,
    /// Serve tcp:// hosts over TLS; implied by --tlsverify
    #[arg(long = "tls", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls: Option<bool>,
    /// Serve tcp:// hosts over TLS and require client certificates signed by --tlscacert
    #[arg(long = "tlsverify", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tlsverify: Option<bool>,
    /// CA that signs the client certificates berthd accepts [default: /etc/berth/ca.pem]
    #[arg(long = "tlscacert", value_name = "PATH")]
    pub tlscacert: Option<PathBuf>,
    /// The daemon's TLS certificate [default: /etc/berth/cert.pem]
    #[arg(long = "tlscert", value_name = "PATH")]
    pub tlscert: Option<PathBuf>,
    /// The daemon's TLS private key [default: /etc/berth/key.pem]
    #[arg(long = "tlskey", value_name = "PATH")]
    pub tlskey: Option<PathBuf>,
    /// Registry that may use plain HTTP and unverified TLS: HOST[:PORT] or a CIDR (repeatable)
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,
    /// Pull mirror: URL (for Docker Hub) or REGISTRY=URL (repeatable, tried in order)
    #[arg(long = "registry-mirror", value_name = "[REGISTRY=]URL")]
    pub registry_mirrors: Vec<String>,
    /// Directory of per-registry CAs and client certificates, <dir>/<host:port>/ [default: /etc/berth/certs.d]
    #[arg(long = "registry-certs-dir", value_name = "PATH")]
    pub registry_certs_dir: Option<PathBuf>,
}

pub const DEFAULT_TLS_CA: &str = "/etc/berth/ca.pem";
pub const DEFAULT_TLS_CERT: &str = "/etc/berth/cert.pem";
pub const DEFAULT_TLS_KEY: &str = "/etc/berth/key.pem";

/// dockerd's ports: 2375 for plain HTTP, 2376 for TLS.
const DEFAULT_TCP_PORT: u16 = 2375;
const DEFAULT_TLS_PORT: u16 = 2376;

/// Where the API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    /// `host:port`, IPv6 hosts in brackets, ready for a socket bind.
    Tcp(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The TLS files of the tcp:// hosts, as dockerd's `--tls*` flags give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Require client certificates signed by `ca` (`--tlsverify`).
    pub verify: bool,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

#[derive(Debug)]
pub struct DaemonConfig {
    pub hosts: Vec<Host>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub storage_driver: Option<String>,
    pub pidfile: Option<PathBuf>,
    pub log_level: String,
    pub debug: bool,
    pub group: String,
    /// Set when TLS is on (`--tls` or `--tlsverify`); applies to every tcp:// host.
    pub tls: Option<TlsSettings>,
    /// daemon.json `runtimes`: name → (path, runtimeArgs); `berth` is added by main.
    pub runtimes: BTreeMap<String, (PathBuf, Vec<String>)>,
    pub default_runtime: Option<String>,
    pub log_driver: Option<String>,
    pub log_opts: BTreeMap<String, String>,
    pub cgroup_parent: Option<String>,
    /// daemon.json `init-path`.
    pub init_path: Option<PathBuf>,
    /// Leave containers running on shutdown (`--live-restore`).
    pub live_restore: bool,
    /// `insecure-registries`, `registry-mirrors` and `registry-certs-dir`, checked.
    pub registry: berth_engine::registry_client::RegistrySettings,
    pub max_concurrent_downloads: usize,
    pub max_concurrent_uploads: usize,
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
    "registry-certs-dir",
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
        let cgroup_parent = pick_str("cgroup-parent", flags.cgroup_parent.clone())?;
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let tlscacert = pick_str("tlscacert", path(&flags.tlscacert))?;
        let tlscert = pick_str("tlscert", path(&flags.tlscert))?;
        let tlskey = pick_str("tlskey", path(&flags.tlskey))?;
        let certs_dir = pick_str("registry-certs-dir", path(&flags.registry_certs_dir))?;
        let mut pick_bool = |key: &str, flag: Option<bool>| -> Result<bool> {
            let from_file = match file.get(key) {
                Some(v) => Some(
                    v.as_bool()
                        .with_context(|| format!("daemon.json: {key} must be true or false"))?,
                ),
                None => None,
            };
            if let (Some(f), Some(v)) = (flag, from_file) {
                both.push(format!("{key}: (from flag: {f}, from file: {v})"));
            }
            Ok(flag.or(from_file).unwrap_or(false))
        };
        let tlsverify = pick_bool("tlsverify", flags.tlsverify)?;
        // As in dockerd, --tlsverify turns TLS on whatever --tls says.
        let tls_on = pick_bool("tls", flags.tls)? || tlsverify;
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
        let insecure = match (
            flags.insecure_registries.is_empty(),
            file.get("insecure-registries"),
        ) {
            (false, Some(_)) => {
                both.push("insecure-registries".to_string());
                Vec::new()
            }
            (false, None) => flags.insecure_registries.clone(),
            (true, Some(v)) => serde_json::from_value::<Vec<String>>(v.clone())
                .context("daemon.json: insecure-registries must be a list of strings")?,
            (true, None) => Vec::new(),
        };
        let mirrors = match (
            flags.registry_mirrors.is_empty(),
            file.get("registry-mirrors"),
        ) {
            (false, Some(_)) => {
                both.push("registry-mirrors".to_string());
                Vec::new()
            }
            (false, None) => flags
                .registry_mirrors
                .iter()
                .map(|m| mirror_flag(m))
                .collect(),
            (true, Some(v)) => parse_mirrors(v)?,
            (true, None) => Vec::new(),
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
        let hosts = hosts
            .iter()
            .map(|h| parse_host(h, tls_on))
            .collect::<Result<Vec<Host>>>()?;
        for h in &hosts {
            if !matches!(h, Host::Tcp(_)) || flags.insecure_plain_tcp {
                continue;
            }
            if !tls_on {
                bail!(
                    "refusing to listen on {h}: plain TCP gives root on this host to anyone who can connect; serve it with mutual TLS (--tlsverify --tlscacert --tlscert --tlskey), or pass --insecure-plain-tcp to do it anyway"
                );
            }
            if !tlsverify {
                bail!(
                    "refusing to listen on {h} with --tls but without --tlsverify: clients are not asked for a certificate, so anyone who can connect is root on this host; add --tlsverify (clients need a certificate signed by --tlscacert), or pass --insecure-plain-tcp to do it anyway"
                );
            }
        }
        let tls = tls_on.then(|| TlsSettings {
            verify: tlsverify,
            ca: PathBuf::from(tlscacert.unwrap_or_else(|| DEFAULT_TLS_CA.to_string())),
            cert: PathBuf::from(tlscert.unwrap_or_else(|| DEFAULT_TLS_CERT.to_string())),
            key: PathBuf::from(tlskey.unwrap_or_else(|| DEFAULT_TLS_KEY.to_string())),
        });
        let debug = flags.debug || file.get("debug").and_then(|v| v.as_bool()).unwrap_or(false);
        let mut runtimes = match file.get("runtimes") {
            None => BTreeMap::new(),
            Some(v) => parse_runtimes(v)?,
        };
        for flag in &flags.add_runtime {
            let Some((name, path)) = flag
                .split_once('=')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            else {
                bail!("--add-runtime {flag:?}: expected NAME=PATH");
            };
            if name == "berth" {
                bail!("--add-runtime: the name \"berth\" is reserved for Berth's own runtime");
            }
            if runtimes
                .insert(name.to_string(), (PathBuf::from(path), Vec::new()))
                .is_some()
            {
                bail!("runtime {name} is defined both in daemon.json and with --add-runtime");
            }
        }
        let file_str = |key: &str| -> Result<Option<String>> {
            file.get(key)
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("daemon.json: {key} must be a string"))
                })
                .transpose()
        };
        let default_runtime = match (&flags.default_runtime, file_str("default-runtime")?) {
            (Some(f), Some(v)) => bail!(
                "the following directives are specified both as a flag and in the configuration file: default-runtime: (from flag: {f}, from file: {v})"
            ),
            (f, v) => f.clone().or(v),
        };
        let init_path = file_str("init-path")?.map(PathBuf::from);
        let live_restore = flags.live_restore
            || match file.get("live-restore") {
                None => false,
                Some(v) => v
                    .as_bool()
                    .context("daemon.json: live-restore must be true or false")?,
            };
        let log_driver = match (&flags.log_driver, file_str("log-driver")?) {
            (Some(f), Some(v)) => bail!(
                "the following directives are specified both as a flag and in the configuration file: log-driver: (from flag: {f}, from file: {v})"
            ),
            (f, v) => f.clone().or(v),
        };
        let mut log_opts = match file.get("log-opts") {
            None => BTreeMap::new(),
            Some(v) => serde_json::from_value::<BTreeMap<String, String>>(v.clone())
                .context("daemon.json: log-opts must be an object of strings")?,
        };
        if !flags.log_opt.is_empty() && !log_opts.is_empty() {
            bail!("the following directives are specified both as a flag and in the configuration file: log-opts");
        }
        for opt in &flags.log_opt {
            let Some((k, v)) = opt.split_once('=') else {
                bail!("--log-opt {opt:?}: expected KEY=VALUE");
            };
            log_opts.insert(k.to_string(), v.to_string());
        }
        let pick_count = |key: &str, flag: Option<usize>, default: usize| -> Result<usize> {
            let from_file = match file.get(key) {
                Some(v) => Some(
                    v.as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .with_context(|| format!("daemon.json: {key} must be a whole number"))?,
                ),
                None => None,
            };
            if let (Some(f), Some(v)) = (flag, from_file) {
                bail!("the following directives are specified both as a flag and in the configuration file: {key}: (from flag: {f}, from file: {v})");
            }
            match flag.or(from_file).unwrap_or(default) {
                0 => bail!("{key} must be at least 1"),
                n => Ok(n),
            }
        };
        let max_concurrent_downloads = pick_count(
            "max-concurrent-downloads",
            flags.max_concurrent_downloads,
            3,
        )?;
        let max_concurrent_uploads =
            pick_count("max-concurrent-uploads", flags.max_concurrent_uploads, 5)?;
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
                    | "tls"
                    | "tlsverify"
                    | "tlscacert"
                    | "tlscert"
                    | "tlskey"
                    | "runtimes"
                    | "default-runtime"
                    | "log-driver"
                    | "log-opts"
                    | "cgroup-parent"
                    | "init-path"
                    | "live-restore"
                    | "insecure-registries"
                    | "registry-mirrors"
                    | "registry-certs-dir"
                    | "max-concurrent-downloads"
                    | "max-concurrent-uploads"
            ) {
                eprintln!("berthd: daemon.json: {key} is accepted but not acted on yet");
            }
        }
        use berth_engine::registry_client::{RegistrySettings, DEFAULT_CERTS_DIR};
        let registry = RegistrySettings::new(
            &insecure,
            &mirrors,
            PathBuf::from(certs_dir.unwrap_or_else(|| DEFAULT_CERTS_DIR.to_string())),
        )
        .context("registry settings")?;
        Ok(DaemonConfig {
            registry,
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
            tls,
            runtimes,
            default_runtime,
            log_driver,
            log_opts,
            cgroup_parent,
            init_path,
            live_restore,
            max_concurrent_downloads,
            max_concurrent_uploads,
        })
    }
}

pub const DEFAULT_SOCKET: &str = "/run/berth.sock";

/// `--registry-mirror`: `URL` mirrors Docker Hub (as with dockerd),
/// `REGISTRY=URL` another registry.
fn mirror_flag(value: &str) -> (String, String) {
    match value.split_once('=') {
        Some((registry, url)) if !registry.contains('/') => (registry.to_string(), url.to_string()),
        _ => (
            berth_engine::registry_client::DOCKER_HUB.to_string(),
            value.to_string(),
        ),
    }
}

/// daemon.json `registry-mirrors`: a list of URLs mirrors Docker Hub (as
/// with dockerd); an object maps registries to their lists of URLs.
fn parse_mirrors(value: &serde_json::Value) -> Result<Vec<(String, String)>> {
    if value.is_array() {
        let urls = serde_json::from_value::<Vec<String>>(value.clone()).context(
            "daemon.json: registry-mirrors must be a list of URLs or an object of lists",
        )?;
        let hub = berth_engine::registry_client::DOCKER_HUB;
        return Ok(urls.into_iter().map(|u| (hub.to_string(), u)).collect());
    }
    let map = serde_json::from_value::<BTreeMap<String, Vec<String>>>(value.clone()).context(
        "daemon.json: registry-mirrors must be a list of URLs or an object mapping registries to lists of URLs",
    )?;
    Ok(map
        .into_iter()
        .flat_map(|(registry, urls)| urls.into_iter().map(move |u| (registry.clone(), u)))
        .collect())
}

/// daemon.json `runtimes`: `{"runc": {"path": "/usr/bin/runc", "runtimeArgs": [...]}}`.
fn parse_runtimes(value: &serde_json::Value) -> Result<BTreeMap<String, (PathBuf, Vec<String>)>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Runtime {
        path: PathBuf,
        #[serde(rename = "runtimeArgs", default)]
        runtime_args: Vec<String>,
    }
    let parsed: BTreeMap<String, Runtime> = serde_json::from_value(value.clone())
        .context("daemon.json: runtimes must map names to {\"path\": …, \"runtimeArgs\": […]}")?;
    let mut out = BTreeMap::new();
    for (name, rt) in parsed {
        if name == "berth" {
            bail!("daemon.json: runtimes: the name \"berth\" is reserved for Berth's own runtime");
        }
        if rt.path.as_os_str().is_empty() {
            bail!("daemon.json: runtimes: {name} has no path");
        }
        out.insert(name, (rt.path, rt.runtime_args));
    }
    Ok(out)
}

/// One `-H` value as dockerd reads it: `unix:///path` (empty path: the
/// default socket), `tcp://host:port`, or `host:port` without a scheme. A tcp
/// host without a port gets 2376 with TLS and 2375 without; without a host,
/// 127.0.0.1.
fn parse_host(value: &str, tls: bool) -> Result<Host> {
    let value = value.trim();
    let (scheme, rest) = value.split_once("://").unwrap_or(("tcp", value));
    match scheme {
        "unix" if rest.is_empty() => Ok(Host::Unix(PathBuf::from(DEFAULT_SOCKET))),
        "unix" => Ok(Host::Unix(PathBuf::from(rest))),
        "tcp" => {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            if rest.contains('/') {
                bail!("invalid host {value:?}: a tcp:// address takes no path");
            }
            let (host, port) = match rest.rsplit_once(':') {
                // A bare IPv6 address in brackets has colons but no port.
                Some((h, p)) if !p.contains(']') => (h, Some(p)),
                _ => (rest, None),
            };
            let host = if host.is_empty() { "127.0.0.1" } else { host };
            let port = match port {
                None | Some("") if tls => DEFAULT_TLS_PORT,
                None | Some("") => DEFAULT_TCP_PORT,
                Some(p) => p.parse::<u16>().map_err(|_| {
                    anyhow::anyhow!(
                        "invalid host {value:?}: port {p:?} is not a number from 0 to 65535"
                    )
                })?,
            };
            Ok(Host::Tcp(format!("{host}:{port}")))
        }
        _ => bail!("invalid host {value:?}: expected unix:///path or tcp://host:port"),
    }
}

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
    fn transfer_limits_come_from_flags_or_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("daemon.json");
        let path = file.to_str().expect("utf8");
        std::fs::write(&file, "{}").expect("write");
        let config = DaemonConfig::resolve(&flags(&["--config-file", path])).expect("defaults");
        assert_eq!(
            (
                config.max_concurrent_downloads,
                config.max_concurrent_uploads
            ),
            (3, 5)
        );
        std::fs::write(&file, r#"{"max-concurrent-downloads": 7}"#).expect("write");
        let config = DaemonConfig::resolve(&flags(&[
            "--config-file",
            path,
            "--max-concurrent-uploads",
            "2",
        ]))
        .expect("file and flag");
        assert_eq!(
            (
                config.max_concurrent_downloads,
                config.max_concurrent_uploads
            ),
            (7, 2)
        );
        let err = DaemonConfig::resolve(&flags(&[
            "--config-file",
            path,
            "--max-concurrent-downloads",
            "2",
        ]))
        .expect_err("both ways");
        assert!(
            err.to_string().contains("max-concurrent-downloads"),
            "{err}"
        );
        std::fs::write(&file, r#"{"max-concurrent-uploads": 0}"#).expect("write");
        let err = DaemonConfig::resolve(&flags(&["--config-file", path])).expect_err("zero");
        assert!(err.to_string().contains("at least 1"), "{err}");
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
        assert_eq!(ok.hosts, vec![Host::Unix(PathBuf::from(DEFAULT_SOCKET))]);
        let err = DaemonConfig::resolve(&flags(&[
            "--config-file",
            file.to_str().expect("utf8"),
            "-H",
            "tcp://127.0.0.1:2375",
        ]))
        .expect_err("plain tcp");
        assert!(err.to_string().contains("plain TCP"));
    }

    #[test]
    fn tcp_hosts_get_dockerds_default_ports() {
        let tcp = |h: &str| Host::Tcp(h.to_string());
        assert_eq!(
            parse_host("tcp://127.0.0.1", true).expect("tls"),
            tcp("127.0.0.1:2376")
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:", false).expect("plain"),
            tcp("127.0.0.1:2375")
        );
        assert_eq!(
            parse_host("tcp://", true).expect("empty"),
            tcp("127.0.0.1:2376")
        );
        assert_eq!(
            parse_host("127.0.0.1:4000", true).expect("bare"),
            tcp("127.0.0.1:4000")
        );
        assert_eq!(
            parse_host("tcp://[::1]", true).expect("v6"),
            tcp("[::1]:2376")
        );
        assert_eq!(
            parse_host("tcp://[::1]:9/", true).expect("v6 port"),
            tcp("[::1]:9")
        );
        assert_eq!(
            parse_host("unix://", false).expect("unix"),
            Host::Unix(PathBuf::from(DEFAULT_SOCKET))
        );
        for bad in [
            "tcp://127.0.0.1:http",
            "tcp://127.0.0.1:2376/v1",
            "fd://",
            "ssh://x",
        ] {
            let err = parse_host(bad, true).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn tls_keys_come_from_flags_or_daemon_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("daemon.json");
        let file_arg = file.to_str().expect("utf8");
        std::fs::write(
            &file,
            r#"{"tlsverify": true, "tlscert": "/c.pem", "hosts": ["tcp://127.0.0.1"]}"#,
        )
        .expect("write");
        let ok = DaemonConfig::resolve(&flags(&["--config-file", file_arg, "--tlskey", "/k.pem"]))
            .expect("tlsverify from the file");
        assert_eq!(ok.hosts, vec![Host::Tcp("127.0.0.1:2376".to_string())]);
        assert_eq!(
            ok.tls,
            Some(TlsSettings {
                verify: true,
                ca: PathBuf::from(DEFAULT_TLS_CA),
                cert: PathBuf::from("/c.pem"),
                key: PathBuf::from("/k.pem"),
            })
        );
        let err =
            DaemonConfig::resolve(&flags(&["--config-file", file_arg, "--tlscert", "/d.pem"]))
                .expect_err("set both ways");
        assert!(err.to_string().contains("tlscert"), "{err}");

        std::fs::write(&file, r#"{"tls": true, "hosts": ["tcp://127.0.0.1"]}"#).expect("write");
        let err = DaemonConfig::resolve(&flags(&["--config-file", file_arg]))
            .expect_err("tls without verify on tcp");
        assert!(err.to_string().contains("without --tlsverify"), "{err}");
        let ok =
            DaemonConfig::resolve(&flags(&["--config-file", file_arg, "--insecure-plain-tcp"]))
                .expect("explicitly insecure");
        assert_eq!(ok.tls.map(|t| t.verify), Some(false));

        std::fs::write(&file, "{}").expect("write");
        let plain = DaemonConfig::resolve(&flags(&["--config-file", file_arg])).expect("unix only");
        assert_eq!(plain.tls, None);
    }

    #[test]
    fn registry_settings_come_from_flags_or_daemon_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("daemon.json");
        let file_arg = file.to_str().expect("utf8");
        std::fs::write(
            &file,
            r#"{"insecure-registries": ["10.0.0.0/8", "reg.example:5000"],
                "registry-mirrors": {"docker.io": ["https://m1.example"], "127.0.0.1:5000": ["http://127.0.0.1:5001", "http://127.0.0.1:5002"]},
                "registry-certs-dir": "/tmp/certs.d"}"#,
        )
        .expect("write");
        let ok = DaemonConfig::resolve(&flags(&["--config-file", file_arg])).expect("valid");
        let r = &ok.registry;
        assert_eq!(r.insecure_cidrs(), ["::1/128", "127.0.0.0/8", "10.0.0.0/8"]);
        assert_eq!(r.insecure_hosts(), ["reg.example:5000"]);
        assert_eq!(r.mirrors_of("docker.io")[0].url, "https://m1.example/");
        assert_eq!(r.mirrors_of("127.0.0.1:5000").len(), 2);
        assert_eq!(r.certs_dir(), std::path::Path::new("/tmp/certs.d"));

        let err = DaemonConfig::resolve(&flags(&[
            "--config-file",
            file_arg,
            "--insecure-registry",
            "10.1.0.0/16",
        ]))
        .expect_err("set both ways");
        assert!(err.to_string().contains("insecure-registries"), "{err}");

        std::fs::write(&file, r#"{"registry-mirrors": ["https://m1.example"]}"#).expect("write");
        let ok = DaemonConfig::resolve(&flags(&[
            "--config-file",
            file_arg,
            "--insecure-registry",
            "reg.example",
        ]))
        .expect("list form");
        assert_eq!(ok.registry.mirrors_of("docker.io").len(), 1);
        assert_eq!(
            ok.registry.certs_dir(),
            std::path::Path::new("/etc/berth/certs.d")
        );

        std::fs::write(&file, "{}").expect("write");
        let ok = DaemonConfig::resolve(&flags(&[
            "--config-file",
            file_arg,
            "--registry-mirror",
            "https://m2.example",
            "--registry-mirror",
            "127.0.0.1:5000=http://127.0.0.1:5003",
        ]))
        .expect("mirror flags");
        assert_eq!(
            ok.registry.mirrors_of("docker.io")[0].url,
            "https://m2.example/"
        );
        assert_eq!(
            ok.registry.mirrors_of("127.0.0.1:5000")[0].url,
            "http://127.0.0.1:5003/"
        );

        for (json, says) in [
            (
                r#"{"insecure-registries": ["10.0.0.0/40"]}"#,
                "not a valid CIDR",
            ),
            (r#"{"insecure-registries": "10.0.0.0/8"}"#, "must be a list"),
            (r#"{"registry-mirrors": ["m1.example"]}"#, "invalid mirror"),
            (
                r#"{"registry-mirrors": {"docker.io": "https://m"}}"#,
                "registry-mirrors must be",
            ),
        ] {
            std::fs::write(&file, json).expect("write");
            let err = DaemonConfig::resolve(&flags(&["--config-file", file_arg])).expect_err(json);
            assert!(format!("{err:#}").contains(says), "{json}: {err:#}");
        }
    }
}
