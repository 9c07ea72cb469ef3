//! `/containers/{id}/stats` (one sample, a sample paired with one taken a
//! second before, or a stream of one per second), `/containers/{id}/top`,
//! `/containers/{id}/update`, `/containers/prune`, and Berth's
//! `GET /containers/stats`: one JSON array with a one-shot sample of every
//! running container (each cgroup and /proc/stat read once, no waiting),
//! so a monitor polls one request instead of one stream per container.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::containers::stats::ContainerStats;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::images::{blocking, parse_until};
use crate::query::QueryParams;
use crate::AppState;

/// How often a stream gets a sample, and how far apart the two samples of
/// `stream=false` are (dockerd's collector interval).
const STATS_INTERVAL: Duration = Duration::from_secs(1);

fn json_line(stats: &ContainerStats) -> Result<Bytes, ApiError> {
    let mut line = serde_json::to_vec(stats)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}

fn json_response(body: Bytes) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `GET /containers/{id}/stats?stream=&one-shot=`.
pub async fn stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let stream = q.get("stream").is_none() || q.flag("stream");
    let one_shot = q.flag("one-shot");
    if stream && one_shot {
        return Err(ApiError::bad_request(
            "cannot have stream=true and one-shot=true",
        ));
    }
    let sample = move |state: AppState| {
        let id = id.clone();
        async move { blocking(&state, move |engine| engine.containers().stats(&id)).await }
    };
    let first = sample(state.clone()).await?;
    if !stream {
        if one_shot || !first.is_sampled() {
            return Ok(json_response(json_line(&first)?));
        }
        tokio::time::sleep(STATS_INTERVAL).await;
        let mut second = sample(state).await?;
        second.follow(&first);
        return Ok(json_response(json_line(&second)?));
    }
    // One object per second until the client goes away or the container
    // is removed; the first has no `precpu_stats`, as with dockerd.
    let mut ticker = tokio::time::interval(STATS_INTERVAL);
    ticker.tick().await;
    let body = futures_util::stream::unfold(
        (Some(first), None::<ContainerStats>, ticker),
        move |(next, previous, mut ticker)| {
            let state = state.clone();
            let sample = sample.clone();
            async move {
                let mut current = match next {
                    Some(s) => s,
                    None => {
                        ticker.tick().await;
                        match sample(state).await {
                            Ok(s) => s,
                            Err(e) => {
                                if e.status != StatusCode::NOT_FOUND {
                                    tracing::warn!("stats stream ended: {}", e.message);
                                }
                                return None;
                            }
                        }
                    }
                };
                if let Some(previous) = &previous {
                    current.follow(previous);
                }
                let line = json_line(&current)
                    .map_err(|e| std::io::Error::other(e.message))
                    .ok()?;
                Some((Ok::<_, std::io::Error>(line), (None, Some(current), ticker)))
            }
        },
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// `GET /containers/stats` (Berth): a JSON array of one-shot samples of
/// every running or paused container, newest first, in the shape of
/// `/containers/{id}/stats?stream=false&one-shot=true`. Served on the
/// `/containers/{id}` path so `DELETE /containers/stats` still removes a
/// container named `stats`.
pub async fn stats_all(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    if path != "stats" {
        return Err(crate::error::not_found().await);
    }
    let all = blocking(&state, |engine| engine.containers().stats_all()).await?;
    let body = serde_json::to_vec(&all)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(json_response(Bytes::from(body)))
}

/// `GET /containers/{id}/top?ps_args=`.
pub async fn top(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let ps_args = q.get("ps_args").unwrap_or("").to_string();
    let top = blocking(&state, move |engine| engine.containers().top(&id, &ps_args)).await?;
    Ok(Json(
        json!({"Titles": top.titles, "Processes": top.processes}),
    ))
}

/// `POST /containers/{id}/update` with Docker's UpdateConfig.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let warnings = blocking(&state, move |engine| engine.containers().update(&id, body)).await?;
    Ok(Json(json!({"Warnings": warnings})))
}

/// `POST /containers/prune?filters=` (`until`, `label`, `label!`). Served on
/// the `/containers/{id}` path for the same reason as [`stats_all`].
pub async fn prune(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    if path != "prune" {
        return Err(crate::error::not_found().await);
    }
    let q = QueryParams::parse(raw.as_deref());
    let filters = q.filters()?;
    let keep = prune_filter(&filters)?;
    let report = blocking(&state, move |engine| engine.containers().prune(keep)).await?;
    Ok(Json(json!({
        "ContainersDeleted": if report.deleted.is_empty() { Value::Null } else { json!(report.deleted) },
        "SpaceReclaimed": report.space_reclaimed,
    })))
}

/// Which containers prune keeps, from dockerd's prune filters.
fn prune_filter(
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<impl Fn(&berth_engine::containers::Details) -> bool + Send + 'static, ApiError> {
    if let Some(key) = filters
        .keys()
        .find(|k| !matches!(k.as_str(), "until" | "label" | "label!"))
    {
        return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
    }
    let until = match filters.get("until").map(Vec::as_slice) {
        None | Some([]) => None,
        Some([v]) => Some(parse_until(v)?),
        Some(_) => {
            return Err(ApiError::bad_request(
                "more than one until filter specified",
            ))
        }
    };
    let labels = filters.get("label").cloned().unwrap_or_default();
    let not_labels = filters.get("label!").cloned().unwrap_or_default();
    Ok(move |d: &berth_engine::containers::Details| {
        let own = d.record.config.labels.clone().unwrap_or_default();
        let matches = |v: &String| match v.split_once('=') {
            Some((k, val)) => own.get(k).is_some_and(|x| x == val),
            None => own.contains_key(v),
        };
        until.is_some_and(|u| d.created_nanos > u.saturating_mul(1_000_000_000))
            || !labels.iter().all(matches)
            || not_labels.iter().any(matches)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_filters_checked_as_dockerd_does() {
        let bad = BTreeMap::from([("dangling".to_string(), vec!["true".to_string()])]);
        let e = prune_filter(&bad).err().expect("refused");
        assert_eq!(e.message, "invalid filter 'dangling'");
        let two = BTreeMap::from([(
            "until".to_string(),
            vec!["1h".to_string(), "2h".to_string()],
        )]);
        let e = prune_filter(&two).err().expect("refused");
        assert_eq!(e.message, "more than one until filter specified");
        let bad_time = BTreeMap::from([("until".to_string(), vec!["soon".to_string()])]);
        assert!(prune_filter(&bad_time).is_err());
    }
}
