//! The long-lived shim: creates the container, then serves
//! `shim.sock` (one thread per connection) while its threads copy output,
//! reap, and record the exit. It exits once the container has exited and no
//! client has been connected for [`LINGER`], or right after `shutdown`.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_logs::Stream;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Value};

use crate::console::ConsoleSocket;
use crate::container_log::ContainerLog;
use crate::oom::OomCounter;
use crate::protocol::{read_line, Request, Response};
use crate::reaper::Reaper;
use crate::record::{exit_code, now_rfc3339, write_exit, EXIT_FILE};
use crate::runtime::{ProcessStdio, Runtime, RUNTIME_LOG};
use crate::stdio::Hub;
use crate::{
    AttachOptions, Error, ExecOptions, ExitStatus, Result, ShimState, SpawnOptions, LINGER,
};

/// Stack of every shim thread: they copy bytes and parse small JSON.
pub(crate) const THREAD_STACK: usize = 256 * 1024;

/// How long output may still flow after a process exited (a process outside
/// the container's pid namespace may hold its pipes).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `shutdown` waits for a killed container to be reaped.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Finished execs kept for a late `wait`; older ones are forgotten.
const FINISHED_EXECS_KEPT: usize = 64;

const INIT_PID_FILE: &str = "init.pid";
const CONSOLE_SOCKET: &str = "console.sock";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait_on<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cond.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// The shim's main: report "created" (or the error) on stdout, then serve.
pub(crate) fn serve(state_dir: &Path) -> i32 {
    // A new session: no terminal, no signals meant for the daemon's group.
    let _ = nix::unistd::setsid();
    let setup = berth_sys::process::cloexec_from(3)
        .map_err(|e| Error::io("mark inherited fds close-on-exec", e.into()))
        .and_then(|()| read_options(state_dir))
        .and_then(Shim::setup);
    let reported = match &setup {
        Ok((shim, _)) => Ok(json!({ "pid": shim.init_pid })),
        Err(e) => Err(clone_error(e)),
    };
    let code = crate::launch::report(&reported);
    // Let go of the pipes from the daemon: nothing more goes to it.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
    match setup {
        Ok((shim, listener)) => {
            // Creating the container (config.json, seccomp) left free heap
            // that would stay private memory for the container's life.
            berth_sys::process::release_free_heap();
            shim.run(listener);
            0
        }
        // The error went to the report; `spawn` removes shim.log.
        Err(_) => code,
    }
}

fn clone_error(e: &Error) -> Error {
    crate::protocol::ErrorReply::from(e).into_error()
}

fn read_options(state_dir: &Path) -> Result<SpawnOptions> {
    let mut json = Vec::new();
    io::stdin()
        .take(16 << 20)
        .read_to_end(&mut json)
        .map_err(|e| Error::io("read the spawn options", e))?;
    let options: SpawnOptions = serde_json::from_slice(&json)
        .map_err(|e| Error::Protocol(format!("spawn options: {e}")))?;
    if options.state_dir != state_dir {
        return Err(Error::Protocol(format!(
            "spawn options name state dir {}, the command line {}",
            options.state_dir.display(),
            state_dir.display()
        )));
    }
    Ok(options)
}

fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_options(options: &SpawnOptions) -> Result<()> {
    if !valid_id(&options.id) {
        return Err(Error::Protocol(format!(
            "container id {:?}: expected 1 to 128 characters of [A-Za-z0-9_.-]",
            options.id
        )));
    }
    crate::launch::check_state_dir(&options.state_dir)?;
    if !options.bundle.is_absolute() {
        return Err(Error::Protocol(format!(
            "bundle {}: expected an absolute path",
            options.bundle.display()
        )));
    }
    Ok(())
}

/// The shim cannot reap if it inherited SIGCHLD ignored (children would be
/// reaped by the kernel and their statuses lost).
fn check_sigchld() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("read /proc/self/status", e))?;
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap_or(0);
    if ignored & (1 << (libc::SIGCHLD - 1)) != 0 {
        return Err(Error::Protocol(
            "the shim was started with SIGCHLD ignored and could not learn exit statuses".into(),
        ));
    }
    Ok(())
}

fn remove_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("berth-shim: remove {}: {e}", path.display()),
    }
}

fn pipe() -> Result<(File, File)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("pipe", e.into()))?;
    Ok((File::from(read), File::from(write)))
}

fn read_pid(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Runtime(format!(
            "the runtime wrote no pid file {}: {e}",
            path.display()
        ))
    })?;
    text.trim()
        .parse()
        .ok()
        .filter(|&pid: &i32| pid > 0)
        .ok_or_else(|| {
            Error::Runtime(format!(
                "pid file {} holds {:?}, not a pid",
                path.display(),
                text.trim()
            ))
        })
}

fn to_value(value: impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::Protocol(e.to_string()))
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Stopped => "stopped",
        }
    }
}

struct Status {
    phase: Phase,
    started_at: Option<String>,
    exit: Option<ExitStatus>,
}

struct Life {
    connections: usize,
    /// When the last connection ended (or the container exited).
    idle_since: Instant,
    shutdown: Option<Instant>,
}

enum ExecPhase {
    Created,
    Starting,
    Running,
    Exited(ExitStatus),
    Failed(String),
}

struct Exec {
    /// Names its files in the state dir (exec ids come from outside).
    seq: u64,
    options: ExecOptions,
    hub: Arc<Hub>,
    phase: Mutex<ExecPhase>,
    changed: Condvar,
}

impl Exec {
    fn set_phase(&self, phase: ExecPhase) {
        *lock(&self.phase) = phase;
        self.changed.notify_all();
    }

    fn is_finished(&self) -> bool {
        matches!(
            *lock(&self.phase),
            ExecPhase::Exited(_) | ExecPhase::Failed(_)
        )
    }
}

#[derive(Default)]
struct Execs {
    by_id: HashMap<String, Arc<Exec>>,
    /// Ids in creation order, for forgetting the oldest finished ones.
    order: VecDeque<String>,
    next_seq: u64,
}

pub(crate) struct Shim {
    options: SpawnOptions,
    runtime: Runtime,
    reaper: Arc<Reaper>,
    init_pid: i32,
    init: Arc<Hub>,
    log: Option<Arc<ContainerLog>>,
    oom: Option<OomCounter>,
    status: Mutex<Status>,
    status_changed: Condvar,
    execs: Mutex<Execs>,
    life: Mutex<Life>,
}

/// Removes what a failed setup made: the runtime's container, the socket,
/// the files in the state dir, the log writer.
struct SetupGuard<'a> {
    files: Vec<PathBuf>,
    runtime: Option<&'a Runtime>,
    log: Option<Arc<ContainerLog>>,
    armed: bool,
}

impl Drop for SetupGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(runtime) = self.runtime {
            // The runtime removes what a failed create made; this is for a
            // create that succeeded before a later step failed.
            let _ = runtime.delete(true);
        }
        if let Some(log) = &self.log {
            log.close();
        }
        for file in &self.files {
            remove_file(file);
        }
    }
}

impl Shim {
    fn setup(options: SpawnOptions) -> Result<(Arc<Shim>, UnixListener)> {
        check_options(&options)?;
        check_sigchld()?;
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::io("become a child subreaper", e.into()))?;
        // Hold no directory busy.
        std::env::set_current_dir("/").map_err(|e| Error::io("chdir /", e))?;
        let state_dir = options.state_dir.clone();
        let socket = crate::socket_path(&state_dir);
        if UnixStream::connect(&socket).is_ok() {
            return Err(Error::Protocol(format!(
                "a shim already serves {}",
                socket.display()
            )));
        }
        for stale in [
            socket.clone(),
            state_dir.join(EXIT_FILE),
            state_dir.join(INIT_PID_FILE),
            state_dir.join(CONSOLE_SOCKET),
        ] {
            remove_file(&stale);
        }
        // Its thread starts after an in-process create (which forks).
        let reaper = Reaper::new();
        let runtime = Runtime::new(&options, reaper.clone());
        let mut guard = SetupGuard {
            files: vec![state_dir.join(RUNTIME_LOG), state_dir.join(INIT_PID_FILE)],
            runtime: None,
            log: None,
            armed: true,
        };
        let listener = UnixListener::bind(&socket)
            .map_err(|e| Error::io(format!("listen on {}", socket.display()), e))?;
        guard.files.push(socket.clone());
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("chmod {}", socket.display()), e))?;
        let log = ContainerLog::open(&options.log, &options.log_context)
            .map_err(Error::Log)?
            .map(Arc::new);
        guard.log = log.clone();
        let hub = Hub::new(options.tty, options.stdin_once);
        let pid_file = state_dir.join(INIT_PID_FILE);
        let since = reaper.mark();
        let (init_pid, oom) = {
            let created = create(&options, &runtime, &reaper, &pid_file, &hub, log.as_ref());
            guard.runtime = Some(&runtime);
            let init_pid = created?;
            reaper.watch(init_pid, since);
            (init_pid, OomCounter::find(init_pid))
        };
        guard.armed = false;
        drop(guard);
        let shim = Arc::new(Shim {
            options,
            runtime,
            reaper,
            init_pid,
            init: hub,
            log,
            oom,
            status: Mutex::new(Status {
                phase: Phase::Created,
                started_at: None,
                exit: None,
            }),
            status_changed: Condvar::new(),
            execs: Mutex::new(Execs::default()),
            life: Mutex::new(Life {
                connections: 0,
                idle_since: Instant::now(),
                shutdown: None,
            }),
        });
        let monitor = shim.clone();
        std::thread::Builder::new()
            .name("init".into())
            .stack_size(THREAD_STACK)
            .spawn(move || monitor.monitor_init())
            .map_err(|e| {
                let _ = shim.runtime.delete(true);
                remove_file(&socket);
                Error::io("start the init monitor", e)
            })?;
        Ok((shim, listener))
    }

    /// Accepts connections until it is time to go, then removes the socket.
    fn run(self: Arc<Self>, listener: UnixListener) {
        if let Err(e) = listener.set_nonblocking(true) {
            eprintln!("berth-shim: listener: {e}");
        }
        // The daemon may start the container again in the same dir while
        // this shim lingers: at the end, remove the socket only if it is
        // still this shim's.
        let socket = crate::socket_path(&self.options.state_dir);
        let identity = |p: &std::path::Path| {
            std::fs::symlink_metadata(p).ok().map(|m| {
                (
                    std::os::unix::fs::MetadataExt::dev(&m),
                    std::os::unix::fs::MetadataExt::ino(&m),
                )
            })
        };
        let own = identity(&socket);
        loop {
            let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(250u16));
            loop {
                match listener.accept() {
                    Ok((stream, _)) => self.clone().serve_connection(stream),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("berth-shim: accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                }
            }
            if self.time_to_exit() {
                break;
            }
        }
        if own.is_some() && identity(&socket) == own {
            remove_file(&socket);
        }
    }

    fn time_to_exit(&self) -> bool {
        if lock(&self.status).exit.is_none() {
            return false;
        }
        let life = lock(&self.life);
        match life.shutdown {
            Some(at) => life.connections == 0 || at.elapsed() >= LINGER,
            None => life.connections == 0 && life.idle_since.elapsed() >= LINGER,
        }
    }

    fn serve_connection(self: Arc<Self>, stream: UnixStream) {
        lock(&self.life).connections += 1;
        // Counted until the thread ends, also if it panics.
        let open = OpenConnection(self.clone());
        let started = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || open.0.handle(stream));
        if let Err(e) = started {
            eprintln!("berth-shim: connection thread: {e}");
        }
    }

    fn handle(self: &Arc<Self>, stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(read_half);
        let request = match read_line(&mut reader) {
            Ok(Some(line)) => serde_json::from_slice::<Request>(&line)
                .map_err(|e| Error::Protocol(format!("bad request: {e}"))),
            Ok(None) => return,
            Err(e) => Err(Error::Protocol(format!("bad request: {e}"))),
        };
        let _ = stream.set_read_timeout(None);
        let mut stream = stream;
        match request {
            Ok(Request::Attach(options)) => self.attach(&options, reader, stream),
            Ok(request) => {
                let result = self.dispatch(request);
                let _ = stream.write_all(&Response::from_result(result).to_line());
            }
            Err(e) => {
                let _ = stream.write_all(&Response::from_result(Err(e)).to_line());
            }
        }
    }

    fn dispatch(self: &Arc<Self>, request: Request) -> Result<Value> {
        match request {
            Request::Start => to_value(self.start()?),
            Request::State => to_value(self.state()),
            Request::Kill { signal, all } => {
                if !(1..=64).contains(&signal) {
                    return Err(Error::Protocol(format!(
                        "signal {signal}: expected 1 to 64"
                    )));
                }
                self.require_not_stopped()?;
                self.runtime.kill(signal, all).map(|()| Value::Null)
            }
            Request::Pause => {
                self.require_not_stopped()?;
                self.runtime.pause()?;
                self.set_phase(Phase::Paused);
                Ok(Value::Null)
            }
            Request::Resume => {
                self.require_not_stopped()?;
                self.runtime.resume()?;
                self.set_phase(Phase::Running);
                Ok(Value::Null)
            }
            Request::Resize {
                exec,
                width,
                height,
            } => {
                let hub = self.hub(exec.as_deref())?;
                hub.resize(width, height)
                    .map_err(|e| Error::io("resize the terminal", e))?;
                Ok(Value::Null)
            }
            Request::Wait { exec } => to_value(self.wait(exec.as_deref())?),
            Request::ExecCreate(options) => self.exec_create(options).map(|()| Value::Null),
            Request::ExecStart { exec_id } => to_value(self.exec_start(&exec_id)?),
            Request::Pids => {
                self.require_not_stopped()?;
                to_value(self.runtime.ps()?)
            }
            Request::Update { resources } => {
                if !resources.is_object() {
                    return Err(Error::Protocol(
                        "resources: expected an OCI LinuxResources object".into(),
                    ));
                }
                self.require_not_stopped()?;
                self.runtime.update(&resources).map(|()| Value::Null)
            }
            Request::Shutdown => self.shutdown().map(|()| Value::Null),
            Request::Attach(_) => Err(Error::Protocol("attach is served on its own".into())),
        }
    }

    fn state(&self) -> ShimState {
        let status = lock(&self.status);
        ShimState {
            pid: self.init_pid,
            status: status.phase.name().to_string(),
            started_at: status.started_at.clone(),
            exit: status.exit.clone(),
        }
    }

    /// A request that needs a live container after its exit.
    fn not_running(&self) -> Error {
        Error::NotRunning(self.options.id.clone())
    }

    fn require_not_stopped(&self) -> Result<()> {
        if lock(&self.status).phase == Phase::Stopped {
            return Err(self.not_running());
        }
        Ok(())
    }

    /// Records a new phase unless the container already stopped.
    fn set_phase(&self, phase: Phase) {
        let mut status = lock(&self.status);
        if status.phase != Phase::Stopped {
            status.phase = phase;
        }
    }

    fn start(&self) -> Result<ShimState> {
        {
            let status = lock(&self.status);
            if status.phase != Phase::Created {
                return Err(Error::Runtime(format!(
                    "container {} is {}, not created",
                    self.options.id,
                    status.phase.name()
                )));
            }
        }
        self.runtime.start()?;
        {
            let mut status = lock(&self.status);
            status.started_at = Some(now_rfc3339());
            if status.phase == Phase::Created {
                status.phase = Phase::Running;
            }
        }
        Ok(self.state())
    }

    fn hub(&self, exec: Option<&str>) -> Result<Arc<Hub>> {
        match exec {
            None => Ok(self.init.clone()),
            Some(id) => Ok(self.exec(id)?.hub.clone()),
        }
    }

    fn exec(&self, id: &str) -> Result<Arc<Exec>> {
        lock(&self.execs)
            .by_id
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NoSuchExec(id.to_string()))
    }

    fn attach(self: &Arc<Self>, options: &AttachOptions, input: impl Read, mut stream: UnixStream) {
        let hub = match self.hub(options.exec.as_deref()) {
            Ok(hub) => hub,
            Err(e) => {
                let _ = stream.write_all(&Response::from_result(Err(e)).to_line());
                return;
            }
        };
        let ready =
            |stream: &mut UnixStream| stream.write_all(&Response::Ok(Value::Null).to_line());
        if let Err(e) = hub.attach(options, input, stream, ready) {
            eprintln!("berth-shim: attach: {e}");
        }
    }

    fn wait(&self, exec: Option<&str>) -> Result<ExitStatus> {
        let Some(id) = exec else {
            let mut status = lock(&self.status);
            loop {
                if let Some(exit) = &status.exit {
                    return Ok(exit.clone());
                }
                status = wait_on(&self.status_changed, status);
            }
        };
        let exec = self.exec(id)?;
        let mut phase = lock(&exec.phase);
        loop {
            match &*phase {
                ExecPhase::Exited(exit) => return Ok(exit.clone()),
                ExecPhase::Failed(why) => return Err(Error::Runtime(why.clone())),
                _ => phase = wait_on(&exec.changed, phase),
            }
        }
    }

    fn exec_create(&self, options: ExecOptions) -> Result<()> {
        if !valid_id(&options.exec_id) {
            return Err(Error::Protocol(format!(
                "exec id {:?}: expected 1 to 128 characters of [A-Za-z0-9_.-]",
                options.exec_id
            )));
        }
        if !options.process.is_object() {
            return Err(Error::Protocol(
                "exec process: expected an OCI process object".into(),
            ));
        }
        self.require_not_stopped()?;
        let mut execs = lock(&self.execs);
        if execs.by_id.contains_key(&options.exec_id) {
            return Err(Error::Protocol(format!(
                "exec {} already exists",
                options.exec_id
            )));
        }
        forget_finished_execs(&mut execs);
        let seq = execs.next_seq;
        execs.next_seq += 1;
        let id = options.exec_id.clone();
        let exec = Arc::new(Exec {
            seq,
            hub: Hub::new(options.tty, true),
            options,
            phase: Mutex::new(ExecPhase::Created),
            changed: Condvar::new(),
        });
        execs.by_id.insert(id.clone(), exec);
        execs.order.push_back(id);
        Ok(())
    }

    fn exec_start(self: &Arc<Self>, id: &str) -> Result<i32> {
        let exec = self.exec(id)?;
        {
            let mut phase = lock(&exec.phase);
            if !matches!(*phase, ExecPhase::Created) {
                return Err(Error::Protocol(format!("exec {id} was already started")));
            }
            *phase = ExecPhase::Starting;
        }
        let started = self
            .require_not_stopped()
            .and_then(|()| self.run_exec(&exec));
        match started {
            Ok(pid) => {
                exec.set_phase(ExecPhase::Running);
                let shim = self.clone();
                let monitored = exec.clone();
                let monitor = std::thread::Builder::new()
                    .name("exec".into())
                    .stack_size(THREAD_STACK)
                    .spawn(move || shim.monitor_exec(&monitored, pid));
                if let Err(e) = monitor {
                    // Unwatched, the exec's exit would never be known: end it.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    let failed = Error::io("start the exec monitor", e);
                    exec.hub.finish();
                    exec.set_phase(ExecPhase::Failed(failed.to_string()));
                    return Err(failed);
                }
                Ok(pid)
            }
            Err(e) => {
                exec.hub.finish();
                exec.set_phase(ExecPhase::Failed(e.to_string()));
                Err(e)
            }
        }
    }

    /// Runs the runtime's `exec -d` with the exec's stdio; its pid.
    fn run_exec(&self, exec: &Exec) -> Result<i32> {
        let state_dir = &self.options.state_dir;
        let base = format!("exec-{}", exec.seq);
        let process_file = state_dir.join(format!("{base}.json"));
        let pid_file = state_dir.join(format!("{base}.pid"));
        let _files = RemoveOnDrop(vec![process_file.clone(), pid_file.clone()]);
        let mut process = exec.options.process.clone();
        process["terminal"] = Value::Bool(exec.options.tty);
        // A size asked for before the start is there when the process runs.
        if let Some((width, height)) = exec.hub.pending_size() {
            if process.get("consoleSize").is_none() {
                process["consoleSize"] = json!({ "height": height, "width": width });
            }
        }
        let data = serde_json::to_vec(&process).map_err(|e| Error::Protocol(e.to_string()))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&process_file)
            .and_then(|mut f| f.write_all(&data))
            .map_err(|e| Error::io(format!("write {}", process_file.display()), e))?;
        let (err_read, err_write) = pipe()?;
        let since = self.reaper.mark();
        if exec.options.tty {
            let console = ConsoleSocket::bind(state_dir.join(format!("{base}.sock")))
                .map_err(|e| Error::io("console socket", e))?;
            let stdio = ProcessStdio {
                stdin: Stdio::null(),
                stdout: Stdio::null(),
                stderr: Stdio::from(err_write),
                stderr_pipe: Some(&err_read),
            };
            self.runtime
                .exec(&process_file, &pid_file, Some(console.path()), stdio)?;
            let pid = read_pid(&pid_file)?;
            self.reaper.watch(pid, since);
            let master = match console.receive() {
                Ok(master) => Arc::new(master),
                Err(e) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    return Err(Error::io("receive the exec's terminal", e));
                }
            };
            exec.hub
                .set_master(master.clone())
                .map_err(|e| Error::io("size the exec's terminal", e))?;
            exec.hub
                .set_stdin(exec.options.stdin.then(|| master.clone()));
            exec.hub
                .pump(Stream::Stdout, master, None)
                .map_err(|e| Error::io("start an output thread", e))?;
            return Ok(pid);
        }
        let (stdin, stdin_sink) = if exec.options.stdin {
            let (read, write) = pipe()?;
            (Stdio::from(read), Some(Arc::new(write)))
        } else {
            (Stdio::null(), None)
        };
        let (out_read, out_write) = pipe()?;
        let stdio = ProcessStdio {
            stdin,
            stdout: Stdio::from(out_write),
            stderr: Stdio::from(err_write),
            stderr_pipe: Some(&err_read),
        };
        self.runtime.exec(&process_file, &pid_file, None, stdio)?;
        let pid = read_pid(&pid_file)?;
        self.reaper.watch(pid, since);
        exec.hub.set_stdin(stdin_sink);
        for (stream, source) in [(Stream::Stdout, out_read), (Stream::Stderr, err_read)] {
            exec.hub
                .pump(stream, Arc::new(source), None)
                .map_err(|e| Error::io("start an output thread", e))?;
        }
        Ok(pid)
    }

    fn monitor_exec(&self, exec: &Exec, pid: i32) {
        let status = self.reaper.wait(pid, None);
        let finished_at = now_rfc3339();
        if !exec.hub.drain(DRAIN_TIMEOUT) {
            eprintln!(
                "berth-shim: exec {}: output still open {} s after it exited",
                exec.options.exec_id,
                DRAIN_TIMEOUT.as_secs()
            );
        }
        exec.hub.finish();
        exec.set_phase(ExecPhase::Exited(ExitStatus {
            code: status.map_or(255, exit_code),
            finished_at,
            oom_killed: false,
        }));
    }

    /// The container's end: drain output, close the log, delete it in the
    /// runtime, record the exit, answer the waiters.
    fn monitor_init(&self) {
        let status = self.reaper.wait(self.init_pid, None);
        let finished_at = now_rfc3339();
        if !self.init.drain(DRAIN_TIMEOUT) {
            eprintln!(
                "berth-shim: output still open {} s after the container exited",
                DRAIN_TIMEOUT.as_secs()
            );
        }
        if let Some(log) = &self.log {
            log.close();
        }
        self.init.finish();
        let unstarted: Vec<Arc<Exec>> = lock(&self.execs)
            .by_id
            .values()
            .filter(|e| matches!(*lock(&e.phase), ExecPhase::Created))
            .cloned()
            .collect();
        for exec in unstarted {
            exec.hub.finish();
            exec.set_phase(ExecPhase::Failed(format!(
                "container {} exited before exec {} was started",
                self.options.id, exec.options.exec_id
            )));
        }
        let oom_killed = self.oom.as_ref().is_some_and(OomCounter::fired);
        if let Err(e) = self.runtime.delete(true) {
            eprintln!("berth-shim: {e}");
        }
        let exit = ExitStatus {
            code: status.map_or(255, exit_code),
            finished_at,
            oom_killed,
        };
        if let Err(e) = write_exit(&self.options.state_dir, &exit) {
            eprintln!("berth-shim: write {EXIT_FILE}: {e}");
        }
        {
            let mut status = lock(&self.status);
            status.phase = Phase::Stopped;
            status.exit = Some(exit);
        }
        self.status_changed.notify_all();
        lock(&self.life).idle_since = Instant::now();
    }

    /// Ends the container if it still runs (forced delete), waits for its
    /// exit to be recorded, and lets the shim exit after this answer.
    fn shutdown(&self) -> Result<()> {
        if lock(&self.status).exit.is_none() {
            if self.runtime.delete(true).is_err() {
                // A paused container may refuse a forced delete: thaw first.
                let _ = self.runtime.resume();
                self.runtime.delete(true)?;
            }
            let deadline = Instant::now() + SHUTDOWN_WAIT;
            let mut status = lock(&self.status);
            while status.exit.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Runtime(format!(
                        "container {} did not exit within {} s of its forced delete",
                        self.options.id,
                        SHUTDOWN_WAIT.as_secs()
                    )));
                }
                status = self
                    .status_changed
                    .wait_timeout(status, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        lock(&self.life).shutdown = Some(Instant::now());
        Ok(())
    }
}

/// Creates the container in the runtime with the stdio the hub serves;
/// the init's pid. Starts the reaper thread (after the runtime library's
/// fork when it runs in-process).
fn create(
    options: &SpawnOptions,
    runtime: &Runtime,
    reaper: &Arc<Reaper>,
    pid_file: &Path,
    hub: &Arc<Hub>,
    log: Option<&Arc<ContainerLog>>,
) -> Result<i32> {
    let start_reaper = || reaper.start().map_err(|e| Error::io("start the reaper", e));
    if runtime.in_process() {
        let created = create_in_process(options, runtime, pid_file, hub, log);
        start_reaper()?;
        return created;
    }
    start_reaper()?;
    let (err_read, err_write) = pipe()?;
    if options.tty {
        let console = ConsoleSocket::bind(options.state_dir.join(CONSOLE_SOCKET))
            .map_err(|e| Error::io("console socket", e))?;
        let stdio = ProcessStdio {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::from(err_write),
            stderr_pipe: Some(&err_read),
        };
        runtime.create(&options.bundle, pid_file, Some(console.path()), stdio)?;
        let pid = read_pid(pid_file)?;
        let master = Arc::new(
            console
                .receive()
                .map_err(|e| Error::io("receive the container's terminal", e))?,
        );
        serve_terminal(hub, master, options.open_stdin, log)?;
        return Ok(pid);
    }
    let (stdin, stdin_sink) = if options.open_stdin {
        let (read, write) = pipe()?;
        (Stdio::from(read), Some(Arc::new(write)))
    } else {
        (Stdio::null(), None)
    };
    let (out_read, out_write) = pipe()?;
    let stdio = ProcessStdio {
        stdin,
        stdout: Stdio::from(out_write),
        stderr: Stdio::from(err_write),
        stderr_pipe: Some(&err_read),
    };
    runtime.create(&options.bundle, pid_file, None, stdio)?;
    let pid = read_pid(pid_file)?;
    serve_pipes(hub, stdin_sink, out_read, err_read, log)?;
    Ok(pid)
}

/// [`create`] with the runtime library: the same stdio as the command
/// line gets, and the pty master straight from the library (no console
/// socket). Runs while the shim has one thread; the output threads start
/// only once the container exists.
fn create_in_process(
    options: &SpawnOptions,
    runtime: &Runtime,
    pid_file: &Path,
    hub: &Arc<Hub>,
    log: Option<&Arc<ContainerLog>>,
) -> Result<i32> {
    let null = || {
        File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| Error::io("open /dev/null", e))
    };
    let (err_read, err_write) = pipe()?;
    if options.tty {
        let (stdin, stdout) = (null()?, null()?);
        let (pid, console) = runtime.create_in_process(
            &options.bundle,
            pid_file,
            [stdin.as_fd(), stdout.as_fd(), err_write.as_fd()],
        )?;
        let Some(master) = console else {
            return Err(Error::Runtime(
                "the runtime made no terminal for a process with a tty".into(),
            ));
        };
        let master = Arc::new(File::from(master));
        serve_terminal(hub, master, options.open_stdin, log)?;
        return Ok(pid);
    }
    let (stdin, stdin_sink) = if options.open_stdin {
        let (read, write) = pipe()?;
        (read, Some(Arc::new(write)))
    } else {
        (null()?, None)
    };
    let (out_read, out_write) = pipe()?;
    let (pid, _) = runtime.create_in_process(
        &options.bundle,
        pid_file,
        [stdin.as_fd(), out_write.as_fd(), err_write.as_fd()],
    )?;
    // Only the container holds the write ends now: EOF means it closed them.
    drop((stdin, out_write, err_write));
    serve_pipes(hub, stdin_sink, out_read, err_read, log)?;
    Ok(pid)
}

/// Init has a terminal: the pty master is its one output stream and, with
/// `-i`, where attached input goes.
fn serve_terminal(
    hub: &Arc<Hub>,
    master: Arc<File>,
    open_stdin: bool,
    log: Option<&Arc<ContainerLog>>,
) -> Result<()> {
    hub.set_master(master.clone())
        .map_err(|e| Error::io("size the terminal", e))?;
    hub.set_stdin(open_stdin.then(|| master.clone()));
    hub.pump(Stream::Stdout, master, log.cloned())
        .map_err(|e| Error::io("start an output thread", e))
}

/// Init has pipes: attached input goes to `stdin_sink` (with `-i`), its
/// stdout and stderr are pumped.
fn serve_pipes(
    hub: &Arc<Hub>,
    stdin_sink: Option<Arc<File>>,
    out_read: File,
    err_read: File,
    log: Option<&Arc<ContainerLog>>,
) -> Result<()> {
    hub.set_stdin(stdin_sink);
    for (stream, source) in [(Stream::Stdout, out_read), (Stream::Stderr, err_read)] {
        hub.pump(stream, Arc::new(source), log.cloned())
            .map_err(|e| Error::io("start an output thread", e))?;
    }
    Ok(())
}

/// Forgets the oldest finished execs beyond [`FINISHED_EXECS_KEPT`].
fn forget_finished_execs(execs: &mut Execs) {
    let finished: Vec<String> = execs
        .order
        .iter()
        .filter(|id| execs.by_id.get(*id).is_some_and(|e| e.is_finished()))
        .cloned()
        .collect();
    let excess = finished.len().saturating_sub(FINISHED_EXECS_KEPT - 1);
    for id in finished.into_iter().take(excess) {
        execs.by_id.remove(&id);
        execs.order.retain(|other| *other != id);
    }
}

/// One open client connection, for knowing when the shim may exit.
struct OpenConnection(Arc<Shim>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut life = lock(&self.0.life);
        life.connections -= 1;
        life.idle_since = Instant::now();
    }
}

struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(valid_id(&"a".repeat(64)));
        assert!(valid_id("exec-1_2.3"));
        for bad in ["", ".hidden", "a/b", "a b", "..", &"x".repeat(129), "é"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_the_oldest_finished_execs_are_forgotten() {
        let mut execs = Execs::default();
        for n in 0..(FINISHED_EXECS_KEPT + 10) {
            let id = format!("e{n}");
            let phase = if n == 0 {
                ExecPhase::Running
            } else {
                ExecPhase::Failed("x".into())
            };
            let exec = Arc::new(Exec {
                seq: n as u64,
                options: ExecOptions {
                    exec_id: id.clone(),
                    process: json!({}),
                    tty: false,
                    stdin: false,
                },
                hub: Hub::new(false, true),
                phase: Mutex::new(phase),
                changed: Condvar::new(),
            });
            execs.by_id.insert(id.clone(), exec);
            execs.order.push_back(id);
        }
        forget_finished_execs(&mut execs);
        assert_eq!(execs.by_id.len(), FINISHED_EXECS_KEPT);
        assert!(execs.by_id.contains_key("e0"), "running execs stay");
        assert!(!execs.by_id.contains_key("e1"));
        assert!(execs
            .by_id
            .contains_key(&format!("e{}", FINISHED_EXECS_KEPT + 9)));
    }
}
