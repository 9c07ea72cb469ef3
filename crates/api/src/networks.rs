//! `/networks`, `/volumes` and `/build/prune` as far as berthd has them.
//!
//! Containers run with `--network none`, `host` or `container:<name>`:
//! the two predefined networks exist (as dockerd's `host` and `none`),
//! nothing else does yet. There are no volumes and no build cache, so
//! listing and pruning them answer "none", and creating them is refused
//! with a message saying so (`docker system prune`, `docker network ls`
//! and `docker volume ls` work as against a dockerd that has none).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use berth_engine::containers::Details;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::error::ApiError;
use crate::query::QueryParams;
use crate::AppState;

/// The networks every daemon has: (name, driver).
const PREDEFINED: [(&str, &str); 2] = [("host", "host"), ("none", "null")];

/// A predefined network's ID: stable across restarts and daemons.
pub fn network_id(name: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("berth network {name}")))
}

fn created(state: &AppState) -> String {
    let started: chrono::DateTime<chrono::Utc> = state.engine.started().into();
    started.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Which predefined network a container is on (dockerd's `default` is
/// `none` here until bridges come), if any.
pub(crate) fn network_of(d: &Details) -> Option<&'static str> {
    match crate::containers::network_mode(d).as_str() {
        "none" => Some("none"),
        "host" => Some("host"),
        _ => None,
    }
}

fn network_json(state: &AppState, name: &str, driver: &str, verbose: bool) -> Value {
    let containers: BTreeMap<String, Value> = if verbose {
        state
            .engine
            .containers()
            .list()
            .into_iter()
            .filter(|d| d.state.status.is_live() && network_of(d) == Some(name))
            .map(|d| {
                let endpoint = json!({
                    "Name": d.name,
                    "EndpointID": "",
                    "MacAddress": "",
                    "IPv4Address": "",
                    "IPv6Address": "",
                });
                (d.id, endpoint)
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    json!({
        "Name": name,
        "Id": network_id(name),
        "Created": created(state),
        "Scope": "local",
        "Driver": driver,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": null },
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": {},
        "Labels": {},
    })
}

/// The predefined network `name` refers to: its name, its ID or an ID prefix.
fn lookup(name: &str) -> Option<(&'static str, &'static str)> {
    PREDEFINED.iter().copied().find(|(n, _)| {
        *n == name || (!name.is_empty() && network_id(n).starts_with(&name.to_ascii_lowercase()))
    })
}

fn matches(
    filters: &BTreeMap<String, Vec<String>>,
    name: &str,
    driver: &str,
) -> Result<bool, ApiError> {
    for (key, values) in filters {
        let any = |f: &dyn Fn(&str) -> bool| values.iter().any(|v| f(v));
        let ok = match key.as_str() {
            // dockerd matches names as a substring, IDs as a prefix.
            "name" => any(&|v| name.contains(v)),
            "id" => any(&|v| network_id(name).starts_with(v)),
            "driver" => any(&|v| v == driver),
            "scope" => any(&|v| v == "local"),
            "type" => {
                for v in values {
                    if v != "builtin" && v != "custom" {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("invalid filter: 'type'='{v}'"),
                        ));
                    }
                }
                any(&|v| v == "builtin")
            }
            // Predefined networks have no labels and are never dangling.
            "label" => false,
            "dangling" => any(&|v| matches!(v, "false" | "0")),
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid filter '{other}'"),
                ))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `GET /networks`.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let filters = QueryParams::parse(q.as_deref()).filters()?;
    let mut out = Vec::new();
    for (name, driver) in PREDEFINED {
        if matches(&filters, name, driver)? {
            out.push(network_json(&state, name, driver, false));
        }
    }
    Ok(Json(Value::Array(out)))
}

/// `GET /networks/{id}`.
pub async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match lookup(&id) {
        Some((name, driver)) => Ok(Json(network_json(&state, name, driver, true))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("network {id} not found"),
        )),
    }
}

/// `DELETE /networks/{id}`.
pub async fn remove(Path(id): Path<String>) -> ApiError {
    match lookup(&id) {
        Some((name, _)) => ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{name} is a pre-defined network and cannot be removed"),
        ),
        None => ApiError::new(StatusCode::NOT_FOUND, format!("network {id} not found")),
    }
}

/// Reads (and drops) a request body before a refusal: a client still
/// writing it when the answer comes and the connection closes sees a
/// broken pipe instead of the answer. Bodies past 1 MiB are cut short.
async fn drain(body: Body) {
    let _ = axum::body::to_bytes(body, 1 << 20).await;
}

/// `POST /networks/create`, `/networks/{id}/connect` and `/disconnect`.
pub async fn not_yet(body: Body) -> ApiError {
    drain(body).await;
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "berthd has no user-defined networks yet: containers run with --network none, host or container:<name>",
    )
}

/// `POST /networks/prune`: nothing to prune.
pub async fn prune() -> Json<Value> {
    Json(json!({ "NetworksDeleted": null }))
}

/// `GET /volumes`.
pub async fn volumes() -> Json<Value> {
    Json(json!({ "Volumes": [], "Warnings": null }))
}

/// `GET /volumes/{name}`.
pub async fn volume(Path(name): Path<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("get {name}: no such volume"))
}

/// `POST /volumes/create`.
pub async fn volume_create(body: Body) -> ApiError {
    drain(body).await;
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "berthd has no named volumes yet: bind-mount a host directory (-v /host/dir:/path)",
    )
}

/// `POST /volumes/prune`: nothing to prune.
pub async fn volumes_prune() -> Json<Value> {
    Json(json!({ "VolumesDeleted": null, "SpaceReclaimed": 0 }))
}

/// `POST /build/prune`: there is no build cache.
pub async fn build_prune() -> Json<Value> {
    Json(json!({ "CachesDeleted": null, "SpaceReclaimed": 0 }))
}

/// `POST /build`.
pub async fn build(body: Body) -> ApiError {
    drain(body).await;
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "berthd does not build images yet: build with another builder and docker load the result",
    )
}
