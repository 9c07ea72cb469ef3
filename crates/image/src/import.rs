//! `docker import`: an image of one layer from a rootfs tarball, with the config
//! dockerd 20.10 writes, and the Dockerfile-like `changes` it accepts.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::config::ImageConfig;
use crate::digest::HashingWriter;
use crate::error::{ImageError, Result};
use crate::layer::{decompress, Compression};
use crate::legacy::{format_go_time, go_container_config, json_string};
use crate::load::{LoadedImage, LoadedLayer};
use crate::manifest::{media_type, Platform};
use crate::reference::Reference;

#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Dockerfile instructions applied to the config (`CMD ["/bin/sh"]`, `ENV A=b`, …).
    pub changes: Vec<String>,
    /// History comment; dockerd's default is `Imported from -` (or the source URL).
    pub message: Option<String>,
    pub platform: Platform,
    pub created: DateTime<Utc>,
    /// Written as `docker_version`, which `docker inspect` shows as DockerVersion.
    pub docker_version: Option<String>,
    pub repo_tag: Option<Reference>,
}

impl ImportOptions {
    pub fn new(platform: Platform) -> ImportOptions {
        ImportOptions {
            changes: Vec::new(),
            message: None,
            platform,
            created: Utc::now(),
            docker_version: None,
            repo_tag: None,
        }
    }
}

/// Builds an image from a rootfs tarball (gzip, zstd or plain). The layer is spooled
/// uncompressed into `spool_dir`; its diff_id is the sha256 of that tar.
pub fn import_rootfs<R: Read>(
    reader: R,
    spool_dir: &Path,
    options: &ImportOptions,
) -> Result<LoadedImage> {
    let container_config = apply_changes(&options.changes)?;
    fs::create_dir_all(spool_dir)
        .map_err(|e| ImageError::io("creating spool directory", spool_dir, e))?;
    let (_, stream) = decompress(reader, "rootfs tarball")?;
    let tmp = spool_dir.join("ingest-import");
    let file = File::create(&tmp).map_err(|e| ImageError::io("creating", &tmp, e))?;
    let mut writer = HashingWriter::new(io::BufWriter::new(file));
    let bad = |e: io::Error| ImageError::CorruptLayer {
        name: "rootfs tarball".to_string(),
        reason: e.to_string(),
    };
    // Walk the tar as it is copied, so a corrupt or truncated input is refused.
    let mut archive = tar::Archive::new(TeeReader {
        inner: stream,
        out: &mut writer,
    });
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(bad)?;
    let (buf, diff_id, size) = writer.finish();
    buf.into_inner()
        .map_err(|e| ImageError::io("writing", &tmp, e.into_error()))?
        .flush()
        .map_err(|e| ImageError::io("writing", &tmp, e))?;
    let path = spool_dir.join(diff_id.hex());
    fs::rename(&tmp, &path).map_err(|e| ImageError::io("renaming", &tmp, e))?;

    let created = format_go_time(&options.created.fixed_offset());
    let message = options
        .message
        .clone()
        .unwrap_or_else(|| "Imported from -".to_string());
    // dockerd marshals the config through a map, so top-level keys come out sorted.
    let mut top: BTreeMap<&str, String> = BTreeMap::new();
    top.insert("architecture", json_string(&options.platform.architecture));
    if !message.is_empty() {
        top.insert("comment", json_string(&message));
    }
    top.insert("config", go_container_config(Some(&container_config)));
    top.insert("container_config", go_container_config(None));
    top.insert("created", json_string(&created));
    if let Some(v) = &options.docker_version {
        top.insert("docker_version", json_string(v));
    }
    let mut history = format!("[{{\"created\":{}", json_string(&created));
    if !message.is_empty() {
        history.push_str(&format!(",\"comment\":{}", json_string(&message)));
    }
    history.push_str("}]");
    top.insert("history", history);
    top.insert("os", json_string(&options.platform.os));
    top.insert(
        "rootfs",
        format!(
            "{{\"type\":\"layers\",\"diff_ids\":[{}]}}",
            json_string(diff_id.as_ref())
        ),
    );
    if let Some(v) = &options.platform.variant {
        top.insert("variant", json_string(v));
    }
    let body: Vec<String> = top
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_string(k)))
        .collect();
    let raw = format!("{{{}}}", body.join(","));
    let config = ImageConfig::from_bytes(raw.into_bytes())?;
    Ok(LoadedImage {
        config,
        layers: vec![LoadedLayer {
            blob_digest: diff_id.clone(),
            diff_id,
            blob_path: path,
            media_type: media_type::DOCKER_LAYER_TAR.to_string(),
            compression: Compression::None,
            size,
        }],
        repo_tags: options.repo_tag.iter().cloned().collect(),
    })
}

struct TeeReader<'a, R, W> {
    inner: R,
    out: &'a mut W,
}

impl<R: Read, W: Write> Read for TeeReader<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Applies `changes` to an empty container config, as dockerd's import does: only
/// CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, USER, VOLUME and
/// WORKDIR are allowed. Returns the config object in Docker's field names.
pub fn apply_changes(changes: &[String]) -> Result<Map<String, Value>> {
    let mut c = Map::new();
    let mut cmd_set = false;
    for change in changes {
        let line = change.trim();
        if line.is_empty() {
            continue;
        }
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (line, ""),
        };
        let bad = |reason: &str| ImageError::InvalidChange {
            change: change.clone(),
            reason: reason.to_string(),
        };
        match word.to_lowercase().as_str() {
            "cmd" => {
                c.insert("Cmd".into(), command(rest));
                cmd_set = true;
            }
            "entrypoint" => {
                c.insert("Entrypoint".into(), command(rest));
                if !cmd_set {
                    c.insert("Cmd".into(), Value::Null);
                }
            }
            "env" => {
                let pairs = key_values(rest, true).map_err(|r| bad(&r))?;
                let env = c.entry("Env").or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = env {
                    for (k, v) in pairs {
                        let entry = Value::String(format!("{k}={v}"));
                        let prefix = format!("{k}=");
                        match list
                            .iter()
                            .position(|e| e.as_str().is_some_and(|s| s.starts_with(&prefix)))
                        {
                            Some(i) => list[i] = entry,
                            None => list.push(entry),
                        }
                    }
                }
            }
            "label" => {
                let pairs = key_values(rest, false).map_err(|r| bad(&r))?;
                let labels = c
                    .entry("Labels")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = labels {
                    for (k, v) in pairs {
                        m.insert(k, Value::String(v));
                    }
                }
            }
            "expose" => {
                let ports = c
                    .entry("ExposedPorts")
                    .or_insert_with(|| Value::Object(Map::new()));
                for spec in words(rest).map_err(|r| bad(&r))? {
                    for port in expand_port(&spec).map_err(|r| bad(&r))? {
                        if let Value::Object(m) = ports {
                            m.insert(port, Value::Object(Map::new()));
                        }
                    }
                }
            }
            "volume" => {
                let list = match json_list(rest) {
                    Some(l) => l,
                    None => words(rest).map_err(|r| bad(&r))?,
                };
                if list.is_empty() || list.iter().any(|v| v.trim().is_empty()) {
                    return Err(bad("VOLUME specified can not be an empty string"));
                }
                let vols = c
                    .entry("Volumes")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = vols {
                    for v in list {
                        m.insert(v, Value::Object(Map::new()));
                    }
                }
            }
            "workdir" => {
                if rest.is_empty() {
                    return Err(bad("WORKDIR requires exactly one argument"));
                }
                let current = c
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_string();
                c.insert(
                    "WorkingDir".into(),
                    Value::String(join_workdir(&current, rest)),
                );
            }
            "user" => {
                if rest.is_empty() {
                    return Err(bad("USER requires exactly one argument"));
                }
                c.insert("User".into(), Value::String(rest.to_string()));
            }
            "onbuild" => {
                let trigger = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_uppercase();
                match trigger.as_str() {
                    "" => return Err(bad("ONBUILD requires at least one argument")),
                    "ONBUILD" => {
                        return Err(bad("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"))
                    }
                    "MAINTAINER" | "FROM" => {
                        return Err(bad(&format!(
                            "{trigger} isn't allowed as an ONBUILD trigger"
                        )))
                    }
                    _ => {}
                }
                let list = c
                    .entry("OnBuild")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(l) = list {
                    l.push(Value::String(rest.to_string()));
                }
            }
            "healthcheck" => {
                c.insert(
                    "Healthcheck".into(),
                    healthcheck(rest).map_err(|r| bad(&r))?,
                );
            }
            other => {
                return Err(ImageError::InvalidChangeCommand {
                    instruction: other.to_string(),
                })
            }
        }
    }
    Ok(c)
}

/// JSON form `["a","b"]`, or shell form run by `/bin/sh -c`.
fn command(rest: &str) -> Value {
    match json_list(rest) {
        Some(list) => Value::from(list),
        None => Value::from(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            rest.to_string(),
        ]),
    }
}

fn json_list(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(rest).ok()
}

/// Splits on whitespace, honouring quotes and backslash escapes, and removing them.
fn words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        match (quote, ch) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"') | (None, '\'') => {
                quote = Some(ch);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                in_word = true;
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err("unmatched quote".to_string());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `K=V K2="v 2"`, or the legacy `K some value` form (ENV only).
fn key_values(
    rest: &str,
    allow_legacy: bool,
) -> std::result::Result<Vec<(String, String)>, String> {
    let ws = words(rest)?;
    if ws.is_empty() {
        return Err("requires at least one argument".to_string());
    }
    if !ws[0].contains('=') {
        if !allow_legacy || ws.len() < 2 {
            return Err("needs key=value pairs".to_string());
        }
        let value = rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..]
            .trim()
            .to_string();
        return Ok(vec![(ws[0].clone(), value)]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not key=value")),
        })
        .collect()
}

fn expand_port(spec: &str) -> std::result::Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {p}"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(ports)?, parse(ports)?),
    };
    if end < start {
        return Err(format!(
            "invalid range specified for container port: {ports}"
        ));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn join_workdir(current: &str, requested: &str) -> String {
    let joined = if requested.starts_with('/') {
        requested.to_string()
    } else {
        format!("{current}/{requested}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `NONE`, or `[--interval=D] [--timeout=D] [--start-period=D] [--retries=N] CMD …`.
fn healthcheck(rest: &str) -> std::result::Result<Value, String> {
    let mut h = Map::new();
    let mut remaining = rest.trim();
    while let Some(flag) = remaining.strip_prefix("--") {
        let (item, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("flag --{item} needs a value"))?;
        let key = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => "Retries",
            other => return Err(format!("unknown flag: --{other}")),
        };
        let n = if key == "Retries" {
            value
                .parse::<i64>()
                .map_err(|_| format!("invalid retries {value:?}"))?
        } else {
            go_duration(value)?
        };
        if n != 0 {
            h.insert(key.into(), Value::from(n));
        }
        remaining = after.trim_start();
    }
    let (kind, cmd) = remaining
        .split_once(char::is_whitespace)
        .unwrap_or((remaining, ""));
    let test = match kind.to_uppercase().as_str() {
        "NONE" if cmd.trim().is_empty() => vec!["NONE".to_string()],
        "CMD" => match json_list(cmd.trim()) {
            Some(list) => std::iter::once("CMD".to_string()).chain(list).collect(),
            None if !cmd.trim().is_empty() => vec!["CMD-SHELL".to_string(), cmd.trim().to_string()],
            None => return Err("Missing command after HEALTHCHECK CMD".to_string()),
        },
        other => return Err(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)")),
    };
    h.insert("Test".into(), Value::from(test));
    Ok(Value::Object(h))
}

/// Go's `time.ParseDuration` for the units a healthcheck uses; nanoseconds.
fn go_duration(s: &str) -> std::result::Result<i64, String> {
    let err = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(changes: &[&str]) -> Value {
        let owned: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        Value::Object(apply_changes(&owned).unwrap_or_else(|e| panic!("{changes:?}: {e}")))
    }

    /// What `docker inspect -f '{{json .Config}}'` showed after dockerd 20.10 imported
    /// with each change.
    #[test]
    fn changes_as_dockerd_applies_them() {
        let cases: &[(&str, &str)] = &[
            (r#"CMD ["/bin/sh"]"#, r#"{"Cmd":["/bin/sh"]}"#),
            ("CMD /bin/sh", r#"{"Cmd":["/bin/sh","-c","/bin/sh"]}"#),
            ("ENV A=b", r#"{"Env":["A=b"]}"#),
            ("ENV A b", r#"{"Env":["A=b"]}"#),
            ("WORKDIR /w", r#"{"WorkingDir":"/w"}"#),
            ("USER 1:2", r#"{"User":"1:2"}"#),
            (
                "EXPOSE 80/tcp 53/udp",
                r#"{"ExposedPorts":{"53/udp":{},"80/tcp":{}}}"#,
            ),
            ("LABEL x=y", r#"{"Labels":{"x":"y"}}"#),
            ("VOLUME /data", r#"{"Volumes":{"/data":{}}}"#),
            (r#"VOLUME ["/a","/b"]"#, r#"{"Volumes":{"/a":{},"/b":{}}}"#),
            (
                r#"ENTRYPOINT ["/bin/sh","-c"]"#,
                r#"{"Cmd":null,"Entrypoint":["/bin/sh","-c"]}"#,
            ),
            (
                "ENTRYPOINT /bin/sh",
                r#"{"Cmd":null,"Entrypoint":["/bin/sh","-c","/bin/sh"]}"#,
            ),
            ("ONBUILD RUN x", r#"{"OnBuild":["RUN x"]}"#),
            (
                "HEALTHCHECK CMD true",
                r#"{"Healthcheck":{"Test":["CMD-SHELL","true"]}}"#,
            ),
        ];
        for (change, want) in cases {
            let want: Value = serde_json::from_str(want).expect("json");
            assert_eq!(cfg(&[change]), want, "{change}");
        }
    }

    #[test]
    fn more_change_forms() {
        let c = cfg(&[
            r#"ENV A="x y" B=2"#,
            "ENV A=z",
            "EXPOSE 8000-8002",
            "WORKDIR a",
            "WORKDIR b/../c",
            "HEALTHCHECK --interval=1m30s --retries=3 CMD [\"pg_isready\"]",
            "CMD [\"x\"]",
            "ENTRYPOINT [\"y\"]",
        ]);
        assert_eq!(c["Env"], serde_json::json!(["A=z", "B=2"]));
        assert_eq!(
            c["ExposedPorts"],
            serde_json::json!({"8000/tcp":{}, "8001/tcp":{}, "8002/tcp":{}})
        );
        assert_eq!(c["WorkingDir"], "/a/c");
        assert_eq!(
            c["Healthcheck"],
            serde_json::json!({"Interval": 90_000_000_000i64, "Retries": 3, "Test": ["CMD", "pg_isready"]})
        );
        // CMD given before ENTRYPOINT survives it.
        assert_eq!(c["Cmd"], serde_json::json!(["x"]));
        assert_eq!(
            cfg(&["HEALTHCHECK NONE"])["Healthcheck"],
            serde_json::json!({"Test": ["NONE"]})
        );
    }

    #[test]
    fn refuses_what_dockerd_refuses() {
        for (change, msg) in [
            (
                "STOPSIGNAL SIGINT",
                "stopsignal is not a valid change command",
            ),
            ("RUN x", "run is not a valid change command"),
            ("FROM x", "from is not a valid change command"),
            ("MAINTAINER me", "maintainer is not a valid change command"),
        ] {
            let err = apply_changes(&[change.to_string()]).expect_err(change);
            assert_eq!(err.to_string(), msg);
        }
        for bad in [
            "ONBUILD ONBUILD RUN x",
            "ONBUILD FROM x",
            "EXPOSE 80/icmp",
            "EXPOSE http",
            "ENV",
            "LABEL novalue",
            "WORKDIR",
            "HEALTHCHECK --bogus=1 CMD x",
            "HEALTHCHECK --interval=5parsecs CMD x",
            "HEALTHCHECK RUN x",
            "ENV A=\"unterminated",
        ] {
            assert!(
                matches!(
                    apply_changes(&[bad.to_string()]),
                    Err(ImageError::InvalidChange { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration("5s"), Ok(5_000_000_000));
        assert_eq!(go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(go_duration("500ms"), Ok(500_000_000));
        assert_eq!(go_duration("1.5h"), Ok(5_400_000_000_000));
        assert!(go_duration("5").is_err());
    }

    /// The same rootfs content (a stand-in tar, diff_id substituted), changes and
    /// message as a `docker import` into dockerd 20.10: byte-identical config.
    #[test]
    fn import_config_is_byte_identical_to_dockerds() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        b.append_data(&mut h, "x", &b"x"[..]).expect("append");
        let rootfs = b.into_inner().expect("tar");
        let mut options = ImportOptions::new(Platform::new("linux", "amd64", None));
        options.changes = [
            r#"CMD ["/bin/sh"]"#,
            "ENV A=b",
            "WORKDIR /w",
            "USER 1:2",
            "EXPOSE 80/tcp 53/udp",
            "LABEL x=y",
            "VOLUME /data",
            r#"ENTRYPOINT ["/bin/sh","-c"]"#,
            "HEALTHCHECK --interval=5s CMD true",
            "ONBUILD RUN x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        options.message = Some("hello msg".into());
        options.created = DateTime::parse_from_rfc3339("2026-11-25T15:12:02.300725726Z")
            .expect("time")
            .with_timezone(&Utc);
        options.docker_version = Some("20.10.24+dfsg1".into());
        let image = import_rootfs(&rootfs[..], dir.path(), &options).expect("import");
        let want = crate::legacy::tests::IMPORT_CONFIG.replace(
            "sha256:1935d4c3f7b8f00e9ab4aa9782af13e57d5fab3ffde60452aec137e23afc259d",
            image.layers[0].diff_id.as_ref(),
        );
        assert_eq!(String::from_utf8_lossy(image.config.raw()), want);
    }
}
