//! `/images/...` and `/system/df`: JSON shapes as dockerd returns them.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::images::{HistoryEntry, ImageDetails, Progress, Removed};
use berth_engine::Engine;
use berth_metadata::Image;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::query::QueryParams;
use crate::stream::{BodyReader, BodyWriter};
use crate::AppState;

/// Runs blocking engine work off the async threads.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Engine) -> berth_engine::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

fn familiar(reference: &str) -> String {
    berth_engine::images::parse_reference(reference)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| reference.to_string())
}

fn created_unix(image: &Image) -> i64 {
    image
        .created_nanos
        .map(|n| n.div_euclid(1_000_000_000))
        .unwrap_or(0)
}

fn summary(image: &Image, show_digests: bool) -> Value {
    let tags: Vec<String> = image.tags.iter().map(|t| familiar(t)).collect();
    let digests: Vec<String> = image.repo_digests.iter().map(|t| familiar(t)).collect();
    let _ = show_digests;
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

/// Docker's image list filters.
fn keep_image(
    image: &Image,
    all_images: &[Image],
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<bool, ApiError> {
    for (key, values) in filters {
        let ok = match key.as_str() {
            "dangling" => {
                let want = match values.first().map(String::as_str) {
                    Some("true") | Some("1") => true,
                    Some("false") | Some("0") => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid filter 'dangling={}'",
                            other.unwrap_or("")
                        )))
                    }
                };
                image.tags.is_empty() == want
            }
            "label" => values.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => image.labels.get(k).is_some_and(|x| x == val),
                None => image.labels.contains_key(v),
            }),
            "reference" => values.iter().any(|pattern| {
                image.tags.iter().chain(image.repo_digests.iter()).any(|t| {
                    let f = familiar(t);
                    let name = f.split([':', '@']).next().unwrap_or(&f).to_string();
                    glob_match(pattern, &f) || glob_match(pattern, &name)
                })
            }),
            "before" | "since" => {
                let mut ok = true;
                for v in values {
                    let reference = all_images.iter().find(|i| {
                        i.id.to_string() == *v
                            || i.id.hex().starts_with(v.trim_start_matches("sha256:"))
                            || i.tags.iter().any(|t| familiar(t) == *v || *t == *v)
                    });
                    let Some(r) = reference else {
                        return Err(ApiError::new(
                            StatusCode::NOT_FOUND,
                            format!("No such image: {v}"),
                        ));
                    };
                    let (a, b) = (created_unix(image), created_unix(r));
                    ok &= if key == "before" { a < b } else { a > b };
                }
                ok
            }
            "until" => {
                let mut ok = true;
                for v in values {
                    let t: i64 = v.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid filter 'until={v}'"))
                    })?;
                    ok &= created_unix(image) < t;
                }
                ok
            }
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Shell-style `*` and `?` matching (enough for `reference=busy*`).
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

pub async fn list(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(q.as_deref());
    let filters = q.filters()?;
    let digests = q.flag("digests");
    let images = blocking(&state, |e| e.images().list()).await?;
    let mut out = Vec::new();
    for img in &images {
        if keep_image(img, &images, &filters)? {
            out.push(summary(img, digests));
        }
    }
    Ok(Json(out).into_response())
}

fn inspect_json(d: &ImageDetails, driver: &str) -> Value {
    let raw: Value = serde_json::from_slice(d.config.raw()).unwrap_or(Value::Null);
    let parsed = d.config.parsed();
    json!({
        "Id": d.image.id.to_string(),
        "RepoTags": d.image.tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "RepoDigests": d.image.repo_digests.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "Parent": d.image.parent_id.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "Comment": parsed.comment.clone().unwrap_or_default(),
        "Created": parsed.created.clone().unwrap_or_default(),
        "Container": raw.get("container").cloned().unwrap_or(json!("")),
        "ContainerConfig": raw.get("container_config").cloned().unwrap_or(Value::Null),
        "DockerVersion": parsed.docker_version.clone().unwrap_or_default(),
        "Author": parsed.author.clone().unwrap_or_default(),
        "Config": raw.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": parsed.architecture.clone().unwrap_or_default(),
        "Variant": parsed.variant.clone(),
        "Os": parsed.os.clone().unwrap_or_default(),
        "Size": d.image.size,
        "VirtualSize": d.image.size,
        "GraphDriver": {"Name": driver, "Data": null},
        "RootFS": {"Type": "layers", "Layers": d.image.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        "Metadata": {"LastTagTime": d.image.last_tagged_at.map(|n| chrono::DateTime::from_timestamp_nanos(n).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)).unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string())},
    })
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
    RawQuery(q): RawQuery,
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
    let _ = q;
    Err(ApiError::new(StatusCode::NOT_FOUND, "page not found"))
}

/// POST /images/{name}/tag (names may contain slashes).
pub async fn post_by_name(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(q.as_deref());
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
    let removed = blocking(&state, move |e| e.images().remove(&name, force)).await?;
    Ok(Json(removed_json(&removed)).into_response())
}

/// POST /images/prune
pub async fn prune(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(q.as_deref());
    let mut filters = q.filters()?;
    let all = filters
        .remove("dangling")
        .and_then(|v| v.first().cloned())
        .is_some_and(|v| v == "false" || v == "0");
    for key in filters.keys() {
        if !matches!(key.as_str(), "until" | "label" | "label!") {
            return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
        }
    }
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
            until.is_some_and(|u| created_unix(img) >= u)
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

/// `until` as docker sends it: unix seconds, or a duration like `24h` before now.
fn parse_until(v: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = v.split('.').next().unwrap_or(v).parse::<i64>() {
        return Ok(secs);
    }
    let now = chrono::Utc::now().timestamp();
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid filter 'until={v}'")))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(ApiError::bad_request(format!("invalid filter 'until={v}'"))),
    };
    Ok(now - secs)
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

/// POST /images/create: `fromSrc=-` imports the body (pulls come with the registry work).
pub async fn create(
    State(state): State<AppState>,
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
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "pulling images is not supported by this version of berthd yet; use docker load or docker import",
            ))
        }
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
    for n in &names {
        let n = n.clone();
        blocking(&state, move |e| e.images().resolve(&n).map(drop)).await?;
    }
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

/// GET /system/df
pub async fn disk_usage(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (images, layers) = blocking(&state, |e| {
        Ok((e.images().list()?, e.images().layers_size()?))
    })
    .await?;
    let list: Vec<Value> = images
        .iter()
        .map(|i| {
            let mut s = summary(i, true);
            s["Containers"] = json!(0);
            s["SharedSize"] = json!(0);
            s
        })
        .collect();
    Ok(Json(json!({
        "LayersSize": layers,
        "Images": list,
        "Containers": [],
        "Volumes": [],
        "BuildCache": [],
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_docker_reference_filters() {
        assert!(glob_match("busy*", "busybox:latest"));
        assert!(glob_match("*:v?", "app:v1"));
        assert!(!glob_match("busy*", "alpine:latest"));
    }
}
