//! json-file: dockerd's format, byte for byte. `<dir>/<id>-json.log` holds one
//! JSON object per line, `{"log":"hello\n","stream":"stdout","time":"…"}`,
//! with `attrs` (labels/env/tag) before `time` when the options give any;
//! rotated files are `…-json.log.1`, `.2`, … (`.N.gz` when compressed).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::timefmt::{self, Rfc3339Nano};
use crate::{LogContext, Message, Stream};

pub(crate) fn path(ctx: &LogContext) -> PathBuf {
    ctx.dir.join(format!("{}-json.log", ctx.container_id))
}

/// Turns messages into lines, reusing the attrs serialization and the
/// formatted second across messages.
#[derive(Debug)]
pub(crate) struct Encoder {
    attrs: BTreeMap<String, String>,
    /// `attrs` serialized once (empty when there are none).
    attrs_json: Vec<u8>,
    time: Rfc3339Nano,
}

impl Encoder {
    pub(crate) fn new(attrs: BTreeMap<String, String>) -> Encoder {
        let mut attrs_json = Vec::new();
        if !attrs.is_empty() {
            push_attrs(&mut attrs_json, &attrs);
        }
        Encoder {
            attrs,
            attrs_json,
            time: Rfc3339Nano::default(),
        }
    }

    /// Appends the message's line, newline included, to `out`.
    pub(crate) fn encode(&mut self, msg: &Message, out: &mut Vec<u8>) {
        out.push(b'{');
        // dockerd leaves `log` out when empty (omitempty).
        if !msg.line.is_empty() {
            out.extend_from_slice(b"\"log\":");
            push_string(out, &msg.line, Escape::Log);
            out.push(b',');
        }
        out.extend_from_slice(match msg.stream {
            Stream::Stdout => b"\"stream\":\"stdout\",",
            Stream::Stderr => b"\"stream\":\"stderr\",",
        });
        if msg.attrs.is_empty() {
            if !self.attrs_json.is_empty() {
                out.extend_from_slice(b"\"attrs\":");
                out.extend_from_slice(&self.attrs_json);
                out.push(b',');
            }
        } else {
            let mut merged = self.attrs.clone();
            merged.extend(msg.attrs.iter().map(|(k, v)| (k.clone(), v.clone())));
            out.extend_from_slice(b"\"attrs\":");
            push_attrs(out, &merged);
            out.push(b',');
        }
        out.extend_from_slice(b"\"time\":\"");
        self.time.push(out, msg.time);
        out.extend_from_slice(b"\"}\n");
    }
}

/// Go's `json.Marshal` of a `map[string]string`: keys sorted.
fn push_attrs(out: &mut Vec<u8>, attrs: &BTreeMap<String, String>) {
    out.push(b'{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_string(out, k.as_bytes(), Escape::Marshal);
        out.push(b':');
        push_string(out, v.as_bytes(), Escape::Marshal);
    }
    out.push(b'}');
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// dockerd's hand-written encoder for `log`: only `\n`, `\r`, `\\`, `\"`
    /// get short escapes.
    Log,
    /// `encoding/json`: `\t`, `\b` and `\f` short too.
    Marshal,
}

/// A JSON string as Go writes it: HTML characters and U+2028/U+2029
/// escaped, invalid UTF-8 replaced by U+FFFD.
fn push_string(out: &mut Vec<u8>, s: &[u8], escape: Escape) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b < 0x80 {
            if b >= 0x20 && !matches!(b, b'\\' | b'"' | b'<' | b'>' | b'&') {
                i += 1;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match (b, escape) {
                (b'\\' | b'"', _) => out.extend_from_slice(&[b'\\', b]),
                (b'\n', _) => out.extend_from_slice(b"\\n"),
                (b'\r', _) => out.extend_from_slice(b"\\r"),
                (b'\t', Escape::Marshal) => out.extend_from_slice(b"\\t"),
                (0x08, Escape::Marshal) => out.extend_from_slice(b"\\b"),
                (0x0c, Escape::Marshal) => out.extend_from_slice(b"\\f"),
                _ => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
            }
            i += 1;
            start = i;
            continue;
        }
        let width = match b {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        let valid = width > 0
            && s.get(i..i + width)
                .is_some_and(|c| std::str::from_utf8(c).is_ok());
        if !valid {
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(b"\\ufffd");
            i += 1;
            start = i;
            continue;
        }
        if width == 3 && b == 0xe2 && s[i + 1] == 0x80 && matches!(s[i + 2], 0xa8 | 0xa9) {
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(b"\\u202");
            out.push(HEX[usize::from(s[i + 2] & 0xf)]);
            i += 3;
            start = i;
            continue;
        }
        i += width;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

#[derive(serde::Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    log: Cow<'a, str>,
    #[serde(borrow, default)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(default)]
    attrs: Option<BTreeMap<String, String>>,
}

/// One line (without its newline); None when it is not a log record.
pub(crate) fn decode(line: &[u8]) -> Option<Message> {
    let record: Record<'_> = serde_json::from_slice(line).ok()?;
    let stream = match &*record.stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    Some(Message {
        stream,
        line: record.log.into_owned().into_bytes(),
        time: timefmt::parse_rfc3339(&record.time)?,
        attrs: record.attrs.unwrap_or_default(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn encoded(line: &[u8], escape: Escape) -> String {
        let mut out = Vec::new();
        push_string(&mut out, line, escape);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_dockerd_does() {
        assert_eq!(encoded(b"a\"b\\c\n", Escape::Log), r#""a\"b\\c\n""#);
        assert_eq!(
            encoded(b"<a&b>\t\r", Escape::Log),
            r#""\u003ca\u0026b\u003e\u0009\r""#
        );
        assert_eq!(
            encoded(b"\t\x08\x0c\x01", Escape::Marshal),
            r#""\t\b\f\u0001""#
        );
        assert_eq!(encoded("é→😀".as_bytes(), Escape::Log), "\"é→😀\"");
        assert_eq!(
            encoded(b"a\xffb\xe2\x82", Escape::Log),
            r#""a\ufffdb\ufffd\ufffd""#
        );
        assert_eq!(
            encoded("x\u{2028}y".as_bytes(), Escape::Log),
            r#""x\u2028y""#
        );
    }

    #[test]
    fn decoding_restores_what_encoding_wrote() {
        let msg = Message {
            stream: Stream::Stderr,
            line: "tab\there \"q\" <é>\n".as_bytes().to_vec(),
            time: timefmt::join(1_704_067_200, 42),
            attrs: BTreeMap::from([("k".to_string(), "v".to_string())]),
        };
        let mut out = Vec::new();
        Encoder::new(BTreeMap::new()).encode(&msg, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(decode(&out[..out.len() - 1]), Some(msg));
    }
}
