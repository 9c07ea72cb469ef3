//! What is stored for a container: its configuration (the `config` column)
//! and its state (the `state` column), both JSON in Docker's shapes so
//! inspect can show them as they are.

use berth_logs::LogConfig;
use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

/// Docker's zero time, shown for StartedAt/FinishedAt before the first start.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Restart policy, including Berth's `on-unhealthy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// "", no, always, unless-stopped, on-failure, on-unhealthy.
    pub name: String,
    pub maximum_retry_count: i64,
}

impl RestartPolicy {
    pub fn parse(name: &str, count: i64) -> Result<RestartPolicy, String> {
        match name {
            "" | "no" | "always" | "unless-stopped" | "on-unhealthy" => {
                if count != 0 {
                    return Err("invalid restart policy: maximum retry count can only be used with 'on-failure'".to_string());
                }
            }
            "on-failure" => {
                if count < 0 {
                    return Err(
                        "invalid restart policy: maximum retry count cannot be negative".into(),
                    );
                }
            }
            other => return Err(format!("invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', 'unless-stopped' or 'on-unhealthy'")),
        }
        Ok(RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: count,
        })
    }

    pub fn is_none(&self) -> bool {
        matches!(self.name.as_str(), "" | "no")
    }
}

/// The `config` column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Docker's `Config`, already merged with the image's config.
    pub config: ContainerConfig,
    /// Docker's `HostConfig`, with `RestartPolicy` cleared (see `restart`).
    pub host_config: HostConfig,
    pub restart: RestartPolicy,
    /// The image as the user named it.
    pub image_name: String,
    pub path: String,
    pub args: Vec<String>,
    /// RFC 3339 with nanoseconds.
    pub created: String,
    pub restart_count: i64,
    pub log: LogConfig,
    /// Name of the OCI runtime (daemon.json `runtimes`, `berth` by default).
    pub runtime: String,
    pub driver: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// A process exists (running or paused).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// The `state` column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub oom_killed: bool,
    pub started_at: String,
    pub finished_at: String,
    /// A user asked for the stop (stop, kill, or `rm -f`): restart policies
    /// other than `always` do not fire, and `unless-stopped` stays down
    /// after a daemon restart.
    pub stopped_by_user: bool,
    /// Set while the container has a healthcheck.
    #[serde(default)]
    pub health: Option<super::health::Health>,
}

impl Default for State {
    fn default() -> State {
        State {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            oom_killed: false,
            started_at: ZERO_TIME.to_string(),
            finished_at: ZERO_TIME.to_string(),
            stopped_by_user: false,
            health: None,
        }
    }
}

/// RFC 3339 with nanoseconds, UTC, as dockerd prints times.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
