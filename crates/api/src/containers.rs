//! `/containers/...`: create, lifecycle, wait, attach (HTTP upgrade), logs,
//! inspect and list, in dockerd's JSON shapes and stream framing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_content::Digest;
use berth_engine::containers::{Attached, Details, Status, Watch};
use berth_shim::AttachOptions;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::ApiError;
use crate::images::blocking;
use crate::query::QueryParams;
use crate::stream::BodyWriter;
use crate::AppState;

pub(crate) const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
pub(crate) const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

pub async fn create(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let name = q.get("name").map(str::to_owned);
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let created = blocking(&state, move |engine| {
        engine.containers().create(name.as_deref(), body)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": created.id, "Warnings": created.warnings})),
    )
        .into_response())
}

pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let started = blocking(&state, move |engine| engine.containers().start(&id)).await?;
    Ok(if started {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

fn timeout_param(q: &QueryParams) -> Result<Option<i64>, ApiError> {
    q.get("t")
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for t: {t:?}")))
        })
        .transpose()
}

pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let timeout = timeout_param(&q)?;
    let signal = q.get("signal").filter(|s| !s.is_empty()).map(str::to_owned);
    let stopped = blocking(&state, move |engine| {
        engine.containers().stop(&id, timeout, signal.as_deref())
    })
    .await?;
    Ok(if stopped {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

pub async fn restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let timeout = timeout_param(&q)?;
    let signal = q.get("signal").filter(|s| !s.is_empty()).map(str::to_owned);
    blocking(&state, move |engine| {
        engine.containers().restart(&id, timeout, signal.as_deref())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn kill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let signal = q.get("signal").map(str::to_owned);
    blocking(&state, move |engine| {
        engine.containers().kill(&id, signal.as_deref())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(&state, move |engine| engine.containers().pause(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unpause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(&state, move |engine| engine.containers().unpause(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let name = q.get("name").unwrap_or("").to_string();
    blocking(&state, move |engine| engine.containers().rename(&id, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    remove_named(state, id, raw).await
}

/// `DELETE /containers/json` and `/containers/create`: containers with those
/// names, whose paths the list and create routes take.
pub async fn remove_json(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    remove_named(state, "json".to_string(), raw).await
}

pub async fn remove_create(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    remove_named(state, "create".to_string(), raw).await
}

async fn remove_named(
    state: AppState,
    id: String,
    raw: Option<String>,
) -> Result<StatusCode, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let force = q.flag("force");
    blocking(&state, move |engine| engine.containers().remove(&id, force)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn resize(
    State(state): State<AppState>,
    Path(id): Path<String>,
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
    blocking(&state, move |engine| engine.containers().resize(&id, w, h)).await?;
    Ok(StatusCode::OK)
}

// ------------------------------------------------------------------ wait

/// `POST /containers/{id}/wait`: the headers go out at once (the docker CLI
/// waits for them before it starts the container); the body when the
/// condition is met.
pub async fn wait(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let condition = q.get("condition").unwrap_or("not-running").to_string();
    if !matches!(
        condition.as_str(),
        "" | "not-running" | "next-exit" | "removed"
    ) {
        return Err(ApiError::bad_request(format!(
            "invalid condition: \"{condition}\""
        )));
    }
    let mut rx = blocking(&state, move |engine| engine.containers().watch(&id)).await?;
    let start = rx.borrow_and_update().clone();
    let body = async move {
        let done = |w: &Watch| match condition.as_str() {
            "next-exit" => w.exits != start.exits || w.removed,
            "removed" => w.removed,
            _ => !w.status.is_live() && w.status != Status::Restarting || w.removed,
        };
        let mut last = start.clone();
        while !done(&last) {
            if rx.changed().await.is_err() {
                // The container is gone: removed.
                last.removed = true;
                break;
            }
            last = rx.borrow_and_update().clone();
        }
        // As dockerd: a removed container's wait names no error (the docker
        // CLI would print it a second time after a failed `run --rm`).
        let error = if last.error.is_empty() || last.removed {
            Value::Null
        } else {
            json!({"Message": last.error})
        };
        let mut out = json!({"StatusCode": last.exit_code, "Error": error}).to_string();
        out.push('\n');
        Ok::<_, std::io::Error>(axum::body::Bytes::from(out))
    };
    let stream = futures_util::stream::once(body);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

// ------------------------------------------------------------------ attach

/// Docker's default detach sequence, ctrl-p ctrl-q.
pub(crate) const DEFAULT_DETACH_KEYS: [u8; 2] = [16, 17];

/// `--detach-keys`: `ctrl-<x>` and single characters, comma-separated.
pub(crate) fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    for key in spec.split(',') {
        let bad = || ApiError::bad_request(format!("Invalid detach keys ({spec}) provided"));
        if let Some(c) = key.strip_prefix("ctrl-") {
            let c = c.as_bytes();
            if c.len() != 1 {
                return Err(bad());
            }
            let code = match c[0] {
                b'a'..=b'z' => c[0] - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(bad()),
            };
            out.push(code);
        } else if key.len() == 1 {
            out.push(key.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

pub async fn attach(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    mut request: Request,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let options = AttachOptions {
        exec: None,
        stdin: q.flag("stdin"),
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
    };
    let detach_keys = match q.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(k) => parse_detach_keys(k)?,
        None => DEFAULT_DETACH_KEYS.to_vec(),
    };
    let want_stdin = options.stdin;
    let container = id.clone();
    let engine = state.engine.clone();
    let (attached, tty) = blocking(&state, move |engine| {
        engine.containers().attach(&id, options)
    })
    .await?;
    if !wants_upgrade(request.headers()) {
        let shim = async move {
            match attached {
                Attached::Now(s) => Some(s),
                Attached::OnStart(rx) => rx.await.ok().and_then(Result::ok),
            }
        };
        return output_response(shim, tty, None);
    }
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let client = match upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!("attach: upgrade failed: {e}");
                return;
            }
        };
        let shim = match attached {
            Attached::Now(s) => Ok(s),
            Attached::OnStart(rx) => match rx.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the container was removed".to_string()),
            },
        };
        match shim {
            Ok(shim) => {
                if pump(client, shim, tty, want_stdin, detach_keys, None).await {
                    let engine = engine.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        engine.containers().detached(&container)
                    })
                    .await;
                }
            }
            Err(e) => tracing::debug!("attach: {e}"),
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

/// Whether the client asked to hijack the connection (`Upgrade: tcp`), as
/// the docker CLI and docker-py do; curl and other plain clients don't.
pub(crate) fn wants_upgrade(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
}

/// Without an upgrade dockerd still answers 200 and streams the output as
/// the body (framed without a tty); stdin is not read.
pub(crate) fn output_response<F>(
    shim: F,
    tty: bool,
    exit: Option<tokio::sync::watch::Receiver<Option<i64>>>,
) -> Result<Response, ApiError>
where
    F: std::future::Future<Output = Option<std::os::unix::net::UnixStream>> + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (reader, mut writer) = tokio::io::split(theirs);
    tokio::spawn(async move {
        // No input: the pump sees end-of-stdin at once.
        let _ = writer.shutdown().await;
        if let Some(shim) = shim.await {
            pump(ours, shim, tty, false, Vec::new(), exit).await;
        }
    });
    let chunks = futures_util::stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; 32 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), reader))
            }
        }
    });
    let content_type = if tty { RAW_STREAM } else { MULTIPLEXED_STREAM };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(chunks))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Copies between the hijacked client connection and the shim: framed
/// output to the client (frames stripped for a tty), client bytes to the
/// container's stdin until the detach sequence.
pub(crate) async fn pump<C>(
    client: C,
    shim: std::os::unix::net::UnixStream,
    tty: bool,
    stdin: bool,
    detach_keys: Vec<u8>,
    exit: Option<tokio::sync::watch::Receiver<Option<i64>>>,
) -> bool
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if shim.set_nonblocking(true).is_err() {
        return false;
    }
    let Ok(shim) = tokio::net::UnixStream::from_std(shim) else {
        return false;
    };
    let (mut shim_r, mut shim_w) = shim.into_split();
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let detached = Arc::new(AtomicBool::new(false));
    let input = {
        let detached = detached.clone();
        async move {
            if !stdin {
                // Keep reading so a closed client is noticed; discard input.
                let mut buf = [0u8; 1024];
                while matches!(client_r.read(&mut buf).await, Ok(n) if n > 0) {}
                return;
            }
            let mut buf = vec![0u8; 32 * 1024];
            let mut matched = 0usize;
            loop {
                let n = match client_r.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        // With a tty the docker CLI watches for the detach
                        // keys itself and just hangs up: that is a detach.
                        if tty {
                            detached.store(true, Ordering::SeqCst);
                            return;
                        }
                        break;
                    }
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if !detach_keys.is_empty() && b == detach_keys[matched] {
                        matched += 1;
                        if matched == detach_keys.len() {
                            detached.store(true, Ordering::SeqCst);
                            return;
                        }
                        continue;
                    }
                    // A partial match that failed is passed through.
                    out.extend_from_slice(&detach_keys[..matched]);
                    matched = 0;
                    out.push(b);
                }
                if !out.is_empty() && shim_w.write_all(&out).await.is_err() {
                    break;
                }
            }
            let _ = shim_w.shutdown().await;
        }
    };
    let output = async move {
        let mut header = [0u8; 8];
        let mut payload = vec![0u8; 32 * 1024];
        loop {
            if shim_r.read_exact(&mut header).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if payload.len() < len {
                payload.resize(len, 0);
            }
            if shim_r.read_exact(&mut payload[..len]).await.is_err() {
                break;
            }
            if !tty && client_w.write_all(&header).await.is_err() {
                break;
            }
            if client_w.write_all(&payload[..len]).await.is_err() {
                break;
            }
            let _ = client_w.flush().await;
        }
        // An exec's client asks for the exit code as soon as the stream
        // ends: record it first.
        if let Some(mut exit) = exit {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), exit.wait_for(|code| code.is_some()))
                    .await;
        }
        let _ = client_w.shutdown().await;
    };
    let input = tokio::spawn(input);
    let output = tokio::spawn(output);
    tokio::select! {
        _ = output => {}
        _ = async {
            let _ = input.await;
            // Only a detach ends the session from the client's side; stdin
            // EOF leaves the output running until the container exits.
            if !detached.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        } => {}
    }
    detached.load(Ordering::SeqCst)
}

// ------------------------------------------------------------------ logs

fn parse_time_param(q: &QueryParams, key: &str) -> Result<Option<SystemTime>, ApiError> {
    let Some(v) = q.get(key).filter(|v| !v.is_empty() && *v != "0") else {
        return Ok(None);
    };
    // Seconds with an optional fraction, as the docker CLI sends them.
    let (secs, frac) = v.split_once('.').unwrap_or((v, "0"));
    let bad = || ApiError::bad_request(format!("invalid value for {key}: {v:?}"));
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let mut frac = frac.to_string();
    frac.truncate(9);
    while frac.len() < 9 {
        frac.push('0');
    }
    let nanos: u32 = frac.parse().map_err(|_| bad())?;
    Ok(Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)))
}

pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let stdout = q.flag("stdout");
    let stderr = q.flag("stderr");
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match q.get("tail").unwrap_or("all") {
        "all" | "" => None,
        n => Some(
            n.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for tail: {n:?}")))?,
        )
        .filter(|n| *n >= 0)
        .map(|n| n as usize),
    };
    let options = berth_logs::ReadOptions {
        stdout,
        stderr,
        tail,
        since: parse_time_param(&q, "since")?,
        until: parse_time_param(&q, "until")?,
        follow: q.flag("follow"),
    };
    let timestamps = q.flag("timestamps");
    let details = q.flag("details");
    let source = blocking(&state, move |engine| engine.containers().log_source(&id)).await?;
    if matches!(
        source.config.driver.as_str(),
        "none" | "syslog" | "journald"
    ) {
        return Err(ApiError::bad_request(
            "configured logging driver does not support reading",
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    if options.follow {
        let stop = stop.clone();
        let mut watch = source.watch.clone();
        tokio::spawn(async move {
            loop {
                let live = {
                    let w = watch.borrow_and_update();
                    (w.status.is_live() || w.status == Status::Restarting) && !w.removed
                };
                if !live {
                    break;
                }
                if watch.changed().await.is_err() {
                    break;
                }
            }
            // Let the reader catch up with the last lines the shim wrote.
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.store(true, Ordering::SeqCst);
        });
    }
    let tty = source.tty;
    let (mut writer, body) = BodyWriter::new();
    let reader_stop = stop.clone();
    tokio::task::spawn_blocking(move || {
        let mut frame = Vec::with_capacity(1024);
        let result = berth_logs::read_logs(
            &source.config,
            &source.context,
            &options,
            &reader_stop,
            &mut |m| {
                frame.clear();
                let mut payload = Vec::with_capacity(m.line.len() + 40);
                if timestamps {
                    let t: chrono::DateTime<chrono::Utc> = m.time.into();
                    payload.extend_from_slice(
                        t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                            .as_bytes(),
                    );
                    payload.push(b' ');
                }
                if details {
                    let attrs: Vec<String> =
                        m.attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    payload.extend_from_slice(attrs.join(",").as_bytes());
                    payload.push(b' ');
                }
                payload.extend_from_slice(&m.line);
                if !tty {
                    let kind = match m.stream {
                        berth_logs::Stream::Stdout => 1u8,
                        berth_logs::Stream::Stderr => 2u8,
                    };
                    frame.extend_from_slice(&[kind, 0, 0, 0]);
                    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                }
                frame.extend_from_slice(&payload);
                std::io::Write::write_all(&mut writer, &frame).is_ok()
            },
        );
        if let Err(e) = result {
            writer.fail(e.to_string());
        }
    });
    let content_type = if tty { RAW_STREAM } else { MULTIPLEXED_STREAM };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

// ------------------------------------------------------------------ inspect, list

/// The size of a container's image, its part of `SizeRootFs` (0 when the
/// image is gone).
fn image_size(engine: &berth_engine::Engine, id: &Digest) -> u64 {
    engine
        .images()
        .inspect(id.as_ref())
        .map_or(0, |i| i.image.size)
}

pub async fn inspect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let with_size = q.flag("size");
    let (details, size) = blocking(&state, move |engine| {
        let d = engine.containers().details(&id)?;
        let size = if with_size {
            engine
                .containers()
                .size_rw(&d.id)
                .ok()
                .map(|rw| (rw, rw + image_size(engine, &d.image_id)))
        } else {
            None
        };
        Ok((d, size))
    })
    .await?;
    let mut out = inspect_json(&details);
    if let Some((rw, root_fs)) = size {
        out["SizeRw"] = json!(rw);
        out["SizeRootFs"] = json!(root_fs);
    }
    Ok(Json(out))
}

fn state_json(d: &Details) -> Value {
    let s = &d.state;
    let mut state = json!({
        "Status": s.status.as_str(),
        "Running": s.status.is_live(),
        "Paused": s.status == Status::Paused,
        "Restarting": s.status == Status::Restarting,
        "OOMKilled": s.oom_killed,
        "Dead": s.status == Status::Dead,
        "Pid": s.pid,
        "ExitCode": s.exit_code,
        "Error": s.error,
        "StartedAt": s.started_at,
        "FinishedAt": s.finished_at,
    });
    if let Some(health) = &s.health {
        state["Health"] = serde_json::to_value(health).unwrap_or(Value::Null);
    }
    state
}

/// `(healthy)`, `(health: starting)`, `(unhealthy)` after `Up …`.
fn health_suffix(d: &Details) -> String {
    match d.state.health.as_ref().map(|h| h.status.as_str()) {
        Some("starting") => " (health: starting)".to_string(),
        Some(status) => format!(" ({status})"),
        None => String::new(),
    }
}

fn host_config_json(d: &Details) -> Value {
    let mut hc = serde_json::to_value(&d.record.host_config).unwrap_or_else(|_| json!({}));
    hc["RestartPolicy"] = json!({
        "Name": if d.record.restart.name.is_empty() { "no" } else { d.record.restart.name.as_str() },
        "MaximumRetryCount": d.record.restart.maximum_retry_count,
    });
    hc["LogConfig"] = json!({"Type": d.record.log.driver, "Config": d.record.log.opts});
    hc["Runtime"] = json!(d.record.runtime);
    if let Ok(host) = berth_engine::spec::HostFacts::current() {
        let (masked, readonly) =
            berth_engine::spec::inspected_system_paths(&d.record.host_config, host);
        hc["MaskedPaths"] = json!(masked);
        hc["ReadonlyPaths"] = json!(readonly);
    }
    if hc
        .get("NetworkMode")
        .and_then(Value::as_str)
        .is_none_or(|m| m.is_empty() || m == "default")
    {
        hc["NetworkMode"] = json!("none");
    }
    hc
}

pub(crate) fn network_mode(d: &Details) -> String {
    match d.record.host_config.network_mode.as_deref() {
        None | Some("") | Some("default") => "none".to_string(),
        Some(m) => m.to_string(),
    }
}

fn inspect_json(d: &Details) -> Value {
    let mut config = serde_json::to_value(&d.record.config).unwrap_or_else(|_| json!({}));
    if config
        .get("Hostname")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        config["Hostname"] = json!(d.id[..12]);
    }
    let mode = network_mode(d);
    let network_id = crate::networks::network_of(d)
        .map(crate::networks::network_id)
        .unwrap_or_default();
    json!({
        "Id": d.id,
        "Created": d.record.created,
        "Path": d.record.path,
        "Args": d.record.args,
        "State": state_json(d),
        "Image": d.image_id.to_string(),
        "ResolvConfPath": d.paths.resolv_conf,
        "HostnamePath": d.paths.hostname,
        "HostsPath": d.paths.hosts,
        "LogPath": if d.record.log.driver == "json-file" { d.paths.log.display().to_string() } else { String::new() },
        "Name": format!("/{}", d.name),
        "RestartCount": d.record.restart_count,
        "Driver": d.record.driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": Value::Null,
        "HostConfig": host_config_json(d),
        "GraphDriver": {"Name": d.record.driver, "Data": Value::Null},
        "Mounts": mounts_json(d),
        "Config": config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": "",
            "Ports": {},
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": Value::Null,
            "SecondaryIPv6Addresses": Value::Null,
            "EndpointID": "",
            "Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": "",
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "MacAddress": "",
            "Networks": { mode: endpoint_json(&network_id) }
        }
    })
}

/// A container's endpoint on a predefined network, as inspect and list
/// show it.
fn endpoint_json(network_id: &str) -> Value {
    json!({
        "IPAMConfig": Value::Null, "Links": Value::Null, "Aliases": Value::Null,
        "MacAddress": "", "DriverOpts": Value::Null, "NetworkID": network_id, "EndpointID": "",
        "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": Value::Null
    })
}

/// go-units' HumanDuration, which `docker ps` shows.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 1 {
        return "Less than a second".to_string();
    }
    if secs == 1 {
        return "1 second".to_string();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = secs / 60;
    if mins == 1 {
        return "About a minute".to_string();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

fn since(rfc3339: &str) -> Duration {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .and_then(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .unwrap_or_default()
}

/// `docker ps`'s STATUS column.
fn status_text(d: &Details) -> String {
    let s = &d.state;
    match s.status {
        Status::Running => format!(
            "Up {}{}",
            human_duration(since(&s.started_at)),
            health_suffix(d)
        ),
        Status::Paused => format!("Up {} (Paused)", human_duration(since(&s.started_at))),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            human_duration(since(&s.finished_at))
        ),
        Status::Removing => "Removal In Progress".to_string(),
        Status::Dead => "Dead".to_string(),
        Status::Created => "Created".to_string(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            human_duration(since(&s.finished_at))
        ),
    }
}

pub(crate) fn summary_json(d: &Details) -> Value {
    // The predefined network it is on (`docker ps --format {{.Networks}}`).
    let mut networks = serde_json::Map::new();
    if let Some(name) = crate::networks::network_of(d) {
        networks.insert(
            name.to_string(),
            endpoint_json(&crate::networks::network_id(name)),
        );
    }
    // dockerd quotes arguments with spaces in single quotes.
    let mut command = vec![d.record.path.clone()];
    command.extend(d.record.args.iter().map(|a| {
        if a.contains(' ') {
            format!("'{a}'")
        } else {
            a.clone()
        }
    }));
    json!({
        "Id": d.id,
        "Names": [format!("/{}", d.name)],
        "Image": d.record.image_name,
        "ImageID": d.image_id.to_string(),
        "Command": command.join(" "),
        "Created": d.created_nanos / 1_000_000_000,
        "Ports": [],
        "Labels": d.record.config.labels.clone().unwrap_or_default(),
        "State": d.state.status.as_str(),
        "Status": status_text(d),
        "HostConfig": {"NetworkMode": network_mode(d)},
        "NetworkSettings": {"Networks": networks},
        "Mounts": mounts_json(d),
    })
}

/// `Mounts` of inspect and list, in dockerd's shape.
fn mounts_json(d: &Details) -> Value {
    let mounts: Vec<Value> = berth_engine::spec::mount_points(&d.record.host_config)
        .into_iter()
        .map(|m| {
            json!({
                "Type": m.typ,
                "Source": m.source,
                "Destination": m.destination,
                "Mode": m.mode,
                "RW": m.rw,
                "Propagation": m.propagation,
            })
        })
        .collect();
    Value::Array(mounts)
}

/// `port/proto` with the protocol dockerd assumes (tcp) when none is given.
fn normalize_port(port: &str) -> String {
    match port.split_once('/') {
        Some((number, proto)) => format!("{number}/{}", proto.to_ascii_lowercase()),
        None => format!("{port}/tcp"),
    }
}

/// The ports an `expose` or `publish` filter names (`80`, `80/udp`,
/// `8000-8080/tcp`), as `port/proto`; dockerd's messages for bad ones.
fn port_filter(key: &str, values: &[String]) -> Result<BTreeSet<String>, ApiError> {
    let mut ports = BTreeSet::new();
    for value in values {
        if value.contains(':') {
            return Err(ApiError::bad_request(format!(
                "filter for '{key}' should not contain ':': {value}"
            )));
        }
        let bad = || {
            ApiError::bad_request(format!(
                "error while looking up for {key} {value}: invalid port range"
            ))
        };
        let (range, proto) = value.split_once('/').unwrap_or((value.as_str(), "tcp"));
        let parse = |s: &str| s.trim().parse::<u16>().map_err(|_| bad());
        let (start, end) = match range.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(range)?, parse(range)?),
        };
        if start > end || proto.is_empty() {
            return Err(bad());
        }
        let proto = proto.to_ascii_lowercase();
        ports.extend((start..=end).map(|p| format!("{p}/{proto}")));
    }
    Ok(ports)
}

/// `docker ps` filters.
fn matches_filters(
    d: &Details,
    filters: &BTreeMap<String, Vec<String>>,
    all: &[Details],
    ancestors: &[Digest],
) -> Result<bool, ApiError> {
    for (key, values) in filters {
        let ok = match key.as_str() {
            "id" => values.iter().any(|v| d.id.starts_with(v.as_str())),
            // As dockerd: the value equals or is a regular expression
            // matching the name, with or without its leading slash.
            "name" => {
                let slashed = format!("/{}", d.name);
                values.iter().any(|v| {
                    *v == d.name
                        || *v == slashed
                        || regex::Regex::new(v)
                            .is_ok_and(|re| re.is_match(&d.name) || re.is_match(&slashed))
                })
            }
            "status" => {
                for v in values {
                    if !matches!(
                        v.as_str(),
                        "created"
                            | "restarting"
                            | "running"
                            | "removing"
                            | "paused"
                            | "exited"
                            | "dead"
                    ) {
                        return Err(ApiError::bad_request(format!(
                            "invalid filter 'status={v}'"
                        )));
                    }
                }
                values.iter().any(|v| v == d.state.status.as_str())
            }
            "exited" => values.iter().any(|v| {
                d.state.status == Status::Exited && v.parse::<i64>().ok() == Some(d.state.exit_code)
            }),
            "label" => {
                let labels = d.record.config.labels.clone().unwrap_or_default();
                values.iter().all(|v| match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                    None => labels.contains_key(v.as_str()),
                })
            }
            "ancestor" => {
                ancestors.contains(&d.image_id)
                    || values.iter().any(|v| {
                        d.record.image_name == *v
                            || d.image_id.to_string() == *v
                            || d.image_id
                                .hex()
                                .starts_with(v.trim_start_matches("sha256:"))
                            || d.record.image_name == format!("{v}:latest")
                    })
            }
            "before" | "since" => {
                let Some(other) = values.first().and_then(|v| {
                    all.iter().find(|o| {
                        o.id.starts_with(v.as_str()) || o.name == v.trim_start_matches('/')
                    })
                }) else {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        format!(
                            "No such container: {}",
                            values.first().cloned().unwrap_or_default()
                        ),
                    ));
                };
                if key == "before" {
                    d.created_nanos < other.created_nanos
                } else {
                    d.created_nanos > other.created_nanos
                }
            }
            "network" => values.iter().any(|v| *v == network_mode(d)),
            "health" => {
                let status = d
                    .state
                    .health
                    .as_ref()
                    .map_or("none", |h| h.status.as_str());
                values.iter().any(|v| v == status)
            }
            // A mount's source or destination, as dockerd matches them.
            "volume" => {
                let mounts = berth_engine::spec::mount_points(&d.record.host_config);
                values
                    .iter()
                    .any(|v| mounts.iter().any(|m| m.source == *v || m.destination == *v))
            }
            // As dockerd: a port or range (`80`, `8000-8080/udp`) among the
            // exposed ports, or among the port bindings asked for.
            "expose" => {
                let wanted = port_filter(key, values)?;
                let exposed = d.record.config.exposed_ports.clone().unwrap_or_default();
                exposed.iter().any(|p| wanted.contains(&normalize_port(p)))
            }
            "publish" => {
                let wanted = port_filter(key, values)?;
                let bindings = d
                    .record
                    .host_config
                    .port_bindings
                    .clone()
                    .unwrap_or_default();
                bindings.keys().any(|p| wanted.contains(&normalize_port(p)))
            }
            "isolation" => values.iter().any(|v| v == "default"),
            // Swarm tasks: there are none.
            "is-task" => {
                let mut wanted = Vec::new();
                for v in values {
                    match v.as_str() {
                        "true" | "1" => wanted.push(true),
                        "false" | "0" => wanted.push(false),
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "invalid filter 'is-task={v}'"
                            )))
                        }
                    }
                }
                wanted.contains(&false)
            }
            other => {
                return Err(ApiError::bad_request(format!("invalid filter '{other}'")));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let all = q.flag("all");
    let with_size = q.flag("size");
    let limit = q
        .get("limit")
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for limit: {l:?}")))
        })
        .transpose()?
        .filter(|l| *l > 0);
    let filters = q.filters()?;
    let ancestor_values = filters.get("ancestor").cloned().unwrap_or_default();
    let listed = blocking(&state, move |engine| {
        let every = engine.containers().list();
        // `ancestor` names an image as docker run does (`busybox:latest`,
        // `docker.io/library/busybox`, an id); one not here matches nothing.
        let ancestors: Vec<Digest> = ancestor_values
            .iter()
            .filter_map(|v| engine.images().resolve(v).ok().map(|(id, _)| id))
            .collect();
        let sizes: Vec<Option<(u64, u64)>> = if with_size {
            let mut images = BTreeMap::new();
            every
                .iter()
                .map(|d| {
                    let image = *images
                        .entry(d.image_id.clone())
                        .or_insert_with(|| image_size(engine, &d.image_id));
                    let rw = engine.containers().size_rw(&d.id).ok()?;
                    Some((rw, rw + image))
                })
                .collect()
        } else {
            vec![None; every.len()]
        };
        Ok((every, sizes, ancestors))
    })
    .await?;
    let (every, sizes, ancestors) = listed;
    let mut out = Vec::new();
    for (d, size) in every.iter().zip(sizes) {
        let shown = all
            || limit.is_some()
            || d.state.status.is_live()
            || filters.contains_key("status")
                && filters.get("status").is_some_and(|v| !v.is_empty());
        if !shown && !filters.contains_key("exited") {
            continue;
        }
        if !matches_filters(d, &filters, &every, &ancestors)? {
            continue;
        }
        let mut s = summary_json(d);
        if let Some((rw, root_fs)) = size {
            s["SizeRw"] = json!(rw);
            s["SizeRootFs"] = json!(root_fs);
        }
        out.push(s);
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    Ok(Json(Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_filters_read_ports_ranges_and_protocols() {
        let ports = |v: &[&str]| {
            port_filter(
                "expose",
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .map(|set| set.into_iter().collect::<Vec<_>>())
            .map_err(|e| e.message)
        };
        assert_eq!(ports(&["80"]), Ok(vec!["80/tcp".to_string()]));
        assert_eq!(
            ports(&["53/UDP", "8000-8001"]),
            Ok(vec!["53/udp".into(), "8000/tcp".into(), "8001/tcp".into()])
        );
        assert_eq!(
            ports(&["127.0.0.1:80"]),
            Err("filter for 'expose' should not contain ':': 127.0.0.1:80".to_string())
        );
        for bad in ["x", "90-80", "70000", "80/"] {
            assert!(ports(&[bad]).is_err(), "{bad}");
        }
        assert_eq!(normalize_port("80"), "80/tcp");
        assert_eq!(normalize_port("53/UDP"), "53/udp");
    }

    #[test]
    fn durations_as_docker_ps_shows_them() {
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::from_secs(1)), "1 second");
        assert_eq!(human_duration(Duration::from_secs(45)), "45 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(3700)), "About an hour");
        assert_eq!(human_duration(Duration::from_secs(5 * 3600)), "5 hours");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
    }

    #[test]
    fn detach_keys_parsed_as_docker_does() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").expect("ok"),
            vec![16, 17]
        );
        assert_eq!(parse_detach_keys("ctrl-a,x").expect("ok"), vec![1, b'x']);
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("abc").is_err());
    }
}
