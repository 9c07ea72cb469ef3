//! `/images/...` and `/system/df`: JSON shapes as dockerd returns them.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_engine::images::{HistoryEntry, ImageDetails, Progress, Removed};
use berth_engine::registry_client::{self, Credentials, Status};
use berth_engine::Engine;
use berth_metadata::Image;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::query::QueryParams;
use crate::stream::{BodyReader, BodyWriter};
use crate::version::ApiVersion;
use crate::AppState;

/// Runs blocking engine work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine) -> berth_engine::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

/// The short form docker shows (`busybox:latest`) of a stored reference,
/// which is always normalized (`docker.io/library/busybox:latest`): only the
/// default registry and, for one-component names, `library/` go.
fn familiar(reference: &str) -> String {
    match reference.strip_prefix("docker.io/") {
        Some(rest) => match rest.strip_prefix("library/") {
            Some(name) if !name.split(['@', ':']).next().unwrap_or(name).contains('/') => {
                name.to_string()
            }
            _ => rest.to_string(),
        },
        None => reference.to_string(),
    }
}

fn created_unix(image: &Image) -> i64 {
    image
        .created_nanos
        .map(|n| n.div_euclid(1_000_000_000))
        .unwrap_or(0)
}

/// One `/images/json` entry as dockerd 20.10 writes it; `tags` and
/// `digests` are the references left after the `reference` filter, and an
/// image without any is shown as `<none>:<none>`.
fn summary(image: &Image, tags: Vec<String>, digests: Vec<String>) -> Value {
    let (tags, digests) = if tags.is_empty() && digests.is_empty() {
        (
            vec!["<none>:<none>".to_string()],
            vec!["<none>@<none>".to_string()],
        )
    } else {
        (tags, digests)
    };
    json!({
        "Containers": -1,
        "Created": created_unix(image),
        "Id": image.id.to_string(),
        "Labels": if image.labels.is_empty() { Value::Null } else { json!(image.labels) },
        "ParentId": image.parent_id.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "RepoDigests": digests,
        "RepoTags": tags,
        "SharedSize": -1,
        "Size": image.size,
        "VirtualSize": image.size,
    })
}

/// dockerd's message for a filter it does not accept or a bad value.
fn invalid_filter(key: &str, values: Option<&[String]>) -> ApiError {
    match values {
        Some(v) => ApiError::bad_request(format!("Invalid filter '{key}=[{}]'", v.join(" "))),
        None => ApiError::bad_request(format!("Invalid filter '{key}'")),
    }
}

fn check_filter_keys(
    filters: &BTreeMap<String, Vec<String>>,
    accepted: &[&str],
) -> Result<(), ApiError> {
    match filters.keys().find(|k| !accepted.contains(&k.as_str())) {
        Some(key) => Err(invalid_filter(key, None)),
        None => Ok(()),
    }
}

/// Docker's `label` filter: every `key` or `key=value` given must match.
fn labels_match(image: &Image, wanted: &[String]) -> bool {
    wanted.iter().all(|v| match v.split_once('=') {
        Some((k, val)) => image.labels.get(k).is_some_and(|x| x == val),
        None => image.labels.contains_key(v),
    })
}

/// Docker's `reference` filter on one reference: the pattern against the
/// familiar form, then against the familiar name.
fn reference_matches(pattern: &str, reference: &str) -> Result<bool, ApiError> {
    let bad = || ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "syntax error in pattern");
    let parsed = berth_engine::images::parse_reference(reference).ok();
    let familiar = parsed
        .as_ref()
        .map(|r| r.familiar())
        .unwrap_or_else(|| reference.to_string());
    if path_match(pattern, &familiar).ok_or_else(bad)? {
        return Ok(true);
    }
    Ok(parsed.is_some_and(|r| path_match(pattern, &r.familiar_name()) == Some(true)))
}

/// An image with the tags and digests a listing shows for it.
type Listed = (Image, Vec<String>, Vec<String>);

/// The image list of `docker images` and `docker system df`, with dockerd's
/// rules: `dangling`, `label`, `before`, `since`, `reference` (which also
/// narrows the references shown), intermediate images only with `all`,
/// newest first.
fn list_images(
    engine: &Engine,
    filters: &BTreeMap<String, Vec<String>>,
    all: bool,
) -> Result<Vec<Listed>, ApiError> {
    check_filter_keys(
        filters,
        &["dangling", "label", "before", "since", "reference"],
    )?;
    let mut dangling_only = false;
    if let Some(values) = filters.get("dangling") {
        if values.iter().any(|v| v == "true") {
            dangling_only = true;
        } else if !values.iter().any(|v| v == "false") {
            return Err(invalid_filter("dangling", Some(values)));
        }
    }
    let images = engine.images().list()?;
    let created_of = |name: &String| -> Result<i64, ApiError> {
        let (id, _) = engine.images().resolve(name)?;
        let image = engine.images().inspect(id.as_str())?.image;
        Ok(image.created_nanos.unwrap_or(i64::MIN))
    };
    let before = filters
        .get("before")
        .and_then(|v| v.last())
        .map(created_of)
        .transpose()?;
    let since = filters
        .get("since")
        .and_then(|v| v.last())
        .map(created_of)
        .transpose()?;
    let parents: std::collections::HashSet<String> = images
        .iter()
        .filter_map(|i| i.parent_id.as_ref().map(|p| p.to_string()))
        .collect();
    let labels = filters.get("label").cloned().unwrap_or_default();
    let patterns = filters.get("reference");
    let mut out = Vec::new();
    for image in images {
        let has_children = parents.contains(image.id.as_str());
        if dangling_only && has_children {
            continue;
        }
        let created = image.created_nanos.unwrap_or(i64::MIN);
        if before.is_some_and(|b| created >= b) || since.is_some_and(|s| created <= s) {
            continue;
        }
        if !labels.is_empty() && !labels_match(&image, &labels) {
            continue;
        }
        let keep = |reference: &String| -> Result<bool, ApiError> {
            match patterns {
                None => Ok(true),
                Some(patterns) => {
                    for p in patterns {
                        if reference_matches(p, reference)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                }
            }
        };
        let mut tags = Vec::new();
        for t in &image.tags {
            if keep(t)? {
                tags.push(familiar(t));
            }
        }
        let mut digests = Vec::new();
        for d in &image.repo_digests {
            if keep(d)? {
                digests.push(familiar(d));
            }
        }
        if tags.is_empty() && digests.is_empty() {
            // Intermediate images only with `all`; never for dangling=false
            // or a reference filter.
            if (has_children && !all)
                || (filters.contains_key("dangling") && !dangling_only)
                || patterns.is_some()
            {
                continue;
            }
        } else if dangling_only && !tags.is_empty() {
            continue;
        }
        out.push((image, tags, digests));
    }
    // dockerd sorts by creation second, newest first.
    out.sort_by_key(|(i, _, _)| std::cmp::Reverse(created_unix(i)));
    Ok(out)
}

/// Go's `path.Match`: `*` and `?` never match `/`, `[...]` classes with
/// ranges and `^`, `\` escapes. `None` for a malformed pattern.
fn path_match(pattern: &str, text: &str) -> Option<bool> {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars consumed incl. ']').
        let mut i = 0;
        let negate = p.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let mut lo = *p.get(i)?;
            if lo == ']' && !first {
                i += 1;
                break;
            }
            first = false;
            if lo == '\\' {
                i += 1;
                lo = *p.get(i)?;
            }
            i += 1;
            let mut hi = lo;
            if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&n| n != ']') {
                i += 1;
                hi = *p.get(i)?;
                if hi == '\\' {
                    i += 1;
                    hi = *p.get(i)?;
                }
                i += 1;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
        }
        Some((matched != negate, i))
    }
    fn go(p: &[char], t: &[char]) -> Option<bool> {
        match p.first() {
            None => Some(t.is_empty()),
            Some('*') => {
                let rest = &p[1..];
                for skip in 0..=t.len() {
                    if go(rest, &t[skip..])? {
                        return Some(true);
                    }
                    if t.get(skip) == Some(&'/') {
                        break;
                    }
                }
                Some(false)
            }
            Some('?') => match t.first() {
                Some(&c) if c != '/' => go(&p[1..], &t[1..]),
                _ => Some(false),
            },
            Some('[') => match t.first() {
                Some(&c) if c != '/' => {
                    let (ok, used) = class(&p[1..], c)?;
                    if ok {
                        go(&p[1 + used..], &t[1..])
                    } else {
                        Some(false)
                    }
                }
                _ => {
                    class(&p[1..], '\0')?;
                    Some(false)
                }
            },
            Some('\\') => {
                let c = *p.get(1)?;
                if t.first() == Some(&c) {
                    go(&p[2..], &t[1..])
                } else {
                    Some(false)
                }
            }
            Some(&c) => {
                if t.first() == Some(&c) {
                    go(&p[1..], &t[1..])
                } else {
                    Some(false)
                }
            }
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

pub async fn list(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(q.as_deref());
    let filters = q.filters()?;
    let all = q.flag("all");
    let with_shared = q.flag("shared-size");
    let engine = state.engine.clone();
    let (images, shared) = tokio::task::spawn_blocking(move || {
        let listed = list_images(&engine, &filters, all)?;
        let shared = if with_shared {
            let every = engine.images().list().map_err(ApiError::from)?;
            Some(shared_sizes(&every))
        } else {
            None
        };
        Ok::<_, ApiError>((listed, shared))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let out: Vec<Value> = images
        .into_iter()
        .map(|(img, tags, digests)| {
            let mut s = summary(&img, tags, digests);
            if let Some(shared) = &shared {
                s["SharedSize"] = json!(shared.get(&img.id).copied().unwrap_or(0));
            }
            s
        })
        .collect();
    Ok(Json(out).into_response())
}

/// Per image, the bytes of its layers that another image uses too
/// (`SharedSize` with `shared-size=1`, and in `docker system df`).
fn shared_sizes(images: &[Image]) -> BTreeMap<berth_content::Digest, u64> {
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for img in images {
        for l in &img.layers {
            *uses.entry(l.chain_id.as_str()).or_default() += 1;
        }
    }
    images
        .iter()
        .map(|img| {
            let shared = img
                .layers
                .iter()
                .filter(|l| uses.get(l.chain_id.as_str()).is_some_and(|n| *n > 1))
                .map(|l| l.size)
                .sum();
            (img.id.clone(), shared)
        })
        .collect()
}

/// `container.Config` as dockerd serializes it (its field order, `null`
/// for unset lists and maps, the `omitempty` fields left out), read from
/// an image config's `config` or `container_config`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ContainerConfig {
    hostname: String,
    domainname: String,
    user: String,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    #[serde(skip_serializing_if = "is_empty_value")]
    exposed_ports: Option<Value>,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    env: Option<Value>,
    cmd: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Value>,
    #[serde(skip_serializing_if = "is_false")]
    args_escaped: bool,
    image: String,
    volumes: Option<Value>,
    working_dir: String,
    entrypoint: Option<Value>,
    #[serde(skip_serializing_if = "is_false")]
    network_disabled: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    mac_address: String,
    on_build: Option<Value>,
    labels: Option<Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    stop_signal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_timeout: Option<Value>,
    #[serde(skip_serializing_if = "is_empty_value")]
    shell: Option<Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_empty_value(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

fn container_config(raw: Option<&Value>) -> Option<ContainerConfig> {
    raw.filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v.clone()).unwrap_or_default())
}

/// A time as Go's JSON encoding writes it (RFC 3339, trailing zeros of the
/// fraction dropped, `Z` for UTC).
fn go_time<Tz: chrono::TimeZone>(t: &chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    use chrono::{Offset, Timelike};
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let offset = t.offset().fix().local_minus_utc();
    if offset == 0 {
        s.push('Z');
    } else {
        s.push_str(&t.format("%:z").to_string());
    }
    s
}

const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectDoc {
    id: String,
    repo_tags: Vec<String>,
    repo_digests: Vec<String>,
    parent: String,
    comment: String,
    created: String,
    container: String,
    container_config: ContainerConfig,
    docker_version: String,
    author: String,
    config: Option<ContainerConfig>,
    architecture: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    variant: String,
    os: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    os_version: String,
    size: u64,
    virtual_size: u64,
    graph_driver: GraphDriver,
    #[serde(rename = "RootFS")]
    root_fs: RootFs,
    metadata: InspectMetadata,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GraphDriver {
    data: Option<BTreeMap<String, String>>,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RootFs {
    #[serde(rename = "Type")]
    kind: String,
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InspectMetadata {
    last_tag_time: String,
}

/// `docker image inspect` as dockerd 20.10 writes it, field for field and
/// in its order (the docker CLI prints the daemon's JSON as it comes).
fn inspect_json(d: &ImageDetails, driver: &str) -> InspectDoc {
    let raw: Value = serde_json::from_slice(d.config.raw()).unwrap_or(Value::Null);
    let parsed = d.config.parsed();
    let created = match parsed.created.as_deref() {
        Some(c) => chrono::DateTime::parse_from_rfc3339(c)
            .map(|t| go_time(&t))
            .unwrap_or_else(|_| c.to_string()),
        None => GO_ZERO_TIME.to_string(),
    };
    InspectDoc {
        id: d.image.id.to_string(),
        repo_tags: d.image.tags.iter().map(|t| familiar(t)).collect(),
        repo_digests: d.image.repo_digests.iter().map(|t| familiar(t)).collect(),
        parent: d
            .image
            .parent_id
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        comment: parsed.comment.clone().unwrap_or_default(),
        created,
        container: raw
            .get("container")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        container_config: container_config(raw.get("container_config")).unwrap_or_default(),
        docker_version: parsed.docker_version.clone().unwrap_or_default(),
        author: parsed.author.clone().unwrap_or_default(),
        config: container_config(raw.get("config")),
        architecture: parsed.architecture.clone().unwrap_or_default(),
        variant: parsed.variant.clone().unwrap_or_default(),
        os: parsed.os.clone().unwrap_or_default(),
        os_version: raw
            .get("os.version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        size: d.image.size,
        virtual_size: d.image.size,
        graph_driver: GraphDriver {
            data: d.graph_driver_data.clone(),
            name: driver.to_string(),
        },
        root_fs: RootFs {
            kind: "layers".to_string(),
            layers: d
                .image
                .layers
                .iter()
                .map(|l| l.diff_id.to_string())
                .collect(),
        },
        metadata: InspectMetadata {
            last_tag_time: d
                .image
                .last_tagged_at
                .map(|n| go_time(&chrono::DateTime::from_timestamp_nanos(n)))
                .unwrap_or_else(|| GO_ZERO_TIME.to_string()),
        },
    }
}

fn history_json(entries: &[HistoryEntry]) -> Value {
    json!(entries
        .iter()
        .map(|h| json!({
            "Id": h.id,
            "Created": h.created,
            "CreatedBy": h.created_by,
            "Tags": if h.tags.is_empty() { Value::Null } else { json!(h.tags) },
            "Size": h.size,
            "Comment": h.comment,
        }))
        .collect::<Vec<_>>())
}

/// GET /images/{name}/json|history|get (names may contain slashes).
pub async fn get_by_name(
    State(state): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(name) = rest.strip_suffix("/json") {
        let name = name.to_string();
        let driver = state.engine.images().driver_name();
        let d = blocking(&state, move |e| e.images().inspect(&name)).await?;
        return Ok(Json(inspect_json(&d, driver)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let name = name.to_string();
        let h = blocking(&state, move |e| e.images().history(&name)).await?;
        return Ok(Json(history_json(&h)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save(state, vec![name.to_string()]).await;
    }
    Err(ApiError::new(StatusCode::NOT_FOUND, "page not found"))
}

/// POST /images/{name}/tag (names may contain slashes).
pub async fn post_by_name(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    Extension(version): Extension<ApiVersion>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(q.as_deref());
    if let Some(name) = rest.strip_suffix("/push") {
        return push(state, name, version, &q, &headers).await;
    }
    if let Some(name) = rest.strip_suffix("/tag") {
        let repo = q.get("repo").unwrap_or("").to_string();
        if repo.is_empty() {
            return Err(ApiError::bad_request(
                "repository name must have at least one component",
            ));
        }
        let target = match q.get("tag").filter(|t| !t.is_empty()) {
            Some(tag) => format!("{repo}:{tag}"),
            None => repo,
        };
        let name = name.to_string();
        blocking(&state, move |e| e.images().tag(&name, &target)).await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    Err(ApiError::new(StatusCode::NOT_FOUND, "page not found"))
}

fn removed_json(items: &[Removed]) -> Vec<Value> {
    items
        .iter()
        .map(|r| match r {
            Removed::Untagged(t) => json!({"Untagged": t}),
            Removed::Deleted(id) => json!({"Deleted": id}),
        })
        .collect()
}

/// DELETE /images/{name}
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(q.as_deref());
    let force = q.flag("force");
    let removed = blocking(&state, move |e| {
        let users = |id: &berth_content::Digest| {
            e.containers()
                .using_image(id)
                .into_iter()
                .map(|(c, status)| (c, status.is_live()))
                .collect()
        };
        e.images().remove_in_use(&name, force, &users)
    })
    .await?;
    Ok(Json(removed_json(&removed)).into_response())
}

/// POST /images/prune
pub async fn prune(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(q.as_deref());
    let mut filters = q.filters()?;
    let all = match filters.remove("dangling") {
        None => false,
        Some(v) if v.iter().any(|x| x == "false" || x == "0") => true,
        Some(v) if v.iter().any(|x| x == "true" || x == "1") => false,
        Some(v) => return Err(invalid_filter("dangling", Some(&v))),
    };
    check_filter_keys(&filters, &["until", "label", "label!"])?;
    let until = match filters.get("until").and_then(|v| v.first()) {
        Some(v) => Some(parse_until(v)?),
        None => None,
    };
    let labels = filters.get("label").cloned().unwrap_or_default();
    let not_labels = filters.get("label!").cloned().unwrap_or_default();
    let report = blocking(&state, move |e| {
        e.images().prune(all, |img| {
            let label_match = |v: &String| match v.split_once('=') {
                Some((k, val)) => img.labels.get(k).is_some_and(|x| x == val),
                None => img.labels.contains_key(v),
            };
            !e.containers().using_image(&img.id).is_empty()
                || until.is_some_and(|u| created_unix(img) >= u)
                || !labels.iter().all(label_match)
                || not_labels.iter().any(label_match)
        })
    })
    .await?;
    Ok(Json(json!({
        "ImagesDeleted": if report.removed.is_empty() { Value::Null } else { json!(removed_json(&report.removed)) },
        "SpaceReclaimed": report.space_reclaimed,
    }))
    .into_response())
}

/// `until` as dockerd reads it (Go's `GetTimestamp`): a duration before
/// now (`24h`, `1h30m`), an RFC 3339 date or time (local time when it has
/// no zone), or unix seconds. Returns unix seconds.
pub(crate) fn parse_until(v: &str) -> Result<i64, ApiError> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let bad = || ApiError::bad_request(format!("failed to parse value as time or duration: {v:?}"));
    if v != "0" {
        if let Some(secs) = go_duration_secs(v) {
            return Ok(chrono::Utc::now().timestamp() - secs);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp());
    }
    let local = |naive: NaiveDateTime| {
        chrono::Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.timestamp())
    };
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Some(t) = NaiveDateTime::parse_from_str(v, format)
            .ok()
            .and_then(local)
        {
            return Ok(t);
        }
    }
    if let Some(t) = NaiveDateTime::parse_from_str(&format!("{v}:00"), "%Y-%m-%dT%H:%M")
        .ok()
        .and_then(local)
    {
        return Ok(t);
    }
    if let Some(t) = NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(local)
    {
        return Ok(t);
    }
    if v.contains('-') {
        return Err(bad());
    }
    let (secs, nanos) = v.split_once('.').unwrap_or((v, "0"));
    match (secs.parse::<i64>(), nanos.parse::<u64>()) {
        (Ok(secs), Ok(_)) => Ok(secs),
        _ => Err(bad()),
    }
}

/// Go's `time.ParseDuration` in whole seconds: `1h30m`, `90s`, `1.5h`.
fn go_duration_secs(v: &str) -> Option<i64> {
    let (sign, mut rest) = match v.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, v.strip_prefix('+').unwrap_or(v)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Some((sign * total) as i64)
}

fn json_lines(lines: &[Value]) -> Response {
    let mut body = Vec::new();
    for l in lines {
        body.extend_from_slice(l.to_string().as_bytes());
        body.push(b'\n');
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// dockerd's JSON progress message for a layer, which the docker CLI draws
/// as a bar.
fn progress_json(p: &Progress) -> Value {
    match p {
        Progress::Layer { id, current, total } => {
            let width = 50u64;
            let done = if *total == 0 {
                width
            } else {
                (current * width / total).min(width)
            };
            let bar = format!(
                "[{}>{}]",
                "=".repeat(done.saturating_sub(1) as usize),
                " ".repeat((width - done) as usize)
            );
            json!({
                "status": "Loading layer",
                "progressDetail": {"current": current, "total": total},
                "progress": format!("{bar} {}/{}", human(*current), human(*total)),
                "id": id,
            })
        }
        Progress::Line(l) => json!({"stream": format!("{l}\n")}),
    }
}

/// Sizes as the docker CLI prints them (base 1000).
fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i])
    }
}

/// POST /images/load: progress and results stream as JSON lines; a failure
/// ends the stream with dockerd's `errorDetail` message.
pub async fn load(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(q.as_deref());
    let quiet = q.flag("quiet");
    let reader = BodyReader::new(body);
    let (mut writer, out) = BodyWriter::new();
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut emit = |v: Value| {
            let mut line = v.to_string().into_bytes();
            line.push(b'\n');
            let _ = std::io::Write::write_all(&mut writer, &line);
        };
        let result = engine.images().load(reader, &mut |p| {
            if !(quiet && matches!(p, Progress::Layer { .. })) {
                emit(progress_json(&p));
            }
        });
        if let Err(e) = result {
            let msg = e.to_string();
            emit(json!({"errorDetail": {"message": msg}, "error": msg}));
        }
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response())
}

/// POST /images/create: `fromSrc=-` imports the body, `fromImage` pulls.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(q.as_deref());
    match q.get("fromSrc") {
        Some("-") => {}
        Some(src) => {
            return Err(ApiError::bad_request(format!(
                "importing from {src:?} is not supported: send the tarball in the request body (fromSrc=-)"
            )))
        }
        None => return pull(state, &q, &headers).await,
    }
    let repo = q.get("repo").unwrap_or("").to_string();
    let tag = q.get("tag").unwrap_or("").to_string();
    let reference = if repo.is_empty() {
        None
    } else {
        let name = if tag.is_empty() {
            repo
        } else {
            format!("{repo}:{tag}")
        };
        Some(berth_engine::images::parse_reference(&name)?)
    };
    let changes = q.all("changes");
    let message = q
        .get("message")
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let reader = BodyReader::new(body);
    let id = blocking(&state, move |e| {
        e.images().import(reader, reference, changes, message)
    })
    .await?;
    Ok(json_lines(&[json!({"status": id.to_string()})]))
}

/// The docker CLI's `X-Registry-Auth` credentials, if any.
fn registry_credentials(headers: &HeaderMap) -> Result<Option<Credentials>, ApiError> {
    match headers.get("x-registry-auth").map(HeaderValue::to_str) {
        None => Ok(None),
        Some(Ok(v)) => Ok(Credentials::from_header(v)?),
        Some(Err(_)) => Err(ApiError::bad_request("X-Registry-Auth is not ASCII")),
    }
}

/// dockerd's JSON progress message; the docker CLI draws `progressDetail`
/// as a bar.
fn status_json(s: &Status) -> Value {
    let mut v = json!({"status": s.status});
    if let Some(id) = &s.id {
        v["id"] = json!(id);
    }
    if let Some((current, total)) = s.progress {
        v["progressDetail"] = json!({"current": current, "total": total});
    }
    v
}

/// Streams a registry operation's progress as JSON lines; a failure ends
/// the stream with dockerd's `errorDetail` message.
fn stream_status(
    state: AppState,
    run: impl FnOnce(&Engine, &mut dyn FnMut(Status)) -> berth_engine::Result<()> + Send + 'static,
) -> Response {
    let (mut writer, out) = BodyWriter::new();
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut emit = |v: Value| {
            let mut line = v.to_string().into_bytes();
            line.push(b'\n');
            let _ = std::io::Write::write_all(&mut writer, &line);
        };
        let result = run(&engine, &mut |s| emit(status_json(&s)));
        if let Err(e) = result {
            let msg = e.to_string();
            emit(json!({"errorDetail": {"message": msg}, "error": msg}));
        }
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response()
}

/// `fromImage` (+ `tag`, which the docker CLI also uses for a digest,
/// and `platform`): the manifest is resolved before the stream starts, so
/// a missing image is a 404 as with dockerd. A repository with neither tag
/// nor digest is `docker pull --all-tags`. `allPlatforms=1` (Berth's own)
/// pulls every platform an index lists.
async fn pull(state: AppState, q: &QueryParams, headers: &HeaderMap) -> Result<Response, ApiError> {
    let image = q.get("fromImage").unwrap_or("");
    if image.is_empty() {
        return Err(ApiError::bad_request("fromImage or fromSrc=- is required"));
    }
    let platform = match q.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => Some(registry_client::parse_platform(p)?),
        None => None,
    };
    let tag = q.get("tag").filter(|t| !t.is_empty());
    let all_platforms = match q.get("allPlatforms") {
        None | Some("" | "0" | "false") => false,
        Some("1" | "true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "allPlatforms={other:?}: expected 1 or 0"
            )))
        }
    };
    if all_platforms && (platform.is_some() || tag.is_none()) {
        return Err(ApiError::bad_request(
            "allPlatforms takes neither a platform nor --all-tags: name one tag or digest",
        ));
    }
    let name = match tag {
        Some(digest) if digest.contains(':') => format!("{image}@{digest}"),
        Some(tag) => format!("{image}:{tag}"),
        None => image.to_string(),
    };
    let credentials = registry_credentials(headers)?;
    let limits = state.engine.config().transfers;
    let repository = match tag {
        None => registry_client::repository_only(image)?,
        Some(_) => None,
    };
    if let Some(repository) = repository {
        // Check the repository has tags before the stream starts.
        let (check, creds) = (repository.clone(), credentials.clone());
        let tags = blocking(&state, move |e| {
            registry_client::list_tags(&e.config().registry, &check, creds.as_ref())
        })
        .await?;
        if tags.is_empty() {
            return Err(ApiError::from(berth_engine::Error::NotFound(format!(
                "repository {} has no tags",
                repository.familiar_name()
            ))));
        }
        return Ok(stream_status(state, move |e, emit| {
            registry_client::pull_all_tags(
                &e.config().registry,
                e.images(),
                &repository,
                tags,
                credentials.as_ref(),
                platform.as_ref(),
                &limits,
                emit,
            )
        }));
    }
    let reference = berth_engine::images::parse_reference(&name)?;
    let resolved = blocking(&state, move |e| {
        if all_platforms {
            return registry_client::resolve_all_platforms(
                &e.config().registry,
                &reference,
                credentials.as_ref(),
            );
        }
        registry_client::resolve(
            &e.config().registry,
            &reference,
            credentials.as_ref(),
            platform.as_ref(),
        )
    })
    .await?;
    Ok(stream_status(state, move |e, emit| {
        registry_client::pull(e.images(), resolved, &limits, emit)
    }))
}

/// POST /images/{name}/push?tag=…: the image must exist before the stream
/// starts (404 otherwise); without a tag every tag of the repository goes. From API 1.46, `platform` (OCI platform JSON)
/// pushes only that platform's image, as dockerd.
async fn push(
    state: AppState,
    name: &str,
    version: ApiVersion,
    q: &QueryParams,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let name = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(tag) => format!("{name}:{tag}"),
        None => name.to_string(),
    };
    let platform = match q.get("platform").filter(|p| !p.is_empty()) {
        Some(p) if version >= ApiVersion(1, 46) => Some(registry_client::parse_platform_json(p)?),
        _ => None,
    };
    let reference = berth_engine::images::parse_push_reference(&name)?;
    let credentials = registry_credentials(headers)?;
    let check = name.clone();
    let missing = format!(
        "An image does not exist locally with the tag: {}",
        reference.familiar_name()
    );
    let (check_reference, check_platform) = (reference.clone(), platform.clone());
    blocking(&state, move |e| {
        // No tag: every tag of the repository goes (docker push -a), and
        // check_push says when there is none.
        if check_reference.tag().is_some() || check_reference.digest().is_some() {
            e.images()
                .resolve(&check)
                .map(drop)
                .map_err(|err| match err {
                    // dockerd's two messages: a repository with no tag here
                    // at all, or one that lacks only this tag.
                    berth_engine::Error::NotFound(_) => {
                        let others = e.images().repository_tags(&check_reference);
                        match others {
                            Ok(tags) if !tags.is_empty() && check_reference.tag().is_some() => {
                                berth_engine::Error::NotFound(format!(
                                    "tag does not exist: {}",
                                    check_reference.familiar()
                                ))
                            }
                            _ => berth_engine::Error::NotFound(missing),
                        }
                    }
                    other => other,
                })?;
        }
        registry_client::check_push(e.images(), &check_reference, check_platform.as_ref())
    })
    .await?;
    let limits = state.engine.config().transfers;
    Ok(stream_status(state, move |e, emit| {
        registry_client::push(
            &e.config().registry,
            e.images(),
            &reference,
            platform.as_ref(),
            credentials.as_ref(),
            &limits,
            emit,
        )
    }))
}

/// GET /images/get?names=…
pub async fn get_many(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let names = QueryParams::parse(q.as_deref()).all("names");
    if names.is_empty() {
        return Err(ApiError::bad_request("no images named: use names=<image>"));
    }
    save(state, names).await
}

async fn save(state: AppState, names: Vec<String>) -> Result<Response, ApiError> {
    // Resolve first, so a missing image is a clean 404 rather than a cut stream.
    let check = names.clone();
    blocking(&state, move |e| {
        e.images().resolve_for_save(&check).map(drop)
    })
    .await?;
    let (mut writer, body) = BodyWriter::new();
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = engine.images().save(&names, &mut writer) {
            tracing::error!("save {names:?}: {e}");
            writer.fail(e.to_string());
        }
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-tar"),
        )],
        body,
    )
        .into_response())
}

/// GET /system/df: dockerd's image list (no intermediate images), with the
/// bytes each image shares with others (layers used by more than one).
pub async fn disk_usage(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = state.engine.clone();
    let (images, layers, containers) = tokio::task::spawn_blocking(move || {
        let images = list_images(&engine, &BTreeMap::new(), false)?;
        let layers = engine.images().layers_size()?;
        // Each container with its writable layer's size and, unlike
        // dockerd, its log files' (logs can fill a disk too).
        let containers: Vec<(berth_engine::containers::Details, u64, u64)> = engine
            .containers()
            .list()
            .into_iter()
            .map(|d| {
                let rw = engine.containers().size_rw(&d.id).unwrap_or(0);
                let logs = engine.containers().log_usage(&d.id).unwrap_or(0);
                (d, rw, logs)
            })
            .collect();
        Ok::<_, ApiError>((images, layers, containers))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let every: Vec<Image> = images.iter().map(|(img, _, _)| img.clone()).collect();
    let shared = shared_sizes(&every);
    let list: Vec<Value> = images
        .iter()
        .map(|(img, tags, digests)| {
            let mut s = summary(img, tags.clone(), digests.clone());
            let users = containers
                .iter()
                .filter(|(d, _, _)| d.image_id == img.id)
                .count();
            s["Containers"] = json!(users);
            s["SharedSize"] = json!(shared.get(&img.id).copied().unwrap_or(0));
            s
        })
        .collect();
    let logs_size: u64 = containers.iter().map(|(_, _, logs)| logs).sum();
    let containers: Vec<Value> = containers
        .iter()
        .map(|(d, rw, logs)| {
            let mut s = crate::containers::summary_json(d);
            s["SizeRw"] = json!(rw + logs);
            s["SizeRootFs"] = json!(0);
            s["LogsSize"] = json!(logs);
            s
        })
        .collect();
    Ok(Json(json!({
        "LayersSize": layers,
        "LogsSize": logs_size,
        "Images": list,
        "Containers": containers,
        "Volumes": [],
        "BuildCache": [],
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_drop_the_default_registry_and_library() {
        for (stored, shown) in [
            ("docker.io/library/busybox:latest", "busybox:latest"),
            ("docker.io/library/busybox@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "busybox@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("docker.io/someone/app:v1", "someone/app:v1"),
            ("docker.io/library/a/b:v1", "library/a/b:v1"),
            ("localhost:5000/x/y:t", "localhost:5000/x/y:t"),
        ] {
            assert_eq!(familiar(stored), shown);
            let parsed = berth_engine::images::parse_reference(stored).expect("reference");
            assert_eq!(parsed.familiar(), shown, "same as the reference parser");
        }
    }

    #[test]
    fn patterns_match_like_go_path_match() {
        assert_eq!(path_match("busy*", "busybox:latest"), Some(true));
        assert_eq!(path_match("*:v?", "app:v1"), Some(true));
        assert_eq!(path_match("busy*", "alpine:latest"), Some(false));
        // `*` stops at a slash, as in dockerd's reference filter.
        assert_eq!(path_match("multi*", "localhost:5000/x/multi"), Some(false));
        assert_eq!(path_match("*/x/*", "localhost:5000/x/multi:v"), Some(true));
        assert_eq!(path_match("[a-c]b", "bb"), Some(true));
        assert_eq!(path_match("[^a-c]b", "bb"), Some(false));
        assert_eq!(path_match("a\\*", "a*"), Some(true));
        assert_eq!(path_match("[", "a"), None);
    }

    #[test]
    fn until_reads_durations_dates_and_unix_times() {
        let now = chrono::Utc::now().timestamp();
        assert_eq!(go_duration_secs("1h30m"), Some(5400));
        assert_eq!(go_duration_secs("1.5h"), Some(5400));
        assert_eq!(go_duration_secs("10"), None);
        assert!((parse_until("24h").expect("duration") - (now - 86400)).abs() < 5);
        assert_eq!(
            parse_until("2000-01-01T00:00:00Z").expect("rfc3339"),
            946_684_800
        );
        assert!(parse_until("2000-01-01").is_ok());
        assert!(parse_until("2000-01-01T10").is_ok());
        assert_eq!(parse_until("1700000000.5").expect("unix"), 1_700_000_000);
        assert!(parse_until("2000-13-01").is_err());
        assert!(parse_until("soon").is_err());
    }

    #[test]
    fn times_print_as_go_does() {
        let t =
            chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05.120000000Z").expect("time");
        assert_eq!(go_time(&t), "2024-01-02T03:04:05.12Z");
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05+02:00").expect("time");
        assert_eq!(go_time(&t), "2024-01-02T03:04:05+02:00");
    }
}
