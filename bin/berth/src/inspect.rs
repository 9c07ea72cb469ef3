//! `inspect` of containers, images, networks and volumes: the daemon's JSON
//! printed as it sent it (re-indented like Go's `json.Indent`, or compacted
//! for `--format json`), or each object through a `--format` template.

use std::io::Write;

use serde_json::Value;

use crate::client::{url_encode, Client, Failure};
use crate::format::Format;

/// An object kind `inspect` looks names up as.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Container,
    Image,
    Network,
    Volume,
}

impl Kind {
    /// Every kind the generic `inspect` tries, in docker's order.
    pub const ALL: [Kind; 4] = [Kind::Container, Kind::Image, Kind::Network, Kind::Volume];

    /// The kind named by `--type`.
    pub fn named(name: &str) -> Option<Kind> {
        match name {
            "container" => Some(Kind::Container),
            "image" => Some(Kind::Image),
            "network" => Some(Kind::Network),
            "volume" => Some(Kind::Volume),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Image => "image",
            Kind::Network => "network",
            Kind::Volume => "volume",
        }
    }

    fn path(self, name: &str, size: bool) -> String {
        let name = url_encode(name);
        match self {
            Kind::Container if size => format!("/containers/{name}/json?size=1"),
            Kind::Container => format!("/containers/{name}/json"),
            Kind::Image => format!("/images/{name}/json"),
            Kind::Network => format!("/networks/{name}"),
            Kind::Volume => format!("/volumes/{name}"),
        }
    }
}

/// Looks each of `names` up as the first of `kinds` that has it and prints
/// them all; the names not found are reported together (exit status 1).
pub async fn inspect(
    client: &Client,
    names: &[String],
    format: Option<&str>,
    kinds: &[Kind],
    size: bool,
) -> Result<(), Failure> {
    let output = match format {
        None | Some("") => Output::Indented,
        Some("json") => Output::Compact,
        Some(spec) => Output::Template(Format::parse(spec).map_err(|e| Failure::Status {
            message: e.0,
            code: 64,
        })?),
    };
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match lookup(client, name, kinds, size).await {
            Ok(raw) => objects.push(raw),
            Err(failure @ Failure::Connect(_)) => return Err(failure),
            Err(failure) => errors.push(failure.to_string()),
        }
    }
    let mut out = std::io::stdout().lock();
    match output {
        Output::Indented if objects.is_empty() => writeln!(out, "[]")?,
        Output::Indented => {
            let body: Vec<String> = objects
                .iter()
                .map(|raw| format!("    {}", indent_json(raw, 1)))
                .collect();
            writeln!(out, "[\n{}\n]", body.join(",\n"))?;
        }
        Output::Compact => {
            let body: Vec<String> = objects.iter().map(|raw| compact_json(raw)).collect();
            writeln!(out, "[{}]", body.join(","))?;
        }
        Output::Template(format) => {
            let mut rendered = String::new();
            for raw in &objects {
                let value: Value = serde_json::from_str(raw)
                    .map_err(|e| Failure::Message(format!("unable to read inspect data: {e}")))?;
                match format.render(&Value::Null, &[value]) {
                    Ok(text) => rendered.push_str(&text),
                    Err(e) => errors.push(format!("template parsing error: {e}")),
                }
            }
            // Docker's template inspector prints an empty line when nothing matched.
            if rendered.is_empty() {
                rendered.push('\n');
            }
            write!(out, "{rendered}")?;
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Message(errors.join("\n")))
    }
}

enum Output {
    Indented,
    Compact,
    Template(Format),
}

/// The raw JSON of `name` as the first of `kinds` that knows it. With one
/// kind its error is the answer; with several, "not found"-like errors move
/// on to the next kind (docker's `isErrSkippable`).
async fn lookup(
    client: &Client,
    name: &str,
    kinds: &[Kind],
    size: bool,
) -> Result<String, Failure> {
    for &kind in kinds {
        match client.get_raw(&kind.path(name, size)).await {
            Ok(body) => {
                if size && kind != Kind::Container {
                    eprintln!("WARNING: --size ignored for {}", kind.name());
                }
                return Ok(String::from_utf8_lossy(&body).into_owned());
            }
            Err(failure) if kinds.len() > 1 && skippable(&failure) => continue,
            Err(failure) => return Err(failure),
        }
    }
    Err(Failure::Message(format!("Error: No such object: {name}")))
}

fn skippable(failure: &Failure) -> bool {
    let message = failure.to_string();
    failure.is_not_found()
        || message.contains("not supported")
        || message.contains("invalid reference format")
}

/// Re-indents raw JSON text with four spaces per level, keeping the daemon's
/// key order and escapes, the way Go's `json.Indent` does.
pub fn indent_json(raw: &str, base: usize) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = base;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}') | Some(']')) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Raw JSON text without the spaces between tokens, keys in the daemon's
/// order (Go's `json.Compact`).
pub fn compact_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.trim().chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_indented_like_go() {
        assert_eq!(
            indent_json(r#"{"a":[],"b":{"c":1,"d":["x","y:,{"]},"e":{}}"#, 1),
            "{\n        \"a\": [],\n        \"b\": {\n            \"c\": 1,\n            \"d\": [\n                \"x\",\n                \"y:,{\"\n            ]\n        },\n        \"e\": {}\n    }"
        );
    }

    #[test]
    fn json_is_compacted_like_go() {
        assert_eq!(
            compact_json("{\"a\": [1, 2],\n \"b\": \"x y\\\" z\"}\n"),
            "{\"a\":[1,2],\"b\":\"x y\\\" z\"}"
        );
    }
}
