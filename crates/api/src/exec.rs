//! `docker exec`: `/containers/{id}/exec` and `/exec/{id}/...`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::containers::{
    output_response, parse_detach_keys, pump, wants_upgrade, DEFAULT_DETACH_KEYS,
    MULTIPLEXED_STREAM, RAW_STREAM,
};
use crate::error::ApiError;
use crate::images::blocking;
use crate::query::QueryParams;
use crate::AppState;

pub async fn create(
    State(state): State<AppState>,
    Path(container): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let id = blocking(&state, move |engine| {
        engine.containers().exec_create(&container, body)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": id }))).into_response())
}

pub async fn start(
    State(state): State<AppState>,
    Path(exec_id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request: {e}")))?;
    let options: Value = if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let detach = options
        .get("Detach")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let id = exec_id.clone();
    let details = blocking(&state, move |engine| engine.containers().exec_inspect(&id)).await?;
    let detach_keys = match details
        .config
        .detach_keys
        .as_deref()
        .filter(|k| !k.is_empty())
    {
        Some(k) => parse_detach_keys(k)?,
        None => DEFAULT_DETACH_KEYS.to_vec(),
    };
    let stdin = details.config.attach_stdin.unwrap_or(false);
    let tty = details.config.tty.unwrap_or(false);
    if detach {
        blocking(&state, move |engine| {
            engine.containers().exec_start(&exec_id, true)
        })
        .await?;
        return Ok(StatusCode::OK.into_response());
    }
    if !wants_upgrade(&parts.headers) {
        let started = blocking(&state, move |engine| {
            engine.containers().exec_start(&exec_id, false)
        })
        .await?;
        return match started.stream {
            Some(stream) => output_response(async move { Some(stream) }, tty, Some(started.exit)),
            None => Ok(StatusCode::OK.into_response()),
        };
    }
    let upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("exec start: the connection can't be upgraded"))?;
    // As dockerd: hijack first, then start; a start error is written into
    // the stream and the exit code (126/127) is left for exec inspect.
    let engine = state.engine.clone();
    tokio::spawn(async move {
        let client = match upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!("exec: upgrade failed: {e}");
                return;
            }
        };
        let started =
            tokio::task::spawn_blocking(move || engine.containers().exec_start(&exec_id, false))
                .await;
        match started {
            Ok(Ok(started)) => {
                if let Some(stream) = started.stream {
                    let _ = pump(client, stream, tty, stdin, detach_keys, Some(started.exit)).await;
                }
            }
            Ok(Err(e)) => {
                let mut client = client;
                let mut message = format!("{e}\r\n").into_bytes();
                if !tty {
                    let mut framed = vec![1u8, 0, 0, 0];
                    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
                    framed.append(&mut message);
                    message = framed;
                }
                let _ = tokio::io::AsyncWriteExt::write_all(&mut client, &message).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut client).await;
            }
            Err(e) => tracing::error!("exec start: {e}"),
        }
    });
    let content_type = if tty { RAW_STREAM } else { MULTIPLEXED_STREAM };
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub async fn inspect(
    State(state): State<AppState>,
    Path(exec_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let d = blocking(&state, move |engine| {
        engine.containers().exec_inspect(&exec_id)
    })
    .await?;
    let c = &d.config;
    Ok(Json(json!({
        "ID": d.id,
        "Running": d.running,
        "ExitCode": d.exit_code,
        "ProcessConfig": {
            "tty": c.tty.unwrap_or(false),
            "entrypoint": c.cmd.as_ref().and_then(|c| c.first()).cloned().unwrap_or_default(),
            "arguments": c.cmd.as_ref().map(|c| c[1..].to_vec()).unwrap_or_default(),
            "privileged": c.privileged.unwrap_or(false),
            "user": c.user.clone().unwrap_or_default(),
        },
        "OpenStdin": c.attach_stdin.unwrap_or(false),
        "OpenStderr": c.attach_stderr.unwrap_or(false),
        "OpenStdout": c.attach_stdout.unwrap_or(false),
        "CanRemove": false,
        "ContainerID": d.container_id,
        "DetachKeys": c.detach_keys.clone().unwrap_or_default(),
        "Pid": d.pid,
    })))
}

pub async fn resize(
    State(state): State<AppState>,
    Path(exec_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let dim = |key: &str| -> Result<u16, ApiError> {
        q.get(key)
            .unwrap_or("0")
            .parse::<u16>()
            .map_err(|_| ApiError::bad_request(format!("invalid value for {key}")))
    };
    let (h, w) = (dim("h")?, dim("w")?);
    blocking(&state, move |engine| {
        engine.containers().exec_resize(&exec_id, w, h)
    })
    .await?;
    Ok(StatusCode::OK)
}
