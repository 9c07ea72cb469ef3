//! `docker exec`: an exec is created (recorded here only), then started in
//! the container through its shim, which holds the process's stdio and
//! reaps it. Its process is the container's own process spec (user,
//! capabilities, rlimits, seccomp…) with the exec's command, environment,
//! user and working directory.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};

use berth_shim::{AttachOptions, ExecOptions};
use bollard_stubs::models::ExecConfig;
use tokio::sync::watch;

use super::{shim_err, ContainerService, Status};
use crate::{Error, Result};

/// One exec, as `GET /exec/{id}/json` shows it.
#[derive(Debug, Clone)]
pub struct ExecDetails {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

pub(crate) struct ExecEntry {
    details: Mutex<ExecDetails>,
    /// The exit code once the process is gone.
    exit: watch::Sender<Option<i64>>,
}

impl ExecEntry {
    fn details(&self) -> MutexGuard<'_, ExecDetails> {
        self.details.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Execs by id, kept while their container exists.
#[derive(Default)]
pub(crate) struct ExecTable {
    execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
}

impl ExecTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<ExecEntry>>> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<ExecEntry>> {
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("No such exec instance: {id}")))
    }

    /// Forgets the execs of a removed container.
    pub(crate) fn forget_container(&self, container_id: &str) {
        self.lock()
            .retain(|_, e| e.details().container_id != container_id);
    }

    pub(crate) fn ids_of(&self, container_id: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.details().container_id == container_id)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// A started exec: its stdio (unless detached) and its exit code to come.
pub struct ExecStarted {
    pub stream: Option<UnixStream>,
    pub tty: bool,
    pub exit: watch::Receiver<Option<i64>>,
}

impl ContainerService {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, container: &str, body: serde_json::Value) -> Result<String> {
        let config: ExecConfig = serde_json::from_value(body)
            .map_err(|e| Error::InvalidArgument(format!("invalid exec config: {e}")))?;
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(Error::InvalidArgument(
                "No exec command specified".to_string(),
            ));
        }
        let entry = self.lookup(container)?;
        {
            let inner = entry.inner();
            match inner.state.status {
                Status::Running => {}
                Status::Paused => {
                    return Err(Error::Conflict(format!(
                        "Container {} is paused, unpause the container before exec",
                        entry.id
                    )))
                }
                Status::Restarting => {
                    return Err(Error::Conflict(format!(
                        "Container {} is restarting, wait until the container is running",
                        entry.id
                    )))
                }
                _ => {
                    return Err(Error::Conflict(format!(
                        "container {} is not running",
                        entry.id
                    )))
                }
            }
        }
        let id = super::new_id();
        // dockerd names the command in the action: `exec_create: sh -c …`.
        let command = config.cmd.clone().unwrap_or_default().join(" ");
        let (exit, _) = watch::channel(None);
        self.execs.lock().insert(
            id.clone(),
            Arc::new(ExecEntry {
                details: Mutex::new(ExecDetails {
                    id: id.clone(),
                    container_id: entry.id.clone(),
                    config,
                    running: false,
                    exit_code: None,
                    pid: 0,
                }),
                exit,
            }),
        );
        self.event(
            &entry,
            &format!("exec_create: {command}"),
            &[("execID", id.clone())],
        );
        Ok(id)
    }

    pub fn exec_inspect(&self, exec_id: &str) -> Result<ExecDetails> {
        Ok(self.execs.get(exec_id)?.details().clone())
    }

    /// `POST /exec/{id}/start`: runs the process; unless `detach`, the
    /// returned stream carries its stdio (framed output, raw stdin).
    pub fn exec_start(&self, exec_id: &str, detach: bool) -> Result<ExecStarted> {
        let exec = self.execs.get(exec_id)?;
        let result = self.exec_start_inner(&exec, exec_id, detach);
        if let Err(e) = &result {
            // As dockerd: a failed start is an exit with 126/127.
            if !matches!(e, Error::Conflict(_) | Error::NotFound(_)) {
                let (code, _) = super::start_failure(e);
                let code = if code == 128 { 126 } else { code };
                let mut d = exec.details();
                d.running = false;
                d.exit_code = Some(code);
                drop(d);
                exec.exit.send_replace(Some(code));
            }
        }
        result
    }

    fn exec_start_inner(
        &self,
        exec: &Arc<ExecEntry>,
        exec_id: &str,
        detach: bool,
    ) -> Result<ExecStarted> {
        let exec = exec.clone();
        let (container_id, config) = {
            let d = exec.details();
            if d.running || d.exit_code.is_some() {
                return Err(Error::Conflict(format!(
                    "Error: Exec command {exec_id} has already run"
                )));
            }
            (d.container_id.clone(), d.config.clone())
        };
        let entry = self.lookup(&container_id)?;
        let shim = {
            let inner = entry.inner();
            inner
                .shim
                .clone()
                .filter(|_| inner.state.status == Status::Running)
                .ok_or_else(|| {
                    Error::Conflict(format!("container {container_id} is not running"))
                })?
        };
        let process = self.exec_process(&container_id, &config)?;
        let tty = config.tty.unwrap_or(false);
        let stdin = config.attach_stdin.unwrap_or(false) && !detach;
        shim.exec_create(&ExecOptions {
            exec_id: exec_id.to_string(),
            process,
            tty,
            stdin,
        })
        .map_err(shim_err)?;
        let stream = if detach {
            None
        } else {
            Some(
                shim.attach(&AttachOptions {
                    exec: Some(exec_id.to_string()),
                    stdin,
                    stdout: config.attach_stdout.unwrap_or(true),
                    stderr: config.attach_stderr.unwrap_or(true),
                })
                .map_err(shim_err)?,
            )
        };
        let pid = shim.exec_start(exec_id).map_err(|e| match e {
            berth_shim::Error::Runtime(msg) => Error::StartFailed(format!(
                "OCI runtime exec failed: exec failed: {msg}: unknown"
            )),
            other => shim_err(other),
        })?;
        {
            let mut d = exec.details();
            d.running = true;
            d.pid = i64::from(pid);
        }
        let command = config.cmd.clone().unwrap_or_default().join(" ");
        self.event(
            &entry,
            &format!("exec_start: {command}"),
            &[("execID", exec_id.to_string())],
        );
        let receiver = exec.exit.subscribe();
        let this = self.this.upgrade();
        let exec_id = exec_id.to_string();
        let _ = std::thread::Builder::new()
            .name("exec-wait".to_string())
            .stack_size(256 * 1024)
            .spawn(move || {
                let code = match shim.wait(Some(&exec_id)) {
                    Ok(status) => i64::from(status.code),
                    Err(e) => {
                        tracing::debug!("exec {exec_id}: wait: {e}");
                        126
                    }
                };
                {
                    let mut d = exec.details();
                    d.running = false;
                    d.exit_code = Some(code);
                    d.pid = 0;
                }
                exec.exit.send_replace(Some(code));
                if let Some(this) = this {
                    this.event(
                        &entry,
                        "exec_die",
                        &[("execID", exec_id.clone()), ("exitCode", code.to_string())],
                    );
                }
            });
        Ok(ExecStarted {
            stream,
            tty,
            exit: receiver,
        })
    }

    pub fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<()> {
        let exec = self.execs.get(exec_id)?;
        let container_id = exec.details().container_id.clone();
        let entry = self.lookup(&container_id)?;
        let shim =
            entry.inner().shim.clone().ok_or_else(|| {
                Error::Conflict(format!("container {container_id} is not running"))
            })?;
        shim.resize(Some(exec_id), width, height).map_err(shim_err)
    }

    /// The exec's OCI process: the container's own, with the exec's
    /// command, environment, user, working directory and tty.
    pub(super) fn exec_process(
        &self,
        container_id: &str,
        config: &ExecConfig,
    ) -> Result<serde_json::Value> {
        let bundle = self.state_dir(container_id).join("config.json");
        let spec: serde_json::Value = std::fs::read(&bundle)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                Error::Internal(format!(
                    "the container's spec {} is unreadable",
                    bundle.display()
                ))
            })?;
        let mut process = spec
            .get("process")
            .cloned()
            .ok_or_else(|| Error::Internal("the container's spec has no process".to_string()))?;
        process["args"] = serde_json::json!(config.cmd.clone().unwrap_or_default());
        process["terminal"] = serde_json::json!(config.tty.unwrap_or(false));
        if let Some(size) = config
            .console_size
            .as_ref()
            .filter(|s| s.len() == 2 && s[0] > 0)
        {
            process["consoleSize"] = serde_json::json!({"height": size[0], "width": size[1]});
        } else if let Some(obj) = process.as_object_mut() {
            obj.remove("consoleSize");
        }
        let mut env: Vec<String> = process["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for add in config.env.clone().unwrap_or_default() {
            let key = add.split('=').next().unwrap_or("").to_string();
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(add);
        }
        process["env"] = serde_json::json!(env);
        if let Some(dir) = config.working_dir.as_ref().filter(|d| !d.is_empty()) {
            if !dir.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "the working directory '{dir}' is invalid, it needs to be an absolute path"
                )));
            }
            process["cwd"] = serde_json::json!(dir);
        }
        if let Some(user) = config.user.as_ref().filter(|u| !u.is_empty()) {
            let rootfs = spec["root"]["path"].as_str().unwrap_or("/").to_string();
            let group_add = self
                .lookup(container_id)?
                .inner()
                .record
                .host_config
                .group_add
                .clone()
                .unwrap_or_default();
            let resolved =
                crate::spec::resolve_user(std::path::Path::new(&rootfs), user, &group_add)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            process["user"] =
                serde_json::to_value(resolved).map_err(|e| Error::Internal(e.to_string()))?;
        }
        if config.privileged.unwrap_or(false) {
            let all = crate::spec::host_capabilities();
            let caps = serde_json::json!(all);
            process["capabilities"] = serde_json::json!({
                "bounding": caps, "effective": caps, "permitted": caps,
            });
        }
        Ok(process)
    }
}
