//! A small distribution (v2) registry for pull and push tests: it serves
//! images made here (layers of given files, gzip, zstd or plain; indexes for
//! several platforms; paginated tag lists), takes uploads (monolithic,
//! chunked, mounts) and manifests, can be told to misbehave per blob or
//! manifest, and records every request, so a test can count what a client
//! fetched or sent. In token mode it is also its own token server (at
//! `/token`): every request needs a bearer token for its repository, and
//! tokens can expire after a time or a number of uses, or be revoked.
//! Plain HTTP on 127.0.0.1, one thread per connection,
//! `Connection: close`; dropping it stops every thread it started.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// One layer blob of a fixture image.
#[derive(Debug, Clone)]
pub struct Layer {
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    pub data: Vec<u8>,
}

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A layer holding `files` (path, content; mode 0644), compressed as asked.
pub fn layer(files: &[(&str, &[u8])], compression: LayerCompression) -> Layer {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, path, *content)
            .expect("append to layer tar");
    }
    layer_from_tar(builder.into_inner().expect("finish layer tar"), compression)
}

/// A layer of the uncompressed tar `tar`, compressed as asked.
pub fn layer_from_tar(tar: Vec<u8>, compression: LayerCompression) -> Layer {
    let diff_id = sha256(&tar);
    let (data, media_type) = match compression {
        LayerCompression::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
        LayerCompression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&tar).expect("gzip layer");
            (
                enc.finish().expect("gzip layer"),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        LayerCompression::Zstd => (
            zstd::encode_all(&tar[..], 1).expect("zstd layer"),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    };
    Layer {
        digest: sha256(&data),
        diff_id,
        media_type: media_type.to_string(),
        data,
    }
}

/// `len` bytes that do not compress (a counter through SHA-256).
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut n = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(n.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        n += 1;
    }
    out.truncate(len);
    out
}

/// What a blob or manifest does wrong when it is fetched.
#[derive(Debug, Clone, PartialEq)]
pub enum Misbehavior {
    /// The right length, one byte changed.
    WrongDigest,
    /// More bytes than the manifest says.
    ExtraBytes,
    /// The connection closes after this many bytes of the body, every time.
    Truncate(u64),
    /// The first GET closes after this many bytes; later ones (with Range) work.
    DropOnce(u64),
    /// As `DropOnce`, and Range is ignored: later GETs get the whole blob.
    DropOnceNoRange(u64),
    /// Answers with this status and a JSON error.
    Status(u16),
    /// Answers the next write (POST, PATCH, PUT) with this status, then works.
    StatusOnce(u16),
    /// Redirects to itself.
    RedirectLoop,
    /// Redirects to this URL (another host, as registries send blobs to a CDN).
    RedirectTo(String),
    /// Sends the headers, then nothing.
    Stall,
    /// Sends the body at this many bytes a second.
    Throttle(u64),
    /// A manifest body replaced by this (with its content type).
    Body(String, Vec<u8>),
}

/// One request the registry saw.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: String,
    pub range: Option<String>,
    /// Whether the request carried an Authorization header.
    pub authorized: bool,
}

/// How the token server of [`FakeRegistry::require_tokens`] issues tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenPolicy {
    /// `expires_in` sent with each token (`None`: not sent).
    pub expires_in: Option<u64>,
    /// Tokens are refused this long after they were issued.
    pub valid_for: Option<Duration>,
    /// Tokens are refused after this many requests.
    pub uses: Option<u32>,
    /// The `Authorization` header a GET of a token must carry (`None`:
    /// anonymous tokens); an OAuth2 password grant must carry the same
    /// user and password.
    pub basic: Option<&'static str>,
    /// An OAuth2 password grant (POST) is answered with this status, as a
    /// token server that only takes GETs does.
    pub refuse_password_grant: Option<u16>,
}

/// One token the token server issued.
struct Issued {
    scope: String,
    at: Instant,
    uses: u32,
    revoked: bool,
}

#[derive(Default)]
struct Tokens {
    policy: TokenPolicy,
    issued: HashMap<String, Issued>,
    /// The `scope` of every token request, in order.
    requests: Vec<String>,
    /// How each token was asked for: `get`, `get offline` (a refresh token
    /// wanted), `password <user>` / `password <user> offline` and
    /// `refresh_token <token>` (OAuth2 POSTs); a password grant refused
    /// with `refuse_password_grant` as `refused password <user>`.
    grants: Vec<String>,
    /// Refresh tokens handed out.
    refresh_tokens: Vec<String>,
    /// Requests refused for a token that expired, was used up or revoked.
    refused: usize,
}

#[derive(Default)]
struct State {
    /// Token mode: `Some`.
    tokens: Option<Tokens>,
    /// Path → content type, body.
    content: HashMap<String, (String, Vec<u8>)>,
    /// Repository → tags in order.
    tags: HashMap<String, Vec<String>>,
    /// Path → misbehavior.
    misbehave: HashMap<String, Misbehavior>,
    /// Paths whose one-time drop already happened.
    dropped: Vec<String>,
    requests: Vec<Request>,
    /// Blob GETs being answered now, and the most there were at once.
    active: usize,
    max_active: usize,
    /// Upload sessions: id → repository, bytes so far.
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_upload: u64,
    /// Bytes a second an upload body is read at (`None`: as fast as it comes).
    upload_rate: Option<u64>,
    /// Upload bodies being read now, and the most there were at once.
    uploads_active: usize,
    max_uploads_active: usize,
}

/// Counts an upload body as active while it lives.
struct UploadActive<'a>(&'a Mutex<State>);

impl Drop for UploadActive<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.uploads_active -= 1;
        }
    }
}

/// Counts a blob GET as active while it lives.
struct Active<'a>(&'a Mutex<State>);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.active -= 1;
        }
    }
}

/// The registry; see the module documentation.
pub struct FakeRegistry {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

/// An image as [`FakeRegistry::add_image`] stored it.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub manifest_digest: String,
    pub config_digest: String,
    pub manifest: Vec<u8>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Tags per page of `tags/list` unless the client asks for fewer.
const TAGS_PAGE: usize = 2;

impl FakeRegistry {
    pub fn start() -> FakeRegistry {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind fake registry");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (state, stop) = (state.clone(), stop.clone());
                    std::thread::spawn(move || serve(stream, &state, &stop));
                }
            })
        };
        FakeRegistry {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Serves `body` at `path` (any path, e.g. where another registry redirects).
    pub fn serve_bytes(&self, path: &str, body: Vec<u8>) {
        self.put(path.to_string(), "application/octet-stream", body);
    }

    fn put(&self, path: String, content_type: &str, body: Vec<u8>) {
        self.state
            .lock()
            .expect("registry state")
            .content
            .insert(path, (content_type.to_string(), body));
    }

    fn add_tag(&self, repo: &str, tag: &str) {
        let mut state = self.state.lock().expect("registry state");
        let tags = state.tags.entry(repo.to_string()).or_default();
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }

    /// Stores an image of `layers` for `architecture` under `repo:tag`
    /// (also by digest; `tag` may be empty for by-digest only).
    pub fn add_image(&self, repo: &str, tag: &str, architecture: &str, layers: &[Layer]) -> Pushed {
        self.add_image_annotated(repo, tag, architecture, layers, None)
    }

    /// As [`FakeRegistry::add_image`], with `annotations` on the manifest
    /// and on each layer descriptor (valid OCI, but not what a client that
    /// builds its own manifest would send).
    pub fn add_image_annotated(
        &self,
        repo: &str,
        tag: &str,
        architecture: &str,
        layers: &[Layer],
        annotations: Option<serde_json::Value>,
    ) -> Pushed {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": architecture,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("config json");
        let config_digest = sha256(&config);
        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layers.iter().map(|l| {
                let mut d = serde_json::json!({
                    "mediaType": l.media_type,
                    "digest": l.digest,
                    "size": l.data.len(),
                });
                if let Some(a) = &annotations {
                    d["annotations"] = a.clone();
                }
                d
            }).collect::<Vec<_>>(),
        });
        if let Some(a) = annotations {
            manifest["annotations"] = a;
        }
        let manifest = serde_json::to_vec(&manifest).expect("manifest json");
        let manifest_digest = sha256(&manifest);
        self.put(
            format!("/v2/{repo}/blobs/{config_digest}"),
            "application/octet-stream",
            config,
        );
        for l in layers {
            self.put(
                format!("/v2/{repo}/blobs/{}", l.digest),
                "application/octet-stream",
                l.data.clone(),
            );
        }
        self.put(
            format!("/v2/{repo}/manifests/{manifest_digest}"),
            OCI_MANIFEST,
            manifest.clone(),
        );
        if !tag.is_empty() {
            self.put(
                format!("/v2/{repo}/manifests/{tag}"),
                OCI_MANIFEST,
                manifest.clone(),
            );
            self.add_tag(repo, tag);
        }
        Pushed {
            manifest_digest,
            config_digest,
            manifest,
        }
    }

    /// Stores an index under `repo:tag` whose entries are the images
    /// given with their platform (`os/arch[/variant]`).
    pub fn add_index(&self, repo: &str, tag: &str, entries: &[(&str, &Pushed)]) -> String {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(platform, image)| {
                let mut parts = platform.split('/');
                let os = parts.next().unwrap_or("linux");
                let arch = parts.next().unwrap_or("amd64");
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = parts.next() {
                    p["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": image.manifest_digest,
                    "size": image.manifest.len(),
                    "platform": p,
                })
            })
            .collect();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .expect("index json");
        let digest = sha256(&index);
        self.put(
            format!("/v2/{repo}/manifests/{digest}"),
            OCI_INDEX,
            index.clone(),
        );
        self.put(format!("/v2/{repo}/manifests/{tag}"), OCI_INDEX, index);
        self.add_tag(repo, tag);
        digest
    }

    /// Makes the blob or manifest at `path` (e.g. `/v2/r/blobs/<digest>`) misbehave.
    pub fn misbehave(&self, path: &str, how: Misbehavior) {
        self.state
            .lock()
            .expect("registry state")
            .misbehave
            .insert(path.to_string(), how);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("registry state").requests.clone()
    }

    /// Reads upload bodies at `bytes_per_second`, so uploads overlap.
    pub fn throttle_uploads(&self, bytes_per_second: u64) {
        self.state.lock().expect("registry state").upload_rate = Some(bytes_per_second);
    }

    /// The most upload bodies that were read at the same time.
    pub fn max_parallel_uploads(&self) -> usize {
        self.state
            .lock()
            .expect("registry state")
            .max_uploads_active
    }

    /// The most blob GETs that were answered at the same time.
    pub fn max_parallel_blob_gets(&self) -> usize {
        self.state.lock().expect("registry state").max_active
    }

    /// Token mode: each request needs `Authorization: Bearer <token>` from
    /// the token server at `/token` (anonymous; any scope asked is given).
    pub fn require_tokens(&self, policy: TokenPolicy) {
        self.state.lock().expect("registry state").tokens = Some(Tokens {
            policy,
            ..Tokens::default()
        });
    }

    /// The scope of each token request so far.
    pub fn token_requests(&self) -> Vec<String> {
        let state = self.state.lock().expect("registry state");
        state
            .tokens
            .as_ref()
            .map(|t| t.requests.clone())
            .unwrap_or_default()
    }

    /// How each token was asked for (see `Tokens::grants`).
    pub fn token_grants(&self) -> Vec<String> {
        let state = self.state.lock().expect("registry state");
        state
            .tokens
            .as_ref()
            .map(|t| t.grants.clone())
            .unwrap_or_default()
    }

    /// How many requests were refused for a stale or revoked token.
    pub fn refused_tokens(&self) -> usize {
        let state = self.state.lock().expect("registry state");
        state.tokens.as_ref().map_or(0, |t| t.refused)
    }

    /// Revokes every token issued so far.
    pub fn revoke_tokens(&self) {
        let mut state = self.state.lock().expect("registry state");
        if let Some(tokens) = state.tokens.as_mut() {
            for issued in tokens.issued.values_mut() {
                issued.revoked = true;
            }
        }
    }

    /// GET requests of `path`.
    pub fn gets_of(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .collect()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn error_body(code: &str, message: &str) -> Vec<u8> {
    format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#).into_bytes()
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    head: bool,
) {
    let mut text = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(text.as_bytes());
    if !head {
        let _ = stream.write_all(body);
    }
}

/// Waits (in short steps, so a drop of the registry ends it) up to `for_`.
fn sleep_unless_stopped(stop: &AtomicBool, for_: Duration) {
    let until = Instant::now() + for_;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut range = None;
    let mut headers = HashMap::new();
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        line.clear();
    }
    let mut words = first.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("").to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    if !token_allows(
        &mut stream,
        &mut reader,
        &method,
        &path,
        &query,
        &headers,
        state,
    ) {
        return;
    }
    if matches!(method.as_str(), "POST" | "PATCH" | "PUT") {
        state
            .lock()
            .expect("registry state")
            .requests
            .push(Request {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                range: headers.get("content-range").cloned(),
                authorized: headers.contains_key("authorization"),
            });
        return serve_write(&mut stream, reader, &method, &path, &query, &headers, state);
    }
    let head = method == "HEAD";
    let _active = (method == "GET" && path.contains("/blobs/")).then(|| {
        let mut s = state.lock().expect("registry state");
        s.active += 1;
        s.max_active = s.max_active.max(s.active);
        Active(state)
    });
    let (content, misbehavior, first_get, tags) = {
        let mut s = state.lock().expect("registry state");
        s.requests.push(Request {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            range: range.clone(),
            authorized: headers.contains_key("authorization"),
        });
        let misbehavior = s.misbehave.get(&path).cloned();
        let first_get = !head && !s.dropped.contains(&path);
        if first_get
            && matches!(
                misbehavior,
                Some(Misbehavior::DropOnce(_) | Misbehavior::DropOnceNoRange(_))
            )
        {
            s.dropped.push(path.clone());
        }
        let repo_of_tags = path
            .strip_prefix("/v2/")
            .and_then(|p| p.strip_suffix("/tags/list"))
            .map(str::to_string);
        let tags = repo_of_tags.map(|r| s.tags.get(&r).cloned());
        (s.content.get(&path).cloned(), misbehavior, first_get, tags)
    };
    if path == "/v2/" || path == "/v2" {
        return respond(&mut stream, 200, &[], b"{}", head);
    }
    if let Some(tags) = tags {
        return serve_tags(&mut stream, &path, &query, tags);
    }
    let Some((content_type, mut body)) = content else {
        return respond(
            &mut stream,
            404,
            &[("Content-Type", "application/json".into())],
            &error_body("MANIFEST_UNKNOWN", "unknown to registry"),
            head,
        );
    };
    let mut content_type = content_type;
    let mut cut = None;
    let mut throttle = None;
    match misbehavior {
        None => {}
        Some(Misbehavior::WrongDigest) => {
            if let Some(b) = body.last_mut() {
                *b ^= 0xff;
            }
        }
        Some(Misbehavior::ExtraBytes) => body.extend_from_slice(b"and some more bytes"),
        Some(Misbehavior::Truncate(at)) => cut = Some(at),
        Some(Misbehavior::DropOnce(at)) if first_get => cut = Some(at),
        Some(Misbehavior::DropOnce(_)) => {}
        Some(Misbehavior::DropOnceNoRange(at)) if first_get => cut = Some(at),
        Some(Misbehavior::DropOnceNoRange(_)) => range = None,
        Some(Misbehavior::Status(status) | Misbehavior::StatusOnce(status)) => {
            return respond(
                &mut stream,
                status,
                &[("Content-Type", "application/json".into())],
                &error_body("UNAVAILABLE", "the registry is not well"),
                head,
            )
        }
        Some(Misbehavior::RedirectLoop) => {
            return respond(&mut stream, 307, &[("Location", target.clone())], b"", head)
        }
        Some(Misbehavior::RedirectTo(url)) => {
            return respond(&mut stream, 307, &[("Location", url)], b"", head)
        }
        Some(Misbehavior::Stall) => {
            let text = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(text.as_bytes());
            sleep_unless_stopped(stop, Duration::from_secs(300));
            return;
        }
        Some(Misbehavior::Throttle(rate)) => throttle = Some(rate.max(1)),
        Some(Misbehavior::Body(ctype, replaced)) => {
            content_type = ctype;
            body = replaced;
        }
    }
    // Range requests (`bytes=N-`) get a 206 with the rest.
    let mut status = 200;
    let mut headers = vec![
        ("Content-Type", content_type),
        ("Docker-Content-Digest", sha256(&body)),
    ];
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&s| s < body.len() && !head);
    let total = body.len();
    if let Some(start) = start {
        status = 206;
        headers.push((
            "Content-Range",
            format!("bytes {start}-{}/{total}", total - 1),
        ));
        body.drain(..start);
    }
    let mut text = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in &headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    if stream.write_all(text.as_bytes()).is_err() || head {
        return;
    }
    let send = match cut {
        Some(at) => &body[..(at as usize).min(body.len())],
        None => &body[..],
    };
    match throttle {
        None => {
            let _ = stream.write_all(send);
        }
        Some(rate) => {
            // Tenths of a second, so a throttled body arrives in small steps.
            let step = (rate / 10).max(1) as usize;
            for (i, chunk) in send.chunks(step).enumerate() {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if stop.load(Ordering::SeqCst) || stream.write_all(chunk).is_err() {
                    return;
                }
            }
        }
    }
    // Done before the client can have read the end and asked again.
    drop(_active);
    if cut.is_some() {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

/// The value of `name` in a query string (percent-decoded).
fn query_param(query: &str, name: &str) -> Option<String> {
    let raw = query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Standard base64 with padding (RFC 4648), for basic credentials.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Token mode: answers `/token` itself, and refuses a request without a
/// valid token for its repository (401 with a Bearer challenge, after
/// reading the body). `true`: serve the request.
fn token_allows(
    stream: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    query: &str,
    headers: &HashMap<String, String>,
    state: &Mutex<State>,
) -> bool {
    let mut s = state.lock().expect("registry state");
    let Some(tokens) = s.tokens.as_mut() else {
        return true;
    };
    let json = || ("Content-Type", "application/json".to_string());
    if path == "/token" {
        let form = if method == "POST" {
            let length: u64 = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = String::new();
            let _ = std::io::Read::read_to_string(
                &mut std::io::Read::take(&mut *reader, length),
                &mut body,
            );
            body
        } else {
            query.to_string()
        };
        let grant = match (method, query_param(&form, "grant_type")) {
            ("POST", Some(g)) if g == "refresh_token" => {
                let presented = query_param(&form, "refresh_token").unwrap_or_default();
                if !tokens.refresh_tokens.contains(&presented)
                    || query_param(&form, "client_id").is_none()
                {
                    drop(s);
                    let refused = br#"{"error":"invalid_grant"}"#;
                    respond(stream, 400, &[json()], refused, false);
                    return false;
                }
                format!("refresh_token {presented}")
            }
            ("POST", Some(g)) if g == "password" => {
                let username = query_param(&form, "username").unwrap_or_default();
                if let Some(status) = tokens.policy.refuse_password_grant {
                    tokens.grants.push(format!("refused password {username}"));
                    drop(s);
                    respond(stream, status, &[json()], b"{}", false);
                    return false;
                }
                let password = query_param(&form, "password").unwrap_or_default();
                let presented = format!(
                    "Basic {}",
                    base64(format!("{username}:{password}").as_bytes())
                );
                if tokens.policy.basic.is_some_and(|b| b != presented)
                    || query_param(&form, "client_id").is_none()
                {
                    drop(s);
                    let refused = error_body("UNAUTHORIZED", "incorrect username or password");
                    respond(stream, 401, &[json()], &refused, false);
                    return false;
                }
                if query_param(&form, "access_type").as_deref() == Some("offline") {
                    format!("password {username} offline")
                } else {
                    format!("password {username}")
                }
            }
            ("GET", _) => {
                let presented = headers.get("authorization").map(String::as_str);
                if tokens.policy.basic.is_some() && presented != tokens.policy.basic {
                    drop(s);
                    let refused = error_body("UNAUTHORIZED", "incorrect username or password");
                    respond(stream, 401, &[json()], &refused, false);
                    return false;
                }
                if query_param(&form, "offline_token").as_deref() == Some("true") {
                    "get offline".to_string()
                } else {
                    "get".to_string()
                }
            }
            _ => {
                drop(s);
                let refused = br#"{"error":"unsupported_grant_type"}"#;
                respond(stream, 400, &[json()], refused, false);
                return false;
            }
        };
        let scope = query_param(&form, "scope").unwrap_or_default();
        tokens.requests.push(scope.clone());
        tokens.grants.push(grant.clone());
        let token = format!("token-{}", tokens.requests.len());
        tokens.issued.insert(
            token.clone(),
            Issued {
                scope,
                at: Instant::now(),
                uses: 0,
                revoked: false,
            },
        );
        let mut answer = if method == "POST" {
            serde_json::json!({ "access_token": token, "scope": tokens.requests.last() })
        } else {
            serde_json::json!({ "token": token })
        };
        if grant.ends_with(" offline") {
            let refresh = format!("refresh-{}", tokens.requests.len());
            tokens.refresh_tokens.push(refresh.clone());
            answer["refresh_token"] = serde_json::json!(refresh);
        }
        if let Some(seconds) = tokens.policy.expires_in {
            answer["expires_in"] = serde_json::json!(seconds);
        }
        drop(s);
        respond(stream, 200, &[json()], answer.to_string().as_bytes(), false);
        return false;
    }
    let repository = path
        .strip_prefix("/v2/")
        .and_then(|rest| {
            ["/blobs/", "/manifests/", "/tags/"]
                .iter()
                .find_map(|part| rest.find(part).map(|i| &rest[..i]))
        })
        .unwrap_or("");
    let presented = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let policy = tokens.policy;
    let verdict = tokens.issued.get_mut(presented).map(|issued| {
        let fresh = !issued.revoked
            && policy.valid_for.is_none_or(|v| issued.at.elapsed() < v)
            && policy.uses.is_none_or(|u| issued.uses < u);
        let covers = repository.is_empty()
            || issued.scope.split(' ').any(|scope| {
                scope
                    .strip_prefix(&format!("repository:{repository}:"))
                    .is_some_and(|actions| {
                        actions.split(',').any(|a| {
                            a == "*"
                                || a == if matches!(method, "GET" | "HEAD") {
                                    "pull"
                                } else {
                                    "push"
                                }
                        })
                    })
            });
        if fresh && covers {
            issued.uses += 1;
        }
        (fresh, covers)
    });
    if verdict == Some((true, true)) {
        return true;
    }
    if verdict.is_some_and(|(fresh, _)| !fresh) {
        tokens.refused += 1;
    }
    drop(s);
    let length: u64 = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let _ = std::io::copy(
        &mut std::io::Read::take(reader, length),
        &mut std::io::sink(),
    );
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let actions = if matches!(method, "GET" | "HEAD") {
        "pull"
    } else {
        "pull,push"
    };
    let challenge = format!(
        r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake-registry",scope="repository:{repository}:{actions}""#
    );
    respond(
        stream,
        401,
        &[json(), ("WWW-Authenticate", challenge)],
        &error_body("UNAUTHORIZED", "authentication required"),
        method == "HEAD",
    );
    false
}

/// Uploads and manifest pushes: POST starts a session (or mounts with
/// `mount=&from=`), PATCH appends a chunk (its Content-Range must start
/// where the session is), PUT closes it with `digest=` (checked) or stores
/// a manifest. A PATCH or PUT body is read at the configured upload rate,
/// and counted as active while it is read.
fn serve_write(
    stream: &mut TcpStream,
    mut reader: BufReader<TcpStream>,
    method: &str,
    path: &str,
    query: &str,
    headers: &HashMap<String, String>,
    state: &Mutex<State>,
) {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let json = || ("Content-Type", "application/json".to_string());
    let Some(rest) = path.strip_prefix("/v2/") else {
        return respond(
            stream,
            404,
            &[json()],
            &error_body("NAME_UNKNOWN", "no"),
            false,
        );
    };
    let once = {
        let mut s = state.lock().expect("registry state");
        match s.misbehave.get(path) {
            Some(Misbehavior::StatusOnce(status)) => {
                let status = *status;
                s.misbehave.remove(path);
                Some(status)
            }
            _ => None,
        }
    };
    if let Some(status) = once {
        return respond(
            stream,
            status,
            &[json()],
            &error_body("UNAVAILABLE", "try again"),
            false,
        );
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = Vec::with_capacity(length);
    if length > 0 {
        let (rate, _active) = {
            let mut s = state.lock().expect("registry state");
            s.uploads_active += 1;
            s.max_uploads_active = s.max_uploads_active.max(s.uploads_active);
            (s.upload_rate, UploadActive(state))
        };
        let step = rate.map_or(length, |r| (r / 10).max(1) as usize);
        let mut buf = vec![0u8; step];
        while body.len() < length {
            let want = step.min(length - body.len());
            if std::io::Read::read_exact(&mut reader, &mut buf[..want]).is_err() {
                return;
            }
            body.extend_from_slice(&buf[..want]);
            if rate.is_some() && body.len() < length {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let mut s = state.lock().expect("registry state");
    if let Some(repo) = rest.strip_suffix("/blobs/uploads/") {
        if method != "POST" {
            drop(s);
            return respond(
                stream,
                405,
                &[json()],
                &error_body("UNSUPPORTED", "POST"),
                false,
            );
        }
        if let (Some(digest), Some(from)) = (param("mount"), param("from")) {
            if let Some(blob) = s
                .content
                .get(&format!("/v2/{from}/blobs/{digest}"))
                .cloned()
            {
                let target = format!("/v2/{repo}/blobs/{digest}");
                s.content.insert(target.clone(), blob);
                drop(s);
                return respond(stream, 201, &[("Location", target)], b"", false);
            }
        }
        s.next_upload += 1;
        let id = format!("u{}", s.next_upload);
        s.uploads.insert(id.clone(), (repo.to_string(), Vec::new()));
        drop(s);
        let location = format!("/v2/{repo}/blobs/uploads/{id}");
        return respond(
            stream,
            202,
            &[("Location", location), ("Range", "0-0".into())],
            b"",
            false,
        );
    }
    if let Some((repo, id)) = rest.split_once("/blobs/uploads/") {
        let Some((_, data)) = s.uploads.get_mut(id) else {
            drop(s);
            return respond(
                stream,
                404,
                &[json()],
                &error_body("BLOB_UPLOAD_UNKNOWN", "no such upload"),
                false,
            );
        };
        if method == "PATCH" {
            let start = headers
                .get("content-range")
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.trim().parse::<usize>().ok());
            if start.is_some_and(|start| start != data.len()) {
                drop(s);
                return respond(
                    stream,
                    416,
                    &[json()],
                    &error_body("BLOB_UPLOAD_INVALID", "range"),
                    false,
                );
            }
        }
        data.extend_from_slice(&body);
        let len = data.len();
        if method == "PATCH" {
            drop(s);
            let location = format!("/v2/{repo}/blobs/uploads/{id}");
            return respond(
                stream,
                202,
                &[
                    ("Location", location),
                    ("Range", format!("0-{}", len.saturating_sub(1))),
                ],
                b"",
                false,
            );
        }
        let digest = param("digest").unwrap_or_default();
        let Some((repo, data)) = s.uploads.remove(id) else {
            return;
        };
        if sha256(&data) != digest {
            drop(s);
            return respond(
                stream,
                400,
                &[json()],
                &error_body("DIGEST_INVALID", "digest mismatch"),
                false,
            );
        }
        let target = format!("/v2/{repo}/blobs/{digest}");
        s.content
            .insert(target.clone(), ("application/octet-stream".into(), data));
        drop(s);
        return respond(
            stream,
            201,
            &[("Location", target), ("Docker-Content-Digest", digest)],
            b"",
            false,
        );
    }
    if let Some((repo, reference)) = rest.split_once("/manifests/") {
        let content_type = headers.get("content-type").cloned().unwrap_or_default();
        let digest = sha256(&body);
        s.content.insert(
            format!("/v2/{repo}/manifests/{digest}"),
            (content_type.clone(), body.clone()),
        );
        s.content.insert(
            format!("/v2/{repo}/manifests/{reference}"),
            (content_type, body),
        );
        if !reference.starts_with("sha256:") {
            let tags = s.tags.entry(repo.to_string()).or_default();
            if !tags.iter().any(|t| t == reference) {
                tags.push(reference.to_string());
            }
        }
        drop(s);
        return respond(
            stream,
            201,
            &[("Docker-Content-Digest", digest)],
            b"",
            false,
        );
    }
    drop(s);
    respond(
        stream,
        404,
        &[json()],
        &error_body("NAME_UNKNOWN", "no"),
        false,
    )
}

/// `tags/list` with `n` and `last`, and a `Link` to the next page.
fn serve_tags(stream: &mut TcpStream, path: &str, query: &str, tags: Option<Vec<String>>) {
    let Some(mut tags) = tags else {
        return respond(
            stream,
            404,
            &[("Content-Type", "application/json".into())],
            &error_body("NAME_UNKNOWN", "repository name not known to registry"),
            false,
        );
    };
    tags.sort();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let n = param("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(TAGS_PAGE)
        .min(TAGS_PAGE);
    let after: Vec<String> = match param("last") {
        Some(last) => tags.into_iter().filter(|t| *t > last).collect(),
        None => tags,
    };
    let page: Vec<String> = after.iter().take(n).cloned().collect();
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if after.len() > n {
        if let Some(last) = page.last() {
            headers.push(("Link", format!("<{path}?n={n}&last={last}>; rel=\"next\"")));
        }
    }
    let name = path
        .trim_start_matches("/v2/")
        .trim_end_matches("/tags/list")
        .to_string();
    let body =
        serde_json::to_vec(&serde_json::json!({"name": name, "tags": page})).expect("tags json");
    respond(stream, 200, &headers, &body, false);
}
