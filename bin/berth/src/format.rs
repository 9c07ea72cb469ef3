//! `--format` handling shared by the listing commands: the `table` prefix
//! with a header row, `json` as `{{json .}}`, `\t`/`\n` escapes, and
//! tab alignment of table output.

use serde_json::Value;

use crate::tabwriter;
use crate::template::{Template, TemplateError};

/// A parsed `--format` value.
pub struct Format {
    template: Template,
    table: bool,
}

impl Format {
    /// `spec` as the user wrote it (`table {{.ID}}\t{{.Tag}}`, `json`, `{{.ID}}`).
    pub fn parse(spec: &str) -> Result<Format, TemplateError> {
        let (table, body) = match spec.strip_prefix("table") {
            Some(rest) => (true, rest),
            None if spec.trim() == "json" => (false, "{{json .}}"),
            None => (false, spec),
        };
        let body = body
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        Ok(Format {
            template: Template::parse(&body)
                .map_err(|e| TemplateError(format!("template parsing error: {e}")))?,
            table,
        })
    }

    /// One line per row; with `table`, a header row from `headers` and aligned columns.
    pub fn render(&self, headers: &Value, rows: &[Value]) -> Result<String, TemplateError> {
        let mut out = String::new();
        if self.table {
            out.push_str(&self.template.render(headers)?);
            out.push('\n');
        }
        for row in rows {
            out.push_str(&self.template.render(row)?);
            out.push('\n');
        }
        Ok(if self.table {
            tabwriter::align(&out)
        } else {
            out
        })
    }
}

/// `s` cut to `width` characters with a trailing `…`, as docker's `Ellipsis`.
pub fn ellipsis(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A 12-character image or container id without its `sha256:` prefix.
pub fn short_id(id: &str) -> String {
    let bare = id.strip_prefix("sha256:").unwrap_or(id);
    bare.chars().take(12).collect()
}

/// Go's `strconv.Quote` (`%q`): double quotes, `\\`, `\"` and control characters escaped.
pub fn go_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_prints_a_header_and_aligns() {
        let format = Format::parse("table {{.Repository}}\\t{{.Tag}}").expect("parse");
        let headers = json!({"Repository": "REPOSITORY", "Tag": "TAG"});
        let rows = [json!({"Repository": "busybox", "Tag": "latest"})];
        assert_eq!(
            format.render(&headers, &rows).expect("render"),
            "REPOSITORY   TAG\nbusybox      latest\n"
        );
    }

    #[test]
    fn json_and_plain_formats() {
        let rows = [json!({"ID": "abc"})];
        let json = Format::parse("json").expect("parse");
        assert_eq!(
            json.render(&Value::Null, &rows).expect("render"),
            "{\"ID\":\"abc\"}\n"
        );
        let plain = Format::parse("{{.ID}}").expect("parse");
        assert_eq!(plain.render(&Value::Null, &rows).expect("render"), "abc\n");
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(short_id("sha256:1aea1c180b7eb9f3019fd8"), "1aea1c180b7e");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }

    #[test]
    fn quoting_like_go() {
        assert_eq!(go_quote("a\"b\n"), r#""a\"b\n""#);
        assert_eq!(go_quote("sh -c 'echo a'"), r#""sh -c 'echo a'""#);
    }
}
