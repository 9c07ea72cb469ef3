//! What dockerd 20.10 writes that is not in the config itself: the legacy v1 layer
//! `json` files and their IDs in a `docker save` archive, and the config layout of
//! `docker import`. Both are Go `encoding/json` output of Go structs, so this module
//! reproduces Go's field order, `omitempty` rules, time format and HTML escaping.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Offset, Timelike};
use serde_json::{Map, Value};

use crate::config::ImageConfig;
use crate::digest::Digest;

/// One legacy layer of a saved image: its v1 ID (the directory name in the archive)
/// and the content of `<id>/json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyLayer {
    pub id: String,
    pub json: Vec<u8>,
}

/// The v1 layer IDs and `json` files dockerd 20.10 writes for an image, bottom first.
pub fn legacy_layers(config: &ImageConfig) -> Vec<LegacyLayer> {
    let value: Value = serde_json::from_slice(config.raw()).unwrap_or(Value::Null);
    let obj = value.as_object().cloned().unwrap_or_default();
    let os = str_field(&obj, "os");
    let chain_ids = config.chain_ids();
    let mut out: Vec<LegacyLayer> = Vec::with_capacity(chain_ids.len());
    let mut parent: Option<String> = None;
    for (i, chain_id) in chain_ids.iter().enumerate() {
        let top = i + 1 == chain_ids.len();
        // Lower layers get an empty image created at the Unix epoch (pre-1.9 compatibility).
        let mut fields = if top {
            v1_image_fields(&obj)
        } else {
            vec![
                ("created", json_string("1970-01-01T00:00:00Z")),
                ("container_config", go_container_config(None)),
            ]
        };
        let mut id_map: BTreeMap<&str, String> = fields.iter().cloned().collect();
        id_map.insert("layer_id", json_string(chain_id.as_ref()));
        if let Some(p) = &parent {
            id_map.insert("parent", json_string(&format!("sha256:{p}")));
        }
        let id_json = render(id_map.iter().map(|(k, v)| (*k, v.clone())));
        let id = Digest::sha256_of(id_json.as_bytes()).hex().to_string();

        if !top && !os.is_empty() {
            fields.push(("os", json_string(&os)));
        }
        if top && !os.is_empty() && !fields.iter().any(|(k, _)| *k == "os") {
            fields.push(("os", json_string(&os)));
        }
        fields.retain(|(k, _)| *k != "parent");
        let mut file = vec![("id", json_string(&id))];
        if let Some(p) = &parent {
            file.push(("parent", json_string(p)));
        }
        file.extend(fields);
        out.push(LegacyLayer {
            id: id.clone(),
            json: render(file.into_iter()).into_bytes(),
        });
        parent = Some(id);
    }
    out
}

/// Go's `image.V1Image` fields as they come out of a config, in struct order
/// (without `id`; `parent` only when the config had one).
fn v1_image_fields(obj: &Map<String, Value>) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    let opt_str = |f: &mut Vec<(&'static str, String)>, key: &'static str| {
        let s = str_field(obj, key);
        if !s.is_empty() {
            f.push((key, json_string(&s)));
        }
    };
    opt_str(&mut f, "parent");
    opt_str(&mut f, "comment");
    f.push((
        "created",
        json_string(&go_time(obj.get("created").and_then(Value::as_str))),
    ));
    opt_str(&mut f, "container");
    f.push((
        "container_config",
        go_container_config(obj.get("container_config").and_then(Value::as_object)),
    ));
    opt_str(&mut f, "docker_version");
    opt_str(&mut f, "author");
    if let Some(c) = obj.get("config").and_then(Value::as_object) {
        f.push(("config", go_container_config(Some(c))));
    }
    opt_str(&mut f, "architecture");
    opt_str(&mut f, "variant");
    opt_str(&mut f, "os");
    f
}

fn str_field(obj: &Map<String, Value>, key: &str) -> String {
    obj.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A Go `container.Config` as `encoding/json` writes it (Docker 20.10's field set).
pub(crate) fn go_container_config(c: Option<&Map<String, Value>>) -> String {
    let empty = Map::new();
    let c = c.unwrap_or(&empty);
    let s = |k: &str| json_string(c.get(k).and_then(Value::as_str).unwrap_or_default());
    let b = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mut f: Vec<(&str, String)> = vec![
        ("Hostname", s("Hostname")),
        ("Domainname", s("Domainname")),
        ("User", s("User")),
        ("AttachStdin", b("AttachStdin").to_string()),
        ("AttachStdout", b("AttachStdout").to_string()),
        ("AttachStderr", b("AttachStderr").to_string()),
    ];
    if let Some(ports) = go_set(c.get("ExposedPorts")).filter(|p| p != "{}") {
        f.push(("ExposedPorts", ports));
    }
    f.push(("Tty", b("Tty").to_string()));
    f.push(("OpenStdin", b("OpenStdin").to_string()));
    f.push(("StdinOnce", b("StdinOnce").to_string()));
    f.push(("Env", go_string_list(c.get("Env"))));
    f.push(("Cmd", go_string_list(c.get("Cmd"))));
    if let Some(h) = c.get("Healthcheck").and_then(Value::as_object) {
        f.push(("Healthcheck", go_health_config(h)));
    }
    if b("ArgsEscaped") {
        f.push(("ArgsEscaped", "true".into()));
    }
    f.push(("Image", s("Image")));
    f.push((
        "Volumes",
        go_set(c.get("Volumes")).unwrap_or_else(|| "null".into()),
    ));
    f.push(("WorkingDir", s("WorkingDir")));
    f.push(("Entrypoint", go_string_list(c.get("Entrypoint"))));
    if b("NetworkDisabled") {
        f.push(("NetworkDisabled", "true".into()));
    }
    if let Some(mac) = c
        .get("MacAddress")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    {
        f.push(("MacAddress", json_string(mac)));
    }
    f.push(("OnBuild", go_string_list(c.get("OnBuild"))));
    f.push(("Labels", go_string_map(c.get("Labels"))));
    if let Some(sig) = c
        .get("StopSignal")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        f.push(("StopSignal", json_string(sig)));
    }
    if let Some(t) = c.get("StopTimeout").and_then(Value::as_i64) {
        f.push(("StopTimeout", t.to_string()));
    }
    let shell = go_string_list(c.get("Shell"));
    if shell != "null" && shell != "[]" {
        f.push(("Shell", shell));
    }
    render(f.into_iter())
}

fn go_health_config(h: &Map<String, Value>) -> String {
    let mut f: Vec<(&str, String)> = Vec::new();
    let test = go_string_list(h.get("Test"));
    if test != "null" && test != "[]" {
        f.push(("Test", test));
    }
    for k in ["Interval", "Timeout", "StartPeriod", "Retries"] {
        if let Some(n) = h.get(k).and_then(Value::as_i64).filter(|n| *n != 0) {
            f.push((k, n.to_string()));
        }
    }
    render(f.into_iter())
}

/// `[]string` / `StrSlice`: null stays null, a string is a one-element list.
fn go_string_list(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!("[{}]", json_string(s)),
        Some(Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| json_string(i.as_str().unwrap_or_default()))
                .collect();
            format!("[{}]", parts.join(","))
        }
        _ => "null".into(),
    }
}

/// `map[string]struct{}`: keys sorted, values `{}`.
fn go_set(v: Option<&Value>) -> Option<String> {
    let obj = v?.as_object()?;
    let keys: BTreeMap<&str, String> = obj.keys().map(|k| (k.as_str(), "{}".to_string())).collect();
    Some(render(keys.into_iter()))
}

fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        Some(obj) => {
            let m: BTreeMap<&str, String> = obj
                .iter()
                .map(|(k, v)| (k.as_str(), json_string(v.as_str().unwrap_or_default())))
                .collect();
            render(m.into_iter())
        }
        None => "null".into(),
    }
}

/// Renders an object from already-encoded values, in the given order.
fn render<'a>(fields: impl Iterator<Item = (&'a str, String)>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(k));
        out.push(':');
        out.push_str(&v);
    }
    out.push('}');
    out
}

/// A JSON string as Go writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub(crate) fn json_string(s: &str) -> String {
    go_escape(&Value::String(s.to_string()).to_string())
}

/// Applies Go's HTML-safe escaping to JSON text (those characters only occur in strings).
pub(crate) fn go_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for ch in json.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `time.Time` JSON form (RFC 3339, fraction without trailing zeros, `Z` for UTC).
/// A missing or unreadable time is Go's zero time.
pub(crate) fn go_time(created: Option<&str>) -> String {
    match created.and_then(|c| DateTime::parse_from_rfc3339(c).ok()) {
        Some(t) => format_go_time(&t),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

pub(crate) fn format_go_time(t: &DateTime<FixedOffset>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let offset = t.offset().fix().local_minus_utc();
    if offset == 0 {
        s.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let a = offset.abs();
        s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn go_time_format() {
        assert_eq!(
            go_time(Some("2024-01-02T03:04:05.123000000Z")),
            "2024-01-02T03:04:05.123Z"
        );
        assert_eq!(
            go_time(Some("2024-01-02T03:04:05+00:00")),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            go_time(Some("2024-01-02T03:04:05.5+02:00")),
            "2024-01-02T03:04:05.5+02:00"
        );
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn go_escaping() {
        assert_eq!(json_string("<a&b>"), r#""\u003ca\u0026b\u003e""#);
    }

    #[test]
    fn empty_container_config_as_go_writes_it() {
        assert_eq!(
            go_container_config(None),
            r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}"#
        );
    }

    /// A two-layer image loaded into dockerd 20.10 and saved again: the config bytes,
    /// and the v1 IDs and `json` files dockerd wrote for it.
    #[test]
    fn legacy_ids_match_dockerd_for_two_layers() {
        let config = ImageConfig::from_bytes(TWO_LAYER_CONFIG.as_bytes().to_vec()).expect("config");
        assert_eq!(
            config.digest().hex(),
            "9d2e6a8c6531c1a2d3ddfdeea13909756244727786ccfc4f34f24429e6cc181c"
        );
        let layers = legacy_layers(&config);
        assert_eq!(layers.len(), 2);
        assert_eq!(
            layers[0].id,
            "fc95f2637090f7c82de46fefacb64e0ea65ecc73f48d1594ecc4a4dbd7c89b77"
        );
        assert_eq!(
            layers[1].id,
            "6083a8afb35b8adf77952cc53f4b5ed44471a42ee95652968e4492c23c52d051"
        );
        assert_eq!(String::from_utf8_lossy(&layers[0].json), TWO_LAYER_JSON_0);
        assert_eq!(String::from_utf8_lossy(&layers[1].json), TWO_LAYER_JSON_1);
    }

    /// `docker import -c … -m "hello msg"` in dockerd 20.10, then `docker save`.
    #[test]
    fn legacy_id_matches_dockerd_for_an_import() {
        let config = ImageConfig::from_bytes(IMPORT_CONFIG.as_bytes().to_vec()).expect("config");
        assert_eq!(
            config.digest().hex(),
            "b52ba1e0af1fe8963e2855098abe42bc9b1cf0db80f814beaaf9bb44d73f0ee0"
        );
        let layers = legacy_layers(&config);
        assert_eq!(
            layers[0].id,
            "0e76a142d4b9b326f5f1809c86f9ad51f2efc59cb75e414527286f812ad9ab40"
        );
        assert_eq!(String::from_utf8_lossy(&layers[0].json), IMPORT_JSON);
    }

    pub(crate) const TWO_LAYER_CONFIG: &str = r#"{"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123Z", "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"a": "<b>"}}, "rootfs": {"type": "layers", "diff_ids": ["sha256:1935d4c3f7b8f00e9ab4aa9782af13e57d5fab3ffde60452aec137e23afc259d", "sha256:d4119065dc51de6437310faf32edc788a502c9a6afbdef14d2f1d36b03ce8e42"]}, "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "x"}, {"created": "2024-01-02T03:04:05Z", "created_by": "y"}], "extra_field": {"z": 1, "a": 2}}"#;
    const TWO_LAYER_JSON_0: &str = r#"{"id":"fc95f2637090f7c82de46fefacb64e0ea65ecc73f48d1594ecc4a4dbd7c89b77","created":"1970-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"os":"linux"}"#;
    const TWO_LAYER_JSON_1: &str = r#"{"id":"6083a8afb35b8adf77952cc53f4b5ed44471a42ee95652968e4492c23c52d051","parent":"fc95f2637090f7c82de46fefacb64e0ea65ecc73f48d1594ecc4a4dbd7c89b77","created":"2024-01-02T03:04:05.123Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"a":"\u003cb\u003e"}},"architecture":"amd64","os":"linux"}"#;
    pub(crate) const IMPORT_CONFIG: &str = r#"{"architecture":"amd64","comment":"hello msg","config":{"Hostname":"","Domainname":"","User":"1:2","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"ExposedPorts":{"53/udp":{},"80/tcp":{}},"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["A=b"],"Cmd":["/bin/sh"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000},"Image":"","Volumes":{"/data":{}},"WorkingDir":"/w","Entrypoint":["/bin/sh","-c"],"OnBuild":["RUN x"],"Labels":{"x":"y"}},"container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"created":"2026-11-25T15:12:02.300725726Z","docker_version":"20.10.24+dfsg1","history":[{"created":"2026-11-25T15:12:02.300725726Z","comment":"hello msg"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:1935d4c3f7b8f00e9ab4aa9782af13e57d5fab3ffde60452aec137e23afc259d"]}}"#;
    pub(crate) const IMPORT_JSON: &str = r#"{"id":"0e76a142d4b9b326f5f1809c86f9ad51f2efc59cb75e414527286f812ad9ab40","comment":"hello msg","created":"2026-11-25T15:12:02.300725726Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"docker_version":"20.10.24+dfsg1","config":{"Hostname":"","Domainname":"","User":"1:2","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"ExposedPorts":{"53/udp":{},"80/tcp":{}},"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["A=b"],"Cmd":["/bin/sh"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000},"Image":"","Volumes":{"/data":{}},"WorkingDir":"/w","Entrypoint":["/bin/sh","-c"],"OnBuild":["RUN x"],"Labels":{"x":"y"}},"architecture":"amd64","os":"linux"}"#;
}
