//! The commands that create, start or join a container's process: `create`,
//! `run`, `start`, `attach` and `exec`, in docker's order of requests
//! (create → attach → wait → start) and with its exit codes.

use std::io::IsTerminal;

use clap::{ArgAction, Args};
use serde_json::{json, Value};

use crate::attach::{
    self, exit_status, forward_signals, monitor_tty_size, status_result, wait_registered,
    StreamEnd, StreamOptions,
};
use crate::client::{url_encode, Client, Failure};
use crate::create_options::{
    api_older_than, read_kv_file, validate_env, CreateOptions, CreateRequest,
};
use crate::images::{familiar, normalized_name, split_tag};
use crate::progress::Sink;
use crate::terminal;

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    options: CreateOptions,
}

#[derive(Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long = "detach")]
    detach: bool,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "KEYS")]
    detach_keys: Option<String>,
    #[command(flatten)]
    options: CreateOptions,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long = "attach")]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long = "interactive")]
    interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "KEYS")]
    detach_keys: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "KEYS")]
    detach_keys: Option<String>,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "KEYS")]
    detach_keys: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long = "interactive")]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long = "tty")]
    tty: bool,
    /// Detached mode: run command in the background
    #[arg(short = 'd', long = "detach")]
    detach: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long = "privileged")]
    privileged: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "VAR")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// The container, then the command and its arguments
    #[arg(value_name = "CONTAINER COMMAND [ARG...]", required = true, num_args = 2..,
          trailing_var_arg = true)]
    args: Vec<String>,
}

/// `message` as docker words a `run`/`create` error: `berth: …` and a pointer to `--help`.
fn with_help(message: &str, command: &str) -> String {
    format!("berth: {message}\n\nRun 'berth {command} --help' for more information")
}

fn usage_failure(message: String, command: &str) -> Failure {
    Failure::Status {
        message: with_help(&message, command),
        code: 125,
    }
}

/// Docker's exit codes for a failed `run`: 127 when the command was not
/// found, 126 when it could not be executed, else 125.
fn run_failure(failure: Failure) -> Failure {
    let message = failure.to_string();
    let code = if message.contains("executable file not found")
        || message.contains("no such file or directory")
        || message.contains("system cannot find the file specified")
    {
        127
    } else if message.contains("permission denied") || message.contains("is a directory") {
        126
    } else {
        125
    };
    Failure::Status {
        message: with_help(&message, "run"),
        code,
    }
}

fn validate_pull(policy: &str) -> Result<(), String> {
    match policy {
        "always" | "missing" | "never" | "" => Ok(()),
        other => Err(format!(
            "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
        )),
    }
}

/// A tty cannot be attached to a stdin that is not a terminal.
fn check_tty(attach_stdin: bool, tty: bool) -> Result<(), Failure> {
    if tty && attach_stdin && !std::io::stdin().is_terminal() {
        return Err(Failure::Message("the input device is not a TTY".to_owned()));
    }
    Ok(())
}

/// How `image` is shown and pulled: (name for "Unable to find image",
/// `fromImage`, `tag`); `None` for an image ID, which is never pulled.
pub fn pull_reference(image: &str) -> Option<(String, String, String)> {
    let is_hex = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit());
    if image.starts_with("sha256:") || is_hex(image) {
        return None;
    }
    if let Some((name, digest)) = image.split_once('@') {
        let (repository, tag) = split_tag(name);
        let normalized = normalized_name(repository);
        let shown = match tag {
            Some(tag) => format!("{}:{tag}@{digest}", familiar(&normalized)),
            None => format!("{}@{digest}", familiar(&normalized)),
        };
        return Some((shown, normalized, digest.to_owned()));
    }
    let (repository, tag) = split_tag(image);
    let tag = tag.unwrap_or("latest");
    let normalized = normalized_name(repository);
    Some((
        format!("{}:{tag}", familiar(&normalized)),
        normalized,
        tag.to_owned(),
    ))
}

async fn pull_image(client: &Client, request: &CreateRequest, quiet: bool) -> Result<(), Failure> {
    let Some((_, from_image, tag)) = pull_reference(&request.image) else {
        return Ok(());
    };
    let sink = if quiet { Sink::Discard } else { Sink::Stderr };
    crate::images::pull_image(client, from_image, tag, request.platform.clone(), sink).await
}

/// Creates the container (pulling a missing image first, as docker does)
/// and returns its ID; the daemon's warnings go to stderr.
async fn create_container(
    client: &Client,
    request: &CreateRequest,
    options: &CreateOptions,
) -> Result<String, Failure> {
    if options.pull == "always" {
        pull_image(client, request, options.quiet).await?;
    }
    let mut query = Vec::new();
    if let Some(name) = &request.name {
        query.push(format!("name={}", url_encode(name)));
    }
    if let Some(platform) = &request.platform {
        query.push(format!("platform={}", url_encode(platform)));
    }
    let path = if query.is_empty() {
        "/containers/create".to_owned()
    } else {
        format!("/containers/create?{}", query.join("&"))
    };
    let created = match client.post_json(&path, Some(&request.body)).await {
        Err(failure) if failure.is_not_found() && options.pull == "missing" => {
            let Some((shown, _, _)) = pull_reference(&request.image) else {
                return Err(failure);
            };
            if !options.quiet {
                eprintln!("Unable to find image '{shown}' locally");
            }
            pull_image(client, request, options.quiet).await?;
            client.post_json(&path, Some(&request.body)).await?
        }
        other => other?,
    };
    if let Some(Value::Array(warnings)) = created.get("Warnings") {
        for warning in warnings.iter().filter_map(Value::as_str) {
            eprintln!("WARNING: {warning}");
        }
    }
    match created.get("Id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(Failure::Message(
            "the daemon created a container without an ID".to_owned(),
        )),
    }
}

pub async fn create(client: &Client, args: &CreateArgs) -> Result<(), Failure> {
    validate_pull(&args.options.pull).map_err(|m| usage_failure(m, "create"))?;
    let request = args
        .options
        .request(&client.api_version())
        .map_err(|m| usage_failure(m, "create"))?;
    let id = create_container(client, &request, &args.options).await?;
    println!("{id}");
    Ok(())
}

/// `/containers/<id>/attach` with docker's query for the chosen streams.
fn attach_path(id: &str, stdin: bool, stdout: bool, stderr: bool, keys: Option<&str>) -> String {
    let mut query = Vec::new();
    if let Some(keys) = keys.filter(|k| !k.is_empty()) {
        query.push(format!("detachKeys={}", url_encode(keys)));
    }
    if stderr {
        query.push("stderr=1".to_owned());
    }
    if stdin {
        query.push("stdin=1".to_owned());
    }
    if stdout {
        query.push("stdout=1".to_owned());
    }
    query.push("stream=1".to_owned());
    format!("/containers/{}/attach?{}", url_encode(id), query.join("&"))
}

async fn start_container(client: &Client, id: &str) -> Result<(), Failure> {
    client
        .post_json(&format!("/containers/{}/start", url_encode(id)), None)
        .await
        .map(drop)
}

pub async fn run(client: &Client, args: &RunArgs) -> Result<(), Failure> {
    let options = &args.options;
    validate_pull(&options.pull).map_err(|m| usage_failure(m, "run"))?;
    let mut request = options
        .request(&client.api_version())
        .map_err(|m| usage_failure(m, "run"))?;
    if !args.detach {
        check_tty(request.attach_stdin, request.tty)?;
    } else {
        if options.attach_flags_given() {
            return Err(Failure::Message(
                "conflicting options: cannot specify both --attach and --detach".to_owned(),
            ));
        }
        request.detach();
    }
    let id = create_container(client, &request, options)
        .await
        .map_err(run_failure)?;
    if args.sig_proxy {
        forward_signals(client, &id);
    }
    let attached = request.attach_stdin || request.attach_stdout || request.attach_stderr;
    let connection = if attached {
        let path = attach_path(
            &id,
            request.attach_stdin,
            request.attach_stdout,
            request.attach_stderr,
            args.detach_keys.as_deref(),
        );
        Some(client.hijack(&path, None).await?)
    } else {
        // Docker shows the ID before the start, which may still fail.
        println!("{id}");
        None
    };
    let condition = if request.auto_remove {
        "removed"
    } else {
        "next-exit"
    };
    let wait = wait_registered(client, &id, Some(condition)).await;
    if let Err(failure) = start_container(client, &id).await {
        drop(connection);
        if request.auto_remove {
            let _ = wait.await;
        }
        return Err(run_failure(failure));
    }
    let Some(connection) = connection else {
        return Ok(());
    };
    if request.tty && std::io::stdout().is_terminal() {
        monitor_tty_size(
            client.clone(),
            format!("/containers/{}/resize", url_encode(&id)),
        );
    }
    let streams = StreamOptions {
        stdin: request.attach_stdin,
        stdout: request.attach_stdout,
        stderr: request.attach_stderr,
        tty: request.tty,
        detach_keys: args.detach_keys.clone(),
    };
    let streaming = attach::stream(connection, &streams);
    let waiting = exit_status(wait);
    tokio::pin!(streaming, waiting);
    let status = tokio::select! {
        end = &mut streaming => match end? {
            StreamEnd::Detached => return Ok(()),
            StreamEnd::Finished => waiting.await,
        },
        status = &mut waiting => {
            // The output may still be on its way: read it to its end.
            if streams.stdout || streams.stderr {
                let _ = streaming.await;
            }
            status
        }
    };
    status_result(status)
}

pub async fn start(client: &Client, args: &StartArgs) -> Result<(), Failure> {
    if !(args.attach || args.interactive) {
        let mut failed = Vec::new();
        for container in &args.containers {
            match start_container(client, container).await {
                Ok(()) => println!("{container}"),
                Err(failure @ Failure::Connect(_)) => return Err(failure),
                Err(failure) => {
                    eprintln!("{failure}");
                    failed.push(container.as_str());
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        return Err(Failure::Message(format!(
            "Error: failed to start containers: {}",
            failed.join(", ")
        )));
    }
    if args.containers.len() > 1 {
        return Err(Failure::Message(
            "you cannot start and attach multiple containers at once".to_owned(),
        ));
    }
    let container = client
        .get_json(&format!(
            "/containers/{}/json",
            url_encode(&args.containers[0])
        ))
        .await?;
    let id = text(&container, "/Id");
    let tty = flag(&container, "/Config/Tty");
    let auto_remove = flag(&container, "/HostConfig/AutoRemove");
    if !tty {
        forward_signals(client, &id);
    }
    let stdin = args.interactive && flag(&container, "/Config/OpenStdin");
    let connection = client
        .hijack(
            &attach_path(&id, stdin, true, true, args.detach_keys.as_deref()),
            None,
        )
        .await?;
    let condition = if auto_remove { "removed" } else { "next-exit" };
    let wait = wait_registered(client, &id, Some(condition)).await;
    if let Err(failure) = start_container(client, &id).await {
        drop(connection);
        if auto_remove {
            let _ = wait.await;
        }
        return Err(failure);
    }
    if tty && std::io::stdout().is_terminal() {
        monitor_tty_size(
            client.clone(),
            format!("/containers/{}/resize", url_encode(&id)),
        );
    }
    let streams = StreamOptions {
        stdin,
        stdout: true,
        stderr: true,
        tty,
        detach_keys: args.detach_keys.clone(),
    };
    if attach::stream(connection, &streams).await? == StreamEnd::Detached {
        return Ok(());
    }
    status_result(exit_status(wait).await)
}

fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn flag(value: &Value, pointer: &str) -> bool {
    value
        .pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The container, refused unless it runs (not paused, not restarting).
async fn running_container(client: &Client, name: &str) -> Result<Value, Failure> {
    let container = client
        .get_json(&format!("/containers/{}/json", url_encode(name)))
        .await?;
    if !flag(&container, "/State/Running") {
        return Err(Failure::Message(
            "You cannot attach to a stopped container, start it first".to_owned(),
        ));
    }
    if flag(&container, "/State/Paused") {
        return Err(Failure::Message(
            "You cannot attach to a paused container, unpause it first".to_owned(),
        ));
    }
    if flag(&container, "/State/Restarting") {
        return Err(Failure::Message(
            "You cannot attach to a restarting container, wait until it is running".to_owned(),
        ));
    }
    Ok(container)
}

pub async fn attach(client: &Client, args: &AttachArgs) -> Result<(), Failure> {
    let wait = wait_registered(client, &args.container, None).await;
    let container = running_container(client, &args.container).await?;
    let tty = flag(&container, "/Config/Tty");
    check_tty(!args.no_stdin, tty)?;
    let stdin = !args.no_stdin && flag(&container, "/Config/OpenStdin");
    if args.sig_proxy && !tty {
        forward_signals(client, &args.container);
    }
    let connection = client
        .hijack(
            &attach_path(
                &args.container,
                stdin,
                true,
                true,
                args.detach_keys.as_deref(),
            ),
            None,
        )
        .await?;
    running_container(client, &args.container).await?;
    if tty && std::io::stdout().is_terminal() {
        let resize_path = format!("/containers/{}/resize", url_encode(&args.container));
        let _ = attach::resize(client, &resize_path, 1).await;
        monitor_tty_size(client.clone(), resize_path);
    }
    let streams = StreamOptions {
        stdin,
        stdout: true,
        stderr: true,
        tty,
        detach_keys: args.detach_keys.clone(),
    };
    if attach::stream(connection, &streams).await? == StreamEnd::Detached {
        return Err(Failure::Message("read escape sequence".to_owned()));
    }
    match wait.await {
        Ok(Ok(result)) => match result.error {
            Some(message) => Err(Failure::Message(message)),
            None => status_result(result.status),
        },
        Ok(Err(failure)) => Err(failure),
        Err(e) => Err(Failure::Message(e.to_string())),
    }
}

pub async fn exec(client: &Client, args: &ExecArgs) -> Result<(), Failure> {
    let container = &args.args[0];
    let mut env = Vec::new();
    for file in &args.env_file {
        env.extend(read_kv_file(file, true).map_err(Failure::Message)?);
    }
    for value in &args.env {
        env.push(validate_env(value).map_err(Failure::Message)?);
    }
    client
        .get_json(&format!("/containers/{}/json", url_encode(container)))
        .await?;
    let attach_stdin = !args.detach && args.interactive;
    if !args.detach {
        check_tty(attach_stdin, args.tty)?;
    }
    let mut body = json!({
        "User": args.user.clone().unwrap_or_default(),
        "Privileged": args.privileged,
        "Tty": args.tty,
        "AttachStdin": attach_stdin,
        "AttachStderr": !args.detach,
        "AttachStdout": !args.detach,
        "Detach": args.detach,
        "DetachKeys": args.detach_keys.clone().unwrap_or_default(),
        "Env": if env.is_empty() { Value::Null } else { json!(env) },
        "WorkingDir": args.workdir.clone().unwrap_or_default(),
        "Cmd": args.args[1..],
    });
    let mut start = json!({"Detach": args.detach, "Tty": args.tty});
    if args.tty && !api_older_than(&client.api_version(), (1, 42)) {
        let size = terminal::size(std::io::stdout()).map_or([0, 0], |(r, c)| [r, c]);
        body["ConsoleSize"] = json!(size);
        start["ConsoleSize"] = json!(size);
    }
    let created = client
        .post_json(
            &format!("/containers/{}/exec", url_encode(container)),
            Some(&body),
        )
        .await?;
    let id = created
        .get("Id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Failure::Message("exec ID empty".to_owned()))?
        .to_owned();
    let start_path = format!("/exec/{id}/start");
    if args.detach {
        return client.post_json(&start_path, Some(&start)).await.map(drop);
    }
    let connection = client.hijack(&start_path, Some(&start)).await?;
    if args.tty && std::io::stdin().is_terminal() {
        monitor_tty_size(client.clone(), format!("/exec/{id}/resize"));
    }
    let streams = StreamOptions {
        stdin: attach_stdin,
        stdout: true,
        stderr: true,
        tty: args.tty,
        detach_keys: args.detach_keys.clone(),
    };
    if attach::stream(connection, &streams).await? == StreamEnd::Detached {
        return Err(Failure::Message("read escape sequence".to_owned()));
    }
    let inspected = client.get_json(&format!("/exec/{id}/json")).await?;
    status_result(
        inspected
            .get("ExitCode")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_errors_get_dockers_exit_codes() {
        let code = |message: &str| run_failure(Failure::daemon(400, message)).exit_code();
        assert_eq!(
            code("exec: \"nosuch\": executable file not found in $PATH: unknown"),
            127
        );
        assert_eq!(code("open /x: no such file or directory"), 127);
        assert_eq!(code("exec: \"/etc\": permission denied"), 126);
        assert_eq!(code("No such image: x:latest"), 125);
        assert_eq!(
            run_failure(Failure::daemon(404, "gone")).to_string(),
            "berth: Error response from daemon: gone\n\nRun 'berth run --help' for more information"
        );
    }

    #[test]
    fn pulls_use_the_full_name_and_a_tag() {
        assert_eq!(
            pull_reference("busybox"),
            Some((
                "busybox:latest".to_owned(),
                "docker.io/library/busybox".to_owned(),
                "latest".to_owned()
            ))
        );
        assert_eq!(
            pull_reference("docker.io/library/nosuch:v1").map(|r| r.0),
            Some("nosuch:v1".to_owned())
        );
        assert_eq!(pull_reference(&"a".repeat(64)), None);
    }

    #[test]
    fn attach_query_matches_docker() {
        assert_eq!(
            attach_path("abc", true, true, true, None),
            "/containers/abc/attach?stderr=1&stdin=1&stdout=1&stream=1"
        );
        assert_eq!(
            attach_path("abc", false, true, false, Some("ctrl-x")),
            "/containers/abc/attach?detachKeys=ctrl-x&stdout=1&stream=1"
        );
    }
}
