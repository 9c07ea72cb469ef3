//! Healthchecks: while a container with a `Healthcheck` runs, one thread
//! per container runs the test as an exec through the shim at each
//! interval, keeps the last five results, turns the status to healthy or
//! unhealthy as dockerd does (failures in the start period don't count),
//! emits `health_status` events, and, with Berth's `on-unhealthy` restart
//! policy, restarts a container that turned unhealthy.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_shim::{AttachOptions, ExecOptions, ShimClient};
use bollard_stubs::models::{ExecConfig, HealthConfig};
use serde::{Deserialize, Serialize};

use super::{record, ContainerService, Entry, Status};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;
/// dockerd keeps this many results and this much output of each.
const KEEP_RESULTS: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// `State.Health` as dockerd shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// starting, healthy, unhealthy.
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// The test's command, or None when there is no (or a `NONE`) healthcheck.
fn test_command(config: &HealthConfig) -> Option<Vec<String>> {
    let test = config.test.as_ref()?;
    match test.first().map(String::as_str) {
        Some("CMD") => Some(test[1..].to_vec()).filter(|c| !c.is_empty()),
        Some("CMD-SHELL") => Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            test[1..].join(" "),
        ]),
        _ => None,
    }
}

fn duration(nanos: Option<i64>, default: Duration) -> Duration {
    match nanos {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

impl ContainerService {
    /// Starts the healthcheck thread for a run of the container that just
    /// started with `shim`; it ends when that run ends.
    pub(super) fn start_health_monitor(&self, entry: &Arc<Entry>, shim: &ShimClient) {
        let Some(config) = entry.inner().record.config.healthcheck.clone() else {
            return;
        };
        let Some(command) = test_command(&config) else {
            return;
        };
        {
            let mut inner = entry.inner();
            inner.state.health = Some(Health {
                status: "starting".to_string(),
                failing_streak: 0,
                log: Vec::new(),
            });
            self.save_state(entry, &inner);
        }
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let entry = entry.clone();
        let shim = shim.clone();
        let _ = std::thread::Builder::new()
            .name(format!("health-{}", &entry.id[..12]))
            .stack_size(256 * 1024)
            .spawn(move || this.health_loop(&entry, &shim, &config, &command));
    }

    fn still_this_run(entry: &Entry, shim: &ShimClient) -> bool {
        let inner = entry.inner();
        inner.state.status.is_live() && inner.shim.as_ref().map(|s| &s.socket) == Some(&shim.socket)
    }

    fn health_loop(
        &self,
        entry: &Arc<Entry>,
        shim: &ShimClient,
        config: &HealthConfig,
        command: &[String],
    ) {
        let interval = duration(config.interval, DEFAULT_INTERVAL);
        let timeout = duration(config.timeout, DEFAULT_TIMEOUT);
        let start_period = duration(config.start_period, Duration::ZERO);
        let start_interval = duration(config.start_interval, Duration::from_secs(5));
        let retries = config.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES);
        let started = Instant::now();
        let mut probe = 0u64;
        loop {
            let in_start_period = started.elapsed() < start_period;
            let wait = if in_start_period && config.start_interval.is_some_and(|n| n > 0) {
                start_interval
            } else {
                interval
            };
            // Sleep in small steps so a stopped container ends the loop soon.
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if !Self::still_this_run(entry, shim) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
            }
            if !Self::still_this_run(entry, shim) {
                return;
            }
            if entry.inner().state.status == Status::Paused {
                continue;
            }
            probe += 1;
            let result = self.run_probe(entry, shim, command, timeout, probe);
            let in_start_period = started.elapsed() < start_period;
            let (changed_to, restart) = {
                let mut inner = entry.inner();
                if inner.shim.as_ref().map(|s| &s.socket) != Some(&shim.socket) {
                    return;
                }
                let health = inner.state.health.get_or_insert_with(|| Health {
                    status: "starting".to_string(),
                    failing_streak: 0,
                    log: Vec::new(),
                });
                let before = health.status.clone();
                if result.exit_code == 0 {
                    health.failing_streak = 0;
                    health.status = "healthy".to_string();
                } else if !in_start_period || before != "starting" {
                    health.failing_streak += 1;
                    if health.failing_streak >= retries {
                        health.status = "unhealthy".to_string();
                    }
                }
                health.log.push(result);
                if health.log.len() > KEEP_RESULTS {
                    health.log.remove(0);
                }
                let after = health.status.clone();
                let restart = after == "unhealthy"
                    && before != "unhealthy"
                    && inner.record.restart.name == "on-unhealthy";
                self.save_state(entry, &inner);
                ((before != after).then_some(after), restart)
            };
            if let Some(status) = changed_to {
                self.event(entry, &format!("health_status: {status}"), &[]);
            }
            if restart {
                tracing::info!(
                    "container {}: unhealthy, restarting (on-unhealthy)",
                    entry.id
                );
                if let Some(this) = self.this.upgrade() {
                    let id = entry.id.clone();
                    let entry = entry.clone();
                    std::thread::spawn(move || {
                        {
                            let mut inner = entry.inner();
                            inner.record.restart_count += 1;
                            if let Err(e) = this.save_record(&entry, &inner) {
                                tracing::error!("container {id}: {e}");
                            }
                        }
                        if let Err(e) = this.restart(&id, None, None) {
                            tracing::error!("container {id}: on-unhealthy restart: {e}");
                        }
                    });
                }
                return;
            }
        }
    }

    /// One run of the test: an exec whose output (first 4 KiB) and exit
    /// code are the result; a test that outlives `timeout` is killed
    /// (exit -1, as dockerd reports it).
    fn run_probe(
        &self,
        entry: &Entry,
        shim: &ShimClient,
        command: &[String],
        timeout: Duration,
        probe: u64,
    ) -> HealthResult {
        let start = record::now_rfc3339();
        let fail = |code: i64, output: String| HealthResult {
            start: start.clone(),
            end: record::now_rfc3339(),
            exit_code: code,
            output,
        };
        let exec_config = ExecConfig {
            cmd: Some(command.to_vec()),
            ..Default::default()
        };
        let process = match self.exec_process(&entry.id, &exec_config) {
            Ok(p) => p,
            Err(e) => return fail(-1, e.to_string()),
        };
        let exec_id = format!("health-{}-{probe}", &entry.id[..12]);
        if let Err(e) = shim.exec_create(&ExecOptions {
            exec_id: exec_id.clone(),
            process,
            tty: false,
            stdin: false,
        }) {
            return fail(-1, e.to_string());
        }
        let stream = shim.attach(&AttachOptions {
            exec: Some(exec_id.clone()),
            stdin: false,
            stdout: true,
            stderr: true,
        });
        if let Err(e) = shim.exec_start(&exec_id) {
            return fail(-1, e.to_string());
        }
        let reader = stream.ok().map(|mut s| {
            std::thread::spawn(move || {
                let mut output = Vec::new();
                while let Ok(Some((_, data))) = berth_shim::read_frame(&mut s) {
                    if output.len() < MAX_OUTPUT {
                        output
                            .extend_from_slice(&data[..data.len().min(MAX_OUTPUT - output.len())]);
                    }
                }
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
                output
            })
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = shim.clone();
        let id = exec_id.clone();
        std::thread::spawn(move || {
            let _ = tx.send(waiter.wait(Some(&id)));
        });
        let code = match rx.recv_timeout(timeout) {
            Ok(Ok(status)) => i64::from(status.code),
            Ok(Err(e)) => return fail(-1, e.to_string()),
            Err(_) => {
                return fail(
                    -1,
                    format!("Health check exceeded timeout ({}s)", timeout.as_secs()),
                )
            }
        };
        let output = reader
            .and_then(|r| r.join().ok())
            .map(|o| String::from_utf8_lossy(&o).into_owned())
            .unwrap_or_default();
        HealthResult {
            start,
            end: record::now_rfc3339(),
            exit_code: code,
            output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_forms_as_docker_reads_them() {
        let cfg = |t: &[&str]| HealthConfig {
            test: Some(t.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        assert_eq!(
            test_command(&cfg(&["CMD-SHELL", "test -f /ok"])),
            Some(vec!["/bin/sh".into(), "-c".into(), "test -f /ok".into()])
        );
        assert_eq!(
            test_command(&cfg(&["CMD", "true"])),
            Some(vec!["true".to_string()])
        );
        assert_eq!(test_command(&cfg(&["NONE"])), None);
        assert_eq!(test_command(&HealthConfig::default()), None);
    }
}
