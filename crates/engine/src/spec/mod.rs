//! The OCI runtime spec (config.json) a container gets from a Docker API
//! create request, with dockerd's defaults: the create-time merge with the
//! image config, the create-time checks, and the spec itself.
//!
//! Everything here is computed from its inputs; the only host reads are the
//! ones dockerd makes while building a spec (stat of `--device` and blkio
//! device nodes and of `--mount type=bind` sources, the /dev walk of
//! `--privileged`, the image's /etc/passwd and /etc/group read inside the
//! rootfs) and [`HostFacts::probe`]. Nothing on the host is changed.

mod caps;
mod defaults;
mod merge;
mod modes;
mod mounts;
mod resources;
mod seccomp;
mod user;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bollard_stubs::models::{ContainerConfig, HostConfig};
use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilities, LinuxNamespace, LinuxNamespaceType, ProcessBuilder, Root,
    Spec, UserBuilder,
};

pub use berth_cgroups::Mode as CgroupMode;
pub use caps::{capabilities_from_status, capability_names_from_mask};
pub use defaults::{DEFAULT_PATH_ENV, DEFAULT_SHM_SIZE};
pub use merge::merge_image_config;
pub use mounts::{
    create_missing_bind_sources, host_binds, mount_points, requested_volumes, HostBind, MountPoint,
};
pub use seccomp::{default_seccomp_profile, DEFAULT_SECCOMP_ALLOWED_SYSCALLS};
pub use user::{resolve_user, ExecUser, UserDb};
pub use validate::{adapt_host_config, validate_create};
pub(crate) use validate::{check_cpu, check_memory};

/// What is wrong with a create request, or what kept the spec from being
/// built. Every message names the input; the API answers 400 with it.
/// Messages that dockerd has are worded as dockerd's.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither Entrypoint nor Cmd, from the request or the image.
    #[error("no command specified")]
    NoCommand,
    /// A Config field (WorkingDir, Env, StopSignal, Healthcheck, Hostname…).
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRestartPolicy(String),
    /// A resource limit (memory, CPU, blkio, pids, shm, oom score, ulimits).
    #[error("{0}")]
    InvalidResources(String),
    /// `--pid`, `--ipc`, `--uts`, `--userns`, `--network container:`.
    #[error("invalid {what} mode: {value}")]
    InvalidNamespaceMode { what: &'static str, value: String },
    /// Options that contradict each other (hostname with `--uts host`, …).
    #[error("conflicting options: {0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidSysctl(String),
    /// `--device`: a bad mapping or a host node that cannot be used.
    #[error("{0}")]
    InvalidDevice(String),
    #[error("invalid device cgroup rule format: '{0}'")]
    InvalidDeviceCgroupRule(String),
    /// `-v`, `--mount`, `--tmpfs`.
    #[error("{0}")]
    InvalidMount(String),
    #[error("Duplicate mount point: {0}")]
    DuplicateMount(String),
    #[error("{0}")]
    InvalidSecurityOpt(String),
    #[error("{0}")]
    InvalidSeccompProfile(String),
    /// `--cap-add`/`--cap-drop`; `which` is CapAdd or CapDrop.
    #[error("invalid {which}: {why}")]
    InvalidCapability { which: &'static str, why: String },
    /// `-u` or `--group-add` against the image's /etc/passwd and /etc/group.
    #[error("{0}")]
    User(String),
    /// `--pid/--ipc/--network container:<id>` without the path of that
    /// container's namespace (the caller resolves it).
    #[error("cannot join the {kind} namespace of container {container}: its namespace path was not given")]
    MissingNamespacePath {
        kind: &'static str,
        container: String,
    },
    /// A named or anonymous volume the caller did not resolve to a host path.
    #[error("volume for {destination} was not resolved to a host path")]
    UnresolvedVolume { destination: String },
    /// `--init` was asked for but the daemon has no init binary.
    #[error("--init was requested but the daemon has no init binary configured")]
    InitUnavailable,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl SpecError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> SpecError {
        SpecError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Paths of other containers' namespaces for `--pid`, `--ipc` and
/// `--network container:<id>` (e.g. `/proc/<pid>/ns/net`), resolved by the
/// caller from the named container's init pid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacePaths {
    pub pid: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub net: Option<PathBuf>,
}

/// A named or anonymous volume the caller resolved to a host directory:
/// `-v name:/dst`, `--mount type=volume`, or an image `VOLUME` it created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMount {
    pub destination: String,
    pub source: PathBuf,
}

/// Facts about the host the spec depends on. [`HostFacts::probe`] reads
/// them; tests build them by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// Capabilities the daemon holds (bounding ∩ effective set of the calling
    /// process, `CAP_` names): what `--privileged` and `--cap-add ALL` grant.
    /// On a host whose root lacks some capability it is left out instead of
    /// failing at start.
    pub capabilities: Vec<String>,
    /// cgroup v1, v2 or hybrid: the cgroup namespace is private by default on v2 only.
    pub cgroup_mode: CgroupMode,
    /// `/sys/devices/system/cpu/cpu<N>/thermal_throttle` directories that
    /// exist; dockerd (28) masks them too.
    pub thermal_throttle_paths: Vec<String>,
    /// Running kernel as (major, minor), for `minKernel` in seccomp profiles.
    pub kernel_version: (u32, u32),
}

impl HostFacts {
    /// Reads the facts of this host: /proc/self/status, the cgroup layout,
    /// /sys/devices/system/cpu/possible, uname.
    pub fn probe() -> Result<HostFacts, SpecError> {
        let status = std::fs::read_to_string("/proc/self/status")
            .map_err(|e| SpecError::io("read /proc/self/status", e))?;
        let capabilities = capabilities_from_status(&status);
        let cgroup_mode = berth_cgroups::detect()
            .map_err(|e| SpecError::io("detect the cgroup layout", std::io::Error::other(e)))?
            .mode;
        let possible =
            std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
        let thermal_throttle_paths = defaults::cpu_list(possible.trim())
            .into_iter()
            .map(|cpu| format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle"))
            .filter(|p| Path::new(p).exists())
            .collect();
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .map_err(|e| SpecError::io("uname", e.into()))?;
        Ok(HostFacts {
            capabilities,
            cgroup_mode,
            thermal_throttle_paths,
            kernel_version: seccomp::parse_kernel_version(&release).unwrap_or((0, 0)),
        })
    }

    /// This host's facts, probed once per process (they do not change while
    /// the daemon runs).
    pub fn current() -> Result<&'static HostFacts, SpecError> {
        static FACTS: OnceLock<HostFacts> = OnceLock::new();
        if let Some(facts) = FACTS.get() {
            return Ok(facts);
        }
        let facts = HostFacts::probe()?;
        Ok(FACTS.get_or_init(|| facts))
    }
}

/// The capabilities this process (the daemon) may pass on to a container:
/// what `--privileged` and `--cap-add ALL` grant. Empty when
/// /proc/self/status cannot be read.
pub fn host_capabilities() -> Vec<String> {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| capabilities_from_status(&status))
        .unwrap_or_default()
}

/// Everything [`build_spec`] needs. `config` is the merged config
/// ([`merge_image_config`]) that passed [`validate_create`]; `host_config` is
/// the request's, as the docker CLI sends it.
pub struct SpecInput<'a> {
    /// The full 64-hex container id.
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub host_config: &'a HostConfig,
    /// The mounted root filesystem. The image's /etc/passwd and /etc/group
    /// are read inside it (never following a link out of it) for `-u` and
    /// `--group-add`.
    pub rootfs: &'a Path,
    /// Directory holding the `hostname`, `hosts` and `resolv.conf` files
    /// bound at /etc/hostname, /etc/hosts, /etc/resolv.conf (for
    /// `--network container:<id>`, that container's directory, as dockerd
    /// shares them).
    pub container_dir: &'a Path,
    /// Host directory bound at /dev/shm: a tmpfs the caller mounted for
    /// `--ipc shareable`, the other container's for `--ipc container:<id>`.
    /// `None` gives a private tmpfs of `ShmSize` (64 MiB by default); with
    /// `--ipc host`, `None` means the host's /dev/shm.
    pub shm_source: Option<&'a Path>,
    /// linux.cgroupsPath, e.g. `/berth/<id>` (dockerd: `/docker/<id>`).
    pub cgroups_path: &'a str,
    pub namespace_paths: &'a NamespacePaths,
    /// Named and anonymous volumes, resolved by the caller.
    pub volumes: &'a [VolumeMount],
    /// Host path of the init binary (dockerd's docker-init) when the
    /// container runs with one: the caller passes it when `HostConfig.Init`
    /// is true, or unset and the daemon's default is to run an init. It is
    /// bound read-only at /sbin/docker-init and runs as pid 1 (`init -- cmd`)
    /// when the container has a pid namespace of its own. `Init: true`
    /// without it is an error.
    pub init: Option<&'a Path>,
    pub host: &'a HostFacts,
}

/// Where dockerd puts its init binary in the container.
pub const INIT_PATH_IN_CONTAINER: &str = "/sbin/docker-init";

/// The hostname a container gets when Config.Hostname is empty: the host's
/// with `--network host`, else the first 12 characters of the id.
pub fn default_hostname(id: &str, host_config: &HostConfig) -> String {
    if host_config.network_mode.as_deref() == Some("host") {
        if let Ok(name) = nix::unistd::gethostname() {
            return name.to_string_lossy().into_owned();
        }
    }
    id.chars().take(12).collect()
}

/// The masked and read-only paths of a container (None: none apply, as
/// for a privileged one): what the request gave, else the defaults.
fn system_paths(
    hc: &HostConfig,
    unconfined: bool,
    thermal_throttle: &[String],
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let masked = match &hc.masked_paths {
        Some(paths) => Some(paths.clone()),
        None if unconfined => None,
        None => Some(defaults::masked_paths(thermal_throttle)),
    };
    let readonly = match &hc.readonly_paths {
        Some(paths) => Some(paths.clone()),
        None if unconfined => None,
        None => Some(
            defaults::READONLY_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect(),
        ),
    };
    (masked, readonly)
}

/// `HostConfig.MaskedPaths` and `ReadonlyPaths` as `docker inspect` shows
/// them: dockerd fills the defaults in at create unless the container is
/// privileged (`--security-opt systempaths=unconfined` sends empty lists).
pub fn inspected_system_paths(
    hc: &HostConfig,
    host: &HostFacts,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    system_paths(
        hc,
        hc.privileged.unwrap_or(false),
        &host.thermal_throttle_paths,
    )
}

/// Builds the runtime spec dockerd would give this container.
pub fn build_spec(input: &SpecInput) -> Result<Spec, SpecError> {
    let config = input.config;
    let hc = input.host_config;
    let privileged = hc.privileged.unwrap_or(false);
    let security = validate::parse_security_opts(hc.security_opt.as_deref().unwrap_or_default())?;

    let pid_mode = modes::pid_mode(hc)?;
    let ipc_mode = modes::ipc_mode(hc)?;
    let net_mode = modes::net_mode(hc)?;
    let uts_host = modes::uts_host(hc)?;
    modes::check_userns(hc)?;

    // Process: user first, the capability sets depend on it.
    let db = UserDb::read_from_rootfs(input.rootfs)?;
    let exec_user = db.resolve(
        config.user.as_deref().unwrap_or_default(),
        hc.group_add.as_deref().unwrap_or_default(),
    )?;
    let cap_names = caps::container_capabilities(hc, &input.host.capabilities)?;
    let cap_set = caps::to_oci(&cap_names);
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(cap_set.clone()));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    if exec_user.uid == 0 {
        capabilities.set_effective(Some(cap_set.clone()));
        capabilities.set_permitted(Some(cap_set));
    } else {
        // As dockerd 20.10: a non-root user starts with empty effective and
        // permitted sets, as execve would leave them.
        capabilities.set_effective(None);
        capabilities.set_permitted(None);
    }

    let mut args: Vec<String> = config.entrypoint.clone().unwrap_or_default();
    args.extend(config.cmd.clone().unwrap_or_default());
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    // dockerd adds its init only in a pid namespace of the container's own.
    let init_mount = match (hc.init, input.init, &pid_mode) {
        (Some(false), _, _) => None,
        (_, Some(init), modes::NsMode::Private) => {
            let mut with_init = vec![INIT_PATH_IN_CONTAINER.to_string(), "--".to_string()];
            with_init.append(&mut args);
            args = with_init;
            Some(mounts::init_mount(init))
        }
        (Some(true), None, modes::NsMode::Private) => return Err(SpecError::InitUnavailable),
        _ => None,
    };

    let hostname = match config.hostname.as_deref() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => default_hostname(input.id, hc),
    };
    let tty = config.tty.unwrap_or(false);
    let env = defaults::environment(&hostname, tty, config.env.as_deref().unwrap_or_default());
    let cwd = match config.working_dir.as_deref() {
        Some(w) if !w.is_empty() => w.to_string(),
        _ => "/".to_string(),
    };

    let user = UserBuilder::default()
        .uid(exec_user.uid)
        .gid(exec_user.gid)
        .additional_gids(exec_user.additional_gids.clone())
        .build()
        .map_err(oci_err)?;
    let mut process = ProcessBuilder::default()
        .terminal(tty)
        .user(user)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .oom_score_adj(hc.oom_score_adj.unwrap_or(0) as i32)
        .build()
        .map_err(oci_err)?;
    process.set_rlimits(resources::rlimits(hc)?);
    process.set_no_new_privileges(security.no_new_privileges.then_some(true));
    process.set_console_size(if tty {
        defaults::console_size(hc)
    } else {
        None
    });

    // Namespaces, in dockerd's order.
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    match &net_mode {
        modes::NsMode::Private => namespaces.push(namespace(LinuxNamespaceType::Network, None)),
        modes::NsMode::Host => {}
        modes::NsMode::Container(id) => namespaces.push(namespace(
            LinuxNamespaceType::Network,
            Some(joined_path("network", id, &input.namespace_paths.net)?),
        )),
    }
    if !uts_host {
        namespaces.push(namespace(LinuxNamespaceType::Uts, None));
    }
    match &pid_mode {
        modes::NsMode::Private => namespaces.push(namespace(LinuxNamespaceType::Pid, None)),
        modes::NsMode::Host => {}
        modes::NsMode::Container(id) => namespaces.push(namespace(
            LinuxNamespaceType::Pid,
            Some(joined_path("pid", id, &input.namespace_paths.pid)?),
        )),
    }
    match &ipc_mode {
        modes::IpcMode::Host => {}
        modes::IpcMode::Container(id) => namespaces.push(namespace(
            LinuxNamespaceType::Ipc,
            Some(joined_path("ipc", id, &input.namespace_paths.ipc)?),
        )),
        _ => namespaces.push(namespace(LinuxNamespaceType::Ipc, None)),
    }
    if modes::cgroupns_private(hc, input.host.cgroup_mode) {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    }

    // Sysctls: the NIS domain name, dockerd's two network defaults for a
    // network namespace of its own, then the request's (which win).
    let mut sysctl = HashMap::new();
    if let Some(domain) = config.domainname.as_deref().filter(|d| !d.is_empty()) {
        sysctl.insert("kernel.domainname".to_string(), domain.to_string());
    }
    if net_mode == modes::NsMode::Private {
        sysctl.insert(
            "net.ipv4.ping_group_range".to_string(),
            "0 2147483647".to_string(),
        );
        sysctl.insert(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "0".to_string(),
        );
    }
    for (k, v) in hc.sysctls.iter().flatten() {
        sysctl.insert(k.clone(), v.clone());
    }

    let (devices, device_rules) = resources::devices(hc)?;
    let mut linux_resources = resources::linux_resources(hc)?;
    linux_resources.set_devices(Some(device_rules));

    let mount_plan = mounts::plan(&mounts::MountInputs {
        input,
        ipc_mode: &ipc_mode,
        privileged,
        writable_cgroups: security.writable_cgroups.unwrap_or(privileged),
        init_mount,
    })?;

    let unconfined_paths = privileged || security.unconfined_system_paths;
    let (masked_paths, readonly_paths) =
        system_paths(hc, unconfined_paths, &input.host.thermal_throttle_paths);
    let masked_paths = masked_paths.unwrap_or_default();
    let readonly_paths = readonly_paths.unwrap_or_default();

    let seccomp = seccomp::for_container(
        security.seccomp.as_deref(),
        privileged,
        &cap_names,
        input.host.kernel_version,
    )?;

    // Builders start from oci-spec's defaults (runc's example spec): every
    // field that default sets is given here explicitly.
    let mut linux = LinuxBuilder::default()
        .cgroups_path(PathBuf::from(input.cgroups_path))
        .resources(linux_resources)
        .namespaces(namespaces)
        .devices(devices)
        .masked_paths(masked_paths)
        .readonly_paths(readonly_paths)
        .sysctl(sysctl)
        .build()
        .map_err(oci_err)?;
    linux.set_seccomp(seccomp);
    linux.set_rootfs_propagation(mount_plan.rootfs_propagation);
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);

    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(hc.readonly_rootfs.unwrap_or(false).then_some(true));

    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_mounts(Some(mount_plan.mounts));
    spec.set_process(Some(process));
    spec.set_hostname(if uts_host { None } else { Some(hostname) });
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(
        hc.annotations
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(|a| a.clone().into_iter().collect()),
    );
    spec.set_linux(Some(linux));
    Ok(spec)
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

fn joined_path(
    kind: &'static str,
    container: &str,
    path: &Option<PathBuf>,
) -> Result<PathBuf, SpecError> {
    path.clone().ok_or_else(|| SpecError::MissingNamespacePath {
        kind,
        container: container.to_string(),
    })
}

fn oci_err(e: oci_spec::OciSpecError) -> SpecError {
    SpecError::InvalidConfig(format!("runtime spec: {e}"))
}

#[cfg(test)]
mod tests;
