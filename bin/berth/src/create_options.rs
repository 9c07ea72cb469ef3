//! The flags `create` and `run` share, and the `POST /containers/create`
//! body they make: the same Config, HostConfig and NetworkingConfig the
//! docker CLI sends for the same flags, so a daemon stores the same container.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use clap::{ArgAction, Args};
use serde_json::{json, Map, Value};

use crate::format::go_quote;
use crate::terminal;
use crate::units;

#[derive(Args, Debug)]
pub struct CreateOptions {
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach", value_name = "STREAM", value_parser = parse_attach)]
    attach: Vec<String>,
    /// Add a host device to the container
    #[arg(long = "device", value_name = "DEVICE")]
    device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list
    #[arg(long = "device-cgroup-rule", value_name = "RULE", value_parser = parse_device_cgroup_rule)]
    device_cgroup_rule: Vec<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "VAR", value_parser = validate_env)]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(
        long = "entrypoint",
        value_name = "COMMAND",
        allow_hyphen_values = true
    )]
    entrypoint: Option<String>,
    /// Add additional groups to join
    #[arg(long = "group-add", value_name = "GROUP")]
    group_add: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long = "hostname", value_name = "NAME")]
    hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long = "domainname", value_name = "NAME")]
    domainname: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label", value_name = "LABEL", value_parser = validate_label)]
    label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file", value_name = "FILE")]
    label_file: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Restart policy to apply when a container exits
    #[arg(long = "restart", value_name = "POLICY", default_value = "no")]
    restart: String,
    /// Signal to stop the container
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(
        long = "stop-timeout",
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    stop_timeout: Option<i64>,
    /// Sysctl options
    #[arg(long = "sysctl", value_name = "KEY=VALUE", value_parser = validate_sysctl)]
    sysctl: Vec<(String, String)>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Ulimit options
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_ulimit)]
    ulimit: Vec<(String, Value)>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long = "rm")]
    pub rm: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long = "privileged")]
    privileged: bool,
    /// Security Options
    #[arg(long = "security-opt", value_name = "OPTION")]
    security_opt: Vec<String>,
    /// User namespace to use
    #[arg(long = "userns", value_name = "MODE")]
    userns: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long = "cgroupns", value_name = "MODE")]
    cgroupns: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long = "dns", value_name = "IP")]
    dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", visible_alias = "dns-opt", value_name = "OPTION")]
    dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// Connect a container to a network (none, host, container:<name|id>, or a network name)
    #[arg(long = "network", alias = "net", value_name = "NETWORK")]
    network: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver", value_name = "DRIVER")]
    log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt", value_name = "OPTION")]
    log_opt: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume", value_name = "SOURCE:TARGET[:OPTIONS]")]
    volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount", value_name = "MOUNT", value_parser = parse_mount)]
    mount: Vec<Value>,
    /// Command to run to check health
    #[arg(
        long = "health-cmd",
        value_name = "COMMAND",
        allow_hyphen_values = true
    )]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    health_interval: Option<i64>,
    /// Consecutive failures needed to report unhealthy
    #[arg(
        long = "health-retries",
        value_name = "N",
        allow_negative_numbers = true
    )]
    health_retries: Option<i64>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    health_timeout: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    health_start_period: Option<i64>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    health_start_interval: Option<i64>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)
    #[arg(long = "blkio-weight", value_name = "WEIGHT")]
    blkio_weight: Option<u16>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "CPUS")]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "MEMS")]
    cpuset_mems: Option<String>,
    /// CPU shares (relative weight)
    #[arg(
        short = 'c',
        long = "cpu-shares",
        value_name = "SHARES",
        allow_negative_numbers = true
    )]
    cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(
        long = "cpu-period",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(
        long = "cpu-quota",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    cpu_quota: Option<i64>,
    /// Number of CPUs
    #[arg(long = "cpus", value_name = "DECIMAL", value_parser = parse_nano_cpus)]
    cpus: Option<i64>,
    /// Memory limit
    #[arg(short = 'm', long = "memory", value_name = "BYTES", value_parser = parse_ram)]
    memory: Option<i64>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "BYTES", value_parser = parse_ram)]
    memory_reservation: Option<i64>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "BYTES", value_parser = parse_ram_or_unlimited, allow_hyphen_values = true)]
    memory_swap: Option<i64>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long = "memory-swappiness", value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    memory_swappiness: i64,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(
        long = "oom-score-adj",
        value_name = "N",
        allow_negative_numbers = true
    )]
    oom_score_adj: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "N", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent", value_name = "PATH")]
    cgroup_parent: Option<String>,
    /// IPC mode to use
    #[arg(long = "ipc", value_name = "MODE")]
    ipc: Option<String>,
    /// PID namespace to use
    #[arg(long = "pid", value_name = "MODE")]
    pid: Option<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size", value_name = "BYTES", value_parser = parse_ram)]
    shm_size: Option<i64>,
    /// UTS namespace to use
    #[arg(long = "uts", value_name = "MODE")]
    uts: Option<String>,
    /// Runtime to use for this container
    #[arg(long = "runtime", value_name = "RUNTIME")]
    runtime: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long = "init", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    init: Option<bool>,
    /// Assign a name to the container
    #[arg(long = "name", value_name = "NAME")]
    pub name: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long = "platform", value_name = "PLATFORM")]
    platform: Option<String>,
    /// Pull image before creating ("always", "missing", "never")
    #[arg(long = "pull", value_name = "POLICY", default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Print usage
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    /// The image, then the command and its arguments
    #[arg(value_name = "IMAGE [COMMAND] [ARG...]", required = true, num_args = 1.., trailing_var_arg = true)]
    args: Vec<String>,
}

/// A container ready to be created: the request body and the facts `run`
/// and `start` act on.
pub struct CreateRequest {
    pub body: Value,
    pub name: Option<String>,
    /// `os/arch[/variant]`, for the `platform` query parameter.
    pub platform: Option<String>,
    pub image: String,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub auto_remove: bool,
}

impl CreateRequest {
    /// `run -d`: nothing attached, stdin not closed after a first client.
    pub fn detach(&mut self) {
        self.attach_stdin = false;
        self.attach_stdout = false;
        self.attach_stderr = false;
        for key in ["AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce"] {
            self.body[key] = Value::Bool(false);
        }
    }
}

fn parse_attach(value: &str) -> Result<String, String> {
    let stream = value.to_lowercase();
    match stream.as_str() {
        "stdin" | "stdout" | "stderr" => Ok(stream),
        _ => Err("valid streams are STDIN, STDOUT and STDERR".to_owned()),
    }
}

fn parse_duration(value: &str) -> Result<i64, String> {
    units::go_duration_nanos(value)
        .ok_or_else(|| format!("time: invalid duration {}", go_quote(value)))
}

fn parse_ram(value: &str) -> Result<i64, String> {
    if value.is_empty() {
        return Ok(0);
    }
    units::ram_in_bytes(value)
}

fn parse_ram_or_unlimited(value: &str) -> Result<i64, String> {
    if value == "-1" {
        Ok(-1)
    } else {
        parse_ram(value)
    }
}

/// `--cpus 1.5` as nano CPUs (1500000000), refused when finer than that.
pub fn parse_nano_cpus(value: &str) -> Result<i64, String> {
    let invalid = || format!("failed to parse {value} as a rational number");
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return Err(invalid());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 9 {
        return Err("value is too precise".to_owned());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let nanos: i64 = format!("{fraction:0<9}").parse().map_err(|_| invalid())?;
    let total = whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(invalid)?;
    Ok(if negative { -total } else { total })
}

/// One `--mount` value (`type=bind,source=/a,target=/b,readonly`) as the
/// API's Mount object.
fn parse_mount(value: &str) -> Result<Value, String> {
    let mut mount = Map::new();
    let mut kind = "volume".to_owned();
    let mut bind = Map::new();
    let mut tmpfs = Map::new();
    let mut volume_option = false;
    for field in split_csv(value)? {
        let (key, val) = match field.split_once('=') {
            Some((key, val)) => (key.to_lowercase(), Some(val)),
            None => (field.to_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => {
                    mount.insert("ReadOnly".to_owned(), Value::Bool(true));
                }
                "volume-nocopy" => volume_option = true,
                "bind-nonrecursive" => {
                    bind.insert("NonRecursive".to_owned(), Value::Bool(true));
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let bad = || format!("invalid value for {key}: {val}");
        match key.as_str() {
            "type" => kind = val.to_lowercase(),
            "source" | "src" => {
                mount.insert("Source".to_owned(), Value::String(absolute_if_relative(val)));
            }
            "target" | "dst" | "destination" => {
                mount.insert("Target".to_owned(), Value::String(val.to_owned()));
            }
            "readonly" | "ro" => {
                let readonly = parse_go_bool(val).ok_or_else(bad)?;
                mount.insert("ReadOnly".to_owned(), Value::Bool(readonly));
            }
            "consistency" => {
                mount.insert("Consistency".to_owned(), Value::String(val.to_lowercase()));
            }
            "bind-propagation" => {
                bind.insert("Propagation".to_owned(), Value::String(val.to_lowercase()));
            }
            "bind-nonrecursive" => {
                let on = parse_go_bool(val).ok_or_else(bad)?;
                bind.insert("NonRecursive".to_owned(), Value::Bool(on));
            }
            "bind-recursive" => match val {
                "enabled" => {}
                "disabled" => {
                    bind.insert("NonRecursive".to_owned(), Value::Bool(true));
                }
                "writable" => {
                    bind.insert("ReadOnlyNonRecursive".to_owned(), Value::Bool(true));
                }
                "readonly" => {
                    bind.insert("ReadOnlyForceRecursive".to_owned(), Value::Bool(true));
                }
                _ => {
                    return Err(format!(
                        "invalid value for {key}: {val} (must be \"enabled\", \"disabled\", \"writable\", or \"readonly\")"
                    ))
                }
            },
            "volume-subpath" | "volume-nocopy" | "volume-label" | "volume-driver"
            | "volume-opt" => volume_option = true,
            "tmpfs-size" => {
                let size = units::ram_in_bytes(val).map_err(|_| bad())?;
                tmpfs.insert("SizeBytes".to_owned(), Value::from(size));
            }
            "tmpfs-mode" => {
                let mode = u32::from_str_radix(val, 8).map_err(|_| bad())?;
                tmpfs.insert("Mode".to_owned(), Value::from(mode));
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if kind.is_empty() {
        return Err("type is required".to_owned());
    }
    if !mount.contains_key("Target") {
        return Err("target is required".to_owned());
    }
    if volume_option && kind != "volume" {
        return Err(format!(
            "cannot mix 'volume-*' options with mount type '{kind}'"
        ));
    }
    if !bind.is_empty() && kind != "bind" {
        return Err(format!(
            "cannot mix 'bind-*' options with mount type '{kind}'"
        ));
    }
    if !tmpfs.is_empty() && kind != "tmpfs" {
        return Err(format!(
            "cannot mix 'tmpfs-*' options with mount type '{kind}'"
        ));
    }
    let readonly = mount.get("ReadOnly") == Some(&Value::Bool(true));
    if bind.contains_key("ReadOnlyNonRecursive") && !readonly {
        return Err(
            "option 'bind-recursive=writable' requires 'readonly' to be specified in conjunction"
                .to_owned(),
        );
    }
    if bind.contains_key("ReadOnlyForceRecursive") {
        if !readonly {
            return Err("option 'bind-recursive=readonly' requires 'readonly' to be specified in conjunction".to_owned());
        }
        if bind.get("Propagation").and_then(Value::as_str) != Some("rprivate") {
            return Err("option 'bind-recursive=readonly' requires 'bind-propagation=rprivate' to be specified in conjunction".to_owned());
        }
    }
    mount.insert("Type".to_owned(), Value::String(kind));
    if !bind.is_empty() {
        mount.insert("BindOptions".to_owned(), Value::Object(bind));
    }
    if !tmpfs.is_empty() {
        mount.insert("TmpfsOptions".to_owned(), Value::Object(tmpfs));
    }
    Ok(Value::Object(mount))
}

/// The fields of one CSV record (Go's `encoding/csv`): commas split, double
/// quotes group and `""` is a quote.
fn split_csv(value: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = value.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(
            "parse error on line 1, column 0: extraneous or missing \" in quoted-field".to_owned(),
        );
    }
    fields.push(field);
    Ok(fields)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `value` made absolute when it is relative and starts with `.`, as docker
/// does for bind sources.
fn absolute_if_relative(value: &str) -> String {
    if value.starts_with('.') {
        if let Ok(cwd) = std::env::current_dir() {
            return normalize_path(&cwd.join(value));
        }
    }
    value.to_owned()
}

/// A path without `.` and `..` components (Go's `filepath.Clean` of an absolute path).
fn normalize_path(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// An I/O error on `path` worded as Go's `*PathError`: `open x: no such file or directory`.
pub fn go_path_error(op: &str, path: &str, error: &std::io::Error) -> String {
    let text = match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => {
            let text = error.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    };
    format!("{op} {path}: {text}")
}

/// `--env` as docker takes it: `KEY=value`, or `KEY` alone for the value
/// `KEY` has here (left as `KEY` when unset).
pub fn validate_env(value: &str) -> Result<String, String> {
    let (key, has_value) = match value.split_once('=') {
        Some((key, _)) => (key, true),
        None => (value, false),
    };
    if key.is_empty() {
        return Err(format!("invalid environment variable: {value}"));
    }
    if has_value {
        return Ok(value.to_owned());
    }
    Ok(match std::env::var(key) {
        Ok(found) => format!("{key}={found}"),
        Err(_) => value.to_owned(),
    })
}

/// The lines of an env or label file (docker's `kvfile`): blank lines and
/// `#` comments skipped; in an env file (`lookup_env`) a `KEY` alone takes
/// the value it has here, and is left out when unset.
pub fn read_kv_file(path: &str, lookup_env: bool) -> Result<Vec<String>, String> {
    let bytes = std::fs::read(path).map_err(|e| go_path_error("open", path, &e))?;
    let invalid = |reason: String| format!("invalid env file ({path}): {reason}");
    let mut lines = Vec::new();
    for (number, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = if number == 0 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        let line = std::str::from_utf8(raw).map_err(|_| {
            invalid(format!(
                "invalid utf8 bytes at line {}: {raw:?}",
                number + 1
            ))
        })?;
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, has_value) = match line.split_once('=') {
            Some((key, _)) => (key, true),
            None => (line, false),
        };
        if key.is_empty() {
            return Err(invalid(format!("no variable name on line '{line}'")));
        }
        if key.contains([' ', '\t']) {
            return Err(invalid(format!("variable '{key}' contains whitespaces")));
        }
        if has_value {
            lines.push(line.to_owned());
        } else if let Some(found) = lookup_env.then(|| std::env::var(line).ok()).flatten() {
            lines.push(format!("{key}={found}"));
        }
    }
    Ok(lines)
}

fn validate_label(value: &str) -> Result<String, String> {
    let key = value.split_once('=').map_or(value, |(key, _)| key);
    let key = key.trim_start_matches([' ', '\t', '\n', '\u{0b}', '\u{0c}', '\r']);
    if key.is_empty() {
        return Err(format!("invalid label '{value}': empty name"));
    }
    if key.contains([' ', '\t', '\n', '\u{0b}', '\u{0c}', '\r']) {
        return Err(format!("label '{key}' contains whitespaces"));
    }
    Ok(value.to_owned())
}

fn validate_sysctl(value: &str) -> Result<(String, String), String> {
    const NAMESPACED: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let not_allowed = || format!("sysctl '{value}' is not allowed");
    let (key, val) = value.split_once('=').ok_or_else(not_allowed)?;
    if key.is_empty() {
        return Err(not_allowed());
    }
    if NAMESPACED.contains(&key) || key.starts_with("net.") || key.starts_with("fs.mqueue.") {
        Ok((key.to_owned(), val.to_owned()))
    } else {
        Err(not_allowed())
    }
}

fn parse_ulimit(value: &str) -> Result<(String, Value), String> {
    const NAMES: [&str; 15] = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let (name, limits) = value
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {value}"))?;
    if !NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let number = |text: &str| {
        text.parse::<i64>().map_err(|_| {
            format!(
                "strconv.ParseInt: parsing {}: invalid syntax",
                go_quote(text)
            )
        })
    };
    let parts: Vec<&str> = limits.split(':').collect();
    let (soft, hard) = match parts.as_slice() {
        [soft] => {
            let soft = number(soft)?;
            (soft, soft)
        }
        [soft, hard] => (number(soft)?, number(hard)?),
        _ => {
            return Err(format!(
                "too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`"
            ))
        }
    };
    if hard != -1 {
        if soft == -1 {
            return Err(format!("ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: {hard}"));
        }
        if soft > hard {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            ));
        }
    }
    Ok((
        name.to_owned(),
        json!({"Name": name, "Hard": hard, "Soft": soft}),
    ))
}

/// `--restart`: `no`, `always`, `unless-stopped` or `on-failure[:max]`.
pub fn parse_restart_policy(policy: &str) -> Result<Value, String> {
    if policy.is_empty() {
        return Ok(json!({"Name": "", "MaximumRetryCount": 0}));
    }
    let (name, count) = policy.split_once(':').unwrap_or((policy, ""));
    if policy.contains(':') && name.is_empty() {
        return Err("invalid restart policy format: no policy provided before colon".to_owned());
    }
    let count: i64 = if count.is_empty() {
        0
    } else {
        count.parse().map_err(|_| {
            "invalid restart policy format: maximum retry count must be an integer".to_owned()
        })?
    };
    Ok(json!({"Name": name, "MaximumRetryCount": count}))
}

fn valid_device_mode(mode: &str) -> bool {
    !mode.is_empty()
        && mode.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && mode.chars().filter(|c| *c == 'r').count() <= 1
        && mode.chars().filter(|c| *c == 'w').count() <= 1
        && mode.chars().filter(|c| *c == 'm').count() <= 1
}

/// `--device /dev/x[:/dev/y][:rwm]` as a DeviceMapping (docker's
/// `validateLinuxPath`, then `parseLinuxDevice`).
fn parse_device(value: &str) -> Result<Value, String> {
    let bad = || format!("bad format for path: {value}");
    if value.matches(':').count() > 2 {
        return Err(bad());
    }
    let split: Vec<&str> = value.splitn(3, ':').collect();
    if split[0].is_empty() {
        return Err(bad());
    }
    let clean = |p: &str| normalize_path(Path::new(p));
    let (container_path, validated) = match split.as_slice() {
        [path] => (*path, clean(path)),
        [path, mode] if valid_device_mode(mode) => (*path, format!("{}:{mode}", clean(path))),
        [source, path] => (*path, format!("{source}:{}", clean(path))),
        [_, path, mode] => {
            if !valid_device_mode(mode) {
                return Err(format!("bad mode specified: {mode}"));
            }
            (*path, value.to_owned())
        }
        _ => return Err(bad()),
    };
    if !container_path.starts_with('/') {
        return Err(format!("{container_path} is not an absolute path"));
    }
    let parts: Vec<&str> = validated.splitn(4, ':').collect();
    let mut permissions = "rwm";
    let mut target = "";
    if let [_, _, mode] = parts.as_slice() {
        permissions = mode;
    }
    if let Some(second) = parts.get(1) {
        if valid_device_mode(second) {
            permissions = second;
        } else {
            target = second;
        }
    }
    let source = parts[0];
    let target = if target.is_empty() { source } else { target };
    Ok(json!({
        "PathOnHost": source,
        "PathInContainer": target,
        "CgroupPermissions": permissions,
    }))
}

/// `cap_add`/`cap_drop` upper-cased with a `CAP_` prefix, sorted, once each;
/// `null` when none (the docker client's normalization).
fn capabilities(list: &[String]) -> Value {
    if list.is_empty() {
        return Value::Null;
    }
    let mut caps: Vec<String> = list
        .iter()
        .map(|c| {
            let c = c.to_uppercase();
            if c == "ALL" || c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        })
        .collect();
    caps.sort();
    caps.dedup();
    json!(caps)
}

/// `--security-opt` values checked; a seccomp profile file is sent as its
/// compact JSON. Also returns whether `systempaths=unconfined` was given.
fn security_options(options: &[String]) -> Result<(Vec<String>, bool), String> {
    let mut out = Vec::new();
    let mut unconfined_paths = false;
    for option in options {
        if option == "systempaths=unconfined" {
            unconfined_paths = true;
            continue;
        }
        let (key, value, ok) = match option.split_once('=') {
            Some((k, v)) => (k, v, true),
            None if option == "no-new-privileges" => (option.as_str(), "", false),
            None => match option.split_once(':') {
                Some((k, v)) => (k, v, true),
                None => (option.as_str(), "", false),
            },
        };
        if (!ok || value.is_empty()) && key != "no-new-privileges" {
            return Err(format!("Invalid --security-opt: {}", go_quote(option)));
        }
        if key == "seccomp" && value != "builtin" && value != "unconfined" {
            let profile = std::fs::read(value).map_err(|e| {
                format!(
                    "opening seccomp profile ({value}) failed: {}",
                    go_path_error("open", value, &e)
                )
            })?;
            let profile: Value = serde_json::from_slice(&profile).map_err(|e| {
                format!("compacting json for seccomp profile ({value}) failed: {e}")
            })?;
            out.push(format!("seccomp={profile}"));
            continue;
        }
        out.push(option.clone());
    }
    Ok((out, unconfined_paths))
}

/// Go's `PidMode.Valid` and friends: `""`, `host`, or `container:<name>` where allowed.
fn check_mode(
    value: &Option<String>,
    flag: &str,
    what: &str,
    container: bool,
) -> Result<String, String> {
    let mode = value.clone().unwrap_or_default();
    let ok = mode.is_empty()
        || mode == "host"
        || container
            && mode
                .strip_prefix("container:")
                .is_some_and(|name| !name.is_empty());
    if ok {
        Ok(mode)
    } else {
        Err(format!("--{flag}: invalid {what} mode"))
    }
}

/// The endpoint settings docker sends for a network without options.
fn empty_endpoint() -> Value {
    json!({
        "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "",
        "DriverOpts": null, "GwPriority": 0, "NetworkID": "", "EndpointID": "",
        "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
    })
}

fn list_or_null(list: Vec<String>) -> Value {
    if list.is_empty() {
        Value::Null
    } else {
        json!(list)
    }
}

impl CreateOptions {
    /// The image as the user named it.
    pub fn image(&self) -> &str {
        &self.args[0]
    }

    pub fn attach_flags_given(&self) -> bool {
        !self.attach.is_empty()
    }

    /// The create request docker's `parse` makes of these flags, or the
    /// message of the first invalid one.
    pub fn request(&self, api_version: &str) -> Result<CreateRequest, String> {
        let attach_stdin = self.attach.iter().any(|s| s == "stdin") || self.interactive;
        let (mut attach_stdout, mut attach_stderr) = (
            self.attach.iter().any(|s| s == "stdout"),
            self.attach.iter().any(|s| s == "stderr"),
        );
        if self.attach.is_empty() {
            attach_stdout = true;
            attach_stderr = true;
        }
        if self.memory_swappiness != -1 && !(0..=100).contains(&self.memory_swappiness) {
            return Err(format!(
                "invalid value: {}. Valid memory swappiness range is 0-100",
                self.memory_swappiness
            ));
        }

        // Volumes with a source are binds; the rest stay anonymous volumes.
        let mut binds = Vec::new();
        let mut volumes = Map::new();
        for spec in &self.volume {
            if volume_source(spec)?.is_some() {
                binds.push(bind_with_absolute_source(spec));
            } else {
                volumes.insert(spec.clone(), json!({}));
            }
        }

        let mut tmpfs = Map::new();
        for spec in &self.tmpfs {
            let (path, options) = spec.split_once(':').unwrap_or((spec, ""));
            tmpfs.insert(path.to_owned(), Value::String(options.to_owned()));
        }

        let entrypoint = match &self.entrypoint {
            Some(e) if !e.is_empty() => json!([e]),
            Some(_) => json!([""]),
            None => Value::Null,
        };

        let devices = self
            .device
            .iter()
            .map(|d| parse_device(d))
            .collect::<Result<Vec<_>, _>>()?;

        let mut env = Vec::new();
        for file in &self.env_file {
            env.extend(read_kv_file(file, true)?);
        }
        env.extend(self.env.iter().cloned());

        let mut labels = Vec::new();
        for file in &self.label_file {
            labels.extend(read_kv_file(file, false)?);
        }
        labels.extend(self.label.iter().cloned());
        let labels: Map<String, Value> = labels
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_owned(), Value::String(v.to_owned()))
            })
            .collect();

        let pid_mode = check_mode(&self.pid, "pid", "PID", true)?;
        let uts_mode = check_mode(&self.uts, "uts", "UTS", false)?;
        let userns_mode = check_mode(&self.userns, "userns", "USER", false)?;
        let cgroupns_mode = self.cgroupns.clone().unwrap_or_default();
        if !matches!(cgroupns_mode.as_str(), "" | "host" | "private") {
            return Err("--cgroupns: invalid CGROUP mode".to_owned());
        }

        let restart_policy = parse_restart_policy(&self.restart)?;

        let log_driver = self.log_driver.clone().unwrap_or_default();
        if log_driver == "none" && !self.log_opt.is_empty() {
            return Err(format!("invalid logging opts for driver {log_driver}"));
        }
        let log_config: Map<String, Value> = self
            .log_opt
            .iter()
            .map(|o| {
                let (k, v) = o.split_once('=').unwrap_or((o, ""));
                (k.to_owned(), Value::String(v.to_owned()))
            })
            .collect();

        let (security_opt, unconfined_paths) = security_options(&self.security_opt)?;

        let healthcheck = self.healthcheck()?;

        // One limit per name, the last given, sorted by name (docker's UlimitOpt).
        let ulimits: BTreeMap<&String, &Value> = self
            .ulimit
            .iter()
            .map(|(name, limit)| (name, limit))
            .collect();
        let sysctls: Map<String, Value> = self
            .sysctl
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect();

        let network_mode = self
            .network
            .first()
            .cloned()
            .unwrap_or_else(|| "default".to_owned());
        if self.network.iter().any(|n| n.trim().is_empty()) {
            return Err("no name set for network".to_owned());
        }
        let mut endpoints = Map::new();
        if self.network.is_empty() {
            endpoints.insert("default".to_owned(), empty_endpoint());
        } else if self.network.len() > 1 {
            for network in &self.network {
                if endpoints.contains_key(network) {
                    return Err(format!("network \"{network}\" is specified multiple times"));
                }
                endpoints.insert(network.clone(), empty_endpoint());
            }
        }

        let console_size = if std::io::stdout().is_terminal()
            && !(self.platform.is_some() && api_older_than(api_version, (1, 42)))
        {
            terminal::size(std::io::stdout()).map_or([0, 0], |(rows, cols)| [rows, cols])
        } else {
            [0, 0]
        };

        let mut config = json!({
            "Hostname": self.hostname.clone().unwrap_or_default(),
            "Domainname": self.domainname.clone().unwrap_or_default(),
            "User": self.user.clone().unwrap_or_default(),
            "AttachStdin": attach_stdin,
            "AttachStdout": attach_stdout,
            "AttachStderr": attach_stderr,
            "Tty": self.tty,
            "OpenStdin": self.interactive,
            "StdinOnce": self.interactive && attach_stdin,
            "Env": list_or_null(env),
            "Cmd": if self.args.len() > 1 { json!(self.args[1..]) } else { Value::Null },
            "Image": self.image(),
            "Volumes": volumes,
            "WorkingDir": self.workdir.clone().unwrap_or_default(),
            "Entrypoint": entrypoint,
            "OnBuild": null,
            "Labels": labels,
        });
        if let Some(health) = healthcheck {
            config["Healthcheck"] = health;
        }
        if let Some(signal) = self.stop_signal.as_ref().filter(|s| !s.is_empty()) {
            config["StopSignal"] = json!(signal);
        }
        if let Some(timeout) = self.stop_timeout {
            config["StopTimeout"] = json!(timeout);
        }

        let mut host_config = json!({
            "Binds": list_or_null(binds),
            "ContainerIDFile": "",
            "LogConfig": {"Type": log_driver, "Config": log_config},
            "NetworkMode": network_mode,
            "PortBindings": {},
            "RestartPolicy": restart_policy,
            "AutoRemove": self.rm,
            "VolumeDriver": "",
            "VolumesFrom": null,
            "ConsoleSize": console_size,
            "CapAdd": capabilities(&self.cap_add),
            "CapDrop": capabilities(&self.cap_drop),
            "CgroupnsMode": cgroupns_mode,
            "Dns": self.dns,
            "DnsOptions": self.dns_option,
            "DnsSearch": self.dns_search,
            "ExtraHosts": list_or_null(self.add_host.clone()),
            "GroupAdd": list_or_null(self.group_add.clone()),
            "IpcMode": self.ipc.clone().unwrap_or_default(),
            "Cgroup": "",
            "Links": null,
            "OomScoreAdj": self.oom_score_adj.unwrap_or(0),
            "PidMode": pid_mode,
            "Privileged": self.privileged,
            "PublishAllPorts": false,
            "ReadonlyRootfs": self.read_only,
            "SecurityOpt": list_or_null(security_opt),
            "UTSMode": uts_mode,
            "UsernsMode": userns_mode,
            "ShmSize": self.shm_size.unwrap_or(0),
            "Isolation": "",
            "MaskedPaths": if unconfined_paths { json!([]) } else { Value::Null },
            "ReadonlyPaths": if unconfined_paths { json!([]) } else { Value::Null },
        });
        // HostConfig embeds Resources: its fields sit at the same level.
        let resources = json!({
            "CpuShares": self.cpu_shares.unwrap_or(0),
            "Memory": self.memory.unwrap_or(0),
            "NanoCpus": self.cpus.unwrap_or(0),
            "CgroupParent": self.cgroup_parent.clone().unwrap_or_default(),
            "BlkioWeight": self.blkio_weight.unwrap_or(0),
            "BlkioWeightDevice": [],
            "BlkioDeviceReadBps": [],
            "BlkioDeviceWriteBps": [],
            "BlkioDeviceReadIOps": [],
            "BlkioDeviceWriteIOps": [],
            "CpuPeriod": self.cpu_period.unwrap_or(0),
            "CpuQuota": self.cpu_quota.unwrap_or(0),
            "CpuRealtimePeriod": 0,
            "CpuRealtimeRuntime": 0,
            "CpusetCpus": self.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": self.cpuset_mems.clone().unwrap_or_default(),
            "Devices": devices,
            "DeviceCgroupRules": list_or_null(self.device_cgroup_rule.clone()),
            "DeviceRequests": null,
            "MemoryReservation": self.memory_reservation.unwrap_or(0),
            "MemorySwap": self.memory_swap.unwrap_or(0),
            "MemorySwappiness": self.memory_swappiness,
            "OomKillDisable": self.oom_kill_disable,
            "PidsLimit": self.pids_limit.unwrap_or(0),
            "Ulimits": ulimits.into_values().collect::<Vec<_>>(),
            "CpuCount": 0,
            "CpuPercent": 0,
            "IOMaximumIOps": 0,
            "IOMaximumBandwidth": 0,
        });
        if let (Value::Object(host), Value::Object(resources)) = (&mut host_config, resources) {
            host.extend(resources);
        }
        if !tmpfs.is_empty() {
            host_config["Tmpfs"] = Value::Object(tmpfs);
        }
        if !sysctls.is_empty() {
            host_config["Sysctls"] = Value::Object(sysctls);
        }
        if !self.mount.is_empty() {
            host_config["Mounts"] = json!(self.mount);
        }
        if let Some(runtime) = self.runtime.as_ref().filter(|r| !r.is_empty()) {
            host_config["Runtime"] = json!(runtime);
        }
        if let Some(init) = self.init {
            host_config["Init"] = json!(init);
        }
        if self.rm && !matches!(self.restart.as_str(), "" | "no") {
            return Err("conflicting options: cannot specify both --restart and --rm".to_owned());
        }

        config["HostConfig"] = host_config;
        config["NetworkingConfig"] = json!({"EndpointsConfig": endpoints});
        Ok(CreateRequest {
            body: config,
            name: self.name.clone(),
            platform: self.platform.as_ref().map(|p| p.to_lowercase()),
            image: self.image().to_owned(),
            tty: self.tty,
            attach_stdin,
            attach_stdout,
            attach_stderr,
            auto_remove: self.rm,
        })
    }

    fn healthcheck(&self) -> Result<Option<Value>, String> {
        let durations = [
            ("interval", "Interval", self.health_interval),
            ("timeout", "Timeout", self.health_timeout),
            ("start-period", "StartPeriod", self.health_start_period),
            (
                "start-interval",
                "StartInterval",
                self.health_start_interval,
            ),
        ];
        let has_settings = self.health_cmd.as_ref().is_some_and(|c| !c.is_empty())
            || durations.iter().any(|(_, _, d)| d.unwrap_or(0) != 0)
            || self.health_retries.unwrap_or(0) != 0;
        if self.no_healthcheck {
            if has_settings {
                return Err("--no-healthcheck conflicts with --health-* options".to_owned());
            }
            return Ok(Some(json!({"Test": ["NONE"]})));
        }
        if !has_settings {
            return Ok(None);
        }
        let mut health = Map::new();
        if let Some(command) = self.health_cmd.as_ref().filter(|c| !c.is_empty()) {
            health.insert("Test".to_owned(), json!(["CMD-SHELL", command]));
        }
        if self.health_interval.unwrap_or(0) < 0 {
            return Err("--health-interval cannot be negative".to_owned());
        }
        if self.health_timeout.unwrap_or(0) < 0 {
            return Err("--health-timeout cannot be negative".to_owned());
        }
        if self.health_retries.unwrap_or(0) < 0 {
            return Err("--health-retries cannot be negative".to_owned());
        }
        for (flag, key, duration) in durations {
            let duration = duration.unwrap_or(0);
            if duration < 0 {
                return Err(format!("--health-{flag} cannot be negative"));
            }
            if duration != 0 {
                health.insert(key.to_owned(), json!(duration));
            }
        }
        if let Some(retries) = self.health_retries.filter(|r| *r != 0) {
            health.insert("Retries".to_owned(), json!(retries));
        }
        Ok(Some(Value::Object(health)))
    }
}

/// True when `version` (`1.41`) is older than `than`.
pub fn api_older_than(version: &str, than: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) < than
}

fn parse_device_cgroup_rule(rule: &str) -> Result<String, String> {
    if valid_device_cgroup_rule(rule) {
        Ok(rule.to_owned())
    } else {
        Err(format!("invalid device cgroup format '{rule}'"))
    }
}

fn valid_device_cgroup_rule(rule: &str) -> bool {
    let parts: Vec<&str> = rule.split(' ').collect();
    let number = |s: &str| s == "*" || !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    match parts.as_slice() {
        [kind, numbers, access] => {
            matches!(*kind, "a" | "b" | "c")
                && numbers
                    .split_once(':')
                    .is_some_and(|(major, minor)| number(major) && number(minor))
                && (1..=3).contains(&access.len())
                && access.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        }
        _ => false,
    }
}

/// The source of a `-v` spec (the compose loader's reading), `None` for an
/// anonymous volume.
fn volume_source(spec: &str) -> Result<Option<&str>, String> {
    if spec.is_empty() {
        return Err("invalid empty volume spec".to_owned());
    }
    if spec.len() <= 2 {
        return Ok(None);
    }
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "invalid spec: {spec}: empty section between colons"
        ));
    }
    match parts.as_slice() {
        [_] => Ok(None),
        [source, _] | [source, _, _] => Ok(Some(source)),
        _ => Err(format!("invalid spec: {spec}: too many colons")),
    }
}

/// A bind spec whose relative `./src` source is made absolute, as docker sends it.
fn bind_with_absolute_source(spec: &str) -> String {
    match spec.split_once(':') {
        Some((host, rest)) if host.starts_with('.') => {
            format!("{}:{rest}", absolute_if_relative(host))
        }
        _ => spec.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct Line {
        #[command(flatten)]
        options: CreateOptions,
    }

    fn request(args: &[&str]) -> Result<CreateRequest, String> {
        let mut line = vec!["create"];
        line.extend(args);
        Line::try_parse_from(line)
            .map_err(|e| e.to_string())?
            .options
            .request("1.41")
    }

    #[test]
    fn defaults_match_the_docker_cli_body() {
        let request = request(&["bb", "echo", "hi"]).expect("valid");
        let body = &request.body;
        assert_eq!(body["Cmd"], json!(["echo", "hi"]));
        assert_eq!(body["Env"], Value::Null);
        assert_eq!(body["Volumes"], json!({}));
        assert_eq!(body["Labels"], json!({}));
        assert_eq!(body["AttachStdout"], json!(true));
        assert_eq!(body["AttachStdin"], json!(false));
        let host = &body["HostConfig"];
        assert_eq!(host["NetworkMode"], json!("default"));
        assert_eq!(
            host["RestartPolicy"],
            json!({"Name": "no", "MaximumRetryCount": 0})
        );
        assert_eq!(host["Dns"], json!([]));
        assert_eq!(host["MemorySwappiness"], json!(-1));
        assert_eq!(host["Ulimits"], json!([]));
        assert!(host.get("Tmpfs").is_none());
        assert!(host.get("Init").is_none());
        assert!(body["NetworkingConfig"]["EndpointsConfig"]["default"].is_object());
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let request = request(&["-i", "bb", "sh", "-c", "exit 3"]).expect("valid");
        assert_eq!(request.body["Cmd"], json!(["sh", "-c", "exit 3"]));
        assert_eq!(request.body["StdinOnce"], json!(true));
        assert_eq!(request.body["HostConfig"]["CpuShares"], json!(0));
    }

    #[test]
    fn resources_and_security() {
        let request = request(&[
            "--cap-add",
            "net_admin",
            "--cap-add",
            "CAP_NET_ADMIN",
            "--cap-drop",
            "all",
            "-m",
            "64m",
            "--memory-swap",
            "-1",
            "--cpus",
            "0.5",
            "--pids-limit",
            "-1",
            "--ulimit",
            "nofile=100:200",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--tmpfs",
            "/run:size=1m",
            "-v",
            "/tmp:/t:ro",
            "-v",
            "/anon",
            "--mount",
            "type=tmpfs,target=/mnt,tmpfs-size=1m",
            "--init",
            "--restart",
            "on-failure:3",
            "--stop-timeout",
            "5",
            "--network",
            "none",
            "--health-cmd",
            "true",
            "--health-interval",
            "30s",
            "--device",
            "/dev/null:/dev/mynull:r",
            "bb",
        ])
        .expect("valid");
        let host = &request.body["HostConfig"];
        assert_eq!(host["CapAdd"], json!(["CAP_NET_ADMIN"]));
        assert_eq!(host["CapDrop"], json!(["ALL"]));
        assert_eq!(host["Memory"], json!(64 << 20));
        assert_eq!(host["MemorySwap"], json!(-1));
        assert_eq!(host["NanoCpus"], json!(500_000_000));
        assert_eq!(host["PidsLimit"], json!(-1));
        assert_eq!(
            host["Ulimits"],
            json!([{"Name": "nofile", "Hard": 200, "Soft": 100}])
        );
        assert_eq!(host["Sysctls"], json!({"net.ipv4.ip_forward": "1"}));
        assert_eq!(host["Tmpfs"], json!({"/run": "size=1m"}));
        assert_eq!(host["Binds"], json!(["/tmp:/t:ro"]));
        assert_eq!(request.body["Volumes"], json!({"/anon": {}}));
        assert_eq!(
            host["Mounts"],
            json!([{"Type": "tmpfs", "Target": "/mnt", "TmpfsOptions": {"SizeBytes": 1 << 20}}])
        );
        assert_eq!(host["Init"], json!(true));
        assert_eq!(
            host["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(request.body["StopTimeout"], json!(5));
        assert_eq!(
            request.body["NetworkingConfig"],
            json!({"EndpointsConfig": {}})
        );
        assert_eq!(
            request.body["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 30_000_000_000i64})
        );
        assert_eq!(
            host["Devices"],
            json!([{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "r"}])
        );
    }

    #[test]
    fn invalid_flags_are_refused_with_dockers_words() {
        let error = |args: &[&str]| request(args).err().unwrap_or_default();
        // Flags docker checks as it reads them are clap's errors.
        assert!(error(&["--ulimit", "bogus=1", "bb"]).contains("invalid ulimit type: bogus"));
        assert!(error(&["--sysctl", "kernel.hostname=x", "bb"])
            .contains("sysctl 'kernel.hostname=x' is not allowed"));
        assert_eq!(
            error(&["--rm", "--restart", "always", "bb"]),
            "conflicting options: cannot specify both --restart and --rm"
        );
        assert_eq!(error(&["--pid", "bogus", "bb"]), "--pid: invalid PID mode");
        assert_eq!(
            error(&["--uts", "container:x", "bb"]),
            "--uts: invalid UTS mode"
        );
        assert_eq!(
            error(&["--no-healthcheck", "--health-cmd", "x", "bb"]),
            "--no-healthcheck conflicts with --health-* options"
        );
        assert_eq!(
            error(&["--env-file", "/nonexistent/env", "bb"]),
            "open /nonexistent/env: no such file or directory"
        );
        assert_eq!(
            error(&["--restart", "on-failure:x", "bb"]),
            "invalid restart policy format: maximum retry count must be an integer"
        );
    }

    #[test]
    fn small_parsers() {
        assert_eq!(parse_nano_cpus("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_nano_cpus("2"), Ok(2_000_000_000));
        assert_eq!(
            parse_nano_cpus("0.0000000001"),
            Err("value is too precise".to_owned())
        );
        assert_eq!(
            split_csv(r#"type=bind,"source=/a,b",target=/c"#),
            Ok(vec![
                "type=bind".to_owned(),
                "source=/a,b".to_owned(),
                "target=/c".to_owned()
            ])
        );
        assert_eq!(validate_env("A=1"), Ok("A=1".to_owned()));
        assert_eq!(
            validate_env("BERTH_SURELY_UNSET_VARIABLE"),
            Ok("BERTH_SURELY_UNSET_VARIABLE".to_owned())
        );
        assert!(validate_env("=x").is_err());
        assert_eq!(
            parse_device("/dev/fuse"),
            Ok(
                json!({"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"})
            )
        );
        assert_eq!(volume_source("/a:/b"), Ok(Some("/a")));
        assert_eq!(volume_source("/anon"), Ok(None));
        assert!(volume_source("/a::/b").is_err());
        assert!(api_older_than("1.41", (1, 42)));
        assert!(!api_older_than("1.50", (1, 42)));
    }
}
