//! `docker cp` both ways, `docker export`, `docker diff` and `docker
//! commit`: on the container's root filesystem, mounted for the operation
//! when the container is not running, under the container's operations
//! lock (no start, stop or removal meanwhile, as dockerd holds its
//! container lock). Paths resolve inside the root only
//! (`berth_snapshot::ContainerRoot`).
//!
//! Only the root filesystem is reached: a path under a bind mount or a
//! volume reads and writes the mount point in the root, which the running
//! container does not see (dockerd mounts volumes for the copy), and
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` are the image's
//! (or empty mount points), not the files the container sees there.

use std::io::{Read, Write};
use std::path::Path;

use berth_content::Digest;
use berth_image::Reference;
use berth_snapshot::{ContainerRoot, ExtractOptions};
use serde_json::{Map, Value};

use super::{parse_signal, ContainerService, Entry, Status};
use crate::images::CommitSpec;
use crate::spec::{host_binds, HostBind};
use crate::{Error, Result};

pub use berth_snapshot::{Change, ChangeKind, PathStat};

/// Paths the runtime creates in a container's root as mount points.
/// dockerd keeps them in each container's init layer, so neither `docker
/// diff` nor `docker commit` shows them; Berth leaves them out when the
/// image lacks them and they are empty.
const MOUNT_POINTS: &[&str] = &[
    "/.dockerenv",
    "/dev",
    "/dev/console",
    "/dev/mqueue",
    "/dev/pts",
    "/dev/shm",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mtab",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
];

/// `PUT /containers/{id}/archive` query flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyToOptions {
    /// `noOverwriteDirNonDir`.
    pub no_overwrite_dir_non_dir: bool,
    /// `copyUIDGID`: files get the container user's uid and gid.
    pub copy_uid_gid: bool,
}

/// `POST /commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub reference: Option<Reference>,
    pub comment: String,
    pub author: String,
    /// Freeze a running container while its changes are read.
    pub pause: bool,
    /// Dockerfile instructions applied to the config (`docker commit -c`).
    pub changes: Vec<String>,
    /// Config overrides from the request body.
    pub config: Option<Value>,
}

/// Maps a snapshot error on `path` of container `name` to dockerd's
/// messages and statuses.
fn path_err<'a>(name: &'a str, path: &'a str) -> impl Fn(berth_snapshot::Error) -> Error + 'a {
    move |e| match e {
        berth_snapshot::Error::PathNotFound { .. } => Error::NotFound(format!(
            "Could not find the file {path} in container {name}"
        )),
        berth_snapshot::Error::NotADirectory { .. } => {
            Error::InvalidArgument("extraction point is not a directory".to_string())
        }
        e @ (berth_snapshot::Error::OtherMount { .. }
        | berth_snapshot::Error::InvalidArchive { .. }
        | berth_snapshot::Error::ArchiveEntry { .. }) => Error::InvalidArgument(e.to_string()),
        other => Error::Internal(other.to_string()),
    }
}

fn snapshot_err(e: berth_snapshot::Error) -> Error {
    Error::Internal(e.to_string())
}

impl ContainerService {
    /// Runs `f` on the container's mounted root. A root mounted for this
    /// (the container is not running) is unmounted after.
    fn with_root<T>(
        &self,
        entry: &Entry,
        binds: &[HostBind],
        f: impl FnOnce(&ContainerRoot, &Path) -> Result<T>,
    ) -> Result<T> {
        let _ops = entry.ops();
        let live = {
            let inner = entry.inner();
            inner.shim.is_some() && inner.state.status.is_live()
        };
        let merged = self.images.mount_rootfs(&entry.id)?;
        // dockerd's init layer has /.dockerenv and /etc/mtab from create
        // on; a container never started gets them here.
        if let Err(e) = berth_snapshot::ensure_init_files(&merged) {
            tracing::warn!("container {}: /.dockerenv and /etc/mtab: {e}", entry.id);
        }
        let result = binds
            .iter()
            .fold(ContainerRoot::open(&merged), |root, b| {
                root.and_then(|r| r.with_bind(&b.destination, &b.source))
            })
            .map_err(snapshot_err)
            .and_then(|root| f(&root, &merged));
        if !live {
            if let Err(e) = self.images.unmount_rootfs(&entry.id) {
                tracing::warn!("container {}: unmounting its rootfs: {e}", entry.id);
            }
        }
        result
    }

    /// `HEAD /containers/{id}/archive?path=`.
    pub fn stat_path(&self, name: &str, path: &str) -> Result<PathStat> {
        let entry = self.lookup(name)?;
        let binds = host_binds(&entry.inner().record.host_config);
        self.with_root(&entry, &binds, |root, _| {
            root.stat(path).map_err(path_err(name, path))
        })
    }

    /// `GET /containers/{id}/archive?path=`: calls `ready` with the path's
    /// stat once it is resolved, then writes its tar to `out`.
    pub fn archive_path(
        &self,
        name: &str,
        path: &str,
        ready: impl FnOnce(&PathStat),
        out: impl Write,
    ) -> Result<()> {
        let entry = self.lookup(name)?;
        let binds = host_binds(&entry.inner().record.host_config);
        self.with_root(&entry, &binds, |root, _| {
            let (stat, archive) = root.archive(path).map_err(path_err(name, path))?;
            ready(&stat);
            self.event(&entry, "archive-path", &[]);
            archive.write_to(out).map_err(snapshot_err)
        })
    }

    /// `PUT /containers/{id}/archive?path=`: extracts the tar `body` into
    /// the directory `path`. The archive is checked whole before anything
    /// is written.
    pub fn extract_to_dir(
        &self,
        name: &str,
        path: &str,
        options: CopyToOptions,
        body: impl Read,
    ) -> Result<()> {
        let entry = self.lookup(name)?;
        let (readonly, user, binds) = {
            let inner = entry.inner();
            (
                inner.record.host_config.readonly_rootfs == Some(true),
                inner.record.config.user.clone().unwrap_or_default(),
                host_binds(&inner.record.host_config),
            )
        };
        self.with_root(&entry, &binds, |root, merged| {
            let dir = root.extract_dir(path).map_err(path_err(name, path))?;
            // The directory's path with symlinks followed decides where the
            // files land: in a bind (read-only or not) or the rootfs.
            let target = clean_abs(&dir.path);
            let bind = binds
                .iter()
                .filter(|b| {
                    target == b.destination || target.starts_with(&format!("{}/", b.destination))
                })
                .max_by_key(|b| b.destination.len());
            match bind {
                Some(b) if b.read_only => {
                    return Err(Error::InvalidArgument(
                        "mounted volume is marked read-only".to_string(),
                    ))
                }
                None if readonly => {
                    return Err(Error::InvalidArgument(
                        "container rootfs is marked read-only".to_string(),
                    ))
                }
                _ => {}
            }
            // As dockerd: the container's user and primary group, or the
            // archive's owners when the container runs as root by default.
            let owner = if options.copy_uid_gid && !user.is_empty() {
                let u = crate::spec::resolve_user(merged, &user, &[])
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                Some((u.uid(), u.gid()))
            } else {
                None
            };
            let opts = ExtractOptions {
                no_overwrite_dir_non_dir: options.no_overwrite_dir_non_dir,
                owner,
            };
            dir.extract(body, self.images.spool_dir(), &opts)
                .map_err(path_err(name, path))?;
            self.event(&entry, "extract-to-dir", &[]);
            Ok(())
        })
    }

    /// `docker export`: calls `ready` once the container's root is open,
    /// then writes all of it as a tar to `out`.
    pub fn export(&self, name: &str, ready: impl FnOnce(), out: impl Write) -> Result<()> {
        let entry = self.lookup(name)?;
        self.with_root(&entry, &[], |root, _| {
            ready();
            root.export(out).map_err(snapshot_err)?;
            self.event(&entry, "export", &[]);
            Ok(())
        })
    }

    /// `docker diff`.
    pub fn changes(&self, name: &str) -> Result<Vec<Change>> {
        let entry = self.lookup(name)?;
        let _ops = entry.ops();
        self.images.rootfs_changes(&entry.id, MOUNT_POINTS)
    }

    /// `docker commit`: the container's changes as a new image on top of
    /// its image. A running container is paused meanwhile when asked (and
    /// not already paused).
    pub fn commit(&self, name: &str, options: CommitOptions) -> Result<Digest> {
        let entry = self.lookup(name)?;
        let (status, record, image) = {
            let inner = entry.inner();
            (
                inner.state.status,
                inner.record.clone(),
                inner.image_id.clone(),
            )
        };
        match status {
            Status::Dead => {
                return Err(Error::Conflict(format!(
                    "You cannot commit container {} which is Dead",
                    entry.id
                )))
            }
            Status::Removing => {
                return Err(Error::Conflict(format!(
                    "You cannot commit container {} which is being removed",
                    entry.id
                )))
            }
            _ => {}
        }
        let container_config = serde_json::to_value(&record.config)
            .map_err(|e| Error::Internal(format!("container config: {e}")))?;
        let config = commit_config(&container_config, options.config, &options.changes)?;
        let spec = CommitSpec {
            image,
            container_id: entry.id.clone(),
            container_config,
            config,
            author: options.author,
            comment: options.comment,
            created_by: record.config.cmd.clone().unwrap_or_default().join(" "),
            tag: options.reference,
        };
        let paused_here =
            options.pause && status == Status::Running && self.pause(&entry.id).is_ok();
        let result = self.with_root(&entry, &[], |root, _| {
            let changes = self.images.rootfs_changes(&entry.id, MOUNT_POINTS)?;
            self.images.commit_rootfs(root, &changes, &spec)
        });
        if let Ok(id) = &result {
            let image_ref = spec.tag.as_ref().map(|t| t.familiar()).unwrap_or_default();
            self.event(
                &entry,
                "commit",
                &[
                    ("comment", spec.comment.clone()),
                    ("imageID", id.to_string()),
                    ("imageRef", image_ref),
                ],
            );
        }
        if paused_here {
            if let Err(e) = self.unpause(&entry.id) {
                tracing::error!("container {}: unpausing after commit: {e}", entry.id);
            }
        }
        result
    }
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

/// Go's `path.Clean` of an absolute path.
fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The committed image's config, as dockerd builds it: the request's
/// config (or the container's), with `changes` applied
/// (`dockerfile.BuildFromConfig`), then completed from the container's
/// (`merge` in dockerd's daemon/commit.go).
fn commit_config(container: &Value, body: Option<Value>, changes: &[String]) -> Result<Value> {
    let mut config = match body {
        None | Some(Value::Null) => container.clone(),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(Error::InvalidArgument(
                "invalid JSON: the config must be an object".to_string(),
            ))
        }
    };
    let obj = config
        .as_object_mut()
        .ok_or_else(|| Error::InvalidArgument("the container config is not an object".into()))?;
    apply_changes(obj, changes)?;
    if let Some(base) = container.as_object() {
        merge(obj, base);
    }
    Ok(config)
}

/// `docker commit -c`: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL,
/// ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR, each applied on the
/// config as a Dockerfile would.
fn apply_changes(config: &mut Map<String, Value>, changes: &[String]) -> Result<()> {
    let mut cmd_set = false;
    for change in changes {
        let line = change.trim();
        if line.is_empty() {
            continue;
        }
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (line, ""),
        };
        let word = word.to_lowercase();
        match word.as_str() {
            "workdir" => {
                if rest.is_empty() {
                    return Err(Error::InvalidArgument(
                        "WORKDIR requires exactly one argument".to_string(),
                    ));
                }
                let current = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let dir = if rest.starts_with('/') {
                    clean_abs(rest)
                } else {
                    clean_abs(&format!("/{current}/{rest}"))
                };
                config.insert("WorkingDir".into(), Value::String(dir));
                continue;
            }
            "stopsignal" => {
                parse_signal(rest)?;
                config.insert("StopSignal".into(), Value::String(rest.to_string()));
                continue;
            }
            "cmd" | "entrypoint" | "env" | "expose" | "healthcheck" | "label" | "onbuild"
            | "user" | "volume" => {}
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{other} is not a valid change command"
                )))
            }
        }
        let mut parsed = berth_image::apply_changes(&[line.to_string()])
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut take = |key: &str| parsed.remove(key).unwrap_or(Value::Null);
        match word.as_str() {
            "cmd" => {
                config.insert("Cmd".into(), take("Cmd"));
                cmd_set = true;
            }
            "entrypoint" => {
                config.insert("Entrypoint".into(), take("Entrypoint"));
                if !cmd_set {
                    config.insert("Cmd".into(), Value::Null);
                }
            }
            "env" => {
                let mut env: Vec<Value> = match config.remove("Env") {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                for add in take("Env").as_array().cloned().unwrap_or_default() {
                    let key = add
                        .as_str()
                        .and_then(|s| s.split('=').next())
                        .unwrap_or("")
                        .to_string();
                    match env.iter().position(|e| {
                        e.as_str().and_then(|s| s.split('=').next()) == Some(key.as_str())
                    }) {
                        Some(i) => env[i] = add,
                        None => env.push(add),
                    }
                }
                config.insert("Env".into(), Value::Array(env));
            }
            "expose" | "label" | "volume" => {
                let key = match word.as_str() {
                    "expose" => "ExposedPorts",
                    "label" => "Labels",
                    _ => "Volumes",
                };
                let mut map = match config.remove(key) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                if let Value::Object(add) = take(key) {
                    map.extend(add);
                }
                config.insert(key.into(), Value::Object(map));
            }
            "healthcheck" => {
                config.insert("Healthcheck".into(), take("Healthcheck"));
            }
            "onbuild" => {
                let mut list: Vec<Value> = match config.remove("OnBuild") {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                list.extend(take("OnBuild").as_array().cloned().unwrap_or_default());
                config.insert("OnBuild".into(), Value::Array(list));
            }
            _ => {
                config.insert("User".into(), take("User"));
            }
        }
    }
    Ok(())
}

/// Fills what the new config leaves empty from the container's.
fn merge(user: &mut Map<String, Value>, base: &Map<String, Value>) {
    let copy = |user: &mut Map<String, Value>, key: &str| {
        if let Some(v) = base.get(key) {
            user.insert(key.to_string(), v.clone());
        }
    };
    if is_empty(user.get("User")) {
        copy(user, "User");
    }
    for key in ["ExposedPorts", "Labels", "Volumes"] {
        let Some(Value::Object(from)) = base.get(key) else {
            continue;
        };
        let mut to = match user.remove(key) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for (k, v) in from {
            // The container's volumes win, as in dockerd.
            if key == "Volumes" || !to.contains_key(k) {
                to.insert(k.clone(), v.clone());
            }
        }
        user.insert(key.to_string(), Value::Object(to));
    }
    if is_empty(user.get("Env")) {
        copy(user, "Env");
    } else if let Some(Value::Array(from)) = base.get("Env") {
        if let Some(Value::Array(env)) = user.get_mut("Env") {
            for item in from {
                let key = item
                    .as_str()
                    .and_then(|s| s.split('=').next())
                    .unwrap_or("");
                let present = env
                    .iter()
                    .any(|e| e.as_str().and_then(|s| s.split('=').next()) == Some(key));
                if !present {
                    env.push(item.clone());
                }
            }
        }
    }
    if is_empty(user.get("Entrypoint")) {
        if is_empty(user.get("Cmd")) {
            copy(user, "Cmd");
            copy(user, "ArgsEscaped");
        }
        if matches!(user.get("Entrypoint"), None | Some(Value::Null)) {
            copy(user, "Entrypoint");
        }
    }
    if let Some(Value::Object(hc)) = base.get("Healthcheck") {
        match user.get_mut("Healthcheck") {
            Some(Value::Object(mine)) => {
                for key in ["Test", "Interval", "Timeout", "StartPeriod", "Retries"] {
                    let unset = match mine.get(key) {
                        None | Some(Value::Null) => true,
                        Some(Value::Array(a)) => a.is_empty(),
                        Some(Value::Number(n)) => n.as_i64() == Some(0),
                        _ => false,
                    };
                    if unset {
                        if let Some(v) = hc.get(key) {
                            mine.insert(key.to_string(), v.clone());
                        }
                    }
                }
            }
            _ => {
                user.insert("Healthcheck".into(), Value::Object(hc.clone()));
            }
        }
    }
    for key in ["WorkingDir", "StopSignal"] {
        if is_empty(user.get(key)) {
            copy(user, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Value {
        json!({
            "Hostname": "5226d6228354", "User": "", "Env": ["A=1", "PATH=/bin"],
            "Cmd": ["sh", "-c", "echo hello"], "Image": "busybox", "WorkingDir": "",
            "Entrypoint": null, "Labels": {"lab": "x"},
        })
    }

    #[test]
    fn changes_apply_as_dockerd_applies_them() {
        let changes: Vec<String> = [
            r#"CMD ["cat","/tmp/hello"]"#,
            "ENV FOO=bar A=2",
            "WORKDIR rel",
            "WORKDIR sub/../x",
            "LABEL other=y",
            "EXPOSE 80",
            "STOPSIGNAL SIGUSR1",
            "USER daemon",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = commit_config(&container(), None, &changes).expect("config");
        assert_eq!(c["Cmd"], json!(["cat", "/tmp/hello"]));
        assert_eq!(c["Env"], json!(["A=2", "PATH=/bin", "FOO=bar"]));
        assert_eq!(c["WorkingDir"], json!("/rel/x"));
        assert_eq!(c["Labels"], json!({"lab": "x", "other": "y"}));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(c["StopSignal"], json!("SIGUSR1"));
        assert_eq!(c["User"], json!("daemon"));
        assert_eq!(c["Hostname"], json!("5226d6228354"));

        // ENTRYPOINT alone clears the command, as in a Dockerfile.
        let c = commit_config(&container(), None, &[r#"ENTRYPOINT ["/bin/echo"]"#.into()])
            .expect("config");
        assert_eq!(
            (c["Entrypoint"].clone(), c["Cmd"].clone()),
            (json!(["/bin/echo"]), Value::Null)
        );
    }

    #[test]
    fn bad_changes_are_refused() {
        for bad in ["FROM x", "RUN true", "STOPSIGNAL NOPE", "WORKDIR", "ENV"] {
            let e = commit_config(&container(), None, &[bad.to_string()]);
            assert!(matches!(e, Err(Error::InvalidArgument(_))), "{bad}: {e:?}");
        }
        let e = commit_config(&container(), None, &["FROM x".to_string()]).err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("from is not a valid change command")
        );
        assert!(commit_config(&container(), Some(json!([1])), &[]).is_err());
    }

    #[test]
    fn a_request_config_is_completed_from_the_container() {
        let body = json!({"Cmd": ["echo", "body"], "Env": ["Z=1"]});
        let c = commit_config(&container(), Some(body), &[]).expect("config");
        assert_eq!(c["Cmd"], json!(["echo", "body"]));
        assert_eq!(c["Env"], json!(["Z=1", "A=1", "PATH=/bin"]));
        assert_eq!(c["Labels"], json!({"lab": "x"}));
        assert!(c.get("Hostname").is_none());
        let c = commit_config(&container(), Some(json!({})), &[]).expect("config");
        assert_eq!(c["Cmd"], json!(["sh", "-c", "echo hello"]));
    }
}
