//! `/_ping`, `/version`, `/info`, `/events` and `/auth`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::registry_client::{self, RegistrySettings, DOCKER_HUB};
use berth_engine::system::{self as sys, API_VERSION, ENGINE_VERSION, MIN_API_VERSION};
use berth_engine::{Event, EventFilter};
use serde_json::json;

use crate::error::ApiError;
use crate::images::blocking;
use crate::AppState;

fn engine_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("API-Version", HeaderValue::from_static(API_VERSION));
    h.insert("OSType", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h
}

pub async fn ping(method: Method) -> Response {
    let mut headers = engine_headers();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let body = if method == Method::HEAD { "" } else { "OK" };
    (StatusCode::OK, headers, body).into_response()
}

pub async fn version() -> Response {
    let host = sys::host_info();
    let arch = sys::go_arch(&host.architecture).to_string();
    let body = json!({
        "Platform": {"Name": "Berth Engine"},
        "Components": [{
            "Name": "Engine",
            "Version": ENGINE_VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "GitCommit": "",
                "GoVersion": "rust",
                "Os": "linux",
                "Arch": arch,
                "KernelVersion": host.kernel_version,
                "Experimental": "false",
                "BuildTime": ""
            }
        }],
        "Version": ENGINE_VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": host.kernel_version,
        "BuildTime": ""
    });
    (engine_headers(), Json(body)).into_response()
}

pub async fn info(State(state): State<AppState>) -> Response {
    let engine = &state.engine;
    let host = sys::host_info();
    let config = engine.config();
    let images = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || engine.images().list().map(|l| l.len()).unwrap_or(0))
            .await
            .unwrap_or(0)
    };
    let (containers, running, paused, stopped) = engine.containers().counts();
    let settings = engine.containers().settings();
    let runtimes: serde_json::Map<String, serde_json::Value> = settings
        .runtimes
        .iter()
        .map(|(name, rt)| {
            let mut v = json!({"path": rt.path});
            if !rt.args.is_empty() {
                v["runtimeArgs"] = json!(rt.args);
            }
            (name.clone(), v)
        })
        .collect();
    let body = json!({
        "ID": engine.id(),
        "Containers": containers,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": engine.images().driver_name(),
        "DriverStatus": [],
        "DockerRootDir": config.data_root,
        "Plugins": {"Volume": ["local"], "Network": ["none", "host"], "Authorization": null,
                    "Log": ["json-file", "journald", "local", "none", "syslog"]},
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "OomKillDisable": true,
        "IPv4Forwarding": false,
        "Debug": false,
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": chrono_now(),
        "LoggingDriver": settings.log_defaults.driver,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": host.cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": host.kernel_version,
        "OperatingSystem": host.operating_system,
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": host.architecture,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": registry_config(&config.registry),
        "NCPU": host.ncpu,
        "MemTotal": host.mem_total,
        "GenericResources": null,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": host.hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": ENGINE_VERSION,
        "Runtimes": runtimes,
        "DefaultRuntime": settings.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false,
                  "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": settings.live_restore,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": ["No bridge network yet: containers get --network none by default (no network but loopback); --network host and container:<name> work."]
    });
    (engine_headers(), Json(body)).into_response()
}

/// dockerd's `RegistryConfig`: the insecure CIDRs, an index entry for
/// Docker Hub and for each registry listed as insecure or given mirrors,
/// and Docker Hub's mirrors (the ones `docker info` lists).
fn registry_config(settings: &RegistrySettings) -> serde_json::Value {
    let mirror_urls = |registry: &str| -> Vec<String> {
        settings
            .mirrors_of(registry)
            .iter()
            .map(|m| m.url.clone())
            .collect()
    };
    let mut indexes = serde_json::Map::new();
    let names = std::iter::once(DOCKER_HUB.to_string())
        .chain(settings.insecure_hosts().iter().cloned())
        .chain(settings.mirrors().keys().cloned());
    for name in names {
        let official = name == DOCKER_HUB;
        let secure = !settings.insecure_hosts().contains(&name);
        indexes.insert(
            name.clone(),
            json!({"Name": name, "Mirrors": mirror_urls(&name), "Secure": secure, "Official": official}),
        );
    }
    json!({
        "IndexConfigs": indexes,
        "InsecureRegistryCIDRs": settings.insecure_cidrs(),
        "Mirrors": mirror_urls(DOCKER_HUB),
    })
}

/// POST /auth (`docker login`): checks the credentials against the
/// registry; nothing is stored by the daemon.
pub async fn auth(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let result = async {
        let (credentials, server) = registry_client::parse_auth_config(&body)?;
        let credentials =
            credentials.ok_or_else(|| ApiError::bad_request("login needs a username"))?;
        blocking(&state, move |e| {
            registry_client::login(&e.config().registry, &server, &credentials)
        })
        .await
    }
    .await;
    match result {
        Ok(identity_token) => Json(json!({
            "Status": "Login Succeeded",
            "IdentityToken": identity_token.unwrap_or_default(),
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

fn chrono_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// `since`/`until` as the docker CLI sends them: unix seconds with an
/// optional fraction (`1700000000.123456789`).
fn parse_timestamp(name: &str, v: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid value for {name}: {v:?}"));
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let mut nanos = 0i64;
    if !frac.is_empty() {
        if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        nanos = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    }
    secs.checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nanos))
        .ok_or_else(bad)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// Past events in [since, until], then (while `until` is in the future or
/// unset) new ones as they happen, one JSON document per line.
pub async fn events(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let since = q
        .get("since")
        .filter(|s| !s.is_empty())
        .map(|s| parse_timestamp("since", s))
        .transpose()?;
    let until = q
        .get("until")
        .filter(|s| !s.is_empty())
        .map(|s| parse_timestamp("until", s))
        .transpose()?;
    let filter = EventFilter::parse(q.get("filters").map(String::as_str).unwrap_or(""))?;
    let (history, rx) = state.engine.events().subscribe();
    let in_range = move |e: &Event| {
        since.is_none_or(|s| e.time_nano >= s) && until.is_none_or(|u| e.time_nano <= u)
    };
    let past: Vec<Event> = if since.is_some() || until.is_some() {
        history.into_iter().filter(|e| in_range(e)).collect()
    } else {
        Vec::new()
    };
    let past: Vec<Event> = past.into_iter().filter(|e| filter.matches(e)).collect();
    let follow = until.is_none_or(|u| u > now_nanos());
    struct Stream {
        past: std::vec::IntoIter<Event>,
        rx: tokio::sync::broadcast::Receiver<Event>,
        follow: bool,
        until: Option<i64>,
        filter: EventFilter,
    }
    let stream = futures_util::stream::unfold(
        Stream {
            past: past.into_iter(),
            rx,
            follow,
            until,
            filter,
        },
        |mut s| async move {
            if let Some(e) = s.past.next() {
                return Some((line(&e), s));
            }
            if !s.follow {
                return None;
            }
            loop {
                let wait = match s.until {
                    Some(u) => {
                        let left = u - now_nanos();
                        if left <= 0 {
                            return None;
                        }
                        Duration::from_nanos(left as u64)
                    }
                    None => Duration::from_secs(3600),
                };
                match tokio::time::timeout(wait, s.rx.recv()).await {
                    Ok(Ok(e)) if s.filter.matches(&e) => return Some((line(&e), s)),
                    Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
                    Err(_) if s.until.is_some() => return None,
                    Err(_) => {}
                }
            }
        },
    );
    let mut headers = engine_headers();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok((headers, Body::from_stream(stream)).into_response())
}

fn line(e: &Event) -> Result<Vec<u8>, std::io::Error> {
    let mut v = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    v.push(b'\n');
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_fractions() {
        assert_eq!(parse_timestamp("since", "12").expect("int"), 12_000_000_000);
        assert_eq!(
            parse_timestamp("since", "12.5").expect("frac"),
            12_500_000_000
        );
        assert!(parse_timestamp("since", "yesterday").is_err());
        assert!(parse_timestamp("until", "1.1234567890").is_err());
    }
}
