//! `version`, `info`, `system df` and `events`.

use clap::Args;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use crate::client::{Client, Failure, MAX_API_VERSION};
use crate::format::{short_id, Format};
use crate::images::{filter_map, parse_filter, split_tag};
use crate::tabwriter;
use crate::template::Template;
use crate::units;

#[derive(Args)]
pub struct VersionArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    format: Option<String>,
}

/// Go's names for the architectures Rust calls otherwise.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

const VERSION_TEMPLATE: &str = r#"Client:
 Version:	{{.Client.Version}}
 API version:	{{.Client.APIVersion}}{{if ne .Client.APIVersion .Client.DefaultAPIVersion}} (downgraded from {{.Client.DefaultAPIVersion}}){{end}}
 OS/Arch:	{{.Client.Os}}/{{.Client.Arch}}
 Host:	{{.Client.Host}}
{{- if .Server}}{{with .Server}}

Server:{{if .Platform.Name}} {{.Platform.Name}}{{end}}
{{- range .Components}}
 {{.Name}}:
{{- if eq .Name "Engine"}}
  Version:	{{.Version}}
  API version:	{{index .Details "ApiVersion"}} (minimum version {{index .Details "MinAPIVersion"}})
  Go version:	{{index .Details "GoVersion"}}
  Git commit:	{{index .Details "GitCommit"}}
  Built:	{{index .Details "BuildTime"}}
  OS/Arch:	{{index .Details "Os"}}/{{index .Details "Arch"}}
  Experimental:	{{index .Details "Experimental"}}
{{- else}}
  Version:	{{.Version}}
{{- range $key, $value := .Details}}
  {{$key}}:	{{$value}}
{{- end}}
{{- end}}
{{- end}}
{{- end}}{{end}}
"#;

/// Docker shows a build time as `Thu May  7 21:09:36 2026` (Go's ANSIC layout).
fn ansic_build_time(map: &mut Map<String, Value>) {
    let Some(Value::String(time)) = map.get("BuildTime") else {
        return;
    };
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(time) {
        let ansic = time.format("%a %b %e %H:%M:%S %Y").to_string();
        map.insert("BuildTime".to_owned(), Value::String(ansic));
    }
}

pub async fn version(host: &str, args: &VersionArgs) -> Result<(), Failure> {
    let connection = Client::connect(host).await;
    let default_api = format!("{}.{}", MAX_API_VERSION.0, MAX_API_VERSION.1);
    let client_info = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "APIVersion": connection.as_ref().map_or(default_api.clone(), Client::api_version),
        "DefaultAPIVersion": default_api,
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "Host": host,
    });
    let server = match &connection {
        Ok(client) => {
            let mut server = client.server_version.clone();
            if let Value::Object(map) = &mut server {
                // Go's field name, as docker's templates spell it.
                if let Some(api) = map.get("ApiVersion").cloned() {
                    map.insert("APIVersion".to_owned(), api);
                }
                ansic_build_time(map);
                if let Some(Value::Array(components)) = map.get_mut("Components") {
                    for component in components {
                        if let Some(Value::Object(details)) = component.get_mut("Details") {
                            ansic_build_time(details);
                        }
                    }
                }
            }
            server
        }
        Err(_) => Value::Null,
    };
    let data = json!({ "Client": client_info, "Server": server });
    let output = match args.format.as_deref() {
        Some(spec) => {
            let format = Format::parse(spec)?;
            format.render(&Value::Null, &[data])?
        }
        None => {
            let rendered = Template::parse(VERSION_TEMPLATE)?.render(&data)?;
            tabwriter::align_with(&rendered, tabwriter::VERSION)
        }
    };
    print!("{output}");
    connection.map(|_| ())
}

#[derive(Args)]
pub struct InfoArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    format: Option<String>,
}

fn push_line(out: &mut String, indent: usize, label: &str, value: impl std::fmt::Display) {
    out.push_str(&format!("{}{label}: {value}\n", " ".repeat(indent)));
}

/// The server half of `docker info`, for the fields a daemon without
/// swarm or plugins reports.
fn info_text(info: &Value, client: &Client) -> String {
    let mut out = String::new();
    out.push_str("Client:\n");
    push_line(&mut out, 1, "Version", env!("CARGO_PKG_VERSION"));
    push_line(&mut out, 1, "Host", client.host());
    out.push_str("\nServer:\n");
    push_line(&mut out, 1, "Containers", text(info, "Containers"));
    push_line(&mut out, 2, "Running", text(info, "ContainersRunning"));
    push_line(&mut out, 2, "Paused", text(info, "ContainersPaused"));
    push_line(&mut out, 2, "Stopped", text(info, "ContainersStopped"));
    push_line(&mut out, 1, "Images", text(info, "Images"));
    push_line(&mut out, 1, "Server Version", text(info, "ServerVersion"));
    push_line(&mut out, 1, "Storage Driver", text(info, "Driver"));
    if let Some(Value::Array(status)) = info.get("DriverStatus") {
        for pair in status {
            if let Some([key, value]) = pair.as_array().map(Vec::as_slice) {
                push_line(
                    &mut out,
                    2,
                    key.as_str().unwrap_or_default(),
                    value.as_str().unwrap_or_default(),
                );
            }
        }
    }
    push_line(&mut out, 1, "Logging Driver", text(info, "LoggingDriver"));
    push_line(&mut out, 1, "Cgroup Driver", text(info, "CgroupDriver"));
    push_line(&mut out, 1, "Cgroup Version", text(info, "CgroupVersion"));
    if let Some(Value::Object(runtimes)) = info.get("Runtimes") {
        let mut names: Vec<&String> = runtimes.keys().collect();
        names.sort();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        push_line(&mut out, 1, "Runtimes", names.join(" "));
    }
    push_line(&mut out, 1, "Default Runtime", text(info, "DefaultRuntime"));
    if let Some(Value::Array(options)) = info.get("SecurityOptions") {
        out.push_str(" Security Options:\n");
        for option in options.iter().filter_map(Value::as_str) {
            for (i, part) in option.split(',').enumerate() {
                let (key, value) = part.split_once('=').unwrap_or(("", part));
                if i == 0 {
                    out.push_str(&format!("  {value}\n"));
                } else {
                    let mut label = key.to_owned();
                    if let Some(first) = label.get_mut(0..1) {
                        first.make_ascii_uppercase();
                    }
                    out.push_str(&format!("   {label}: {value}\n"));
                }
            }
        }
    }
    push_line(&mut out, 1, "Kernel Version", text(info, "KernelVersion"));
    push_line(
        &mut out,
        1,
        "Operating System",
        text(info, "OperatingSystem"),
    );
    push_line(&mut out, 1, "OSType", text(info, "OSType"));
    push_line(&mut out, 1, "Architecture", text(info, "Architecture"));
    push_line(&mut out, 1, "CPUs", text(info, "NCPU"));
    let memory = info.get("MemTotal").and_then(Value::as_f64).unwrap_or(0.0);
    push_line(&mut out, 1, "Total Memory", units::binary_size(memory));
    push_line(&mut out, 1, "Name", text(info, "Name"));
    push_line(&mut out, 1, "ID", text(info, "ID"));
    push_line(&mut out, 1, "Docker Root Dir", text(info, "DockerRootDir"));
    push_line(&mut out, 1, "Debug Mode", text(info, "Debug"));
    push_line(&mut out, 1, "Experimental", text(info, "ExperimentalBuild"));
    if let Some(Value::Object(registry)) = info.get("RegistryConfig") {
        out.push_str(&registry_lines(registry));
    }
    push_line(
        &mut out,
        1,
        "Live Restore Enabled",
        text(info, "LiveRestoreEnabled"),
    );
    out
}

/// docker's "Insecure Registries" (by name, then CIDRs) and "Registry
/// Mirrors" (Docker Hub's), then the mirrors of other registries, which
/// only berthd has.
fn registry_lines(registry: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    let indexes: Vec<&serde_json::Map<String, Value>> = registry
        .get("IndexConfigs")
        .and_then(Value::as_object)
        .map(|m| m.values().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let insecure_names: Vec<String> = indexes
        .iter()
        .filter(|i| i.get("Secure") == Some(&Value::Bool(false)))
        .filter_map(|i| i.get("Name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let cidrs = strings(registry.get("InsecureRegistryCIDRs"));
    if !insecure_names.is_empty() || !cidrs.is_empty() {
        out.push_str(" Insecure Registries:\n");
        for entry in insecure_names.iter().chain(&cidrs) {
            out.push_str(&format!("  {entry}\n"));
        }
    }
    let hub = strings(registry.get("Mirrors"));
    if !hub.is_empty() {
        out.push_str(" Registry Mirrors:\n");
        for mirror in &hub {
            out.push_str(&format!("  {mirror}\n"));
        }
    }
    for index in &indexes {
        let name = index.get("Name").and_then(Value::as_str).unwrap_or("");
        let mirrors = strings(index.get("Mirrors"));
        if name != "docker.io" && !mirrors.is_empty() {
            out.push_str(&format!(" Registry Mirrors of {name}:\n"));
            for mirror in &mirrors {
                out.push_str(&format!("  {mirror}\n"));
            }
        }
    }
    out
}

pub async fn info(client: &Client, args: &InfoArgs) -> Result<(), Failure> {
    let info = client.get_json("/info").await?;
    match args.format.as_deref() {
        Some(spec) => print!("{}", Format::parse(spec)?.render(&Value::Null, &[info])?),
        None => print!("{}", info_text(&info, client)),
    }
    Ok(())
}

#[derive(Args)]
pub struct DfArgs {
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a Go template
    #[arg(long = "format", value_name = "FORMAT")]
    format: Option<String>,
    /// Show detailed information on space usage
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
}

fn int(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn reclaimable(reclaimable: i64, total: i64) -> String {
    if total > 0 {
        format!(
            "{} ({}%)",
            units::human_size(reclaimable as f64),
            reclaimable * 100 / total
        )
    } else {
        units::human_size(reclaimable as f64)
    }
}

fn df_summary(usage: &Value) -> Vec<Value> {
    let images = list(usage, "Images");
    let images_size = int(usage, "LayersSize");
    let used: i64 = images
        .iter()
        .filter(|i| int(i, "Containers") > 0 && int(i, "SharedSize") != -1)
        .map(|i| int(i, "Size") - int(i, "SharedSize"))
        .sum();
    let containers = list(usage, "Containers");
    let running = |c: &Value| c.get("State").and_then(Value::as_str) == Some("running");
    let containers_size: i64 = containers.iter().map(|c| int(c, "SizeRw")).sum();
    let containers_free: i64 = containers
        .iter()
        .filter(|c| !running(c))
        .map(|c| int(c, "SizeRw"))
        .sum();
    let volumes = list(usage, "Volumes");
    let volume_usage = |v: &Value, key: &str| v.get("UsageData").map_or(0, |u| int(u, key));
    let volumes_size: i64 = volumes.iter().map(|v| volume_usage(v, "Size").max(0)).sum();
    let volumes_free: i64 = volumes
        .iter()
        .filter(|v| volume_usage(v, "RefCount") == 0)
        .map(|v| volume_usage(v, "Size").max(0))
        .sum();
    let cache = list(usage, "BuildCache");
    let in_use = |c: &Value| c.get("InUse").and_then(Value::as_bool).unwrap_or(false);
    let shared = |c: &Value| c.get("Shared").and_then(Value::as_bool).unwrap_or(false);
    let cache_size: i64 = cache
        .iter()
        .filter(|c| !shared(c))
        .map(|c| int(c, "Size"))
        .sum();
    let cache_free: i64 = cache
        .iter()
        .filter(|c| !shared(c) && !in_use(c))
        .map(|c| int(c, "Size"))
        .sum();
    vec![
        json!({
            "Type": "Images",
            "TotalCount": images.len().to_string(),
            "Active": images.iter().filter(|i| int(i, "Containers") > 0).count().to_string(),
            "Size": units::human_size(images_size as f64),
            "Reclaimable": reclaimable(images_size - used, images_size),
        }),
        json!({
            "Type": "Containers",
            "TotalCount": containers.len().to_string(),
            "Active": containers.iter().filter(|c| running(c)).count().to_string(),
            "Size": units::human_size(containers_size as f64),
            "Reclaimable": reclaimable(containers_free, containers_size),
        }),
        json!({
            "Type": "Local Volumes",
            "TotalCount": volumes.len().to_string(),
            "Active": volumes.iter().filter(|v| volume_usage(v, "RefCount") > 0).count().to_string(),
            "Size": units::human_size(volumes_size as f64),
            "Reclaimable": reclaimable(volumes_free, volumes_size),
        }),
        json!({
            "Type": "Build Cache",
            "TotalCount": cache.len().to_string(),
            "Active": cache.iter().filter(|c| in_use(c)).count().to_string(),
            "Size": units::human_size(cache_size as f64),
            "Reclaimable": units::human_size(cache_free as f64),
        }),
    ]
}

fn table(spec: &str, headers: Value, rows: &[Value]) -> Result<String, Failure> {
    Ok(Format::parse(spec)?.render(&headers, rows)?)
}

fn df_verbose(usage: &Value) -> Result<String, Failure> {
    let mut out = String::from("Images space usage:\n\n");
    let images: Vec<Value> = list(usage, "Images")
        .iter()
        .map(|image| {
            let tags = list(image, "RepoTags");
            let (repo, tag) = tags
                .first()
                .and_then(Value::as_str)
                .filter(|t| *t != "<none>:<none>")
                .map(split_tag)
                .map_or(("<none>".to_owned(), "<none>".to_owned()), |(r, t)| {
                    (r.to_owned(), t.unwrap_or("<none>").to_owned())
                });
            let size = int(image, "Size");
            let shared = int(image, "SharedSize");
            json!({
                "Repository": repo,
                "Tag": tag,
                "ID": short_id(&text(image, "Id")),
                "CreatedSince": units::since(int(image, "Created")),
                "Size": units::human_size_with_precision(size as f64, 3),
                "SharedSize": if shared == -1 { "N/A".to_owned() } else { units::human_size(shared as f64) },
                "UniqueSize": if shared == -1 { "N/A".to_owned() } else { units::human_size((size - shared) as f64) },
                "Containers": int(image, "Containers").to_string(),
            })
        })
        .collect();
    out.push_str(&table(
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
        json!({"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED",
               "Size": "SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS"}),
        &images,
    )?);
    out.push_str("\nContainers space usage:\n\n");
    let containers: Vec<Value> = list(usage, "Containers")
        .iter()
        .map(|c| {
            let names: Vec<String> = list(c, "Names")
                .iter()
                .filter_map(Value::as_str)
                .map(|n| n.trim_start_matches('/').to_owned())
                .collect();
            json!({
                "ID": short_id(&text(c, "Id")),
                "Image": text(c, "Image"),
                "Command": format!("\"{}\"", crate::format::ellipsis(&text(c, "Command"), 20)),
                "LocalVolumes": list(c, "Mounts").iter().filter(|m| text(m, "Type") == "volume").count().to_string(),
                "Size": units::human_size(int(c, "SizeRw") as f64),
                "RunningFor": units::since(int(c, "Created")),
                "Status": text(c, "Status"),
                "Names": names.join(","),
            })
        })
        .collect();
    out.push_str(&table(
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
        json!({"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "LocalVolumes": "LOCAL VOLUMES",
               "Size": "SIZE", "RunningFor": "CREATED", "Status": "STATUS", "Names": "NAMES"}),
        &containers,
    )?);
    out.push_str("\nLocal Volumes space usage:\n\n");
    let volumes: Vec<Value> = list(usage, "Volumes")
        .iter()
        .map(|v| {
            let data = v.get("UsageData").cloned().unwrap_or(Value::Null);
            let size = int(&data, "Size");
            json!({
                "Name": text(v, "Name"),
                "Links": int(&data, "RefCount").to_string(),
                "Size": if size == -1 { "N/A".to_owned() } else { units::human_size(size as f64) },
            })
        })
        .collect();
    out.push_str(&table(
        "table {{.Name}}\t{{.Links}}\t{{.Size}}",
        json!({"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}),
        &volumes,
    )?);
    let cache = list(usage, "BuildCache");
    let cache_size: i64 = cache.iter().map(|c| int(c, "Size")).sum();
    out.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        units::human_size(cache_size as f64)
    ));
    let cache_rows: Vec<Value> = cache
        .iter()
        .map(|c| {
            json!({
                "ID": text(c, "ID"),
                "CacheType": text(c, "Type"),
                "Size": units::human_size(int(c, "Size") as f64),
                "CreatedSince": text(c, "CreatedAt"),
                "LastUsedSince": text(c, "LastUsedAt"),
                "UsageCount": int(c, "UsageCount").to_string(),
                "Shared": text(c, "Shared"),
            })
        })
        .collect();
    out.push_str(&table(
        "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}",
        json!({"ID": "CACHE ID", "CacheType": "CACHE TYPE", "Size": "SIZE", "CreatedSince": "CREATED",
               "LastUsedSince": "LAST USED", "UsageCount": "USAGE", "Shared": "SHARED"}),
        &cache_rows,
    )?);
    Ok(out)
}

pub async fn df(client: &Client, args: &DfArgs) -> Result<(), Failure> {
    let usage = client.get_json("/system/df").await?;
    if args.verbose && args.format.is_none() {
        print!("{}", df_verbose(&usage)?);
        return Ok(());
    }
    let spec = match args.format.as_deref() {
        Some(spec) if spec != "table" => spec,
        _ => "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
    };
    let headers = json!({"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE",
                         "Size": "SIZE", "Reclaimable": "RECLAIMABLE"});
    print!("{}", table(spec, headers, &df_summary(&usage))?);
    Ok(())
}

#[derive(Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "FILTER", value_parser = parse_filter)]
    filter: Vec<(String, String)>,
    /// Format output using a custom template: 'json' or a Go template
    #[arg(long = "format", value_name = "FORMAT")]
    format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long = "since", value_name = "TIME")]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long = "until", value_name = "TIME")]
    until: Option<String>,
}

fn timestamp(value: &Option<String>) -> Result<Option<String>, Failure> {
    let now = chrono::Utc::now().timestamp();
    value
        .as_deref()
        .map(|v| {
            units::api_timestamp(v, now).ok_or_else(|| {
                Failure::Message(format!("failed to parse value as time or duration: {v:?}"))
            })
        })
        .transpose()
}

/// An event with Go's field names, as docker's templates see it.
fn event_value(event: &bollard::models::EventMessage) -> Value {
    let kind = event
        .typ
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_default();
    let actor = event.actor.clone().unwrap_or_default();
    let attributes: Map<String, Value> = actor
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "Type": kind,
        "Action": event.action.clone().unwrap_or_default(),
        "Actor": { "ID": actor.id.unwrap_or_default(), "Attributes": attributes },
        "Scope": event.scope.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        "Time": event.time.unwrap_or(0),
        "TimeNano": event.time_nano.unwrap_or(0),
    })
}

/// Docker's line for an event: time, type, action, actor and its sorted attributes.
fn event_line(event: &Value) -> String {
    let mut line = String::new();
    let nanos = int(event, "TimeNano");
    let seconds = int(event, "Time");
    if nanos != 0 {
        line.push_str(&units::rfc3339_nano_fixed(nanos));
        line.push(' ');
    } else if seconds != 0 {
        line.push_str(&units::rfc3339_nano_fixed(seconds * 1_000_000_000));
        line.push(' ');
    }
    let actor = event.get("Actor").cloned().unwrap_or(Value::Null);
    line.push_str(&format!(
        "{} {} {}",
        text(event, "Type"),
        text(event, "Action"),
        text(&actor, "ID")
    ));
    if let Some(Value::Object(attributes)) = actor.get("Attributes") {
        if !attributes.is_empty() {
            let mut pairs: Vec<String> = attributes
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            line.push_str(&format!(" ({})", pairs.join(", ")));
        }
    }
    line.push('\n');
    line
}

pub async fn events(client: &Client, args: &EventsArgs) -> Result<(), Failure> {
    let format = args.format.as_deref().map(Format::parse).transpose()?;
    let options = bollard::query_parameters::EventsOptions {
        since: timestamp(&args.since)?,
        until: timestamp(&args.until)?,
        filters: filter_map(&args.filter),
    };
    let mut stream = client.docker.events(Some(options));
    use std::io::Write;
    while let Some(event) = stream.next().await {
        let event = event_value(&event?);
        let line = match &format {
            Some(format) => format.render(&Value::Null, &[event])?,
            None => event_line(&event),
        };
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(line.as_bytes())?;
        stdout.flush()?;
    }
    Ok(())
}
