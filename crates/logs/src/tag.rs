//! What a driver derives from the container: the `tag` option (a Go template
//! over a few container fields) and the extra attributes the `labels`,
//! `labels-regex`, `env` and `env-regex` options select.

use std::collections::BTreeMap;

use regex::Regex;

use crate::options::invalid;
use crate::{LogContext, Result};

/// dockerd's default tag template.
pub(crate) const DEFAULT_TEMPLATE: &str = "{{.ID}}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    FullId,
    Name,
    ImageId,
    ImageFullId,
    ImageName,
    DaemonName,
    Hostname,
}

impl Field {
    fn from_name(name: &str) -> Option<Field> {
        Some(match name {
            "ID" => Field::Id,
            "FullID" => Field::FullId,
            "Name" => Field::Name,
            "ImageID" => Field::ImageId,
            "ImageFullID" => Field::ImageFullId,
            "ImageName" => Field::ImageName,
            "DaemonName" => Field::DaemonName,
            "Hostname" => Field::Hostname,
            _ => return None,
        })
    }

    fn value(self, ctx: &LogContext) -> String {
        match self {
            Field::Id => short(&ctx.container_id).to_string(),
            Field::FullId => ctx.container_id.clone(),
            Field::Name => ctx.container_name.trim_start_matches('/').to_string(),
            Field::ImageId => {
                let id = ctx
                    .image_id
                    .split_once(':')
                    .map_or(ctx.image_id.as_str(), |(_, hex)| hex);
                short(id).to_string()
            }
            Field::ImageFullId => ctx.image_id.clone(),
            Field::ImageName => ctx.image_name.clone(),
            Field::DaemonName => ctx.daemon_name.clone(),
            Field::Hostname => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// The first 12 characters, as Docker shortens ids.
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

enum Piece<'a> {
    Text(&'a str),
    Field(Field),
}

/// Parses the subset of Go templates log tags use: text and `{{.Field}}`
/// actions (spaces and `{{-`/`-}}` trim markers allowed).
fn parse(template: &str) -> std::result::Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut action = &rest[open + 2..];
        let close = action
            .find("}}")
            .ok_or_else(|| "unclosed action (missing }})".to_string())?;
        rest = &action[close + 2..];
        action = &action[..close];
        if let Some(a) = action.strip_prefix("- ") {
            text = text.trim_end();
            action = a;
        }
        trim_next = false;
        if let Some(a) = action.strip_suffix(" -") {
            trim_next = true;
            action = a;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let name = action.trim();
        let field = name
            .strip_prefix('.')
            .and_then(Field::from_name)
            .ok_or_else(|| {
                format!(
                    "unsupported action {{{{{name}}}}}: use {{{{.ID}}}}, {{{{.FullID}}}}, {{{{.Name}}}}, \
                     {{{{.ImageID}}}}, {{{{.ImageFullID}}}}, {{{{.ImageName}}}} or {{{{.DaemonName}}}}"
                )
            })?;
        pieces.push(Piece::Field(field));
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Checks a `tag` option at validation.
pub(crate) fn check(template: &str) -> Result<()> {
    parse(template)
        .map(drop)
        .map_err(|reason| invalid("tag", template, reason))
}

/// The tag for this container: the `tag` option, or `default` when it is
/// absent or empty (dockerd's rule).
pub(crate) fn render(
    opts: &BTreeMap<String, String>,
    ctx: &LogContext,
    default: &str,
) -> Result<String> {
    let template = match opts.get("tag").map(String::as_str) {
        Some(t) if !t.is_empty() => t,
        _ => default,
    };
    let pieces = parse(template).map_err(|reason| invalid("tag", template, reason))?;
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Field(f) => out.push_str(&f.value(ctx)),
        }
    }
    Ok(out)
}

fn compile(opt: &str, pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| invalid(opt, pattern, e.to_string()))
}

/// Checks the regex options at validation.
pub(crate) fn check_attribute_opts(opts: &BTreeMap<String, String>) -> Result<()> {
    for opt in ["labels-regex", "env-regex"] {
        if let Some(pattern) = opts.get(opt) {
            compile(opt, pattern)?;
        }
    }
    Ok(())
}

/// The labels and environment variables the options select, keys passed
/// through `key_mod` (journald needs upper-case field names).
pub(crate) fn extra_attributes(
    opts: &BTreeMap<String, String>,
    ctx: &LogContext,
    key_mod: fn(&str) -> String,
) -> Result<BTreeMap<String, String>> {
    let mut extra = BTreeMap::new();
    if let Some(names) = opts.get("labels").filter(|v| !v.is_empty()) {
        for name in names.split(',') {
            if let Some(value) = ctx.labels.get(name) {
                extra.insert(key_mod(name), value.clone());
            }
        }
    }
    if let Some(pattern) = opts.get("labels-regex").filter(|v| !v.is_empty()) {
        let re = compile("labels-regex", pattern)?;
        for (name, value) in &ctx.labels {
            if re.is_match(name) {
                extra.insert(key_mod(name), value.clone());
            }
        }
    }
    let env: BTreeMap<&str, &str> = ctx.env.iter().filter_map(|kv| kv.split_once('=')).collect();
    if let Some(names) = opts.get("env").filter(|v| !v.is_empty()) {
        for name in names.split(',') {
            if let Some(value) = env.get(name) {
                extra.insert(key_mod(name), (*value).to_string());
            }
        }
    }
    if let Some(pattern) = opts.get("env-regex").filter(|v| !v.is_empty()) {
        let re = compile("env-regex", pattern)?;
        for (name, value) in &env {
            if re.is_match(name) {
                extra.insert(key_mod(name), (*value).to_string());
            }
        }
    }
    Ok(extra)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx() -> LogContext {
        LogContext {
            container_id: "0123456789abcdef".repeat(4),
            container_name: "web".into(),
            image_name: "busybox:latest".into(),
            image_id: format!("sha256:{}", "fedcba9876543210".repeat(4)),
            daemon_name: "berthd".into(),
            ..LogContext::default()
        }
    }

    fn tag(template: &str) -> Result<String> {
        let opts = BTreeMap::from([("tag".to_string(), template.to_string())]);
        render(&opts, &ctx(), DEFAULT_TEMPLATE)
    }

    #[test]
    fn tag_fields_render_like_docker() {
        assert_eq!(
            render(&BTreeMap::new(), &ctx(), DEFAULT_TEMPLATE).unwrap(),
            "0123456789ab"
        );
        assert_eq!(
            tag("{{.ImageName}}/{{.Name}}/{{.ID}}").unwrap(),
            "busybox:latest/web/0123456789ab"
        );
        assert_eq!(tag("{{ .ImageID }}").unwrap(), "fedcba987654");
        assert_eq!(tag("{{.FullID}}").unwrap(), ctx().container_id);
        assert_eq!(tag("{{.ImageFullID}}").unwrap(), ctx().image_id);
        assert_eq!(tag("x {{- .DaemonName -}} y").unwrap(), "xberthdy");
        assert_eq!(tag("plain").unwrap(), "plain");
    }

    #[test]
    fn bad_templates_name_the_option() {
        let err = tag("{{.Nope}}").unwrap_err().to_string();
        assert!(err.contains("'tag'") && err.contains("{{.Nope}}"), "{err}");
        assert!(tag("{{.ID").is_err());
        assert!(tag("{{json .}}").is_err());
    }

    #[test]
    fn attributes_from_labels_and_env() {
        let mut c = ctx();
        c.labels = BTreeMap::from([
            ("com.example.team".to_string(), "infra".to_string()),
            ("version".to_string(), "3".to_string()),
        ]);
        c.env = vec!["TZ=UTC".into(), "SECRET=x".into(), "APP_MODE=prod".into()];
        let opts = BTreeMap::from([
            ("labels".to_string(), "version,missing".to_string()),
            ("labels-regex".to_string(), "^com\\.".to_string()),
            ("env".to_string(), "TZ".to_string()),
            ("env-regex".to_string(), "^APP_".to_string()),
        ]);
        let attrs = extra_attributes(&opts, &c, str::to_string).unwrap();
        let expected: BTreeMap<String, String> = [
            ("APP_MODE", "prod"),
            ("TZ", "UTC"),
            ("com.example.team", "infra"),
            ("version", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(attrs, expected);
    }
}
