//! The commands on existing containers: `ps`, `stop`, `restart`, `kill`,
//! `rm`, `pause`, `unpause`, `wait`, `rename`, `logs`, `top`, `port`,
//! `update`, `container prune` and `container inspect`, with docker's
//! tables, messages and exit codes.

use std::cmp::Ordering;

use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Map, Value};

use crate::attach::Output;
use crate::client::{url_encode, Client, Failure};
use crate::create_options::parse_restart_policy;
use crate::format::{ellipsis, go_quote, Format};
use crate::images::{confirm, familiar, normalized_name, parse_filter, split_tag};
use crate::inspect::{self, Kind};
use crate::tabwriter;
use crate::units;

/// `{"name": {"value": true}}`, the filters query parameter of the API.
fn filters_json(filters: &[(String, String)]) -> String {
    let mut map = Map::new();
    for (key, value) in filters {
        let entry = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(values) = entry {
            values.insert(value.clone(), Value::Bool(true));
        }
    }
    Value::Object(map).to_string()
}

/// A container name or ID as a path segment.
fn container_path(container: &str, rest: &str) -> String {
    format!("/containers/{}{rest}", url_encode(container))
}

/// Several failures as one, each on its line (Go's `errors.Join`); a lost
/// connection stops at once.
fn joined(errors: Vec<Failure>) -> Result<(), Failure> {
    if errors.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(Failure::Message(lines.join("\n")))
}

#[derive(Args)]
pub struct ListArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "FILTER", value_parser = parse_filter)]
    filter: Vec<(String, String)>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a Go template
    #[arg(long = "format", value_name = "FORMAT")]
    format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long = "latest")]
    latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only display container IDs
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Display total file sizes
    #[arg(short = 's', long = "size")]
    size: bool,
}

const DEFAULT_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

const RAW_FORMAT: &str = "container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\ncreated_at: {{.CreatedAt}}\nstate: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\nnames: {{.Names}}\nlabels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n";

/// The template `ps` renders (docker's `NewContainerFormat`).
fn list_format(format: &str, quiet: bool, size: bool) -> String {
    match format {
        "" | "table" if quiet => "{{.ID}}".to_owned(),
        "" | "table" if size => format!("{DEFAULT_TABLE}\t{{{{.Size}}}}"),
        "" | "table" => DEFAULT_TABLE.to_owned(),
        "raw" if quiet => "container_id: {{.ID}}".to_owned(),
        "raw" if size => format!("{RAW_FORMAT}size: {{{{.Size}}}}\\n"),
        "raw" => RAW_FORMAT.to_owned(),
        _ if quiet => "{{.ID}}".to_owned(),
        custom => custom.to_owned(),
    }
}

/// Whether a template shows sizes, which the daemon then has to compute.
fn uses_size(format: &str) -> bool {
    let compact: String = format.chars().filter(|c| !c.is_whitespace()).collect();
    format.contains(".Size") || compact.contains("{{json.}}")
}

pub async fn list(client: &Client, args: &ListArgs) -> Result<(), Failure> {
    let format = args.format.clone().unwrap_or_default();
    if !format.is_empty() && args.quiet {
        eprintln!("WARNING: Ignoring custom format, because both --format and --quiet are set.");
    }
    let size = args.size || (!args.quiet && uses_size(&format));
    let mut query = Vec::new();
    if args.all {
        query.push("all=1".to_owned());
    }
    let limit = if args.latest && args.last == -1 {
        1
    } else {
        args.last
    };
    if limit > 0 {
        query.push(format!("limit={limit}"));
    }
    if size {
        query.push("size=1".to_owned());
    }
    if !args.filter.is_empty() {
        query.push(format!(
            "filters={}",
            url_encode(&filters_json(&args.filter))
        ));
    }
    let path = if query.is_empty() {
        "/containers/json".to_owned()
    } else {
        format!("/containers/json?{}", query.join("&"))
    };
    let containers = client.get_json(&path).await?;
    let rows: Vec<Value> = containers
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|c| container_row(c, !args.no_trunc))
        .collect();
    let format = Format::parse(&list_format(&format, args.quiet, size))?;
    print!("{}", format.render(&list_headers(), &rows)?);
    Ok(())
}

fn list_headers() -> Value {
    json!({
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Labels": "LABELS",
        "LocalVolumes": "LOCAL VOLUMES",
        "Mounts": "MOUNTS",
        "Names": "NAMES",
        "Networks": "NETWORKS",
        "Platform": "PLATFORM",
        "Ports": "PORTS",
        "RunningFor": "CREATED",
        "Size": "SIZE",
        "State": "STATE",
        "Status": "STATUS",
    })
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn int_at(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// An ID without an algorithm prefix, cut to 12 characters (docker's `TruncateID`).
fn truncate_id(id: &str) -> String {
    let bare = id.split_once(':').map_or(id, |(_, rest)| rest);
    bare.chars().take(12).collect()
}

/// The fields docker's container formatter offers to `--format`.
fn container_row(container: &Value, trunc: bool) -> Value {
    let id = str_at(container, "Id");
    let names: Vec<&str> = container
        .get("Names")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(|n| n.strip_prefix('/').unwrap_or(n))
                .collect()
        })
        .unwrap_or_default();
    let names = match names.iter().find(|n| !n.contains('/')) {
        Some(name) if trunc => (*name).to_owned(),
        _ => names.join(","),
    };
    let command = str_at(container, "Command");
    let command = if trunc {
        ellipsis(command, 20)
    } else {
        command.to_owned()
    };
    let created = int_at(container, "Created");
    let size_rw = int_at(container, "SizeRw");
    let size_root = int_at(container, "SizeRootFs");
    let size = if size_root > 0 {
        format!(
            "{} (virtual {})",
            units::human_size_with_precision(size_rw as f64, 3),
            units::human_size_with_precision(size_root as f64, 3)
        )
    } else {
        units::human_size_with_precision(size_rw as f64, 3)
    };
    let mut labels: Vec<String> = container
        .get("Labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let mounts = container.get("Mounts").and_then(Value::as_array);
    let mount_names: Vec<String> = mounts
        .map(|mounts| {
            mounts
                .iter()
                .map(|m| {
                    let name = match str_at(m, "Name") {
                        "" => str_at(m, "Source"),
                        name => name,
                    };
                    if trunc {
                        ellipsis(name, 15)
                    } else {
                        name.to_owned()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let local_volumes = mounts.map_or(0, |mounts| {
        mounts
            .iter()
            .filter(|m| str_at(m, "Driver") == "local")
            .count()
    });
    let mut networks: Vec<&String> = container
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .map(|n| n.keys().collect())
        .unwrap_or_default();
    networks.sort();
    let networks: Vec<&str> = networks.iter().map(|n| n.as_str()).collect();
    let platform = container
        .pointer("/ImageManifestDescriptor/platform")
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "Command": go_quote(&command),
        "CreatedAt": units::go_time_string(created),
        "ID": if trunc { truncate_id(id) } else { id.to_owned() },
        "Image": display_image(str_at(container, "Image"), str_at(container, "ImageID"), trunc),
        "Labels": labels.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mount_names.join(","),
        "Names": names,
        "Networks": networks.join(","),
        "Platform": platform,
        "Ports": displayable_ports(container.get("Ports")),
        "RunningFor": units::since(created),
        "Size": size,
        "State": str_at(container, "State"),
        "Status": str_at(container, "Status"),
    })
}

/// The image column: the short ID when the container names its image by
/// ID, else the familiar name without digest.
fn display_image(image: &str, image_id: &str, trunc: bool) -> String {
    if image.is_empty() {
        return "<no image>".to_owned();
    }
    if !trunc {
        return image.to_owned();
    }
    if truncate_id(image_id) == truncate_id(image) {
        return truncate_id(image);
    }
    let is_id = image.len() == 64 && image.chars().all(|c| c.is_ascii_hexdigit());
    if is_id || image.chars().any(|c| c.is_ascii_uppercase()) {
        return image.to_owned();
    }
    let name = image.split_once('@').map_or(image, |(name, _)| name);
    let (repository, tag) = split_tag(name);
    let repository = familiar(&normalized_name(repository)).to_owned();
    match tag {
        Some(tag) => format!("{repository}:{tag}"),
        None => repository,
    }
}

/// `host:port`, with brackets around an IPv6 host (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The PORTS column: consecutive ports grouped into ranges, published ones
/// as `ip:public->private/proto` (docker's `DisplayablePorts`).
fn displayable_ports(ports: Option<&Value>) -> String {
    struct Port {
        ip: String,
        private: i64,
        public: i64,
        kind: String,
    }
    let mut ports: Vec<Port> = ports
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|p| Port {
            ip: str_at(p, "IP").to_owned(),
            private: int_at(p, "PrivatePort"),
            public: int_at(p, "PublicPort"),
            kind: str_at(p, "Type").to_owned(),
        })
        .collect();
    ports.sort_by(|a, b| {
        (a.private, &a.ip, a.public, &a.kind).cmp(&(b.private, &b.ip, b.public, &b.kind))
    });
    let form_group = |key: &str, first: i64, last: i64| {
        let parts: Vec<&str> = key.split('/').collect();
        let (ip, kind) = match parts.as_slice() {
            [ip, kind, ..] => (*ip, *kind),
            _ => ("", key),
        };
        let mut group = first.to_string();
        if first != last {
            group = format!("{group}-{last}");
        }
        if !ip.is_empty() {
            group = format!("{}->{group}", join_host_port(ip, &group));
        }
        format!("{group}/{kind}")
    };
    let mut groups: Vec<(String, i64, i64)> = Vec::new();
    let mut result = Vec::new();
    let mut host_mappings = Vec::new();
    for port in &ports {
        let mut key = port.kind.clone();
        if !port.ip.is_empty() {
            if port.public != port.private {
                host_mappings.push(format!(
                    "{}->{}/{}",
                    join_host_port(&port.ip, &port.public.to_string()),
                    port.private,
                    port.kind
                ));
                continue;
            }
            key = format!("{}/{}", port.ip, port.kind);
        }
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            None => groups.push((key, port.private, port.private)),
            Some(group) if port.private == group.2 + 1 => group.2 = port.private,
            Some(group) => {
                result.push(form_group(&group.0, group.1, group.2));
                group.1 = port.private;
                group.2 = port.private;
            }
        }
    }
    for (key, first, last) in &groups {
        result.push(form_group(key, *first, *last));
    }
    result.extend(host_mappings);
    result.join(", ")
}

#[derive(Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "timeout",
        visible_alias = "time",
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    timeout: Option<i64>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// `stop` (`action` "stop") and `restart` ("restart"): one request per
/// container, the names of those that worked printed.
pub async fn stop(client: &Client, args: &StopArgs, action: &str) -> Result<(), Failure> {
    let mut query = Vec::new();
    if let Some(timeout) = args.timeout {
        query.push(format!("t={timeout}"));
    }
    // Older daemons do not know the parameter; docker leaves it out for them.
    let signal_supported = !crate::create_options::api_older_than(&client.api_version(), (1, 42));
    if let Some(signal) = args.signal.as_ref().filter(|s| !s.is_empty()) {
        if signal_supported {
            query.push(format!("signal={}", url_encode(signal)));
        }
    }
    let suffix = if query.is_empty() {
        format!("/{action}")
    } else {
        format!("/{action}?{}", query.join("&"))
    };
    each_container(client, &args.containers, |client, container| {
        let path = container_path(container, &suffix);
        async move { client.post_json(&path, None).await.map(drop) }
    })
    .await
}

/// Runs `request` for every container, prints the names of those that
/// worked, and reports the others together.
async fn each_container<F, Fut>(
    client: &Client,
    containers: &[String],
    request: F,
) -> Result<(), Failure>
where
    F: Fn(Client, &str) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let mut errors = Vec::new();
    for container in containers {
        match request(client.clone(), container).await {
            Ok(()) => println!("{container}"),
            Err(failure @ Failure::Connect(_)) => return Err(failure),
            Err(failure) => errors.push(failure),
        }
    }
    joined(errors)
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long = "signal", value_name = "SIGNAL")]
    signal: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

pub async fn kill(client: &Client, args: &KillArgs) -> Result<(), Failure> {
    let suffix = match args.signal.as_ref().filter(|s| !s.is_empty()) {
        Some(signal) => format!("/kill?signal={}", url_encode(signal)),
        None => "/kill".to_owned(),
    };
    each_container(client, &args.containers, |client, container| {
        let path = container_path(container, &suffix);
        async move { client.post_json(&path, None).await.map(drop) }
    })
    .await
}

#[derive(Args)]
pub struct RemoveArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long = "force")]
    force: bool,
    /// Remove the specified link
    #[arg(short = 'l', long = "link")]
    link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long = "volumes")]
    volumes: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

pub async fn remove(client: &Client, args: &RemoveArgs) -> Result<(), Failure> {
    let mut query = Vec::new();
    if args.volumes {
        query.push("v=1");
    }
    if args.link {
        query.push("link=1");
    }
    if args.force {
        query.push("force=1");
    }
    let mut errors = Vec::new();
    for container in &args.containers {
        let name = container.trim_matches('/');
        let result = if name.is_empty() {
            Err(Failure::Message(
                "container name cannot be empty".to_owned(),
            ))
        } else if query.is_empty() {
            client.delete(&container_path(name, "")).await
        } else {
            client
                .delete(&container_path(name, &format!("?{}", query.join("&"))))
                .await
        };
        match result {
            Ok(()) => println!("{container}"),
            Err(failure @ Failure::Connect(_)) => return Err(failure),
            // Forcing the removal of what is already gone is no error.
            Err(failure) if args.force && failure.is_not_found() => eprintln!("{failure}"),
            Err(failure) => errors.push(failure),
        }
    }
    joined(errors)
}

#[derive(Args)]
pub struct ContainersArgs {
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// `pause` and `unpause` (`action`).
pub async fn pause(client: &Client, args: &ContainersArgs, action: &str) -> Result<(), Failure> {
    let suffix = format!("/{action}");
    each_container(client, &args.containers, |client, container| {
        let path = container_path(container, &suffix);
        async move { client.post_json(&path, None).await.map(drop) }
    })
    .await
}

pub async fn wait(client: &Client, args: &ContainersArgs) -> Result<(), Failure> {
    let mut errors = Vec::new();
    for container in &args.containers {
        let answer = async {
            let body = client
                .stream(Method::POST, &container_path(container, "/wait"), None)
                .await?;
            let bytes = body
                .collect()
                .await
                .map_err(|e| Failure::Message(e.to_string()))?
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                Failure::Message(format!("the daemon sent an invalid wait answer: {e}"))
            })
        };
        match answer.await {
            Ok(answer) => println!("{}", int_at(&answer, "StatusCode")),
            Err(failure @ Failure::Connect(_)) => return Err(failure),
            Err(failure) => errors.push(failure),
        }
    }
    joined(errors)
}

#[derive(Args)]
pub struct RenameArgs {
    #[arg(value_name = "CONTAINER")]
    container: String,
    #[arg(value_name = "NEW_NAME")]
    new_name: String,
}

pub async fn rename(client: &Client, args: &RenameArgs) -> Result<(), Failure> {
    let old = args.container.trim();
    let new = args.new_name.trim();
    if old.is_empty() || new.is_empty() {
        return Err(Failure::Message(
            "Error: Neither old nor new names may be empty".to_owned(),
        ));
    }
    let path = container_path(old, &format!("/rename?name={}", url_encode(new)));
    match client.post_json(&path, None).await {
        Ok(_) => Ok(()),
        Err(failure @ Failure::Connect(_)) => Err(failure),
        Err(failure) => {
            eprintln!("{failure}");
            Err(Failure::Message(format!(
                "Error: failed to rename container named {old}"
            )))
        }
    }
}

#[derive(Args)]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long = "details")]
    details: bool,
    /// Follow log output
    #[arg(short = 'f', long = "follow")]
    follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long = "since", value_name = "TIME")]
    since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(
        short = 'n',
        long = "tail",
        value_name = "N",
        default_value = "all",
        allow_hyphen_values = true
    )]
    tail: String,
    /// Show timestamps
    #[arg(short = 't', long = "timestamps")]
    timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)
    #[arg(long = "until", value_name = "TIME")]
    until: Option<String>,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

pub async fn logs(client: &Client, args: &LogsArgs) -> Result<(), Failure> {
    let container = client
        .get_json(&container_path(&args.container, "/json"))
        .await?;
    let id = str_at(&container, "Id");
    let tty = container
        .pointer("/Config/Tty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let now = chrono::Utc::now().timestamp();
    let time = |flag: &str, value: &Option<String>| -> Result<Option<String>, Failure> {
        match value.as_deref() {
            None | Some("") => Ok(None),
            Some(value) => units::api_timestamp(value, now).map(Some).ok_or_else(|| {
                Failure::Message(format!(
                    "invalid value for \"{flag}\": failed to parse value as time or duration: {}",
                    go_quote(value)
                ))
            }),
        }
    };
    let mut query = vec!["stderr=1".to_owned(), "stdout=1".to_owned()];
    if let Some(since) = time("since", &args.since)? {
        query.push(format!("since={since}"));
    }
    if let Some(until) = time("until", &args.until)? {
        query.push(format!("until={until}"));
    }
    if args.timestamps {
        query.push("timestamps=1".to_owned());
    }
    if args.details {
        query.push("details=1".to_owned());
    }
    if args.follow {
        query.push("follow=1".to_owned());
    }
    query.push(format!("tail={}", url_encode(&args.tail)));
    let mut body = client
        .stream(
            Method::GET,
            &container_path(id, &format!("/logs?{}", query.join("&"))),
            None,
        )
        .await?;
    let mut output = Output::new(tty);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Message(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            output.write(&data)?;
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct TopArgs {
    /// The container, then options for ps
    #[arg(value_name = "CONTAINER [ps OPTIONS]", required = true, num_args = 1..,
          trailing_var_arg = true)]
    args: Vec<String>,
}

pub async fn top(client: &Client, args: &TopArgs) -> Result<(), Failure> {
    let mut path = container_path(&args.args[0], "/top");
    if args.args.len() > 1 {
        path.push_str(&format!(
            "?ps_args={}",
            url_encode(&args.args[1..].join(" "))
        ));
    }
    let processes = client.get_json(&path).await?;
    let line = |cells: &Value| -> String {
        cells
            .as_array()
            .map(|cells| {
                cells
                    .iter()
                    .map(|c| c.as_str().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .unwrap_or_default()
    };
    let mut text = line(&processes["Titles"]);
    text.push('\n');
    for process in processes["Processes"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        text.push_str(&line(process));
        text.push('\n');
    }
    print!("{}", tabwriter::align_with(&text, tabwriter::TOP));
    Ok(())
}

#[derive(Args)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    container: String,
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

pub async fn port(client: &Client, args: &PortArgs) -> Result<(), Failure> {
    let container = client
        .get_json(&container_path(&args.container, "/json"))
        .await?;
    let ports = container
        .pointer("/NetworkSettings/Ports")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let frontend =
        |binding: &Value| join_host_port(str_at(binding, "HostIp"), str_at(binding, "HostPort"));
    let mut out = Vec::new();
    match &args.port {
        Some(wanted) => {
            let (number, proto) = wanted.split_once('/').unwrap_or((wanted, ""));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if number.parse::<u16>().is_err() {
                let reason = if number.chars().all(|c| c.is_ascii_digit()) && !number.is_empty() {
                    "value out of range"
                } else {
                    "invalid syntax"
                };
                return Err(Failure::Message(format!(
                    "Error: invalid port ({number}): strconv.ParseUint: parsing {}: {reason}",
                    go_quote(number)
                )));
            }
            let bindings = ports
                .get(&format!("{number}/{proto}"))
                .and_then(Value::as_array)
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    Failure::Message(format!(
                        "Error: No public port '{wanted}' published for {}",
                        args.container
                    ))
                })?;
            out.extend(bindings.iter().map(frontend));
        }
        None => {
            for (from, bindings) in &ports {
                for binding in bindings.as_array().map_or(&[][..], Vec::as_slice) {
                    out.push(format!("{from} -> {}", frontend(binding)));
                }
            }
        }
    }
    out.sort_by(|a, b| natural_order(a, b));
    if !out.is_empty() {
        println!("{}", out.join("\n"));
    }
    Ok(())
}

/// Numbers inside strings compared by value: `8080/tcp` after `80/tcp`
/// (the `sortorder.NaturalLess` docker sorts ports with).
fn natural_order(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (digits(a), digits(b));
                let (da, db) = (&a[..na], &b[..nb]);
                let trim = |d: &[u8]| {
                    let zeros = d.iter().take_while(|c| **c == b'0').count();
                    d[zeros..].to_vec()
                };
                let (ta, tb) = (trim(da), trim(db));
                let order = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(&tb));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)
    #[arg(long = "blkio-weight", value_name = "WEIGHT")]
    blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(
        long = "cpu-period",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(
        long = "cpu-quota",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    cpu_quota: Option<i64>,
    /// Limit the CPU real-time period in microseconds
    #[arg(
        long = "cpu-rt-period",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    cpu_rt_period: Option<i64>,
    /// Limit the CPU real-time runtime in microseconds
    #[arg(
        long = "cpu-rt-runtime",
        value_name = "MICROSECONDS",
        allow_negative_numbers = true
    )]
    cpu_rt_runtime: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "CPUS")]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "MEMS")]
    cpuset_mems: Option<String>,
    /// CPU shares (relative weight)
    #[arg(
        short = 'c',
        long = "cpu-shares",
        value_name = "SHARES",
        allow_negative_numbers = true
    )]
    cpu_shares: Option<i64>,
    /// Memory limit
    #[arg(short = 'm', long = "memory", value_name = "BYTES")]
    memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "BYTES")]
    memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "BYTES", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Restart policy to apply when a container exits
    #[arg(long = "restart", value_name = "POLICY")]
    restart: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "N", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Number of CPUs
    #[arg(long = "cpus", value_name = "DECIMAL")]
    cpus: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

impl UpdateArgs {
    fn any_flag(&self) -> bool {
        self.blkio_weight.is_some()
            || self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpu_rt_period.is_some()
            || self.cpu_rt_runtime.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some()
            || self.cpu_shares.is_some()
            || self.memory.is_some()
            || self.memory_reservation.is_some()
            || self.memory_swap.is_some()
            || self.restart.is_some()
            || self.pids_limit.is_some()
            || self.cpus.is_some()
    }

    /// The UpdateConfig docker sends: every resource, unset ones as zero.
    fn body(&self) -> Result<Value, Failure> {
        let size = |value: &Option<String>, unlimited: bool| -> Result<i64, Failure> {
            match value.as_deref() {
                None | Some("") => Ok(0),
                Some("-1") if unlimited => Ok(-1),
                Some(value) => units::ram_in_bytes(value).map_err(Failure::Message),
            }
        };
        let restart = match self.restart.as_deref() {
            Some(policy) if !policy.is_empty() => {
                parse_restart_policy(policy).map_err(Failure::Message)?
            }
            _ => json!({"Name": "", "MaximumRetryCount": 0}),
        };
        let nano_cpus = match &self.cpus {
            Some(cpus) => crate::create_options::parse_nano_cpus(cpus).map_err(Failure::Message)?,
            None => 0,
        };
        Ok(json!({
            "CpuShares": self.cpu_shares.unwrap_or(0),
            "Memory": size(&self.memory, false)?,
            "NanoCpus": nano_cpus,
            "CgroupParent": "",
            "BlkioWeight": self.blkio_weight.unwrap_or(0),
            "BlkioWeightDevice": null,
            "BlkioDeviceReadBps": null,
            "BlkioDeviceWriteBps": null,
            "BlkioDeviceReadIOps": null,
            "BlkioDeviceWriteIOps": null,
            "CpuPeriod": self.cpu_period.unwrap_or(0),
            "CpuQuota": self.cpu_quota.unwrap_or(0),
            "CpuRealtimePeriod": self.cpu_rt_period.unwrap_or(0),
            "CpuRealtimeRuntime": self.cpu_rt_runtime.unwrap_or(0),
            "CpusetCpus": self.cpuset_cpus.clone().unwrap_or_default(),
            "CpusetMems": self.cpuset_mems.clone().unwrap_or_default(),
            "Devices": null,
            "DeviceCgroupRules": null,
            "DeviceRequests": null,
            "MemoryReservation": size(&self.memory_reservation, false)?,
            "MemorySwap": size(&self.memory_swap, true)?,
            "MemorySwappiness": null,
            "OomKillDisable": null,
            "PidsLimit": self.pids_limit.filter(|n| *n != 0),
            "Ulimits": null,
            "CpuCount": 0,
            "CpuPercent": 0,
            "IOMaximumIOps": 0,
            "IOMaximumBandwidth": 0,
            "RestartPolicy": restart,
        }))
    }
}

pub async fn update(client: &Client, args: &UpdateArgs) -> Result<(), Failure> {
    if !args.any_flag() {
        return Err(Failure::Message(
            "you must provide one or more flags when using this command".to_owned(),
        ));
    }
    let body = args.body()?;
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for container in &args.containers {
        match client
            .post_json(&container_path(container, "/update"), Some(&body))
            .await
        {
            Ok(answer) => {
                println!("{container}");
                if let Some(Value::Array(list)) = answer.get("Warnings") {
                    warnings.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
                }
            }
            Err(failure @ Failure::Connect(_)) => return Err(failure),
            Err(failure) => errors.push(failure.to_string()),
        }
    }
    if !warnings.is_empty() {
        println!("{}", warnings.join("\n"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Message(errors.join("\n")))
    }
}

#[derive(Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter", value_name = "FILTER", value_parser = parse_filter)]
    filter: Vec<(String, String)>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long = "force")]
    force: bool,
}

pub async fn prune(client: &Client, args: &PruneArgs) -> Result<(), Failure> {
    if !args.force && !confirm("WARNING! This will remove all stopped containers.") {
        return Ok(());
    }
    let path = if args.filter.is_empty() {
        "/containers/prune".to_owned()
    } else {
        format!(
            "/containers/prune?filters={}",
            url_encode(&filters_json(&args.filter))
        )
    };
    let report = client.post_json(&path, None).await?;
    let deleted: Vec<&str> = report
        .get("ContainersDeleted")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut reclaimed = 0;
    if !deleted.is_empty() {
        println!("Deleted Containers:\n{}\n", deleted.join("\n"));
        reclaimed = int_at(&report, "SpaceReclaimed");
    }
    println!(
        "Total reclaimed space: {}",
        units::human_size(reclaimed as f64)
    );
    Ok(())
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    format: Option<String>,
    /// Display total file sizes
    #[arg(short = 's', long = "size")]
    size: bool,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

pub async fn inspect(client: &Client, args: &InspectArgs) -> Result<(), Failure> {
    inspect::inspect(
        client,
        &args.containers,
        args.format.as_deref(),
        &[Kind::Container],
        args.size,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_truncate_like_docker() {
        let container = json!({
            "Id": "16c422df4c336137f3bcb2bc6455414769b780375c12144ff1bb44f7ea21b418",
            "Names": ["/t2", "/other/link"],
            "Image": "docker.io/library/busybox:latest",
            "ImageID": "sha256:b204048e22989df33a5b28caa1689c1ad4150d838d8865a39e9c18ec796fbfcb",
            "Command": "sh -c 'echo a; echo b >&2; sleep 1000'",
            "Created": 0,
            "Labels": {"z": "1", "a": "2"},
            "State": "running",
            "Status": "Up 5 seconds",
            "NetworkSettings": {"Networks": {"none": {}}},
        });
        let row = container_row(&container, true);
        assert_eq!(row["ID"], json!("16c422df4c33"));
        assert_eq!(row["Names"], json!("t2"));
        assert_eq!(row["Image"], json!("busybox:latest"));
        assert_eq!(row["Command"], json!("\"sh -c 'echo a; echo…\""));
        assert_eq!(row["Labels"], json!("a=2,z=1"));
        assert_eq!(row["Networks"], json!("none"));
        assert_eq!(row["Size"], json!("0B"));
        let full = container_row(&container, false);
        assert_eq!(full["Names"], json!("t2,other/link"));
        assert_eq!(full["Image"], json!("docker.io/library/busybox:latest"));
    }

    #[test]
    fn images_named_by_id_show_the_short_id() {
        let id = "sha256:b204048e22989df33a5b28caa1689c1ad4150d838d8865a39e9c18ec796fbfcb";
        assert_eq!(display_image("b204048e2298", id, true), "b204048e2298");
        assert_eq!(display_image(id, id, true), "b204048e2298");
        assert_eq!(display_image("busybox@sha256:abc", "", true), "busybox");
        assert_eq!(display_image("", "", true), "<no image>");
    }

    #[test]
    fn ports_group_like_docker() {
        let ports = json!([
            {"PrivatePort": 80, "Type": "tcp"},
            {"PrivatePort": 81, "Type": "tcp"},
            {"PrivatePort": 82, "Type": "tcp"},
            {"PrivatePort": 53, "Type": "udp"},
            {"IP": "0.0.0.0", "PrivatePort": 443, "PublicPort": 8443, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 22, "PublicPort": 22, "Type": "tcp"},
        ]);
        assert_eq!(
            displayable_ports(Some(&ports)),
            "[::]:22->22/tcp, 53/udp, 80-82/tcp, 0.0.0.0:8443->443/tcp"
        );
        assert_eq!(displayable_ports(None), "");
    }

    #[test]
    fn formats_and_filters() {
        assert_eq!(list_format("", true, false), "{{.ID}}");
        assert_eq!(
            list_format("table", false, true),
            format!("{DEFAULT_TABLE}\t{{{{.Size}}}}")
        );
        assert_eq!(list_format("{{.Names}}", true, false), "{{.ID}}");
        assert!(uses_size("{{json .}}"));
        assert!(!uses_size("json"));
        assert_eq!(
            filters_json(&[
                ("name".to_owned(), "t2".to_owned()),
                ("status".to_owned(), "running".to_owned())
            ]),
            r#"{"name":{"t2":true},"status":{"running":true}}"#
        );
        assert_eq!(natural_order("8080/tcp", "80/tcp"), Ordering::Greater);
        assert_eq!(natural_order("a2", "a10"), Ordering::Less);
    }
}
