#![forbid(unsafe_code)]
//! berth-runtime: runc's command line over the Berth runtime library, so
//! dockerd, containerd and podman can drive it as they drive runc.

mod console;
mod spec;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use berth_runtime::container::{self, CreateOptions};
use berth_runtime::state::{ContainerState, Status};
use clap::{Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "OCI runtime of Berth (runc-compatible command line)"
)]
struct Cli {
    /// Directory for container state (must be on tmpfs)
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Write errors and debug output to this file instead of stderr
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Enable debug output
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (not supported)
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility; rootless mode is decided from the config
    #[arg(long, global = true)]
    rootless: Option<String>,
    /// Keep compiled seccomp programs in this directory and reuse them
    /// (Berth's shim passes its exec-root's cache)
    #[arg(long = "seccomp-cache", global = true, hide = true)]
    seccomp_cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Path to the bundle directory
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// UNIX socket that receives the pty master
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the container's pid to
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for compatibility (no session keyring is created)
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass this many extra fds (from 3) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    container_id: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container, ready to start
    Create(CreateArgs),
    /// Run the user-defined process of a created container
    Start { container_id: String },
    /// Create and start a container
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process
        #[arg(short, long)]
        detach: bool,
        /// Accepted for compatibility: the container is deleted after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Output the state of a container
    State { container_id: String },
    /// Send a signal to the container's init (or all processes)
    Kill {
        /// Send the signal to all processes in the container
        #[arg(short, long)]
        all: bool,
        container_id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and its resources
    Delete {
        /// Kill the container first if it is running
        #[arg(short, long)]
        force: bool,
        container_id: String,
    },
    /// Run a new process in a container
    Exec(Box<ExecArgs>),
    /// List the processes of a container
    Ps {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        container_id: String,
        /// Options passed to ps(1) for the table format
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze all processes of a container
    Pause { container_id: String },
    /// Thaw all processes of a container
    Resume { container_id: String },
    /// List containers
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print only ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Change the resource limits of a container
    Update(UpdateArgs),
    /// Print the features this runtime supports (JSON)
    Features,
    /// Write a default config.json
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print container events and resource usage
    Events {
        /// Print stats once and exit
        #[arg(long)]
        stats: bool,
        /// Interval between stats
        #[arg(long, default_value = "5s")]
        interval: String,
        container_id: String,
    },
}

#[derive(clap::Args)]
struct UpdateArgs {
    /// JSON file with the new linux.resources ("-" reads stdin)
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Block IO weight (10-1000)
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// CPU CFS period in microseconds
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    /// CPUs allowed (e.g. 0-1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes allowed
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Memory limit in bytes (suffixes k, m, g allowed)
    #[arg(long)]
    memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Memory plus swap limit (-1 for unlimited)
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// Maximum number of pids (-1 or 0 for unlimited)
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    container_id: String,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// A JSON file describing the process (overrides the other flags)
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Environment variables (KEY=VALUE), may repeat
    #[arg(short, long)]
    env: Vec<String>,
    /// User as uid[:gid]
    #[arg(short, long)]
    user: Option<String>,
    /// Additional gids, may repeat
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Working directory in the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Detach from the process
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Add a capability, may repeat
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Set no_new_privileges
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
    /// Accepted for compatibility (no SELinux here)
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// Accepted for compatibility (no AppArmor here)
    #[arg(long)]
    apparmor: Option<String>,
    container_id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = Logger {
        path: cli.log.clone(),
        json: cli.log_format == LogFormat::Json,
    };
    if cli.debug {
        let args: Vec<String> = std::env::args().collect();
        log.write("debug", &format!("command line: {}", args.join(" ")));
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            log.error(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

struct Logger {
    path: Option<PathBuf>,
    json: bool,
}

impl Logger {
    /// A line in the log file (runc's text or JSON form); without --log,
    /// debug lines go to stderr.
    fn write(&self, level: &str, msg: &str) {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let line = if self.json {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}")
        };
        match &self.path {
            Some(path) => {
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    let _ = writeln!(f, "{line}");
                }
            }
            None if level != "error" => eprintln!("{line}"),
            None => {}
        }
    }

    fn error(&self, msg: &str) {
        self.write("error", msg);
        eprintln!("berth-runtime: {msg}");
    }
}

fn run(cli: Cli) -> Result<u8> {
    if cli.systemd_cgroup {
        bail!(
            "--systemd-cgroup is not supported: this runtime manages cgroups through cgroupfs only"
        );
    }
    let root = cli.root.as_path();
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run { .. } | Command::Exec(_)
    ) {
        berth_runtime::sealed_exe::reexec_sealed()?;
    }
    match cli.command {
        Command::Create(a) => {
            let created = create(root, &a, false)?;
            drop(created);
            Ok(0)
        }
        Command::Start { container_id } => {
            container::start(root, &container_id)?;
            Ok(0)
        }
        Command::Run {
            create: a, detach, ..
        } => run_container(root, &a, detach),
        Command::State { container_id } => {
            let st = ContainerState::load(root, &container_id)?;
            let status = container::status(root, &st);
            println!("{}", serde_json::to_string_pretty(&st.report(status))?);
            Ok(0)
        }
        Command::Kill {
            all,
            container_id,
            signal,
        } => {
            container::kill(root, &container_id, parse_signal(&signal)?, all)?;
            Ok(0)
        }
        Command::Delete {
            force,
            container_id,
        } => {
            container::delete(root, &container_id, force)?;
            Ok(0)
        }
        Command::Exec(a) => exec(root, *a, cli.seccomp_cache.as_deref()),
        Command::Ps {
            format,
            container_id,
            ps_args,
        } => {
            let pids = container::pids(root, &container_id)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string(&pids)?),
                Format::Table => print_ps_table(&pids, &ps_args)?,
            }
            Ok(0)
        }
        Command::Pause { container_id } => {
            container::pause(root, &container_id)?;
            Ok(0)
        }
        Command::Resume { container_id } => {
            container::resume(root, &container_id)?;
            Ok(0)
        }
        Command::List { format, quiet } => {
            list(root, format, quiet)?;
            Ok(0)
        }
        Command::Update(a) => {
            let resources = spec::resources_from_update(&a)?;
            container::update(root, &a.container_id, &resources)?;
            Ok(0)
        }
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&spec::features())?);
            Ok(0)
        }
        Command::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            std::fs::write(&path, serde_json::to_string_pretty(&spec::default_spec())?)
                .with_context(|| format!("write {}", path.display()))?;
            Ok(0)
        }
        Command::Events {
            stats,
            interval,
            container_id,
        } => {
            let every = parse_interval(&interval)?;
            loop {
                let data = container::stats(root, &container_id)?;
                println!(
                    "{}",
                    serde_json::json!({"type": "stats", "id": container_id, "data": data})
                );
                if stats {
                    return Ok(0);
                }
                std::thread::sleep(every);
            }
        }
    }
}

fn parse_interval(s: &str) -> Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid interval {s:?}"))?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" | "" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        _ => bail!("invalid interval {s:?}: use a number with ms, s or m"),
    })
}

fn create(root: &Path, a: &CreateArgs, keep_console: bool) -> Result<container::Created> {
    let created = container::create(&CreateOptions {
        root,
        id: &a.container_id,
        bundle: &a.bundle,
        pid_file: a.pid_file.as_deref(),
        console_socket: a.console_socket.as_deref(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        stdio: None,
        seccomp_cache: None,
    })?;
    if created.console.is_some() && !keep_console {
        let _ = container::delete(root, &a.container_id, true);
        bail!("process.terminal is true but no --console-socket was given");
    }
    Ok(created)
}

/// `run`: create and start; in the foreground, stay the container's
/// subreaper, relay signals (and the terminal), delete it afterwards and exit
/// with its status.
fn run_container(root: &Path, a: &CreateArgs, detach: bool) -> Result<u8> {
    if !detach {
        nix::sys::prctl::set_child_subreaper(true).context("become subreaper")?;
    }
    let created = create(root, a, !detach)?;
    let pid = created.state.pid;
    if let Err(e) = container::start(root, &a.container_id) {
        let _ = container::delete(root, &a.container_id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let code = console::wait_foreground(pid, created.console);
    let _ = container::delete(root, &a.container_id, true);
    code
}

fn exec(root: &Path, a: ExecArgs, seccomp_cache: Option<&Path>) -> Result<u8> {
    let st = ContainerState::load(root, &a.container_id)?;
    let process = match &a.process {
        Some(path) => {
            let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            serde_json::from_slice::<oci_spec::runtime::Process>(&data)
                .with_context(|| format!("invalid process JSON in {}", path.display()))?
        }
        None => spec::process_from_flags(&st.bundle, &a)?,
    };
    let terminal = process.terminal().unwrap_or(false);
    if terminal && a.detach && a.console_socket.is_none() {
        bail!("cannot allocate a tty when detaching without --console-socket");
    }
    if !a.detach {
        nix::sys::prctl::set_child_subreaper(true).context("become subreaper")?;
    }
    let execed = berth_runtime::exec::exec(berth_runtime::exec::ExecOptions {
        root,
        id: &a.container_id,
        process,
        pid_file: a.pid_file.as_deref(),
        console_socket: a.console_socket.as_deref(),
        preserve_fds: a.preserve_fds,
        seccomp_cache,
    })?;
    if a.detach {
        return Ok(0);
    }
    console::wait_foreground(execed.pid, execed.console)
}

fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("unknown signal {s:?}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))
}

fn print_ps_table(pids: &[i32], ps_args: &[String]) -> Result<()> {
    let args: Vec<&str> = if ps_args.is_empty() {
        vec!["-ef"]
    } else {
        ps_args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(());
    };
    let Some(pid_col) = header.split_whitespace().position(|h| h == "PID") else {
        bail!("ps output has no PID column");
    };
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(())
}

fn list(root: &Path, format: Format, quiet: bool) -> Result<()> {
    let all = container::list(root)?;
    if quiet {
        for (st, _) in &all {
            println!("{}", st.id);
        }
        return Ok(());
    }
    match format {
        Format::Json => {
            let items: Vec<_> = all
                .iter()
                .map(|(st, status)| {
                    serde_json::json!({
                        "ociVersion": berth_runtime::state::OCI_VERSION,
                        "id": st.id,
                        "pid": if *status == Status::Stopped { 0 } else { st.pid },
                        "status": status.to_string(),
                        "bundle": st.bundle,
                        "rootfs": st.rootfs,
                        "created": st.created,
                        "owner": st.owner,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string(&items)?);
        }
        Format::Table => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for (st, status) in &all {
                let pid = if *status == Status::Stopped {
                    0
                } else {
                    st.pid
                };
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                    st.id,
                    pid,
                    status,
                    st.bundle.display(),
                    st.created,
                    if st.owner.is_empty() {
                        "root"
                    } else {
                        &st.owner
                    }
                );
            }
        }
    }
    Ok(())
}
