//! Containers: create (the request merged with the image's config, a
//! writable snapshot), start through a `berth-shim` (the daemon is never a
//! container's parent), stop/kill/wait/remove, attach and logs, and the
//! monitor that records each exit and applies restart policies. State is
//! kept in SQLite and, while the daemon runs, in one `Entry` per container.

pub mod admin;
pub mod archive;
mod exec;
pub mod health;
pub mod names;
pub mod record;
pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use berth_content::Digest;
use berth_logs::{LogConfig, LogContext};
use berth_shim::{AttachOptions, ShimClient, SpawnOptions};
use bollard_stubs::models::{ContainerConfig, HostConfig};
use tokio::sync::{oneshot, watch};

use crate::events::{Event, EventBus};
use crate::images::ImageService;
use crate::spec;
use crate::{Error, Result};

pub use exec::{ExecDetails, ExecStarted};
pub use record::{Record, RestartPolicy, State, Status};

/// An OCI runtime with runc's command line (daemon.json `runtimes`).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSpec {
    pub path: PathBuf,
    pub args: Vec<String>,
}

/// How containers are run: binaries, runtimes, defaults.
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub shim_binary: PathBuf,
    /// By name; `berth` is Berth's own runtime.
    pub runtimes: BTreeMap<String, RuntimeSpec>,
    pub default_runtime: String,
    /// daemon.json `log-driver` and `log-opts`.
    pub log_defaults: LogConfig,
    /// cgroup parent for containers without `--cgroup-parent`.
    pub cgroup_parent: String,
    /// daemon.json `init-path`: the init binary bound into containers that
    /// run with `--init` under a runtime other than Berth's own.
    pub init_path: Option<PathBuf>,
    /// Containers keep running when the daemon stops (`--live-restore`).
    pub live_restore: bool,
}

/// Asks Berth's runtime for its built-in init (berth-runtime's
/// `INIT_ANNOTATION`).
const RUNTIME_INIT_ANNOTATION: &str = "run.berth.init";

/// What a waiter sees change.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub status: Status,
    pub exit_code: i64,
    pub error: String,
    /// How many times the container exited so far (wait `next-exit`).
    pub exits: u64,
    pub removed: bool,
}

/// Result of `create`.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub warnings: Vec<String>,
}

/// Everything inspect and list show about a container.
#[derive(Debug, Clone)]
pub struct Details {
    pub id: String,
    pub name: String,
    pub image_id: Digest,
    pub created_nanos: i64,
    pub record: Record,
    pub state: State,
    pub paths: Paths,
}

/// Files of a container on the host.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub log: PathBuf,
}

/// An attach stream from the shim (framed output; raw stdin the other way),
/// or one that will be there once the container starts.
pub enum Attached {
    Now(UnixStream),
    OnStart(oneshot::Receiver<Result<UnixStream>>),
}

/// Where to read a container's log from.
pub struct LogSource {
    pub config: LogConfig,
    pub context: LogContext,
    pub tty: bool,
    pub watch: watch::Receiver<Watch>,
}

struct PendingAttach {
    options: AttachOptions,
    reply: oneshot::Sender<Result<UnixStream>>,
}

struct Inner {
    name: String,
    image_id: Digest,
    created_nanos: i64,
    record: Record,
    state: State,
    shim: Option<ShimClient>,
    /// When the current run started, for the restart back-off.
    started: Option<Instant>,
    /// Delay before the next policy restart (100 ms, doubling, at most 1 min).
    backoff: Duration,
    /// `docker restart` is stopping it: a `--rm` container is not removed
    /// when this run exits.
    restarting_by_user: bool,
}

struct Entry {
    id: String,
    inner: Mutex<Inner>,
    /// Serializes create/start/stop/remove of this container.
    ops: Mutex<()>,
    watch: watch::Sender<Watch>,
    pending: Mutex<Vec<PendingAttach>>,
}

impl Entry {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ops(&self) -> MutexGuard<'_, ()> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_watch(&self, inner: &Inner, exited: bool, removed: bool) {
        self.watch.send_modify(|w| {
            w.status = inner.state.status;
            w.exit_code = inner.state.exit_code;
            w.error = inner.state.error.clone();
            if exited {
                w.exits += 1;
            }
            w.removed |= removed;
        });
    }
}

pub struct ContainerService {
    images: Arc<ImageService>,
    events: Arc<EventBus>,
    settings: ContainerSettings,
    /// `<data-root>/containers`
    data_dir: PathBuf,
    /// `<exec-root>/c`: one 0700 dir per running container (bundle, shim socket)
    exec_dir: PathBuf,
    /// `<exec-root>/runtime/<runtime name>`: the runtimes' `--root`
    runtime_root: PathBuf,
    /// `<exec-root>/seccomp`: seccomp programs Berth's runtime compiled, by profile
    seccomp_cache: PathBuf,
    /// A sealed copy of Berth's runtime binary that every shim inherits and
    /// runs it from (see `berth_runtime::sealed_exe::sealed_copy`); `None`
    /// when it could not be made (the runtime then copies itself per exec).
    runtime_exe: Option<std::os::fd::OwnedFd>,
    daemon_name: String,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    execs: exec::ExecTable,
    /// Set by `shutdown`: exits then are the daemon's doing, not a reason
    /// to restart.
    shutting_down: std::sync::atomic::AtomicBool,
    this: Weak<ContainerService>,
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run this long resets the restart back-off (dockerd's rule).
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// Grace before SIGKILL when `stop` gives no timeout and the image none.
const DEFAULT_STOP_TIMEOUT: i64 = 10;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(what, e)
}

pub(crate) fn fill_random(buf: &mut [u8]) {
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(buf).is_ok() {
            return;
        }
    }
    // /dev/urandom is always there on Linux; time-based fallback for ids only.
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (nanos.rotate_left(i as u32 * 7) & 0xff) as u8;
    }
}

fn new_id() -> String {
    let mut buf = [0u8; 32];
    fill_random(&mut buf);
    hex_string(&buf)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("No such container: {name}"))
}

impl ContainerService {
    /// Loads every container the metadata knows, reattaches to the shims of
    /// those that run (live restore) and records exits that happened while
    /// the daemon was down.
    pub fn open(
        images: Arc<ImageService>,
        events: Arc<EventBus>,
        settings: ContainerSettings,
        data_root: &Path,
        exec_root: &Path,
        daemon_name: String,
    ) -> Result<Arc<ContainerService>> {
        let data_dir = data_root.join("containers");
        // Short: the shim's sockets live in these dirs, and a UNIX socket
        // path must fit in 108 bytes.
        let exec_dir = exec_root.join("c");
        let runtime_root = exec_root.join("runtime");
        let seccomp_cache = exec_root.join("seccomp");
        for dir in [&data_dir, &exec_dir, &runtime_root, &seccomp_cache] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err(format!("create {}", dir.display())))?;
        }
        let runtime_exe = settings.runtimes.get("berth").and_then(|berth| {
            berth_runtime::sealed_exe::sealed_copy(&berth.path)
                .map_err(|e| tracing::warn!("a sealed copy of {}: {e}", berth.path.display()))
                .ok()
        });
        let service = Arc::new_cyclic(|this| ContainerService {
            images,
            events,
            settings,
            data_dir,
            exec_dir,
            runtime_root,
            seccomp_cache,
            runtime_exe,
            daemon_name,
            entries: Mutex::new(HashMap::new()),
            execs: exec::ExecTable::default(),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            this: this.clone(),
        });
        service.restore()?;
        Ok(service)
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn restore(&self) -> Result<()> {
        let rows = self.images.meta().read(|tx| tx.list_containers())?;
        let known: std::collections::HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
        // Snapshots of containers whose create never committed.
        for key in self.images.rootfs_keys()? {
            if !known.contains(&key) {
                tracing::info!("removing the rootfs of unknown container {key}");
                self.images.remove_rootfs(&key)?;
            }
        }
        let mut to_restart = Vec::new();
        for row in rows {
            let record: Record = match serde_json::from_value(row.config.clone()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("container {}: unreadable config, skipped: {e}", row.id);
                    continue;
                }
            };
            let state: State = serde_json::from_value(row.state.clone()).unwrap_or_default();
            let entry = self.insert_entry(
                row.id.clone(),
                Inner {
                    name: row.name,
                    image_id: row.image_id,
                    created_nanos: row.created_nanos,
                    record,
                    state,
                    shim: None,
                    started: None,
                    backoff: BACKOFF_START,
                    restarting_by_user: false,
                },
            );
            let status = entry.inner().state.status;
            if status.is_live() || status == Status::Restarting {
                let state_dir = self.state_dir(&entry.id);
                match ShimClient::connect(&state_dir) {
                    Ok(shim) if status != Status::Restarting => {
                        tracing::info!("container {}: reattached to its shim", entry.id);
                        entry.inner().shim = Some(shim.clone());
                        self.spawn_monitor(entry.clone(), shim);
                    }
                    _ => {
                        let exit = berth_shim::recorded_exit(&state_dir);
                        self.record_exit(&entry, exit);
                        if self.should_restart(&entry, true) {
                            to_restart.push(entry.id.clone());
                        }
                    }
                }
            } else if self.should_restart_on_boot(&entry) {
                to_restart.push(entry.id.clone());
            }
        }
        for id in to_restart {
            if let Some(this) = self.this.upgrade() {
                std::thread::spawn(move || {
                    if let Err(e) = this.start(&id) {
                        tracing::error!("container {id}: restart policy start failed: {e}");
                    }
                });
            }
        }
        Ok(())
    }

    fn insert_entry(&self, id: String, inner: Inner) -> Arc<Entry> {
        let (tx, _) = watch::channel(Watch {
            status: inner.state.status,
            exit_code: inner.state.exit_code,
            error: inner.state.error.clone(),
            exits: 0,
            removed: false,
        });
        let entry = Arc::new(Entry {
            id: id.clone(),
            inner: Mutex::new(inner),
            ops: Mutex::new(()),
            watch: tx,
            pending: Mutex::new(Vec::new()),
        });
        self.entries().insert(id, entry.clone());
        entry
    }

    /// Finds a container by full id, unique id prefix, or name (with or
    /// without the leading `/`).
    ///
    /// Names are compared with each container's lock taken in turn, after
    /// the map's lock is let go: a caller must not hold any container's
    /// lock (it would wait on itself).
    fn lookup(&self, name: &str) -> Result<Arc<Entry>> {
        if name.is_empty() {
            return Err(not_found(name));
        }
        let entries: Vec<Arc<Entry>> = {
            let map = self.entries();
            if let Some(e) = map.get(name) {
                return Ok(e.clone());
            }
            map.values().cloned().collect()
        };
        let plain = name.strip_prefix('/').unwrap_or(name);
        if let Some(e) = entries.iter().find(|e| e.inner().name == plain) {
            return Ok(e.clone());
        }
        if name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches = entries.iter().filter(|e| e.id.starts_with(name));
            if let Some(first) = matches.next() {
                if matches.next().is_some() {
                    return Err(Error::InvalidArgument(format!(
                        "multiple IDs found with provided prefix: {name}"
                    )));
                }
                return Ok(first.clone());
            }
        }
        Err(not_found(name))
    }

    /// The full id of a container.
    pub fn resolve(&self, name: &str) -> Result<String> {
        Ok(self.lookup(name)?.id.clone())
    }

    /// The shim's dir of a container: `<exec-root>/c/<first 32 hex of the id>`.
    fn state_dir(&self, id: &str) -> PathBuf {
        self.exec_dir.join(&id[..32.min(id.len())])
    }

    fn paths(&self, id: &str) -> Paths {
        let dir = self.data_dir.join(id);
        Paths {
            hostname: dir.join("hostname"),
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            log: dir.join(format!("{id}-json.log")),
            dir,
        }
    }

    /// Where a `--ipc shareable` container's /dev/shm tmpfs is mounted on
    /// the host, so containers that join its IPC namespace can bind it.
    fn shm_dir(&self, id: &str) -> PathBuf {
        self.paths(id).dir.join("shm")
    }

    /// Mounts the host tmpfs of a shareable IPC namespace (`size` bytes).
    fn mount_shm(&self, id: &str, size: i64) -> Result<()> {
        use nix::mount::{mount, MsFlags};
        let dir = self.shm_dir(id);
        self.unmount_shm(id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(format!("create {}", dir.display())))?;
        mount(
            Some("shm"),
            &dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,size={size}").as_str()),
        )
        .map_err(|e| Error::Internal(format!("mounting a tmpfs on {}: {e}", dir.display())))
    }

    /// Unmounts and removes the shareable /dev/shm, if the container has one.
    fn unmount_shm(&self, id: &str) {
        let dir = self.shm_dir(id);
        if !dir.exists() {
            return;
        }
        if let Err(e) = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH) {
            if e != nix::errno::Errno::EINVAL {
                tracing::warn!("container {id}: unmounting {}: {e}", dir.display());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }

    /// What a container mounts: its rootfs and its shareable /dev/shm.
    fn unmount_container(&self, id: &str) -> Result<()> {
        self.unmount_shm(id);
        self.images.unmount_rootfs(id)
    }

    /// The host directory bound at /dev/shm: a shareable container's own
    /// tmpfs, or the one of the container whose IPC namespace it joins
    /// (which must be shareable, or use the host's, as dockerd requires).
    fn shm_source(&self, id: &str, host_config: &HostConfig) -> Result<Option<PathBuf>> {
        match host_config.ipc_mode.as_deref() {
            Some("shareable") => Ok(Some(self.shm_dir(id))),
            Some(m) if m.starts_with("container:") => {
                let donor = self.lookup(&m["container:".len()..])?;
                let mode = donor.inner().record.host_config.ipc_mode.clone();
                match mode.as_deref() {
                    Some("shareable") => Ok(Some(self.shm_dir(&donor.id))),
                    Some("host") => Ok(Some(PathBuf::from("/dev/shm"))),
                    _ => Err(Error::InvalidArgument(
                        "non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
                            .to_string(),
                    )),
                }
            }
            _ => Ok(None),
        }
    }

    fn save_state(&self, entry: &Entry, inner: &Inner) {
        let state = match serde_json::to_value(&inner.state) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("container {}: state not serializable: {e}", entry.id);
                return;
            }
        };
        if let Err(e) = self
            .images
            .meta()
            .transaction(|tx| tx.set_container_state(&entry.id, &state))
        {
            tracing::error!("container {}: saving state: {e}", entry.id);
        }
    }

    fn save_record(&self, entry: &Entry, inner: &Inner) -> Result<()> {
        let config = serde_json::to_value(&inner.record)
            .map_err(|e| Error::Internal(format!("container config: {e}")))?;
        self.images
            .meta()
            .transaction(|tx| tx.set_container_config(&entry.id, &config))?;
        Ok(())
    }

    fn event(&self, entry: &Entry, action: &str, extra: &[(&str, String)]) {
        let inner = entry.inner();
        let mut attrs = BTreeMap::new();
        if let Some(labels) = &inner.record.config.labels {
            for (k, v) in labels {
                attrs.insert(k.clone(), v.clone());
            }
        }
        attrs.insert("image".to_string(), inner.record.image_name.clone());
        attrs.insert("name".to_string(), inner.name.clone());
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        drop(inner);
        self.events
            .publish(Event::new("container", action, &entry.id, attrs));
    }

    // ------------------------------------------------------------ create

    /// Creates a container from a Docker API create body.
    pub fn create(&self, name: Option<&str>, body: serde_json::Value) -> Result<Created> {
        if name.is_some_and(|n| !n.is_empty()) {
            return self.create_named(name, body);
        }
        // A generated name may be taken by a concurrent create between the
        // check and the insert: then another name.
        for _ in 0..8 {
            match self.create_named(None, body.clone()) {
                Err(Error::Conflict(m)) if m.contains("is already in use") => continue,
                other => return other,
            }
        }
        self.create_named(None, body)
    }

    fn create_named(&self, name: Option<&str>, body: serde_json::Value) -> Result<Created> {
        let parsed = parse_create_body(body)?;
        let mut config = parsed.config;
        let host_config = parsed.host_config;
        let image_name = config
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::InvalidArgument("config.Image must be set".to_string()))?;
        let (image_id, _) = self.images.resolve(&image_name)?;
        let image_config = self.images.config_of(&image_id)?;
        if let Some(image_cc) = &image_config.parsed().config {
            spec::merge_image_config(&mut config, image_cc);
        }
        config.image = Some(image_name.clone());
        spec::validate_create(&config, &host_config)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let volumes = spec::requested_volumes(&host_config);
        if !volumes.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "volumes are not supported yet ({}): bind a host directory instead, e.g. -v /srv/data:/data",
                volumes.join(", ")
            )));
        }
        // As dockerd: the container whose pid or ipc namespace is joined
        // must exist now (a network one only when this one starts).
        for mode in [&host_config.pid_mode, &host_config.ipc_mode] {
            if let Some(other) = mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
                // 400, as dockerd: a 404 would make the docker CLI pull the image.
                self.lookup(other).map_err(|e| match e {
                    Error::NotFound(message) => Error::InvalidArgument(message),
                    e => e,
                })?;
            }
        }
        let mut host_config = host_config;
        let mut warnings = Vec::new();
        let publishes = host_config
            .port_bindings
            .as_ref()
            .is_some_and(|p| !p.is_empty())
            || host_config.publish_all_ports.unwrap_or(false);
        // No bridge network until the networking work lands: the default
        // network is `none` (berth info says so).
        match host_config.network_mode.as_deref() {
            None | Some("") | Some("default") => {
                if publishes {
                    warnings.push(
                        "Published ports are discarded: berthd has no bridge network yet, so the container runs with --network none"
                            .to_string(),
                    );
                }
                host_config.network_mode = Some("none".to_string())
            }
            Some("host") if publishes => warnings
                .push("Published ports are discarded when using host network mode".to_string()),
            Some("none") | Some("host") => {}
            Some(m) if m.starts_with("container:") => {}
            Some(m) => return Err(Error::NotFound(format!("network {m} not found"))),
        }
        let facts = spec::HostFacts::current().map_err(|e| Error::Internal(e.to_string()))?;
        spec::adapt_host_config(&mut host_config, facts.cgroup_mode);

        let runtime = match host_config.runtime.as_deref() {
            None | Some("") => self.settings.default_runtime.clone(),
            Some(r) => r.to_string(),
        };
        if !self.settings.runtimes.contains_key(&runtime) {
            return Err(Error::InvalidArgument(format!(
                "unknown or invalid runtime name: {runtime}"
            )));
        }
        let log = self.log_config(&host_config)?;

        let mut command: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        command.extend(config.cmd.clone().unwrap_or_default());
        let Some((path, args)) = command.split_first() else {
            return Err(Error::InvalidArgument("no command specified".to_string()));
        };

        let id = new_id();
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => names::validate(n)?,
            None => {
                let entries = self.entries();
                names::generate(|n| entries.values().any(|e| e.inner().name == n))
            }
        };
        if let Ok(other) = self.lookup(&format!("/{name}")) {
            return Err(Error::Conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }

        let record = Record {
            config,
            host_config,
            restart: parsed.restart,
            image_name,
            path: path.clone(),
            args: args.to_vec(),
            created: record::now_rfc3339(),
            restart_count: 0,
            log,
            runtime,
            driver: self.images.driver_name().to_string(),
        };
        let paths = self.paths(&id);
        std::fs::DirBuilder::new()
            .mode(0o710)
            .create(&paths.dir)
            .map_err(io_err(format!("create {}", paths.dir.display())))?;
        let cleanup = |svc: &ContainerService| {
            let _ = svc.images.remove_rootfs(&id);
            let _ = std::fs::remove_dir_all(&paths.dir);
        };
        if let Err(e) = self.images.create_rootfs(&id, &image_id) {
            cleanup(self);
            return Err(e);
        }
        let created_nanos = berth_metadata::now_nanos();
        let row = berth_metadata::Container {
            id: id.clone(),
            name: name.clone(),
            image_id: image_id.clone(),
            created_nanos,
            config: serde_json::to_value(&record)
                .map_err(|e| Error::Internal(format!("container config: {e}")))?,
            state: serde_json::to_value(State::default())
                .map_err(|e| Error::Internal(format!("container state: {e}")))?,
        };
        if let Err(e) = self
            .images
            .meta()
            .transaction(|tx| tx.insert_container(&row))
        {
            cleanup(self);
            return Err(match e {
                berth_metadata::Error::Conflict(_) => Error::Conflict(format!("Conflict. The container name \"/{name}\" is already in use. You have to remove (or rename) that container to be able to reuse that name.")),
                other => other.into(),
            });
        }
        let entry = self.insert_entry(
            id.clone(),
            Inner {
                name,
                image_id,
                created_nanos,
                record,
                state: State::default(),
                shim: None,
                started: None,
                backoff: BACKOFF_START,
                restarting_by_user: false,
            },
        );
        self.event(&entry, "create", &[]);
        Ok(Created { id, warnings })
    }

    fn log_config(&self, host_config: &HostConfig) -> Result<LogConfig> {
        let given = host_config.log_config.as_ref();
        let driver = given.and_then(|l| l.typ.clone()).unwrap_or_default();
        let config = if driver.is_empty() {
            let mut c = self.settings.log_defaults.clone();
            if let Some(opts) = given.and_then(|l| l.config.clone()) {
                c.opts.extend(opts);
            }
            c
        } else {
            LogConfig {
                driver,
                opts: given
                    .and_then(|l| l.config.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            }
        };
        berth_logs::validate(&config).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(config)
    }

    fn log_context(&self, entry: &Entry, inner: &Inner) -> LogContext {
        LogContext {
            container_id: entry.id.clone(),
            container_name: inner.name.clone(),
            image_name: inner.record.image_name.clone(),
            image_id: inner.image_id.to_string(),
            labels: inner
                .record
                .config
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            env: inner.record.config.env.clone().unwrap_or_default(),
            dir: self.data_dir.join(&entry.id),
            daemon_name: self.daemon_name.clone(),
        }
    }

    // ------------------------------------------------------------ start

    /// Starts a created or exited container. Returns false when it was
    /// already running (the API answers 304).
    pub fn start(&self, name: &str) -> Result<bool> {
        if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Conflict("the daemon is shutting down".to_string()));
        }
        let entry = self.lookup(name)?;
        let result = self.start_entry(&entry);
        if result.is_err() && entry.inner().record.host_config.auto_remove == Some(true) {
            // As dockerd: a `--rm` container that cannot start is removed
            // (the docker CLI waits for that).
            match self.remove(&entry.id, true) {
                // A user's `rm -f` removed it first.
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(Error::Conflict(_)) if entry.watch.borrow().removed => {}
                Err(e) => tracing::error!("container {}: auto-remove: {e}", entry.id),
            }
        }
        result
    }

    fn start_entry(&self, entry: &Arc<Entry>) -> Result<bool> {
        let _ops = entry.ops();
        let status = entry.inner().state.status;
        match status {
            Status::Running => return Ok(false),
            Status::Paused => {
                return Err(Error::Conflict(
                    "cannot start a paused container, try unpause instead".to_string(),
                ))
            }
            Status::Removing | Status::Dead => {
                return Err(Error::Conflict(
                    "container is marked for removal and cannot be started".to_string(),
                ))
            }
            _ => {}
        }
        match self.start_locked(entry) {
            Ok(()) => Ok(true),
            Err(e) => {
                let mut inner = entry.inner();
                let (code, message) = start_failure(&e);
                inner.state.exit_code = code;
                inner.state.error = message;
                if inner.state.status != Status::Created {
                    inner.state.status = Status::Exited;
                }
                inner.state.pid = 0;
                self.save_state(entry, &inner);
                entry.publish_watch(&inner, false, false);
                Err(e)
            }
        }
    }

    /// What the container's mounted root needs before it starts: the host
    /// tmpfs of a shareable IPC namespace, what dockerd's init layer holds
    /// (/.dockerenv, /etc/mtab), the working directory and the image's
    /// VOLUME paths (plain directories in its writable layer until volumes
    /// are implemented) where the image lacks them. The caller undoes the
    /// mounts on failure.
    fn prepare_rootfs(&self, entry: &Entry, rootfs: &Path) -> Result<()> {
        let (shareable_shm, workdir, volume_dirs) = {
            let inner = entry.inner();
            let hc = &inner.record.host_config;
            let config = &inner.record.config;
            (
                (hc.ipc_mode.as_deref() == Some("shareable")).then(|| {
                    hc.shm_size
                        .filter(|&s| s > 0)
                        .unwrap_or(spec::DEFAULT_SHM_SIZE)
                }),
                config.working_dir.clone(),
                config.volumes.clone().unwrap_or_default(),
            )
        };
        if let Some(size) = shareable_shm {
            self.mount_shm(&entry.id, size)?;
        }
        berth_snapshot::ensure_init_files(rootfs).map_err(|e| {
            Error::StartFailed(format!("failed to create /.dockerenv and /etc/mtab: {e}"))
        })?;
        // dockerd creates a working directory the image lacks.
        if let Some(dir) = workdir.filter(|d| d.starts_with('/') && d != "/") {
            berth_snapshot::ensure_dir_in_root(rootfs, &dir).map_err(|e| {
                Error::StartFailed(format!("failed to create the working directory: {e}"))
            })?;
        }
        for dir in volume_dirs
            .iter()
            .filter(|d| d.starts_with('/') && *d != "/")
        {
            berth_snapshot::ensure_dir_in_root(rootfs, dir).map_err(|e| {
                Error::StartFailed(format!("failed to create the volume directory {dir}: {e}"))
            })?;
        }
        Ok(())
    }

    fn start_locked(&self, entry: &Arc<Entry>) -> Result<()> {
        let id = entry.id.clone();
        let state_dir = self.state_dir(&id);
        // A previous run's shim dir (its exit already recorded).
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&state_dir)
            .map_err(io_err(format!("create {}", state_dir.display())))?;
        let auto_remove = entry.inner().record.host_config.auto_remove == Some(true);
        let mounted = if auto_remove {
            self.images.mount_rootfs_volatile(&id)
        } else {
            self.images.mount_rootfs(&id)
        };
        let rootfs = match mounted {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&state_dir);
                return Err(e);
            }
        };
        if let Err(e) = self.prepare_rootfs(entry, &rootfs) {
            let _ = self.unmount_container(&id);
            let _ = std::fs::remove_dir_all(&state_dir);
            return Err(e);
        }
        let result = self.spawn_shim(entry, &state_dir, &rootfs);
        let shim = match result {
            Ok(shim) => shim,
            Err(e) => {
                let _ = self.unmount_container(&id);
                let _ = std::fs::remove_dir_all(&state_dir);
                return Err(e);
            }
        };
        // A network namespace of its own gets its loopback up, as dockerd
        // does for `--network none`.
        if let Err(e) = self.loopback_up(entry, &shim) {
            let _ = shim.shutdown();
            let _ = self.unmount_container(&id);
            return Err(e);
        }
        // Attaches that came before the start get every byte of output.
        for pending in std::mem::take(&mut *entry.pending.lock().unwrap_or_else(|p| p.into_inner()))
        {
            if pending.reply.is_closed() {
                continue;
            }
            let stream = shim.attach(&pending.options).map_err(shim_err);
            let _ = pending.reply.send(stream);
        }
        let state = match shim.start() {
            Ok(s) => s,
            Err(e) => {
                let _ = shim.kill(9, true);
                let _ = shim.shutdown();
                let _ = self.unmount_container(&id);
                return Err(shim_err(e));
            }
        };
        {
            let mut inner = entry.inner();
            inner.state.status = Status::Running;
            inner.state.pid = i64::from(state.pid);
            inner.state.exit_code = 0;
            inner.state.error.clear();
            inner.state.oom_killed = false;
            inner.state.stopped_by_user = false;
            inner.state.health = None;
            inner.state.started_at = state.started_at.clone().unwrap_or_else(record::now_rfc3339);
            inner.state.finished_at = record::ZERO_TIME.to_string();
            inner.shim = Some(shim.clone());
            inner.started = Some(Instant::now());
            self.save_state(entry, &inner);
            entry.publish_watch(&inner, false, false);
        }
        self.event(entry, "start", &[]);
        self.start_health_monitor(entry, &shim);
        self.spawn_monitor(entry.clone(), shim);
        Ok(())
    }

    fn spawn_shim(
        &self,
        entry: &Arc<Entry>,
        state_dir: &Path,
        rootfs: &Path,
    ) -> Result<ShimClient> {
        let id = &entry.id;
        // Before this container's lock is taken: finding the containers
        // named by `container:<name>` takes each one's lock.
        let host_config = entry.inner().record.host_config.clone();
        let namespace_paths = self.namespace_paths(&host_config)?;
        let shm_source = self.shm_source(id, &host_config)?;
        let inner = entry.inner();
        let paths = self.paths(id);
        write_etc_files(&paths, &inner.record.config, id)?;
        let runtime = self
            .settings
            .runtimes
            .get(&inner.record.runtime)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown or invalid runtime name: {}",
                    inner.record.runtime
                ))
            })?
            .clone();
        let cgroup_parent = match inner.record.host_config.cgroup_parent.as_deref() {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => self.settings.cgroup_parent.clone(),
        };
        // `--init` with Berth's runtime: its own init stays as pid 1 (no
        // binary in the container); other runtimes get dockerd's
        // bind-mounted init binary (daemon.json `init-path`).
        let hc = &inner.record.host_config;
        let builtin_init = inner.record.runtime == "berth"
            && hc.init == Some(true)
            && matches!(hc.pid_mode.as_deref(), None | Some("") | Some("private"));
        let mut spec_host_config = hc.clone();
        if builtin_init {
            spec_host_config.init = Some(false);
        }
        let mut spec = spec::build_spec(&spec::SpecInput {
            id,
            config: &inner.record.config,
            host_config: &spec_host_config,
            rootfs,
            container_dir: &paths.dir,
            cgroups_path: &format!("/{}/{id}", cgroup_parent.trim_matches('/')),
            namespace_paths: &namespace_paths,
            shm_source: shm_source.as_deref(),
            volumes: &[],
            init: self.settings.init_path.as_deref(),
            host: spec::HostFacts::current().map_err(|e| Error::Internal(e.to_string()))?,
        })
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        spec::create_missing_bind_sources(&inner.record.host_config)
            .map_err(Error::InvalidArgument)?;
        if builtin_init {
            let mut annotations = spec.annotations().clone().unwrap_or_default();
            annotations.insert(RUNTIME_INIT_ANNOTATION.to_string(), "true".to_string());
            spec.set_annotations(Some(annotations));
        }
        let bundle_config = state_dir.join("config.json");
        let json =
            serde_json::to_vec(&spec).map_err(|e| Error::Internal(format!("runtime spec: {e}")))?;
        std::fs::write(&bundle_config, json)
            .map_err(io_err(format!("write {}", bundle_config.display())))?;
        let runtime_root = self.runtime_root.join(&inner.record.runtime);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&runtime_root)
            .map_err(io_err(format!("create {}", runtime_root.display())))?;
        let config = &inner.record.config;
        let options = SpawnOptions {
            shim_binary: self.settings.shim_binary.clone(),
            id: id.clone(),
            bundle: state_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            in_process: inner.record.runtime == "berth",
            seccomp_cache: Some(self.seccomp_cache.clone()),
            runtime_fd: (inner.record.runtime == "berth")
                .then(|| {
                    self.runtime_exe
                        .as_ref()
                        .map(std::os::fd::AsRawFd::as_raw_fd)
                })
                .flatten(),
            runtime: runtime.path,
            runtime_args: runtime.args,
            runtime_root,
            tty: config.tty.unwrap_or(false),
            open_stdin: config.open_stdin.unwrap_or(false),
            stdin_once: config.stdin_once.unwrap_or(false),
            log: inner.record.log.clone(),
            log_context: self.log_context(entry, &inner),
        };
        drop(inner);
        berth_shim::spawn(&options).map_err(shim_err)
    }

    fn loopback_up(&self, entry: &Entry, shim: &ShimClient) -> Result<()> {
        let mode = entry.inner().record.host_config.network_mode.clone();
        if matches!(mode.as_deref(), Some("host"))
            || mode.as_deref().is_some_and(|m| m.starts_with("container:"))
        {
            return Ok(());
        }
        let pid = shim.state().map_err(shim_err)?.pid;
        let path = format!("/proc/{pid}/ns/net");
        let netns = std::fs::File::open(&path).map_err(io_err(format!("open {path}")))?;
        berth_sys::net::loopback_up(std::os::fd::AsFd::as_fd(&netns))
            .map_err(|e| Error::Internal(format!("bringing up the container's loopback: {e}")))
    }

    /// `--pid/--ipc/--net container:<name>`: the namespaces of another
    /// running container.
    fn namespace_paths(&self, host_config: &HostConfig) -> Result<spec::NamespacePaths> {
        let mut paths = spec::NamespacePaths::default();
        let modes = [
            ("pid", host_config.pid_mode.as_deref()),
            ("ipc", host_config.ipc_mode.as_deref()),
            ("net", host_config.network_mode.as_deref()),
        ];
        for (kind, mode) in modes {
            let Some(other) = mode.and_then(|m| m.strip_prefix("container:")) else {
                continue;
            };
            let entry = self.lookup(other)?;
            let inner = entry.inner();
            if !inner.state.status.is_live() {
                return Err(Error::Conflict(format!(
                    "cannot join {kind} namespace of a non running container: {}",
                    entry.id
                )));
            }
            let path = PathBuf::from(format!("/proc/{}/ns/{kind}", inner.state.pid));
            match kind {
                "pid" => paths.pid = Some(path),
                "ipc" => paths.ipc = Some(path),
                _ => paths.net = Some(path),
            }
        }
        Ok(paths)
    }

    // ------------------------------------------------------------ exits

    fn spawn_monitor(&self, entry: Arc<Entry>, shim: ShimClient) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name(format!("monitor-{}", &entry.id[..12]))
            .stack_size(256 * 1024)
            .spawn(move || {
                let exit = match shim.wait(None) {
                    Ok(exit) => Some(exit),
                    Err(e) => {
                        tracing::debug!("container {}: wait: {e}", entry.id);
                        // The shim went away; it recorded the exit first.
                        let state_dir = this.state_dir(&entry.id);
                        let mut exit = None;
                        for _ in 0..20 {
                            exit = berth_shim::recorded_exit(&state_dir);
                            if exit.is_some() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        exit
                    }
                };
                this.on_exit(&entry, &shim, exit);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a monitor thread: {e}");
        }
    }

    fn on_exit(&self, entry: &Arc<Entry>, shim: &ShimClient, exit: Option<berth_shim::ExitStatus>) {
        {
            let _ops = entry.ops();
            {
                let inner = entry.inner();
                // A newer run already took over (stale monitor).
                if inner.shim.as_ref().map(|s| &s.socket) != Some(&shim.socket) {
                    return;
                }
            }
            // The shim exits shortly after; a restart may reuse its dir at
            // once (the shim then leaves the new socket alone).
            let _ = shim.shutdown();
            self.record_exit(entry, exit);
        }
        let (auto_remove, code) = {
            let inner = entry.inner();
            (
                inner.record.host_config.auto_remove.unwrap_or(false) && !inner.restarting_by_user,
                inner.state.exit_code,
            )
        };
        if entry.inner().state.oom_killed {
            self.event(entry, "oom", &[]);
        }
        self.event(entry, "die", &[("exitCode", code.to_string())]);
        if auto_remove {
            match self.remove(&entry.id, true) {
                // A user's `rm -f` removed it first.
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(Error::Conflict(_)) if entry.watch.borrow().removed => {}
                Err(e) => tracing::error!("container {}: auto-remove: {e}", entry.id),
            }
            return;
        }
        if self.should_restart(entry, false) {
            self.schedule_restart(entry.clone());
        }
    }

    /// Marks a container exited with what the shim recorded (or 255 with an
    /// error when nothing was recorded), unmounts its rootfs.
    fn record_exit(&self, entry: &Entry, exit: Option<berth_shim::ExitStatus>) {
        let mut inner = entry.inner();
        match exit {
            Some(exit) => {
                inner.state.exit_code = i64::from(exit.code);
                inner.state.finished_at = exit.finished_at;
                inner.state.oom_killed = exit.oom_killed;
            }
            None => {
                inner.state.exit_code = 255;
                inner.state.error = "the container's exit status was lost".to_string();
                inner.state.finished_at = record::now_rfc3339();
            }
        }
        inner.state.status = Status::Exited;
        inner.state.pid = 0;
        inner.shim = None;
        if let Some(started) = inner.started.take() {
            if started.elapsed() >= BACKOFF_RESET_AFTER {
                inner.backoff = BACKOFF_START;
            }
        }
        self.save_state(entry, &inner);
        entry.publish_watch(&inner, true, false);
        drop(inner);
        if let Err(e) = self.unmount_container(&entry.id) {
            tracing::warn!("container {}: unmounting its rootfs: {e}", entry.id);
        }
    }

    /// Whether the restart policy brings the container back after an exit
    /// (`daemon_start`: an exit found when the daemon starts). As dockerd:
    /// a user's stop or kill holds `unless-stopped` containers down for
    /// good, `always` and `on-failure` ones only until the daemon starts
    /// again; `on-failure` needs a failed exit and retries left.
    fn should_restart(&self, entry: &Entry, daemon_start: bool) -> bool {
        if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let inner = entry.inner();
        restart_wanted(
            &inner.record.restart,
            inner.record.restart_count,
            &inner.state,
            daemon_start,
        )
    }

    /// After a daemon restart: an exited container that had been started
    /// comes back when its policy says so for an exit found at start.
    fn should_restart_on_boot(&self, entry: &Entry) -> bool {
        {
            let inner = entry.inner();
            if inner.state.status != Status::Exited || inner.state.started_at == record::ZERO_TIME {
                return false;
            }
        }
        self.should_restart(entry, true)
    }

    fn schedule_restart(&self, entry: Arc<Entry>) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let delay = {
            let mut inner = entry.inner();
            let delay = inner.backoff;
            inner.backoff = (inner.backoff * 2).min(BACKOFF_MAX);
            inner.state.status = Status::Restarting;
            self.save_state(&entry, &inner);
            entry.publish_watch(&inner, false, false);
            delay
        };
        let _ = std::thread::Builder::new()
            .name(format!("restart-{}", &entry.id[..12]))
            .stack_size(256 * 1024)
            .spawn(move || {
                std::thread::sleep(delay);
                {
                    let inner = entry.inner();
                    // Stopped or removed while waiting.
                    if inner.state.status != Status::Restarting || inner.state.stopped_by_user {
                        return;
                    }
                }
                {
                    let mut inner = entry.inner();
                    inner.record.restart_count += 1;
                    if let Err(e) = this.save_record(&entry, &inner) {
                        tracing::error!("container {}: {e}", entry.id);
                    }
                }
                if let Err(e) = this.start(&entry.id) {
                    tracing::error!("container {}: restart failed: {e}", entry.id);
                    let mut inner = entry.inner();
                    inner.state.status = Status::Exited;
                    this.save_state(&entry, &inner);
                    entry.publish_watch(&inner, false, false);
                }
            });
    }

    // ------------------------------------------------------------ stop, kill

    /// Stops a container: its stop signal, then SIGKILL after the timeout.
    /// Returns false when it was not running (the API answers 304).
    pub fn stop(&self, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<bool> {
        self.stop_as(name, timeout, signal, true)
    }

    /// Daemon shutdown: without `live_restore`, every running container is
    /// stopped as `docker stop` would (not counting as a user's stop, so
    /// `always` and `unless-stopped` come back on the next start) and `--rm`
    /// ones are removed; with it, containers keep running under their shims.
    pub fn shutdown(&self, live_restore: bool) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if live_restore {
            return;
        }
        let running: Vec<String> = self
            .entries()
            .values()
            .filter(|e| {
                let s = e.inner().state.status;
                s.is_live() || s == Status::Restarting
            })
            .map(|e| e.id.clone())
            .collect();
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let stoppers: Vec<_> = running
            .into_iter()
            .map(|id| {
                let this = this.clone();
                std::thread::spawn(move || {
                    if let Err(e) = this.stop_as(&id, None, None, false) {
                        tracing::warn!("container {id}: stop on shutdown: {e}");
                    }
                })
            })
            .collect();
        for s in stoppers {
            let _ = s.join();
        }
        // Auto-removal runs after the exit is recorded.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && self.entries().values().any(|e| {
                let inner = e.inner();
                inner.record.host_config.auto_remove == Some(true)
                    && inner.state.status != Status::Created
            })
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop_as(
        &self,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
        by_user: bool,
    ) -> Result<bool> {
        let entry = self.lookup(name)?;
        let (shim, signal, timeout) = {
            let _ops = entry.ops();
            let mut inner = entry.inner();
            if inner.state.status == Status::Restarting {
                inner.state.stopped_by_user = by_user;
                inner.state.status = Status::Exited;
                self.save_state(&entry, &inner);
                entry.publish_watch(&inner, false, false);
                return Ok(true);
            }
            let Some(shim) = inner.shim.clone().filter(|_| inner.state.status.is_live()) else {
                return Ok(false);
            };
            if by_user {
                inner.state.stopped_by_user = true;
                self.save_state(&entry, &inner);
            }
            let signal_name = signal
                .map(str::to_owned)
                .or_else(|| inner.record.config.stop_signal.clone())
                .unwrap_or_else(|| "SIGTERM".to_string());
            let timeout = timeout
                .or(inner.record.config.stop_timeout)
                .unwrap_or(DEFAULT_STOP_TIMEOUT);
            (shim, parse_signal(&signal_name)?, timeout)
        };
        let mut rx = entry.watch.subscribe();
        let exits = rx.borrow().exits;
        if entry.inner().state.status == Status::Paused {
            let _ = shim.resume();
        }
        if let Err(e) = shim.kill(signal, false) {
            tracing::debug!("container {}: stop signal: {e}", entry.id);
        }
        self.event(&entry, "kill", &[("signal", signal.to_string())]);
        let exited = |rx: &mut watch::Receiver<Watch>, within: Duration| {
            let deadline = Instant::now() + within;
            loop {
                if rx.borrow_and_update().exits != exits {
                    return true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                std::thread::sleep(left.min(Duration::from_millis(20)));
            }
        };
        if timeout >= 0 && !exited(&mut rx, Duration::from_secs(timeout as u64)) {
            let _ = shim.kill(9, true);
            self.event(&entry, "kill", &[("signal", "9".to_string())]);
            if !exited(&mut rx, Duration::from_secs(30)) {
                return Err(Error::Internal(format!(
                    "container {} did not exit after SIGKILL",
                    entry.id
                )));
            }
        } else if timeout < 0 {
            exited(&mut rx, Duration::from_secs(u64::MAX / 4));
        }
        self.event(&entry, "stop", &[]);
        Ok(true)
    }

    /// Sends a signal (name or number; default SIGKILL).
    pub fn kill(&self, name: &str, signal: Option<&str>) -> Result<()> {
        let entry = self.lookup(name)?;
        let signal = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        let shim = {
            let _ops = entry.ops();
            let mut inner = entry.inner();
            let Some(shim) = inner.shim.clone().filter(|_| inner.state.status.is_live()) else {
                return Err(Error::Conflict(format!(
                    "cannot kill container: {}: container {} is not running",
                    name, entry.id
                )));
            };
            if signal == 9 {
                inner.state.stopped_by_user = true;
                self.save_state(&entry, &inner);
            }
            shim
        };
        let mut rx = entry.watch.subscribe();
        let exits = rx.borrow_and_update().exits;
        shim.kill(signal, false).map_err(shim_err)?;
        self.event(&entry, "kill", &[("signal", signal.to_string())]);
        if signal == 9 {
            // As dockerd: a SIGKILL returns once the container is down.
            let deadline = Instant::now() + Duration::from_secs(10);
            while rx.borrow_and_update().exits == exits && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// `docker restart`: stop (if running), then start.
    pub fn restart(&self, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let entry = self.lookup(name)?;
        entry.inner().restarting_by_user = true;
        let result = self
            .stop(&entry.id, timeout, signal)
            .and_then(|_| self.start(&entry.id));
        let auto_remove = {
            let mut inner = entry.inner();
            inner.restarting_by_user = false;
            inner.record.host_config.auto_remove == Some(true) && !inner.state.status.is_live()
        };
        if let Err(e) = result {
            // A `--rm` container that did not come back goes, as its exit
            // would have removed it.
            if auto_remove {
                let _ = self.remove(&entry.id, true);
            }
            return Err(e);
        }
        self.event(&entry, "restart", &[]);
        Ok(())
    }

    pub fn pause(&self, name: &str) -> Result<()> {
        self.set_paused(name, true)
    }

    pub fn unpause(&self, name: &str) -> Result<()> {
        self.set_paused(name, false)
    }

    fn set_paused(&self, name: &str, pause: bool) -> Result<()> {
        let entry = self.lookup(name)?;
        {
            let _ops = entry.ops();
            let mut inner = entry.inner();
            let status = inner.state.status;
            let Some(shim) = inner.shim.clone().filter(|_| status.is_live()) else {
                return Err(Error::Conflict(format!(
                    "Container {} is not running",
                    entry.id
                )));
            };
            match (pause, status) {
                (true, Status::Paused) => {
                    return Err(Error::Conflict(format!(
                        "Container {} is already paused",
                        entry.id
                    )))
                }
                (false, Status::Running) => {
                    return Err(Error::Conflict(format!(
                        "Container {} is not paused",
                        entry.id
                    )))
                }
                _ => {}
            }
            if pause {
                shim.pause().map_err(shim_err)?;
                inner.state.status = Status::Paused;
            } else {
                shim.resume().map_err(shim_err)?;
                inner.state.status = Status::Running;
            }
            self.save_state(&entry, &inner);
            entry.publish_watch(&inner, false, false);
        }
        self.event(&entry, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    // ------------------------------------------------------------ remove

    /// Removes a container (`force` kills a running one first).
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let entry = self.lookup(name)?;
        let live = {
            let inner = entry.inner();
            inner.state.status.is_live() || inner.state.status == Status::Restarting
        };
        if live {
            if !force {
                let inner = entry.inner();
                return Err(Error::Conflict(format!(
                    "cannot remove container \"/{}\": container is {}: stop the container before removing or force remove",
                    inner.name,
                    inner.state.status.as_str()
                )));
            }
            self.stop(&entry.id, Some(0), Some("SIGKILL"))?;
        }
        let _ops = entry.ops();
        {
            let mut inner = entry.inner();
            if inner.state.status == Status::Removing {
                // This call stopped a `--rm` container and its auto-removal
                // got there first: removed, as the caller asked.
                if live && entry.watch.borrow().removed {
                    return Ok(());
                }
                return Err(Error::Conflict(format!(
                    "removal of container {} is already in progress",
                    entry.id
                )));
            }
            if inner.state.status.is_live() {
                return Err(Error::Conflict(format!(
                    "container {} started again while being removed",
                    entry.id
                )));
            }
            inner.state.status = Status::Removing;
            entry.publish_watch(&inner, false, false);
        }
        self.unmount_shm(&entry.id);
        self.images.remove_rootfs(&entry.id)?;
        let paths = self.paths(&entry.id);
        let _ = std::fs::remove_dir_all(self.state_dir(&entry.id));
        if let Err(e) = std::fs::remove_dir_all(&paths.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io(format!("remove {}", paths.dir.display()), e));
            }
        }
        self.images
            .meta()
            .transaction(|tx| tx.delete_container(&entry.id).map(|_| ()))?;
        self.entries().remove(&entry.id);
        self.execs.forget_container(&entry.id);
        {
            let inner = entry.inner();
            entry.publish_watch(&inner, false, true);
        }
        self.event(&entry, "destroy", &[]);
        Ok(())
    }

    // ------------------------------------------------------------ queries

    pub fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let entry = self.lookup(name)?;
        let new_name = names::validate(new_name)?;
        let old = entry.inner().name.clone();
        if old == new_name {
            return Err(Error::Conflict(
                "Renaming a container with the same name as its current name".to_string(),
            ));
        }
        if let Ok(other) = self.lookup(&format!("/{new_name}")) {
            return Err(Error::Conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        self.images
            .meta()
            .transaction(|tx| tx.rename_container(&entry.id, &new_name))?;
        entry.inner().name = new_name;
        self.event(&entry, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    /// Ids of the container's execs (inspect's `ExecIDs`).
    pub fn exec_ids(&self, id: &str) -> Vec<String> {
        self.execs.ids_of(id)
    }

    pub fn details(&self, name: &str) -> Result<Details> {
        let entry = self.lookup(name)?;
        Ok(self.details_of(&entry))
    }

    fn details_of(&self, entry: &Entry) -> Details {
        let inner = entry.inner();
        Details {
            id: entry.id.clone(),
            name: inner.name.clone(),
            image_id: inner.image_id.clone(),
            created_nanos: inner.created_nanos,
            record: inner.record.clone(),
            state: inner.state.clone(),
            paths: self.paths(&entry.id),
        }
    }

    /// Every container, newest first.
    pub fn list(&self) -> Vec<Details> {
        let entries: Vec<Arc<Entry>> = self.entries().values().cloned().collect();
        let mut out: Vec<Details> = entries.iter().map(|e| self.details_of(e)).collect();
        out.sort_by(|a, b| b.created_nanos.cmp(&a.created_nanos).then(a.id.cmp(&b.id)));
        out
    }

    /// Bytes in the container's writable layer.
    pub fn size_rw(&self, id: &str) -> Result<u64> {
        self.images.rootfs_usage(id)
    }

    /// Ids of the containers using image `id` (image removal checks).
    pub fn using_image(&self, id: &Digest) -> Vec<(String, Status)> {
        self.entries()
            .values()
            .filter_map(|e| {
                let inner = e.inner();
                (inner.image_id == *id).then(|| (e.id.clone(), inner.state.status))
            })
            .collect()
    }

    pub fn watch(&self, name: &str) -> Result<watch::Receiver<Watch>> {
        Ok(self.lookup(name)?.watch.subscribe())
    }

    // ------------------------------------------------------------ streams

    /// Attaches to the container's stdio. Before a start, the attach is
    /// kept and connected when the container starts.
    pub fn attach(&self, name: &str, options: AttachOptions) -> Result<(Attached, bool)> {
        let entry = self.lookup(name)?;
        let inner = entry.inner();
        let tty = inner.record.config.tty.unwrap_or(false);
        if let Some(shim) = inner.shim.clone().filter(|_| inner.state.status.is_live()) {
            drop(inner);
            let stream = shim.attach(&options).map_err(shim_err)?;
            self.event(&entry, "attach", &[]);
            return Ok((Attached::Now(stream), tty));
        }
        drop(inner);
        let (tx, rx) = oneshot::channel();
        entry
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(PendingAttach { options, reply: tx });
        self.event(&entry, "attach", &[]);
        Ok((Attached::OnStart(rx), tty))
    }

    /// A client detached with the detach keys (event `detach`).
    pub fn detached(&self, name: &str) {
        if let Ok(entry) = self.lookup(name) {
            self.event(&entry, "detach", &[]);
        }
    }

    /// Resizes the container's tty.
    pub fn resize(&self, name: &str, width: u16, height: u16) -> Result<()> {
        let entry = self.lookup(name)?;
        let inner = entry.inner();
        let Some(shim) = inner.shim.clone().filter(|_| inner.state.status.is_live()) else {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                entry.id
            )));
        };
        drop(inner);
        shim.resize(None, width, height).map_err(shim_err)
    }

    pub fn log_source(&self, name: &str) -> Result<LogSource> {
        let entry = self.lookup(name)?;
        let inner = entry.inner();
        Ok(LogSource {
            config: inner.record.log.clone(),
            context: self.log_context(&entry, &inner),
            tty: inner.record.config.tty.unwrap_or(false),
            watch: entry.watch.subscribe(),
        })
    }

    /// Bytes of a container's log files (`system df`).
    pub fn log_usage(&self, name: &str) -> Result<u64> {
        let entry = self.lookup(name)?;
        let inner = entry.inner();
        Ok(berth_logs::disk_usage(
            &inner.record.log,
            &self.log_context(&entry, &inner),
        ))
    }

    /// The settings the daemon runs containers with (`info`).
    pub fn settings(&self) -> &ContainerSettings {
        &self.settings
    }

    /// Containers by state: (all, running, paused, stopped), for `info`.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let entries = self.entries();
        let mut counts = (entries.len(), 0, 0, 0);
        for e in entries.values() {
            match e.inner().state.status {
                Status::Running | Status::Restarting => counts.1 += 1,
                Status::Paused => counts.2 += 1,
                _ => counts.3 += 1,
            }
        }
        counts
    }
}

/// The restart policy's answer to an exit (see
/// [`ContainerService::should_restart`]).
fn restart_wanted(
    policy: &record::RestartPolicy,
    restart_count: i64,
    state: &State,
    daemon_start: bool,
) -> bool {
    let held_down = state.stopped_by_user && !daemon_start;
    match policy.name.as_str() {
        "always" => !held_down,
        "unless-stopped" => !state.stopped_by_user,
        "on-failure" => {
            !held_down
                && state.exit_code != 0
                && (policy.maximum_retry_count == 0 || restart_count < policy.maximum_retry_count)
        }
        _ => false,
    }
}

fn shim_err(e: berth_shim::Error) -> Error {
    match e {
        berth_shim::Error::Runtime(msg) => Error::StartFailed(format!(
            "failed to create task for container: OCI runtime create failed: {msg}: unknown"
        )),
        berth_shim::Error::NotRunning(id) => {
            Error::Conflict(format!("Container {id} is not running"))
        }
        berth_shim::Error::NoSuchExec(id) => {
            Error::NotFound(format!("No such exec instance: {id}"))
        }
        other => Error::Internal(other.to_string()),
    }
}

/// Docker's exit code and State.Error for a failed start.
fn start_failure(e: &Error) -> (i64, String) {
    let message = e.to_string();
    let code = if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        128
    };
    (code, message)
}

/// Splits the create body into Docker's Config and HostConfig; the restart
/// policy is taken out first, as Berth knows one name bollard's model doesn't.
struct ParsedCreate {
    config: ContainerConfig,
    host_config: HostConfig,
    restart: RestartPolicy,
}

fn parse_create_body(body: serde_json::Value) -> Result<ParsedCreate> {
    let serde_json::Value::Object(mut body) = body else {
        return Err(Error::InvalidArgument(
            "invalid JSON: the container config must be an object".to_string(),
        ));
    };
    let mut host = match body.remove("HostConfig") {
        Some(serde_json::Value::Object(h)) => h,
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(_) => {
            return Err(Error::InvalidArgument(
                "invalid JSON: HostConfig must be an object".to_string(),
            ))
        }
    };
    body.remove("NetworkingConfig");
    let restart = match host.remove("RestartPolicy") {
        Some(serde_json::Value::Object(r)) => {
            let name = r.get("Name").and_then(|v| v.as_str()).unwrap_or("");
            let count = r
                .get("MaximumRetryCount")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            RestartPolicy::parse(name, count).map_err(Error::InvalidArgument)?
        }
        None | Some(serde_json::Value::Null) => RestartPolicy::default(),
        Some(_) => {
            return Err(Error::InvalidArgument(
                "invalid JSON: HostConfig.RestartPolicy must be an object".to_string(),
            ))
        }
    };
    let config: ContainerConfig = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| Error::InvalidArgument(format!("invalid JSON in container config: {e}")))?;
    let host_config: HostConfig = serde_json::from_value(serde_json::Value::Object(host))
        .map_err(|e| Error::InvalidArgument(format!("invalid JSON in HostConfig: {e}")))?;
    Ok(ParsedCreate {
        config,
        host_config,
        restart,
    })
}

/// Signal by name (`SIGTERM`, `TERM`, case-insensitive) or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::InvalidArgument(format!("Invalid signal: {s}")));
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let full = format!("SIG{name}");
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let base = libc_sigrtmin();
        let off: i32 = match rt {
            "" => 0,
            r => r
                .strip_prefix('+')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::InvalidArgument(format!("Invalid signal: {s}")))?,
        };
        return Ok(base + off);
    }
    full.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::InvalidArgument(format!("Invalid signal: {s}")))
}

fn libc_sigrtmin() -> i32 {
    34
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf for the container, as
/// dockerd writes them for a container without a network of its own.
fn write_etc_files(paths: &Paths, config: &ContainerConfig, id: &str) -> Result<()> {
    let hostname = config
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| id[..12].to_string());
    let write = |path: &Path, content: String| -> Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).map_err(io_err(format!("write {}", tmp.display())))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(format!("chmod {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(io_err(format!("rename {}", path.display())))
    };
    write(&paths.hostname, format!("{hostname}\n"))?;
    write(
        &paths.hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string(),
    )?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    // Loopback resolvers of the host can't be reached from the container.
    let resolv: String = host_resolv
        .lines()
        .filter(|l| {
            let mut words = l.split_whitespace();
            !(words.next() == Some("nameserver")
                && words
                    .next()
                    .is_some_and(|a| a.starts_with("127.") || a == "::1"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write(&paths.resolv_conf, resolv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_answer_exits_as_dockerd() {
        let policy = |name: &str, max: i64| record::RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        };
        let exited = |code: i64, by_user: bool| State {
            exit_code: code,
            stopped_by_user: by_user,
            ..State::default()
        };
        // (policy, retries so far, exit code, stopped by a user) -> (now, at daemon start)
        let table = [
            (policy("always", 0), 0, 0, false, (true, true)),
            (policy("always", 0), 0, 137, true, (false, true)),
            (policy("unless-stopped", 0), 0, 1, false, (true, true)),
            (policy("unless-stopped", 0), 0, 137, true, (false, false)),
            (policy("on-failure", 0), 7, 1, false, (true, true)),
            (policy("on-failure", 0), 0, 0, false, (false, false)),
            (policy("on-failure", 0), 0, 137, true, (false, true)),
            (policy("on-failure", 3), 2, 1, false, (true, true)),
            (policy("on-failure", 3), 3, 1, false, (false, false)),
            (policy("no", 0), 0, 1, false, (false, false)),
            (policy("", 0), 0, 1, false, (false, false)),
            (policy("on-unhealthy", 0), 0, 1, false, (false, false)),
        ];
        for (policy, count, code, by_user, (now, at_start)) in table {
            let state = exited(code, by_user);
            assert_eq!(
                (
                    restart_wanted(&policy, count, &state, false),
                    restart_wanted(&policy, count, &state, true)
                ),
                (now, at_start),
                "{policy:?} after {count} restarts, exit {code}, stopped by a user: {by_user}"
            );
        }
    }

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM").expect("term"), 15);
        assert_eq!(parse_signal("term").expect("term"), 15);
        assert_eq!(parse_signal("9").expect("9"), 9);
        assert_eq!(parse_signal("SIGRTMIN+3").expect("rt"), 37);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn docker_cli_create_body_parses() {
        let body: serde_json::Value = serde_json::from_str(DOCKER_CLI_RUN_BODY).expect("json");
        let parsed = parse_create_body(body).expect("parse");
        assert_eq!(parsed.config.image.as_deref(), Some("busybox"));
        assert_eq!(parsed.host_config.memory, Some(10485760));
        assert_eq!(parsed.host_config.auto_remove, Some(true));
        assert_eq!(parsed.restart.name, "no");
        assert!(parsed.restart.is_none());
    }

    #[test]
    fn restart_policies_checked() {
        let body = serde_json::json!({"Image": "x", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}});
        let e = parse_create_body(body).err().expect("refused").to_string();
        assert!(e.contains("invalid restart policy"), "{e}");
        let body = serde_json::json!({"Image": "x", "HostConfig": {"RestartPolicy": {"Name": "on-unhealthy"}}});
        assert_eq!(
            parse_create_body(body).expect("ok").restart.name,
            "on-unhealthy"
        );
        let body = serde_json::json!({"Image": "x", "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}});
        assert!(parse_create_body(body).is_err());
    }

    #[test]
    fn start_failures_map_to_docker_exit_codes() {
        let e = Error::StartFailed("exec: \"nope\": executable file not found in $PATH".into());
        assert_eq!(start_failure(&e).0, 127);
        let e = Error::StartFailed("exec /etc/passwd: permission denied".into());
        assert_eq!(start_failure(&e).0, 126);
    }

    /// What the docker CLI 28 sends for
    /// `docker run --rm -i -e A=1 -v /tmp:/x:ro --name foo --memory 10m --init busybox sh -c 'echo hi'`.
    const DOCKER_CLI_RUN_BODY: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":true,"StdinOnce":true,"Env":["A=1"],"Cmd":["sh","-c","echo hi"],"Image":"busybox","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":["/tmp:/x:ro"],"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":true,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":10485760,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null,"Init":true},"NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":null,"Links":null,"Aliases":null,"MacAddress":"","DriverOpts":null,"GwPriority":0,"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSNames":null}}}}"#;
}
