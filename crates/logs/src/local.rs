//! local: dockerd's compact driver, in `<dir>/local-logs/container.log`
//! (rotated `container.log.1.gz`, …). The encoding is Berth's own
//! (dockerd uses protobuf): each record is
//!
//! ```text
//! u32 BE  n          payload length
//! u8      stream     1 = stdout, 2 = stderr
//! i64 BE  time       nanoseconds since the Unix epoch (UTC)
//! [u8]    line       n - 9 bytes, the newline kept (none: a partial line)
//! u32 BE  n          the length again, so a reader can walk back from the end
//! ```
//!
//! A record whose trailing length disagrees with its leading one marks the
//! rest of that file as unreadable (a torn write); the writer cuts a torn
//! tail off when it reopens the file. Lines over 1 MiB are split into
//! several partial records. Attributes are not kept (dockerd's local driver
//! takes no labels/env options either).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::reader::Front;
use crate::timefmt;
use crate::{LogContext, Message, Stream};

pub(crate) fn dir(ctx: &LogContext) -> PathBuf {
    ctx.dir.join("local-logs")
}

pub(crate) fn path(ctx: &LogContext) -> PathBuf {
    dir(ctx).join("container.log")
}

/// Stream byte and time before the line.
const HEADER: usize = 9;
/// A length over this is corruption, not a record (the writer splits
/// longer lines).
pub(crate) const MAX_LINE: usize = 1 << 20;
const MAX_PAYLOAD: usize = HEADER + MAX_LINE;

/// Appends records for `msg` to `out`: one, or several partial ones when
/// the line is longer than [`MAX_LINE`].
pub(crate) fn encode(msg: &Message, out: &mut Vec<u8>) {
    let stream = match msg.stream {
        Stream::Stdout => 1u8,
        Stream::Stderr => 2u8,
    };
    let time = timefmt::to_unix_nanos(msg.time).to_be_bytes();
    let mut chunks = msg.line.chunks(MAX_LINE).peekable();
    if chunks.peek().is_none() {
        push_record(out, stream, &time, &[]);
    }
    for chunk in chunks {
        push_record(out, stream, &time, chunk);
    }
}

fn push_record(out: &mut Vec<u8>, stream: u8, time: &[u8; 8], line: &[u8]) {
    // Lines are at most MAX_LINE, so the length fits.
    let n = u32::try_from(HEADER + line.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    out.extend_from_slice(&n);
    out.push(stream);
    out.extend_from_slice(time);
    out.extend_from_slice(line);
    out.extend_from_slice(&n);
}

fn decode_payload(payload: &[u8]) -> Option<Message> {
    let stream = match payload.first()? {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => return None,
    };
    let time = i64::from_be_bytes(payload.get(1..HEADER)?.try_into().ok()?);
    Some(Message {
        stream,
        line: payload[HEADER..].to_vec(),
        time: timefmt::from_unix_nanos(time),
        attrs: Default::default(),
    })
}

fn read_len(b: &[u8]) -> Option<usize> {
    let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    (HEADER..=MAX_PAYLOAD).contains(&n).then_some(n)
}

pub(crate) fn decode_front(buf: &[u8]) -> Front {
    if buf.len() < 4 {
        return Front::Incomplete;
    }
    let Some(n) = read_len(buf) else {
        return Front::Broken;
    };
    let Some(record) = buf.get(..n + 8) else {
        return Front::Incomplete;
    };
    if record[4 + n..] != record[..4] {
        return Front::Broken;
    }
    Front::Record(decode_payload(&record[4..4 + n]), n + 8)
}

/// Decodes the record that ends where `buf` ends (Incomplete: the bytes
/// before it are needed too).
pub(crate) fn decode_back(buf: &[u8]) -> Front {
    if buf.len() < 4 {
        return Front::Incomplete;
    }
    let Some(n) = read_len(&buf[buf.len() - 4..]) else {
        return Front::Broken;
    };
    let Some(start) = buf.len().checked_sub(n + 8) else {
        return Front::Incomplete;
    };
    let record = &buf[start..];
    if record[..4] != record[4 + n..] {
        return Front::Broken;
    }
    Front::Record(decode_payload(&record[4..4 + n]), n + 8)
}

/// The end of the last whole record of a file of length `len`: `len` when
/// the file ends cleanly, else found by walking the records from the start.
pub(crate) fn valid_end(file: &File, len: u64) -> io::Result<u64> {
    let mut tail = [0u8; 4];
    if len == 0 {
        return Ok(0);
    }
    if len >= 4 {
        file.read_exact_at(&mut tail, len - 4)?;
        if let Some(n) = read_len(&tail) {
            let size = n as u64 + 8;
            if size <= len {
                let mut head = [0u8; 4];
                file.read_exact_at(&mut head, len - size)?;
                if head == tail {
                    return Ok(len);
                }
            }
        }
    }
    let mut pos = 0u64;
    let mut head = [0u8; 4];
    while pos + 4 <= len {
        file.read_exact_at(&mut head, pos)?;
        let Some(n) = read_len(&head) else { break };
        let end = pos + n as u64 + 8;
        if end > len {
            break;
        }
        file.read_exact_at(&mut tail, end - 4)?;
        if tail != head {
            break;
        }
        pos = end;
    }
    Ok(pos)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(line: &[u8]) -> Message {
        Message {
            stream: Stream::Stderr,
            line: line.to_vec(),
            time: timefmt::join(1_704_067_200, 5),
            attrs: Default::default(),
        }
    }

    #[test]
    fn records_decode_from_both_ends() {
        let mut buf = Vec::new();
        encode(&msg(b"one\n"), &mut buf);
        encode(&msg(b"two"), &mut buf);
        let Front::Record(Some(first), n) = decode_front(&buf) else {
            panic!("front")
        };
        assert_eq!(first, msg(b"one\n"));
        let Front::Record(Some(last), m) = decode_back(&buf) else {
            panic!("back")
        };
        assert_eq!(last, msg(b"two"));
        assert_eq!(n + m, buf.len());
        assert!(matches!(decode_front(&buf[..n - 1]), Front::Incomplete));
    }

    #[test]
    fn long_lines_are_split_into_partial_records() {
        let line = vec![b'x'; MAX_LINE + 10];
        let mut buf = Vec::new();
        encode(&msg(&line), &mut buf);
        let Front::Record(Some(a), n) = decode_front(&buf) else {
            panic!("first")
        };
        let Front::Record(Some(b), _) = decode_front(&buf[n..]) else {
            panic!("second")
        };
        assert_eq!(a.line.len(), MAX_LINE);
        assert_eq!(b.line.len(), 10);
    }
}
