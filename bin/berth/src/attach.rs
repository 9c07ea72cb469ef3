//! A container's standard streams on a connection the daemon handed over
//! (attach, exec start): output copied as it comes with a tty, or
//! demultiplexed from 8-byte frame headers into stdout and stderr without
//! one; stdin forwarded and half-closed at its end; the local terminal in
//! raw mode and the detach keys. Also what runs beside an attachment: tty
//! resizes, signals forwarded to the container, the wait for its exit.

use std::io::{Read, Write};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{url_encode, Client, Failure, Hijacked};
use crate::terminal::{self, RawMode};

/// Ctrl-P, Ctrl-Q: docker's default detach sequence.
const DEFAULT_DETACH_KEYS: [u8; 2] = [16, 17];

/// Which streams are attached and how.
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// `--detach-keys` as given (`ctrl-p,ctrl-q`), for the local escape.
    pub detach_keys: Option<String>,
}

/// How an attachment ended.
#[derive(Debug, PartialEq)]
pub enum StreamEnd {
    /// The output ended (the process exited) or, with no output attached, stdin did.
    Finished,
    /// The user typed the detach keys; the container keeps running.
    Detached,
}

/// Copies between the hijacked `connection` and the local stdin, stdout and
/// stderr until the output ends or the user detaches (docker's
/// `hijackedIOStreamer`).
pub async fn stream(connection: Hijacked, options: &StreamOptions) -> Result<StreamEnd, Failure> {
    // Restored when this returns, whichever way.
    let _raw_mode = if options.stdin && options.tty {
        RawMode::enable().map_err(Failure::Message)?
    } else {
        None
    };
    let escape = (options.stdin && options.tty).then(|| {
        let keys = match options.detach_keys.as_deref() {
            Some(keys) if !keys.is_empty() => detach_key_bytes(keys).unwrap_or_else(|e| {
                eprintln!("invalid detach escape keys, using default: {e}");
                DEFAULT_DETACH_KEYS.to_vec()
            }),
            _ => DEFAULT_DETACH_KEYS.to_vec(),
        };
        EscapeProxy::new(keys)
    });
    let mut output = Output::new(options.tty);
    let io = match connection {
        Hijacked::Upgraded(io) => io,
        Hijacked::Body(mut body) => {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Failure::Message(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    output.write(&data)?;
                }
            }
            return Ok(StreamEnd::Finished);
        }
    };
    let (mut reader, writer) = tokio::io::split(io);
    let has_output = options.stdout || options.stderr;
    let output_done = async {
        if !has_output {
            return std::future::pending().await;
        }
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let n = reader
                .read(&mut buffer)
                .await
                .map_err(|e| Failure::Message(e.to_string()))?;
            if n == 0 {
                return Ok(());
            }
            output.write(&buffer[..n])?;
        }
    };
    let input_done = forward_stdin(writer, options.stdin, escape);
    tokio::pin!(output_done, input_done);
    tokio::select! {
        result = &mut output_done => result.map(|()| StreamEnd::Finished),
        end = &mut input_done => match end {
            StreamEnd::Detached => Ok(StreamEnd::Detached),
            StreamEnd::Finished if has_output => output_done.await.map(|()| StreamEnd::Finished),
            StreamEnd::Finished => Ok(StreamEnd::Finished),
        },
    }
}

/// Stdin to the container until its end (then the write side is closed, so
/// the container reads EOF) or the detach keys.
async fn forward_stdin<W: AsyncWrite + Unpin>(
    mut writer: W,
    enabled: bool,
    mut escape: Option<EscapeProxy>,
) -> StreamEnd {
    if enabled {
        let mut chunks = stdin_chunks();
        while let Some(Ok(chunk)) = chunks.recv().await {
            let bytes = match escape.as_mut() {
                Some(proxy) => match proxy.filter(chunk) {
                    Some(bytes) => bytes,
                    None => return StreamEnd::Detached,
                },
                None => chunk,
            };
            if bytes.is_empty() {
                continue;
            }
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
    }
    let _ = writer.shutdown().await;
    StreamEnd::Finished
}

/// Stdin read on a thread of its own (a blocking read has no async form for
/// a terminal or pipe); the thread ends with the process if stdin never does.
fn stdin_chunks() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    if sender.blocking_send(Ok(buffer[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = sender.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    receiver
}

/// The container's output: raw with a tty, else frames of
/// `[stream, 0, 0, 0, size (big endian u32)]` and `size` bytes (docker's `stdcopy`).
pub struct Output {
    tty: bool,
    pending: Vec<u8>,
}

impl Output {
    pub fn new(tty: bool) -> Output {
        Output {
            tty,
            pending: Vec::new(),
        }
    }

    /// Writes `data` as it came off the connection.
    pub fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        if self.tty {
            return write_flushed(&mut std::io::stdout().lock(), data);
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= 8 {
            let size = u32::from_be_bytes([
                self.pending[4],
                self.pending[5],
                self.pending[6],
                self.pending[7],
            ]) as usize;
            if self.pending.len() < 8 + size {
                break;
            }
            let payload = &self.pending[8..8 + size];
            match self.pending[0] {
                0 | 1 => write_flushed(&mut std::io::stdout().lock(), payload)?,
                2 => write_flushed(&mut std::io::stderr().lock(), payload)?,
                3 => {
                    return Err(Failure::Message(format!(
                        "error from daemon in stream: {}",
                        String::from_utf8_lossy(payload)
                    )))
                }
                other => {
                    return Err(Failure::Message(format!(
                        "Unrecognized input header: {other}"
                    )))
                }
            }
            self.pending.drain(..8 + size);
        }
        Ok(())
    }
}

fn write_flushed(out: &mut impl Write, data: &[u8]) -> Result<(), Failure> {
    out.write_all(data)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Message(format!("writing the container's output: {e}")))
}

/// Holds back bytes that may start the detach sequence (moby's
/// `EscapeProxy`: keys count only when typed one per read, as a terminal
/// in raw mode delivers them).
struct EscapeProxy {
    keys: Vec<u8>,
    position: usize,
}

impl EscapeProxy {
    fn new(keys: Vec<u8>) -> EscapeProxy {
        EscapeProxy { keys, position: 0 }
    }

    /// What to forward of `chunk`; `None` when it completes the sequence.
    fn filter(&mut self, chunk: Vec<u8>) -> Option<Vec<u8>> {
        if chunk.len() != 1 || chunk[0] != self.keys[self.position] {
            let mut held = self.keys[..self.position].to_vec();
            self.position = 0;
            held.extend(chunk);
            return Some(held);
        }
        if self.position == self.keys.len() - 1 {
            return None;
        }
        self.position += 1;
        Some(Vec::new())
    }
}

/// `ctrl-p,ctrl-q` (or single characters, `DEL`) as bytes (moby's `term.ToBytes`).
pub fn detach_key_bytes(keys: &str) -> Result<Vec<u8>, String> {
    const CONTROLS: &str = "@abcdefghijklmnopqrstuvwxyz[\\]^_";
    let mut codes = Vec::new();
    for key in keys.split(',') {
        if key.len() == 1 {
            codes.push(key.as_bytes()[0]);
            continue;
        }
        let control = key
            .strip_prefix("ctrl-")
            .filter(|c| c.len() == 1)
            .and_then(|c| CONTROLS.find(c));
        match control {
            Some(code) => codes.push(code as u8),
            None if key == "DEL" => codes.push(127),
            None => return Err(format!("Unknown character: '{key}'")),
        }
    }
    Ok(codes)
}

/// Resizes the tty behind `resize_path` (`/containers/<id>/resize` or
/// `/exec/<id>/resize`) to the local terminal now, retrying while the
/// process starts, and again on every SIGWINCH.
pub fn monitor_tty_size(client: Client, resize_path: String) {
    let winch = signal(SignalKind::window_change()).ok();
    tokio::spawn(async move {
        if resize(&client, &resize_path, 0).await.is_err() {
            let mut resized = false;
            for retry in 1..=10u64 {
                tokio::time::sleep(Duration::from_millis(retry * 10)).await;
                if resize(&client, &resize_path, 0).await.is_ok() {
                    resized = true;
                    break;
                }
            }
            if !resized {
                eprintln!("failed to resize tty, using default size");
            }
        }
        let Some(mut winch) = winch else {
            return;
        };
        while winch.recv().await.is_some() {
            let _ = resize(&client, &resize_path, 0).await;
        }
    });
}

/// One resize to the local terminal's size plus `bump` rows and columns
/// (attach resizes one larger first, so the process sees a change).
pub async fn resize(client: &Client, resize_path: &str, bump: u16) -> Result<(), Failure> {
    let Some((rows, cols)) = terminal::size(std::io::stdout()) else {
        return Ok(());
    };
    let path = format!(
        "{resize_path}?h={}&w={}",
        rows.saturating_add(bump),
        cols.saturating_add(bump)
    );
    client.post_json(&path, None).await.map(drop)
}

/// Signals that reach `berth` go to the container instead (`--sig-proxy`).
pub fn forward_signals(client: &Client, container: &str) {
    let kinds = [
        (SignalKind::hangup(), "HUP"),
        (SignalKind::interrupt(), "INT"),
        (SignalKind::quit(), "QUIT"),
        (SignalKind::user_defined1(), "USR1"),
        (SignalKind::user_defined2(), "USR2"),
        (SignalKind::alarm(), "ALRM"),
        (SignalKind::terminate(), "TERM"),
    ];
    for (kind, name) in kinds {
        let Ok(mut signals) = signal(kind) else {
            continue;
        };
        let client = client.clone();
        let path = format!("/containers/{}/kill?signal={name}", url_encode(container));
        tokio::spawn(async move {
            while signals.recv().await.is_some() {
                let _ = client.post_json(&path, None).await;
            }
        });
    }
}

/// What `POST /containers/<id>/wait` answered.
pub struct WaitResult {
    pub status: i64,
    /// The daemon's `Error.Message`, when it could not wait.
    pub error: Option<String>,
}

/// Registers a wait for `condition` (`next-exit`, `removed`, or the
/// daemon's default `not-running` for `None`) and returns once the daemon
/// has it, so a start that follows cannot be missed; the task yields the
/// answer when the condition is met.
pub async fn wait_registered(
    client: &Client,
    id: &str,
    condition: Option<&str>,
) -> JoinHandle<Result<WaitResult, Failure>> {
    let mut path = format!("/containers/{}/wait", url_encode(id));
    if let Some(condition) = condition {
        path.push_str(&format!("?condition={condition}"));
    }
    match client.stream(Method::POST, &path, None).await {
        Ok(body) => tokio::spawn(read_wait_answer(body)),
        Err(failure) => tokio::spawn(async move { Err(failure) }),
    }
}

async fn read_wait_answer(body: Incoming) -> Result<WaitResult, Failure> {
    let bytes = body
        .collect()
        .await
        .map_err(|e| Failure::Message(e.to_string()))?
        .to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::Message(format!("the daemon sent an invalid wait answer: {e}")))?;
    Ok(WaitResult {
        status: answer
            .get("StatusCode")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
        error: answer
            .pointer("/Error/Message")
            .and_then(serde_json::Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
    })
}

/// The exit status `run` and `start -a` end with: the container's, or 125
/// (said on stderr) when the wait failed.
pub async fn exit_status(wait: JoinHandle<Result<WaitResult, Failure>>) -> i64 {
    match wait.await {
        Ok(Ok(WaitResult {
            error: None,
            status,
        })) => status,
        Ok(Ok(WaitResult {
            error: Some(message),
            ..
        })) => {
            eprintln!("Error waiting for container: {message}");
            125
        }
        Ok(Err(failure)) => {
            eprintln!("error waiting for container: {failure}");
            125
        }
        Err(e) => {
            eprintln!("error waiting for container: {e}");
            125
        }
    }
}

/// `Ok` for status 0, else the status as the exit code (truncated to a
/// byte, as the process exit status is).
pub fn status_result(status: i64) -> Result<(), Failure> {
    if status == 0 {
        return Ok(());
    }
    Err(Failure::Status {
        message: String::new(),
        code: (status & 0xff) as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_like_moby() {
        assert_eq!(detach_key_bytes("ctrl-p,ctrl-q"), Ok(vec![16, 17]));
        assert_eq!(
            detach_key_bytes("ctrl-@,a,DEL,ctrl-_"),
            Ok(vec![0, b'a', 127, 31])
        );
        assert!(detach_key_bytes("ctrl-pp").is_err());
        assert!(detach_key_bytes("").is_err());
    }

    #[test]
    fn escape_proxy_holds_back_a_partial_sequence() {
        let mut proxy = EscapeProxy::new(vec![16, 17]);
        assert_eq!(proxy.filter(b"ab".to_vec()), Some(b"ab".to_vec()));
        assert_eq!(proxy.filter(vec![16]), Some(Vec::new()));
        assert_eq!(proxy.filter(b"x".to_vec()), Some(vec![16, b'x']));
        assert_eq!(proxy.filter(vec![16]), Some(Vec::new()));
        assert_eq!(proxy.filter(vec![17]), None);
    }

    #[test]
    fn statuses_become_exit_codes() {
        assert!(status_result(0).is_ok());
        assert_eq!(status_result(3).err().map(|f| f.exit_code()), Some(3));
        assert_eq!(status_result(-1).err().map(|f| f.exit_code()), Some(255));
    }
}
