//! The wire protocol on `shim.sock`: every connection carries one JSON
//! request line and gets one JSON response line (`{"ok":…}` or
//! `{"error":{"kind":…,"message":…}}`). After a successful `attach` the
//! connection carries Docker's multiplexed frames from the shim and raw stdin
//! bytes to it. A starting shim reports to `spawn` with the same response line.

use std::io::{self, BufRead, Read};

use berth_logs::Stream;

use crate::{AttachOptions, Error, ExecOptions};

/// The longest request or response line accepted (an exec's process JSON
/// and resources are a few KiB).
pub(crate) const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    Start,
    State,
    Kill {
        signal: i32,
        all: bool,
    },
    Pause,
    Resume,
    Resize {
        exec: Option<String>,
        width: u16,
        height: u16,
    },
    Wait {
        exec: Option<String>,
    },
    Attach(AttachOptions),
    ExecCreate(ExecOptions),
    ExecStart {
        exec_id: String,
    },
    Pids,
    Update {
        resources: serde_json::Value,
    },
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Response {
    Ok(serde_json::Value),
    Error(ErrorReply),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    Runtime,
    NotRunning,
    NoSuchExec,
    Invalid,
    Log,
    Io,
}

impl Response {
    pub(crate) fn from_result(result: crate::Result<serde_json::Value>) -> Response {
        match result {
            Ok(value) => Response::Ok(value),
            Err(e) => Response::Error(ErrorReply::from(&e)),
        }
    }

    /// The line sent on the wire, newline included.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        to_line(self)
    }

    pub(crate) fn into_result(self) -> crate::Result<serde_json::Value> {
        match self {
            Response::Ok(value) => Ok(value),
            Response::Error(reply) => Err(reply.into_error()),
        }
    }
}

impl Request {
    pub(crate) fn to_line(&self) -> Vec<u8> {
        to_line(self)
    }
}

fn to_line(value: &impl serde::Serialize) -> Vec<u8> {
    // Serializing these plain data types cannot fail (string keys only).
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}

impl From<&Error> for ErrorReply {
    fn from(e: &Error) -> ErrorReply {
        let (kind, message) = match e {
            Error::Runtime(m) => (ErrorKind::Runtime, m.clone()),
            Error::NotRunning(m) => (ErrorKind::NotRunning, m.clone()),
            Error::NoSuchExec(m) => (ErrorKind::NoSuchExec, m.clone()),
            Error::Protocol(m) => (ErrorKind::Invalid, m.clone()),
            Error::Log(m) => (ErrorKind::Log, m.clone()),
            Error::Io { .. } => (ErrorKind::Io, e.to_string()),
        };
        ErrorReply { kind, message }
    }
}

impl ErrorReply {
    pub(crate) fn into_error(self) -> Error {
        match self.kind {
            ErrorKind::Runtime => Error::Runtime(self.message),
            ErrorKind::NotRunning => Error::NotRunning(self.message),
            ErrorKind::NoSuchExec => Error::NoSuchExec(self.message),
            ErrorKind::Invalid => Error::Protocol(self.message),
            ErrorKind::Log => Error::Log(self.message),
            ErrorKind::Io => Error::io("shim", io::Error::other(self.message)),
        }
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes, without its newline.
/// `Ok(None)` at end of stream before any byte.
pub(crate) fn read_line(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_LINE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("line longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(Some(line))
}

/// Reads a line byte by byte, so nothing after the newline is consumed (the
/// client hands the raw stream on after an attach answer).
pub(crate) fn read_line_unbuffered(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a line",
                ))
            }
            Ok(_) if byte[0] == b'\n' => return Ok(Some(line)),
            Ok(_) if line.len() >= MAX_LINE => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("line longer than {MAX_LINE} bytes"),
                ))
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Docker's stream byte for a stream (0 is stdin, which the shim never sends).
fn stream_byte(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    }
}

/// One frame: 8-byte header (stream, three zero bytes, big-endian length),
/// then the payload. Payloads are at most one read of the container's output.
pub(crate) fn frame(stream: Stream, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.push(stream_byte(stream));
    frame.extend_from_slice(&[0, 0, 0]);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload[..len as usize]);
    frame
}

/// Reads one frame of an attach stream: the stream it belongs to and its
/// payload; `Ok(None)` at the end of the stream.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<(Stream, Vec<u8>)>> {
    let mut header = [0u8; 8];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "attach stream ended inside a frame header",
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let stream = match header[0] {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("attach frame for stream {other}: expected 1 (stdout) or 2 (stderr)"),
            ))
        }
    };
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload)?;
    Ok(Some((stream, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_line() {
        let requests = [
            Request::Start,
            Request::Kill {
                signal: 9,
                all: true,
            },
            Request::Resize {
                exec: Some("e1".into()),
                width: 80,
                height: 24,
            },
            Request::Attach(AttachOptions {
                exec: None,
                stdin: true,
                stdout: true,
                stderr: false,
            }),
            Request::ExecCreate(ExecOptions {
                exec_id: "e1".into(),
                process: serde_json::json!({"args": ["sh"], "cwd": "/"}),
                tty: false,
                stdin: true,
            }),
            Request::Update {
                resources: serde_json::json!({"memory": {"limit": 1}}),
            },
        ];
        for request in requests {
            let line = request.to_line();
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(line.last(), Some(&b'\n'));
            let parsed: Request =
                serde_json::from_slice(&line[..line.len() - 1]).expect("parse request");
            assert_eq!(parsed, request);
        }
        assert_eq!(
            String::from_utf8(Request::Start.to_line()).expect("utf-8"),
            "{\"op\":\"start\"}\n"
        );
    }

    #[test]
    fn garbage_requests_are_errors() {
        for text in [
            "",
            "null",
            "{}",
            "{\"op\":\"fly\"}",
            "{\"op\":\"kill\",\"signal\":\"x\",\"all\":false}",
            "{\"op\":\"resize\",\"exec\":null,\"width\":70000,\"height\":1}",
            "\u{0}\u{1}",
        ] {
            assert!(
                serde_json::from_str::<Request>(text).is_err(),
                "{text:?} parsed"
            );
        }
    }

    #[test]
    fn errors_survive_the_wire() {
        let errors = [
            Error::Runtime("exec: \"nope\": executable file not found in $PATH".into()),
            Error::NoSuchExec("e9".into()),
            Error::Protocol("bad".into()),
            Error::Log("disk full".into()),
            Error::NotRunning("c1".into()),
        ];
        for error in errors {
            let line = Response::from_result(Err(error)).to_line();
            let back: Response = serde_json::from_slice(&line).expect("parse response");
            let again = back.clone().into_result().expect_err("an error");
            let reply = ErrorReply::from(&again);
            assert_eq!(Response::Error(reply), back);
        }
        let ok = Response::from_result(Ok(serde_json::json!(42))).to_line();
        assert_eq!(ok, b"{\"ok\":42}\n");
    }

    #[test]
    fn lines_are_bounded() {
        let mut reader = io::Cursor::new(b"abc\ndef".to_vec());
        assert_eq!(read_line(&mut reader).expect("line"), Some(b"abc".to_vec()));
        assert_eq!(read_line(&mut reader).expect("line"), Some(b"def".to_vec()));
        assert_eq!(read_line(&mut reader).expect("end"), None);
        let mut long = io::Cursor::new(vec![b'x'; MAX_LINE + 10]);
        assert!(read_line(&mut long).is_err());

        let mut raw = io::Cursor::new(b"{\"ok\":null}\n\x01\x00\x00\x00".to_vec());
        assert_eq!(
            read_line_unbuffered(&mut raw).expect("line"),
            Some(b"{\"ok\":null}".to_vec())
        );
        assert_eq!(raw.position(), 12, "nothing after the newline is consumed");
    }

    #[test]
    fn frames_have_docker_headers() {
        let out = frame(Stream::Stdout, b"hello\n");
        assert_eq!(&out[..8], &[1, 0, 0, 0, 0, 0, 0, 6]);
        assert_eq!(&out[8..], b"hello\n");
        let err = frame(Stream::Stderr, &[7u8; 300]);
        assert_eq!(&err[..8], &[2, 0, 0, 0, 0, 0, 1, 44]);

        let mut both = out.clone();
        both.extend_from_slice(&err);
        let mut reader = io::Cursor::new(both);
        assert_eq!(
            read_frame(&mut reader).expect("frame"),
            Some((Stream::Stdout, b"hello\n".to_vec()))
        );
        assert_eq!(
            read_frame(&mut reader).expect("frame"),
            Some((Stream::Stderr, vec![7u8; 300]))
        );
        assert_eq!(read_frame(&mut reader).expect("end"), None);

        let mut cut = io::Cursor::new(out[..5].to_vec());
        assert!(read_frame(&mut cut).is_err());
        let mut stdin_frame = io::Cursor::new(vec![0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(read_frame(&mut stdin_frame).is_err());
    }
}
