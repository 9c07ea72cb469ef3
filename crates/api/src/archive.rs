//! `docker cp`, `docker export`, `docker diff` and `docker commit`:
//! `/containers/{id}/archive` (HEAD, GET, PUT), `/containers/{id}/export`,
//! `/containers/{id}/changes` and `/commit`, with dockerd's
//! `X-Docker-Container-Path-Stat` header and JSON shapes.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::containers::archive::{ChangeKind, CommitOptions, CopyToOptions, PathStat};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::images::blocking;
use crate::query::QueryParams;
use crate::stream::{BodyReader, BodyWriter};
use crate::AppState;

const PATH_STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// Go's `os.FileMode` bits, as dockerd encodes a mode.
mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
}

/// A Linux `st_mode` as Go's `os.FileMode`.
fn go_file_mode(st_mode: u32) -> u32 {
    let mut mode = st_mode & 0o777;
    mode |= match st_mode & 0o170000 {
        0o040000 => go_mode::DIR,
        0o120000 => go_mode::SYMLINK,
        0o060000 => go_mode::DEVICE,
        0o020000 => go_mode::DEVICE | go_mode::CHAR_DEVICE,
        0o010000 => go_mode::NAMED_PIPE,
        0o140000 => go_mode::SOCKET,
        _ => 0,
    };
    if st_mode & 0o4000 != 0 {
        mode |= go_mode::SETUID;
    }
    if st_mode & 0o2000 != 0 {
        mode |= go_mode::SETGID;
    }
    if st_mode & 0o1000 != 0 {
        mode |= go_mode::STICKY;
    }
    mode
}

/// A Unix time as Go's `time.Time` marshals it in UTC.
fn go_time(secs: i64, nanos: i64) -> String {
    let t = chrono::DateTime::from_timestamp(secs, nanos.clamp(0, 999_999_999) as u32)
        .unwrap_or_default();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{:09}", nanos);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `types.ContainerPathStat`, fields in dockerd's order.
#[derive(Serialize)]
struct PathStatJson<'a> {
    name: &'a str,
    size: i64,
    mode: u32,
    mtime: String,
    #[serde(rename = "linkTarget")]
    link_target: &'a str,
}

fn path_stat_header(stat: &PathStat) -> Result<HeaderValue, ApiError> {
    let doc = PathStatJson {
        name: &stat.name,
        size: stat.size,
        mode: go_file_mode(stat.mode),
        mtime: go_time(stat.mtime, stat.mtime_nsec),
        link_target: &stat.link_target,
    };
    let json = serde_json::to_vec(&doc)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    HeaderValue::from_str(&base64(&json))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn path_param(q: &QueryParams) -> Result<String, ApiError> {
    match q.get("path") {
        Some(p) if p.contains('\0') => Err(ApiError::bad_request(
            "bad parameter: 'path' contains a NUL byte",
        )),
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(ApiError::bad_request(
            "bad parameter: 'path' cannot be empty",
        )),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// HEAD /containers/{id}/archive?path=
pub async fn head_archive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let path = path_param(&QueryParams::parse(raw.as_deref()))?;
    let stat = blocking(&state, move |e| e.containers().stat_path(&id, &path)).await?;
    Ok((
        [(PATH_STAT_HEADER, path_stat_header(&stat)?)],
        StatusCode::OK,
    )
        .into_response())
}

/// Streams what `produce` writes as a tar body once it calls `ready`;
/// an error before that is the response, one after it cuts the stream.
async fn stream_tar<T: Send + 'static>(
    state: &AppState,
    produce: impl FnOnce(
            &berth_engine::Engine,
            &mut dyn FnMut(T),
            &mut BodyWriter,
        ) -> berth_engine::Result<()>
        + Send
        + 'static,
) -> Result<(T, Body), ApiError> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<T>();
    let (mut writer, body) = BodyWriter::new();
    let engine = state.engine.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut tx = Some(ready_tx);
        let result = produce(
            &engine,
            &mut |v| {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(v);
                }
            },
            &mut writer,
        );
        if let Err(e) = &result {
            if tx.is_none() {
                tracing::error!("archive stream: {e}");
                writer.fail(e.to_string());
            }
        }
        result
    });
    match ready_rx.await {
        Ok(v) => Ok((v, body)),
        Err(_) => match task.await {
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(())) => Err(internal("the archive ended before it started")),
            Err(e) => Err(internal(e)),
        },
    }
}

/// GET /containers/{id}/archive?path=
pub async fn get_archive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let path = path_param(&QueryParams::parse(raw.as_deref()))?;
    let (stat, body) = stream_tar(&state, move |engine, ready, out| {
        engine
            .containers()
            .archive_path(&id, &path, |stat| ready(stat.clone()), out)
    })
    .await?;
    Ok((
        [
            (PATH_STAT_HEADER, path_stat_header(&stat)?),
            (
                header::CONTENT_TYPE.as_str(),
                HeaderValue::from_static("application/x-tar"),
            ),
        ],
        body,
    )
        .into_response())
}

/// PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=
pub async fn put_archive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let path = path_param(&q)?;
    let options = CopyToOptions {
        no_overwrite_dir_non_dir: q.flag("noOverwriteDirNonDir"),
        copy_uid_gid: q.flag("copyUIDGID"),
    };
    let reader = BodyReader::new(body);
    blocking(&state, move |e| {
        e.containers().extract_to_dir(&id, &path, options, reader)
    })
    .await?;
    Ok(StatusCode::OK)
}

/// GET /containers/{id}/export
pub async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ((), body) = stream_tar(&state, move |engine, ready, out| {
        engine.containers().export(&id, || ready(()), out)
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-tar"),
        )],
        body,
    )
        .into_response())
}

/// GET /containers/{id}/changes
pub async fn changes(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let changes = blocking(&state, move |e| e.containers().changes(&id)).await?;
    let list: Vec<ChangeJson<'_>> = changes
        .iter()
        .map(|c| ChangeJson {
            path: &c.path,
            kind: match c.kind {
                ChangeKind::Modified => 0,
                ChangeKind::Added => 1,
                ChangeKind::Deleted => 2,
            },
        })
        .collect();
    Ok(Json(serde_json::to_value(list).map_err(internal)?))
}

/// One `docker diff` line, fields in dockerd's order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeJson<'a> {
    path: &'a str,
    kind: u8,
}

/// POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=
pub async fn commit(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref());
    let container = q.get("container").unwrap_or("").to_string();
    let repo = q.get("repo").unwrap_or("");
    let tag = q.get("tag").unwrap_or("");
    let reference = if repo.is_empty() {
        None
    } else {
        let name = if tag.is_empty() {
            repo.to_string()
        } else {
            format!("{repo}:{tag}")
        };
        let reference = berth_engine::images::parse_reference(&name)?;
        if reference.digest().is_some() {
            return Err(ApiError::bad_request("cannot commit to digest reference"));
        }
        Some(reference)
    };
    let config = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice::<Value>(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?,
        )
    };
    let options = CommitOptions {
        reference,
        comment: q.get("comment").unwrap_or("").to_string(),
        author: q.get("author").unwrap_or("").to_string(),
        // dockerd pauses unless told not to.
        pause: q.get("pause").is_none_or(|_| q.flag("pause")),
        changes: q.all("changes"),
        config,
    };
    let id = blocking(&state, move |e| e.containers().commit(&container, options)).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": id.to_string()}))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_encoded_as_go_does() {
        // What dockerd sent for a 0755 directory, a symlink and a 0644 file.
        assert_eq!(go_file_mode(0o040755), 2147484141);
        assert_eq!(go_file_mode(0o120777), 134218239);
        assert_eq!(go_file_mode(0o100644), 420);
        assert_eq!(go_file_mode(0o020666), (1 << 26) | (1 << 21) | 0o666);
        assert_eq!(go_file_mode(0o041777), (1 << 31) | (1 << 20) | 0o777);
        assert_eq!(go_file_mode(0o104755), (1 << 23) | 0o755);
    }

    #[test]
    fn header_is_dockerds() {
        let stat = PathStat {
            name: "lnk".into(),
            size: 11,
            mode: 0o120777,
            mtime: 1_795_629_710,
            mtime_nsec: 37_211_594,
            link_target: "/etc/passwd".into(),
        };
        // dockerd 20.10's header for the same stat.
        assert_eq!(
            path_stat_header(&stat).expect("header").to_str().expect("ascii"),
            "eyJuYW1lIjoibG5rIiwic2l6ZSI6MTEsIm1vZGUiOjEzNDIxODIzOSwibXRpbWUiOiIyMDI2LTExLTI1VDE4OjAxOjUwLjAzNzIxMTU5NFoiLCJsaW5rVGFyZ2V0IjoiL2V0Yy9wYXNzd2QifQ=="
        );
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(go_time(1, 500_000_000), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
