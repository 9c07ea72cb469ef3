//! The daemon's side of `shim.sock`: one connection per call, so a blocking
//! `wait` or a long attach never holds up `kill`.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::protocol::{read_line_unbuffered, Request, Response, MAX_LINE};
use crate::{AttachOptions, Error, ExecOptions, ExitStatus, Result, ShimState};

/// A connection factory for one shim's socket; each call opens its own
/// connection, so a blocking `wait` does not hold up `kill`.
#[derive(Debug, Clone)]
pub struct ShimClient {
    pub socket: PathBuf,
}

impl ShimClient {
    /// For a running shim (daemon restart): `NotRunning` when its socket is
    /// gone or refuses connections.
    pub fn connect(state_dir: &Path) -> Result<ShimClient> {
        let client = ShimClient {
            socket: crate::socket_path(state_dir),
        };
        client.open()?;
        Ok(client)
    }

    /// Runs the runtime's `start`: the process execs.
    pub fn start(&self) -> Result<ShimState> {
        self.call(&Request::Start)
    }

    pub fn state(&self) -> Result<ShimState> {
        self.call(&Request::State)
    }

    /// Sends a signal to the main process (or all its processes).
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        self.call_unit(&Request::Kill { signal, all })
    }

    pub fn pause(&self) -> Result<()> {
        self.call_unit(&Request::Pause)
    }

    pub fn resume(&self) -> Result<()> {
        self.call_unit(&Request::Resume)
    }

    /// Tty size of the main process or an exec; without a tty nothing
    /// happens, and for an exec not started yet the size waits for its pty.
    pub fn resize(&self, exec: Option<&str>, width: u16, height: u16) -> Result<()> {
        self.call_unit(&Request::Resize {
            exec: exec.map(str::to_string),
            width,
            height,
        })
    }

    /// Blocks until the main process (or an exec) exits. For an exec that
    /// failed to start, or was never started before the container exited,
    /// `Error::Runtime`.
    pub fn wait(&self, exec: Option<&str>) -> Result<ExitStatus> {
        self.call(&Request::Wait {
            exec: exec.map(str::to_string),
        })
    }

    /// Attaches: after the handshake the stream carries, from the shim, frames
    /// of an 8-byte header (byte 0: 1 stdout, 2 stderr; bytes 4..8 big-endian
    /// length — Docker's multiplexing, also with a tty) then the payload; to
    /// the shim, raw stdin bytes, and a write shutdown means the client's
    /// input ended (stdin EOF with `stdin_once`, and always for an exec, but
    /// never with a tty). The shim ends the stream after the last output of
    /// the process; an attach after that gets an empty stream. Output from
    /// before the attach is not replayed.
    pub fn attach(&self, options: &AttachOptions) -> Result<UnixStream> {
        let mut stream = self.open()?;
        stream
            .write_all(&Request::Attach(options.clone()).to_line())
            .map_err(|e| self.lost(e))?;
        let line = read_line_unbuffered(&mut stream)
            .map_err(|e| self.lost(e))?
            .ok_or_else(|| self.gone())?;
        parse_response(&line)?.into_result()?;
        Ok(stream)
    }

    /// Registers an exec without starting it. Output produced before an
    /// attach is lost, so callers attach right after `exec_create`, then
    /// call `exec_start`.
    pub fn exec_create(&self, options: &ExecOptions) -> Result<()> {
        self.call_unit(&Request::ExecCreate(options.clone()))
    }

    /// Starts an exec; returns its host pid once it runs (or with the
    /// runtime's error).
    pub fn exec_start(&self, exec_id: &str) -> Result<i32> {
        self.call(&Request::ExecStart {
            exec_id: exec_id.to_string(),
        })
    }

    /// Host pids of the container's processes (for `top`).
    pub fn pids(&self) -> Result<Vec<i32>> {
        self.call(&Request::Pids)
    }

    /// Runs the runtime's `update` with OCI `LinuxResources` JSON.
    pub fn update(&self, resources: &serde_json::Value) -> Result<()> {
        self.call_unit(&Request::Update {
            resources: resources.clone(),
        })
    }

    /// Kills the container first if it still runs (forced delete in the
    /// runtime), waits until its exit is recorded, then the shim exits.
    pub fn shutdown(&self) -> Result<()> {
        self.call_unit(&Request::Shutdown)
    }

    /// The state dir's last component: the container id in Berth's layout
    /// (`<exec-root>/<id>`).
    fn name(&self) -> String {
        self.socket
            .parent()
            .and_then(Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.socket.display().to_string())
    }

    fn gone(&self) -> Error {
        Error::NotRunning(self.name())
    }

    /// A connection that broke mid-call: the shim died.
    fn lost(&self, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof => self.gone(),
            _ => Error::io(format!("shim {}", self.socket.display()), e),
        }
    }

    fn open(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => self.gone(),
            _ => Error::io(format!("connect to {}", self.socket.display()), e),
        })
    }

    fn call_value(&self, request: &Request) -> Result<serde_json::Value> {
        let mut stream = self.open()?;
        stream
            .write_all(&request.to_line())
            .map_err(|e| self.lost(e))?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_LINE as u64 + 1)
            .read_to_end(&mut answer)
            .map_err(|e| self.lost(e))?;
        if answer.is_empty() {
            return Err(self.gone());
        }
        let line = answer.strip_suffix(b"\n").unwrap_or(&answer);
        parse_response(line)?.into_result()
    }

    fn call<T: DeserializeOwned>(&self, request: &Request) -> Result<T> {
        let value = self.call_value(request)?;
        serde_json::from_value(value)
            .map_err(|e| Error::Protocol(format!("unexpected answer from the shim: {e}")))
    }

    fn call_unit(&self, request: &Request) -> Result<()> {
        self.call_value(request).map(drop)
    }
}

fn parse_response(line: &[u8]) -> Result<Response> {
    serde_json::from_slice(line).map_err(|e| {
        Error::Protocol(format!(
            "unexpected answer from the shim ({e}): {}",
            String::from_utf8_lossy(&line[..line.len().min(200)])
        ))
    })
}
