//! syslog: one message per line to a syslog daemon, formatted as dockerd's
//! syslog driver does (its default is RFC 3164 without the hostname, as for
//! a local socket; `syslog-format` picks rfc3164, rfc5424 or rfc5424micro).
//! Write only. The timestamp is the message's, in local time.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::options::{check_known, invalid};
use crate::{tag, timefmt, Error, LogContext, LogWriter, Message, Result, Stream};

pub(crate) const OPTIONS: &[&str] = &[
    "env",
    "env-regex",
    "labels",
    "labels-regex",
    "syslog-address",
    "syslog-facility",
    "syslog-format",
    "syslog-tls-ca-cert",
    "syslog-tls-cert",
    "syslog-tls-key",
    "syslog-tls-skip-verify",
    "tag",
];

/// Where the default (no `syslog-address`) goes, tried in order, datagram
/// sockets first, as Go's log/syslog does.
const LOCAL_SOCKETS: &[&str] = &["/dev/log", "/var/run/syslog", "/var/run/log"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Local,
    UnixGram(PathBuf),
    Unix(PathBuf),
    Udp(String),
    Tcp(String),
}

fn parse_address(value: &str) -> Result<Address> {
    if value.is_empty() {
        return Ok(Address::Local);
    }
    let bad = |reason: &str| invalid("syslog-address", value, reason);
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(bad("syslog-address should be in form proto://address"));
    };
    match scheme {
        "unix" | "unixgram" => {
            let path = Path::new(rest);
            if !path.is_absolute() {
                return Err(bad(
                    "expected an absolute socket path, e.g. unixgram:///dev/log",
                ));
            }
            // dockerd refuses a socket that is not there at create.
            if let Err(e) = std::fs::metadata(path) {
                return Err(bad(&format!("{}: {e}", path.display())));
            }
            Ok(if scheme == "unix" {
                Address::Unix(path.to_path_buf())
            } else {
                Address::UnixGram(path.to_path_buf())
            })
        }
        "udp" | "tcp" => {
            let host = rest.split('/').next().unwrap_or_default();
            let host_port = host_with_port(host).ok_or_else(|| bad("expected host:port"))?;
            Ok(if scheme == "udp" {
                Address::Udp(host_port)
            } else {
                Address::Tcp(host_port)
            })
        }
        "tcp+tls" => Err(bad("syslog over TLS is not supported by Berth")),
        _ => Err(bad("expected unix://, unixgram://, udp:// or tcp://")),
    }
}

/// `host:port`, `[v6]:port`, or either without a port (514 added).
fn host_with_port(host: &str) -> Option<String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (format!("[{v6}]"), None),
            _ => (format!("[{v6}]"), Some(after.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name.to_string(), Some(port)),
            None => (host.to_string(), None),
        }
    };
    if name.is_empty() || (!name.starts_with('[') && name.contains(':')) {
        return None;
    }
    let port: u16 = match port {
        Some(p) => p.parse().ok()?,
        None => 514,
    };
    Some(format!("{name}:{port}"))
}

fn parse_facility(value: &str) -> Result<u8> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "", "", "", "", "local0", "local1", "local2", "local3", "local4",
        "local5", "local6", "local7",
    ];
    if value.is_empty() {
        return Ok(3); // daemon
    }
    if let Some(i) = NAMES.iter().position(|&n| !n.is_empty() && n == value) {
        return Ok(i as u8);
    }
    match value.parse::<u8>() {
        Ok(n) if n <= 23 => Ok(n),
        _ => Err(invalid(
            "syslog-facility",
            value,
            "invalid syslog facility: expected a name such as daemon, user or local0, or 0-23",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// dockerd's default: `<pri>Jan _2 15:04:05 tag[pid]: msg`.
    Unix,
    /// `<pri>Jan _2 15:04:05 host tag[pid]: msg`.
    Rfc3164,
    /// `<pri>1 2006-01-02T15:04:05Z07:00 host tag pid tag - msg`.
    Rfc5424,
    /// As rfc5424 with microseconds.
    Rfc5424Micro,
}

fn parse_format(value: &str) -> Result<Format> {
    match value {
        "" => Ok(Format::Unix),
        "rfc3164" => Ok(Format::Rfc3164),
        "rfc5424" => Ok(Format::Rfc5424),
        "rfc5424micro" => Ok(Format::Rfc5424Micro),
        _ => Err(invalid(
            "syslog-format",
            value,
            "invalid syslog format: expected rfc3164, rfc5424 or rfc5424micro",
        )),
    }
}

fn get<'a>(opts: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    opts.get(key).map_or("", String::as_str)
}

pub(crate) fn validate(opts: &BTreeMap<String, String>) -> Result<()> {
    check_known("syslog", opts, OPTIONS)?;
    parse_address(get(opts, "syslog-address"))?;
    parse_facility(get(opts, "syslog-facility"))?;
    parse_format(get(opts, "syslog-format"))?;
    if let Some(t) = opts.get("tag") {
        tag::check(t)?;
    }
    tag::check_attribute_opts(opts)
}

enum Conn {
    UnixGram(UnixDatagram),
    Unix(UnixStream),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Conn {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let sent = match self {
            Conn::UnixGram(s) => s.send(data)?,
            Conn::Udp(s) => s.send(data)?,
            Conn::Unix(s) => return s.write_all(data),
            Conn::Tcp(s) => return s.write_all(data),
        };
        if sent < data.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "datagram truncated",
            ));
        }
        Ok(())
    }
}

fn connect(address: &Address) -> io::Result<Conn> {
    match address {
        Address::Local => {
            for path in LOCAL_SOCKETS {
                if let Ok(s) = UnixDatagram::unbound().and_then(|s| s.connect(path).map(|()| s)) {
                    return Ok(Conn::UnixGram(s));
                }
            }
            for path in LOCAL_SOCKETS {
                if let Ok(s) = UnixStream::connect(path) {
                    return Ok(Conn::Unix(s));
                }
            }
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no syslog socket at /dev/log, /var/run/syslog or /var/run/log",
            ))
        }
        Address::UnixGram(path) => {
            let s = UnixDatagram::unbound()?;
            s.connect(path)?;
            Ok(Conn::UnixGram(s))
        }
        Address::Unix(path) => Ok(Conn::Unix(UnixStream::connect(path)?)),
        Address::Udp(host_port) => {
            let mut last = None;
            for addr in host_port.to_socket_addrs()? {
                let local: std::net::SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                match UdpSocket::bind(local).and_then(|s| s.connect(addr).map(|()| s)) {
                    Ok(s) => return Ok(Conn::Udp(s)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
        }
        Address::Tcp(host_port) => {
            let mut last = None;
            for addr in host_port.to_socket_addrs()? {
                match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                    Ok(s) => return Ok(Conn::Tcp(s)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
        }
    }
}

pub(crate) struct SyslogWriter {
    address: Address,
    conn: Option<Conn>,
    format: Format,
    /// `<pri>` (with the version for RFC 5424) for stdout and for stderr.
    head_stdout: Vec<u8>,
    head_stderr: Vec<u8>,
    /// What follows the timestamp up to the message.
    after_time: Vec<u8>,
    buf: Vec<u8>,
}

pub(crate) fn open(opts: &BTreeMap<String, String>, ctx: &LogContext) -> Result<SyslogWriter> {
    validate(opts)?;
    let address = parse_address(get(opts, "syslog-address"))?;
    let facility = parse_facility(get(opts, "syslog-facility"))?;
    let format = parse_format(get(opts, "syslog-format"))?;
    let tag = tag::render(opts, ctx, tag::DEFAULT_TEMPLATE)?;
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    let version = match format {
        Format::Unix | Format::Rfc3164 => "",
        Format::Rfc5424 | Format::Rfc5424Micro => "1 ",
    };
    // Severities: info for stdout, err for stderr.
    let head = |severity: u8| format!("<{}>{version}", facility * 8 + severity).into_bytes();
    let after_time = match format {
        Format::Unix => format!(" {tag}[{pid}]: "),
        Format::Rfc3164 => format!(" {hostname} {tag}[{pid}]: "),
        // APP-NAME and MSGID are both the tag, as dockerd sends them.
        Format::Rfc5424 | Format::Rfc5424Micro => format!(" {hostname} {tag} {pid} {tag} - "),
    };
    let conn = connect(&address).map_err(|source| Error::Io {
        context: format!("connecting to syslog at {}", describe(&address)),
        source,
    })?;
    Ok(SyslogWriter {
        address,
        conn: Some(conn),
        format,
        head_stdout: head(6),
        head_stderr: head(3),
        after_time: after_time.into_bytes(),
        buf: Vec::new(),
    })
}

fn describe(address: &Address) -> String {
    match address {
        Address::Local => "/dev/log".to_string(),
        Address::UnixGram(p) => format!("unixgram://{}", p.display()),
        Address::Unix(p) => format!("unix://{}", p.display()),
        Address::Udp(h) => format!("udp://{h}"),
        Address::Tcp(h) => format!("tcp://{h}"),
    }
}

impl SyslogWriter {
    fn format_message(&mut self, msg: &Message) {
        let out = &mut self.buf;
        out.clear();
        out.extend_from_slice(match msg.stream {
            Stream::Stdout => &self.head_stdout,
            Stream::Stderr => &self.head_stderr,
        });
        match self.format {
            Format::Unix | Format::Rfc3164 => timefmt::push_stamp(out, msg.time),
            Format::Rfc5424 => timefmt::push_local_rfc3339(out, msg.time, 0),
            Format::Rfc5424Micro => timefmt::push_local_rfc3339(out, msg.time, 6),
        }
        out.extend_from_slice(&self.after_time);
        out.extend_from_slice(&msg.line);
        if !msg.line.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
}

impl LogWriter for SyslogWriter {
    fn write(&mut self, message: &Message) -> Result<()> {
        self.format_message(message);
        // Like dockerd, reconnect once if the daemon went away.
        if let Some(conn) = &mut self.conn {
            if conn.send(&self.buf).is_ok() {
                return Ok(());
            }
        }
        self.conn = None;
        let context = || format!("sending to syslog at {}", describe(&self.address));
        let mut conn = connect(&self.address).map_err(|source| Error::Io {
            context: context(),
            source,
        })?;
        conn.send(&self.buf).map_err(|source| Error::Io {
            context: context(),
            source,
        })?;
        self.conn = Some(conn);
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.conn = None;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_dockerd_accepts_them() {
        assert_eq!(parse_address("").unwrap(), Address::Local);
        assert_eq!(
            parse_address("udp://127.0.0.1").unwrap(),
            Address::Udp("127.0.0.1:514".into())
        );
        assert_eq!(
            parse_address("tcp://logs:6514").unwrap(),
            Address::Tcp("logs:6514".into())
        );
        assert_eq!(
            parse_address("udp://[::1]:55").unwrap(),
            Address::Udp("[::1]:55".into())
        );
        for bad in [
            "127.0.0.1:514",
            "udp://",
            "udp://host:99999",
            "tcp+tls://host:6514",
            "http://host",
            "unix://relative/path",
            "unixgram:///nonexistent/berth-test.sock",
        ] {
            let err = parse_address(bad).unwrap_err().to_string();
            assert!(err.contains("syslog-address") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn facilities_by_name_or_number() {
        assert_eq!(parse_facility("").unwrap(), 3);
        assert_eq!(parse_facility("local7").unwrap(), 23);
        assert_eq!(parse_facility("user").unwrap(), 1);
        assert_eq!(parse_facility("16").unwrap(), 16);
        assert!(parse_facility("24").is_err());
        assert!(parse_facility("bogus").is_err());
    }
}
