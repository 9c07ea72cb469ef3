//! The container's mounts: dockerd's defaults, then `-v`, `--mount`,
//! `--tmpfs`, volumes, /dev/shm and the /etc files, with dockerd's parsing,
//! options and precedence (a user mount replaces a default at the same
//! destination; one at /dev replaces every default under /dev).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{
    Mount as ApiMount, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
};
use oci_spec::runtime::Mount;

use super::defaults;
use super::modes::IpcMode;
use super::{SpecError, SpecInput, INIT_PATH_IN_CONTAINER};

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];
const DEFAULT_PROPAGATION: &str = "rprivate";

/// What a `-v` names as its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BindSource {
    /// An absolute host path.
    Host(String),
    /// A named volume, or an anonymous one (`-v /dst`).
    Volume(Option<String>),
}

/// A parsed `-v source:destination[:mode]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParsedBind {
    pub source: BindSource,
    pub destination: String,
    pub read_only: bool,
    /// A propagation named in the mode.
    pub propagation: Option<String>,
}

fn invalid_spec(raw: &str) -> String {
    format!("invalid volume specification: '{raw}'")
}

fn mount_config(typ: &str, why: impl std::fmt::Display) -> String {
    format!("invalid mount config for type \"{typ}\": {why}")
}

/// `ro`/`rw`, `z`/`Z`, a propagation, `nocopy`/`copy` and a consistency,
/// at most one of each (dockerd's linuxValidMountMode).
fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for o in mode.split(',') {
        let group = match o {
            "ro" | "rw" => 0,
            "z" | "Z" => 1,
            p if PROPAGATIONS.contains(&p) => 2,
            "nocopy" | "copy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[group] += 1;
    }
    counts.iter().all(|c| *c <= 1)
}

/// The destination checks every mount kind shares.
fn check_destination(dest: &str) -> Result<(), String> {
    if clean_path(dest) == "/" {
        return Err("invalid specification: destination can't be '/'".to_string());
    }
    if !dest.starts_with('/') {
        return Err(format!(
            "invalid mount path: '{dest}' mount path must be absolute"
        ));
    }
    Ok(())
}

/// A local volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_volume_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Parses one `HostConfig.Binds` entry as dockerd does on Linux.
pub(crate) fn parse_bind(raw: &str) -> Result<ParsedBind, SpecError> {
    let err = |m: String| SpecError::InvalidMount(m);
    let parts: Vec<&str> = raw.splitn(4, ':').collect();
    if parts[0].is_empty() {
        return Err(err(invalid_spec(raw)));
    }
    let (source, destination, mode) = match parts.as_slice() {
        [dest] => ("", *dest, ""),
        [_, second] if valid_mode(second) => return Err(err(invalid_spec(raw))),
        [src, dest] => (*src, *dest, ""),
        [src, dest, mode] => (*src, *dest, *mode),
        _ => return Err(err(invalid_spec(raw))),
    };
    if !valid_mode(mode) {
        return Err(err(format!("invalid mode: {mode}")));
    }
    let opts: Vec<&str> = mode.split(',').filter(|o| !o.is_empty()).collect();
    let propagation = opts
        .iter()
        .find(|o| PROPAGATIONS.contains(o))
        .map(|p| p.to_string());
    let copy_mode = opts.iter().any(|o| *o == "nocopy" || *o == "copy");
    let is_bind = source.starts_with('/');
    let typ = if is_bind { "bind" } else { "volume" };
    let wrap = |why: String| err(format!("{}: {}", invalid_spec(raw), mount_config(typ, why)));
    if destination.is_empty() {
        return Err(wrap("field Target must not be empty".to_string()));
    }
    check_destination(destination).map_err(wrap)?;
    if is_bind && copy_mode {
        return Err(wrap(
            "field VolumeOptions must not be specified".to_string(),
        ));
    }
    if !is_bind && propagation.is_some() {
        return Err(wrap("field BindOptions must not be specified".to_string()));
    }
    let source = if is_bind {
        BindSource::Host(clean_path(source))
    } else if source.is_empty() {
        BindSource::Volume(None)
    } else if !valid_volume_name(source) {
        return Err(err(format!(
            "create {source}: \"{source}\" includes invalid characters for a local volume name, \
             only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host \
             directory, use absolute path"
        )));
    } else {
        BindSource::Volume(Some(source.to_string()))
    };
    Ok(ParsedBind {
        source,
        destination: clean_path(destination),
        read_only: opts.contains(&"ro"),
        propagation,
    })
}

/// Checks one `HostConfig.Mounts` entry (dockerd's ValidateMountConfig); a
/// bind source must exist unless CreateMountpoint is set.
pub(crate) fn check_api_mount(m: &ApiMount) -> Result<(), SpecError> {
    let typ = m.typ.map(|t| t.to_string()).unwrap_or_default();
    let fail = |why: String| Err(SpecError::InvalidMount(mount_config(&typ, why)));
    let target = m.target.as_deref().unwrap_or_default();
    if target.is_empty() {
        return fail("field Target must not be empty".to_string());
    }
    if let Err(why) = check_destination(target) {
        return fail(why);
    }
    let source = m.source.as_deref().unwrap_or_default();
    match m.typ {
        Some(MountType::BIND) => {
            if source.is_empty() {
                return fail("field Source must not be empty".to_string());
            }
            if m.volume_options.is_some() {
                return fail("field VolumeOptions must not be specified".to_string());
            }
            if m.image_options.is_some() {
                return fail("field ImageOptions must not be specified".to_string());
            }
            if !source.starts_with('/') {
                return fail(format!(
                    "invalid mount path: '{source}' mount path must be absolute"
                ));
            }
            let force_rro = m
                .bind_options
                .as_ref()
                .and_then(|b| b.read_only_force_recursive)
                .unwrap_or(false);
            if force_rro && m.read_only.unwrap_or(false) {
                return fail(
                    "ReadOnlyForceRecursive: recursively read-only bind mounts are not supported"
                        .to_string(),
                );
            }
            let create = m
                .bind_options
                .as_ref()
                .and_then(|b| b.create_mountpoint)
                .unwrap_or(false);
            if !create && std::fs::symlink_metadata(source).is_err() {
                return fail(format!("bind source path does not exist: {source}"));
            }
        }
        Some(MountType::VOLUME) => {
            if m.bind_options.is_some() {
                return fail("field BindOptions must not be specified".to_string());
            }
            if m.image_options.is_some() {
                return fail("field ImageOptions must not be specified".to_string());
            }
            if m.read_only.unwrap_or(false) && source.is_empty() {
                return fail("must not set ReadOnly mode when using anonymous volumes".to_string());
            }
        }
        Some(MountType::TMPFS) => {
            if m.bind_options.is_some() {
                return fail("field BindOptions must not be specified".to_string());
            }
            if m.image_options.is_some() {
                return fail("field ImageOptions must not be specified".to_string());
            }
            if !source.is_empty() {
                return fail("field Source must not be specified".to_string());
            }
            if let Err(why) = tmpfs_data(m.tmpfs_options.as_ref(), m.read_only.unwrap_or(false)) {
                return fail(why);
            }
        }
        Some(other) => {
            return Err(SpecError::InvalidMount(format!(
                "mounts of type \"{other}\" are not supported"
            )))
        }
        None => return fail("mount type unknown".to_string()),
    }
    Ok(())
}

/// `--tmpfs` destinations: absolute and not `/`.
pub(crate) fn check_tmpfs(dest: &str, data: &str) -> Result<(), SpecError> {
    check_destination(dest).map_err(SpecError::InvalidMount)?;
    tmpfs_options(data).map(|_| ())
}

/// The tmpfs data string of a `--mount type=tmpfs` (dockerd's ConvertTmpfsOptions).
fn tmpfs_data(opts: Option<&MountTmpfsOptions>, read_only: bool) -> Result<String, String> {
    let mut raw = Vec::new();
    if read_only {
        raw.push("ro".to_string());
    }
    if let Some(o) = opts {
        if let Some(mode) = o.mode.filter(|m| *m != 0) {
            raw.push(format!("mode={mode:o}"));
        }
        if let Some(size) = o.size_bytes.filter(|s| *s != 0) {
            let (value, suffix) = [(1i64 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")]
                .into_iter()
                .find(|(d, _)| size % d == 0)
                .map_or((size, ""), |(d, s)| (size / d, s));
            raw.push(format!("size={value}{suffix}"));
        }
        for opt in o.options.iter().flatten() {
            match opt.as_slice() {
                [name] if name == "exec" || name == "noexec" => raw.push(name.clone()),
                [name, value] if name == "exec" || name == "noexec" => {
                    raw.push(format!("{name}={value}"))
                }
                [name] | [name, _] => return Err(format!("invalid option: {name}")),
                _ => return Err("invalid option array length".to_string()),
            }
        }
    }
    Ok(raw.join(","))
}

/// dockerd's tmpfs options: `noexec,nosuid,nodev,rprivate` then the given
/// data, merged so the last of each flag pair or data key wins.
fn tmpfs_options(data: &str) -> Result<Vec<String>, SpecError> {
    let mut all: Vec<&str> = vec!["noexec", "nosuid", "nodev", DEFAULT_PROPAGATION];
    if !data.is_empty() {
        all.extend(data.split(','));
    }
    merge_tmpfs_options(&all).map_err(SpecError::InvalidMount)
}

/// Which mount flag an option sets or clears (options sharing a key collide).
fn flag_key(option: &str) -> Option<&'static str> {
    Some(match option {
        "ro" | "rw" => "rdonly",
        "suid" | "nosuid" => "nosuid",
        "dev" | "nodev" => "nodev",
        "exec" | "noexec" => "noexec",
        "sync" | "async" => "sync",
        "dirsync" => "dirsync",
        "remount" => "remount",
        "mand" | "nomand" => "mand",
        "atime" | "noatime" => "noatime",
        "diratime" | "nodiratime" => "nodiratime",
        "relatime" | "norelatime" => "relatime",
        "strictatime" | "nostrictatime" => "strictatime",
        "bind" | "rbind" | "unbindable" | "runbindable" | "private" | "rprivate" | "shared"
        | "rshared" | "slave" | "rslave" => "propagation",
        _ => return None,
    })
}

fn merge_tmpfs_options(options: &[&str]) -> Result<Vec<String>, String> {
    const DATA_KEYS: &[&str] = &[
        "",
        "size",
        "mode",
        "uid",
        "gid",
        "nr_inodes",
        "nr_blocks",
        "mpol",
    ];
    let mut flags = BTreeSet::new();
    let mut keys = BTreeSet::new();
    let mut out = Vec::new();
    for option in options.iter().rev() {
        if *option == "defaults" {
            continue;
        }
        if let Some(key) = flag_key(option) {
            if flags.insert(key) {
                out.push(option.to_string());
            }
            continue;
        }
        let parts: Vec<&str> = option.splitn(2, '=').collect();
        if parts.len() != 2 || !DATA_KEYS.contains(&parts[0]) {
            let quoted: Vec<String> = parts.iter().map(|p| format!("{p:?}")).collect();
            return Err(format!("invalid tmpfs option [{}]", quoted.join(" ")));
        }
        if keys.insert(parts[0]) {
            out.push(option.to_string());
        }
    }
    out.reverse();
    Ok(out)
}

/// Lexically cleaned absolute-or-relative path (Go's path.Clean).
pub(crate) fn clean_path(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

fn depth(dest: &str) -> usize {
    clean_path(dest).split('/').count()
}

fn bind(destination: &str, source: &Path, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some("bind".to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options));
    m
}

fn tmpfs(destination: &str, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some("tmpfs".to_string()));
    m.set_source(Some("tmpfs".into()));
    m.set_options(Some(options));
    m
}

/// dockerd's bind options: `rbind` (or `bind`), `ro` when read-only, then
/// the propagation when there is one.
fn bind_options(recursive: bool, read_only: bool, propagation: Option<&str>) -> Vec<String> {
    let mut opts = vec![if recursive { "rbind" } else { "bind" }.to_string()];
    if read_only {
        opts.push("ro".to_string());
    }
    if let Some(p) = propagation {
        opts.push(p.to_string());
    }
    opts
}

pub(crate) fn init_mount(path: &Path) -> Mount {
    bind(
        INIT_PATH_IN_CONTAINER,
        path,
        vec!["bind".to_string(), "ro".to_string()],
    )
}

pub(crate) struct MountInputs<'a, 'b> {
    pub input: &'b SpecInput<'a>,
    pub ipc_mode: &'b IpcMode<'a>,
    pub privileged: bool,
    pub writable_cgroups: bool,
    pub init_mount: Option<Mount>,
}

pub(crate) struct MountPlan {
    pub mounts: Vec<Mount>,
    pub rootfs_propagation: Option<String>,
}

/// Volumes the caller resolved, found by destination; each used once.
struct Volumes<'a> {
    all: &'a [super::VolumeMount],
    used: Vec<bool>,
}

impl Volumes<'_> {
    fn take(&mut self, destination: &str) -> Result<PathBuf, SpecError> {
        let i = self
            .all
            .iter()
            .position(|v| clean_path(&v.destination) == destination)
            .ok_or_else(|| SpecError::UnresolvedVolume {
                destination: destination.to_string(),
            })?;
        self.used[i] = true;
        Ok(self.all[i].source.clone())
    }
}

/// A user mount as `docker inspect` lists it under `Mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPoint {
    /// `bind` or `tmpfs`.
    pub typ: &'static str,
    pub source: String,
    pub destination: String,
    /// The mode a `-v` gave (`ro,rslave`); empty for `--mount`.
    pub mode: String,
    pub rw: bool,
    pub propagation: String,
}

/// The `-v` host binds and `--mount` binds and tmpfs mounts, in the order
/// given. Entries that don't parse are left out: create refused them.
pub fn mount_points(hc: &bollard_stubs::models::HostConfig) -> Vec<MountPoint> {
    let mut out = Vec::new();
    for raw in hc.binds.iter().flatten() {
        if let Ok(ParsedBind {
            source: BindSource::Host(src),
            destination,
            read_only,
            propagation,
        }) = parse_bind(raw)
        {
            let parts: Vec<&str> = raw.splitn(3, ':').collect();
            out.push(MountPoint {
                typ: "bind",
                source: src,
                destination,
                mode: parts.get(2).copied().unwrap_or_default().to_string(),
                rw: !read_only,
                propagation: propagation.unwrap_or_else(|| DEFAULT_PROPAGATION.to_string()),
            });
        }
    }
    for api in hc.mounts.iter().flatten() {
        let destination = clean_path(api.target.as_deref().unwrap_or_default());
        let rw = !api.read_only.unwrap_or(false);
        match api.typ {
            Some(MountType::BIND) => out.push(MountPoint {
                typ: "bind",
                source: clean_path(api.source.as_deref().unwrap_or_default()),
                destination,
                mode: String::new(),
                rw,
                propagation: api
                    .bind_options
                    .as_ref()
                    .and_then(|o| o.propagation)
                    .map(|p| p.to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| DEFAULT_PROPAGATION.to_string()),
            }),
            Some(MountType::TMPFS) => out.push(MountPoint {
                typ: "tmpfs",
                source: String::new(),
                destination,
                mode: String::new(),
                rw,
                propagation: String::new(),
            }),
            _ => {}
        }
    }
    out
}

/// The volumes a request asks for, as the user wrote them: `-v name:/dst`,
/// `-v /dst` and `--mount type=volume` (volumes are not implemented yet).
pub fn requested_volumes(hc: &bollard_stubs::models::HostConfig) -> Vec<String> {
    let binds = hc.binds.iter().flatten().filter(|raw| {
        matches!(
            parse_bind(raw),
            Ok(ParsedBind {
                source: BindSource::Volume(_),
                ..
            })
        )
    });
    let mounts = hc
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.typ == Some(MountType::VOLUME))
        .map(|m| {
            format!(
                "type=volume,source={},target={}",
                m.source.as_deref().unwrap_or_default(),
                m.target.as_deref().unwrap_or_default()
            )
        });
    binds.cloned().chain(mounts).collect()
}

/// Creates the missing host directories of `-v` binds (root's, 0755), as
/// dockerd does when the container starts; `--mount` binds must exist
/// (create refused them otherwise).
pub fn create_missing_bind_sources(hc: &bollard_stubs::models::HostConfig) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    for raw in hc.binds.iter().flatten() {
        let Ok(ParsedBind {
            source: BindSource::Host(src),
            ..
        }) = parse_bind(raw)
        else {
            continue;
        };
        match std::fs::symlink_metadata(&src) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&src)
                .map_err(|e| {
                    format!("error while creating mount source path '{src}': mkdir {src}: {e}")
                })?,
            _ => {}
        }
    }
    Ok(())
}

/// A host directory bound into the container: where it appears and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostBind {
    pub destination: String,
    pub source: PathBuf,
    pub read_only: bool,
}

/// The host binds of [`mount_points`], later ones first for a destination
/// named twice (they win, as in the spec).
pub fn host_binds(hc: &bollard_stubs::models::HostConfig) -> Vec<HostBind> {
    let mut out: Vec<HostBind> = mount_points(hc)
        .into_iter()
        .filter(|m| m.typ == "bind")
        .map(|m| HostBind {
            destination: m.destination,
            source: PathBuf::from(m.source),
            read_only: !m.rw,
        })
        .collect();
    out.reverse();
    out
}

pub(crate) fn plan(m: &MountInputs) -> Result<MountPlan, SpecError> {
    let input = m.input;
    let hc = input.host_config;
    let read_only_root = hc.readonly_rootfs.unwrap_or(false);
    let mut volumes = Volumes {
        all: input.volumes,
        used: vec![false; input.volumes.len()],
    };
    // (destination, mount, propagation asked for) of every user mount.
    let mut user: Vec<(String, Mount, Option<String>)> = Vec::new();

    for raw in hc.binds.iter().flatten() {
        let b = parse_bind(raw)?;
        let mount = match &b.source {
            BindSource::Host(src) => {
                let prop = b.propagation.as_deref().unwrap_or(DEFAULT_PROPAGATION);
                bind(
                    &b.destination,
                    Path::new(src),
                    bind_options(true, b.read_only, Some(prop)),
                )
            }
            BindSource::Volume(_) => {
                let src = volumes.take(&b.destination)?;
                bind(&b.destination, &src, bind_options(true, b.read_only, None))
            }
        };
        user.push((b.destination, mount, b.propagation));
    }

    for api in hc.mounts.iter().flatten() {
        check_api_mount(api)?;
        let dest = clean_path(api.target.as_deref().unwrap_or_default());
        let read_only = api.read_only.unwrap_or(false);
        match api.typ {
            Some(MountType::BIND) => {
                let opts = api.bind_options.as_ref();
                let recursive = !opts.and_then(|o| o.non_recursive).unwrap_or(false);
                let prop = opts
                    .and_then(|o| o.propagation)
                    .filter(|p| *p != MountBindOptionsPropagationEnum::EMPTY)
                    .map(|p| p.to_string());
                let src = clean_path(api.source.as_deref().unwrap_or_default());
                let mount = bind(
                    &dest,
                    Path::new(&src),
                    bind_options(
                        recursive,
                        read_only,
                        Some(prop.as_deref().unwrap_or(DEFAULT_PROPAGATION)),
                    ),
                );
                user.push((dest, mount, prop));
            }
            Some(MountType::VOLUME) => {
                let src = volumes.take(&dest)?;
                user.push((
                    dest.clone(),
                    bind(&dest, &src, bind_options(true, read_only, None)),
                    None,
                ));
            }
            Some(MountType::TMPFS) => {
                let data = tmpfs_data(api.tmpfs_options.as_ref(), read_only)
                    .map_err(|why| SpecError::InvalidMount(mount_config("tmpfs", why)))?;
                user.push((dest.clone(), tmpfs(&dest, tmpfs_options(&data)?), None));
            }
            _ => {}
        }
    }

    let mut tmpfs_list: Vec<(&String, &String)> = hc.tmpfs.iter().flatten().collect();
    tmpfs_list.sort();
    for (dest, data) in tmpfs_list {
        check_tmpfs(dest, data)?;
        let dest = clean_path(dest);
        user.push((dest.clone(), tmpfs(&dest, tmpfs_options(data)?), None));
    }

    // Volumes nobody named: the image's VOLUMEs the caller created.
    for (i, v) in input.volumes.iter().enumerate() {
        if !volumes.used[i] {
            let dest = clean_path(&v.destination);
            user.push((
                dest.clone(),
                bind(&dest, &v.source, bind_options(true, false, None)),
                None,
            ));
        }
    }

    let mut seen = BTreeSet::new();
    for (dest, _, _) in &user {
        if !seen.insert(dest.clone()) {
            return Err(SpecError::DuplicateMount(dest.clone()));
        }
    }

    // /dev/shm shared with the host or another container, or the caller's
    // tmpfs for a shareable IPC namespace.
    if !seen.contains("/dev/shm") {
        let shm = match (m.ipc_mode, input.shm_source) {
            (IpcMode::None, _) => None,
            (_, Some(src)) => Some(src.to_path_buf()),
            (IpcMode::Host, None) => Some(PathBuf::from("/dev/shm")),
            (IpcMode::Container(id), None) => {
                return Err(SpecError::InvalidMount(format!(
                    "--ipc container:{id} needs the /dev/shm of that container"
                )))
            }
            _ => None,
        };
        if let Some(src) = shm {
            user.push((
                "/dev/shm".to_string(),
                bind(
                    "/dev/shm",
                    &src,
                    bind_options(true, false, Some(DEFAULT_PROPAGATION)),
                ),
                None,
            ));
            seen.insert("/dev/shm".to_string());
        }
    }

    for (file, dest) in [
        ("resolv.conf", "/etc/resolv.conf"),
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
    ] {
        if seen.insert(dest.to_string()) {
            let src = input.container_dir.join(file);
            user.push((
                dest.to_string(),
                bind(
                    dest,
                    &src,
                    bind_options(true, read_only_root, Some(DEFAULT_PROPAGATION)),
                ),
                None,
            ));
        }
    }

    // Defaults a user mount does not replace.
    let shm_size = match hc.shm_size {
        Some(s) if s > 0 => s,
        _ => defaults::DEFAULT_SHM_SIZE,
    };
    let dev_mounted = seen.contains("/dev");
    let mut mounts: Vec<Mount> = Vec::new();
    for mut d in defaults::mounts().into_iter().chain(m.init_mount.clone()) {
        let dest = d.destination().to_string_lossy().into_owned();
        if seen.contains(&dest) || (dev_mounted && dest.starts_with("/dev/")) {
            continue;
        }
        if dest == "/dev/shm" {
            if *m.ipc_mode == IpcMode::None {
                continue;
            }
            let mut opts = d.options().clone().unwrap_or_default();
            opts.push(format!("size={shm_size}"));
            d.set_options(Some(opts));
        }
        if read_only_root
            && !["/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"].contains(&dest.as_str())
        {
            add_option(&mut d, "ro");
        }
        if m.privileged && dest == "/sys" {
            remove_option(&mut d, "ro");
        }
        if m.writable_cgroups && d.typ().as_deref() == Some("cgroup") {
            remove_option(&mut d, "ro");
        }
        mounts.push(d);
    }

    user.sort_by_key(|(dest, _, _)| depth(dest));
    let mut rootfs_propagation: Option<String> = None;
    for (_, mount, prop) in user {
        match prop.as_deref() {
            Some("shared" | "rshared") => rootfs_propagation = Some("shared".to_string()),
            Some("slave" | "rslave") if rootfs_propagation.is_none() => {
                rootfs_propagation = Some("rslave".to_string())
            }
            _ => {}
        }
        mounts.push(mount);
    }
    Ok(MountPlan {
        mounts,
        rootfs_propagation,
    })
}

fn add_option(m: &mut Mount, opt: &str) {
    let mut opts = m.options().clone().unwrap_or_default();
    if !opts.iter().any(|o| o == opt) {
        opts.push(opt.to_string());
    }
    m.set_options(Some(opts));
}

fn remove_option(m: &mut Mount, opt: &str) {
    let mut opts = m.options().clone().unwrap_or_default();
    opts.retain(|o| o != opt);
    m.set_options(Some(opts));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_err(raw: &str) -> String {
        parse_bind(raw).expect_err(raw).to_string()
    }

    #[test]
    fn binds_parse_like_dockerd() {
        let b = parse_bind("/tmp//x/:/data:ro,rslave,Z").expect("bind");
        assert_eq!(b.source, BindSource::Host("/tmp/x".into()));
        assert_eq!(b.destination, "/data");
        assert!(b.read_only);
        assert_eq!(b.propagation.as_deref(), Some("rslave"));
        let v = parse_bind("cache:/var/cache:nocopy").expect("volume");
        assert_eq!(v.source, BindSource::Volume(Some("cache".into())));
        assert!(!v.read_only);
        assert_eq!(
            parse_bind("/anon").expect("anon").source,
            BindSource::Volume(None)
        );
    }

    #[test]
    fn bad_binds_are_named() {
        assert_eq!(bind_err(":/x"), "invalid volume specification: ':/x'");
        assert_eq!(bind_err("/x:rw"), "invalid volume specification: '/x:rw'");
        assert_eq!(
            bind_err("/a:/b:c:d"),
            "invalid volume specification: '/a:/b:c:d'"
        );
        assert_eq!(bind_err("/a:/b:rx"), "invalid mode: rx");
        assert_eq!(bind_err("/a:/b:ro,rw"), "invalid mode: ro,rw");
        assert_eq!(
            bind_err("/a:rel"),
            "invalid volume specification: '/a:rel': invalid mount config for type \"bind\": \
             invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            bind_err("/a:/"),
            "invalid volume specification: '/a:/': invalid mount config for type \"bind\": \
             invalid specification: destination can't be '/'"
        );
        assert!(bind_err("./data:/x").starts_with(
            "create ./data: \"./data\" includes invalid characters for a local volume name"
        ));
        assert!(bind_err("/a:/b:nocopy").ends_with("field VolumeOptions must not be specified"));
        assert!(bind_err("vol:/b:shared").ends_with("field BindOptions must not be specified"));
    }

    #[test]
    fn tmpfs_options_merge_like_dockerd() {
        assert_eq!(
            tmpfs_options("size=1m").expect("opts"),
            ["noexec", "nosuid", "nodev", "rprivate", "size=1m"]
        );
        assert_eq!(
            tmpfs_options("exec,size=1m,mode=1777,size=2m").expect("opts"),
            [
                "nosuid",
                "nodev",
                "rprivate",
                "exec",
                "mode=1777",
                "size=2m"
            ]
        );
        assert_eq!(
            tmpfs_options("foo").expect_err("foo").to_string(),
            "invalid tmpfs option [\"foo\"]"
        );
        assert_eq!(
            tmpfs_options("bogus=1").expect_err("bogus").to_string(),
            "invalid tmpfs option [\"bogus\" \"1\"]"
        );
    }

    #[test]
    fn tmpfs_mount_options_convert() {
        let opts = MountTmpfsOptions {
            size_bytes: Some(1 << 20),
            mode: Some(0o700),
            options: Some(vec![vec!["exec".into()]]),
        };
        assert_eq!(
            tmpfs_data(Some(&opts), true).expect("data"),
            "ro,mode=700,size=1m,exec"
        );
        let bad = MountTmpfsOptions {
            options: Some(vec![vec!["uid".into(), "0".into()]]),
            ..Default::default()
        };
        assert_eq!(
            tmpfs_data(Some(&bad), false).expect_err("uid"),
            "invalid option: uid"
        );
        let odd = MountTmpfsOptions {
            size_bytes: Some(1000),
            ..Default::default()
        };
        assert_eq!(tmpfs_data(Some(&odd), false).expect("data"), "size=1000");
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("/a//b/./c/.."), "/a/b");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(depth("/etc/hosts"), 3);
    }
}
