//! This workspace's berthd on private directories under one tempdir, on a
//! unix socket there and optionally a loopback TCP port. It can be killed and
//! started again on the same data-root; dropping the guard stops it by PID
//! and removes every mount and file under the tempdir.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::host::{
    ping, private_dir, processes_naming, remove_cgroup_subtree, remove_private_dir, stop_process,
    text, DockerApi, STARTUP_TIMEOUT,
};
use crate::{output_with_timeout, workspace_binary};

/// How berthd's log says a TCP port it was to listen on is taken.
const ADDR_IN_USE: &str = "Address already in use";

/// The longest berthd may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// berthd with its data-root, exec-root, an empty `daemon.json` and
/// `berthd.sock` under `dir`, and nothing else.
pub fn berthd_command(dir: &Path) -> Command {
    std::fs::write(dir.join("daemon.json"), "{}").expect("write daemon.json");
    let mut command = Command::new(workspace_binary("berthd"));
    command
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--config-file")
        .arg(dir.join("daemon.json"))
        .arg("-H")
        .arg(format!("unix://{}", dir.join("berthd.sock").display()));
    command
}

/// A loopback TCP port nothing listens on right now.
pub fn free_loopback_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("free loopback port")
        .port()
}

/// Why berthd did not come up.
struct SpawnError {
    /// Its TCP port was taken by someone else meanwhile.
    port_taken: bool,
    message: String,
}

/// Options for [`Berthd`].
#[derive(Debug, Default)]
pub struct BerthdBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    tcp: bool,
    daemon_json: Option<String>,
}

impl BerthdBuilder {
    /// One more daemon flag, e.g. `--group`.
    pub fn arg(mut self, arg: impl Into<String>) -> BerthdBuilder {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> BerthdBuilder {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The text of its `daemon.json` (else `{}`).
    pub fn daemon_json(mut self, text: impl Into<String>) -> BerthdBuilder {
        self.daemon_json = Some(text.into());
        self
    }

    /// An environment variable for berthd (e.g. `BERTH_REGISTRY_TIMEOUT`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> BerthdBuilder {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Also listen on a free loopback TCP port ([`Berthd::addr`]).
    pub fn tcp(mut self) -> BerthdBuilder {
        self.tcp = true;
        self
    }

    /// Starts berthd and waits until it answers on every address.
    #[track_caller]
    pub fn start(self) -> Berthd {
        let binary = workspace_binary("berthd");
        assert!(
            binary.is_file(),
            "{} does not exist: build it with `cargo build -p berthd`",
            binary.display()
        );
        let port = self.tcp.then(free_loopback_port);
        let mut berthd = Berthd {
            dir: private_dir("berth-berthd-"),
            child: None,
            args: self.args,
            daemon_json: self.daemon_json,
            env: self.env,
            port,
            cgroup_parent: crate::unique_name(),
        };
        // The free port may be taken by another process before berthd binds
        // it: then another port, a few times.
        let mut attempts = 1;
        loop {
            match berthd.try_spawn() {
                Ok(()) => return berthd,
                Err(e) if e.port_taken && berthd.port.is_some() && attempts < 5 => {
                    eprintln!("berthd: port {:?} was taken, another one", berthd.port);
                    berthd.port = Some(free_loopback_port());
                    attempts += 1;
                }
                // The guard, dropped by the panic, cleans up.
                Err(e) => panic!("{}", e.message),
            }
        }
    }
}

/// A berthd the test started; see the module documentation.
pub struct Berthd {
    dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    daemon_json: Option<String>,
    env: Vec<(String, String)>,
    port: Option<u16>,
    /// This daemon's own parent cgroup for its containers.
    cgroup_parent: String,
}

impl Berthd {
    /// A berthd on its unix socket only, with no extra flags.
    #[track_caller]
    pub fn start() -> Berthd {
        Berthd::builder().start()
    }

    pub fn builder() -> BerthdBuilder {
        BerthdBuilder::default()
    }

    /// The parent cgroup of this daemon's containers (`--cgroup-parent`).
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("berthd.pid")
    }

    /// The loopback TCP address; only for a berthd built with [`BerthdBuilder::tcp`].
    pub fn addr(&self) -> SocketAddr {
        let port = self.port.expect("berthd was started without TCP");
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    pub fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Starts berthd on this guard's directories (again, after [`Berthd::kill9`]
    /// or [`Berthd::terminate`]) and waits until it answers.
    #[track_caller]
    pub fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{}", e.message);
        }
    }

    /// [`Berthd::spawn`], with what went wrong as an error.
    fn try_spawn(&mut self) -> Result<(), SpawnError> {
        assert!(self.child.is_none(), "berthd is already running");
        // Where this start's messages begin in the appended log.
        let log_start = std::fs::metadata(self.dir.join("berthd.log")).map_or(0, |m| m.len());
        // Appended to, so the log of a run before a restart stays readable.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("berthd.log"))
            .expect("open berthd.log");
        let mut command = berthd_command(&self.dir);
        if let Some(text) = &self.daemon_json {
            std::fs::write(self.dir.join("daemon.json"), text).expect("write daemon.json");
        }
        command.arg("--pidfile").arg(self.pidfile());
        command.arg("--cgroup-parent").arg(&self.cgroup_parent);
        if let Some(port) = self.port {
            command.arg("-H").arg(format!("tcp://127.0.0.1:{port}"));
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(command.spawn().map_err(|e| SpawnError {
            port_taken: false,
            message: format!("start berthd: {e}"),
        })?);
        let started = Instant::now();
        while !self.answers() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                let log = self.log();
                let this_start = log.get(log_start as usize..).unwrap_or(&log);
                return Err(SpawnError {
                    port_taken: this_start.contains(ADDR_IN_USE),
                    message: format!("berthd exited with {status} on start:\n{log}"),
                });
            }
            if started.elapsed() >= STARTUP_TIMEOUT {
                return Err(SpawnError {
                    port_taken: false,
                    message: format!(
                        "berthd did not answer within {STARTUP_TIMEOUT:?}:\n{}",
                        self.log()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn answers(&self) -> bool {
        ping(&self.socket())
            && self
                .port
                .is_none_or(|_| TcpStream::connect(self.addr()).is_ok())
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status.
    #[track_caller]
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("berthd is running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for berthd") {
                return status;
            }
            if started.elapsed() > SHUTDOWN_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berthd ignored SIGTERM: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `curl -s` of `path` on the unix socket: the response body.
    pub fn curl(&self, path: &str) -> String {
        let mut command = Command::new("curl");
        command
            .arg("-s")
            .arg("--unix-socket")
            .arg(self.socket())
            .arg(format!("http://berth{path}"));
        let out = output_with_timeout(&mut command, crate::host::CLI_TIMEOUT).expect("run curl");
        text(&out.stdout)
    }
}

impl DockerApi for Berthd {
    fn name(&self) -> &str {
        "berthd"
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("berthd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("berthd.log")).unwrap_or_default()
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        // berthd first, at once (so no restart policy starts a container
        // while the rest goes), then the containers, then whatever else
        // names this daemon's directory (shims, runtimes, a container init
        // a shim was creating), a few rounds: a runtime killed mid-create
        // may leave a child behind it.
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        for _ in 0..3 {
            remove_cgroup_subtree(&self.cgroup_parent);
            for pid in processes_naming(&self.dir) {
                stop_process(pid, Duration::ZERO);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        remove_cgroup_subtree(&self.cgroup_parent);
        remove_private_dir(&self.dir);
    }
}
