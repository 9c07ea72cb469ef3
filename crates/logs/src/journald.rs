//! journald: one datagram per message in the journal's native protocol to
//! `/run/systemd/journal/socket` (`BERTH_JOURNAL_SOCKET` overrides the path),
//! with dockerd's fields. Write only. A field whose value has a newline is
//! sent in the binary form (`NAME\n`, 64-bit little-endian length, value,
//! `\n`); a message too big for a datagram goes in a sealed memfd passed
//! over the socket, as systemd's own clients do.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

use crate::options::check_known;
use crate::timefmt::Rfc3339Nano;
use crate::{tag, Error, LogContext, LogWriter, Message, Result, Stream};

pub(crate) const OPTIONS: &[&str] = &["env", "env-regex", "labels", "labels-regex", "tag"];

/// systemd's socket for native journal messages.
const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";
/// Set, it replaces [`DEFAULT_SOCKET`] (tests, a journal elsewhere).
const SOCKET_ENV: &str = "BERTH_JOURNAL_SOCKET";

/// The socket the journald driver sends to.
pub(crate) fn socket_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
}

pub(crate) fn validate(opts: &BTreeMap<String, String>) -> Result<()> {
    check_known("journald", opts, OPTIONS)?;
    if let Some(t) = opts.get("tag") {
        tag::check(t)?;
    }
    tag::check_attribute_opts(opts)
}

/// dockerd's `sanitizeKeyMod`: journal field names are upper-case letters,
/// digits and underscores, not starting with an underscore.
fn field_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        let c = match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' => c,
            _ => '_',
        };
        if !(out.is_empty() && c == '_') {
            out.push(c);
        }
    }
    out
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

pub(crate) struct JournaldWriter {
    socket: UnixDatagram,
    path: PathBuf,
    /// The container's fields, encoded once.
    fixed: Vec<u8>,
    buf: Vec<u8>,
    time: Rfc3339Nano,
}

pub(crate) fn open(
    opts: &BTreeMap<String, String>,
    ctx: &LogContext,
    path: &Path,
) -> Result<JournaldWriter> {
    validate(opts)?;
    let socket = UnixDatagram::unbound()
        .and_then(|s| s.connect(path).map(|()| s))
        .map_err(|source| Error::Io {
            context: format!(
                "journald is not enabled on this host (cannot reach {})",
                path.display()
            ),
            source,
        })?;
    let tag = tag::render(opts, ctx, tag::DEFAULT_TEMPLATE)?;
    let mut fields: BTreeMap<String, String> = tag::extra_attributes(opts, ctx, field_name)?;
    fields.extend(
        [
            ("CONTAINER_ID", tag::short(&ctx.container_id).to_string()),
            ("CONTAINER_ID_FULL", ctx.container_id.clone()),
            (
                "CONTAINER_NAME",
                ctx.container_name.trim_start_matches('/').to_string(),
            ),
            ("CONTAINER_TAG", tag.clone()),
            ("IMAGE_NAME", ctx.image_name.clone()),
            ("SYSLOG_IDENTIFIER", tag),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let mut fixed = Vec::new();
    for (name, value) in &fields {
        if !name.is_empty() {
            push_field(&mut fixed, name, value.as_bytes());
        }
    }
    Ok(JournaldWriter {
        socket,
        path: path.to_path_buf(),
        fixed,
        buf: Vec::new(),
        time: Rfc3339Nano::default(),
    })
}

impl JournaldWriter {
    fn encode(&mut self, msg: &Message) {
        let buf = &mut self.buf;
        buf.clear();
        let (line, partial) = match msg.line.strip_suffix(b"\n") {
            Some(line) => (line, false),
            None => (&msg.line[..], true),
        };
        push_field(buf, "MESSAGE", line);
        push_field(
            buf,
            "PRIORITY",
            match msg.stream {
                Stream::Stdout => b"6",
                Stream::Stderr => b"3",
            },
        );
        if partial {
            push_field(buf, "CONTAINER_PARTIAL_MESSAGE", b"true");
        }
        // The message's own time (the journal stamps arrival).
        buf.extend_from_slice(b"SYSLOG_TIMESTAMP=");
        self.time.push(buf, msg.time);
        buf.push(b'\n');
        buf.extend_from_slice(&self.fixed);
    }

    /// Too big for a datagram: hand the journal a sealed memfd instead.
    fn send_memfd(&self) -> io::Result<()> {
        let fd = memfd_create(
            "berth-journal",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let mut file = File::from(fd);
        file.write_all(&self.buf)?;
        fcntl(&file, FcntlArg::F_ADD_SEALS(SealFlag::all()))?;
        let fds = [file.as_raw_fd()];
        sendmsg::<UnixAddr>(
            self.socket.as_raw_fd(),
            &[] as &[IoSlice<'_>],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )?;
        Ok(())
    }
}

impl LogWriter for JournaldWriter {
    fn write(&mut self, message: &Message) -> Result<()> {
        self.encode(message);
        let result = match self.socket.send(&self.buf) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMSGSIZE | nix::libc::ENOBUFS)
                ) =>
            {
                self.send_memfd()
            }
            Err(e) => Err(e),
        };
        result.map_err(|source| Error::Io {
            context: format!("sending to the journal at {}", self.path.display()),
            source,
        })
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_sanitized_like_dockerd() {
        assert_eq!(field_name("com.example.team"), "COM_EXAMPLE_TEAM");
        assert_eq!(field_name("_x-y"), "X_Y");
        assert_eq!(field_name("TZ"), "TZ");
    }
}
