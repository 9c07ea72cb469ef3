//! The subset of Go's `text/template` that `--format` needs, evaluated over
//! JSON values: `{{.A.B}}`, `{{json .}}`, `{{index .M "k"}}`, pipelines,
//! `{{range}}`, `{{if}}`/`{{else}}`, `{{with}}`, range variables, and the
//! functions docker adds (`json`, `join`, `split`, `lower`, `upper`, `title`,
//! `pad`, `truncate`, `println`). Values print as Go's `fmt` prints them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Range {
        key_var: Option<String>,
        value_var: Option<String>,
        over: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

type Pipeline = Vec<Command>;
type Command = Vec<Arg>;

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.A.B` (an empty path is `.` itself).
    Field(Vec<String>),
    /// `$x.A` (`$` alone is the root value).
    Variable(String, Vec<String>),
    Str(String),
    Number(f64),
    Bool(bool),
    Function(String),
    Nested(Pipeline),
}

/// A parsed `--format` template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const FUNCTIONS: [&str; 19] = [
    "json", "join", "split", "lower", "upper", "title", "pad", "truncate", "println", "index",
    "len", "eq", "ne", "not", "and", "or", "print", "printf", "slice",
];

enum Piece {
    Text(String),
    Action(String),
}

fn split_pieces(source: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_owned();
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError("template: unclosed action".to_owned()))?;
        let mut action = &after[..end];
        rest = &after[end + 2..];
        if let Some(trimmed) = action.strip_prefix("- ") {
            text = text.trim_end().to_owned();
            action = trimmed;
        }
        let trim_after = action.ends_with(" -");
        if trim_after {
            action = &action[..action.len() - 2];
        }
        pieces.push(Piece::Text(text));
        pieces.push(Piece::Action(action.trim().to_owned()));
        if trim_after {
            rest = rest.trim_start();
        }
    }
    pieces.push(Piece::Text(rest.to_owned()));
    Ok(pieces)
}

fn tokenize(action: &str) -> Result<Vec<String>, TemplateError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = action.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '`' {
            let mut token = String::from(c);
            i += 1;
            while i < chars.len() && chars[i] != c {
                if c == '"' && chars[i] == '\\' && i + 1 < chars.len() {
                    token.push(chars[i]);
                    i += 1;
                }
                token.push(chars[i]);
                i += 1;
            }
            if i >= chars.len() {
                return Err(TemplateError(format!(
                    "template: unterminated quoted string in {action:?}"
                )));
            }
            token.push(c);
            i += 1;
            tokens.push(token);
        } else if c == '(' || c == ')' || c == '|' || c == ',' {
            tokens.push(c.to_string());
            i += 1;
        } else if c == ':' && chars.get(i + 1) == Some(&'=') {
            tokens.push(":=".to_owned());
            i += 2;
        } else {
            let start = i;
            while i < chars.len() && !ends_word(&chars, i) {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        }
    }
    Ok(tokens)
}

/// True where an unquoted word of an action stops.
fn ends_word(chars: &[char], i: usize) -> bool {
    chars[i].is_whitespace()
        || matches!(chars[i], '(' | ')' | '|' | ',' | '"' | '`')
        || (chars[i] == ':' && chars.get(i + 1) == Some(&'='))
}

fn unquote(token: &str) -> Result<String, TemplateError> {
    if token.starts_with('`') {
        return Ok(token[1..token.len() - 1].to_owned());
    }
    let mut out = String::new();
    let mut chars = token[1..token.len() - 1].chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some(other) => {
                return Err(TemplateError(format!("template: unknown escape \\{other}")));
            }
            None => {}
        }
    }
    Ok(out)
}

fn field_path(token: &str) -> Vec<String> {
    token
        .split('.')
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_pipeline(tokens: &[String]) -> Result<Pipeline, TemplateError> {
    let mut position = 0;
    let pipeline = parse_pipeline_at(tokens, &mut position)?;
    if position != tokens.len() {
        return Err(TemplateError(format!(
            "template: unexpected {:?} in command",
            tokens[position]
        )));
    }
    Ok(pipeline)
}

fn parse_pipeline_at(tokens: &[String], position: &mut usize) -> Result<Pipeline, TemplateError> {
    let mut pipeline = Vec::new();
    let mut command = Vec::new();
    while *position < tokens.len() {
        let token = tokens[*position].as_str();
        *position += 1;
        match token {
            "|" => {
                if command.is_empty() {
                    return Err(TemplateError(
                        "template: missing command before |".to_owned(),
                    ));
                }
                pipeline.push(std::mem::take(&mut command));
            }
            "(" => command.push(Arg::Nested(parse_pipeline_at(tokens, position)?)),
            ")" => break,
            _ => command.push(parse_arg(token)?),
        }
    }
    if command.is_empty() {
        return Err(TemplateError(
            "template: missing value for command".to_owned(),
        ));
    }
    pipeline.push(command);
    Ok(pipeline)
}

fn parse_arg(token: &str) -> Result<Arg, TemplateError> {
    let first = token.chars().next().unwrap_or(' ');
    Ok(match first {
        '.' => Arg::Field(field_path(token)),
        '$' => {
            let (name, path) = token.split_once('.').unwrap_or((token, ""));
            Arg::Variable(name.to_owned(), field_path(path))
        }
        '"' | '`' => Arg::Str(unquote(token)?),
        '0'..='9' | '-' => Arg::Number(
            token
                .parse()
                .map_err(|_| TemplateError(format!("template: bad number syntax: {token:?}")))?,
        ),
        _ if token == "true" || token == "false" => Arg::Bool(token == "true"),
        _ if FUNCTIONS.contains(&token) => Arg::Function(token.to_owned()),
        _ => {
            return Err(TemplateError(format!(
                "template: function {token:?} not defined"
            )))
        }
    })
}

enum Block {
    If,
    With,
    Range {
        key_var: Option<String>,
        value_var: Option<String>,
    },
}

struct Frame {
    block: Block,
    pipeline: Pipeline,
    body: Vec<Node>,
    otherwise: Option<Vec<Node>>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut top: Vec<Node> = Vec::new();
        fn current<'a>(stack: &'a mut [Frame], top: &'a mut Vec<Node>) -> &'a mut Vec<Node> {
            match stack.last_mut() {
                Some(Frame {
                    otherwise: Some(nodes),
                    ..
                }) => nodes,
                Some(frame) => &mut frame.body,
                None => top,
            }
        }
        for piece in split_pieces(source)? {
            let action = match piece {
                Piece::Text(text) => {
                    if !text.is_empty() {
                        current(&mut stack, &mut top).push(Node::Text(text));
                    }
                    continue;
                }
                Piece::Action(action) => action,
            };
            if action.starts_with("/*") {
                continue;
            }
            let tokens = tokenize(&action)?;
            let Some(keyword) = tokens.first() else {
                return Err(TemplateError(
                    "template: missing value for command".to_owned(),
                ));
            };
            match keyword.as_str() {
                "if" | "with" => stack.push(Frame {
                    block: if keyword == "if" {
                        Block::If
                    } else {
                        Block::With
                    },
                    pipeline: parse_pipeline(&tokens[1..])?,
                    body: Vec::new(),
                    otherwise: None,
                }),
                "range" => {
                    let rest = &tokens[1..];
                    let (key_var, value_var, over) = match rest.iter().position(|t| t == ":=") {
                        Some(at) => {
                            let names: Vec<&String> =
                                rest[..at].iter().filter(|t| t.as_str() != ",").collect();
                            match names.as_slice() {
                                [value] => (None, Some((*value).clone()), &rest[at + 1..]),
                                [key, value] => (
                                    Some((*key).clone()),
                                    Some((*value).clone()),
                                    &rest[at + 1..],
                                ),
                                _ => {
                                    return Err(TemplateError(
                                        "template: too many declarations in range".to_owned(),
                                    ))
                                }
                            }
                        }
                        None => (None, None, rest),
                    };
                    stack.push(Frame {
                        block: Block::Range { key_var, value_var },
                        pipeline: parse_pipeline(over)?,
                        body: Vec::new(),
                        otherwise: None,
                    });
                }
                "else" => match stack.last_mut() {
                    Some(frame) if frame.otherwise.is_none() => frame.otherwise = Some(Vec::new()),
                    _ => return Err(TemplateError("template: unexpected {{else}}".to_owned())),
                },
                "end" => {
                    let frame = stack
                        .pop()
                        .ok_or_else(|| TemplateError("template: unexpected {{end}}".to_owned()))?;
                    let otherwise = frame.otherwise.unwrap_or_default();
                    let node = match frame.block {
                        Block::If => Node::If(frame.pipeline, frame.body, otherwise),
                        Block::With => Node::With(frame.pipeline, frame.body, otherwise),
                        Block::Range { key_var, value_var } => Node::Range {
                            key_var,
                            value_var,
                            over: frame.pipeline,
                            body: frame.body,
                            otherwise,
                        },
                    };
                    current(&mut stack, &mut top).push(node);
                }
                _ => {
                    let node = Node::Action(parse_pipeline(&tokens)?);
                    current(&mut stack, &mut top).push(node);
                }
            }
        }
        if !stack.is_empty() {
            return Err(TemplateError("template: unexpected EOF".to_owned()));
        }
        Ok(Template { nodes: top })
    }

    /// The template's output for `data`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut scope = Scope {
            root: data,
            vars: Vec::new(),
        };
        render_nodes(&self.nodes, data, &mut scope, &mut out)?;
        Ok(out)
    }
}

struct Scope<'a> {
    root: &'a Value,
    vars: Vec<(String, Value)>,
}

fn render_nodes(
    nodes: &[Node],
    dot: &Value,
    scope: &mut Scope<'_>,
    out: &mut String,
) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Action(pipeline) => {
                out.push_str(&go_print(&eval_pipeline(pipeline, dot, scope)?))
            }
            Node::If(pipeline, body, otherwise) => {
                let branch = if truthy(&eval_pipeline(pipeline, dot, scope)?) {
                    body
                } else {
                    otherwise
                };
                render_nodes(branch, dot, scope, out)?;
            }
            Node::With(pipeline, body, otherwise) => {
                let value = eval_pipeline(pipeline, dot, scope)?;
                if truthy(&value) {
                    render_nodes(body, &value, scope, out)?;
                } else {
                    render_nodes(otherwise, dot, scope, out)?;
                }
            }
            Node::Range {
                key_var,
                value_var,
                over,
                body,
                otherwise,
            } => {
                let items: Vec<(Value, Value)> = match eval_pipeline(over, dot, scope)? {
                    Value::Array(items) => items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (Value::from(i), v))
                        .collect(),
                    Value::Object(map) => {
                        let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                        entries.sort_by(|a, b| a.0.cmp(&b.0));
                        entries
                            .into_iter()
                            .map(|(k, v)| (Value::String(k), v))
                            .collect()
                    }
                    Value::Null => Vec::new(),
                    other => {
                        return Err(TemplateError(format!(
                            "template: range can't iterate over {}",
                            go_print(&other)
                        )))
                    }
                };
                if items.is_empty() {
                    render_nodes(otherwise, dot, scope, out)?;
                }
                for (key, value) in items {
                    let saved = scope.vars.len();
                    if let Some(name) = key_var {
                        scope.vars.push((name.clone(), key));
                    }
                    if let Some(name) = value_var {
                        scope.vars.push((name.clone(), value.clone()));
                    }
                    render_nodes(body, &value, scope, out)?;
                    scope.vars.truncate(saved);
                }
            }
        }
    }
    Ok(())
}

fn lookup(value: &Value, path: &[String]) -> Value {
    let mut current = value;
    for part in path {
        match current.get(part) {
            Some(next) => current = next,
            None => return Value::Null,
        }
    }
    current.clone()
}

fn eval_pipeline(
    pipeline: &Pipeline,
    dot: &Value,
    scope: &mut Scope<'_>,
) -> Result<Value, TemplateError> {
    let mut piped: Option<Value> = None;
    for command in pipeline {
        piped = Some(eval_command(command, piped.take(), dot, scope)?);
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn eval_arg(arg: &Arg, dot: &Value, scope: &mut Scope<'_>) -> Result<Value, TemplateError> {
    Ok(match arg {
        Arg::Field(path) => lookup(dot, path),
        Arg::Variable(name, path) => {
            if name == "$" {
                lookup(scope.root, path)
            } else {
                let value = scope
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        TemplateError(format!("template: undefined variable {name:?}"))
                    })?;
                lookup(&value, path)
            }
        }
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Number(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Arg::Bool(b) => Value::Bool(*b),
        Arg::Nested(pipeline) => eval_pipeline(pipeline, dot, scope)?,
        Arg::Function(name) => call(name, Vec::new())?,
    })
}

fn eval_command(
    command: &Command,
    piped: Option<Value>,
    dot: &Value,
    scope: &mut Scope<'_>,
) -> Result<Value, TemplateError> {
    match command.split_first() {
        Some((Arg::Function(name), rest)) => {
            let mut args = rest
                .iter()
                .map(|arg| eval_arg(arg, dot, scope))
                .collect::<Result<Vec<_>, _>>()?;
            args.extend(piped);
            call(name, args)
        }
        Some((arg, [])) => match piped {
            None => eval_arg(arg, dot, scope),
            Some(_) => Err(TemplateError(
                "template: can't give argument to non-function".to_owned(),
            )),
        },
        _ => Err(TemplateError(
            "template: can't give argument to non-function".to_owned(),
        )),
    }
}

fn as_text(value: &Value) -> String {
    go_print(value)
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
    let wrong = || TemplateError(format!("template: wrong number of args for {name}"));
    let arg = |i: usize| args.get(i).cloned().ok_or_else(wrong);
    Ok(match name {
        "json" => Value::String(json_string(&arg(0)?)),
        "join" => {
            let items = match arg(0)? {
                Value::Array(items) => items.iter().map(as_text).collect::<Vec<_>>(),
                other => vec![as_text(&other)],
            };
            Value::String(items.join(&as_text(&arg(1)?)))
        }
        "split" => Value::Array(
            as_text(&arg(0)?)
                .split(as_text(&arg(1)?).as_str())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        "lower" => Value::String(as_text(&arg(0)?).to_lowercase()),
        "upper" => Value::String(as_text(&arg(0)?).to_uppercase()),
        "title" => Value::String(title_case(&as_text(&arg(0)?))),
        "pad" => {
            let text = as_text(&arg(0)?);
            let before = as_number(&arg(1)?).unwrap_or(0.0) as usize;
            let after = as_number(&arg(2)?).unwrap_or(0.0) as usize;
            Value::String(format!("{}{text}{}", " ".repeat(before), " ".repeat(after)))
        }
        "truncate" => {
            let text = as_text(&arg(0)?);
            let length = as_number(&arg(1)?).unwrap_or(0.0) as usize;
            Value::String(text.chars().take(length).collect())
        }
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(as_text).collect::<Vec<_>>().join(" ")
        )),
        "print" => Value::String(args.iter().map(as_text).collect::<Vec<_>>().concat()),
        "printf" => Value::String(printf(&as_text(&arg(0)?), &args[1..])),
        "index" => {
            let mut value = arg(0)?;
            for key in &args[1..] {
                value = match (&value, key) {
                    (Value::Object(map), key) => {
                        map.get(&as_text(key)).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Array(items), key) => as_number(key)
                        .and_then(|i| items.get(i as usize).cloned())
                        .ok_or_else(|| TemplateError("template: index out of range".to_owned()))?,
                    _ => Value::Null,
                };
            }
            value
        }
        "slice" => {
            let text = as_text(&arg(0)?);
            let start = args.get(1).and_then(as_number).unwrap_or(0.0) as usize;
            let end = args
                .get(2)
                .and_then(as_number)
                .map_or(text.len(), |n| n as usize);
            Value::String(
                text.get(start..end.min(text.len()))
                    .unwrap_or("")
                    .to_owned(),
            )
        }
        "len" => Value::from(match arg(0)? {
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            Value::String(s) => s.len(),
            _ => {
                return Err(TemplateError(
                    "template: len of unsupported type".to_owned(),
                ))
            }
        }),
        "eq" => {
            let first = arg(0)?;
            Value::Bool(args[1..].iter().any(|other| values_equal(&first, other)))
        }
        "ne" => Value::Bool(!values_equal(&arg(0)?, &arg(1)?)),
        "not" => Value::Bool(!truthy(&arg(0)?)),
        "and" => args
            .iter()
            .find(|v| !truthy(v))
            .or(args.last())
            .cloned()
            .ok_or_else(wrong)?,
        "or" => args
            .iter()
            .find(|v| truthy(v))
            .or(args.last())
            .cloned()
            .ok_or_else(wrong)?,
        _ => {
            return Err(TemplateError(format!(
                "template: function {name:?} not defined"
            )))
        }
    })
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (as_number(a), as_number(b), a, b) {
        (Some(x), Some(y), Value::Number(_), Value::Number(_)) => x == y,
        _ => a == b,
    }
}

fn title_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut start = true;
    for c in text.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(&json_string(args.next().unwrap_or(&Value::Null))),
            Some(_) => out.push_str(&args.next().map(as_text).unwrap_or_default()),
            None => out.push('%'),
        }
    }
    out
}

/// Go's truthiness: false, 0, "", nil and empty collections are false.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// `json.Marshal`: compact, with `<`, `>` and `&` escaped as Go does.
pub fn json_string(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// A value as Go's `fmt.Print` shows it: `[a b]`, `map[k:v]`, `<no value>` for nothing.
pub fn go_print(value: &Value) -> String {
    match value {
        Value::Null => "<no value>".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(go_print_nested)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            format!(
                "map[{}]",
                entries
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", go_print_nested(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

fn go_print_nested(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_owned(),
        other => go_print(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(template: &str, data: &Value) -> String {
        Template::parse(template)
            .expect("parse")
            .render(data)
            .expect("render")
    }

    #[test]
    fn fields_functions_and_blocks() {
        let data = json!({
            "Id": "sha256:abc",
            "RepoTags": ["a:1", "b:2"],
            "Config": {"Labels": {"z": "1", "a": "<x>"}, "Env": null},
            "Size": 1982314
        });
        assert_eq!(render("{{.Id}} {{.Size}}", &data), "sha256:abc 1982314");
        assert_eq!(render("{{.Config.Labels}}", &data), "map[a:<x> z:1]");
        assert_eq!(render("{{json .RepoTags}}", &data), r#"["a:1","b:2"]"#);
        assert_eq!(render(r#"{{index .Config.Labels "a"}}"#, &data), "<x>");
        assert_eq!(
            render("{{json .Config.Labels}}", &data),
            r#"{"a":"\u003cx\u003e","z":"1"}"#
        );
        assert_eq!(
            render("{{range .RepoTags}}[{{.}}]{{end}}", &data),
            "[a:1][b:2]"
        );
        assert_eq!(
            render(
                "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
                &data
            ),
            "a=<x>;z=1;"
        );
        assert_eq!(
            render("{{if .Config.Env}}yes{{else}}no{{end}}", &data),
            "no"
        );
        assert_eq!(render("{{.Id | upper}}", &data), "SHA256:ABC");
        assert_eq!(render("{{join .RepoTags \", \"}}", &data), "a:1, b:2");
        assert_eq!(render("{{upper (index .RepoTags 0)}}", &data), "A:1");
        assert_eq!(render("{{.Missing}}", &data), "<no value>");
        assert_eq!(render("{{- .Id -}}  ", &data), "sha256:abc");
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Template::parse("{{.Id").is_err());
        assert!(Template::parse("{{nosuch .Id}}").is_err());
        assert!(Template::parse("{{range .X}}").is_err());
        assert!(Template::parse("{{end}}").is_err());
    }
}
