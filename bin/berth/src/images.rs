//! The image commands: `images`, `image inspect|history|tag|rm|prune|load|save|import`,
//! `pull` and `push` (with the credentials `login` kept).

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptions, ListImagesOptions, PruneImagesOptions,
    PushImageOptions, RemoveImageOptions, TagImageOptions,
};
use clap::Args;
use futures_util::StreamExt;
use hyper::body::Bytes;
use serde_json::{json, Value};

use crate::client::{Client, Failure};
use crate::credentials;
use crate::format::{ellipsis, short_id, Format};
use crate::inspect;
use crate::progress;
use crate::units;

#[derive(Args)]
pub struct ListArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Show digests
    #[arg(long = "digests")]
    digests: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter", value_name = "FILTER", value_parser = parse_filter)]
    filter: Vec<(String, String)>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a Go template
    #[arg(long = "format", value_name = "FORMAT")]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

/// `key=value` of a `--filter` flag.
pub fn parse_filter(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) => Ok((key.trim().to_lowercase(), value.to_owned())),
        None => Err(format!(
            "bad format of filter (expected name=value): {value}"
        )),
    }
}

pub fn filter_map(filters: &[(String, String)]) -> Option<HashMap<String, Vec<String>>> {
    if filters.is_empty() {
        return None;
    }
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in filters {
        map.entry(key.clone()).or_default().push(value.clone());
    }
    Some(map)
}

fn is_dangling(image: &bollard::models::ImageSummary) -> bool {
    let no_tags = image.repo_tags.is_empty() || image.repo_tags == ["<none>:<none>"];
    let no_digests = image.repo_digests.is_empty() || image.repo_digests == ["<none>@<none>"];
    no_tags && no_digests
}

/// The short name docker shows: `busybox`, not `docker.io/library/busybox`.
pub fn familiar(repository: &str) -> &str {
    repository
        .strip_prefix("docker.io/library/")
        .or_else(|| repository.strip_prefix("docker.io/"))
        .unwrap_or(repository)
}

/// The full name a registry knows a repository by: `busybox` is
/// `docker.io/library/busybox`, `me/app` is `docker.io/me/app`.
pub fn normalized_name(repository: &str) -> String {
    let (domain, rest) = match repository.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => ("docker.io", repository),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    if domain == "docker.io" && !rest.contains('/') {
        format!("docker.io/library/{rest}")
    } else {
        format!("{domain}/{rest}")
    }
}

/// The registry of a name [`normalized_name`] made.
pub fn registry_of(normalized: &str) -> &str {
    normalized.split('/').next().unwrap_or("docker.io")
}

/// `repo:tag` → (repo, tag); the tag is after the last `:` that follows the last `/`.
pub fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            &reference[..name_start + i],
            Some(&reference[name_start + i + 1..]),
        ),
        None => (reference, None),
    }
}

/// One row per repository:tag (and per digest with `--digests`), in docker's order.
fn image_rows(
    image: &bollard::models::ImageSummary,
    digests: bool,
) -> Vec<(String, String, String)> {
    let none = || "<none>".to_owned();
    if is_dangling(image) {
        return vec![(none(), none(), none())];
    }
    let mut tags: Vec<(String, Vec<String>)> = Vec::new();
    for reference in &image.repo_tags {
        let (repo, tag) = split_tag(reference);
        let (Some(tag), repo) = (tag, familiar(repo).to_owned()) else {
            continue;
        };
        match tags.iter_mut().find(|(r, _)| *r == repo) {
            Some((_, list)) => list.push(tag.to_owned()),
            None => tags.push((repo, vec![tag.to_owned()])),
        }
    }
    let mut repo_digests: Vec<(String, Vec<String>)> = Vec::new();
    for reference in &image.repo_digests {
        let Some((repo, digest)) = reference.split_once('@') else {
            continue;
        };
        let repo = familiar(repo).to_owned();
        match repo_digests.iter_mut().find(|(r, _)| *r == repo) {
            Some((_, list)) => list.push(digest.to_owned()),
            None => repo_digests.push((repo, vec![digest.to_owned()])),
        }
    }
    let mut rows = Vec::new();
    for (repo, tag_list) in &tags {
        let position = repo_digests.iter().position(|(r, _)| r == repo);
        let digest_list = position
            .map(|i| repo_digests.remove(i).1)
            .filter(|_| digests)
            .unwrap_or_default();
        for tag in tag_list {
            if digest_list.is_empty() {
                rows.push((repo.clone(), tag.clone(), none()));
            }
            for digest in &digest_list {
                rows.push((repo.clone(), tag.clone(), digest.clone()));
            }
        }
    }
    for (repo, digest_list) in repo_digests {
        if digests {
            for digest in digest_list {
                rows.push((repo.clone(), none(), digest));
            }
        } else {
            rows.push((repo, none(), String::new()));
        }
    }
    rows
}

fn count_or_na(value: i64) -> String {
    if value == -1 {
        "N/A".to_owned()
    } else {
        value.to_string()
    }
}

/// The fields docker's image formatter offers to `--format`.
fn image_row_value(
    image: &bollard::models::ImageSummary,
    (repository, tag, digest): (String, String, String),
    truncate: bool,
) -> Value {
    let id = if truncate {
        short_id(&image.id)
    } else {
        image.id.clone()
    };
    let shared = |f: fn(i64, i64) -> i64| {
        if image.shared_size == -1 {
            "N/A".to_owned()
        } else {
            units::human_size(f(image.size, image.shared_size) as f64)
        }
    };
    json!({
        "Containers": count_or_na(image.containers),
        "CreatedAt": units::go_time_string(image.created),
        "CreatedSince": units::since(image.created),
        "Digest": digest,
        "ID": id,
        "Repository": repository,
        "SharedSize": shared(|_, shared| shared),
        "Size": units::human_size_with_precision(image.size as f64, 3),
        "Tag": tag,
        "UniqueSize": shared(|size, shared| size - shared),
        "VirtualSize": units::human_size(image.size as f64),
    })
}

fn image_headers() -> Value {
    json!({
        "Containers": "CONTAINERS",
        "CreatedAt": "CREATED AT",
        "CreatedSince": "CREATED",
        "Digest": "DIGEST",
        "ID": "IMAGE ID",
        "Repository": "REPOSITORY",
        "SharedSize": "SHARED SIZE",
        "Size": "SIZE",
        "Tag": "TAG",
        "UniqueSize": "UNIQUE SIZE",
        "VirtualSize": "VIRTUAL SIZE",
    })
}

pub async fn list(client: &Client, args: &ListArgs) -> Result<(), Failure> {
    let mut filters = args.filter.clone();
    if let Some(reference) = &args.reference {
        filters.push(("reference".to_owned(), reference.clone()));
    }
    let images = client
        .docker
        .list_images(Some(ListImagesOptions {
            all: args.all,
            filters: filter_map(&filters),
            digests: args.digests,
            ..Default::default()
        }))
        .await?;
    let spec = match (&args.format, args.quiet) {
        (_, true) => "{{.ID}}".to_owned(),
        (Some(format), false) if format != "table" => format.clone(),
        _ if args.digests => {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
                .to_owned()
        }
        _ => "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".to_owned(),
    };
    let format = Format::parse(&spec)?;
    let show_digests = args.digests || spec.contains("{{.Digest}}");
    let mut rows = Vec::new();
    for image in &images {
        for row in image_rows(image, show_digests) {
            rows.push(image_row_value(image, row, !args.no_trunc));
        }
    }
    print!("{}", format.render(&image_headers(), &rows)?);
    Ok(())
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go template
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    format: Option<String>,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

pub async fn inspect(client: &Client, args: &InspectArgs) -> Result<(), Failure> {
    inspect::inspect(
        client,
        &args.images,
        args.format.as_deref(),
        &[inspect::Kind::Image],
        false,
    )
    .await
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a Go template
    #[arg(long = "format", value_name = "FORMAT")]
    format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long = "human", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    #[arg(value_name = "IMAGE")]
    image: String,
}

pub async fn history(client: &Client, args: &HistoryArgs) -> Result<(), Failure> {
    let layers = client.docker.image_history(&args.image).await?;
    let spec = match (&args.format, args.quiet) {
        (_, true) => "{{.ID}}".to_owned(),
        (Some(format), false) if format != "table" => format.clone(),
        _ if args.human => {
            "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".to_owned()
        }
        _ => "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".to_owned(),
    };
    let format = Format::parse(&spec)?;
    let headers = json!({
        "ID": "IMAGE",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY",
        "Size": "SIZE",
        "Comment": "COMMENT",
    });
    let rows: Vec<Value> = layers
        .iter()
        .map(|layer| {
            let id = if args.no_trunc || layer.id == "<missing>" {
                layer.id.clone()
            } else {
                short_id(&layer.id)
            };
            let created_by = layer.created_by.replace('\t', " ");
            json!({
                "ID": id,
                "CreatedSince": if args.human { units::since(layer.created) } else { units::rfc3339(layer.created) },
                "CreatedAt": units::rfc3339(layer.created),
                "CreatedBy": if args.no_trunc { created_by } else { ellipsis(&created_by, 45) },
                "Size": if args.human {
                    units::human_size_with_precision(layer.size as f64, 3)
                } else {
                    layer.size.to_string()
                },
                "Comment": layer.comment,
            })
        })
        .collect();
    print!("{}", format.render(&headers, &rows)?);
    Ok(())
}

#[derive(Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

pub async fn tag(client: &Client, args: &TagArgs) -> Result<(), Failure> {
    let (repo, tag) = split_tag(&args.target);
    client
        .docker
        .tag_image(
            &args.source,
            Some(TagImageOptions {
                repo: Some(repo.to_owned()),
                tag: Some(tag.unwrap_or("latest").to_owned()),
            }),
        )
        .await?;
    Ok(())
}

#[derive(Args)]
pub struct RemoveArgs {
    /// Force removal of the image
    #[arg(short = 'f', long = "force")]
    force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    no_prune: bool,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

pub async fn remove(client: &Client, args: &RemoveArgs) -> Result<(), Failure> {
    let mut errors = Vec::new();
    for image in &args.images {
        let options = RemoveImageOptions {
            force: args.force,
            noprune: args.no_prune,
            ..Default::default()
        };
        match client.docker.remove_image(image, Some(options), None).await {
            Ok(items) => {
                for item in items {
                    if let Some(untagged) = item.untagged {
                        println!("Untagged: {untagged}");
                    }
                    if let Some(deleted) = item.deleted {
                        println!("Deleted: {deleted}");
                    }
                }
            }
            Err(error) => match Failure::from(error) {
                failure @ Failure::Connect(_) => return Err(failure),
                failure => errors.push(failure.to_string()),
            },
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Message(errors.join("\n")))
    }
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter", value_name = "FILTER", value_parser = parse_filter)]
    filter: Vec<(String, String)>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long = "force")]
    force: bool,
}

/// Asks `question`; true only for an answer starting with y or Y.
pub fn confirm(question: &str) -> bool {
    print!("{question}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    matches!(answer.trim().chars().next(), Some('y' | 'Y'))
}

pub async fn prune(client: &Client, args: &PruneArgs) -> Result<(), Failure> {
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !args.force && !confirm(warning) {
        return Ok(());
    }
    let mut filters = args.filter.clone();
    filters.push((
        "dangling".to_owned(),
        if args.all { "false" } else { "true" }.to_owned(),
    ));
    let report = client
        .docker
        .prune_images(Some(PruneImagesOptions {
            filters: filter_map(&filters),
        }))
        .await?;
    let mut output = String::new();
    let deleted = report.images_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        output.push_str("Deleted Images:\n");
        for item in deleted {
            match (item.untagged, item.deleted) {
                (Some(untagged), _) if !untagged.is_empty() => {
                    output.push_str(&format!("untagged: {untagged}\n"))
                }
                (_, Some(deleted)) => output.push_str(&format!("deleted: {deleted}\n")),
                _ => {}
            }
        }
    }
    if !output.is_empty() {
        println!("{output}");
    }
    println!(
        "Total reclaimed space: {}",
        units::human_size(report.space_reclaimed.unwrap_or(0) as f64)
    );
    Ok(())
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

/// The bytes of `path`, or of stdin when `path` is `None`, as a request body stream.
fn read_stream(
    path: Option<&Path>,
) -> Result<impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, Failure>
{
    let reader: Box<dyn Read + Send> = match path {
        Some(path) => Box::new(
            std::fs::File::open(path)
                .map_err(|e| Failure::Message(format!("open {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    // A blocking reader thread: stdin and files are read without an async file API.
    std::thread::spawn(move || {
        let mut reader = reader;
        loop {
            let mut buffer = vec![0u8; 256 * 1024];
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    buffer.truncate(n);
                    if sender.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = sender.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    Ok(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ))
}

pub async fn load(client: &Client, args: &LoadArgs) -> Result<(), Failure> {
    if args.input.is_none() && std::io::stdin().is_terminal() {
        return Err(Failure::Message(
            "requested load from stdin, but stdin is empty".to_owned(),
        ));
    }
    let body = read_stream(args.input.as_deref())?;
    let quiet = args.quiet || !std::io::stdout().is_terminal();
    let messages = client.docker.import_image_stream(
        ImportImageOptions {
            quiet,
            ..Default::default()
        },
        body,
        None,
    );
    progress::display(Box::pin(messages)).await
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

pub async fn save(client: &Client, args: &SaveArgs) -> Result<(), Failure> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(Failure::Message(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".to_owned(),
        ));
    }
    let names: Vec<&str> = args.images.iter().map(String::as_str).collect();
    let mut archive = client.docker.export_images(&names);
    match &args.output {
        Some(path) => {
            // Written beside the target and renamed, so a failed save leaves no partial file.
            let directory = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut file = tempfile_in(directory)?;
            let result = async {
                while let Some(chunk) = archive.next().await {
                    file.1.write_all(&chunk?)?;
                }
                file.1.sync_all()?;
                std::fs::rename(&file.0, path).map_err(|e| {
                    Failure::Message(format!("failed to save image: {}: {e}", path.display()))
                })
            }
            .await;
            if result.is_err() {
                let _ = std::fs::remove_file(&file.0);
            }
            result
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            while let Some(chunk) = archive.next().await {
                stdout.write_all(&chunk?)?;
            }
            stdout.flush()?;
            Ok(())
        }
    }
}

/// A new file in `directory` with a name no other save uses.
fn tempfile_in(directory: &Path) -> Result<(PathBuf, std::fs::File), Failure> {
    for attempt in 0..100u32 {
        let path = directory.join(format!(".berth-save-{}-{attempt}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Failure::Message(format!(
                    "failed to save image: {}: {e}",
                    directory.display()
                )))
            }
        }
    }
    Err(Failure::Message(
        "failed to save image: no temporary file name free".to_owned(),
    ))
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change", value_name = "CHANGE")]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long = "message", value_name = "MESSAGE")]
    message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long = "platform", value_name = "PLATFORM")]
    platform: Option<String>,
    #[arg(value_name = "file|URL|-")]
    source: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

pub async fn import(client: &Client, args: &ImportArgs) -> Result<(), Failure> {
    let (repo, tag) = match &args.reference {
        Some(reference) => {
            let (repo, tag) = split_tag(reference);
            (Some(repo.to_owned()), tag.map(str::to_owned))
        }
        None => (None, None),
    };
    let is_url = args.source.starts_with("http://") || args.source.starts_with("https://");
    let body = match args.source.as_str() {
        _ if is_url => None,
        "-" => Some(bollard::body_try_stream(read_stream(None)?)),
        path => Some(bollard::body_try_stream(read_stream(Some(Path::new(
            path,
        )))?)),
    };
    let options = CreateImageOptions {
        from_src: Some(if is_url {
            args.source.clone()
        } else {
            "-".to_owned()
        }),
        repo,
        tag,
        message: args.message.clone(),
        changes: args.change.clone(),
        platform: args.platform.clone().unwrap_or_default(),
        ..Default::default()
    };
    let messages = client.docker.create_image(Some(options), body, None);
    progress::display(Box::pin(messages)).await
}

#[derive(Args)]
pub struct PullArgs {
    /// Pull the image of every platform an index lists (Berth only); the
    /// tag names this machine's
    #[arg(long = "all-platforms", conflicts_with = "platform")]
    all_platforms: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long = "platform", value_name = "PLATFORM")]
    platform: Option<String>,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    image: String,
}

/// Pulls `(fromImage, tag)` with the stored credentials of its registry,
/// the progress going to `sink`.
pub async fn pull_image(
    client: &Client,
    from_image: String,
    tag: String,
    platform: Option<String>,
    sink: progress::Sink,
) -> Result<(), Failure> {
    let auth = credentials::for_registry(registry_of(&from_image))?;
    let options = CreateImageOptions {
        from_image: Some(from_image),
        tag: Some(tag),
        platform: platform.unwrap_or_default(),
        ..Default::default()
    };
    let messages = client.docker.create_image(Some(options), None, auth);
    progress::display_to(Box::pin(messages), sink).await
}

/// `berth pull --all-platforms`: POST /images/create with Berth's
/// `allPlatforms=1` (bollard has no such option), the progress as for
/// any pull.
async fn pull_all_platforms(
    client: &Client,
    from_image: &str,
    tag: &str,
    sink: progress::Sink,
) -> Result<(), Failure> {
    use base64::Engine as _;
    use http_body_util::BodyExt;
    let mut headers = Vec::new();
    if let Some(auth) = credentials::for_registry(registry_of(from_image))? {
        let json = serde_json::to_string(&auth)
            .map_err(|e| Failure::Message(format!("encoding credentials: {e}")))?;
        headers.push((
            "X-Registry-Auth",
            base64::engine::general_purpose::URL_SAFE.encode(json),
        ));
    }
    let path = format!(
        "/images/create?fromImage={}&tag={}&allPlatforms=1",
        crate::client::url_encode(from_image),
        crate::client::url_encode(tag)
    );
    let body = client
        .stream_with_headers(hyper::Method::POST, &path, &headers)
        .await?;
    type Item = Result<bollard::models::CreateImageInfo, bollard::errors::Error>;
    let parse = |line: &[u8]| -> Item { Ok(serde_json::from_slice(line)?) };
    let messages = futures_util::stream::unfold(
        (
            body,
            Vec::<u8>::new(),
            std::collections::VecDeque::<Item>::new(),
            false,
        ),
        move |(mut body, mut buf, mut ready, mut done)| async move {
            loop {
                if let Some(item) = ready.pop_front() {
                    return Some((item, (body, buf, ready, done)));
                }
                if done {
                    return None;
                }
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => {
                        done = true;
                        ready.push_back(Err(std::io::Error::other(e).into()));
                        continue;
                    }
                    None => {
                        done = true;
                        buf.push(b'\n');
                    }
                }
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    if !line.trim_ascii().is_empty() {
                        ready.push_back(parse(&line));
                    }
                }
            }
        },
    );
    progress::display_to(Box::pin(messages), sink).await
}

pub async fn pull(client: &Client, args: &PullArgs) -> Result<(), Failure> {
    let Some((_, from_image, tag)) = crate::run::pull_reference(&args.image) else {
        return Err(Failure::Message(format!(
            "invalid reference format: {} is an image ID, not a name to pull",
            args.image
        )));
    };
    // docker ends with the full reference, alone with --quiet.
    let full = if tag.contains(':') {
        format!("{from_image}@{tag}")
    } else {
        format!("{from_image}:{tag}")
    };
    let sink = if args.quiet {
        progress::Sink::Discard
    } else {
        progress::Sink::Stdout
    };
    if args.all_platforms {
        pull_all_platforms(client, &from_image, &tag, sink).await?;
    } else {
        pull_image(client, from_image, tag, args.platform.clone(), sink).await?;
    }
    println!("{full}");
    Ok(())
}

#[derive(Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// Push a platform-specific manifest as a single-platform image to the
    /// registry ('os[/arch[/variant]]')
    #[arg(long = "platform", value_name = "PLATFORM")]
    platform: Option<String>,
    /// Suppress verbose output
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    #[arg(value_name = "NAME[:TAG]")]
    image: String,
}

/// `os[/arch[/variant]]` (linux and this machine's architecture when
/// left out) as the OCI platform JSON the push API takes.
fn platform_json(text: &str) -> Result<String, Failure> {
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let parts: Vec<&str> = text.split('/').collect();
    let (os, arch, variant) = match parts.as_slice() {
        [os] if !os.is_empty() => (*os, host_arch, None),
        [os, arch] if !os.is_empty() && !arch.is_empty() => (*os, *arch, None),
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
            (*os, *arch, Some(*variant))
        }
        _ => {
            return Err(Failure::Message(format!(
                "invalid platform {text:?}: expected os[/arch[/variant]], e.g. linux/arm64"
            )))
        }
    };
    let mut platform = serde_json::json!({"architecture": arch, "os": os});
    if let Some(v) = variant {
        platform["variant"] = serde_json::json!(v);
    }
    Ok(platform.to_string())
}

pub async fn push(client: &Client, args: &PushArgs) -> Result<(), Failure> {
    let (repository, tag) = split_tag(&args.image);
    // Without a tag the API pushes every tag of the repository, which is
    // what -a asks; otherwise `latest`, as docker's CLI.
    let tag = match (tag, args.all_tags) {
        (Some(_), true) => {
            return Err(Failure::Message(
                "tag can't be used with --all-tags/-a".into(),
            ))
        }
        (None, true) => None,
        (Some(tag), false) => Some(tag.to_owned()),
        (None, false) => {
            if !args.quiet {
                println!("Using default tag: latest");
            }
            Some("latest".to_owned())
        }
    };
    let normalized = normalized_name(repository);
    let auth = credentials::for_registry(registry_of(&normalized))?;
    let platform = args.platform.as_deref().map(platform_json).transpose()?;
    let options = PushImageOptions { tag, platform };
    let messages = client.docker.push_image(repository, Some(options), auth);
    let sink = if args.quiet {
        progress::Sink::Discard
    } else {
        progress::Sink::Stdout
    };
    progress::display_to(Box::pin(messages), sink).await?;
    if args.quiet {
        println!("{}", args.image);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(split_tag("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_tag("localhost:5000/busybox"),
            ("localhost:5000/busybox", None)
        );
        assert_eq!(
            split_tag("localhost:5000/a/b:v1"),
            ("localhost:5000/a/b", Some("v1"))
        );
    }

    #[test]
    fn names_normalize_like_docker() {
        assert_eq!(normalized_name("busybox"), "docker.io/library/busybox");
        assert_eq!(normalized_name("me/app"), "docker.io/me/app");
        assert_eq!(normalized_name("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(familiar(&normalized_name("busybox")), "busybox");
    }

    #[test]
    fn filters_need_a_name_and_value() {
        assert_eq!(
            parse_filter("dangling=true"),
            Ok(("dangling".to_owned(), "true".to_owned()))
        );
        assert!(parse_filter("dangling").is_err());
    }
}
